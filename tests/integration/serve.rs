//! `feedpost serve`: the real binary on a loopback port, driven over real HTTP (ureq), the
//! confirmation mail received by the loopback SMTP server, the subscriber rows read back from
//! the real ledger.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::Utc;
use feedpost::store::sqlite::SqliteStore;
use feedpost::store::Store;
use feedpost::subscribers::token::{self, Secret};
use mail_parser::MessageParser;

use crate::support::smtp_server::{Faults, SmtpServer};
use crate::support::{block_on, issue, Site};

/// The secret every test server signs with.
pub const SECRET: &str = "serve-tests-secret-0123456789abcdef0123456789";

/// A site with two issues (topics `SOFA Weekly`, `MOSN` — spelled `mosn` in the older one —
/// and `Seata`), mail over SMTP to `smtp`
/// (or the outbox), and a `[serve]` table on an ephemeral loopback port whose links point at
/// `http://localhost/` (the tests send them to the real port). `serve` adds lines to `[serve]`.
pub fn site(smtp: Option<&SmtpServer>, serve: &str) -> Site {
    let mut site = Site::new()
        .issue(
            "2024-03-01-weekly.md",
            &issue(
                "SOFA Weekly | 一",
                "2024-03-01T15:00:00+08:00",
                &["mosn"],
                "One.\n",
            ),
        )
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "SOFA Weekly | 二",
                "2024-03-08T15:00:00+08:00",
                &["Seata", "MOSN"],
                "Two.\n",
            ),
        )
        .env("FEEDPOST_SECRET", SECRET);
    if let Some(server) = smtp {
        site = site.smtp(server.port(), "");
    }
    // `[serve]` goes after the `[mail]` lines (the helper has no table of its own for it).
    site.mail_config(&format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://localhost/\"\n{serve}"
    ))
}

