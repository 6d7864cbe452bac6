//! The ledger's write-ahead log, copied back into the database file on a thread of its own.
//!
//! SQLite checkpoints after the commit that fills the WAL: it copies pages into the database
//! file and syncs it, stalling that commit — and with it every connection of the delivery engine
//! waiting for its outcome to be recorded. A sending store turns that off on its connection and
//! leaves checkpoints to a [`Checkpointer`]: a thread with a connection of its own that
//! checkpoints (`PASSIVE`: never waiting for the writer) every [`CHECKPOINT_EVERY`], and when
//! asked ([`Checkpointer::checkpoint_now`]). Durability is unchanged: commits are in the WAL
//! either way.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rusqlite::{Connection, OpenFlags};

/// How often the background checkpointer copies the WAL back into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// What one checkpoint did (`PRAGMA wal_checkpoint`'s answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// Frames in the WAL.
    pub log_frames: i64,
    /// Frames copied into the database file (all of them, unless a reader held some back).
    pub checkpointed_frames: i64,
}

type Ack = mpsc::Sender<rusqlite::Result<Checkpointed>>;

/// A thread checkpointing a ledger's WAL while a publish writes; stops when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    requests: Option<mpsc::Sender<Ack>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Moves WAL checkpoints off `conn` (the ledger at `path`), for the rest of its life, onto a
    /// new thread (see the module docs).
    ///
    /// # Errors
    /// The second connection cannot be opened, or the setting cannot be changed.
    pub fn start(conn: &Connection, path: &Path) -> Result<Checkpointer> {
        let named = || format!("the ledger `{}` cannot be checkpointed", path.display());
        let other = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .with_context(named)?;
        other
            .busy_timeout(Duration::from_secs(10))
            .with_context(named)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .with_context(named)?;
        let (requests, asked) = mpsc::channel::<Ack>();
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || loop {
                match asked.recv_timeout(CHECKPOINT_EVERY) {
                    // A failed checkpoint loses nothing; the next one copies the same pages.
                    Err(mpsc::RecvTimeoutError::Timeout) => drop(checkpoint(&other)),
                    Ok(ack) => drop(ack.send(checkpoint(&other))),
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            })
            .context("failed to start the ledger checkpoint thread")?;
        Ok(Checkpointer {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Checkpoints now, on the checkpointer's connection, and waits for it.
    ///
    /// # Errors
    /// The checkpoint failed (the WAL stays as it was), or the thread is gone.
    pub fn checkpoint_now(&self) -> Result<Checkpointed> {
        let (ack, done) = mpsc::channel();
        let gone = || anyhow!("the ledger checkpoint thread has stopped");
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(ack)
            .map_err(|_| gone())?;
        Ok(done.recv().map_err(|_| gone())??)
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<Checkpointed> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Checkpointed {
            log_frames: r.get(1)?,
            checkpointed_frames: r.get(2)?,
        })
    })
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
