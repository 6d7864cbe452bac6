//! The seam between the HTTP side of `feedpost serve` and what it acts on: [`Subscriptions`]
//! (where requests, confirmations and unsubscribes are recorded: the store) and
//! [`ConfirmationMailer`] (how a confirmation email leaves: the transport). `feedpost serve`
//! records through [`StoreSubscriptions`], the [`Store`] trait's subscriber operations.
//!
//! The handlers in `routes` only ever call these two traits, so the server runs on whichever
//! store and transport `feedpost serve` is given; the unit tests use the in-memory
//! `MemorySubscriptions` and a mailer that hands the mail to the test.

use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use url::Url;

use crate::store::Store;
pub use crate::store::{Confirmed, Requested, SubscriptionRequest as Request, Unsubscribed};

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

/// The [`Store`] as the server's backend: every call is the store's subscriber operation of the
/// same name ([`Store::request_subscription`], [`Store::confirm_subscription`],
/// [`Store::unsubscribe`]); lapsed requests are purged at most once a minute, on the next
/// request.
pub struct StoreSubscriptions {
    store: Box<dyn Store>,
    /// When lapsed requests were last purged, Unix seconds.
    last_purge: Mutex<i64>,
}

impl StoreSubscriptions {
    /// The backend over `store`.
    pub fn new(store: Box<dyn Store>) -> StoreSubscriptions {
        StoreSubscriptions {
            store,
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
}

impl Subscriptions for StoreSubscriptions {
    async fn request(&self, request: &Request, now: DateTime<Utc>) -> anyhow::Result<Requested> {
        if self.purge_due(now) {
            self.store.purge_lapsed_requests(now).await?;
        }
        self.store.request_subscription(request, now).await
    }

    async fn confirm(&self, address: &str, now: DateTime<Utc>) -> anyhow::Result<Confirmed> {
        self.store.confirm_subscription(address, now).await
    }

    async fn unsubscribe(&self, address: &str, now: DateTime<Utc>) -> anyhow::Result<Unsubscribed> {
        self.store.unsubscribe(address, now).await
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
