//! `feedpost.toml` → [`Config`]: the first stage of every command.
//!
//! Parsing (`Config::parse`) is kept apart from reading the file (`Config::from_file`) so tests can
//! skip the disk. Unknown keys are rejected, and validation after parsing names the offending key.
//! Relative paths are resolved against the folder holding the config file.

mod dkim;
mod serve;
mod store;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use url::Url;

pub use dkim::Dkim;
pub use serve::Serve;
pub use store::{redact, Store, PASSWORD_VAR};

/// The whole configuration of one site, with every path made absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `[site]` table: what the feeds and the archive describe.
    pub site: Site,
    /// The `[mail]` table: how every message is addressed.
    pub mail: Mail,
    /// The `[smtp]` table; `None` delivers into the outbox folder instead.
    pub smtp: Option<Smtp>,
    /// The `[dkim]` table; `None` sends unsigned mail.
    pub dkim: Option<Dkim>,
    /// The `[serve]` table; `None` when the site has no subscription server.
    pub serve: Option<Serve>,
    /// The `[store]` table: a PostgreSQL store; `None` keeps deliveries in the SQLite file
    /// `mail.ledger`.
    pub store: Option<Store>,
    /// The folder holding the config file; relative paths were resolved against it.
    pub root: PathBuf,
}

/// `[site]`: the newsletter as feeds and readers see it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The newsletter's name: the feed title.
    pub title: String,
    /// Absolute `http(s)` URL the site is served from; always ends in `/` after loading.
    pub base_url: Url,
    /// One-line description for the feeds.
    #[serde(default)]
    pub description: String,
    /// Language tag (BCP 47, e.g. `zh-CN`) for RSS `<language>` and `xml:lang`.
    #[serde(default = "default_language")]
    pub language: String,
    /// Folder of issues (`*.md`), relative to the config file.
    #[serde(default = "default_issues")]
    pub issues: PathBuf,
    /// Glob patterns choosing the issues among the pages under `issues` (e.g. a Hugo content
    /// section): an issue's name (file name, or a leaf bundle's folder name) or its path
    /// relative to `issues` must match one. Empty: every page is an issue.
    #[serde(default)]
    pub include: Vec<String>,
    /// Folder the feeds and the web archive are written to: the site's output root, served at
    /// `base_url`.
    #[serde(default = "default_feeds")]
    pub feeds: PathBuf,
    /// The subscriber list (TOML, see `subscribers.example.toml`).
    #[serde(default = "default_subscribers")]
    pub subscribers: PathBuf,
    /// How many of the newest issues each feed carries.
    #[serde(default = "default_feed_entries")]
    pub feed_entries: usize,
    /// Path under `base_url` where issue permalinks live, e.g. `issues/` gives
    /// `https://example.org/issues/<slug>/`.
    #[serde(default = "default_permalink_prefix")]
    pub permalink_prefix: String,
    /// Where an issue without a date key (`date`, `publishDate`, `pubDate`, `published`) takes
    /// its date from: nowhere (an error, the default), its file's git history, or its file's
    /// modification time.
    #[serde(default)]
    pub date_fallback: DateFallback,
    /// A WebSub hub (`http(s)` URL, e.g. `https://pubsubhubbub.appspot.com/`): the feeds link it
    /// (`rel="hub"`) and `publish` pings it when the feeds change. None: no WebSub.
    pub websub_hub: Option<Url>,
    /// CJK-aware Markdown rendering (emphasis next to CJK punctuation, no space where a line
    /// break falls between two CJK characters), in every output. Default: on when `language` is
    /// Chinese, Japanese or Korean (`zh*`, `ja*`, `ko*`).
    pub cjk: Option<bool>,
}

/// `site.date_fallback`: where an issue with no date in its front matter takes one from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateFallback {
    /// Nowhere: a missing date is an error naming the file.
    #[default]
    None,
    /// The author date of the git commit that added the file (following renames): stable when
    /// the file is edited later. A file git does not know is an error.
    Git,
    /// The file's modification time, UTC (it changes when the file is edited or copied).
    Mtime,
}

