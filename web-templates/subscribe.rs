// The pages of `feedpost serve`, written with maud: the subscription form, the pages that
// answer it, the unsubscribe page and the error pages. This file and `subscribe.css` beside it
// (served as `subscribe.css`, after the archive's `style.css`, served as `archive.css`) are the
// only places to edit to change how they look and what they say; `src/serve` includes both.
//
// No script, no inline style: the server's Content-Security-Policy allows neither. Links and
// form actions are relative, so the pages work under any `public_url` path.

use maud::{html, Markup, DOCTYPE};

/// What every page shows of the site.
pub struct Site<'a> {
    /// `<html lang>`, BCP 47.
    pub lang: &'a str,
    /// The newsletter's name.
    pub title: &'a str,
    /// One line about it (may be empty).
    pub description: &'a str,
    /// The web archive's home page (`site.base_url`).
    pub home: &'a str,
    /// Fixed words in the site's language.
    pub words: &'a Words,
}

/// Values the words are made from.
pub struct Vars<'a> {
    /// The newsletter's name.
    pub title: &'a str,
    /// The reader's address.
    pub address: &'a str,
    /// How long confirmation links work, in hours.
    pub hours: u32,
}

/// A page's heading and first paragraph.
pub type Text = (&'static str, &'static str);

/// The fixed words of the pages, per language. Words that name the site, an address or a
/// duration are functions of [`Vars`], so a value is never read as a placeholder.
pub struct Words {
    /// The form's heading.
    pub subscribe_title: fn(&Vars) -> String,
    /// Under the heading.
    pub subscribe_intro: &'static str,
    /// The address field.
    pub email: &'static str,
    /// The name field.
    pub name: &'static str,
    /// Legend of the topics.
    pub topics: &'static str,
    /// Under the topics.
    pub topics_hint: &'static str,
    /// The form's button.
    pub subscribe_button: &'static str,
    /// After the form is sent, whatever the address: never says whether it was subscribed.
    pub check_inbox: (&'static str, fn(&Vars) -> String),
    /// After a confirmation.
    pub confirmed: (&'static str, fn(&Vars) -> String),
    /// The unsubscribe page: heading, question, button.
    pub unsubscribe: (&'static str, fn(&Vars) -> String, &'static str),
    /// After unsubscribing.
    pub unsubscribed: (&'static str, fn(&Vars) -> String),
    /// The link back to the form.
    pub subscribe_again: &'static str,
    /// The link to the archive.
    pub archive: &'static str,
    /// "Error" before a form's error message, for screen readers.
    pub error_prefix: &'static str,
    /// Form errors.
    pub bad_email: &'static str,
    /// A name too long or with control characters.
    pub bad_name: &'static str,
    /// A topic that is not the site's.
    pub bad_topic: &'static str,
    /// A link that is incomplete, altered, forged or for something else.
    pub bad_link: Text,
    /// An expired confirmation link.
    pub expired_link: (&'static str, fn(&Vars) -> String),
    /// A confirmation link whose request is gone.
    pub no_request: Text,
    /// A form that misses a field or is not form data.
    pub bad_form: Text,
    /// A POST to the unsubscribe link without `List-Unsubscribe=One-Click`.
    pub no_one_click: Text,
    /// 413.
    pub too_large: Text,
    /// 415.
    pub unsupported: Text,
    /// 429.
    pub too_many: Text,
    /// 404.
    pub not_found: Text,
    /// 405.
    pub method: Text,
    /// 408.
    pub timeout: Text,
    /// 503.
    pub unavailable: Text,
    /// 500.
    pub internal: Text,
}

/// English words.
pub const EN: Words = Words {
    subscribe_title: |v| format!("Subscribe to {}", v.title),
    subscribe_intro: "Get each issue by email. We first send you a link to confirm your address.",
    email: "Email address",
    name: "Name (optional)",
    topics: "Topics (optional)",
    topics_hint: "Choose none to get every issue.",
    subscribe_button: "Subscribe",
    check_inbox: ("Check your inbox", |v| {
        format!(
            "If {} can be subscribed, a message with a confirmation link is on its way to it. \
             Open the link within {} hours. Nothing after a few minutes? Look in the spam folder, \
             or send the form again.",
            v.address, v.hours
        )
    }),
    confirmed: ("You are subscribed", |v| {
        format!(
            "{} will receive {}. Every issue has a link to unsubscribe.",
            v.address, v.title
        )
    }),
    unsubscribe: (
        "Unsubscribe",
        |v| format!("Stop sending {} to {}?", v.title, v.address),
        "Unsubscribe",
    ),
    unsubscribed: ("You are unsubscribed", |v| {
        format!("{} will receive no more issues of {}.", v.address, v.title)
    }),
    subscribe_again: "Subscribe again",
    archive: "Read the archive",
    error_prefix: "Error:",
    bad_email: "Enter an email address such as name@example.org.",
    bad_name: "Write the name in at most 100 characters, on one line.",
    bad_topic: "Choose topics from the list.",
    bad_link: (
        "This link does not work",
        "It is incomplete, was changed, or was not made by this newsletter. Copy the whole link from the email, or subscribe again.",
    ),
    expired_link: ("This link has expired", |v| {
        format!(
            "Confirmation links work for {} hours. Subscribe again to get a new one.",
            v.hours
        )
    }),
    no_request: (
        "Nothing to confirm",
        "This request has expired or was withdrawn. Subscribe again to get a new link.",
    ),
    bad_form: (
        "The form is incomplete",
        "Please send it again from the subscription page.",
    ),
    no_one_click: (
        "Use the button to unsubscribe",
        "This address unsubscribes with the button on the unsubscribe page (or a mail client's one-click unsubscribe).",
    ),
    too_large: (
        "Too much data",
        "The form sent more than this server accepts.",
    ),
    unsupported: (
        "Send the form from its page",
        "This server accepts only what its own forms send.",
    ),
    too_many: (
        "Too many requests",
        "Please wait a minute before trying again.",
    ),
    not_found: ("Page not found", "There is nothing at this address."),
    method: ("Not allowed", "This page does not accept that kind of request."),
    timeout: ("Too slow", "The request took too long to arrive. Please try again."),
    unavailable: (
        "Busy right now",
        "The server cannot take this now. Please try again in a few minutes.",
    ),
    internal: (
        "Something went wrong on our side",
        "Please try again later. If it keeps happening, write to the newsletter's editor.",
    ),
};

/// Chinese words.
pub const ZH: Words = Words {
    subscribe_title: |v| format!("订阅《{}》", v.title),
    subscribe_intro: "每期通过邮件送达。我们会先发一封邮件，请点击其中的链接确认地址。",
    email: "邮箱地址",
    name: "称呼（选填）",
    topics: "主题（选填）",
    topics_hint: "不选则接收每一期。",
    subscribe_button: "订阅",
    check_inbox: ("请查收邮件", |v| {
        format!(
            "如果 {} 可以订阅，一封带确认链接的邮件已经发往该地址。请在 {} 小时内打开链接。\
             几分钟后仍未收到？请查看垃圾邮件文件夹，或重新提交表单。",
            v.address, v.hours
        )
    }),
    confirmed: ("订阅成功", |v| {
        format!(
            "{} 将收到《{}》。每一期邮件里都有退订链接。",
            v.address, v.title
        )
    }),
    unsubscribe: (
        "退订",
        |v| format!("不再向 {} 发送《{}》？", v.address, v.title),
        "退订",
    ),
    unsubscribed: ("已退订", |v| {
        format!("{} 不会再收到《{}》。", v.address, v.title)
    }),
    subscribe_again: "重新订阅",
    archive: "阅读往期",
    error_prefix: "错误：",
    bad_email: "请填写有效的邮箱地址，例如 name@example.org。",
    bad_name: "称呼请写在一行内，不超过 100 个字符。",
    bad_topic: "请从列表中选择主题。",
    bad_link: (
        "链接无效",
        "链接不完整、被改动过，或不是本刊生成的。请从邮件中复制完整的链接，或重新订阅。",
    ),
    expired_link: ("链接已过期", |v| {
        format!(
            "确认链接的有效期为 {} 小时。请重新订阅以获取新的链接。",
            v.hours
        )
    }),
    no_request: (
        "没有待确认的订阅",
        "该请求已过期或已撤回。请重新订阅以获取新的链接。",
    ),
    bad_form: ("表单不完整", "请回到订阅页面重新提交。"),
    no_one_click: (
        "请使用按钮退订",
        "请在退订页面点击按钮（或使用邮件客户端的一键退订）。",
    ),
    too_large: ("数据过多", "表单提交的内容超出了服务器接受的大小。"),
    unsupported: ("请从页面提交表单", "服务器只接受它自己的表单提交的内容。"),
    too_many: ("请求过于频繁", "请稍等一分钟再试。"),
    not_found: ("页面不存在", "这个地址没有内容。"),
    method: ("不允许的请求", "此页面不接受这种请求。"),
    timeout: ("请求超时", "请求到达得太慢，请重试。"),
    unavailable: ("服务器繁忙", "服务器暂时无法处理，请几分钟后再试。"),
    internal: ("服务器出错了", "请稍后再试。如果问题持续，请联系本刊编辑。"),
};

/// A topic checkbox.
pub struct Topic<'a> {
    /// The topic as the site spells it: label and value.
    pub label: &'a str,
    /// Whether it is ticked.
    pub checked: bool,
}

/// The subscription form as shown: empty, or filled in again with an error.
pub struct Form<'a> {
    /// The address field's value.
    pub email: &'a str,
    /// The name field's value.
    pub name: &'a str,
    /// The site's topics.
    pub topics: &'a [Topic<'a>],
    /// What is wrong with what was sent, and which field (`email`, `name`, `topics`).
    pub error: Option<(&'a str, &'a str)>,
}

fn page(site: &Site<'_>, title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(site.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · " (site.title) }
                link rel="stylesheet" href="archive.css";
                link rel="stylesheet" href="subscribe.css";
            }
            body {
                header.masthead { a href=(site.home) { (site.title) } }
                main { (main) }
            }
        }
    }
}

