use super::*;
use crate::store::Job;

const Q: Queue<'static> = Queue {
    issue: "i",
    channel: Channel::Smtp,
};

const OUTBOX: Queue<'static> = Queue {
    issue: "i",
    channel: Channel::Outbox,
};

use super::testing::{enqueue, ledger_path, sending as store};

async fn add_to(s: &SqliteStore, q: Queue<'_>, keys: &[&str]) -> Enqueued {
    enqueue(s, q, keys).await
}

async fn add(s: &SqliteStore, keys: &[&str]) -> Enqueued {
    add_to(s, Q, keys).await
}

fn due(now_ms: i64, limit: usize, max_run_attempts: u32) -> Claim {
    Claim {
        now_ms,
        limit,
        max_run_attempts,
    }
}

async fn claim(s: &SqliteStore, q: Queue<'_>, now_ms: i64, limit: usize) -> Vec<String> {
    keys(s.claim(q, due(now_ms, limit, 3)).await.unwrap())
}

fn keys(jobs: Vec<Job>) -> Vec<String> {
    jobs.into_iter().map(|j| j.key).collect()
}

fn sent(key: &str) -> Outcome {
    Outcome::Sent {
        key: key.into(),
        reply: "250 ok".into(),
    }
}

#[tokio::test]
async fn enqueue_is_idempotent_and_skips_suppressed() {
    let (_d, s) = store();
    s.suppress("c@x.org", "manual").await.unwrap();
    assert_eq!(
        add(&s, &["a@x.org", "b@x.org", "c@x.org"]).await,
        Enqueued {
            queued: 2,
            existing: 0,
            suppressed: 1
        }
    );
    assert_eq!(
        add(&s, &["a@x.org", "d@x.org"]).await,
        Enqueued {
            queued: 1,
            existing: 1,
            suppressed: 0
        }
    );
    assert_eq!(s.counts(Q).await.unwrap().queued, 3);
}

#[tokio::test]
async fn state_machine_round_trip() {
    let (_d, s) = store();
    add(&s, &["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"]).await;
    assert_eq!(claim(&s, Q, 0, 10).await.len(), 5);
    assert_eq!(s.counts(Q).await.unwrap().sending, 5);
    assert!(
        claim(&s, Q, 0, 10).await.is_empty(),
        "claimed rows are not claimed twice"
    );
    let outcomes = [
        sent("a@x.org"),
        Outcome::Deferred {
            key: "b@x.org".into(),
            reply: "451 later".into(),
            next_attempt_at: 100,
        },
        Outcome::Failed {
            key: "c@x.org".into(),
            reply: "550 unknown".into(),
            suppress: true,
        },
        Outcome::Requeue {
            key: "d@x.org".into(),
        },
        Outcome::Throttled {
            key: "e@x.org".into(),
            reply: "454 slow down".into(),
            next_attempt_at: 200,
        },
    ];
    assert_eq!(s.record(Q, &outcomes).await.unwrap(), 0, "no lease lost");
    let c = s.counts(Q).await.unwrap();
    assert_eq!(
        (c.sent, c.deferred, c.failed, c.queued, c.attempts),
        (1, 2, 1, 1, 3),
        "a throttle defers without counting an attempt"
    );
    assert_eq!(s.suppressions().await.unwrap()[0].address, "c@x.org");
    // The deferred row is not due before its time, and only while run attempts remain.
    assert_eq!(claim(&s, Q, 99, 10).await, ["d@x.org"]);
    assert_eq!(s.next_retry_at(Q, 3).await.unwrap(), Some(100));
    assert_eq!(
        s.next_retry_at(Q, 1).await.unwrap(),
        Some(200),
        "b has used its one attempt; e has used none"
    );
    assert_eq!(claim(&s, Q, 100, 10).await, ["b@x.org"]);
    let e = s.claim(Q, due(200, 10, 3)).await.unwrap();
    assert_eq!((e[0].key.as_str(), e[0].attempts), ("e@x.org", 0));
}

