//! The email: one issue composed once, then personalised per recipient for the cost of a copy.
//!
//! Stage four of the pipeline, between rendering and delivery. [`IssueMail::compose`] renders the
//! layout in `mail-templates/` once per issue, inlines its CSS (`style.css`; `head.css` stays in
//! a `<style>` block), writes the plain-text part from the Markdown ([`text`]), and
//! encodes both parts as quoted-printable *around* slot markers for the personal values (the
//! greeting and the unsubscribe link). [`IssueMail::personalise`] then fills the slots with the
//! recipient's encoded values between soft line breaks. lettre formats the whole message once,
//! with placeholders for what differs per recipient (`To`, `Message-ID`, `List-Unsubscribe` and
//! the two bodies); a recipient then costs three header lines formatted by lettre, a few small
//! encodings and one copy of the rest — not a render, nor a run of lettre's message builder.
//!
//! Standards: RFC 5322 (message format), RFC 2045–2047 (MIME, quoted-printable, encoded words),
//! RFC 2046 `multipart/alternative`, RFC 2369/2919 (`List-Unsubscribe`, `List-Id`), RFC 8058
//! (one-click unsubscribe).

pub mod confirm;
#[path = "../../mail-templates/layout.rs"]
mod layout;
pub mod screenshot;
pub mod sign;
pub mod text;

use anyhow::{Context, Result};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::message::header::{
    self, ContentTransferEncoding, ContentType, Header, HeaderName, HeaderValue, Headers,
};
use lettre::message::{Body, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};

use unicode_width::UnicodeWidthStr;

use crate::config::Config;
use crate::issue::markdown::Rendering;
use crate::issue::Issue;
use crate::subscribers::token::{self, Secret};

/// The layout's CSS, inlined into the elements of every message.
const CSS: &str = include_str!("../../mail-templates/style.css");
/// The layout's CSS kept in the `<style>` block: `@media` rules for small screens and dark mode.
const HEAD_CSS: &str = include_str!("../../mail-templates/head.css");

const GREETING: &str = "FEEDPOSTSLOTGREETING";
const UNSUBSCRIBE: &str = "FEEDPOSTSLOTUNSUBSCRIBE";

/// A personal value a body part leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Greeting,
    Unsubscribe,
}

/// A body part encoded once: quoted-printable pieces with slots between them.
#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
    /// Whether slot values are HTML (escaped) or plain text.
    html: bool,
}

#[derive(Debug, Clone)]
enum Piece {
    Encoded(Vec<u8>),
    Slot(Slot),
}

impl Template {
    /// Splits `text` at the slot markers and quoted-printable encodes each piece (RFC 2045 §6.7,
    /// CRLF line ends, 76-character lines).
    fn new(text: &str, html: bool) -> Template {
        let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        loop {
            let next = [(GREETING, Slot::Greeting), (UNSUBSCRIBE, Slot::Unsubscribe)]
                .into_iter()
                .filter_map(|(marker, slot)| rest.find(marker).map(|at| (at, marker, slot)))
                .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, marker, slot)) => {
                    pieces.push(Piece::Encoded(quoted_printable::encode(&rest[..at])));
                    pieces.push(Piece::Slot(slot));
                    rest = &rest[at + marker.len()..];
                }
                None => {
                    pieces.push(Piece::Encoded(quoted_printable::encode(rest)));
                    break;
                }
            }
        }
        Template { pieces, html }
    }

    /// About how many bytes the filled part takes.
    fn size(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Encoded(e) => e.len(),
                Piece::Slot(_) => 256,
            })
            .sum()
    }

    /// The encoded part with the slots filled: each value encoded on its own, joined with soft
    /// line breaks (`=\r\n`) so no line grows past 76 characters.
    fn fill(&self, values: &Values<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        self.fill_into(values, &mut out);
        out
    }

    /// [`Template::fill`], appending to `out`.
    fn fill_into(&self, values: &Values<'_>, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Encoded(e) => out.extend_from_slice(e),
                Piece::Slot(slot) => {
                    let raw = match slot {
                        Slot::Greeting => values.greeting,
                        Slot::Unsubscribe => values.unsubscribe_url,
                    };
                    let value = if self.html {
                        html_escape::encode_quoted_attribute(raw)
                    } else {
                        std::borrow::Cow::Borrowed(raw)
                    };
                    out.extend_from_slice(b"=\r\n");
                    out.extend_from_slice(&quoted_printable::encode(value.as_bytes()));
                    out.extend_from_slice(b"=\r\n");
                }
            }
        }
    }
}

