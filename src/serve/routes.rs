//! The handlers of `feedpost serve`: the subscription form, double opt-in, one-click
//! unsubscribe (RFC 8058).
//!
//! Each handler checks what the client sent — the form, the token — turns every mistake into a
//! [`Problem`] (a 4xx page), and calls the [`Subscriptions`] backend in a task of its own. A
//! backend error is logged and answered with the 500 page, which names nothing.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /subscribe` | the form: email, name, topics (the site's tags and categories) |
//! | `POST /subscribe` | records a request, queues a confirmation email; the same page for any address |
//! | `GET /confirm?token=` | confirms the request the token names |
//! | `GET /unsubscribe?token=` | a page with a button; changes nothing |
//! | `POST /unsubscribe?token=` | unsubscribes, given `List-Unsubscribe=One-Click` (RFC 8058) |

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::backend::{ConfirmationMail, Confirmed, Request, Requested, Subscriptions};
use super::pages::{FieldError, Filled, Problem};
use super::App;
use crate::subscribers::token::{self, Purpose, TokenError};

/// The largest request body read, in bytes: a form with every topic ticked fits many times.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// A store call slower than this is logged: a publish holding the ledger's write lock, a slow
/// disk (the ledger waits up to 10 s for the lock before the call fails).
const SLOW_STORE: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest name kept, in characters.
const MAX_NAME_CHARS: usize = 100;

/// The longest address, in octets (RFC 5321 §4.5.3.1.3 path limit less the brackets).
const MAX_ADDRESS_OCTETS: usize = 254;

type AppState<S> = State<Arc<App<S>>>;

/// `GET /subscribe`.
pub(crate) async fn subscribe_form<S: Subscriptions>(State(app): AppState<S>) -> Response {
    app.pages.subscribe(&Filled::default(), None)
}

/// `POST /subscribe`.
pub(crate) async fn subscribe<S: Subscriptions>(
    State(app): AppState<S>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let fields = match form_fields(&headers, body).await {
        Ok(fields) => fields,
        Err(problem) => return app.pages.problem(&problem),
    };
    let (filled, checked) = match check_form(&fields, app.pages.topics()) {
        Ok(checked) => checked,
        Err(FormError::Missing) => return app.pages.problem(&Problem::BadForm),
        Err(FormError::Field(filled, field)) => return app.pages.subscribe(&filled, Some(field)),
    };
    // Reserve a place in the mail queue first: when it is full the request is refused whole,
    // and the reader can simply send the form again later.
    let Ok(slot) = app.mail.clone().try_reserve_owned() else {
        warn!("the confirmation queue is full; answering 503");
        return app.pages.problem(&Problem::Unavailable);
    };
    let now = match app.now() {
        Ok(now) => now,
        Err(problem) => return app.pages.problem(&problem),
    };
    let request = Request {
        address: checked.address.clone(),
        name: checked.name,
        topics: checked.topics,
        expires: now + chrono::Duration::hours(i64::from(app.valid_hours)),
    };
    let requested = {
        let request = request.clone();
        app.backend(move |subs| async move { subs.request(&request, now).await })
            .await
    };
    match requested {
        Ok(Requested::MailConfirmation) => {
            let key = request.address.to_lowercase();
            if app.address_limiter.check_key(&key).is_ok() {
                let token = token::confirm_token(&app.secret, &key, request.expires);
                let mut confirm_url = app.public_url.join("confirm").expect("a relative path");
                confirm_url.query_pairs_mut().append_pair("token", &token);
                slot.send(ConfirmationMail {
                    address: request.address.clone(),
                    topics: request.topics.clone(),
                    confirm_url,
                    valid_hours: app.valid_hours,
                });
                info!(address = %key, "subscription requested; confirmation queued");
            } else {
                info!(address = %key, "subscription requested again; confirmation mailed recently, none sent");
            }
        }
        Ok(Requested::Suppressed) => {
            info!(address = %request.address.to_lowercase(), "subscription request for a suppressed address; nothing sent");
        }
        Err(problem) => return app.pages.problem(&problem),
    }
    app.pages.check_inbox(&filled.email)
}

/// `GET /confirm?token=`.
pub(crate) async fn confirm<S: Subscriptions>(
    State(app): AppState<S>,
    RawQuery(query): RawQuery,
) -> Response {
    let address = match app.verified(query.as_deref(), Purpose::Confirm) {
        Ok(address) => address,
        Err(problem) => return app.pages.problem(&problem),
    };
    let now = match app.now() {
        Ok(now) => now,
        Err(problem) => return app.pages.problem(&problem),
    };
    let key = address.clone();
    match app
        .backend(move |subs| async move { subs.confirm(&key, now).await })
        .await
    {
        Ok(Confirmed::Confirmed) => {
            info!(%address, "subscription confirmed");
            app.pages.confirmed(&address)
        }
        Ok(Confirmed::AlreadyConfirmed) => app.pages.confirmed(&address),
        Ok(Confirmed::NoRequest) => app.pages.problem(&Problem::NoRequest),
        Err(problem) => app.pages.problem(&problem),
    }
}

