//! `feedpost preview`: the message one recipient would get, written to files for a look.

use std::io::Write;

use anyhow::{Context, Result};

use super::Ran;
use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::mail::{self, screenshot, IssueMail};
use crate::site::Site;
use crate::subscribers;

/// Writes `<slug>.eml` (the whole RFC 5322 message), `<slug>.html` and `<slug>.txt` into
/// `args.out` (default: `preview/` beside the config file) for the sample recipient — `--to`,
/// with their name when the subscriber list has them, else the list's first subscriber — then, unless `--no-screenshots`, the PNG screenshots of
/// [`screenshot::capture`] when Chromium is installed (when it is not, says how to install it).
/// The site is loaded as every command loads it (other bad issues do not stop a preview);
/// nothing is sent and no store is opened. The unsubscribe links carry a placeholder token (not
/// signed with `FEEDPOST_SECRET`, which a preview does not need), and a note on stderr says so
/// when the message has tokens. Prints each path written.
///
/// # Errors
/// The issue is bad, the sample recipient's address is invalid, the files cannot be written, or
/// Chromium is installed but fails.
pub fn run(config: &Config, args: &PreviewArgs) -> Result<Ran> {
    let mut site = Site::load(config)?;
    let index = site.find(&args.issue)?;
    let issue = site.issue(index)?.clone();
    let now = crate::now()?;
    let mail = IssueMail::compose(&issue, config, &mail::placeholder_secret(), now)?;
    if mail::carries_token(config) {
        tracing::info!(
            "the preview's unsubscribe links carry a placeholder token; `publish` signs each reader's with {}",
            crate::subscribers::token::SECRET_ENV
        );
    }
    let (address, name) = match &args.to {
        Some(to) => (to.clone(), listed_name(config, to)),
        None => subscribers::first(&config.site.subscribers)
            .map(|s| (s.address, s.name))
            .unwrap_or_else(|| ("reader@example.org".into(), None)),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| config.root.join(DEFAULT_OUT));
    let sample = mail.sample(config, &address, name.as_deref())?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("failed to create `{}`", out.display()))?;
    for (ext, bytes) in [
        ("eml", sample.eml.as_slice()),
        ("html", sample.html.as_bytes()),
        ("txt", sample.text.as_bytes()),
    ] {
        let path = out.join(format!("{}.{ext}", issue.slug));
        std::fs::write(&path, bytes)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
        writeln!(std::io::stdout().lock(), "{}", path.display())?;
    }
    if !args.no_screenshots {
        match screenshot::find_chromium() {
            Ok(chromium) => {
                let html = out.join(format!("{}.html", issue.slug));
                for path in screenshot::capture(&chromium, &html, &out, &issue.slug)? {
                    writeln!(std::io::stdout().lock(), "{}", path.display())?;
                }
            }
            Err(why) => tracing::warn!("no screenshots: {why}"),
        }
    }
    Ok(Ran::success())
}

/// The folder `preview` writes into without `--out`, beside the config file.
const DEFAULT_OUT: &str = "preview";

/// The name the subscriber list gives `address` (compared as `publish` compares recipients),
/// if it lists it with one.
fn listed_name(config: &Config, address: &str) -> Option<String> {
    let key = subscribers::normalize(address).ok()?.1;
    let mut name = None;
    subscribers::read(
        &config.site.subscribers,
        |s| {
            if name.is_none() && s.key == key {
                name = Some(s.name);
            }
        },
        |_| {},
    )
    .ok()?;
    if name.is_none() {
        tracing::info!(
            "`{address}` is not in the subscriber list: the preview greets nobody by name"
        );
    }
    name.flatten()
}
