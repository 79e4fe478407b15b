//! The typed specs: `pkg.yaml` ([`PkgSpec`]) and `container.yaml` ([`ContainerSpec`]), read
//! from YAML trees with every value's span kept (the configuration file's schema is
//! [`crate::config`]).
//! Reading never stops at the first problem: it collects diagnostics (unknown keys with "did
//! you mean", wrong kinds of values, missing required keys, bad `chmod` text, unknown image
//! types) so one run reports them all, each pointing at the YAML line and column.

use buildit_lang::{Diagnostic, FileId, Span};

use super::tree::{Kind, Node};

/// A value with the span it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// Collects diagnostics for one file.
pub struct Reader {
    pub file: FileId,
    pub diags: Vec<Diagnostic>,
    /// The plain (unquoted) scalars read as text that YAML itself types otherwise (`2`, `1.10`,
    /// `yes`), with the `.bld` literal of what YAML makes of them ([`yaml_literal`]).
    pub plain: Vec<(Span, String)>,
}

/// The `.bld` literal of what YAML's own typing makes of a plain scalar, when that is not
/// text: an integer (`2`), a float (`1.10`, `.5`), a Boolean (`true`, and YAML 1.1's `yes`,
/// `no`, `on`, `off`, any case). `None` for text.
pub fn yaml_literal(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if ["true", "yes", "on"].contains(&lower.as_str()) {
        return Some("true".into());
    }
    if ["false", "no", "off"].contains(&lower.as_str()) {
        return Some("false".into());
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().map(|n| n.to_string());
    }
    let (int, frac) = digits.split_once('.')?;
    let numeric = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if numeric(int) && numeric(frac) && !(int.is_empty() && frac.is_empty()) && digits.len() <= 32 {
        let sign = if text.starts_with('-') { "-" } else { "" };
        let int = if int.is_empty() { "0" } else { int };
        let frac = if frac.is_empty() { "0" } else { frac };
        return Some(format!("{sign}{int}.{frac}"));
    }
    None
}

impl Reader {
    pub fn new(file: FileId) -> Reader {
        Reader {
            file,
            diags: Vec::new(),
            plain: Vec::new(),
        }
    }

    pub fn span(&self, n: &Node) -> Span {
        Span::new(self.file, n.start, n.end.max(n.start))
    }

    pub fn error(
        &mut self,
        code: &'static str,
        n: &Node,
        msg: impl Into<String>,
        label: &str,
        help: impl Into<String>,
    ) {
        let d = Diagnostic::error(code, msg)
            .with_label(self.span(n), label)
            .with_help(help);
        self.diags.push(d);
    }

