//! Checking a compiled spec against the package set, before anything is evaluated or built, so
//! that the errors that would otherwise surface deep in evaluation (an unknown atom, a version
//! the set lacks, a misspelled build option, an option whose requirement is off, two options
//! that conflict) point at the YAML line and column of the entry that caused them.
//!
//! The set's facts are a [`SetInfo`] the caller evaluates (the driver's package-set query, with
//! a store for `<buildit>`); [`check`] then only compares data. The rules
//! mirror `pkgs.byAtom` (an exact `category/name` picks the newest version, otherwise the last
//! `-<digit>…` of the base name is the version) and `options.bld`'s `resolve`.

use std::collections::BTreeMap;

use buildit_lang::Diagnostic;

use super::spec::{did_you_mean, ContainerSpec, PackageRef, PkgSpec, Spanned};

/// A build option as the set declares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionInfo {
    pub default: bool,
    pub requires: Vec<String>,
    pub conflicts: Vec<String>,
}

/// The package set's atoms, versions and options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetInfo {
    /// `category/name` → version → option name → declaration.
    pub atoms: BTreeMap<String, BTreeMap<String, BTreeMap<String, OptionInfo>>>,
    /// Debian package name → the version the lock pins.
    pub debian: BTreeMap<String, String>,
}

/// Compare two versions the way the set orders them (numeric runs as numbers).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-', '_', '+', '~'])
            .map(|p| {
                let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_string())
            })
            .collect()
    };
    parts(a).cmp(&parts(b))
}

/// How an atom text resolves: `(category/name, Some(version))`, or `None` for the version when
/// the text names the atom alone (the newest version).
pub fn split_atom(text: &str) -> (String, Option<String>) {
    let (cat, base) = match text.rsplit_once('/') {
        Some((c, b)) => (format!("{c}/"), b),
        None => (String::new(), text),
    };
    // parseDrvName: the version starts after the first `-` followed by a non-letter
    let b = base.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()) {
            return (
                format!("{cat}{}", &base[..i]),
                Some(base[i + 1..].to_string()),
            );
        }
    }
    (format!("{cat}{base}"), None)
}

/// Where an atom resolved: its options, or why not (a diagnostic was pushed).
fn resolve<'s>(
    set: &'s SetInfo,
    atom: &Spanned<String>,
    own_source: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'s BTreeMap<String, OptionInfo>> {
    let text = atom.value.trim();
    if let Some(vs) = set.atoms.get(text) {
        let newest = vs.keys().max_by(|a, b| version_cmp(a, b))?;
        return vs.get(newest);
    }
    let (key, version) = split_atom(text);
    let Some(vs) = set.atoms.get(&key) else {
        let names: Vec<&str> = set.atoms.keys().map(String::as_str).collect();
        let help = match did_you_mean(&key, &names) {
            Some(s) => format!("did you mean `{s}`? (`buildit search` lists the set)"),
            None => format!(
                "the set has: {} (`buildit search` lists them with their versions)",
                names.join(", ")
            ),
        };
        diags.push(
            Diagnostic::error(
                "buildit::yaml::unknown-atom",
                format!("unknown package atom `{text}`"),
            )
            .with_label(atom.span, "not in the package set")
            .with_help(help),
        );
        return None;
    };
    let version = version.unwrap_or_default();
    match vs.get(&version) {
        Some(o) => Some(o),
        None if own_source => {
            // a version the set lacks, with its own `source:`: the newest recipe's options
            let newest = vs.keys().max_by(|a, b| version_cmp(a, b))?;
            vs.get(newest)
        }
        None => {
            let have: Vec<&str> = vs.keys().map(String::as_str).collect();
            diags.push(
                Diagnostic::error(
                    "buildit::yaml::unknown-version",
                    format!("{key} has no version {version}"),
                )
                .with_label(atom.span, "this version")
                .with_help(format!(
                    "the set has {key} {}; or give `source: {{ url, sha256 }}` to build this version from the same recipe",
                    have.join(", ")
                )),
            );
            None
        }
    }
}

