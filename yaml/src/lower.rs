//! Lowering specs to `.bld` text. The generated program is ordinary source — `buildit compile
//! DIR` prints exactly what `buildit build DIR` evaluates — written to be read: one `let`
//! binding per package, comments naming the YAML each part came from, paths relative to the
//! spec's directory (the program is evaluated as if it were a file in that directory).
//!
//! `{{ var }}` templates are filled from `vars:` here, at lowering time; an unknown variable is an
//! error at its YAML span. URL patches need a hash: from the spec's `buildit.lock`, or they are
//! reported as missing so the caller can fetch them once and record them.

use std::collections::BTreeMap;
use std::path::Path;

use buildit_lang::{Diagnostic, Span};

use super::spec::{did_you_mean, ContainerSpec, ImageType, PackageRef, PkgSpec, Spanned};

/// A string as a `.bld` string literal.
pub use buildit_lang::text::quote;

/// A path relative to the spec directory as a `.bld` path expression: a literal `./a/b` when
/// every character allows it, else `./. + "/a b"`.
pub fn path_expr(rel: &str) -> String {
    let rel = rel.trim_start_matches("./");
    let plain = !rel.is_empty()
        && rel.split('/').all(|c| !c.is_empty() && c != "..")
        && rel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+/".contains(c));
    if plain {
        format!("./{rel}")
    } else {
        format!("(./. + {})", quote(&format!("/{rel}")))
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "[ ]".into()
    } else {
        format!("[ {} ]", items.join(" "))
    }
}

/// The most bytes that `{{ name }}` substitutions may add to one spec's values, in total (a
/// variable of a megabyte used a thousand times would otherwise make gigabytes of text).
pub const MAX_TEMPLATE_BYTES: usize = 32 << 20;

/// How many unknown-variable diagnostics get a "did you mean" and the list of variables; later
/// ones say only where variables come from (a spec with thousands of unknown names then costs
/// time linear in its size).
const DETAILED_UNKNOWN: usize = 20;

/// Fills `{{ name }}` templates from `vars`, within one budget of substituted bytes
/// ([`MAX_TEMPLATE_BYTES`]) for all the values of a spec.
pub struct Templater<'v> {
    vars: &'v BTreeMap<String, String>,
    left: usize,
    unknown: usize,
    over: bool,
}

impl<'v> Templater<'v> {
    pub fn new(vars: &'v BTreeMap<String, String>) -> Templater<'v> {
        Templater {
            vars,
            left: MAX_TEMPLATE_BYTES,
            unknown: 0,
            over: false,
        }
    }

    /// `text` with its templates filled; unknown names and an exhausted budget are diagnostics
    /// at `span`.
    pub fn fill(&mut self, text: &str, span: Span, diags: &mut Vec<Diagnostic>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(j) = after.find("}}") else {
                out.push_str(&rest[i..]);
                return out;
            };
            let name = after[..j].trim();
            match self.vars.get(name) {
                Some(v) if v.len() <= self.left => {
                    self.left -= v.len();
                    out.push_str(v);
                }
                Some(_) => {
                    if !self.over {
                        self.over = true;
                        diags.push(
                            Diagnostic::error(
                                "buildit::yaml::too-large",
                                format!(
                                    "`{{{{ {name} }}}}` makes the spec's values larger than {} MiB",
                                    MAX_TEMPLATE_BYTES >> 20
                                ),
                            )
                            .with_label(span, "substituted here")
                            .with_help("template variables are meant for names and versions; use them less, or with shorter values"),
                        );
                    }
                    return out;
                }
                None => {
                    self.unknown += 1;
                    diags.push(self.unknown_variable(name, span));
                }
            }
            rest = &after[j + 2..];
        }
        out.push_str(rest);
        out
    }

