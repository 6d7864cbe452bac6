//! The build manifest: what the last build read and wrote, so the next one renders only what
//! changed.
//!
//! A JSON file (serde_json) at `.feedpost-cache/build.json` beside the config file — not in the
//! feeds folder, which is published. It is a cache: when it is missing or of another format the
//! build starts from an empty one and renders everything; when it is damaged, the same, with a
//! warning. One written for another site fingerprint (config, templates, feedpost binary)
//! vouches for no file, but still lists what that build wrote, so stale files can be removed.
//!
//! The issue files are stored as columns (one array per field) rather than one object per file:
//! a 10,000-issue manifest then parses in a third of the time, and an incremental build of such
//! a site is mostly that parse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::issue::Listing;

/// The manifest format; a change makes older manifests be ignored.
pub const FORMAT: u32 = 4;

/// What the last build knew.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The site fingerprint the outputs were rendered under.
    pub site: String,
    /// `site.permalink_prefix` then: where the pages were written.
    pub permalink_prefix: String,
    /// When that build started, nanoseconds since the Unix epoch (system clock): files modified
    /// close to it are read again (see `build::RACY_NANOS`).
    pub started_ns: i128,
    /// The issue files, in the order the issues folder was listed.
    pub sources: Sources,
    /// Per output file (relative to the feeds folder, `/`-separated) other than issue pages: its
    /// fingerprint. (A page's is its issue's hash: see [`SourceEntry::page`].)
    pub outputs: BTreeMap<String, String>,
}

/// One issue file as the last build read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEntry {
    /// The path, as listed from the issues folder.
    pub path: String,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// SHA-256 of the bytes, first 128 bits in hex.
    pub hash: String,
    /// Whether the issue's page was written from these bytes.
    pub page: bool,
    /// The issue as lists see it.
    pub listing: Listing,
}

/// The issue files, one column per field of [`SourceEntry`] (and of its [`Listing`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sources {
    path: Vec<String>,
    len: Vec<u64>,
    mtime_ns: Vec<i128>,
    hash: Vec<String>,
    page: Vec<bool>,
    slug: Vec<String>,
    title: Vec<String>,
    date: Vec<DateTime<FixedOffset>>,
    draft: Vec<bool>,
    categories: Vec<Vec<String>>,
    tags: Vec<Vec<String>>,
    permalink: Vec<String>,
}

impl Sources {
    /// How many files.
    pub fn len(&self) -> usize {
        self.path.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.path.is_empty()
    }

    /// Appends one file.
    pub fn push(&mut self, e: SourceEntry) {
        self.path.push(e.path);
        self.len.push(e.len);
        self.mtime_ns.push(e.mtime_ns);
        self.hash.push(e.hash);
        self.page.push(e.page);
        self.slug.push(e.listing.slug);
        self.title.push(e.listing.title);
        self.date.push(e.listing.date);
        self.draft.push(e.listing.draft);
        self.categories.push(e.listing.categories);
        self.tags.push(e.listing.tags);
        self.permalink.push(e.listing.permalink);
    }

    /// The files, in order.
    pub fn into_entries(self) -> impl Iterator<Item = SourceEntry> {
        let listings = self
            .slug
            .into_iter()
            .zip(self.title)
            .zip(self.date)
            .zip(self.draft)
            .zip(self.categories)
            .zip(self.tags)
            .zip(self.permalink)
            .map(
                |((((((slug, title), date), draft), categories), tags), permalink)| Listing {
                    slug,
                    title,
                    date,
                    draft,
                    categories,
                    tags,
                    permalink,
                },
            );
        self.path
            .into_iter()
            .zip(self.len)
            .zip(self.mtime_ns)
            .zip(self.hash)
            .zip(self.page)
            .zip(listings)
            .map(
                |(((((path, len), mtime_ns), hash), page), listing)| SourceEntry {
                    path,
                    len,
                    mtime_ns,
                    hash,
                    page,
                    listing,
                },
            )
    }

