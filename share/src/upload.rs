//! Uploading store paths to a repository ([`upload`]) and signing what a repository holds
//! ([`sign_repository`]).
//!
//! An upload pushes the closure of the given paths. It first asks, for every path, whether
//! the repository has its record (one existence check per path and nothing else, so pushing
//! an unchanged closure costs exactly that), then uploads the missing ones, references
//! before referrers: each path's canonical archive is written zstd-compressed to a temporary
//! file (checked against the store's content hash and size on the way), uploaded under
//! `archives/<blake3 of the compressed bytes>.tar.zst`, and only then its signed record
//! `<hashpart>.info`. A reader therefore never sees a record whose archive is missing, nor a
//! path whose references are not there yet. Paths of one level of the reference graph are
//! uploaded by several threads at once.
//!
//! The store (a SQLite connection) is used from the calling thread only; worker threads get
//! plain data (records to be, physical paths) and the transport.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use buildit_store::archive::{write_archive, HashWriter};
use buildit_store::{Store, StoreError, StorePath};

use crate::keys::{parse_signature, SecretKey, Trust};
use crate::record::{
    archive_key, record_key, PathRecord, RepositoryInfo, COMPRESSION_ZSTD, RECORD_LIMIT,
    REPOSITORY_INFO_KEY,
};
use crate::transport::Transport;
use crate::ShareError;

/// How [`upload`] works.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Uploads at once; 0 means what the transport allows
    /// ([`Transport::upload_parallelism`]).
    pub jobs: usize,
    /// zstd compression level.
    pub level: i32,
    /// zstd worker threads per archive (at least 1; the output does not depend on it).
    pub zstd_threads: u32,
    /// The priority written into a new repository's `buildit-repository.json`.
    pub priority: u32,
}

impl Default for UploadOptions {
    fn default() -> UploadOptions {
        UploadOptions {
            jobs: 0,
            level: 3,
            zstd_threads: 2,
            priority: 50,
        }
    }
}

/// Progress of an upload, for the caller to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    /// The repository was asked about every path of the closure: `missing` of `total` will
    /// be uploaded.
    Checked { total: usize, missing: usize },
    /// The repository already has this path.
    Skipped(StorePath),
    /// This path's archive is being compressed and uploaded.
    Started(StorePath),
    /// This path's archive and record are in the repository; `bytes` compressed bytes sent.
    Uploaded { path: StorePath, bytes: u64 },
}

/// What an upload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Paths uploaded, references before referrers.
    pub uploaded: Vec<StorePath>,
    /// Paths the repository already had.
    pub skipped: Vec<StorePath>,
    /// Bytes sent (compressed archives and records).
    pub bytes: u64,
    /// Requests made to the repository (existence checks, reads, writes).
    pub requests: u64,
}

/// One path to upload: everything a worker needs, gathered from the store beforehand.
struct Job {
    record: PathRecord,
    physical: PathBuf,
    tmp: PathBuf,
}

