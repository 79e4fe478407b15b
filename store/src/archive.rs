//! The canonical archive: one tar entry stream used for content hashes, binary-repository
//! archives and image layers, so a store object is serialised exactly one way everywhere.
//!
//! Rules (documented in `docs/store.md`):
//! - entries depth-first, each directory's entries sorted by name bytes, a directory's own entry
//!   before its children;
//! - without a prefix the root entry is `./` (a directory) or `.` (a single regular file) and the
//!   children are named by their path relative to the root (`bin/`, `bin/hello`); with a prefix
//!   `P` the root is `P/` (or `P`) and the children `P/rel`;
//! - directories end in `/`; regular files are mode 0444, or 0555 when the source has any
//!   execute bit; directories 0555; symlinks 0777 with their target; no other file types;
//! - mtime 1, uid/gid 0, empty user and group names, no xattrs/atime/ctime, hard links stored
//!   as separate regular files;
//! - GNU headers; names or link targets longer than 100 bytes are preceded by a GNU long-name
//!   (`L`) or long-link (`K`) entry named `././@LongLink`; the stream ends with two zero blocks.
//!
//! [`content_hash`] is blake3 over that stream without a prefix, so the hash never depends on
//! the store path it determines. [`unpack_archive`] is the safe inverse: it refuses anything a
//! canonical archive cannot contain and anything that could write outside the destination.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use tar::{EntryType, Header};

/// Size of the buffer file contents are read through (large reads keep blake3's SIMD busy).
const READ_BUF: usize = 1 << 20;

/// What went wrong reading, writing or unpacking an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error("{path}: unsupported file type ({kind}); store objects hold only regular files, directories and symlinks")]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
    #[error("{path}: the file changed size while it was being read")]
    FileChanged { path: PathBuf },
    #[error("unsafe archive entry '{entry}': {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("malformed archive: {0}")]
    Malformed(String),
    #[error("destination {0} already exists")]
    DestinationExists(PathBuf),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counts of what an archive held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Bytes of the archive stream (headers, data, padding, end blocks).
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Directories (the root included when it is one).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of regular-file contents.
    pub content_bytes: u64,
    /// Whether the unpacker wrote every entry with the store's normalised metadata (modes
    /// 0444/0555, directories 0555, mtime 1), having refused any entry whose header says
    /// otherwise ([`unpack_canonical_object`]).
    pub canonical: bool,
}

/// blake3 of an object's canonical archive: its content hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// A content hash that is not `blake3:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a content hash (expected blake3:<64 hex digits>)")]
pub struct BadContentHash(pub String);

impl FromStr for ContentHash {
    type Err = BadContentHash;
    fn from_str(s: &str) -> Result<ContentHash, BadContentHash> {
        let hex_part = s
            .strip_prefix("blake3:")
            .ok_or_else(|| BadContentHash(s.to_string()))?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| BadContentHash(s.to_string()))?;
        Ok(ContentHash(out))
    }
}

impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ContentHash, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A `Write` that feeds a blake3 hasher.
pub struct HashWriter {
    /// The running hash.
    pub hasher: blake3::Hasher,
    /// Bytes written so far.
    pub count: u64,
}

impl HashWriter {
    pub fn new() -> HashWriter {
        HashWriter {
            hasher: blake3::Hasher::new(),
            count: 0,
        }
    }
    /// The hash of everything written.
    pub fn finish(&self) -> ContentHash {
        ContentHash(*self.hasher.finalize().as_bytes())
    }
}

impl Default for HashWriter {
    fn default() -> Self {
        HashWriter::new()
    }
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts bytes going to the real output.
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) count: u64,
}

impl<W: Write> Counting<W> {
    pub(crate) fn put(&mut self, b: &[u8]) -> Result<(), ArchiveError> {
        self.inner.write_all(b).map_err(ArchiveError::Write)?;
        self.count += b.len() as u64;
        Ok(())
    }
    pub(crate) fn pad(&mut self, size: u64) -> Result<(), ArchiveError> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.put(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }
}

/// The mode a regular file gets in the archive and in the store.
pub fn file_mode(source_mode: u32) -> u32 {
    if source_mode & 0o111 != 0 {
        0o555
    } else {
        0o444
    }
}

fn long_entry<W: Write>(out: &mut Counting<W>, kind: u8, bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut h = Header::new_gnu();
    let name = b"././@LongLink";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(bytes.len() as u64 + 1);
    h.set_entry_type(EntryType::new(kind));
    h.set_cksum();
    out.put(h.as_bytes())?;
    out.put(bytes)?;
    out.put(&[0])?;
    out.pad(bytes.len() as u64 + 1)
}

fn header<W: Write>(
    out: &mut Counting<W>,
    name: &[u8],
    kind: EntryType,
    mode: u32,
    size: u64,
    link: Option<&[u8]>,
) -> Result<(), ArchiveError> {
    if name.len() > 100 {
        long_entry(out, b'L', name)?;
    }
    if let Some(l) = link {
        if l.len() > 100 {
            long_entry(out, b'K', l)?;
        }
    }
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        if let Some(l) = link {
            let n = l.len().min(100);
            old.linkname[..n].copy_from_slice(&l[..n]);
        }
    }
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_cksum();
    out.put(h.as_bytes())
}

