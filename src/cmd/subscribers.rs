//! `feedpost subscribers …`: the editor's hands on the readers — list, add, remove, import and
//! export them (CSV, see [`crate::subscribers::csv`]) — and on the suppression list.
//!
//! Readers live in two places: the editor's `subscribers.toml`, read into the store by every
//! publish, and the store itself (the web, `add`, `import`). `list`, `export` and `status` show
//! both as the next publish will see them, without writing anything.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use tracing::warn;

use crate::cli::SubscribersCommand;
use crate::cmd::Ran;
use crate::config::Config;
use crate::store::{
    self, Added, NewSubscriber, Open, Removed, Source, Store, SubscriberCounts, SubscriberState,
};
use crate::subscribers::{self, csv, normalize};

/// How many subscribers are read from the store at a time.
const PAGE: usize = 5_000;

/// The longest name `add` keeps, in characters (as the subscription form and `import`).
const MAX_NAME_CHARS: usize = 100;

/// Runs a `subscribers` subcommand. Addresses are compared as the subscriber list compares them
/// (see [`normalize`]): case-insensitively, an internationalised domain in any spelling.
/// Reading commands (`list`, `export`, `suppressed`) and `remove`/`unsuppress` create no store.
///
/// Exit codes (see [`Ran`]): 1 when `import` skipped bad rows (each reported as `file:line:
/// message`), when `add` is refused (the reader unsubscribed, or is suppressed), when `remove`
/// names an address that is not a subscriber or is listed in `subscribers.toml`, and when
/// `unsuppress` names an address that was not suppressed.
///
/// # Errors
/// The store cannot be opened, an address or name given on the command line is not valid, the
/// CSV file cannot be read or its header is wrong, the subscriber file cannot be read, or
/// stdout cannot be written (a closed pipe ends the command quietly, see `main`).
pub fn run(config: &Config, command: SubscribersCommand) -> Result<Ran> {
    super::block_on(async {
        match command {
            SubscribersCommand::List { json } => list(config, json).await,
            SubscribersCommand::Add {
                email,
                name,
                topics,
            } => add(config, &email, name, topics).await,
            SubscribersCommand::Remove { email } => remove(config, &email).await,
            SubscribersCommand::Import { file } => import(config, &file).await,
            SubscribersCommand::Export => export(config).await,
            SubscribersCommand::Suppressed { json } => suppressed(config, json).await,
            SubscribersCommand::Unsuppress { address } => unsuppress(config, &address).await,
            SubscribersCommand::Suppress { address, reason } => {
                suppress(config, &address, &reason).await
            }
        }
    })?
}

/// One subscriber as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    /// The address as written.
    pub email: String,
    /// The name, if any.
    pub name: Option<String>,
    /// Topics; empty: every issue.
    pub topics: Vec<String>,
    /// Its state.
    pub state: SubscriberState,
    /// Where it came from.
    pub source: Source,
    /// When it was confirmed (or added), RFC 3339, UTC; none for a reader of the file that no
    /// publish has read in yet.
    pub confirmed_at: Option<String>,
    /// When it unsubscribed, RFC 3339, UTC.
    pub unsubscribed_at: Option<String>,
}

/// Everyone the store and the subscriber file know, by key, as the next publish will see them:
/// the store's subscribers, less the file's confirmed readers the file no longer lists, plus the
/// file's readers the store does not know yet (confirmed, source `file`). Bad entries of the file
/// are counted in a warning (`feedpost check` lists them). Nothing is written.
///
/// # Errors
/// The store or the subscriber file cannot be read (a missing file is an empty one).
pub(crate) async fn roster(config: &Config) -> Result<BTreeMap<String, Listed>> {
    let path = &config.site.subscribers;
    let mut in_file = BTreeMap::new();
    let mut bad = 0usize;
    if path.exists() {
        subscribers::read(
            path,
            |s| {
                in_file.entry(s.key.clone()).or_insert(s);
            },
            |_| bad += 1,
        )?;
    }
    if bad > 0 {
        warn!(
            "{} in `{}` skipped; `feedpost check` lists them",
            super::count(bad, "bad entry", "bad entries"),
            path.display()
        );
    }
    let mut roster = BTreeMap::new();
    if let Some(store) = store::open(config, Open::IfExists).await? {
        let mut after = String::new();
        loop {
            let page = store.subscribers(&after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.address.clone();
            for row in page {
                let stale = row.source == Source::File
                    && row.state == SubscriberState::Confirmed
                    && !in_file.contains_key(&row.address);
                if !stale {
                    roster.insert(
                        row.address.clone(),
                        Listed {
                            email: row.email,
                            name: row.name,
                            topics: row.topics,
                            state: row.state,
                            source: row.source,
                            confirmed_at: row.confirmed_at.and_then(rfc3339),
                            unsubscribed_at: row.unsubscribed_at.and_then(rfc3339),
                        },
                    );
                }
            }
        }
    }
    for (key, s) in in_file {
        roster.entry(key).or_insert(Listed {
            email: s.email,
            name: s.name,
            topics: s.topics,
            state: SubscriberState::Confirmed,
            source: Source::File,
            confirmed_at: None,
            unsubscribed_at: None,
        });
    }
    Ok(roster)
}

/// Subscribers per state, as [`roster`] sees them.
///
/// # Errors
/// As [`roster`].
pub(crate) async fn counts(config: &Config) -> Result<SubscriberCounts> {
    let mut counts = SubscriberCounts::default();
    for listed in roster(config).await?.values() {
        counts.add(listed.state, 1);
    }
    Ok(counts)
}

fn rfc3339(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0).map(|d| d.to_rfc3339())
}