/// The subscription form (`GET /subscribe`, and again with an error after a bad `POST`).
pub fn subscribe(site: &Site<'_>, vars: &Vars<'_>, form: &Form<'_>) -> Markup {
    let w = site.words;
    let title = (w.subscribe_title)(vars);
    let invalid = |field: &str| form.error.is_some_and(|(_, f)| f == field);
    let described = |field: &str| invalid(field).then_some("form-error");
    page(
        site,
        &title,
        html! {
            h1 { (title) }
            @if !site.description.is_empty() { p.description { (site.description) } }
            p { (w.subscribe_intro) }
            @if let Some((message, _)) = form.error {
                p #form-error .form-error role="alert" {
                    span.visually-hidden { (w.error_prefix) " " }
                    (message)
                }
            }
            form.subscribe method="post" action="subscribe" {
                p {
                    label for="email" { (w.email) }
                    input #email type="email" name="email" value=(form.email) required
                        autocomplete="email" inputmode="email" maxlength="254"
                        aria-invalid=[invalid("email").then_some("true")]
                        aria-describedby=[described("email")];
                }
                p {
                    label for="name" { (w.name) }
                    input #name type="text" name="name" value=(form.name)
                        autocomplete="name" maxlength="100"
                        aria-invalid=[invalid("name").then_some("true")]
                        aria-describedby=[described("name")];
                }
                @if !form.topics.is_empty() {
                    fieldset.topics aria-describedby="topics-hint" {
                        legend { (w.topics) }
                        p #topics-hint .hint { (w.topics_hint) }
                        ul {
                            @for (i, topic) in form.topics.iter().enumerate() {
                                @let id = format!("topic-{i}");
                                li {
                                    input id=(id) type="checkbox" name="topics" value=(topic.label) checked[topic.checked];
                                    " "
                                    label for=(id) { (topic.label) }
                                }
                            }
                        }
                    }
                }
                p { button type="submit" { (w.subscribe_button) } }
            }
        },
    )
}