    /// The pairs of a mapping, checking every key against `allowed` (unknown keys are reported
    /// with "did you mean"); `None` (and a diagnostic) when `n` is not a mapping.
    pub fn map<'n>(
        &mut self,
        n: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node, &'n Node)>> {
        let Kind::Map(pairs) = &n.kind else {
            self.error(
                "buildit::yaml::expected-mapping",
                n,
                format!(
                    "{what} must be a mapping (key: value lines), found {}",
                    n.describe()
                ),
                "expected a mapping here",
                format!("the keys of {what} are: {}", allowed.join(", ")),
            );
            return None;
        };
        let mut out = Vec::new();
        // a set: `vars:` may have many thousands of keys
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (k, v) in pairs {
            let Some(key) = k.scalar() else {
                self.error(
                    "buildit::yaml::bad-key",
                    k,
                    "keys must be plain names",
                    "not a name",
                    "write `name: value`",
                );
                continue;
            };
            if !seen.insert(key) {
                self.error(
                    "buildit::yaml::duplicate-key",
                    k,
                    format!("`{key}` is given twice in {what}"),
                    "again here",
                    "keep one of them",
                );
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&key) {
                let help = match did_you_mean(key, allowed) {
                    Some(s) => format!(
                        "did you mean `{s}`? The keys of {what} are: {}",
                        allowed.join(", ")
                    ),
                    None => format!("the keys of {what} are: {}", allowed.join(", ")),
                };
                self.error(
                    "buildit::yaml::unknown-key",
                    k,
                    format!("unknown key `{key}` in {what}"),
                    "unknown key",
                    help,
                );
                continue;
            }
            out.push((key, k, v));
        }
        Some(out)
    }

    /// A string scalar (numbers and Booleans are accepted as their text).
    pub fn string(&mut self, n: &Node, what: &str) -> Option<Spanned<String>> {
        match &n.kind {
            Kind::Scalar { text, quoted } if !n.is_null() => {
                if !quoted {
                    if let Some(lit) = yaml_literal(text) {
                        self.plain.push((self.span(n), lit));
                    }
                }
                Some(Spanned {
                    value: text.clone(),
                    span: self.span(n),
                })
            }
            _ => {
                self.error(
                    "buildit::yaml::expected-string",
                    n,
                    format!("{what} must be a text value, found {}", n.describe()),
                    "expected text here",
                    format!("write {what} as a single value"),
                );
                None
            }
        }
    }

    /// A Boolean (`true`/`false`/`yes`/`no`, any case).
    pub fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        match n.scalar().map(|s| s.to_ascii_lowercase()) {
            Some(s) if ["true", "yes", "on"].contains(&s.as_str()) => Some(true),
            Some(s) if ["false", "no", "off"].contains(&s.as_str()) => Some(false),
            _ => {
                self.error(
                    "buildit::yaml::expected-bool",
                    n,
                    format!(
                        "{what} must be true or false, found {}",
                        n.scalar()
                            .map(|s| format!("`{s}`"))
                            .unwrap_or_else(|| n.describe().to_string())
                    ),
                    "expected true or false",
                    "write `true` or `false`",
                );
                None
            }
        }
    }

    /// A list of strings (a single string is accepted as a list of one).
    pub fn strings(&mut self, n: &Node, what: &str) -> Vec<Spanned<String>> {
        match &n.kind {
            Kind::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            Kind::Scalar { .. } if !n.is_null() => self.string(n, what).into_iter().collect(),
            Kind::Scalar { .. } => Vec::new(),
            _ => {
                self.error(
                    "buildit::yaml::expected-list",
                    n,
                    format!("{what} must be a list, found {}", n.describe()),
                    "expected a list",
                    "write one `- item` per line",
                );
                Vec::new()
            }
        }
    }

    /// An octal file mode from the scalar's text (`0644`, `644`, `"0755"`).
    pub fn chmod(&mut self, n: &Node) -> Option<Spanned<u32>> {
        let s = self.string(n, "chmod")?;
        let t = s.value.trim();
        let digits = t.strip_prefix("0o").unwrap_or(t);
        if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            self.error(
                "buildit::yaml::bad-chmod",
                n,
                format!("`{t}` is not an octal file mode"),
                "not an octal mode",
                "write the mode in octal, e.g. 0644 or 0755",
            );
            return None;
        }
        if let Some(bad) = digits.chars().find(|c| *c == '8' || *c == '9') {
            self.error(
                "buildit::yaml::bad-chmod",
                n,
                format!("`{t}` is not an octal file mode: the digit {bad} does not exist in octal"),
                "not an octal mode",
                "octal digits are 0-7, e.g. 0644 or 0755",
            );
            return None;
        }
        let v = u32::from_str_radix(digits, 8).ok()?;
        Some(Spanned {
            value: v,
            span: s.span,
        })
    }
}

/// "Did you mean" for short names: the closest candidate within a small edit distance.
/// Candidates whose length alone puts them out of reach are not compared, and names longer
/// than 64 bytes get no suggestion, so the cost stays linear in the candidates.
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if name.len() > 64 {
        return None;
    }
    let reach = 2 + name.len() / 4;
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c.len().abs_diff(name.len()) > reach * 4 {
            continue;
        }
        let d = buildit_lang::text::edit_distance(name, c);
        if d <= reach && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

// ---------------------------------------------------------------------------------------------
// pkg.yaml

/// A patch: a file next to the spec or a URL, with its description.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub source: Spanned<String>,
    pub description: String,
    pub is_url: bool,
    /// The advisories (CVE or OSV ids) the patch fixes: `buildit audit` does not report them
    /// for the package.
    pub fixes: Vec<Spanned<String>>,
}

