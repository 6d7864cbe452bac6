//! CJK-aware Markdown: what CommonMark gets wrong for Chinese, Japanese and Korean text.
//!
//! Part of the second stage of the pipeline (rendering), shared by every output and by
//! `feedpost check`:
//!
//! - **Emphasis next to CJK punctuation.** CommonMark's flanking rules treat `**` between
//!   punctuation and a letter as literal text, so `**直播主题：**SOFA` shows its asterisks.
//!   [`literal_emphasis`] finds every `**`, `__` or pair of `*` the parser leaves as literal text
//!   and, where a simple edit makes it render (checked by parsing the edited line), that edit.
//!   The lint reports them; [`fix_emphasis`] applies the edits before rendering.
//! - **Line breaks between CJK characters.** A soft line break renders as a space, which is right
//!   between English words and wrong between two Chinese sentences (`互动 我们会`).
//!   [`joins_without_space`] says when a soft break is to render as nothing, as goldmark's CJK
//!   extension and markdown-it's `cjk-breaks` do.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use pulldown_cmark::{Event, LinkType, Parser, Tag, TagEnd};

use super::markdown;

/// Whether `c` is written without spaces between words: Han ideographs, kana, Bopomofo, CJK
/// symbols and punctuation, fullwidth forms. Hangul is not (Korean puts spaces between words).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF        // CJK radicals, Kangxi radicals
        | 0x2FF0..=0x303F      // ideographic description, CJK symbols and punctuation
        | 0x3040..=0x31BF      // Hiragana, Katakana, Bopomofo
        | 0x31C0..=0x31FF      // CJK strokes, Katakana phonetic extensions
        | 0x3200..=0x9FFF      // enclosed CJK, compatibility, extension A, unified ideographs
        | 0xF900..=0xFAFF      // compatibility ideographs
        | 0xFE30..=0xFE4F      // CJK compatibility forms
        | 0xFF00..=0xFFEF      // halfwidth and fullwidth forms
        | 0x20000..=0x3FFFF    // supplementary ideographic planes
    )
}

/// Whether a soft line break between a line ending in `before` and one starting with `after`
/// renders as nothing rather than a space: both are CJK ([`is_cjk`]).
pub fn joins_without_space(before: char, after: char) -> bool {
    is_cjk(before) && is_cjk(after)
}

/// One `**`, `__` or pair of `*` that CommonMark leaves as literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralEmphasis {
    /// Byte offset of the (opening) marker in the Markdown.
    pub at: usize,
    /// Why it shows as literal text and what to write instead (the lint's message).
    pub message: String,
    /// The edit that makes it render as emphasis, checked by parsing the edited line; `None` when
    /// no simple edit does.
    pub fix: Option<Edit>,
    /// The edit the renderer applies: the text between the markers kept as written, punctuation
    /// included, spaces moved outside (`**分享嘉宾：**霜林` → `**分享嘉宾：** 霜林`); see
    /// `rendered_fix`. `None` when no edit renders.
    pub rendered: Option<Edit>,
}

/// A replacement of a byte range of the Markdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The bytes replaced.
    pub range: Range<usize>,
    /// What goes in their place.
    pub text: String,
}

/// `markdown` with every checked fix of [`literal_emphasis`] applied, so that emphasis the author
/// meant renders as emphasis; borrowed unchanged when there is nothing to fix.
pub fn fix_emphasis(markdown: &str) -> Cow<'_, str> {
    if !markdown.contains(['*', '_']) {
        return Cow::Borrowed(markdown);
    }
    let parsed: Vec<_> = parse_with_offsets(markdown).collect();
    match fix_parsed_emphasis(markdown, &parsed) {
        Some(fixed) => Cow::Owned(fixed),
        None => Cow::Borrowed(markdown),
    }
}

