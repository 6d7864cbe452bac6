//! The ledger: a SQLite file recording, for every (issue, recipient), where its message stands.
//!
//! The last stage of the pipeline and the source of truth for "who got what". Each delivery moves
//! through durable states:
//!
//! ```text
//! queued ──claim──▶ sending ──250──▶ sent
//!                      │  ├──4xx / timeout / dropped──▶ deferred ──claim──▶ sending …
//!                      │  ├──throttled──▶ deferred (no attempt counted)
//!                      │  └──5xx──▶ failed (+ suppression list)
//!                      └──not tried (stopping, no connection)──▶ queued
//! ```
//!
//! A row is `sending` only while its message may be on the wire; after a crash, `publish` turns
//! `sending` rows back into `queued` and sends them again with the same Message-ID, so the only
//! possible duplicates are the messages in flight at the crash. Every transition is committed
//! (WAL, `synchronous=NORMAL`: durable across a killed process) before anything depends on it.

mod subscribers;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

pub use subscribers::{LedgerSubscriptions, WebSubscriber};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting to be sent.
    Queued,
    /// Claimed by a sender: the message may be on the wire.
    Sending,
    /// The server answered 250 to the message.
    Sent,
    /// A transient failure (4xx, timeout, dropped connection); retried after `next_attempt_at`.
    Deferred,
    /// A permanent failure (5xx); the address is on the suppression list.
    Failed,
}

impl State {
    /// The name stored in the database and printed by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "queued" => State::Queued,
            "sending" => State::Sending,
            "sent" => State::Sent,
            "deferred" => State::Deferred,
            "failed" => State::Failed,
            _ => return None,
        })
    }
}

/// A recipient to add to an issue's queue.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// Lowercased address: the key.
    pub key: &'a str,
    /// The address as written, for the envelope.
    pub address: &'a str,
    /// Display name, if known.
    pub name: Option<&'a str>,
    /// The `Message-ID` this recipient's message will always carry, with angle brackets.
    pub message_id: String,
}

/// What [`Ledger::enqueue`] did with the recipients it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// New rows queued.
    pub queued: u64,
    /// Recipients that already had a row for this issue (sent before, or queued by an earlier run).
    pub existing: u64,
    /// Recipients on the suppression list.
    pub suppressed: u64,
}

/// A claimed delivery, handed to a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Lowercased address: the key.
    pub key: String,
    /// The address as written.
    pub address: String,
    /// Display name.
    pub name: Option<String>,
    /// The message's `Message-ID`, with angle brackets.
    pub message_id: String,
    /// Attempts before this one, over all runs.
    pub attempts: u32,
}

/// How one attempt ended, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 250 to the message.
    Sent {
        /// The recipient key.
        key: String,
        /// The server's reply.
        reply: String,
    },
    /// A transient failure; try again at `next_attempt_at` (Unix milliseconds).
    Deferred {
        /// The recipient key.
        key: String,
        /// The server's reply or the local error.
        reply: String,
        /// When the next attempt may start, Unix milliseconds, UTC.
        next_attempt_at: i64,
    },
    /// The server throttled us (421, 454, "too many"): try again at `next_attempt_at` (Unix
    /// milliseconds), and count no attempt — the recipient was not refused.
    Throttled {
        /// The recipient key.
        key: String,
        /// The server's reply.
        reply: String,
        /// When the next attempt may start, Unix milliseconds, UTC.
        next_attempt_at: i64,
    },
    /// A permanent failure: the address goes on the suppression list.
    Failed {
        /// The recipient key.
        key: String,
        /// The server's reply.
        reply: String,
    },
    /// Not attempted after all (the run stopped, no connection could be opened): back to the
    /// queue, no attempt counted.
    Requeue {
        /// The recipient key.
        key: String,
    },
}

/// Per-state counts for one issue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows `queued`.
    pub queued: u64,
    /// Rows `sending`.
    pub sending: u64,
    /// Rows `sent`.
    pub sent: u64,
    /// Rows `deferred`.
    pub deferred: u64,
    /// Rows `failed`.
    pub failed: u64,
    /// Attempts made in total.
    pub attempts: u64,
}

