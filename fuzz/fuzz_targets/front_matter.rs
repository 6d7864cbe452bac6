//! Fuzz target: any bytes as an issue file. Splitting, reading the front matter and loading the
//! whole issue must return a value or an error whose line is a line of the file — never panic.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use feedpost::config::Config;
use feedpost::issue::{self, front_matter};
use libfuzzer_sys::fuzz_target;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::parse(
            "[site]\ntitle = \"t\"\nbase_url = \"https://www.sofastack.tech/\"\n[mail]\nfrom = \"a@example.org\"\n",
            Path::new("/site"),
        )
        .expect("fuzz config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A file of n lines may name lines 1..=n+1 (the line after the last, e.g. "never closed").
    let last_line = text.split('\n').count() + 1;
    let check = |line: usize, what: &str| {
        assert!(
            (1..=last_line).contains(&line),
            "{what} error on line {line} of a {last_line}-line file"
        );
    };
    match front_matter::split(text) {
        Ok(split) => {
            assert!(split.body_line <= last_line);
            if let Err(e) = front_matter::parse(&split) {
                check(e.line, "front matter");
            }
        }
        Err(e) => check(e.line, "split"),
    }
    if let Err(e) = issue::parse(text, Path::new("fuzz.md"), config()) {
        check(e.line, "issue");
    }
});
