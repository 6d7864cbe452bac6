//! Issues: the newsletter's source files, loaded and rendered once per run.
//!
//! First stage of the pipeline: `*.md` files under the issues folder → [`Issue`] values with
//! parsed front matter, a permalink, and the body rendered to HTML with absolute links. Every
//! later stage (feeds, archive, email) reads these values and never the files.

pub mod cjk;
pub mod front_matter;
pub mod markdown;
#[cfg(test)]
mod robustness_tests;

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Config;
use front_matter::{FrontMatterError, Split};

/// One newsletter issue, loaded and rendered.
#[derive(Debug, Clone)]
pub struct Issue {
    /// The source file.
    pub path: PathBuf,
    /// `title`, plain text (no HTML).
    pub title: String,
    /// `date`, with the offset it was written in.
    pub date: DateTime<FixedOffset>,
    /// `description`.
    pub description: Option<String>,
    /// `author` (a display name).
    pub author: Option<String>,
    /// `authorlink`, when it is an absolute URL.
    pub author_link: Option<Url>,
    /// `categories`, in file order.
    pub categories: Vec<String>,
    /// `tags`, in file order.
    pub tags: Vec<String>,
    /// `cover`, made absolute against the site.
    pub cover: Option<Url>,
    /// `draft`: drafts get no feed entry and are never published by default.
    pub draft: bool,
    /// The last path segment of the permalink: `slug`, else the file stem.
    pub slug: String,
    /// `summary`, else `description`, else the start of the first paragraph; plain text.
    pub summary: String,
    /// The absolute URL of the issue's page; also its feed guid/id.
    pub permalink: Url,
    /// The Markdown body.
    pub markdown: String,
    /// 1-based line of the file where the body starts.
    pub body_line: usize,
    /// The body rendered to HTML, links absolute, sanitised.
    pub content_html: String,
    /// The URL relative links and images in the body resolve against; with [`Issue::markdown`],
    /// what renders the body again in another form (the email's text part).
    pub base: Url,
}

impl Issue {
    /// Every category and tag, without repeats, categories first.
    pub fn terms(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.categories.iter().chain(&self.tags) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(t)) {
                out.push(t);
            }
        }
        out
    }

    /// Whether the issue is listed in feeds and may be published at `now`: not a draft, not dated
    /// after `now`.
    pub fn is_published_at(&self, now: DateTime<FixedOffset>) -> bool {
        !self.draft && self.date <= now
    }

    /// The issue as lists see it, without its body.
    pub fn listing(&self) -> Listing {
        Listing {
            slug: self.slug.clone(),
            title: self.title.clone(),
            date: self.date,
            draft: self.draft,
            categories: self.categories.clone(),
            tags: self.tags.clone(),
            permalink: self.permalink.to_string(),
        }
    }
}

/// An issue as the feed plan and the archive index see it: enough to sort, group and link it,
/// without its body. `build` keeps these between runs (serde) so unchanged files are not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// See [`Issue::slug`].
    pub slug: String,
    /// See [`Issue::title`].
    pub title: String,
    /// See [`Issue::date`]; serialised as RFC 3339.
    pub date: DateTime<FixedOffset>,
    /// See [`Issue::draft`].
    pub draft: bool,
    /// See [`Issue::categories`].
    pub categories: Vec<String>,
    /// See [`Issue::tags`].
    pub tags: Vec<String>,
    /// See [`Issue::permalink`]; as text, since lists only print it (and a build reads 10,000
    /// of these from its cache: parsing them back into URLs would cost more than the rest).
    pub permalink: String,
}

impl Listing {
    /// See [`Issue::is_published_at`].
    pub fn is_published_at(&self, now: DateTime<FixedOffset>) -> bool {
        !self.draft && self.date <= now
    }
}

/// The order of issues everywhere: newest first, ties broken by slug.
pub fn newest_first(
    a_date: DateTime<FixedOffset>,
    a_slug: &str,
    b_date: DateTime<FixedOffset>,
    b_slug: &str,
) -> std::cmp::Ordering {
    b_date.cmp(&a_date).then_with(|| a_slug.cmp(b_slug))
}

/// A problem with one issue file: `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, 0 when the problem is not on a line (e.g. unreadable file).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)
        }
    }
}

impl std::error::Error for IssueError {}

impl IssueError {
    /// The error for a file that cannot be read (`line` 0: it is not on a line).
    pub fn unreadable(path: &Path, error: &std::io::Error) -> IssueError {
        IssueError {
            path: path.to_path_buf(),
            line: 0,
            message: format!("failed to read the file: {error}"),
        }
    }

