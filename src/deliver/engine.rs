//! The engine: one run over one issue's queue, in named steps (see the module docs of
//! [`crate::deliver`]).
//!
//! [`Engine::run`]: recover what a dead run left in flight → open the first connection and
//! check the message's size against the server's → start the preparer and the workers → the
//! commit loop (record the outcomes held and claim their replacements, as late as a worker
//! allows, so one commit carries many) → wind down → settle what is still held.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use indicatif::ProgressBar;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::backoff::{now_ms, ThrottleCharges};
use super::failure;
use super::limits::{Limiter, ThrottleStreak};
use super::prepare::{prepare, Prepared};
use super::transport::{Connection, Transport};
use super::unclear::Unclear;
use super::worker::{self, loud, Attempted, Crew, Done, Shared};
use super::{Report, Settings};
use crate::mail::sign::{SigningPool, Unsigned};
use crate::mail::{IssueMail, Recipient};
use crate::store::{Claim, Job, Outcome, Queue, Store};

/// Longest an outcome waits to be recorded when no worker needs it yet (e.g. all are waiting for
/// a rate limit): the bound on how long an accepted message stays unrecorded.
const MAX_HOLD: Duration = Duration::from_millis(5);

/// How often the limits are shared with the other senders of a shared store.
const SHARE_LIMITS: Duration = Duration::from_secs(2);

/// One run of the delivery engine over one queue: what it sends, through what, and how.
pub struct Engine<'a> {
    store: &'a dyn Store,
    queue: Queue<'a>,
    mail: Arc<IssueMail>,
    transport: Arc<dyn Transport>,
    signing: Option<Arc<SigningPool>>,
    settings: Settings,
    progress: ProgressBar,
}

