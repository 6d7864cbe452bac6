//! The subscriber list: who receives an issue.
//!
//! Read by `publish` between rendering and delivery. The file is TOML, one `[[subscribers]]` table
//! per subscriber (see `subscribers.example.toml`). It is read one table at a time, so a bad entry
//! is reported with its `file:line` and skipped while the rest go on, and memory stays small for
//! lists of hundreds of thousands of subscribers. Suppressions (addresses that must not be mailed)
//! live in the store, see [`crate::store::Store`].

pub mod check;
pub mod csv;
pub mod token;

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::issue::Issue;

/// One subscriber as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The address as written, for messages to the editor.
    pub email: String,
    /// The address for the envelope and the `To` header: as written, but an internationalised
    /// domain in A-labels (see [`normalize`]).
    pub address: String,
    /// How the ledger and the suppression list compare recipients: [`Subscriber::address`]
    /// lowercased (see [`normalize`]).
    pub key: String,
    /// Display name for the greeting and the `To` header; any Unicode.
    pub name: Option<String>,
    /// Topics the subscriber wants; empty means every issue.
    pub topics: Vec<String>,
    /// 1-based line of the entry's `[[subscribers]]` header.
    pub line: usize,
}

impl Subscriber {
    /// Whether this subscriber receives the issue whose topics are `issue` (see
    /// [`IssueTopics::wanted_by`]).
    pub fn wants(&self, issue: &IssueTopics) -> bool {
        issue.wanted_by(&self.topics)
    }
}

/// The topics an issue offers: its categories and tags ([`Issue::terms`]), lowercased once per
/// issue rather than once per reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueTopics(Vec<String>);

impl IssueTopics {
    /// `issue`'s categories and tags, lowercased.
    pub fn of(issue: &Issue) -> IssueTopics {
        IssueTopics(issue.terms().iter().map(|t| t.to_lowercase()).collect())
    }

    /// Whether a reader with `topics` receives the issue: no topics (every issue), or a topic
    /// equal, ignoring case, to one of the issue's categories or tags — the terms the
    /// subscription form offers (see [`crate::serve::topics()`]). The same rule for readers of
    /// the file and readers in the store.
    pub fn wanted_by(&self, topics: &[String]) -> bool {
        topics.is_empty() || topics.iter().any(|t| self.0.contains(&t.to_lowercase()))
    }
}

/// An address as feedpost sends to it and compares it: `(address, key)`. The domain of
/// `address` is in A-labels (IDNA, RFC 5891: `bücher.example` → `xn--bcher-kva.example`), so it
/// needs no SMTPUTF8 and every spelling of it is one recipient; the local part is kept as written
/// (RFC 5321 lets the receiving server read its case). `key` is `address` lowercased.
///
/// # Errors
/// `email` is not a valid address (RFC 5321 mailbox), or its domain is not a valid IDN; the
/// message says which.
pub fn normalize(email: &str) -> Result<(String, String), String> {
    let email = email.trim();
    let (local, domain) = email
        .rsplit_once('@')
        .ok_or_else(|| format!("`{email}` is not a valid e-mail address (no `@`)"))?;
    let domain = if domain.is_ascii() {
        domain.to_string()
    } else {
        idna::domain_to_ascii(domain).map_err(|_| {
            format!("`{email}` is not a valid e-mail address (the domain `{domain}` is not a valid internationalised domain name)")
        })?
    };
    let address = format!("{local}@{domain}");
    address
        .parse::<lettre::Address>()
        .map_err(|e| format!("`{email}` is not a valid e-mail address ({e})"))?;
    let key = address.to_lowercase();
    Ok((address, key))
}

/// A bad entry: reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The subscriber file.
    pub path: PathBuf,
    /// 1-based line of the entry.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

#[derive(Deserialize)]
struct RawEntry {
    email: Option<String>,
    name: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    subscribers: Vec<toml::Table>,
}

/// Reads the subscriber file at `path` and calls `each` for every valid entry, in file order, and
/// `bad` for every invalid one. The file is read one entry at a time: memory does not grow with
/// the list.
///
/// # Errors
/// The file cannot be opened or read. Entry problems go to `bad` and are not errors.
pub fn read(
    path: &Path,
    mut each: impl FnMut(Subscriber),
    mut bad: impl FnMut(EntryError),
) -> Result<()> {
    for entry in open(path)? {
        match entry
            .with_context(|| format!("failed to read the subscriber list `{}`", path.display()))?
        {
            Ok(s) => each(s),
            Err(e) => bad(e),
        }
    }
    Ok(())
}

