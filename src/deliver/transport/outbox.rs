//! The outbox: each message as an `.eml` file, for a rehearsal without a mail server.
//!
//! A file appears under its final name only whole and on disk: it is written to a temporary
//! file in the same folder, synced, then renamed (atomic on POSIX file systems), and the folder
//! is synced so the rename survives a crash. A failed write (a full disk) leaves no file behind,
//! under either name. Files are named after the folder (the slug) and the recipient,
//! `<slug>--reader@example.org.eml` (see [`file_name`]), so the editor sees who each file is
//! for, and a message written again replaces itself.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
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

/// The longest file name [`file_name`] makes, in bytes (file systems allow 255).
const NAME_MAX: usize = 200;

/// The file name of a message to `recipient` in the folder named `prefix` (the slug):
/// `<prefix>--<recipient>.eml`, the address in lower case (as the ledger keys it). Characters
/// a file system may refuse or a shell may trip on (`/ \ : * ? " < > |`, spaces, control
/// characters...) become `_`; letters of any script, digits and `@ . _ + - =` stay. A name that
/// had to change that way, or grew past 200 bytes (cut there), ends with 8 hex digits of the
/// SHA-256 of the address, so two recipients never share a file. Without a recipient, the
/// `Message-ID` (without its angle brackets) stands in for the address.
pub fn file_name(prefix: &str, recipient: Option<&str>, message_id: &str) -> String {
    let wanted = match recipient {
        Some(r) => r.to_lowercase(),
        None => message_id
            .trim_matches(|c| c == '<' || c == '>')
            .to_string(),
    };
    let keep = |c: char| c.is_alphanumeric() || "@._+-=".contains(c);
    let mut name = format!("{prefix}--");
    let mut changed = false;
    for c in wanted.chars() {
        if keep(c) {
            name.push(c);
        } else {
            name.push('_');
            changed = true;
        }
    }
    if name.len() > NAME_MAX {
        let mut end = NAME_MAX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        changed = true;
    }
    if changed {
        let digest = Sha256::digest(wanted.as_bytes());
        name.push('.');
        name.push_str(&hex::encode(&digest[..4]));
    }
    name.push_str(".eml");
    name
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

    /// Writes the message as `<slug>--<recipient>.eml` (see [`file_name`]); a file that cannot
    /// be written is [`Failure::Transient`] (a full disk may be emptied).
    async fn finish(&mut self, message: &Outgoing<'_>) -> Result<Sent, Failure> {
        let prefix = self
            .dir
            .file_name()
            .map_or_else(|| "message".into(), |n| n.to_string_lossy());
        let recipient = message.envelope.to().first().map(|a| a.as_ref());
        let name = file_name(&prefix, recipient, message.message_id);
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

    #[test]
    fn file_names_show_the_recipient_and_are_safe() {
        let id = "<x.1@example.org>";
        assert_eq!(
            file_name("2024-03-08-weekly", Some("Reader+news@Example.org"), id),
            "2024-03-08-weekly--reader+news@example.org.eml"
        );
        assert_eq!(
            file_name("周刊", Some("读者@例子.中国"), id),
            "周刊--读者@例子.中国.eml"
        );
        let odd = file_name("w", Some("\"a/b c\"@example.org"), id);
        assert!(odd.starts_with("w--_a_b_c_@example.org."), "{odd}");
        assert_ne!(odd, file_name("w", Some("\"a_b c\"@example.org"), id));
        assert!(!odd.contains('/') && !odd.contains('"') && odd.ends_with(".eml"));
        let long = file_name("w", Some(&format!("{}@example.org", "a".repeat(300))), id);
        assert!(long.len() <= NAME_MAX + 13, "{}", long.len());
        assert_eq!(file_name("w", None, id), "w--x.1@example.org.eml");
    }
}