    fn unknown_variable(&self, name: &str, span: Span) -> Diagnostic {
        let help = if self.unknown > DETAILED_UNKNOWN {
            "variables come from the `vars:` step".to_string()
        } else {
            let names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
            let listed = if names.is_empty() {
                "none defined".to_string()
            } else if names.len() > DETAILED_UNKNOWN {
                format!(
                    "{}, and {} more",
                    names[..DETAILED_UNKNOWN].join(", "),
                    names.len() - DETAILED_UNKNOWN
                )
            } else {
                names.join(", ")
            };
            match did_you_mean(name, &names) {
                Some(s) => {
                    format!("did you mean `{s}`? Variables come from the `vars:` step: {listed}")
                }
                None => format!("variables come from the `vars:` step ({listed})"),
            }
        };
        Diagnostic::error(
            "buildit::yaml::unknown-variable",
            format!("unknown template variable `{name}`"),
        )
        .with_label(span, "used in this value")
        .with_help(help)
    }
}

/// Fill `{{ name }}` templates from `vars` (one value, with a budget of its own). Unknown names
/// are diagnostics at `span`.
pub fn template(
    text: &str,
    span: Span,
    vars: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> String {
    Templater::new(vars).fill(text, span, diags)
}

/// Where each part of a generated program came from: byte ranges of the `.bld` text, each with
/// the YAML span of the value or node that produced it. Ranges nest (a field inside its
/// package inside the image call); [`SpanMap::find`] picks the smallest that covers a
/// position, so a diagnostic of the generated text is reported at the most precise YAML node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanMap {
    entries: Vec<(usize, usize, Span)>,
}

impl SpanMap {
    /// Record that `start..end` of the generated text came from `yaml`.
    pub fn record(&mut self, start: usize, end: usize, yaml: Span) {
        if start <= end {
            self.entries.push((start, end, yaml));
        }
    }

    /// The entries of `other` (a map of text inserted at byte `at`) added to this map.
    pub fn extend_shifted(&mut self, other: &SpanMap, at: usize) {
        self.entries
            .extend(other.entries.iter().map(|&(s, e, y)| (s + at, e + at, y)));
    }

    /// How many ranges are recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no range is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The YAML spans of the recorded ranges inside `start..end`, in the order of the text.
    pub fn inside(&self, start: usize, end: usize) -> Vec<Span> {
        let mut v: Vec<&(usize, usize, Span)> = self
            .entries
            .iter()
            .filter(|(s, e, _)| start <= *s && *e <= end)
            .collect();
        v.sort_by_key(|(s, _, _)| *s);
        v.into_iter().map(|(_, _, y)| *y).collect()
    }

    /// The YAML span of the generated range `start..end`: the smallest recorded range that
    /// contains it, else the smallest one that contains its start; `None` when no recorded
    /// range does (the caller falls back to the whole document).
    pub fn find(&self, start: usize, end: usize) -> Option<Span> {
        let smallest = |ok: &dyn Fn(usize, usize) -> bool| {
            self.entries
                .iter()
                .filter(|(s, e, _)| ok(*s, *e))
                .min_by_key(|(s, e, _)| e - s)
                .map(|(_, _, y)| *y)
        };
        smallest(&|s, e| s <= start && end <= e)
            .or_else(|| smallest(&|s, e| s <= start && start < e.max(s + 1)))
    }
}

/// Generated text being written, with its [`SpanMap`].
#[derive(Default)]
struct Gen {
    text: String,
    map: SpanMap,
}

impl Gen {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Write `s`, produced by the YAML at `yaml`.
    fn from(&mut self, s: &str, yaml: Option<Span>) {
        let start = self.text.len();
        self.text.push_str(s);
        if let Some(y) = yaml {
            self.map.record(start, self.text.len(), y);
        }
    }

    /// The current position (the start of a range closed by [`Gen::close`]).
    fn mark(&self) -> usize {
        self.text.len()
    }

    /// Record that everything written since `start` came from `yaml`.
    fn close(&mut self, start: usize, yaml: Option<Span>) {
        if let Some(y) = yaml {
            self.map.record(start, self.text.len(), y);
        }
    }