/// `[mail]`: addressing shared by every message of an issue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    /// RFC 5322 mailbox of the sender, e.g. `SOFA Weekly <weekly@example.org>`; also the envelope sender.
    pub from: String,
    /// Optional `Reply-To` mailbox.
    pub reply_to: Option<String>,
    /// `List-Id` (RFC 2919) identifier, e.g. `weekly.example.org`; default: the sender's domain.
    pub list_id: Option<String>,
    /// `mailto:` address for `List-Unsubscribe` (RFC 2369).
    pub unsubscribe_mailto: Option<String>,
    /// `https` URL for `List-Unsubscribe` and one-click unsubscribe (RFC 8058). `{token}` and `{email}`
    /// are replaced per recipient; without either, `?token=...` is appended.
    pub unsubscribe_url: Option<String>,
    /// Folder for `.eml` files when there is no `[smtp]` table.
    #[serde(default = "default_outbox")]
    pub outbox: PathBuf,
    /// The SQLite ledger of deliveries (unless a `[store]` table names a PostgreSQL store).
    #[serde(default = "default_ledger")]
    pub ledger: PathBuf,
    /// The sender's postal address, one line, shown in every email's footer (CAN-SPAM asks for
    /// one), e.g. `SOFA Weekly, 1 Example Road, Hangzhou, China`.
    pub postal_address: Option<String>,
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain TCP (loopback or a trusted relay only).
    None,
    /// Plain TCP upgraded with `STARTTLS` (RFC 3207) before any mail is sent.
    Starttls,
    /// TLS from the first byte ("SMTPS", RFC 8314).
    Tls,
}

/// `[smtp]`: the relay every message goes through, and the limits it asks us to keep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// Host name or IP address of the SMTP server.
    pub host: String,
    /// TCP port (25, 465, 587 or a test port).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Transport security; default `starttls`.
    #[serde(default = "default_security")]
    pub security: Security,
    /// User name for `AUTH`; the password comes only from `FEEDPOST_SMTP_PASSWORD`.
    pub username: Option<String>,
    /// PEM file of certificates to trust besides the public roots, for a relay whose certificate
    /// a private CA signed (or a self-signed one); relative to the config file.
    pub ca_file: Option<PathBuf>,
    /// Concurrent SMTP connections.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// At most this many messages per second in total (0 = no limit).
    #[serde(default)]
    pub rate_per_second: f64,
    /// At most this many messages in any sliding hour (0 = no limit), counting those sent by
    /// earlier runs in the last hour.
    #[serde(default)]
    pub hourly_cap: u64,
    /// Longest wait, in seconds, for the hourly cap to free a slot. When the next slot is further
    /// away the run ends, leaving the rest queued for `feedpost retry` (exit code 1).
    #[serde(default = "default_hourly_cap_wait_secs")]
    pub hourly_cap_wait_secs: u64,
    /// Seconds to wait for any one server reply before the attempt counts as a transient failure.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Attempts per recipient within one run before the recipient is left deferred for the next run.
    /// Also how many refused connections in a row a worker accepts, and (times `concurrency`) how
    /// many throttle replies in a row, with no message accepted, before throttles count as attempts.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// Ceiling of the retry delay, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Name sent in `EHLO`; default: this machine's host name.
    pub hello_name: Option<String>,
    /// Trust only the server certificate with this SHA-256 fingerprint (64 hex digits, `:`
    /// between bytes allowed, as `openssl x509 -noout -fingerprint -sha256` prints it), whoever
    /// signed it: for a relay with a self-signed certificate.
    pub tls_pin_sha256: Option<String>,
    /// With `security = "none"`, allows a host that is not on this machine (a relay on a trusted
    /// network). Credentials are never sent in clear text, with or without it.
    #[serde(default)]
    pub allow_plaintext: bool,
}

