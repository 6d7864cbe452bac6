//! The PostgreSQL store's tables and their versioned migrations (refinery), applied when a
//! sending or writing command opens the store, under an advisory lock so that several processes
//! starting at once migrate it once.
//!
//! The same concepts as the SQLite ledger's schema version 4 ([`crate::store::sqlite::schema`]):
//! deliveries with their lease, the suppression list, issue records and publish start times; and
//! the audience of a run, kept per sender (`owner`) in an unlogged table because a run's
//! statements may each use another pooled connection. Times are Unix seconds, or milliseconds
//! where a column says so (`next_attempt_at`, `lease_expires_at`).

use anyhow::{bail, Context, Result};
use refinery::{Migration, Runner};

/// The migrations, oldest first: `V<n>__<name>` and their SQL. Never edit one that shipped;
/// add the next.
const MIGRATIONS: &[(&str, &str)] = &[("V1__deliveries", V1), ("V2__subscribers", V2)];

/// The tables of version 1.
const V1: &str = "
CREATE TABLE deliveries (
    issue TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('smtp', 'outbox')),
    recipient TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'removed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_attempts INTEGER NOT NULL DEFAULT 0,
    -- Unix milliseconds.
    next_attempt_at BIGINT,
    last_reply TEXT,
    -- Unix seconds.
    updated_at BIGINT NOT NULL,
    -- While `sending`: the sender holding the row, and until when (Unix milliseconds).
    lease_owner TEXT,
    lease_expires_at BIGINT,
    PRIMARY KEY (issue, channel, recipient)
);
-- Partial indexes: a claim reads only the rows it takes, however many are sent already.
CREATE INDEX deliveries_queued ON deliveries (issue, channel, recipient) WHERE state = 'queued';
CREATE INDEX deliveries_deferred ON deliveries (issue, channel, next_attempt_at)
    WHERE state = 'deferred';
CREATE INDEX deliveries_sending ON deliveries (issue, channel, lease_expires_at)
    WHERE state = 'sending';
CREATE INDEX deliveries_sent ON deliveries (updated_at) WHERE state = 'sent' AND channel = 'smtp';
CREATE INDEX deliveries_recipient ON deliveries (recipient);
CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    issue TEXT,
    suppressed_at BIGINT NOT NULL
);
CREATE TABLE issues (
    issue TEXT PRIMARY KEY,
    slug TEXT NOT NULL,
    title TEXT NOT NULL,
    date BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    as_new BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX issues_fingerprint ON issues (fingerprint);
CREATE INDEX issues_title_date ON issues (title, date);
CREATE TABLE publishes (
    issue TEXT NOT NULL,
    channel TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (issue, channel)
);
CREATE UNLOGGED TABLE audience (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    wants BOOLEAN NOT NULL,
    admitted_at BIGINT NOT NULL,
    PRIMARY KEY (owner, key)
);
";

/// Version 2: the subscribers (see [`crate::store::subscribers`]) and their requests waiting
/// for confirmation. Keys are lowercased addresses, as in deliveries and suppressions.
const V2: &str = "
CREATE TABLE subscribers (
    address TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT,
    -- A JSON array of strings; empty: every issue.
    topics TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'unsubscribed', 'bounced')),
    source TEXT NOT NULL CHECK (source IN ('file', 'web', 'import', 'cli')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    unsubscribed_at BIGINT,
    -- The last publish (Unix ms) whose subscribers.toml listed it.
    listed_run BIGINT
);
CREATE TABLE subscription_requests (
    address TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT,
    topics TEXT NOT NULL DEFAULT '[]',
    requested_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX subscription_requests_expiry ON subscription_requests (expires_at);
";

/// The advisory lock (`pg_advisory_lock`) held while migrating: "feedpost" in ASCII.
const MIGRATION_LOCK: i64 = 0x6665_6564_706f_7374;

/// The table refinery records applied migrations in.
pub const HISTORY_TABLE: &str = "feedpost_schema_history";

/// The schema version this build writes: the number of its newest migration.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

fn runner() -> Result<Runner> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(name, sql)| Migration::unapplied(name, sql))
        .collect::<Result<Vec<_>, _>>()
        .context("internal error: a migration is misnamed")?;
    let mut runner = Runner::new(&migrations).set_abort_divergent(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    Ok(runner.set_abort_missing(true))
}

/// The schema version of the database on `client`: 0 when it has no feedpost tables.
///
/// # Errors
/// The database cannot be read, or holds migrations this build does not know (a newer
/// feedpost wrote it).
pub async fn version(client: &mut tokio_postgres::Client) -> Result<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let applied: Option<i32> = client
        .query_one(&format!("SELECT MAX(version) FROM {HISTORY_TABLE}"), &[])
        .await?
        .get(0);
    Ok(i64::from(applied.unwrap_or(0)))
}

/// Applies the migrations `client`'s database lacks, under an advisory lock; returns the names
/// of those applied.
///
/// # Errors
/// The database was written by a newer feedpost (a migration this build does not know), one
/// already applied differs from this build's, or a statement fails.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<String>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    // The lock is the session's: released here, or when the connection closes.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> Result<Vec<String>> {
    let found = version(client).await?;
    if found > latest() {
        bail!(
            "it was written by a newer feedpost (schema version {found}, this one knows {}); use that feedpost or a newer one",
            latest()
        );
    }
    let report = runner()?
        .run_async(client)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("a migration failed")?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}
