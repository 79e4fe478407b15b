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

/// What lowering produced besides the text: URL patches that still need a hash.
#[derive(Debug, Default, PartialEq)]
pub struct Lowered {
    pub text: String,
    pub missing_hashes: Vec<(String, Span)>,
}

/// The `.bld` expression of a `pkg.yaml` (in directory `rel_dir`, relative to the container
/// spec): the set's package with the changes, or a full recipe through `stdenv.mkPackage`.
pub fn lower_pkg(
    pkg: &PkgSpec,
    rel_dir: &str,
    lock: &BTreeMap<String, String>,
    missing: &mut Vec<(String, Span)>,
) -> String {
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
            patches.push(format!(
                "(buildit.fetchurl {{ url = {}; sha256 = {}; }}){comment}",
                quote(&p.source.value),
                quote(&hash)
            ));
        } else {
            patches.push(format!(
                "{}{comment}",
                path_expr(&format!("{prefix}{}", p.source.value))
            ));
        }
    }
    let enable: Vec<String> = pkg.use_with.iter().map(|s| quote(&s.value)).collect();
    let disable: Vec<String> = pkg.use_without.iter().map(|s| quote(&s.value)).collect();
    let use_expr = format!(
        "{{ enable = {}; disable = {}; }}",
        list(&enable),
        list(&disable)
    );
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
    match &pkg.base {
        Some(base) => format!(
            "(buildit.pkgs.byAtom {}).overrideAttrs (old: {{\n      patches = (old.patches or [ ]) ++ {};\n      use = {use_expr};\n      meta = (old.meta or {{ }}) // {meta_expr};\n    }})",
            quote(&base.value),
            list(&patches)
        ),
        None => {
            let name = pkg.name.as_ref().map(|s| s.value.clone()).unwrap_or_default();
            let version = pkg.version.as_ref().map(|s| s.value.clone()).unwrap_or_default();
            let src = match (&pkg.source_url, &pkg.source_path) {
                (Some(u), _) => {
                    let sha = pkg.source_sha256.as_ref().map(|s| s.value.clone()).unwrap_or_default();
                    format!("buildit.fetchurl {{ url = {}; sha256 = {}; }}", quote(&u.value), quote(&sha))
                }
                (None, Some(p)) => path_expr(&format!("{prefix}{}", p.value)),
                (None, None) => "null".into(),
            };
            let deps = |l: &[Spanned<String>]| -> String {
                list(&l.iter().map(|d| format!("(buildit.dependency {})", quote(&d.value))).collect::<Vec<_>>())
            };
            let flags: Vec<String> = pkg.configure_flags.iter().map(|f| quote(&f.value)).collect();
            let mut phases = String::new();
            for (ph, script) in &pkg.phases {
                phases.push_str(&format!("\n      {ph}Phase = {};", quote(&script.value)));
            }
            format!(
                "buildit.stdenv.mkPackage {{\n      pname = {};\n      version = {};\n      category = {};\n      src = {src};\n      patches = {};\n      use = {use_expr};\n      buildInputs = {};\n      runtimeDeps = {};\n      configureFlags = {};\n      meta = {meta_expr};{phases}\n    }}",
                quote(&name),
                quote(&version),
                quote(pkg.category.as_ref().map(|c| c.value.as_str()).unwrap_or("local")),
                list(&patches),
                deps(&pkg.build_depends),
                deps(&pkg.runtime_depends),
                list(&flags),
            )
        }
    }
}

