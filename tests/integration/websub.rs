//! WebSub: with `site.websub_hub`, `publish` tells the hub (a real HTTP server on loopback)
//! which feeds changed; a hub that is down is a warning, never a failed publish.

use crate::support::http_server::HttpServer;
use crate::support::{issue, Output, Site};

fn site(hub: &str) -> Site {
    Site::new()
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .site_config(&format!("websub_hub = \"{hub}\""))
        .issue(
            "2024-03-01-weekly.md",
            &issue("第 1 期", "2024-03-01T15:00:00+08:00", &["MOSN"], "正文\n"),
        )
        .subscribers("[[subscribers]]\nemail = \"reader@example.org\"\n")
}

/// [`site`] with the hub at `hub`, published: the one subscriber got the issue.
fn published(hub: &str) -> (Site, Output) {
    let site = site(hub);
    let out = site.run(&["publish"]).success();
    out.stdout_contains("sent 1");
    (site, out)
}

#[test]
fn publish_pings_the_hub_for_each_changed_feed() {
    let hub = HttpServer::start(204);
    let (site, _) = published(&hub.url());
    // rss.xml, atom.xml, feed.json, and the category and tag feeds the issue is in (3 × 3).
    // publish waits for the hub's answer to each ping, and the hub records a request before it
    // answers: when publish has exited, every ping it made is recorded.
    let requests = hub.requests();
    let mut topics: Vec<String> = requests
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(
                r.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
            let form = r.form();
            assert_eq!(form[0], ("hub.mode".to_string(), "publish".to_string()));
            assert_eq!(form[1].0, "hub.url");
            form[1].1.clone()
        })
        .collect();
    assert_eq!(
        &topics[..3],
        [
            "https://www.sofastack.tech/rss.xml",
            "https://www.sofastack.tech/atom.xml",
            "https://www.sofastack.tech/feed.json",
        ]
    );
    topics.sort();
    assert!(topics.contains(&"https://www.sofastack.tech/tags/mosn/rss.xml".to_string()));
    assert!(
        topics.contains(&"https://www.sofastack.tech/categories/sofa-weekly/feed.json".to_string())
    );
    assert_eq!(topics.len(), 9, "{topics:#?}");
    // The feeds name the hub.
    assert!(site
        .read("feeds/atom.xml")
        .contains(&format!(r#"<link href="{}" rel="hub"/>"#, hub.url())));
}

#[test]
fn a_hub_that_refuses_or_is_down_is_only_a_warning() {
    let refusing = HttpServer::start(503);
    let (_, out) = published(&refusing.url());
    out.stderr_contains("answered 503").stderr_contains("WARN");
    // One refusal stops the pings: the hub is not asked eight more times.
    assert_eq!(refusing.requests().len(), 1);

    // Nothing listens on this port any more.
    let url = {
        let gone = HttpServer::start(204);
        gone.url()
    };
    let (_, out) = published(&url);
    out.stderr_contains("cannot reach the WebSub hub");
}

#[test]
fn build_does_not_ping() {
    let hub = HttpServer::start(204);
    let site = site(&hub.url());
    site.run(&["build"]).success();
    // A ping would have been answered (and so recorded) before build exited.
    assert!(hub.requests().is_empty());
}
