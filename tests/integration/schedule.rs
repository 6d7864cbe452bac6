//! Scheduling: `publish` without an issue, run by cron or a systemd timer, sends the newest
//! issue whose date has come, once, never a backlog; `status` shows the issue due next.

use crate::support::smtp_server::{header, Faults, SmtpServer};
use crate::support::{issue, Site};

const SUBSCRIBERS: &str = r#"
[[subscribers]]
email = "reader@example.org"

[[subscribers]]
email = "plain@example.com"
"#;

/// Two past issues, one due on 2024-03-15 09:00 UTC, and a draft dated before it.
fn site(server: &SmtpServer, now: &str) -> Site {
    Site::new()
        .smtp(server.port(), "")
        .subscribers(SUBSCRIBERS)
        .env("FEEDPOST_NOW", now)
        .issue(
            "2024-03-01-weekly.md",
            &issue("Old", "2024-03-01T09:00:00Z", &["SOFA Weekly"], "old\n"),
        )
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "Current",
                "2024-03-08T09:00:00Z",
                &["SOFA Weekly"],
                "current\n",
            ),
        )
        .issue(
            "2024-03-12-draft.md",
            "---\ntitle: \"Draft\"\ndate: 2024-03-12T09:00:00Z\ndraft: true\n---\nd\n",
        )
        .issue(
            "2024-03-15-weekly.md",
            &issue("Next", "2024-03-15T09:00:00Z", &["SOFA Weekly"], "next\n"),
        )
}

/// `feedpost status --json`, whole.
fn status_json(site: &Site) -> serde_json::Value {
    let out = site.run(&["status", "--json"]).success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn guids(server: &SmtpServer) -> Vec<String> {
    let mut guids: Vec<String> = server
        .received()
        .iter()
        .map(|m| header(&m.data, "X-Feed-Guid").unwrap_or_default())
        .collect();
    guids.sort();
    guids
}

#[test]
fn a_scheduled_publish_sends_the_newest_due_issue_once_and_never_the_backlog() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, "2024-03-10T00:00:00Z");

    let first = site.run(&["publish"]).success();
    first.stdout_contains("sent 2, already sent 0");
    first.stderr_contains("left 1 older issue never mailed, the newest `Old`");
    first.stderr_contains(
        "the next scheduled issue, `Next`, is due 2024-03-15 09:00 UTC (in 5 days)",
    );
    let current = "https://www.sofastack.tech/issues/2024-03-08-weekly/";
    assert_eq!(guids(&server), [current, current]);

    // The timer fires again: nothing is sent, and it says so.
    let again = site.run(&["publish"]).success();
    again.stdout_contains("sent 0, already sent 2");
    again.stderr_contains("nothing new to send: `Current` already went to every eligible reader");
    assert_eq!(server.received_count(), 2);

    let status = site.run(&["status"]).success();
    status.stdout_contains("  due     `Current` (");
    status.stdout_contains(
        "2024-03-08-weekly.md), dated 2024-03-08 09:00 UTC (39 hours ago): mailed",
    );
    status.stdout_contains("2024-03-15-weekly.md), due 2024-03-15 09:00 UTC (in 5 days)");
    let json = status_json(&site);
    assert_eq!(json["schedule"]["due"]["issue"], current);
    assert_eq!(json["schedule"]["due"]["mailed"], true);
    assert_eq!(
        json["schedule"]["next"]["issue"],
        "https://www.sofastack.tech/issues/2024-03-15-weekly/"
    );
    assert_eq!(
        json["schedule"]["next"]["date"],
        "2024-03-15T09:00:00+00:00"
    );
    assert_eq!(json["schedule"]["next"]["mailed"], false);

    // Its date comes: the next run sends it, and only it; the draft before it never goes.
    let site = site.env("FEEDPOST_NOW", "2024-03-15T09:30:00Z");
    let json = status_json(&site);
    assert_eq!(json["schedule"]["due"]["mailed"], false);
    assert!(json["schedule"]["next"].is_null(), "{json}");
    site.run(&["publish"])
        .success()
        .stdout_contains("sent 2, already sent 0");
    site.run(&["publish"])
        .success()
        .stdout_contains("sent 0, already sent 2");
    let next = "https://www.sofastack.tech/issues/2024-03-15-weekly/";
    assert_eq!(guids(&server), [current, current, next, next]);
}

