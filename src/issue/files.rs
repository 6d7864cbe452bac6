//! Finding the issue files under `site.issues`, laid out as a Hugo content section may be.
//!
//! The very first step of loading: which files are issues, before any is read.
//!
//! - A `*.md` file is an issue (a "single page"), named by its file name.
//! - A folder holding `index.md` is a leaf page bundle: `index.md` is the issue, named by the
//!   folder (which is also its default slug), and every other file in the folder and below it
//!   (images, attachments) is one of its resources — none of them is an issue.
//! - `_index.md` (a branch bundle's own page, Hugo's section list) is not an issue; the other
//!   files of its folder are looked at as usual.
//! - Hidden files and folders (`.git`, `.DS_Store`) are skipped.
//! - With `site.include` patterns, only the issues that match one are taken: a pattern matches
//!   an issue's name (`sofa-weekly-*`), or, when it holds a `/`, its path relative to the issues
//!   folder (`2024/*`, a bundle's path being its folder's). `*` stays within one path segment,
//!   `**` crosses them (the `globset` crate's syntax).

use std::fs::DirEntry;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The file name that makes a folder a leaf page bundle.
pub const BUNDLE_INDEX: &str = "index.md";

/// The file name of a branch bundle's own page, which is not an issue.
pub const BRANCH_INDEX: &str = "_index.md";

/// One issue file found, with its directory entry (for a `stat` through the open folder).
#[derive(Debug)]
pub struct Found {
    /// The issue file.
    pub path: PathBuf,
    /// Its directory entry.
    pub entry: DirEntry,
    /// For a leaf bundle's `index.md`: the bundle's other files, as (path relative to the
    /// bundle's folder, `/`-separated; directory entry), sorted. Empty for a single page.
    pub resources: Vec<(String, DirEntry)>,
}

/// What [`find`] found below the issues folder.
#[derive(Debug, Default)]
pub struct Files {
    /// The issues, sorted by path.
    pub issues: Vec<Found>,
    /// The names of pages that `site.include` left out (a single page's file stem, a bundle's
    /// folder name): pages of the site, so a link to one is not broken, though not issues.
    pub others: Vec<String>,
}

/// The `site.include` patterns, compiled.
#[derive(Debug, Clone)]
pub struct Include(Option<GlobSet>);

impl Include {
    /// Compiles `patterns`; none means every page is an issue.
    ///
    /// # Errors
    /// A pattern is not a valid glob (the error names it).
    pub fn new(patterns: &[String]) -> Result<Include> {
        if patterns.is_empty() {
            return Ok(Include(None));
        }
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .with_context(|| format!("`site.include` pattern `{pattern}` is not a glob"))?;
            set.add(glob);
        }
        Ok(Include(Some(set.build()?)))
    }

    /// Whether the page `name`, at `relative` (to the issues folder, `/`-separated), is taken.
    fn takes(&self, name: &str, relative: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|set| set.is_match(name) || set.is_match(relative))
    }
}

/// The slug a page gets when its front matter names none: a leaf bundle's folder name, else the
/// file name without `.md`.
pub fn default_slug(path: &Path) -> String {
    let name = if is_bundle(path) {
        path.parent().and_then(Path::file_name)
    } else {
        path.file_stem()
    };
    name.map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether the issue file at `path` is a leaf bundle's `index.md`.
pub fn is_bundle(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == BUNDLE_INDEX)
}

/// Every issue below `dir` (see the module docs), and the pages `include` leaves out.
///
/// # Errors
/// `dir`, or a folder below it, cannot be read.
pub fn find(dir: &Path, include: &Include) -> Result<Files> {
    let mut files = Files::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let (mut subdirs, pages) = list(&d)?;
        let is_bundle = pages.iter().any(|e| e.file_name() == BUNDLE_INDEX);
        if is_bundle {
            let (index, resources) = bundle(&d, pages, subdirs)?;
            let name = d
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into());
            take(&mut files, include, dir, name, &d, index, resources);
            continue;
        }
        for page in pages {
            let path = page.path();
            if page.file_name() == BRANCH_INDEX || path.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let name = page.file_name().to_string_lossy().into_owned();
            take(&mut files, include, dir, name, &path, page, Vec::new());
        }
        stack.append(&mut subdirs);
    }
    files.issues.sort_by(|a, b| a.path.cmp(&b.path));
    files.others.sort();
    Ok(files)
}

/// The paths of every issue below `dir`, every page taken (no `site.include`), sorted: for
/// tools and tests that read issue files one by one.
///
/// # Errors
/// `dir`, or a folder below it, cannot be read.
pub fn paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = find(dir, &Include(None))?;
    Ok(files.issues.into_iter().map(|f| f.path).collect())
}

