//! Feeds: RSS 2.0, Atom 1.0 and JSON Feed 1.1 documents built from the loaded issues.
//!
//! Third stage of the pipeline, beside the web archive and the email. [`plan`] decides which
//! documents the site has — the main feeds, one set per tag and per category, and the RFC 5005
//! archive documents that hold the main feed's history — and which issues each lists; the
//! renderers ([`rss::render`], [`atom::render`], [`json::render`]) are pure functions of
//! `&[&Issue]` and a [`FeedMeta`], so the same input gives the same bytes. `crate::site` decides
//! which documents need rendering again and writes them.
//!
//! Layout of the feeds folder (the site's output root, served at `site.base_url`):
//!
//! ```text
//! rss.xml atom.xml feed.json                 every issue (newest `feed_entries`)
//! tags/<slug>/{rss.xml,atom.xml,feed.json}   issues with that tag
//! categories/<slug>/{…}                      issues in that category
//! archive/rss/<YYYY-MM>.xml archive/atom/…  RFC 5005 archive documents, one per month
//! feed.xsl                                   the stylesheet browsers use to show a feed
//! ```
//!
//! Tag and category slugs are lowercased; runs of anything but letters and digits become one
//! `-`; non-ASCII letters (CJK) are kept and percent-encoded in URLs (UTF-8), not transliterated.

pub mod atom;
pub mod json;
pub mod rss;
pub mod websub;
pub mod xml;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime};
use url::Url;

use crate::config::Config;
use crate::issue::{percent_encode_segment, Issue, Listing};

/// The XSLT stylesheet linked from every RSS and Atom document, so a browser shows a page.
pub const STYLESHEET: &str = include_str!("../../web-templates/feed.xsl");

/// The stylesheet's file name in the feeds folder.
pub const STYLESHEET_FILE: &str = "feed.xsl";

/// A feed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// RSS 2.0.
    Rss,
    /// Atom 1.0, RFC 4287.
    Atom,
    /// JSON Feed 1.1.
    Json,
}

impl Format {
    /// All formats, in the order documents are listed.
    pub const ALL: [Format; 3] = [Format::Rss, Format::Atom, Format::Json];

    /// The document's file name in its folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Rss => "rss.xml",
            Format::Atom => "atom.xml",
            Format::Json => "feed.json",
        }
    }

    /// The IANA media type (`rel="alternate" type=…` in HTML autodiscovery).
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Rss => "application/rss+xml",
            Format::Atom => "application/atom+xml",
            Format::Json => "application/feed+json",
        }
    }

    /// A short human name: `RSS`, `Atom`, `JSON Feed`.
    pub fn label(self) -> &'static str {
        match self {
            Format::Rss => "RSS",
            Format::Atom => "Atom",
            Format::Json => "JSON Feed",
        }
    }

    /// Renders a document in this format: the whole file, UTF-8 bytes.
    pub fn render(self, issues: &[&Issue], meta: &FeedMeta) -> Vec<u8> {
        match self {
            Format::Rss => rss::render(issues, meta),
            Format::Atom => atom::render(issues, meta),
            Format::Json => json::render(issues, meta),
        }
    }
}

/// Where a document stands in its feed's history (RFC 5005, "Feed Paging and Archiving"). The
/// links are `L`: URLs in a [`FeedMeta`], paths relative to the feeds folder in a [`Document`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum History<L = Url> {
    /// The document lists every entry of its feed: `<fh:complete/>` (§2).
    Complete,
    /// A subscription document holding the newest entries; the older ones are in archive
    /// documents, the newest of which is `prev_archive` (§4).
    Subscription {
        /// The newest archive document.
        prev_archive: L,
    },
    /// An archive document: `<fh:archive/>`, with a `current` link to the subscription document
    /// and links to its older and newer neighbours (§4).
    Archive {
        /// The subscription document.
        current: L,
        /// The next older archive document, if any.
        prev_archive: Option<L>,
        /// The next newer archive document, if any.
        next_archive: Option<L>,
    },
    /// Nothing said: a per-tag feed that shows only its newest entries, or a JSON Feed (which
    /// has no archive documents).
    Partial,
}

