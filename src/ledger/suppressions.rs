//! The suppression list: addresses that must never be mailed again, with the reply (or the
//! editor's reason) that put them there.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now_unix, Ledger};

/// An address on the suppression list.
#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    /// The recipient key (see [`crate::subscribers::Subscriber::key`]).
    pub address: String,
    /// The permanent reply that put it there, or why it was added.
    pub reason: String,
    /// The issue whose send failed, if any.
    pub issue: Option<String>,
    /// Unix seconds, UTC.
    pub suppressed_at: i64,
}

impl Ledger {
    /// The suppression list, by address.
    ///
    /// # Errors
    /// A database error.
    pub fn suppressions(&self) -> Result<Vec<Suppression>> {
        self.read("read the suppression list", |conn| {
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
        })
    }

    /// Why `key` is suppressed, if it is.
    ///
    /// # Errors
    /// A database error.
    pub fn suppression_of(&self, key: &str) -> Result<Option<String>> {
        self.read("read the suppression list", |conn| {
            Ok(conn
                .prepare_cached("SELECT reason FROM suppressions WHERE address = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?)
        })
    }

    /// Adds the recipient `key` to the suppression list by hand.
    ///
    /// # Errors
    /// A database error.
    pub fn suppress(&mut self, key: &str, reason: &str) -> Result<()> {
        self.write("add to the suppression list", |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO suppressions (address, reason, issue, suppressed_at) VALUES (?1, ?2, NULL, ?3)",
                params![key, reason, now_unix()],
            )?;
            Ok(())
        })
    }

    /// Lifts the suppression of the recipient `key`; returns whether it was listed. Its failed
    /// deliveries are queued again, so the next `publish` of those issues retries them.
    ///
    /// # Errors
    /// A database error.
    pub fn unsuppress(&mut self, key: &str) -> Result<bool> {
        self.write("lift a suppression", |conn| {
            let tx = conn.transaction()?;
            let removed =
                tx.execute("DELETE FROM suppressions WHERE address = ?1", params![key])?;
            if removed > 0 {
                tx.execute(
                    "UPDATE deliveries SET state = 'queued', run_attempts = 0, updated_at = ?2
                     WHERE recipient = ?1 AND state = 'failed'",
                    params![key, now_unix()],
                )?;
            }
            tx.commit()?;
            Ok(removed > 0)
        })
    }
}
