//! The steps between claiming a delivery and sending it: personalise the issue's message for the
//! recipient, then sign it — ahead of the workers, so the CPU-bound signature is made on the
//! other cores ([`SigningPool`]) while the workers' connections stay busy.
//!
//! One task takes the claimed [`Job`]s in order, personalises each (tens of microseconds, on the
//! engine's thread) and queues it with the pool, and hands the workers a [`Prepared`] message
//! whose signature is usually made by the time a worker takes it. The pool's capacity holds back
//! this task, never the engine's commits.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use tokio::sync::mpsc;

use crate::mail::sign::{Signed, SigningPool};
use crate::mail::{IssueMail, Recipient};
use crate::store::Job;

/// A claimed delivery and its message on the way to a worker.
pub(super) struct Prepared {
    /// The delivery.
    pub job: Job,
    /// The envelope and the message being signed; or why no message can be made for this
    /// recipient (an address that cannot form a mailbox), which fails the delivery.
    pub message: Result<(Envelope, Signed), String>,
}

/// Personalises and submits for signing every job `jobs` yields, in order, sending each to
/// `prepared`; stops when either side closes. `time` is the signing time (`t=`): the issue's
/// pinned publish start, as its `Date` is.
pub(super) async fn prepare(
    mail: Arc<IssueMail>,
    signing: Arc<SigningPool>,
    time: DateTime<Utc>,
    mut jobs: mpsc::Receiver<Job>,
    prepared: mpsc::Sender<Prepared>,
) {
    while let Some(job) = jobs.recv().await {
        let recipient = Recipient {
            address: &job.address,
            name: job.name.as_deref(),
            message_id: &job.message_id,
        };
        let message = match mail.personalise(&recipient) {
            Ok((envelope, bytes)) => Ok((envelope, signing.submit(bytes, time).await)),
            Err(e) => Err(format!("{e:#}")),
        };
        if prepared.send(Prepared { job, message }).await.is_err() {
            break;
        }
    }
}
