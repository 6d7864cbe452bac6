//! Delivery under faults: a loopback SMTP server that defers, throttles, drops and refuses, and
//! after each run the server's mailbox and `feedpost status` agree on who got the issue — each
//! eligible subscriber exactly once, minus the permanent failures, plus only the copies whose
//! reply the server really lost.

use std::time::Duration;

use crate::support::smtp_server::{header, Faults, SmtpServer};
use crate::support::{assert_delivered_once, issue, many_subscribers, reader, readers, Site};

const ISSUE: &str = "2024-03-08-weekly.md";

/// A site with `n` subscribers (`reader0000@example.test` …), one issue, and `[smtp]` pointing at
/// `port` with `extra` settings.
fn site(port: u16, n: usize, extra: &str) -> Site {
    Site::new()
        .smtp(port, extra)
        .subscribers(&many_subscribers(n))
        .issue(
            ISSUE,
            &issue(
                "SOFA Weekly | 第 8 期",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly"],
                "本周 **MOSN** 发布。\n",
            ),
        )
}

fn issue_path(site: &Site) -> String {
    site.path()
        .join("issues")
        .join(ISSUE)
        .to_string_lossy()
        .into_owned()
}

fn count(status: &serde_json::Value, state: &str) -> u64 {
    status["counts"][state]
        .as_u64()
        .unwrap_or_else(|| panic!("no count `{state}` in {status}"))
}

