//! `buildit diff IMAGE IMAGE`, and the per-image report of `buildit update`: what differs
//! between two images, by package and by file.
//!
//! Packages come from the image derivation's spec (`imageSpec`, the facts `image.bld` records
//! for the SBOM: every package of the runtime closure with its version, and every Debian
//! runtime package), so two image derivations compare without building either. Files come
//! from the built images' layers ([`buildit_images::image_contents_hashed`]: each path with
//! its kind, mode, link target and sha256), compared after the store hash in `/bld/store/
//! <hash>-<name>` is blanked out: a package rebuilt into a new store path shows as the files
//! whose contents changed, not as every file removed and added again.

use std::collections::{BTreeMap, BTreeSet};

use buildit_store::derivation::Derivation;
use buildit_store::{Store, StoreLayout, StorePath, STORE_DIR};
use serde::Serialize;
use serde_json::Value;

use crate::error::{DriverError, ImageOp, Result};

/// One package of an image, as its spec records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImagePackage {
    pub name: String,
    pub version: String,
    /// `debian` (a Debian runtime package) or `source` (built from source by a recipe).
    pub kind: &'static str,
    /// `category/name-version` for a package of the set ("" otherwise).
    pub atom: String,
    /// Its store path.
    pub path: String,
}

/// What one image derivation says of its image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageFacts {
    pub drv: StorePath,
    /// `name:tag`.
    pub reference: String,
    pub packages: Vec<ImagePackage>,
    /// The Debian runtime packages' names (also among `packages`).
    pub debian: Vec<String>,
}

/// The facts of the image derivation `drv` (read from the store, nothing built).
pub fn image_facts(layout: &StoreLayout, drv: &StorePath) -> Result<ImageFacts> {
    let d = read_drv(layout, drv)?;
    let spec: Value = d
        .env
        .get("imageSpec")
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| not_an_image(&drv.to_string(), "its derivation is not an image's"))?;
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let packages = spec["sbom"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ImagePackage {
            name: text(p, "name"),
            version: text(p, "version"),
            kind: if p["debian"].as_bool() == Some(true) {
                "debian"
            } else {
                "source"
            },
            atom: text(p, "atom"),
            path: text(p, "path"),
        })
        .collect();
    let debian = spec["debian"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| text(d, "name"))
        .collect();
    Ok(ImageFacts {
        drv: drv.clone(),
        reference: format!("{}:{}", text(&spec, "name"), text(&spec, "tag")),
        packages,
        debian,
    })
}

fn read_drv(layout: &StoreLayout, drv: &StorePath) -> Result<Derivation> {
    let bytes = std::fs::read(layout.physical(drv)).map_err(|e| {
        DriverError::request(
            "buildit::store::missing",
            format!("cannot read {drv}: {e}"),
            "the derivation is not in this store; check --store-root",
        )
    })?;
    Derivation::decode(&bytes).map_err(|e| {
        DriverError::request(
            "buildit::store::bad-derivation",
            format!("{drv}: {e}"),
            "`buildit store verify --check-contents` checks the store",
        )
    })
}

fn not_an_image(what: &str, why: &str) -> DriverError {
    DriverError::request(
        "buildit::diff::not-an-image",
        format!("{what} is not an image buildit built: {why}"),
        "give images built in this store: ./result of `buildit build DIR`, or their /bld/store paths",
    )
}

