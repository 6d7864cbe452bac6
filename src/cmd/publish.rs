//! `feedpost publish` and `feedpost retry`: build, queue the issue for its subscribers in the
//! ledger, and run the delivery engine until every recipient is sent, failed, or deferred.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::Config;
use crate::deliver::transport::tls::TrustedRoots;
use crate::deliver::transport::SmtpSettings;
use crate::deliver::{self, Settings, Transport};
use crate::feed::websub;
use crate::issue::Issue;
use crate::ledger::{Ledger, NewDelivery, State};
use crate::mail::IssueMail;
use crate::site::{self, Site};
use crate::subscribers::{self, Subscriber};

/// How many recipients go into the ledger per transaction while queueing.
const ENQUEUE_CHUNK: usize = 5_000;

/// How many still-deferred recipients the end of a run names on stderr.
const DEFERRED_SHOWN: usize = 10;

/// Publishes (or, with `enqueue = false`, retries) an issue. See the module docs.
///
/// # Errors
/// A bad issue file anywhere in the site (nothing is sent), an issue that cannot be published, a
/// held ledger lock, an unreachable SMTP server at the start, or a ledger error.
pub fn run(
    config: &Config,
    issue_path: Option<&Path>,
    dry_run: bool,
    enqueue: bool,
) -> Result<ExitCode> {
    let mut site = Site::load(config)?;
    super::refuse_bad_issues(site.errors())?;
    let now = crate::now()?;
    let index = match issue_path {
        Some(path) => site.find(path)?,
        None => site.newest_published(now.fixed_offset()).context(
            "there is no issue to publish: every issue is a draft or dated in the future",
        )?,
    };
    let issue = &site.issue(index)?.clone();
    if issue.draft {
        bail!(
            "`{}` is a draft: set `draft: false` in its front matter to publish it",
            issue.path.display()
        );
    }
    if dry_run {
        return dry_run_report(config, issue);
    }
    // Lock first: a publish refused because another is running must change nothing, feeds included.
    let _lock = Ledger::lock(&config.mail.ledger)?;
    let built = site.build(now.fixed_offset())?;
    // A file that turned bad since it was loaded.
    super::refuse_bad_issues(&built.errors)?;
    if let (true, Some(hub)) = (enqueue, &config.site.websub_hub) {
        ping_hub(hub, &built);
    }
    let mut ledger = Ledger::open(&config.mail.ledger)?;
    let _checkpoints = ledger.checkpoint_in_background()?;
    let secret = ledger.secret()?;
    let mail = Arc::new(IssueMail::compose(issue, config, &secret, now)?);
    let issue_id = issue.permalink.as_str();
    let before = ledger.counts(issue_id)?;
    let mut skipped = 0u64;
    if enqueue {
        skipped += queue_subscribers(config, issue, &mut ledger)?;
    }
    let pending = {
        let c = ledger.counts(issue_id)?;
        c.queued + c.sending + c.deferred
    };
    info!(issue = %issue.title, pending, "publishing");

    let transport = transport(config, issue)?;
    let settings = settings(config);
    let progress = progress_bar(pending);
    // One thread drives every connection and the ledger's commits: a message costs tens of
    // microseconds of CPU, so one core sends faster than relays accept, and handing outcomes and
    // acknowledgements between threads cost more (a wake-up and a context switch each) than
    // the work itself. It also leaves the other cores to the rest of the machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let report = runtime.block_on(deliver::run(
        &mut ledger,
        issue_id,
        mail,
        transport,
        settings,
        &progress,
    ));
    progress.finish_and_clear();
    let report = report.with_context(|| {
        format!("sending `{}` stopped; nothing unsent was marked sent. Run `feedpost publish` again when fixed", issue.path.display())
    })?;
    let after = ledger.counts(issue_id)?;
    let left = after.queued + after.sending + after.deferred;
    println!(
        "sent {}, already sent {}, skipped {}, failed {}, deferred {}",
        report.sent, before.sent, skipped, report.failed, left
    );
    if let Some(until) = report.cap_reached_until {
        warn!(
            queued = left,
            "the hourly cap of {} messages (`smtp.hourly_cap`) is reached and frees a slot only at {} UTC; run `feedpost retry {}` then to send the rest",
            config.smtp.as_ref().map_or(0, |s| s.hourly_cap),
            until.format("%Y-%m-%d %H:%M:%S"),
            issue.path.display()
        );
    } else if left > 0 {
        let shown = ledger.rows(issue_id, &[State::Deferred], DEFERRED_SHOWN)?;
        for row in &shown {
            warn!(
                recipient = %row.recipient,
                attempts = row.attempts,
                reply = row.last_reply.as_deref().unwrap_or(""),
                "still deferred"
            );
        }
        warn!(
            "{} recipient(s) could not be reached yet{}; `feedpost retry {}` (or the next publish) tries them again",
            left,
            if left > shown.len() as u64 { " (`feedpost status` lists them)" } else { "" },
            issue.path.display()
        );
    }
    Ok(if report.failed > 0 || left > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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

/// Reads the subscriber list and queues every subscriber who wants `issue`. Returns how many were
/// skipped (bad entries, duplicates, topic filter, suppression list).
fn queue_subscribers(config: &Config, issue: &Issue, ledger: &mut Ledger) -> Result<u64> {
    let issue_id = issue.permalink.as_str();
    let from = config.from_mailbox();
    let mut seen = Seen::default();
    let mut chunk: Vec<Subscriber> = Vec::with_capacity(ENQUEUE_CHUNK);
    let skipped = Cell::new(0u64);
    let mut failure = None;
    let flush = |chunk: &mut Vec<Subscriber>, ledger: &mut Ledger| -> Result<()> {
        let deliveries = chunk.iter().map(|s| NewDelivery {
            key: &s.key,
            address: &s.email,
            name: s.name.as_deref(),
            message_id: IssueMail::message_id_for(issue_id, &s.key, &from),
        });
        let counts = ledger.enqueue(issue_id, deliveries)?;
        skipped.set(skipped.get() + counts.suppressed);
        chunk.clear();
        Ok(())
    };
    subscribers::read(
        &config.site.subscribers,
        |s| {
            if failure.is_some() {
                return;
            }
            if !seen.insert(&s.key) {
                warn!(
                    "{}:{}: `{}` is listed more than once; it gets one message",
                    config.site.subscribers.display(),
                    s.line,
                    s.email
                );
                skipped.set(skipped.get() + 1);
            } else if !s.wants(issue) {
                skipped.set(skipped.get() + 1);
            } else {
                chunk.push(s);
                if chunk.len() >= ENQUEUE_CHUNK {
                    if let Err(e) = flush(&mut chunk, ledger) {
                        failure = Some(e);
                    }
                }
            }
        },
        |bad| {
            eprintln!("warning: {bad} (skipped)");
            skipped.set(skipped.get() + 1);
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut chunk, ledger)?;
    Ok(skipped.get())
}

/// The recipient keys already met in the subscriber file, each kept as the first 16 bytes of its
/// SHA-256 rather than the address: 16 bytes a subscriber, whatever the address length. Two keys
/// share a digest with a chance of about n²/2¹²⁹ (10⁻²⁷ for a million subscribers).
#[derive(Default)]
struct Seen(HashSet<[u8; 16]>);

impl Seen {
    /// Whether `key` is new (and now remembered).
    fn insert(&mut self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        self.0.insert(short)
    }
}

fn dry_run_report(config: &Config, issue: &Issue) -> Result<ExitCode> {
    let issue_id = issue.permalink.as_str();
    let ledger = if config.mail.ledger.exists() {
        Some(Ledger::open(&config.mail.ledger)?)
    } else {
        None
    };
    let (mut would_send, mut already, skipped) = (0u64, 0u64, Cell::new(0u64));
    let mut seen = Seen::default();
    let mut failure = None;
    subscribers::read(
        &config.site.subscribers,
        |s| {
            if !seen.insert(&s.key) || !s.wants(issue) {
                skipped.set(skipped.get() + 1);
                return;
            }
            match ledger.as_ref().map(|l| l.state_of(issue_id, &s.key)) {
                Some(Ok(Some(State::Sent))) => already += 1,
                Some(Err(e)) => failure = Some(e),
                _ => would_send += 1,
            }
        },
        |bad| {
            eprintln!("warning: {bad} (skipped)");
            skipped.set(skipped.get() + 1);
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    println!(
        "dry run: `{}` ({}) would go to {} recipients via {}; already sent {}, skipped {}",
        issue.title,
        issue.permalink,
        would_send,
        transport(config, issue)?.describe(),
        already,
        skipped.get()
    );
    Ok(ExitCode::SUCCESS)
}

/// The transport the config asks for: SMTP with `[smtp]`, else the outbox folder
/// (`mail.outbox/<slug>/`).
fn transport(config: &Config, issue: &Issue) -> Result<Transport> {
    transport_into(config, config.mail.outbox.join(&issue.slug))
}

/// The transport the config asks for: SMTP with `[smtp]`, else the outbox folder `outbox`.
pub(super) fn transport_into(config: &Config, outbox: std::path::PathBuf) -> Result<Transport> {
    Ok(match &config.smtp {
        Some(smtp) => {
            let credentials = match &smtp.username {
                Some(user) => {
                    let password = std::env::var("FEEDPOST_SMTP_PASSWORD").with_context(|| {
                        format!("`smtp.username` is set, so the password must be in the environment variable FEEDPOST_SMTP_PASSWORD (for user `{user}`)")
                    })?;
                    Some(lettre::transport::smtp::authentication::Credentials::new(
                        user.clone(),
                        password,
                    ))
                }
                None => None,
            };
            let roots = match &smtp.ca_file {
                Some(path) => TrustedRoots::from_pem_file(path)?,
                None => TrustedRoots::default(),
            };
            Transport::Smtp(Box::new(SmtpSettings {
                smtp: smtp.clone(),
                credentials,
                roots,
            }))
        }
        None => Transport::Outbox(outbox),
    })
}

fn settings(config: &Config) -> Settings {
    match &config.smtp {
        Some(s) => Settings {
            concurrency: s.concurrency,
            max_attempts: s.max_attempts,
            retry_base: Duration::from_millis(s.retry_base_ms),
            retry_max: Duration::from_millis(s.retry_max_ms.max(s.retry_base_ms)),
            rate_per_second: s.rate_per_second,
            hourly_cap: s.hourly_cap,
            hourly_cap_wait: Duration::from_secs(s.hourly_cap_wait_secs),
        },
        None => Settings {
            concurrency: 2,
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            rate_per_second: 0.0,
            hourly_cap: 0,
            hourly_cap_wait: Duration::ZERO,
        },
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