/// A running `feedpost serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, without the final slash.
    pub base: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Server {
    /// Starts `feedpost serve` on `site` and waits for it to print its address.
    pub fn start(site: &Site) -> Server {
        Server::start_with(site, &["serve"])
    }

    /// Starts the binary with `args` (a `serve` command) on `site` and waits for it to print
    /// its address.
    pub fn start_with(site: &Site, args: &[&str]) -> Server {
        let log = site.path().join("serve.log");
        let mut child = site
            .command(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start feedpost serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = match line.trim().strip_prefix("listening on ") {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "feedpost serve did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Server { child, base, log }
    }

    /// `url` (a link from a message, on `http://localhost/`) on this server.
    pub fn local(&self, url: &str) -> String {
        format!(
            "{}/{}",
            self.base,
            url.trim_start_matches("http://localhost/")
        )
    }

    /// Stops the server with SIGTERM and waits for it; returns its exit code and its log.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = self.child.wait().unwrap().code();
        (code, std::fs::read_to_string(&self.log).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("an HTTP answer");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Answer {
        status: response.status().as_u16(),
        content_type,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

/// `GET url`.
pub fn get(url: &str) -> Answer {
    answer(agent().get(url).call())
}

/// `POST url` with a form-encoded body.
pub fn post_form(url: &str, fields: &[(&str, &str)]) -> Answer {
    answer(agent().post(url).send_form(fields.iter().copied()))
}

/// The subscriber row of `address` in the site's ledger: (state, topics).
pub fn subscriber(site: &Site, address: &str) -> Option<(String, Vec<String>)> {
    let store = SqliteStore::open(&site.ledger()).unwrap();
    block_on(store.subscriber(address))
        .unwrap()
        .map(|s| (s.state.as_str().to_string(), s.topics))
}

/// The confirmation link in a received message's plain-text part.
pub fn confirm_link(message: &[u8]) -> String {
    let parsed = MessageParser::default().parse(message).unwrap();
    let text = parsed.body_text(0).unwrap();
    text.split_whitespace()
        .find(|w| w.starts_with("http://localhost/confirm?token="))
        .unwrap_or_else(|| panic!("no confirmation link in:\n{text}"))
        .to_string()
}

fn secret() -> Secret {
    Secret::new(SECRET.as_bytes().to_vec()).unwrap()
}

#[test]
fn subscribe_confirm_and_one_click_unsubscribe_over_http() {
    let smtp = SmtpServer::start(Faults::default());
    let site = site(Some(&smtp), "");
    let server = Server::start(&site);

    let form = get(&format!("{}/subscribe", server.base));
    assert_eq!(
        (form.status, form.content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    for topic in ["MOSN", "Seata", "SOFA Weekly"] {
        assert!(
            form.body.contains(&format!("value=\"{topic}\"")),
            "{}",
            form.body
        );
    }
    assert!(
        !form.body.contains("value=\"mosn\""),
        "one topic per spelling"
    );

    let answer = post_form(
        &format!("{}/subscribe", server.base),
        &[
            ("email", "Reader@Example.org"),
            ("name", "读者"),
            ("topics", "MOSN"),
            ("topics", "Seata"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("请查收邮件"), "{}", answer.body);
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap().0,
        "pending"
    );

    assert!(
        smtp.wait_for(1, Duration::from_secs(20)),
        "no confirmation email"
    );
    let received = smtp.received();
    assert_eq!(received[0].rcpt_to, ["Reader@Example.org"]);
    assert_eq!(received[0].mail_from, "weekly@example.org");
    let link = confirm_link(&received[0].data);

    let confirmed = get(&server.local(&link));
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert!(confirmed.body.contains("订阅成功"));
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap(),
        (
            "confirmed".to_string(),
            vec!["MOSN".to_string(), "Seata".to_string()]
        )
    );

    // The unsubscribe link as publish will put it in List-Unsubscribe.
    let public = url::Url::parse("http://localhost/").unwrap();
    let unsubscribe = token::unsubscribe_url(&public, &secret(), "Reader@Example.org");
    let page = get(&server.local(unsubscribe.as_str()));
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("name=\"List-Unsubscribe\" value=\"One-Click\""));
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap().0,
        "confirmed",
        "GET changes nothing"
    );

    let done = post_form(
        &server.local(unsubscribe.as_str()),
        &[("List-Unsubscribe", "One-Click")],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap().0,
        "unsubscribed"
    );

    // The old confirmation link does not bring the reader back.
    assert_eq!(get(&server.local(&link)).status, 410);
    assert_eq!(
        subscriber(&site, "reader@example.org").unwrap().0,
        "unsubscribed"
    );

    let (code, log) = server.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn forged_expired_and_misused_tokens_are_4xx_and_get_unsubscribes_nobody() {
    let site = site(None, "");
    let server = Server::start(&site);
    let other = Secret::new(vec![b'z'; 40]).unwrap();
    let soon = Utc::now() + chrono::Duration::hours(1);
    let cases = [
        (
            format!(
                "confirm?token={}",
                token::confirm_token(&other, "a@x.org", soon)
            ),
            400,
        ),
        (
            format!(
                "confirm?token={}",
                token::confirm_token(
                    &secret(),
                    "a@x.org",
                    Utc::now() - chrono::Duration::minutes(1)
                )
            ),
            410,
        ),
        (
            format!(
                "confirm?token={}",
                token::unsubscribe_token(&secret(), "a@x.org")
            ),
            400,
        ),
        ("confirm?token=AAAA".to_string(), 400),
        ("confirm".to_string(), 400),
        (
            format!(
                "unsubscribe?token={}",
                token::unsubscribe_token(&other, "a@x.org")
            ),
            400,
        ),
        (
            format!(
                "unsubscribe?token={}",
                token::confirm_token(&secret(), "a@x.org", soon)
            ),
            400,
        ),
    ];
    for (path, status) in &cases {
        let url = format!("{}/{path}", server.base);
        let a = get(&url);
        assert_eq!(a.status, *status, "GET {path}: {}", a.body);
        assert_eq!(a.content_type, "text/html; charset=utf-8");
        if path.starts_with("unsubscribe") {
            let a = post_form(&url, &[("List-Unsubscribe", "One-Click")]);
            assert_eq!(a.status, *status, "POST {path}");
        }
    }
    // A genuine unsubscribe link: GET shows the page and unsubscribes nobody; a POST without
    // the one-click field neither.
    let genuine = format!(
        "{}/unsubscribe?token={}",
        server.base,
        token::unsubscribe_token(&secret(), "file-reader@x.org")
    );
    assert_eq!(get(&genuine).status, 200);
    assert_eq!(post_form(&genuine, &[("confirm", "yes")]).status, 400);
    assert_eq!(subscriber(&site, "file-reader@x.org"), None);
    // Malformed and oversized forms.
    let subscribe = format!("{}/subscribe", server.base);
    assert_eq!(
        post_form(&subscribe, &[("email", "no-at-sign")]).status,
        400
    );
    assert_eq!(post_form(&subscribe, &[("name", "x")]).status, 400);
    let big = "x".repeat(64 * 1024);
    assert_eq!(
        post_form(&subscribe, &[("email", "a@x.org"), ("name", &big)]).status,
        413
    );
    let json = answer(
        agent()
            .post(&subscribe)
            .header("content-type", "application/json")
            .send("{\"email\":\"a@x.org\"}"),
    );
    assert_eq!(json.status, 415);
    assert_eq!(get(&format!("{}/no-such-page", server.base)).status, 404);
    let (code, log) = server.stop();
    assert_eq!(code, Some(0));
    assert!(
        !log.contains("ERROR"),
        "no client mistake is logged as our error:\n{log}"
    );
}

#[test]
fn serve_refuses_to_start_without_a_secret_or_a_serve_table() {
    let site = site(None, "").env("FEEDPOST_SECRET", "");
    let out = site.run(&["serve"]).failure();
    out.stderr_contains("FEEDPOST_SECRET is not set")
        .stderr_contains("openssl rand -base64 48");
    let site = site.env("FEEDPOST_SECRET", "too-short");
    site.run(&["serve"])
        .failure()
        .stderr_contains("FEEDPOST_SECRET is 9 bytes long; at least 32 are needed");
    let no_table = Site::new().env("FEEDPOST_SECRET", SECRET);
    no_table
        .run(&["serve"])
        .failure()
        .stderr_contains("needs a [serve] table");
    let plain = Site::new().mail_config("[serve]\npublic_url = \"http://news.example.org/\"");
    plain
        .run(&["serve"])
        .failure()
        .stderr_contains("feedpost.toml`, line 12")
        .stderr_contains("`serve.public_url` must be https");
}

#[test]
fn a_flood_from_one_client_is_answered_429() {
    let site = site(None, "client_requests_per_minute = 5");
    let server = Server::start(&site);
    let url = format!("{}/subscribe", server.base);
    let statuses: Vec<u16> = (0..8).map(|_| get(&url).status).collect();
    assert_eq!(statuses[..5], [200; 5]);
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    let limited = get(&url);
    assert!(limited.body.contains("请求过于频繁"));
    assert_eq!(get(&format!("{}/healthz", server.base)).body, "ok\n");
}

#[test]
fn the_feeds_folder_is_served_with_feed_media_types() {
    let site = site(None, "");
    site.run(&["build"]).success();
    let server = Server::start(&site);
    for (path, media_type) in [
        ("rss.xml", "application/rss+xml"),
        ("atom.xml", "application/atom+xml"),
        ("feed.json", "application/feed+json"),
        ("", "text/html; charset=utf-8"),
        ("issues/2024-03-08-weekly/", "text/html; charset=utf-8"),
        ("archive.css", "text/css; charset=utf-8"),
        ("tags/mosn/rss.xml", "application/rss+xml"),
    ] {
        let a = get(&format!("{}/{path}", server.base));
        assert_eq!(
            (a.status, a.content_type.as_str()),
            (200, media_type),
            "/{path}"
        );
    }
}

#[test]
fn secrets_never_reach_the_logs_the_pages_the_mail_the_commands_or_the_files() {
    const PASSWORD: &str = "smtp-password-never-shown-7f3a";
    let smtp = SmtpServer::start(Faults::default());
    // The Ed25519 key of the DKIM tests (RSA signs the same way, only slower).
    let key = super::dkim::keys()[1].1.clone();
    let site = site(Some(&smtp), "")
        .env("FEEDPOST_SMTP_PASSWORD", PASSWORD)
        .env("FEEDPOST_LOG", "trace")
        .smtp(smtp.port(), "username = \"weekly\"")
        // After `[serve]`, like it (the helper writes no `[dkim]` table of its own).
        .mail_config(
            "[dkim]\ndomain = \"example.org\"\nselector = \"s1\"\nprivate_key = \"dkim.pem\"",
        );
    site.write("dkim.pem", &key);
    let server = Server::start(&site);
    let mut pages = String::new();
    let subscribe = format!("{}/subscribe", server.base);
    pages += &post_form(&subscribe, &[("email", "a@x.org")]).body;
    assert!(smtp.wait_for(1, Duration::from_secs(20)));
    let message = smtp.received()[0].data.clone();
    let signature = crate::support::smtp_server::header(&message, "DKIM-Signature")
        .expect("the confirmation email is DKIM-signed");
    assert!(
        signature.contains("d=example.org") && signature.contains("s=s1"),
        "{signature}"
    );
    pages += &get(&server.local(&confirm_link(&message))).body;
    for path in ["confirm?token=AAAA", "unsubscribe?token=AAAA", "subscribe"] {
        pages += &get(&format!("{}/{path}", server.base)).body;
    }
    let (code, log) = server.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("TRACE") || log.contains("DEBUG") || log.contains("INFO"));

    // The editor's commands, with their logs at trace: what they print, errors included.
    site.write(
        "in.csv",
        "email,name,topics\nb@x.org,B,MOSN\nnot-an-address,,\n",
    );
    let csv = site.path().join("in.csv");
    let csv = csv.to_str().unwrap();
    let commands: [&[&str]; 12] = [
        &["subscribers", "add", "c@x.org", "--name", "C"],
        &["subscribers", "import", csv],
        &["subscribers", "import", "/nonexistent/in.csv"],
        &["subscribers", "list"],
        &["subscribers", "list", "--json"],
        &["subscribers", "export"],
        &["subscribers", "remove", "c@x.org"],
        &["subscribers", "remove", "nobody@x.org"],
        &["subscribers", "add", "not-an-address"],
        &["publish"],
        &["status"],
        &["status", "--json"],
    ];
    let mut outputs = String::new();
    for args in commands {
        let out = site.cmd(args).run();
        outputs += &format!("{args:?}\n{}\n{}\n", out.stdout, out.stderr);
    }
    assert!(
        outputs.contains("not-an-address") && outputs.contains("c@x.org"),
        "{outputs}"
    );

    let key_lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut haystacks = vec![
        ("the log".to_string(), log.into_bytes()),
        ("the pages".to_string(), pages.into_bytes()),
        ("the mail".to_string(), message),
        ("the commands' output".to_string(), outputs.into_bytes()),
    ];
    for entry in walk(site.path()) {
        if entry.file_name().is_some_and(|n| n == "dkim.pem") {
            continue;
        }
        haystacks.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    for (what, bytes) in &haystacks {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(SECRET), "FEEDPOST_SECRET in {what}");
        assert!(!text.contains(PASSWORD), "the SMTP password in {what}");
        for line in &key_lines {
            assert!(!text.contains(line), "the DKIM key in {what}");
        }
    }
    assert!(
        haystacks
            .iter()
            .any(|(what, _)| what.ends_with("feedpost.sqlite")),
        "the ledger was searched"
    );
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_one_click_unsubscribe_is_honoured_by_the_next_publish_until_the_reader_confirms_again() {
    let smtp = SmtpServer::start(Faults::default());
    let site = site(Some(&smtp), "").subscribers(
        "[[subscribers]]\nemail = \"reader@example.org\"\n\n[[subscribers]]\nemail = \"other@example.org\"\n",
    );
    let publish = |name: &str| {
        let file = site.path().join("issues").join(name);
        site.run(&["publish", file.to_str().unwrap()]).success()
    };
    publish("2024-03-01-weekly.md");
    assert_eq!(smtp.received_count(), 2);

    let server = Server::start(&site);
    let public = url::Url::parse("http://localhost/").unwrap();
    let link = token::unsubscribe_url(&public, &secret(), "reader@example.org");
    let done = post_form(
        &server.local(link.as_str()),
        &[("List-Unsubscribe", "One-Click")],
    );
    assert_eq!(done.status, 200);
    site.run(&["subscribers", "suppressed"])
        .success()
        .stdout_contains("reader@example.org");

    // The next issue skips the reader who left, though the subscriber file still lists them.
    publish("2024-03-08-weekly.md");
    let to: Vec<String> = smtp.received()[2..]
        .iter()
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    assert_eq!(to, ["other@example.org"]);

    // Subscribing again takes the confirmation; then the reader is back.
    post_form(
        &format!("{}/subscribe", server.base),
        &[("email", "reader@example.org")],
    );
    assert!(smtp.wait_for(4, Duration::from_secs(20)));
    let confirmation = smtp.received()[3].data.clone();
    assert_eq!(get(&server.local(&confirm_link(&confirmation))).status, 200);
    let out = site.run(&["subscribers", "suppressed"]).success();
    assert!(!out.stdout.contains("reader@example.org"), "{}", out.stdout);
    site.write(
        "issues/2024-03-15-weekly.md",
        &issue(
            "SOFA Weekly | 三",
            "2024-03-15T15:00:00+08:00",
            &["MOSN"],
            "Three.\n",
        ),
    );
    publish("2024-03-15-weekly.md");
    let mut to: Vec<String> = smtp.received()[4..]
        .iter()
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    to.sort();
    assert_eq!(to, ["other@example.org", "reader@example.org"]);
}