#[tokio::test]
async fn record_and_claim_settles_a_batch_and_refills() {
    let (_d, s) = store();
    add(&s, &["a@x.org", "b@x.org", "c@x.org"]).await;
    assert_eq!(claim(&s, Q, 0, 2).await, ["a@x.org", "b@x.org"]);
    let outcomes = [
        sent("a@x.org"),
        Outcome::Requeue {
            key: "b@x.org".into(),
        },
    ];
    // The requeued row is claimed again in the same transaction, before the next one.
    let next = s
        .record_and_claim(Q, &outcomes, due(0, 5, 3))
        .await
        .unwrap();
    assert_eq!(keys(next.jobs), ["b@x.org", "c@x.org"]);
    let c = s.counts(Q).await.unwrap();
    assert_eq!((c.sent, c.sending, c.queued), (1, 2, 0));
    // Without a claim it only records.
    let requeue = [Outcome::Requeue {
        key: "c@x.org".into(),
    }];
    let none = s.record_and_claim(Q, &requeue, Claim::NONE).await.unwrap();
    assert!(none.jobs.is_empty());
    assert_eq!(s.counts(Q).await.unwrap().queued, 1);
}

#[tokio::test]
async fn background_checkpoints_keep_the_wal_from_growing() {
    let (_d, s) = store();
    // Without checkpoints these 200 commits leave over a thousand frames in the WAL.
    let keys: Vec<String> = (0..2000).map(|i| format!("r{i}@x.org")).collect();
    for chunk in keys.chunks(10) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        add(&s, &refs).await;
    }
    let checkpointer = s.checkpointer().unwrap();
    let done = checkpointer.checkpoint_now().unwrap();
    assert!(done.log_frames > 1000, "{done:?}");
    assert_eq!(done.checkpointed_frames, done.log_frames, "{done:?}");
    // After a checkpoint the next writer starts the WAL over from its beginning.
    add(&s, &["last@x.org"]).await;
    let after = checkpointer.checkpoint_now().unwrap();
    assert!(after.log_frames < 10, "WAL still holds {after:?}");
    assert_eq!(s.counts(Q).await.unwrap().queued, 2001);
}

#[tokio::test]
async fn rows_in_flight_when_a_sender_died_are_recovered_and_its_late_outcomes_lost() {
    let (_dir, path) = ledger_path();
    let first = SqliteStore::open_to_send(&path).unwrap();
    add(&first, &["a@x.org", "b@x.org"]).await;
    assert_eq!(first.begin_run(Q).await.unwrap(), 0);
    assert_eq!(claim(&first, Q, 0, 1).await, ["a@x.org"]);
    // Its own rows are not the next run's to recover while it runs…
    assert_eq!(first.begin_run(Q).await.unwrap(), 0);
    drop(first);
    // …but once it is gone they are.
    let second = SqliteStore::open_to_send(&path).unwrap();
    assert_eq!(second.begin_run(Q).await.unwrap(), 1);
    assert_eq!(second.counts(Q).await.unwrap().queued, 2);
    // An outcome for a row this sender does not lease changes nothing.
    assert_eq!(second.record(Q, &[sent("a@x.org")]).await.unwrap(), 1);
    assert_eq!(second.counts(Q).await.unwrap().sent, 0);
    assert_eq!(claim(&second, Q, 0, 1).await, ["a@x.org"]);
    second.renew_leases(Q).await.unwrap();
    assert_eq!(second.record(Q, &[sent("a@x.org")]).await.unwrap(), 0);
    assert_eq!(second.counts(Q).await.unwrap().sent, 1);
}

#[tokio::test]
async fn a_run_needs_the_store_opened_to_send() {
    let (_dir, path) = ledger_path();
    let s = SqliteStore::open(&path).unwrap();
    let err = s.begin_run(Q).await.unwrap_err().to_string();
    assert!(err.contains("opened to send"), "{err}");
}

