//! A [`Store`] on a PostgreSQL server, shared by several `publish` and `serve` processes on one
//! host or several (`[store] url` in `feedpost.toml`).
//!
//! The same state machine as the SQLite ledger (see [`crate::store`]); what differs is that
//! several senders may be alive at once. So there is no lock: a claim takes rows with
//! `FOR UPDATE SKIP LOCKED` (two senders never take the same row, and never wait for each
//! other), marks them with the sender's name and a lease expiry, and the engine renews its
//! leases while it works. A run recovers, and a claim takes over, only rows whose lease expired:
//! their sender died, and only the messages it had in flight are sent again (with the same
//! Message-ID). Outcomes are recorded only on rows still leased by their sender.
//!
//! Connections come from a small pool (deadpool); each [`Store`] method is one transaction on
//! one of them, retried when PostgreSQL picks it as a deadlock's victim. Migrations are
//! versioned ([`schema`]) and applied when a command that writes opens the store. The password
//! comes from the environment only ([`crate::config::PASSWORD_VAR`], then `PGPASSWORD`), and no
//! message names it.

pub mod copy;
pub mod schema;

mod audience;
mod issues;
mod queue;
mod subscribers;
mod suppressions;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use chrono::{DateTime, Utc};

use super::{
    Added, Channel, Claim, Confirmed, Counts, DeliveryRow, EarlierIssue, Enqueued, IssueRecord,
    NewDelivery, NewSubscriber, Outcome, Queue, Recorded, Removed, Requested, Settled, State,
    Store, SubscriberCounts, SubscriberRow, SubscriptionRequest, Suppression, Unsubscribed,
};
use crate::config;

/// Connections one process keeps open at most: the engine uses one at a time; `serve` more.
const POOL_SIZE: usize = 8;

/// How often a sender with nothing left to claim looks again while other senders hold rows of
/// its queue, milliseconds: it ends soon after they finish, and takes over at once from one
/// that died (its lease expired).
const POLL_OTHERS_MS: i64 = 1_000;

/// A PostgreSQL database as a [`Store`].
pub struct PgStore {
    pool: Pool,
    /// The URL without a password, named in every error.
    url: String,
    /// Who holds the leases this store takes: `host:pid:start`.
    owner: String,
    /// How long a claim holds a row unless renewed.
    lease: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.url)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What [`PgStore::connect`] does to a database without feedpost's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Returns `None`: nothing is created (commands that only read).
    Skip,
    /// Creates the tables, and applies any migration the database lacks.
    Migrate,
}

impl PgStore {
    /// Connects to the store `[store]` names; with [`Missing::Migrate`], creates its tables or
    /// migrates them first (under an advisory lock). `None` when the database has no feedpost
    /// tables and `missing` is [`Missing::Skip`].
    ///
    /// The URL's missing parts come from libpq's environment variables (`PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`); the password from [`config::PASSWORD_VAR`], else `PGPASSWORD`.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login, the database was written by a newer
    /// feedpost, or a migration fails; every message names the server (never the password).
    pub async fn connect(store: &config::Store, missing: Missing) -> Result<Option<PgStore>> {
        let url = config::redact(&store.url);
        let named = |what: &str| format!("the PostgreSQL store `{url}` {what}");
        let pg = client_config(&store.url).with_context(|| named("is misconfigured"))?;
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .with_context(|| named("cannot be set up"))?;
        let mut conn = pool.get().await.map_err(|e| {
            anyhow::anyhow!("{}", pool_error(&e)).context(named(&format!(
                "cannot be reached (is the server up? set {} or PGPASSWORD if it asks for a password)",
                config::PASSWORD_VAR
            )))
        })?;
        let client: &mut tokio_postgres::Client = &mut conn;
        let version = schema::version(client)
            .await
            .with_context(|| named("cannot be read"))?;
        if version > schema::latest() {
            bail!(
                "{} (schema version {version}, this one knows {}); use that feedpost or a newer one",
                named("was written by a newer feedpost"),
                schema::latest()
            );
        }
        if version == 0 && missing == Missing::Skip {
            return Ok(None);
        }
        if version < schema::latest() {
            schema::migrate(client)
                .await
                .with_context(|| named("cannot be migrated"))?;
        }
        drop(conn);
        Ok(Some(PgStore {
            pool,
            url,
            owner: super::owner_name(),
            lease: store.lease,
        }))
    }