/// [`fix_emphasis`] over events already parsed from `markdown` with their source ranges (by
/// [`parse_with_offsets`]), so a renderer that has them parses once when nothing needs fixing.
/// `None` when nothing does.
pub fn fix_parsed_emphasis(markdown: &str, parsed: &[(Event<'_>, Range<usize>)]) -> Option<String> {
    let runs = literal_runs_in(markdown, parsed);
    if runs.is_empty() {
        return None;
    }
    let lines = LineIndex::new(markdown);
    let mut edits: Vec<Edit> = pair_up(markdown, &lines, &runs, Wanted::Edits)
        .into_iter()
        .filter_map(|l| l.rendered)
        .collect();
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.range.start);
    let mut out = String::with_capacity(markdown.len() + 16 * edits.len());
    let mut copied = 0;
    for edit in edits {
        if edit.range.start < copied {
            continue; // overlaps the previous edit: keep the first
        }
        out.push_str(&markdown[copied..edit.range.start]);
        out.push_str(&edit.text);
        copied = edit.range.end;
    }
    out.push_str(&markdown[copied..]);
    Some(out)
}

/// The parser's events for `markdown`, with feedpost's extensions, each with its source range.
pub fn parse_with_offsets(markdown: &str) -> impl Iterator<Item = (Event<'_>, Range<usize>)> {
    Parser::new_ext(markdown, markdown::options()).into_offset_iter()
}

/// What [`pair_up`] works out for each literal marker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// The lint's message and fix, and the renderer's edit.
    Findings,
    /// Only the renderer's edit (no message; the lint's fix only where the edit needs it).
    Edits,
}

/// Every emphasis marker in `markdown` that the parser leaves as literal text, in source order,
/// with the reason and, where one was found, a checked fix. Markers in code, in autolinks, escaped
/// (`\*`), inside words (`snake_case`) or spaced on both sides (`2 ** 10`) are not reported; a
/// single `*` only when two in one block look like a failed pair (`*注` is meant).
pub fn literal_emphasis(markdown: &str) -> Vec<LiteralEmphasis> {
    let parsed: Vec<_> = parse_with_offsets(markdown).collect();
    let runs = literal_runs_in(markdown, &parsed);
    let lines = LineIndex::new(markdown);
    pair_up(markdown, &lines, &runs, Wanted::Findings)
}

/// The runs of `*` or `_` the parser left as literal text in `markdown` (whose events, with
/// their source ranges, are `parsed`), classified; outside code and autolinks.
fn literal_runs_in(markdown: &str, parsed: &[(Event<'_>, Range<usize>)]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut scanned_to = 0;
    let mut code_blocks = 0usize;
    let mut block = 0usize;
    // For each open link, whether it is an autolink (`<https://…>`): URLs are not prose.
    let mut open_links: Vec<bool> = Vec::new();
    for (event, range) in parsed {
        match event {
            Event::Start(Tag::CodeBlock(_)) => code_blocks += 1,
            Event::End(TagEnd::CodeBlock) => code_blocks = code_blocks.saturating_sub(1),
            Event::Start(Tag::Paragraph | Tag::Heading { .. } | Tag::Item | Tag::TableCell) => {
                block += 1
            }
            Event::Start(Tag::Link { link_type, .. }) => {
                open_links.push(matches!(link_type, LinkType::Autolink | LinkType::Email))
            }
            Event::End(TagEnd::Link) => {
                open_links.pop();
            }
            Event::Text(_) if code_blocks == 0 && open_links.last() != Some(&true) => {
                literal_runs(markdown, range.clone(), block, &mut scanned_to, &mut runs)
            }
            _ => {}
        }
    }
    classify(markdown, runs)
}

/// Byte offsets where each line of a text starts.
pub(crate) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    /// 1-based line of byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset).max(1)
    }

    /// The byte range of the line holding `offset`, without its line ending.
    fn line_range(&self, text: &str, offset: usize) -> Range<usize> {
        let line = self.line_of(offset);
        let start = self.0[line - 1];
        let end = self.0.get(line).map_or(text.len(), |&next| next - 1);
        let end = if text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        start..end
    }
}

/// A run of one emphasis character (`*` or `_`) that the parser left as literal text.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Byte range in the body.
    start: usize,
    end: usize,
    /// `b'*'` or `b'_'`.
    ch: u8,
    /// Which paragraph, heading, list item or table cell it is in.
    block: usize,
    /// White space (or the start or end of the body) on both sides, like `2 ** 10`: reported only
    /// when paired with a run that is not.
    spaced: bool,
}

impl Run {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn marker(&self) -> String {
        (self.ch as char).to_string().repeat(self.len())
    }
}

/// Collects the `*`/`_` characters in the source of one Text event (`range`), skipping
/// backslash-escaped ones. pulldown-cmark gives each unmatched delimiter character its own Text
/// event, so characters next to each other are merged into one run here.
fn literal_runs(
    body: &str,
    range: Range<usize>,
    block: usize,
    scanned_to: &mut usize,
    out: &mut Vec<Run>,
) {
    let start = range.start.max(*scanned_to);
    let Some(slice) = body.get(start..range.end) else {
        return;
    };
    *scanned_to = range.end;
    for (k, ch) in slice.bytes().enumerate() {
        if ch != b'*' && ch != b'_' {
            continue;
        }
        let at = start + k;
        if at > 0 && body.as_bytes()[at - 1] == b'\\' {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == at && last.ch == ch && last.block == block => last.end += 1,
            _ => out.push(Run {
                start: at,
                end: at + 1,
                ch,
                block,
                spaced: false,
            }),
        }
    }
}

