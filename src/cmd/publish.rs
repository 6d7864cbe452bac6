//! `feedpost publish` and `feedpost retry`: build, queue the issue for its subscribers in the
//! ledger, and run the delivery engine until every recipient is sent, failed, or deferred.
//!
//! The steps of a run, in order: pick the issue (refusing drafts, and a future date without
//! `--future`); lock and open the ledger; refuse an issue the ledger knows under another
//! permalink; build the site; read the subscriber list into the ledger (queueing who wants the
//! issue, and taking out of the queue who no longer does); send; print the summary — also when
//! the run stopped on an error.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::cli::{PublishArgs, RetryArgs};
use crate::config::Config;
use crate::deliver::transport::tls::{self, TrustedRoots};
use crate::deliver::transport::SmtpSettings;
use crate::deliver::{self, Settings, Transport};
use crate::feed::websub;
use crate::issue::Issue;
use crate::ledger::{Channel, Counts, IssueRecord, Ledger, NewDelivery, Queue, State};
use crate::mail::IssueMail;
use crate::site::{self, Site};
use crate::subscribers::{self, Subscriber};

/// How many recipients go into the ledger per transaction while queueing.
const ENQUEUE_CHUNK: usize = 5_000;

/// How many still-deferred recipients the end of a run names on stderr.
const DEFERRED_SHOWN: usize = 10;

/// What a run does besides sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `publish`: queue every subscriber who wants the issue, ping the WebSub hub.
    Publish {
        /// `--as-new-issue`.
        as_new_issue: bool,
    },
    /// `retry`: send what is left; add nobody.
    Retry,
}

/// `feedpost publish`: see the module docs.
///
/// # Errors
/// A bad issue file anywhere in the site (nothing is sent), an issue that cannot be published (a
/// draft, dated in the future without `--future`, or already mailed under another permalink), a
/// held ledger lock, a server that refuses us or the message, or a ledger error.
pub fn run(config: &Config, args: &PublishArgs) -> Result<ExitCode> {
    let mut site = Site::load(config)?;
    super::refuse_bad_issues(site.errors())?;
    let now = crate::now()?;
    let index = match args.issue.as_deref() {
        Some(path) => site.find(path)?,
        None => site.newest_published(now.fixed_offset()).context(
            "there is no issue to publish: every issue is a draft or dated in the future",
        )?,
    };
    let issue = &site.issue(index)?.clone();
    check_publishable(issue, now, args.future)?;
    if args.dry_run {
        return dry_run_report(config, issue);
    }
    send(
        config,
        site,
        issue,
        Mode::Publish {
            as_new_issue: args.as_new_issue,
        },
        now,
    )
}

/// `feedpost retry`: sends what an earlier publish of the issue left queued or deferred, to the
/// readers still eligible; queues nobody new.
///
/// # Errors
/// As [`run`].
pub fn retry(config: &Config, args: &RetryArgs) -> Result<ExitCode> {
    let mut site = Site::load(config)?;
    super::refuse_bad_issues(site.errors())?;
    let now = crate::now()?;
    let index = site.find(&args.issue)?;
    let issue = &site.issue(index)?.clone();
    if issue.draft {
        bail!(
            "`{}` is a draft: set `draft: false` in its front matter to publish it",
            issue.path.display()
        );
    }
    send(config, site, issue, Mode::Retry, now)
}

/// Refuses a draft, and an issue dated after `now` unless `future` (`--future`) allows it.
fn check_publishable(issue: &Issue, now: DateTime<Utc>, future: bool) -> Result<()> {
    if issue.draft {
        bail!(
            "`{}` is a draft: set `draft: false` in its front matter to publish it",
            issue.path.display()
        );
    }
    if issue.date > now && !future {
        bail!(
            "`{}` is dated {} UTC, in the future; nothing was sent. Publish it on its date, or now with `feedpost publish --future {}` (its page is built first)",
            issue.path.display(),
            issue.date.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S"),
            issue.path.display()
        );
    }
    Ok(())
}

