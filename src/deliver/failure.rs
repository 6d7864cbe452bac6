//! Why an attempt did not deliver, as the engine must treat it.
//!
//! A reply is read with the stage of the session it answers (RFC 5321) and its enhanced status
//! code (RFC 3463, `class.subject.detail`), never by the words of its text. Whose problem a
//! refusal is decides what it costs:
//!
//! | reply | stage | meaning | the engine |
//! | --- | --- | --- | --- |
//! | 421, or 4xx to the greeting, `EHLO`, `AUTH`, `MAIL`; 4.3.2, 4.4.5, 4.5.3 | any | slow down | [`Failure::Throttled`]: this connection backs off |
//! | other 4xx, no reply, dropped connection | any | try later | [`Failure::Transient`]: the recipient is retried |
//! | 5.1.x, 5.2.1, 5.2.2 (bad or disabled mailbox, mailbox full); 550, 551, 553 without a code | `RCPT`, end of data | the recipient's own | [`Failure::Permanent`]: failed and suppressed |
//! | 5.2.3, 5.3.4, 552 without a code (too large) | `MAIL`, `RCPT`, `DATA`, end of data | the message's | [`Failure::Fatal`]: the run stops |
//! | 5.7.x (policy, relay denied, spam) | `RCPT`, `DATA`, end of data | the sender's or the message's | [`Failure::Fatal`] |
//! | 5xx | greeting, `EHLO`, `AUTH`, `MAIL`, `DATA` | the sender's | [`Failure::Fatal`] |
//! | other 5xx (e.g. 554 5.6.0, 554 without a code) | `RCPT`, end of data | unclear | [`Failure::Unclear`]: held until the run can tell |
//!
//! An unclear refusal is the recipient's own if other messages get through; the same one to
//! several recipients in a row is the message's or the sender's (see the engine).

use std::fmt;

/// Where in the session a reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The server's greeting.
    Greeting,
    /// `EHLO`.
    Hello,
    /// `STARTTLS`.
    StartTls,
    /// `AUTH`.
    Auth,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// The `DATA` command (before the content).
    Data,
    /// The end of the content: the reply that accepts or refuses the message.
    Message,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Greeting => "the greeting",
            Stage::Hello => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Message => "the end of the message",
        })
    }
}

/// An enhanced status code (RFC 3463): `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced {
    /// 2, 4 or 5.
    pub class: u8,
    /// 0–999: 1 addressing, 2 mailbox, 3 mail system, 4 network, 5 protocol, 6 content, 7
    /// security or policy.
    pub subject: u16,
    /// 0–999.
    pub detail: u16,
}

impl Enhanced {
    /// The enhanced code at the start of a reply's text, if it has one (`5.1.1 User unknown`).
    pub fn parse(text: &str) -> Option<Enhanced> {
        let word = text.split_whitespace().next()?;
        let mut parts = word.split('.');
        let class = parts.next()?.parse().ok()?;
        let subject = parts.next()?.parse().ok()?;
        let detail = parts.next()?.parse().ok()?;
        (parts.next().is_none() && matches!(class, 2 | 4 | 5) && subject < 1000 && detail < 1000)
            .then_some(Enhanced {
                class,
                subject,
                detail,
            })
    }
}

/// A server's reply: its code, its enhanced code when it has one of the same class, and the
/// whole text as sent (`550 5.1.1 User unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code, if the reply carries one agreeing with `code`'s class.
    pub enhanced: Option<Enhanced>,
    /// The reply as sent: code, then the text (lines joined with spaces).
    pub text: String,
}

impl Reply {
    /// A reply from its code and text (without the code).
    pub fn new(code: u16, text: &str) -> Reply {
        let enhanced = Enhanced::parse(text).filter(|e| u16::from(e.class) == code / 100);
        Reply {
            code,
            enhanced,
            text: format!("{code} {}", text.trim()),
        }
    }

    fn subject(&self) -> Option<(u16, u16)> {
        self.enhanced.map(|e| (e.subject, e.detail))
    }
}

/// Why an attempt did not deliver, as the engine must treat it. Each carries the server's reply
/// or the local error (with what to do about it, where the run stops), for the ledger and the
/// log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Try the recipient again later: a 4xx reply, a timeout, a refused or lost connection, a
    /// failed TLS handshake (RFC 5321 §4.2.1).
    #[error("{0}")]
    Transient(String),
    /// The server asks this connection to slow down or closes it (421, a 4xx to the session or
    /// to `MAIL FROM`, congestion): the connection backs off, the recipient waits its turn
    /// without spending an attempt.
    #[error("{0}")]
    Throttled(String),
    /// The recipient's own permanent failure (an unknown or disabled mailbox): it will never get
    /// the message; the address is suppressed.
    #[error("{0}")]
    Permanent(String),
    /// This recipient cannot be sent through this relay (a non-ASCII address without SMTPUTF8):
    /// its delivery fails, and the address is not suppressed — another relay could take it.
    #[error("{0}")]
    Unsendable(String),
    /// A permanent refusal whose owner is unclear: the recipient's if other messages get
    /// through, the message's if the same refusal meets several recipients in a row.
    #[error("{reply}")]
    Unclear {
        /// The reply.
        reply: String,
        /// What makes two refusals "the same": the stage and the codes.
        kind: String,
        /// Whether the address is suppressed once the refusal proves to be the recipient's (not
        /// for a refused syntax, which is feedpost's fault).
        suppress: bool,
    },
    /// The server refuses us or the message, not the recipient: every other message would meet
    /// the same refusal, so the run stops; nobody is failed or suppressed for it.
    #[error("{0}")]
    Fatal(String),
}