    /// Write a list of items, each from its YAML (`[ ]` when empty).
    fn list(&mut self, items: &[(String, Option<Span>)]) {
        if items.is_empty() {
            self.push("[ ]");
            return;
        }
        self.push("[");
        for (item, yaml) in items {
            self.push(" ");
            self.from(item, *yaml);
        }
        self.push(" ]");
    }

    /// Write the generated text `other` (with its own map) here.
    fn insert(&mut self, other: &Gen) {
        let at = self.text.len();
        self.text.push_str(&other.text);
        self.map.extend_shifted(&other.map, at);
    }

    /// Write `key = VALUE;` with the whole binding and the value both from `yaml`.
    fn field(&mut self, key: &str, value: &str, yaml: Option<Span>) {
        let start = self.mark();
        self.push(key);
        self.push(" = ");
        self.from(value, yaml);
        self.push(";");
        self.close(start, yaml);
    }
}

/// What lowering produced besides the text: URL patches that still need a hash, and where each
/// part of the text came from.
#[derive(Debug, Default, PartialEq)]
pub struct Lowered {
    pub text: String,
    pub missing_hashes: Vec<(String, Span)>,
    pub spans: SpanMap,
}

/// The `.bld` expression of a `pkg.yaml` (in directory `rel_dir`, relative to the container
/// spec): the set's package with the changes, or a full recipe through `stdenv.mkPackage`.
pub fn lower_pkg(
    pkg: &PkgSpec,
    rel_dir: &str,
    lock: &BTreeMap<String, String>,
    missing: &mut Vec<(String, Span)>,
) -> String {
    lower_pkg_mapped(pkg, rel_dir, lock, missing, &Typed::new()).0
}

/// Plain YAML scalars to write as what YAML types them (`2` as the integer 2), by span: the
/// `.bld` literal of each ([`crate::spec::yaml_literal`]). Empty for the program that is built,
/// where every such value is text as the spec reader took it; `buildit check --strict DIR`
/// checks the program written with them, so a number or Boolean where the library expects
/// text is a type error at its YAML line.
pub type Typed = std::collections::HashMap<Span, String>;

/// A YAML text value as a `.bld` expression: its string literal, or its typed literal when
/// `typed` has one for its span.
fn text(typed: &Typed, v: &Spanned<String>) -> String {
    typed
        .get(&v.span)
        .cloned()
        .unwrap_or_else(|| quote(&v.value))
}

