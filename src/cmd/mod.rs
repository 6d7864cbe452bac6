//! The subcommands, one file each (and `schedule`, the issue a `publish` without one sends,
//! which `publish` and `status` share).
//!
//! A command that could run returns a [`Ran`]: everything done (exit code 0), or some items
//! failed ([`ITEMS_FAILED`]) — a bad issue file that `build` left out, a recipient left
//! deferred — with the failures `main` prints. A command that could not run returns an error
//! ([`COULD_NOT_RUN`]): a bad config, a held lock, a server that refuses us. `main` is the one
//! place that prints either.

mod build;
mod check;
mod completions;
mod init;
mod new;
mod preview;
mod publish;
mod schedule;
mod serve;
mod status;
#[path = "store.rs"]
mod store_cmd;
mod subscribers;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::issue::IssueError;
use crate::store;

/// The exit code of a command that ran, but some items of it failed.
pub const ITEMS_FAILED: u8 = 1;

/// The exit code of a command that could not run (as clap's usage errors).
pub const COULD_NOT_RUN: u8 = 2;

/// How a command that could run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    /// Items that failed, for `main` to print as `error: …` lines on stderr.
    pub errors: Vec<String>,
    /// Whether something failed, printed here or already shown (findings on stdout, recipients
    /// left deferred in the log).
    pub failed: bool,
}

impl Ran {
    /// Everything done.
    pub fn success() -> Ran {
        Ran::default()
    }

    /// Something failed, and was shown already.
    pub fn failure() -> Ran {
        Ran {
            errors: Vec::new(),
            failed: true,
        }
    }

    /// [`Ran::success`] or [`Ran::failure`] as `failed` says.
    pub fn failed_if(failed: bool) -> Ran {
        Ran {
            errors: Vec::new(),
            failed,
        }
    }

    /// The items of `errors` failed (none: success).
    pub fn with_errors(errors: Vec<String>) -> Ran {
        Ran {
            failed: !errors.is_empty(),
            errors,
        }
    }

    /// 0, or [`ITEMS_FAILED`].
    pub fn exit_code(&self) -> ExitCode {
        if self.failed {
            ExitCode::from(ITEMS_FAILED)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Several items that keep a command from running (bad issue files stop a publish): `main`
/// prints each as an `error: …` line, then the summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{summary}")]
pub struct Refused {
    /// One line per item, `path:line: message`.
    pub items: Vec<String>,
    /// What they mean for the command, and what to do.
    pub summary: String,
}

/// Runs the command `cli` names.
///
/// # Errors
/// The command could not run: bad config, unreadable folders, a store error, a server that
/// refuses us; see [`Refused`] for several at once.
pub fn run(cli: Cli) -> Result<Ran> {
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
        Command::Publish(args) => publish::run(
            &config()?,
            args.issue.as_deref(),
            publish::Mode::of(&args),
            args.json,
        ),
        Command::Retry(args) => publish::run(
            &config()?,
            Some(&args.issue),
            publish::Mode::Retry,
            args.json,
        ),
        Command::Preview(args) => preview::run(&config()?, &args),
        Command::Serve(args) => serve::run(config()?, path, &args),
        Command::Status(args) => status::run(&config()?, args.issue.as_deref(), args.json),
        Command::Subscribers(sub) => subscribers::run(&config()?, sub),
        Command::Store(sub) => store_cmd::run(&config()?, sub),
    }
}

/// Refuses to go on when an issue file is bad: a bad issue anywhere stops `publish` before
/// anything is sent.
///
/// # Errors
/// [`Refused`], naming each bad file and line.
fn refuse_bad_issues(errors: &[IssueError]) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(Refused {
        items: errors.iter().map(ToString::to_string).collect(),
        summary: format!(
            "{} issue file(s) have errors (listed above); fix them and run again. Nothing was sent.",
            errors.len()
        ),
    }
    .into())
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
    block_on(async {
        let Some(store) = store::open(config, store::Open::IfExists).await? else {
            return Ok(Vec::new());
        };
        let channel = store::Channel::of(config);
        let mut mailed = Vec::new();
        for (issue, _) in store.issues().await? {
            if store.channels_of(&issue).await?.contains(&channel) {
                mailed.push(issue);
            }
        }
        Ok(mailed)
    })?
}
