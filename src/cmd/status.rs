//! `feedpost status`: how many subscribers are in each state, where each delivery stands, from
//! the store — mail (SMTP) and the outbox rehearsal apart — and, for the whole site, the
//! schedule: the issue due now and the next.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{bail, Result};
use chrono::Utc;
use serde::Serialize;
use tracing::warn;

use crate::cmd::schedule::{self, Schedule};
use crate::cmd::Ran;
use crate::config::Config;
use crate::issue::Listing;
use crate::site::Site;
use crate::store::{
    self, Channel, Counts, DeliveryRow, Open, Queue, State, Store, SubscriberCounts,
};

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

/// Prints the subscribers per state (pending, confirmed, unsubscribed, bounced: the store's,
/// and the readers of `subscribers.toml` no publish has read in yet, as confirmed), then, for
/// `issue` (a file path, slug or permalink) or every issue in the ledger, the counts per state,
/// attempts, and the rows deferred, failed or removed with their last replies — for SMTP, and
/// apart from it for the outbox (a rehearsal, nothing mailed). `json` prints one JSON document:
/// `{"subscribers": {"pending", "confirmed", "unsubscribed", "bounced"}, "issues": [{"issue",
/// "counts", "problems", "outbox": null | {"counts", "problems"}}]}`, `counts` and `problems`
/// being those of SMTP. Without `issue`, the schedule follows (JSON: `"schedule": {"due",
/// "next"}`, each null or `{"issue", "title", "file", "date", "mailed"}`, `date` RFC 3339 in
/// UTC): the issue a `publish` without an issue sends now, and the one due next.
///
/// # Errors
/// The ledger or the subscriber file cannot be read, or `issue` names no issue of the site and
/// none in the ledger.
pub fn run(config: &Config, issue: Option<&str>, json: bool) -> Result<Ran> {
    let out = super::block_on(async {
        let store = store::open(config, Open::IfExists).await?;
        let ids = issue_ids(config, store.as_deref(), issue).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(issue_status(store.as_deref(), id).await?);
        }
        let subscribers = super::subscribers::counts(config).await?;
        Ok::<_, anyhow::Error>((store.is_some(), subscribers, out))
    })??;
    let (has_store, subscribers, out) = out;
    // The deliveries are what `status` is for: a site that cannot be read only hides the
    // schedule, with a warning.
    let schedule = match issue {
        None => schedule_status(config)
            .inspect_err(|e| warn!("the schedule is not shown: {e:#}"))
            .ok(),
        Some(_) => None,
    };
    print(
        config,
        has_store,
        &subscribers,
        &out,
        schedule.as_ref(),
        json,
    )?;
    Ok(Ran::success())
}

/// One issue of the schedule, as `status` shows it.
#[derive(Serialize)]
struct Scheduled {
    /// The permalink.
    issue: String,
    title: String,
    /// The issue file.
    file: String,
    /// The front-matter date, RFC 3339 in UTC: when it is (or was) due.
    date: String,
    /// Whether it has deliveries on the channel the config sends through.
    mailed: bool,
    /// The date as text (`2026-12-04 09:00 UTC`), and how far from now.
    #[serde(skip)]
    when: String,
}

/// The schedule: the issue a `publish` without an issue sends now, and the one due next.
#[derive(Serialize)]
struct ScheduleStatus {
    due: Option<Scheduled>,
    next: Option<Scheduled>,
}

/// Where the schedule stands now (see [`Schedule`]).
///
/// # Errors
/// The issues folder or the ledger cannot be read.
fn schedule_status(config: &Config) -> Result<ScheduleStatus> {
    let now = crate::now()?.fixed_offset();
    let site = Site::load(config)?;
    let mailed: HashSet<String> = super::mailed_issues(config)?.into_iter().collect();
    let listings: Vec<&Listing> = site.listings().collect();
    let schedule = Schedule::of(&listings, &mailed, now);
    let entry = |i: usize| {
        let l = listings[i];
        Scheduled {
            issue: l.permalink.clone(),
            title: l.title.clone(),
            file: site
                .path_of(i)
                .map_or(String::new(), |p| p.display().to_string()),
            date: l.date.with_timezone(&Utc).to_rfc3339(),
            mailed: mailed.contains(&l.permalink),
            when: format!(
                "{} ({})",
                schedule::when(l.date),
                schedule::from_now(l.date, now)
            ),
        }
    };
    Ok(ScheduleStatus {
        due: schedule.due.map(entry),
        next: schedule.next.map(entry),
    })
}