/// [`lower_pkg`] with the [`SpanMap`] of the expression (offsets within it), plain scalars
/// written as `typed` says.
pub fn lower_pkg_mapped(
    pkg: &PkgSpec,
    rel_dir: &str,
    lock: &BTreeMap<String, String>,
    missing: &mut Vec<(String, Span)>,
    typed: &Typed,
) -> (String, SpanMap) {
    let prefix = if rel_dir.is_empty() || rel_dir == "." {
        String::new()
    } else {
        format!("{}/", rel_dir.trim_end_matches('/'))
    };
    let mut patches = Vec::new();
    for p in &pkg.patches {
        let comment = if p.description.is_empty() {
            String::new()
        } else {
            format!(" /* {} */", p.description.replace("*/", "* /"))
        };
        if p.is_url {
            let hash = match lock.get(&p.source.value) {
                Some(h) => h.clone(),
                None => {
                    missing.push((p.source.value.clone(), p.source.span));
                    String::new()
                }
            };
            patches.push((
                format!(
                    "(buildit.fetchurl {{ url = {}; sha256 = {}; }}){comment}",
                    quote(&p.source.value),
                    quote(&hash)
                ),
                Some(p.source.span),
            ));
        } else {
            patches.push((
                format!(
                    "{}{comment}",
                    path_expr(&format!("{prefix}{}", p.source.value))
                ),
                Some(p.source.span),
            ));
        }
    }
    let strings = |l: &[Spanned<String>]| -> Vec<(String, Option<Span>)> {
        l.iter().map(|s| (text(typed, s), Some(s.span))).collect()
    };
    let write_use = |g: &mut Gen| {
        g.push("{ enable = ");
        g.list(&strings(&pkg.use_with));
        g.push("; disable = ");
        g.list(&strings(&pkg.use_without));
        g.push("; }");
    };
    let mut meta = Vec::new();
    if let Some(a) = &pkg.author {
        meta.push(format!("author = {};", quote(a)));
    }
    if let Some(d) = &pkg.description {
        meta.push(format!("description = {};", quote(d)));
    }
    // the advisories the patches fix, advisory id → patch (for `buildit audit`)
    let fixes: Vec<String> = pkg
        .patches
        .iter()
        .flat_map(|p| {
            p.fixes
                .iter()
                .map(move |id| format!("{} = {};", quote(&id.value), quote(&p.source.value)))
        })
        .collect();
    if !fixes.is_empty() {
        let inherited = if pkg.base.is_some() {
            "((old.meta or { }).fixes or { }) // "
        } else {
            ""
        };
        meta.push(format!("fixes = {inherited}{{ {} }};", fixes.join(" ")));
    }
    let meta_expr = format!("{{ {} }}", meta.join(" "));
    let mut g = Gen::default();
    match &pkg.base {
        Some(base) => {
            g.push("(buildit.pkgs.byAtom ");
            g.from(&text(typed, base), Some(base.span));
            g.push(").overrideAttrs (old: {\n      patches = (old.patches or [ ]) ++ ");
            g.list(&patches);
            g.push(";\n      use = ");
            write_use(&mut g);
            g.push(&format!(
                ";\n      meta = (old.meta or {{ }}) // {meta_expr};\n    }})"
            ));
        }
        None => {
            let name = pkg
                .name
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_default();
            let version = pkg
                .version
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_default();
            let span_of = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.span);
            // the typed literal of a plain scalar, else the text as a string
            let value = |s: &Option<Spanned<String>>, shown: &str| {
                s.as_ref()
                    .and_then(|s| typed.get(&s.span).cloned())
                    .unwrap_or_else(|| quote(shown))
            };
            g.push("buildit.stdenv.mkPackage {\n      ");
            g.field("pname", &value(&pkg.name, &name), span_of(&pkg.name));
            g.push("\n      ");
            g.field(
                "version",
                &value(&pkg.version, &version),
                span_of(&pkg.version),
            );
            g.push("\n      ");
            g.field(
                "category",
                &value(
                    &pkg.category,
                    pkg.category
                        .as_ref()
                        .map(|c| c.value.as_str())
                        .unwrap_or("local"),
                ),
                span_of(&pkg.category),
            );
            g.push("\n      ");
            match (&pkg.source_url, &pkg.source_path) {
                (Some(u), _) => {
                    let start = g.mark();
                    g.push("src = buildit.fetchurl { url = ");
                    g.from(&text(typed, u), Some(u.span));
                    g.push("; sha256 = ");
                    let sha = pkg.source_sha256.as_ref();
                    g.from(
                        &sha.map(|s| text(typed, s)).unwrap_or_else(|| quote("")),
                        sha.map(|s| s.span),
                    );
                    g.push("; };");
                    g.close(start, Some(u.span));
                }
                (None, Some(p)) => g.field(
                    "src",
                    &path_expr(&format!("{prefix}{}", p.value)),
                    Some(p.span),
                ),
                (None, None) => g.push("src = null;"),
            }
            let deps = |l: &[Spanned<String>]| -> Vec<(String, Option<Span>)> {
                l.iter()
                    .map(|d| {
                        (
                            format!("(buildit.dependency {})", text(typed, d)),
                            Some(d.span),
                        )
                    })
                    .collect()
            };
            g.push("\n      patches = ");
            g.list(&patches);
            g.push(";\n      use = ");
            write_use(&mut g);
            g.push(";\n      buildInputs = ");
            g.list(&deps(&pkg.build_depends));
            g.push(";\n      runtimeDeps = ");
            g.list(&deps(&pkg.runtime_depends));
            g.push(";\n      configureFlags = ");
            g.list(&strings(&pkg.configure_flags));
            g.push(&format!(";\n      meta = {meta_expr};"));
            for (ph, script) in &pkg.phases {
                g.push("\n      ");
                g.field(
                    &format!("{ph}Phase"),
                    &text(typed, script),
                    Some(script.span),
                );
            }
            g.push("\n    }");
        }
    }
    // the whole expression comes from the pkg.yaml document
    g.close(0, pkg.span);
    (g.text, g.map)
}

