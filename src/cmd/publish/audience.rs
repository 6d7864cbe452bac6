//! The subscriber list as it concerns one issue: read in chunks, each entry judged (bad, repeated, not wanting the issue's topics, wanting it), then queued in the store
//! by a publish, admitted as eligible by a publish or a retry, or counted by a dry run.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::config::Config;
use crate::issue::Issue;
use crate::mail::IssueMail;
use crate::store::{NewDelivery, Queue, State, Store};
use crate::subscribers::{self, EntryError, Reader, Subscriber};

/// How many entries of the subscriber list are judged, queued and admitted at a time (one
/// transaction each).
pub(super) const CHUNK: usize = 5_000;

/// One entry of the subscriber list, as it concerns an issue.
pub(super) enum Entry {
    /// Not a valid entry (reported as a warning).
    Bad,
    /// The address was listed before (reported as a warning).
    Repeated,
    /// A subscriber whose topics exclude the issue.
    NotWanted(Subscriber),
    /// A subscriber who wants the issue.
    Wanted(Subscriber),
}

/// The entries of the subscriber list, judged against one issue, a chunk at a time; memory
/// stays flat however long the list.
pub(super) struct Entries<'i> {
    issue: &'i Issue,
    path: PathBuf,
    reader: Option<Reader<BufReader<File>>>,
    /// Why the file could not be opened, returned by the first [`Entries::next`].
    failed: Option<anyhow::Error>,
    seen: Seen,
    /// Whether bad and repeated entries are reported (a publish, a dry run) or not.
    report: bool,
}

impl<'i> Entries<'i> {
    /// Starts reading `config`'s subscriber list for `issue`.
    pub(super) fn read(config: &Config, issue: &'i Issue) -> Entries<'i> {
        let path = config.site.subscribers.clone();
        let (reader, failed) = match subscribers::open(&path) {
            Ok(reader) => (Some(reader), None),
            Err(e) => (None, Some(e)),
        };
        Entries {
            issue,
            path,
            reader,
            failed,
            seen: Seen::default(),
            report: true,
        }
    }

    /// Reads without reporting bad and repeated entries.
    pub(super) fn quietly(mut self) -> Entries<'i> {
        self.report = false;
        self
    }

    /// The next chunk of judged entries ([`CHUNK`] at most); `None` at the end of the list. The
    /// file is read on the caller's thread, a piece at a time (it is read as fast as it is
    /// parsed).
    ///
    /// # Errors
    /// The file cannot be opened or read (not a bad entry: those are [`Entry::Bad`]).
    pub(super) fn next(&mut self) -> Result<Option<Vec<Entry>>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        for entry in reader.by_ref().take(CHUNK) {
            let entry = entry.with_context(|| {
                format!(
                    "failed to read the subscriber list `{}`",
                    self.path.display()
                )
            })?;
            chunk.push(judge(
                self.issue,
                &self.path,
                &mut self.seen,
                self.report,
                entry,
            ));
        }
        if chunk.is_empty() {
            self.reader = None;
            return Ok(None);
        }
        Ok(Some(chunk))
    }
}

/// What `entry` of the file at `path` is for `issue`, reporting it when bad or repeated if
/// `report`.
fn judge(
    issue: &Issue,
    path: &std::path::Path,
    seen: &mut Seen,
    report: bool,
    entry: Result<Subscriber, EntryError>,
) -> Entry {
    match entry {
        Err(bad) => {
            if report {
                warn!("{bad} (skipped)");
            }
            Entry::Bad
        }
        Ok(s) if !seen.insert(&s.key) => {
            if report {
                warn!(
                    "{}:{}: `{}` is listed more than once; it gets one message",
                    path.display(),
                    s.line,
                    s.email
                );
            }
            Entry::Repeated
        }
        Ok(s) if s.wants(issue) => Entry::Wanted(s),
        Ok(s) => Entry::NotWanted(s),
    }
}