/// The `problems` rows of a status: (recipient, state, attempts, last reply).
fn problems(status: &serde_json::Value) -> Vec<(String, String, u64, String)> {
    let mut rows: Vec<_> = status["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["recipient"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
                p["attempts"].as_u64().unwrap(),
                p["last_reply"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_451_on_the_first_attempt_is_retried_and_delivered_once() {
    let greylisted = [reader(2), reader(7), reader(11)];
    let greylisted_refs: Vec<&str> = greylisted.iter().map(String::as_str).collect();
    let server = SmtpServer::start(Faults::new().transient_rcpt(&greylisted_refs, 1, 451));
    let site = site(server.port(), 20, "concurrency = 3");
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 20,") && out.stdout.contains("deferred 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("451 4.7.1 Try again later"),
        "the retry is logged with the server's reply:\n{}",
        out.stderr
    );
    assert_eq!(assert_delivered_once(&server.received(), &readers(20)), 0);
    for a in &greylisted {
        assert_eq!(server.rcpt_attempts(a), 2, "{a}");
    }
    assert_eq!(server.rcpt_attempts(&reader(3)), 1);
    let status = site.status();
    assert_eq!(count(&status, "sent"), 20);
    assert_eq!(count(&status, "attempts"), 23);
    assert!(problems(&status).is_empty(), "{status}");
}

#[test]
fn still_deferred_at_the_end_is_reported_fails_the_run_and_is_sent_by_retry() {
    let server = SmtpServer::start(Faults::new().transient_rcpt(&[&reader(1)], 3, 451));
    let site = site(server.port(), 4, "concurrency = 2\nmax_attempts = 2");
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout.contains("sent 3,") && out.stdout.contains("deferred 1"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("feedpost retry"), "{}", out.stderr);
    assert!(out.stderr.contains(&reader(1)), "{}", out.stderr);
    assert_eq!(server.rcpt_attempts(&reader(1)), 2);
    let status = site.status();
    assert_eq!((count(&status, "sent"), count(&status, "deferred")), (3, 1));
    let p = problems(&status);
    assert_eq!(p.len(), 1, "{status}");
    assert_eq!(
        (p[0].0.as_str(), p[0].1.as_str(), p[0].2),
        (reader(1).as_str(), "deferred", 2)
    );
    assert!(p[0].3.starts_with("451 4.7.1"), "{}", p[0].3);
    assert!(
        status["problems"][0]["next_attempt_at"].is_i64(),
        "{status}"
    );

    // `retry` sends only what is left: attempt 3 is refused again, attempt 4 goes through.
    let out = site.run(&["retry", &issue_path(&site)]).success();
    assert!(
        out.stdout.contains("sent 1,") && out.stdout.contains("deferred 0"),
        "{}",
        out.stdout
    );
    assert_eq!(server.rcpt_attempts(&reader(1)), 4);
    assert_eq!(assert_delivered_once(&server.received(), &readers(4)), 0);
    let status = site.status();
    assert_eq!((count(&status, "sent"), count(&status, "deferred")), (4, 0));
    assert_eq!(count(&status, "attempts"), 3 + 4);
}

#[test]
fn a_421_and_disconnect_ends_that_connection_only_and_spends_no_attempt() {
    let server = SmtpServer::start(Faults::new().disconnect_after(5));
    let site = site(server.port(), 60, "concurrency = 3");
    site.run(&["publish"]).success();
    assert_eq!(assert_delivered_once(&server.received(), &readers(60)), 0);
    // Five messages per connection: at least twelve connections were needed.
    assert!(
        server.connections_accepted() >= 12,
        "{}",
        server.connections_accepted()
    );
    let status = site.status();
    assert_eq!(count(&status, "sent"), 60);
    assert_eq!(
        count(&status, "attempts"),
        60,
        "a recipient refused with 421 before RCPT was never tried"
    );
}

#[test]
fn throttling_454_slows_down_without_spending_attempts() {
    let server = SmtpServer::start(Faults::new().throttle_every(4));
    let site = site(server.port(), 40, "concurrency = 2");
    let out = site.run(&["publish"]).success();
    assert!(out.stderr.contains("throttling"), "{}", out.stderr);
    assert!(out.stderr.contains("454 4.7.0"), "{}", out.stderr);
    assert_eq!(assert_delivered_once(&server.received(), &readers(40)), 0);
    let mails = server
        .commands()
        .iter()
        .filter(|c| c.starts_with("MAIL"))
        .count();
    assert!(mails >= 50, "every fourth MAIL was throttled: {mails}");
    let status = site.status();
    assert_eq!(count(&status, "sent"), 40);
    assert_eq!(count(&status, "attempts"), 40);
}

#[test]
fn a_server_that_always_throttles_leaves_recipients_deferred_instead_of_looping() {
    let server = SmtpServer::start(Faults::new().throttle_every(1));
    let site = site(server.port(), 3, "concurrency = 2\nmax_attempts = 2");
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout.contains("sent 0,") && out.stdout.contains("deferred 3"),
        "{}",
        out.stdout
    );
    assert_eq!(server.received_count(), 0);
    let status = site.status();
    assert_eq!(count(&status, "deferred"), 3);
    for (to, state, attempts, reply) in problems(&status) {
        assert_eq!((state.as_str(), attempts), ("deferred", 2), "{to}");
        assert!(reply.contains("454 4.7.0"), "{to}: {reply}");
    }

    server.set_faults(Faults::new());
    site.run(&["retry", &issue_path(&site)]).success();
    assert_eq!(assert_delivered_once(&server.received(), &readers(3)), 0);
    assert_eq!(count(&site.status(), "sent"), 3);
}

#[test]
fn a_550_or_554_fails_the_recipient_with_the_reply_and_the_rest_are_sent() {
    let server = SmtpServer::start(
        Faults::new()
            .reject_rcpt(&[&reader(3), &reader(8)])
            .reject_data_for(&[&reader(5)]),
    );
    let site = site(server.port(), 12, "concurrency = 3");
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout.contains("sent 9,") && out.stdout.contains("failed 3"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("suppressed"), "{}", out.stderr);
    let eligible: Vec<String> = readers(12)
        .into_iter()
        .filter(|a| ![reader(3), reader(5), reader(8)].contains(a))
        .collect();
    assert_eq!(assert_delivered_once(&server.received(), &eligible), 0);
    // The RSET after a refusal kept the connections: one per worker.
    assert!(server.commands().iter().any(|c| c == "RSET"));
    assert!(server.connections_accepted() <= 3);
    let status = site.status();
    assert_eq!((count(&status, "sent"), count(&status, "failed")), (9, 3));
    assert_eq!(
        problems(&status),
        [
            (
                reader(3),
                "failed".into(),
                1,
                "550 5.1.1 User unknown".into()
            ),
            (
                reader(5),
                "failed".into(),
                1,
                "554 5.6.0 Message rejected".into()
            ),
            (
                reader(8),
                "failed".into(),
                1,
                "550 5.1.1 User unknown".into()
            ),
        ]
    );
    // Publishing again tries nobody: the failures are final.
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 0, already sent 9"),
        "{}",
        out.stdout
    );
    assert_eq!(server.rcpt_attempts(&reader(3)), 1);
}

