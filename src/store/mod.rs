//! The store: for every (issue, channel, recipient), where its message stands; the subscribers
//! (their state, source and topics, and the requests waiting for confirmation, see
//! [`subscribers`]); the suppression list; and what is known of each mailed issue.
//!
//! The last stage of the pipeline and the source of truth for "who got what". [`Store`] is the
//! seam: the delivery engine ([`crate::deliver`]) and the commands speak only to it, and
//! [`open`] picks the store from the config: the SQLite file ([`sqlite`], one sender at a time)
//! or PostgreSQL ([`postgres`], `[store] url`, shared by several senders and servers on several
//! hosts). Each delivery moves through durable states:
//!
//! ```text
//! queued ──claim──▶ sending ──250──▶ sent
//!   │  ▲               │  ├──4xx / timeout / dropped──▶ deferred ──claim──▶ sending …
//!   │  │               │  ├──throttled──▶ deferred (no attempt counted)
//!   │  │               │  └──5xx, the recipient's own──▶ failed (+ suppression list)
//!   │  │               └──not tried (stopping, no connection, the message refused)──▶ queued
//!   │  └──listed and wanted again (next run)──┐
//!   └──no longer eligible (run start, claim)──▶ removed
//! ```
//!
//! A row is `sending` only while its message may be on the wire, under a *lease*: the claim
//! names the sender that holds it ([`Store::owner`]) and until when ([`LEASE`], renewed while the
//! sender works, [`Store::renew_leases`]). A row whose sender is gone — its lease expired, or,
//! where the store lets one sender at a time in (the SQLite file's lock), any row not leased by
//! this sender — goes back to `queued` at the start of the next run ([`Store::begin_run`]), or,
//! in a store shared by several senders, is taken over by a claim of any of them, and is
//! sent again with the same Message-ID, so the only possible duplicates are the messages in
//! flight when a sender died. Every transition is durable before anything depends on it.
//!
//! Deliveries are kept per [`Channel`]: the outbox is a rehearsal, and its rows never count as
//! mail sent by SMTP. Who may receive an issue is decided again on every run and at every claim
//! ([`Store::admit`], [`Store::settle_audience`]): a reader removed from the subscriber list, or
//! suppressed, after being queued is `removed`, not mailed.
//!
//! The trait is async (`async_trait`, so `Box<dyn Store>` is chosen at run time from the
//! config): the engine drives it from its one-thread runtime, `feedpost serve` from a
//! multi-thread one, and a network database's driver is async. The SQLite store does its short
//! blocking work inline (off the async workers on a multi-thread runtime). Times are Unix
//! seconds, UTC, except where a name says milliseconds.

pub mod postgres;
pub mod sqlite;
pub mod subscribers;

use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use subscribers::{
    Added, Confirmed, NewSubscriber, Removed, Requested, Source, SubscriberCounts, SubscriberRow,
    SubscriberState, SubscriptionChange, SubscriptionChanged, SubscriptionRequest, Unsubscribed,
    UNSUBSCRIBED,
};

use crate::config::Config;

/// How long a claim holds a delivery before another sender may take it over, unless renewed
/// ([`Store::renew_leases`]); the engine renews every quarter of it.
pub const LEASE: Duration = Duration::from_secs(300);

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting to be sent.
    Queued,
    /// Claimed by a sender: the message may be on the wire.
    Sending,
    /// The server answered 250 to the message (or, in the outbox, the file was written).
    Sent,
    /// A transient failure (4xx, timeout, dropped connection); retried after `next_attempt_at`.
    Deferred,
    /// A permanent failure (5xx) of the recipient's own, whose address is then on the
    /// suppression list; or a recipient this relay cannot take at all (see the reply).
    Failed,
    /// No longer eligible when its turn came: removed from the subscriber list, its topics no
    /// longer include the issue, or suppressed. Queued again if it becomes eligible again.
    Removed,
}

