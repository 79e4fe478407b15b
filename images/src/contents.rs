//! `buildit contents`: every file of a written image with the package it came from. Reads an
//! OCI layout directory, an OCI archive, a docker-archive or an ACI (or a directory holding
//! one of buildit's archive files). A file under `/bld/store/<hash>-<name>/` belongs to that
//! store path; a profile link (`/usr/bin/x` → `/bld/store/...`) to its target's store path;
//! a file of a layer's at-root member (a Debian runtime package laid out at `/`) to that member,
//! found by its position in the layer as the config's history records it; everything else
//! (synced files, `/etc/passwd`) to none. An ACI has no history: its at-root files show no
//! package.
//!
//! [`image_contents_hashed`] also gives each regular file's sha256, read from the layer as it
//! is listed (what `buildit diff` compares files by); `buildit contents` does not read file
//! bodies.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use buildit_store::STORE_DIR;
use serde_json::Value;

use crate::ImageError;

/// One entry of an image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContentEntry {
    /// Absolute path in the image.
    pub path: String,
    /// `dir`, `file`, `symlink`, `hardlink` or `other`.
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
    /// A link's target.
    pub target: Option<String>,
    /// The store path (`/bld/store/<hash>-<name>`) the entry belongs to.
    pub package: Option<String>,
    /// The layer's position (0 = bottom); 0 for an ACI.
    pub layer: usize,
    /// A regular file's sha256 (hex), from [`image_contents_hashed`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn not_image(p: &Path, why: &str) -> ImageError {
    ImageError::NotAnImage(format!("{}: {why}", p.display()))
}

/// List every entry of the image at `image`.
pub fn image_contents(image: &Path) -> Result<Vec<ContentEntry>, ImageError> {
    contents(image, false)
}

/// [`image_contents`] with each regular file's sha256.
pub fn image_contents_hashed(image: &Path) -> Result<Vec<ContentEntry>, ImageError> {
    contents(image, true)
}

fn contents(image: &Path, hash: bool) -> Result<Vec<ContentEntry>, ImageError> {
    if image.is_dir() {
        // inside the directory nothing is read through a symlink
        let present = |f: &str| {
            std::fs::symlink_metadata(image.join(f)).is_ok_and(|m| m.file_type().is_file())
        };
        if image.join("index.json").exists() {
            return oci_layout(image, hash);
        }
        for f in ["image.oci.tar", "image.docker.tar", "image.aci"] {
            if present(f) {
                return archive(&image.join(f), hash);
            }
        }
        return Err(not_image(
            image,
            "no index.json, image.oci.tar, image.docker.tar or image.aci",
        ));
    }
    archive(image, hash)
}

fn package_of(path: &str, target: Option<&str>) -> Option<String> {
    let from = |p: &str| -> Option<String> {
        let rest = p.strip_prefix(STORE_DIR)?.strip_prefix('/')?;
        let base = rest.split('/').next()?;
        (!base.is_empty()).then(|| format!("{STORE_DIR}/{base}"))
    };
    from(path).or_else(|| target.and_then(from))
}

/// (store path, first entry, entry count) of each at-root member of a layer.
type AtRootRanges = Vec<(String, u64, u64)>;

/// Each layer's at-root ranges, from the image config's history (one entry per layer, all
/// of buildit's history entries describe a layer).
fn at_root_of(config: Option<&Value>, layers: usize) -> Vec<AtRootRanges> {
    let mut out = vec![Vec::new(); layers];
    let Some(h) = config
        .and_then(|c| c.get("history"))
        .and_then(Value::as_array)
    else {
        return out;
    };
    let described: Vec<&Value> = h
        .iter()
        .filter(|e| e.get("empty_layer").and_then(Value::as_bool) != Some(true))
        .collect();
    for (i, e) in described.into_iter().enumerate().take(layers) {
        if let Some(c) = e.get("comment").and_then(Value::as_str) {
            out[i] = crate::oci::parse_at_root_comment(c);
        }
    }
    out
}

