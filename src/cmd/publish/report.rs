//! The end of a send: the one-line summary on stdout, what is left to do on stderr, and the exit
//! code.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use tracing::warn;

use crate::cmd::Ran;
use crate::config::Config;
use crate::deliver::Report;
use crate::issue::Issue;
use crate::store::{Channel, Counts, Queue, State, Store};

/// How many still-deferred recipients the end of a run names on stderr.
const DEFERRED_SHOWN: usize = 10;

/// The numbers of the one-line summary of a run.
pub(super) struct Summary<'a> {
    /// `publish` or `retry`.
    pub action: &'static str,
    /// The issue sent.
    pub issue: &'a Issue,
    /// Where it went.
    pub channel: Channel,
    /// Sent in this run.
    pub sent: u64,
    /// Sent before this run.
    pub already: u64,
    /// Entries of the subscriber list not queued: bad, repeated, not wanting the issue's topics,
    /// suppressed.
    pub skipped: u64,
    /// Failed in this run.
    pub failed: u64,
    /// The store's counts at the end of the run: what is left deferred, queued, removed.
    pub after: Counts,
}

/// Prints the summary: `sent S, already sent A, skipped K, failed F, deferred D, queued Q` (and
/// `removed R` when some readers were no longer eligible), after `outbox (a rehearsal, nothing
/// mailed): ` for the outbox. Deferred, queued and removed are the store's counts, which
/// `status` shows too. With `json`, the same numbers as one JSON object (see [`json_summary`]).
///
/// # Errors
/// Stdout cannot be written (a closed pipe ends the command quietly, see `main`).
pub(super) fn print_summary(s: &Summary, outbox: &Path, json: bool) -> Result<()> {
    if json {
        writeln!(std::io::stdout().lock(), "{}", json_summary(s, outbox))?;
        return Ok(());
    }
    let channel = s.channel;
    let mut line = match channel {
        Channel::Smtp => String::new(),
        Channel::Outbox => "outbox (a rehearsal, nothing mailed): ".to_string(),
    };
    line.push_str(&format!(
        "sent {}, already sent {}, skipped {}, failed {}, deferred {}, queued {}",
        s.sent, s.already, s.skipped, s.failed, s.after.deferred, s.after.queued
    ));
    if s.after.sending > 0 {
        line.push_str(&format!(", sending {}", s.after.sending));
    }
    if s.after.removed > 0 {
        line.push_str(&format!(", removed {}", s.after.removed));
    }
    if channel == Channel::Outbox {
        line.push_str(&format!(
            "; the files are in `{}`, and an [smtp] table mails the issue",
            outbox.display()
        ));
    }
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// The summary as one JSON object: `{"action": "publish" | "retry", "issue" (permalink),
/// "title", "file", "channel": "smtp" | "outbox", "sent", "already_sent", "skipped", "failed",
/// "deferred", "queued", "sending", "removed", "outbox": the outbox folder or null}` — the
/// numbers of the text line, every one always present.
fn json_summary(s: &Summary, outbox: &Path) -> serde_json::Value {
    serde_json::json!({
        "action": s.action,
        "issue": s.issue.permalink.as_str(),
        "title": s.issue.title,
        "file": s.issue.path.display().to_string(),
        "channel": s.channel.as_str(),
        "sent": s.sent,
        "already_sent": s.already,
        "skipped": s.skipped,
        "failed": s.failed,
        "deferred": s.after.deferred,
        "queued": s.after.queued,
        "sending": s.after.sending,
        "removed": s.after.removed,
        "outbox": (s.channel == Channel::Outbox).then(|| outbox.display().to_string()),
    })
}

/// After the summary: an error if the server stopped the run; else, what is left to send and
/// when to try again (on stderr), and the exit code — 1 when a recipient failed or is left.
///
/// # Errors
/// The run stopped (the server refused us or the message), or the store cannot be read.
pub(super) async fn conclude(
    config: &Config,
    issue: &Issue,
    store: &dyn Store,
    queue: Queue<'_>,
    report: Report,
    after: Counts,
) -> Result<Ran> {
    let path = issue.path.display();
    if let Some(stopped) = report.stopped {
        return Err(anyhow::anyhow!(stopped)).context(format!(
            "sending `{path}` stopped; nothing unsent was marked sent, and nobody was suppressed for it. Run `feedpost retry {path}` when fixed"
        ));
    }
    let left = after.pending();
    if let Some(until) = report.cap_reached_until {
        warn!(
            queued = left,
            "the hourly cap of {} messages (`smtp.hourly_cap`) is reached and frees a slot only at {} UTC; run `feedpost retry {path}` then to send the rest",
            config.smtp.as_ref().map_or(0, |s| s.hourly_cap),
            until.format("%Y-%m-%d %H:%M:%S"),
        );
    } else if left > 0 {
        let shown = store
            .rows(queue, &[State::Deferred], DEFERRED_SHOWN)
            .await?;
        for row in &shown {
            warn!(
                recipient = %row.recipient,
                attempts = row.attempts,
                reply = row.last_reply.as_deref().unwrap_or(""),
                "still deferred"
            );
        }
        let more = if left > shown.len() as u64 {
            " (`feedpost status` lists them)"
        } else {
            ""
        };
        warn!("{left} recipient(s) could not be reached yet{more}; `feedpost retry {path}` (or the next publish) tries them again");
    }
    Ok(Ran::failed_if(report.failed > 0 || left > 0))
}
