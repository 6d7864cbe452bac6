//! `feedpost serve --local`: the editor's preview. The site is built as it is on disk with
//! `base_url` at the local address (into a folder of its own: see `build`), served with its
//! feeds and each issue's email, and built again on every change to the issues, the config or
//! the subscriber list (`watch`), whereupon every open page reloads (`live`).
//!
//! ```text
//! files ─► watch (notify, debounced) ─► rebuild ─► snapshot + build id ─► /_feedpost/events ─► pages reload
//! browser ─► no-store, local headers ─► live script injected ─┬─► /_feedpost/ (issues), /_feedpost/email/<slug>
//!                                                             ├─► /subscribe, /confirm, /unsubscribe: off
//!                                                             └─► the local build (ServeDir, feed media types)
//! ```
//!
//! Nothing here writes outside the build cache, reads the ledger but to know which issues were
//! mailed, or needs `FEEDPOST_SECRET`: the public server's routes, secret and Content-Security
//! -Policy are not involved.

mod build;
mod live;
mod pages;
mod watch;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_http::services::ServeDir;
use tracing::{error, info, warn};
use url::Url;

pub use build::Mailed;
use build::Snapshot;
use live::Builds;

use crate::config::Config;
use crate::mail::IssueMail;
use crate::site::Site;

/// The port tried first when none is given (Zola's); when it is taken, any free one.
pub const DEFAULT_PORT: u16 = 1111;

/// The Content-Security-Policy of every local answer: the public files' policy (see
/// `serve::files`) plus what the preview needs — its script's event stream (`connect-src
/// 'self'`), inline styles on its own pages, and framing the email within its own page.
const LOCAL_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self' 'unsafe-inline' https: http:; img-src https: http: data:; \
     media-src https: http:; font-src https: http: data:; frame-src 'self'; \
     frame-ancestors 'self'; form-action 'self'; base-uri 'none'";

/// How `serve --local` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--port`: `None` tries [`DEFAULT_PORT`], then any free port.
    pub port: Option<u16>,
    /// `--hide-drafts`.
    pub hide_drafts: bool,
}

/// The running preview: what the handlers and the rebuilds share.
pub(crate) struct Preview {
    config_path: PathBuf,
    base: Url,
    hide_drafts: bool,
    mailed: Box<Mailed>,
    /// The config as last loaded successfully (not localised).
    real: RwLock<Arc<Config>>,
    snapshot: RwLock<Arc<Snapshot>>,
    builds: Builds,
}

impl Preview {
    /// The last build's snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn real(&self) -> Arc<Config> {
        Arc::clone(&self.real.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Loads the config again (keeping the last good one when it no longer loads, with the
    /// error among the snapshot's problems), builds, and announces the build.
    ///
    /// # Errors
    /// The build could not write its folder (bad issue files are problems, not errors).
    fn rebuild(&self) -> Result<Arc<Snapshot>> {
        let mut problems = Vec::new();
        match Config::from_file(&self.config_path) {
            Ok(config) => *self.real.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config),
            Err(e) => {
                let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
                problems.push(format!(
                    "{} (showing the last good config)",
                    causes.join(": ")
                ));
            }
        }
        let real = self.real();
        let now = crate::now()?.fixed_offset();
        let mut snapshot =
            match build::build(&real, &self.base, self.hide_drafts, &*self.mailed, now) {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    // Keep serving what was built last; say why nothing changed.
                    let mut last = (*self.snapshot()).clone();
                    last.errors = vec![format!("{e:#}")];
                    last
                }
            };
        problems.append(&mut snapshot.errors);
        snapshot.errors = problems;
        for problem in &snapshot.errors {
            warn!("{problem}");
        }
        let snapshot = Arc::new(snapshot);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&snapshot);
        self.builds.finished();
        Ok(snapshot)
    }

    /// The email of the issue `slug` as the first subscriber would get it (with their name), or
    /// `reader@example.org` when the list has nobody: headers, the HTML part, the text part.
    /// `None` when no good issue has that slug.
    ///
    /// # Errors
    /// The issue cannot be read or composed.
    fn email(&self, slug: &str) -> Result<Option<(pages::Email, String)>> {
        let snapshot = self.snapshot();
        let config = &snapshot.config;
        let mut site = Site::load(config)?;
        let Some(index) = site.listings().position(|l| l.slug == slug) else {
            return Ok(None);
        };
        let issue = site.issue(index)?.clone();
        let now = crate::now()?;
        let mail = IssueMail::compose(&issue, config, &crate::mail::placeholder_secret(), now)?;
        let (address, name) = crate::subscribers::first(&config.site.subscribers)
            .map(|s| (s.address, s.name))
            .unwrap_or_else(|| ("reader@example.org".into(), None));
        let sample = mail.sample(config, &address, name.as_deref())?;
        let to = match &name {
            Some(name) => format!("{name} <{address}>"),
            None => address.clone(),
        };
        Ok(Some((
            pages::Email {
                slug: slug.to_string(),
                subject: issue.title.clone(),
                from: config.mail.from.clone(),
                to,
                preheader: issue.summary.clone(),
                text: sample.text,
                size: sample.eml.len(),
            },
            sample.html,
        )))
    }
}

