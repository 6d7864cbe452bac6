//! The queue on PostgreSQL: deliveries of one issue on one channel, claimed under a lease with
//! `FOR UPDATE SKIP LOCKED` (so several senders take disjoint batches without waiting on each
//! other), recorded in the same transaction as the next claim, counted and listed.
//!
//! The statements mirror the SQLite queue (`store/sqlite/queue.rs`), with two differences that
//! come from several senders being alive at once: a run recovers only rows whose lease expired
//! (their sender is gone), and a claim also takes over such rows while the run goes on.
//! Each function runs inside the caller's transaction.

use anyhow::Result;
use deadpool_postgres::{GenericClient, Transaction};

use super::now_unix;
use crate::store::{
    Claim, Counts, DeliveryRow, Enqueued, Job, NewDelivery, Outcome, Queue, Recorded, State,
};

/// See [`crate::store::Store::enqueue`]: one statement for the whole batch.
pub(super) async fn enqueue(
    tx: &Transaction<'_>,
    q: Queue<'_>,
    recipients: &[NewDelivery<'_>],
) -> Result<Enqueued> {
    let keys: Vec<&str> = recipients.iter().map(|r| r.key).collect();
    let addresses: Vec<&str> = recipients.iter().map(|r| r.address).collect();
    let names: Vec<Option<&str>> = recipients.iter().map(|r| r.name).collect();
    let ids: Vec<&str> = recipients.iter().map(|r| r.message_id.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])
                     WITH ORDINALITY AS t(recipient, address, name, message_id, n)
             ), suppressed AS (
                 SELECT i.n FROM input i JOIN suppressions s ON s.address = i.recipient
             ), inserted AS (
                 INSERT INTO deliveries (issue, channel, recipient, address, name, message_id, state, updated_at)
                 SELECT $1, $2, recipient, address, name, message_id, 'queued', $7 FROM input
                 WHERE n NOT IN (SELECT n FROM suppressed)
                 ORDER BY n
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             )
             SELECT (SELECT COUNT(*) FROM input), (SELECT COUNT(*) FROM suppressed),
                    (SELECT COUNT(*) FROM inserted)",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &q.issue,
                &q.channel.as_str(),
                &keys,
                &addresses,
                &names,
                &ids,
                &now_unix(),
            ],
        )
        .await?;
    let (all, suppressed, queued): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok(Enqueued {
        queued: queued as u64,
        existing: (all - suppressed - queued) as u64,
        suppressed: suppressed as u64,
    })
}

/// See [`crate::store::Store::begin_run`]: rows whose lease expired go back to the queue (rows
/// another live sender holds are left to it), and the per-run attempt counters are reset.
pub(super) async fn begin_run(tx: &Transaction<'_>, q: Queue<'_>, now_ms: i64) -> Result<u64> {
    let recovered = tx
        .execute(
            "UPDATE deliveries SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                 updated_at = $3
             WHERE issue = $1 AND channel = $2 AND state = 'sending'
                 AND (lease_expires_at IS NULL OR lease_expires_at <= $4)",
            &[&q.issue, &q.channel.as_str(), &now_unix(), &now_ms],
        )
        .await?;
    tx.execute(
        "UPDATE deliveries SET run_attempts = 0
         WHERE issue = $1 AND channel = $2 AND run_attempts != 0 AND state != 'sending'",
        &[&q.issue, &q.channel.as_str()],
    )
    .await?;
    Ok(recovered)
}

