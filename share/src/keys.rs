//! Signing keys and trust: ed25519 keys in Nix's text form (`NAME:base64(bytes)`), signing a
//! [`PathRecord`]'s fingerprint, and [`Trust`], the decision whether a record may be believed.
//!
//! A secret key's text is `NAME:base64(64 bytes)` (the 32-byte seed followed by the 32-byte
//! public key, as Nix writes them), a public key's `NAME:base64(32 bytes)`, a signature's
//! `NAME:base64(64 bytes)`. Names are `[A-Za-z0-9._-]`, at most [`MAX_KEY_NAME`] bytes; a
//! record's signature names the key that made it, so rotation is several trusted keys with
//! different names.
//!
//! Input-addressed paths (a build's outputs) need a signature: nothing about their content
//! proves which derivation produced them. Content-addressed paths do not: their path is
//! recomputed from the record's content hash and references (or from the fixed-output hash,
//! which the content is checked against), and the content hash is checked on arrival, so a
//! lying repository can only make the download fail ([`Trust::needs_signature`]).

use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use buildit_store::{ContentAddress, StorePath};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::record::PathRecord;
use crate::ShareError;

/// Longest key name.
pub const MAX_KEY_NAME: usize = 128;

/// Longest key or signature text read (a name, `:`, and the base64 of 64 bytes, with room).
const MAX_KEY_TEXT: usize = MAX_KEY_NAME + 1 + 128;

/// Check a key name: `[A-Za-z0-9._-]`, 1 to [`MAX_KEY_NAME`] bytes.
pub fn check_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_KEY_NAME {
        return Err(format!("a key name has 1 to {MAX_KEY_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "the key name '{}' contains {c:?} (allowed: letters, digits, '.', '_', '-')",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Split `NAME:BASE64` into the name and exactly `N` decoded bytes.
fn split_text<const N: usize>(text: &str) -> Result<(&str, [u8; N]), String> {
    if text.len() > MAX_KEY_TEXT {
        return Err(format!("it is longer than {MAX_KEY_TEXT} characters"));
    }
    let (name, data) = text
        .split_once(':')
        .ok_or_else(|| "expected NAME:BASE64".to_string())?;
    check_key_name(name)?;
    let bytes = B64
        .decode(data)
        .map_err(|e| format!("the part after '{name}:' is not base64: {e}"))?;
    let arr: [u8; N] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("expected {N} bytes after '{name}:', found {}", b.len()))?;
    Ok((name, arr))
}

/// Parse a signature `NAME:base64(64 bytes)` into the key name and the signature.
pub fn parse_signature(text: &str) -> Result<(&str, Signature), String> {
    let (name, bytes) =
        split_text::<64>(text).map_err(|e| format!("signature '{}': {e}", text.escape_debug()))?;
    Ok((name, Signature::from_bytes(&bytes)))
}

/// A named ed25519 signing key. Its bytes are wiped when it is dropped and never shown by
/// `Debug`.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate(name: &str) -> Result<SecretKey, ShareError> {
        check_key_name(name).map_err(|reason| ShareError::BadKeyText {
            kind: "secret",
            reason,
        })?;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| ShareError::BadKeyText {
            kind: "secret",
            reason: format!("no randomness from the operating system: {e}"),
        })?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    /// Parse `NAME:base64(seed ‖ public key)` (surrounding white space ignored); the public
    /// half must belong to the seed.
    pub fn parse(text: &str) -> Result<SecretKey, ShareError> {
        let bad = |reason: String| ShareError::BadKeyText {
            kind: "secret",
            reason,
        };
        let (name, mut bytes) = split_text::<64>(text.trim()).map_err(bad)?;
        let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| {
            bad(format!(
                "the public half of '{name}' does not match its seed"
            ))
        });
        bytes.fill(0);
        Ok(SecretKey {
            name: name.to_string(),
            key: key?,
        })
    }

    /// [`SecretKey::parse`] of a key file (`NAME.secret`).
    pub fn read_file(path: &Path) -> Result<SecretKey, ShareError> {
        SecretKey::parse(&read_key_file(path, "secret")?).map_err(|e| match e {
            ShareError::BadKeyText { kind, reason } => ShareError::BadKeyText {
                kind,
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// `NAME:base64(seed ‖ public key)`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.to_keypair_bytes()))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, with the same name.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// `NAME:base64(signature)` of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        format!(
            "{}:{}",
            self.name,
            B64.encode(self.key.sign(message).to_bytes())
        )
    }

    /// Sign `record`'s fingerprint, replacing any earlier signature under this key's name.
    pub fn sign_record(&self, record: &mut PathRecord) {
        let sig = self.sign(record.fingerprint().as_bytes());
        record
            .signatures
            .retain(|s| s.split_once(':').map(|(n, _)| n) != Some(self.name.as_str()));
        record.signatures.push(sig);
    }
}

/// Largest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// Read a key file: at most [`MAX_KEY_FILE`] bytes of UTF-8.
fn read_key_file(path: &Path, kind: &'static str) -> Result<String, ShareError> {
    let f = fs::File::open(path).map_err(|e| ShareError::io(path.display(), e))?;
    let mut text = String::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| ShareError::io(path.display(), e))?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(ShareError::BadKeyText {
            kind,
            reason: format!("{} is larger than {MAX_KEY_FILE} bytes", path.display()),
        });
    }
    Ok(text)
}

