//! Readers who join and leave by themselves, kept in the ledger: the `subscribers` table (state,
//! source, name, topics, timestamps) and the `subscription_requests` waiting for their
//! confirmation (double opt-in).
//!
//! Written by `feedpost serve` through [`LedgerSubscriptions`], its [`Subscriptions`] backend,
//! and read by whoever decides the audience of an issue: a `confirmed` row joins the readers of
//! the subscriber file, an `unsubscribed` or `bounced` one is skipped even when the address is in
//! the file. SQLite-only for now: the subscriber operations join the [`crate::store::Store`]
//! trait in the next step (issue 10's store), when publish reads them into the audience.
//!
//! ```text
//!             request                  confirm (link, before expiry)
//! (none) ──────────────▶ pending ─────────────────────────────▶ confirmed
//!   │                       │                                    │   ▲
//!   │ unsubscribe           │ unsubscribe                        │   │ confirm a new request
//!   ▼                       ▼                                    ▼   │
//! unsubscribed ◀────────────┴──────────── unsubscribe ──────── (any state)
//! ```
//!
//! A request never changes a subscriber by itself (anyone can type any address into the form):
//! it waits in `subscription_requests` until its link is opened, so a confirmed reader's topics
//! change only when the reader confirms, and an unsubscribed reader comes back only the same
//! way. Suppressed (bounced) addresses get no confirmation email. Times are Unix seconds, UTC.
//!
//! An unsubscribe also puts the address on the suppression list (reason [`UNSUBSCRIBED`]), which
//! every send already honours, so it holds for readers of the subscriber file too; confirming a
//! new request lifts that suppression, never a bounce's.

use std::sync::Mutex;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::serve::{Confirmed, Requested, SubscriptionRequest, Subscriptions, Unsubscribed};