/// Marks runs with white space on both sides and drops `_` runs inside a word (`snake_case`,
/// `a__b` in a URL), which CommonMark never treats as emphasis.
fn classify(body: &str, runs: Vec<Run>) -> Vec<Run> {
    runs.into_iter()
        .filter_map(|mut run| {
            let (before, after) = neighbours(body, &run);
            run.spaced = is_space(before) && is_space(after);
            let in_word = run.ch == b'_' && is_word(before) && is_word(after);
            (!in_word).then_some(run)
        })
        .collect()
}

/// The characters just before and after a run, `None` at the ends of the body.
fn neighbours(body: &str, run: &Run) -> (Option<char>, Option<char>) {
    (
        body[..run.start].chars().next_back(),
        body[run.end..].chars().next(),
    )
}

fn is_space(c: Option<char>) -> bool {
    c.is_none_or(char::is_whitespace)
}

/// Unicode punctuation or symbol, as CommonMark's flanking rules count it (approximated as
/// anything that is neither a letter, a digit nor white space).
fn is_punct(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_alphanumeric() && !c.is_whitespace())
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(char::is_alphanumeric)
}

/// Turns the literal runs into one finding per pair (or lone run), with the reason and, where a
/// simple edit makes it render, the fix.
fn pair_up(body: &str, lines: &LineIndex, runs: &[Run], wanted: Wanted) -> Vec<LiteralEmphasis> {
    let mut found = Vec::new();
    // Single `*` left literal is usually meant (`*注`), so it is reported only when two of them in
    // the same block look like a failed pair; single `_` is never reported (`_config.yml`).
    let mut singles: HashMap<usize, usize> = HashMap::new();
    for r in runs
        .iter()
        .filter(|r| r.len() == 1 && r.ch == b'*' && !r.spaced)
    {
        *singles.entry(r.block).or_default() += 1;
    }
    let reported = |r: &Run| {
        r.len() >= 2 || (r.ch == b'*' && singles.get(&r.block).copied().unwrap_or(0) >= 2)
    };
    let runs: Vec<Run> = runs.iter().copied().filter(reported).collect();
    let mut used = vec![false; runs.len()];
    for i in 0..runs.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let open = runs[i];
        // Its partner: the next free run of the same character in the same block, when it has
        // the same length and is on the same line.
        let partner = (i + 1..runs.len())
            .take_while(|&j| runs[j].block == open.block)
            .find(|&j| !used[j] && runs[j].ch == open.ch)
            .filter(|&j| {
                runs[j].len() == open.len()
                    && lines.line_of(runs[j].start) == lines.line_of(open.start)
            });
        let (message, fix, rendered) = match partner {
            Some(j) if open.spaced && runs[j].spaced => continue,
            Some(j) if wanted == Wanted::Edits => {
                used[j] = true;
                let rendered = rendered_fix(body, lines, open, runs[j], || {
                    fix(body, lines, open, runs[j])
                });
                (String::new(), None, rendered)
            }
            Some(j) => {
                used[j] = true;
                let fix = fix(body, lines, open, runs[j]);
                let rendered = rendered_fix(body, lines, open, runs[j], || fix.clone());
                (pair_message(body, open, runs[j], fix.as_ref()), fix, rendered)
            }
            None if open.spaced || wanted == Wanted::Edits => continue,
            None => (
                format!(
                    "`{m}` shows as literal text, not {kind}: it has no matching `{m}`; close it, or write `{escaped}` for the characters themselves",
                    m = open.marker(),
                    kind = kind(&open),
                    escaped = format!("\\{}", open.ch as char).repeat(open.len()),
                ),
                None,
                None,
            ),
        };
        found.push(LiteralEmphasis {
            at: open.start,
            message,
            fix,
            rendered,
        });
    }
    found
}