/// `GET /unsubscribe?token=`: the page with the button. Changes nothing, so a link scanner
/// that fetches every link in a message unsubscribes nobody.
pub(crate) async fn unsubscribe_page<S: Subscriptions>(
    State(app): AppState<S>,
    RawQuery(query): RawQuery,
) -> Response {
    match app.verified(query.as_deref(), Purpose::Unsubscribe) {
        Ok(address) => {
            let action = format!("unsubscribe?{}", query.unwrap_or_default());
            app.pages.unsubscribe(&address, &action)
        }
        Err(problem) => app.pages.problem(&problem),
    }
}

/// `POST /unsubscribe?token=` with `List-Unsubscribe=One-Click` in a form body
/// (`application/x-www-form-urlencoded` or `multipart/form-data`, RFC 8058 §3.1): unsubscribes
/// at once and answers 200 — the mail provider's one-click request and the page's button alike.
pub(crate) async fn unsubscribe<S: Subscriptions>(
    State(app): AppState<S>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let address = match app.verified(query.as_deref(), Purpose::Unsubscribe) {
        Ok(address) => address,
        Err(problem) => return app.pages.problem(&problem),
    };
    let fields = match form_fields(&headers, body).await {
        Ok(fields) => fields,
        Err(problem) => return app.pages.problem(&problem),
    };
    let one_click = fields
        .iter()
        .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click");
    if !one_click {
        return app.pages.problem(&Problem::NoOneClick);
    }
    let now = match app.now() {
        Ok(now) => now,
        Err(problem) => return app.pages.problem(&problem),
    };
    let key = address.clone();
    match app
        .backend(move |subs| async move { subs.unsubscribe(&key, now).await })
        .await
    {
        Ok(outcome) => {
            info!(%address, ?outcome, "unsubscribed");
            app.pages.unsubscribed(&address)
        }
        Err(problem) => app.pages.problem(&problem),
    }
}

/// `GET /healthz`: `ok`, while the server answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

impl<S: Subscriptions> App<S> {
    /// The address a `token=` in `query` acts for, if the token is genuine, unexpired and for
    /// `purpose`.
    fn verified(&self, query: Option<&str>, purpose: Purpose) -> Result<String, Problem> {
        let token = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .ok_or(Problem::BadLink)?;
        let now = self.now()?;
        token::verify(&self.secret, &token, purpose, now)
            .map(|v| v.address)
            .map_err(|e| match e {
                TokenError::Expired(_) => Problem::ExpiredLink,
                TokenError::Malformed | TokenError::Forged | TokenError::WrongPurpose { .. } => {
                    Problem::BadLink
                }
            })
    }

    /// The clock (`FEEDPOST_NOW` pins it).
    fn now(&self) -> Result<DateTime<Utc>, Problem> {
        crate::now().map_err(|e| {
            error!("{e:#}");
            Problem::Internal
        })
    }

    /// Runs the backend call `call` makes as a task of its own; an error (or a panic in it) is
    /// logged and becomes [`Problem::Internal`].
    async fn backend<T, F>(&self, call: impl FnOnce(Arc<S>) -> F) -> Result<T, Problem>
    where
        T: Send + 'static,
        F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let result = tokio::spawn(call(Arc::clone(&self.subs))).await;
        let took = started.elapsed();
        if took > SLOW_STORE {
            warn!(
                "the subscriber store took {} ms to answer",
                took.as_millis()
            );
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                error!("the subscriber store failed: {e:#}");
                Err(Problem::Internal)
            }
            Err(e) => {
                error!("the subscriber store call did not finish: {e}");
                Err(Problem::Internal)
            }
        }
    }
}

/// The fields of a form body, at most [`MAX_BODY`] bytes, sent as
/// `application/x-www-form-urlencoded` (any `charset` parameter is taken as UTF-8, which is what
/// browsers send for a UTF-8 page) or `multipart/form-data`. An empty body with no media type
/// is an empty form.
async fn form_fields(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, Problem> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            Problem::TooLarge
        } else {
            Problem::BadForm
        }
    })?;
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Ok(url::form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()),
        "multipart/form-data" => multipart_fields(media_type, bytes).await,
        "" if bytes.is_empty() => Ok(Vec::new()),
        _ => Err(Problem::Unsupported),
    }
}

/// The text fields of a `multipart/form-data` body (RFC 7578); a file part is a bad form.
async fn multipart_fields(
    media_type: &str,
    bytes: Bytes,
) -> Result<Vec<(String, String)>, Problem> {
    let boundary = multer::parse_boundary(media_type).map_err(|_| Problem::BadForm)?;
    let mut parts = multer::Multipart::with_reader(std::io::Cursor::new(bytes), boundary);
    let mut fields = Vec::new();
    while let Some(field) = parts.next_field().await.map_err(|_| Problem::BadForm)? {
        if field.file_name().is_some() {
            return Err(Problem::BadForm);
        }
        let name = field.name().unwrap_or_default().to_string();
        let value = field.text().await.map_err(|_| Problem::BadForm)?;
        fields.push((name, value));
    }
    Ok(fields)
}