fn check_options(
    atom: &str,
    declared: &BTreeMap<String, OptionInfo>,
    pkg: &PkgSpec,
    diags: &mut Vec<Diagnostic>,
) {
    let names: Vec<&str> = declared.keys().map(String::as_str).collect();
    let listing = if names.is_empty() {
        format!("{atom} has no build options")
    } else {
        format!("{atom} has the options: {}", names.join(", "))
    };
    let mut known = true;
    for o in pkg.use_with.iter().chain(&pkg.use_without) {
        if declared.contains_key(&o.value) {
            continue;
        }
        known = false;
        let help = match did_you_mean(&o.value, &names) {
            Some(s) => format!("did you mean `{s}`? (`buildit search {atom}` lists its options)"),
            None => format!("{listing} (`buildit search` shows them)"),
        };
        diags.push(
            Diagnostic::error(
                "buildit::yaml::unknown-option",
                format!("unknown build option `{}` of {atom}", o.value),
            )
            .with_label(o.span, "not an option of this package")
            .with_help(help),
        );
    }
    for w in &pkg.use_with {
        if let Some(d) = pkg.use_without.iter().find(|d| d.value == w.value) {
            diags.push(
                Diagnostic::error(
                    "buildit::yaml::option-twice",
                    format!("build option `{}` is both enabled and disabled", w.value),
                )
                .with_label(w.span, "enabled here")
                .with_label(d.span, "disabled here")
                .with_help("keep it in one of `with:` and `without:`"),
            );
            known = false;
        }
    }
    if !known {
        return;
    }
    // the resolved selection, as options.bld computes it
    let on = |o: &str| -> bool {
        if pkg.use_with.iter().any(|w| w.value == o) {
            true
        } else if pkg.use_without.iter().any(|w| w.value == o) {
            false
        } else {
            declared.get(o).is_some_and(|d| d.default)
        }
    };
    // where an option's state comes from: its own entry, else the package's default
    let entry = |o: &str| -> Option<&Spanned<String>> {
        pkg.use_with
            .iter()
            .chain(&pkg.use_without)
            .find(|w| w.value == o)
    };
    for (name, d) in declared {
        if !on(name) {
            continue;
        }
        for r in d.requires.iter().filter(|r| !on(r)) {
            let mut diag = Diagnostic::error(
                "buildit::yaml::option-requires",
                format!("build option `{name}` of {atom} requires `{r}`, which is disabled"),
            )
            .with_help(format!(
                "enable `{r}` too (`with: [{name}, {r}]`) or drop `{name}`"
            ));
            match (entry(name), entry(r)) {
                (Some(a), Some(b)) => {
                    diag = diag
                        .with_label(a.span, "enabled here")
                        .with_label(b.span, "but disabled here");
                }
                (Some(a), None) => diag = diag.with_label(a.span, format!("needs `{r}`")),
                (None, Some(b)) => {
                    diag =
                        diag.with_label(b.span, format!("`{name}` is on by default and needs it"))
                }
                (None, None) => {}
            }
            diags.push(diag);
        }
        for c in d.conflicts.iter().filter(|c| on(c)) {
            // report each pair once, at the entry written last
            if c.as_str() < name.as_str()
                && declared.get(c).is_some_and(|x| x.conflicts.contains(name))
            {
                continue;
            }
            let mut diag = Diagnostic::error(
                "buildit::yaml::option-conflict",
                format!("build options `{name}` and `{c}` of {atom} conflict"),
            )
            .with_help(format!("disable one of them (`without: [{c}]`)"));
            for o in [name.as_str(), c.as_str()] {
                if let Some(e) = entry(o) {
                    diag = diag.with_label(e.span, "enabled here");
                }
            }
            diags.push(diag);
        }
    }
}

/// A Debian package name (and optional version) against the lock.
fn check_debian(
    set: &SetInfo,
    name: &Spanned<String>,
    version: Option<&Spanned<String>>,
    diags: &mut Vec<Diagnostic>,
) {
    let n = name.value.trim();
    match set.debian.get(n) {
        None => {
            let names: Vec<&str> = set.debian.keys().map(String::as_str).collect();
            let help = match did_you_mean(n, &names) {
                Some(s) => format!("did you mean `{s}`? Packages come from the Debian lock (stdlib/debian/bookworm.lock); add a new one with `buildit debian lock`"),
                None => "packages come from the Debian lock (stdlib/debian/bookworm.lock); add a new one with `buildit debian lock`".to_string(),
            };
            diags.push(
                Diagnostic::error(
                    "buildit::yaml::unknown-debian-package",
                    format!("Debian package `{n}` is not in the lock"),
                )
                .with_label(name.span, "not locked")
                .with_help(help),
            );
        }
        Some(locked) => {
            if let Some(ver) = version.filter(|v| {
                let t = v.value.trim();
                !t.is_empty() && t != locked
            }) {
                let v = ver.value.trim();
                diags.push(
                    Diagnostic::error(
                        "buildit::yaml::debian-version",
                        format!("Debian package `{n}`: the spec wants version {v}, the lock has {locked}"),
                    )
                    .with_label(ver.span, "not the locked version")
                    .with_help(format!(
                        "write {locked} (or leave the version out), or refresh the lock with `buildit debian lock`"
                    )),
                );
            }
        }
    }
}

/// Every diagnostic of `spec` (and its embedded `pkg.yaml` files, keyed by the spec's path
/// text) against `set`. `vars` fills templates in `type: set` atoms.
pub fn check(
    spec: &ContainerSpec,
    embedded: &BTreeMap<String, PkgSpec>,
    vars: &BTreeMap<String, String>,
    set: &SetInfo,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for p in &spec.packages {
        match p {
            PackageRef::Set(atom) => {
                let filled = super::lower::template(&atom.value, atom.span, vars, &mut Vec::new());
                let a = Spanned {
                    value: filled,
                    span: atom.span,
                };
                resolve(set, &a, false, &mut diags);
            }
            PackageRef::Embedded(path) => {
                let Some(pkg) = embedded.get(&path.value) else {
                    continue;
                };
                check_pkg(pkg, set, &mut diags);
            }
            PackageRef::Debian { name, version } => {
                check_debian(set, name, version.as_ref(), &mut diags);
            }
        }
    }
    diags
}

