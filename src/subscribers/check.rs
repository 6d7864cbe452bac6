//! `feedpost check`'s look at the subscriber list: what `publish` would skip or not send as the
//! editor meant, as findings beside the issues' (`file:line: severity: message`).
//!
//! | finding | severity |
//! | --- | --- |
//! | the file is missing or unreadable | error |
//! | an entry `publish` skips: a bad address, no `email`, an unknown key, bad TOML | error |
//! | an address listed again (compared ignoring case, IDN domains in A-labels): the repeat is skipped | warning |
//! | with an `[smtp]` table, an address at a reserved example domain (RFC 2606, RFC 6761) | warning |

use std::collections::HashMap;
use std::path::Path;

use crate::config::Config;
use crate::lint::{Finding, Severity};

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct ListReport {
    /// Sorted by line.
    pub findings: Vec<Finding>,
    /// How many valid, distinct subscribers the list has: how many `publish` would read.
    pub subscribers: usize,
}

/// Reads the subscriber list of `config` (`site.subscribers`) as `publish` does and reports
/// each entry it would skip, each repeated address and, when `config` sends through SMTP, each
/// address at a domain reserved for examples (mail to it goes nowhere).
pub fn check(config: &Config) -> ListReport {
    let path = &config.site.subscribers;
    let mut report = ListReport::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut findings = Vec::new();
    let mut bad = Vec::new();
    let smtp = config.smtp.is_some();
    let read = super::read(
        path,
        |s| {
            if let Some(first) = seen.get(&s.key) {
                findings.push(finding(
                    path,
                    s.line,
                    Severity::Warning,
                    format!(
                        "`{}` is listed already on line {first} (addresses are compared ignoring case): `publish` sends it one message and skips this entry, its name and topics; remove one of the two",
                        s.email
                    ),
                ));
                return;
            }
            seen.insert(s.key.clone(), s.line);
            if smtp && is_example_domain(&s.key) {
                findings.push(finding(
                    path,
                    s.line,
                    Severity::Warning,
                    format!(
                        "`{}` is at a domain reserved for examples: mail to it goes nowhere; replace it with a real reader's address",
                        s.email
                    ),
                ));
            }
        },
        |e| {
            bad.push(finding(
                &e.path,
                e.line,
                Severity::Error,
                format!("{} (`publish` skips this entry)", e.message),
            ))
        },
    );
    findings.append(&mut bad);
    if let Err(e) = read {
        let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
        findings.push(finding(path, 0, Severity::Error, causes.join(": ")));
    }
    findings.sort_by_key(|f| (f.line, f.severity));
    report.findings = findings;
    report.subscribers = seen.len();
    report
}

fn finding(path: &Path, line: usize, severity: Severity, message: String) -> Finding {
    Finding {
        path: path.to_path_buf(),
        line,
        severity,
        message,
    }
}

/// Whether the (lowercased) address `key` is at a domain reserved for documentation and tests:
/// `example.com`, `example.net`, `example.org` and their subdomains (RFC 2606), or the
/// `.example`, `.test`, `.invalid` and `.localhost` top-level domains (RFC 6761).
fn is_example_domain(key: &str) -> bool {
    let Some((_, domain)) = key.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.');
    let under = |parent: &str| {
        domain == parent
            || domain
                .strip_suffix(parent)
                .is_some_and(|sub| sub.ends_with('.'))
    };
    ["example.com", "example.net", "example.org"]
        .into_iter()
        .any(under)
        || ["example", "test", "invalid", "localhost"]
            .into_iter()
            .any(|tld| domain.rsplit('.').next() == Some(tld))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(smtp: bool, subscribers: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subscribers.toml"), subscribers).unwrap();
        let mut text = "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/\"\n[mail]\nfrom = \"T <t@example.org>\"\n".to_string();
        if smtp {
            text.push_str("[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\n");
        }
        let config = Config::parse(&text, dir.path()).unwrap();
        (dir, config)
    }

    fn lines(report: &ListReport) -> Vec<String> {
        report
            .findings
            .iter()
            .map(|f| format!("{}: {}: {}", f.line, f.severity, f.message))
            .collect()
    }

    #[test]
    fn bad_entries_are_errors_and_repeats_warnings_with_their_lines() {
        let (_dir, config) = config(
            false,
            "[[subscribers]]\nemail = \"a@example.org\"\n\n[[subscribers]]\nemail = \"A@Example.org\"\nname = \"again\"\n\n[[subscribers]]\nemail = \"not an address\"\n\n[[subscribers]]\nemail = \"b@example.org\"\ncolour = \"red\"\n\n[[subscribers]]\nemail = \"c@example.org\"\n",
        );
        let report = check(&config);
        let found = lines(&report);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with("4: warning: `A@Example.org` is listed already on line 1"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("8: error: `not an address` is not a valid e-mail address"),
            "{found:#?}"
        );
        assert!(
            found[2].starts_with("11: error: unknown key `colour`"),
            "{found:#?}"
        );
        assert!(found[2].ends_with("(`publish` skips this entry)"));
        assert_eq!(report.subscribers, 2);
    }

    #[test]
    fn example_domains_are_warned_of_only_when_mail_is_real() {
        let list = "[[subscribers]]\nemail = \"reader@example.org\"\n[[subscribers]]\nemail = \"ada@mail.example.com\"\n[[subscribers]]\nemail = \"bob@exampleorg.net\"\n[[subscribers]]\nemail = \"x@host.test\"\n";
        let (_dir, outbox) = config(false, list);
        assert!(check(&outbox).findings.is_empty());
        let (_dir, smtp) = config(true, list);
        let found = lines(&check(&smtp));
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found.iter().all(|f| f.contains("reserved for examples")));
        assert!(!found.iter().any(|f| f.contains("bob@")));
    }

    #[test]
    fn a_missing_list_is_an_error_naming_the_key() {
        let (dir, config) = config(false, "");
        std::fs::remove_file(dir.path().join("subscribers.toml")).unwrap();
        let found = lines(&check(&config));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("0: error: failed to read the subscriber list"),
            "{found:?}"
        );
        assert!(found[0].contains("site.subscribers"), "{found:?}");
    }
}
