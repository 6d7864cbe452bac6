//! The engine against the scripted transport and a real SQLite store: what it records for what
//! the "server" answers, and what it signs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::transport::scripted::{Scripted, Step};
use super::{Engine, Failure, Report, Settings};
use crate::config::Config;
use crate::mail::sign::{DkimSigner, Signer, SigningPool};
use crate::mail::IssueMail;
use crate::store::sqlite::{testing, SqliteStore};
use crate::store::{Channel, Counts, Queue, Store};

const Q: Queue<'static> = Queue {
    issue: "https://example.org/issues/8/",
    channel: Channel::Smtp,
};

fn config() -> Config {
    Config::parse(
        "[site]\ntitle = \"Weekly\"\nbase_url = \"https://example.org/\"\n[mail]\nfrom = \"Weekly <weekly@example.org>\"\n",
        std::path::Path::new("/site"),
    )
    .unwrap()
}

fn date() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-09T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn mail() -> Arc<IssueMail> {
    let config = config();
    let issue = crate::issue::parse(
        "---\ntitle: \"Weekly 8\"\ndate: 2024-03-08T15:00:00+08:00\n---\nNews.\n",
        std::path::Path::new("/site/issues/8.md"),
        &config,
    )
    .unwrap();
    Arc::new(
        IssueMail::compose(&issue, &config, &crate::mail::placeholder_secret(), date()).unwrap(),
    )
}

fn settings() -> Settings {
    Settings {
        concurrency: 2,
        max_attempts: 3,
        retry_base: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
        rate_per_second: 0.0,
        hourly_cap: 0,
        hourly_cap_wait: Duration::ZERO,
    }
}

fn reader(i: usize) -> String {
    format!("reader{i}@example.org")
}

/// A store opened to send, with readers `0..n` queued.
async fn queued(n: usize) -> (tempfile::TempDir, SqliteStore) {
    let (dir, store) = testing::sending();
    let keys: Vec<String> = (0..n).map(reader).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    testing::enqueue(&store, Q, &keys).await;
    (dir, store)
}

/// A run over readers `0..n` in which reader `who`'s first attempt meets `step`.
async fn refused_once(
    n: usize,
    who: usize,
    step: Step,
) -> (tempfile::TempDir, SqliteStore, Report) {
    let (dir, store) = queued(n).await;
    let server = Scripted::default().script(&reader(who), vec![step]);
    let report = run(&store, &server).await;
    (dir, store, report)
}

async fn run(store: &SqliteStore, transport: &Scripted) -> Report {
    Engine::new(store, Q, mail(), Arc::new(transport.clone()), settings())
        .run()
        .await
        .unwrap()
}

async fn counts(store: &SqliteStore) -> Counts {
    store.counts(Q).await.unwrap()
}

#[tokio::test]
async fn every_recipient_gets_one_message_and_a_second_run_sends_nothing() {
    let (_d, store) = queued(25).await;
    let server = Scripted::default();
    let report = run(&store, &server).await;
    assert_eq!((report.sent, report.failed, report.stopped), (25, 0, None));
    let mut to: Vec<String> = server.accepted().into_iter().map(|a| a.to).collect();
    to.sort();
    let mut want: Vec<String> = (0..25).map(reader).collect();
    want.sort();
    assert_eq!(to, want);
    assert_eq!(counts(&store).await.sent, 25);

    let again = run(&store, &server).await;
    assert_eq!(again.sent, 0);
    assert_eq!(server.accepted().len(), 25);
}

#[tokio::test]
async fn a_transient_failure_is_retried_within_the_run() {
    let (_d, store) = queued(3).await;
    let server = Scripted::default().script(
        &reader(1),
        vec![
            Step::Start(Failure::Transient("451 4.7.1 later".into())),
            Step::Finish(Failure::Transient("451 4.3.0 later".into())),
        ],
    );
    let report = run(&store, &server).await;
    assert_eq!((report.sent, report.transient), (3, 2));
    let c = counts(&store).await;
    assert_eq!(
        (c.sent, c.attempts),
        (3, 5),
        "two attempts failed, then it got through"
    );
}

