//! The audience of a run on PostgreSQL: who may receive the issue now, as the subscriber file
//! says at the start of this run. Kept in the unlogged table `audience` under this sender's
//! name (a run's statements may use different pooled connections, so a temporary table would
//! not do); rows a killed sender left are cleared after a day. See
//! [`crate::store::Store::settle_audience`].

use anyhow::Result;
use deadpool_postgres::Transaction;

use super::now_unix;
use crate::store::{Queue, Settled};

/// Seconds after which an audience left by a sender that died is cleared.
const STALE_AFTER: i64 = 86_400;

/// See [`crate::store::Store::begin_audience`].
pub(super) async fn begin(tx: &Transaction<'_>, owner: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM audience WHERE owner = $1 OR admitted_at < $2",
        &[&owner, &(now_unix() - STALE_AFTER)],
    )
    .await?;
    Ok(())
}

/// See [`crate::store::Store::admit`]: one statement for the whole chunk.
pub(super) async fn admit(
    tx: &Transaction<'_>,
    owner: &str,
    listed: &[(&str, bool)],
) -> Result<()> {
    let keys: Vec<&str> = listed.iter().map(|(k, _)| *k).collect();
    let wants: Vec<bool> = listed.iter().map(|(_, w)| *w).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO audience (owner, key, wants, admitted_at)
             SELECT $1, key, wants, $4 FROM unnest($2::text[], $3::bool[]) AS t(key, wants)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&owner, &keys, &wants, &now_unix()])
        .await?;
    Ok(())
}

/// See [`crate::store::Store::settle_audience`].
pub(super) async fn settle(tx: &Transaction<'_>, q: Queue<'_>, owner: &str) -> Result<Settled> {
    let now = now_unix();
    let channel = q.channel.as_str();
    let pending =
        "d.issue = $1 AND d.channel = $2 AND d.state IN ('queued', 'deferred', 'sending')";
    let removing = "state = 'removed', next_attempt_at = NULL, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = $3";
    let mut removed = tx
        .execute(
            &format!(
                "UPDATE deliveries d SET {removing},
                     last_reply = 'not sent: the address is suppressed (' || s.reason || ')'
                 FROM suppressions s WHERE {pending} AND s.address = d.recipient"
            ),
            &[&q.issue, &channel, &now],
        )
        .await?;
    removed += tx
        .execute(
            &format!(
                "UPDATE deliveries d SET {removing},
                     last_reply = 'not sent: no longer in the subscriber list'
                 WHERE {pending} AND NOT EXISTS
                     (SELECT 1 FROM audience a WHERE a.owner = $4 AND a.key = d.recipient)"
            ),
            &[&q.issue, &channel, &now, &owner],
        )
        .await?;
    removed += tx
        .execute(
            &format!(
                "UPDATE deliveries d SET {removing},
                     last_reply = 'not sent: the subscriber''s topics no longer include this issue'
                 FROM audience a WHERE {pending} AND a.owner = $4 AND a.key = d.recipient
                     AND NOT a.wants"
            ),
            &[&q.issue, &channel, &now, &owner],
        )
        .await?;
    let restored = tx
        .execute(
            "UPDATE deliveries d SET state = 'queued', last_reply = NULL, updated_at = $3
             FROM audience a
             WHERE d.issue = $1 AND d.channel = $2 AND d.state = 'removed'
                 AND a.owner = $4 AND a.key = d.recipient AND a.wants
                 AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.address = d.recipient)",
            &[&q.issue, &channel, &now, &owner],
        )
        .await?;
    tx.execute("DELETE FROM audience WHERE owner = $1", &[&owner])
        .await?;
    Ok(Settled { removed, restored })
}