#[test]
fn a_reply_lost_after_data_is_resent_with_the_same_message_id() {
    let server = SmtpServer::start(Faults::new().drop_after_data(&[3, 10]));
    let site = site(server.port(), 20, "concurrency = 2");
    site.run(&["publish"]).success();
    let received = server.received();
    let lost: Vec<_> = received.iter().filter(|m| m.reply_lost).collect();
    assert_eq!(lost.len(), 2);
    // The two messages whose 250 never came were sent again: the only duplicates.
    assert_eq!(assert_delivered_once(&received, &readers(20)), 2);
    for m in lost {
        let again: Vec<_> = received
            .iter()
            .filter(|r| r.rcpt_to == m.rcpt_to && !r.reply_lost)
            .collect();
        assert_eq!(again.len(), 1);
        assert_eq!(
            header(&again[0].data, "Message-ID"),
            header(&m.data, "Message-ID")
        );
    }
    let status = site.status();
    assert_eq!(count(&status, "sent"), 20);
    assert_eq!(count(&status, "attempts"), 22);
}

#[test]
fn no_reply_within_the_timeout_is_a_transient_failure() {
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(2500)));
    let site = site(
        server.port(),
        2,
        "concurrency = 2\nmax_attempts = 1\ntimeout_secs = 1",
    );
    let out = site.run(&["publish"]).failure();
    assert!(out.stdout.contains("deferred 2"), "{}", out.stdout);
    let status = site.status();
    assert_eq!((count(&status, "sent"), count(&status, "deferred")), (0, 2));
    for (to, _, attempts, reply) in problems(&status) {
        assert_eq!(attempts, 1, "{to}");
        assert!(reply.contains("no reply within 1 s"), "{to}: {reply}");
    }

    // The server did take both messages, only its reply came late: the retry repeats them, with
    // the same Message-IDs — the duplicates a lost reply allows.
    server.set_faults(Faults::new());
    site.run(&["retry", &issue_path(&site)]).success();
    let received = server.received();
    assert_eq!(received.len(), 4);
    for to in readers(2) {
        let ids: Vec<_> = received
            .iter()
            .filter(|m| m.rcpt_to == [to.clone()])
            .map(|m| header(&m.data, "Message-ID").unwrap())
            .collect();
        assert_eq!(ids.len(), 2, "{to}");
        assert_eq!(ids[0], ids[1], "{to}");
    }
    assert_eq!(count(&site.status(), "sent"), 2);
}

#[test]
fn refused_reconnections_mid_run_are_retried_and_the_send_completes() {
    // Connections 1 and 2 serve; every connection ends after ten messages; connections 3 to 6
    // are refused with a 421 greeting.
    let server = SmtpServer::start(
        Faults::new()
            .disconnect_after(10)
            .refuse_connections(3, 4, 421),
    );
    let site = site(server.port(), 50, "concurrency = 2");
    let out = site.run(&["publish"]).success();
    assert!(out.stdout.contains("sent 50,"), "{}", out.stdout);
    assert_eq!(assert_delivered_once(&server.received(), &readers(50)), 0);
    assert!(server.connections_accepted() >= 9);
    let status = site.status();
    assert_eq!(count(&status, "sent"), 50);
    assert_eq!(
        count(&status, "attempts"),
        50,
        "a refused connection is not the recipient's attempt"
    );
}

