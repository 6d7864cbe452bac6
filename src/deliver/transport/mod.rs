//! Transports: how one message leaves feedpost — an SMTP session, or a file in the outbox.
//!
//! The delivery engine holds one [`Connection`] per worker and sends each message in two steps:
//! [`Connection::start`] (`MAIL`, `RCPT`, `DATA`; pipelined per RFC 2920 when the server offers
//! it) and [`Connection::finish`] (the content and the end-of-data, whose reply accepts the
//! message). SMTP sessions are in [`smtp`] (one `EHLO` per session; TLS in [`tls`]); the outbox
//! writes each message atomically ([`outbox`]).

use std::path::PathBuf;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;

pub mod outbox;
pub mod smtp;
pub mod tls;
mod wire;

use crate::config::Smtp;
pub use crate::deliver::failure::Failure;
use tls::TrustedRoots;

/// Where messages go: the configured SMTP relay, or `.eml` files in a folder.
#[derive(Debug, Clone)]
pub enum Transport {
    /// SMTP, with the settings of the `[smtp]` table.
    Smtp(Box<SmtpSettings>),
    /// One `.eml` file per message in this folder.
    Outbox(PathBuf),
}

/// What an SMTP connection needs to open.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The `[smtp]` table.
    pub smtp: Smtp,
    /// `AUTH` credentials: `smtp.username` and `FEEDPOST_SMTP_PASSWORD`.
    pub credentials: Option<Credentials>,
    /// Certificates trusted besides the public roots (`smtp.ca_file`), and the pin
    /// (`smtp.tls_pin_sha256`).
    pub roots: TrustedRoots,
}

/// One open way out: an SMTP session or the outbox.
pub enum Connection {
    /// An SMTP session after `EHLO` (and `STARTTLS`/`AUTH` where configured).
    Smtp(Box<smtp::Session>),
    /// The outbox folder.
    Outbox(PathBuf),
}

impl Transport {
    /// A short description for logs: `smtp://host:port` or the outbox path.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp(s) => format!("smtp://{}:{}", s.smtp.host, s.smtp.port),
            Transport::Outbox(p) => format!("outbox {}", p.display()),
        }
    }

    /// Opens a connection: see [`smtp::Session::open`]; for the outbox, creates its folder.
    ///
    /// # Errors
    /// [`Failure::Transient`] when the server cannot be reached, answers 4xx, or the TLS handshake
    /// fails; [`Failure::Fatal`] when it refuses us (5xx greeting, failed authentication, no
    /// STARTTLS), its certificate is not trusted, or the outbox cannot be created.
    pub async fn connect(&self) -> Result<Connection, Failure> {
        match self {
            Transport::Outbox(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    Failure::Fatal(format!("cannot create the outbox `{}`: {e}", dir.display()))
                })?;
                Ok(Connection::Outbox(dir.clone()))
            }
            Transport::Smtp(s) => {
                let timeout = std::time::Duration::from_secs(s.smtp.timeout_secs);
                let session = tokio::time::timeout(timeout, smtp::Session::open(s))
                    .await
                    .map_err(|_| {
                        Failure::Transient(format!(
                            "timed out connecting to {}:{}",
                            s.smtp.host, s.smtp.port
                        ))
                    })??;
                Ok(Connection::Smtp(Box::new(session)))
            }
        }
    }
}

/// The result of one send.
#[derive(Debug)]
pub struct Sent {
    /// The reply to the message (e.g. `250 2.0.0 Ok: queued`), or the outbox file.
    pub reply: String,
}

impl Connection {
    /// Opens a mail transaction for `message`; see [`smtp::Session::start`]. The outbox has
    /// nothing to open.
    ///
    /// # Errors
    /// The classified [`Failure`].
    pub async fn start(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Failure> {
        match self {
            Connection::Outbox(_) => Ok(()),
            Connection::Smtp(session) => session.start(envelope, message).await,
        }
    }

    /// Sends the message content and the end-of-data after [`Connection::start`]; see
    /// [`smtp::Session::finish`]. `file_name` names the outbox file (a Message-ID based name),
    /// written atomically.
    ///
    /// # Errors
    /// The classified [`Failure`]; an outbox file that cannot be written is
    /// [`Failure::Transient`].
    pub async fn finish(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        file_name: &str,
    ) -> Result<Sent, Failure> {
        match self {
            Connection::Outbox(dir) => {
                let path = outbox::write(dir, file_name, message).await.map_err(|e| {
                    Failure::Transient(format!(
                        "cannot write `{}`: {e}",
                        dir.join(file_name).display()
                    ))
                })?;
                Ok(Sent {
                    reply: format!("written to {}", path.display()),
                })
            }
            Connection::Smtp(session) => session
                .finish(envelope, message)
                .await
                .map(|reply| Sent { reply }),
        }
    }

    /// The largest message the server takes (`SIZE`, RFC 1870), in bytes, if it declares one.
    pub fn size_limit(&self) -> Option<u64> {
        match self {
            Connection::Outbox(_) => None,
            Connection::Smtp(session) => session.size_limit(),
        }
    }

    /// Whether the connection can take another message.
    pub fn is_usable(&self) -> bool {
        match self {
            Connection::Outbox(_) => true,
            Connection::Smtp(session) => session.is_usable(),
        }
    }

    /// Ends the session politely (`QUIT`), ignoring errors.
    pub async fn close(self) {
        if let Connection::Smtp(session) = self {
            session.close().await;
        }
    }

    /// Drops the session without finishing an open transaction (no end-of-data is sent, so
    /// nothing is delivered): for a worker that must stop between [`Connection::start`] and
    /// [`Connection::finish`].
    pub async fn abort(&mut self) {
        if let Connection::Smtp(session) = self {
            session.abort().await;
        }
    }
}