/// The diagnostics of one `pkg.yaml` against the set.
pub fn check_pkg(pkg: &PkgSpec, set: &SetInfo, diags: &mut Vec<Diagnostic>) {
    if let Some(base) = &pkg.base {
        if let Some(declared) = resolve(set, base, pkg.source_url.is_some(), diags) {
            let (key, _) = split_atom(base.value.trim());
            let key = if set.atoms.contains_key(base.value.trim()) {
                base.value.trim().to_string()
            } else {
                key
            };
            check_options(&key, declared, pkg, diags);
        }
    }
    for d in pkg.build_depends.iter().chain(&pkg.runtime_depends) {
        if let Some(rest) = d.value.strip_prefix("debian:") {
            // debian:NAME[=VERSION], as buildit.dependency reads it
            let (n, v) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            let name = Spanned {
                value: n.to_string(),
                span: d.span,
            };
            let version = v.map(|v| Spanned {
                value: v.to_string(),
                span: d.span,
            });
            check_debian(set, &name, version.as_ref(), diags);
            continue;
        }
        resolve(set, d, false, diags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildit_lang::Span;

    fn s(v: &str) -> Spanned<String> {
        Spanned {
            value: v.to_string(),
            span: Span::default(),
        }
    }

    fn set() -> SetInfo {
        let opt = |default: bool, requires: &[&str], conflicts: &[&str]| OptionInfo {
            default,
            requires: requires.iter().map(|x| x.to_string()).collect(),
            conflicts: conflicts.iter().map(|x| x.to_string()).collect(),
        };
        let nginx: BTreeMap<String, OptionInfo> = [
            ("http2", opt(false, &["ssl"], &[])),
            ("ssl", opt(true, &[], &[])),
            ("ipv6", opt(true, &[], &[])),
            ("a", opt(false, &[], &["b"])),
            ("b", opt(false, &[], &["a"])),
        ]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
        let version =
            |v: &str, opts: BTreeMap<String, OptionInfo>| BTreeMap::from([(v.to_string(), opts)]);
        SetInfo {
            atoms: BTreeMap::from([
                ("www-servers/nginx".to_string(), version("1.22.1", nginx)),
                (
                    "sys-libs/zlib".to_string(),
                    version("1.2.13", BTreeMap::new()),
                ),
            ]),
            debian: BTreeMap::from([("libc6".to_string(), "2.36-9".to_string())]),
        }
    }

    fn codes(pkg: &PkgSpec) -> Vec<String> {
        let mut d = Vec::new();
        check_pkg(pkg, &set(), &mut d);
        d.into_iter().map(|d| d.code.to_string()).collect()
    }

    #[test]
    fn atoms_split_like_parse_drv_name() {
        assert_eq!(
            split_atom("www-servers/nginx-1.22.1"),
            ("www-servers/nginx".into(), Some("1.22.1".into()))
        );
        assert_eq!(split_atom("sys-libs/zlib"), ("sys-libs/zlib".into(), None));
    }

    #[test]
    fn atoms_versions_and_options() {
        let mut p = PkgSpec {
            base: Some(s("www-servers/nginx-1.22.1")),
            ..PkgSpec::default()
        };
        assert!(codes(&p).is_empty());
        p.base = Some(s("www-servers/ngnix-1.22.1"));
        assert_eq!(codes(&p), ["buildit::yaml::unknown-atom"]);
        p.base = Some(s("www-servers/nginx-1.99"));
        assert_eq!(codes(&p), ["buildit::yaml::unknown-version"]);
        p.source_url = Some(s("https://example.invalid/nginx-1.99.tar.gz"));
        assert!(codes(&p).is_empty(), "own source allows any version");
        p.source_url = None;
        p.base = Some(s("www-servers/nginx"));
        p.use_with = vec![s("htp2")];
        assert_eq!(codes(&p), ["buildit::yaml::unknown-option"]);
        p.use_with = vec![s("http2")];
        p.use_without = vec![s("ssl")];
        assert_eq!(codes(&p), ["buildit::yaml::option-requires"]);
        p.use_without = vec![s("http2")];
        assert_eq!(codes(&p), ["buildit::yaml::option-twice"]);
        p.use_without = vec![];
        p.use_with = vec![s("a"), s("b")];
        assert_eq!(codes(&p), ["buildit::yaml::option-conflict"]);
        p.use_with = vec![];
        p.runtime_depends = vec![s("debian:libc6"), s("sys-libs/zlb")];
        assert_eq!(codes(&p), ["buildit::yaml::unknown-atom"]);
        p.runtime_depends = vec![s("debian:libc7"), s("debian:libc6=2.35")];
        assert_eq!(
            codes(&p),
            [
                "buildit::yaml::unknown-debian-package",
                "buildit::yaml::debian-version"
            ]
        );
        p.runtime_depends = vec![s("debian:libc6=2.36-9")];
        assert!(codes(&p).is_empty());
    }
}
