//! Delivery: the sending engine that moves an issue's queue through the ledger.
//!
//! The last stage of `publish`. [`run`] claims due deliveries from the [`Ledger`] in small
//! batches, hands them to `concurrency` workers — each holding one long-lived [`Connection`] —
//! and records every outcome before the worker's next message can be accepted (group commit: the
//! outcomes held are recorded, and their replacements claimed, in one transaction). A worker
//! builds its next message and opens its mail transaction meanwhile, and waits for the commit only
//! before the end-of-data; the coordinator commits when a worker so waits (or the queue runs low,
//! or 5 ms have passed), so one commit carries many outcomes. At any instant at most one accepted
//! message per worker is unrecorded, which bounds the duplicates a `kill -9` can cause by the
//! concurrency.
//!
//! How each [`Failure`] (see [`failure`] for how replies are read) is met:
//! - transient (4xx, timeout, dropped connection): the recipient is deferred and retried with
//!   exponential backoff and jitter, up to `max_attempts` per run;
//! - throttled (421, a 4xx to `MAIL FROM`, congestion): the connection told so pauses (its own
//!   pause, growing while it is throttled; the others go on), and the recipient is deferred (with
//!   its own growing backoff) without spending an attempt — unless the server has accepted nothing
//!   over the last `max_attempts × concurrency` throttle replies: then each throttle counts as a
//!   transient failure, so a server that always throttles ends the run with recipients deferred
//!   instead of looping;
//! - permanent, the recipient's own (5.1.x unknown mailbox…): the recipient fails and is
//!   suppressed;
//! - unsendable (a non-ASCII address without SMTPUTF8): the recipient fails, not suppressed;
//! - unclear (a 5xx whose owner the codes do not tell, e.g. 554 5.6.0 to the message): held, not
//!   recorded, until the run can tell — the recipient's own once another message gets through
//!   (then failed and suppressed), the message's when [`SAME_REFUSALS`] recipients in a row meet
//!   the same refusal, or nothing was accepted by the end (then the run stops: see fatal);
//! - fatal (the server refuses us or the message: 5xx greeting, failed AUTH, a 5xx to `MAIL
//!   FROM`, relay denied, a policy refusal, a message too large): the run stops with an error
//!   naming the reply and what to fix; nothing is marked failed, nobody is suppressed, the rest
//!   stays queued.
//!
//! A message larger than the server's declared `SIZE` (RFC 1870) stops the run before anything
//! is sent. A 421 or a dropped connection ends that worker's connection only; it connects again.
//! A refused connection sends the recipient back to the queue (it was not tried) and the worker
//! backs off; after `max_attempts` refusals in a row the worker retires if other connections are
//! open (the server limits connections), and the run stops with an error if none is (the server
//! is gone).

pub mod failure;
pub mod limits;
pub mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use indicatif::ProgressBar;
use lettre::address::Envelope;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, info, warn};

use crate::ledger::{Job, Ledger, Outcome, Queue};
use crate::mail::{IssueMail, Recipient};
use limits::{ConnectionBackoff, Limiter, ThrottleStreak};
pub use transport::{Connection, Failure, Transport};

/// How many events of one kind (transient failure, permanent failure, throttle reply, refused
/// connection) a run logs as they happen; the rest go to the debug level, and the summary at the
/// end of the run counts them all. Keeps a send to thousands of greylisting recipients readable.
const LOUD_EVENTS: u64 = 10;

/// How many recipients in a row meeting the same unclear refusal make it the message's or the
/// sender's, not theirs (see the module docs).
pub const SAME_REFUSALS: usize = 3;