/// Whether `id` looks like an advisory id (`CVE-2023-44487`, `GHSA-…`, `DSA-5555-1`): a
/// letter, letters and digits, a dash, then letters, digits, `.`, `:`, `_` or `-`.
pub fn is_advisory_id(id: &str) -> bool {
    let Some((db, rest)) = id.split_once('-') else {
        return false;
    };
    id.len() <= 128
        && db.starts_with(|c: char| c.is_ascii_alphabetic())
        && db.chars().all(|c| c.is_ascii_alphanumeric())
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c))
}

/// A patch entry's value: its description, or `{ description: …, fixes: [CVE-…] }`.
fn read_patch_value(r: &mut Reader, pv: &Node) -> (String, Vec<Spanned<String>>) {
    if pv.is_null() {
        return (String::new(), Vec::new());
    }
    if !matches!(pv.kind, Kind::Map(_)) {
        let d = r
            .string(pv, "a patch description")
            .map(|s| s.value)
            .unwrap_or_default();
        return (d, Vec::new());
    }
    let mut description = String::new();
    let mut fixes = Vec::new();
    for (key, _, v) in r
        .map(pv, "a patch", &["description", "fixes"])
        .unwrap_or_default()
    {
        if key == "description" {
            description = r
                .string(v, "a patch description")
                .map(|s| s.value)
                .unwrap_or_default();
            continue;
        }
        for id in r.strings(v, "an advisory id") {
            if is_advisory_id(&id.value) {
                fixes.push(id);
            } else {
                r.diags.push(
                    Diagnostic::error(
                        "buildit::yaml::bad-advisory-id",
                        format!("`{}` is not an advisory id", id.value),
                    )
                    .with_label(id.span, "not a CVE or OSV id")
                    .with_help("list the ids the patch fixes, e.g. `fixes: [CVE-2023-44487]`"),
                );
            }
        }
    }
    (description, fixes)
}

/// `pkg.yaml`: a package from the set (`base:`) with changes, or a full recipe.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PkgSpec {
    pub base: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub category: Option<Spanned<String>>,
    pub author: Option<String>,
    pub description: Option<String>,
    pub patches: Vec<Patch>,
    pub use_with: Vec<Spanned<String>>,
    pub use_without: Vec<Spanned<String>>,
    pub source_url: Option<Spanned<String>>,
    pub source_sha256: Option<Spanned<String>>,
    pub source_path: Option<Spanned<String>>,
    pub build_depends: Vec<Spanned<String>>,
    pub runtime_depends: Vec<Spanned<String>>,
    pub configure_flags: Vec<Spanned<String>>,
    pub phases: Vec<(String, Spanned<String>)>,
    /// The span of the whole document (for "missing key" errors).
    pub span: Option<Span>,
}

const PKG_KEYS: &[&str] = &[
    "base",
    "name",
    "version",
    "category",
    "author",
    "description",
    "patches",
    "use",
    "source",
    "build-depends",
    "runtime-depends",
    "configure-flags",
    "options",
    "phases",
    "license",
    "homepage",
];
const PHASES: &[&str] = &[
    "unpack",
    "patch",
    "configure",
    "build",
    "check",
    "install",
    "fixup",
];

