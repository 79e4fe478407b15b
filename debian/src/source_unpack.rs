//! Unpacking a Debian source package as `dpkg-source -x` does, in Rust: every file the `.dsc`
//! lists is checked against its size and sha256 before use (a mismatch is refused, naming the
//! file), then by format:
//!
//! - `3.0 (native)`: the one tarball, its top directory dropped;
//! - `3.0 (quilt)`: the `.orig.tar.*` (top directory dropped), each `.orig-COMPONENT.tar.*`
//!   into `COMPONENT/`, then the `.debian.tar.*` over it (an upstream `debian/` is removed
//!   first); the patches of `debian/patches/series` are returned in order, for `patch -pN`
//!   to apply in the build sandbox;
//! - `1.0`: the `.orig.tar.gz` (top directory dropped) and the `.diff.gz` returned as the one
//!   patch (`-p1`), or a native `.tar.gz` alone.
//!
//! Tarball entries follow the `.deb` unpacker's rules (no `..`, no absolute names, no links out
//! of the tree; [`crate::unpack`]) and a tarball's decompressed stream is bounded
//! ([`MAX_TARBALL_BYTES`]). Compressions: gzip, xz, bzip2, zstd, plain (lzma is refused).

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::sources::{parse_dsc, Dsc, SourceFile, MAX_DSC_BYTES};
use crate::unpack::{decompress, unpack_data, DebInfo};
use crate::DebianError;

/// The largest decompressed tarball accepted.
pub const MAX_TARBALL_BYTES: u64 = 8 << 30;

/// One patch to apply, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePatch {
    /// The patch file (under the unpacked tree for quilt, beside the `.dsc` for 1.0).
    pub path: PathBuf,
    /// `patch -pN`.
    pub strip: u32,
    /// The file is gzip-compressed (a 1.0 `.diff.gz`).
    pub gzipped: bool,
}

/// An unpacked source package.
#[derive(Clone, Debug)]
pub struct UnpackedSource {
    pub dsc: Dsc,
    /// The patches still to apply, in order.
    pub patches: Vec<SourcePatch>,
}

/// Check the file at `path` against `file`'s size and sha256.
pub fn verify_file(path: &Path, file: &SourceFile) -> Result<(), DebianError> {
    let io = |source| DebianError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let n = std::io::copy(&mut (&mut f).take(file.size + 1), &mut hasher).map_err(io)?;
    let got: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if n != file.size || got != file.sha256 {
        return Err(DebianError::SourceFileMismatch {
            file: file.name.clone(),
            want: format!("{} bytes, sha256 {}", file.size, file.sha256),
            got: if n > file.size {
                "a larger file".to_string()
            } else {
                format!("{n} bytes, sha256 {got}")
            },
        });
    }
    Ok(())
}

/// Unpack the source package of the `.dsc` at `dsc_path` (its files beside it) into `dest`
/// (created; must not exist). `dsc_sha256`, when given, is the `.dsc`'s own pinned hash.
pub fn unpack_source(
    dsc_path: &Path,
    dsc_sha256: Option<&str>,
    dest: &Path,
) -> Result<UnpackedSource, DebianError> {
    let dir = dsc_path.parent().unwrap_or(Path::new("."));
    let name = dsc_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    unpack_source_with(dsc_path, &name, dsc_sha256, &mut |f| Ok(dir.join(f)), dest)
}

