//! `feedpost build`: RSS 2.0 and Atom 1.0 feeds, byte for byte.

use crate::support::{assert_golden, Site};

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
    assert!(out.stdout.contains("0 files changed"), "{}", out.stdout);
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