/// Read a `pkg.yaml` tree.
pub fn read_pkg(r: &mut Reader, root: &Node) -> PkgSpec {
    let mut spec = PkgSpec {
        span: Some(r.span(root)),
        ..PkgSpec::default()
    };
    let Some(pairs) = r.map(root, "pkg.yaml", PKG_KEYS) else {
        return spec;
    };
    for (key, k, v) in pairs {
        match key {
            "base" => spec.base = r.string(v, "base"),
            "name" => spec.name = r.string(v, "name"),
            "version" => spec.version = r.string(v, "version"),
            "category" => spec.category = r.string(v, "category"),
            "author" => spec.author = r.string(v, "author").map(|s| s.value),
            "description" => spec.description = r.string(v, "description").map(|s| s.value),
            "license" | "homepage" => {
                let _ = r.string(v, key);
            }
            "patches" => match &v.kind {
                Kind::Map(pairs) => {
                    for (pk, pv) in pairs {
                        let Some(src) = r.string(pk, "a patch") else {
                            continue;
                        };
                        let (description, fixes) = read_patch_value(r, pv);
                        let is_url = src.value.contains("://");
                        spec.patches.push(Patch {
                            source: src,
                            description,
                            is_url,
                            fixes,
                        });
                    }
                }
                Kind::Seq(items) => {
                    for i in items {
                        if let Some(src) = r.string(i, "a patch") {
                            let is_url = src.value.contains("://");
                            spec.patches.push(Patch {
                                source: src,
                                description: String::new(),
                                is_url,
                                fixes: Vec::new(),
                            });
                        }
                    }
                }
                _ if v.is_null() => {}
                _ => r.error(
                    "buildit::yaml::expected-mapping",
                    v,
                    "patches must map each patch (a file or URL) to its description",
                    "expected a mapping",
                    "write `patches/fix.patch: \"what it does\"`",
                ),
            },
            "use" => {
                if let Some(u) = r.map(v, "use", &["with", "without"]) {
                    for (uk, _, uv) in u {
                        let list = r.strings(uv, uk);
                        if uk == "with" {
                            spec.use_with = list;
                        } else {
                            spec.use_without = list;
                        }
                    }
                }
            }
            "source" => {
                if let Some(s) = r.map(v, "source", &["url", "sha256", "path"]) {
                    for (sk, _, sv) in s {
                        let val = r.string(sv, sk);
                        match sk {
                            "url" => spec.source_url = val,
                            "sha256" => spec.source_sha256 = val,
                            _ => spec.source_path = val,
                        }
                    }
                }
            }
            "build-depends" => spec.build_depends = r.strings(v, key),
            "runtime-depends" => spec.runtime_depends = r.strings(v, key),
            "configure-flags" => spec.configure_flags = r.strings(v, key),
            "options" => {
                let _ = r.map(v, "options", &[]);
            }
            "phases" => {
                if let Some(ph) = r.map(v, "phases", PHASES) {
                    for (pk, _, pv) in ph {
                        if let Some(s) = r.string(pv, pk) {
                            spec.phases.push((pk.to_string(), s));
                        }
                    }
                }
            }
            _ => {
                let _ = k;
            }
        }
    }
    if spec.base.is_none() {
        for (have, key) in [
            (spec.name.is_some(), "name"),
            (spec.version.is_some(), "version"),
        ] {
            if !have {
                r.error("buildit::yaml::missing-key", root, format!("pkg.yaml has no `base:` and no `{key}:`"), "in this spec", "either name a package of the set with `base: category/name-version`, or write a full recipe with `name`, `version` and `source`");
            }
        }
        if spec.source_url.is_none() && spec.source_path.is_none() && spec.name.is_some() {
            r.error(
                "buildit::yaml::missing-key",
                root,
                "a pkg.yaml recipe without `base:` needs `source:` (`url` + `sha256`, or `path`)",
                "in this spec",
                "add `source: { url: …, sha256: … }`",
            );
        }
    }
    spec
}

// ---------------------------------------------------------------------------------------------
// container.yaml

/// Where a container's package comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum PackageRef {
    /// `type: embedded`, `path`: a pkg.yaml directory next to the spec.
    Embedded(Spanned<String>),
    /// `type: set`, `atom`: a package of the set.
    Set(Spanned<String>),
    /// `type: debian`, `name`, `version`: an exact Debian package.
    Debian {
        name: Spanned<String>,
        version: Option<Spanned<String>>,
    },
}

/// A `sync:` step: files copied into the image.
#[derive(Clone, Debug, PartialEq)]
pub struct Sync {
    pub src: Spanned<String>,
    pub dest: Spanned<String>,
    pub recursive: bool,
    pub mode: Option<Spanned<u32>>,
    pub owner: Option<Spanned<String>>,
    /// `allow-setuid: true`: `chmod` may set the setuid, setgid and sticky bits.
    pub allow_setuid: bool,
}

