//! The pages of `feedpost serve` in a real browser: headless Chromium (Debian's `chromium`),
//! driven over the DevTools protocol by the `headless_chrome` crate (already what `feedpost
//! preview` screenshots with, so no WebDriver server is needed). A reader subscribes with the
//! form, opens the confirmation link from the email the loopback SMTP server received, then
//! the unsubscribe link, clicks the button, and is unsubscribed.
//!
//! Without `/usr/bin/chromium` the test says so and passes, except under CI (`CI` set), where it
//! fails: `.ci/run` installs Chromium.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use headless_chrome::{Browser, LaunchOptions, Tab};

use super::serve::{site, subscriber, Server, SECRET};
use crate::support::smtp_server::{Faults, SmtpServer};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium is here; false (with the reason printed) when the test must skip.
fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let reason = format!("{CHROMIUM} is missing: install Debian's `chromium` package");
    assert!(
        std::env::var_os("CI").is_none(),
        "under CI the browser test must run: {reason}"
    );
    eprintln!("skipped: {reason}");
    false
}

/// Headless Chromium with the flags this machine needs (no sandbox as root, no background
/// network, which is closed here) and a fresh profile in `profile`.
fn chromium(profile: &Path) -> Browser {
    let args = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    Browser::new(LaunchOptions {
        path: Some(CHROMIUM.into()),
        headless: true,
        sandbox: false,
        user_data_dir: Some(profile.to_path_buf()),
        args: args.iter().map(OsStr::new).collect(),
        idle_browser_timeout: Duration::from_secs(120),
        ..LaunchOptions::default()
    })
    .expect("start headless Chromium")
}

/// Waits for the page whose `h1` is `text` (the page a click or a navigation leads to), up to
/// 20 s: the DevTools protocol's polling wait, not a sleep.
fn wait_for_heading(tab: &Tab, text: &str) {
    tab.wait_for_xpath_with_custom_timeout(
        &format!("//h1[normalize-space(.)='{text}']"),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| {
        panic!(
            "no page headed {text:?} at {}: {e}\n{}",
            tab.get_url(),
            tab.get_content().unwrap_or_default()
        )
    });
}

fn go(tab: &Tab, url: &str) {
    tab.navigate_to(url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
}

#[test]
fn a_reader_confirms_and_unsubscribes_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let smtp = SmtpServer::start(Faults::default());
    let site = site(Some(&smtp), "");
    let server = Server::start(&site);
    let profile = tempfile::tempdir().unwrap();
    let browser = chromium(profile.path());
    let tab = browser.new_tab().unwrap();

    // Subscribe with the form: type the address, tick a topic, press the button.
    go(&tab, &format!("{}/subscribe", server.base));
    wait_for_heading(&tab, "订阅《SOFA Weekly》");
    tab.find_element("#email")
        .unwrap()
        .click()
        .unwrap()
        .type_into("Browser@Example.org")
        .unwrap();
    tab.find_element("input[value=\"Seata\"]")
        .unwrap()
        .click()
        .unwrap();
    tab.find_element("form.subscribe button")
        .unwrap()
        .click()
        .unwrap();
    wait_for_heading(&tab, "请查收邮件");

    // Open the link in the email the SMTP server received.
    assert!(
        smtp.wait_for(1, Duration::from_secs(20)),
        "no confirmation email"
    );
    let data = smtp.received()[0].data.clone();
    let parsed = mail_parser::MessageParser::default().parse(&data).unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("http://localhost/confirm?token="))
        .expect("a confirmation link");
    go(&tab, &server.local(link));
    wait_for_heading(&tab, "订阅成功");
    assert_eq!(
        subscriber(&site, "browser@example.org").unwrap(),
        ("confirmed".to_string(), vec!["Seata".to_string()])
    );

    // The unsubscribe link as the email carries it: the page names the list; looking
    // at it changes nothing; the button unsubscribes.
    let public = url::Url::parse("http://localhost/").unwrap();
    let secret = feedpost::subscribers::token::Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    let unsubscribe =
        feedpost::subscribers::token::unsubscribe_url(&public, &secret, "Browser@Example.org");
    go(&tab, &server.local(unsubscribe.as_str()));
    wait_for_heading(&tab, "退订");
    let question = tab
        .find_element("main p")
        .unwrap()
        .get_inner_text()
        .unwrap();
    assert!(question.contains("《SOFA Weekly》"), "{question}");
    assert_eq!(
        subscriber(&site, "browser@example.org").unwrap().0,
        "confirmed"
    );
    // The stylesheets load under the Content-Security-Policy: the button has its colour.
    let colour = tab
        .evaluate(
            "getComputedStyle(document.querySelector('form.unsubscribe button')).backgroundColor",
            false,
        )
        .unwrap()
        .value;
    assert_eq!(colour, Some(serde_json::json!("rgb(31, 78, 140)")));
    tab.find_element("form.unsubscribe button")
        .unwrap()
        .click()
        .unwrap();
    wait_for_heading(&tab, "已退订");
    assert_eq!(
        subscriber(&site, "browser@example.org").unwrap().0,
        "unsubscribed"
    );
}
