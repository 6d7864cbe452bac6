//! Integration tests: the real `feedpost` binary on sites in temporary folders, mail delivered to a
//! real SMTP server on loopback (`support::smtp_server`), and the real SQLite ledger.

#[path = "../support/mod.rs"]
mod support;

mod archive;
mod build;
mod channels;
mod check;
mod crash;
mod dkim;
mod editor;
mod eligibility;
mod errors;
mod faults;
mod feeds;
mod hugo;
mod identity;
mod invalid_site;
mod ledger_file;
mod limits;
mod pipelining;
mod postgres;
mod preview;
mod publish;
mod publish_json;
mod readme;
mod refusals;
mod safe_links;
mod schedule;
mod serve;
mod serve_browser;
mod serve_local;
mod setup_mistakes;
mod status;
mod subscribers;
mod test_send;
mod tls;
mod tokens;
mod websub;