/// [`unpack_source`] with the `.dsc` at `dsc_path` called `name` (for messages) and its files
/// found by `locate` (file name → path).
pub fn unpack_source_with(
    dsc_path: &Path,
    name: &str,
    dsc_sha256: Option<&str>,
    locate: &mut dyn FnMut(&str) -> Result<PathBuf, DebianError>,
    dest: &Path,
) -> Result<UnpackedSource, DebianError> {
    let name = name.to_string();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DebianError::Io { path, source }
    };
    let mut bytes = Vec::new();
    File::open(dsc_path)
        .map_err(io(dsc_path))?
        .take(MAX_DSC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io(dsc_path))?;
    if let Some(want) = dsc_sha256 {
        verify_file(
            dsc_path,
            &SourceFile {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: want.to_ascii_lowercase(),
            },
        )?;
    }
    let dsc = parse_dsc(&name, &bytes)?;
    let paths: Vec<(String, PathBuf)> = dsc
        .files
        .iter()
        .map(|f| {
            let p = locate(&f.name)?;
            verify_file(&p, f).map(|()| (f.name.clone(), p))
        })
        .collect::<Result<_, _>>()?;
    let bad = |why: String| DebianError::SourceFormat {
        dsc: name.clone(),
        why,
    };
    let tarballs = |pred: &dyn Fn(&str) -> bool| -> Vec<&(String, PathBuf)> {
        paths.iter().filter(|(n, _)| pred(n)).collect()
    };
    fs::create_dir(dest).map_err(io(dest))?;
    let mut patches = Vec::new();
    match dsc.format.as_str() {
        "3.0 (native)" => {
            let [(_, tar)] = tarballs(&|n| n.contains(".tar")).as_slice() else {
                return Err(bad("a native source has exactly one tarball".into()));
            };
            extract(tar, dest, 1)?;
        }
        "3.0 (quilt)" => {
            let orig = tarballs(&|n| n.contains(".orig.tar.") && !n.ends_with(".asc"));
            let [(_, orig)] = orig.as_slice() else {
                return Err(bad("a quilt source has exactly one .orig.tar".into()));
            };
            let debian = tarballs(&|n| n.contains(".debian.tar."));
            let [(_, debian)] = debian.as_slice() else {
                return Err(bad("a quilt source has exactly one .debian.tar".into()));
            };
            extract(orig, dest, 1)?;
            for (n, p) in tarballs(&|n| n.contains(".orig-") && !n.ends_with(".asc")) {
                let component = n
                    .split_once(".orig-")
                    .and_then(|(_, c)| c.split_once(".tar"))
                    .map(|(c, _)| c)
                    .filter(|c| !c.is_empty() && !c.contains('/') && *c != "debian")
                    .ok_or_else(|| bad(format!("bad component tarball name {n}")))?;
                let into = dest.join(component);
                fs::create_dir_all(&into).map_err(io(&into))?;
                extract(p, &into, 1)?;
            }
            let upstream_debian = dest.join("debian");
            if upstream_debian.exists() {
                fs::remove_dir_all(&upstream_debian).map_err(io(&upstream_debian))?;
            }
            extract(debian, dest, 0)?;
            patches = quilt_series(dest)?;
        }
        "1.0" => {
            let orig = tarballs(&|n| n.contains(".orig.tar.gz"));
            let diff = tarballs(&|n| n.ends_with(".diff.gz"));
            match (orig.as_slice(), diff.as_slice()) {
                ([(_, orig)], [(_, diff)]) => {
                    extract(orig, dest, 1)?;
                    patches.push(SourcePatch {
                        path: diff.clone(),
                        strip: 1,
                        gzipped: true,
                    });
                }
                ([], []) => {
                    let [(_, tar)] = tarballs(&|n| n.ends_with(".tar.gz")).as_slice() else {
                        return Err(bad("a native 1.0 source has exactly one .tar.gz".into()));
                    };
                    extract(tar, dest, 1)?;
                }
                _ => {
                    return Err(bad(
                        "a 1.0 source has an .orig.tar.gz and a .diff.gz, or one .tar.gz".into(),
                    ))
                }
            }
        }
        other => return Err(bad(format!("source format '{other}' is not supported"))),
    }
    Ok(UnpackedSource { dsc, patches })
}

/// Extract tarball `tar` into `dest`, dropping `strip` leading components.
fn extract(tar: &Path, dest: &Path, strip: usize) -> Result<(), DebianError> {
    let name = tar.to_string_lossy().into_owned();
    let f = File::open(tar).map_err(|source| DebianError::Io {
        path: tar.to_path_buf(),
        source,
    })?;
    let mut r = BufReader::new(f);
    let stream = decompress(tar, &name, &mut r)?;
    let mut info = DebInfo::default();
    unpack_data(
        tar,
        Box::new(stream.take(MAX_TARBALL_BYTES)),
        dest,
        strip,
        &mut info,
    )?;
    Ok(())
}

