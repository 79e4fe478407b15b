//! `buildit audit`: the packages of an image's closure, found by evaluation alone, matched
//! against OSV advisories ([`buildit_audit`]).
//!
//! The closure comes from the image derivation's SBOM facts (`imageSpec.sbom`, written by
//! `stdlib/bld/image.bld`): every source-built package reachable through `runtimeDeps` with
//! its version, purl, CPE and the advisories its patches fix (`meta.fixes`, from pkg.yaml's
//! `fixes:`), and every Debian package with its version and source package. A spec directory
//! or atom is compiled and evaluated (derivations are written, nothing is built); an image
//! path is read through the derivation that built it. When the image is in the store, its
//! OCI config's history says which layer carries each store path; otherwise a package's layer
//! is its store path's own (one layer per store path within the budget).
//!
//! Debian's advisories are written against source packages and source versions. The source
//! version is the one the lock records for the package (`source_version`, from the `Source:
//! NAME (VERSION)` field of its `Packages` stanza), else the binary version without a binNMU
//! suffix (`+bN`, Debian's rule for rebuilt binaries; locks written before the field omit it).
//!
//! Advisories come from `--advisories FILE|DIR` or from the cache `--update` downloads into
//! (`<state>/audit/advisories`); their index is kept in `<state>/audit/` ([`buildit_audit::index`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use buildit_audit::{AuditError, Limits, Origin, Package, Report};
use buildit_store::derivation::Derivation;
use buildit_store::{Store, StoreLayout, StorePath};
use serde_json::Value;

use crate::error::{DriverError, Result};
use crate::session::Session;

/// What `buildit audit` is asked.
#[derive(Clone, Debug, Default)]
pub struct AuditRequest<'a> {
    /// An image (store path or link), a container spec directory, a package directory or an
    /// atom.
    pub target: &'a str,
    /// OSV advisories: a file or directory (else the downloaded cache).
    pub advisories: Option<&'a Path>,
    /// An OpenVEX document whose statements suppress findings.
    pub vex: Option<&'a Path>,
    pub typecheck: bool,
}

/// An audit's report and how it was made.
#[derive(Debug)]
pub struct Audited {
    pub report: Report,
    /// The file that pins the packages (for SARIF locations): the spec's `container.yaml`, or
    /// the target as given.
    pub artifact: String,
    /// Whether the advisory index was built by this run, and how long that took.
    pub index_built: bool,
    pub index_seconds: f64,
    /// Whether the image is in the store (its layers are then the real ones).
    pub image_built: bool,
}

/// Where the advisory index and downloaded advisories are kept.
pub fn cache_dir(layout: &StoreLayout) -> PathBuf {
    layout.state_dir().join("audit")
}

/// Where `buildit audit --update` puts the advisories it downloads.
pub fn downloaded_dir(layout: &StoreLayout) -> PathBuf {
    cache_dir(layout).join("advisories")
}

/// An audit library error as a driver error, with its code and help.
pub fn audit_error(e: AuditError) -> DriverError {
    let (code, help) = match &e {
        AuditError::Io { .. } => (
            "buildit::audit::unreadable",
            "check the path given to --advisories (a file or directory of OSV advisories)",
        ),
        AuditError::BadAdvisory { .. } => (
            "buildit::audit::bad-advisory",
            "advisories are OSV JSON records (https://ossf.github.io/osv-schema/): .json, .jsonl or a .zip of .json files",
        ),
        AuditError::TooLarge { .. } => (
            "buildit::audit::advisories-too-large",
            "an advisory is at most 8 MiB, nested at most 128 deep; split or check the input (docs/supply-chain.md)",
        ),
        AuditError::NotAdvisories { .. } => (
            "buildit::audit::no-advisories",
            "give --advisories a .json, .jsonl, .ndjson or .zip file, or a directory of them",
        ),
        AuditError::Index { .. } => (
            "buildit::audit::index",
            "the index is a cache: remove it from the store's state directory (var/buildit/audit) and run again",
        ),
        AuditError::BadVex { .. } => (
            "buildit::audit::bad-vex",
            "--vex takes an OpenVEX document (https://openvex.dev, v0.2.0)",
        ),
    };
    DriverError::request(code, e.to_string(), help)
}

