//! The lock that lets one sender at a time use a ledger file.
//!
//! SQLite serialises writers, but two `publish` runs interleaving their claims on one ledger
//! would each treat the other's `sending` rows as left by a crash. So a sending run takes an
//! exclusive lock first, before it changes anything (feeds included), and holds it until it ends.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::file::{canonical_path, create_parent};

/// An exclusive lock on a ledger, held by a running `publish` until dropped.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

impl LedgerLock {
    /// Takes the exclusive lock that keeps two `publish` runs from sending through the same
    /// ledger at once: `<ledger>.lock` beside the resolved ledger file (see [`canonical_path`]),
    /// so the lock holds however the path is spelled — through a symbolic link, `./x` or `x`.
    /// Released when the guard drops or the process dies.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be created.
    pub fn take(path: &Path) -> Result<LedgerLock> {
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

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused() {
        let (_dir, path) = crate::store::sqlite::testing::ledger_path();
        let _held = LedgerLock::take(&path).unwrap();
        let err = LedgerLock::take(&path).unwrap_err().to_string();
        assert!(err.contains("already sending"), "{err}");
    }

    #[test]
    fn the_lock_holds_through_symlinks_and_dot_segments() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("l.sqlite");
        let _held = LedgerLock::take(&real).unwrap();
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
            let err = LedgerLock::take(&other).unwrap_err().to_string();
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
}
