//! `feedpost publish` and `feedpost retry`: build, queue the issue for its subscribers in the
//! store, and run the delivery engine until every recipient is sent, failed, or deferred.
//!
//! The steps of a run ([`Mode::Publish`], [`Mode::Retry`]), in order: pick the issue (without
//! one named, the newest due, see [`crate::cmd::schedule`]; refusing drafts, and a future date
//! without `--future`), issues already mailed counting as published whatever their date; open the store to send (for the SQLite ledger,
//! its lock first); the unsubscribe secret; refuse an issue the store knows under another
//! permalink; build the site; compose the message; read the subscriber list into the store
//! (queueing who wants the issue, and taking out of the queue who no longer does); send; print
//! the summary — also when the run stopped on an error. [`Mode::DryRun`] counts as a publish
//! would and writes nothing; [`Mode::TestSend`] sends one copy, recorded nowhere.

mod audience;
mod report;
mod test_send;

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::cli::PublishArgs;
use crate::cmd::schedule::{self, Schedule};
use crate::cmd::Ran;
use crate::config::Config;
use crate::deliver::{self, Engine, Settings};
use crate::feed::websub;
use crate::issue::{Issue, Listing};
use crate::mail::sign::SigningPool;
use crate::mail::{self, IssueMail};
use crate::site::{self, Site};
use crate::store::{self, Channel, IssueRecord, Open, Queue, Store};
use crate::subscribers::token::{Secret, SECRET_ENV};

/// What `publish` (or `retry`) does with the issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Queue every subscriber who wants the issue, ping the WebSub hub, send.
    Publish {
        /// `--as-new-issue`: mail it although the store knows it under another permalink.
        as_new_issue: bool,
        /// `--future`: publish it although it is dated in the future.
        future: bool,
    },
    /// `--dry-run`: count as [`Mode::Publish`] would; write and send nothing.
    DryRun {
        /// `--future`.
        future: bool,
    },
    /// `--to ADDRESS`: one copy to that address over the configured transport, recorded and
    /// counted nowhere; drafts and future issues too (that is what a test send is for).
    TestSend {
        /// The address.
        to: String,
    },
    /// `retry`: send what an earlier publish left queued or deferred; add nobody.
    Retry,
}

impl Mode {
    /// This mode, allowing an issue dated in the future (as `--future` does).
    fn with_future(self) -> Mode {
        match self {
            Mode::Publish { as_new_issue, .. } => Mode::Publish {
                as_new_issue,
                future: true,
            },
            Mode::DryRun { .. } => Mode::DryRun { future: true },
            other => other,
        }
    }

    /// The mode `publish`'s options ask for.
    pub fn of(args: &PublishArgs) -> Mode {
        match (&args.to, args.dry_run) {
            (Some(to), _) => Mode::TestSend { to: to.clone() },
            (None, true) => Mode::DryRun {
                future: args.future,
            },
            (None, false) => Mode::Publish {
                as_new_issue: args.as_new_issue,
                future: args.future,
            },
        }
    }
}

/// `feedpost publish` and `retry`: see the module docs. `issue` is the issue file; without one,
/// the newest issue whose date has come (see [`scheduled`]). `json`: the summary as one JSON
/// object on stdout instead of the text line (see [`report`]).
///
/// # Errors
/// A bad issue file anywhere in the site (nothing is sent), an issue that cannot be published (a
/// draft, dated in the future without `--future`, or already mailed under another permalink), a
/// held lock, a missing `FEEDPOST_SECRET`, a server that refuses us or the message, or a store
/// error.
pub fn run(config: &Config, issue: Option<&Path>, mut mode: Mode, json: bool) -> Result<Ran> {
    let mut site = Site::load(config)?;
    super::refuse_bad_issues(site.errors())?;
    let now = crate::now()?;
    // Issues already mailed stay published whatever their date: their emails link their pages.
    let mailed: HashSet<String> = super::mailed_issues(config)?.into_iter().collect();
    site.count_as_published(mailed.iter().cloned());
    let index = match issue {
        Some(path) => site.find(path)?,
        None => match scheduled(&site, &mailed, now, json)? {
            Some((index, early)) => {
                warn_unfinished(config, &site, index)?;
                if early {
                    // Sent early with `--future`: a scheduled run goes on with it.
                    mode = mode.with_future();
                }
                index
            }
            None => return Ok(Ran::success()),
        },
    };
    let issue = site.issue(index)?.clone();
    check_publishable(&issue, now, &mode)?;
    super::block_on(async {
        match mode {
            Mode::DryRun { .. } => dry_run(config, &issue, json).await,
            Mode::TestSend { to } => test_send::run(config, &issue, &to, now, json).await,
            Mode::Publish { .. } | Mode::Retry => {
                send(config, site, &issue, &mode, now, json).await
            }
        }
    })?
}

