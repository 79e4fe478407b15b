//! What `buildit run ATOM` runs: the atom (`app-misc/hello`, `hello`, `app-misc/hello-2.10`,
//! `hello-2.10`; no version means the newest, by `builtins.compareVersions`) resolved against a
//! package set's atoms ([`resolve_atom`], a pure function), then the package, its Debian
//! runtime tree (every Debian package among its `runtimeDeps`, through the buildit packages
//! among them) and its main program ([`main_program`]). Building them and the sandbox are the
//! caller's (`build` and `buildit_builder::run`).

use buildit_lang::text::quote;
use buildit_store::{Store, StorePath};

use crate::error::{DriverError, Result};
use crate::session::Session;

/// An atom of the set with its versions, newest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct AtomVersions {
    pub atom: String,
    pub versions: Vec<String>,
}

/// Why an atom does not name a package of the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown package atom '{atom}'")]
    Unknown {
        atom: String,
        suggestion: Option<String>,
    },
    #[error("'{name}' is ambiguous: {}", candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("{atom} has no version {version} (the set has {})", available.join(", "))]
    NoVersion {
        atom: String,
        version: String,
        available: Vec<String>,
    },
}

impl From<ResolveError> for DriverError {
    fn from(e: ResolveError) -> DriverError {
        let help = match &e {
            ResolveError::Unknown {
                suggestion: Some(s),
                ..
            } => format!("did you mean '{s}'? (`buildit search` lists the atoms)"),
            ResolveError::Unknown { .. } => "`buildit search` lists the package set's atoms".into(),
            ResolveError::Ambiguous { candidates, .. } => format!(
                "name the category: buildit run {}",
                candidates
                    .first()
                    .map(String::as_str)
                    .unwrap_or("CATEGORY/NAME")
            ),
            ResolveError::NoVersion {
                atom, available, ..
            } => match available.first() {
                Some(v) => {
                    format!("run the newest with `buildit run {atom}`, or name one: {atom}-{v}")
                }
                None => "this atom has no versions".into(),
            },
        };
        let code = match &e {
            ResolveError::Unknown { .. } => "buildit::run::unknown-atom",
            ResolveError::Ambiguous { .. } => "buildit::run::ambiguous-atom",
            ResolveError::NoVersion { .. } => "buildit::run::no-version",
        };
        DriverError::request(code, e.to_string(), help)
    }
}

impl From<buildit_builder::run::RunError> for DriverError {
    fn from(e: buildit_builder::run::RunError) -> DriverError {
        use buildit_builder::run::RunError;
        let (code, help) = match &e {
            RunError::BwrapMissing => (
                "buildit::run::no-bwrap",
                "programs run in bubblewrap: apt-get install bubblewrap",
            ),
            RunError::NoUserNamespaces(_) => (
                "buildit::run::no-user-namespaces",
                "the administrator allows unprivileged user namespaces (above), or buildit runs as root (docs/store.md: who owns a store)",
            ),
            RunError::BadCwd(_) => (
                "buildit::run::bad-cwd",
                "run from a directory other than / or the store",
            ),
            RunError::Io { .. } => ("buildit::run::io", "check TMPDIR and that bwrap can run"),
        };
        DriverError::request(code, e.to_string(), help)
    }
}

/// Split `name-version` the way `builtins.parseDrvName` does: the version starts after the
/// first `-` that is followed by a character that is not a letter.
pub fn split_name_version(s: &str) -> (&str, Option<&str>) {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()) {
            return (&s[..i], Some(&s[i + 1..]));
        }
    }
    (s, None)
}

fn short_name(atom: &str) -> &str {
    atom.rsplit_once('/').map(|(_, n)| n).unwrap_or(atom)
}

/// Resolve `text` (`cat/name`, `name`, with an optional `-VERSION`) against the set's atoms:
/// the atom and the version to use (the newest when none is given).
pub fn resolve_atom(
    text: &str,
    set: &[AtomVersions],
) -> std::result::Result<(String, String), ResolveError> {
    let find = |cat: Option<&str>, name: &str| -> Vec<&AtomVersions> {
        set.iter()
            .filter(|a| match cat {
                Some(c) => a.atom == format!("{c}/{name}"),
                None => short_name(&a.atom) == name,
            })
            .collect()
    };
    let (cat, rest) = match text.split_once('/') {
        Some((c, r)) => (Some(c), r),
        None => (None, text),
    };
    // a name that itself looks like name-version (`hello-2.10`) is tried whole first
    let (hits, version) = {
        let whole = find(cat, rest);
        if !whole.is_empty() {
            (whole, None)
        } else {
            let (n, v) = split_name_version(rest);
            (find(cat, n), v)
        }
    };
    match hits.as_slice() {
        [] => {
            let names: Vec<&str> = set
                .iter()
                .flat_map(|a| [a.atom.as_str(), short_name(&a.atom)])
                .collect();
            let (n, _) = split_name_version(rest);
            let wanted = match cat {
                Some(c) => format!("{c}/{n}"),
                None => n.to_string(),
            };
            let suggestion = buildit_yaml::spec::did_you_mean(&wanted, &names).map(str::to_string);
            Err(ResolveError::Unknown {
                atom: text.to_string(),
                suggestion,
            })
        }
        [one] => match version {
            None => one
                .versions
                .first()
                .map(|v| (one.atom.clone(), v.clone()))
                .ok_or_else(|| ResolveError::NoVersion {
                    atom: one.atom.clone(),
                    version: "(any)".into(),
                    available: Vec::new(),
                }),
            Some(v) if one.versions.iter().any(|x| x == v) => Ok((one.atom.clone(), v.to_string())),
            Some(v) => Err(ResolveError::NoVersion {
                atom: one.atom.clone(),
                version: v.to_string(),
                available: one.versions.clone(),
            }),
        },
        many => Err(ResolveError::Ambiguous {
            name: rest.to_string(),
            candidates: many.iter().map(|a| a.atom.clone()).collect(),
        }),
    }
}