/// How the engine paces and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Concurrent connections (workers).
    pub concurrency: usize,
    /// Attempts per recipient within one run. Also bounds the refused connections in a row before
    /// a worker gives its connection up, and (times `concurrency`) the throttle replies in a row,
    /// with no message accepted, after which each further one counts as an attempt.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// Longest retry delay, and longest pause while throttled.
    pub retry_max: Duration,
    /// Messages per second over all connections; 0 = unlimited.
    pub rate_per_second: f64,
    /// Messages per sliding hour; 0 = unlimited.
    pub hourly_cap: u64,
    /// Longest wait for the hourly cap to free a slot; a longer one ends the run (see
    /// [`Report::cap_reached_until`]).
    pub hourly_cap_wait: Duration,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages the server accepted in this run.
    pub sent: u64,
    /// Recipients that failed permanently in this run (now suppressed).
    pub failed: u64,
    /// Transient failures met in this run (each retried or left deferred).
    pub transient: u64,
    /// Times the server throttled us.
    pub throttled: u64,
    /// Deliveries left `sending` by a crashed run and queued again.
    pub recovered: u64,
    /// Set when the run ended because the hourly cap was reached and its next free slot was
    /// further away than `Settings::hourly_cap_wait`: when that slot frees (UTC). The recipients
    /// not sent are left queued.
    pub cap_reached_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Set when the server refused us or the message and the run stopped: why, and what to fix.
    /// Nothing unsent was marked sent or failed; the rest is left queued.
    pub stopped: Option<String>,
}

/// What the workers share.
struct Shared {
    /// Throttle replies since the server last accepted a message, over all connections.
    streak: ThrottleStreak,
    limiter: Limiter,
    /// Set by SIGINT/SIGTERM: claim nothing more.
    stopping: AtomicBool,
    /// Why the run must stop (the server refuses us); claim nothing more.
    fatal: Mutex<Option<String>>,
    /// Workers holding an open connection.
    live: AtomicUsize,
    /// Throttle replies and refused connections logged so far (see [`LOUD_EVENTS`]).
    throttles_logged: AtomicU64,
    refusals_logged: AtomicU64,
    /// When the hourly cap's next free slot was too far away: the run stops (see [`Report`]).
    cap_reached_until: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Workers waiting for their previous outcome to be recorded.
    acks_wanted: AtomicUsize,
    /// Wakes the coordinator when a worker starts waiting for its outcome to be recorded.
    commit_wanted: Notify,
    settings: Settings,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
            || self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// Stops the run with `reason` (the first reason wins).
    fn fail(&self, reason: String) {
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(reason);
        }
    }
}

/// Whether the `n`-th event of a kind (1-based) is still logged as it happens; the first one past
/// the limit says where the rest go.
fn loud(counter: &AtomicU64, kind: &str) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if n == LOUD_EVENTS + 1 {
        info!("more {kind} follow; they are logged at debug level and counted at the end");
    }
    n <= LOUD_EVENTS
}

/// How a worker's attempt ended.
enum Attempted {
    /// Settled by the worker.
    Outcome(Outcome),
    /// The server throttled us; the run loop decides what it costs (see [`charge_throttle`]).
    Throttled {
        key: String,
        reply: String,
        /// Throttle replies since the server last accepted a message.
        streak: u64,
    },
    /// A permanent refusal whose owner is unclear; the run loop holds it (see [`Unclear`]).
    Unclear {
        key: String,
        reply: String,
        kind: String,
        suppress: bool,
    },
}

/// A worker's outcome on its way to the ledger.
struct Done {
    attempted: Attempted,
    /// Answered once the outcome is committed.
    ack: oneshot::Sender<()>,
}

/// Longest an outcome waits to be recorded when no worker needs it yet (e.g. all are waiting for
/// a rate limit): the bound on how long an accepted message stays unrecorded.
const MAX_HOLD: Duration = Duration::from_millis(5);

/// Permanent refusals whose owner the reply does not tell (see [`failure::Failure::Unclear`]),
/// held back — their deliveries stay `sending`, nothing is suppressed — until the run can tell:
/// a message accepted after them makes them the recipients' own; [`SAME_REFUSALS`] of the same
/// kind in a row, or none accepted by the end of the run, make them the message's.
#[derive(Default)]
struct Unclear {
    held: Vec<(String, String, bool)>,
    /// The kind of the last refusals, and how many in a row.
    last: Option<(String, String)>,
    same: usize,
    /// Whether a message was accepted in this run.
    accepted: bool,
}

