// The email's look: its HTML layout (maud components, below), `style.css` (inlined into `style`
// attributes) and `head.css` (kept in a `<style>` block for what cannot be inlined: `@media`
// rules for small screens and dark mode). These three files are the only places to edit to
// change how mail looks; `src/mail` includes them and fills in the issue.
//
// The layout is the hybrid ("spongy") pattern of Ghost's and Cerberus's templates: one fluid
// column, at most 600 px wide (a centred `max-width` table), with an Outlook for Windows fallback — a fixed
// 600 px table inside `<!--[if mso]>` comments, since Outlook's Word engine ignores `max-width`.
// Nothing in it is wider than the screen: long words and URLs wrap, code wraps, images shrink.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Everything the layout shows. Personal values are slot markers that `src/mail` fills in per
/// recipient; the layout treats them as ordinary text.
pub struct Layout<'a> {
    /// `<html lang>`, BCP 47.
    pub lang: &'a str,
    /// `<html dir>`: `ltr` or `rtl`.
    pub dir: &'a str,
    /// The newsletter's name.
    pub site_title: &'a str,
    /// The site's home page.
    pub site_url: &'a str,
    /// The title, plain text.
    pub title: &'a str,
    /// The date, already formatted for people.
    pub date: &'a str,
    /// The author, if any.
    pub author: Option<&'a str>,
    /// The summary, shown as hidden preheader text in inbox previews.
    pub preheader: &'a str,
    /// The cover image URL, absolute.
    pub cover: Option<&'a str>,
    /// The greeting line (a slot marker).
    pub greeting: &'a str,
    /// The body, HTML, links absolute.
    pub content_html: &'a str,
    /// The page on the web ("view in browser").
    pub web_url: &'a str,
    /// The unsubscribe link (a slot marker).
    pub unsubscribe_url: &'a str,
    /// The subscriber's page on the subscription server, when one is configured (a slot marker).
    pub manage_url: Option<&'a str>,
    /// The sender's postal address, one line.
    pub postal_address: Option<&'a str>,
    /// Fixed texts, in the newsletter's language.
    pub words: &'a Words,
}

/// The fixed words of the layout, per language.
pub struct Words {
    /// "View in browser".
    pub view_in_browser: &'static str,
    /// "Unsubscribe".
    pub unsubscribe: &'static str,
    /// "Manage your subscription".
    pub manage: &'static str,
    /// "You receive this because you subscribed to".
    pub why: &'static str,
    /// What stands for an image in the text part: `[image]`.
    pub image: &'static str,
    /// The heading of the text part's list of link URLs.
    pub links: &'static str,
    /// The colon after a label in the text part: `:` or `：`.
    pub colon: &'static str,
}

/// English words.
pub const EN: Words = Words {
    view_in_browser: "View this issue in your browser",
    unsubscribe: "Unsubscribe",
    manage: "Manage your subscription",
    why: "You are receiving this because you subscribed to",
    image: "image",
    links: "Links",
    colon: ":",
};

/// Chinese words.
pub const ZH: Words = Words {
    view_in_browser: "在浏览器中阅读本期",
    unsubscribe: "退订",
    manage: "管理订阅",
    why: "你收到这封邮件，是因为你订阅了",
    image: "图片",
    links: "链接",
    colon: "：",
};

/// A line break between block elements: it shows nothing, and keeps the text of one block from
/// running into the next for programs that read the HTML as text (spam filters count a tag
/// between two letters as an attempt to hide a word).
const NL: PreEscaped<&str> = PreEscaped("\n");

/// The width of the column, in CSS pixels.
pub const WIDTH: u32 = 600;

