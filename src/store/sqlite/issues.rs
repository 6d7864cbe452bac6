//! What the ledger remembers of each issue it delivered: enough to know it again under another
//! slug or base URL (title, date, a fingerprint of its content), and when its publish began on
//! each channel (the `Date` of every message, so a message sent again is byte for byte the
//! same).

use anyhow::Result;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{EarlierIssue, IssueRecord, Queue};

/// See [`crate::store::Store::earlier_copies`].
pub(super) fn earlier_copies(
    conn: &mut Connection,
    r: &IssueRecord<'_>,
) -> Result<Vec<EarlierIssue>> {
    let mut stmt = conn.prepare(
        "SELECT i.issue, i.slug,
                (SELECT COUNT(*) FROM deliveries d WHERE d.issue = i.issue AND d.channel = 'smtp' AND d.state = 'sent'),
                (SELECT COUNT(*) FROM deliveries d WHERE d.issue = i.issue AND d.channel = 'smtp')
         FROM issues i
         WHERE i.issue != ?1 AND (i.fingerprint = ?2 OR (i.title = ?3 AND i.date = ?4))",
    )?;
    let rows = stmt.query_map(params![r.issue, r.fingerprint, r.title, r.date], |row| {
        Ok(EarlierIssue {
            issue: row.get(0)?,
            slug: row.get(1)?,
            sent: row.get::<_, i64>(2)? as u64,
            deliveries: row.get::<_, i64>(3)? as u64,
        })
    })?;
    let mut found: Vec<EarlierIssue> = rows
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter(|e| e.deliveries > 0)
        .collect();
    found.sort_by(|a, b| b.sent.cmp(&a.sent).then_with(|| a.issue.cmp(&b.issue)));
    Ok(found)
}

/// See [`crate::store::Store::is_established`].
pub(super) fn is_established(conn: &mut Connection, issue: &str) -> Result<bool> {
    let as_new: Option<i64> = conn
        .query_row(
            "SELECT as_new FROM issues WHERE issue = ?1",
            params![issue],
            |r| r.get(0),
        )
        .optional()?;
    if as_new == Some(1) {
        return Ok(true);
    }
    Ok(conn
        .prepare_cached("SELECT 1 FROM deliveries WHERE issue = ?1 AND channel = 'smtp' LIMIT 1")?
        .exists(params![issue])?)
}

/// See [`crate::store::Store::record_issue`].
pub(super) fn record(conn: &mut Connection, r: &IssueRecord<'_>, as_new: bool) -> Result<()> {
    conn.execute(
        "INSERT INTO issues (issue, slug, title, date, fingerprint, as_new)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (issue) DO UPDATE SET slug = excluded.slug, title = excluded.title,
            date = excluded.date, fingerprint = excluded.fingerprint,
            as_new = MAX(as_new, excluded.as_new)",
        params![r.issue, r.slug, r.title, r.date, r.fingerprint, as_new],
    )?;
    Ok(())
}

/// See [`crate::store::Store::publish_started`].
pub(super) fn publish_started(conn: &mut Connection, q: Queue<'_>, now: i64) -> Result<i64> {
    conn.execute(
        "INSERT OR IGNORE INTO publishes (issue, channel, started_at) VALUES (?1, ?2, ?3)",
        params![q.issue, q.channel.as_str(), now],
    )?;
    Ok(conn.query_row(
        "SELECT started_at FROM publishes WHERE issue = ?1 AND channel = ?2",
        params![q.issue, q.channel.as_str()],
        |r| r.get(0),
    )?)
}