/// Adds the page `entry` named `name` at `at` (its file, or its bundle's folder) to the issues
/// when `include` takes it, else to the other pages.
fn take(
    files: &mut Files,
    include: &Include,
    root: &Path,
    name: String,
    at: &Path,
    entry: DirEntry,
    resources: Vec<(String, DirEntry)>,
) {
    let relative = slashed(at.strip_prefix(root).unwrap_or(at));
    if include.takes(&name, &relative) {
        files.issues.push(Found {
            path: entry.path(),
            entry,
            resources,
        });
    } else {
        let stem = name.strip_suffix(".md").unwrap_or(&name);
        files.others.push(stem.to_string());
    }
}

/// The folders and the files of `dir`, hidden ones left out.
fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<DirEntry>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| crate::config::Invalid {
        key: "site.issues".into(),
        line: None,
        message: format!(
            "failed to read the issues folder `{}` (set `site.issues` in the config): {e}",
            dir.display()
        ),
    })?;
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .with_context(|| format!("failed to read `{}`", entry.path().display()))?;
        if kind.is_dir() {
            dirs.push(entry.path());
        } else {
            files.push(entry);
        }
    }
    Ok((dirs, files))
}

/// A leaf bundle's `index.md` and its resources: the other files of `dir` (`files`) and of
/// the folders below it (`subdirs`), `.md` files and an `index.html` (where the issue's page
/// goes) left out.
fn bundle(
    dir: &Path,
    files: Vec<DirEntry>,
    subdirs: Vec<PathBuf>,
) -> Result<(DirEntry, Vec<(String, DirEntry)>)> {
    let mut index = None;
    let mut resources = Vec::new();
    let mut pending = vec![(files, subdirs)];
    while let Some((files, subdirs)) = pending.pop() {
        for file in files {
            let path = file.path();
            let relative = slashed(path.strip_prefix(dir).unwrap_or(&path));
            if relative == BUNDLE_INDEX {
                index = Some(file);
            } else if relative != "index.html" && path.extension().is_none_or(|e| e != "md") {
                resources.push((relative, file));
            }
        }
        for sub in subdirs {
            let (dirs, files) = list(&sub)?;
            pending.push((files, dirs));
        }
    }
    resources.sort_by(|a, b| a.0.cmp(&b.0));
    let index = index.expect("a bundle's folder holds its index.md");
    Ok((index, resources))
}

/// `path` with `/` between its components, whatever the platform.
fn slashed(path: &Path) -> String {
    let parts: Vec<_> = path.iter().map(|c| c.to_string_lossy()).collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        dir
    }

    fn names(dir: &Path, files: &Files) -> Vec<String> {
        let rel = |p: &Path| slashed(p.strip_prefix(dir).unwrap());
        (files.issues.iter())
            .map(|f| {
                let resources: Vec<&str> = f.resources.iter().map(|r| r.0.as_str()).collect();
                format!("{} {resources:?}", rel(&f.path))
            })
            .collect()
    }

    #[test]
    fn leaf_bundles_branch_bundles_and_single_pages() {
        let dir = tree(&[
            "_index.md",
            "single.md",
            "notes.txt",
            ".hidden.md",
            "week-1/index.md",
            "week-1/cover.png",
            "week-1/img/a.jpg",
            "week-1/part.md",
            "week-1/.DS_Store",
            "2024/_index.md",
            "2024/week-2/index.md",
            "2024/week-2/nested/index.md",
            "2024/other.md",
        ]);
        let files = find(dir.path(), &Include::new(&[]).unwrap()).unwrap();
        assert_eq!(
            names(dir.path(), &files),
            [
                "2024/other.md []",
                "2024/week-2/index.md []",
                "single.md []",
                "week-1/index.md [\"cover.png\", \"img/a.jpg\"]",
            ]
        );
        assert_eq!(default_slug(&dir.path().join("week-1/index.md")), "week-1");
        assert_eq!(default_slug(&dir.path().join("single.md")), "single");
    }

    #[test]
    fn include_patterns_match_names_or_relative_paths() {
        let dir = tree(&[
            "sofa-weekly-0515/index.md",
            "sofa-weekly-0522.md",
            "release-notes/index.md",
            "2024/sofa-weekly-0601/index.md",
            "2024/news.md",
        ]);
        let include = |patterns: &[&str]| {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let files = find(dir.path(), &Include::new(&patterns).unwrap()).unwrap();
            (names(dir.path(), &files), files.others)
        };
        let (taken, others) = include(&["sofa-weekly-*"]);
        assert_eq!(
            taken,
            [
                "2024/sofa-weekly-0601/index.md []",
                "sofa-weekly-0515/index.md []",
                "sofa-weekly-0522.md []",
            ]
        );
        assert_eq!(others, ["news", "release-notes"]);
        let (taken, _) = include(&["2024/*"]);
        assert_eq!(
            taken,
            ["2024/news.md []", "2024/sofa-weekly-0601/index.md []"]
        );
        assert!(Include::new(&["a[".to_string()]).is_err());
    }
}