fn default_language() -> String {
    "en".into()
}
fn default_issues() -> PathBuf {
    "issues".into()
}
fn default_feeds() -> PathBuf {
    "feeds".into()
}
fn default_subscribers() -> PathBuf {
    "subscribers.toml".into()
}
fn default_feed_entries() -> usize {
    20
}
fn default_permalink_prefix() -> String {
    "issues/".into()
}
fn default_outbox() -> PathBuf {
    "outbox".into()
}
fn default_ledger() -> PathBuf {
    "feedpost.sqlite".into()
}
fn default_port() -> u16 {
    587
}
fn default_security() -> Security {
    Security::Starttls
}
fn default_concurrency() -> usize {
    8
}
fn default_hourly_cap_wait_secs() -> u64 {
    300
}
fn default_timeout() -> u64 {
    60
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_base_ms() -> u64 {
    1_000
}
fn default_retry_max_ms() -> u64 {
    60_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    site: Site,
    mail: Mail,
    smtp: Option<Smtp>,
    dkim: Option<Dkim>,
    serve: Option<serve::RawServe>,
    store: Option<store::RawStore>,
}

impl Config {
    /// Whether the site's language (`site.language`, BCP 47) is Chinese (`zh`, `zh-CN`, …): the
    /// email and the archive then use their Chinese words.
    pub fn is_chinese(&self) -> bool {
        self.site.language.to_ascii_lowercase().starts_with("zh")
    }

    /// Whether Markdown is rendered CJK-aware: `site.cjk`, else whether `site.language` is
    /// Chinese, Japanese or Korean.
    pub fn cjk(&self) -> bool {
        self.site.cjk.unwrap_or_else(|| {
            let lang = self.site.language.to_ascii_lowercase();
            ["zh", "ja", "ko"]
                .iter()
                .any(|l| lang == *l || lang.starts_with(&format!("{l}-")))
        })
    }

    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML, has unknown or missing keys, or fails
    /// validation; the message names the file and the key.
    ///
    /// A value that fails validation is an [`Invalid`] (key, line, message) under the context
    /// `invalid config file `path`, line N`.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::bail!("{}", missing_config(path))
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "failed to read the config file `{}` (pass another with --config)",
                        path.display()
                    )
                })
            }
        };
        let root = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let config = Config::parse(&text, &root).and_then(|config| {
            if let Some(dkim) = &config.dkim {
                // The key is read now, so a bad one is reported before anything is sent.
                crate::mail::sign::DkimSigner::from_config(dkim).map_err(|e| Invalid {
                    key: "dkim.private_key".into(),
                    line: key_line(&text, "dkim.private_key"),
                    message: format!("{e:#}"),
                })?;
            }
            Ok(config)
        });
        config.map_err(|e| {
            let at = match e.downcast_ref::<Invalid>().and_then(|i| i.line) {
                Some(line) => format!(", line {line}"),
                None => String::new(),
            };
            e.context(format!("invalid config file `{}`{at}", path.display()))
        })
    }

    /// Parses config text; relative paths are resolved against `root`.
    ///
    /// # Errors
    /// An [`Invalid`] naming the line: invalid TOML, an unknown or missing key, or a value that
    /// fails validation.
    pub fn parse(text: &str, root: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Invalid {
            key: String::new(),
            line: e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1),
            message: e.message().trim().to_string(),
        })?;
        let mut config = Config {
            site: raw.site,
            mail: raw.mail,
            smtp: raw.smtp,
            dkim: raw.dkim,
            serve: raw
                .serve
                .map(|s| s.validate(text))
                .transpose()
                .map_err(anyhow::Error::new)?,
            store: raw
                .store
                .map(|s| s.validate(text))
                .transpose()
                .map_err(anyhow::Error::new)?,
            root: root.to_path_buf(),
        };
        config.validate().map_err(|mut e| {
            e.line = key_line(text, &e.key);
            anyhow::Error::new(e)
        })?;
        if let Some(dkim) = &mut config.dkim {
            let from = config.mail.from.parse::<lettre::message::Mailbox>()?;
            dkim.validate(from.email.domain()).map_err(|mut e| {
                e.line = key_line(text, &e.key);
                e
            })?;
        }
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = root.join(&*p);
            }
        };
        resolve(&mut config.site.issues);
        resolve(&mut config.site.feeds);
        resolve(&mut config.site.subscribers);
        resolve(&mut config.mail.outbox);
        resolve(&mut config.mail.ledger);
        if let Some(ca_file) = config.smtp.as_mut().and_then(|s| s.ca_file.as_mut()) {
            resolve(ca_file);
        }
        if let Some(dkim) = config.dkim.as_mut() {
            resolve(&mut dkim.private_key);
        }
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), Invalid> {
        self.validate_site()?;
        self.validate_mail()?;
        if let Some(smtp) = &self.smtp {
            smtp.validate()?;
        }
        Ok(())
    }

    fn validate_site(&mut self) -> Result<(), Invalid> {
        let base = &mut self.site.base_url;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(invalid(
                "site.base_url",
                format!("`site.base_url` must be an absolute http(s) URL, got `{base}`"),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let prefix = self.site.permalink_prefix.trim_matches('/');
        self.site.permalink_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        if let Some(hub) = &self.site.websub_hub {
            if !matches!(hub.scheme(), "http" | "https") || hub.host().is_none() {
                return Err(invalid(
                    "site.websub_hub",
                    format!("`site.websub_hub` must be an absolute http(s) URL, got `{hub}`"),
                ));
            }
        }
        crate::issue::files::Include::new(&self.site.include)
            .map_err(|e| invalid("site.include", format!("{e:#}")))?;
        if self.site.feed_entries == 0 {
            return Err(invalid(
                "site.feed_entries",
                "`site.feed_entries` must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn validate_mail(&mut self) -> Result<(), Invalid> {
        let from = self
            .mail
            .from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| {
                invalid(
                    "mail.from",
                    format!("`mail.from` is not a valid mailbox (`Name <user@example.org>`): {e}"),
                )
            })?;
        if !from.email.user().is_ascii() {
            return Err(invalid(
                "mail.from",
                format!("`mail.from` has a non-ASCII local part (`{}`), which every relay would need SMTPUTF8 (RFC 6531) for: use an ASCII address", from.email.user()),
            ));
        }
        if let Some(reply_to) = &self.mail.reply_to {
            reply_to.parse::<lettre::message::Mailbox>().map_err(|e| {
                invalid(
                    "mail.reply_to",
                    format!("`mail.reply_to` is not a valid mailbox: {e}"),
                )
            })?;
        }
        if let Some(url) = &self.mail.unsubscribe_url {
            let probe = url.replace("{token}", "t").replace("{email}", "e");
            let parsed = Url::parse(&probe).map_err(|e| {
                invalid(
                    "mail.unsubscribe_url",
                    format!("`mail.unsubscribe_url` is not a URL: {e}"),
                )
            })?;
            if parsed.scheme() != "https" {
                return Err(invalid(
                    "mail.unsubscribe_url",
                    format!("`mail.unsubscribe_url` must be https (RFC 8058 one-click unsubscribe), got `{url}`"),
                ));
            }
        }
        if let Some(mailto) = &self.mail.unsubscribe_mailto {
            let addr = mailto.trim_start_matches("mailto:");
            addr.parse::<lettre::Address>().map_err(|e| {
                invalid(
                    "mail.unsubscribe_mailto",
                    format!("`mail.unsubscribe_mailto` is not an address: {e}"),
                )
            })?;
        }
        if let Some(list_id) = &self.mail.list_id {
            let ok = !list_id.is_empty()
                && list_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !ok {
                return Err(invalid(
                    "mail.list_id",
                    format!("`mail.list_id` must be a dot-atom like `weekly.example.org` (RFC 2919), got `{list_id}`"),
                ));
            }
        }
        if let Some(address) = &mut self.mail.postal_address {
            let line = address.split_whitespace().collect::<Vec<_>>().join(" ");
            if line.is_empty() {
                return Err(invalid(
                    "mail.postal_address",
                    "`mail.postal_address` is empty: write the sender's postal address on one line, or leave the key out".into(),
                ));
            }
            *address = line;
        }
        Ok(())
    }

    /// The sender's mailbox, parsed (validated at load time).
    ///
    /// An internationalised domain is given in A-labels (see [`crate::subscribers::normalize`]),
    /// so the envelope sender needs no SMTPUTF8.
    pub fn from_mailbox(&self) -> lettre::message::Mailbox {
        let mut mailbox: lettre::message::Mailbox = self
            .mail
            .from
            .parse()
            .expect("validated in Config::validate");
        if let Some(ascii) = crate::subscribers::normalize(mailbox.email.as_ref())
            .ok()
            .and_then(|(address, _)| address.parse().ok())
        {
            mailbox.email = ascii;
        }
        mailbox
    }

    /// The `List-Id` identifier: `mail.list_id`, else derived from the sender's domain.
    pub fn list_id(&self) -> String {
        match &self.mail.list_id {
            Some(id) => id.clone(),
            None => {
                let from = self.from_mailbox();
                format!("newsletter.{}", from.email.domain())
            }
        }
    }
}

/// What to say when there is no config file at `path`: the folder looked in, and the two ways
/// on (`feedpost init`, `--config`).
fn missing_config(path: &Path) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let folder = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf()),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    format!(
        "there is no `{name}` in `{}`: run feedpost in the site's folder, pass its config with --config PATH, or start a site here with `feedpost init`",
        folder.display()
    )
}

/// Whether `host` is this machine: `localhost`, or a loopback address (`127.0.0.0/8`, `::1`).
/// Names are not resolved.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

impl Smtp {
    /// Refuses what cannot work or would be unsafe, naming the key: an empty or spaced host, a
    /// clear-text session to a host off this machine (always with credentials; without them
    /// unless `allow_plaintext`), and values out of range (see README).
    fn validate(&self) -> Result<(), Invalid> {
        let host = self.host.trim();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "smtp.host",
                format!(
                    "`smtp.host` must be a host name or address, got `{}`",
                    self.host
                ),
            ));
        }
        if self.port == 0 {
            return Err(invalid(
                "smtp.port",
                "`smtp.port` must be between 1 and 65535 (587 for STARTTLS, 465 for TLS)".into(),
            ));
        }
        if self.security == Security::None && !is_loopback(host) {
            if self.username.is_some() {
                return Err(invalid(
                    "smtp.username",
                    format!("`smtp.username` is set and `smtp.security = \"none\"`: the password would cross the network to `{host}` in clear text. Use `security = \"starttls\"` (port 587) or `\"tls\"` (port 465); clear text is only for a relay on this machine"),
                ));
            }
            if !self.allow_plaintext {
                return Err(invalid(
                    "smtp.security",
                    format!("`smtp.security = \"none\"` would send mail unencrypted to `{host}`, which is not on this machine. Use `\"starttls\"` or `\"tls\"`, or, for a relay on a network you trust, set `smtp.allow_plaintext = true`"),
                ));
            }
        }
        if let Some(user) = &self.username {
            if user.is_empty() || user.chars().any(char::is_control) {
                return Err(invalid(
                    "smtp.username",
                    "`smtp.username` must be a non-empty name without control characters".into(),
                ));
            }
        }
        if let Some(name) = &self.hello_name {
            let literal = name.starts_with('[') && name.ends_with(']');
            let ok = !name.is_empty()
                && (literal
                    || name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')));
            if !ok {
                return Err(invalid(
                    "smtp.hello_name",
                    format!("`smtp.hello_name` must be a domain name like `mail.example.org` (or an address literal `[192.0.2.1]`), got `{name}`"),
                ));
            }
        }
        if let Some(pin) = &self.tls_pin_sha256 {
            crate::deliver::transport::tls::parse_pin(pin).map_err(|e| {
                invalid("smtp.tls_pin_sha256", format!("`smtp.tls_pin_sha256`: {e}"))
            })?;
        }
        let ranges: [(&str, u64, u64, u64); 7] = [
            ("smtp.concurrency", self.concurrency as u64, 1, 256),
            ("smtp.max_attempts", u64::from(self.max_attempts), 1, 100),
            ("smtp.timeout_secs", self.timeout_secs, 1, 3_600),
            ("smtp.retry_base_ms", self.retry_base_ms, 1, 3_600_000),
            (
                "smtp.retry_max_ms",
                self.retry_max_ms,
                self.retry_base_ms.max(1),
                86_400_000,
            ),
            (
                "smtp.hourly_cap_wait_secs",
                self.hourly_cap_wait_secs,
                0,
                86_400,
            ),
            ("smtp.hourly_cap", self.hourly_cap, 0, 1_000_000_000),
        ];
        for (key, value, low, high) in ranges {
            if value < low || value > high {
                return Err(invalid(
                    key,
                    format!("`{key}` must be between {low} and {high}, got {value}"),
                ));
            }
        }
        let rate = self.rate_per_second;
        if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && !(0.001..=1_000_000.0).contains(&rate))
        {
            return Err(invalid(
                "smtp.rate_per_second",
                format!("`smtp.rate_per_second` must be 0 (no limit) or between 0.001 and 1000000 messages a second, got {rate}"),
            ));
        }
        Ok(())
    }
}

