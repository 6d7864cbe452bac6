//! Lint: what `feedpost check` reports about a site, without writing anything.
//!
//! Beside the first two stages of the pipeline: the issues are loaded by the same loader every
//! command uses ([`crate::site::Site::load`]), so whatever would stop `build` or `publish` is reported
//! here too, and then each loaded issue is looked over for what loads but will not come out as
//! the author meant:
//!
//! | finding | severity |
//! | --- | --- |
//! | unreadable file, missing or invalid front matter, bad `title`/`date`/`slug`, duplicate slug | error |
//! | a link under the permalink prefix (`/issues/<slug>/`) that names no issue | error |
//! | a link to a draft | warning |
//! | `draft: true`; a `date` after now | warning |
//! | an image without alt text | warning |
//! | `**`, `__` or paired `*` that pulldown-cmark leaves as literal text | warning |
//! | what readers would trip on ([`reader`]): empty link targets, e-mail addresses as link
//! targets, a page bundle's missing images, `****` next to a non-breaking space, a `cover` that
//! is not a URL, HTML character references in a `title` | warning |
//!
//! Links are checked only under the site's `permalink_prefix` (relative like `/issues/x/` or
//! absolute on the site's own host): any other relative link (`/blog/x/`) points to a part of the
//! site feedpost does not build and cannot be checked. Raw HTML (`<a href>`, `<img>`) is not
//! looked into. Every finding names the file and the 1-based line.

pub mod reader;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use pulldown_cmark::{CowStr, Event, Parser, Tag, TagEnd};
use rayon::prelude::*;
use url::Url;

use crate::config::Config;
use crate::issue::cjk::{self, LineIndex};
use crate::issue::{self, files, front_matter, markdown, Issue, IssueError};
use crate::site::Site;

/// How bad a finding is: errors make `feedpost check` exit 1, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The site will not build as it should: a file is left out, or a link is broken.
    Error,
    /// The site builds, but something is probably not what the author meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found, printed as `path:line: severity: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// 1-based line in the file; 0 when the problem is not on a line.
    pub line: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", issue::location_path(&self.path))?;
        if self.line > 0 {
            write!(f, "{}:", self.line)?;
        }
        write!(f, " {}: {}", self.severity, self.message)
    }
}

impl From<IssueError> for Finding {
    fn from(e: IssueError) -> Finding {
        Finding {
            path: e.path,
            line: e.line,
            severity: Severity::Error,
            message: e.message,
        }
    }
}

/// Everything `check` found in a site.
#[derive(Debug, Default)]
pub struct Report {
    /// Sorted by path, then line, errors before warnings.
    pub findings: Vec<Finding>,
    /// How many issue files were looked at.
    pub issue_files: usize,
}

impl Report {
    /// The number of errors.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// The number of warnings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The closing line: `2 errors, 1 warning in 5 issues`.
    pub fn summary(&self) -> String {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        format!(
            "{}, {} in {}",
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning"),
            plural(self.issue_files, "issue")
        )
    }
}

/// Loads every issue of the site and lints each one that loads; `now` decides which dates are in
/// the future.
///
/// # Errors
/// The issues folder cannot be read. Bad files are findings, not errors.
pub fn check_site(config: &Config, now: DateTime<FixedOffset>) -> anyhow::Result<Report> {
    let mut site = Site::load(config)?;
    site.read_all();
    let issues: Vec<&Issue> = site.issues().collect();
    let links = Links::new(issues.iter().copied(), config).with_other_pages(site.other_pages());
    let mut findings: Vec<Finding> = site.errors().iter().cloned().map(Finding::from).collect();
    findings.par_extend(issues.par_iter().flat_map_iter(|issue| {
        match std::fs::read_to_string(&issue.path) {
            Ok(source) => lint_issue(issue, &source, &links, now),
            Err(e) => vec![Finding::from(IssueError::unreadable(&issue.path, &e))],
        }
    }));
    findings.sort_by(|a, b| {
        (&a.path, a.line, a.severity, &a.message).cmp(&(&b.path, b.line, b.severity, &b.message))
    });
    Ok(Report {
        findings,
        issue_files: site.files(),
    })
}

