//! Unpacking fetched archives (`fetchTarball` downloads, `git archive` output) into a tree that
//! may become a store path. An archive is hostile input: every rule here keeps what it holds
//! inside the destination and bounded.
//!
//! - Formats: tar (ustar, GNU and pax long names), plain or compressed with gzip, xz or zstd
//!   (recognised by their magic bytes, not by the URL).
//! - Entry names must be relative and may not contain `..`; an entry is never written through a
//!   symlink (every directory on its way must be a real directory of the tree).
//! - A symlink's target must be relative and resolve inside the tree; once the archive is
//!   unpacked every symlink is resolved again through the links that now exist, so a chain of
//!   links cannot lead out either. Hard links must name a regular file unpacked before (the
//!   file is copied). Device nodes and FIFOs are refused.
//! - Bounds: the bytes of all files together and the number of entries ([`UnpackLimits`]), and
//!   the decompressed stream as a whole, so a compression bomb stops early.
//!
//! Modes keep only the executable bit (the store normalises the rest); ownership and times are
//! not kept.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// The bounds of one unpacking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of regular files, all together.
    pub max_bytes: u64,
    /// Entries of the archive (files, directories, links).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    /// 2 GiB of files and 1,000,000 entries (a whole Linux distribution's package expressions
    /// fit many times).
    fn default() -> UnpackLimits {
        UnpackLimits {
            max_bytes: 2 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// Why an archive was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry '{entry}' refused: {why}")]
    Refused { entry: String, why: String },
    #[error("the archive is larger than the limit of {0} bytes of files")]
    TooLarge(u64),
    #[error("the archive has more than {0} entries")]
    TooManyEntries(u64),
    #[error("not a tar archive this unpacker reads: {0}")]
    Format(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A reader that fails once more than `left` bytes went through (the decompressed stream's
/// bound: files plus generous room for headers and names).
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other("the decompressed archive is larger than the limit"))?;
        Ok(n)
    }
}

/// A decompressing reader for the archive file at `path`, chosen by its first bytes.
fn open_archive(path: &Path) -> Result<Box<dyn Read>, UnpackError> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        let n = f.read(&mut magic[got..]).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let f = File::open(path).map_err(io_err("opening", path))?;
    let r = BufReader::with_capacity(1 << 16, f);
    let m = &magic[..got];
    Ok(if m.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(r))
    } else if m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(r.into_inner()).map_err(io_err("reading", path))?)
    } else if m.starts_with(b"BZh") {
        return Err(UnpackError::Format(
            "bzip2 compression is not supported (publish the set as .tar.gz, .tar.xz or .tar.zst)"
                .into(),
        ));
    } else if m.starts_with(b"PK\x03\x04") {
        return Err(UnpackError::Format(
            "zip archives are not supported (publish the set as .tar.gz, .tar.xz or .tar.zst)"
                .into(),
        ));
    } else if got == 0 {
        return Err(UnpackError::Format("the file is empty".into()));
    } else {
        Box::new(r)
    })
}

/// The normal components of an entry name; `None` for the root itself (`./`).
fn components(raw: &str) -> Result<Option<Vec<String>>, String> {
    let mut out = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => return Err("'..' in the name".into()),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute name".into()),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Create the directories `dest/comps[..]` as needed; each one on the way must be a real
/// directory (never a symlink). Returns the directory.
fn real_dirs(dest: &Path, comps: &[String]) -> Result<PathBuf, String> {
    let mut here = dest.to_path_buf();
    for c in comps {
        here.push(c);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("it would be written through the symlink '{c}'"))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("'{c}' is a file, not a directory")),
            Err(_) => fs::create_dir(&here).map_err(|e| format!("creating '{c}': {e}"))?,
        }
    }
    Ok(here)
}

/// Lexically, whether a relative link `target` placed in directory `dir` (components below
/// the root) stays inside the root.
fn lexically_inside(dir: &[String], target: &str) -> bool {
    let mut depth = dir.len();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// Remove what is at `p` unless it is a directory (an error then): a later entry replaces an
/// earlier one, as tar does.
fn replace(p: &Path) -> Result<(), String> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err("a directory of the same name is in the way".into()),
        Ok(_) => fs::remove_file(p).map_err(|e| format!("replacing the earlier entry: {e}")),
        Err(_) => Ok(()),
    }
}

