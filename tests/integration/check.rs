//! `feedpost check`: lint the site, write nothing, exit 1 on errors and 0 on warnings only.

use std::path::Path;

use crate::support::{assert_golden, issue, Site};

/// A site whose `issues/` holds the files of `tests/fixtures/<fixture>/issues`, byte for byte.
pub fn fixture_site(fixture: &str) -> Site {
    let site = Site::new().env("FEEDPOST_NOW", "2024-04-01T00:00:00Z");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture)
        .join("issues");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            site.path().join("issues").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    site
}

/// `text` with the site's temporary folder written as `SITE`.
pub fn relative(site: &Site, text: &str) -> String {
    text.replace(&site.path().display().to_string(), "SITE")
}

#[test]
fn seeds_get_warnings_with_file_and_line_and_exit_zero() {
    let site = fixture_site("seeds");
    let out = site.run(&["check"]).success();
    let stdout = relative(&site, &out.stdout);
    assert!(
        stdout.contains("SITE/issues/2020-05-15-sofa-weekly.md:28: warning: `**` shows as literal text, not bold: a space before the closing `**` keeps it from closing; write `**1、@黄泽宏**`\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("\n0 errors, 19 warnings in 5 issues and 0 subscribers\n"),
        "{stdout}"
    );
    assert_golden("seeds/check.txt", &stdout);
    assert!(!site.path().join("feeds").exists(), "check wrote feeds");
}

#[test]
fn invalid_site_gets_every_error_and_exit_one() {
    let site = fixture_site("invalid");
    let out = site.run(&["check"]).failure();
    assert_eq!(out.code, 1);
    let stdout = relative(&site, &out.stdout);
    for line in [
        "SITE/issues/2020-05-15-good.md:8: error: links to `/issues/2020-05-08-missing/`, but no issue has the slug `2020-05-08-missing`: fix the link, or give the issue it means `slug: 2020-05-08-missing`",
        "SITE/issues/2020-05-15-good.md:10: warning: image `https://cdn.example.org/a.png` has no alt text: write `![what it shows](https://cdn.example.org/a.png)`; mail clients and feed readers show it when images are off",
        "SITE/issues/2020-05-18-draft.md:4: warning: draft: it gets no feed entry and `publish` skips it; remove `draft: true` to publish it",
        "SITE/issues/zz-duplicate.md:1: error: duplicate slug `2020-05-15-good` (also used by `SITE/issues/2020-05-15-good.md`): set a different `slug` in the front matter",
        "SITE/issues/empty.md:1: error: the file is empty: an issue starts with front matter, e.g. the four lines `---`, `title: \"...\"`, `date: 2024-01-05T15:00:00+08:00`, `---`",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(
        stdout.ends_with("\n9 errors, 3 warnings in 13 issues and 0 subscribers\n"),
        "{stdout}"
    );
    assert_golden("invalid/check.txt", &stdout);
}

#[test]
fn future_dates_are_warnings() {
    let site = Site::new()
        .env("FEEDPOST_NOW", "2024-04-01T00:00:00Z")
        .issue(
            "next.md",
            &issue(
                "下期",
                "2024-04-05T15:00:00+08:00",
                &["SOFA Weekly"],
                "Soon.\n",
            ),
        );
    let out = site.run(&["check"]).success();
    assert_eq!(
        relative(&site, &out.stdout),
        "SITE/issues/next.md:8: warning: dated in the future (2024-04-05T15:00:00+08:00): it gets no feed entry and `publish` skips it until then\n0 errors, 1 warning in 1 issue and 0 subscribers\n"
    );
}

/// `check` on a site with `line` added to its `[site]` table: it fails, and its output (the
/// site's folder written as `SITE`) starts with `prefix`. Returns the output.
#[track_caller]
fn config_error(line: &str, prefix: &str) -> String {
    let site = Site::new().site_config(line);
    let out = site.run(&["check"]).failure();
    let stdout = relative(&site, &out.stdout);
    assert!(stdout.starts_with(prefix), "{stdout}");
    stdout
}

#[test]
fn a_bad_config_is_an_error_on_its_line() {
    let stdout = config_error(
        "colour = \"red\"",
        "SITE/feedpost.toml:6: error: unknown field `colour`, expected one of",
    );
    assert!(
        stdout.ends_with("\n1 error, 0 warnings in 0 issues\n"),
        "{stdout}"
    );
}

#[test]
fn a_missing_issues_folder_names_the_key() {
    config_error(
        "issues = \"nowhere\"",
        "SITE/feedpost.toml:6: error: failed to read the issues folder `SITE/nowhere` (set `site.issues` in the config): ",
    );
}

#[test]
fn a_clean_site_says_so() {
    let site = Site::new()
        .issue(
            "a.md",
            &issue(
                "A",
                "2020-05-15T17:00:00+08:00",
                &["SOFA Weekly"],
                "**fine** [b](/issues/b/)\n",
            ),
        )
        .issue(
            "b.md",
            &issue(
                "B",
                "2020-05-16T17:00:00+08:00",
                &["SOFA Weekly"],
                "![alt](x.png)\n",
            ),
        );
    let out = site.run(&["check"]).success();
    assert_eq!(
        out.stdout,
        "0 errors, 0 warnings in 2 issues and 0 subscribers\n"
    );
}
