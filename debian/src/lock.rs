//! The Debian lock file (`stdlib/debian/bookworm.lock`): TOML, so the package set reads it
//! with `builtins.fromTOML`. A header records how it was made (suite, architecture, the
//! root packages and the command that refreshes it); then one `[[package]]` table per `.deb`,
//! sorted by name, with its exact version, architecture, source package, mirror (`debian` or
//! `debian-security`), pool path, size, sha256 and the names it depends on within the lock.
//! `source_version` is written only when the source package's version differs from the
//! binary's (a binNMU `+bN`, or a binary versioned on its own, as the `Source: NAME (VERSION)`
//! field of the `Packages` stanza says). Absent, the source version is the binary version
//! without a binNMU suffix: locks written before the field existed omit it for binNMUs too.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DebianError;

/// The lock format version this code writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// One pinned `.deb`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The source package (for finding `*.orig.tar.*` and grouping).
    pub source: String,
    /// The source package's version when it differs from `version` (absent: see
    /// [`LockEntry::source_version`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// `debian` or `debian-security`: the URL is `mirror://MIRROR/FILENAME`.
    pub mirror: String,
    /// The pool path, e.g. `pool/main/h/hello/hello_2.10-3_amd64.deb`.
    pub filename: String,
    pub size: u64,
    /// Hex sha256 of the `.deb`.
    pub sha256: String,
    /// The packages of this lock it depends on (resolved alternatives and virtual names).
    #[serde(default)]
    pub depends: Vec<String>,
}

impl LockEntry {
    /// The `mirror://` URL of the `.deb`.
    pub fn url(&self) -> String {
        format!("mirror://{}/{}", self.mirror, self.filename)
    }

    /// The source package's version: the recorded one, else the binary version without a
    /// binNMU suffix ([`binnmu_source_version`]).
    pub fn source_version(&self) -> &str {
        self.source_version
            .as_deref()
            .unwrap_or_else(|| binnmu_source_version(&self.version))
    }
}

/// The source version of a binary version by Debian's binNMU rule: without a `+bN` suffix
/// (a binary rebuilt from an unchanged source), else the version itself.
pub fn binnmu_source_version(binary: &str) -> &str {
    if let Some((base, n)) = binary.rsplit_once("+b") {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return base;
        }
    }
    binary
}

/// A whole lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    pub suite: String,
    pub architecture: String,
    /// The packages asked for; the lock is their dependency closure.
    pub roots: Vec<String>,
    #[serde(default, rename = "package")]
    pub packages: Vec<LockEntry>,
}

impl Lock {
    /// The entry for package `name`.
    pub fn get(&self, name: &str) -> Option<&LockEntry> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// The names of `names` and everything they depend on in this lock, sorted.
    pub fn closure(&self, names: &[&str]) -> Vec<&LockEntry> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<&str> = names.to_vec();
        while let Some(n) = todo.pop() {
            if let Some(e) = self.get(n) {
                if seen.insert(e.name.as_str()) {
                    todo.extend(e.depends.iter().map(String::as_str));
                }
            }
        }
        seen.into_iter().filter_map(|n| self.get(n)).collect()
    }
}

/// Parse a lock file's text.
pub fn parse_lock(text: &str) -> Result<Lock, String> {
    let lock: Lock = toml::from_str(text).map_err(|e| e.to_string())?;
    if lock.version != LOCK_VERSION {
        return Err(format!(
            "lock format version {} is not supported (this buildit reads version {LOCK_VERSION})",
            lock.version
        ));
    }
    Ok(lock)
}

