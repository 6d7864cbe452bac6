//! `feedpost store migrate | status | copy`: the store itself — its schema, what it holds, and
//! an SQLite ledger copied into a PostgreSQL store (the move to several hosts).

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{block_on, Ran};
use crate::cli::StoreCommand;
use crate::config::Config;
use crate::store::postgres::{copy, Missing, PgStore};
use crate::store::sqlite::{self, schema::SCHEMA_VERSION};
use crate::store::{self, Counts, Open, State};

/// Runs a `store` subcommand.
///
/// # Errors
/// The store cannot be opened, read or written; `copy` without a `[store]` table, from a file
/// that is not a ledger, or into a store that is not empty without `--force`.
pub fn run(config: &Config, command: StoreCommand) -> Result<Ran> {
    block_on(async {
        match command {
            StoreCommand::Migrate => migrate(config).await,
            StoreCommand::Status => status(config).await,
            StoreCommand::Copy { from, force } => copy_ledger(config, &from, force).await,
        }
    })?
}

fn out(line: &str) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

async fn migrate(config: &Config) -> Result<Ran> {
    match &config.store {
        Some(table) => {
            let pg = connect(table, Missing::Migrate).await?;
            let applied = pg.migrate().await?;
            let version = pg.overview().await?.schema_version;
            out(&format!(
                "{}: schema version {version}{}",
                pg.describe_store(),
                if applied.is_empty() {
                    " (up to date)".to_string()
                } else {
                    format!(" (applied {})", applied.join(", "))
                }
            ))?;
        }
        None => {
            // Opening the ledger creates or migrates it.
            let ledger = sqlite::SqliteStore::open(&config.mail.ledger)?;
            out(&format!(
                "the ledger `{}`: schema version {SCHEMA_VERSION} (up to date)",
                ledger.path().display()
            ))?;
        }
    }
    Ok(Ran::success())
}

async fn connect(table: &crate::config::Store, missing: Missing) -> Result<PgStore> {
    PgStore::connect(table, missing).await?.with_context(|| {
        format!(
            "the PostgreSQL store `{}` has no feedpost tables yet: run `feedpost store migrate`",
            crate::config::redact(&table.url)
        )
    })
}

async fn status(config: &Config) -> Result<Ran> {
    let Some(store) = store::open(config, Open::IfExists).await? else {
        out(&match &config.store {
            Some(t) => format!(
                "the PostgreSQL store `{}` has no feedpost tables yet: `feedpost store migrate` creates them",
                crate::config::redact(&t.url)
            ),
            None => format!(
                "no ledger yet at `{}`: the first publish creates it",
                config.mail.ledger.display()
            ),
        })?;
        return Ok(Ran::success());
    };
    out(&format!("store: {}", store.describe()))?;
    if let Some(table) = &config.store {
        let pg = connect(table, Missing::Skip).await?;
        let overview = pg.overview().await?;
        out(&format!(
            "schema version: {} (this feedpost writes {})",
            overview.schema_version,
            store::postgres::schema::latest()
        ))?;
        if overview.senders.is_empty() {
            out("senders at work: none")?;
        }
        for (sender, rows) in &overview.senders {
            out(&format!("sender at work: {sender} ({rows} in flight)"))?;
        }
    }
    let mut total = Counts::default();
    let issues = store.issues().await?;
    for (issue, _) in &issues {
        for channel in store.channels_of(issue).await? {
            let c = store.counts(store::Queue { issue, channel }).await?;
            for state in State::ALL {
                let n = match state {
                    State::Queued => c.queued,
                    State::Sending => c.sending,
                    State::Sent => c.sent,
                    State::Deferred => c.deferred,
                    State::Failed => c.failed,
                    State::Removed => c.removed,
                };
                let was = match state {
                    State::Queued => total.queued,
                    State::Sending => total.sending,
                    State::Sent => total.sent,
                    State::Deferred => total.deferred,
                    State::Failed => total.failed,
                    State::Removed => total.removed,
                };
                total.set(state, was + n);
            }
        }
    }
    out(&format!(
        "deliveries: {} issues; sent {}, queued {}, sending {}, deferred {}, failed {}, removed {}",
        issues.len(),
        total.sent,
        total.queued,
        total.sending,
        total.deferred,
        total.failed,
        total.removed
    ))?;
    let s = store.subscriber_counts().await?;
    out(&format!(
        "subscribers: confirmed {}, pending {}, unsubscribed {}, bounced {}",
        s.confirmed, s.pending, s.unsubscribed, s.bounced
    ))?;
    out(&format!(
        "suppressions: {}",
        store.suppressions().await?.len()
    ))?;
    Ok(Ran::success())
}

async fn copy_ledger(config: &Config, from: &Path, force: bool) -> Result<Ran> {
    let Some(table) = &config.store else {
        bail!("`feedpost store copy` copies a ledger into the PostgreSQL store of a `[store]` table, and the config has none: add `[store] url = \"postgres://…\"` first");
    };
    if !from.is_file() {
        bail!(
            "no ledger at `{}`: pass the SQLite file to copy (`mail.ledger`, by default feedpost.sqlite beside the config)",
            from.display()
        );
    }
    // The lock first: no publish may change the ledger while it is copied.
    let _lock = sqlite::lock::LedgerLock::take(from)?;
    let (ledger, path) = sqlite::file::open(from)?;
    let pg = connect(table, Missing::Migrate).await?;
    let copied = copy::copy_from_sqlite(&ledger, &pg, force)
        .await
        .with_context(|| {
            format!(
                "failed to copy the ledger `{}` into {}; nothing was copied",
                path.display(),
                pg.describe_store()
            )
        })?;
    let parts: Vec<String> = copied
        .iter()
        .map(|(name, read, inserted)| {
            if read == inserted {
                format!("{name} {read}")
            } else {
                format!("{name} {inserted} of {read}")
            }
        })
        .collect();
    out(&format!(
        "copied `{}` into {}: {}",
        path.display(),
        pg.describe_store(),
        parts.join(", ")
    ))?;
    Ok(Ran::success())
}
