//! `feedpost status`: where each delivery stands, from the ledger.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::ledger::{Counts, DeliveryRow, Ledger, State};

/// How many deferred and failed rows `status` shows per issue.
const SHOWN: usize = 50;

#[derive(Serialize)]
struct IssueStatus {
    issue: String,
    counts: Counts,
    problems: Vec<DeliveryRow>,
}

/// Prints counts per state, attempts, and the last replies of deferred and failed recipients,
/// for `issue` (a file path, slug or permalink) or every issue in the ledger. `json` prints one
/// JSON document: `{"issues": [{"issue", "counts", "problems"}]}`.
///
/// # Errors
/// The ledger cannot be read.
pub fn run(config: &Config, issue: Option<&str>, json: bool) -> Result<ExitCode> {
    if !config.mail.ledger.exists() {
        if json {
            println!("{{\"issues\":[]}}");
        } else {
            println!(
                "nothing sent yet: no ledger at {}",
                config.mail.ledger.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ledger = Ledger::open(&config.mail.ledger)?;
    let ids: Vec<String> = match issue {
        Some(wanted) => vec![resolve(config, wanted)],
        None => ledger.issues()?.into_iter().map(|(id, _)| id).collect(),
    };
    let mut out = Vec::new();
    for id in ids {
        out.push(IssueStatus {
            counts: ledger.counts(&id)?,
            problems: ledger.rows(&id, &[State::Deferred, State::Failed], SHOWN)?,
            issue: id,
        });
    }
    if json {
        println!("{}", serde_json::json!({ "issues": out }));
        return Ok(ExitCode::SUCCESS);
    }
    if out.is_empty() {
        println!("nothing sent yet");
    }
    for s in &out {
        let c = &s.counts;
        println!("{}", s.issue);
        println!(
            "  sent {}  queued {}  sending {}  deferred {}  failed {}  (attempts {})",
            c.sent, c.queued, c.sending, c.deferred, c.failed, c.attempts
        );
        for p in &s.problems {
            println!(
                "  {:8} {}  attempts {}  {}",
                p.state.as_str(),
                p.recipient,
                p.attempts,
                p.last_reply.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns a file path or slug into the issue's permalink; a permalink is returned as it is.
fn resolve(config: &Config, wanted: &str) -> String {
    if wanted.starts_with("http://") || wanted.starts_with("https://") {
        return wanted.to_string();
    }
    let path = std::path::Path::new(wanted);
    if path.is_file() {
        if let Ok(issue) = crate::issue::load_file(path, config) {
            return issue.permalink.to_string();
        }
    }
    let slug = wanted.trim_end_matches(".md");
    let slug = std::path::Path::new(slug)
        .file_name()
        .map_or(slug.to_string(), |s| s.to_string_lossy().into_owned());
    config
        .site
        .base_url
        .join(&format!(
            "{}{}/",
            config.site.permalink_prefix,
            crate::issue::percent_encode_segment(&slug)
        ))
        .map(String::from)
        .unwrap_or_else(|_| wanted.to_string())
}
