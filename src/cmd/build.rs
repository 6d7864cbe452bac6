//! `feedpost build`: write the feeds and the web archive; send nothing.

use std::io::Write;

use anyhow::Result;
use tracing::info;

use super::{count, Ran};
use crate::config::Config;
use crate::site::Site;

/// Builds the feeds and archive pages for every good issue published (dated now or earlier and
/// not a draft, or already mailed: see [`super::mailed_issues`]; see [`Site::build`]); bad files
/// are left out and returned, to be reported on stderr as `path:line: message` (exit code 1).
///
/// # Errors
/// The issues folder or the store cannot be read, an output cannot be written, or stdout cannot
/// be written.
pub fn run(config: &Config) -> Result<Ran> {
    let now = crate::now()?.fixed_offset();
    let mut site = Site::load(config)?;
    site.count_as_published(super::mailed_issues(config)?);
    let report = site.build(now)?;
    info!(
        published = report.published,
        errors = report.errors.len(),
        loaded = report.loaded,
        rendered = report.rendered,
        written = report.written,
        removed = report.removed,
        folder = %config.site.feeds.display(),
        "site built"
    );
    writeln!(
        std::io::stdout().lock(),
        "built feeds for {} ({} published) into {}: {} changed ({} of {} rendered, {} removed), {}",
        count(report.issues, "issue", "issues"),
        report.published,
        config.site.feeds.display(),
        count(report.written, "file", "files"),
        report.rendered,
        report.outputs,
        report.removed,
        count(report.errors.len(), "bad issue file", "bad issue files")
    )?;
    Ok(Ran::with_errors(
        report.errors.iter().map(ToString::to_string).collect(),
    ))
}
