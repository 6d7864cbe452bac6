//! Markdown → HTML for one issue, with every link and image made absolute and every URL checked.
//!
//! The second stage of the pipeline: its output goes, unchanged, into the feeds, the archive page
//! and the email. We use pulldown-cmark (CommonMark, fast, streaming); while the events stream by,
//!
//! - relative URLs are resolved against the site's `base_url`, because feeds and emails are read
//!   away from the site;
//! - a link or image whose URL is not `http`, `https`, `mailto`, relative or a `#fragment` loses
//!   its URL (`javascript:`, `vbscript:`, `data:` and the like never reach an output);
//! - with CJK rendering on ([`Rendering::cjk`]), emphasis that CommonMark leaves literal next to
//!   CJK punctuation is repaired first ([`cjk::fix_emphasis`]) and a soft line break between two
//!   CJK characters renders as nothing ([`cjk::joins_without_space`]).
//!
//! A body holding raw HTML then goes through ammonia, so no `script`, `style`, `iframe`, event
//! handler or unsafe URL scheme written as HTML reaches a feed reader, a browser or a mail
//! client. A body without raw HTML is safe as written: every URL in it was checked above, and
//! pulldown-cmark escapes every text and attribute.
//!
//! The same event stream ([`with_events`]) feeds the email's plain-text part.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};
use url::Url;

use super::cjk;
use crate::config::Config;

/// The Markdown extensions feedpost turns on: tables, strikethrough, task lists, footnotes.
pub(crate) fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
}

/// How a site's Markdown is rendered, beyond CommonMark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rendering {
    /// CJK-aware rendering: repair emphasis next to CJK punctuation, and join lines between CJK
    /// characters without a space (see the module docs).
    pub cjk: bool,
}

impl Rendering {
    /// The rendering `config` asks for: `site.cjk`, which defaults to on for Chinese, Japanese
    /// and Korean sites (`site.language` `zh*`, `ja*`, `ko*`).
    pub fn for_site(config: &Config) -> Rendering {
        Rendering { cjk: config.cjk() }
    }
}

/// URL schemes allowed in `href` and `src`, besides relative URLs and `#fragments`.
pub const SAFE_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// Renders `markdown` to an HTML fragment with absolute `href`/`src` URLs resolved against `base`.
///
/// Never fails: any input renders to something. The result is always sanitised (no script,
/// style, iframe, event handlers; only [`SAFE_SCHEMES`], relative and `#fragment` URLs); URLs
/// with an allowed scheme are left as they are, and relative ones are made absolute.
pub fn render(markdown: &str, base: &Url, rendering: Rendering) -> String {
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    let mut raw_html = false;
    let mut write = |events: &mut dyn Iterator<Item = Event<'_>>| {
        let events = events.inspect(|event| {
            raw_html |= matches!(event, Event::Html(_) | Event::InlineHtml(_));
        });
        pulldown_cmark::html::push_html(&mut html, events)
    };
    if rendering.cjk {
        // One parse serves both finding the emphasis to repair and, when there is none (most
        // bodies), rendering.
        let parsed: Vec<_> = cjk::parse_with_offsets(markdown).collect();
        match cjk::fix_parsed_emphasis(markdown, &parsed) {
            Some(fixed) => write(&mut CjkBreaks::new(rewrite(
                Parser::new_ext(&fixed, options()),
                base,
            ))),
            None => write(&mut CjkBreaks::new(rewrite(
                parsed.into_iter().map(|(event, _)| event),
                base,
            ))),
        }
    } else {
        write(&mut rewrite(Parser::new_ext(markdown, options()), base));
    }
    // Without raw HTML the events are already safe: pulldown-cmark escapes every text and
    // attribute it writes, and `rewrite` has dropped every unsafe URL. Raw HTML is the one way
    // markup the writer did not make reaches the page, and ammonia cleans it (a third of a full
    // build's CPU when run on every body).
    if raw_html {
        sanitize(&html, base)
    } else {
        html
    }
}

