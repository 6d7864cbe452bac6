//! RSS 2.0 (<https://www.rssboard.org/rss-specification>) with the `atom` (self, hub and RFC 5005
//! links), `content`, `dc`, `media` (Media RSS) and `fh` (RFC 5005) namespaces.

use std::collections::BTreeMap;

use ::rss::extension::atom::AtomExtension;
use ::rss::extension::dublincore::DublinCoreExtension;
use ::rss::extension::{Extension, ExtensionMap};
use ::rss::{Category, Channel, Guid, Item};
use chrono::{DateTime, FixedOffset};

use super::atom::{hub_and_history_links, link};
use super::xml::{clean, escape, stylesheet_pi};
use super::{image_type, updated, FeedMeta, FH_NAMESPACE};
use crate::issue::Issue;

const RSS: &str = "application/rss+xml";
const MEDIA: &str = "http://search.yahoo.com/mrss/";

/// Renders an RSS 2.0 document for `issues` (newest first) described by `meta`, with the `rss`
/// crate; returns the whole document as UTF-8 bytes, indented by two spaces.
///
/// After the XML declaration comes an `xml-stylesheet` instruction naming `meta.stylesheet`.
/// The channel has `atom:link` `self` (and `hub` with WebSub), and its RFC 5005 state:
/// `fh:complete`, or `atom:link rel="prev-archive"` for a subscription document, or `fh:archive`
/// with `current`/`prev-archive`/`next-archive` links for an archive document.
///
/// Each item has `title`, `link`, `guid` (the permalink; `isPermaLink` is left at its default,
/// true), `pubDate` (RFC 822 date-time), `description` (the plain-text summary, HTML-escaped: RSS
/// readers take it as HTML), a `category` per
/// category and tag, the author's name as `dc:creator` (RSS `<author>` must hold an e-mail
/// address, so a bare name there is invalid), `content:encoded` (the full HTML), and the cover
/// image as `media:content` with its type (not `enclosure`, whose required length we cannot know
/// without fetching the image). Characters XML 1.0 forbids are dropped from all text.
/// The same input gives the same bytes.
pub fn render(issues: &[&Issue], meta: &FeedMeta) -> Vec<u8> {
    let updated = rfc822(updated(issues, meta));
    let mut links = vec![link("self", meta.self_url.as_str(), Some(RSS))];
    links.extend(hub_and_history_links(meta, RSS));
    // An empty value, not none, keeps the end tag on the start tag's line: no white space inside.
    let extensions = meta.history.extensions(|name| Extension {
        name: name.to_owned(),
        value: Some(String::new()),
        ..Extension::default()
    });
    let namespaces = BTreeMap::from([
        ("fh".to_owned(), FH_NAMESPACE.to_owned()),
        ("media".to_owned(), MEDIA.to_owned()),
    ]);
    let channel = Channel {
        title: clean(&meta.title),
        link: meta.home.to_string(),
        description: clean(&meta.description),
        language: Some(clean(&meta.language)),
        pub_date: Some(updated.clone()),
        last_build_date: Some(updated),
        generator: Some("feedpost".to_owned()),
        docs: Some("https://www.rssboard.org/rss-specification".to_owned()),
        atom_ext: Some(AtomExtension { links }),
        extensions,
        namespaces,
        items: issues.iter().map(|issue| item(issue)).collect(),
        ..Channel::default()
    };
    let size: usize = issues.iter().map(|i| i.content_html.len() + 1024).sum();
    let mut out = channel
        .pretty_write_to(Vec::with_capacity(size + 2048), b' ', 2)
        .expect("writing XML into a Vec<u8> cannot fail");
    // The crate writes the XML declaration and then the `<rss>` element on a new line; the
    // stylesheet instruction goes between them.
    let after_declaration = out.windows(2).position(|w| w == b"?>").map_or(0, |i| i + 2);
    let instruction = format!("\n{}", stylesheet_pi(&meta.stylesheet).trim_end());
    out.splice(after_declaration..after_declaration, instruction.bytes());
    out.push(b'\n');
    out
}

fn item(issue: &Issue) -> Item {
    let mut extensions = ExtensionMap::new();
    if let Some(cover) = &issue.cover {
        let mut attrs = BTreeMap::from([
            ("url".to_owned(), cover.to_string()),
            ("medium".to_owned(), "image".to_owned()),
        ]);
        if let Some(kind) = image_type(cover) {
            attrs.insert("type".to_owned(), kind.to_owned());
        }
        let content = Extension {
            name: "media:content".to_owned(),
            value: Some(String::new()),
            attrs,
            ..Extension::default()
        };
        extensions.insert(
            "media".to_owned(),
            BTreeMap::from([("content".to_owned(), vec![content])]),
        );
    }
    Item {
        title: Some(clean(&issue.title)),
        link: Some(issue.permalink.to_string()),
        // Readers take `description` as HTML: the plain-text summary is escaped, so `<T>` and
        // `A&B` show as written (as in Atom's `summary type="text"` and JSON Feed's `summary`).
        description: Some(escape(&clean(&issue.summary))),
        categories: issue
            .terms()
            .into_iter()
            .map(|term| Category {
                name: clean(term),
                domain: None,
            })
            .collect(),
        guid: Some(Guid {
            value: issue.permalink.to_string(),
            permalink: true,
        }),
        pub_date: Some(rfc822(issue.date)),
        dublin_core_ext: issue.author.as_ref().map(|author| DublinCoreExtension {
            creators: vec![clean(author)],
            ..DublinCoreExtension::default()
        }),
        content: Some(clean(&issue.content_html)),
        extensions,
        ..Item::default()
    }
}

/// An RFC 822 date-time as RSS 2.0 wants it, with a four-digit year, a two-digit day and a
/// numeric zone: `Fri, 08 May 2020 17:00:00 +0800` (chrono's `to_rfc2822` writes `8 May` and
/// panics outside the years 0-9999, so its formatter is given the fields instead).
pub fn rfc822(date: DateTime<FixedOffset>) -> String {
    date.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Document, Format, History, Scope};

    #[test]
    fn the_description_is_plain_text_escaped_for_readers_that_take_it_as_html() {
        let config = crate::config::test_config("title='T'\nbase_url='https://example.org/'");
        let issue = crate::issue::parse(
            "---\ntitle: t\ndate: 2024-01-01\ndescription: 'Vec<T> & SOFAStack&MOSN <b>x</b>'\n---\nbody\n",
            std::path::Path::new("a.md"),
            &config,
        )
        .unwrap();
        let doc = Document {
            path: "rss.xml".into(),
            format: Format::Rss,
            scope: Scope::Site,
            archive: false,
            history: History::Complete,
            entries: vec![0],
            month_start: None,
        };
        let rss = String::from_utf8(render(&[&issue], &doc.meta(&config).unwrap())).unwrap();
        assert!(
            rss.contains("<description><![CDATA[Vec&lt;T&gt; &amp; SOFAStack&amp;MOSN &lt;b&gt;x&lt;/b&gt;]]></description>"),
            "{rss}"
        );
    }

    #[test]
    fn rfc822_dates_keep_their_offset() {
        let d = DateTime::parse_from_rfc3339("2020-05-15T17:00:00+08:00").unwrap();
        assert_eq!(rfc822(d), "Fri, 15 May 2020 17:00:00 +0800");
        let d = DateTime::parse_from_rfc3339("2020-05-08T09:05:00-05:00").unwrap();
        assert_eq!(rfc822(d), "Fri, 08 May 2020 09:05:00 -0500");
    }
}
