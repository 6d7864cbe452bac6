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
//! concurrency. Transient failures are retried with exponential backoff and jitter; throttling
//! slows every worker down without spending attempts; permanent failures suppress the address.

pub mod limits;
pub mod tls;
pub mod transport;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use indicatif::ProgressBar;
use lettre::address::Envelope;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{info, warn};

use crate::ledger::{Job, Ledger, Outcome};
use crate::mail::{IssueMail, Recipient};
use limits::{Limiter, Throttle};
pub use transport::{Connection, Failure, Transport};

/// How the engine paces and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Concurrent connections (workers).
    pub concurrency: usize,
    /// Attempts per recipient within one run.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

struct Shared {
    throttle: Throttle,
    limiter: Limiter,
    stopping: AtomicBool,
    fatal: Mutex<Option<String>>,
    cap_reached_until: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Workers waiting for their previous outcome to be recorded.
    acks_wanted: AtomicUsize,
    /// Wakes the coordinator when a worker starts waiting for its outcome to be recorded.
    commit_wanted: Notify,
    settings: Settings,
}

type Done = (Outcome, oneshot::Sender<()>);

/// Longest an outcome waits to be recorded when no worker needs it yet (e.g. all are waiting for
/// a rate limit): the bound on how long an accepted message stays unrecorded.
const MAX_HOLD: Duration = Duration::from_millis(5);

