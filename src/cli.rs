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

/// The subcommands. The first line of each doc comment is its one line in `feedpost --help`;
/// the rest shows in `feedpost help COMMAND`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a new site in DIR: config, an example issue, a subscriber list
    ///
    /// Writes `feedpost.toml` (every key a new site needs, with comments), `issues/` with one
    /// example issue dated now, `subscribers.toml` and a `.gitignore` for what feedpost writes
    /// beside them (the ledger, the outbox, the build cache, the feeds folder). Refuses to
    /// overwrite any file; an existing `.gitignore` gets the lines it lacks.
    Init(InitArgs),
    /// Write a new issue file with front matter: title, today's date, `draft: true`
    ///
    /// `feedpost new issues/2026-12-04-weekly.md` writes that file; a path without `.md`
    /// (`issues/2026-12-04-weekly`) makes a page bundle: the folder with an `index.md`, where
    /// the issue's images go too. The title comes from the name (without a leading date) unless
    /// `--title` gives it. Refuses to overwrite a file.
    New(NewArgs),
    /// Lint the site, the subscriber list and the config; write nothing
    ///
    /// Config, front matter, duplicate slugs, dates in the future, drafts, links to issues that
    /// do not exist, images without alt text, Markdown emphasis that will show as literal `**`,
    /// and the subscriber list (bad addresses, unknown keys, repeated addresses). Prints
    /// `file:line: severity: message` per finding and a summary; exits 1 on errors, 0 on
    /// warnings only. Links are checked only under `site.permalink_prefix` (e.g.
    /// `/issues/<slug>/`); other site paths are not built by feedpost and are left alone.
    Check(CheckArgs),
    /// Write the feeds and the web archive into the feeds folder; send nothing
    Build,
    /// Preview the site (`--local`), or serve the subscription pages and the feeds
    ///
    /// `feedpost serve --local`: builds the site into a folder of its own with `base_url` at
    /// `http://127.0.0.1:PORT/`, serves the archive, the feeds and each issue's email (HTML and
    /// text side by side, at `/_feedpost/`), and rebuilds and reloads the browser when an issue,
    /// the config or the subscriber list changes. Shows drafts and issues dated in the future
    /// unless `--hide-drafts`. Needs no `[serve]` table and no `FEEDPOST_SECRET`; the
    /// subscription pages are off.
    ///
    /// `feedpost serve`: the subscription server, as the `[serve]` table says (double opt-in,
    /// one-click unsubscribe) and the feeds folder; links are signed with `FEEDPOST_SECRET`.
    Serve(ServeArgs),
    /// Write the email a sample recipient gets as .eml, .html, .txt and screenshots
    ///
    /// The message a sample recipient would get, as .eml, .html and .txt, and PNG screenshots
    /// of it (600 and 375 px, light and dark) when Chromium is installed.
    Preview(PreviewArgs),
    /// Build, then send an issue to every subscriber who has not received it
    ///
    /// Without ISSUE, the newest issue whose date has come (not a draft): run it from cron or a
    /// systemd timer and each issue goes out on its date, once. Older issues never mailed are
    /// left alone (a new list never gets a backlog; name one to send it), and a run with
    /// nothing due says when the next issue is and exits 0.
    Publish(PublishArgs),
    /// Send again what an earlier publish of ISSUE left queued or deferred
    ///
    /// Adds no recipients: only those an earlier publish queued, still eligible.
    Retry(RetryArgs),
    /// Show subscribers by state, where deliveries stand, and the issue due now and next
    ///
    /// First the subscribers per state; then, per issue in the ledger: counts per state,
    /// attempts and the last replies, the mail (SMTP) and the outbox rehearsal apart. Without
    /// ISSUE, then the schedule: the issue a `publish` without an issue sends now (mailed or not
    /// yet), and the next issue by date with when it becomes due.
    Status(StatusArgs),
    /// List, add, remove, import and export subscribers; edit the suppression list
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// Migrate, inspect, or fill the store (the SQLite ledger, or PostgreSQL with `[store]`)
    ///
    /// `feedpost store migrate` applies the schema migrations the store lacks (every command
    /// that writes does so too); `status` shows where the store is, its schema version, the
    /// senders at work and what it holds; `copy --from feedpost.sqlite` copies an SQLite ledger
    /// into the PostgreSQL store of the `[store]` table, to send from several hosts.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    ///
    /// For bash: `feedpost completions bash > ~/.local/share/bash-completion/completions/feedpost`;
    /// zsh: `feedpost completions zsh > ~/.zfunc/_feedpost` (with `fpath+=~/.zfunc` before
    /// `compinit`); fish: `feedpost completions fish > ~/.config/fish/completions/feedpost.fish`.
    Completions(CompletionsArgs),
    /// Print the man page, or write one per command with `--out DIR`
    ///
    /// `feedpost man | man -l -` reads it; `feedpost man --out ~/.local/share/man/man1` installs
    /// `feedpost.1` and `feedpost-<command>.1` for `man feedpost-publish`.
    Man(ManArgs),
}

