//! DKIM signing: the last step of composing a message, between [`IssueMail::personalise`] and
//! the transport.
//!
//! [`Signer`] is the seam: [`Unsigned`] hands the message on as it is, [`DkimSigner`] prepends a
//! `DKIM-Signature` header (RFC 6376) made with an RSA (`rsa-sha256`, 2048 bits or more) or an
//! Ed25519 (`ed25519-sha256`, RFC 8463) key. [`SigningPool`] runs a signer on worker threads, one
//! per core, behind an async API, so the delivery engine — one thread driving every connection —
//! signs ahead without waiting on the CPU-bound RSA operation.
//!
//! What we write ourselves is the part DKIM defines: `relaxed/relaxed` canonicalization (RFC
//! 6376 §3.4.2, §3.4.4), choosing the signed header fields, and formatting the header. The
//! cryptography (SHA-256, RSASSA-PKCS1-v1_5, Ed25519) is AWS-LC's, through `aws-lc-rs`; PEM
//! parsing is `rustls-pki-types`'.
//!
//! A signature depends only on the message bytes, the key and the time passed in (`t=`), so
//! signing the same message again with the same time gives the same bytes: a message resent
//! after a crash is identical to the one that may have gone out.
//!
//! [`IssueMail::personalise`]: crate::mail::IssueMail::personalise

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use anyhow::{bail, Context as _};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::config::{Config, Dkim};

/// The header fields signed when present, in the order `h=` lists them: the ones RFC 8058 and
/// the issue require, and `Reply-To`, where a forger would send the replies. Each is also listed
/// once more than it occurs ("oversigned", RFC 6376 §8.15), so a header field of these names
/// added to a signed message — a second `From`, a `List-Unsubscribe-Post` on a message that had
/// none — breaks the signature instead of riding on it.
pub const SIGNED_HEADERS: [&str; 11] = [
    "from",
    "reply-to",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// The shortest RSA key we sign with, in bits (RFC 8301 §3.2 forbids less than 1024; receivers
/// such as Gmail expect 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// Lines of the `DKIM-Signature` header are folded to at most this many characters (RFC 5322
/// §2.1.1), CRLF not counted.
const LINE: usize = 78;

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The bytes are not an RFC 5322 message with CRLF line ends, which is what the composer
    /// writes and what DKIM canonicalization is defined over; a bug upstream, never the
    /// recipient's fault.
    #[error("cannot DKIM-sign the message: {0}")]
    Malformed(&'static str),
    /// The crypto library refused to sign (it does not for a key that loaded).
    #[error("the crypto library failed to make the DKIM signature")]
    Crypto,
    /// The [`SigningPool`]'s workers are gone (the pool was dropped, or a worker panicked).
    #[error("the DKIM signing pool stopped before signing the message")]
    PoolStopped,
}

/// Signs a complete message: the seam between composing a message and handing it to a
/// transport.
///
/// Implementations: [`Unsigned`] (no `[dkim]` table) and [`DkimSigner`] (RSA or Ed25519).
pub trait Signer: Send + Sync + fmt::Debug {
    /// Returns `message` — RFC 5322 bytes with CRLF line ends, as
    /// [`IssueMail::personalise`](crate::mail::IssueMail::personalise) writes them — ready for
    /// the transport: unchanged, or with a signature header prepended. `time` is the signing
    /// time (`t=`, seconds since the Unix epoch, UTC). The same message and time always give the
    /// same bytes, so pass a time kept with the delivery — the publish start recorded in the
    /// ledger, or the message's own `Date` — not the clock at the moment of sending: a resend
    /// after a crash is then byte for byte the message that may have gone out.
    ///
    /// # Errors
    /// [`SignError::Malformed`] when `message` has no header block or a bare CR or LF;
    /// [`SignError::Crypto`] if the crypto library fails.
    fn sign(&self, message: Vec<u8>, time: DateTime<Utc>) -> Result<Vec<u8>, SignError>;
}

/// The signer for a site without a `[dkim]` table: hands every message on unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsigned;

impl Signer for Unsigned {
    fn sign(&self, message: Vec<u8>, _time: DateTime<Utc>) -> Result<Vec<u8>, SignError> {
        Ok(message)
    }
}

/// The signer `config` asks for: a [`DkimSigner`] with the `[dkim]` key, or [`Unsigned`].
///
/// # Errors
/// The key file cannot be read or holds no usable key (see [`DkimSigner::from_config`]).
pub fn signer_for(config: &Config) -> anyhow::Result<Arc<dyn Signer>> {
    Ok(match &config.dkim {
        Some(dkim) => Arc::new(DkimSigner::from_config(dkim)?),
        None => Arc::new(Unsigned),
    })
}

/// A DKIM private key.
enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// The signature algorithm of a [`DkimSigner`], as `a=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-sha256` (RFC 6376 §3.3.1), with the key's modulus length in bits.
    RsaSha256 {
        /// The key's length in bits (2048 or more).
        bits: usize,
    },
    /// `ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` tag value.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 { .. } => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Algorithm::RsaSha256 { bits } => write!(f, "rsa-sha256 ({bits}-bit key)"),
            Algorithm::Ed25519Sha256 => f.write_str("ed25519-sha256"),
        }
    }
}

/// Signs messages with DKIM (RFC 6376): `c=relaxed/relaxed`, SHA-256, the header fields of
/// [`SIGNED_HEADERS`] oversigned, no `l=` (the whole body is signed), no `x=`.
///
/// Its `Debug` output names the domain, selector and algorithm, never the key.
pub struct DkimSigner {
    domain: String,
    selector: String,
    key: Key,
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimSigner")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// Loads the key of the `[dkim]` table (`dkim.private_key`, a PEM file) and signs as
    /// `d=dkim.domain`, `s=dkim.selector`.
    ///
    /// # Errors
    /// The file cannot be read, is not PEM, holds no private key, an encrypted or OpenSSH key,
    /// a key of another kind than RSA or Ed25519, or an RSA key shorter than 2048 bits. Each
    /// message starts with `` `dkim.private_key` `` and names the file, never its contents.
    pub fn from_config(dkim: &Dkim) -> anyhow::Result<DkimSigner> {
        let path = &dkim.private_key;
        let pem = Zeroizing::new(std::fs::read(path).with_context(|| {
            format!(
                "`dkim.private_key`: cannot read `{}` (the path is relative to the config file; \
                 make a key with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem`)",
                path.display()
            )
        })?);
        warn_if_readable_by_others(path);
        DkimSigner::from_pem(&pem, &dkim.domain, &dkim.selector)
            .with_context(|| format!("`dkim.private_key`: `{}`", path.display()))
    }

