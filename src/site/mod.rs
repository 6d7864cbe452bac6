//! `site`: the whole site, loaded once — every issue file, good or bad — and its feeds and web
//! archive, rendered again only where their input changed.
//!
//! The stage after the issues, shared by every command: [`Site::load`] is the one loader of
//! `build`, `publish`, `check` and `preview`, and [`Site::build`] writes the outputs.
//!
//! ```text
//! Site::load   issue files ──stat──► unchanged since the manifest? ── yes ─► its Listing (not read)
//!                                                              └──── no ──► read, hash, parse, render
//!              slugs checked (duplicates, clashes with the site's files) ─► Site { issues, errors }
//! Site::build  plan: listings ─► feed::plan + pages + index ─► outputs, each with a fingerprint
//!              compare: outputs whose fingerprint or file changed ─► jobs
//!              render: load the issues the jobs show ─► render ─► write (only changed bytes)
//!              remove the files the site no longer has ─► save the manifest
//! ```
//!
//! The [`manifest`] beside the config remembers, per issue file, its size, modification time,
//! content hash and [`Listing`], and per output file the fingerprint it was rendered from. A
//! fingerprint covers everything an output shows: the site fingerprint (config, templates, the
//! feedpost binary) and the content hashes of the issues it lists, in order. So adding one issue
//! renders its page, the index, and the feeds it appears in (plus the RFC 5005 archive documents
//! of its month, or of the month it closes); every other file is left untouched, not even
//! rewritten. A page bundle's files are copied beside its page, again only when their size or
//! modification time changed. Files feedpost wrote earlier that are no longer part of the site
//! (a deleted issue's page, a tag no issue uses, a bundle's removed image) are removed. Deleting
//! the manifest, or the feeds folder, gives a full build.

mod build;
pub mod manifest;
mod plan;
mod presence;

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::archive;
use crate::config::Config;
use crate::issue::{self, files, Issue, IssueError, Listing};
pub use build::Report;
use manifest::{Manifest, SourceEntry};

/// Files whose modification time is this close to (or after) the start of the build that
/// recorded them are read again next time: a write in the same clock tick as that build's read
/// would not change the time (git's "racy clean" problem).
const RACY_NANOS: i128 = 2_000_000_000;

/// The site as loaded: every issue file under `site.issues`, each either a good issue (its
/// [`Listing`] always, the whole [`Issue`] once read) or an [`IssueError`].
///
/// Files the manifest vouches for (same size and modification time as the last build saw, and
/// not modified close to it) are not read: their listing comes from the manifest, and their
/// issue is read only when something needs it ([`Site::issue`], [`Site::read_all`], or an
/// output [`Site::build`] renders).
pub struct Site<'c> {
    config: &'c Config,
    /// The site fingerprint (config, templates, binary): see `plan::site_fingerprint`.
    fingerprint: String,
    /// When loading started, nanoseconds since the Unix epoch (system clock).
    started_ns: i128,
    /// What the last build's manifest says that this run can use.
    previous: Previous,
    /// The good issue files, newest first (ties broken by slug).
    sources: Vec<Source>,
    /// One per bad file, sorted by path.
    errors: Vec<IssueError>,
    /// How many issue files were found.
    files: usize,
    /// The pages `site.include` left out (see [`files::Files::others`]).
    others: Vec<String>,
    /// How many issue files have been read so far.
    loaded: usize,
    /// Permalinks of issues published whatever their date and `draft` say (see
    /// [`Site::count_as_published`]).
    also_published: HashSet<String>,
}

/// One issue file as this run sees it.
struct Source {
    /// Its place in the listing of the issues folder (the manifest keeps that order).
    index: usize,
    path: PathBuf,
    len: u64,
    mtime_ns: i128,
    /// SHA-256 of the bytes, first 128 bits in hex.
    hash: String,
    listing: Listing,
    /// The loaded issue, once read. Boxed, so the sorts move small values.
    issue: Option<Box<Issue>>,
    /// Whether the manifest says this content's page was written (pages are not in the
    /// manifest's outputs: a page's fingerprint is its issue's hash under the site fingerprint).
    page_written: bool,
    /// Whether the manifest may remember this file (false if it changed during the run).
    cacheable: bool,
    /// A leaf bundle's resources, sorted by `rel`.
    resources: Vec<Resource>,
}

