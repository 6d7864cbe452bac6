//! Helpers shared by the integration tests: a site in a temporary folder, the real `feedpost`
//! binary run against it, and (in `smtp_server`) a real SMTP server on loopback.

#![allow(dead_code)]

pub mod http_server;
mod output;
pub mod postgres;
pub mod smtp_server;
pub mod tls_front;

pub use output::{Output, Run};

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `FEEDPOST_SECRET` every run of [`Site::command`] gets (48 random bytes, base64, as
/// `openssl rand -base64 48` makes); [`Site::env_remove`] takes it away.
pub const TEST_SECRET: &str = "3q2+7w8tS0x1bmN5dGVzdC1zZWNyZXQtZm9yLWZlZWRwb3N0LWludGVncmF0aW9u";

/// A site on disk: `feedpost.toml`, `issues/`, `subscribers.toml`, in a temporary folder that is
/// removed when the value drops.
pub struct Site {
    dir: tempfile::TempDir,
    site: String,
    mail: String,
    smtp: Option<String>,
    dkim: Option<String>,
    store: Option<String>,
    env: Vec<(String, String)>,
}

/// A seed-shaped issue with the given title, date, tags and body.
pub fn issue(title: &str, date: &str, tags: &[&str], body: &str) -> String {
    let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "---\ntitle: \"{title}\"\nauthor: \"SOFA 团队\"\nauthorlink: \"https://github.com/sofastack\"\ndescription: \"每周精选 {title}\"\ncategories: \"SOFA Weekly\"\ntags: [{}]\ndate: {date}\ncover: \"https://cdn.example.org/cover.png\"\n---\n{body}",
        tags.join(", ")
    )
}

/// The file name of the weekly issue most tests publish (`issues/2024-03-08-weekly.md`).
pub const WEEKLY: &str = "2024-03-08-weekly.md";

/// The weekly issue most tests publish: [`issue`] "SOFA Weekly | 第 8 期" of
/// 2024-03-08T15:00:00+08:00, tag "SOFA Weekly", with `body` (Markdown).
pub fn weekly(body: &str) -> String {
    issue(
        "SOFA Weekly | 第 8 期",
        "2024-03-08T15:00:00+08:00",
        &["SOFA Weekly"],
        body,
    )
}

