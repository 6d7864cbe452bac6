//! The outbox is a rehearsal: its files never count as mail sent. Switching a site from the
//! outbox to SMTP mails the issue to every eligible reader, and `status` shows the two apart.
//! Outbox files appear whole or not at all.

use mail_parser::MessageParser;

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{assert_delivered_once, issue, many_subscribers, readers, Site};

const ISSUE: &str = "2024-03-08-weekly.md";
const PERMALINK: &str = "https://www.sofastack.tech/issues/2024-03-08-weekly/";

fn site(n: usize, body: &str) -> Site {
    Site::new().subscribers(&many_subscribers(n)).issue(
        ISSUE,
        &issue(
            "SOFA Weekly | 第 8 期",
            "2024-03-08T15:00:00+08:00",
            &["SOFA Weekly"],
            body,
        ),
    )
}

fn outbox_files(site: &Site) -> Vec<std::path::PathBuf> {
    let dir = site.path().join("outbox/2024-03-08-weekly");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn publishing_by_smtp_after_an_outbox_rehearsal_mails_everyone_and_status_shows_both() {
    let site = site(5, "短讯。\n");
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout
            .starts_with("outbox (a rehearsal, nothing mailed): sent 5, already sent 0"),
        "{}",
        out.stdout
    );
    assert_eq!(outbox_files(&site).len(), 5);
    let status = site.status();
    assert_eq!(status["issue"], PERMALINK);
    assert_eq!(status["counts"]["sent"], 0, "nothing was mailed: {status}");
    assert_eq!(status["outbox"]["counts"]["sent"], 5, "{status}");

    // The editor adds [smtp]: every reader is mailed, the rehearsal notwithstanding.
    let server = SmtpServer::start(Faults::new());
    let site = site.smtp(server.port(), "");
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout
            .contains("sent 5, already sent 0, skipped 0, failed 0, deferred 0, queued 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("rehearsed in the outbox"),
        "{}",
        out.stderr
    );
    assert_eq!(assert_delivered_once(&server.received(), &readers(5)), 0);
    let status = site.status();
    assert_eq!(status["counts"]["sent"], 5, "{status}");
    assert_eq!(status["outbox"]["counts"]["sent"], 5, "{status}");
    let text = site.run(&["status"]).success().stdout;
    assert!(
        text.contains("  smtp    sent 5  queued 0")
            && text.contains("  outbox  sent 5  queued 0")
            && text.contains("a rehearsal"),
        "{text}"
    );

    // And once mailed, a second SMTP publish sends nothing.
    let out = site.run(&["publish"]).success();
    assert!(
        out.stdout.contains("sent 0, already sent 5"),
        "{}",
        out.stdout
    );
    assert_eq!(server.received_count(), 5);
}

#[test]
fn a_full_disk_leaves_no_partial_outbox_file_and_the_send_is_deferred() {
    // Messages of about 3 MB, files limited to 1.5 MB (RLIMIT_FSIZE: a write fails midway,
    // as on a full disk; SIGXFSZ ignored, so the write returns the error). The feeds and the
    // page (under 1.5 MB) are written first, without the limit. `prlimit` is util-linux's.
    let body = "很长的一期，满是文字。\n\n".repeat(15_000);
    let site = site(3, &body);
    site.run(&["build"]).success();
    let script = "trap '' XFSZ; exec prlimit --fsize=1500000 \"$0\" \"$@\"";
    let limited = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_feedpost"))
        .args(site.command(&["publish"]).get_args())
        .envs(
            site.command(&[])
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .env_remove("FEEDPOST_NOW")
        .output()
        .expect("run feedpost under a file size limit");
    let stdout = String::from_utf8_lossy(&limited.stdout);
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_ne!(limited.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
    assert!(
        stdout.contains("sent 0, already sent 0, skipped 0, failed 0, deferred 3"),
        "{stdout}\n{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(site.path().join("outbox/2024-03-08-weekly"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "no file, whole or partial, temporary or final: {left:?}"
    );
    let status = site.status();
    assert_eq!(status["outbox"]["counts"]["deferred"], 3, "{status}");
    assert_eq!(status["outbox"]["counts"]["sent"], 0, "{status}");

    // With room again, the retry writes three whole messages.
    site.run(&[
        "retry",
        site.path().join("issues").join(ISSUE).to_str().unwrap(),
    ])
    .success();
    let files = outbox_files(&site);
    assert_eq!(files.len(), 3);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert!(
            msg.body_text(0).unwrap().contains("满是文字"),
            "{}",
            f.display()
        );
    }
}
