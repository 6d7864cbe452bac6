//! `smtp.security = "tls"` and `"starttls"` against a real TLS endpoint on loopback, with the
//! server certificate signed by a private CA that only `smtp.ca_file` makes trusted.

use crate::support::smtp_server::{recipients_of, Faults, SmtpServer};
use crate::support::tls_front::TlsFront;
use crate::support::{issue, many_subscribers, Site};

fn site(port: u16, security: &str, extra: &str) -> Site {
    Site::new()
        .smtp(
            port,
            &format!("security = \"{security}\"\nconcurrency = 2\n{extra}"),
        )
        .subscribers(&many_subscribers(5))
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "SOFA Weekly | 加密",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly"],
                "Over TLS.\n",
            ),
        )
}

fn expected_recipients() -> Vec<String> {
    (0..5)
        .map(|i| format!("reader{i:04}@example.test"))
        .collect()
}

/// Publishes 5 messages through `front` with the private CA trusted, and checks they all arrived
/// and every backend session came through a TLS handshake.
fn delivers_through(server: &SmtpServer, front: &TlsFront, security: &str) {
    let site = site(front.port(), security, "ca_file = \"ca.pem\"");
    site.write("ca.pem", front.ca_pem());
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 5, already sent 0, skipped 0, failed 0, deferred 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut rcpts = recipients_of(&server.received());
    rcpts.sort();
    assert_eq!(rcpts, expected_recipients());
    assert!(front.handshakes() >= 1);
    assert_eq!(front.handshakes(), server.connections_accepted());
}

#[test]
fn implicit_tls_delivers_to_a_relay_signed_by_a_private_ca() {
    let server = SmtpServer::start(Faults::default());
    let front = TlsFront::implicit(&server);
    delivers_through(&server, &front, "tls");
}

#[test]
fn starttls_delivers_to_a_relay_signed_by_a_private_ca() {
    let server = SmtpServer::start(Faults::default());
    let front = TlsFront::starttls(&server);
    delivers_through(&server, &front, "starttls");
    // The EHLO after the handshake reached the backend, so the session really went on in TLS.
    assert!(server
        .commands()
        .iter()
        .any(|c| c.eq_ignore_ascii_case("EHLO feedpost.test")));
}

#[test]
fn an_untrusted_certificate_is_a_clear_error_and_sends_nothing() {
    for (security, front) in [
        ("tls", TlsFront::implicit as fn(&SmtpServer) -> TlsFront),
        ("starttls", TlsFront::starttls),
    ] {
        let server = SmtpServer::start(Faults::default());
        let front = front(&server);
        let site = site(front.port(), security, "");
        let out = site.run(&["publish"]).failure();
        assert!(
            out.stderr.contains("certificate is not trusted")
                && out.stderr.contains("smtp.ca_file"),
            "{security}: {}",
            out.stderr
        );
        assert_eq!(server.received_count(), 0, "{security}");
        assert_eq!(front.handshakes(), 0, "{security}");
        // Nothing was marked sent: the recipients are all still queued.
        let status = site.run(&["status"]).success();
        assert!(
            status.stdout.contains("sent 0  queued 5  sending 0"),
            "{}",
            status.stdout
        );
    }
}

#[test]
fn a_missing_ca_file_names_the_file() {
    let server = SmtpServer::start(Faults::default());
    let site = site(server.port(), "tls", "ca_file = \"no-such-ca.pem\"");
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr.contains("smtp.ca_file") && out.stderr.contains("no-such-ca.pem"),
        "{}",
        out.stderr
    );
    assert_eq!(server.connections_accepted(), 0);
}
