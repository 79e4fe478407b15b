//! Deterministic tar plumbing shared by every image format: entries built from data (not from
//! the file system's metadata), written with GNU headers, mtime 1 and numeric owners only; a
//! component-wise path order (directories before their children); and the small writers the
//! layer pipeline is made of (hashing/counting, and stripping the end-of-archive trailer of an
//! archive so that several archives can be concatenated into one layer).

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The mtime of every entry buildit writes (never 0: some tools treat 0 as "unset").
pub const MTIME: u64 = 1;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file with its bytes in memory.
    Bytes(Vec<u8>),
    /// A regular file read from the host when written; `size` was taken when planning and is
    /// checked again when writing.
    Host { path: PathBuf, size: u64 },
    /// A symbolic link to the given target.
    Symlink(String),
}

/// One tar entry: a relative path (no leading `/`, no trailing `/`), what it is, its mode
/// (permission bits only) and numeric owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub node: Node,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl Entry {
    /// A root-owned directory.
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            node: Node::Dir,
            mode,
            uid: 0,
            gid: 0,
        }
    }
    /// A root-owned symlink.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            path: path.to_string(),
            node: Node::Symlink(target.to_string()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
    /// A root-owned file with in-memory contents.
    pub fn bytes(path: &str, data: Vec<u8>, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            node: Node::Bytes(data),
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Component-wise path order: `a`, `a/b`, `a-c` (a directory's children right after it).
pub fn path_cmp(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Whether `path` is a name a layer may hold: relative, not empty, no `..` component (an entry
/// named `../x` or `/x` would be written outside the root by an extractor that trusts it).
pub fn safe_entry_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|c| c == "..")
}

/// Open a regular file without following a symlink in its last component (a store object is
/// read-only, but a symlink swapped in between planning and writing must not make a layer hold
/// a file from outside the object).
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// `root/rel`, if every component below `root` is a real directory or (the last) a regular
/// file: no symlink on the way, so reading it never leaves `root`. `rel` is relative, without
/// `..`.
pub fn regular_below(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}/{rel}: {why}", root.display()),
        )
    };
    if !safe_entry_path(rel) {
        return Err(bad("not a relative path without `..`"));
    }
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut p = root.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        let md = std::fs::symlink_metadata(&p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        let last = i + 1 == comps.len();
        if md.file_type().is_symlink() {
            return Err(bad("a symlink on the way; it is not followed"));
        }
        if (last && !md.is_file()) || (!last && !md.is_dir()) {
            return Err(bad("not a regular file"));
        }
    }
    if comps.is_empty() {
        return Err(bad("empty path"));
    }
    Ok(p)
}

/// Append one entry to a tar builder. Entry names are checked ([`safe_entry_path`]); a host
/// file is opened without following a symlink ([`open_regular`]).
pub fn append<W: Write>(b: &mut tar::Builder<W>, e: &Entry) -> io::Result<()> {
    if !safe_entry_path(&e.path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a layer entry named `{}` (absolute, empty or with `..`)",
                e.path
            ),
        ));
    }
    let mut h = tar::Header::new_gnu();
    h.set_mtime(MTIME);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mode(e.mode & 0o7777);
    match &e.node {
        Node::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{}/", e.path), io::empty())
        }
        Node::Symlink(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &e.path, target)
        }
        Node::Bytes(data) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, &e.path, data.as_slice())
        }
        Node::Host { path, size } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(*size);
            let f = open_regular(path)?;
            b.append_data(&mut h, &e.path, Exact::new(f, *size, path))
        }
    }
}

/// A reader that yields exactly `size` bytes or fails (a file that changed size while an
/// image was being written must not produce a corrupt archive).
struct Exact<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, size: u64, path: &Path) -> Self {
        Exact {
            inner,
            left: size,
            path: path.to_path_buf(),
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} grew while it was being archived",
                    self.path.display()
                ))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being archived", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that counts bytes and hashes them with sha256 on their way to `inner`.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// The inner writer, the hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The size of tar's end-of-archive marker (two zero blocks).
const TRAILER: usize = 1024;

/// Forwards a complete tar archive to `inner` minus its end-of-archive marker, so archives
/// written by [`crate::StoreView`]'s archive function can be concatenated into one layer.
/// [`StripTrailer::finish`] checks that what was held back really was the marker.
pub struct StripTrailer<W> {
    inner: W,
    held: Vec<u8>,
}