    /// A signer for `d=domain`, `s=selector` with the first private key in `pem`: RSA as PKCS#8
    /// (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`), or Ed25519 as PKCS#8.
    /// `domain` and `selector` are taken as they are (the config validated them).
    ///
    /// # Errors
    /// As [`DkimSigner::from_config`], without the file name; the message never quotes `pem`.
    pub fn from_pem(pem: &[u8], domain: &str, selector: &str) -> anyhow::Result<DkimSigner> {
        let der = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(der) => der,
            Err(rustls_pki_types::pem::Error::NoItemsFound) => bail!(no_key_reason(pem)),
            Err(_) => bail!(
                "is not a readable PEM file: a line is damaged between `-----BEGIN …-----` and \
                 `-----END …-----`; export the key again"
            ),
        };
        let key = match &der {
            PrivateKeyDer::Pkcs1(pkcs1) => {
                Key::Rsa(RsaKeyPair::from_der(pkcs1.secret_pkcs1_der()).map_err(rsa_rejected)?)
            }
            PrivateKeyDer::Pkcs8(pkcs8) => {
                let der = pkcs8.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(rsa) => Key::Rsa(rsa),
                    Err(e) if e.description_() == "WrongAlgorithm" => Key::Ed25519(
                        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| {
                            anyhow::anyhow!(
                                "holds a private key that is neither RSA nor Ed25519; DKIM signs \
                                 with those two only (RFC 6376, RFC 8463)"
                            )
                        })?,
                    ),
                    Err(e) => return Err(rsa_rejected(e)),
                }
            }
            _ => bail!(
                "holds an EC (ECDSA) key, which DKIM cannot sign with; use an RSA (2048 bits or \
                 more) or an Ed25519 key"
            ),
        };
        Ok(DkimSigner {
            domain: domain.to_string(),
            selector: selector.to_string(),
            key,
        })
    }

    /// The signing domain, `d=`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector, `s=`.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The signature algorithm, from the key.
    pub fn algorithm(&self) -> Algorithm {
        match &self.key {
            Key::Rsa(rsa) => Algorithm::RsaSha256 {
                bits: rsa.public_modulus_len() * 8,
            },
            Key::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// Where receivers look up the public key: `selector._domainkey.domain` (RFC 6376 §3.6.2.1).
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record to publish at [`DkimSigner::dns_name`]: `v=DKIM1; k=rsa; p=<base64
    /// SubjectPublicKeyInfo>` or `v=DKIM1; k=ed25519; p=<base64 of the 32-byte key>` (RFC 6376
    /// §3.6.1, RFC 8463 §4.2). Holds only the public key.
    pub fn dns_record(&self) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match &self.key {
            Key::Rsa(rsa) => {
                let spki = rsa
                    .public_key()
                    .as_der()
                    .expect("a loaded RSA key has a public key");
                format!("v=DKIM1; k=rsa; p={}", b64(spki.as_ref()))
            }
            Key::Ed25519(ed) => {
                format!("v=DKIM1; k=ed25519; p={}", b64(ed.public_key().as_ref()))
            }
        }
    }

    /// The `DKIM-Signature` header field for `message` at `time`: folded lines (at most 78
    /// characters, CRLF-terminated), to be put in front of the message.
    ///
    /// # Errors
    /// As [`Signer::sign`].
    pub fn signature_header(
        &self,
        message: &[u8],
        time: DateTime<Utc>,
    ) -> Result<Vec<u8>, SignError> {
        let mut header = Vec::with_capacity(self.header_room());
        self.write_header(message, time, &mut header)?;
        Ok(header)
    }

    /// About how many bytes the header takes: room enough to write it without reallocating.
    fn header_room(&self) -> usize {
        let signature = match &self.key {
            Key::Rsa(rsa) => rsa.public_modulus_len(),
            Key::Ed25519(_) => 64,
        };
        1024 + self.domain.len() + self.selector.len() + 2 * signature
    }

    /// Appends the `DKIM-Signature` header field for `message` at `time` to `out`.
    fn write_header(
        &self,
        message: &[u8],
        time: DateTime<Utc>,
        out: &mut Vec<u8>,
    ) -> Result<(), SignError> {
        let (headers, body) = split_message(message)?;
        let body_hash = body_hash(body)?;
        let fields = header_fields(headers)?;

        // Each name once per instance, then once more for the instance that must not exist.
        let mut signed_names: Vec<&str> = Vec::with_capacity(2 * SIGNED_HEADERS.len() + 4);
        for name in SIGNED_HEADERS {
            let count = fields.iter().filter(|f| f.is_named(name)).count();
            signed_names.extend(std::iter::repeat_n(name, count + 1));
        }
        let mut data = Vec::with_capacity(headers.len() + 1024);
        canonical_signed_headers(&fields, &signed_names, &mut data);

        let start = out.len();
        let mut header = Folded::new(out, b"DKIM-Signature:");
        header.word(&[b"v=1;"]);
        header.word(&[b"a=", self.algorithm().tag().as_bytes(), b";"]);
        header.word(&[b"c=relaxed/relaxed;"]);
        header.word(&[b"d=", self.domain.as_bytes(), b";"]);
        header.word(&[b"s=", self.selector.as_bytes(), b";"]);
        let mut digits = [0; 20];
        let seconds = u64::try_from(time.timestamp()).unwrap_or(0);
        header.word(&[b"t=", decimal(seconds, &mut digits), b";"]);
        header.list(b"h=", &signed_names, b':', b';');
        let mut base64 = [0; 1400];
        header.word(&[b"bh=", encode(body_hash.as_ref(), &mut base64), b";"]);
        header.line_break();
        header.word(&[b"b="]);
        // The header signs itself with an empty `b=` (RFC 6376 §3.7), canonicalized as it is
        // written, without the CRLF that ends it.
        canonical_header(&header.text[start..], &mut data);
        data.truncate(data.len() - 2);

        let mut signature = [0; 1024];
        let signature = self.sign_data(&data, &mut signature)?;
        header.base64(encode(signature, &mut base64));
        header.text.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Writes the raw signature of `data` into `buf` and returns it: RSASSA-PKCS1-v1_5 with
    /// SHA-256, or Ed25519 over the SHA-256 digest of `data` (RFC 8463 §3).
    fn sign_data<'b>(&self, data: &[u8], buf: &'b mut [u8; 1024]) -> Result<&'b [u8], SignError> {
        let digest = digest::digest(&digest::SHA256, data);
        match &self.key {
            Key::Rsa(rsa) => {
                let signature = &mut buf[..rsa.public_modulus_len()];
                rsa.sign_digest(&RSA_PKCS1_SHA256, &digest, signature)
                    .map_err(|_| SignError::Crypto)?;
                Ok(signature)
            }
            Key::Ed25519(ed) => {
                let signature = ed
                    .try_sign(digest.as_ref())
                    .map_err(|_| SignError::Crypto)?;
                let signature = signature.as_ref();
                buf[..signature.len()].copy_from_slice(signature);
                Ok(&buf[..signature.len()])
            }
        }
    }
}

