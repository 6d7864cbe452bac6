//! `feedpost preview`: the message for a sample recipient, pinned for a golden `.eml`.

use crate::support::{assert_golden, Site};

#[test]
fn preview_writes_eml_html_and_text() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/site/issues/2024-03-01-sofa-weekly.md");
    let site = Site::new()
        .env("FEEDPOST_NOW", "2024-03-01T08:00:00Z")
        .issue(
            "2024-03-01-sofa-weekly.md",
            &std::fs::read_to_string(fixture).unwrap(),
        )
        .subscribers("[[subscribers]]\nemail = \"reader@example.org\"\nname = \"读者\"\n");
    let out_dir = site.path().join("preview");
    site.run(&[
        "preview",
        site.path()
            .join("issues/2024-03-01-sofa-weekly.md")
            .to_str()
            .unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--no-screenshots",
    ])
    .success();
    let eml = site.read("preview/2024-03-01-sofa-weekly.eml");
    assert_golden("site/2024-03-01-sofa-weekly.eml", &eml);
    let html = site.read("preview/2024-03-01-sofa-weekly.html");
    assert_golden("site/2024-03-01-sofa-weekly.html", &html);
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "{}",
        &html[..80.min(html.len())]
    );
    assert!(html.contains("读者，你好！"));
    let text = site.read("preview/2024-03-01-sofa-weekly.txt");
    assert_golden("site/2024-03-01-sofa-weekly.txt", &text);
    assert!(text.contains("读者，你好！"));
    assert!(text.contains("https://www.sofastack.tech/issues/2024-03-01-sofa-weekly/"));
    assert!(
        !site.ledger().exists(),
        "preview must not create the ledger"
    );
    // Every line of the message fits RFC 5322's 998-octet limit.
    assert!(eml.lines().all(|l| l.len() <= 998));
}

/// The width and height of a PNG, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Runs `feedpost preview issues/<name> --out <site>/preview`, which must succeed; returns what
/// it printed and the output folder.
fn preview(site: &Site, name: &str) -> (crate::support::Output, std::path::PathBuf) {
    let out_dir = site.path().join("preview");
    let issue = site.path().join("issues").join(name);
    let out = site
        .run(&[
            "preview",
            issue.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .success();
    (out, out_dir)
}

fn one_issue_site() -> Site {
    Site::new().env("FEEDPOST_NOW", "2024-03-01T08:00:00Z").issue(
        "2024-03-01-weekly.md",
        &crate::support::issue(
            "MOSN 1.6 发布",
            "2024-03-01T15:00:00+08:00",
            &["MOSN"],
            "正文，很长的链接 https://github.com/sofastack/sofa-jraft/blob/master/jraft-core/src/main/java/com/alipay/sofa/jraft/core/CliServiceImpl.java#L190 不会撑宽页面。\n",
        ),
    )
}

#[test]
fn preview_writes_screenshots_at_600_and_375_pixels_light_and_dark() {
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Chromium (.ci/run)"
        );
        eprintln!("skipped: /usr/bin/chromium is not installed (apt-get install chromium)");
        return;
    }
    let site = one_issue_site().env("FEEDPOST_CHROMIUM", "/usr/bin/chromium");
    let (out, out_dir) = preview(&site, "2024-03-01-weekly.md");
    let mut heights = Vec::new();
    for (width, scheme) in [(600, "light"), (600, "dark"), (375, "light"), (375, "dark")] {
        let path = out_dir.join(format!("2024-03-01-weekly-{width}-{scheme}.png"));
        assert!(
            out.stdout.contains(path.to_str().unwrap()),
            "{}",
            out.stdout
        );
        let (w, h) = png_size(&std::fs::read(&path).unwrap());
        assert_eq!(w, width, "{}", path.display());
        heights.push(h);
    }
    // The whole page is captured, and the narrow screen makes it taller.
    assert!(heights.iter().all(|&h| h > 400), "{heights:?}");
    assert!(heights[2] > heights[0], "{heights:?}");
}

#[test]
fn preview_without_chromium_writes_the_message_and_says_how_to_install_it() {
    let site = one_issue_site().env("FEEDPOST_CHROMIUM", "/nonexistent/chromium");
    let (out, out_dir) = preview(&site, "2024-03-01-weekly.md");
    assert!(
        out.stderr.contains("apt-get install chromium"),
        "{}",
        out.stderr
    );
    assert!(out_dir.join("2024-03-01-weekly.html").exists());
    assert!(!out_dir.join("2024-03-01-weekly-600-light.png").exists());
}
