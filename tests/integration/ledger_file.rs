//! The ledger file: only a missing one starts a new ledger; an empty or damaged one is an error
//! naming it, and nothing is sent; the lock holds however the path is spelled.

use std::process::Stdio;
use std::time::Duration;

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{assert_delivered_once, many_subscribers, readers, Output, Site};

fn site(server: &SmtpServer, n: usize) -> Site {
    Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(&many_subscribers(n))
        .weekly("短讯。\n")
}

#[test]
fn an_empty_or_damaged_ledger_is_an_error_naming_the_file_and_nobody_is_mailed() {
    let server = SmtpServer::start(Faults::new());
    let site = site(&server, 3);
    site.run(&["publish"]).success();
    assert_eq!(server.received_count(), 3);
    let ledger = site.ledger();
    let name = ledger.canonicalize().unwrap().display().to_string();
    for (what, bytes, says) in [
        ("empty", Vec::new(), "is an empty file (0 bytes)"),
        ("damaged", vec![0x42; 10_000], "is not a feedpost ledger"),
    ] {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", ledger.display()));
        }
        std::fs::write(&ledger, &bytes).unwrap();
        for args in [
            vec!["publish"],
            vec!["status"],
            vec!["subscribers", "suppressed"],
        ] {
            let out = site.run(&args).failure();
            assert!(
                out.stderr.contains(&name) && out.stderr.contains(says),
                "{what} ledger, {args:?}: {}",
                out.stderr
            );
        }
        assert_eq!(
            server.received_count(),
            3,
            "{what}: nobody was mailed again"
        );
        assert_eq!(
            std::fs::read(&ledger).unwrap(),
            bytes,
            "{what}: left as it was"
        );
    }
}

#[test]
fn the_lock_holds_through_a_symlinked_ledger_path() {
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(10)));
    let site = site(&server, 200);
    // The same site, its ledger named through a symbolic link and with `./`.
    let link = site.path().join("link.sqlite");
    std::os::unix::fs::symlink(site.ledger(), &link).unwrap();
    let other = site.path().join("other.toml");
    std::fs::write(
        &other,
        site.config_text()
            .replacen("[mail]\n", "[mail]\nledger = \"./link.sqlite\"\n", 1),
    )
    .unwrap();
    let mut first = site
        .command(&["publish"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(server.wait_for(5, Duration::from_secs(30)));
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_feedpost"))
        .arg("--config")
        .arg(&other)
        .arg("publish")
        .env_remove("FEEDPOST_NOW")
        .output()
        .unwrap();
    let second = Output {
        code: second.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&second.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&second.stderr).into_owned(),
    }
    .failure();
    let real = site.ledger().canonicalize().unwrap();
    assert!(
        second
            .stderr
            .contains("another feedpost is already sending with the ledger")
            && second.stderr.contains(&real.display().to_string()),
        "{}",
        second.stderr
    );
    assert!(first.wait().unwrap().success());
    assert_eq!(assert_delivered_once(&server.received(), &readers(200)), 0);
    assert_eq!(site.status()["counts"]["sent"], 200);
}
