//! Debian source packages in the lock file: `[[source]]` tables after the `[[package]]` ones,
//! one per locked source package (name, version, format, mirror, pool directory, its `.dsc`
//! and every file the `.dsc` lists with size, sha256 and `mirror://` URL, the raw
//! build-dependency fields and the binaries it builds). The tables are additive: [`Lock`]
//! ignores them, a lock without them is unchanged, and [`parse_sources`] reads them from the
//! same text. [`render_sources`] writes them; [`with_sources`] puts them after a rendered
//! binary lock (replacing any there).
//!
//! [`Lock`]: crate::Lock

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::sources::SourcePackage;

/// One file of a locked source package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedSourceFile {
    pub name: String,
    pub size: u64,
    /// Hex sha256.
    pub sha256: String,
    /// `mirror://MIRROR/DIRECTORY/NAME`.
    pub url: String,
}

/// One locked source package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLockEntry {
    pub name: String,
    pub version: String,
    pub format: String,
    /// `debian` or `debian-security`.
    pub mirror: String,
    /// The pool directory, e.g. `pool/main/h/hello`.
    pub directory: String,
    /// The `.dsc`'s file name (one of `files`).
    pub dsc: String,
    #[serde(default)]
    pub files: Vec<LockedSourceFile>,
    #[serde(default)]
    pub build_depends: String,
    #[serde(default)]
    pub build_depends_arch: String,
    #[serde(default)]
    pub build_depends_indep: String,
    #[serde(default)]
    pub binaries: Vec<String>,
}

impl SourceLockEntry {
    /// The entry for a source package of an index; `None` when it has no `.dsc`.
    pub fn from_index(p: &SourcePackage) -> Option<SourceLockEntry> {
        let dsc = p.dsc()?;
        Some(SourceLockEntry {
            name: p.name.clone(),
            version: p.version.clone(),
            format: p.format.clone(),
            mirror: p.mirror.clone(),
            directory: p.directory.clone(),
            dsc: dsc.name.clone(),
            files: p
                .files
                .iter()
                .map(|f| LockedSourceFile {
                    name: f.name.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                    url: p.url(f),
                })
                .collect(),
            build_depends: p.build_depends.clone(),
            build_depends_arch: p.build_depends_arch.clone(),
            build_depends_indep: p.build_depends_indep.clone(),
            binaries: p.binaries.clone(),
        })
    }
}

#[derive(Deserialize)]
struct SourceTables {
    #[serde(default, rename = "source")]
    sources: Vec<SourceLockEntry>,
}

/// The `[[source]]` tables of a lock's text (none in a lock without them).
pub fn parse_sources(text: &str) -> Result<Vec<SourceLockEntry>, String> {
    let t: SourceTables = toml::from_str(text).map_err(|e| e.to_string())?;
    Ok(t.sources)
}

/// The `[[source]]` tables for `sources` (sorted by name; stable bytes).
pub fn render_sources(sources: &[SourceLockEntry]) -> String {
    let mut sorted: Vec<&SourceLockEntry> = sources.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let list = |v: &[String]| {
        let inner: Vec<String> = v.iter().map(|s| q(s)).collect();
        format!("[{}]", inner.join(", "))
    };
    let mut s = String::new();
    for e in sorted {
        let _ = writeln!(s, "\n[[source]]");
        let _ = writeln!(s, "name = {}", q(&e.name));
        let _ = writeln!(s, "version = {}", q(&e.version));
        let _ = writeln!(s, "format = {}", q(&e.format));
        let _ = writeln!(s, "mirror = {}", q(&e.mirror));
        let _ = writeln!(s, "directory = {}", q(&e.directory));
        let _ = writeln!(s, "dsc = {}", q(&e.dsc));
        let _ = writeln!(s, "build_depends = {}", q(&e.build_depends));
        let _ = writeln!(s, "build_depends_arch = {}", q(&e.build_depends_arch));
        let _ = writeln!(s, "build_depends_indep = {}", q(&e.build_depends_indep));
        let _ = writeln!(s, "binaries = {}", list(&e.binaries));
        let _ = writeln!(s, "files = [");
        for f in &e.files {
            let _ = writeln!(
                s,
                "  {{ name = {}, size = {}, sha256 = {}, url = {} }},",
                q(&f.name),
                f.size,
                q(&f.sha256),
                q(&f.url)
            );
        }
        let _ = writeln!(s, "]");
    }
    s
}