/// `init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder of the new site (created if missing); default: the current folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The newsletter's name (`site.title`).
    #[arg(long, default_value = "My Newsletter")]
    pub title: String,
    /// Where the archive will be published (`site.base_url`), an absolute http(s) URL.
    #[arg(long, value_name = "URL", default_value = "https://example.org/")]
    pub base_url: String,
    /// The sender (`mail.from`), e.g. `"My Newsletter <news@example.org>"`; default: the
    /// title at `newsletter@` the base URL's domain.
    #[arg(long, value_name = "MAILBOX")]
    pub from: Option<String>,
    /// The language of the newsletter (`site.language`, BCP 47): `en`, `zh-CN`, `de`, ...
    #[arg(long, default_value = "en")]
    pub language: String,
}

/// `check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print one JSON object instead of lines: `{"findings": [{"file", "line", "severity",
    /// "message"}], "errors", "warnings", "issues", "subscribers"}` (`line` 0: not on a line;
    /// `subscribers` null when the config did not load).
    #[arg(long)]
    pub json: bool,
}

/// `new` options.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The issue file to write (`issues/2026-12-04-weekly.md`), or a page bundle's folder
    /// (`issues/2026-12-04-weekly`), relative to the current folder.
    pub path: PathBuf,
    /// The issue's title; default: from the file name.
    #[arg(long)]
    pub title: Option<String>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Preview the site on this machine, rebuilding and reloading the browser on every change;
    /// needs no `[serve]` table and no `FEEDPOST_SECRET`.
    #[arg(long)]
    pub local: bool,
    /// With `--local`: the port on 127.0.0.1; 0 takes any free one. Default: 1111, or any free
    /// one when 1111 is taken.
    #[arg(long, requires = "local")]
    pub port: Option<u16>,
    /// With `--local`: leave drafts and issues dated in the future out of the archive, as the
    /// published site will (their emails are still previewed).
    #[arg(long, requires = "local")]
    pub hide_drafts: bool,
}

/// `completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `feedpost.1` and one `feedpost-<command>.1` per command into this folder instead
    /// of printing `feedpost.1`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `publish` options.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The issue file; default: the newest issue whose date has come (not a draft), and none
    /// older.
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
    /// Print the summary as one JSON object on stdout, with the same numbers as the text line
    /// (see the README's "Publishing from scripts").
    #[arg(long)]
    pub json: bool,
}

/// `retry` options.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The issue file.
    pub issue: PathBuf,
    /// Print the summary as one JSON object on stdout, as `publish --json` does.
    #[arg(long)]
    pub json: bool,
}

/// `preview` options.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The issue file.
    pub issue: PathBuf,
    /// Folder to write `<slug>.eml`, `<slug>.html`, `<slug>.txt` and the screenshots
    /// `<slug>-<width>-<light|dark>.png` into; default: `preview/` beside the config file.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The sample recipient, with their name when the subscriber list has them; default: the
    /// first subscriber in the list.
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

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Apply the schema migrations the store lacks, and print its schema version
    Migrate,
    /// Show where the store is, its schema version, the senders at work, and what it holds
    Status,
    /// Copy an SQLite ledger into the PostgreSQL store of the `[store]` table
    ///
    /// Deliveries (one left `sending` by a run that died is queued again), the suppression
    /// list, issue records and subscribers, in one transaction. The ledger is locked meanwhile
    /// (no publish may run on it). Refuses a store that already holds data unless `--force`.
    Copy {
        /// The SQLite ledger to copy (`mail.ledger`, by default `feedpost.sqlite`).
        #[arg(long, value_name = "LEDGER")]
        from: PathBuf,
        /// Copy into a store that already holds data: rows it has already (same key) are kept.
        #[arg(long)]
        force: bool,
    },
}

/// `subscribers` subcommands.
#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// List every subscriber (subscribers.toml and the store) with its state and source.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add EMAIL as a confirmed subscriber (no confirmation email: you vouch for it).
    Add {
        /// The address.
        email: String,
        /// The reader's name, for the greeting and the `To` header.
        #[arg(long)]
        name: Option<String>,
        /// A topic (a category or tag of the site) the reader wants; repeat for more; none:
        /// every issue.
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Remove EMAIL, added by `add`, `import` or on the web (edit subscribers.toml for its
    /// readers).
    Remove {
        /// The address.
        email: String,
    },
    /// Import subscribers from a CSV file with the header `email,name,topics` (topics
    /// separated by `;`); bad rows are reported and skipped.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
    },
    /// Export the confirmed subscribers as CSV (`email,name,topics`) on stdout.
    Export,
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
