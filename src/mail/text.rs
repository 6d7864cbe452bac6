//! The email's plain-text part, written from the Markdown as a person would write it.
//!
//! Part of composing the email (stage four). The body is rendered from the same event stream as
//! the HTML ([`markdown::with_events`]: URLs absolute and checked, CJK repaired), not converted
//! back from the HTML, so each construct gets the plain-text convention readers know:
//!
//! - headings underlined once (`===` for levels 1–2, `---` below), no `#` and no `**`;
//! - lists as `- item` / `1. item`, continuation lines indented under the text; task lists as
//!   `[x]`; block quotes with `> ` on every line; code blocks indented four spaces, never wrapped;
//! - links as numbered references, `text [1]`, with the URLs listed after the body, one a line,
//!   never broken; a link whose text is its URL is written as the URL;
//! - images as `[image]` (the word from the layout), plus the alt text unless it is a file name;
//! - lines wrapped at [`WIDTH`] display columns by the Unicode line breaking algorithm (UAX #14,
//!   the `unicode-linebreak` crate), so Chinese breaks between characters, never before `，。：`,
//!   and a URL is never split. Widths count East Asian wide characters as two columns.

use std::ops::Range;

use pulldown_cmark::{Event, HeadingLevel, LinkType, Tag, TagEnd};
use unicode_linebreak::{linebreaks, BreakOpportunity};
use unicode_width::UnicodeWidthStr;
use url::Url;

use crate::issue::markdown::{self, Rendering};

/// Lines are wrapped at this many display columns.
pub const WIDTH: usize = 72;

/// The fixed words of the text part, in the newsletter's language.
#[derive(Debug, Clone, Copy)]
pub struct Words<'a> {
    /// What stands for an image: `image` gives `[image]` and `[image: a diagram]`.
    pub image: &'a str,
    /// The heading of the list of link URLs, with its colon (`Links:`).
    pub links: &'a str,
}

/// `markdown` as plain text: paragraphs wrapped at [`WIDTH`] columns, followed by the numbered
/// link URLs. Relative URLs resolve against `base`. Never fails.
pub fn render(markdown: &str, base: &Url, rendering: Rendering, words: &Words<'_>) -> String {
    let mut writer = Writer::new(*words);
    markdown::with_events(markdown, base, rendering, |events| {
        for event in events {
            writer.event(event);
        }
    });
    writer.finish()
}

/// What encloses the text being written: each adds a prefix to every line.
#[derive(Debug)]
enum Container {
    Quote,
    /// A list item or footnote: its marker (`- `, `12. `, `[1] `) on the first line, as many
    /// spaces on the others.
    Item {
        marker: String,
        pending: bool,
    },
}

/// A link being written.
#[derive(Debug)]
struct OpenLink {
    url: String,
    /// Where its text starts in the inline buffer.
    start: usize,
    /// An autolink (`<https://…>`): its text is its URL.
    auto: bool,
}

struct Writer<'w> {
    words: Words<'w>,
    out: String,
    containers: Vec<Container>,
    /// For each open list, the next number (ordered) or `None` (bullets).
    lists: Vec<Option<u64>>,
    /// Inline text of the block being written, and the byte ranges in it that must not break.
    inline: String,
    protected: Vec<Range<usize>>,
    links: Vec<String>,
    open_links: Vec<OpenLink>,
    /// Alt text of the image being read.
    image: Option<String>,
    code: Option<String>,
    html: Option<String>,
    table: Option<Vec<Vec<String>>>,
    /// A blank line goes before the next block.
    blank: bool,
}