impl State {
    /// Every state, in the order of the diagram above.
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Sending,
        State::Sent,
        State::Deferred,
        State::Failed,
        State::Removed,
    ];

    /// The name stored in the database and printed by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::Removed => "removed",
        }
    }

    /// The state a store wrote as `name`. One this feedpost does not know is an error (a newer
    /// feedpost wrote it), never taken for another state.
    ///
    /// # Errors
    /// `name` is not one of [`State::as_str`]'s names.
    pub fn parse(name: &str) -> Result<State> {
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .with_context(|| {
                format!("unknown delivery state `{name}` (written by a newer feedpost?)")
            })
    }
}

/// How an issue's messages leave: by SMTP (mail), or as files in the outbox (a rehearsal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Mail through the `[smtp]` relay.
    Smtp,
    /// `.eml` files in `mail.outbox`: nobody receives them.
    Outbox,
}

impl Channel {
    /// Both channels.
    pub const ALL: [Channel; 2] = [Channel::Smtp, Channel::Outbox];

    /// The name stored in the database and printed by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Smtp => "smtp",
            Channel::Outbox => "outbox",
        }
    }

    /// The channel `config` sends through: SMTP with an `[smtp]` table, else the outbox.
    pub fn of(config: &Config) -> Channel {
        if config.smtp.is_some() {
            Channel::Smtp
        } else {
            Channel::Outbox
        }
    }
}

/// One issue's deliveries on one channel: what a run works through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue<'a> {
    /// The issue id: its permalink.
    pub issue: &'a str,
    /// The channel.
    pub channel: Channel,
}

/// A recipient to add to an issue's queue.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// The recipient key (see [`crate::subscribers::Subscriber::key`]).
    pub key: &'a str,
    /// The address for the envelope and the `To` header.
    pub address: &'a str,
    /// Display name, if known.
    pub name: Option<&'a str>,
    /// The `Message-ID` this recipient's message will always carry, with angle brackets.
    pub message_id: String,
}

/// What [`Store::enqueue`] did with the recipients it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// New rows queued.
    pub queued: u64,
    /// Recipients that already had a row for this issue (sent before, or queued by an earlier run).
    pub existing: u64,
    /// Recipients on the suppression list.
    pub suppressed: u64,
}

/// What to claim: up to `limit` deliveries due at `now_ms` (Unix milliseconds), `deferred` ones
/// only while they have had fewer than `max_run_attempts` attempts in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Now, Unix milliseconds, UTC.
    pub now_ms: i64,
    /// The most deliveries to claim; 0 claims none.
    pub limit: usize,
    /// Attempts a recipient may have in one run.
    pub max_run_attempts: u32,
}

impl Claim {
    /// Claims nothing: [`Store::record_and_claim`] then only records.
    pub const NONE: Claim = Claim {
        now_ms: 0,
        limit: 0,
        max_run_attempts: 0,
    };
}

/// A claimed delivery, handed to a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The recipient key.
    pub key: String,
    /// The address for the envelope and the `To` header.
    pub address: String,
    /// Display name.
    pub name: Option<String>,
    /// The message's `Message-ID`, with angle brackets.
    pub message_id: String,
    /// Attempts before this one, over all runs.
    pub attempts: u32,
}

/// How one attempt ended, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 250 to the message.
    Sent {
        /// The recipient key.
        key: String,
        /// The server's reply.
        reply: String,
    },
    /// A transient failure; try again at `next_attempt_at` (Unix milliseconds).
    Deferred {
        /// The recipient key.
        key: String,
        /// The server's reply or the local error.
        reply: String,
        /// When the next attempt may start, Unix milliseconds, UTC.
        next_attempt_at: i64,
    },
    /// The server throttled us (421, a 4xx to `MAIL FROM`, congestion): try again at
    /// `next_attempt_at` (Unix milliseconds), and count no attempt — the recipient was not
    /// refused.
    Throttled {
        /// The recipient key.
        key: String,
        /// The server's reply.
        reply: String,
        /// When the next attempt may start, Unix milliseconds, UTC.
        next_attempt_at: i64,
    },
    /// A permanent failure. With `suppress` (the recipient's own failure: an unknown mailbox,
    /// say) the address goes on the suppression list; without, only this delivery fails (e.g.
    /// the relay cannot carry a non-ASCII address).
    Failed {
        /// The recipient key.
        key: String,
        /// The server's reply, or why the message could not be sent.
        reply: String,
        /// Whether the address goes on the suppression list.
        suppress: bool,
    },
    /// Not attempted after all (the run stopped, no connection could be opened, the server
    /// refused the message itself): back to the queue, no attempt counted.
    Requeue {
        /// The recipient key.
        key: String,
    },
}

