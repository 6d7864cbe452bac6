//! The suppression list on PostgreSQL: addresses that must never be mailed again, with the
//! reply (or the editor's reason) that put them there.

use anyhow::Result;
use deadpool_postgres::Transaction;

use super::now_unix;
use crate::store::Suppression;

/// See [`crate::store::Store::suppressions`].
pub(super) async fn list(tx: &Transaction<'_>) -> Result<Vec<Suppression>> {
    let rows = tx
        .query(
            "SELECT address, reason, issue, suppressed_at FROM suppressions ORDER BY address",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Suppression {
            address: r.get(0),
            reason: r.get(1),
            issue: r.get(2),
            suppressed_at: r.get(3),
        })
        .collect())
}

/// See [`crate::store::Store::suppression_of`].
pub(super) async fn reason(tx: &Transaction<'_>, key: &str) -> Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT reason FROM suppressions WHERE address = $1",
            &[&key],
        )
        .await?
        .map(|r| r.get(0)))
}

/// See [`crate::store::Store::suppress`].
pub(super) async fn add(tx: &Transaction<'_>, key: &str, reason: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO suppressions (address, reason, issue, suppressed_at) VALUES ($1, $2, NULL, $3)
         ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, issue = NULL,
             suppressed_at = excluded.suppressed_at",
        &[&key, &reason, &now_unix()],
    )
    .await?;
    Ok(())
}

/// See [`crate::store::Store::unsuppress`].
pub(super) async fn lift(tx: &Transaction<'_>, key: &str) -> Result<bool> {
    let removed = tx
        .execute("DELETE FROM suppressions WHERE address = $1", &[&key])
        .await?;
    if removed > 0 {
        tx.execute(
            "UPDATE deliveries SET state = 'queued', run_attempts = 0, updated_at = $2
             WHERE recipient = $1 AND state = 'failed'",
            &[&key, &now_unix()],
        )
        .await?;
    }
    Ok(removed > 0)
}