    /// Whether every column has the same length.
    fn is_consistent(&self) -> bool {
        let n = self.path.len();
        [
            self.len.len(),
            self.mtime_ns.len(),
            self.hash.len(),
            self.page.len(),
            self.slug.len(),
            self.title.len(),
            self.date.len(),
            self.draft.len(),
            self.categories.len(),
            self.tags.len(),
            self.permalink.len(),
        ]
        .iter()
        .all(|&l| l == n)
    }
}

/// One issue file to write, borrowed from the build (see [`write()`]).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// See [`SourceEntry::path`].
    pub path: &'a str,
    /// See [`SourceEntry::len`].
    pub len: u64,
    /// See [`SourceEntry::mtime_ns`].
    pub mtime_ns: i128,
    /// See [`SourceEntry::hash`].
    pub hash: &'a str,
    /// See [`SourceEntry::page`].
    pub page: bool,
    /// See [`SourceEntry::listing`].
    pub listing: &'a Listing,
}

/// A column of `rows`, serialised as a JSON array without copying the values.
struct Column<'r, 'a, F>(&'r [Row<'a>], F);

impl<'r, 'a, T: Serialize, F: Fn(&'r Row<'a>) -> T> Serialize for Column<'r, 'a, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

fn col<'r, 'a, T: Serialize, F: Fn(&'r Row<'a>) -> T>(
    rows: &'r [Row<'a>],
    f: F,
) -> Column<'r, 'a, F> {
    Column(rows, f)
}

/// The rows as [`Sources`] columns.
struct Columns<'r, 'a>(&'r [Row<'a>]);

impl Serialize for Columns<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = s.serialize_struct("Sources", 12)?;
        st.serialize_field("path", &col(r, |x| x.path))?;
        st.serialize_field("len", &col(r, |x| x.len))?;
        st.serialize_field("mtime_ns", &col(r, |x| x.mtime_ns))?;
        st.serialize_field("hash", &col(r, |x| x.hash))?;
        st.serialize_field("page", &col(r, |x| x.page))?;
        st.serialize_field("slug", &col(r, |x| &x.listing.slug))?;
        st.serialize_field("title", &col(r, |x| &x.listing.title))?;
        st.serialize_field("date", &col(r, |x| x.listing.date))?;
        st.serialize_field("draft", &col(r, |x| x.listing.draft))?;
        st.serialize_field("categories", &col(r, |x| &x.listing.categories))?;
        st.serialize_field("tags", &col(r, |x| &x.listing.tags))?;
        st.serialize_field("permalink", &col(r, |x| &x.listing.permalink))?;
        st.end()
    }
}