/// Read and parse a lock file.
pub fn read_lock(path: &Path) -> Result<Lock, DebianError> {
    let text = std::fs::read_to_string(path).map_err(|e| DebianError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_lock(&text).map_err(|why| DebianError::BadLock {
        path: path.to_path_buf(),
        why,
    })
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The refresh command for a lock written to `output`.
pub fn refresh_command(lock: &Lock, output: &str) -> String {
    format!(
        "buildit debian lock --suite {} --output {} {}",
        lock.suite,
        output,
        lock.roots.join(" ")
    )
}

/// The text of a lock file (stable: same lock, same bytes). `output` is where it is written,
/// used in the header's refresh command.
pub fn render_lock(lock: &Lock, output: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Debian packages pinned by buildit. Generated; do not edit by hand."
    );
    let _ = writeln!(
        s,
        "# Refresh (after `apt-get update`): {}",
        refresh_command(lock, output)
    );
    let _ = writeln!(s, "version = {}", lock.version);
    let _ = writeln!(s, "suite = {}", quote(&lock.suite));
    let _ = writeln!(s, "architecture = {}", quote(&lock.architecture));
    let _ = writeln!(s, "roots = {}", list(&lock.roots));
    for p in &lock.packages {
        let _ = writeln!(s, "\n[[package]]");
        let _ = writeln!(s, "name = {}", quote(&p.name));
        let _ = writeln!(s, "version = {}", quote(&p.version));
        let _ = writeln!(s, "architecture = {}", quote(&p.architecture));
        let _ = writeln!(s, "source = {}", quote(&p.source));
        if let Some(v) = p.source_version.as_deref().filter(|v| *v != p.version) {
            let _ = writeln!(s, "source_version = {}", quote(v));
        }
        let _ = writeln!(s, "mirror = {}", quote(&p.mirror));
        let _ = writeln!(s, "filename = {}", quote(&p.filename));
        let _ = writeln!(s, "size = {}", p.size);
        let _ = writeln!(s, "sha256 = {}", quote(&p.sha256));
        let _ = writeln!(s, "depends = {}", list(&p.depends));
    }
    s
}

/// Write a lock file atomically (temporary file + rename).
pub fn write_lock(path: &Path, lock: &Lock) -> Result<(), DebianError> {
    let io = |e: std::io::Error| DebianError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let text = render_lock(lock, &path.to_string_lossy());
    let tmp = path.with_extension("lock.tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "[[package]]\nname = \"bash\"\nversion = \"5.2.15-2+b13\"\narchitecture = \"amd64\"\nsource = \"bash\"\n";
    const REST: &str = "mirror = \"debian\"\nfilename = \"pool/main/b/bash/bash_5.2.15-2+b13_amd64.deb\"\nsize = 1\nsha256 = \"00\"\ndepends = []\n";

    fn lock_text(extra: &str) -> String {
        format!("version = 1\nsuite = \"bookworm\"\narchitecture = \"amd64\"\nroots = [\"bash\"]\n\n{ENTRY}{extra}{REST}")
    }

    #[test]
    fn the_source_version_is_optional_and_round_trips() {
        // the form without it: the binary version by the binNMU rule
        let old = parse_lock(&lock_text("")).expect("old form");
        let e = &old.packages[0];
        assert_eq!(
            (e.source_version.as_deref(), e.source_version()),
            (None, "5.2.15-2")
        );
        assert_eq!(
            binnmu_source_version("3.0.11-1~deb12u2"),
            "3.0.11-1~deb12u2"
        );
        assert_eq!(binnmu_source_version("1.0+bx"), "1.0+bx");
        assert!(!render_lock(&old, "x.lock").contains("source_version"));
        // the form with it
        let new = parse_lock(&lock_text("source_version = \"5.2.14-1\"\n")).expect("new form");
        assert_eq!(new.packages[0].source_version(), "5.2.14-1");
        let text = render_lock(&new, "x.lock");
        assert!(
            text.contains("source = \"bash\"\nsource_version = \"5.2.14-1\"\n"),
            "{text}"
        );
        assert_eq!(parse_lock(&text).expect("re-read"), new);
        // one equal to the binary version is not written
        let mut same = new.clone();
        same.packages[0].source_version = Some("5.2.15-2+b13".into());
        assert!(!render_lock(&same, "x.lock").contains("source_version"));
    }
}
