//! RSS 2.0 (<https://www.rssboard.org/rss-specification>) with the `atom` (self, hub and RFC 5005
//! links), `content`, `dc`, `media` (Media RSS) and `fh` (RFC 5005) namespaces.

use chrono::{DateTime, FixedOffset};

use super::xml::{self, element, empty};
use super::{image_type, newest_date, FeedMeta, History};
use crate::issue::Issue;

/// Renders an RSS 2.0 document for `issues` (newest first) described by `meta`.
///
/// After the XML declaration comes an `xml-stylesheet` instruction naming `meta.stylesheet`.
/// The channel has `atom:link` `self` (and `hub` with WebSub), and its RFC 5005 state:
/// `fh:complete`, or `atom:link rel="prev-archive"` for a subscription document, or `fh:archive`
/// with `current`/`prev-archive`/`next-archive` links for an archive document.
///
/// Each item has `title`, `link`, `guid` (the permalink, `isPermaLink="true"`), `pubDate`
/// (RFC 822 date-time), `description` (the plain-text summary), a `category` per category and
/// tag, the author's name as `dc:creator` (RSS `<author>` must hold an e-mail address, so a bare
/// name there is invalid), `content:encoded` (the full HTML), and the cover image as
/// `media:content` with its type (not `enclosure`, whose required length we cannot know without
/// fetching the image).
pub fn render(issues: &[&Issue], meta: &FeedMeta) -> String {
    let size: usize = issues.iter().map(|i| i.content_html.len() + 1024).sum();
    let mut out = String::with_capacity(size + 2048);
    xml::prolog(&mut out, Some(&meta.stylesheet));
    out.push_str(concat!(
        "<rss version=\"2.0\"",
        " xmlns:atom=\"http://www.w3.org/2005/Atom\"",
        " xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"",
        " xmlns:dc=\"http://purl.org/dc/elements/1.1/\"",
        " xmlns:fh=\"http://purl.org/syndication/history/1.0\"",
        " xmlns:media=\"http://search.yahoo.com/mrss/\">\n",
        "  <channel>\n"
    ));
    element(&mut out, 4, "title", &meta.title);
    element(&mut out, 4, "link", meta.home.as_str());
    element(&mut out, 4, "description", &meta.description);
    element(&mut out, 4, "language", &meta.language);
    let updated = rfc822(newest_date(issues));
    element(&mut out, 4, "pubDate", &updated);
    element(&mut out, 4, "lastBuildDate", &updated);
    element(&mut out, 4, "generator", "feedpost");
    element(
        &mut out,
        4,
        "docs",
        "https://www.rssboard.org/rss-specification",
    );
    let link = |out: &mut String, rel: &str, href: &str, kind: Option<&str>| {
        empty(
            out,
            4,
            "atom:link",
            &[("href", Some(href)), ("rel", Some(rel)), ("type", kind)],
        );
    };
    link(
        &mut out,
        "self",
        meta.self_url.as_str(),
        Some("application/rss+xml"),
    );
    if let Some(hub) = &meta.hub {
        link(&mut out, "hub", hub.as_str(), None);
    }
    match &meta.history {
        History::Complete => out.push_str("    <fh:complete/>\n"),
        History::Subscription { prev_archive } => link(
            &mut out,
            "prev-archive",
            prev_archive.as_str(),
            Some("application/rss+xml"),
        ),
        History::Archive {
            current,
            prev_archive,
            next_archive,
        } => {
            out.push_str("    <fh:archive/>\n");
            link(
                &mut out,
                "current",
                current.as_str(),
                Some("application/rss+xml"),
            );
            if let Some(prev) = prev_archive {
                link(
                    &mut out,
                    "prev-archive",
                    prev.as_str(),
                    Some("application/rss+xml"),
                );
            }
            if let Some(next) = next_archive {
                link(
                    &mut out,
                    "next-archive",
                    next.as_str(),
                    Some("application/rss+xml"),
                );
            }
        }
        History::Partial => {}
    }
    for issue in issues {
        item(&mut out, issue);
    }
    out.push_str("  </channel>\n</rss>\n");
    out
}

fn item(out: &mut String, issue: &Issue) {
    out.push_str("    <item>\n");
    element(out, 6, "title", &issue.title);
    element(out, 6, "link", issue.permalink.as_str());
    element(out, 6, "description", &issue.summary);
    for term in issue.terms() {
        element(out, 6, "category", term);
    }
    xml::push_indent(out, 6);
    out.push_str("<guid isPermaLink=\"true\">");
    xml::text(out, issue.permalink.as_str());
    out.push_str("</guid>\n");
    element(out, 6, "pubDate", &rfc822(issue.date));
    if let Some(author) = &issue.author {
        element(out, 6, "dc:creator", author);
    }
    if let Some(cover) = &issue.cover {
        empty(
            out,
            6,
            "media:content",
            &[
                ("url", Some(cover.as_str())),
                ("type", image_type(cover)),
                ("medium", Some("image")),
            ],
        );
    }
    xml::push_indent(out, 6);
    out.push_str("<content:encoded>");
    xml::cdata(out, &issue.content_html);
    out.push_str("</content:encoded>\n");
    out.push_str("    </item>\n");
}

/// An RFC 822 date-time as RSS 2.0 wants it, with a four-digit year and a numeric zone:
/// `Fri, 15 May 2020 17:00:00 +0800`.
pub fn rfc822(date: DateTime<FixedOffset>) -> String {
    date.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc822_dates_keep_their_offset() {
        let d = DateTime::parse_from_rfc3339("2020-05-15T17:00:00+08:00").unwrap();
        assert_eq!(rfc822(d), "Fri, 15 May 2020 17:00:00 +0800");
    }
}