impl Signer for DkimSigner {
    /// The header and the message in one new buffer (one allocation; `message` is freed).
    fn sign(&self, message: Vec<u8>, time: DateTime<Utc>) -> Result<Vec<u8>, SignError> {
        let mut out = Vec::with_capacity(self.header_room() + message.len());
        self.write_header(&message, time, &mut out)?;
        out.extend_from_slice(&message);
        Ok(out)
    }
}

/// `bytes` in base64 (RFC 4648, padded), written into `buf`.
fn encode<'b>(bytes: &[u8], buf: &'b mut [u8; 1400]) -> &'b [u8] {
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, buf)
        .expect("a signature of at most 1024 bytes fits 1400 base64 characters");
    &buf[..n]
}

/// `n` in decimal digits, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Why a PEM file held no private key, naming the file's kind and the fix.
fn no_key_reason(pem: &[u8]) -> &'static str {
    let has = |label: &[u8]| memchr::memmem::find(pem, label).is_some();
    if has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED") {
        "holds an encrypted key; feedpost cannot ask for its passphrase, so write it out \
         unencrypted (`openssl pkey -in KEY -out dkim.pem`) and keep the file private (chmod 600)"
    } else if has(b"-----BEGIN OPENSSH PRIVATE KEY-----") {
        "holds an OpenSSH key; DKIM needs a PEM key (`openssl genpkey -algorithm ed25519 -out dkim.pem`)"
    } else if has(b"-----BEGIN PUBLIC KEY-----") || has(b"-----BEGIN CERTIFICATE-----") {
        "holds a public key or certificate, not the private key that signs"
    } else {
        "holds no PEM private key (`-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA PRIVATE \
         KEY-----`); make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem`"
    }
}

/// The error for an RSA key the crypto library refused.
fn rsa_rejected(e: aws_lc_rs::error::KeyRejected) -> anyhow::Error {
    match e.description_() {
        "TooSmall" => anyhow::anyhow!(
            "holds an RSA key shorter than {MIN_RSA_BITS} bits, which receivers treat as unsigned; \
             make a new one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem`"
        ),
        "TooLarge" => anyhow::anyhow!("holds an RSA key longer than 8192 bits; use 2048 or 4096"),
        _ => anyhow::anyhow!("holds an RSA private key that cannot be used ({e})"),
    }
}

/// Logs a warning when the key file can be read by users other than its owner.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o044 != 0 {
                tracing::warn!(
                    "`dkim.private_key` `{}` can be read by other users; `chmod 600` it",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Splits a message into its header block (each field with its CRLF) and its body (after the
/// empty line).
fn split_message(message: &[u8]) -> Result<(&[u8], &[u8]), SignError> {
    if message.starts_with(b"\r\n") || message.is_empty() {
        return Err(SignError::Malformed("the message has no header fields"));
    }
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(at) => Ok((&message[..at + 2], &message[at + 4..])),
        None if message.ends_with(b"\r\n") => Ok((message, &[])),
        None => Err(SignError::Malformed(
            "the header block does not end with CRLF",
        )),
    }
}

/// One header field: its name and its bytes, from the name to the final CRLF.
struct Field<'a> {
    name: &'a [u8],
    bytes: &'a [u8],
}

impl Field<'_> {
    fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The header fields of a header block, folded lines joined to their field.
