//! Splitting an issue file into front matter and Markdown body, and reading the front matter.
//!
//! The first stage of loading an issue. Hugo-style: YAML between `---` lines or TOML between
//! `+++` lines, at the top of the file (a byte-order mark and blank lines before it are allowed).
//! This is the only module that knows about `serde_norway`, so the YAML parser can be swapped here.

use serde::Deserialize;

/// Which syntax a front matter block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `---` delimiters, YAML inside.
    Yaml,
    /// `+++` delimiters, TOML inside.
    Toml,
}

/// A file cut in two: the front matter text and the Markdown body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split<'a> {
    /// The syntax of the front matter.
    pub format: Format,
    /// The text between the delimiter lines.
    pub front_matter: &'a str,
    /// 1-based line of the first front matter line (the one after the opening delimiter).
    pub front_matter_line: usize,
    /// The Markdown after the closing delimiter.
    pub body: &'a str,
    /// 1-based line where the body starts.
    pub body_line: usize,
}

/// Why a file could not be split or its front matter read. `line` is 1-based, in the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct FrontMatterError {
    /// 1-based line in the file the problem is at.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> FrontMatterError {
    FrontMatterError {
        line,
        message: message.into(),
    }
}

/// Cuts `text` into front matter and body.
///
/// # Errors
/// No opening `---`/`+++` line at the top, or no matching closing line.
pub fn split(text: &str) -> Result<Split<'_>, FrontMatterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut offset = 0;
    let mut line_no = 1;
    // Skip blank lines before the opening delimiter.
    let (format, delimiter) = loop {
        let Some(line) = next_line(text, offset) else {
            return Err(err(line_no, "the file is empty: an issue starts with front matter, e.g. the four lines `---`, `title: \"...\"`, `date: 2024-01-05T15:00:00+08:00`, `---`"));
        };
        let trimmed = line.trim_end();
        offset += line.len();
        match trimmed {
            "" => line_no += 1,
            "---" => break (Format::Yaml, "---"),
            "+++" => break (Format::Toml, "+++"),
            _ => {
                return Err(err(
                    line_no,
                    "couldn't find front matter: the file must start with a `---` (YAML) or `+++` (TOML) line",
                ))
            }
        }
    };
    let open_line = line_no;
    let fm_start = offset;
    line_no += 1;
    let front_matter_line = line_no;
    while let Some(line) = next_line(text, offset) {
        if line.trim_end() == delimiter {
            let front_matter = &text[fm_start..offset];
            offset += line.len();
            return Ok(Split {
                format,
                front_matter,
                front_matter_line,
                body: &text[offset..],
                body_line: line_no + 1,
            });
        }
        offset += line.len();
        line_no += 1;
    }
    Err(err(
        open_line,
        format!("the front matter opened here is never closed: add a `{delimiter}` line after it"),
    ))
}

/// The line starting at `offset`, with its line ending, or `None` at the end of `text`.
fn next_line(text: &str, offset: usize) -> Option<&str> {
    if offset >= text.len() {
        return None;
    }
    let rest = &text[offset..];
    Some(match rest.find('\n') {
        Some(i) => &rest[..=i],
        None => rest,
    })
}