impl Outcome {
    /// The recipient key the outcome is for.
    pub fn key(&self) -> &str {
        match self {
            Outcome::Sent { key, .. }
            | Outcome::Deferred { key, .. }
            | Outcome::Throttled { key, .. }
            | Outcome::Failed { key, .. }
            | Outcome::Requeue { key } => key,
        }
    }
}

/// What [`Store::record_and_claim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The deliveries claimed, now `sending` under this sender's lease.
    pub jobs: Vec<Job>,
    /// Outcomes not recorded because the row was no longer leased by this sender: its lease
    /// expired and another sender took it over (then that sender sends it again).
    pub lost: u64,
}

/// Per-state counts for one issue on one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows `queued`.
    pub queued: u64,
    /// Rows `sending`.
    pub sending: u64,
    /// Rows `sent`.
    pub sent: u64,
    /// Rows `deferred`.
    pub deferred: u64,
    /// Rows `failed`.
    pub failed: u64,
    /// Rows `removed` (no longer eligible).
    pub removed: u64,
    /// Attempts made in total.
    pub attempts: u64,
}

impl Counts {
    /// Whether the queue has no rows at all.
    pub fn is_empty(&self) -> bool {
        self.queued + self.sending + self.sent + self.deferred + self.failed + self.removed == 0
    }

    /// Rows still to be sent: queued, sending (after a crash) or deferred.
    pub fn pending(&self) -> u64 {
        self.queued + self.sending + self.deferred
    }

    /// Sets the count of `state` to `n`.
    pub fn set(&mut self, state: State, n: u64) {
        match state {
            State::Queued => self.queued = n,
            State::Sending => self.sending = n,
            State::Sent => self.sent = n,
            State::Deferred => self.deferred = n,
            State::Failed => self.failed = n,
            State::Removed => self.removed = n,
        }
    }
}

/// One delivery as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    /// The issue id (permalink).
    pub issue: String,
    /// The channel: mail, or the outbox rehearsal.
    pub channel: Channel,
    /// The address as written (its internationalised domain in A-labels), not the lowercased
    /// key.
    pub recipient: String,
    /// Its state.
    pub state: State,
    /// The last server reply or local error, if any; for a removed row, why it was left out of
    /// the queue.
    pub last_reply: Option<String>,
    /// Attempts made over all runs (a throttle reply costs none).
    pub attempts: u32,
    /// Unix seconds of the last change, UTC.
    pub updated_at: i64,
    /// Unix milliseconds before which no retry starts, for deferred rows.
    pub next_attempt_at: Option<i64>,
}

/// What [`Store::settle_audience`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Rows taken out of the queue (now `removed`).
    pub removed: u64,
    /// `removed` rows queued again.
    pub restored: u64,
}

/// An issue as the store records it, to know it again under another slug or base URL.
#[derive(Debug, Clone, Copy)]
pub struct IssueRecord<'a> {
    /// The issue id: its permalink.
    pub issue: &'a str,
    /// Its slug.
    pub slug: &'a str,
    /// Its title.
    pub title: &'a str,
    /// Its date, Unix seconds (UTC).
    pub date: i64,
    /// A fingerprint of its content (hex SHA-256 of the Markdown body, see `publish`).
    pub fingerprint: &'a str,
}

