//! What the store keeps of readers: each subscriber's state and where it came from, the
//! subscription requests waiting for their confirmation (double opt-in), and what each
//! subscriber operation of [`crate::store::Store`] answers.
//!
//! Written by `feedpost serve` (requests, confirmations, RFC 8058 one-click unsubscribes), by
//! `feedpost subscribers add|remove|import`, and by `publish`, which reads the editor's
//! `subscribers.toml` into the store (source [`Source::File`]) before it decides the audience:
//!
//! ```text
//!             request                  confirm (link, before expiry)
//! (none) ──────────────▶ pending ─────────────────────────────▶ confirmed ◀── add, import,
//!   │                       │                                    │   ▲          the file
//!   │ unsubscribe           │ unsubscribe                        │   │ confirm a new request
//!   ▼                       ▼                                    ▼   │
//! unsubscribed ◀────────────┴──────────── unsubscribe ──────── (any state)
//!                     a permanent (5xx) failure of the recipient ──▶ bounced
//! ```
//!
//! Times are Unix seconds, UTC.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The suppression reason an unsubscribe records: a later confirmed subscription lifts it (a
/// bounce's suppression stays).
pub const UNSUBSCRIBED: &str = "unsubscribed";

/// Where a subscriber stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberState {
    /// Asked on the web, not confirmed yet: receives nothing.
    Pending,
    /// Receives the issues its topics select.
    Confirmed,
    /// Left (one-click unsubscribe): receives nothing, even when listed in `subscribers.toml`,
    /// until the reader subscribes again and confirms.
    Unsubscribed,
    /// A permanent (5xx) failure of its own: the address is on the suppression list.
    Bounced,
}

impl SubscriberState {
    /// Every state, in the order of the diagram above.
    pub const ALL: [SubscriberState; 4] = [
        SubscriberState::Pending,
        SubscriberState::Confirmed,
        SubscriberState::Unsubscribed,
        SubscriberState::Bounced,
    ];

    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberState::Pending => "pending",
            SubscriberState::Confirmed => "confirmed",
            SubscriberState::Unsubscribed => "unsubscribed",
            SubscriberState::Bounced => "bounced",
        }
    }

    /// The state a store wrote as `name`.
    ///
    /// # Errors
    /// `name` is not one of [`SubscriberState::as_str`]'s names (a newer feedpost wrote it).
    pub fn parse(name: &str) -> Result<SubscriberState> {
        SubscriberState::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .with_context(|| {
                format!("unknown subscriber state `{name}` (written by a newer feedpost?)")
            })
    }
}

/// Where a subscriber came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The editor's `subscribers.toml`, read into the store by every publish.
    File,
    /// The subscription form of `feedpost serve` (double opt-in).
    Web,
    /// `feedpost subscribers import FILE.csv`.
    Import,
    /// `feedpost subscribers add EMAIL`.
    Cli,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 4] = [Source::File, Source::Web, Source::Import, Source::Cli];

    /// The name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Web => "web",
            Source::Import => "import",
            Source::Cli => "cli",
        }
    }

    /// The source a store wrote as `name`.
    ///
    /// # Errors
    /// `name` is not one of [`Source::as_str`]'s names (a newer feedpost wrote it).
    pub fn parse(name: &str) -> Result<Source> {
        Source::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .with_context(|| {
                format!("unknown subscriber source `{name}` (written by a newer feedpost?)")
            })
    }
}

/// A subscriber as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberRow {
    /// The recipient key: the address lowercased (see [`crate::subscribers::normalize`]).
    pub address: String,
    /// The address as the reader or the editor wrote it.
    pub email: String,
    /// The name given, if any.
    pub name: Option<String>,
    /// Topics (the site's categories and tags, compared ignoring case); empty: every issue.
    pub topics: Vec<String>,
    /// Its state.
    pub state: SubscriberState,
    /// Where it came from.
    pub source: Source,
    /// When it was first recorded, Unix seconds.
    pub created_at: i64,
    /// Its last change, Unix seconds.
    pub updated_at: i64,
    /// When it was last confirmed (or added by the editor), Unix seconds.
    pub confirmed_at: Option<i64>,
    /// When it unsubscribed, Unix seconds.
    pub unsubscribed_at: Option<i64>,
}

/// A subscriber the editor adds ([`Source::Cli`], [`Source::Import`]) or lists in the file
/// ([`Source::File`]): confirmed at once, the editor vouching for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSubscriber<'a> {
    /// The recipient key (the address lowercased).
    pub key: &'a str,
    /// The address as written.
    pub email: &'a str,
    /// The name, if any.
    pub name: Option<&'a str>,
    /// Topics; empty: every issue.
    pub topics: &'a [String],
    /// Where it comes from.
    pub source: Source,
}

