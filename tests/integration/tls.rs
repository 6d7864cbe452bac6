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

#[test]
fn clear_text_credentials_to_another_host_are_refused_at_load() {
    let server = SmtpServer::start(Faults::default());
    // A relay off this machine, with a user and no TLS: refused before anything happens.
    let remote = site(server.port(), "none", "username = \"weekly\"")
        .replace_config("host = \"127.0.0.1\"", "host = \"relay.example.org\"")
        .env("FEEDPOST_SMTP_PASSWORD", "secret");
    let line = remote
        .config_text()
        .lines()
        .position(|l| l.starts_with("username"))
        .unwrap()
        + 1;
    let out = remote.run(&["publish"]).failure();
    assert!(
        out.stderr.contains(&format!("feedpost.toml`, line {line}"))
            && out
                .stderr
                .contains("`smtp.username` is set and `smtp.security = \"none\"`")
            && out.stderr.contains("in clear text"),
        "{}",
        out.stderr
    );
    assert!(!remote.ledger().exists(), "nothing was queued");
    // Without credentials, plain SMTP off this machine needs the explicit opt-in.
    let unauthenticated = remote.replace_config("username = \"weekly\"", "");
    let out = unauthenticated.run(&["publish"]).failure();
    assert!(
        out.stderr.contains("smtp.allow_plaintext = true"),
        "{}",
        out.stderr
    );
    assert_eq!(server.connections_accepted(), 0);

    // On this machine, AUTH over plain SMTP is allowed: the loopback server takes the mail.
    let site = site(server.port(), "none", "username = \"weekly\"")
        .env("FEEDPOST_SMTP_PASSWORD", "secret");
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 5);
    assert!(server
        .commands()
        .iter()
        .any(|c| c.starts_with("AUTH PLAIN")));
    assert_eq!(site.status()["counts"]["sent"], 5);
}

fn ehlos(server: &SmtpServer) -> usize {
    server
        .commands()
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("EHLO"))
        .count()
}

#[test]
fn a_session_says_ehlo_once_and_twice_around_starttls() {
    let plain = SmtpServer::start(Faults::default().disconnect_after(2));
    let site = site(plain.port(), "none", "");
    site.run(&["publish"]).success();
    assert!(plain.connections_accepted() >= 3);
    assert_eq!(ehlos(&plain), plain.connections_accepted());

    // STARTTLS: one EHLO before the handshake (the front), one after it (the backend).
    let backend = SmtpServer::start(Faults::default());
    let front = TlsFront::starttls(&backend);
    delivers_through(&backend, &front, "starttls");
    assert_eq!(front.plain_ehlos(), front.handshakes());
    assert_eq!(ehlos(&backend), backend.connections_accepted());
}

#[test]
fn a_self_signed_ca_certificate_given_in_ca_file_or_pinned_is_trusted() {
    for starttls in [true, false] {
        let security = if starttls { "starttls" } else { "tls" };
        let server = SmtpServer::start(Faults::default());
        let front = TlsFront::self_signed(&server, starttls);
        // Not configured: refused, with the real cause and both ways to trust it.
        let out = site(front.port(), security, "").run(&["publish"]).failure();
        assert!(
            out.stderr.contains("presents a CA certificate (`CA:TRUE`")
                && out.stderr.contains("`smtp.ca_file`")
                && out.stderr.contains("`smtp.tls_pin_sha256`")
                && out.stderr.contains(&front.fingerprint()),
            "{security}: {}",
            out.stderr
        );
        assert!(
            out.stdout
                .contains("sent 0, already sent 0, skipped 0, failed 0, deferred 0, queued 5"),
            "{security}: the summary line is printed: {}",
            out.stdout
        );
        assert_eq!(server.received_count(), 0);
        // Given as `ca_file`: trusted as it is, though it is a CA and names no host.
        delivers_through(&server, &front, security);

        // Pinned by its SHA-256 instead: trusted; another pin: refused, naming both.
        let server = SmtpServer::start(Faults::default());
        let front = TlsFront::self_signed(&server, starttls);
        let pinned = site(
            front.port(),
            security,
            &format!("tls_pin_sha256 = \"{}\"", front.fingerprint()),
        );
        pinned.run(&["publish"]).success();
        assert_eq!(server.received_count(), 5, "{security}");
        assert_eq!(pinned.status()["counts"]["sent"], 5);
        let wrong = pinned.replace_config(&front.fingerprint(), &"00".repeat(32));
        std::fs::remove_file(wrong.ledger()).unwrap();
        let out = wrong.run(&["publish"]).failure();
        assert!(
            out.stderr
                .contains("not the one pinned by `smtp.tls_pin_sha256`")
                && out.stderr.contains(&front.fingerprint()),
            "{security}: {}",
            out.stderr
        );
        assert_eq!(server.received_count(), 5, "{security}");
    }
}