impl Site {
    /// An empty site with a Chinese-language config, no issues and no subscribers.
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("issues")).expect("issues dir");
        std::fs::write(dir.path().join("subscribers.toml"), "").expect("subscribers");
        Site {
            dir,
            site: "title = \"SOFA Weekly\"\nbase_url = \"https://www.sofastack.tech/\"\ndescription = \"每周精选\"\nlanguage = \"zh-CN\"\n".into(),
            mail: "from = \"SOFA Weekly <weekly@example.org>\"\nunsubscribe_url = \"https://www.sofastack.tech/unsubscribe?token={token}\"\nunsubscribe_mailto = \"unsubscribe@example.org\"\n".into(),
            smtp: None,
            dkim: None,
            store: None,
            env: vec![],
        }
    }

    /// The site's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds lines to the `[site]` table.
    pub fn site_config(mut self, lines: &str) -> Site {
        self.site.push_str(lines);
        self.site.push('\n');
        self
    }

    /// Replaces `from` with `to` in the config text (each table's lines).
    pub fn replace_config(mut self, from: &str, to: &str) -> Site {
        self.site = self.site.replace(from, to);
        self.mail = self.mail.replace(from, to);
        self.smtp = self.smtp.map(|s| s.replace(from, to));
        self
    }

    /// Adds lines to the `[mail]` table.
    pub fn mail_config(mut self, lines: &str) -> Site {
        self.mail.push_str(lines);
        self.mail.push('\n');
        self
    }

    /// Sends through SMTP on `127.0.0.1:port` (no TLS), with `extra` lines in `[smtp]`. A key set
    /// in `extra` (e.g. `timeout_secs = 1`) replaces the default written here.
    pub fn smtp(mut self, port: u16, extra: &str) -> Site {
        let defaults = format!("host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nhello_name = \"feedpost.test\"\nretry_base_ms = 20\nretry_max_ms = 200\ntimeout_secs = 10\n");
        let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
        let overridden: Vec<String> = extra.lines().map(key).collect();
        let mut text: String = defaults
            .lines()
            .filter(|line| !overridden.contains(&key(line)))
            .map(|line| format!("{line}\n"))
            .collect();
        text.push_str(extra);
        text.push('\n');
        self.smtp = Some(text);
        self
    }

    /// Signs with DKIM: writes `key_pem` to `dkim.pem` (mode 600) and a `[dkim]` table for it,
    /// domain `example.org` (the From domain), selector `s1`.
    pub fn dkim(mut self, key_pem: &str) -> Site {
        use std::os::unix::fs::PermissionsExt as _;
        self.write("dkim.pem", key_pem);
        let path = self.dir.path().join("dkim.pem");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        self.dkim = Some(
            "domain = \"example.org\"\nselector = \"s1\"\nprivate_key = \"dkim.pem\"\n".into(),
        );
        self
    }

    /// Keeps deliveries in the PostgreSQL database at `url` (a `[store]` table with `extra`
    /// lines) instead of the SQLite file.
    pub fn store(mut self, url: &str, extra: &str) -> Site {
        self.store = Some(format!("url = \"{url}\"\n{extra}\n"));
        self
    }

    /// Writes `issues/<name>` with `text`.
    pub fn issue(self, name: &str, text: &str) -> Site {
        self.write(&format!("issues/{name}"), text);
        self
    }

    /// Writes the [`weekly`] issue with `body` as `issues/`[`WEEKLY`].
    pub fn weekly(self, body: &str) -> Site {
        self.issue(WEEKLY, &weekly(body))
    }

    /// Replaces the subscriber list.
    pub fn subscribers(self, text: &str) -> Site {
        self.write("subscribers.toml", text);
        self
    }

    /// Sets an environment variable for every run.
    pub fn env(mut self, key: &str, value: &str) -> Site {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes a file relative to the site folder.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(path, text).expect("write file");
    }

    /// Reads a file relative to the site folder.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel))
            .unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The config file's text as it will be written.
    pub fn config_text(&self) -> String {
        let mut text = format!("[site]\n{}\n[mail]\n{}", self.site, self.mail);
        if let Some(smtp) = &self.smtp {
            text.push_str(&format!("\n[smtp]\n{smtp}"));
        }
        if let Some(dkim) = &self.dkim {
            text.push_str(&format!("\n[dkim]\n{dkim}"));
        }
        if let Some(store) = &self.store {
            text.push_str(&format!("\n[store]\n{store}"));
        }
        text
    }

    /// A `Command` for the real binary with `--config` pointing at this site (config written now).
    /// The file is rewritten only when its text changed, so that a process started earlier
    /// never reads it half-written.
    pub fn command(&self, args: &[&str]) -> Command {
        let config = self.dir.path().join("feedpost.toml");
        let text = self.config_text();
        if std::fs::read_to_string(&config).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&config, text).expect("config");
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedpost"));
        cmd.arg("--config")
            .arg(self.dir.path().join("feedpost.toml"))
            .args(args);
        cmd.env_remove("FEEDPOST_NOW")
            .env("FEEDPOST_LOG", "info")
            .env("FEEDPOST_SECRET", TEST_SECRET)
            .env_remove("FEEDPOST_SMTP_PASSWORD");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary with `args` and waits for it.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }

    /// A run of the binary with `args` to adjust before it starts (`.env(..)`,
    /// `.env_remove(..)`), then [`Run::run`].
    pub fn cmd(&self, args: &[&str]) -> Run {
        Run::new(self.command(args))
    }

    /// Runs `feedpost preview ISSUE --out preview [ARGS]` for `issues/<issue>` and asserts it
    /// succeeded; the files are then under `preview/` in the site.
    #[track_caller]
    pub fn preview(&self, issue: &str, args: &[&str]) -> Output {
        let file = self.path().join("issues").join(issue);
        let out = self.path().join("preview");
        let mut all = vec![
            "preview",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend(args);
        self.run(&all).success()
    }

    /// The path of the site's ledger.
    pub fn ledger(&self) -> PathBuf {
        self.dir.path().join("feedpost.sqlite")
    }
}

/// Every file below `root` (recursively), as (path relative to `root`, `/`-separated; full
/// path), sorted.
pub fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}