fn not_an_image(what: &str, why: &str) -> DriverError {
    DriverError::request(
        "buildit::audit::not-an-image",
        format!("{what} is not an image buildit can audit: {why}"),
        "give a container spec directory, a package atom or directory, or an image built in this store (./result)",
    )
}

/// Read a derivation from the store.
fn read_drv(layout: &StoreLayout, drv: &StorePath) -> Result<Derivation> {
    let bytes = std::fs::read(layout.physical(drv)).map_err(|e| {
        DriverError::request(
            "buildit::audit::no-derivation",
            format!("cannot read {drv}: {e}"),
            "the image's derivation is not in this store; audit its spec directory instead",
        )
    })?;
    Derivation::decode(&bytes).map_err(|e| not_an_image(&drv.to_string(), &e.to_string()))
}

/// The image derivation `target` denotes, and the file that pins its packages.
fn image_drv(
    session: &Session,
    store: &Store,
    req: &AuditRequest<'_>,
) -> Result<(StorePath, String)> {
    let target = req.target;
    let mut quiet = |_: &str| {};
    if crate::build::is_spec_dir(target) {
        let s =
            crate::build::spec_build(session, store, Path::new(target), req.typecheck, &mut quiet)?;
        for t in &s.targets {
            if read_drv(store.layout(), &t.drv)?.builder == "builtin:image" {
                let artifact = Path::new(target).join("container.yaml");
                return Ok((t.drv.clone(), artifact.display().to_string()));
            }
        }
        return Err(not_an_image(target, "the spec makes no image"));
    }
    let p = Path::new(target);
    if target.starts_with(buildit_store::STORE_DIR) || p.is_symlink() {
        let (path, _) = store.resolve(target)?;
        let drv = if path.is_derivation() {
            path
        } else {
            store
                .path_info(&path)?
                .and_then(|i| i.deriver)
                .ok_or_else(|| not_an_image(target, "it has no deriver in this store"))?
        };
        return Ok((drv, target.to_string()));
    }
    let drv = crate::image::image_derivation(session, store, target, "oci", &mut quiet)?;
    let artifact = if p.join("pkg.yaml").is_file() {
        p.join("pkg.yaml").display().to_string()
    } else {
        target.to_string()
    };
    Ok((drv, artifact))
}

/// The Debian release number of a suite (`bookworm` → `12`), as OSV's `Debian:N` names it.
pub fn debian_release(suite: &str) -> String {
    match suite {
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        other => other,
    }
    .to_string()
}

/// The source version of a binary package version: without a binNMU suffix `+bN`.
pub fn source_version(binary: &str) -> String {
    buildit_debian::lock::binnmu_source_version(binary).to_string()
}

/// The lock's facts by package name: (source package, binary version, recorded source
/// version).
type LockSources = HashMap<String, (String, String, Option<String>)>;

/// The lock's facts by package name (see [`LockSources`]) and its suite.
fn lock_sources(session: &Session) -> (LockSources, String) {
    let text = match session.debian_lock() {
        Some(l) => l.text.clone(),
        None => buildit_stdlib::embedded::FILES
            .iter()
            .find(|(n, _)| *n == buildit_stdlib::embedded::DEBIAN_LOCK)
            .map(|(_, t)| t.to_string())
            .unwrap_or_default(),
    };
    match buildit_debian::lock::parse_lock(&text) {
        Ok(lock) => (
            lock.packages
                .into_iter()
                .map(|p| (p.name, (p.source, p.version, p.source_version)))
                .collect(),
            lock.suite,
        ),
        Err(_) => (HashMap::new(), String::new()),
    }
}

/// Read at most `limit` bytes of a file of a built image.
fn read_small(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut b = Vec::new();
    f.take(limit + 1).read_to_end(&mut b).ok()?;
    (b.len() as u64 <= limit).then_some(b)
}

