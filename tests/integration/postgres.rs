//! The PostgreSQL store (`[store] url`) against a real server started by the test
//! (`support::postgres`): the store's leases seen directly through `PgStore`, and several real
//! `publish` processes sharing one issue's queue, one of them killed with SIGKILL mid-send.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use feedpost::config;
use feedpost::store::postgres::{Missing, PgStore};
use feedpost::store::{Channel, Claim, NewDelivery, Outcome, Queue, State, Store};

use crate::support::postgres::Postgres;
use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{
    assert_delivered_once, assert_reached_with_one_message_id, by_recipient, many_subscribers,
    reader, readers, Site,
};

const Q: Queue<'static> = Queue {
    issue: "https://example.org/issues/1/",
    channel: Channel::Smtp,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn store(url: &str, lease: Duration) -> PgStore {
    let table = config::Store {
        url: url.to_string(),
        lease,
    };
    PgStore::connect(&table, Missing::Migrate)
        .await
        .unwrap()
        .expect("migrated")
}

fn claim(limit: usize) -> Claim {
    Claim {
        now_ms: chrono::Utc::now().timestamp_millis(),
        limit,
        max_run_attempts: 5,
    }
}

async fn enqueue(store: &PgStore, keys: &[String]) {
    let new: Vec<NewDelivery<'_>> = keys
        .iter()
        .map(|k| NewDelivery {
            key: k,
            address: k,
            name: None,
            message_id: format!("<{k}>"),
        })
        .collect();
    store.enqueue(Q, &new).await.unwrap();
}

#[test]
fn two_senders_claim_disjoint_batches_and_a_dead_senders_lease_is_taken_over() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database();
    runtime().block_on(async {
        let a = store(&url, Duration::from_secs(300)).await;
        let b = store(&url, Duration::from_secs(2)).await;
        assert_ne!(a.owner(), b.owner());
        let keys = readers(10);
        enqueue(&a, &keys).await;
        // Enqueued again by the other sender: nothing new.
        let again = a
            .enqueue(
                Q,
                &[NewDelivery {
                    key: &keys[0],
                    address: &keys[0],
                    name: None,
                    message_id: "<other>".into(),
                }],
            )
            .await
            .unwrap();
        assert_eq!((again.queued, again.existing), (0, 1));

        let (ja, jb) = tokio::join!(a.claim(Q, claim(6)), b.claim(Q, claim(6)));
        let (ja, jb) = (ja.unwrap(), jb.unwrap());
        let ka: BTreeSet<_> = ja.iter().map(|j| j.key.clone()).collect();
        let kb: BTreeSet<_> = jb.iter().map(|j| j.key.clone()).collect();
        assert!(ka.is_disjoint(&kb), "{ka:?} and {kb:?} overlap");
        assert_eq!(ka.len() + kb.len(), 10, "every row claimed once");
        assert_eq!(a.counts(Q).await.unwrap().sending, 10);

        // `b` dies holding its rows; `a` records its own, and may not record `b`'s.
        let theirs = Outcome::Sent {
            key: jb[0].key.clone(),
            reply: "250 ok".into(),
        };
        let mine: Vec<Outcome> = ja
            .iter()
            .map(|j| Outcome::Sent {
                key: j.key.clone(),
                reply: "250 ok".into(),
            })
            .chain([theirs])
            .collect();
        let recorded = a.record_and_claim(Q, &mine, claim(10)).await.unwrap();
        assert_eq!(recorded.lost, 1, "an outcome for another sender's row");
        assert!(recorded.jobs.is_empty(), "b's leases have not expired yet");
        // A new run leaves live leases alone.
        assert_eq!(a.begin_run(Q).await.unwrap(), 0);
        let next = a
            .next_retry_at(Q, 5)
            .await
            .unwrap()
            .expect("b's rows pending");
        assert!(next <= chrono::Utc::now().timestamp_millis() + 2_000);

        // After b's lease (2 s) expires, a claim takes b's rows over.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut taken = Vec::new();
        while taken.len() < jb.len() {
            assert!(Instant::now() < deadline, "b's rows never taken over");
            taken.extend(a.claim(Q, claim(10)).await.unwrap());
            if taken.len() < jb.len() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let taken: BTreeSet<_> = taken.into_iter().map(|j| j.key).collect();
        assert_eq!(taken, kb);
        // b comes back: its outcomes are lost, the rows stay a's.
        let late = Outcome::Sent {
            key: jb[0].key.clone(),
            reply: "250 ok".into(),
        };
        assert_eq!(b.record(Q, &[late]).await.unwrap(), 1);
        assert_eq!(
            a.state_of(Q, &jb[0].key).await.unwrap(),
            Some(State::Sending)
        );
    });
}

