//! `builtin:unpack-deb`: unpack Debian binary packages into one tree (a sysroot), in Rust.
//!
//! A `.deb` is an `ar` archive (parsed here, no external tool) holding `debian-binary`
//! (`2.0`), `control.tar.*` and `data.tar.*` (xz, zstd, gzip or plain). Several packages
//! unpack into the same destination in order: the merged-/usr links (`bin`, `sbin`, `lib`,
//! `lib32`, `lib64`, `libx32` → `usr/...`) are created first, so entries under `./bin` land in
//! `usr/bin` as on a Debian 12 system. Paths are resolved inside the destination, following
//! symlinks that already exist there (absolute link targets are taken relative to the
//! destination): an entry whose path leaves the tree, by `..`, an absolute name or a symlink,
//! is refused. Hard links, symlinks, modes and modification times are kept; ownership is
//! not (store normalisation happens at registration).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::stanza;

/// Errors while unpacking `.deb` files. Each names the package file.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{deb}: not a Debian package ({why})")]
    Format { deb: PathBuf, why: String },
    #[error("{deb}: entry '{entry}' would be written outside the destination ({why}); refused")]
    Escape {
        deb: PathBuf,
        entry: String,
        why: String,
    },
    #[error("{deb}: entry '{entry}': {why}")]
    Entry {
        deb: PathBuf,
        entry: String,
        why: String,
    },
    #[error("unpack-deb: {path}: {why}")]
    Input { path: String, why: String },
    #[error("{deb}: {what}: {source}")]
    Io {
        deb: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Options of [`unpack_debs`].
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Create the merged-/usr links first (default: true).
    pub merged_usr: bool,
    /// Keep each package's `control.tar` files under `var/lib/dpkg/info/<package>.<file>`
    /// (default: false).
    pub keep_control: bool,
}

impl Default for UnpackOptions {
    fn default() -> UnpackOptions {
        UnpackOptions {
            merged_usr: true,
            keep_control: false,
        }
    }
}

/// The merged-/usr links, created before anything is unpacked.
pub const MERGED_USR_LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib32", "usr/lib32"),
    ("lib64", "usr/lib64"),
    ("libx32", "usr/libx32"),
];

/// What one package contained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebInfo {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// The `control` file's fields, in order.
    pub control: Vec<(String, String)>,
    pub files: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub directories: u64,
    /// Device nodes and FIFOs are not created.
    pub skipped: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
}

/// What [`unpack_debs`] did, package by package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackReport {
    pub packages: Vec<DebInfo>,
}

impl UnpackReport {
    /// Regular files written, over all packages.
    pub fn files(&self) -> u64 {
        self.packages.iter().map(|p| p.files).sum()
    }

    /// Bytes of regular files written, over all packages.
    pub fn bytes(&self) -> u64 {
        self.packages.iter().map(|p| p.bytes).sum()
    }
}

/// Unpack `debs` in order into `dest` (created if missing): merged-/usr links first, then
/// each package's data. A later package's file replaces an earlier one's.
pub fn unpack_debs(
    debs: &[PathBuf],
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, DebError> {
    let top = |what: &str| {
        let what = what.to_string();
        move |source| DebError::Io {
            deb: dest.to_path_buf(),
            what,
            source,
        }
    };
    fs::create_dir_all(dest).map_err(top("creating the destination"))?;
    if opts.merged_usr {
        for (link, target) in MERGED_USR_LINKS {
            fs::create_dir_all(dest.join(target)).map_err(top("creating usr/"))?;
            let at = dest.join(link);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {}
                Ok(_) => {
                    return Err(DebError::Entry {
                        deb: dest.to_path_buf(),
                        entry: link.to_string(),
                        why: "exists and is not the merged-/usr link".to_string(),
                    })
                }
                Err(_) => std::os::unix::fs::symlink(target, &at)
                    .map_err(top("creating the merged-/usr links"))?,
            }
        }
    }
    let mut report = UnpackReport::default();
    for deb in debs {
        report.packages.push(unpack_one(deb, dest, opts)?);
    }
    Ok(report)
}

/// The `control` file of a `.deb` as (field, value) pairs.
pub fn read_control(deb: &Path) -> Result<Vec<(String, String)>, DebError> {
    let mut ar = open_deb(deb)?;
    while let Some((name, mut member)) = ar.next_member()? {
        if name.starts_with("control.tar") {
            let tar = decompress(deb, &name, &mut member)?;
            return control_from_tar(deb, tar, None);
        }
        member.skip()?;
    }
    Err(DebError::Format {
        deb: deb.to_path_buf(),
        why: "no control.tar member".to_string(),
    })
}