/// One entry of a tree in canonical archive order, as [`walk`] reports it.
enum Walked<'p> {
    Dir,
    Symlink(&'p Path),
    File { size: u64, mode: u32 },
}

/// Walk `abs` depth-first in canonical order (each directory's entries sorted by name bytes,
/// a directory before its children), calling `visit(abs, archive_name, rel, entry)` for every
/// entry. Both the streaming emitter and the parallel copier use it, so the order and naming
/// rules live in one place.
fn walk<F>(
    abs: &Path,
    name: &[u8],
    rel: &Path,
    root: bool,
    visit: &mut F,
) -> Result<(), ArchiveError>
where
    F: FnMut(&Path, &[u8], &Path, Walked<'_>) -> Result<(), ArchiveError>,
{
    let meta = fs::symlink_metadata(abs).map_err(io_err(abs))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        let mut dname = name.to_vec();
        dname.push(b'/');
        visit(abs, &dname, rel, Walked::Dir)?;
        let mut names: Vec<OsString> = Vec::new();
        for e in fs::read_dir(abs).map_err(io_err(abs))? {
            names.push(e.map_err(io_err(abs))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let child_name = if root && name == b"." {
                n.as_bytes().to_vec()
            } else {
                let mut v = name.to_vec();
                v.push(b'/');
                v.extend_from_slice(n.as_bytes());
                v
            };
            walk(&abs.join(&n), &child_name, &rel.join(&n), false, visit)?;
        }
        Ok(())
    } else if ft.is_symlink() {
        let target = fs::read_link(abs).map_err(io_err(abs))?;
        visit(abs, name, rel, Walked::Symlink(&target))
    } else if ft.is_file() {
        visit(
            abs,
            name,
            rel,
            Walked::File {
                size: meta.len(),
                mode: meta.mode(),
            },
        )
    } else {
        Err(ArchiveError::UnsupportedFileType {
            path: abs.into(),
            kind: kind_name(&ft),
        })
    }
}

/// Open a regular file of a source tree for reading, refusing to follow a symlink that
/// replaced it since it was listed.
fn open_source(abs: &Path) -> Result<fs::File, ArchiveError> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(abs)
        .map_err(io_err(abs))
}