impl History<String> {
    /// The same history with each path made a public URL (see [`url()`]).
    ///
    /// # Errors
    /// A URL cannot be built (not expected for a validated config).
    pub fn to_urls(&self, config: &Config) -> Result<History<Url>> {
        let u = |path: &String| url(config, path);
        Ok(match self {
            History::Complete => History::Complete,
            History::Partial => History::Partial,
            History::Subscription { prev_archive } => History::Subscription {
                prev_archive: u(prev_archive)?,
            },
            History::Archive {
                current,
                prev_archive,
                next_archive,
            } => History::Archive {
                current: u(current)?,
                prev_archive: prev_archive.as_ref().map(u).transpose()?,
                next_archive: next_archive.as_ref().map(u).transpose()?,
            },
        })
    }
}

impl History<Url> {
    /// The links this history gives a document (RFC 5005 §4), as `(rel, href)` in the order they
    /// are written: `prev-archive` for a subscription document; `current`, then `prev-archive`
    /// and `next-archive` when there are such neighbours, for an archive document; none else.
    pub fn links(&self) -> Vec<(&'static str, &Url)> {
        match self {
            History::Complete | History::Partial => Vec::new(),
            History::Subscription { prev_archive } => vec![("prev-archive", prev_archive)],
            History::Archive {
                current,
                prev_archive,
                next_archive,
            } => std::iter::once(("current", current))
                .chain(prev_archive.iter().map(|u| ("prev-archive", u)))
                .chain(next_archive.iter().map(|u| ("next-archive", u)))
                .collect(),
        }
    }

    /// The extension elements of the `fh` namespace ([`FH_NAMESPACE`]) this history puts in a
    /// document's head — `fh:complete` (RFC 5005 §2) or `fh:archive` (§4), or none — as the
    /// extension map both feed crates use, each element made by `element` from its qualified
    /// name.
    pub fn extensions<E>(
        &self,
        element: impl FnOnce(&str) -> E,
    ) -> BTreeMap<String, BTreeMap<String, Vec<E>>> {
        let name = match self {
            History::Complete => "complete",
            History::Archive { .. } => "archive",
            History::Subscription { .. } | History::Partial => return BTreeMap::new(),
        };
        let elements = BTreeMap::from([(name.to_owned(), vec![element(&format!("fh:{name}"))])]);
        BTreeMap::from([("fh".to_owned(), elements)])
    }
}

/// The RFC 5005 namespace, declared as `fh` on the root of every RSS and Atom document.
pub const FH_NAMESPACE: &str = "http://purl.org/syndication/history/1.0";

/// What one feed document says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedMeta {
    /// Feed title, plain text.
    pub title: String,
    /// Feed description / subtitle, plain text.
    pub description: String,
    /// The page the feed is the feed of (`rel="alternate"`, RSS `<link>`, JSON `home_page_url`).
    pub home: Url,
    /// The URL this document is served at (`rel="self"`).
    pub self_url: Url,
    /// The feed's Atom `id`: the subscription document's URL, shared by its RFC 5005 archive
    /// documents (one logical feed, RFC 4287 §4.2.6).
    pub id: Url,
    /// Language tag, BCP 47.
    pub language: String,
    /// The site's name, the feed-level author.
    pub site_title: String,
    /// The `href` of the XSLT stylesheet (absolute, same origin as the feed).
    pub stylesheet: String,
    /// The WebSub hub (`rel="hub"`), if configured.
    pub hub: Option<Url>,
    /// RFC 5005 history.
    pub history: History,
    /// The update time the document gives when it lists no issue (see [`updated`]).
    pub empty_updated: DateTime<FixedOffset>,
}