/// The issues to show: `wanted` (a file, slug or permalink) if given, else every issue in the
/// store, newest first.
async fn issue_ids(
    config: &Config,
    store: Option<&dyn Store>,
    wanted: Option<&str>,
) -> Result<Vec<String>> {
    let Some(wanted) = wanted else {
        return Ok(match store {
            Some(s) => s.issues().await?.into_iter().map(|(id, _)| id).collect(),
            None => Vec::new(),
        });
    };
    let id = resolve(config, wanted);
    let known = match store {
        Some(s) => !s.channels_of(&id).await?.is_empty(),
        None => false,
    };
    if !known && !is_site_issue(config, &id) {
        bail!(
            "`{wanted}` is no issue of this site and has no deliveries in the ledger `{}`; name an issue by its file, slug or permalink (`feedpost status` lists those in the ledger)",
            config.mail.ledger.display()
        );
    }
    Ok(vec![id])
}

/// Both channels of the issue `id`.
async fn issue_status(store: Option<&dyn Store>, id: String) -> Result<IssueStatus> {
    let channel = |channel| {
        let id = &id;
        async move {
            let q = Queue { issue: id, channel };
            Ok::<_, anyhow::Error>(match store {
                Some(s) => ChannelStatus {
                    counts: s.counts(q).await?,
                    problems: s.rows(q, &LISTED, SHOWN).await?,
                },
                None => ChannelStatus {
                    counts: Counts::default(),
                    problems: Vec::new(),
                },
            })
        }
    };
    let smtp = channel(Channel::Smtp).await?;
    let outbox = Some(channel(Channel::Outbox).await?).filter(|o| !o.counts.is_empty());
    Ok(IssueStatus {
        issue: id.clone(),
        smtp,
        outbox,
    })
}

/// Writes the statuses as text or JSON on stdout.
///
/// # Errors
/// Stdout cannot be written (a closed pipe ends the command quietly, see `main`).
fn print(
    config: &Config,
    has_store: bool,
    subscribers: &SubscriberCounts,
    out: &[IssueStatus],
    schedule: Option<&ScheduleStatus>,
    json: bool,
) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    if json {
        let mut doc = serde_json::json!({ "subscribers": subscribers, "issues": out });
        if let Some(schedule) = schedule {
            doc["schedule"] = serde_json::to_value(schedule)?;
        }
        writeln!(stdout, "{doc}")?;
        return Ok(());
    }
    let c = subscribers;
    writeln!(
        stdout,
        "subscribers  confirmed {}  pending {}  unsubscribed {}  bounced {}",
        c.confirmed, c.pending, c.unsubscribed, c.bounced
    )?;
    if out.is_empty() {
        if has_store {
            writeln!(stdout, "nothing sent yet")?;
        } else {
            writeln!(
                stdout,
                "nothing sent yet: no ledger at {}",
                config.mail.ledger.display()
            )?;
        }
    }
    for s in out {
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
    if let Some(schedule) = schedule {
        write_schedule(&mut stdout, schedule)?;
    }
    Ok(())
}

/// The schedule's lines: the issue due now (mailed or not yet), and the next one.
fn write_schedule(out: &mut impl Write, s: &ScheduleStatus) -> std::io::Result<()> {
    writeln!(out, "schedule")?;
    match &s.due {
        Some(d) if d.mailed => writeln!(
            out,
            "  due     `{}` ({}), dated {}: mailed",
            d.title, d.file, d.when
        )?,
        Some(d) => writeln!(
            out,
            "  due     `{}` ({}), dated {}: not mailed yet; the next `feedpost publish` sends it",
            d.title, d.file, d.when
        )?,
        None => writeln!(out, "  due     none: no issue is due yet")?,
    }
    match &s.next {
        Some(n) => writeln!(out, "  next    `{}` ({}), due {}", n.title, n.file, n.when),
        None => writeln!(
            out,
            "  next    none: no issue is dated in the future (drafts are never scheduled)"
        ),
    }
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
