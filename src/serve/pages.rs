//! The server's HTML answers: the templates of `web-templates/subscribe.rs` filled for this site
//! and turned into responses, and [`Problem`], every way a request can fail, each with its status
//! and page.
//!
//! Every page is `text/html; charset=utf-8`, `Cache-Control: no-store` (they carry addresses
//! and tokens), with a Content-Security-Policy that allows the site's stylesheets and nothing
//! else: no script, no inline style, forms only to this server, no framing.

#[path = "../../web-templates/subscribe.rs"]
mod template;

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::Markup;

use crate::config::Config;

/// The pages' own stylesheet, served as [`CSS_FILE`] beside the archive's.
pub(crate) const CSS: &str = include_str!("../../web-templates/subscribe.css");

/// The file name the pages link [`CSS`] under.
pub(crate) const CSS_FILE: &str = "subscribe.css";

/// The Content-Security-Policy of the server's own pages.
pub(crate) const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Why a request fails, as the client is told. The 4xx are the client's doing; 5xx are ours and
/// say nothing of the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A token that is missing, malformed, forged, altered, or for another purpose (400).
    BadLink,
    /// A genuine confirmation token past its expiry (410).
    ExpiredLink,
    /// A genuine confirmation token whose request is gone (410).
    NoRequest,
    /// A form without a required field, or not form data at all (400).
    BadForm,
    /// A `POST` to an unsubscribe link without `List-Unsubscribe=One-Click` (400).
    NoOneClick,
    /// A body over the limit (413).
    TooLarge,
    /// A body of a media type the route does not take (415).
    Unsupported,
    /// Over the client's limit; retry after this many seconds (429).
    TooManyRequests(u64),
    /// Nothing here (404).
    NotFound,
    /// A method the route does not take (405).
    MethodNotAllowed,
    /// The request did not arrive in time (408).
    Timeout,
    /// Overloaded: the confirmation queue is full (503).
    Unavailable,
    /// A backend error, a panic, anything of ours (500).
    Internal,
}

impl Problem {
    /// The status code.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Problem::BadLink | Problem::BadForm | Problem::NoOneClick => StatusCode::BAD_REQUEST,
            Problem::ExpiredLink | Problem::NoRequest => StatusCode::GONE,
            Problem::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Problem::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Problem::NotFound => StatusCode::NOT_FOUND,
            Problem::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Problem::Timeout => StatusCode::REQUEST_TIMEOUT,
            Problem::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Problem::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem an empty error response of `status` stands for (from a layer that answers
    /// without a page: a timeout, a panic, axum's 405).
    pub(crate) fn for_status(status: StatusCode) -> Problem {
        match status.as_u16() {
            400 => Problem::BadForm,
            404 => Problem::NotFound,
            405 => Problem::MethodNotAllowed,
            408 => Problem::Timeout,
            413 => Problem::TooLarge,
            415 => Problem::Unsupported,
            429 => Problem::TooManyRequests(60),
            503 => Problem::Unavailable,
            _ if status.is_client_error() => Problem::BadForm,
            _ => Problem::Internal,
        }
    }
}

/// What a field error of the form says, and which field it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldError {
    /// Not an email address.
    Email,
    /// A name too long or with control characters.
    Name,
    /// A topic the site does not have.
    Topic,
}

/// The form as it was filled in, shown again with an error.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filled {
    pub email: String,
    pub name: String,
    pub topics: Vec<String>,
}

/// The site's pages, ready to fill: what they show of the site, in its language.
#[derive(Debug, Clone)]
pub(crate) struct Pages {
    lang: String,
    title: String,
    description: String,
    home: String,
    zh: bool,
    hours: u32,
    topics: Vec<String>,
}

impl Pages {
    /// The pages of `config`'s site, offering `topics` on the form, saying confirmation links
    /// work `hours` hours.
    pub(crate) fn new(config: &Config, topics: Vec<String>, hours: u32) -> Pages {
        Pages {
            lang: config.site.language.clone(),
            title: config.site.title.clone(),
            description: config.site.description.clone(),
            home: config.site.base_url.to_string(),
            zh: config.is_chinese(),
            hours,
            topics,
        }
    }

    /// The topics the form offers, as the site spells them.
    pub(crate) fn topics(&self) -> &[String] {
        &self.topics
    }