impl<'a> Engine<'a> {
    /// An engine sending `mail` to the due deliveries of `queue` in `store` through
    /// `transport`, paced as `settings` say; unsigned, without a progress bar.
    pub fn new(
        store: &'a dyn Store,
        queue: Queue<'a>,
        mail: Arc<IssueMail>,
        transport: Arc<dyn Transport>,
        settings: Settings,
    ) -> Engine<'a> {
        Engine {
            store,
            queue,
            mail,
            transport,
            signing: None,
            settings,
            progress: ProgressBar::hidden(),
        }
    }

    /// Signs every message with `pool` (DKIM) before it is sent, at the message's `Date`.
    pub fn signing(mut self, pool: Arc<SigningPool>) -> Engine<'a> {
        self.signing = Some(pool);
        self
    }

    /// Advances `bar` by one per recipient sent or failed.
    pub fn progress(mut self, bar: ProgressBar) -> Engine<'a> {
        self.progress = bar;
        self
    }

    /// Sends every due delivery and records each outcome, until nothing is left that may be
    /// tried in this run.
    ///
    /// Before anything is claimed, one connection is opened, and the message is checked against
    /// the size the server declares: if the server is down or refuses us, or the message is too
    /// large, the run stops ([`Report::stopped`]) and no delivery changes state. When nothing is
    /// queued or deferred, no connection is opened at all. Ctrl-C (SIGINT) or SIGTERM stops
    /// claiming, lets messages in flight finish, and queues the rest again. A run the server
    /// stops (see the module docs) returns `Ok` with [`Report::stopped`] set: the deliveries not
    /// yet sent are queued again, none is marked failed, nobody is suppressed.
    ///
    /// # Errors
    /// The store cannot be read or written, or a signing thread cannot start.
    pub async fn run(self) -> Result<Report> {
        let mut report = Report {
            recovered: self.recover().await?,
            ..Report::default()
        };
        if self.store.counts(self.queue).await?.pending() == 0 {
            // Everything is sent or failed: no need for the server (it may well be down).
            return Ok(report);
        }
        let signing = match &self.signing {
            Some(pool) => pool.clone(),
            None => Arc::new(SigningPool::new(Arc::new(Unsigned), 0, 1)?),
        };
        let first = match self.open_first(&signing).await {
            Ok(first) => first,
            Err(stop) => {
                report.stopped = Some(stop);
                return Ok(report);
            }
        };
        let shared = self.shared().await?;
        let mut crew = self.start_crew(first, signing, shared.clone());
        let looped = Commits::new(&self, &shared)
            .run(&mut crew, &mut report)
            .await;
        crew.wind_down(looped.is_err()).await;
        let mut commits = looped?;
        self.settle_held(&mut commits, &shared, &mut report).await?;
        self.finish(&shared, &mut report);
        Ok(report)
    }

    /// Step 1: rows left in flight by a run that died go back to the queue.
    async fn recover(&self) -> Result<u64> {
        let recovered = self.store.begin_run(self.queue).await?;
        if recovered > 0 {
            info!(
                recovered,
                "queued again the messages left in flight by an interrupted run"
            );
        }
        Ok(recovered)
    }

    /// Step 2: the first connection, and the message's size against the server's `SIZE` (RFC
    /// 1870) for a sample recipient (each message differs by a few dozen bytes). `Err` is why
    /// the run stops before anything is sent.
    async fn open_first(&self, signing: &SigningPool) -> Result<Box<dyn Connection>, String> {
        let first = self.transport.connect().await.map_err(|f| f.to_string())?;
        if let Some(limit) = first.size_limit() {
            let sample = Recipient {
                address: "reader@example.org",
                name: None,
                message_id: "<sample@example.org>",
            };
            if let Ok((_, message)) = self.mail.personalise(&sample) {
                let size = signing
                    .sign(message.clone(), self.mail.date())
                    .await
                    .map_or(message.len(), |signed| signed.len());
                if size as u64 > limit {
                    first.close().await;
                    return Err(failure::over_size(size, limit, &self.transport.describe()));
                }
            }
        }
        info!(to = %self.transport.describe(), concurrency = self.settings.concurrency, "connected");
        Ok(first)
    }

    /// What the workers share, with the messages the last hour already counts for the cap.
    async fn shared(&self) -> Result<Arc<Shared>> {
        let settings = &self.settings;
        let hour_ago = chrono::Utc::now().timestamp() - 3600;
        Ok(Arc::new(Shared {
            streak: ThrottleStreak::default(),
            limiter: Limiter::new(
                settings.rate_per_second,
                settings.hourly_cap,
                settings.hourly_cap_wait,
                &self.store.sent_times_since(hour_ago).await?,
            ),
            stopping: AtomicBool::new(false),
            fatal: Mutex::new(None),
            live: AtomicUsize::new(0),
            throttles_logged: AtomicU64::new(0),
            refusals_logged: AtomicU64::new(0),
            cap_reached_until: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            acks_wanted: AtomicUsize::new(0),
            commit_wanted: Notify::new(),
            settings: settings.clone(),
        }))
    }

    /// Step 3: the preparer (personalise, sign ahead), `concurrency` workers (the first with
    /// the connection already open), and the signal handler.
    fn start_crew(
        &self,
        first: Box<dyn Connection>,
        signing: Arc<SigningPool>,
        shared: Arc<Shared>,
    ) -> Running {
        let concurrency = self.settings.concurrency;
        // Messages personalised (and being signed) ahead of the workers: a few per signing
        // thread keep it busy; unsigned, a couple are enough, and each is tens of kilobytes.
        let ahead = (signing.workers() * 4).max(2);
        // Jobs claimed and not yet recorded: per worker, the message it sends, the outcome of
        // the one before (being committed), and two waiting; and those prepared ahead.
        let capacity = concurrency * 4 + ahead;
        let (jobs, claimed) = mpsc::channel::<Job>(capacity);
        let (prepared_tx, prepared_rx) = mpsc::channel::<Prepared>(ahead);
        let (done_tx, done) = mpsc::unbounded_channel::<Done>();
        let (finished, finished_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let time = self.mail.date();
        tasks.spawn(prepare(
            self.mail.clone(),
            signing,
            time,
            claimed,
            prepared_tx,
        ));
        let prepared = Arc::new(tokio::sync::Mutex::new(prepared_rx));
        let mut first = Some(first);
        for _ in 0..concurrency {
            let crew = Crew {
                transport: self.transport.clone(),
                prepared: prepared.clone(),
                done: done_tx.clone(),
                shared: shared.clone(),
                finished: finished_rx.clone(),
            };
            tasks.spawn(worker::work(crew, first.take()));
        }
        let stop = shared.clone();
        let signals = tokio::spawn(async move {
            wait_for_stop_signal().await;
            warn!(
                "stopping: finishing the messages in flight; run `publish` again to send the rest"
            );
            stop.stopping.store(true, Ordering::SeqCst);
        });
        Running {
            jobs: Some(jobs),
            capacity,
            done,
            finished,
            tasks,
            signals,
        }
    }

    /// Step 5: the refusals still held are the recipients' own if a message got through, else
    /// the run stops and they go back to the queue.
    async fn settle_held(
        &self,
        commits: &mut Commits<'_>,
        shared: &Shared,
        report: &mut Report,
    ) -> Result<()> {
        let (last, stop) = commits.unclear.finish();
        if !last.is_empty() {
            report.lost_leases += self.store.record(self.queue, &last).await?;
            for outcome in &last {
                commits.tally(report, outcome);
            }
        }
        if let Some(reason) = stop {
            shared.fail(reason);
        }
        Ok(())
    }

    /// Step 6: the run's figures.
    fn finish(&self, shared: &Shared, report: &mut Report) {
        report.throttled = shared.streak.hits();
        report.paced = shared.limiter.paced();
        report.cap_reached_until = shared.cap_reached_until.lock().ok().and_then(|c| *c);
        if report.transient + report.failed + report.throttled > 0 {
            info!(
                "this run met {} transient failures, {} permanent failures and {} throttle replies",
                report.transient, report.failed, report.throttled
            );
        }
        if report.paced > 0 {
            info!(
                "`smtp.rate_per_second` = {} held back {} of the {} messages sent",
                self.settings.rate_per_second, report.paced, report.sent
            );
        }
        if report.lost_leases > 0 {
            warn!(
                lost = report.lost_leases,
                "outcomes not recorded: another sender took these deliveries over when their lease expired, and sends them"
            );
        }
        report.stopped = shared.fatal.lock().ok().and_then(|f| f.clone());
    }
}

