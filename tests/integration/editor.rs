//! The editor's first hour, command by command: `init`, `new`, `check` on the subscriber list
//! and on a missing config, `preview`'s defaults, the generated help, completions and man pages,
//! and an issue sent early staying published.

use std::path::Path;
use std::process::Command;

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{issue, many_subscribers, Output, Site};

/// Runs the binary in `dir` with `args`, as a person in that folder would (no `--config`).
fn feedpost(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_feedpost"))
        .current_dir(dir)
        .args(args)
        .env("FEEDPOST_NOW", "2026-12-04T09:30:00+08:00")
        .env_remove("FEEDPOST_CONFIG")
        .env_remove("FEEDPOST_SECRET")
        .env_remove("FEEDPOST_SMTP_PASSWORD")
        .output()
        .expect("run feedpost");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn init_makes_a_site_that_checks_and_publishes_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = feedpost(dir.path(), &["init", "weekly", "--title", "Ada's Weekly"]).success();
    out.stdout_contains("created weekly/feedpost.toml")
        .stdout_contains("created weekly/issues/2026-12-04-welcome.md")
        .stdout_contains("cd weekly && feedpost check && feedpost serve --local");
    let site = dir.path().join("weekly");
    let gitignore = std::fs::read_to_string(site.join(".gitignore")).unwrap();
    for line in [
        "/feedpost.sqlite",
        "/outbox/",
        "/.feedpost-cache/",
        "/feeds/",
    ] {
        assert!(
            gitignore.lines().any(|l| l == line),
            "{line} in {gitignore}"
        );
    }
    let check = feedpost(&site, &["check"]).success();
    assert_eq!(
        check.stdout,
        "0 errors, 0 warnings in 1 issue and 1 subscriber\n"
    );
    let publish = feedpost(&site, &["publish"]).success();
    publish.stdout_contains("sent 1,");
    assert!(site.join("outbox/2026-12-04-welcome").is_dir());
    let page =
        std::fs::read_to_string(site.join("feeds/issues/2026-12-04-welcome/index.html")).unwrap();
    assert!(
        page.contains("Welcome to Ada&#39;s Weekly") || page.contains("Welcome to Ada's Weekly"),
        "{page}"
    );

    // A second init, here or in the site, changes nothing.
    let config = std::fs::read(site.join("feedpost.toml")).unwrap();
    let again = feedpost(dir.path(), &["init", "weekly"]).failure();
    again
        .stderr_contains("already has a site: feedpost.toml, subscribers.toml")
        .stderr_contains("nothing was written");
    assert_eq!(std::fs::read(site.join("feedpost.toml")).unwrap(), config);
    feedpost(&site, &["init"]).failure();

    // Bad values are named by their flag, and leave nothing behind.
    let bad = feedpost(dir.path(), &["init", "other", "--base-url", "example.org"]).failure();
    bad.stderr_contains("--base-url `example.org` is not an absolute http(s) URL");
    assert!(!dir.path().join("other/feedpost.toml").exists());
}

#[test]
fn init_beside_an_existing_gitignore_adds_only_the_lines_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitignore"), "target/\n/outbox/\n").unwrap();
    feedpost(dir.path(), &["init"])
        .success()
        .stdout_contains("lines to ./.gitignore");
    let text = std::fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(text.starts_with("target/\n/outbox/\n"), "{text}");
    assert_eq!(text.matches("/outbox/").count(), 1, "{text}");
}

#[test]
fn new_writes_front_matter_with_todays_date_as_a_draft_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    feedpost(dir.path(), &["init"]).success();
    let out = feedpost(dir.path(), &["new", "issues/2026-12-11-weekly.md"]).success();
    out.stdout_contains("created issues/2026-12-11-weekly.md");
    let path = dir.path().join("issues/2026-12-11-weekly.md");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("---\ntitle: \"Weekly\"\ndate: 2026-12-04T01:30:00+00:00\ndraft: true\n"),
        "{text}"
    );
    // `check` reads it as a draft, and `publish` leaves it alone.
    let check = feedpost(dir.path(), &["check"]).success();
    check.stdout_contains("2026-12-11-weekly.md:4: warning: draft");

    std::fs::write(&path, "mine").unwrap();
    feedpost(dir.path(), &["new", "issues/2026-12-11-weekly.md"])
        .failure()
        .stderr_contains("already exists; nothing was written");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");

    // A folder is a page bundle; a path outside the issues folder is refused with the fix.
    feedpost(
        dir.path(),
        &[
            "new",
            "issues/2026-12-18-bundle",
            "--title",
            "周报 | 第 2 期",
        ],
    )
    .success();
    let bundle =
        std::fs::read_to_string(dir.path().join("issues/2026-12-18-bundle/index.md")).unwrap();
    assert!(bundle.contains("title: \"周报 | 第 2 期\""), "{bundle}");
    feedpost(dir.path(), &["new", "stray.md"])
        .failure()
        .stderr_contains("Try `feedpost new issues/stray.md`");
    assert!(!dir.path().join("stray.md").exists());
}