/// A value of the config file that fails validation: which key, on which line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key, as `table.key`.
    pub key: String,
    /// 1-based line of the key in the config text, when the key is written there (not a
    /// default).
    pub line: Option<usize>,
    /// What is wrong and how to fix it; names the key.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

pub(crate) fn invalid(key: &str, message: String) -> Invalid {
    Invalid {
        key: key.to_string(),
        line: None,
        message,
    }
}

/// The [`Invalid`] for a `value` of the config `text` read with its span: `key` (`table.key`),
/// the 1-based line where the value starts, and the message "`key` " followed by `message`
/// (which says what is wrong and how to fix it). Shared by the `[serve]` and `[store]` tables.
fn bad_value<T>(text: &str, value: &toml::Spanned<T>, key: &str, message: String) -> Invalid {
    Invalid {
        key: key.to_string(),
        line: text
            .get(..value.span().start)
            .map(|before| before.matches('\n').count() + 1),
        message: format!("`{key}` {message}"),
    }
}

/// The 1-based line where `key` (`table.key`) is written in the TOML `text`, from the parser's
/// spans.
pub(crate) fn key_line(text: &str, key: &str) -> Option<usize> {
    let (table, name) = key.split_once('.')?;
    let doc = toml::de::DeTable::parse(text).ok()?;
    let (_, section) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == table)?;
    let toml::de::DeValue::Table(section) = section.get_ref() else {
        return None;
    };
    let (found, _) = section.iter().find(|(k, _)| k.get_ref() == name)?;
    let start = found.span().start;
    Some(text.get(..start)?.matches('\n').count() + 1)
}