/// Write `key` as `DIR/NAME.secret` (mode 0600) and its public half as `DIR/NAME.pub`, each
/// one line; existing files are never overwritten (the secret is written first, so a clash
/// leaves nothing new behind). Returns the two paths.
pub fn write_key_files(dir: &Path, key: &SecretKey) -> Result<(PathBuf, PathBuf), ShareError> {
    let secret = dir.join(format!("{}.secret", key.name));
    let public = dir.join(format!("{}.pub", key.name));
    if public.exists() {
        return Err(ShareError::io(
            public.display(),
            io::Error::new(io::ErrorKind::AlreadyExists, "it exists already"),
        ));
    }
    let write = |path: &Path, mode: u32, text: String| -> Result<(), ShareError> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| ShareError::io(path.display(), e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(|e| ShareError::io(path.display(), e))
    };
    write(&secret, 0o600, key.to_text())?;
    if let Err(e) = write(&public, 0o644, key.public().to_text()) {
        let _ = fs::remove_file(&secret);
        return Err(e);
    }
    Ok((secret, public))
}

/// A named ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_text())
    }
}

impl PublicKey {
    /// Parse `NAME:base64(32 bytes)` (surrounding white space ignored); the bytes must be a
    /// valid, non-degenerate curve point.
    pub fn parse(text: &str) -> Result<PublicKey, ShareError> {
        let bad = |reason: String| ShareError::BadKeyText {
            kind: "public",
            reason,
        };
        let (name, bytes) = split_text::<32>(text.trim()).map_err(bad)?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| bad(format!("'{name}' is not an ed25519 public key")))?;
        if key.is_weak() {
            return Err(bad(format!("'{name}' is a weak (small-order) key")));
        }
        Ok(PublicKey {
            name: name.to_string(),
            key,
        })
    }

    /// [`PublicKey::parse`] of a key file (`NAME.pub`).
    pub fn read_file(path: &Path) -> Result<PublicKey, ShareError> {
        PublicKey::parse(&read_key_file(path, "public")?).map_err(|e| match e {
            ShareError::BadKeyText { kind, reason } => ShareError::BadKeyText {
                kind,
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// `NAME:base64(32 bytes)`.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.as_bytes()))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `signature` is this key's valid signature of `message` (strict verification:
    /// no malleable or small-order encodings).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify_strict(message, signature).is_ok()
    }

    fn same_key(&self, other: &PublicKey) -> bool {
        self.key == other.key
    }
}

/// Which keys are believed: a record is accepted when it carries a valid signature by a key
/// in `trusted` that is not in `revoked` (revocation is by key, whatever its name).
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub trusted: Vec<PublicKey>,
    pub revoked: Vec<PublicKey>,
}

impl Trust {
    /// Whether `record` needs a signature: `false` exactly when its path follows from what
    /// the download is checked against: the record's content address (`ca`) recomputes the
    /// path, or, without one, the path is the source path of the content hash and references
    /// or the blake3-recursive fixed output of the content hash (fixed outputs only without
    /// references, which their path does not cover). The caller must then check the content on
    /// arrival: the content hash always, and for a `fixed:` content address the declared
    /// fixed-output hash (`buildit_store::Store::import` does both).
    pub fn needs_signature(record: &PathRecord) -> bool {
        !content_addressed(record)
    }

    /// Whether `record` may be believed: a content-addressed record always
    /// ([`Trust::needs_signature`]), any other only with a valid signature by a trusted,
    /// non-revoked key ([`Trust::check_signatures`]).
    pub fn check(&self, record: &PathRecord) -> Result<(), ShareError> {
        if Trust::needs_signature(record) {
            self.check_signatures(record)
        } else {
            Ok(())
        }
    }

    /// Require a valid signature by a trusted, non-revoked key, whatever the path. When there
    /// is none the error says why, in this order: a trusted key's signature that does not
    /// verify ([`ShareError::BadSignature`]: the record was altered), a signature by a
    /// revoked key, valid or not ([`ShareError::Revoked`]), no signature ([`ShareError::Unsigned`]), only
    /// unknown keys ([`ShareError::Untrusted`]).
    pub fn check_signatures(&self, record: &PathRecord) -> Result<(), ShareError> {
        let path = &record.path;
        if record.signatures.is_empty() {
            return Err(ShareError::Unsigned { path: path.clone() });
        }
        let fp = record.fingerprint();
        let mut altered: Option<String> = None;
        let mut revoked: Option<String> = None;
        let mut unknown: Vec<String> = Vec::new();
        for text in &record.signatures {
            let Ok((name, sig)) = parse_signature(text) else {
                unknown.push(text.chars().take(MAX_KEY_NAME).collect());
                continue;
            };
            let mut known = false;
            for key in self.trusted.iter().chain(&self.revoked) {
                if key.name != name {
                    continue;
                }
                known = true;
                if self.revoked.iter().any(|r| r.same_key(key)) {
                    revoked.get_or_insert_with(|| name.to_string());
                } else if key.verify(fp.as_bytes(), &sig) {
                    return Ok(());
                } else {
                    altered.get_or_insert_with(|| name.to_string());
                }
            }
            if !known {
                unknown.push(name.to_string());
            }
        }
        if let Some(key) = altered {
            return Err(ShareError::BadSignature {
                path: path.clone(),
                key,
            });
        }
        if let Some(key) = revoked {
            return Err(ShareError::Revoked {
                path: path.clone(),
                key,
            });
        }
        unknown.sort();
        unknown.dedup();
        Err(ShareError::Untrusted {
            path: path.clone(),
            keys: unknown.join(", "),
        })
    }
}

/// Whether the record's path is recomputed from its content hash, references and content
/// address (see [`Trust::needs_signature`]). A fixed output's path does not cover
/// references, so a fixed-output record that lists any needs a signature.
fn content_addressed(r: &PathRecord) -> bool {
    let p = &r.path;
    let name = p.name();
    let source = || {
        let others: Vec<StorePath> = r.references.iter().filter(|x| *x != p).cloned().collect();
        StorePath::for_source(&r.content_hash.0, &others, r.references.contains(p), name)
            .is_ok_and(|q| q == *p)
    };
    let blake3_fixed = || {
        r.references.is_empty()
            && StorePath::for_fixed("recursive", "blake3", &r.content_hash.0, name)
                .is_ok_and(|q| q == *p)
    };
    match r.ca.as_deref().map(ContentAddress::parse) {
        None => source() || blake3_fixed(),
        Some(None) => false,
        Some(Some(ContentAddress::Source)) => source(),
        Some(Some(ContentAddress::Fixed(f))) => {
            r.references.is_empty()
                && StorePath::for_fixed(f.mode.name(), f.algo.name(), &f.hash, name)
                    .is_ok_and(|q| q == *p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_texts_round_trip() {
        let k = SecretKey::generate("repo.example-1").expect("key");
        let text = k.to_text();
        assert!(text.starts_with("repo.example-1:"));
        let back = SecretKey::parse(&format!("{text}\n")).expect("parses");
        assert_eq!(back.public(), k.public());
        let pubtext = k.public().to_text();
        assert_eq!(PublicKey::parse(&pubtext).expect("parses"), k.public());
        assert!(!format!("{k:?}").contains(&text[15..]));
    }

    #[test]
    fn bad_key_texts() {
        let k = SecretKey::generate("k").expect("key");
        let good = k.to_text();
        let other = SecretKey::generate("k").expect("key").to_text();
        // Seed of one key, public half of another.
        let mut mixed = B64.decode(&good[2..]).expect("b64");
        mixed[32..].copy_from_slice(&B64.decode(&other[2..]).expect("b64")[32..]);
        let mixed = format!("k:{}", B64.encode(mixed));
        for t in [
            "",
            ":",
            "k",
            "k:",
            "k:!!!!",
            "bad name:AAAA",
            "../x:AAAA",
            &format!("{}:AAAA", "n".repeat(200)),
            &mixed,
            &k.public().to_text(),
        ] {
            assert!(SecretKey::parse(t).is_err(), "secret {t:?} accepted");
        }
        for t in [
            "",
            "k:",
            "k:AAAA",
            &good,
            &format!("k:{}", B64.encode([0u8; 32])),
        ] {
            assert!(PublicKey::parse(t).is_err(), "public {t:?} accepted");
        }
        assert!(SecretKey::generate("a/b").is_err());
        assert!(SecretKey::generate("").is_err());
    }

    #[test]
    fn signatures_verify_and_replace() {
        let k = SecretKey::generate("k1").expect("key");
        let msg = b"hello";
        let sig = k.sign(msg);
        let (name, s) = parse_signature(&sig).expect("parses");
        assert_eq!(name, "k1");
        assert!(k.public().verify(msg, &s));
        assert!(!k.public().verify(b"hellp", &s));
    }

    fn record(path: &str) -> PathRecord {
        let h = "ab".repeat(32);
        PathRecord {
            path: StorePath::parse(&format!("/bld/store/{}-hello", path.repeat(32))).expect("path"),
            content_hash: buildit_store::ContentHash([7; 32]),
            size: 1024,
            references: Default::default(),
            deriver: None,
            ca: None,
            archive: crate::record::archive_key(&h),
            archive_hash: h,
            archive_size: 300,
            compression: "zstd".into(),
            signatures: vec![],
        }
    }

    #[test]
    fn trust_decisions() {
        let old = SecretKey::generate("old").expect("key");
        let new = SecretKey::generate("new").expect("key");
        let stranger = SecretKey::generate("new").expect("key");
        let trust = Trust {
            trusted: vec![old.public(), new.public()],
            revoked: vec![],
        };
        let mut r = record("a");
        assert!(Trust::needs_signature(&r));
        assert!(matches!(trust.check(&r), Err(ShareError::Unsigned { .. })));

        let mut by_stranger = r.clone();
        SecretKey::generate("elsewhere")
            .expect("key")
            .sign_record(&mut by_stranger);
        match trust.check(&by_stranger) {
            Err(ShareError::Untrusted { keys, .. }) => assert_eq!(keys, "elsewhere"),
            other => panic!("{other:?}"),
        }
        // A key with a trusted name but other bytes: its signature does not verify.
        let mut same_name = r.clone();
        stranger.sign_record(&mut same_name);
        assert!(matches!(
            trust.check(&same_name),
            Err(ShareError::BadSignature { .. })
        ));

        old.sign_record(&mut r);
        trust.check(&r).expect("signed by a trusted key");
        let mut altered = r.clone();
        altered.size += 1;
        match trust.check(&altered) {
            Err(ShareError::BadSignature { key, .. }) => assert_eq!(key, "old"),
            other => panic!("{other:?}"),
        }

        // Rotation: the old key is revoked; records signed by it alone are refused, records
        // re-signed by the new key are accepted.
        let rotated = Trust {
            trusted: vec![new.public()],
            revoked: vec![old.public()],
        };
        match rotated.check(&r) {
            Err(ShareError::Revoked { key, .. }) => assert_eq!(key, "old"),
            other => panic!("{other:?}"),
        }
        new.sign_record(&mut r);
        new.sign_record(&mut r);
        assert_eq!(
            r.signatures.len(),
            2,
            "re-signing replaces: {:?}",
            r.signatures
        );
        rotated.check(&r).expect("re-signed by the new key");
        // Revocation is by key bytes: the revoked key trusted under any name still fails.
        let both = Trust {
            trusted: vec![old.public()],
            revoked: vec![old.public()],
        };
        let mut only_old = record("a");
        old.sign_record(&mut only_old);
        assert!(matches!(
            both.check(&only_old),
            Err(ShareError::Revoked { .. })
        ));
    }

    #[test]
    fn content_addressed_records_need_no_signature() {
        let mut r = record("a");
        let p = StorePath::for_source(&r.content_hash.0, &[], false, "hello").expect("path");
        r.path = p.clone();
        assert!(!Trust::needs_signature(&r));
        Trust::default().check(&r).expect("content-addressed");
        // But the references are part of the path: adding one makes it input-addressed.
        r.references.insert(record("b").path);
        assert!(Trust::needs_signature(&r));
        r.references.clear();
        // A false content address does not help.
        r.ca = Some("fixed:flat:sha256:".to_string() + &"00".repeat(32));
        assert!(Trust::needs_signature(&r));
        let fixed = StorePath::for_fixed("flat", "sha256", &[0; 32], "hello").expect("path");
        r.path = fixed;
        assert!(!Trust::needs_signature(&r));
        r.references.insert(p);
        assert!(Trust::needs_signature(&r));
    }

    #[test]
    fn key_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tmp");
        let k = SecretKey::generate("team-1").expect("key");
        let (sec, public) = write_key_files(tmp.path(), &k).expect("write");
        assert_eq!(sec, tmp.path().join("team-1.secret"));
        let mode = fs::metadata(&sec).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            SecretKey::read_file(&sec).expect("read").public(),
            k.public()
        );
        assert_eq!(PublicKey::read_file(&public).expect("read"), k.public());
        // Never overwritten.
        let other = SecretKey::generate("team-1").expect("key");
        assert!(write_key_files(tmp.path(), &other).is_err());
        assert_eq!(
            SecretKey::read_file(&sec).expect("read").public(),
            k.public()
        );
        // A public key file is not a secret key, and a huge file is refused unread.
        let e = SecretKey::read_file(&public).expect_err("public as secret");
        assert!(e.to_string().contains("team-1.pub"), "{e}");
        let big = tmp.path().join("big");
        fs::write(&big, vec![b'a'; 10_000]).expect("write");
        assert!(PublicKey::read_file(&big).is_err());
        assert!(PublicKey::read_file(&tmp.path().join("absent")).is_err());
    }
}