/// The package set expression: the embedded one, or `import FILE`.
fn set_expr(file: Option<&str>) -> String {
    match file {
        None => "(import <buildit>).pkgs".to_string(),
        Some(f) => format!("import {}", quote(&crate::eval::absolute(f))),
    }
}

/// The set's atoms with their versions, newest first.
fn list_expr(set: &str) -> String {
    format!(
        r#"
let
  atoms = ({set}).atoms;
  newestFirst = vs: builtins.sort (a: b: builtins.compareVersions a b > 0) vs;
in map (a: {{ atom = a; versions = newestFirst (builtins.attrNames atoms.${{a}}); }}) (builtins.attrNames atoms)
"#
    )
}

/// The package, its main program and the Debian runtime tree of its closure.
fn package_expr(set: &str, atom: &str, version: &str) -> String {
    format!(
        r#"
let
  b = import <buildit>;
  p = ({set}).atoms.{atom}.{version};
  # the Debian packages the package needs at run time, through the buildit packages it needs
  debianOf = d:
    if d.isDebian or false then [ d.debianName ]
    else builtins.concatMap debianOf (d.runtimeDeps or [ ]);
  names = builtins.attrNames (builtins.listToAttrs (map (n: {{ name = n; value = true; }}) (debianOf p)));
in {{
  drv = p.drvPath;
  out = p.outPath;
  name = p.pname or p.name;
  main = (p.meta or {{ }}).mainProgram or "";
  runtimeDrv = if names == [ ] then "" else (b.debian.runtime names).drvPath;
}}
"#,
        atom = quote(atom),
        version = quote(version),
    )
}

#[derive(serde::Deserialize)]
struct PackageFacts {
    drv: String,
    out: String,
    name: String,
    main: String,
    #[serde(rename = "runtimeDrv")]
    runtime_drv: String,
}

/// A package to run, resolved and instantiated, not yet built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTarget {
    pub atom: String,
    pub version: String,
    pub drv: StorePath,
    pub out: StorePath,
    /// `pname` (else `name`): where the main program is looked for.
    pub name: String,
    /// `meta.mainProgram`, if declared.
    pub main: Option<String>,
    /// The derivation of the Debian runtime tree, when the package needs Debian packages.
    pub runtime_drv: Option<StorePath>,
}

/// Resolve `atom` in the set (`set_file`, else the embedded one) and instantiate it.
pub fn target(session: &Session, set_file: Option<&str>, atom: &str) -> Result<RunTarget> {
    let mut ev = session.evaluator();
    let set = set_expr(set_file);
    let atoms: Vec<AtomVersions> =
        crate::eval::query(&mut ev, &list_expr(&set), "buildit::run::json")?;
    let (atom, version) = resolve_atom(atom, &atoms)?;
    let facts: PackageFacts = crate::eval::query(
        &mut ev,
        &package_expr(&set, &atom, &version),
        "buildit::run::json",
    )?;
    let parse = |s: &str| {
        StorePath::parse(s).map_err(|e| {
            DriverError::request(
                "buildit::run::bad-path",
                format!("{s}: {e}"),
                "this is a bug in buildit",
            )
        })
    };
    Ok(RunTarget {
        drv: parse(&facts.drv)?,
        out: parse(&facts.out)?,
        runtime_drv: if facts.runtime_drv.is_empty() {
            None
        } else {
            Some(parse(&facts.runtime_drv)?)
        },
        main: Some(facts.main).filter(|m| !m.is_empty()),
        name: facts.name,
        atom,
        version,
    })
}

