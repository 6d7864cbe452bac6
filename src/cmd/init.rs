//! `feedpost init [DIR]`: a new site that works as it is — `check`, `serve --local` and
//! `publish` (into the outbox) run on it at once — before any stage of the pipeline has
//! anything to read.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Ran;
use anyhow::{bail, Context, Result};

use super::new::{front_matter, local_now, write_new};
use crate::cli::InitArgs;
use crate::config::Config;

/// The lines `init` puts in `.gitignore`: what feedpost writes beside the site's sources.
const GITIGNORE: &[&str] = &[
    "# What feedpost writes beside the site (see feedpost.toml).",
    "# The delivery ledger: who was sent which issue, and the key of every unsubscribe link.",
    "# Back it up; never commit it (and never delete it: a new one would mail everyone again).",
    "/feedpost.sqlite",
    "/feedpost.sqlite-*",
    "/feedpost.sqlite.lock",
    "# Rehearsals (.eml files) of `publish` without an [smtp] table, and `preview` output.",
    "/outbox/",
    "/preview/",
    "# The build cache, and the local preview of `feedpost serve --local`.",
    "/.feedpost-cache/",
    "# The built feeds and archive: publish this folder at `site.base_url` (delete this line",
    "# to commit it, e.g. for GitHub Pages).",
    "/feeds/",
];

/// Creates the site: see [`crate::cli::Command::Init`]. Checks the values given (by loading the
/// config it is about to write), refuses to go on when any file it would write exists or
/// `issues/` holds files, then writes each file (none is ever replaced) and prints what it wrote
/// and the next commands.
///
/// # Errors
/// A value given makes an invalid config (the message names the flag), a file exists, or a
/// file cannot be written.
pub fn run(args: &InitArgs) -> Result<Ran> {
    let dir = &args.dir;
    let from = match &args.from {
        Some(from) => from.clone(),
        None => default_from(&args.title, &args.base_url),
    };
    check_flags(args, &from)?;
    let config_text = config_text(&args.title, &args.base_url, &from, &args.language);
    Config::parse(&config_text, dir).context("the values given would make an invalid config")?;
    let now = local_now()?;
    let issue = PathBuf::from("issues").join(format!("{}-welcome.md", now.format("%Y-%m-%d")));
    refuse_existing(dir, &issue)?;
    let files: [(PathBuf, String); 3] = [
        ("feedpost.toml".into(), config_text),
        ("subscribers.toml".into(), SUBSCRIBERS.to_string()),
        (issue.clone(), welcome(&args.title, now)),
    ];
    let mut out = std::io::stdout().lock();
    for (rel, text) in &files {
        write_new(&dir.join(rel), text)?;
        writeln!(out, "created {}", dir.join(rel).display())?;
    }
    let gitignore = dir.join(".gitignore");
    match update_gitignore(&gitignore)? {
        Some(0) => {}
        Some(n) => writeln!(
            out,
            "added {} to {}",
            super::count(n, "line", "lines"),
            gitignore.display()
        )?,
        None => writeln!(out, "created {}", gitignore.display())?,
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", shell_word(&dir.to_string_lossy()))
    };
    writeln!(
        out,
        "\nNext: {cd}feedpost check && feedpost serve --local\n\
         Then edit feedpost.toml (the title, base_url, from) and {}, and `feedpost publish` it (into outbox/ until you add an [smtp] table).",
        issue.display()
    )?;
    Ok(Ran::success())
}

/// Refuses a `--base-url` that is not an absolute http(s) URL and a `--from` that is not a
/// mailbox, naming the flag and what to write.
fn check_flags(args: &InitArgs, from: &str) -> Result<()> {
    let url = url::Url::parse(&args.base_url).ok();
    if !url.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
        bail!(
            "--base-url `{}` is not an absolute http(s) URL: write where the archive will be, with its scheme, e.g. `https://news.example.org/`",
            args.base_url
        );
    }
    if let Err(e) = from.parse::<lettre::message::Mailbox>() {
        bail!("--from `{from}` is not a mailbox ({e}): write it as `Name <address@example.org>`");
    }
    Ok(())
}

