//! `buildit-debian`: Debian 12 binary packages as exact, pinned inputs, in one crate: the
//! deb822 stanza parser every Debian file goes through ([`stanza`]), the apt configuration
//! (sources, Debian mirrors, private apt roots: [`apt`]), apt's package indexes ([`index`]),
//! dpkg version ordering ([`version`]), dependency-closure resolution ([`resolve`]), the lock
//! file ([`lock`]) that `buildit debian lock` writes ([`locking`]) and the package set reads,
//! newer versions of locked packages and security-only re-locking ([`updates`]),
//! unpacking `.deb` files into a tree ([`unpack`], the body of `builtin:unpack-deb`), and
//! Debian source packages: `Sources` indexes and `.dsc` files ([`sources`]) and their
//! `[[source]]` tables in the lock ([`source_lock`]), unpacked as dpkg-source does
//! ([`source_unpack`]).
//!
//! The crate knows neither the store nor the builder: the builtin builder that unpacks is
//! registered by the front end, which hands [`unpack::builtin_unpack_deb`] the host paths of
//! the build's inputs.

pub mod apt;
pub mod index;
pub mod lock;
pub mod locking;
pub mod resolve;
pub mod source_lock;
pub mod source_unpack;
pub mod sources;
pub mod stanza;
pub mod unpack;
pub mod updates;
pub mod version;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use apt::{debian_mirrors, setup_apt_root, setup_source_apt_root, AptSource, DEFAULT_APT_ROOT};
pub use index::{apt_index_files, Index, IndexFile, Package, DEFAULT_LISTS_DIR};
pub use lock::{read_lock, render_lock, write_lock, Lock, LockEntry, LOCK_VERSION};
pub use locking::{make_lock, LockRequest, LockSummary};
pub use resolve::{parse_depends, resolve, resolve_for, Dep, Relation};
pub use version::compare_versions;

/// Errors of the apt configuration, index reading, resolution and lock files.
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
    #[error("{path}: not an apt package index: {why}")]
    BadIndex { path: PathBuf, why: String },
    #[error("no apt Sources index for suite '{suite}' in {dir}")]
    NoSourceIndexes { dir: PathBuf, suite: String },
    #[error("{name}: not a Debian source control file (.dsc): {why}")]
    BadDsc { name: String, why: String },
    #[error("{file}: does not match the .dsc (want {want}, got {got}); refused")]
    SourceFileMismatch {
        file: String,
        want: String,
        got: String,
    },
    #[error("{dsc}: {why}")]
    SourceFormat { dsc: String, why: String },
    #[error(transparent)]
    Unpack(#[from] crate::unpack::DebError),
    #[error("no packages to lock")]
    NoPackages,
    #[error("no packages named and no lock to refresh at {path}")]
    NoLockToRefresh { path: PathBuf },
    #[error("reading the apt configuration {path}: {source}")]
    AptConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an apt sources file: {why}")]
    BadSources { path: PathBuf, why: String },
    #[error("the apt configuration in {apt_config} names no Debian mirror")]
    NoMirror { apt_config: PathBuf },
    #[error("{what} in {root}: {source}")]
    AptRoot {
        root: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run apt-get: {source}")]
    AptGetSpawn {
        #[source]
        source: std::io::Error,
    },
    #[error("apt-get update in {root} failed:\n{stderr}")]
    AptGet { root: PathBuf, stderr: String },
    #[error("the security update of {package} to {version} needs '{dependency}', which the lock cannot satisfy without other updates")]
    SecurityUpdateConflict {
        package: String,
        version: String,
        dependency: String,
    },
}

fn did_you_mean(s: &[String]) -> String {
    match s {
        [] => String::new(),
        [one] => format!(" (did you mean '{one}'?)"),
        many => format!(" (did you mean one of: {}?)", many.join(", ")),
    }
}
