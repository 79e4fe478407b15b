//! Dependency-closure resolution over an [`Index`]: from root package names to the set of
//! exact package versions to install, as apt would choose them without recommends.
//!
//! Rules: `Pre-Depends` and `Depends` are followed (never `Recommends`/`Suggests`); in an
//! alternative `a | b` a group already satisfied by a chosen package is left alone, otherwise
//! the first satisfiable alternative wins; versioned constraints (`<<`, `<=`, `=`, `>=`, `>>`)
//! pick the newest version that satisfies them; virtual names are satisfied through
//! `Provides` (a versioned dependency only by a versioned provide), choosing the provider
//! with the smallest name when several could; `:any`/`:native`/`:amd64` qualifiers are
//! accepted, other architectures are not. Roots may pin a version as `name=version`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};

use super::index::{Index, Package};
use super::lock::LockEntry;
use super::version::compare_versions;
use super::DebianError;

/// A version relation of a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Relation {
    fn parse(op: &str) -> Option<Relation> {
        Some(match op {
            "<<" => Relation::Lt,
            "<=" | "<" => Relation::Le,
            "=" => Relation::Eq,
            ">=" | ">" => Relation::Ge,
            ">>" => Relation::Gt,
            _ => return None,
        })
    }

    /// The relation as a dependency field writes it (`<<`, `<=`, `=`, `>=`, `>>`).
    pub fn symbol(self) -> &'static str {
        match self {
            Relation::Lt => "<<",
            Relation::Le => "<=",
            Relation::Eq => "=",
            Relation::Ge => ">=",
            Relation::Gt => ">>",
        }
    }

    /// Whether `have` stands in this relation to `want`.
    pub fn holds(self, have: &str, want: &str) -> bool {
        let c = compare_versions(have, want);
        match self {
            Relation::Lt => c == Ordering::Less,
            Relation::Le => c != Ordering::Greater,
            Relation::Eq => c == Ordering::Equal,
            Relation::Ge => c != Ordering::Less,
            Relation::Gt => c == Ordering::Greater,
        }
    }
}

/// One alternative of a dependency: a name, maybe an architecture, maybe a version relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub arch: Option<String>,
    pub version: Option<(Relation, String)>,
}

impl Dep {
    fn arch_ok(&self, arch: &str) -> bool {
        match self.arch.as_deref() {
            None | Some("any") | Some("native") => true,
            Some(a) => a == arch || a == "all",
        }
    }

    fn version_ok(&self, v: &str) -> bool {
        match &self.version {
            None => true,
            Some((r, want)) => r.holds(v, want),
        }
    }
}

/// Parse a `Depends`-style field into groups of alternatives.
pub fn parse_depends(field: &str) -> Vec<Vec<Dep>> {
    field
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|group| group.split('|').filter_map(parse_dep).collect::<Vec<Dep>>())
        .filter(|g| !g.is_empty())
        .collect()
}

fn parse_dep(text: &str) -> Option<Dep> {
    let text = text.trim();
    // Drop architecture lists `[...]` and build-profile restrictions `<...>` (source
    // fields); a `<` inside the version parentheses is a relation.
    let text = text.split('[').next().unwrap_or(text);
    let from = match (text.find('('), text.rfind(')')) {
        (Some(_), Some(close)) => close + 1,
        (Some(_), None) => text.len(),
        _ => 0,
    };
    let text = match text[from..].find('<') {
        Some(i) => &text[..from + i],
        None => text,
    }
    .trim();
    let (head, ver) = match text.split_once('(') {
        Some((h, v)) => (h.trim(), Some(v.trim_end().trim_end_matches(')').trim())),
        None => (text, None),
    };
    if head.is_empty() {
        return None;
    }
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n.to_string(), Some(a.to_string())),
        None => (head.to_string(), None),
    };
    let version = ver.and_then(|v| {
        let op_len = v
            .find(|c: char| !matches!(c, '<' | '>' | '='))
            .unwrap_or(v.len());
        let rel = Relation::parse(&v[..op_len])?;
        Some((rel, v[op_len..].trim().to_string()))
    });
    Some(Dep {
        name,
        arch,
        version,
    })
}

/// The state of one resolution.
struct Resolver<'a> {
    index: &'a Index,
    arch: &'a str,
    selected: BTreeMap<String, &'a Package>,
    /// Who pulled a package in (for error chains).
    parent: HashMap<String, String>,
    /// Resolved dependency names per package.
    deps: BTreeMap<String, Vec<String>>,
}

impl<'a> Resolver<'a> {
    /// The name of a chosen package satisfying `d`, if any.
    fn satisfied(&self, d: &Dep) -> Option<String> {
        if !d.arch_ok(self.arch) {
            return None;
        }
        if let Some(p) = self.selected.get(&d.name) {
            if d.version_ok(&p.version) {
                return Some(p.name.clone());
            }
        }
        for (prov, prov_ver, provided) in self.index.providers(&d.name) {
            let Some(p) = self.selected.get(prov) else {
                continue;
            };
            if &p.version != prov_ver {
                continue;
            }
            let ok = match (&d.version, provided) {
                (None, _) => true,
                (Some((r, want)), Some(have)) => r.holds(have, want),
                (Some(_), None) => false,
            };
            if ok {
                return Some(p.name.clone());
            }
        }
        None
    }