#[test]
fn outcomes_suppressions_and_the_audience_follow_the_sqlite_store() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database();
    runtime().block_on(async {
        let s = store(&url, Duration::from_secs(300)).await;
        let keys = readers(5);
        enqueue(&s, &keys).await;
        s.suppress(&keys[4], "complaint").await.unwrap();
        let jobs = s.claim(Q, claim(10)).await.unwrap();
        assert_eq!(jobs.len(), 4, "the suppressed reader is not claimed");
        assert_eq!(s.state_of(Q, &keys[4]).await.unwrap(), Some(State::Removed));
        let later = chrono::Utc::now().timestamp_millis() + 60_000;
        let outcomes = vec![
            Outcome::Sent {
                key: keys[0].clone(),
                reply: "250 ok".into(),
            },
            Outcome::Deferred {
                key: keys[1].clone(),
                reply: "451 later".into(),
                next_attempt_at: later,
            },
            Outcome::Failed {
                key: keys[2].clone(),
                reply: "550 no such user".into(),
                suppress: true,
            },
            Outcome::Requeue {
                key: keys[3].clone(),
            },
        ];
        assert_eq!(s.record(Q, &outcomes).await.unwrap(), 0);
        let c = s.counts(Q).await.unwrap();
        assert_eq!(
            (c.sent, c.deferred, c.failed, c.queued, c.removed, c.attempts),
            (1, 1, 1, 1, 1, 3)
        );
        assert_eq!(s.next_retry_at(Q, 5).await.unwrap(), Some(later));
        assert_eq!(
            s.suppression_of(&keys[2]).await.unwrap().as_deref(),
            Some("550 no such user")
        );
        assert!(s.sent_times_since(0).await.unwrap().len() == 1);

        // The audience: keys[3] left the list; keys[4]'s suppression is lifted and it is
        // listed again.
        assert!(s.unsuppress(&keys[4]).await.unwrap());
        s.begin_audience().await.unwrap();
        let listed: Vec<(&str, bool)> = [0, 1, 2, 4]
            .iter()
            .map(|&i| (keys[i].as_str(), true))
            .collect();
        s.admit(&listed).await.unwrap();
        let settled = s.settle_audience(Q).await.unwrap();
        assert_eq!((settled.removed, settled.restored), (1, 1));
        assert_eq!(s.state_of(Q, &keys[3]).await.unwrap(), Some(State::Removed));
        assert_eq!(s.state_of(Q, &keys[4]).await.unwrap(), Some(State::Queued));
        let rows = s.rows(Q, &[State::Removed], 10).await.unwrap();
        assert_eq!(
            rows[0].last_reply.as_deref(),
            Some("not sent: no longer in the subscriber list")
        );
    });
}

fn site(pg_url: &str, port: u16, n: usize, lease: u32) -> Site {
    Site::new()
        .smtp(port, "concurrency = 4")
        .store(pg_url, &format!("lease_seconds = {lease}"))
        .subscribers(&many_subscribers(n))
        .weekly("短讯。\n")
}

