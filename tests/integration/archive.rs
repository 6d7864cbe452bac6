//! `feedpost build`: the web archive — a page per issue where its permalink points, and the index.

use crate::support::{issue, Site};

fn site() -> Site {
    Site::new()
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .issue(
            "2024-03-01-weekly.md",
            &issue(
                "MOSN 1.6 发布",
                "2024-03-01T15:00:00+08:00",
                &["MOSN"],
                "> 问题\n\n更多见 [文档](/projects/mosn/)。\n",
            ),
        )
        .issue(
            "2024-03-08-weekly.md",
            &issue(
                "Seata <2.0> 进展",
                "2024-03-08T15:00:00+08:00",
                &["Seata"],
                "正文\n",
            ),
        )
        .issue(
            "2024-03-22-draft.md",
            "---\ntitle: 草稿\ndate: 2024-03-22T15:00:00+08:00\ndraft: true\n---\n草稿正文\n",
        )
        .issue(
            "2024-05-01-future.md",
            &issue("未来一期", "2024-05-01T15:00:00+08:00", &[], "未来\n"),
        )
}

#[test]
fn each_published_issue_gets_a_page_at_its_permalink() {
    let site = site();
    site.run(&["build"]).success();
    let page = site.read("feeds/issues/2024-03-01-weekly/index.html");
    assert!(page.starts_with("<!DOCTYPE html><html lang=\"zh-CN\">"));
    assert!(page.contains("<h1>MOSN 1.6 发布</h1>"));
    // The email's content, links absolute.
    assert!(
        page.contains("<blockquote>\n<p>问题</p>\n</blockquote>"),
        "{page}"
    );
    assert!(page.contains(r#"<a href="https://www.sofastack.tech/projects/mosn/">文档</a>"#));
    assert!(!page.contains("href=\"/"), "relative link in the page");
    // Feed autodiscovery, canonical link, Open Graph with the cover.
    for (kind, file) in [
        ("application/rss+xml", "rss.xml"),
        ("application/atom+xml", "atom.xml"),
        ("application/feed+json", "feed.json"),
    ] {
        assert!(
            page.contains(&format!(r#"type="{kind}" title="SOFA Weekly ("#))
                && page.contains(&format!(r#"href="https://www.sofastack.tech/{file}">"#)),
            "no autodiscovery link for {kind}"
        );
    }
    assert!(page.contains(
        r#"<link rel="canonical" href="https://www.sofastack.tech/issues/2024-03-01-weekly/">"#
    ));
    assert!(page.contains(r#"<meta property="og:title" content="MOSN 1.6 发布">"#));
    assert!(
        page.contains(r#"<meta property="og:image" content="https://cdn.example.org/cover.png">"#)
    );
    assert!(page.contains(r#"<meta property="og:type" content="article">"#));
    assert!(page.contains(r#"<img class="cover" src="https://cdn.example.org/cover.png""#));
    assert!(page.contains(r#"href="https://www.sofastack.tech/tags/mosn/rss.xml""#));
    // Titles are escaped.
    assert!(site
        .read("feeds/issues/2024-03-08-weekly/index.html")
        .contains("<h1>Seata &lt;2.0&gt; 进展</h1>"));
    // Drafts and future issues get no page.
    assert!(!site.path().join("feeds/issues/2024-03-22-draft").exists());
    assert!(!site.path().join("feeds/issues/2024-05-01-future").exists());
    assert!(site.read("feeds/archive.css").contains(".masthead"));
}

#[test]
fn the_index_lists_issues_newest_first() {
    let site = site();
    site.run(&["build"]).success();
    let index = site.read("feeds/index.html");
    let newer = index
        .find(r#"href="https://www.sofastack.tech/issues/2024-03-08-weekly/""#)
        .expect("newer issue listed");
    let older = index
        .find(r#"href="https://www.sofastack.tech/issues/2024-03-01-weekly/""#)
        .expect("older issue listed");
    assert!(newer < older);
    assert!(!index.contains("草稿"));
    assert!(!index.contains("未来一期"));
    assert!(index.contains(r#"<link rel="alternate" type="application/rss+xml""#));
    assert!(index.contains(r#"href="https://www.sofastack.tech/tags/seata/rss.xml""#));
}

#[test]
fn the_emails_view_in_browser_link_is_the_page() {
    let site = site();
    site.run(&["build"]).success();
    site.preview("2024-03-01-weekly.md", &["--to", "reader@example.org"]);
    let html = site.read("preview/2024-03-01-weekly.html");
    let link = "https://www.sofastack.tech/issues/2024-03-01-weekly/";
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    // base_url + path → the file under the feeds folder.
    let rel = link.strip_prefix("https://www.sofastack.tech/").unwrap();
    assert!(site
        .path()
        .join("feeds")
        .join(rel)
        .join("index.html")
        .is_file());
}

#[test]
fn a_slug_over_a_site_file_is_refused_without_a_prefix() {
    let site = site().site_config("permalink_prefix = \"\"").issue(
        "x.md",
        "---\ntitle: x\ndate: 2024-03-02T00:00:00Z\nslug: rss.xml\n---\nx\n",
    );
    let out = site.run(&["build"]).failure();
    out.stderr_contains(
        "x.md:1: the slug `rss.xml` would put the issue's page over the site's `rss.xml`",
    );
    // The rest of the site is still built, pages beside the feeds.
    assert!(site
        .read("feeds/2024-03-01-weekly/index.html")
        .contains("MOSN"));
    assert!(site.read("feeds/rss.xml").contains("<rss"));
}
