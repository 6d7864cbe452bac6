//! A small XML writer for the feeds: escaping, CDATA sections, and the declaration.
//!
//! Feed composition is feedpost's own work (the brief keeps it in-house): RSS and Atom need a
//! stylesheet processing instruction, the `fh`, `media` and `dc` namespaces and exact control of
//! the bytes, and the 10,000-issue archive is written fast by pushing into one `String`.
//! Everything written here is well-formed XML 1.0: characters XML 1.0 forbids (C0 controls other
//! than tab, line feed and carriage return, U+FFFE, U+FFFF) are dropped from text and attributes.

/// Whether the byte at `i` of `s` starts something [`escape`] or [`cdata`] must change: a markup
/// character, a C0 control, or U+FFFE/U+FFFF (the only forbidden characters above U+001F that
/// UTF-8 text can hold; surrogates cannot appear in a `str`). A byte scan, so the common case —
/// a long run of ordinary text — is copied in one piece.
#[inline]
fn special(bytes: &[u8], i: usize, attribute: bool) -> bool {
    match bytes[i] {
        b'&' | b'<' | b'>' | b'\r' => true,
        b'"' | b'\t' | b'\n' => attribute,
        0..=0x1f => true,
        0xEF => bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)),
        _ => false,
    }
}

/// Appends `text` as XML character data: `&`, `<` and `>` escaped, forbidden characters dropped.
pub fn text(out: &mut String, text: &str) {
    escape(out, text, false);
}

/// Appends `value` escaped for a double-quoted attribute (`&`, `<`, `>`, `"`; tab, CR and LF as
/// character references so attribute normalisation keeps them).
pub fn attr(out: &mut String, value: &str) {
    escape(out, value, true);
}

fn escape(out: &mut String, s: &str, attribute: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !special(bytes, i, attribute) {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        let (replacement, len) = match bytes[i] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\t' if attribute => ("&#9;", 1),
            b'\n' if attribute => ("&#10;", 1),
            b'\r' => ("&#13;", 1),
            b'\t' | b'\n' => unreachable!("only special in attributes"),
            0xEF => ("", 3),
            _ => ("", 1),
        };
        out.push_str(replacement);
        i += len;
        start = i;
    }
    out.push_str(&s[start..]);
}

/// Whether `bytes` can go into a CDATA section as they are: no C0 control but tab and line feed
/// (a CR would be normalised away), no U+FFFE/U+FFFF, no `]]>`. Written as folds over whole
/// slices so the compiler vectorises them: HTML bodies are most of a feed's bytes.
fn cdata_safe(bytes: &[u8]) -> bool {
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
    !controls && !nonchars && memchr::memmem::find(bytes, b"]]>").is_none()
}

/// Appends `content` as one or more CDATA sections (`]]>` is split across two sections), with
/// forbidden characters dropped. Used for HTML bodies: cheaper and smaller than escaping.
pub fn cdata(out: &mut String, content: &str) {
    out.push_str("<![CDATA[");
    let bytes = content.as_bytes();
    if cdata_safe(bytes) {
        out.push_str(content);
        out.push_str("]]>");
        return;
    }
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b']' if bytes[i..].starts_with(b"]]>") => {
                out.push_str(&content[start..i]);
                out.push_str("]]]]><![CDATA[");
                start = i + 2;
                i += 2;
            }
            // A CR inside CDATA would be normalised away by every parser; drop it here instead.
            b'\r' | 0..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f => {
                out.push_str(&content[start..i]);
                i += 1;
                start = i;
            }
            0xEF if special(bytes, i, false) => {
                out.push_str(&content[start..i]);
                i += 3;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&content[start..]);
    out.push_str("]]>");
}

/// Appends `<name>text</name>` on its own line, indented by `indent` spaces.
pub fn element(out: &mut String, indent: usize, name: &str, value: &str) {
    push_indent(out, indent);
    out.push('<');
    out.push_str(name);
    out.push('>');
    text(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Appends an empty element with attributes, e.g. `<link href="…" rel="self"/>`, on its own line.
/// Attributes whose value is `None` are left out.
pub fn empty(out: &mut String, indent: usize, name: &str, attrs: &[(&str, Option<&str>)]) {
    push_indent(out, indent);
    out.push('<');
    out.push_str(name);
    for (key, value) in attrs {
        if let Some(value) = value {
            out.push(' ');
            out.push_str(key);
            out.push_str("=\"");
            attr(out, value);
            out.push('"');
        }
    }
    out.push_str("/>\n");
}

/// Appends `indent` spaces.
pub fn push_indent(out: &mut String, indent: usize) {
    for _ in 0..indent {
        out.push(' ');
    }
}

/// The XML declaration and, when `stylesheet` is given, an `xml-stylesheet` processing
/// instruction pointing browsers at that XSLT (W3C "Associating Style Sheets with XML
/// documents").
pub fn prolog(out: &mut String, stylesheet: Option<&str>) {
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    if let Some(href) = stylesheet {
        out.push_str("<?xml-stylesheet type=\"text/xsl\" href=\"");
        attr(out, href);
        out.push_str("\"?>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_and_drops_forbidden_characters() {
        let mut out = String::new();
        text(&mut out, "a < b & c > d \u{0}\u{b}e\r\"");
        assert_eq!(out, "a &lt; b &amp; c &gt; d e&#13;\"");
    }

    #[test]
    fn attributes_escape_quotes_and_whitespace() {
        let mut out = String::new();
        attr(&mut out, "x=\"1\"\t&\n");
        assert_eq!(out, "x=&quot;1&quot;&#9;&amp;&#10;");
    }

    #[test]
    fn cdata_splits_its_terminator() {
        let mut out = String::new();
        cdata(&mut out, "<p>a]]>b</p>\u{1}");
        assert_eq!(out, "<![CDATA[<p>a]]]]><![CDATA[>b</p>]]>");
    }

    #[test]
    fn noncharacters_are_dropped_and_other_symbols_kept() {
        let mut out = String::new();
        text(&mut out, "a\u{FFFE}b\u{FFFF}c\u{FFFD}\u{EFFF}d");
        assert_eq!(out, "abc\u{FFFD}\u{EFFF}d");
        let mut out = String::new();
        cdata(&mut out, "x\u{FFFF}y\u{0}z");
        assert_eq!(out, "<![CDATA[xyz]]>");
    }

    #[test]
    fn cdata_keeps_fullwidth_punctuation_and_clean_text_whole() {
        // U+FF0C and U+FF1A start with the byte 0xEF, like the forbidden U+FFFE/U+FFFF.
        let text = "问答，进展：[1] a]b ]] > \u{FFFD}\n\t";
        assert!(cdata_safe(text.as_bytes()));
        let mut out = String::new();
        cdata(&mut out, text);
        assert_eq!(out, format!("<![CDATA[{text}]]>"));
        assert!(!cdata_safe("a\rb".as_bytes()));
        assert!(!cdata_safe("a]]>b".as_bytes()));
        assert!(!cdata_safe("a\u{FFFF}".as_bytes()));
    }

    #[test]
    fn cjk_passes_through() {
        let mut out = String::new();
        text(&mut out, "每周精选");
        assert_eq!(out, "每周精选");
    }

    #[test]
    fn prolog_with_stylesheet() {
        let mut out = String::new();
        prolog(&mut out, Some("/feed.xsl?a=1&b=2"));
        assert_eq!(
            out,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<?xml-stylesheet type=\"text/xsl\" href=\"/feed.xsl?a=1&amp;b=2\"?>\n"
        );
    }
}
