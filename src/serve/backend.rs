//! The seam between the HTTP side of `feedpost serve` and what it acts on: [`Subscriptions`]
//! (where requests, confirmations and unsubscribes are recorded: the store) and
//! [`ConfirmationMailer`] (how a confirmation email leaves: the transport). `feedpost serve`
//! records through [`StoreSubscriptions`], the [`Store`] trait's subscriber operations.
//!
//! The handlers in `routes` only ever call these two traits, so the server runs on whichever
//! store and transport `feedpost serve` is given; the unit tests use the in-memory
//! `MemorySubscriptions` and a mailer that hands the mail to the test.

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use url::Url;

pub use crate::store::{Confirmed, Requested, SubscriptionRequest as Request, Unsubscribed};
use crate::store::{Store, SubscriptionChange, SubscriptionChanged};

/// Where subscription requests, confirmations and unsubscribes are recorded: the store of
/// subscribers ([`StoreSubscriptions`] in `feedpost serve`). The handlers run each call as a
/// task of its own, so a panic in one is a 500 page, not a dead server. Addresses passed in are
/// lowercased by the caller for `confirm` and `unsubscribe` (they come from signed tokens);
/// `Request::address` is as typed.
///
/// Errors are the server's (a database that cannot be written): the client sees a 500 page that
/// says nothing about them, and the log has the chain.
pub trait Subscriptions: Send + Sync + 'static {
    /// Records `request` at `now` (UTC) as the address's latest request, replacing an earlier
    /// unconfirmed one, and says whether to mail a confirmation.
    ///
    /// # Errors
    /// The store cannot be read or written.
    fn request(
        &self,
        request: &Request,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Requested>> + Send;

    /// Confirms the latest request of `address` (lowercased) if it has not expired at `now`.
    ///
    /// # Errors
    /// The store cannot be read or written.
    fn confirm(
        &self,
        address: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Confirmed>> + Send;

    /// Unsubscribes `address` (lowercased) at `now`, whatever its state, also one the store has
    /// not seen (a reader from the editor's file), and drops any pending request.
    ///
    /// # Errors
    /// The store cannot be read or written.
    fn unsubscribe(
        &self,
        address: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Unsubscribed>> + Send;
}

/// How often, at most, lapsed requests are deleted, in seconds.
const PURGE_EVERY: i64 = 60;

/// The most subscriber changes the writer of [`StoreSubscriptions`] hands to the store at once.
const MOST_CHANGES_AT_ONCE: usize = 256;

/// The [`Store`] as the server's backend: every call is the store's subscriber operation of the
/// same name ([`Store::request_subscription`], [`Store::confirm_subscription`],
/// [`Store::unsubscribe`]), made through [`Store::change_subscriptions`]; lapsed requests are
/// purged at most once a minute, on the next request.
///
/// A store that writes one transaction at a time ([`Store::batches_subscriptions`]: SQLite)
/// gets the changes through a writer task: the changes of requests that arrive while a batch is
/// being written queue up and go to the store together ([`Store::change_subscriptions`]), up to
/// 256 in one transaction. Under load, and beside a publish that holds the write lock a few
/// milliseconds at a time, a request then waits for at most one batch and one lock rather than
/// for every request ahead of it one by one. Each batch is written in a task of its own, so a
/// panic fails that batch's requests (500 pages) and the writer goes on.
pub struct StoreSubscriptions {
    store: Arc<dyn Store>,
    /// Where changes queue for the writer task, when the store batches them.
    writer: Option<mpsc::UnboundedSender<Queued>>,
    /// When lapsed requests were last purged, Unix seconds.
    last_purge: Mutex<i64>,
}

/// A change waiting for the writer, and where its answer goes.
struct Queued {
    change: SubscriptionChange,
    answer: oneshot::Sender<anyhow::Result<SubscriptionChanged>>,
}

impl StoreSubscriptions {
    /// The backend over `store`. Must be called inside a Tokio runtime when the store batches
    /// subscriber changes: the writer task starts here, and ends when the backend is dropped.
    pub fn new(store: Box<dyn Store>) -> StoreSubscriptions {
        let store: Arc<dyn Store> = Arc::from(store);
        let writer = store.batches_subscriptions().then(|| {
            let (sender, queue) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(Arc::clone(&store), queue));
            sender
        });
        StoreSubscriptions {
            store,
            writer,
            last_purge: Mutex::new(0),
        }
    }

    /// Whether a purge is due at `now`; marks it done if so.
    fn purge_due(&self, now: DateTime<Utc>) -> bool {
        let mut last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
        if now.timestamp() - *last >= PURGE_EVERY {
            *last = now.timestamp();
            true
        } else {
            false
        }
    }

    /// Makes `change`: through the writer task when the store batches changes, else at once.
    async fn change(&self, change: SubscriptionChange) -> anyhow::Result<SubscriptionChanged> {
        let Some(writer) = &self.writer else {
            let mut made = self
                .store
                .change_subscriptions(std::slice::from_ref(&change))
                .await;
            return made
                .pop()
                .context("internal error: the store answered no change")?;
        };
        let (answer, answered) = oneshot::channel();
        writer
            .send(Queued { change, answer })
            .map_err(|_| anyhow::anyhow!("internal error: the store's writer task has stopped"))?;
        answered.await.map_err(|_| {
            anyhow::anyhow!("internal error: the store's writer task dropped a change unanswered")
        })?
    }
}

/// The writer task of [`StoreSubscriptions`]: takes whatever changes have queued (at least one,
/// at most [`MOST_CHANGES_AT_ONCE`]), makes them in one call of
/// [`Store::change_subscriptions`], answers each, and goes on until every sender is dropped.
async fn write_batches(store: Arc<dyn Store>, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let mut batch = Vec::with_capacity(MOST_CHANGES_AT_ONCE);
    while queue.recv_many(&mut batch, MOST_CHANGES_AT_ONCE).await > 0 {
        let (changes, answers): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|q| (q.change, q.answer)).unzip();
        let store = Arc::clone(&store);
        let made = tokio::spawn(async move { store.change_subscriptions(&changes).await }).await;
        match made {
            // An answer missing from a short reply is dropped: its request gets an error.
            Ok(made) => answers.into_iter().zip(made).for_each(|(answer, made)| {
                let _ = answer.send(made);
            }),
            Err(e) => answers.into_iter().for_each(|answer| {
                let _ = answer.send(Err(anyhow::anyhow!(
                    "internal error: recording subscription changes failed: {e}"
                )));
            }),
        }
    }
}