/// The tasks of a run, and the channels the engine drives them with.
struct Running {
    /// Claimed jobs, to the preparer; closed to wind down.
    jobs: Option<mpsc::Sender<Job>>,
    /// The most jobs claimed and not yet recorded.
    capacity: usize,
    /// The workers' outcomes.
    done: mpsc::UnboundedReceiver<Done>,
    /// Set when the run winds down: workers stop pausing.
    finished: watch::Sender<bool>,
    tasks: JoinSet<()>,
    signals: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Closes the job queue, lets the workers finish what they hold (or, after an error, stops
    /// them), and waits for them. Outcomes not recorded are dropped with their acknowledgements,
    /// so no worker sends another end-of-data.
    async fn wind_down(&mut self, abort: bool) {
        drop(self.jobs.take());
        let _ = self.finished.send(true);
        self.done.close();
        while self.done.try_recv().is_ok() {}
        if abort {
            self.tasks.abort_all();
        }
        while self.tasks.join_next().await.is_some() {}
        self.signals.abort();
    }
}

/// Step 4, the commit loop: outcomes held, and what the run has met.
struct Commits<'e> {
    engine: &'e Engine<'e>,
    shared: &'e Shared,
    /// Claim in batches of at least half the workers, so the queue still holds half a batch per
    /// worker between claims and a claim seldom needs a transaction of its own.
    refill: usize,
    /// Jobs claimed and not yet recorded.
    in_flight: usize,
    /// Outcomes received and not yet recorded, and since when the oldest waits.
    batch: Vec<Done>,
    held_since: Option<Instant>,
    charges: ThrottleCharges,
    unclear: Unclear,
    transient_logged: AtomicU64,
    failed_logged: AtomicU64,
    last_renewal: Instant,
    /// When the limits were last shared; `None` before the first time (at the first claim).
    last_shared: Option<Instant>,
    /// Whether other senders were at work at the last look (their share to give back).
    shared_before: bool,
}