/// An issue already mailed that looks like the one being published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierIssue {
    /// Its id (permalink).
    pub issue: String,
    /// Its slug.
    pub slug: String,
    /// Messages sent by SMTP.
    pub sent: u64,
    /// Deliveries of it in the store, on SMTP, in any state.
    pub deliveries: u64,
}

/// An address on the suppression list.
#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    /// The recipient key (see [`crate::subscribers::Subscriber::key`]).
    pub address: String,
    /// The permanent reply that put it there, or why it was added.
    pub reason: String,
    /// The issue whose send failed, if any.
    pub issue: Option<String>,
    /// Unix seconds, UTC.
    pub suppressed_at: i64,
}

/// Where deliveries, subscribers, the suppression list and issue records are kept.
///
/// Every method is one transaction: it happens whole or not at all, and an error (the store
/// cannot be read or written, a state this feedpost does not know) names the store. Claims are
/// leases held by [`Store::owner`] (see the module docs). The audience methods
/// ([`Store::begin_audience`], [`Store::admit`], [`Store::settle_audience`]) are one sequence on
/// one store value.
#[async_trait]
pub trait Store: Send + Sync {
    /// Where the store is, for messages: the SQLite file, or the server without credentials.
    fn describe(&self) -> String;

    /// The sender this store claims for: who holds the leases it takes (host, process, start).
    fn owner(&self) -> &str;

    /// How long a claim holds a delivery unless renewed: [`LEASE`], or the PostgreSQL store's
    /// `store.lease_seconds`. The engine renews every quarter of it.
    fn lease(&self) -> Duration {
        LEASE
    }

    // --- A run over one queue ------------------------------------------------------------

