//! Updates of a lock against the current indexes, the Debian half of `buildit outdated` and
//! `buildit update`: which locked packages have newer versions ([`newer_versions`], a
//! security suite's newest named apart from a point release's), the lock with only the
//! security suites' newer versions taken ([`security_relock`]: every other entry stays
//! byte for byte), and what changed between two locks ([`lock_changes`]).
//!
//! A security-only re-lock does not resolve the closure again: it replaces the entries that a
//! `-security` suite has newer versions of, gives each its dependencies within the lock, and
//! checks that every dependency of the replaced packages, and every dependency on them that the
//! index still lists for the kept packages, still holds. When one does not (the update needs a
//! package the lock lacks, or a kept package pins the old version), it is an error naming
//! both: the whole lock has to be resolved again (`buildit update` without `--security-only`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::index::{Index, Package};
use crate::lock::{Lock, LockEntry};
use crate::resolve::{parse_depends, Dep};
use crate::version::compare_versions;
use crate::DebianError;

/// Whether `suite` is a security suite (`bookworm-security`).
pub fn is_security_suite(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}

/// A locked package with a newer version in the indexes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Newer {
    pub name: String,
    /// The source package (advisories name it).
    pub source: String,
    pub locked: String,
    /// The newest version in any suite, and the suite listing it (a security suite when
    /// several list that version).
    pub newest: String,
    pub newest_suite: String,
    /// The newest version a security suite lists, when it is newer than the locked one.
    pub security: Option<String>,
    pub security_suite: Option<String>,
}

/// The entries of `entries` with a newer version in `index`: the security updates first,
/// then by name.
pub fn newer_versions<'a>(
    entries: impl IntoIterator<Item = &'a LockEntry>,
    index: &Index,
) -> Vec<Newer> {
    let mut out = Vec::new();
    for e in entries {
        let versions = index.versions(&e.name);
        let Some(top) = versions.first() else {
            continue;
        };
        if compare_versions(&top.version, &e.version) != Ordering::Greater {
            continue;
        }
        let newest_suite = versions
            .iter()
            .filter(|p| p.version == top.version)
            .map(|p| p.suite.as_str())
            .find(|s| is_security_suite(s))
            .unwrap_or(top.suite.as_str());
        let security = versions.iter().find(|p| {
            is_security_suite(&p.suite)
                && compare_versions(&p.version, &e.version) == Ordering::Greater
        });
        out.push(Newer {
            name: e.name.clone(),
            source: e.source.clone(),
            locked: e.version.clone(),
            newest: top.version.clone(),
            newest_suite: newest_suite.to_string(),
            security: security.map(|p| p.version.clone()),
            security_suite: security.map(|p| p.suite.clone()),
        });
    }
    out.sort_by(|a, b| {
        b.security
            .is_some()
            .cmp(&a.security.is_some())
            .then(a.name.cmp(&b.name))
    });
    out
}

/// One package whose locked version differs between two locks (`None`: not in that lock).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockChange {
    pub name: String,
    pub source: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// The new entry's mirror (`debian-security` for a security update).
    pub mirror: Option<String>,
}

/// The packages whose entries differ between `old` and `new` (a version, or the `.deb`
/// itself), by name.
pub fn lock_changes(old: &Lock, new: &Lock) -> Vec<LockChange> {
    let o: BTreeMap<&str, &LockEntry> = old.packages.iter().map(|e| (e.name.as_str(), e)).collect();
    let n: BTreeMap<&str, &LockEntry> = new.packages.iter().map(|e| (e.name.as_str(), e)).collect();
    let names: BTreeSet<&str> = o.keys().chain(n.keys()).copied().collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (a, b) = (o.get(name), n.get(name));
            if let (Some(a), Some(b)) = (a, b) {
                if a.version == b.version && a.sha256 == b.sha256 {
                    return None;
                }
            }
            Some(LockChange {
                name: name.to_string(),
                source: b.or(a).map(|e| e.source.clone()).unwrap_or_default(),
                old: a.map(|e| e.version.clone()),
                new: b.map(|e| e.version.clone()),
                mirror: b.map(|e| e.mirror.clone()),
            })
        })
        .collect()
}