/// Where a layer's entries go, and whether file bodies are hashed.
struct Listing<'a> {
    out: &'a mut Vec<ContentEntry>,
    hash: bool,
}

fn list_layer(
    r: impl Read,
    layer: usize,
    prefix: &str,
    at_root: &[(String, u64, u64)],
    to: &mut Listing<'_>,
) -> io::Result<()> {
    let mut ar = tar::Archive::new(r);
    for (index, e) in ar.entries()?.enumerate() {
        let mut e = e?;
        let index = index as u64;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(rel) = raw.strip_prefix(prefix) else {
            continue;
        };
        let rel = rel.trim_start_matches("./").trim_end_matches('/');
        if rel.is_empty() {
            continue;
        }
        let path = format!("/{rel}");
        let h = e.header().clone();
        let et = h.entry_type();
        let kind = if et.is_dir() {
            "dir"
        } else if et.is_symlink() {
            "symlink"
        } else if et.is_hard_link() {
            "hardlink"
        } else if et.is_file() {
            "file"
        } else {
            "other"
        };
        let target = e
            .link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        let package = at_root
            .iter()
            .find(|(_, start, n)| (*start..start + n).contains(&index))
            .map(|(p, _, _)| p.clone())
            .or_else(|| package_of(&path, target.as_deref()));
        let sha256 = if to.hash && kind == "file" {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            io::copy(&mut e, &mut hasher)?;
            Some(hex::encode(hasher.finalize()))
        } else {
            None
        };
        to.out.push(ContentEntry {
            path,
            kind,
            size: h.size().unwrap_or(0),
            mode: h.mode().unwrap_or(0),
            target,
            package,
            layer,
            sha256,
        });
    }
    Ok(())
}

fn read_json(p: &Path) -> Result<Value, ImageError> {
    let b = std::fs::read(p).map_err(ImageError::io(format!("reading {}", p.display())))?;
    serde_json::from_slice(&b).map_err(|e| not_image(p, &format!("bad JSON: {e}")))
}

/// The manifest's layers (digest, media type) given the index.
fn manifest_layers(manifest: &Value, at: &Path) -> Result<Vec<(String, String)>, ImageError> {
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| not_image(at, "the manifest has no layers"))?;
    layers
        .iter()
        .map(|l| {
            let d = l.get("digest").and_then(Value::as_str);
            let m = l.get("mediaType").and_then(Value::as_str);
            match (d, m) {
                (Some(d), Some(m)) => Ok((d.to_string(), m.to_string())),
                _ => Err(not_image(at, "a layer without digest or mediaType")),
            }
        })
        .collect()
}

fn single_manifest_digest(index: &Value, at: &Path) -> Result<String, ImageError> {
    let ms = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| not_image(at, "index.json has no manifests"))?;
    if ms.len() != 1 {
        return Err(not_image(
            at,
            &format!("index.json lists {} manifests, expected one", ms.len()),
        ));
    }
    ms[0]
        .get("digest")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| not_image(at, "the manifest has no digest"))
}

