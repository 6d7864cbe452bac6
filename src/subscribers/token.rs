//! Signed links for readers: confirm a subscription, unsubscribe, manage one's subscription.
//!
//! Shared by `feedpost serve` (which checks tokens) and `publish` (which puts an unsubscribe
//! token in every message's `List-Unsubscribe` URL), so both sign with the same [`Secret`],
//! taken only from the environment variable `FEEDPOST_SECRET`.
//!
//! A token is self-contained: the server needs no database to tell a genuine link from a forged
//! one. It is the URL-safe base64 (RFC 4648 §5, no padding) of
//!
//! ```text
//! version (1) · purpose (1: c|u|m) · expiry (8, Unix seconds UTC, big-endian; 0 = none)
//!             · address (UTF-8, lowercased) · HMAC-SHA256 tag (32)
//! ```
//!
//! where the tag is HMAC-SHA256 (RFC 2104) under the secret over a fixed label and every byte
//! before it. The address travels in the clear (encoded, not encrypted): a token names the one
//! address it acts for, so it cannot be reused for another. Tags are compared in constant time.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The environment variable holding the secret.
pub const SECRET_ENV: &str = "FEEDPOST_SECRET";

/// The fewest bytes a secret may have: the output size of SHA-256, below which HMAC-SHA256 is
/// weaker than it could be (RFC 2104 §3).
pub const MIN_SECRET_BYTES: usize = 32;

/// Prefixed to every signed input, so a tag made here is never valid for another use of the
/// same secret.
const LABEL: &[u8] = b"feedpost token\0";

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 10;

/// The longest token accepted, in characters: an address is at most 254 octets (RFC 5321
/// §4.5.3.1.3 with RFC 3696 errata), so a genuine token is well under this.
const MAX_TOKEN_CHARS: usize = 512;

/// The key that signs tokens. Its bytes are wiped when it is dropped and never printed: `Debug`
/// shows only its length.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Why there is no usable secret. The messages say how to make one and never show the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `FEEDPOST_SECRET` is not set (or is empty).
    #[error(
        "{SECRET_ENV} is not set. The links in confirmation and unsubscribe mail are signed with \
         it. Make one with `openssl rand -base64 48`, keep it with your other secrets, and set \
         the same value wherever feedpost runs (e.g. `export {SECRET_ENV}=...`)"
    )]
    Missing,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "{SECRET_ENV} is {0} bytes long; at least {MIN_SECRET_BYTES} are needed. Make a new one \
         with `openssl rand -base64 48` (64 characters)"
    )]
    TooShort(usize),
    /// The variable holds bytes that are not UTF-8 (not something a shell `export` gives).
    #[error("{SECRET_ENV} is not valid UTF-8; make a new one with `openssl rand -base64 48`")]
    NotUnicode,
}

impl Secret {
    /// A secret from `bytes` (the text of `FEEDPOST_SECRET`, used as it is: its bytes are the
    /// HMAC key).
    ///
    /// # Errors
    /// [`SecretError::TooShort`] under [`MIN_SECRET_BYTES`], [`SecretError::Missing`] when empty.
    pub fn new(bytes: Vec<u8>) -> Result<Secret, SecretError> {
        let bytes = Zeroizing::new(bytes);
        match bytes.len() {
            0 => Err(SecretError::Missing),
            n if n < MIN_SECRET_BYTES => Err(SecretError::TooShort(n)),
            _ => Ok(Secret(bytes)),
        }
    }

    /// The secret in `FEEDPOST_SECRET`, without surrounding white space (a trailing newline from
    /// a file or `$(...)` is not part of it).
    ///
    /// # Errors
    /// The variable is missing, empty, too short or not UTF-8: see [`SecretError`].
    pub fn from_env() -> Result<Secret, SecretError> {
        match std::env::var(SECRET_ENV) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                Secret::new(text.trim().as_bytes().to_vec())
            }
            Err(std::env::VarError::NotPresent) => Err(SecretError::Missing),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::NotUnicode),
        }
    }

    fn mac(&self, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(LABEL);
        mac.update(signed);
        mac
    }
}

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirm a subscription request (double opt-in); always expires.
    Confirm,
    /// Unsubscribe (RFC 8058 one-click and the unsubscribe page); never expires, since the link
    /// sits in every message a reader keeps.
    Unsubscribe,
    /// Open one's subscription settings; may expire.
    Manage,
}

impl Purpose {
    fn byte(self) -> u8 {
        match self {
            Purpose::Confirm => b'c',
            Purpose::Unsubscribe => b'u',
            Purpose::Manage => b'm',
        }
    }