/// Sends every due delivery of `issue_id` through `transport` and records each outcome in
/// `ledger`, until nothing is left that may be tried in this run.
///
/// Before anything is claimed, one connection is opened: if the server is down or refuses us,
/// the run ends with an error and no delivery changes state. `progress` is advanced per recorded
/// outcome. Ctrl-C (SIGINT) or SIGTERM stops claiming, lets messages in flight finish, and queues
/// the rest again.
///
/// # Errors
/// The first connection fails, the server refuses every session, or the ledger cannot be written.
pub async fn run(
    ledger: &mut Ledger,
    issue_id: &str,
    mail: Arc<IssueMail>,
    transport: Transport,
    settings: Settings,
    progress: &ProgressBar,
) -> Result<Report> {
    let mut report = Report {
        recovered: ledger.begin_run(issue_id)?,
        ..Report::default()
    };
    if report.recovered > 0 {
        info!(
            recovered = report.recovered,
            "queued again the messages left in flight by an interrupted run"
        );
    }
    let first = transport.connect().await.map_err(|f| anyhow!("{f}"))?;
    info!(to = %transport.describe(), concurrency = settings.concurrency, "connected");
    let hour_ago = chrono::Utc::now().timestamp() - 3600;
    let shared = Arc::new(Shared {
        throttle: Throttle::new(settings.retry_max),
        limiter: Limiter::new(
            settings.rate_per_second,
            settings.hourly_cap,
            settings.hourly_cap_wait,
            &ledger.sent_times_since(hour_ago)?,
        ),
        stopping: AtomicBool::new(false),
        fatal: Mutex::new(None),
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
    loop {
        let stopping = shared.stopping.load(Ordering::SeqCst)
            || shared.fatal.lock().map(|f| f.is_some()).unwrap_or(true);
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
            // One transaction records the outcomes held and claims their replacements.
            let outcomes: Vec<Outcome> = batch.iter().map(|(o, _)| o.clone()).collect();
            let jobs =
                ledger.record_and_claim(issue_id, &outcomes, now_ms(), limit, max_attempts)?;
            in_flight -= batch.len();
            for (outcome, ack) in batch.drain(..) {
                tally(&mut report, progress, &outcome);
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
            match ledger.next_retry_at(issue_id, max_attempts)? {
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
    while workers.join_next().await.is_some() {}
    signals.abort();
    report.throttled = shared.throttle.hits();
    report.cap_reached_until = shared.cap_reached_until.lock().ok().and_then(|c| *c);
    if let Some(fatal) = shared.fatal.lock().ok().and_then(|f| f.clone()) {
        return Err(anyhow!("{fatal}"));
    }
    Ok(report)
}

/// Counts a recorded outcome in the report and the progress bar, and logs failures.
fn tally(report: &mut Report, progress: &ProgressBar, outcome: &Outcome) {
    match outcome {
        Outcome::Sent { .. } => {
            report.sent += 1;
            progress.inc(1);
        }
        Outcome::Failed { key, reply } => {
            report.failed += 1;
            progress.inc(1);
            warn!(recipient = %key, reply = %reply, "permanent failure; address suppressed");
        }
        Outcome::Deferred { key, reply, .. } => {
            report.transient += 1;
            info!(recipient = %key, reply = %reply, "transient failure; will retry");
        }
        Outcome::Requeue { .. } => {}
    }
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

async fn worker(
    transport: Arc<Transport>,
    mail: Arc<IssueMail>,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    done: mpsc::UnboundedSender<Done>,
    shared: Arc<Shared>,
    mut conn: Option<Connection>,
) {
    let mut connect_failures = 0u32;
    // The commit of this worker's previous outcome, still under way.
    let mut committing: Option<oneshot::Receiver<()>> = None;
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(job) = job else { break };
        let stop = shared.stopping.load(Ordering::SeqCst)
            || shared.fatal.lock().map(|f| f.is_some()).unwrap_or(true);
        // Building the message and opening its mail transaction deliver nothing, so they overlap
        // the commit of the previous outcome; `attempt` waits for that commit before the
        // end-of-data that makes the server accept this message.
        let outcome = match personalise(&mail, &job) {
            _ if stop => Outcome::Requeue { key: job.key },
            Err(reply) => Outcome::Failed {
                key: job.key,
                reply,
            },
            Ok((envelope, message)) => {
                attempt(
                    &transport,
                    &shared,
                    &mut conn,
                    &mut connect_failures,
                    &mut committing,
                    job,
                    (&envelope, &message),
                )
                .await
            }
        };
        if !committed(&shared, &mut committing).await {
            break;
        }
        let (ack_tx, ack_rx) = oneshot::channel();
        if done.send((outcome, ack_tx)).is_err() {
            break;
        }
        committing = Some(ack_rx);
    }
    if let Some(c) = conn {
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

/// The job's message and envelope, or why it cannot be built (a permanent failure).
fn personalise(mail: &IssueMail, job: &Job) -> Result<(Envelope, Vec<u8>), String> {
    mail.personalise(&Recipient {
        address: &job.address,
        name: job.name.as_deref(),
        message_id: &job.message_id,
    })
    .map_err(|e| format!("{e:#}"))
}

async fn attempt(
    transport: &Transport,
    shared: &Shared,
    conn: &mut Option<Connection>,
    connect_failures: &mut u32,
    committing: &mut Option<oneshot::Receiver<()>>,
    job: Job,
    (envelope, message): (&Envelope, &[u8]),
) -> Outcome {
    let settings = &shared.settings;
    let deferred = |key: String, reply: String, attempts: u32| Outcome::Deferred {
        key,
        reply,
        next_attempt_at: now_ms()
            + backoff(attempts, settings.retry_base, settings.retry_max).as_millis() as i64,
    };
    shared.throttle.wait().await;
    if conn.as_ref().is_none_or(|c| !c.is_usable()) {
        *conn = None;
        match transport.connect().await {
            Ok(c) => {
                *connect_failures = 0;
                *conn = Some(c);
            }
            Err(Failure::Permanent(m)) => {
                if let Ok(mut fatal) = shared.fatal.lock() {
                    fatal.get_or_insert(m);
                }
                return Outcome::Requeue { key: job.key };
            }
            Err(Failure::Transient(m) | Failure::Throttled(m)) => {
                *connect_failures += 1;
                warn!(reply = %m, "cannot reconnect");
                tokio::time::sleep(backoff(
                    *connect_failures,
                    settings.retry_base,
                    settings.retry_max,
                ))
                .await;
                return deferred(job.key, m, job.attempts);
            }
        }
    }
    let Some(c) = conn.as_mut() else {
        return Outcome::Requeue { key: job.key };
    };
    if let Err(reached) = shared.limiter.acquire().await {
        // Stop the run rather than hold it open for long: this and every message not yet
        // accepted stay queued.
        let until = chrono::Utc::now() + reached.wait;
        if let Ok(mut cap) = shared.cap_reached_until.lock() {
            cap.get_or_insert(until);
        }
        shared.stopping.store(true, Ordering::SeqCst);
        return Outcome::Requeue { key: job.key };
    }
    let file_name = format!(
        "{}.eml",
        job.message_id.trim_matches(|ch| ch == '<' || ch == '>')
    );
    let sent = match c.start(envelope, message).await {
        Ok(()) if committed(shared, committing).await => c.finish(message, &file_name).await,
        Ok(()) => {
            // The run is ending with an error: leave without delivering.
            c.abort().await;
            return Outcome::Requeue { key: job.key };
        }
        Err(failure) => Err(failure),
    };
    match sent {
        Ok(sent) => {
            shared.throttle.success();
            Outcome::Sent {
                key: job.key,
                reply: sent.reply,
            }
        }
        Err(Failure::Throttled(m)) => {
            shared.throttle.hit(&m);
            Outcome::Requeue { key: job.key }
        }
        Err(Failure::Transient(m)) => deferred(job.key, m, job.attempts),
        Err(Failure::Permanent(m)) => Outcome::Failed {
            key: job.key,
            reply: m,
        },
    }
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
}
