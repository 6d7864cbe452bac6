//! Delivery: the sending engine that moves an issue's queue through the ledger.
//!
//! The last stage of `publish`. [`run`] claims due deliveries from the [`Ledger`] in small
//! batches, hands them to `concurrency` workers — each holding one long-lived [`Connection`] —
//! and records every outcome before the worker may take its next message (group commit: all
//! outcomes that arrived together share one transaction). So at any instant at most one accepted
//! message per worker is unrecorded, which bounds the duplicates a `kill -9` can cause by the
//! concurrency. Transient failures are retried with exponential backoff and jitter; throttling
//! slows every worker down without spending attempts; permanent failures suppress the address.

pub mod limits;
pub mod transport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot};
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
}

struct Shared {
    throttle: Throttle,
    limiter: Limiter,
    stopping: AtomicBool,
    fatal: Mutex<Option<String>>,
    settings: Settings,
}

type Done = (Outcome, oneshot::Sender<()>);

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
            &ledger.sent_times_since(hour_ago)?,
        ),
        stopping: AtomicBool::new(false),
        fatal: Mutex::new(None),
        settings: settings.clone(),
    });
    let capacity = settings.concurrency * 2;
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
    let mut in_flight = 0usize;
    loop {
        let stopping = shared.stopping.load(Ordering::SeqCst)
            || shared.fatal.lock().map(|f| f.is_some()).unwrap_or(true);
        if !stopping && in_flight < capacity {
            let jobs = ledger.claim(issue_id, now_ms(), capacity - in_flight, max_attempts)?;
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
        } else {
            Duration::from_millis(200)
        };
        let first = tokio::select! {
            d = done_rx.recv() => d,
            _ = tokio::time::sleep(wait) => None,
        };
        let Some(first) = first else { continue };
        let mut batch = vec![first];
        while let Ok(more) = done_rx.try_recv() {
            batch.push(more);
        }
        let outcomes: Vec<Outcome> = batch.iter().map(|(o, _)| o.clone()).collect();
        ledger.record(issue_id, &outcomes)?;
        in_flight -= batch.len();
        for (outcome, ack) in batch {
            match &outcome {
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
            let _ = ack.send(());
        }
    }
    drop(job_tx);
    while workers.join_next().await.is_some() {}
    signals.abort();
    report.throttled = shared.throttle.hits();
    if let Some(fatal) = shared.fatal.lock().ok().and_then(|f| f.clone()) {
        return Err(anyhow!("{fatal}"));
    }
    Ok(report)
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
    let settings = &shared.settings;
    let mut connect_failures = 0u32;
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(job) = job else { break };
        let stop = shared.stopping.load(Ordering::SeqCst)
            || shared.fatal.lock().map(|f| f.is_some()).unwrap_or(true);
        let outcome = if stop {
            Outcome::Requeue { key: job.key }
        } else {
            attempt(
                &transport,
                &mail,
                &shared,
                &mut conn,
                &mut connect_failures,
                job,
                settings,
            )
            .await
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        if done.send((outcome, ack_tx)).is_err() {
            break;
        }
        // Group commit: the outcome is on disk before this worker takes another message.
        if ack_rx.await.is_err() {
            break;
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

async fn attempt(
    transport: &Transport,
    mail: &IssueMail,
    shared: &Shared,
    conn: &mut Option<Connection>,
    connect_failures: &mut u32,
    job: Job,
    settings: &Settings,
) -> Outcome {
    let deferred = |key: String, reply: String, attempts: u32| Outcome::Deferred {
        key,
        reply,
        next_attempt_at: now_ms()
            + backoff(attempts, settings.retry_base, settings.retry_max).as_millis() as i64,
    };
    let (envelope, message) = match mail.personalise(&Recipient {
        address: &job.address,
        name: job.name.as_deref(),
        message_id: &job.message_id,
    }) {
        Ok(m) => m,
        Err(e) => {
            return Outcome::Failed {
                key: job.key,
                reply: format!("{e:#}"),
            }
        }
    };
    shared.throttle.wait().await;
    if conn.as_ref().is_none_or(|c| !c.is_usable()) {
        *conn = None;
        match transport.connect().await {
            Ok(c) => {
                *connect_failures = 0;
                *conn = Some(c);
            }
            Err(Failure::Permanent(m) | Failure::Fatal(m)) => {
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
    shared.limiter.acquire().await;
    let file_name = format!(
        "{}.eml",
        job.message_id.trim_matches(|ch| ch == '<' || ch == '>')
    );
    match c.send(&envelope, &message, &file_name).await {
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
        // The server refuses the sender, not this recipient: stop the run, fail no one.
        Err(Failure::Fatal(m)) => {
            if let Ok(mut fatal) = shared.fatal.lock() {
                fatal.get_or_insert(m);
            }
            Outcome::Requeue { key: job.key }
        }
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
