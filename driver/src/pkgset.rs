//! The package set as typed data: one query ([`package_set`]) evaluates the set's atoms, their
//! versions (newest first), build options and the Debian versions the lock pins. `buildit
//! search` lists it, the YAML check compares specs against it ([`set_info`]), `buildit image`
//! checks atoms against it; [`image_program`] is the program that packs one package as an
//! image.

use std::collections::BTreeMap;

use buildit_lang::text::quote;
use buildit_yaml::check::{OptionInfo, SetInfo};

use crate::error::Result;
use crate::session::Session;

/// The query: per atom its versions (newest first), the newest version's description, and
/// per version its options; the Debian packages of the lock with their versions.
const PACKAGE_SET: &str = r#"
let
  buildit = import <buildit>;
  atoms = buildit.pkgs.atoms;
  newestFirst = vs: builtins.sort (x: y: builtins.compareVersions x y > 0) (builtins.attrNames vs);
  opt = o: {
    default = o.default or false;
    requires = o.requires or [ ];
    conflicts = o.conflicts or [ ];
    description = o.description or "";
  };
in {
  atoms = builtins.mapAttrs (a: vs: let versions = newestFirst vs; in {
    inherit versions;
    description = ((vs.${builtins.head versions}).meta or { }).description or "";
    options = builtins.mapAttrs (v: p: builtins.mapAttrs (n: o: opt o) (p.options or { })) vs;
  }) atoms;
  debian = builtins.listToAttrs (map (p: { name = p.name; value = p.version; }) (buildit.debian.lock.package or [ ]));
}
"#;

/// A build option as the set declares it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct BuildOption {
    pub default: bool,
    pub requires: Vec<String>,
    pub conflicts: Vec<String>,
    pub description: String,
}

/// One atom (`category/name`) of the set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Atom {
    /// Newest first.
    pub versions: Vec<String>,
    /// The newest version's `meta.description`.
    pub description: String,
    /// Version → option name → declaration.
    pub options: BTreeMap<String, BTreeMap<String, BuildOption>>,
}

impl Atom {
    /// The newest version's options.
    pub fn newest_options(&self) -> Option<&BTreeMap<String, BuildOption>> {
        self.versions.first().and_then(|v| self.options.get(v))
    }
}

/// The package set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct PackageSet {
    /// `category/name` → atom.
    pub atoms: BTreeMap<String, Atom>,
    /// Debian package name → the version the lock pins.
    pub debian: BTreeMap<String, String>,
}

/// Evaluate the session's package set (`(import <buildit>).pkgs`), building nothing.
pub fn package_set(session: &Session) -> Result<PackageSet> {
    let mut ev = session.evaluator();
    crate::eval::query(&mut ev, PACKAGE_SET, "buildit::pkgset::query")
}

impl PackageSet {
    /// The facts the YAML check compares specs against.
    pub fn set_info(&self) -> SetInfo {
        let atoms = self
            .atoms
            .iter()
            .map(|(name, a)| {
                let versions = a
                    .options
                    .iter()
                    .map(|(v, opts)| {
                        let opts = opts
                            .iter()
                            .map(|(n, o)| {
                                let info = OptionInfo {
                                    default: o.default,
                                    requires: o.requires.clone(),
                                    conflicts: o.conflicts.clone(),
                                };
                                (n.clone(), info)
                            })
                            .collect();
                        (v.clone(), opts)
                    })
                    .collect();
                (name.clone(), versions)
            })
            .collect();
        SetInfo {
            atoms,
            debian: self.debian.clone(),
        }
    }
}

/// The YAML check's facts about the session's package set.
pub fn set_info(session: &Session) -> Result<SetInfo> {
    Ok(package_set(session)?.set_info())
}

/// The image program around a package expression: the package's runtime closure, its main
/// program (`meta.mainProgram`, else `bin/<pname>`) as the entrypoint, named after the package
/// and tagged with its version.
pub fn image_program(package_expr: &str, format: &str) -> String {
    format!(
        r#"# `buildit image`: one package as its own image
let
  buildit = import <buildit>;
  package = {package_expr};
  main = (package.meta or {{ }}).mainProgram or "bin/${{package.pname}}";
in
buildit.image {{
  name = builtins.replaceStrings [ "_" "+" ] [ "-" "-" ] package.pname;
  tag = builtins.replaceStrings [ "+" "~" ":" ] [ "_" "_" "_" ] package.version;
  packages = [ package ];
  type = {format};
  config = {{
    entrypoint = [ "/${{main}}" ];
    labels = {{ "org.opencontainers.image.title" = package.pname; "org.opencontainers.image.version" = package.version; }};
  }};
}}
"#,
        format = quote(format)
    )
}

/// The package expression of an atom of the set (`buildit.pkgs.byAtom "…"`).
pub fn atom_expr(atom: &str) -> String {
    format!("buildit.pkgs.byAtom {}", quote(atom))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query's JSON decodes into the typed set, and the YAML check's facts keep every
    /// version's options.
    #[test]
    fn the_query_value_decodes_and_gives_the_check_facts() {
        let json = r#"{
            "atoms": { "www-servers/nginx": {
                "versions": ["1.24.0", "1.22.1"],
                "description": "a web server",
                "options": {
                    "1.22.1": { "ssl": { "default": true, "requires": [], "conflicts": [], "description": "TLS" } },
                    "1.24.0": { "http2": { "default": false, "requires": ["ssl"], "conflicts": [], "description": "" } }
                }
            } },
            "debian": { "libc6": "2.36-9" }
        }"#;
        let set: PackageSet = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        let nginx = &set.atoms["www-servers/nginx"];
        assert_eq!(nginx.versions, ["1.24.0", "1.22.1"]);
        let newest = nginx
            .newest_options()
            .map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(newest, Some(vec!["http2".to_string()]));
        let info = set.set_info();
        assert!(info.atoms["www-servers/nginx"]["1.22.1"]["ssl"].default);
        assert_eq!(
            info.atoms["www-servers/nginx"]["1.24.0"]["http2"].requires,
            ["ssl"]
        );
        assert_eq!(info.debian["libc6"], "2.36-9");
    }

    /// Atoms and formats are quoted into the generated programs, never spliced raw.
    #[test]
    fn generated_programs_quote_their_inputs() {
        assert_eq!(atom_expr("a\"b"), "buildit.pkgs.byAtom \"a\\\"b\"");
        let p = image_program("x", "oci\"; evil = 1; \"");
        assert!(p.contains("type = \"oci\\\"; evil = 1; \\\"\";"), "{p}");
    }
}
