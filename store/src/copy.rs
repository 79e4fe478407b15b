//! Copying a source tree into the store's staging area while computing its content hash
//! (`store add`, `builtins.path`, path literals).
//!
//! Why it is shaped this way (measured in docs/benchmarks.md, section "Store"): adding a 1 GB
//! tree is dominated by the kernel's work of copying file contents, not by hashing (blake3 runs
//! at several GB/s per core). So
//! - file contents are copied **inside the kernel** (`copy_file_range`: one copy from the page
//!   cache to the page cache instead of a read into a user buffer and a write back out);
//! - files are copied by **worker threads in parallel** (one per core), so the per-file system
//!   calls of many small files overlap;
//! - the calling thread hashes the canonical archive stream **in order** while the workers copy:
//!   headers come from the listing, each file's contents are read back from the *copy* once its
//!   worker is done. The hash therefore covers exactly the bytes that will be in the store,
//!   even if the source changes meanwhile (a file that shrinks while it is copied is an error).
//!
//! The tree is listed first (creating the copy's directories and symlinks), then copied and
//! hashed. Files get their final read-only mode at creation and mtime 1 from their worker; a
//! last pass gives directories and symlinks theirs, so the copy needs no separate
//! normalisation walk (one `lstat`, `listxattr` and `utimensat` per entry, all serial).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::normalise::{normalise, NormaliseError};

use crate::archive::{
    file_mode, io_err, list_and_make_dirs, listed_header, read_chunks, set_mtime, ArchiveError,
    ArchiveStats, ContentHash, Counting, HashWriter, Listed,
};

/// Files up to this size are copied with one read and one write through a buffer (cheaper
/// than setting up an in-kernel copy) and hashed the same way.
const SMALL_FILE: u64 = 64 * 1024;
/// Buffer for reading copies back for hashing: small enough to stay in the CPU cache, large
/// enough for blake3's wide SIMD path.
const HASH_BUF: usize = 256 * 1024;
/// Most worker threads used, whatever the core count (the work is memory-bandwidth bound).
const MAX_WORKERS: usize = 4;
/// Copies at least this large are hashed through a memory mapping.
const MMAP_MIN: u64 = 1 << 20;
/// Most bytes of small-file contents handed from the workers to the hashing side at once.
const HANDOFF_BUDGET: usize = 32 << 20;

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