fn spawn_publish(site: &Site) -> Child {
    site.command(&["publish"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start feedpost")
}

/// The `sent N` of a publish's summary line.
fn sent_by(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stdout}"))
}

#[test]
fn three_publishes_on_one_issue_share_the_work_and_send_each_recipient_once() {
    const N: usize = 20_000;
    let Some(pg) = Postgres::start() else { return };
    let server = SmtpServer::start(Faults::new());
    let site = site(&pg.database(), server.port(), N, 300);
    let children: Vec<Child> = (0..3).map(|_| spawn_publish(&site)).collect();
    let mut total = 0;
    let mut each = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait for feedpost");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        let sent = sent_by(&stdout);
        total += sent;
        each.push(sent);
    }
    eprintln!("three publishes sent {each:?}");
    assert_eq!(total, N as u64, "the three summaries add up: {each:?}");
    assert!(
        each.iter().filter(|&&n| n > 0).count() >= 2,
        "the work was shared: {each:?}"
    );
    assert_eq!(assert_delivered_once(&server.received(), &readers(N)), 0);
    let status = site.status();
    assert_eq!(status["counts"]["sent"], N as u64);
    assert_eq!(status["counts"]["sending"], 0);
}

#[test]
fn one_of_three_publishes_killed_mid_send_loses_nobody_and_repeats_only_its_messages_in_flight() {
    const N: usize = 6_000;
    let Some(pg) = Postgres::start() else { return };
    let server = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(1)));
    // A short lease, so the survivors take the dead sender's rows over within the test.
    let site = site(&pg.database(), server.port(), N, 3);
    let mut victim = spawn_publish(&site);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !server.wait_for(200, Duration::from_millis(100)) {
        if let Some(status) = victim.try_wait().expect("poll feedpost") {
            panic!("feedpost ended ({status}) before sending 200 messages");
        }
        assert!(Instant::now() < deadline, "timed out before 200 messages");
    }
    let survivors: Vec<Child> = (0..2).map(|_| spawn_publish(&site)).collect();
    // Killed once the others are sending too.
    let mark = server.received_count() + 300;
    while !server.wait_for(mark, Duration::from_millis(100)) {
        assert!(
            Instant::now() < deadline,
            "timed out before {mark} messages"
        );
    }
    victim.kill().expect("SIGKILL feedpost");
    victim.wait().expect("reap feedpost");
    for child in survivors {
        let out = child.wait_with_output().expect("wait for feedpost");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.wait_idle();
    // Nobody lost; every copy of a message carries the same Message-ID; the repeats are at most
    // what the dead sender had in flight (its connections).
    let received = server.received();
    let repeats = assert_reached_with_one_message_id(&received, &readers(N));
    eprintln!("one of three killed: {repeats} repeated messages (bound: concurrency 4)");
    assert!(
        repeats <= 4,
        "{repeats} repeats exceed the killed sender's 4 connections"
    );
    let status = site.status();
    assert_eq!(status["counts"]["sent"], N as u64);
    assert_eq!(status["counts"]["sending"], 0);
}

mod subscribers {
    use chrono::{DateTime, Utc};
    use feedpost::store::{
        Added, Confirmed, NewSubscriber, Removed, Requested, Source, Store, SubscriberState,
        SubscriptionRequest, Unsubscribed, UNSUBSCRIBED,
    };

    use super::{runtime, store};
    use crate::support::postgres::Postgres;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn request(address: &str, topics: &[&str], now: DateTime<Utc>) -> SubscriptionRequest {
        SubscriptionRequest {
            address: address.into(),
            name: Some("读者".into()),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            expires: now + chrono::Duration::hours(48),
        }
    }

    async fn state(s: &dyn Store, key: &str) -> Option<SubscriberState> {
        s.subscriber(key).await.unwrap().map(|r| r.state)
    }