    /// The error for a file whose slug `first` already uses (files are taken in path order).
    pub fn duplicate_slug(path: &Path, slug: &str, first: &Path) -> IssueError {
        IssueError {
            path: path.to_path_buf(),
            line: 1,
            message: format!(
                "duplicate slug `{slug}` (also used by `{}`): set a different `slug` in the front matter",
                first.display()
            ),
        }
    }
}

/// Every `*.md` file below `dir`, hidden files and folders skipped, each with `f` applied to
/// its directory entry: e.g. to keep the entry, whose `metadata` is read relative to the open
/// folder (cheaper than a `stat` by path; it does not follow a symbolic link). Sorted by path.
///
/// # Errors
/// `dir` cannot be read.
pub fn find_files_with<T>(
    dir: &Path,
    mut f: impl FnMut(std::fs::DirEntry) -> T,
) -> anyhow::Result<Vec<(PathBuf, T)>> {
    use anyhow::Context;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| {
            format!(
                "failed to read the issues folder `{}` (set `site.issues` in the config)",
                d.display()
            )
        })?;
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read `{}`", d.display()))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry
                .file_type()
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push((path, f(entry)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads, parses and renders one issue file.
///
/// # Errors
/// The file is unreadable or not UTF-8, its front matter is missing, unterminated or invalid, or
/// `title`/`date` is missing or unparsable.
pub fn load_file(path: &Path, config: &Config) -> Result<Issue, IssueError> {
    let bytes = std::fs::read(path).map_err(|e| IssueError::unreadable(path, &e))?;
    parse_bytes(bytes, path, config)
}

/// Parses and renders an issue from the bytes of its file; `path` names it and is not read.
///
/// # Errors
/// As [`load_file`], except reading.
pub fn parse_bytes(bytes: Vec<u8>, path: &Path, config: &Config) -> Result<Issue, IssueError> {
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        IssueError {
            path: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            message: "the file is not valid UTF-8: save it as UTF-8".into(),
        }
    })?;
    parse(&text, path, config).map_err(|e| IssueError {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })
}

/// Parses an issue from its text; `path` names it (slug fallback) and is not read.
///
/// # Errors
/// See [`load_file`]; the error's line is 1-based in `text`.
pub fn parse(text: &str, path: &Path, config: &Config) -> Result<Issue, FrontMatterError> {
    let split = front_matter::split(text)?;
    let fm = front_matter::parse(&split)?;
    let title = title(&split, fm.title.as_deref())?;
    let date = date(&split, fm.date.as_deref())?;
    let slug = slug(&split, fm.slug.as_deref(), path)?;
    let permalink = permalink(config, &slug)?;
    let base = &config.site.base_url;
    let cover = nonempty(fm.cover)
        .map(|c| {
            let line = front_matter::key_line(&split, "cover").unwrap_or(1);
            match base.join(&c) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
                Ok(url) => Err(FrontMatterError {
                    line,
                    message: format!(
                        "`cover` must be an http(s) URL or a path on the site, not a `{}:` URL",
                        url.scheme()
                    ),
                }),
                Err(e) => Err(FrontMatterError {
                    line,
                    message: format!("`cover` is not a URL: {e}"),
                }),
            }
        })
        .transpose()?;
    let author_link = fm
        .authorlink
        .as_deref()
        .and_then(|l| Url::parse(l.trim()).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    let markdown = split.body.to_string();
    let content_html = markdown::render(&markdown, base, markdown::Rendering::for_site(config));
    let description = nonempty(fm.description);
    let summary = nonempty(fm.summary)
        .or_else(|| description.clone())
        .unwrap_or_else(|| markdown::first_paragraph_text(&markdown, 200));
    Ok(Issue {
        path: path.to_path_buf(),
        title,
        date,
        description,
        author: nonempty(fm.author),
        author_link,
        categories: fm.categories.into_vec(),
        tags: fm.tags.into_vec(),
        cover,
        draft: fm.draft,
        slug,
        summary,
        permalink,
        body_line: split.body_line,
        markdown,
        content_html,
        base: base.clone(),
    })
}

/// `value` trimmed, `None` when that leaves nothing.
fn nonempty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The required `title`, trimmed.
fn title(split: &Split<'_>, title: Option<&str>) -> Result<String, FrontMatterError> {
    match title.map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(FrontMatterError {
            line: front_matter::key_line(split, "title").unwrap_or(split.front_matter_line - 1),
            message: "missing `title` in the front matter: add `title: \"...\"`".into(),
        }),
    }
}