    fn from_byte(b: u8) -> Option<Purpose> {
        Some(match b {
            b'c' => Purpose::Confirm,
            b'u' => Purpose::Unsubscribe,
            b'm' => Purpose::Manage,
            _ => return None,
        })
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::Confirm => "confirmation",
            Purpose::Unsubscribe => "unsubscribe",
            Purpose::Manage => "subscription settings",
        })
    }
}

/// Why a token was refused. Each is the client's doing (a 4xx), never the server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all: empty, too long, not base64url, too short, an unknown version or
    /// purpose, or an address that is not UTF-8.
    #[error("the link is incomplete or damaged")]
    Malformed,
    /// Well-formed, but its tag does not match: altered, or not made with this secret.
    #[error("the link was not made by this newsletter or was altered")]
    Forged,
    /// Genuine, but made for another purpose (a confirmation link used to unsubscribe).
    #[error("this is a {found} link, not a {expected} link")]
    WrongPurpose {
        /// What the link is for.
        found: Purpose,
        /// What it was used for.
        expected: Purpose,
    },
    /// Genuine, but past its expiry.
    #[error("the link expired at {0} UTC")]
    Expired(DateTime<Utc>),
}

/// What a genuine token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The address it acts for, lowercased.
    pub address: String,
    /// When it stops being valid (UTC), if it expires.
    pub expires: Option<DateTime<Utc>>,
}