/// Starts a slow send of 200, and once 20 have arrived turns the server into `faults`.
fn fault_mid_run(faults: Faults) -> (SmtpServer, Site, crate::support::Output) {
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(5)));
    let site = site(server.port(), 200, "concurrency = 2\nmax_attempts = 3");
    let child = site
        .command(&["publish"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start feedpost");
    assert!(server.wait_for(20, Duration::from_secs(20)));
    server.set_faults(faults);
    let out = child.wait_with_output().expect("wait for feedpost");
    let out = crate::support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (server, site, out)
}

/// After a run stopped by the server: nothing marked sent that the server lacks, nothing failed
/// or suppressed, and the next publish delivers the rest exactly once.
fn assert_stopped_cleanly_and_resumes(server: &SmtpServer, site: &Site) {
    let got = server.received_count() as u64;
    assert!(got < 200, "the fault came too late to test anything");
    let status = site.status();
    assert_eq!(count(&status, "sent"), got, "{status}");
    assert_eq!(count(&status, "failed"), 0, "{status}");
    assert_eq!(count(&status, "sending"), 0, "{status}");
    assert_eq!(
        count(&status, "queued") + count(&status, "deferred"),
        200 - got
    );
    let out = site.run(&["subscribers", "suppressed"]).success();
    assert!(
        out.stdout.contains("no suppressed addresses"),
        "{}",
        out.stdout
    );

    server.set_faults(Faults::new());
    site.run(&["publish"]).success();
    assert_eq!(assert_delivered_once(&server.received(), &readers(200)), 0);
    assert_eq!(count(&site.status(), "sent"), 200);
}

#[test]
fn a_server_gone_busy_mid_run_stops_the_run_with_an_error_and_loses_nothing() {
    // Open sessions are closed with 421 and new ones greeted with 421, for good.
    let (server, site, out) = fault_mid_run(Faults::new().disconnect_after(0).greeting_code(421));
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot open a session with 127.0.0.1")
            && out.stderr.contains("421 localhost No service"),
        "{}",
        out.stderr
    );
    assert_stopped_cleanly_and_resumes(&server, &site);
}

#[test]
fn a_session_refused_mid_run_stops_the_run_and_fails_no_recipient() {
    let (server, site, out) = fault_mid_run(Faults::new().disconnect_after(0).greeting_code(554));
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("refused the session: 554 localhost No service"),
        "{}",
        out.stderr
    );
    assert_stopped_cleanly_and_resumes(&server, &site);
}

#[test]
fn a_rejected_sender_stops_the_run_and_suppresses_no_one() {
    let (server, site, out) = fault_mid_run(Faults::new().reject_sender());
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("refuses the sender")
            && out.stderr.contains("553 5.7.1 Sender address rejected"),
        "{}",
        out.stderr
    );
    assert_stopped_cleanly_and_resumes(&server, &site);
}

#[test]
fn a_server_refusing_at_the_start_is_a_clear_error_and_marks_nothing() {
    for (code, expected) in [
        (554, "refused the session: 554 localhost No service"),
        (421, "cannot open a session with 127.0.0.1"),
    ] {
        let server = SmtpServer::start(Faults::new().greeting_code(code));
        let site = site(server.port(), 5, "");
        let out = site.run(&["publish"]).failure();
        assert!(out.stderr.contains(expected), "{code}: {}", out.stderr);
        assert!(
            out.stderr.contains("nothing unsent was marked sent"),
            "{}",
            out.stderr
        );
        assert_eq!(server.received_count(), 0);
        let status = site.status();
        assert_eq!(
            (count(&status, "queued"), count(&status, "attempts")),
            (5, 0)
        );
    }
}

