//! `site`: the feeds and the web archive for the whole site, rendered again only where their
//! input changed.
//!
//! The stage after loading, shared by `feedpost build` and `feedpost publish`:
//!
//! ```text
//! issue files ──stat──► unchanged? ── yes ─► cached Listing (not read)
//!                              └──── no ──► read, hash, parse, render (rayon)
//! listings ─► feed::plan + pages + index ─► outputs, each with a fingerprint of its input
//! outputs whose fingerprint or file changed ─► load the issues they need ─► render ─► write
//! ```
//!
//! The [`manifest`] beside the config remembers, per issue file, its size, modification time,
//! content hash and [`Listing`], and per output file the fingerprint it was rendered from. A
//! fingerprint covers everything an output shows: the site fingerprint (config, templates, the
//! feedpost binary) and the content hashes of the issues it lists, in order. So adding one issue
//! renders its page, the index, and the feeds it appears in (plus at most two RFC 5005 archive
//! documents); every other file is left untouched, not even rewritten. Files feedpost wrote
//! earlier that are no longer part of the site (a deleted issue's page, a tag no issue uses) are
//! removed. Deleting the manifest, or the feeds folder, gives a full build.

pub mod manifest;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use url::Url;

use crate::archive::{self, SiteView};
use crate::config::Config;
use crate::feed::{self, Document, Format, History, Scope};
use crate::issue::{self, Issue, IssueError, Listing};
use manifest::Manifest;

/// Files whose modification time is this close to (or after) the start of the build that
/// recorded them are read again next time: a write in the same clock tick as that build's read
/// would not change the time (git's "racy clean" problem).
const RACY_NANOS: i128 = 2_000_000_000;

/// What a build did.
#[derive(Debug, Default)]
pub struct Report {
    /// Good issue files (drafts and future issues included).
    pub issues: usize,
    /// Issues listed in the feeds and the archive (published: not drafts, not in the future).
    pub published: usize,
    /// Issue files that could not be loaded, sorted by path; they are left out of every output.
    pub errors: Vec<IssueError>,
    /// Issue files read and rendered in this run (the others came from the manifest).
    pub loaded: usize,
    /// Output files rendered in this run.
    pub rendered: usize,
    /// Output files whose bytes changed on disk (rendered files can come out identical).
    pub written: usize,
    /// Files of earlier builds removed because they are no longer part of the site.
    pub removed: usize,
    /// Every output file of the site, relative to the feeds folder.
    pub outputs: usize,
    /// Subscription feeds (not archive documents) whose bytes changed: what a WebSub hub hears.
    pub changed_feeds: Vec<Url>,
    /// The main feeds' URLs (RSS, Atom, JSON Feed).
    pub main_feeds: Vec<Url>,
}

/// One issue file as this build sees it.
struct Source {
    /// Its place in the listing of the issues folder (the manifest keeps that order).
    index: usize,
    path: PathBuf,
    len: u64,
    mtime_ns: i128,
    hash: String,
    listing: Listing,
    /// The loaded issue, when this run read the file (or had to, for an output). Boxed, so the
    /// sorts move small values.
    issue: Option<Box<Issue>>,
    /// Whether the manifest says this content's page was written (pages are not in the
    /// manifest's outputs: a page's fingerprint is its issue's hash under the site fingerprint).
    page_written: bool,
    /// Whether the manifest may remember this file (false if it changed during the build).
    cacheable: bool,
}

