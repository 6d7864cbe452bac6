//! `feedpost publish`: issues in, one message per eligible subscriber out, exactly once.

use mail_parser::{MessageParser, MimeHeaders};

use crate::support::smtp_server::{header, recipients_of, Faults, SmtpServer};
use crate::support::{issue, Site};

const SUBSCRIBERS: &str = r#"
[[subscribers]]
email = "reader@example.org"
name = "读者"

[[subscribers]]
email = "Ada@Example.org"
name = "Ada Lovelace"
topics = ["MOSN"]

[[subscribers]]
email = "seata-only@example.org"
topics = ["Seata"]

[[subscribers]]
email = "ada@example.org"

[[subscribers]]
email = "not an address"

[[subscribers]]
email = "plain@example.com"
"#;

fn site(server: &SmtpServer) -> Site {
    Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(SUBSCRIBERS)
        .issue(
            "2024-03-01-weekly.md",
            &issue("SOFA Weekly | 旧的一期", "2024-03-01T15:00:00+08:00", &["SOFA Weekly"], "Old issue.\n"),
        )
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "SOFA Weekly | MOSN 发布 & QA",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly", "MOSN"],
                "**1、@张三** 提问：\n\n> MOSN 如何平滑升级？\n\nA：见 [文档](/projects/mosn/upgrade/)。\n\n![架构](/img/arch.png)\n",
            ),
        )
}

#[test]
fn delivers_one_message_per_eligible_subscriber() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server);
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 3, already sent 0, skipped 3, failed 0, deferred 0"),
        "{}",
        out.stdout
    );
    // The bad entry is reported with its file and line, and skipped.
    assert!(
        out.stderr
            .contains("subscribers.toml:18: `not an address` is not a valid e-mail address"),
        "{}",
        out.stderr
    );

    let received = server.received();
    let mut rcpts = recipients_of(&received);
    rcpts.sort();
    // Topic filter drops seata-only; the case-variant duplicate of Ada gets one message.
    assert_eq!(
        rcpts,
        ["ada@example.org", "plain@example.com", "reader@example.org"]
    );
    for m in &received {
        assert_eq!(m.mail_from, "weekly@example.org");
        assert!(!m.reply_lost);
    }

    let reader = received
        .iter()
        .find(|m| m.rcpt_to == ["reader@example.org"])
        .expect("reader's message");
    let msg = MessageParser::default()
        .parse(&reader.data)
        .expect("valid RFC 5322 message");
    assert_eq!(msg.subject(), Some("SOFA Weekly | MOSN 发布 & QA"));
    let raw_subject = header(&reader.data, "Subject").unwrap();
    assert!(
        raw_subject.is_ascii() && raw_subject.contains("=?utf-8?b?"),
        "non-ASCII subject must be RFC 2047 encoded: {raw_subject}"
    );
    assert_eq!(
        header(&reader.data, "From").unwrap(),
        "\"SOFA Weekly\" <weekly@example.org>"
    );
    assert!(header(&reader.data, "To")
        .unwrap()
        .contains("<reader@example.org>"));
    assert!(header(&reader.data, "Date").is_some());
    let message_id = header(&reader.data, "Message-ID").unwrap();
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@example.org>"),
        "{message_id}"
    );
    assert_eq!(
        header(&reader.data, "List-Id").unwrap(),
        "<newsletter.example.org>"
    );
    let list_unsubscribe = header(&reader.data, "List-Unsubscribe").unwrap();
    assert!(
        list_unsubscribe.starts_with("<https://www.sofastack.tech/unsubscribe?token="),
        "{list_unsubscribe}"
    );
    assert!(
        list_unsubscribe.ends_with("<mailto:unsubscribe@example.org?subject=unsubscribe>"),
        "{list_unsubscribe}"
    );
    assert_eq!(
        header(&reader.data, "List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(
        header(&reader.data, "X-Feed-Guid").unwrap(),
        "https://www.sofastack.tech/issues/2024-03-08-weekly/"
    );

    // multipart/alternative: text first, then HTML.
    let ct = msg.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    let text = msg.body_text(0).unwrap();
    let html = msg.body_html(0).unwrap();
    assert!(
        text.contains("读者，你好！"),
        "greeting with the name:\n{text}"
    );
    assert!(html.contains("读者，你好！"));
    assert!(html.contains("MOSN 如何平滑升级？"));
    // Relative links and images made absolute, cover image shown, CSS inlined.
    assert!(html.contains("https://www.sofastack.tech/projects/mosn/upgrade/"));
    assert!(html.contains("https://www.sofastack.tech/img/arch.png"));
    assert!(html.contains("https://cdn.example.org/cover.png"));
    assert!(html.contains("style=\""), "CSS must be inlined");
    // The one <style> block holds only what cannot be inlined (small screens, dark mode).
    assert_eq!(html.matches("<style").count(), 1);
    assert!(html.contains("@media (prefers-color-scheme: dark)"));
    // A visible unsubscribe link carrying this recipient's token.
    let token = list_unsubscribe
        .split("token=")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap();
    assert!(
        html.contains(&format!("unsubscribe?token={token}")),
        "HTML body lacks the unsubscribe link"
    );
    assert!(
        text.contains(&format!("unsubscribe?token={token}")),
        "text body lacks the unsubscribe link"
    );

    // Ada has a name and subscribed twice (case variants): one message, to the first spelling.
    let ada = received
        .iter()
        .find(|m| m.rcpt_to[0].eq_ignore_ascii_case("ada@example.org"))
        .unwrap();
    let ada_msg = MessageParser::default().parse(&ada.data).unwrap();
    assert!(ada_msg
        .body_text(0)
        .unwrap()
        .contains("Ada Lovelace，你好！"));
    let ada_token = header(&ada.data, "List-Unsubscribe").unwrap();
    assert_ne!(ada_token, list_unsubscribe, "tokens are per recipient");
    // Message-IDs are unique.
    let mut ids: Vec<String> = received
        .iter()
        .map(|m| header(&m.data, "Message-ID").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[test]
fn a_second_publish_sends_nothing_and_a_new_subscriber_gets_only_this_issue() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server);
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 3);

    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 0, already sent 3"),
        "{}",
        out.stdout
    );
    assert_eq!(
        server.received_count(),
        3,
        "the second publish must send nothing"
    );

    let site = site.subscribers(&format!(
        "{SUBSCRIBERS}\n[[subscribers]]\nemail = \"late@example.org\"\n"
    ));
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 1, already sent 3"),
        "{}",
        out.stdout
    );
    let received = server.received();
    assert_eq!(received.len(), 4);
    let late: Vec<_> = received
        .iter()
        .filter(|m| m.rcpt_to == ["late@example.org"])
        .collect();
    assert_eq!(
        late.len(),
        1,
        "the late subscriber gets exactly the issue being published"
    );
    assert!(header(&late[0].data, "X-Feed-Guid")
        .unwrap()
        .ends_with("/2024-03-08-weekly/"));
}

