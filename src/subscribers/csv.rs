//! Subscribers as CSV (RFC 4180), for `feedpost subscribers import` and `export`: a header row
//! `email,name,topics`, then one subscriber a row, its topics separated by `;`.
//!
//! Beside the pipeline: it moves readers into and out of the store. A bad row is an
//! [`EntryError`] (`file:line: message`) and is skipped; a bad header stops the import.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};

use super::{normalize, EntryError};

/// The header `export` writes and `import` expects (columns in any order; `name` and `topics`
/// may be left out).
pub const HEADER: [&str; 3] = ["email", "name", "topics"];

/// What separates topics in the `topics` column.
pub const TOPIC_SEPARATOR: char = ';';

/// The longest name kept, in characters (as the subscription form).
const MAX_NAME_CHARS: usize = 100;

/// One valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvSubscriber {
    /// The address as written (trimmed).
    pub email: String,
    /// The recipient key: the address with its domain in A-labels, lowercased (see
    /// [`normalize`]).
    pub key: String,
    /// The name, if the cell is not empty.
    pub name: Option<String>,
    /// Topics, trimmed, empty ones dropped; none: every issue.
    pub topics: Vec<String>,
    /// The 1-based line the row starts on.
    pub line: u64,
}

/// Parses CSV `bytes`, UTF-8 (a leading byte order mark is ignored); `path` names the file in
/// errors. Returns the valid rows in file order and one [`EntryError`] per bad row (an address
/// that is not valid, a name too long or with control characters, a wrong number of cells, a
/// row that is not UTF-8, an address listed twice — the later row is the bad one).
///
/// # Errors
/// The header is missing, has no `email` column, or names a column other than `email`, `name`
/// and `topics`; the message names the file, line 1, and the header expected.
pub fn parse(bytes: &[u8], path: &Path) -> Result<(Vec<CsvSubscriber>, Vec<EntryError>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(::csv::Trim::All)
        .from_reader(bytes);
    let expected = HEADER.join(",");
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => bail!(
            "{}:1: cannot read the header row ({e}); the first row must be `{expected}`",
            path.display()
        ),
    };
    let mut columns = [None; 3];
    for (i, name) in header.iter().enumerate() {
        match HEADER.iter().position(|h| h.eq_ignore_ascii_case(name)) {
            Some(c) if columns[c].is_none() => columns[c] = Some(i),
            Some(_) => bail!(
                "{}:1: the column `{name}` appears twice; the first row must be `{expected}`",
                path.display()
            ),
            None => bail!(
                "{}:1: unknown column `{name}`; the first row must be `{expected}`",
                path.display()
            ),
        }
    }
    let [Some(email_at), name_at, topics_at] = columns else {
        bail!(
            "{}:1: no `email` column; the first row must be `{expected}`",
            path.display()
        );
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let bad = |line: u64, message: String| EntryError {
            path: path.to_path_buf(),
            line: line as usize,
            message,
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(bad(line, cell_error(&e)));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let cell = |at: Option<usize>| at.and_then(|i| record.get(i)).unwrap_or_default();
        match row(cell(Some(email_at)), cell(name_at), cell(topics_at), line) {
            Ok(row) => match first_line.get(&row.key) {
                Some(first) => errors.push(bad(
                    line,
                    format!(
                        "`{}` is listed more than once (first on line {first}); this row is skipped",
                        row.email
                    ),
                )),
                None => {
                    first_line.insert(row.key.clone(), line);
                    rows.push(row);
                }
            },
            Err(message) => errors.push(bad(line, message)),
        }
    }
    Ok((rows, errors))
}

/// What is wrong with a row the CSV reader could not read.
fn cell_error(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "{len} cells where the header has {expected_len}; a cell holding a comma needs double quotes"
        ),
        ::csv::ErrorKind::Utf8 { .. } => {
            "the row is not UTF-8 text; save the file as UTF-8".to_string()
        }
        _ => format!("cannot read the row ({e})"),
    }
}