/// Lints one loaded issue; `source` is its file's text (for the lines of front matter keys).
pub fn lint_issue(
    issue: &Issue,
    source: &str,
    links: &Links,
    now: DateTime<FixedOffset>,
) -> Vec<Finding> {
    let split = front_matter::split(source).ok();
    let key_line = |key: &str| {
        split
            .as_ref()
            .and_then(|s| front_matter::key_line(s, key))
            .unwrap_or(1)
    };
    let mut out = Vec::new();
    let mut push = |line: usize, severity: Severity, message: String| {
        out.push(Finding {
            path: issue.path.clone(),
            line,
            severity,
            message,
        })
    };
    if issue.draft {
        push(
            key_line("draft"),
            Severity::Warning,
            "draft: it gets no feed entry and `publish` skips it; remove `draft: true` to publish it"
                .into(),
        );
    }
    if issue.date > now {
        push(
            key_line("date"),
            Severity::Warning,
            format!(
                "dated in the future ({}): it gets no feed entry and `publish` skips it until then",
                issue.date.to_rfc3339()
            ),
        );
    }
    let front = split.as_ref().and_then(|s| front_matter::parse(s).ok());
    for (key, message) in front.iter().flat_map(reader::front_matter_notes) {
        push(key_line(key), Severity::Warning, message);
    }
    let bundle = files::is_bundle(&issue.path)
        .then(|| issue.path.parent())
        .flatten();
    let base = bundle.map_or(&links.base, |_| &issue.permalink);
    let mut notes = lint_body_from(&issue.markdown, links, base);
    notes.extend(reader::body_notes(&issue.markdown, bundle));
    for note in notes {
        push(issue.body_line + note.line - 1, note.severity, note.message);
    }
    out
}

/// A finding in a Markdown body; `line` is 1-based in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyNote {
    /// 1-based line in the body (not the file).
    pub line: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// What links in a body may point to: the site's issues, by slug.
#[derive(Debug, Clone)]
pub struct Links {
    base: Url,
    /// `base_url` + `permalink_prefix`; `None` when the prefix is empty, as then any site path
    /// could be an issue or something else and no link is checked.
    prefix: Option<Url>,
    /// Slug → whether that issue is a draft.
    slugs: HashMap<String, bool>,
    /// Pages under the issues folder that are not issues (see [`Links::with_other_pages`]).
    others: HashSet<String>,
}

impl Links {
    /// The link targets of `issues` on the site `config` describes.
    pub fn new<'a>(issues: impl IntoIterator<Item = &'a Issue>, config: &Config) -> Links {
        let base = config.site.base_url.clone();
        let prefix = if config.site.permalink_prefix.is_empty() {
            None
        } else {
            base.join(&config.site.permalink_prefix).ok()
        };
        Links {
            base,
            prefix,
            slugs: (issues.into_iter())
                .map(|i| (i.slug.clone(), i.draft))
                .collect(),
            others: HashSet::new(),
        }
    }

    /// The same, with `names` (pages `site.include` left out, by name) as existing link targets:
    /// pages of the site, though not issues, so a link to one is not broken.
    pub fn with_other_pages(mut self, names: &[String]) -> Links {
        self.others.extend(names.iter().cloned());
        self
    }

    /// Checks one link destination as written in the Markdown of a page whose relative links
    /// resolve against `base`; `None` when it is fine or cannot be checked.
    fn check(&self, dest: &str, base: &Url) -> Option<(Severity, String)> {
        let prefix = self.prefix.as_ref()?;
        let url = Url::parse(&markdown::absolute(CowStr::Borrowed(dest), base)).ok()?;
        if url.origin() != prefix.origin() {
            return None;
        }
        let rest = url.path().strip_prefix(prefix.path())?;
        let segment = rest.split('/').next().filter(|s| !s.is_empty())?;
        let slug = percent_decode(segment);
        match self.slugs.get(&slug) {
            None if self.others.contains(&slug) => None,
            Some(false) => None,
            Some(true) => Some((
                Severity::Warning,
                format!("links to `{dest}`, a draft: the link is broken until that issue is published"),
            )),
            None => Some((
                Severity::Error,
                format!(
                    "links to `{dest}`, but no issue has the slug `{slug}`: fix the link, or give the issue it means `slug: {slug}`"
                ),
            )),
        }
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are); bytes that are not UTF-8 become
/// U+FFFD.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Lints a Markdown body whose relative links resolve against `site.base_url`: see
/// [`lint_body_from`].
pub fn lint_body(markdown: &str, links: &Links) -> Vec<BodyNote> {
    lint_body_from(markdown, links, &links.base)
}