/// The edit the renderer applies for a literal pair: the text between the markers as the author
/// wrote it, punctuation included (`**分享嘉宾：**` stays bold with its colon), white space inside
/// the markers moved outside them, and a space put between a marker and a letter where
/// CommonMark needs one to see the marker as emphasis (`**直播主题：** SOFA`). Checked like
/// [`fix`]; when it does not render, the lint's fix is used.
///
/// Keeping a space after a closing marker, rather than joining it to the next character as the
/// lint's fix does, also keeps the inline tag from sitting between two letters, which spam
/// filters score as a word split to hide it (SpamAssassin's HTML_OBFUSCATE).
fn rendered_fix(
    body: &str,
    lines: &LineIndex,
    open: Run,
    close: Run,
    fix: impl FnOnce() -> Option<Edit>,
) -> Option<Edit> {
    let m = open.marker();
    let inner = &body[open.end..close.start];
    let trimmed = inner.trim();
    if trimmed.is_empty() {
        return fix();
    }
    let (before, _) = neighbours(body, &open);
    let (_, after) = neighbours(body, &close);
    let starts_punct = is_punct(trimmed.chars().next());
    let ends_punct = is_punct(trimmed.chars().next_back());
    let lead_space = inner.starts_with(char::is_whitespace);
    let trail_space = inner.ends_with(char::is_whitespace);
    let solid = |c: Option<char>| c.is_some_and(|c| !c.is_whitespace());
    let space_before = (lead_space && solid(before)) || (starts_punct && is_word(before));
    let space_after = (trail_space && solid(after)) || (ends_punct && is_word(after));
    let text = format!(
        "{}{m}{trimmed}{m}{}",
        if space_before { " " } else { "" },
        if space_after { " " } else { "" }
    );
    let edit = Edit {
        range: open.start..close.end,
        text,
    };
    verified(body, lines, open, close, edit).or_else(fix)
}

fn kind(run: &Run) -> &'static str {
    if run.len() >= 2 {
        "bold"
    } else {
        "italics"
    }
}

/// The warning for two literal runs that the author meant as an opening and a closing marker.
fn pair_message(body: &str, open: Run, close: Run, fix: Option<&Edit>) -> String {
    let m = open.marker();
    let (open_before, open_after) = neighbours(body, &open);
    let (close_before, close_after) = neighbours(body, &close);
    let mut reasons: Vec<String> = [
        flank_reason(&m, Flank::Closing, close_before, close_after),
        flank_reason(&m, Flank::Opening, open_after, open_before),
    ]
    .into_iter()
    .flatten()
    .collect();
    if reasons.is_empty() {
        reasons.push(format!("the two `{m}` do not pair up"));
    }
    let mut message = format!(
        "`{m}` shows as literal text, not {}: {}",
        kind(&open),
        reasons.join(", and ")
    );
    match fix {
        Some(fix) => message.push_str(&format!("; write `{}`", elide(&fix.text, 24))),
        None => message.push_str(&format!(
            "; check the text between them: `{}`",
            elide(&body[open.start..close.end], 24)
        )),
    }
    message
}

/// Which marker of an emphasis [`flank_reason`] looks at.
#[derive(Clone, Copy)]
enum Flank {
    Opening,
    Closing,
}

/// Why the marker `m` cannot open (or close) with `inner` on its side towards the emphasised
/// text and `outer` on the other (CommonMark's flanking rules): a space inside it, or
/// punctuation inside and a letter outside. `None` when neither keeps it from working.
fn flank_reason(m: &str, flank: Flank, inner: Option<char>, outer: Option<char>) -> Option<String> {
    let (side, article, noun, verb) = match flank {
        Flank::Opening => ("after", "an", "opening", "open"),
        Flank::Closing => ("before", "a", "closing", "close"),
    };
    if is_space(inner) {
        return Some(format!(
            "a space {side} the {noun} `{m}` keeps it from {noun}"
        ));
    }
    if !(is_punct(inner) && is_word(outer)) {
        return None;
    }
    let (inner, outer) = (inner.unwrap_or(' '), outer.unwrap_or(' '));
    let between = match flank {
        Flank::Opening => format!("a letter and punctuation (`{outer}{m}{inner}`)"),
        Flank::Closing => format!("punctuation and a letter (`{inner}{m}{outer}`)"),
    };
    Some(format!(
        "{article} {noun} `{m}` between {between} does not {verb}"
    ))
}