impl<'w> Writer<'w> {
    fn new(words: Words<'w>) -> Self {
        Writer {
            words,
            out: String::new(),
            containers: Vec::new(),
            lists: Vec::new(),
            inline: String::new(),
            protected: Vec::new(),
            links: Vec::new(),
            open_links: Vec::new(),
            image: None,
            code: None,
            html: None,
            table: None,
            blank: false,
        }
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some(alt) = &mut self.image {
            match event {
                Event::Text(t) | Event::Code(t) => alt.push_str(&t),
                Event::End(TagEnd::Image) => {
                    let alt = self.image.take().unwrap_or_default();
                    self.push_image(&alt);
                }
                _ => {}
            }
            return;
        }
        if let Some(code) = &mut self.code {
            match event {
                Event::Text(t) => code.push_str(&t),
                _ => self.end_code(),
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) | Event::Code(t) => self.push_text(&t),
            Event::InlineMath(t) | Event::DisplayMath(t) => self.inline.push_str(&t),
            Event::SoftBreak => self.inline.push(' '),
            Event::HardBreak => self.inline.push('\n'),
            Event::Rule => {
                self.flush();
                self.block_start();
                let prefix = self.prefix(true);
                self.line(&format!("{prefix}{}", "-".repeat(24)));
                self.blank = true;
            }
            Event::FootnoteReference(label) => {
                self.inline.push_str(&format!("[{label}]"));
            }
            Event::TaskListMarker(done) => {
                self.inline.push_str(if done { "[x] " } else { "[ ] " });
            }
            Event::Html(html) => match &mut self.html {
                Some(buffer) => buffer.push_str(&html),
                None => self.inline.push_str(&html_text(&html)),
            },
            Event::InlineHtml(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::Heading { .. } => {
                self.flush();
                self.block_start();
            }
            Tag::BlockQuote(_) => {
                self.flush();
                self.block_start();
                self.containers.push(Container::Quote);
            }
            Tag::CodeBlock(_) => {
                self.flush();
                self.block_start();
                self.code = Some(String::new());
            }
            Tag::HtmlBlock => {
                self.flush();
                self.html = Some(String::new());
            }
            Tag::List(start) => {
                self.flush();
                if self.lists.is_empty() {
                    self.block_start();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                self.blank = false;
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".to_string(),
                };
                self.containers.push(Container::Item {
                    marker,
                    pending: true,
                });
            }
            Tag::FootnoteDefinition(label) => {
                self.flush();
                self.block_start();
                self.containers.push(Container::Item {
                    marker: format!("[{label}] "),
                    pending: true,
                });
            }
            Tag::Table(_) => {
                self.flush();
                self.block_start();
                self.table = Some(Vec::new());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(rows) = &mut self.table {
                    rows.push(Vec::new());
                }
            }
            Tag::TableCell => self.inline.clear(),
            Tag::Link {
                link_type,
                dest_url,
                ..
            } => self.open_links.push(OpenLink {
                url: dest_url.into_string(),
                start: self.inline.len(),
                auto: matches!(link_type, LinkType::Autolink | LinkType::Email),
            }),
            Tag::Image { .. } => self.image = Some(String::new()),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush();
                self.blank = true;
            }
            TagEnd::Heading(level) => {
                let underline = if level <= HeadingLevel::H2 { '=' } else { '-' };
                let lines = self.take_wrapped();
                let width = lines
                    .iter()
                    .map(|(_, text)| text.width())
                    .max()
                    .unwrap_or(0);
                for (prefix, text) in &lines {
                    self.line(&format!("{prefix}{text}"));
                }
                if width > 0 {
                    let prefix = self.prefix(false);
                    self.line(&format!(
                        "{prefix}{}",
                        underline.to_string().repeat(width.min(WIDTH))
                    ));
                }
                self.blank = true;
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.containers.pop();
                self.blank = true;
            }
            TagEnd::HtmlBlock => {
                if let Some(html) = self.html.take() {
                    let text = html_text(&html);
                    if !text.trim().is_empty() {
                        self.block_start();
                        self.inline.push_str(text.trim());
                        self.flush();
                        self.blank = true;
                    }
                }
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                self.blank = true;
            }
            TagEnd::Item | TagEnd::FootnoteDefinition => {
                self.flush();
                self.containers.pop();
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.inline);
                if let Some(row) = self.table.as_mut().and_then(|rows| rows.last_mut()) {
                    row.push(cell.split_whitespace().collect::<Vec<_>>().join(" "));
                }
            }
            TagEnd::Table => {
                for row in self.table.take().unwrap_or_default() {
                    self.inline = row.join(" | ");
                    self.flush();
                }
                self.blank = true;
            }
            TagEnd::Link => self.end_link(),
            _ => {}
        }
    }

    /// Closes a link: a URL written as its own text stays as it is (and must not break);
    /// otherwise the text gets a reference number.
    fn end_link(&mut self) {
        let Some(link) = self.open_links.pop() else {
            return;
        };
        let text = &self.inline[link.start..];
        let url = link.url;
        if url.is_empty() || url.starts_with('#') {
            return;
        }
        let bare = url.strip_prefix("mailto:").unwrap_or(&url);
        let same = |t: &str| {
            let t = t.trim();
            t == url || t == bare || t.trim_end_matches('/') == url.trim_end_matches('/')
        };
        if link.auto || same(text) {
            // Write the whole URL (an address for `mailto:`) in place of its text, kept whole.
            self.inline.truncate(link.start);
            self.protected.retain(|r| r.end <= link.start);
            self.inline.push_str(bare);
            self.protected.push(link.start..self.inline.len());
            return;
        }
        let n = match self.links.iter().position(|l| *l == url) {
            Some(i) => i + 1,
            None => {
                self.links.push(url);
                self.links.len()
            }
        };
        self.inline.push_str(&format!(" [{n}]"));
    }

    /// Adds text, keeping any bare URL in it (`https://…`) from being broken.
    fn push_text(&mut self, text: &str) {
        let base = self.inline.len();
        self.inline.push_str(text);
        if self.open_links.is_empty() {
            for url in bare_urls(text) {
                self.protected.push(base + url.start..base + url.end);
            }
        }
    }

    fn push_image(&mut self, alt: &str) {
        let alt = alt.trim();
        let label = if alt.is_empty() || is_file_name(alt) {
            format!("[{}]", self.words.image)
        } else {
            format!("[{}: {alt}]", self.words.image)
        };
        if !self.inline.is_empty() && !self.inline.ends_with([' ', '\n']) {
            self.inline.push(' ');
        }
        let start = self.inline.len();
        self.inline.push_str(&label);
        self.protected.push(start..self.inline.len());
    }

    fn end_code(&mut self) {
        let code = self.code.take().unwrap_or_default();
        let prefix = self.prefix(true);
        let rest = self.prefix(false);
        for (i, line) in code.trim_end_matches('\n').split('\n').enumerate() {
            let p = if i == 0 { &prefix } else { &rest };
            self.line(&format!("{p}    {line}"));
        }
        self.blank = true;
    }

    /// Writes the blank line that separates this block from the one before, if it needs one.
    fn block_start(&mut self) {
        if self.blank && !self.out.is_empty() {
            let prefix: String = self
                .containers
                .iter()
                .filter(|c| matches!(c, Container::Quote))
                .map(|_| ">")
                .collect();
            self.line(&prefix);
        }
        self.blank = false;
    }

    /// The prefix of a line: `> ` per quote, and per list item its marker on its first line and
    /// spaces after.
    fn prefix(&mut self, first: bool) -> String {
        let mut prefix = String::new();
        for container in &mut self.containers {
            match container {
                Container::Quote => prefix.push_str("> "),
                Container::Item { marker, pending } => {
                    if first && *pending {
                        prefix.push_str(marker);
                        *pending = false;
                    } else {
                        prefix.push_str(&" ".repeat(marker.width()));
                    }
                }
            }
        }
        prefix
    }

    /// Wraps the inline buffer, emptying it: `(prefix, text)` per line.
    fn take_wrapped(&mut self) -> Vec<(String, String)> {
        let text = std::mem::take(&mut self.inline);
        let protected = std::mem::take(&mut self.protected);
        if text.trim().is_empty() {
            return Vec::new();
        }
        let first = self.prefix(true);
        let rest = self.prefix(false);
        let avail = WIDTH.saturating_sub(rest.width()).max(20);
        wrap(&text, &protected, avail)
            .into_iter()
            .enumerate()
            .map(|(i, line)| (if i == 0 { first.clone() } else { rest.clone() }, line))
            .collect()
    }

    /// Writes out the inline buffer as wrapped lines.
    fn flush(&mut self) {
        for (prefix, text) in self.take_wrapped() {
            self.line(&format!("{prefix}{text}"));
        }
    }

    fn line(&mut self, line: &str) {
        self.out.push_str(line.trim_end());
        self.out.push('\n');
    }

    /// The body, then the numbered link URLs.
    fn finish(mut self) -> String {
        self.flush();
        if let Some(code) = self.code.take() {
            self.code = Some(code);
            self.end_code();
        }
        let mut out = self.out.trim_end().to_string();
        if !self.links.is_empty() {
            out.push_str(&format!("\n\n{}\n", self.words.links));
            for (i, url) in self.links.iter().enumerate() {
                out.push_str(&format!("[{}] {url}\n", i + 1));
            }
        }
        out.trim_end().to_string()
    }
}

