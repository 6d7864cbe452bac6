//! feedpost pointed at a Hugo site (`tests/fixtures/hugo`): the newsletter's pages picked out of
//! the blog section by `site.include`, leaf and branch bundles, bundle images, Hugo's date keys,
//! hostile links, and permalinks where the site serves its pages (`permalink_prefix = "blog/"`).

use std::path::Path;

use crate::check::relative;
use crate::support::{assert_golden, files_under, Output, Site};

/// The fixture's blog section, as the tests name its files.
const BLOG: &str = "content/zh/blog";

/// A copy of `tests/fixtures/hugo` (its `feedpost.toml` included) with the clock pinned.
fn hugo_site() -> Site {
    let site = Site::new().env("FEEDPOST_NOW", "2024-04-01T00:00:00Z");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hugo");
    copy_tree(&fixture, site.path());
    site
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `feedpost ARGS` with the fixture's own config (not the one `Site` writes).
fn run(site: &Site, args: &[&str]) -> Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedpost"))
        .arg("--config")
        .arg(site.path().join("feedpost.toml"))
        .args(args)
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .env("FEEDPOST_LOG", "info")
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir` of the site, relative to it, sorted.
fn files(site: &Site, dir: &str) -> Vec<String> {
    let all = files_under(&site.path().join(dir));
    all.into_iter().map(|(rel, _)| rel).collect()
}

#[test]
fn the_newsletters_pages_are_the_issues_slugged_by_their_bundles() {
    let site = hugo_site();
    run(&site, &["build"])
        .success()
        .stdout_contains("built feeds for 4 issues (4 published)");
    let pages: Vec<String> = files(&site, "newsletter")
        .into_iter()
        .filter(|f| f.ends_with("index.html") && f != "index.html")
        .collect();
    // Leaf bundles by their folder, the single page by its file; not the branch bundles'
    // _index.md, nor the blog posts `include` leaves out.
    assert_eq!(
        pages,
        [
            "blog/sofa-weekly-0108/index.html",
            "blog/sofa-weekly-0515/index.html",
            "blog/sofa-weekly-0703/index.html",
            "blog/sofa-weekly-0716/index.html",
        ]
    );
    let rss = site.read("newsletter/rss.xml");
    for slug in [
        "sofa-weekly-0716",
        "sofa-weekly-0108",
        "sofa-weekly-0703",
        "sofa-weekly-0515",
    ] {
        let guid = format!("<guid>https://www.sofastack.tech/blog/{slug}/</guid>");
        assert!(rss.contains(&guid), "no {guid} in\n{rss}");
    }
    assert!(!rss.contains("MOSN release notes") && !rss.contains("KubeCon"));
    assert!(
        !rss.contains("博客"),
        "a branch bundle's _index.md became an issue"
    );
    // Dates from publishDate, pubDate and published, newest first.
    let dates: Vec<&str> = rss
        .split("<pubDate>")
        .skip(2)
        .map(|p| p.split('<').next().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "Fri, 16 Jul 2021 15:00:00 +0800",
            "Fri, 08 Jan 2021 17:00:00 +0800",
            "Fri, 03 Jul 2020 17:00:00 +0800",
            "Fri, 15 May 2020 17:00:00 +0800",
        ]
    );
}

#[test]
fn bundle_images_resolve_against_the_bundles_page_and_are_copied_beside_it() {
    let site = hugo_site();
    run(&site, &["build"]).success();
    let page = site.read("newsletter/blog/sofa-weekly-0515/index.html");
    let image = "https://www.sofastack.tech/blog/sofa-weekly-0515/arch.png";
    assert!(page.contains(&format!(r#"src="{image}""#)), "{page}");
    // Relative links too: the site root, and a sibling page of the section.
    assert!(page.contains(r#"href="https://www.sofastack.tech/blog/sofa-weekly-0108/""#));
    let cover = "https://www.sofastack.tech/blog/sofa-weekly-0515/cover.png";
    assert!(page.contains(&format!(r#"<meta property="og:image" content="{cover}">"#)));
    let rss = site.read("newsletter/rss.xml");
    assert!(rss.contains(image) && rss.contains(&format!(r#"url="{cover}""#)));
    assert!(site
        .read("newsletter/feed.json")
        .contains("https://www.sofastack.tech/blog/sofa-weekly-0703/images/live.png"));
    // A single page's relative links stay against the site.
    assert!(site
        .read("newsletter/blog/sofa-weekly-0108/index.html")
        .contains(r#"src="https://www.sofastack.tech/img/x.png""#));

    // The bundles' files, byte for byte, and nothing of the pages left out.
    let copies: Vec<String> = files(&site, "newsletter/blog")
        .into_iter()
        .filter(|f| !f.ends_with("index.html"))
        .collect();
    assert_eq!(
        copies,
        [
            "sofa-weekly-0515/arch.png",
            "sofa-weekly-0515/cover.png",
            "sofa-weekly-0703/images/live.png",
        ]
    );
    for copy in &copies {
        let original = std::fs::read(site.path().join(BLOG).join(copy)).unwrap();
        let copied = std::fs::read(site.path().join("newsletter/blog").join(copy)).unwrap();
        assert_eq!(original, copied, "{copy}");
    }

    // The email shows the bundle's image at the same URL.
    let preview = site.path().join("preview");
    let issue = site.path().join(BLOG).join("sofa-weekly-0515/index.md");
    run(
        &site,
        &[
            "preview",
            issue.to_str().unwrap(),
            "--out",
            preview.to_str().unwrap(),
        ],
    )
    .success();
    assert!(site
        .read("preview/sofa-weekly-0515.html")
        .contains(&format!(r#"src="{image}""#)));
}

#[test]
fn no_output_carries_a_hostile_link() {
    let site = hugo_site();
    run(&site, &["build"]).success();
    let issue = site.path().join(BLOG).join("sofa-weekly-0703/index.md");
    let preview = site.path().join("newsletter-preview");
    let (issue, preview) = (issue.to_str().unwrap(), preview.to_str().unwrap());
    run(&site, &["preview", issue, "--out", preview]).success();
    let mut outputs = files_under(&site.path().join("newsletter"));
    outputs.extend(files_under(&site.path().join("newsletter-preview")));
    for (name, path) in outputs {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).to_lowercase();
        for scheme in ["javascript:", "vbscript:", "data:text/html"] {
            assert!(!text.contains(scheme), "{name} holds {scheme}");
        }
    }
    // The empty link `报名[链接]()` shows its text and links nowhere: not to "" (a relative
    // reference the feed validator warns about) nor to the page itself.
    let page = site.read("newsletter/blog/sofa-weekly-0703/index.html");
    assert!(page.contains("报名<a>链接</a>"), "{page}");
    for feed in ["rss.xml", "atom.xml", "feed.json"] {
        let text = site.read(&format!("newsletter/{feed}"));
        let empty = [r#"href="""#, "href=&quot;&quot;", r#"href=\"\""#];
        assert!(!empty.iter().any(|e| text.contains(e)), "{feed}");
    }
}

#[test]
fn a_bundle_file_changed_or_removed_is_copied_again_or_removed() {
    let site = hugo_site();
    run(&site, &["build"]).success();
    let bundle = site.path().join(BLOG).join("sofa-weekly-0515");
    std::fs::write(bundle.join("arch.png"), "a new picture").unwrap();
    std::fs::remove_file(bundle.join("cover.png")).unwrap();
    run(&site, &["build"])
        .success()
        .stdout_contains(", 1 removed)");
    assert_eq!(
        site.read("newsletter/blog/sofa-weekly-0515/arch.png"),
        "a new picture"
    );
    assert!(!site
        .path()
        .join("newsletter/blog/sofa-weekly-0515/cover.png")
        .exists());
    // Unchanged: nothing rendered, nothing copied.
    run(&site, &["build"])
        .success()
        .stdout_contains(": 0 files changed (0 of ");
}

#[test]
fn check_reports_what_readers_of_the_site_would_trip_on() {
    let site = hugo_site();
    let out = run(&site, &["check"]).success();
    let stdout = relative(&site, &out.stdout);
    assert_golden("hugo/check.txt", &stdout);
    assert!(
        stdout.ends_with("\n0 errors, 7 warnings in 4 issues and 1 subscriber\n"),
        "{stdout}"
    );
}

#[test]
fn a_path_with_colon_space_is_quoted_in_messages() {
    let site = Site::new().issue("Q&A: week 1.md", "---\ntitle: t\ndate: someday\n---\n");
    let out = site.run(&["build"]).failure();
    out.stderr_contains("issues/Q&A: week 1.md\":3: cannot read the date `someday`");
    let stderr = relative(&site, &out.stderr);
    assert!(
        stderr.contains("error: \"SITE/issues/Q&A: week 1.md\":3: "),
        "{stderr}"
    );
}