/// The channel the config sends through.
fn channel_of(config: &Config) -> Channel {
    if config.smtp.is_some() {
        Channel::Smtp
    } else {
        Channel::Outbox
    }
}

/// The ledger's record of `issue`: id, slug, title, date, and a fingerprint of the Markdown
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
    hex(&Sha256::digest(body.trim().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses to mail `issue` when the ledger knows it as an issue already mailed under another
/// permalink (renamed file, new `slug`, changed `site.base_url`), unless `--as-new-issue`.
fn check_not_sent_before(ledger: &Ledger, issue: &Issue, record: &IssueRecord<'_>) -> Result<()> {
    if ledger.is_established(record.issue)? {
        return Ok(());
    }
    let Some(earlier) = ledger.earlier_copies(record)?.into_iter().next() else {
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
    bail!(
        "`{}` looks like the issue already mailed as `{}` ({}: {} messages sent): the same content, or the same title and date. Nothing was sent. To keep it one issue, {}; to mail it to every subscriber again as a new issue, run `feedpost publish --as-new-issue {}`",
        issue.path.display(),
        earlier.slug,
        earlier.issue,
        earlier.sent,
        way_back,
        issue.path.display()
    )
}

/// The run itself: see the module docs.
fn send(
    config: &Config,
    site: Site<'_>,
    issue: &Issue,
    mode: Mode,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let channel = channel_of(config);
    let queue = Queue {
        issue: issue.permalink.as_str(),
        channel,
    };
    // Lock first: a publish refused because another is running must change nothing, feeds included.
    let _lock = Ledger::lock(&config.mail.ledger)?;
    let mut ledger = Ledger::open(&config.mail.ledger)?;
    let fingerprint = fingerprint(issue);
    let record = issue_record(issue, &fingerprint);
    if let (Mode::Publish { as_new_issue }, Channel::Smtp) = (mode, channel) {
        if !as_new_issue {
            check_not_sent_before(&ledger, issue, &record)?;
        }
    }
    // A future issue published with `--future` is part of the site from now on: its page must
    // be there before any mail links to it.
    let horizon = now.max(issue.date.with_timezone(&Utc));
    let built = site.build(horizon.fixed_offset())?;
    // A file that turned bad since it was loaded.
    super::refuse_bad_issues(&built.errors)?;
    if let (Mode::Publish { .. }, Some(hub)) = (mode, &config.site.websub_hub) {
        ping_hub(hub, &built);
    }
    let _checkpoints = ledger.checkpoint_in_background()?;
    ledger.record_issue(
        &record,
        matches!(mode, Mode::Publish { as_new_issue: true }) && channel == Channel::Smtp,
    )?;
    let started = ledger.publish_started(queue, now.timestamp())?;
    let date = DateTime::from_timestamp(started, 0).unwrap_or(now);
    let secret = ledger.secret()?;
    let mail = Arc::new(IssueMail::compose(issue, config, &secret, date)?);
    let before = ledger.counts(queue)?;
    if channel == Channel::Smtp && before.is_empty() {
        let rehearsal = ledger.counts(Queue {
            channel: Channel::Outbox,
            ..queue
        })?;
        if rehearsal.sent > 0 {
            info!(
                files = rehearsal.sent,
                "`{}` was rehearsed in the outbox; now it is mailed to every eligible subscriber",
                issue.title
            );
        }
    }
    let skipped = read_audience(config, issue, &mut ledger, queue, mode)?;
    let settled = ledger.settle_audience(queue)?;
    if settled.removed > 0 {
        info!(
            removed = settled.removed,
            "left out recipients no longer eligible (removed from the list, topics changed, or suppressed)"
        );
    }
    let pending = {
        let c = ledger.counts(queue)?;
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
        queue,
        mail,
        transport,
        settings,
        &progress,
    ));
    progress.finish_and_clear();
    let report = report?;
    let after = ledger.counts(queue)?;
    print_summary(
        channel,
        &Summary {
            sent: report.sent,
            already: before.sent,
            skipped,
            failed: report.failed,
            after,
        },
        &config.mail.outbox.join(&issue.slug),
    )?;
    if let Some(stopped) = report.stopped {
        return Err(anyhow::anyhow!(stopped)).context(format!(
            "sending `{}` stopped; nothing unsent was marked sent, and nobody was suppressed for it. Run `feedpost retry {}` when fixed",
            issue.path.display(),
            issue.path.display()
        ));
    }
    let left = after.queued + after.sending + after.deferred;
    if let Some(until) = report.cap_reached_until {
        warn!(
            queued = left,
            "the hourly cap of {} messages (`smtp.hourly_cap`) is reached and frees a slot only at {} UTC; run `feedpost retry {}` then to send the rest",
            config.smtp.as_ref().map_or(0, |s| s.hourly_cap),
            until.format("%Y-%m-%d %H:%M:%S"),
            issue.path.display()
        );
    } else if left > 0 {
        let shown = ledger.rows(queue, &[State::Deferred], DEFERRED_SHOWN)?;
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

/// The numbers of the one-line summary of a run.
struct Summary {
    /// Sent in this run.
    sent: u64,
    /// Sent before this run.
    already: u64,
    /// Entries of the subscriber list not queued: bad, repeated, not wanting the issue's topics,
    /// suppressed.
    skipped: u64,
    /// Failed in this run.
    failed: u64,
    /// The ledger's counts at the end of the run: what is left deferred, queued, removed.
    after: Counts,
}

/// Prints the summary: `sent S, already sent A, skipped K, failed F, deferred D, queued Q` (and
/// `removed R` when some readers were no longer eligible), after `outbox (a rehearsal, nothing
/// mailed): ` for the outbox. Deferred, queued and removed are the ledger's counts, which
/// `status` shows too.
fn print_summary(channel: Channel, s: &Summary, outbox: &Path) -> Result<()> {
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

/// One entry of the subscriber list, as it concerns an issue.
enum Entry {
    /// Not a valid entry (reported on stderr).
    Bad,
    /// The address was listed before (reported on stderr).
    Repeated,
    /// A subscriber whose topics exclude the issue.
    NotWanted(Subscriber),
    /// A subscriber who wants the issue.
    Wanted(Subscriber),
}

/// Reads the subscriber list and hands every entry to `each`, as it concerns `issue`: the one
/// reading shared by a real run and a dry run, so both count alike.
fn each_entry(config: &Config, issue: &Issue, each: impl FnMut(Entry)) -> Result<()> {
    let path = &config.site.subscribers;
    let mut seen = Seen::default();
    let each = std::cell::RefCell::new(each);
    subscribers::read(
        path,
        |s| {
            let entry = if !seen.insert(&s.key) {
                warn!(
                    "{}:{}: `{}` is listed more than once; it gets one message",
                    path.display(),
                    s.line,
                    s.email
                );
                Entry::Repeated
            } else if s.wants(issue) {
                Entry::Wanted(s)
            } else {
                Entry::NotWanted(s)
            };
            (each.borrow_mut())(entry);
        },
        |bad| {
            eprintln!("warning: {bad} (skipped)");
            (each.borrow_mut())(Entry::Bad);
        },
    )
}

/// Reads the subscriber list into the ledger: in a publish, queues every subscriber who wants
/// `issue` (a retry queues nobody); in both, records who may receive it now, for
/// [`Ledger::settle_audience`]. Returns how many entries were skipped (bad entries, repeats,
/// topic filter, suppression list).
fn read_audience(
    config: &Config,
    issue: &Issue,
    ledger: &mut Ledger,
    queue: Queue<'_>,
    mode: Mode,
) -> Result<u64> {
    let from = config.from_mailbox();
    let enqueue = matches!(mode, Mode::Publish { .. });
    ledger.begin_audience()?;
    let mut wanted: Vec<Subscriber> = Vec::with_capacity(ENQUEUE_CHUNK);
    let mut not_wanted: Vec<String> = Vec::new();
    let mut skipped = 0u64;
    let mut failure = None;
    let flush = |wanted: &mut Vec<Subscriber>,
                 not_wanted: &mut Vec<String>,
                 ledger: &mut Ledger|
     -> Result<u64> {
        let mut suppressed = 0;
        if enqueue {
            let deliveries = wanted.iter().map(|s| NewDelivery {
                key: &s.key,
                address: &s.address,
                name: s.name.as_deref(),
                message_id: IssueMail::message_id_for(queue.issue, &s.key, &from),
            });
            suppressed = ledger.enqueue(queue, deliveries)?.suppressed;
        } else {
            for s in wanted.iter() {
                if ledger.suppression_of(&s.key)?.is_some() {
                    suppressed += 1;
                }
            }
        }
        ledger.admit(
            wanted
                .iter()
                .map(|s| (s.key.as_str(), true))
                .chain(not_wanted.iter().map(|k| (k.as_str(), false))),
        )?;
        wanted.clear();
        not_wanted.clear();
        Ok(suppressed)
    };
    each_entry(config, issue, |entry| {
        if failure.is_some() {
            return;
        }
        match entry {
            Entry::Bad | Entry::Repeated => skipped += 1,
            Entry::NotWanted(s) => {
                skipped += 1;
                not_wanted.push(s.key);
            }
            Entry::Wanted(s) => wanted.push(s),
        }
        if wanted.len() + not_wanted.len() >= ENQUEUE_CHUNK {
            match flush(&mut wanted, &mut not_wanted, ledger) {
                Ok(n) => skipped += n,
                Err(e) => failure = Some(e),
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    skipped += flush(&mut wanted, &mut not_wanted, ledger)?;
    Ok(skipped)
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

/// `--dry-run`: counts as the real run would — the same reading of the subscriber list, the
/// topic filter and the suppression list — and writes nothing (not even a ledger).
fn dry_run_report(config: &Config, issue: &Issue) -> Result<ExitCode> {
    let channel = channel_of(config);
    let queue = Queue {
        issue: issue.permalink.as_str(),
        channel,
    };
    let ledger = Ledger::open_existing(&config.mail.ledger)?;
    let (mut would_send, mut already, mut failed, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut failure = None;
    each_entry(config, issue, |entry| match entry {
        Entry::Bad | Entry::Repeated | Entry::NotWanted(_) => skipped += 1,
        Entry::Wanted(s) => {
            let Some(ledger) = &ledger else {
                would_send += 1;
                return;
            };
            let state = ledger.suppression_of(&s.key).and_then(|suppressed| {
                Ok(match suppressed {
                    Some(_) => None,
                    None => Some(ledger.state_of(queue, &s.key)?),
                })
            });
            match state {
                Ok(None) => skipped += 1,
                Ok(Some(Some(State::Sent))) => already += 1,
                Ok(Some(Some(State::Failed))) => failed += 1,
                Ok(Some(_)) => would_send += 1,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut line = format!(
        "dry run: `{}` ({}) would go to {} recipients via {}; already sent {}, skipped {}",
        issue.title,
        issue.permalink,
        would_send,
        transport(config, issue)?.describe(),
        already,
        skipped
    );
    if failed > 0 {
        line.push_str(&format!(", failed before {failed}"));
    }
    writeln!(std::io::stdout().lock(), "{line}")?;
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
            let mut roots = match &smtp.ca_file {
                Some(path) => TrustedRoots::from_pem_file(path)?,
                None => TrustedRoots::default(),
            };
            if let Some(pin) = &smtp.tls_pin_sha256 {
                roots = roots.with_pin(tls::parse_pin(pin).map_err(anyhow::Error::msg)?);
            }
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
