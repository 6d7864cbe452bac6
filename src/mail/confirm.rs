//! The confirmation email of double opt-in: the message `feedpost serve` sends to an address
//! that asked to subscribe, with the link that confirms it.
//!
//! Beside the email in the pipeline but much simpler: one message, composed when a
//! request comes, with lettre's builder. Its words and layout are `mail-templates/confirm.rs`.
//!
//! It is a message the reader asked for, one at a time, not list mail: no `List-Id`, no
//! `List-Unsubscribe` (there is nothing to leave yet; ignoring it is the way out, and says so),
//! no `Precedence: bulk`. It carries what RFC 5322 asks of any message — `From`, `To`, `Date`,
//! a unique `Message-ID` — plus `Reply-To` when configured, and is DKIM-signed like the issues
//! when `[dkim]` is set (by the caller, with [`crate::mail::sign`]). Nothing the requester typed
//! besides the address appears in it.

#[path = "../../mail-templates/confirm.rs"]
mod template;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::Message;

use crate::config::Config;

/// What the confirmation email needs to say.
#[derive(Debug, Clone, Copy)]
pub struct Confirmation<'a> {
    /// The address to confirm, as the reader typed it (RFC 5321 mailbox); the envelope
    /// recipient and `To`.
    pub address: &'a str,
    /// The topics asked for; empty: every issue.
    pub topics: &'a [String],
    /// The `GET /confirm?token=…` link, absolute.
    pub confirm_url: &'a str,
    /// How long the link works, in hours (`serve.confirm_expiry_hours`).
    pub valid_hours: u32,
}

/// The confirmation email for `c`, as RFC 5322 bytes (CRLF line ends) with its SMTP envelope.
///
/// Headers: `From` (`mail.from`, also the envelope sender), `Reply-To` (`mail.reply_to`),
/// `To` (the bare address), `Subject` (RFC 2047 when not ASCII), `Date` (`now`, UTC), a random
/// `Message-ID` at the sender's domain, `MIME-Version`. Body: `multipart/alternative`, plain
/// text then HTML, in the site's language ([`Config::is_chinese`]).
///
/// # Errors
/// The address is not a valid mailbox (the server checks it before), or the message cannot be
/// built.
pub fn compose(
    config: &Config,
    c: &Confirmation<'_>,
    now: DateTime<Utc>,
) -> Result<(Envelope, Vec<u8>)> {
    let to: lettre::Address = c
        .address
        .parse()
        .with_context(|| format!("`{}` is not a valid address", c.address))?;
    let from = config.from_mailbox();
    let content = template::Confirm {
        lang: &config.site.language,
        site_title: &config.site.title,
        site_url: config.site.base_url.as_str(),
        address: c.address,
        topics: c.topics,
        confirm_url: c.confirm_url,
        valid_hours: c.valid_hours,
        words: if config.is_chinese() {
            &template::ZH
        } else {
            &template::EN
        },
    };
    let mut builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(content.subject())
        .date(now.into())
        .message_id(Some(message_id(&from)));
    if let Some(reply_to) = &config.mail.reply_to {
        builder = builder.reply_to(
            reply_to
                .parse()
                .context("`mail.reply_to` is not a valid mailbox")?,
        );
    }
    let message = builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(quoted_printable(content.text())?),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(quoted_printable(content.html().into_string())?),
                ),
        )
        .context("failed to build the confirmation email")?;
    Ok((message.envelope().clone(), message.formatted()))
}

/// `text` as a quoted-printable body (RFC 2045 §6.7): readable in the raw message, unlike the
/// base64 lettre picks for CJK text, which spam filters hold against a text part.
fn quoted_printable(text: String) -> Result<Body> {
    Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
        .map_err(|_| anyhow::anyhow!("the confirmation email's text cannot be encoded"))
}

/// A new `<random@domain>` Message-ID (RFC 5322 §3.6.4): 128 random bits, the sender's domain.
fn message_id(from: &Mailbox) -> String {
    let id: u128 = rand::random();
    format!("<{id:032x}.confirm@{}>", from.email.domain())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(language: &str) -> Config {
        crate::config::Config::parse(
            &format!(
                "[site]\ntitle = \"SOFA Weekly\"\nbase_url = \"https://www.sofastack.tech/\"\nlanguage = \"{language}\"\n[mail]\nfrom = \"SOFA Weekly <weekly@example.org>\"\nreply_to = \"team@example.org\"\n"
            ),
            std::path::Path::new("/site"),
        )
        .unwrap()
    }

    fn parsed(bytes: &[u8]) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(bytes).unwrap()
    }

    #[test]
    fn a_multipart_message_with_the_link_in_both_parts() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T08:00:00Z")
            .unwrap()
            .to_utc();
        let topics = vec!["MOSN".to_string(), "周报".to_string()];
        let url = "https://news.example.org/confirm?token=abc_-123";
        let (envelope, bytes) = compose(
            &config("zh-CN"),
            &Confirmation {
                address: "Reader@Example.org",
                topics: &topics,
                confirm_url: url,
                valid_hours: 48,
            },
            now,
        )
        .unwrap();
        assert_eq!(envelope.from().unwrap().to_string(), "weekly@example.org");
        assert_eq!(envelope.to()[0].to_string(), "Reader@Example.org");
        let m = parsed(&bytes);
        assert_eq!(m.subject(), Some("请确认订阅《SOFA Weekly》"));
        assert_eq!(m.to().unwrap().first().unwrap().name(), None);
        assert_eq!(
            m.reply_to().unwrap().first().unwrap().address(),
            Some("team@example.org")
        );
        assert!(m.message_id().unwrap().ends_with(".confirm@example.org"));
        assert_eq!(m.date().unwrap().to_timestamp(), now.timestamp());
        let text = m.body_text(0).unwrap();
        assert!(text.contains(url), "{text}");
        assert!(text.contains("48 小时"), "{text}");
        assert!(text.contains("主题：MOSN、周报"), "{text}");
        let html = m.body_html(0).unwrap();
        assert!(html.contains(&format!("href=\"{url}\"")), "{html}");
        assert!(html.contains("lang=\"zh-CN\""));
        for header in ["List-Unsubscribe", "List-Id", "Precedence"] {
            assert!(m.header(header).is_none(), "{header}");
        }
        assert!(bytes.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'));
        let raw = String::from_utf8_lossy(&bytes);
        assert_eq!(
            raw.matches("Content-Transfer-Encoding: quoted-printable")
                .count(),
            2,
            "{raw}"
        );
    }

    #[test]
    fn english_words_and_one_pass_filling() {
        let (_, bytes) = compose(
            &config("en"),
            &Confirmation {
                address: "{title}@example.org",
                topics: &[],
                confirm_url: "https://x.org/confirm?token=t",
                valid_hours: 2,
            },
            Utc::now(),
        )
        .unwrap();
        let m = parsed(&bytes);
        assert_eq!(
            m.subject(),
            Some("Confirm your subscription to SOFA Weekly")
        );
        let text = m.body_text(0).unwrap();
        assert!(
            text.contains("subscribe {title}@example.org to SOFA Weekly."),
            "{text}"
        );
        assert!(text.contains("within 2 hours"), "{text}");
        assert!(!text.contains("Topics"), "{text}");
    }

    #[test]
    fn message_ids_differ() {
        let from: Mailbox = "a@example.org".parse().unwrap();
        assert_ne!(message_id(&from), message_id(&from));
    }
}