/// See [`crate::store::Store::record_and_claim`]: one transaction on `conn`, its statements
/// pipelined — `BEGIN`, the recording and the first pick of the claim go out together, then
/// `COMMIT` — so a commit costs two round trips to the server however many outcomes it holds.
///
/// The transaction commits with `synchronous_commit` off: a feedpost killed at any moment loses
/// nothing (the server holds the commit), and a crash of the server itself may forget the last
/// fraction of a second of records, whose messages are then sent again with the same Message-ID
/// — never lost. The SQLite ledger's durability (WAL, `synchronous=NORMAL`) is the same.
///
/// On an error the transaction may be left open: the caller must not give `conn` back to the
/// pool.
pub(super) async fn record_and_claim(
    conn: &deadpool_postgres::Client,
    q: Queue<'_>,
    owner: &str,
    lease_ms: i64,
    outcomes: &[Outcome],
    claim: Claim,
) -> Result<Recorded> {
    let begin = conn.batch_execute("BEGIN; SET LOCAL synchronous_commit TO OFF");
    let recorded = record(conn, q, owner, outcomes);
    let claimed = async {
        if claim.limit > 0 {
            claim_in(conn, q, owner, lease_ms, claim).await
        } else {
            Ok(Vec::new())
        }
    };
    // Polled in this order, so sent in this order: the recording and the claim touch different
    // rows (this sender's `sending` ones, and `queued`, due or expired ones), so neither waits
    // for the other's answer.
    let (begun, lost, jobs) = futures_util::future::join3(begin, recorded, claimed).await;
    begun?;
    let (lost, jobs) = (lost?, jobs?);
    conn.batch_execute("COMMIT").await?;
    Ok(Recorded { jobs, lost })
}

/// See [`crate::store::Store::renew_leases`].
pub(super) async fn renew_leases(
    tx: &Transaction<'_>,
    q: Queue<'_>,
    owner: &str,
    until_ms: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE deliveries SET lease_expires_at = $4
         WHERE issue = $1 AND channel = $2 AND state = 'sending' AND lease_owner = $3",
        &[&q.issue, &q.channel.as_str(), &owner, &until_ms],
    )
    .await?;
    Ok(())
}

/// What a claim picks, in order: queued rows, due deferred ones, then rows whose sender's lease
/// expired (a sender that died mid-run). `$3` is now (Unix ms), `$4` the attempts a recipient
/// may have in one run, `$5` how many; a pick that needs no `$3` or `$4` still names it (`IS
/// NOT NULL`), so that every pick is prepared with the same parameter types.
const PICKS: [&str; 3] = [
    "SELECT ctid, recipient FROM deliveries
     WHERE issue = $1 AND channel = $2 AND state = 'queued' AND $3::int8 IS NOT NULL
         AND $4::int4 IS NOT NULL
     ORDER BY recipient LIMIT $5 FOR UPDATE SKIP LOCKED",
    "SELECT ctid, recipient FROM deliveries
     WHERE issue = $1 AND channel = $2 AND state = 'deferred' AND next_attempt_at <= $3
         AND run_attempts < $4
     ORDER BY next_attempt_at, recipient LIMIT $5 FOR UPDATE SKIP LOCKED",
    "SELECT ctid, recipient FROM deliveries
     WHERE issue = $1 AND channel = $2 AND state = 'sending' AND lease_expires_at <= $3
         AND $4::int4 IS NOT NULL
     ORDER BY lease_expires_at, recipient LIMIT $5 FOR UPDATE SKIP LOCKED",
];

