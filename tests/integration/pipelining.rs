//! Command pipelining (RFC 2920): with a server that offers `PIPELINING`, `MAIL`, `RCPT` and
//! `DATA` go out together, and refusals, retries and dropped sessions behave as without it.

use crate::support::smtp_server::{recipients_of, Faults, SmtpServer};
use crate::support::{issue, many_subscribers, Site};

fn site(server: &SmtpServer, subscribers: usize) -> Site {
    Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(&many_subscribers(subscribers))
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "SOFA Weekly | 流水线",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly"],
                "Pipelined.\n",
            ),
        )
}

#[test]
fn commands_are_pipelined_only_when_the_server_offers_it() {
    let server = SmtpServer::start(Faults::default().pipelining());
    let out = site(&server, 20).run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 20, already sent 0, skipped 0, failed 0, deferred 0"),
        "{}",
        out.stdout
    );
    assert_eq!(server.received_count(), 20);
    // RCPT and DATA of every message arrived before the reply to the command before them.
    assert!(
        server.pipelined_commands() >= 40,
        "{}",
        server.pipelined_commands()
    );

    let plain = SmtpServer::start(Faults::default());
    site(&plain, 20).run(&["publish"]).success();
    assert_eq!(plain.received_count(), 20);
    assert_eq!(plain.pipelined_commands(), 0);
}

#[test]
fn a_refused_recipient_is_suppressed_and_the_session_goes_on() {
    let server = SmtpServer::start(
        Faults::default()
            .pipelining()
            .reject_rcpt(&["reader0003@example.test"]),
    );
    let site = site(&server, 6);
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout
            .contains("sent 5, already sent 0, skipped 0, failed 1, deferred 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut rcpts = recipients_of(&server.received());
    rcpts.sort();
    assert!(!rcpts.contains(&"reader0003@example.test".to_string()));
    assert_eq!(rcpts.len(), 5);
    // The session was reset, not dropped: one connection per worker.
    assert!(server.commands().iter().any(|c| c == "RSET"));
    assert_eq!(server.connections_accepted(), 2);
    let suppressed = site.run(&["subscribers", "suppressed"]);
    assert!(
        suppressed.stdout.contains("reader0003@example.test"),
        "{}\n{}",
        suppressed.stdout,
        suppressed.stderr
    );
}

#[test]
fn a_transient_refusal_is_retried() {
    let server = SmtpServer::start(Faults::default().pipelining().transient_rcpt(
        &["reader0001@example.test"],
        2,
        451,
    ));
    let out = site(&server, 4).run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 4, already sent 0, skipped 0, failed 0, deferred 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(server.rcpt_attempts("reader0001@example.test"), 3);
    assert_eq!(server.received_count(), 4);
}

#[test]
fn a_closing_421_reconnects_and_loses_nothing() {
    let server = SmtpServer::start(Faults::default().pipelining().disconnect_after(3));
    let out = site(&server, 12).run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 12, already sent 0, skipped 0, failed 0, deferred 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut rcpts = recipients_of(&server.received());
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 12);
    assert_eq!(server.received_count(), 12);
    assert!(server.connections_accepted() >= 4);
}

#[test]
fn a_message_refused_after_its_content_is_a_permanent_failure() {
    let server = SmtpServer::start(
        Faults::default()
            .pipelining()
            .reject_data_for(&["reader0000@example.test"]),
    );
    let out = site(&server, 3).run(&["publish"]).failure();
    assert!(
        out.stdout
            .contains("sent 2, already sent 0, skipped 0, failed 1, deferred 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(server.received_count(), 2);
}