/// What a refusal is read against: the message and the session it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `host:port` of the server.
    pub server: &'a str,
    /// The envelope sender.
    pub sender: &'a str,
    /// The message's size in bytes.
    pub size: usize,
    /// The largest message the server declared (`SIZE`, RFC 1870), if it did.
    pub size_limit: Option<u64>,
}

/// What a permanent refusal is about.
enum Owner {
    Recipient,
    TooLarge,
    Policy,
    Syntax,
    Unclear,
}

fn owner(stage: Stage, reply: &Reply) -> Owner {
    match (reply.subject(), reply.code) {
        (Some((1, _)), _) | (Some((2, 1 | 2)), _) => Owner::Recipient,
        (Some((2, 3) | (3, 4)), _) | (None, 552) => Owner::TooLarge,
        (Some((7, _)), _) => Owner::Policy,
        (Some((5, _)), _) | (None, 500 | 501 | 555) => Owner::Syntax,
        (None, 550 | 551 | 553) if stage == Stage::Rcpt => Owner::Recipient,
        _ => Owner::Unclear,
    }
}

/// How the engine must treat `reply`, which came at `stage` of the session in `context`.
pub fn classify(stage: Stage, reply: &Reply, context: &Context<'_>) -> Failure {
    let text = reply.text.clone();
    if reply.code < 500 {
        let congestion = matches!(reply.subject(), Some((3, 2) | (4, 5) | (5, 3)));
        return if reply.code == 421 || stage <= Stage::Mail || congestion {
            Failure::Throttled(text)
        } else {
            Failure::Transient(text)
        };
    }
    let server = context.server;
    match stage {
        Stage::Greeting | Stage::Hello | Stage::StartTls => {
            Failure::Fatal(format!("{server} refused the session: {text}"))
        }
        Stage::Auth => Failure::Fatal(format!(
            "authentication with {server} failed: {text}; check `smtp.username` and FEEDPOST_SMTP_PASSWORD"
        )),
        Stage::Mail => match owner(stage, reply) {
            Owner::TooLarge => Failure::Fatal(too_large(&text, context)),
            _ => Failure::Fatal(format!(
                "the server refuses the sender `{}`: {text}; check that `mail.from` is an address {server} lets you send from",
                context.sender
            )),
        },
        Stage::Rcpt | Stage::Data | Stage::Message => match owner(stage, reply) {
            Owner::Recipient if stage != Stage::Data => Failure::Permanent(text),
            Owner::TooLarge => Failure::Fatal(too_large(&text, context)),
            Owner::Policy if stage == Stage::Rcpt => Failure::Fatal(format!(
                "{server} refuses the recipients for a reason of policy, not theirs: {text}. If it does not relay for us, authenticate (`smtp.username` and FEEDPOST_SMTP_PASSWORD) or send through the relay meant for `{}`",
                context.sender
            )),
            Owner::Policy => Failure::Fatal(format!(
                "{server} refused the message itself: {text}. A policy or spam filter refused it, not the reader: check the sender's SPF, DKIM and DMARC and the issue's content, or ask the relay's postmaster"
            )),
            _ if stage == Stage::Data => Failure::Fatal(format!(
                "{server} refused the message at DATA: {text}"
            )),
            Owner::Syntax => Failure::Unclear {
                reply: text,
                kind: kind(stage, reply),
                suppress: false,
            },
            Owner::Recipient | Owner::Unclear => Failure::Unclear {
                reply: text,
                kind: kind(stage, reply),
                suppress: true,
            },
        },
    }
}

/// What makes two unclear refusals "the same".
fn kind(stage: Stage, reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) => format!(
            "{} at {stage}, {}.{}.{}",
            reply.code, e.class, e.subject, e.detail
        ),
        None => format!("{} at {stage}", reply.code),
    }
}

/// The error for a message of `size` bytes larger than the `limit` the server declares in its
/// `SIZE` (RFC 1870), found before anything was sent.
pub fn over_size(size: usize, limit: u64, server: &str) -> String {
    format!(
        "the message is {size} bytes, more than the {limit} bytes {server} accepts (its `SIZE`, RFC 1870); nothing was sent. Make the issue shorter, or raise the relay's limit (Postfix: `message_size_limit`)"
    )
}

