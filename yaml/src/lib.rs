//! `buildit-yaml`, the YAML front end: `pkg.yaml` and `container.yaml` are parsed with spans
//! ([`tree`]) and lowered to `.bld` source, which is then type-checked and evaluated like any
//! other program. Nothing is hidden: `buildit compile DIR` prints the generated text. The
//! configuration files (`.buildit-config.yaml`) are read with the same spans into typed
//! values ([`config`]).

pub mod check;
pub mod config;
pub mod lower;
pub mod paths;
pub mod spec;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use buildit_lang::{Diagnostic, SourceMap, Span};

/// A container spec directory compiled to `.bld`.
pub struct Compiled {
    /// The generated program.
    pub text: String,
    /// The YAML files read (for rendering diagnostics).
    pub sources: SourceMap,
    /// URL patches without a recorded hash (url, where it was written).
    pub missing_hashes: Vec<(String, Span)>,
    /// The spec directory (the program's base directory).
    pub dir: PathBuf,
    /// The parsed container spec.
    pub spec: spec::ContainerSpec,
    /// The parsed pkg.yaml of every embedded package, by the path the spec wrote.
    pub embedded: BTreeMap<String, spec::PkgSpec>,
    /// Where each part of `text` came from in the YAML.
    pub spans: lower::SpanMap,
    /// Whether `text` is one pkg.yaml's expression (its free name `buildit` is the standard
    /// library) rather than a container spec's whole program.
    pub package_only: bool,
    /// The plain scalars read as text that YAML types otherwise (`version: 2`), with their
    /// `.bld` literals (see [`Compiled::typed_program`]).
    pub plain: lower::Typed,
}

/// What a lone pkg.yaml's expression is checked inside: `buildit` bound to the standard
/// library, as the programs that use it bind it.
const PACKAGE_PRELUDE: &str = "let buildit = import <buildit>; in\n";

