//! The feeds folder over HTTP: the feeds, the web archive pages and their stylesheets, as
//! `feedpost build` wrote them, with the media types feed readers expect.
//!
//! Files are served by `tower-http`'s `ServeDir` (paths kept inside the folder, `index.html` for
//! folders, conditional and range requests); this module only names the media types that
//! `ServeDir` cannot know from an extension — an RSS document and an Atom document are both
//! `.xml` — and sets the security policy of the site's own pages.

use axum::extract::Request;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The Content-Security-Policy of the feeds folder's files: no script but same-origin (XSLT
/// stylesheets count as scripts, and `feed.xsl` renders `rss.xml` and `atom.xml` in browsers),
/// styles from the site and inline ones (the XSLT output has a `<style>`), images and media
/// from anywhere (issues link CDN images), no forms elsewhere, no framing.
pub(crate) const FILES_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline' https:; img-src https: http: data:; media-src https: http:; \
     font-src https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The media type of the file at URL path `path` where it is not what the extension says:
///
/// | path | media type |
/// | --- | --- |
/// | `…/rss.xml`, `archive/rss/<n>.xml` | `application/rss+xml` (RSS 2.0) |
/// | `…/atom.xml`, `archive/atom/<n>.xml` | `application/atom+xml` (RFC 4287) |
/// | `…/feed.json` | `application/feed+json` (JSON Feed 1.1) |
/// | `….html`, `…/` | `text/html; charset=utf-8` |
/// | `….css` | `text/css; charset=utf-8` |
/// | `….xsl` | `text/xsl; charset=utf-8` |
///
/// `None`: whatever `ServeDir` guessed from the extension (images, fonts).
pub(crate) fn media_type(path: &str) -> Option<&'static str> {
    let file = path.rsplit('/').next().unwrap_or_default();
    let under = |folder: &str| path.contains(folder) && file.ends_with(".xml");
    Some(match file {
        "rss.xml" => "application/rss+xml",
        "atom.xml" => "application/atom+xml",
        "feed.json" => "application/feed+json",
        _ if under("/archive/rss/") => "application/rss+xml",
        _ if under("/archive/atom/") => "application/atom+xml",
        "" => "text/html; charset=utf-8",
        _ => match file
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
        {
            Some(ext) if ext == "html" || ext == "htm" => "text/html; charset=utf-8",
            Some(ext) if ext == "css" => "text/css; charset=utf-8",
            Some(ext) if ext == "xsl" => "text/xsl; charset=utf-8",
            _ => return None,
        },
    })
}

/// Middleware around `ServeDir`: sets [`media_type`] on a file served (200, 206), and the
/// files' security policy on every answer.
pub(crate) async fn label(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let served = response.status().is_success();
    let headers = response.headers_mut();
    if let Some(media_type) = media_type(&path).filter(|_| served) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    }
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(FILES_POLICY));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_get_their_own_media_types() {
        for (path, expected) in [
            ("/rss.xml", Some("application/rss+xml")),
            (
                "/tags/%E5%91%A8%E6%8A%A5/atom.xml",
                Some("application/atom+xml"),
            ),
            ("/categories/x/feed.json", Some("application/feed+json")),
            ("/archive/rss/3.xml", Some("application/rss+xml")),
            ("/archive/atom/12.xml", Some("application/atom+xml")),
            ("/", Some("text/html; charset=utf-8")),
            ("/issues/a/", Some("text/html; charset=utf-8")),
            ("/issues/a/index.html", Some("text/html; charset=utf-8")),
            ("/archive.css", Some("text/css; charset=utf-8")),
            ("/feed.xsl", Some("text/xsl; charset=utf-8")),
            ("/issues/a/cover.png", None),
            ("/sitemap.xml", None),
        ] {
            assert_eq!(media_type(path), expected, "{path}");
        }
    }
}