/// The claim of [`record_and_claim`]: each pick is locked (skipping rows another sender is
/// taking), then marked `sending` under `owner`'s lease — or `removed`, when the address is
/// suppressed by now — in the same statement. The rows are found again by their `ctid` (they
/// are locked, so it cannot change): joined by key, the planner walks every delivery of the
/// issue for each claim.
async fn claim_in(
    tx: &impl GenericClient,
    q: Queue<'_>,
    owner: &str,
    lease_ms: i64,
    claim: Claim,
) -> Result<Vec<Job>> {
    let channel = q.channel.as_str();
    let expires = claim.now_ms.saturating_add(lease_ms);
    let max_run_attempts = i32::try_from(claim.max_run_attempts).unwrap_or(i32::MAX);
    let stamp = now_unix();
    let mut jobs = Vec::with_capacity(claim.limit);
    for pick in PICKS {
        // A suppressed candidate leaves the queue instead of being claimed: pick again until
        // the claim is full or nothing more is due.
        loop {
            let want = (claim.limit - jobs.len()) as i64;
            if want == 0 {
                return Ok(jobs);
            }
            let stmt = tx
                .prepare_cached(&format!(
                    "WITH picked AS ({pick}),
                     marked AS (
                         UPDATE deliveries d SET
                             state = CASE WHEN s.reason IS NULL THEN 'sending' ELSE 'removed' END,
                             lease_owner = CASE WHEN s.reason IS NULL THEN $6 END,
                             lease_expires_at = CASE WHEN s.reason IS NULL THEN $7::int8 END,
                             last_reply = CASE WHEN s.reason IS NULL THEN d.last_reply
                                 ELSE 'not sent: the address is suppressed (' || s.reason || ')' END,
                             next_attempt_at = CASE WHEN s.reason IS NULL THEN d.next_attempt_at END,
                             updated_at = $8
                         FROM picked p LEFT JOIN suppressions s ON s.address = p.recipient
                         WHERE d.ctid = p.ctid
                         RETURNING d.recipient, d.address, d.name, d.message_id, d.attempts,
                             d.state = 'sending'
                     )
                     SELECT * FROM marked ORDER BY recipient"
                ))
                .await?;
            let rows = tx
                .query(
                    &stmt,
                    &[
                        &q.issue,
                        &channel,
                        &claim.now_ms,
                        &max_run_attempts,
                        &want,
                        &owner,
                        &expires,
                        &stamp,
                    ],
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                if row.get::<_, bool>(5) {
                    jobs.push(Job {
                        key: row.get(0),
                        address: row.get(1),
                        name: row.get(2),
                        message_id: row.get(3),
                        attempts: row.get::<_, i32>(4).max(0) as u32,
                    });
                }
            }
        }
    }
    Ok(jobs)
}