    #[test]
    fn the_subscriber_operations_follow_the_sqlite_store() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.database();
        runtime().block_on(async {
            let s = store(&url, std::time::Duration::from_secs(300)).await;
            let s: &dyn Store = &s;
            // Request, confirm, confirm again.
            let r = request("Reader@Example.org", &["MOSN"], at(0));
            assert_eq!(
                s.request_subscription(&r, at(0)).await.unwrap(),
                Requested::MailConfirmation
            );
            assert_eq!(
                state(s, "reader@example.org").await,
                Some(SubscriberState::Pending)
            );
            assert_eq!(
                s.confirm_subscription("reader@example.org", at(1))
                    .await
                    .unwrap(),
                Confirmed::Confirmed
            );
            let row = s.subscriber("reader@example.org").await.unwrap().unwrap();
            assert_eq!(
                (
                    row.email.as_str(),
                    row.name.as_deref(),
                    row.topics.clone(),
                    row.source
                ),
                (
                    "Reader@Example.org",
                    Some("读者"),
                    vec!["MOSN".to_string()],
                    Source::Web
                )
            );
            assert_eq!(
                s.confirm_subscription("reader@example.org", at(2))
                    .await
                    .unwrap(),
                Confirmed::AlreadyConfirmed
            );
            // A lapsed request confirms nothing and is purged with its pending subscriber.
            s.request_subscription(&request("late@x.org", &[], at(0)), at(0))
                .await
                .unwrap();
            assert_eq!(
                s.confirm_subscription("late@x.org", at(48)).await.unwrap(),
                Confirmed::NoRequest
            );
            assert_eq!(s.purge_lapsed_requests(at(47)).await.unwrap(), 0);
            assert_eq!(s.purge_lapsed_requests(at(48)).await.unwrap(), 1);
            assert_eq!(state(s, "late@x.org").await, None);
            // Unsubscribe wins; a new confirmed request lifts its suppression.
            assert_eq!(
                s.unsubscribe("file@x.org", at(0)).await.unwrap(),
                Unsubscribed::Unsubscribed
            );
            assert_eq!(
                s.unsubscribe("file@x.org", at(1)).await.unwrap(),
                Unsubscribed::AlreadyUnsubscribed
            );
            assert_eq!(
                s.suppression_of("file@x.org").await.unwrap().as_deref(),
                Some(UNSUBSCRIBED)
            );
            s.request_subscription(&request("file@x.org", &[], at(3)), at(3))
                .await
                .unwrap();
            assert_eq!(
                state(s, "file@x.org").await,
                Some(SubscriberState::Unsubscribed)
            );
            s.confirm_subscription("file@x.org", at(4)).await.unwrap();
            let back = s.subscriber("file@x.org").await.unwrap().unwrap();
            assert_eq!(
                (back.state, back.source),
                (SubscriberState::Confirmed, Source::Web)
            );
            assert_eq!(s.suppression_of("file@x.org").await.unwrap(), None);
            // A bounced address gets no confirmation mail.
            s.suppress("bounced@x.org", "550 5.1.1 no such user")
                .await
                .unwrap();
            assert_eq!(
                s.request_subscription(&request("bounced@x.org", &[], at(0)), at(0))
                    .await
                    .unwrap(),
                Requested::Suppressed
            );
            // The editor adds; an unsubscribed or suppressed reader is left alone.
            let none: Vec<String> = vec![];
            let new = |key: &'static str| NewSubscriber {
                key,
                email: key,
                name: None,
                topics: &[],
                source: Source::Cli,
            };
            s.unsubscribe("gone@x.org", at(0)).await.unwrap();
            let added = s
                .add_subscribers(
                    &[
                        new("new@x.org"),
                        new("reader@example.org"),
                        new("gone@x.org"),
                        new("bounced@x.org"),
                    ],
                    at(5),
                )
                .await
                .unwrap();
            assert_eq!(
                added,
                [
                    Added::Added,
                    Added::Updated,
                    Added::Unsubscribed,
                    Added::Suppressed
                ]
            );
            assert_eq!(
                s.remove_subscriber("new@x.org").await.unwrap(),
                Removed::Removed
            );
            assert_eq!(
                s.remove_subscriber("gone@x.org").await.unwrap(),
                Removed::Kept(SubscriberState::Unsubscribed)
            );
            assert_eq!(
                s.remove_subscriber("nobody@x.org").await.unwrap(),
                Removed::NotFound
            );
            // The editor's file: listed readers confirmed, unsubscribed ones reported, the
            // unlisted pruned.
            let topics = vec!["MOSN".to_string()];
            let file = |key: &'static str| NewSubscriber {
                key,
                email: key,
                name: Some("F"),
                topics: &topics,
                source: Source::File,
            };
            let blocked = s
                .list_file_subscribers(
                    &[file("f1@x.org"), file("f2@x.org"), file("gone@x.org")],
                    1,
                    at(6),
                )
                .await
                .unwrap();
            assert_eq!(blocked, ["gone@x.org"]);
            assert_eq!(
                s.subscriber("f1@x.org").await.unwrap().unwrap().topics,
                topics
            );
            assert_eq!(
                s.list_file_subscribers(&[file("f1@x.org")], 2, at(7))
                    .await
                    .unwrap(),
                none
            );
            // f2 only: file@x.org, recorded with source `file` by its unsubscribe, came back
            // by confirming on the web, the reader's own opt-in (as in the SQLite store).
            assert_eq!(s.prune_file_subscribers(2).await.unwrap(), 1);
            assert_eq!(state(s, "f2@x.org").await, None);
            assert_eq!(
                state(s, "file@x.org").await,
                Some(SubscriberState::Confirmed)
            );
            let counts = s.subscriber_counts().await.unwrap();
            assert_eq!(
                (counts.pending, counts.confirmed, counts.unsubscribed),
                (0, 3, 1)
            );
            let first = s.subscribers("", 2).await.unwrap();
            let rest = s.subscribers(&first[1].address, 10).await.unwrap();
            assert_eq!(first.len() + rest.len(), counts.total() as usize);
            // A reader pending on the web whom the file lists is confirmed by the file (with
            // its name and topics) until it confirms its own request.
            s.request_subscription(&request("p@x.org", &["Rust"], at(8)), at(8))
                .await
                .unwrap();
            s.list_file_subscribers(&[file("f1@x.org"), file("p@x.org")], 3, at(9))
                .await
                .unwrap();
            let p = s.subscriber("p@x.org").await.unwrap().unwrap();
            assert_eq!(
                (p.state, p.source, p.name.as_deref(), &p.topics),
                (SubscriberState::Confirmed, Source::File, Some("F"), &topics)
            );
            s.confirm_subscription("p@x.org", at(10)).await.unwrap();
            let p = s.subscriber("p@x.org").await.unwrap().unwrap();
            assert_eq!(
                (p.state, p.source, p.topics),
                (
                    SubscriberState::Confirmed,
                    Source::Web,
                    vec!["Rust".to_string()]
                )
            );
        });
    }

    #[test]
    fn the_server_backend_makes_changes_one_by_one_on_a_pool() {
        use feedpost::serve::{StoreSubscriptions, Subscriptions};
        let Some(pg) = Postgres::start() else { return };
        let url = pg.database();
        runtime().block_on(async {
            let s = store(&url, std::time::Duration::from_secs(300)).await;
            assert!(!s.batches_subscriptions());
            let subs = StoreSubscriptions::new(Box::new(s));
            let now = Utc::now();
            assert_eq!(
                subs.request(&request("B@x.org", &["Rust"], now), now)
                    .await
                    .unwrap(),
                Requested::MailConfirmation
            );
            assert_eq!(
                subs.confirm("b@x.org", now).await.unwrap(),
                Confirmed::Confirmed
            );
            assert_eq!(
                subs.unsubscribe("b@x.org", now).await.unwrap(),
                Unsubscribed::Unsubscribed
            );
            let check = store(&url, std::time::Duration::from_secs(300)).await;
            assert_eq!(
                state(&check, "b@x.org").await,
                Some(SubscriberState::Unsubscribed)
            );
        });
    }

    #[test]
    fn two_stores_racing_subscribe_and_unsubscribe_on_one_address_end_consistent() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.database();
        runtime().block_on(async {
            let a = store(&url, std::time::Duration::from_secs(300)).await;
            let b = store(&url, std::time::Duration::from_secs(300)).await;
            for i in 0..30 {
                let key = format!("race{i}@x.org");
                let r = request(&key, &[], at(0));
                a.request_subscription(&r, at(0)).await.unwrap();
                let (confirmed, left) = tokio::join!(
                    a.confirm_subscription(&key, at(1)),
                    b.unsubscribe(&key, at(1))
                );
                confirmed.unwrap();
                left.unwrap();
                // Whichever came last decides; the suppression always agrees with the state.
                let st = state(&a, &key).await.unwrap();
                let suppressed = a.suppression_of(&key).await.unwrap();
                match st {
                    SubscriberState::Unsubscribed => {
                        assert_eq!(suppressed.as_deref(), Some(UNSUBSCRIBED), "{key}")
                    }
                    SubscriberState::Confirmed => assert_eq!(suppressed, None, "{key}"),
                    other => panic!("{key}: {other:?}"),
                }
            }
        });
    }
}