/// What a non-page output file is made from.
enum Kind {
    /// The index page.
    Index,
    /// The feed document at this index of the plan.
    Feed(usize),
    /// A file shipped as is (stylesheets).
    Static(&'static str),
}

/// An output file other than an issue page, with the fingerprint of what it shows.
struct Output {
    path: String,
    fingerprint: String,
    kind: Kind,
}

/// Something to render in this run.
#[derive(Clone, Copy)]
enum Job {
    /// The page of the source at this index.
    Page(usize),
    /// The output at this index.
    Output(usize),
}

/// Builds the feeds and the web archive of the site into `site.feeds` as of `now` (issues dated
/// after `now`, and drafts, are left out), reusing the manifest's record of unchanged issue files
/// and output files. Bad issue files are reported in [`Report::errors`] and left out; the rest of
/// the site is still built.
///
/// # Errors
/// The issues folder cannot be read, or an output file cannot be written or removed. The manifest
/// being unreadable is not an error: the build is then a full one (with a warning).
pub fn run(config: &Config, now: DateTime<FixedOffset>) -> Result<Report> {
    let started = nanos(SystemTime::now());
    let clock = std::time::Instant::now();
    let phase = |name: &str| {
        debug!(
            phase = name,
            ms = clock.elapsed().as_secs_f64() * 1e3,
            "build"
        )
    };
    let site_fp = site_fingerprint(config);
    let manifest_path = Manifest::path(config);
    // Read the manifest on one core while the other lists and stats the issue files, and lists
    // the folder the pages are in.
    let root = &config.site.feeds;
    let page_dir = archive::page_path(config, "x")
        .rsplit_once('/')
        .and_then(|(dir, _)| dir.rsplit_once('/'))
        .map_or(String::new(), |(dir, _)| dir.to_string());
    let (old, (listed, page_presence)) = rayon::join(
        || {
            Manifest::load(&manifest_path).unwrap_or_else(|e| {
                warn!("{e:#}; building every file again");
                Manifest::new("")
            })
        },
        || {
            rayon::join(
                || -> Result<_> {
                    let found = issue::find_files_with(&config.site.issues, |entry| entry)?;
                    let (files, entries): (Vec<PathBuf>, Vec<std::fs::DirEntry>) =
                        found.into_iter().unzip();
                    let stats = entries
                        .par_iter()
                        .map(|entry| {
                            let meta = match entry.file_type() {
                                Ok(t) if t.is_symlink() => std::fs::metadata(entry.path()),
                                _ => entry.metadata(),
                            };
                            meta.ok().map(|m| (m.len(), mtime_ns(&m)))
                        })
                        .collect::<Vec<_>>();
                    Ok((files, stats))
                },
                || Presence::scan(root, [page_dir.as_str()]),
            )
        },
    );
    let (files, stats) = listed?;
    // A manifest of another site fingerprint (config, templates, binary) vouches for nothing:
    // every file is read and every output rendered; it still says which files earlier builds
    // wrote, so those the site no longer has are removed.
    let trusted = old.site == site_fp;
    let Manifest {
        started_ns: old_started,
        sources: old_sources,
        outputs: old_outputs,
        permalink_prefix: old_prefix,
        ..
    } = old;
    let old_page = |slug: &str| format!("{old_prefix}{slug}/{}", archive::INDEX_FILE);
    let old_count = old_sources.len();
    let mut report = Report::default();
    phase("manifest loaded, issues stat'ed");

    // Take unchanged files from the manifest (both lists are in the issues folder's order), and
    // read the others.
    let mut old_rows = old_sources.into_entries().peekable();
    let mut found: Vec<(usize, Result<Source, IssueError>)> = Vec::with_capacity(files.len());
    let mut to_read = Vec::new();
    // Pages an earlier build wrote, for files gone or changed since.
    let mut old_pages: Vec<String> = Vec::new();
    for (index, (path, stat)) in files.iter().zip(stats).enumerate() {
        let mut entry = None;
        while let Some(row) = old_rows.peek() {
            match Path::new(&row.path).cmp(path) {
                Ordering::Less => {
                    let gone = old_rows.next().expect("peeked");
                    if gone.page {
                        old_pages.push(old_page(&gone.listing.slug));
                    }
                }
                Ordering::Equal => {
                    entry = old_rows.next();
                    break;
                }
                Ordering::Greater => break,
            }
        }
        match (entry, stat) {
            (Some(e), Some((len, mtime)))
                if trusted
                    && e.len == len
                    && e.mtime_ns == mtime
                    && mtime < old_started - RACY_NANOS =>
            {
                let source = Source {
                    index,
                    path: path.clone(),
                    len,
                    mtime_ns: mtime,
                    hash: e.hash,
                    listing: e.listing,
                    issue: None,
                    page_written: e.page,
                    cacheable: true,
                };
                found.push((index, Ok(source)));
            }
            // Read it; if the bytes turn out the same (a `touch`, or a file read again only
            // because it was modified close to the last build), its page is still good.
            (entry, _) => {
                let page_of = entry.filter(|e| e.page).and_then(|e| {
                    old_pages.push(old_page(&e.listing.slug));
                    trusted.then_some(e.hash)
                });
                to_read.push((index, page_of));
            }
        }
    }
    old_pages.extend(
        old_rows
            .filter(|e| e.page)
            .map(|e| old_page(&e.listing.slug)),
    );
    let read: Vec<(usize, Result<Source, IssueError>)> = to_read
        .par_iter()
        .map(|(index, page_of)| {
            let mut result = read_source(&files[*index], config);
            if let Ok(source) = &mut result {
                source.index = *index;
                source.page_written = page_of.as_ref() == Some(&source.hash);
            }
            (*index, result)
        })
        .collect();
    report.loaded = read.len();
    found.extend(read);
    found.sort_by_key(|(index, _)| *index);
    phase("issues read");

    // Path order decides which of two files with one slug wins, as in `issue::load_files`.
    let mut sources = Vec::with_capacity(found.len());
    for (_, result) in found {
        match result {
            Ok(source) => sources.push(source),
            Err(e) => report.errors.push(e),
        }
    }
    refuse_clashing_slugs(config, &mut sources, &mut report.errors);
    sources.sort_by(|a, b| {
        issue::newest_first(
            a.listing.date,
            &a.listing.slug,
            b.listing.date,
            &b.listing.slug,
        )
    });
    let published: Vec<usize> = (0..sources.len())
        .filter(|&i| sources[i].listing.is_published_at(now))
        .collect();
    report.issues = sources.len();
    report.published = published.len();
    report.main_feeds = Format::ALL
        .iter()
        .map(|f| feed::url(config, f.file_name()))
        .collect::<Result<_>>()?;

    // Plan the outputs on one core while the other lists the folders they were written to.
    let ((docs, outputs, terms), mut present) = rayon::join(
        || plan_outputs(config, &site_fp, &sources, &published),
        || {
            let dirs: HashSet<&str> = old_outputs.keys().map(|p| Presence::split(p).0).collect();
            Presence::scan(root, dirs.into_iter().filter(|d| *d != page_dir))
        },
    );
    present.listed.extend(page_presence.listed);
    report.outputs = outputs.len() + published.len();
    phase("outputs planned");

    // What must be rendered: pages whose content or file changed, outputs whose fingerprint did.
    let mut jobs: Vec<Job> = published
        .iter()
        .filter(|&&i| {
            !(sources[i].page_written && present.has(&page_dir, &sources[i].listing.slug))
        })
        .map(|&i| Job::Page(i))
        .collect();
    jobs.extend(
        outputs
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                old_outputs.get(&o.path) != Some(&o.fingerprint) || !present.has_file(&o.path)
            })
            .map(|(o, _)| Job::Output(o)),
    );

    // Load the unchanged issues those jobs show (their bodies are not in the manifest).
    let mut needed: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    for job in &jobs {
        let mut want = |i: usize| {
            if sources[i].issue.is_none() && seen.insert(i) {
                needed.push(i);
            }
        };
        match *job {
            Job::Page(i) => want(i),
            Job::Output(o) => {
                if let Kind::Feed(d) = outputs[o].kind {
                    docs[d].entries.iter().for_each(|&e| want(published[e]));
                }
            }
        }
    }
    let reloaded: Vec<(usize, Result<Source, IssueError>)> = needed
        .par_iter()
        .map(|&i| (i, read_source(&sources[i].path, config)))
        .collect();
    report.loaded += reloaded.len();
    for (i, result) in reloaded {
        match result {
            Ok(fresh) => {
                if fresh.hash != sources[i].hash {
                    // Edited since we looked: render what is there now, and forget the file so
                    // the next build sees the change everywhere.
                    debug!(path = %fresh.path.display(), "changed during the build");
                    sources[i].cacheable = false;
                }
                sources[i].issue = fresh.issue;
            }
            Err(e) => report.errors.push(e),
        }
    }
    phase("issues reloaded");

    // Render and write in parallel; meanwhile serialise the manifest's issue files, assuming
    // every page gets written (done again below if one is not).
    let view = SiteView::new(config)?;
    let listings: Vec<&Listing> = published.iter().map(|&i| &sources[i].listing).collect();
    let term_refs: Vec<(&str, bool)> = terms.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let mut is_published = vec![false; sources.len()];
    published.iter().for_each(|&i| is_published[i] = true);
    let paths: Vec<std::borrow::Cow<'_, str>> =
        sources.iter().map(|s| s.path.to_string_lossy()).collect();
    let mut listing_order: Vec<usize> = (0..sources.len()).collect();
    listing_order.sort_by_key(|&i| sources[i].index);
    let rows = |page: &dyn Fn(usize) -> bool| -> Vec<manifest::Row<'_>> {
        listing_order
            .iter()
            .copied()
            .filter(|&i| sources[i].cacheable)
            .map(|i| manifest::Row {
                path: &paths[i],
                len: sources[i].len,
                mtime_ns: sources[i].mtime_ns,
                hash: &sources[i].hash,
                page: page(i),
                listing: &sources[i].listing,
            })
            .collect()
    };
    let render = |job: Job| -> Result<Option<bool>> {
        let (path, bytes, may_exist) = match job {
            Job::Page(i) => match &sources[i].issue {
                Some(issue) => (
                    archive::page_path(config, &issue.slug),
                    archive::render_page(config, &view, issue)?,
                    present.may_have(&page_dir, &issue.slug),
                ),
                None => return Ok(None),
            },
            Job::Output(o) => {
                let output = &outputs[o];
                let bytes = match output.kind {
                    Kind::Index => archive::render_index(config, &view, &listings, &term_refs)?,
                    Kind::Feed(d) => {
                        let doc = &docs[d];
                        let issues: Option<Vec<&Issue>> = doc
                            .entries
                            .iter()
                            .map(|&e| sources[published[e]].issue.as_deref())
                            .collect();
                        match issues {
                            Some(issues) => doc.format.render(&issues, &doc.meta(config)?),
                            // An issue it lists could not be read again.
                            None => return Ok(None),
                        }
                    }
                    Kind::Static(content) => content.to_string(),
                };
                let (dir, name) = Presence::split(&output.path);
                (output.path.clone(), bytes, present.may_have(dir, name))
            }
        };
        feed::write_file(&root.join(path), bytes.as_bytes(), may_exist).map(Some)
    };
    let anything_to_save = !jobs.is_empty() || report.loaded > 0 || old_count != sources.len();
    let (results, optimistic_json) = rayon::join(
        || -> Vec<(Job, Result<Option<bool>>)> {
            jobs.par_iter().map(|&job| (job, render(job))).collect()
        },
        || anything_to_save.then(|| manifest::sources_json(&rows(&|i| is_published[i]))),
    );
    let mut failed_pages = HashSet::new();
    let mut failed_outputs = HashSet::new();
    let mut first_error = None;
    for (job, result) in results {
        match result {
            Ok(Some(wrote)) => {
                report.rendered += 1;
                if wrote {
                    report.written += 1;
                    if let Job::Output(o) = job {
                        if let Kind::Feed(d) = outputs[o].kind {
                            if !docs[d].archive {
                                report.changed_feeds.push(feed::url(config, &docs[d].path)?);
                            }
                        }
                    }
                }
            }
            failure => {
                match job {
                    Job::Page(i) => failed_pages.insert(i),
                    Job::Output(o) => failed_outputs.insert(o),
                };
                if let Err(e) = failure {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    report.errors.sort_by(|a, b| a.path.cmp(&b.path));
    phase("outputs written");

    // Remove what earlier builds wrote and this site no longer has.
    old_pages.extend(
        sources
            .iter()
            .enumerate()
            .filter(|(i, s)| s.page_written && !is_published[*i])
            .map(|(_, s)| archive::page_path(config, &s.listing.slug)),
    );
    let current_pages = || {
        published
            .iter()
            .map(|&i| archive::page_path(config, &sources[i].listing.slug))
            .collect::<HashSet<String>>()
    };
    report.removed = remove_stale(root, &old_pages, current_pages, &old_outputs, &outputs)?;

    // Remember what is on disk now. Failed outputs are left out, so they are tried again.
    let new_outputs: BTreeMap<String, String> = outputs
        .iter()
        .enumerate()
        .filter(|(o, _)| !failed_outputs.contains(o))
        .map(|(_, o)| (o.path.clone(), o.fingerprint.clone()))
        .collect();
    let save = !trusted || anything_to_save || report.removed > 0 || new_outputs != old_outputs;
    let json = match optimistic_json {
        Some(json) if failed_pages.is_empty() => Some(json),
        _ if save => Some(manifest::sources_json(&rows(&|i| {
            is_published[i] && !failed_pages.contains(&i)
        }))),
        _ => None,
    };
    // Free the build's 10,000 listings off the critical path, on a thread nobody waits for (if
    // feedpost exits first, the system takes the memory back at once).
    drop((listings, paths, term_refs));
    let big = (sources, docs, outputs, present, old_outputs, view);
    let _ = std::thread::Builder::new()
        .name("feedpost-free".into())
        .spawn(move || drop(big));
    if let (true, Some(json)) = (save, json) {
        manifest::write(
            &manifest_path,
            &site_fp,
            &config.site.permalink_prefix,
            started,
            &json,
            &new_outputs,
        )?;
    }
    phase("manifest saved");
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(report)
}

/// Takes out of `sources` (in path order) every file whose slug an earlier file already uses,
/// or that would put its page over one of the site's own files, with an error for each.
fn refuse_clashing_slugs(config: &Config, sources: &mut Vec<Source>, errors: &mut Vec<IssueError>) {
    let mut by_slug: Vec<usize> = (0..sources.len()).collect();
    by_slug.sort_unstable_by(|&a, &b| {
        (sources[a].listing.slug.as_str(), a).cmp(&(sources[b].listing.slug.as_str(), b))
    });
    let mut refused = vec![false; sources.len()];
    let mut first: Option<usize> = None;
    for &i in &by_slug {
        let slug = &sources[i].listing.slug;
        match first {
            Some(f) if sources[f].listing.slug == *slug => {
                refused[i] = true;
                errors.push(IssueError::duplicate_slug(
                    &sources[i].path,
                    slug,
                    &sources[f].path,
                ));
                continue;
            }
            _ => first = Some(i),
        }
        if let Some(clash) = reserved_clash(config, slug) {
            refused[i] = true;
            errors.push(IssueError {
                path: sources[i].path.clone(),
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
        sources.retain(|_| {
            i += 1;
            !refused[i - 1]
        });
    }
}

/// Removes the pages in `old_pages` that are not among `current_pages()` (called only when
/// there are old pages) and the files in `old_outputs` that are not in `outputs`. Returns how
/// many files it removed.
fn remove_stale(
    root: &Path,
    old_pages: &[String],
    current_pages: impl FnOnce() -> HashSet<String>,
    old_outputs: &BTreeMap<String, String>,
    outputs: &[Output],
) -> Result<usize> {
    let mut removed = 0;
    if !old_pages.is_empty() {
        let current = current_pages();
        let stale: BTreeSet<&String> = old_pages.iter().filter(|p| !current.contains(*p)).collect();
        for path in stale {
            removed += usize::from(remove_output(root, path)?);
        }
    }
    let current: HashSet<&str> = outputs.iter().map(|o| o.path.as_str()).collect();
    for path in old_outputs.keys().filter(|p| !current.contains(p.as_str())) {
        removed += usize::from(remove_output(root, path)?);
    }
    Ok(removed)
}

/// Every output other than the pages, with its fingerprint; also the feed plan and the index's
/// terms.
fn plan_outputs(
    config: &Config,
    site_fp: &str,
    sources: &[Source],
    published: &[usize],
) -> (Vec<Document>, Vec<Output>, Vec<(String, bool)>) {
    let docs = {
        let listings: Vec<&Listing> = published.iter().map(|&i| &sources[i].listing).collect();
        feed::plan(&listings, config)
    };
    let mut outputs = Vec::with_capacity(docs.len() + 3);
    let terms = index_terms(&docs);
    {
        let term_list = format!("{terms:?}");
        let mut parts: Vec<&str> = vec!["index", &term_list];
        parts.extend(published.iter().map(|&i| sources[i].hash.as_str()));
        outputs.push(Output {
            path: archive::INDEX_FILE.into(),
            fingerprint: fingerprint(site_fp, &parts),
            kind: Kind::Index,
        });
    }
    outputs.par_extend(docs.par_iter().enumerate().map(|(d, doc)| {
        let mut parts: Vec<&str> = vec!["feed", &doc.path, doc.format.file_name()];
        match &doc.scope {
            Scope::Site => parts.push("site"),
            Scope::Tag { name, .. } => parts.extend(["tag", name]),
            Scope::Category { name, .. } => parts.extend(["category", name]),
        }
        match &doc.history {
            History::Complete => parts.push("complete"),
            History::Partial => parts.push("partial"),
            History::Subscription { prev_archive } => parts.extend(["subscription", prev_archive]),
            History::Archive {
                current,
                prev_archive,
                next_archive,
            } => parts.extend([
                "archive",
                current,
                prev_archive.as_deref().unwrap_or("-"),
                next_archive.as_deref().unwrap_or("-"),
            ]),
        }
        parts.extend(
            doc.entries
                .iter()
                .map(|&e| sources[published[e]].hash.as_str()),
        );
        Output {
            path: doc.path.clone(),
            fingerprint: fingerprint(site_fp, &parts),
            kind: Kind::Feed(d),
        }
    }));
    for (path, content) in [
        (feed::STYLESHEET_FILE, feed::STYLESHEET),
        (archive::CSS_FILE, archive::CSS),
    ] {
        outputs.push(Output {
            path: path.into(),
            fingerprint: fingerprint(site_fp, &["static", content]),
            kind: Kind::Static(content),
        });
    }
    (docs, outputs, terms)
}

/// Which outputs exist on disk, found by listing folders rather than by a `stat` per file: an
/// issue's page counts as present when its folder is (the 10,000 pages of a large site are then
/// one folder listing); every other output when its file is listed in its folder.
struct Presence {
    /// Per folder listed: its names, or `None` when it could not be read (nothing known).
    listed: HashMap<String, Option<HashSet<std::ffi::OsString>>>,
}

impl Presence {
    /// Lists `dirs` (relative to `root`).
    fn scan<'a>(root: &Path, dirs: impl IntoIterator<Item = &'a str>) -> Presence {
        let dirs: Vec<&str> = dirs.into_iter().collect();
        let listed = dirs
            .into_par_iter()
            .map(|dir| {
                let names = match std::fs::read_dir(root.join(dir)) {
                    Ok(entries) => Some(
                        entries
                            .filter_map(|e| e.ok().map(|e| e.file_name()))
                            .collect(),
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(HashSet::new()),
                    Err(_) => None,
                };
                (dir.to_string(), names)
            })
            .collect();
        Presence { listed }
    }

    /// `(folder, name)` of a `/`-separated path.
    fn split(path: &str) -> (&str, &str) {
        path.rsplit_once('/').unwrap_or(("", path))
    }

    /// Whether `name` is listed in `dir` (`None`: the folder was not listed).
    fn lookup(&self, dir: &str, name: &str) -> Option<bool> {
        let names = self.listed.get(dir)?.as_ref()?;
        Some(names.contains(std::ffi::OsStr::new(name)))
    }

    /// Whether `name` is known to be in `dir`.
    fn has(&self, dir: &str, name: &str) -> bool {
        self.lookup(dir, name) == Some(true)
    }

    /// Whether the file at `path` is known to be there.
    fn has_file(&self, path: &str) -> bool {
        let (dir, name) = Presence::split(path);
        self.has(dir, name)
    }

    /// Whether `name` might be in `dir`: listed there, or the folder was not listed.
    fn may_have(&self, dir: &str, name: &str) -> bool {
        self.lookup(dir, name) != Some(false)
    }
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
    })
}

/// The categories and tags the index links, (name, is_category), in the plan's order.
fn index_terms(docs: &[Document]) -> Vec<(String, bool)> {
    docs.iter()
        .filter(|d| d.format == Format::Rss)
        .filter_map(|d| match &d.scope {
            Scope::Category { name, .. } => Some((name.clone(), true)),
            Scope::Tag { name, .. } => Some((name.clone(), false)),
            Scope::Site => None,
        })
        .collect()
}

/// With no `permalink_prefix`, an issue's folder sits beside the site's own files: a slug equal
/// to one of their names is refused. Returns the name it clashes with.
fn reserved_clash(config: &Config, slug: &str) -> Option<&'static str> {
    if !config.site.permalink_prefix.is_empty() {
        return None;
    }
    [
        archive::INDEX_FILE,
        archive::CSS_FILE,
        feed::STYLESHEET_FILE,
        "rss.xml",
        "atom.xml",
        "feed.json",
    ]
    .into_iter()
    .find(|name| *name == slug)
}

/// Removes `path` (relative to `root`) and then its folders up to `root` while they are empty.
/// Returns whether a file was removed.
fn remove_output(root: &Path, path: &str) -> Result<bool> {
    let full = root.join(path);
    match std::fs::remove_file(&full) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "failed to remove `{}`, which is no longer part of the site",
                    full.display()
                )
            })
        }
    }
    let mut dir = full.parent();
    while let Some(d) = dir {
        if d == root || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(true)
}