/// Runs the preview of the site whose config file is `config_path` (loaded as `config`): binds
/// the port, builds, prints `listening on http://127.0.0.1:PORT/` on stdout, watches and
/// rebuilds until `shutdown` resolves. `mailed` reads which issues the ledger has sent.
///
/// # Errors
/// The port cannot be bound, the first build fails (its folder cannot be written), or the
/// server fails.
pub async fn run(
    config: Config,
    config_path: &Path,
    options: Options,
    mailed: Box<Mailed>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = bind(options.port).await?;
    let address = listener.local_addr()?;
    let base = Url::parse(&format!("http://{address}/")).context("the local address")?;
    let scope = watch::Scope::of(&config, config_path);
    let output = build::output(&config.root);
    let preview = Arc::new(Preview {
        config_path: config_path.to_path_buf(),
        base: base.clone(),
        hide_drafts: options.hide_drafts,
        mailed,
        snapshot: RwLock::new(Arc::new(Snapshot {
            config: Arc::new(build::localize(&config, &base)),
            issues: Vec::new(),
            errors: Vec::new(),
        })),
        real: RwLock::new(Arc::new(config)),
        builds: Builds::new(),
    });
    let first = {
        let preview = Arc::clone(&preview);
        tokio::task::spawn_blocking(move || preview.rebuild()).await??
    };
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut watcher = watch::Watcher::start(scope, changed)?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {base}")?;
        out.flush()?;
    }
    let drafts = first.issues.iter().filter(|e| e.draft || e.future).count();
    let plural = crate::cmd::count;
    info!(
        "previewing {} ({} or dated later{}); the emails are at {base}_feedpost/; rebuilding when the issues, the config or the subscriber list change; Ctrl-C stops",
        plural(first.issues.len(), "issue", "issues"),
        plural(drafts, "draft", "drafts"),
        if options.hide_drafts { ", left out" } else { "" }
    );
    let rebuilds = {
        let preview = Arc::clone(&preview);
        let config_path = config_path.to_path_buf();
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                while changes.try_recv().is_ok() {}
                let work = Arc::clone(&preview);
                match tokio::task::spawn_blocking(move || work.rebuild()).await {
                    Ok(Ok(snapshot)) => {
                        info!(issues = snapshot.issues.len(), "rebuilt");
                        let scope = watch::Scope::of(&preview.real(), &config_path);
                        if &scope != watcher.scope() {
                            watcher.watch(scope);
                        }
                    }
                    Ok(Err(e)) => error!("rebuilding failed: {e:#}"),
                    Err(e) => error!("rebuilding failed: {e}"),
                }
            }
        })
    };
    let app = router(Arc::clone(&preview), &output);
    let stopping = Arc::clone(&preview);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.builds.stop();
        })
        .await
        .context("the HTTP server failed");
    rebuilds.abort();
    info!("stopped");
    result
}

