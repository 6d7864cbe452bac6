//! `feedpost publish ISSUE --to ADDRESS`: one real copy, as that reader would get it, over the
//! configured transport — recorded nowhere and counted nowhere.

use mail_parser::MessageParser;

use crate::support::smtp_server::{header, Faults, SmtpServer};
use crate::support::{issue, many_subscribers, reader, readers, Site};

const ISSUE: &str = "2024-03-08-weekly.md";

fn site() -> Site {
    Site::new()
        .subscribers(&many_subscribers(3))
        .issue(
            ISSUE,
            &issue(
                "SOFA Weekly | 第 8 期",
                "2024-03-08T15:00:00+08:00",
                &["SOFA Weekly"],
                "短讯。\n",
            ),
        )
        .issue(
            "draft.md",
            "---\ntitle: \"Draft\"\ndate: 2999-01-01T00:00:00+08:00\ndraft: true\n---\nSoon.\n",
        )
}

fn file(site: &Site, name: &str) -> String {
    site.path()
        .join("issues")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_test_send_mails_one_copy_records_nothing_and_the_publish_still_mails_everyone() {
    let server = SmtpServer::start(Faults::new());
    let site = site().smtp(server.port(), "");
    let issue = file(&site, ISSUE);
    let to = reader(1).to_uppercase();
    let out = site.run(&["publish", &issue, "--to", &to]).success();
    out.stdout_contains("test copy of `SOFA Weekly | 第 8 期` sent to 读者 1 <")
        .stdout_contains("(recorded nowhere)");
    let received = server.received();
    assert_eq!(received.len(), 1);
    let copy = &received[0];
    assert_eq!(copy.rcpt_to, std::slice::from_ref(&to));
    let message_id = header(&copy.data, "Message-ID").unwrap();
    assert!(message_id.starts_with("<test."), "{message_id}");
    let parsed = MessageParser::default().parse(&copy.data).unwrap();
    assert_eq!(parsed.subject(), Some("SOFA Weekly | 第 8 期"));
    assert!(
        parsed.body_text(0).unwrap().contains("读者 1，你好！"),
        "the listed reader's name"
    );
    assert!(!site.ledger().exists(), "recorded nowhere");
    assert!(!site.path().join("feeds").exists(), "nothing built");

    // The publish is untouched by it: every reader, that one too, under its own Message-ID.
    site.run(&["publish", &issue])
        .success()
        .stdout_contains("sent 3, already sent 0");
    let received = server.received();
    assert_eq!(received.len(), 4);
    let real: Vec<_> = received[1..]
        .iter()
        .filter(|m| m.rcpt_to[0].eq_ignore_ascii_case(&reader(1)))
        .collect();
    assert_eq!(real.len(), 1);
    assert_ne!(header(&real[0].data, "Message-ID").unwrap(), message_id);
    let mut to: Vec<String> = received[1..]
        .iter()
        .map(|m| m.rcpt_to[0].to_lowercase())
        .collect();
    to.sort();
    assert_eq!(to, readers(3));
}

#[test]
fn a_draft_dated_later_can_be_test_sent_to_an_unlisted_address() {
    let server = SmtpServer::start(Faults::new());
    let site = site().smtp(server.port(), "");
    let draft = file(&site, "draft.md");
    site.run(&["publish", &draft, "--to", "editor@example.org"])
        .success();
    let received = server.received();
    assert_eq!(received.len(), 1);
    let parsed = MessageParser::default().parse(&received[0].data).unwrap();
    assert!(parsed.body_text(0).unwrap().contains("你好！"));
    // It is still a draft for publish.
    site.run(&["publish", &draft])
        .code(2)
        .stderr_contains("is a draft");
}

#[test]
fn a_test_send_to_the_outbox_writes_one_file_beside_the_rehearsal() {
    let site = site();
    let issue = file(&site, ISSUE);
    site.run(&["publish", &issue, "--to", "editor@example.org"])
        .success()
        .stdout_contains("via outbox");
    let dir = site.path().join("outbox/2024-03-08-weekly/test");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    assert!(!site.ledger().exists());
}

#[test]
fn a_test_send_refuses_a_bad_address_and_a_refused_one_is_an_error() {
    let server = SmtpServer::start(Faults::new().reject_rcpt(&["gone@example.org"]));
    let site = site().smtp(server.port(), "");
    let issue = file(&site, ISSUE);
    site.run(&["publish", &issue, "--to", "not an address"])
        .code(2)
        .stderr_contains("`not an address` is not a valid e-mail address");
    site.run(&["publish", &issue, "--to", "gone@example.org"])
        .code(2)
        .stderr_contains("the test copy to gone@example.org was not sent")
        .stderr_contains("550 5.1.1 User unknown");
    site.run(&["publish", &issue, "--to", "a@example.org", "--dry-run"])
        .code(2)
        .stderr_contains("cannot be used with");
    assert_eq!(server.received_count(), 0);
    assert!(!site.ledger().exists());
}