#[test]
fn store_copy_moves_a_sqlite_ledger_into_postgresql_and_publish_goes_on_from_it() {
    let Some(pg) = Postgres::start() else { return };
    let server = SmtpServer::start(Faults::new());
    let url = pg.database();
    // Published with the SQLite ledger to 300 of the 400 readers.
    let mut local = Site::new()
        .smtp(server.port(), "concurrency = 2")
        .subscribers(&many_subscribers(300))
        .weekly("短讯。\n");
    local.run(&["publish"]).success();
    local.run(&["subscribers", "suppress", "reader0001@example.test"]);
    let ledger = local.ledger();
    let ledger = ledger.to_str().unwrap();

    local = local.store(&url, "");
    let out = local.run(&["store", "status"]).success();
    assert!(
        out.stdout.contains("no feedpost tables yet"),
        "{}",
        out.stdout
    );
    let out = local.run(&["store", "copy", "--from", ledger]).success();
    assert!(
        out.stdout.contains("deliveries 300") && out.stdout.contains("suppressions 1"),
        "{}",
        out.stdout
    );
    // A second copy is refused: the store is not empty; with --force it adds nothing.
    let refused = local.run(&["store", "copy", "--from", ledger]).failure();
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    let forced = local
        .run(&["store", "copy", "--from", ledger, "--force"])
        .success();
    assert!(
        forced.stdout.contains("deliveries 0 of 300"),
        "{}",
        forced.stdout
    );
    let out = local.run(&["store", "migrate"]).success();
    assert!(out.stdout.contains("(up to date)"), "{}", out.stdout);
    let out = local.run(&["store", "status"]).success();
    assert!(out.stdout.contains("sent 300"), "{}", out.stdout);
    assert!(out.stdout.contains("suppressions: 1"), "{}", out.stdout);
    assert!(!out.stdout.contains("password"), "{}", out.stdout);

    // From the PostgreSQL store, the publish mails only the 100 new readers.
    let local = local.subscribers(&many_subscribers(400));
    let out = local.run(&["publish"]).success();
    assert!(out.stdout.starts_with("sent 100,"), "{}", out.stdout);
    assert_eq!(assert_delivered_once(&server.received(), &readers(400)), 0);
}

