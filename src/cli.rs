//! The command line (clap derive): global options and one subcommand per job.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Publish a Markdown newsletter as RSS, Atom and JSON feeds, a web archive, and email delivered
/// exactly once over SMTP.
#[derive(Debug, Parser)]
#[command(name = "feedpost", version, about)]
pub struct Cli {
    /// The site's config file; relative paths in it are relative to its folder.
    #[arg(
        long,
        short,
        global = true,
        default_value = "feedpost.toml",
        env = "FEEDPOST_CONFIG"
    )]
    pub config: PathBuf,
    /// More log output (repeat for more); `FEEDPOST_LOG` sets a full filter.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the feeds and the web archive into the feeds folder; send nothing.
    Build,
    /// Lint the site and write nothing: config, front matter, duplicate slugs, dates in the
    /// future, drafts, links to issues that do not exist, images without alt text, and Markdown
    /// emphasis that will show as literal `**`. Prints `file:line: severity: message` per finding
    /// and a summary; exits 1 on errors, 0 on warnings only. Links are checked only under
    /// `site.permalink_prefix` (e.g. `/issues/<slug>/`); other site paths are not built by
    /// feedpost and are left alone.
    Check,
    /// Build, then send an issue to every subscriber who has not received it.
    Publish(PublishArgs),
    /// Send again what an earlier publish of ISSUE left queued or deferred; adds no recipients.
    Retry(RetryArgs),
    /// Write the message a sample recipient would get as .eml, .html and .txt, and PNG
    /// screenshots of it (600 and 375 px, light and dark) when Chromium is installed.
    Preview(PreviewArgs),
    /// Show where deliveries stand: counts per state and the last replies.
    Status(StatusArgs),
    /// Serve the subscription pages (double opt-in, one-click unsubscribe) and the feeds folder
    /// over HTTP, as the `[serve]` table says; links are signed with `FEEDPOST_SECRET`.
    Serve,
    /// Inspect and edit the suppression list.
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
}

/// `publish` options.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The issue file; default: the newest issue that is not a draft and not dated in the future.
    pub issue: Option<PathBuf>,
    /// Show what would be sent and to how many; write and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send one real copy of ISSUE to ADDRESS over the configured transport (SMTP, or the
    /// outbox), as that reader would get it (with their name, if listed); recorded nowhere and
    /// counted nowhere. Drafts and issues dated in the future may be test-sent.
    #[arg(long, value_name = "ADDRESS", conflicts_with_all = ["dry_run", "as_new_issue"])]
    pub to: Option<String>,
    /// Allow publishing ISSUE although its date is in the future (as Hugo's `--buildFuture`):
    /// its page is built before any mail goes out. Drafts are never published.
    #[arg(long)]
    pub future: bool,
    /// Send ISSUE to every subscriber as a new issue even though the ledger knows it as an issue
    /// already mailed under another slug or base URL (same title and date, or same content).
    #[arg(long)]
    pub as_new_issue: bool,
}

/// `retry` options.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The issue file.
    pub issue: PathBuf,
}

/// `preview` options.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The issue file.
    pub issue: PathBuf,
    /// Folder to write `<slug>.eml`, `<slug>.html`, `<slug>.txt` and the screenshots
    /// `<slug>-<width>-<light|dark>.png` into.
    #[arg(long)]
    pub out: PathBuf,
    /// The sample recipient; default: the first subscriber in the list.
    #[arg(long)]
    pub to: Option<String>,
    /// Do not write the PNG screenshots (600 and 375 px wide, light and dark), which need
    /// Chromium.
    #[arg(long)]
    pub no_screenshots: bool,
}

/// `status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The issue file, slug or permalink; default: every issue in the ledger.
    pub issue: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `subscribers` subcommands.
#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// List suppressed addresses with the reply that suppressed them.
    Suppressed {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift the suppression of ADDRESS; its failed deliveries are queued again.
    Unsuppress {
        /// The address.
        address: String,
    },
    /// Add ADDRESS to the suppression list by hand.
    Suppress {
        /// The address.
        address: String,
        /// Why, for the list.
        #[arg(long, default_value = "suppressed by hand")]
        reason: String,
    },
}

/// Starts `tracing` on stderr: `FEEDPOST_LOG` if set, else `info` (`debug` with `-v`, `trace`
/// with `-vv`, `error` with `-q`); no timestamps when stderr is a terminal.
pub fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info,headless_chrome=error",
        (false, 1) => "feedpost=debug,info,headless_chrome=error",
        (false, _) => "trace",
    };
    let filter =
        EnvFilter::try_from_env("FEEDPOST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(terminal);
    if terminal {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
