//! The ledger as a file: where it is, opening it with the PRAGMAs it needs, and refusing what
//! is not a ledger (only a missing file starts a new one).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

/// The one path of the ledger file however `path` spells it: the parent folder canonicalised
/// (`./x`, `a/../x`, a symlinked folder) and a file name that is a symbolic link followed to
/// its target, also when the target does not exist yet. The parent folder must exist.
///
/// # Errors
/// The parent folder cannot be resolved, `path` names no file, or the links loop.
pub fn canonical_path(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        let name = current
            .file_name()
            .with_context(|| format!("`{}` does not name a file", path.display()))?
            .to_os_string();
        let parent = match current.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = parent.canonicalize().with_context(|| {
            format!(
                "cannot resolve the folder `{}` of the ledger `{}`",
                parent.display(),
                path.display()
            )
        })?;
        let full = dir.join(&name);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&full)
                    .with_context(|| format!("cannot read the link `{}`", full.display()))?;
                current = dir.join(target);
            }
            _ => return Ok(full),
        }
    }
    bail!(
        "the ledger `{}` is a loop of symbolic links",
        path.display()
    )
}

/// Creates the folder that holds `path`, if it is missing.
pub(super) fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create the folder `{}`", parent.display()))?;
    }
    Ok(())
}

/// Whether the ledger file at `path` exists, refusing what cannot be a ledger: a folder, or an
/// empty file (with no write-ahead log holding its pages). Only a missing file starts a new
/// ledger: an empty one is what a failed copy or a full disk leaves behind, and taking it for a
/// new ledger would mail every reader again and forget the suppression list.
fn check_existing(path: &Path) -> Result<bool> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the ledger `{}`", path.display()))
        }
    };
    if !meta.is_file() {
        bail!(
            "the ledger `{}` is not a file; point `mail.ledger` at the ledger file",
            path.display()
        );
    }
    if meta.len() == 0 {
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let wal_has_pages = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
        if !wal_has_pages {
            bail!(
                "the ledger `{}` is an empty file (0 bytes), not a ledger. Nothing was sent. Only a missing ledger starts a new one: taking an empty file for one would mail every reader again and forget the suppression list. Restore the file from a backup; delete it only if nothing was ever sent with it",
                path.display()
            );
        }
    }
    Ok(true)
}

/// Opens the ledger at `path`, creating it (and its folder) when the file is missing, in WAL
/// mode, and brings an older ledger's schema up to date ([`super::schema::upgrade`]). The path is
/// resolved first (see [`canonical_path`]), so every spelling of it opens the same file.
/// Returns the connection and the resolved path.
///
/// # Errors
/// The file is empty, is not an SQLite database, is a database of something else, or cannot be
/// opened or migrated; every message names the file.
pub fn open(path: &Path) -> Result<(Connection, PathBuf)> {
    create_parent(path)?;
    let path = canonical_path(path)?;
    let existed = check_existing(&path)?;
    open_at(path, existed)
}

/// Opens the ledger at `path` if the file exists, for commands that must not create one; `None`
/// when it is missing.
///
/// # Errors
/// As [`open`].
pub fn open_existing(path: &Path) -> Result<Option<(Connection, PathBuf)>> {
    if path
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        return Ok(None);
    }
    let path = canonical_path(path)?;
    if !check_existing(&path)? {
        return Ok(None);
    }
    open_at(path, true).map(Some)
}

