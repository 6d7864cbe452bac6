//! Subscribers in the ledger: the `subscribers` table (state, source, name, topics, timestamps)
//! and the `subscription_requests` waiting for their confirmation (double opt-in); the SQLite
//! side of the subscriber operations of [`crate::store::Store`] (the states and what each
//! operation answers are in [`crate::store::subscribers`]).
//!
//! A request never changes a subscriber by itself (anyone can type any address into the form):
//! it waits in `subscription_requests` until its link is opened, so a confirmed reader's topics
//! change only when the reader confirms, and an unsubscribed reader comes back only the same
//! way. Suppressed (bounced) addresses get no confirmation email. Times are Unix seconds, UTC.
//!
//! An unsubscribe also puts the address on the suppression list (reason [`UNSUBSCRIBED`]), which
//! every send and every claim already honours, so it holds for readers of the subscriber file
//! too, during a send as well; confirming a new request lifts that suppression, never a
//! bounce's.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::store::{
    Added, Confirmed, NewSubscriber, Removed, Requested, Source, SubscriberCounts, SubscriberRow,
    SubscriberState, SubscriptionChange, SubscriptionChanged, SubscriptionRequest, Unsubscribed,
    UNSUBSCRIBED,
};

/// The tables, created on every open (`IF NOT EXISTS`), by [`super::schema`].
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscribers (
    address TEXT PRIMARY KEY,  -- lowercased: the key, as in deliveries and suppressions
    email TEXT NOT NULL,       -- as the reader wrote it
    name TEXT,
    topics TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings; empty: every issue
    state TEXT NOT NULL CHECK (state IN ('pending','confirmed','unsubscribed','bounced')),
    source TEXT NOT NULL CHECK (source IN ('file','web','import','cli')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    confirmed_at INTEGER,
    unsubscribed_at INTEGER,
    listed_run INTEGER         -- the last publish (Unix ms) whose subscribers.toml listed it
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

/// Versions 3 and 4 → 5, before [`SCHEMA`]: the table is set aside (its `CHECK` of the source
/// gains `cli`, and it gains `listed_run`) ...
pub(super) const SET_ASIDE_4: &str = "ALTER TABLE subscribers RENAME TO subscribers_v4;";

/// ... and copied back after it.
pub(super) const COPY_4_TO_5: &str = "
INSERT INTO subscribers (address, email, name, topics, state, source, created_at, updated_at,
                         confirmed_at, unsubscribed_at)
SELECT address, email, name, topics, state, source, created_at, updated_at, confirmed_at,
       unsubscribed_at
FROM subscribers_v4;
DROP TABLE subscribers_v4;
";

const COLUMNS: &str = "address, email, name, topics, state, source, created_at, updated_at, \
                       confirmed_at, unsubscribed_at";

/// See [`crate::store::Store::request_subscription`].
pub(super) fn request(
    conn: &mut Connection,
    request: &SubscriptionRequest,
    now: DateTime<Utc>,
) -> Result<Requested> {
    in_transaction(conn, |tx| request_in(tx, request, now))
}

/// [`request`] inside the caller's transaction.
fn request_in(
    tx: &Connection,
    request: &SubscriptionRequest,
    now: DateTime<Utc>,
) -> Result<Requested> {
    let key = request.address.to_lowercase();
    let now = now.timestamp();
    let topics = serde_json::to_string(&request.topics)?;
    if suppressed_otherwise(tx, &key)? || state_of(tx, &key)? == Some(SubscriberState::Bounced) {
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
    Ok(Requested::MailConfirmation)
}

/// See [`crate::store::Store::confirm_subscription`].
pub(super) fn confirm(conn: &mut Connection, key: &str, now: DateTime<Utc>) -> Result<Confirmed> {
    in_transaction(conn, |tx| confirm_in(tx, key, now))
}

/// [`confirm`] inside the caller's transaction.
fn confirm_in(tx: &Connection, key: &str, now: DateTime<Utc>) -> Result<Confirmed> {
    let now = now.timestamp();
    let request: Option<(String, Option<String>, String)> = tx
        .prepare_cached(
            "SELECT email, name, topics FROM subscription_requests
             WHERE address = ?1 AND expires_at > ?2",
        )?
        .query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let outcome = match request {
        Some((email, name, topics)) => {
            tx.prepare_cached(
                "INSERT INTO subscribers
                     (address, email, name, topics, state, source, created_at, updated_at,
                      confirmed_at)
                 VALUES (?1, ?2, ?3, ?4, 'confirmed', 'web', ?5, ?5, ?5)
                 ON CONFLICT (address) DO UPDATE SET
                     email = excluded.email, name = excluded.name, topics = excluded.topics,
                     state = 'confirmed', source = 'web', updated_at = ?5, confirmed_at = ?5",
            )?
            .execute(params![key, email, name, topics, now])?;
            tx.prepare_cached("DELETE FROM subscription_requests WHERE address = ?1")?
                .execute(params![key])?;
            tx.prepare_cached("DELETE FROM suppressions WHERE address = ?1 AND reason = ?2")?
                .execute(params![key, UNSUBSCRIBED])?;
            Confirmed::Confirmed
        }
        None if state_of(tx, key)? == Some(SubscriberState::Confirmed) => {
            Confirmed::AlreadyConfirmed
        }
        None => Confirmed::NoRequest,
    };
    Ok(outcome)
}

/// See [`crate::store::Store::unsubscribe`].
pub(super) fn unsubscribe(
    conn: &mut Connection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Unsubscribed> {
    in_transaction(conn, |tx| unsubscribe_in(tx, key, now))
}

/// [`unsubscribe`] inside the caller's transaction.
fn unsubscribe_in(tx: &Connection, key: &str, now: DateTime<Utc>) -> Result<Unsubscribed> {
    let now = now.timestamp();
    tx.prepare_cached("DELETE FROM subscription_requests WHERE address = ?1")?
        .execute(params![key])?;
    let outcome = if state_of(tx, key)? == Some(SubscriberState::Unsubscribed) {
        Unsubscribed::AlreadyUnsubscribed
    } else {
        tx.prepare_cached(
            "INSERT INTO subscribers
                 (address, email, state, source, created_at, updated_at, unsubscribed_at)
             VALUES (?1, ?1, 'unsubscribed', 'file', ?2, ?2, ?2)
             ON CONFLICT (address) DO UPDATE SET
                 state = 'unsubscribed', updated_at = ?2, unsubscribed_at = ?2",
        )?
        .execute(params![key, now])?;
        Unsubscribed::Unsubscribed
    };
    // Honoured by the next send and the next claim whoever the reader is (file or web): a
    // suppression, unless one is there already (a bounce keeps its reply).
    tx.prepare_cached(
        "INSERT OR IGNORE INTO suppressions (address, reason, issue, suppressed_at)
         VALUES (?1, ?2, NULL, ?3)",
    )?
    .execute(params![key, UNSUBSCRIBED, now])?;
    Ok(outcome)
}

/// See [`crate::store::Store::change_subscriptions`]: every change in one write transaction,
/// each inside a savepoint of its own, so a change that fails is rolled back alone and the
/// others are kept. `Err` when the transaction could not begin or commit (then nothing was
/// made).
pub(super) fn change_all(
    conn: &mut Connection,
    changes: &[SubscriptionChange],
) -> Result<Vec<Result<SubscriptionChanged>>> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(changes.len());
    for change in changes {
        let savepoint = tx.savepoint()?;
        let answer = match change {
            SubscriptionChange::Request(request, now) => {
                request_in(&savepoint, request, *now).map(SubscriptionChanged::Requested)
            }
            SubscriptionChange::Confirm(key, now) => {
                confirm_in(&savepoint, key, *now).map(SubscriptionChanged::Confirmed)
            }
            SubscriptionChange::Unsubscribe(key, now) => {
                unsubscribe_in(&savepoint, key, *now).map(SubscriptionChanged::Unsubscribed)
            }
        };
        if answer.is_ok() {
            savepoint.commit()?;
        } // else dropped: rolled back to where this change began.
        answers.push(answer);
    }
    tx.commit()?;
    Ok(answers)
}

/// Runs `f` in a write transaction of its own (`BEGIN IMMEDIATE`: the write lock is taken
/// first, so the reads `f` makes cannot go stale before its writes) and commits what it did
/// when it returns `Ok`.
fn in_transaction<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let answer = f(&tx)?;
    tx.commit()?;
    Ok(answer)
}

/// See [`crate::store::Store::purge_lapsed_requests`].
pub(super) fn purge_lapsed(conn: &mut Connection, now: DateTime<Utc>) -> Result<u64> {
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
    Ok(gone as u64)
}

/// See [`crate::store::Store::subscriber`].
pub(super) fn get(conn: &mut Connection, key: &str) -> Result<Option<SubscriberRow>> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM subscribers WHERE address = ?1"
        ))?
        .query_row(params![key], RawRow::read)
        .optional()?;
    raw.map(RawRow::into_row).transpose()
}