struct Values<'a> {
    greeting: &'a str,
    unsubscribe_url: &'a str,
}

/// One recipient of an issue.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The address (RFC 5321 mailbox), as written in the subscriber list.
    pub address: &'a str,
    /// Display name for `To` and the greeting.
    pub name: Option<&'a str>,
    /// The message's `Message-ID`, with angle brackets (RFC 5322 §3.6.4).
    pub message_id: &'a str,
}

/// An issue's email, composed once per publish.
#[derive(Debug, Clone)]
pub struct IssueMail {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    subject: String,
    date: std::time::SystemTime,
    list_id: String,
    permalink: String,
    site_url: String,
    unsubscribe_url: Option<String>,
    /// `serve.public_url`: with `[serve]`, the unsubscribe link is its `/unsubscribe`.
    serve_url: Option<url::Url>,
    unsubscribe_mailto: String,
    secret: Secret,
    zh: bool,
    boundary: String,
    html: Template,
    text: Template,
    skeleton: Vec<Frame>,
}

/// A piece of the message as lettre formats it: bytes that are the same for every recipient, or
/// the place of something that is not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Fixed(Vec<u8>),
    To,
    MessageId,
    ListUnsubscribe,
    Text,
    Html,
}

/// Placeholders for what differs per recipient, in the message formatted once.
const PLACEHOLDER_TO: &str = "to@feedpost-placeholder.invalid";
const PLACEHOLDER_MESSAGE_ID: &str = "<message-id@feedpost-placeholder.invalid>";
const PLACEHOLDER_LIST_UNSUBSCRIBE: &str = "<FEEDPOSTSLOTLISTUNSUBSCRIBE>";
const PLACEHOLDER_TEXT: &[u8] = b"FEEDPOSTSLOTTEXTBODY";
const PLACEHOLDER_HTML: &[u8] = b"FEEDPOSTSLOTHTMLBODY";

/// One header line (folded, CRLF-terminated) exactly as lettre writes it in a message.
fn header_line(value: HeaderValue) -> String {
    let mut headers = Headers::new();
    headers.insert_raw(value);
    headers.to_string()
}

impl IssueMail {
    /// Composes `issue`'s message: renders the layout, inlines the CSS, derives the text part and
    /// encodes both. `secret` signs the unsubscribe tokens (see [`token::unsubscribe_token`];
    /// unused when the messages carry none, see [`carries_token`]); `now` is the
    /// `Date` of every message (UTC).
    ///
    /// # Errors
    /// The CSS cannot be inlined (a broken `mail-templates/style.css`).
    pub fn compose(
        issue: &Issue,
        config: &Config,
        secret: &Secret,
        now: DateTime<Utc>,
    ) -> Result<IssueMail> {
        let zh = config.is_chinese();
        let words = if zh { &layout::ZH } else { &layout::EN };
        let date = issue.date.format("%Y-%m-%d").to_string();
        let content_html = email_images(&whole_words(&issue.content_html));
        let page = layout::Layout {
            lang: &config.site.language,
            dir: direction(&config.site.language),
            site_title: &config.site.title,
            site_url: config.site.base_url.as_str(),
            title: &issue.title,
            date: &date,
            author: issue.author.as_deref(),
            preheader: &issue.summary,
            cover: issue.cover.as_ref().map(|c| c.as_str()),
            greeting: GREETING,
            content_html: &content_html,
            web_url: issue.permalink.as_str(),
            unsubscribe_url: UNSUBSCRIBE,
            manage_url: None,
            postal_address: config.mail.postal_address.as_deref(),
            words,
        };
        let markup = layout::render(&page, &without_comments(HEAD_CSS)).into_string();
        let inliner = css_inline::CSSInliner::options()
            .load_remote_stylesheets(false)
            .inline_style_tags(false)
            .keep_style_tags(true)
            .extra_css(Some(CSS.into()))
            .minify_css(true)
            .build();
        let html = inliner
            .inline(&markup)
            .context("failed to inline the CSS of mail-templates/style.css")?;
        let body_text = text::render(
            &issue.markdown,
            &issue.base,
            Rendering::for_site(config),
            &text::Words {
                image: words.image,
                links: &format!("{}{}", words.links, words.colon),
            },
        );
        let underline = issue.title.width().clamp(3, text::WIDTH);
        let text = layout::render_text(&page, &body_text, underline);
        let from = config.from_mailbox();
        let unsubscribe_mailto = config
            .mail
            .unsubscribe_mailto
            .clone()
            .map(|m| m.trim_start_matches("mailto:").to_string())
            .unwrap_or_else(|| from.email.to_string());
        let digest = Sha256::digest(issue.permalink.as_str().as_bytes());
        let mut mail = IssueMail {
            reply_to: config
                .mail
                .reply_to
                .as_deref()
                .map(str::parse)
                .transpose()?,
            from,
            subject: issue.title.clone(),
            date: now.into(),
            list_id: config.list_id(),
            permalink: issue.permalink.to_string(),
            site_url: config.site.base_url.to_string(),
            unsubscribe_url: config.mail.unsubscribe_url.clone(),
            serve_url: config.serve.as_ref().map(|s| s.public_url.clone()),
            unsubscribe_mailto,
            secret: secret.clone(),
            zh,
            boundary: format!("feedpost-{}", hex::encode(&digest[..12])),
            html: Template::new(&html, true),
            text: Template::new(&text, false),
            skeleton: Vec::new(),
        };
        mail.skeleton = mail.skeleton()?;
        Ok(mail)
    }

