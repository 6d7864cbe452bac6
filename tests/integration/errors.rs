//! How feedpost ends: exit code 0 when everything is done, 1 when it ran but some items failed,
//! 2 when it could not run (and for usage errors); every error printed once, as `error: …` then
//! `caused by: …`; a closed stdout never a panic.

use crate::check::relative;
use crate::support::Site;

fn site() -> Site {
    Site::new().weekly("短讯。\n")
}

const BROKEN: &str = "---\ntitle: \"Broken\"\ndate: next friday\n---\nx\n";

#[test]
fn a_command_that_cannot_run_exits_2_with_the_error_and_its_causes() {
    let site = site().replace_config("base_url = \"https://www.sofastack.tech/\"", "base_url = 5");
    let out = site.run(&["build"]).code(2);
    let stderr = relative(&site, &out.stderr);
    assert!(
        stderr.starts_with("error: invalid config file `SITE/feedpost.toml`, line 3\ncaused by: invalid type: integer `5`, expected"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "printed once: {stderr}"
    );
    // clap's usage errors are 2 as well.
    site.run(&["publish", "--no-such-flag"])
        .code(2)
        .stderr_contains("unexpected argument '--no-such-flag'");
}

#[test]
fn items_that_fail_exit_1_and_each_is_an_error_line() {
    let site = site().issue("bad.md", BROKEN);
    let out = site.run(&["build"]).code(1);
    out.stdout_contains("built feeds for 1 issue (1 published)");
    let stderr = relative(&site, &out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors,
        ["error: SITE/issues/bad.md:3: cannot read the date `next friday`: write it as `YYYY-MM-DD`, or RFC 3339 with an offset, e.g. `2020-05-15T17:00:00+08:00`"]
    );
    site.run(&["check"]).code(1).stdout_contains("1 error, ");
}

#[test]
fn a_bad_issue_stops_a_publish_listing_each_file_then_the_summary() {
    let site = site()
        .issue("bad.md", BROKEN)
        .issue("worse.md", "no front matter\n");
    let out = site.run(&["publish"]).code(2);
    let stderr = relative(&site, &out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    assert!(
        errors[0].starts_with("error: SITE/issues/bad.md:3: "),
        "{stderr}"
    );
    assert!(
        errors[1].starts_with("error: SITE/issues/worse.md:1: "),
        "{stderr}"
    );
    assert_eq!(
        errors[2],
        "error: 2 issue file(s) have errors (listed above); fix them and run again. Nothing was sent."
    );
    assert!(!site.ledger().exists());
}

/// Runs `args` with a stdout whose reading end is already closed: every write fails with EPIPE.
fn with_closed_stdout(site: &Site, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    site.command(args).stdout(writer).output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let site = site();
    let file = site.path().join("issues/2024-03-08-weekly.md");
    let out_dir = site.path().join("preview");
    let file = file.to_str().unwrap();
    for args in [
        vec!["build"],
        vec!["check"],
        vec!["status"],
        vec!["publish", "--dry-run"],
        vec![
            "preview",
            file,
            "--out",
            out_dir.to_str().unwrap(),
            "--no-screenshots",
        ],
    ] {
        let out = with_closed_stdout(&site, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