#[tokio::test]
async fn a_second_sender_is_refused_while_one_runs() {
    let (_dir, path) = ledger_path();
    let _first = SqliteStore::open_to_send(&path).unwrap();
    let err = SqliteStore::open_to_send(&path).unwrap_err().to_string();
    assert!(err.contains("already sending"), "{err}");
    // Reading is still fine.
    SqliteStore::open_existing(&path).unwrap().unwrap();
}

#[tokio::test]
async fn unsuppress_requeues_failed() {
    let (_d, s) = store();
    add(&s, &["a@x.org"]).await;
    claim(&s, Q, 0, 1).await;
    let failed = Outcome::Failed {
        key: "a@x.org".into(),
        reply: "550".into(),
        suppress: true,
    };
    s.record(Q, &[failed]).await.unwrap();
    assert!(s.unsuppress("a@x.org").await.unwrap());
    assert!(!s.unsuppress("a@x.org").await.unwrap());
    assert_eq!(s.counts(Q).await.unwrap().queued, 1);
}

#[tokio::test]
async fn channels_are_kept_apart() {
    let (_d, s) = store();
    add(&s, &["a@x.org", "b@x.org"]).await;
    add_to(&s, OUTBOX, &["a@x.org"]).await;
    assert_eq!(claim(&s, OUTBOX, 0, 10).await, ["a@x.org"]);
    s.record(OUTBOX, &[sent("a@x.org")]).await.unwrap();
    assert_eq!(s.counts(OUTBOX).await.unwrap().sent, 1);
    let smtp = s.counts(Q).await.unwrap();
    assert_eq!(
        (smtp.sent, smtp.queued),
        (0, 2),
        "the rehearsal sent nothing"
    );
    assert!(
        s.sent_times_since(0).await.unwrap().is_empty(),
        "outbox files do not count as mail"
    );
    assert_eq!(
        s.channels_of("i").await.unwrap(),
        [Channel::Smtp, Channel::Outbox]
    );
}

#[tokio::test]
async fn the_audience_removes_and_restores_rows_still_to_send() {
    let (_d, s) = store();
    add(&s, &["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"]).await;
    let first = claim(&s, Q, 0, 1).await;
    s.record(Q, &[sent(&first[0])]).await.unwrap();
    s.suppress("c@x.org", "asked by phone").await.unwrap();
    // b left the list, d no longer wants the issue, c is suppressed; a (sent) left the list too.
    s.begin_audience().await.unwrap();
    s.admit(&[("c@x.org", true), ("d@x.org", false), ("e@x.org", true)])
        .await
        .unwrap();
    let settled = s.settle_audience(Q).await.unwrap();
    assert_eq!(
        settled,
        Settled {
            removed: 3,
            restored: 0
        }
    );
    let c = s.counts(Q).await.unwrap();
    assert_eq!(
        (c.sent, c.removed, c.queued),
        (1, 3, 1),
        "a sent row stays sent"
    );
    let reasons: Vec<(String, String)> = s
        .rows(Q, &[State::Removed], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.recipient, r.last_reply.unwrap()))
        .collect();
    let reason = |k: &str| &reasons.iter().find(|(r, _)| r == k).unwrap().1;
    assert!(reason("b@x.org").contains("no longer in the subscriber list"));
    assert!(reason("c@x.org").contains("suppressed (asked by phone)"));
    assert!(reason("d@x.org").contains("topics"));
    assert_eq!(claim(&s, Q, 0, 10).await, ["e@x.org"]);

    // b is listed again and c lifted: both go back to the queue.
    s.unsuppress("c@x.org").await.unwrap();
    s.begin_audience().await.unwrap();
    s.admit(&[("b@x.org", true), ("c@x.org", true)])
        .await
        .unwrap();
    let settled = s.settle_audience(Q).await.unwrap();
    assert_eq!(settled.restored, 2);
    assert_eq!(s.counts(Q).await.unwrap().queued, 2);
}