    /// "the PostgreSQL store `URL`", for messages (as [`Store::describe`]).
    pub fn describe_store(&self) -> String {
        format!("the PostgreSQL store `{}`", self.url)
    }

    /// The server and database, without a password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection of the pool, for the commands that manage the store (`feedpost store`).
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("{}", pool_error(&e)))
            .with_context(|| format!("the PostgreSQL store `{}` cannot be reached", self.url))
    }

    fn failed(&self, what: &str) -> String {
        format!("the PostgreSQL store `{}`: failed to {what}", self.url)
    }
}

/// The text of a pool error, with the database's own error where there is one.
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        e => e.to_string(),
    }
}

/// A driver error with the server's message, which tokio-postgres keeps as the source.
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// The driver's configuration for `url`, its gaps filled from libpq's environment variables.
fn client_config(url: &str) -> Result<tokio_postgres::Config> {
    let mut pg: tokio_postgres::Config = url
        .parse()
        .context("`store.url` is not a valid PostgreSQL URL")?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if pg.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(host) if host.starts_with('/') => pg.host_path(host),
            Some(host) => pg.host(&host),
            None => pg.host("localhost"),
        };
    }
    if pg.get_ports().is_empty() {
        if let Some(port) = env("PGPORT") {
            let port = port
                .parse::<u16>()
                .with_context(|| format!("PGPORT must be a port number, got `{port}`"))?;
            pg.port(port);
        }
    }
    if pg.get_user().is_none() {
        match env("PGUSER").or_else(|| env("USER")) {
            Some(user) => pg.user(&user),
            None => bail!("`store.url` names no user, and neither PGUSER nor USER is set"),
        };
    }
    if pg.get_dbname().is_none() {
        if let Some(db) = env("PGDATABASE") {
            pg.dbname(&db);
        }
    }
    if pg.get_password().is_none() {
        if let Some(password) = env(config::PASSWORD_VAR).or_else(|| env("PGPASSWORD")) {
            pg.password(password);
        }
    }
    if pg.get_application_name().is_none() {
        pg.application_name("feedpost");
    }
    if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        bail!(
            "`sslmode=require` is not supported yet: reach the server over a Unix socket, on a \
             private network, or through a TLS tunnel, and leave `sslmode` out"
        );
    }
    pg.connect_timeout(Duration::from_secs(10));
    Ok(pg)
}

/// Now, Unix seconds, UTC: the `updated_at` of a change.
fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Now, Unix milliseconds, UTC.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether `e` rolled back a transaction that may simply be run again: PostgreSQL chose it as a
/// deadlock's victim, or a serialization failure.
fn retryable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
            .is_some_and(|code| {
                *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                    || *code == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
            })
    })
}

/// Runs `$body` (an async expression over the transaction `$tx`) in one transaction on a pooled
/// connection, committed when it succeeds, run again (at most three times in all) when
/// PostgreSQL rolled it back as a deadlock's victim; its error names the store and `$what`.
macro_rules! in_tx {
    ($self:ident, $what:expr, |$tx:ident| $body:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            let result: Result<_> = async {
                let mut conn = $self
                    .pool
                    .get()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", pool_error(&e)))?;
                let $tx = conn.transaction().await?;
                let out = $body.await?;
                $tx.commit().await?;
                Ok(out)
            }
            .await;
            match result {
                Err(e) if tries < 3 && retryable(&e) => continue,
                result => {
                    break result
                        .map_err(|e| match e.downcast_ref::<tokio_postgres::Error>() {
                            Some(pg) => anyhow::anyhow!("{}", pg_error(pg)),
                            None => e,
                        })
                        .with_context(|| $self.failed($what))
                }
            }
        }
    }};
}

#[async_trait]
impl Store for PgStore {
    fn describe(&self) -> String {
        format!("the PostgreSQL store `{}`", self.url)
    }

    fn owner(&self) -> &str {
        &self.owner
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    async fn begin_run(&self, q: Queue<'_>) -> Result<u64> {
        in_tx!(self, "start a run", |tx| queue::begin_run(&tx, q, now_ms()))
    }

    async fn publish_started(&self, q: Queue<'_>, now: i64) -> Result<i64> {
        in_tx!(self, "record the start of the publish", |tx| {
            issues::publish_started(&tx, q, now)
        })
    }

    async fn enqueue(&self, q: Queue<'_>, recipients: &[NewDelivery<'_>]) -> Result<Enqueued> {
        in_tx!(self, "queue recipients", |tx| queue::enqueue(
            &tx, q, recipients
        ))
    }

