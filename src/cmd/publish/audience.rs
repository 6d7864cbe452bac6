//! The audience of one issue: (the entries of `subscribers.toml` ∪ the confirmed readers of
//! the store who came by the web, `subscribers add` or `import`) − unsubscribed − bounced −
//! suppressed, filtered by topics ([`crate::subscribers::IssueTopics::wanted_by`]).
//!
//! The file is read in chunks, each entry judged (bad, repeated, not wanting the issue's
//! topics, wanting it) and read into the store (source `file`, so `status` and `subscribers
//! list` know it, and an unsubscribe holds though the address stays in the file); then the
//! store's own confirmed readers are paged through. Each reader is queued by a publish,
//! admitted as eligible by a publish or a retry, or counted by a dry run.

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
use crate::store::{
    NewDelivery, NewSubscriber, Queue, Source, State, Store, SubscriberRow, SubscriberState,
};
use crate::subscribers::{self, normalize, EntryError, IssueTopics, Reader, Subscriber};

/// How many entries of the subscriber list are judged, queued and admitted at a time (one
/// transaction each). Each transaction holds the store's write lock, which `feedpost serve`
/// waits for: 1,000 rows hold it ~3 ms (5,000 held it 15 ms, the p99 of a signup during a
/// publish), and the extra commits cost a 100,000-reader publish a few milliseconds.
pub(super) const CHUNK: usize = 1_000;

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
pub(super) struct Entries {
    /// The issue's topics, lowercased once.
    topics: IssueTopics,
    path: PathBuf,
    reader: Option<Reader<BufReader<File>>>,
    /// Why the file could not be opened, returned by the first [`Entries::next`].
    failed: Option<anyhow::Error>,
    seen: Seen,
    /// Whether bad and repeated entries are reported (a publish, a dry run) or not.
    report: bool,
}

impl Entries {
    /// Starts reading `config`'s subscriber list for `issue`.
    pub(super) fn read(config: &Config, issue: &Issue) -> Entries {
        let path = config.site.subscribers.clone();
        let (reader, failed) = match subscribers::open(&path) {
            Ok(reader) => (Some(reader), None),
            Err(e) => (None, Some(e)),
        };
        Entries {
            topics: IssueTopics::of(issue),
            path,
            reader,
            failed,
            seen: Seen::default(),
            report: true,
        }
    }

    /// Reads without reporting bad and repeated entries.
    pub(super) fn quietly(mut self) -> Entries {
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
                &self.topics,
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
    issue: &IssueTopics,
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

/// Reads the audience into the store: the subscriber file (each entry also recorded in the
/// store, see [`Store::list_file_subscribers`]), then the store's confirmed opt-ins. With
/// `enqueue` (a publish) queues every reader who wants `issue`; always records who may receive
/// it now, for [`Store::settle_audience`]. Returns how many readers were skipped (bad entries,
/// repeats, topic filter, unsubscribed or bounced, suppression list).
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
    let now = crate::now()?;
    // The stamp of this reading of the file: the real clock, even when FEEDPOST_NOW is pinned.
    let run = chrono::Utc::now().timestamp_millis();
    store.begin_audience().await?;
    let mut entries = Entries::read(config, issue);
    let mut skipped = 0u64;
    while let Some(chunk) = entries.next()? {
        let readers: Vec<(&Subscriber, bool)> = chunk
            .iter()
            .filter_map(|entry| match entry {
                Entry::Bad | Entry::Repeated => None,
                Entry::NotWanted(s) => Some((s, false)),
                Entry::Wanted(s) => Some((s, true)),
            })
            .collect();
        skipped += (chunk.len() - readers.len()) as u64;
        let listed: Vec<NewSubscriber<'_>> = readers
            .iter()
            .map(|(s, _)| NewSubscriber {
                key: &s.key,
                email: &s.email,
                name: s.name.as_deref(),
                topics: &s.topics,
                source: Source::File,
            })
            .collect();
        let left: HashSet<String> = store
            .list_file_subscribers(&listed, run, now)
            .await?
            .into_iter()
            .collect();
        let readers: Vec<Recipient<'_>> = readers
            .into_iter()
            .filter(|(s, _)| !left.contains(&s.key))
            .map(|(s, wants)| Recipient {
                key: &s.key,
                address: &s.address,
                name: s.name.as_deref(),
                wants,
            })
            .collect();
        skipped += left.len() as u64;
        skipped += admit_readers(store, queue, &from, &readers, enqueue).await?;
    }
    store.prune_file_subscribers(run).await?;
    let mut opt_ins = OptIns::new(issue, &entries.seen);
    while let Some(page) = opt_ins.next(store).await? {
        let readers: Vec<Recipient<'_>> = page.iter().map(OptIn::reader).collect();
        skipped += opt_ins.take_skipped();
        skipped += admit_readers(store, queue, &from, &readers, enqueue).await?;
    }
    Ok(skipped)
}

/// A reader of the audience, from the file or the store.
struct Recipient<'a> {
    key: &'a str,
    address: &'a str,
    name: Option<&'a str>,
    /// Whether its topics select the issue.
    wants: bool,
}

