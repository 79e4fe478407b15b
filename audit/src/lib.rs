//! `buildit audit`'s library: the packages of an image's closure matched against
//! vulnerability advisories in OSV format, with no build and no network.
//!
//! - [`osv`]: the OSV records as this crate reads them, and loading them from a JSON file, a
//!   JSON-lines file, a zip of JSON files (osv.dev's per-ecosystem `all.zip`) or a directory of
//!   those, every input bounded ([`Limits`]).
//! - [`index`]: the advisories indexed by what a package is matched by (ecosystem and name,
//!   purl, CPE), kept in an SQLite file beside the cache and rebuilt only when the advisory
//!   files change.
//! - [`range`]: whether a version is in an OSV `affected` entry (ECOSYSTEM ranges with dpkg's
//!   order for Debian, SEMVER ranges, `versions` lists) and the version that fixes it.
//! - [`severity`]: a qualitative severity from CVSS vectors (v3.x, v4) or a database's rating.
//! - [`matching`]: [`Package`] (what the driver found in the closure), [`Finding`], [`audit`].
//! - [`vex`]: OpenVEX statements read (suppressions with their reason) and written.
//! - [`sarif`]: SARIF 2.1.0 of a report.
//!
//! The crate reads no clock and no environment and prints nothing: the driver passes the
//! time a VEX document is stamped with, and `cli` renders the [`Report`].

pub mod index;
pub mod matching;
pub mod osv;
pub mod range;
pub mod sarif;
pub mod severity;
pub mod vex;

use std::path::PathBuf;

pub use index::Index;
pub use matching::{audit, Finding, Origin, Package, Report, Suppression};
pub use severity::Severity;

/// How much of the advisory input is read before it is refused as hostile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest single advisory (a `.json` file, a zip entry, a JSON line), in bytes.
    pub record_bytes: u64,
    /// The most advisories in one input.
    pub records: u64,
    /// The most bytes read from one input in all (zip entries uncompressed).
    pub total_bytes: u64,
    /// The most files a directory input may hold (all levels).
    pub files: u64,
    /// How deep a directory input may nest.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            record_bytes: 8 << 20,
            records: 5_000_000,
            total_bytes: 32 << 30,
            files: 2_000_000,
            depth: 8,
        }
    }
}

/// Every failure of the audit library.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An advisory that is not an OSV record (bad JSON, too deep, wrong shape).
    #[error("{place}: not an OSV advisory: {why}")]
    BadAdvisory { place: String, why: String },
    /// An input over one of the [`Limits`].
    #[error("{place}: {why}")]
    TooLarge { place: String, why: String },
    /// A path that holds no advisories this crate reads.
    #[error("{path}: {why}")]
    NotAdvisories { path: PathBuf, why: String },
    #[error("the advisory index {path}: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// An OpenVEX document that cannot be read.
    #[error("{path}: not an OpenVEX document: {why}")]
    BadVex { path: PathBuf, why: String },
}

/// The crate's result type.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;