/// An image named on the command line: its store path and the derivation that built it.
pub fn built_image(store: &Store, arg: &str) -> Result<(StorePath, StorePath)> {
    let p = crate::store::resolve_valid(store, arg)?;
    let deriver = store
        .path_info(&p)?
        .and_then(|i| i.deriver)
        .ok_or_else(|| not_an_image(arg, "it was not built here (it has no deriver)"))?;
    Ok((p, deriver))
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageSide {
    /// `name:tag`.
    pub reference: String,
    pub drv: String,
    /// The image's store path (`None` when it is not built in this store).
    pub image: Option<String>,
    /// The OCI layout's manifest digest, when it is one.
    pub manifest_digest: Option<String>,
}

/// A package that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub kind: &'static str,
    /// `added`, `removed`, `version` (another version) or `rebuilt` (the same version in
    /// another store path: other options, patches, dependencies or Debian packages under it).
    pub change: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A file that differs (its path with store hashes blanked: `/bld/store/…-nginx-1.22.1/…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    /// `added`, `removed` or `changed` (contents, kind, mode or link target).
    pub change: &'static str,
    /// The package the file belongs to (the new image's, for a removed file the old one's).
    pub package: Option<String>,
}

/// Counts of the file comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// The difference between two images.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageDiff {
    pub old: ImageSide,
    pub new: ImageSide,
    /// The same image (the same derivation).
    pub identical: bool,
    pub packages: Vec<PackageChange>,
    /// `None` when one of the images is not built.
    pub files: Option<FileCounts>,
    /// Every differing file, when asked for (`--files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_changes: Option<Vec<FileChange>>,
}

/// `buildit diff OLD NEW`: both images built in `store` (out-links or store paths).
pub fn diff(store: &Store, old: &str, new: &str, list_files: bool) -> Result<ImageDiff> {
    let (a, a_drv) = built_image(store, old)?;
    let (b, b_drv) = built_image(store, new)?;
    diff_drvs(store, &a_drv, Some(&a), &b_drv, Some(&b), list_files)
}

/// The difference between the images of two image derivations; files are compared when
/// both images are given (built).
pub fn diff_drvs(
    store: &Store,
    old_drv: &StorePath,
    old: Option<&StorePath>,
    new_drv: &StorePath,
    new: Option<&StorePath>,
    list_files: bool,
) -> Result<ImageDiff> {
    let layout = store.layout();
    let (fa, fb) = (image_facts(layout, old_drv)?, image_facts(layout, new_drv)?);
    let side = |f: &ImageFacts, out: Option<&StorePath>| ImageSide {
        reference: f.reference.clone(),
        drv: f.drv.to_string(),
        image: out.map(ToString::to_string),
        manifest_digest: out
            .and_then(|o| crate::image::describe(layout, &f.drv, o).manifest_digest),
    };
    let mut d = ImageDiff {
        old: side(&fa, old),
        new: side(&fb, new),
        identical: old_drv == new_drv,
        packages: package_changes(&fa.packages, &fb.packages),
        files: None,
        file_changes: None,
    };
    if let (Some(a), Some(b)) = (old, new) {
        let (counts, changes) = file_changes(layout, a, &fa, b, &fb)?;
        d.files = Some(counts);
        d.file_changes = list_files.then_some(changes);
    }
    Ok(d)
}

/// The packages that differ, Debian packages first, then by name.
pub fn package_changes(old: &[ImagePackage], new: &[ImagePackage]) -> Vec<PackageChange> {
    let key = |p: &ImagePackage| (p.kind, p.name.clone());
    let a: BTreeMap<_, &ImagePackage> = old.iter().map(|p| (key(p), p)).collect();
    let b: BTreeMap<_, &ImagePackage> = new.iter().map(|p| (key(p), p)).collect();
    let keys: BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(&k), b.get(&k));
            let change = match (x, y) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(x), Some(y)) if x.version != y.version => "version",
                (Some(x), Some(y)) if x.path != y.path => "rebuilt",
                _ => return None,
            };
            Some(PackageChange {
                name: k.1,
                kind: k.0,
                change,
                old: x.map(|p| p.version.clone()),
                new: y.map(|p| p.version.clone()),
            })
        })
        .collect()
}

