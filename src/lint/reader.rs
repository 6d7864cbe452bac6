//! What readers would trip on, though the issue loads and renders: links that lead nowhere or
//! to the wrong place, images a page bundle does not have, markers shown as literal text, and
//! front matter values that come out other than written.

use std::path::Path;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use super::{BodyNote, Severity};
use crate::issue::{self, front_matter::RawFrontMatter, markdown};

/// The notes on a Markdown body: empty link targets, e-mail addresses used as link targets,
/// `****` next to non-breaking spaces, and — when the issue is a page bundle in `bundle` —
/// relative images that are not among its files. Lines are 1-based in `body`.
pub fn body_notes(body: &str, bundle: Option<&Path>) -> Vec<BodyNote> {
    let mut notes = Vec::new();
    let mut note = |offset: usize, message: String| {
        notes.push(BodyNote {
            line: body.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            severity: Severity::Warning,
            message,
        })
    };
    let mut code_blocks = 0usize;
    // Consecutive text (an unmatched marker is a text event of its own): where it starts.
    let mut text = (0, String::new());
    for (event, range) in Parser::new_ext(body, markdown::options()).into_offset_iter() {
        if !matches!(event, Event::Text(_)) {
            if let Some(message) = literal_markers(&text.1) {
                note(text.0, message);
            }
            text.1.clear();
        }
        match event {
            Event::Start(Tag::CodeBlock(_)) => code_blocks += 1,
            Event::End(TagEnd::CodeBlock) => code_blocks = code_blocks.saturating_sub(1),
            Event::Start(Tag::Link { dest_url, .. }) => {
                if let Some(message) = link_target(&body[range.clone()], &dest_url) {
                    note(range.start, message);
                }
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                if let Some(message) = bundle.and_then(|dir| missing_image(dir, &dest_url)) {
                    note(range.start, message);
                }
            }
            Event::Text(t) if code_blocks == 0 => {
                if text.1.is_empty() {
                    text.0 = range.start;
                }
                text.1.push_str(&t);
            }
            _ => {}
        }
    }
    if let Some(message) = literal_markers(&text.1) {
        note(text.0, message);
    }
    notes
}

/// What is wrong with the link written as `source` going to `dest`, if anything.
fn link_target(source: &str, dest: &str) -> Option<String> {
    let dest = dest.trim();
    if dest.is_empty() {
        let source = source.trim();
        return Some(format!(
            "the link `{source}` has no target: it shows as plain text; write the URL between the parentheses, or drop the brackets"
        ));
    }
    is_email(dest).then(|| {
        format!(
            "links to `{dest}` as if it were a page of the site (a relative URL); for an e-mail address write `mailto:{dest}`"
        )
    })
}

/// Whether `dest` is a bare e-mail address (`name@example.org`): no scheme, no slash.
fn is_email(dest: &str) -> bool {
    let Some((local, domain)) = dest.split_once('@') else {
        return false;
    };
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', ':', '@', '?', '#', ' ']);
    plain(local) && plain(domain) && domain.contains('.') && !domain.ends_with('.')
}

/// The note for a relative image `dest` of the bundle in `dir` that is not there.
fn missing_image(dir: &Path, dest: &str) -> Option<String> {
    let dest = dest.trim();
    let relative = !dest.is_empty()
        && !dest.starts_with(['/', '#'])
        && !dest.contains(':')
        && !dest.starts_with("//");
    if !relative {
        return None;
    }
    let file = dest.split(['?', '#']).next().unwrap_or(dest);
    let decoded = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    (!dir.join(decoded.as_ref()).is_file()).then(|| {
        format!(
            "image `{dest}` is not in the page bundle `{}`: add the file beside index.md, or fix the name",
            dir.display()
        )
    })
}

/// The note for emphasis markers shown as text next to a non-breaking space in `text`: a run
/// of four or more `*` or `_` (an empty `****` an editor left, or `**` `**` around nothing)
/// with U+00A0 before or after it, which CommonMark takes as white space, so the markers never
/// open or close.
fn literal_markers(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let len = chars[i..].iter().take_while(|&&d| d == c).count();
        if matches!(c, '*' | '_') && len >= 4 {
            let before = i.checked_sub(1).map(|b| chars[b]);
            let after = chars.get(i + len).copied();
            if before == Some('\u{a0}') || after == Some('\u{a0}') {
                let run: String = chars[i..i + len].iter().collect();
                return Some(format!(
                    "`{run}` next to a non-breaking space shows as literal text: markers around nothing, or with a non-breaking space inside, do not make emphasis; remove them"
                ));
            }
        }
        i += len;
    }
    None
}

/// The notes on the front matter `fm`, each with the key it is about: a `cover` that is not a
/// URL (left out of every output), and HTML character references in the `title` (decoded).
pub fn front_matter_notes(fm: &RawFrontMatter) -> Vec<(&'static str, String)> {
    let mut notes = Vec::new();
    if let Some(cover) = fm.cover.as_deref().map(str::trim) {
        if !cover.is_empty() && !issue::looks_like_url(cover) {
            notes.push((
                "cover",
                format!(
                    "`cover` is not a URL (`{cover}`; Markdown pasted into the front matter?): it is left out of the feeds, the page and the email; write only the image's URL"
                ),
            ));
        }
    }
    if let Some(title) = fm.title.as_deref().map(str::trim) {
        let decoded = issue::decode_entities(title);
        if decoded != title {
            notes.push((
                "title",
                format!(
                    "the title holds HTML character references (`{title}`): titles are plain text, so it is shown as `{decoded}`; write that"
                ),
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(body: &str, bundle: Option<&Path>) -> Vec<String> {
        body_notes(body, bundle)
            .into_iter()
            .map(|n| format!("{}: {}", n.line, n.message))
            .collect()
    }

    #[test]
    fn empty_targets_and_addresses_as_links() {
        assert_eq!(
            messages("报名[链接]()\n\n[我们](sofastack@gmail.com) [m](mailto:a@b.org) [u](https://x.org/a@b.c)\n", None),
            [
                "1: the link `[链接]()` has no target: it shows as plain text; write the URL between the parentheses, or drop the brackets",
                "3: links to `sofastack@gmail.com` as if it were a page of the site (a relative URL); for an e-mail address write `mailto:sofastack@gmail.com`",
            ]
        );
        assert!(messages("`[x]()` and\n\n    [y]()\n", None).is_empty());
    }

    #[test]
    fn markers_next_to_non_breaking_spaces() {
        assert_eq!(
            messages("a\n\n活动\u{a0}****\u{a0}报名\n", None),
            ["3: `****` next to a non-breaking space shows as literal text: markers around nothing, or with a non-breaking space inside, do not make emphasis; remove them"]
        );
        assert!(messages("### ****SOFA 项目进展****\n\na **** b\n", None).is_empty());
    }

    #[test]
    fn bundle_images_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        std::fs::write(dir.path().join("img/a b.png"), "x").unwrap();
        let body =
            "![a](img/a%20b.png) ![b](img/gone.png) ![c](/img/site.png) ![d](https://cdn/x.png)\n";
        let found = messages(body, Some(dir.path()));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("1: image `img/gone.png` is not in the page bundle"));
        assert!(messages(body, None).is_empty());
    }
}
