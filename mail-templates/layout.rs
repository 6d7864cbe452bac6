// The email's HTML layout, written with maud. This file and `style.css` beside it are the only
// places to edit to change how mail looks; `src/mail` includes both. Table-based, 640 px wide at
// most, because Outlook's Word engine ignores `max-width` on divs.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Everything the layout shows. Personal values are slot markers that `src/mail` fills in per
/// recipient; the layout treats them as ordinary text.
pub struct Layout<'a> {
    /// `<html lang>`, BCP 47.
    pub lang: &'a str,
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
    /// Footer texts, in the newsletter's language.
    pub words: &'a Words,
}

/// The fixed words of the layout, per language.
pub struct Words {
    /// "View in browser".
    pub view_in_browser: &'static str,
    /// "Unsubscribe".
    pub unsubscribe: &'static str,
    /// "You receive this because you subscribed to".
    pub why: &'static str,
}

/// English words.
pub const EN: Words = Words {
    view_in_browser: "View this issue in your browser",
    unsubscribe: "Unsubscribe",
    why: "You are receiving this because you subscribed to",
};

/// Chinese words.
pub const ZH: Words = Words {
    view_in_browser: "在浏览器中阅读本期",
    unsubscribe: "退订",
    why: "你收到这封邮件，是因为你订阅了",
};

/// Renders the whole HTML document of an issue's email, with a `<style>` block that the composer
/// inlines.
pub fn render(l: &Layout<'_>, css: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="x-apple-disable-message-reformatting";
                title { (l.title) }
                style { (PreEscaped(css)) }
            }
            body {
                div style="display:none;max-height:0;overflow:hidden;mso-hide:all" { (l.preheader) }
                table.wrapper role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" {
                    tr { td align="center" {
                        table.container role="presentation" width="640" cellpadding="0" cellspacing="0" border="0" {
                            tr { td.masthead { a href=(l.site_url) { (l.site_title) } } }
                            tr { td.content {
                                h1.title { (l.title) }
                                p.meta {
                                    (l.date)
                                    @if let Some(author) = l.author { " · " (author) }
                                }
                                @if let Some(cover) = l.cover {
                                    img.cover src=(cover) alt=(l.title) width="584";
                                }
                                p.greeting { (l.greeting) }
                                div.body { (PreEscaped(l.content_html)) }
                            } }
                            tr { td.footer {
                                p { a href=(l.web_url) { (l.words.view_in_browser) } }
                                p { (l.words.why) " " a href=(l.site_url) { (l.site_title) } "." }
                                p { a href=(l.unsubscribe_url) { (l.words.unsubscribe) } }
                            } }
                        }
                    } }
                }
            }
        }
    }
}