/// Push the closure of `paths` from `store` to `transport`: every path whose record the
/// repository lacks is uploaded (archive first, then the record, signed with `key` when one
/// is given; see the module documentation for the order and the checks). A record carries
/// the content address (`ca`) when the store knows one, and the store's own well-formed
/// signatures. `progress` is called on the calling thread.
pub fn upload(
    store: &Store,
    transport: &dyn Transport,
    paths: &[StorePath],
    key: Option<&SecretKey>,
    opts: &UploadOptions,
    progress: &mut dyn FnMut(UploadEvent),
) -> Result<UploadReport, ShareError> {
    let closure: Vec<StorePath> = store.closure(paths)?.into_iter().collect();
    let requests = AtomicU64::new(0);
    let jobs = if opts.jobs == 0 {
        transport.upload_parallelism()
    } else {
        opts.jobs
    }
    .max(1);

    // One existence check per path, several at once.
    let have = parallel(&closure, jobs, |p| {
        requests.fetch_add(1, Ordering::Relaxed);
        transport.exists(&record_key(p))
    })?;
    let mut report = UploadReport::default();
    let mut missing = Vec::new();
    for (p, has) in closure.iter().zip(have) {
        if has {
            report.skipped.push(p.clone());
        } else {
            missing.push(p.clone());
        }
    }
    progress(UploadEvent::Checked {
        total: closure.len(),
        missing: missing.len(),
    });
    for p in &report.skipped {
        progress(UploadEvent::Skipped(p.clone()));
    }
    if missing.is_empty() {
        report.requests = requests.load(Ordering::Relaxed);
        return Ok(report);
    }

    ensure_repository_info(transport, opts.priority, &requests)?;

    // Records as far as the store can fill them in; the archive fields come later.
    let mut records: BTreeMap<StorePath, Job> = BTreeMap::new();
    for p in &missing {
        let info = store
            .path_info(p)?
            .ok_or_else(|| StoreError::NotValid(p.clone()))?;
        store.add_temp_root(p);
        let ca = store.content_address(&info).map(|c| c.render());
        let signatures = info
            .signatures
            .iter()
            .filter(|s| parse_signature(s).is_ok())
            .cloned()
            .collect();
        let record = PathRecord {
            path: p.clone(),
            content_hash: info.content_hash,
            size: info.size,
            references: info.references.clone(),
            deriver: info.deriver.clone(),
            ca,
            archive: String::new(),
            archive_hash: String::new(),
            archive_size: 0,
            compression: COMPRESSION_ZSTD.to_string(),
            signatures,
        };
        records.insert(
            p.clone(),
            Job {
                record,
                physical: store.layout().physical(p),
                tmp: store.new_tmp_path("upload.tar.zst"),
            },
        );
    }

    for level in levels(&records) {
        let level_jobs: Vec<&Job> = level.iter().map(|p| &records[p]).collect();
        let (tx, rx) = mpsc::channel::<UploadEvent>();
        let (jobs_ref, requests_ref) = (&level_jobs, &requests);
        let result = std::thread::scope(|s| {
            let worker = s.spawn(move || {
                parallel(jobs_ref, jobs, |job| {
                    let _ = tx.send(UploadEvent::Started(job.record.path.clone()));
                    let r = upload_one(transport, job, key, opts, requests_ref);
                    let _ = fs::remove_file(&job.tmp);
                    if let Ok(bytes) = r {
                        let _ = tx.send(UploadEvent::Uploaded {
                            path: job.record.path.clone(),
                            bytes,
                        });
                    }
                    r
                })
            });
            // The worker owns the sender: the events end when it does.
            for ev in rx.iter() {
                progress(ev);
            }
            worker.join()
        });
        let sizes = match result {
            Ok(r) => r?,
            Err(_) => {
                return Err(ShareError::Transport {
                    repo: transport.describe(),
                    message: "an upload thread failed".into(),
                })
            }
        };
        for (p, bytes) in level.iter().zip(sizes) {
            report.uploaded.push(p.clone());
            report.bytes += bytes;
        }
    }
    report.requests = requests.load(Ordering::Relaxed);
    Ok(report)
}

/// Write `buildit-repository.json` when the repository has none; refuse a repository whose
/// record says it holds another format or store directory.
fn ensure_repository_info(
    transport: &dyn Transport,
    priority: u32,
    requests: &AtomicU64,
) -> Result<(), ShareError> {
    requests.fetch_add(1, Ordering::Relaxed);
    match transport.get(REPOSITORY_INFO_KEY, RECORD_LIMIT)? {
        Some(bytes) => {
            RepositoryInfo::parse(&bytes).map_err(|e| ShareError::BadRecord {
                what: format!("{}/{REPOSITORY_INFO_KEY}", transport.describe()),
                reason: e.to_string(),
            })?;
        }
        None => {
            requests.fetch_add(1, Ordering::Relaxed);
            transport.put_bytes(
                REPOSITORY_INFO_KEY,
                &RepositoryInfo::new(priority).to_json(),
            )?;
        }
    }
    Ok(())
}

