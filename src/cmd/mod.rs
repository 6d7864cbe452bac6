//! The subcommands, one file each, and what they share: loading the site and finding an issue.

mod build;
mod check;
mod preview;
mod publish;
mod status;
mod subscribers;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::issue::{self, Issue, Loaded};

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
        Command::Status(args) => status::run(&config, args.issue.as_deref(), args.json),
        Command::Subscribers(sub) => subscribers::run(&config, sub),
    }
}

/// Loads every issue and prints each bad file as `path:line: message` on stderr.
fn load_issues(config: &Config) -> Result<Loaded> {
    let loaded = issue::load_all(config)?;
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    Ok(loaded)
}

/// Finds the issue loaded from `path` (compared after canonicalising both).
fn find_by_path<'a>(issues: &'a [Issue], path: &Path) -> Result<&'a Issue> {
    let wanted = path
        .canonicalize()
        .with_context(|| format!("cannot find the issue file `{}`", path.display()))?;
    match issues
        .iter()
        .find(|i| i.path.canonicalize().is_ok_and(|p| p == wanted))
    {
        Some(i) => Ok(i),
        None => bail!(
            "`{}` is not an issue of this site: issues are the `*.md` files under `{}`",
            path.display(),
            issue_dir_hint(issues)
        ),
    }
}

fn issue_dir_hint(issues: &[Issue]) -> String {
    issues
        .first()
        .and_then(|i| i.path.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the issues folder".into())
}
