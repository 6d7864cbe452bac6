//! Fuzz target: any bytes as a Markdown body. Rendering to HTML, taking the summary text and
//! linting must return something for every input — never panic — and every lint names a line of
//! the body.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use feedpost::config::Config;
use feedpost::issue::markdown;
use feedpost::lint;
use libfuzzer_sys::fuzz_target;

fn site() -> &'static (Config, lint::Links) {
    static SITE: OnceLock<(Config, lint::Links)> = OnceLock::new();
    SITE.get_or_init(|| {
        let config = Config::parse(
            "[site]\ntitle = \"t\"\nbase_url = \"https://www.sofastack.tech/\"\n[mail]\nfrom = \"a@example.org\"\n",
            Path::new("/site"),
        )
        .expect("fuzz config");
        let links = lint::Links::new(&[], &config);
        (config, links)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (config, links) = site();
    let _ = markdown::render(text, &config.site.base_url, markdown::Rendering { cjk: true });
    let summary = markdown::first_paragraph_text(text, 200);
    assert!(summary.chars().count() <= 200);
    let lines = text.split('\n').count();
    for note in lint::lint_body(text, links) {
        assert!(
            (1..=lines).contains(&note.line),
            "lint on line {} of {lines}",
            note.line
        );
    }
});
