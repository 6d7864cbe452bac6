use super::file::CHECKPOINT_EVERY;
use super::*;

const Q: Queue<'static> = Queue {
    issue: "i",
    channel: Channel::Smtp,
};

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
    (dir, l)
}

fn add(l: &mut Ledger, keys: &[&str]) -> Enqueued {
    l.enqueue(
        Q,
        keys.iter().map(|k| NewDelivery {
            key: k,
            address: k,
            name: None,
            message_id: format!("<{k}>"),
        }),
    )
    .unwrap()
}

#[test]
fn enqueue_is_idempotent_and_skips_suppressed() {
    let (_d, mut l) = ledger();
    l.suppress("c@x.org", "manual").unwrap();
    assert_eq!(
        add(&mut l, &["a@x.org", "b@x.org", "c@x.org"]),
        Enqueued {
            queued: 2,
            existing: 0,
            suppressed: 1
        }
    );
    assert_eq!(
        add(&mut l, &["a@x.org", "d@x.org"]),
        Enqueued {
            queued: 1,
            existing: 1,
            suppressed: 0
        }
    );
    assert_eq!(l.counts(Q).unwrap().queued, 3);
}

#[test]
fn state_machine_round_trip() {
    let (_d, mut l) = ledger();
    add(
        &mut l,
        &["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"],
    );
    let jobs = l.claim(Q, 0, 10, 3).unwrap();
    assert_eq!(jobs.len(), 5);
    assert_eq!(l.counts(Q).unwrap().sending, 5);
    assert!(
        l.claim(Q, 0, 10, 3).unwrap().is_empty(),
        "claimed rows are not claimed twice"
    );
    l.record(
        Q,
        &[
            Outcome::Sent {
                key: "a@x.org".into(),
                reply: "250 ok".into(),
            },
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
        ],
    )
    .unwrap();
    let c = l.counts(Q).unwrap();
    assert_eq!(
        (c.sent, c.deferred, c.failed, c.queued, c.attempts),
        (1, 2, 1, 1, 3),
        "a throttle defers without counting an attempt"
    );
    assert_eq!(l.suppressions().unwrap()[0].address, "c@x.org");
    // The deferred row is not due before its time, and only while run attempts remain.
    let due: Vec<String> = l
        .claim(Q, 99, 10, 3)
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(due, ["d@x.org"]);
    assert_eq!(l.next_retry_at(Q, 3).unwrap(), Some(100));
    assert_eq!(
        l.next_retry_at(Q, 1).unwrap(),
        Some(200),
        "b has used its one attempt; e has used none"
    );
    assert_eq!(l.claim(Q, 100, 10, 3).unwrap()[0].key, "b@x.org");
    let e = l.claim(Q, 200, 10, 3).unwrap();
    assert_eq!((e[0].key.as_str(), e[0].attempts), ("e@x.org", 0));
}

#[test]
fn record_and_claim_settles_a_batch_and_refills() {
    let (_d, mut l) = ledger();
    add(&mut l, &["a@x.org", "b@x.org", "c@x.org"]);
    let first: Vec<String> = l
        .claim(Q, 0, 2, 3)
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(first, ["a@x.org", "b@x.org"]);
    let outcomes = [
        Outcome::Sent {
            key: "a@x.org".into(),
            reply: "250 ok".into(),
        },
        Outcome::Requeue {
            key: "b@x.org".into(),
        },
    ];
    // The requeued row is claimed again in the same transaction, before the next one.
    let next: Vec<String> = l
        .record_and_claim(Q, &outcomes, 0, 5, 3)
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(next, ["b@x.org", "c@x.org"]);
    let c = l.counts(Q).unwrap();
    assert_eq!((c.sent, c.sending, c.queued), (1, 2, 0));
    // With limit 0 it only records.
    let none = l
        .record_and_claim(
            Q,
            &[Outcome::Requeue {
                key: "c@x.org".into(),
            }],
            0,
            0,
            3,
        )
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(l.counts(Q).unwrap().queued, 1);
}

