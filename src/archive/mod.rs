//! The web archive: a page per issue ("view in browser") and an index of every issue.
//!
//! Third stage of the pipeline, beside the feeds: pure functions from an [`Issue`] (or the
//! [`Listing`]s) and a [`SiteView`] to HTML, written with the maud layout in `web-templates/`.
//! An issue's page lives where its permalink points — `<feeds folder>/<permalink_prefix><slug>/
//! index.html` for `<base_url><permalink_prefix><slug>/` — so the email's "view in browser" link
//! (the permalink) opens it; the index is `<feeds folder>/index.html`, the site's home.

#[path = "../../web-templates/layout.rs"]
mod layout;

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use url::Url;

use crate::config::Config;
use crate::feed::{self, term_slug, Format};
use crate::issue::{Issue, Listing};

/// The pages' stylesheet, written to the feeds folder as [`CSS_FILE`].
pub const CSS: &str = include_str!("../../web-templates/style.css");

/// The stylesheet's file name in the feeds folder.
pub const CSS_FILE: &str = "archive.css";

/// The index page's file name in the feeds folder.
pub const INDEX_FILE: &str = "index.html";

/// How many issues of the index are rendered as one piece.
const INDEX_CHUNK: usize = 1_000;

/// A date as `YYYY-MM-DD`, in its own offset.
fn day(date: DateTime<FixedOffset>) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The layout's source, so a build notices a change to it (see `build`).
pub const LAYOUT_SOURCE: &str = include_str!("../../web-templates/layout.rs");

/// What every page of the site shows, computed once per build from the config.
#[derive(Debug, Clone)]
pub struct SiteView {
    lang: String,
    locale: String,
    title: String,
    description: String,
    home: String,
    css: String,
    /// (label, href, media type) of the main feeds.
    feeds: Vec<(&'static str, String, &'static str)>,
    zh: bool,
}

impl SiteView {
    /// The site as the pages show it.
    ///
    /// # Errors
    /// A feed URL cannot be built from `site.base_url` (not expected for a validated config).
    pub fn new(config: &Config) -> Result<SiteView> {
        let site = &config.site;
        let mut feeds = Vec::new();
        for format in Format::ALL {
            feeds.push((
                format.label(),
                feed::url(config, format.file_name())?.to_string(),
                format.media_type(),
            ));
        }
        Ok(SiteView {
            lang: site.language.clone(),
            locale: site.language.replace('-', "_"),
            title: site.title.clone(),
            description: if site.description.is_empty() {
                site.title.clone()
            } else {
                site.description.clone()
            },
            home: site.base_url.to_string(),
            css: feed::url(config, CSS_FILE)?.to_string(),
            feeds,
            zh: config.is_chinese(),
        })
    }