/// A page that says what happened: a heading, a paragraph, and links on (to the form, to the
/// archive). For answers and for errors alike.
pub fn message(site: &Site<'_>, heading: &str, body: &str, subscribe_link: bool) -> Markup {
    let w = site.words;
    page(
        site,
        heading,
        html! {
            h1 { (heading) }
            p { (body) }
            nav {
                @if subscribe_link { a href="subscribe" { (w.subscribe_again) } " · " }
                a href=(site.home) { (w.archive) }
            }
        },
    )
}

/// The unsubscribe page (`GET /unsubscribe?token=…`): names the list and the address, and a
/// button that sends the same request as a mail client's one-click unsubscribe (RFC 8058):
/// `POST` to the same link with `List-Unsubscribe=One-Click`. A page only looked at (a link
/// scanner's `GET`) unsubscribes nobody.
pub fn unsubscribe(site: &Site<'_>, vars: &Vars<'_>, action: &str) -> Markup {
    let (heading, question, button) = &site.words.unsubscribe;
    page(
        site,
        heading,
        html! {
            h1 { (heading) }
            p { (question(vars)) }
            form.unsubscribe method="post" action=(action) {
                input type="hidden" name="List-Unsubscribe" value="One-Click";
                button type="submit" { (button) }
            }
        },
    )
}