/// `/bld/store/<hash>-name/...` → `/bld/store/…-name/...`, anywhere in `s`.
pub fn blank_store_hashes(s: &str) -> String {
    let prefix = format!("{STORE_DIR}/");
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(&prefix) {
        let after = &rest[i + prefix.len()..];
        out.push_str(&rest[..i + prefix.len()]);
        let hash_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if hash_len == 32 && after.as_bytes().get(32) == Some(&b'-') {
            out.push('…');
            rest = &after[32..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What a path of an image is, for comparing: kind, mode, and contents (hash or link target).
type FileState = (&'static str, u32, String, Option<String>);

/// Each path of an image (hashes blanked) → its state and package name; a later layer's entry
/// replaces an earlier one's, as a runtime applies them.
fn files_of(
    layout: &StoreLayout,
    image: &StorePath,
    facts: &ImageFacts,
) -> Result<BTreeMap<String, FileState>> {
    let entries =
        buildit_images::image_contents_hashed(&layout.physical(image)).map_err(|error| {
            DriverError::Image {
                op: ImageOp::Read,
                error,
            }
        })?;
    let names: BTreeMap<&str, &str> = facts
        .packages
        .iter()
        .map(|p| (p.path.as_str(), p.name.as_str()))
        .collect();
    let mut out = BTreeMap::new();
    for e in entries {
        if e.kind == "dir" {
            continue;
        }
        let what = match (&e.sha256, &e.target) {
            (Some(h), _) => h.clone(),
            (None, Some(t)) => blank_store_hashes(t),
            (None, None) => String::new(),
        };
        let package = e.package.as_deref().map(|p| {
            names
                .get(p)
                .map_or_else(|| blank_store_hashes(p), |n| n.to_string())
        });
        out.insert(
            blank_store_hashes(&e.path),
            (e.kind, e.mode & 0o7777, what, package),
        );
    }
    Ok(out)
}

fn file_changes(
    layout: &StoreLayout,
    a: &StorePath,
    fa: &ImageFacts,
    b: &StorePath,
    fb: &ImageFacts,
) -> Result<(FileCounts, Vec<FileChange>)> {
    let (x, y) = (files_of(layout, a, fa)?, files_of(layout, b, fb)?);
    let mut counts = FileCounts::default();
    let mut changes = Vec::new();
    let paths: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    for p in paths {
        let (change, package) = match (x.get(p), y.get(p)) {
            (None, Some(n)) => {
                counts.added += 1;
                ("added", n.3.clone())
            }
            (Some(o), None) => {
                counts.removed += 1;
                ("removed", o.3.clone())
            }
            (Some(o), Some(n)) if (o.0, o.1, &o.2) != (n.0, n.1, &n.2) => {
                counts.changed += 1;
                ("changed", n.3.clone())
            }
            _ => {
                counts.unchanged += 1;
                continue;
            }
        };
        changes.push(FileChange {
            path: p.clone(),
            change,
            package,
        });
    }
    Ok((counts, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, kind: &'static str, path: &str) -> ImagePackage {
        ImagePackage {
            name: name.into(),
            version: version.into(),
            kind,
            atom: String::new(),
            path: path.into(),
        }
    }

    #[test]
    fn package_changes_name_added_removed_version_and_rebuilt() {
        let old = [
            pkg("nginx", "1.22.1", "source", "/a"),
            pkg("zlib", "1.2.13", "source", "/z"),
            pkg("libc6", "2.36-9", "debian", "/c"),
            pkg("gone", "1", "debian", "/g"),
        ];
        let new = [
            pkg("nginx", "1.22.1", "source", "/b"),
            pkg("zlib", "1.2.13", "source", "/z"),
            pkg("libc6", "2.36-9+deb12u1", "debian", "/c2"),
            pkg("busybox-static", "1:1.35.0-4+b3", "debian", "/bb"),
        ];
        let got: Vec<String> = package_changes(&old, &new)
            .iter()
            .map(|c| format!("{} {} {}", c.name, c.kind, c.change))
            .collect();
        assert_eq!(
            got,
            [
                "busybox-static debian added",
                "gone debian removed",
                "libc6 debian version",
                "nginx source rebuilt",
            ]
        );
    }

    #[test]
    fn store_hashes_are_blanked() {
        let h = "0123456789abcdfghijklmnpqrsvwxyz";
        assert_eq!(
            blank_store_hashes(&format!("/bld/store/{h}-nginx-1.22.1/sbin/nginx")),
            "/bld/store/…-nginx-1.22.1/sbin/nginx"
        );
        assert_eq!(blank_store_hashes("/usr/bin/sh"), "/usr/bin/sh");
        assert_eq!(
            blank_store_hashes("/bld/store/short-x"),
            "/bld/store/short-x"
        );
    }
}