/// Read exactly `size` bytes of `f` (named `path` in errors) through `buf`, handing each chunk
/// to `sink`; a file shorter than that is [`ArchiveError::FileChanged`]. Every chunked read of
/// file contents (the archive stream, the copier's buffered copies and its hashing) goes
/// through here.
pub(crate) fn read_chunks(
    f: &mut fs::File,
    path: &Path,
    size: u64,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => return Err(ArchiveError::FileChanged { path: path.into() }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        sink(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// A human name for an unsupported file type.
pub fn kind_name(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "unknown"
    }
}

/// The root entry's archive name under `prefix` (`.` without one).
fn root_name(prefix: &str) -> &[u8] {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        b"."
    } else {
        prefix.as_bytes()
    }
}

/// Write the canonical archive of the file or tree at `src` to `out`, entry names under
/// `prefix` (empty: relative to the object root).
pub fn write_archive<W: Write>(
    src: &Path,
    prefix: &str,
    out: W,
) -> Result<ArchiveStats, ArchiveError> {
    let mut out = Counting {
        inner: io::BufWriter::with_capacity(64 * 1024, out),
        count: 0,
    };
    let mut stats = ArchiveStats::default();
    let mut buf = Vec::new();
    walk(
        src,
        root_name(prefix),
        Path::new(""),
        true,
        &mut |abs, name, _rel, entry| match entry {
            Walked::Dir => {
                stats.dirs += 1;
                header(&mut out, name, EntryType::Directory, 0o555, 0, None)
            }
            Walked::Symlink(target) => {
                stats.symlinks += 1;
                let t = target.as_os_str().as_bytes();
                header(&mut out, name, EntryType::Symlink, 0o777, 0, Some(t))
            }
            Walked::File { size, mode } => {
                stats.files += 1;
                stats.content_bytes += size;
                header(
                    &mut out,
                    name,
                    EntryType::Regular,
                    file_mode(mode),
                    size,
                    None,
                )?;
                let mut f = open_source(abs)?;
                if buf.len() < READ_BUF {
                    buf.resize(READ_BUF, 0);
                }
                read_chunks(&mut f, abs, size, &mut buf, |c| out.put(c))?;
                out.pad(size)
            }
        },
    )?;
    out.put(&[0u8; 1024])?;
    out.inner.flush().map_err(ArchiveError::Write)?;
    stats.bytes = out.count;
    Ok(stats)
}

/// The content hash of the object at `src`: blake3 of `write_archive(src, "", ..)`.
pub fn content_hash(src: &Path) -> Result<ContentHash, ArchiveError> {
    content_hash_with_stats(src).map(|(h, _)| h)
}

/// [`content_hash`] and the archive's statistics (its size is the object's recorded size).
pub fn content_hash_with_stats(src: &Path) -> Result<(ContentHash, ArchiveStats), ArchiveError> {
    let mut hw = HashWriter::new();
    let stats = write_archive(src, "", &mut hw)?;
    Ok((hw.finish(), stats))
}

/// The digest a fixed output declares for the object at `src`: `Flat` hashes the bytes of a
/// single regular file (anything else is [`ArchiveError::Malformed`]), `Recursive` the canonical
/// archive; with sha256 or blake3. Symlinks are never followed.
pub fn fixed_output_hash(
    src: &Path,
    mode: crate::derivation::HashMode,
    algo: crate::derivation::HashAlgo,
) -> Result<Vec<u8>, ArchiveError> {
    use crate::derivation::{HashAlgo, HashMode};
    use sha2::Digest;
    enum H {
        Sha(sha2::Sha256),
        B3(Box<blake3::Hasher>),
    }
    impl Write for H {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            match self {
                H::Sha(h) => h.update(b),
                H::B3(h) => {
                    h.update(b);
                }
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut h = match algo {
        HashAlgo::Sha256 => H::Sha(sha2::Sha256::new()),
        HashAlgo::Blake3 => H::B3(Box::new(blake3::Hasher::new())),
    };
    match mode {
        HashMode::Recursive => {
            write_archive(src, "", &mut h)?;
        }
        HashMode::Flat => {
            let meta = fs::symlink_metadata(src).map_err(io_err(src))?;
            if !meta.file_type().is_file() {
                return Err(ArchiveError::Malformed(format!(
                    "{}: a flat fixed output must be a single regular file",
                    src.display()
                )));
            }
            let mut f = open_source(src)?;
            let mut buf = vec![0u8; READ_BUF];
            read_chunks(&mut f, src, meta.len(), &mut buf, |c| {
                h.write_all(c).map_err(ArchiveError::Write)
            })?;
        }
    }
    Ok(match h {
        H::Sha(h) => h.finalize().to_vec(),
        H::B3(h) => h.finalize().as_bytes().to_vec(),
    })
}

/// Copy the tree at `src` to the new path `dst` (which must not exist) and return the content
/// hash of what was copied. The copy comes out normalised (as [`crate::normalise::normalise`]
/// leaves an object), so `content_hash(dst)` equals the returned hash. See [`crate::copy`] for how the work is spread over threads.
pub fn copy_and_hash(src: &Path, dst: &Path) -> Result<(ContentHash, ArchiveStats), ArchiveError> {
    crate::copy::copy_and_hash(src, dst)
}

/// A listed entry of a tree being copied (see [`crate::copy`]).
pub(crate) enum Listed {
    Dir {
        name: Vec<u8>,
        dst: PathBuf,
    },
    Symlink {
        name: Vec<u8>,
        target: PathBuf,
        dst: PathBuf,
    },
    File {
        name: Vec<u8>,
        src: PathBuf,
        dst: PathBuf,
        size: u64,
        mode: u32,
    },
}

/// List the tree at `src` in canonical order, creating its directories and symlinks under
/// `dst` as it goes (files are left to the copier).
pub(crate) fn list_and_make_dirs(src: &Path, dst: &Path) -> Result<Vec<Listed>, ArchiveError> {
    let mut items = Vec::new();
    walk(
        src,
        b".",
        Path::new(""),
        true,
        &mut |abs, name, rel, entry| {
            let d = if rel.as_os_str().is_empty() {
                dst.to_path_buf()
            } else {
                dst.join(rel)
            };
            match entry {
                Walked::Dir => {
                    fs::create_dir(&d).map_err(io_err(&d))?;
                    items.push(Listed::Dir {
                        name: name.to_vec(),
                        dst: d,
                    });
                }
                Walked::Symlink(target) => {
                    std::os::unix::fs::symlink(target, &d).map_err(io_err(&d))?;
                    items.push(Listed::Symlink {
                        name: name.to_vec(),
                        target: target.to_path_buf(),
                        dst: d,
                    });
                }
                Walked::File { size, mode } => items.push(Listed::File {
                    name: name.to_vec(),
                    src: abs.to_path_buf(),
                    dst: d,
                    size,
                    mode,
                }),
            }
            Ok(())
        },
    )?;
    Ok(items)
}

/// Write the archive header of a listed entry to a hash (the copier's ordered side).
pub(crate) fn listed_header(
    out: &mut Counting<&mut HashWriter>,
    item: &Listed,
) -> Result<(), ArchiveError> {
    match item {
        Listed::Dir { name, .. } => header(out, name, EntryType::Directory, 0o555, 0, None),
        Listed::Symlink { name, target, .. } => header(
            out,
            name,
            EntryType::Symlink,
            0o777,
            0,
            Some(target.as_os_str().as_bytes()),
        ),
        Listed::File {
            name, size, mode, ..
        } => header(out, name, EntryType::Regular, file_mode(*mode), *size, None),
    }
}

/// The canonical archive of a single regular file with these contents, in memory.
pub fn archive_of_bytes(contents: &[u8], executable: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(contents.len() + 2048);
    // Writing to a Vec cannot fail.
    let _ = bytes_stream(contents, executable, &mut v);
    v
}

fn bytes_stream<W: Write>(contents: &[u8], executable: bool, out: W) -> Result<u64, ArchiveError> {
    let mut c = Counting {
        inner: out,
        count: 0,
    };
    let mode = if executable { 0o555 } else { 0o444 };
    header(
        &mut c,
        b".",
        EntryType::Regular,
        mode,
        contents.len() as u64,
        None,
    )?;
    c.put(contents)?;
    c.pad(contents.len() as u64)?;
    c.put(&[0u8; 1024])?;
    Ok(c.count)
}

/// The content hash of a single regular file with these contents (the same as
/// [`content_hash`] of such a file), computed in memory.
pub fn content_hash_of_bytes(contents: &[u8], executable: bool) -> ContentHash {
    content_hash_of_bytes_with_size(contents, executable).0
}

/// [`content_hash_of_bytes`] and the archive size in bytes.
pub fn content_hash_of_bytes_with_size(contents: &[u8], executable: bool) -> (ContentHash, u64) {
    let mut hw = HashWriter::new();
    // A HashWriter never fails.
    let n = bytes_stream(contents, executable, &mut hw).unwrap_or(0);
    (hw.finish(), n)
}

static UNPACK_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unpack an archive (canonical, without prefix) to `dest`, which must not exist. Refuses `..`
/// components, absolute names, entries below symlinks or non-directories, duplicate entries,
/// absolute symlink targets and relative ones that leave the root, hard links, devices, fifos
/// and setuid/setgid modes. Everything is unpacked into a temporary sibling and renamed to
/// `dest` at the end, so any error leaves nothing at `dest`. Modes keep only the permission
/// bits; mtimes are the archive's.
pub fn unpack_archive<R: Read>(r: R, dest: &Path) -> Result<ArchiveStats, ArchiveError> {
    unpack_archive_with(r, dest, Rules::Plain)
}

/// [`unpack_archive`] for a store object (`store import`): symlink targets are kept whatever
/// they are (absolute, or leaving the object, e.g. `/bld/store/<other>/bin`), since a store
/// object's symlinks are data that the store never follows; every other rule holds, and as
/// nothing is ever unpacked below a symlink, no target can redirect a write.
pub fn unpack_store_object<R: Read>(r: R, dest: &Path) -> Result<ArchiveStats, ArchiveError> {
    unpack_archive_with(r, dest, Rules::StoreObject)
}

/// [`unpack_store_object`] for an archive that must be canonical, as repositories hold them:
/// every header must carry what the canonical writer puts there (owner 0:0, mtime 1, regular
/// files 0444 or 0555, directories 0555, symlinks 0777), else the archive is refused. The
/// object is written with that metadata as it is unpacked (modes and times set on the open
/// file), so it needs no normalising walk afterwards ([`ArchiveStats::canonical`]).
pub fn unpack_canonical_object<R: Read>(r: R, dest: &Path) -> Result<ArchiveStats, ArchiveError> {
    unpack_archive_with(r, dest, Rules::Canonical)
}

/// Which archives an unpack accepts beyond the rules every unpack keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// Any archive: symlinks stay inside the root; modes and mtimes are the archive's.
    Plain,
    /// A store object's: symlink targets are data and may point anywhere.
    StoreObject,
    /// A canonical store object's: as `StoreObject`, and the headers' metadata must be the
    /// canonical writer's.
    Canonical,
}

fn unpack_archive_with<R: Read>(
    r: R,
    dest: &Path,
    rules: Rules,
) -> Result<ArchiveStats, ArchiveError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(ArchiveError::DestinationExists(dest.into()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = dest
        .file_name()
        .ok_or_else(|| ArchiveError::Malformed(format!("bad destination {}", dest.display())))?;
    let tmp = parent.join(format!(
        ".{}.unpack-{}-{}",
        base.to_string_lossy(),
        std::process::id(),
        UNPACK_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    match unpack_into(r, &tmp, rules) {
        Ok(stats) => {
            fs::rename(&tmp, dest).map_err(|e| {
                let _ = remove_tree(&tmp);
                io_err(dest)(e)
            })?;
            Ok(stats)
        }
        Err(e) => {
            let _ = remove_tree(&tmp);
            Err(e)
        }
    }
}

/// Move `src` to `dst` with one rename. Moving a directory to another parent rewrites its `..`
/// entry, which needs write permission on the directory itself: root has it always, an
/// unprivileged owner of a read-only (normalised, 0555) tree does not. For that owner the
/// directory is made writable for the moment of the move and gets its mode back at `dst`.
pub fn move_entry(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::rename(src, dst) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let meta = fs::symlink_metadata(src)?;
            let mode = meta.mode() & 0o7777;
            if !meta.is_dir() || mode & 0o200 != 0 {
                return Err(e);
            }
            fs::set_permissions(src, fs::Permissions::from_mode(mode | 0o200))?;
            let moved = fs::rename(src, dst);
            let at = if moved.is_ok() { dst } else { src };
            fs::set_permissions(at, fs::Permissions::from_mode(mode))?;
            moved
        }
        r => r,
    }
}

/// Remove a file or tree even when parts of it are read-only (store objects are; builds and
/// archives leave such trees too). A missing path is not an error. Root removes read-only
/// directories' entries anyway; an unprivileged owner meets `EACCES`, and then the directories
/// are made writable (owner `rwx`) and the removal is done again.
pub fn remove_tree(p: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(p);
    }
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(p)?;
            fs::remove_dir_all(p)
        }
    }
}

fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    if meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(
            dir,
            fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o700),
        )?;
    }
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            make_writable(&e.path())?;
        }
    }
    Ok(())
}

fn unsafe_entry(entry: &[u8], reason: &str) -> ArchiveError {
    ArchiveError::Unsafe {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.to_string(),
    }
}

/// The components of an entry name, with `.` and empty ones dropped; `..` and absolute names
/// are refused.
fn components(name: &[u8]) -> Result<Vec<&[u8]>, ArchiveError> {
    if name.first() == Some(&b'/') {
        return Err(unsafe_entry(name, "absolute entry name"));
    }
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(name, "'..' component")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether a relative symlink at depth `depth` (number of directories between the root and the
/// link) with this target stays inside the root.
fn link_stays_inside(depth: usize, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut level = depth as isize;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            _ => level += 1,
        }
    }
    true
}

/// `io::copy` through `buf`.
fn copy_with(r: &mut impl Read, w: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

/// Why a header's metadata is not what the canonical writer puts there, if it is not.
fn not_canonical(h: &tar::Header, kind: EntryType, mode: u32) -> Option<&'static str> {
    let owner_ok = h.uid().ok() == Some(0) && h.gid().ok() == Some(0);
    let mode_ok = match kind {
        EntryType::Directory => mode == 0o555,
        EntryType::Symlink => mode == 0o777,
        _ => mode == 0o444 || mode == 0o555,
    };
    if !owner_ok {
        Some("not canonical: owner is not 0:0")
    } else if h.mtime().ok() != Some(1) {
        Some("not canonical: mtime is not 1")
    } else if !mode_ok {
        Some("not canonical: mode")
    } else {
        None
    }
}

