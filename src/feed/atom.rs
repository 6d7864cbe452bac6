//! Atom 1.0 (RFC 4287) with RFC 5005 history (`fh`) and WebSub `hub` links.

use super::xml::{self, element, empty};
use super::{image_type, newest_date, FeedMeta, History};
use crate::issue::Issue;

const ATOM: &str = "application/atom+xml";

/// Renders an Atom feed for `issues` (newest first) described by `meta`.
///
/// After the XML declaration comes an `xml-stylesheet` instruction naming `meta.stylesheet`.
/// The feed's `id` is the subscription document's URL (an archive document shares it); it has `self` and `alternate` links, a `hub` link with
/// WebSub, and its RFC 5005 state (`fh:complete`; a `prev-archive` link; or `fh:archive` with
/// `current`, `prev-archive` and `next-archive` links). Each entry's `id` is the issue permalink
/// (the same value as the RSS guid and the JSON Feed id). Entries carry `title` (text),
/// `published` and `updated` (the issue date, RFC 3339), `author` (the issue's; the feed-level
/// author, the site, covers the others), a `category` per category and tag, an `alternate` link,
/// the cover image as a `rel="enclosure"` link with its type, `summary` (text) and
/// `content type="html"`.
pub fn render(issues: &[&Issue], meta: &FeedMeta) -> String {
    let size: usize = issues.iter().map(|i| i.content_html.len() + 1024).sum();
    let mut out = String::with_capacity(size + 2048);
    xml::prolog(&mut out, Some(&meta.stylesheet));
    out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\"");
    out.push_str(" xmlns:fh=\"http://purl.org/syndication/history/1.0\" xml:lang=\"");
    xml::attr(&mut out, &meta.language);
    out.push_str("\">\n");
    element(&mut out, 2, "title", &meta.title);
    element(&mut out, 2, "subtitle", &meta.description);
    element(&mut out, 2, "id", meta.id.as_str());
    element(&mut out, 2, "updated", &newest_date(issues).to_rfc3339());
    out.push_str("  <author>\n");
    element(&mut out, 4, "name", &meta.site_title);
    element(&mut out, 4, "uri", meta.home.as_str());
    out.push_str("  </author>\n");
    element(&mut out, 2, "generator", "feedpost");
    let link = |out: &mut String, rel: &str, href: &str, kind: Option<&str>| {
        empty(
            out,
            2,
            "link",
            &[("href", Some(href)), ("rel", Some(rel)), ("type", kind)],
        );
    };
    link(&mut out, "self", meta.self_url.as_str(), Some(ATOM));
    link(&mut out, "alternate", meta.home.as_str(), Some("text/html"));
    if let Some(hub) = &meta.hub {
        link(&mut out, "hub", hub.as_str(), None);
    }
    match &meta.history {
        History::Complete => out.push_str("  <fh:complete/>\n"),
        History::Subscription { prev_archive } => {
            link(&mut out, "prev-archive", prev_archive.as_str(), Some(ATOM))
        }
        History::Archive {
            current,
            prev_archive,
            next_archive,
        } => {
            out.push_str("  <fh:archive/>\n");
            link(&mut out, "current", current.as_str(), Some(ATOM));
            if let Some(prev) = prev_archive {
                link(&mut out, "prev-archive", prev.as_str(), Some(ATOM));
            }
            if let Some(next) = next_archive {
                link(&mut out, "next-archive", next.as_str(), Some(ATOM));
            }
        }
        History::Partial => {}
    }
    for issue in issues {
        entry(&mut out, issue);
    }
    out.push_str("</feed>\n");
    out
}

fn entry(out: &mut String, issue: &Issue) {
    out.push_str("  <entry>\n");
    element(out, 4, "title", &issue.title);
    element(out, 4, "id", issue.permalink.as_str());
    let date = issue.date.to_rfc3339();
    element(out, 4, "published", &date);
    element(out, 4, "updated", &date);
    if let Some(author) = &issue.author {
        out.push_str("    <author>\n");
        element(out, 6, "name", author);
        if let Some(uri) = &issue.author_link {
            element(out, 6, "uri", uri.as_str());
        }
        out.push_str("    </author>\n");
    }
    for term in issue.terms() {
        empty(out, 4, "category", &[("term", Some(term))]);
    }
    empty(
        out,
        4,
        "link",
        &[
            ("href", Some(issue.permalink.as_str())),
            ("rel", Some("alternate")),
            ("type", Some("text/html")),
        ],
    );
    if let Some(cover) = &issue.cover {
        empty(
            out,
            4,
            "link",
            &[
                ("href", Some(cover.as_str())),
                ("rel", Some("enclosure")),
                ("type", image_type(cover)),
            ],
        );
    }
    element(out, 4, "summary", &issue.summary);
    out.push_str("    <content type=\"html\">");
    xml::cdata(out, &issue.content_html);
    out.push_str("</content>\n");
    out.push_str("  </entry>\n");
}
