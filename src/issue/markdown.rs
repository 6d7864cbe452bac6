//! Markdown → HTML for one issue, with every link and image made absolute.
//!
//! The second stage of the pipeline: its output goes, unchanged, into the feeds, the archive page
//! and the email. We use pulldown-cmark (CommonMark, fast, streaming, no unsafe HTML handling of
//! its own); relative URLs are resolved against the site's `base_url` while the events stream by,
//! because feeds and emails are read away from the site. Raw HTML in the Markdown is passed through
//! ammonia so no `script`, `style` or `iframe` reaches a feed reader or a mail client.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
use url::Url;

/// The Markdown extensions feedpost turns on: tables, strikethrough, task lists, footnotes.
pub(crate) fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
}

/// Renders `markdown` to an HTML fragment with absolute `href`/`src` URLs resolved against `base`.
///
/// Never fails: any input renders to something. Raw HTML is sanitised (no script, style, iframe,
/// event handlers), URLs with a scheme are left as they are, and a URL that cannot be resolved is
/// left unchanged.
pub fn render(markdown: &str, base: &Url) -> String {
    let mut has_raw_html = false;
    let events = Parser::new_ext(markdown, options()).map(|event| match event {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: absolute(dest_url, base),
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
            dest_url: absolute(dest_url, base),
            title,
            id,
        }),
        Event::Html(_) | Event::InlineHtml(_) => {
            has_raw_html = true;
            event
        }
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    if has_raw_html {
        sanitize(&html, base)
    } else {
        html
    }
}

/// Cleans an HTML fragment that carries author-written raw HTML, keeping ordinary markup.
fn sanitize(html: &str, base: &Url) -> String {
    ammonia::Builder::default()
        .url_relative(ammonia::UrlRelative::RewriteWithBase(base.clone()))
        .clean(html)
        .to_string()
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

    #[test]
    fn relative_links_and_images_become_absolute() {
        let html = render(
            "[归档](/blog/archive/) ![a](img/x.png) [ext](https://github.com/sofastack) [top](#q)",
            &base(),
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
    fn mailto_is_left_alone() {
        let html = render("[m](mailto:a@b.org)", &base());
        assert!(html.contains(r#"href="mailto:a@b.org""#), "{html}");
    }

    #[test]
    fn script_and_iframe_are_removed() {
        let html = render("hi <script>alert(1)</script>\n\n<iframe src=\"/x\"></iframe>\n\n<a href=\"/rel\">r</a>", &base());
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<iframe"), "{html}");
        assert!(html.contains("https://www.sofastack.tech/rel"), "{html}");
    }

    #[test]
    fn block_quotes_lists_and_cjk_render() {
        let html = render("> 问题\n\n- **SOFAStack 官网: **[x](/)\n", &base());
        assert!(html.contains("<blockquote>"));
        assert!(html.contains("<li>"));
        assert!(html.contains("问题"));
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