/// Which feed a document belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every issue.
    Site,
    /// Issues with one tag (`name` as first written, `slug` as in the path).
    Tag {
        /// The tag as written in the newest issue that carries it.
        name: String,
        /// Its slug (unencoded).
        slug: String,
    },
    /// Issues in one category.
    Category {
        /// The category as written in the newest issue that carries it.
        name: String,
        /// Its slug (unencoded).
        slug: String,
    },
}

/// One feed document to write: what it is and which issues it lists. Its [`FeedMeta`] (URLs
/// and all) is made only for the documents that are rendered ([`Document::meta`]).
#[derive(Debug, Clone)]
pub struct Document {
    /// The file, relative to the feeds folder, `/`-separated, unencoded.
    pub path: String,
    /// Its format.
    pub format: Format,
    /// Its feed.
    pub scope: Scope,
    /// Whether it is an RFC 5005 archive document (rather than a subscription document).
    pub archive: bool,
    /// Its RFC 5005 history, with paths relative to the feeds folder.
    pub history: History<String>,
    /// The issues it lists, newest first, as indices into the list given to [`plan`].
    pub entries: Vec<usize>,
    /// For an archive document, the first instant of its month (UTC): the update time it
    /// gives when it lists no issue.
    pub month_start: Option<DateTime<FixedOffset>>,
}

impl Document {
    /// What the document says about itself: title, description, URLs, stylesheet, hub, history.
    ///
    /// # Errors
    /// A URL cannot be built from `site.base_url` (not expected for a validated config).
    pub fn meta(&self, config: &Config) -> Result<FeedMeta> {
        let site = &config.site;
        let description = if site.description.is_empty() {
            site.title.clone()
        } else {
            site.description.clone()
        };
        let title = match &self.scope {
            Scope::Site => site.title.clone(),
            Scope::Tag { name, .. } | Scope::Category { name, .. } => {
                format!("{} · {name}", site.title)
            }
        };
        let self_url = url(config, &self.path)?;
        let id = match &self.history {
            History::Archive { current, .. } => url(config, current)?,
            _ => self_url.clone(),
        };
        Ok(FeedMeta {
            title,
            description,
            home: site.base_url.clone(),
            self_url,
            id,
            language: site.language.clone(),
            site_title: site.title.clone(),
            stylesheet: stylesheet_href(config),
            hub: site.websub_hub.clone(),
            history: self.history.to_urls(config)?,
            empty_updated: self
                .month_start
                .unwrap_or(DateTime::UNIX_EPOCH.fixed_offset()),
        })
    }
}

/// The slug of a tag or category: lowercased, every run of characters other than letters and
/// digits (Unicode) turned into one `-`, no `-` at either end. CJK letters stay as they are (they
/// are percent-encoded in URLs by [`percent_encode_segment`]). A term with no letter or digit
/// gets `term-` and the hex of its UTF-8 bytes, so every term has a non-empty, safe slug.
pub fn term_slug(term: &str) -> String {
    let mut slug = String::with_capacity(term.len());
    for c in term.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        slug.push_str("term-");
        slug.push_str(&hex::encode(term));
    }
    slug
}

/// Every feed document of the site for `published` (the issues listed in feeds, newest first).
///
/// - the main feeds in each [`Format`]: the newest `site.feed_entries` issues, marked complete
///   when that is all of them;
/// - when it is not, RFC 5005 archive documents (RSS and Atom), one per calendar month (in
///   each issue's own offset), from the oldest issue's month to the month before the newest
///   issue's (a month without issues gets an empty one, so the chain has no gaps). An issue's
///   month alone decides which document holds it: adding or deleting an old issue changes
///   only that month's document, and an archive document never changes as newer issues
///   arrive, so readers may cache it (§4). The RSS and Atom subscription documents link the
///   newest archive document when they hold every issue of the newest month; while that month
///   has more issues than `feed_entries`, some are in neither, so the feed claims no history
///   (it is partial) until the month is archived;
/// - per tag and per category, the three formats with that term's newest `feed_entries` issues,
///   marked complete when that is all of them.
///
/// Sorted by path.
pub fn plan(published: &[&Listing], config: &Config) -> Vec<Document> {
    let mut docs = main_documents(published, config.site.feed_entries);
    docs.extend(term_documents(published, config.site.feed_entries));
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    docs
}