fn header_fields(headers: &[u8]) -> Result<Vec<Field<'_>>, SignError> {
    let mut fields: Vec<Field<'_>> = Vec::with_capacity(24);
    let mut start = 0;
    while start < headers.len() {
        // The field runs to the first CRLF not followed by a space or tab.
        let mut end = start;
        loop {
            let lf = memchr::memchr(b'\n', &headers[end..])
                .map(|i| end + i)
                .ok_or(SignError::Malformed("a header line does not end with CRLF"))?;
            if lf == 0 || headers[lf - 1] != b'\r' {
                return Err(SignError::Malformed("a header line ends with a bare LF"));
            }
            end = lf + 1;
            if !matches!(headers.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        let bytes = &headers[start..end];
        let colon = memchr::memchr(b':', bytes)
            .ok_or(SignError::Malformed("a header line has no colon"))?;
        let name = trim_wsp_end(&bytes[..colon]);
        if name.is_empty() || name.iter().any(|b| matches!(b, b' ' | b'\t')) {
            return Err(SignError::Malformed("a header line has no field name"));
        }
        fields.push(Field { name, bytes });
        start = end;
    }
    Ok(fields)
}

fn trim_wsp_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Appends the canonical header fields that `h=` lists as `names` (RFC 6376 §5.4.2): for each
/// name, the next instance of that field from the bottom of the header not used yet; a name with
/// no instance left adds nothing.
fn canonical_signed_headers(fields: &[Field<'_>], names: &[&str], out: &mut Vec<u8>) {
    for (i, name) in names.iter().enumerate() {
        let used = names[..i]
            .iter()
            .filter(|n| n.eq_ignore_ascii_case(name))
            .count();
        if let Some(field) = fields.iter().rev().filter(|f| f.is_named(name)).nth(used) {
            canonical_header(field.bytes, out);
        }
    }
}

/// Appends the `relaxed` canonical form of one header field (RFC 6376 §3.4.2) to `out`: the
/// name in lower case, no space around the colon, the value unfolded with every run of spaces
/// and tabs made one space and none at either end, then CRLF.
fn canonical_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = memchr::memchr(b':', field).expect("header_fields checked the colon");
    out.extend(
        trim_wsp_end(&field[..colon])
            .iter()
            .map(u8::to_ascii_lowercase),
    );
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &b in &field[colon + 1..] {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// SHA-256 of the `relaxed` canonical body (RFC 6376 §3.4.4): trailing spaces and tabs of each
/// line removed, runs of them made one space, empty lines at the end removed, and a CRLF after
/// the last line. An empty body canonicalizes to nothing.
///
/// Most lines of a quoted-printable body are already canonical, so the body is hashed as it is
/// up to the next line that holds a tab, two spaces in a row or a space before its CRLF (found
/// with SIMD searches), and only such lines are rewritten.
fn body_hash(body: &[u8]) -> Result<digest::Digest, SignError> {
    check_line_ends(body)?;
    // Nothing after the last character that is not a space, tab, CR or LF is canonical: that is
    // trailing whitespace of the last line and empty lines.
    let end = body
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |at| at + 1);
    let body = &body[..end];
    let mut out = Buffered::new();
    let mut changes = Changes::new(body);
    let mut done = 0;
    while let Some(at) = changes.next_from(done) {
        let start = memchr::memrchr(b'\n', &body[done..at]).map_or(done, |lf| done + lf + 1);
        let end = memchr::memmem::find(&body[at..], b"\r\n").map_or(body.len(), |cr| at + cr);
        out.update(&body[done..start]);
        canonical_line(&body[start..end], &mut out);
        done = (end + 2).min(body.len());
        if end < body.len() {
            out.update(b"\r\n");
        }
    }
    out.update(&body[done..]);
    if !body.is_empty() {
        out.update(b"\r\n");
    }
    Ok(out.finish())
}

/// Refuses a bare CR or LF: canonicalization is defined over CRLF lines, and a relay would
/// rewrite such a line end anyway.
fn check_line_ends(body: &[u8]) -> Result<(), SignError> {
    let crlf = memchr::memmem::find_iter(body, b"\r\n").count();
    if memchr::memchr_iter(b'\n', body).count() != crlf {
        return Err(SignError::Malformed("the body has a bare LF"));
    }
    if memchr::memchr_iter(b'\r', body).count() != crlf {
        return Err(SignError::Malformed("the body has a bare CR"));
    }
    Ok(())
}

/// Where the next line that relaxed canonicalization changes is: the next tab, pair of spaces
/// or space before CRLF. Each search runs once per hit, not once per call.
struct Changes<'a> {
    body: &'a [u8],
    /// The next hit of each search at or after the last `from`, or `None` when there is none.
    next: [Option<usize>; 3],
}

impl<'a> Changes<'a> {
    const NEEDLES: [&'static [u8]; 3] = [b"\t", b"  ", b" \r\n"];

    fn new(body: &'a [u8]) -> Changes<'a> {
        let next = Self::NEEDLES.map(|needle| memchr::memmem::find(body, needle));
        Changes { body, next }
    }

    /// The first change at or after `from`.
    fn next_from(&mut self, from: usize) -> Option<usize> {
        for (next, needle) in self.next.iter_mut().zip(Self::NEEDLES) {
            if next.is_some_and(|at| at < from) {
                *next = memchr::memmem::find(&self.body[from..], needle).map(|at| from + at);
            }
        }
        self.next.iter().flatten().min().copied()
    }
}

/// Appends one line (without its CRLF) in relaxed form: runs of spaces and tabs made one space,
/// none at the end.
fn canonical_line(line: &[u8], out: &mut Buffered) {
    let mut space = false;
    for &b in line {
        if b == b' ' || b == b'\t' {
            space = true;
        } else {
            if space {
                out.push(b' ');
                space = false;
            }
            out.push(b);
        }
    }
}

/// A SHA-256 context fed through a stack buffer, so rewriting a line byte by byte costs one
/// hash update per 4 KiB.
struct Buffered {
    context: digest::Context,
    buf: [u8; 4096],
    len: usize,
}

impl Buffered {
    fn new() -> Buffered {
        Buffered {
            context: digest::Context::new(&digest::SHA256),
            buf: [0; 4096],
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, b: u8) {
        if self.len == self.buf.len() {
            self.flush();
        }
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Hashes `bytes` after what is buffered, without copying them.
    fn update(&mut self, bytes: &[u8]) {
        if bytes.len() < 64 {
            for &b in bytes {
                self.push(b);
            }
        } else {
            self.flush();
            self.context.update(bytes);
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            self.context.update(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    fn finish(mut self) -> digest::Digest {
        self.flush();
        self.context.finish()
    }
}

/// A header field written as folded lines of at most [`LINE`] characters, breaking only where
/// DKIM allows folding whitespace: between tags, around the colons of `h=`, inside base64.
struct Folded<'a> {
    text: &'a mut Vec<u8>,
    /// Characters on the current line.
    column: usize,
}

impl Folded<'_> {
    /// Starts the field `name` (with its colon) at the end of `text`.
    fn new<'a>(text: &'a mut Vec<u8>, name: &[u8]) -> Folded<'a> {
        text.extend_from_slice(name);
        Folded {
            column: name.len(),
            text,
        }
    }

    /// Starts a new line (the next word goes after its leading space).
    fn line_break(&mut self) {
        self.text.extend_from_slice(b"\r\n");
        self.column = 0;
    }

    /// Appends the word made of `parts` after a space, or on a new line when it would not fit.
    fn word(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.column + 1 + len > LINE {
            self.line_break();
        }
        self.text.push(b' ');
        for part in parts {
            self.text.extend_from_slice(part);
        }
        self.column += 1 + len;
    }

    /// Appends `tag` and `items` joined by `separator`, then `end`; lines break after a
    /// separator.
    fn list(&mut self, tag: &[u8], items: &[&str], separator: u8, end: u8) {
        for (i, item) in items.iter().enumerate() {
            let last = if i + 1 == items.len() { end } else { separator };
            if i == 0 {
                self.word(&[tag, item.as_bytes(), &[last]]);
            } else if self.column + item.len() + 1 > LINE {
                self.word(&[item.as_bytes(), &[last]]);
            } else {
                self.text.extend_from_slice(item.as_bytes());
                self.text.push(last);
                self.column += item.len() + 1;
            }
        }
    }

    /// Appends base64 text right after the text so far, continuing on new lines.
    fn base64(&mut self, mut encoded: &[u8]) {
        while !encoded.is_empty() {
            if self.column >= LINE {
                self.text.extend_from_slice(b"\r\n ");
                self.column = 1;
            }
            let take = (LINE - self.column).min(encoded.len());
            self.text.extend_from_slice(&encoded[..take]);
            self.column += take;
            encoded = &encoded[take..];
        }
    }
}

/// How many messages a [`SigningPool`] holds per worker — queued, being signed, or signed and
/// not yet taken — before [`SigningPool::submit`] waits.
pub const QUEUE_PER_WORKER: usize = 16;

/// A signed message (or why not), with the permit that counts it until its [`Signed`] future
/// hands it over.
type Outcome = (Result<Vec<u8>, SignError>, OwnedSemaphorePermit);

/// A message waiting for a worker, and where its result goes.
struct Job {
    message: Vec<u8>,
    time: DateTime<Utc>,
    reply: oneshot::Sender<Outcome>,
    /// Held until the caller takes the signed message, so the pool's memory is bounded.
    permit: OwnedSemaphorePermit,
}

/// The jobs waiting for a worker, and whether the pool has stopped taking them.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A worker never panics while holding the lock (signing runs outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Signs messages on worker threads for an async caller on another thread.
///
/// The delivery engine drives every connection from one `current_thread` runtime; an RSA-2048
/// signature costs about a quarter of a millisecond of CPU, so signing there would stall the
/// I/O. The pool runs the [`Signer`] on `workers` threads (one per core by default) and hands
/// results back through futures. At most `capacity` messages are in the pool — queued, being
/// signed, or signed and not yet taken from their [`Signed`] future — and
/// [`SigningPool::submit`] waits (asynchronously) for room, so memory stays flat however long
/// the list is. With [`Unsigned`], or with no workers, it signs on the caller's thread.
///
/// ```no_run
/// # async fn demo(config: &feedpost::config::Config, message: Vec<u8>) -> anyhow::Result<()> {
/// use feedpost::mail::sign::SigningPool;
/// let pool = SigningPool::for_config(config)?;
/// let time = chrono::Utc::now(); // the publish start, kept for resends
/// let pending = pool.submit(message, time).await; // sign ahead: this only queues it
/// let signed: Vec<u8> = pending.await?; // the message with its DKIM-Signature in front
/// # Ok(()) }
/// ```
pub struct SigningPool {
    signer: Arc<dyn Signer>,
    queue: Arc<Queue>,
    permits: Arc<Semaphore>,
    workers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for SigningPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningPool")
            .field("signer", &self.signer)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl SigningPool {
    /// The pool `config` asks for: DKIM on one worker per available core when `[dkim]` is
    /// set, else [`Unsigned`] on the caller's thread.
    ///
    /// # Errors
    /// The DKIM key cannot be loaded (see [`DkimSigner::from_config`]).
    pub fn for_config(config: &Config) -> anyhow::Result<SigningPool> {
        let signer = signer_for(config)?;
        let workers = if config.dkim.is_some() {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            0
        };
        SigningPool::new(signer, workers, workers.max(1) * QUEUE_PER_WORKER)
    }

    /// A pool running `signer` on `workers` threads (0: on the caller's thread, inside
    /// [`SigningPool::submit`]) holding at most `capacity` messages (at least 1).
    ///
    /// # Errors
    /// A worker thread cannot be started.
    pub fn new(
        signer: Arc<dyn Signer>,
        workers: usize,
        capacity: usize,
    ) -> anyhow::Result<SigningPool> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let signer = Arc::clone(&signer);
            let queue = Arc::clone(&queue);
            let handle = std::thread::Builder::new()
                .name(format!("dkim-{i}"))
                .spawn(move || work(&*signer, &queue))
                .context("failed to start a DKIM signing thread")?;
            handles.push(handle);
        }
        Ok(SigningPool {
            signer,
            queue,
            permits: Arc::new(Semaphore::new(capacity.max(1))),
            workers: handles,
        })
    }

    /// Queues `message` for signing at `time` (see [`Signer::sign`]) and returns the future of
    /// the signed message; waits only while the pool is full. Call it for the next messages
    /// before awaiting the first to keep every worker busy.
    pub async fn submit(&self, message: Vec<u8>, time: DateTime<Utc>) -> Signed {
        if self.workers.is_empty() {
            return Signed(SignedState::Ready(Some(self.signer.sign(message, time))));
        }
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return Signed(SignedState::Ready(Some(Err(SignError::PoolStopped))));
        };
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            message,
            time,
            reply,
            permit,
        };
        self.queue.lock().jobs.push_back(job);
        self.queue.ready.notify_one();
        Signed(SignedState::Pending(receiver))
    }

    /// Signs `message` at `time` and returns it: [`SigningPool::submit`], then its result.
    ///
    /// # Errors
    /// As [`Signer::sign`], or [`SignError::PoolStopped`].
    pub async fn sign(&self, message: Vec<u8>, time: DateTime<Utc>) -> Result<Vec<u8>, SignError> {
        self.submit(message, time).await.await
    }

    /// How many worker threads sign (0: the caller's thread does).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for SigningPool {
    /// Stops the workers and waits for the signatures in progress; queued messages are dropped
    /// (their [`Signed`] futures give [`SignError::PoolStopped`]).
    fn drop(&mut self) {
        let dropped = {
            let mut state = self.queue.lock();
            state.closed = true;
            std::mem::take(&mut state.jobs)
        };
        drop(dropped);
        self.queue.ready.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A worker: takes jobs until the pool closes, signs each, sends the result back.
fn work(signer: &dyn Signer, queue: &Queue) {
    loop {
        let job = {
            let mut state = queue.lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.closed {
                    return;
                }
                state = queue.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Job {
            message,
            time,
            reply,
            permit,
        } = job;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| signer.sign(message, time)))
                .unwrap_or(Err(SignError::PoolStopped));
        // The caller may have stopped waiting; then the result is dropped.
        let _ = reply.send((result, permit));
    }
}

/// The future of one message given to [`SigningPool::submit`]: the signed message.
#[must_use = "the signed message is in the future"]
pub struct Signed(SignedState);

enum SignedState {
    Ready(Option<Result<Vec<u8>, SignError>>),
    Pending(oneshot::Receiver<Outcome>),
}

impl Future for Signed {
    type Output = Result<Vec<u8>, SignError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            SignedState::Ready(result) => {
                Poll::Ready(result.take().unwrap_or(Err(SignError::PoolStopped)))
            }
            SignedState::Pending(receiver) => Pin::new(receiver)
                .poll(cx)
                .map(|outcome| outcome.map_or(Err(SignError::PoolStopped), |(r, _permit)| r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use std::sync::OnceLock;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// `der` as a PEM block labelled `label`, 64 characters a line.
    fn pem(label: &str, der: &[u8]) -> String {
        let body = b64(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A fresh RSA-2048 key as PKCS#8 DER (made once per test run).
    fn rsa_pkcs8() -> &'static [u8] {
        static KEY: OnceLock<Vec<u8>> = OnceLock::new();
        KEY.get_or_init(|| {
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                .unwrap()
                .as_ref()
                .to_vec()
        })
    }

    fn ed25519_pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn time() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-03-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn canonical(field: &str) -> String {
        let mut out = Vec::new();
        canonical_header(field.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn body_hash_b64(body: &str) -> String {
        b64(body_hash(body.as_bytes()).unwrap().as_ref())
    }

    fn sha256_b64(bytes: &str) -> String {
        b64(digest::digest(&digest::SHA256, bytes.as_bytes()).as_ref())
    }

    #[test]
    fn relaxed_header_canonicalization_matches_rfc_6376_example() {
        // RFC 6376 §3.4.5: "A: X" and "B : Y<HTAB>" folded onto "<HTAB>Z<SP><SP>".
        assert_eq!(canonical("A: X\r\n"), "a:X\r\n");
        assert_eq!(canonical("B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
        assert_eq!(
            canonical("Subject:\t  Two   words \r\n"),
            "subject:Two words\r\n"
        );
        assert_eq!(canonical("X-Empty:\r\n"), "x-empty:\r\n");
    }

    #[test]
    fn relaxed_body_canonicalization_matches_rfc_6376_example() {
        // RFC 6376 §3.4.5: the body " C \r\nD \t E\r\n\r\n\r\n" becomes " C\r\nD E\r\n".
        assert_eq!(
            body_hash_b64(" C \r\nD \t E\r\n\r\n\r\n"),
            sha256_b64(" C\r\nD E\r\n")
        );
    }

    #[test]
    fn empty_bodies_hash_as_nothing_and_a_last_line_gets_its_crlf() {
        let empty = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(body_hash_b64(""), empty);
        assert_eq!(body_hash_b64("\r\n\r\n \t\r\n"), empty);
        assert_eq!(body_hash_b64("abc"), sha256_b64("abc\r\n"));
        assert_eq!(
            body_hash_b64("a\r\n\r\n \r\nb"),
            sha256_b64("a\r\n\r\n\r\nb\r\n")
        );
    }

    /// Relaxed body canonicalization the plain way, line by line (RFC 6376 §3.4.4).
    fn reference_body(body: &str) -> String {
        let mut lines: Vec<String> = body
            .split("\r\n")
            .map(|line| {
                let mut out = String::new();
                let mut space = false;
                for c in line.chars() {
                    if c == ' ' || c == '\t' {
                        space = true;
                    } else {
                        if space {
                            out.push(' ');
                        }
                        space = false;
                        out.push(c);
                    }
                }
                out
            })
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    }

    #[test]
    fn the_fast_body_hash_equals_line_by_line_canonicalization() {
        // Bodies of every mix of the pieces that matter, from a fixed-seed generator.
        let pieces = ["a", "b", " ", "  ", "\t", "\r\n", "\r\n", "xyz"];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut body = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for k in 0..(state % 24) {
                let pick = (state >> (k * 2 % 60)) as usize + k as usize;
                body.push_str(pieces[pick % pieces.len()]);
            }
            assert_eq!(
                body_hash_b64(&body),
                sha256_b64(&reference_body(&body)),
                "{body:?}"
            );
        }
        let long = "x \t y  z \r\n".repeat(5000) + "end";
        assert_eq!(body_hash_b64(&long), sha256_b64(&reference_body(&long)));
    }

    /// The example message of RFC 6376 Appendix A, as RFC 8463 Appendix A signs it.
    const RFC8463_HEADERS: &str = "From: Joe SixPack <joe@football.example.com>\r\n\
        To: Suzie Q <suzie@shopping.example.net>\r\n\
        Subject: Is dinner ready?\r\n\
        Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n\
        Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n";
    const RFC8463_BODY: &str = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";

    #[test]
    fn body_hash_matches_rfc_8463_example() {
        assert_eq!(
            body_hash_b64(RFC8463_BODY),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        );
    }

    #[test]
    fn ed25519_signature_matches_rfc_8463_example() {
        // RFC 8463 Appendix A: the private key (seed), its public key, and the signature of the
        // example message. Ed25519 is deterministic, so the same data gives the same bytes.
        let seed = base64::engine::general_purpose::STANDARD
            .decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
            .unwrap();
        let mut pkcs8 = hex_bytes("302e020100300506032b657004220420");
        pkcs8.extend_from_slice(&seed);
        let signer = DkimSigner::from_pem(
            pem("PRIVATE KEY", &pkcs8).as_bytes(),
            "football.example.com",
            "brisbane",
        )
        .unwrap();
        assert_eq!(
            signer.dns_record(),
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        );
        let fields = header_fields(RFC8463_HEADERS.as_bytes()).unwrap();
        let names = [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "from",
            "subject",
            "date",
        ];
        let mut data = Vec::new();
        canonical_signed_headers(&fields, &names, &mut data);
        canonical_header(
            b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n \
              d=football.example.com; i=@football.example.com;\r\n \
              q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n \
              subject : date : message-id : from : subject : date;\r\n \
              bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n b=\r\n",
            &mut data,
        );
        data.truncate(data.len() - 2);
        assert_eq!(
            b64(signer.sign_data(&data, &mut [0; 1024]).unwrap()),
            "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
        );
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn message() -> Vec<u8> {
        format!("{RFC8463_HEADERS}MIME-Version: 1.0\r\n\r\n{RFC8463_BODY}").into_bytes()
    }

    /// The value of tag `name` in a DKIM-Signature header, unfolded.
    fn tag(header: &str, name: &str) -> String {
        let unfolded: String = header
            .split("\r\n")
            .collect::<Vec<_>>()
            .join("")
            .split_once(':')
            .unwrap()
            .1
            .to_string();
        unfolded
            .split(';')
            .map(str::trim)
            .find_map(|t| t.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {header}"))
            .replace(' ', "")
    }

    #[test]
    fn signature_header_is_folded_deterministic_and_oversigned() {
        for pkcs8 in [rsa_pkcs8().to_vec(), ed25519_pkcs8()] {
            let signer = DkimSigner::from_pem(
                pem("PRIVATE KEY", &pkcs8).as_bytes(),
                "football.example.com",
                "s2026",
            )
            .unwrap();
            let header = signer.signature_header(&message(), time()).unwrap();
            assert_eq!(header, signer.signature_header(&message(), time()).unwrap());
            let text = String::from_utf8(header).unwrap();
            assert!(text.starts_with("DKIM-Signature: v=1; a="), "{text}");
            assert!(
                text.ends_with("\r\n") && !text.ends_with("\r\n\r\n"),
                "{text}"
            );
            for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                assert!(line.len() <= LINE, "{} > {LINE}: {line:?}", line.len());
            }
            for line in text.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
                assert!(line.starts_with(' '), "unfolded continuation {line:?}");
            }
            assert_eq!(tag(&text, "a"), signer.algorithm().tag());
            assert_eq!(tag(&text, "c"), "relaxed/relaxed");
            assert_eq!(tag(&text, "d"), "football.example.com");
            assert_eq!(tag(&text, "s"), "s2026");
            assert_eq!(tag(&text, "t"), "1709280000");
            assert_eq!(
                tag(&text, "bh"),
                "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
            );
            assert_eq!(
                tag(&text, "h"),
                "from:from:reply-to:to:to:subject:subject:date:date:message-id:message-id:\
                 mime-version:mime-version:content-type:list-id:list-unsubscribe:\
                 list-unsubscribe-post"
            );
            let later = signer
                .signature_header(&message(), time() + chrono::Duration::seconds(1))
                .unwrap();
            assert_ne!(later, text.as_bytes());
        }
    }

    #[test]
    fn sign_prepends_the_header_and_keeps_the_message() {
        let signer = DkimSigner::from_pem(
            pem("PRIVATE KEY", &ed25519_pkcs8()).as_bytes(),
            "example.org",
            "s",
        )
        .unwrap();
        let signed = signer.sign(message(), time()).unwrap();
        let header = signer.signature_header(&message(), time()).unwrap();
        assert_eq!(&signed[..header.len()], header.as_slice());
        assert_eq!(&signed[header.len()..], message().as_slice());
        assert_eq!(Unsigned.sign(message(), time()).unwrap(), message());
    }

    #[test]
    fn messages_that_are_not_crlf_rfc_5322_are_refused() {
        let signer = DkimSigner::from_pem(
            pem("PRIVATE KEY", &ed25519_pkcs8()).as_bytes(),
            "example.org",
            "s",
        )
        .unwrap();
        for (bad, why) in [
            ("", "no header fields"),
            ("\r\nbody\r\n", "no header fields"),
            ("From: a@b.org\nTo: c@d.org\r\n\r\nbody\r\n", "bare LF"),
            ("From: a@b.org\r\n\r\nline\nline\r\n", "bare LF"),
            ("From: a@b.org\r\n\r\nline\rline\r\n", "bare CR"),
            ("From: a@b.org\r\nnot a header\r\n\r\nbody\r\n", "no colon"),
            ("From: a@b.org", "does not end with CRLF"),
        ] {
            let err = signer.sign(bad.as_bytes().to_vec(), time()).unwrap_err();
            assert!(
                matches!(err, SignError::Malformed(_)) && err.to_string().contains(why),
                "{bad:?}: {err}"
            );
        }
        // Headers only, no body: signed, with the empty body's hash.
        let header = signer
            .signature_header(b"From: a@b.org\r\n", time())
            .unwrap();
        assert_eq!(
            tag(std::str::from_utf8(&header).unwrap(), "bh"),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    /// Every 12-character piece of the base64 lines of `pem`.
    fn key_pieces(pem: &str) -> Vec<String> {
        pem.lines()
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .flat_map(|l| {
                l.as_bytes()
                    .chunks(12)
                    .filter(|c| c.len() == 12)
                    .map(|c| String::from_utf8(c.to_vec()).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn assert_no_key(text: &str, pem: &str) {
        for piece in key_pieces(pem) {
            assert!(!text.contains(&piece), "key material {piece:?} in {text}");
        }
    }

    #[test]
    fn keys_load_from_pkcs8_and_pkcs1_pem() {
        let pkcs8 = rsa_pkcs8();
        let rsa =
            DkimSigner::from_pem(pem("PRIVATE KEY", pkcs8).as_bytes(), "example.org", "s").unwrap();
        assert_eq!(rsa.algorithm(), Algorithm::RsaSha256 { bits: 2048 });
        // PKCS#8 wraps the PKCS#1 key in an OCTET STRING after a fixed 26-byte prefix.
        assert_eq!(&pkcs8[22..24], &[0x04, 0x82]);
        let pkcs1 = &pkcs8[26..];
        let rsa1 =
            DkimSigner::from_pem(pem("RSA PRIVATE KEY", pkcs1).as_bytes(), "example.org", "s")
                .unwrap();
        assert_eq!(rsa1.dns_record(), rsa.dns_record());
        assert!(rsa.dns_record().starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
        let ed = DkimSigner::from_pem(
            pem("PRIVATE KEY", &ed25519_pkcs8()).as_bytes(),
            "example.org",
            "s",
        )
        .unwrap();
        assert_eq!(ed.algorithm(), Algorithm::Ed25519Sha256);
        assert_eq!(ed.dns_name(), "s._domainkey.example.org");
        let v2 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        DkimSigner::from_pem(
            pem("PRIVATE KEY", v2.as_ref()).as_bytes(),
            "example.org",
            "s",
        )
        .unwrap();
    }

    #[test]
    fn bad_keys_get_errors_that_say_why_and_never_quote_the_key() {
        let weak = include_str!("../../tests/fixtures/dkim/rsa-1024.pem");
        let ec_pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &SystemRandom::new(),
        )
        .unwrap();
        let rsa = pem("PRIVATE KEY", rsa_pkcs8());
        let mut damaged = rsa.clone();
        damaged.replace_range(100..101, "*");
        let truncated: String = rsa.lines().take(5).collect::<Vec<_>>().join("\n");
        let glued = rsa.replacen("-----\n", "-----", 1);
        let encrypted = rsa.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        let public = rsa.replace("PRIVATE KEY", "PUBLIC KEY");
        for (pem_text, why) in [
            (weak.to_string(), "shorter than 2048 bits"),
            (
                pem("PRIVATE KEY", ec_pkcs8.as_ref()),
                "neither RSA nor Ed25519",
            ),
            (pem("EC PRIVATE KEY", b"0123456789abcdef"), "EC (ECDSA) key"),
            (damaged, "not a readable PEM"),
            (truncated, "not a readable PEM"),
            (glued, "not a readable PEM"),
            (encrypted, "encrypted key"),
            (public, "public key or certificate"),
            ("hello".to_string(), "holds no PEM private key"),
            (pem("RSA PRIVATE KEY", b"not DER at all"), "cannot be used"),
        ] {
            let err = DkimSigner::from_pem(pem_text.as_bytes(), "example.org", "s").unwrap_err();
            let text = format!("{err:#} {err:?}");
            assert!(text.contains(why), "{why}: {text}");
            assert_no_key(&text, &pem_text);
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        for key in [
            pem("PRIVATE KEY", rsa_pkcs8()),
            pem("PRIVATE KEY", &ed25519_pkcs8()),
        ] {
            let signer = DkimSigner::from_pem(key.as_bytes(), "example.org", "s2026").unwrap();
            let debug = format!("{signer:?} {signer:#?}");
            assert!(
                debug.contains("s2026") && debug.contains("example.org"),
                "{debug}"
            );
            assert_no_key(&debug, &key);
            let pool = SigningPool::new(Arc::new(signer), 1, 4).unwrap();
            let debug = format!("{pool:?}");
            assert!(debug.contains("DkimSigner"), "{debug}");
            assert_no_key(&debug, &key);
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn the_pool_signs_what_the_signer_signs_with_many_in_flight() {
        let signer = Arc::new(
            DkimSigner::from_pem(
                pem("PRIVATE KEY", &ed25519_pkcs8()).as_bytes(),
                "example.org",
                "s",
            )
            .unwrap(),
        );
        let pool = SigningPool::new(signer.clone(), 2, 8).unwrap();
        assert_eq!(pool.workers(), 2);
        let messages: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                let mut m = message();
                m.extend_from_slice(format!("{i}\r\n").as_bytes());
                m
            })
            .collect();
        let signed = runtime().block_on(async {
            let mut pending = VecDeque::new();
            let mut out = Vec::new();
            for m in &messages {
                pending.push_back(pool.submit(m.clone(), time()).await);
                if pending.len() == 6 {
                    out.push(pending.pop_front().unwrap().await.unwrap());
                }
            }
            for p in pending {
                out.push(p.await.unwrap());
            }
            out
        });
        for (m, s) in messages.iter().zip(&signed) {
            assert_eq!(s, &signer.sign(m.clone(), time()).unwrap());
        }
        let inline = SigningPool::new(signer.clone(), 0, 1).unwrap();
        let s = runtime()
            .block_on(inline.sign(messages[0].clone(), time()))
            .unwrap();
        assert_eq!(s, signed[0]);
    }

    /// A signer that says when it starts a message, signs only when the test lets it (and
    /// panics when the test drops its sender), and panics on an empty message.
    #[derive(Debug)]
    struct Gate {
        started: Mutex<std::sync::mpsc::Sender<()>>,
        open: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    /// A [`Gate`], the receiver of its starts and the sender that opens it.
    fn gate() -> (
        Gate,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started, starts) = std::sync::mpsc::channel();
        let (open, gate) = std::sync::mpsc::channel();
        let gate = Gate {
            started: Mutex::new(started),
            open: Mutex::new(gate),
        };
        (gate, starts, open)
    }

    impl Signer for Gate {
        fn sign(&self, message: Vec<u8>, _: DateTime<Utc>) -> Result<Vec<u8>, SignError> {
            assert!(!message.is_empty(), "the test's panic");
            let _ = self.started.lock().unwrap().send(());
            self.open
                .lock()
                .unwrap()
                .recv()
                .expect("the test closed the gate");
            Ok(message)
        }
    }

    fn is_pending<F: Future>(future: Pin<&mut F>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        future.poll(&mut cx).is_pending()
    }

    #[test]
    fn submit_waits_while_the_pool_is_full_and_a_panic_fails_one_message() {
        let (gate, starts, open) = gate();
        let pool = SigningPool::new(Arc::new(gate), 1, 2).unwrap();
        runtime().block_on(async {
            let first = pool.submit(b"1".to_vec(), time()).await;
            let second = pool.submit(b"2".to_vec(), time()).await;
            let mut third = std::pin::pin!(pool.submit(b"3".to_vec(), time()));
            assert!(
                is_pending(third.as_mut()),
                "a third message fit in a pool of 2"
            );
            // "1" signed (the worker started "2"), but not taken yet: still no room.
            open.send(()).unwrap();
            starts.recv().unwrap();
            starts.recv().unwrap();
            assert!(
                is_pending(third.as_mut()),
                "a signed message left the pool untaken"
            );
            assert_eq!(first.await.unwrap(), b"1");
            let third = third.await;
            open.send(()).unwrap();
            open.send(()).unwrap();
            assert_eq!(second.await.unwrap(), b"2");
            assert_eq!(third.await.unwrap(), b"3");
            let panicked = pool.sign(Vec::new(), time()).await.unwrap_err();
            assert!(matches!(panicked, SignError::PoolStopped), "{panicked}");
            open.send(()).unwrap();
            assert_eq!(pool.sign(b"4".to_vec(), time()).await.unwrap(), b"4");
        });
    }

    #[test]
    fn dropping_the_pool_finishes_the_message_in_hand_and_fails_the_queued() {
        let (gate, starts, open) = gate();
        let pool = SigningPool::new(Arc::new(gate), 1, 4).unwrap();
        let rt = runtime();
        let first = rt.block_on(pool.submit(b"1".to_vec(), time()));
        starts.recv().unwrap();
        let second = rt.block_on(pool.submit(b"2".to_vec(), time()));
        // One opening, for the message in hand; then the gate closes for good, so a worker that
        // took "2" before the pool closed would panic on it rather than sign it.
        let release = std::thread::spawn(move || open.send(()).unwrap());
        drop(pool);
        release.join().unwrap();
        assert_eq!(rt.block_on(first).unwrap(), b"1");
        let second = rt.block_on(second).unwrap_err();
        assert!(matches!(second, SignError::PoolStopped), "{second}");
    }
}
