//! The queue: deliveries of one issue on one channel, claimed under a lease, recorded in the
//! same transaction as the next claim, counted and listed.

use anyhow::Result;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::now_unix;
use crate::store::{
    Channel, Claim, Counts, DeliveryRow, Enqueued, Job, NewDelivery, Outcome, Queue, Recorded,
    State, LEASE,
};

/// When a lease taken at `now_ms` expires, Unix milliseconds.
fn lease_end(now_ms: i64) -> i64 {
    now_ms.saturating_add(LEASE.as_millis() as i64)
}

/// See [`crate::store::Store::enqueue`].
pub(super) fn enqueue(
    conn: &mut Connection,
    q: Queue<'_>,
    recipients: &[NewDelivery<'_>],
) -> Result<Enqueued> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts = Enqueued::default();
    {
        let mut suppressed = tx.prepare_cached("SELECT 1 FROM suppressions WHERE address = ?1")?;
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
}

/// See [`crate::store::Store::begin_run`]. The caller holds the ledger's lock, so every
/// `sending` row not leased by `owner` was left by a sender that is gone.
pub(super) fn begin_run(conn: &mut Connection, q: Queue<'_>, owner: &str) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recovered = tx.execute(
        "UPDATE deliveries SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
            updated_at = ?3
         WHERE issue = ?1 AND channel = ?2 AND state = 'sending'
            AND (lease_owner IS NULL OR lease_owner != ?4)",
        params![q.issue, q.channel.as_str(), now_unix(), owner],
    )?;
    tx.execute(
        "UPDATE deliveries SET run_attempts = 0
         WHERE issue = ?1 AND channel = ?2 AND run_attempts != 0",
        params![q.issue, q.channel.as_str()],
    )?;
    tx.commit()?;
    Ok(recovered as u64)
}

/// See [`crate::store::Store::record_and_claim`].
pub(super) fn record_and_claim(
    conn: &mut Connection,
    q: Queue<'_>,
    owner: &str,
    outcomes: &[Outcome],
    claim: Claim,
) -> Result<Recorded> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let lost = record_in(&tx, q, owner, outcomes)?;
    let jobs = if claim.limit > 0 {
        claim_in(&tx, q, owner, claim)?
    } else {
        Vec::new()
    };
    tx.commit()?;
    Ok(Recorded { jobs, lost })
}

/// See [`crate::store::Store::renew_leases`].
pub(super) fn renew_leases(conn: &mut Connection, q: Queue<'_>, owner: &str) -> Result<()> {
    conn.execute(
        "UPDATE deliveries SET lease_expires_at = ?4
         WHERE issue = ?1 AND channel = ?2 AND state = 'sending' AND lease_owner = ?3",
        params![
            q.issue,
            q.channel.as_str(),
            owner,
            lease_end(chrono::Utc::now().timestamp_millis())
        ],
    )?;
    Ok(())
}

/// The claim of [`record_and_claim`], inside its transaction.
fn claim_in(tx: &Transaction<'_>, q: Queue<'_>, owner: &str, claim: Claim) -> Result<Vec<Job>> {
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
        "UPDATE deliveries SET state = 'sending', lease_owner = ?4, lease_expires_at = ?5,
            updated_at = ?6
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let mut remove = tx.prepare_cached(
        "UPDATE deliveries SET state = 'removed', last_reply = ?4, next_attempt_at = NULL, updated_at = ?5
         WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
    )?;
    let channel = q.channel.as_str();
    let stamp = now_unix();
    let expires = lease_end(claim.now_ms);
    let mut jobs = Vec::with_capacity(claim.limit);
    // A suppressed candidate leaves the queue instead of being claimed: select again until the
    // claim is full or nothing is due.
    loop {
        let want = claim.limit - jobs.len();
        let mut candidates = queued
            .query_map(params![q.issue, channel, want as i64], to_job)?
            .collect::<rusqlite::Result<Vec<Job>>>()?;
        if candidates.len() < want {
            let more = due.query_map(
                params![
                    q.issue,
                    channel,
                    claim.now_ms,
                    claim.max_run_attempts,
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
                    let why = format!("not sent: the address is suppressed ({reason})");
                    remove.execute(params![q.issue, channel, job.key, why, stamp])?;
                }
                None => {
                    mark.execute(params![q.issue, channel, job.key, owner, expires, stamp])?;
                    jobs.push(job);
                }
            }
        }
        if jobs.len() == claim.limit {
            break;
        }
    }
    Ok(jobs)
}