impl Compiled {
    /// The `vars:` of the spec.
    pub fn vars(&self) -> BTreeMap<String, String> {
        self.spec
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    /// Check the spec against the package set (see [`check`]).
    pub fn check(&self, set: &check::SetInfo) -> Vec<Diagnostic> {
        capped(check::check(&self.spec, &self.embedded, &self.vars(), set))
    }

    /// The whole program the type checker reads: the generated text, or a lone pkg.yaml's
    /// expression with `buildit` bound to the standard library.
    pub fn program(&self) -> String {
        if self.package_only {
            format!("{PACKAGE_PRELUDE}{}", self.text)
        } else {
            self.text.clone()
        }
    }

    /// The program with every plain scalar that YAML types as a number or Boolean written as
    /// one (`version: 2` as `version = 2;`), and its span map: what `buildit check --strict DIR`
    /// checks, so such a value where the library expects text is a type error at its line.
    /// The program that is built takes them as text ([`Compiled::text`]).
    pub fn typed_program(&self) -> Compiled {
        let (text, spans) = if self.package_only {
            let pkg = self.embedded.get(".");
            let mut missing = Vec::new();
            match pkg {
                Some(p) => {
                    lower::lower_pkg_mapped(p, "", &BTreeMap::new(), &mut missing, &self.plain)
                }
                None => (self.text.clone(), self.spans.clone()),
            }
        } else {
            match lower::lower_container_typed(
                &self.spec,
                "container.yaml",
                &self.embedded,
                &BTreeMap::new(),
                &self.plain,
            ) {
                Ok(l) => (l.text, l.spans),
                Err(_) => (self.text.clone(), self.spans.clone()),
            }
        };
        let mut sources = SourceMap::new();
        for f in (0u32..).map(buildit_lang::FileId) {
            let Some(sf) = self.sources.get(f) else { break };
            sources.add(sf.name.clone(), sf.text.clone());
        }
        Compiled {
            text,
            sources,
            missing_hashes: Vec::new(),
            dir: self.dir.clone(),
            spec: self.spec.clone(),
            embedded: self.embedded.clone(),
            spans,
            package_only: self.package_only,
            plain: self.plain.clone(),
        }
    }

    /// Diagnostics of [`Compiled::program`] (file `generated` of `from`) moved to the YAML
    /// they came from: each label in the generated text is put at the smallest YAML node that
    /// produced its part of the text ([`lower::SpanMap`]), or at the whole document when none
    /// did; labels in other files (the standard library's) stay where they are, those files
    /// copied into the returned map. Labels that land on one YAML span twice are kept once.
    pub fn remap(
        &self,
        from: &SourceMap,
        generated: buildit_lang::FileId,
        diags: Vec<Diagnostic>,
    ) -> (SourceMap, Vec<Diagnostic>) {
        let mut sources = SourceMap::new();
        for f in (0u32..).map(buildit_lang::FileId) {
            let Some(sf) = self.sources.get(f) else { break };
            sources.add(sf.name.clone(), sf.text.clone());
        }
        let offset = if self.package_only {
            PACKAGE_PRELUDE.len()
        } else {
            0
        };
        let document = self.spec.span;
        let mut copied: BTreeMap<u32, buildit_lang::FileId> = BTreeMap::new();
        let mut out = Vec::with_capacity(diags.len());
        for mut d in diags {
            let mut labels: Vec<buildit_lang::Label> = Vec::with_capacity(d.labels.len());
            for mut l in std::mem::take(&mut d.labels) {
                if l.span.file == generated {
                    let start = (l.span.start as usize).saturating_sub(offset);
                    let end = (l.span.end as usize).saturating_sub(offset);
                    // a typed plain scalar inside the label's range, of the type the message
                    // says was found (the checker may label a whole record argument)
                    let scalar = self.spans.inside(start, end).into_iter().find(|y| {
                        self.plain.get(y).is_some_and(|lit| {
                            d.message
                                .contains(&format!("found `{}`", literal_type(lit)))
                        })
                    });
                    if let Some(lit) = scalar.and_then(|y| self.plain.get(&y)) {
                        l.message = format!("YAML reads this as `{}`, not text", literal_type(lit));
                    }
                    match scalar.or_else(|| self.spans.find(start, end)).or(document) {
                        Some(y) => l.span = y,
                        None => continue,
                    }
                } else {
                    let id = match copied.get(&l.span.file.0) {
                        Some(id) => *id,
                        None => {
                            let Some(sf) = from.get(l.span.file) else {
                                continue;
                            };
                            let id = sources.add(sf.name.clone(), sf.text.clone());
                            copied.insert(l.span.file.0, id);
                            id
                        }
                    };
                    l.span.file = id;
                }
                if !labels.iter().any(|o| o.span == l.span) {
                    labels.push(l);
                }
            }
            // a plain scalar YAML types as a number or Boolean, where text was expected
            let literal = labels
                .first()
                .and_then(|l| self.plain.get(&l.span).map(|lit| (l.span, lit)));
            if let Some((span, lit)) = literal {
                let written = sources.get(span.file).and_then(|f| {
                    f.text
                        .get(span.start as usize..span.end as usize)
                        .map(str::to_string)
                });
                if let Some(w) = written {
                    d.help = Some(format!(
                        "YAML reads the plain `{w}` as {}; quote it (`\"{w}\"`) to write text",
                        if literal_type(lit) == "Bool" {
                            "a Boolean"
                        } else {
                            "a number"
                        }
                    ));
                }
            }
            d.labels = labels;
            out.push(d);
        }
        (sources, out)
    }

    /// The span of the URL patch `url` (for fetch errors).
    pub fn patch_span(&self, url: &str) -> Option<Span> {
        self.embedded
            .values()
            .flat_map(|p| &p.patches)
            .find(|p| p.is_url && p.source.value == url)
            .map(|p| p.source.span)
    }
}

/// The type name of a `.bld` literal of [`lower::Typed`] (`2`, `1.5`, `true`).
fn literal_type(lit: &str) -> &'static str {
    if lit == "true" || lit == "false" {
        "Bool"
    } else if lit.contains('.') {
        "Float"
    } else {
        "Int"
    }
}

/// The most diagnostics reported for one spec; the rest are counted in a last one (a spec with
/// a hundred thousand errors would otherwise cost minutes and gigabytes to render).
pub const MAX_DIAGNOSTICS: usize = 50;

/// The first [`MAX_DIAGNOSTICS`] of `diags`, and a note counting the others.
pub fn capped(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    if diags.len() > MAX_DIAGNOSTICS {
        let more = diags.len() - MAX_DIAGNOSTICS;
        diags.truncate(MAX_DIAGNOSTICS);
        diags.push(
            Diagnostic::error(
                "buildit::yaml::more-errors",
                format!("{more} more errors in this spec are not shown"),
            )
            .with_help("fix the errors above and run again"),
        );
    }
    diags
}

/// Everything that went wrong, with the YAML sources to render it against.
pub struct Failed {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
}