/// Which layer of the built OCI image at `dir` carries each store path: `#N sha256:…`
/// (N counted from the bottom), from the config's history (buildit writes each layer's members
/// there).
fn layers_of(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let json =
        |p: PathBuf| -> Option<Value> { serde_json::from_slice(&read_small(&p, 16 << 20)?).ok() };
    let blob = |d: &str| -> Option<PathBuf> {
        let hex = d.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| dir.join("blobs/sha256").join(hex))
    };
    let Some(index) = json(dir.join("index.json")) else {
        return out;
    };
    let Some(manifest) = index["manifests"][0]["digest"]
        .as_str()
        .and_then(blob)
        .and_then(json)
    else {
        return out;
    };
    let Some(config) = manifest["config"]["digest"]
        .as_str()
        .and_then(blob)
        .and_then(json)
    else {
        return out;
    };
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let history = config["history"].as_array().cloned().unwrap_or_default();
    for (i, h) in history.iter().enumerate() {
        let Some(members) = h["created_by"]
            .as_str()
            .and_then(|s| s.strip_prefix("buildit: "))
        else {
            continue;
        };
        let digest = layers
            .get(i)
            .and_then(|l| l["digest"].as_str())
            .unwrap_or("");
        let short = digest.get(..19).unwrap_or(digest);
        for m in members
            .split(' ')
            .filter(|m| m.starts_with(buildit_store::STORE_DIR))
        {
            out.insert(m.to_string(), format!("#{i} {short}"));
        }
    }
    out
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_string()
}

/// The packages of the image derivation `drv` (from its SBOM facts), with their layers.
pub fn closure(session: &Session, store: &Store, drv: &StorePath) -> Result<(Vec<Package>, bool)> {
    let d = read_drv(store.layout(), drv)?;
    if d.builder != "builtin:image" {
        return Err(not_an_image(
            &drv.to_string(),
            "its derivation does not build an image",
        ));
    }
    let spec: Value = d
        .env
        .get("imageSpec")
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| not_an_image(&drv.to_string(), "its derivation has no image spec"))?;
    let out = d.outputs.get("out").and_then(|o| o.path.clone());
    let built = match &out {
        Some(o) => store.is_valid(o)?,
        None => false,
    };
    let layers = match (&out, built) {
        (Some(o), true) => layers_of(&store.layout().physical(o)),
        _ => BTreeMap::new(),
    };
    let layer = |path: &str| -> Vec<String> {
        match layers.get(path) {
            Some(l) => vec![l.clone()],
            None if built => Vec::new(),
            None => vec![format!("{path} (its own layer; image not built)")],
        }
    };
    let (sources, lock_suite) = lock_sources(session);
    let mut packages = Vec::new();
    for f in spec["sbom"].as_array().into_iter().flatten() {
        let name = text(f, "name");
        let version = text(f, "version");
        let path = text(f, "path");
        let origin = if f["debian"].as_bool() == Some(true) {
            let locked = sources.get(&name);
            let source = Some(text(f, "source"))
                .filter(|s| !s.is_empty())
                .or_else(|| locked.map(|l| l.0.clone()))
                .unwrap_or_else(|| name.clone());
            // the fact's (the lock the image was evaluated with), else the lock's entry when
            // it pins this very version, else the binNMU rule
            let source_version = Some(text(f, "source_version"))
                .filter(|s| !s.is_empty())
                .or_else(|| locked.filter(|l| l.1 == version).and_then(|l| l.2.clone()))
                .unwrap_or_else(|| source_version(&version));
            let suite = Some(text(f, "suite"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| lock_suite.clone());
            Origin::Debian {
                release: debian_release(&suite),
                source,
                source_version,
                arch: text(f, "arch"),
            }
        } else {
            Origin::Built {
                atom: text(f, "atom"),
                purl: text(f, "purl"),
                cpe: text(f, "cpe"),
            }
        };
        let fixes = f["fixes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        packages.push(Package {
            layers: layer(&path),
            name,
            version,
            origin,
            fixes,
            store_path: path,
        });
    }
    Ok((packages, built))
}

