//! Transports: how one message leaves feedpost — an SMTP connection, or a file in the outbox.
//!
//! The delivery engine holds one [`Connection`] per worker and calls [`Connection::send`] for each
//! message. SMTP connections are lettre's `AsyncSmtpConnection` driven by hand on a socket we open
//! with `TCP_NODELAY` (lettre writes the body and the closing `.` separately, which on a Nagle
//! socket waits for the peer's delayed ACK on every message), kept open for many messages, and
//! reset with `RSET` after a refused recipient instead of being torn down.

use std::path::PathBuf;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use tokio::net::TcpStream;

use crate::config::{Security, Smtp};

/// Why an attempt did not deliver, as the engine must treat it. Each carries the server's reply
/// (`550 5.1.1 User unknown`) or the local error, for the ledger and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A 4xx reply, a timeout, a refused or lost connection, a failed TLS handshake: retry later
    /// (RFC 5321 §4.2.1).
    #[error("{0}")]
    Transient(String),
    /// The server asks us to slow down (421, 454, "too many"): retry without counting an attempt.
    #[error("{0}")]
    Throttled(String),
    /// A 5xx reply to RCPT or to the message (DATA): this recipient will never get it; suppress
    /// the address.
    #[error("{0}")]
    Permanent(String),
    /// The server refuses us, not the recipient: a 5xx greeting, failed authentication, no
    /// STARTTLS, a 5xx reply to `MAIL FROM`. Every other message would meet the same refusal, so
    /// the run stops and no recipient is marked failed.
    #[error("{0}")]
    Fatal(String),
}

/// The server's reply as it was sent (`550 5.1.1 User unknown`), or lettre's description of what
/// went wrong when there was no reply (a dropped connection, a TLS error).
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error;
    match (e.status(), e.source()) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        _ => e.to_string(),
    }
}

/// Whether a connect error is a failed TLS handshake: lettre's TLS kind, or the `InvalidData` I/O
/// error tokio-rustls reports a handshake failure with.
fn is_tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
        }
        source = err.source();
    }
    e.is_tls()
}

/// The text of the deepest cause of `e`: what actually went wrong, without lettre's wrappers.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

impl Failure {
    /// Classifies a lettre SMTP error by its reply code and text.
    fn from_smtp(e: &lettre::transport::smtp::Error) -> Failure {
        let text = reply_text(e);
        match e.status() {
            Some(code) => {
                let n = u16::from(code);
                let lower = text.to_lowercase();
                let throttled = n == 421
                    || n == 454
                    || lower.contains("too many")
                    || lower.contains("rate limit")
                    || lower.contains("throttl")
                    || lower.contains("slow down");
                if (400..500).contains(&n) && throttled {
                    Failure::Throttled(text)
                } else if (400..500).contains(&n) {
                    Failure::Transient(text)
                } else {
                    Failure::Permanent(text)
                }
            }
            None => Failure::Transient(text),
        }
    }

    /// Whether the connection must be dropped after this failure.
    fn breaks_connection(&self, e: &lettre::transport::smtp::Error) -> bool {
        e.status().is_none_or(|c| u16::from(c) == 421)
    }
}

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
}

/// One open way out: an SMTP session or the outbox.
pub enum Connection {
    /// An SMTP session after `EHLO` (and `STARTTLS`/`AUTH` where configured).
    Smtp {
        /// The lettre connection.
        conn: Box<AsyncSmtpConnection>,
        /// Per-reply timeout.
        timeout: Duration,
    },
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

    /// Opens a connection: TCP with `TCP_NODELAY`, greeting, `EHLO`, then `STARTTLS` or TLS and
    /// `AUTH` as configured.
    ///
    /// # Errors
    /// [`Failure::Transient`] when the server cannot be reached, answers 4xx, or the TLS handshake
    /// fails; [`Failure::Fatal`] when it refuses us (5xx greeting, failed authentication, no
    /// STARTTLS) or TLS cannot be set up at all.
    pub async fn connect(&self) -> Result<Connection, Failure> {
        match self {
            Transport::Outbox(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    Failure::Fatal(format!("cannot create the outbox `{}`: {e}", dir.display()))
                })?;
                Ok(Connection::Outbox(dir.clone()))
            }
            Transport::Smtp(s) => {
                let timeout = Duration::from_secs(s.smtp.timeout_secs);
                let conn = tokio::time::timeout(timeout, connect_smtp(s))
                    .await
                    .map_err(|_| {
                        Failure::Transient(format!(
                            "timed out connecting to {}:{}",
                            s.smtp.host, s.smtp.port
                        ))
                    })??;
                Ok(Connection::Smtp {
                    conn: Box::new(conn),
                    timeout,
                })
            }
        }
    }
}

fn hello_name(smtp: &Smtp) -> ClientId {
    match &smtp.hello_name {
        Some(name) => ClientId::Domain(name.clone()),
        None => ClientId::default(),
    }
}

