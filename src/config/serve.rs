//! The `[serve]` table: where `feedpost serve` listens, the URL readers reach it at, and the
//! limits it keeps.
//!
//! Read with the rest of `feedpost.toml`; the values keep their spans until they are checked, so
//! a bad value is reported on its line. The token secret is not configuration: it comes only
//! from `FEEDPOST_SECRET` (see [`crate::subscribers::token`]).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use super::{bad_value, Invalid};

/// `[serve]`: the subscription server (`feedpost serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// The address and port to bind, e.g. `127.0.0.1:8080` (port 0: any free port, printed at
    /// start).
    pub listen: SocketAddr,
    /// Where readers reach the server (behind a TLS proxy, usually), ending in `/`; every link in
    /// confirmation mail and every `List-Unsubscribe` URL starts with it. `https`, except on a
    /// loopback host (for trying it out).
    pub public_url: Url,
    /// Hours a subscription request may wait for its confirmation (the confirmation link's
    /// lifetime), 1 to 720.
    pub confirm_expiry_hours: u32,
    /// Requests a minute one client may make to the form and link routes (not the static files)
    /// before it is answered 429; 0 = no limit.
    pub client_requests_per_minute: u32,
    /// Proxies (IP addresses) whose `X-Forwarded-For` header names the client. Empty: the TCP
    /// peer is the client, and the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
}

/// `[serve]` as written, with the spans of the values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServe {
    listen: Option<Spanned<String>>,
    public_url: Spanned<String>,
    confirm_expiry_hours: Option<Spanned<i64>>,
    client_requests_per_minute: Option<Spanned<i64>>,
    trusted_proxies: Option<Spanned<Vec<String>>>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_CONFIRM_EXPIRY_HOURS: u32 = 48;
const DEFAULT_CLIENT_REQUESTS_PER_MINUTE: u32 = 60;

impl RawServe {
    /// Checks every value; `text` is the config text the spans point into.
    ///
    /// # Errors
    /// The first bad value, as an [`Invalid`]: its key, its line, what is wrong and what to
    /// write instead.
    pub(super) fn validate(self, text: &str) -> Result<Serve, Invalid> {
        let listen = match &self.listen {
            None => DEFAULT_LISTEN.parse().expect("a valid default"),
            Some(value) => value.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
                bad_value(
                    text,
                    value,
                    "serve.listen",
                    format!(
                        "must be an IP address and port such as `127.0.0.1:8080` or `[::1]:8080`, got `{}`",
                        value.get_ref()
                    ),
                )
            })?,
        };
        let public_url = public_url(text, &self.public_url)?;
        let confirm_expiry_hours = ranged(
            text,
            self.confirm_expiry_hours.as_ref(),
            "serve.confirm_expiry_hours",
            DEFAULT_CONFIRM_EXPIRY_HOURS,
            1..=720,
        )?;
        let client_requests_per_minute = ranged(
            text,
            self.client_requests_per_minute.as_ref(),
            "serve.client_requests_per_minute",
            DEFAULT_CLIENT_REQUESTS_PER_MINUTE,
            0..=1_000_000,
        )?;
        let mut trusted_proxies = Vec::new();
        if let Some(list) = &self.trusted_proxies {
            for entry in list.get_ref() {
                let ip = entry.trim().parse::<IpAddr>().map_err(|_| {
                    bad_value(
                        text,
                        list,
                        "serve.trusted_proxies",
                        format!("must list IP addresses such as `127.0.0.1`, got `{entry}`"),
                    )
                })?;
                trusted_proxies.push(ip);
            }
        }
        Ok(Serve {
            listen,
            public_url,
            confirm_expiry_hours,
            client_requests_per_minute,
            trusted_proxies,
        })
    }
}

