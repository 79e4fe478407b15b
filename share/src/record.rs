//! The records of a repository (`docs/sharing.md`): [`RepositoryInfo`] at the top
//! (`buildit-repository.json`) and one signed [`PathRecord`] per store path
//! (`<hashpart>.info`), naming the path's compressed canonical archive
//! (`archives/<blake3 of the compressed bytes>.tar.zst`).
//!
//! Records come from repositories we do not control, so parsing is strict and bounded: a
//! size limit, unknown fields refused, every field checked for shape (store paths in this
//! store directory, 64-hex digests, the archive key derived from its digest, a known
//! compression, a known content address, well-formed signatures), and [`PathRecord::parse_for`]
//! refuses a record that describes another path than the one asked for.

use std::collections::BTreeSet;

use buildit_store::{ContentAddress, ContentHash, StorePath, STORE_DIR};
use serde::{Deserialize, Serialize};

use crate::ShareError;

/// The key of the top-level record.
pub const REPOSITORY_INFO_KEY: &str = "buildit-repository.json";

/// The record format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first field of every fingerprint: the version of the signed text.
pub const FINGERPRINT_VERSION: &str = "buildit-path-1";

/// The only compression of archives.
pub const COMPRESSION_ZSTD: &str = "zstd";

/// Largest record accepted (a record is a few hundred bytes plus its references).
pub const RECORD_LIMIT: u64 = 1 << 20;

/// Most signatures one record may carry.
pub const MAX_SIGNATURES: usize = 64;

/// Most references one record may list.
pub const MAX_REFERENCES: usize = 10_000;

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

impl RepositoryInfo {
    /// The record this code writes into a new repository: format 1, this store directory.
    pub fn new(priority: u32) -> RepositoryInfo {
        RepositoryInfo {
            format: FORMAT_VERSION,
            store_dir: STORE_DIR.to_string(),
            priority,
        }
    }

    /// Parse `buildit-repository.json`: at most [`RECORD_LIMIT`] bytes, format 1, and the
    /// store directory of this store (paths of another store directory are other paths).
    pub fn parse(bytes: &[u8]) -> Result<RepositoryInfo, ShareError> {
        let bad = |reason: String| ShareError::BadRecord {
            what: REPOSITORY_INFO_KEY.to_string(),
            reason,
        };
        if bytes.len() as u64 > RECORD_LIMIT {
            return Err(bad(format!("it is larger than {RECORD_LIMIT} bytes")));
        }
        let info: RepositoryInfo = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if info.format != FORMAT_VERSION {
            return Err(bad(format!(
                "format {} is not the format this buildit reads ({FORMAT_VERSION})",
                info.format
            )));
        }
        if info.store_dir != STORE_DIR {
            return Err(bad(format!(
                "its paths are in the store directory '{}', not {STORE_DIR}",
                info.store_dir
            )));
        }
        Ok(info)
    }

    /// The record as written: pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
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

/// The key of a compressed archive whose bytes have blake3 `archive_hash` (hex).
pub fn archive_key(archive_hash: &str) -> String {
    format!("archives/{archive_hash}.tar.zst")
}

impl PathRecord {
    /// The text a signature covers, one line with `;` between fields:
    ///
    /// `buildit-path-1;<store path>;<content hash hex>;<size>;<references>;<ca>`
    ///
    /// where `<references>` are the full store paths, sorted, joined by `,` (empty for none)
    /// and `<ca>` is the content address text or empty. No field can contain `;` or `,`
    /// (store path names and content addresses do not allow them), so the text is
    /// unambiguous. The archive's key, digest, size and compression are not covered: the
    /// archive is checked against the signed content hash and size after decompression, so
    /// a substituted archive is refused anyway. The deriver is not covered either: it is
    /// informational and never trusted for anything.
    pub fn fingerprint(&self) -> String {
        let refs: Vec<String> = self.references.iter().map(|r| r.to_string()).collect();
        format!(
            "{FINGERPRINT_VERSION};{};{};{};{};{}",
            self.path,
            self.content_hash.to_hex(),
            self.size,
            refs.join(","),
            self.ca.as_deref().unwrap_or("")
        )
    }

    /// Parse and check a record: at most [`RECORD_LIMIT`] bytes of JSON with exactly the
    /// fields of [`PathRecord`]; paths in this store directory; the archive key
    /// `archives/<archive_hash>.tar.zst` with a 64-hex `archive_hash`; compression `zstd`;
    /// a known content address when one is given; at most [`MAX_REFERENCES`] references and
    /// [`MAX_SIGNATURES`] signatures, each `NAME:base64(64 bytes)`.
    pub fn parse(bytes: &[u8]) -> Result<PathRecord, ShareError> {
        let what = "path record".to_string();
        PathRecord::parse_named(&what, bytes)
    }

    /// [`PathRecord::parse`] of the record fetched for `path`: a record that describes any
    /// other path is refused.
    pub fn parse_for(path: &StorePath, bytes: &[u8]) -> Result<PathRecord, ShareError> {
        let what = format!("{} (record of {path})", record_key(path));
        let r = PathRecord::parse_named(&what, bytes)?;
        if r.path != *path {
            return Err(ShareError::BadRecord {
                what,
                reason: format!("it describes {}, not the path asked for", r.path),
            });
        }
        Ok(r)
    }

    fn parse_named(what: &str, bytes: &[u8]) -> Result<PathRecord, ShareError> {
        let bad = |reason: String| ShareError::BadRecord {
            what: what.to_string(),
            reason,
        };
        if bytes.len() as u64 > RECORD_LIMIT {
            return Err(bad(format!("it is larger than {RECORD_LIMIT} bytes")));
        }
        let r: PathRecord = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        r.check().map_err(bad)?;
        Ok(r)
    }

