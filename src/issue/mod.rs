//! Issues: the newsletter's source files, loaded and rendered once per run.
//!
//! First stage of the pipeline: `*.md` files under the issues folder → [`Issue`] values with
//! parsed front matter, a permalink, and the body rendered to HTML with absolute links. Every
//! later stage (feeds, archive, email) reads these values and never the files.

pub mod cjk;
pub mod files;
pub mod front_matter;
pub mod markdown;
#[cfg(test)]
mod robustness_tests;

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{Config, DateFallback};
use front_matter::{FrontMatterError, RawFrontMatter, Split};

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
        let path = location_path(&self.path);
        if self.line > 0 {
            write!(f, "{path}:{}: {}", self.line, self.message)
        } else {
            write!(f, "{path}: {}", self.message)
        }
    }
}

/// `path` as the start of a `file:line: message` location: as it is, unless it holds `: ` (which
/// would make the location ambiguous), a double quote or a line break; then in double quotes,
/// with `"` and `\` escaped by a backslash and line breaks as `\n`, like a C string.
pub fn location_path(path: &Path) -> std::borrow::Cow<'_, str> {
    let text = path.to_string_lossy();
    if !(text.contains(": ") || text.contains(['"', '\n', '\r'])) {
        return text;
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted.into()
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
    let date = date(&split, &fm, path, config)?;
    let slug = slug(&split, fm.slug.as_deref(), path)?;
    let permalink = permalink(config, &slug)?;
    // A bundle's own files sit beside its page: its relative links resolve against the page.
    let base = if files::is_bundle(path) {
        permalink.clone()
    } else {
        config.site.base_url.clone()
    };
    let cover = nonempty(fm.cover)
        .filter(|c| looks_like_url(c))
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
    let content_html = markdown::render(&markdown, &base, markdown::Rendering::for_site(config));
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
        base,
    })
}

/// Whether `text` can be a URL as written in a front matter value: no white space and none of
/// the characters RFC 3986 allows nowhere in a URL (`<>"{}|\^` and the backquote) nor `[` `]`,
/// which only an IPv6 host holds and a Markdown link pasted as the value always does. A `cover`
/// that is not is left out (`check` reports it).
pub fn looks_like_url(text: &str) -> bool {
    !text.contains(|c: char| c.is_whitespace() || "<>\"{}|\\^`[]".contains(c))
}

