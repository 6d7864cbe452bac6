//! `feedpost publish ISSUE --to ADDRESS`: one real copy of the issue to one address, over the
//! configured transport (SMTP, or a file in the outbox), composed, personalised and signed as
//! every reader's is — recorded nowhere and counted nowhere: no store is opened, nothing is
//! built, and a later publish sends to that address as to anyone.
//!
//! The copy differs from the one a subscriber at that address gets in two ways only: its `Date`
//! is now, and its `Message-ID` is its own (`<test.…>`), so a mail client that drops a second
//! message with a `Message-ID` it has seen keeps the real one when it comes.

use std::io::Write;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{audience, token_secret};
use crate::cmd::Ran;
use crate::config::Config;
use crate::deliver::transport::{self, Outgoing};
use crate::issue::Issue;
use crate::mail::sign::SigningPool;
use crate::mail::{IssueMail, Recipient};
use crate::store::Channel;
use crate::subscribers;

/// Sends the test copy and prints where it went on stdout (`json`: as one JSON object,
/// `{"action": "test_send", "issue", "title", "file", "to", "via", "reply"}`).
///
/// # Errors
/// `to` is not a valid address, the secret is missing, the message cannot be signed, or the
/// server refuses the connection, the sender, the message or the address.
pub(super) async fn run(
    config: &Config,
    issue: &Issue,
    to: &str,
    now: DateTime<Utc>,
    json: bool,
) -> Result<Ran> {
    let (address, key) = subscribers::normalize(to).map_err(|e| anyhow!(e))?;
    let name = audience::name_of(config, issue, &key).await?;
    let secret = token_secret(config, Channel::of(config))?;
    let mail = IssueMail::compose(issue, config, &secret, now)?;
    let message_id = test_message_id(issue, &key, now, config);
    let (envelope, message) = mail.personalise(&Recipient {
        address: &address,
        name: name.as_deref(),
        message_id: &message_id,
    })?;
    let signed = SigningPool::for_config(config)?
        .sign(message, now)
        .await
        .context("the test copy could not be signed")?;
    let outbox = config.mail.outbox.join(&issue.slug).join("test");
    let transport = transport::from_config(config, outbox)?;
    let outgoing = Outgoing {
        envelope: &envelope,
        bytes: &signed,
        message_id: &message_id,
    };
    let failed = |e| anyhow!("{e}").context(format!("the test copy to {address} was not sent"));
    let mut conn = transport.connect().await.map_err(failed)?;
    let sent = match conn.start(&outgoing).await {
        Ok(()) => conn.finish(&outgoing).await,
        Err(e) => Err(e),
    };
    conn.close().await;
    let sent = sent.map_err(failed)?;
    let shown = match &name {
        Some(name) => format!("{name} <{address}>"),
        None => address.clone(),
    };
    let line = if json {
        serde_json::json!({
            "action": "test_send",
            "issue": issue.permalink.as_str(),
            "title": issue.title,
            "file": issue.path.display().to_string(),
            "to": address,
            "via": transport.describe(),
            "reply": sent.reply,
        })
        .to_string()
    } else {
        format!(
            "test copy of `{}` sent to {shown} via {}: {} (recorded nowhere)",
            issue.title,
            transport.describe(),
            sent.reply
        )
    };
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(Ran::success())
}

/// `<test.HASH.MILLIS@domain>`: unique to this test send, never a subscriber's `Message-ID`.
fn test_message_id(issue: &Issue, key: &str, now: DateTime<Utc>, config: &Config) -> String {
    let digest = Sha256::digest(format!("{}\0{key}", issue.permalink).as_bytes());
    format!(
        "<test.{}.{}@{}>",
        hex::encode(&digest[..8]),
        now.timestamp_millis(),
        config.from_mailbox().email.domain()
    )
}
