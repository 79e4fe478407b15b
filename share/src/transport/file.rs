//! The `file://` transport: a repository is a local directory, each key a file under it.
//!
//! The directory may be someone else's (a shared mount, an unpacked copy), so every access
//! goes through a capability handle on the repository root (`cap-std`): a key is resolved
//! beneath the root and any symlink or `..` that would lead out of it is an error, so a
//! hostile repository cannot make us read or overwrite a host file. Only regular files are
//! read (opened non-blocking, so a FIFO cannot hang a reader), and every read is bounded.
//!
//! Writes are atomic: the bytes go to a temporary file (`.NAME.tmp-PID-N`) in the key's own
//! directory, are synced, then renamed over the key, so a reader sees either the old object
//! or the whole new one. [`Transport::list`] leaves out names starting with `.`, so temporary
//! files never show up as keys.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};

use super::{check_key, check_prefix, Transport};
use crate::ShareError;

/// Most names one [`Transport::list`] call returns.
const MAX_LIST: usize = 10_000_000;

/// A repository in a local directory.
#[derive(Debug)]
pub struct FileTransport {
    root: PathBuf,
    counter: AtomicU64,
}

impl FileTransport {
    /// The repository at `root` (it need not exist yet: reads find nothing, the first write
    /// creates it).
    pub fn new(root: &Path) -> FileTransport {
        FileTransport {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
        }
    }

    fn err(&self, key: &str, source: io::Error) -> ShareError {
        let source = if source.kind() == io::ErrorKind::PermissionDenied
            && source.to_string().contains("outside")
        {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "it leads outside the repository directory (a symlink or '..'); refused",
            )
        } else {
            source
        };
        ShareError::io(self.root.join(key).display(), source)
    }

    /// The root directory, or `None` when it does not exist.
    fn root_dir(&self) -> Result<Option<Dir>, ShareError> {
        match Dir::open_ambient_dir(&self.root, ambient_authority()) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ShareError::io(self.root.display(), e)),
        }
    }

    /// Open the regular file `key` for reading; `None` when it is absent.
    fn open_file(&self, key: &str) -> Result<Option<(cap_std::fs::File, u64)>, ShareError> {
        check_key(key)?;
        let Some(dir) = self.root_dir()? else {
            return Ok(None);
        };
        let mut opts = OpenOptions::new();
        opts.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let f = match dir.open_with(key, &opts) {
            Ok(f) => f,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(self.err(key, e)),
        };
        let meta = f.metadata().map_err(|e| self.err(key, e))?;
        if !meta.is_file() {
            return Err(self.err(
                key,
                io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
            ));
        }
        Ok(Some((f, meta.len())))
    }

    fn too_large(&self, key: &str, limit: u64) -> ShareError {
        ShareError::TooLarge {
            repo: self.describe(),
            key: key.to_string(),
            limit,
        }
    }

    /// Write `key` atomically from `fill`, which writes the bytes into the temporary file.
    fn put_with(
        &self,
        key: &str,
        fill: &mut dyn FnMut(&mut cap_std::fs::File) -> io::Result<()>,
    ) -> Result<(), ShareError> {
        check_key(key)?;
        fs::create_dir_all(&self.root).map_err(|e| ShareError::io(self.root.display(), e))?;
        let dir = Dir::open_ambient_dir(&self.root, ambient_authority())
            .map_err(|e| ShareError::io(self.root.display(), e))?;
        let (parent, base) = match key.rsplit_once('/') {
            Some((p, b)) => (Some(p), b),
            None => (None, key),
        };
        if let Some(p) = parent {
            dir.create_dir_all(p).map_err(|e| self.err(p, e))?;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{base}.tmp-{}-{n}", std::process::id());
        let tmp = match parent {
            Some(p) => format!("{p}/{tmp_name}"),
            None => tmp_name,
        };
        let r = (|| {
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            let mut f = dir.open_with(&tmp, &opts)?;
            fill(&mut f)?;
            f.flush()?;
            f.sync_data()?;
            dir.rename(&tmp, &dir, key)
        })();
        if let Err(e) = r {
            let _ = dir.remove_file(&tmp);
            return Err(self.err(key, e));
        }
        Ok(())
    }
}

/// Whether an open error means "no such key" (a missing file, or a path through a file).
fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

impl Transport for FileTransport {
    fn is_local(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError> {
        let Some((f, len)) = self.open_file(key)? else {
            return Ok(None);
        };
        if len > limit {
            return Err(self.too_large(key, limit));
        }
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| self.err(key, e))?;
        if buf.len() as u64 > limit {
            return Err(self.too_large(key, limit));
        }
        Ok(Some(buf))
    }

    fn open_read(
        &self,
        key: &str,
        limit: u64,
        _scratch: &Path,
    ) -> Result<Option<Box<dyn Read + Send>>, ShareError> {
        let Some((f, len)) = self.open_file(key)? else {
            return Ok(None);
        };
        if len > limit {
            return Err(self.too_large(key, limit));
        }
        Ok(Some(Box::new(Bounded {
            inner: f.into_std(),
            left: limit,
        })))
    }

    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError> {
        let Some((f, len)) = self.open_file(key)? else {
            return Ok(false);
        };
        if len > limit {
            return Err(self.too_large(key, limit));
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| ShareError::io(dest.display(), e))?;
        let r = io::copy(&mut f.take(limit.saturating_add(1)), &mut out)
            .map_err(|e| self.err(key, e))
            .and_then(|n| {
                if n > limit {
                    Err(self.too_large(key, limit))
                } else {
                    out.flush().map_err(|e| ShareError::io(dest.display(), e))
                }
            });
        if let Err(e) = r {
            let _ = fs::remove_file(dest);
            return Err(e);
        }
        Ok(true)
    }