    /// The message formatted once by lettre with placeholders, cut at them.
    fn skeleton(&self) -> Result<Vec<Frame>> {
        let to = Mailbox::new(None, PLACEHOLDER_TO.parse()?);
        let formatted = self
            .build(
                to.clone(),
                PLACEHOLDER_MESSAGE_ID,
                PLACEHOLDER_LIST_UNSUBSCRIBE.to_string(),
                PLACEHOLDER_TEXT.to_vec(),
                PLACEHOLDER_HTML.to_vec(),
            )?
            .formatted();
        let formatted = fold_header_section(formatted);
        let markers = [
            (to_line(to).into_bytes(), Frame::To),
            (
                message_id_line(PLACEHOLDER_MESSAGE_ID).into_bytes(),
                Frame::MessageId,
            ),
            (
                list_unsubscribe_line(PLACEHOLDER_LIST_UNSUBSCRIBE.to_string()).into_bytes(),
                Frame::ListUnsubscribe,
            ),
            (PLACEHOLDER_TEXT.to_vec(), Frame::Text),
            (PLACEHOLDER_HTML.to_vec(), Frame::Html),
        ];
        let mut found = Vec::new();
        for (marker, frame) in markers {
            let mut hits = memchr::memmem::find_iter(&formatted, &marker);
            match (hits.next(), hits.next()) {
                (Some(at), None) => found.push((at, marker.len(), frame)),
                _ => anyhow::bail!(
                    "internal error: the message skeleton holds the {frame:?} placeholder {} times",
                    memchr::memmem::find_iter(&formatted, &marker).count()
                ),
            }
        }
        found.sort_by_key(|(at, _, _)| *at);
        let mut frames = Vec::new();
        let mut copied = 0;
        for (at, len, frame) in found {
            frames.push(Frame::Fixed(formatted[copied..at].to_vec()));
            frames.push(frame);
            copied = at + len;
        }
        frames.push(Frame::Fixed(formatted[copied..].to_vec()));
        Ok(frames)
    }

    /// The `Date` of every message of the issue, UTC (the `now` given to
    /// [`IssueMail::compose`]): also the DKIM signing time, so a message signed again is the same.
    pub fn date(&self) -> DateTime<Utc> {
        self.date.into()
    }

    /// The `Message-ID` of `issue`'s message to the recipient whose lowercased address is `key`:
    /// `<hash@domain>`, the same on every run, so a resent message carries the same id.
    pub fn message_id_for(issue_id: &str, key: &str, from: &Mailbox) -> String {
        let mut h = Sha256::new();
        h.update(issue_id.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        let d = h.finalize();
        format!(
            "<{}.{}@{}>",
            hex::encode(&d[..8]),
            hex::encode(&d[8..16]),
            from.email.domain()
        )
    }

    /// The unsubscribe URL for `address`: with `[serve]`, its one-click URL
    /// (`public_url` + `unsubscribe?token=…`, [`token::unsubscribe_url`]); else
    /// `mail.unsubscribe_url` with `{token}` and `{email}` filled in; else the `mailto:`
    /// fallback.
    pub fn unsubscribe_link(&self, address: &str) -> String {
        self.one_click(address)
            .unwrap_or_else(|| self.mailto_unsubscribe())
    }

    /// Whether messages carry a one-click (RFC 8058) unsubscribe URL.
    fn has_one_click(&self) -> bool {
        self.serve_url.is_some() || self.unsubscribe_url.is_some()
    }

    /// The one-click unsubscribe URL for `address`, if the site has one (see
    /// [`IssueMail::unsubscribe_link`]).
    fn one_click(&self, address: &str) -> Option<String> {
        if let Some(public_url) = &self.serve_url {
            return Some(token::unsubscribe_url(public_url, &self.secret, address).to_string());
        }
        let url = self.unsubscribe_url.as_deref()?;
        let token = token::unsubscribe_token(&self.secret, address);
        let email: String = url::form_urlencoded::byte_serialize(address.as_bytes()).collect();
        Some(if url.contains("{token}") || url.contains("{email}") {
            url.replace("{token}", &token).replace("{email}", &email)
        } else {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}email={email}&token={token}")
        })
    }

