//! The `[dkim]` table: which domain signs the mail, under which selector, with which key.
//!
//! Only the key's path is configuration; the key itself is read by
//! [`DkimSigner::from_config`](crate::mail::sign::DkimSigner::from_config), when the config file
//! is loaded (to report a bad key before anything is sent) and again when a publish signs.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, Invalid};

/// `[dkim]`: DKIM signing of every message (RFC 6376).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// The signing domain, `d=`: the From domain or a parent of it (DMARC relaxed alignment),
    /// e.g. `example.org`. ASCII (an IDN in its `xn--` form); lower-cased after loading.
    pub domain: String,
    /// The selector, `s=`: the public key is published as a TXT record at
    /// `<selector>._domainkey.<domain>`, e.g. `s2026`.
    pub selector: String,
    /// PEM file of the private key, relative to the config file: RSA of 2048 bits or more
    /// (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1 `BEGIN RSA PRIVATE KEY`) or Ed25519 (PKCS#8).
    pub private_key: PathBuf,
}

impl Dkim {
    /// Checks `domain` and `selector` and that `domain` aligns with `from_domain` (the domain of
    /// `mail.from`), and lower-cases `domain`. Reads no file.
    ///
    /// Alignment is DMARC's relaxed mode as far as it can be told without the Public Suffix
    /// List: the From domain equals `d=` or is a subdomain of it. Anything else is an error,
    /// not a warning: a signature that does not align earns no DMARC pass, and Gmail, Yahoo and
    /// Outlook.com treat bulk mail without one as unauthenticated.
    ///
    /// # Errors
    /// An [`Invalid`] naming `dkim.domain` or `dkim.selector` and saying what to write instead.
    pub fn validate(&mut self, from_domain: &str) -> Result<(), Invalid> {
        let domain = self
            .domain
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !is_dns_name(&domain) || !domain.contains('.') {
            return Err(invalid(
                "dkim.domain",
                format!(
                    "`dkim.domain` must be a domain name such as `example.org` (ASCII; an IDN in \
                     its `xn--` form), got `{}`",
                    self.domain
                ),
            ));
        }
        if !is_dns_name(&self.selector) {
            return Err(invalid(
                "dkim.selector",
                format!(
                    "`dkim.selector` must be letters, digits and hyphens (dots between parts), \
                     such as `s2026`, got `{}`",
                    self.selector
                ),
            ));
        }
        let from = from_domain.trim_end_matches('.').to_ascii_lowercase();
        let aligned = from == domain
            || from
                .strip_suffix(domain.as_str())
                .is_some_and(|sub| sub.ends_with('.'));
        if !aligned {
            return Err(invalid(
                "dkim.domain",
                format!(
                    "`dkim.domain` = `{domain}` does not align with the From domain `{from}` \
                     (`mail.from`): receivers give DMARC credit only when the From domain is the \
                     signing domain or a subdomain of it; set `domain = \"{from}\"` and publish \
                     the key under it"
                ),
            ));
        }
        self.domain = domain;
        Ok(())
    }
}

/// Whether `name` is dot-separated labels of ASCII letters, digits and inner hyphens, each
/// 1–63 characters (RFC 6376 `sub-domain`, RFC 1035).
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dkim(domain: &str, selector: &str) -> Dkim {
        Dkim {
            domain: domain.into(),
            selector: selector.into(),
            private_key: "dkim.pem".into(),
        }
    }

    #[test]
    fn the_from_domain_or_a_subdomain_of_d_aligns() {
        let mut same = dkim("Example.ORG.", "s2026");
        same.validate("example.org").unwrap();
        assert_eq!(same.domain, "example.org");
        dkim("example.org", "s1.mail")
            .validate("news.example.org")
            .unwrap();
    }

    #[test]
    fn a_domain_that_does_not_align_is_an_error_naming_the_key() {
        for (d, from) in [
            ("mail.example.org", "example.org"),
            ("ample.org", "example.org"),
            ("example.net", "example.org"),
        ] {
            let err = dkim(d, "s").validate(from).unwrap_err().to_string();
            assert!(err.starts_with("`dkim.domain`"), "{err}");
            assert!(err.contains("does not align"), "{err}");
        }
    }

    #[test]
    fn bad_domain_and_selector_are_named() {
        for d in [
            "",
            "localhost",
            "exa mple.org",
            "例子.org",
            "-x.org",
            "x..org",
        ] {
            let err = dkim(d, "s").validate("x.org").unwrap_err().to_string();
            assert!(err.starts_with("`dkim.domain`"), "{d}: {err}");
        }
        for s in ["", "s 1", "s_1", "s.", "-s"] {
            let err = dkim("x.org", s).validate("x.org").unwrap_err().to_string();
            assert!(err.starts_with("`dkim.selector`"), "{s}: {err}");
        }
    }
}
