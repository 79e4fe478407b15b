//! Matching a closure's packages against the index: [`Package`] is what the driver found in
//! the evaluated closure, [`audit`] gives the [`Report`].
//!
//! A Debian package is matched by its **source package** in the `Debian:RELEASE` ecosystem
//! (Debian's advisories name source packages: libssl3's is openssl) with its source version
//! in dpkg's order. A source-built package is matched by the purl its recipe declares
//! (`meta.purl`, against `affected[].package.purl`, type, namespace and name) and by its CPE
//! (`meta.cpe`, vendor and product); its version is the recipe's. A finding is suppressed when
//! a patch of the package declares the advisory (or one of its aliases) fixed (`fixes:` in
//! pkg.yaml), or a VEX statement says the package is not affected or fixed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::index::{cpe_key, purl_key, Index};
use crate::range::{self, Scheme, Verdict};
use crate::severity::{self, Severity};
use crate::vex::Vex;
use crate::Result;

/// Where a package comes from, with what advisories know it by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A pinned Debian package.
    Debian {
        /// The Debian release number (`12` for bookworm).
        release: String,
        /// The source package and its version.
        source: String,
        source_version: String,
        arch: String,
    },
    /// A package built from source by a recipe.
    Built {
        /// `category/name-version`, when the package is one of the set.
        atom: String,
        /// The recipe's purl and CPE (without version; the recipe's version applies).
        purl: String,
        cpe: String,
    },
}

/// One package of the closure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub origin: Origin,
    /// Advisory ids its patches fix → the patch that declares it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fixes: BTreeMap<String, String>,
    /// Its store path (the member of the image layer that carries it).
    pub store_path: String,
    /// The image layers that carry it (`#N sha256:…` when the image is built, else its
    /// store path's own layer).
    pub layers: Vec<String>,
}

impl Package {
    /// The package's purl with its version (`pkg:deb/debian/NAME@VERSION?arch=…&distro=…`
    /// for Debian packages), or `None` for a built package without one.
    pub fn purl(&self) -> Option<String> {
        match &self.origin {
            Origin::Debian {
                release,
                arch,
                source,
                ..
            } => {
                let mut q = format!("arch={arch}&distro=debian-{release}");
                if source != &self.name {
                    q.push_str(&format!("&upstream={source}"));
                }
                Some(format!("pkg:deb/debian/{}@{}?{q}", self.name, self.version))
            }
            Origin::Built { purl, .. } if !purl.is_empty() => {
                let base = purl.split(['@', '?', '#']).next().unwrap_or(purl);
                Some(format!("{base}@{}", self.version))
            }
            Origin::Built { .. } => None,
        }
    }

    /// The index keys the package is looked up by, and the version compared.
    fn keys(&self) -> (Vec<String>, &str) {
        match &self.origin {
            Origin::Debian {
                release,
                source,
                source_version,
                ..
            } => (
                vec![format!("eco:Debian:{release}:{source}")],
                source_version.as_str(),
            ),
            Origin::Built { purl, cpe, .. } => {
                let keys = [purl_key(purl), cpe_key(cpe)]
                    .into_iter()
                    .flatten()
                    .collect();
                (keys, self.version.as_str())
            }
        }
    }

    /// Whether an `affected` entry is about this package (a record may list several).
    fn is_about(&self, a: &crate::osv::Affected) -> bool {
        let (mine, _) = self.keys();
        crate::index::keys_of(a).iter().any(|k| mine.contains(k))
    }
}

/// Why a finding does not count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Suppression {
    /// `patch` or `vex`.
    pub by: String,
    /// The VEX status it amounts to: `fixed` (a patch) or the statement's.
    pub status: String,
    pub reason: String,
}

/// One advisory that applies to one package.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The CVE (or the advisory's id when it names none).
    pub id: String,
    /// The OSV record's id.
    pub osv_id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub package: String,
    /// The package's version; for a Debian package the source package follows.
    pub installed: String,
    /// The Debian source package and version, for Debian packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub fixed: Option<String>,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<String>,
    pub purl: Option<String>,
    pub store_path: String,
    pub layers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppression>,
}

impl Finding {
    /// The id and every alias.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str())
            .chain(std::iter::once(self.osv_id.as_str()))
            .chain(self.aliases.iter().map(String::as_str))
    }
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The audit of one closure.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was audited (the argument as given).
    pub target: String,
    /// Every package checked.
    pub packages: Vec<Package>,
    /// Findings, most severe first; suppressed ones included (with their reason).
    pub findings: Vec<Finding>,
    /// How many advisories the index holds.
    pub advisories: u64,
}

impl Report {
    /// The findings that count (not suppressed).
    pub fn open_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.suppressed.is_none())
    }

    /// Whether a finding that counts reaches `level`.
    pub fn reaches(&self, level: Severity) -> bool {
        self.open_findings().any(|f| f.severity >= level)
    }
}

/// Match every package of `packages` against `index`, suppressing with the patches' `fixes`
/// and `vex`.
pub fn audit(
    target: &str,
    packages: Vec<Package>,
    index: &Index,
    vex: Option<&Vex>,
) -> Result<Report> {
    let mut findings = Vec::new();
    for p in &packages {
        let (keys, version) = p.keys();
        if keys.is_empty() {
            continue;
        }
        let scheme = Scheme::Dpkg;
        let mut seen = BTreeSet::new();
        for record in index.lookup(&keys)? {
            for a in record.affected.iter().filter(|a| p.is_about(a)) {
                let Verdict::Affected { fixed } = range::check(a, version, scheme) else {
                    continue;
                };
                if !seen.insert(record.id.clone()) {
                    continue;
                }
                let rated = severity::rate(&record, a);
                let mut f = Finding {
                    id: record.display_id().to_string(),
                    osv_id: record.id.clone(),
                    aliases: record
                        .aliases
                        .iter()
                        .chain(&record.upstream)
                        .cloned()
                        .collect(),
                    summary: record.summary.clone().unwrap_or_default(),
                    package: p.name.clone(),
                    installed: p.version.clone(),
                    source: match &p.origin {
                        Origin::Debian {
                            source,
                            source_version,
                            ..
                        } => Some(format!("{source} {source_version}")),
                        Origin::Built { .. } => None,
                    },
                    fixed,
                    severity: rated.severity,
                    score: rated.score,
                    vector: rated.vector,
                    purl: p.purl(),
                    store_path: p.store_path.clone(),
                    layers: p.layers.clone(),
                    suppressed: None,
                };
                f.suppressed = record
                    .all_ids()
                    .find_map(|id| p.fixes.get(id).map(|patch| (id, patch)))
                    .map(|(id, patch)| Suppression {
                        by: "patch".into(),
                        status: "fixed".into(),
                        reason: format!("the patch {patch} fixes {id} (pkg.yaml `fixes:`)"),
                    })
                    .or_else(|| vex.and_then(|v| v.suppression(&f)));
                findings.push(f);
            }
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package.cmp(&b.package))
    });
    Ok(Report {
        target: target.to_string(),
        packages,
        findings,
        advisories: index.records,
    })
}