    fn mailto_unsubscribe(&self) -> String {
        format!("mailto:{}?subject=unsubscribe", self.unsubscribe_mailto)
    }

    /// The greeting line for a recipient, in the newsletter's language.
    fn greeting(&self, name: Option<&str>) -> String {
        match (name, self.zh) {
            (Some(n), true) => format!("{n}，你好！"),
            (None, true) => "你好！".into(),
            (Some(n), false) => format!("Hi {n},"),
            (None, false) => "Hello,".into(),
        }
    }

    /// The complete message for one recipient, as RFC 5322 bytes, with its SMTP envelope.
    ///
    /// Headers: `From`, `Reply-To` (when configured), `To`, `Subject` (RFC 2047 when not ASCII),
    /// `Date`, `Message-ID`, `MIME-Version`, `List-Id`, `List-Unsubscribe` (https and/or mailto),
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (with an https URL), `List-Archive`,
    /// `X-Feed-Guid` (the issue's feed guid). Body: `multipart/alternative`, text then HTML, both
    /// quoted-printable.
    ///
    /// # Errors
    /// The recipient's address or name cannot form a mailbox.
    pub fn personalise(&self, r: &Recipient<'_>) -> Result<(Envelope, Vec<u8>)> {
        let address: lettre::Address = r
            .address
            .parse()
            .with_context(|| format!("`{}` is not a valid address", r.address))?;
        let envelope = Envelope::new(Some(self.from.email.clone()), vec![address.clone()])
            .context("failed to build the envelope")?;
        let to = Mailbox::new(r.name.map(str::to_string), address);
        let unsubscribe = self.unsubscribe_link(r.address);
        let greeting = self.greeting(r.name);
        let values = Values {
            greeting: &greeting,
            unsubscribe_url: &unsubscribe,
        };
        let list_unsubscribe = self.list_unsubscribe(r.address);
        let size: usize = self
            .skeleton
            .iter()
            .map(|f| match f {
                Frame::Fixed(bytes) => bytes.len(),
                _ => 0,
            })
            .sum::<usize>()
            + self.text.size()
            + self.html.size()
            + 1024;
        let mut out = Vec::with_capacity(size);
        for frame in &self.skeleton {
            match frame {
                Frame::Fixed(bytes) => out.extend_from_slice(bytes),
                Frame::To => out.extend_from_slice(to_line(to.clone()).as_bytes()),
                Frame::MessageId => out.extend_from_slice(message_id_line(r.message_id).as_bytes()),
                Frame::ListUnsubscribe => out
                    .extend_from_slice(list_unsubscribe_line(list_unsubscribe.clone()).as_bytes()),
                Frame::Text => self.text.fill_into(&values, &mut out),
                Frame::Html => self.html.fill_into(&values, &mut out),
            }
        }
        Ok((envelope, out))
    }

    /// The `List-Unsubscribe` value for `address`: the one-click link (when there is one), then
    /// mailto.
    fn list_unsubscribe(&self, address: &str) -> String {
        let mut value = String::new();
        if let Some(url) = self.one_click(address) {
            value.push_str(&format!("<{url}>, "));
        }
        value.push_str(&format!("<{}>", self.mailto_unsubscribe()));
        value
    }

    /// The whole message built by lettre's message builder, with these per-recipient values.
    fn build(
        &self,
        to: Mailbox,
        message_id: &str,
        list_unsubscribe: String,
        text: Vec<u8>,
        html: Vec<u8>,
    ) -> Result<Message> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(self.subject.clone())
            .date(self.date)
            .message_id(Some(message_id.to_string()))
            .raw_header(raw("List-Id", format!("<{}>", self.list_id)))
            .raw_header(raw("List-Unsubscribe", list_unsubscribe))
            .raw_header(raw("List-Archive", format!("<{}>", self.site_url)))
            .raw_header(raw("X-Feed-Guid", self.permalink.clone()));
        if self.has_one_click() {
            builder = builder.raw_header(raw(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".into(),
            ));
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(
            Body::dangerous_pre_encoded(text, ContentTransferEncoding::QuotedPrintable),
        );
        let html =
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(Body::dangerous_pre_encoded(
                    html,
                    ContentTransferEncoding::QuotedPrintable,
                ));
        builder
            .multipart(
                MultiPart::alternative()
                    .boundary(self.boundary.clone())
                    .singlepart(text)
                    .singlepart(html),
            )
            .context("failed to build the message")
    }
}