#[test]
fn check_reads_the_subscriber_list_with_lines() {
    let site = Site::new()
        .issue(
            "a.md",
            &issue("A", "2020-05-15T17:00:00+08:00", &["SOFA Weekly"], "a\n"),
        )
        .subscribers(
            "[[subscribers]]\nemail = \"ada@example.org\"\n\n[[subscribers]]\nemail = \"ADA@example.org\"\n\n[[subscribers]]\nemail = \"nobody\"\n\n[[subscribers]]\nemail = \"bo@example.org\"\nnmae = \"Bo\"\n",
        );
    let out = site.run(&["check"]).failure();
    let stdout = out
        .stdout
        .replace(&site.path().display().to_string(), "SITE");
    for line in [
        "SITE/subscribers.toml:4: warning: `ADA@example.org` is listed already on line 1",
        "SITE/subscribers.toml:7: error: `nobody` is not a valid e-mail address (no `@`)",
        "SITE/subscribers.toml:10: error: unknown key `nmae`",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(
        stdout.ends_with("\n2 errors, 1 warning in 1 issue and 1 subscriber\n"),
        "{stdout}"
    );
    // The same for scripts.
    let out = site.run(&["check", "--json"]).failure();
    assert_eq!(out.code, 1);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["errors"], 2);
    assert_eq!(json["warnings"], 1);
    assert_eq!(json["issues"], 1);
    assert_eq!(json["subscribers"], 1);
    let unknown = &json["findings"][2];
    assert_eq!(unknown["line"], 10);
    assert_eq!(unknown["severity"], "error");
    assert!(unknown["file"]
        .as_str()
        .unwrap()
        .ends_with("subscribers.toml"));
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .starts_with("unknown key `nmae`"));
}

#[test]
fn a_missing_config_names_the_folder_looked_in() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().canonicalize().unwrap();
    let expected = format!("there is no `feedpost.toml` in `{}`", folder.display());
    let check = feedpost(&folder, &["check"]).failure();
    assert!(check.stdout.contains(&expected), "{}", check.stdout);
    assert!(check.stdout.contains("feedpost init"), "{}", check.stdout);
    let build = feedpost(&folder, &["build"]).failure();
    assert!(build.stderr.contains(&expected), "{}", build.stderr);
}

#[test]
fn preview_writes_beside_the_config_by_default_and_greets_the_reader_by_name() {
    let site = Site::new()
        .issue(
            "a.md",
            &issue("A", "2020-05-15T17:00:00+08:00", &["SOFA Weekly"], "a\n"),
        )
        .subscribers(
            "[[subscribers]]\nemail = \"bo@example.org\"\n[[subscribers]]\nemail = \"Ada@Example.org\"\nname = \"Ada\"\n",
        );
    let file = site.path().join("issues/a.md");
    let out = site
        .run(&[
            "preview",
            file.to_str().unwrap(),
            "--to",
            "ada@example.org",
            "--no-screenshots",
        ])
        .success();
    let text = site.path().join("preview/a.txt");
    out.stdout_contains(text.to_str().unwrap());
    let body = std::fs::read_to_string(text).unwrap();
    assert!(body.contains("Ada，你好！"), "{body}");
}

#[test]
fn help_has_one_line_per_command_and_completions_and_man_pages_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let help = feedpost(dir.path(), &["--help"]).success().stdout;
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .collect();
    assert!(commands.len() >= 13, "{help}");
    for line in &commands {
        assert!(
            line.starts_with("  ") && !line.starts_with("   "),
            "a wrapped line: {line:?}"
        );
        assert!(line.chars().count() <= 100, "too long: {line:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = feedpost(dir.path(), &["completions", shell])
            .success()
            .stdout;
        assert!(
            script.contains("feedpost") && script.contains("hide-drafts"),
            "{shell}"
        );
    }
    let man = feedpost(dir.path(), &["man"]).success().stdout;
    assert!(
        man.starts_with(".ie") || man.contains(".TH feedpost"),
        "{man}"
    );
    let out = feedpost(dir.path(), &["man", "--out", "man1"]).success();
    out.stdout_contains("man1/feedpost-publish.1");
    let page = std::fs::read_to_string(dir.path().join("man1/feedpost-serve.1")).unwrap();
    assert!(page.contains("\\-\\-local"), "{page}");
}

#[test]
fn an_issue_mailed_early_stays_published_when_the_site_is_built_again() {
    let server = SmtpServer::start(Faults::new());
    let site = Site::new()
        .smtp(server.port(), "")
        .subscribers(&many_subscribers(2))
        .env("FEEDPOST_NOW", "2024-03-01T00:00:00Z")
        .issue(
            "2024-02-23-weekly.md",
            &issue(
                "上期",
                "2024-02-23T15:00:00+08:00",
                &["SOFA Weekly"],
                "old\n",
            ),
        )
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "下期",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly"],
                "early\n",
            ),
        )
        .issue(
            "2024-03-15-weekly.md",
            &issue(
                "再下期",
                "2024-03-15T15:00:00+08:00",
                &["SOFA Weekly"],
                "later\n",
            ),
        );
    let early = site.path().join("issues/2024-03-08-weekly.md");
    site.run(&["publish", "--future", early.to_str().unwrap()])
        .success()
        .stdout_contains("sent 2,");
    let page = site
        .path()
        .join("feeds/issues/2024-03-08-weekly/index.html");
    assert!(page.exists());
    // Its email links the page: the next build keeps it, and lists it in the feeds, though its
    // date has not come; an issue dated later that was not mailed stays out.
    site.run(&["build"]).success();
    assert!(
        page.exists(),
        "the build removed the page of an issue already mailed"
    );
    let rss = site.read("feeds/rss.xml");
    assert!(rss.contains("2024-03-08-weekly"), "{rss}");
    assert!(!rss.contains("2024-03-15-weekly"), "{rss}");
    assert!(!site.path().join("feeds/issues/2024-03-15-weekly").exists());
}
