//! Uploading a closure from a real temporary store to a `file://` repository, then judging
//! what landed there: records parse and verify, archives decompress to the content hash,
//! a no-op push only asks whether records exist, every kind of tampering gives its own
//! error, and re-signing rotates keys.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use buildit_share::keys::{SecretKey, Trust};
use buildit_share::record::{record_key, PathRecord, RepositoryInfo, REPOSITORY_INFO_KEY};
use buildit_share::transport::file::FileTransport;
use buildit_share::transport::{self, Location, Transport, TransportOptions};
use buildit_share::upload::{sign_repository, upload, SignWhich, UploadEvent, UploadOptions};
use buildit_share::ShareError;
use buildit_store::{Store, StoreLayout, StorePath};

/// A real file transport that records which operations were asked of it.
struct Counting {
    inner: FileTransport,
    calls: Mutex<Vec<String>>,
}

impl Counting {
    fn new(root: &Path) -> Counting {
        Counting {
            inner: FileTransport::new(root),
            calls: Mutex::new(Vec::new()),
        }
    }
    fn note(&self, op: &str, key: &str) {
        self.calls.lock().expect("lock").push(format!("{op} {key}"));
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().expect("lock"))
    }
}

impl Transport for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError> {
        self.note("get", key);
        self.inner.get(key, limit)
    }
    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError> {
        self.note("get", key);
        self.inner.get_to_file(key, dest, limit)
    }
    fn exists(&self, key: &str) -> Result<bool, ShareError> {
        self.note("exists", key);
        self.inner.exists(key)
    }
    fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError> {
        self.note("put", key);
        self.inner.put_file(key, src)
    }
    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError> {
        self.note("put", key);
        self.inner.put_bytes(key, data)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, ShareError> {
        self.note("list", prefix);
        self.inner.list(prefix)
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    repo: std::path::PathBuf,
    /// A source (content-addressed) path.
    dep: StorePath,
    /// An input-addressed tree referring to `dep` and to itself.
    out: StorePath,
    /// An input-addressed file referring to `out`.
    top: StorePath,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(StoreLayout::at(tmp.path().join("root"))).expect("open store");
    let dep = store
        .add_bytes("dep.txt", b"a dependency\n", &[])
        .expect("add");
    let out = StorePath::from_fingerprint("output:share-test-out", "out").expect("path");
    let staged = store.new_tmp_path("build");
    fs::create_dir_all(staged.join("bin")).expect("mkdir");
    fs::write(
        staged.join("bin/run"),
        format!("#!/bin/sh\n{dep}\nself={out}\n"),
    )
    .expect("w");
    // Enough data that compression has work to do on several threads.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(staged.join("data"), big).expect("w");
    std::os::unix::fs::symlink("bin/run", staged.join("link")).expect("symlink");
    store
        .register_output(&staged, &out, std::slice::from_ref(&dep), None)
        .expect("register out");
    let top = StorePath::from_fingerprint("output:share-test-top", "top").expect("path");
    let staged = store.new_tmp_path("build");
    fs::write(&staged, format!("uses {out}\n")).expect("w");
    store
        .register_output(&staged, &top, std::slice::from_ref(&out), None)
        .expect("register top");
    let repo = tmp.path().join("repo");
    Fixture {
        _tmp: tmp,
        store,
        repo,
        dep,
        out,
        top,
    }
}

fn read_record(repo: &Path, p: &StorePath) -> PathRecord {
    let bytes = fs::read(repo.join(record_key(p))).expect("record");
    PathRecord::parse_for(p, &bytes).expect("parses")
}

fn write_record(repo: &Path, r: &PathRecord) {
    fs::write(repo.join(record_key(&r.path)), r.to_json()).expect("write");
}

#[test]
fn upload_then_judge() {
    let f = fixture();
    let key = SecretKey::generate("team-1").expect("key");
    let trust = Trust {
        trusted: vec![key.public()],
        revoked: vec![],
    };
    let t = Counting::new(&f.repo);
    let mut events = Vec::new();
    let report = upload(
        &f.store,
        &t,
        std::slice::from_ref(&f.top),
        Some(&key),
        &UploadOptions::default(),
        &mut |e| events.push(e),
    )
    .expect("upload");

    // References before referrers, each path once.
    assert_eq!(
        report.uploaded,
        vec![f.dep.clone(), f.out.clone(), f.top.clone()]
    );
    assert!(report.skipped.is_empty());
    assert!(report.bytes > 0);
    assert_eq!(
        events[0],
        UploadEvent::Checked {
            total: 3,
            missing: 3
        }
    );
    let uploaded: Vec<&StorePath> = events
        .iter()
        .filter_map(|e| match e {
            UploadEvent::Uploaded { path, .. } => Some(path),
            _ => None,
        })
        .collect();
    assert_eq!(uploaded, vec![&f.dep, &f.out, &f.top]);
    // Every archive went up before its record.
    let calls = t.take();
    assert_eq!(report.requests as usize, calls.len(), "{calls:?}");
    for p in [&f.dep, &f.out, &f.top] {
        let r = read_record(&f.repo, p);
        let archive_at = calls
            .iter()
            .position(|c| *c == format!("put {}", r.archive))
            .expect("archive put");
        let record_at = calls
            .iter()
            .position(|c| *c == format!("put {}", record_key(p)))
            .expect("record put");
        assert!(archive_at < record_at, "{calls:?}");
    }

    let info = fs::read(f.repo.join(REPOSITORY_INFO_KEY)).expect("repository info");
    assert_eq!(RepositoryInfo::parse(&info).expect("parses").format, 1);

    for p in [&f.dep, &f.out, &f.top] {
        let r = read_record(&f.repo, p);
        trust.check(&r).expect("trusted");
        trust.check_signatures(&r).expect("signed");
        let archive = fs::read(f.repo.join(&r.archive)).expect("archive");
        assert_eq!(archive.len() as u64, r.archive_size);
        assert_eq!(blake3::hash(&archive).to_hex().as_str(), r.archive_hash);
        let raw = zstd::decode_all(&archive[..]).expect("zstd");
        assert_eq!(raw.len() as u64, r.size);
        assert_eq!(*blake3::hash(&raw).as_bytes(), r.content_hash.0);
        let info = f.store.path_info(p).expect("info").expect("valid");
        assert_eq!(r.references, info.references);
    }
    assert!(
        read_record(&f.repo, &f.out).archive_size < 1_000_000,
        "compressed"
    );
    let dep = read_record(&f.repo, &f.dep);
    assert_eq!(dep.ca.as_deref(), Some("source"));
    assert!(!Trust::needs_signature(&dep));
    assert!(Trust::needs_signature(&read_record(&f.repo, &f.out)));
    assert!(read_record(&f.repo, &f.out).references.contains(&f.out));

    // No staged archive is left in the store's tmp directory.
    let leftovers: Vec<_> = fs::read_dir(f.store.layout().tmp_dir())
        .expect("tmp")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second push of the same closure only asks, once per path.
    let again = upload(
        &f.store,
        &t,
        std::slice::from_ref(&f.top),
        Some(&key),
        &UploadOptions::default(),
        &mut |_| {},
    )
    .expect("no-op upload");
    assert!(again.uploaded.is_empty());
    assert_eq!(again.skipped.len(), 3);
    let calls = t.take();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.starts_with("exists ")), "{calls:?}");
    assert_eq!(again.requests, 3);
}