fn open_at(path: PathBuf, existed: bool) -> Result<(Connection, PathBuf)> {
    let named = |what: &str| format!("the ledger `{}` {what}", path.display());
    let flags = if existed {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let mut conn =
        Connection::open_with_flags(&path, flags).with_context(|| named("cannot be opened"))?;
    set_up(&conn).with_context(|| {
        named("is not a feedpost ledger (not an SQLite database, or damaged); restore it from a backup")
    })?;
    super::schema::upgrade(&mut conn, &path)?;
    Ok((conn, path))
}

/// How long a connection waits for another's write lock before its call fails, in
/// milliseconds (see [`wait_for_lock`]).
const LOCK_WAIT_MS: i32 = 10_000;

/// How long [`wait_for_lock`] sleeps between tries, in microseconds.
const LOCK_POLL_US: u64 = 500;

/// The busy handler of every connection: while another connection (the other process: a
/// publish beside `feedpost serve`) holds the write lock, try again every [`LOCK_POLL_US`]
/// for up to [`LOCK_WAIT_MS`]. SQLite's own `busy_timeout` backs off to sleeps of 25–100 ms, so
/// a lock freed after one millisecond was taken up to 100 ms late: the latency tail of every
/// subscribe and unsubscribe answered during a publish. `tries` is how many times the handler
/// was called for this wait; returning `false` gives up (the call fails with SQLITE_BUSY).
fn wait_for_lock(tries: i32) -> bool {
    let max_tries = i64::from(LOCK_WAIT_MS) * 1000 / LOCK_POLL_US as i64;
    if i64::from(tries) >= max_tries {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_micros(LOCK_POLL_US));
    true
}

/// The PRAGMAs and settings of every connection to a ledger.
fn set_up(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(wait_for_lock))?;
    // Plans must not depend on bound values: otherwise every rebinding of a statement that can
    // use a partial index forces SQLite to prepare it again (4% of a send's CPU time).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Reads the header first: a file that is not a database fails here.
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::testing::ledger_path;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Channel, Queue, Store};

    /// A ledger made by `sql`, as an earlier feedpost wrote it.
    fn written_by(sql: &str) -> (tempfile::TempDir, PathBuf) {
        let (dir, path) = ledger_path();
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        (dir, path)
    }

    #[test]
    fn an_empty_file_is_refused_and_a_missing_one_is_created() {
        let (dir, path) = ledger_path();
        std::fs::write(&path, b"").unwrap();
        let err = format!("{:#}", open(&path).err().unwrap());
        assert!(err.contains("l.sqlite") && err.contains("empty"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        let err = format!("{:#}", open_existing(&path).err().unwrap());
        assert!(err.contains("empty"), "{err}");

        let new = dir.path().join("sub/new.sqlite");
        assert!(open_existing(&new).unwrap().is_none());
        assert!(!new.exists(), "reading does not create");
        open(&new).unwrap();
        assert!(std::fs::metadata(&new).unwrap().len() > 0);
        open_existing(&new).unwrap().unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.sqlite");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        let err = format!("{:#}", open(&junk).err().unwrap());
        assert!(
            err.contains("junk.sqlite") && err.contains("not a feedpost ledger"),
            "{err}"
        );
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x);")
            .unwrap();
        let err = format!("{:#}", open(&other).err().unwrap());
        assert!(
            err.contains("other.sqlite") && err.contains("tables: t"),
            "{err}"
        );
    }

    #[test]
    fn a_new_ledger_is_never_an_empty_file() {
        // WAL mode writes the database header at once: a ledger killed right after creation is
        // not mistaken for an empty file.
        let (_dir, path) = ledger_path();
        let l = open(&path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        drop(l);
        open(&path).unwrap();
    }

    fn secret_kept(path: &Path) -> bool {
        Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key = 'unsubscribe_secret'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    }

    #[tokio::test]
    async fn a_version_1_ledger_is_migrated_tells_outbox_rows_apart_and_forgets_its_secret() {
        let (_dir, path) = written_by(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                 INSERT INTO meta VALUES ('unsubscribe_secret', x'0102');
                 CREATE TABLE deliveries (
                    issue TEXT NOT NULL, recipient TEXT NOT NULL, address TEXT NOT NULL,
                    name TEXT, message_id TEXT NOT NULL, state TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, run_attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at INTEGER, last_reply TEXT, updated_at INTEGER NOT NULL,
                    PRIMARY KEY (issue, recipient)) WITHOUT ROWID;
                 CREATE INDEX deliveries_pending ON deliveries (issue, state, next_attempt_at);
                 CREATE TABLE suppressions (address TEXT PRIMARY KEY, reason TEXT NOT NULL,
                    issue TEXT, suppressed_at INTEGER NOT NULL);
                 INSERT INTO deliveries VALUES
                    ('o', 'a@x.org', 'a@x.org', NULL, '<1>', 'sent', 1, 1, NULL, 'written to /o/1.eml', 5),
                    ('s', 'a@x.org', 'a@x.org', NULL, '<2>', 'sent', 1, 1, NULL, '250 2.0.0 Ok', 5);",
        );
        let s = SqliteStore::open(&path).unwrap();
        let q = |issue, channel| Queue { issue, channel };
        assert_eq!(s.counts(q("o", Channel::Outbox)).await.unwrap().sent, 1);
        assert_eq!(s.counts(q("o", Channel::Smtp)).await.unwrap().sent, 0);
        assert_eq!(s.counts(q("s", Channel::Smtp)).await.unwrap().sent, 1);
        drop(s);
        assert!(!secret_kept(&path), "the secret is gone from the file");
        open(&path).unwrap();
    }

    #[tokio::test]
    async fn a_version_4_ledger_keeps_its_subscribers_and_takes_cli_ones() {
        use crate::store::{NewSubscriber, Source, SubscriberState};
        let (_dir, path) = written_by(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             INSERT INTO meta VALUES ('schema_version', 4);
             CREATE TABLE deliveries (
                issue TEXT NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL,
                address TEXT NOT NULL, name TEXT, message_id TEXT NOT NULL,
                state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                run_attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER,
                last_reply TEXT, updated_at INTEGER NOT NULL, lease_owner TEXT,
                lease_expires_at INTEGER,
                PRIMARY KEY (issue, channel, recipient)) WITHOUT ROWID;
             CREATE TABLE subscribers (
                address TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT,
                topics TEXT NOT NULL DEFAULT '[]',
                state TEXT NOT NULL CHECK (state IN ('pending','confirmed','unsubscribed','bounced')),
                source TEXT NOT NULL CHECK (source IN ('file','web','import')),
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                confirmed_at INTEGER, unsubscribed_at INTEGER) WITHOUT ROWID;
             INSERT INTO subscribers VALUES
                ('a@x.org', 'A@x.org', '甲', '[\"MOSN\"]', 'confirmed', 'web', 1, 2, 2, NULL);",
        );
        let s = SqliteStore::open(&path).unwrap();
        let a = s.subscriber("a@x.org").await.unwrap().unwrap();
        assert_eq!(
            (
                a.email.as_str(),
                a.name.as_deref(),
                a.state,
                a.source,
                a.topics
            ),
            (
                "A@x.org",
                Some("甲"),
                SubscriberState::Confirmed,
                Source::Web,
                vec!["MOSN".to_string()]
            )
        );
        let new = NewSubscriber {
            key: "b@x.org",
            email: "b@x.org",
            name: None,
            topics: &[],
            source: Source::Cli,
        };
        s.add_subscribers(&[new], chrono::Utc::now()).await.unwrap();
        assert_eq!(
            s.subscriber("b@x.org").await.unwrap().unwrap().source,
            Source::Cli
        );
    }

    #[tokio::test]
    async fn a_version_2_ledger_gains_leases_and_forgets_its_secret() {
        // A version-2 ledger as the previous release wrote it, with a row in flight.
        let (_dir, path) = written_by(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', 2), ('unsubscribe_secret', x'0102');
                 CREATE TABLE deliveries (
                    issue TEXT NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL,
                    address TEXT NOT NULL, name TEXT, message_id TEXT NOT NULL,
                    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                    run_attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER,
                    last_reply TEXT, updated_at INTEGER NOT NULL,
                    PRIMARY KEY (issue, channel, recipient)) WITHOUT ROWID;
                 INSERT INTO deliveries VALUES
                    ('i', 'smtp', 'a@x.org', 'a@x.org', NULL, '<1>', 'sending', 0, 0, NULL, NULL, 5);",
        );
        let s = SqliteStore::open_to_send(&path).unwrap();
        let q = Queue {
            issue: "i",
            channel: Channel::Smtp,
        };
        assert_eq!(s.begin_run(q).await.unwrap(), 1, "the row in flight");
        assert_eq!(
            s.claim(
                q,
                crate::store::Claim {
                    now_ms: 0,
                    limit: 1,
                    max_run_attempts: 1
                }
            )
            .await
            .unwrap()
            .len(),
            1
        );
        drop(s);
        assert!(!secret_kept(&path));
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, super::super::schema::SCHEMA_VERSION);
    }
}