/// One row checked.
fn row(email: &str, name: &str, topics: &str, line: u64) -> Result<CsvSubscriber, String> {
    if email.is_empty() {
        return Err("the `email` cell is empty".to_string());
    }
    let (_, key) = normalize(email)?;
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the name of `{email}` is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the name of `{email}` holds a control character (a line break?)"
        ));
    }
    let mut list: Vec<String> = Vec::new();
    for topic in topics.split(TOPIC_SEPARATOR).map(str::trim) {
        if !topic.is_empty() && !list.iter().any(|t| t.eq_ignore_ascii_case(topic)) {
            list.push(topic.to_string());
        }
    }
    Ok(CsvSubscriber {
        email: email.to_string(),
        key,
        name: (!name.is_empty()).then(|| name.to_string()),
        topics: list,
        line,
    })
}

/// Writes the header and one row per `(email, name, topics)` to `out`, quoting cells as RFC
/// 4180 needs. The output reads back with [`parse`] as the same subscribers.
///
/// # Errors
/// `out` cannot be written (a closed pipe included).
pub fn write<'a>(
    out: impl Write,
    rows: impl IntoIterator<Item = (&'a str, Option<&'a str>, &'a [String])>,
) -> Result<()> {
    let mut writer = ::csv::Writer::from_writer(out);
    writer.write_record(HEADER)?;
    for (email, name, topics) in rows {
        let topics = topics.join(&TOPIC_SEPARATOR.to_string());
        writer.write_record([email, name.unwrap_or_default(), topics.as_str()])?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (Vec<CsvSubscriber>, Vec<String>) {
        let (rows, errors) = parse(text.as_bytes(), Path::new("in.csv")).unwrap();
        (rows, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn rows_with_names_topics_and_quotes() {
        let (rows, errors) = parsed(
            "\u{feff}email,name,topics\na@x.org,\"Lin, Ada\",MOSN; Rust ;\nB@Bücher.example,,\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].name.as_deref(), &rows[0].topics[..], rows[0].line),
            (
                Some("Lin, Ada"),
                &["MOSN".to_string(), "Rust".to_string()][..],
                2
            )
        );
        assert_eq!(rows[1].key, "b@xn--bcher-kva.example");
        assert_eq!((rows[1].name.as_deref(), rows[1].topics.len()), (None, 0));
    }

    #[test]
    fn bad_rows_name_their_line_and_the_rest_go_on() {
        let (rows, errors) = parsed(
            "email,name,topics\nnot-an-address,,\nok@x.org,Ok,\n,,Rust\nOK@x.org,,\nc@x.org,C\n",
        );
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [3]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("in.csv:2: `not-an-address` is not a valid"));
        assert_eq!(errors[1], "in.csv:4: the `email` cell is empty");
        assert!(errors[2]
            .starts_with("in.csv:5: `OK@x.org` is listed more than once (first on line 3)"));
        assert!(errors[3].starts_with("in.csv:6: 2 cells where the header has 3"));
    }

    #[test]
    fn a_row_that_is_not_utf8_is_skipped() {
        let (rows, errors) = parse(b"email\n\xff@x.org\nb@x.org\n", Path::new("in.csv")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "in.csv:2: the row is not UTF-8 text; save the file as UTF-8"
        );
    }

    #[test]
    fn a_bad_header_stops_the_import() {
        for (text, says) in [
            ("", "no `email` column"),
            ("mail,name\na@x.org,A\n", "unknown column `mail`"),
            ("name,topics\nA,B\n", "no `email` column"),
        ] {
            let e = parse(text.as_bytes(), Path::new("in.csv"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("in.csv:1: ") && e.contains(says), "{e}");
        }
        // Columns in another order, `topics` left out.
        let (rows, _) = parsed("name,email\nAda,a@x.org\n");
        assert_eq!(rows[0].name.as_deref(), Some("Ada"));
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let topics = vec!["MOSN".to_string(), "SOFA Weekly".to_string()];
        let mut out = Vec::new();
        write(
            &mut out,
            [
                ("a@x.org", Some("Lin, \"Ada\""), &topics[..]),
                ("b@x.org", None, &[][..]),
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("email,name,topics\n"), "{text}");
        let (rows, errors) = parsed(&text);
        assert!(errors.is_empty());
        assert_eq!(
            (rows[0].name.as_deref(), &rows[0].topics),
            (Some("Lin, \"Ada\""), &topics)
        );
        assert_eq!(rows[1].email, "b@x.org");
    }
}