fn read_yaml(
    sources: &mut SourceMap,
    path: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<(buildit_lang::FileId, tree::Node)> {
    // a file larger than the parser accepts is refused before it is read
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > tree::MAX_DOCUMENT_BYTES as u64 {
        diags.push(
            Diagnostic::error(
                "buildit::yaml::too-large",
                format!(
                    "{} has {size} bytes; spec files may have at most {} MiB",
                    path.display(),
                    tree::MAX_DOCUMENT_BYTES >> 20
                ),
            )
            .with_help("a spec is a few KiB of YAML; keep large data in files that `sync:` copies"),
        );
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::error("buildit::yaml::missing-file", format!("cannot read {}: {e}", path.display()))
                    .with_help("a container spec directory holds container.yaml (and pkg.yaml files for embedded packages)"),
            );
            return None;
        }
    };
    let file = sources.add(path.display().to_string(), text.as_str());
    match tree::parse(&text) {
        Ok(Some(n)) => Some((file, n)),
        Ok(None) => {
            diags.push(
                Diagnostic::error(
                    "buildit::yaml::empty",
                    format!("{} is empty", path.display()),
                )
                .with_label(Span::new(file, 0, 0), "nothing here")
                .with_help("see docs/yaml.md for the format"),
            );
            None
        }
        Err(e) => {
            diags.push(syntax_diagnostic(&e, file, &text));
            None
        }
    }
}

/// The diagnostic of a refused YAML document: each [`tree::ErrorKind`] has its own code.
pub fn syntax_diagnostic(
    e: &tree::SyntaxError,
    file: buildit_lang::FileId,
    text: &str,
) -> Diagnostic {
    let (code, message, label, help) = match e.kind {
        tree::ErrorKind::Syntax => (
            "buildit::yaml::syntax",
            format!("YAML syntax error: {}", e.message),
            "here",
            "check the indentation and the `key: value` structure around this point".to_string(),
        ),
        tree::ErrorKind::TooLarge => (
            "buildit::yaml::too-large",
            e.message.clone(),
            "this file",
            "a spec is a few KiB of YAML; keep large data in files that `sync:` copies".to_string(),
        ),
        tree::ErrorKind::TooDeep => (
            "buildit::yaml::too-deep",
            e.message.clone(),
            "this level is too deep",
            "specs need a few levels of nesting; flatten this structure".to_string(),
        ),
        tree::ErrorKind::AliasBudget => (
            "buildit::yaml::alias-budget",
            e.message.clone(),
            "this copy goes over the budget",
            format!(
                "every alias (`*name`) copies its anchor's nodes; a file may copy at most {} times its own size (at least {} MiB)",
                tree::ALIAS_BUDGET_RATIO,
                tree::MIN_ALIAS_BUDGET >> 20
            ),
        ),
    };
    let end = if e.offset < text.len() {
        // one character, not one byte: the label stays on a character boundary
        text[e.offset..]
            .chars()
            .next()
            .map(|c| e.offset + c.len_utf8())
            .unwrap_or(e.offset)
    } else {
        text.len()
    };
    Diagnostic::error(code, message)
        .with_label(Span::new(file, e.offset.min(text.len()), end), label)
        .with_help(help)
}

/// Read `buildit.lock` (URL → sha256 of URL patches), if present.
pub fn read_lock(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("buildit.lock")) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((hash, url)) = line.split_once(char::is_whitespace) {
                m.insert(url.trim().to_string(), hash.trim().to_string());
            }
        }
    }
    m
}

/// Write `buildit.lock`: one `sha256 url` line per URL patch, sorted.
pub fn write_lock(dir: &Path, lock: &BTreeMap<String, String>) -> std::io::Result<()> {
    let mut s = String::from("# buildit.lock: hashes of the URL patches of the specs in this directory.\n# Written by `buildit build`; commit it. Format: <sha256 hex> <url>\n");
    for (url, h) in lock {
        s.push_str(&format!("{h} {url}\n"));
    }
    std::fs::write(dir.join("buildit.lock"), s)
}

