//! A TLS front for the test SMTP server: terminates TLS on loopback and passes the session on to
//! a plain [`SmtpServer`], which records the messages as usual.
//!
//! * [`TlsFront::implicit`]: TLS from the first byte ("SMTPS", RFC 8314), for
//!   `smtp.security = "tls"`.
//! * [`TlsFront::starttls`]: greets in plain text and offers only `STARTTLS` (RFC 3207); after
//!   the handshake the client's next `EHLO` and everything after it reach the backend. Nothing
//!   reaches the backend without TLS.
//!
//! The server certificate (for `localhost` and `127.0.0.1`) is signed by a CA made for each
//! front: the client trusts it only through `smtp.ca_file` = [`TlsFront::ca_pem`].
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::smtp_server::SmtpServer;

pub struct TlsFront {
    port: u16,
    ca_pem: String,
    cert_der: Vec<u8>,
    handshakes: Arc<AtomicUsize>,
    ehlos: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsFront {
    /// TLS from the first byte, in front of `backend`.
    pub fn implicit(backend: &SmtpServer) -> TlsFront {
        TlsFront::start(backend.addr(), false)
    }

    /// Plain greeting, `STARTTLS`, then `backend`.
    pub fn starttls(backend: &SmtpServer) -> TlsFront {
        TlsFront::start(backend.addr(), true)
    }

    /// As [`TlsFront::starttls`] or [`TlsFront::implicit`], with a certificate made the way
    /// `openssl req -x509 -subj /CN=localhost` makes one: self-signed, `CA:TRUE`, no subject
    /// alternative name. [`TlsFront::ca_pem`] is that certificate itself.
    pub fn self_signed(backend: &SmtpServer, starttls: bool) -> TlsFront {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        TlsFront::serve(
            backend.addr(),
            starttls,
            cert.der().clone(),
            key.serialize_der(),
            cert.pem(),
        )
    }

    /// The SHA-256 fingerprint of the server certificate's DER, `AB:CD:…` as openssl prints it.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(&self.cert_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The loopback port to point the client at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM of the CA that signed the server certificate (for [`TlsFront::self_signed`],
    /// the certificate itself).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `EHLO` commands the front answered in plain text, before `STARTTLS`.
    pub fn plain_ehlos(&self) -> usize {
        self.ehlos.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    fn start(backend: SocketAddr, starttls: bool) -> TlsFront {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        TlsFront::serve(
            backend,
            starttls,
            cert.der().clone(),
            key.serialize_der(),
            ca.pem(),
        )
    }

    fn serve(
        backend: SocketAddr,
        starttls: bool,
        cert: rustls::pki_types::CertificateDer<'static>,
        key: Vec<u8>,
        ca_pem: String,
    ) -> TlsFront {
        let cert_der = cert.to_vec();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
                )
                .expect("server TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("TLS front runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("TLS front: bind");
        let port = listener.local_addr().expect("TLS front: local_addr").port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let ehlos = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        let ehlo_counter = ehlos.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                let ehlo_counter = ehlo_counter.clone();
                tokio::spawn(async move {
                    let _ = serve(client, acceptor, backend, starttls, counter, ehlo_counter).await;
                });
            }
        });
        TlsFront {
            port,
            ca_pem,
            cert_der,
            handshakes,
            ehlos,
            runtime: Some(runtime),
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(
    client: TcpStream,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    starttls: bool,
    handshakes: Arc<AtomicUsize>,
    ehlos: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let client = if starttls {
        match plain_until_starttls(client, &ehlos).await? {
            Some(client) => client,
            None => return Ok(()),
        }
    } else {
        client
    };
    let mut tls = acceptor.accept(client).await?;
    handshakes.fetch_add(1, Ordering::SeqCst);
    let backend = TcpStream::connect(backend).await?;
    backend.set_nodelay(true)?;
    let mut backend = BufReader::new(backend);
    if starttls {
        // The client greeted us already; it gets no second greeting.
        let mut greeting = String::new();
        backend.read_line(&mut greeting).await?;
    }
    tokio::io::copy_bidirectional(&mut tls, &mut backend).await?;
    Ok(())
}

/// The plain-text part of a STARTTLS session; the socket once `STARTTLS` is answered, or `None`
/// when the client left.
async fn plain_until_starttls(
    client: TcpStream,
    ehlos: &AtomicUsize,
) -> std::io::Result<Option<TcpStream>> {
    let mut client = BufReader::new(client);
    client
        .write_all(b"220 localhost ESMTP TLS front\r\n")
        .await?;
    let mut line = String::new();
    loop {
        line.clear();
        if client.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                ehlos.fetch_add(1, Ordering::SeqCst);
                b"250-localhost\r\n250 STARTTLS\r\n"
            }
            "STARTTLS" => {
                client
                    .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                    .await?;
                // The client sends nothing more before the handshake, so nothing is buffered.
                return Ok(Some(client.into_inner()));
            }
            "QUIT" => {
                client.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(None);
            }
            _ => b"530 5.7.0 Must issue a STARTTLS command first\r\n",
        };
        client.write_all(reply).await?;
    }
}