/// The issue a `publish` without an issue sends: the newest due one (see [`Schedule`]); older
/// due issues never mailed are left, with a line saying so (a new list never gets a backlog).
/// Returns its index and whether it is dated in the future (mailed early with `--future`);
/// `None`, with a line on stdout saying when the next one is due, when no issue is due yet.
/// `mailed`: the permalinks of the issues with deliveries on the config's channel.
///
/// # Errors
/// No issue is due and none is scheduled (every issue a draft, or none at all), or stdout
/// cannot be written.
fn scheduled(
    site: &Site,
    mailed: &HashSet<String>,
    now: DateTime<Utc>,
    json: bool,
) -> Result<Option<(usize, bool)>> {
    let listings: Vec<&Listing> = site.listings().collect();
    let now = now.fixed_offset();
    let schedule = Schedule::of(&listings, mailed, now);
    let path = |i: usize| {
        site.path_of(i)
            .map_or(String::new(), |p| p.display().to_string())
    };
    let Some(due) = schedule.due else {
        let Some(next) = schedule.next else {
            bail!("there is no issue to publish: every issue is a draft (set `draft: false` in its front matter), or there is none (`feedpost new issues/NAME.md` writes one)");
        };
        let l = listings[next];
        let line = if json {
            serde_json::json!({
                "action": "nothing_due",
                "sent": 0,
                "next": {
                    "issue": l.permalink,
                    "title": l.title,
                    "file": path(next),
                    "date": l.date.with_timezone(&Utc).to_rfc3339(),
                },
            })
            .to_string()
        } else {
            format!(
                "nothing to publish yet: the next issue, `{}` ({}), is due {} ({}); nothing was sent",
                l.title,
                path(next),
                schedule::when(l.date),
                schedule::from_now(l.date, now),
            )
        };
        writeln!(std::io::stdout().lock(), "{line}")?;
        return Ok(None);
    };
    if let Some(&newest) = schedule.skipped.first() {
        let n = schedule.skipped.len();
        info!(
            "left {} never mailed, the newest `{}` ({}): a publish without an issue sends only the newest due issue, `{}`; `feedpost publish FILE` sends an older one",
            super::count(n, "older issue", "older issues"),
            listings[newest].title,
            path(newest),
            listings[due].title,
        );
    }
    if let Some(next) = schedule.next {
        info!(
            "the next scheduled issue, `{}`, is due {} ({})",
            listings[next].title,
            schedule::when(listings[next].date),
            schedule::from_now(listings[next].date, now),
        );
    }
    Ok(Some((due, listings[due].date > now)))
}

/// Warns about each issue other than the one at `due` that an earlier run left with recipients
/// to send (queued, deferred, or sending at a crash): a scheduled run goes on with the newest
/// due issue only, so `feedpost retry FILE` must send those.
///
/// # Errors
/// The ledger exists but cannot be read.
fn warn_unfinished(config: &Config, site: &Site, due: usize) -> Result<()> {
    let channel = Channel::of(config);
    let due_issue = site.listings().nth(due).map(|l| l.permalink.clone());
    let unfinished = super::block_on(async {
        let Some(store) = store::open(config, Open::IfExists).await? else {
            return Ok::<_, anyhow::Error>(Vec::new());
        };
        let mut unfinished = Vec::new();
        for (issue, _) in store.issues().await? {
            if Some(&issue) == due_issue.as_ref() {
                continue;
            }
            let pending = store
                .counts(Queue {
                    issue: &issue,
                    channel,
                })
                .await?
                .pending();
            if pending > 0 {
                unfinished.push((issue, pending));
            }
        }
        Ok(unfinished)
    })??;
    for (issue, pending) in unfinished {
        let file = site
            .listings()
            .position(|l| l.permalink == issue)
            .and_then(|i| site.path_of(i))
            .map_or_else(|| issue.clone(), |p| p.display().to_string());
        warn!(
            "{} of `{issue}` left by an earlier run still to send; a publish without an issue goes on with the newest due issue only: `feedpost retry {file}` sends them",
            super::count(usize::try_from(pending).unwrap_or(usize::MAX), "recipient", "recipients"),
        );
    }
    Ok(())
}

