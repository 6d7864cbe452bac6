//! `feedpost build`: RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds — main, per tag and per category,
//! RFC 5005 archives — checked byte for byte, with feed-rs, and for what readers need.

use crate::support::{assert_golden, files_under, issue, Site};

fn fixture_site() -> Site {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/site/issues");
    let mut site = Site::new().env("FEEDPOST_NOW", "2024-04-01T00:00:00Z");
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        site = site.issue(&name, &std::fs::read_to_string(&path).unwrap());
    }
    site
}

#[test]
fn rss_and_atom_match_the_golden_files() {
    let site = fixture_site();
    site.run(&["build"]).success();
    assert_golden("site/rss.xml", &site.read("feeds/rss.xml"));
    assert_golden("site/atom.xml", &site.read("feeds/atom.xml"));
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let site = fixture_site();
    site.run(&["build"]).success();
    let first = (site.read("feeds/rss.xml"), site.read("feeds/atom.xml"));
    let out = site.run(&["build"]).success();
    out.stdout_contains("0 files changed");
    assert_eq!(
        first,
        (site.read("feeds/rss.xml"), site.read("feeds/atom.xml"))
    );
}

#[test]
fn feeds_hold_what_readers_need() {
    let site = fixture_site();
    site.run(&["build"]).success();
    let rss = site.read("feeds/rss.xml");
    assert!(rss.contains(r#"<atom:link href="https://www.sofastack.tech/rss.xml" rel="self" type="application/rss+xml"/>"#));
    assert!(rss.contains("<language>zh-CN</language>"));
    assert!(rss.contains("<dc:creator>SOFA 团队</dc:creator>"));
    assert!(
        !rss.contains("<author>"),
        "a bare name in <author> is invalid RSS"
    );
    assert!(rss.contains("<category>SOFA Weekly</category>"));
    assert!(rss.contains("<content:encoded>"));
    // Drafts and future issues get no entry; the newest is first.
    assert!(!rss.contains("草稿"));
    let first = rss.find("<item>").unwrap();
    let newest = rss[first..].find("SOFAJRaft 1.4").unwrap();
    let oldest = rss[first..].find("MOSN 1.6").unwrap();
    assert!(newest < oldest, "items must be newest first");
    let atom = site.read("feeds/atom.xml");
    assert!(atom.contains(r#"<link href="https://www.sofastack.tech/atom.xml" rel="self" type="application/atom+xml"/>"#));
    assert!(atom.contains(r#"<content type="html">"#));
    // Relative links in the body were made absolute.
    assert!(!rss.contains("href=\"/"), "relative href left in RSS");
    assert!(!atom.contains("href=&quot;/"), "relative href left in Atom");
}

#[test]
fn feed_entries_limits_the_feed() {
    let site = fixture_site().site_config("feed_entries = 1");
    site.run(&["build"]).success();
    assert_eq!(site.read("feeds/rss.xml").matches("<item>").count(), 1);
    assert_eq!(site.read("feeds/atom.xml").matches("<entry>").count(), 1);
}

/// Every feed document under `dir` (relative to the site): `*.xml` and `*.json`, sorted.
fn feed_files(site: &Site, dir: &str) -> Vec<std::path::PathBuf> {
    (files_under(&site.path().join(dir)).into_iter())
        .map(|(_, path)| path)
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "xml"))
        .collect()
}

/// A site of `n` issues, one a week from Monday 2024-01-01 (five in January, four a month
/// after), tagged in turn MOSN / Seata / 周报.
fn many_issues(n: usize) -> Site {
    let mut site = Site::new().env("FEEDPOST_NOW", "2030-01-01T00:00:00Z");
    for i in 0..n {
        let tag = ["MOSN", "Seata", "周报"][i % 3];
        let day = chrono_free_date(7 * i);
        site = site.issue(
            &format!("{day}-weekly.md"),
            &issue(
                &format!("第 {i} 期"),
                &format!("{day}T15:00:00+08:00"),
                &["SOFA Weekly", tag],
                &format!("正文 {i}，[归档](/blog/{i}/)\n"),
            ),
        );
    }
    site
}

/// `2024-01-01` plus `days`, as `YYYY-MM-DD` (days < 365, 2024 being a leap year).
fn chrono_free_date(days: usize) -> String {
    let months = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let (mut month, mut day) = (0, days);
    while day >= months[month] {
        day -= months[month];
        month += 1;
    }
    format!("2024-{:02}-{:02}", month + 1, day + 1)
}

#[test]
fn json_feed_matches_the_golden_file() {
    let site = fixture_site();
    site.run(&["build"]).success();
    assert_golden("site/feed.json", &site.read("feeds/feed.json"));
}

#[test]
fn feed_rs_reads_every_feed_and_ids_are_the_permalinks() {
    let site = many_issues(13).site_config("feed_entries = 4");
    site.run(&["build"]).success();
    let files = feed_files(&site, "feeds");
    // 3 main + 3 × (1 category + 4 tags) + RFC 5005 archives: 13 weekly issues, March the
    // newest month → January and February, per format (RSS and Atom).
    assert_eq!(files.len(), 3 + 3 * 5 + 2 * 2, "{files:#?}");
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let feed = feed_rs::parser::parse(bytes.as_slice())
            .unwrap_or_else(|e| panic!("feed-rs cannot read {}: {e}", path.display()));
        assert!(!feed.entries.is_empty(), "{}", path.display());
        for entry in &feed.entries {
            assert!(
                entry.id.starts_with("https://www.sofastack.tech/issues/")
                    && entry.id.ends_with("-weekly/"),
                "{}: entry id {}",
                path.display(),
                entry.id
            );
            assert!(entry.content.is_some(), "{}: no content", path.display());
        }
    }
}

#[test]
fn guid_atom_id_json_id_and_the_emails_header_are_one_permalink() {
    let site = fixture_site();
    site.run(&["build"]).success();
    let permalink = "https://www.sofastack.tech/issues/2024-03-15-sofa-weekly/";
    assert!(site
        .read("feeds/rss.xml")
        .contains(&format!("<guid>{permalink}</guid>")));
    assert!(site
        .read("feeds/atom.xml")
        .contains(&format!("<id>{permalink}</id>")));
    let json: serde_json::Value = serde_json::from_str(&site.read("feeds/feed.json")).unwrap();
    assert_eq!(json["items"][0]["id"], permalink);
    assert_eq!(json["items"][0]["url"], permalink);
    site.preview("2024-03-15-sofa-weekly.md", &[]);
    let eml = site.read("preview/2024-03-15-sofa-weekly.eml");
    assert!(
        eml.contains(&format!("X-Feed-Guid: {permalink}\r\n")),
        "{eml}"
    );
}

#[test]
fn json_feed_has_the_fields_of_json_feed_1_1() {
    let site = fixture_site();
    site.run(&["build"]).success();
    let json: serde_json::Value = serde_json::from_str(&site.read("feeds/feed.json")).unwrap();
    assert_eq!(json["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(json["title"], "SOFA Weekly");
    assert_eq!(json["home_page_url"], "https://www.sofastack.tech/");
    assert_eq!(json["feed_url"], "https://www.sofastack.tech/feed.json");
    let item = &json["items"][0];
    for key in [
        "id",
        "url",
        "title",
        "content_html",
        "summary",
        "date_published",
        "authors",
        "tags",
    ] {
        assert!(!item[key].is_null(), "item has no {key}: {item}");
    }
    assert_eq!(item["date_published"], "2024-03-15T15:00:00+08:00");
    assert_eq!(item["tags"][2], "MOSN");
    // The 2024-03-01 issue has a cover.
    let with_cover = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| !i["image"].is_null())
        .expect("an item with image");
    assert!(with_cover["image"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
}

#[test]
fn the_cover_is_in_every_format_with_its_type() {
    let site = many_issues(1);
    site.run(&["build"]).success();
    let cover = "https://cdn.example.org/cover.png";
    assert!(site.read("feeds/rss.xml").contains(&format!(
        r#"<media:content medium="image" type="image/png" url="{cover}"></media:content>"#
    )));
    assert!(site.read("feeds/atom.xml").contains(&format!(
        r#"<link href="{cover}" rel="enclosure" type="image/png"/>"#
    )));
    assert!(site
        .read("feeds/feed.json")
        .contains(&format!(r#""image": "{cover}""#)));
}

#[test]
fn tag_and_category_feeds_list_only_their_issues_under_url_safe_slugs() {
    let site = many_issues(6);
    site.run(&["build"]).success();
    let mosn = site.read("feeds/tags/mosn/rss.xml");
    assert_eq!(mosn.matches("<item>").count(), 2);
    assert!(mosn.contains("<title>SOFA Weekly · MOSN</title>"));
    assert!(mosn
        .contains(r#"<atom:link href="https://www.sofastack.tech/tags/mosn/rss.xml" rel="self""#));
    // A CJK tag keeps its letters on disk and is percent-encoded (UTF-8) in its URLs.
    let cjk = site.read("feeds/tags/周报/atom.xml");
    assert!(cjk.contains("<id>https://www.sofastack.tech/tags/%E5%91%A8%E6%8A%A5/atom.xml</id>"));
    assert_eq!(cjk.matches("<entry>").count(), 2);
    let json: serde_json::Value =
        serde_json::from_str(&site.read("feeds/tags/周报/feed.json")).unwrap();
    assert_eq!(
        json["feed_url"],
        "https://www.sofastack.tech/tags/%E5%91%A8%E6%8A%A5/feed.json"
    );
    let category = site.read("feeds/categories/sofa-weekly/atom.xml");
    assert_eq!(category.matches("<entry>").count(), 6);
    // Each tag feed that lists all its issues says so.
    assert!(mosn.contains("<fh:complete></fh:complete>"));
}

#[test]
fn small_feeds_are_complete_and_large_ones_link_stable_archives() {
    // 13 weekly issues: January (5) and February (4) archived, March's four in the feed.
    let site = many_issues(13).site_config("feed_entries = 4");
    site.run(&["build"]).success();
    let rss = site.read("feeds/rss.xml");
    assert!(!rss.contains("<fh:complete"));
    assert_eq!(rss.matches("<item>").count(), 4);
    assert!(rss.contains(
        r#"<atom:link href="https://www.sofastack.tech/archive/rss/2024-02.xml" rel="prev-archive" type="application/rss+xml"/>"#
    ));
    // Follow prev-archive from the subscription document: together the documents hold every
    // issue, and each archive document points back to the subscription document.
    let mut seen: Vec<String> = Vec::new();
    let collect = |text: &str, seen: &mut Vec<String>| {
        for part in text.split("<guid>").skip(1) {
            let id = part.split('<').next().unwrap().to_string();
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
    };
    collect(&rss, &mut seen);
    for (month, items, prev) in [("2024-02", 4, Some("2024-01")), ("2024-01", 5, None)] {
        let doc = site.read(&format!("feeds/archive/rss/{month}.xml"));
        assert!(doc.contains("<fh:archive></fh:archive>"), "{doc}");
        assert!(
            doc.contains(r#"<atom:link href="https://www.sofastack.tech/rss.xml" rel="current""#)
        );
        assert_eq!(doc.matches("<item>").count(), items);
        collect(&doc, &mut seen);
        match prev {
            Some(prev) => {
                assert!(doc.contains(&format!("archive/rss/{prev}.xml\" rel=\"prev-archive\"")))
            }
            None => assert!(!doc.contains("prev-archive")),
        }
    }
    assert_eq!(seen.len(), 13, "{seen:#?}");
    // Atom archive documents carry the subscription feed's id.
    let atom = site.read("feeds/archive/atom/2024-01.xml");
    assert!(atom.contains("<id>https://www.sofastack.tech/atom.xml</id>"));
    assert!(atom.contains(r#"rel="next-archive""#));

    // One more issue, in April: March is archived, the old archive documents keep their bytes.
    let before = site.read("feeds/archive/rss/2024-01.xml");
    let site = site.issue(
        "2024-04-01-weekly.md",
        &issue("新一期", "2024-04-01T15:00:00+08:00", &["MOSN"], "正文\n"),
    );
    site.run(&["build"]).success();
    assert_eq!(site.read("feeds/archive/rss/2024-01.xml"), before);
    assert!(site.read("feeds/rss.xml").contains("新一期"));
    assert_eq!(
        site.read("feeds/archive/rss/2024-03.xml")
            .matches("<item>")
            .count(),
        4
    );
}

#[test]
fn a_small_site_is_complete() {
    let site = fixture_site();
    site.run(&["build"]).success();
    assert!(site
        .read("feeds/rss.xml")
        .contains("<fh:complete></fh:complete>"));
    assert!(site
        .read("feeds/atom.xml")
        .contains("<fh:complete></fh:complete>"));
    assert!(!site.path().join("feeds/archive").exists());
}

#[test]
fn browsers_get_the_stylesheet() {
    let site = fixture_site();
    site.run(&["build"]).success();
    let pi = r#"<?xml-stylesheet type="text/xsl" href="https://www.sofastack.tech/feed.xsl"?>"#;
    for feed in ["feeds/rss.xml", "feeds/atom.xml", "feeds/tags/mosn/rss.xml"] {
        let text = site.read(feed);
        assert_eq!(text.lines().nth(1), Some(pi), "{feed}");
    }
    let xsl = site.read("feeds/feed.xsl");
    assert!(xsl.contains("<xsl:stylesheet"));
    assert!(xsl.contains("match=\"rss/channel\""));
    assert!(xsl.contains("match=\"atom:feed\""));
}

#[test]
fn a_websub_hub_is_linked_from_every_format() {
    let site = fixture_site().site_config("websub_hub = \"https://hub.example.org/\"");
    site.run(&["build"]).success();
    assert!(site
        .read("feeds/rss.xml")
        .contains(r#"<atom:link href="https://hub.example.org/" rel="hub"/>"#));
    assert!(site
        .read("feeds/atom.xml")
        .contains(r#"<link href="https://hub.example.org/" rel="hub"/>"#));
    let json: serde_json::Value = serde_json::from_str(&site.read("feeds/feed.json")).unwrap();
    assert_eq!(json["hubs"][0]["type"], "WebSub");
    assert_eq!(json["hubs"][0]["url"], "https://hub.example.org/");
    // Without a hub, no hub link.
    let plain = fixture_site();
    plain.run(&["build"]).success();
    assert!(!plain.read("feeds/rss.xml").contains("rel=\"hub\""));
}
