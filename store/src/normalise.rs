//! Normalisation of a freshly built or added object, in place, before it is hashed and
//! registered: every entry gets mtime 1; regular files 0444, or 0555 when any execute bit was
//! set; directories 0555; setuid/setgid/sticky bits dropped; owner 0:0 when running as root;
//! extended attributes removed. Sockets, fifos and devices are refused with a clear error, since
//! the canonical archive cannot represent them. After normalisation the object is read-only.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::archive::{file_mode, kind_name, set_mtime};

/// Why an object could not be normalised.
#[derive(Debug, thiserror::Error)]
pub enum NormaliseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unsupported file type ({kind}); store objects hold only regular files, directories and symlinks")]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NormaliseError + '_ {
    move |source| NormaliseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Normalise the file or tree at `root` (see the module documentation).
pub fn normalise(root: &Path) -> Result<(), NormaliseError> {
    let as_root = nix::unistd::geteuid().is_root();
    walk(root, as_root)
}

/// Normalise an object that an unpacker just wrote. When it was unpacked with the canonical
/// metadata ([`crate::ArchiveStats::canonical`]), every entry already has its final mode and
/// mtime, and what remains to check is what the file system may have added on creation, which
/// the object's root shows for the whole tree: an owner other than 0:0 when running as root (a
/// set-group-ID parent directory) and extended attributes (default ACLs inherited from the
/// parent, security labels). Only then is the whole tree walked.
pub fn normalise_unpacked(root: &Path, canonical: bool) -> Result<(), NormaliseError> {
    if !canonical {
        return normalise(root);
    }
    let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
    let as_root = nix::unistd::geteuid().is_root();
    if (as_root && (meta.uid() != 0 || meta.gid() != 0)) || has_xattrs(root)? {
        return walk(root, as_root);
    }
    Ok(())
}

fn has_xattrs(p: &Path) -> Result<bool, NormaliseError> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| NormaliseError::Io {
        path: p.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string; a null buffer with size 0 asks for the size.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    Ok(len > 0)
}

fn walk(p: &Path, as_root: bool) -> Result<(), NormaliseError> {
    let meta = fs::symlink_metadata(p).map_err(io_err(p))?;
    let ft = meta.file_type();
    if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
        return Err(NormaliseError::UnsupportedFileType {
            path: p.into(),
            kind: kind_name(&ft),
        });
    }
    if as_root && (meta.uid() != 0 || meta.gid() != 0) {
        nix::unistd::fchownat(
            None,
            p,
            Some(nix::unistd::Uid::from_raw(0)),
            Some(nix::unistd::Gid::from_raw(0)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(p)(e.into()))?;
    }
    remove_xattrs(p)?;
    if ft.is_dir() {
        // Make sure the directory can be listed while its children are fixed.
        if meta.mode() & 0o500 != 0o500 {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(io_err(p))?;
        }
        for e in fs::read_dir(p).map_err(io_err(p))? {
            let e = e.map_err(io_err(p))?;
            walk(&e.path(), as_root)?;
        }
        if meta.mode() & 0o7777 != 0o555 || meta.mode() & 0o500 != 0o500 {
            fs::set_permissions(p, fs::Permissions::from_mode(0o555)).map_err(io_err(p))?;
        }
    } else if ft.is_file() {
        let want = file_mode(meta.mode());
        if meta.mode() & 0o7777 != want {
            fs::set_permissions(p, fs::Permissions::from_mode(want)).map_err(io_err(p))?;
        }
    }
    if meta.mtime() != 1 || meta.mtime_nsec() != 0 || ft.is_dir() {
        set_mtime(p, 1).map_err(io_err(p))?;
    }
    Ok(())
}

fn remove_xattrs(p: &Path) -> Result<(), NormaliseError> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| NormaliseError::Io {
        path: p.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string; a null buffer with size 0 asks for the size.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if len <= 0 {
        // 0: none; -1: unsupported by the file system or not permitted — nothing to remove.
        return Ok(());
    }
    let mut buf = vec![0u8; len as usize];
    // SAFETY: `buf` has `len` writable bytes.
    let len = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len <= 0 {
        return Ok(());
    }
    for name in buf[..len as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let Ok(cn) = CString::new(name) else { continue };
        // SAFETY: both strings are valid and NUL-terminated.
        let r = unsafe { libc::lremovexattr(c.as_ptr(), cn.as_ptr()) };
        if r != 0 {
            let err = io::Error::last_os_error();
            // Some attributes (e.g. security labels) cannot be removed; they are never part of
            // the archive, so that is not fatal.
            if err.raw_os_error() != Some(libc::EPERM) && err.raw_os_error() != Some(libc::ENOTSUP)
            {
                return Err(io_err(p)(err));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_mtimes() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path().join("o");
        fs::create_dir_all(d.join("sub")).expect("mkdir");
        fs::write(d.join("sub/x"), b"x").expect("w");
        fs::write(d.join("y"), b"y").expect("w");
        fs::set_permissions(d.join("y"), fs::Permissions::from_mode(0o4711)).expect("chmod");
        fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o000)).expect("chmod");
        std::os::unix::fs::symlink("y", d.join("l")).expect("ln");
        normalise(&d).expect("normalise");
        let m = |p: &str| fs::symlink_metadata(d.join(p)).expect("stat");
        assert_eq!(m("sub").mode() & 0o7777, 0o555);
        assert_eq!(m("sub/x").mode() & 0o7777, 0o444);
        assert_eq!(m("y").mode() & 0o7777, 0o555);
        for p in ["", "sub", "sub/x", "y", "l"] {
            assert_eq!(m(p).mtime(), 1, "{p}");
        }
        crate::archive::remove_tree(&d).expect("rm");
    }
}
