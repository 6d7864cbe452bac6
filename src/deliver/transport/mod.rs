//! Transports: how one message leaves feedpost — an SMTP session, or a file in the outbox.
//!
//! The seam between the delivery engine and the wire, after lettre's `AsyncTransport`: a
//! [`Transport`] opens [`Connection`]s, and the engine holds one per worker and sends each
//! message in two steps: [`Connection::start`] (for SMTP `MAIL`, `RCPT`, `DATA`, pipelined per
//! RFC 2920 when the server offers it) and [`Connection::finish`] (the content and the
//! end-of-data, whose reply accepts the message). Between the two the engine waits until the
//! previous message's outcome is recorded, so at most one accepted-but-unrecorded message per
//! connection can exist. Every failure is a [`Failure`], classified where the typed error is
//! known (the session's stage and the reply's codes, [`crate::deliver::failure`]).
//!
//! Implementations: [`smtp::SmtpTransport`] (one `EHLO` per session; TLS in [`tls`]),
//! [`outbox::Outbox`] (one `.eml` file per message, written atomically), and a scripted one in
//! the engine's unit tests. A new transport (an HTTP mail API, say) implements the two traits
//! and is chosen in [`from_config`]; the engine does not change.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;

pub mod outbox;
pub mod smtp;
pub mod tls;
mod wire;

#[cfg(test)]
pub(crate) mod scripted;

use crate::config::Config;
pub use crate::deliver::failure::Failure;
use tls::TrustedRoots;

/// One message on its way out: its envelope, its bytes (RFC 5322, CRLF, signed where
/// configured) and its `Message-ID` (with angle brackets), which names the outbox file.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// `MAIL FROM` and `RCPT TO`.
    pub envelope: &'a Envelope,
    /// The message as it goes on the wire (before dot-stuffing).
    pub bytes: &'a [u8],
    /// The message's `Message-ID`.
    pub message_id: &'a str,
}

/// The result of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The reply to the message (e.g. `250 2.0.0 Ok: queued as 1234`), or where the outbox
    /// wrote it.
    pub reply: String,
}

/// Where messages go: opens connections.
#[async_trait]
pub trait Transport: Send + Sync {
    /// A short description for logs and messages: `smtp://host:port`, `outbox <path>`.
    fn describe(&self) -> String;

    /// Opens a connection (for SMTP: connect, TLS, greeting, `EHLO`, `AUTH`).
    ///
    /// # Errors
    /// [`Failure::Transient`] when the server cannot be reached, answers 4xx, or the TLS
    /// handshake fails; [`Failure::Fatal`] when it refuses us (5xx greeting, failed
    /// authentication, no STARTTLS), its certificate is not trusted, or the outbox cannot be
    /// created.
    async fn connect(&self) -> Result<Box<dyn Connection>, Failure>;
}

/// One open way out, used by one worker at a time.
#[async_trait]
pub trait Connection: Send {
    /// The largest message the server takes (`SIZE`, RFC 1870), in bytes, if it declares one.
    fn size_limit(&self) -> Option<u64>;

    /// Whether the connection can take another message.
    fn is_usable(&self) -> bool;

    /// Opens a transaction for `message`; nothing is delivered until [`Connection::finish`].
    ///
    /// # Errors
    /// The classified [`Failure`]; after one the connection is reset for the next message, or
    /// no longer usable.
    async fn start(&mut self, message: &Outgoing<'_>) -> Result<(), Failure>;

    /// Delivers `message` after [`Connection::start`]: returns the reply that accepted it.
    ///
    /// # Errors
    /// The classified [`Failure`].
    async fn finish(&mut self, message: &Outgoing<'_>) -> Result<Sent, Failure>;

    /// Drops an open transaction without delivering it (for SMTP: no end-of-data is sent, the
    /// session is dropped): for a worker that must stop between start and finish.
    async fn abort(&mut self);

    /// Ends the connection politely (`QUIT`), ignoring errors.
    async fn close(self: Box<Self>);
}

/// What an SMTP connection needs to open.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The `[smtp]` table.
    pub smtp: crate::config::Smtp,
    /// `AUTH` credentials: `smtp.username` and `FEEDPOST_SMTP_PASSWORD`.
    pub credentials: Option<Credentials>,
    /// Certificates trusted besides the public roots (`smtp.ca_file`), and the pin
    /// (`smtp.tls_pin_sha256`).
    pub roots: TrustedRoots,
}

impl SmtpSettings {
    /// The settings of `config`'s `[smtp]` table: credentials from `smtp.username` and
    /// `FEEDPOST_SMTP_PASSWORD`, trust from `smtp.ca_file` and `smtp.tls_pin_sha256`.
    ///
    /// # Errors
    /// `smtp.username` is set but `FEEDPOST_SMTP_PASSWORD` is not; the CA file cannot be read;
    /// the pin is not a SHA-256 fingerprint.
    pub fn from_config(smtp: &crate::config::Smtp) -> Result<SmtpSettings> {
        let credentials = match &smtp.username {
            Some(user) => {
                let password = std::env::var("FEEDPOST_SMTP_PASSWORD").with_context(|| {
                    format!("`smtp.username` is set, so the password must be in the environment variable FEEDPOST_SMTP_PASSWORD (for user `{user}`)")
                })?;
                Some(Credentials::new(user.clone(), password))
            }
            None => None,
        };
        let mut roots = match &smtp.ca_file {
            Some(path) => TrustedRoots::from_pem_file(path)?,
            None => TrustedRoots::default(),
        };
        if let Some(pin) = &smtp.tls_pin_sha256 {
            roots = roots.with_pin(tls::parse_pin(pin).map_err(anyhow::Error::msg)?);
        }
        Ok(SmtpSettings {
            smtp: smtp.clone(),
            credentials,
            roots,
        })
    }
}

/// The transport `config` asks for: SMTP with an `[smtp]` table, else the outbox folder `outbox`
/// (for an issue, `mail.outbox/<slug>/`).
///
/// # Errors
/// See [`SmtpSettings::from_config`].
pub fn from_config(config: &Config, outbox: PathBuf) -> Result<Arc<dyn Transport>> {
    Ok(match &config.smtp {
        Some(smtp) => Arc::new(smtp::SmtpTransport::new(SmtpSettings::from_config(smtp)?)),
        None => Arc::new(outbox::Outbox::new(outbox)),
    })
}
