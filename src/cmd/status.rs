//! `feedpost status`: where each delivery stands, from the ledger — mail (SMTP) and the outbox
//! rehearsal apart.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::Config;
use crate::ledger::{Channel, Counts, DeliveryRow, Ledger, Queue, State};

/// How many rows per state `status` shows per issue and channel.
const SHOWN: usize = 50;

/// The states whose rows `status` lists (sent rows are only counted).
const LISTED: [State; 3] = [State::Deferred, State::Failed, State::Removed];

/// One channel of one issue.
#[derive(Serialize)]
struct ChannelStatus {
    counts: Counts,
    problems: Vec<DeliveryRow>,
}

/// One issue: its mail (SMTP) deliveries, and its outbox rehearsal if it had one.
#[derive(Serialize)]
struct IssueStatus {
    issue: String,
    /// SMTP: what readers were mailed.
    #[serde(flatten)]
    smtp: ChannelStatus,
    /// The outbox: files written, nothing mailed.
    outbox: Option<ChannelStatus>,
}

/// Prints, for `issue` (a file path, slug or permalink) or every issue in the ledger, the counts
/// per state, attempts, and the rows deferred, failed or removed with their last replies — for
/// SMTP, and apart from it for the outbox (a rehearsal, nothing mailed). `json` prints one JSON
/// document: `{"issues": [{"issue", "counts", "problems", "outbox": null | {"counts",
/// "problems"}}]}`, `counts` and `problems` being those of SMTP.
///
/// # Errors
/// The ledger cannot be read, or `issue` names no issue of the site and none in the ledger.
pub fn run(config: &Config, issue: Option<&str>, json: bool) -> Result<ExitCode> {
    let ledger = Ledger::open_existing(&config.mail.ledger)?;
    let ids: Vec<String> = match issue {
        Some(wanted) => {
            let id = resolve(config, wanted);
            let known = match &ledger {
                Some(l) => !l.channels_of(&id)?.is_empty(),
                None => false,
            };
            if !known && !is_site_issue(config, &id) {
                bail!(
                    "`{wanted}` is no issue of this site and has no deliveries in the ledger `{}`; name an issue by its file, slug or permalink (`feedpost status` lists those in the ledger)",
                    config.mail.ledger.display()
                );
            }
            vec![id]
        }
        None => match &ledger {
            Some(l) => l.issues()?.into_iter().map(|(id, _)| id).collect(),
            None => Vec::new(),
        },
    };
    let mut out = Vec::new();
    for id in ids {
        let channel = |channel| -> Result<ChannelStatus> {
            let q = Queue {
                issue: &id,
                channel,
            };
            Ok(match &ledger {
                Some(l) => ChannelStatus {
                    counts: l.counts(q)?,
                    problems: l.rows(q, &LISTED, SHOWN)?,
                },
                None => ChannelStatus {
                    counts: Counts::default(),
                    problems: Vec::new(),
                },
            })
        };
        let smtp = channel(Channel::Smtp)?;
        let outbox = Some(channel(Channel::Outbox)?).filter(|o| !o.counts.is_empty());
        out.push(IssueStatus {
            issue: id.clone(),
            smtp,
            outbox,
        });
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::json!({ "issues": out }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if out.is_empty() {
        match ledger {
            Some(_) => writeln!(stdout, "nothing sent yet")?,
            None => writeln!(
                stdout,
                "nothing sent yet: no ledger at {}",
                config.mail.ledger.display()
            )?,
        }
    }
    for s in &out {
        writeln!(stdout, "{}", s.issue)?;
        if s.smtp.counts.is_empty() {
            writeln!(stdout, "  smtp    not mailed yet")?;
        } else {
            writeln!(stdout, "  smtp    {}", counts_line(&s.smtp.counts))?;
            write_problems(&mut stdout, &s.smtp.problems)?;
        }
        if let Some(outbox) = &s.outbox {
            writeln!(
                stdout,
                "  outbox  {}  (a rehearsal: files in the outbox, nothing mailed)",
                counts_line(&outbox.counts)
            )?;
            write_problems(&mut stdout, &outbox.problems)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn counts_line(c: &Counts) -> String {
    format!(
        "sent {}  queued {}  sending {}  deferred {}  failed {}  removed {}  (attempts {})",
        c.sent, c.queued, c.sending, c.deferred, c.failed, c.removed, c.attempts
    )
}

fn write_problems(out: &mut impl Write, problems: &[DeliveryRow]) -> std::io::Result<()> {
    for p in problems {
        writeln!(
            out,
            "    {:8} {}  attempts {}  {}",
            p.state.as_str(),
            p.recipient,
            p.attempts,
            p.last_reply.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// Whether the permalink `id` is an issue of the site (as the site loader lists it).
fn is_site_issue(config: &Config, id: &str) -> bool {
    crate::site::Site::load(config)
        .map(|site| site.listings().any(|l| l.permalink == id))
        .unwrap_or(false)
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