/// The JSON of the `sources` of a manifest holding `rows` (used by [`write()`]; apart so a caller
/// can serialise it while doing other work).
pub fn sources_json(rows: &[Row<'_>]) -> Vec<u8> {
    serde_json::to_vec(&Columns(rows)).expect("serialising to a Vec cannot fail")
}

/// Writes a manifest to `path` (through a temporary file and a rename, so a crash leaves the old
/// one or the new one): the site fingerprint, the start of the build, the issue files (their
/// [`sources_json`]) and the outputs' fingerprints.
///
/// # Errors
/// The folder cannot be created or the file cannot be written.
pub fn write(
    path: &Path,
    site: &str,
    permalink_prefix: &str,
    started_ns: i128,
    sources_json: &[u8],
    outputs: &BTreeMap<String, String>,
) -> Result<()> {
    let mut bytes = Vec::with_capacity(sources_json.len() + outputs.len() * 96 + 256);
    bytes.extend_from_slice(head().as_bytes());
    bytes.extend_from_slice(
        format!(
            "\"site\":{},\"permalink_prefix\":{},\"started_ns\":{started_ns},\"sources\":",
            serde_json::json!(site),
            serde_json::json!(permalink_prefix)
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(sources_json);
    bytes.extend_from_slice(b",\"outputs\":");
    serde_json::to_writer(&mut bytes, outputs).context("cannot serialise the build cache")?;
    bytes.push(b'}');
    crate::feed::write_if_changed(path, &bytes).map(|_| ())
}

/// How every manifest of this [`FORMAT`] begins.
fn head() -> String {
    format!("{{\"format\":{FORMAT},")
}

impl Manifest {
    /// An empty manifest for the site fingerprint `site`.
    pub fn new(site: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            site: site.to_string(),
            permalink_prefix: String::new(),
            started_ns: 0,
            sources: Sources::default(),
            outputs: BTreeMap::new(),
        }
    }

    /// Where the manifest of `config`'s site lives: `.feedpost-cache/build.json` beside the
    /// config file.
    pub fn path(config: &Config) -> PathBuf {
        config.root.join(".feedpost-cache").join("build.json")
    }

    /// Reads the manifest at `path`; an empty one (with no site fingerprint) when there is none
    /// or it is of another format.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not a manifest (the caller then builds
    /// everything).
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::new("")),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the build cache `{}`", path.display()))
            }
        };
        if !bytes.starts_with(head().as_bytes()) {
            return Ok(Manifest::new(""));
        }
        let damaged = || format!("the build cache `{}` is damaged", path.display());
        let manifest: Manifest = serde_json::from_slice(&bytes).with_context(damaged)?;
        if !manifest.sources.is_consistent() {
            bail!(damaged());
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(slug: &str) -> Listing {
        Listing {
            slug: slug.into(),
            title: "标题 \"q\"".into(),
            date: DateTime::parse_from_rfc3339("2020-05-15T17:00:00+08:00").unwrap(),
            draft: false,
            categories: vec!["SOFA Weekly".into()],
            tags: vec![],
            permalink: format!("https://example.org/issues/{slug}/"),
        }
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".feedpost-cache/build.json");
        let (a, b) = (listing("a"), listing("b"));
        let rows = [
            Row {
                path: "/x/a.md",
                len: 3,
                mtime_ns: 7,
                hash: "00ff",
                page: true,
                listing: &a,
            },
            Row {
                path: "/x/b.md",
                len: 4,
                mtime_ns: -8,
                hash: "ff00",
                page: false,
                listing: &b,
            },
        ];
        let mut outputs = BTreeMap::new();
        outputs.insert("rss.xml".to_string(), "fp".to_string());
        write(
            &path,
            "site-1",
            "issues/",
            42,
            &sources_json(&rows),
            &outputs,
        )
        .unwrap();
        let back = Manifest::load(&path).unwrap();
        assert_eq!(back.site, "site-1");
        assert_eq!(back.permalink_prefix, "issues/");
        assert_eq!(back.started_ns, 42);
        assert_eq!(back.outputs, outputs);
        let entries: Vec<SourceEntry> = back.sources.into_entries().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].path, "/x/a.md");
        assert_eq!(entries[0].listing, a);
        assert!(entries[0].page);
        assert_eq!(entries[1].mtime_ns, -8);
        assert_eq!(entries[1].listing, b);
    }

    #[test]
    fn missing_or_foreign_format_is_empty_and_damaged_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.json");
        assert!(Manifest::load(&path).unwrap().outputs.is_empty());
        std::fs::write(&path, "{not json").unwrap();
        assert!(Manifest::load(&path).unwrap().outputs.is_empty());
        std::fs::write(&path, format!("{}\"site\":\"s\",\"started_ns\":", head())).unwrap();
        let err = format!("{:#}", Manifest::load(&path).unwrap_err());
        assert!(err.contains("damaged"), "{err}");
        // Columns of different lengths.
        let mut m = Manifest::new("s");
        m.sources.path.push("x".into());
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(Manifest::load(&path).is_err());
    }
}
