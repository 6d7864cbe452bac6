//! feedpost: publish a Markdown newsletter as RSS, Atom and JSON feeds, a web archive, and email
//! delivered exactly once.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! config → issue (front matter, Markdown → HTML) → feed (RSS, Atom, JSON Feed) ┐ site (incremental)
//!                                               → archive (pages, index)     ┘
//!                                               → mail (compose once, personalise, sign) → deliver → store
//! ```
//!
//! `main.rs` parses the command line ([`cli`]) and calls one of [`cmd`]; everything else is here.

pub mod archive;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod deliver;
pub mod feed;
pub mod issue;
pub mod lint;
pub mod mail;
pub mod serve;
pub mod site;
pub mod store;
pub mod subscribers;

use chrono::{DateTime, FixedOffset, Utc};

/// The current time, UTC. `FEEDPOST_NOW` (RFC 3339) pins it, for reproducible feeds, `Date`
/// headers and tests.
///
/// # Errors
/// `FEEDPOST_NOW` is set but is not an RFC 3339 date-time.
pub fn now() -> anyhow::Result<DateTime<Utc>> {
    match std::env::var("FEEDPOST_NOW") {
        Ok(text) => Ok(DateTime::<FixedOffset>::parse_from_rfc3339(&text)
            .map_err(|e| {
                anyhow::anyhow!("FEEDPOST_NOW=`{text}` is not an RFC 3339 date-time: {e}")
            })?
            .with_timezone(&Utc)),
        Err(_) => Ok(Utc::now()),
    }
}
