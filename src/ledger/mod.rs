//! The ledger: a SQLite file recording, for every (issue, channel, recipient), where its message
//! stands.
//!
//! The last stage of the pipeline and the source of truth for "who got what". Each delivery moves
//! through durable states:
//!
//! ```text
//! queued ──claim──▶ sending ──250──▶ sent
//!   │  ▲               │  ├──4xx / timeout / dropped──▶ deferred ──claim──▶ sending …
//!   │  │               │  ├──throttled──▶ deferred (no attempt counted)
//!   │  │               │  └──5xx, the recipient's own──▶ failed (+ suppression list)
//!   │  │               └──not tried (stopping, no connection, the message refused)──▶ queued
//!   │  └──listed and wanted again (next run)──┐
//!   └──no longer eligible (run start, claim)──▶ removed
//! ```
//!
//! A row is `sending` only while its message may be on the wire; after a crash, `publish` turns
//! `sending` rows back into `queued` and sends them again with the same Message-ID, so the only
//! possible duplicates are the messages in flight at the crash. Every transition is committed
//! (WAL, `synchronous=NORMAL`: durable across a killed process) before anything depends on it.
//!
//! Deliveries are kept per [`Channel`]: the outbox is a rehearsal, and its rows never count as
//! mail sent by SMTP. Who may receive an issue is decided again on every run and at every claim
//! (see [`Ledger::admit`] and [`Ledger::settle_audience`]): a reader removed from the subscriber
//! list, or suppressed, after being queued is `removed`, not mailed.
//!
//! The operations are grouped by what they keep — the queue (here), the audience
//! (`audience.rs`), issue records (`issues.rs`), the suppression list (`suppressions.rs`) — and
//! the file itself (`file.rs`: opening, schema, lock, checkpoints), so a store trait can later be
//! put in front of the first four.

mod audience;
mod file;
mod issues;
mod subscribers;
mod suppressions;

use std::path::PathBuf;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

pub use audience::Settled;
pub use file::{canonical_path, Checkpointer, LedgerLock};
pub use issues::{EarlierIssue, IssueRecord};
pub use subscribers::{LedgerSubscriptions, WebSubscriber};
pub use suppressions::Suppression;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting to be sent.
    Queued,
    /// Claimed by a sender: the message may be on the wire.
    Sending,
    /// The server answered 250 to the message (or, in the outbox, the file was written).
    Sent,
    /// A transient failure (4xx, timeout, dropped connection); retried after `next_attempt_at`.
    Deferred,
    /// A permanent failure (5xx) of the recipient's own, whose address is then on the
    /// suppression list; or a recipient this relay cannot take at all (see the reply).
    Failed,
    /// No longer eligible when its turn came: removed from the subscriber list, its topics no
    /// longer include the issue, or suppressed. Queued again if it becomes eligible again.
    Removed,
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
            State::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "queued" => State::Queued,
            "sending" => State::Sending,
            "sent" => State::Sent,
            "deferred" => State::Deferred,
            "failed" => State::Failed,
            "removed" => State::Removed,
            _ => return None,
        })
    }
}

/// How an issue's messages leave: by SMTP (mail), or as files in the outbox (a rehearsal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Mail through the `[smtp]` relay.
    Smtp,
    /// `.eml` files in `mail.outbox`: nobody receives them.
    Outbox,
}

impl Channel {
    /// The name stored in the database and printed by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Smtp => "smtp",
            Channel::Outbox => "outbox",
        }
    }
}

/// One issue's deliveries on one channel: what a run works through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue<'a> {
    /// The issue id: its permalink.
    pub issue: &'a str,
    /// The channel.
    pub channel: Channel,
}

