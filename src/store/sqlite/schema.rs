//! The ledger's tables and their migrations, applied in one transaction when the file opens.
//!
//! Versions (`meta.schema_version`): 1 had no channel and no issue records (and no version row);
//! 2 added both; 3 the readers who subscribed on the web (`subscribers.rs`), so a feedpost that
//! reads version 2 must not send with it (it would mail readers who unsubscribed); 4 adds the
//! lease of a `sending` row (its sender and expiry) and removes the unsubscribe secret that
//! earlier versions kept in `meta` (tokens are signed with `FEEDPOST_SECRET` now, never with a
//! value stored beside the data); 5 lets a subscriber come from the command line (source `cli`)
//! and records which publish last found it in `subscribers.toml` (`listed_run`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OptionalExtension};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 5;

/// The tables of a version-5 ledger, besides the subscribers' (`subscribers.rs`). `CREATE … IF
/// NOT EXISTS` throughout: run on every open.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    issue TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('smtp','outbox')),
    recipient TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','sending','sent','deferred','failed','removed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_reply TEXT,
    updated_at INTEGER NOT NULL,
    -- While `sending`: the sender holding the row, and until when (Unix milliseconds).
    lease_owner TEXT,
    lease_expires_at INTEGER,
    PRIMARY KEY (issue, channel, recipient)
) WITHOUT ROWID;
-- Partial indexes: a row is in at most one, so a state change touches at most two of them, and
-- the sent rows (most of a ledger) never slow a claim.
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (issue, channel, recipient)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS deliveries_deferred ON deliveries (issue, channel, next_attempt_at)
    WHERE state = 'deferred';
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries (updated_at)
    WHERE state = 'sent' AND channel = 'smtp';
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    issue TEXT,
    suppressed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS issues (
    issue TEXT PRIMARY KEY,
    slug TEXT NOT NULL,
    title TEXT NOT NULL,
    date INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    as_new INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS issues_fingerprint ON issues (fingerprint);
CREATE INDEX IF NOT EXISTS issues_title_date ON issues (title, date);
CREATE TABLE IF NOT EXISTS publishes (
    issue TEXT NOT NULL,
    channel TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (issue, channel)
);
";

/// Version 1 → 2, before [`SCHEMA`]: the deliveries table gains the channel, in its primary key,
/// so the old table is set aside and copied ([`COPY_1_TO_2`]).
const MIGRATE_1_TO_2: &str = "
DROP INDEX IF EXISTS deliveries_pending;
DROP INDEX IF EXISTS deliveries_sent_at;
DROP INDEX IF EXISTS deliveries_queued;
DROP INDEX IF EXISTS deliveries_deferred;
DROP INDEX IF EXISTS deliveries_sent;
ALTER TABLE deliveries RENAME TO deliveries_v1;
";

/// Version 1 → 2, after [`SCHEMA`]. A version-1 ledger recorded outbox files and SMTP messages
/// alike; the outbox's reply (`written to <path>`) tells them apart.
const COPY_1_TO_2: &str = "
INSERT INTO deliveries (issue, channel, recipient, address, name, message_id, state, attempts,
                        run_attempts, next_attempt_at, last_reply, updated_at)
SELECT issue,
       CASE WHEN last_reply LIKE 'written to %' THEN 'outbox' ELSE 'smtp' END,
       recipient, address, name, message_id, state, attempts, run_attempts, next_attempt_at,
       last_reply, updated_at
FROM deliveries_v1;
DROP TABLE deliveries_v1;
";

/// Versions 2 and 3 → 4, before [`SCHEMA`]: the lease columns.
const ADD_LEASES: &str = "
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE deliveries ADD COLUMN lease_expires_at INTEGER;
";

/// Every version before 4 kept the unsubscribe secret in `meta`: it is removed.
const FORGET_SECRET: &str = "DELETE FROM meta WHERE key = 'unsubscribe_secret';";

/// Creates the schema in a new ledger, or migrates an older one; refuses a database that holds
/// tables but not a ledger's, and one written by a newer feedpost. `path` is for messages.
///
/// # Errors
/// As above, or the file cannot be read or written; every message names `path`.
pub fn upgrade(conn: &mut Connection, path: &Path) -> Result<()> {
    let named = |what: &str| format!("the ledger `{}` {what}", path.display());
    let version = version(conn, path)?;
    if version > SCHEMA_VERSION {
        bail!(
            "{} (schema version {version}); use that feedpost or a newer one",
            named("was written by a newer feedpost")
        );
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .with_context(|| named("cannot be written"))?;
    let migrating = |to: i64| named(&format!("cannot be migrated to schema version {to}"));
    match version {
        1 => tx
            .execute_batch(MIGRATE_1_TO_2)
            .with_context(|| migrating(2))?,
        2 | 3 => tx.execute_batch(ADD_LEASES).with_context(|| migrating(4))?,
        _ => {}
    }
    if matches!(version, 3 | 4) {
        tx.execute_batch(super::subscribers::SET_ASIDE_4)
            .with_context(|| migrating(5))?;
    }
    tx.execute_batch(SCHEMA)
        .and_then(|()| tx.execute_batch(super::subscribers::SCHEMA))
        .with_context(|| named("cannot be set up"))?;
    if version < 2 {
        tx.execute_batch(COPY_1_TO_2)
            .with_context(|| migrating(2))?;
    }
    if matches!(version, 3 | 4) {
        tx.execute_batch(super::subscribers::COPY_4_TO_5)
            .with_context(|| migrating(5))?;
    }
    if version < 4 {
        tx.execute_batch(FORGET_SECRET)
            .with_context(|| migrating(4))?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )
    .with_context(|| named("cannot be written"))?;
    tx.commit().with_context(|| named("cannot be written"))?;
    Ok(())
}

/// The schema version of the database on `conn`: [`SCHEMA_VERSION`] for an empty one, 1 for a
/// ledger without a version row.
///
/// # Errors
/// The database holds tables, but not a ledger's; or it cannot be read.
fn version(conn: &Connection, path: &Path) -> Result<i64> {
    let named = |what: &str| format!("the ledger `{}` {what}", path.display());
    let tables: Vec<String> = (|| {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()
    })()
    .with_context(|| named("cannot be read"))?;
    if tables.is_empty() {
        return Ok(SCHEMA_VERSION);
    }
    let has = |t: &str| tables.iter().any(|n| n == t);
    if !(has("meta") && has("deliveries")) {
        bail!(
            "{}: it is an SQLite database of something else (tables: {}); point `mail.ledger` at feedpost's ledger",
            named("is not a feedpost ledger"),
            tables.join(", ")
        );
    }
    Ok(conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .with_context(|| named("cannot be read"))?
        .unwrap_or(1))
}
