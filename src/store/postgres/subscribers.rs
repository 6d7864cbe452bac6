//! Subscribers on PostgreSQL (see [`crate::store::subscribers`]): the same operations as the
//! SQLite store's, for several `feedpost serve` and `publish` processes at once.
//!
//! What SQLite gets from writing one transaction at a time, this gets from a transaction-level
//! advisory lock per address (`pg_advisory_xact_lock`), taken before an operation reads the
//! address's state and released at commit: two servers handling a subscribe and an unsubscribe
//! of one reader apply them one after the other, never interleaved. Topics are kept as a JSON
//! array in text, as in the SQLite store.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use crate::store::{
    Added, Confirmed, NewSubscriber, Removed, Requested, Source, SubscriberCounts, SubscriberRow,
    SubscriberState, SubscriptionRequest, Unsubscribed, UNSUBSCRIBED,
};

const COLUMNS: &str = "address, email, name, topics, state, source, created_at, updated_at, \
                       confirmed_at, unsubscribed_at";

/// Serializes every operation on `key` until the transaction ends.
async fn lock(tx: &Transaction<'_>, key: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await?;
    Ok(())
}

async fn state_of(tx: &Transaction<'_>, key: &str) -> Result<Option<SubscriberState>> {
    tx.query_opt("SELECT state FROM subscribers WHERE address = $1", &[&key])
        .await?
        .map(|r| SubscriberState::parse(r.get(0)))
        .transpose()
}

