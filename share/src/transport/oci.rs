//! The `oci` transport: a repository kept in an OCI registry (`oci://HOST[:PORT]/REPO`), so
//! any registry a team already runs can hold its binary repository.
//!
//! Every key is one OCI artifact in the registry repository: an image manifest with
//! `artifactType` [`ARTIFACT_TYPE`], the empty config (`{}`), and the object as its one layer
//! (media type [`LAYER_MEDIA_TYPE`], the key in its `org.opencontainers.image.title`
//! annotation), tagged with the key's tag ([`key_to_tag`]). `get` resolves the tag to the
//! manifest (bounded, checked to be one of ours and to name this key), then streams the blob,
//! refusing more bytes than the manifest says or than the caller's limit, and checks its sha256
//! digest as it reads (`open_read` hands out that stream, whose end is an error unless the
//! count and digest match); `exists` is a `HEAD` of the manifest; `put` uploads the blob (skipped
//! when the registry has it), then `PUT`s the manifest under the tag: the tag appears only when
//! the blob is complete, so uploads are atomic by construction; `list` is the tags list API.
//!
//! Tags allow `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` and keys `/`-separated `[A-Za-z0-9._+-]`
//! components, so the mapping escapes with `_`: `_` is `_u`, `+` is `_p`, `/` is `__`, and a
//! leading `.` or `-` (not allowed first in a tag) is `_d` or `_m`. Every other character is
//! itself. The mapping is injective (each `_` starts a two-character escape), so two keys
//! never share a tag, and [`tag_to_key`] reads tags back; a key whose tag would pass 128
//! characters is refused ([`ShareError::BadKey`]). Tags that are not the spelling of a key
//! (`a_x`, say) are left out by `list`; tags of anything else pushed to the same registry
//! repository would be listed, so a binary repository wants a registry repository of its own.
//!
//! Spack's OCI build caches push each package as a runnable image (a tarball layer and a
//! config carrying Spack's metadata, tagged `NAME-VERSION-HASH.spack`), so a cache doubles as
//! container bases; here the registry is only storage for the repository's own signed records
//! and archives, so one artifact per key, with no image semantics, is all that is needed.
//!
//! The registry client (authentication challenges, HEAD before upload, chunked uploads, plain
//! HTTP only for loopback registries when `insecure_loopback` is set, an extra CA from
//! `ca_file`) is `buildit-images`' [`buildit_images::registry::Client`], the one `buildit push`
//! uses. Every wait is bounded by the options' timeout (a registry that accepts and never
//! answers is [`ShareError::Timeout`]).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use buildit_images::registry::{
    self, body_err, Client, ClientOptions, RegistryError, EMPTY_DIGEST, EMPTY_JSON,
    EMPTY_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{check_key, check_prefix, Transport, TransportOptions};
use crate::ShareError;

/// The `artifactType` of a repository object's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.buildit.object.v1";
/// The media type of the object's layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.buildit.object.v1.bytes";
/// The annotation naming the key an artifact holds.
const TITLE: &str = "org.opencontainers.image.title";
/// The largest manifest read (one of ours is well under a kilobyte).
const MANIFEST_LIMIT: u64 = 64 << 10;
/// The most tags a listing reads.
const MAX_TAGS: usize = 10_000_000;
/// Upload chunk size.
const CHUNK: usize = 8 << 20;

/// The tag of `key` (see the module documentation for the mapping).
pub fn key_to_tag(key: &str) -> Result<String, ShareError> {
    check_key(key)?;
    let mut tag = String::with_capacity(key.len() + 8);
    for (i, c) in key.chars().enumerate() {
        match c {
            '_' => tag.push_str("_u"),
            '+' => tag.push_str("_p"),
            '/' => tag.push_str("__"),
            '.' if i == 0 => tag.push_str("_d"),
            '-' if i == 0 => tag.push_str("_m"),
            c => tag.push(c),
        }
    }
    if !registry::valid_tag(&tag) {
        return Err(ShareError::BadKey {
            key: format!("{key} (its OCI tag would be longer than 128 characters)"),
        });
    }
    Ok(tag)
}

