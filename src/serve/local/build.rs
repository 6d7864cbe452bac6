//! The local preview's builds: the site built as it is on disk, with `base_url` at the local
//! address, into a folder of its own under the build cache — never over the real feeds folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use url::Url;

use crate::config::Config;
use crate::site::Site;

/// Where the local preview keeps its build, under the site's folder: its own manifest and its
/// own output folder, apart from `build`'s.
pub(crate) const FOLDER: &str = ".feedpost-cache/serve";

/// Reads the permalinks of the issues already mailed (see [`crate::cmd::mailed_issues`]).
pub type Mailed = dyn Fn(&Config) -> Result<Vec<String>> + Send + Sync;

/// One issue as the overview shows it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) slug: String,
    pub(crate) title: String,
    pub(crate) date: DateTime<FixedOffset>,
    pub(crate) draft: bool,
    /// Dated after the build.
    pub(crate) future: bool,
    /// The ledger has deliveries of it.
    pub(crate) mailed: bool,
    /// Whether the build listed it (its page exists).
    pub(crate) built: bool,
    /// Its permalink on the local server.
    pub(crate) permalink: String,
}

/// What the last build left: the config it used, the issues and what went wrong.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The site's config with `base_url` at the local address (see [`localize`]).
    pub(crate) config: Arc<Config>,
    /// Every good issue, newest first.
    pub(crate) issues: Vec<Entry>,
    /// Problems as `file:line: message`: bad issue files, a config that no longer loads (the
    /// build then used the last good one), a ledger that cannot be read.
    pub(crate) errors: Vec<String>,
}

/// `real` as the local preview builds it: `base_url` at `base`, no WebSub hub, and the build
/// cache and output folder under [`FOLDER`].
pub(crate) fn localize(real: &Config, base: &Url) -> Config {
    let mut local = real.clone();
    local.site.base_url = base.clone();
    local.site.websub_hub = None;
    local.root = real.root.join(FOLDER);
    local.site.feeds = local.root.join("site");
    local
}

/// The folder the local build writes the site into.
pub(crate) fn output(real_root: &Path) -> PathBuf {
    real_root.join(FOLDER).join("site")
}

/// `permalink` (under `real`'s `base_url`) on the local server at `local`'s.
fn local_permalink(permalink: &str, real: &Config, local: &Config) -> Option<String> {
    let rest = permalink.strip_prefix(real.site.base_url.as_str())?;
    Some(format!("{}{rest}", local.site.base_url))
}

/// Builds the site of `real` into the local folder as of `now`: issues already mailed (through
/// `mailed`) are published whatever their date, and, unless `hide_drafts`, so are drafts and
/// issues dated in the future. Bad issue files are left out and listed in the snapshot.
///
/// # Errors
/// The issues folder cannot be read, or an output cannot be written.
pub(crate) fn build(
    real: &Config,
    base: &Url,
    hide_drafts: bool,
    mailed: &Mailed,
    now: DateTime<FixedOffset>,
) -> Result<Snapshot> {
    let local = localize(real, base);
    let mut errors = Vec::new();
    let mailed: Vec<String> = match mailed(real) {
        Ok(list) => list
            .iter()
            .filter_map(|p| local_permalink(p, real, &local))
            .collect(),
        Err(e) => {
            errors.push(format!("{e:#}"));
            Vec::new()
        }
    };
    let mut site = Site::load(&local)?;
    site.count_as_published(mailed.iter().cloned());
    if !hide_drafts {
        let every: Vec<String> = site.listings().map(|l| l.permalink.clone()).collect();
        site.count_as_published(every);
    }
    let issues: Vec<Entry> = site
        .listings()
        .map(|l| {
            let mailed = mailed.contains(&l.permalink);
            Entry {
                slug: l.slug.clone(),
                title: l.title.clone(),
                date: l.date,
                draft: l.draft,
                future: l.date > now,
                mailed,
                built: mailed || !hide_drafts || l.is_published_at(now),
                permalink: l.permalink.clone(),
            }
        })
        .collect();
    let report = site.build(now)?;
    errors.extend(report.errors.iter().map(ToString::to_string));
    Ok(Snapshot {
        config: Arc::new(local),
        issues,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_site_lives_apart_and_links_locally() {
        let real = Config::parse(
            "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/news/\"\nwebsub_hub = \"https://hub.example.org/\"\n[mail]\nfrom = \"T <t@example.org>\"\n",
            Path::new("/site"),
        )
        .unwrap();
        let base = Url::parse("http://127.0.0.1:1111/").unwrap();
        let local = localize(&real, &base);
        assert_eq!(local.site.base_url, base);
        assert!(local.site.websub_hub.is_none());
        assert_eq!(local.site.feeds, output(Path::new("/site")));
        assert_ne!(local.site.feeds, real.site.feeds);
        assert_eq!(
            local_permalink("https://example.org/news/issues/a/", &real, &local).as_deref(),
            Some("http://127.0.0.1:1111/issues/a/")
        );
        assert_eq!(
            local_permalink("https://other.org/issues/a/", &real, &local),
            None
        );
    }
}