/// Shared state of one copy: which files are done, the first failure, and a way to wait.
struct Board {
    state: Vec<AtomicU8>,
    /// Contents of small files as their worker wrote them, so the hashing side need not open
    /// and read the copy again; at most `HANDOFF_BUDGET` bytes are held at once.
    kept: Vec<Mutex<Option<Vec<u8>>>>,
    held: AtomicUsize,
    next: AtomicUsize,
    abort: AtomicBool,
    errors: Mutex<Vec<(usize, ArchiveError)>>,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Board {
    fn finish(&self, i: usize, r: Result<(), ArchiveError>) {
        let st = match r {
            Ok(()) => DONE,
            Err(e) => {
                self.abort.store(true, Ordering::Release);
                lock(&self.errors).push((i, e));
                FAILED
            }
        };
        self.mark(i, st);
    }

    fn mark(&self, i: usize, st: u8) {
        self.state[i].store(st, Ordering::Release);
        // Taking the lock orders this store before a waiter's check-then-wait.
        drop(lock(&self.lock));
        self.cv.notify_all();
    }

    /// Wait until file `i` is copied; false when it (or the copy as a whole) failed.
    fn wait(&self, i: usize) -> bool {
        loop {
            match self.state[i].load(Ordering::Acquire) {
                DONE => return true,
                FAILED => return false,
                _ => {}
            }
            let g = lock(&self.lock);
            if self.state[i].load(Ordering::Acquire) == PENDING {
                drop(
                    self.cv
                        .wait(g)
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// See the module documentation.
pub fn copy_and_hash(src: &Path, dst: &Path) -> Result<(ContentHash, ArchiveStats), ArchiveError> {
    let items = list_and_make_dirs(src, dst)?;
    let r = copy_listed(&items)?;
    finish_metadata(dst, &items)?;
    Ok(r)
}

/// Give the copy the metadata normalisation would: files already have their final mode and
/// mtime (set by the workers); directories become 0555 and symlinks and directories get mtime 1,
/// children before parents. Only when the copy can carry nothing else — no extended attributes
/// on its root (new entries inherit default ACLs from their parent), and when running as root,
/// a root-owned root (so no set-group-ID inheritance gave another group) — otherwise the
/// general [`normalise`] walks it.
fn finish_metadata(dst: &Path, items: &[Listed]) -> Result<(), ArchiveError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(dst).map_err(io_err(dst))?;
    let as_root = nix::unistd::geteuid().is_root();
    let plain = !has_xattrs(dst)
        && (!as_root || (meta.uid() == 0 && meta.gid() == 0 && meta.mode() & 0o2000 == 0));
    if !plain {
        return normalise(dst).map_err(|e| match e {
            NormaliseError::Io { path, source } => ArchiveError::Io { path, source },
            NormaliseError::UnsupportedFileType { path, kind } => {
                ArchiveError::UnsupportedFileType { path, kind }
            }
        });
    }
    for item in items.iter().rev() {
        match item {
            Listed::Dir { dst, .. } => {
                fs::set_permissions(dst, fs::Permissions::from_mode(0o555)).map_err(io_err(dst))?;
                set_mtime(dst, 1).map_err(io_err(dst))?;
            }
            Listed::Symlink { dst, .. } => set_mtime(dst, 1).map_err(io_err(dst))?,
            Listed::File { .. } => {}
        }
    }
    Ok(())
}

/// Whether `p` (not followed) has any extended attribute.
fn has_xattrs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: `c` is NUL-terminated; a null buffer of size 0 asks only for the size.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    // -1: not supported or not permitted here, so there is nothing we could remove either.
    len > 0
}

/// Copy and hash the files of a listing whose directories exist.
fn copy_listed(items: &[Listed]) -> Result<(ContentHash, ArchiveStats), ArchiveError> {
    let files: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| matches!(it, Listed::File { .. }))
        .map(|(i, _)| i)
        .collect();
    let units = units_by_directory(items, &files);
    let board = Board {
        state: files.iter().map(|_| AtomicU8::new(PENDING)).collect(),
        kept: files.iter().map(|_| Mutex::new(None)).collect(),
        held: AtomicUsize::new(0),
        next: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
        lock: Mutex::new(()),
        cv: Condvar::new(),
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
        .min(units.len().max(1));
    let hashed = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(items, &files, &units, &board));
        }
        let r = hash_in_order(items, &board);
        // Stop the workers early when hashing failed; they finish the file in hand.
        if r.is_err() {
            board.abort.store(true, Ordering::Release);
        }
        r
    });
    // A worker's error comes first: the hashing side only reports "a copy failed".
    let mut errors = board
        .errors
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    errors.sort_by_key(|(i, _)| *i);
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    hashed
}

/// Split the files (indices into `files`) into units of work: the files of one directory
/// together, so that two workers do not create files in the same directory at once (creation
/// takes the directory's lock; measured as 10 % of all CPU when they did), except that a
/// directory's files are cut after `UNIT_BYTES` of contents (large files spend their time
/// copying, not creating).
fn units_by_directory(items: &[Listed], files: &[usize]) -> Vec<std::ops::Range<usize>> {
    const UNIT_BYTES: u64 = 64 << 20;
    let mut units = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for k in 0..files.len() {
        let Listed::File { dst, size, .. } = &items[files[k]] else {
            continue;
        };
        if k > start {
            let Listed::File { dst: first, .. } = &items[files[start]] else {
                continue;
            };
            if first.parent() != dst.parent() || bytes >= UNIT_BYTES {
                units.push(start..k);
                start = k;
                bytes = 0;
            }
        }
        bytes += size;
    }
    if start < files.len() {
        units.push(start..files.len());
    }
    units
}