/// Compress, upload the archive, then the signed record; returns the bytes sent.
fn upload_one(
    transport: &dyn Transport,
    job: &Job,
    key: Option<&SecretKey>,
    opts: &UploadOptions,
    requests: &AtomicU64,
) -> Result<u64, ShareError> {
    let (archive_hash, archive_size) = compress(job, opts)?;
    let mut record = job.record.clone();
    record.archive = archive_key(&archive_hash);
    record.archive_hash = archive_hash;
    record.archive_size = archive_size;
    if let Some(k) = key {
        k.sign_record(&mut record);
    }
    requests.fetch_add(1, Ordering::Relaxed);
    transport.put_file(&record.archive, &job.tmp)?;
    let json = record.to_json();
    requests.fetch_add(1, Ordering::Relaxed);
    transport.put_bytes(&record_key(&record.path), &json)?;
    Ok(archive_size + json.len() as u64)
}

/// A `Write` that hashes and counts what passes through to `inner`.
struct Tee<W: Write> {
    inner: W,
    hash: blake3::Hasher,
    count: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Two writers fed the same bytes.
struct Both<A: Write, B: Write>(A, B);

impl<A: Write, B: Write> Write for Both<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Write the zstd-compressed canonical archive of the job's object to its temporary file,
/// checking the uncompressed stream against the record's content hash and size; returns the
/// compressed bytes' blake3 (hex) and size.
fn compress(job: &Job, opts: &UploadOptions) -> Result<(String, u64), ShareError> {
    let r = &job.record;
    let werr = |e: io::Error| ShareError::io(job.tmp.display(), e);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&job.tmp)
        .map_err(werr)?;
    let tee = Tee {
        inner: io::BufWriter::with_capacity(1 << 20, file),
        hash: blake3::Hasher::new(),
        count: 0,
    };
    let mut enc = zstd::stream::write::Encoder::new(tee, opts.level).map_err(werr)?;
    enc.multithread(opts.zstd_threads.max(1)).map_err(werr)?;
    enc.set_pledged_src_size(Some(r.size)).map_err(werr)?;
    let mut content = HashWriter::new();
    let stats = write_archive(&job.physical, "", Both(&mut enc, &mut content))?;
    let actual = content.finish();
    if stats.bytes != r.size || actual != r.content_hash {
        return Err(StoreError::HashMismatch {
            path: r.path.clone(),
            expected: r.content_hash,
            actual,
        }
        .into());
    }
    let mut tee = enc.finish().map_err(werr)?;
    tee.flush().map_err(werr)?;
    tee.inner.get_ref().sync_data().map_err(werr)?;
    Ok((tee.hash.finalize().to_hex().to_string(), tee.count))
}

/// The paths of `jobs` in levels: every path's references (within `jobs`) are in earlier
/// levels. Each level is sorted.
fn levels(jobs: &BTreeMap<StorePath, Job>) -> Vec<Vec<StorePath>> {
    let mut level: BTreeMap<&StorePath, usize> = BTreeMap::new();
    fn depth<'a>(
        p: &'a StorePath,
        jobs: &'a BTreeMap<StorePath, Job>,
        level: &mut BTreeMap<&'a StorePath, usize>,
        stack: &mut BTreeSet<&'a StorePath>,
    ) -> usize {
        if let Some(d) = level.get(p) {
            return *d;
        }
        // A cycle cannot be registered in a store; should one appear, it is cut here.
        if !stack.insert(p) {
            return 0;
        }
        let mut d = 0;
        if let Some(j) = jobs.get(p) {
            for r in &j.record.references {
                if r != p && jobs.contains_key(r) {
                    d = d.max(depth(r, jobs, level, stack) + 1);
                }
            }
        }
        stack.remove(p);
        level.insert(p, d);
        d
    }
    let mut stack = BTreeSet::new();
    for p in jobs.keys() {
        depth(p, jobs, &mut level, &mut stack);
    }
    let mut out: Vec<Vec<StorePath>> = Vec::new();
    for (p, d) in level {
        if out.len() <= d {
            out.resize_with(d + 1, Vec::new);
        }
        out[d].push(p.clone());
    }
    out
}