/// The setuid, setgid and sticky bits of a mode.
pub const SPECIAL_MODE_BITS: u32 = 0o7000;

/// The image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageType {
    Oci,
    OciArchive,
    DockerArchive,
    Aci,
}

impl ImageType {
    pub fn name(self) -> &'static str {
        match self {
            ImageType::Oci => "oci",
            ImageType::OciArchive => "oci-archive",
            ImageType::DockerArchive => "docker-archive",
            ImageType::Aci => "aci",
        }
    }
}

/// The `image:` step.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageStep {
    pub kind: ImageType,
    pub span: Span,
    pub content: Option<Spanned<String>>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub ports: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub compression: Option<Spanned<String>>,
    pub layers: Option<Spanned<String>>,
}

/// `container.yaml`: vars, packages, syncs and one image, in order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ContainerSpec {
    pub vars: Vec<(String, Spanned<String>)>,
    pub packages: Vec<PackageRef>,
    pub syncs: Vec<Sync>,
    pub image: Option<ImageStep>,
    pub span: Option<Span>,
}

const STEP_KINDS: &[&str] = &["vars", "package", "sync", "image"];

/// Read a `container.yaml` tree (a list of one-key steps).
pub fn read_container(r: &mut Reader, root: &Node) -> ContainerSpec {
    let mut spec = ContainerSpec {
        span: Some(r.span(root)),
        ..ContainerSpec::default()
    };
    let Kind::Seq(steps) = &root.kind else {
        r.error(
            "buildit::yaml::expected-list",
            root,
            format!(
                "container.yaml must be a list of steps, found {}",
                root.describe()
            ),
            "expected `- vars:`, `- package:`, `- sync:`, `- image:` steps",
            "start each step with `- `",
        );
        return spec;
    };
    for step in steps {
        let Some(pairs) = r.map(step, "a container.yaml step", STEP_KINDS) else {
            continue;
        };
        for (key, _, v) in pairs {
            match key {
                "vars" => {
                    if let Some(vars) = r.map(v, "vars", &[]) {
                        for (name, _, val) in vars {
                            if let Some(s) = r.string(val, name) {
                                spec.vars.push((name.to_string(), s));
                            }
                        }
                    }
                }
                "package" => {
                    if let Some(p) = read_package(r, v) {
                        spec.packages.push(p);
                    }
                }
                "sync" => {
                    if let Some(s) = read_sync(r, v) {
                        spec.syncs.push(s);
                    }
                }
                _ => {
                    if spec.image.is_some() {
                        r.error(
                            "buildit::yaml::duplicate-key",
                            v,
                            "a container.yaml has one `image:` step",
                            "second image step",
                            "merge the two image steps",
                        );
                    }
                    spec.image = read_image(r, v);
                }
            }
        }
    }
    if spec.image.is_none() {
        r.error(
            "buildit::yaml::missing-key",
            root,
            "container.yaml has no `image:` step",
            "in this spec",
            "add `- image: { type: oci }` (or aci, oci-archive, docker-archive)",
        );
    }
    spec
}

