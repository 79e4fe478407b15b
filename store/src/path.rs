//! Store paths: `/bld/store/<hash>-<name>` with a 32-character nix-base32 hash part (160 bits of
//! blake3 over a typed fingerprint) and a validated name. The fingerprints are typed
//! (`output:`, `source:`, `fixed:`, `text:`) so that no two kinds of object can ever collide,
//! and every one includes the logical store directory, so a store at another directory gives other
//! paths (binary repositories share the default one).

use std::fmt;

/// The default logical store directory: part of every path's hash.
pub const STORE_DIR: &str = "/bld/store";

/// Length of a store path's hash part in characters (160 bits in base32).
pub const HASH_PART_LEN: usize = 32;

/// Longest accepted name (the whole file name stays under 255 bytes with the hash and `.drv`).
pub const MAX_NAME_LEN: usize = 211;

/// Nix's base32 alphabet (no e, o, t, u), kept so store paths look familiar.
const BASE32_CHARS: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Why a store path or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("store path name is empty")]
    EmptyName,
    #[error("store path name '{0}' is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    #[error("store path name '{0}' starts with '.'")]
    LeadingDot(String),
    #[error("store path name '{name}' contains the character {ch:?}, which is not allowed (allowed: letters, digits and + - . _ ? =)")]
    BadNameChar { name: String, ch: char },
    #[error("'{0}' is not in the store directory {STORE_DIR}")]
    NotInStore(String),
    #[error("'{0}' is not a store path: expected {STORE_DIR}/<32-character hash>-<name>")]
    Malformed(String),
}

/// Check a store object name: non-empty, at most [`MAX_NAME_LEN`] bytes, no leading `.`, only
/// `[A-Za-z0-9+\-._?=]`.
pub fn validate_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(PathError::NameTooLong(name.to_string()));
    }
    if name.starts_with('.') {
        return Err(PathError::LeadingDot(name.to_string()));
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c)))
    {
        return Err(PathError::BadNameChar {
            name: name.to_string(),
            ch,
        });
    }
    Ok(())
}

/// A store path, stored as its hash part and name; the logical directory is [`STORE_DIR`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    hash: String,
    name: String,
}

impl StorePath {
    /// Build from a 20-byte digest prefix and a name.
    pub fn from_digest(digest: &[u8; 20], name: &str) -> Result<StorePath, PathError> {
        validate_name(name)?;
        Ok(StorePath {
            hash: base32_encode(digest),
            name: name.to_string(),
        })
    }

    /// The path whose hash part is the first 160 bits of blake3(`fingerprint`).
    pub fn from_fingerprint(fingerprint: &str, name: &str) -> Result<StorePath, PathError> {
        let full = blake3::hash(fingerprint.as_bytes());
        let mut d = [0u8; 20];
        d.copy_from_slice(&full.as_bytes()[..20]);
        StorePath::from_digest(&d, name)
    }

