//! Debian source packages as the archive describes them: the `Sources` indexes of `deb-src`
//! entries ([`SourceIndex`], found in an apt lists directory by [`apt_sources_files`]), their
//! stanzas ([`SourcePackage`]: name, version, format, pool directory, files with sha256 and
//! size, build dependencies, binaries) and `.dsc` files ([`parse_dsc`]: a PGP-clearsigned
//! deb822 stanza whose armour is removed here, [`strip_clearsign`]).
//!
//! The `.dsc`'s signature is not checked: the `Sources` index that pins the `.dsc`'s sha256
//! comes from a release file whose signature apt checked (`InRelease`), so a `.dsc` whose
//! hash matches the index is the archive's. Every file name a stanza lists is a plain name
//! (no `/`, no `..`), sizes and hashes are well formed, and inputs are bounded
//! ([`MAX_DSC_BYTES`], [`MAX_INDEX_BYTES`]): hostile text is an error naming the problem.
//!
//! Build dependencies keep their architecture (`[amd64 !i386 linux-any]`) and build-profile
//! (`<!nocheck> <stage1 cross>`) restrictions in the index; [`SourcePackage::build_depends_for`]
//! evaluates them for one architecture and set of profiles, as dpkg-checkbuilddeps does.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use buildit_lang::text::edit_distance;

use crate::resolve::{parse_depends, Dep};
use crate::stanza::{self, Stanza};
use crate::version::compare_versions;
use crate::DebianError;

/// The largest `.dsc` accepted (Debian's largest are a few tens of kilobytes).
pub const MAX_DSC_BYTES: usize = 1 << 20;

/// The largest uncompressed `Sources` index accepted (bookworm's main one is about 45 MB).
pub const MAX_INDEX_BYTES: u64 = 512 << 20;

/// One file of a source package: its plain name, size and hex sha256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One source package version as a `Sources` index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
    /// `3.0 (quilt)`, `3.0 (native)`, `1.0`, …
    pub format: String,
    /// The pool directory relative to the archive root (`pool/main/h/hello`).
    pub directory: String,
    /// The `.dsc` and the files it lists (`Checksums-Sha256`).
    pub files: Vec<SourceFile>,
    /// Raw `Build-Depends`, `Build-Depends-Indep`, `Build-Depends-Arch` ("" when absent),
    /// folded onto one line.
    pub build_depends: String,
    pub build_depends_indep: String,
    pub build_depends_arch: String,
    /// The binary packages it builds.
    pub binaries: Vec<String>,
    /// The mirror the files live on: `debian` or `debian-security`.
    pub mirror: String,
    /// The suite whose index listed it.
    pub suite: String,
}

impl SourcePackage {
    /// The `.dsc` among the files.
    pub fn dsc(&self) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.name.ends_with(".dsc"))
    }

    /// The `mirror://` URL of one of its files.
    pub fn url(&self, file: &SourceFile) -> String {
        format!("mirror://{}/{}/{}", self.mirror, self.directory, file.name)
    }

    /// The build dependencies for building on `arch` with the build profiles `profiles`:
    /// `Build-Depends`, then `-Arch` and `-Indep` (a full build), each alternative kept when
    /// its architecture list and profile formula hold.
    pub fn build_depends_for(&self, arch: &str, profiles: &[&str]) -> Vec<Vec<Dep>> {
        [
            &self.build_depends,
            &self.build_depends_arch,
            &self.build_depends_indep,
        ]
        .into_iter()
        .flat_map(|f| restrict_relations(f, arch, profiles))
        .collect()
    }
}

/// The source package of one `Sources` stanza; `None` when it lacks a name or version, an
/// error when its files are malformed.
fn source_package(
    st: &Stanza<'_>,
    mirror: &str,
    suite: &str,
) -> Result<Option<SourcePackage>, String> {
    let get = |k: &str| st.get(k).map(Cow::into_owned).unwrap_or_default();
    let folded = |k: &str| get(k).replace('\n', " ");
    let name = get("Package");
    let version = get("Version");
    if name.is_empty() || version.is_empty() {
        return Ok(None);
    }
    let directory = get("Directory");
    if directory
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "source package {name} {version}: bad Directory '{directory}'"
        ));
    }
    let files = checksums(&get("Checksums-Sha256"))
        .map_err(|why| format!("source package {name} {version}: {why}"))?;
    if !files.iter().any(|f| f.name.ends_with(".dsc")) {
        return Err(format!("source package {name} {version}: no .dsc file"));
    }
    Ok(Some(SourcePackage {
        name,
        version,
        format: get("Format"),
        directory,
        files,
        build_depends: folded("Build-Depends"),
        build_depends_indep: folded("Build-Depends-Indep"),
        build_depends_arch: folded("Build-Depends-Arch"),
        binaries: binaries(&get("Binary")),
        mirror: mirror.to_string(),
        suite: suite.to_string(),
    }))
}

