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
