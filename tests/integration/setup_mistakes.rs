//! What a new editor meets first: outbox files named after their recipients, and the wrong
//! `smtp.security` for a port explained in terms of the config.

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::tls_front::TlsFront;
use crate::support::{issue, Site};

fn weekly(site: Site) -> Site {
    site.issue(
        "2024-03-08-weekly.md",
        &issue(
            "Weekly",
            "2024-03-08T15:00:00+08:00",
            &["SOFA Weekly"],
            "w\n",
        ),
    )
}

#[test]
fn outbox_files_are_named_after_the_issue_and_the_recipient() {
    let site = weekly(Site::new().subscribers(
        "[[subscribers]]\nemail = \"Reader@Example.org\"\n\n[[subscribers]]\nemail = \"\\\"odd/name\\\"@example.org\"\n",
    ));
    site.run(&["publish"]).success().stdout_contains("sent 2,");
    let mut names: Vec<String> = std::fs::read_dir(site.path().join("outbox/2024-03-08-weekly"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "2024-03-08-weekly--reader@example.org.eml");
    assert!(
        names[0].starts_with("2024-03-08-weekly--_odd_name_@example.org.")
            && names[0].ends_with(".eml"),
        "{names:?}"
    );
    let eml = site.read(&format!("outbox/2024-03-08-weekly/{}", names[1]));
    assert!(eml.contains("To: Reader@Example.org"), "{eml}");

    // A test send goes into `test/`, named the same way.
    let path = site.path().join("issues/2024-03-08-weekly.md");
    site.run(&["publish", path.to_str().unwrap(), "--to", "me@example.net"])
        .success();
    assert!(site
        .path()
        .join("outbox/2024-03-08-weekly/test/test--me@example.net.eml")
        .is_file());
}

#[test]
fn implicit_tls_against_a_plain_port_says_what_to_change() {
    let server = SmtpServer::start(Faults::default());
    let site = weekly(
        Site::new()
            .smtp(server.port(), "security = \"tls\"")
            .subscribers("[[subscribers]]\nemail = \"reader@example.org\"\n"),
    );
    let out = site.run(&["publish"]).code(2);
    out.stderr_contains(&format!(
        "127.0.0.1:{} answered in plain text, not TLS, so it does not take implicit TLS (`smtp.security = \"tls\"`): set `smtp.security = \"starttls\"`",
        server.port()
    ));
    out.stdout_contains("sent 0, already sent 0, skipped 0, failed 0, deferred 0, queued 1");
    assert_eq!(server.received_count(), 0);
}

#[test]
fn starttls_against_an_implicit_tls_port_says_what_to_change() {
    let server = SmtpServer::start(Faults::default());
    let front = TlsFront::implicit(&server);
    let site = weekly(
        Site::new()
            .smtp(
                front.port(),
                "security = \"starttls\"\ntimeout_secs = 1\nmax_attempts = 1",
            )
            .subscribers("[[subscribers]]\nemail = \"reader@example.org\"\n"),
    );
    let out = site.run(&["publish"]).failure();
    out.stderr_contains(&format!(
        "127.0.0.1:{} sent no greeting in 1 s (`smtp.timeout_secs`); a port with implicit TLS waits for the TLS handshake instead: if this is one (465 usually), set `smtp.security = \"tls\"`",
        front.port()
    ));
    assert_eq!(server.received_count(), 0);
}

#[test]
fn starttls_against_a_plain_server_without_it_says_what_to_check() {
    let server = SmtpServer::start(Faults::default());
    let site = weekly(
        Site::new()
            .smtp(server.port(), "security = \"starttls\"")
            .subscribers("[[subscribers]]\nemail = \"reader@example.org\"\n"),
    );
    let out = site.run(&["publish"]).code(2);
    out.stderr_contains(&format!(
        "127.0.0.1:{} does not offer STARTTLS (`smtp.security = \"starttls\"`), so it takes no encryption after a plain greeting: check `smtp.host` and `smtp.port`",
        server.port()
    ));
    assert_eq!(server.received_count(), 0);
}
