//! An issue is one issue: the ledger knows it again under another slug or base URL, a future
//! issue is sent only on purpose and with its page built, and a message sent again after a
//! crash is the same message, byte for byte.

use std::time::Duration;

use crate::support::smtp_server::{header, Faults, Received, SmtpServer};
use crate::support::{assert_delivered_once, issue, many_subscribers, readers, Site};

const BODY: &str = "本周 **MOSN** 发布。\n";

fn weekly(extra_front_matter: &str) -> String {
    issue(
        "SOFA Weekly | 第 8 期",
        "2024-03-08T15:00:00+08:00",
        &["SOFA Weekly"],
        BODY,
    )
    .replacen("---\n", &format!("---\n{extra_front_matter}"), 1)
}

fn site(server: &SmtpServer, n: usize) -> Site {
    Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(&many_subscribers(n))
}

fn guids(server: &SmtpServer) -> Vec<String> {
    let mut g: Vec<String> = server
        .received()
        .iter()
        .map(|m| header(&m.data, "X-Feed-Guid").unwrap())
        .collect();
    g.sort();
    g.dedup();
    g
}

#[test]
fn a_sent_issue_renamed_is_refused_naming_its_earlier_slug_and_the_ways_out() {
    let server = SmtpServer::start(Faults::new());
    let site = site(&server, 4).issue("2024-03-08-weekly.md", &weekly(""));
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 4);

    // Renamed: same title, date and content under another file name, hence another slug.
    std::fs::rename(
        site.path().join("issues/2024-03-08-weekly.md"),
        site.path().join("issues/weekly-8.md"),
    )
    .unwrap();
    let out = site.run(&["publish"]).failure();
    assert!(
        out.stderr
            .contains("looks like the issue already mailed as `2024-03-08-weekly`")
            && out
                .stderr
                .contains("https://www.sofastack.tech/issues/2024-03-08-weekly/: 4 messages sent")
            && out
                .stderr
                .contains("add `slug: 2024-03-08-weekly` to its front matter")
            && out.stderr.contains("feedpost publish --as-new-issue"),
        "{}",
        out.stderr
    );
    assert_eq!(server.received_count(), 4, "nothing was sent");
    let status = site.run(&["status", "--json"]).success().stdout;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        !status["issues"].to_string().contains("weekly-8"),
        "nothing was queued: {status}"
    );

    // Edited a little as well (same title and date): still recognised.
    site.write(
        "issues/weekly-8.md",
        &weekly("").replace("发布", "正式发布"),
    );
    site.run(&["publish"]).failure();
    assert_eq!(server.received_count(), 4);

    // Way out 1: keep the old slug. It is the same issue: nobody gets it twice.
    site.write("issues/weekly-8.md", &weekly("slug: 2024-03-08-weekly\n"));
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 0, already sent 4"),
        "{}",
        out.stdout
    );
    assert_eq!(server.received_count(), 4);

    // Way out 2: on purpose, as a new issue — once; later publishes of it are not refused.
    site.write("issues/weekly-8.md", &weekly(""));
    let path = site.path().join("issues/weekly-8.md");
    let out = site
        .run(&["publish", "--as-new-issue", path.to_str().unwrap()])
        .success();
    assert!(
        out.stdout.contains("sent 4, already sent 0"),
        "{}",
        out.stdout
    );
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 8);
    assert_eq!(
        guids(&server),
        [
            "https://www.sofastack.tech/issues/2024-03-08-weekly/",
            "https://www.sofastack.tech/issues/weekly-8/"
        ]
    );
}

#[test]
fn a_sent_issue_under_a_new_base_url_is_refused_and_the_old_one_restores_it() {
    let server = SmtpServer::start(Faults::new());
    let site = site(&server, 3).issue("2024-03-08-weekly.md", &weekly(""));
    site.run(&["publish"]).success();
    let moved = site.replace_config("https://www.sofastack.tech/", "https://sofastack.example/");
    let out = moved.run(&["publish"]).failure();
    let stderr = out.stderr;
    assert!(
        stderr.contains("already mailed as `2024-03-08-weekly`")
            && stderr.contains("`site.base_url` or `site.permalink_prefix` changed since"),
        "{stderr}"
    );
    assert_eq!(server.received_count(), 3);
    // Back at the old base URL it is the same issue again: nothing to send.
    let site = moved.replace_config("https://sofastack.example/", "https://www.sofastack.tech/");
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 0, already sent 3"),
        "{}",
        out.stdout
    );
    assert_eq!(assert_delivered_once(&server.received(), &readers(3)), 0);
    assert_eq!(site.status()["counts"]["sent"], 3);
}