/// The key whose tag is `tag`, if `tag` is one.
pub fn tag_to_key(tag: &str) -> Option<String> {
    let mut key = String::with_capacity(tag.len());
    let mut chars = tag.chars();
    let mut first = true;
    while let Some(c) = chars.next() {
        if c == '_' {
            match chars.next()? {
                'u' => key.push('_'),
                'p' => key.push('+'),
                '_' => key.push('/'),
                'd' if first => key.push('.'),
                'm' if first => key.push('-'),
                _ => return None,
            }
        } else {
            if first && (c == '.' || c == '-') {
                return None;
            }
            key.push(c);
        }
        first = false;
    }
    // only the canonical spelling of a key is its tag
    (check_key(&key).is_ok() && key_to_tag(&key).ok().as_deref() == Some(tag)).then_some(key)
}

/// A repository in an OCI registry.
pub struct OciTransport {
    describe: String,
    client: Client,
    timeout: Duration,
}

impl OciTransport {
    /// A transport for the repository `repo` of `registry` (`HOST[:PORT]`), anonymous.
    pub fn new(
        registry: &str,
        repo: &str,
        opts: &TransportOptions,
    ) -> Result<OciTransport, ShareError> {
        OciTransport::with_credentials(registry, repo, opts, None)
    }

    /// [`OciTransport::new`] with a user name and password for the registry's `Basic`
    /// challenge or its token service.
    pub fn with_credentials(
        registry: &str,
        repo: &str,
        opts: &TransportOptions,
        credentials: Option<(String, String)>,
    ) -> Result<OciTransport, ShareError> {
        let describe = format!("oci://{registry}/{repo}");
        let copts = ClientOptions {
            insecure: opts.insecure_loopback && registry::is_loopback(registry),
            credentials,
            connect_timeout: opts.timeout,
            timeout: Some(opts.timeout),
            ca_file: opts.ca_file.clone(),
            extra_scopes: Vec::new(),
        };
        let client = Client::new(registry, repo, &copts).map_err(|e| match e {
            RegistryError::Io { context, source } => ShareError::Io {
                path: context,
                source,
            },
            other => ShareError::BadLocation {
                location: describe.clone(),
                reason: other.to_string(),
            },
        })?;
        Ok(OciTransport {
            describe,
            client,
            timeout: opts.timeout,
        })
    }

    fn err(&self, e: RegistryError) -> ShareError {
        match e {
            RegistryError::Timeout(_) => ShareError::Timeout {
                repo: self.describe.clone(),
                seconds: self.timeout.as_secs().max(1),
            },
            RegistryError::Protocol(message) => ShareError::Transport {
                repo: self.describe.clone(),
                message,
            },
            RegistryError::Io { context, source } => ShareError::Io {
                path: context,
                source,
            },
        }
    }

    fn bad(&self, message: impl Into<String>) -> ShareError {
        ShareError::Transport {
            repo: self.describe.clone(),
            message: message.into(),
        }
    }

