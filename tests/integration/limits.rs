//! The limits of `[smtp]`: messages per second and the hourly cap are kept by waiting, never by
//! failing a recipient; an hourly cap that would hold the run open too long ends it with the rest
//! queued.

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{issue, many_subscribers, Site};

fn site(server: &SmtpServer, subscribers: usize, limits: &str) -> Site {
    Site::new()
        .smtp(server.port(), &format!("concurrency = 4\n{limits}"))
        .subscribers(&many_subscribers(subscribers))
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "SOFA Weekly | 限速",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly"],
                "Paced.\n",
            ),
        )
}

#[test]
fn a_rate_limit_spaces_the_messages_and_fails_none() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, 100, "rate_per_second = 50");
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 100, already sent 0, skipped 0, failed 0, deferred 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(server.received_count(), 100);
    // The limiter held messages back (how long, `deliver::limits`' unit tests measure on a
    // paused clock).
    out.stderr_contains("`smtp.rate_per_second` = 50 held back");
}

#[test]
fn an_hourly_cap_too_far_away_ends_the_run_with_the_rest_queued() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, 5, "hourly_cap = 3\nhourly_cap_wait_secs = 60");
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout
            .contains("sent 3, already sent 0, skipped 0, failed 0, deferred 0, queued 2"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("hourly cap of 3 messages") && out.stderr.contains("feedpost retry"),
        "{}",
        out.stderr
    );
    assert_eq!(server.received_count(), 3);
    let status = site.run(&["status"]).success();
    assert!(
        status
            .stdout
            .contains("sent 3  queued 2  sending 0  deferred 0  failed 0"),
        "{}",
        status.stdout
    );

    // The messages of the first run still count against the hour: a retry sends nothing yet,
    // and fails no one.
    let again = site.run(&["publish"]).failure();
    assert!(
        again
            .stdout
            .contains("sent 0, already sent 3, skipped 0, failed 0, deferred 0, queued 2"),
        "{}\n{}",
        again.stdout,
        again.stderr
    );
    assert!(again.stderr.contains("hourly cap"), "{}", again.stderr);
    assert_eq!(server.received_count(), 3);
}

#[test]
fn an_absurd_rate_is_refused_at_load_with_its_key_and_line_before_anything_is_queued() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server, 5, "rate_per_second = 1e-300");
    let out = site.run(&["publish"]).failure();
    let config = site.path().join("feedpost.toml");
    let line = site
        .config_text()
        .lines()
        .position(|l| l.starts_with("rate_per_second"))
        .unwrap()
        + 1;
    assert!(
        out.stderr.contains(&format!(
            "invalid config file `{}`, line {line}",
            config.display()
        )) && out
            .stderr
            .contains("`smtp.rate_per_second` must be 0 (no limit) or between 0.001 and 1000000"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(server.connections_accepted(), 0);
    assert!(!site.ledger().exists(), "nothing was queued");
    // `status` refuses the same config, and says why.
    let status = site.run(&["status"]).failure();
    assert!(
        status.stderr.contains("smtp.rate_per_second"),
        "{}",
        status.stderr
    );
}