/// Lints a Markdown body whose relative links resolve against `base` (a page bundle's own
/// permalink, or `site.base_url`): links under the permalink prefix, images without alt text,
/// and emphasis markers left as literal text. Lines are 1-based in `markdown`.
pub fn lint_body_from(markdown: &str, links: &Links, base: &Url) -> Vec<BodyNote> {
    let lines = LineIndex::new(markdown);
    let mut notes = Vec::new();
    // Open images: where each starts, its destination, and the alt text so far.
    let mut images: Vec<(usize, String, String)> = Vec::new();
    for (event, range) in Parser::new_ext(markdown, markdown::options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Link { dest_url, .. }) => {
                if let Some((severity, message)) = links.check(&dest_url, base) {
                    notes.push(BodyNote {
                        line: lines.line_of(range.start),
                        severity,
                        message,
                    });
                }
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                images.push((range.start, dest_url.into_string(), String::new()));
            }
            Event::End(TagEnd::Image) => {
                if let Some((start, dest, alt)) = images.pop() {
                    if alt.trim().is_empty() {
                        notes.push(BodyNote {
                            line: lines.line_of(start),
                            severity: Severity::Warning,
                            message: format!(
                                "image `{dest}` has no alt text: write `![what it shows]({dest})`; mail clients and feed readers show it when images are off"
                            ),
                        });
                    }
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some(image) = images.last_mut() {
                    image.2.push_str(&text);
                }
            }
            _ => {}
        }
    }
    notes.extend(
        cjk::literal_emphasis(markdown)
            .into_iter()
            .map(|literal| BodyNote {
                line: lines.line_of(literal.at),
                severity: Severity::Warning,
                message: literal.message,
            }),
    );
    notes.sort_by_key(|n| n.line);
    notes
}

