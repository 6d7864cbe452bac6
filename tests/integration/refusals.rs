//! Whose problem a refusal is: a reply meant for the message or the sender stops the run,
//! suppresses nobody and leaves everyone queued; the size the server declares is kept before
//! anything is sent; a non-ASCII address the relay cannot take fails alone; a message feedpost
//! builds is never refused for its syntax.

use mail_parser::MessageParser;

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{assert_delivered_once, issue, many_subscribers, readers, Site};

fn site(server: &SmtpServer, subscribers: &str) -> Site {
    Site::new()
        .smtp(server.port(), "concurrency = 3")
        .subscribers(subscribers)
        .weekly(&"本周 **MOSN** 发布，社区问答与活动回顾。\n\n".repeat(40))
}

/// After a run the server stopped: nothing sent, nothing failed, nobody suppressed, everyone
/// queued; the summary line was printed; then, the fault gone, everyone gets it once.
#[track_caller]
fn stopped_and_suppressed_nobody(server: &SmtpServer, site: &Site, out: &crate::support::Output) {
    assert!(
        out.stdout
            .contains("sent 0, already sent 0, skipped 0, failed 0, deferred 0, queued 20"),
        "the summary line is printed: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("nobody was suppressed"),
        "{}",
        out.stderr
    );
    let status = site.status();
    assert_eq!(status["counts"]["queued"], 20, "{status}");
    assert_eq!(status["counts"]["failed"], 0, "{status}");
    let suppressed = site.run(&["subscribers", "suppressed"]).success().stdout;
    assert!(
        suppressed.contains("no suppressed addresses"),
        "{suppressed}"
    );
    server.set_faults(Faults::new());
    site.run(&["publish"]).success();
    assert_eq!(assert_delivered_once(&server.received(), &readers(20)), 0);
}

#[test]
fn a_message_over_the_declared_size_stops_before_anything_is_sent() {
    let server = SmtpServer::start(Faults::new().size_limit(4_000));
    let site = site(&server, &many_subscribers(20));
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr
            .contains("more than the 4000 bytes smtp://127.0.0.1:")
            && out
                .stderr
                .contains("(its `SIZE`, RFC 1870); nothing was sent")
            && out.stderr.contains("message_size_limit"),
        "{}",
        out.stderr
    );
    assert!(
        !server.commands().iter().any(|c| c.starts_with("MAIL")),
        "not a single transaction was opened"
    );
    stopped_and_suppressed_nobody(&server, &site, &out);
    // Every transaction declares its size.
    let mails: Vec<String> = server
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), 20);
    for mail in mails {
        let size: usize = mail
            .split_whitespace()
            .find_map(|p| p.strip_prefix("SIZE="))
            .unwrap_or_else(|| panic!("no SIZE= in {mail}"))
            .parse()
            .unwrap();
        assert!(size > 4_000, "{mail}");
    }
}

#[test]
fn a_message_refused_as_too_large_stops_the_run_and_suppresses_nobody() {
    let server = SmtpServer::start(
        Faults::new().reject_all_data("552 5.3.4 Message size exceeds fixed limit"),
    );
    let site = site(&server, &many_subscribers(20));
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr.contains(
            "refuses the message as too large: 552 5.3.4 Message size exceeds fixed limit"
        ) && out.stderr.contains("message_size_limit"),
        "{}",
        out.stderr
    );
    stopped_and_suppressed_nobody(&server, &site, &out);
}

#[test]
fn a_message_refused_as_spam_stops_the_run_and_suppresses_nobody() {
    let server =
        SmtpServer::start(Faults::new().reject_all_data("554 5.7.1 Message refused as spam"));
    let site = site(&server, &many_subscribers(20));
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr
            .contains("refused the message itself: 554 5.7.1 Message refused as spam")
            && out.stderr.contains("SPF, DKIM and DMARC"),
        "{}",
        out.stderr
    );
    stopped_and_suppressed_nobody(&server, &site, &out);
}

#[test]
fn a_relay_denied_stops_the_run_and_suppresses_nobody() {
    let server = SmtpServer::start(
        Faults::new().reject_all_rcpt("554 5.7.1 <reader@example.test>: Relay access denied"),
    );
    let site = site(&server, &many_subscribers(20));
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr.contains("Relay access denied") && out.stderr.contains("authenticate"),
        "{}",
        out.stderr
    );
    stopped_and_suppressed_nobody(&server, &site, &out);
}

