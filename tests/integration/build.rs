//! `feedpost build` run again: only what changed is rendered and written, stale files go, and a
//! missing or damaged cache means a full build.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::{files_under, issue, Output, Site};

/// Every file under `feeds/` with its inode (a rewrite replaces the file, so a new inode means
/// the file was written).
fn inodes(site: &Site) -> BTreeMap<String, u64> {
    (files_under(&site.path().join("feeds")).into_iter())
        .map(|(rel, path)| (rel, std::fs::metadata(&path).unwrap().ino()))
        .collect()
}

/// Builds `site` again: what it printed and which files under `feeds/` it wrote or added since
/// `before` (from [`inodes`]).
fn rebuilt(site: &Site, before: &BTreeMap<String, u64>) -> (Output, Vec<String>) {
    let out = site.run(&["build"]).success();
    (out, changed(before, &inodes(site)))
}

fn changed(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    after
        .iter()
        .filter(|(path, ino)| before.get(*path) != Some(ino))
        .map(|(path, _)| path.clone())
        .collect()
}

/// Issue `i` of a weekly newsletter started on Monday 2024-01-01.
fn weekly(i: usize, tag: &str) -> String {
    let day =
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(7 * i as u64);
    issue(
        &format!("第 {i} 期"),
        &format!("{day}T15:00:00+08:00"),
        &["SOFA Weekly", tag],
        &format!("正文 {i}\n"),
    )
}

/// [`site`], built once.
fn built() -> Site {
    let site = site();
    site.run(&["build"]).success();
    site
}

/// Builds `site` again and asserts that the output `file` shows `text`.
#[track_caller]
fn rebuilt_shows(site: &Site, file: &str, text: &str) -> Output {
    let out = site.run(&["build"]).success();
    let shown = site.read(&format!("feeds/{file}"));
    assert!(shown.contains(text), "{file} lacks {text:?}:\n{shown}");
    out
}

/// 12 weekly issues (five in January, four in February, three in March) tagged MOSN / Seata /
/// Layotto in turn, 4 per feed: RFC 5005 archive documents for January and February.
fn site() -> Site {
    let mut site = Site::new()
        .env("FEEDPOST_NOW", "2030-01-01T00:00:00Z")
        .site_config("feed_entries = 4");
    for i in 0..12 {
        site = site.issue(
            &format!("{:02}-weekly.md", i + 1),
            &weekly(i, ["MOSN", "Seata", "Layotto"][i % 3]),
        );
    }
    site
}

#[test]
fn an_unchanged_site_renders_nothing() {
    let site = site();
    let first = site.run(&["build"]).success();
    first.stdout_contains("37 files changed (37 of 37 rendered, 0 removed)");
    let before = inodes(&site);
    let again = site.run(&["build"]).success();
    again.stdout_contains("0 files changed (0 of 37 rendered, 0 removed)");
    assert_eq!(inodes(&site), before);
}

#[test]
fn adding_an_issue_renders_only_what_lists_it() {
    let site = built();
    let before = inodes(&site);
    let site = site.issue("13-weekly.md", &weekly(12, "MOSN"));
    let (out, changed) = rebuilt(&site, &before);
    assert_eq!(
        changed,
        [
            "atom.xml",
            "categories/sofa-weekly/atom.xml",
            "categories/sofa-weekly/feed.json",
            "categories/sofa-weekly/rss.xml",
            "feed.json",
            "index.html",
            "issues/13-weekly/index.html",
            "rss.xml",
            "tags/mosn/atom.xml",
            "tags/mosn/feed.json",
            "tags/mosn/rss.xml",
            "tags/sofa-weekly/atom.xml",
            "tags/sofa-weekly/feed.json",
            "tags/sofa-weekly/rss.xml",
        ]
    );
    out.stdout_contains("14 files changed (14 of 38 rendered, 0 removed)");
    assert!(site.read("feeds/tags/mosn/rss.xml").contains("第 12 期"));
    assert!(site.read("feeds/index.html").contains("第 12 期"));
}

#[test]
fn editing_removing_and_retagging_issues_keeps_every_file_right() {
    let site = built();
    // Layotto is on issues 2, 5, 8, 11 (0-based); retag them all: its feeds must go.
    let mut site = site;
    for i in [2, 5, 8, 11] {
        site = site.issue(&format!("{:02}-weekly.md", i + 1), &weekly(i, "SOFAArk"));
    }
    // And delete issue 1.
    std::fs::remove_file(site.path().join("issues/01-weekly.md")).unwrap();
    let out = site.run(&["build"]).success();
    assert!(!site.path().join("feeds/tags/layotto").exists());
    assert!(!site.path().join("feeds/issues/01-weekly").exists());
    assert!(site
        .read("feeds/tags/sofaark/atom.xml")
        .contains("第 11 期"));
    assert!(!site.read("feeds/index.html").contains("第 0 期"));
    assert!(site
        .read("feeds/issues/03-weekly/index.html")
        .contains("tags/sofaark/rss.xml"));
    // 3 Layotto feeds and one page; January's archive documents stay, without issue 0.
    out.stdout_contains(", 4 removed)");
    assert!(!site
        .read("feeds/archive/rss/2024-01.xml")
        .contains("第 0 期"));
    // The result is what a full build gives.
    let incremental = inodes(&site)
        .keys()
        .map(|p| (p.clone(), site.read(&format!("feeds/{p}"))))
        .collect::<BTreeMap<_, _>>();
    std::fs::remove_dir_all(site.path().join("feeds")).unwrap();
    std::fs::remove_dir_all(site.path().join(".feedpost-cache")).unwrap();
    site.run(&["build"]).success();
    let full = inodes(&site)
        .keys()
        .map(|p| (p.clone(), site.read(&format!("feeds/{p}"))))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(incremental, full);
}

