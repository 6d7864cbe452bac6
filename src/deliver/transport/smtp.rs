//! One SMTP session: opened once (one `EHLO`, two around `STARTTLS`), then many mail
//! transactions, each refusal classified by its stage and enhanced status code
//! ([`crate::deliver::failure`]).
//!
//! lettre's `AsyncSmtpConnection` is driven by hand on a socket we open with `TCP_NODELAY`
//! (lettre writes the body and the closing `.` separately, which on a Nagle socket waits for the
//! peer's delayed ACK on every message). `STARTTLS` is done here, before lettre takes the
//! socket, so that our certificate check ([`super::tls`]) applies; lettre's own `EHLO` then
//! follows the handshake, as RFC 3207 requires. The session is reset with `RSET` after a refused
//! recipient instead of being torn down.

use std::time::Duration;

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::tls;
use super::wire::{Capture, Extensions, Wire};
use super::{Connection, Outgoing, Sent, SmtpSettings, Transport};
use crate::config::{Security, Smtp};
use crate::deliver::failure::{self, classify, Failure, Reply, Stage};

/// The `[smtp]` relay as a [`Transport`]: each connection is a [`Session`].
#[derive(Debug, Clone)]
pub struct SmtpTransport {
    settings: SmtpSettings,
}

impl SmtpTransport {
    /// The relay `settings` describe.
    pub fn new(settings: SmtpSettings) -> SmtpTransport {
        SmtpTransport { settings }
    }
}

/// How many `smtp.timeout_secs` opening a session may take in all: each step has one (the TCP
/// connection, the greeting, each reply), and a backstop bounds the whole.
const OPENING_STEPS: u32 = 4;

#[async_trait]
impl Transport for SmtpTransport {
    fn describe(&self) -> String {
        format!(
            "smtp://{}:{}",
            self.settings.smtp.host, self.settings.smtp.port
        )
    }

    /// Opens a [`Session`]: the TCP connection and the greeting each within `smtp.timeout_secs`
    /// (so a silent server gets the greeting's hint, see [`Session::open`]), the whole opening
    /// (EHLO, STARTTLS, the TLS handshake, AUTH) within `OPENING_STEPS` (4) times that.
    async fn connect(&self) -> Result<Box<dyn Connection>, Failure> {
        let smtp = &self.settings.smtp;
        let timeout = Duration::from_secs(smtp.timeout_secs) * OPENING_STEPS;
        let session = tokio::time::timeout(timeout, Session::open(&self.settings))
            .await
            .map_err(|_| {
                Failure::Transient(format!(
                    "timed out opening an SMTP session with {}:{} ({} s)",
                    smtp.host,
                    smtp.port,
                    timeout.as_secs()
                ))
            })??;
        Ok(Box::new(session))
    }
}

/// An open SMTP session, after `EHLO` (and `STARTTLS`/`AUTH` where configured).
pub struct Session {
    conn: AsyncSmtpConnection,
    /// Per-reply timeout.
    timeout: Duration,
    /// What the server's `EHLO` reply offers.
    ext: Extensions,
    /// `host:port`, for messages.
    server: String,
}

fn hello_name(smtp: &Smtp) -> ClientId {
    match &smtp.hello_name {
        Some(name) => ClientId::Domain(name.clone()),
        None => ClientId::default(),
    }
}

/// The server's reply in a lettre error, if the error is a reply (not a lost connection).
fn reply_of(e: &lettre::transport::smtp::Error) -> Option<Reply> {
    use std::error::Error;
    let code = u16::from(e.status()?);
    let text = e.source().map(|s| s.to_string()).unwrap_or_default();
    Some(Reply::new(code, &text))
}

/// The server's reply as it was sent, or lettre's description of what went wrong when there was
/// no reply (a dropped connection, a TLS error).
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    reply_of(e).map_or_else(|| e.to_string(), |r| r.text)
}

/// Whether a connect error is a failed TLS handshake: lettre's TLS kind, or a rustls error
/// carried in the I/O error tokio-rustls reports a handshake failure with.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        let rustls_inside = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>());
        let lettre_tls = err
            .downcast_ref::<lettre::transport::smtp::Error>()
            .is_some_and(|l| l.is_tls());
        if rustls_inside || lettre_tls || err.is::<tokio_rustls::rustls::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether a failed TLS handshake failed because the server answered with something that is no
