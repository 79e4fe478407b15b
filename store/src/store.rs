//! The store: objects under `ROOT/store`, their registration in the database, locks, GC roots,
//! garbage collection, verification, export and import.
//!
//! # Registration order (why a killed process never leaves a half-registered path)
//! 1. The object is written and normalised in a staging entry under `ROOT/var/buildit/tmp`
//!    whose name starts with the writer's pid (stale ones are removed by GC).
//! 2. Holding the path's lock (`locks/<hash>.lock`) and a shared GC lock, an unregistered
//!    leftover at the physical path (from a killed process) is removed and the staging entry is
//!    *renamed* to the physical path: the object appears complete or not at all.
//! 3. Then the database row and references are inserted in one transaction.
//!
//! A crash between 2 and 3 leaves a complete but unregistered object: `verify` ignores it, the
//! next registration of that path replaces it and `gc` removes it. The database therefore never
//! names a path whose object is absent (short of someone deleting objects by hand). GC deletes
//! in the opposite order: first the rows (one transaction), then the files.
//!
//! # Concurrency
//! Every operation that creates or hands out paths holds `gc.lock` shared and records the paths
//! as temporary roots of this process (`temproots/<pid>-<n>`, one file per `Store`, locked while the process lives); `gc`
//! and `delete` hold `gc.lock` exclusively, so they never race a registration and always see
//! every process's temporary roots. Two processes registering the same path serialise on the
//! path lock; the second finds the path valid and does nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::archive::{self, remove_tree, ArchiveError, ContentHash};
use crate::db::{Db, DbError};
use crate::derivation::{Derivation, FixedOutput, HashAlgo, HashMode};
use crate::layout::StoreLayout;
use crate::normalise::{normalise, normalise_unpacked, NormaliseError};
use crate::path::{PathError, StorePath, STORE_DIR};
use crate::refs::{RefScanner, ScanError};

/// Everything that can go wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Normalise(#[from] NormaliseError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("{path} refers to {reference}, which is not a valid store path")]
    MissingReference {
        path: StorePath,
        reference: StorePath,
    },
    #[error("{0} is not a valid store path")]
    NotValid(StorePath),
    #[error("cannot delete {path}: {reason}")]
    Alive { path: StorePath, reason: String },
    #[error("{path}: content hash mismatch (expected {expected}, got {actual})")]
    HashMismatch {
        path: StorePath,
        expected: ContentHash,
        actual: ContentHash,
    },
    #[error("{path}: the archive is {actual} bytes, its record says {expected}")]
    SizeMismatch {
        path: StorePath,
        expected: u64,
        actual: u64,
    },
    #[error("bad export stream: {0}")]
    Import(String),
    #[error("refusing to import {0}: it is input-addressed (its path cannot be recomputed from its content) and the stream is not trusted")]
    UntrustedImport(StorePath),
    #[error("refusing to import {path}: it claims to be content-addressed ({ca}), but its content gives the path {expected}")]
    ContentAddressMismatch {
        path: StorePath,
        ca: String,
        expected: String,
    },
    #[error("bad export stream: there is data after its end line")]
    ImportTrailingData,
    #[error("bad export stream: its paths refer to each other in a cycle ({})", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" -> "))]
    ImportCycle(Vec<StorePath>),
    #[error("cannot use {0} as a name: give a store object name with --name")]
    NoName(PathBuf),
    #[error("{0} is not a store path or a link to one")]
    NotAStorePath(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(DbError::Sqlite(e))
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the database knows about a valid path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    pub path: StorePath,
    pub content_hash: ContentHash,
    /// Size of the canonical archive in bytes.
    pub size: u64,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    /// Seconds since the Unix epoch.
    pub registration_time: i64,
    pub signatures: Vec<String>,
}

/// Options of [`Store::gc`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GcOptions {
    /// Only report what would be deleted.
    pub dry_run: bool,
    /// Stop after freeing at least this many bytes (archive sizes).
    pub max_bytes: Option<u64>,
}

/// What a garbage collection did (or would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub deleted: Vec<StorePath>,
    pub bytes_freed: u64,
    pub live: u64,
    /// Unregistered entries removed from the store directory.
    pub leftovers_removed: Vec<String>,
    /// Stale temporary entries removed from the tmp directory.
    pub stale_tmp_removed: u64,
    pub seconds: f64,
}

/// What verification found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub checked: u64,
    pub missing: Vec<StorePath>,
    pub corrupt: Vec<StorePath>,
    /// Paths unregistered by `--repair` (the broken ones and everything referring to them).
    pub unregistered: Vec<StorePath>,
}

impl VerifyReport {
    /// Whether every registered path is present (and intact, when contents were checked).
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// A GC root: the link that keeps `target` alive.
#[derive(Clone, Debug, Serialize)]
pub struct Root {
    pub link: PathBuf,
    pub target: StorePath,
}

/// The header of one object in an export stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ExportHeader {
    path: StorePath,
    content_hash: ContentHash,
    size: u64,
    references: BTreeSet<StorePath>,
    deriver: Option<StorePath>,
    signatures: Vec<String>,
    /// How the path follows from the content, when it is content-addressed
    /// ([`ContentAddress`]); absent for input-addressed paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
}

/// How a content-addressed path is computed from its object, written in an export header's
/// `ca` field: `source` (added trees, `.drv` files, `toFile` text: [`StorePath::for_source`]
/// of the content hash and the references) or `fixed:<mode>:<algo>:<hex>` (a fixed output:
/// [`StorePath::for_fixed`] of the declared hash, which the content must have).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentAddress {
    Source,
    Fixed(FixedOutput),
}

impl ContentAddress {
    /// The `ca` text of an export header.
    pub fn render(&self) -> String {
        match self {
            ContentAddress::Source => "source".to_string(),
            ContentAddress::Fixed(f) => format!(
                "fixed:{}:{}:{}",
                f.mode.name(),
                f.algo.name(),
                hex::encode(&f.hash)
            ),
        }
    }

    /// Parse the `ca` text of an export header.
    pub fn parse(s: &str) -> Option<ContentAddress> {
        if s == "source" {
            return Some(ContentAddress::Source);
        }
        let mut it = s.strip_prefix("fixed:")?.splitn(3, ':');
        let (mode, algo, hash) = (it.next()?, it.next()?, it.next()?);
        if hash.len() != 64 {
            return None;
        }
        FixedOutput::parse(hash, Some(algo), mode)
            .ok()
            .map(ContentAddress::Fixed)
    }

    /// The path an object with this content address, content hash, references and name has.
    fn path_for(
        &self,
        name: &str,
        content_hash: &ContentHash,
        references: &BTreeSet<StorePath>,
        this: &StorePath,
    ) -> Result<StorePath, PathError> {
        match self {
            ContentAddress::Source => {
                let others: Vec<StorePath> =
                    references.iter().filter(|r| *r != this).cloned().collect();
                StorePath::for_source(&content_hash.0, &others, references.contains(this), name)
            }
            ContentAddress::Fixed(f) => {
                StorePath::for_fixed(f.mode.name(), f.algo.name(), &f.hash, name)
            }
        }
    }
}

/// How [`Store::import`] treats the paths of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Accept input-addressed paths, whose path cannot be recomputed from their content.
    /// There is no signature checking yet, so this means the caller vouches for the stream
    /// (`store import --no-check-sigs`, or a copy between two local stores the user owns).
    /// Content-addressed paths are checked against their content either way.
    pub trust_input_addressed: bool,
}

/// A fresh directory under the store's tmp dir (the store's file system, so its entries can be
/// renamed into the store) for objects that arrive from elsewhere: unpack into it, check each
/// object with [`Store::check_object`], register them with [`Store::register_objects`]. The
/// directory and whatever is left in it are removed on drop; its name starts with this
/// process's id, so GC removes it if the process is killed first.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
}

impl StagingDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// First line of an export stream.
pub const EXPORT_MAGIC: &str = "buildit-export-1";

/// Lock files held by this process (flock locks are per open file, so a second lock in the
/// same process would deadlock; registration functions skip locking paths already held here).
static HELD_LOCKS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An exclusive lock on a store path (`locks/<hash>.lock`), released (and the lock file
/// removed) on drop.
pub struct PathLock {
    file: fs::File,
    lock_path: PathBuf,
}

impl Drop for PathLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock: waiters notice the unlinked file and retry.
        let _ = fs::remove_file(&self.lock_path);
        let _ = flock(self.file.as_raw_fd(), libc::LOCK_UN);
        if let Ok(mut held) = HELD_LOCKS.lock() {
            held.retain(|p| p != &self.lock_path);
        }
    }
}

/// `flock(2)`; EINTR and EWOULDBLOCK come back as errors for the caller to handle.
fn flock(fd: i32, op: i32) -> Result<(), nix::errno::Errno> {
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let r = unsafe { libc::flock(fd, op) };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

fn lock_file(lock_path: &Path, block: bool) -> Result<Option<PathLock>, StoreError> {
    loop {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(io_err(lock_path))?;
        let arg = if block {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        match flock(file.as_raw_fd(), arg) {
            Ok(()) => {}
            Err(nix::errno::Errno::EWOULDBLOCK) if !block => return Ok(None),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_err(lock_path)(e.into())),
        }
        // The previous holder unlinked the file after we opened it: lock the new one.
        let meta = file.metadata().map_err(io_err(lock_path))?;
        if meta.nlink() == 0 {
            continue;
        }
        if let Ok(mut held) = HELD_LOCKS.lock() {
            held.push(lock_path.to_path_buf());
        }
        return Ok(Some(PathLock {
            file,
            lock_path: lock_path.to_path_buf(),
        }));
    }
}

/// The shared/exclusive GC lock and this process's temporary roots.
struct GcState {
    file: Option<fs::File>,
    shared_depth: u32,
    temproots: Option<fs::File>,
    pending: Vec<u8>,
    rooted: HashSet<String>,
}

/// Holds the GC lock shared for a batch of operations (see [`Store::hold_gc_lock`]).
pub struct GcLockGuard<'a> {
    store: &'a Store,
}

impl Drop for GcLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.store.gc_unlock_shared();
    }
}

/// An open store.
pub struct Store {
    layout: StoreLayout,
    db: Db,
    gc: Mutex<GcState>,
    /// Which `Store` of this process this is (names its temporary-roots file).
    instance: u32,
}

/// Counts the `Store`s opened by this process.
static INSTANCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