fn binaries(field: &str) -> Vec<String> {
    field
        .split([',', '\n'])
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect()
}

/// The lines of a `Checksums-Sha256` field (`SHA256 SIZE NAME`), checked: 64 hex digits, a
/// decimal size, a plain file name, no name twice.
pub fn checksums(field: &str) -> Result<Vec<SourceFile>, String> {
    let mut out: Vec<SourceFile> = Vec::new();
    for line in field.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut w = line.split_whitespace();
        let (Some(sha), Some(size), Some(name), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            return Err(format!("malformed Checksums-Sha256 line '{line}'"));
        };
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("bad sha256 '{sha}' of {name}"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| format!("bad size '{size}' of {name}"))?;
        if !plain_file_name(name) {
            return Err(format!("file name '{name}' is not a plain name"));
        }
        if out.iter().any(|f| f.name == name) {
            return Err(format!("file {name} listed twice"));
        }
        out.push(SourceFile {
            name: name.to_string(),
            size,
            sha256: sha.to_ascii_lowercase(),
        });
    }
    if out.is_empty() {
        return Err("no Checksums-Sha256 files".to_string());
    }
    Ok(out)
}

/// A name that stays in its directory: not empty, not `.`/`..`, no `/`, no control characters.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// Every source package version of some `Sources` indexes.
#[derive(Clone, Debug, Default)]
pub struct SourceIndex {
    packages: HashMap<String, Vec<SourcePackage>>,
    /// The files read, for messages.
    pub files: Vec<PathBuf>,
}

impl SourceIndex {
    /// An empty index.
    pub fn new() -> SourceIndex {
        SourceIndex::default()
    }

    /// Read the `Sources` files `files` (from [`apt_sources_files`]).
    pub fn load(files: &[crate::IndexFile]) -> Result<SourceIndex, DebianError> {
        let mut index = SourceIndex::new();
        for f in files {
            let text = read_bounded(&f.path)?;
            index
                .add_sources_text(&text, &f.mirror, &f.suite)
                .map_err(|why| DebianError::BadIndex {
                    path: f.path.clone(),
                    why,
                })?;
            index.files.push(f.path.clone());
        }
        Ok(index)
    }

    /// Add the stanzas of a `Sources` file's text.
    pub fn add_sources_text(
        &mut self,
        text: &str,
        mirror: &str,
        suite: &str,
    ) -> Result<(), String> {
        let text = stanza::unix_line_ends(text);
        for st in stanza::stanzas(&text) {
            let st = st.map_err(|e| e.why)?;
            if let Some(p) = source_package(&st, mirror, suite)? {
                self.packages.entry(p.name.clone()).or_default().push(p);
            }
        }
        Ok(())
    }

    /// Every version of source package `name`, newest first.
    pub fn versions(&self, name: &str) -> Vec<&SourcePackage> {
        let mut v: Vec<&SourcePackage> = self
            .packages
            .get(name)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| compare_versions(&b.version, &a.version).then(a.suite.cmp(&b.suite)));
        v.dedup_by(|a, b| a.version == b.version);
        v
    }

    /// Source package `name` at `version`, or its newest version.
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<&SourcePackage, DebianError> {
        let all = self.versions(name);
        if all.is_empty() {
            return Err(DebianError::UnknownPackage {
                name: name.to_string(),
                suggestions: self.suggestions(name),
            });
        }
        match version {
            None => Ok(all[0]),
            Some(v) => all
                .iter()
                .find(|p| compare_versions(&p.version, v).is_eq())
                .copied()
                .ok_or_else(|| DebianError::NoSuchVersion {
                    name: name.to_string(),
                    version: v.to_string(),
                    available: all.iter().map(|p| p.version.clone()).collect(),
                }),
        }
    }

    /// Source package names containing `query` (case-insensitive), sorted.
    pub fn search(&self, query: &str) -> Vec<&str> {
        let q = query.to_lowercase();
        let mut v: Vec<&str> = self
            .packages
            .keys()
            .filter(|k| k.to_lowercase().contains(&q))
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v
    }

    /// Number of distinct source package names.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// No source packages at all.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Names close to `name` (edit distance ≤ 2), best first, at most 5.
    pub fn suggestions(&self, name: &str) -> Vec<String> {
        let mut scored: Vec<(usize, &String)> = self
            .packages
            .keys()
            .filter(|k| k.len().abs_diff(name.len()) <= 2)
            .map(|k| (edit_distance(name, k), k))
            .filter(|(d, _)| *d <= 2)
            .collect();
        scored.sort();
        scored.into_iter().take(5).map(|(_, k)| k.clone()).collect()
    }
}