/// The `.bld` program of a container spec. `embedded` gives each `type: embedded` package's
/// parsed pkg.yaml (by the path written in the spec).
pub fn lower_container(
    spec: &ContainerSpec,
    spec_name: &str,
    embedded: &BTreeMap<String, PkgSpec>,
    lock: &BTreeMap<String, String>,
) -> Result<Lowered, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut missing = Vec::new();
    let vars: BTreeMap<String, String> = spec
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    // one budget of substituted bytes for all the values of the spec
    let mut tpl = Templater::new(&vars);
    let mut t = String::new();
    t.push_str(&format!("# Generated by buildit from {spec_name}; `buildit compile` prints this text and\n# `buildit build` evaluates exactly it. Edit the YAML, not this.\nlet\n  buildit = import <buildit>;\n"));
    let mut var_lines = Vec::new();
    for (k, v) in &spec.vars {
        let val = tpl.fill(&v.value, v.span, &mut diags);
        var_lines.push(format!("{} = {};", quote(k), quote(&val)));
    }
    t.push_str(&format!("  vars = {{ {} }};\n", var_lines.join(" ")));
    let mut names = Vec::new();
    for (i, p) in spec.packages.iter().enumerate() {
        let name = format!("package{}", i + 1);
        match p {
            PackageRef::Embedded(path) => {
                let rel = path.value.trim_start_matches("./").trim_end_matches('/');
                match embedded.get(&path.value) {
                    Some(pkg) => {
                        t.push_str(&format!("  # package: embedded, {}/pkg.yaml\n", rel));
                        t.push_str(&format!(
                            "  {name} = {};\n",
                            lower_pkg(pkg, rel, lock, &mut missing)
                        ));
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
                t.push_str(&format!(
                    "  # package: {a} from the package set\n  {name} = buildit.pkgs.byAtom {};\n",
                    quote(&a)
                ));
            }
            PackageRef::Debian { name: n, version } => {
                let v = version
                    .as_ref()
                    .map(|v| quote(&v.value))
                    .unwrap_or_else(|| "\"\"".into());
                t.push_str(&format!(
                    "  # package: Debian's {}\n  {name} = buildit.debian.package {} {v};\n",
                    n.value,
                    quote(&n.value)
                ));
            }
        }
        names.push(name);
    }
    t.push_str("in\nbuildit.image {\n");
    let title = vars.get("name").cloned().unwrap_or_else(|| "image".into());
    let version = vars
        .get("version")
        .cloned()
        .unwrap_or_else(|| "latest".into());
    t.push_str(&format!(
        "  name = {};\n  tag = {};\n",
        quote(&title),
        quote(&version)
    ));
    if let Some(os) = vars.get("os") {
        t.push_str(&format!("  os = {};\n", quote(os)));
    }
    if let Some(arch) = vars.get("arch") {
        t.push_str(&format!("  arch = {};\n", quote(arch)));
    }
    t.push_str(&format!("  packages = {};\n", list(&names)));
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
        let mut f = format!(
            "{{ src = {}; dest = {}; recursive = {};",
            path_expr(&s.src.value),
            quote(&dest),
            s.recursive
        );
        if let Some(m) = &s.mode {
            f.push_str(&format!(" mode = {}; /* 0{:o} */", m.value, m.value));
        }
        if let Some(o) = &s.owner {
            f.push_str(&format!(" owner = {};", quote(&o.value)));
        }
        if s.allow_setuid {
            f.push_str(" allowSetuid = true;");
        }
        f.push_str(" }");
        files.push(f);
    }
    if files.is_empty() {
        t.push_str("  files = [ ];\n");
    } else {
        t.push_str(&format!(
            "  files = [\n    {}\n  ];\n",
            files.join("\n    ")
        ));
    }
    if let Some(img) = &spec.image {
        t.push_str(&format!("  type = {};\n", quote(img.kind.name())));
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
            t.push_str(&format!("  manifest = {};\n", quote(&filled)));
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
        t.push_str(&format!("  config = {{ {} }};\n", cfg.join(" ")));
        if let Some(c) = &img.compression {
            t.push_str(&format!("  compression = {};\n", quote(&c.value)));
        }
        if let Some(l) = &img.layers {
            t.push_str(&format!(
                "  layers = {};\n",
                l.value
                    .parse::<u32>()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "32".into())
            ));
        }
    }
    t.push_str("}\n");
    if diags.is_empty() {
        Ok(Lowered {
            text: t,
            missing_hashes: missing,
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
    fn destinations_stay_in_the_image() {
        assert_eq!(dest_problem("/etc/nginx/nginx.conf"), None);
        assert_eq!(dest_problem("relative"), None);
        assert!(dest_problem("/../../x").is_some());
        assert!(dest_problem("/etc/../x").is_some());
        assert!(dest_problem("/").is_some());
        assert!(dest_problem("/bld/store/x").is_some());
    }
}