/// A token of `purpose` for `address` (lowercased here), valid until `expires` (UTC, whole
/// seconds; `None`: forever).
pub fn sign(
    secret: &Secret,
    purpose: Purpose,
    address: &str,
    expires: Option<DateTime<Utc>>,
) -> String {
    let address = address.to_lowercase();
    let expiry = expires.map_or(0, |t| t.timestamp().max(1) as u64);
    let mut bytes = Vec::with_capacity(HEADER_LEN + address.len() + TAG_LEN);
    bytes.push(VERSION);
    bytes.push(purpose.byte());
    bytes.extend_from_slice(&expiry.to_be_bytes());
    bytes.extend_from_slice(address.as_bytes());
    let tag = secret.mac(&bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
}

/// A confirmation token for `address`, valid until `expires` (UTC).
pub fn confirm_token(secret: &Secret, address: &str, expires: DateTime<Utc>) -> String {
    sign(secret, Purpose::Confirm, address, Some(expires))
}

/// An unsubscribe token for `address`; it never expires.
pub fn unsubscribe_token(secret: &Secret, address: &str) -> String {
    sign(secret, Purpose::Unsubscribe, address, None)
}

/// The one-click unsubscribe URL for `address` (RFC 8058): `public_url` (the `[serve]`
/// `public_url`, ending in `/`) + `unsubscribe?token=<token>`. For the `List-Unsubscribe`
/// header and the link in the message.
pub fn unsubscribe_url(public_url: &url::Url, secret: &Secret, address: &str) -> url::Url {
    let mut url = public_url
        .join("unsubscribe")
        .expect("a relative path joins any http(s) URL");
    url.query_pairs_mut()
        .append_pair("token", &unsubscribe_token(secret, address));
    url
}

/// Checks `token` for `purpose` at `now`, and returns the address it acts for.
///
/// The tag is checked first, in constant time (`hmac`'s `verify_slice`); only a genuine token's
/// purpose and expiry are looked at.
///
/// # Errors
/// [`TokenError`]: malformed, forged or altered, made for another purpose, or expired.
pub fn verify(
    secret: &Secret,
    token: &str,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Result<Verified, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Err(TokenError::Malformed);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| TokenError::Malformed)?;
    if bytes.len() < HEADER_LEN + 1 + TAG_LEN || bytes[0] != VERSION {
        return Err(TokenError::Malformed);
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    secret
        .mac(signed)
        .verify_slice(tag)
        .map_err(|_| TokenError::Forged)?;
    let found = Purpose::from_byte(signed[1]).ok_or(TokenError::Malformed)?;
    if found != purpose {
        return Err(TokenError::WrongPurpose {
            found,
            expected: purpose,
        });
    }
    let expiry = u64::from_be_bytes(signed[2..HEADER_LEN].try_into().expect("8 bytes"));
    let expires = match expiry {
        0 => None,
        secs => Some(
            i64::try_from(secs)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .ok_or(TokenError::Malformed)?,
        ),
    };
    if purpose == Purpose::Confirm && expires.is_none() {
        return Err(TokenError::Malformed);
    }
    if let Some(at) = expires {
        if now >= at {
            return Err(TokenError::Expired(at));
        }
    }
    let address = std::str::from_utf8(&signed[HEADER_LEN..])
        .map_err(|_| TokenError::Malformed)?
        .to_string();
    Ok(Verified { address, expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123456789abcdef-test".to_vec()).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_genuine_token_names_its_lowercased_address() {
        let now = at("2026-01-01T00:00:00Z");
        let expires = at("2026-01-03T00:00:00Z");
        let token = confirm_token(&secret(), "Reader@Example.ORG", expires);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let v = verify(&secret(), &token, Purpose::Confirm, now).unwrap();
        assert_eq!(v.address, "reader@example.org");
        assert_eq!(v.expires, Some(expires));
        let u = unsubscribe_token(&secret(), "读者@例子.公司");
        let v = verify(
            &secret(),
            &u,
            Purpose::Unsubscribe,
            at("2099-01-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!((v.address.as_str(), v.expires), ("读者@例子.公司", None));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_forged() {
        let other = Secret::new(vec![b'x'; 32]).unwrap();
        let token = unsubscribe_token(&other, "a@b.org");
        assert_eq!(
            verify(&secret(), &token, Purpose::Unsubscribe, Utc::now()),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let token = unsubscribe_token(&secret(), "a@b.org");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&altered);
            let result = verify(&secret(), &text, Purpose::Unsubscribe, Utc::now());
            assert!(
                matches!(result, Err(TokenError::Forged | TokenError::Malformed)),
                "byte {i}: {result:?}"
            );
        }
    }

    #[test]
    fn another_address_in_a_genuine_tag_is_forged() {
        // Swap the address of a genuine token, keeping its tag.
        let token = unsubscribe_token(&secret(), "a@b.org");
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        let tag = bytes.split_off(bytes.len() - TAG_LEN);
        bytes.truncate(HEADER_LEN);
        bytes.extend_from_slice(b"victim@b.org");
        bytes.extend_from_slice(&tag);
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            verify(&secret(), &text, Purpose::Unsubscribe, Utc::now()),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn an_expired_token_is_refused_at_its_expiry() {
        let expires = at("2026-01-03T00:00:00Z");
        let token = confirm_token(&secret(), "a@b.org", expires);
        let just_before = at("2026-01-02T23:59:59Z");
        assert!(verify(&secret(), &token, Purpose::Confirm, just_before).is_ok());
        assert_eq!(
            verify(&secret(), &token, Purpose::Confirm, expires),
            Err(TokenError::Expired(expires))
        );
    }

    #[test]
    fn a_token_for_another_purpose_is_refused() {
        let now = at("2026-01-01T00:00:00Z");
        let confirm = confirm_token(&secret(), "a@b.org", at("2026-01-02T00:00:00Z"));
        assert_eq!(
            verify(&secret(), &confirm, Purpose::Unsubscribe, now),
            Err(TokenError::WrongPurpose {
                found: Purpose::Confirm,
                expected: Purpose::Unsubscribe
            })
        );
        let unsubscribe = unsubscribe_token(&secret(), "a@b.org");
        for purpose in [Purpose::Confirm, Purpose::Manage] {
            assert!(matches!(
                verify(&secret(), &unsubscribe, purpose, now),
                Err(TokenError::WrongPurpose { .. })
            ));
        }
        // A confirmation must expire: one signed without an expiry is not a confirmation link.
        let forever = sign(&secret(), Purpose::Confirm, "a@b.org", None);
        assert_eq!(
            verify(&secret(), &forever, Purpose::Confirm, now),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let huge = "A".repeat(MAX_TOKEN_CHARS + 1);
        for text in ["", "not a token!", "AAAA", "%%", huge.as_str()] {
            assert_eq!(
                verify(&secret(), text, Purpose::Unsubscribe, Utc::now()),
                Err(TokenError::Malformed),
                "{text}"
            );
        }
    }

    #[test]
    fn short_or_missing_secrets_are_refused_without_showing_them() {
        assert_eq!(
            Secret::new(b"short-secret".to_vec()).unwrap_err(),
            SecretError::TooShort(12)
        );
        assert_eq!(Secret::new(vec![]).unwrap_err(), SecretError::Missing);
        assert!(SecretError::Missing
            .to_string()
            .contains("openssl rand -base64 48"));
        let s = secret();
        assert!(!format!("{s:?}").contains("0123456789"), "{s:?}");
    }

    #[test]
    fn the_unsubscribe_url_carries_a_verifiable_token() {
        let base = url::Url::parse("https://news.example.org/list/").unwrap();
        let url = unsubscribe_url(&base, &secret(), "Reader@Example.org");
        assert_eq!(url.path(), "/list/unsubscribe");
        let (key, token) = url.query_pairs().next().unwrap();
        assert_eq!(key, "token");
        let v = verify(&secret(), &token, Purpose::Unsubscribe, Utc::now()).unwrap();
        assert_eq!(v.address, "reader@example.org");
    }
}
