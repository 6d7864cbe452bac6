//! `feedpost store copy`: an SQLite ledger copied into the PostgreSQL store, table by table, in
//! one transaction — the way from one host to several without losing who got what.
//!
//! Every row keeps its values; a delivery left `sending` by a run that died goes back to
//! `queued` (its sender is gone; it is sent again with the same Message-ID, as on the next run
//! of the SQLite store). The audience of a run is not copied (it lives only during a run). The
//! inserts are pipelined on one connection: the copy goes at the speed of the server, not of
//! round trips.

use anyhow::{bail, Context, Result};
use futures_util::future::try_join_all;
use rusqlite::Connection;
use tokio_postgres::types::ToSql;

use super::PgStore;

/// A column's type on both sides.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// TEXT.
    Text,
    /// INTEGER in SQLite, BIGINT in PostgreSQL.
    Int8,
    /// INTEGER in both.
    Int4,
    /// 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Bool,
}

use Kind::{Bool, Int4, Int8, Text};

/// A table to copy: its name, and its columns as SQLite selects them (an expression) and as
/// PostgreSQL names them.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, &'static str, Kind)],
}

const TABLES: &[Table] = &[
    Table {
        name: "deliveries",
        columns: &[
            ("issue", "issue", Text),
            ("channel", "channel", Text),
            ("recipient", "recipient", Text),
            ("address", "address", Text),
            ("name", "name", Text),
            ("message_id", "message_id", Text),
            (
                "CASE WHEN state = 'sending' THEN 'queued' ELSE state END",
                "state",
                Text,
            ),
            ("attempts", "attempts", Int4),
            ("run_attempts", "run_attempts", Int4),
            ("next_attempt_at", "next_attempt_at", Int8),
            ("last_reply", "last_reply", Text),
            ("updated_at", "updated_at", Int8),
        ],
    },
    Table {
        name: "suppressions",
        columns: &[
            ("address", "address", Text),
            ("reason", "reason", Text),
            ("issue", "issue", Text),
            ("suppressed_at", "suppressed_at", Int8),
        ],
    },
    Table {
        name: "issues",
        columns: &[
            ("issue", "issue", Text),
            ("slug", "slug", Text),
            ("title", "title", Text),
            ("date", "date", Int8),
            ("fingerprint", "fingerprint", Text),
            ("as_new", "as_new", Bool),
        ],
    },
    Table {
        name: "publishes",
        columns: &[
            ("issue", "issue", Text),
            ("channel", "channel", Text),
            ("started_at", "started_at", Int8),
        ],
    },
    Table {
        name: "subscribers",
        columns: &[
            ("address", "address", Text),
            ("email", "email", Text),
            ("name", "name", Text),
            ("topics", "topics", Text),
            ("state", "state", Text),
            ("source", "source", Text),
            ("created_at", "created_at", Int8),
            ("updated_at", "updated_at", Int8),
            ("confirmed_at", "confirmed_at", Int8),
            ("unsubscribed_at", "unsubscribed_at", Int8),
            ("listed_run", "listed_run", Int8),
        ],
    },
    Table {
        name: "subscription_requests",
        columns: &[
            ("address", "address", Text),
            ("email", "email", Text),
            ("name", "name", Text),
            ("topics", "topics", Text),
            ("requested_at", "requested_at", Int8),
            ("expires_at", "expires_at", Int8),
        ],
    },
];

/// Rows sent to the server before waiting for their answers.
const PIPELINE: usize = 1_000;

/// What [`copy_from_sqlite`] copied: per table, rows read and rows inserted (fewer when the
/// store already had a row with the same key, with `--force`).
pub type Copied = Vec<(&'static str, u64, u64)>;

/// Whether the store holds any delivery, suppression, issue record or subscriber.
///
/// # Errors
/// The store cannot be read.
pub async fn is_empty(store: &PgStore) -> Result<bool> {
    let client = store.client().await?;
    let row = client
        .query_one(
            "SELECT NOT (EXISTS (SELECT 1 FROM deliveries) OR EXISTS (SELECT 1 FROM suppressions)
                 OR EXISTS (SELECT 1 FROM issues) OR EXISTS (SELECT 1 FROM subscribers))",
            &[],
        )
        .await
        .with_context(|| format!("the PostgreSQL store `{}` cannot be read", store.url()))?;
    Ok(row.get(0))
}

/// Copies every table of the ledger on `ledger` (already migrated to this build's schema, and
/// locked by the caller so no run changes it meanwhile) into `store`, in one transaction. A row
/// whose key the store has already is kept as it is there. Refuses a store that is not empty
/// unless `force`.
///
/// # Errors
/// The store is not empty (without `force`), or either side cannot be read or written.
pub async fn copy_from_sqlite(ledger: &Connection, store: &PgStore, force: bool) -> Result<Copied> {
    if !force && !is_empty(store).await? {
        bail!(
            "the PostgreSQL store `{}` already holds deliveries, subscribers or suppressions; nothing was copied. Copy into an empty database, or pass --force to add the ledger's rows to it (rows it has already are kept)",
            store.url()
        );
    }
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let mut copied = Vec::new();
    for table in TABLES {
        let (read, inserted) = copy_table(ledger, &tx, table)
            .await
            .with_context(|| format!("failed to copy the table `{}`", table.name))?;
        copied.push((table.name, read, inserted));
    }
    tx.commit().await?;
    Ok(copied)
}

async fn copy_table(
    ledger: &Connection,
    tx: &deadpool_postgres::Transaction<'_>,
    table: &Table,
) -> Result<(u64, u64)> {
    let select: Vec<&str> = table.columns.iter().map(|c| c.0).collect();
    let insert: Vec<&str> = table.columns.iter().map(|c| c.1).collect();
    let placeholders: Vec<String> = (1..=table.columns.len()).map(|i| format!("${i}")).collect();
    let stmt = tx
        .prepare(&format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            table.name,
            insert.join(", "),
            placeholders.join(", ")
        ))
        .await?;
    let mut query = ledger.prepare(&format!("SELECT {} FROM {}", select.join(", "), table.name))?;
    let mut rows = query.query([])?;
    let (mut read, mut inserted) = (0u64, 0u64);
    let mut batch: Vec<Vec<Box<dyn ToSql + Sync + Send>>> = Vec::with_capacity(PIPELINE);
    loop {
        let row = rows.next()?;
        if let Some(row) = row {
            let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
            for (i, (_, _, kind)) in table.columns.iter().enumerate() {
                values.push(match kind {
                    Text => Box::new(row.get::<_, Option<String>>(i)?),
                    Int8 => Box::new(row.get::<_, Option<i64>>(i)?),
                    Int4 => Box::new(row.get::<_, Option<i32>>(i)?),
                    Bool => Box::new(row.get::<_, Option<i64>>(i)?.map(|v| v != 0)),
                });
            }
            batch.push(values);
            read += 1;
        }
        if batch.len() == PIPELINE || (row.is_none() && !batch.is_empty()) {
            let sent = batch.iter().map(|values| {
                let params: Vec<&(dyn ToSql + Sync)> = values
                    .iter()
                    .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let stmt = &stmt;
                async move { tx.execute(stmt, &params).await }
            });
            inserted += try_join_all(sent).await?.iter().sum::<u64>();
            batch.clear();
        }
        if row.is_none() {
            break;
        }
    }
    Ok((read, inserted))
}