/// Renders the whole HTML document of an issue's email. `head_css` goes into the `<style>` block
/// as it is; the composer inlines `style.css` into the elements afterwards.
pub fn render(l: &Layout<'_>, head_css: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.lang) dir=(l.dir) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="x-apple-disable-message-reformatting";
                meta name="format-detection" content="telephone=no, date=no, address=no, email=no";
                meta name="color-scheme" content="light dark";
                meta name="supported-color-schemes" content="light dark";
                title { (l.title) }
                style { (PreEscaped(head_css)) }
            }
            body.email-body {
                (NL)
                (preheader(l.preheader))
                table.wrapper role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr { td.wrapper-cell align="center" {
                        (mso_open())
                        table.container role="presentation" align="center" width="100%" cellpadding="0" cellspacing="0" border="0" {
                            tr { td {
                                table.card role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" {
                                    tr { td.masthead { a href=(l.site_url) { strong { (l.site_title) } } } } (NL)
                                    @if let Some(cover) = l.cover { tr { td.cover-cell { (cover_image(cover, l.title)) } } (NL) }
                                    tr { td.content { (content(l)) } } (NL)
                                    tr { td.footer align="center" { (footer(l)) } } (NL)
                                }
                            } }
                        }
                        (mso_close())
                    } }
                }
            }
        }
    }
}

/// Hidden text that inbox lists show after the subject, then a run of invisible characters so the
/// preview does not run on into the masthead.
fn preheader(text: &str) -> Markup {
    html! {
        div.preheader {
            (text)
            (PreEscaped("&#847;&zwnj;&nbsp;".repeat(60)))
        }
        (NL)
    }
}

/// Outlook for Windows: a fixed-width table around the fluid column.
fn mso_open() -> Markup {
    PreEscaped(format!(
        "<!--[if mso]><table role=\"presentation\" align=\"center\" width=\"{WIDTH}\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr><td><![endif]-->"
    ))
}

fn mso_close() -> Markup {
    PreEscaped("<!--[if mso]></td></tr></table><![endif]-->".to_string())
}

fn cover_image(url: &str, title: &str) -> Markup {
    html! {
        img.cover src=(url) alt=(title) width=(WIDTH);
    }
}

fn content(l: &Layout<'_>) -> Markup {
    html! {
        h1.title { (l.title) } (NL)
        p.meta {
            (l.date)
            @if let Some(author) = l.author { " · " (author) }
        }
        (NL)
        p.greeting { (l.greeting) } (NL)
        div.body { (PreEscaped(l.content_html)) }
    }
}

fn footer(l: &Layout<'_>) -> Markup {
    html! {
        p.footer-links {
            a href=(l.web_url) { (l.words.view_in_browser) }
            @if let Some(manage) = l.manage_url {
                " · " a href=(manage) { (l.words.manage) }
            }
            " · " a href=(l.unsubscribe_url) { (l.words.unsubscribe) }
        }
        (NL)
        p.footer-why { (l.words.why) " " a href=(l.site_url) { (l.site_title) } "." } (NL)
        @if let Some(address) = l.postal_address {
            p.footer-address { (address) } (NL)
        }
    }
}

/// The plain-text part around the body (already wrapped text): title underlined, date, greeting,
/// body, then the footer after the `-- ` signature separator.
pub fn render_text(l: &Layout<'_>, body: &str, underline: usize) -> String {
    let mut out = String::new();
    out.push_str(l.title);
    out.push('\n');
    out.push_str(&"=".repeat(underline));
    out.push('\n');
    out.push_str(l.date);
    if let Some(author) = l.author {
        out.push_str(" · ");
        out.push_str(author);
    }
    out.push_str("\n\n");
    out.push_str(l.greeting);
    out.push_str("\n\n");
    out.push_str(body);
    out.push_str("\n\n-- \n");
    let colon = l.words.colon;
    out.push_str(&format!(
        "{}{colon}\n{}\n",
        l.words.view_in_browser, l.web_url
    ));
    if let Some(manage) = l.manage_url {
        out.push_str(&format!("{}{colon}\n{manage}\n", l.words.manage));
    }
    out.push_str(&format!(
        "{}{colon}\n{}\n",
        l.words.unsubscribe, l.unsubscribe_url
    ));
    out.push_str(&format!(
        "{} {}{colon}\n{}\n",
        l.words.why, l.site_title, l.site_url
    ));
    if let Some(address) = l.postal_address {
        out.push_str(address);
        out.push('\n');
    }
    out
}
