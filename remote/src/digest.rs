//! Content digests as the endpoint computes them: SHA-256, the function every REAPI server
//! supports, or BLAKE3 when the server lists it among its capabilities' digest functions
//! (then every request names it, since a BLAKE3 digest has the length of a SHA-256 one).

use std::io::Read;
use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2::{digest_function, Digest};
use sha2::Digest as _;

/// The digest function of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestFn {
    Sha256,
    Blake3,
}

impl DigestFn {
    /// The value of `digest_function` in requests: BLAKE3 must be named; SHA-256 is left
    /// unset (servers infer it from the hash length, and older ones know no other value).
    pub fn proto(self) -> i32 {
        match self {
            DigestFn::Sha256 => digest_function::Value::Unknown as i32,
            DigestFn::Blake3 => digest_function::Value::Blake3 as i32,
        }
    }

    /// The ByteStream resource path segment after `blobs/` (`blake3/` for BLAKE3, none for
    /// SHA-256).
    pub fn resource_prefix(self) -> &'static str {
        match self {
            DigestFn::Sha256 => "",
            DigestFn::Blake3 => "blake3/",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DigestFn::Sha256 => "SHA-256",
            DigestFn::Blake3 => "BLAKE3",
        }
    }

    /// The digest of `bytes`.
    pub fn of(self, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(self);
        h.update(bytes);
        h.finish(bytes.len() as u64)
    }

    /// The digest of the file at `p` (read in 256 KiB pieces).
    pub fn of_file(self, p: &Path) -> std::io::Result<Digest> {
        let mut f = std::fs::File::open(p)?;
        let mut h = Hasher::new(self);
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        Ok(h.finish(size))
    }
}

/// An incremental digest.
pub enum Hasher {
    Sha(sha2::Sha256),
    B3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn new(f: DigestFn) -> Hasher {
        match f {
            DigestFn::Sha256 => Hasher::Sha(sha2::Sha256::new()),
            DigestFn::Blake3 => Hasher::B3(Box::new(blake3::Hasher::new())),
        }
    }
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha(h) => h.update(b),
            Hasher::B3(h) => {
                h.update(b);
            }
        }
    }
    /// The digest, with `size` as its size.
    pub fn finish(self, size: u64) -> Digest {
        let hash = match self {
            Hasher::Sha(h) => hex::encode(h.finalize()),
            Hasher::B3(h) => h.finalize().to_hex().to_string(),
        };
        Digest {
            hash,
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        }
    }
}

/// `hash/size`, the form digests take in messages and resource names.
pub fn show(d: &Digest) -> String {
    format!("{}/{}", d.hash, d.size_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_digests() {
        assert_eq!(
            DigestFn::Sha256.of(b"").hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            DigestFn::Blake3.of(b"").hash,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn file_digest_matches_bytes() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        let data = vec![7u8; 600 << 10];
        std::fs::write(&p, &data).expect("write");
        for f in [DigestFn::Sha256, DigestFn::Blake3] {
            assert_eq!(f.of_file(&p).expect("read"), f.of(&data));
        }
    }
}