/// The recording of [`record_and_claim`], inside its transaction: each outcome changes its row
/// only while the row is `sending` under `owner`'s lease. Returns how many rows were not.
fn record_in(tx: &Transaction<'_>, q: Queue<'_>, owner: &str, outcomes: &[Outcome]) -> Result<u64> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    const LEASED: &str = "WHERE issue = ?1 AND channel = ?2 AND recipient = ?3
         AND state = 'sending' AND lease_owner = ?4";
    let released = "lease_owner = NULL, lease_expires_at = NULL";
    let now = now_unix();
    let channel = q.channel.as_str();
    let mut sent = tx.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'sent', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?5, next_attempt_at = NULL, updated_at = ?6, {released} {LEASED}"
    ))?;
    let mut deferred = tx.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'deferred', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?5, next_attempt_at = ?6, updated_at = ?7, {released} {LEASED}"
    ))?;
    let mut throttled = tx.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'deferred', last_reply = ?5, next_attempt_at = ?6,
         updated_at = ?7, {released} {LEASED}"
    ))?;
    let mut failed = tx.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'failed', attempts = attempts + 1, run_attempts = run_attempts + 1,
         last_reply = ?5, next_attempt_at = NULL, updated_at = ?6, {released} {LEASED}"
    ))?;
    let mut suppress = tx.prepare_cached(
        "INSERT OR REPLACE INTO suppressions (address, reason, issue, suppressed_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    // The subscriber bounced — unless it had left already: that stays its state.
    let mut bounce = tx.prepare_cached(
        "UPDATE subscribers SET state = 'bounced', updated_at = ?2
         WHERE address = ?1 AND state <> 'unsubscribed'",
    )?;
    let mut requeue = tx.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'queued', updated_at = ?5, {released} {LEASED}"
    ))?;
    let mut lost = 0;
    for outcome in outcomes {
        let key = outcome.key();
        let changed = match outcome {
            Outcome::Sent { reply, .. } => {
                sent.execute(params![q.issue, channel, key, owner, reply, now])?
            }
            Outcome::Deferred {
                reply,
                next_attempt_at,
                ..
            }
            | Outcome::Throttled {
                reply,
                next_attempt_at,
                ..
            } => {
                // A throttle counts no attempt: the recipient was not refused.
                let stmt = if matches!(outcome, Outcome::Deferred { .. }) {
                    &mut deferred
                } else {
                    &mut throttled
                };
                stmt.execute(params![
                    q.issue,
                    channel,
                    key,
                    owner,
                    reply,
                    next_attempt_at,
                    now
                ])?
            }
            Outcome::Failed {
                reply,
                suppress: with_suppression,
                ..
            } => {
                let changed = failed.execute(params![q.issue, channel, key, owner, reply, now])?;
                if changed == 1 && *with_suppression {
                    suppress.execute(params![key, reply, q.issue, now])?;
                    bounce.execute(params![key, now])?;
                }
                changed
            }
            Outcome::Requeue { .. } => {
                requeue.execute(params![q.issue, channel, key, owner, now])?
            }
        };
        if changed == 0 {
            lost += 1;
        }
    }
    Ok(lost)
}

/// See [`crate::store::Store::next_retry_at`].
pub(super) fn next_retry_at(
    conn: &mut Connection,
    q: Queue<'_>,
    max_run_attempts: u32,
) -> Result<Option<i64>> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt_at) FROM deliveries
         WHERE issue = ?1 AND channel = ?2 AND state = 'deferred' AND run_attempts < ?3",
        params![q.issue, q.channel.as_str(), max_run_attempts],
        |r| r.get(0),
    )?)
}

/// See [`crate::store::Store::sent_times_since`].
pub(super) fn sent_times_since(conn: &mut Connection, since: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT updated_at FROM deliveries INDEXED BY deliveries_sent
         WHERE state = 'sent' AND channel = 'smtp' AND updated_at >= ?1 ORDER BY updated_at",
    )?;
    let rows = stmt.query_map(params![since], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// See [`crate::store::Store::state_of`].
pub(super) fn state_of(conn: &mut Connection, q: Queue<'_>, key: &str) -> Result<Option<State>> {
    let state: Option<String> = conn
        .prepare_cached(
            "SELECT state FROM deliveries WHERE issue = ?1 AND channel = ?2 AND recipient = ?3",
        )?
        .query_row(params![q.issue, q.channel.as_str(), key], |r| r.get(0))
        .optional()?;
    state.as_deref().map(State::parse).transpose()
}

/// See [`crate::store::Store::counts`].
pub(super) fn counts(conn: &mut Connection, q: Queue<'_>) -> Result<Counts> {
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
        counts.attempts += attempts.unwrap_or(0) as u64;
        counts.set(State::parse(&state)?, n as u64);
    }
    Ok(counts)
}

/// See [`crate::store::Store::issues`].
pub(super) fn issues(conn: &mut Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT issue, MAX(updated_at) AS t FROM deliveries GROUP BY issue ORDER BY t DESC, issue",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// See [`crate::store::Store::rows`].
pub(super) fn rows(
    conn: &mut Connection,
    q: Queue<'_>,
    states: &[State],
    limit: usize,
) -> Result<Vec<DeliveryRow>> {
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
            let (recipient, state, attempts, last_reply, updated_at, next_attempt_at) = row?;
            out.push(DeliveryRow {
                issue: q.issue.to_string(),
                channel: q.channel,
                recipient,
                state: State::parse(&state)?,
                attempts,
                last_reply,
                updated_at,
                next_attempt_at,
            });
        }
    }
    Ok(out)
}

/// See [`crate::store::Store::channels_of`].
pub(super) fn channels_of(conn: &mut Connection, issue: &str) -> Result<Vec<Channel>> {
    let mut out = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT 1 FROM deliveries WHERE issue = ?1 AND channel = ?2 LIMIT 1")?;
    for channel in Channel::ALL {
        if stmt.exists(params![issue, channel.as_str()])? {
            out.push(channel);
        }
    }
    Ok(out)
}