fn unpack_into<R: Read>(r: R, root: &Path, rules: Rules) -> Result<ArchiveStats, ArchiveError> {
    let any_link_target = rules != Rules::Plain;
    let canonical = rules == Rules::Canonical;
    let mut counted = CountingReader { inner: r, count: 0 };
    let mut stats = ArchiveStats::default();
    let mut dirs: HashSet<Vec<u8>> = HashSet::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut dir_modes: Vec<(PathBuf, u32, u64)> = Vec::new();
    let mut root_kind: Option<EntryType> = None;
    // one buffer for every file's contents: large enough that most files take one read and
    // one write
    let mut buf = vec![0u8; 1 << 18];
    {
        let mut ar = tar::Archive::new(&mut counted);
        let entries = ar
            .entries()
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ArchiveError::Malformed(e.to_string()))?;
            let name = entry.path_bytes().into_owned();
            let comps = components(&name)?;
            let kind = entry.header().entry_type();
            let mode = entry
                .header()
                .mode()
                .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
            let mtime = entry.header().mtime().unwrap_or(1);
            if mode & 0o7000 != 0 {
                return Err(unsafe_entry(&name, "setuid, setgid or sticky mode"));
            }
            if canonical {
                if let Some(why) = not_canonical(entry.header(), kind, mode) {
                    return Err(unsafe_entry(&name, why));
                }
            }
            let key = comps.join(&b'/');
            if !seen.insert(key.clone()) {
                return Err(unsafe_entry(&name, "duplicate entry"));
            }
            if comps.is_empty() {
                if root_kind.is_some() {
                    return Err(unsafe_entry(&name, "second root entry"));
                }
            } else {
                match root_kind {
                    Some(EntryType::Directory) => {}
                    Some(_) => return Err(unsafe_entry(&name, "entry below a non-directory root")),
                    None => return Err(unsafe_entry(&name, "entry before the root directory")),
                }
                let parent_key = comps[..comps.len() - 1].join(&b'/');
                if !parent_key.is_empty() && !dirs.contains(&parent_key) {
                    return Err(unsafe_entry(
                        &name,
                        "its parent is not a directory created earlier in the archive (a symlink or a missing directory)",
                    ));
                }
            }
            let target = if comps.is_empty() {
                root.to_path_buf()
            } else {
                root.join(OsStr::from_bytes(&key))
            };
            match kind {
                EntryType::Directory => {
                    fs::create_dir(&target).map_err(io_err(&target))?;
                    dirs.insert(key);
                    dir_modes.push((target, mode & 0o777, mtime));
                    stats.dirs += 1;
                }
                EntryType::Regular | EntryType::Continuous => {
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&target)
                        .map_err(io_err(&target))?;
                    let n = copy_with(&mut entry, &mut f, &mut buf).map_err(io_err(&target))?;
                    // metadata through the open file: no second path lookup per file
                    f.set_permissions(fs::Permissions::from_mode(mode & 0o777))
                        .map_err(io_err(&target))?;
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                        .map_err(io_err(&target))?;
                    drop(f);
                    stats.files += 1;
                    stats.content_bytes += n;
                }
                EntryType::Symlink => {
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| unsafe_entry(&name, "symlink without a target"))?
                        .into_owned();
                    if link.is_empty() || link.contains(&0) {
                        return Err(unsafe_entry(&name, "empty symlink target"));
                    }
                    if !any_link_target && link.first() == Some(&b'/') {
                        return Err(unsafe_entry(&name, "absolute symlink target"));
                    }
                    let depth = comps.len().saturating_sub(1);
                    if !any_link_target && (comps.is_empty() || !link_stays_inside(depth, &link)) {
                        return Err(unsafe_entry(
                            &name,
                            "symlink target leaves the archive root",
                        ));
                    }
                    std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                        .map_err(io_err(&target))?;
                    set_mtime(&target, mtime as i64).map_err(io_err(&target))?;
                    stats.symlinks += 1;
                }
                EntryType::Link => return Err(unsafe_entry(&name, "hard link")),
                EntryType::Char | EntryType::Block => return Err(unsafe_entry(&name, "device")),
                EntryType::Fifo => return Err(unsafe_entry(&name, "fifo")),
                EntryType::XGlobalHeader | EntryType::XHeader => {
                    return Err(unsafe_entry(&name, "pax headers are not canonical"))
                }
                _ => return Err(unsafe_entry(&name, "unsupported entry type")),
            }
            if comps.is_empty() {
                root_kind = Some(kind);
            }
        }
    }
    if root_kind.is_none() {
        return Err(ArchiveError::Malformed("empty archive".into()));
    }
    // Directories last, deepest first, so their modes and mtimes stick.
    for (d, mode, mtime) in dir_modes.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(*mode | 0o500)).map_err(io_err(d))?;
        set_mtime(d, *mtime as i64).map_err(io_err(d))?;
    }
    // Consume the rest (end blocks) so the byte count is the archive size.
    let _ = io::copy(&mut counted, &mut io::sink());
    stats.bytes = counted.count;
    stats.canonical = canonical;
    Ok(stats)
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Set a path's mtime (and atime) without following symlinks.
pub fn set_mtime(p: &Path, secs: i64) -> io::Result<()> {
    let ts = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        None,
        p,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Read the bytes of an `OsString` path (helper for callers building entry names).
pub fn os_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().to_os_string().into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(dir: &Path) {
        fs::create_dir_all(dir.join("bin")).expect("mkdir");
        fs::write(dir.join("bin/hello"), b"#!/bin/sh\necho hi\n").expect("write");
        fs::set_permissions(dir.join("bin/hello"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs::write(dir.join("a-c"), b"x").expect("write");
        fs::write(dir.join("b"), vec![7u8; 3000]).expect("write");
        symlink("bin/hello", dir.join("link")).expect("symlink");
        let long = "n".repeat(150);
        fs::write(dir.join(&long), b"long").expect("write");
    }

    fn names(archive: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(archive);
        ar.entries()
            .expect("entries")
            .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn order_and_names() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("o");
        tree(&d);
        let mut v = Vec::new();
        let st = write_archive(&d, "", &mut v).expect("archive");
        assert_eq!(st.bytes, v.len() as u64);
        assert_eq!((st.files, st.dirs, st.symlinks), (4, 2, 1));
        let long = "n".repeat(150);
        assert_eq!(
            names(&v),
            vec!["./", "a-c", "b", "bin/", "bin/hello", "link", long.as_str()]
        );
        let mut p = Vec::new();
        write_archive(&d, "bld/store/x-y", &mut p).expect("archive");
        assert_eq!(names(&p)[..2], ["bld/store/x-y/", "bld/store/x-y/a-c"]);
        let mut ar = tar::Archive::new(&v[..]);
        for e in ar.entries().expect("entries") {
            let e = e.expect("entry");
            let h = e.header();
            assert_eq!(h.mtime().expect("mtime"), 1);
            assert_eq!(h.uid().expect("uid"), 0);
            let mode = h.mode().expect("mode");
            let n = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            match n.as_str() {
                "bin/hello" => assert_eq!(mode, 0o555),
                "b" => assert_eq!(mode, 0o444),
                "link" => assert_eq!(e.link_name_bytes().expect("target").as_ref(), b"bin/hello"),
                _ => {}
            }
        }
    }

    #[test]
    fn hash_ignores_mtime_and_location_but_not_content_or_mode() {
        let t = tempfile::tempdir().expect("tmp");
        let a = t.path().join("a");
        let b = t.path().join("elsewhere/b");
        tree(&a);
        tree(&b);
        set_mtime(&b.join("b"), 12345).expect("mtime");
        assert_eq!(content_hash(&a).expect("h"), content_hash(&b).expect("h"));
        fs::set_permissions(b.join("b"), fs::Permissions::from_mode(0o700)).expect("chmod");
        let h2 = content_hash(&b).expect("h");
        assert_ne!(content_hash(&a).expect("h"), h2);
        fs::write(a.join("b"), b"other").expect("write");
        assert_ne!(content_hash(&a).expect("h"), h2);
    }

    #[test]
    fn bytes_hash_agrees_with_file_hash() {
        let t = tempfile::tempdir().expect("tmp");
        for (i, (data, exec)) in [
            (&b""[..], false),
            (&b"hello"[..], false),
            (&[1u8; 1024][..], true),
        ]
        .iter()
        .enumerate()
        {
            let p = t.path().join(format!("f{i}"));
            fs::write(&p, data).expect("write");
            let mode = if *exec { 0o755 } else { 0o644 };
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(
                content_hash(&p).expect("h"),
                content_hash_of_bytes(data, *exec)
            );
            let mut v = Vec::new();
            write_archive(&p, "", &mut v).expect("a");
            assert_eq!(v, archive_of_bytes(data, *exec));
        }
    }

    #[test]
    fn copy_and_hash_matches_content_hash_after_normalising() {
        let t = tempfile::tempdir().expect("tmp");
        let a = t.path().join("a");
        tree(&a);
        let c = t.path().join("c");
        let (h, _) = copy_and_hash(&a, &c).expect("copy");
        crate::normalise::normalise(&c).expect("normalise");
        assert_eq!(content_hash(&c).expect("h"), h);
        assert_eq!(content_hash(&a).expect("h"), h);
    }

    #[test]
    fn round_trip_unpack() {
        let t = tempfile::tempdir().expect("tmp");
        let a = t.path().join("a");
        tree(&a);
        let mut v = Vec::new();
        write_archive(&a, "", &mut v).expect("archive");
        let u = t.path().join("u");
        let st = unpack_archive(&v[..], &u).expect("unpack");
        assert_eq!(st.bytes, v.len() as u64);
        assert_eq!(content_hash(&u).expect("h"), content_hash(&a).expect("h"));
        assert_eq!(
            fs::read_link(u.join("link")).expect("link"),
            PathBuf::from("bin/hello")
        );
        // single file
        let f = t.path().join("f");
        unpack_archive(&archive_of_bytes(b"abc", true)[..], &f).expect("unpack");
        assert_eq!(fs::read(&f).expect("read"), b"abc");
        assert_eq!(
            content_hash(&f).expect("h"),
            content_hash_of_bytes(b"abc", true)
        );
    }

    type RawEntry<'a> = (&'a str, EntryType, &'a [u8], Option<&'a str>, u32);

    fn raw_archive(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link, mode) in entries {
            let mut h = Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn unsafe_archives_are_rejected_and_leave_nothing() {
        let d = EntryType::Directory;
        let f = EntryType::Regular;
        let s = EntryType::Symlink;
        let cases: Vec<Vec<RawEntry<'_>>> = vec![
            vec![
                ("./", d, b"", None, 0o755),
                ("../evil", f, b"x", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("a/../../evil", f, b"x", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("/etc/evil", f, b"x", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("l", s, b"", Some("/etc"), 0o777),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("l", s, b"", Some("../.."), 0o777),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("a/", d, b"", None, 0o755),
                ("a/l", s, b"", Some("../../x"), 0o777),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("l", s, b"", Some("."), 0o777),
                ("l/x", f, b"x", None, 0o644),
            ],
            vec![("./", d, b"", None, 0o755), ("x", f, b"x", None, 0o4755)],
            vec![
                ("./", d, b"", None, 0o755),
                ("x", EntryType::Char, b"", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("x", f, b"", None, 0o644),
                ("x", f, b"", None, 0o644),
            ],
        ];
        let t = tempfile::tempdir().expect("tmp");
        for (i, c) in cases.iter().enumerate() {
            let ar = raw_archive(c);
            let dest = t.path().join(format!("d{i}"));
            let r = unpack_archive(&ar[..], &dest);
            assert!(r.is_err(), "case {i} accepted");
            assert!(!dest.exists(), "case {i} left {}", dest.display());
        }
        // only the failed temp dirs' removal: nothing else in t
        assert_eq!(fs::read_dir(t.path()).expect("ls").count(), 0);
        // a relative link that stays inside is fine
        let ok = raw_archive(&[
            ("./", d, b"", None, 0o755),
            ("a/", d, b"", None, 0o755),
            ("a/l", s, b"", Some("../b"), 0o777),
        ]);
        unpack_archive(&ok[..], &t.path().join("ok")).expect("ok");
        // truncated
        let a = t.path().join("a");
        tree(&a);
        let mut v = Vec::new();
        write_archive(&a, "", &mut v).expect("archive");
        let tr = t.path().join("tr");
        assert!(unpack_archive(&v[..2000], &tr).is_err());
        assert!(!tr.exists());
    }

    /// A canonical unpack takes exactly what the canonical writer writes and refuses any header
    /// with other metadata, leaving nothing behind.
    #[test]
    fn canonical_unpack_refuses_other_metadata() {
        let t = tempfile::tempdir().expect("tmp");
        let a = t.path().join("a");
        tree(&a);
        let mut v = Vec::new();
        write_archive(&a, "", &mut v).expect("archive");
        let st = unpack_canonical_object(&v[..], &t.path().join("ok")).expect("canonical");
        assert!(st.canonical);
        assert!(
            !unpack_store_object(&v[..], &t.path().join("ok2"))
                .expect("plain")
                .canonical
        );
        type Edit = fn(&mut Header);
        let edits: [(&str, Edit); 5] = [
            ("mode 0644", |h| h.set_mode(0o644)),
            ("mode 0755", |h| h.set_mode(0o755)),
            ("mtime 2", |h| h.set_mtime(2)),
            ("uid 1000", |h| h.set_uid(1000)),
            ("gid 1", |h| h.set_gid(1)),
        ];
        for (what, edit) in edits {
            // the first header (the root directory, or with `mode 0644`, any entry's)
            let mut bad = v.clone();
            let mut h = Header::new_old();
            h.as_mut_bytes().copy_from_slice(&bad[..512]);
            edit(&mut h);
            h.set_cksum();
            bad[..512].copy_from_slice(h.as_bytes());
            let dest = t.path().join(what.replace(' ', "-"));
            let e = unpack_canonical_object(&bad[..], &dest).expect_err(what);
            assert!(e.to_string().contains("not canonical"), "{what}: {e}");
            assert!(!dest.exists(), "{what} left {}", dest.display());
            // the other unpackers take it (and the store normalises afterwards)
            unpack_store_object(
                &bad[..],
                &t.path().join(format!("{}-p", what.replace(' ', "-"))),
            )
            .expect(what);
        }
    }

    /// What a store object (`store import`, substitution) may hold: symlinks are data whose
    /// targets are kept, absolute or climbing; but no entry is ever written through one, no
    /// name climbs out, and a refused archive writes nothing anywhere.
    #[test]
    fn store_objects_never_write_outside_their_root() {
        let d = EntryType::Directory;
        let f = EntryType::Regular;
        let s = EntryType::Symlink;
        let t = tempfile::tempdir().expect("tmp");
        let outside = t.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        let out_abs = outside.to_str().expect("utf-8").to_string();
        let cases: Vec<Vec<RawEntry<'_>>> = vec![
            vec![("./", d, b"", None, 0o755), ("../x", f, b"x", None, 0o644)],
            vec![
                ("./", d, b"", None, 0o755),
                ("a/", d, b"", None, 0o755),
                ("a/../../x", f, b"x", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("l", s, b"", Some(&out_abs), 0o777),
                ("l/x", f, b"x", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("l", s, b"", Some("../outside"), 0o777),
                ("l/x", f, b"x", None, 0o644),
            ],
            vec![
                ("./", d, b"", None, 0o755),
                ("l", s, b"", Some("../outside"), 0o777),
                ("l/", d, b"", None, 0o755),
            ],
        ];
        for (i, c) in cases.iter().enumerate() {
            let dest = t.path().join(format!("d{i}"));
            let r = unpack_store_object(&raw_archive(c)[..], &dest);
            assert!(
                matches!(r, Err(ArchiveError::Unsafe { .. })),
                "case {i}: {r:?}"
            );
            assert!(!dest.exists(), "case {i} left {}", dest.display());
            assert_eq!(fs::read_dir(&outside).expect("ls").count(), 0, "case {i}");
            assert!(!t.path().join("x").exists(), "case {i}");
        }
        // a symlink alone is data, whatever its target
        let ok = raw_archive(&[
            ("./", d, b"", None, 0o755),
            ("abs", s, b"", Some("/bld/store/x-y/bin"), 0o777),
            ("up", s, b"", Some("../../etc"), 0o777),
        ]);
        let dest = t.path().join("ok");
        unpack_store_object(&ok[..], &dest).expect("symlinks as data");
        assert_eq!(
            fs::read_link(dest.join("abs")).expect("link"),
            PathBuf::from("/bld/store/x-y/bin")
        );
    }

    #[test]
    fn special_files_are_refused() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("d");
        fs::create_dir(&d).expect("mkdir");
        nix::unistd::mkfifo(&d.join("p"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        assert!(matches!(
            content_hash(&d),
            Err(ArchiveError::UnsupportedFileType { kind: "fifo", .. })
        ));
    }
}