#[test]
fn publishing_again_when_everything_is_sent_needs_no_server() {
    let server = SmtpServer::start(Faults::new());
    let site = site(server.port(), 3, "");
    site.run(&["publish"]).success();
    drop(server);
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 0, already sent 3"),
        "{}",
        out.stdout
    );
    site.run(&["retry", &issue_path(&site)]).success();
}

#[test]
fn a_failed_tls_handshake_is_a_clear_error_and_marks_nothing() {
    for (faults, security) in [
        (Faults::new(), "tls"),
        (Faults::new().broken_starttls(), "starttls"),
    ] {
        let server = SmtpServer::start(faults);
        let site = site(
            server.port(),
            3,
            &format!("security = \"{security}\"\ntimeout_secs = 2"),
        );
        let out = site.run(&["publish"]).failure();
        assert!(
            out.stderr.to_lowercase().contains("tls"),
            "{security}: {}",
            out.stderr
        );
        assert_eq!(server.received_count(), 0);
        assert_eq!(count(&site.status(), "queued"), 3);
    }
}

#[test]
fn hundreds_of_retries_do_not_flood_the_log() {
    let all = readers(300);
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let server = SmtpServer::start(
        Faults::new()
            .transient_rcpt(&all_refs, 1, 451)
            .throttle_every(40)
            .disconnect_after(40),
    );
    let site = site(server.port(), 300, "concurrency = 4");
    let out = site.run(&["publish"]).success();
    assert_eq!(assert_delivered_once(&server.received(), &all), 0);
    let lines = out.stderr.lines().count();
    assert!(
        lines <= 40,
        "{lines} log lines for 300 retries:\n{}",
        out.stderr
    );
    // The summary still tells what happened.
    assert!(
        out.stderr.contains("300 transient failures"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_421_pauses_only_the_connection_that_got_it() {
    // Connection 1 is closed with a 421 after ten messages; the other three are never told to
    // slow down, so they must go on sending while it waits and reconnects.
    let server = SmtpServer::start(Faults::new().disconnect_connections_after(&[1], 10));
    let site = site(
        server.port(),
        400,
        "concurrency = 4\nretry_base_ms = 100\nretry_max_ms = 1000",
    );
    let out = site.run(&["publish"]).success();
    assert!(
        out.stderr.contains("throttling this connection"),
        "{}",
        out.stderr
    );
    assert_eq!(assert_delivered_once(&server.received(), &readers(400)), 0);
    let events = server.events();
    let at = events
        .iter()
        .position(|(conn, e)| *conn == 1 && e == "421")
        .expect("connection 1 got its 421");
    let reconnect = events[at..]
        .iter()
        .position(|(_, e)| e == "CONNECT")
        .map(|i| at + i)
        .expect("the worker connected again");
    let others = events[at..reconnect]
        .iter()
        .filter(|(conn, e)| *conn != 1 && e.starts_with("MAIL"))
        .count();
    // A pause shared by every worker would let each other connection finish at most the
    // message it was sending: 3 in all.
    assert!(
        others >= 6,
        "the other connections sent {others} messages while connection 1 paused"
    );
    let status = site.status();
    assert_eq!(count(&status, "sent"), 400);
    assert_eq!(count(&status, "attempts"), 400, "the 421 spent no attempt");
}

#[test]
fn a_run_stopped_by_an_error_still_prints_its_summary_line() {
    let (server, site, out) = fault_mid_run(Faults::new().reject_sender());
    assert_ne!(out.code, 0, "{}", out.stderr);
    let status = site.status();
    let summary = format!(
        "sent {}, already sent 0, skipped 0, failed 0, deferred {}, queued {}",
        status["counts"]["sent"], status["counts"]["deferred"], status["counts"]["queued"]
    );
    assert!(out.stdout.contains(&summary), "{summary} in {}", out.stdout);
    assert_eq!(
        status["counts"]["sent"].as_u64(),
        Some(server.received_count() as u64)
    );
    assert!(out.stderr.contains("sending"), "{}", out.stderr);
}