/// `value` trimmed, `None` when that leaves nothing.
fn nonempty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The required `title`, trimmed, HTML character references in it decoded (see
/// [`decode_entities`]).
fn title(split: &Split<'_>, title: Option<&str>) -> Result<String, FrontMatterError> {
    match title.map(str::trim) {
        Some(t) if !t.is_empty() => Ok(decode_entities(t).into_owned()),
        _ => Err(FrontMatterError {
            line: front_matter::key_line(split, "title").unwrap_or(split.front_matter_line - 1),
            message: "missing `title` in the front matter: add `title: \"...\"`".into(),
        }),
    }
}

/// The issue's date: the first date key of the front matter (see [`RawFrontMatter::date`];
/// parsed by [`parse_date`], an error on its line), else `site.date_fallback` for the file at
/// `path`.
fn date(
    split: &Split<'_>,
    fm: &RawFrontMatter,
    path: &Path,
    config: &Config,
) -> Result<DateTime<FixedOffset>, FrontMatterError> {
    let Some((key, d)) = fm.date() else {
        return date_fallback(path, config.site.date_fallback).map_err(|why| FrontMatterError {
            line: front_matter::key_line(split, "date").unwrap_or(split.front_matter_line - 1),
            message: format!("missing `date` in the front matter: add e.g. `date: 2020-05-15T17:00:00+08:00`{why}"),
        });
    };
    parse_date(d).ok_or_else(|| FrontMatterError {
        line: front_matter::key_line(split, key).unwrap_or(split.front_matter_line - 1),
        message: format!(
            "cannot read the date `{d}`: write it as `YYYY-MM-DD`, or RFC 3339 with an offset, e.g. `2020-05-15T17:00:00+08:00`"
        ),
    })
}

/// The date `fallback` gives the file at `path`; else why there is none, as the end of the
/// "missing `date`" message.
fn date_fallback(path: &Path, fallback: DateFallback) -> Result<DateTime<FixedOffset>, String> {
    match fallback {
        DateFallback::None => Err(String::new()),
        DateFallback::Mtime => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map(|t| DateTime::<chrono::Utc>::from(t).fixed_offset())
            .map_err(|e| format!(" (`site.date_fallback = \"mtime\"`, but the file's modification time cannot be read: {e})")),
        DateFallback::Git => git_added_date(path).map_err(|why| {
            format!(" (`site.date_fallback = \"git\"`, but {why})")
        }),
    }
}

/// The author date of the git commit that added the file at `path`, following renames.
fn git_added_date(path: &Path) -> Result<DateTime<FixedOffset>, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or("the path names no file")?;
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "--follow", "--diff-filter=A", "--format=%aI", "--"])
        .arg(name)
        .output()
        .map_err(|e| format!("git cannot be run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The oldest commit that added it (a file deleted and added again has several).
    match text.lines().last().map(str::trim).filter(|l| !l.is_empty()) {
        Some(line) if out.status.success() => DateTime::parse_from_rfc3339(line)
            .map_err(|e| format!("git gave the date `{line}`, which is not RFC 3339: {e}")),
        _ => Err("git has no commit that added the file: commit it, or add a `date`".into()),
    }
}

/// `text` with its HTML character references (`&amp;`, `&nbsp;`, `&#38;`, `&#x26;`) replaced
/// by the characters they stand for; a `&` that starts none is kept. A title is plain text,
/// but one copied from HTML often says `MOSN&amp;SOFARPC` for `MOSN&SOFARPC`: every output
/// escapes the title again, so left as it was it would show `&amp;` to readers (and draw the
/// feed validator's "title should not contain HTML"). `check` reports such titles.
pub fn decode_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let reference = rest[1..]
            .find(';')
            .filter(|&end| end <= 32)
            .map(|end| &rest[1..=end]);
        match reference.and_then(character_reference) {
            Some(decoded) => {
                out.push_str(&decoded);
                rest = &rest[reference.map_or(1, |r| r.len() + 2)..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// What the character reference `name` (between `&` and `;`) stands for: a named HTML5 entity
/// (the `quick-xml` crate's table) or a decimal or hexadecimal code point.
fn character_reference(name: &str) -> Option<String> {
    let code = match name.strip_prefix('#') {
        Some(hex) if hex.starts_with(['x', 'X']) => u32::from_str_radix(&hex[1..], 16).ok(),
        Some(decimal) => decimal.parse().ok(),
        None => return quick_xml::escape::resolve_html5_entity(name).map(String::from),
    };
    code.and_then(char::from_u32)
        .filter(|c| *c != '\0')
        .map(String::from)
}

/// The slug: `slug` (without slashes around it), else a leaf bundle's folder name or the file
/// name without `.md` ([`files::default_slug`]).
fn slug(split: &Split<'_>, slug: Option<&str>, path: &Path) -> Result<String, FrontMatterError> {
    let slug = match slug.map(str::trim) {
        Some(s) if !s.is_empty() => s.trim_matches('/').to_string(),
        _ => files::default_slug(path),
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
    fn hugo_date_keys_stand_in_for_a_missing_date() {
        let date = |front: &str| {
            let text = format!("---\ntitle: t\n{front}---\n");
            parse(&text, Path::new("a.md"), &config()).map(|i| i.date.to_rfc3339())
        };
        let day = |d: &str| Ok(format!("{d}T00:00:00+00:00"));
        assert_eq!(date("publishDate: 2020-05-15\n"), day("2020-05-15"));
        assert_eq!(date("pubDate: 2020-05-16\n"), day("2020-05-16"));
        assert_eq!(date("published: 2020-05-17\n"), day("2020-05-17"));
        assert_eq!(date("publishdate: 2020-05-18\n"), day("2020-05-18"));
        // Hugo's order: date, publishDate, pubDate, published; a blank one is skipped.
        assert_eq!(
            date("published: 2020-01-03\npubDate: 2020-01-02\npublishDate: ''\n"),
            day("2020-01-02")
        );
        assert_eq!(
            date("publishDate: 2020-01-02\ndate: 2020-01-01\n"),
            day("2020-01-01")
        );
        let e = error("---\ntitle: t\npublishdate: someday\n---\n");
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("cannot read the date `someday`"),
            "{e:?}"
        );
        let e = error("---\ntitle: t\n---\n");
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("missing `date`"), "{e:?}");
    }

    #[test]
    fn a_missing_date_can_fall_back_to_the_files_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.md");
        std::fs::write(&path, "---\ntitle: t\n---\nx\n").unwrap();
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_589_533_200);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(mtime).unwrap();
        let mut config = config();
        config.site.date_fallback = DateFallback::Mtime;
        let issue = load_file(&path, &config).unwrap();
        assert_eq!(issue.date.to_rfc3339(), "2020-05-15T09:00:00+00:00");
        // A date in the file still wins.
        std::fs::write(&path, "---\ntitle: t\ndate: 2021-01-01\n---\nx\n").unwrap();
        let issue = load_file(&path, &config).unwrap();
        assert_eq!(issue.date.to_rfc3339(), "2021-01-01T00:00:00+00:00");
    }

    #[test]
    fn a_missing_date_can_fall_back_to_the_commit_that_added_the_file() {
        let git_works = std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !git_works {
            assert!(std::env::var_os("CI").is_none(), "git is required under CI");
            eprintln!("skipped: no git on this machine");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str], date: &str| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
                .args(args)
                .env("GIT_AUTHOR_DATE", date)
                .env("GIT_COMMITTER_DATE", date)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        let path = dir.path().join("a.md");
        let mut config = config();
        config.site.date_fallback = DateFallback::Git;
        std::fs::write(&path, "---\ntitle: t\n---\nx\n").unwrap();
        git(&["init", "-q"], "2020-05-15T17:00:00+08:00");
        let e = load_file(&path, &config).unwrap_err();
        assert!(
            e.message.contains("git has no commit that added the file"),
            "{e:?}"
        );
        git(&["add", "a.md"], "2020-05-15T17:00:00+08:00");
        git(&["commit", "-qm", "add"], "2020-05-15T17:00:00+08:00");
        // A later edit does not move the date.
        std::fs::write(&path, "---\ntitle: t2\n---\nx\n").unwrap();
        git(&["commit", "-qam", "edit"], "2021-01-01T00:00:00+00:00");
        let issue = load_file(&path, &config).unwrap();
        assert_eq!(issue.date.to_rfc3339(), "2020-05-15T17:00:00+08:00");
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
    fn paths_with_a_colon_and_space_are_quoted_in_locations() {
        let e = |path: &str| IssueError {
            path: path.into(),
            line: 3,
            message: "bad".into(),
        };
        assert_eq!(e("issues/a:b.md").to_string(), "issues/a:b.md:3: bad");
        assert_eq!(
            e("issues/Q&A: week 1.md").to_string(),
            "\"issues/Q&A: week 1.md\":3: bad"
        );
        assert_eq!(
            e("issues/say \"hi\": \\.md").to_string(),
            "\"issues/say \\\"hi\\\": \\\\.md\":3: bad"
        );
    }

    #[test]
    fn character_references_in_titles_are_decoded() {
        let title = |t: &str| {
            let text = format!("---\ntitle: '{t}'\ndate: 2020-01-01\n---\n");
            parse(&text, Path::new("a.md"), &config()).unwrap().title
        };
        assert_eq!(title("MOSN&amp;SOFARPC"), "MOSN&SOFARPC");
        assert_eq!(title("a&nbsp;b &#38; &#x26;&lt;T&gt;"), "a\u{a0}b & &<T>");
        assert_eq!(
            title("SOFABoot&SOFAHessian & &nope; &#0; &"),
            "SOFABoot&SOFAHessian & &nope; &#0; &"
        );
    }

    #[test]
    fn a_cover_that_is_not_a_url_is_left_out() {
        let cover = |c: &str| {
            let text = format!("---\ntitle: t\ndate: 2020-01-01\ncover: '{c}'\n---\n");
            let issue = parse(&text, Path::new("a.md"), &config()).unwrap();
            issue.cover.map(String::from)
        };
        assert_eq!(cover("[图](https://cdn.example.org/a.png)"), None);
        assert_eq!(cover("a b.png"), None);
        assert_eq!(
            cover("/img/a(1).png").as_deref(),
            Some("https://www.sofastack.tech/img/a(1).png")
        );
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