/// TLS record at all: a plain-text SMTP greeting (`220 ...`), as a port without implicit TLS
/// sends first.
fn answered_in_plain_text(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        let rustls = err
            .downcast_ref::<tokio_rustls::rustls::Error>()
            .or_else(|| {
                err.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
            });
        if let Some(tokio_rustls::rustls::Error::InvalidMessage(_)) = rustls {
            return true;
        }
        source = err.source();
    }
    false
}

/// The error of `security = "tls"` against a port that speaks plain SMTP: what to change.
fn plain_port(server: &str) -> Failure {
    Failure::Fatal(format!(
        "{server} answered in plain text, not TLS, so it does not take implicit TLS (`smtp.security = \"tls\"`): set `smtp.security = \"starttls\"` for a submission port (587, or 25), `smtp.port = 465` if the relay takes implicit TLS there, or `smtp.security = \"none\"` for a relay on this machine"
    ))
}

/// The text of the deepest cause of `e`: what actually went wrong, without lettre's wrappers.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// A failed TLS handshake: an untrusted certificate will not become trusted by trying again (the
/// run stops); other handshake failures may pass.
fn tls_failed(step: &str, server: &str, e: &(dyn std::error::Error + 'static)) -> Failure {
    match tls::certificate_problem(e) {
        Some(problem) => Failure::Fatal(format!("{step} with {server} failed: {problem}")),
        None => Failure::Transient(format!("{step} with {server} failed: {}", innermost(e))),
    }
}

/// A refusal while the session opens: 5xx refuses us (the run stops), 4xx or no reply is for
/// later.
fn session_refused(server: &str, reply: Option<Reply>, otherwise: String) -> Failure {
    match reply {
        Some(r) if r.code >= 500 => {
            Failure::Fatal(format!("{server} refused the session: {}", r.text))
        }
        Some(r) => Failure::Transient(format!("cannot open a session with {server}: {}", r.text)),
        None => Failure::Transient(format!("cannot open a session with {server}: {otherwise}")),
    }
}

/// Reads one reply (all its lines) in the plain-text part of a `STARTTLS` session.
async fn read_reply(reader: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut text = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        let code = trimmed
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: `{trimmed}`"),
                )
            })?;
        text.push(trimmed.get(4..).unwrap_or("").to_string());
        if trimmed.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply::new(code, &text.join(" ")));
        }
    }
}

/// The plain-text part of a `STARTTLS` session (RFC 3207): greeting, `EHLO`, `STARTTLS`. Returns
/// the socket, ready for the TLS handshake. A server silent for `timeout_secs` after the
/// connection is likely an implicit-TLS port waiting for our handshake: the error says so (and
/// stops the run on port 465, the implicit-TLS port of RFC 8314).
async fn starttls(
    tcp: TcpStream,
    hello: &ClientId,
    server: &str,
    timeout_secs: u64,
) -> Result<TcpStream, Failure> {
    let lost =
        |e: std::io::Error| Failure::Transient(format!("cannot open a session with {server}: {e}"));
    let mut reader = BufReader::new(tcp);
    let greeting = tokio::time::timeout(
        Duration::from_secs(timeout_secs),
        read_reply(&mut reader),
    )
    .await
    .map_err(|_| {
        let hint = format!(
            "{server} sent no greeting in {timeout_secs} s (`smtp.timeout_secs`); a port with implicit TLS waits for the TLS handshake instead: if this is one (465 usually), set `smtp.security = \"tls\"`"
        );
        if server.ends_with(":465") {
            Failure::Fatal(hint)
        } else {
            Failure::Transient(hint)
        }
    })?
    .map_err(lost)?;
    if greeting.code != 220 {
        return Err(session_refused(server, Some(greeting), String::new()));
    }
    reader
        .get_mut()
        .write_all(format!("EHLO {hello}\r\n").as_bytes())
        .await
        .map_err(lost)?;
    let ehlo = read_reply(&mut reader).await.map_err(lost)?;
    if ehlo.code != 250 {
        return Err(session_refused(server, Some(ehlo), String::new()));
    }
    let offers_starttls = ehlo
        .text
        .split_whitespace()
        .any(|word| word.eq_ignore_ascii_case("STARTTLS"));
    if !offers_starttls {
        return Err(Failure::Fatal(format!(
            "{server} does not offer STARTTLS (`smtp.security = \"starttls\"`), so it takes no encryption after a plain greeting: check `smtp.host` and `smtp.port` (a mail provider's submission port, 587, offers STARTTLS), or set `smtp.security = \"none\"` for a relay on this machine"
        )));
    }
    reader
        .get_mut()
        .write_all(b"STARTTLS\r\n")
        .await
        .map_err(lost)?;
    let ready = read_reply(&mut reader).await.map_err(lost)?;
    if ready.code != 220 {
        return Err(session_refused(server, Some(ready), String::new()));
    }
    if !reader.buffer().is_empty() {
        // Text after the 220 and before the handshake would be read as if it came over TLS
        // (the "STARTTLS command injection" attack): refuse it.
        return Err(Failure::Fatal(format!(
            "{server} sent data between its STARTTLS reply and the TLS handshake; refusing the session"
        )));
    }
    Ok(reader.into_inner())
}

