//! Exactly the right readers: whoever is no longer listed, no longer wants the issue or is
//! suppressed when their turn comes is not mailed — on `publish`, `retry` and a resume after a
//! crash — and the summary, `status` and `--dry-run` count alike.

use std::process::Stdio;
use std::time::Duration;

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{
    assert_delivered_once, by_recipient, issue, many_subscribers, reader, readers, Site,
};

const ISSUE: &str = "2024-03-08-weekly.md";

fn weekly() -> String {
    issue(
        "SOFA Weekly | 第 8 期",
        "2024-03-08T15:00:00+08:00",
        &["SOFA Weekly"],
        "短讯。\n",
    )
}

fn issue_path(site: &Site) -> String {
    site.path()
        .join("issues")
        .join(ISSUE)
        .to_string_lossy()
        .into_owned()
}

/// The subscriber list of readers `0..n` without those in `left_out`.
fn list_without(n: usize, left_out: &[usize]) -> String {
    (0..n)
        .filter(|i| !left_out.contains(i))
        .map(|i| format!("[[subscribers]]\nemail = \"{}\"\n\n", reader(i)))
        .collect()
}

#[test]
fn a_reader_suppressed_or_removed_after_being_deferred_is_not_mailed_by_retry() {
    let server = SmtpServer::start(Faults::new().transient_rcpt(&[&reader(1), &reader(2)], 9, 451));
    let site = Site::new()
        .smtp(server.port(), "concurrency = 2\nmax_attempts = 1")
        .subscribers(&many_subscribers(6))
        .issue(ISSUE, &weekly());
    site.run(&["publish"]).failure();
    assert_eq!(site.status()["counts"]["deferred"], 2);

    // One is suppressed by hand, the other leaves the list; the server would take both now.
    server.set_faults(Faults::new());
    site.run(&[
        "subscribers",
        "suppress",
        &reader(1),
        "--reason",
        "asked by phone",
    ])
    .success();
    let site = site.subscribers(&list_without(6, &[2]));
    let out = site.run(&["retry", &issue_path(&site)]).success();
    assert!(
        out.stdout.contains(
            "sent 0, already sent 4, skipped 1, failed 0, deferred 0, queued 0, removed 2"
        ),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(
        server.rcpt_attempts(&reader(1)),
        1,
        "only the first, deferred, attempt"
    );
    assert_eq!(server.rcpt_attempts(&reader(2)), 1);
    let status = site.status();
    assert_eq!(status["counts"]["removed"], 2, "{status}");
    let reasons: Vec<(String, String)> = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["recipient"].as_str().unwrap().to_string(),
                p["last_reply"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&(
            reader(1),
            "not sent: the address is suppressed (asked by phone)".into()
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            reader(2),
            "not sent: no longer in the subscriber list".into()
        )),
        "{reasons:?}"
    );

    // Back on the list, the reader gets the issue after all — once.
    let site = site.subscribers(&many_subscribers(6));
    let out = site.run(&["retry", &issue_path(&site)]).success();
    assert!(
        out.stdout.contains("sent 1, already sent 4"),
        "{}",
        out.stdout
    );
    let mut expected = readers(6);
    expected.retain(|r| *r != reader(1));
    assert_eq!(assert_delivered_once(&server.received(), &expected), 0);
}

#[test]
fn readers_removed_while_a_send_was_killed_are_not_mailed_when_it_resumes() {
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(5)));
    let site = Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(&many_subscribers(300))
        .issue(ISSUE, &weekly());
    let mut child = site
        .command(&["publish"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(server.wait_for(20, Duration::from_secs(30)));
    child.kill().unwrap();
    child.wait().unwrap();
    // Claims go in address order: readers 250 and up were not reached. They leave the list,
    // and one more reader, still queued, unsubscribes.
    let held = by_recipient(&server.received()).len();
    assert!(held < 200, "the kill came too late: {held}");
    site.run(&["subscribers", "suppress", &reader(200)])
        .success();
    let leaving: Vec<usize> = (250..300).collect();
    let site = site.subscribers(&list_without(300, &leaving));
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("removed 51"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut expected = readers(250);
    expected.retain(|r| *r != reader(200));
    let received = server.received();
    let copies = by_recipient(&received);
    let got: Vec<&String> = copies.keys().collect();
    expected.sort();
    assert!(
        got.into_iter().eq(expected.iter()),
        "exactly the eligible readers"
    );
    assert!(!copies.contains_key(&reader(200)));
    let status = site.status();
    assert_eq!(
        (
            status["counts"]["sent"].as_u64(),
            status["counts"]["removed"].as_u64()
        ),
        (Some(249), Some(51)),
        "{status}"
    );
}

#[test]
fn the_dry_run_the_summary_and_status_count_alike() {
    let server = SmtpServer::start(Faults::new().transient_rcpt(&[&reader(5), &reader(6)], 9, 451));
    let list = format!(
        "{}[[subscribers]]\nemail = \"{}\"\n\n[[subscribers]]\nemail = \"seata-only@example.org\"\ntopics = [\"Seata\"]\n\n[[subscribers]]\nemail = \"not an address\"\n",
        many_subscribers(10),
        reader(4).to_uppercase()
    );
    let site = Site::new()
        .smtp(server.port(), "concurrency = 2\nmax_attempts = 1")
        .subscribers(&list)
        .issue(ISSUE, &weekly());
    site.run(&["subscribers", "suppress", &reader(3)]).success();
    // Skipped: the repeated reader 4, the Seata-only reader, the bad entry, the suppressed
    // reader 3.
    let dry = site.run(&["publish", "--dry-run"]).success();
    assert!(
        dry.stdout.contains("would go to 9 recipients")
            && dry.stdout.contains("already sent 0, skipped 4"),
        "{}",
        dry.stdout
    );
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout
            .contains("sent 7, already sent 0, skipped 4, failed 0, deferred 2, queued 0"),
        "{}",
        out.stdout
    );
    let status = site.status();
    assert_eq!(
        (
            status["counts"]["sent"].as_u64(),
            status["counts"]["deferred"].as_u64(),
            status["counts"]["queued"].as_u64()
        ),
        (Some(7), Some(2), Some(0))
    );

    // The dry run of what is left says what the next run does.
    server.set_faults(Faults::new());
    let dry = site.run(&["publish", "--dry-run"]).success();
    assert!(
        dry.stdout.contains("would go to 2 recipients")
            && dry.stdout.contains("already sent 7, skipped 4"),
        "{}",
        dry.stdout
    );
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 2, already sent 7, skipped 4, failed 0, deferred 0, queued 0"),
        "{}",
        out.stdout
    );
    assert_eq!(site.status()["counts"]["sent"], 9);
    assert_eq!(server.rcpt_attempts(&reader(3)), 0);
}

#[test]
fn a_stopped_send_leaves_recipients_queued_in_the_summary_as_in_status() {
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(5)));
    let site = Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(&many_subscribers(400))
        .issue(ISSUE, &weekly());
    let child = site
        .command(&["publish"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        server.wait_for(30, Duration::from_secs(30)),
        "no message arrived"
    );
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = site.status();
    let c = &status["counts"];
    let summary = format!(
        "sent {}, already sent 0, skipped 0, failed 0, deferred {}, queued {}",
        c["sent"], c["deferred"], c["queued"]
    );
    assert!(
        stdout.contains(&summary),
        "summary {stdout} vs status {status}"
    );
    assert_eq!(c["deferred"], 0, "{status}");
    assert!(c["queued"].as_u64().unwrap() > 0, "{status}");
}
