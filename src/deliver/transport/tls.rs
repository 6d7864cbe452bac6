//! TLS for SMTP connections: which certificates are trusted, and the stream lettre drives.
//!
//! Part of the transport stage. `STARTTLS` (RFC 3207) is lettre's own upgrade of the socket we
//! opened; implicit TLS ("SMTPS", RFC 8314 §3.3) is a rustls handshake done here on that same
//! socket (`TCP_NODELAY` set), handed to lettre as an [`AsyncTokioStream`]. Both trust the public
//! roots of `webpki-roots` (as lettre's `tokio1-rustls-tls` does) plus the certificates of
//! `smtp.ca_file`, for relays whose certificate a private CA signed.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _, Result};
use lettre::transport::smtp::client::{AsyncTokioStream, Certificate, TlsParameters};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// The certificates trusted besides the public roots: those of `smtp.ca_file` (PEM), if any.
#[derive(Debug, Clone, Default)]
pub struct TrustedRoots {
    pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
}

impl TrustedRoots {
    /// Reads the PEM file `path` (one or more `CERTIFICATE` blocks).
    ///
    /// # Errors
    /// The file cannot be read, holds no certificate, or a certificate is not valid PEM/DER; the
    /// message names the file.
    pub fn from_pem_file(path: &Path) -> Result<TrustedRoots> {
        let pem = std::fs::read(path)
            .with_context(|| format!("failed to read `smtp.ca_file` `{}`", path.display()))?;
        TrustedRoots::from_pem(pem)
            .with_context(|| format!("`smtp.ca_file` `{}` is not usable", path.display()))
    }

    /// Parses PEM text holding one or more `CERTIFICATE` blocks.
    ///
    /// # Errors
    /// No certificate, broken PEM, or a certificate rustls cannot use as a trust anchor.
    pub fn from_pem(pem: Vec<u8>) -> Result<TrustedRoots> {
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("invalid PEM: {e:?}"))?;
        if certs.is_empty() {
            bail!("no `-----BEGIN CERTIFICATE-----` block found");
        }
        let mut store = RootCertStore::empty();
        for cert in &certs {
            store
                .add(cert.clone())
                .map_err(|e| anyhow::anyhow!("a certificate cannot be trusted: {e}"))?;
        }
        Ok(TrustedRoots { pem, certs })
    }

    /// lettre's TLS parameters for `STARTTLS` with `host` (the name the certificate must carry).
    ///
    /// # Errors
    /// `host` is not a valid DNS name or IP address.
    pub fn starttls_parameters(
        &self,
        host: &str,
    ) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut builder = TlsParameters::builder(host.to_string());
        if !self.certs.is_empty() {
            builder = builder.add_root_certificate(Certificate::from_pem(&self.pem)?);
        }
        builder.build_rustls()
    }

    /// The TLS handshake for implicit TLS over `tcp`, checking that the certificate is valid for
    /// `host`.
    ///
    /// # Errors
    /// An invalid `host` name, or a failed handshake (see [`certificate_problem`]).
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<TlsSocket> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &self.certs {
            roots.add(cert.clone()).map_err(io::Error::other)?;
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        Ok(TlsSocket(stream))
    }
}

/// When `error` (or one of its causes) is a certificate the client does not trust, what is
/// wrong and how to fix it.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(why)) = tls {
            return Some(format!(
                "the server's certificate is not trusted ({why:?}); if a private CA signed it, set `smtp.ca_file` to that CA's PEM file"
            ));
        }
        cause = e.source();
    }
    None
}

/// A TLS session over a TCP socket, as lettre's connection reads and writes it.
#[derive(Debug)]
pub struct TlsSocket(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsSocket {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_a_certificate_is_refused() {
        let err = TrustedRoots::from_pem(b"not a certificate\n".to_vec()).unwrap_err();
        assert!(format!("{err:#}").contains("BEGIN CERTIFICATE"), "{err:#}");
    }

    #[test]
    fn a_self_signed_certificate_is_accepted_as_a_root() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let roots = TrustedRoots::from_pem(cert.cert.pem().into_bytes()).unwrap();
        assert_eq!(roots.certs.len(), 1);
        assert!(roots.starttls_parameters("localhost").is_ok());
    }
}