/// See [`crate::store::Store::subscribers`].
pub(super) fn page(conn: &mut Connection, after: &str, limit: usize) -> Result<Vec<SubscriberRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let raws = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM subscribers WHERE address > ?1 ORDER BY address LIMIT ?2"
        ))?
        .query_map(params![after, limit], RawRow::read)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(RawRow::into_row).collect()
}

/// See [`crate::store::Store::subscriber_counts`].
pub(super) fn counts(conn: &mut Connection) -> Result<SubscriberCounts> {
    let mut counts = SubscriberCounts::default();
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM subscribers GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (state, n) = row?;
        counts.add(SubscriberState::parse(&state)?, n as u64);
    }
    Ok(counts)
}

/// See [`crate::store::Store::add_subscribers`].
pub(super) fn add(
    conn: &mut Connection,
    new: &[NewSubscriber<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Added>> {
    let now = now.timestamp();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(new.len());
    for n in new {
        let suppression = super::suppressions::reason(&tx, n.key)?;
        let state = state_of(&tx, n.key)?;
        let answer = Added::decide(state, suppression.as_deref());
        if matches!(answer, Added::Added | Added::Updated) {
            tx.prepare_cached(
                "INSERT INTO subscribers
                     (address, email, name, topics, state, source, created_at, updated_at,
                      confirmed_at)
                 VALUES (?1, ?2, ?3, ?4, 'confirmed', ?5, ?6, ?6, ?6)
                 ON CONFLICT (address) DO UPDATE SET
                     email = excluded.email, name = excluded.name, topics = excluded.topics,
                     state = 'confirmed', source = excluded.source, updated_at = ?6,
                     confirmed_at = ?6",
            )?
            .execute(params![
                n.key,
                n.email,
                n.name,
                serde_json::to_string(n.topics)?,
                n.source.as_str(),
                now
            ])?;
            tx.prepare_cached("DELETE FROM subscription_requests WHERE address = ?1")?
                .execute(params![n.key])?;
        }
        answers.push(answer);
    }
    tx.commit()?;
    Ok(answers)
}

/// See [`crate::store::Store::remove_subscriber`].
pub(super) fn remove(conn: &mut Connection, key: &str) -> Result<Removed> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcome = match state_of(&tx, key)? {
        None => Removed::NotFound,
        Some(state @ (SubscriberState::Unsubscribed | SubscriberState::Bounced)) => {
            Removed::Kept(state)
        }
        Some(SubscriberState::Pending | SubscriberState::Confirmed) => {
            tx.prepare_cached("DELETE FROM subscribers WHERE address = ?1")?
                .execute(params![key])?;
            Removed::Removed
        }
    };
    tx.prepare_cached("DELETE FROM subscription_requests WHERE address = ?1")?
        .execute(params![key])?;
    tx.commit()?;
    Ok(outcome)
}

/// See [`crate::store::Store::list_file_subscribers`].
pub(super) fn list_file(
    conn: &mut Connection,
    listed: &[NewSubscriber<'_>],
    run: i64,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let now = now.timestamp();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut blocked = Vec::new();
    {
        // A confirmed subscriber of the file takes the file's word, and so does one still
        // pending on the web (the file mails it: it is confirmed, by the editor; its request
        // waits, and confirming it makes it the reader's own). Any other is only marked. Every
        // CASE reads the row as it was before this update.
        let takes_file = "(state = 'pending' OR (source = 'file' AND state = 'confirmed'))";
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO subscribers
                 (address, email, name, topics, state, source, created_at, updated_at,
                  confirmed_at, listed_run)
             VALUES (?1, ?2, ?3, ?4, 'confirmed', 'file', ?5, ?5, ?5, ?6)
             ON CONFLICT (address) DO UPDATE SET
                 listed_run = ?6,
                 updated_at = CASE WHEN {takes_file}
                     AND (state = 'pending' OR email IS NOT excluded.email
                          OR name IS NOT excluded.name OR topics IS NOT excluded.topics)
                     THEN ?5 ELSE updated_at END,
                 email = CASE WHEN {takes_file} THEN excluded.email ELSE email END,
                 name = CASE WHEN {takes_file} THEN excluded.name ELSE name END,
                 topics = CASE WHEN {takes_file} THEN excluded.topics ELSE topics END,
                 confirmed_at = CASE WHEN state = 'pending' THEN ?5 ELSE confirmed_at END,
                 source = CASE WHEN state = 'pending' THEN 'file' ELSE source END,
                 state = CASE WHEN state = 'pending' THEN 'confirmed' ELSE state END"
        ))?;
        let mut state = tx.prepare_cached("SELECT state FROM subscribers WHERE address = ?1")?;
        for n in listed {
            upsert.execute(params![
                n.key,
                n.email,
                n.name,
                serde_json::to_string(n.topics)?,
                now,
                run
            ])?;
            let s: String = state.query_row(params![n.key], |r| r.get(0))?;
            if matches!(s.as_str(), "unsubscribed" | "bounced") {
                blocked.push(n.key.to_string());
            }
        }
    }
    tx.commit()?;
    Ok(blocked)
}

