//! `feedpost build`: write the feeds and the web archive; send nothing.

use std::io::Write;

use anyhow::Result;
use tracing::info;

use super::Ran;
use crate::config::Config;
use crate::site::Site;

/// Builds the feeds and archive pages for every good issue (see [`Site::build`]); bad files are
/// left out and returned, to be reported on stderr as `path:line: message` (exit code 1).
///
/// # Errors
/// The issues folder cannot be read, an output cannot be written, or stdout cannot be written.
pub fn run(config: &Config) -> Result<Ran> {
    let now = crate::now()?.fixed_offset();
    let report = Site::load(config)?.build(now)?;
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
        "built feeds for {} issues ({} published) into {}: {} files changed ({} of {} rendered, {} removed), {} bad issue files",
        report.issues,
        report.published,
        config.site.feeds.display(),
        report.written,
        report.rendered,
        report.outputs,
        report.removed,
        report.errors.len()
    )?;
    Ok(Ran::with_errors(
        report.errors.iter().map(ToString::to_string).collect(),
    ))
}
