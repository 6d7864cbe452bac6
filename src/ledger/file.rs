//! The ledger as a file: where it is, opening it (and refusing what is not a ledger), the schema
//! and its migrations, the lock that keeps two senders apart, and WAL checkpoints.
//!
//! Everything SQLite-specific about the ledger that is not a query lives here, so that a store
//! of another kind can be put beside the queue operations of [`super::Ledger`] later.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::Ledger;

/// The schema version this build writes (`meta.schema_version`). Version 1 (no version row) had
/// no channel and no issue records; version 2 no subscribers of its own (`subscribers.rs`), so a
/// feedpost that reads version 2 must not send with a version-3 ledger: it would mail readers
/// who unsubscribed.
const SCHEMA_VERSION: i64 = 3;

/// The tables of a ledger, besides the subscribers' (`subscribers.rs`). `CREATE … IF NOT EXISTS`
/// throughout: run on every open.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    issue TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('smtp','outbox')),
    recipient TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','sending','sent','deferred','failed','removed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_reply TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (issue, channel, recipient)
) WITHOUT ROWID;
-- Partial indexes: a row is in at most one, so a state change touches at most two of them, and
-- the sent rows (most of a ledger) never slow a claim.
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (issue, channel, recipient)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS deliveries_deferred ON deliveries (issue, channel, next_attempt_at)
    WHERE state = 'deferred';
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries (updated_at)
    WHERE state = 'sent' AND channel = 'smtp';
CREATE TABLE IF NOT EXISTS suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    issue TEXT,
    suppressed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS issues (
    issue TEXT PRIMARY KEY,
    slug TEXT NOT NULL,
    title TEXT NOT NULL,
    date INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    as_new INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS issues_fingerprint ON issues (fingerprint);
CREATE INDEX IF NOT EXISTS issues_title_date ON issues (title, date);
CREATE TABLE IF NOT EXISTS publishes (
    issue TEXT NOT NULL,
    channel TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (issue, channel)
);
";

/// Version 1 → 2: the deliveries table gains the channel, in its primary key, so the table is
/// copied. A version-1 ledger recorded outbox files and SMTP messages alike; the outbox's reply
/// (`written to <path>`) tells them apart.
const MIGRATE_1_TO_2: &str = "
DROP INDEX IF EXISTS deliveries_pending;
DROP INDEX IF EXISTS deliveries_sent_at;
DROP INDEX IF EXISTS deliveries_queued;
DROP INDEX IF EXISTS deliveries_deferred;
DROP INDEX IF EXISTS deliveries_sent;
ALTER TABLE deliveries RENAME TO deliveries_v1;
";

const COPY_1_TO_2: &str = "
INSERT INTO deliveries (issue, channel, recipient, address, name, message_id, state, attempts,
                        run_attempts, next_attempt_at, last_reply, updated_at)
SELECT issue,
       CASE WHEN last_reply LIKE 'written to %' THEN 'outbox' ELSE 'smtp' END,
       recipient, address, name, message_id, state, attempts, run_attempts, next_attempt_at,
       last_reply, updated_at
FROM deliveries_v1;
DROP TABLE deliveries_v1;
";

/// How often the background checkpointer copies the WAL back into the database.
pub(super) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// An exclusive lock on a ledger, held by a running `publish` until dropped.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

impl LedgerLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A thread checkpointing a ledger's WAL while a publish writes; stops when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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
fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create the folder `{}`", parent.display()))?;
    }
    Ok(())
}

/// Whether the ledger file at `path` exists, refusing what cannot be a ledger: a folder, or an
/// empty file (with no write-ahead log holding its pages). Only a missing file starts a new
/// ledger: an empty one is what a failed copy or a full disk leaves behind, and taking it for a
/// new ledger would mail every reader again and make a new unsubscribe secret.
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
                "the ledger `{}` is an empty file (0 bytes), not a ledger. Nothing was sent. Only a missing ledger starts a new one: taking an empty file for one would mail every reader again and break every unsubscribe link. Restore the file from a backup; delete it only if nothing was ever sent with it",
                path.display()
            );
        }
    }
    Ok(true)
}

