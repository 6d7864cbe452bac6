//! No `javascript:`, `vbscript:` or `data:` URL reaches any output: the archive page, RSS, Atom,
//! JSON Feed, and the email's HTML part, text part and whole message — from Markdown links,
//! images and reference definitions, and from raw HTML, in any letter case.

use crate::support::{issue, Site};

/// An issue body using `url` (a URL with the scheme under test) every way an author can.
fn hostile_body(url: &str) -> String {
    let upper = url.to_ascii_uppercase();
    format!(
        "正文 [链接]({url}) 和 [大写]({upper}) 以及 ![图]({url})\n\n[引用][r]\n\n<a href=\"{url}\">raw</a> <img src=\"{url}\" alt=\"raw\"> <a href=\" {url}\">space</a>\n\n[r]: {url}\n\n[安全链接](/safe/)\n"
    )
}

/// The site with one issue whose body is full of `url`, built, and previewed as an email.
fn site_with(url: &str) -> Site {
    let site = Site::new()
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .issue(
            "2024-03-01-hostile.md",
            &issue(
                "危险链接",
                "2024-03-01T15:00:00+08:00",
                &["MOSN"],
                &hostile_body(url),
            ),
        );
    site.run(&["build"]).success();
    let issue = site.path().join("issues/2024-03-01-hostile.md");
    let out = site.path().join("preview");
    site.run(&[
        "preview",
        issue.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-screenshots",
    ])
    .success();
    site
}

/// Where each output is, in the site folder.
fn output(site: &Site, name: &str) -> String {
    let rel = match name {
        "archive page" => "feeds/issues/2024-03-01-hostile/index.html",
        "RSS" => "feeds/rss.xml",
        "Atom" => "feeds/atom.xml",
        "JSON Feed" => "feeds/feed.json",
        "email HTML" => "preview/2024-03-01-hostile.html",
        "email text" => "preview/2024-03-01-hostile.txt",
        "email message" => "preview/2024-03-01-hostile.eml",
        other => unreachable!("{other}"),
    };
    let text = site.read(rel);
    if name == "email message" {
        // The bodies are quoted-printable: decode them so a URL cannot hide behind `=\r\n`.
        let message = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .expect("the .eml parses");
        format!(
            "{}\n{}",
            message.body_text(0).unwrap_or_default(),
            message.body_html(0).unwrap_or_default()
        )
    } else {
        text
    }
}

/// Asserts that no output of a site built from `url` holds the URL's scheme, and that the safe
/// link next to the hostile ones survives (the body was rendered, not dropped).
fn assert_clean(scheme: &str, url: &str, outputs: &[&str]) {
    let site = site_with(url);
    for name in outputs {
        let text = output(&site, name).to_ascii_lowercase();
        assert!(
            !text.contains(&format!("{scheme}:")),
            "a `{scheme}:` URL reached the {name}:\n{text}"
        );
        assert!(
            text.contains("https://www.sofastack.tech/safe/"),
            "the safe link is missing from the {name}:\n{text}"
        );
    }
}

const FEEDS_AND_PAGE: [&str; 4] = ["archive page", "RSS", "Atom", "JSON Feed"];
const EMAIL: [&str; 3] = ["email HTML", "email text", "email message"];

#[test]
fn javascript_urls_reach_no_feed_and_no_archive_page() {
    assert_clean(
        "javascript",
        "javascript:alert(document.domain)",
        &FEEDS_AND_PAGE,
    );
}

#[test]
fn javascript_urls_reach_no_email_part() {
    assert_clean("javascript", "javascript:alert(document.domain)", &EMAIL);
}

#[test]
fn vbscript_urls_reach_no_feed_and_no_archive_page() {
    assert_clean("vbscript", "vbscript:msgbox(1)", &FEEDS_AND_PAGE);
}

#[test]
fn vbscript_urls_reach_no_email_part() {
    assert_clean("vbscript", "vbscript:msgbox(1)", &EMAIL);
}

#[test]
fn data_urls_reach_no_feed_and_no_archive_page() {
    assert_clean(
        "data",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        &FEEDS_AND_PAGE,
    );
    assert_clean(
        "data",
        "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
        &FEEDS_AND_PAGE,
    );
}

#[test]
fn data_urls_reach_no_email_part() {
    assert_clean(
        "data",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        &EMAIL,
    );
    assert_clean(
        "data",
        "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
        &EMAIL,
    );
}

#[test]
fn a_cover_with_an_unsafe_scheme_is_an_error_naming_its_line() {
    let site = Site::new().issue(
        "2024-03-01-cover.md",
        "---\ntitle: t\ndate: 2024-03-01\ncover: \"javascript:alert(1)\"\n---\nbody\n",
    );
    let out = site.run(&["build"]).failure();
    assert!(
        out.stdout.contains("2024-03-01-cover.md:4:")
            || out.stderr.contains("2024-03-01-cover.md:4:"),
        "{out:?}"
    );
    assert!(
        format!("{out:?}").contains("`cover` must be an http(s) URL"),
        "{out:?}"
    );
}
