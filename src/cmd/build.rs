//! `feedpost build`: load the issues and write the feeds.

use std::process::ExitCode;

use anyhow::Result;
use tracing::info;

use crate::config::Config;
use crate::feed;

/// Writes the feeds for every good issue; bad files are reported and left out, and make the exit
/// code 1.
///
/// # Errors
/// The issues folder cannot be read or a feed cannot be written.
pub fn run(config: &Config) -> Result<ExitCode> {
    let loaded = super::load_issues(config)?;
    let now = crate::now()?.fixed_offset();
    let changed = feed::write_all(&loaded.issues, config, now)?;
    info!(
        issues = loaded.issues.len(),
        errors = loaded.errors.len(),
        changed,
        feeds = %config.site.feeds.display(),
        "feeds built"
    );
    println!(
        "built feeds for {} issues into {} ({} files changed, {} bad issue files)",
        loaded.issues.len(),
        config.site.feeds.display(),
        changed,
        loaded.errors.len()
    );
    Ok(if loaded.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
