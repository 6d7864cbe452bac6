//! Integration tests: the real `feedpost` binary on sites in temporary folders, mail delivered to a
//! real SMTP server on loopback (`support::smtp_server`), and the real SQLite ledger.

#[path = "../support/mod.rs"]
mod support;

mod archive;
mod build;
mod feeds;
mod preview;
mod publish;
mod websub;