/// A checked subscription form.
#[derive(Debug)]
struct Checked {
    address: String,
    name: Option<String>,
    topics: Vec<String>,
}

/// Why a form is refused.
#[derive(Debug)]
enum FormError {
    /// No `email` field at all (or two): not our form.
    Missing,
    /// A field the reader can correct: the form is shown again, filled in, with the error.
    Field(Filled, FieldError),
}

/// Checks a subscription form's fields against the site's `topics`: exactly one `email`, a valid
/// address (its domain in A-labels, as [`crate::subscribers::normalize`] makes it); at most one `name`, one line of at most 100 characters; each `topics` value one of
/// the site's (compared ignoring case; kept as the site spells it, without repeats). Other
/// fields are ignored.
fn check_form(
    fields: &[(String, String)],
    topics: &[String],
) -> Result<(Filled, Checked), FormError> {
    let values = |key: &'static str| fields.iter().filter(move |(k, _)| k == key).map(|(_, v)| v);
    let mut emails = values("email");
    let (Some(email), None) = (emails.next(), emails.next()) else {
        return Err(FormError::Missing);
    };
    let mut names = values("name");
    let name = names
        .next()
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    let mut filled = Filled {
        email: email.trim().to_string(),
        name: name.clone(),
        topics: Vec::new(),
    };
    let mut unknown_topic = false;
    for wanted in values("topics") {
        match topics
            .iter()
            .find(|t| t.to_lowercase() == wanted.trim().to_lowercase())
        {
            Some(t) if !filled.topics.contains(t) => filled.topics.push(t.clone()),
            Some(_) => {}
            None => unknown_topic = true,
        }
    }
    let address = match crate::subscribers::normalize(&filled.email) {
        Ok((address, _)) if address.len() <= MAX_ADDRESS_OCTETS => address,
        _ => return Err(FormError::Field(filled, FieldError::Email)),
    };
    if names.next().is_some()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(FormError::Field(filled, FieldError::Name));
    }
    if unknown_topic {
        return Err(FormError::Field(filled, FieldError::Topic));
    }
    let checked = Checked {
        address,
        name: (!name.is_empty()).then_some(name),
        topics: filled.topics.clone(),
    };
    Ok((filled, checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn topics() -> Vec<String> {
        vec!["MOSN".into(), "周报".into()]
    }

    #[test]
    fn a_good_form_is_trimmed_and_topics_take_the_site_spelling() {
        let (filled, checked) = check_form(
            &fields(&[
                ("email", " Reader@Example.org "),
                ("name", " 读者 "),
                ("topics", "mosn"),
                ("topics", "MOSN"),
                ("topics", "周报"),
                ("submit", "x"),
            ]),
            &topics(),
        )
        .unwrap();
        assert_eq!(checked.address, "Reader@Example.org");
        assert_eq!(checked.name.as_deref(), Some("读者"));
        assert_eq!(checked.topics, topics());
        assert_eq!(filled.email, "Reader@Example.org");
        let (_, checked) =
            check_form(&fields(&[("email", "读者@Bücher.example")]), &topics()).unwrap();
        assert_eq!(checked.address, "读者@xn--bcher-kva.example");
    }

    #[test]
    fn bad_fields_come_back_with_the_form() {
        let field = |pairs: &[(&str, &str)]| match check_form(&fields(pairs), &topics()) {
            Err(FormError::Field(_, f)) => Some(f),
            Err(FormError::Missing) => None,
            Ok(_) => panic!("accepted {pairs:?}"),
        };
        assert_eq!(
            field(&[("email", "not an address")]),
            Some(FieldError::Email)
        );
        assert_eq!(field(&[("email", "")]), Some(FieldError::Email));
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(field(&[("email", &long)]), Some(FieldError::Email));
        let name = "名".repeat(101);
        assert_eq!(
            field(&[("email", "a@b.org"), ("name", &name)]),
            Some(FieldError::Name)
        );
        assert_eq!(
            field(&[("email", "a@b.org"), ("name", "a\nb")]),
            Some(FieldError::Name)
        );
        assert_eq!(
            field(&[("email", "a@b.org"), ("name", "a"), ("name", "b")]),
            Some(FieldError::Name)
        );
        assert_eq!(
            field(&[("email", "a@b.org"), ("topics", "Java")]),
            Some(FieldError::Topic)
        );
        assert_eq!(field(&[("name", "x")]), None);
        assert_eq!(field(&[("email", "a@b.org"), ("email", "c@d.org")]), None);
    }
}