#[test]
fn tampering_gives_its_own_error() {
    let f = fixture();
    let key = SecretKey::generate("team-1").expect("key");
    let trust = Trust {
        trusted: vec![key.public()],
        revoked: vec![],
    };
    let t = FileTransport::new(&f.repo);
    upload(
        &f.store,
        &t,
        std::slice::from_ref(&f.top),
        Some(&key),
        &UploadOptions::default(),
        &mut |_| {},
    )
    .expect("upload");
    let good = read_record(&f.repo, &f.out);
    let good_text = String::from_utf8(good.to_json()).expect("utf8");

    // A flipped byte inside the content hash: still a well-formed record, but the signature
    // no longer covers it.
    let hex = good.content_hash.to_hex();
    let pos = good_text.find(&hex).expect("hash in the text") + 10;
    let mut bytes = good_text.clone().into_bytes();
    bytes[pos] = if bytes[pos] == b'0' { b'1' } else { b'0' };
    let flipped = PathRecord::parse_for(&f.out, &bytes).expect("still well-formed");
    match trust.check(&flipped) {
        Err(ShareError::BadSignature { key, path }) => {
            assert_eq!(key, "team-1");
            assert_eq!(path, f.out);
        }
        other => panic!("{other:?}"),
    }
    // A reference added or removed.
    let mut fewer = good.clone();
    fewer.references.remove(&f.dep);
    assert!(matches!(
        trust.check(&fewer),
        Err(ShareError::BadSignature { .. })
    ));
    // No signature at all.
    let mut unsigned = good.clone();
    unsigned.signatures.clear();
    assert!(matches!(
        trust.check(&unsigned),
        Err(ShareError::Unsigned { .. })
    ));
    // Signed by a key nobody trusts.
    let mut foreign = unsigned.clone();
    SecretKey::generate("mallory")
        .expect("key")
        .sign_record(&mut foreign);
    match trust.check(&foreign) {
        Err(ShareError::Untrusted { keys, .. }) => assert_eq!(keys, "mallory"),
        other => panic!("{other:?}"),
    }
    // Signed by a revoked key.
    let revoked = Trust {
        trusted: vec![],
        revoked: vec![key.public()],
    };
    match revoked.check(&good) {
        Err(ShareError::Revoked { key, .. }) => assert_eq!(key, "team-1"),
        other => panic!("{other:?}"),
    }
    // A record for another path stored under this path's key.
    let top_bytes = fs::read(f.repo.join(record_key(&f.top))).expect("read");
    assert!(matches!(
        PathRecord::parse_for(&f.out, &top_bytes),
        Err(ShareError::BadRecord { .. })
    ));
}