fn unpack_one(deb: &Path, dest: &Path, opts: &UnpackOptions) -> Result<DebInfo, DebError> {
    let mut ar = open_deb(deb)?;
    let mut info = DebInfo::default();
    let mut saw_version = false;
    let mut saw_data = false;
    while let Some((name, mut member)) = ar.next_member()? {
        if name == "debian-binary" {
            let mut v = String::new();
            member
                .read_to_string(&mut v)
                .map_err(ioe(deb, "reading debian-binary"))?;
            if !v.starts_with("2.") {
                return Err(DebError::Format {
                    deb: deb.to_path_buf(),
                    why: format!("unsupported format version '{}'", v.trim()),
                });
            }
            saw_version = true;
        } else if name.starts_with("control.tar") {
            let tar = decompress(deb, &name, &mut member)?;
            let keep = opts.keep_control.then(|| dest.join("var/lib/dpkg/info"));
            info.control = control_from_tar(deb, tar, keep.as_deref())?;
            let field = |k: &str| {
                info.control
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            info.package = field("Package");
            info.version = field("Version");
            info.architecture = field("Architecture");
            if let Some(dir) = keep {
                rename_control_files(deb, &dir, &info.package)?;
            }
        } else if name.starts_with("data.tar") {
            let tar = decompress(deb, &name, &mut member)?;
            unpack_data(deb, tar, dest, 0, &mut info)?;
            saw_data = true;
        }
        member.skip()?;
    }
    if !saw_version || !saw_data {
        return Err(DebError::Format {
            deb: deb.to_path_buf(),
            why: "missing debian-binary or data.tar member".to_string(),
        });
    }
    Ok(info)
}

fn ioe<'a>(deb: &'a Path, what: &'a str) -> impl FnOnce(io::Error) -> DebError + 'a {
    move |source| DebError::Io {
        deb: deb.to_path_buf(),
        what: what.to_string(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// ar

/// A streaming reader of an `ar` archive.
struct ArReader<R: Read> {
    inner: R,
    deb: PathBuf,
    /// Padding byte owed after the previous member.
    pad: bool,
}

/// One member's bytes; the rest is skipped when it is dropped via [`Member::skip`].
struct Member<'a, R: Read> {
    inner: io::Take<&'a mut R>,
    deb: &'a Path,
}

impl<R: Read> Read for Member<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<R: Read> Member<'_, R> {
    fn skip(&mut self) -> Result<(), DebError> {
        io::copy(&mut self.inner, &mut io::sink()).map_err(ioe(self.deb, "reading"))?;
        if self.inner.limit() != 0 {
            return Err(DebError::Format {
                deb: self.deb.to_path_buf(),
                why: "truncated ar member".to_string(),
            });
        }
        Ok(())
    }
}

fn open_deb(deb: &Path) -> Result<ArReader<BufReader<File>>, DebError> {
    let f = File::open(deb).map_err(ioe(deb, "opening"))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| DebError::Format {
        deb: deb.to_path_buf(),
        why: "too short".to_string(),
    })?;
    if &magic != b"!<arch>\n" {
        return Err(DebError::Format {
            deb: deb.to_path_buf(),
            why: "no ar signature".to_string(),
        });
    }
    Ok(ArReader {
        inner: r,
        deb: deb.to_path_buf(),
        pad: false,
    })
}

impl<R: Read> ArReader<R> {
    /// The next member's name and a reader of its bytes (the previous member must have been
    /// read to its end or skipped).
    fn next_member(&mut self) -> Result<Option<(String, Member<'_, R>)>, DebError> {
        let bad = |why: &str| DebError::Format {
            deb: self.deb.clone(),
            why: why.to_string(),
        };
        if self.pad {
            let mut b = [0u8; 1];
            if self.inner.read(&mut b).map_err(ioe(&self.deb, "reading"))? == 0 {
                return Ok(None);
            }
        }
        let mut header = [0u8; 60];
        let mut got = 0;
        while got < 60 {
            let n = self
                .inner
                .read(&mut header[got..])
                .map_err(ioe(&self.deb, "reading"))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            return Ok(None);
        }
        if got < 60 || &header[58..60] != b"`\n" {
            return Err(bad("corrupt ar member header"));
        }
        let name = String::from_utf8_lossy(&header[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("corrupt ar member size"))?;
        self.pad = size % 2 == 1;
        Ok(Some((
            name,
            Member {
                inner: (&mut self.inner).take(size),
                deb: &self.deb,
            },
        )))
    }
}

/// A decompressing reader for a `*.tar[.xz|.zst|.gz|.bz2]` member.
pub(crate) fn decompress<'a>(
    deb: &Path,
    name: &str,
    member: &'a mut dyn Read,
) -> Result<Box<dyn Read + 'a>, DebError> {
    Ok(match name.rsplit_once('.').map(|(_, e)| e) {
        Some("tar") => Box::new(member),
        Some("xz") => Box::new(xz2::read::XzDecoder::new_multi_decoder(member)),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(member)),
        Some("bz2") => Box::new(bzip2::read::MultiBzDecoder::new(member)),
        Some("zst") => {
            Box::new(zstd::stream::read::Decoder::new(member).map_err(ioe(deb, "starting zstd"))?)
        }
        _ => {
            return Err(DebError::Format {
                deb: deb.to_path_buf(),
                why: format!("unsupported member compression '{name}'"),
            })
        }
    })
}