    fn with_layout<R>(&self, f: impl FnOnce(&layout::Site<'_>) -> R) -> R {
        let feeds: Vec<layout::Link<'_>> = self
            .feeds
            .iter()
            .map(|(label, href, media_type)| layout::Link {
                label,
                href,
                media_type,
            })
            .collect();
        f(&layout::Site {
            lang: &self.lang,
            locale: &self.locale,
            title: &self.title,
            description: &self.description,
            home: &self.home,
            css: &self.css,
            feeds: &feeds,
            words: if self.zh { &layout::ZH } else { &layout::EN },
        })
    }
}

/// The path of an issue's page relative to the feeds folder, `/`-separated and unencoded:
/// `<permalink_prefix><slug>/index.html`.
pub fn page_path(config: &Config, slug: &str) -> String {
    format!("{}{INDEX_FILE}", page_dir(config, slug))
}

/// The folder of an issue's page relative to the feeds folder, `/`-separated, unencoded and
/// ending in `/`: `<permalink_prefix><slug>/`, where its permalink points and a page bundle's
/// resources go.
pub fn page_dir(config: &Config, slug: &str) -> String {
    format!("{}{slug}/", config.site.permalink_prefix)
}

/// A category's or tag's RSS feed: (label, URL). Categories are labelled by name, tags `#name`.
fn term_feed(config: &Config, name: &str, category: bool) -> Result<(String, Url)> {
    let (folder, label) = if category {
        ("categories", name.to_string())
    } else {
        ("tags", format!("#{name}"))
    };
    let path = format!("{folder}/{}/{}", term_slug(name), Format::Rss.file_name());
    Ok((label, feed::url(config, &path)?))
}

/// Renders `issue`'s page (HTML5, UTF-8): the email's content — title, date (`YYYY-MM-DD` in the
/// issue's offset), author, cover, body — with the feeds' autodiscovery links, a canonical link,
/// Open Graph tags (the cover as `og:image`) and a link per category and tag to its RSS feed.
///
/// # Errors
/// A term feed URL cannot be built (not expected for a validated config).
pub fn render_page(config: &Config, site: &SiteView, issue: &Issue) -> Result<String> {
    let names = issue.terms();
    let mut terms = Vec::new();
    for &term in &names {
        let category = issue.categories.iter().any(|c| c == term);
        terms.push(term_feed(config, term, category)?);
    }
    let term_links = rss_links(&terms);
    let date_iso = issue.date.to_rfc3339();
    let date = day(issue.date);
    let page = layout::Page {
        entry: layout::Entry {
            title: &issue.title,
            permalink: issue.permalink.as_str(),
            date_iso: &date_iso,
            date: &date,
        },
        summary: &issue.summary,
        author: issue.author.as_deref(),
        author_link: issue.author_link.as_ref().map(|u| u.as_str()),
        cover: issue.cover.as_ref().map(|u| u.as_str()),
        content_html: &issue.content_html,
        terms: &term_links,
        term_names: &names,
    };
    Ok(site.with_layout(|s| layout::page(s, &page).into_string()))
}

/// Renders the index page: every issue in `listings` (give them newest first) as date and linked
/// title, then a link to the RSS feed of each category and tag in `terms` (`(name, is_category)`).
///
/// # Errors
/// A term feed URL cannot be built (not expected for a validated config).
pub fn render_index(
    config: &Config,
    site: &SiteView,
    listings: &[&Listing],
    terms: &[(&str, bool)],
) -> Result<String> {
    // A large site's list is rendered in pieces on every core, then put together in order.
    let parts: Vec<maud::Markup> = listings
        .par_chunks(INDEX_CHUNK)
        .map(|chunk| {
            let dates: Vec<(String, String)> = chunk
                .iter()
                .map(|l| (l.date.to_rfc3339(), day(l.date)))
                .collect();
            let rows: Vec<layout::Entry<'_>> = chunk
                .iter()
                .zip(&dates)
                .map(|(l, (iso, day))| layout::Entry {
                    title: &l.title,
                    permalink: &l.permalink,
                    date_iso: iso,
                    date: day,
                })
                .collect();
            layout::index_rows(&rows)
        })
        .collect();
    let mut feeds = Vec::new();
    for (name, category) in terms {
        feeds.push(term_feed(config, name, *category)?);
    }
    let links = rss_links(&feeds);
    Ok(site.with_layout(|s| layout::index(s, &parts, &links).into_string()))
}

/// Layout links to the RSS feeds in `feeds` (label, URL), for `<link rel="alternate">` and lists.
fn rss_links<T: AsRef<str>>(feeds: &[(T, url::Url)]) -> Vec<layout::Link<'_>> {
    feeds
        .iter()
        .map(|(label, href)| layout::Link {
            label: label.as_ref(),
            href: href.as_str(),
            media_type: Format::Rss.media_type(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        crate::config::test_config(
            "title='SOFA Weekly'
base_url='https://www.sofastack.tech/'
language='zh-CN'",
        )
    }

    fn issue(config: &Config) -> Issue {
        crate::issue::parse(
            "---\ntitle: \"第 1 期 <QA>\"\nauthor: SOFA 团队\ndate: 2021-07-16T15:00:00+08:00\ncategories: SOFA Weekly\ntags: [\"周报\"]\ncover: /img/c.png\n---\n[归档](/blog/)\n",
            Path::new("/site/issues/2021-07-16-weekly.md"),
            config,
        )
        .unwrap()
    }

    #[test]
    fn page_has_content_autodiscovery_and_open_graph() {
        let config = config();
        let site = SiteView::new(&config).unwrap();
        let html = render_page(&config, &site, &issue(&config)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<h1>第 1 期 &lt;QA&gt;</h1>"), "{html}");
        assert!(html.contains(r#"href="https://www.sofastack.tech/blog/""#));
        assert!(html.contains(r#"<link rel="alternate" type="application/rss+xml" title="SOFA Weekly (RSS)" href="https://www.sofastack.tech/rss.xml">"#), "{html}");
        assert!(html.contains(r#"type="application/atom+xml""#));
        assert!(html.contains(r#"type="application/feed+json""#));
        assert!(
            html.contains(
                r#"<meta property="og:image" content="https://www.sofastack.tech/img/c.png">"#
            ),
            "{html}"
        );
        assert!(html.contains(r#"<meta property="og:url" content="https://www.sofastack.tech/issues/2021-07-16-weekly/">"#));
        assert!(html.contains(
            r#"<link rel="canonical" href="https://www.sofastack.tech/issues/2021-07-16-weekly/">"#
        ));
        assert!(
            html.contains("https://www.sofastack.tech/tags/%E5%91%A8%E6%8A%A5/rss.xml"),
            "{html}"
        );
        assert!(html.contains("https://www.sofastack.tech/categories/sofa-weekly/rss.xml"));
        assert!(html.contains("2021-07-16"));
        assert!(
            html.contains(r#"<meta property="article:tag" content="周报">"#),
            "{html}"
        );
        assert_eq!(
            page_path(&config, "2021-07-16-weekly"),
            "issues/2021-07-16-weekly/index.html"
        );
    }

    #[test]
    fn index_lists_issues_in_the_order_given() {
        let config = config();
        let site = SiteView::new(&config).unwrap();
        let a = issue(&config).listing();
        let mut b = a.clone();
        b.title = "second".into();
        b.permalink = "https://www.sofastack.tech/issues/b/".into();
        let html = render_index(&config, &site, &[&b, &a], &[("MOSN", false)]).unwrap();
        let first = html.find("second").unwrap();
        let second = html.find("第 1 期").unwrap();
        assert!(first < second);
        assert!(html.contains(r##"href="https://www.sofastack.tech/tags/mosn/rss.xml""##));
        assert!(html.contains(">#MOSN<"));
        assert!(html.contains("往期"));
    }
}