/// See [`crate::store::Store::request_subscription`].
pub(super) async fn request(
    tx: &Transaction<'_>,
    request: &SubscriptionRequest,
    now: DateTime<Utc>,
) -> Result<Requested> {
    let key = request.address.to_lowercase();
    let now = now.timestamp();
    lock(tx, &key).await?;
    let suppressed_otherwise = super::suppressions::reason(tx, &key)
        .await?
        .is_some_and(|reason| reason != UNSUBSCRIBED);
    if suppressed_otherwise || state_of(tx, &key).await? == Some(SubscriberState::Bounced) {
        return Ok(Requested::Suppressed);
    }
    let topics = serde_json::to_string(&request.topics)?;
    tx.execute(
        "INSERT INTO subscription_requests (address, email, name, topics, requested_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (address) DO UPDATE SET email = excluded.email, name = excluded.name,
             topics = excluded.topics, requested_at = excluded.requested_at,
             expires_at = excluded.expires_at",
        &[
            &key,
            &request.address,
            &request.name,
            &topics,
            &now,
            &request.expires.timestamp(),
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO subscribers (address, email, name, topics, state, source, created_at, updated_at)
         VALUES ($1, $2, NULL, '[]', 'pending', 'web', $3, $3)
         ON CONFLICT DO NOTHING",
        &[&key, &request.address, &now],
    )
    .await?;
    Ok(Requested::MailConfirmation)
}

/// See [`crate::store::Store::confirm_subscription`].
pub(super) async fn confirm(
    tx: &Transaction<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Confirmed> {
    let now = now.timestamp();
    lock(tx, key).await?;
    let request = tx
        .query_opt(
            "SELECT email, name, topics FROM subscription_requests
             WHERE address = $1 AND expires_at > $2",
            &[&key, &now],
        )
        .await?;
    Ok(match request {
        Some(r) => {
            let (email, name, topics): (String, Option<String>, String) =
                (r.get(0), r.get(1), r.get(2));
            tx.execute(
                "INSERT INTO subscribers
                     (address, email, name, topics, state, source, created_at, updated_at, confirmed_at)
                 VALUES ($1, $2, $3, $4, 'confirmed', 'web', $5, $5, $5)
                 ON CONFLICT (address) DO UPDATE SET
                     email = excluded.email, name = excluded.name, topics = excluded.topics,
                     state = 'confirmed', source = 'web', updated_at = $5, confirmed_at = $5",
                &[&key, &email, &name, &topics, &now],
            )
            .await?;
            tx.execute(
                "DELETE FROM subscription_requests WHERE address = $1",
                &[&key],
            )
            .await?;
            tx.execute(
                "DELETE FROM suppressions WHERE address = $1 AND reason = $2",
                &[&key, &UNSUBSCRIBED],
            )
            .await?;
            Confirmed::Confirmed
        }
        None if state_of(tx, key).await? == Some(SubscriberState::Confirmed) => {
            Confirmed::AlreadyConfirmed
        }
        None => Confirmed::NoRequest,
    })
}

/// See [`crate::store::Store::unsubscribe`].
pub(super) async fn unsubscribe(
    tx: &Transaction<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Unsubscribed> {
    let now = now.timestamp();
    lock(tx, key).await?;
    tx.execute(
        "DELETE FROM subscription_requests WHERE address = $1",
        &[&key],
    )
    .await?;
    let outcome = if state_of(tx, key).await? == Some(SubscriberState::Unsubscribed) {
        Unsubscribed::AlreadyUnsubscribed
    } else {
        tx.execute(
            "INSERT INTO subscribers
                 (address, email, state, source, created_at, updated_at, unsubscribed_at)
             VALUES ($1, $1, 'unsubscribed', 'file', $2, $2, $2)
             ON CONFLICT (address) DO UPDATE SET
                 state = 'unsubscribed', updated_at = $2, unsubscribed_at = $2",
            &[&key, &now],
        )
        .await?;
        Unsubscribed::Unsubscribed
    };
    tx.execute(
        "INSERT INTO suppressions (address, reason, issue, suppressed_at) VALUES ($1, $2, NULL, $3)
         ON CONFLICT DO NOTHING",
        &[&key, &UNSUBSCRIBED, &now],
    )
    .await?;
    Ok(outcome)
}

/// See [`crate::store::Store::purge_lapsed_requests`].
pub(super) async fn purge_lapsed(tx: &Transaction<'_>, now: DateTime<Utc>) -> Result<u64> {
    tx.execute(
        "DELETE FROM subscription_requests WHERE expires_at <= $1",
        &[&now.timestamp()],
    )
    .await?;
    Ok(tx
        .execute(
            "DELETE FROM subscribers s WHERE s.state = 'pending'
             AND NOT EXISTS (SELECT 1 FROM subscription_requests r WHERE r.address = s.address)",
            &[],
        )
        .await?)
}

/// See [`crate::store::Store::subscriber`].
pub(super) async fn get(tx: &Transaction<'_>, key: &str) -> Result<Option<SubscriberRow>> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM subscribers WHERE address = $1"),
        &[&key],
    )
    .await?
    .map(|r| read(&r))
    .transpose()
}

/// See [`crate::store::Store::subscribers`]: keys compared bytewise (`COLLATE "C"`).
pub(super) async fn page(
    tx: &Transaction<'_>,
    after: &str,
    limit: usize,
) -> Result<Vec<SubscriberRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    tx.query(
        &format!(
            "SELECT {COLUMNS} FROM subscribers WHERE address COLLATE \"C\" > $1
             ORDER BY address COLLATE \"C\" LIMIT $2"
        ),
        &[&after, &limit],
    )
    .await?
    .iter()
    .map(read)
    .collect()
}

/// See [`crate::store::Store::subscriber_counts`].
pub(super) async fn counts(tx: &Transaction<'_>) -> Result<SubscriberCounts> {
    let mut counts = SubscriberCounts::default();
    for r in tx
        .query(
            "SELECT state, COUNT(*) FROM subscribers GROUP BY state",
            &[],
        )
        .await?
    {
        counts.add(SubscriberState::parse(r.get(0))?, r.get::<_, i64>(1) as u64);
    }
    Ok(counts)
}

/// See [`crate::store::Store::add_subscribers`].
pub(super) async fn add(
    tx: &Transaction<'_>,
    new: &[NewSubscriber<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Added>> {
    let now = now.timestamp();
    let mut answers = Vec::with_capacity(new.len());
    for n in new {
        lock(tx, n.key).await?;
        let suppression = super::suppressions::reason(tx, n.key).await?;
        let state = state_of(tx, n.key).await?;
        let answer = Added::decide(state, suppression.as_deref());
        if matches!(answer, Added::Added | Added::Updated) {
            tx.execute(
                "INSERT INTO subscribers
                     (address, email, name, topics, state, source, created_at, updated_at, confirmed_at)
                 VALUES ($1, $2, $3, $4, 'confirmed', $5, $6, $6, $6)
                 ON CONFLICT (address) DO UPDATE SET
                     email = excluded.email, name = excluded.name, topics = excluded.topics,
                     state = 'confirmed', source = excluded.source, updated_at = $6,
                     confirmed_at = $6",
                &[
                    &n.key,
                    &n.email,
                    &n.name,
                    &serde_json::to_string(n.topics)?,
                    &n.source.as_str(),
                    &now,
                ],
            )
            .await?;
            tx.execute(
                "DELETE FROM subscription_requests WHERE address = $1",
                &[&n.key],
            )
            .await?;
        }
        answers.push(answer);
    }
    Ok(answers)
}

/// See [`crate::store::Store::remove_subscriber`].
pub(super) async fn remove(tx: &Transaction<'_>, key: &str) -> Result<Removed> {
    lock(tx, key).await?;
    let outcome = match state_of(tx, key).await? {
        None => Removed::NotFound,
        Some(state @ (SubscriberState::Unsubscribed | SubscriberState::Bounced)) => {
            Removed::Kept(state)
        }
        Some(SubscriberState::Pending | SubscriberState::Confirmed) => {
            tx.execute("DELETE FROM subscribers WHERE address = $1", &[&key])
                .await?;
            Removed::Removed
        }
    };
    tx.execute(
        "DELETE FROM subscription_requests WHERE address = $1",
        &[&key],
    )
    .await?;
    Ok(outcome)
}

/// See [`crate::store::Store::list_file_subscribers`]: one statement for the whole chunk (a key
/// listed twice takes its last entry, as if written in turn).
pub(super) async fn list_file(
    tx: &Transaction<'_>,
    listed: &[NewSubscriber<'_>],
    run: i64,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(listed.len());
    for (i, n) in listed.iter().enumerate() {
        last.insert(n.key, i);
    }
    let mut keys = Vec::with_capacity(last.len());
    let mut emails = Vec::with_capacity(last.len());
    let mut names = Vec::with_capacity(last.len());
    let mut topics = Vec::with_capacity(last.len());
    for (i, n) in listed.iter().enumerate() {
        if last.get(n.key) == Some(&i) {
            keys.push(n.key);
            emails.push(n.email);
            names.push(n.name);
            topics.push(serde_json::to_string(n.topics)?);
        }
    }
    // As in the SQLite store: a confirmed file subscriber, or one still pending on the web,
    // takes the file's word; every CASE reads the row as it was before this update.
    let file_confirmed = "(subscribers.state = 'pending' \
         OR (subscribers.source = 'file' AND subscribers.state = 'confirmed'))";
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO subscribers
                 (address, email, name, topics, state, source, created_at, updated_at,
                  confirmed_at, listed_run)
             SELECT address, email, name, topics, 'confirmed', 'file', $5, $5, $5, $6
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 AS t(address, email, name, topics)
             ORDER BY address
             ON CONFLICT (address) DO UPDATE SET
                 listed_run = $6,
                 updated_at = CASE WHEN {file_confirmed}
                     AND (subscribers.email IS DISTINCT FROM excluded.email
                          OR subscribers.name IS DISTINCT FROM excluded.name
                          OR subscribers.topics IS DISTINCT FROM excluded.topics)
                     THEN $5 ELSE subscribers.updated_at END,
                 email = CASE WHEN {file_confirmed} THEN excluded.email ELSE subscribers.email END,
                 name = CASE WHEN {file_confirmed} THEN excluded.name ELSE subscribers.name END,
                 topics = CASE WHEN {file_confirmed} THEN excluded.topics ELSE subscribers.topics END,
                 confirmed_at = CASE WHEN subscribers.state = 'pending'
                     THEN $5 ELSE subscribers.confirmed_at END,
                 source = CASE WHEN subscribers.state = 'pending'
                     THEN 'file' ELSE subscribers.source END,
                 state = CASE WHEN subscribers.state = 'pending'
                     THEN 'confirmed' ELSE subscribers.state END
             RETURNING address, state"
        ))
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[&keys, &emails, &names, &topics, &now.timestamp(), &run],
        )
        .await?;
    let blocked: std::collections::HashSet<String> = rows
        .iter()
        .filter(|r| matches!(r.get::<_, &str>(1), "unsubscribed" | "bounced"))
        .map(|r| r.get(0))
        .collect();
    // In the order given, as the SQLite store answers.
    Ok(keys
        .into_iter()
        .filter(|k| blocked.contains(*k))
        .map(str::to_string)
        .collect())
}

/// See [`crate::store::Store::prune_file_subscribers`].
pub(super) async fn prune_file(tx: &Transaction<'_>, run: i64) -> Result<u64> {
    Ok(tx
        .execute(
            "DELETE FROM subscribers WHERE source = 'file' AND state = 'confirmed'
             AND (listed_run IS NULL OR listed_run <> $1)",
            &[&run],
        )
        .await?)
}

fn read(r: &Row) -> Result<SubscriberRow> {
    let address: String = r.get(0);
    let topics: String = r.get(3);
    let topics = serde_json::from_str(&topics)
        .with_context(|| format!("the topics of `{address}` in the store are damaged"))?;
    Ok(SubscriberRow {
        state: SubscriberState::parse(r.get(4))?,
        source: Source::parse(r.get(5))?,
        email: r.get(1),
        name: r.get(2),
        topics,
        created_at: r.get(6),
        updated_at: r.get(7),
        confirmed_at: r.get(8),
        unsubscribed_at: r.get(9),
        address,
    })
}
