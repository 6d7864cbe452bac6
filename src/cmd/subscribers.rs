//! `feedpost subscribers …`: the suppression list.

use std::io::Write;

use anyhow::{anyhow, Result};

use crate::cli::SubscribersCommand;
use crate::cmd::Ran;
use crate::config::Config;
use crate::store::{self, Open};
use crate::subscribers::normalize;

/// Lists, lifts or adds suppressions in the store. Addresses are compared as the subscriber list
/// compares them (see [`normalize`]): case-insensitively, an internationalised domain in any
/// spelling. Listing and lifting read the store and create none. Exit code 1 when
/// `unsuppress` names an address that was not suppressed.
///
/// # Errors
/// The store cannot be opened, the address is not valid, or stdout cannot be written (a closed
/// pipe ends the command quietly, see `main`).
pub fn run(config: &Config, command: SubscribersCommand) -> Result<Ran> {
    super::block_on(async {
        let mut out = std::io::stdout().lock();
        match command {
            SubscribersCommand::Suppressed { json } => {
                let list = match store::open(config, Open::IfExists).await? {
                    Some(store) => store.suppressions().await?,
                    None => Vec::new(),
                };
                if json {
                    writeln!(out, "{}", serde_json::json!({ "suppressed": list }))?;
                } else if list.is_empty() {
                    writeln!(out, "no suppressed addresses")?;
                } else {
                    for s in &list {
                        let when = chrono::DateTime::from_timestamp(s.suppressed_at, 0)
                            .map(|d| d.to_rfc3339())
                            .unwrap_or_default();
                        writeln!(out, "{}\t{}\t{}", s.address, when, s.reason)?;
                    }
                }
            }
            SubscribersCommand::Unsuppress { address } => {
                let (_, key) = normalize(&address).map_err(|e| anyhow!(e))?;
                let lifted = match store::open(config, Open::IfExists).await? {
                    Some(store) => store.unsuppress(&key).await?,
                    None => false,
                };
                if !lifted {
                    writeln!(out, "{address} was not suppressed")?;
                    return Ok(Ran::failure());
                }
                writeln!(
                    out,
                    "{address} is no longer suppressed; its failed deliveries are queued again"
                )?;
            }
            SubscribersCommand::Suppress { address, reason } => {
                let (_, key) = normalize(&address).map_err(|e| anyhow!(e))?;
                let store = store::open(config, Open::OrCreate).await?;
                if let Some(store) = store {
                    store.suppress(&key, &reason).await?;
                }
                writeln!(out, "{address} suppressed")?;
            }
        }
        Ok(Ran::success())
    })?
}
