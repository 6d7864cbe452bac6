//! The socket under lettre's SMTP connection, and what the server's `EHLO` reply offers.
//!
//! lettre sends `EHLO` itself when a connection opens and keeps only the extensions it uses
//! (`STARTTLS`, `AUTH`, `8BITMIME`, `SMTPUTF8`); feedpost also needs `PIPELINING` (RFC 2920)
//! and `SIZE` (RFC 1870). Asking again would cost an extra round trip per connection, so the
//! [`Wire`] under lettre copies what lettre reads while the session opens — the greeting and the
//! `EHLO` reply — and [`Extensions::parse`] reads it. After our own `STARTTLS`, the server sends
//! no second greeting: the wire then presents one, so lettre goes on with the `EHLO` that RFC
//! 3207 requires after the handshake.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the server's `EHLO` reply offers, of what feedpost uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE n` (RFC 1870): the largest message it takes, in bytes; `Some(0)` = no fixed limit.
    pub size: Option<u64>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `8BITMIME` (RFC 6152).
    pub eightbitmime: bool,
}

impl Extensions {
    /// Reads the extensions from a session's opening as the server sent it: its greeting (`220`
    /// lines) then its `EHLO` reply (`250-KEYWORD params` lines; the first names the server).
    pub fn parse(opening: &str) -> Extensions {
        let mut ext = Extensions::default();
        let mut first = true;
        for line in opening.lines() {
            let Some(rest) = line.strip_prefix("250") else {
                continue;
            };
            let rest = rest.trim_start_matches(['-', ' ']);
            if first {
                // The first line of the reply is the server's name and greeting.
                first = false;
                continue;
            }
            let mut words = rest.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "8BITMIME" => ext.eightbitmime = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => {}
            }
        }
        ext
    }
}

/// A copy of what is read from a [`Wire`] while it is on.
#[derive(Debug, Default)]
pub struct Capture {
    on: AtomicBool,
    bytes: Mutex<Vec<u8>>,
}

impl Capture {
    /// A capture that copies from the start.
    pub fn new() -> Arc<Capture> {
        Arc::new(Capture {
            on: AtomicBool::new(true),
            bytes: Mutex::new(Vec::new()),
        })
    }

    /// Stops copying and returns what was read, as text.
    pub fn finish(&self) -> String {
        self.on.store(false, Ordering::SeqCst);
        let bytes = self
            .bytes
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A stream lettre drives: the TCP or TLS socket, with a greeting to present first (after our
/// own `STARTTLS`), and a [`Capture`] of what is read while the session opens.
#[derive(Debug)]
pub struct Wire<S> {
    inner: S,
    greeting: Vec<u8>,
    given: usize,
    capture: Arc<Capture>,
}

impl<S> Wire<S> {
    /// Wraps `inner`; `greeting` is read before anything from `inner` (empty: none).
    pub fn new(inner: S, greeting: Vec<u8>, capture: Arc<Capture>) -> Wire<S> {
        Wire {
            inner,
            greeting,
            given: 0,
            capture,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.given < this.greeting.len() {
            let n = (this.greeting.len() - this.given).min(buf.remaining());
            buf.put_slice(&this.greeting[this.given..this.given + n]);
            this.given += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.capture.on.load(Ordering::Relaxed) {
            if let Ok(mut copy) = this.capture.bytes.lock() {
                copy.extend_from_slice(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncTokioStream> AsyncTokioStream for Wire<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_read_from_the_ehlo_reply_only() {
        let opening = "220 mx.example ESMTP Postfix\r\n250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
        assert_eq!(
            Extensions::parse(opening),
            Extensions {
                pipelining: true,
                size: Some(10_240_000),
                smtputf8: false,
                eightbitmime: true
            }
        );
        let bare = "220 x\r\n250-x Hello\r\n250-SIZE\r\n250 SMTPUTF8\r\n";
        let ext = Extensions::parse(bare);
        assert_eq!(
            (ext.size, ext.smtputf8, ext.pipelining),
            (Some(0), true, false)
        );
        // A server named PIPELINING does not offer it.
        assert!(!Extensions::parse("220 x\r\n250 PIPELINING\r\n").pipelining);
    }

    #[tokio::test]
    async fn the_wire_presents_its_greeting_then_copies_what_it_reads() {
        use tokio::io::AsyncReadExt;
        let capture = Capture::new();
        let inner: &[u8] = b"250 ok\r\nlater";
        let mut wire = Wire::new(inner, b"220 hi\r\n".to_vec(), capture.clone());
        let mut first = vec![0; 8];
        wire.read_exact(&mut first).await.unwrap();
        assert_eq!(first, b"220 hi\r\n");
        let mut next = vec![0; 8];
        wire.read_exact(&mut next).await.unwrap();
        assert_eq!(capture.finish(), "250 ok\r\n");
        let mut rest = String::new();
        wire.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "later");
        assert_eq!(capture.finish(), "", "nothing is copied once finished");
    }
}