#[test]
fn a_future_issue_needs_future_and_then_its_page_is_built_before_the_mail() {
    let server = SmtpServer::start(Faults::new());
    let site = site(&server, 2)
        .env("FEEDPOST_NOW", "2024-03-01T00:00:00Z")
        .issue("2024-03-08-weekly.md", &weekly(""))
        .issue(
            "draft.md",
            "---\ntitle: \"Draft\"\ndate: 2024-02-01T15:00:00+08:00\ndraft: true\n---\nd\n",
        );
    let path = site.path().join("issues/2024-03-08-weekly.md");
    let page = site
        .path()
        .join("feeds/issues/2024-03-08-weekly/index.html");
    let out = site.run(&["publish", path.to_str().unwrap()]).failure();
    assert!(
        out.stderr
            .contains("is dated 2024-03-08 07:00:00 UTC, in the future")
            && out.stderr.contains("feedpost publish --future"),
        "{}",
        out.stderr
    );
    assert_eq!(server.connections_accepted(), 0);
    assert!(!page.exists());

    let out = site
        .run(&["publish", "--future", path.to_str().unwrap()])
        .success();
    assert!(out.stdout.contains("sent 2,"), "{}", out.stdout);
    assert!(page.exists(), "the 'view in browser' page exists");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("MOSN"), "{html}");
    let received = server.received();
    assert_eq!(
        header(&received[0].data, "X-Feed-Guid").unwrap(),
        "https://www.sofastack.tech/issues/2024-03-08-weekly/"
    );
    assert_eq!(site.status()["counts"]["sent"], 2);

    // Drafts stay refused, with --future too.
    let draft = site.path().join("issues/draft.md");
    let out = site
        .run(&["publish", "--future", draft.to_str().unwrap()])
        .failure();
    assert!(out.stderr.contains("is a draft"), "{}", out.stderr);
    assert_eq!(server.received_count(), 2);
}

/// Publishes an issue to two readers through a server that takes both messages but answers too
/// late (the run defers them), then retries a day later by the clock with the server answering;
/// returns each reader's two copies, first then second, and the site.
fn sent_again_a_day_later(site: Site) -> (Vec<(String, [Received; 2])>, Site) {
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(2500)));
    let site = site
        .smtp(
            server.port(),
            "concurrency = 2\nmax_attempts = 1\ntimeout_secs = 1",
        )
        .subscribers(&many_subscribers(2))
        .issue("2024-03-08-weekly.md", &weekly(""));
    site.cmd(&["publish"])
        .env("FEEDPOST_NOW", "2024-03-09T08:00:00Z")
        .run()
        .failure();
    assert_eq!(site.status()["counts"]["deferred"], 2);
    server.set_faults(Faults::new());
    let path = site.path().join("issues/2024-03-08-weekly.md");
    site.cmd(&["retry", path.to_str().unwrap()])
        .env("FEEDPOST_NOW", "2024-03-10T08:00:00Z")
        .run()
        .success();
    let received = server.received();
    assert_eq!(received.len(), 4);
    let copies = readers(2)
        .into_iter()
        .map(|to| {
            let copies: Vec<Received> = received
                .iter()
                .filter(|m| m.rcpt_to == [to.clone()])
                .cloned()
                .collect();
            let pair: [Received; 2] = copies
                .try_into()
                .unwrap_or_else(|c: Vec<_>| panic!("{to} got {} copies, not 2", c.len()));
            (to, pair)
        })
        .collect();
    (copies, site)
}

#[test]
fn a_message_sent_again_in_a_later_run_is_byte_for_byte_the_same() {
    // The retry sends both messages again — with the same bytes, Date included.
    let (copies, site) = sent_again_a_day_later(Site::new());
    for (to, [first, second]) in copies {
        assert_eq!(
            header(&first.data, "Date").unwrap(),
            "Sat, 09 Mar 2024 08:00:00 +0000",
            "the Date of the publish start"
        );
        assert!(first.data == second.data, "{to}'s copies differ");
    }
    assert_eq!(site.status()["counts"]["sent"], 2);
}

#[test]
fn a_signed_message_sent_again_in_a_later_run_is_byte_for_byte_the_same() {
    // As above, with DKIM: the signature's `t=` is the publish start, as the `Date` is, so the
    // copy sent again a day later carries the same signature.
    let (copies, _) = sent_again_a_day_later(Site::new().dkim(&crate::dkim::keys()[1].1));
    for (to, [first, second]) in copies {
        let signature = header(&first.data, "DKIM-Signature").expect("signed");
        assert!(signature.contains("t=1709971200;"), "{signature}");
        assert!(first.data == second.data, "{to}'s copies differ");
    }
}
