//! The subcommands, one file each.

mod build;
mod check;
mod completions;
mod init;
mod new;
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
    let path = &cli.config;
    let config = || Config::from_file(path);
    match cli.command {
        // `check` reports a bad config as a finding instead of stopping on it.
        Command::Check(args) => check::run(path, args.json),
        Command::Init(args) => init::run(&args),
        Command::New(args) => new::run(path, &args),
        Command::Completions(args) => completions::completions(args.shell),
        Command::Man(args) => completions::man(args.out.as_deref()),
        Command::Build => build::run(&config()?),
        Command::Publish(args) => publish::run(&config()?, &args),
        Command::Retry(args) => publish::retry(&config()?, &args),
        Command::Preview(args) => preview::run(&config()?, &args),
        Command::Serve(args) => serve::run(config()?, path, &args),
        Command::Status(args) => status::run(&config()?, args.issue.as_deref(), args.json),
        Command::Subscribers(sub) => subscribers::run(&config()?, sub),
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

/// `n` with `one` or `many` after it, as summary lines count: `1 issue`, `2 issues`, `0 issues`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The permalinks of the issues `config`'s ledger has deliveries of on the channel the config
/// sends through (SMTP with an `[smtp]` table, else the outbox): issues that went out, whose
/// emails link their pages, so the site counts them as published even before their date (see
/// [`crate::site::Site::count_as_published`]). Reads the ledger only if it exists; creates none.
///
/// # Errors
/// The ledger exists but cannot be read.
pub fn mailed_issues(config: &Config) -> Result<Vec<String>> {
    use crate::ledger::{Channel, Ledger};
    let Some(ledger) = Ledger::open_existing(&config.mail.ledger)? else {
        return Ok(Vec::new());
    };
    let channel = if config.smtp.is_some() {
        Channel::Smtp
    } else {
        Channel::Outbox
    };
    let mut mailed = Vec::new();
    for (issue, _) in ledger.issues()? {
        if ledger.channels_of(&issue)?.contains(&channel) {
            mailed.push(issue);
        }
    }
    Ok(mailed)
}
