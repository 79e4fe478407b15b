//! Hostile text never panics the parsers of locations, records and keys: mutations of valid
//! inputs (bytes flipped, cut, duplicated, spliced with control and non-ASCII characters) are
//! either accepted as well-formed values or refused with a typed error.

use buildit_share::keys::{PublicKey, SecretKey};
use buildit_share::record::{PathRecord, RepositoryInfo};
use buildit_share::{Location, ShareError};

/// A small deterministic generator (xorshift), so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPLICE: &[&[u8]] = &[
    b"..",
    b"/",
    b"@",
    b":",
    b"[",
    b"]",
    b"%00",
    b"\0",
    b"\n",
    b" ",
    b"-",
    b"\xc3\xa9",
    b"\xff",
    b"://",
    b"?",
    b"#",
    b"99999",
    b"\"",
    b"{",
    b"}",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(at),
            2 => {
                let s = SPLICE[rng.below(SPLICE.len())];
                v.splice(at..at, s.iter().copied());
            }
            _ => {
                let tail = v[at..].to_vec();
                v.extend_from_slice(&tail);
            }
        }
    }
    v
}

#[test]
fn locations() {
    let seeds = [
        "file:///srv/repo",
        "/srv/repo",
        "https://cache.example.org:8443/a/b",
        "mysuperbinhost.org/containers",
        "containers@mysuperbinhost.org/containers",
        "ssh://u@[::1]:22/srv/r",
        "oci://127.0.0.1:5000/team/paths",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in seeds {
        for _ in 0..3000 {
            let bytes = mutate(&mut rng, seed.as_bytes());
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            match Location::parse(&text) {
                Ok(loc) => {
                    // Whatever is accepted prints back to itself.
                    let again = Location::parse(&loc.display())
                        .unwrap_or_else(|e| panic!("{text:?} → {}: {e}", loc.display()));
                    assert_eq!(again, loc, "{text:?}");
                    assert!(
                        !loc.display().split('/').any(|c| c == ".." || c == "."),
                        "{text:?}"
                    );
                }
                Err(e) => assert!(matches!(e, ShareError::BadLocation { .. }), "{e}"),
            }
        }
    }
}

#[test]
fn records_and_keys() {
    let record = br#"{"path":"/bld/store/0yq0fn2f2f8xwz7ff0v6p9wyn2bnm6d7-hello","contentHash":"blake3:0707070707070707070707070707070707070707070707070707070707070707","size":1024,"references":["/bld/store/0yq0fn2f2f8xwz7ff0v6p9wyn2bnm6d7-hello"],"archive":"archives/abababababababababababababababababababababababababababababababab.tar.zst","archiveHash":"abababababababababababababababababababababababababababababababab","archiveSize":300,"compression":"zstd","signatures":[]}"#;
    PathRecord::parse(record).expect("the seed record is valid");
    let info = br#"{"format":1,"storeDir":"/bld/store","priority":40}"#;
    RepositoryInfo::parse(info).expect("the seed info is valid");
    let key = SecretKey::generate("k-1").expect("key");
    let secret = key.to_text();
    let public = key.public().to_text();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..5000 {
        let r = mutate(&mut rng, record);
        if let Ok(rec) = PathRecord::parse(&r) {
            // Accepted records are self-consistent.
            assert!(rec.archive.ends_with(".tar.zst"));
            assert_eq!(rec.archive_hash.len(), 64);
        }
        let _ = RepositoryInfo::parse(&mutate(&mut rng, info));
        if let Ok(s) = String::from_utf8(mutate(&mut rng, secret.as_bytes())) {
            let _ = SecretKey::parse(&s);
        }
        if let Ok(s) = String::from_utf8(mutate(&mut rng, public.as_bytes())) {
            let _ = PublicKey::parse(&s);
        }
    }
}