/// A calendar month, the unit of the archive: (year, month 1-12).
type Month = (i32, u32);

/// The month of `date`, in its own offset.
fn month_of(date: DateTime<FixedOffset>) -> Month {
    (date.year(), date.month())
}

/// The month after `m`.
fn next_month((year, month): Month) -> Month {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// The main feeds and their RFC 5005 archive documents for `published` (newest first), `n`
/// per feed (see [`plan`]).
fn main_documents(published: &[&Listing], n: usize) -> Vec<Document> {
    let count = published.len();
    // Months from the oldest issue's up to the newest issue's, which is not archived yet.
    let mut months: Vec<Month> = Vec::new();
    if let (true, Some(newest), Some(oldest)) = (count > n, published.first(), published.last()) {
        let (mut m, last) = (month_of(oldest.date), month_of(newest.date));
        while m < last {
            months.push(m);
            m = next_month(m);
        }
    }
    // Issues of the newest month (not archived) come first in `published`.
    let unarchived = published
        .iter()
        .take_while(|l| months.last().is_none_or(|m| month_of(l.date) > *m))
        .count();
    let mut docs = Vec::new();
    for format in Format::ALL {
        let history = match (months.last(), format) {
            _ if count <= n => History::Complete,
            (Some(&newest), Format::Rss | Format::Atom) if unarchived <= n => {
                History::Subscription {
                    prev_archive: archive_path(format, newest),
                }
            }
            _ => History::Partial,
        };
        docs.push(Document {
            path: format.file_name().to_string(),
            format,
            scope: Scope::Site,
            archive: false,
            history,
            entries: (0..count.min(n)).collect(),
            month_start: None,
        });
        if format != Format::Json {
            docs.extend(archive_documents(published, &months, format));
        }
    }
    docs
}

/// The archive documents in `format` of `months` (oldest first), each listing its month's
/// issues of `published` newest first.
fn archive_documents(published: &[&Listing], months: &[Month], format: Format) -> Vec<Document> {
    let mut members: HashMap<Month, Vec<usize>> = HashMap::new();
    for (index, listing) in published.iter().enumerate() {
        members
            .entry(month_of(listing.date))
            .or_default()
            .push(index);
    }
    (months.iter().enumerate())
        .map(|(k, &month)| Document {
            path: archive_path(format, month),
            format,
            scope: Scope::Site,
            archive: true,
            history: History::Archive {
                current: format.file_name().to_string(),
                prev_archive: k.checked_sub(1).map(|p| archive_path(format, months[p])),
                next_archive: months.get(k + 1).map(|&m| archive_path(format, m)),
            },
            entries: members.remove(&month).unwrap_or_default(),
            month_start: NaiveDate::from_ymd_opt(month.0, month.1, 1)
                .map(|d| d.and_time(NaiveTime::MIN).and_utc().fixed_offset()),
        })
        .collect()
}

/// The feeds of each category and tag of `published`, with the newest `n` issues each (see
/// [`plan`]). A term's name is taken from the newest issue that uses it. Slugs are computed
/// once per distinct spelling; groups are keyed by (kind, slug number).
fn term_documents(published: &[&Listing], n: usize) -> Vec<Document> {
    let mut slug_of: HashMap<&str, usize> = HashMap::new();
    let mut slugs: Vec<String> = Vec::new();
    let mut groups: HashMap<GroupKey, Group<'_>> = HashMap::new();
    for (index, issue) in published.iter().enumerate() {
        for (kind, terms) in [(0u8, &issue.categories), (1u8, &issue.tags)] {
            for term in terms {
                let slug = *slug_of.entry(term.as_str()).or_insert_with(|| {
                    let slug = term_slug(term);
                    match slugs.iter().position(|s| *s == slug) {
                        Some(known) => known,
                        None => {
                            slugs.push(slug);
                            slugs.len() - 1
                        }
                    }
                });
                let group = groups
                    .entry((kind, slug))
                    .or_insert_with(|| (term.as_str(), Vec::new()));
                if group.1.last() != Some(&index) {
                    group.1.push(index);
                }
            }
        }
    }
    let mut docs = Vec::new();
    for ((kind, slug), (name, members)) in groups {
        let slug = &slugs[slug];
        let (folder, scope) = if kind == 0 {
            let (name, slug) = (name.to_string(), slug.clone());
            ("categories", Scope::Category { name, slug })
        } else {
            let (name, slug) = (name.to_string(), slug.clone());
            ("tags", Scope::Tag { name, slug })
        };
        let history = if members.len() <= n {
            History::Complete
        } else {
            History::Partial
        };
        for format in Format::ALL {
            docs.push(Document {
                path: format!("{folder}/{slug}/{}", format.file_name()),
                format,
                scope: scope.clone(),
                archive: false,
                history: history.clone(),
                entries: members.iter().copied().take(n).collect(),
                month_start: None,
            });
        }
    }
    docs
}

/// A tag or category group in [`plan`]: (0 for categories, 1 for tags; the slug's number).
type GroupKey = (u8, usize);

/// A group's name (from the newest issue) and members (indices, newest first).
type Group<'a> = (&'a str, Vec<usize>);