/// The host files a pkg.yaml in `pkg_dir` names (patches, `source: { path }`) exist inside
/// `pkg_dir`, and its URLs are network URLs (see [`paths`]).
fn check_pkg_paths(pkg: &spec::PkgSpec, pkg_dir: &Path, diags: &mut Vec<Diagnostic>) {
    for patch in &pkg.patches {
        let v = &patch.source;
        if patch.is_url {
            if !paths::network_url(&v.value) {
                diags.push(paths::url_diagnostic("patch", &v.value, v.span));
            }
            continue;
        }
        match paths::confine(pkg_dir, &v.value) {
            Ok(p) if p.is_file() => {}
            Ok(_) => diags.push(
                Diagnostic::error(
                    "buildit::yaml::missing-file",
                    format!("patch `{}` is not a file", v.value),
                )
                .with_label(v.span, "not a file")
                .with_help(format!("patch files are relative to {}", pkg_dir.display())),
            ),
            Err(why) => diags.push(paths::diagnostic(
                "patch",
                &v.value,
                v.span,
                pkg_dir,
                "the package directory",
                &why,
            )),
        }
    }
    if let Some(u) = &pkg.source_url {
        if !paths::network_url(&u.value) {
            diags.push(paths::url_diagnostic("source URL", &u.value, u.span));
        }
    }
    if let Some(p) = &pkg.source_path {
        if let Err(why) = paths::confine(pkg_dir, &p.value) {
            diags.push(paths::diagnostic(
                "source path",
                &p.value,
                p.span,
                pkg_dir,
                "the package directory",
                &why,
            ));
        }
    }
}

/// Read and lower the container spec in `dir` (its `container.yaml` and the `pkg.yaml` of every
/// embedded package), with `lock` giving the hashes of URL patches.
pub fn compile_dir(dir: &Path, lock: &BTreeMap<String, String>) -> Result<Compiled, Failed> {
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let spec_path = dir.join("container.yaml");
    // container.yaml may not be a symlink leading out (a missing one is read_yaml's error)
    if let Err(paths::Refused::Outside(real)) = paths::confine(dir, "container.yaml") {
        diags.push(
            Diagnostic::error(
                "buildit::yaml::path-outside",
                format!(
                    "{} is a symlink out of the spec directory (to {})",
                    spec_path.display(),
                    real.display()
                ),
            )
            .with_help("container.yaml must be a file inside its spec directory"),
        );
        return Err(Failed {
            sources,
            diagnostics: capped(diags),
        });
    }
    let Some((file, root)) = read_yaml(&mut sources, &spec_path, &mut diags) else {
        return Err(Failed {
            sources,
            diagnostics: capped(diags),
        });
    };
    let mut r = spec::Reader::new(file);
    let spec = spec::read_container(&mut r, &root);
    diags.extend(r.diags);
    let mut plain: lower::Typed = r.plain.into_iter().collect();
    let mut embedded = BTreeMap::new();
    for p in &spec.packages {
        if let spec::PackageRef::Embedded(path) = p {
            let pkg_dir = match paths::confine(dir, &path.value) {
                Ok(d) => d,
                Err(paths::Refused::Missing(_)) => dir.join(path.value.trim_start_matches("./")),
                Err(why) => {
                    diags.push(paths::diagnostic(
                        "package path",
                        &path.value,
                        path.span,
                        dir,
                        "the spec directory",
                        &why,
                    ));
                    continue;
                }
            };
            let pkg_file = pkg_dir.join("pkg.yaml");
            match paths::confine(&pkg_dir, "pkg.yaml") {
                Ok(f) if f.is_file() => {}
                Err(why @ paths::Refused::Outside(_)) => {
                    diags.push(paths::diagnostic(
                        "package file",
                        "pkg.yaml",
                        path.span,
                        &pkg_dir,
                        "the package directory",
                        &why,
                    ));
                    continue;
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "buildit::yaml::missing-file",
                            format!("no pkg.yaml in `{}`", path.value),
                        )
                        .with_label(path.span, "this directory")
                        .with_help(format!("create {} (see docs/yaml.md)", pkg_file.display())),
                    );
                    continue;
                }
            }
            if let Some((pf, proot)) = read_yaml(&mut sources, &pkg_file, &mut diags) {
                let mut pr = spec::Reader::new(pf);
                let pkg = spec::read_pkg(&mut pr, &proot);
                diags.extend(pr.diags);
                plain.extend(pr.plain);
                check_pkg_paths(&pkg, &pkg_dir, &mut diags);
                embedded.insert(path.value.clone(), pkg);
            }
        }
    }
    for s in &spec.syncs {
        match paths::confine(dir, &s.src.value) {
            Err(why) => diags.push(paths::diagnostic(
                "sync source",
                &s.src.value,
                s.src.span,
                dir,
                "the spec directory",
                &why,
            )),
            Ok(src) if src.is_dir() && !s.recursive => {
                diags.push(
                    Diagnostic::error(
                        "buildit::yaml::sync-directory",
                        format!("`{}` is a directory", s.src.value),
                    )
                    .with_label(s.src.span, "a directory")
                    .with_help("add `recursive: true` to copy a directory"),
                );
            }
            Ok(_) => {}
        }
    }
    if !diags.is_empty() {
        return Err(Failed {
            sources,
            diagnostics: capped(diags),
        });
    }
    match lower::lower_container(&spec, "container.yaml", &embedded, lock) {
        Ok(l) => Ok(Compiled {
            text: l.text,
            sources,
            missing_hashes: l.missing_hashes,
            dir: dir.to_path_buf(),
            spec,
            embedded,
            spans: l.spans,
            package_only: false,
            plain,
        }),
        Err(d) => Err(Failed {
            sources,
            diagnostics: capped(d),
        }),
    }
}