/// Refuses a draft, and an issue dated after `now` unless `--future` allows it; a test send
/// takes either.
fn check_publishable(issue: &Issue, now: DateTime<Utc>, mode: &Mode) -> Result<()> {
    let future = match mode {
        Mode::TestSend { .. } => return Ok(()),
        Mode::Publish { future, .. } | Mode::DryRun { future } => *future,
        Mode::Retry => true,
    };
    let path = issue.path.display();
    if issue.draft {
        bail!("`{path}` is a draft: set `draft: false` in its front matter to publish it");
    }
    if issue.date > now && !future {
        bail!(
            "`{path}` is dated {} UTC, in the future; nothing was sent. Publish it on its date, or now with `feedpost publish --future {path}` (its page is built first)",
            issue.date.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S"),
        );
    }
    Ok(())
}

/// The secret signing the unsubscribe tokens of messages on `channel`: `FEEDPOST_SECRET`, when
/// the messages carry tokens. An outbox rehearsal without it uses a placeholder (nobody receives
/// those files), and says so.
///
/// # Errors
/// The messages carry tokens and go by SMTP, and the secret is missing or too short.
fn token_secret(config: &Config, channel: Channel) -> Result<Secret> {
    if !mail::carries_token(config) {
        return Ok(mail::placeholder_secret());
    }
    if channel == Channel::Outbox && std::env::var_os(SECRET_ENV).is_none() {
        info!(
            "{SECRET_ENV} is not set: the outbox files' unsubscribe links carry a placeholder token; mail sent by SMTP needs the secret"
        );
        return Ok(mail::placeholder_secret());
    }
    mail::secret_from_env()
}

/// The store's record of `issue`: id, slug, title, date, and a fingerprint of the Markdown
/// body (SHA-256 of its text with line ends as LF and outer blank space trimmed, hex).
fn issue_record<'a>(issue: &'a Issue, fingerprint: &'a str) -> IssueRecord<'a> {
    IssueRecord {
        issue: issue.permalink.as_str(),
        slug: &issue.slug,
        title: &issue.title,
        date: issue.date.timestamp(),
        fingerprint,
    }
}

fn fingerprint(issue: &Issue) -> String {
    let body = issue.markdown.replace("\r\n", "\n");
    hex::encode(Sha256::digest(body.trim().as_bytes()))
}

/// Refuses to mail `issue` when the store knows it as an issue already mailed under another
/// permalink (renamed file, new `slug`, changed `site.base_url`), unless `--as-new-issue`.
async fn refuse_copy(store: &dyn Store, issue: &Issue, record: &IssueRecord<'_>) -> Result<()> {
    if store.is_established(record.issue).await? {
        return Ok(());
    }
    let Some(earlier) = store.earlier_copies(record).await?.into_iter().next() else {
        return Ok(());
    };
    let way_back = if earlier.slug != issue.slug {
        format!(
            "add `slug: {}` to its front matter to go on with that issue (same permalink and Message-IDs; only readers it has not reached get it)",
            earlier.slug
        )
    } else {
        "the slug is the same, so `site.base_url` or `site.permalink_prefix` changed since: set it back to go on with that issue".to_string()
    };
    let path = issue.path.display();
    bail!(
        "`{path}` looks like the issue already mailed as `{}` ({}: {} messages sent): the same content, or the same title and date. Nothing was sent. To keep it one issue, {way_back}; to mail it to every subscriber again as a new issue, run `feedpost publish --as-new-issue {path}`",
        earlier.slug,
        earlier.issue,
        earlier.sent,
    )
}