impl Ledger {
    /// Opens the ledger at `path`, creating it (and its folder) when the file is missing, in WAL
    /// mode, and brings an older ledger's schema up to date. The path is resolved first (see
    /// [`canonical_path`]), so every spelling of it opens the same file.
    ///
    /// # Errors
    /// The file is empty, is not an SQLite database, is a database of something else, or cannot
    /// be opened or migrated; every message names the file.
    pub fn open(path: &Path) -> Result<Ledger> {
        create_parent(path)?;
        let path = canonical_path(path)?;
        let existed = check_existing(&path)?;
        Ledger::open_at(path, existed)
    }

    /// Opens the ledger at `path` if the file exists, for commands that only read it (they
    /// must not create one); `None` when it is missing.
    ///
    /// # Errors
    /// As [`Ledger::open`].
    pub fn open_existing(path: &Path) -> Result<Option<Ledger>> {
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
        Ledger::open_at(path, true).map(Some)
    }

    fn open_at(path: PathBuf, existed: bool) -> Result<Ledger> {
        let named = |what: &str| format!("the ledger `{}` {what}", path.display());
        let flags = if existed {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn =
            Connection::open_with_flags(&path, flags).with_context(|| named("cannot be opened"))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            // Plans must not depend on bound values: otherwise every rebinding of a statement
            // that can use a partial index forces SQLite to prepare it again (4% of a send's CPU
            // time).
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
                true,
            )?;
            // Reads the header first: a file that is not a database fails here.
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(())
        };
        setup().with_context(|| {
            named("is not a feedpost ledger (not an SQLite database, or damaged); restore it from a backup")
        })?;
        let mut ledger = Ledger { conn, path };
        ledger.upgrade()?;
        Ok(ledger)
    }

    /// Creates the schema in a new ledger, or migrates an older one; refuses a database that
    /// holds tables but not a ledger's.
    fn upgrade(&mut self) -> Result<()> {
        let path = self.path.clone();
        let named = |what: &str| format!("the ledger `{}` {what}", path.display());
        let tables: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .with_context(|| named("cannot be read"))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .with_context(|| named("cannot be read"))?;
            rows.collect::<rusqlite::Result<_>>()
                .with_context(|| named("cannot be read"))?
        };
        let has = |t: &str| tables.iter().any(|n| n == t);
        let is_ledger = has("meta") && has("deliveries");
        if !tables.is_empty() && !is_ledger {
            bail!(
                "{}: it is an SQLite database of something else (tables: {}); point `mail.ledger` at feedpost's ledger",
                named("is not a feedpost ledger"),
                tables.join(", ")
            );
        }
        let version: i64 = if tables.is_empty() {
            SCHEMA_VERSION
        } else {
            self.conn
                .query_row(
                    "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .with_context(|| named("cannot be read"))?
                .unwrap_or(1)
        };
        if version > SCHEMA_VERSION {
            bail!(
                "{} (schema version {version}); use that feedpost or a newer one",
                named("was written by a newer feedpost")
            );
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .with_context(|| named("cannot be written"))?;
        if version < 2 {
            tx.execute_batch(MIGRATE_1_TO_2)
                .with_context(|| named("cannot be migrated to schema version 2"))?;
        }
        tx.execute_batch(SCHEMA)
            .and_then(|()| tx.execute_batch(super::subscribers::SCHEMA))
            .with_context(|| named("cannot be set up"))?;
        if version < 2 {
            tx.execute_batch(COPY_1_TO_2)
                .with_context(|| named("cannot be migrated to schema version 2"))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION],
        )
        .with_context(|| named("cannot be written"))?;
        tx.commit().with_context(|| named("cannot be written"))?;
        Ok(())
    }

    /// The ledger file (resolved, see [`canonical_path`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves WAL checkpoints off this connection, for the rest of its life, onto a thread with a
    /// connection of its own that checkpoints (`PASSIVE`) every 250 ms until the returned guard
    /// drops. A checkpoint copies pages into the database file and syncs it; run by SQLite after
    /// the commit that fills the WAL, it stalls that commit, and with it every sender waiting
    /// for its outcome to be recorded. Durability is unchanged: commits are in the WAL either way.
    ///
    /// # Errors
    /// The second connection cannot be opened, or the setting cannot be changed.
    pub fn checkpoint_in_background(&self) -> Result<Checkpointer> {
        let named = || {
            format!(
                "the ledger `{}` cannot be checkpointed",
                self.path.display()
            )
        };
        let other = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .with_context(named)?;
        other
            .busy_timeout(std::time::Duration::from_secs(10))
            .with_context(named)?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .with_context(named)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    // A failed checkpoint loses nothing; the next one copies the same pages.
                    let _ = other.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .context("failed to start the ledger checkpoint thread")?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Takes the exclusive lock that keeps two `publish` runs from sending through the same ledger
    /// at once: `<ledger>.lock` beside the resolved ledger file (see [`canonical_path`]), so the
    /// lock holds however the path is spelled — through a symbolic link, `./x` or `x`. Released
    /// when the guard drops or the process dies.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be created.
    pub fn lock(path: &Path) -> Result<LedgerLock> {
        create_parent(path)?;
        let resolved = canonical_path(path)?;
        let lock_path = PathBuf::from(format!("{}.lock", resolved.display()));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("failed to create the lock file `{}`", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(LedgerLock {
                _file: file,
                path: lock_path,
            }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another feedpost is already sending with the ledger `{}`; wait for it to finish (or stop it) and run again",
                resolved.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to lock `{}`", lock_path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_refused_and_a_missing_one_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        std::fs::write(&path, b"").unwrap();
        let err = format!("{:#}", Ledger::open(&path).err().unwrap());
        assert!(err.contains("l.sqlite") && err.contains("empty"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        let err = format!("{:#}", Ledger::open_existing(&path).err().unwrap());
        assert!(err.contains("empty"), "{err}");

        let new = dir.path().join("sub/new.sqlite");
        assert!(Ledger::open_existing(&new).unwrap().is_none());
        assert!(!new.exists(), "reading does not create");
        Ledger::open(&new).unwrap();
        assert!(std::fs::metadata(&new).unwrap().len() > 0);
        Ledger::open_existing(&new).unwrap().unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.sqlite");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        let err = format!("{:#}", Ledger::open(&junk).err().unwrap());
        assert!(
            err.contains("junk.sqlite") && err.contains("not a feedpost ledger"),
            "{err}"
        );
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x);")
            .unwrap();
        let err = format!("{:#}", Ledger::open(&other).err().unwrap());
        assert!(
            err.contains("other.sqlite") && err.contains("tables: t"),
            "{err}"
        );
    }

    #[test]
    fn a_new_ledger_is_never_an_empty_file() {
        // WAL mode writes the database header at once: a ledger killed right after creation is
        // not mistaken for an empty file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let l = Ledger::open(&path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        drop(l);
        Ledger::open(&path).unwrap();
    }

    #[test]
    fn the_lock_holds_through_symlinks_and_dot_segments() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("l.sqlite");
        let _held = Ledger::lock(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.sqlite")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("dirlink")).unwrap();
        for other in [
            dir.path().join("link.sqlite"),
            dir.path().join("sub/../l.sqlite"),
            dir.path().join("./l.sqlite"),
            dir.path().join("dirlink/l.sqlite"),
            dir.path().join("dirlink/link.sqlite"),
        ] {
            let err = Ledger::lock(&other).unwrap_err().to_string();
            assert!(
                err.contains("already sending"),
                "{}: {err}",
                other.display()
            );
        }
        assert_eq!(
            canonical_path(&dir.path().join("dirlink/link.sqlite")).unwrap(),
            dir.path().canonicalize().unwrap().join("l.sqlite")
        );
    }

    #[test]
    fn a_version_1_ledger_is_migrated_and_tells_outbox_rows_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
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
            )
            .unwrap();
        let mut l = Ledger::open(&path).unwrap();
        use super::super::{Channel, Queue};
        let outbox = |issue| Queue {
            issue,
            channel: Channel::Outbox,
        };
        let smtp = |issue| Queue {
            issue,
            channel: Channel::Smtp,
        };
        assert_eq!(l.counts(outbox("o")).unwrap().sent, 1);
        assert_eq!(l.counts(smtp("o")).unwrap().sent, 0);
        assert_eq!(l.counts(smtp("s")).unwrap().sent, 1);
        assert_eq!(l.secret().unwrap(), [1, 2], "the secret is kept");
        drop(l);
        Ledger::open(&path).unwrap();
    }
}
