//! The router without a socket: requests through `tower::ServiceExt::oneshot` against the
//! in-memory backend, confirmation emails read from the queue's receiving end.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use chrono::Utc;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::backend::memory::MemorySubscriptions;
use super::*;
use crate::subscribers::token::{self, Purpose};

const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef0123456789";

fn secret() -> Secret {
    Secret::new(SECRET.to_vec()).unwrap()
}

/// A server over `subs` for an English site with topics `MOSN` and `Rust`, serving `feeds`,
/// with `per_minute` requests a minute per client; the receiver gets its confirmation emails.
struct Harness<S: Subscriptions> {
    router: Router,
    subs: Arc<S>,
    mail: mpsc::Receiver<ConfirmationMail>,
    _feeds: tempfile::TempDir,
}

/// Shares one backend between the server and the test.
struct Shared<S>(Arc<S>);

impl<S: Subscriptions> Subscriptions for Shared<S> {
    async fn request(&self, r: &SubscriptionRequest, now: DateTime) -> anyhow::Result<Requested> {
        self.0.request(r, now).await
    }
    async fn confirm(&self, a: &str, now: DateTime) -> anyhow::Result<Confirmed> {
        self.0.confirm(a, now).await
    }
    async fn unsubscribe(&self, a: &str, now: DateTime) -> anyhow::Result<Unsubscribed> {
        self.0.unsubscribe(a, now).await
    }
}

type DateTime = chrono::DateTime<Utc>;

fn harness_with<S: Subscriptions>(subs: S, per_minute: u32) -> Harness<S> {
    let feeds = tempfile::tempdir().unwrap();
    std::fs::write(feeds.path().join("rss.xml"), "<rss/>").unwrap();
    std::fs::create_dir_all(feeds.path().join("issues/a")).unwrap();
    std::fs::write(feeds.path().join("issues/a/index.html"), "<p>a</p>").unwrap();
    let text = format!(
        "[site]\ntitle = \"Weekly\"\nbase_url = \"https://x.org/\"\nfeeds = \"{}\"\n[mail]\nfrom = \"a@x.org\"\n[serve]\npublic_url = \"https://news.x.org/list/\"\nclient_requests_per_minute = {per_minute}\n",
        feeds.path().display()
    );
    let config = Config::parse(&text, std::path::Path::new("/")).unwrap();
    let (sender, mail) = mpsc::channel(16);
    let subs = Arc::new(subs);
    let server = Server::new(
        &config,
        config.serve.as_ref().unwrap(),
        secret(),
        vec!["MOSN".into(), "Rust".into()],
        Shared(Arc::clone(&subs)),
        sender,
    );
    let router = server
        .router()
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 5000))));
    Harness {
        router,
        subs,
        mail,
        _feeds: feeds,
    }
}

fn harness() -> Harness<MemorySubscriptions> {
    harness_with(MemorySubscriptions::default(), 0)
}

/// A response's status, headers and body as text.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl<S: Subscriptions> Harness<S> {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, uri: &str, content_type: &str, body: impl Into<Body>) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, content_type)
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    async fn subscribe(&self, form: &str) -> Answer {
        self.post(
            "/subscribe",
            "application/x-www-form-urlencoded",
            form.to_string(),
        )
        .await
    }

    /// The confirmation email queued, if one is.
    fn queued(&mut self) -> Option<ConfirmationMail> {
        self.mail.try_recv().ok()
    }
}

fn unsubscribe_uri(address: &str) -> String {
    format!(
        "/unsubscribe?token={}",
        token::unsubscribe_token(&secret(), address)
    )
}

#[tokio::test]
async fn the_form_offers_the_topics_with_the_security_headers() {
    let h = harness();
    let a = h.get("/subscribe").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(a
        .body
        .contains("<form class=\"subscribe\" method=\"post\" action=\"subscribe\">"));
    assert!(a.body.contains("value=\"MOSN\""), "{}", a.body);
    assert!(a.body.contains("<label for=\"email\">"));
    let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    assert!(!a.body.contains("<script"));
}

#[tokio::test]
async fn a_request_is_recorded_and_a_confirmation_queued() {
    let mut h = harness();
    let a = h
        .subscribe("email=Reader%40Example.org&name=R&topics=rust&topics=MOSN")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("Check your inbox"));
    let entry = h.subs.get("reader@example.org").unwrap();
    assert_eq!(entry.state, "pending");
    let request = entry.pending.unwrap();
    assert_eq!(request.name.as_deref(), Some("R"));
    assert_eq!(request.topics, ["Rust", "MOSN"]);
    let mail = h.queued().expect("a confirmation email");
    assert_eq!(mail.address, "Reader@Example.org");
    assert_eq!(mail.valid_hours, 48);
    let url = mail.confirm_url;
    assert!(url
        .as_str()
        .starts_with("https://news.x.org/list/confirm?token="));
    let token = url.query_pairs().next().unwrap().1.into_owned();
    let v = token::verify(&secret(), &token, Purpose::Confirm, Utc::now()).unwrap();
    assert_eq!(v.address, "reader@example.org");
    let left = v.expires.unwrap() - Utc::now();
    assert!(left > chrono::Duration::hours(47) && left <= chrono::Duration::hours(48));
}