/// The required `date` (see [`parse_date`]), the error on its line.
fn date(split: &Split<'_>, date: Option<&str>) -> Result<DateTime<FixedOffset>, FrontMatterError> {
    let line = front_matter::key_line(split, "date").unwrap_or(split.front_matter_line - 1);
    match date.map(str::trim) {
        Some(d) if !d.is_empty() => parse_date(d).ok_or_else(|| FrontMatterError {
            line,
            message: format!(
                "cannot read the date `{d}`: write it as `YYYY-MM-DD`, or RFC 3339 with an offset, e.g. `2020-05-15T17:00:00+08:00`"
            ),
        }),
        _ => Err(FrontMatterError {
            line,
            message: "missing `date` in the front matter: add e.g. `date: 2020-05-15T17:00:00+08:00`".into(),
        }),
    }
}

/// The slug: `slug` (without slashes around it), else the file name without `.md`.
fn slug(split: &Split<'_>, slug: Option<&str>, path: &Path) -> Result<String, FrontMatterError> {
    let slug = match slug.map(str::trim) {
        Some(s) if !s.is_empty() => s.trim_matches('/').to_string(),
        _ => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if slug.is_empty() || slug.contains('/') || slug == "." || slug == ".." {
        return Err(FrontMatterError {
            line: front_matter::key_line(split, "slug").unwrap_or(1),
            message: format!("`{slug}` cannot be used as a slug: use letters, digits and `-`"),
        });
    }
    Ok(slug)
}

/// `base_url + permalink_prefix + slug + "/"`, the slug percent-encoded.
fn permalink(config: &Config, slug: &str) -> Result<Url, FrontMatterError> {
    let path = format!(
        "{}{}/",
        config.site.permalink_prefix,
        percent_encode_segment(slug)
    );
    config
        .site
        .base_url
        .join(&path)
        .map_err(|e| FrontMatterError {
            line: 1,
            message: format!("cannot build a permalink from slug `{slug}`: {e}"),
        })
}

/// Parses an issue date. Accepted, after trimming:
///
/// - RFC 3339: `2020-05-15T17:00:00+08:00`, with fractional seconds, `Z`, or lowercase `t`/`z`;
/// - a space for the `T`, seconds left out, an offset without a colon or after a space:
///   `2020-05-15 17:00`, `2020-05-15 17:00:00 +0800`;
/// - no offset at all (`2020-05-15T17:00:00`, `2020-05-15 17:00`): the time is taken as UTC, as
///   Hugo does without a `timeZone` setting, so the result does not depend on the machine;
/// - a bare day, `2020-05-15` or `2020-5-1`, taken as midnight UTC.
///
/// Returns `None` for anything else (another field order such as `15/05/2020`, month names, a day
/// or time out of range); the caller reports the line.
pub fn parse_date(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d);
    }
    let (day, rest) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], text[i + 1..].trim_start()),
        None => (text, ""),
    };
    let day = parse_day(day)?;
    if rest.is_empty() {
        return Some(day.and_time(NaiveTime::MIN).and_utc().fixed_offset());
    }
    let (time, offset) = match rest.find(['+', '-', 'Z', 'z']) {
        Some(i) => (rest[..i].trim_end(), parse_offset(&rest[i..])?),
        None => (rest, FixedOffset::east_opt(0)?),
    };
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(time, "%H:%M"))
        .ok()?;
    offset.from_local_datetime(&day.and_time(time)).single()
}

