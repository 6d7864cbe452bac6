//! The subcommands, one file each.

mod build;
mod check;
mod preview;
mod publish;
mod serve;
mod status;
mod subscribers;

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::issue::IssueError;

/// Runs the command `cli` names. `Ok(ExitCode::FAILURE)` means the command ran but something in it
/// failed (a bad issue, an undelivered recipient), already reported on stderr.
///
/// # Errors
/// The command could not run: bad config, unreadable folders, a ledger error.
pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Check = cli.command {
        // `check` reports a bad config as a finding instead of stopping on it.
        return check::run(&cli.config);
    }
    let config = Config::from_file(&cli.config)?;
    match cli.command {
        Command::Build => build::run(&config),
        Command::Check => check::run(&cli.config),
        Command::Publish(args) => publish::run(&config, &args),
        Command::Retry(args) => publish::retry(&config, &args),
        Command::Preview(args) => preview::run(&config, &args),
        Command::Serve => serve::run(&config),
        Command::Status(args) => status::run(&config, args.issue.as_deref(), args.json),
        Command::Subscribers(sub) => subscribers::run(&config, sub),
    }
}

/// Prints each bad issue file as `error: path:line: message` on stderr and fails when there is
/// one: a bad issue anywhere stops `publish` before anything is sent.
fn refuse_bad_issues(errors: &[IssueError]) -> Result<()> {
    for e in errors {
        eprintln!("error: {e}");
    }
    if !errors.is_empty() {
        bail!(
            "{} issue file(s) have errors (listed above); fix them and run again. Nothing was sent.",
            errors.len()
        );
    }
    Ok(())
}
