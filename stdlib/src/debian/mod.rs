//! Debian 12 binary packages as exact, pinned inputs: apt index parsing ([`index`]), dpkg
//! version ordering ([`version`]), dependency-closure resolution ([`resolve`]) and the lock
//! file ([`lock`]) that `buildit debian lock` writes and the package set reads.

pub mod index;
pub mod lock;
pub mod resolve;
pub mod version;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use index::{apt_index_files, Index, IndexFile, Package, DEFAULT_LISTS_DIR};
pub use lock::{read_lock, render_lock, write_lock, Lock, LockEntry, LOCK_VERSION};
pub use resolve::{parse_depends, resolve, resolve_for, Dep, Relation};
pub use version::compare_versions;

/// Errors of index reading, resolution and lock files.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no apt package index for suite '{suite}' ({arch}) in {dir}")]
    NoIndexes {
        dir: PathBuf,
        suite: String,
        arch: String,
    },
    #[error("unknown Debian package '{name}'{}", did_you_mean(.suggestions))]
    UnknownPackage {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("package '{name}' has no version {version} in the indexes (available: {})", if .available.is_empty() { "none".to_string() } else { .available.join(", ") })]
    NoSuchVersion {
        name: String,
        version: String,
        available: Vec<String>,
    },
    #[error("cannot satisfy the dependency '{dependency}' of {}", .chain.join(" → "))]
    Unsatisfiable {
        chain: Vec<String>,
        dependency: String,
    },
    #[error("{path}: not a buildit Debian lock: {why}")]
    BadLock { path: PathBuf, why: String },
}

fn did_you_mean(s: &[String]) -> String {
    match s {
        [] => String::new(),
        [one] => format!(" (did you mean '{one}'?)"),
        many => format!(" (did you mean one of: {}?)", many.join(", ")),
    }
}