/// Reads the subscriber list into the store: with `enqueue` (a publish) queues every subscriber
/// who wants `issue`; always records who may receive it now, for
/// [`Store::settle_audience`]. Returns how many entries were skipped (bad entries, repeats, topic
/// filter, suppression list).
///
/// # Errors
/// The subscriber file cannot be read, or the store cannot be written.
pub(super) async fn admit(
    config: &Config,
    issue: &Issue,
    store: &dyn Store,
    queue: Queue<'_>,
    enqueue: bool,
) -> Result<u64> {
    let from = config.from_mailbox();
    store.begin_audience().await?;
    let mut entries = Entries::read(config, issue);
    let mut skipped = 0u64;
    while let Some(chunk) = entries.next()? {
        let mut listed = Vec::with_capacity(chunk.len());
        let mut deliveries = Vec::with_capacity(if enqueue { chunk.len() } else { 0 });
        let mut wanted = Vec::new();
        for entry in &chunk {
            match entry {
                Entry::Bad | Entry::Repeated => skipped += 1,
                Entry::NotWanted(s) => {
                    skipped += 1;
                    listed.push((s.key.as_str(), false));
                }
                Entry::Wanted(s) => {
                    listed.push((s.key.as_str(), true));
                    if enqueue {
                        deliveries.push(NewDelivery {
                            key: &s.key,
                            address: &s.address,
                            name: s.name.as_deref(),
                            message_id: IssueMail::message_id_for(queue.issue, &s.key, &from),
                        });
                    } else {
                        wanted.push(s);
                    }
                }
            }
        }
        skipped += if enqueue {
            store.enqueue(queue, &deliveries).await?.suppressed
        } else {
            suppressed_among(store, &wanted).await?
        };
        store.admit(&listed).await?;
    }
    Ok(skipped)
}

async fn suppressed_among(store: &dyn Store, wanted: &[&Subscriber]) -> Result<u64> {
    let mut n = 0;
    for s in wanted {
        if store.suppression_of(&s.key).await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// What a dry run counts: as a publish would queue and send, reading the same list, the topic
/// filter and the suppression list.
#[derive(Debug, Default)]
pub(super) struct DryCount {
    pub would_send: u64,
    pub already: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// Counts as a publish of `issue` on `queue` would, from the store if there is one (`None`: a
/// store that does not exist yet, so nothing was sent).
///
/// # Errors
/// The subscriber file or the store cannot be read.
pub(super) async fn dry_count(
    config: &Config,
    issue: &Issue,
    store: Option<&dyn Store>,
    queue: Queue<'_>,
) -> Result<DryCount> {
    let mut count = DryCount::default();
    let mut entries = Entries::read(config, issue);
    while let Some(chunk) = entries.next()? {
        for entry in chunk {
            let s = match entry {
                Entry::Bad | Entry::Repeated | Entry::NotWanted(_) => {
                    count.skipped += 1;
                    continue;
                }
                Entry::Wanted(s) => s,
            };
            let Some(store) = store else {
                count.would_send += 1;
                continue;
            };
            if store.suppression_of(&s.key).await?.is_some() {
                count.skipped += 1;
                continue;
            }
            match store.state_of(queue, &s.key).await? {
                Some(State::Sent) => count.already += 1,
                Some(State::Failed) => count.failed += 1,
                _ => count.would_send += 1,
            }
        }
    }
    Ok(count)
}

/// The name the subscriber list gives `key` (a lowercased address), if it lists it.
///
/// # Errors
/// The subscriber file cannot be read.
pub(super) async fn name_of(config: &Config, issue: &Issue, key: &str) -> Result<Option<String>> {
    let mut entries = Entries::read(config, issue).quietly();
    while let Some(chunk) = entries.next()? {
        for entry in chunk {
            if let Entry::Wanted(s) | Entry::NotWanted(s) = entry {
                if s.key == key {
                    return Ok(s.name);
                }
            }
        }
    }
    Ok(None)
}

/// The recipient keys already met in the subscriber file, each kept as the first 16 bytes of its
/// SHA-256 rather than the address: 16 bytes a subscriber, whatever the address length. Two keys
/// share a digest with a chance of about n²/2¹²⁹ (10⁻²⁷ for a million subscribers).
#[derive(Default)]
struct Seen(HashSet<[u8; 16]>);

impl Seen {
    /// Whether `key` is new (and now remembered).
    fn insert(&mut self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        self.0.insert(short)
    }
}
