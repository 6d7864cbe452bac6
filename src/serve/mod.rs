//! `feedpost serve`: the HTTP side of the newsletter — readers join (double opt-in) and leave
//! (RFC 8058 one-click unsubscribe) by themselves, and the feeds folder is served beside.
//!
//! Beside the publishing pipeline, not in it: the server records requests, confirmations and
//! unsubscribes through the [`Subscriptions`] seam (the store), which `publish` reads when it
//! decides who receives an issue, and sends confirmation emails through a
//! [`ConfirmationMailer`] (the transport). Links carry signed tokens
//! ([`crate::subscribers::token`]), so checking one needs no database.
//!
//! ```text
//! client ─► timeout ─► catch panic ─► error pages ─► security headers ─┬─► /subscribe, /confirm, /unsubscribe
//!                                                                      │      (flood limit per client) ─► Subscriptions
//!                                                                      │                                └► mail queue ─► ConfirmationMailer
//!                                                                      ├─► /healthz, /archive.css, /subscribe.css
//!                                                                      └─► the feeds folder (ServeDir)
//! ```
//!
//! The modules: `routes` (handlers), `pages` (HTML answers and `Problem`s),
//! `client` (who is asking, flood limit), `files` (the feeds folder), `backend` (the seam),
//! `mailer` (the confirmation queue).

mod backend;
mod client;
mod files;
pub mod local;
mod mailer;
mod pages;
mod routes;
mod topics;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::header::{
    ALLOW, CONTENT_TYPE, REFERRER_POLICY, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::{Quota, RateLimiter};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;
use url::Url;

pub use backend::{
    ConfirmationMail, ConfirmationMailer, Confirmed, Request as SubscriptionRequest, Requested,
    StoreSubscriptions, Subscriptions, Unsubscribed,
};
pub use mailer::TransportMailer;
pub use topics::topics;

use crate::config::{Config, Serve};
use crate::subscribers::token::Secret;
use client::{ClientLimit, Limiter};
use pages::{Pages, Problem};

/// Confirmation emails waiting to be sent, at most: a full queue answers 503.
const MAIL_QUEUE: usize = 1_000;

/// Confirmation emails sent at once.
const MAIL_CONCURRENCY: usize = 4;

/// Confirmation emails one address may be sent: a burst of this many, then one per
/// [`MAIL_REFILL`]. Stops a stranger from filling a mailbox through the form.
const MAIL_BURST: u32 = 2;

/// See [`MAIL_BURST`].
const MAIL_REFILL: Duration = Duration::from_secs(10 * 60);

/// The longest a request may take, headers to last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often idle clients and addresses are dropped from the limiters.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// How long a stopping server waits for queued confirmation emails.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
pub(crate) struct App<S> {
    subs: Arc<S>,
    secret: Secret,
    public_url: Url,
    valid_hours: u32,
    pages: Arc<Pages>,
    mail: mpsc::Sender<ConfirmationMail>,
    address_limiter: Limiter<String>,
}

/// What the server is made of: the site, its `[serve]` table, the token secret, the topics the
/// form offers, the backend and the mail queue.
pub struct Server<S> {
    router: Router,
    limits: Arc<ClientLimit>,
    app: Arc<App<S>>,
}

impl<S: Subscriptions> Server<S> {
    /// A server for `config`'s site, whose `[serve]` table is `serve`, signing links with
    /// `secret`, offering `topics` (see [`topics()`]), recording through `subs`, and handing
    /// confirmation emails to `mail` (see [`spawn_mailer`]). Serves `config.site.feeds`.
    pub fn new(
        config: &Config,
        serve: &Serve,
        secret: Secret,
        topics: Vec<String>,
        subs: S,
        mail: mpsc::Sender<ConfirmationMail>,
    ) -> Server<S> {
        let pages = Arc::new(Pages::new(config, topics, serve.confirm_expiry_hours));
        let limits = Arc::new(ClientLimit::new(
            serve.client_requests_per_minute,
            serve.trusted_proxies.clone(),
            Arc::clone(&pages),
        ));
        let burst = NonZeroU32::new(MAIL_BURST).expect("not zero");
        let quota = Quota::with_period(MAIL_REFILL)
            .expect("not zero")
            .allow_burst(burst);
        let app = Arc::new(App {
            subs: Arc::new(subs),
            secret,
            public_url: serve.public_url.clone(),
            valid_hours: serve.confirm_expiry_hours,
            pages: Arc::clone(&pages),
            mail,
            address_limiter: RateLimiter::dashmap(quota),
        });
        let router = router(
            Arc::clone(&app),
            Arc::clone(&limits),
            &config.site.feeds,
            pages,
        );
        Server {
            router,
            limits,
            app,
        }
    }