#[tokio::test]
async fn the_recipients_own_refusal_fails_and_suppresses_it_only() {
    let permanent = Step::Start(Failure::Permanent("550 5.1.1 unknown".into()));
    let (_d, store, report) = refused_once(3, 2, permanent).await;
    assert_eq!((report.sent, report.failed), (2, 1));
    let list = store.suppressions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].address, reader(2));
}

#[tokio::test]
async fn an_unclear_refusal_is_the_recipients_once_others_get_through() {
    let unclear = || Failure::Unclear {
        reply: "554 5.6.0 rejected".into(),
        kind: "554 at the end of the message, 5.6.0".into(),
        suppress: true,
    };
    let (_d, store, report) = refused_once(4, 0, Step::Finish(unclear())).await;
    assert_eq!((report.sent, report.failed, report.stopped), (3, 1, None));
    assert_eq!(store.suppressions().await.unwrap()[0].address, reader(0));

    // The same refusal for everyone: the message's, not theirs. The run stops, nobody is
    // suppressed, everyone stays queued.
    let (_d, store) = queued(4).await;
    let mut server = Scripted::default();
    for i in 0..4 {
        server = server.script(&reader(i), vec![Step::Finish(unclear())]);
    }
    let report = run(&store, &server).await;
    assert!(report.stopped.unwrap().contains("in a row"));
    assert_eq!(report.failed, 0);
    assert!(store.suppressions().await.unwrap().is_empty());
    assert_eq!(counts(&store).await.queued, 4);
}

#[tokio::test]
async fn a_fatal_refusal_stops_the_run_and_leaves_the_rest_queued() {
    let fatal = Step::Start(Failure::Fatal("relay access denied".into()));
    let (_d, store, report) = refused_once(10, 0, fatal).await;
    assert_eq!(report.stopped.as_deref(), Some("relay access denied"));
    let c = counts(&store).await;
    assert_eq!((c.sent + c.queued, c.failed, c.sending), (10, 0, 0));
    assert!(c.queued >= 1);
}

#[tokio::test]
async fn a_server_that_is_down_or_too_small_changes_nothing() {
    let (_d, store) = queued(2).await;
    let down =
        Scripted::default().connects(vec![Some(Failure::Transient("cannot connect".into()))]);
    let report = run(&store, &down).await;
    assert_eq!(report.stopped.as_deref(), Some("cannot connect"));
    let small = Scripted::default().size_limit(100);
    let report = run(&store, &small).await;
    assert!(report.stopped.unwrap().contains("more than the 100 bytes"));
    assert_eq!(counts(&store).await.queued, 2);
    assert!(small.accepted().is_empty());
}

#[tokio::test]
async fn refused_connections_are_retried_without_spending_attempts() {
    let (_d, store) = queued(4).await;
    let refused = || Some(Failure::Transient("421 4.7.0 too many connections".into()));
    // The first connection opens; the second worker's first two are refused.
    let server = Scripted::default().connects(vec![None, refused(), refused()]);
    let report = run(&store, &server).await;
    assert_eq!((report.sent, report.transient), (4, 0));
    assert_eq!(counts(&store).await.attempts, 4, "one attempt each");
}

#[tokio::test]
async fn every_message_is_signed_at_the_issue_date_off_the_engine_thread() {
    let (_d, store) = queued(6).await;
    let key = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_ref())
    );
    let signer: Arc<dyn Signer> =
        Arc::new(DkimSigner::from_pem(pem.as_bytes(), "example.org", "s1").unwrap());
    let pool = Arc::new(SigningPool::new(signer, 2, 4).unwrap());
    let server = Scripted::default();
    let report = Engine::new(&store, Q, mail(), Arc::new(server.clone()), settings())
        .signing(pool)
        .run()
        .await
        .unwrap();
    assert_eq!(report.sent, 6);
    for accepted in server.accepted() {
        let text = String::from_utf8(accepted.bytes).unwrap();
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{text}"
        );
        let t = format!("t={};", date().timestamp());
        assert!(text.replace("\r\n ", " ").contains(&t), "{text}");
        assert!(
            text.contains("Date: Sat, 09 Mar 2024 08:00:00 +0000"),
            "{text}"
        );
    }
}