/// A recipient to add to an issue's queue.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// The recipient key (see [`crate::subscribers::Subscriber::key`]).
    pub key: &'a str,
    /// The address for the envelope and the `To` header.
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
    /// The recipient key.
    pub key: String,
    /// The address for the envelope and the `To` header.
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
    /// The server throttled us (421, a 4xx to `MAIL FROM`, congestion): try again at
    /// `next_attempt_at` (Unix milliseconds), and count no attempt — the recipient was not
    /// refused.
    Throttled {
        /// The recipient key.
        key: String,
        /// The server's reply.
        reply: String,
        /// When the next attempt may start, Unix milliseconds, UTC.
        next_attempt_at: i64,
    },
    /// A permanent failure. With `suppress` (the recipient's own failure: an unknown mailbox,
    /// say) the address goes on the suppression list; without, only this delivery fails (e.g.
    /// the relay cannot carry a non-ASCII address).
    Failed {
        /// The recipient key.
        key: String,
        /// The server's reply, or why the message could not be sent.
        reply: String,
        /// Whether the address goes on the suppression list.
        suppress: bool,
    },
    /// Not attempted after all (the run stopped, no connection could be opened, the server
    /// refused the message itself): back to the queue, no attempt counted.
    Requeue {
        /// The recipient key.
        key: String,
    },
}

/// Per-state counts for one issue on one channel.
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
    /// Rows `removed` (no longer eligible).
    pub removed: u64,
    /// Attempts made in total.
    pub attempts: u64,
}

impl Counts {
    /// Whether the queue has no rows at all.
    pub fn is_empty(&self) -> bool {
        self.queued + self.sending + self.sent + self.deferred + self.failed + self.removed == 0
    }
}

/// One delivery as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// The issue id (permalink).
    pub issue: String,
    /// The channel.
    pub channel: Channel,
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

/// An open ledger. One process at a time sends through a ledger: see [`Ledger::lock`].
pub struct Ledger {
    conn: Connection,
    /// The resolved file, named in every error.
    path: PathBuf,
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Ledger {
    /// Runs `f` on the connection; its error names the ledger file and what was being done.
    fn read<T>(&self, what: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(&self.conn).with_context(|| format!("ledger `{}`: failed to {what}", self.path.display()))
    }

    /// As [`Ledger::read`], for changes.
    fn write<T>(&mut self, what: &str, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut self.conn)
            .with_context(|| format!("ledger `{}`: failed to {what}", self.path.display()))
    }

    /// The secret that signs unsubscribe tokens: 32 random bytes made on first use and kept in the
    /// ledger, so tokens stay valid across runs.
    ///
    /// # Errors
    /// The ledger cannot be read or written.
    pub fn secret(&mut self) -> Result<Vec<u8>> {
        self.write("read the unsubscribe secret", |conn| {
            let read = |conn: &Connection| {
                conn.query_row(
                    "SELECT value FROM meta WHERE key = 'unsubscribe_secret'",
                    [],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
            };
            if let Some(secret) = read(conn)? {
                return Ok(secret);
            }
            let secret: [u8; 32] = rand::random();
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('unsubscribe_secret', ?1)",
                params![secret.to_vec()],
            )?;
            read(conn)?.context("the secret just written is missing")
        })
    }