/// The `.bld` program of a container spec. `embedded` gives each `type: embedded` package's
/// parsed pkg.yaml (by the path written in the spec).
pub fn lower_container(
    spec: &ContainerSpec,
    spec_name: &str,
    embedded: &BTreeMap<String, PkgSpec>,
    lock: &BTreeMap<String, String>,
) -> Result<Lowered, Vec<Diagnostic>> {
    lower_container_typed(spec, spec_name, embedded, lock, &Typed::new())
}

/// [`lower_container`] with plain scalars written as `typed` says.
pub fn lower_container_typed(
    spec: &ContainerSpec,
    spec_name: &str,
    embedded: &BTreeMap<String, PkgSpec>,
    lock: &BTreeMap<String, String>,
    typed: &Typed,
) -> Result<Lowered, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut missing = Vec::new();
    let vars: BTreeMap<String, String> = spec
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    let var_span = |k: &str| spec.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.span);
    // one budget of substituted bytes for all the values of the spec
    let mut tpl = Templater::new(&vars);
    let mut g = Gen::default();
    g.push(&format!("# Generated by buildit from {spec_name}; `buildit compile` prints this text and\n# `buildit build` evaluates exactly it. Edit the YAML, not this.\nlet\n  buildit = import <buildit>;\n"));
    g.push("  vars = {");
    for (k, v) in &spec.vars {
        let val = tpl.fill(&v.value, v.span, &mut diags);
        g.push(" ");
        let val = typed.get(&v.span).cloned().unwrap_or_else(|| quote(&val));
        g.field(&quote(k), &val, Some(v.span));
    }
    if spec.vars.is_empty() {
        g.push(" ");
    }
    g.push(" };\n");
    let mut names = Vec::new();
    for (i, p) in spec.packages.iter().enumerate() {
        let name = format!("package{}", i + 1);
        let step_span = match p {
            PackageRef::Embedded(path) => path.span,
            PackageRef::Set(atom) => atom.span,
            PackageRef::Debian { name, .. } => name.span,
        };
        match p {
            PackageRef::Embedded(path) => {
                let rel = path.value.trim_start_matches("./").trim_end_matches('/');
                match embedded.get(&path.value) {
                    Some(pkg) => {
                        g.push(&format!("  # package: embedded, {}/pkg.yaml\n", rel));
                        let (text, map) = lower_pkg_mapped(pkg, rel, lock, &mut missing, typed);
                        let start = g.mark();
                        g.push(&format!("  {name} = "));
                        g.insert(&Gen { text, map });
                        g.push(";");
                        g.close(start, Some(path.span));
                        g.push("\n");
                    }
                    None => diags.push(
                        Diagnostic::error(
                            "buildit::yaml::missing-file",
                            format!("no pkg.yaml in `{}`", path.value),
                        )
                        .with_label(path.span, "this directory")
                        .with_help("an embedded package is a directory holding a pkg.yaml"),
                    ),
                }
            }
            PackageRef::Set(atom) => {
                let a = tpl.fill(&atom.value, atom.span, &mut diags);
                g.push(&format!("  # package: {a} from the package set\n  "));
                let arg = typed.get(&atom.span).cloned().unwrap_or_else(|| quote(&a));
                g.field(
                    &name,
                    &format!("buildit.pkgs.byAtom {arg}"),
                    Some(atom.span),
                );
                g.push("\n");
            }
            PackageRef::Debian { name: n, version } => {
                g.push(&format!("  # package: Debian's {}\n  ", n.value));
                let start = g.mark();
                g.push(&format!("{name} = buildit.debian.package "));
                g.from(&text(typed, n), Some(n.span));
                g.push(" ");
                match version {
                    Some(v) => g.from(&text(typed, v), Some(v.span)),
                    None => g.push("\"\""),
                }
                g.push(";");
                g.close(start, Some(n.span));
                g.push("\n");
            }
        }
        names.push((name, Some(step_span)));
    }
    g.push("in\n");
    let image_start = g.mark();
    g.push("buildit.image {\n");
    let title = vars.get("name").cloned().unwrap_or_else(|| "image".into());
    let version = vars
        .get("version")
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let var_text = |key: &str, value: &str| {
        var_span(key)
            .and_then(|s| typed.get(&s).cloned())
            .unwrap_or_else(|| quote(value))
    };
    g.push("  ");
    g.field("name", &var_text("name", &title), var_span("name"));
    g.push("\n  ");
    g.field("tag", &var_text("version", &version), var_span("version"));
    g.push("\n");
    for key in ["os", "arch"] {
        if let Some(v) = vars.get(key) {
            g.push("  ");
            g.field(key, &var_text(key, v), var_span(key));
            g.push("\n");
        }
    }
    g.push("  packages = ");
    g.list(&names);
    g.push(";\n");
    let mut files = Vec::new();
    for s in &spec.syncs {
        let dest = tpl.fill(&s.dest.value, s.dest.span, &mut diags);
        if let Some(problem) = dest_problem(&dest) {
            diags.push(
                Diagnostic::error(
                    "buildit::yaml::bad-dest",
                    format!("`dest: {dest}` {problem}"),
                )
                .with_label(s.dest.span, "this destination")
                .with_help("`dest` is an absolute path in the image, without `..`, not `/` itself and not under /bld (the store's layers)"),
            );
        }
        let mut f = Gen::default();
        f.push("{ ");
        f.field("src", &path_expr(&s.src.value), Some(s.src.span));
        f.push(" ");
        let dest_text = typed
            .get(&s.dest.span)
            .cloned()
            .unwrap_or_else(|| quote(&dest));
        f.field("dest", &dest_text, Some(s.dest.span));
        f.push(&format!(" recursive = {};", s.recursive));
        if let Some(m) = &s.mode {
            f.push(" ");
            f.field("mode", &m.value.to_string(), Some(m.span));
            f.push(&format!(" /* 0{:o} */", m.value));
        }
        if let Some(o) = &s.owner {
            f.push(" ");
            f.field("owner", &text(typed, o), Some(o.span));
        }
        if s.allow_setuid {
            f.push(" allowSetuid = true;");
        }
        f.push(" }");
        f.close(0, Some(s.src.span));
        files.push(f);
    }
    if files.is_empty() {
        g.push("  files = [ ];\n");
    } else {
        g.push("  files = [\n    ");
        for (i, f) in files.iter().enumerate() {
            if i > 0 {
                g.push("\n    ");
            }
            g.insert(f);
        }
        g.push("\n  ];\n");
    }
    if let Some(img) = &spec.image {
        let at = Some(img.span);
        g.push("  ");
        g.field("type", &quote(img.kind.name()), at);
        g.push("\n");
        if let Some(c) = &img.content {
            let filled = tpl.fill(&c.value, c.span, &mut diags);
            if img.kind == ImageType::Aci {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&filled) {
                    diags.push(
                        Diagnostic::error(
                            "buildit::yaml::bad-manifest",
                            format!("the ACI manifest in `content:` is not valid JSON: {e}"),
                        )
                        .with_label(c.span, "this manifest")
                        .with_help("`content:` holds the ACI image manifest as JSON"),
                    );
                }
            }
            g.push("  ");
            g.field("manifest", &quote(&filled), Some(c.span));
            g.push("\n");
        }
        let mut strs = |l: &[String], diags: &mut Vec<Diagnostic>| {
            list(
                &l.iter()
                    .map(|s| quote(&tpl.fill(s, img.span, diags)))
                    .collect::<Vec<_>>(),
            )
        };
        let mut cfg = Vec::new();
        if !img.entrypoint.is_empty() {
            cfg.push(format!(
                "entrypoint = {};",
                strs(&img.entrypoint, &mut diags)
            ));
        }
        if !img.cmd.is_empty() {
            cfg.push(format!("cmd = {};", strs(&img.cmd, &mut diags)));
        }
        let ports = strs(&img.ports, &mut diags);
        let mut kv = |l: &[(String, String)], diags: &mut Vec<Diagnostic>| {
            l.iter()
                .map(|(k, v)| format!("{} = {};", quote(k), quote(&tpl.fill(v, img.span, diags))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let env = kv(&img.env, &mut diags);
        let labels = kv(&img.labels, &mut diags);
        if !img.env.is_empty() {
            cfg.push(format!("env = {{ {env} }};"));
        }
        if let Some(u) = &img.user {
            cfg.push(format!("user = {};", quote(u)));
        }
        if let Some(w) = &img.workdir {
            cfg.push(format!("workdir = {};", quote(w)));
        }
        if !img.ports.is_empty() {
            cfg.push(format!("ports = {ports};"));
        }
        if !img.labels.is_empty() {
            cfg.push(format!("labels = {{ {labels} }};"));
        }
        g.push("  ");
        g.field("config", &format!("{{ {} }}", cfg.join(" ")), at);
        g.push("\n");
        if let Some(c) = &img.compression {
            g.push("  ");
            g.field("compression", &text(typed, c), Some(c.span));
            g.push("\n");
        }
        if let Some(l) = &img.layers {
            let n = l
                .value
                .parse::<u32>()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "32".into());
            g.push("  ");
            g.field("layers", &n, Some(l.span));
            g.push("\n");
        }
    }
    g.push("}");
    g.close(image_start, spec.image.as_ref().map(|i| i.span));
    g.push("\n");
    if diags.is_empty() {
        Ok(Lowered {
            text: g.text,
            missing_hashes: missing,
            spans: g.map,
        })
    } else {
        Err(diags)
    }
}