/// The patches of `debian/patches/series` under `tree`, in order (none without the file):
/// `#` comments and blank lines skipped, an optional `-pN` after the name, every name a
/// relative path inside `debian/patches` naming a regular file.
pub fn quilt_series(tree: &Path) -> Result<Vec<SourcePatch>, DebianError> {
    let dir = tree.join("debian/patches");
    let series = dir.join("series");
    let text = match fs::symlink_metadata(&series) {
        Ok(m) if m.is_file() => fs::read_to_string(&series).map_err(|source| DebianError::Io {
            path: series.clone(),
            source,
        })?,
        Ok(_) => return Err(series_error("debian/patches/series is not a regular file")),
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let line = match line
            .find(" #")
            .or_else(|| line.starts_with('#').then_some(0))
        {
            Some(i) => &line[..i],
            None => line,
        };
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else {
            continue;
        };
        let strip = match words.next() {
            None => 1,
            Some(p) => p
                .strip_prefix("-p")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| series_error(&format!("bad option '{p}' for patch {name}")))?,
        };
        if !Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(series_error(&format!(
                "patch name '{name}' leaves debian/patches"
            )));
        }
        let path = dir.join(name);
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(series_error(&format!(
                "patch {name} is not a regular file in debian/patches"
            )));
        }
        out.push(SourcePatch {
            path,
            strip,
            gzipped: false,
        });
    }
    Ok(out)
}

fn series_error(why: &str) -> DebianError {
    DebianError::SourceFormat {
        dsc: "debian/patches/series".to_string(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests;

/// The body of `builder = "builtin:unpack-debian-source"`: unpacks the source package of
/// `dsc` (the logical store path of its `.dsc`) into `out`, its
/// files given by `files` (space-separated `NAME=LOGICAL-PATH`), each checked against the
/// `.dsc`; `dscName` is the `.dsc`'s file name (for messages) and `dscSha256` its pinned hash.
/// The patches are not applied (that is a sandboxed step); they are returned in order. The
/// builtin runs outside the sandbox, so `input` maps each logical path to a host path only
/// when it is an exact store path of the build's input closure.
pub fn builtin_unpack_debian_source(
    env: &std::collections::BTreeMap<String, String>,
    out: &Path,
    input: &mut dyn FnMut(&str) -> Result<PathBuf, String>,
) -> Result<UnpackedSource, DebianError> {
    let bad = |why: String| DebianError::SourceFormat {
        dsc: env
            .get("dscName")
            .cloned()
            .unwrap_or_else(|| "the .dsc".into()),
        why,
    };
    let dsc_logical = env.get("dsc").ok_or_else(|| bad("no `dsc` input".into()))?;
    let dsc_host = input(dsc_logical).map_err(|why| bad(format!("{dsc_logical}: {why}")))?;
    let dsc_name = env
        .get("dscName")
        .cloned()
        .unwrap_or_else(|| "the .dsc".into());
    let mut files: Vec<(String, String)> = Vec::new();
    for pair in env
        .get("files")
        .map(|s| s.split_whitespace())
        .into_iter()
        .flatten()
    {
        let (n, l) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("`files` entry '{pair}' is not NAME=PATH")))?;
        files.push((n.to_string(), l.to_string()));
    }
    unpack_source_with(
        &dsc_host,
        &dsc_name,
        env.get("dscSha256").map(String::as_str),
        &mut |name| {
            let (_, logical) = files.iter().find(|(n, _)| n == name).ok_or_else(|| {
                bad(format!(
                    "the .dsc lists {name}, which `files` does not give"
                ))
            })?;
            input(logical).map_err(|why| bad(format!("{logical}: {why}")))
        },
        out,
    )
}