/// Parses `markdown` and hands its events to `f`, after the rewriting [`render`] does: URLs made
/// absolute (an unsafe one replaced by the empty string), and with `rendering.cjk`, emphasis
/// repaired and soft breaks between CJK characters dropped. Returns what `f` returns.
pub fn with_events<R>(
    markdown: &str,
    base: &Url,
    rendering: Rendering,
    f: impl FnOnce(&mut dyn Iterator<Item = Event<'_>>) -> R,
) -> R {
    let source = if rendering.cjk {
        cjk::fix_emphasis(markdown)
    } else {
        Cow::Borrowed(markdown)
    };
    let events = rewrite(Parser::new_ext(&source, options()), base);
    if rendering.cjk {
        f(&mut CjkBreaks::new(events))
    } else {
        let mut events = events;
        f(&mut events)
    }
}

/// `events` with every link and image URL made absolute against `base` and checked (an unsafe
/// one replaced by the empty string); an email autolink becomes a `mailto:` link.
fn rewrite<'a, 'b>(
    events: impl Iterator<Item = Event<'a>> + 'b,
    base: &'b Url,
) -> impl Iterator<Item = Event<'a>> + 'b {
    events.map(move |event| match event {
        // An email autolink (`<a@b.org>`) is a `mailto:` URL, not a path on the site.
        Event::Start(Tag::Link {
            link_type: LinkType::Email,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type: LinkType::Autolink,
            dest_url: CowStr::from(format!("mailto:{dest_url}")),
            title,
            id,
        }),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: checked(dest_url, base),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: checked(dest_url, base),
            title,
            id,
        }),
        other => other,
    })
}

/// `url` made absolute against `base`, or the empty string when it is not safe to follow (as
/// [`absolute`] then [`is_safe_url`], parsing each URL once: a relative URL joined to `base` is
/// checked on the joined URL's scheme, which is `base`'s unless the text hid a scheme from
/// [`has_scheme`], e.g. behind a leading space).
fn checked<'a>(url: CowStr<'a>, base: &Url) -> CowStr<'a> {
    let s: &str = &url;
    if s.starts_with('#') || (has_scheme(s) && is_safe_url(s)) {
        return url;
    }
    if s.is_empty() || has_scheme(s) {
        return CowStr::Borrowed("");
    }
    match base.join(s) {
        Ok(joined) if SAFE_SCHEMES.contains(&joined.scheme()) => CowStr::from(String::from(joined)),
        _ => CowStr::Borrowed(""),
    }
}

/// Whether `url` may appear in an `href` or `src`: a `#fragment`, or an absolute URL with one of
/// the [`SAFE_SCHEMES`] (schemes are compared as a browser reads them: case and the tabs, line
/// breaks and leading spaces browsers skip do not hide `javascript:`). Relative URLs must be made
/// absolute first ([`absolute`]).
pub fn is_safe_url(url: &str) -> bool {
    if url.starts_with('#') {
        return true;
    }
    Url::parse(url).is_ok_and(|u| SAFE_SCHEMES.contains(&u.scheme()))
}

/// Cleans a rendered HTML fragment, keeping ordinary markup: what the Markdown produced and what
/// raw HTML in it may safely add. Relative URLs in raw HTML are made absolute; `#fragments` stay.
fn sanitize(html: &str, base: &Url) -> String {
    ammonia::Builder::default()
        .url_schemes(HashSet::from(SAFE_SCHEMES))
        .url_relative(ammonia::UrlRelative::Custom(Box::new(Relative(
            base.clone(),
        ))))
        .link_rel(None)
        // Task lists: disabled checkboxes and nothing else.
        .add_tags(["input"])
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            ("input", "type") if value != "checkbox" => None,
            _ => Some(Cow::Borrowed(value)),
        })
        // Code blocks name their language (`language-rust`); footnotes link to their
        // definitions by id; aligned table columns.
        .add_tag_attributes("code", ["class"])
        .add_tag_attributes("div", ["id"])
        .add_tag_attributes("th", ["style"])
        .add_tag_attributes("td", ["style"])
        .filter_style_properties(HashSet::from(["text-align"]))
        .clean(html)
        .to_string()
}