#[test]
fn background_checkpoints_keep_the_wal_from_growing() {
    let (_d, mut l) = ledger();
    let checkpoints = l.checkpoint_in_background().unwrap();
    // Without checkpoints these 200 commits leave over a thousand frames in the WAL.
    let keys: Vec<String> = (0..2000).map(|i| format!("r{i}@x.org")).collect();
    for chunk in keys.chunks(10) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        add(&mut l, &refs);
    }
    std::thread::sleep(CHECKPOINT_EVERY * 3);
    // After a checkpoint the next writer starts the WAL over from its beginning.
    add(&mut l, &["last@x.org"]);
    drop(checkpoints);
    let frames_in_use: i64 = l
        .conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .unwrap();
    assert!(frames_in_use < 10, "WAL still holds {frames_in_use} frames");
    assert_eq!(l.counts(Q).unwrap().queued, 2001);
}

#[test]
fn crashed_sending_rows_are_recovered() {
    let (_d, mut l) = ledger();
    add(&mut l, &["a@x.org", "b@x.org"]);
    l.claim(Q, 0, 1, 3).unwrap();
    assert_eq!(l.begin_run(Q).unwrap(), 1);
    assert_eq!(l.counts(Q).unwrap().queued, 2);
}

#[test]
fn unsuppress_requeues_failed() {
    let (_d, mut l) = ledger();
    add(&mut l, &["a@x.org"]);
    l.claim(Q, 0, 1, 3).unwrap();
    l.record(
        Q,
        &[Outcome::Failed {
            key: "a@x.org".into(),
            reply: "550".into(),
            suppress: true,
        }],
    )
    .unwrap();
    assert!(l.unsuppress("a@x.org").unwrap());
    assert!(!l.unsuppress("a@x.org").unwrap());
    assert_eq!(l.counts(Q).unwrap().queued, 1);
}

#[test]
fn a_second_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite");
    let _held = Ledger::lock(&path).unwrap();
    let err = Ledger::lock(&path).unwrap_err().to_string();
    assert!(err.contains("already sending"), "{err}");
}

fn keys(jobs: Vec<Job>) -> Vec<String> {
    jobs.into_iter().map(|j| j.key).collect()
}

#[test]
fn channels_are_kept_apart() {
    let (_d, mut l) = ledger();
    add(&mut l, &["a@x.org", "b@x.org"]);
    let outbox = Queue {
        issue: "i",
        channel: Channel::Outbox,
    };
    l.enqueue(
        outbox,
        ["a@x.org"].iter().map(|k| NewDelivery {
            key: k,
            address: k,
            name: None,
            message_id: format!("<{k}>"),
        }),
    )
    .unwrap();
    assert_eq!(keys(l.claim(outbox, 0, 10, 3).unwrap()), ["a@x.org"]);
    l.record(
        outbox,
        &[Outcome::Sent {
            key: "a@x.org".into(),
            reply: "written".into(),
        }],
    )
    .unwrap();
    assert_eq!(l.counts(outbox).unwrap().sent, 1);
    let smtp = l.counts(Q).unwrap();
    assert_eq!(
        (smtp.sent, smtp.queued),
        (0, 2),
        "the rehearsal sent nothing"
    );
    assert_eq!(
        l.sent_since(0).unwrap(),
        0,
        "outbox files do not count as mail"
    );
    assert_eq!(
        l.channels_of("i").unwrap(),
        [Channel::Smtp, Channel::Outbox]
    );
}

#[test]
fn the_audience_removes_and_restores_rows_still_to_send() {
    let (_d, mut l) = ledger();
    add(
        &mut l,
        &["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"],
    );
    let jobs = l.claim(Q, 0, 1, 3).unwrap();
    l.record(
        Q,
        &[Outcome::Sent {
            key: jobs[0].key.clone(),
            reply: "250".into(),
        }],
    )
    .unwrap();
    l.suppress("c@x.org", "asked by phone").unwrap();
    // b left the list, d no longer wants the issue, c is suppressed; a (sent) left the list too.
    l.begin_audience().unwrap();
    l.admit([("c@x.org", true), ("d@x.org", false), ("e@x.org", true)])
        .unwrap();
    let settled = l.settle_audience(Q).unwrap();
    assert_eq!(
        settled,
        Settled {
            removed: 3,
            restored: 0
        }
    );
    let c = l.counts(Q).unwrap();
    assert_eq!(
        (c.sent, c.removed, c.queued),
        (1, 3, 1),
        "a sent row stays sent"
    );
    let reasons: Vec<(String, String)> = l
        .rows(Q, &[State::Removed], 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.recipient, r.last_reply.unwrap()))
        .collect();
    let reason = |k: &str| &reasons.iter().find(|(r, _)| r == k).unwrap().1;
    assert!(reason("b@x.org").contains("no longer in the subscriber list"));
    assert!(reason("c@x.org").contains("suppressed (asked by phone)"));
    assert!(reason("d@x.org").contains("topics"));
    assert_eq!(keys(l.claim(Q, 0, 10, 3).unwrap()), ["e@x.org"]);

    // b is listed again and c lifted: both go back to the queue.
    l.unsuppress("c@x.org").unwrap();
    l.begin_audience().unwrap();
    l.admit([("b@x.org", true), ("c@x.org", true)]).unwrap();
    let settled = l.settle_audience(Q).unwrap();
    assert_eq!(settled.restored, 2);
    assert_eq!(l.counts(Q).unwrap().queued, 2);
}