/// A site-level error as a finding on the config file `path`: an error from
/// [`Config::from_file`] or from reading the issues folder it names. The line is that of the
/// [`crate::config::Invalid`] value the error carries, or of the key it names (from the TOML
/// parser's spans), else 0.
pub fn config_finding(path: &Path, error: &anyhow::Error) -> Finding {
    let invalid = error
        .chain()
        .find_map(|c| c.downcast_ref::<crate::config::Invalid>());
    let (line, message) = match invalid {
        Some(invalid) => {
            let line = invalid.line.or_else(|| {
                let text = std::fs::read_to_string(path).ok()?;
                crate::config::key_line(&text, &invalid.key)
            });
            (line.unwrap_or(0), invalid.message.clone())
        }
        None => {
            let named = format!("`{}`", path.display());
            let mut causes: Vec<String> = error.chain().map(|c| c.to_string()).collect();
            // "invalid config file `path`" only repeats the path the finding starts with.
            if causes.len() > 1 && causes[0].contains(&named) {
                causes.remove(0);
            }
            (0, causes.join(": "))
        }
    };
    Finding {
        path: path.to_path_buf(),
        line,
        severity: Severity::Error,
        message: message.trim().replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str) -> Config {
        crate::config::test_config(&format!(
            "title='t'
base_url='https://www.sofastack.tech/'
permalink_prefix='{prefix}'"
        ))
    }

    fn issue(name: &str, front: &str, body: &str) -> Issue {
        let text = format!("---\ntitle: t\ndate: 2020-05-15T17:00:00+08:00\n{front}---\n{body}");
        crate::issue::parse(&text, Path::new(name), &config("issues/")).unwrap()
    }

    fn links() -> Links {
        let issues = [
            issue("2020-05-15-sofa-weekly.md", "", ""),
            issue("b.md", "slug: 周报\n", ""),
            issue("c.md", "draft: true\n", ""),
        ];
        Links::new(&issues, &config("issues/"))
    }

    fn notes(body: &str) -> Vec<BodyNote> {
        lint_body(body, &links())
    }

    fn messages(body: &str) -> Vec<String> {
        notes(body)
            .into_iter()
            .map(|n| format!("{}: {}: {}", n.line, n.severity, n.message))
            .collect()
    }

    #[test]
    fn space_before_closing_bold_is_reported_with_the_fix() {
        assert_eq!(
            messages("SOFA\n\n**1、@黄泽宏 **提问：\n"),
            ["3: warning: `**` shows as literal text, not bold: a space before the closing `**` keeps it from closing; write `**1、@黄泽宏**`"]
        );
    }

    #[test]
    fn closing_bold_after_cjk_punctuation_is_reported() {
        assert_eq!(
            messages("- **直播主题：**SOFAChannel#16\n"),
            ["1: warning: `**` shows as literal text, not bold: a closing `**` between punctuation and a letter (`：**S`) does not close; write `**直播主题**：S`"]
        );
        assert_eq!(
            messages("同时，恭喜**姚昌宇（@trainyao）**成为 MOSN Committer\n"),
            ["1: warning: `**` shows as literal text, not bold: a closing `**` between punctuation and a letter (`）**成`) does not close; write `**姚昌宇（@trainyao）** 成`"]
        );
        assert_eq!(
            messages("- **SOFAStack 官网: **[https://www.sofastack.tech](https://www.sofastack.tech/)\n"),
            ["1: warning: `**` shows as literal text, not bold: a space before the closing `**` keeps it from closing; write `**SOFAStack 官网:**`"]
        );
    }

    #[test]
    fn space_after_opening_and_unmatched_markers() {
        assert_eq!(
            messages("** 加粗**文字\n"),
            ["1: warning: `**` shows as literal text, not bold: a space after the opening `**` keeps it from opening; write `**加粗**`"]
        );
        assert_eq!(
            messages("start **here\n\nand there\n"),
            ["1: warning: `**` shows as literal text, not bold: it has no matching `**`; close it, or write `\\*\\*` for the characters themselves"]
        );
        assert_eq!(
            messages("这是 *强调 *文字\n"),
            ["1: warning: `*` shows as literal text, not italics: a space before the closing `*` keeps it from closing; write `*强调*`"]
        );
    }

    #[test]
    fn intended_text_is_not_reported() {
        for body in [
            "**bold** and *em* and __strong__ and _em_\n",
            "### ****SOFA 项目进展****\n",
            "`a ** b` and `**`\n",
            "```\n**1、@黄泽宏 **提问\n```\n",
            "    **indented code **x\n",
            "\\*\\*not bold\\*\\* and \\*\n",
            "snake_case_name and foo__bar and <https://x.org/a__b> and https://x.org/a__b\n",
            "2 * 3 = 6 and 2 ** 10\n",
            "*注：一个星号\n",
            "* item\n* item\n\n***\n\n___\n",
            "__init__ and _config.yml and _posts\n",
            "- **直播时间：** 2020/5/21（周四）\n",
        ] {
            assert_eq!(messages(body), Vec::<String>::new(), "{body}");
        }
    }

    #[test]
    fn images_need_alt_text() {
        assert_eq!(
            messages("![weekly](a.png)\n\nx ![](/img/b.png) ![ ](c.png)\n"),
            [
                "3: warning: image `/img/b.png` has no alt text: write `![what it shows](/img/b.png)`; mail clients and feed readers show it when images are off",
                "3: warning: image `c.png` has no alt text: write `![what it shows](c.png)`; mail clients and feed readers show it when images are off",
            ]
        );
        assert!(messages("![`code` alt](a.png)").is_empty());
    }

    #[test]
    fn links_under_the_permalink_prefix_must_name_an_issue() {
        assert_eq!(
            messages("[a](/issues/2020-05-15-sofa-weekly/) [b](/issues/周报/#q) [c](https://www.sofastack.tech/issues/%E5%91%A8%E6%8A%A5/)\n[d](/issues/) [e](/blog/x/) [f](https://other.org/issues/nope/) [g](#top) [h](mailto:a@b.org)\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            messages("x\n[gone](/issues/2020-05-16-sofa-weekly/)\n[abs](https://www.sofastack.tech/issues/nope)\n[draft](issues/c/)\n"),
            [
                "2: error: links to `/issues/2020-05-16-sofa-weekly/`, but no issue has the slug `2020-05-16-sofa-weekly`: fix the link, or give the issue it means `slug: 2020-05-16-sofa-weekly`",
                "3: error: links to `https://www.sofastack.tech/issues/nope`, but no issue has the slug `nope`: fix the link, or give the issue it means `slug: nope`",
                "4: warning: links to `issues/c/`, a draft: the link is broken until that issue is published",
            ]
        );
    }

    #[test]
    fn a_bundles_relative_links_are_checked_from_its_own_page() {
        let text = "---\ntitle: t\ndate: 2020-05-15T17:00:00+08:00\n---\n[a](../nope/) [b](../2020-05-15-sofa-weekly/) [c](../../issues/周报/)\n";
        let path = Path::new("/site/issues/week-1/index.md");
        let i = crate::issue::parse(text, path, &config("issues/")).unwrap();
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
        let found: Vec<String> = lint_issue(&i, text, &links(), now)
            .iter()
            .map(|f| format!("{}: {}", f.line, f.message))
            .collect();
        assert_eq!(
            found,
            ["5: links to `../nope/`, but no issue has the slug `nope`: fix the link, or give the issue it means `slug: nope`"]
        );
    }

    #[test]
    fn links_to_pages_left_out_by_include_are_not_broken() {
        let links = links().with_other_pages(&["mosn-release-notes".to_string()]);
        let notes = lint_body(
            "[a](/issues/mosn-release-notes/) [b](/issues/gone/)\n",
            &links,
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].message.contains("`gone`"));
    }

    #[test]
    fn without_a_permalink_prefix_no_link_is_checked() {
        let links = Links::new(&[], &config(""));
        assert!(lint_body("[a](/nope/) [b](/issues/nope/)", &links).is_empty());
    }

    #[test]
    fn issue_findings_have_file_lines() {
        let text = "---\ntitle: t\ndraft: true\ndate: 2030-01-01T00:00:00Z\n---\n\n**a **b\n";
        let i = crate::issue::parse(text, Path::new("x.md"), &config("issues/")).unwrap();
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap();
        let found: Vec<String> = lint_issue(&i, text, &links(), now)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "x.md:3: warning: draft: it gets no feed entry and `publish` skips it; remove `draft: true` to publish it",
                "x.md:4: warning: dated in the future (2030-01-01T00:00:00+00:00): it gets no feed entry and `publish` skips it until then",
                "x.md:7: warning: `**` shows as literal text, not bold: a space before the closing `**` keeps it from closing; write `**a**`",
            ]
        );
    }

    #[test]
    fn summary_counts_and_pluralises() {
        let finding = |severity| Finding {
            path: "a.md".into(),
            line: 1,
            severity,
            message: String::new(),
        };
        let report = Report {
            findings: vec![
                finding(Severity::Error),
                finding(Severity::Warning),
                finding(Severity::Warning),
            ],
            issue_files: 1,
        };
        assert_eq!(report.summary(), "1 error, 2 warnings in 1 issue");
        assert_eq!(
            Report::default().summary(),
            "0 errors, 0 warnings in 0 issues"
        );
    }

    #[test]
    fn config_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedpost.toml");
        let base = "[site]\ntitle = 't'\nbase_url = 'https://x.org/'\n[mail]\nfrom = 'a@b.org'\n";
        let finding = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let e = Config::from_file(&path).unwrap_err();
            let f = config_finding(&path, &e);
            (f.line, f.message)
        };
        let (line, message) = finding(&base.replace("[mail]", "colour = 'red'\n[mail]"));
        assert_eq!(line, 4);
        assert!(message.starts_with("unknown field `colour`"), "{message}");
        let (line, message) = finding(&base.replace("a@b.org", "not an address"));
        assert_eq!(line, 5);
        assert!(
            message.starts_with("`mail.from` is not a valid mailbox"),
            "{message}"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%E5%91%A8x%2"), "周x%2");
        assert_eq!(percent_decode("%zz%"), "%zz%");
    }
}