/// A worker: take the next unit, copy its files in order and mark each; stop when all units
/// are taken or on abort.
fn worker(items: &[Listed], files: &[usize], units: &[std::ops::Range<usize>], board: &Board) {
    let mut buf = Vec::new();
    loop {
        let u = board.next.fetch_add(1, Ordering::Relaxed);
        let Some(unit) = units.get(u) else { return };
        for k in unit.clone() {
            // Once aborted, the rest is marked failed (without an error of its own) so nobody
            // waits for it.
            if board.abort.load(Ordering::Acquire) {
                board.mark(k, FAILED);
                continue;
            }
            let r = if let Listed::File {
                src,
                dst,
                size,
                mode,
                ..
            } = &items[files[k]]
            {
                let keep = *size <= SMALL_FILE
                    && board.held.load(Ordering::Relaxed) + (*size as usize) <= HANDOFF_BUDGET;
                match copy_file(src, dst, *size, file_mode(*mode), &mut buf, keep) {
                    Ok(Some(contents)) => {
                        board.held.fetch_add(contents.len(), Ordering::Relaxed);
                        *lock(&board.kept[k]) = Some(contents);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                Err(ArchiveError::Malformed(
                    "internal: a listed file is not a file".into(),
                ))
            };
            board.finish(k, r);
        }
    }
}

/// Copy exactly `size` bytes of the regular file `src` to the new file `dst`; with `keep`,
/// return the contents written.
fn copy_file(
    src: &Path,
    dst: &Path,
    size: u64,
    mode: u32,
    buf: &mut Vec<u8>,
    keep: bool,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(io_err(src))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dst)
        .map_err(io_err(dst))?;
    let kept = if keep {
        let mut contents = vec![0u8; size as usize];
        read_exactly(&mut from, src, &mut contents)?;
        to.write_all(&contents).map_err(io_err(dst))?;
        Some(contents)
    } else {
        copy_contents(&mut from, src, &mut to, dst, size, buf)?;
        None
    };
    let one = nix::sys::time::TimeSpec::new(1, 0);
    nix::sys::stat::futimens(to.as_raw_fd(), &one, &one).map_err(|e| io_err(dst)(e.into()))?;
    Ok(kept)
}

/// Fill `out` from `f`; a file shorter than that is [`ArchiveError::FileChanged`].
fn read_exactly(f: &mut fs::File, src: &Path, out: &mut [u8]) -> Result<(), ArchiveError> {
    let mut at = 0;
    while at < out.len() {
        match f.read(&mut out[at..]) {
            Ok(0) => return Err(ArchiveError::FileChanged { path: src.into() }),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(src)(e)),
        }
    }
    Ok(())
}

/// Copy exactly `size` bytes: in the kernel, or through `buf` for small files and where the
/// kernel cannot.
fn copy_contents(
    from: &mut fs::File,
    src: &Path,
    to: &mut fs::File,
    dst: &Path,
    size: u64,
    buf: &mut Vec<u8>,
) -> Result<(), ArchiveError> {
    if size <= SMALL_FILE {
        return copy_through(from, src, to, dst, size, buf);
    }
    let mut left = size;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open files owned by this function; null offsets mean
        // "use and advance the file positions".
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // No in-kernel copy between these files (other file systems, old kernels):
                // copy the rest through a buffer from the current positions.
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                    return copy_through(from, src, to, dst, left, buf)
                }
                _ => return Err(io_err(dst)(e)),
            }
        }
        if n == 0 {
            return Err(ArchiveError::FileChanged { path: src.into() });
        }
        left -= n as u64;
    }
    Ok(())
}

/// Copy `left` bytes from `from` to `to` through `buf`.
fn copy_through(
    from: &mut fs::File,
    src: &Path,
    to: &mut fs::File,
    dst: &Path,
    left: u64,
    buf: &mut Vec<u8>,
) -> Result<(), ArchiveError> {
    let cap = (left.min(HASH_BUF as u64) as usize).max(1);
    if buf.len() < cap {
        buf.resize(cap, 0);
    }
    read_chunks(from, src, left, buf, |c| {
        to.write_all(c).map_err(io_err(dst))
    })
}

/// The ordered side: the archive stream's headers from the listing, each file's contents read
/// back from its copy once a worker has finished it.
fn hash_in_order(
    items: &[Listed],
    board: &Board,
) -> Result<(ContentHash, ArchiveStats), ArchiveError> {
    let mut hw = HashWriter::new();
    let mut stats = ArchiveStats::default();
    let mut buf = vec![0u8; HASH_BUF];
    {
        let mut out = Counting {
            inner: &mut hw,
            count: 0,
        };
        let mut k = 0;
        for item in items {
            listed_header(&mut out, item)?;
            match item {
                Listed::Dir { .. } => stats.dirs += 1,
                Listed::Symlink { .. } => stats.symlinks += 1,
                Listed::File { dst, size, .. } => {
                    if !board.wait(k) {
                        return Err(ArchiveError::Write(io::Error::other("a copy failed")));
                    }
                    let kept = lock(&board.kept[k]).take();
                    k += 1;
                    stats.files += 1;
                    stats.content_bytes += size;
                    match kept {
                        Some(contents) => {
                            out.put(&contents)?;
                            board.held.fetch_sub(contents.len(), Ordering::Relaxed);
                        }
                        None => hash_copy(dst, *size, &mut buf, &mut out)?,
                    }
                    out.pad(*size)?;
                }
            }
        }
        out.put(&[0u8; 1024])?;
        stats.bytes = out.count;
    }
    Ok((hw.finish(), stats))
}

/// Hash exactly `size` bytes of the copy at `dst`: large files through a read-only mapping
/// (no copy into a buffer), small ones through `buf`.
fn hash_copy(
    dst: &Path,
    size: u64,
    buf: &mut [u8],
    out: &mut Counting<&mut HashWriter>,
) -> Result<(), ArchiveError> {
    let mut f = fs::File::open(dst).map_err(io_err(dst))?;
    if size >= MMAP_MIN {
        if let Some(map) = Mapping::new(&f, size) {
            return out.put(map.bytes());
        }
    }
    read_chunks(&mut f, dst, size, buf, |c| out.put(c))
}