/// A string or a list of strings (`categories: "SOFA Weekly"` or `tags: [a, b]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// Absent or null.
    #[default]
    None,
    /// A plain string.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, trimmed, empty ones dropped.
    pub fn into_vec(self) -> Vec<String> {
        let v = match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        v.into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// The front matter keys feedpost reads (Hugo's names); other keys are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RawFrontMatter {
    /// `title`: required.
    pub title: Option<String>,
    /// `date`: the date (TOML datetimes are turned into RFC 3339 text).
    pub date: Option<String>,
    /// `publishDate` (also `publishdate`: Hugo reads keys case-insensitively), Hugo's next
    /// choice for the date when `date` is missing.
    #[serde(rename = "publishDate", alias = "publishdate")]
    pub publish_date: Option<String>,
    /// `pubDate` (also `pubdate`), after `publishDate`.
    #[serde(rename = "pubDate", alias = "pubdate")]
    pub pub_date: Option<String>,
    /// `published`, after `pubDate`.
    pub published: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `author`.
    pub author: Option<String>,
    /// `authorlink`: URL of the author.
    pub authorlink: Option<String>,
    /// `categories`: a string or a list.
    pub categories: OneOrMany,
    /// `tags`: a string or a list.
    pub tags: OneOrMany,
    /// `cover`: image URL, absolute or relative to the site.
    pub cover: Option<String>,
    /// `draft`.
    pub draft: bool,
    /// `slug`: the last segment of the permalink.
    pub slug: Option<String>,
    /// `summary`: the feed entry's description.
    pub summary: Option<String>,
}

impl RawFrontMatter {
    /// The date as written, with the key it was under: the first of `date`,
    /// `publishDate`, `pubDate` and `published` that is set and not blank (Hugo's default
    /// `[frontmatter] date` order).
    pub fn date(&self) -> Option<(&'static str, &str)> {
        [
            ("date", &self.date),
            ("publishDate", &self.publish_date),
            ("pubDate", &self.pub_date),
            ("published", &self.published),
        ]
        .into_iter()
        .find_map(|(key, value)| {
            let value = value.as_deref()?.trim();
            (!value.is_empty()).then_some((key, value))
        })
    }
}

/// Reads the front matter of a [`Split`] into [`RawFrontMatter`].
///
/// # Errors
/// The YAML or TOML is invalid, or a key has the wrong type; the error's line is in the file.
pub fn parse(split: &Split<'_>) -> Result<RawFrontMatter, FrontMatterError> {
    match split.format {
        Format::Yaml => {
            if split.front_matter.trim().is_empty() {
                return Ok(RawFrontMatter::default());
            }
            // Most front matter deserializes as it is, in one pass; the rest (a tagged value, a
            // mistake) goes the long way below, which converts what it can and names the bad
            // key and its line.
            if let Ok(fm) = serde_norway::from_str::<RawFrontMatter>(split.front_matter) {
                return Ok(fm);
            }
            let value: serde_norway::Value =
                serde_norway::from_str(split.front_matter).map_err(|e| {
                    // From the byte index, not libyaml's line: YAML also breaks lines at a
                    // lone `\r`, U+2028 and U+0085, which editors and this file's lines do not.
                    // At the end of the input (an unclosed `[`), the last line with text.
                    let end = split.front_matter.trim_end().len();
                    let line = e.location().map_or(0, |l| {
                        newlines_before(split.front_matter, l.index().min(end))
                    });
                    err(
                        split.front_matter_line + line,
                        format!(
                            "invalid YAML front matter: {}",
                            strip_location(&e.to_string())
                        ),
                    )
                })?;
            let map = match yaml_dates_to_strings(value) {
                serde_norway::Value::Mapping(map) => map,
                serde_norway::Value::Null => return Ok(RawFrontMatter::default()),
                _ => return Err(not_a_mapping(split)),
            };
            serde_norway::from_value(serde_norway::Value::Mapping(map.clone())).map_err(|e| {
                // Find the key whose value is wrong, to name it and its line.
                let bad = map.iter().find_map(|(k, v)| {
                    let one: serde_norway::Mapping = [(k.clone(), v.clone())].into_iter().collect();
                    serde_norway::from_value::<RawFrontMatter>(serde_norway::Value::Mapping(one))
                        .is_err()
                        .then(|| k.as_str().map(str::to_string))
                });
                wrong_type(split, bad.flatten(), &e.to_string())
            })
        }
        Format::Toml => {
            let table: toml::Table = toml::from_str(split.front_matter).map_err(|e| {
                let line = e
                    .span()
                    .map_or(0, |s| newlines_before(split.front_matter, s.start));
                err(
                    split.front_matter_line + line,
                    format!("invalid TOML front matter: {}", e.message()),
                )
            })?;
            let toml::Value::Table(table) = toml_dates_to_strings(toml::Value::Table(table)) else {
                return Err(not_a_mapping(split));
            };
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let bad = table.iter().find_map(|(k, v)| {
                        let one: toml::Table = [(k.clone(), v.clone())].into_iter().collect();
                        toml::Value::Table(one)
                            .try_into::<RawFrontMatter>()
                            .is_err()
                            .then(|| k.clone())
                    });
                    wrong_type(split, bad, e.message())
                })
        }
    }
}