fn public_url(text: &str, value: &Spanned<String>) -> Result<Url, Invalid> {
    let written = value.get_ref();
    let example = "such as `https://news.example.org/`";
    let mut url = Url::parse(written.trim()).map_err(|e| {
        bad_value(
            text,
            value,
            "serve.public_url",
            format!("must be an absolute URL {example}, got `{written}` ({e})"),
        )
    })?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let problem = if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        Some(format!("must be an absolute http(s) URL {example}"))
    } else if url.scheme() != "https" && !loopback {
        Some(format!(
            "must be https: mail providers honour one-click unsubscribe (RFC 8058) only over \
             https. Put the server behind a TLS proxy and write its https URL, {example}"
        ))
    } else if url.query().is_some() || url.fragment().is_some() {
        Some(format!("must not have a query or a fragment, {example}"))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(bad_value(
            text,
            value,
            "serve.public_url",
            format!("{problem}, got `{written}`"),
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn ranged(
    text: &str,
    value: Option<&Spanned<i64>>,
    key: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Invalid> {
    let Some(value) = value else {
        return Ok(default);
    };
    u32::try_from(*value.get_ref())
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            bad_value(
                text,
                value,
                key,
                format!(
                    "must be between {} and {} (default {default}), got {}",
                    range.start(),
                    range.end(),
                    value.get_ref()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, Invalid};

    const SITE: &str = "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/\"\n[mail]\nfrom = \"a@example.org\"\n[serve]\n";

    fn parse(serve: &str) -> anyhow::Result<Config> {
        Config::parse(&format!("{SITE}{serve}"), Path::new("/site"))
    }

    fn error(serve: &str) -> String {
        format!("{:#}", parse(serve).unwrap_err())
    }

    fn invalid(serve: &str) -> Invalid {
        parse(serve).unwrap_err().downcast::<Invalid>().unwrap()
    }

    #[test]
    fn defaults_and_a_trailing_slash() {
        let c = parse("public_url = \"https://news.example.org/list\"").unwrap();
        let s = c.serve.unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url.as_str(), "https://news.example.org/list/");
        assert_eq!(
            (s.confirm_expiry_hours, s.client_requests_per_minute),
            (48, 60)
        );
        assert!(s.trusted_proxies.is_empty());
        assert!(parse("").is_err(), "public_url is required");
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "listen = \"[::1]:0\"\npublic_url = \"http://127.0.0.1:8080/\"\nconfirm_expiry_hours = 2\nclient_requests_per_minute = 0\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]",
        )
        .unwrap();
        let s = c.serve.unwrap();
        assert_eq!(s.listen.to_string(), "[::1]:0");
        assert_eq!(
            (s.confirm_expiry_hours, s.client_requests_per_minute),
            (2, 0)
        );
        assert_eq!(s.trusted_proxies.len(), 2);
    }

    #[test]
    fn bad_values_name_the_key_and_the_line() {
        // `[serve]` is line 6 of SITE: the first key is on line 7.
        for (serve, key, line) in [
            ("public_url = \"news.example.org\"", "serve.public_url", 7),
            (
                "public_url = \"http://news.example.org/\"",
                "serve.public_url",
                7,
            ),
            ("public_url = \"https://x.org/?a=1\"", "serve.public_url", 7),
            ("public_url = \"ftp://x.org/\"", "serve.public_url", 7),
            (
                "public_url = \"https://x.org/\"\nlisten = \"localhost:80\"",
                "serve.listen",
                8,
            ),
            (
                "public_url = \"https://x.org/\"\nconfirm_expiry_hours = 0",
                "serve.confirm_expiry_hours",
                8,
            ),
            (
                "public_url = \"https://x.org/\"\n\nconfirm_expiry_hours = 100000",
                "serve.confirm_expiry_hours",
                9,
            ),
            (
                "public_url = \"https://x.org/\"\nclient_requests_per_minute = -1",
                "serve.client_requests_per_minute",
                8,
            ),
            (
                "public_url = \"https://x.org/\"\ntrusted_proxies = [\"nginx\"]",
                "serve.trusted_proxies",
                8,
            ),
        ] {
            let e = invalid(serve);
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{serve}");
            assert!(
                e.message.starts_with(&format!("`{key}` must")),
                "{}",
                e.message
            );
        }
        assert!(error("public_url = \"http://x.org/\"").contains("RFC 8058"));
        assert!(error("public_url = \"https://x.org/\"\nport = 1").contains("port"));
    }
}