    fn exists(&self, key: &str) -> Result<bool, ShareError> {
        check_key(key)?;
        let Some(dir) = self.root_dir()? else {
            return Ok(false);
        };
        match dir.metadata(key) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if absent(&e) => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError> {
        let mut input = fs::File::open(src).map_err(|e| ShareError::io(src.display(), e))?;
        self.put_with(key, &mut |f| io::copy(&mut input, f).map(|_| ()))
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError> {
        self.put_with(key, &mut |f| f.write_all(data))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, ShareError> {
        check_prefix(prefix)?;
        let Some(dir) = self.root_dir()? else {
            return Ok(Vec::new());
        };
        let sub = if prefix.is_empty() {
            Ok(dir)
        } else {
            dir.open_dir(prefix.trim_end_matches('/'))
        };
        let sub = match sub {
            Ok(d) => d,
            Err(e) if absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(prefix, e)),
        };
        let mut out = Vec::new();
        for entry in sub.entries().map_err(|e| self.err(prefix, e))? {
            let entry = entry.map_err(|e| self.err(prefix, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || check_key(&name).is_err() {
                continue;
            }
            let ft = entry.file_type().map_err(|e| self.err(prefix, e))?;
            if !ft.is_file() {
                continue;
            }
            if out.len() >= MAX_LIST {
                return Err(ShareError::TooLarge {
                    repo: self.describe(),
                    key: format!("the listing of '{prefix}'"),
                    limit: MAX_LIST as u64,
                });
            }
            out.push(format!("{prefix}{name}"));
        }
        out.sort();
        Ok(out)
    }
}

/// A reader that fails once more than its bound would be read (a file that grows while it is
/// read cannot hand out more than was allowed).
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let n64 = n as u64;
        if n64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the object is larger than its bound",
            ));
        }
        self.left -= n64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn put_get_exists_list() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("repo");
        let t = FileTransport::new(&root);
        assert_eq!(t.get("a.info", 10).expect("get"), None);
        assert!(!t.exists("a.info").expect("exists"));
        assert_eq!(t.list("").expect("list"), Vec::<String>::new());
        t.put_bytes("a.info", b"hello").expect("put");
        t.put_bytes("archives/x.tar.zst", b"data").expect("put");
        assert_eq!(
            t.get("a.info", 5).expect("get").as_deref(),
            Some(&b"hello"[..])
        );
        assert!(matches!(
            t.get("a.info", 4),
            Err(ShareError::TooLarge { limit: 4, .. })
        ));
        assert!(t.exists("archives/x.tar.zst").expect("exists"));
        assert!(!t.exists("archives").expect("a directory is not a key"));
        assert_eq!(t.list("").expect("list"), vec!["a.info".to_string()]);
        assert_eq!(
            t.list("archives/").expect("list"),
            vec!["archives/x.tar.zst".to_string()]
        );
        let src = tmp.path().join("src");
        fs::write(&src, b"replaced").expect("write");
        t.put_file("a.info", &src).expect("put_file");
        let dest = tmp.path().join("dest");
        assert!(t.get_to_file("a.info", &dest, 100).expect("get_to_file"));
        assert_eq!(fs::read(&dest).expect("read"), b"replaced");
        let dest2 = tmp.path().join("dest2");
        assert!(t.get_to_file("a.info", &dest2, 3).is_err());
        assert!(!dest2.exists(), "a refused download leaves no file");
        assert!(!t.get_to_file("b.info", &dest2, 3).expect("absent"));
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&root)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(matches!(t.get(bad, 10), Err(ShareError::BadKey { .. })));
            assert!(matches!(
                t.put_bytes(bad, b""),
                Err(ShareError::BadKey { .. })
            ));
        }
    }

    #[test]
    fn symlinks_out_of_the_repository_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("repo");
        fs::create_dir(&root).expect("mkdir");
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"host file").expect("write");
        symlink(&secret, root.join("a.info")).expect("symlink");
        symlink("../secret", root.join("b.info")).expect("symlink");
        symlink(tmp.path(), root.join("archives")).expect("symlink");
        let t = FileTransport::new(&root);
        for key in ["a.info", "b.info", "archives/secret"] {
            let e = t.get(key, 100).expect_err(key);
            assert!(e.to_string().contains("outside"), "{key}: {e}");
            assert!(t.exists(key).is_err(), "{key}");
        }
        // Writing through the escaping directory link is refused too, and the host file stays.
        assert!(t.put_bytes("archives/secret", b"overwritten").is_err());
        assert_eq!(fs::read(&secret).expect("read"), b"host file");
        // A symlink that stays inside is an ordinary key.
        fs::write(root.join("real.info"), b"inside").expect("write");
        symlink("real.info", root.join("c.info")).expect("symlink");
        assert_eq!(
            t.get("c.info", 100).expect("get").as_deref(),
            Some(&b"inside"[..])
        );
    }

    #[test]
    fn special_files_do_not_hang() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("repo");
        fs::create_dir(&root).expect("mkdir");
        let fifo = root.join("f.info");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("cstr");
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let t = FileTransport::new(&root);
        let e = t.get("f.info", 100).expect_err("a FIFO is not a record");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(!t.exists("f.info").expect("exists"));
    }
}
