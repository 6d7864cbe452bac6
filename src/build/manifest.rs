//! The build manifest: what the last build read and wrote, so the next one renders only what
//! changed.
//!
//! A JSON file (serde_json) at `.feedpost-cache/build.json` beside the config file — not in the
//! feeds folder, which is published. It is a cache: when it is missing, unreadable, of another
//! format, or written for another site fingerprint (config, templates, feedpost binary), the
//! build starts from an empty one and renders everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::issue::Listing;

/// The manifest format; a change makes older manifests be ignored.
pub const FORMAT: u32 = 2;

/// What the last build knew.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The site fingerprint the outputs were rendered under.
    pub site: String,
    /// When that build started, nanoseconds since the Unix epoch (system clock): files modified
    /// close to it are read again (see `build::RACY_NANOS`).
    pub started_ns: i128,
    /// Per issue file (its path as given by the issues folder): what it held.
    pub sources: BTreeMap<String, SourceEntry>,
    /// Per output file (relative to the feeds folder, `/`-separated) other than issue pages: its
    /// fingerprint. (A page's is its issue's hash: see [`SourceEntry::page`].)
    pub outputs: BTreeMap<String, String>,
}

/// One issue file as the last build read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// SHA-256 of the bytes, first 128 bits in hex.
    pub hash: String,
    /// The issue as lists see it.
    pub listing: Listing,
    /// Whether the issue's page was written from these bytes.
    pub page: bool,
}

impl Manifest {
    /// An empty manifest for the site fingerprint `site`.
    pub fn new(site: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            site: site.to_string(),
            started_ns: 0,
            sources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// Where the manifest of `config`'s site lives: `.feedpost-cache/build.json` beside the
    /// config file.
    pub fn path(config: &Config) -> PathBuf {
        config.root.join(".feedpost-cache").join("build.json")
    }

    /// Reads the manifest at `path`; an empty one when there is none, or when it was written for
    /// another format or site fingerprint than `site`.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not a manifest (the caller then builds
    /// everything).
    pub fn load(path: &Path, site: &str) -> Result<Manifest> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::new(site)),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the build cache `{}`", path.display()))
            }
        };
        // serde writes the fields in declaration order: `format` and `site` come first.
        let head = format!("{{\"format\":{FORMAT},\"site\":{}", serde_json::json!(site));
        if !bytes.starts_with(head.as_bytes()) {
            return Ok(Manifest::new(site));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("the build cache `{}` is damaged", path.display()))?;
        if manifest.sources.values().any(|s| s.hash.is_empty()) {
            bail!("the build cache `{}` is damaged", path.display());
        }
        Ok(manifest)
    }

    /// Writes the manifest to `path` (through a temporary file and a rename, so a crash leaves
    /// the old one or the new one).
    ///
    /// # Errors
    /// The folder cannot be created or the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).context("cannot serialise the build cache")?;
        crate::feed::write_if_changed(path, &bytes).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Listing {
        Listing {
            slug: "a".into(),
            title: "标题".into(),
            date: chrono::DateTime::parse_from_rfc3339("2020-05-15T17:00:00+08:00").unwrap(),
            draft: false,
            categories: vec!["SOFA Weekly".into()],
            tags: vec![],
            permalink: "https://example.org/issues/a/".into(),
        }
    }

    #[test]
    fn round_trips_and_ignores_another_site() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".feedpost-cache/build.json");
        let mut m = Manifest::new("site-1");
        m.started_ns = 42;
        m.sources.insert(
            "/x/a.md".into(),
            SourceEntry {
                len: 3,
                mtime_ns: 7,
                hash: "00ff".into(),
                listing: listing(),
                page: true,
            },
        );
        m.outputs.insert("rss.xml".into(), "fp".into());
        m.save(&path).unwrap();
        let back = Manifest::load(&path, "site-1").unwrap();
        assert_eq!(back.sources, m.sources);
        assert_eq!(back.outputs, m.outputs);
        assert_eq!(back.started_ns, 42);
        assert!(Manifest::load(&path, "site-2").unwrap().sources.is_empty());
    }

    #[test]
    fn missing_is_empty_and_damaged_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.json");
        assert!(Manifest::load(&path, "s").unwrap().outputs.is_empty());
        std::fs::write(&path, "{not json").unwrap();
        assert!(Manifest::load(&path, "s").unwrap().outputs.is_empty());
        std::fs::write(&path, r#"{"format":2,"site":"s","started_ns":"#).unwrap();
        let err = format!("{:#}", Manifest::load(&path, "s").unwrap_err());
        assert!(err.contains("damaged"), "{err}");
    }
}