#[test]
fn the_hourly_cap_holds_across_three_publishes_sharing_the_store() {
    const CAP: usize = 200;
    let Some(pg) = Postgres::start() else { return };
    let server = SmtpServer::start(Faults::new());
    let site = Site::new()
        .smtp(
            server.port(),
            &format!("concurrency = 2\nrate_per_second = 40\nhourly_cap = {CAP}\nhourly_cap_wait_secs = 1"),
        )
        .store(&pg.database(), "")
        .subscribers(&many_subscribers(1_000))
        .weekly("短讯。\n");
    site.run(&["store", "migrate"]).success();
    let children: Vec<Child> = (0..3).map(|_| spawn_publish(&site)).collect();
    let mut each = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait for feedpost");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Stopped by the cap, with the rest left queued: exit 1.
        assert_eq!(
            out.status.code(),
            Some(1),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        each.push(sent_by(&stdout));
    }
    server.wait_idle();
    let total = server.received_count();
    eprintln!("hourly cap {CAP} shared by three publishes: sent {each:?}, {total} in all");
    // Alone, each would send the whole cap (3 x 200 = 600). Shared, the cap can be passed only
    // by what the others sent between two counts (2 s at the shared rate of 40/s); a sender
    // counts its own latest messages twice while they may be unrecorded, so the three may stop
    // a little short of the cap, never far.
    assert!(total >= CAP / 2, "{total} sent, far short of the cap");
    assert!(
        total <= CAP + 2 * 40 * 2,
        "{total} sent for a shared cap of {CAP}"
    );
    let status = site.status();
    assert_eq!(status["counts"]["sent"], total as u64);
    assert_eq!(status["counts"]["sending"], 0);
    assert_eq!(status["counts"]["queued"], (1_000 - total) as u64);
}