    /// The layer (digest, size) of `key`'s manifest, `None` when there is no such tag.
    fn layer_of(&self, key: &str) -> Result<Option<(String, u64)>, ShareError> {
        let tag = key_to_tag(key)?;
        let Some(bytes) = self
            .client
            .get_manifest(&tag, MANIFEST_MEDIA_TYPE, MANIFEST_LIMIT)
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad(format!("the manifest of {key} is not JSON: {e}")))?;
        let media_type_ok = match v.get("mediaType") {
            None => true,
            Some(m) => m.as_str() == Some(MANIFEST_MEDIA_TYPE),
        };
        let ours =
            v.get("artifactType").and_then(Value::as_str) == Some(ARTIFACT_TYPE) && media_type_ok;
        if !ours {
            return Err(self.bad(format!(
                "the tag {tag} is not a buildit object (artifactType is not {ARTIFACT_TYPE})"
            )));
        }
        let layer = match v.get("layers").and_then(Value::as_array).map(Vec::as_slice) {
            Some([one]) => one,
            _ => {
                return Err(self.bad(format!(
                    "the manifest of {key} does not have exactly one layer"
                )))
            }
        };
        let digest = layer
            .get("digest")
            .and_then(Value::as_str)
            .filter(|d| registry::valid_sha256_digest(d))
            .ok_or_else(|| self.bad(format!("the manifest of {key} has no sha256 layer digest")))?;
        let size = layer
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad(format!("the manifest of {key} has no layer size")))?;
        let title = layer
            .get("annotations")
            .and_then(|a| a.get(TITLE))
            .and_then(Value::as_str);
        if title != Some(key) {
            return Err(self.bad(format!(
                "the artifact tagged {tag} holds {title:?}, not {key}"
            )));
        }
        Ok(Some((digest.to_string(), size)))
    }

    /// A reader of the object of `key`'s blob, at most `limit` bytes, checking its size and
    /// digest as it goes ([`BlobReader`]); `None` when the repository does not have the key.
    fn blob(&self, key: &str, limit: u64) -> Result<Option<BlobReader>, ShareError> {
        let Some((digest, size)) = self.layer_of(key)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(ShareError::TooLarge {
                repo: self.describe.clone(),
                key: key.to_string(),
                limit,
            });
        }
        let resp = self
            .client
            .get_blob(&digest)
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                self.bad(format!(
                    "the manifest of {key} names the missing blob {digest}"
                ))
            })?;
        Ok(Some(BlobReader {
            inner: resp.take(size.saturating_add(1)),
            hasher: Sha256::new(),
            what: format!("reading {key} ({digest})"),
            digest,
            size,
            total: 0,
        }))
    }

    /// Copy a whole blob into `out`: a refused blob (size, digest) is [`OciTransport::bad`],
    /// a failed read the registry's error (a timeout is [`ShareError::Timeout`]).
    fn copy_blob(&self, mut r: BlobReader, out: &mut dyn Write) -> Result<(), ShareError> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(
                        match e.get_ref().and_then(|i| i.downcast_ref::<Refused>()) {
                            Some(Refused(m)) => self.bad(m.clone()),
                            None => self.err(body_err(&r.what, e)),
                        },
                    )
                }
            };
            out.write_all(&buf[..n]).map_err(|source| ShareError::Io {
                path: r.what.clone(),
                source,
            })?;
        }
    }

    /// Upload `size` bytes from `open()` with the digest `digest` under `key`.
    fn put_stream<'s>(
        &self,
        key: &str,
        digest: &str,
        size: u64,
        open: &dyn Fn() -> Result<Box<dyn Read + 's>, ShareError>,
    ) -> Result<(), ShareError> {
        let tag = key_to_tag(key)?;
        let e = |err| self.err(err);
        if !self.client.head_blob(digest).map_err(e)? {
            let at = self.client.start_upload().map_err(e)?;
            let mut src = open()?;
            self.client
                .upload(at, &mut src, digest, size, CHUNK, key)
                .map_err(e)?;
        }
        if !self.client.head_blob(EMPTY_DIGEST).map_err(e)? {
            let at = self.client.start_upload().map_err(e)?;
            let mut src: &[u8] = EMPTY_JSON;
            self.client
                .upload(
                    at,
                    &mut src,
                    EMPTY_DIGEST,
                    EMPTY_JSON.len() as u64,
                    CHUNK,
                    "{}",
                )
                .map_err(e)?;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": { "mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": EMPTY_JSON.len() },
            "layers": [{
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": digest,
                "size": size,
                "annotations": { TITLE: key },
            }],
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|err| self.bad(format!("the manifest of {key}: {err}")))?;
        let mdigest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        self.client
            .put_manifest(&tag, MANIFEST_MEDIA_TYPE, &bytes, &mdigest)
            .map_err(e)
    }
}

/// A blob streamed from the registry: at most the manifest's size, and at its end the byte
/// count and the sha256 digest are checked (a mismatch is an error instead of the end), so a
/// caller that reads to the end has read exactly the object.
/// Why a blob's bytes were refused (its size or digest), inside the `io::Error` a
/// [`BlobReader`] returns, so that callers tell it from a failed read.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(kind: std::io::ErrorKind, message: String) -> std::io::Error {
    std::io::Error::new(kind, Refused(message))
}

