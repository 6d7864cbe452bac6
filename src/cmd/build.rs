//! `feedpost build`: write the feeds and the web archive; send nothing.

use std::process::ExitCode;

use anyhow::Result;
use tracing::info;

use crate::config::Config;
use crate::site::Site;

/// Builds the feeds and archive pages for every good issue (see [`Site::build`]); bad files are
/// reported on stderr as `path:line: message`, left out, and make the exit code 1.
///
/// # Errors
/// The issues folder cannot be read or an output cannot be written.
pub fn run(config: &Config) -> Result<ExitCode> {
    let now = crate::now()?.fixed_offset();
    let report = Site::load(config)?.build(now)?;
    for e in &report.errors {
        eprintln!("error: {e}");
    }
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
    println!(
        "built feeds for {} issues ({} published) into {}: {} files changed ({} of {} rendered, {} removed), {} bad issue files",
        report.issues,
        report.published,
        config.site.feeds.display(),
        report.written,
        report.rendered,
        report.outputs,
        report.removed,
        report.errors.len()
    );
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