/// `old` with every package that a security suite of `index` has a newer version of moved to
/// that suite's newest version; the rest is kept as it is (see the module documentation).
pub fn security_relock(old: &Lock, index: &Index) -> Result<Lock, DebianError> {
    let arch_ok = |p: &Package| p.architecture == old.architecture || p.architecture == "all";
    let updates: BTreeMap<&str, &Package> = old
        .packages
        .iter()
        .filter_map(|e| {
            index
                .versions(&e.name)
                .into_iter()
                .find(|p| {
                    arch_ok(p)
                        && is_security_suite(&p.suite)
                        && compare_versions(&p.version, &e.version) == Ordering::Greater
                })
                .map(|p| (e.name.as_str(), p))
        })
        .collect();
    if updates.is_empty() {
        return Ok(old.clone());
    }
    // the versions after the update
    let set: BTreeMap<&str, &str> = old
        .packages
        .iter()
        .map(|e| {
            let v = updates
                .get(e.name.as_str())
                .map_or(&e.version, |p| &p.version);
            (e.name.as_str(), v.as_str())
        })
        .collect();
    let conflict = |p: &str, v: &str, group: &[Dep]| DebianError::SecurityUpdateConflict {
        package: p.to_string(),
        version: v.to_string(),
        dependency: render(group),
    };
    let mut packages = Vec::with_capacity(old.packages.len());
    for e in &old.packages {
        let Some(p) = updates.get(e.name.as_str()) else {
            // a kept package's dependencies on an updated one must still hold
            if e.depends.iter().any(|d| updates.contains_key(d.as_str())) {
                let stanza = index
                    .versions(&e.name)
                    .into_iter()
                    .find(|q| q.version == e.version);
                if let Some(q) = stanza {
                    for group in groups(q) {
                        let touches = group.iter().any(|d| updates.contains_key(d.name.as_str()));
                        if touches && satisfier(&group, &set, index, &old.architecture).is_none() {
                            return Err(conflict(&e.name, &e.version, &group));
                        }
                    }
                }
            }
            packages.push(e.clone());
            continue;
        };
        let mut depends = Vec::new();
        for group in groups(p) {
            match satisfier(&group, &set, index, &old.architecture) {
                Some(n) => depends.push(n),
                None => return Err(conflict(&p.name, &p.version, &group)),
            }
        }
        depends.sort();
        depends.dedup();
        depends.retain(|n| n != &p.name);
        packages.push(LockEntry {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            source: p.source.clone(),
            source_version: p.source_version.clone().filter(|v| *v != p.version),
            mirror: p.mirror.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
            depends,
        });
    }
    Ok(Lock {
        packages,
        ..old.clone()
    })
}

/// The `Pre-Depends` and `Depends` groups of a package.
fn groups(p: &Package) -> Vec<Vec<Dep>> {
    parse_depends(&p.pre_depends)
        .into_iter()
        .chain(parse_depends(&p.depends))
        .collect()
}

/// The name of the package of `set` (name → version) that satisfies one alternative of
/// `group`, directly or through a `Provides` of `index`.
fn satisfier(
    group: &[Dep],
    set: &BTreeMap<&str, &str>,
    index: &Index,
    arch: &str,
) -> Option<String> {
    let version_ok = |d: &Dep, have: &str| match &d.version {
        None => true,
        Some((r, want)) => r.holds(have, want),
    };
    for d in group {
        let arch_ok = match d.arch.as_deref() {
            None | Some("any") | Some("native") => true,
            Some(a) => a == arch || a == "all",
        };
        if !arch_ok {
            continue;
        }
        if let Some(v) = set.get(d.name.as_str()) {
            if version_ok(d, v) {
                return Some(d.name.clone());
            }
        }
        for (prov, prov_ver, provided) in index.providers(&d.name) {
            if set.get(prov.as_str()) != Some(&prov_ver.as_str()) {
                continue;
            }
            let ok = match (&d.version, provided) {
                (None, _) => true,
                (Some((r, want)), Some(have)) => r.holds(have, want),
                (Some(_), None) => false,
            };
            if ok {
                return Some(prov.clone());
            }
        }
    }
    None
}

