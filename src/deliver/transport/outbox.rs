//! The outbox: each message as an `.eml` file, for a rehearsal without a mail server.
//!
//! A file appears under its final name only whole and on disk: it is written to a temporary
//! file in the same folder, synced, then renamed (atomic on POSIX file systems), and the folder
//! is synced so the rename survives a crash. A failed write (a full disk) leaves no file behind,
//! under either name. Files are named after the message's `Message-ID`, so a message written
//! again replaces itself.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{Connection, Failure, Outgoing, Sent, Transport};

/// A folder of `.eml` files as a [`Transport`].
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// The outbox writing into `dir` (created on [`Transport::connect`]).
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }
}

#[async_trait]
impl Transport for Outbox {
    fn describe(&self) -> String {
        format!("outbox {}", self.dir.display())
    }

    async fn connect(&self) -> Result<Box<dyn Connection>, Failure> {
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| {
            Failure::Fatal(format!(
                "cannot create the outbox `{}`: {e}",
                self.dir.display()
            ))
        })?;
        Ok(Box::new(Outbox {
            dir: self.dir.clone(),
        }))
    }
}

/// The file name of a message: its `Message-ID` without the angle brackets, then `.eml`.
pub fn file_name(message_id: &str) -> String {
    format!("{}.eml", message_id.trim_matches(|c| c == '<' || c == '>'))
}

#[async_trait]
impl Connection for Outbox {
    fn size_limit(&self) -> Option<u64> {
        None
    }

    fn is_usable(&self) -> bool {
        true
    }

    async fn start(&mut self, _message: &Outgoing<'_>) -> Result<(), Failure> {
        Ok(())
    }

    /// Writes the message as `<Message-ID>.eml`; a file that cannot be written is
    /// [`Failure::Transient`] (a full disk may be emptied).
    async fn finish(&mut self, message: &Outgoing<'_>) -> Result<Sent, Failure> {
        let name = file_name(message.message_id);
        let path = write(&self.dir, &name, message.bytes).await.map_err(|e| {
            Failure::Transient(format!(
                "cannot write `{}`: {e}",
                self.dir.join(&name).display()
            ))
        })?;
        Ok(Sent {
            reply: format!("written to {}", path.display()),
        })
    }

    async fn abort(&mut self) {}

    async fn close(self: Box<Self>) {}
}

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
