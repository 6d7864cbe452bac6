//! The subcommands, one file each.

mod build;
mod check;
mod preview;
mod publish;
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
        Command::Publish(args) => {
            publish::run(&config, args.issue.as_deref(), publish::Mode::of(&args))
        }
        Command::Retry(args) => publish::run(&config, Some(&args.issue), publish::Mode::Retry),
        Command::Preview(args) => preview::run(&config, &args),
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

/// Runs `future` to completion on a runtime of one thread: the store and the delivery engine
/// are async, and one thread drives every connection and the store's commits (a message costs
/// tens of microseconds of CPU, so one core sends faster than relays accept, and handing
/// outcomes between threads would cost more than the work; signing has threads of its own).
///
/// # Errors
/// The runtime cannot start.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("failed to start the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}