/// How raw HTML's relative URLs are rewritten: `#fragments` kept, the rest resolved against the
/// base and kept only with a safe scheme.
struct Relative(Url);

impl<'a> ammonia::UrlRelativeEvaluate<'a> for Relative {
    fn evaluate<'url>(&self, url: &'url str) -> Option<Cow<'url, str>> {
        if url.starts_with('#') {
            return Some(Cow::Borrowed(url));
        }
        if url.trim().is_empty() {
            return None;
        }
        let joined = self.0.join(url).ok()?;
        SAFE_SCHEMES
            .contains(&joined.scheme())
            .then(|| Cow::Owned(String::from(joined)))
    }
}

/// Drops a soft line break between two CJK characters ([`cjk::joins_without_space`]), looking
/// past inline markup (`互动\n**我们**`) to the next character.
struct CjkBreaks<'a, I: Iterator<Item = Event<'a>>> {
    inner: I,
    /// The last character of text passed on in the current block.
    last: Option<char>,
    /// Events read ahead while deciding on a soft break.
    ahead: VecDeque<Event<'a>>,
}

impl<'a, I: Iterator<Item = Event<'a>>> CjkBreaks<'a, I> {
    fn new(inner: I) -> Self {
        CjkBreaks {
            inner,
            last: None,
            ahead: VecDeque::new(),
        }
    }

    /// Follows the last character across `event`.
    fn track(&mut self, event: &Event<'a>) {
        match event {
            Event::Text(t) | Event::Code(t) => {
                if let Some(c) = t.chars().next_back() {
                    self.last = Some(c);
                }
            }
            Event::Start(tag) if is_inline(tag) => {}
            Event::End(tag) if is_inline_end(tag) => {}
            _ => self.last = None,
        }
    }
}

impl<'a, I: Iterator<Item = Event<'a>>> Iterator for CjkBreaks<'a, I> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        let event = match self.ahead.pop_front() {
            Some(e) => e,
            None => self.inner.next()?,
        };
        if event == Event::SoftBreak && self.ahead.is_empty() {
            if let Some(before) = self.last {
                // Read ahead over inline tags to the next text.
                let mut first = None;
                for next in self.inner.by_ref() {
                    let stop = match &next {
                        Event::Text(t) | Event::Code(t) => {
                            first = t.chars().next();
                            true
                        }
                        Event::Start(tag) => !is_inline(tag),
                        Event::End(tag) => !is_inline_end(tag),
                        _ => true,
                    };
                    self.ahead.push_back(next);
                    if stop {
                        break;
                    }
                }
                if first.is_some_and(|after| cjk::joins_without_space(before, after)) {
                    return self.next();
                }
            }
        }
        self.track(&event);
        Some(event)
    }
}

fn is_inline(tag: &Tag<'_>) -> bool {
    matches!(
        tag,
        Tag::Emphasis | Tag::Strong | Tag::Strikethrough | Tag::Link { .. }
    )
}

fn is_inline_end(tag: &TagEnd) -> bool {
    matches!(
        tag,
        TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough | TagEnd::Link
    )
}

/// `url` resolved against `base` when it is relative (`/blog/x/`, `img.png`, `../a`); fragments
/// (`#top`) and URLs with a scheme (`https:`, `mailto:`) are returned unchanged.
pub fn absolute<'a>(url: CowStr<'a>, base: &Url) -> CowStr<'a> {
    let s: &str = &url;
    if s.is_empty() || s.starts_with('#') || has_scheme(s) {
        return url;
    }
    match base.join(s) {
        Ok(joined) => CowStr::from(String::from(joined)),
        Err(_) => url,
    }
}

