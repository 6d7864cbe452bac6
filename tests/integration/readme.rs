//! The README's own commands, so that it says what feedpost does: the quick start run line by
//! line in an empty folder with the real binary (as `feedpost` on `PATH`), first into the outbox
//! and then against an SMTP server on loopback; and the configuration reference, pasted as it
//! is into a new site, loading and running `publish --dry-run`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::serve::get;
use crate::support::smtp_server::{header, Faults, SmtpServer};

/// README.md as it is in the repository.
fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).expect("README.md")
}

/// The body of the first fenced block opened with ```` ```lang ```` after the comment
/// `<!-- marker` in the README.
fn block(marker: &str, lang: &str) -> String {
    let text = readme();
    let at = text
        .find(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("README.md has no `<!-- {marker}` comment"));
    let fence = format!("```{lang}\n");
    let start = at + text[at..].find(&fence).expect("a fenced block after it") + fence.len();
    let end = start + text[start..].find("\n```").expect("the block's end");
    text[start..end].to_string()
}

/// An empty folder, and `feedpost` (the binary under test) first on `PATH`.
struct Shell {
    dir: tempfile::TempDir,
    cwd: PathBuf,
    path: String,
}

impl Shell {
    fn new() -> Shell {
        let dir = tempfile::tempdir().unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_feedpost")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Shell {
            cwd: dir.path().to_path_buf(),
            dir,
            path,
        }
    }

    /// `line` run by `sh` in the current folder. The person at the keyboard is the editor:
    /// `$EDITOR FILE` deletes the `draft: true` line, as the quick start asks them to.
    fn command(&self, line: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", line])
            .current_dir(&self.cwd)
            .env("PATH", &self.path)
            .env("EDITOR", "sed -i /^draft:/d")
            .env("NO_COLOR", "1");
        for var in [
            "FEEDPOST_SECRET",
            "FEEDPOST_SMTP_PASSWORD",
            "FEEDPOST_CONFIG",
            "FEEDPOST_NOW",
            "FEEDPOST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `line` (following a `cd`); panics unless it succeeds; returns its stdout.
    fn run(&mut self, line: &str) -> String {
        if let Some(dir) = line.strip_prefix("cd ") {
            self.cwd = self.cwd.join(dir.trim());
            assert!(self.cwd.is_dir(), "`{line}`: no such folder");
            return String::new();
        }
        let out = self.command(line).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Starts a `serve --local` line on a free port (tests never take a fixed one) and
    /// returns the server and its address once it printed it.
    fn serve(&self, line: &str) -> (Killed, String) {
        let mut child = self
            .command(&format!("exec {line} --port 0"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let child = Killed(child);
        let base = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("`{line}` printed {first:?}"))
            .to_string();
        (child, base)
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_quick_start_goes_from_an_empty_folder_to_a_published_issue() {
    let lines: Vec<String> = block("quick-start", "sh")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert!(lines.len() >= 8, "{lines:?}");
    let mut sh = Shell::new();
    let mut outputs = Vec::new();
    for line in &lines {
        if line.contains("serve --local") {
            let (server, base) = sh.serve(line);
            let page = get(&format!("{base}index.html"));
            assert_eq!(page.status, 200);
            assert!(page.body.contains("Our first issue"), "{}", page.body);
            drop(server);
            outputs.push(String::new());
        } else {
            outputs.push(sh.run(line));
        }
    }
    let site = sh.cwd.clone();
    assert!(site.starts_with(sh.dir.path()) && site.join("feedpost.toml").is_file());
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("the quick start has no `{needle}` line: {lines:?}"))
    };
    assert!(outputs[at("feedpost check")].contains("0 errors"));
    assert!(
        outputs[at("--dry-run")].contains("`Our first issue`")
            && outputs[at("--dry-run")].contains("would go to 1 recipient via outbox"),
        "{}",
        outputs[at("--dry-run")]
    );
    let publish = lines.len() - 1;
    assert_eq!(lines[publish], "feedpost publish");
    assert!(
        outputs[publish].contains("sent 1, already sent 0"),
        "{}",
        outputs[publish]
    );
    // The files the quick start's words name.
    assert!(site
        .join("outbox/first/test/test--you@example.org.eml")
        .is_file());
    assert!(site
        .join("outbox/first/first--reader@example.org.eml")
        .is_file());
    assert!(site.join("feeds/issues/first/index.html").is_file());

    // "From the outbox to a real SMTP server": an [smtp] table, then the same two commands.
    let server = SmtpServer::start(Faults::default());
    let config = std::fs::read_to_string(site.join("feedpost.toml")).unwrap();
    std::fs::write(
        site.join("feedpost.toml"),
        format!(
            "{config}\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            server.port()
        ),
    )
    .unwrap();
    let test_send = &lines[at("--to ")];
    sh.run(test_send);
    assert!(sh
        .run("feedpost publish")
        .contains("sent 1, already sent 0"));
    assert!(sh
        .run("feedpost publish")
        .contains("sent 0, already sent 1"));
    let received = server.received();
    let to: Vec<&str> = received.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    assert_eq!(to, ["you@example.org", "reader@example.org"]);
    for m in &received {
        assert_eq!(
            header(&m.data, "Subject").as_deref(),
            Some("Our first issue")
        );
    }
}

#[test]
fn the_configuration_reference_loads_as_it_is_and_runs_a_dry_run() {
    let reference = block("config-reference", "toml");
    let mut sh = Shell::new();
    sh.run("feedpost init site");
    sh.run("cd site");
    std::fs::write(sh.cwd.join("feedpost.toml"), &reference).unwrap();
    // No password, no secret, no CA file, and nothing reached over the network.
    let out = sh.command("feedpost publish --dry-run").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("would go to 1 recipient via smtp://127.0.0.1:2525"),
        "{stdout}"
    );
    assert!(
        stderr.contains("FEEDPOST_SMTP_PASSWORD") && stderr.contains("a real publish stops there"),
        "the missing password is a warning: {stderr}"
    );
    assert!(!stderr.to_lowercase().contains("websub"), "{stderr}");
    assert!(!sh.cwd.join("feedpost.sqlite").exists());
    assert!(!sh.cwd.join("feeds").exists());
    assert!(sh.run("feedpost check").contains("0 errors"));
}
