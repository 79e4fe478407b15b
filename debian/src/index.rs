//! apt's package indexes: reading `Packages` files (plain, `.lz4` as apt stores them, `.xz`,
//! `.gz`), finding them in an apt lists directory (`/var/lib/apt/lists` or a private apt
//! root's) for a release (`bookworm`, `bookworm-updates`, `bookworm-security`), and the
//! in-memory [`Index`]: every version of every package, and which packages provide each
//! virtual name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use buildit_lang::text::edit_distance;

use crate::stanza::{self, Stanza, StanzaError};
use crate::version::compare_versions;
use crate::DebianError;

/// The default apt lists directory.
pub const DEFAULT_LISTS_DIR: &str = "/var/lib/apt/lists";

/// One binary package version as an index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Raw `Depends` / `Pre-Depends` / `Provides` fields ("" when absent).
    pub depends: String,
    pub pre_depends: String,
    pub provides: String,
    /// The source package name (the `Source` field without its version, or the name).
    pub source: String,
    /// The source package's version when the `Source` field names one (`Source: NAME
    /// (VERSION)`, for binaries versioned apart from their source, binNMUs among them).
    pub source_version: Option<String>,
    /// Pool path relative to the archive root (`pool/main/...deb`).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub essential: bool,
    /// The mirror the file lives on: `debian` or `debian-security`.
    pub mirror: String,
    /// The suite whose index listed it.
    pub suite: String,
}

/// A `Packages` file to read, and where its packages live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFile {
    pub path: PathBuf,
    pub mirror: String,
    pub suite: String,
}

/// Every package version of some indexes.
#[derive(Clone, Debug, Default)]
pub struct Index {
    packages: HashMap<String, Vec<Package>>,
    /// Virtual name → (providing package, its version, the provided version if any).
    providers: HashMap<String, Vec<(String, String, Option<String>)>>,
    /// The files read, for messages.
    pub files: Vec<IndexFile>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Read every file of `files` (see [`apt_index_files`]).
    pub fn load(files: &[IndexFile]) -> Result<Index, DebianError> {
        let mut index = Index::new();
        for f in files {
            let text = read_maybe_compressed(&f.path)?;
            index
                .add_packages_text(&text, &f.mirror, &f.suite)
                .map_err(|e| DebianError::BadIndex {
                    path: f.path.clone(),
                    why: e.why,
                })?;
            index.files.push(f.clone());
        }
        Ok(index)
    }

    /// The packages of `suite`'s binary indexes for `arch` in the apt lists directory.
    pub fn from_apt_lists(lists_dir: &Path, suite: &str, arch: &str) -> Result<Index, DebianError> {
        let files = apt_index_files(lists_dir, suite, arch)?;
        Index::load(&files)
    }

    /// Add the stanzas of a `Packages` file's text (those without a name, version or file
    /// name are skipped).
    pub fn add_packages_text(
        &mut self,
        text: &str,
        mirror: &str,
        suite: &str,
    ) -> Result<(), StanzaError> {
        let text = stanza::unix_line_ends(text);
        for stanza in stanza::stanzas(&text) {
            if let Some(p) = package(&stanza?, mirror, suite) {
                self.add(p);
            }
        }
        Ok(())
    }

    /// Add one package version.
    pub fn add(&mut self, p: Package) {
        for (virt, ver) in parse_provides(&p.provides) {
            self.providers
                .entry(virt)
                .or_default()
                .push((p.name.clone(), p.version.clone(), ver));
        }
        self.packages.entry(p.name.clone()).or_default().push(p);
    }

