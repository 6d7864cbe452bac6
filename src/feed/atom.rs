//! Atom 1.0 (RFC 4287), built with the `atom_syndication` crate.

use atom_syndication::{Category, Content, Entry, Feed, Generator, Link, Person, Text};

use super::{newest_date, FeedMeta};
use crate::issue::Issue;

/// Renders an Atom feed for `issues` (newest first) described by `meta`.
///
/// The feed's `id` is its own URL; each entry's `id` is the issue permalink (the same value as the
/// RSS guid). Entries carry `title` (text), `published` and `updated` (the issue date, RFC 3339),
/// `author` (the issue's, else the site), a `category` per category and tag, an alternate `link`,
/// `summary` and `content type="html"`.
pub fn render(issues: &[&Issue], meta: &FeedMeta<'_>) -> String {
    let feed = Feed {
        title: Text::plain(meta.title.clone()),
        id: meta.self_url.to_string(),
        updated: newest_date(issues),
        subtitle: Some(Text::plain(meta.description.clone())),
        authors: vec![Person {
            name: meta.title.clone(),
            email: None,
            uri: Some(meta.home.to_string()),
            ..Default::default()
        }],
        generator: Some(Generator {
            value: "feedpost".into(),
            uri: None,
            version: None,
        }),
        links: vec![
            Link {
                href: meta.self_url.to_string(),
                rel: "self".into(),
                mime_type: Some("application/atom+xml".into()),
                ..Default::default()
            },
            Link {
                href: meta.home.to_string(),
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..Default::default()
            },
        ],
        lang: Some(meta.language.to_string()),
        entries: issues.iter().map(|i| entry(i)).collect(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(4096);
    feed.write_with_config(
        &mut out,
        atom_syndication::WriteConfig {
            write_document_declaration: true,
            indent_size: Some(2),
        },
    )
    .expect("writing to a Vec cannot fail");
    let mut text = String::from_utf8(out).expect("atom_syndication writes UTF-8");
    text.push('\n');
    text
}

fn entry(issue: &Issue) -> Entry {
    Entry {
        title: Text::plain(issue.title.clone()),
        id: issue.permalink.to_string(),
        updated: issue.date,
        published: Some(issue.date),
        authors: issue
            .author
            .as_ref()
            .map(|name| Person {
                name: name.clone(),
                email: None,
                uri: issue.author_link.as_ref().map(|u| u.to_string()),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        categories: issue
            .terms()
            .into_iter()
            .map(|t| Category {
                term: t.to_string(),
                scheme: None,
                label: None,
            })
            .collect(),
        links: vec![Link {
            href: issue.permalink.to_string(),
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..Default::default()
        }],
        summary: Some(Text::plain(issue.summary.clone())),
        content: Some(Content {
            value: Some(issue.content_html.clone()),
            content_type: Some("html".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
