//! The outbox: each message as an `.eml` file, for a rehearsal without a mail server.
//!
//! A file appears under its final name only whole and on disk: it is written to a temporary
//! file in the same folder, synced, then renamed (atomic on POSIX file systems), and the folder
//! is synced so the rename survives a crash. A failed write (a full disk) leaves no file behind,
//! under either name.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// Writes `message` to `dir/file_name` atomically (see the module docs); returns the path.
///
/// # Errors
/// The file cannot be created, written, synced or renamed; the temporary file is removed then.
pub async fn write(dir: &Path, file_name: &str, message: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(file_name);
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(message).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, &path).await?;
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.eml", b"hello").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        // A folder in the way of the final name: the write fails, and no temporary file stays.
        std::fs::create_dir(dir.path().join("b.eml")).unwrap();
        std::fs::write(dir.path().join("b.eml/x"), b"x").unwrap();
        assert!(write(dir.path(), "b.eml", b"hello").await.is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["a.eml", "b.eml"]);
    }
}
