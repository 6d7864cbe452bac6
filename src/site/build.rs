//! [`Site::build`]: the feeds and the web archive written from a loaded [`Site`], in the steps
//! Zola's `Site::build` and mdBook's `MDBook::build` take — plan the outputs, compare them with
//! the manifest, render what changed, remove what the site no longer has, save the manifest.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset};
use rayon::prelude::*;
use tracing::debug;
use url::Url;

use super::plan::{self, Kind};
use super::presence::Presence;
use super::{manifest, Manifest, Site};
use crate::archive::{self, SiteView};
use crate::feed::{self, Format};
use crate::issue::{Issue, IssueError, Listing};

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

/// The outputs of this build and what is known of them on disk.
struct Plan {
    /// The published issues (listed in feeds at the build's `now`): indices into the sources,
    /// newest first.
    published: Vec<usize>,
    /// Per source, whether it is published.
    is_published: Vec<bool>,
    /// Every output but the pages.
    outputs: plan::Outputs,
    /// Which outputs are on disk.
    present: Presence,
    /// The folder the pages are in, relative to the feeds folder (`issues`, or `` without a
    /// `permalink_prefix`).
    page_dir: String,
}

/// Something to render in this run.
#[derive(Clone, Copy)]
enum Job {
    /// The page of the source at this index.
    Page(usize),
    /// The output at this index of the plan's outputs.
    Output(usize),
}

/// What rendering did.
#[derive(Default)]
struct Rendered {
    /// Files rendered, and of those, written (their bytes changed).
    rendered: usize,
    written: usize,
    /// Subscription feeds written.
    changed_feeds: Vec<Url>,
    /// Pages (source indices) and outputs (plan indices) not rendered or not written: left out
    /// of the manifest, so they are tried again.
    failed_pages: HashSet<usize>,
    failed_outputs: HashSet<usize>,
    /// The first write that failed.
    first_error: Option<anyhow::Error>,
    /// The manifest's issue files, serialised while the outputs rendered, assuming every
    /// page would be written.
    manifest_json: Option<Vec<u8>>,
}