/// What [`crate::store::Store::add_subscribers`] did with one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Added {
    /// New: now confirmed.
    Added,
    /// Known (pending or confirmed): now confirmed, with the name and topics given.
    Updated,
    /// Left alone: the reader unsubscribed, and only the reader can come back (through the
    /// form and its confirmation).
    Unsubscribed,
    /// Left alone: the address bounced or is on the suppression list for another reason; lift
    /// that first (`feedpost subscribers unsuppress`).
    Suppressed,
}

impl Added {
    /// What adding a subscriber does, from what the store knows of its address: `state`, the
    /// subscriber's current state (`None` when the store has no such subscriber), and
    /// `suppression`, the reason the address is on the suppression list (`None` when it is
    /// not). An unsubscribe (state [`SubscriberState::Unsubscribed`] or reason
    /// [`UNSUBSCRIBED`]) wins over any other suppression; a bounce or another reason
    /// suppresses; otherwise a new address is [`Added::Added`] and a known one
    /// [`Added::Updated`]. Both stores decide through this one function.
    pub fn decide(state: Option<SubscriberState>, suppression: Option<&str>) -> Added {
        match (state, suppression) {
            (Some(SubscriberState::Unsubscribed), _) | (_, Some(UNSUBSCRIBED)) => {
                Added::Unsubscribed
            }
            (Some(SubscriberState::Bounced), _) | (_, Some(_)) => Added::Suppressed,
            (None, None) => Added::Added,
            (Some(_), None) => Added::Updated,
        }
    }
}

/// What [`crate::store::Store::remove_subscriber`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The pending or confirmed subscriber (and any request of it) is gone.
    Removed,
    /// The store has no such subscriber.
    NotFound,
    /// Kept: an unsubscribed or bounced subscriber stays as the record that it must not be
    /// mailed.
    Kept(SubscriberState),
}

/// Subscribers per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SubscriberCounts {
    /// `pending`.
    pub pending: u64,
    /// `confirmed`.
    pub confirmed: u64,
    /// `unsubscribed`.
    pub unsubscribed: u64,
    /// `bounced`.
    pub bounced: u64,
}

impl SubscriberCounts {
    /// Adds `n` to the count of `state`.
    pub fn add(&mut self, state: SubscriberState, n: u64) {
        match state {
            SubscriberState::Pending => self.pending += n,
            SubscriberState::Confirmed => self.confirmed += n,
            SubscriberState::Unsubscribed => self.unsubscribed += n,
            SubscriberState::Bounced => self.bounced += n,
        }
    }

    /// Every subscriber counted.
    pub fn total(&self) -> u64 {
        self.pending + self.confirmed + self.unsubscribed + self.bounced
    }
}

/// A request to subscribe, as the form sent it and the server checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    /// The address as typed (trimmed; a valid RFC 5321 mailbox). Stores key it lowercased.
    pub address: String,
    /// The name given, trimmed, at most 100 characters, no control characters.
    pub name: Option<String>,
    /// Topics chosen, each one of the site's tags or categories as the site spells it; empty
    /// means every issue.
    pub topics: Vec<String>,
    /// When the request lapses unless confirmed (UTC): now + `serve.confirm_expiry_hours`.
    pub expires: DateTime<Utc>,
}

/// What recording a [`SubscriptionRequest`] calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// The request is recorded (new address, pending, unsubscribed, or a confirmed reader asking
    /// for other topics or another name): mail a confirmation. Nothing changes for the reader
    /// until it is confirmed.
    MailConfirmation,
    /// The address is suppressed (it bounced, or the editor suppressed it): no mail. The
    /// requester sees the same page as everyone else.
    Suppressed,
}

/// What confirming a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The latest unexpired request for the address is now the reader's subscription (state
    /// confirmed, with that request's name and topics).
    Confirmed,
    /// There is no unexpired request, and the reader is already confirmed: nothing changed (a
    /// second click on the same link).
    AlreadyConfirmed,
    /// No unexpired request and not subscribed: the request lapsed, or the reader unsubscribed
    /// after asking. Nothing changed.
    NoRequest,
}

/// What an unsubscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The address is now unsubscribed: the next send skips it, even when it is in the editor's
    /// subscriber file.
    Unsubscribed,
    /// It already was.
    AlreadyUnsubscribed,
}

/// One change `feedpost serve` makes to a subscriber, with the time (UTC) it was asked at: the
/// input of [`crate::store::Store::change_subscriptions`], which makes several in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    /// [`crate::store::Store::request_subscription`].
    Request(SubscriptionRequest, DateTime<Utc>),
    /// [`crate::store::Store::confirm_subscription`] of a key (lowercased).
    Confirm(String, DateTime<Utc>),
    /// [`crate::store::Store::unsubscribe`] of a key (lowercased).
    Unsubscribe(String, DateTime<Utc>),
}

/// What a [`SubscriptionChange`] did: the answer of the operation of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionChanged {
    /// The answer to [`SubscriptionChange::Request`].
    Requested(Requested),
    /// The answer to [`SubscriptionChange::Confirm`].
    Confirmed(Confirmed),
    /// The answer to [`SubscriptionChange::Unsubscribe`].
    Unsubscribed(Unsubscribed),
}