struct BlobReader {
    inner: std::io::Take<reqwest::blocking::Response>,
    hasher: Sha256,
    digest: String,
    size: u64,
    total: u64,
    what: String,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if self.total != self.size {
                return Err(refused(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: {} bytes, the manifest says {} (truncated)",
                        self.what, self.total, self.size
                    ),
                ));
            }
            let got = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if got != self.digest {
                return Err(refused(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: the bytes have the digest {got}", self.what),
                ));
            }
            return Ok(0);
        }
        self.total += n as u64;
        if self.total > self.size {
            return Err(refused(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: more bytes than the manifest's {}",
                    self.what, self.size
                ),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl Transport for OciTransport {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError> {
        let Some(r) = self.blob(key, limit)? else {
            return Ok(None);
        };
        let mut v = Vec::new();
        self.copy_blob(r, &mut v)?;
        Ok(Some(v))
    }

    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError> {
        // the manifest first, so that an absent key leaves no file behind
        check_key(key)?;
        let Some(r) = self.blob(key, limit)? else {
            return Ok(false);
        };
        let io = |source| ShareError::Io {
            path: dest.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(io)?;
        let answer = self
            .copy_blob(r, &mut file)
            .and_then(|()| file.sync_all().map_err(io));
        drop(file);
        if answer.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        answer.map(|()| true)
    }

    fn open_read(
        &self,
        key: &str,
        limit: u64,
        _scratch: &Path,
    ) -> Result<Option<Box<dyn Read + Send>>, ShareError> {
        let describe = self.describe.clone();
        Ok(self.blob(key, limit)?.map(|mut r| {
            // the stream's errors are read where the repository is not known: name it
            r.what = format!("{describe}: {}", r.what);
            Box::new(r) as Box<dyn Read + Send>
        }))
    }

    fn exists(&self, key: &str) -> Result<bool, ShareError> {
        let tag = key_to_tag(key)?;
        self.client
            .head_manifest(&tag, MANIFEST_MEDIA_TYPE)
            .map_err(|e| self.err(e))
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError> {
        let io = |source| ShareError::Io {
            path: src.display().to_string(),
            source,
        };
        let mut f = std::fs::File::open(src).map_err(io)?;
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut f, &mut hasher).map_err(io)?;
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        // a file that changes between hashing and sending fails the registry's digest check
        self.put_stream(key, &digest, size, &|| {
            let f = std::fs::File::open(src).map_err(|source| ShareError::Io {
                path: src.display().to_string(),
                source,
            })?;
            Ok(Box::new(f.take(size)))
        })
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        self.put_stream(key, &digest, data.len() as u64, &|| Ok(Box::new(data)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, ShareError> {
        check_prefix(prefix)?;
        let tags = self.client.tags(MAX_TAGS).map_err(|e| self.err(e))?;
        let mut keys: Vec<String> = tags
            .iter()
            .filter_map(|t| tag_to_key(t))
            .filter(|k| {
                k.strip_prefix(prefix)
                    .is_some_and(|name| !name.contains('/') && !name.starts_with('.'))
            })
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for key in [
            "buildit-repository.json",
            "archives/0123abcd.tar.zst",
            "a_b/c+d",
            ".hidden",
            "-dash/x",
            "x.-y",
            "a__b",
            "a/_/b",
        ] {
            let tag = key_to_tag(key).expect(key);
            assert!(registry::valid_tag(&tag), "{key} -> {tag}");
            assert_eq!(tag_to_key(&tag).as_deref(), Some(key), "{tag}");
        }
        assert_eq!(
            key_to_tag("archives/x.tar.zst").expect("ok"),
            "archives__x.tar.zst"
        );
        assert_eq!(key_to_tag("a_b").expect("ok"), "a_ub");
    }

    #[test]
    fn no_two_keys_share_a_tag() {
        let keys = [
            "a/b", "a__b", "a_b", "a_/b", "a/_b", "a+b", "a_pb", "_p", "+",
        ];
        let tags: std::collections::BTreeSet<String> =
            keys.iter().map(|k| key_to_tag(k).expect(k)).collect();
        assert_eq!(tags.len(), keys.len());
    }

    #[test]
    fn foreign_and_long_tags() {
        assert_eq!(tag_to_key("latest").as_deref(), Some("latest"));
        assert_eq!(tag_to_key("a_x"), None);
        assert_eq!(tag_to_key("a_"), None);
        assert_eq!(tag_to_key("x_d"), None);
        assert_eq!(
            tag_to_key("sha256-abc.sbom").as_deref(),
            Some("sha256-abc.sbom")
        );
        assert!(key_to_tag(&"a".repeat(128)).is_ok());
        assert!(matches!(
            key_to_tag(&"a".repeat(129)),
            Err(ShareError::BadKey { .. })
        ));
        assert!(matches!(key_to_tag("../x"), Err(ShareError::BadKey { .. })));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let opts = TransportOptions {
            insecure_loopback: true,
            ..TransportOptions::default()
        };
        let t = OciTransport::new("127.0.0.1:5000", "cache", &opts).expect("ok");
        assert_eq!(t.client.base().scheme(), "http");
        let t = OciTransport::new("10.0.0.1:5000", "cache", &opts).expect("ok");
        assert_eq!(t.client.base().scheme(), "https");
        let t =
            OciTransport::new("127.0.0.1:5000", "cache", &TransportOptions::default()).expect("ok");
        assert_eq!(t.client.base().scheme(), "https");
    }
}