impl Unclear {
    /// Holds a refusal; returns why the run must stop when it is the [`SAME_REFUSALS`]th of its
    /// kind in a row.
    fn hold(&mut self, key: String, reply: String, kind: String, suppress: bool) -> Option<String> {
        match &self.last {
            Some((k, _)) if *k == kind => self.same += 1,
            _ => {
                self.last = Some((kind, reply.clone()));
                self.same = 1;
            }
        }
        self.held.push((key, reply, suppress));
        (self.same >= SAME_REFUSALS).then(|| self.stop_reason())
    }

    fn stop_reason(&self) -> String {
        let reply = self.last.as_ref().map_or("", |(_, r)| r.as_str());
        format!(
            "the server refused the message for {} recipients in a row with the same reply: {reply}. The message or the sender is refused, not the readers: nobody was suppressed, and they stay queued. Read the reply for what to change (the content, the sender, the relay's settings), then retry",
            self.same
        )
    }

    /// A message got through: the refusals held are the recipients' own.
    fn accepted(&mut self) -> Vec<Outcome> {
        self.accepted = true;
        self.last = None;
        self.same = 0;
        self.held
            .drain(..)
            .map(|(key, reply, suppress)| Outcome::Failed {
                key,
                reply,
                suppress,
            })
            .collect()
    }

    /// The run is stopping: the refusals still held go back to the queue.
    fn requeue(&mut self) -> Vec<Outcome> {
        self.held
            .drain(..)
            .map(|(key, ..)| Outcome::Requeue { key })
            .collect()
    }

    /// The end of the run: what to record for the refusals still held, and why the run stops if
    /// no message was accepted at all (then they are requeued).
    fn finish(&mut self) -> (Vec<Outcome>, Option<String>) {
        if self.held.is_empty() {
            (Vec::new(), None)
        } else if self.accepted {
            (self.accepted(), None)
        } else {
            let reason = self.stop_reason();
            (self.requeue(), Some(reason))
        }
    }
}