#[tokio::test]
async fn a_claim_skips_an_address_suppressed_since_it_was_queued() {
    let (_d, s) = store();
    add(&s, &["a@x.org", "b@x.org", "c@x.org"]).await;
    s.suppress("a@x.org", "unsubscribed").await.unwrap();
    s.suppress("b@x.org", "unsubscribed").await.unwrap();
    // The first two candidates are suppressed: the claim still returns the third.
    assert_eq!(claim(&s, Q, 0, 1).await, ["c@x.org"]);
    let c = s.counts(Q).await.unwrap();
    assert_eq!((c.removed, c.sending, c.queued), (2, 1, 0));
}

#[tokio::test]
async fn a_failure_suppresses_only_when_it_is_the_recipients_own() {
    let (_d, s) = store();
    add(&s, &["a@x.org", "b@x.org"]).await;
    claim(&s, Q, 0, 2).await;
    let outcomes = [
        Outcome::Failed {
            key: "a@x.org".into(),
            reply: "550 5.1.1".into(),
            suppress: true,
        },
        Outcome::Failed {
            key: "b@x.org".into(),
            reply: "no SMTPUTF8".into(),
            suppress: false,
        },
    ];
    s.record(Q, &outcomes).await.unwrap();
    assert_eq!(s.counts(Q).await.unwrap().failed, 2);
    let list: Vec<String> = s
        .suppressions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.address)
        .collect();
    assert_eq!(list, ["a@x.org"]);
}

#[tokio::test]
async fn an_issue_is_known_again_under_another_permalink() {
    let (_d, s) = store();
    let first = IssueRecord {
        issue: "i",
        slug: "old-slug",
        title: "Weekly 8",
        date: 100,
        fingerprint: "f1",
    };
    s.record_issue(&first, false).await.unwrap();
    add(&s, &["a@x.org"]).await;
    let renamed = IssueRecord {
        issue: "j",
        slug: "new-slug",
        ..first
    };
    let earlier = s.earlier_copies(&renamed).await.unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(
        (earlier[0].slug.as_str(), earlier[0].deliveries),
        ("old-slug", 1)
    );
    // Edited (other fingerprint) but the same title and date; or retitled, same content.
    for other in [
        IssueRecord {
            fingerprint: "f2",
            ..renamed
        },
        IssueRecord {
            title: "Weekly #8",
            date: 5,
            ..renamed
        },
    ] {
        assert_eq!(s.earlier_copies(&other).await.unwrap().len(), 1);
    }
    let different = IssueRecord {
        title: "Weekly 9",
        fingerprint: "f9",
        ..renamed
    };
    assert!(s.earlier_copies(&different).await.unwrap().is_empty());
    assert!(!s.is_established("j").await.unwrap());
    s.record_issue(&renamed, true).await.unwrap();
    assert!(s.is_established("j").await.unwrap());
    assert!(s.is_established("i").await.unwrap(), "it has deliveries");
}

#[tokio::test]
async fn the_publish_start_is_recorded_once_per_channel() {
    let (_d, s) = store();
    assert_eq!(s.publish_started(Q, 100).await.unwrap(), 100);
    assert_eq!(s.publish_started(Q, 200).await.unwrap(), 100);
    assert_eq!(s.publish_started(OUTBOX, 300).await.unwrap(), 300);
}

#[tokio::test]
async fn an_unknown_state_is_an_error_naming_the_ledger() {
    let (d, s) = store();
    add(&s, &["a@x.org"]).await;
    s.with("break the ledger", |c| {
        c.execute_batch(
            "PRAGMA ignore_check_constraints = ON; UPDATE deliveries SET state = 'bounced';",
        )?;
        Ok(())
    })
    .unwrap();
    for err in [
        s.counts(Q).await.unwrap_err(),
        s.state_of(Q, "a@x.org").await.map(|_| ()).unwrap_err(),
    ] {
        let err = format!("{err:#}");
        assert!(
            err.contains("unknown delivery state `bounced`")
                && err.contains(&d.path().display().to_string()),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_from_a_multi_thread_runtime() {
    let (_d, s) = store();
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.suppress(&format!("{i}@x.org"), "test").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.suppressions().await.unwrap().len(), 4);
}
