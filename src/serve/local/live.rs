//! Live reload: every HTML page the local preview serves gets one `<script>` (and, when the last
//! build found problems, a banner), and the script reloads the page when the server says the
//! site was rebuilt — over Server-Sent Events (`GET /_feedpost/events`), which browsers reconnect
//! by themselves.
//!
//! Each build has an id, `<server>-<n>`: the server's random id and the build's number. A page
//! carries the id of the build it was served from, and asks for events `since` it: a build that
//! finished between serving the page and the script connecting is announced at once, and a page
//! from an earlier run of the server reloads as soon as the new one answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::watch;

use super::Preview;

/// The script's path.
pub(crate) const SCRIPT_PATH: &str = "/_feedpost/live.js";

/// The events' path.
pub(crate) const EVENTS_PATH: &str = "/_feedpost/events";

/// The script every page gets: connect, reload on `reload`.
const SCRIPT: &str = r#"// feedpost serve --local: reload this page when the site is rebuilt.
(function () {
  var me = document.currentScript;
  var since = me ? me.getAttribute("data-build") : "";
  var events = new EventSource("/_feedpost/events?since=" + encodeURIComponent(since));
  events.addEventListener("reload", function () {
    events.close();
    location.reload();
  });
})();
"#;

/// The largest HTML page the script is put into, in bytes; a larger one is served as it is.
const MAX_PAGE: usize = 64 * 1024 * 1024;

/// Marks a response the script must not go into (the email's HTML, shown in a frame of a page
/// that has it already).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoScript;

/// The build ids, as the rebuilds publish them and the event streams follow them.
#[derive(Debug)]
pub(crate) struct Builds {
    server: String,
    number: watch::Sender<u64>,
    stopping: watch::Sender<bool>,
}

impl Builds {
    /// No build yet, under a fresh random server id.
    pub(crate) fn new() -> Builds {
        Builds {
            server: format!("{:016x}", rand::random::<u64>()),
            number: watch::Sender::new(0),
            stopping: watch::Sender::new(false),
        }
    }

    /// The id of the last build.
    pub(crate) fn current(&self) -> String {
        format!("{}-{}", self.server, *self.number.borrow())
    }

    /// Announces a new build: every open page reloads.
    pub(crate) fn finished(&self) {
        self.number.send_modify(|n| *n += 1);
    }

    /// Ends every event stream (the server is stopping: a graceful shutdown waits for them).
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
    }
}

/// `?since=<build id>`.
#[derive(Debug, Deserialize)]
pub(crate) struct Since {
    #[serde(default)]
    since: String,
}

/// `GET /_feedpost/events?since=ID`: a `reload` event at once when the last build is not `ID`,
/// then one after each build, until the server stops; a comment every 15 s keeps proxies from
/// closing the stream.
pub(crate) async fn events(
    State(preview): State<Arc<Preview>>,
    Query(Since { since }): Query<Since>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let builds = &preview.builds;
    let mut number = builds.number.subscribe();
    number.mark_unchanged();
    let stopping = builds.stopping.subscribe();
    let stale = builds.current() != since;
    let state = (number, stopping, stale);
    let stream = stream::unfold(state, |(mut number, mut stopping, stale)| async move {
        if !stale {
            if *stopping.borrow() {
                return None;
            }
            tokio::select! {
                changed = number.changed() => changed.ok()?,
                _ = stopping.changed() => return None,
            }
        }
        let id = *number.borrow_and_update();
        let event = Event::default().event("reload").data(id.to_string());
        Some((Ok(event), (number, stopping, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /_feedpost/live.js`.
pub(crate) async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// Middleware: puts the script, tagged with the current build's id, and the problems banner
/// before `</body>` of every successful HTML answer to a `GET` but those marked [`NoScript`]
/// (the answer to a `HEAD` loses its `Content-Length`, which is the file's).
pub(crate) async fn inject(
    State(preview): State<Arc<Preview>>,
    request: Request,
    next: Next,
) -> Response {
    let head = request.method() == axum::http::Method::HEAD;
    let own_page = request.uri().path().starts_with(super::pages::HOME);
    let response = next.run(request).await;
    let html = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !html || !response.status().is_success() || response.extensions().get::<NoScript>().is_some()
    {
        return response;
    }
    if head {
        // The page a GET gets is longer than the file.
        let mut response = response;
        response.headers_mut().remove(CONTENT_LENGTH);
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PAGE).await else {
        return super::pages::failed("the page could not be read");
    };
    let addition = addition(&preview, !own_page);
    let page = insert_before_body_end(&bytes, addition.as_bytes());
    for name in [CONTENT_LENGTH, ETAG, LAST_MODIFIED] {
        parts.headers.remove(name);
    }
    parts
        .headers
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, Body::from(page))
}

/// What goes into a page: the problems banner, if any, a link to the issues and their emails
/// (`badge`: on the site's pages, which have no way there), and the script.
fn addition(preview: &Preview, badge: bool) -> String {
    let snapshot = preview.snapshot();
    let mut out = String::new();
    if badge {
        out.push_str(&format!(
            "<a href=\"{}\" style=\"position:fixed;top:.5em;right:.5em;z-index:2147483646;padding:.2em .6em;border-radius:4px;background:#1d1d1f;color:#fff;font:13px/1.6 system-ui,sans-serif;text-decoration:none;opacity:.85\">preview · issues and emails</a>",
            super::pages::HOME
        ));
    }
    if !snapshot.errors.is_empty() {
        let problems = crate::cmd::count(snapshot.errors.len(), "problem", "problems");
        out.push_str(&format!(
            "<div style=\"position:fixed;bottom:0;left:0;right:0;z-index:2147483647;padding:.6em 1em;background:#b00020;color:#fff;font:15px/1.4 system-ui,sans-serif\">feedpost: {problems} in the last build — <a style=\"color:#fff\" href=\"/_feedpost/\">see what and where</a></div>"
        ));
    }
    out.push_str(&format!(
        "<script src=\"{SCRIPT_PATH}\" data-build=\"{}\"></script>",
        preview.builds.current()
    ));
    out
}

/// `page` with `addition` before its last `</body>` (any case), or at its end.
fn insert_before_body_end(page: &[u8], addition: &[u8]) -> Vec<u8> {
    let at = page
        .windows(7)
        .rposition(|w| w.eq_ignore_ascii_case(b"</body>"))
        .unwrap_or(page.len());
    let mut out = Vec::with_capacity(page.len() + addition.len());
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(addition);
    out.extend_from_slice(&page[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_goes_before_the_last_body_end() {
        assert_eq!(
            insert_before_body_end(b"<p>a</p></BODY></html>", b"<s>"),
            b"<p>a</p><s></BODY></html>"
        );
        assert_eq!(insert_before_body_end(b"<p>a</p>", b"<s>"), b"<p>a</p><s>");
    }

    #[test]
    fn build_ids_change_with_each_build() {
        let builds = Builds::new();
        let first = builds.current();
        builds.finished();
        assert_ne!(builds.current(), first);
        assert!(builds.current().ends_with("-1"));
    }
}