/// A private read-only mapping of a whole file, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// Map the first `len` bytes of `f` (populated at once: one fault path instead of one per
    /// page); `None` when the kernel refuses, and the caller reads instead.
    fn new(f: &fs::File, len: u64) -> Option<Mapping> {
        let len = usize::try_from(len).ok()?;
        // SAFETY: a fresh mapping chosen by the kernel, read-only, of an open file; it is only
        // read through `bytes` and unmapped once in `drop`. The file is the store's own staged
        // copy, which nothing else writes or truncates while it is being hashed.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                f.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `new`, once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::content_hash;
    use std::os::unix::fs::PermissionsExt;

    /// A tree exercising every path: many directories (several work units), files below and
    /// above the small-file and mapping thresholds, executables, symlinks, empty files.
    fn sample(root: &Path) {
        for d in 0..6 {
            let dir = root.join(format!("d{d}"));
            fs::create_dir_all(dir.join("sub")).expect("mkdir");
            for f in 0..40 {
                let n = (f * 997 + d * 31) % 5000;
                let body: Vec<u8> = (0..n).map(|i| (i * 7 + f) as u8).collect();
                fs::write(dir.join(format!("f{f}")), body).expect("write");
            }
            fs::write(dir.join("empty"), b"").expect("write");
            std::os::unix::fs::symlink("../d0/f1", dir.join("link")).expect("symlink");
        }
        let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        fs::write(root.join("d1/big"), &big).expect("write");
        fs::write(root.join("d2/sub/medium"), &big[..200_000]).expect("write");
        let x = root.join("d3/tool");
        fs::write(&x, b"#!/bin/sh\n").expect("write");
        fs::set_permissions(&x, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn parallel_copy_hashes_like_the_stream_and_copies_every_byte() {
        let t = tempfile::tempdir().expect("tmp");
        let src = t.path().join("src");
        sample(&src);
        let dst = t.path().join("dst");
        let (h, stats) = copy_and_hash(&src, &dst).expect("copy");
        assert_eq!(h, content_hash(&src).expect("hash src"));
        let (h2, stats2) = crate::archive::content_hash_with_stats(&dst).expect("hash dst");
        assert_eq!(h, h2, "the copy has the same archive as the source");
        assert_eq!(stats.bytes, stats2.bytes);
        assert_eq!(stats.files, 6 * 41 + 3);
        assert_eq!(stats.symlinks, 6);
        assert_eq!(
            fs::read(dst.join("d1/big")).expect("read"),
            fs::read(src.join("d1/big")).expect("read")
        );
        let mode = fs::metadata(dst.join("d3/tool"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
    }

    #[test]
    fn single_file_copies_to_a_file() {
        let t = tempfile::tempdir().expect("tmp");
        let src = t.path().join("one");
        fs::write(&src, vec![9u8; 100_000]).expect("write");
        let dst = t.path().join("copy");
        let (h, _) = copy_and_hash(&src, &dst).expect("copy");
        assert_eq!(h, content_hash(&src).expect("hash"));
        assert_eq!(fs::read(&dst).expect("read").len(), 100_000);
    }

    #[test]
    fn a_file_that_shrank_after_listing_is_an_error_naming_it() {
        for len in [10_000usize, 2 << 20] {
            let t = tempfile::tempdir().expect("tmp");
            let src = t.path().join("src");
            sample(&src);
            fs::write(src.join("d4/f3"), vec![1u8; len]).expect("write");
            let dst = t.path().join("dst");
            let items = list_and_make_dirs(&src, &dst).expect("list");
            fs::write(src.join("d4/f3"), b"short").expect("shrink");
            match copy_listed(&items) {
                Err(ArchiveError::FileChanged { path }) => assert!(path.ends_with("d4/f3")),
                other => panic!("expected FileChanged, got {:?}", other.map(|(h, _)| h)),
            }
        }
    }

    #[test]
    fn a_missing_source_file_is_an_io_error_naming_it() {
        let t = tempfile::tempdir().expect("tmp");
        let src = t.path().join("src");
        sample(&src);
        let dst = t.path().join("dst");
        let items = list_and_make_dirs(&src, &dst).expect("list");
        fs::remove_file(src.join("d5/f39")).expect("rm");
        match copy_listed(&items) {
            Err(ArchiveError::Io { path, .. }) => assert!(path.ends_with("d5/f39")),
            other => panic!("expected Io, got {:?}", other.map(|(h, _)| h)),
        }
    }
}