async fn connect_smtp(s: &SmtpSettings) -> Result<AsyncSmtpConnection, Failure> {
    let smtp = &s.smtp;
    let hello = hello_name(smtp);
    let classify = |e: lettre::transport::smtp::Error| match Failure::from_smtp(&e) {
        _ if is_tls_failure(&e) => Failure::Transient(format!(
            "the TLS handshake with {}:{} failed: {}",
            smtp.host,
            smtp.port,
            innermost(&e)
        )),
        Failure::Permanent(m) | Failure::Fatal(m) => Failure::Fatal(format!(
            "{}:{} refused the session: {m}",
            smtp.host, smtp.port
        )),
        Failure::Transient(m) | Failure::Throttled(m) => Failure::Transient(format!(
            "cannot open a session with {}:{}: {m}",
            smtp.host, smtp.port
        )),
    };
    let tls = || {
        TlsParameters::new(smtp.host.clone())
            .map_err(|e| Failure::Fatal(format!("cannot set up TLS for {}: {e}", smtp.host)))
    };
    let mut conn = match smtp.security {
        Security::Tls => AsyncSmtpConnection::connect_tokio1(
            (smtp.host.as_str(), smtp.port),
            Some(Duration::from_secs(smtp.timeout_secs)),
            &hello,
            Some(tls()?),
            None,
        )
        .await
        .map_err(classify)?,
        Security::None | Security::Starttls => {
            let tcp = TcpStream::connect((smtp.host.as_str(), smtp.port))
                .await
                .map_err(|e| {
                    Failure::Transient(format!(
                        "cannot connect to {}:{}: {e}",
                        smtp.host, smtp.port
                    ))
                })?;
            tcp.set_nodelay(true)
                .map_err(|e| Failure::Transient(format!("cannot set TCP_NODELAY: {e}")))?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                .await
                .map_err(classify)?;
            if smtp.security == Security::Starttls {
                if !conn.can_starttls() {
                    return Err(Failure::Fatal(format!(
                        "{}:{} does not offer STARTTLS; set `smtp.security = \"tls\"` or `\"none\"`",
                        smtp.host, smtp.port
                    )));
                }
                conn.starttls(tls()?, &hello).await.map_err(|e| {
                    Failure::Transient(format!(
                        "the TLS handshake (STARTTLS) with {}:{} failed: {}",
                        smtp.host,
                        smtp.port,
                        innermost(&e)
                    ))
                })?;
            }
            conn
        }
    };
    if let Some(credentials) = &s.credentials {
        conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
            .await
            .map_err(|e| {
                Failure::Fatal(format!(
                    "authentication with {}:{} failed: {e}",
                    smtp.host, smtp.port
                ))
            })?;
    }
    Ok(conn)
}

/// The result of one send: the server's reply, and whether the connection is still usable.
#[derive(Debug)]
pub struct Sent {
    /// The reply to the message (e.g. `250 2.0.0 Ok: queued`), or the outbox file.
    pub reply: String,
}

impl Connection {
    /// Sends one message. `file_name` names the outbox file (a Message-ID based name).
    ///
    /// On a refused recipient or message the session is reset with `RSET` and stays usable; on a
    /// lost connection, a timeout or a 421, [`Connection::is_usable`] returns false afterwards and
    /// the caller opens a new connection.
    ///
    /// # Errors
    /// The classified [`Failure`].
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        file_name: &str,
    ) -> Result<Sent, Failure> {
        match self {
            Connection::Outbox(dir) => {
                let path = dir.join(file_name);
                let tmp = dir.join(format!(".{file_name}.tmp"));
                tokio::fs::write(&tmp, message)
                    .await
                    .and(tokio::fs::rename(&tmp, &path).await)
                    .map_err(|e| {
                        Failure::Transient(format!("cannot write `{}`: {e}", path.display()))
                    })?;
                Ok(Sent {
                    reply: format!("written to {}", path.display()),
                })
            }
            Connection::Smtp { conn, timeout } => {
                let timeout = *timeout;
                match tokio::time::timeout(timeout, smtp_send(conn, envelope, message)).await {
                    Ok(Ok(reply)) => Ok(Sent { reply }),
                    Ok(Err((stage, e))) => {
                        let failure = match Failure::from_smtp(&e) {
                            Failure::Permanent(m) if stage == Stage::Mail => {
                                Failure::Fatal(format!(
                                    "the server refuses the sender `{}`: {m}",
                                    envelope.from().map(|a| a.to_string()).unwrap_or_default()
                                ))
                            }
                            other => other,
                        };
                        let reset = !failure.breaks_connection(&e)
                            && tokio::time::timeout(timeout, conn.command(Rset))
                                .await
                                .is_ok_and(|r| r.is_ok());
                        if !reset {
                            conn.abort().await;
                        }
                        Err(failure)
                    }
                    Err(_) => {
                        conn.abort().await;
                        Err(Failure::Transient(format!(
                            "no reply within {} s",
                            timeout.as_secs()
                        )))
                    }
                }
            }
        }
    }

    /// Whether the connection can take another message.
    pub fn is_usable(&self) -> bool {
        match self {
            Connection::Outbox(_) => true,
            Connection::Smtp { conn, .. } => !conn.has_broken(),
        }
    }

    /// Ends the session politely (`QUIT`), ignoring errors.
    pub async fn close(self) {
        if let Connection::Smtp { mut conn, timeout } = self {
            if !conn.has_broken() {
                let _ = tokio::time::timeout(timeout, conn.quit()).await;
            }
        }
    }
}

/// Where in the transaction a reply came: a refusal of `MAIL FROM` concerns the sender, one of
/// `RCPT TO` or the message concerns the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mail,
    Recipient,
}

/// MAIL, RCPT, DATA and the message, without lettre's abort-on-any-error, so a refused recipient
/// does not cost a reconnect.
async fn smtp_send(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<String, (Stage, lettre::transport::smtp::Error)> {
    let mut params = Vec::new();
    if !message.is_ascii() {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    if envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii())
    {
        params.push(MailParameter::SmtpUtfEight);
    }
    conn.command(Mail::new(envelope.from().cloned(), params))
        .await
        .map_err(|e| (Stage::Mail, e))?;
    let recipient = |e| (Stage::Recipient, e);
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(recipient)?;
    }
    conn.command(Data).await.map_err(recipient)?;
    let response = conn.message(message).await.map_err(recipient)?;
    Ok(format!(
        "{} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    ))
}