/// The text of a possibly compressed index (by extension: `.lz4`, `.xz`, `.gz`, plain), at
/// most [`MAX_INDEX_BYTES`] once decompressed.
fn read_bounded(path: &Path) -> Result<String, DebianError> {
    let io = |e: std::io::Error| DebianError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = fs::File::open(path).map_err(io)?;
    let r: Box<dyn Read> = match path.extension().and_then(|e| e.to_str()) {
        Some("lz4") => Box::new(lz4_flex::frame::FrameDecoder::new(std::io::BufReader::new(
            f,
        ))),
        Some("xz") => Box::new(xz2::read::XzDecoder::new(f)),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(f)),
        _ => Box::new(f),
    };
    let mut bytes = Vec::new();
    r.take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        return Err(DebianError::BadIndex {
            path: path.to_path_buf(),
            why: format!("larger than {} MiB uncompressed", MAX_INDEX_BYTES >> 20),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `Sources` files for `suite` (and its `-updates` and `-security` suites) in an apt
/// lists directory: `HOST_PATH_dists_SUITE_COMPONENT_source_Sources[.lz4|.xz|.gz]`. Files
/// whose URI ends with `debian-security` or whose suite ends with `-security` live on the
/// `debian-security` mirror, the rest on `debian`.
pub fn apt_sources_files(
    lists_dir: &Path,
    suite: &str,
) -> Result<Vec<crate::IndexFile>, DebianError> {
    let out = crate::index::apt_list_files(lists_dir, suite, "_source_Sources")?;
    if out.is_empty() {
        return Err(DebianError::NoSourceIndexes {
            dir: lists_dir.to_path_buf(),
            suite: suite.to_string(),
        });
    }
    Ok(out)
}

/// The relationship groups of a source field for `arch` and `profiles`: alternatives whose
/// architecture list excludes `arch` or whose profile formula is false are dropped, and a
/// group left empty disappears.
pub fn restrict_relations(field: &str, arch: &str, profiles: &[&str]) -> Vec<Vec<Dep>> {
    let mut kept = Vec::new();
    for group in field.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let alts: Vec<&str> = group
            .split('|')
            .map(str::trim)
            .filter(|a| applies(a, arch, profiles))
            .collect();
        if alts.is_empty() {
            continue;
        }
        kept.extend(parse_depends(&alts.join(" | ")));
    }
    kept
}

/// Whether one alternative (`name (op v) [archs] <profiles>...`) applies.
fn applies(alt: &str, arch: &str, profiles: &[&str]) -> bool {
    // the version's parentheses may hold `<<`; restrictions come after them
    let tail = match alt.rfind(')') {
        Some(i) => &alt[i + 1..],
        None => alt
            .split_once(['[', '<'])
            .map_or("", |(h, _)| &alt[h.len()..]),
    };
    let mut arch_ok = true;
    let mut groups: Vec<&str> = Vec::new();
    let mut rest = tail;
    while let Some(open) = rest.find(['[', '<']) {
        let close = if rest.as_bytes()[open] == b'[' {
            ']'
        } else {
            '>'
        };
        let Some(len) = rest[open + 1..].find(close) else {
            break;
        };
        let inner = &rest[open + 1..open + 1 + len];
        if close == ']' {
            arch_ok &= arch_list_matches(inner, arch);
        } else {
            groups.push(inner);
        }
        rest = &rest[open + len + 2..];
    }
    let profiles_ok = groups.is_empty()
        || groups.iter().any(|g| {
            g.split_whitespace()
                .all(|term| match term.strip_prefix('!') {
                    Some(p) => !profiles.contains(&p),
                    None => profiles.contains(&term),
                })
        });
    arch_ok && profiles_ok
}

/// `amd64 i386` (any of them) or `!amd64 !i386` (none of them), with wildcards.
fn arch_list_matches(list: &str, arch: &str) -> bool {
    let words: Vec<&str> = list.split_whitespace().collect();
    if words.iter().all(|w| w.starts_with('!')) {
        !words.iter().any(|w| arch_matches(&w[1..], arch))
    } else {
        words
            .iter()
            .any(|w| !w.starts_with('!') && arch_matches(w, arch))
    }
}

/// Whether architecture wildcard `pattern` (`any`, `linux-any`, `any-amd64`, a name) matches
/// the Linux architecture `arch`.
fn arch_matches(pattern: &str, arch: &str) -> bool {
    pattern == arch
        || pattern == "any"
        || pattern == "linux-any"
        || pattern.strip_prefix("any-").is_some_and(|cpu| cpu == arch)
        || pattern
            .strip_prefix("linux-")
            .is_some_and(|cpu| cpu == arch)
}

/// A parsed `.dsc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dsc {
    pub source: String,
    pub version: String,
    pub format: String,
    /// The files it lists (not the `.dsc` itself), from `Checksums-Sha256`.
    pub files: Vec<SourceFile>,
    pub build_depends: String,
    pub build_depends_indep: String,
    pub build_depends_arch: String,
    pub binaries: Vec<String>,
}