/// The byte ranges of bare `http://` and `https://` URLs in `text`, as GFM's autolinks find
/// them: up to white space or a character not allowed in a URL, without trailing punctuation.
fn bare_urls(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("http").map(|i| from + i) {
        let rest = &text[at..];
        if !(rest.starts_with("http://") || rest.starts_with("https://")) {
            from = at + 4;
            continue;
        }
        let len = rest
            .find(|c: char| !c.is_ascii_graphic() || "<>\"`{}|\\^".contains(c))
            .unwrap_or(rest.len());
        let url = rest[..len].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'']);
        found.push(at..at + url.len());
        from = at + len.max(4);
    }
    found
}

/// Whether an image's alt text is only a file name (`weekly.jpg`, `image.png`), which says
/// nothing to a reader.
pub(crate) fn is_file_name(alt: &str) -> bool {
    let Some((stem, ext)) = alt.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && !alt.contains(char::is_whitespace)
        && matches!(
            ext.to_ascii_lowercase().as_str(),
            "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "bmp" | "avif" | "tif" | "tiff"
        )
}

/// The text of raw HTML: tags removed (ammonia with no tags allowed), entities decoded.
fn html_text(html: &str) -> String {
    let cleaned = ammonia::Builder::empty().clean(html).to_string();
    html_escape::decode_html_entities(&cleaned).into_owned()
}

