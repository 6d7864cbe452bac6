//! Atom 1.0 (RFC 4287) with RFC 5005 history (`fh`) and WebSub `hub` links, written with the
//! `atom_syndication` crate.

use std::collections::BTreeMap;

use atom_syndication::extension::Extension;
use atom_syndication::{
    Category, Content, Entry, Feed, Generator, Link, Person, Text, WriteConfig,
};

use super::xml::{clean, stylesheet_pi};
use super::{image_type, updated, FeedMeta, FH_NAMESPACE};
use crate::issue::Issue;

const ATOM: &str = "application/atom+xml";

/// Renders an Atom feed for `issues` (newest first) described by `meta`, with the
/// `atom_syndication` crate; returns the whole document as UTF-8 bytes, indented by two spaces.
///
/// After the XML declaration comes an `xml-stylesheet` instruction naming `meta.stylesheet`.
/// The feed's `id` is the subscription document's URL (an archive document shares it); it has
/// `self` and `alternate` links, a `hub` link with WebSub, and its RFC 5005 state
/// (`fh:complete`; a `prev-archive` link; or `fh:archive` with `current`, `prev-archive` and
/// `next-archive` links). Each entry's `id` is the issue permalink (the same value as the RSS
/// guid and the JSON Feed id). Entries carry `title` (text), `published` and `updated` (the issue
/// date, RFC 3339), `author` (the issue's; the feed-level author, the site, covers the others), a
/// `category` per category and tag, an `alternate` link, the cover image as a `rel="enclosure"`
/// link with its type, `summary` (text) and `content type="html"`. Characters XML 1.0 forbids
/// are dropped from all text. The same input gives the same bytes.
pub fn render(issues: &[&Issue], meta: &FeedMeta) -> Vec<u8> {
    let mut links = vec![
        link("self", meta.self_url.as_str(), Some(ATOM)),
        link("alternate", meta.home.as_str(), Some("text/html")),
    ];
    links.extend(hub_and_history_links(meta, ATOM));
    // An empty value, not none, keeps the end tag on the start tag's line: no white space inside.
    let extensions = meta.history.extensions(|name| Extension {
        name: name.to_owned(),
        value: Some(String::new()),
        ..Extension::default()
    });
    let feed = Feed {
        title: Text::plain(clean(&meta.title)),
        subtitle: Some(Text::plain(clean(&meta.description))),
        id: meta.id.to_string(),
        updated: updated(issues, meta),
        authors: vec![Person {
            name: clean(&meta.site_title),
            uri: Some(meta.home.to_string()),
            ..Person::default()
        }],
        generator: Some(Generator {
            value: "feedpost".to_owned(),
            ..Generator::default()
        }),
        links,
        entries: issues.iter().map(|issue| entry(issue)).collect(),
        extensions,
        namespaces: BTreeMap::from([("fh".to_owned(), FH_NAMESPACE.to_owned())]),
        lang: Some(clean(&meta.language)),
        ..Feed::default()
    };
    let size: usize = issues
        .iter()
        .map(|i| i.content_html.len() * 5 / 4 + 1024)
        .sum();
    let mut buf = Vec::with_capacity(size + 2048);
    // The declaration and the stylesheet instruction are ours; the crate writes the `<feed>`.
    buf.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    buf.extend_from_slice(stylesheet_pi(&meta.stylesheet).as_bytes());
    let config = WriteConfig {
        write_document_declaration: false,
        indent_size: Some(2),
    };
    let mut out = feed
        .write_with_config(buf, config)
        .expect("writing XML into a Vec<u8> cannot fail");
    out.push(b'\n');
    out
}

/// The links after a document's own: the WebSub hub (`rel="hub"`, no type), then the RFC 5005
/// history links (see [`History::links`](super::History::links)) to documents of media type
/// `kind`. Shared by Atom and RSS (as `atom:link`).
pub(super) fn hub_and_history_links<'a>(
    meta: &'a FeedMeta,
    kind: &'a str,
) -> impl Iterator<Item = Link> + 'a {
    let hub = meta.hub.iter().map(|hub| link("hub", hub.as_str(), None));
    let history = meta.history.links().into_iter();
    hub.chain(history.map(move |(rel, href)| link(rel, href.as_str(), Some(kind))))
}

/// An Atom link (also RSS's `atom:link`) with `rel` to `href`, of media type `kind` when known.
pub(super) fn link(rel: &str, href: &str, kind: Option<&str>) -> Link {
    Link {
        href: href.to_owned(),
        rel: rel.to_owned(),
        mime_type: kind.map(str::to_owned),
        ..Link::default()
    }
}

fn entry(issue: &Issue) -> Entry {
    let mut links = vec![link(
        "alternate",
        issue.permalink.as_str(),
        Some("text/html"),
    )];
    if let Some(cover) = &issue.cover {
        links.push(link("enclosure", cover.as_str(), image_type(cover)));
    }
    Entry {
        title: Text::plain(clean(&issue.title)),
        id: issue.permalink.to_string(),
        updated: issue.date,
        published: Some(issue.date),
        authors: issue
            .author
            .as_ref()
            .map(|author| Person {
                name: clean(author),
                uri: issue.author_link.as_ref().map(|u| u.to_string()),
                ..Person::default()
            })
            .into_iter()
            .collect(),
        categories: issue
            .terms()
            .into_iter()
            .map(|term| Category {
                term: clean(term),
                ..Category::default()
            })
            .collect(),
        links,
        summary: Some(Text::plain(clean(&issue.summary))),
        content: Some(Content {
            value: Some(clean(&issue.content_html)),
            content_type: Some("html".to_owned()),
            ..Content::default()
        }),
        ..Entry::default()
    }
}