    /// Every version of `name`, newest first.
    pub fn versions(&self, name: &str) -> Vec<&Package> {
        let mut v: Vec<&Package> = self
            .packages
            .get(name)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| compare_versions(&b.version, &a.version).then(a.suite.cmp(&b.suite)));
        v
    }

    /// The newest version of `name` (apt's candidate when every suite has the same priority).
    pub fn candidate(&self, name: &str) -> Option<&Package> {
        self.versions(name).into_iter().next()
    }

    /// The packages providing virtual `name`: (package, its version, provided version).
    pub fn providers(&self, name: &str) -> &[(String, String, Option<String>)] {
        self.providers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether any package is called or provides `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.packages.contains_key(name) || self.providers.contains_key(name)
    }

    /// Number of distinct package names.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// No packages at all.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Names close to `name` (edit distance ≤ 2 or a containing name), best first, at most 5.
    pub fn suggestions(&self, name: &str) -> Vec<String> {
        let mut scored: Vec<(usize, &String)> = self
            .packages
            .keys()
            .chain(self.providers.keys())
            .filter_map(|k| {
                if k.len().abs_diff(name.len()) > 3 && !k.starts_with(name) {
                    return None;
                }
                let d = edit_distance(name, k);
                if d <= 2 {
                    Some((d, k))
                } else if k.starts_with(name) {
                    Some((3 + k.len() - name.len(), k))
                } else {
                    None
                }
            })
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(5).map(|(_, k)| k.clone()).collect()
    }
}

/// The package of one `Packages` stanza; `None` when it lacks a name, version or file name.
fn package(st: &Stanza<'_>, mirror: &str, suite: &str) -> Option<Package> {
    let get = |k: &str| st.get(k).map(Cow::into_owned).unwrap_or_default();
    // relationship fields are folded: their line breaks are spaces
    let folded = |k: &str| get(k).replace('\n', " ");
    let p = Package {
        name: get("Package"),
        version: get("Version"),
        architecture: get("Architecture"),
        depends: folded("Depends"),
        pre_depends: folded("Pre-Depends"),
        provides: folded("Provides"),
        source: st
            .get("Source")
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| get("Package")),
        source_version: st.get("Source").and_then(|s| source_field_version(&s)),
        filename: get("Filename"),
        size: st.get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
        sha256: get("SHA256"),
        essential: st.get("Essential").is_some_and(|e| e == "yes"),
        mirror: mirror.to_string(),
        suite: suite.to_string(),
    };
    if p.name.is_empty() || p.version.is_empty() || p.filename.is_empty() {
        return None;
    }
    Some(p)
}

/// The version of a `Source: NAME (VERSION)` field, if it has one.
fn source_field_version(field: &str) -> Option<String> {
    let (_, rest) = field.split_once('(')?;
    let v = rest.split_once(')')?.0.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// `Provides: a, b (= 1.0)` → [(a, None), (b, Some(1.0))] (architecture qualifiers dropped).
pub fn parse_provides(field: &str) -> Vec<(String, Option<String>)> {
    field
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return None;
            }
            let (name, rest) = match item.split_once('(') {
                Some((n, r)) => (n.trim(), Some(r)),
                None => (item, None),
            };
            let name = name.split(':').next().unwrap_or(name).to_string();
            let ver = rest.and_then(|r| {
                let r = r.trim_end_matches(')').trim();
                r.strip_prefix('=').map(|v| v.trim().to_string())
            });
            Some((name, ver))
        })
        .collect()
}

/// The text of a possibly compressed index file (by extension: `.lz4`, `.xz`, `.gz`, plain).
pub fn read_maybe_compressed(path: &Path) -> Result<String, DebianError> {
    let io = |e: std::io::Error| DebianError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = fs::File::open(path).map_err(io)?;
    let mut r: Box<dyn Read> = match path.extension().and_then(|e| e.to_str()) {
        Some("lz4") => Box::new(lz4_flex::frame::FrameDecoder::new(std::io::BufReader::new(
            f,
        ))),
        Some("xz") => Box::new(xz2::read::XzDecoder::new(f)),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(f)),
        _ => Box::new(f),
    };
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The binary `Packages` files for `suite` (and its `-updates` and `-security` suites) and
/// `arch` in an apt lists directory. apt names them after the URI and path:
/// `HOST_PATH_dists_SUITE_COMPONENT_binary-ARCH_Packages[.lz4|.xz|.gz]`. Files whose URI
/// ends with `debian-security` or whose suite ends with `-security` live on the
/// `debian-security` mirror, the rest on `debian`.
pub fn apt_index_files(
    lists_dir: &Path,
    suite: &str,
    arch: &str,
) -> Result<Vec<IndexFile>, DebianError> {
    let out = apt_list_files(lists_dir, suite, &format!("_binary-{arch}_Packages"))?;
    if out.is_empty() {
        return Err(DebianError::NoIndexes {
            dir: lists_dir.to_path_buf(),
            suite: suite.to_string(),
            arch: arch.to_string(),
        });
    }
    Ok(out)
}

/// The files of an apt lists directory named `HOST_PATH_dists_SUITE_COMPONENT{kind}` (plain
/// or `.lz4`/`.xz`/`.gz`) for `suite`, its `-updates` and its `-security` suite, sorted by
/// path, each with the mirror it comes from. `kind` is `_binary-ARCH_Packages` or
/// `_source_Sources`; an empty result is the caller's error.
pub(crate) fn apt_list_files(
    lists_dir: &Path,
    suite: &str,
    kind: &str,
) -> Result<Vec<IndexFile>, DebianError> {
    let wanted = [
        suite.to_string(),
        format!("{suite}-updates"),
        format!("{suite}-security"),
    ];
    let rd = fs::read_dir(lists_dir).map_err(|e| DebianError::Io {
        path: lists_dir.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let base = name
            .strip_suffix(".lz4")
            .or_else(|| name.strip_suffix(".xz"))
            .or_else(|| name.strip_suffix(".gz"))
            .unwrap_or(&name);
        let Some(base) = base.strip_suffix(kind) else {
            continue;
        };
        let Some((uri, rest)) = base.split_once("_dists_") else {
            continue;
        };
        let Some((s, _component)) = rest.split_once('_') else {
            continue;
        };
        if !wanted.iter().any(|w| w == s) {
            continue;
        }
        let mirror = if uri.ends_with("debian-security") || s.ends_with("-security") {
            "debian-security"
        } else {
            "debian"
        };
        out.push(IndexFile {
            path: e.path(),
            mirror: mirror.to_string(),
            suite: s.to_string(),
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