/// The body of a PGP-clearsigned text (RFC 4880 §7): the armour header lines dropped, the
/// dash-escaping undone, the signature block required and dropped. Unsigned text is
/// returned whole. Anything else around the message is an error.
pub fn strip_clearsign(text: &str) -> Result<String, String> {
    const BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
    const SIG: &str = "-----BEGIN PGP SIGNATURE-----";
    const END: &str = "-----END PGP SIGNATURE-----";
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let first = loop {
        match lines.next() {
            Some(l) if l.trim().is_empty() => continue,
            Some(l) => break l,
            None => return Ok(String::new()),
        }
    };
    if first.starts_with("-----") && first.trim_end() != BEGIN {
        return Err(format!("unexpected armour line '{first}'"));
    }
    if first.trim_end() != BEGIN {
        return Ok(text.to_string());
    }
    // armour headers (Hash: ...) end at the first empty line
    loop {
        match lines.next() {
            Some("") => break,
            Some(h) if h.contains(": ") => continue,
            Some(h) => return Err(format!("malformed armour header '{h}'")),
            None => return Err("the signed message ends in its armour headers".into()),
        }
    }
    let mut body = String::new();
    loop {
        match lines.next() {
            Some(l) if l.trim_end() == SIG => break,
            Some(l) => {
                if let Some(unescaped) = l.strip_prefix("- ") {
                    body.push_str(unescaped);
                } else if l.starts_with('-') {
                    return Err(format!("unescaped dash line '{l}' in the signed message"));
                } else {
                    body.push_str(l);
                }
                body.push('\n');
            }
            None => return Err("the signed message has no signature block".into()),
        }
    }
    let mut ended = false;
    for l in lines.by_ref() {
        if l.trim_end() == END {
            ended = true;
            break;
        }
    }
    if !ended {
        return Err("the signature block is not closed".into());
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("text after the signature block".into());
    }
    Ok(body)
}

/// Parse a `.dsc` (`name` for messages): bounded, clearsign armour removed, exactly one
/// stanza with `Source`, `Version`, `Format` and well-formed `Checksums-Sha256`.
pub fn parse_dsc(name: &str, bytes: &[u8]) -> Result<Dsc, DebianError> {
    let bad = |why: String| DebianError::BadDsc {
        name: name.to_string(),
        why,
    };
    if bytes.len() > MAX_DSC_BYTES {
        return Err(bad(format!("larger than {} KiB", MAX_DSC_BYTES >> 10)));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let body = strip_clearsign(text).map_err(bad)?;
    let body = stanza::unix_line_ends(&body);
    let stanzas = stanza::parse(&body).map_err(|e| bad(e.why))?;
    let [st] = stanzas.as_slice() else {
        return Err(bad(format!(
            "{} stanzas, a .dsc has exactly one",
            stanzas.len()
        )));
    };
    let get = |k: &str| st.get(k).map(Cow::into_owned).unwrap_or_default();
    let folded = |k: &str| get(k).replace('\n', " ");
    let required = |k: &str| {
        let v = get(k);
        if v.is_empty() {
            Err(bad(format!("no {k} field")))
        } else {
            Ok(v)
        }
    };
    Ok(Dsc {
        source: required("Source")?,
        version: required("Version")?,
        format: required("Format")?,
        files: checksums(&get("Checksums-Sha256")).map_err(bad)?,
        build_depends: folded("Build-Depends"),
        build_depends_indep: folded("Build-Depends-Indep"),
        build_depends_arch: folded("Build-Depends-Arch"),
        binaries: binaries(&get("Binary")),
    })
}

#[cfg(test)]
mod tests;
