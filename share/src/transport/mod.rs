//! Transports: how bytes reach and leave a repository. A repository is a flat namespace of
//! keys (`buildit-repository.json`, `<hashpart>.info`, `archives/<hex>.tar.zst`, …); every
//! transport offers the same five operations over it, so the record format and substitution
//! never know where a repository lives.
//!
//! Locations (`Location::parse`): `file:///DIR`, `http://HOST[:PORT]/PATH`, `https://…`,
//! `ssh://[USER@]HOST[:PORT]/PATH`, the seed's `USER@HOST/PATH` (ssh), `oci://REGISTRY/REPO`,
//! and a bare `HOST/PATH` (no scheme), which means `https://HOST/PATH`.

use std::path::{Path, PathBuf};

use crate::ShareError;

/// Where a repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    File(PathBuf),
    /// A static HTTP(S) tree: base URL without a trailing slash.
    Http(String),
    /// A directory on an ssh host.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// An OCI registry repository: `registry` is `HOST[:PORT]`, `repo` the repository name.
    Oci { registry: String, repo: String },
}

/// One repository's bytes. Implementations are shared between threads (lookups run in
/// parallel), never print, and bound every wait by their timeout.
pub trait Transport: Send + Sync {
    /// The location as the user should read it in messages.
    fn describe(&self) -> String;
    /// The whole object under `key`, at most `limit` bytes (more is
    /// [`ShareError::TooLarge`]); `Ok(None)` when the repository does not have it.
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError>;
    /// Stream the object under `key` into the new file `dest`, at most `limit` bytes;
    /// `Ok(false)` when the repository does not have it (then `dest` is not left behind).
    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError>;
    /// Whether the repository has `key` (an existence check only: no body is transferred).
    fn exists(&self, key: &str) -> Result<bool, ShareError>;
    /// Store the file `src` under `key` atomically: a reader sees either no object (or the
    /// old one) or the whole new one, never a part (temporary name, then rename).
    fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError>;
    /// [`Transport::put_file`] for bytes in memory.
    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError>;
}

/// Check that `key` is a plain relative name: `/`-separated components of
/// `[A-Za-z0-9._+-]`, none empty, `.` or `..`, at most 255 bytes in all.
pub fn check_key(key: &str) -> Result<(), ShareError> {
    let ok = !key.is_empty()
        && key.len() <= 255
        && key.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ShareError::BadKey {
            key: key.to_string(),
        })
    }
}

/// How transports connect; one value for all repositories of a command.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Bound on connecting and on any wait for data.
    pub timeout: std::time::Duration,
    /// Extra PEM CA certificates trusted for `https://` (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The private key `ssh` logs in with (`-i`), else ssh's own choice.
    pub ssh_identity: Option<PathBuf>,
    /// Extra `ssh` options (`-o NAME=VALUE` each), e.g. a known-hosts file.
    pub ssh_options: Vec<String>,
    /// Allow plain HTTP to loopback registries for `oci://` (tests, local registries).
    pub insecure_loopback: bool,
}

impl Default for TransportOptions {
    fn default() -> TransportOptions {
        TransportOptions {
            timeout: std::time::Duration::from_secs(30),
            ca_file: None,
            ssh_identity: None,
            ssh_options: Vec::new(),
            insecure_loopback: false,
        }
    }
}
