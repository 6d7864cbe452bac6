//! A worker: one connection at a time, one message at a time, each outcome committed before the
//! end-of-data of the next message (whose transaction is opened meanwhile).
//!
//! An attempt, in steps: take the next [`Prepared`] message and its signature → wait out this
//! connection's pause → connect if needed → take a slot of the rate limits → open the mail
//! transaction → wait until the previous outcome is recorded → end the data → classify.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, info, warn};

use super::backoff::{backoff, now_ms};
use super::limits::{ConnectionBackoff, Limiter, ThrottleStreak};
use super::prepare::Prepared;
use super::transport::{Connection, Failure, Outgoing, Transport};
use super::Settings;
use crate::store::Outcome;

/// How many events of one kind (transient failure, permanent failure, throttle reply, refused
/// connection) a run logs as they happen; the rest go to the debug level, and the summary at the
/// end of the run counts them all. Keeps a send to thousands of greylisting recipients readable.
pub(super) const LOUD_EVENTS: u64 = 10;

/// Whether the `n`-th event of a kind (1-based) is still logged as it happens; the first one past
/// the limit says where the rest go.
pub(super) fn loud(counter: &AtomicU64, kind: &str) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if n == LOUD_EVENTS + 1 {
        info!("more {kind} follow; they are logged at debug level and counted at the end");
    }
    n <= LOUD_EVENTS
}

/// What the workers and the engine share.
pub(super) struct Shared {
    /// Throttle replies since the server last accepted a message, over all connections.
    pub streak: ThrottleStreak,
    pub limiter: Limiter,
    /// Set by SIGINT/SIGTERM or a cap too far away: claim nothing more.
    pub stopping: AtomicBool,
    /// Why the run must stop (the server refuses us); claim nothing more.
    pub fatal: Mutex<Option<String>>,
    /// Workers holding an open connection.
    pub live: AtomicUsize,
    /// Throttle replies and refused connections logged so far (see [`LOUD_EVENTS`]).
    pub throttles_logged: AtomicU64,
    pub refusals_logged: AtomicU64,
    /// When the hourly cap's next free slot was too far away: the run stops.
    pub cap_reached_until: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Jobs claimed and not yet taken by a worker (with the preparer or ready for a worker).
    pub waiting: AtomicUsize,
    /// Workers waiting for their previous outcome to be recorded.
    pub acks_wanted: AtomicUsize,
    /// Wakes the engine when a worker starts waiting for its outcome to be recorded.
    pub commit_wanted: Notify,
    pub settings: Settings,
}

impl Shared {
    /// Whether the run is stopping (a signal, a cap, or the server refusing us).
    pub fn stopped(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
            || self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// Stops the run with `reason` (the first reason wins).
    pub fn fail(&self, reason: String) {
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert(reason);
        }
    }
}

/// How a worker's attempt ended.
pub(super) enum Attempted {
    /// Settled by the worker.
    Outcome(Outcome),
    /// The server throttled us; the engine decides what it costs.
    Throttled {
        key: String,
        reply: String,
        /// Throttle replies since the server last accepted a message.
        streak: u64,
    },
    /// A permanent refusal whose owner is unclear; the engine holds it.
    Unclear {
        key: String,
        reply: String,
        kind: String,
        suppress: bool,
    },
}

/// A worker's outcome on its way to the store.
pub(super) struct Done {
    pub attempted: Attempted,
    /// Answered once the outcome is committed.
    pub ack: oneshot::Sender<()>,
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

/// What a worker is given.
pub(super) struct Crew {
    pub transport: Arc<dyn Transport>,
    pub prepared: Arc<tokio::sync::Mutex<mpsc::Receiver<Prepared>>>,
    pub done: mpsc::UnboundedSender<Done>,
    pub shared: Arc<Shared>,
    pub finished: watch::Receiver<bool>,
}

/// One worker (see the module docs), starting with the connection `first` if given.
pub(super) async fn work(crew: Crew, first: Option<Box<dyn Connection>>) {
    let mut worker = Worker {
        slot: Slot::new(&crew.shared.settings),
        committing: None,
        crew,
    };
    if let Some(c) = first {
        worker.slot.hold(c, &worker.crew.shared);
    }
    loop {
        let prepared = { worker.crew.prepared.lock().await.recv().await };
        let Some(prepared) = prepared else { break };
        worker.crew.shared.waiting.fetch_sub(1, Ordering::SeqCst);
        let (attempted, next) = worker.attempt(prepared).await;
        if !worker.hand_over(attempted).await {
            break;
        }
        match next {
            Next::Go => {}
            Next::Pause(pause) => {
                let mut finished = worker.crew.finished.clone();
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = finished.wait_for(|f| *f) => {}
                }
            }
            Next::Retire => break,
        }
    }
    if let Some(c) = worker.slot.drop_conn(&worker.crew.shared) {
        c.close().await;
    }
}

