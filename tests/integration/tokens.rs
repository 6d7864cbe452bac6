//! Unsubscribe tokens are signed with `FEEDPOST_SECRET`, never with anything kept in the ledger:
//! mail that carries them needs the secret, and is refused with how to make one without it; a
//! dry run, an outbox rehearsal and a preview do not need it.

use feedpost::subscribers::token::{self, Secret};

use crate::support::smtp_server::{header, Faults, SmtpServer};
use crate::support::{issue, many_subscribers, reader, Site, TEST_SECRET};

fn secret() -> Secret {
    Secret::new(TEST_SECRET.as_bytes().to_vec()).unwrap()
}

fn site(port: u16) -> Site {
    Site::new()
        .smtp(port, "concurrency = 2")
        .subscribers(&many_subscribers(2))
        .weekly("短讯。\n")
}

#[test]
fn mail_with_tokens_needs_the_secret_and_is_refused_without_it_saying_how_to_make_one() {
    let server = SmtpServer::start(Faults::new());
    let site = site(server.port());
    let out = site
        .cmd(&["publish"])
        .env_remove("FEEDPOST_SECRET")
        .run()
        .code(2);
    out.stderr_contains("FEEDPOST_SECRET is not set")
        .stderr_contains("openssl rand -base64 48");
    let out = site
        .cmd(&["publish"])
        .env("FEEDPOST_SECRET", "too-short")
        .run()
        .code(2);
    out.stderr_contains("FEEDPOST_SECRET is 9 bytes long; at least 32 are needed")
        .stderr_lacks("too-short");
    assert_eq!(server.connections_accepted(), 0, "nothing was sent");
    assert!(
        !site.path().join("feeds/rss.xml").exists(),
        "nothing was built"
    );

    // A dry run needs no secret.
    site.cmd(&["publish", "--dry-run"])
        .env_remove("FEEDPOST_SECRET")
        .run()
        .success()
        .stdout_contains("would go to 2 recipients");

    site.run(&["publish"]).success();
    let received = server.received();
    assert_eq!(received.len(), 2);
    for m in &received {
        let key = m.rcpt_to[0].to_lowercase();
        let token = token::unsubscribe_token(&secret(), &key);
        let list = header(&m.data, "List-Unsubscribe").unwrap();
        assert!(
            list.contains(&format!("unsubscribe?token={token}>")),
            "{key}: {list}"
        );
    }
}

#[test]
fn the_secret_does_not_live_in_the_ledger() {
    let server = SmtpServer::start(Faults::new());
    let site = site(server.port());
    site.run(&["publish"]).success();
    let ledger = std::fs::read(site.ledger()).unwrap();
    assert!(
        !ledger
            .windows(b"unsubscribe_secret".len())
            .any(|w| w == b"unsubscribe_secret"),
        "the ledger holds no secret"
    );
}

#[test]
fn a_rehearsal_and_a_preview_use_a_placeholder_token_and_say_so() {
    let site = Site::new().subscribers(&many_subscribers(1)).issue(
        "2024-03-08-weekly.md",
        &issue("B", "2024-03-08T15:00:00+08:00", &["MOSN"], "b\n"),
    );
    site.cmd(&["publish"])
        .env_remove("FEEDPOST_SECRET")
        .run()
        .success()
        .stderr_contains("placeholder token");
    let file = site.path().join("issues/2024-03-08-weekly.md");
    let out_dir = site.path().join("preview");
    let out = site
        .cmd(&[
            "preview",
            file.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--no-screenshots",
        ])
        .env("FEEDPOST_SECRET", TEST_SECRET)
        .run()
        .success();
    out.stderr_contains("placeholder token");
    let eml = site.read("preview/2024-03-08-weekly.eml");
    let real = token::unsubscribe_token(&secret(), &reader(0));
    assert!(!eml.contains(&real), "a preview carries no real token");
}

#[test]
fn with_serve_the_one_click_link_of_a_received_message_unsubscribes_and_the_next_publish_skips() {
    use crate::serve::{post_form, site as serve_site, Server, SECRET};
    let smtp = SmtpServer::start(Faults::new());
    let site = serve_site(Some(&smtp), "").subscribers(&many_subscribers(2));
    let newest = site.path().join("issues/2024-03-08-weekly.md");
    site.run(&["publish", newest.to_str().unwrap()])
        .success()
        .stdout_contains("sent 2,");
    let message = smtp
        .received()
        .into_iter()
        .find(|m| m.rcpt_to[0].eq_ignore_ascii_case(&reader(1)))
        .unwrap();
    let list = header(&message.data, "List-Unsubscribe").unwrap();
    let one_click = list
        .split(['<', '>'])
        .find(|part| part.starts_with("http://localhost/unsubscribe?token="))
        .unwrap_or_else(|| panic!("{list}"));
    let secret = Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    let public = url::Url::parse("http://localhost/").unwrap();
    assert_eq!(
        one_click,
        token::unsubscribe_url(&public, &secret, &reader(1)).as_str()
    );
    assert_eq!(
        header(&message.data, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );

    let server = Server::start(&site);
    let answer = post_form(
        &server.local(one_click),
        &[("List-Unsubscribe", "One-Click")],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    drop(server);
    let older = site.path().join("issues/2024-03-01-weekly.md");
    site.run(&["publish", older.to_str().unwrap()])
        .success()
        .stdout_contains("sent 1,");
    let to: Vec<String> = smtp.received()[2..]
        .iter()
        .map(|m| m.rcpt_to[0].to_lowercase())
        .collect();
    assert_eq!(to, [reader(0)]);
}