    async fn record_and_claim(
        &self,
        q: Queue<'_>,
        outcomes: &[Outcome],
        claim: Claim,
    ) -> Result<Recorded> {
        let lease_ms = self.lease.as_millis() as i64;
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| anyhow::anyhow!("{}", pool_error(&e)))
                .with_context(|| self.failed("record outcomes and claim deliveries"))?;
            match queue::record_and_claim(&conn, q, &self.owner, lease_ms, outcomes, claim).await {
                Ok(recorded) => return Ok(recorded),
                Err(e) => {
                    // Its transaction may be open still: the connection is closed, never
                    // handed out again.
                    drop(deadpool_postgres::Object::take(conn));
                    if tries < 3 && retryable(&e) {
                        continue;
                    }
                    let e = match e.downcast_ref::<tokio_postgres::Error>() {
                        Some(pg) => anyhow::anyhow!("{}", pg_error(pg)),
                        None => e,
                    };
                    return Err(e.context(self.failed("record outcomes and claim deliveries")));
                }
            }
        }
    }

    async fn renew_leases(&self, q: Queue<'_>) -> Result<()> {
        let until = now_ms().saturating_add(self.lease.as_millis() as i64);
        in_tx!(self, "renew the leases", |tx| queue::renew_leases(
            &tx,
            q,
            &self.owner,
            until
        ))
    }

    async fn next_retry_at(&self, q: Queue<'_>, max_run_attempts: u32) -> Result<Option<i64>> {
        in_tx!(self, "find the next retry", |tx| queue::next_retry_at(
            &tx,
            q,
            &self.owner,
            max_run_attempts,
            now_ms(),
            POLL_OTHERS_MS
        ))
    }

    async fn senders(&self) -> Result<u32> {
        in_tx!(self, "count the senders", |tx| queue::senders(
            &tx,
            &self.owner,
            now_ms()
        ))
    }

    async fn sent_times_since(&self, since: i64) -> Result<Vec<i64>> {
        in_tx!(self, "read the send times", |tx| queue::sent_times_since(
            &tx, since
        ))
    }

    async fn begin_audience(&self) -> Result<()> {
        in_tx!(self, "start reading the subscriber list", |tx| {
            audience::begin(&tx, &self.owner)
        })
    }

    async fn admit(&self, listed: &[(&str, bool)]) -> Result<()> {
        in_tx!(self, "read the subscriber list", |tx| audience::admit(
            &tx,
            &self.owner,
            listed
        ))
    }

    async fn settle_audience(&self, q: Queue<'_>) -> Result<Settled> {
        in_tx!(self, "apply the subscriber list", |tx| audience::settle(
            &tx,
            q,
            &self.owner
        ))
    }

    async fn counts(&self, q: Queue<'_>) -> Result<Counts> {
        in_tx!(self, "count deliveries", |tx| queue::counts(&tx, q))
    }

    async fn rows(&self, q: Queue<'_>, states: &[State], limit: usize) -> Result<Vec<DeliveryRow>> {
        in_tx!(self, "list deliveries", |tx| queue::rows(
            &tx, q, states, limit
        ))
    }

    async fn state_of(&self, q: Queue<'_>, key: &str) -> Result<Option<State>> {
        in_tx!(self, "read a delivery", |tx| queue::state_of(&tx, q, key))
    }

    async fn issues(&self) -> Result<Vec<(String, i64)>> {
        in_tx!(self, "list the issues", |tx| queue::issues(&tx))
    }

    async fn channels_of(&self, issue: &str) -> Result<Vec<Channel>> {
        in_tx!(self, "read the issue's channels", |tx| queue::channels_of(
            &tx, issue
        ))
    }

    async fn suppressions(&self) -> Result<Vec<Suppression>> {
        in_tx!(self, "read the suppression list", |tx| suppressions::list(
            &tx
        ))
    }

    async fn suppression_of(&self, key: &str) -> Result<Option<String>> {
        in_tx!(
            self,
            "read the suppression list",
            |tx| suppressions::reason(&tx, key)
        )
    }

    async fn suppress(&self, key: &str, reason: &str) -> Result<()> {
        in_tx!(self, "add to the suppression list", |tx| suppressions::add(
            &tx, key, reason
        ))
    }

    async fn unsuppress(&self, key: &str) -> Result<bool> {
        in_tx!(self, "lift a suppression", |tx| suppressions::lift(
            &tx, key
        ))
    }

    async fn request_subscription(
        &self,
        request: &SubscriptionRequest,
        now: DateTime<Utc>,
    ) -> Result<Requested> {
        in_tx!(self, "record a subscription request", |tx| {
            subscribers::request(&tx, request, now)
        })
    }

    async fn confirm_subscription(&self, key: &str, now: DateTime<Utc>) -> Result<Confirmed> {
        in_tx!(self, "confirm a subscription", |tx| subscribers::confirm(
            &tx, key, now
        ))
    }

    async fn unsubscribe(&self, key: &str, now: DateTime<Utc>) -> Result<Unsubscribed> {
        in_tx!(self, "unsubscribe", |tx| subscribers::unsubscribe(
            &tx, key, now
        ))
    }

    async fn purge_lapsed_requests(&self, now: DateTime<Utc>) -> Result<u64> {
        in_tx!(self, "purge lapsed subscription requests", |tx| {
            subscribers::purge_lapsed(&tx, now)
        })
    }

    async fn subscriber(&self, key: &str) -> Result<Option<SubscriberRow>> {
        in_tx!(self, "read a subscriber", |tx| subscribers::get(&tx, key))
    }

    async fn subscribers(&self, after: &str, limit: usize) -> Result<Vec<SubscriberRow>> {
        in_tx!(self, "list subscribers", |tx| subscribers::page(
            &tx, after, limit
        ))
    }

    async fn subscriber_counts(&self) -> Result<SubscriberCounts> {
        in_tx!(self, "count subscribers", |tx| subscribers::counts(&tx))
    }

    async fn add_subscribers(
        &self,
        new: &[NewSubscriber<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Added>> {
        in_tx!(self, "add subscribers", |tx| subscribers::add(
            &tx, new, now
        ))
    }

    async fn remove_subscriber(&self, key: &str) -> Result<Removed> {
        in_tx!(self, "remove a subscriber", |tx| subscribers::remove(
            &tx, key
        ))
    }

    async fn list_file_subscribers(
        &self,
        listed: &[NewSubscriber<'_>],
        run: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        in_tx!(self, "read the subscriber file into the store", |tx| {
            subscribers::list_file(&tx, listed, run, now)
        })
    }

    async fn prune_file_subscribers(&self, run: i64) -> Result<u64> {
        in_tx!(self, "prune subscribers no longer in the file", |tx| {
            subscribers::prune_file(&tx, run)
        })
    }

    async fn earlier_copies(&self, r: &IssueRecord<'_>) -> Result<Vec<EarlierIssue>> {
        in_tx!(self, "look for the issue among those sent", |tx| {
            issues::earlier_copies(&tx, r)
        })
    }

    async fn is_established(&self, issue: &str) -> Result<bool> {
        in_tx!(self, "read the issue record", |tx| issues::is_established(
            &tx, issue
        ))
    }

    async fn record_issue(&self, r: &IssueRecord<'_>, as_new: bool) -> Result<()> {
        in_tx!(self, "record the issue", |tx| issues::record(
            &tx, r, as_new
        ))
    }
}

/// What `feedpost store status` shows of a PostgreSQL store beyond the [`Store`] methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// The schema version of the database (the newest migration applied).
    pub schema_version: i64,
    /// The senders holding unexpired leases now, by name (`host:pid:start`), with how many rows
    /// each holds.
    pub senders: Vec<(String, u64)>,
}

impl PgStore {
    /// The schema version and the senders at work now.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn overview(&self) -> Result<Overview> {
        let mut conn = self.client().await?;
        let client: &mut tokio_postgres::Client = &mut conn;
        let schema_version = schema::version(client)
            .await
            .with_context(|| self.failed("read the schema version"))?;
        let senders = client
            .query(
                "SELECT lease_owner, COUNT(*) FROM deliveries
                 WHERE state = 'sending' AND lease_expires_at > $1
                 GROUP BY lease_owner ORDER BY lease_owner",
                &[&now_ms()],
            )
            .await
            .with_context(|| self.failed("list the senders"))?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        Ok(Overview {
            schema_version,
            senders,
        })
    }

    /// Applies the migrations the database lacks; returns the names of those applied.
    ///
    /// # Errors
    /// As [`schema::migrate`].
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let mut conn = self.client().await?;
        schema::migrate(&mut conn)
            .await
            .with_context(|| self.failed("migrate"))
    }
}
