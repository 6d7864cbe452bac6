//! Readers who join and leave by themselves, end to end: `feedpost serve` over real HTTP, the
//! confirmation and the issues received by the loopback SMTP server, `publish` and the
//! `subscribers` commands run as the real binary against the real ledger.

use std::time::Duration;

use crate::serve::{confirm_link, post_form, site, subscriber, Server};
use crate::support::smtp_server::{header, Faults, Received, SmtpServer};
use crate::support::Site;

const NEWER: &str = "2024-03-08-weekly.md"; // tags Seata, MOSN
const OLDER: &str = "2024-03-01-weekly.md"; // tag mosn

/// Publishes the issue file `name` of `site`, expecting success.
fn publish(site: &Site, name: &str) -> String {
    let file = site.path().join("issues").join(name);
    site.run(&["publish", file.to_str().unwrap()])
        .success()
        .stdout
}

/// The lowercased recipients of `messages`, sorted.
fn recipients(messages: &[Received]) -> Vec<String> {
    let mut to: Vec<String> = messages
        .iter()
        .map(|m| m.rcpt_to[0].to_lowercase())
        .collect();
    to.sort();
    to
}

/// The one-click URL of a received message's `List-Unsubscribe` header (RFC 8058).
fn one_click(message: &Received) -> String {
    let list = header(&message.data, "List-Unsubscribe").expect("a List-Unsubscribe header");
    assert_eq!(
        header(&message.data, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    list.split(['<', '>'])
        .find(|part| part.starts_with("http://localhost/unsubscribe?token="))
        .unwrap_or_else(|| panic!("no one-click URL in {list}"))
        .to_string()
}

/// subscribe → the confirmation arrives → confirm → the next publish reaches the reader → the
/// one-click POST from that message's List-Unsubscribe → the next publish skips the reader;
/// with `also_in_file`, the address is in subscribers.toml all along.
fn join_receive_leave(also_in_file: bool) {
    let smtp = SmtpServer::start(Faults::default());
    let mut file = "[[subscribers]]\nemail = \"other@example.org\"\n".to_string();
    if also_in_file {
        // No topics: the file alone would send the reader every issue.
        file += "\n[[subscribers]]\nemail = \"reader@example.org\"\n";
    }
    let site = site(Some(&smtp), "").subscribers(&file);
    let server = Server::start(&site);

    let answer = post_form(
        &format!("{}/subscribe", server.base),
        &[("email", "Reader@Example.org"), ("topics", "MOSN")],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        smtp.wait_for(1, Duration::from_secs(20)),
        "no confirmation email"
    );
    let confirmation = smtp.received().remove(0);
    assert_eq!(confirmation.rcpt_to, ["Reader@Example.org"]);
    let confirmed = crate::serve::get(&server.local(&confirm_link(&confirmation.data)));
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap().0,
        "confirmed"
    );

    // The next publish reaches the reader, once, whether or not the file lists it too.
    let out = publish(&site, NEWER);
    assert!(out.contains("sent 2,"), "{out}");
    let issue_mail = smtp.received()[1..].to_vec();
    assert_eq!(
        recipients(&issue_mail),
        ["other@example.org", "reader@example.org"]
    );
    let to_reader = issue_mail
        .iter()
        .find(|m| m.rcpt_to[0].eq_ignore_ascii_case("reader@example.org"))
        .unwrap();

    // The one-click POST taken from that message.
    let done = post_form(
        &server.local(&one_click(to_reader)),
        &[("List-Unsubscribe", "One-Click")],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap().0,
        "unsubscribed"
    );

    // The next issue (tag mosn: the reader's topic MOSN wants it) skips the reader.
    let out = publish(&site, OLDER);
    assert!(out.contains("sent 1,"), "{out}");
    assert_eq!(recipients(&smtp.received()[3..]), ["other@example.org"]);
    let listed = site.run(&["subscribers", "list"]).success().stdout;
    assert!(
        listed.contains("Reader@Example.org\tunsubscribed\tweb\t\tMOSN\n"),
        "{listed}"
    );
    let (code, log) = server.stop();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_reader_joins_on_the_web_receives_the_next_issue_and_leaves_by_one_click() {
    join_receive_leave(false);
}

#[test]
fn a_one_click_unsubscribe_holds_though_the_address_stays_in_subscribers_toml() {
    join_receive_leave(true);
}

#[test]
fn topics_choose_the_issues_of_readers_added_imported_and_listed() {
    let smtp = SmtpServer::start(Faults::default());
    let site = site(Some(&smtp), "")
        .subscribers("[[subscribers]]\nemail = \"file-seata@example.org\"\ntopics = [\"SEATA\"]\n");
    site.run(&["subscribers", "add", "all@example.org"])
        .success();
    site.run(&[
        "subscribers",
        "add",
        "seata@example.org",
        "--topic",
        "seata",
    ])
    .success();
    site.write(
        "in.csv",
        "email,name,topics\nmosn@example.org,M,MOSN\nboth@example.org,,Nacos; MOSN\n",
    );
    let csv = site.path().join("in.csv");
    site.run(&["subscribers", "import", csv.to_str().unwrap()])
        .success()
        .stderr_contains(&format!(
            "{}:3: the topic `Nacos` is none of the site's categories or tags",
            csv.display()
        ))
        .stderr_lacks("`MOSN` is none");

    // The older issue is tagged `mosn` only.
    publish(&site, OLDER);
    assert_eq!(
        recipients(&smtp.received()),
        ["all@example.org", "both@example.org", "mosn@example.org"]
    );
    // The newer one, `Seata` and `MOSN`: every reader.
    publish(&site, NEWER);
    assert_eq!(
        recipients(&smtp.received()[3..]),
        [
            "all@example.org",
            "both@example.org",
            "file-seata@example.org",
            "mosn@example.org",
            "seata@example.org"
        ]
    );
}

#[test]
fn add_remove_import_and_export_round_trip_and_a_bad_row_is_reported_and_skipped() {
    let site = site(None, "")
        .subscribers("[[subscribers]]\nemail = \"file@example.org\"\nname = \"File\"\n");
    site.run(&[
        "subscribers",
        "add",
        "Ada@Example.org",
        "--name",
        "Ada Lovelace",
        "--topic",
        "MOSN",
        "--topic",
        "Seata",
    ])
    .success()
    .stdout_is("added Ada@Example.org\n");
    site.write(
        "in.csv",
        "email,name,topics\n\"lin@example.org\",\"Lin, Bo\",Seata\nnot-an-address,X,\nzhang@例子.example,张,\n",
    );
    let csv = site.path().join("in.csv");
    let out = site
        .cmd(&["subscribers", "import", csv.to_str().unwrap()])
        .run()
        .code(1);
    out.stdout_contains("2 new, 0 updated; skipped 1 bad row and 0 unsubscribed");
    out.stderr_contains(&format!(
        "error: {}:3: `not-an-address` is not a valid e-mail address",
        csv.display()
    ));

    let listed: serde_json::Value = serde_json::from_str(
        &site
            .run(&["subscribers", "list", "--json"])
            .success()
            .stdout,
    )
    .unwrap();
    let emails: Vec<&str> = listed["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [
            "Ada@Example.org",
            "file@example.org",
            "lin@example.org",
            "zhang@例子.example"
        ]
    );
    assert_eq!(listed["subscribers"][2]["source"], "import");
    assert_eq!(listed["subscribers"][1]["source"], "file");

    let exported = site.run(&["subscribers", "export"]).success().stdout;
    assert_eq!(
        exported,
        "email,name,topics\nAda@Example.org,Ada Lovelace,MOSN;Seata\nfile@example.org,File,\nlin@example.org,\"Lin, Bo\",Seata\nzhang@例子.example,张,\n"
    );

    // The export read into another site gives the same export.
    let other = site_without_readers();
    other.write("export.csv", &exported);
    let again = other.path().join("export.csv");
    other
        .run(&["subscribers", "import", again.to_str().unwrap()])
        .success()
        .stdout_contains("4 new, 0 updated");
    assert_eq!(
        other.run(&["subscribers", "export"]).success().stdout,
        exported
    );

    // Removing: an added reader goes; a reader of the file is removed in the file.
    site.run(&["subscribers", "remove", "ADA@example.org"])
        .success();
    let out = site
        .cmd(&["subscribers", "remove", "file@example.org"])
        .run()
        .code(1);
    out.stderr_contains(&format!(
        "{}:1: `file@example.org` is listed here",
        site.path().join("subscribers.toml").display()
    ));
    site.cmd(&["subscribers", "remove", "nobody@example.org"])
        .run()
        .code(1)
        .stderr_contains("`nobody@example.org` is not a subscriber");
    let listed = site.run(&["subscribers", "list"]).success().stdout;
    assert!(!listed.contains("Ada@"), "{listed}");
    assert!(
        listed.contains("file@example.org\tconfirmed\tfile\tFile"),
        "{listed}"
    );

    // A bad header stops the import and changes nothing.
    site.write("bad.csv", "mail,name\nnew@example.org,N\n");
    let bad = site.path().join("bad.csv");
    site.cmd(&["subscribers", "import", bad.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_contains("bad.csv:1: unknown column `mail`");
    assert!(!site
        .run(&["subscribers", "list"])
        .success()
        .stdout
        .contains("new@example.org"));
}

fn site_without_readers() -> Site {
    site(None, "")
}

#[test]
fn status_counts_subscribers_by_state() {
    let smtp = SmtpServer::start(Faults::new().reject_rcpt(&["gone@example.org"]));
    let site = site(Some(&smtp), "").subscribers(
        "[[subscribers]]\nemail = \"file@example.org\"\n\n[[subscribers]]\nemail = \"gone@example.org\"\n",
    );
    site.run(&["subscribers", "add", "cli@example.org"])
        .success();
    let server = Server::start(&site);
    // Pending: asked, never confirmed.
    post_form(
        &format!("{}/subscribe", server.base),
        &[("email", "pending@example.org")],
    );
    assert!(smtp.wait_for(1, Duration::from_secs(20)));
    // Unsubscribed: cli@ leaves by the link of the issue it receives.
    let file = site.path().join("issues").join(NEWER);
    site.cmd(&["publish", file.to_str().unwrap()]).run().code(1);
    let to_cli = smtp
        .received()
        .into_iter()
        .find(|m| m.rcpt_to[0] == "cli@example.org")
        .expect("cli@ received the issue");
    let done = post_form(
        &server.local(&one_click(&to_cli)),
        &[("List-Unsubscribe", "One-Click")],
    );
    assert_eq!(done.status, 200);
    drop(server);

    let json: serde_json::Value =
        serde_json::from_str(&site.run(&["status", "--json"]).success().stdout).unwrap();
    assert_eq!(
        json["subscribers"],
        serde_json::json!({"pending": 1, "confirmed": 1, "unsubscribed": 1, "bounced": 1})
    );
    site.run(&["status"])
        .success()
        .stdout_contains("subscribers  confirmed 1  pending 1  unsubscribed 1  bounced 1\n");
}
