//! `publish --json`, `retry --json`: the summary as one JSON object for scripts, with the same
//! numbers as the text line.

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{issue, many_subscribers, reader, Site};

/// Six readers and one bad entry: reader 1 is refused for good, reader 2 deferred.
fn site(server: &SmtpServer) -> Site {
    Site::new()
        .smtp(
            server.port(),
            "concurrency = 2\nmax_attempts = 2\nretry_base_ms = 1",
        )
        .subscribers(&format!(
            "{}[[subscribers]]\nemail = \"not an address\"\n",
            many_subscribers(6)
        ))
        .issue("2024-03-01-weekly.md", &one())
}

/// The one issue these sites publish: "One", 2024-03-01.
fn one() -> String {
    issue(
        "One",
        "2024-03-01T15:00:00+08:00",
        &["SOFA Weekly"],
        "one\n",
    )
}

fn faults() -> Faults {
    Faults::new()
        .reject_rcpt(&[&reader(1)])
        .transient_rcpt(&[&reader(2)], 10, 451)
}

/// The numbers of a text summary line, `sent 4, already sent 0, ...`, by name.
fn numbers(line: &str) -> Vec<(String, u64)> {
    line.split(", ")
        .map(|part| {
            let (name, n) = part.rsplit_once(' ').expect("`name N`");
            (name.replace(' ', "_"), n.parse().expect("a count"))
        })
        .collect()
}

fn json(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on one line: {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn publish_json_has_the_numbers_of_the_text_summary() {
    let text_server = SmtpServer::start(faults());
    let text = site(&text_server).run(&["publish"]).failure();
    let json_server = SmtpServer::start(faults());
    let site = site(&json_server);
    let out = site.run(&["publish", "--json"]).failure();
    let doc = json(&out.stdout);

    let line = text.stdout.trim();
    let expected = numbers(line);
    assert_eq!(
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "sent",
            "already_sent",
            "skipped",
            "failed",
            "deferred",
            "queued"
        ],
        "{line}"
    );
    for (name, n) in &expected {
        assert_eq!(doc[name.as_str()], *n, "{name} in {doc} against `{line}`");
    }
    assert_eq!(doc["sent"], 4);
    assert_eq!(doc["failed"], 1);
    assert_eq!(doc["deferred"], 1);
    assert_eq!(doc["skipped"], 1);
    assert_eq!(doc["removed"], 0);
    assert_eq!(doc["action"], "publish");
    assert_eq!(doc["channel"], "smtp");
    assert_eq!(
        doc["issue"],
        "https://www.sofastack.tech/issues/2024-03-01-weekly/"
    );
    assert!(doc["outbox"].is_null());
    assert_eq!(json_server.received_count(), 4);

    // The deferred reader's server recovers: `retry --json` says what it sent.
    json_server.set_faults(Faults::new());
    let path = site.path().join("issues/2024-03-01-weekly.md");
    let out = site
        .run(&["retry", "--json", path.to_str().unwrap()])
        .success();
    let doc = json(&out.stdout);
    assert_eq!(doc["action"], "retry");
    assert_eq!(doc["sent"], 1);
    assert_eq!(doc["already_sent"], 4);
    assert_eq!(doc["deferred"], 0);

    // A dry run and a run with nothing new: the same keys as their text.
    let dry = json(
        &site
            .run(&["publish", "--dry-run", "--json"])
            .success()
            .stdout,
    );
    assert_eq!(dry["action"], "dry_run");
    assert_eq!(dry["would_send"], 0);
    assert_eq!(dry["already_sent"], 5);
    site.run(&["publish", "--dry-run"])
        .success()
        .stdout_contains("would go to 0 recipients via");
    let again = json(&site.run(&["publish", "--json"]).success().stdout);
    assert_eq!(
        (again["sent"].as_u64(), again["already_sent"].as_u64()),
        (Some(0), Some(5))
    );
}

/// Two readers and one issue, and no `[smtp]` table: the outbox.
fn outbox_site() -> Site {
    Site::new()
        .subscribers(&many_subscribers(2))
        .issue("2024-03-01-weekly.md", &one())
}

#[test]
fn publish_json_in_the_outbox_names_the_folder_and_nothing_due_names_the_next_issue() {
    let site = outbox_site();
    let doc = json(&site.run(&["publish", "--json"]).success().stdout);
    assert_eq!(doc["channel"], "outbox");
    assert_eq!(doc["sent"], 2);
    let folder = doc["outbox"].as_str().expect("the outbox folder");
    assert_eq!(std::fs::read_dir(folder).unwrap().count(), 2, "{folder}");

    let early = outbox_site().env("FEEDPOST_NOW", "2024-01-01T00:00:00Z");
    let doc = json(&early.run(&["publish", "--json"]).success().stdout);
    assert_eq!(doc["action"], "nothing_due");
    assert_eq!(doc["sent"], 0);
    assert_eq!(doc["next"]["date"], "2024-03-01T07:00:00+00:00");
}