/// The tables, created on every open (`IF NOT EXISTS`), by [`super::schema`].
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscribers (
    address TEXT PRIMARY KEY,  -- lowercased: the key, as in deliveries and suppressions
    email TEXT NOT NULL,       -- as the reader wrote it
    name TEXT,
    topics TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings; empty: every issue
    state TEXT NOT NULL CHECK (state IN ('pending','confirmed','unsubscribed','bounced')),
    source TEXT NOT NULL CHECK (source IN ('file','web','import')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    unsubscribed_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscription_requests (
    address TEXT PRIMARY KEY,  -- lowercased
    email TEXT NOT NULL,
    name TEXT,
    topics TEXT NOT NULL DEFAULT '[]',
    requested_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscription_requests_expiry ON subscription_requests (expires_at);
";

/// The suppression reason of an unsubscribe: a later confirmed subscription lifts it (a
/// bounce's suppression stays).
pub const UNSUBSCRIBED: &str = "unsubscribed";

/// How often, at most, lapsed requests are deleted, in seconds.
const PURGE_EVERY: i64 = 60;

/// A subscriber row, as `status` and the audience read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSubscriber {
    /// The lowercased address.
    pub address: String,
    /// The name given.
    pub name: Option<String>,
    /// The address as written.
    pub email: String,
    /// Topics; empty: every issue.
    pub topics: Vec<String>,
    /// `pending`, `confirmed`, `unsubscribed` or `bounced`.
    pub state: String,
    /// `file`, `web` or `import`.
    pub source: String,
}

impl SqliteStore {
    /// Records a subscription request at `now` (see the module): the address's latest request,
    /// replacing an unconfirmed one; a `pending` web subscriber when the address is new.
    /// Suppressed and bounced addresses are left alone.
    ///
    /// # Errors
    /// A database error; nothing is recorded then.
    pub fn request_subscription(
        &self,
        request: &SubscriptionRequest,
        now: DateTime<Utc>,
    ) -> Result<Requested> {
        let key = request.address.to_lowercase();
        let now = now.timestamp();
        let topics = serde_json::to_string(&request.topics)?;
        self.with("record a subscription request", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let suppressed = tx
                .prepare_cached("SELECT 1 FROM suppressions WHERE address = ?1 AND reason <> ?2")?
                .exists(params![key, UNSUBSCRIBED])?
                || state_of(&tx, &key)?.as_deref() == Some("bounced");
            if suppressed {
                return Ok(Requested::Suppressed);
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO subscription_requests
                 (address, email, name, topics, requested_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                key,
                request.address,
                request.name,
                topics,
                now,
                request.expires.timestamp()
            ])?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO subscribers
                 (address, email, name, topics, state, source, created_at, updated_at)
             VALUES (?1, ?2, NULL, '[]', 'pending', 'web', ?3, ?3)",
            )?
            .execute(params![key, request.address, now])?;
            tx.commit()?;
            Ok(Requested::MailConfirmation)
        })
    }

    /// Confirms the latest request of `address` (lowercased) if it has not expired at `now`:
    /// the subscriber becomes `confirmed` with the request's address spelling, name and topics.
    ///
    /// # Errors
    /// A database error; nothing changes then.
    pub fn confirm_subscription(&self, address: &str, now: DateTime<Utc>) -> Result<Confirmed> {
        let now = now.timestamp();
        self.with("confirm a subscription", |conn| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let request: Option<(String, Option<String>, String)> = tx
            .prepare_cached(
                "SELECT email, name, topics FROM subscription_requests
                 WHERE address = ?1 AND expires_at > ?2",
            )?
            .query_row(params![address, now], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let outcome = match request {
            Some((email, name, topics)) => {
                tx.prepare_cached(
                    "INSERT INTO subscribers
                         (address, email, name, topics, state, source, created_at, updated_at, confirmed_at)
                     VALUES (?1, ?2, ?3, ?4, 'confirmed', 'web', ?5, ?5, ?5)
                     ON CONFLICT (address) DO UPDATE SET
                         email = excluded.email, name = excluded.name, topics = excluded.topics,
                         state = 'confirmed', updated_at = ?5, confirmed_at = ?5",
                )?
                .execute(params![address, email, name, topics, now])?;
                tx.prepare_cached("DELETE FROM subscription_requests WHERE address = ?1")?
                    .execute(params![address])?;
                tx.prepare_cached("DELETE FROM suppressions WHERE address = ?1 AND reason = ?2")?
                    .execute(params![address, UNSUBSCRIBED])?;
                Confirmed::Confirmed
            }
            None if state_of(&tx, address)?.as_deref() == Some("confirmed") => {
                Confirmed::AlreadyConfirmed
            }
            None => Confirmed::NoRequest,
        };
        tx.commit()?;
        Ok(outcome)
        })
    }

    /// Unsubscribes `address` (lowercased) at `now`, whatever its state — also an address the
    /// table has not seen, a reader of the subscriber file, recorded with source `file` — and
    /// drops its pending request.
    ///
    /// # Errors
    /// A database error; nothing changes then.
    pub fn unsubscribe(&self, address: &str, now: DateTime<Utc>) -> Result<Unsubscribed> {
        let now = now.timestamp();
        self.with("unsubscribe", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM subscription_requests WHERE address = ?1")?
                .execute(params![address])?;
            let outcome = if state_of(&tx, address)?.as_deref() == Some("unsubscribed") {
                Unsubscribed::AlreadyUnsubscribed
            } else {
                tx.prepare_cached(
                    "INSERT INTO subscribers
                     (address, email, state, source, created_at, updated_at, unsubscribed_at)
                 VALUES (?1, ?1, 'unsubscribed', 'file', ?2, ?2, ?2)
                 ON CONFLICT (address) DO UPDATE SET
                     state = 'unsubscribed', updated_at = ?2, unsubscribed_at = ?2",
                )?
                .execute(params![address, now])?;
                Unsubscribed::Unsubscribed
            };
            // Honoured by the next send whoever the reader is (file or web): a suppression,
            // unless one is there already (a bounce keeps its reply).
            tx.prepare_cached(
                "INSERT OR IGNORE INTO suppressions (address, reason, issue, suppressed_at)
                 VALUES (?1, ?2, NULL, ?3)",
            )?
            .execute(params![address, UNSUBSCRIBED, now])?;
            tx.commit()?;
            Ok(outcome)
        })
    }

    /// Deletes requests that lapsed before `now`, and the `pending` subscribers left with no
    /// request; returns how many subscribers went.
    ///
    /// # Errors
    /// A database error.
    pub fn purge_lapsed_requests(&self, now: DateTime<Utc>) -> Result<usize> {
        self.with("purge lapsed subscription requests", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM subscription_requests WHERE expires_at <= ?1",
                params![now.timestamp()],
            )?;
            let gone = tx.execute(
                "DELETE FROM subscribers WHERE state = 'pending'
             AND address NOT IN (SELECT address FROM subscription_requests)",
                [],
            )?;
            tx.commit()?;
            Ok(gone)
        })
    }

    /// The subscriber row of `address` (lowercased), if any.
    ///
    /// # Errors
    /// A database error, or topics that are not a JSON array of strings.
    pub fn web_subscriber(&self, address: &str) -> Result<Option<WebSubscriber>> {
        let row = self.with("read a subscriber", |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT address, email, name, topics, state, source FROM subscribers
                 WHERE address = ?1",
                )?
                .query_row(params![address], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .optional()?)
        })?;
        row.map(|(address, email, name, topics, state, source)| {
            let topics = serde_json::from_str(&topics)
                .with_context(|| format!("the topics of `{address}` in the ledger are damaged"))?;
            Ok(WebSubscriber {
                address,
                email,
                name,
                topics,
                state,
                source,
            })
        })
        .transpose()
    }
}