    /// Starts a run of `q`: rows left `sending` by a sender that is gone go back to `queued`
    /// (their message may or may not have arrived; it is sent again with the same Message-ID),
    /// and the per-run attempt counters are reset. Returns how many rows were recovered.
    async fn begin_run(&self, q: Queue<'_>) -> Result<u64>;

    /// When the first publish of `q` began (Unix seconds), recording `now` if this is the first:
    /// every message of the issue on that channel carries it as its `Date` (and DKIM `t=`), so a
    /// message sent again after a crash is the same, byte for byte.
    async fn publish_started(&self, q: Queue<'_>, now: i64) -> Result<i64>;

    /// Adds recipients to the queue `q`. Recipients that already have a row in it keep it (that
    /// is what makes a second `publish` send nothing); suppressed addresses are skipped.
    async fn enqueue(&self, q: Queue<'_>, recipients: &[NewDelivery<'_>]) -> Result<Enqueued>;

    /// Records `outcomes` of attempts (a permanent failure of the recipient's own also puts the
    /// address on the suppression list, and makes its subscriber, if the store has one,
    /// [`SubscriberState::Bounced`]), then claims what `claim` asks for: `queued` rows first,
    /// then due `deferred` ones, each `sending` under this sender's lease when returned — except
    /// those whose address is suppressed by now, which become `removed` instead. One
    /// transaction: the engine's group commit.
    async fn record_and_claim(
        &self,
        q: Queue<'_>,
        outcomes: &[Outcome],
        claim: Claim,
    ) -> Result<Recorded>;

    /// [`Store::record_and_claim`] without outcomes.
    async fn claim(&self, q: Queue<'_>, claim: Claim) -> Result<Vec<Job>> {
        Ok(self.record_and_claim(q, &[], claim).await?.jobs)
    }

    /// [`Store::record_and_claim`] without a claim; returns how many outcomes lost their lease.
    async fn record(&self, q: Queue<'_>, outcomes: &[Outcome]) -> Result<u64> {
        Ok(self.record_and_claim(q, outcomes, Claim::NONE).await?.lost)
    }

    /// Extends the leases this sender holds in `q` to [`LEASE`] from now.
    async fn renew_leases(&self, q: Queue<'_>) -> Result<()>;

    /// When the next `deferred` delivery of `q` that may still be tried this run (fewer than
    /// `max_run_attempts` attempts in it) becomes due, Unix milliseconds; `None` when there is
    /// none.
    async fn next_retry_at(&self, q: Queue<'_>, max_run_attempts: u32) -> Result<Option<i64>>;

    /// How many senders are at work on this store now (holding unexpired leases, on any
    /// queue), this one included: at least 1. A store that lets one sender in at a time (the
    /// SQLite file) answers 1.
    async fn senders(&self) -> Result<u32> {
        Ok(1)
    }

    /// The times (Unix seconds) of the messages recorded sent by SMTP since `since`, oldest
    /// first, over every issue: what an hourly cap has already used. Outbox files do not count.
    async fn sent_times_since(&self, since: i64) -> Result<Vec<i64>>;

    // --- Who may receive the issue now -------------------------------------------------

    /// Starts reading the audience of a run, forgetting an earlier one.
    async fn begin_audience(&self) -> Result<()>;

    /// Records subscribers listed now: `(key, wants)`, `wants` saying whether the subscriber's
    /// topics include the issue. A key admitted twice (in the file and confirmed on the web)
    /// wants the issue if either admission says so.
    async fn admit(&self, listed: &[(&str, bool)]) -> Result<()>;

    /// After every subscriber was admitted: rows of `q` still to be sent (`queued`, `deferred`,
    /// or `sending` after a crash) whose reader is no longer listed, no longer wants the issue,
    /// or is suppressed become `removed`, with the reason as their last reply; `removed` rows
    /// whose reader is eligible again are queued again.
    async fn settle_audience(&self, q: Queue<'_>) -> Result<Settled>;

    // --- Reading ----------------------------------------------------------------------

    /// Per-state counts for `q`.
    async fn counts(&self, q: Queue<'_>) -> Result<Counts>;

    /// Deliveries of `q` in the given states, oldest change first, at most `limit` per state.
    async fn rows(&self, q: Queue<'_>, states: &[State], limit: usize) -> Result<Vec<DeliveryRow>>;

    /// The state of `key`'s delivery in `q`, if it has one.
    async fn state_of(&self, q: Queue<'_>, key: &str) -> Result<Option<State>>;

    /// The issues that have deliveries (on any channel) with the time of their last change,
    /// newest first.
    async fn issues(&self) -> Result<Vec<(String, i64)>>;

    /// The channels `issue` has deliveries on, SMTP first.
    async fn channels_of(&self, issue: &str) -> Result<Vec<Channel>>;

    // --- The suppression list ---------------------------------------------------------

    /// The suppression list, by address.
    async fn suppressions(&self) -> Result<Vec<Suppression>>;

    /// Why `key` is suppressed, if it is.
    async fn suppression_of(&self, key: &str) -> Result<Option<String>>;

    /// Adds the recipient `key` to the suppression list by hand.
    async fn suppress(&self, key: &str, reason: &str) -> Result<()>;

    /// Lifts the suppression of the recipient `key`; returns whether it was listed. Its failed
    /// deliveries are queued again, so the next `publish` of those issues retries them, and a
    /// bounced subscriber is confirmed again (an unsubscribed one stays unsubscribed: only the
    /// reader can come back).
    async fn unsuppress(&self, key: &str) -> Result<bool>;

    // --- Subscribers (see [`subscribers`]) -------------------------------------------

    /// Records `request` at `now` as the address's latest request, replacing an earlier
    /// unconfirmed one, and adds the address as a `pending` web subscriber if the store has
    /// never seen it. A request never changes an existing subscriber by itself (anyone can type
    /// any address into the form). A suppressed address (other than by an unsubscribe) or a
    /// bounced subscriber records nothing: [`Requested::Suppressed`].
    async fn request_subscription(
        &self,
        request: &SubscriptionRequest,
        now: DateTime<Utc>,
    ) -> Result<Requested>;

    /// Confirms the latest request of `key` (lowercased) if it has not expired at `now`: the
    /// subscriber becomes `confirmed` with the request's spelling, name and topics and source
    /// `web` (the reader's own opt-in: it stays when the editor's file no longer lists the
    /// address, and the file no longer sets its name and topics), its request is deleted, and a
    /// suppression of reason [`UNSUBSCRIBED`] is lifted (never a bounce's).
    async fn confirm_subscription(&self, key: &str, now: DateTime<Utc>) -> Result<Confirmed>;

    /// Unsubscribes `key` (lowercased) at `now` whatever its state — also an address the store
    /// has not seen (a reader of the editor's file, recorded with source `file`) — drops its
    /// pending request, and puts it on the suppression list with reason [`UNSUBSCRIBED`] unless
    /// it is there already, so a send in progress skips it at its next claim (RFC 8058).
    async fn unsubscribe(&self, key: &str, now: DateTime<Utc>) -> Result<Unsubscribed>;

    /// Deletes requests that lapsed before `now`, and the `pending` subscribers left with no
    /// request; returns how many subscribers went.
    async fn purge_lapsed_requests(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Makes `changes` in order, each as the operation of the same name would
    /// ([`Store::request_subscription`], [`Store::confirm_subscription`],
    /// [`Store::unsubscribe`]), and answers each in order: one failing change fails alone,
    /// having changed nothing. A store that writes one transaction at a time makes them all in
    /// one (see [`Store::batches_subscriptions`]); by default they are made one by one.
    ///
    /// # Errors
    /// An answer is an error when its change could not be made; when the batch as a whole could
    /// not be written (its transaction did not begin or commit), every answer is.
    async fn change_subscriptions(
        &self,
        changes: &[SubscriptionChange],
    ) -> Vec<Result<SubscriptionChanged>> {
        let mut answers = Vec::with_capacity(changes.len());
        for change in changes {
            answers.push(match change {
                SubscriptionChange::Request(request, now) => self
                    .request_subscription(request, *now)
                    .await
                    .map(SubscriptionChanged::Requested),
                SubscriptionChange::Confirm(key, now) => self
                    .confirm_subscription(key, *now)
                    .await
                    .map(SubscriptionChanged::Confirmed),
                SubscriptionChange::Unsubscribe(key, now) => self
                    .unsubscribe(key, *now)
                    .await
                    .map(SubscriptionChanged::Unsubscribed),
            });
        }
        answers
    }

    /// Whether subscriber changes arriving together are best made together
    /// ([`Store::change_subscriptions`]): true for a store with one connection that writes
    /// one transaction at a time (SQLite), where every change waits for the one before it and
    /// for any publish writing beside it. `feedpost serve` then queues the changes of
    /// concurrent requests and hands them over in batches. False by default: a store with a
    /// pool of connections takes concurrent changes as they come.
    fn batches_subscriptions(&self) -> bool {
        false
    }

    /// The subscriber `key` (lowercased), if the store has it.
    async fn subscriber(&self, key: &str) -> Result<Option<SubscriberRow>>;

    /// Up to `limit` subscribers in every state whose key sorts after `after` (bytewise; `""`
    /// for the first page), in key order: pages through a list of any length in flat memory.
    async fn subscribers(&self, after: &str, limit: usize) -> Result<Vec<SubscriberRow>>;

    /// Subscribers per state.
    async fn subscriber_counts(&self) -> Result<SubscriberCounts>;

    /// Adds or updates subscribers the editor vouches for (`add`, `import`: confirmed at
    /// `now`), in one transaction; one answer per subscriber, in order. A subscriber that
    /// unsubscribed, bounced or is suppressed (other than by its unsubscribe) is left alone.
    /// Pending requests of those added are deleted (the editor's word replaces them).
    async fn add_subscribers(
        &self,
        new: &[NewSubscriber<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Added>>;

    /// Removes the pending or confirmed subscriber `key` and its pending request; an
    /// unsubscribed or bounced one is kept (see [`Removed::Kept`]). The suppression list is
    /// not touched.
    async fn remove_subscriber(&self, key: &str) -> Result<Removed>;

    /// Reads entries of the editor's `subscribers.toml` into the store (each with
    /// [`Source::File`]) during the run stamped `run` (Unix milliseconds, the same for every
    /// call of one run): a new address becomes `confirmed`; a confirmed file subscriber takes
    /// the file's spelling, name and topics, and so does a `pending` one, which becomes a
    /// confirmed file subscriber (the file mails it; its request still waits for the reader's
    /// confirmation); every other subscriber (confirmed by web, CLI or import; unsubscribed,
    /// bounced) is left as it is, only marked as listed. Returns the keys
    /// among `listed` that must receive nothing: unsubscribed or bounced.
    async fn list_file_subscribers(
        &self,
        listed: &[NewSubscriber<'_>],
        run: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>>;

    /// After the whole file was read in the run stamped `run` (see
    /// [`Store::list_file_subscribers`]): deletes confirmed subscribers of source `file` that
    /// it no longer lists. Returns how many went.
    async fn prune_file_subscribers(&self, run: i64) -> Result<u64>;

    // --- Issue identity ---------------------------------------------------------------

    /// Issues other than `r` that were mailed (have SMTP deliveries) and share its content
    /// fingerprint, or its title and date: the same issue under another slug or base URL. Most
    /// messages sent first.
    async fn earlier_copies(&self, r: &IssueRecord<'_>) -> Result<Vec<EarlierIssue>>;

    /// Whether `issue` was already mailed under this id, or was accepted as a new issue (see
    /// [`Store::record_issue`]): then it is not compared with earlier ones again.
    async fn is_established(&self, issue: &str) -> Result<bool>;

    /// Records (or updates) the issue `r`; with `as_new`, marks it as sent on purpose as an
    /// issue of its own even if it looks like an earlier one.
    async fn record_issue(&self, r: &IssueRecord<'_>, as_new: bool) -> Result<()>;
}

/// How a command opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Only if it exists (commands that read, or change something already there): a missing
    /// store is `None`, and nothing is created.
    IfExists,
    /// Created when missing (an editor's change to the suppression list).
    OrCreate,
    /// To send: created when missing, and, for the SQLite file, locked for this process alone
    /// (another `publish` is refused) with its write-ahead log checkpointed in the background.
    ToSend,
    /// To answer readers (`feedpost serve`) for as long as the server runs, beside publishes:
    /// created when missing, not locked, and, for the SQLite file, its write-ahead log
    /// checkpointed in the background, never on the commit of a reader's request.
    ToServe,
}

/// Opens the store `config` names — the PostgreSQL store of a `[store]` table, else the SQLite
/// file `mail.ledger` — as `how` says.
///
/// A PostgreSQL store is shared: [`Open::ToSend`] lets several senders in at once (they share
/// the work through leases), and every open but [`Open::IfExists`] applies the migrations the
/// database lacks.
///
/// # Errors
/// Another process is sending with the SQLite file ([`Open::ToSend`]), or the store cannot be
/// opened or reached, is not a feedpost store, or was written by a newer feedpost; every message
/// names it (a server without its password).
pub async fn open(config: &Config, how: Open) -> Result<Option<Box<dyn Store>>> {
    if let Some(pg) = &config.store {
        let missing = match how {
            Open::IfExists => postgres::Missing::Skip,
            Open::OrCreate | Open::ToSend | Open::ToServe => postgres::Missing::Migrate,
        };
        let store = postgres::PgStore::connect(pg, missing).await?;
        return Ok(store.map(|s| Box::new(s) as Box<dyn Store>));
    }
    let path = &config.mail.ledger;
    let store = match how {
        Open::IfExists => sqlite::SqliteStore::open_existing(path)?,
        Open::OrCreate => Some(sqlite::SqliteStore::open(path)?),
        Open::ToSend => Some(sqlite::SqliteStore::open_to_send(path)?),
        Open::ToServe => Some(sqlite::SqliteStore::open_to_serve(path)?),
    };
    Ok(store.map(|s| Box::new(s) as Box<dyn Store>))
}

/// This process as a lease owner: host name, process id and start time (Unix milliseconds), so
/// two runs never share a name even when the process id comes round again.
pub(crate) fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}
