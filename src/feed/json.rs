//! JSON Feed 1.1 (<https://www.jsonfeed.org/version/1.1/>), written with serde_json.

use serde::Serialize;

use super::FeedMeta;
use crate::issue::Issue;

/// The `version` of every document.
pub const VERSION: &str = "https://jsonfeed.org/version/1.1";

#[derive(Serialize)]
struct Feed<'a> {
    version: &'static str,
    title: &'a str,
    home_page_url: &'a str,
    feed_url: &'a str,
    description: &'a str,
    language: &'a str,
    authors: [Author<'a>; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hubs: Vec<Hub<'a>>,
    items: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Author<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

#[derive(Serialize)]
struct Hub<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
}

#[derive(Serialize)]
struct Item<'a> {
    id: &'a str,
    url: &'a str,
    title: &'a str,
    content_html: &'a str,
    summary: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    date_published: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authors: Vec<Author<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<&'a str>,
}

/// Renders a JSON Feed 1.1 document for `issues` (newest first) described by `meta`: `version`,
/// `title`, `home_page_url`, `feed_url`, `description`, `language`, `authors` (the site) and, with
/// WebSub, `hubs`; each item has `id` and `url` (the permalink, the same value as the RSS guid and
/// the Atom id), `title`, `content_html`, `summary`, `image` (the cover), `date_published`
/// (RFC 3339, the issue's offset), `authors` and `tags` (its categories and tags). JSON Feed has
/// no archive documents, so `meta.history` is not written. Pretty-printed, UTF-8 bytes, ends in a
/// newline.
pub fn render(issues: &[&Issue], meta: &FeedMeta) -> Vec<u8> {
    let feed = Feed {
        version: VERSION,
        title: &meta.title,
        home_page_url: meta.home.as_str(),
        feed_url: meta.self_url.as_str(),
        description: &meta.description,
        language: &meta.language,
        authors: [Author {
            name: &meta.site_title,
            url: Some(meta.home.as_str()),
        }],
        hubs: meta
            .hub
            .iter()
            .map(|h| Hub {
                kind: "WebSub",
                url: h.as_str(),
            })
            .collect(),
        items: issues.iter().map(|i| item(i)).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&feed).expect("a JSON Feed always serialises");
    bytes.push(b'\n');
    bytes
}

fn item(issue: &Issue) -> Item<'_> {
    Item {
        id: issue.permalink.as_str(),
        url: issue.permalink.as_str(),
        title: &issue.title,
        content_html: &issue.content_html,
        summary: &issue.summary,
        image: issue.cover.as_ref().map(|c| c.as_str()),
        date_published: issue.date.to_rfc3339(),
        authors: issue
            .author
            .as_deref()
            .map(|name| Author {
                name,
                url: issue.author_link.as_ref().map(|u| u.as_str()),
            })
            .into_iter()
            .collect(),
        tags: issue.terms(),
    }
}