/// The fingerprint of everything every output depends on besides the issues: the manifest
/// format, the feedpost binary (size and modification time: a new build of feedpost may render
/// differently), the `[site]` config, and the web templates.
fn site_fingerprint(config: &Config) -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| format!("{} {}", m.len(), mtime_ns(&m)))
        .unwrap_or_default();
    let site = format!("{:?}", config.site);
    fingerprint(
        "",
        &[
            &manifest::FORMAT.to_string(),
            env!("CARGO_PKG_VERSION"),
            &exe,
            &site,
            archive::LAYOUT_SOURCE,
            archive::CSS,
            feed::STYLESHEET,
        ],
    )
}

/// SHA-256 of `parts` (each length-prefixed, so part boundaries count), first 128 bits in hex.
fn fingerprint(site: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in std::iter::once(&site).chain(parts) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified().map(nanos).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(
            fingerprint("s", &["ab", "c"]),
            fingerprint("s", &["a", "bc"])
        );
        assert_ne!(fingerprint("s", &["a"]), fingerprint("t", &["a"]));
        assert_eq!(fingerprint("s", &["a"]).len(), 32);
    }

    #[test]
    fn removing_an_output_prunes_empty_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("issues/a")).unwrap();
        std::fs::create_dir_all(root.join("issues/b")).unwrap();
        std::fs::write(root.join("issues/a/index.html"), "x").unwrap();
        std::fs::write(root.join("issues/b/index.html"), "x").unwrap();
        assert!(remove_output(root, "issues/a/index.html").unwrap());
        assert!(!root.join("issues/a").exists());
        assert!(root.join("issues/b/index.html").exists());
        assert!(!remove_output(root, "issues/a/index.html").unwrap());
        assert!(root.exists());
    }
}