/// Unpack the archive at `archive` into `dest` (created; must not exist). With `strip_top`, a
/// single top-level directory is what the result is (as Nix's `fetchTarball` does); the
/// returned path is the tree.
pub fn unpack_archive(
    archive: &Path,
    dest: &Path,
    strip_top: bool,
    limits: UnpackLimits,
) -> Result<PathBuf, UnpackError> {
    fs::create_dir(dest).map_err(io_err("creating", dest))?;
    let stream = Bounded {
        inner: open_archive(archive)?,
        left: limits
            .max_bytes
            .saturating_add(limits.max_entries.saturating_mul(4096))
            .saturating_add(64 << 20),
    };
    let mut tar = tar::Archive::new(stream);
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let fmt = |e: io::Error| UnpackError::Format(e.to_string());
    for entry in tar.entries().map_err(fmt)? {
        let mut entry = entry.map_err(fmt)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(UnpackError::TooManyEntries(limits.max_entries));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refused = |why: String| UnpackError::Refused {
            entry: raw.clone(),
            why,
        };
        let Some(comps) = components(&raw).map_err(refused)? else {
            continue;
        };
        let (name, parents) = comps
            .split_last()
            .ok_or_else(|| refused("no name".into()))?;
        let dir = real_dirs(dest, parents).map_err(refused)?;
        let target = dir.join(name);
        match kind {
            tar::EntryType::Directory => {
                real_dirs(dest, &comps).map_err(refused)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                replace(&target).map_err(refused)?;
                let mut f = File::create(&target).map_err(io_err("creating", &target))?;
                let left = limits.max_bytes.saturating_sub(bytes);
                let n = io::copy(&mut (&mut entry).take(left.saturating_add(1)), &mut f)
                    .map_err(|e| refused(format!("reading its data: {e}")))?;
                bytes += n;
                if bytes > limits.max_bytes {
                    return Err(UnpackError::TooLarge(limits.max_bytes));
                }
                let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                set_mode(&target, if exec { 0o755 } else { 0o644 })?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| refused("a symlink without a target".into()))?;
                if link.starts_with('/') {
                    return Err(refused(format!(
                        "the symlink points to the absolute path '{link}', outside the tree"
                    )));
                }
                if !lexically_inside(parents, &link) {
                    return Err(refused(format!(
                        "the symlink's target '{link}' is outside the tree"
                    )));
                }
                replace(&target).map_err(refused)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io_err("creating the symlink", &target))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| refused("a hard link without a target".into()))?;
                let lcomps = components(&link)
                    .map_err(|why| refused(format!("the hard link's target: {why}")))?
                    .ok_or_else(|| refused("a hard link to the root".into()))?;
                let (lname, lparents) = lcomps
                    .split_last()
                    .ok_or_else(|| refused("no target".into()))?;
                let source = existing_dirs(dest, lparents)
                    .map(|d| d.join(lname))
                    .filter(|s| fs::symlink_metadata(s).is_ok_and(|m| m.is_file()))
                    .ok_or_else(|| {
                        refused(format!(
                            "the hard link's target '{link}' is not a file unpacked before"
                        ))
                    })?;
                if source == target {
                    continue;
                }
                replace(&target).map_err(refused)?;
                let n = fs::copy(&source, &target).map_err(io_err("copying to", &target))?;
                bytes += n;
                if bytes > limits.max_bytes {
                    return Err(UnpackError::TooLarge(limits.max_bytes));
                }
            }
            other => {
                return Err(refused(format!(
                    "entries of type {other:?} (devices, FIFOs, sparse files) are not unpacked"
                )))
            }
        }
    }
    check_links(dest, dest, &mut Vec::new())?;
    if entries == 0 {
        return Err(UnpackError::Format("the archive is empty".into()));
    }
    if strip_top {
        let mut top = fs::read_dir(dest)
            .map_err(io_err("listing", dest))?
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_err("listing", dest))?;
        if top.len() == 1 {
            let only = top.remove(0).path();
            if fs::symlink_metadata(&only).is_ok_and(|m| m.is_dir()) {
                return Ok(only);
            }
        }
    }
    Ok(dest.to_path_buf())
}

fn set_mode(p: &Path, mode: u32) -> Result<(), UnpackError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io_err("setting the mode", p))
}

/// `dest/comps`, when every component exists as a real directory.
fn existing_dirs(dest: &Path, comps: &[String]) -> Option<PathBuf> {
    let mut here = dest.to_path_buf();
    for c in comps {
        here.push(c);
        if !fs::symlink_metadata(&here).ok()?.is_dir() {
            return None;
        }
    }
    Some(here)
}

/// Every symlink under `dir` (components `rel` below `root`) resolves inside `root` through
/// the links that exist now.
fn check_links(root: &Path, dir: &Path, rel: &mut Vec<String>) -> Result<(), UnpackError> {
    let mut names = fs::read_dir(dir)
        .map_err(io_err("listing", dir))?
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_err("listing", dir))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let ft = e.file_type().map_err(io_err("reading", &p))?;
        rel.push(name);
        if ft.is_symlink() {
            if let Err(why) = resolve_inside(root, rel) {
                return Err(UnpackError::Refused {
                    entry: rel.join("/"),
                    why: why.into(),
                });
            }
        } else if ft.is_dir() {
            check_links(root, &p, rel)?;
        }
        rel.pop();
    }
    Ok(())
}