fn read_package(r: &mut Reader, v: &Node) -> Option<PackageRef> {
    let pairs = r.map(v, "package", &["type", "path", "atom", "name", "version"])?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _, _)| *key == k)
            .map(|(_, _, n)| *n)
    };
    let ty_node = match get("type") {
        Some(t) => t,
        None => {
            r.error("buildit::yaml::missing-key", v, "a package step needs `type:` (embedded, set or debian)", "in this step", "add `type: embedded` with `path:`, `type: set` with `atom:`, or `type: debian` with `name:`");
            return None;
        }
    };
    let ty = r.string(ty_node, "type")?;
    let need = |r: &mut Reader, k: &str, help: &str| -> Option<Spanned<String>> {
        match get(k) {
            Some(n) => r.string(n, k),
            None => {
                r.error(
                    "buildit::yaml::missing-key",
                    v,
                    format!("a `type: {}` package needs `{k}:`", ty.value),
                    "in this step",
                    help.to_string(),
                );
                None
            }
        }
    };
    match ty.value.as_str() {
        "embedded" => Some(PackageRef::Embedded(need(
            r,
            "path",
            "give the directory of its pkg.yaml, e.g. `path: ./pkgs/nginx`",
        )?)),
        "set" => Some(PackageRef::Set(need(
            r,
            "atom",
            "name the package, e.g. `atom: www-servers/nginx-1.22.1`",
        )?)),
        "debian" => {
            let name = need(r, "name", "name the Debian package, e.g. `name: libssl3`")?;
            let version = match get("version") {
                Some(n) => r.string(n, "version"),
                None => None,
            };
            Some(PackageRef::Debian { name, version })
        }
        other => {
            let help = match did_you_mean(other, &["embedded", "set", "debian"]) {
                Some(s) => {
                    format!("did you mean `{s}`? The package types are embedded, set and debian")
                }
                None => "the package types are embedded, set and debian".to_string(),
            };
            r.error(
                "buildit::yaml::unknown-value",
                ty_node,
                format!("unknown package type `{other}`"),
                "unknown type",
                help,
            );
            None
        }
    }
}

fn read_sync(r: &mut Reader, v: &Node) -> Option<Sync> {
    let pairs = r.map(
        v,
        "sync",
        &["src", "dest", "recursive", "chmod", "owner", "allow-setuid"],
    )?;
    let mut src = None;
    let mut dest = None;
    let mut recursive = false;
    let mut mode = None;
    let mut owner = None;
    let mut allow_setuid = false;
    for (k, _, n) in pairs {
        match k {
            "src" => src = r.string(n, "src"),
            "dest" => dest = r.string(n, "dest"),
            "recursive" => recursive = r.boolean(n, "recursive").unwrap_or(false),
            "chmod" => mode = r.chmod(n),
            "allow-setuid" => allow_setuid = r.boolean(n, "allow-setuid").unwrap_or(false),
            _ => owner = r.string(n, "owner"),
        }
    }
    if let Some(m) = &mode {
        let special = m.value & SPECIAL_MODE_BITS;
        if special != 0 && !allow_setuid {
            let bits: Vec<&str> = [(0o4000, "setuid"), (0o2000, "setgid"), (0o1000, "sticky")]
                .iter()
                .filter(|(b, _)| special & b != 0)
                .map(|(_, n)| *n)
                .collect();
            r.diags.push(
                Diagnostic::error(
                    "buildit::yaml::chmod-special",
                    format!(
                        "`chmod: 0{:o}` sets the {} bit{} in the image",
                        m.value,
                        match bits.split_last() {
                            Some((last, rest)) if !rest.is_empty() =>
                                format!("{} and {last}", rest.join(", ")),
                            _ => bits.join(""),
                        },
                        if bits.len() > 1 { "s" } else { "" }
                    ),
                )
                .with_label(m.span, "setuid, setgid or sticky")
                .with_help(format!(
                    "write `chmod: 0{:o}`, or add `allow-setuid: true` to this sync if the image really needs them",
                    m.value & !SPECIAL_MODE_BITS
                )),
            );
        }
    }
    for (have, key) in [(src.is_some(), "src"), (dest.is_some(), "dest")] {
        if !have {
            r.error(
                "buildit::yaml::missing-key",
                v,
                format!("a sync step needs `{key}:`"),
                "in this step",
                "a sync copies `src` (next to the spec) to `dest` (in the image)",
            );
        }
    }
    if let Some(d) = &dest {
        if !d.value.starts_with('/') {
            r.diags.push(
                Diagnostic::error(
                    "buildit::yaml::relative-dest",
                    format!("`dest: {}` must be an absolute path in the image", d.value),
                )
                .with_label(d.span, "not absolute")
                .with_help(format!("write `/{}`", d.value)),
            );
        }
    }
    Some(Sync {
        src: src?,
        dest: dest?,
        recursive,
        mode,
        owner,
        allow_setuid,
    })
}