/// Read and lower the `pkg.yaml` in `dir` alone (for `buildit image PKGDIR`): the [`Compiled`]
/// holds the package's `.bld` expression (paths relative to `dir`), and a spec with that one
/// embedded package (`.`), so that [`Compiled::check`] and URL patch handling work as for a
/// container spec.
pub fn compile_pkg_dir(dir: &Path, lock: &BTreeMap<String, String>) -> Result<Compiled, Failed> {
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let pkg_file = dir.join("pkg.yaml");
    // pkg.yaml may not be a symlink leading out (a missing one is read_yaml's error)
    if let Err(paths::Refused::Outside(real)) = paths::confine(dir, "pkg.yaml") {
        diags.push(
            Diagnostic::error(
                "buildit::yaml::path-outside",
                format!(
                    "{} is a symlink out of the package directory (to {})",
                    pkg_file.display(),
                    real.display()
                ),
            )
            .with_help("pkg.yaml must be a file inside its package directory"),
        );
        return Err(Failed {
            sources,
            diagnostics: capped(diags),
        });
    }
    let Some((pf, proot)) = read_yaml(&mut sources, &pkg_file, &mut diags) else {
        return Err(Failed {
            sources,
            diagnostics: capped(diags),
        });
    };
    let mut pr = spec::Reader::new(pf);
    let pkg = spec::read_pkg(&mut pr, &proot);
    diags.extend(pr.diags);
    let plain: lower::Typed = pr.plain.into_iter().collect();
    check_pkg_paths(&pkg, dir, &mut diags);
    if !diags.is_empty() {
        return Err(Failed {
            sources,
            diagnostics: capped(diags),
        });
    }
    let mut missing = Vec::new();
    let (text, spans) = lower::lower_pkg_mapped(&pkg, "", lock, &mut missing, &lower::Typed::new());
    let here = spec::Spanned {
        value: ".".to_string(),
        span: pkg.span.unwrap_or(Span::new(pf, 0, 0)),
    };
    let spec = spec::ContainerSpec {
        packages: vec![spec::PackageRef::Embedded(here)],
        span: pkg.span,
        ..spec::ContainerSpec::default()
    };
    Ok(Compiled {
        text,
        sources,
        missing_hashes: missing,
        dir: dir.to_path_buf(),
        spec,
        embedded: BTreeMap::from([(".".to_string(), pkg)]),
        spans,
        package_only: true,
        plain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_files_leading_out_are_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("outside.yaml"), "- image: { type: oci }\n").expect("write");
        let spec = t.path().join("spec");
        std::fs::create_dir_all(spec.join("pkg")).expect("mkdir");
        std::os::unix::fs::symlink("../outside.yaml", spec.join("container.yaml")).expect("link");
        std::os::unix::fs::symlink("../../outside.yaml", spec.join("pkg/pkg.yaml")).expect("link");
        let lock = BTreeMap::new();
        let code = |r: Result<Compiled, Failed>| match r {
            Ok(_) => "compiled".to_string(),
            Err(f) => f.diagnostics[0].code.to_string(),
        };
        assert_eq!(
            code(compile_dir(&spec, &lock)),
            "buildit::yaml::path-outside"
        );
        assert_eq!(
            code(compile_pkg_dir(&spec.join("pkg"), &lock)),
            "buildit::yaml::path-outside"
        );
    }

    #[test]
    fn diagnostics_are_capped() {
        let many: Vec<Diagnostic> = (0..200)
            .map(|i| Diagnostic::error("buildit::yaml::x", format!("{i}")))
            .collect();
        let c = capped(many);
        assert_eq!(c.len(), MAX_DIAGNOSTICS + 1);
        assert_eq!(c[MAX_DIAGNOSTICS].code, "buildit::yaml::more-errors");
        assert!(c[MAX_DIAGNOSTICS].message.starts_with("150 more"));
    }
}
