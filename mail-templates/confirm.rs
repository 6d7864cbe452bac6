// The confirmation email (double opt-in): the one message `feedpost serve` sends when someone
// asks to subscribe. Its words, its plain-text part and its HTML part are all here; `src/mail/
// confirm.rs` includes this file and only builds the message around them. Styles are inline
// attributes (no stylesheet to inline): the message is short and must read anywhere.

use maud::{html, Markup, DOCTYPE};

/// What the message says.
pub struct Confirm<'a> {
    /// `<html lang>`, BCP 47.
    pub lang: &'a str,
    /// The newsletter's name.
    pub site_title: &'a str,
    /// The newsletter's home page.
    pub site_url: &'a str,
    /// The address that asked to subscribe, as written. The name given with the request is
    /// not shown: anyone can type any address into the form, and a name echoed here would let
    /// them put their words into a message to a stranger.
    pub address: &'a str,
    /// The topics asked for; empty: every issue.
    pub topics: &'a [String],
    /// The confirmation link.
    pub confirm_url: &'a str,
    /// How long the link works, in hours.
    pub valid_hours: u32,
    /// The words, in the newsletter's language.
    pub words: &'a Words,
}

/// The fixed words of the message, per language. `{title}`, `{address}` and `{hours}` are
/// filled in.
pub struct Words {
    /// The Subject.
    pub subject: &'static str,
    /// The greeting.
    pub hello: &'static str,
    /// What was asked.
    pub asked: &'static str,
    /// Before the list of topics, with the space that follows it in the language.
    pub topics: &'static str,
    /// Between topics.
    pub topic_separator: &'static str,
    /// What to do.
    pub action: &'static str,
    /// The button's label.
    pub button: &'static str,
    /// What happens if one does nothing.
    pub ignore: &'static str,
}

/// English words.
pub const EN: Words = Words {
    subject: "Confirm your subscription to {title}",
    hello: "Hello,",
    asked: "Someone, hopefully you, asked to subscribe {address} to {title}.",
    topics: "Topics: ",
    topic_separator: ", ",
    action: "To confirm, open this link within {hours} hours:",
    button: "Confirm my subscription",
    ignore: "If you did not ask for this, ignore this message: you will not be subscribed, and we will not write again.",
};

/// Chinese words.
pub const ZH: Words = Words {
    subject: "请确认订阅《{title}》",
    hello: "你好！",
    asked: "有人（希望是你）请求用 {address} 订阅《{title}》。",
    topics: "主题：",
    topic_separator: "、",
    action: "请在 {hours} 小时内打开下面的链接确认订阅：",
    button: "确认订阅",
    ignore: "如果这不是你本人的请求，请忽略这封邮件：你不会被订阅，我们也不会再来信。",
};

impl Confirm<'_> {
    /// `text` with each `{key}` replaced in one pass, so a value that happens to hold
    /// `{title}` is left as written.
    fn fill(&self, text: &str) -> String {
        let hours = self.valid_hours.to_string();
        let mut out = String::with_capacity(text.len() + 64);
        let mut rest = text;
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            let value = [
                ("{title}", self.site_title),
                ("{address}", self.address),
                ("{hours}", hours.as_str()),
            ]
            .into_iter()
            .find(|(key, _)| rest.starts_with(key));
            match value {
                Some((key, value)) => {
                    out.push_str(value);
                    rest = &rest[key.len()..];
                }
                None => {
                    out.push('{');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The Subject, plain text.
    pub fn subject(&self) -> String {
        self.fill(self.words.subject)
    }

    fn topic_line(&self) -> Option<String> {
        (!self.topics.is_empty()).then(|| {
            format!(
                "{}{}",
                self.words.topics,
                self.topics.join(self.words.topic_separator)
            )
        })
    }

    /// The plain-text part, LF line ends: what a person would write.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n\n{}\n", self.words.hello, self.fill(self.words.asked));
        if let Some(topics) = self.topic_line() {
            out.push_str(&topics);
            out.push('\n');
        }
        out.push_str(&format!(
            "\n{}\n{}\n\n{}\n\n-- \n{}\n{}\n",
            self.fill(self.words.action),
            self.confirm_url,
            self.fill(self.words.ignore),
            self.site_title,
            self.site_url
        ));
        out
    }

    /// The HTML part: one column, 560 px at most, a button-styled link with the URL written out
    /// beneath it for clients that hide links.
    pub fn html(&self) -> Markup {
        let text = "color:#1f2328;font:16px/1.6 -apple-system,'Segoe UI','PingFang SC','Microsoft YaHei',Helvetica,Arial,sans-serif;";
        html! {
            (DOCTYPE)
            html lang=(self.lang) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.subject()) }
                }
                body style="margin:0;padding:0;background-color:#f4f5f7;" {
                    div style=(format!("max-width:560px;margin:0 auto;padding:24px 20px;{text}")) {
                        p style="margin:0 0 16px;font-size:14px;letter-spacing:1px;color:#1f4e8c;" { (self.site_title) }
                        p { (self.words.hello) }
                        p { (self.fill(self.words.asked)) }
                        @if let Some(topics) = self.topic_line() { p { (topics) } }
                        p { (self.fill(self.words.action)) }
                        p style="margin:24px 0;" {
                            a href=(self.confirm_url) style="display:inline-block;padding:10px 20px;border-radius:4px;background-color:#1f4e8c;color:#ffffff;text-decoration:none;font-weight:bold;" { (self.words.button) }
                        }
                        p style="font-size:13px;color:#57606a;word-break:break-all;" {
                            a href=(self.confirm_url) style="color:#1f6feb;" { (self.confirm_url) }
                        }
                        p style="font-size:13px;color:#57606a;" { (self.fill(self.words.ignore)) }
                        p style="margin-top:24px;font-size:12px;color:#6a737d;" {
                            a href=(self.site_url) style="color:#6a737d;" { (self.site_title) }
                        }
                    }
                }
            }
        }
    }
}