fn has_scheme(s: &str) -> bool {
    match s.find(':') {
        Some(i) => {
            let scheme = &s[..i];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !s[..i].contains('/')
        }
        None => false,
    }
}

/// The text of the first paragraph of `markdown`, whitespace folded, cut to at most `max_chars`
/// characters (with `…`). Used when an issue gives neither `summary` nor `description`.
pub fn first_paragraph_text(markdown: &str, max_chars: usize) -> String {
    let mut text = String::new();
    let mut in_paragraph = false;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Paragraph) => in_paragraph = true,
            Event::End(TagEnd::Paragraph) if !text.trim().is_empty() => break,
            Event::End(TagEnd::Paragraph) => in_paragraph = false,
            Event::Text(t) | Event::Code(t) if in_paragraph => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak if in_paragraph => text.push(' '),
            _ => {}
        }
    }
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= max_chars {
        folded
    } else {
        let mut cut: String = folded.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://www.sofastack.tech/").unwrap()
    }

    const PLAIN: Rendering = Rendering { cjk: false };
    const CJK: Rendering = Rendering { cjk: true };

    #[test]
    fn relative_links_and_images_become_absolute() {
        let html = render(
            "[归档](/blog/archive/) ![a](img/x.png) [ext](https://github.com/sofastack) [top](#q)",
            &base(),
            PLAIN,
        );
        assert!(
            html.contains(r#"href="https://www.sofastack.tech/blog/archive/""#),
            "{html}"
        );
        assert!(
            html.contains(r#"src="https://www.sofastack.tech/img/x.png""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="https://github.com/sofastack""#),
            "{html}"
        );
        assert!(html.contains(r##"href="#q""##), "{html}");
    }

    #[test]
    fn mailto_is_left_alone_and_email_autolinks_are_mailto() {
        let html = render("[m](mailto:a@b.org) <c@d.org>", &base(), PLAIN);
        assert!(html.contains(r#"href="mailto:a@b.org""#), "{html}");
        assert!(
            html.contains(r#"<a href="mailto:c@d.org">c@d.org</a>"#),
            "{html}"
        );
    }

    #[test]
    fn script_and_iframe_are_removed() {
        let html = render("hi <script>alert(1)</script>\n\n<iframe src=\"/x\"></iframe>\n\n<a href=\"/rel\">r</a> <a href=\"#f\">f</a>", &base(), PLAIN);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<iframe"), "{html}");
        assert!(html.contains("https://www.sofastack.tech/rel"), "{html}");
        assert!(html.contains(r##"href="#f""##), "{html}");
    }

    /// Every way of writing a dangerous URL, in Markdown and in raw HTML.
    pub(crate) const HOSTILE: &[&str] = &[
        "[x](javascript:alert(document.domain))",
        "[x](JavaScript:alert(1))",
        "[x](<java\tscript:alert(1)>)",
        "[x](< javascript:alert(1)>)",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![x](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)",
        "![x](javascript:alert(1))",
        "[x][r]\n\n[r]: javascript:alert(1)",
        "<a href=\"javascript:alert(1)\">x</a>",
        "<a href=\" javascript:alert(1)\">x</a>",
        "<img src=\"vbscript:x\" alt=\"x\">",
        "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
    ];

    #[test]
    fn unsafe_url_schemes_never_reach_the_html() {
        for rendering in [PLAIN, CJK] {
            for hostile in HOSTILE {
                let html = render(hostile, &base(), rendering).to_ascii_lowercase();
                for scheme in ["javascript:", "vbscript:", "data:", "script:"] {
                    assert!(!html.contains(scheme), "{hostile:?} gave {html}");
                }
            }
        }
    }

    #[test]
    fn footnotes_task_lists_and_aligned_tables_survive_sanitising() {
        // The raw `<b>` makes ammonia run over the whole body.
        let html = render(
            "a[^1] <b>raw</b>\n\n[^1]: note\n\n- [x] done\n\n| a |\n|:-:|\n| b |\n",
            &base(),
            PLAIN,
        );
        assert!(html.contains(r##"href="#1""##), "{html}");
        assert!(html.contains(r#"id="1""#), "{html}");
        assert!(html.contains(r#"type="checkbox""#), "{html}");
        assert!(html.contains(r#"style="text-align:center""#), "{html}");
    }

    #[test]
    fn block_quotes_lists_and_cjk_render() {
        let html = render("> 问题\n\n- **SOFAStack 官网: **[x](/)\n", &base(), PLAIN);
        assert!(html.contains("<blockquote>"));
        assert!(html.contains("<li>"));
        assert!(html.contains("问题"));
    }

    #[test]
    fn soft_breaks_between_cjk_characters_render_as_nothing() {
        let html = render(
            "欢迎留言互动\n我们会筛选\n**重点**问题\nSOFA 周报\nand English\n한국어\n문장",
            &base(),
            CJK,
        );
        assert!(
            html.contains("欢迎留言互动我们会筛选<strong>重点</strong>问题\nSOFA 周报\nand English\n한국어\n문장"),
            "{html}"
        );
        let plain = render("互动\n我们", &base(), PLAIN);
        assert!(plain.contains("互动\n我们"), "{plain}");
    }

    #[test]
    fn rendering_from_one_parse_equals_repairing_first() {
        let seeds = [
            include_str!("../../tests/fixtures/seeds/issues/2020-05-15-sofa-weekly.md"),
            include_str!("../../tests/fixtures/seeds/issues/2020-07-03-sofa-weekly.md"),
            include_str!("../../tests/fixtures/seeds/issues/2020-07-10-sofa-weekly.md"),
            include_str!("../../tests/fixtures/seeds/issues/2021-01-08-sofa-weekly.md"),
            include_str!("../../tests/fixtures/seeds/issues/2021-07-16-sofa-weekly.md"),
            "plain **bold** text, `a_b` and <b>raw</b>\n\n```\n**code**\n```\n",
        ];
        let cjk = Rendering { cjk: true };
        let mut repaired = 0;
        for seed in seeds {
            repaired += usize::from(matches!(cjk::fix_emphasis(seed), Cow::Owned(_)));
            let mut expected = String::new();
            with_events(seed, &base(), cjk, |events| {
                pulldown_cmark::html::push_html(&mut expected, events)
            });
            let expected = match expected.contains("<b>raw</b>") {
                true => sanitize(&expected, &base()),
                false => expected,
            };
            assert_eq!(render(seed, &base(), cjk), expected);
        }
        assert!(repaired >= 2, "the seeds exercise the repair path");
    }

    #[test]
    fn emphasis_next_to_cjk_punctuation_renders_as_meant() {
        for (source, bold) in [
            ("**分享嘉宾：**霜林", "<strong>分享嘉宾：</strong> 霜林"),
            (
                "**1、@黄泽宏 **提问：",
                "<strong>1、@黄泽宏</strong> 提问：",
            ),
            (
                "同时，恭喜**姚昌宇（@trainyao）**成为 MOSN Committer",
                "<strong>姚昌宇（@trainyao）</strong> 成为",
            ),
            (
                "**SOFAStack 官网: **[https://www.sofastack.tech](/)",
                "<strong>SOFAStack 官网:</strong> <a",
            ),
        ] {
            let html = render(source, &base(), CJK);
            assert!(html.contains(bold), "{source:?} gave {html}");
            assert!(!html.contains("**"), "{source:?} gave {html}");
            let plain = render(source, &base(), PLAIN);
            assert!(plain.contains("**"), "{source:?} gave {plain}");
        }
    }

    #[test]
    fn first_paragraph_is_cut() {
        assert_eq!(
            first_paragraph_text("# H\n\nHello   *big*\nworld\n\nNext", 100),
            "Hello big world"
        );
        assert_eq!(first_paragraph_text("abcdef", 4), "abc…");
    }
}