/// The recording of [`record_and_claim`]: one statement for every outcome, each changing its
/// row only while the row is `sending` under `owner`'s lease (a permanent failure of the
/// recipient's own also suppresses the address and makes its subscriber bounced). Returns how
/// many rows were not.
async fn record(
    tx: &impl GenericClient,
    q: Queue<'_>,
    owner: &str,
    outcomes: &[Outcome],
) -> Result<u64> {
    if outcomes.is_empty() {
        return Ok(0);
    }
    let mut keys = Vec::with_capacity(outcomes.len());
    let mut states = Vec::with_capacity(outcomes.len());
    let mut counted = Vec::with_capacity(outcomes.len());
    let mut replies: Vec<Option<&str>> = Vec::with_capacity(outcomes.len());
    let mut next: Vec<Option<i64>> = Vec::with_capacity(outcomes.len());
    let mut suppress: Vec<bool> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        keys.push(outcome.key());
        let (state, attempt, reply, at, sup) = match outcome {
            Outcome::Sent { reply, .. } => ("sent", 1, Some(reply.as_str()), None, false),
            Outcome::Deferred {
                reply,
                next_attempt_at,
                ..
            } => (
                "deferred",
                1,
                Some(reply.as_str()),
                Some(*next_attempt_at),
                false,
            ),
            // A throttle counts no attempt: the recipient was not refused.
            Outcome::Throttled {
                reply,
                next_attempt_at,
                ..
            } => (
                "deferred",
                0,
                Some(reply.as_str()),
                Some(*next_attempt_at),
                false,
            ),
            Outcome::Failed {
                reply,
                suppress: with_suppression,
                ..
            } => ("failed", 1, Some(reply.as_str()), None, *with_suppression),
            Outcome::Requeue { .. } => ("queued", 0, None, None, false),
        };
        states.push(state);
        counted.push(attempt);
        replies.push(reply);
        next.push(at);
        suppress.push(sup);
    }
    let stmt = tx
        .prepare_cached(
            "WITH o AS (
                 SELECT * FROM unnest($4::text[], $5::text[], $6::int4[], $7::text[], $8::int8[], $9::bool[])
                     AS t(recipient, state, counted, reply, next_attempt_at, suppress)
             ), done AS (
                 UPDATE deliveries d SET
                     state = o.state,
                     attempts = d.attempts + o.counted,
                     run_attempts = d.run_attempts + o.counted,
                     last_reply = CASE WHEN o.state = 'queued' THEN d.last_reply ELSE o.reply END,
                     next_attempt_at = CASE WHEN o.state = 'queued' THEN d.next_attempt_at
                         ELSE o.next_attempt_at END,
                     updated_at = $10, lease_owner = NULL, lease_expires_at = NULL
                 FROM o
                 WHERE d.issue = $1 AND d.channel = $2 AND d.recipient = o.recipient
                     AND d.state = 'sending' AND d.lease_owner = $3
                 RETURNING d.recipient
             ), suppressed AS (
                 INSERT INTO suppressions (address, reason, issue, suppressed_at)
                 SELECT DISTINCT ON (o.recipient) o.recipient, o.reply, $1, $10 FROM o
                 WHERE o.suppress AND o.recipient IN (SELECT recipient FROM done)
                 ON CONFLICT (address) DO UPDATE SET reason = excluded.reason,
                     issue = excluded.issue, suppressed_at = excluded.suppressed_at
                 RETURNING 1
             ), bounced AS (
                 -- The subscriber bounced, unless it had left already: that stays its state.
                 UPDATE subscribers s SET state = 'bounced', updated_at = $10 FROM o
                 WHERE o.suppress AND o.recipient IN (SELECT recipient FROM done)
                     AND s.address = o.recipient AND s.state <> 'unsubscribed'
                 RETURNING 1
             )
             SELECT (SELECT COUNT(*) FROM done), (SELECT COUNT(*) FROM suppressed),
                 (SELECT COUNT(*) FROM bounced)",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &q.issue,
                &q.channel.as_str(),
                &owner,
                &keys,
                &states,
                &counted,
                &replies,
                &next,
                &suppress,
                &now_unix(),
            ],
        )
        .await?;
    let recorded: i64 = row.get(0);
    Ok((outcomes.len() as u64).saturating_sub(recorded as u64))
}