/// What to run: the program's path inside the sandbox — `meta.mainProgram` if declared, else
/// `bin/NAME` or `sbin/NAME` of the built output.
pub fn main_program(store: &Store, t: &RunTarget) -> Result<String> {
    let out = &t.out;
    let name = &t.name;
    let phys = store.layout().physical(out);
    // `meta.mainProgram` and `pname` come from the recipe: only plain relative paths inside
    // the output are looked up, never followed out of it (no `..`, no absolute path).
    let exists = |rel: &str| {
        let plain = std::path::Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        plain && std::fs::symlink_metadata(phys.join(rel)).is_ok()
    };
    if let Some(declared) = &t.main {
        if declared.starts_with('/') {
            return Ok(declared.clone());
        }
        if exists(declared) {
            return Ok(format!("{out}/{declared}"));
        }
        return Err(DriverError::request(
            "buildit::run::no-main-program",
            format!("the main program {declared} (meta.mainProgram) is not in {out}"),
            "fix meta.mainProgram in the recipe, or pick a file with --program PATH",
        ));
    }
    for dir in ["bin", "sbin"] {
        let rel = format!("{dir}/{name}");
        if exists(&rel) {
            return Ok(format!("{out}/{rel}"));
        }
    }
    let mut found = Vec::new();
    for dir in ["bin", "sbin"] {
        if let Ok(rd) = std::fs::read_dir(phys.join(dir)) {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
                .collect();
            names.sort();
            found.extend(names);
        }
    }
    let help = if found.is_empty() {
        format!("{out} has no bin/ or sbin/ programs; set meta.mainProgram in the recipe")
    } else {
        format!(
            "choose one with --program PATH ({}), or set meta.mainProgram in the recipe",
            found.join(", ")
        )
    };
    Err(DriverError::request(
        "buildit::run::no-main-program",
        format!("{out} has no main program: neither bin/{name} nor sbin/{name}, and meta.mainProgram is not set"),
        help,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Vec<AtomVersions> {
        let a = |atom: &str, vs: &[&str]| AtomVersions {
            atom: atom.into(),
            versions: vs.iter().map(|s| s.to_string()).collect(),
        };
        vec![
            a("app-misc/hello", &["2.12", "2.10"]),
            a("sys-libs/zlib", &["1.2.13"]),
            a("www-servers/nginx", &["1.22.1"]),
            a("dev-libs/foo", &["1"]),
            a("sys-apps/foo", &["2"]),
        ]
    }

    #[test]
    fn forms_of_an_atom() {
        let s = set();
        let ok = |t: &str| resolve_atom(t, &s).expect("resolves");
        assert_eq!(ok("hello"), ("app-misc/hello".into(), "2.12".into()));
        assert_eq!(
            ok("app-misc/hello"),
            ("app-misc/hello".into(), "2.12".into())
        );
        assert_eq!(
            ok("app-misc/hello-2.10"),
            ("app-misc/hello".into(), "2.10".into())
        );
        assert_eq!(ok("hello-2.10"), ("app-misc/hello".into(), "2.10".into()));
        assert_eq!(ok("dev-libs/foo"), ("dev-libs/foo".into(), "1".into()));
    }

    #[test]
    fn errors() {
        let s = set();
        match resolve_atom("helo", &s) {
            Err(ResolveError::Unknown { suggestion, .. }) => {
                assert_eq!(suggestion.as_deref(), Some("hello"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve_atom("nothing-like-it-at-all", &s),
            Err(ResolveError::Unknown {
                suggestion: None,
                ..
            })
        ));
        assert!(matches!(
            resolve_atom("foo", &s),
            Err(ResolveError::Ambiguous { candidates, .. }) if candidates.len() == 2
        ));
        assert!(matches!(
            resolve_atom("hello-9", &s),
            Err(ResolveError::NoVersion { version, .. }) if version == "9"
        ));
        assert!(matches!(
            resolve_atom("sys-libs/hello", &s),
            Err(ResolveError::Unknown { .. })
        ));
    }

    /// A recipe's `meta.mainProgram` or name cannot make the lookup leave the output.
    #[test]
    fn main_program_stays_in_the_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(buildit_store::StoreLayout::at(dir.path().join("root"))).expect("store");
        let out = StorePath::from_fingerprint("out", "p").expect("path");
        let phys = store.layout().physical(&out);
        std::fs::create_dir_all(phys.join("bin")).expect("mkdir");
        std::fs::write(phys.join("bin/p"), "").expect("write");
        let t = |name: &str, main: Option<&str>| RunTarget {
            atom: "a/p".into(),
            version: "1".into(),
            drv: out.clone(),
            out: out.clone(),
            name: name.into(),
            main: main.map(str::to_string),
            runtime_drv: None,
        };
        assert_eq!(
            main_program(&store, &t("p", None)).expect("bin/p"),
            format!("{out}/bin/p")
        );
        for (name, main) in [
            ("p", Some("../../../../../../etc/passwd")),
            ("p", Some("bin/../../../etc")),
            ("../../../../../../../etc/passwd", None),
        ] {
            assert!(
                main_program(&store, &t(name, main)).is_err(),
                "{name} {main:?}"
            );
        }
    }

    #[test]
    fn drv_name_split() {
        assert_eq!(split_name_version("hello-2.10"), ("hello", Some("2.10")));
        assert_eq!(split_name_version("pcre2-10.42"), ("pcre2", Some("10.42")));
        assert_eq!(split_name_version("gzip-static"), ("gzip-static", None));
        assert_eq!(split_name_version("nginx"), ("nginx", None));
    }
}
