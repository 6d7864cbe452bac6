//! `feedpost subscribers …`: the suppression list.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::cli::SubscribersCommand;
use crate::config::Config;
use crate::ledger::Ledger;
use crate::subscribers::normalize;

/// Lists, lifts or adds suppressions in the ledger. Addresses are compared as the subscriber list
/// compares them (see [`normalize`]): case-insensitively, an internationalised domain in any
/// spelling. Listing reads the ledger and creates none.
///
/// # Errors
/// The ledger cannot be opened, the address is not valid, or stdout cannot be written (a closed
/// pipe ends the command quietly, see `main`).
pub fn run(config: &Config, command: SubscribersCommand) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        SubscribersCommand::Suppressed { json } => {
            let list = match Ledger::open_existing(&config.mail.ledger)? {
                Some(ledger) => ledger.suppressions()?,
                None => Vec::new(),
            };
            if json {
                writeln!(out, "{}", serde_json::json!({ "suppressed": list }))?;
            } else if list.is_empty() {
                writeln!(out, "no suppressed addresses")?;
            } else {
                for s in list {
                    let when = chrono::DateTime::from_timestamp(s.suppressed_at, 0)
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_default();
                    writeln!(out, "{}\t{}\t{}", s.address, when, s.reason)?;
                }
            }
        }
        SubscribersCommand::Unsuppress { address } => {
            let (_, key) = normalize(&address).map_err(|e| anyhow!(e))?;
            let lifted = match Ledger::open_existing(&config.mail.ledger)? {
                Some(mut ledger) => ledger.unsuppress(&key)?,
                None => false,
            };
            if lifted {
                writeln!(
                    out,
                    "{address} is no longer suppressed; its failed deliveries are queued again"
                )?;
            } else {
                writeln!(out, "{address} was not suppressed")?;
                return Ok(ExitCode::FAILURE);
            }
        }
        SubscribersCommand::Suppress { address, reason } => {
            let (_, key) = normalize(&address).map_err(|e| anyhow!(e))?;
            Ledger::open(&config.mail.ledger)?.suppress(&key, &reason)?;
            writeln!(out, "{address} suppressed")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
