//! What the feed crates (`rss`, `atom_syndication`) leave to us: text they can write as
//! well-formed XML, and the stylesheet processing instruction.
//!
//! The crates escape markup (`&`, `<`, `>`, quotes) and split `]]>` across CDATA sections, but
//! pass through characters XML 1.0 forbids. [`clean`] drops those (C0 controls other than tab and
//! line feed, carriage returns — a parser would normalise them away — and U+FFFE, U+FFFF) before
//! any text reaches a crate, so every document stays well-formed whatever an issue holds.
//! [`stylesheet_pi`] makes the `xml-stylesheet` instruction the crates cannot write.

use std::fmt::Write;

/// Whether the byte at `i` of `s` starts something [`clean`] must drop: a C0 control but tab
/// and line feed, or U+FFFE/U+FFFF (the only forbidden characters above U+001F that UTF-8 text
/// can hold; surrogates cannot appear in a `str`).
#[inline]
fn forbidden(bytes: &[u8], i: usize) -> bool {
    match bytes[i] {
        b'\t' | b'\n' => false,
        0..=0x1f => true,
        0xEF => bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)),
        _ => false,
    }
}

/// Whether `bytes` hold nothing [`clean`] drops. Written as folds over whole slices so the
/// compiler vectorises them: HTML bodies are most of a feed's bytes.
fn is_clean(bytes: &[u8]) -> bool {
    let controls = bytes.iter().fold(false, |acc, &b| {
        acc | ((b < 0x20) & (b != b'\t') & (b != b'\n'))
    });
    let nonchars = bytes.len() >= 3
        && bytes
            .iter()
            .zip(&bytes[1..])
            .zip(&bytes[2..])
            .fold(false, |acc, ((&a, &b), &c)| {
                acc | ((a == 0xEF) & (b == 0xBF) & ((c | 1) == 0xBF))
            });
    !controls && !nonchars
}

/// `text` as an owned `String` (what the crates' structs hold) without the characters XML 1.0
/// forbids, and without carriage returns. Text that has none is copied in one piece.
pub fn clean(text: &str) -> String {
    let bytes = text.as_bytes();
    if is_clean(bytes) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if forbidden(bytes, i) {
            out.push_str(&text[start..i]);
            i += if bytes[i] == 0xEF { 3 } else { 1 };
            start = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[start..]);
    out
}

/// `text` with `&`, `<`, `>` and `"` written as entities (maud's escaper): plain text made
/// HTML or XML that shows it as it is, e.g. for RSS `<description>`, which readers take as
/// HTML, or a double-quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    maud::Escaper::new(&mut out)
        .write_str(text)
        .expect("writing to a String cannot fail");
    out
}

/// The `xml-stylesheet` processing instruction pointing browsers at the XSLT at `href` (W3C
/// "Associating Style Sheets with XML documents"), followed by a line feed. `href` is escaped
/// for its double-quoted pseudo-attribute.
pub fn stylesheet_pi(href: &str) -> String {
    let mut out = String::with_capacity(href.len() + 48);
    out.push_str("<?xml-stylesheet type=\"text/xsl\" href=\"");
    // Tab and line feed, which an attribute value would turn into spaces, cannot be in a URL.
    out.push_str(&escape(&clean(href)));
    out.push_str("\"?>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_dropped_and_markup_left_to_the_crates() {
        assert_eq!(clean("a < b & c \u{0}\u{b}e\r\n"), "a < b & c e\n");
        assert_eq!(
            clean("a\u{FFFE}b\u{FFFF}c\u{FFFD}\u{EFFF}d"),
            "abc\u{FFFD}\u{EFFF}d"
        );
    }

    #[test]
    fn clean_text_passes_whole() {
        // U+FF0C and U+FF1A start with the byte 0xEF, like the forbidden U+FFFE/U+FFFF.
        let text = "问答，进展：[1] a]]>b \u{FFFD}\n\t每周精选";
        assert!(is_clean(text.as_bytes()));
        assert_eq!(clean(text), text);
        assert!(!is_clean("a\rb".as_bytes()));
        assert!(!is_clean("a\u{FFFF}".as_bytes()));
    }

    #[test]
    fn stylesheet_instruction_escapes_its_href() {
        assert_eq!(
            stylesheet_pi("/feed.xsl?a=1&b=\"2\""),
            "<?xml-stylesheet type=\"text/xsl\" href=\"/feed.xsl?a=1&amp;b=&quot;2&quot;\"?>\n"
        );
    }
}