#[tokio::test]
async fn the_answer_is_the_same_whoever_the_address_is() {
    let mut h = harness();
    let form = "email=a%40x.org";
    let new = h.subscribe(form).await;
    let pending = h.subscribe(form).await;
    h.subs.set_state("a@x.org", "confirmed");
    let confirmed = h.subscribe(form).await;
    h.subs.set_state("a@x.org", "bounced");
    let bounced = h.subscribe(form).await;
    for a in [&pending, &confirmed, &bounced] {
        assert_eq!((a.status, &a.body), (new.status, &new.body));
    }
    // Two confirmations (the address's burst), none for the third request or the bounced one.
    assert!(h.queued().is_some() && h.queued().is_some());
    assert!(h.queued().is_none());
}

#[tokio::test]
async fn form_mistakes_are_400_pages_with_the_form_filled_in() {
    let mut h = harness();
    for (form, shows) in [
        ("email=not-an-address&name=Ann", "Enter an email address"),
        ("email=a%40x.org&topics=Java", "Choose topics from the list"),
        ("email=a%40x.org&name=a%0Ab", "at most 100 characters"),
    ] {
        let a = h.subscribe(form).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{form}");
        assert!(a.body.contains(shows), "{form}: {}", a.body);
        assert!(a.body.contains("role=\"alert\""));
        assert!(a.body.contains("<form"), "the form is shown again");
    }
    let a = h.subscribe("email=not-an-address&name=Ann").await;
    assert!(a.body.contains("value=\"not-an-address\"") && a.body.contains("value=\"Ann\""));
    assert!(a.body.contains("aria-invalid=\"true\""));
    let a = h.subscribe("name=x").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = h.post("/subscribe", "application/json", "{}").await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("email=a%40x.org&name={}", "x".repeat(routes::MAX_BODY));
    let a = h.subscribe(&big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body.contains("Too much data"));
    assert!(
        h.subs.entries.lock().unwrap().is_empty(),
        "nothing recorded"
    );
    assert!(h.queued().is_none());
}

#[tokio::test]
async fn a_confirmation_link_confirms_once_and_bad_ones_are_4xx() {
    let mut h = harness();
    h.subscribe("email=a%40x.org&topics=Rust").await;
    let url = h.queued().unwrap().confirm_url;
    let uri = format!("/confirm?{}", url.query().unwrap());
    let a = h.get(&uri).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("You are subscribed"));
    let entry = h.subs.get("a@x.org").unwrap();
    assert_eq!(
        (entry.state, entry.topics),
        ("confirmed", vec!["Rust".to_string()])
    );
    assert_eq!(h.get(&uri).await.status, StatusCode::OK, "a second click");

    let expired = token::confirm_token(
        &secret(),
        "a@x.org",
        Utc::now() - chrono::Duration::seconds(1),
    );
    let a = h.get(&format!("/confirm?token={expired}")).await;
    assert_eq!(a.status, StatusCode::GONE);
    assert!(a.body.contains("This link has expired"));
    let other = Secret::new(vec![7; 32]).unwrap();
    let forged = token::confirm_token(&other, "a@x.org", Utc::now() + chrono::Duration::hours(1));
    for uri in [
        format!("/confirm?token={forged}"),
        format!(
            "/confirm?token={}",
            token::unsubscribe_token(&secret(), "a@x.org")
        ),
        "/confirm".to_string(),
        "/confirm?token=%FF%FE".to_string(),
        "/confirm?token=".to_string(),
    ] {
        let a = h.get(&uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(a.body.contains("This link does not work"), "{uri}");
    }
    // A genuine link whose request is gone (unsubscribed since): 410, still unsubscribed.
    h.subs.unsubscribe("b@x.org", Utc::now()).await.unwrap();
    let lapsed = token::confirm_token(
        &secret(),
        "b@x.org",
        Utc::now() + chrono::Duration::hours(1),
    );
    let a = h.get(&format!("/confirm?token={lapsed}")).await;
    assert_eq!(a.status, StatusCode::GONE);
    assert_eq!(h.subs.get("b@x.org").unwrap().state, "unsubscribed");
}