// ---------------------------------------------------------------------------------------------
// control

/// Read `control.tar`: parse `./control`; when `keep` is set, also write every file there.
fn control_from_tar(
    deb: &Path,
    tar: Box<dyn Read + '_>,
    keep: Option<&Path>,
) -> Result<Vec<(String, String)>, DebError> {
    let mut archive = tar::Archive::new(tar);
    let mut control = None;
    for entry in archive.entries().map_err(ioe(deb, "reading control.tar"))? {
        let mut entry = entry.map_err(ioe(deb, "reading control.tar"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(ioe(deb, "reading control.tar"))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if path.contains('/') || path.is_empty() || path.starts_with('.') {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(ioe(deb, "reading control.tar"))?;
        if let Some(dir) = keep {
            fs::create_dir_all(dir).map_err(ioe(deb, "creating var/lib/dpkg/info"))?;
            let p = dir.join(format!(".new.{path}"));
            fs::write(&p, &bytes).map_err(ioe(deb, "writing control files"))?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                .map_err(ioe(deb, "writing control files"))?;
        }
        if path == "control" {
            let text = String::from_utf8_lossy(&bytes);
            let text = stanza::unix_line_ends(&text);
            let stanza =
                stanza::stanzas(&text)
                    .next()
                    .transpose()
                    .map_err(|e| DebError::Format {
                        deb: deb.to_path_buf(),
                        why: format!("its control file: {e}"),
                    })?;
            control = Some(stanza.map(|s| s.fields()).unwrap_or_default());
        }
    }
    control.ok_or_else(|| DebError::Format {
        deb: deb.to_path_buf(),
        why: "control.tar has no control file".to_string(),
    })
}

/// Rename the `.new.<file>` control files to `<package>.<file>` once the name is known.
fn rename_control_files(deb: &Path, dir: &Path, package: &str) -> Result<(), DebError> {
    for e in fs::read_dir(dir).map_err(ioe(deb, "listing var/lib/dpkg/info"))? {
        let e = e.map_err(ioe(deb, "listing var/lib/dpkg/info"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(file) = name.strip_prefix(".new.") {
            fs::rename(e.path(), dir.join(format!("{package}.{file}")))
                .map_err(ioe(deb, "naming control files"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// data

/// The relative, normal components of an archive path; `None` for the root (`./`).
fn entry_components(deb: &Path, raw: &str) -> Result<Option<Vec<String>>, DebError> {
    let escape = |why: &str| DebError::Escape {
        deb: deb.to_path_buf(),
        entry: raw.to_string(),
        why: why.to_string(),
    };
    let mut out = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => return Err(escape("'..' in the path")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(escape("absolute path"));
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Resolve `comps` (relative to `dest`) following the symlinks that exist in `dest` for
/// every component except, when `follow_last` is false, the last; absolute targets are
/// rooted at `dest`. Errors when the walk leaves `dest`.
fn resolve_in(
    dest: &Path,
    comps: &[String],
    follow_last: bool,
) -> Result<Vec<String>, &'static str> {
    let mut stack: Vec<String> = Vec::new();
    let mut todo: Vec<String> = comps.iter().rev().cloned().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_none() {
                return Err("a symlink leads above the destination");
            }
            continue;
        }
        stack.push(c);
        if todo.is_empty() && !follow_last {
            break;
        }
        let here: PathBuf = stack.iter().fold(dest.to_path_buf(), |p, s| p.join(s));
        if let Ok(target) = fs::read_link(&here) {
            hops += 1;
            if hops > 40 {
                return Err("too many levels of symlinks");
            }
            stack.pop();
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                stack.clear();
            }
            for part in t.split('/').rev() {
                todo.push(part.to_string());
            }
        }
    }
    Ok(stack)
}

/// Unpack the tar stream `tar` (read from archive file `deb`, for messages) into `dest`
/// under the entry rules above, dropping the first `strip` components of every path (entries
/// with no more components are skipped; the source unpacker drops a tarball's top directory).
pub(crate) fn unpack_data(
    deb: &Path,
    tar: Box<dyn Read + '_>,
    dest: &Path,
    strip: usize,
    info: &mut DebInfo,
) -> Result<(), DebError> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(ioe(deb, "reading data.tar"))? {
        let mut entry = entry.map_err(ioe(deb, "reading data.tar"))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(mut comps) = entry_components(deb, &raw)? else {
            continue;
        };
        if comps.len() <= strip {
            continue;
        }
        comps.drain(..strip);
        let escape = |why: &str| DebError::Escape {
            deb: deb.to_path_buf(),
            entry: raw.clone(),
            why: why.to_string(),
        };
        let kind = entry.header().entry_type();
        let resolved = resolve_in(dest, &comps, kind.is_dir()).map_err(escape)?;
        if resolved.is_empty() {
            continue; // the root itself (e.g. through a link to `/`)
        }
        let target: PathBuf = resolved.iter().fold(dest.to_path_buf(), |p, s| p.join(s));
        let entry_err = |why: String| DebError::Entry {
            deb: deb.to_path_buf(),
            entry: raw.clone(),
            why,
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = entry.header().mtime().unwrap_or(0);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| entry_err(format!("creating parents: {e}")))?;
        }
        match kind {
            tar::EntryType::Directory => {
                match fs::metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(entry_err("a file is in the way of this directory".into()))
                    }
                    Err(_) => fs::create_dir(&target)
                        .map_err(|e| entry_err(format!("creating the directory: {e}")))?,
                }
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(|e| entry_err(format!("setting the mode: {e}")))?;
                info.directories += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_non_dir(&target).map_err(entry_err)?;
                let mut f = File::create(&target)
                    .map_err(|e| entry_err(format!("creating the file: {e}")))?;
                let n = io::copy(&mut entry, &mut f)
                    .map_err(|e| entry_err(format!("writing the file: {e}")))?;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| entry_err(format!("setting the mode: {e}")))?;
                let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
                info.files += 1;
                info.bytes += n;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| entry_err(format!("reading the link target: {e}")))?
                    .ok_or_else(|| entry_err("symlink without a target".into()))?;
                remove_non_dir(&target).map_err(entry_err)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| entry_err(format!("creating the symlink: {e}")))?;
                info.symlinks += 1;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| entry_err(format!("reading the link target: {e}")))?
                    .ok_or_else(|| entry_err("hard link without a target".into()))?;
                let lraw = link.to_string_lossy().into_owned();
                let mut lcomps = entry_components(deb, &lraw)?
                    .filter(|c| c.len() > strip)
                    .ok_or_else(|| entry_err("hard link to the root".into()))?;
                lcomps.drain(..strip);
                let lres = resolve_in(dest, &lcomps, false).map_err(escape)?;
                let source: PathBuf = lres.iter().fold(dest.to_path_buf(), |p, s| p.join(s));
                remove_non_dir(&target).map_err(entry_err)?;
                fs::hard_link(&source, &target)
                    .map_err(|e| entry_err(format!("linking to {lraw}: {e}")))?;
                info.hardlinks += 1;
            }
            _ => info.skipped += 1,
        }
    }
    Ok(())
}