    /// The package version to choose for `d`, if the index has one that does not clash with
    /// what is already chosen (and, when `strict`, passes the one-level look-ahead).
    fn choose(&self, d: &Dep, strict: bool) -> Option<&'a Package> {
        if !d.arch_ok(self.arch) {
            return None;
        }
        let fits = |p: &Package| match self.selected.get(&p.name) {
            Some(s) => s.version == p.version,
            None => true,
        };
        if let Some(p) = self
            .index
            .versions(&d.name)
            .into_iter()
            .find(|p| d.version_ok(&p.version))
        {
            if fits(p) && (!strict || self.installable(p)) {
                return Some(p);
            }
        }
        let mut provs: Vec<&(String, String, Option<String>)> =
            self.index.providers(&d.name).iter().collect();
        provs.sort();
        for (prov, prov_ver, provided) in provs {
            let ok = match (&d.version, provided) {
                (None, _) => true,
                (Some((r, want)), Some(have)) => r.holds(have, want),
                (Some(_), None) => false,
            };
            if !ok {
                continue;
            }
            // Only the provider's candidate (newest) version, like apt.
            match self.index.candidate(prov) {
                Some(p)
                    if &p.version == prov_ver && fits(p) && (!strict || self.installable(p)) =>
                {
                    return Some(p)
                }
                _ => {}
            }
        }
        None
    }

    /// A one-level look-ahead: every dependency group of `p` has an alternative the index
    /// can satisfy (so an alternative or provider that cannot work is passed over).
    fn installable(&self, p: &Package) -> bool {
        parse_depends(&p.pre_depends)
            .iter()
            .chain(parse_depends(&p.depends).iter())
            .all(|group| {
                group.iter().any(|d| {
                    d.arch_ok(self.arch)
                        && (self
                            .index
                            .versions(&d.name)
                            .iter()
                            .any(|q| d.version_ok(&q.version))
                            || self.index.providers(&d.name).iter().any(|(_, _, pv)| {
                                match (&d.version, pv) {
                                    (None, _) => true,
                                    (Some((r, want)), Some(have)) => r.holds(have, want),
                                    (Some(_), None) => false,
                                }
                            }))
                })
            })
    }

    fn chain(&self, name: &str) -> Vec<String> {
        let mut v = vec![name.to_string()];
        let mut cur = name;
        while let Some(p) = self.parent.get(cur) {
            if v.len() > 50 || v.contains(p) {
                break;
            }
            v.push(p.clone());
            cur = p;
        }
        v.reverse();
        v
    }
}

/// Resolve the dependency closure of `roots` (`name` or `name=version`) for architecture
/// `amd64` (with `all`). The result is sorted by name.
pub fn resolve(index: &Index, roots: &[&str]) -> Result<Vec<LockEntry>, DebianError> {
    resolve_for(index, roots, "amd64")
}

/// [`resolve`] for another architecture name.
pub fn resolve_for(
    index: &Index,
    roots: &[&str],
    arch: &str,
) -> Result<Vec<LockEntry>, DebianError> {
    let mut r = Resolver {
        index,
        arch,
        selected: BTreeMap::new(),
        parent: HashMap::new(),
        deps: BTreeMap::new(),
    };
    let mut queue: VecDeque<&Package> = VecDeque::new();
    for root in roots {
        let (name, pin) = match root.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (root.trim(), None),
        };
        if !index.knows(name) {
            return Err(DebianError::UnknownPackage {
                name: name.to_string(),
                suggestions: index.suggestions(name),
            });
        }
        let dep = Dep {
            name: name.to_string(),
            arch: None,
            version: pin.map(|v| (Relation::Eq, v.to_string())),
        };
        if r.satisfied(&dep).is_some() {
            continue;
        }
        let p = r.choose(&dep, false).ok_or_else(|| match pin {
            Some(v) => DebianError::NoSuchVersion {
                name: name.to_string(),
                version: v.to_string(),
                available: index
                    .versions(name)
                    .iter()
                    .map(|p| p.version.clone())
                    .collect(),
            },
            None => DebianError::Unsatisfiable {
                chain: vec![name.to_string()],
                dependency: name.to_string(),
            },
        })?;
        r.selected.insert(p.name.clone(), p);
        queue.push_back(p);
    }
    while let Some(p) = queue.pop_front() {
        let mut names = Vec::new();
        let groups = parse_depends(&p.pre_depends)
            .into_iter()
            .chain(parse_depends(&p.depends));
        for group in groups {
            if let Some(n) = group.iter().find_map(|d| r.satisfied(d)) {
                names.push(n);
                continue;
            }
            let chosen = group
                .iter()
                .find_map(|d| r.choose(d, true))
                .or_else(|| group.iter().find_map(|d| r.choose(d, false)));
            let Some(chosen) = chosen else {
                return Err(DebianError::Unsatisfiable {
                    chain: r.chain(&p.name),
                    dependency: render_group(&group),
                });
            };
            r.selected.insert(chosen.name.clone(), chosen);
            r.parent.insert(chosen.name.clone(), p.name.clone());
            names.push(chosen.name.clone());
            queue.push_back(chosen);
        }
        names.sort();
        names.dedup();
        names.retain(|n| n != &p.name);
        r.deps.insert(p.name.clone(), names);
    }
    Ok(r.selected
        .values()
        .map(|p| LockEntry {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            source: p.source.clone(),
            source_version: p.source_version.clone().filter(|v| *v != p.version),
            mirror: p.mirror.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
            depends: r.deps.get(&p.name).cloned().unwrap_or_default(),
        })
        .collect())
}

fn render_group(group: &[Dep]) -> String {
    group
        .iter()
        .map(|d| {
            let mut s = d.name.clone();
            if let Some(a) = &d.arch {
                s.push(':');
                s.push_str(a);
            }
            if let Some((r, v)) = &d.version {
                let op = match r {
                    Relation::Lt => "<<",
                    Relation::Le => "<=",
                    Relation::Eq => "=",
                    Relation::Ge => ">=",
                    Relation::Gt => ">>",
                };
                s.push_str(&format!(" ({op} {v})"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