/// The error for a change answered with another kind's answer (`made`): a store's bug.
fn mismatched(made: SubscriptionChanged) -> anyhow::Error {
    anyhow::anyhow!("internal error: the store answered a change with {made:?}")
}

impl Subscriptions for StoreSubscriptions {
    async fn request(&self, request: &Request, now: DateTime<Utc>) -> anyhow::Result<Requested> {
        if self.purge_due(now) {
            self.store.purge_lapsed_requests(now).await?;
        }
        match self
            .change(SubscriptionChange::Request(request.clone(), now))
            .await?
        {
            SubscriptionChanged::Requested(requested) => Ok(requested),
            other => Err(mismatched(other)),
        }
    }

    async fn confirm(&self, address: &str, now: DateTime<Utc>) -> anyhow::Result<Confirmed> {
        match self
            .change(SubscriptionChange::Confirm(address.to_string(), now))
            .await?
        {
            SubscriptionChanged::Confirmed(confirmed) => Ok(confirmed),
            other => Err(mismatched(other)),
        }
    }

    async fn unsubscribe(&self, address: &str, now: DateTime<Utc>) -> anyhow::Result<Unsubscribed> {
        match self
            .change(SubscriptionChange::Unsubscribe(address.to_string(), now))
            .await?
        {
            SubscriptionChanged::Unsubscribed(unsubscribed) => Ok(unsubscribed),
            other => Err(mismatched(other)),
        }
    }
}