/// How many `\n` come before byte `index` of `text` (all of them when `index` is past the end).
fn newlines_before(text: &str, index: usize) -> usize {
    let bytes = text.as_bytes();
    bytes[..index.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn not_a_mapping(split: &Split<'_>) -> FrontMatterError {
    err(
        split.front_matter_line,
        "the front matter must be `key: value` lines (YAML) or `key = value` lines (TOML)",
    )
}

/// The error for a key whose value has the wrong type, on that key's line when it is known.
fn wrong_type(split: &Split<'_>, key: Option<String>, detail: &str) -> FrontMatterError {
    let Some(key) = key else {
        return err(
            split.front_matter_line,
            format!("unexpected front matter value: {detail}"),
        );
    };
    let expected = match key.as_str() {
        "categories" | "tags" => "a string or a list of strings, e.g. `[\"a\", \"b\"]`",
        "draft" => "`true` or `false`",
        _ => "a string",
    };
    err(
        key_line(split, &key).unwrap_or(split.front_matter_line),
        format!("`{key}` must be {expected}"),
    )
}

/// 1-based line in the file of the first line of the front matter that sets `key` (compared
/// ignoring ASCII case, as Hugo reads keys: `publishdate` for `publishDate`), if any.
pub fn key_line(split: &Split<'_>, key: &str) -> Option<usize> {
    split
        .front_matter
        .lines()
        .enumerate()
        .find_map(|(i, line)| {
            let line = line.trim_start();
            let name = line.get(..key.len())?;
            if !name.eq_ignore_ascii_case(key) {
                return None;
            }
            let rest = line[key.len()..].trim_start();
            (rest.starts_with(':') || rest.starts_with('=')).then_some(split.front_matter_line + i)
        })
}

fn strip_location(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

/// Dates, numbers and booleans where a string is expected become their text, so
/// `date: 2020-05-15` or `title: 2020` still load.
fn yaml_dates_to_strings(value: serde_norway::Value) -> serde_norway::Value {
    use serde_norway::Value;
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| {
                    let stringly = matches!(
                        k.as_str(),
                        Some(
                            "title"
                                | "date"
                                | "publishDate"
                                | "publishdate"
                                | "pubDate"
                                | "pubdate"
                                | "published"
                                | "slug"
                                | "description"
                                | "summary"
                                | "author"
                        )
                    );
                    let v = match v {
                        Value::Number(n) if stringly => Value::String(n.to_string()),
                        Value::Bool(b) if stringly => Value::String(b.to_string()),
                        Value::Tagged(t) => Value::String(
                            serde_norway::to_string(&t.value)
                                .unwrap_or_default()
                                .trim()
                                .to_string(),
                        ),
                        other => other,
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

fn toml_dates_to_strings(value: toml::Value) -> toml::Value {
    match value {
        toml::Value::Datetime(d) => toml::Value::String(d.to_string()),
        toml::Value::Table(t) => toml::Value::Table(
            t.into_iter()
                .map(|(k, v)| (k, toml_dates_to_strings(v)))
                .collect(),
        ),
        toml::Value::Array(a) => {
            toml::Value::Array(a.into_iter().map(toml_dates_to_strings).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_yaml_and_counts_lines() {
        let s = split("---\ntitle: x\n---\nbody\n").unwrap();
        assert_eq!(s.format, Format::Yaml);
        assert_eq!(s.front_matter, "title: x\n");
        assert_eq!(s.front_matter_line, 2);
        assert_eq!(s.body, "body\n");
        assert_eq!(s.body_line, 4);
    }

    #[test]
    fn allows_bom_blank_lines_and_crlf() {
        let s = split("\u{feff}\n\r\n+++\r\ntitle = 'x'\r\n+++\r\nbody").unwrap();
        assert_eq!(s.format, Format::Toml);
        assert_eq!(s.front_matter_line, 4);
        assert_eq!(s.body, "body");
    }

    #[test]
    fn unterminated_points_at_the_opening_line() {
        let e = split("\n---\ntitle: x\nbody\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"));
    }

    #[test]
    fn missing_front_matter_is_explained() {
        let e = split("# Hello\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("`---`"));
    }

    #[test]
    fn categories_as_string_or_list() {
        let s = split("---\ncategories: \"SOFA Weekly\"\ntags: [\"a\", \"b\"]\ndraft: true\n---\n")
            .unwrap();
        let fm = parse(&s).unwrap();
        assert_eq!(fm.categories.into_vec(), ["SOFA Weekly"]);
        assert_eq!(fm.tags.into_vec(), ["a", "b"]);
        assert!(fm.draft);
    }

    #[test]
    fn toml_datetime_becomes_text() {
        let s = split("+++\ntitle = \"t\"\ndate = 2020-05-15T17:00:00+08:00\n+++\n").unwrap();
        let fm = parse(&s).unwrap();
        assert_eq!(fm.date.as_deref(), Some("2020-05-15T17:00:00+08:00"));
    }

    #[test]
    fn yaml_syntax_error_has_file_line() {
        let s = split("---\ntitle: ok\ntags: [unclosed\n\n---\n").unwrap();
        let e = parse(&s).unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(e.message.contains("invalid YAML"));
    }

    #[test]
    fn wrong_types_name_the_key_and_its_line() {
        let s = split("---\ntitle: ok\ndate: 2020-05-15\ncategories: [1, [2]]\n---\n").unwrap();
        let e = parse(&s).unwrap_err();
        assert_eq!(e.line, 4);
        assert_eq!(
            e.message,
            "`categories` must be a string or a list of strings, e.g. `[\"a\", \"b\"]`"
        );
        let s = split("+++\ntitle = 't'\ndraft = 'yes'\n+++\n").unwrap();
        let e = parse(&s).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (3, "`draft` must be `true` or `false`")
        );
    }

    #[test]
    fn front_matter_that_is_not_a_mapping() {
        let s = split("---\n- a\n- b\n---\n").unwrap();
        let e = parse(&s).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`key: value`"), "{e:?}");
    }

    #[test]
    fn yaml_error_lines_count_only_newlines() {
        // libyaml also breaks lines at a lone CR; the file has three lines, not six.
        let s = split("---\ntitle: x\r\r\r\rtags: [\n---\n").unwrap();
        let e = parse(&s).unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
    }

    #[test]
    fn scalars_where_text_is_expected_load_as_written() {
        let s = split("---\ntitle: 2020.10\ndate: 2020-05-15\nslug: true\n---\n").unwrap();
        let fm = parse(&s).unwrap();
        assert_eq!(fm.title.as_deref(), Some("2020.10"));
        assert_eq!(fm.date.as_deref(), Some("2020-05-15"));
        assert_eq!(fm.slug.as_deref(), Some("true"));
        // A tagged value goes the long way, which still loads it as text.
        let s = split("---\ntitle: x\ndate: !!timestamp 2020-05-15\n---\n").unwrap();
        assert_eq!(parse(&s).unwrap().date.as_deref(), Some("2020-05-15"));
    }

    #[test]
    fn key_line_finds_the_key() {
        let s = split("---\ntitle: x\ndate: nope\n---\n").unwrap();
        assert_eq!(key_line(&s, "date"), Some(3));
        assert_eq!(key_line(&s, "slug"), None);
    }
}
