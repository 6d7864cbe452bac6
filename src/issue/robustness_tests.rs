//! The fuzz targets' properties (fuzz/fuzz_targets/*.rs) on stable Rust, over generated inputs:
//! seed-shaped issue files mutated at random with a fixed seed, so a failure reproduces. Any text
//! loads to an issue or to an error on a line of the file, and any body renders and lints;
//! nothing panics.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use url::Url;

use super::{front_matter, markdown, parse, Issue};
use crate::config::Config;
use crate::lint;

/// Issue files to start from: the shapes of the real seeds and of what breaks parsers.
const SEEDS: &[&str] = &[
    "---\ntitle: \"SOFA Weekly | QA 整理\"\nauthor: \"SOFA 团队\"\ncategories: \"SOFA Weekly\"\ntags: [\"SOFA Weekly\", \"MOSN\"]\ndate: 2021-07-16T15:00:00+08:00\ncover: \"/img/cover.png\"\n---\n\n**1、@黄泽宏 **提问：\n\n> 问题\n\n- **SOFAStack 官网: **[https://www.sofastack.tech](https://www.sofastack.tech/)\n- [归档](/issues/2020-05-15-sofa-weekly/) ![weekly](https://cdn.example.org/a.png)\n\n### ****SOFA 项目进展****\n",
    "\u{feff}\r\n+++\r\ntitle = \"t\"\r\ndate = 2020-05-15T17:00:00\r\ntags = [\"a\"]\r\n+++\r\n| a | b |\r\n|---|---|\r\n| **x ** | `y` |\r\n",
    "---\ntitle: x\ndate: 2020-5-1\nslug: 周报\ndraft: true\n---\n```rust\n**not bold **\n```\n\n<a href=\"/issues/x/\">x</a> <script>alert(1)</script>\n\n[^1]: note *a *b\n",
    "\n\n---\n---\n",
    "# no front matter\n",
    "---\ntitle: [a, b]\ndate: { x: 1 }\n---\n",
];

/// Fragments spliced in by the mutator.
const TOKENS: &[&str] = &[
    "---\n",
    "+++\n",
    "\r\n",
    "\r",
    "\n",
    "\u{feff}",
    "\u{0}",
    "\u{200b}",
    "**",
    "__",
    "*",
    "_",
    " ",
    "：",
    "\\",
    "`",
    "```\n",
    "> ",
    "- ",
    "1. ",
    "[",
    "]",
    "(",
    ")",
    "![",
    "](/issues/x/)",
    "](",
    "<",
    ">",
    "&",
    "&amp;",
    "<a href=\"/x\">",
    "</a>",
    "<img src=x>",
    "|",
    "|---|\n",
    "[^1]",
    "[^1]: ",
    "title: ",
    "date: ",
    "slug: ",
    "draft: true\n",
    "tags: [",
    "categories: ",
    "date = 2020-05-15T17:00:00\n",
    "title = ",
    "2020-5-1",
    "2020-05-15 17:00",
    "+08:00",
    "\"",
    "'",
    ":",
    "=",
    "#",
    "? ",
    "&a ",
    "*a ",
    "!!binary ",
    "{",
    "}",
    "\t",
    "黄泽宏",
    "%",
    "%E5",
    "../",
    "/issues/",
    "    ",
];

fn config() -> Config {
    crate::config::test_config(
        "title='t'
base_url='https://www.sofastack.tech/'",
    )
}

/// A random char boundary of `s`.
fn boundary(rng: &mut StdRng, s: &str) -> usize {
    let mut i = rng.random_range(0..=s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `s` changed by one to eight random edits.
fn mutate(rng: &mut StdRng, s: &str) -> String {
    let mut s = s.to_string();
    for _ in 0..rng.random_range(1..=8) {
        let at = boundary(rng, &s);
        match rng.random_range(0..6) {
            0 | 1 => s.insert_str(at, TOKENS[rng.random_range(0..TOKENS.len())]),
            2 => {
                let to = boundary(rng, &s).max(at);
                s.replace_range(at..to, "");
            }
            3 => {
                let to = boundary(rng, &s).max(at);
                let copy = s[at..to].to_string();
                s.insert_str(at, &copy);
            }
            4 => s.insert(at, char::from(rng.random_range(0x20u8..0x7f))),
            _ => s.truncate(at),
        }
    }
    s
}

/// Every property of the fuzz targets, for one input.
fn check(text: &str, config: &Config, base: &Url, issues: &[Issue]) {
    let last_line = text.split('\n').count() + 1;
    let on_a_line = |line: usize, what: &str| {
        assert!(
            (1..=last_line).contains(&line),
            "{what} error on line {line} of a {last_line}-line file: {text:?}"
        );
    };
    match front_matter::split(text) {
        Ok(split) => {
            assert!(split.body_line <= last_line, "{text:?}");
            if let Err(e) = front_matter::parse(&split) {
                on_a_line(e.line, "front matter");
            }
        }
        Err(e) => on_a_line(e.line, "split"),
    }
    if let Err(e) = parse(text, Path::new("fuzz.md"), config) {
        on_a_line(e.line, "issue");
    }
    markdown::render(text, base, markdown::Rendering { cjk: true });
    assert!(markdown::first_paragraph_text(text, 200).chars().count() <= 200);
    let links = lint::Links::new(issues, config);
    let body_lines = text.split('\n').count();
    for note in lint::lint_body(text, &links) {
        assert!(
            (1..=body_lines).contains(&note.line),
            "lint on line {} of {body_lines}: {text:?}",
            note.line
        );
    }
}

#[test]
fn generated_inputs_never_panic() {
    let config = config();
    let base = config.site.base_url.clone();
    let issues: Vec<Issue> = SEEDS
        .iter()
        .filter_map(|s| parse(s, Path::new("seed.md"), &config).ok())
        .collect();
    let mut rng = StdRng::seed_from_u64(20_200_515);
    for seed in SEEDS {
        check(seed, &config, &base, &issues);
    }
    for _ in 0..10_000 {
        let seed = SEEDS[rng.random_range(0..SEEDS.len())];
        let text = mutate(&mut rng, seed);
        check(&text, &config, &base, &issues);
    }
    for _ in 0..1_000 {
        let bytes: Vec<u8> = (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect();
        check(&String::from_utf8_lossy(&bytes), &config, &base, &issues);
    }
}