/// `list`: one line per subscriber, `email  state  source  name  topics` (tab-separated, topics
/// joined by `;`), or `{"subscribers": [...]}` with `--json`.
async fn list(config: &Config, json: bool) -> Result<Ran> {
    let roster = roster(config).await?;
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<&Listed> = roster.values().collect();
        writeln!(out, "{}", serde_json::json!({ "subscribers": list }))?;
    } else if roster.is_empty() {
        writeln!(out, "no subscribers")?;
    } else {
        for s in roster.values() {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                s.email,
                s.state.as_str(),
                s.source.as_str(),
                s.name.as_deref().unwrap_or_default(),
                s.topics.join(";")
            )?;
        }
    }
    Ok(Ran::success())
}

/// `add`: one confirmed subscriber of source `cli`.
async fn add(
    config: &Config,
    email: &str,
    name: Option<String>,
    topics: Vec<String>,
) -> Result<Ran> {
    let (_, key) = normalize(email).map_err(|e| anyhow!(e))?;
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if let Some(name) = &name {
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            anyhow::bail!(
                "the name `{name}` is not usable: at most {MAX_NAME_CHARS} characters, no line breaks or control characters"
            );
        }
    }
    let mut wanted: Vec<String> = Vec::new();
    for topic in topics.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if !wanted.iter().any(|t| t.eq_ignore_ascii_case(topic)) {
            wanted.push(topic.to_string());
        }
    }
    warn_unknown_topics(config, wanted.iter().map(|t| (t.as_str(), None)));
    let store = open_or_create(config).await?;
    let new = NewSubscriber {
        key: &key,
        email: email.trim(),
        name: name.as_deref(),
        topics: &wanted,
        source: Source::Cli,
    };
    let answer = store
        .add_subscribers(&[new], crate::now()?)
        .await?
        .first()
        .copied()
        .context("internal error: the store answered nothing")?;
    let email = email.trim();
    let mut out = std::io::stdout().lock();
    match answer {
        Added::Added => writeln!(out, "added {email}")?,
        Added::Updated => writeln!(out, "updated {email}: confirmed, with the name and topics given")?,
        Added::Unsubscribed => {
            return Ok(Ran::with_errors(vec![format!(
                "`{email}` unsubscribed; only the reader can subscribe again (through the subscription form)"
            )]))
        }
        Added::Suppressed => {
            return Ok(Ran::with_errors(vec![format!(
                "`{email}` is on the suppression list (`feedpost subscribers suppressed` says why); lift it with `feedpost subscribers unsuppress {email}` first"
            )]))
        }
    }
    Ok(Ran::success())
}

/// `remove`: a subscriber of the store; a reader of `subscribers.toml` is removed there.
async fn remove(config: &Config, email: &str) -> Result<Ran> {
    let (_, key) = normalize(email).map_err(|e| anyhow!(e))?;
    let path = &config.site.subscribers;
    if path.exists() {
        let mut line = None;
        subscribers::read(
            path,
            |s| {
                if s.key == key && line.is_none() {
                    line = Some(s.line);
                }
            },
            |_| {},
        )?;
        if let Some(line) = line {
            return Ok(Ran::with_errors(vec![format!(
                "{}:{line}: `{email}` is listed here; delete its entry (the next publish reads the file). Nothing was changed",
                path.display()
            )]));
        }
    }
    let removed = match store::open(config, Open::IfExists).await? {
        Some(store) => store.remove_subscriber(&key).await?,
        None => Removed::NotFound,
    };
    let mut out = std::io::stdout().lock();
    match removed {
        Removed::Removed => writeln!(out, "removed {email}")?,
        Removed::NotFound => {
            return Ok(Ran::with_errors(vec![format!(
                "`{email}` is not a subscriber (`feedpost subscribers list` shows who is)"
            )]))
        }
        Removed::Kept(state) => writeln!(
            out,
            "{email} is {}: kept as the record that it must not be mailed",
            state.as_str()
        )?,
    }
    Ok(Ran::success())
}