/// What the last build's manifest says that this run can use.
struct Previous {
    /// Whether it was written under this site fingerprint. A manifest of another (config,
    /// templates, binary) vouches for nothing: every file is read and every output rendered;
    /// it still says which files earlier builds wrote, so those the site no longer has go.
    trusted: bool,
    /// When that build started, nanoseconds since the Unix epoch.
    started_ns: i128,
    /// How many issue files it remembered.
    files: usize,
    /// Its outputs other than pages, with their fingerprints.
    outputs: BTreeMap<String, String>,
    /// Pages it wrote for files that are gone, or changed since (the page may have moved).
    pages: Vec<String>,
}

impl<'c> Site<'c> {
    /// Loads the site `config` describes: lists the issue files, takes unchanged ones from the
    /// build manifest (`.feedpost-cache/build.json`), and reads, parses and renders the others,
    /// in parallel. Two files with one slug: the later one (by path) is an error; so is a slug
    /// that would put a page over one of the site's own files. Writes nothing.
    ///
    /// # Errors
    /// Only when the issues folder cannot be read; bad files are in [`Site::errors`]. A manifest
    /// that cannot be read is not an error: every file is read then (with a warning).
    pub fn load(config: &'c Config) -> Result<Site<'c>> {
        let started_ns = nanos(SystemTime::now());
        let fingerprint = plan::site_fingerprint(config);
        // Read the manifest on one core while the other lists and stats the issue files.
        let (manifest, listed) = rayon::join(|| read_manifest(config), || list_issue_files(config));
        let Listed {
            files,
            stats,
            mut resources,
            others,
        } = listed?;
        let trusted = manifest.site == fingerprint;
        let mut site = Site {
            config,
            fingerprint,
            started_ns,
            previous: Previous {
                trusted,
                started_ns: manifest.started_ns,
                files: manifest.sources.len(),
                outputs: manifest.outputs,
                pages: Vec::new(),
            },
            sources: Vec::with_capacity(files.len()),
            errors: Vec::new(),
            files: files.len(),
            others,
            loaded: 0,
            also_published: HashSet::new(),
        };
        let rows = manifest.sources.into_entries();
        let to_read = site.compare(&files, stats, rows, &manifest.permalink_prefix);
        site.read_changed(&files, to_read);
        for source in &mut site.sources {
            source.resources = std::mem::take(&mut resources[source.index]);
        }
        site.refuse_clashing_slugs();
        site.sources.sort_by(|a, b| {
            issue::newest_first(
                a.listing.date,
                &a.listing.slug,
                b.listing.date,
                &b.listing.slug,
            )
        });
        site.errors.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(site)
    }

    /// Compares the files found with the manifest's rows (both in the issues folder's order):
    /// an unchanged file becomes a source from its row; the others are returned to be read,
    /// each with the hash its page was written from, if the manifest vouches for one. Pages of
    /// files gone or changed go to `previous.pages` (written under `old_prefix`).
    fn compare(
        &mut self,
        files: &[PathBuf],
        stats: Vec<Option<Stat>>,
        rows: impl Iterator<Item = SourceEntry>,
        old_prefix: &str,
    ) -> Vec<(usize, Option<String>)> {
        let old_page = |slug: &str| format!("{old_prefix}{slug}/{}", archive::INDEX_FILE);
        let mut rows = rows.peekable();
        let mut to_read = Vec::new();
        for (index, (path, stat)) in files.iter().zip(stats).enumerate() {
            let mut row = None;
            while let Some(next) = rows.peek() {
                match Path::new(&next.path).cmp(path) {
                    Ordering::Less => {
                        let gone = rows.next().expect("peeked");
                        if gone.page {
                            self.previous.pages.push(old_page(&gone.listing.slug));
                        }
                    }
                    Ordering::Equal => {
                        row = rows.next();
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
            match (row, stat) {
                (Some(e), Some((len, mtime))) if self.vouches(&e, len, mtime) => {
                    self.sources.push(Source {
                        index,
                        path: path.clone(),
                        len,
                        mtime_ns: mtime,
                        hash: e.hash,
                        listing: e.listing,
                        issue: None,
                        page_written: e.page,
                        cacheable: true,
                        resources: Vec::new(),
                    });
                }
                // Read it; if the bytes turn out the same (a `touch`, or a file read again only
                // because it was modified close to the last build), its page is still good.
                (row, _) => {
                    let page_of = row.filter(|e| e.page).and_then(|e| {
                        self.previous.pages.push(old_page(&e.listing.slug));
                        self.previous.trusted.then_some(e.hash)
                    });
                    to_read.push((index, page_of));
                }
            }
        }
        let pages = rows.filter(|e| e.page).map(|e| old_page(&e.listing.slug));
        self.previous.pages.extend(pages);
        to_read
    }

    /// Whether the manifest's row `e` stands for a file now of `len` bytes modified at `mtime`.
    fn vouches(&self, e: &SourceEntry, len: u64, mtime: i128) -> bool {
        self.previous.trusted
            && e.len == len
            && e.mtime_ns == mtime
            && mtime < self.previous.started_ns - RACY_NANOS
    }

    /// Reads `to_read` (indices into `files`, with the hash the manifest says their page was
    /// written from) in parallel, and adds each as a source or an error, in path order.
    fn read_changed(&mut self, files: &[PathBuf], to_read: Vec<(usize, Option<String>)>) {
        let read: Vec<Result<Source, IssueError>> = to_read
            .par_iter()
            .map(|(index, page_of)| {
                let mut result = read_source(&files[*index], self.config);
                if let Ok(source) = &mut result {
                    source.index = *index;
                    source.page_written = page_of.as_ref() == Some(&source.hash);
                }
                result
            })
            .collect();
        self.loaded += read.len();
        for result in read {
            match result {
                Ok(source) => self.sources.push(source),
                Err(e) => self.errors.push(e),
            }
        }
        self.sources.sort_by_key(|s| s.index);
    }

    /// Takes out every file whose slug an earlier file (by path) already uses, or that would
    /// put its page over one of the site's own files, with an error for each. Call with the
    /// sources in path order.
    fn refuse_clashing_slugs(&mut self) {
        let sources = &self.sources;
        let mut by_slug: Vec<usize> = (0..sources.len()).collect();
        by_slug.sort_unstable_by(|&a, &b| {
            (sources[a].listing.slug.as_str(), a).cmp(&(sources[b].listing.slug.as_str(), b))
        });
        let mut refused = vec![false; sources.len()];
        let mut first: Option<usize> = None;
        for &i in &by_slug {
            let (path, slug) = (&sources[i].path, &sources[i].listing.slug);
            match first {
                Some(f) if sources[f].listing.slug == *slug => {
                    refused[i] = true;
                    let e = IssueError::duplicate_slug(path, slug, &sources[f].path);
                    self.errors.push(e);
                    continue;
                }
                _ => first = Some(i),
            }
            if let Some(clash) = plan::reserved_clash(self.config, slug) {
                refused[i] = true;
                self.errors.push(IssueError {
                    path: path.clone(),
                    line: 1,
                    message: format!(
                        "the slug `{slug}` would put the issue's page over the site's `{clash}`: \
                         set another `slug` in the front matter, or a `site.permalink_prefix`"
                    ),
                });
            }
        }
        if refused.contains(&true) {
            let mut i = 0;
            self.sources.retain(|_| {
                i += 1;
                !refused[i - 1]
            });
        }
    }

    /// Reads the issues of the sources at `indices` that are not loaded yet, in parallel. A
    /// file that cannot be read or parsed any more stays without an issue, with an error; one
    /// whose bytes changed since it was listed is rendered as it is now and not remembered in
    /// the manifest, so the next build sees the change everywhere.
    fn read_issues(&mut self, indices: &[usize]) {
        let needed: Vec<usize> = {
            let mut seen = HashSet::new();
            let missing = indices.iter().copied();
            missing
                .filter(|&i| self.sources[i].issue.is_none() && seen.insert(i))
                .collect()
        };
        let reloaded: Vec<(usize, Result<Source, IssueError>)> = needed
            .par_iter()
            .map(|&i| (i, read_source(&self.sources[i].path, self.config)))
            .collect();
        self.loaded += reloaded.len();
        for (i, result) in reloaded {
            match result {
                Ok(fresh) => {
                    if fresh.hash != self.sources[i].hash {
                        debug!(path = %fresh.path.display(), "changed during the run");
                        self.sources[i].cacheable = false;
                    }
                    self.sources[i].issue = fresh.issue;
                }
                Err(e) => self.errors.push(e),
            }
        }
    }

    /// The bad issue files, sorted by path.
    pub fn errors(&self) -> &[IssueError] {
        &self.errors
    }

    /// How many issue files were found, good and bad.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The names of the pages under `site.issues` that `site.include` left out: pages of the
    /// site, not issues.
    pub fn other_pages(&self) -> &[String] {
        &self.others
    }

    /// The good issues' listings, newest first.
    pub fn listings(&self) -> impl Iterator<Item = &Listing> {
        self.sources.iter().map(|s| &s.listing)
    }

    /// The file of the good issue at `index` (an index into [`Site::listings`]).
    pub fn path_of(&self, index: usize) -> Option<&Path> {
        self.sources.get(index).map(|s| s.path.as_path())
    }

    /// Which issue was loaded from `path` (compared after canonicalising both), as an index
    /// for [`Site::issue`].
    ///
    /// # Errors
    /// `path` does not exist, is a bad issue file (its error), or is not an issue of this site.
    pub fn find(&self, path: &Path) -> Result<usize> {
        let wanted = path
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("cannot find the issue file `{}`: {e}", path.display()))?;
        let is_wanted = |p: &Path| p.canonicalize().is_ok_and(|p| p == wanted);
        if let Some(i) = self.sources.iter().position(|s| is_wanted(&s.path)) {
            return Ok(i);
        }
        if let Some(e) = self.errors.iter().find(|e| is_wanted(&e.path)) {
            return Err(e.clone().into());
        }
        bail!(
            "`{}` is not an issue of this site: issues are the `*.md` files under `{}`",
            path.display(),
            self.config.site.issues.display()
        )
    }

    /// Counts the issues whose permalinks are among `permalinks` as published, whatever their
    /// date and `draft` say: [`Site::build`] lists them in the feeds and the archive and keeps
    /// their pages. For issues already mailed (an issue sent early with `publish --future`: its
    /// email links its page, which must not go away until its date comes), and for a local
    /// preview that shows drafts.
    pub fn count_as_published(&mut self, permalinks: impl IntoIterator<Item = String>) {
        self.also_published.extend(permalinks);
    }

    /// Whether the issue listed as `listing` is published at `now`: [`Listing::is_published_at`],
    /// or counted as published by [`Site::count_as_published`].
    fn is_published(&self, listing: &Listing, now: DateTime<FixedOffset>) -> bool {
        listing.is_published_at(now) || self.also_published.contains(&listing.permalink)
    }

    /// The newest issue listed in feeds at `now` (not a draft, not dated after `now`), as an
    /// index for [`Site::issue`].
    pub fn newest_published(&self, now: DateTime<FixedOffset>) -> Option<usize> {
        self.sources
            .iter()
            .position(|s| s.listing.is_published_at(now))
    }

    /// The issue at `index` (from [`Site::find`] or [`Site::newest_published`]), read now if
    /// it was not yet.
    ///
    /// # Errors
    /// The file cannot be read or parsed any more (it changed since it was listed).
    pub fn issue(&mut self, index: usize) -> Result<&Issue, IssueError> {
        self.read_issues(&[index]);
        let source = &self.sources[index];
        match &source.issue {
            Some(issue) => Ok(issue),
            None => Err(self
                .errors
                .iter()
                .rev()
                .find(|e| e.path == source.path)
                .cloned()
                .unwrap_or_else(|| IssueError::unreadable(&source.path, &missing()))),
        }
    }

    /// Reads every good issue not read yet (for `check`, which looks at every body). Files
    /// that fail now are added to [`Site::errors`].
    pub fn read_all(&mut self) {
        let all: Vec<usize> = (0..self.sources.len()).collect();
        self.read_issues(&all);
        self.errors.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// The issues read so far, newest first: after [`Site::read_all`], every good one.
    pub fn issues(&self) -> impl Iterator<Item = &Issue> {
        self.sources.iter().filter_map(|s| s.issue.as_deref())
    }
}

/// The error for an issue that could not be read again and left no other error.
fn missing() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, "it is gone")
}

/// The manifest of the last build, or an empty one when it cannot be read (with a warning).
fn read_manifest(config: &Config) -> Manifest {
    Manifest::load(&Manifest::path(config)).unwrap_or_else(|e| {
        warn!("{e:#}; building every file again");
        Manifest::new("")
    })
}

/// A file of a leaf bundle other than its `index.md`, copied next to its issue's page.
#[derive(Debug, Clone)]
struct Resource {
    /// Its path relative to the bundle's folder, `/`-separated: where it goes relative to the
    /// page.
    rel: String,
    /// The file.
    path: PathBuf,
    /// Its size and modification time, which its output's fingerprint covers.
    len: u64,
    mtime_ns: i128,
}

/// A file's size in bytes and modification time in nanoseconds since the Unix epoch.
type Stat = (u64, i128);

/// The issue files of a site, as listed.
struct Listed {
    /// The issue files, in path order.
    files: Vec<PathBuf>,
    /// Per file, its size and modification time (`None` when it cannot be stat'ed).
    stats: Vec<Option<Stat>>,
    /// Per file, its resources when it is a leaf bundle's `index.md`.
    resources: Vec<Vec<Resource>>,
    /// The pages `site.include` left out.
    others: Vec<String>,
}

/// Every issue file under `site.issues` ([`files::find`]), stat'ed in parallel through the
/// open folders, with its bundle's resources.
///
/// # Errors
/// A folder cannot be read.
fn list_issue_files(config: &Config) -> Result<Listed> {
    let include = files::Include::new(&config.site.include)?;
    let found = files::find(&config.site.issues, &include)?;
    let stat = |entry: &std::fs::DirEntry| {
        let meta = match entry.file_type() {
            Ok(t) if t.is_symlink() => std::fs::metadata(entry.path()),
            _ => entry.metadata(),
        };
        meta.ok().map(|m| (m.len(), mtime_ns(&m)))
    };
    let (stats, resources) = (found.issues.par_iter())
        .map(|f| {
            let resources = (f.resources.iter())
                .filter_map(|(rel, entry)| {
                    let (len, mtime_ns) = stat(entry)?;
                    let (rel, path) = (rel.clone(), entry.path());
                    Some(Resource {
                        rel,
                        path,
                        len,
                        mtime_ns,
                    })
                })
                .collect();
            (stat(&f.entry), resources)
        })
        .unzip();
    Ok(Listed {
        files: found.issues.into_iter().map(|f| f.path).collect(),
        stats,
        resources,
        others: found.others,
    })
}

/// Reads, hashes, parses and renders one issue file.
fn read_source(path: &Path, config: &Config) -> Result<Source, IssueError> {
    let read_error = |e: std::io::Error| IssueError::unreadable(path, &e);
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let stat = file.metadata().map_err(read_error)?;
    let mut bytes = Vec::with_capacity(stat.len() as usize + 1);
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(read_error)?;
    drop(file);
    let hash = hex::encode(&Sha256::digest(&bytes)[..16]);
    let len = bytes.len() as u64;
    let issue = Box::new(issue::parse_bytes(bytes, path, config)?);
    Ok(Source {
        index: 0,
        path: path.to_path_buf(),
        // The size read, not the size stat'ed: if they differ the file changed in between,
        // and the entry will not match next time.
        len,
        mtime_ns: mtime_ns(&stat),
        hash,
        listing: issue.listing(),
        issue: Some(issue),
        page_written: false,
        cacheable: len == stat.len(),
        resources: Vec::new(),
    })
}

/// `t` in nanoseconds since the Unix epoch (negative before it).
fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A file's modification time in nanoseconds since the Unix epoch (0 when unknown).
fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified().map(nanos).unwrap_or(0)
}
