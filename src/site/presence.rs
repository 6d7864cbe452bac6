//! Which output files are on disk, found by listing their folders once rather than by a `stat`
//! per file: the build uses it to render again an output someone deleted, and to skip looking
//! at the old bytes of a file that is not there.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::Path;

use rayon::prelude::*;

/// The listings of some folders of the feeds folder. An issue's page counts as present when its
/// folder is listed in the pages' folder (the 10,000 pages of a large site are then one folder
/// listing); every other output when its file is listed in its folder.
pub(super) struct Presence {
    /// Per folder listed (relative to the feeds folder, `/`-separated): its names, or `None`
    /// when it could not be read (then nothing is known about it).
    listed: HashMap<String, Option<HashSet<OsString>>>,
}

impl Presence {
    /// Lists `dirs` (relative to `root`), in parallel. A folder that does not exist is listed as
    /// empty.
    pub(super) fn scan<'a>(root: &Path, dirs: impl IntoIterator<Item = &'a str>) -> Presence {
        let dirs: Vec<&str> = dirs.into_iter().collect();
        let listed = dirs
            .into_par_iter()
            .map(|dir| {
                let names = match std::fs::read_dir(root.join(dir)) {
                    Ok(entries) => Some(
                        entries
                            .filter_map(|e| e.ok().map(|e| e.file_name()))
                            .collect(),
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(HashSet::new()),
                    Err(_) => None,
                };
                (dir.to_string(), names)
            })
            .collect();
        Presence { listed }
    }

    /// `(folder, name)` of a `/`-separated path.
    pub(super) fn split(path: &str) -> (&str, &str) {
        path.rsplit_once('/').unwrap_or(("", path))
    }

    /// Whether `name` is listed in `dir` (`None`: the folder was not listed).
    fn lookup(&self, dir: &str, name: &str) -> Option<bool> {
        let names = self.listed.get(dir)?.as_ref()?;
        Some(names.contains(OsStr::new(name)))
    }

    /// Whether `name` is known to be in `dir`.
    pub(super) fn has(&self, dir: &str, name: &str) -> bool {
        self.lookup(dir, name) == Some(true)
    }

    /// Whether the file at `path` is known to be there.
    pub(super) fn has_file(&self, path: &str) -> bool {
        let (dir, name) = Presence::split(path);
        self.has(dir, name)
    }

    /// Whether `name` might be in `dir`: listed there, or the folder was not listed.
    pub(super) fn may_have(&self, dir: &str, name: &str) -> bool {
        self.lookup(dir, name) != Some(false)
    }
}
