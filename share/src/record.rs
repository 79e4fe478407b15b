//! The records of a repository (`docs/sharing.md`): [`RepositoryInfo`] at the top
//! (`buildit-repository.json`) and one signed [`PathRecord`] per store path
//! (`<hashpart>.info`), naming the path's compressed canonical archive
//! (`archives/<blake3 of the compressed bytes>.tar.zst`).

use std::collections::BTreeSet;

use buildit_store::{ContentHash, StorePath};
use serde::{Deserialize, Serialize};

/// The key of the top-level record.
pub const REPOSITORY_INFO_KEY: &str = "buildit-repository.json";

/// The top-level record of a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryInfo {
    /// The record format version; this code writes and reads 1.
    pub format: u32,
    /// The logical store directory the paths live in (`/bld/store`).
    pub store_dir: String,
    /// Lower is tried first when several repositories have a path.
    pub priority: u32,
}

/// What a repository knows of one store path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRecord {
    pub path: StorePath,
    /// blake3 of the canonical archive (the store's content hash).
    pub content_hash: ContentHash,
    /// Bytes of the canonical archive, uncompressed.
    pub size: u64,
    pub references: BTreeSet<StorePath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deriver: Option<StorePath>,
    /// How the path follows from its content (`buildit_store::ContentAddress::render`), when
    /// it is content-addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The key of the compressed archive: `archives/<archive_hash>.tar.zst`.
    pub archive: String,
    /// blake3 (hex) of the compressed archive's bytes.
    pub archive_hash: String,
    /// Bytes of the compressed archive.
    pub archive_size: u64,
    /// `zstd`.
    pub compression: String,
    /// `KEYNAME:base64(ed25519 signature over the fingerprint)`.
    #[serde(default)]
    pub signatures: Vec<String>,
}

/// The key of a path's record: `<hashpart>.info`.
pub fn record_key(path: &StorePath) -> String {
    format!("{}.info", path.hash_part())
}