/// One delivery as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// The issue id (permalink).
    pub issue: String,
    /// The address as written.
    pub recipient: String,
    /// Its state.
    pub state: State,
    /// Attempts made.
    pub attempts: u32,
    /// The last server reply or local error, if any.
    pub last_reply: Option<String>,
    /// Unix seconds of the last change, UTC.
    pub updated_at: i64,
    /// Unix milliseconds before which no retry starts, for deferred rows.
    pub next_attempt_at: Option<i64>,
}

/// An address on the suppression list.
#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    /// The lowercased address.
    pub address: String,
    /// The permanent reply that put it there, or why it was added.
    pub reason: String,
    /// The issue whose send failed, if any.
    pub issue: Option<String>,
    /// Unix seconds, UTC.
    pub suppressed_at: i64,
}

/// An open ledger. One process at a time sends through a ledger: see [`Ledger::lock`].
pub struct Ledger {
    conn: Connection,
}

/// An exclusive lock on a ledger, held by a running `publish` until dropped.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

impl LedgerLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A thread checkpointing a ledger's WAL while a publish writes; stops when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often the background checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    issue TEXT NOT NULL,
    recipient TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','sending','sent','deferred','failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_reply TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (issue, recipient)
) WITHOUT ROWID;
-- Partial indexes: a row is in at most one, so a state change touches at most two of them, and
-- the sent rows (most of a ledger) never slow a claim. They replace two full indexes of
-- earlier ledgers.
DROP INDEX IF EXISTS deliveries_pending;
DROP INDEX IF EXISTS deliveries_sent_at;
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (issue, recipient) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS deliveries_deferred ON deliveries (issue, next_attempt_at)
    WHERE state = 'deferred';
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries (updated_at) WHERE state = 'sent';
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    issue TEXT,
    suppressed_at INTEGER NOT NULL
);
";

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, in WAL mode.
    ///
    /// # Errors
    /// The file cannot be opened or is not a feedpost ledger.
    pub fn open(path: &Path) -> Result<Ledger> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create the folder `{}`", parent.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("failed to open the ledger `{}`", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Plans must not depend on bound values: otherwise every rebinding of a statement that
        // can use a partial index forces SQLite to prepare it again (4% of a send's CPU time).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)
            .and_then(|()| conn.execute_batch(subscribers::SCHEMA))
            .with_context(|| format!("`{}` is not a feedpost ledger", path.display()))?;
        Ok(Ledger { conn })
    }

    /// Moves WAL checkpoints off this connection, for the rest of its life, onto a thread with a
    /// connection of its own that checkpoints (`PASSIVE`) every 250 ms until the returned guard
    /// drops. A checkpoint copies pages into the database file and syncs it; run by SQLite after
    /// the commit that fills the WAL, it stalls that commit, and with it every sender waiting
    /// for its outcome to be recorded. Durability is unchanged: commits are in the WAL either way.
    ///
    /// # Errors
    /// The second connection cannot be opened, or the setting cannot be changed.
    pub fn checkpoint_in_background(&self) -> Result<Checkpointer> {
        let path = self
            .conn
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .context("an in-memory ledger has no WAL to checkpoint")?;
        let other = Connection::open(&path)
            .with_context(|| format!("failed to open the ledger `{}`", path.display()))?;
        other.busy_timeout(std::time::Duration::from_secs(10))?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    // A failed checkpoint loses nothing; the next one copies the same pages.
                    let _ = other.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .context("failed to start the ledger checkpoint thread")?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Takes the exclusive lock that keeps two `publish` runs from sending through the same ledger
    /// at once. The lock is `<ledger>.lock`, released when the guard drops or the process dies.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be created.
    pub fn lock(path: &Path) -> Result<LedgerLock> {
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create the folder `{}`", parent.display()))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("failed to create the lock file `{}`", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(LedgerLock { _file: file, path: lock_path }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another feedpost is already sending with the ledger `{}`; wait for it to finish (or stop it) and run again",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to lock `{}`", lock_path.display()))
            }
        }
    }

    /// The secret that signs unsubscribe tokens: 32 random bytes made on first use and kept in the
    /// ledger, so tokens stay valid across runs.
    ///
    /// # Errors
    /// The ledger cannot be read or written.
    pub fn secret(&mut self) -> Result<Vec<u8>> {
        let existing: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'unsubscribe_secret'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(s) = existing {
            return Ok(s);
        }
        let secret: [u8; 32] = rand::random();
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('unsubscribe_secret', ?1)",
            params![secret.to_vec()],
        )?;
        self.secret()
    }

    /// Adds recipients to `issue`'s queue in one transaction. Recipients that already have a row
    /// for the issue keep it (that is what makes a second `publish` send nothing); suppressed
    /// addresses are skipped.
    ///
    /// # Errors
    /// A database error; nothing is added then.
    pub fn enqueue<'a>(
        &mut self,
        issue: &str,
        recipients: impl IntoIterator<Item = NewDelivery<'a>>,
    ) -> Result<Enqueued> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counts = Enqueued::default();
        {
            let mut suppressed =
                tx.prepare_cached("SELECT 1 FROM suppressions WHERE address = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO deliveries (issue, recipient, address, name, message_id, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
            )?;
            let now = now_unix();
            for r in recipients {
                if suppressed.exists(params![r.key])? {
                    counts.suppressed += 1;
                } else if insert.execute(params![
                    issue,
                    r.key,
                    r.address,
                    r.name,
                    r.message_id,
                    now
                ])? == 1
                {
                    counts.queued += 1;
                } else {
                    counts.existing += 1;
                }
            }
        }
        tx.commit()?;
        Ok(counts)
    }

    /// Starts a run for `issue`: rows left `sending` by a crashed run go back to `queued` (their
    /// message may or may not have arrived; it is sent again with the same Message-ID), and the
    /// per-run attempt counters are reset. Returns how many rows were recovered.
    ///
    /// # Errors
    /// A database error.
    pub fn begin_run(&mut self, issue: &str) -> Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recovered = tx.execute(
            "UPDATE deliveries SET state = 'queued', updated_at = ?2 WHERE issue = ?1 AND state = 'sending'",
            params![issue, now_unix()],
        )?;
        tx.execute(
            "UPDATE deliveries SET run_attempts = 0 WHERE issue = ?1 AND run_attempts != 0",
            params![issue],
        )?;
        tx.commit()?;
        Ok(recovered as u64)
    }

    /// Claims up to `limit` deliveries that are due at `now` (Unix milliseconds): `queued`, or
    /// `deferred` with `next_attempt_at <= now` and fewer than `max_run_attempts` attempts this run.
    /// They become `sending` in the same transaction.
    ///
    /// # Errors
    /// A database error; nothing is claimed then.
    pub fn claim(
        &mut self,
        issue: &str,
        now: i64,
        limit: usize,
        max_run_attempts: u32,
    ) -> Result<Vec<Job>> {
        self.record_and_claim(issue, &[], now, limit, max_run_attempts)
    }

    /// When the next `deferred` delivery that may still be tried this run becomes due, in Unix
    /// milliseconds; `None` when there is none.
    ///
    /// # Errors
    /// A database error.
    pub fn next_retry_at(&self, issue: &str, max_run_attempts: u32) -> Result<Option<i64>> {
        Ok(self.conn.query_row(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE issue = ?1 AND state = 'deferred' AND run_attempts < ?2",
            params![issue, max_run_attempts],
            |r| r.get(0),
        )?)
    }

    /// Records outcomes of attempts in one transaction. A permanent failure also puts the address
    /// on the suppression list.
    ///
    /// # Errors
    /// A database error; nothing is recorded then.
    pub fn record(&mut self, issue: &str, outcomes: &[Outcome]) -> Result<()> {
        self.record_and_claim(issue, outcomes, 0, 0, 0).map(|_| ())
    }

    /// [`Ledger::record`] then [`Ledger::claim`] in one transaction: what the delivery engine does
    /// after each batch of outcomes, for the price of one commit. With `limit` 0 nothing is
    /// claimed.
    ///
    /// # Errors
    /// A database error; nothing is recorded or claimed then.
    pub fn record_and_claim(
        &mut self,
        issue: &str,
        outcomes: &[Outcome],
        now: i64,
        limit: usize,
        max_run_attempts: u32,
    ) -> Result<Vec<Job>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        record_in(&tx, issue, outcomes)?;
        let jobs = if limit > 0 {
            claim_in(&tx, issue, now, limit, max_run_attempts)?
        } else {
            Vec::new()
        };
        tx.commit()?;
        Ok(jobs)
    }

    /// The state of `key`'s delivery of `issue`, if it has one.
    ///
    /// # Errors
    /// A database error.
    pub fn state_of(&self, issue: &str, key: &str) -> Result<Option<State>> {
        let state: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM deliveries WHERE issue = ?1 AND recipient = ?2",
                params![issue, key],
                |r| r.get(0),
            )
            .optional()?;
        Ok(state.as_deref().and_then(State::parse))
    }

    /// Per-state counts for `issue`.
    ///
    /// # Errors
    /// A database error.
    pub fn counts(&self, issue: &str) -> Result<Counts> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, COUNT(*), SUM(attempts) FROM deliveries WHERE issue = ?1 GROUP BY state",
        )?;
        let mut counts = Counts::default();
        let rows = stmt.query_map(params![issue], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        for row in rows {
            let (state, n, attempts) = row?;
            let n = n as u64;
            counts.attempts += attempts.unwrap_or(0) as u64;
            match State::parse(&state) {
                Some(State::Queued) => counts.queued = n,
                Some(State::Sending) => counts.sending = n,
                Some(State::Sent) => counts.sent = n,
                Some(State::Deferred) => counts.deferred = n,
                Some(State::Failed) => counts.failed = n,
                None => {}
            }
        }
        Ok(counts)
    }

    /// The issues that have deliveries, with the time of their last change (Unix seconds), newest
    /// first.
    ///
    /// # Errors
    /// A database error.
    pub fn issues(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT issue, MAX(updated_at) AS t FROM deliveries GROUP BY issue ORDER BY t DESC, issue",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deliveries of `issue` in the given states, oldest change first, at most `limit`.
    ///
    /// # Errors
    /// A database error.
    pub fn rows(&self, issue: &str, states: &[State], limit: usize) -> Result<Vec<DeliveryRow>> {
        let mut out = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT address, state, attempts, last_reply, updated_at, next_attempt_at FROM deliveries
             WHERE issue = ?1 AND state = ?2 ORDER BY updated_at, recipient LIMIT ?3",
        )?;
        for state in states {
            let rows = stmt.query_map(params![issue, state.as_str(), limit as i64], |r| {
                Ok(DeliveryRow {
                    issue: issue.to_string(),
                    recipient: r.get(0)?,
                    state: State::parse(&r.get::<_, String>(1)?).unwrap_or(State::Queued),
                    attempts: r.get(2)?,
                    last_reply: r.get(3)?,
                    updated_at: r.get(4)?,
                    next_attempt_at: r.get(5)?,
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// How many messages were recorded sent (over all issues) since `since` (Unix seconds).
    ///
    /// # Errors
    /// A database error.
    pub fn sent_since(&self, since: i64) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND updated_at >= ?1",
            params![since],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// The times (Unix seconds) of the messages recorded sent since `since`, oldest first: what an
    /// hourly cap has already used.
    ///
    /// # Errors
    /// A database error.
    pub fn sent_times_since(&self, since: i64) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT updated_at FROM deliveries WHERE state = 'sent' AND updated_at >= ?1 ORDER BY updated_at",
        )?;
        let rows = stmt.query_map(params![since], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The suppression list, by address.
    ///
    /// # Errors
    /// A database error.
    pub fn suppressions(&self) -> Result<Vec<Suppression>> {
        let mut stmt = self.conn.prepare(
            "SELECT address, reason, issue, suppressed_at FROM suppressions ORDER BY address",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Suppression {
                address: r.get(0)?,
                reason: r.get(1)?,
                issue: r.get(2)?,
                suppressed_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds `address` (lowercased) to the suppression list by hand.
    ///
    /// # Errors
    /// A database error.
    pub fn suppress(&mut self, address: &str, reason: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO suppressions (address, reason, issue, suppressed_at) VALUES (?1, ?2, NULL, ?3)",
            params![address.to_lowercase(), reason, now_unix()],
        )?;
        Ok(())
    }

    /// Lifts the suppression of `address` (compared lowercased); returns whether it was listed.
    /// Its failed deliveries are queued again, so the next `publish` of those issues retries them.
    ///
    /// # Errors
    /// A database error.
    pub fn unsuppress(&mut self, address: &str) -> Result<bool> {
        let key = address.to_lowercase();
        let tx = self.conn.transaction()?;
        let removed = tx.execute("DELETE FROM suppressions WHERE address = ?1", params![key])?;
        tx.execute(
            "UPDATE deliveries SET state = 'queued', run_attempts = 0, updated_at = ?2 WHERE recipient = ?1 AND state = 'failed'",
            params![key, now_unix()],
        )?;
        tx.commit()?;
        Ok(removed > 0)
    }
}

/// The claim of [`Ledger::claim`], inside the caller's transaction.
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    issue: &str,
    now: i64,
    limit: usize,
    max_run_attempts: u32,
) -> Result<Vec<Job>> {
    let to_job = |r: &rusqlite::Row<'_>| {
        Ok(Job {
            key: r.get(0)?,
            address: r.get(1)?,
            name: r.get(2)?,
            message_id: r.get(3)?,
            attempts: r.get(4)?,
        })
    };
    // Queued rows first, then due deferred ones. Each query walks its partial index in order,
    // so a claim reads only the rows it returns, however many are already sent. (Without
    // statistics the planner would walk the primary key and skip the sent rows.)
    let mut queued = tx.prepare_cached(
        "SELECT recipient, address, name, message_id, attempts FROM deliveries
         INDEXED BY deliveries_queued
         WHERE issue = ?1 AND state = 'queued'
         ORDER BY recipient LIMIT ?2",
    )?;
    let mut jobs = queued
        .query_map(params![issue, limit as i64], to_job)?
        .collect::<rusqlite::Result<Vec<Job>>>()?;
    if jobs.len() < limit {
        let mut due = tx.prepare_cached(
            "SELECT recipient, address, name, message_id, attempts FROM deliveries
             INDEXED BY deliveries_deferred
             WHERE issue = ?1 AND state = 'deferred' AND next_attempt_at <= ?2
                AND run_attempts < ?3
             ORDER BY next_attempt_at, recipient LIMIT ?4",
        )?;
        let more = due.query_map(
            params![issue, now, max_run_attempts, (limit - jobs.len()) as i64],
            to_job,
        )?;
        for job in more {
            jobs.push(job?);
        }
    }
    let mut mark = tx.prepare_cached(
        "UPDATE deliveries SET state = 'sending', updated_at = ?3 WHERE issue = ?1 AND recipient = ?2",
    )?;
    let now = now_unix();
    for job in &jobs {
        mark.execute(params![issue, job.key, now])?;
    }
    Ok(jobs)
}

/// The recording of [`Ledger::record`], inside the caller's transaction.
fn record_in(tx: &rusqlite::Transaction<'_>, issue: &str, outcomes: &[Outcome]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = now_unix();
    let mut sent = tx.prepare_cached(
        "UPDATE deliveries SET state = 'sent', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?3, next_attempt_at = NULL, updated_at = ?4 WHERE issue = ?1 AND recipient = ?2",
    )?;
    let mut deferred = tx.prepare_cached(
        "UPDATE deliveries SET state = 'deferred', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?3, next_attempt_at = ?4, updated_at = ?5 WHERE issue = ?1 AND recipient = ?2",
    )?;
    let mut throttled = tx.prepare_cached(
        "UPDATE deliveries SET state = 'deferred', last_reply = ?3, next_attempt_at = ?4, updated_at = ?5
         WHERE issue = ?1 AND recipient = ?2",
    )?;
    let mut failed = tx.prepare_cached(
        "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?3, next_attempt_at = NULL, updated_at = ?4 WHERE issue = ?1 AND recipient = ?2",
    )?;
    let mut suppress = tx.prepare_cached(
        "INSERT OR REPLACE INTO suppressions (address, reason, issue, suppressed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut requeue = tx.prepare_cached(
        "UPDATE deliveries SET state = 'queued', updated_at = ?3 WHERE issue = ?1 AND recipient = ?2",
    )?;
    for outcome in outcomes {
        match outcome {
            Outcome::Sent { key, reply } => {
                sent.execute(params![issue, key, reply, now])?;
            }
            Outcome::Deferred {
                key,
                reply,
                next_attempt_at,
            } => {
                deferred.execute(params![issue, key, reply, next_attempt_at, now])?;
            }
            Outcome::Throttled {
                key,
                reply,
                next_attempt_at,
            } => {
                throttled.execute(params![issue, key, reply, next_attempt_at, now])?;
            }
            Outcome::Failed { key, reply } => {
                failed.execute(params![issue, key, reply, now])?;
                suppress.execute(params![key, reply, issue, now])?;
            }
            Outcome::Requeue { key } => {
                requeue.execute(params![issue, key, now])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        (dir, l)
    }

    fn add(l: &mut Ledger, keys: &[&str]) -> Enqueued {
        l.enqueue(
            "i",
            keys.iter().map(|k| NewDelivery {
                key: k,
                address: k,
                name: None,
                message_id: format!("<{k}>"),
            }),
        )
        .unwrap()
    }

    #[test]
    fn enqueue_is_idempotent_and_skips_suppressed() {
        let (_d, mut l) = ledger();
        l.suppress("C@x.org", "manual").unwrap();
        assert_eq!(
            add(&mut l, &["a@x.org", "b@x.org", "c@x.org"]),
            Enqueued {
                queued: 2,
                existing: 0,
                suppressed: 1
            }
        );
        assert_eq!(
            add(&mut l, &["a@x.org", "d@x.org"]),
            Enqueued {
                queued: 1,
                existing: 1,
                suppressed: 0
            }
        );
        assert_eq!(l.counts("i").unwrap().queued, 3);
    }

    #[test]
    fn state_machine_round_trip() {
        let (_d, mut l) = ledger();
        add(
            &mut l,
            &["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"],
        );
        let jobs = l.claim("i", 0, 10, 3).unwrap();
        assert_eq!(jobs.len(), 5);
        assert_eq!(l.counts("i").unwrap().sending, 5);
        assert!(
            l.claim("i", 0, 10, 3).unwrap().is_empty(),
            "claimed rows are not claimed twice"
        );
        l.record(
            "i",
            &[
                Outcome::Sent {
                    key: "a@x.org".into(),
                    reply: "250 ok".into(),
                },
                Outcome::Deferred {
                    key: "b@x.org".into(),
                    reply: "451 later".into(),
                    next_attempt_at: 100,
                },
                Outcome::Failed {
                    key: "c@x.org".into(),
                    reply: "550 unknown".into(),
                },
                Outcome::Requeue {
                    key: "d@x.org".into(),
                },
                Outcome::Throttled {
                    key: "e@x.org".into(),
                    reply: "454 slow down".into(),
                    next_attempt_at: 200,
                },
            ],
        )
        .unwrap();
        let c = l.counts("i").unwrap();
        assert_eq!(
            (c.sent, c.deferred, c.failed, c.queued, c.attempts),
            (1, 2, 1, 1, 3),
            "a throttle defers without counting an attempt"
        );
        assert_eq!(l.suppressions().unwrap()[0].address, "c@x.org");
        // The deferred row is not due before its time, and only while run attempts remain.
        let due: Vec<String> = l
            .claim("i", 99, 10, 3)
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(due, ["d@x.org"]);
        assert_eq!(l.next_retry_at("i", 3).unwrap(), Some(100));
        assert_eq!(
            l.next_retry_at("i", 1).unwrap(),
            Some(200),
            "b has used its one attempt; e has used none"
        );
        assert_eq!(l.claim("i", 100, 10, 3).unwrap()[0].key, "b@x.org");
        let e = l.claim("i", 200, 10, 3).unwrap();
        assert_eq!((e[0].key.as_str(), e[0].attempts), ("e@x.org", 0));
    }

    #[test]
    fn record_and_claim_settles_a_batch_and_refills() {
        let (_d, mut l) = ledger();
        add(&mut l, &["a@x.org", "b@x.org", "c@x.org"]);
        let first: Vec<String> = l
            .claim("i", 0, 2, 3)
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(first, ["a@x.org", "b@x.org"]);
        let outcomes = [
            Outcome::Sent {
                key: "a@x.org".into(),
                reply: "250 ok".into(),
            },
            Outcome::Requeue {
                key: "b@x.org".into(),
            },
        ];
        // The requeued row is claimed again in the same transaction, before the next one.
        let next: Vec<String> = l
            .record_and_claim("i", &outcomes, 0, 5, 3)
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(next, ["b@x.org", "c@x.org"]);
        let c = l.counts("i").unwrap();
        assert_eq!((c.sent, c.sending, c.queued), (1, 2, 0));
        // With limit 0 it only records.
        let none = l
            .record_and_claim(
                "i",
                &[Outcome::Requeue {
                    key: "c@x.org".into(),
                }],
                0,
                0,
                3,
            )
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(l.counts("i").unwrap().queued, 1);
    }

    #[test]
    fn an_older_ledger_gets_the_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let old_schema = SCHEMA.split("DROP INDEX").next().unwrap().to_string()
            + "CREATE INDEX deliveries_pending ON deliveries (issue, state, next_attempt_at);
               CREATE INDEX deliveries_sent_at ON deliveries (state, updated_at);";
        Connection::open(&path)
            .unwrap()
            .execute_batch(&old_schema)
            .unwrap();
        let mut l = Ledger::open(&path).unwrap();
        let indexes: Vec<String> = l
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'deliveries_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "deliveries_deferred",
                "deliveries_queued",
                "deliveries_sent"
            ]
        );
        add(&mut l, &["a@x.org"]);
        assert_eq!(l.claim("i", 0, 5, 3).unwrap().len(), 1);
    }

    #[test]
    fn background_checkpoints_keep_the_wal_from_growing() {
        let (_d, mut l) = ledger();
        let checkpoints = l.checkpoint_in_background().unwrap();
        // Without checkpoints these 200 commits leave over a thousand frames in the WAL.
        let keys: Vec<String> = (0..2000).map(|i| format!("r{i}@x.org")).collect();
        for chunk in keys.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            add(&mut l, &refs);
        }
        std::thread::sleep(CHECKPOINT_EVERY * 3);
        // After a checkpoint the next writer starts the WAL over from its beginning.
        add(&mut l, &["last@x.org"]);
        drop(checkpoints);
        let frames_in_use: i64 = l
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(frames_in_use < 10, "WAL still holds {frames_in_use} frames");
        assert_eq!(l.counts("i").unwrap().queued, 2001);
    }

    #[test]
    fn crashed_sending_rows_are_recovered() {
        let (_d, mut l) = ledger();
        add(&mut l, &["a@x.org", "b@x.org"]);
        l.claim("i", 0, 1, 3).unwrap();
        assert_eq!(l.begin_run("i").unwrap(), 1);
        assert_eq!(l.counts("i").unwrap().queued, 2);
    }

    #[test]
    fn unsuppress_requeues_failed() {
        let (_d, mut l) = ledger();
        add(&mut l, &["a@x.org"]);
        l.claim("i", 0, 1, 3).unwrap();
        l.record(
            "i",
            &[Outcome::Failed {
                key: "a@x.org".into(),
                reply: "550".into(),
            }],
        )
        .unwrap();
        assert!(l.unsuppress("A@X.org").unwrap());
        assert!(!l.unsuppress("A@X.org").unwrap());
        assert_eq!(l.counts("i").unwrap().queued, 1);
    }

    #[test]
    fn a_second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let _held = Ledger::lock(&path).unwrap();
        let err = Ledger::lock(&path).unwrap_err().to_string();
        assert!(err.contains("already sending"), "{err}");
    }
}