#[test]
fn a_claim_skips_an_address_suppressed_since_it_was_queued() {
    let (_d, mut l) = ledger();
    add(&mut l, &["a@x.org", "b@x.org", "c@x.org"]);
    l.suppress("a@x.org", "unsubscribed").unwrap();
    l.suppress("b@x.org", "unsubscribed").unwrap();
    // The first two candidates are suppressed: the claim still returns the third.
    assert_eq!(keys(l.claim(Q, 0, 1, 3).unwrap()), ["c@x.org"]);
    let c = l.counts(Q).unwrap();
    assert_eq!((c.removed, c.sending, c.queued), (2, 1, 0));
}

#[test]
fn a_failure_suppresses_only_when_it_is_the_recipients_own() {
    let (_d, mut l) = ledger();
    add(&mut l, &["a@x.org", "b@x.org"]);
    l.claim(Q, 0, 2, 3).unwrap();
    l.record(
        Q,
        &[
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
        ],
    )
    .unwrap();
    assert_eq!(l.counts(Q).unwrap().failed, 2);
    let list: Vec<String> = l
        .suppressions()
        .unwrap()
        .into_iter()
        .map(|s| s.address)
        .collect();
    assert_eq!(list, ["a@x.org"]);
}

#[test]
fn an_issue_is_known_again_under_another_permalink() {
    let (_d, mut l) = ledger();
    let first = IssueRecord {
        issue: "i",
        slug: "old-slug",
        title: "Weekly 8",
        date: 100,
        fingerprint: "f1",
    };
    l.record_issue(&first, false).unwrap();
    add(&mut l, &["a@x.org"]);
    let renamed = IssueRecord {
        issue: "j",
        slug: "new-slug",
        ..first
    };
    let earlier = l.earlier_copies(&renamed).unwrap();
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
        assert_eq!(l.earlier_copies(&other).unwrap().len(), 1);
    }
    let different = IssueRecord {
        title: "Weekly 9",
        fingerprint: "f9",
        ..renamed
    };
    assert!(l.earlier_copies(&different).unwrap().is_empty());
    assert!(!l.is_established("j").unwrap());
    l.record_issue(&renamed, true).unwrap();
    assert!(l.is_established("j").unwrap());
    assert!(l.is_established("i").unwrap(), "it has deliveries");
}

#[test]
fn the_publish_start_is_recorded_once_per_channel() {
    let (_d, mut l) = ledger();
    assert_eq!(l.publish_started(Q, 100).unwrap(), 100);
    assert_eq!(l.publish_started(Q, 200).unwrap(), 100);
    let outbox = Queue {
        issue: "i",
        channel: Channel::Outbox,
    };
    assert_eq!(l.publish_started(outbox, 300).unwrap(), 300);
}

#[test]
fn an_unknown_state_is_an_error_naming_the_ledger() {
    let (d, mut l) = ledger();
    add(&mut l, &["a@x.org"]);
    l.conn
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON; UPDATE deliveries SET state = 'bounced';",
        )
        .unwrap();
    let err = format!("{:#}", l.counts(Q).unwrap_err());
    assert!(
        err.contains("unknown delivery state `bounced`")
            && err.contains(&d.path().display().to_string()),
        "{err}"
    );
}