#[test]
fn two_serve_processes_take_subscribes_and_unsubscribes_while_a_publish_runs() {
    use crate::serve::{post_form, Server, SECRET};
    use feedpost::subscribers::token::{self, Secret};

    const READERS: usize = 1_500;
    const CHANGES: usize = 30;
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database();
    let smtp = SmtpServer::start(Faults::new().delay_reply(Duration::from_millis(2)));
    // Two hosts: two folders with the same config, sharing the store.
    let host = || {
        crate::serve::site(Some(&smtp), "")
            .store(&url, "")
            .subscribers(&many_subscribers(READERS))
    };
    let (a, b) = (host(), host());
    a.run(&["store", "migrate"]).success();
    let servers = [Server::start(&a), Server::start(&b)];
    let publish = spawn_publish(&a);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !smtp.wait_for(100, Duration::from_millis(100)) {
        assert!(Instant::now() < deadline, "the publish sent nothing");
    }
    let secret = Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    let public = url::Url::parse("http://localhost/").unwrap();
    let mut left = Vec::new();
    for i in 0..CHANGES {
        // A newcomer on one server, a reader of the file leaving on the other.
        let (one, other) = (&servers[i % 2], &servers[(i + 1) % 2]);
        let newcomer = format!("web{i}@example.test");
        let answer = post_form(
            &format!("{}/subscribe", one.base),
            &[("email", newcomer.as_str()), ("topics", "MOSN")],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        let leaving = reader(READERS - 1 - i * 7);
        let unsubscribe = token::unsubscribe_url(&public, &secret, &leaving);
        let done = post_form(
            &other.local(unsubscribe.as_str()),
            &[("List-Unsubscribe", "One-Click")],
        );
        assert_eq!(done.status, 200, "{}", done.body);
        left.push(leaving);
    }
    let out = publish.wait_with_output().expect("wait for publish");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for server in servers {
        let (code, log) = server.stop();
        assert_eq!(code, Some(0), "{log}");
    }
    smtp.wait_idle();

    // Each newcomer got one confirmation, and is pending; each reader who left is unsubscribed
    // and suppressed, and got the issue at most once (sent before leaving) — nobody twice.
    let received = smtp.received();
    let copies = by_recipient(&received);
    for i in 0..CHANGES {
        let newcomer = format!("web{i}@example.test");
        assert_eq!(copies.get(&newcomer).map(Vec::len), Some(1), "{newcomer}");
    }
    for (to, msgs) in &copies {
        assert_eq!(msgs.len(), 1, "{to} got {} messages", msgs.len());
    }
    runtime().block_on(async {
        let s = store(&url, Duration::from_secs(300)).await;
        for i in 0..CHANGES {
            let row = s
                .subscriber(&format!("web{i}@example.test"))
                .await
                .unwrap()
                .expect("newcomer recorded");
            assert_eq!(row.state, feedpost::store::SubscriberState::Pending);
        }
        for reader in &left {
            let row = s
                .subscriber(reader)
                .await
                .unwrap()
                .expect("leaver recorded");
            assert_eq!(row.state, feedpost::store::SubscriberState::Unsubscribed);
            assert!(
                s.suppression_of(reader).await.unwrap().is_some(),
                "{reader}"
            );
        }
    });
    // Every file reader is accounted for: sent, or removed because they left first.
    let status = a.status();
    let counts = &status["counts"];
    assert_eq!(
        counts["sent"].as_u64().unwrap() + counts["removed"].as_u64().unwrap(),
        READERS as u64,
        "{status}"
    );
    let mailed_leavers = left.iter().filter(|r| copies.contains_key(*r)).count() as u64;
    eprintln!("{mailed_leavers} of {CHANGES} readers who left were mailed before they left");
    assert!(
        mailed_leavers < CHANGES as u64,
        "the running publish skipped readers who left meanwhile"
    );
    assert_eq!(
        counts["removed"].as_u64().unwrap(),
        CHANGES as u64 - mailed_leavers
    );
    // The other host publishing again sends nothing.
    let again = b.run(&["publish"]).success();
    assert!(again.stdout.starts_with("sent 0,"), "{}", again.stdout);
}