/// Sends every due delivery of `queue` through `transport` and records each outcome in
/// `ledger`, until nothing is left that may be tried in this run.
///
/// Before anything is claimed, one connection is opened, and the message is checked against the
/// size the server declares: if the server is down or refuses us, or the message is too large,
/// the run stops ([`Report::stopped`]) and no delivery changes state. When nothing is queued or
/// deferred, no connection is opened at all. During the run a lost connection ends that worker's
/// connection only and is opened again; connections refused `max_attempts` times in a row
/// retire the worker while others still send, and stop the run when none does. `progress` is
/// advanced per recorded outcome. Ctrl-C (SIGINT) or SIGTERM stops claiming, lets messages in
/// flight finish, and queues the rest again.
///
/// A run the server stops (see the module docs) returns `Ok` with [`Report::stopped`] set: the
/// deliveries not yet sent are queued again, none is marked failed, nobody is suppressed.
///
/// # Errors
/// The ledger cannot be read or written.
pub async fn run(
    ledger: &mut Ledger,
    queue: Queue<'_>,
    mail: Arc<IssueMail>,
    transport: Transport,
    settings: Settings,
    progress: &ProgressBar,
) -> Result<Report> {
    let mut report = Report {
        recovered: ledger.begin_run(queue)?,
        ..Report::default()
    };
    if report.recovered > 0 {
        info!(
            recovered = report.recovered,
            "queued again the messages left in flight by an interrupted run"
        );
    }
    let pending = ledger.counts(queue)?;
    if pending.queued + pending.deferred == 0 {
        // Everything is sent or failed: no need for the server (it may well be down).
        return Ok(report);
    }
    let first = match transport.connect().await {
        Ok(first) => first,
        Err(f) => {
            report.stopped = Some(f.to_string());
            return Ok(report);
        }
    };
    if let Some(too_large) = over_size_limit(&first, &mail, &transport) {
        first.close().await;
        report.stopped = Some(too_large);
        return Ok(report);
    }
    info!(to = %transport.describe(), concurrency = settings.concurrency, "connected");
    let hour_ago = chrono::Utc::now().timestamp() - 3600;
    let shared = Arc::new(Shared {
        streak: ThrottleStreak::default(),
        limiter: Limiter::new(
            settings.rate_per_second,
            settings.hourly_cap,
            settings.hourly_cap_wait,
            &ledger.sent_times_since(hour_ago)?,
        ),
        stopping: AtomicBool::new(false),
        fatal: Mutex::new(None),
        live: AtomicUsize::new(0),
        throttles_logged: AtomicU64::new(0),
        refusals_logged: AtomicU64::new(0),
        cap_reached_until: Mutex::new(None),
        acks_wanted: AtomicUsize::new(0),
        commit_wanted: Notify::new(),
        settings: settings.clone(),
    });
    // Jobs claimed and not yet recorded: per worker, the message it sends, the outcome of the
    // one before (being committed), and two waiting in the queue.
    let capacity = settings.concurrency * 4;
    let (job_tx, job_rx) = mpsc::channel::<Job>(capacity);
    let job_rx = Arc::new(tokio::sync::Mutex::new(job_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (finished_tx, finished_rx) = watch::channel(false);
    let transport = Arc::new(transport);
    let mut workers = tokio::task::JoinSet::new();
    let mut first = Some(first);
    for _ in 0..settings.concurrency {
        workers.spawn(worker(
            transport.clone(),
            mail.clone(),
            job_rx.clone(),
            done_tx.clone(),
            shared.clone(),
            first.take(),
            finished_rx.clone(),
        ));
    }
    drop(done_tx);
    let stop_signal = shared.clone();
    let signals = tokio::spawn(async move {
        wait_for_stop_signal().await;
        warn!("stopping: finishing the messages in flight; run `publish` again to send the rest");
        stop_signal.stopping.store(true, Ordering::SeqCst);
    });

    let max_attempts = settings.max_attempts;
    // Claim in batches of at least half the workers, so the queue still holds half a batch per
    // worker between claims and a claim seldom needs a transaction of its own.
    let refill = (settings.concurrency / 2).max(1);
    let mut in_flight = 0usize;
    let mut batch: Vec<Done> = Vec::new();
    let mut held_since: Option<std::time::Instant> = None;
    let mut throttled_in_run: HashMap<String, u32> = HashMap::new();
    let mut unclear = Unclear::default();
    let logged = Logged::default();
    loop {
        let stopping = shared.stopped();
        let free = capacity - (in_flight - batch.len());
        let limit = if !stopping && free >= refill { free } else { 0 };
        // Outcomes are recorded as late as possible, so that one commit carries many: when a
        // worker is about to send its next end-of-data and waits for its outcome, when the
        // queue runs low, when nobody is sending, when stopping, or after MAX_HOLD.
        let queued = job_tx.max_capacity() - job_tx.capacity();
        let commit_now = stopping
            || shared.acks_wanted.load(Ordering::SeqCst) > 0
            || queued < refill
            || in_flight == batch.len()
            || held_since.is_some_and(|t| t.elapsed() >= MAX_HOLD);
        if commit_now && (!batch.is_empty() || limit > 0) {
            held_since = None;
            let settled = batch.len();
            let mut outcomes = Vec::with_capacity(settled);
            let mut acks = Vec::with_capacity(settled);
            for done in batch.drain(..) {
                match done.attempted {
                    Attempted::Outcome(outcome) => {
                        if matches!(outcome, Outcome::Sent { .. }) && !shared.stopped() {
                            outcomes.extend(unclear.accepted());
                        }
                        outcomes.push(outcome);
                    }
                    Attempted::Throttled { key, reply, streak } => outcomes.push(charge_throttle(
                        &mut throttled_in_run,
                        key,
                        reply,
                        streak,
                        &settings,
                    )),
                    Attempted::Unclear {
                        key,
                        reply,
                        kind,
                        suppress,
                    } => {
                        debug!(recipient = %key, reply = %reply, "refused; holding it until the run can tell whose refusal it is");
                        if let Some(reason) = unclear.hold(key, reply, kind, suppress) {
                            shared.fail(reason);
                        }
                    }
                }
                acks.push(done.ack);
            }
            if shared.stopped() {
                outcomes.extend(unclear.requeue());
            }
            // One transaction records the outcomes held and claims their replacements.
            let jobs = ledger.record_and_claim(queue, &outcomes, now_ms(), limit, max_attempts)?;
            in_flight -= settled;
            for outcome in &outcomes {
                tally(&mut report, outcome, progress, &logged);
            }
            for ack in acks {
                let _ = ack.send(());
            }
            in_flight += jobs.len();
            for job in jobs {
                if job_tx.send(job).await.is_err() {
                    return Err(anyhow!("every sending worker stopped"));
                }
            }
        }
        let wait = if in_flight == 0 {
            if stopping {
                break;
            }
            match ledger.next_retry_at(queue, max_attempts)? {
                Some(at) => Duration::from_millis((at - now_ms()).clamp(1, 60_000) as u64),
                None => break,
            }
        } else if let Some(since) = held_since {
            MAX_HOLD.saturating_sub(since.elapsed())
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            done = done_rx.recv() => match done {
                Some(done) => batch.push(done),
                None => return Err(anyhow!("every sending worker stopped")),
            },
            _ = shared.commit_wanted.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        while let Ok(more) = done_rx.try_recv() {
            batch.push(more);
        }
        if !batch.is_empty() {
            held_since.get_or_insert_with(std::time::Instant::now);
        }
    }
    drop(job_tx);
    let _ = finished_tx.send(true);
    while workers.join_next().await.is_some() {}
    signals.abort();
    let (last, unclear_stop) = unclear.finish();
    if !last.is_empty() {
        ledger.record(queue, &last)?;
        for outcome in &last {
            tally(&mut report, outcome, progress, &logged);
        }
    }
    if let Some(reason) = unclear_stop {
        shared.fail(reason);
    }
    report.throttled = shared.streak.hits();
    report.cap_reached_until = shared.cap_reached_until.lock().ok().and_then(|c| *c);
    if report.transient + report.failed + report.throttled > 0 {
        info!(
            "this run met {} transient failures, {} permanent failures and {} throttle replies",
            report.transient, report.failed, report.throttled
        );
    }
    report.stopped = shared.fatal.lock().ok().and_then(|f| f.clone());
    Ok(report)
}

/// How many transient and permanent failures were logged so far (see [`LOUD_EVENTS`]).
#[derive(Default)]
struct Logged {
    transient: AtomicU64,
    failed: AtomicU64,
}

/// Counts and logs one recorded outcome.
fn tally(report: &mut Report, outcome: &Outcome, progress: &ProgressBar, logged: &Logged) {
    match outcome {
        Outcome::Sent { .. } => {
            report.sent += 1;
            progress.inc(1);
        }
        Outcome::Failed {
            key,
            reply,
            suppress,
        } => {
            report.failed += 1;
            progress.inc(1);
            let what = if *suppress {
                "permanent failure; address suppressed"
            } else {
                "not sent; address not suppressed"
            };
            if loud(&logged.failed, "permanent failures") {
                warn!(recipient = %key, reply = %reply, "{what}");
            } else {
                debug!(recipient = %key, reply = %reply, "{what}");
            }
        }
        Outcome::Deferred { key, reply, .. } => {
            report.transient += 1;
            if loud(&logged.transient, "transient failures") {
                info!(recipient = %key, reply = %reply, "transient failure; deferred");
            } else {
                debug!(recipient = %key, reply = %reply, "transient failure; deferred");
            }
        }
        Outcome::Throttled { .. } | Outcome::Requeue { .. } => {}
    }
}

/// Why no message may be sent at all: the message (for a sample recipient; each differs by a
/// few dozen bytes) is larger than the `SIZE` the server declares (RFC 1870).
fn over_size_limit(first: &Connection, mail: &IssueMail, transport: &Transport) -> Option<String> {
    let limit = first.size_limit()?;
    let sample = Recipient {
        address: "reader@example.org",
        name: None,
        message_id: "<sample@example.org>",
    };
    let (_, message) = mail.personalise(&sample).ok()?;
    (message.len() as u64 > limit)
        .then(|| failure::over_size(message.len(), limit, &transport.describe()))
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The delay before attempt `attempts + 1`: `base * 2^attempts`, at most `max`, scaled by a random
/// factor in [0.5, 1.0] so retries of many recipients spread out.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    capped.mul_f64(rand::random_range(0.5..=1.0))
}

/// What a throttle reply costs the recipient `key`. Normally nothing: it is deferred without
/// spending an attempt, for a backoff that grows with the times it was throttled in this run
/// (`throttled_in_run`), so other recipients go first. But once the server has accepted nothing
/// over `max_attempts × concurrency` throttle replies in a row (`streak`), it is not slowing us
/// down but refusing: each throttle is then a transient failure that spends an attempt, so a run
/// against a server that always throttles ends.
fn charge_throttle(
    throttled_in_run: &mut HashMap<String, u32>,
    key: String,
    reply: String,
    streak: u64,
    settings: &Settings,
) -> Outcome {
    let n = throttled_in_run.entry(key.clone()).or_insert(0);
    *n += 1;
    let next_attempt_at =
        now_ms() + backoff(*n - 1, settings.retry_base, settings.retry_max).as_millis() as i64;
    let patience = u64::from(settings.max_attempts) * settings.concurrency as u64;
    if streak > patience {
        Outcome::Deferred {
            key,
            reply,
            next_attempt_at,
        }
    } else {
        Outcome::Throttled {
            key,
            reply,
            next_attempt_at,
        }
    }
}

/// What a worker does after its outcome is recorded.
enum Next {
    /// Take the next message.
    Go,
    /// Wait this long first (the server refused a connection).
    Pause(Duration),
    /// Stop: the server will not take this worker's connection, and others still send.
    Retire,
}

/// One worker: one connection at a time, one message at a time, each outcome committed before
/// the end-of-data of the next message (which is built, and its transaction opened, meanwhile).
async fn worker(
    transport: Arc<Transport>,
    mail: Arc<IssueMail>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    done: mpsc::UnboundedSender<Done>,
    shared: Arc<Shared>,
    first: Option<Connection>,
    mut finished: watch::Receiver<bool>,
) {
    let mut slot = Slot {
        conn: None,
        refused: 0,
        backoff: ConnectionBackoff::new(shared.settings.retry_max),
    };
    if let Some(c) = first {
        slot.hold(c, &shared);
    }
    // The commit of this worker's previous outcome, while it is under way.
    let mut committing: Option<oneshot::Receiver<()>> = None;
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(job) = job else { break };
        let (attempted, next) = if shared.stopped() {
            (
                Attempted::Outcome(Outcome::Requeue { key: job.key }),
                Next::Go,
            )
        } else {
            attempt(&transport, &mail, &shared, &mut slot, &mut committing, job).await
        };
        // `attempt` waited for the previous commit before the end-of-data; when it stopped
        // earlier, wait here, so a worker has one outcome at most in the coordinator's hands.
        if !committed(&shared, &mut committing).await {
            break;
        }
        let (ack, acked) = oneshot::channel();
        if done.send(Done { attempted, ack }).is_err() {
            break;
        }
        committing = Some(acked);
        match next {
            Next::Go => {}
            Next::Pause(pause) => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = finished.wait_for(|f| *f) => {}
                }
            }
            Next::Retire => break,
        }
    }
    if let Some(c) = slot.drop_conn(&shared) {
        c.close().await;
    }
}

