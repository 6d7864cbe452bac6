//! The pages of `feedpost serve` in a real browser: headless Chromium (Debian's `chromium`),
//! driven over WebDriver (`chromedriver`, through the `fantoccini` client). A reader opens the
//! confirmation link from the email the loopback SMTP server received, then the unsubscribe
//! link, clicks the button, and is unsubscribed.
//!
//! Without `/usr/bin/chromium` or `/usr/bin/chromedriver` the test says so and passes, except
//! under CI (`CI` set), where it fails: `.ci/run` installs both.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::serve::{site, subscriber, Server, SECRET};
use crate::support::smtp_server::{Faults, SmtpServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is here; false (with the reason printed) when the test must skip.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{} missing: install Debian's `chromium` and `chromium-driver` packages",
        missing.join(" and ")
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "under CI the browser test must run: {reason}"
    );
    eprintln!("skipped: {reason}");
    false
}

/// `chromedriver` on an ephemeral loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let mut child = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split("started successfully on port ")
                    .nth(1)
                    .map(|rest| rest.trim_end_matches('.').trim().to_string())
            })
            .expect("chromedriver did not say its port");
        // Keep reading its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session with a fresh profile in `profile`.
    async fn session(&self, profile: &Path) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a page whose `h1` is `text` (the page a click or `goto` leads to): WebDriver's
/// polling wait, up to 20 s.
async fn wait_for_heading(browser: &Client, text: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(&format!(
            "//h1[normalize-space(.)='{text}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("no page headed {text:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_confirms_and_unsubscribes_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let smtp = SmtpServer::start(Faults::default());
    let site = site(Some(&smtp), "");
    site.run(&["build"]).success();
    let server = Server::start(&site);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.session(profile.path()).await;
    // The scenario runs as a task so that, pass or fail, the session (and its Chromium) is
    // closed before the failure is reported.
    let scenario = tokio::spawn(reader_scenario(browser.clone(), smtp, site, server));
    let outcome = scenario.await;
    browser.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Subscribe with the form, confirm with the link from the email, unsubscribe with the button.
async fn reader_scenario(
    browser: Client,
    smtp: SmtpServer,
    site: crate::support::Site,
    server: Server,
) {
    // Subscribe with the form.
    browser
        .goto(&format!("{}/subscribe", server.base))
        .await
        .unwrap();
    browser
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("Browser@Example.org")
        .await
        .unwrap();
    browser
        .find(Locator::Css("input[value=\"Seata\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Css("form.subscribe button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&browser, "请查收邮件").await;

    // Open the link in the email the SMTP server received.
    let link = {
        tokio::task::block_in_place(|| assert!(smtp.wait_for(1, Duration::from_secs(20))));
        let data = smtp.received()[0].data.clone();
        let parsed = mail_parser::MessageParser::default().parse(&data).unwrap();
        let text = parsed.body_text(0).unwrap().into_owned();
        text.split_whitespace()
            .find(|w| w.starts_with("http://localhost/confirm?token="))
            .unwrap()
            .to_string()
    };
    browser.goto(&server.local(&link)).await.unwrap();
    wait_for_heading(&browser, "订阅成功").await;
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
    browser
        .goto(&server.local(unsubscribe.as_str()))
        .await
        .unwrap();
    let question = browser
        .find(Locator::Css("main p"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(question.contains("《SOFA Weekly》"), "{question}");
    assert_eq!(
        subscriber(&site, "browser@example.org").unwrap().0,
        "confirmed"
    );
    // The stylesheets load under the Content-Security-Policy: the button has its colour.
    let colour = browser
        .execute(
            "return getComputedStyle(document.querySelector('form.unsubscribe button')).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(colour, "rgb(31, 78, 140)");
    browser
        .find(Locator::Css("form.unsubscribe button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_heading(&browser, "已退订").await;
    assert_eq!(
        subscriber(&site, "browser@example.org").unwrap().0,
        "unsubscribed"
    );
}