#[test]
fn the_same_refusal_to_several_recipients_in_a_row_stops_the_run_and_suppresses_nobody() {
    let server = SmtpServer::start(Faults::new().reject_all_data("554 5.6.0 Message rejected"));
    let site = site(&server, &many_subscribers(20));
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr
            .contains("recipients in a row with the same reply: 554 5.6.0 Message rejected"),
        "{}",
        out.stderr
    );
    stopped_and_suppressed_nobody(&server, &site, &out);
}

#[test]
fn a_non_ascii_address_fails_alone_when_the_relay_lacks_smtputf8_and_idn_domains_go_as_a_labels() {
    let mut list = many_subscribers(3);
    list.push_str("[[subscribers]]\nemail = \"用户@example.org\"\n\n");
    list.push_str("[[subscribers]]\nemail = \"Leser@Bücher.example\"\n\n");
    let server = SmtpServer::start(Faults::new().no_smtputf8());
    let site = site(&server, &list);
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stdout
            .contains("sent 4, already sent 0, skipped 0, failed 1, deferred 0, queued 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let mut expected = readers(3);
    expected.push("Leser@xn--bcher-kva.example".into());
    assert_eq!(assert_delivered_once(&server.received(), &expected), 0);
    assert!(
        !server.commands().iter().any(|c| c.contains("SMTPUTF8")),
        "SMTPUTF8 is never sent to a server that does not offer it"
    );
    let status = site.status();
    assert_eq!(status["counts"]["failed"], 1, "{status}");
    let problem = &status["problems"][0];
    assert_eq!(problem["recipient"], "用户@example.org");
    let reply = problem["last_reply"].as_str().unwrap();
    assert!(
        reply.contains("needs SMTPUTF8 (RFC 6531)") && reply.contains("not suppressed"),
        "{reply}"
    );
    let suppressed = site.run(&["subscribers", "suppressed"]).success().stdout;
    assert!(
        suppressed.contains("no suppressed addresses"),
        "{suppressed}"
    );

    // A relay that offers SMTPUTF8 takes the next issue for every reader.
    let utf8 = SmtpServer::start(Faults::new());
    let site = site.smtp(utf8.port(), "concurrency = 3").issue(
        "2024-03-15-weekly.md",
        &issue(
            "第 9 期",
            "2024-03-15T15:00:00+08:00",
            &["SOFA Weekly"],
            "下期。\n",
        ),
    );
    site.run(&["publish"]).success();
    expected.push("用户@example.org".into());
    assert_eq!(assert_delivered_once(&utf8.received(), &expected), 0);
    let mails: Vec<String> = utf8
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL"))
        .collect();
    assert_eq!(
        mails.iter().filter(|c| c.contains("SMTPUTF8")).count(),
        1,
        "{mails:?}"
    );
}

#[test]
fn a_subscriber_name_of_a_thousand_characters_is_delivered_in_lines_the_server_takes() {
    let long = "Lovelace".repeat(125);
    let list = format!(
        "{}[[subscribers]]\nemail = \"ada@example.org\"\nname = \"{long}\"\n",
        many_subscribers(2)
    );
    // The test server refuses a message with a line over 1,000 octets (RFC 5321 §4.5.3.1.6).
    let server = SmtpServer::start(Faults::new());
    let site = site(&server, &list);
    site.run(&["publish"]).success();
    let mut expected = readers(2);
    expected.push("ada@example.org".into());
    assert_eq!(assert_delivered_once(&server.received(), &expected), 0);
    let ada = server
        .received()
        .into_iter()
        .find(|m| m.rcpt_to == ["ada@example.org"])
        .unwrap();
    let msg = MessageParser::default().parse(&ada.data).unwrap();
    let to = msg.to().unwrap().first().unwrap();
    assert_eq!(to.name(), Some(long.as_str()));
    let status = site.status();
    assert_eq!(status["counts"]["sent"], 3, "{status}");
    assert!(site
        .run(&["subscribers", "suppressed"])
        .success()
        .stdout
        .contains("no suppressed addresses"));
}