/// Waits for the group commit of the worker's previous outcome, if it is not on disk yet, and
/// tells the coordinator someone is waiting. False when the coordinator is gone (the run is
/// ending with an error).
async fn committed(shared: &Shared, committing: &mut Option<oneshot::Receiver<()>>) -> bool {
    let Some(mut ack) = committing.take() else {
        return true;
    };
    match ack.try_recv() {
        Ok(()) => true,
        Err(oneshot::error::TryRecvError::Closed) => false,
        Err(oneshot::error::TryRecvError::Empty) => {
            shared.acks_wanted.fetch_add(1, Ordering::SeqCst);
            shared.commit_wanted.notify_one();
            let recorded = ack.await.is_ok();
            shared.acks_wanted.fetch_sub(1, Ordering::SeqCst);
            recorded
        }
    }
}

/// A worker's connection, how many times in a row the server refused a new one, and the pause
/// the server asked of it.
struct Slot {
    conn: Option<Connection>,
    refused: u32,
    backoff: ConnectionBackoff,
}

impl Slot {
    fn hold(&mut self, c: Connection, shared: &Shared) {
        self.conn = Some(c);
        self.refused = 0;
        shared.live.fetch_add(1, Ordering::SeqCst);
    }

    fn drop_conn(&mut self, shared: &Shared) -> Option<Connection> {
        let c = self.conn.take();
        if c.is_some() {
            shared.live.fetch_sub(1, Ordering::SeqCst);
        }
        c
    }
}