fn read_image(r: &mut Reader, v: &Node) -> Option<ImageStep> {
    let pairs = r.map(
        v,
        "image",
        &[
            "type",
            "content",
            "config",
            "entrypoint",
            "cmd",
            "env",
            "user",
            "workdir",
            "ports",
            "labels",
            "compression",
            "layers",
        ],
    )?;
    let mut step = ImageStep {
        kind: ImageType::Oci,
        span: r.span(v),
        content: None,
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        env: Vec::new(),
        user: None,
        workdir: None,
        ports: Vec::new(),
        labels: Vec::new(),
        compression: None,
        layers: None,
    };
    let mut config_pairs: Vec<(&str, &Node)> = Vec::new();
    for (k, _, n) in pairs {
        match k {
            "type" => {
                let t = r.string(n, "type")?;
                step.kind = match t.value.as_str() {
                    "oci" => ImageType::Oci,
                    "oci-archive" => ImageType::OciArchive,
                    "docker-archive" | "docker" => ImageType::DockerArchive,
                    "aci" => ImageType::Aci,
                    other => {
                        let kinds = ["oci", "oci-archive", "docker-archive", "docker", "aci"];
                        let help = match did_you_mean(other, &kinds) {
                            Some(s) => format!("did you mean `{s}`? The image types are oci, oci-archive, docker-archive and aci"),
                            None => "the image types are oci, oci-archive, docker-archive and aci".into(),
                        };
                        r.error(
                            "buildit::yaml::unknown-value",
                            n,
                            format!("unknown image type `{other}`"),
                            "unknown type",
                            help,
                        );
                        return None;
                    }
                };
            }
            "content" => step.content = r.string(n, "content"),
            "config" => {
                if let Some(c) = r.map(
                    n,
                    "config",
                    &[
                        "entrypoint",
                        "cmd",
                        "env",
                        "user",
                        "workdir",
                        "ports",
                        "labels",
                    ],
                ) {
                    config_pairs.extend(c.into_iter().map(|(k, _, n)| (k, n)));
                }
            }
            "compression" => step.compression = r.string(n, "compression"),
            "layers" => step.layers = r.string(n, "layers"),
            other => config_pairs.push((other, n)),
        }
    }
    for (k, n) in config_pairs {
        match k {
            "entrypoint" => {
                step.entrypoint = r.strings(n, k).into_iter().map(|s| s.value).collect()
            }
            "cmd" => step.cmd = r.strings(n, k).into_iter().map(|s| s.value).collect(),
            "user" => step.user = r.string(n, k).map(|s| s.value),
            "workdir" => step.workdir = r.string(n, k).map(|s| s.value),
            "ports" => step.ports = r.strings(n, k).into_iter().map(|s| s.value).collect(),
            "env" | "labels" => {
                if let Some(m) = r.map(n, k, &[]) {
                    let kv: Vec<(String, String)> = m
                        .into_iter()
                        .filter_map(|(name, _, val)| {
                            r.string(val, name).map(|s| (name.to_string(), s.value))
                        })
                        .collect();
                    if k == "env" {
                        step.env = kv;
                    } else {
                        step.labels = kv;
                    }
                }
            }
            _ => {}
        }
    }
    if step.kind == ImageType::Aci && step.content.is_none() {
        r.error("buildit::yaml::missing-key", v, "an `aci` image needs `content:` (its manifest)", "in this step", "give the ACI manifest JSON as `content: |` (templates such as {{ name }} are filled from vars)");
    }
    Some(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_types_plain_scalars() {
        assert_eq!(yaml_literal("2").as_deref(), Some("2"));
        assert_eq!(yaml_literal("-7").as_deref(), Some("-7"));
        assert_eq!(yaml_literal("1.10").as_deref(), Some("1.10"));
        assert_eq!(yaml_literal(".5").as_deref(), Some("0.5"));
        assert_eq!(yaml_literal("Yes").as_deref(), Some("true"));
        assert_eq!(yaml_literal("off").as_deref(), Some("false"));
        for text in [
            "1.22.1",
            "v2",
            "",
            ".",
            "1e5",
            "nginx",
            "99999999999999999999",
        ] {
            assert_eq!(yaml_literal(text), None, "{text}");
        }
    }
}
