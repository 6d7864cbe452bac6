//! TLS for SMTP connections: which certificates are trusted, and the stream lettre drives.
//!
//! Part of the transport stage. Both implicit TLS ("SMTPS", RFC 8314 §3.3) and `STARTTLS` (RFC
//! 3207) are a rustls handshake done here on the socket we opened (`TCP_NODELAY` set), handed to
//! lettre as an [`AsyncTokioStream`]. The server's certificate is trusted when:
//!
//! - `smtp.tls_pin_sha256` is set: its SHA-256 fingerprint is that one (nothing else counts);
//! - it is one of the certificates of `smtp.ca_file` itself: trusted as it is, like a pin — so
//!   a relay's self-signed certificate made the default `openssl req -x509` way (`CA:TRUE`, no
//!   subject alternative name), which TLS would refuse as a CA posing as a server, works when
//!   it is the one configured;
//! - otherwise it chains to the public roots of `webpki-roots` or to a CA of `smtp.ca_file`, and
//!   carries the name `smtp.host`.
//!
//! The handshake's signatures are checked in every case. A certificate refused says why and
//! what to set ([`certificate_problem`]).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _, Result};
use lettre::transport::smtp::client::AsyncTokioStream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use tokio_rustls::TlsConnector;

/// The certificates trusted besides the public roots (those of `smtp.ca_file`, PEM) and the
/// pinned fingerprint (`smtp.tls_pin_sha256`), if any.
#[derive(Debug, Clone, Default)]
pub struct TrustedRoots {
    certs: Vec<CertificateDer<'static>>,
    pin: Option<[u8; 32]>,
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
        TrustedRoots::from_pem(&pem)
            .with_context(|| format!("`smtp.ca_file` `{}` is not usable", path.display()))
    }

    /// Parses PEM text holding one or more `CERTIFICATE` blocks.
    ///
    /// # Errors
    /// No certificate, or broken PEM.
    pub fn from_pem(pem: &[u8]) -> Result<TrustedRoots> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("invalid PEM: {e:?}"))?;
        if certs.is_empty() {
            bail!("no `-----BEGIN CERTIFICATE-----` block found");
        }
        Ok(TrustedRoots { certs, pin: None })
    }

    /// Trusts only the certificate whose SHA-256 fingerprint (of its DER bytes) is `pin`.
    pub fn with_pin(mut self, pin: [u8; 32]) -> TrustedRoots {
        self.pin = Some(pin);
        self
    }

    /// The rustls client configuration that trusts what the module docs describe.
    fn client_config(&self) -> io::Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // A certificate that is no usable CA (an end-entity certificate, say) is still trusted
        // as it is, below.
        let _ = roots.add_parsable_certificates(self.certs.iter().cloned());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(io::Error::other)?;
        let verifier = Verifier {
            webpki,
            exact: self.certs.clone(),
            pin: self.pin,
        };
        Ok(ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    /// The TLS handshake over `tcp` with the server `host` (the name its certificate must carry,
    /// unless trusted as it is).
    ///
    /// # Errors
    /// An invalid `host` name, or a failed handshake (see [`certificate_problem`]).
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<TlsSocket> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let config = self.client_config()?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        Ok(TlsSocket(stream))
    }
}

/// The certificate check of the module docs.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    exact: Vec<CertificateDer<'static>>,
    pin: Option<[u8; 32]>,
}

/// Why a certificate was not trusted, with its fingerprint, for the error the editor sees.
#[derive(Debug)]
struct Untrusted {
    why: String,
    sha256: String,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (the server's certificate has the SHA-256 fingerprint {})",
            self.why, self.sha256
        )
    }
}

impl std::error::Error for Untrusted {}

/// `AB:CD:…`, as `openssl x509 -noout -fingerprint -sha256` prints it.
pub fn fingerprint(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn untrusted(why: String, cert: &CertificateDer<'_>) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Untrusted {
        why,
        sha256: fingerprint(cert),
    }))))
}

