//! `feedpost.toml` → [`Config`]: the first stage of every command.
//!
//! Parsing (`Config::parse`) is kept apart from reading the file (`Config::from_file`) so tests can
//! skip the disk. Unknown keys are rejected, and validation after parsing names the offending key.
//! Relative paths are resolved against the folder holding the config file.

mod dkim;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use url::Url;

pub use dkim::Dkim;
pub use serve::Serve;

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
    /// A WebSub hub (`http(s)` URL, e.g. `https://pubsubhubbub.appspot.com/`): the feeds link it
    /// (`rel="hub"`) and `publish` pings it when the feeds change. None: no WebSub.
    pub websub_hub: Option<Url>,
    /// CJK-aware Markdown rendering (emphasis next to CJK punctuation, no space where a line
    /// break falls between two CJK characters), in every output. Default: on when `language` is
    /// Chinese, Japanese or Korean (`zh*`, `ja*`, `ko*`).
    pub cjk: Option<bool>,
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
    /// The SQLite ledger of deliveries.
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
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "failed to read the config file `{}` (pass another with --config)",
                path.display()
            )
        })?;
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
        let config = Config::parse(&text, &root)
            .with_context(|| format!("invalid config file `{}`", path.display()))?;
        if let Some(dkim) = &config.dkim {
            crate::mail::sign::DkimSigner::from_config(dkim)
                .with_context(|| format!("invalid config file `{}`", path.display()))?;
        }
        Ok(config)
    }

    /// Parses config text; relative paths are resolved against `root`.
    ///
    /// # Errors
    /// Invalid TOML (with line and column), unknown keys, or a value that fails validation.
    pub fn parse(text: &str, root: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut config = Config {
            site: raw.site,
            mail: raw.mail,
            smtp: raw.smtp,
            dkim: raw.dkim,
            serve: raw.serve.map(|s| s.validate(text)).transpose()?,
            root: root.to_path_buf(),
        };
        config.validate()?;
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

    fn validate(&mut self) -> Result<()> {
        let base = &mut self.site.base_url;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            bail!("`site.base_url` must be an absolute http(s) URL, got `{base}`");
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
                bail!("`site.websub_hub` must be an absolute http(s) URL, got `{hub}`");
            }
        }
        if self.site.feed_entries == 0 {
            bail!("`site.feed_entries` must be at least 1");
        }
        self.mail
            .from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "`mail.from` is not a valid mailbox (`Name <user@example.org>`): {e}"
                )
            })?;
        if let Some(dkim) = &mut self.dkim {
            let from = self.mail.from.parse::<lettre::message::Mailbox>()?;
            dkim.validate(from.email.domain())?;
        }
        if let Some(reply_to) = &self.mail.reply_to {
            reply_to
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| anyhow::anyhow!("`mail.reply_to` is not a valid mailbox: {e}"))?;
        }
        if let Some(url) = &self.mail.unsubscribe_url {
            let probe = url.replace("{token}", "t").replace("{email}", "e");
            let parsed = Url::parse(&probe)
                .map_err(|e| anyhow::anyhow!("`mail.unsubscribe_url` is not a URL: {e}"))?;
            if parsed.scheme() != "https" {
                bail!("`mail.unsubscribe_url` must be https (RFC 8058 one-click unsubscribe), got `{url}`");
            }
        }
        if let Some(mailto) = &self.mail.unsubscribe_mailto {
            let addr = mailto.trim_start_matches("mailto:");
            addr.parse::<lettre::Address>()
                .map_err(|e| anyhow::anyhow!("`mail.unsubscribe_mailto` is not an address: {e}"))?;
        }
        if let Some(address) = &mut self.mail.postal_address {
            let line = address.split_whitespace().collect::<Vec<_>>().join(" ");
            if line.is_empty() {
                bail!("`mail.postal_address` is empty: write the sender's postal address on one line, or leave the key out");
            }
            *address = line;
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                bail!("`smtp.host` is empty");
            }
            if smtp.concurrency == 0 || smtp.concurrency > 256 {
                bail!(
                    "`smtp.concurrency` must be between 1 and 256, got {}",
                    smtp.concurrency
                );
            }
            if smtp.max_attempts == 0 {
                bail!("`smtp.max_attempts` must be at least 1");
            }
            if smtp.rate_per_second < 0.0 || !smtp.rate_per_second.is_finite() {
                bail!("`smtp.rate_per_second` must be a positive number or 0 for no limit");
            }
            if smtp.timeout_secs == 0 {
                bail!("`smtp.timeout_secs` must be at least 1");
            }
        }
        Ok(())
    }

    /// The sender's mailbox, parsed (validated at load time).
    pub fn from_mailbox(&self) -> lettre::message::Mailbox {
        self.mail
            .from
            .parse()
            .expect("validated in Config::validate")
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

    #[test]
    fn plain_http_unsubscribe_url_is_refused() {
        let text = format!("{MINIMAL}unsubscribe_url = \"http://x.org/u?t={{token}}\"\n");
        let err = format!("{:#}", Config::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("https"), "{err}");
    }
}