#[test]
fn a_scheduled_publish_with_nothing_due_yet_says_when_and_sends_nothing() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, "2024-02-01T00:00:00Z");
    let out = site.run(&["publish"]).success();
    out.stdout_contains("nothing to publish yet: the next issue, `Old` (");
    out.stdout_contains(
        "2024-03-01-weekly.md), is due 2024-03-01 09:00 UTC (in 29 days); nothing was sent",
    );
    site.run(&["publish", "--dry-run"])
        .success()
        .stdout_contains("nothing to publish yet");
    server.barrier();
    assert_eq!(server.connections_accepted(), 0);
    assert!(!site.ledger().exists(), "nothing due writes no ledger");
    let status = site.run(&["status"]).success();
    status.stdout_contains("  due     none: no issue is due yet");
    status.stdout_contains("  next    `Old` (");
}

#[test]
fn an_issue_mailed_early_with_future_is_the_one_a_scheduled_run_goes_on_with() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, "2024-03-10T00:00:00Z");
    let next = site.path().join("issues/2024-03-15-weekly.md");
    site.run(&["publish", "--future", next.to_str().unwrap()])
        .success()
        .stdout_contains("sent 2,");
    // The timer fires before its date: the older `Current` is not mailed after it.
    let out = site.run(&["publish"]).success();
    out.stdout_contains("sent 0, already sent 2");
    assert_eq!(server.received_count(), 2);
    let json = status_json(&site);
    assert_eq!(
        json["schedule"]["due"]["issue"],
        "https://www.sofastack.tech/issues/2024-03-15-weekly/"
    );
}

#[test]
fn an_issue_mailed_early_keeps_its_page_through_later_builds_and_publishes() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, "2024-03-10T00:00:00Z");
    let next = site.path().join("issues/2024-03-15-weekly.md");
    let page = site
        .path()
        .join("feeds/issues/2024-03-15-weekly/index.html");
    site.run(&["publish", "--future", next.to_str().unwrap()])
        .success();
    assert!(page.is_file(), "the page the email links exists");

    site.run(&["build"]).success();
    assert!(page.is_file(), "`build` keeps the page of a mailed issue");
    let rss = site.read("feeds/rss.xml");
    assert!(rss.contains("2024-03-15-weekly"), "{rss}");

    let older = site.path().join("issues/2024-03-08-weekly.md");
    site.run(&["publish", older.to_str().unwrap()]).success();
    assert!(page.is_file(), "publishing another issue keeps it too");
    site.run(&["publish"]).success();
    assert!(page.is_file(), "and so does a scheduled publish");
    assert!(site.read("feeds/rss.xml").contains("2024-03-15-weekly"));
}

#[test]
fn a_scheduled_run_names_what_an_earlier_issue_still_has_to_send() {
    let server = SmtpServer::start(Faults::new().transient_rcpt(&["plain@example.com"], 100, 451));
    let site = site(&server, "2024-03-10T00:00:00Z").smtp(server.port(), "max_attempts = 1");
    site.run(&["publish"])
        .failure()
        .stdout_contains("sent 1, already sent 0, skipped 0, failed 0, deferred 1");

    // The next issue's date comes before the server takes the deferred reader's mail.
    let site = site.env("FEEDPOST_NOW", "2024-03-15T09:30:00Z");
    let out = site.run(&["publish"]).failure();
    out.stdout_contains("sent 1, already sent 0, skipped 0, failed 0, deferred 1");
    out.stderr_contains(
        "1 recipient of `https://www.sofastack.tech/issues/2024-03-08-weekly/` left by an earlier run still to send; a publish without an issue goes on with the newest due issue only: `feedpost retry ",
    );
    out.stderr_contains("2024-03-08-weekly.md` sends them");

    server.set_faults(Faults::default());
    let current = site.path().join("issues/2024-03-08-weekly.md");
    site.run(&["retry", current.to_str().unwrap()])
        .success()
        .stdout_contains("sent 1, already sent 1");
}