    /// Parse `/bld/store/<hash>-<name>` (a trailing sub-path is refused; see [`Self::parse_prefix`]).
    pub fn parse(s: &str) -> Result<StorePath, PathError> {
        let rest = s
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| PathError::NotInStore(s.to_string()))?;
        StorePath::parse_base_name(rest).map_err(|e| match e {
            PathError::Malformed(_) => PathError::Malformed(s.to_string()),
            other => other,
        })
    }

    /// Parse `<hash>-<name>` (a directory entry of the store).
    pub fn parse_base_name(base: &str) -> Result<StorePath, PathError> {
        let bytes = base.as_bytes();
        if bytes.len() < HASH_PART_LEN + 2
            || bytes[HASH_PART_LEN] != b'-'
            || !bytes[..HASH_PART_LEN]
                .iter()
                .all(|b| BASE32_CHARS.contains(b))
        {
            return Err(PathError::Malformed(base.to_string()));
        }
        let name = &base[HASH_PART_LEN + 1..];
        validate_name(name)?;
        Ok(StorePath {
            hash: base[..HASH_PART_LEN].to_string(),
            name: name.to_string(),
        })
    }

    /// Split `/bld/store/<hash>-<name>/sub/path` into the store path and the rest (`""` or `/sub/path`).
    pub fn parse_prefix(s: &str) -> Result<(StorePath, &str), PathError> {
        let rest = s
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| PathError::NotInStore(s.to_string()))?;
        let end = rest.find('/').unwrap_or(rest.len());
        let sp = StorePath::parse_base_name(&rest[..end])?;
        Ok((sp, &rest[end..]))
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> &str {
        &self.hash
    }

    /// The name after the hash.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`: the entry under the store directory.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    /// Whether this is a derivation file (`*.drv`).
    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }

    /// The path of an output of a derivation whose (modulo) hash is `drv_hash`: fingerprint
    /// `output:<output>:<drv hash hex>:<store dir>:<name>`. Outputs other than `out` get
    /// `<name>-<output>` as their name, like Nix.
    pub fn for_output(
        drv_hash: &[u8; 32],
        output: &str,
        drv_name: &str,
    ) -> Result<StorePath, PathError> {
        let name = output_path_name(drv_name, output);
        let fp = format!(
            "output:{output}:{}:{STORE_DIR}:{name}",
            hex::encode(drv_hash)
        );
        StorePath::from_fingerprint(&fp, &name)
    }

    /// The path of a source object (added file tree, `.drv` file, `toFile` text): fingerprint
    /// `source:<content hash hex>:<sorted references>:<store dir>:<name>`. A self-reference is
    /// recorded as `self`.
    pub fn for_source(
        content_hash: &[u8; 32],
        references: &[StorePath],
        self_ref: bool,
        name: &str,
    ) -> Result<StorePath, PathError> {
        let mut refs: Vec<String> = references.iter().map(|r| r.to_string()).collect();
        refs.sort();
        refs.dedup();
        if self_ref {
            refs.push("self".into());
        }
        let fp = format!(
            "source:{}:{}:{STORE_DIR}:{name}",
            hex::encode(content_hash),
            refs.join(",")
        );
        StorePath::from_fingerprint(&fp, name)
    }

    /// The path of a fixed-output derivation's result: fingerprint
    /// `fixed:<mode>:<algo>:<hash hex>:<store dir>:<name>`; it depends only on the declared hash,
    /// never on how the content is fetched.
    pub fn for_fixed(
        mode: &str,
        algo: &str,
        hash: &[u8],
        name: &str,
    ) -> Result<StorePath, PathError> {
        let fp = format!(
            "fixed:{mode}:{algo}:{}:{STORE_DIR}:{name}",
            hex::encode(hash)
        );
        StorePath::from_fingerprint(&fp, name)
    }
}

/// The store object name of output `output` of derivation `name`.
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_string()
    } else {
        format!("{drv_name}-{output}")
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash, self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

impl serde::Serialize for StorePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StorePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StorePath, D::Error> {
        let s = String::deserialize(d)?;
        StorePath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// nix-base32 of `bytes` (Nix's bit order: the last character holds the first bits), so a
/// 20-byte digest gives 32 characters and a 32-byte one 52.
pub fn base32_encode(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = bytes[i] as u16 >> j;
        let hi = if i + 1 < bytes.len() {
            (bytes[i + 1] as u16) << (8 - j)
        } else {
            0
        };
        out.push(BASE32_CHARS[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

/// Decode nix-base32 into `len` bytes; `None` when the text is not valid for that length.
pub fn base32_decode(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != (len * 8).div_ceil(5) {
        return None;
    }
    let mut out = vec![0u8; len];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = BASE32_CHARS.iter().position(|&x| x == c)? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (digit << j) as u8;
        let carry = (digit << j) >> 8;
        if i + 1 < len {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("hello-2.10").is_ok());
        assert_eq!(validate_name(""), Err(PathError::EmptyName));
        assert!(matches!(
            validate_name(".hidden"),
            Err(PathError::LeadingDot(_))
        ));
        assert!(matches!(
            validate_name("a/b"),
            Err(PathError::BadNameChar { ch: '/', .. })
        ));
        assert!(matches!(
            validate_name(&"x".repeat(212)),
            Err(PathError::NameTooLong(_))
        ));
    }

    #[test]
    fn base32_round_trips_and_matches_nix() {
        // nix-hash --type sha256 --to-base32 of the sha256 of "" (a known Nix value).
        let digest =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .expect("hex");
        assert_eq!(
            base32_encode(&digest),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        for len in [1usize, 20, 32] {
            let bytes: Vec<u8> = (0..len as u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(11))
                .collect();
            assert_eq!(base32_decode(&base32_encode(&bytes), len), Some(bytes));
        }
    }

    #[test]
    fn paths_parse_and_print() {
        let p = StorePath::from_fingerprint("source:x", "hello").expect("valid");
        assert_eq!(p.hash_part().len(), HASH_PART_LEN);
        let s = p.to_string();
        assert_eq!(StorePath::parse(&s), Ok(p.clone()));
        let full = format!("{s}/bin/hello");
        let (q, rest) = StorePath::parse_prefix(&full).expect("prefix");
        assert_eq!((q, rest), (p, "/bin/hello"));
        assert!(matches!(
            StorePath::parse("/nix/store/abc-x"),
            Err(PathError::NotInStore(_))
        ));
        assert!(matches!(
            StorePath::parse("/bld/store/short-x"),
            Err(PathError::Malformed(_))
        ));
    }
}
