//! `feedpost check`: lint the config and every issue, write nothing.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::Ran;
use crate::config::Config;
use crate::lint::{self, Report};

/// Prints every finding as `path:line: severity: message` on stdout, then the summary line
/// (`N errors, M warnings in K issues`). Exit code 1 when there is an error, 0 with warnings only.
/// A config that does not load is one error on the config file; its issues are then not looked at.
///
/// # Errors
/// `FEEDPOST_NOW` is invalid, or stdout cannot be written.
pub fn run(config_path: &Path) -> Result<Ran> {
    let now = crate::now()?.fixed_offset();
    let site_error = |e: anyhow::Error| Report {
        findings: vec![lint::config_finding(config_path, &e)],
        issue_files: 0,
    };
    let report = match Config::from_file(config_path) {
        Ok(config) => lint::check_site(&config, now).unwrap_or_else(site_error),
        Err(e) => site_error(e),
    };
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        writeln!(out, "{finding}")?;
    }
    writeln!(out, "{}", report.summary())?;
    Ok(Ran::failed_if(report.errors() > 0))
}
