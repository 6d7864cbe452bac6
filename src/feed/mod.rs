//! Feeds: RSS 2.0 and Atom 1.0 documents built from the loaded issues.
//!
//! Third stage of the pipeline, beside the email: a pure function of `&[Issue]` and the site
//! config per format ([`rss::render`], [`atom::render`]), so the same input gives the same bytes.
//! [`write_all`] puts them in the feeds folder, rewriting a file only when its bytes change.

pub mod atom;
pub mod rss;

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use url::Url;

use crate::config::Config;
use crate::issue::Issue;

/// What one feed document describes: the whole site, or later one tag or category.
#[derive(Debug, Clone)]
pub struct FeedMeta<'a> {
    /// Feed title.
    pub title: String,
    /// Feed description / subtitle.
    pub description: String,
    /// The page the feed is the feed of (`rel="alternate"`).
    pub home: Url,
    /// The URL this document is served at (`rel="self"`); also the Atom feed id.
    pub self_url: Url,
    /// Language tag, BCP 47.
    pub language: &'a str,
}

/// The issues a feed lists: published (not draft, not in the future at `now`), newest first, at
/// most `site.feed_entries` of them.
pub fn entries<'a>(
    issues: &'a [Issue],
    config: &Config,
    now: DateTime<FixedOffset>,
) -> Vec<&'a Issue> {
    issues
        .iter()
        .filter(|i| i.is_published_at(now))
        .take(config.site.feed_entries)
        .collect()
}

/// The main feeds' descriptions for the site.
///
/// # Errors
/// None in practice: the file names are valid relative URLs.
pub fn site_meta<'a>(config: &'a Config, file: &str) -> Result<FeedMeta<'a>> {
    let site = &config.site;
    Ok(FeedMeta {
        title: site.title.clone(),
        description: if site.description.is_empty() {
            site.title.clone()
        } else {
            site.description.clone()
        },
        home: site.base_url.clone(),
        self_url: site
            .base_url
            .join(file)
            .context("cannot build the feed URL")?,
        language: &site.language,
    })
}

/// Writes `rss.xml` and `atom.xml` for `issues` (sorted newest first) into the feeds folder.
///
/// Returns the number of files whose bytes changed.
///
/// # Errors
/// The folder cannot be created or a file cannot be written.
pub fn write_all(issues: &[Issue], config: &Config, now: DateTime<FixedOffset>) -> Result<usize> {
    let listed = entries(issues, config, now);
    let dir = &config.site.feeds;
    let mut changed = 0;
    let rss = rss::render(&listed, &site_meta(config, "rss.xml")?);
    changed += usize::from(write_if_changed(&dir.join("rss.xml"), rss.as_bytes())?);
    let atom = atom::render(&listed, &site_meta(config, "atom.xml")?);
    changed += usize::from(write_if_changed(&dir.join("atom.xml"), atom.as_bytes())?);
    Ok(changed)
}

/// Writes `bytes` to `path` through a temporary file and a rename, unless the file already holds
/// exactly these bytes. Returns whether it wrote.
///
/// # Errors
/// The parent folder cannot be created, or the file cannot be written or renamed.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create the folder `{}`", parent.display()))?;
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).with_context(|| format!("failed to write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(true)
}

/// The newest date among `issues`, or the Unix epoch when there are none (so an empty feed still
/// has a stable `updated`).
pub fn newest_date(issues: &[&Issue]) -> DateTime<FixedOffset> {
    issues
        .iter()
        .map(|i| i.date)
        .max()
        .unwrap_or_else(|| DateTime::UNIX_EPOCH.fixed_offset())
}