struct Worker {
    crew: Crew,
    slot: Slot,
    /// The commit of this worker's previous outcome, while it is under way.
    committing: Option<oneshot::Receiver<()>>,
}

/// A worker's connection, how many times in a row the server refused a new one, and the pause
/// the server asked of it.
struct Slot {
    conn: Option<Box<dyn Connection>>,
    refused: u32,
    backoff: ConnectionBackoff,
}

impl Slot {
    fn new(settings: &Settings) -> Slot {
        Slot {
            conn: None,
            refused: 0,
            backoff: ConnectionBackoff::new(settings.retry_max),
        }
    }

    fn hold(&mut self, c: Box<dyn Connection>, shared: &Shared) {
        self.conn = Some(c);
        self.refused = 0;
        shared.live.fetch_add(1, Ordering::SeqCst);
    }

    fn drop_conn(&mut self, shared: &Shared) -> Option<Box<dyn Connection>> {
        let c = self.conn.take();
        if c.is_some() {
            shared.live.fetch_sub(1, Ordering::SeqCst);
        }
        c
    }
}

fn requeue(key: String, next: Next) -> (Attempted, Next) {
    (Attempted::Outcome(Outcome::Requeue { key }), next)
}

impl Worker {
    /// Hands the outcome to the engine once the previous one is recorded (an attempt that
    /// stopped before its end-of-data has not waited yet), so a worker has one outcome at most
    /// in the engine's hands. False when the engine is gone.
    async fn hand_over(&mut self, attempted: Attempted) -> bool {
        if !self.committed().await {
            return false;
        }
        let (ack, acked) = oneshot::channel();
        if self.crew.done.send(Done { attempted, ack }).is_err() {
            return false;
        }
        self.committing = Some(acked);
        true
    }