/// Refuses when a file `init` writes exists in `dir`, or `dir/issues` holds anything: `init`
/// makes a new site, and adding an example issue to an existing one would publish it.
fn refuse_existing(dir: &Path, issue: &Path) -> Result<()> {
    let mut taken: Vec<String> = ["feedpost.toml", "subscribers.toml"]
        .into_iter()
        .map(Path::new)
        .chain([issue])
        .filter(|rel| dir.join(rel).symlink_metadata().is_ok())
        .map(|rel| rel.display().to_string())
        .collect();
    let issues = dir.join("issues");
    if let Ok(mut entries) = std::fs::read_dir(&issues) {
        if entries.next().is_some() && !taken.iter().any(|t| t.starts_with("issues")) {
            taken.push("issues/ (not empty)".into());
        }
    }
    if !taken.is_empty() {
        bail!(
            "`{}` already has a site: {} exist{}; nothing was written. Run `feedpost init` in a new or empty folder (`feedpost init my-newsletter`), or edit the site that is there",
            dir.display(),
            taken.join(", "),
            if taken.len() == 1 { "s" } else { "" }
        );
    }
    Ok(())
}

/// Appends to the `.gitignore` at `path` the lines of [`GITIGNORE`] it lacks; creates it when
/// missing. `None` when it was created, else how many lines were added.
fn update_gitignore(path: &Path) -> Result<Option<usize>> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", path.display())),
    };
    let Some(text) = existing else {
        write_new(path, &(GITIGNORE.join("\n") + "\n"))?;
        return Ok(None);
    };
    let has: Vec<&str> = text.lines().map(str::trim).collect();
    let missing: Vec<&str> = GITIGNORE
        .iter()
        .copied()
        .filter(|line| !line.starts_with('#') && !has.contains(line))
        .collect();
    if missing.is_empty() {
        return Ok(Some(0));
    }
    let mut add = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        add.push('\n');
    }
    add.push_str("# Written by feedpost (see `feedpost init`).\n");
    for line in &missing {
        add.push_str(line);
        add.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    file.write_all(add.as_bytes())
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(Some(missing.len()))
}

/// `Title <newsletter@HOST>`, the host being `base_url`'s (without `www.`), or `example.org`;
/// the title is quoted when it holds a character RFC 5322 reserves (`.`, `,`, `:`, ...).
fn default_from(title: &str, base_url: &str) -> String {
    let host = url::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .filter(|h| h.contains('.') && h.parse::<std::net::IpAddr>().is_err())
        .unwrap_or_else(|| "example.org".into());
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let name = title.replace(['"', '\\', '<', '>'], "");
    let name = name.trim();
    if name.contains(['(', ')', '[', ']', ':', ';', '@', ',', '.']) {
        format!("\"{name}\" <newsletter@{host}>")
    } else {
        format!("{name} <newsletter@{host}>")
    }
}