/// Follow the path `comps` below `root` through the symlinks there; an error when the walk
/// leaves `root` or meets an absolute target.
fn resolve_inside(root: &Path, comps: &[String]) -> Result<(), &'static str> {
    let mut stack: Vec<String> = Vec::new();
    let mut todo: Vec<String> = comps.iter().rev().cloned().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if stack.pop().is_none() {
                    return Err("a chain of symlinks leads outside the tree");
                }
                continue;
            }
            _ => {}
        }
        stack.push(c);
        let here: PathBuf = stack.iter().fold(root.to_path_buf(), |p, s| p.join(s));
        if let Ok(target) = fs::read_link(&here) {
            hops += 1;
            if hops > 40 {
                return Err("too many levels of symlinks");
            }
            stack.pop();
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                return Err("a symlink points to an absolute path, outside the tree");
            }
            todo.extend(t.split('/').rev().map(str::to_string));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar archive with these raw entries: (name, type, link target, data). Names are
    /// written into the header as they are (the tar crate's checks are bypassed on purpose).
    fn tar_of(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn unpack(
        dir: &Path,
        entries: &[(&str, tar::EntryType, &str, &[u8])],
    ) -> Result<PathBuf, String> {
        let a = dir.join("a.tar");
        fs::write(&a, tar_of(entries)).expect("write");
        let out = dir.join("out");
        let _ = fs::remove_dir_all(&out);
        unpack_archive(&a, &out, true, UnpackLimits::default()).map_err(|e| e.to_string())
    }

    use tar::EntryType as T;

    #[test]
    fn a_single_top_directory_is_stripped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = unpack(
            dir.path(),
            &[
                ("set/", T::Directory, "", b""),
                ("set/default.bld", T::Regular, "", b"42\n"),
                ("set/lib/x.bld", T::Regular, "", b"1\n"),
                ("set/l", T::Symlink, "lib/x.bld", b""),
                ("set/h", T::Link, "set/default.bld", b""),
            ],
        )
        .expect("unpacked");
        assert!(t.ends_with("set"));
        assert_eq!(fs::read(t.join("default.bld")).expect("file"), b"42\n");
        assert_eq!(fs::read(t.join("l")).expect("via link"), b"1\n");
        assert_eq!(fs::read(t.join("h")).expect("copied"), b"42\n");
    }

    #[test]
    fn hostile_entries_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (case, entries) in [
            ("dotdot", vec![("../x", T::Regular, "", &b"x"[..])]),
            ("absolute", vec![("/tmp/x", T::Regular, "", &b"x"[..])]),
            ("abs link", vec![("l", T::Symlink, "/etc/passwd", &b""[..])]),
            ("up link", vec![("d/l", T::Symlink, "../../x", &b""[..])]),
            (
                "through a link",
                vec![
                    ("l", T::Symlink, ".", &b""[..]),
                    ("l/x", T::Regular, "", &b"x"[..]),
                ],
            ),
            (
                "chain",
                vec![
                    ("d/l1", T::Symlink, "..", &b""[..]),
                    ("l2", T::Symlink, "d/l1/..", &b""[..]),
                ],
            ),
            (
                "hard link out",
                vec![("h", T::Link, "../etc/passwd", &b""[..])],
            ),
            ("device", vec![("dev", T::Char, "", &b""[..])]),
        ] {
            let e = unpack(dir.path(), &entries).expect_err(case);
            assert!(!dir.path().join("x").exists(), "{case}: written outside");
            assert!(e.contains("refused"), "{case}: {e}");
        }
    }

    #[test]
    fn limits_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.tar");
        fs::write(&a, tar_of(&[("big", T::Regular, "", &[7u8; 5000])])).expect("write");
        let small = UnpackLimits {
            max_bytes: 4096,
            max_entries: 10,
        };
        let e = unpack_archive(&a, &dir.path().join("o1"), false, small).expect_err("too big");
        assert!(matches!(e, UnpackError::TooLarge(4096)), "{e}");
        let many: Vec<(String, T, &str, &[u8])> = (0..11)
            .map(|i| (format!("f{i}"), T::Regular, "", &b""[..]))
            .collect();
        let refs: Vec<(&str, T, &str, &[u8])> = many
            .iter()
            .map(|(n, t, l, d)| (n.as_str(), *t, *l, *d))
            .collect();
        fs::write(&a, tar_of(&refs)).expect("write");
        let e = unpack_archive(&a, &dir.path().join("o2"), false, small).expect_err("too many");
        assert!(matches!(e, UnpackError::TooManyEntries(10)), "{e}");
        fs::write(&a, b"BZh91AY&SY").expect("write");
        let e = unpack_archive(&a, &dir.path().join("o3"), false, small).expect_err("bzip2");
        assert!(e.to_string().contains("bzip2"), "{e}");
    }

    #[test]
    fn gzip_is_recognised() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.tgz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar_of(&[("x/a", T::Regular, "", b"hi")]))
            .expect("gzip");
        fs::write(&a, gz.finish().expect("gzip")).expect("write");
        let t = unpack_archive(&a, &dir.path().join("o"), true, UnpackLimits::default())
            .expect("unpacked");
        assert_eq!(fs::read(t.join("a")).expect("file"), b"hi");
    }
}
