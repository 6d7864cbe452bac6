//! Delivery: the sending engine that moves an issue's queue through the store.
//!
//! The last stage of `publish`. An [`Engine`] runs one issue's queue on one channel in named
//! steps — per message: **claim** (from the [`Store`], in batches) → **personalise** (the
//! issue's [`IssueMail`] for this recipient) → **sign** (DKIM, on the other cores, ahead of the
//! workers: [`SigningPool`]) → **send** (on one of `concurrency` long-lived [`Connection`]s of
//! the [`Transport`]) → **record** (group commit: the outcomes held are recorded, and their
//! replacements claimed, in one transaction). A worker opens its next mail transaction while its
//! previous outcome is being recorded, and waits for that commit only before the end-of-data;
//! the engine commits when a worker so waits (or the queue runs low, or 5 ms have passed), so one
//! commit carries many outcomes. At any instant at most one accepted message per worker is
//! unrecorded, which bounds the duplicates a `kill -9` can cause by the concurrency.
//!
//! How each [`Failure`] (see [`failure`] for how replies are read) is met:
//! - transient (4xx, timeout, dropped connection): the recipient is deferred and retried with
//!   exponential backoff and jitter, up to `max_attempts` per run;
//! - throttled (421, a 4xx to `MAIL FROM`, congestion): the connection told so pauses (its own
//!   pause, growing while it is throttled; the others go on), and the recipient is deferred (with
//!   its own growing backoff) without spending an attempt — unless the server has accepted nothing
//!   over the last `max_attempts × concurrency` throttle replies: then each throttle counts as a
//!   transient failure, so a server that always throttles ends the run with recipients deferred
//!   instead of looping;
//! - permanent, the recipient's own (5.1.x unknown mailbox…): the recipient fails and is
//!   suppressed;
//! - unsendable (a non-ASCII address without SMTPUTF8): the recipient fails, not suppressed;
//! - unclear (a 5xx whose owner the codes do not tell, e.g. 554 5.6.0 to the message): held, not
//!   recorded, until the run can tell — the recipient's own once another message gets through
//!   (then failed and suppressed), the message's when [`SAME_REFUSALS`] recipients in a row meet
//!   the same refusal, or nothing was accepted by the end (then the run stops: see fatal);
//! - fatal (the server refuses us or the message: 5xx greeting, failed AUTH, a 5xx to `MAIL
//!   FROM`, relay denied, a policy refusal, a message too large): the run stops with an error
//!   naming the reply and what to fix; nothing is marked failed, nobody is suppressed, the rest
//!   stays queued.
//!
//! A message larger than the server's declared `SIZE` (RFC 1870) stops the run before anything
//! is sent. A 421 or a dropped connection ends that worker's connection only; it connects again.
//! A refused connection sends the recipient back to the queue (it was not tried) and the worker
//! backs off; after `max_attempts` refusals in a row the worker retires if other connections are
//! open (the server limits connections), and the run stops with an error if none is (the server
//! is gone).
//!
//! [`IssueMail`]: crate::mail::IssueMail
//! [`SigningPool`]: crate::mail::sign::SigningPool
//! [`Store`]: crate::store::Store

mod backoff;
mod engine;
pub mod failure;
pub mod limits;
mod prepare;
#[cfg(test)]
mod tests;
pub mod transport;
mod unclear;
mod worker;

use std::time::Duration;

pub use backoff::{backoff, now_ms};
pub use engine::Engine;
pub use transport::{Connection, Failure, Transport};

use crate::config::Config;

/// How many recipients in a row meeting the same unclear refusal make it the message's or the
/// sender's, not theirs (see the module docs).
pub const SAME_REFUSALS: usize = 3;

/// How the engine paces and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Concurrent connections (workers).
    pub concurrency: usize,
    /// Attempts per recipient within one run. Also bounds the refused connections in a row before
    /// a worker gives its connection up, and (times `concurrency`) the throttle replies in a row,
    /// with no message accepted, after which each further one counts as an attempt.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// Longest retry delay, and longest pause while throttled.
    pub retry_max: Duration,
    /// Messages per second over all connections; 0 = unlimited.
    pub rate_per_second: f64,
    /// Messages per sliding hour; 0 = unlimited.
    pub hourly_cap: u64,
    /// Longest wait for the hourly cap to free a slot; a longer one ends the run (see
    /// [`Report::cap_reached_until`]).
    pub hourly_cap_wait: Duration,
}

impl Settings {
    /// The settings of `config`'s `[smtp]` table; for the outbox, two writers and quick retries.
    pub fn from_config(config: &Config) -> Settings {
        match &config.smtp {
            Some(s) => Settings {
                concurrency: s.concurrency,
                max_attempts: s.max_attempts,
                retry_base: Duration::from_millis(s.retry_base_ms),
                retry_max: Duration::from_millis(s.retry_max_ms.max(s.retry_base_ms)),
                rate_per_second: s.rate_per_second,
                hourly_cap: s.hourly_cap,
                hourly_cap_wait: Duration::from_secs(s.hourly_cap_wait_secs),
            },
            None => Settings {
                concurrency: 2,
                max_attempts: 3,
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
                rate_per_second: 0.0,
                hourly_cap: 0,
                hourly_cap_wait: Duration::ZERO,
            },
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages the server accepted in this run.
    pub sent: u64,
    /// Recipients that failed permanently in this run (now suppressed).
    pub failed: u64,
    /// Transient failures met in this run (each retried or left deferred).
    pub transient: u64,
    /// Times the server throttled us.
    pub throttled: u64,
    /// Deliveries left `sending` by a run that died and queued again.
    pub recovered: u64,
    /// Messages that waited for `smtp.rate_per_second` before they went out.
    pub paced: u64,
    /// Outcomes not recorded because another sender had taken the delivery over (its lease
    /// expired); that sender sends it.
    pub lost_leases: u64,
    /// Set when the run ended because the hourly cap was reached and its next free slot was
    /// further away than `Settings::hourly_cap_wait`: when that slot frees (UTC). The recipients
    /// not sent are left queued.
    pub cap_reached_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Set when the server refused us or the message and the run stopped: why, and what to fix.
    /// Nothing unsent was marked sent or failed; the rest is left queued.
    pub stopped: Option<String>,
}