/// `import FILE.csv`: every good row added (source `import`) in one transaction — an address
/// already subscribed takes the row's spelling, name and topics; bad rows reported and skipped.
async fn import(config: &Config, file: &Path) -> Result<Ran> {
    let bytes =
        std::fs::read(file).with_context(|| format!("failed to read `{}`", file.display()))?;
    let (rows, bad) = csv::parse(&bytes, file)?;
    warn_unknown_topics(
        config,
        rows.iter()
            .flat_map(|r| r.topics.iter().map(|t| (t.as_str(), Some((file, r.line))))),
    );
    let store = open_or_create(config).await?;
    let new: Vec<NewSubscriber<'_>> = rows
        .iter()
        .map(|r| NewSubscriber {
            key: &r.key,
            email: &r.email,
            name: r.name.as_deref(),
            topics: &r.topics,
            source: Source::Import,
        })
        .collect();
    let answers = store.add_subscribers(&new, crate::now()?).await?;
    let (mut added, mut updated, mut left) = (0usize, 0usize, 0usize);
    for (row, answer) in rows.iter().zip(&answers) {
        match answer {
            Added::Added => added += 1,
            Added::Updated => updated += 1,
            Added::Unsubscribed | Added::Suppressed => {
                left += 1;
                let why = if *answer == Added::Unsubscribed {
                    "unsubscribed; only the reader can subscribe again"
                } else {
                    "is on the suppression list"
                };
                warn!(
                    "{}:{}: `{}` {why}; not imported",
                    file.display(),
                    row.line,
                    row.email
                );
            }
        }
    }
    let mut line = format!(
        "imported {} from {}: {added} new, {updated} updated",
        super::count(added + updated, "subscriber", "subscribers"),
        file.display()
    );
    if left + bad.len() > 0 {
        line.push_str(&format!(
            "; skipped {} and {left} unsubscribed or suppressed",
            super::count(bad.len(), "bad row", "bad rows"),
        ));
    }
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(Ran::with_errors(
        bad.iter().map(ToString::to_string).collect(),
    ))
}

/// `export`: the confirmed subscribers as CSV on stdout.
async fn export(config: &Config) -> Result<Ran> {
    let roster = roster(config).await?;
    let confirmed = roster
        .values()
        .filter(|s| s.state == SubscriberState::Confirmed)
        .map(|s| (s.email.as_str(), s.name.as_deref(), s.topics.as_slice()));
    csv::write(std::io::stdout().lock(), confirmed)?;
    Ok(Ran::success())
}

/// Warns once per topic that is none of the site's categories or tags (compared ignoring
/// case, as [`subscribers::IssueTopics::wanted_by`] does): a typo would quietly leave the reader without issues.
/// `topics` are `(topic, where: file and line)`. A site that cannot be loaded is not checked.
fn warn_unknown_topics<'a>(
    config: &Config,
    topics: impl IntoIterator<Item = (&'a str, Option<(&'a Path, u64)>)>,
) {
    let Ok(site) = crate::site::Site::load(config) else {
        return;
    };
    let Ok(now) = crate::now() else { return };
    let known: std::collections::HashSet<String> = crate::serve::topics(&site, now.fixed_offset())
        .iter()
        .map(|t| t.to_lowercase())
        .collect();
    let mut warned = std::collections::HashSet::new();
    for (topic, at) in topics {
        let lower = topic.to_lowercase();
        if known.contains(&lower) || !warned.insert(lower) {
            continue;
        }
        let at = at.map_or(String::new(), |(path, line)| {
            format!("{}:{line}: ", path.display())
        });
        warn!(
            "{at}the topic `{topic}` is none of the site's categories or tags yet; such a reader gets only issues that carry it"
        );
    }
}

async fn open_or_create(config: &Config) -> Result<Box<dyn Store>> {
    store::open(config, Open::OrCreate)
        .await?
        .context("internal error: the store was not created")
}

/// `suppressed`: the suppression list, tab-separated (address, RFC 3339 time, reason) or JSON.
async fn suppressed(config: &Config, json: bool) -> Result<Ran> {
    let list = match store::open(config, Open::IfExists).await? {
        Some(store) => store.suppressions().await?,
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::json!({ "suppressed": list }))?;
    } else if list.is_empty() {
        writeln!(out, "no suppressed addresses")?;
    } else {
        for s in &list {
            let when = rfc3339(s.suppressed_at).unwrap_or_default();
            writeln!(out, "{}\t{}\t{}", s.address, when, s.reason)?;
        }
    }
    Ok(Ran::success())
}

/// `unsuppress`: exit code 1 when the address was not suppressed.
async fn unsuppress(config: &Config, address: &str) -> Result<Ran> {
    let (_, key) = normalize(address).map_err(|e| anyhow!(e))?;
    let lifted = match store::open(config, Open::IfExists).await? {
        Some(store) => store.unsuppress(&key).await?,
        None => false,
    };
    let mut out = std::io::stdout().lock();
    if !lifted {
        writeln!(out, "{address} was not suppressed")?;
        return Ok(Ran::failure());
    }
    writeln!(
        out,
        "{address} is no longer suppressed; its failed deliveries are queued again"
    )?;
    Ok(Ran::success())
}

/// `suppress`: adds the address by hand.
async fn suppress(config: &Config, address: &str, reason: &str) -> Result<Ran> {
    let (_, key) = normalize(address).map_err(|e| anyhow!(e))?;
    open_or_create(config).await?.suppress(&key, reason).await?;
    writeln!(std::io::stdout().lock(), "{address} suppressed")?;
    Ok(Ran::success())
}
