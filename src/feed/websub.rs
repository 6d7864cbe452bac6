//! WebSub (W3C Recommendation, 2018): telling the hub that feeds changed, so subscribers hear
//! of a new issue at once instead of at their next poll.
//!
//! The feeds name the hub (`rel="hub"` links, JSON Feed `hubs`); after `publish` writes them,
//! [`ping`] sends the hub the de facto publish notification the spec leaves to hubs: an HTTP
//! `POST` with the form `hub.mode=publish&hub.url=<feed URL>`, one per feed. A ping is a courtesy
//! — a hub that is down only delays readers — so callers report a failure as a warning.

use std::time::Duration;

use thiserror::Error;
use url::Url;

/// Why a ping did not go through.
#[derive(Debug, Error)]
pub enum PingError {
    /// No answer: connection refused, DNS, TLS or the timeout.
    #[error("cannot reach the WebSub hub `{hub}` for `{topic}`: {cause}")]
    Unreachable {
        /// The hub.
        hub: String,
        /// The feed being announced.
        topic: String,
        /// What the HTTP client said.
        cause: String,
    },
    /// The hub answered with a status other than 2xx.
    #[error("the WebSub hub `{hub}` answered {status} for `{topic}`")]
    Refused {
        /// The hub.
        hub: String,
        /// The feed being announced.
        topic: String,
        /// The HTTP status code.
        status: u16,
    },
}

/// Notifies `hub` that each of `topics` (feed URLs) has new content: one `POST` per topic
/// (`application/x-www-form-urlencoded`, `hub.mode=publish`, `hub.url=<topic>`), each bounded by
/// `timeout` (connect, send and answer). Returns how many the hub accepted (2xx).
///
/// # Errors
/// The first topic the hub does not accept; the ones after it are not sent (a hub that refuses
/// or is down for one feed is so for all).
pub fn ping(hub: &Url, topics: &[Url], timeout: Duration) -> Result<usize, PingError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("feedpost/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    for topic in topics {
        let response = agent
            .post(hub.as_str())
            .send_form([("hub.mode", "publish"), ("hub.url", topic.as_str())])
            .map_err(|e| PingError::Unreachable {
                hub: hub.to_string(),
                topic: topic.to_string(),
                cause: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(PingError::Refused {
                hub: hub.to_string(),
                topic: topic.to_string(),
                status,
            });
        }
    }
    Ok(topics.len())
}