fn config_digest(manifest: &Value) -> Option<String> {
    manifest
        .get("config")
        .and_then(|c| c.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `algorithm/hex` of a digest `algorithm:hex`; anything else (a `/`, `..`) is no digest, and
/// gives a name that matches no blob.
fn blob_name(digest: &str) -> String {
    match digest.split_once(':') {
        Some((a, h))
            if !a.is_empty()
                && !h.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            format!("{a}/{h}")
        }
        _ => "invalid-digest".to_string(),
    }
}

/// The file `rel` of the layout `dir`, reached without symlinks (an image in the store is read
/// as it is: a blob that is a symlink to a host file is not read).
fn layout_file(dir: &Path, rel: &str) -> Result<std::path::PathBuf, ImageError> {
    crate::tarw::regular_below(dir, rel).map_err(|e| not_image(dir, &e.to_string()))
}

fn oci_layout(dir: &Path, hash: bool) -> Result<Vec<ContentEntry>, ImageError> {
    let blob = |d: &str| layout_file(dir, &format!("blobs/{}", blob_name(d)));
    let index = read_json(&layout_file(dir, "index.json")?)?;
    let md = single_manifest_digest(&index, dir)?;
    let manifest = read_json(&blob(&md)?)?;
    let config = config_digest(&manifest).and_then(|d| read_json(&blob(&d).ok()?).ok());
    let layers = manifest_layers(&manifest, dir)?;
    let ranges = at_root_of(config.as_ref(), layers.len());
    let mut out = Vec::new();
    for (i, (d, mt)) in layers.into_iter().enumerate() {
        let p = blob(&d)?;
        let r = crate::oci::decompress(&p, &mt)
            .map_err(ImageError::io(format!("reading {}", p.display())))?;
        let mut to = Listing {
            out: &mut out,
            hash,
        };
        list_layer(r, i, "", &ranges[i], &mut to)
            .map_err(ImageError::io(format!("reading layer {d}")))?;
    }
    Ok(out)
}

type EntryFn<'a> = dyn FnMut(&str, &mut dyn Read, u64) -> Result<(), ImageError> + 'a;

/// Pass over a tar file, calling `f` with each entry's name and reader.
fn each_entry(file: &Path, f: &mut EntryFn<'_>) -> Result<(), ImageError> {
    let ctx = format!("reading {}", file.display());
    let fh = File::open(file).map_err(ImageError::io(ctx.clone()))?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, fh));
    for e in ar.entries().map_err(ImageError::io(ctx.clone()))? {
        let mut e = e.map_err(ImageError::io(ctx.clone()))?;
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let size = e.header().size().unwrap_or(0);
        f(&name, &mut e, size)?;
    }
    Ok(())
}

fn archive(file: &Path, hash: bool) -> Result<Vec<ContentEntry>, ImageError> {
    // pass 1: small files (JSON), and whether this is an ACI
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut is_aci = false;
    each_entry(file, &mut |name, r, size| {
        if name == "manifest" || name.starts_with("rootfs/") {
            is_aci = true;
        }
        if size <= 4 << 20 && !name.ends_with('/') {
            let mut b = Vec::new();
            r.read_to_end(&mut b)
                .map_err(ImageError::io(format!("reading {name}")))?;
            small.insert(name.to_string(), b);
        }
        Ok(())
    })?;
    let parse = |name: &str| -> Result<Value, ImageError> {
        let b = small
            .get(name)
            .ok_or_else(|| not_image(file, &format!("no {name}")))?;
        serde_json::from_slice(b).map_err(|e| not_image(file, &format!("{name}: {e}")))
    };
    let mut out = Vec::new();
    if small.contains_key("index.json") && small.contains_key("oci-layout") {
        let md = single_manifest_digest(&parse("index.json")?, file)?;
        let manifest = parse(&format!("blobs/{}", blob_name(&md)))?;
        let layers = manifest_layers(&manifest, file)?;
        let config =
            config_digest(&manifest).and_then(|d| parse(&format!("blobs/{}", blob_name(&d))).ok());
        let ranges = at_root_of(config.as_ref(), layers.len());
        let wanted: HashMap<String, (usize, String)> = layers
            .iter()
            .enumerate()
            .map(|(i, (d, m))| (format!("blobs/{}", blob_name(d)), (i, m.clone())))
            .collect();
        let mut per: Vec<Vec<ContentEntry>> = vec![Vec::new(); layers.len()];
        each_entry(file, &mut |name, r, _| {
            if let Some((i, mt)) = wanted.get(name) {
                let dec: Box<dyn Read> = decompress_reader(r, mt)?;
                let mut to = Listing {
                    out: &mut per[*i],
                    hash,
                };
                list_layer(dec, *i, "", &ranges[*i], &mut to)
                    .map_err(ImageError::io(format!("reading {name}")))?;
            }
            Ok(())
        })?;
        out.extend(per.into_iter().flatten());
    } else if small.contains_key("manifest.json") {
        let m = parse("manifest.json")?;
        let layers: Vec<String> = m
            .get(0)
            .and_then(|m| m.get("Layers"))
            .and_then(Value::as_array)
            .ok_or_else(|| not_image(file, "manifest.json has no Layers"))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let config = m
            .get(0)
            .and_then(|m| m.get("Config"))
            .and_then(Value::as_str)
            .and_then(|c| parse(c).ok());
        let ranges = at_root_of(config.as_ref(), layers.len());
        let mut per: Vec<Vec<ContentEntry>> = vec![Vec::new(); layers.len()];
        each_entry(file, &mut |name, r, _| {
            for (i, l) in layers.iter().enumerate() {
                if l == name {
                    let mut to = Listing {
                        out: &mut per[i],
                        hash,
                    };
                    list_layer(&mut *r, i, "", &ranges[i], &mut to)
                        .map_err(ImageError::io(format!("reading {name}")))?;
                    break;
                }
            }
            Ok(())
        })?;
        out.extend(per.into_iter().flatten());
    } else if is_aci {
        let fh = File::open(file).map_err(ImageError::io(format!("reading {}", file.display())))?;
        let mut to = Listing {
            out: &mut out,
            hash,
        };
        list_layer(io::BufReader::new(fh), 0, "rootfs/", &[], &mut to)
            .map_err(ImageError::io(format!("reading {}", file.display())))?;
    } else {
        return Err(not_image(
            file,
            "not an OCI archive, docker-archive or ACI (no index.json, manifest.json or manifest)",
        ));
    }
    Ok(out)
}