    /// Waits for the group commit of the previous outcome, if it is not on disk yet, and tells
    /// the engine someone is waiting. False when the engine is gone (the run is ending with an
    /// error).
    async fn committed(&mut self) -> bool {
        let Some(mut ack) = self.committing.take() else {
            return true;
        };
        let shared = &self.crew.shared;
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

    /// One attempt to deliver a prepared message (see the module docs).
    async fn attempt(&mut self, prepared: Prepared) -> (Attempted, Next) {
        let Prepared { job, message } = prepared;
        if self.crew.shared.stopped() {
            return requeue(job.key, Next::Go);
        }
        let (envelope, signed) = match message {
            Ok(m) => m,
            Err(reason) => {
                let failed = Outcome::Failed {
                    key: job.key,
                    reply: reason,
                    suppress: false,
                };
                return (Attempted::Outcome(failed), Next::Go);
            }
        };
        let bytes = match signed.await {
            Ok(bytes) => bytes,
            Err(e) => {
                // Our fault, never the recipient's: every other message would fail alike.
                self.crew.shared.fail(format!("{e}; nothing more is sent"));
                return requeue(job.key, Next::Go);
            }
        };
        if let Err(next) = self.connect().await {
            return requeue(job.key, next);
        }
        if !self.take_slot().await {
            return requeue(job.key, Next::Go);
        }
        let message = Outgoing {
            envelope: &envelope,
            bytes: &bytes,
            message_id: &job.message_id,
        };
        let Some(result) = self.send(&message).await else {
            return requeue(job.key, Next::Go);
        };
        (self.classify(job.key, job.attempts, result), Next::Go)
    }

    /// Waits out this connection's pause and opens a connection if there is no usable one.
    /// `Err` says what to do instead of sending: the recipient was not tried.
    async fn connect(&mut self) -> Result<(), Next> {
        self.slot.backoff.wait().await;
        let shared = self.crew.shared.clone();
        if self.slot.conn.as_ref().is_some_and(|c| c.is_usable()) {
            return Ok(());
        }
        self.slot.drop_conn(&shared);
        match self.crew.transport.connect().await {
            Ok(c) => {
                if self.slot.refused > 0 {
                    info!(tries = self.slot.refused + 1, "connected again");
                } else {
                    debug!("opened a connection");
                }
                self.slot.hold(c, &shared);
                Ok(())
            }
            Err(Failure::Fatal(m)) => {
                shared.fail(m);
                Err(Next::Go)
            }
            Err(refused) => Err(self.refused(refused.to_string())),
        }
    }

    /// The server refused a new connection: back off, retire this worker, or stop the run.
    fn refused(&mut self, reply: String) -> Next {
        let shared = &self.crew.shared;
        let settings = &shared.settings;
        self.slot.refused += 1;
        let tries = self.slot.refused;
        if tries >= settings.max_attempts {
            let live = shared.live.load(Ordering::SeqCst);
            if live > 0 {
                warn!(reply = %reply, "the server refused this connection {tries} times in a row; going on with {live}");
                return Next::Retire;
            }
            shared.fail(format!("{reply} ({tries} tries in a row)"));
            return Next::Go;
        }
        let pause = backoff(tries - 1, settings.retry_base, settings.retry_max);
        let pause_ms = pause.as_millis() as u64;
        if loud(&shared.refusals_logged, "refused connections") {
            warn!(reply = %reply, pause_ms, "cannot connect; trying again");
        } else {
            debug!(reply = %reply, pause_ms, "cannot connect; trying again");
        }
        Next::Pause(pause)
    }

    /// Takes a slot of the rate limits; false when the hourly cap is too far away (the run
    /// stops rather than hold the connections open: this message and the rest stay queued).
    async fn take_slot(&mut self) -> bool {
        let shared = &self.crew.shared;
        match shared.limiter.acquire().await {
            Ok(()) => true,
            Err(reached) => {
                let until = chrono::Utc::now() + reached.wait;
                if let Ok(mut cap) = shared.cap_reached_until.lock() {
                    cap.get_or_insert(until);
                }
                shared.stopping.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Opens the transaction, waits until the previous outcome is recorded, then ends the data.
    /// `None` when the run ended meanwhile (the transaction is dropped, nothing delivered).
    async fn send(&mut self, message: &Outgoing<'_>) -> Option<Result<String, Failure>> {
        let shared = self.crew.shared.clone();
        let mut conn = self.slot.conn.take()?;
        let result = match conn.start(message).await {
            Ok(()) if self.committed().await => conn.finish(message).await.map(|s| s.reply),
            Ok(()) => {
                conn.abort().await;
                shared.live.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            Err(failure) => Err(failure),
        };
        if conn.is_usable() {
            self.slot.conn = Some(conn);
        } else {
            shared.live.fetch_sub(1, Ordering::SeqCst);
            debug!("the connection is closed; the next message opens another");
        }
        Some(result)
    }

    /// What the result of sending to `key` (with `attempts` before) means for the store.
    fn classify(
        &mut self,
        key: String,
        attempts: u32,
        result: Result<String, Failure>,
    ) -> Attempted {
        let shared = &self.crew.shared;
        let settings = &shared.settings;
        let outcome = match result {
            Ok(reply) => {
                shared.streak.success();
                self.slot.backoff.success();
                Outcome::Sent { key, reply }
            }
            Err(Failure::Throttled(reply)) => {
                let streak = shared.streak.hit();
                let pause_ms = self.slot.backoff.hit().as_millis() as u64;
                if loud(&shared.throttles_logged, "throttle replies") {
                    warn!(reply = %reply, pause_ms, "the server is throttling this connection; it slows down");
                } else {
                    debug!(reply = %reply, pause_ms, "the server is throttling this connection; it slows down");
                }
                return Attempted::Throttled { key, reply, streak };
            }
            Err(Failure::Unclear {
                reply,
                kind,
                suppress,
            }) => {
                return Attempted::Unclear {
                    key,
                    reply,
                    kind,
                    suppress,
                }
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
                    + backoff(attempts, settings.retry_base, settings.retry_max).as_millis() as i64,
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
        Attempted::Outcome(outcome)
    }
}