impl<W: Write> StripTrailer<W> {
    pub fn new(inner: W) -> Self {
        StripTrailer {
            inner,
            held: Vec::with_capacity(2 * TRAILER),
        }
    }
    /// Check the trailer and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        if self.held.len() != TRAILER || self.held.iter().any(|&b| b != 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a store archive did not end with tar's end-of-archive marker",
            ));
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for StripTrailer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= TRAILER {
            self.inner.write_all(&self.held)?;
            self.inner.write_all(&buf[..buf.len() - TRAILER])?;
            self.held.clear();
            self.held.extend_from_slice(&buf[buf.len() - TRAILER..]);
        } else {
            self.held.extend_from_slice(buf);
            if self.held.len() > TRAILER {
                let extra = self.held.len() - TRAILER;
                self.inner.write_all(&self.held[..extra])?;
                self.held.drain(..extra);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Walk a host directory (or file) into entries under `dest` (relative, no leading `/`), in
/// component-wise order. `modes(is_dir, host_mode)` picks each entry's mode.
pub fn walk(
    src: &Path,
    dest: &str,
    uid: u64,
    gid: u64,
    modes: &dyn Fn(bool, u32) -> u32,
    out: &mut Vec<Entry>,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(src)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
    let ft = md.file_type();
    if ft.is_symlink() {
        let t = std::fs::read_link(src)?;
        out.push(Entry {
            path: dest.to_string(),
            node: Node::Symlink(t.to_string_lossy().into_owned()),
            mode: 0o777,
            uid,
            gid,
        });
    } else if ft.is_dir() {
        out.push(Entry {
            path: dest.to_string(),
            node: Node::Dir,
            mode: modes(true, md.permissions().mode()),
            uid,
            gid,
        });
        let mut names: Vec<String> = Vec::new();
        for de in std::fs::read_dir(src)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?
        {
            let de = de?;
            let n = de.file_name();
            let n = n.to_str().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: a file name that is not UTF-8", src.display()),
                )
            })?;
            names.push(n.to_string());
        }
        names.sort();
        for n in names {
            walk(&src.join(&n), &format!("{dest}/{n}"), uid, gid, modes, out)?;
        }
    } else if ft.is_file() {
        out.push(Entry {
            path: dest.to_string(),
            node: Node::Host {
                path: src.to_path_buf(),
                size: md.len(),
            },
            mode: modes(false, md.permissions().mode()),
            uid,
            gid,
        });
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: only files, directories and symlinks can go into an image",
                src.display()
            ),
        ));
    }
    Ok(())
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = HashWriter::new(io::sink());
    io::copy(&mut f, &mut h)?;
    let (_, d, n) = h.finish();
    Ok((d, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_order_puts_children_right_after_parent() {
        let mut v = vec!["a-c", "a/b", "a", "a.d", "b"];
        v.sort_by(|x, y| path_cmp(x, y));
        assert_eq!(v, ["a", "a/b", "a-c", "a.d", "b"]);
    }

    #[test]
    fn strip_trailer_concatenates_archives() {
        let mk = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            append(&mut b, &Entry::bytes(name, b"hi".to_vec(), 0o444)).expect("append");
            b.into_inner().expect("finish")
        };
        let mut out = tar::Builder::new(Vec::new());
        for (i, n) in ["x", "y"].iter().enumerate() {
            let a = mk(n);
            // write in odd-sized pieces to exercise the held-back buffer
            let mut s = StripTrailer::new(out.get_mut());
            for c in a.chunks(7 + i * 300) {
                s.write_all(c).expect("write");
            }
            s.finish().expect("trailer");
        }
        let bytes = out.into_inner().expect("finish");
        let mut ar = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = ar
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["x", "y"]);
    }

    #[test]
    fn strip_trailer_refuses_unfinished_archive() {
        let mut s = StripTrailer::new(Vec::new());
        s.write_all(&[1u8; 2048]).expect("write");
        assert!(s.finish().is_err());
    }

    #[test]
    fn entries_never_escape_the_root() {
        for bad in ["../x", "a/../../x", "/etc/x", ""] {
            let mut b = tar::Builder::new(Vec::new());
            assert!(
                append(&mut b, &Entry::bytes(bad, b"x".to_vec(), 0o644)).is_err(),
                "{bad:?}"
            );
        }
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, &Entry::symlink("etc/x", "../../etc/shadow"))
            .expect("a link may point anywhere");
    }

    #[test]
    fn host_files_are_not_read_through_symlinks() {
        let t = tempfile::tempdir().expect("tempdir");
        let obj = t.path().join("obj");
        std::fs::create_dir_all(obj.join("d")).expect("mkdir");
        std::fs::write(obj.join("d/f"), "f").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", obj.join("d/passwd")).expect("link");
        std::os::unix::fs::symlink("/etc", obj.join("etc")).expect("link");
        // walking keeps the link a link
        let mut es = Vec::new();
        walk(&obj, "x", 0, 0, &|_, _| 0o644, &mut es).expect("walk");
        let link = es.iter().find(|e| e.path == "x/d/passwd").expect("link");
        assert_eq!(link.node, Node::Symlink("/etc/passwd".into()));
        assert_eq!(
            es.iter().find(|e| e.path == "x/etc").map(|e| &e.node),
            Some(&Node::Symlink("/etc".into()))
        );
        // a host entry that became a symlink is not opened
        assert!(open_regular(&obj.join("d/passwd")).is_err());
        assert!(open_regular(&obj.join("d/f")).is_ok());
        let mut b = tar::Builder::new(Vec::new());
        let swapped = Entry {
            path: "x".into(),
            node: Node::Host {
                path: obj.join("d/passwd"),
                size: 1,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        assert!(append(&mut b, &swapped).is_err());
        // paths below a root: no symlink on the way
        assert!(regular_below(&obj, "d/f").is_ok());
        assert!(regular_below(&obj, "d/passwd").is_err());
        assert!(regular_below(&obj, "etc/passwd").is_err());
        assert!(regular_below(&obj, "../obj/d/f").is_err());
    }
}
