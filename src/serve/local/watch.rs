//! What the local preview watches: the config file, the issues folder (with its page bundles'
//! images) and the subscriber list, through `notify` (inotify, FSEvents, ReadDirectoryChangesW)
//! and `notify-debouncer-full`, which folds an editor's burst of writes (a temporary file, a
//! rename, a `chmod`) into one batch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify_debouncer_full::notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::Config;

/// How long the file system must be quiet before a batch of changes is reported.
const QUIET: Duration = Duration::from_millis(100);

/// The paths whose changes rebuild the preview, and those whose changes never do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    /// The config file.
    config: PathBuf,
    /// The subscriber list.
    subscribers: PathBuf,
    /// The issues folder: everything below it counts.
    issues: PathBuf,
    /// What feedpost itself writes, which may lie inside the issues folder (`issues = "."`):
    /// the build cache, the feeds folder, the outbox, the ledger and its companions.
    ignored: Vec<PathBuf>,
    /// The ledger file's name, whose `-wal`, `-shm` and `.lock` companions are ignored too.
    ledger: PathBuf,
}

impl Scope {
    /// The scope of `config`, whose file is `config_path`.
    pub(crate) fn of(config: &Config, config_path: &Path) -> Scope {
        let full = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        Scope {
            config: full(config_path),
            subscribers: full(&config.site.subscribers),
            issues: full(&config.site.issues),
            ignored: vec![
                full(&config.root.join(".feedpost-cache")),
                full(&config.site.feeds),
                full(&config.mail.outbox),
            ],
            ledger: full(&config.mail.ledger),
        }
    }

    /// The folders to watch: the issues folder (recursively) and the folders holding the config
    /// file and the subscriber list (not recursively: editors save by replacing the file, which
    /// a watch on the file itself would lose).
    fn folders(&self) -> BTreeSet<(PathBuf, bool)> {
        let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
        [
            (self.issues.clone(), true),
            (parent(&self.config), false),
            (parent(&self.subscribers), false),
        ]
        .into_iter()
        .collect()
    }

    /// Whether a change to `path` calls for a rebuild.
    pub(crate) fn matters(&self, path: &Path) -> bool {
        if path == self.config || path == self.subscribers {
            return true;
        }
        if !path.starts_with(&self.issues) || self.ignored.iter().any(|i| path.starts_with(i)) {
            return false;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let ledger = self
            .ledger
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let scratch = name.starts_with('.')
            || name.ends_with('~')
            || name.ends_with(".swp")
            || name.ends_with(".tmp")
            || name == "4913"
            || (!ledger.is_empty() && name.starts_with(ledger.as_ref()));
        !scratch
    }
}

/// Whether an event of `kind` may change what the site shows: writes, creations, removals,
/// renames, permission changes — not a file being opened or read (the build itself reads every
/// issue), nor its access time.
fn changes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Other => false,
        _ => true,
    }
}

/// Watches a [`Scope`] and sends `()` on its channel after each batch of changes that matter.
pub(crate) struct Watcher {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    scope: Scope,
    watched: BTreeSet<(PathBuf, bool)>,
    /// The scope the event handler filters with.
    shared: std::sync::Arc<std::sync::RwLock<Scope>>,
}

impl Watcher {
    /// Starts watching `scope`; each batch of changes that matter sends `()` into `changed`.
    ///
    /// # Errors
    /// The platform's watcher cannot start, or a folder cannot be watched.
    pub(crate) fn start(scope: Scope, changed: mpsc::UnboundedSender<()>) -> Result<Watcher> {
        let shared = std::sync::Arc::new(std::sync::RwLock::new(scope.clone()));
        let seen = std::sync::Arc::clone(&shared);
        let debouncer = new_debouncer(QUIET, None, move |result: DebounceEventResult| {
            let events = match result {
                Ok(events) => events,
                Err(errors) => {
                    for e in errors {
                        warn!("watching for changes: {e}");
                    }
                    return;
                }
            };
            let Ok(scope) = seen.read() else { return };
            let relevant = events
                .iter()
                .filter(|e| changes(&e.kind))
                .find_map(|e| e.paths.iter().find(|p| scope.matters(p)));
            if let Some(path) = relevant {
                debug!(path = %path.display(), "changed");
                let _ = changed.send(());
            }
        })
        .context("cannot watch the site's files for changes")?;
        let mut watcher = Watcher {
            debouncer,
            scope: scope.clone(),
            watched: BTreeSet::new(),
            shared,
        };
        watcher.watch(scope);
        Ok(watcher)
    }

    /// Watches `scope` from now on (after the config changed where the issues or the subscriber
    /// list are): adds the folders it has that were not watched, drops those it no longer has.
    /// A folder that cannot be watched is a warning (a missing issues folder is an error of the
    /// build, shown in the browser).
    pub(crate) fn watch(&mut self, scope: Scope) {
        let wanted = scope.folders();
        for (folder, _) in self.watched.difference(&wanted) {
            let _ = self.debouncer.unwatch(folder);
        }
        for (folder, recursive) in wanted.difference(&self.watched) {
            let mode = if *recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            if let Err(e) = self.debouncer.watch(folder, mode) {
                warn!(
                    "cannot watch `{}` for changes: {e}; restart `feedpost serve --local` once it exists",
                    folder.display()
                );
            }
        }
        self.watched = wanted;
        if let Ok(mut shared) = self.shared.write() {
            *shared = scope.clone();
        }
        self.scope = scope;
    }

    /// The scope watched now.
    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let config = Config::parse(
            "[site]\ntitle = \"T\"\nbase_url = \"https://example.org/\"\nissues = \".\"\n[mail]\nfrom = \"T <t@example.org>\"\n",
            Path::new("/site"),
        )
        .unwrap();
        Scope::of(&config, Path::new("/site/feedpost.toml"))
    }

    #[test]
    fn only_the_sources_matter_not_what_feedpost_writes() {
        let scope = scope();
        for (path, matters) in [
            ("/site/feedpost.toml", true),
            ("/site/subscribers.toml", true),
            ("/site/2026-12-04-weekly.md", true),
            ("/site/bundle/arch.png", true),
            ("/site/.feedpost-cache/serve/site/index.html", false),
            ("/site/feeds/rss.xml", false),
            ("/site/outbox/a/1.eml", false),
            ("/site/feedpost.sqlite-wal", false),
            ("/site/.weekly.md.swp", false),
            ("/site/weekly.md~", false),
            ("/elsewhere/x.md", false),
        ] {
            assert_eq!(scope.matters(Path::new(path)), matters, "{path}");
        }
    }

    #[test]
    fn reading_a_file_is_no_change() {
        assert!(!changes(&EventKind::Access(AccessKind::Open(
            notify_debouncer_full::notify::event::AccessMode::Any
        ))));
        assert!(changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes(&EventKind::Modify(ModifyKind::Any)));
        assert!(!changes(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
    }
}
