//! The plan of a build: every output file other than the issues' pages, each with a fingerprint
//! of everything it shows, so an output whose fingerprint the manifest already has for it is
//! not rendered again.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{manifest, mtime_ns, Source};
use crate::archive;
use crate::config::Config;
use crate::feed::{self, Document, Format, History, Scope};
use crate::issue::Listing;

/// What a non-page output file is made from.
pub(super) enum Kind {
    /// The index page.
    Index,
    /// The feed document at this index of the plan's documents.
    Feed(usize),
    /// A file shipped as is (stylesheets).
    Static(&'static str),
    /// Resource `.1` of the source at index `.0`: a leaf bundle's file, copied.
    Resource(usize, usize),
}

/// An output file other than an issue page, with the fingerprint of what it shows.
pub(super) struct Output {
    /// Relative to the feeds folder, `/`-separated.
    pub(super) path: String,
    /// See [`fingerprint`].
    pub(super) fingerprint: String,
    /// What it is rendered from.
    pub(super) kind: Kind,
}

/// The outputs of a site whose published issues are `published` (indices into `sources`,
/// newest first).
pub(super) struct Outputs {
    /// The feed documents ([`feed::plan`]); a [`Kind::Feed`] indexes it, and a document's
    /// entries index `published`.
    pub(super) docs: Vec<Document>,
    /// Every output but the pages.
    pub(super) outputs: Vec<Output>,
    /// The categories and tags the index links, `(name, is_category)`, in the plan's order.
    pub(super) terms: Vec<(String, bool)>,
}

/// Every output other than the pages, with its fingerprint under the site fingerprint `site_fp`;
/// also the feed plan and the index's terms.
pub(super) fn outputs(
    config: &Config,
    site_fp: &str,
    sources: &[Source],
    published: &[usize],
) -> Outputs {
    let docs = {
        let listings: Vec<&Listing> = published.iter().map(|&i| &sources[i].listing).collect();
        feed::plan(&listings, config)
    };
    let terms = index_terms(&docs);
    let mut outputs = Vec::with_capacity(docs.len() + 3);
    {
        let term_list = format!("{terms:?}");
        let mut parts: Vec<&str> = vec!["index", &term_list];
        parts.extend(published.iter().map(|&i| sources[i].hash.as_str()));
        outputs.push(Output {
            path: archive::INDEX_FILE.into(),
            fingerprint: fingerprint(site_fp, &parts),
            kind: Kind::Index,
        });
    }
    outputs.par_extend(docs.par_iter().enumerate().map(|(d, doc)| {
        let mut parts = document_parts(doc);
        parts.extend(
            doc.entries
                .iter()
                .map(|&e| sources[published[e]].hash.as_str()),
        );
        Output {
            path: doc.path.clone(),
            fingerprint: fingerprint(site_fp, &parts),
            kind: Kind::Feed(d),
        }
    }));
    outputs.extend(resources(config, site_fp, sources, published));
    for (path, content) in [
        (feed::STYLESHEET_FILE, feed::STYLESHEET),
        (archive::CSS_FILE, archive::CSS),
    ] {
        outputs.push(Output {
            path: path.into(),
            fingerprint: fingerprint(site_fp, &["static", content]),
            kind: Kind::Static(content),
        });
    }
    Outputs {
        docs,
        outputs,
        terms,
    }
}

/// The resources of the published leaf bundles, each next to its issue's page; the fingerprint
/// covers the file's path, size and modification time (not its bytes: images are not read
/// unless they changed).
fn resources<'a>(
    config: &'a Config,
    site_fp: &'a str,
    sources: &'a [Source],
    published: &'a [usize],
) -> impl Iterator<Item = Output> + 'a {
    published.iter().flat_map(move |&i| {
        let source = &sources[i];
        let dir = archive::page_dir(config, &source.listing.slug);
        source
            .resources
            .iter()
            .enumerate()
            .map(move |(r, resource)| {
                let stat = format!("{} {}", resource.len, resource.mtime_ns);
                let from = resource.path.to_string_lossy();
                Output {
                    path: format!("{dir}{}", resource.rel),
                    fingerprint: fingerprint(site_fp, &["resource", &from, &stat]),
                    kind: Kind::Resource(i, r),
                }
            })
    })
}

/// What a feed document shows besides its entries: its path, format, feed and history.
fn document_parts(doc: &Document) -> Vec<&str> {
    let mut parts: Vec<&str> = vec!["feed", &doc.path, doc.format.file_name()];
    match &doc.scope {
        Scope::Site => parts.push("site"),
        Scope::Tag { name, .. } => parts.extend(["tag", name]),
        Scope::Category { name, .. } => parts.extend(["category", name]),
    }
    match &doc.history {
        History::Complete => parts.push("complete"),
        History::Partial => parts.push("partial"),
        History::Subscription { prev_archive } => parts.extend(["subscription", prev_archive]),
        History::Archive {
            current,
            prev_archive,
            next_archive,
        } => parts.extend([
            "archive",
            current,
            prev_archive.as_deref().unwrap_or("-"),
            next_archive.as_deref().unwrap_or("-"),
        ]),
    }
    parts
}

/// The categories and tags the index links, (name, is_category), in the plan's order.
fn index_terms(docs: &[Document]) -> Vec<(String, bool)> {
    docs.iter()
        .filter(|d| d.format == Format::Rss)
        .filter_map(|d| match &d.scope {
            Scope::Category { name, .. } => Some((name.clone(), true)),
            Scope::Tag { name, .. } => Some((name.clone(), false)),
            Scope::Site => None,
        })
        .collect()
}

/// With no `permalink_prefix`, an issue's folder sits beside the site's own files: a slug equal
/// to one of their names is refused. Returns the name it clashes with.
pub(super) fn reserved_clash(config: &Config, slug: &str) -> Option<&'static str> {
    if !config.site.permalink_prefix.is_empty() {
        return None;
    }
    [
        archive::INDEX_FILE,
        archive::CSS_FILE,
        feed::STYLESHEET_FILE,
        "rss.xml",
        "atom.xml",
        "feed.json",
    ]
    .into_iter()
    .find(|name| *name == slug)
}

/// The fingerprint of everything every output depends on besides the issues: the manifest
/// format, the feedpost binary (size and modification time: a new build of feedpost may render
/// differently), the `[site]` config, and the web templates.
pub(super) fn site_fingerprint(config: &Config) -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| format!("{} {}", m.len(), mtime_ns(&m)))
        .unwrap_or_default();
    let site = format!("{:?}", config.site);
    fingerprint(
        "",
        &[
            &manifest::FORMAT.to_string(),
            env!("CARGO_PKG_VERSION"),
            &exe,
            &site,
            archive::LAYOUT_SOURCE,
            archive::CSS,
            feed::STYLESHEET,
        ],
    )
}

/// SHA-256 of `parts` (each length-prefixed, so part boundaries count), first 128 bits in hex.
pub(super) fn fingerprint(site: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in std::iter::once(&site).chain(parts) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(
            fingerprint("s", &["ab", "c"]),
            fingerprint("s", &["a", "bc"])
        );
        assert_ne!(fingerprint("s", &["a"]), fingerprint("t", &["a"]));
        assert_eq!(fingerprint("s", &["a"]).len(), 32);
    }
}