/// The first valid entry of the subscriber file at `path` (the sample reader of `preview` and
/// `serve --local`); `None` when the file is missing, unreadable or has no valid entry.
pub fn first(path: &Path) -> Option<Subscriber> {
    for entry in open(path).ok()? {
        match entry {
            Ok(Ok(subscriber)) => return Some(subscriber),
            Ok(Err(_)) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// The entries of the subscriber file at `path`, read as they are taken (see [`Reader`]).
///
/// # Errors
/// The file cannot be opened.
pub fn open(path: &Path) -> Result<Reader<BufReader<File>>> {
    let file = File::open(path).with_context(|| {
        format!(
            "failed to read the subscriber list `{}` (set `site.subscribers` in the config)",
            path.display()
        )
    })?;
    Ok(Reader::new(BufReader::new(file), path))
}

/// Parses subscriber TOML `text`; `path` only names the file in errors. See [`read`].
pub fn parse(
    text: &str,
    path: &Path,
    mut each: impl FnMut(Subscriber),
    mut bad: impl FnMut(EntryError),
) {
    // Reading from a byte slice cannot fail.
    for entry in Reader::new(text.as_bytes(), path).flatten() {
        match entry {
            Ok(s) => each(s),
            Err(e) => bad(e),
        }
    }
}

/// The entries of a subscriber file, in file order, as an iterator: each a valid
/// [`Subscriber`] or an [`EntryError`], or an I/O error that ends the reading. It cuts the
/// input at each `[[subscribers]]` header line and parses the pieces one by one (text before the
/// first header is a piece of its own; a line that is not UTF-8 spoils its piece), so only the
/// piece being read is in memory, however long the list.
pub struct Reader<R> {
    input: R,
    path: std::path::PathBuf,
    /// Entries of the last piece parsed, not yet taken.
    ready: std::collections::VecDeque<Result<Subscriber, EntryError>>,
    chunk: String,
    chunk_line: usize,
    not_utf8: Option<usize>,
    line_no: usize,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`; `path` names the file in entry errors.
    pub fn new(input: R, path: &Path) -> Reader<R> {
        Reader {
            input,
            path: path.to_path_buf(),
            ready: std::collections::VecDeque::new(),
            chunk: String::new(),
            chunk_line: 1,
            not_utf8: None,
            line_no: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Parses the piece read so far into `ready`.
    fn parse_piece(&mut self, not_utf8: Option<usize>) {
        let ready = &mut self.ready;
        let path = &self.path;
        let mut report = |line: usize, message: String| {
            ready.push_back(Err(EntryError {
                path: path.to_path_buf(),
                line,
                message,
            }))
        };
        let mut valid = Vec::new();
        parse_chunk(
            self.chunk_line,
            &self.chunk,
            not_utf8,
            &mut |s| valid.push(s),
            &mut report,
        );
        self.ready.extend(valid.into_iter().map(Ok));
        self.chunk.clear();
    }

    /// Reads lines until a piece is complete (the next header, or the end) and parses it.
    fn read_piece(&mut self) -> std::io::Result<()> {
        loop {
            self.buf.clear();
            if self.input.read_until(b'\n', &mut self.buf)? == 0 {
                self.done = true;
                let not_utf8 = self.not_utf8.take();
                self.parse_piece(not_utf8);
                return Ok(());
            }
            self.line_no += 1;
            let line = match std::str::from_utf8(&self.buf) {
                Ok(line) => line.to_string(),
                Err(_) => {
                    self.not_utf8.get_or_insert(self.line_no);
                    "\n".to_string()
                }
            };
            let header = line.trim() == "[[subscribers]]";
            let complete = header && !self.chunk.is_empty();
            if complete {
                let not_utf8 = self.not_utf8.take();
                self.parse_piece(not_utf8);
            }
            if header {
                self.chunk_line = self.line_no;
            }
            self.chunk.push_str(&line);
            if complete {
                return Ok(());
            }
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = std::io::Result<Result<Subscriber, EntryError>>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.ready.is_empty() && !self.done {
            if let Err(e) = self.read_piece() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// Parses one piece of the file starting at 1-based `line`.
fn parse_chunk(
    line: usize,
    chunk: &str,
    not_utf8: Option<usize>,
    each: &mut impl FnMut(Subscriber),
    report: &mut impl FnMut(usize, String),
) {
    if let Some(at) = not_utf8 {
        report(
            at,
            "this line is not UTF-8; save the file as UTF-8 (the entry was skipped)".into(),
        );
        return;
    }
    let parsed: RawChunk = match toml::from_str(chunk) {
        Ok(c) => c,
        Err(e) => {
            let at = e.span().map_or(0, |s| {
                chunk[..s.start.min(chunk.len())].matches('\n').count()
            });
            report(line + at, format!("invalid TOML: {}", e.message()));
            return;
        }
    };
    let count = parsed.subscribers.len();
    for table in parsed.subscribers {
        match entry(table) {
            Ok((email, address, name, topics)) => each(Subscriber {
                key: address.to_lowercase(),
                address,
                email,
                name,
                topics,
                line,
            }),
            Err(message) => report(line, message),
        }
    }
    if count == 0
        && !chunk.trim().is_empty()
        && chunk
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    {
        report(
            line,
            "expected `[[subscribers]]` tables; nothing here was read".into(),
        );
    }
}

/// A valid entry: the address as written, its [`normalize`]d form, the name and the topics.
type Entry = (String, String, Option<String>, Vec<String>);

fn entry(table: toml::Table) -> Result<Entry, String> {
    let unknown: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "email" | "name" | "topics"))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown key `{}`: an entry has `email`, and optionally `name` and `topics`",
            unknown.join("`, `")
        ));
    }
    let raw: RawEntry = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            format!(
                "bad entry: {} (`email` and `name` are strings, `topics` a list of strings)",
                e.message()
            )
        })?;
    let email = raw.email.map(|e| e.trim().to_string()).unwrap_or_default();
    if email.is_empty() {
        return Err("missing `email`: add `email = \"reader@example.org\"`".into());
    }
    let address = normalize(&email)
        .map_err(|e| format!("{e}; fix or remove the entry"))?
        .0;
    let name = raw
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name
        .as_deref()
        .is_some_and(|n| n.chars().any(char::is_control))
    {
        return Err("`name` contains control characters".into());
    }
    Ok((
        email,
        address,
        name,
        raw.topics
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> (Vec<Subscriber>, Vec<EntryError>) {
        let (mut good, mut bad) = (vec![], vec![]);
        parse(
            text,
            Path::new("subs.toml"),
            |s| good.push(s),
            |e| bad.push(e),
        );
        (good, bad)
    }

    #[test]
    fn reads_entries_with_lines() {
        let (good, bad) = collect(
            "# list\n[[subscribers]]\nemail = \"Reader@Example.org\"\nname = \"读者\"\ntopics = [\"MOSN\"]\n\n[[subscribers]]\nemail = \"b@example.org\"\n",
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].key, "reader@example.org");
        assert_eq!(good[0].email, "Reader@Example.org");
        assert_eq!(good[0].name.as_deref(), Some("读者"));
        assert_eq!(good[0].line, 2);
        assert_eq!(good[1].line, 7);
    }

    #[test]
    fn internationalised_domains_become_a_labels_and_one_key() {
        assert_eq!(
            normalize("Leser@Bücher.Example").unwrap(),
            (
                "Leser@xn--bcher-kva.example".to_string(),
                "leser@xn--bcher-kva.example".to_string()
            )
        );
        assert_eq!(
            normalize("leser@xn--bcher-kva.example").unwrap().1,
            normalize("LESER@BÜCHER.example").unwrap().1
        );
        // A non-ASCII local part is kept: it needs SMTPUTF8 (RFC 6531) on the wire.
        assert_eq!(
            normalize("用户@例子.测试").unwrap().0,
            "用户@xn--fsqu00a.xn--0zwm56d"
        );
        assert!(normalize("a@b@").is_err());
        assert!(normalize("no-at-sign").unwrap_err().contains("no `@`"));
    }

    #[test]
    fn a_line_that_is_not_utf8_skips_only_its_entry() {
        let mut text = b"[[subscribers]]\nemail = \"a@example.org\"\n[[subscribers]]\nemail = \"b@example.org\"\nname = \"".to_vec();
        text.extend_from_slice(&[0xff, 0xfe]);
        text.extend_from_slice(b"\"\n[[subscribers]]\nemail = \"c@example.org\"\n");
        let (mut good, mut bad) = (vec![], vec![]);
        for entry in Reader::new(&text[..], Path::new("subs.toml")) {
            match entry.unwrap() {
                Ok(s) => good.push(s.key),
                Err(e) => bad.push(e),
            }
        }
        assert_eq!(good, ["a@example.org", "c@example.org"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 5);
        assert!(bad[0].message.contains("not UTF-8"), "{}", bad[0].message);
    }

    #[test]
    fn bad_entries_are_reported_and_skipped() {
        let (good, bad) = collect(
            "[[subscribers]]\nemail = \"not-an-address\"\n[[subscribers]]\nname = \"x\"\n[[subscribers]]\nemail = \"ok@example.org\"\n[[subscribers]]\nemail = \"c@example.org\"\ncolour = 1\n[[subscribers]]\nemail = 'unterminated\n",
        );
        assert_eq!(good.len(), 1);
        let lines: Vec<usize> = bad.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3, 7, 11]);
        assert!(bad[0]
            .to_string()
            .starts_with("subs.toml:1: `not-an-address` is not a valid e-mail address"));
        assert!(bad[1].message.contains("missing `email`"));
        assert!(bad[2].message.contains("colour"));
    }
}