/// A rendered lock `text` with its `[[source]]` tables replaced by `sources` (the binary
/// part before them kept byte for byte).
pub fn with_sources(text: &str, sources: &[SourceLockEntry]) -> String {
    let binary = match text.find("\n[[source]]\n") {
        Some(i) => &text[..i + 1],
        None => text,
    };
    let mut out = binary.trim_end_matches('\n').to_string();
    out.push('\n');
    out.push_str(&render_sources(sources));
    out
}

/// `sources` with `new` merged in: an entry of the same name is replaced.
pub fn merge_sources(
    mut sources: Vec<SourceLockEntry>,
    new: Vec<SourceLockEntry>,
) -> Vec<SourceLockEntry> {
    for n in new {
        sources.retain(|e| e.name != n.name);
        sources.push(n);
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    sources
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SourceIndex;

    const BINARY: &str = "# header\nversion = 1\nsuite = \"bookworm\"\narchitecture = \"amd64\"\nroots = [\"a\"]\n\n[[package]]\nname = \"a\"\nversion = \"1\"\narchitecture = \"amd64\"\nsource = \"a\"\nmirror = \"debian\"\nfilename = \"pool/main/a/a/a_1_amd64.deb\"\nsize = 1\nsha256 = \"00\"\ndepends = []\n";

    fn entry(name: &str, version: &str) -> SourceLockEntry {
        let sha = "ab".repeat(32);
        let text = format!("Package: {name}\nVersion: {version}\nFormat: 3.0 (native)\nDirectory: pool/main/x/{name}\nBuild-Depends: debhelper-compat (= 13), x [!amd64] <!nocheck>\nBinary: {name}, {name}-dev\nChecksums-Sha256:\n {sha} 10 {name}_{version}.dsc\n {sha} 20 {name}_{version}.tar.xz\n");
        let mut idx = SourceIndex::new();
        idx.add_sources_text(&text, "debian-security", "bookworm-security")
            .expect("crafted");
        SourceLockEntry::from_index(idx.find(name, None).expect("found")).expect("a .dsc")
    }

    #[test]
    fn source_tables_round_trip_and_leave_the_binary_lock_alone() {
        let e = entry("pkg", "1.0\"q");
        assert_eq!(
            e.files[0].url,
            "mirror://debian-security/pool/main/x/pkg/pkg_1.0\"q.dsc"
        );
        // no sources: the binary text is unchanged
        assert_eq!(with_sources(BINARY, &[]), BINARY);
        let text = with_sources(BINARY, &[e.clone(), entry("aaa", "2")]);
        assert!(text.starts_with(BINARY), "{text}");
        let back = parse_sources(&text).expect("reads");
        assert_eq!(
            back.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["aaa", "pkg"]
        );
        assert_eq!(back[1], e);
        // the binary lock reads the same with the tables there
        assert_eq!(
            crate::lock::parse_lock(&text).expect("binary"),
            crate::lock::parse_lock(BINARY).expect("binary")
        );
        // replacing the tables keeps the binary part; merging replaces by name
        let merged = merge_sources(back, vec![entry("pkg", "3")]);
        let again = with_sources(&text, &merged);
        assert!(again.starts_with(BINARY));
        let got: Vec<(String, String)> = parse_sources(&again)
            .expect("reads")
            .into_iter()
            .map(|e| (e.name, e.version))
            .collect();
        assert_eq!(
            got,
            [("aaa".into(), "2".into()), ("pkg".into(), "3".into())]
        );
        // the embedded stdlib lock has none
        assert!(parse_sources(BINARY).expect("old lock").is_empty());
    }
}
