//! RSS 2.0 (<https://www.rssboard.org/rss-specification>) with the `content`, `dc` and `atom`
//! extensions, built with the `rss` crate.

use std::collections::BTreeMap;

use rss::extension::atom::{AtomExtension, Link};
use rss::extension::dublincore::DublinCoreExtension;
use rss::{Category, Channel, Guid, Item};

use super::{newest_date, FeedMeta};
use crate::issue::Issue;

/// Renders an RSS 2.0 document for `issues` (newest first) described by `meta`.
///
/// Each item has `title`, `link`, `guid` (the permalink, `isPermaLink="true"`), `pubDate`
/// (RFC 822 date-time), `description` (the plain-text summary), `content:encoded` (the full HTML),
/// a `category` per category and tag, and the author's name as `dc:creator` (RSS `<author>` must
/// hold an e-mail address, so a bare name there is invalid).
pub fn render(issues: &[&Issue], meta: &FeedMeta<'_>) -> String {
    let items: Vec<Item> = issues.iter().map(|i| item(i)).collect();
    let updated = newest_date(issues).to_rfc2822();
    let channel = Channel {
        title: meta.title.clone(),
        link: meta.home.to_string(),
        description: meta.description.clone(),
        language: Some(meta.language.to_string()),
        generator: Some("feedpost".into()),
        last_build_date: Some(updated.clone()),
        pub_date: Some(updated),
        docs: Some("https://www.rssboard.org/rss-specification".into()),
        atom_ext: Some(AtomExtension {
            links: vec![Link {
                href: meta.self_url.to_string(),
                rel: "self".into(),
                mime_type: Some("application/rss+xml".into()),
                ..Default::default()
            }],
        }),
        items,
        namespaces: BTreeMap::new(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(4096);
    channel
        .pretty_write_to(&mut out, b' ', 2)
        .expect("writing to a Vec cannot fail");
    let mut text = String::from_utf8(out).expect("rss writes UTF-8");
    if !text.starts_with("<?xml") {
        text.insert_str(0, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    }
    text.push('\n');
    text
}

fn item(issue: &Issue) -> Item {
    let categories = issue
        .terms()
        .into_iter()
        .map(|t| Category {
            name: t.to_string(),
            domain: None,
        })
        .collect();
    Item {
        title: Some(issue.title.clone()),
        link: Some(issue.permalink.to_string()),
        description: Some(issue.summary.clone()),
        guid: Some(Guid {
            value: issue.permalink.to_string(),
            permalink: true,
        }),
        pub_date: Some(issue.date.to_rfc2822()),
        content: Some(issue.content_html.clone()),
        categories,
        dublin_core_ext: issue.author.as_ref().map(|a| DublinCoreExtension {
            creators: vec![a.clone()],
            ..Default::default()
        }),
        ..Default::default()
    }
}