    /// Adds recipients to the queue `q` in one transaction. Recipients that already have a row
    /// in it keep it (that is what makes a second `publish` send nothing); suppressed addresses
    /// are skipped.
    ///
    /// # Errors
    /// A database error; nothing is added then.
    pub fn enqueue<'a>(
        &mut self,
        q: Queue<'_>,
        recipients: impl IntoIterator<Item = NewDelivery<'a>>,
    ) -> Result<Enqueued> {
        self.write("queue recipients", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counts = Enqueued::default();
            {
                let mut suppressed =
                    tx.prepare_cached("SELECT 1 FROM suppressions WHERE address = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (issue, channel, recipient, address, name, message_id, state, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
                )?;
                let now = now_unix();
                for r in recipients {
                    if suppressed.exists(params![r.key])? {
                        counts.suppressed += 1;
                    } else if insert.execute(params![
                        q.issue,
                        q.channel.as_str(),
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
        })
    }

    /// Starts a run of `q`: rows left `sending` by a crashed run go back to `queued` (their
    /// message may or may not have arrived; it is sent again with the same Message-ID), and the
    /// per-run attempt counters are reset. Returns how many rows were recovered.
    ///
    /// # Errors
    /// A database error.
    pub fn begin_run(&mut self, q: Queue<'_>) -> Result<u64> {
        self.write("start a run", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let recovered = tx.execute(
                "UPDATE deliveries SET state = 'queued', updated_at = ?3
                 WHERE issue = ?1 AND channel = ?2 AND state = 'sending'",
                params![q.issue, q.channel.as_str(), now_unix()],
            )?;
            tx.execute(
                "UPDATE deliveries SET run_attempts = 0
                 WHERE issue = ?1 AND channel = ?2 AND run_attempts != 0",
                params![q.issue, q.channel.as_str()],
            )?;
            tx.commit()?;
            Ok(recovered as u64)
        })
    }

    /// Claims up to `limit` deliveries of `q` that are due at `now` (Unix milliseconds):
    /// `queued`, or `deferred` with `next_attempt_at <= now` and fewer than `max_run_attempts`
    /// attempts this run. They become `sending` in the same transaction — except those whose
    /// address is on the suppression list by now, which become `removed` instead.
    ///
    /// # Errors
    /// A database error; nothing is claimed then.
    pub fn claim(
        &mut self,
        q: Queue<'_>,
        now: i64,
        limit: usize,
        max_run_attempts: u32,
    ) -> Result<Vec<Job>> {
        self.record_and_claim(q, &[], now, limit, max_run_attempts)
    }

    /// When the next `deferred` delivery of `q` that may still be tried this run becomes due, in
    /// Unix milliseconds; `None` when there is none.
    ///
    /// # Errors
    /// A database error.
    pub fn next_retry_at(&self, q: Queue<'_>, max_run_attempts: u32) -> Result<Option<i64>> {
        self.read("find the next retry", |conn| {
            Ok(conn.query_row(
                "SELECT MIN(next_attempt_at) FROM deliveries
                 WHERE issue = ?1 AND channel = ?2 AND state = 'deferred' AND run_attempts < ?3",
                params![q.issue, q.channel.as_str(), max_run_attempts],
                |r| r.get(0),
            )?)
        })
    }

    /// Records outcomes of attempts in one transaction. A permanent failure of the recipient's
    /// own also puts the address on the suppression list.
    ///
    /// # Errors
    /// A database error; nothing is recorded then.
    pub fn record(&mut self, q: Queue<'_>, outcomes: &[Outcome]) -> Result<()> {
        self.record_and_claim(q, outcomes, 0, 0, 0).map(|_| ())
    }

    /// [`Ledger::record`] then [`Ledger::claim`] in one transaction: what the delivery engine does
    /// after each batch of outcomes, for the price of one commit. With `limit` 0 nothing is
    /// claimed.
    ///
    /// # Errors
    /// A database error; nothing is recorded or claimed then.
    pub fn record_and_claim(
        &mut self,
        q: Queue<'_>,
        outcomes: &[Outcome],
        now: i64,
        limit: usize,
        max_run_attempts: u32,
    ) -> Result<Vec<Job>> {
        self.write("record outcomes and claim deliveries", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            record_in(&tx, q, outcomes)?;
            let jobs = if limit > 0 {
                claim_in(&tx, q, now, limit, max_run_attempts)?
            } else {
                Vec::new()
            };
            tx.commit()?;
            Ok(jobs)
        })
    }

    /// The state of `key`'s delivery in `q`, if it has one.
    ///
    /// # Errors
    /// A database error.
    pub fn state_of(&self, q: Queue<'_>, key: &str) -> Result<Option<State>> {
        self.read("read a delivery", |conn| {
            let state: Option<String> = conn
                .prepare_cached(
                    "SELECT state FROM deliveries WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
                )?
                .query_row(params![q.issue, q.channel.as_str(), key], |r| r.get(0))
                .optional()?;
            state.as_deref().map(parse_state).transpose()
        })
    }

    /// Per-state counts for `q`.
    ///
    /// # Errors
    /// A database error, or a state this feedpost does not know.
    pub fn counts(&self, q: Queue<'_>) -> Result<Counts> {
        self.read("count deliveries", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT state, COUNT(*), SUM(attempts) FROM deliveries
                 WHERE issue = ?1 AND channel = ?2 GROUP BY state",
            )?;
            let mut counts = Counts::default();
            let rows = stmt.query_map(params![q.issue, q.channel.as_str()], |r| {
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
                match parse_state(&state)? {
                    State::Queued => counts.queued = n,
                    State::Sending => counts.sending = n,
                    State::Sent => counts.sent = n,
                    State::Deferred => counts.deferred = n,
                    State::Failed => counts.failed = n,
                    State::Removed => counts.removed = n,
                }
            }
            Ok(counts)
        })
    }

    /// The issues that have deliveries (on any channel), with the time of their last change
    /// (Unix seconds), newest first.
    ///
    /// # Errors
    /// A database error.
    pub fn issues(&self) -> Result<Vec<(String, i64)>> {
        self.read("list the issues", |conn| {
            let mut stmt = conn.prepare(
                "SELECT issue, MAX(updated_at) AS t FROM deliveries GROUP BY issue ORDER BY t DESC, issue",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Deliveries of `q` in the given states, oldest change first, at most `limit` per state.
    ///
    /// # Errors
    /// A database error.
    pub fn rows(&self, q: Queue<'_>, states: &[State], limit: usize) -> Result<Vec<DeliveryRow>> {
        self.read("list deliveries", |conn| {
            let mut out = Vec::new();
            let mut stmt = conn.prepare_cached(
                "SELECT address, state, attempts, last_reply, updated_at, next_attempt_at FROM deliveries
                 WHERE issue = ?1 AND channel = ?2 AND state = ?3
                 ORDER BY updated_at, recipient LIMIT ?4",
            )?;
            for state in states {
                let rows = stmt.query_map(
                    params![q.issue, q.channel.as_str(), state.as_str(), limit as i64],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )?;
                for row in rows {
                    let (recipient, state, attempts, last_reply, updated_at, next_attempt_at) =
                        row?;
                    out.push(DeliveryRow {
                        issue: q.issue.to_string(),
                        channel: q.channel,
                        recipient,
                        state: parse_state(&state)?,
                        attempts,
                        last_reply,
                        updated_at,
                        next_attempt_at,
                    });
                }
            }
            Ok(out)
        })
    }

    /// How many messages were recorded sent by SMTP (over all issues) since `since` (Unix
    /// seconds). Outbox files do not count.
    ///
    /// # Errors
    /// A database error.
    pub fn sent_since(&self, since: i64) -> Result<u64> {
        self.read("count sent messages", |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_sent
                 WHERE state = 'sent' AND channel = 'smtp' AND updated_at >= ?1",
                params![since],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }

    /// The times (Unix seconds) of the messages recorded sent by SMTP since `since`, oldest
    /// first: what an hourly cap has already used.
    ///
    /// # Errors
    /// A database error.
    pub fn sent_times_since(&self, since: i64) -> Result<Vec<i64>> {
        self.read("read the send times", |conn| {
            let mut stmt = conn.prepare(
                "SELECT updated_at FROM deliveries INDEXED BY deliveries_sent
                 WHERE state = 'sent' AND channel = 'smtp' AND updated_at >= ?1 ORDER BY updated_at",
            )?;
            let rows = stmt.query_map(params![since], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// A state read from the database; one this feedpost does not know is an error (a newer
/// feedpost wrote it), never taken for another.
fn parse_state(s: &str) -> Result<State> {
    State::parse(s)
        .with_context(|| format!("unknown delivery state `{s}` (written by a newer feedpost?)"))
}

/// The claim of [`Ledger::claim`], inside the caller's transaction.
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    q: Queue<'_>,
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
         WHERE issue = ?1 AND channel = ?2 AND state = 'queued'
         ORDER BY recipient LIMIT ?3",
    )?;
    let mut due = tx.prepare_cached(
        "SELECT recipient, address, name, message_id, attempts FROM deliveries
         INDEXED BY deliveries_deferred
         WHERE issue = ?1 AND channel = ?2 AND state = 'deferred' AND next_attempt_at <= ?3
            AND run_attempts < ?4
         ORDER BY next_attempt_at, recipient LIMIT ?5",
    )?;
    let mut suppressed = tx.prepare_cached("SELECT reason FROM suppressions WHERE address = ?1")?;
    let mut mark = tx.prepare_cached(
        "UPDATE deliveries SET state = 'sending', updated_at = ?4
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let mut remove = tx.prepare_cached(
        "UPDATE deliveries SET state = 'removed', last_reply = ?4, next_attempt_at = NULL, updated_at = ?5
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let channel = q.channel.as_str();
    let stamp = now_unix();
    let mut jobs = Vec::with_capacity(limit);
    // A suppressed candidate leaves the queue instead of being claimed: select again until the
    // claim is full or nothing is due.
    loop {
        let want = limit - jobs.len();
        let mut candidates = queued
            .query_map(params![q.issue, channel, want as i64], to_job)?
            .collect::<rusqlite::Result<Vec<Job>>>()?;
        if candidates.len() < want {
            let more = due.query_map(
                params![
                    q.issue,
                    channel,
                    now,
                    max_run_attempts,
                    (want - candidates.len()) as i64
                ],
                to_job,
            )?;
            for job in more {
                candidates.push(job?);
            }
        }
        if candidates.is_empty() {
            break;
        }
        for job in candidates {
            let reason: Option<String> = suppressed
                .query_row(params![job.key], |r| r.get(0))
                .optional()?;
            match reason {
                Some(reason) => {
                    remove.execute(params![
                        q.issue,
                        channel,
                        job.key,
                        format!("not sent: the address is suppressed ({reason})"),
                        stamp
                    ])?;
                }
                None => {
                    mark.execute(params![q.issue, channel, job.key, stamp])?;
                    jobs.push(job);
                }
            }
        }
        if jobs.len() == limit {
            break;
        }
    }
    Ok(jobs)
}

/// The recording of [`Ledger::record`], inside the caller's transaction.
fn record_in(tx: &rusqlite::Transaction<'_>, q: Queue<'_>, outcomes: &[Outcome]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = now_unix();
    let channel = q.channel.as_str();
    let mut sent = tx.prepare_cached(
        "UPDATE deliveries SET state = 'sent', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?4, next_attempt_at = NULL, updated_at = ?5
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let mut deferred = tx.prepare_cached(
        "UPDATE deliveries SET state = 'deferred', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?4, next_attempt_at = ?5, updated_at = ?6
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let mut throttled = tx.prepare_cached(
        "UPDATE deliveries SET state = 'deferred', last_reply = ?4, next_attempt_at = ?5, updated_at = ?6
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let mut failed = tx.prepare_cached(
        "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?4, next_attempt_at = NULL, updated_at = ?5
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let mut suppress = tx.prepare_cached(
        "INSERT OR REPLACE INTO suppressions (address, reason, issue, suppressed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut requeue = tx.prepare_cached(
        "UPDATE deliveries SET state = 'queued', updated_at = ?4
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    for outcome in outcomes {
        match outcome {
            Outcome::Sent { key, reply } => {
                sent.execute(params![q.issue, channel, key, reply, now])?;
            }
            Outcome::Deferred {
                key,
                reply,
                next_attempt_at,
            } => {
                deferred.execute(params![q.issue, channel, key, reply, next_attempt_at, now])?;
            }
            Outcome::Throttled {
                key,
                reply,
                next_attempt_at,
            } => {
                throttled.execute(params![q.issue, channel, key, reply, next_attempt_at, now])?;
            }
            Outcome::Failed {
                key,
                reply,
                suppress: with_suppression,
            } => {
                failed.execute(params![q.issue, channel, key, reply, now])?;
                if *with_suppression {
                    suppress.execute(params![key, reply, q.issue, now])?;
                }
            }
            Outcome::Requeue { key } => {
                requeue.execute(params![q.issue, channel, key, now])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