/// A publish or a retry: see the module docs.
async fn send(
    config: &Config,
    site: Site<'_>,
    issue: &Issue,
    mode: &Mode,
    now: DateTime<Utc>,
    json: bool,
) -> Result<Ran> {
    let channel = Channel::of(config);
    let queue = Queue {
        issue: issue.permalink.as_str(),
        channel,
    };
    // Lock first: a publish refused because another is running must change nothing, feeds
    // included.
    let store = store::open(config, Open::ToSend)
        .await?
        .context("the store was not opened")?;
    let store = store.as_ref();
    let secret = token_secret(config, channel)?;
    let fingerprint = fingerprint(issue);
    let record = issue_record(issue, &fingerprint);
    let as_new = matches!(
        mode,
        Mode::Publish {
            as_new_issue: true,
            ..
        }
    );
    if matches!(mode, Mode::Publish { .. }) && channel == Channel::Smtp && !as_new {
        refuse_copy(store, issue, &record).await?;
    }
    build_site(config, site, issue, mode, now)?;
    store
        .record_issue(&record, as_new && channel == Channel::Smtp)
        .await?;
    let started = store.publish_started(queue, now.timestamp()).await?;
    let date = DateTime::from_timestamp(started, 0).unwrap_or(now);
    let mail = Arc::new(IssueMail::compose(issue, config, &secret, date)?);
    let before = store.counts(queue).await?;
    note_rehearsal(store, issue, queue, before.is_empty()).await?;
    let enqueue = matches!(mode, Mode::Publish { .. });
    let skipped = audience::admit(config, issue, store, queue, enqueue).await?;
    let settled = store.settle_audience(queue).await?;
    if settled.removed > 0 {
        info!(
            removed = settled.removed,
            "left out recipients no longer eligible (removed from the list, topics changed, or suppressed)"
        );
    }
    let pending = store.counts(queue).await?.pending();
    info!(issue = %issue.title, pending, "publishing");
    let outbox = config.mail.outbox.join(&issue.slug);
    let transport = deliver::transport::from_config(config, outbox.clone())?;
    let progress = progress_bar(pending);
    let report = Engine::new(store, queue, mail, transport, Settings::from_config(config))
        .signing(Arc::new(SigningPool::for_config(config)?))
        .progress(progress.clone())
        .run()
        .await;
    progress.finish_and_clear();
    let report = report?;
    let after = store.counts(queue).await?;
    let summary = report::Summary {
        action: if *mode == Mode::Retry {
            "retry"
        } else {
            "publish"
        },
        issue,
        channel,
        sent: report.sent,
        already: before.sent,
        skipped,
        failed: report.failed,
        after,
    };
    report::print_summary(&summary, &outbox, json)?;
    if report.sent == 0 && report.failed == 0 && before.sent > 0 && after.pending() == 0 {
        info!(
            "nothing new to send: `{}` already went to every eligible reader on the list",
            issue.title
        );
    }
    report::conclude(config, issue, store, queue, report, after).await
}

/// Builds the site before any mail links to the issue's page: a future issue published with
/// `--future` is part of the site from now on. A publish also pings the WebSub hub.
///
/// # Errors
/// The site cannot be written, or an issue file turned bad since it was loaded.
fn build_site(
    config: &Config,
    site: Site<'_>,
    issue: &Issue,
    mode: &Mode,
    now: DateTime<Utc>,
) -> Result<()> {
    let horizon = now.max(issue.date.with_timezone(&Utc));
    // Several publishes of one issue may share a PostgreSQL store from one folder: they build
    // one after the other, never into each other's half-written files.
    let _building = lock_build(config)?;
    let built = site.build(horizon.fixed_offset())?;
    super::refuse_bad_issues(&built.errors)?;
    if let (Mode::Publish { .. }, Some(hub)) = (mode, &config.site.websub_hub) {
        ping_hub(hub, &built);
    }
    Ok(())
}