/// What is wrong with a sync destination (after templates are filled), if anything: the image
/// writer refuses the same (`..`, `/`, `/bld`), this reports it at the YAML line.
pub fn dest_problem(dest: &str) -> Option<&'static str> {
    let rest = dest.strip_prefix('/')?;
    let comps: Vec<&str> = rest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.contains(&"..") {
        Some("has a `..` component")
    } else if comps.is_empty() {
        Some("would replace the whole image")
    } else if comps[0] == "bld" {
        Some("is under /bld, which belongs to the store's layers")
    } else {
        None
    }
}

/// The directory part of a spec-relative path.
pub fn rel_dir_of(p: &Path) -> String {
    p.to_string_lossy().trim_start_matches("./").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_interpolation() {
        assert_eq!(quote("a\"b${c}\\"), r#""a\"b\${c}\\""#);
        assert_eq!(quote("$x {y}"), "\"$x {y}\"");
    }

    #[test]
    fn paths_are_literals_when_possible() {
        assert_eq!(path_expr("./files/nginx.conf"), "./files/nginx.conf");
        assert_eq!(path_expr("files/a b.conf"), "(./. + \"/files/a b.conf\")");
        assert_eq!(path_expr("../x"), "(./. + \"/../x\")");
    }

    #[test]
    fn templates_fill_and_report() {
        let vars = BTreeMap::from([
            ("name".to_string(), "web".to_string()),
            ("version".to_string(), "1".to_string()),
        ]);
        let mut d = Vec::new();
        assert_eq!(
            template("{{ name }}-{{version}}", Span::default(), &vars, &mut d),
            "web-1"
        );
        assert!(d.is_empty());
        template("{{ nme }}", Span::default(), &vars, &mut d);
        assert_eq!(d.len(), 1);
        assert!(d[0]
            .help
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `name`"));
    }

    #[test]
    fn substitutions_have_one_budget() {
        let big = "x".repeat(1 << 20);
        let vars = BTreeMap::from([("big".to_string(), big)]);
        let mut t = Templater::new(&vars);
        let mut d = Vec::new();
        let uses = MAX_TEMPLATE_BYTES >> 20;
        for _ in 0..uses {
            assert_eq!(t.fill("{{ big }}", Span::default(), &mut d).len(), 1 << 20);
        }
        assert!(d.is_empty());
        t.fill("a{{ big }}", Span::default(), &mut d);
        t.fill("{{ big }}", Span::default(), &mut d);
        assert_eq!(d.len(), 1, "one diagnostic for the budget");
        assert_eq!(d[0].code, "buildit::yaml::too-large");
    }

    #[test]
    fn many_unknown_variables_cost_little() {
        let vars: BTreeMap<String, String> = (0..10_000)
            .map(|i| (format!("v{i}"), "x".to_string()))
            .collect();
        let mut t = Templater::new(&vars);
        let mut d = Vec::new();
        for i in 0..10_000 {
            t.fill(&format!("{{{{ nope{i} }}}}"), Span::default(), &mut d);
        }
        assert_eq!(d.len(), 10_000);
        assert!(d[0].help.as_deref().unwrap_or("").contains("and 9980 more"));
        assert_eq!(
            d[9_999].help.as_deref(),
            Some("variables come from the `vars:` step")
        );
    }

    #[test]
    fn span_map_finds_the_smallest_range() {
        let f = buildit_lang::FileId(3);
        let mut m = SpanMap::default();
        m.record(0, 100, Span::new(f, 0, 50));
        m.record(10, 20, Span::new(f, 5, 8));
        assert_eq!(m.find(12, 15), Some(Span::new(f, 5, 8)));
        assert_eq!(m.find(30, 40), Some(Span::new(f, 0, 50)));
        // a range crossing the inner one belongs to the outer one
        assert_eq!(m.find(15, 30), Some(Span::new(f, 0, 50)));
        assert_eq!(m.find(200, 210), None);
        assert_eq!(
            m.inside(0, 100),
            vec![Span::new(f, 0, 50), Span::new(f, 5, 8)]
        );
    }

    #[test]
    fn lowered_values_map_to_their_yaml() {
        let f = buildit_lang::FileId(1);
        let at = |s: usize, e: usize, v: &str| Spanned {
            value: v.to_string(),
            span: Span::new(f, s, e),
        };
        let pkg = PkgSpec {
            name: Some(at(6, 10, "tool")),
            version: Some(at(20, 21, "2")),
            source_path: Some(at(40, 43, "src")),
            configure_flags: vec![at(60, 70, "--with-x")],
            span: Some(Span::new(f, 0, 80)),
            ..PkgSpec::default()
        };
        let mut missing = Vec::new();
        let (text, map) = lower_pkg_mapped(&pkg, "", &BTreeMap::new(), &mut missing, &Typed::new());
        assert_eq!(text, lower_pkg(&pkg, "", &BTreeMap::new(), &mut missing));
        let find = |needle: &str| {
            let i = text.find(needle).expect("in the text");
            map.find(i, i + needle.len())
        };
        assert_eq!(find("\"2\""), Some(Span::new(f, 20, 21)));
        assert_eq!(find("version"), Some(Span::new(f, 20, 21)));
        assert_eq!(find("\"--with-x\""), Some(Span::new(f, 60, 70)));
        // generated text of no YAML value: the whole document
        assert_eq!(find("buildit.stdenv.mkPackage"), Some(Span::new(f, 0, 80)));
        // with typed scalars, the plain `2` is the integer
        let typed = Typed::from([(Span::new(f, 20, 21), "2".to_string())]);
        let (t2, _) = lower_pkg_mapped(&pkg, "", &BTreeMap::new(), &mut missing, &typed);
        assert!(t2.contains("version = 2;"), "{t2}");
    }

    #[test]
    fn destinations_stay_in_the_image() {
        assert_eq!(dest_problem("/etc/nginx/nginx.conf"), None);
        assert_eq!(dest_problem("relative"), None);
        assert!(dest_problem("/../../x").is_some());
        assert!(dest_problem("/etc/../x").is_some());
        assert!(dest_problem("/").is_some());
        assert!(dest_problem("/bld/store/x").is_some());
    }
}
