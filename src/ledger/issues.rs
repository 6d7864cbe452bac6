//! What the ledger remembers of each issue it delivered: enough to know it again under another
//! slug or base URL (title, date, a fingerprint of its content), and when its publish began on
//! each channel (the `Date` of every message, so a message sent again is byte for byte the
//! same).

use anyhow::Result;
use rusqlite::{params, OptionalExtension};

use super::{Channel, Ledger, Queue};

/// An issue as the ledger records it.
#[derive(Debug, Clone, Copy)]
pub struct IssueRecord<'a> {
    /// The issue id: its permalink.
    pub issue: &'a str,
    /// Its slug.
    pub slug: &'a str,
    /// Its title.
    pub title: &'a str,
    /// Its date, Unix seconds (UTC).
    pub date: i64,
    /// A fingerprint of its content (hex SHA-256 of the Markdown body, see
    /// [`crate::cmd`]'s publish).
    pub fingerprint: &'a str,
}

/// An issue already mailed that looks like the one being published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierIssue {
    /// Its id (permalink).
    pub issue: String,
    /// Its slug.
    pub slug: String,
    /// Messages sent by SMTP.
    pub sent: u64,
    /// Deliveries of it in the ledger, on SMTP, in any state.
    pub deliveries: u64,
}

impl Ledger {
    /// Issues other than `r` that were mailed (have SMTP deliveries) and share its content
    /// fingerprint, or its title and date: the same issue under another slug or base URL. Most
    /// messages sent first.
    ///
    /// # Errors
    /// A database error.
    pub fn earlier_copies(&self, r: &IssueRecord<'_>) -> Result<Vec<EarlierIssue>> {
        self.read("look for the issue among those sent", |conn| {
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
        })
    }

    /// Whether the issue `issue` was already mailed under this id, or was accepted as a new
    /// issue (see [`Ledger::record_issue`]): then it is not compared with earlier ones again.
    ///
    /// # Errors
    /// A database error.
    pub fn is_established(&self, issue: &str) -> Result<bool> {
        self.read("read the issue record", |conn| {
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
                .prepare_cached(
                    "SELECT 1 FROM deliveries WHERE issue = ?1 AND channel = 'smtp' LIMIT 1",
                )?
                .exists(params![issue])?)
        })
    }

    /// Records (or updates) the issue `r`; with `as_new`, marks it as sent on purpose as an
    /// issue of its own even if it looks like an earlier one.
    ///
    /// # Errors
    /// A database error.
    pub fn record_issue(&mut self, r: &IssueRecord<'_>, as_new: bool) -> Result<()> {
        self.write("record the issue", |conn| {
            conn.execute(
                "INSERT INTO issues (issue, slug, title, date, fingerprint, as_new)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (issue) DO UPDATE SET slug = excluded.slug, title = excluded.title,
                    date = excluded.date, fingerprint = excluded.fingerprint,
                    as_new = MAX(as_new, excluded.as_new)",
                params![r.issue, r.slug, r.title, r.date, r.fingerprint, as_new],
            )?;
            Ok(())
        })
    }

    /// When the first publish of `q` began (Unix seconds, UTC), recording `now` if this is the
    /// first: every message of the issue on that channel carries it as its `Date`, so a message
    /// sent again after a crash is the same, byte for byte.
    ///
    /// # Errors
    /// A database error.
    pub fn publish_started(&mut self, q: Queue<'_>, now: i64) -> Result<i64> {
        self.write("record the start of the publish", |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO publishes (issue, channel, started_at) VALUES (?1, ?2, ?3)",
                params![q.issue, q.channel.as_str(), now],
            )?;
            Ok(conn.query_row(
                "SELECT started_at FROM publishes WHERE issue = ?1 AND channel = ?2",
                params![q.issue, q.channel.as_str()],
                |r| r.get(0),
            )?)
        })
    }

    /// The channels `issue` has deliveries on.
    ///
    /// # Errors
    /// A database error.
    pub fn channels_of(&self, issue: &str) -> Result<Vec<Channel>> {
        self.read("read the issue's channels", |conn| {
            let mut out = Vec::new();
            for channel in [Channel::Smtp, Channel::Outbox] {
                if conn
                    .prepare_cached(
                        "SELECT 1 FROM deliveries WHERE issue = ?1 AND channel = ?2 LIMIT 1",
                    )?
                    .exists(params![issue, channel.as_str()])?
                {
                    out.push(channel);
                }
            }
            Ok(out)
        })
    }
}
