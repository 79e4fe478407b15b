//! `buildit-store`: everything about the store that is not the language and not the sandbox.
//!
//! - [`path`]: store paths (`/bld/store/<hash>-<name>`), name validation, the typed fingerprints
//!   that give a path its hash, and nix-base32.
//! - [`layout`]: where the logical store lives physically (`--store-root`, `BUILDIT_STORE_ROOT`,
//!   `/bld`, `$XDG_DATA_HOME/buildit`).
//! - [`derivation`]: derivations as plain data, their canonical versioned encoding and their
//!   hash modulo fixed outputs.
//!
//! - [`archive`]: the canonical archive (tar) of an object and its blake3 content hash; safe
//!   unpacking.
//! - [`refs`]: reference scanning (which candidate store paths an object mentions).
//! - [`normalise`]: normalisation of a new object (mtime 1, 0444/0555, no setuid, no xattrs).
//! - [`db`]: the SQLite database schema.
//! - [`store`]: [`Store`] — registration, locks, roots, GC, verification, export/import.
//!
//! The store knows nothing of the language: a derivation here is plain data.

pub mod archive;
mod copy;
pub mod db;
pub mod derivation;
pub mod layout;
pub mod normalise;
pub mod path;
pub mod refs;
pub mod store;

pub use archive::{content_hash, content_hash_of_bytes, ArchiveError, ArchiveStats, ContentHash};
pub use derivation::{Derivation, DerivationOutput};
pub use layout::StoreLayout;
pub use path::{StorePath, STORE_DIR};
pub use store::{
    ContentAddress, GcOptions, GcReport, ImportOptions, PathInfo, PathLock, Root, StagingDir,
    Store, StoreError, VerifyReport,
};