    /// The shape checks of [`PathRecord::parse`], as a reason when one fails.
    fn check(&self) -> Result<(), String> {
        if self.archive_hash.len() != 64
            || !self
                .archive_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "archiveHash '{}' is not 64 lowercase hex digits",
                self.archive_hash
            ));
        }
        let expected = archive_key(&self.archive_hash);
        if self.archive != expected {
            return Err(format!(
                "archive '{}' is not the key of its digest ('{expected}')",
                self.archive
            ));
        }
        if self.compression != COMPRESSION_ZSTD {
            return Err(format!(
                "compression '{}' is not supported (only {COMPRESSION_ZSTD})",
                self.compression
            ));
        }
        if let Some(ca) = &self.ca {
            if ContentAddress::parse(ca).is_none() {
                return Err(format!("unknown content address '{ca}'"));
            }
        }
        if self.references.len() > MAX_REFERENCES {
            return Err(format!(
                "it lists {} references (at most {MAX_REFERENCES})",
                self.references.len()
            ));
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(format!(
                "it carries {} signatures (at most {MAX_SIGNATURES})",
                self.signatures.len()
            ));
        }
        for s in &self.signatures {
            crate::keys::parse_signature(s)?;
        }
        Ok(())
    }

    /// The record as written: pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(hash_char: char, name: &str) -> StorePath {
        let s = format!("{STORE_DIR}/{}-{name}", hash_char.to_string().repeat(32));
        StorePath::parse(&s).expect("test path")
    }

    fn sample() -> PathRecord {
        let h = "ab".repeat(32);
        PathRecord {
            path: sp('a', "hello"),
            content_hash: ContentHash([7; 32]),
            size: 1024,
            references: [sp('c', "lib"), sp('b', "dep")].into_iter().collect(),
            deriver: Some(sp('d', "hello.drv")),
            ca: None,
            archive: archive_key(&h),
            archive_hash: h,
            archive_size: 300,
            compression: "zstd".into(),
            signatures: vec![],
        }
    }

    #[test]
    fn fingerprint_is_the_documented_text() {
        let r = sample();
        assert_eq!(
            r.fingerprint(),
            format!(
                "buildit-path-1;{STORE_DIR}/{}-hello;{};1024;{STORE_DIR}/{}-dep,{STORE_DIR}/{}-lib;",
                "a".repeat(32),
                "07".repeat(32),
                "b".repeat(32),
                "c".repeat(32)
            )
        );
        let mut ca = r.clone();
        ca.ca = Some("source".into());
        assert!(ca.fingerprint().ends_with(";source"));
        let mut none = r;
        none.references.clear();
        assert!(none.fingerprint().ends_with(";1024;;"));
    }

    #[test]
    fn round_trip_and_parse_for() {
        let r = sample();
        let bytes = r.to_json();
        assert_eq!(PathRecord::parse(&bytes).expect("parses"), r);
        assert_eq!(PathRecord::parse_for(&r.path, &bytes).expect("parses"), r);
        let other = sp('f', "hello");
        let e = PathRecord::parse_for(&other, &bytes).expect_err("another path");
        assert!(e.to_string().contains("not the path asked for"), "{e}");
    }

    fn refused(edit: impl Fn(&mut serde_json::Value), needle: &str) {
        let mut v = serde_json::to_value(sample()).expect("json");
        edit(&mut v);
        let bytes = serde_json::to_vec(&v).expect("json");
        let e = PathRecord::parse(&bytes).expect_err("must be refused");
        assert!(
            matches!(e, ShareError::BadRecord { .. }),
            "not a BadRecord: {e}"
        );
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }

    #[test]
    fn hostile_records_are_refused() {
        refused(
            |v| v["archive"] = "archives/../../etc/passwd".into(),
            "not the key of its digest",
        );
        refused(|v| v["archiveHash"] = "AB".repeat(32).into(), "hex digits");
        refused(|v| v["archiveHash"] = "ab".into(), "hex digits");
        refused(|v| v["compression"] = "xz".into(), "not supported");
        refused(|v| v["ca"] = "fixed:flat:md5:00".into(), "content address");
        refused(
            |v| v["path"] = format!("/nix/store/{}-hello", "a".repeat(32)).into(),
            "store directory",
        );
        refused(|v| v["extra"] = 1.into(), "unknown field");
        refused(|v| v["size"] = (-1).into(), "invalid value");
        refused(|v| v["signatures"] = vec!["k:AAAA"].into(), "signature");
        refused(
            |v| v["signatures"] = vec![format!("k:{}", "A".repeat(86)); 65].into(),
            "at most 64",
        );
        let big = vec![b' '; RECORD_LIMIT as usize + 1];
        let e = PathRecord::parse(&big).expect_err("too big");
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(PathRecord::parse(b"").is_err());
        assert!(PathRecord::parse(b"\xff\xfe").is_err());
    }

    #[test]
    fn repository_info() {
        let i = RepositoryInfo::new(40);
        assert_eq!(RepositoryInfo::parse(&i.to_json()).expect("parses"), i);
        let other = br#"{"format":1,"storeDir":"/nix/store","priority":1}"#;
        let e = RepositoryInfo::parse(other).expect_err("other store dir");
        assert!(e.to_string().contains("/nix/store"), "{e}");
        let later = br#"{"format":2,"storeDir":"/bld/store","priority":1}"#;
        assert!(RepositoryInfo::parse(later).is_err());
        assert!(RepositoryInfo::parse(b"[]").is_err());
    }
}