/// Greedy line filling of `text` at `width` display columns, breaking only where UAX #14 allows
/// and never inside a `protected` byte range. `\n` in `text` breaks the line. A piece wider than
/// `width` gets a line of its own; one that is not protected is cut at the width.
pub fn wrap(text: &str, protected: &[Range<usize>], width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0;
    let mut from = 0;
    let inside = |at: usize| protected.iter().any(|r| r.start < at && at < r.end);
    for (at, opportunity) in linebreaks(text) {
        let mandatory = opportunity == BreakOpportunity::Mandatory;
        if !mandatory && (inside(at) || at == 0) {
            continue;
        }
        let piece = &text[from..at];
        from = at;
        let (body, newline) = match piece.strip_suffix('\n') {
            Some(body) => (body.strip_suffix('\r').unwrap_or(body), true),
            None => (piece, false),
        };
        let visible = body.trim_end();
        let piece_width = visible.width();
        if line_width > 0 && line_width + piece_width > width {
            lines.push(std::mem::take(&mut line).trim_end().to_string());
            line_width = 0;
        }
        if line_width == 0 && piece_width > width && !protected_piece(protected, at, body) {
            // A long word that may be cut: cut it at the width.
            let mut cut = String::new();
            let mut cut_width = 0;
            for c in body.chars() {
                let w = c.to_string().width();
                if cut_width + w > width {
                    lines.push(std::mem::take(&mut cut));
                    cut_width = 0;
                }
                cut.push(c);
                cut_width += w;
            }
            line = cut;
            line_width = cut_width;
        } else {
            line.push_str(body);
            line_width = line.trim_end().width();
        }
        if newline || (mandatory && at == text.len()) {
            lines.push(std::mem::take(&mut line).trim_end().to_string());
            line_width = 0;
        }
    }
    if !line.trim().is_empty() {
        lines.push(line.trim_end().to_string());
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Whether the piece of text ending at `end` holds a protected range (a URL).
fn protected_piece(protected: &[Range<usize>], end: usize, piece: &str) -> bool {
    let start = end - piece.len();
    protected.iter().any(|r| r.start < end && start < r.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZH: Words<'static> = Words {
        image: "图片",
        links: "链接：",
    };

    fn text(markdown: &str) -> String {
        render(
            markdown,
            &Url::parse("https://www.sofastack.tech/").unwrap(),
            Rendering { cjk: true },
            &ZH,
        )
    }

    #[test]
    fn chinese_wraps_between_characters_and_never_before_punctuation() {
        let para = "SOFAStack（Scalable Open Financial Architecture Stack）是蚂蚁金服自主研发的金融级云原生架构，包含了构建金融级云原生架构所需的各个组件，包括微服务研发框架，RPC 框架，服务注册中心，分布式定时任务，限流/熔断框架，动态配置推送，分布式链路追踪。";
        let out = text(para);
        for line in out.lines() {
            assert!(line.width() <= WIDTH, "{line:?}");
            assert!(!line.starts_with(['，', '。', '：', '）']), "{out}");
        }
        assert!(out.lines().count() >= 3, "{out}");
        let squeeze = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(squeeze(&out), squeeze(para));
    }

    #[test]
    fn headings_lists_quotes_and_links_read_as_text() {
        let out = text(
            "### 本周推荐阅读\n\n**本周发布详情如下：**\n\n- [MOSN 发布](https://github.com/mosn/mosn/releases)\n- 第二项\n\n1. 一\n2. 二\n\n> 问题一\n> 问题二\n\nSOFAStack 官网: [https://www.sofastack.tech](https://www.sofastack.tech/)\n\n![weekly.jpg](a.jpg) ![架构图](b.png)\n",
        );
        assert_eq!(
            out,
            "本周推荐阅读\n------------\n\n本周发布详情如下：\n\n- MOSN 发布 [1]\n- 第二项\n\n1. 一\n2. 二\n\n> 问题一问题二\n\nSOFAStack 官网: https://www.sofastack.tech/\n\n[图片] [图片: 架构图]\n\n链接：\n[1] https://github.com/mosn/mosn/releases"
        );
    }

    #[test]
    fn urls_are_never_broken() {
        let url = "https://www.sofastack.tech/blog/momo-service-mesh-exploration-and-practice/";
        let out = text(&format!(
            "这是一段很长的中文文字，用来把链接推到行尾附近，看看它会不会被折断：{url} 以及 <{url}> 还有 [文章]({url})"
        ));
        for line in out.lines() {
            if line.contains("https://") {
                assert!(line.contains(url), "{out}");
            }
            assert!(
                line.width() <= WIDTH || line.trim_start_matches("[1] ") == url,
                "{out}"
            );
        }
        assert!(out.ends_with(&format!("[1] {url}")), "{out}");
    }

    #[test]
    fn code_blocks_are_indented_and_kept() {
        let out = text("看代码：\n\n```java\nStoreEngine engine = new StoreEngine(pdClient);\n  engine.apply();\n```\n");
        assert_eq!(
            out,
            "看代码：\n\n    StoreEngine engine = new StoreEngine(pdClient);\n      engine.apply();"
        );
    }

    #[test]
    fn nested_lists_and_wrapped_items_indent() {
        let out = text(&format!("- {}\n  - inner\n", "word ".repeat(20).trim_end()));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("- word"), "{out}");
        assert!(lines[1].starts_with("  word"), "{out}");
        assert_eq!(lines[2], "  - inner", "{out}");
    }

    #[test]
    fn addresses_tables_rules_and_raw_html_read_as_text() {
        let out = text(
            "写信到 <team@example.org> 或 [team@example.org](mailto:team@example.org)\n\n| 项目 | 版本 |\n| --- | --- |\n| Seata | 2.0 |\n\n---\n\n<div><b>原始</b> &amp; HTML</div>\n",
        );
        assert_eq!(
            out,
            "写信到 team@example.org 或 team@example.org\n\n项目 | 版本\nSeata | 2.0\n\n------------------------\n\n原始 & HTML"
        );
    }

    #[test]
    fn unsafe_links_get_no_reference() {
        let out = text("[x](javascript:alert(1)) and [y](/ok)");
        assert!(!out.contains("javascript"), "{out}");
        assert!(out.contains("[1] https://www.sofastack.tech/ok"), "{out}");
    }
}