#[test]
fn deleting_or_backdating_an_old_issue_rewrites_only_the_archive_documents_of_its_month() {
    let site = built();
    let before = inodes(&site);
    // Issue 5 (2024-02-05, tagged Layotto): gone from February's archive documents, its page,
    // the index and the Layotto feeds (which list every Layotto issue); the main feeds show
    // only the newest four, and January's archive documents do not hold it.
    std::fs::remove_file(site.path().join("issues/06-weekly.md")).unwrap();
    let (out, changes) = rebuilt(&site, &before);
    let after = inodes(&site);
    assert_eq!(
        changes,
        [
            "archive/atom/2024-02.xml",
            "archive/rss/2024-02.xml",
            "index.html",
            "tags/layotto/atom.xml",
            "tags/layotto/feed.json",
            "tags/layotto/rss.xml",
        ]
    );
    out.stdout_contains("6 files changed (6 of 36 rendered, 1 removed)");
    assert!(!after.contains_key("issues/06-weekly/index.html"));
    // A backdated issue lands in January's documents only, among the archive documents.
    let site = site.issue(
        "00-backdated.md",
        &issue(
            "补一期",
            "2024-01-03T15:00:00+08:00",
            &["SOFA Weekly"],
            "正文\n",
        ),
    );
    site.run(&["build"]).success();
    let archives: Vec<String> = changed(&after, &inodes(&site))
        .into_iter()
        .filter(|p| p.starts_with("archive/"))
        .collect();
    assert_eq!(
        archives,
        ["archive/atom/2024-01.xml", "archive/rss/2024-01.xml"]
    );
    assert!(site
        .read("feeds/archive/rss/2024-01.xml")
        .contains("补一期"));
}

#[test]
fn a_deleted_output_folder_is_built_again() {
    let site = built();
    // The whole folder, then one page folder removed by hand: each comes back.
    for (removed, changed) in [
        ("feeds", "37 files changed"),
        ("feeds/issues/05-weekly", ": 1 file changed ("),
    ] {
        std::fs::remove_dir_all(site.path().join(removed)).unwrap();
        let out = site.run(&["build"]).success();
        out.stdout_contains(changed);
        assert!(site
            .path()
            .join("feeds/issues/05-weekly/index.html")
            .is_file());
    }
}

#[test]
fn a_damaged_cache_is_a_warning_and_a_full_build() {
    let site = built();
    let cache = site.path().join(".feedpost-cache/build.json");
    let text = std::fs::read_to_string(&cache).unwrap();
    std::fs::write(&cache, &text[..text.len() / 2]).unwrap();
    let out = site.run(&["build"]).success();
    out.stderr_contains("is damaged");
    out.stdout_contains("(37 of 37 rendered");
}

#[test]
fn a_config_change_renders_everything_again() {
    let site = built();
    let site = site.site_config("websub_hub = \"https://hub.example.org/\"");
    let out = rebuilt_shows(&site, "rss.xml", "https://hub.example.org/");
    out.stdout_contains("(37 of 37 rendered");
}

#[test]
fn an_edit_in_the_same_second_as_the_build_is_seen() {
    let site = built();
    // Same size, same modification time, new content: only a re-read can see it. The file was
    // written just before the build, so the build must not have trusted its stat.
    let path = site.path().join("issues/04-weekly.md");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace("正文 3", "正文 X");
    assert_eq!(edited.len(), text.len());
    std::fs::write(&path, &edited).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    rebuilt_shows(&site, "issues/04-weekly/index.html", "正文 X");
}

#[test]
fn the_cache_lives_beside_the_config_not_in_the_published_folder() {
    let site = built();
    assert!(site.path().join(".feedpost-cache/build.json").is_file());
    let leaked: Vec<String> = inodes(&site)
        .into_keys()
        .filter(|p| p.contains("cache") || p.ends_with(".tmp~"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    assert!(Path::new(&site.path().join("feeds/index.html")).is_file());
}

#[test]
fn files_of_a_build_under_another_config_are_removed() {
    let site = built();
    assert!(site.path().join("feeds/archive/rss/2024-01.xml").is_file());
    assert!(site
        .path()
        .join("feeds/issues/05-weekly/index.html")
        .is_file());
    // More entries per feed: no archive documents; pages move under another prefix.
    let site = site
        .site_config("feed_entries = 20")
        .site_config("permalink_prefix = \"weekly/\"");
    let text = site.config_text().replace("feed_entries = 4\n", "");
    site.write("feedpost.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_feedpost"))
        .arg("--config")
        .arg(site.path().join("feedpost.toml"))
        .arg("build")
        .env("FEEDPOST_NOW", "2030-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!site.path().join("feeds/archive").exists());
    assert!(!site.path().join("feeds/issues").exists());
    assert!(site
        .path()
        .join("feeds/weekly/05-weekly/index.html")
        .is_file());
    assert!(site
        .read("feeds/rss.xml")
        .contains("<fh:complete></fh:complete>"));
}

#[test]
fn a_duplicate_slug_is_reported_on_the_later_file_and_the_rest_is_built() {
    let site = site().issue(
        "99-copy.md",
        "---\ntitle: copy\ndate: 2024-02-01T00:00:00Z\nslug: 05-weekly\n---\ncopy\n",
    );
    let out = site.run(&["build"]).failure();
    out.stderr_contains("99-copy.md:1: duplicate slug `05-weekly` (also used by `");
    assert!(site
        .read("feeds/issues/05-weekly/index.html")
        .contains("第 4 期"));
    out.stdout_contains("built feeds for 12 issues");
    // Reported again on the next build (a bad file is never cached).
    let again = site.run(&["build"]).failure();
    again.stderr_contains("duplicate slug");
}