/// See [`crate::store::Store::next_retry_at`]. Besides the next due deferred row, the next
/// expiry of another sender's lease: a sender that died leaves rows a survivor must take over.
/// While another sender holds rows, this sender looks again within `poll_ms`, so it ends soon
/// after the others finish instead of waiting out their leases.
pub(super) async fn next_retry_at(
    tx: &Transaction<'_>,
    q: Queue<'_>,
    owner: &str,
    max_run_attempts: u32,
    now_ms: i64,
    poll_ms: i64,
) -> Result<Option<i64>> {
    let max = i32::try_from(max_run_attempts).unwrap_or(i32::MAX);
    let row = tx
        .query_one(
            "SELECT
                 (SELECT MIN(next_attempt_at) FROM deliveries
                  WHERE issue = $1 AND channel = $2 AND state = 'deferred' AND run_attempts < $3),
                 (SELECT MIN(lease_expires_at) FROM deliveries
                  WHERE issue = $1 AND channel = $2 AND state = 'sending' AND lease_owner != $4)",
            &[&q.issue, &q.channel.as_str(), &max, &owner],
        )
        .await?;
    let deferred: Option<i64> = row.get(0);
    let foreign: Option<i64> = row.get(1);
    let foreign = foreign.map(|at| at.min(now_ms.saturating_add(poll_ms)));
    Ok(match (deferred, foreign) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// See [`crate::store::Store::senders`]: the other owners of unexpired leases, and this one.
pub(super) async fn senders(tx: &Transaction<'_>, owner: &str, now_ms: i64) -> Result<u32> {
    let others: i64 = tx
        .query_one(
            "SELECT COUNT(DISTINCT lease_owner) FROM deliveries
             WHERE state = 'sending' AND lease_expires_at > $1 AND lease_owner <> $2",
            &[&now_ms, &owner],
        )
        .await?
        .get(0);
    Ok(u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1))
}

/// See [`crate::store::Store::sent_times_since`].
pub(super) async fn sent_times_since(tx: &Transaction<'_>, since: i64) -> Result<Vec<i64>> {
    let rows = tx
        .query(
            "SELECT updated_at FROM deliveries
             WHERE state = 'sent' AND channel = 'smtp' AND updated_at >= $1 ORDER BY updated_at",
            &[&since],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// See [`crate::store::Store::state_of`].
pub(super) async fn state_of(
    tx: &Transaction<'_>,
    q: Queue<'_>,
    key: &str,
) -> Result<Option<State>> {
    let row = tx
        .query_opt(
            "SELECT state FROM deliveries WHERE issue = $1 AND channel = $2 AND recipient = $3",
            &[&q.issue, &q.channel.as_str(), &key],
        )
        .await?;
    row.map(|r| State::parse(r.get(0))).transpose()
}

/// See [`crate::store::Store::counts`].
pub(super) async fn counts(tx: &Transaction<'_>, q: Queue<'_>) -> Result<Counts> {
    let rows = tx
        .query(
            "SELECT state, COUNT(*), SUM(attempts)::int8 FROM deliveries
             WHERE issue = $1 AND channel = $2 GROUP BY state",
            &[&q.issue, &q.channel.as_str()],
        )
        .await?;
    let mut counts = Counts::default();
    for row in rows {
        let n: i64 = row.get(1);
        let attempts: Option<i64> = row.get(2);
        counts.attempts += attempts.unwrap_or(0) as u64;
        counts.set(State::parse(row.get(0))?, n as u64);
    }
    Ok(counts)
}

/// See [`crate::store::Store::issues`].
pub(super) async fn issues(tx: &Transaction<'_>) -> Result<Vec<(String, i64)>> {
    let rows = tx
        .query(
            "SELECT issue, MAX(updated_at) AS t FROM deliveries GROUP BY issue ORDER BY t DESC, issue",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// See [`crate::store::Store::rows`].
pub(super) async fn rows(
    tx: &Transaction<'_>,
    q: Queue<'_>,
    states: &[State],
    limit: usize,
) -> Result<Vec<DeliveryRow>> {
    let mut out = Vec::new();
    for state in states {
        let rows = tx
            .query(
                "SELECT address, state, attempts, last_reply, updated_at, next_attempt_at
                 FROM deliveries WHERE issue = $1 AND channel = $2 AND state = $3
                 ORDER BY updated_at, recipient LIMIT $4",
                &[
                    &q.issue,
                    &q.channel.as_str(),
                    &state.as_str(),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await?;
        for r in rows {
            out.push(DeliveryRow {
                issue: q.issue.to_string(),
                channel: q.channel,
                recipient: r.get(0),
                state: State::parse(r.get(1))?,
                attempts: r.get::<_, i32>(2).max(0) as u32,
                last_reply: r.get(3),
                updated_at: r.get(4),
                next_attempt_at: r.get(5),
            });
        }
    }
    Ok(out)
}

/// See [`crate::store::Store::channels_of`].
pub(super) async fn channels_of(
    tx: &Transaction<'_>,
    issue: &str,
) -> Result<Vec<crate::store::Channel>> {
    let mut out = Vec::new();
    for channel in crate::store::Channel::ALL {
        if tx
            .query_opt(
                "SELECT 1 FROM deliveries WHERE issue = $1 AND channel = $2 LIMIT 1",
                &[&issue, &channel.as_str()],
            )
            .await?
            .is_some()
        {
            out.push(channel);
        }
    }
    Ok(out)
}