#[tokio::test]
async fn get_on_an_unsubscribe_link_shows_a_button_and_changes_nothing() {
    let h = harness();
    h.subs.set_state("a@x.org", "confirmed");
    let uri = unsubscribe_uri("a@x.org");
    let a = h.get(&uri).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body.contains("Stop sending Weekly to a@x.org?"),
        "{}",
        a.body
    );
    let action = format!("action=\"{}\"", &uri[1..]);
    assert!(a.body.contains(&action), "{}", a.body);
    assert!(a
        .body
        .contains("name=\"List-Unsubscribe\" value=\"One-Click\""));
    let head = h
        .send(Request::head(&uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(h.subs.get("a@x.org").unwrap().state, "confirmed");
}

#[tokio::test]
async fn one_click_post_unsubscribes_in_either_form_encoding() {
    let h = harness();
    for address in ["a@x.org", "b@x.org"] {
        h.subs.set_state(address, "confirmed");
    }
    let a = h
        .post(
            &unsubscribe_uri("A@X.org"),
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("You are unsubscribed"));
    assert_eq!(h.subs.get("a@x.org").unwrap().state, "unsubscribed");
    // RFC 8058's own example posts multipart/form-data.
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
    let a = h
        .post(
            &unsubscribe_uri("b@x.org"),
            "multipart/form-data; boundary=XyZ",
            body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(h.subs.get("b@x.org").unwrap().state, "unsubscribed");
    // Again: still 200.
    let again = h
        .post(
            &unsubscribe_uri("b@x.org"),
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn a_post_without_one_click_or_with_a_bad_token_unsubscribes_nobody() {
    let h = harness();
    h.subs.set_state("a@x.org", "confirmed");
    let uri = unsubscribe_uri("a@x.org");
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", ""),
        ("application/x-www-form-urlencoded", "List-Unsubscribe=Yes"),
        ("multipart/form-data; boundary=Q", "garbage"),
    ] {
        let a = h.post(&uri, content_type, body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let other = Secret::new(vec![7; 32]).unwrap();
    let forged = format!(
        "/unsubscribe?token={}",
        token::unsubscribe_token(&other, "a@x.org")
    );
    let expired_confirm = format!(
        "/unsubscribe?token={}",
        token::confirm_token(
            &secret(),
            "a@x.org",
            Utc::now() + chrono::Duration::hours(1)
        )
    );
    for uri in [forged.as_str(), expired_confirm.as_str(), "/unsubscribe"] {
        let a = h
            .post(
                uri,
                "application/x-www-form-urlencoded",
                "List-Unsubscribe=One-Click",
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(h.get(uri).await.status, StatusCode::BAD_REQUEST, "{uri}");
    }
    assert_eq!(h.subs.get("a@x.org").unwrap().state, "confirmed");
}

#[tokio::test]
async fn a_flood_from_one_client_gets_429_with_retry_after() {
    let h = harness_with(MemorySubscriptions::default(), 3);
    for _ in 0..3 {
        assert_eq!(h.get("/subscribe").await.status, StatusCode::OK);
    }
    let a = h.get("/subscribe").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(a.body.contains("Too many requests"));
    // The feeds and the health check are not limited.
    assert_eq!(h.get("/rss.xml").await.status, StatusCode::OK);
    assert_eq!(h.get("/healthz").await.body, "ok\n");
}

#[tokio::test]
async fn the_feeds_folder_is_served_with_feed_media_types_and_404_pages() {
    let h = harness();
    let a = h.get("/rss.xml").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/rss+xml");
    assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(a.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let a = h.get("/issues/a/").await;
    assert_eq!(
        (a.status, a.headers[header::CONTENT_TYPE].to_str().unwrap()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    let a = h.get("/nothing-here.xml").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("Page not found"));
    let a = h.get("/../../etc/passwd").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = h
        .send(Request::post("/rss.xml").body(Body::empty()).unwrap())
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = h
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/subscribe")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(a.body.contains("Not allowed"));
    let a = h.get("/archive.css").await;
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(a.body, crate::archive::CSS);
    assert_eq!(h.get("/subscribe.css").await.status, StatusCode::OK);
}

/// A store that cannot be written, or that panics.
struct Broken(bool);

impl Subscriptions for Broken {
    async fn request(&self, _: &SubscriptionRequest, _: DateTime) -> anyhow::Result<Requested> {
        if self.0 {
            panic!("the store panicked");
        }
        anyhow::bail!("disk I/O error at /secret/path/feedpost.sqlite")
    }
    async fn confirm(&self, _: &str, _: DateTime) -> anyhow::Result<Confirmed> {
        anyhow::bail!("disk I/O error at /secret/path/feedpost.sqlite")
    }
    async fn unsubscribe(&self, _: &str, _: DateTime) -> anyhow::Result<Unsubscribed> {
        anyhow::bail!("disk I/O error at /secret/path/feedpost.sqlite")
    }
}

#[tokio::test]
async fn a_store_error_or_panic_is_a_500_page_that_reveals_nothing() {
    for panics in [false, true] {
        let mut h = harness_with(Broken(panics), 0);
        let a = h.subscribe("email=a%40x.org").await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(a.body.contains("Something went wrong on our side"));
        assert!(
            !a.body.contains("secret") && !a.body.contains("sqlite") && !a.body.contains("panic")
        );
        assert!(h.queued().is_none());
    }
    let h = harness_with(Broken(false), 0);
    let a = h
        .post(
            &unsubscribe_uri("a@x.org"),
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_full_mail_queue_is_a_503_and_records_nothing() {
    let mut h = harness();
    // The harness queue holds 16: fill it with distinct addresses.
    for i in 0..16 {
        let a = h.subscribe(&format!("email=r{i}%40x.org")).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = h.subscribe("email=late%40x.org").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.subs.get("late@x.org").is_none());
    assert!(h.queued().is_some());
}