/// Run `f` over `items` on up to `jobs` threads; results in the order of `items`. After the
/// first error no new item is started, and that error is returned.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R, ShareError> + Sync,
) -> Result<Vec<R>, ShareError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = jobs.clamp(1, items.len().max(1));
    let mut parts: Vec<Result<Vec<(usize, R)>, ShareError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        match f(item) {
                            Ok(r) => out.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ShareError::Transport {
                        repo: String::new(),
                        message: "a worker thread failed".into(),
                    })
                })
            })
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for part in parts.drain(..) {
        all.extend(part?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// Which records [`sign_repository`] signs.
#[derive(Clone, Copy, Debug)]
pub enum SignWhich<'a> {
    /// The records of these paths (each must be in the repository).
    Paths(&'a [StorePath]),
    /// Every record the repository lists ([`Transport::list`]).
    All,
}

/// What [`sign_repository`] did.
#[derive(Clone, Debug, Default)]
pub struct SignReport {
    /// Records that got the new signature.
    pub signed: Vec<StorePath>,
    /// Records that already had a valid signature by the key (left untouched).
    pub unchanged: Vec<StorePath>,
    /// Records not signed because `trust` refused them, with the reason.
    pub refused: Vec<(StorePath, String)>,
}

/// Add `key`'s signature to records of the repository and rewrite each atomically (key
/// rotation: sign everything with the new key, then retire the old one). With `trust`, a
/// record is signed only when it passes [`Trust::check`] as it is (so a tampered or
/// foreign record is never blessed by the new key); refused records are listed in the
/// report. Without `trust` the caller vouches for every record.
pub fn sign_repository(
    transport: &dyn Transport,
    key: &SecretKey,
    which: SignWhich<'_>,
    trust: Option<&Trust>,
) -> Result<SignReport, ShareError> {
    let targets: Vec<(String, Option<StorePath>)> = match which {
        SignWhich::Paths(ps) => ps
            .iter()
            .map(|p| (record_key(p), Some(p.clone())))
            .collect(),
        SignWhich::All => transport
            .list("")?
            .into_iter()
            .filter(|k| {
                k.strip_suffix(".info")
                    .is_some_and(|h| h.len() == buildit_store::path::HASH_PART_LEN)
            })
            .map(|k| (k, None))
            .collect(),
    };
    let public = key.public();
    let outcomes = parallel(&targets, transport.upload_parallelism(), |(rkey, path)| {
        let bytes = transport
            .get(rkey, RECORD_LIMIT)?
            .ok_or_else(|| ShareError::BadRecord {
                what: format!("{}/{rkey}", transport.describe()),
                reason: "the repository does not have it".into(),
            })?;
        let mut record = match path {
            Some(p) => PathRecord::parse_for(p, &bytes)?,
            None => {
                let r = PathRecord::parse(&bytes)?;
                if record_key(&r.path) != *rkey {
                    return Err(ShareError::BadRecord {
                        what: format!("{}/{rkey}", transport.describe()),
                        reason: format!("it describes {}", r.path),
                    });
                }
                r
            }
        };
        if let Some(t) = trust {
            if let Err(e) = t.check(&record) {
                return Ok(Outcome::Refused(record.path, e.to_string()));
            }
        }
        let fp = record.fingerprint();
        let already = record.signatures.iter().any(|s| {
            parse_signature(s)
                .is_ok_and(|(n, sig)| n == key.name() && public.verify(fp.as_bytes(), &sig))
        });
        if already {
            return Ok(Outcome::Unchanged(record.path));
        }
        key.sign_record(&mut record);
        transport.put_bytes(rkey, &record.to_json())?;
        Ok(Outcome::Signed(record.path))
    })?;
    let mut report = SignReport::default();
    for o in outcomes {
        match o {
            Outcome::Signed(p) => report.signed.push(p),
            Outcome::Unchanged(p) => report.unchanged.push(p),
            Outcome::Refused(p, why) => report.refused.push((p, why)),
        }
    }
    Ok(report)
}

enum Outcome {
    Signed(StorePath),
    Unchanged(StorePath),
    Refused(StorePath, String),
}