/// What to say about a certificate refused for `error`.
fn explain(error: &CertificateError, host: &str) -> String {
    let ca_as_server = matches!(error, CertificateError::Other(other)
        if matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)));
    match error {
        _ if ca_as_server => "the server presents a CA certificate (`CA:TRUE`, as `openssl req -x509` makes by default) as its own, which TLS refuses; put this very certificate in `smtp.ca_file` (it is then trusted as it is), or set `smtp.tls_pin_sha256` to its fingerprint, or give the relay a certificate without `CA:TRUE`".to_string(),
        CertificateError::UnknownIssuer => "the server's certificate is not trusted: no trusted CA signed it; if a private CA signed it, set `smtp.ca_file` to that CA's PEM file; if it is self-signed, put the certificate itself in `smtp.ca_file` or set `smtp.tls_pin_sha256` to its fingerprint".to_string(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
            "the server's certificate is not valid for the name `{host}` (`smtp.host`); connect by a name it carries, or set `smtp.tls_pin_sha256` to its fingerprint"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired; ask the relay's administrator to renew it".to_string()
        }
        other => format!("the server's certificate is not trusted ({other:?}); if a private CA signed it, set `smtp.ca_file` to that CA's PEM file"),
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = self.pin {
            let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
            return if digest == pin {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(untrusted(
                    format!(
                        "the server's certificate is not the one pinned by `smtp.tls_pin_sha256` ({})",
                        fingerprint_of_pin(&pin)
                    ),
                    end_entity,
                ))
            };
        }
        if self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(why) => {
                    untrusted(explain(&why, &server_name.to_str()), end_entity)
                }
                other => other,
            })
    }

    // The handshake's signatures are checked as WebPKI checks them, with the same algorithms.
    fn verify_tls12_signature(&self, m: &[u8], c: &Cert<'_>, d: &Dss) -> SignatureCheck {
        self.webpki.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &Cert<'_>, d: &Dss) -> SignatureCheck {
        self.webpki.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

type Cert<'a> = CertificateDer<'a>;
type Dss = DigitallySignedStruct;
type SignatureCheck = Result<HandshakeSignatureValid, rustls::Error>;

fn fingerprint_of_pin(pin: &[u8; 32]) -> String {
    pin.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads a SHA-256 fingerprint written as 64 hex digits, with or without `:` between the bytes
/// (as `openssl x509 -noout -fingerprint -sha256` prints it, `SHA256 Fingerprint=` prefix
/// allowed).
///
/// # Errors
/// Not 32 bytes of hex.
pub fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let text = text
        .split_once('=')
        .map_or(text, |(_, fingerprint)| fingerprint.trim());
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{text}` is not a SHA-256 fingerprint: write the 64 hex digits `openssl x509 -in cert.pem -noout -fingerprint -sha256` prints"
        ));
    }
    let mut pin = [0u8; 32];
    for (i, byte) in pin.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(pin)
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
        match tls {
            Some(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
                if other.0.downcast_ref::<Untrusted>().is_some() =>
            {
                return other.0.downcast_ref::<Untrusted>().map(ToString::to_string);
            }
            Some(rustls::Error::InvalidCertificate(why)) => {
                return Some(explain(why, "smtp.host"));
            }
            _ => {}
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
        let err = TrustedRoots::from_pem(b"not a certificate\n").unwrap_err();
        assert!(format!("{err:#}").contains("BEGIN CERTIFICATE"), "{err:#}");
    }

    #[test]
    fn a_self_signed_certificate_is_accepted_as_a_root() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let roots = TrustedRoots::from_pem(cert.cert.pem().as_bytes()).unwrap();
        assert_eq!(roots.certs.len(), 1);
        assert!(roots.client_config().is_ok());
    }

    #[test]
    fn pins_are_read_as_openssl_prints_them() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let printed = format!("SHA256 Fingerprint={}", fingerprint(cert.cert.der()));
        let pin = parse_pin(&printed).unwrap();
        assert_eq!(pin, <[u8; 32]>::from(Sha256::digest(cert.cert.der())));
        assert_eq!(parse_pin(&hex_of(&pin)).unwrap(), pin);
        assert!(parse_pin("AB:CD").unwrap_err().contains("64 hex digits"));
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
