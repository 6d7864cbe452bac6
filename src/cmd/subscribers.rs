//! `feedpost subscribers …`: the suppression list.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::SubscribersCommand;
use crate::config::Config;
use crate::ledger::Ledger;

/// Lists, lifts or adds suppressions in the ledger.
///
/// # Errors
/// The ledger cannot be opened, or the address is not valid (for `suppress`).
pub fn run(config: &Config, command: SubscribersCommand) -> Result<ExitCode> {
    let mut ledger = Ledger::open(&config.mail.ledger)?;
    match command {
        SubscribersCommand::Suppressed { json } => {
            let list = ledger.suppressions()?;
            if json {
                println!("{}", serde_json::json!({ "suppressed": list }));
            } else if list.is_empty() {
                println!("no suppressed addresses");
            } else {
                for s in list {
                    let when = chrono::DateTime::from_timestamp(s.suppressed_at, 0)
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_default();
                    println!("{}\t{}\t{}", s.address, when, s.reason);
                }
            }
        }
        SubscribersCommand::Unsuppress { address } => {
            if ledger.unsuppress(&address)? {
                println!(
                    "{address} is no longer suppressed; its failed deliveries are queued again"
                );
            } else {
                println!("{address} was not suppressed");
                return Ok(ExitCode::FAILURE);
            }
        }
        SubscribersCommand::Suppress { address, reason } => {
            if address.parse::<lettre::Address>().is_err() {
                bail!("`{address}` is not a valid e-mail address");
            }
            ledger.suppress(&address, &reason)?;
            println!("{address} suppressed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