/// The text from `open` to `close` rewritten so that it renders as emphasis, with the
/// characters around it that the edit touches: spaces inside the markers removed, and punctuation
/// that keeps a marker from working moved outside it, or, for brackets and quotes that belong
/// inside, a space put between the marker and the letter next to it. `None` when the edit, tried
/// on the whole line, still does not render.
fn fix(body: &str, lines: &LineIndex, open: Run, close: Run) -> Option<Edit> {
    let m = open.marker();
    let inner = body[open.end..close.start].trim();
    let (open_before, _) = neighbours(body, &open);
    let (_, close_after) = neighbours(body, &close);
    let punct = |c: char| is_punct(Some(c));
    let lead_len = inner.len() - inner.trim_start_matches(punct).len();
    let trail_len = inner.len() - inner.trim_end_matches(punct).len();
    let lead_stuck = is_word(open_before) && lead_len > 0;
    let trail_stuck = is_word(close_after) && trail_len > 0;
    if lead_len + trail_len >= inner.len() {
        return None;
    }
    let brackets = |s: &str| s.contains(|c| "()[]{}（）「」『』【】《》〈〉“”‘’\"'".contains(c));
    let lead = if lead_stuck { &inner[..lead_len] } else { "" };
    let trail = if trail_stuck {
        &inner[inner.len() - trail_len..]
    } else {
        ""
    };
    let before = if lead_stuck { open_before } else { None };
    let after = if trail_stuck { close_after } else { None };
    let (before, after) = (
        before.map(String::from).unwrap_or_default(),
        after.map(String::from).unwrap_or_default(),
    );
    let fixed = if !brackets(lead) && !brackets(trail) {
        // Move the punctuation that meets a letter outside the markers.
        let core = &inner[lead.len()..inner.len() - trail.len()];
        format!("{before}{lead}{m}{core}{m}{trail}{after}")
    } else {
        // Brackets and quotes belong inside: part the marker from the letter with a space.
        let spaced_before = if lead_stuck {
            format!("{before} ")
        } else {
            String::new()
        };
        let spaced_after = if trail_stuck {
            format!(" {after}")
        } else {
            String::new()
        };
        format!("{spaced_before}{m}{inner}{m}{spaced_after}")
    };
    let prefix_end = open.start - before.len();
    let suffix_start = close.end + after.len();
    let edit = Edit {
        range: prefix_end..suffix_start,
        text: fixed,
    };
    verified(body, lines, open, close, edit)
}

/// `edit` when, tried on the line of `open`..`close`, it makes one more strong (or emphasis)
/// span render than the line had; `None` otherwise.
fn verified(body: &str, lines: &LineIndex, open: Run, close: Run, edit: Edit) -> Option<Edit> {
    // Tried within the line, at most WINDOW bytes either side, so a huge line stays linear.
    const WINDOW: usize = 256;
    let line = lines.line_range(body, open.start);
    let mut from = line
        .start
        .max(open.start.saturating_sub(WINDOW))
        .min(edit.range.start);
    while !body.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = line
        .end
        .max(close.end)
        .min(close.end + WINDOW)
        .max(edit.range.end);
    while !body.is_char_boundary(to) {
        to += 1;
    }
    let candidate = format!(
        "{}{}{}",
        body.get(from..edit.range.start).unwrap_or(""),
        edit.text,
        body.get(edit.range.end..to).unwrap_or("")
    );
    let wanted = if open.len() >= 2 {
        |t: &Tag<'_>| matches!(t, Tag::Strong)
    } else {
        |t: &Tag<'_>| matches!(t, Tag::Emphasis)
    };
    let count = |text: &str| {
        Parser::new_ext(text, markdown::options())
            .filter(|e| matches!(e, Event::Start(t) if wanted(t)))
            .count()
    };
    let original = &body[from..to];
    (count(&candidate) > count(original)).then_some(edit)
}

/// `text` cut to its first and last `keep` characters around a `…` when it is longer.
fn elide(text: &str, keep: usize) -> String {
    let count = text.chars().count();
    if count <= 2 * keep + 1 {
        return text.to_string();
    }
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_characters() {
        for c in ['中', '。', '，', '：', 'か', 'カ', 'ㄅ', '（', '𠀋'] {
            assert!(is_cjk(c), "{c}");
        }
        for c in ['a', '1', ' ', ',', '한', 'é', '😀'] {
            assert!(!is_cjk(c), "{c}");
        }
    }

    #[test]
    fn every_checked_fix_is_applied_once() {
        assert_eq!(
            fix_emphasis("**分享嘉宾：**霜林 **直播时间：**周四\n\n`**a **b` **c"),
            "**分享嘉宾：** 霜林 **直播时间：** 周四\n\n`**a **b` **c"
        );
        assert_eq!(
            fix_emphasis("**1、@黄泽宏 **提问："),
            "**1、@黄泽宏** 提问："
        );
        assert_eq!(fix_emphasis("中文**：加粗**"), "中文 **：加粗**");
        assert!(matches!(fix_emphasis("**fine** text"), Cow::Borrowed(_)));
        assert!(matches!(fix_emphasis("no markers"), Cow::Borrowed(_)));
    }
}
