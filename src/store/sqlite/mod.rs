//! The default [`Store`]: one SQLite file beside the site (`mail.ledger`, "the ledger").
//!
//! What SQLite needs that another store would not is kept apart from the queries: opening the
//! file and refusing what is not a ledger, and the PRAGMAs (`file`), the schema and its
//! migrations (`schema`), the lock that lets one sender at a time in (`lock`), and the
//! write-ahead log checkpointed on a thread of its own (`checkpoint`). The queries are grouped
//! by what they keep: the queue (`queue`), the audience of a run (`audience`), issue
//! records (`issues`), the suppression list (`suppressions`) and the subscribers with their
//! requests (`subscribers`); each is a function of a connection, and [`SqliteStore`] is the
//! [`Store`] over them.
//!
//! Durability: WAL with `synchronous=NORMAL`, so every committed transition survives a killed
//! process. Leases: a sending run holds the file's lock, so no other sender can be alive while it
//! runs; [`Store::begin_run`] therefore recovers every `sending` row another sender left, expired
//! or not, and a lease here can never be lost to another sender.

pub mod checkpoint;
pub mod file;
pub mod lock;
pub mod schema;

mod audience;
mod issues;
mod queue;
mod subscribers;
mod suppressions;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use async_trait::async_trait;
use rusqlite::Connection;

use chrono::{DateTime, Utc};

use super::{
    Added, Channel, Claim, Confirmed, Counts, DeliveryRow, EarlierIssue, Enqueued, IssueRecord,
    NewDelivery, NewSubscriber, Outcome, Queue, Recorded, Removed, Requested, Settled, State,
    Store, SubscriberCounts, SubscriberRow, SubscriptionChange, SubscriptionChanged,
    SubscriptionRequest, Suppression, Unsubscribed,
};
use checkpoint::Checkpointer;
pub use file::canonical_path;
use lock::LedgerLock;

/// A call on the ledger slower than this is logged at debug level: while it writes, it holds
/// the write lock every other process (`feedpost serve` beside a publish) waits for. So is a
/// call that waited longer than this for the store's one connection (requests of
/// `feedpost serve` queue there).
const SLOW_CALL: std::time::Duration = std::time::Duration::from_millis(10);

/// The ledger file as a [`Store`].
///
/// One connection, behind a mutex (a connection is used by one thread at a time; SQLite writes
/// one transaction at a time anyway). Calls run inline: they take microseconds on the delivery
/// engine's thread, and on a multi-thread runtime they leave the async workers first
/// (`block_in_place`).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The resolved file, named in every error.
    path: PathBuf,
    /// Who holds the leases this store takes: `host:pid:start`.
    owner: String,
    /// Held by a sending store: no other sender opens the file meanwhile.
    _lock: Option<LedgerLock>,
    /// Stopped before the connection closes (fields drop in order).
    _checkpoints: Option<Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Runs `f`, which blocks on the file, off the async workers of a multi-thread runtime; inline