/// The `To` line. lettre folds a display name only between its words, so a name with a word
/// too long for a line (RFC 5322 §2.1.1: 998 octets) is written as encoded words (RFC 2047),
/// which fold between themselves.
fn to_line(to: Mailbox) -> String {
    let email = to.email.clone();
    let name = to.name.clone();
    let line = header_line(header::To::from(Mailboxes::from(to)).display());
    match name {
        Some(name) if !fits(&line) => {
            format!(
                "To: {}\r\n <{email}>\r\n",
                encoded_words(&name).join("\r\n ")
            )
        }
        _ => line,
    }
}

/// The longest a header line may be, without its CRLF (RFC 5322 §2.1.1).
const MAX_LINE: usize = 998;

/// Whether every line of `header` fits [`MAX_LINE`].
fn fits(header: &str) -> bool {
    header.split("\r\n").all(|line| line.len() <= MAX_LINE)
}

/// `text` as RFC 2047 encoded words (`=?utf-8?b?…?=`), each at most 72 characters and holding
/// whole characters.
fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect()
}

/// `headers` (CRLF-terminated lines) with every line longer than [`MAX_LINE`] folded: a URL
/// (the values feedpost writes without spaces: `X-Feed-Guid`, `List-Archive`,
/// `List-Unsubscribe`) is broken before a `/`, `%`, `&`, `?`, `=` or `,` into lines of at most
/// 78 characters. Whitespace so added inside `<…>` is ignored by readers (RFC 2369 §2); in
/// `X-Feed-Guid` it must be removed to compare. Lines that fit are left byte for byte.
fn fold_long_lines(headers: &str) -> String {
    if fits(headers) {
        return headers.to_string();
    }
    let mut out = String::with_capacity(headers.len() + headers.len() / 32);
    for line in headers.split_inclusive("\r\n") {
        let (body, end) = match line.strip_suffix("\r\n") {
            Some(body) => (body, "\r\n"),
            None => (line, ""),
        };
        if body.len() <= MAX_LINE {
            out.push_str(line);
            continue;
        }
        let mut start = 0;
        while body.len() - start > 78 {
            let window = &body[start..start + 78];
            let cut = window
                .char_indices()
                .rev()
                .find(|&(i, c)| i > 0 && matches!(c, '/' | '%' | '&' | '?' | '=' | ','))
                .map_or_else(
                    || {
                        (1..=78)
                            .rev()
                            .find(|&i| window.is_char_boundary(i))
                            .unwrap_or(78)
                    },
                    |(i, _)| i,
                );
            out.push_str(&body[start..start + cut]);
            out.push_str("\r\n ");
            start += cut;
        }
        out.push_str(&body[start..]);
        out.push_str(end);
    }
    out
}

/// A formatted message with the long lines of its header section folded (see
/// [`fold_long_lines`]); the body is left as it is.
fn fold_header_section(message: Vec<u8>) -> Vec<u8> {
    let Some(end) = memchr::memmem::find(&message, b"\r\n\r\n") else {
        return message;
    };
    match std::str::from_utf8(&message[..end + 2]) {
        Ok(headers) if !fits(headers) => {
            let mut out = fold_long_lines(headers).into_bytes();
            out.extend_from_slice(&message[end + 2..]);
            out
        }
        _ => message,
    }
}

fn message_id_line(message_id: &str) -> String {
    header_line(header::MessageId::from(message_id.to_string()).display())
}

fn list_unsubscribe_line(value: String) -> String {
    fold_long_lines(&header_line(raw("List-Unsubscribe", value)))
}

/// One recipient's copy of an issue as `preview` and `serve --local` show it (see
/// [`IssueMail::sample`]).
#[derive(Debug, Clone)]
pub struct Sample {
    /// The whole message (RFC 5322), CRLF line ends, unsigned.
    pub eml: Vec<u8>,
    /// The HTML body, decoded.
    pub html: String,
    /// The plain-text body, decoded, LF line ends.
    pub text: String,
}

