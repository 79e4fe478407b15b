//! Debian source packages for commands: the `Sources` indexes to read (a private apt root's,
//! fetched first with `--update`, or the machine's lists), `buildit search --debian`'s hits
//! ([`search`]) and `buildit debian lock --source`'s entries ([`lock_sources`]). The work is
//! `buildit_debian::sources`; this module chooses the indexes.

use std::path::{Path, PathBuf};

use buildit_debian::source_lock::SourceLockEntry;
use buildit_debian::sources::{apt_sources_files, SourceIndex};
use buildit_debian::{setup_source_apt_root, DEFAULT_APT_ROOT, DEFAULT_LISTS_DIR};

use crate::error::Result;

/// Where the `Sources` indexes come from.
#[derive(Clone, Debug)]
pub struct SourceIndexes {
    /// A private apt root (its `var/lib/apt/lists`); the machine's lists when absent.
    pub apt_root: Option<PathBuf>,
    /// Write the root's `deb` + `deb-src` sources and run `apt-get update` in it first.
    pub update: bool,
    /// The Debian release (with its `-updates` and `-security` suites).
    pub suite: String,
    pub arch: String,
}

impl SourceIndexes {
    /// Load the indexes (updating the private root first when asked).
    pub fn load(&self) -> Result<SourceIndex> {
        let lists = match &self.apt_root {
            Some(root) => {
                if self.update {
                    setup_source_apt_root(
                        root,
                        Path::new(DEFAULT_APT_ROOT),
                        &self.suite,
                        &self.arch,
                    )?;
                }
                root.join("var/lib/apt/lists")
            }
            None => PathBuf::from(DEFAULT_LISTS_DIR),
        };
        let files = apt_sources_files(&lists, &self.suite)?;
        Ok(SourceIndex::load(&files)?)
    }
}

/// One hit of `buildit search --debian`: a source package, its versions (newest first), the
/// binaries of the newest one.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SourceHit {
    pub name: String,
    pub versions: Vec<String>,
    pub format: String,
    pub binaries: Vec<String>,
}

/// The source packages whose names contain `query` (case-insensitive), sorted by name.
pub fn search(index: &SourceIndex, query: &str) -> Vec<SourceHit> {
    index
        .search(query)
        .into_iter()
        .filter_map(|name| {
            let versions = index.versions(name);
            let newest = versions.first()?;
            Some(SourceHit {
                name: name.to_string(),
                versions: versions.iter().map(|p| p.version.clone()).collect(),
                format: newest.format.clone(),
                binaries: newest.binaries.clone(),
            })
        })
        .collect()
}

/// The lock entries of `specs` (`NAME` or `NAME=VERSION`; the newest version without one).
pub fn lock_sources(index: &SourceIndex, specs: &[String]) -> Result<Vec<SourceLockEntry>> {
    let mut out = Vec::new();
    for spec in specs {
        let (name, version) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec.as_str(), None),
        };
        let p = index.find(name, version)?;
        if let Some(e) = SourceLockEntry::from_index(p) {
            out.push(e);
        }
    }
    Ok(out)
}