/// The error for a message the server finds too large.
pub fn too_large(text: &str, context: &Context<'_>) -> String {
    let limit = match context.size_limit {
        Some(limit) if limit > 0 => format!(", more than the {limit} bytes it declares (`SIZE`)"),
        _ => String::new(),
    };
    format!(
        "{} refuses the message as too large: {text}. The message is {} bytes{limit}; make the issue shorter, or raise the relay's limit (Postfix: `message_size_limit`)",
        context.server, context.size
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stage: Stage, code: u16, text: &str) -> Failure {
        classify(
            stage,
            &Reply::new(code, text),
            &Context {
                server: "relay:25",
                sender: "weekly@example.org",
                size: 1000,
                size_limit: Some(500),
            },
        )
    }

    #[test]
    fn enhanced_codes_are_read_only_when_they_agree_with_the_reply() {
        assert_eq!(
            Enhanced::parse("5.1.1 User unknown"),
            Some(Enhanced {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(Enhanced::parse("User 5.1.1 unknown"), None);
        assert_eq!(Enhanced::parse("5.1 bad"), None);
        assert_eq!(Reply::new(550, "4.1.1 odd").enhanced, None);
        assert_eq!(Reply::new(550, "5.1.1 ok").text, "550 5.1.1 ok");
    }

    #[test]
    fn the_recipients_own_failures_suppress() {
        for (stage, code, text) in [
            (Stage::Rcpt, 550, "5.1.1 User unknown"),
            (Stage::Rcpt, 550, "5.2.1 Mailbox disabled"),
            (Stage::Rcpt, 553, "mailbox name not allowed"),
            (Stage::Message, 552, "5.2.2 Mailbox full"),
            (Stage::Rcpt, 501, "5.1.3 Bad recipient address syntax"),
        ] {
            assert!(
                matches!(at(stage, code, text), Failure::Permanent(_)),
                "{code} {text}"
            );
        }
    }

    #[test]
    fn the_messages_and_the_senders_failures_stop_the_run() {
        for (stage, code, text, says) in [
            (
                Stage::Message,
                552,
                "5.3.4 Message size exceeds fixed limit",
                "1000 bytes, more than the 500",
            ),
            (Stage::Message, 552, "Message too big", "too large"),
            (
                Stage::Mail,
                552,
                "5.3.4 Message size exceeds fixed maximum",
                "too large",
            ),
            (
                Stage::Message,
                554,
                "5.7.1 Message refused as spam",
                "SPF, DKIM and DMARC",
            ),
            (
                Stage::Rcpt,
                554,
                "5.7.1 <a@x.org>: Relay access denied",
                "authenticate",
            ),
            (
                Stage::Mail,
                553,
                "5.7.1 Sender address rejected",
                "refuses the sender `weekly@example.org`",
            ),
            (Stage::Data, 554, "5.5.1 No valid recipients", "at DATA"),
            (Stage::Greeting, 554, "No service", "refused the session"),
            (
                Stage::Auth,
                535,
                "5.7.8 Bad credentials",
                "FEEDPOST_SMTP_PASSWORD",
            ),
        ] {
            match at(stage, code, text) {
                Failure::Fatal(m) => assert!(m.contains(says), "{code} {text}: {m}"),
                other => panic!("{code} {text}: {other:?}"),
            }
        }
    }

    #[test]
    fn unclear_refusals_are_held_and_syntax_never_suppresses() {
        match at(Stage::Message, 554, "5.6.0 Message rejected") {
            Failure::Unclear { kind, suppress, .. } => {
                assert_eq!(kind, "554 at the end of the message, 5.6.0");
                assert!(suppress);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            at(Stage::Rcpt, 554, "Transaction failed"),
            Failure::Unclear { suppress: true, .. }
        ));
        assert!(matches!(
            at(Stage::Message, 500, "5.5.2 Line too long"),
            Failure::Unclear {
                suppress: false,
                ..
            }
        ));
    }

    #[test]
    fn temporary_replies_throttle_the_session_or_defer_the_recipient() {
        for (stage, code, text, throttles) in [
            (Stage::Mail, 421, "4.7.0 Too many", true),
            (Stage::Mail, 454, "4.7.0 Slow down", true),
            (Stage::Rcpt, 452, "4.5.3 Too many recipients", true),
            (Stage::Rcpt, 421, "closing", true),
            // Greylisting, a full mailbox: the recipient's turn comes again.
            (Stage::Rcpt, 451, "4.7.1 Try again later", false),
            (Stage::Message, 452, "4.2.2 Mailbox full", false),
        ] {
            let failure = at(stage, code, text);
            let expected = if throttles {
                matches!(failure, Failure::Throttled(_))
            } else {
                matches!(failure, Failure::Transient(_))
            };
            assert!(expected, "{code} {text}: {failure:?}");
        }
    }
}