impl Session {
    /// Opens a session as `s` configures: TCP with `TCP_NODELAY`, then TLS (implicit, or after
    /// `STARTTLS`) where configured, greeting, one `EHLO`, `AUTH` when credentials are set.
    ///
    /// # Errors
    /// [`Failure::Transient`] when the server cannot be reached, answers 4xx, or the TLS handshake
    /// fails; [`Failure::Fatal`] when it refuses us (5xx greeting, failed authentication, no
    /// STARTTLS), or its certificate is not trusted.
    pub async fn open(s: &SmtpSettings) -> Result<Session, Failure> {
        let smtp = &s.smtp;
        let server = format!("{}:{}", smtp.host, smtp.port);
        let hello = hello_name(smtp);
        let tcp = tokio::time::timeout(
            Duration::from_secs(smtp.timeout_secs),
            TcpStream::connect((smtp.host.as_str(), smtp.port)),
        )
        .await
        .map_err(|_| {
            Failure::Transient(format!(
                "timed out connecting to {server} ({} s, `smtp.timeout_secs`)",
                smtp.timeout_secs
            ))
        })?
        .map_err(|e| Failure::Transient(format!("cannot connect to {server}: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| Failure::Transient(format!("cannot set TCP_NODELAY: {e}")))?;
        let capture = Capture::new();
        let opened = match smtp.security {
            Security::None => {
                let wire = Wire::new(tcp, Vec::new(), capture.clone());
                AsyncSmtpConnection::connect_with_transport(Box::new(wire), &hello).await
            }
            Security::Tls => {
                let tls = s.roots.connect(&smtp.host, tcp).await.map_err(|e| {
                    if answered_in_plain_text(&e) {
                        plain_port(&server)
                    } else {
                        tls_failed("the TLS handshake", &server, &e)
                    }
                })?;
                let wire = Wire::new(tls, Vec::new(), capture.clone());
                AsyncSmtpConnection::connect_with_transport(Box::new(wire), &hello).await
            }
            Security::Starttls => {
                let tcp = starttls(tcp, &hello, &server, smtp.timeout_secs).await?;
                let tls = s
                    .roots
                    .connect(&smtp.host, tcp)
                    .await
                    .map_err(|e| tls_failed("the TLS handshake (STARTTLS)", &server, &e))?;
                // The server greeted us before STARTTLS; lettre expects a greeting, then sends
                // the EHLO that must follow the handshake.
                let greeting = format!("220 {} ESMTP (after STARTTLS)\r\n", smtp.host);
                let wire = Wire::new(tls, greeting.into_bytes(), capture.clone());
                AsyncSmtpConnection::connect_with_transport(Box::new(wire), &hello).await
            }
        };
        let mut conn = opened.map_err(|e| {
            if is_tls_failure(&e) {
                tls_failed("the TLS handshake", &server, &e)
            } else {
                session_refused(&server, reply_of(&e), reply_text(&e))
            }
        })?;
        let ext = Extensions::parse(&capture.finish());
        if let Some(credentials) = &s.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| match reply_of(&e) {
                    Some(r) if r.code < 500 => Failure::Transient(format!(
                        "authentication with {server} failed for now: {}",
                        r.text
                    )),
                    _ => Failure::Fatal(format!(
                        "authentication with {server} failed: {e}; check `smtp.username` and FEEDPOST_SMTP_PASSWORD"
                    )),
                })?;
        }
        Ok(Session {
            conn,
            timeout: Duration::from_secs(smtp.timeout_secs),
            ext,
            server,
        })
    }

    /// The largest message the server takes (`SIZE`, RFC 1870), in bytes, if it declares one.
    pub fn size_limit(&self) -> Option<u64> {
        self.ext.size.filter(|&n| n > 0)
    }

    /// What the refusals of a transaction of `message` are read against.
    fn context<'a>(&'a self, envelope: &'a Envelope, message: &[u8]) -> failure::Context<'a> {
        failure::Context {
            server: &self.server,
            sender: envelope.from().map_or("", |a| a.as_ref()),
            size: message.len(),
            size_limit: self.size_limit(),
        }
    }

    /// Opens a mail transaction for `message`: `MAIL FROM` (with `SIZE=` when the server declares
    /// a size, `BODY=8BITMIME` / `SMTPUTF8` where the message or an address needs it), `RCPT TO`
    /// for each envelope recipient, `DATA` — pipelined (RFC 2920) when offered. Nothing is
    /// delivered until [`Session::finish`].
    ///
    /// # Errors
    /// The classified [`Failure`]. Without a word sent: [`Failure::Unsendable`] for a non-ASCII
    /// address the server cannot take (no `SMTPUTF8`), [`Failure::Fatal`] for a message larger
    /// than its `SIZE`.
    pub async fn start(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Failure> {
        let needs_utf8 = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .find(|a| !AsRef::<str>::as_ref(*a).is_ascii());
        if let Some(address) = needs_utf8 {
            if !self.ext.smtputf8 {
                return Err(Failure::Unsendable(format!(
                    "not sent: `{address}` has a non-ASCII local part, which needs SMTPUTF8 (RFC 6531), and {} does not offer it; the address was not suppressed (a relay offering SMTPUTF8 can take it)",
                    self.server
                )));
            }
        }
        if let Some(limit) = self.size_limit() {
            if message.len() as u64 > limit {
                return Err(Failure::Fatal(failure::over_size(
                    message.len(),
                    limit,
                    &self.server,
                )));
            }
        }
        let mut params = Vec::new();
        if self.ext.size.is_some() {
            params.push(MailParameter::Size(message.len()));
        }
        if !message.is_ascii() && self.ext.eightbitmime {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if needs_utf8.is_some() {
            params.push(MailParameter::SmtpUtfEight);
        }
        let timeout = self.timeout;
        let pipelining = self.ext.pipelining;
        let result = tokio::time::timeout(
            timeout,
            transaction(&mut self.conn, pipelining, envelope, params),
        )
        .await;
        self.settle(result, envelope, message).await
    }

    /// Sends the message content and the end-of-data after [`Session::start`]; the reply to
    /// this is what accepts the message (RFC 5321 §4.1.1.4). Returns the reply.
    ///
    /// # Errors
    /// The classified [`Failure`].
    pub async fn finish(&mut self, envelope: &Envelope, message: &[u8]) -> Result<String, Failure> {
        let timeout = self.timeout;
        let result = tokio::time::timeout(timeout, content(&mut self.conn, message)).await;
        self.settle(result, envelope, message).await
    }

    /// Classifies the result of one step of `envelope`'s transaction and leaves the connection
    /// usable (after `RSET`) or closed: closed on a lost connection, a timeout or a 421.
    async fn settle<T>(
        &mut self,
        result: StepResult<T>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<T, Failure> {
        let (stage, e) = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(failed)) => failed,
            Err(_) => {
                self.conn.abort().await;
                return Err(Failure::Transient(format!(
                    "no reply within {} s",
                    self.timeout.as_secs()
                )));
            }
        };
        let reply = reply_of(&e);
        let failure = match &reply {
            Some(r) => classify(stage, r, &self.context(envelope, message)),
            None => Failure::Transient(reply_text(&e)),
        };
        let keep = reply.as_ref().is_some_and(|r| r.code != 421) && !self.conn.has_broken();
        let reset = keep
            && tokio::time::timeout(self.timeout, self.conn.command(Rset))
                .await
                .is_ok_and(|r| r.is_ok());
        if !reset {
            self.conn.abort().await;
        }
        Err(failure)
    }

    /// Whether the session can take another message.
    pub fn is_usable(&self) -> bool {
        !self.conn.has_broken()
    }

    /// Ends the session politely (`QUIT`), ignoring errors.
    pub async fn close(mut self) {
        if !self.conn.has_broken() {
            let _ = tokio::time::timeout(self.timeout, self.conn.quit()).await;
        }
    }

    /// Drops the session without finishing an open transaction (no end-of-data is sent, so
    /// nothing is delivered).
    pub async fn abort(&mut self) {
        self.conn.abort().await;
    }
}

#[async_trait]
impl Connection for Session {
    fn size_limit(&self) -> Option<u64> {
        Session::size_limit(self)
    }

    fn is_usable(&self) -> bool {
        Session::is_usable(self)
    }

    async fn start(&mut self, message: &Outgoing<'_>) -> Result<(), Failure> {
        Session::start(self, message.envelope, message.bytes).await
    }

    async fn finish(&mut self, message: &Outgoing<'_>) -> Result<Sent, Failure> {
        let reply = Session::finish(self, message.envelope, message.bytes).await?;
        Ok(Sent { reply })
    }

    async fn abort(&mut self) {
        Session::abort(self).await;
    }

    async fn close(self: Box<Self>) {
        Session::close(*self).await;
    }
}

type StepResult<T> =
    Result<Result<T, (Stage, lettre::transport::smtp::Error)>, tokio::time::error::Elapsed>;

/// MAIL, RCPT and DATA, without lettre's abort-on-any-error, so a refused recipient does not
/// cost a reconnect. With `pipelining` the commands go out in one write and the replies are read
/// in order (RFC 2920 §3.1): one round trip instead of three.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    pipelining: bool,
    envelope: &Envelope,
    params: Vec<MailParameter>,
) -> Result<(), (Stage, lettre::transport::smtp::Error)> {
    let mail = Mail::new(envelope.from().cloned(), params);
    if !pipelining {
        conn.command(mail).await.map_err(|e| (Stage::Mail, e))?;
        for to in envelope.to() {
            conn.command(Rcpt::new(to.clone(), vec![]))
                .await
                .map_err(|e| (Stage::Rcpt, e))?;
        }
        conn.command(Data).await.map_err(|e| (Stage::Data, e))?;
        return Ok(());
    }
    let mut commands = mail.to_string();
    for to in envelope.to() {
        commands.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
    }
    commands.push_str(&Data.to_string());
    let replies = envelope.to().len() + 2;
    let mut refused = None;
    for i in 0..replies {
        let reply = if i == 0 {
            conn.command(Content(&commands)).await
        } else {
            conn.read_response().await
        };
        let stage = match i {
            0 => Stage::Mail,
            _ if i + 1 == replies => Stage::Data,
            _ => Stage::Rcpt,
        };
        match reply {
            Ok(_) if i + 1 == replies && refused.is_some() => {
                // DATA accepted though a command before it was refused: the server waits for
                // content we will not send. Drop the session; no end-of-data, nothing delivered.
                conn.abort().await;
            }
            Ok(_) => {}
            // The connection is gone: report what the server said before, if anything.
            Err(e) if e.status().is_none() => {
                conn.abort().await;
                return Err(refused.unwrap_or((stage, e)));
            }
            // The first refusal is the one that counts (a refused RCPT makes DATA fail too).
            Err(e) => {
                refused.get_or_insert((stage, e));
            }
        }
    }
    refused.map_or(Ok(()), Err)
}

/// The content and the end-of-data; returns the server's reply.
///
/// lettre's `message` dot-stuffs one byte at a time (a fifth of the CPU time of a send), so the
/// content is stuffed here with a substring search and written through `command`, which writes
/// the bytes as they are and reads one reply. A message that is not UTF-8 (never one that
/// `IssueMail` builds) goes through `message` instead.
async fn content(
    conn: &mut AsyncSmtpConnection,
    message: &[u8],
) -> Result<String, (Stage, lettre::transport::smtp::Error)> {
    let stuffed = data_content(message);
    let response = match std::str::from_utf8(&stuffed) {
        Ok(text) => conn.command(Content(text)).await,
        Err(_) => conn.message(message).await,
    }
    .map_err(|e| (Stage::Message, e))?;
    Ok(format!(
        "{} {}",
        response.code(),
        response.message().collect::<Vec<_>>().join(" ")
    ))
}

/// DATA content written as it is.
struct Content<'a>(&'a str);

impl std::fmt::Display for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// `message` as DATA content (RFC 5321 §4.5.2): every line starting with `.` gets another `.`,
/// then `CRLF . CRLF` ends the data. Lines start after CRLF; the bytes sent are the same as
/// lettre's `message` sends.
fn data_content(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    let mut copied = 0;
    for at in memchr::memmem::find_iter(message, b"\r\n.") {
        out.extend_from_slice(&message[copied..at + 2]);
        out.push(b'.');
        copied = at + 2;
    }
    out.extend_from_slice(&message[copied..]);
    out.extend_from_slice(b"\r\n.\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_content_stuffs_dots_at_line_starts_only() {
        assert_eq!(data_content(b""), b"\r\n.\r\n");
        assert_eq!(
            data_content(b".a\r\n.\r\n..b\r\nc.d\r\n"),
            b"..a\r\n..\r\n...b\r\nc.d\r\n\r\n.\r\n"
        );
        // A bare LF does not start a line; CR CR LF does.
        assert_eq!(data_content(b"a\n.b\r\r\n.c"), b"a\n.b\r\r\n..c\r\n.\r\n");
    }
}