    fn words(&self) -> &'static template::Words {
        if self.zh {
            &template::ZH
        } else {
            &template::EN
        }
    }

    fn site(&self) -> template::Site<'_> {
        template::Site {
            lang: &self.lang,
            title: &self.title,
            description: &self.description,
            home: &self.home,
            words: self.words(),
        }
    }

    fn vars<'a>(&'a self, address: &'a str) -> template::Vars<'a> {
        template::Vars {
            title: &self.title,
            address,
            hours: self.hours,
        }
    }

    /// The subscription form: empty, or `filled` again with `error` (then 400).
    pub(crate) fn subscribe(&self, filled: &Filled, error: Option<FieldError>) -> Response {
        let topics: Vec<template::Topic<'_>> = self
            .topics
            .iter()
            .map(|t| template::Topic {
                label: t,
                checked: filled.topics.iter().any(|f| f == t),
            })
            .collect();
        let w = self.words();
        let error = error.map(|e| match e {
            FieldError::Email => (w.bad_email, "email"),
            FieldError::Name => (w.bad_name, "name"),
            FieldError::Topic => (w.bad_topic, "topics"),
        });
        let form = template::Form {
            email: &filled.email,
            name: &filled.name,
            topics: &topics,
            error,
        };
        let status = if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        html(
            status,
            template::subscribe(&self.site(), &self.vars(""), &form),
        )
    }

    /// After the form: the same page whatever became of `address`.
    pub(crate) fn check_inbox(&self, address: &str) -> Response {
        let (heading, body) = &self.words().check_inbox;
        self.message(StatusCode::OK, heading, &body(&self.vars(address)), false)
    }

    /// After a confirmation.
    pub(crate) fn confirmed(&self, address: &str) -> Response {
        let (heading, body) = &self.words().confirmed;
        self.message(StatusCode::OK, heading, &body(&self.vars(address)), false)
    }

    /// The unsubscribe page with its button, posting to `action` (relative).
    pub(crate) fn unsubscribe(&self, address: &str, action: &str) -> Response {
        html(
            StatusCode::OK,
            template::unsubscribe(&self.site(), &self.vars(address), action),
        )
    }

    /// After unsubscribing.
    pub(crate) fn unsubscribed(&self, address: &str) -> Response {
        let (heading, body) = &self.words().unsubscribed;
        self.message(StatusCode::OK, heading, &body(&self.vars(address)), true)
    }

    /// The page of `problem`, with its status (and `Retry-After` for 429).
    pub(crate) fn problem(&self, problem: &Problem) -> Response {
        let w = self.words();
        let expired;
        let (heading, body): (&str, &str) = match problem {
            Problem::BadLink => w.bad_link,
            Problem::ExpiredLink => {
                expired = (w.expired_link.1)(&self.vars(""));
                (w.expired_link.0, &expired)
            }
            Problem::NoRequest => w.no_request,
            Problem::BadForm => w.bad_form,
            Problem::NoOneClick => w.no_one_click,
            Problem::TooLarge => w.too_large,
            Problem::Unsupported => w.unsupported,
            Problem::TooManyRequests(_) => w.too_many,
            Problem::NotFound => w.not_found,
            Problem::MethodNotAllowed => w.method,
            Problem::Timeout => w.timeout,
            Problem::Unavailable => w.unavailable,
            Problem::Internal => w.internal,
        };
        let subscribe_link = matches!(
            problem,
            Problem::BadLink | Problem::ExpiredLink | Problem::NoRequest | Problem::BadForm
        );
        let mut response = self.message(problem.status(), heading, body, subscribe_link);
        if let Problem::TooManyRequests(secs) = problem {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*secs));
        }
        response
    }

    fn message(&self, status: StatusCode, heading: &str, body: &str, subscribe: bool) -> Response {
        html(
            status,
            template::message(&self.site(), heading, body, subscribe),
        )
    }

    /// Pages of an English site with two topics, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Pages {
        let config = crate::config::test_config("title='Weekly'\nbase_url='https://x.org/'");
        Pages::new(&config, vec!["MOSN".into(), "Rust".into()], 48)
    }
}

/// An HTML page response with the page headers (see the module).
fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (CONTENT_SECURITY_POLICY, PAGE_POLICY),
        ],
        markup.into_string(),
    )
        .into_response()
}
