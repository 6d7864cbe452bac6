//! The audience of a run: who may receive the issue now, as the subscriber file says at the
//! start of this run, kept in a temporary table of the connection (on disk, not in memory,
//! however long the list). See [`crate::store::Store::settle_audience`].

use anyhow::Result;
use rusqlite::{params, Connection};

use super::now_unix;
use crate::store::{Queue, Settled};

/// See [`crate::store::Store::begin_audience`].
pub(super) fn begin(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS audience (
             key TEXT PRIMARY KEY,
             wants INTEGER NOT NULL
         ) WITHOUT ROWID;
         DELETE FROM temp.audience;",
    )?;
    Ok(())
}

/// See [`crate::store::Store::admit`].
pub(super) fn admit(conn: &mut Connection, listed: &[(&str, bool)]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT OR IGNORE INTO temp.audience (key, wants) VALUES (?1, ?2)")?;
        for (key, wants) in listed {
            insert.execute(params![key, wants])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// See [`crate::store::Store::settle_audience`].
pub(super) fn settle(conn: &mut Connection, q: Queue<'_>) -> Result<Settled> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_unix();
    let channel = q.channel.as_str();
    let pending = "issue = ?1 AND channel = ?2 AND state IN ('queued', 'deferred', 'sending')";
    let remove = |condition: &str, reason: &str| {
        tx.execute(
            &format!(
                "UPDATE deliveries SET state = 'removed', last_reply = {reason},
                 next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                 updated_at = ?3 WHERE {pending} AND {condition}"
            ),
            params![q.issue, channel, now],
        )
    };
    let mut removed = remove(
        "recipient IN (SELECT address FROM suppressions)",
        "'not sent: the address is suppressed (' ||
         (SELECT reason FROM suppressions WHERE address = recipient) || ')'",
    )?;
    removed += remove(
        "recipient NOT IN (SELECT key FROM temp.audience)",
        "'not sent: no longer in the subscriber list'",
    )?;
    removed += remove(
        "recipient IN (SELECT key FROM temp.audience WHERE wants = 0)",
        "'not sent: the subscriber''s topics no longer include this issue'",
    )?;
    let restored = tx.execute(
        "UPDATE deliveries SET state = 'queued', last_reply = NULL, updated_at = ?3
         WHERE issue = ?1 AND channel = ?2 AND state = 'removed'
           AND recipient IN (SELECT key FROM temp.audience WHERE wants = 1)
           AND recipient NOT IN (SELECT address FROM suppressions)",
        params![q.issue, channel, now],
    )?;
    tx.execute("DELETE FROM temp.audience", [])?;
    tx.commit()?;
    Ok(Settled {
        removed: removed as u64,
        restored: restored as u64,
    })
}