/// `n` subscribers `reader0000@example.test` … with names, as subscriber TOML.
pub fn many_subscribers(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[subscribers]]\nemail = \"reader{i:04}@example.test\"\nname = \"读者 {i}\"\n\n"
            )
        })
        .collect()
}

/// Compares `actual` with the golden file `tests/fixtures/<name>`; with `UPDATE_GOLDEN=1` rewrites
/// it instead (on purpose, after reviewing the diff).
#[track_caller]
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "missing golden file {} ({e}); run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let diff_at = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b);
        panic!(
            "{} differs from the output (first differing line: {:?}); rerun with UPDATE_GOLDEN=1 if the change is intended\n--- actual ---\n{actual}",
            path.display(),
            diff_at.map(|i| i + 1)
        );
    }
}

/// The address of subscriber `i` of [`many_subscribers`].
pub fn reader(i: usize) -> String {
    format!("reader{i:04}@example.test")
}

/// The addresses of subscribers `0..n` of [`many_subscribers`].
pub fn readers(n: usize) -> Vec<String> {
    (0..n).map(reader).collect()
}

impl Site {
    /// `feedpost status --json` for the site's only issue in the ledger: `{issue, counts, problems}`.
    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]).success();
        let json: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
        let issues = json["issues"].as_array().expect("issues array");
        assert_eq!(issues.len(), 1, "{json}");
        issues[0].clone()
    }
}

/// The messages the server holds, by lowercased envelope recipient.
pub fn by_recipient(
    received: &[smtp_server::Received],
) -> std::collections::BTreeMap<String, Vec<&smtp_server::Received>> {
    let mut map = std::collections::BTreeMap::<String, Vec<_>>::new();
    for m in received {
        for to in &m.rcpt_to {
            map.entry(to.to_ascii_lowercase()).or_default().push(m);
        }
    }
    map
}

/// Asserts the server holds a message for exactly the recipients `expected` (lowercased), each
/// exactly once — apart from copies whose reply the server dropped (`reply_lost`), which the
/// sender could not know arrived — and that every copy of a recipient's message carries the same
/// Message-ID. Returns how many such extra copies there were.
#[track_caller]
pub fn assert_delivered_once(received: &[smtp_server::Received], expected: &[String]) -> usize {
    let copies = by_recipient(received);
    let mut want: Vec<String> = expected.iter().map(|a| a.to_ascii_lowercase()).collect();
    want.sort();
    let got: Vec<String> = copies.keys().cloned().collect();
    assert_eq!(got, want, "the recipients the server holds");
    for (to, msgs) in &copies {
        let answered = msgs.iter().filter(|m| !m.reply_lost).count();
        assert_eq!(
            answered,
            1,
            "{to} got {answered} acknowledged copies ({} in all)",
            msgs.len()
        );
    }
    repeats_with_one_message_id(&copies)
}

/// Asserts the server holds at least one message for exactly the recipients `expected`
/// (already lowercased, as [`readers`] makes them) — a publish killed with SIGKILL may repeat
/// what it had in flight — and that every copy of a recipient's message carries the same
/// Message-ID. Returns how many repeated copies there were.
#[track_caller]
pub fn assert_reached_with_one_message_id(
    received: &[smtp_server::Received],
    expected: &[String],
) -> usize {
    let copies = by_recipient(received);
    let mut want = expected.to_vec();
    want.sort();
    assert!(
        copies.keys().eq(want.iter()),
        "every subscriber got the issue"
    );
    repeats_with_one_message_id(&copies)
}

/// Asserts every copy of a recipient's message in `copies` (from [`by_recipient`]) carries the
/// same Message-ID; returns how many copies there are beyond the first of each recipient.
#[track_caller]
fn repeats_with_one_message_id(
    copies: &std::collections::BTreeMap<String, Vec<&smtp_server::Received>>,
) -> usize {
    let mut extra = 0;
    for (to, msgs) in copies {
        let ids: std::collections::BTreeSet<_> = msgs
            .iter()
            .map(|m| smtp_server::header(&m.data, "Message-ID").expect("Message-ID"))
            .collect();
        assert_eq!(ids.len(), 1, "{to}'s copies differ in Message-ID: {ids:?}");
        extra += msgs.len() - 1;
    }
    extra
}

/// Runs `future` (a store call) to completion on a runtime of one thread.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}