fn parse_sigs(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl Store {
    /// Open the store at `layout`, creating its directories and database when absent.
    pub fn open(layout: StoreLayout) -> Result<Store, StoreError> {
        for d in [
            layout.store_dir(),
            layout.state_dir(),
            layout.log_dir(),
            layout.gcroots_dir(),
            layout.locks_dir(),
            layout.tmp_dir(),
            layout.state_dir().join("temproots"),
        ] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let db = Db::open(&layout.db_path())?;
        Ok(Store {
            layout,
            db,
            gc: Mutex::new(GcState {
                file: None,
                shared_depth: 0,
                temproots: None,
                pending: Vec::new(),
                rooted: HashSet::new(),
            }),
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Where this store lives.
    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    fn gc_state(&self) -> std::sync::MutexGuard<'_, GcState> {
        match self.gc.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn gc_lock_file(&self, st: &mut GcState) -> Result<i32, StoreError> {
        if st.file.is_none() {
            let p = self.layout.state_dir().join("gc.lock");
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&p)
                .map_err(io_err(&p))?;
            st.file = Some(f);
        }
        Ok(st.file.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1))
    }

    fn gc_lock_shared(&self) -> Result<(), StoreError> {
        let mut st = self.gc_state();
        if st.shared_depth == 0 {
            let fd = self.gc_lock_file(&mut st)?;
            loop {
                match flock(fd, libc::LOCK_SH) {
                    Ok(()) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(io_err(&self.layout.state_dir().join("gc.lock"))(e.into()))
                    }
                }
            }
        }
        st.shared_depth += 1;
        Ok(())
    }

    fn gc_unlock_shared(&self) -> Result<(), StoreError> {
        let mut st = self.gc_state();
        st.shared_depth = st.shared_depth.saturating_sub(1);
        if st.shared_depth == 0 {
            let flushed = self.flush_temproots(&mut st);
            if let Some(f) = &st.file {
                let _ = flock(f.as_raw_fd(), libc::LOCK_UN);
            }
            flushed?;
        }
        Ok(())
    }

    fn shared<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.gc_lock_shared()?;
        let r = f();
        let u = self.gc_unlock_shared();
        let v = r?;
        u?;
        Ok(v)
    }

    /// Hold the GC lock (shared) until the guard is dropped: a batch of `add_bytes` calls then
    /// costs one database lookup each for paths that already exist. GC waits meanwhile.
    pub fn hold_gc_lock(&self) -> Result<GcLockGuard<'_>, StoreError> {
        self.gc_lock_shared()?;
        Ok(GcLockGuard { store: self })
    }

    fn flush_temproots(&self, st: &mut GcState) -> Result<(), StoreError> {
        if st.pending.is_empty() {
            return Ok(());
        }
        // one file per Store instance: flock locks belong to open files, so two instances in one
        // process (the evaluator's and the scheduler's) must not share a file
        let p = self.layout.state_dir().join("temproots").join(format!(
            "{}-{}",
            std::process::id(),
            self.instance
        ));
        if st.temproots.is_none() {
            let f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&p)
                .map_err(io_err(&p))?;
            flock(f.as_raw_fd(), libc::LOCK_EX).map_err(|e| io_err(&p)(e.into()))?;
            st.temproots = Some(f);
        }
        let data = std::mem::take(&mut st.pending);
        if let Some(f) = st.temproots.as_mut() {
            f.write_all(&data).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Keep `path` alive against GC for as long as this process runs.
    pub fn add_temp_root(&self, path: &StorePath) {
        let mut st = self.gc_state();
        let base = path.base_name();
        if st.rooted.contains(&base) {
            return;
        }
        st.pending.extend_from_slice(base.as_bytes());
        st.pending.push(b'\n');
        st.rooted.insert(base);
        if st.shared_depth == 0 {
            // Not inside an operation: write it now (GC reads it under its exclusive lock).
            let _ = self.flush_temproots(&mut st);
        }
    }

    fn tmp_entry(&self, kind: &str) -> PathBuf {
        self.layout.tmp_dir().join(format!(
            "{}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            kind
        ))
    }

    /// A fresh path under the tmp dir (not created) for a build to write into; its name starts
    /// with this process's id, so GC removes it once the process is gone.
    pub fn new_tmp_path(&self, kind: &str) -> PathBuf {
        self.tmp_entry(kind)
    }

    fn lock_path_of(&self, p: &StorePath) -> PathBuf {
        self.layout
            .locks_dir()
            .join(format!("{}.lock", p.hash_part()))
    }

    /// Lock a store path (blocking) so no other process builds or registers it meanwhile.
    pub fn lock_path(&self, p: &StorePath) -> Result<PathLock, StoreError> {
        let lp = self.lock_path_of(p);
        lock_file(&lp, true)?
            .ok_or_else(|| io_err(&lp)(io::Error::new(io::ErrorKind::WouldBlock, "lock not taken")))
    }

    /// Lock a store path if nobody else holds it.
    pub fn try_lock_path(&self, p: &StorePath) -> Result<Option<PathLock>, StoreError> {
        lock_file(&self.lock_path_of(p), false)
    }

    /// Take the path lock unless this process already holds it.
    fn ensure_locked(&self, p: &StorePath) -> Result<Option<PathLock>, StoreError> {
        let lp = self.lock_path_of(p);
        let held = HELD_LOCKS.lock().map(|h| h.contains(&lp)).unwrap_or(false);
        if held {
            Ok(None)
        } else {
            self.lock_path(p).map(Some)
        }
    }

    fn id_of(&self, p: &StorePath) -> Result<Option<i64>, StoreError> {
        let mut st = self
            .db
            .conn
            .prepare_cached("SELECT id FROM valid_paths WHERE path = ?1")?;
        Ok(st
            .query_row([p.to_string()], |r| r.get::<_, i64>(0))
            .optional()?)
    }

    /// Whether `p` is registered.
    pub fn is_valid(&self, p: &StorePath) -> Result<bool, StoreError> {
        Ok(self.id_of(p)?.is_some())
    }

    /// Everything the database knows about `p`, or `None` when it is not valid.
    pub fn path_info(&self, p: &StorePath) -> Result<Option<PathInfo>, StoreError> {
        let row = {
            let mut st = self.db.conn.prepare_cached(
                "SELECT id, content_hash, size, deriver, registration_time, signatures \
                 FROM valid_paths WHERE path = ?1",
            )?;
            st.query_row([p.to_string()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .optional()?
        };
        let Some((id, hash, size, deriver, time, sigs)) = row else {
            return Ok(None);
        };
        let content_hash = hash
            .parse()
            .map_err(|e: archive::BadContentHash| self.corrupt_row(e.to_string()))?;
        let deriver = match deriver {
            Some(d) => Some(StorePath::parse(&d).map_err(|e| self.corrupt_row(e.to_string()))?),
            None => None,
        };
        Ok(Some(PathInfo {
            path: p.clone(),
            content_hash,
            size: size as u64,
            references: self.references_by_id(id)?,
            deriver,
            registration_time: time,
            signatures: parse_sigs(&sigs),
        }))
    }

    fn corrupt_row(&self, detail: String) -> StoreError {
        StoreError::Db(DbError::Foreign {
            path: self.db.path.clone(),
            detail: format!("bad row: {detail}"),
        })
    }

    fn parse_db_path(&self, s: &str) -> Result<StorePath, StoreError> {
        StorePath::parse(s).map_err(|e| self.corrupt_row(e.to_string()))
    }

    fn references_by_id(&self, id: i64) -> Result<BTreeSet<StorePath>, StoreError> {
        let mut st = self.db.conn.prepare_cached(
            "SELECT v.path FROM refs r JOIN valid_paths v ON v.id = r.reference WHERE r.referrer = ?1",
        )?;
        let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(self.parse_db_path(&r?)?);
        }
        Ok(out)
    }

    /// The paths `p` refers to (itself included when it refers to itself).
    pub fn references(&self, p: &StorePath) -> Result<BTreeSet<StorePath>, StoreError> {
        let id = self
            .id_of(p)?
            .ok_or_else(|| StoreError::NotValid(p.clone()))?;
        self.references_by_id(id)
    }

    /// The valid paths that refer to `p`.
    pub fn referrers(&self, p: &StorePath) -> Result<BTreeSet<StorePath>, StoreError> {
        let id = self
            .id_of(p)?
            .ok_or_else(|| StoreError::NotValid(p.clone()))?;
        let mut st = self.db.conn.prepare_cached(
            "SELECT v.path FROM refs r JOIN valid_paths v ON v.id = r.referrer WHERE r.reference = ?1",
        )?;
        let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(self.parse_db_path(&r?)?);
        }
        Ok(out)
    }

    /// The paths and everything they refer to, transitively (one recursive query per given
    /// path, not one per path of the closure).
    pub fn closure(&self, paths: &[StorePath]) -> Result<BTreeSet<StorePath>, StoreError> {
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut st = self.db.conn.prepare_cached(
            "WITH RECURSIVE c(id) AS (SELECT ?1 UNION \
               SELECT r.reference FROM refs r JOIN c ON r.referrer = c.id) \
             SELECT v.path FROM c JOIN valid_paths v ON v.id = c.id",
        )?;
        for p in paths {
            if seen.contains(p) {
                continue;
            }
            let id = self
                .id_of(p)?
                .ok_or_else(|| StoreError::NotValid(p.clone()))?;
            let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
            for r in rows {
                let r = r?;
                seen.insert(self.parse_db_path(&r)?);
            }
        }
        Ok(seen)
    }

    /// Record that output `output` of derivation `drv` is `path`.
    pub fn set_output(
        &self,
        drv: &StorePath,
        output: &str,
        path: &StorePath,
    ) -> Result<(), StoreError> {
        let mut st = self.db.conn.prepare_cached(
            "INSERT OR REPLACE INTO derivation_outputs (drv, output, path) VALUES (?1, ?2, ?3)",
        )?;
        st.execute(params![drv.to_string(), output, path.to_string()])?;
        Ok(())
    }

    /// The recorded outputs of derivation `drv`.
    pub fn outputs_of(&self, drv: &StorePath) -> Result<BTreeMap<String, StorePath>, StoreError> {
        let mut st = self
            .db
            .conn
            .prepare_cached("SELECT output, path FROM derivation_outputs WHERE drv = ?1")?;
        let rows = st.query_map([drv.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (o, p) = r?;
            out.insert(o, self.parse_db_path(&p)?);
        }
        Ok(out)
    }

    /// Record a realisation (the output path a derivation hash's output was built to).
    pub fn add_realisation(
        &self,
        drv_hash: &str,
        output: &str,
        path: &StorePath,
    ) -> Result<(), StoreError> {
        let mut st = self.db.conn.prepare_cached(
            "INSERT OR REPLACE INTO realisations (drv_hash, output, path) VALUES (?1, ?2, ?3)",
        )?;
        st.execute(params![drv_hash, output, path.to_string()])?;
        Ok(())
    }

    /// The realisation of a derivation hash's output, if recorded.
    pub fn realisation(
        &self,
        drv_hash: &str,
        output: &str,
    ) -> Result<Option<StorePath>, StoreError> {
        let mut st = self
            .db
            .conn
            .prepare_cached("SELECT path FROM realisations WHERE drv_hash = ?1 AND output = ?2")?;
        let p: Option<String> = st
            .query_row(params![drv_hash, output], |r| r.get(0))
            .optional()?;
        p.map(|p| self.parse_db_path(&p)).transpose()
    }

    /// Insert a registration (idempotent). The object must already be at its physical path.
    fn insert_info(
        &self,
        tx: &rusqlite::Transaction<'_>,
        info: &PathInfo,
    ) -> Result<Option<i64>, StoreError> {
        let inserted = {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO valid_paths (path, content_hash, size, deriver, registration_time, signatures) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            st.execute(params![
                info.path.to_string(),
                info.content_hash.to_string(),
                info.size as i64,
                info.deriver.as_ref().map(|d| d.to_string()),
                info.registration_time,
                info.signatures.join(" "),
            ])?
        };
        if inserted == 0 {
            return Ok(None);
        }
        Ok(Some(tx.last_insert_rowid()))
    }

    fn insert_refs(
        &self,
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        info: &PathInfo,
    ) -> Result<(), StoreError> {
        let mut ins =
            tx.prepare_cached("INSERT OR IGNORE INTO refs (referrer, reference) VALUES (?1, ?2)")?;
        let mut find = tx.prepare_cached("SELECT id FROM valid_paths WHERE path = ?1")?;
        for r in &info.references {
            let rid: Option<i64> = find
                .query_row([r.to_string()], |row| row.get(0))
                .optional()?;
            let rid = rid.ok_or_else(|| StoreError::MissingReference {
                path: info.path.clone(),
                reference: r.clone(),
            })?;
            ins.execute(params![id, rid])?;
        }
        Ok(())
    }

    /// Add a file or tree to the store as a source object (no references) and return its path.
    /// `name` defaults to the source's file name. Adding the same content again gives the
    /// same path (and does nothing).
    pub fn add_path(&self, src: &Path, name: Option<&str>) -> Result<StorePath, StoreError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => src
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| StoreError::NoName(src.into()))?,
        };
        crate::path::validate_name(&name)?;
        self.shared(|| {
            let staged = self.tmp_entry("add");
            let r = self.add_path_staged(src, &staged, &name);
            if fs::symlink_metadata(&staged).is_ok() {
                let _ = remove_tree(&staged);
            }
            r
        })
    }

    fn add_path_staged(
        &self,
        src: &Path,
        staged: &Path,
        name: &str,
    ) -> Result<StorePath, StoreError> {
        // The copy comes out normalised.
        let (hash, stats) = archive::copy_and_hash(src, staged)?;
        let path = StorePath::for_source(&hash.0, &[], false, name)?;
        self.add_temp_root(&path);
        if self.is_valid(&path)? {
            return Ok(path);
        }
        let _lock = self.ensure_locked(&path)?;
        if self.is_valid(&path)? {
            return Ok(path);
        }
        let info = PathInfo {
            path: path.clone(),
            content_hash: hash,
            size: stats.bytes,
            references: BTreeSet::new(),
            deriver: None,
            registration_time: now(),
            signatures: Vec::new(),
        };
        self.commit_object(staged, &info)?;
        Ok(path)
    }

    /// Add a single read-only regular file with these contents (a `.drv` file, `toFile` text)
    /// that refers to `references` (which must be valid). When the path is already valid this
    /// costs one database lookup.
    pub fn add_bytes(
        &self,
        name: &str,
        contents: &[u8],
        references: &[StorePath],
    ) -> Result<StorePath, StoreError> {
        let (hash, size) = archive::content_hash_of_bytes_with_size(contents, false);
        let path = StorePath::for_source(&hash.0, references, false, name)?;
        self.shared(|| {
            self.add_temp_root(&path);
            if self.is_valid(&path)? {
                return Ok(path.clone());
            }
            for r in references {
                if !self.is_valid(r)? {
                    return Err(StoreError::MissingReference {
                        path: path.clone(),
                        reference: r.clone(),
                    });
                }
            }
            let staged = self.tmp_entry("bytes");
            let r = (|| -> Result<(), StoreError> {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&staged)
                    .map_err(io_err(&staged))?;
                f.write_all(contents).map_err(io_err(&staged))?;
                drop(f);
                normalise(&staged)?;
                let info = PathInfo {
                    path: path.clone(),
                    content_hash: hash,
                    size,
                    references: references.iter().cloned().collect(),
                    deriver: None,
                    registration_time: now(),
                    signatures: Vec::new(),
                };
                // No path lock needed: the object is one file, so renaming it over a
                // concurrent writer's identical file is atomic and harmless, and the insert
                // is idempotent. (Something else at the path — a directory — takes the locked
                // route, which removes it first.)
                let phys = self.layout.physical(&path);
                if fs::symlink_metadata(&phys).is_ok_and(|m| !m.is_file()) {
                    let _lock = self.ensure_locked(&path)?;
                    if self.is_valid(&path)? {
                        return Ok(());
                    }
                    return self.commit_object(&staged, &info);
                }
                fs::rename(&staged, &phys).map_err(io_err(&phys))?;
                self.insert_committed(&info)
            })();
            if fs::symlink_metadata(&staged).is_ok() {
                let _ = fs::remove_file(&staged);
            }
            r.map(|_| path.clone())
        })
    }

    /// Register a build's output: `staged` (under the tmp dir) is normalised, scanned for
    /// references among `ref_candidates` and `path` itself, hashed, and moved to `path`'s
    /// physical location with its database row committed. Takes the path lock unless this
    /// process holds it already (builders lock the path for the whole build). When `path` is
    /// already valid the staged copy is removed and the existing registration returned.
    pub fn register_output(
        &self,
        staged: &Path,
        path: &StorePath,
        ref_candidates: &[StorePath],
        deriver: Option<&StorePath>,
    ) -> Result<PathInfo, StoreError> {
        self.shared(|| {
            self.add_temp_root(path);
            let _lock = self.ensure_locked(path)?;
            if let Some(info) = self.path_info(path)? {
                let _ = remove_tree(staged);
                return Ok(info);
            }
            normalise(staged)?;
            let mut cands: Vec<StorePath> = ref_candidates.to_vec();
            cands.push(path.clone());
            let mut scanner = RefScanner::new(&cands)?;
            scanner.scan_path(staged)?;
            let references = scanner.found();
            let (hash, stats) = archive::content_hash_with_stats(staged)?;
            let info = PathInfo {
                path: path.clone(),
                content_hash: hash,
                size: stats.bytes,
                references,
                deriver: deriver.cloned(),
                registration_time: now(),
                signatures: Vec::new(),
            };
            for r in &info.references {
                if r != path && !self.is_valid(r)? {
                    return Err(StoreError::MissingReference {
                        path: path.clone(),
                        reference: r.clone(),
                    });
                }
            }
            self.commit_object(staged, &info)?;
            Ok(info)
        })
    }

    /// Move a complete, normalised staging entry to its physical path and register it (its
    /// references may include itself). The caller holds the path lock and the shared GC lock.
    fn commit_object(&self, staged: &Path, info: &PathInfo) -> Result<(), StoreError> {
        let phys = self.layout.physical(&info.path);
        let both_files = fs::symlink_metadata(staged).is_ok_and(|m| m.is_file())
            && fs::symlink_metadata(&phys).is_ok_and(|m| m.is_file());
        // A single file replaces an unregistered leftover atomically (the same bytes, as the
        // path is derived from them); anything else left by a killed process is removed first
        // (we hold the path lock and the path is not valid).
        if !both_files && fs::symlink_metadata(&phys).is_ok() {
            remove_tree(&phys).map_err(io_err(&phys))?;
        }
        archive::move_entry(staged, &phys).map_err(io_err(&phys))?;
        let r = self.insert_committed(info);
        if r.is_err() {
            let _ = remove_tree(&phys);
        }
        r
    }

    /// One transaction inserting `info` (idempotent).
    fn insert_committed(&self, info: &PathInfo) -> Result<(), StoreError> {
        let tx = self.db.conn.unchecked_transaction()?;
        self.insert_many(&tx, std::slice::from_ref(info))?;
        tx.commit()?;
        Ok(())
    }

    /// Insert several registrations (rows first, then references, so they may refer to each
    /// other and to themselves).
    fn insert_many(
        &self,
        tx: &rusqlite::Transaction<'_>,
        infos: &[PathInfo],
    ) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        for info in infos {
            if let Some(id) = self.insert_info(tx, info)? {
                ids.push((id, info));
            }
        }
        for (id, info) in ids {
            self.insert_refs(tx, id, info)?;
        }
        Ok(())
    }

    /// Resolve a user-given path: `/bld/store/...`, the physical `ROOT/store/...`, or a link
    /// (such as `./result`) to either. Returns the store path and the sub-path inside it.
    pub fn resolve(&self, arg: &str) -> Result<(StorePath, String), StoreError> {
        if let Ok((p, rest)) = StorePath::parse_prefix(arg) {
            return Ok((p, rest.to_string()));
        }
        let sd = self.layout.store_dir();
        let try_phys = |p: &Path| -> Option<(StorePath, String)> {
            let rel = p.strip_prefix(&sd).ok()?;
            let s = rel.to_str()?;
            let (first, rest) = match s.find('/') {
                Some(i) => (&s[..i], &s[i..]),
                None => (s, ""),
            };
            let sp = StorePath::parse_base_name(first).ok()?;
            Some((sp, rest.to_string()))
        };
        let p = Path::new(arg);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map_err(io_err(p))?.join(p)
        };
        if let Some(r) = try_phys(&abs) {
            return Ok(r);
        }
        // Follow links one at a time: the last hop into the store names the object.
        let mut cur = abs;
        for _ in 0..40 {
            let Ok(t) = fs::read_link(&cur) else { break };
            let t = if t.is_absolute() {
                t
            } else {
                cur.parent().map(|d| d.join(&t)).unwrap_or(t)
            };
            if let Some(s) = t.to_str() {
                if let Ok((sp, rest)) = StorePath::parse_prefix(s) {
                    return Ok((sp, rest.to_string()));
                }
            }
            if let Some(r) = try_phys(&t) {
                return Ok(r);
            }
            cur = t;
        }
        if let Ok(c) = fs::canonicalize(arg) {
            let sdc = fs::canonicalize(&sd).unwrap_or(sd.clone());
            if let Ok(rel) = c.strip_prefix(&sdc) {
                if let Some(r) = try_phys(&sd.join(rel)) {
                    return Ok(r);
                }
            }
        }
        Err(StoreError::NotAStorePath(arg.to_string()))
    }

    /// Make `link` (e.g. `./result`) a symlink to `target`'s object and register it as a GC
    /// root: an indirect root under `gcroots/auto/` points at the link, so removing the link
    /// ends the root.
    pub fn add_root(&self, link: &Path, target: &StorePath) -> Result<(), StoreError> {
        if !self.is_valid(target)? {
            return Err(StoreError::NotValid(target.clone()));
        }
        let abs = if link.is_absolute() {
            link.to_path_buf()
        } else {
            std::env::current_dir().map_err(io_err(link))?.join(link)
        };
        if let Ok(m) = fs::symlink_metadata(&abs) {
            if !m.file_type().is_symlink() {
                return Err(io_err(&abs)(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "exists and is not a symlink; refusing to replace it",
                )));
            }
        }
        let tmp = abs.with_file_name(format!(
            ".{}.tmp-{}",
            abs.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(self.layout.physical(target), &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &abs).map_err(io_err(&abs))?;
        let auto = self.layout.gcroots_dir().join("auto");
        fs::create_dir_all(&auto).map_err(io_err(&auto))?;
        let key = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
        let root = auto.join(&key.as_str()[..32]);
        let _ = fs::remove_file(&root);
        std::os::unix::fs::symlink(&abs, &root).map_err(io_err(&root))?;
        Ok(())
    }

    /// The GC roots: every link under `gcroots/` (recursively) that leads, directly or through
    /// an out-link, to a store object. Indirect roots whose out-link is gone are removed.
    pub fn roots(&self) -> Result<Vec<Root>, StoreError> {
        let mut out = Vec::new();
        self.scan_roots(&self.layout.gcroots_dir(), &mut out)?;
        out.sort_by(|a, b| a.link.cmp(&b.link));
        Ok(out)
    }

    fn scan_roots(&self, dir: &Path, out: &mut Vec<Root>) -> Result<(), StoreError> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(dir)(e)),
        };
        for e in rd {
            let e = e.map_err(io_err(dir))?;
            let p = e.path();
            let ft = e.file_type().map_err(io_err(&p))?;
            if ft.is_dir() {
                self.scan_roots(&p, out)?;
            } else if ft.is_symlink() {
                let Ok(t) = fs::read_link(&p) else { continue };
                let direct = t.to_str().and_then(|s| self.resolve(s).ok());
                if let Some((sp, _)) = direct {
                    out.push(Root {
                        link: p.clone(),
                        target: sp,
                    });
                    continue;
                }
                // Indirect: the root points at an out-link elsewhere.
                match fs::symlink_metadata(&t) {
                    Err(_) => {
                        let _ = fs::remove_file(&p);
                    }
                    Ok(_) => {
                        if let Some(s) = t.to_str() {
                            if let Ok((sp, _)) = self.resolve(s) {
                                out.push(Root {
                                    link: t.clone(),
                                    target: sp,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Temporary roots of live processes; stale files are removed.
    fn temp_roots(&self) -> Result<BTreeSet<StorePath>, StoreError> {
        let dir = self.layout.state_dir().join("temproots");
        let mut out = BTreeSet::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(_) => return Ok(out),
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(mut f) = fs::OpenOptions::new().read(true).open(&p) else {
                continue;
            };
            match flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) {
                Ok(()) => {
                    // Its owner is gone (the owner holds an exclusive lock while alive).
                    let _ = fs::remove_file(&p);
                    continue;
                }
                Err(_) => {
                    let mut s = String::new();
                    let _ = f.read_to_string(&mut s);
                    for line in s.lines() {
                        if let Ok(sp) = StorePath::parse_base_name(line) {
                            out.insert(sp);
                        }
                    }
                }
            }
        }
        // This process's own roots (its file is locked by another descriptor).
        let st = self.gc_state();
        for b in &st.rooted {
            if let Ok(sp) = StorePath::parse_base_name(b) {
                out.insert(sp);
            }
        }
        Ok(out)
    }

    fn gc_lock_exclusive(&self) -> Result<(), StoreError> {
        let mut st = self.gc_state();
        let fd = self.gc_lock_file(&mut st)?;
        loop {
            match flock(fd, libc::LOCK_EX) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io_err(&self.layout.state_dir().join("gc.lock"))(e.into())),
            }
        }
    }

    fn gc_unlock_exclusive(&self) {
        let st = self.gc_state();
        if let Some(f) = &st.file {
            let _ = flock(f.as_raw_fd(), libc::LOCK_UN);
        }
    }

    /// The whole reference graph in memory: (id → (path, size), id → references).
    fn load_graph(&self) -> Result<Graph, StoreError> {
        let mut g = Graph::default();
        {
            let mut st = self
                .db
                .conn
                .prepare("SELECT id, path, size FROM valid_paths")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for r in rows {
                let (id, p, size) = r?;
                let sp = self.parse_db_path(&p)?;
                g.by_path.insert(sp.clone(), id);
                g.nodes.insert(id, (sp, size as u64));
            }
        }
        let mut st = self
            .db
            .conn
            .prepare("SELECT referrer, reference FROM refs")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for r in rows {
            let (a, b) = r?;
            if a != b {
                g.refs.entry(a).or_default().push(b);
                g.rev.entry(b).or_default().push(a);
            }
        }
        Ok(g)
    }

    fn live_set(&self, g: &Graph) -> Result<HashSet<i64>, StoreError> {
        let mut roots: Vec<StorePath> = self.roots()?.into_iter().map(|r| r.target).collect();
        roots.extend(self.temp_roots()?);
        let mut live = HashSet::new();
        let mut todo: Vec<i64> = roots
            .iter()
            .filter_map(|r| g.by_path.get(r).copied())
            .collect();
        while let Some(id) = todo.pop() {
            if !live.insert(id) {
                continue;
            }
            if let Some(rs) = g.refs.get(&id) {
                todo.extend(rs.iter().filter(|r| !live.contains(r)));
            }
        }
        Ok(live)
    }

    /// Delete rows (one transaction), then the objects.
    fn delete_ids(&self, g: &Graph, ids: &[i64]) -> Result<(), StoreError> {
        {
            let tx = self.db.conn.unchecked_transaction()?;
            {
                let mut dr = tx.prepare_cached("DELETE FROM refs WHERE referrer = ?1")?;
                let mut dp = tx.prepare_cached("DELETE FROM valid_paths WHERE id = ?1")?;
                let mut dd = tx.prepare_cached("DELETE FROM derivation_outputs WHERE drv = ?1")?;
                for id in ids {
                    dr.execute([id])?;
                    dp.execute([id])?;
                    if let Some((p, _)) = g.nodes.get(id) {
                        if p.is_derivation() {
                            dd.execute([p.to_string()])?;
                        }
                    }
                }
            }
            tx.commit()?;
        }
        for id in ids {
            if let Some((p, _)) = g.nodes.get(id) {
                let phys = self.layout.physical(p);
                match remove_tree(&phys) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&phys)(e)),
                }
            }
        }
        Ok(())
    }

    /// Collect garbage: delete every valid path not reachable from a root or a live process's
    /// temporary root (referrers before their references), unregistered leftovers in the store
    /// directory, and temporary entries of dead processes.
    pub fn gc(&self, opts: GcOptions) -> Result<GcReport, StoreError> {
        let start = Instant::now();
        self.gc_lock_exclusive()?;
        let r = self.gc_locked(opts);
        self.gc_unlock_exclusive();
        let mut rep = r?;
        rep.seconds = start.elapsed().as_secs_f64();
        Ok(rep)
    }

    fn gc_locked(&self, opts: GcOptions) -> Result<GcReport, StoreError> {
        let g = self.load_graph()?;
        let live = self.live_set(&g)?;
        let mut rep = GcReport {
            live: live.len() as u64,
            ..GcReport::default()
        };
        // Dead paths in an order where referrers come before their references.
        let dead: HashSet<i64> = g
            .nodes
            .keys()
            .copied()
            .filter(|id| !live.contains(id))
            .collect();
        let mut indeg: HashMap<i64, usize> = dead.iter().map(|id| (*id, 0)).collect();
        for id in &dead {
            for r in g.refs.get(id).into_iter().flatten() {
                if let Some(n) = indeg.get_mut(r) {
                    *n += 1;
                }
            }
        }
        let mut ready: Vec<i64> = indeg
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        ready.sort_by(|a, b| g.nodes[b].0.cmp(&g.nodes[a].0));
        let mut order = Vec::new();
        while let Some(id) = ready.pop() {
            if let Some(limit) = opts.max_bytes {
                if rep.bytes_freed >= limit {
                    break;
                }
            }
            order.push(id);
            rep.bytes_freed += g.nodes[&id].1;
            for r in g.refs.get(&id).into_iter().flatten() {
                if let Some(n) = indeg.get_mut(r) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(*r);
                    }
                }
            }
        }
        rep.deleted = order.iter().map(|id| g.nodes[id].0.clone()).collect();
        if opts.dry_run {
            return Ok(rep);
        }
        self.delete_ids(&g, &order)?;
        // Unregistered leftovers (only when not stopping early).
        if opts.max_bytes.is_none() {
            let sd = self.layout.store_dir();
            let valid: HashSet<String> = g
                .nodes
                .iter()
                .filter(|(id, _)| !order.contains(id))
                .map(|(_, (p, _))| p.base_name())
                .collect();
            for e in fs::read_dir(&sd).map_err(io_err(&sd))?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if valid.contains(&name) {
                    continue;
                }
                let p = e.path();
                if remove_tree(&p).is_ok() {
                    rep.leftovers_removed.push(name);
                }
            }
        }
        // Temporary entries of dead processes.
        let td = self.layout.tmp_dir();
        if let Ok(rd) = fs::read_dir(&td) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
                if let Some(pid) = pid {
                    if pid as u32 != std::process::id()
                        && !pid_alive(pid)
                        && remove_tree(&e.path()).is_ok()
                    {
                        rep.stale_tmp_removed += 1;
                    }
                }
            }
        }
        Ok(rep)
    }

    /// Delete these paths; refuses (deleting nothing) when one is reachable from a root or
    /// referred to by a valid path that is not being deleted.
    pub fn delete(&self, paths: &[StorePath]) -> Result<Vec<StorePath>, StoreError> {
        self.gc_lock_exclusive()?;
        let r = (|| {
            let g = self.load_graph()?;
            let live = self.live_set(&g)?;
            let mut ids = Vec::new();
            for p in paths {
                let id = *g
                    .by_path
                    .get(p)
                    .ok_or_else(|| StoreError::NotValid(p.clone()))?;
                if live.contains(&id) {
                    return Err(StoreError::Alive {
                        path: p.clone(),
                        reason: "it is reachable from a GC root (see `buildit store roots`)".into(),
                    });
                }
                ids.push(id);
            }
            let set: HashSet<i64> = ids.iter().copied().collect();
            for id in &ids {
                for r in g.rev.get(id).into_iter().flatten() {
                    if !set.contains(r) {
                        return Err(StoreError::Alive {
                            path: g.nodes[id].0.clone(),
                            reason: format!("{} refers to it", g.nodes[r].0),
                        });
                    }
                }
            }
            // Referrers first.
            let mut order = Vec::new();
            let mut done = HashSet::new();
            fn visit(
                id: i64,
                g: &Graph,
                set: &HashSet<i64>,
                done: &mut HashSet<i64>,
                order: &mut Vec<i64>,
            ) {
                if !done.insert(id) {
                    return;
                }
                for r in g.rev.get(&id).into_iter().flatten() {
                    if set.contains(r) {
                        visit(*r, g, set, done, order);
                    }
                }
                order.push(id);
            }
            for id in &ids {
                visit(*id, &g, &set, &mut done, &mut order);
            }
            self.delete_ids(&g, &order)?;
            Ok(order.iter().map(|id| g.nodes[id].0.clone()).collect())
        })();
        self.gc_unlock_exclusive();
        r
    }

    /// Check that every registered path has its object and (with `check_contents`) that the
    /// object's content hash is the registered one. With `repair`, broken paths and everything
    /// referring to them are unregistered (corrupt objects deleted), so the database again
    /// describes only intact closures. Unregistered leftovers are ignored.
    pub fn verify(&self, check_contents: bool, repair: bool) -> Result<VerifyReport, StoreError> {
        let mut rep = VerifyReport::default();
        let rows: Vec<(String, String)> = {
            let mut st = self
                .db
                .conn
                .prepare("SELECT path, content_hash FROM valid_paths ORDER BY path")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (p, h) in rows {
            let sp = self.parse_db_path(&p)?;
            rep.checked += 1;
            let phys = self.layout.physical(&sp);
            if fs::symlink_metadata(&phys).is_err() {
                rep.missing.push(sp);
                continue;
            }
            if check_contents {
                let expected: Option<ContentHash> = h.parse().ok();
                let actual = archive::content_hash(&phys).ok();
                if expected.is_none() || actual != expected {
                    rep.corrupt.push(sp);
                }
            }
        }
        if repair && !rep.ok() {
            self.gc_lock_exclusive()?;
            let r = (|| {
                let g = self.load_graph()?;
                let mut todo: Vec<i64> = rep
                    .missing
                    .iter()
                    .chain(&rep.corrupt)
                    .filter_map(|p| g.by_path.get(p).copied())
                    .collect();
                let mut bad = HashSet::new();
                while let Some(id) = todo.pop() {
                    if bad.insert(id) {
                        todo.extend(g.rev.get(&id).into_iter().flatten().copied());
                    }
                }
                let tx = self.db.conn.unchecked_transaction()?;
                {
                    let mut dr = tx.prepare_cached("DELETE FROM refs WHERE referrer = ?1")?;
                    let mut dp = tx.prepare_cached("DELETE FROM valid_paths WHERE id = ?1")?;
                    for id in &bad {
                        dr.execute([id])?;
                        dp.execute([id])?;
                    }
                }
                tx.commit()?;
                for p in &rep.corrupt {
                    let _ = remove_tree(&self.layout.physical(p));
                }
                let mut un: Vec<StorePath> = bad.iter().map(|id| g.nodes[id].0.clone()).collect();
                un.sort();
                Ok::<_, StoreError>(un)
            })();
            self.gc_unlock_exclusive();
            rep.unregistered = r?;
        }
        Ok(rep)
    }

    /// The content address of a valid path, when the store can tell: a source path (its path
    /// is recomputed from the content hash and references), or the output of a fixed-output
    /// derivation whose `.drv` (the registered deriver) is in this store.
    pub fn content_address(&self, info: &PathInfo) -> Option<ContentAddress> {
        let p = &info.path;
        if ContentAddress::Source
            .path_for(p.name(), &info.content_hash, &info.references, p)
            .is_ok_and(|q| q == *p)
        {
            return Some(ContentAddress::Source);
        }
        let deriver = info.deriver.as_ref()?;
        if !self.is_valid(deriver).ok()? {
            return None;
        }
        let bytes = fs::read(self.layout.physical(deriver)).ok()?;
        let f = Derivation::decode(&bytes).ok()?.fixed_output()?.clone();
        let ca = ContentAddress::Fixed(f);
        ca.path_for(p.name(), &info.content_hash, &info.references, p)
            .is_ok_and(|q| q == *p)
            .then_some(ca)
    }

    /// Write an export stream of exactly these paths (each must be valid), references before
    /// referrers: a magic line, then per path a JSON header line and its canonical archive, then
    /// an end line `{"end":N}`. Content-addressed paths carry their content address (`ca`),
    /// which the importer checks. Symlinks in objects are written as symlinks, never followed.
    pub fn export<W: Write>(&self, paths: &[StorePath], out: W) -> Result<u64, StoreError> {
        let mut out = io::BufWriter::new(out);
        let set: BTreeSet<StorePath> = paths.iter().cloned().collect();
        let mut order = Vec::new();
        let mut done = HashSet::new();
        let mut infos = HashMap::new();
        for p in &set {
            let info = self
                .path_info(p)?
                .ok_or_else(|| StoreError::NotValid(p.clone()))?;
            infos.insert(p.clone(), info);
        }
        fn visit(
            p: &StorePath,
            infos: &HashMap<StorePath, PathInfo>,
            done: &mut HashSet<StorePath>,
            order: &mut Vec<StorePath>,
        ) {
            if !done.insert(p.clone()) {
                return;
            }
            if let Some(i) = infos.get(p) {
                for r in &i.references {
                    if r != p && infos.contains_key(r) {
                        visit(r, infos, done, order);
                    }
                }
            }
            order.push(p.clone());
        }
        for p in &set {
            visit(p, &infos, &mut done, &mut order);
        }
        let w = |e: io::Error| StoreError::Import(format!("writing the export stream: {e}"));
        writeln!(out, "{EXPORT_MAGIC}").map_err(w)?;
        for p in &order {
            let info = &infos[p];
            let h = ExportHeader {
                path: p.clone(),
                content_hash: info.content_hash,
                size: info.size,
                references: info.references.clone(),
                deriver: info.deriver.clone(),
                signatures: info.signatures.clone(),
                ca: self.content_address(info).map(|c| c.render()),
            };
            let line = serde_json::to_string(&h).map_err(|e| StoreError::Import(e.to_string()))?;
            writeln!(out, "{line}").map_err(w)?;
            let stats = archive::write_archive(&self.layout.physical(p), "", &mut out)?;
            if stats.bytes != info.size {
                return Err(StoreError::HashMismatch {
                    path: p.clone(),
                    expected: info.content_hash,
                    actual: archive::content_hash(&self.layout.physical(p))?,
                });
            }
        }
        writeln!(out, "{{\"end\":{}}}", order.len()).map_err(w)?;
        out.flush().map_err(w)?;
        Ok(order.len() as u64)
    }

    /// Read an export stream: every object is unpacked and checked against its content hash
    /// and size; every path is checked against its content when it is content-addressed
    /// (`ca` in its header, or a source path recomputed from its content hash) and refused
    /// when it is input-addressed unless `opts` trusts those; the stream must end exactly
    /// after its end line, list no path twice, and its paths must not refer to each other in
    /// a cycle (self-references are fine); every reference must be valid or in the stream.
    /// All of that before anything is registered; then all are registered in one
    /// transaction. A truncated, corrupt or refused stream registers nothing.
    pub fn import<R: Read>(
        &self,
        input: R,
        opts: ImportOptions,
    ) -> Result<Vec<StorePath>, StoreError> {
        self.shared(|| {
            let work = self.staging_dir("import")?;
            self.import_into(input, work.path(), opts)
        })
    }

    /// A new [`StagingDir`] (created) whose name ends in `kind`.
    pub fn staging_dir(&self, kind: &str) -> Result<StagingDir, StoreError> {
        let path = self.tmp_entry(kind);
        fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(StagingDir { path })
    }

    /// Check an object that was unpacked (with [`archive::unpack_store_object`]) into `dir`
    /// against what its source claims (`info`, and `ca`: its content address as
    /// [`ContentAddress::render`] writes it, when it claims one): the object is normalised,
    /// its content hash and archive size must be `info`'s, and its path must follow from its
    /// content ([`ContentAddress`]: the claimed one, else a source path or blake3-recursive
    /// fixed output recomputed) unless `opts` trusts input-addressed paths. Registers nothing
    /// and needs no open store, so objects can be checked on several threads at once.
    pub fn check_object(
        info: &PathInfo,
        ca: Option<&str>,
        dir: &Path,
        opts: ImportOptions,
    ) -> Result<(), StoreError> {
        normalise(dir)?;
        let (actual, stats) = archive::content_hash_with_stats(dir)?;
        if actual != info.content_hash {
            return Err(StoreError::HashMismatch {
                path: info.path.clone(),
                expected: info.content_hash,
                actual,
            });
        }
        if stats.bytes != info.size {
            return Err(StoreError::SizeMismatch {
                path: info.path.clone(),
                expected: info.size,
                actual: stats.bytes,
            });
        }
        Store::check_import_path(info, ca, dir, opts)
    }

    /// [`Store::check_object`] for an object unpacked from an archive whose exact bytes had
    /// blake3 `streamed` (`stats` are the unpacker's). When that and the archive's length are
    /// `info`'s content hash and size, the bytes were the canonical archive that the content
    /// hash names (a second archive with that hash would be a blake3 collision), so the object
    /// is what the hash describes and is not read and hashed again: it is normalised (no walk
    /// when the unpacker wrote canonical metadata, [`normalise_unpacked`]) and its path checked.
    /// Otherwise (an archive that is not canonical) it is checked in full.
    pub fn check_unpacked(
        info: &PathInfo,
        ca: Option<&str>,
        dir: &Path,
        opts: ImportOptions,
        streamed: ContentHash,
        stats: &archive::ArchiveStats,
    ) -> Result<(), StoreError> {
        if (streamed, stats.bytes) != (info.content_hash, info.size) {
            return Store::check_object(info, ca, dir, opts);
        }
        normalise_unpacked(dir, stats.canonical)?;
        Store::check_import_path(info, ca, dir, opts)
    }

    /// Register objects checked with [`Store::check_object`], each staged at its `PathBuf`
    /// (inside a [`StagingDir`]), all or nothing: their references must be valid or among
    /// them, they must not refer to each other in a cycle (self-references are fine), a path
    /// listed twice is registered once. Every path is locked (in sorted order, so two
    /// registrations cannot deadlock), the new objects are moved into place and all rows
    /// are committed in one transaction; paths already valid are left as they are. Returns
    /// the paths in the order given.
    pub fn register_objects(
        &self,
        objects: Vec<(PathBuf, PathInfo)>,
    ) -> Result<Vec<StorePath>, StoreError> {
        self.shared(|| self.register_staged(objects))
    }

    /// Check an unpacked object's path against its content: the header's content address,
    /// else a source path or a blake3-recursive fixed output recomputed from the content hash;
    /// anything else is input-addressed and needs `opts.trust_input_addressed`.
    fn check_import_path(
        h: &PathInfo,
        ca: Option<&str>,
        dest: &Path,
        opts: ImportOptions,
    ) -> Result<(), StoreError> {
        let p = &h.path;
        if let Some(text) = ca {
            let ca = ContentAddress::parse(text).ok_or_else(|| {
                StoreError::Import(format!("{p}: unknown content address '{text}'"))
            })?;
            let expected = ca.path_for(p.name(), &h.content_hash, &h.references, p)?;
            let content_ok = match &ca {
                ContentAddress::Source => true,
                ContentAddress::Fixed(f) => {
                    archive::fixed_output_hash(dest, f.mode, f.algo)? == f.hash
                }
            };
            if expected != *p || !content_ok {
                return Err(StoreError::ContentAddressMismatch {
                    path: p.clone(),
                    ca: text.to_string(),
                    expected: if content_ok {
                        expected.to_string()
                    } else {
                        "a different hash than the declared one".to_string()
                    },
                });
            }
            return Ok(());
        }
        let free = [
            ContentAddress::Source,
            ContentAddress::Fixed(FixedOutput {
                mode: HashMode::Recursive,
                algo: HashAlgo::Blake3,
                hash: h.content_hash.0.to_vec(),
            }),
        ];
        for ca in free {
            if ca
                .path_for(p.name(), &h.content_hash, &h.references, p)
                .is_ok_and(|q| q == *p)
            {
                return Ok(());
            }
        }
        if opts.trust_input_addressed {
            Ok(())
        } else {
            Err(StoreError::UntrustedImport(p.clone()))
        }
    }

    fn import_into<R: Read>(
        &self,
        input: R,
        work: &Path,
        opts: ImportOptions,
    ) -> Result<Vec<StorePath>, StoreError> {
        let bad = |m: String| StoreError::Import(m);
        let mut rd = io::BufReader::with_capacity(1 << 20, input);
        let mut line = Vec::new();
        read_line(&mut rd, &mut line)?;
        if line != EXPORT_MAGIC.as_bytes() {
            return Err(bad(format!("it does not start with '{EXPORT_MAGIC}'")));
        }
        let mut staged: Vec<(PathBuf, PathInfo)> = Vec::new();
        let mut in_stream: HashSet<StorePath> = HashSet::new();
        loop {
            read_line(&mut rd, &mut line)?;
            let v: serde_json::Value =
                serde_json::from_slice(&line).map_err(|e| bad(format!("bad header line: {e}")))?;
            if let Some(n) = v.get("end") {
                if n.as_u64() != Some(staged.len() as u64) {
                    return Err(bad(format!(
                        "the end line counts {n} objects, the stream held {}",
                        staged.len()
                    )));
                }
                break;
            }
            let h: ExportHeader =
                serde_json::from_value(v).map_err(|e| bad(format!("bad header line: {e}")))?;
            if in_stream.contains(&h.path) {
                return Err(bad(format!("{} appears twice", h.path)));
            }
            let dest = work.join(staged.len().to_string());
            let mut take = (&mut rd).take(h.size);
            let stats = archive::unpack_store_object(&mut take, &dest)
                .map_err(|e| bad(format!("{}: {e}", h.path)))?;
            if stats.bytes != h.size || take.limit() != 0 {
                return Err(bad(format!(
                    "{}: the archive is {} bytes, the header says {}",
                    h.path, stats.bytes, h.size
                )));
            }
            let info = PathInfo {
                path: h.path,
                content_hash: h.content_hash,
                size: h.size,
                references: h.references,
                deriver: h.deriver,
                registration_time: now(),
                signatures: h.signatures,
            };
            Store::check_object(&info, h.ca.as_deref(), &dest, opts)?;
            in_stream.insert(info.path.clone());
            staged.push((dest, info));
        }
        let mut extra = [0u8; 1];
        loop {
            match rd.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(StoreError::ImportTrailingData),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad(format!("reading: {e}"))),
            }
        }
        self.register_staged(staged)
    }

    /// [`Store::register_objects`] inside the shared GC lock.
    fn register_staged(
        &self,
        staged: Vec<(PathBuf, PathInfo)>,
    ) -> Result<Vec<StorePath>, StoreError> {
        let infos: Vec<&PathInfo> = staged.iter().map(|(_, i)| i).collect();
        if let Some(cycle) = find_cycle(&infos) {
            return Err(StoreError::ImportCycle(cycle));
        }
        let in_set: HashSet<&StorePath> = staged.iter().map(|(_, i)| &i.path).collect();
        for (_, info) in &staged {
            for r in &info.references {
                if !in_set.contains(r) && !self.is_valid(r)? {
                    return Err(StoreError::MissingReference {
                        path: info.path.clone(),
                        reference: r.clone(),
                    });
                }
            }
        }
        // Register: lock every path (sorted, so two registrations cannot deadlock), move the
        // new objects into place, then commit all rows at once.
        let mut sorted: Vec<&StorePath> = staged.iter().map(|(_, i)| &i.path).collect();
        sorted.sort();
        sorted.dedup();
        let mut locks = Vec::new();
        for p in &sorted {
            self.add_temp_root(p);
            locks.push(self.ensure_locked(p)?);
        }
        let mut new: Vec<PathInfo> = Vec::new();
        let mut moved: Vec<PathBuf> = Vec::new();
        let r = (|| -> Result<(), StoreError> {
            for (dir, info) in &staged {
                if self.is_valid(&info.path)? || new.iter().any(|n| n.path == info.path) {
                    continue;
                }
                let phys = self.layout.physical(&info.path);
                if fs::symlink_metadata(&phys).is_ok() {
                    remove_tree(&phys).map_err(io_err(&phys))?;
                }
                archive::move_entry(dir, &phys).map_err(io_err(&phys))?;
                moved.push(phys);
                new.push(info.clone());
            }
            let tx = self.db.conn.unchecked_transaction()?;
            self.insert_many(&tx, &new)?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = r {
            for m in moved {
                let _ = remove_tree(&m);
            }
            return Err(e);
        }
        drop(locks);
        Ok(staged.into_iter().map(|(_, i)| i.path).collect())
    }

    /// The physical path of a sub-path of a store object (`sub` is `""` or `/a/b`), refusing
    /// `..` components.
    pub fn physical_sub(&self, p: &StorePath, sub: &str) -> Result<PathBuf, StoreError> {
        if sub.split('/').any(|c| c == "..") {
            return Err(StoreError::NotAStorePath(format!("{p}{sub}")));
        }
        let base = self.layout.physical(p);
        let rel = sub.trim_start_matches('/');
        Ok(if rel.is_empty() { base } else { base.join(rel) })
    }

    /// Whether `sub` names an executable regular file (helper for listings).
    pub fn is_executable(meta: &fs::Metadata) -> bool {
        meta.permissions().mode() & 0o111 != 0
    }

    /// The logical string of a store path's sub-path.
    pub fn logical(p: &StorePath, sub: &str) -> String {
        format!("{STORE_DIR}/{}{sub}", p.base_name())
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<i64, (StorePath, u64)>,
    by_path: HashMap<StorePath, i64>,
    refs: HashMap<i64, Vec<i64>>,
    rev: HashMap<i64, Vec<i64>>,
}

/// A reference cycle among `infos` (references to paths outside `infos` and self-references
/// ignored), as the paths along it with the first repeated at the end; `None` when acyclic.
fn find_cycle(infos: &[&PathInfo]) -> Option<Vec<StorePath>> {
    let index: HashMap<&StorePath, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, x)| (&x.path, i))
        .collect();
    let edges: Vec<Vec<usize>> = infos
        .iter()
        .map(|x| {
            x.references
                .iter()
                .filter(|r| **r != x.path)
                .filter_map(|r| index.get(r).copied())
                .collect()
        })
        .collect();
    // Iterative depth-first search: 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; infos.len()];
    for start in 0..infos.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match state[to] {
                    0 => {
                        state[to] = 1;
                        stack.push((to, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut cycle: Vec<StorePath> = stack[from..]
                            .iter()
                            .map(|(n, _)| infos[*n].path.clone())
                            .collect();
                        cycle.push(infos[to].path.clone());
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// Read one `\n`-terminated line (at most 1 MiB) without the newline; EOF is an error.
fn read_line<R: BufRead>(r: &mut R, line: &mut Vec<u8>) -> Result<(), StoreError> {
    line.clear();
    let n = r
        .take(1 << 20)
        .read_until(b'\n', line)
        .map_err(|e| StoreError::Import(format!("reading: {e}")))?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(StoreError::Import("the stream is truncated".into()));
    }
    line.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Every entry under `root`, `root` included.
    fn walkdir(root: &Path) -> Vec<PathBuf> {
        let mut out = vec![root.to_path_buf()];
        if fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
            for e in fs::read_dir(root).expect("read_dir").flatten() {
                out.extend(walkdir(&e.path()));
            }
        }
        out
    }

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().expect("tmp");
        let s = Store::open(StoreLayout::at(t.path().join("root"))).expect("open");
        (t, s)
    }

    fn src_tree(dir: &Path, text: &str) {
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        fs::write(dir.join("sub/f"), text).expect("w");
        fs::write(dir.join("g"), "g").expect("w");
    }

    #[test]
    fn add_twice_same_path_one_row() {
        let (t, s) = store();
        let a = t.path().join("src");
        src_tree(&a, "hello");
        let p1 = s.add_path(&a, Some("thing")).expect("add");
        let p2 = s.add_path(&a, Some("thing")).expect("add");
        assert_eq!(p1, p2);
        let info = s.path_info(&p1).expect("info").expect("valid");
        assert_eq!(info.content_hash, archive::content_hash(&a).expect("h"));
        let phys = s.layout().physical(&p1);
        assert_eq!(fs::read(phys.join("sub/f")).expect("r"), b"hello");
        assert_eq!(
            fs::symlink_metadata(&phys).expect("m").mode() & 0o777,
            0o555
        );
        let n: i64 =
            s.db.conn
                .query_row("SELECT count(*) FROM valid_paths", [], |r| r.get(0))
                .expect("count");
        assert_eq!(n, 1);
        assert!(s.verify(true, false).expect("verify").ok());
    }

    #[test]
    fn closure_is_transitive_and_needs_valid_paths() {
        let (_t, s) = store();
        let dep = s.add_bytes("dep.txt", b"dependency", &[]).expect("add");
        let other = s.add_bytes("other.txt", b"other", &[]).expect("add");
        let mid = s
            .add_bytes("mid.txt", b"mid", std::slice::from_ref(&dep))
            .expect("mid");
        let top = s
            .add_bytes("top.txt", b"top", &[mid.clone(), other.clone()])
            .expect("top");
        assert_eq!(
            s.closure(&[top.clone(), dep.clone()]).expect("c"),
            [top.clone(), mid.clone(), dep.clone(), other.clone()].into()
        );
        assert_eq!(
            s.closure(std::slice::from_ref(&mid)).expect("c"),
            [mid.clone(), dep.clone()].into()
        );
        let invalid = StorePath::from_fingerprint("nowhere", "x").expect("p");
        assert!(matches!(
            s.closure(&[top, invalid]),
            Err(StoreError::NotValid(_))
        ));
    }

    #[test]
    fn bytes_outputs_refs_gc_delete() {
        let (t, s) = store();
        let dep = s.add_bytes("dep.txt", b"dependency", &[]).expect("add");
        let other = s.add_bytes("other.txt", b"other", &[]).expect("add");
        assert_eq!(
            s.add_bytes("dep.txt", b"dependency", &[]).expect("again"),
            dep
        );
        let drv = s
            .add_bytes("x.drv", b"{}", std::slice::from_ref(&dep))
            .expect("drv");
        assert_eq!(s.references(&drv).expect("refs"), [dep.clone()].into());
        // a build output that mentions dep and itself, not other
        let out = StorePath::from_fingerprint("output:test", "out").expect("p");
        let staged = s.new_tmp_path("build");
        fs::create_dir(&staged).expect("mkdir");
        fs::write(staged.join("script"), format!("#!{dep}/bin\nself={out}\n")).expect("w");
        let info = s
            .register_output(&staged, &out, &[dep.clone(), other.clone()], Some(&drv))
            .expect("register");
        assert_eq!(info.references, [dep.clone(), out.clone()].into());
        assert_eq!(
            s.referrers(&dep).expect("r"),
            [drv.clone(), out.clone()].into()
        );
        assert_eq!(
            s.closure(std::slice::from_ref(&out)).expect("c"),
            [dep.clone(), out.clone()].into()
        );
        s.set_output(&drv, "out", &out).expect("set");
        assert_eq!(s.outputs_of(&drv).expect("outs")["out"], out);
        // temp roots keep everything alive in this process
        assert!(s.gc(GcOptions::default()).expect("gc").deleted.is_empty());
        // delete refuses a referenced path
        assert!(matches!(
            s.delete(std::slice::from_ref(&dep)),
            Err(StoreError::Alive { .. })
        ));
        // a fresh store handle (no temp roots) with a root on `out`
        {
            let mut st = s.gc_state();
            st.rooted.clear();
            st.temproots = None;
        }
        let _ = fs::remove_file(s.layout().state_dir().join("temproots").join(format!(
            "{}-{}",
            std::process::id(),
            s.instance
        )));
        let link = t.path().join("result");
        s.add_root(&link, &out).expect("root");
        assert_eq!(
            s.resolve(link.to_str().expect("utf8")).expect("resolve").0,
            out
        );
        // a leftover in the store dir and a stale tmp dir
        fs::create_dir(
            s.layout()
                .store_dir()
                .join("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-junk"),
        )
        .expect("mkdir");
        fs::create_dir(s.layout().tmp_dir().join("999999999-1-add")).expect("mkdir");
        let dry = s
            .gc(GcOptions {
                dry_run: true,
                max_bytes: None,
            })
            .expect("gc");
        assert_eq!(dry.deleted.len(), 2);
        let rep = s.gc(GcOptions::default()).expect("gc");
        let mut deleted = rep.deleted.clone();
        deleted.sort();
        let mut want = vec![drv.clone(), other.clone()];
        want.sort();
        assert_eq!(deleted, want);
        assert_eq!(rep.leftovers_removed.len(), 1);
        assert_eq!(rep.stale_tmp_removed, 1);
        assert!(s.is_valid(&out).expect("v") && s.is_valid(&dep).expect("v"));
        assert!(!s.layout().physical(&other).exists());
        // remove the out-link: everything goes
        fs::remove_file(&link).expect("rm");
        let rep = s.gc(GcOptions::default()).expect("gc");
        assert_eq!(rep.deleted.len(), 2);
        assert!(s.roots().expect("roots").is_empty());
        assert!(s.verify(true, false).expect("verify").ok());
    }

    #[test]
    fn export_import_round_trip_and_corruption() {
        let (t, a) = store();
        let src = t.path().join("src");
        src_tree(&src, "exported");
        let p = a.add_path(&src, Some("x")).expect("add");
        let d = a
            .add_bytes("d.txt", p.to_string().as_bytes(), std::slice::from_ref(&p))
            .expect("add");
        let mut stream = Vec::new();
        a.export(&[d.clone(), p.clone()], &mut stream)
            .expect("export");

        let (_t2, b) = store();
        // truncated anywhere: nothing registered
        for cut in [10, stream.len() / 3, stream.len() / 2, stream.len() - 3] {
            assert!(
                b.import(&stream[..cut], ImportOptions::default()).is_err(),
                "cut {cut}"
            );
            assert!(!b.is_valid(&p).expect("v") && !b.is_valid(&d).expect("v"));
        }
        // a flipped content byte
        let mut bad = stream.clone();
        let pos = bad
            .windows(8)
            .position(|w| w == b"exported")
            .expect("content");
        bad[pos] ^= 0x20;
        assert!(matches!(
            b.import(&bad[..], ImportOptions::default()),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(!b.is_valid(&p).expect("v"));
        // missing reference
        let mut only_d = Vec::new();
        a.export(std::slice::from_ref(&d), &mut only_d)
            .expect("export");
        assert!(matches!(
            b.import(&only_d[..], ImportOptions::default()),
            Err(StoreError::MissingReference { .. })
        ));
        let got = b
            .import(&stream[..], ImportOptions::default())
            .expect("import");
        assert_eq!(got, vec![p.clone(), d.clone()]);
        assert_eq!(
            b.path_info(&d).expect("i"),
            a.path_info(&d).expect("i").map(|mut i| {
                i.registration_time = b.path_info(&d).expect("i").expect("v").registration_time;
                i
            })
        );
        assert!(b.verify(true, false).expect("verify").ok());
        assert!(fs::read_dir(b.layout().tmp_dir())
            .expect("ls")
            .next()
            .is_none());
    }

    /// A hand-made export stream: per object its claimed path, a source file or tree, its
    /// references and its `ca` field.
    fn hand_stream(objs: &[(&StorePath, &Path, &[&StorePath], Option<&str>)]) -> Vec<u8> {
        let mut out = format!("{EXPORT_MAGIC}\n").into_bytes();
        for (path, src, refs, ca) in objs {
            let mut arch = Vec::new();
            let stats = archive::write_archive(src, "", &mut arch).expect("archive");
            let h = ExportHeader {
                path: (*path).clone(),
                content_hash: archive::content_hash(src).expect("hash"),
                size: stats.bytes,
                references: refs.iter().map(|r| (*r).clone()).collect(),
                deriver: None,
                signatures: Vec::new(),
                ca: ca.map(str::to_string),
            };
            out.extend(serde_json::to_vec(&h).expect("json"));
            out.push(b'\n');
            out.extend(arch);
        }
        out.extend(format!("{{\"end\":{}}}\n", objs.len()).into_bytes());
        out
    }

    fn nothing_staged(s: &Store) -> bool {
        fs::read_dir(s.layout().tmp_dir())
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    }

    #[test]
    fn import_checks_paths_against_content() {
        let (t, b) = store();
        let trusted = ImportOptions {
            trust_input_addressed: true,
        };
        let f = t.path().join("file");
        fs::write(&f, b"payload").expect("w");
        // an input-addressed path (an output path): refused unless trusted
        let out = StorePath::for_output(&[7; 32], "out", "thing").expect("p");
        let st = hand_stream(&[(&out, &f, &[], None)]);
        match b.import(&st[..], ImportOptions::default()) {
            Err(StoreError::UntrustedImport(p)) => assert_eq!(p, out),
            other => panic!("expected UntrustedImport, got {other:?}"),
        }
        assert!(!b.is_valid(&out).expect("v") && nothing_staged(&b));
        assert_eq!(
            b.import(&st[..], trusted).expect("trusted"),
            vec![out.clone()]
        );
        assert!(b.is_valid(&out).expect("v"));

        // a source path recomputed from its content: no trust needed; claimed elsewhere: refused
        let (hash, _) = archive::content_hash_of_bytes_with_size(b"payload", false);
        let src = StorePath::for_source(&hash.0, &[], false, "payload").expect("p");
        let (_t2, c) = store();
        let ok = hand_stream(&[(&src, &f, &[], Some("source"))]);
        assert_eq!(
            c.import(&ok[..], ImportOptions::default()).expect("ca"),
            vec![src.clone()]
        );
        let ok_no_ca = hand_stream(&[(&src, &f, &[], None)]);
        let (_t3, d) = store();
        d.import(&ok_no_ca[..], ImportOptions::default())
            .expect("a source path is recognised without ca");
        let victim = StorePath::for_output(&[9; 32], "out", "payload").expect("p");
        for opts in [ImportOptions::default(), trusted] {
            let (_t4, e) = store();
            let lie = hand_stream(&[(&victim, &f, &[], Some("source"))]);
            match e.import(&lie[..], opts) {
                Err(StoreError::ContentAddressMismatch { path, expected, .. }) => {
                    assert_eq!(path, victim);
                    assert_eq!(expected, src.to_string());
                }
                other => panic!("expected ContentAddressMismatch, got {other:?}"),
            }
            assert!(!e.is_valid(&victim).expect("v") && nothing_staged(&e));
        }

        // a fixed output (flat sha256): its content must have the declared hash
        use sha2::Digest;
        let digest = sha2::Sha256::digest(b"payload").to_vec();
        let fixed = StorePath::for_fixed("flat", "sha256", &digest, "dl").expect("p");
        let ca = format!("fixed:flat:sha256:{}", hex::encode(&digest));
        let (_t5, g) = store();
        let st = hand_stream(&[(&fixed, &f, &[], Some(&ca))]);
        assert_eq!(
            g.import(&st[..], ImportOptions::default()).expect("fixed"),
            vec![fixed.clone()]
        );
        let other = t.path().join("other");
        fs::write(&other, b"not the payload").expect("w");
        let (_t6, h) = store();
        let st = hand_stream(&[(&fixed, &other, &[], Some(&ca))]);
        assert!(matches!(
            h.import(&st[..], trusted),
            Err(StoreError::ContentAddressMismatch { .. })
        ));
        assert!(!h.is_valid(&fixed).expect("v"));
        assert_eq!(
            ContentAddress::parse(&ca).map(|c| c.render()),
            Some(ca.clone())
        );
        assert_eq!(ContentAddress::parse("fixed:flat:md5:00"), None);
    }

    #[test]
    fn staged_objects_are_checked_and_registered_all_or_nothing() {
        let (t, a) = store();
        let src = t.path().join("src");
        src_tree(&src, "staged");
        let p = a.add_path(&src, Some("x")).expect("add");
        let d = a
            .add_bytes("d.txt", p.to_string().as_bytes(), std::slice::from_ref(&p))
            .expect("add");
        let (_t2, b) = store();
        let stage = |dir: &Path, q: &StorePath| -> (PathBuf, PathInfo) {
            let info = a.path_info(q).expect("info").expect("valid");
            let mut arch = Vec::new();
            archive::write_archive(&a.layout().physical(q), "", &mut arch).expect("archive");
            let dest = dir.join(q.hash_part());
            archive::unpack_store_object(&arch[..], &dest).expect("unpack");
            Store::check_object(&info, None, &dest, ImportOptions::default()).expect("check");
            (dest, info)
        };
        // a reference neither valid nor in the set: nothing registered
        {
            let work = b.staging_dir("subst").expect("stage");
            let only_d = vec![stage(work.path(), &d)];
            assert!(matches!(
                b.register_objects(only_d),
                Err(StoreError::MissingReference { .. })
            ));
            assert!(!b.is_valid(&d).expect("v"));
        }
        assert!(nothing_staged(&b));
        // a claimed size or hash the object does not have
        {
            let work = b.staging_dir("subst").expect("stage");
            let (dest, mut info) = stage(work.path(), &p);
            info.size += 1;
            assert!(matches!(
                Store::check_object(&info, None, &dest, ImportOptions::default()),
                Err(StoreError::SizeMismatch { .. })
            ));
            info.size -= 1;
            info.content_hash.0[0] ^= 1;
            assert!(matches!(
                Store::check_object(&info, None, &dest, ImportOptions::default()),
                Err(StoreError::HashMismatch { .. })
            ));
        }
        assert!(nothing_staged(&b));
        // the bytes unpacked were the canonical archive: no second hashing, same verdicts on
        // the path; any other archive is checked in full
        {
            let work = b.staging_dir("subst").expect("stage");
            let info = a.path_info(&p).expect("info").expect("valid");
            let mut arch = Vec::new();
            archive::write_archive(&a.layout().physical(&p), "", &mut arch).expect("archive");
            let dest = work.path().join("x");
            let stats = archive::unpack_canonical_object(&arch[..], &dest).expect("unpack");
            assert!(stats.canonical);
            let streamed = ContentHash(*blake3::hash(&arch).as_bytes());
            assert_eq!((streamed, stats.bytes), (info.content_hash, info.size));
            let check = |info: &PathInfo, streamed: ContentHash| {
                Store::check_unpacked(
                    info,
                    None,
                    &dest,
                    ImportOptions::default(),
                    streamed,
                    &stats,
                )
            };
            check(&info, streamed).expect("canonical");
            // written with the store's metadata as it was unpacked: nothing left to normalise
            let mut again = Vec::new();
            archive::write_archive(&dest, "", &mut again).expect("archive");
            assert_eq!(again, arch);
            for e in walkdir(&dest) {
                let m = fs::symlink_metadata(&e).expect("stat");
                assert_eq!(m.mtime(), 1, "{}", e.display());
                if !m.file_type().is_symlink() {
                    assert_eq!(m.mode() & 0o222, 0, "{}", e.display());
                }
            }
            let mut lie = info.clone();
            lie.path = StorePath::for_output(&[3; 32], "out", "x").expect("p");
            assert!(matches!(
                check(&lie, streamed),
                Err(StoreError::UntrustedImport(_))
            ));
            check(&info, ContentHash([1; 32])).expect("checked in full");
            let mut wrong = info.clone();
            wrong.content_hash = ContentHash([1; 32]);
            assert!(matches!(
                check(&wrong, streamed),
                Err(StoreError::HashMismatch { .. })
            ));
        }
        let work = b.staging_dir("subst").expect("stage");
        let objs = vec![stage(work.path(), &p), stage(work.path(), &d)];
        assert_eq!(
            b.register_objects(objs).expect("register"),
            vec![p.clone(), d.clone()]
        );
        drop(work);
        assert!(nothing_staged(&b));
        assert!(b.verify(true, false).expect("verify").ok());
        assert_eq!(
            b.references(&d)
                .expect("refs")
                .into_iter()
                .collect::<Vec<_>>(),
            vec![p]
        );
    }

    #[test]
    fn import_refuses_trailing_data_cycles_and_duplicates() {
        let (t, s) = store();
        let trusted = ImportOptions {
            trust_input_addressed: true,
        };
        let f = t.path().join("file");
        fs::write(&f, b"x").expect("w");
        let (hash, _) = archive::content_hash_of_bytes_with_size(b"x", false);
        let src = StorePath::for_source(&hash.0, &[], false, "x").expect("p");
        let mut st = hand_stream(&[(&src, &f, &[], None)]);
        st.extend_from_slice(b"garbage");
        assert!(matches!(
            s.import(&st[..], trusted),
            Err(StoreError::ImportTrailingData)
        ));
        assert!(!s.is_valid(&src).expect("v"));
        let a = StorePath::for_output(&[1; 32], "out", "a").expect("p");
        let b = StorePath::for_output(&[2; 32], "out", "b").expect("p");
        let st = hand_stream(&[(&a, &f, &[&b, &a], None), (&b, &f, &[&a], None)]);
        match s.import(&st[..], trusted) {
            Err(StoreError::ImportCycle(c)) => {
                assert_eq!(c.len(), 3);
                assert_eq!(c.first(), c.last());
            }
            other => panic!("expected ImportCycle, got {other:?}"),
        }
        assert!(!s.is_valid(&a).expect("v") && !s.is_valid(&b).expect("v"));
        // a self-reference is not a cycle
        let st = hand_stream(&[(&a, &f, &[&a], None)]);
        s.import(&st[..], trusted).expect("self-reference");
        let st = hand_stream(&[(&b, &f, &[], None), (&b, &f, &[], None)]);
        assert!(
            matches!(s.import(&st[..], trusted), Err(StoreError::Import(m)) if m.contains("appears twice"))
        );
        assert!(nothing_staged(&s));
    }

    #[test]
    fn export_keeps_symlinks_out_of_objects_as_symlinks() {
        let (t, a) = store();
        let src = t.path().join("links");
        fs::create_dir_all(&src).expect("mkdir");
        std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).expect("ln");
        std::os::unix::fs::symlink("/etc", src.join("etc")).expect("ln");
        let p = a.add_path(&src, Some("links")).expect("add");
        let mut st = Vec::new();
        a.export(std::slice::from_ref(&p), &mut st).expect("export");
        assert!(st.len() < 8192, "only headers, no host file contents");
        assert!(a.verify(true, false).expect("verify").ok());
        let (_t2, b) = store();
        b.import(&st[..], ImportOptions::default()).expect("import");
        let phys = b.layout().physical(&p);
        assert_eq!(
            fs::read_link(phys.join("passwd")).expect("link"),
            Path::new("/etc/passwd")
        );
        assert!(fs::symlink_metadata(phys.join("etc"))
            .expect("meta")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn verify_finds_and_repairs_damage() {
        let (t, s) = store();
        let src = t.path().join("src");
        src_tree(&src, "v");
        let p = s.add_path(&src, Some("v")).expect("add");
        let q = s
            .add_bytes("q", p.to_string().as_bytes(), std::slice::from_ref(&p))
            .expect("add");
        let phys = s.layout().physical(&p);
        fs::set_permissions(phys.join("sub"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(phys.join("sub/f"), fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::write(phys.join("sub/f"), "tampered").expect("w");
        assert!(s.verify(false, false).expect("v").ok());
        let rep = s.verify(true, false).expect("v");
        assert_eq!(rep.corrupt, vec![p.clone()]);
        let rep = s.verify(true, true).expect("v");
        assert_eq!(rep.unregistered, {
            let mut v = vec![p.clone(), q.clone()];
            v.sort();
            v
        });
        assert!(s.verify(true, false).expect("v").ok());
    }

    #[test]
    fn concurrent_add_bytes_from_two_handles() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root");
        Store::open(StoreLayout::at(&root)).expect("open");
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let s = Store::open(StoreLayout::at(&root)).expect("open");
                    (0..200)
                        .map(|i| {
                            s.add_bytes("same", format!("content {i}").as_bytes(), &[])
                                .expect("add")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<StorePath>> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(results[0], results[1]);
        let s = Store::open(StoreLayout::at(&root)).expect("open");
        let rep = s.verify(true, false).expect("verify");
        assert!(rep.ok());
        assert_eq!(rep.checked, 200);
    }
}
