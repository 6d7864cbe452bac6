//! The local preview's own pages, under `/_feedpost/`: the overview of every issue (its state,
//! its page, its email) and the email of one issue, HTML and text side by side, as a sample
//! reader gets it. Tools for the editor, not part of the site: they never reach the feeds folder.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::build::{Entry, Snapshot};

/// The overview's path.
pub(crate) const HOME: &str = "/_feedpost/";

/// The styles of these pages (inline: the local policy allows it; nothing else uses them).
const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f5f5f7}\
header{padding:.8em 1.2em;background:#fff;border-bottom:1px solid #ddd}\
header a{margin-right:1em}main{padding:1em 1.2em}\
table{border-collapse:collapse;background:#fff;width:100%}td,th{padding:.4em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
.tag{display:inline-block;padding:0 .4em;border-radius:3px;font-size:12px;background:#eee}\
.draft{background:#fff3cd}.future{background:#e0ecff}.mailed{background:#d9f2dd}\
.errors{background:#fde7ea;border:1px solid #b00020;padding:.6em 1em;white-space:pre-wrap;font:13px/1.4 ui-monospace,monospace}\
.panes{display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap}\
.pane{background:#fff;border:1px solid #ddd}.pane h2{font-size:13px;margin:0;padding:.4em .6em;border-bottom:1px solid #ddd;background:#fafafa}\
iframe{border:0;display:block;height:80vh}\
pre{margin:0;padding:1em;white-space:pre-wrap;font:13px/1.45 ui-monospace,monospace;width:72ch;max-width:90vw;height:calc(80vh - 2em);overflow:auto}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:0 0 1em}dt{color:#666}dd{margin:0}";

/// A page of these tools around `body`.
fn page(title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · feedpost serve --local" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "feedpost serve --local" } " · "
                    a href="/" { "the archive" }
                    a href=(HOME) { "issues and emails" }
                    a href="/rss.xml" { "RSS" }
                    a href="/atom.xml" { "Atom" }
                    a href="/feed.json" { "JSON Feed" }
                }
                main { (body) }
            }
        }
    };
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// The date as the overview shows it: `2026-12-04 09:30 +08:00`.
fn when(date: &DateTime<FixedOffset>) -> String {
    date.format("%Y-%m-%d %H:%M %:z").to_string()
}

/// What a slug keeps as it is in a path: RFC 3986 unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path of an issue's email preview.
pub(crate) fn email_path(slug: &str) -> String {
    format!(
        "{HOME}email/{}",
        percent_encoding::utf8_percent_encode(slug, SEGMENT)
    )
}

/// The overview: the last build's problems, then every issue, newest first, with its state and
/// links to its page and its email.
pub(crate) fn overview(snapshot: &Snapshot, hide_drafts: bool) -> Response {
    let body = html! {
        @if !snapshot.errors.is_empty() {
            h1 { "Problems in the last build" }
            div.errors { @for e in &snapshot.errors { (e) "\n" } }
            p { "Fix them and save: the page reloads. `feedpost check` lists more." }
        }
        h1 { (snapshot.config.site.title) }
        @if snapshot.issues.is_empty() {
            p { "No issues yet. Start one with " code { "feedpost new issues/NAME.md" } "." }
        } @else {
            table {
                tr { th { "date" } th { "issue" } th { "state" } th { "email" } }
                @for entry in &snapshot.issues { (row(entry, hide_drafts)) }
            }
        }
    };
    page("Issues", body)
}

fn row(entry: &Entry, hide_drafts: bool) -> Markup {
    html! {
        tr {
            td { (when(&entry.date)) }
            td {
                @if entry.built {
                    a href=(entry.permalink) { (entry.title) }
                } @else {
                    (entry.title)
                }
            }
            td {
                @if entry.mailed { span.tag.mailed { "mailed" } " " }
                @if entry.draft { span.tag.draft { "draft" } " " }
                @if entry.future { span.tag.future { "scheduled" } " " }
                @if !entry.draft && !entry.future && !entry.mailed { span.tag { "published" } }
                @if hide_drafts && !entry.built { " (not in the archive: --hide-drafts)" }
            }
            td { a href=(email_path(&entry.slug)) { "preview" } }
        }
    }
}

/// One issue's email as a sample reader gets it.
#[derive(Debug)]
pub(crate) struct Email {
    pub(crate) slug: String,
    pub(crate) subject: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) preheader: String,
    pub(crate) text: String,
    pub(crate) size: usize,
}

/// The email page: the headers a reader sees, then the HTML part (in a frame, `width` pixels
/// wide) and the text part side by side.
pub(crate) fn email(email: &Email, width: u32) -> Response {
    let html_src = format!("{}/html", email_path(&email.slug));
    let body = html! {
        h1 { (email.subject) }
        dl {
            dt { "From" } dd { (email.from) }
            dt { "To" } dd { (email.to) " (the first subscriber in the list)" }
            dt { "Inbox preview" } dd { (email.preheader) }
            dt { "Size" } dd { (email.size / 1024) " KiB (Gmail clips messages over 102 KiB)" }
            dt { "Width" } dd {
                @for w in [600u32, 375] {
                    @if w == width { strong { (w) " px" } } @else { a href={ "?width=" (w) } { (w) " px" } }
                    " "
                }
            }
        }
        div.panes {
            div.pane {
                h2 { "HTML part" }
                iframe src=(html_src) width=(width) title="The email's HTML part" {}
            }
            div.pane {
                h2 { "Text part" }
                pre { (email.text) }
            }
        }
    };
    page(&email.subject, body)
}

/// The email's HTML part, alone (the frame of [`email`]).
pub(crate) fn email_html(html: String) -> Response {
    let mut response = (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    response.extensions_mut().insert(super::live::NoScript);
    response
}

/// A 404 page saying `what` is not there.
pub(crate) fn not_found(what: &str) -> Response {
    let mut response = page("Not found", html! { h1 { "Not found" } p { (what) } });
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The answer of the subscription routes, which the local preview does not run.
pub(crate) fn subscriptions_off() -> Response {
    not_found("The subscription pages (subscribe, confirm, unsubscribe) are off in the local preview. `feedpost serve` without --local runs them, with a [serve] table in the config and FEEDPOST_SECRET set: see README, \"Readers joining and leaving\".")
}

/// A 500 page: something of ours failed (the log has the cause).
pub(crate) fn failed(what: &str) -> Response {
    let mut response = page(
        "Error",
        html! { h1 { "Something failed" } p { (what) " The terminal running feedpost says why." } },
    );
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
