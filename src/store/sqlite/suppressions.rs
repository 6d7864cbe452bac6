//! The suppression list: addresses that must never be mailed again, with the reply (or the
//! editor's reason) that put them there.

use anyhow::Result;
use rusqlite::{params, Connection, OptionalExtension};

use super::now_unix;
use crate::store::Suppression;

/// See [`crate::store::Store::suppressions`].
pub(super) fn list(conn: &mut Connection) -> Result<Vec<Suppression>> {
    let mut stmt = conn.prepare(
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

/// See [`crate::store::Store::suppression_of`].
pub(super) fn reason(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT reason FROM suppressions WHERE address = ?1")?
        .query_row(params![key], |r| r.get(0))
        .optional()?)
}

/// See [`crate::store::Store::suppress`].
pub(super) fn add(conn: &mut Connection, key: &str, reason: &str) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO suppressions (address, reason, issue, suppressed_at) VALUES (?1, ?2, NULL, ?3)",
        params![key, reason, now_unix()],
    )?;
    Ok(())
}

/// See [`crate::store::Store::unsuppress`].
pub(super) fn lift(conn: &mut Connection, key: &str) -> Result<bool> {
    let tx = conn.transaction()?;
    let removed = tx.execute("DELETE FROM suppressions WHERE address = ?1", params![key])?;
    if removed > 0 {
        tx.execute(
            "UPDATE deliveries SET state = 'queued', run_attempts = 0, updated_at = ?2
             WHERE recipient = ?1 AND state = 'failed'",
            params![key, now_unix()],
        )?;
        tx.execute(
            "UPDATE subscribers SET state = 'confirmed', updated_at = ?2
             WHERE address = ?1 AND state = 'bounced'",
            params![key, now_unix()],
        )?;
    }
    tx.commit()?;
    Ok(removed > 0)
}
