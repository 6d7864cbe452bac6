//! A site with bad issue files (Zola's test_sites_invalid): `feedpost build` names each bad file
//! and line, writes the feeds for the rest, and exits 1.

use crate::check::{fixture_site, relative};

#[test]
fn build_reports_each_bad_file_and_writes_feeds_for_the_rest() {
    let site = fixture_site("invalid");
    let out = site.run(&["build"]).failure();
    let stderr = relative(&site, &out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors,
        [
            "error: SITE/issues/bad-yaml.md:4: invalid YAML front matter: did not find expected ',' or ']'",
            "error: SITE/issues/binary-junk.md:3: the file is not valid UTF-8: save it as UTF-8",
            "error: SITE/issues/empty.md:1: the file is empty: an issue starts with front matter, e.g. the four lines `---`, `title: \"...\"`, `date: 2024-01-05T15:00:00+08:00`, `---`",
            "error: SITE/issues/no-front-matter.md:1: couldn't find front matter: the file must start with a `---` (YAML) or `+++` (TOML) line",
            "error: SITE/issues/odd-date.md:3: cannot read the date `05/15/2020`: write it as `YYYY-MM-DD`, or RFC 3339 with an offset, e.g. `2020-05-15T17:00:00+08:00`",
            "error: SITE/issues/unclosed.md:1: the front matter opened here is never closed: add a `---` line after it",
            "error: SITE/issues/wrong-type.md:2: `title` must be a string",
            "error: SITE/issues/zz-duplicate.md:1: duplicate slug `2020-05-15-good` (also used by `SITE/issues/2020-05-15-good.md`): set a different `slug` in the front matter",
        ]
    );
    out.stdout_contains("built feeds for 5 issues");
    let rss = site.read("feeds/rss.xml");
    for title in [
        "SOFA Weekly | 好的一期",
        "TOML front matter",
        "Blank lines before the front matter",
        "BOM and CRLF",
    ] {
        assert!(rss.contains(title), "{title} not in rss.xml");
    }
    assert!(!rss.contains("Draft"), "the draft got a feed entry");
    // Dates without an offset are UTC; `2020-5-1` is 1 May.
    let atom = site.read("feeds/atom.xml");
    assert!(atom.contains("<updated>2020-05-16T09:00:00"), "{atom}");
    assert!(atom.contains("<updated>2020-05-01T00:00:00"), "{atom}");
}

#[test]
fn a_huge_line_and_deep_nesting_still_build() {
    let long = "很长的一行 **粗体** ".repeat(20_000);
    let deep = format!("{}deep\n", "> ".repeat(5_000));
    let list = format!("{}x\n", "- ".repeat(5_000));
    let html = format!("{}x\n", "<div>".repeat(5_000));
    let site = crate::support::Site::new()
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .issue(
            "big.md",
            &crate::support::issue(
                "Big",
                "2020-05-15T17:00:00+08:00",
                &["SOFA Weekly"],
                &format!("{long}\n\n{deep}\n{list}\n{html}"),
            ),
        );
    site.run(&["build"]).success();
    assert!(site.read("feeds/rss.xml").contains("Big"));
}
