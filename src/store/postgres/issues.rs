//! What the PostgreSQL store remembers of each issue it delivered (see the SQLite store's
//! `issues.rs`): enough to know it again under another slug or base URL, and when its publish
//! began on each channel.

use anyhow::Result;
use deadpool_postgres::Transaction;

use crate::store::{EarlierIssue, IssueRecord, Queue};

/// See [`crate::store::Store::earlier_copies`].
pub(super) async fn earlier_copies(
    tx: &Transaction<'_>,
    r: &IssueRecord<'_>,
) -> Result<Vec<EarlierIssue>> {
    let rows = tx
        .query(
            "SELECT i.issue, i.slug,
                 (SELECT COUNT(*) FROM deliveries d
                  WHERE d.issue = i.issue AND d.channel = 'smtp' AND d.state = 'sent'),
                 (SELECT COUNT(*) FROM deliveries d WHERE d.issue = i.issue AND d.channel = 'smtp')
             FROM issues i
             WHERE i.issue != $1 AND (i.fingerprint = $2 OR (i.title = $3 AND i.date = $4))",
            &[&r.issue, &r.fingerprint, &r.title, &r.date],
        )
        .await?;
    let mut found: Vec<EarlierIssue> = rows
        .iter()
        .map(|row| EarlierIssue {
            issue: row.get(0),
            slug: row.get(1),
            sent: row.get::<_, i64>(2) as u64,
            deliveries: row.get::<_, i64>(3) as u64,
        })
        .filter(|e| e.deliveries > 0)
        .collect();
    found.sort_by(|a, b| b.sent.cmp(&a.sent).then_with(|| a.issue.cmp(&b.issue)));
    Ok(found)
}

/// See [`crate::store::Store::is_established`].
pub(super) async fn is_established(tx: &Transaction<'_>, issue: &str) -> Result<bool> {
    let row = tx
        .query_one(
            "SELECT COALESCE((SELECT as_new FROM issues WHERE issue = $1), FALSE)
                 OR EXISTS (SELECT 1 FROM deliveries WHERE issue = $1 AND channel = 'smtp')",
            &[&issue],
        )
        .await?;
    Ok(row.get(0))
}

/// See [`crate::store::Store::record_issue`].
pub(super) async fn record(tx: &Transaction<'_>, r: &IssueRecord<'_>, as_new: bool) -> Result<()> {
    tx.execute(
        "INSERT INTO issues (issue, slug, title, date, fingerprint, as_new)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (issue) DO UPDATE SET slug = excluded.slug, title = excluded.title,
             date = excluded.date, fingerprint = excluded.fingerprint,
             as_new = issues.as_new OR excluded.as_new",
        &[
            &r.issue,
            &r.slug,
            &r.title,
            &r.date,
            &r.fingerprint,
            &as_new,
        ],
    )
    .await?;
    Ok(())
}

/// See [`crate::store::Store::publish_started`]: the first sender to start records the time;
/// every other one reads it.
pub(super) async fn publish_started(tx: &Transaction<'_>, q: Queue<'_>, now: i64) -> Result<i64> {
    tx.execute(
        "INSERT INTO publishes (issue, channel, started_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&q.issue, &q.channel.as_str(), &now],
    )
    .await?;
    Ok(tx
        .query_one(
            "SELECT started_at FROM publishes WHERE issue = $1 AND channel = $2",
            &[&q.issue, &q.channel.as_str()],
        )
        .await?
        .get(0))
}