/// Binds 127.0.0.1 at `port`, or at [`DEFAULT_PORT`] and else any free port when none is given.
///
/// # Errors
/// The port given is taken or not allowed (the message says what to pass instead).
async fn bind(port: Option<u16>) -> Result<TcpListener> {
    let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match port {
        Some(port) => TcpListener::bind(at(port)).await.with_context(|| {
            format!(
                "cannot listen on {}: another program (another `feedpost serve --local`?) may be using it. Pass another --port, or --port 0 for any free one",
                at(port)
            )
        }),
        None => match TcpListener::bind(at(DEFAULT_PORT)).await {
            Ok(listener) => Ok(listener),
            Err(e) => {
                warn!("port {DEFAULT_PORT} is not free ({e}): taking any free port");
                TcpListener::bind(at(0))
                    .await
                    .context("cannot listen on any port of 127.0.0.1")
            }
        },
    }
}

/// The preview's routes: see the module docs.
fn router(preview: Arc<Preview>, output: &Path) -> Router {
    let files = tower::ServiceBuilder::new()
        .layer(middleware::from_fn(super::files::label))
        .service(
            ServeDir::new(output).fallback(tower::service_fn(|_: Request| async {
                Ok::<_, std::convert::Infallible>(pages::not_found(
                "Nothing here in the local build. The issues and their emails are at /_feedpost/.",
            ))
            })),
        );
    let off = || {
        get(|| async { pages::subscriptions_off() }).post(|| async { pages::subscriptions_off() })
    };
    Router::new()
        .route(pages::HOME, get(overview))
        .route("/_feedpost/email/{slug}", get(email))
        .route("/_feedpost/email/{slug}/html", get(email_html))
        .route(live::SCRIPT_PATH, get(live::script))
        .route(live::EVENTS_PATH, get(live::events))
        .route("/subscribe", off())
        .route("/confirm", off())
        .route("/unsubscribe", off())
        .fallback_service(files)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&preview),
            live::inject,
        ))
        .layer(middleware::from_fn(local_headers))
        .with_state(preview)
}

/// Middleware: every answer fresh (conditional requests are answered in full and nothing is
/// cached, so a reload always shows the last build), with the local security headers.
async fn local_headers(mut request: Request, next: Next) -> Response {
    for name in [
        IF_MODIFIED_SINCE,
        IF_NONE_MATCH,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ] {
        request.headers_mut().remove(name);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(LOCAL_POLICY),
    );
    response
}

/// `GET /_feedpost/`.
async fn overview(State(preview): State<Arc<Preview>>) -> Response {
    pages::overview(&preview.snapshot(), preview.hide_drafts)
}

/// `?width=375`.
#[derive(Debug, Deserialize)]
struct Width {
    width: Option<u32>,
}

/// `GET /_feedpost/email/{slug}?width=600|375`.
async fn email(
    State(preview): State<Arc<Preview>>,
    UrlPath(slug): UrlPath<String>,
    Query(Width { width }): Query<Width>,
) -> Response {
    let width = if width == Some(375) { 375 } else { 600 };
    match composed(preview, slug.clone()).await {
        Ok(Some((email, _))) => pages::email(&email, width),
        Ok(None) => pages::not_found(&format!("No issue has the slug `{slug}`.")),
        Err(response) => response,
    }
}

/// `GET /_feedpost/email/{slug}/html`.
async fn email_html(
    State(preview): State<Arc<Preview>>,
    UrlPath(slug): UrlPath<String>,
) -> Response {
    match composed(preview, slug.clone()).await {
        Ok(Some((_, html))) => pages::email_html(html),
        Ok(None) => pages::not_found(&format!("No issue has the slug `{slug}`.")),
        Err(response) => response,
    }
}

/// The email of `slug`, composed on a blocking thread; a failure is logged and answered 500.
async fn composed(
    preview: Arc<Preview>,
    slug: String,
) -> Result<Option<(pages::Email, String)>, Response> {
    match tokio::task::spawn_blocking(move || preview.email(&slug)).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => {
            error!("cannot preview the email: {e:#}");
            Err(pages::failed(&format!(
                "The email could not be composed: {e:#}."
            )))
        }
        Err(e) => {
            error!("cannot preview the email: {e}");
            Err(pages::failed("The email could not be composed."))
        }
    }
}