/// A config for unit tests: a `[site]` table of `site` lines (TOML), a minimal `[mail]` table,
/// the config folder `/site`.
#[cfg(test)]
pub(crate) fn test_config(site: &str) -> Config {
    Config::parse(
        &format!("[site]\n{site}\n[mail]\nfrom='a@b.org'\n"),
        Path::new("/site"),
    )
    .expect("a valid test config")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[site]
title = "SOFA Weekly"
base_url = "https://www.sofastack.tech"
[mail]
from = "SOFA Weekly <weekly@example.org>"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_absolute_paths() {
        let c = Config::parse(MINIMAL, Path::new("/site")).unwrap();
        assert_eq!(c.site.base_url.as_str(), "https://www.sofastack.tech/");
        assert_eq!(c.site.issues, Path::new("/site/issues"));
        assert_eq!(c.mail.ledger, Path::new("/site/feedpost.sqlite"));
        assert_eq!(c.site.feed_entries, 20);
        assert!(c.smtp.is_none());
        assert_eq!(c.list_id(), "newsletter.example.org");
    }

    #[test]
    fn smtp_ca_file_is_relative_to_the_config_and_limits_have_defaults() {
        let text =
            format!("{MINIMAL}[smtp]\nhost = \"relay.example.org\"\nca_file = \"certs/ca.pem\"\n");
        let c = Config::parse(&text, Path::new("/site")).unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(
            smtp.ca_file.as_deref(),
            Some(Path::new("/site/certs/ca.pem"))
        );
        assert_eq!(
            (
                smtp.rate_per_second,
                smtp.hourly_cap,
                smtp.hourly_cap_wait_secs
            ),
            (0.0, 0, 300)
        );
    }

    #[test]
    fn websub_hub_must_be_http() {
        let text = MINIMAL.replace("[mail]", "websub_hub = \"ftp://hub.example/\"\n[mail]");
        let err = format!("{:#}", Config::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("site.websub_hub"), "{err}");
        let text = MINIMAL.replace("[mail]", "websub_hub = \"https://hub.example/\"\n[mail]");
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(c.site.websub_hub.unwrap().as_str(), "https://hub.example/");
    }

    #[test]
    fn cjk_rendering_follows_the_language_unless_set() {
        let lang = |l: &str, extra: &str| {
            let text = MINIMAL.replace("[mail]", &format!("language = \"{l}\"\n{extra}[mail]"));
            Config::parse(&text, Path::new("/")).unwrap().cjk()
        };
        assert!(lang("zh-CN", ""));
        assert!(lang("ja", ""));
        assert!(lang("ko-KR", ""));
        assert!(!lang("en", ""));
        assert!(!lang("zu", ""));
        assert!(!lang("zh-CN", "cjk = false\n"));
        assert!(lang("en", "cjk = true\n"));
    }

    #[test]
    fn postal_address_is_one_line() {
        let text = format!("{MINIMAL}postal_address = \"\"\"SOFA Weekly\n  1 Example Road\"\"\"\n");
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(
            c.mail.postal_address.as_deref(),
            Some("SOFA Weekly 1 Example Road")
        );
        let text = format!("{MINIMAL}postal_address = \" \"\n");
        let err = format!("{:#}", Config::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("mail.postal_address"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("[mail]", "colour = \"red\"\n[mail]");
        let err = format!("{:#}", Config::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_from_is_named() {
        let text = MINIMAL.replace("SOFA Weekly <weekly@example.org>", "not an address");
        let err = format!("{:#}", Config::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("mail.from"), "{err}");
    }

    fn smtp_error(lines: &str) -> Invalid {
        let text = format!("{MINIMAL}[smtp]\n{lines}\n");
        Config::parse(&text, Path::new("/"))
            .unwrap_err()
            .downcast::<Invalid>()
            .unwrap()
    }

    #[test]
    fn clear_text_to_another_host_is_refused_with_the_key_and_line() {
        // Line 7 is `[smtp]`: the keys follow it.
        let e =
            smtp_error("host = \"relay.example.org\"\nsecurity = \"none\"\nusername = \"weekly\"");
        assert_eq!((e.key.as_str(), e.line), ("smtp.username", Some(10)));
        assert!(e.message.contains("clear text"), "{}", e.message);
        let e = smtp_error("host = \"relay.example.org\"\nsecurity = \"none\"");
        assert_eq!((e.key.as_str(), e.line), ("smtp.security", Some(9)));
        assert!(e.message.contains("allow_plaintext"), "{}", e.message);
        // Opted in, or on this machine: allowed, but never with a password to another host.
        for ok in [
            "host = \"relay.example.org\"\nsecurity = \"none\"\nallow_plaintext = true",
            "host = \"127.0.0.1\"\nsecurity = \"none\"\nusername = \"weekly\"",
            "host = \"localhost\"\nsecurity = \"none\"",
            "host = \"::1\"\nsecurity = \"none\"",
        ] {
            let text = format!("{MINIMAL}[smtp]\n{ok}\n");
            Config::parse(&text, Path::new("/")).unwrap();
        }
        let e = smtp_error("host = \"relay.example.org\"\nsecurity = \"none\"\nallow_plaintext = true\nusername = \"w\"");
        assert_eq!(e.key, "smtp.username");
    }

    #[test]
    fn absurd_values_are_refused_with_the_key_and_line() {
        for (line, key) in [
            ("rate_per_second = 1e-300", "smtp.rate_per_second"),
            ("rate_per_second = -1.0", "smtp.rate_per_second"),
            ("rate_per_second = nan", "smtp.rate_per_second"),
            ("timeout_secs = 0", "smtp.timeout_secs"),
            ("timeout_secs = 100000000000", "smtp.timeout_secs"),
            ("retry_base_ms = 0", "smtp.retry_base_ms"),
            ("retry_max_ms = 5", "smtp.retry_max_ms"),
            ("max_attempts = 0", "smtp.max_attempts"),
            ("concurrency = 0", "smtp.concurrency"),
            ("port = 0", "smtp.port"),
            ("hello_name = \"a b\\r\\nRSET\"", "smtp.hello_name"),
            ("tls_pin_sha256 = \"AB:CD\"", "smtp.tls_pin_sha256"),
        ] {
            let e = smtp_error(&format!("host = \"127.0.0.1\"\n{line}"));
            assert_eq!(
                (e.key.as_str(), e.line),
                (key, Some(9)),
                "{line}: {}",
                e.message
            );
            assert!(e.message.contains(key), "{}", e.message);
        }
    }

    #[test]
    fn the_sender_is_sent_as_ascii() {
        let text = MINIMAL.replace("weekly@example.org", "weekly@bücher.example");
        let c = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(
            c.from_mailbox().email.to_string(),
            "weekly@xn--bcher-kva.example"
        );
        let text = MINIMAL.replace("weekly@example.org", "周报@example.org");
        let e = Config::parse(&text, Path::new("/"))
            .unwrap_err()
            .downcast::<Invalid>()
            .unwrap();
        assert_eq!((e.key.as_str(), e.line), ("mail.from", Some(6)));
    }

    #[test]
    fn from_file_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedpost.toml");
        std::fs::write(
            &path,
            format!("{MINIMAL}[smtp]\nhost = \"127.0.0.1\"\nrate_per_second = 1e-300\n"),
        )
        .unwrap();
        let e = Config::from_file(&path).unwrap_err();
        let top = e.to_string();
        assert!(top.ends_with("feedpost.toml`, line 9"), "{top}");
        assert!(
            format!("{e:#}").contains("`smtp.rate_per_second` must be 0"),
            "{e:#}"
        );
    }

    #[test]
    fn plain_http_unsubscribe_url_is_refused() {
        let text = format!("{MINIMAL}unsubscribe_url = \"http://x.org/u?t={{token}}\"\n");
        let err = format!("{:#}", Config::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("https"), "{err}");
    }
}