/// The path of the archive document of `month` of the main feed in `format`:
/// `archive/<format>/<YYYY>-<MM>.xml`.
fn archive_path(format: Format, (year, month): Month) -> String {
    let kind = match format {
        Format::Rss => "rss",
        Format::Atom => "atom",
        Format::Json => "json",
    };
    format!("archive/{kind}/{year:04}-{month:02}.xml")
}

/// The public URL of `path` (relative to the feeds folder, unencoded, `/`-separated): each
/// segment percent-encoded, joined to `site.base_url`.
///
/// # Errors
/// The joined URL is invalid (not expected: every segment is encoded).
pub fn url(config: &Config, path: &str) -> Result<Url> {
    let encoded: Vec<String> = path.split('/').map(percent_encode_segment).collect();
    config
        .site
        .base_url
        .join(&encoded.join("/"))
        .with_context(|| format!("cannot build the URL of `{path}` from `site.base_url`"))
}

/// The URL a browser fetches the XSLT stylesheet from: [`STYLESHEET_FILE`] under
/// `site.base_url` (absolute, like every link feedpost writes; browsers load an XSLT only from
/// the feed's own origin, which this is).
pub fn stylesheet_href(config: &Config) -> String {
    format!("{}{STYLESHEET_FILE}", config.site.base_url)
}

/// Writes `bytes` to `path` through a temporary file and a rename, unless the file already holds
/// exactly these bytes. Returns whether it wrote.
///
/// # Errors
/// The parent folder cannot be created, or the file cannot be written or renamed.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    write_file(path, bytes, true)
}

/// As [`write_if_changed`]; with `may_exist = false` (the caller knows the file is not there)
/// it skips looking at the old file and writes the file in place: the temporary file and rename
/// only matter when replacing a file someone may be reading.
///
/// # Errors
/// The parent folder cannot be created, or the file cannot be written or renamed.
pub fn write_file(path: &Path, bytes: &[u8], may_exist: bool) -> Result<bool> {
    if may_exist
        && std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64)
        && std::fs::read(path).is_ok_and(|old| old == bytes)
    {
        return Ok(false);
    }
    let target = if may_exist {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp~");
        PathBuf::from(tmp)
    } else {
        path.to_path_buf()
    };
    if let Err(e) = std::fs::write(&target, bytes) {
        // Most often the folder is missing: create it and try once more.
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        match (e.kind(), parent) {
            (std::io::ErrorKind::NotFound, Some(parent)) => {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("failed to create the folder `{}`", parent.display())
                })?;
                std::fs::write(&target, bytes)
                    .with_context(|| format!("failed to write `{}`", target.display()))?;
            }
            _ => return Err(e).with_context(|| format!("failed to write `{}`", target.display())),
        }
    }
    if may_exist {
        std::fs::rename(&target, path)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(true)
}