#[test]
fn publishing_an_older_issue_by_path_sends_that_issue() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server);
    let path = site.path().join("issues/2024-03-01-weekly.md");
    site.run(&["publish", path.to_str().unwrap()]).success();
    let received = server.received();
    // The older issue is tagged only "SOFA Weekly": Ada (MOSN only) and seata-only skip it.
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| header(&m.data, "X-Feed-Guid")
        .unwrap()
        .ends_with("/2024-03-01-weekly/")));
}

#[test]
fn a_broken_issue_stops_the_publish_and_sends_nothing() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server).issue(
        "2024-03-09-broken.md",
        "---\ntitle: \"Broken\"\ndate: 2024-03-09T15:00:00+08:00\ntags: [\"unclosed\"\n",
    );
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr.contains("2024-03-09-broken.md:1: the front matter opened here is never closed: add a `---` line after it"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Nothing was sent"), "{}", out.stderr);
    // Any connection the process made before it exited is accepted (and counted) by now.
    server.barrier();
    assert_eq!(server.received_count(), 0);
    assert_eq!(server.connections_accepted(), 0);
}

#[test]
fn a_bad_date_names_the_line_and_how_to_fix_it() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server).issue(
        "bad-date.md",
        "---\ntitle: \"x\"\n\ndate: next friday\n---\nbody\n",
    );
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr.contains("bad-date.md:4: cannot read the date `next friday`: write it as `YYYY-MM-DD`, or RFC 3339 with an offset, e.g. `2020-05-15T17:00:00+08:00`"),
        "{}",
        out.stderr
    );
    assert_eq!(server.received_count(), 0);
}

#[test]
fn dry_run_sends_and_writes_nothing() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server);
    let out = site.run(&["publish", "--dry-run"]).success();
    assert!(
        out.stdout.contains("would go to 3 recipients"),
        "{}",
        out.stdout
    );
    assert_eq!(server.connections_accepted(), 0);
    assert!(!site.ledger().exists());
    assert!(!site.path().join("feeds/rss.xml").exists());
}

#[test]
fn an_unreachable_server_is_a_clear_error_and_marks_nothing_sent() {
    let port = SmtpServer::not_listening();
    let site = Site::new().smtp(port, "").subscribers(SUBSCRIBERS).issue(
        "a.md",
        &issue("A", "2024-03-01T15:00:00+08:00", &["SOFA Weekly"], "a\n"),
    );
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    let status = site.run(&["status", "--json"]).success();
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["issues"][0]["counts"]["sent"], 0);
    assert_eq!(json["issues"][0]["counts"]["queued"], 2);

    // Once the server is up, the same publish delivers.
    let server = SmtpServer::start(Faults::default());
    let site = site.smtp(server.port(), "");
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 2);
}

#[test]
fn without_smtp_messages_go_to_the_outbox() {
    let site = Site::new().subscribers(SUBSCRIBERS).issue(
        "2024-03-08-weekly.md",
        &issue("B", "2024-03-08T15:00:00+08:00", &["MOSN"], "b\n"),
    );
    let out = site.run(&["publish"]).success();
    assert!(out.stdout.contains("sent 3,"), "{}", out.stdout);
    let files: Vec<_> = std::fs::read_dir(site.path().join("outbox/2024-03-08-weekly"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("B"));
    }
    site.run(&["publish"]).success();
    assert_eq!(
        std::fs::read_dir(site.path().join("outbox/2024-03-08-weekly"))
            .unwrap()
            .count(),
        3
    );
}

#[test]
fn drafts_and_future_issues_are_not_published_by_default() {
    let server = SmtpServer::start(Faults::default());
    let site = site(&server)
        .issue(
            "draft.md",
            "---\ntitle: \"Draft\"\ndate: 2024-03-20T15:00:00+08:00\ndraft: true\n---\nd\n",
        )
        .issue(
            "future.md",
            &issue(
                "Future",
                "2999-01-01T00:00:00+08:00",
                &["SOFA Weekly"],
                "f\n",
            ),
        );
    site.run(&["publish"]).success();
    let received = server.received();
    assert!(received.iter().all(|m| header(&m.data, "X-Feed-Guid")
        .unwrap()
        .ends_with("/2024-03-08-weekly/")));
    let draft = site.path().join("issues/draft.md");
    let out = site.run(&["publish", draft.to_str().unwrap()]).failure();
    assert!(
        out.stderr.contains("is a draft: set `draft: false`"),
        "{}",
        out.stderr
    );
}
