//! `feedpost status` and `feedpost subscribers …`: what the ledger says after real sends, in text
//! and JSON, and the suppression list an editor can read and lift.

use crate::support::smtp_server::{header, Faults, SmtpServer};
use crate::support::{by_recipient, issue, many_subscribers, reader, Site};

fn site(port: u16, n: usize) -> Site {
    Site::new()
        .smtp(port, "concurrency = 2\nmax_attempts = 2")
        .subscribers(&many_subscribers(n))
        .issue(
            "2024-03-01-weekly.md",
            &issue(
                "SOFA Weekly | 第 1 期",
                "2024-03-01T15:00:00+08:00",
                &["SOFA Weekly"],
                "第一期。\n",
            ),
        )
}

const PERMALINK: &str = "https://www.sofastack.tech/issues/2024-03-01-weekly/";

#[test]
fn status_shows_counts_attempts_and_the_last_replies() {
    let site = site(SmtpServer::not_listening(), 4);
    let out = site.run(&["status"]).success();
    assert!(out.stdout.contains("nothing sent yet"), "{}", out.stdout);

    let server = SmtpServer::start(Faults::new().reject_rcpt(&[&reader(1)]).transient_rcpt(
        &[&reader(2)],
        5,
        451,
    ));
    let site = site.smtp(server.port(), "concurrency = 2\nmax_attempts = 2");
    site.run(&["publish"]).failure();

    let out = site.run(&["status"]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    // The subscribers first: reader 1's own 550 made it bounced.
    assert_eq!(
        lines[0], "subscribers  confirmed 3  pending 0  unsubscribed 0  bounced 1",
        "{}",
        out.stdout
    );
    assert_eq!(lines[1], PERMALINK, "{}", out.stdout);
    assert_eq!(
        lines[2].trim(),
        "smtp    sent 2  queued 0  sending 0  deferred 1  failed 1  removed 0  (attempts 5)"
    );
    let deferred = lines
        .iter()
        .find(|l| l.contains(&reader(2)))
        .expect("the deferred recipient is listed");
    assert!(
        deferred.contains("deferred") && deferred.contains("attempts 2"),
        "{deferred}"
    );
    assert!(
        deferred.ends_with("451 4.7.1 Try again later"),
        "{deferred}"
    );
    let failed = lines
        .iter()
        .find(|l| l.contains(&reader(1)))
        .expect("the failed recipient is listed");
    assert!(
        failed.contains("failed") && failed.ends_with("550 5.1.1 User unknown"),
        "{failed}"
    );
    assert!(
        !out.stdout.contains(&reader(0)),
        "sent rows are only counted"
    );

    // The issue can be named by file, by slug, or by permalink; --json says the same.
    let path = site.path().join("issues/2024-03-01-weekly.md");
    // Without a name, the schedule follows the issues.
    let (issues, schedule) = out.stdout.split_once("schedule\n").expect("the schedule");
    assert!(schedule.contains(": mailed"), "{schedule}");
    for name in [path.to_str().unwrap(), "2024-03-01-weekly", PERMALINK] {
        assert_eq!(site.run(&["status", name]).success().stdout, issues);
    }
    let json: serde_json::Value =
        serde_json::from_str(&site.run(&["status", "--json"]).success().stdout).unwrap();
    let s = &json["issues"][0];
    assert_eq!(s["issue"], PERMALINK);
    assert_eq!(
        s["counts"],
        serde_json::json!({"queued": 0, "sending": 0, "sent": 2, "deferred": 1, "failed": 1, "removed": 0, "attempts": 5})
    );
    let problems = s["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2);
    let d = problems
        .iter()
        .find(|p| p["state"] == "deferred")
        .expect("deferred row");
    assert_eq!(d["recipient"], reader(2));
    assert_eq!(d["last_reply"], "451 4.7.1 Try again later");
    assert!(d["next_attempt_at"].as_i64().unwrap() > 0);
}

#[test]
fn suppressed_addresses_are_listed_skipped_by_later_issues_and_can_be_lifted() {
    let server = SmtpServer::start(Faults::new().reject_rcpt(&[&reader(1)]));
    let site = site(server.port(), 3);
    site.run(&["publish"]).failure();

    let out = site.run(&["subscribers", "suppressed"]).success();
    let fields: Vec<&str> = out.stdout.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 3, "{}", out.stdout);
    assert_eq!(fields[0], reader(1));
    chrono::DateTime::parse_from_rfc3339(fields[1]).expect("an RFC 3339 date");
    assert_eq!(fields[2], "550 5.1.1 User unknown");
    let json: serde_json::Value = serde_json::from_str(
        &site
            .run(&["subscribers", "suppressed", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    assert_eq!(json["suppressed"][0]["address"], reader(1));
    assert_eq!(json["suppressed"][0]["issue"], PERMALINK);
    assert_eq!(json["suppressed"][0]["reason"], "550 5.1.1 User unknown");

    // A later issue skips the suppressed address without asking the server.
    let site = site.issue(
        "2024-03-08-weekly.md",
        &issue(
            "SOFA Weekly | 第 2 期",
            "2024-03-08T15:00:00+08:00",
            &["SOFA Weekly"],
            "第二期。\n",
        ),
    );
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 2, already sent 0, skipped 1"),
        "{}",
        out.stdout
    );
    assert_eq!(server.rcpt_attempts(&reader(1)), 1);

    // Lifted: the mailbox works again, and the next publishes send it both issues, once each.
    server.set_faults(Faults::new());
    let out = site
        .run(&["subscribers", "unsuppress", &reader(1).to_uppercase()])
        .success();
    assert!(
        out.stdout.contains("no longer suppressed"),
        "{}",
        out.stdout
    );
    let out = site.run(&["subscribers", "suppressed"]).success();
    assert!(
        out.stdout.contains("no suppressed addresses"),
        "{}",
        out.stdout
    );
    let out = site
        .run(&["subscribers", "unsuppress", &reader(1)])
        .failure();
    assert!(out.stdout.contains("was not suppressed"), "{}", out.stdout);

    let first = site.path().join("issues/2024-03-01-weekly.md");
    site.run(&["publish", first.to_str().unwrap()]).success();
    site.run(&["publish"]).success();
    let received = server.received();
    let copies = &by_recipient(&received)[&reader(1)];
    let mut guids: Vec<String> = copies
        .iter()
        .map(|m| header(&m.data, "X-Feed-Guid").unwrap())
        .collect();
    guids.sort();
    assert_eq!(
        guids,
        [
            PERMALINK,
            "https://www.sofastack.tech/issues/2024-03-08-weekly/"
        ]
    );
    assert_eq!(received.len(), 6, "three readers, two issues, once each");
}

#[test]
fn an_address_suppressed_by_hand_is_not_sent_to() {
    let server = SmtpServer::start(Faults::new());
    let site = site(server.port(), 3);
    let out = site
        .run(&[
            "subscribers",
            "suppress",
            &reader(2),
            "--reason",
            "asked by phone",
        ])
        .success();
    assert!(out.stdout.contains("suppressed"), "{}", out.stdout);
    let out = site
        .run(&["subscribers", "suppress", "not-an-address"])
        .failure();
    assert!(
        out.stderr
            .contains("`not-an-address` is not a valid e-mail address"),
        "{}",
        out.stderr
    );
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 2);
    assert_eq!(server.rcpt_attempts(&reader(2)), 0);
    let out = site.run(&["subscribers", "suppressed"]).success();
    assert!(out.stdout.contains("asked by phone"), "{}", out.stdout);
}

#[test]
fn status_of_an_unknown_issue_is_an_error_and_of_an_unsent_one_says_so() {
    let server = SmtpServer::start(Faults::new());
    let site = site(server.port(), 2).issue(
        "2024-03-08-weekly.md",
        &issue(
            "第 2 期",
            "2024-03-08T15:00:00+08:00",
            &["SOFA Weekly"],
            "二\n",
        ),
    );
    let first = site.path().join("issues/2024-03-01-weekly.md");
    site.run(&["publish", first.to_str().unwrap()]).success();
    for unknown in ["2024-13-99-nope", "https://www.sofastack.tech/issues/nope/"] {
        let out = site.run(&["status", unknown]).failure();
        assert!(
            out.stderr
                .contains(&format!("`{unknown}` is no issue of this site"))
                && out.stderr.contains("feedpost.sqlite"),
            "{}",
            out.stderr
        );
    }
    let out = site.run(&["status", "2024-03-08-weekly"]).success();
    assert!(
        out.stdout.contains("smtp    not mailed yet"),
        "{}",
        out.stdout
    );
    assert_eq!(server.received_count(), 2);
}

#[test]
fn a_closed_stdout_ends_the_listing_quietly() {
    // Enough suppressed addresses to fill the pipe many times over.
    let server = SmtpServer::start(Faults::new().reject_all_rcpt("550 5.1.1 User unknown"));
    let site = site(server.port(), 3000).smtp(server.port(), "concurrency = 8");
    site.run(&["publish"]).failure();
    let mut child = site
        .command(&["subscribers", "suppressed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with(&reader(0)), "{first}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert_eq!(site.status()["counts"]["failed"], 3000);
}