/// When the document `meta` describes, listing `issues`, was last updated: the newest issue's
/// date, or, listing none, `meta.empty_updated` (an archive document's month; the Unix epoch
/// for a site without issues), so an empty document still has a stable date.
pub fn updated(issues: &[&Issue], meta: &FeedMeta) -> DateTime<FixedOffset> {
    issues
        .iter()
        .map(|i| i.date)
        .max()
        .unwrap_or(meta.empty_updated)
}

/// The media type of an image, from the extension of its URL path (`png`, `jpg`/`jpeg`, `gif`,
/// `webp`, `avif`, `svg`); `None` when the extension says nothing.
pub fn image_type(url: &Url) -> Option<&'static str> {
    let path = url.path();
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(entries: usize) -> Config {
        crate::config::test_config(&format!(
            "title='T'
base_url='https://example.org/news/'
feed_entries={entries}"
        ))
    }

    fn listing(i: usize, tags: &[&str]) -> Listing {
        Listing {
            slug: format!("i{i}"),
            title: format!("Issue {i}"),
            date: DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap()
                + chrono::Duration::days(i as i64),
            draft: false,
            categories: vec!["Weekly".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            permalink: format!("https://example.org/news/issues/i{i}/"),
        }
    }

    /// The slugs of the entries of the document at `path`, in its order.
    fn entry_slugs<'a>(docs: &[Document], refs: &[&'a Listing], path: &str) -> Vec<&'a str> {
        let doc = docs.iter().find(|d| d.path == path).unwrap();
        doc.entries.iter().map(|&e| refs[e].slug.as_str()).collect()
    }

    #[test]
    fn slugs_are_lowercase_dashed_and_keep_cjk() {
        assert_eq!(term_slug("SOFA Weekly"), "sofa-weekly");
        assert_eq!(term_slug("  C++ / Rust!  "), "c-rust");
        assert_eq!(term_slug("周报"), "周报");
        assert_eq!(term_slug("../etc"), "etc");
        assert_eq!(term_slug("!!"), "term-2121");
        assert_eq!(
            url(&config(20), "tags/周报/rss.xml").unwrap().as_str(),
            "https://example.org/news/tags/%E5%91%A8%E6%8A%A5/rss.xml"
        );
    }

    #[test]
    fn small_site_feeds_are_complete() {
        let issues: Vec<Listing> = (0..3).rev().map(|i| listing(i, &["MOSN"])).collect();
        let refs: Vec<&Listing> = issues.iter().collect();
        let docs = plan(&refs, &config(20));
        let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "atom.xml",
                "categories/weekly/atom.xml",
                "categories/weekly/feed.json",
                "categories/weekly/rss.xml",
                "feed.json",
                "rss.xml",
                "tags/mosn/atom.xml",
                "tags/mosn/feed.json",
                "tags/mosn/rss.xml",
            ]
        );
        assert!(docs.iter().all(|d| d.history == History::Complete));
        let c = config(20);
        assert_eq!(docs[0].meta(&c).unwrap().title, "T");
        assert_eq!(docs[1].meta(&c).unwrap().title, "T · Weekly");
        assert_eq!(
            docs[1].meta(&c).unwrap().self_url.as_str(),
            "https://example.org/news/categories/weekly/atom.xml"
        );
        assert_eq!(docs[5].entries, [0, 1, 2]);
    }

    #[test]
    fn large_site_gets_stable_archive_documents() {
        // 25 weekly issues from Monday 2024-01-01 (i24: 2024-06-17), 4 per feed: archive
        // documents for January to May; June's three issues are in the subscription document.
        let issues = weekly(25);
        let refs: Vec<&Listing> = issues.iter().collect();
        let docs = plan(&refs, &config(4));
        let rss_archives: Vec<&str> = (docs.iter())
            .filter(|d| d.archive && d.format == Format::Rss)
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(
            rss_archives,
            ["01", "02", "03", "04", "05"].map(|m| format!("archive/rss/2024-{m}.xml"))
        );
        let slugs = entry_slugs(&docs, &refs, "archive/rss/2024-01.xml");
        assert_eq!(slugs, ["i4", "i3", "i2", "i1", "i0"]);
        let first = docs.iter().find(|d| d.path == rss_archives[0]).unwrap();
        let meta = first.meta(&config(4)).unwrap();
        assert_eq!(meta.id.as_str(), "https://example.org/news/rss.xml");
        assert_eq!(
            meta.history,
            History::Archive {
                current: Url::parse("https://example.org/news/rss.xml").unwrap(),
                prev_archive: None,
                next_archive: Some(
                    Url::parse("https://example.org/news/archive/rss/2024-02.xml").unwrap()
                ),
            }
        );
        let main = docs.iter().find(|d| d.path == "rss.xml").unwrap();
        assert_eq!(
            main.history,
            History::Subscription {
                prev_archive: "archive/rss/2024-05.xml".to_string()
            }
        );
        // The newest four, June's three among them.
        assert_eq!(
            entry_slugs(&docs, &refs, "rss.xml"),
            ["i24", "i23", "i22", "i21"]
        );
        let json = docs.iter().find(|d| d.path == "feed.json").unwrap();
        assert_eq!(json.history, History::Partial);

        // One more issue leaves every archive document's entries as they were.
        let more = weekly(26);
        let refs2: Vec<&Listing> = more.iter().collect();
        let docs2 = plan(&refs2, &config(4));
        assert_eq!(
            entry_slugs(&docs2, &refs2, "archive/rss/2024-01.xml"),
            slugs
        );
    }

    /// `n` issues a week apart from 2024-01-01, newest first.
    fn weekly(n: usize) -> Vec<Listing> {
        (0..n)
            .rev()
            .map(|i| {
                let mut l = listing(i, &[]);
                l.date = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap()
                    + chrono::Duration::weeks(i as i64);
                l
            })
            .collect()
    }

    /// Every document's path and entries (as slugs) in a plan of `issues`.
    fn contents(issues: &[Listing], n: usize) -> BTreeMap<String, Vec<String>> {
        let refs: Vec<&Listing> = issues.iter().collect();
        let docs = plan(&refs, &config(n));
        (docs.iter())
            .map(|d| {
                let slugs = d.entries.iter().map(|&e| refs[e].slug.clone()).collect();
                (d.path.clone(), slugs)
            })
            .collect()
    }

    /// The paths whose contents differ between `a` and `b` (or that only one has).
    fn differ(a: &BTreeMap<String, Vec<String>>, b: &BTreeMap<String, Vec<String>>) -> Vec<String> {
        let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        paths
            .into_iter()
            .filter(|p| a.get(*p) != b.get(*p))
            .cloned()
            .collect()
    }

    #[test]
    fn deleting_or_adding_an_old_issue_changes_only_its_months_archive_document() {
        let issues = weekly(25);
        let before = contents(&issues, 4);
        // i6 is 2024-02-12.
        let deleted: Vec<Listing> = issues.iter().filter(|l| l.slug != "i6").cloned().collect();
        assert_eq!(
            differ(&before, &contents(&deleted, 4)),
            ["archive/atom/2024-02.xml", "archive/rss/2024-02.xml"]
        );
        // A backdated issue in March.
        let mut added = issues.clone();
        let mut old = listing(99, &[]);
        old.categories.clear();
        old.date = DateTime::parse_from_rfc3339("2024-03-02T12:00:00+08:00").unwrap();
        added.push(old);
        added.sort_by(|a, b| crate::issue::newest_first(a.date, &a.slug, b.date, &b.slug));
        assert_eq!(
            differ(&before, &contents(&added, 4)),
            ["archive/atom/2024-03.xml", "archive/rss/2024-03.xml"]
        );
        // Emptying a month keeps its document, so the chain's links do not move.
        let empty: Vec<Listing> = (issues.iter())
            .filter(|l| !["i5", "i6", "i7", "i8"].contains(&l.slug.as_str()))
            .cloned()
            .collect();
        let after = contents(&empty, 4);
        assert_eq!(after["archive/rss/2024-02.xml"], Vec::<String>::new());
        // An empty document dates itself at the start of its month (not 1970, which the
        // feed validator calls implausible).
        let refs: Vec<&Listing> = empty.iter().collect();
        let docs = plan(&refs, &config(4));
        let february = docs.iter().find(|d| d.path == "archive/atom/2024-02.xml");
        let meta = february.unwrap().meta(&config(4)).unwrap();
        assert_eq!(
            updated(&[], &meta).to_rfc3339(),
            "2024-02-01T00:00:00+00:00"
        );
        assert_eq!(
            differ(&before, &after)
                .into_iter()
                .filter(|p| p.starts_with("archive/"))
                .collect::<Vec<_>>(),
            ["archive/atom/2024-02.xml", "archive/rss/2024-02.xml"]
        );
    }

    #[test]
    fn a_newest_month_with_more_than_feed_entries_makes_the_feed_partial() {
        // 10 daily issues in January and one on 2024-02-01, 4 per feed.
        let mut issues: Vec<Listing> = (0..10).rev().map(|i| listing(i, &[])).collect();
        let mut feb = listing(31, &[]);
        feb.date = DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z").unwrap();
        issues.insert(0, feb);
        let c = contents(&issues, 4);
        assert_eq!(c["rss.xml"], ["i31", "i9", "i8", "i7"]);
        assert_eq!(c["archive/rss/2024-01.xml"].len(), 10);
        let main = |issues: &[Listing]| {
            let refs: Vec<&Listing> = issues.iter().collect();
            let docs = plan(&refs, &config(4));
            docs.into_iter()
                .find(|d| d.path == "rss.xml")
                .unwrap()
                .history
        };
        assert!(matches!(main(&issues), History::Subscription { .. }));
        // All of January: more than four issues that are in no archive document yet.
        let c = contents(&issues[1..], 4);
        assert_eq!(c["rss.xml"], ["i9", "i8", "i7", "i6"]);
        assert!(!c.keys().any(|p| p.starts_with("archive/")));
        assert_eq!(main(&issues[1..]), History::Partial);
    }

    #[test]
    fn tag_spellings_share_one_feed() {
        let issues = [listing(2, &["Rust"]), listing(1, &["rust"])];
        let refs: Vec<&Listing> = issues.iter().collect();
        let docs = plan(&refs, &config(20));
        let tag = docs.iter().find(|d| d.path == "tags/rust/rss.xml").unwrap();
        assert_eq!(tag.entries, [0, 1]);
        assert_eq!(tag.meta(&config(20)).unwrap().title, "T · Rust");
    }

    #[test]
    fn files_are_written_only_when_their_bytes_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/rss.xml");
        assert!(write_file(&path, b"one", false).unwrap());
        assert!(!write_if_changed(&path, b"one").unwrap());
        assert!(write_if_changed(&path, b"two").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("a/b/rss.xml.tmp~").exists());
    }

    #[test]
    fn image_types_from_extensions() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(image_type(&u("https://cdn/x/a.PNG")), Some("image/png"));
        assert_eq!(image_type(&u("https://cdn/a.jpeg?x=1")), Some("image/jpeg"));
        assert_eq!(image_type(&u("https://cdn/a")), None);
    }
}