impl IssueMail {
    /// The HTML and plain-text bodies a recipient gets, decoded (for `preview`).
    pub fn bodies(&self, r: &Recipient<'_>) -> (String, String) {
        let unsubscribe = self.unsubscribe_link(r.address);
        let greeting = self.greeting(r.name);
        let values = Values {
            greeting: &greeting,
            unsubscribe_url: &unsubscribe,
        };
        let decode = |t: &Template| {
            let bytes =
                quoted_printable::decode(t.fill(&values), quoted_printable::ParseMode::Robust)
                    .unwrap_or_default();
            String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
        };
        (decode(&self.html), decode(&self.text))
    }

    /// The copy `publish` would send to `address` (greeted as `name`), with the Message-ID that
    /// recipient gets (the address compared as the subscriber list compares it, see
    /// [`crate::subscribers::normalize`]); nothing is signed, sent or recorded.
    ///
    /// # Errors
    /// `address` is not a valid address (RFC 5321), or the message cannot be encoded.
    pub fn sample(&self, config: &Config, address: &str, name: Option<&str>) -> Result<Sample> {
        let key = crate::subscribers::normalize(address)
            .map(|(_, key)| key)
            .unwrap_or_else(|_| address.to_lowercase());
        let message_id = IssueMail::message_id_for(&self.permalink, &key, &config.from_mailbox());
        let recipient = Recipient {
            address,
            name,
            message_id: &message_id,
        };
        let (_, eml) = self.personalise(&recipient)?;
        let (html, text) = self.bodies(&recipient);
        Ok(Sample { eml, html, text })
    }
}

