//! `feedpost serve --local`: the real binary on a loopback port, driven over real HTTP — the
//! archive with every link on the local address, each issue's email, and a live reload: an
//! issue changed on disk, the reload event read from the event stream, the page changed.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::serve::{get, Server};
use crate::support::{issue, Site};

/// A site with a published issue, a draft and one subscriber, and no `[serve]` table nor
/// `FEEDPOST_SECRET`.
fn site() -> Site {
    Site::new()
        .issue(
            "2024-03-01-weekly.md",
            &issue(
                "SOFA Weekly | 一",
                "2024-03-01T15:00:00+08:00",
                &["MOSN"],
                "One. [二](/issues/2024-03-08-draft/)\n",
            ),
        )
        .issue(
            "2024-03-08-draft.md",
            "---\ntitle: \"草稿\"\ndate: 2024-03-08T15:00:00+08:00\ndraft: true\n---\nNot yet.\n",
        )
        .subscribers("[[subscribers]]\nemail = \"ada@example.org\"\nname = \"Ada\"\n")
}

/// The build id a page of the preview was served from (its script's `data-build`).
fn build_of(page: &str) -> String {
    let at = page.find("data-build=\"").expect("the live reload script") + 12;
    page[at..].split('"').next().unwrap().to_string()
}

/// Opens the event stream of `server` for builds after `since`; returns the reader once the
/// server has answered (so the stream is listening before anything changes).
fn events(server: &Server, since: &str) -> impl BufRead {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .get(format!("{}/_feedpost/events?since={since}", server.base))
        .call()
        .expect("the event stream");
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    BufReader::new(response.into_body().into_reader())
}

/// Reads `stream` until a `reload` event; panics if it ends first.
fn wait_for_reload(stream: &mut impl BufRead) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stream
            .read_line(&mut line)
            .expect("reading the event stream");
        assert!(n > 0, "the event stream ended without a reload");
        if line.trim() == "event: reload" {
            return;
        }
    }
}

#[test]
fn the_archive_feeds_and_emails_are_served_with_local_links_and_reload_on_a_change() {
    let site = site();
    let server = Server::start_with(&site, &["serve", "--local", "--port", "0"]);
    let base = format!("{}/", server.base);

    // Every link and the stylesheets are on the local server, and each resolves there.
    let index = get(&base);
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains(&format!("href=\"{base}archive.css\"")),
        "{}",
        index.body
    );
    assert!(!index.body.contains("sofastack.tech"), "{}", index.body);
    let page_url = format!("{base}issues/2024-03-01-weekly/");
    assert!(index.body.contains(&page_url));
    let rss = get(&format!("{base}rss.xml"));
    assert_eq!(rss.content_type, "application/rss+xml");
    assert!(
        rss.body.contains(&format!("href=\"{base}feed.xsl\"")),
        "{}",
        rss.body
    );
    assert_eq!(get(&format!("{base}feed.xsl")).status, 200);
    assert_eq!(get(&format!("{base}archive.css")).status, 200);
    // Drafts are shown, and links to them work.
    let draft = get(&format!("{base}issues/2024-03-08-draft/"));
    assert_eq!(draft.status, 200);
    assert!(draft.body.contains("Not yet."));

    // The email, HTML and text side by side, as the first subscriber gets it.
    let overview = get(&format!("{base}_feedpost/"));
    assert!(
        overview.body.contains("/_feedpost/email/2024-03-01-weekly"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("draft"));
    let email = get(&format!("{base}_feedpost/email/2024-03-01-weekly"));
    assert_eq!(email.status, 200);
    assert!(email
        .body
        .contains("<iframe src=\"/_feedpost/email/2024-03-01-weekly/html\""));
    assert!(
        email.body.contains("Ada，你好！"),
        "the text part greets the subscriber: {}",
        email.body
    );
    let html = get(&format!("{base}_feedpost/email/2024-03-01-weekly/html"));
    assert!(html.body.contains("Ada，你好！"));
    assert!(
        html.body.contains(&page_url),
        "the email's links are local too"
    );
    assert!(
        !html.body.contains("/_feedpost/live.js"),
        "the frame gets no script"
    );

    // No secret, no [serve]: the subscription pages are off, and say so.
    let off = get(&format!("{base}subscribe"));
    assert_eq!(off.status, 404);
    assert!(
        off.body.contains("off in the local preview"),
        "{}",
        off.body
    );

    // Change the issue; the open page's event stream announces the rebuild.
    let before = get(&page_url);
    assert!(before.body.contains("SOFA Weekly | 一"));
    let mut since = build_of(&before.body);
    let mut stream = events(&server, &since);
    let path = site.path().join("issues/2024-03-01-weekly.md");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("One.", "Changed on disk.")).unwrap();
    let after = loop {
        wait_for_reload(&mut stream);
        let page = get(&page_url);
        if page.body.contains("Changed on disk.") {
            break page;
        }
        // A build that began before the write: wait for the next one.
        since = build_of(&page.body);
        stream = events(&server, &since);
    };
    assert_ne!(build_of(&after.body), build_of(&before.body));

    // A page from before the rebuild hears of it at once.
    let mut stale = events(&server, &build_of(&before.body));
    wait_for_reload(&mut stale);

    let (code, log) = server.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !site.path().join("feeds").exists(),
        "the real feeds folder is not touched"
    );
}

#[test]
fn a_bad_issue_is_shown_in_the_browser_and_the_rest_still_served() {
    let site = site().issue("broken.md", "---\ntitle: broken\n---\nNo date.\n");
    let server = Server::start_with(&site, &["serve", "--local", "--port", "0"]);
    let page = get(&format!("{}/issues/2024-03-01-weekly/", server.base));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("1 problem in the last build"),
        "{}",
        page.body
    );
    let overview = get(&format!("{}/_feedpost/", server.base));
    assert!(
        overview.body.contains("broken.md:1: missing `date`"),
        "{}",
        overview.body
    );
}

#[test]
fn hide_drafts_leaves_them_out_as_the_published_site_will() {
    let site = site();
    let server = Server::start_with(&site, &["serve", "--local", "--port", "0", "--hide-drafts"]);
    assert_eq!(
        get(&format!("{}/issues/2024-03-08-draft/", server.base)).status,
        404
    );
    let email = get(&format!("{}/_feedpost/email/2024-03-08-draft", server.base));
    assert_eq!(email.status, 200, "a draft's email is still previewed");
}

#[test]
fn a_busy_port_is_refused_with_what_to_pass_instead() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = site().run(&["serve", "--local", "--port", &port]).failure();
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && out.stderr.contains("--port 0"),
        "{}",
        out.stderr
    );
}