/// Queues (with `enqueue`) and admits `readers`; returns how many were skipped (topic filter,
/// suppression list).
async fn admit_readers(
    store: &dyn Store,
    queue: Queue<'_>,
    from: &lettre::message::Mailbox,
    readers: &[Recipient<'_>],
    enqueue: bool,
) -> Result<u64> {
    let mut skipped = 0;
    let mut deliveries = Vec::new();
    let mut wanted = Vec::new();
    for r in readers {
        if !r.wants {
            skipped += 1;
        } else if enqueue {
            deliveries.push(NewDelivery {
                key: r.key,
                address: r.address,
                name: r.name,
                message_id: IssueMail::message_id_for(queue.issue, r.key, from),
            });
        } else {
            wanted.push(r.key);
        }
    }
    skipped += if enqueue {
        store.enqueue(queue, &deliveries).await?.suppressed
    } else {
        suppressed_among(store, &wanted).await?
    };
    let listed: Vec<(&str, bool)> = readers.iter().map(|r| (r.key, r.wants)).collect();
    store.admit(&listed).await?;
    Ok(skipped)
}

async fn suppressed_among(store: &dyn Store, keys: &[&str]) -> Result<u64> {
    let mut n = 0;
    for key in keys {
        if store.suppression_of(key).await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// A confirmed reader of the store (web, `subscribers add`, `import`), as it concerns an issue.
struct OptIn {
    key: String,
    address: String,
    name: Option<String>,
    wants: bool,
}

impl OptIn {
    fn reader(&self) -> Recipient<'_> {
        Recipient {
            key: &self.key,
            address: &self.address,
            name: self.name.as_deref(),
            wants: self.wants,
        }
    }
}

/// The store's confirmed readers who did not come from the file, a page at a time, judged
/// against an issue. A reader the file lists too was judged with the file's entry; it is taken
/// again only when its own topics want the issue (the store's `admit` then counts it wanted).
struct OptIns<'a> {
    /// The issue's topics, lowercased once.
    topics: IssueTopics,
    in_file: &'a Seen,
    after: String,
    done: bool,
    skipped: u64,
}

impl<'a> OptIns<'a> {
    fn new(issue: &Issue, in_file: &'a Seen) -> OptIns<'a> {
        OptIns {
            topics: IssueTopics::of(issue),
            in_file,
            after: String::new(),
            done: false,
            skipped: 0,
        }
    }

    /// The next page of readers ([`CHUNK`] rows of the store at most); `None` at the end.
    async fn next(&mut self, store: &dyn Store) -> Result<Option<Vec<OptIn>>> {
        if self.done {
            return Ok(None);
        }
        let page = store.subscribers(&self.after, CHUNK).await?;
        let Some(last) = page.last() else {
            self.done = true;
            return Ok(None);
        };
        self.after = last.address.clone();
        Ok(Some(
            page.into_iter().filter_map(|row| self.judge(row)).collect(),
        ))
    }

    /// Readers left out of the last pages for their topics or a bad address (logged).
    fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    fn judge(&mut self, row: SubscriberRow) -> Option<OptIn> {
        if row.state != SubscriberState::Confirmed || row.source == Source::File {
            return None;
        }
        let wants = self.topics.wanted_by(&row.topics);
        let in_file = self.in_file.contains(&row.address);
        if in_file && !wants {
            return None;
        }
        let (address, key) = match normalize(&row.email) {
            Ok(normalized) => normalized,
            Err(message) => {
                warn!(
                    "subscriber `{}` in the store: {message} (skipped)",
                    row.address
                );
                self.skipped += 1;
                return None;
            }
        };
        if !wants {
            self.skipped += 1;
        }
        Some(OptIn {
            key,
            address,
            name: row.name,
            wants,
        })
    }
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

impl DryCount {
    /// Counts `key`, who wants the issue, as a publish would.
    async fn wanted(
        &mut self,
        store: Option<&dyn Store>,
        queue: Queue<'_>,
        key: &str,
    ) -> Result<()> {
        let Some(store) = store else {
            self.would_send += 1;
            return Ok(());
        };
        if store.suppression_of(key).await?.is_some() {
            self.skipped += 1;
            return Ok(());
        }
        let left = store.subscriber(key).await?.is_some_and(|s| {
            matches!(
                s.state,
                SubscriberState::Unsubscribed | SubscriberState::Bounced
            )
        });
        if left {
            self.skipped += 1;
            return Ok(());
        }
        match store.state_of(queue, key).await? {
            Some(State::Sent) => self.already += 1,
            Some(State::Failed) => self.failed += 1,
            _ => self.would_send += 1,
        }
        Ok(())
    }
}

/// Counts as a publish of `issue` on `queue` would, from the store if there is one (`None`: a
/// store that does not exist yet, so nothing was sent and nobody subscribed on the web).
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
    let mut wanted_in_file = Seen::default();
    while let Some(chunk) = entries.next()? {
        for entry in chunk {
            match entry {
                Entry::Bad | Entry::Repeated | Entry::NotWanted(_) => count.skipped += 1,
                Entry::Wanted(s) => {
                    wanted_in_file.insert(&s.key);
                    count.wanted(store, queue, &s.key).await?;
                }
            }
        }
    }
    let Some(store) = store else {
        return Ok(count);
    };
    let mut opt_ins = OptIns::new(issue, &entries.seen);
    while let Some(page) = opt_ins.next(store).await? {
        count.skipped += opt_ins.take_skipped();
        for r in page.iter().filter(|r| r.wants) {
            if !wanted_in_file.contains(&r.key) {
                count.wanted(Some(store), queue, &r.key).await?;
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
        self.0.insert(Seen::digest(key))
    }

    /// Whether `key` was met.
    fn contains(&self, key: &str) -> bool {
        self.0.contains(&Seen::digest(key))
    }

    fn digest(key: &str) -> [u8; 16] {
        let digest = Sha256::digest(key.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        short
    }
}