/// anywhere else (the delivery engine's one-thread runtime, no runtime).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl SqliteStore {
    /// Opens the ledger at `path`, creating it (and its folder) when the file is missing; see
    /// [`file::open`].
    ///
    /// # Errors
    /// The file is empty, is not an SQLite database, is a database of something else, or cannot
    /// be opened or migrated; every message names the file.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let (conn, path) = file::open(path)?;
        Ok(SqliteStore::new(conn, path, None, None))
    }

    /// Opens the ledger at `path` if the file exists, for commands that must not create one;
    /// `None` when it is missing.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_existing(path: &Path) -> Result<Option<SqliteStore>> {
        Ok(file::open_existing(path)?.map(|(conn, path)| SqliteStore::new(conn, path, None, None)))
    }

    /// Opens the ledger at `path` to send: takes its lock first (see [`lock::LedgerLock`]), so a
    /// second sender is refused before anything changes, then opens it and checkpoints its
    /// write-ahead log on a thread of its own for as long as the store lives.
    ///
    /// # Errors
    /// Another process holds the lock, or as [`SqliteStore::open`].
    pub fn open_to_send(path: &Path) -> Result<SqliteStore> {
        let lock = LedgerLock::take(path)?;
        let (conn, path) = file::open(path)?;
        let checkpoints = Checkpointer::start(&conn, &path)?;
        Ok(SqliteStore::new(conn, path, Some(lock), Some(checkpoints)))
    }

    /// Opens the ledger at `path` for `feedpost serve`: as [`SqliteStore::open`], with its
    /// write-ahead log checkpointed on a thread of its own (see [`checkpoint`]), so no reader's
    /// request pays for copying a publish's pages back into the file.
    ///
    /// # Errors
    /// As [`SqliteStore::open`], or the checkpoint thread cannot start.
    pub fn open_to_serve(path: &Path) -> Result<SqliteStore> {
        let (conn, path) = file::open(path)?;
        let checkpoints = Checkpointer::start(&conn, &path)?;
        Ok(SqliteStore::new(conn, path, None, Some(checkpoints)))
    }

    fn new(
        conn: Connection,
        path: PathBuf,
        lock: Option<LedgerLock>,
        checkpoints: Option<Checkpointer>,
    ) -> SqliteStore {
        SqliteStore {
            conn: Mutex::new(conn),
            path,
            owner: crate::store::owner_name(),
            _lock: lock,
            _checkpoints: checkpoints,
        }
    }

    /// The ledger file (resolved, see [`canonical_path`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The background checkpointer of a store opened to send or to serve.
    pub fn checkpointer(&self) -> Option<&Checkpointer> {
        self._checkpoints.as_ref()
    }

    /// Runs `f` on the connection; its error names the ledger file and what was being done.
    fn with<T>(&self, what: &str, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        blocking(|| {
            // A panic while the connection was held leaves no transaction open (rusqlite rolls
            // back on drop), so the connection is still good.
            let queued = std::time::Instant::now();
            let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            let started = std::time::Instant::now();
            let waited = started - queued;
            if waited > SLOW_CALL {
                tracing::debug!(
                    ms = waited.as_millis() as u64,
                    "ledger: {what} waited for the connection"
                );
            }
            let result = f(&mut conn);
            let took = started.elapsed();
            if took > SLOW_CALL {
                tracing::debug!(ms = took.as_millis() as u64, "ledger: {what} was slow");
            }
            result
        })
        .with_context(|| self.failed(what))
    }

    /// The context of an error while doing `what`: it names the ledger file.
    fn failed(&self, what: &str) -> String {
        format!("ledger `{}`: failed to {what}", self.path.display())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("the ledger `{}`", self.path.display())
    }

    fn owner(&self) -> &str {
        &self.owner
    }

    async fn begin_run(&self, q: Queue<'_>) -> Result<u64> {
        if self._lock.is_none() {
            // Recovering every row another sender leased is safe only under the lock.
            anyhow::bail!(
                "internal error: a run on {} needs it opened to send (locked)",
                self.describe()
            );
        }
        self.with("start a run", |c| queue::begin_run(c, q, &self.owner))
    }

    async fn publish_started(&self, q: Queue<'_>, now: i64) -> Result<i64> {
        self.with("record the start of the publish", |c| {
            issues::publish_started(c, q, now)
        })
    }

    async fn enqueue(&self, q: Queue<'_>, recipients: &[NewDelivery<'_>]) -> Result<Enqueued> {
        self.with("queue recipients", |c| queue::enqueue(c, q, recipients))
    }

    async fn record_and_claim(
        &self,
        q: Queue<'_>,
        outcomes: &[Outcome],
        claim: Claim,
    ) -> Result<Recorded> {
        self.with("record outcomes and claim deliveries", |c| {
            queue::record_and_claim(c, q, &self.owner, outcomes, claim)
        })
    }

    async fn renew_leases(&self, q: Queue<'_>) -> Result<()> {
        self.with("renew the leases", |c| {
            queue::renew_leases(c, q, &self.owner)
        })
    }

    async fn next_retry_at(&self, q: Queue<'_>, max_run_attempts: u32) -> Result<Option<i64>> {
        self.with("find the next retry", |c| {
            queue::next_retry_at(c, q, max_run_attempts)
        })
    }

    async fn sent_times_since(&self, since: i64) -> Result<Vec<i64>> {
        self.with("read the send times", |c| queue::sent_times_since(c, since))
    }

    async fn begin_audience(&self) -> Result<()> {
        self.with("start reading the subscriber list", audience::begin)
    }

    async fn admit(&self, listed: &[(&str, bool)]) -> Result<()> {
        self.with("read the subscriber list", |c| audience::admit(c, listed))
    }

    async fn settle_audience(&self, q: Queue<'_>) -> Result<Settled> {
        self.with("apply the subscriber list", |c| audience::settle(c, q))
    }

    async fn counts(&self, q: Queue<'_>) -> Result<Counts> {
        self.with("count deliveries", |c| queue::counts(c, q))
    }

    async fn rows(&self, q: Queue<'_>, states: &[State], limit: usize) -> Result<Vec<DeliveryRow>> {
        self.with("list deliveries", |c| queue::rows(c, q, states, limit))
    }

    async fn state_of(&self, q: Queue<'_>, key: &str) -> Result<Option<State>> {
        self.with("read a delivery", |c| queue::state_of(c, q, key))
    }

    async fn issues(&self) -> Result<Vec<(String, i64)>> {
        self.with("list the issues", queue::issues)
    }

    async fn channels_of(&self, issue: &str) -> Result<Vec<Channel>> {
        self.with("read the issue's channels", |c| {
            queue::channels_of(c, issue)
        })
    }

    async fn suppressions(&self) -> Result<Vec<Suppression>> {
        self.with("read the suppression list", suppressions::list)
    }

    async fn suppression_of(&self, key: &str) -> Result<Option<String>> {
        self.with("read the suppression list", |c| {
            suppressions::reason(c, key)
        })
    }

    async fn suppress(&self, key: &str, reason: &str) -> Result<()> {
        self.with("add to the suppression list", |c| {
            suppressions::add(c, key, reason)
        })
    }

    async fn unsuppress(&self, key: &str) -> Result<bool> {
        self.with("lift a suppression", |c| suppressions::lift(c, key))
    }

    async fn request_subscription(
        &self,
        request: &SubscriptionRequest,
        now: DateTime<Utc>,
    ) -> Result<Requested> {
        self.with("record a subscription request", |c| {
            subscribers::request(c, request, now)
        })
    }

    async fn confirm_subscription(&self, key: &str, now: DateTime<Utc>) -> Result<Confirmed> {
        self.with("confirm a subscription", |c| {
            subscribers::confirm(c, key, now)
        })
    }

    async fn unsubscribe(&self, key: &str, now: DateTime<Utc>) -> Result<Unsubscribed> {
        self.with("unsubscribe", |c| subscribers::unsubscribe(c, key, now))
    }

    async fn change_subscriptions(
        &self,
        changes: &[SubscriptionChange],
    ) -> Vec<Result<SubscriptionChanged>> {
        let what = "record subscription changes";
        match self.with(what, |c| subscribers::change_all(c, changes)) {
            Ok(answers) => answers
                .into_iter()
                .map(|answer| answer.with_context(|| self.failed(what)))
                .collect(),
            // anyhow errors are not Clone: every change gets the batch's error as text.
            Err(e) => changes
                .iter()
                .map(|_| Err(anyhow::anyhow!("{e:#}")))
                .collect(),
        }
    }

    fn batches_subscriptions(&self) -> bool {
        true
    }

    async fn purge_lapsed_requests(&self, now: DateTime<Utc>) -> Result<u64> {
        self.with("purge lapsed subscription requests", |c| {
            subscribers::purge_lapsed(c, now)
        })
    }

    async fn subscriber(&self, key: &str) -> Result<Option<SubscriberRow>> {
        self.with("read a subscriber", |c| subscribers::get(c, key))
    }

    async fn subscribers(&self, after: &str, limit: usize) -> Result<Vec<SubscriberRow>> {
        self.with("list subscribers", |c| subscribers::page(c, after, limit))
    }

    async fn subscriber_counts(&self) -> Result<SubscriberCounts> {
        self.with("count subscribers", subscribers::counts)
    }

    async fn add_subscribers(
        &self,
        new: &[NewSubscriber<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Added>> {
        self.with("add subscribers", |c| subscribers::add(c, new, now))
    }

    async fn remove_subscriber(&self, key: &str) -> Result<Removed> {
        self.with("remove a subscriber", |c| subscribers::remove(c, key))
    }

    async fn list_file_subscribers(
        &self,
        listed: &[NewSubscriber<'_>],
        run: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.with("read the subscriber file into the ledger", |c| {
            subscribers::list_file(c, listed, run, now)
        })
    }

    async fn prune_file_subscribers(&self, run: i64) -> Result<u64> {
        self.with("forget readers no longer in the subscriber file", |c| {
            subscribers::prune_file(c, run)
        })
    }

    async fn earlier_copies(&self, r: &IssueRecord<'_>) -> Result<Vec<EarlierIssue>> {
        self.with("look for the issue among those sent", |c| {
            issues::earlier_copies(c, r)
        })
    }

    async fn is_established(&self, issue: &str) -> Result<bool> {
        self.with("read the issue record", |c| {
            issues::is_established(c, issue)
        })
    }

    async fn record_issue(&self, r: &IssueRecord<'_>, as_new: bool) -> Result<()> {
        self.with("record the issue", |c| issues::record(c, r, as_new))
    }
}

/// Now, Unix seconds, UTC: the `updated_at` of a change.
fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Helpers for the unit tests of the store and of its users.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use super::SqliteStore;
    use crate::store::{Enqueued, NewDelivery, Queue, Store};

    /// A temporary folder and the path of a ledger in it (not created).
    pub(crate) fn ledger_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        (dir, path)
    }

    /// A ledger opened to send, in a temporary folder.
    pub(crate) fn sending() -> (tempfile::TempDir, SqliteStore) {
        let (dir, path) = ledger_path();
        (dir, SqliteStore::open_to_send(&path).unwrap())
    }

    /// Queues `keys` (each its own address, Message-ID `<key>`) in `q`.
    pub(crate) async fn enqueue(store: &dyn Store, q: Queue<'_>, keys: &[&str]) -> Enqueued {
        let new: Vec<NewDelivery<'_>> = keys
            .iter()
            .map(|k| NewDelivery {
                key: k,
                address: k,
                name: None,
                message_id: format!("<{k}>"),
            })
            .collect();
        store.enqueue(q, &new).await.unwrap()
    }
}

#[cfg(test)]
mod tests;