impl<'e> Commits<'e> {
    fn new(engine: &'e Engine<'e>, shared: &'e Shared) -> Commits<'e> {
        Commits {
            engine,
            shared,
            refill: (engine.settings.concurrency / 2).max(1),
            in_flight: 0,
            batch: Vec::new(),
            held_since: None,
            charges: ThrottleCharges::default(),
            unclear: Unclear::default(),
            transient_logged: AtomicU64::new(0),
            failed_logged: AtomicU64::new(0),
            last_renewal: Instant::now(),
            last_shared: None,
            shared_before: false,
        }
    }

    /// Records and claims until nothing is in flight and nothing more is due in this run.
    async fn run(mut self, crew: &mut Running, report: &mut Report) -> Result<Commits<'e>> {
        loop {
            let stopping = self.shared.stopped();
            let queued = self.shared.waiting.load(Ordering::SeqCst);
            let free = crew.capacity - (self.in_flight - self.batch.len());
            let limit = if !stopping && free >= self.refill {
                free
            } else {
                0
            };
            if self.commit_due(stopping, queued) && (!self.batch.is_empty() || limit > 0) {
                let jobs = self.commit(limit, report).await?;
                self.dispatch(crew, jobs).await?;
            }
            self.renew_leases().await?;
            self.share_limits().await?;
            let Some(wait) = self.idle_wait(stopping).await? else {
                break;
            };
            self.collect(crew, wait).await?;
        }
        Ok(self)
    }

    /// Whether to record now. Outcomes are recorded as late as possible, so that one commit
    /// carries many: when a worker is about to send its next end-of-data and waits for its
    /// outcome, when the queue runs low, when nobody is sending, when stopping, or after
    /// [`MAX_HOLD`].
    fn commit_due(&self, stopping: bool, queued: usize) -> bool {
        stopping
            || self.shared.acks_wanted.load(Ordering::SeqCst) > 0
            || queued < self.refill
            || self.in_flight == self.batch.len()
            || self.held_since.is_some_and(|t| t.elapsed() >= MAX_HOLD)
    }

    /// Records the outcomes held and claims up to `limit` replacements in one transaction, then
    /// tells the workers their outcomes are on disk.
    async fn commit(&mut self, limit: usize, report: &mut Report) -> Result<Vec<Job>> {
        self.held_since = None;
        let settled = self.batch.len();
        let mut outcomes = Vec::with_capacity(settled);
        let mut acks = Vec::with_capacity(settled);
        for done in std::mem::take(&mut self.batch) {
            self.settle(done.attempted, &mut outcomes);
            acks.push(done.ack);
        }
        if self.shared.stopped() {
            outcomes.extend(self.unclear.requeue());
        }
        let engine = self.engine;
        let claim = Claim {
            now_ms: now_ms(),
            limit,
            max_run_attempts: engine.settings.max_attempts,
        };
        let recorded = engine
            .store
            .record_and_claim(engine.queue, &outcomes, claim)
            .await?;
        report.lost_leases += recorded.lost;
        self.in_flight -= settled;
        for outcome in &outcomes {
            self.tally(report, outcome);
        }
        for ack in acks {
            let _ = ack.send(());
        }
        Ok(recorded.jobs)
    }

    /// What a worker's attempt adds to the outcomes to record.
    fn settle(&mut self, attempted: Attempted, outcomes: &mut Vec<Outcome>) {
        match attempted {
            Attempted::Outcome(outcome) => {
                if matches!(outcome, Outcome::Sent { .. }) && !self.shared.stopped() {
                    outcomes.extend(self.unclear.accepted());
                }
                outcomes.push(outcome);
            }
            Attempted::Throttled { key, reply, streak } => {
                let settings = &self.engine.settings;
                outcomes.push(self.charges.charge(key, reply, streak, settings));
            }
            Attempted::Unclear {
                key,
                reply,
                kind,
                suppress,
            } => {
                debug!(recipient = %key, reply = %reply, "refused; holding it until the run can tell whose refusal it is");
                if let Some(reason) = self.unclear.hold(key, reply, kind, suppress) {
                    self.shared.fail(reason);
                }
            }
        }
    }

