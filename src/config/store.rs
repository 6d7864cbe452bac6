//! The `[store]` table: where deliveries, the suppression list and subscribers are kept when
//! that is not the SQLite file `mail.ledger` — a PostgreSQL server shared by several `publish`
//! and `serve` processes, on one host or several.
//!
//! Read with the rest of `feedpost.toml`; a bad value is reported on its line. The password is
//! not configuration: it comes only from `FEEDPOST_STORE_PASSWORD` or libpq's `PGPASSWORD`, and
//! a URL that carries one is refused (the config file is often committed to a repository).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{bad_value, Invalid};

/// The environment variable holding the PostgreSQL password (before libpq's `PGPASSWORD`).
pub const PASSWORD_VAR: &str = "FEEDPOST_STORE_PASSWORD";

/// `[store]`: a PostgreSQL store shared by several processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The server and database as written, a libpq URL (`postgres://user@host:port/db`, with
    /// `?host=/path` for a Unix socket folder), without a password. Whatever it leaves out is
    /// taken from libpq's environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`)
    /// when the store connects.
    pub url: String,
    /// How long a claim holds a delivery before another sender may take it over unless
    /// renewed: see [`crate::store::LEASE`] (the default). Whole seconds, 2 to 86,400.
    pub lease: Duration,
}

/// `[store]` as written, with the spans of the values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    url: Spanned<String>,
    lease_seconds: Option<Spanned<i64>>,
}

impl RawStore {
    /// Checks every value; `text` is the config text the spans point into.
    ///
    /// # Errors
    /// The first bad value, as an [`Invalid`]: its key, its line, what is wrong and what to
    /// write instead. The message never repeats a password.
    pub(super) fn validate(self, text: &str) -> Result<Store, Invalid> {
        let url = self.url.get_ref().trim().to_string();
        let example = "such as `postgres://feedpost@db.example.org/feedpost`";
        let problem = if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            Some(format!(
                "must be a PostgreSQL URL {example}, got `{}`",
                redact(&url)
            ))
        } else if let Err(e) = url.parse::<tokio_postgres::Config>() {
            Some(format!("is not a valid PostgreSQL URL ({e}), {example}"))
        } else if has_password(&url) {
            Some(format!(
                "must not hold the password (`{}`): remove it, and set {PASSWORD_VAR} (or PGPASSWORD) in the environment",
                redact(&url)
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(bad_value(text, &self.url, "store.url", problem));
        }
        let lease = match &self.lease_seconds {
            None => crate::store::LEASE,
            Some(value) => u64::try_from(*value.get_ref())
                .ok()
                .filter(|n| (2..=86_400).contains(n))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    bad_value(
                        text,
                        value,
                        "store.lease_seconds",
                        format!(
                            "must be between 2 and 86400 (default {}), got {}",
                            crate::store::LEASE.as_secs(),
                            value.get_ref()
                        ),
                    )
                })?,
        };
        Ok(Store { url, lease })
    }
}

/// Whether the URL's user information or its query carries a password.
fn has_password(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) => {
            u.password().is_some()
                || u.query_pairs()
                    .any(|(k, _)| k.eq_ignore_ascii_case("password"))
        }
        // A URL the url crate cannot read (several hosts, say): look for `user:secret@`.
        Err(_) => authority(url).is_some_and(|a| a.contains(':') && a.contains('@')),
    }
}

/// The user information and hosts of a `postgres://` URL: what lies between `//` and the path.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?']).next().unwrap_or(rest))
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"))
            {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => match authority(url).and_then(|a| a.rsplit_once('@')) {
            Some((user, _)) if user.contains(':') => {
                let name = user.split(':').next().unwrap_or("");
                url.replacen(user, &format!("{name}:***"), 1)
            }
            _ => url.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::redact;
    use crate::config::{Config, Invalid};

    const SITE: &str = "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/\"\n[mail]\nfrom = \"a@example.org\"\n[store]\n";

    fn parse(store: &str) -> anyhow::Result<Config> {
        Config::parse(&format!("{SITE}{store}"), Path::new("/site"))
    }

    fn invalid(store: &str) -> Invalid {
        parse(store).unwrap_err().downcast::<Invalid>().unwrap()
    }

    #[test]
    fn absent_is_the_sqlite_file_and_present_is_read() {
        let c = Config::parse(
            "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/\"\n[mail]\nfrom = \"a@example.org\"\n",
            Path::new("/site"),
        )
        .unwrap();
        assert!(c.store.is_none());
        let c = parse("url = \"postgres://feedpost@db.example.org:5433/news\"\nlease_seconds = 30")
            .unwrap();
        let s = c.store.unwrap();
        assert_eq!(s.url, "postgres://feedpost@db.example.org:5433/news");
        assert_eq!(s.lease.as_secs(), 30);
        let s = parse("url = \"postgresql:///news?host=/run/pg\"")
            .unwrap()
            .store
            .unwrap();
        assert_eq!(s.lease, crate::store::LEASE);
    }

    #[test]
    fn bad_values_name_the_key_and_the_line_and_never_the_password() {
        for (store, key, line) in [
            ("url = \"mysql://db/news\"", "store.url", 7),
            ("url = \"postgres://u:hunter2@db/news\"", "store.url", 7),
            (
                "url = \"postgres://u@db/news?password=hunter2\"",
                "store.url",
                7,
            ),
            (
                "url = \"postgres://u@db/news\"\nlease_seconds = 1",
                "store.lease_seconds",
                8,
            ),
            (
                "url = \"postgres://u@db/news\"\n\nlease_seconds = -5",
                "store.lease_seconds",
                9,
            ),
        ] {
            let e = invalid(store);
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{store}");
            assert!(!e.message.contains("hunter2"), "{}", e.message);
        }
        assert!(invalid("url = \"postgres://u:hunter2@db/news\"")
            .message
            .contains("FEEDPOST_STORE_PASSWORD"));
        assert!(parse("url = \"postgres://u@db/news\"\nport = 1").is_err());
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:pw@db:5432/n"),
            "postgres://u:***@db:5432/n"
        );
        assert_eq!(
            redact("postgres://u@db/n?password=pw&sslmode=disable"),
            "postgres://u@db/n?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://u@db/n"), "postgres://u@db/n");
        assert_eq!(
            redact("postgres://u:pw@h1,h2/n"),
            "postgres://u:***@h1,h2/n"
        );
    }
}