fn decompress_reader<'a>(
    r: &'a mut dyn Read,
    media_type: &str,
) -> Result<Box<dyn Read + 'a>, ImageError> {
    if media_type.ends_with("+gzip") {
        Ok(Box::new(flate2::read::GzDecoder::new(r)))
    } else if media_type.ends_with("+zstd") {
        Ok(Box::new(
            zstd::stream::read::Decoder::new(r).map_err(ImageError::io("starting zstd"))?,
        ))
    } else {
        Ok(Box::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_from_paths_and_profile_links() {
        let base = "/bld/store/0123456789abcdfghijklmnpqrsvwxyz-busybox";
        assert_eq!(
            package_of(&format!("{base}/bin/sh"), None).as_deref(),
            Some(base)
        );
        assert_eq!(
            package_of("/usr/bin/sh", Some(&format!("{base}/bin/sh"))).as_deref(),
            Some(base)
        );
        assert_eq!(package_of("/etc/passwd", None), None);
        assert_eq!(package_of("/bld/store", None), None);
    }

    #[test]
    fn layouts_are_read_without_symlinks_or_traversal() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("img");
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        let index = |digest: &str| {
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"digest":"{digest}","mediaType":"application/vnd.oci.image.manifest.v1+json","size":1}}]}}"#
            )
        };
        // a digest that climbs out of the layout names no blob
        std::fs::write(
            dir.join("index.json"),
            index("sha256:../../../../etc/passwd"),
        )
        .expect("write");
        assert!(matches!(
            image_contents(&dir),
            Err(ImageError::NotAnImage(_))
        ));
        // a blob that is a symlink to a host file is not read
        let d = "a".repeat(64);
        std::os::unix::fs::symlink("/etc/passwd", dir.join("blobs/sha256").join(&d)).expect("link");
        std::fs::write(dir.join("index.json"), index(&format!("sha256:{d}"))).expect("write");
        let e = image_contents(&dir).expect_err("refused");
        assert!(e.to_string().contains("symlink"), "{e}");
        // nor an index.json that is one
        std::fs::remove_file(dir.join("index.json")).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("index.json")).expect("link");
        assert!(image_contents(&dir).is_err());
        assert_eq!(blob_name("sha256:00ff"), "sha256/00ff");
        assert_eq!(blob_name("sha256:../x"), "invalid-digest");
    }
}