    /// The routes, for tests that call them without a socket (`tower::ServiceExt::oneshot`,
    /// with `MockConnectInfo` for the client address).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `listener` until `shutdown` resolves, then finishes the requests in flight.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let (limits, app) = (Arc::clone(&self.limits), Arc::clone(&self.app));
        let forget = tokio::spawn(async move {
            let mut every = tokio::time::interval(FORGET_EVERY);
            loop {
                every.tick().await;
                limits.forget_idle();
                app.address_limiter.retain_recent();
                app.address_limiter.shrink_to_fit();
            }
        });
        let result = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed");
        forget.abort();
        result
    }
}

/// Starts the confirmation mail queue: emails handed to the returned sender are sent by
/// `mailer`, `MAIL_CONCURRENCY` at a time, off the request path. The task ends when every
/// sender is dropped and the queue is empty; a stopping server waits [`DRAIN_TIMEOUT`] for it.
pub fn spawn_mailer<M: ConfirmationMailer>(
    mailer: M,
) -> (mpsc::Sender<ConfirmationMail>, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(MAIL_QUEUE);
    let task = tokio::spawn(mailer::drain(Arc::new(mailer), receiver, MAIL_CONCURRENCY));
    (sender, task)
}

fn router<S: Subscriptions>(
    app: Arc<App<S>>,
    limits: Arc<ClientLimit>,
    feeds: &std::path::Path,
    pages: Arc<Pages>,
) -> Router {
    let problem = |problem: Problem| {
        let pages = Arc::clone(&pages);
        move || async move { pages.problem(&problem) }
    };
    let forms = Router::new()
        .route(
            "/subscribe",
            get(routes::subscribe_form::<S>).post(routes::subscribe::<S>),
        )
        .route("/confirm", get(routes::confirm::<S>))
        .route(
            "/unsubscribe",
            get(routes::unsubscribe_page::<S>).post(routes::unsubscribe::<S>),
        )
        .route_layer(middleware::from_fn_with_state(limits, client::limit))
        .with_state(app);
    let files = ServeDir::new(feeds)
        .call_fallback_on_method_not_allowed(true)
        .fallback(tower::service_fn({
            let pages = Arc::clone(&pages);
            move |request: Request| {
                let pages = Arc::clone(&pages);
                async move {
                    let problem = match *request.method() {
                        Method::GET | Method::HEAD => Problem::NotFound,
                        _ => Problem::MethodNotAllowed,
                    };
                    Ok::<_, Infallible>(pages.problem(&problem))
                }
            }
        }));
    Router::new()
        .merge(forms)
        .route("/healthz", get(routes::healthz))
        .route(
            &format!("/{}", crate::archive::CSS_FILE),
            get(|| async { css(crate::archive::CSS) }),
        )
        .route(
            &format!("/{}", pages::CSS_FILE),
            get(|| async { css(pages::CSS) }),
        )
        .fallback_service(
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn(files::label))
                .service(files),
        )
        .method_not_allowed_fallback(problem(Problem::MethodNotAllowed))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(pages, error_pages))
        .layer(middleware::from_fn(security_headers))
}

/// A stylesheet response.
fn css(text: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "max-age=3600"),
        ],
        text,
    )
        .into_response()
}

/// Middleware: the headers every answer carries — `X-Content-Type-Options: nosniff`,
/// `Referrer-Policy: no-referrer` (so a page opened from a link with a token does not pass the
/// token on), `X-Frame-Options: DENY` — and the pages' Content-Security-Policy where a route did
/// not set one.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(axum::http::header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(pages::PAGE_POLICY));
    response
}

/// Middleware: an error answer that is not one of our pages (a timeout, a caught panic, an
/// extractor's rejection) is replaced by the page of its status, keeping its `Allow` and
/// `Retry-After`, so every error a client sees is a page.
async fn error_pages(State(pages): State<Arc<Pages>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let ours = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if ours || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if status.is_server_error() {
        tracing::error!(%status, "answered with the error page");
    }
    let mut page = pages.problem(&Problem::for_status(status));
    *page.status_mut() = status;
    for name in [ALLOW, RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            page.headers_mut().insert(name, value.clone());
        }
    }
    page
}

#[cfg(test)]
mod tests;
