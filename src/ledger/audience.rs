//! The audience of a run: who may receive the issue now, as the subscriber file says at the start
//! of this run. Every `publish` and `retry` reads the file into the ledger ([`Ledger::admit`]),
//! then [`Ledger::settle_audience`] takes out of the queue the rows of readers no longer listed,
//! no longer wanting the issue's topics, or suppressed, and puts back those eligible again. The
//! claim checks the suppression list once more (it can change during a run).

use anyhow::Result;
use rusqlite::params;

use super::{now_unix, Ledger, Queue};

/// What [`Ledger::settle_audience`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Rows taken out of the queue (now `removed`).
    pub removed: u64,
    /// `removed` rows queued again.
    pub restored: u64,
}

impl Ledger {
    /// Starts reading the audience of a run: forgets the one of an earlier run. Kept in a
    /// temporary table of this connection (on disk, not in memory, however long the list).
    ///
    /// # Errors
    /// A database error.
    pub fn begin_audience(&mut self) -> Result<()> {
        self.write("start reading the subscriber list", |conn| {
            conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS audience (
                     key TEXT PRIMARY KEY,
                     wants INTEGER NOT NULL
                 ) WITHOUT ROWID;
                 DELETE FROM temp.audience;",
            )?;
            Ok(())
        })
    }

    /// Records subscribers listed in the subscriber file now: `(key, wants)`, `wants` saying
    /// whether the subscriber's topics include the issue. One transaction.
    ///
    /// # Errors
    /// A database error; [`Ledger::begin_audience`] was not called.
    pub fn admit<'a>(&mut self, listed: impl IntoIterator<Item = (&'a str, bool)>) -> Result<()> {
        self.write("read the subscriber list", |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO temp.audience (key, wants) VALUES (?1, ?2)",
                )?;
                for (key, wants) in listed {
                    insert.execute(params![key, wants])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// After every subscriber was admitted: rows of `q` still to be sent (`queued`, `deferred`,
    /// or `sending` after a crash) whose reader is no longer listed, no longer wants the issue,
    /// or is suppressed become `removed`, with the reason as their last reply; `removed` rows
    /// whose reader is eligible again are queued again.
    ///
    /// # Errors
    /// A database error; nothing changes then.
    pub fn settle_audience(&mut self, q: Queue<'_>) -> Result<Settled> {
        self.write("apply the subscriber list", |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_unix();
            let channel = q.channel.as_str();
            let pending =
                "issue = ?1 AND channel = ?2 AND state IN ('queued', 'deferred', 'sending')";
            let remove = |condition: &str, reason: &str| {
                tx.execute(
                    &format!(
                        "UPDATE deliveries SET state = 'removed', last_reply = {reason},
                         next_attempt_at = NULL, updated_at = ?3 WHERE {pending} AND {condition}"
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
        })
    }
}