#[test]
fn unsigned_upload_and_key_rotation() {
    let f = fixture();
    let t = FileTransport::new(&f.repo);
    let report = upload(
        &f.store,
        &t,
        std::slice::from_ref(&f.top),
        None,
        &UploadOptions {
            jobs: 1,
            ..UploadOptions::default()
        },
        &mut |_| {},
    )
    .expect("upload");
    assert_eq!(report.uploaded.len(), 3);
    let old = SecretKey::generate("old").expect("key");
    let new = SecretKey::generate("new").expect("key");
    let trust_old = Trust {
        trusted: vec![old.public()],
        revoked: vec![],
    };
    // Unsigned: the content-addressed path is accepted, the built ones are not.
    trust_old
        .check(&read_record(&f.repo, &f.dep))
        .expect("content-addressed");
    assert!(matches!(
        trust_old.check(&read_record(&f.repo, &f.out)),
        Err(ShareError::Unsigned { .. })
    ));

    // The owner signs everything with the old key (vouching for it).
    let r = sign_repository(&t, &old, SignWhich::All, None).expect("sign");
    assert_eq!(r.signed.len(), 3);
    for p in [&f.dep, &f.out, &f.top] {
        trust_old
            .check_signatures(&read_record(&f.repo, p))
            .expect("signed");
    }
    // Tamper with one record, then rotate: the new key signs only what the old key vouches
    // for, so the altered record is refused and left as it is.
    let mut altered = read_record(&f.repo, &f.top);
    altered.size += 1;
    write_record(&f.repo, &altered);
    let r = sign_repository(&t, &new, SignWhich::All, Some(&trust_old)).expect("rotate");
    let signed: BTreeSet<_> = r.signed.iter().cloned().collect();
    assert_eq!(signed, [f.dep.clone(), f.out.clone()].into());
    assert_eq!(r.refused.len(), 1);
    assert_eq!(r.refused[0].0, f.top);
    assert!(r.refused[0].1.contains("altered"), "{}", r.refused[0].1);
    let rotated = Trust {
        trusted: vec![new.public()],
        revoked: vec![old.public()],
    };
    rotated
        .check(&read_record(&f.repo, &f.out))
        .expect("re-signed by the new key");
    assert!(matches!(
        rotated.check(&read_record(&f.repo, &f.top)),
        Err(ShareError::Revoked { .. })
    ));
    // Signing again changes nothing.
    let r = sign_repository(
        &t,
        &new,
        SignWhich::Paths(&[f.out.clone(), f.dep.clone()]),
        Some(&rotated),
    )
    .expect("again");
    assert!(r.signed.is_empty());
    assert_eq!(r.unchanged.len(), 2);
    // A path the repository does not have.
    let absent = StorePath::from_fingerprint("output:absent", "absent").expect("path");
    assert!(sign_repository(&t, &new, SignWhich::Paths(&[absent]), None).is_err());
}

#[test]
fn upload_to_https_is_refused_clearly() {
    let f = fixture();
    let loc = Location::parse("127.0.0.1:1/repo").expect("location");
    let t = transport::open(
        &loc,
        &TransportOptions {
            timeout: std::time::Duration::from_secs(2),
            ..TransportOptions::default()
        },
    )
    .expect("open");
    let e = upload(
        &f.store,
        t.as_ref(),
        std::slice::from_ref(&f.dep),
        None,
        &UploadOptions::default(),
        &mut |_| {},
    )
    .expect_err("nothing listens there, and https is read-only");
    assert!(matches!(e, ShareError::Transport { .. }), "{e:?}");
    let http =
        transport::http::HttpTransport::new("https://127.0.0.1:1", &TransportOptions::default())
            .expect("client");
    let e = http.put_bytes("a.info", b"x").expect_err("read-only");
    assert!(
        e.to_string().contains(
            "upload to http(s) is not supported: use an ssh:// or file:// upload location"
        ),
        "{e}"
    );
    assert!(matches!(http.list(""), Err(ShareError::Unsupported { .. })));
}

#[test]
fn archives_do_not_depend_on_the_compression_threads() {
    let f = fixture();
    // Larger than zstd's job size at level 3, so several workers really share the work.
    let src = f.repo.with_file_name("big-src");
    let mut data = Vec::with_capacity(24 << 20);
    let mut x: u32 = 1;
    while data.len() < 24 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(format!("line {} {}\n", x % 1000, x % 7).as_bytes());
    }
    fs::write(&src, &data).expect("write");
    let big = f.store.add_path(&src, Some("big")).expect("add");
    let mut hashes = Vec::new();
    for (i, threads) in [1u32, 3].into_iter().enumerate() {
        let repo = f.repo.join(format!("r{i}"));
        let t = FileTransport::new(&repo);
        upload(
            &f.store,
            &t,
            std::slice::from_ref(&big),
            None,
            &UploadOptions {
                zstd_threads: threads,
                ..UploadOptions::default()
            },
            &mut |_| {},
        )
        .expect("upload");
        hashes.push(read_record(&repo, &big).archive_hash);
    }
    assert_eq!(hashes[0], hashes[1]);
}