fn render(group: &[Dep]) -> String {
    group
        .iter()
        .map(|d| match &d.version {
            Some((r, v)) => format!("{} ({} {v})", d.name, r.symbol()),
            None => d.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::LOCK_VERSION;

    const MAIN: &str = "Package: tool\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libt1 (>= 1.0)\nFilename: pool/main/t/tool/tool_1.0-1_amd64.deb\nSize: 10\nSHA256: 00aa\n\n\
Package: libt1\nVersion: 1.2-1\nArchitecture: amd64\nSource: t\nFilename: pool/main/t/t/libt1_1.2-1_amd64.deb\nSize: 5\nSHA256: 00bb\n\n\
Package: libpin\nVersion: 2.0-1\nArchitecture: amd64\nSource: pin\nFilename: pool/main/p/pin/libpin_2.0-1_amd64.deb\nSize: 5\nSHA256: 00ee\n\n\
Package: pin-dev\nVersion: 2.0-1\nArchitecture: amd64\nSource: pin\nDepends: libpin (= 2.0-1)\nFilename: pool/main/p/pin/pin-dev_2.0-1_amd64.deb\nSize: 5\nSHA256: 00ef\n";
    const UPDATES: &str = "Package: tool\nVersion: 1.1-1\nArchitecture: amd64\nDepends: libt1 (>= 1.0)\nFilename: pool/main/t/tool/tool_1.1-1_amd64.deb\nSize: 11\nSHA256: 00ab\n";
    const SECURITY: &str = "Package: libt1\nVersion: 1.2-1+deb12u1\nArchitecture: amd64\nSource: t\nFilename: pool/updates/main/t/t/libt1_1.2-1+deb12u1_amd64.deb\nSize: 6\nSHA256: 00dd\n";

    fn index(extra_security: &str) -> Index {
        let mut i = Index::new();
        i.add_packages_text(MAIN, "debian", "bookworm")
            .expect("main");
        i.add_packages_text(UPDATES, "debian", "bookworm-updates")
            .expect("updates");
        i.add_packages_text(
            &format!("{SECURITY}\n{extra_security}"),
            "debian-security",
            "bookworm-security",
        )
        .expect("security");
        i
    }

    fn entry(name: &str, version: &str, source: &str, depends: &[&str]) -> LockEntry {
        LockEntry {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: source.into(),
            source_version: None,
            mirror: "debian".into(),
            filename: format!("pool/main/{name}_{version}_amd64.deb"),
            size: 1,
            sha256: format!("{name}{version}"),
            depends: depends.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn lock() -> Lock {
        Lock {
            version: LOCK_VERSION,
            suite: "bookworm".into(),
            architecture: "amd64".into(),
            roots: vec!["tool".into(), "pin-dev".into()],
            packages: vec![
                entry("libpin", "2.0-1", "pin", &[]),
                entry("libt1", "1.2-1", "t", &[]),
                entry("pin-dev", "2.0-1", "pin", &["libpin"]),
                entry("tool", "1.0-1", "tool", &["libt1"]),
            ],
        }
    }

    /// A point release and a security update are told apart; the security update comes first.
    #[test]
    fn newer_versions_name_their_suites() {
        let l = lock();
        let n = newer_versions(&l.packages, &index(""));
        let got: Vec<(&str, &str, &str, Option<&str>)> = n
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.newest.as_str(),
                    n.newest_suite.as_str(),
                    n.security_suite.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "libt1",
                    "1.2-1+deb12u1",
                    "bookworm-security",
                    Some("bookworm-security")
                ),
                ("tool", "1.1-1", "bookworm-updates", None),
            ]
        );
        assert_eq!(n[0].source, "t");
    }

    /// Only the security update is taken; the point release and the rest stay as they were.
    #[test]
    fn a_security_relock_takes_exactly_the_security_updates() {
        let old = lock();
        let new = security_relock(&old, &index("")).expect("relock");
        let changes = lock_changes(&old, &new);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].name, "libt1");
        assert_eq!(changes[0].old.as_deref(), Some("1.2-1"));
        assert_eq!(changes[0].new.as_deref(), Some("1.2-1+deb12u1"));
        assert_eq!(changes[0].mirror.as_deref(), Some("debian-security"));
        assert_eq!(new.get("tool"), old.get("tool"));
        assert_eq!(new.roots, old.roots);
        // nothing newer: the same lock
        assert_eq!(security_relock(&new, &index("")).expect("again"), new);
    }

    /// A security update that breaks a kept package's exact pin, or that needs a package the
    /// lock lacks, is an error naming the dependency.
    #[test]
    fn a_security_relock_that_needs_more_is_refused() {
        let pin = "Package: libpin\nVersion: 2.0-1+deb12u1\nArchitecture: amd64\nSource: pin\nFilename: pool/updates/main/p/pin/libpin_2.0-1+deb12u1_amd64.deb\nSize: 5\nSHA256: 00ff\n";
        let e = security_relock(&lock(), &index(pin)).expect_err("pin broken");
        assert!(
            matches!(&e, DebianError::SecurityUpdateConflict { package, dependency, .. } if package == "pin-dev" && dependency == "libpin (= 2.0-1)"),
            "{e}"
        );
        let needs = "Package: tool\nVersion: 1.0-1+deb12u1\nArchitecture: amd64\nDepends: libnew\nFilename: pool/updates/main/t/tool/tool_1.0-1+deb12u1_amd64.deb\nSize: 5\nSHA256: 0100\n";
        let e = security_relock(&lock(), &index(needs)).expect_err("new dependency");
        assert!(
            matches!(&e, DebianError::SecurityUpdateConflict { package, dependency, .. } if package == "tool" && dependency == "libnew"),
            "{e}"
        );
    }
}