    /// Hands freshly claimed jobs to the preparer.
    async fn dispatch(&mut self, crew: &Running, jobs: Vec<Job>) -> Result<()> {
        self.in_flight += jobs.len();
        let Some(queue) = &crew.jobs else {
            return Ok(());
        };
        self.shared.waiting.fetch_add(jobs.len(), Ordering::SeqCst);
        for job in jobs {
            // Never waits: the channel holds every job in flight.
            if queue.send(job).await.is_err() {
                return Err(anyhow!("every sending worker stopped"));
            }
        }
        Ok(())
    }

    /// Renews this sender's leases every quarter of the store's lease ([`Store::lease`]).
    async fn renew_leases(&mut self) -> Result<()> {
        if self.last_renewal.elapsed() >= self.engine.store.lease() / 4 {
            self.last_renewal = Instant::now();
            let engine = self.engine;
            engine.store.renew_leases(engine.queue).await?;
        }
        Ok(())
    }

    /// With a rate limit or an hourly cap, every [`SHARE_LIMITS`] counts what the other
    /// senders of a shared store ([`Store::senders`] more than one) sent and how many are at
    /// work, so the limits hold across processes.
    async fn share_limits(&mut self) -> Result<()> {
        let limiter = &self.shared.limiter;
        if !limiter.is_limited() || self.last_shared.is_some_and(|t| t.elapsed() < SHARE_LIMITS) {
            return Ok(());
        }
        self.last_shared = Some(Instant::now());
        let store = self.engine.store;
        let senders = store.senders().await?;
        if senders > 1 || self.shared_before {
            let hour_ago = chrono::Utc::now().timestamp() - 3600;
            limiter.share(&store.sent_times_since(hour_ago).await?, senders);
            self.shared_before = senders > 1;
        }
        Ok(())
    }

    /// How long to wait for the next outcome; `None` when the run is over (nothing in flight,
    /// and stopping or nothing due again in this run).
    async fn idle_wait(&self, stopping: bool) -> Result<Option<Duration>> {
        if self.in_flight > 0 {
            return Ok(Some(match self.held_since {
                Some(since) => MAX_HOLD.saturating_sub(since.elapsed()),
                None => Duration::from_millis(200),
            }));
        }
        if stopping {
            return Ok(None);
        }
        let engine = self.engine;
        let next = engine
            .store
            .next_retry_at(engine.queue, engine.settings.max_attempts)
            .await?;
        Ok(next.map(|at| Duration::from_millis((at - now_ms()).clamp(1, 60_000) as u64)))
    }

    /// Waits up to `wait` for outcomes (or a worker wanting a commit), and takes every outcome
    /// that arrived.
    async fn collect(&mut self, crew: &mut Running, wait: Duration) -> Result<()> {
        tokio::select! {
            done = crew.done.recv() => match done {
                Some(done) => self.batch.push(done),
                None => return Err(anyhow!("every sending worker stopped")),
            },
            _ = self.shared.commit_wanted.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        while let Ok(more) = crew.done.try_recv() {
            self.batch.push(more);
        }
        if !self.batch.is_empty() {
            self.held_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// Counts and logs one recorded outcome.
    fn tally(&self, report: &mut Report, outcome: &Outcome) {
        let progress = &self.engine.progress;
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
                if loud(&self.failed_logged, "permanent failures") {
                    warn!(recipient = %key, reply = %reply, "{what}");
                } else {
                    debug!(recipient = %key, reply = %reply, "{what}");
                }
            }
            Outcome::Deferred { key, reply, .. } => {
                report.transient += 1;
                if loud(&self.transient_logged, "transient failures") {
                    info!(recipient = %key, reply = %reply, "transient failure; deferred");
                } else {
                    debug!(recipient = %key, reply = %reply, "transient failure; deferred");
                }
            }
            Outcome::Throttled { .. } | Outcome::Requeue { .. } => {}
        }
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