/// Audit `req.target` (see the module doc).
pub fn audit(session: &Session, req: &AuditRequest<'_>) -> Result<Audited> {
    let store = session.open_store()?;
    let source = match req.advisories {
        Some(p) => p.to_path_buf(),
        None => {
            let d = downloaded_dir(session.layout());
            if !d.is_dir() {
                return Err(DriverError::request(
                    "buildit::audit::no-advisories",
                    "no advisories: none given and none downloaded",
                    "give --advisories FILE|DIR (OSV JSON), or download them first with `buildit audit --update`",
                ));
            }
            d
        }
    };
    let vex = req
        .vex
        .map(buildit_audit::vex::Vex::read)
        .transpose()
        .map_err(audit_error)?;
    let (drv, artifact) = image_drv(session, &store, req)?;
    let (packages, image_built) = closure(session, &store, &drv)?;
    let started = Instant::now();
    let index =
        buildit_audit::Index::open(&source, &cache_dir(session.layout()), &Limits::default())
            .map_err(audit_error)?;
    let index_seconds = started.elapsed().as_secs_f64();
    let report =
        buildit_audit::audit(req.target, packages, &index, vex.as_ref()).map_err(audit_error)?;
    Ok(Audited {
        report,
        artifact,
        index_built: index.built,
        index_seconds,
        image_built,
    })
}

/// The largest advisory download (osv.dev's largest per-ecosystem dump is far below it).
pub const MAX_DOWNLOAD: u64 = 4 << 30;

/// Download each of `urls` into the advisory cache (`<state>/audit/advisories/`, named by the
/// URL's last path segment, or `advisories-N.zip`), replacing what was there. Returns each
/// file and its size.
pub fn update(
    layout: &StoreLayout,
    urls: &[String],
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<(PathBuf, u64)>> {
    if urls.is_empty() {
        return Err(DriverError::request(
            "buildit::audit::no-urls",
            "no advisory URLs to download",
            "set `audit: advisory-urls: [...]` in .buildit-config.yaml or give --advisory-url URL",
        ));
    }
    let dir = downloaded_dir(layout);
    std::fs::create_dir_all(&dir).map_err(|e| {
        DriverError::request(
            "buildit::audit::cache",
            format!("cannot create {}: {e}", dir.display()),
            "check the store's state directory's permissions",
        )
    })?;
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| download_error("(client)", &e.to_string()))?;
    let mut got = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let last = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|s| {
                buildit_audit::osv::file_kind(Path::new(s)).is_some()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
            .map(str::to_string)
            .unwrap_or_else(|| format!("advisories-{i}.zip"));
        // one file per URL: the same last segment from two URLs would collide
        let name = format!("{i:02}-{last}");
        notice(&format!("downloading {url}"));
        let mut resp = client
            .get(url)
            .send()
            .map_err(|e| download_error(url, &e.to_string()))?;
        if !resp.status().is_success() {
            return Err(download_error(
                url,
                &format!("the server answered {}", resp.status()),
            ));
        }
        let tmp = dir.join(format!(".{name}.part{}", std::process::id()));
        let mut file =
            std::fs::File::create(&tmp).map_err(|e| download_error(url, &e.to_string()))?;
        let n = std::io::copy(&mut (&mut resp).take(MAX_DOWNLOAD + 1), &mut file)
            .map_err(|e| download_error(url, &e.to_string()));
        let n = match n {
            Ok(n) if n <= MAX_DOWNLOAD => n,
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(download_error(
                    url,
                    &format!("larger than {MAX_DOWNLOAD} bytes"),
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let dest = dir.join(&name);
        std::fs::rename(&tmp, &dest).map_err(|e| download_error(url, &e.to_string()))?;
        got.push((dest, n));
    }
    // files of URLs no longer configured go
    let keep: Vec<&PathBuf> = got.iter().map(|(p, _)| p).collect();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if !keep.contains(&&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(got)
}

fn download_error(url: &str, why: &str) -> DriverError {
    DriverError::request(
        "buildit::audit::download",
        format!("cannot download advisories from {url}: {why}"),
        "check the URL (`audit: advisory-urls` in .buildit-config.yaml or --advisory-url); the cache keeps what the last update got",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// binNMU suffixes are dropped, other versions kept; suites map to OSV's release numbers.
    #[test]
    fn source_versions_and_releases() {
        assert_eq!(source_version("5.2.15-2+b13"), "5.2.15-2");
        assert_eq!(source_version("3.0.22-1~deb12u2"), "3.0.22-1~deb12u2");
        assert_eq!(source_version("1.0+bx"), "1.0+bx");
        assert_eq!(debian_release("bookworm"), "12");
        assert_eq!(debian_release("sid"), "sid");
    }
}