/// `YYYY-MM-DD` with a four-digit year; month and day may have one digit.
fn parse_day(text: &str) -> Option<NaiveDate> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, lens: std::ops::RangeInclusive<usize>| {
        lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if parts.next().is_some() || !digits(y, 4..=4) || !digits(m, 1..=2) || !digits(d, 1..=2) {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// `Z`, `+08:00`, `+0800` or `+08` (also with `-`) as a fixed offset.
fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'Z' | b'z' if text.len() == 1 => return FixedOffset::east_opt(0),
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = match &text.as_bytes()[1..] {
        [h1, h2, b':', m1, m2] => [*h1, *h2, *m1, *m2],
        [h1, h2, m1, m2] => [*h1, *h2, *m1, *m2],
        [h1, h2] => [*h1, *h2, b'0', b'0'],
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |a: u8, b: u8| i32::from(a - b'0') * 10 + i32::from(b - b'0');
    let (hours, minutes) = (number(digits[0], digits[1]), number(digits[2], digits[3]));
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// The bytes [`percent_encode_segment`] escapes: everything but RFC 3986's unreserved
/// characters (ASCII letters and digits, `-`, `.`, `_`, `~`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one URL path segment (RFC 3986 `pchar`), leaving unreserved ASCII as is; CJK
/// and other non-ASCII characters become UTF-8 percent escapes, in upper-case hex.
pub fn percent_encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::test_config(
            "title='t'
base_url='https://www.sofastack.tech/'",
        )
    }

    const SEED_LIKE: &str = "---\ntitle: \"SOFA Weekly | QA 整理\"\nauthor: \"SOFA 团队\"\nauthorlink: \"https://github.com/sofastack\"\ndescription: \"每周精选\"\ncategories: \"SOFA Weekly\"\ntags: [\"SOFA Weekly\", \"MOSN\"]\ndate: 2021-07-16T15:00:00+08:00\ncover: \"/img/cover.png\"\n---\nHello [x](/blog/x/)\n";

    #[test]
    fn seed_shaped_issue_loads() {
        let i = parse(
            SEED_LIKE,
            Path::new("/site/issues/2021-07-16-sofa-weekly.md"),
            &config(),
        )
        .unwrap();
        assert_eq!(i.slug, "2021-07-16-sofa-weekly");
        assert_eq!(
            i.permalink.as_str(),
            "https://www.sofastack.tech/issues/2021-07-16-sofa-weekly/"
        );
        assert_eq!(
            i.cover.as_ref().unwrap().as_str(),
            "https://www.sofastack.tech/img/cover.png"
        );
        assert_eq!(i.terms(), ["SOFA Weekly", "MOSN"]);
        assert_eq!(i.summary, "每周精选");
        assert_eq!(i.date.to_rfc3339(), "2021-07-16T15:00:00+08:00");
        assert!(i
            .content_html
            .contains("https://www.sofastack.tech/blog/x/"));
        assert_eq!(i.body_line, 11);
    }

    /// The error of the issue file `text`.
    fn error(text: &str) -> FrontMatterError {
        parse(text, Path::new("a.md"), &config()).unwrap_err()
    }

    #[test]
    fn missing_title_names_the_line() {
        let e = error("---\ndate: 2020-01-01T00:00:00Z\n---\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("missing `title`"));
    }

    #[test]
    fn bad_date_names_its_line() {
        let e = error("---\ntitle: x\ndate: last tuesday\n---\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("RFC 3339"), "{}", e.message);
    }

    #[test]
    fn dates_in_several_shapes() {
        assert_dates(&[
            (
                "2020-05-15T17:00:00.123+08:00",
                "2020-05-15T17:00:00.123+08:00",
            ),
            ("2020-05-15T09:00:00Z", "2020-05-15T09:00:00+00:00"),
            ("2020-05-15 09:00:00+08:00", "2020-05-15T09:00:00+08:00"),
            ("2020-05-15 17:00:00 +0800", "2020-05-15T17:00:00+08:00"),
            ("2020-05-15T17:00-05", "2020-05-15T17:00:00-05:00"),
            ("2020-05-15", "2020-05-15T00:00:00+00:00"),
            (" 2020-5-1 ", "2020-05-01T00:00:00+00:00"),
        ]);
    }

    #[test]
    fn dates_without_offset_are_utc() {
        assert_dates(&[
            ("2020-05-15T17:00:00", "2020-05-15T17:00:00+00:00"),
            ("2020-05-15 17:00", "2020-05-15T17:00:00+00:00"),
        ]);
    }

    /// Asserts that each `(text, rfc3339)` parses to that date-time.
    #[track_caller]
    fn assert_dates(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            let parsed = parse_date(text).map(|d| d.to_rfc3339());
            assert_eq!(parsed.as_deref(), Some(*expected), "{text}");
        }
    }

    #[test]
    fn odd_dates_are_refused() {
        for text in [
            "15/05/2020",
            "2020-13-01",
            "2020-02-30",
            "20-05-15",
            "2020-05-15T25:00",
            "2020-05-15T17:00+24:00",
            "2020-05-15T17:00+08:00:00",
            "2020-05-15 noon",
            "May 15, 2020",
            "2020-05-15-",
            "-2020-05-15",
            "",
        ] {
            assert_eq!(parse_date(text), None, "{text}");
        }
    }

    #[test]
    fn cjk_slug_is_percent_encoded() {
        let i = parse(
            "---\ntitle: x\ndate: 2020-01-01\nslug: 周报\n---\n",
            Path::new("a.md"),
            &config(),
        )
        .unwrap();
        assert_eq!(
            i.permalink.as_str(),
            "https://www.sofastack.tech/issues/%E5%91%A8%E6%8A%A5/"
        );
    }
}