/// A value as a TOML basic string, quoted and escaped.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// `text` as one shell word (quoted when it needs to be).
fn shell_word(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `key = value` with `comment` after it, the comments of a table lined up.
fn keyed(key: &str, value: &str, comment: &str) -> String {
    let pair = format!("{key} = {value}");
    format!("{pair:<35} # {comment}\n")
}

/// The config file: every key a new site needs, with what it does; the optional tables
/// commented out.
fn config_text(title: &str, base_url: &str, from: &str, language: &str) -> String {
    let mut text = String::from(
        "# feedpost's site config. Paths are relative to this file. `feedpost check` reports a\n\
         # mistake with its line; README.md (\"Configuration reference\") lists every key.\n\n[site]\n",
    );
    text += &keyed(
        "title",
        &toml_string(title),
        "the newsletter's name: feeds, pages, email",
    );
    text += &keyed(
        "base_url",
        &toml_string(base_url),
        "where the feeds folder will be published",
    );
    text += "description = \"What this newsletter is about, in one line.\"\n";
    text += &keyed(
        "language",
        &toml_string(language),
        "BCP 47: \"en\", \"de\", \"zh-CN\" (Chinese words in the email)",
    );
    text += &keyed(
        "issues",
        "\"issues\"",
        "the issues: one Markdown file or page bundle each",
    );
    text += &keyed("subscribers", "\"subscribers.toml\"", "who receives them");
    text += &keyed(
        "feeds",
        "\"feeds\"",
        "output: RSS, Atom, JSON Feed and the web archive",
    );
    text += "\n[mail]\n";
    text += &keyed("from", &toml_string(from), "the sender");
    text += &keyed(
        "outbox",
        "\"outbox\"",
        "without [smtp], `publish` writes .eml files here",
    );
    text += &keyed(
        "ledger",
        "\"feedpost.sqlite\"",
        "who was sent what: back it up, never delete it",
    );
    text += r#"# reply_to = "Your Name <you@example.org>"
# The sender's postal address, in every email's footer (anti-spam laws ask for one):
# postal_address = "My Newsletter, 1 Example Road, Springfield"
# Readers unsubscribe by writing to this address (default: `from`) until `feedpost serve`
# runs; then set unsubscribe_url to its public_url + "unsubscribe?token={token}":
# unsubscribe_mailto = "unsubscribe@example.org"
# unsubscribe_url = "https://news.example.org/unsubscribe?token={token}"

# To send real mail, uncomment [smtp] and fill it in from your mail provider; the password
# goes in the environment variable FEEDPOST_SMTP_PASSWORD, never here. Try it first with
# `feedpost publish --to you@example.org`.
# [smtp]
# host = "smtp.example.org"
# port = 587                        # 587 with "starttls", 465 with "tls"
# security = "starttls"             # "starttls" | "tls" | "none" (a relay on this machine)
# username = "newsletter@example.org"
# rate_per_second = 10              # if your provider limits how fast you may send

# For readers to join and leave by themselves, run `feedpost serve` behind your web server:
# [serve]
# listen = "127.0.0.1:8080"
# public_url = "https://news.example.org/"
"#;
    text
}

/// The subscriber list: the format in comments, and one example reader.
const SUBSCRIBERS: &str = r#"# Who receives each issue: one [[subscribers]] table per reader. `feedpost check` reports a
# bad entry with its line; `publish` skips it and sends to the others.
#
#   email  = the address (required)
#   name   = optional: the greeting ("Hi Ada,") and the To header
#   topics = optional: only issues whose tags or categories include one of these
#
# An example reader: replace it with yours before you send real mail.
[[subscribers]]
email = "reader@example.org"
name = "Reader"
"#;

/// The example issue, dated `now` and not a draft, so `publish` takes it as it is.
fn welcome(title: &str, now: chrono::DateTime<chrono::FixedOffset>) -> String {
    let mut text = front_matter(&format!("Welcome to {title}"), now, false);
    let next = (now + chrono::Duration::days(7)).format("%Y-%m-%d");
    text.push_str(&format!(
        r#"
This is the first issue, written in Markdown. Replace it with yours: every issue is one
file in `issues/`, and `feedpost new issues/{next}-second.md` starts the next one.

## What goes in an issue

- **Headings, lists, quotes and links**, like [the Markdown guide](https://commonmark.org/help/).
- Images: `![a description](https://example.org/picture.jpg)` — always with a description.
- Front matter between the `---` lines: `title` and `date` are required; `draft: true`
  keeps an issue unpublished until you delete the line.

> Each reader gets each issue once, by email, and it appears in the feeds and the web
> archive at the same time.

See you next week!
"#
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_init_writes_loads_and_names_the_values_given() {
        let text = config_text(
            "Ada's \"Weekly\"",
            "https://news.example.org/",
            &default_from("Ada's \"Weekly\"", "https://www.example.net/"),
            "en",
        );
        let config = Config::parse(&text, Path::new("/site")).unwrap();
        assert_eq!(config.site.title, "Ada's \"Weekly\"");
        assert_eq!(config.site.base_url.as_str(), "https://news.example.org/");
        assert_eq!(config.mail.from, "Ada's Weekly <newsletter@example.net>");
        assert_eq!(
            default_from("News, weekly", "http://127.0.0.1:8080/"),
            "\"News, weekly\" <newsletter@example.org>"
        );
        assert!(config.smtp.is_none() && config.serve.is_none());
    }

    #[test]
    fn the_example_issue_is_due_and_not_a_draft() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T09:30:00+01:00").unwrap();
        let config = Config::parse(
            &config_text("T", "https://example.org/", "T <t@example.org>", "en"),
            Path::new("/site"),
        )
        .unwrap();
        let issue = crate::issue::parse_bytes(
            welcome("T", now).into_bytes(),
            Path::new("/site/issues/x.md"),
            &config,
        )
        .unwrap();
        assert_eq!(issue.title, "Welcome to T");
        assert!(issue.is_published_at(now));
    }

    #[test]
    fn an_existing_gitignore_gets_only_the_lines_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".gitignore");
        std::fs::write(&path, "target/\n/outbox/").unwrap();
        let added = update_gitignore(&path).unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("target/\n/outbox/\n# Written by feedpost"),
            "{text}"
        );
        assert_eq!(text.matches("/outbox/").count(), 1);
        assert_eq!(
            added,
            GITIGNORE.iter().filter(|l| !l.starts_with('#')).count() - 1
        );
        assert_eq!(update_gitignore(&path).unwrap(), Some(0));
    }
}