/// Takes the site's build lock (`.feedpost-cache/build.lock`, an advisory file lock), waiting
/// for another process building the same folder; held until the returned file drops.
///
/// # Errors
/// The lock file cannot be created or locked.
fn lock_build(config: &Config) -> Result<std::fs::File> {
    let dir = config.root.join(".feedpost-cache");
    let path = dir.join("build.lock");
    let locked = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .and_then(|file| file.lock().map(|()| file));
    locked.with_context(|| format!("failed to lock the site's build `{}`", path.display()))
}

/// Says so when an issue rehearsed in the outbox is now mailed for the first time.
async fn note_rehearsal(
    store: &dyn Store,
    issue: &Issue,
    queue: Queue<'_>,
    first: bool,
) -> Result<()> {
    if queue.channel != Channel::Smtp || !first {
        return Ok(());
    }
    let outbox = Queue {
        channel: Channel::Outbox,
        ..queue
    };
    let rehearsal = store.counts(outbox).await?;
    if rehearsal.sent > 0 {
        info!(
            files = rehearsal.sent,
            "`{}` was rehearsed in the outbox; now it is mailed to every eligible subscriber",
            issue.title
        );
    }
    Ok(())
}

/// How long a WebSub hub may take to answer one ping.
const HUB_TIMEOUT: Duration = Duration::from_secs(10);

/// Tells the WebSub hub about the main feeds and every other subscription feed this build
/// changed; a failure is only a warning (readers' hubs still poll).
fn ping_hub(hub: &url::Url, built: &site::Report) {
    let mut topics = built.main_feeds.clone();
    for url in &built.changed_feeds {
        if !topics.contains(url) {
            topics.push(url.clone());
        }
    }
    match websub::ping(hub, &topics, HUB_TIMEOUT) {
        Ok(n) => info!(hub = %hub, feeds = n, "WebSub hub notified"),
        Err(e) => warn!("{e}; feed readers will see the new issue at their next poll"),
    }
}

/// `--dry-run`: counts as the real run would — the same reading of the subscriber list, the
/// topic filter and the suppression list — and writes nothing (not even a store).
async fn dry_run(config: &Config, issue: &Issue, json: bool) -> Result<Ran> {
    let channel = Channel::of(config);
    let queue = Queue {
        issue: issue.permalink.as_str(),
        channel,
    };
    let store = store::open(config, Open::IfExists).await?;
    let count = audience::dry_count(config, issue, store.as_deref(), queue).await?;
    let via = dry_run_transport(config, &issue.slug);
    if json {
        let doc = serde_json::json!({
            "action": "dry_run",
            "issue": issue.permalink.as_str(),
            "title": issue.title,
            "file": issue.path.display().to_string(),
            "channel": channel.as_str(),
            "via": via,
            "would_send": count.would_send,
            "already_sent": count.already,
            "skipped": count.skipped,
            "failed_before": count.failed,
        });
        writeln!(std::io::stdout().lock(), "{doc}")?;
        return Ok(Ran::success());
    }
    let mut line = format!(
        "dry run: `{}` ({}) would go to {} via {}; already sent {}, skipped {}",
        issue.title,
        issue.permalink,
        super::count(
            usize::try_from(count.would_send).unwrap_or(usize::MAX),
            "recipient",
            "recipients"
        ),
        via,
        count.already,
        count.skipped
    );
    if count.failed > 0 {
        line.push_str(&format!(", failed before {}", count.failed));
    }
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(Ran::success())
}

/// Where a publish would send, for the dry run's line (`smtp://HOST:PORT`, or `outbox DIR`).
/// What the real run would stop on first — a password missing from the environment, an
/// unreadable `smtp.ca_file` — is a warning here: a dry run opens no connection and needs no
/// secret.
fn dry_run_transport(config: &Config, slug: &str) -> String {
    match &config.smtp {
        Some(smtp) => {
            if let Err(e) = deliver::transport::SmtpSettings::from_config(smtp) {
                warn!("{e:#}; a real publish stops there");
            }
            format!("smtp://{}:{}", smtp.host, smtp.port)
        }
        None => format!("outbox {}", config.mail.outbox.join(slug).display()),
    }
}

/// A progress bar with rate and ETA on a terminal; hidden otherwise.
fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} messages  {rate}  {elapsed} elapsed, ETA {eta}",
    ) {
        bar.set_style(style.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} msg/s", state.per_sec());
            },
        ));
    }
    bar
}