/// Remove what is at `p` unless it is a real directory (an error then).
fn remove_non_dir(p: &Path) -> Result<(), String> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err("a directory is in the way".to_string()),
        Ok(_) => fs::remove_file(p).map_err(|e| format!("replacing the old file: {e}")),
        Err(_) => Ok(()),
    }
}

/// The body of `builder = "builtin:unpack-deb"`: unpacks `debs` (space separated logical
/// store paths of `.deb` files, in order) into `out`; `mergedUsr = ""` (false) skips the
/// merged-/usr links, `keepControl = "1"` keeps control files. The builtin runs outside the
/// sandbox, so each `.deb` is opened only at the host path `input` gives for it: whoever
/// registers the builtin passes the check that the path is an exact store path of the
/// build's input closure (no `..`, no symlinks); its refusal is the error's reason.
pub fn builtin_unpack_deb(
    env: &BTreeMap<String, String>,
    out: &Path,
    input: &mut dyn FnMut(&str) -> Result<PathBuf, String>,
) -> Result<UnpackReport, DebError> {
    let mut debs: Vec<PathBuf> = Vec::new();
    for d in env
        .get("debs")
        .map(|s| s.split_whitespace())
        .into_iter()
        .flatten()
    {
        debs.push(input(d).map_err(|why| DebError::Input {
            path: d.to_string(),
            why,
        })?);
    }
    let opts = UnpackOptions {
        merged_usr: env.get("mergedUsr").map(String::as_str) != Some(""),
        keep_control: matches!(
            env.get("keepControl").map(String::as_str),
            Some("1") | Some("true")
        ),
    };
    unpack_debs(&debs, out, &opts)
}

#[cfg(test)]
mod tests;