/// One attempt to deliver `job`: build the message, (re)connect if needed, open the mail
/// transaction, wait for the previous outcome's commit (`committing`), end the data, classify.
async fn attempt(
    transport: &Transport,
    mail: &IssueMail,
    shared: &Shared,
    slot: &mut Slot,
    committing: &mut Option<oneshot::Receiver<()>>,
    job: Job,
) -> (Attempted, Next) {
    let settings = &shared.settings;
    let requeue = |key: String, next: Next| (Attempted::Outcome(Outcome::Requeue { key }), next);
    let (envelope, message): (Envelope, Vec<u8>) = match mail.personalise(&Recipient {
        address: &job.address,
        name: job.name.as_deref(),
        message_id: &job.message_id,
    }) {
        Ok(m) => m,
        Err(e) => {
            let outcome = Outcome::Failed {
                key: job.key,
                reply: format!("{e:#}"),
                suppress: false,
            };
            return (Attempted::Outcome(outcome), Next::Go);
        }
    };
    slot.backoff.wait().await;
    if slot.conn.as_ref().is_none_or(|c| !c.is_usable()) {
        slot.drop_conn(shared);
        match transport.connect().await {
            Ok(c) => {
                if slot.refused > 0 {
                    info!(tries = slot.refused + 1, "connected again");
                } else {
                    debug!("opened a connection");
                }
                slot.hold(c, shared);
            }
            Err(Failure::Fatal(m)) => {
                shared.fail(m);
                return requeue(job.key, Next::Go);
            }
            Err(refused) => {
                // The recipient was not tried: back to the queue, no attempt spent.
                slot.refused += 1;
                let m = refused.to_string();
                if slot.refused >= settings.max_attempts {
                    let live = shared.live.load(Ordering::SeqCst);
                    if live > 0 {
                        warn!(reply = %m, "the server refused this connection {} times in a row; going on with {live}", slot.refused);
                        return requeue(job.key, Next::Retire);
                    }
                    shared.fail(format!("{m} ({} tries in a row)", slot.refused));
                    return requeue(job.key, Next::Go);
                }
                let pause = backoff(slot.refused - 1, settings.retry_base, settings.retry_max);
                if loud(&shared.refusals_logged, "refused connections") {
                    warn!(reply = %m, pause_ms = pause.as_millis() as u64, "cannot connect; trying again");
                } else {
                    debug!(reply = %m, pause_ms = pause.as_millis() as u64, "cannot connect; trying again");
                }
                return requeue(job.key, Next::Pause(pause));
            }
        }
    }
    let Some(c) = slot.conn.as_mut() else {
        return requeue(job.key, Next::Go);
    };
    if let Err(reached) = shared.limiter.acquire().await {
        // Stop the run rather than hold it open for long: this and every message not yet
        // accepted stay queued.
        let until = chrono::Utc::now() + reached.wait;
        if let Ok(mut cap) = shared.cap_reached_until.lock() {
            cap.get_or_insert(until);
        }
        shared.stopping.store(true, Ordering::SeqCst);
        return requeue(job.key, Next::Go);
    }
    let file_name = format!(
        "{}.eml",
        job.message_id.trim_matches(|ch| ch == '<' || ch == '>')
    );
    let result = match c.start(&envelope, &message).await {
        Ok(()) if committed(shared, committing).await => {
            c.finish(&envelope, &message, &file_name).await
        }
        Ok(()) => {
            // The run is ending with an error: leave without delivering.
            c.abort().await;
            slot.drop_conn(shared);
            return requeue(job.key, Next::Go);
        }
        Err(failure) => Err(failure),
    };
    if !c.is_usable() {
        slot.drop_conn(shared);
        debug!("the connection is closed; the next message opens another");
    }
    let key = job.key;
    let outcome = match result {
        Ok(sent) => {
            shared.streak.success();
            slot.backoff.success();
            Outcome::Sent {
                key,
                reply: sent.reply,
            }
        }
        Err(Failure::Throttled(reply)) => {
            let streak = shared.streak.hit();
            let pause_ms = slot.backoff.hit().as_millis() as u64;
            if loud(&shared.throttles_logged, "throttle replies") {
                warn!(reply = %reply, pause_ms, "the server is throttling this connection; it slows down");
            } else {
                debug!(reply = %reply, pause_ms, "the server is throttling this connection; it slows down");
            }
            return (Attempted::Throttled { key, reply, streak }, Next::Go);
        }
        Err(Failure::Unclear {
            reply,
            kind,
            suppress,
        }) => {
            let unclear = Attempted::Unclear {
                key,
                reply,
                kind,
                suppress,
            };
            return (unclear, Next::Go);
        }
        Err(Failure::Unsendable(reply)) => Outcome::Failed {
            key,
            reply,
            suppress: false,
        },
        Err(Failure::Transient(reply)) => Outcome::Deferred {
            key,
            reply,
            next_attempt_at: now_ms()
                + backoff(job.attempts, settings.retry_base, settings.retry_max).as_millis() as i64,
        },
        Err(Failure::Permanent(reply)) => Outcome::Failed {
            key,
            reply,
            suppress: true,
        },
        Err(Failure::Fatal(m)) => {
            shared.fail(m);
            Outcome::Requeue { key }
        }
    };
    (Attempted::Outcome(outcome), Next::Go)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for _ in 0..50 {
            let d0 = backoff(0, base, max);
            assert!(d0 >= Duration::from_millis(50) && d0 <= base, "{d0:?}");
            let d3 = backoff(3, base, max);
            assert!(
                d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800),
                "{d3:?}"
            );
            assert!(backoff(40, base, max) <= max);
        }
    }

    #[test]
    fn a_throttle_spends_no_attempt_until_the_server_accepts_nothing() {
        let settings = Settings {
            concurrency: 2,
            max_attempts: 2,
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            rate_per_second: 0.0,
            hourly_cap: 0,
            hourly_cap_wait: Duration::ZERO,
        };
        let before = now_ms();
        let mut counts = HashMap::new();
        let mut charge = |key: &str, streak| {
            charge_throttle(
                &mut counts,
                key.into(),
                "454 slow down".into(),
                streak,
                &settings,
            )
        };
        // Throttled now and then (messages get through in between): never an attempt, however
        // often the same recipient is unlucky.
        for _ in 0..10 {
            assert!(matches!(charge("a@x.org", 1), Outcome::Throttled { .. }));
        }
        // Nothing accepted over max_attempts × concurrency = 4 throttles: now it costs attempts.
        assert!(matches!(charge("b@x.org", 4), Outcome::Throttled { .. }));
        match charge("b@x.org", 5) {
            Outcome::Deferred {
                key,
                reply,
                next_attempt_at,
            } => {
                assert_eq!((key.as_str(), reply.as_str()), ("b@x.org", "454 slow down"));
                assert!(next_attempt_at >= before);
            }
            other => panic!("expected a deferral, got {other:?}"),
        }
    }
}