/// The issue's HTML with emphasis inside a word removed: `<strong>S</strong>calable` becomes
/// `Scalable`. Spam filters read a tag between two letters as a word cut up to hide it from them
/// (SpamAssassin's HTML_OBFUSCATE rules), so the email keeps words whole; the feeds and the
/// archive page keep the author's markup. Only `strong`, `b`, `em` and `i` around ASCII letters
/// and digits, with a letter or digit right outside, are removed; the HTML is ammonia's output,
/// where these tags carry no attributes.
fn whole_words(html: &str) -> String {
    const TAGS: [&str; 4] = ["strong", "b", "em", "i"];
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    'scan: while let Some(at) = rest.find('<') {
        for tag in TAGS {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            let Some(after_open) = rest[at..].strip_prefix(open.as_str()) else {
                continue;
            };
            let inner_len = after_open
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(after_open.len());
            let inner = &after_open[..inner_len];
            let Some(after) = after_open[inner_len..].strip_prefix(close.as_str()) else {
                continue;
            };
            let before = rest[..at]
                .chars()
                .next_back()
                .or_else(|| out.chars().next_back());
            if !inner.is_empty() && (word(before) || word(after.chars().next())) {
                out.push_str(&rest[..at]);
                out.push_str(inner);
                rest = after;
                continue 'scan;
            }
        }
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

/// CSS without its `/* comments */` (they are for the people who edit it, not for every inbox).
fn without_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = match rest[start + 2..].find("*/") {
            Some(end) => &rest[start + 2 + end + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The issue's images made ready for mail clients:
///
/// - a `width` attribute on every image, for Outlook for Windows, which ignores `max-width` and
///   would show a large image at its full size; other clients size it by the inlined CSS
///   (`width: auto; max-width: 100%`);
/// - alt text that is only a file name (`alt="weekly.jpg"`) emptied: clients show alt text when
///   images are off, and a file name tells the reader nothing.
///
/// The HTML is ammonia's output, where `<img ` only ever starts an image tag (a `<` in text is
/// written `&lt;`) and attribute values are double-quoted.
fn email_images(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 64);
    let mut rest = html;
    while let Some(at) = rest.find("<img ") {
        let end = rest[at..].find('>').map_or(rest.len(), |e| at + e + 1);
        let tag = &rest[at + "<img ".len()..end];
        out.push_str(&rest[..at]);
        out.push_str("<img width=\"100%\" ");
        match tag
            .split_once(" alt=\"")
            .or_else(|| tag.strip_prefix("alt=\"").map(|t| ("", t)))
        {
            Some((before, after)) => {
                let (alt, after) = after.split_once('"').unwrap_or((after, ""));
                let alt = if text::is_file_name(&html_escape::decode_html_entities(alt)) {
                    ""
                } else {
                    alt
                };
                let space = if before.is_empty() { "" } else { " " };
                out.push_str(&format!("{before}{space}alt=\"{alt}\"{after}"));
            }
            None => out.push_str(tag),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The writing direction of a BCP 47 language: `rtl` for Arabic, Hebrew, Persian, Urdu and the
/// like, else `ltr`.
fn direction(language: &str) -> &'static str {
    let primary = language
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match primary.as_str() {
        "ar" | "he" | "fa" | "ur" | "yi" | "ps" | "sd" | "ug" | "dv" | "ckb" => "rtl",
        _ => "ltr",
    }
}

fn raw(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// Whether the messages `config` composes carry an unsubscribe token, and so need the secret:
/// with `[serve]` (its one-click URL), or when `mail.unsubscribe_url` holds `{token}`, or holds
/// neither `{token}` nor `{email}` (the token is then added as a query parameter; see
/// [`IssueMail::unsubscribe_link`]).
pub fn carries_token(config: &Config) -> bool {
    config.serve.is_some()
        || config
            .mail
            .unsubscribe_url
            .as_deref()
            .is_some_and(|url| url.contains("{token}") || !url.contains("{email}"))
}

/// The secret that signs unsubscribe tokens: `FEEDPOST_SECRET` ([`Secret::from_env`]), which
/// lives only in the environment, never in a file feedpost writes, so the same value must be set
/// wherever feedpost runs (`publish` and `serve` alike).
///
/// # Errors
/// The variable is unset, empty, shorter than 32 bytes or not UTF-8; the message says how to
/// make one, and never shows the value.
pub fn secret_from_env() -> Result<Secret> {
    Ok(Secret::from_env()?)
}

/// The secret of messages nobody receives — `preview`'s sample, an outbox rehearsal without
/// `FEEDPOST_SECRET`: a public placeholder, so their links are not valid tokens.
pub fn placeholder_secret() -> Secret {
    Secret::new(b"feedpost placeholder: not a secret, no link signed with it works".to_vec())
        .expect("the placeholder is long enough")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_filled_between_soft_breaks() {
        let t = Template::new(
            "Hello FEEDPOSTSLOTGREETING and FEEDPOSTSLOTUNSUBSCRIBE.\n",
            true,
        );
        let filled = t.fill(&Values {
            greeting: "读者 <x>",
            unsubscribe_url: "https://a.org/?a=1&b=2",
        });
        let decoded =
            quoted_printable::decode(&filled, quoted_printable::ParseMode::Strict).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "Hello 读者 &lt;x&gt; and https://a.org/?a=1&amp;b=2.\r\n"
        );
        for line in filled.split(|&b| b == b'\n') {
            assert!(
                line.len() <= 77,
                "line too long: {}",
                String::from_utf8_lossy(line)
            );
        }
    }

    fn mail_for(mail_config: &str) -> IssueMail {
        let config = Config::parse(
            &format!(
                "[site]\ntitle = \"SOFA Weekly\"\nbase_url = \"https://www.sofastack.tech/\"\nlanguage = \"zh-CN\"\n[mail]\nfrom = \"SOFA Weekly <weekly@example.org>\"\n{mail_config}\n"
            ),
            std::path::Path::new("/site"),
        )
        .unwrap();
        let issue = crate::issue::parse(
            "---\ntitle: \"SOFA Weekly | 一个相当长的标题，用来检验主题行的折叠与 <lettre> & 其他\"\ndate: 2024-03-01T15:00:00+08:00\n---\nHello **world**.\n\n.A line that starts with a dot.\n",
            std::path::Path::new("/site/issues/2024-03-01-long.md"),
            &config,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2024-03-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        IssueMail::compose(&issue, &config, &placeholder_secret(), now).unwrap()
    }

    #[test]
    fn personalise_writes_what_lettres_message_builder_writes() {
        let long_name = "很长的名字".repeat(12);
        let recipients = [
            ("reader@example.org", None),
            (
                "Ada.Lovelace+news@Example.org",
                Some("Ada \"The Countess\" Lovelace, of Lovelace"),
            ),
            ("reader0001@example.test", Some("读者 1")),
            ("x@example.org", Some(long_name.as_str())),
        ];
        for mail_config in [
            "",
            "reply_to = \"Team <team@example.org>\"\nunsubscribe_url = \"https://www.sofastack.tech/unsubscribe/with/a/rather/long/path?token={token}&email={email}\"\nunsubscribe_mailto = \"unsubscribe@example.org\"",
        ] {
            let mail = mail_for(mail_config);
            for (address, name) in recipients {
                let message_id = IssueMail::message_id_for("issue", address, &mail.from);
                let (envelope, fast) = mail
                    .personalise(&Recipient {
                        address,
                        name,
                        message_id: &message_id,
                    })
                    .unwrap();
                let unsubscribe = mail.unsubscribe_link(address);
                let greeting = mail.greeting(name);
                let values = Values {
                    greeting: &greeting,
                    unsubscribe_url: &unsubscribe,
                };
                let reference = mail
                    .build(
                        Mailbox::new(name.map(str::to_string), address.parse().unwrap()),
                        &message_id,
                        mail.list_unsubscribe(address),
                        mail.text.fill(&values),
                        mail.html.fill(&values),
                    )
                    .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&reference.formatted()),
                    "{address} {name:?} with {mail_config:?}"
                );
                assert_eq!(&envelope, reference.envelope());
            }
        }
    }

    #[test]
    fn every_header_line_fits_however_long_the_name_or_the_slug() {
        let config = Config::parse(
            "[site]\ntitle = \"SOFA Weekly\"\nbase_url = \"https://www.sofastack.tech/\"\n[mail]\nfrom = \"SOFA Weekly <weekly@example.org>\"\nunsubscribe_url = \"https://www.sofastack.tech/unsubscribe?token={token}&email={email}\"\n",
            std::path::Path::new("/site"),
        )
        .unwrap();
        let issue = crate::issue::parse(
            &format!(
                "---\ntitle: \"{}\"\ndate: 2024-03-01T15:00:00+08:00\nslug: {}\n---\nHello.\n",
                "很长".repeat(300),
                "长".repeat(200)
            ),
            std::path::Path::new("/site/issues/x.md"),
            &config,
        )
        .unwrap();
        let mail = IssueMail::compose(&issue, &config, &placeholder_secret(), Utc::now()).unwrap();
        let names = [
            "a".repeat(1000),
            "读".repeat(1000),
            format!("{} {}", "a".repeat(500), "b".repeat(500)),
        ];
        for name in &names {
            let (_, msg) = mail
                .personalise(&Recipient {
                    address: "x@example.org",
                    name: Some(name),
                    message_id: "<a@b>",
                })
                .unwrap();
            let text = String::from_utf8(msg.clone()).unwrap();
            let head = text.split("\r\n\r\n").next().unwrap();
            for line in head.split("\r\n") {
                assert!(
                    line.len() <= MAX_LINE,
                    "{} octets: {}",
                    line.len(),
                    &line[..60]
                );
            }
            let parsed = mail_parser::MessageParser::default().parse(&msg).unwrap();
            let to = parsed.to().unwrap().first().unwrap();
            let shown = to.name().unwrap().replace(' ', "");
            assert_eq!(shown, name.replace(' ', ""), "the name reads back");
            let guid = parsed.header_raw("X-Feed-Guid").unwrap();
            let guid: String = guid.split_whitespace().collect();
            assert_eq!(guid, issue.permalink.as_str());
        }
    }

    #[test]
    fn images_get_a_width_and_lose_file_name_alt_text() {
        assert_eq!(
            email_images(
                r#"<p><img src="https://x.org/a.jpg" alt="weekly.jpg"> <img alt="架构图" src="b.png"><img src="c.png"></p>"#
            ),
            r#"<p><img width="100%" src="https://x.org/a.jpg" alt=""> <img width="100%" alt="架构图" src="b.png"><img width="100%" src="c.png"></p>"#
        );
    }

    #[test]
    fn emphasis_inside_a_word_is_dropped_and_elsewhere_kept() {
        assert_eq!(
            whole_words("<p><strong>SOFA</strong>Stack（<strong>S</strong>calable <strong>O</strong>pen <em>x</em>y <b>bold</b> 中<strong>文</strong> <strong>a b</strong>c <i>A1</i></p>"),
            "<p>SOFAStack（Scalable Open xy <b>bold</b> 中<strong>文</strong> <strong>a b</strong>c <i>A1</i></p>"
        );
    }

    #[test]
    fn with_a_serve_table_the_unsubscribe_link_is_serves_own() {
        let mail = mail_for("unsubscribe_url = \"https://x.org/u?t={token}\"\n[serve]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://news.example.org/\"");
        let link = mail.unsubscribe_link("Reader@Example.org");
        let token = link
            .strip_prefix("https://news.example.org/unsubscribe?token=")
            .unwrap_or_else(|| panic!("{link}"));
        let verified = token::verify(
            &placeholder_secret(),
            token,
            token::Purpose::Unsubscribe,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(verified.address, "reader@example.org");
        assert!(mail
            .list_unsubscribe("a@x.org")
            .starts_with("<https://news.example.org/"));
    }
}