/// A confirmation email to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationMail {
    /// The address to confirm, as typed: the recipient.
    pub address: String,
    /// The topics asked for.
    pub topics: Vec<String>,
    /// The absolute `GET /confirm?token=…` link.
    pub confirm_url: Url,
    /// How long the link works, in hours.
    pub valid_hours: u32,
}

/// Composes and sends confirmation emails. The server calls it from a queue of its own, off
/// the request path, a few at a time, and calls [`ConfirmationMailer::idle`] whenever the queue
/// runs dry.
pub trait ConfirmationMailer: Send + Sync + 'static {
    /// Composes `mail` (see [`crate::mail::confirm`]), signs it where DKIM is configured, and
    /// hands it to the transport.
    ///
    /// # Errors
    /// The message could not be composed or the transport did not accept it; the server logs it
    /// (the requester has already had their page, and may ask again).
    fn send(&self, mail: ConfirmationMail) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Called when the queue has run dry and nothing is being sent: a mailer that keeps
    /// connections open between messages closes them here. Does nothing by default.
    fn idle(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Subscriptions kept in memory, for unit tests of the server.
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// A subscriber as [`MemorySubscriptions`] keeps it.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub(crate) struct Entry {
        pub state: &'static str,
        pub name: Option<String>,
        pub topics: Vec<String>,
        pub pending: Option<Request>,
    }

    /// Subscribers by lowercased address.
    #[derive(Debug, Default)]
    pub(crate) struct MemorySubscriptions {
        pub entries: Mutex<HashMap<String, Entry>>,
    }

    impl MemorySubscriptions {
        /// The entry of `address` (lowercased), if any.
        pub(crate) fn get(&self, address: &str) -> Option<Entry> {
            self.entries.lock().unwrap().get(address).cloned()
        }

        /// Sets the state of `address`, adding it if needed.
        pub(crate) fn set_state(&self, address: &str, state: &'static str) {
            self.entries
                .lock()
                .unwrap()
                .entry(address.to_string())
                .or_default()
                .state = state;
        }
    }

    impl Subscriptions for MemorySubscriptions {
        async fn request(
            &self,
            request: &Request,
            _now: DateTime<Utc>,
        ) -> anyhow::Result<Requested> {
            let mut entries = self.entries.lock().unwrap();
            let entry = entries.entry(request.address.to_lowercase()).or_default();
            if entry.state == "bounced" {
                return Ok(Requested::Suppressed);
            }
            if entry.state.is_empty() {
                entry.state = "pending";
            }
            entry.pending = Some(request.clone());
            Ok(Requested::MailConfirmation)
        }

        async fn confirm(&self, address: &str, now: DateTime<Utc>) -> anyhow::Result<Confirmed> {
            let mut entries = self.entries.lock().unwrap();
            let Some(entry) = entries.get_mut(address) else {
                return Ok(Confirmed::NoRequest);
            };
            match entry.pending.take() {
                Some(request) if request.expires > now => {
                    entry.state = "confirmed";
                    entry.name = request.name;
                    entry.topics = request.topics;
                    Ok(Confirmed::Confirmed)
                }
                _ if entry.state == "confirmed" => Ok(Confirmed::AlreadyConfirmed),
                _ => Ok(Confirmed::NoRequest),
            }
        }

        async fn unsubscribe(
            &self,
            address: &str,
            _now: DateTime<Utc>,
        ) -> anyhow::Result<Unsubscribed> {
            let mut entries = self.entries.lock().unwrap();
            let entry = entries.entry(address.to_string()).or_default();
            entry.pending = None;
            if entry.state == "unsubscribed" {
                return Ok(Unsubscribed::AlreadyUnsubscribed);
            }
            entry.state = "unsubscribed";
            Ok(Unsubscribed::Unsubscribed)
        }
    }
}