fn state_of(conn: &rusqlite::Connection, address: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT state FROM subscribers WHERE address = ?1")?
        .query_row(params![address], |r| r.get(0))
        .optional()?)
}

/// The ledger as `feedpost serve`'s backend: one connection, one call at a time (each is a
/// short transaction; `publish` may write the same file meanwhile, WAL lets both). Lapsed
/// requests are purged at most once a minute, on the next request.
pub struct LedgerSubscriptions {
    store: SqliteStore,
    /// When lapsed requests were last purged, Unix seconds.
    last_purge: Mutex<i64>,
}

impl LedgerSubscriptions {
    /// Opens the ledger at `path` (creating it and its tables if needed).
    ///
    /// # Errors
    /// See [`SqliteStore::open`].
    pub fn open(path: &std::path::Path) -> Result<LedgerSubscriptions> {
        Ok(LedgerSubscriptions {
            store: SqliteStore::open(path)?,
            last_purge: Mutex::new(0),
        })
    }
}

impl Subscriptions for LedgerSubscriptions {
    fn request(&self, request: &SubscriptionRequest, now: DateTime<Utc>) -> Result<Requested> {
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
            if now.timestamp() - *last >= PURGE_EVERY {
                self.store.purge_lapsed_requests(now)?;
                *last = now.timestamp();
            }
        }
        self.store.request_subscription(request, now)
    }

    fn confirm(&self, address: &str, now: DateTime<Utc>) -> Result<Confirmed> {
        self.store.confirm_subscription(address, now)
    }

    fn unsubscribe(&self, address: &str, now: DateTime<Utc>) -> Result<Unsubscribed> {
        self.store.unsubscribe(address, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn request(address: &str, topics: &[&str], now: DateTime<Utc>) -> SubscriptionRequest {
        SubscriptionRequest {
            address: address.into(),
            name: Some("读者".into()),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            expires: now + chrono::Duration::hours(48),
        }
    }

    fn ledger() -> (tempfile::TempDir, SqliteStore) {
        let (dir, path) = crate::store::sqlite::testing::ledger_path();
        (dir, SqliteStore::open(&path).unwrap())
    }

    fn suppression_of(l: &SqliteStore, address: &str) -> Option<String> {
        l.with("read", |c| super::super::suppressions::reason(c, address))
            .unwrap()
    }

    fn state(l: &SqliteStore, address: &str) -> Option<String> {
        l.web_subscriber(address).unwrap().map(|s| s.state)
    }

    #[test]
    fn request_then_confirm_makes_a_confirmed_web_subscriber() {
        let (_dir, l) = ledger();
        let r = request("Reader@Example.org", &["MOSN"], at(0));
        assert_eq!(
            l.request_subscription(&r, at(0)).unwrap(),
            Requested::MailConfirmation
        );
        assert_eq!(state(&l, "reader@example.org").as_deref(), Some("pending"));
        assert_eq!(
            l.confirm_subscription("reader@example.org", at(1)).unwrap(),
            Confirmed::Confirmed
        );
        let s = l.web_subscriber("reader@example.org").unwrap().unwrap();
        assert_eq!(
            (
                s.email.as_str(),
                s.name.as_deref(),
                s.topics,
                s.state.as_str(),
                s.source.as_str()
            ),
            (
                "Reader@Example.org",
                Some("读者"),
                vec!["MOSN".to_string()],
                "confirmed",
                "web"
            )
        );
        assert_eq!(
            l.confirm_subscription("reader@example.org", at(2)).unwrap(),
            Confirmed::AlreadyConfirmed
        );
    }

    #[test]
    fn a_request_changes_a_confirmed_reader_only_once_confirmed() {
        let (_dir, l) = ledger();
        l.request_subscription(&request("a@x.org", &["MOSN"], at(0)), at(0))
            .unwrap();
        l.confirm_subscription("a@x.org", at(0)).unwrap();
        l.request_subscription(&request("a@x.org", &["Rust"], at(1)), at(1))
            .unwrap();
        let s = l.web_subscriber("a@x.org").unwrap().unwrap();
        assert_eq!(
            (s.state.as_str(), s.topics),
            ("confirmed", vec!["MOSN".to_string()])
        );
        l.confirm_subscription("a@x.org", at(2)).unwrap();
        assert_eq!(
            l.web_subscriber("a@x.org").unwrap().unwrap().topics,
            ["Rust"]
        );
    }

    #[test]
    fn a_lapsed_request_confirms_nothing_and_is_purged() {
        let (_dir, l) = ledger();
        l.request_subscription(&request("a@x.org", &[], at(0)), at(0))
            .unwrap();
        assert_eq!(
            l.confirm_subscription("a@x.org", at(48)).unwrap(),
            Confirmed::NoRequest
        );
        assert_eq!(l.purge_lapsed_requests(at(47)).unwrap(), 0);
        assert_eq!(l.purge_lapsed_requests(at(48)).unwrap(), 1);
        assert_eq!(state(&l, "a@x.org"), None);
    }

    #[test]
    fn unsubscribe_wins_over_any_state_and_a_pending_request() {
        let (_dir, l) = ledger();
        // A reader of the file the table has never seen.
        assert_eq!(
            l.unsubscribe("file@x.org", at(0)).unwrap(),
            Unsubscribed::Unsubscribed
        );
        let s = l.web_subscriber("file@x.org").unwrap().unwrap();
        assert_eq!(
            (s.state.as_str(), s.source.as_str()),
            ("unsubscribed", "file")
        );
        assert_eq!(
            l.unsubscribe("file@x.org", at(1)).unwrap(),
            Unsubscribed::AlreadyUnsubscribed
        );
        // Asked, then unsubscribed before confirming: the old link confirms nothing.
        l.request_subscription(&request("b@x.org", &[], at(0)), at(0))
            .unwrap();
        l.unsubscribe("b@x.org", at(1)).unwrap();
        assert_eq!(
            l.confirm_subscription("b@x.org", at(2)).unwrap(),
            Confirmed::NoRequest
        );
        assert_eq!(state(&l, "b@x.org").as_deref(), Some("unsubscribed"));
        // Coming back takes a new request and its confirmation.
        l.request_subscription(&request("b@x.org", &[], at(3)), at(3))
            .unwrap();
        assert_eq!(state(&l, "b@x.org").as_deref(), Some("unsubscribed"));
        assert_eq!(suppression_of(&l, "b@x.org").as_deref(), Some(UNSUBSCRIBED));
        l.confirm_subscription("b@x.org", at(4)).unwrap();
        assert_eq!(state(&l, "b@x.org").as_deref(), Some("confirmed"));
        assert_eq!(suppression_of(&l, "b@x.org"), None, "lifted");
    }

    #[test]
    fn suppressed_addresses_get_no_confirmation() {
        let (_dir, l) = ledger();
        l.with("suppress", |c| {
            super::super::suppressions::add(c, "bounced@x.org", "550 5.1.1 no such user")
        })
        .unwrap();
        assert_eq!(
            l.request_subscription(&request("bounced@X.org", &[], at(0)), at(0))
                .unwrap(),
            Requested::Suppressed
        );
        assert_eq!(state(&l, "bounced@x.org"), None);
        // Unsubscribing keeps the bounce's reason, and confirming never lifts it.
        l.unsubscribe("bounced@x.org", at(1)).unwrap();
        assert_eq!(
            suppression_of(&l, "bounced@x.org").as_deref(),
            Some("550 5.1.1 no such user")
        );
    }

    #[test]
    fn the_backend_purges_lapsed_requests_as_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let subs = LedgerSubscriptions::open(&dir.path().join("l.sqlite")).unwrap();
        subs.request(&request("a@x.org", &[], at(0)), at(0))
            .unwrap();
        subs.request(&request("b@x.org", &[], at(50)), at(50))
            .unwrap();
        let l = SqliteStore::open(&dir.path().join("l.sqlite")).unwrap();
        assert_eq!(state(&l, "a@x.org"), None);
        assert_eq!(state(&l, "b@x.org").as_deref(), Some("pending"));
    }
}