impl Site<'_> {
    /// Builds the feeds and the web archive into `site.feeds` as of `now` (issues dated after
    /// `now`, and drafts, are left out, unless [`Site::count_as_published`] named them), rendering only outputs whose input changed since the
    /// manifest's build and writing only files whose bytes changed; then removes files earlier
    /// builds wrote that the site no longer has, and saves the manifest. Bad issue files are in
    /// [`Report::errors`] and left out; the rest of the site is still built.
    ///
    /// # Errors
    /// An output file cannot be written or removed, or the manifest cannot be saved.
    pub fn build(mut self, now: DateTime<FixedOffset>) -> Result<Report> {
        let clock = std::time::Instant::now();
        let phase = |name: &str| {
            debug!(
                phase = name,
                ms = clock.elapsed().as_secs_f64() * 1e3,
                "build"
            )
        };
        let plan = self.plan(now);
        phase("outputs planned");
        let jobs = self.jobs(&plan);
        let shown = self.shown_by(&plan, &jobs);
        self.read_issues(&shown);
        self.errors.sort_by(|a, b| a.path.cmp(&b.path));
        phase("issues read");
        let changed =
            !jobs.is_empty() || self.loaded > 0 || self.previous.files != self.sources.len();
        let rendered = self.render(&plan, &jobs, changed)?;
        phase("outputs written");
        let removed = self.remove_stale(&plan)?;
        let report = Report {
            issues: self.sources.len(),
            published: plan.published.len(),
            errors: std::mem::take(&mut self.errors),
            loaded: self.loaded,
            rendered: rendered.rendered,
            written: rendered.written,
            removed,
            outputs: plan.outputs.outputs.len() + plan.published.len(),
            changed_feeds: rendered.changed_feeds.clone(),
            main_feeds: Format::ALL
                .iter()
                .map(|f| feed::url(self.config, f.file_name()))
                .collect::<Result<_>>()?,
        };
        self.save_manifest(plan, rendered, changed || removed > 0)?;
        phase("manifest saved");
        Ok(report)
    }

    /// Plans the outputs of the issues published at `now`, while the other core lists the
    /// folders they and earlier builds' outputs are in.
    fn plan(&self, now: DateTime<FixedOffset>) -> Plan {
        let published: Vec<usize> = (0..self.sources.len())
            .filter(|&i| self.is_published(&self.sources[i].listing, now))
            .collect();
        let mut is_published = vec![false; self.sources.len()];
        published.iter().for_each(|&i| is_published[i] = true);
        let page_dir = archive::page_path(self.config, "x")
            .rsplit_once('/')
            .and_then(|(dir, _)| dir.rsplit_once('/'))
            .map_or(String::new(), |(dir, _)| dir.to_string());
        let (outputs, present) = rayon::join(
            || plan::outputs(self.config, &self.fingerprint, &self.sources, &published),
            || {
                let old = self.previous.outputs.keys().map(|p| Presence::split(p).0);
                let dirs: HashSet<&str> = old.chain([page_dir.as_str()]).collect();
                Presence::scan(&self.config.site.feeds, dirs)
            },
        );
        Plan {
            published,
            is_published,
            outputs,
            present,
            page_dir,
        }
    }

    /// What must be rendered: pages whose content or file changed, outputs whose fingerprint
    /// differs from the manifest's or whose file is gone.
    fn jobs(&self, plan: &Plan) -> Vec<Job> {
        let page_is_current = |i: usize| {
            let source = &self.sources[i];
            source.page_written && plan.present.has(&plan.page_dir, &source.listing.slug)
        };
        let output_is_current = |o: &plan::Output| {
            self.previous.outputs.get(&o.path) == Some(&o.fingerprint)
                && plan.present.has_file(&o.path)
        };
        let pages = plan
            .published
            .iter()
            .copied()
            .filter(|&i| !page_is_current(i));
        let mut jobs: Vec<Job> = pages.map(Job::Page).collect();
        let outputs = plan.outputs.outputs.iter().enumerate();
        jobs.extend(
            outputs
                .filter(|(_, o)| !output_is_current(o))
                .map(|(o, _)| Job::Output(o)),
        );
        jobs
    }

    /// The sources whose issues `jobs` show (with repeats).
    fn shown_by(&self, plan: &Plan, jobs: &[Job]) -> Vec<usize> {
        let mut shown = Vec::new();
        for job in jobs {
            match *job {
                Job::Page(i) => shown.push(i),
                Job::Output(o) => {
                    if let Kind::Feed(d) = plan.outputs.outputs[o].kind {
                        let entries = &plan.outputs.docs[d].entries;
                        shown.extend(entries.iter().map(|&e| plan.published[e]));
                    }
                }
            }
        }
        shown
    }

    /// Renders and writes `jobs` in parallel; meanwhile, when the manifest is to be saved
    /// (`save`), serialises its issue files on the other core.
    ///
    /// # Errors
    /// The pages' common parts cannot be made (not expected for a validated config). A file
    /// that cannot be written is in [`Rendered::first_error`].
    fn render(&self, plan: &Plan, jobs: &[Job], save: bool) -> Result<Rendered> {
        let view = SiteView::new(self.config)?;
        let listings: Vec<&Listing> = plan
            .published
            .iter()
            .map(|&i| &self.sources[i].listing)
            .collect();
        let terms: Vec<(&str, bool)> = (plan.outputs.terms.iter())
            .map(|(n, c)| (n.as_str(), *c))
            .collect();
        let render = |job: Job| self.render_job(job, plan, &view, &listings, &terms);
        let (results, manifest_json) = rayon::join(
            || -> Vec<(Job, Result<Option<bool>>)> {
                jobs.par_iter().map(|&job| (job, render(job))).collect()
            },
            || save.then(|| self.manifest_json(|i| plan.is_published[i])),
        );
        let mut rendered = Rendered {
            manifest_json,
            ..Rendered::default()
        };
        for (job, result) in results {
            match result {
                Ok(Some(wrote)) => {
                    rendered.rendered += 1;
                    rendered.written += usize::from(wrote);
                    if let (true, Job::Output(o)) = (wrote, job) {
                        if let Some(url) = self.subscription_feed(plan, o)? {
                            rendered.changed_feeds.push(url);
                        }
                    }
                }
                failure => {
                    match job {
                        Job::Page(i) => rendered.failed_pages.insert(i),
                        Job::Output(o) => rendered.failed_outputs.insert(o),
                    };
                    if let Err(e) = failure {
                        rendered.first_error.get_or_insert(e);
                    }
                }
            }
        }
        Ok(rendered)
    }

    /// Renders one job and writes its file; `Ok(None)` when an issue it shows could not be
    /// read, else whether the file's bytes changed.
    fn render_job(
        &self,
        job: Job,
        plan: &Plan,
        view: &SiteView,
        listings: &[&Listing],
        terms: &[(&str, bool)],
    ) -> Result<Option<bool>> {
        let config = self.config;
        let (path, bytes, may_exist) = match job {
            Job::Page(i) => match &self.sources[i].issue {
                Some(issue) => (
                    archive::page_path(config, &issue.slug),
                    archive::render_page(config, view, issue)?.into_bytes(),
                    plan.present.may_have(&plan.page_dir, &issue.slug),
                ),
                None => return Ok(None),
            },
            Job::Output(o) => {
                let output = &plan.outputs.outputs[o];
                let bytes = match output.kind {
                    Kind::Index => archive::render_index(config, view, listings, terms)?.into(),
                    Kind::Feed(d) => {
                        let doc = &plan.outputs.docs[d];
                        let issues: Option<Vec<&Issue>> = (doc.entries.iter())
                            .map(|&e| self.sources[plan.published[e]].issue.as_deref())
                            .collect();
                        match issues {
                            Some(issues) => doc.format.render(&issues, &doc.meta(config)?),
                            None => return Ok(None),
                        }
                    }
                    Kind::Static(content) => content.into(),
                    Kind::Resource(i, r) => {
                        let from = &self.sources[i].resources[r].path;
                        std::fs::read(from).with_context(|| {
                            format!(
                                "failed to read `{}`, a file of the page bundle",
                                from.display()
                            )
                        })?
                    }
                };
                let (dir, name) = Presence::split(&output.path);
                (output.path.clone(), bytes, plan.present.may_have(dir, name))
            }
        };
        let full = config.site.feeds.join(path);
        feed::write_file(&full, &bytes, may_exist).map(Some)
    }

    /// The URL of output `o` when it is a subscription feed (not an archive document).
    fn subscription_feed(&self, plan: &Plan, o: usize) -> Result<Option<Url>> {
        match plan.outputs.outputs[o].kind {
            Kind::Feed(d) if !plan.outputs.docs[d].archive => {
                feed::url(self.config, &plan.outputs.docs[d].path).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Removes what earlier builds wrote and this site no longer has: pages of issue files
    /// gone, changed to another slug, or no longer published, and outputs not in the plan.
    /// Returns how many files it removed.
    ///
    /// # Errors
    /// A file cannot be removed.
    fn remove_stale(&mut self, plan: &Plan) -> Result<usize> {
        let config = self.config;
        let unpublished = (self.sources.iter().enumerate())
            .filter(|(i, s)| s.page_written && !plan.is_published[*i])
            .map(|(_, s)| archive::page_path(config, &s.listing.slug));
        self.previous.pages.extend(unpublished);
        let root = &config.site.feeds;
        let mut removed = 0;
        if !self.previous.pages.is_empty() {
            let current: HashSet<String> = (plan.published.iter())
                .map(|&i| archive::page_path(config, &self.sources[i].listing.slug))
                .collect();
            let stale: BTreeSet<&String> = (self.previous.pages.iter())
                .filter(|p| !current.contains(*p))
                .collect();
            for path in stale {
                removed += usize::from(remove_output(root, path)?);
            }
        }
        let current: HashSet<&str> = (plan.outputs.outputs.iter())
            .map(|o| o.path.as_str())
            .collect();
        for path in (self.previous.outputs.keys()).filter(|p| !current.contains(p.as_str())) {
            removed += usize::from(remove_output(root, path)?);
        }
        Ok(removed)
    }

    /// Saves what is on disk now as the manifest, when anything differs from the last one
    /// (`changed`: something was read, rendered or removed). Outputs that failed are left out,
    /// so they are tried again. The build's large values are freed on a thread nobody waits for.
    ///
    /// # Errors
    /// The manifest cannot be written, or (after it is) the first output that failed.
    fn save_manifest(self, plan: Plan, rendered: Rendered, changed: bool) -> Result<()> {
        let failed = &rendered.failed_outputs;
        let outputs: BTreeMap<String, String> = (plan.outputs.outputs.iter().enumerate())
            .filter(|(o, _)| !failed.contains(o))
            .map(|(_, o)| (o.path.clone(), o.fingerprint.clone()))
            .collect();
        let save = !self.previous.trusted || changed || outputs != self.previous.outputs;
        let failed_pages = &rendered.failed_pages;
        let json = match rendered.manifest_json {
            Some(json) if failed_pages.is_empty() => Some(json),
            _ if save => {
                Some(self.manifest_json(|i| plan.is_published[i] && !failed_pages.contains(&i)))
            }
            _ => None,
        };
        let (config, fingerprint, started) = (self.config, self.fingerprint, self.started_ns);
        // Free the build's 10,000 listings off the critical path, on a thread nobody waits
        // for (if feedpost exits first, the system takes the memory back at once).
        let big = (self.sources, plan, self.previous);
        let _ = std::thread::Builder::new()
            .name("feedpost-free".into())
            .spawn(move || drop(big));
        if let (true, Some(json)) = (save, json) {
            manifest::write(
                &Manifest::path(config),
                &fingerprint,
                &config.site.permalink_prefix,
                started,
                &json,
                &outputs,
            )?;
        }
        match rendered.first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The manifest's issue files (see [`manifest::sources_json`]) in the issues folder's
    /// order, leaving out files that changed during the run; `page(i)` says whether source
    /// `i`'s page is on disk.
    fn manifest_json(&self, page: impl Fn(usize) -> bool) -> Vec<u8> {
        let sources = &self.sources;
        let paths: Vec<Cow<'_, str>> = sources.iter().map(|s| s.path.to_string_lossy()).collect();
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| sources[i].index);
        let rows: Vec<manifest::Row<'_>> = order
            .into_iter()
            .filter(|&i| sources[i].cacheable)
            .map(|i| manifest::Row {
                path: &paths[i],
                len: sources[i].len,
                mtime_ns: sources[i].mtime_ns,
                hash: &sources[i].hash,
                page: page(i),
                listing: &sources[i].listing,
            })
            .collect();
        manifest::sources_json(&rows)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
