//! `feedpost check`: lint the config, every issue and the subscriber list; write nothing.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::{count, Ran};
use crate::config::Config;
use crate::lint::{self, Report};
use crate::subscribers;

/// Prints every finding as `path:line: severity: message` on stdout — the issues' (see
/// [`lint::check_site`]), then the subscriber list's (see [`subscribers::check::check`]) — then
/// the summary line (`N errors, M warnings in K issues and S subscribers`); with `json`, one
/// JSON object holding both (see [`crate::cli::CheckArgs`]). Exit code 1 when there is an
/// error, 0 with warnings only. A config that does not load is one error on the
/// config file (a missing one names the folder looked in); nothing else is looked at then.
///
/// # Errors
/// `FEEDPOST_NOW` is invalid, or stdout cannot be written.
pub fn run(config_path: &Path, json: bool) -> Result<Ran> {
    let now = crate::now()?.fixed_offset();
    let site_error = |e: anyhow::Error| Report {
        findings: vec![lint::config_finding(config_path, &e)],
        issue_files: 0,
    };
    let (mut report, list) = match Config::from_file(config_path) {
        Ok(config) => {
            let report = lint::check_site(&config, now).unwrap_or_else(site_error);
            (report, Some(subscribers::check::check(&config)))
        }
        Err(e) => (site_error(e), None),
    };
    let listed = list.as_ref().map(|l| l.subscribers);
    if let Some(list) = list {
        report.findings.extend(list.findings);
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", as_json(&report, listed))?;
    } else {
        for finding in &report.findings {
            writeln!(out, "{finding}")?;
        }
        writeln!(out, "{}", summary(&report, listed))?;
    }
    Ok(Ran::failed_if(report.errors() > 0))
}

/// `2 errors, 1 warning in 5 issues and 120 subscribers` (without the subscribers when the
/// list was not read).
fn summary(report: &Report, subscribers: Option<usize>) -> String {
    let mut line = format!(
        "{}, {} in {}",
        count(report.errors(), "error", "errors"),
        count(report.warnings(), "warning", "warnings"),
        count(report.issue_files, "issue", "issues")
    );
    if let Some(n) = subscribers {
        line.push_str(&format!(" and {}", count(n, "subscriber", "subscribers")));
    }
    line
}

/// The report as one JSON object (see [`crate::cli::CheckArgs`]).
fn as_json(report: &Report, subscribers: Option<usize>) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "file": f.path.to_string_lossy(),
                "line": f.line,
                "severity": f.severity.to_string(),
                "message": f.message,
            })
        })
        .collect();
    serde_json::json!({
        "findings": findings,
        "errors": report.errors(),
        "warnings": report.warnings(),
        "issues": report.issue_files,
        "subscribers": subscribers,
    })
}