/// See [`crate::store::Store::prune_file_subscribers`].
pub(super) fn prune_file(conn: &mut Connection, run: i64) -> Result<u64> {
    let gone = conn.execute(
        "DELETE FROM subscribers WHERE source = 'file' AND state = 'confirmed'
         AND (listed_run IS NULL OR listed_run <> ?1)",
        params![run],
    )?;
    Ok(gone as u64)
}

/// Whether `key` is on the suppression list for another reason than its unsubscribe.
fn suppressed_otherwise(conn: &Connection, key: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM suppressions WHERE address = ?1 AND reason <> ?2")?
        .exists(params![key, UNSUBSCRIBED])?)
}

fn state_of(conn: &Connection, key: &str) -> Result<Option<SubscriberState>> {
    conn.prepare_cached("SELECT state FROM subscribers WHERE address = ?1")?
        .query_row(params![key], |r| r.get::<_, String>(0))
        .optional()?
        .map(|s| SubscriberState::parse(&s))
        .transpose()
}

/// A row as read, before its text columns are parsed.
struct RawRow {
    address: String,
    email: String,
    name: Option<String>,
    topics: String,
    state: String,
    source: String,
    times: [Option<i64>; 4],
}

impl RawRow {
    fn read(r: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            address: r.get(0)?,
            email: r.get(1)?,
            name: r.get(2)?,
            topics: r.get(3)?,
            state: r.get(4)?,
            source: r.get(5)?,
            times: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
        })
    }

    fn into_row(self) -> Result<SubscriberRow> {
        let topics = serde_json::from_str(&self.topics).with_context(|| {
            format!("the topics of `{}` in the ledger are damaged", self.address)
        })?;
        let [created_at, updated_at, confirmed_at, unsubscribed_at] = self.times;
        Ok(SubscriberRow {
            state: SubscriberState::parse(&self.state)?,
            source: Source::parse(&self.source)?,
            address: self.address,
            email: self.email,
            name: self.name,
            topics,
            created_at: created_at.unwrap_or_default(),
            updated_at: updated_at.unwrap_or_default(),
            confirmed_at,
            unsubscribed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// The operations called straight on the connection, without a runtime.
    trait Ops {
        fn request_subscription(
            &self,
            r: &SubscriptionRequest,
            now: DateTime<Utc>,
        ) -> Result<Requested>;
        fn confirm_subscription(&self, key: &str, now: DateTime<Utc>) -> Result<Confirmed>;
        fn unsubscribe(&self, key: &str, now: DateTime<Utc>) -> Result<Unsubscribed>;
        fn purge_lapsed_requests(&self, now: DateTime<Utc>) -> Result<u64>;
        fn web_subscriber(&self, key: &str) -> Result<Option<SubscriberRow>>;
        fn add(&self, new: &[NewSubscriber<'_>], now: DateTime<Utc>) -> Vec<Added>;
    }

    impl Ops for SqliteStore {
        fn request_subscription(
            &self,
            r: &SubscriptionRequest,
            now: DateTime<Utc>,
        ) -> Result<Requested> {
            self.with("t", |c| super::request(c, r, now))
        }
        fn confirm_subscription(&self, key: &str, now: DateTime<Utc>) -> Result<Confirmed> {
            self.with("t", |c| confirm(c, key, now))
        }
        fn unsubscribe(&self, key: &str, now: DateTime<Utc>) -> Result<Unsubscribed> {
            self.with("t", |c| unsubscribe(c, key, now))
        }
        fn purge_lapsed_requests(&self, now: DateTime<Utc>) -> Result<u64> {
            self.with("t", |c| purge_lapsed(c, now))
        }
        fn web_subscriber(&self, key: &str) -> Result<Option<SubscriberRow>> {
            self.with("t", |c| get(c, key))
        }
        fn add(&self, new: &[NewSubscriber<'_>], now: DateTime<Utc>) -> Vec<Added> {
            self.with("t", |c| add(c, new, now)).unwrap()
        }
    }

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
        l.web_subscriber(address)
            .unwrap()
            .map(|s| s.state.as_str().to_string())
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

    #[tokio::test]
    async fn the_backend_purges_lapsed_requests_as_it_goes() {
        use crate::serve::{StoreSubscriptions, Subscriptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let subs = StoreSubscriptions::new(Box::new(SqliteStore::open(&path).unwrap()));
        subs.request(&request("a@x.org", &[], at(0)), at(0))
            .await
            .unwrap();
        subs.request(&request("b@x.org", &[], at(50)), at(50))
            .await
            .unwrap();
        let l = SqliteStore::open(&path).unwrap();
        assert_eq!(state(&l, "a@x.org"), None);
        assert_eq!(state(&l, "b@x.org").as_deref(), Some("pending"));
    }

    #[test]
    fn a_batch_of_changes_answers_each_and_a_failing_change_is_rolled_back_alone() {
        let (_dir, l) = ledger();
        // A subscriber row the database refuses: the change fails after its request was
        // written, which its savepoint must take back.
        l.with("refuse", |c| {
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON subscribers
                 WHEN NEW.address = 'refused@x.org'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )?;
            Ok(())
        })
        .unwrap();
        l.request_subscription(&request("c@x.org", &[], at(0)), at(0))
            .unwrap();
        let changes = [
            SubscriptionChange::Request(request("A@x.org", &["rust"], at(1)), at(1)),
            SubscriptionChange::Request(request("refused@x.org", &[], at(1)), at(1)),
            SubscriptionChange::Confirm("a@x.org".into(), at(1)),
            SubscriptionChange::Confirm("c@x.org".into(), at(1)),
            SubscriptionChange::Unsubscribe("c@x.org".into(), at(2)),
            SubscriptionChange::Unsubscribe("c@x.org".into(), at(2)),
        ];
        let answers = l.with("t", |c| change_all(c, &changes)).unwrap();
        let answers: Vec<_> = answers
            .into_iter()
            .map(|a| a.map_err(|e| format!("{e:#}")))
            .collect();
        assert_eq!(
            answers[0],
            Ok(SubscriptionChanged::Requested(Requested::MailConfirmation))
        );
        assert!(
            answers[1]
                .as_ref()
                .unwrap_err()
                .contains("refused by the test"),
            "{answers:?}"
        );
        assert_eq!(
            answers[2],
            Ok(SubscriptionChanged::Confirmed(Confirmed::Confirmed))
        );
        assert_eq!(
            answers[3],
            Ok(SubscriptionChanged::Confirmed(Confirmed::Confirmed))
        );
        assert_eq!(
            answers[4],
            Ok(SubscriptionChanged::Unsubscribed(
                Unsubscribed::Unsubscribed
            ))
        );
        assert_eq!(
            answers[5],
            Ok(SubscriptionChanged::Unsubscribed(
                Unsubscribed::AlreadyUnsubscribed
            ))
        );
        // Each change saw the ones before it; the refused one left nothing behind.
        let a = l.web_subscriber("a@x.org").unwrap().unwrap();
        assert_eq!(
            (a.state.as_str(), a.email.as_str()),
            ("confirmed", "A@x.org")
        );
        assert_eq!(a.topics, ["rust"]);
        assert_eq!(state(&l, "c@x.org").as_deref(), Some("unsubscribed"));
        assert_eq!(state(&l, "refused@x.org"), None);
        let requests: i64 = l
            .with("count", |c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM subscription_requests WHERE address = 'refused@x.org'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(requests, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_backend_answers_concurrent_requests_each_with_its_own_answer() {
        use crate::serve::{Confirmed as C, StoreSubscriptions, Subscriptions};
        use std::sync::Arc;
        let (_dir, path) = crate::store::sqlite::testing::ledger_path();
        let subs = Arc::new(StoreSubscriptions::new(Box::new(
            SqliteStore::open(&path).unwrap(),
        )));
        let now = Utc::now();
        // 200 readers at once: odd ones ask and confirm, even ones ask and leave.
        let readers = (0..200).map(|i| {
            let subs = Arc::clone(&subs);
            tokio::spawn(async move {
                let address = format!("reader{i}@x.org");
                let asked = subs.request(&request(&address, &[], now), now).await?;
                assert_eq!(asked, Requested::MailConfirmation);
                if i % 2 == 1 {
                    assert_eq!(subs.confirm(&address, now).await?, C::Confirmed);
                    assert_eq!(subs.confirm(&address, now).await?, C::AlreadyConfirmed);
                } else {
                    assert_eq!(
                        subs.unsubscribe(&address, now).await?,
                        Unsubscribed::Unsubscribed
                    );
                    assert_eq!(subs.confirm(&address, now).await?, C::NoRequest);
                }
                anyhow::Ok(())
            })
        });
        for reader in readers.collect::<Vec<_>>() {
            reader.await.unwrap().unwrap();
        }
        let l = SqliteStore::open(&path).unwrap();
        for i in 0..200 {
            let want = if i % 2 == 1 {
                "confirmed"
            } else {
                "unsubscribed"
            };
            assert_eq!(
                state(&l, &format!("reader{i}@x.org")).as_deref(),
                Some(want)
            );
        }
    }

    fn new<'a>(key: &'a str, topics: &'a [String], source: Source) -> NewSubscriber<'a> {
        NewSubscriber {
            key,
            email: key,
            name: None,
            topics,
            source,
        }
    }

    #[test]
    fn the_editor_adds_and_updates_but_never_brings_back_who_left() {
        let (_dir, l) = ledger();
        let rust = vec!["Rust".to_string()];
        l.request_subscription(&request("p@x.org", &[], at(0)), at(0))
            .unwrap();
        l.unsubscribe("gone@x.org", at(0)).unwrap();
        l.with("suppress", |c| {
            super::super::suppressions::add(c, "bad@x.org", "550 5.1.1 no such user")
        })
        .unwrap();
        let answers = l.add(
            &[
                new("a@x.org", &rust, Source::Cli),
                new("p@x.org", &[], Source::Import),
                new("gone@x.org", &[], Source::Import),
                new("bad@x.org", &[], Source::Import),
            ],
            at(1),
        );
        assert_eq!(
            answers,
            [
                Added::Added,
                Added::Updated,
                Added::Unsubscribed,
                Added::Suppressed
            ]
        );
        let a = l.web_subscriber("a@x.org").unwrap().unwrap();
        assert_eq!(
            (a.state, a.source, a.topics),
            (SubscriberState::Confirmed, Source::Cli, rust.clone())
        );
        let p = l.web_subscriber("p@x.org").unwrap().unwrap();
        assert_eq!(
            (p.state, p.source),
            (SubscriberState::Confirmed, Source::Import)
        );
        // The editor's word replaced the request: its link confirms nothing now.
        assert_eq!(
            l.confirm_subscription("p@x.org", at(2)).unwrap(),
            Confirmed::AlreadyConfirmed
        );
        assert_eq!(state(&l, "gone@x.org").as_deref(), Some("unsubscribed"));
        assert_eq!(state(&l, "bad@x.org"), None);
        // Removing: a confirmed one goes, the record of one who left stays.
        assert_eq!(
            l.with("t", |c| remove(c, "a@x.org")).unwrap(),
            Removed::Removed
        );
        assert_eq!(
            l.with("t", |c| remove(c, "a@x.org")).unwrap(),
            Removed::NotFound
        );
        assert_eq!(
            l.with("t", |c| remove(c, "gone@x.org")).unwrap(),
            Removed::Kept(SubscriberState::Unsubscribed)
        );
        let counts = l.with("t", counts).unwrap();
        assert_eq!(
            (counts.confirmed, counts.unsubscribed, counts.pending),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_pending_reader_the_file_lists_is_confirmed_by_the_file_until_it_confirms_itself() {
        let (_dir, l) = ledger();
        l.request_subscription(&request("p@x.org", &["Rust"], at(0)), at(0))
            .unwrap();
        assert_eq!(state(&l, "p@x.org").as_deref(), Some("pending"));
        // The editor's file lists it: mailed, so confirmed, with the file's name and topics.
        let sofa = vec!["SOFA".to_string()];
        let listed = [NewSubscriber {
            name: Some("From the file"),
            ..new("p@x.org", &sofa, Source::File)
        }];
        assert!(l
            .with("t", |c| list_file(c, &listed, 1, at(1)))
            .unwrap()
            .is_empty());
        let p = l.web_subscriber("p@x.org").unwrap().unwrap();
        assert_eq!(
            (p.state, p.source, p.name.as_deref(), p.topics.clone()),
            (
                SubscriberState::Confirmed,
                Source::File,
                Some("From the file"),
                sofa.clone()
            )
        );
        // Its request still waits: confirming it makes the subscription the reader's own.
        assert_eq!(
            l.confirm_subscription("p@x.org", at(2)).unwrap(),
            Confirmed::Confirmed
        );
        let p = l.web_subscriber("p@x.org").unwrap().unwrap();
        assert_eq!(
            (p.state, p.source, p.topics),
            (
                SubscriberState::Confirmed,
                Source::Web,
                vec!["Rust".to_string()]
            )
        );
    }

    #[test]
    fn the_file_is_read_in_and_what_left_it_is_pruned() {
        let (_dir, l) = ledger();
        let mosn = vec!["MOSN".to_string()];
        let run1 = [
            new("f@x.org", &mosn, Source::File),
            new("g@x.org", &[], Source::File),
        ];
        assert!(l
            .with("t", |c| list_file(c, &run1, 1, at(0)))
            .unwrap()
            .is_empty());
        assert_eq!(l.with("t", |c| prune_file(c, 1)).unwrap(), 0);
        // g unsubscribes; a web reader confirms who is also in the file.
        l.unsubscribe("g@x.org", at(1)).unwrap();
        l.request_subscription(&request("w@x.org", &["Rust"], at(1)), at(1))
            .unwrap();
        l.confirm_subscription("w@x.org", at(1)).unwrap();
        // The next run: f left the file, g and w are in it.
        let run2 = [
            new("g@x.org", &[], Source::File),
            new("w@x.org", &[], Source::File),
        ];
        let blocked = l.with("t", |c| list_file(c, &run2, 2, at(2))).unwrap();
        assert_eq!(blocked, ["g@x.org"]);
        assert_eq!(l.with("t", |c| prune_file(c, 2)).unwrap(), 1);
        assert_eq!(state(&l, "f@x.org"), None);
        let w = l.web_subscriber("w@x.org").unwrap().unwrap();
        assert_eq!(
            (w.source, w.topics),
            (Source::Web, vec!["Rust".to_string()])
        );
        assert_eq!(state(&l, "g@x.org").as_deref(), Some("unsubscribed"));
        // g comes back by the web and confirms: the reader's own opt-in, which outlives the
        // file's entry.
        l.request_subscription(&request("g@x.org", &["SOFA"], at(3)), at(3))
            .unwrap();
        l.confirm_subscription("g@x.org", at(3)).unwrap();
        let run3 = [new("w@x.org", &[], Source::File)];
        assert!(l
            .with("t", |c| list_file(c, &run3, 3, at(4)))
            .unwrap()
            .is_empty());
        assert_eq!(l.with("t", |c| prune_file(c, 3)).unwrap(), 0);
        let g = l.web_subscriber("g@x.org").unwrap().unwrap();
        assert_eq!(
            (g.state, g.source, g.topics),
            (
                SubscriberState::Confirmed,
                Source::Web,
                vec!["SOFA".to_string()]
            )
        );
    }
}
