//! The SBOMs of an image: SPDX 2.3 JSON (`sbom.spdx.json`) and CycloneDX 1.6 JSON
//! (`sbom.cdx.json`, see [`crate::sbom_cdx`]) written beside the image (next to `index.json`
//! but not listed in it), made from the derivation graph's facts that `image.bld` puts into
//! the spec ([`SbomPackage`]): every package of the runtime closure with its version, source,
//! patches, build options, toolchain and runtime dependencies, and every Debian runtime
//! package with its exact version, source package and `.deb` hash.
//!
//! Both documents come from one [`Plan`]: the elements (the image or package described, each
//! built package, the source it was generated from, each patch applied, the toolchain that
//! built it, each Debian package) and the relationships between them (CONTAINS, DEPENDS_ON,
//! GENERATED_FROM, PATCH_APPLIED, BUILD_TOOL_OF), so the two formats say the same things.
//!
//! Every value is machine-independent, because the SBOM is part of the image and the image is
//! bit-identical across machines: a `mirror://NAME/…` source is never resolved to a host (its
//! download location is `NOASSERTION`, the `mirror://` location and the hash are an external
//! reference and the comment), the namespace and serial number are derived from the image's
//! manifest digest (or the package's store path), the creation time is the image's (the spec's
//! `SOURCE_DATE_EPOCH`, else 1970-01-01T00:00:01Z), and elements are in the spec's order
//! (which comes from the evaluation, not from the file system), so the same image gives the
//! same bytes.
//!
//! The SPDX document is built with `spdx-rs`'s typed model, purls with `packageurl` and
//! licence expressions are checked against the SPDX licence list with `spdx` (an expression
//! the list does not know becomes `NOASSERTION`, the recipe's text kept in the comment, so the
//! reference validator never sees an unknown identifier).
//!
//! Suppliers (the NTIA minimum elements want one for every component): Debian packages and the
//! toolchain are supplied by Debian; a package built from source is supplied by the author its
//! pkg.yaml names (`Person: NAME (EMAIL)`), else by the buildit package set it comes from; a
//! source or fetched patch by where it is distributed (Debian's archive for `mirror://debian`,
//! else the URL's host); the image by its `org.opencontainers.image.vendor` label
//! (Organization) or `org.opencontainers.image.authors` label (Person), else the package set.

use std::collections::{BTreeMap, HashMap};

use ::spdx as spdx_expr;
use packageurl::PackageUrl;
use sha2::{Digest, Sha256};
use spdx_rs::models as spdx;

use crate::{ImageError, ImageSpec};

/// A patch applied to a package's source, in order.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SbomPatch {
    /// The file name (a local patch) or the derivation name (a fetched one).
    pub name: String,
    /// Where a fetched patch came from ("" for a local file).
    #[serde(default)]
    pub url: String,
    /// sha256 (hex) of the patch ("" when unknown).
    #[serde(default)]
    pub sha256: String,
}

/// A package of the image, as the SBOM describes it.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SbomPackage {
    pub name: String,
    pub version: String,
    /// `category/name-version` for a package of the set ("" otherwise).
    #[serde(default)]
    pub atom: String,
    /// The store path (`/bld/store/<hash>-<name>`).
    #[serde(default)]
    pub path: String,
    /// The source's URL(s), space-separated ("" for a local source); a Debian package's
    /// `mirror://` pool location.
    #[serde(default)]
    pub source_url: String,
    /// The source's sha256 (hex) ("" when unknown); a Debian package's `.deb` sha256.
    #[serde(default)]
    pub source_sha256: String,
    #[serde(default)]
    pub patches: Vec<SbomPatch>,
    /// The enabled build options, sorted.
    #[serde(default)]
    pub options: Vec<String>,
    /// A Debian package (laid out at `/`).
    #[serde(default)]
    pub debian: bool,
    /// The `.deb`'s architecture (Debian packages).
    #[serde(default)]
    pub arch: String,
    /// The Debian source package (Debian packages; advisories are keyed by it).
    #[serde(default)]
    pub source: String,
    /// The Debian source package's version when the lock records one apart from the binary
    /// version ("" otherwise).
    #[serde(default)]
    pub source_version: String,
    /// The Debian suite of the lock (`bookworm`; Debian packages).
    #[serde(default)]
    pub suite: String,
    /// The package's purl as its recipe declares it (`meta.purl`, maybe without version).
    #[serde(default)]
    pub purl: String,
    /// The package's CPE as its recipe declares it (`meta.cpe`, maybe without version).
    #[serde(default)]
    pub cpe: String,
    /// The advisories the package's patches fix (`meta.fixes`, for `buildit audit`).
    #[serde(default)]
    pub fixes: BTreeMap<String, serde_json::Value>,
    /// Upstream's page (`meta.homepage`).
    #[serde(default)]
    pub homepage: String,
    /// The licence the recipe declares (`meta.license`, an SPDX expression).
    #[serde(default)]
    pub license: String,
    /// Who customised the package (pkg.yaml's `author`, `NAME <EMAIL>`).
    #[serde(default)]
    pub author: String,
    /// What it needs at run time: store paths of packages, `deb:NAME` for Debian packages.
    #[serde(default)]
    pub depends: Vec<String>,
    /// The toolchain (sysroot) store path its build saw at /usr ("" when none).
    #[serde(default)]
    pub builder: String,
}

/// The supplier given to what the package set builds when its spec names no author.
pub const PACKAGE_SET: &str = "buildit package set";

/// A person or an organisation (SPDX "actor", CycloneDX organizational entity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub person: bool,
    pub name: String,
    pub email: String,
}

impl Actor {
    fn org(name: &str) -> Actor {
        Actor {
            person: false,
            name: name.to_string(),
            email: String::new(),
        }
    }

    /// `NAME <EMAIL>` or `NAME` as a person or an organisation.
    fn parse(text: &str, person: bool) -> Option<Actor> {
        let text = text.trim();
        let (name, email) = match text.split_once('<') {
            Some((n, rest)) => (n.trim(), rest.trim_end_matches('>').trim()),
            None => (text, ""),
        };
        // parentheses delimit the e-mail in SPDX's actor syntax
        let clean = |s: &str| s.replace(['(', ')'], "").trim().to_string();
        let name = clean(name);
        (!name.is_empty()).then(|| Actor {
            person,
            name,
            email: clean(email),
        })
    }

    /// SPDX's `Person: NAME (EMAIL)` / `Organization: NAME`.
    pub fn spdx(&self) -> String {
        let kind = if self.person {
            "Person"
        } else {
            "Organization"
        };
        if self.email.is_empty() {
            format!("{kind}: {}", self.name)
        } else {
            format!("{kind}: {} ({})", self.name, self.email)
        }
    }
}

/// What kind of element of the [`Plan`] this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The image the document describes.
    Image,
    /// A package built from source.
    Built,
    /// The source a built package was generated from.
    Source,
    /// A patch applied to a built package.
    Patch,
    /// The toolchain (sysroot) that built packages.
    Toolchain,
    /// A Debian package (binary, from the lock).
    Debian,
}

/// One element of the SBOM, in terms both formats share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// Unique within the document: SPDX's `SPDXRef-<id>`, CycloneDX's `bom-ref`.
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub version: String,
    pub supplier: Actor,
    /// A canonical download URL (http, https, ftp), never a mirror's resolution.
    pub download: Option<String>,
    /// The `mirror://NAME/…` location (resolved by whoever fetches it).
    pub mirror: Option<String>,
    pub sha256: Option<String>,
    pub purl: Option<String>,
    pub cpe: Option<String>,
    pub homepage: Option<String>,
    /// A licence expression the SPDX list knows.
    pub license: Option<String>,
    /// The file name of a `.deb` or a patch.
    pub file_name: Option<String>,
    pub comment: String,
    /// Name/value facts (CycloneDX properties; in SPDX they are in the comment).
    pub properties: Vec<(String, String)>,
}

/// An SPDX relationship between two elements (by id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rel {
    Contains,
    DependsOn,
    GeneratedFrom,
    PatchApplied,
    BuildToolOf,
}

/// Everything both documents say, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The document's name (`name:tag`, `name-version`).
    pub doc_name: String,
    /// SPDX document namespace (a URN derived from the image or package identity).
    pub namespace: String,
    /// The creation time, RFC 3339.
    pub created: String,
    /// The creation time as seconds since the epoch.
    pub created_epoch: i64,
    /// The element described (the first of `elements`).
    pub root: usize,
    pub elements: Vec<Element>,
    /// (from, relationship, to) as indexes into `elements`.
    pub relations: Vec<(usize, Rel, usize)>,
}

/// What the document describes.
pub enum Subject<'a> {
    /// An image, with its manifest digest (`sha256:…`).
    Image {
        spec: &'a ImageSpec,
        manifest_digest: &'a str,
    },
    /// The first package of the list (`buildit sbom ATOM`), with its runtime closure.
    Package,
}

/// SPDX identifiers allow letters, digits, `.` and `-`.
fn id_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The first of a space-separated URL list.
fn first_url(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// A URL someone can download from without buildit's mirror configuration.
fn canonical(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let ok = ["http://", "https://", "ftp://"]
        .iter()
        .any(|s| lower.starts_with(s))
        && url.len() > 8
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| url.to_string())
}

/// A `mirror://NAME/PATH` location.
fn mirror(url: &str) -> Option<String> {
    let rest = url.strip_prefix("mirror://")?;
    let (name, path) = rest.split_once('/')?;
    let clean = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    (clean(name) && clean(path)).then(|| url.to_string())
}

/// Who distributes what is at `url`: Debian's archive for `mirror://debian…`, the URL's host
/// otherwise (`None` for a local file).
fn distributor(url: &str) -> Option<Actor> {
    if let Some(rest) = url.strip_prefix("mirror://") {
        let name = rest.split('/').next().unwrap_or("");
        return Some(if name.starts_with("debian") {
            Actor::org("Debian")
        } else {
            Actor::org(&format!("buildit mirror {name}"))
        });
    }
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    (!host.is_empty()).then(|| Actor::org(host))
}

/// Debian's release number for a suite (`bookworm` → `debian-12`), for purls' `distro`.
pub fn distro(suite: &str) -> String {
    let n = match suite {
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        "" => "12",
        other => other,
    };
    format!("debian-{n}")
}

/// The purl of a Debian binary package: `pkg:deb/debian/NAME@VERSION?arch=…&distro=…`, with
/// `upstream=SOURCE@SOURCE_VERSION` when the lock records a source version other than the
/// binary version, else `upstream=SOURCE` when the source package has another name.
pub fn debian_purl(p: &SbomPackage) -> Option<String> {
    let mut u = PackageUrl::new("deb", p.name.as_str()).ok()?;
    u.with_namespace("debian").ok()?;
    u.with_version(p.version.as_str()).ok()?;
    let arch = if p.arch.is_empty() { "amd64" } else { &p.arch };
    u.add_qualifier("arch", arch).ok()?;
    u.add_qualifier("distro", distro(&p.suite)).ok()?;
    let source = if p.source.is_empty() {
        &p.name
    } else {
        &p.source
    };
    if !p.source_version.is_empty() && p.source_version != p.version {
        u.add_qualifier("upstream", format!("{source}@{}", p.source_version))
            .ok()?;
    } else if source != &p.name {
        u.add_qualifier("upstream", source.as_str()).ok()?;
    }
    Some(u.to_string())
}

/// The purl of a package built from source: the recipe's (`meta.purl`, given the version when
/// it has none), else `pkg:generic/NAME@VERSION`; both with `checksum=sha256:…` of the source
/// and `download_url=…` when the source has a canonical URL.
pub fn built_purl(p: &SbomPackage) -> Option<String> {
    let declared = (!p.purl.is_empty())
        .then(|| p.purl.parse::<PackageUrl>().ok())
        .flatten();
    let mut u = match declared {
        Some(u) => u,
        None => PackageUrl::new("generic", p.name.as_str()).ok()?,
    };
    if u.version().is_none() && !p.version.is_empty() {
        u.with_version(p.version.clone()).ok()?;
    }
    if is_sha256(&p.source_sha256) && !u.qualifiers().contains_key("checksum") {
        u.add_qualifier("checksum", format!("sha256:{}", p.source_sha256))
            .ok()?;
    }
    if let Some(url) = canonical(first_url(&p.source_url)) {
        if !u.qualifiers().contains_key("download_url") {
            u.add_qualifier("download_url", url).ok()?;
        }
    }
    Some(u.to_string())
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The recipe's CPE as a complete CPE 2.3 formatted string: the version filled in when the
/// recipe left it out, the remaining components `*`. `None` when it is not a CPE 2.3 prefix.
pub fn full_cpe(cpe: &str, version: &str) -> Option<String> {
    let rest = cpe.strip_prefix("cpe:2.3:")?;
    // components are separated by unescaped colons
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in rest.chars() {
        if esc {
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            cur.push(c);
            esc = true;
        } else if c == ':' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    if parts.len() < 3 || parts.len() > 11 || !matches!(parts[0].as_str(), "a" | "o" | "h") {
        return None;
    }
    let valid = |s: &str| {
        !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) && s.is_ascii()
    };
    if !parts.iter().all(|p| valid(p)) {
        return None;
    }
    let escaped_version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect();
    if parts.len() < 4 {
        parts.push(if version.is_empty() || !version.is_ascii() {
            "*".to_string()
        } else {
            escaped_version
        });
    }
    while parts.len() < 11 {
        parts.push("*".to_string());
    }
    Some(format!("cpe:2.3:{}", parts.join(":")))
}

/// The licence expression if the SPDX licence list knows every identifier in it.
fn known_license(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 1000 {
        return None;
    }
    spdx_expr::Expression::parse(s).ok().map(|_| s.to_string())
}

/// The store path's hash part (`/bld/store/<hash>-name` → `<hash>`).
fn hash_part(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('-').next().unwrap_or(base)
}

/// The store path's name (`/bld/store/<hash>-name` → `name`).
fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split_once('-').map(|(_, n)| n).unwrap_or(base)
}

impl Plan {
    /// The plan of `packages` (an image's [`ImageSpec::sbom`]) as `subject` describes them,
    /// created at `created` (seconds since the epoch).
    pub fn new(subject: &Subject<'_>, packages: &[SbomPackage], created: i64) -> Plan {
        let mut elements: Vec<Element> = Vec::new();
        let mut relations = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let set_supplier = Actor::org(PACKAGE_SET);
        let (doc_name, namespace, root) = match subject {
            Subject::Image {
                spec,
                manifest_digest,
            } => {
                let hexd = manifest_digest
                    .strip_prefix("sha256:")
                    .unwrap_or(manifest_digest);
                let supplier = spec
                    .labels
                    .get("org.opencontainers.image.vendor")
                    .and_then(|v| Actor::parse(v, false))
                    .or_else(|| {
                        spec.labels
                            .get("org.opencontainers.image.authors")
                            .and_then(|v| Actor::parse(v, true))
                    })
                    .unwrap_or_else(|| set_supplier.clone());
                let short = spec.name.rsplit('/').next().unwrap_or(&spec.name);
                let purl = PackageUrl::new("oci", short.to_ascii_lowercase())
                    .ok()
                    .and_then(|mut u| {
                        u.with_version(manifest_digest.to_string()).ok()?;
                        if !spec.tag.is_empty() {
                            u.add_qualifier("tag", spec.tag.clone()).ok()?;
                        }
                        Some(u.to_string())
                    });
                elements.push(Element {
                    id: "Image".into(),
                    kind: Kind::Image,
                    name: spec.name.clone(),
                    version: spec.tag.clone(),
                    supplier,
                    download: None,
                    mirror: None,
                    sha256: is_sha256(hexd).then(|| hexd.to_string()),
                    purl,
                    cpe: None,
                    homepage: None,
                    license: None,
                    file_name: None,
                    comment: format!(
                        "OCI image {}:{} ({} {}); the checksum is its manifest's",
                        spec.name, spec.tag, spec.os, spec.arch
                    ),
                    properties: vec![
                        ("buildit:os".into(), spec.os.clone()),
                        ("buildit:arch".into(), spec.arch.clone()),
                    ],
                });
                (
                    format!("{}:{}", spec.name, spec.tag),
                    format!(
                        "urn:buildit:image:{}:{}:sha256:{hexd}",
                        id_part(&spec.name),
                        id_part(&spec.tag)
                    ),
                    Some(0),
                )
            }
            Subject::Package => {
                let (name, path) = packages
                    .first()
                    .map(|p| (format!("{}-{}", p.name, p.version), p.path.as_str()))
                    .unwrap_or_default();
                (
                    name.clone(),
                    format!("urn:buildit:package:{}:{}", hash_part(path), id_part(&name)),
                    None,
                )
            }
        };
        let mut toolchains: BTreeMap<String, usize> = BTreeMap::new();
        let mut built_index = Vec::new();
        for (i, p) in packages.iter().enumerate() {
            let n = i + 1;
            if p.debian {
                let sha = is_sha256(&p.source_sha256).then(|| p.source_sha256.clone());
                let loc = mirror(&p.source_url);
                let arch = if p.arch.is_empty() { "amd64" } else { &p.arch };
                let source = if p.source.is_empty() {
                    &p.name
                } else {
                    &p.source
                };
                let source_version = (!p.source_version.is_empty()
                    && p.source_version != p.version)
                    .then_some(p.source_version.as_str());
                let mut comment = match source_version {
                    Some(v) => format!(
                        "Debian package of source package {source} {v}, unpacked at / (merged /usr); store path {}",
                        p.path
                    ),
                    None => format!(
                        "Debian package of source package {source}, unpacked at / (merged /usr); store path {}",
                        p.path
                    ),
                };
                if let Some(l) = &loc {
                    comment.push_str(&format!(
                        "; fetched from {l} (the mirror named there, never a resolved host)"
                    ));
                }
                let idx = elements.len();
                elements.push(Element {
                    id: format!("Debian-{n}-{}", id_part(&p.name)),
                    kind: Kind::Debian,
                    name: p.name.clone(),
                    version: p.version.clone(),
                    supplier: Actor::org("Debian"),
                    download: None,
                    mirror: loc,
                    sha256: sha,
                    purl: debian_purl(p),
                    cpe: None,
                    homepage: None,
                    license: None,
                    file_name: Some(format!(
                        "{}_{}_{arch}.deb",
                        p.name,
                        p.version.replace(':', "%3a")
                    )),
                    comment,
                    properties: std::iter::once((
                        "buildit:debian-source".to_string(),
                        source.to_string(),
                    ))
                    .chain(
                        source_version
                            .map(|v| ("buildit:debian-source-version".to_string(), v.to_string())),
                    )
                    .chain(std::iter::once((
                        "buildit:store-path".to_string(),
                        p.path.clone(),
                    )))
                    .collect(),
                });
                by_key.insert(format!("deb:{}", p.name), idx);
                by_key.insert(p.path.clone(), idx);
                continue;
            }
            let supplier = Actor::parse(&p.author, true).unwrap_or_else(|| set_supplier.clone());
            let src_url = first_url(&p.source_url);
            let mut comment = format!(
                "built from source by buildit; build options: {}",
                if p.options.is_empty() {
                    "(none)".to_string()
                } else {
                    p.options.join(" ")
                }
            );
            if !p.atom.is_empty() {
                comment.push_str(&format!("; atom {}", p.atom));
            }
            comment.push_str(&format!("; store path {}", p.path));
            if !p.builder.is_empty() {
                comment.push_str(&format!("; toolchain {}", p.builder));
            }
            if !p.license.is_empty() && known_license(&p.license).is_none() {
                comment.push_str(&format!(
                    "; the recipe's licence (not an SPDX expression): {}",
                    p.license
                ));
            }
            let mut properties: Vec<(String, String)> = p
                .options
                .iter()
                .map(|o| ("buildit:option".to_string(), o.clone()))
                .collect();
            if !p.atom.is_empty() {
                properties.push(("buildit:atom".into(), p.atom.clone()));
            }
            properties.push(("buildit:store-path".into(), p.path.clone()));
            if !p.builder.is_empty() {
                properties.push(("buildit:toolchain".into(), p.builder.clone()));
            }
            let idx = elements.len();
            elements.push(Element {
                id: format!("Package-{n}-{}", id_part(&p.name)),
                kind: Kind::Built,
                name: p.name.clone(),
                version: p.version.clone(),
                supplier: supplier.clone(),
                download: None,
                mirror: None,
                sha256: None,
                purl: built_purl(p),
                cpe: full_cpe(&p.cpe, &p.version),
                homepage: canonical(&p.homepage),
                license: known_license(&p.license),
                file_name: None,
                comment,
                properties,
            });
            by_key.insert(p.path.clone(), idx);
            built_index.push((i, idx));
            // the source it was generated from
            if !src_url.is_empty() || is_sha256(&p.source_sha256) {
                let loc = mirror(src_url);
                let download = canonical(src_url);
                let mut comment = match (&download, &loc) {
                    (Some(u), _) => format!("source of {} {}: {u}", p.name, p.version),
                    (None, Some(m)) => format!(
                        "source of {} {}: {m} (a buildit mirror name, resolved by whoever fetches it)",
                        p.name, p.version
                    ),
                    (None, None) => format!("source of {} {} (local)", p.name, p.version),
                };
                if is_sha256(&p.source_sha256) {
                    comment.push_str(&format!("; sha256 {}", p.source_sha256));
                }
                let s = elements.len();
                elements.push(Element {
                    id: format!("Source-{n}-{}", id_part(&p.name)),
                    kind: Kind::Source,
                    name: format!("{}-source", p.name),
                    version: p.version.clone(),
                    supplier: distributor(src_url).unwrap_or_else(|| supplier.clone()),
                    download,
                    mirror: loc,
                    sha256: is_sha256(&p.source_sha256).then(|| p.source_sha256.clone()),
                    purl: None,
                    cpe: None,
                    homepage: canonical(&p.homepage),
                    license: known_license(&p.license),
                    file_name: src_url
                        .rsplit('/')
                        .next()
                        .filter(|f| !f.is_empty())
                        .map(str::to_string),
                    comment,
                    properties: Vec::new(),
                });
                relations.push((idx, Rel::GeneratedFrom, s));
            }
            for (j, patch) in p.patches.iter().enumerate() {
                let url = first_url(&patch.url);
                let mut comment = format!(
                    "patch {} of {}, applied to its source in this order",
                    j + 1,
                    p.name
                );
                if !url.is_empty() {
                    comment.push_str(&format!("; from {url}"));
                }
                if is_sha256(&patch.sha256) {
                    comment.push_str(&format!("; sha256 {}", patch.sha256));
                }
                let fixes = patch_fixes(&p.fixes, &patch.name);
                if !fixes.is_empty() {
                    comment.push_str(&format!("; fixes {}", fixes.join(", ")));
                }
                let e = elements.len();
                elements.push(Element {
                    id: format!("Patch-{n}-{}-{}", j + 1, id_part(&patch.name)),
                    kind: Kind::Patch,
                    name: patch.name.clone(),
                    version: p.version.clone(),
                    supplier: distributor(url).unwrap_or_else(|| supplier.clone()),
                    download: canonical(url),
                    mirror: mirror(url),
                    sha256: is_sha256(&patch.sha256).then(|| patch.sha256.clone()),
                    purl: None,
                    cpe: None,
                    homepage: None,
                    license: None,
                    file_name: Some(patch.name.clone()),
                    comment,
                    properties: fixes
                        .into_iter()
                        .map(|f| ("buildit:fixes".to_string(), f))
                        .collect(),
                });
                relations.push((e, Rel::PatchApplied, idx));
            }
            if !p.builder.is_empty() {
                let t = match toolchains.get(&p.builder) {
                    Some(t) => *t,
                    None => {
                        let t = elements.len();
                        elements.push(Element {
                            id: format!("Toolchain-{}", toolchains.len() + 1),
                            kind: Kind::Toolchain,
                            name: store_name(&p.builder).to_string(),
                            version: hash_part(&p.builder).to_string(),
                            supplier: Actor::org("Debian"),
                            download: None,
                            mirror: None,
                            sha256: None,
                            purl: None,
                            cpe: None,
                            homepage: None,
                            license: None,
                            file_name: None,
                            comment: format!(
                                "the Debian toolchain (pinned in buildit's Debian lock) that builds see at /usr, in buildit's build sandbox; store path {}; its version is the store path's hash",
                                p.builder
                            ),
                            properties: vec![("buildit:store-path".into(), p.builder.clone())],
                        });
                        toolchains.insert(p.builder.clone(), t);
                        t
                    }
                };
                relations.push((t, Rel::BuildToolOf, idx));
            }
        }
        let root = root.unwrap_or(0);
        // the image contains every package of its closure
        if matches!(subject, Subject::Image { .. }) {
            let contained: Vec<usize> = elements
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.kind, Kind::Built | Kind::Debian))
                .map(|(i, _)| i)
                .collect();
            for i in contained {
                relations.push((root, Rel::Contains, i));
            }
        }
        // runtime dependencies, as the facts name them (each once, in order)
        for p in packages {
            let Some(&from) = by_key
                .get(&if p.debian {
                    format!("deb:{}", p.name)
                } else {
                    p.path.clone()
                })
                .filter(|_| !p.path.is_empty() || p.debian)
            else {
                continue;
            };
            let mut seen = Vec::new();
            for d in &p.depends {
                if let Some(&to) = by_key.get(d) {
                    if to != from && !seen.contains(&to) {
                        seen.push(to);
                        relations.push((from, Rel::DependsOn, to));
                    }
                }
            }
        }
        Plan {
            doc_name,
            namespace,
            created: crate::oci::rfc3339(created),
            created_epoch: created,
            root,
            elements,
            relations,
        }
    }

    /// The plan of the image `spec` whose manifest digest is `manifest_digest`.
    pub fn for_image(spec: &ImageSpec, manifest_digest: &str) -> Plan {
        Plan::new(
            &Subject::Image {
                spec,
                manifest_digest,
            },
            &spec.sbom,
            spec.created.unwrap_or(1),
        )
    }

    /// A deterministic RFC 4122 UUID (version 8: custom) derived from the namespace, for
    /// CycloneDX's serial number.
    pub fn serial_uuid(&self) -> String {
        let d = Sha256::digest(self.namespace.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "urn:uuid:{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// The SPDX 2.3 document.
    pub fn spdx(&self) -> spdx::SPDX {
        let packages: Vec<spdx::PackageInformation> =
            self.elements.iter().map(spdx_package).collect();
        let id = |i: usize| format!("SPDXRef-{}", self.elements[i].id);
        let mut relationships = vec![spdx::Relationship::new(
            "SPDXRef-DOCUMENT",
            &id(self.root),
            spdx::RelationshipType::Describes,
            None,
        )];
        for &(a, r, b) in &self.relations {
            let t = match r {
                Rel::Contains => spdx::RelationshipType::Contains,
                Rel::DependsOn => spdx::RelationshipType::DependsOn,
                Rel::GeneratedFrom => spdx::RelationshipType::GeneratedFrom,
                Rel::PatchApplied => spdx::RelationshipType::PatchApplied,
                Rel::BuildToolOf => spdx::RelationshipType::BuildToolOf,
            };
            relationships.push(spdx::Relationship::new(&id(a), &id(b), t, None));
        }
        let created = chrono::DateTime::from_timestamp(self.created_epoch, 0).unwrap_or_default();
        spdx::SPDX {
            document_creation_information: spdx::DocumentCreationInformation {
                spdx_version: "SPDX-2.3".into(),
                data_license: "CC0-1.0".into(),
                spdx_identifier: "SPDXRef-DOCUMENT".into(),
                document_name: self.doc_name.clone(),
                spdx_document_namespace: self.namespace.clone(),
                external_document_references: Vec::new(),
                creation_info: spdx::CreationInfo {
                    license_list_version: None,
                    creators: vec![format!("Tool: buildit-{}", env!("CARGO_PKG_VERSION"))],
                    created,
                    creator_comment: Some(
                        "made from the build graph: the creation time is the image's (SOURCE_DATE_EPOCH, else 1970-01-01T00:00:01Z), so the document is the same on every machine".into(),
                    ),
                },
                document_comment: None,
                document_describes: vec![id(self.root)],
            },
            package_information: packages,
            other_licensing_information_detected: Vec::new(),
            file_information: Vec::new(),
            snippet_information: Vec::new(),
            relationships,
            annotations: Vec::new(),
            spdx_ref_counter: 0,
        }
    }
}

/// The advisories `fixes` (the recipe's `meta.fixes`) says the patch `patch` fixes: either
/// keyed by the patch (`{ "x.patch" = [ "CVE-…" ]; }`) or by the advisory
/// (`{ "CVE-…" = "x.patch"; }`).
fn patch_fixes(fixes: &BTreeMap<String, serde_json::Value>, patch: &str) -> Vec<String> {
    fn names(v: &serde_json::Value, patch: &str) -> bool {
        match v {
            serde_json::Value::String(s) => s == patch || s.ends_with(&format!("/{patch}")),
            serde_json::Value::Array(a) => a.iter().any(|x| names(x, patch)),
            serde_json::Value::Object(o) => o.values().any(|x| names(x, patch)),
            _ => false,
        }
    }
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in fixes {
        if k == patch || k.ends_with(&format!("/{patch}")) {
            strings(v, &mut out);
        } else if names(v, patch) {
            out.push(k.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn spdx_package(e: &Element) -> spdx::PackageInformation {
    use spdx::{
        Algorithm, Checksum, ExternalPackageReference as Ref,
        ExternalPackageReferenceCategory as Cat, PrimaryPackagePurpose as Purpose,
    };
    let mut refs = Vec::new();
    if let Some(p) = &e.purl {
        refs.push(Ref::new(
            Cat::PackageManager,
            "purl".into(),
            p.clone(),
            None,
        ));
    }
    if let Some(c) = &e.cpe {
        refs.push(Ref::new(Cat::Security, "cpe23Type".into(), c.clone(), None));
    }
    if let Some(m) = &e.mirror {
        refs.push(Ref::new(
            Cat::Other,
            "buildit-mirror-location".into(),
            m.clone(),
            Some("a buildit mirror name (mirror://NAME/PATH), resolved by whoever fetches it; the checksum is the file's".into()),
        ));
    }
    let noassertion = || spdx::SpdxExpression::parse("NOASSERTION").ok();
    let license = e
        .license
        .as_deref()
        .and_then(|l| spdx::SpdxExpression::parse(l).ok());
    let comment = e.comment.clone();
    spdx::PackageInformation {
        package_name: e.name.clone(),
        package_spdx_identifier: format!("SPDXRef-{}", e.id),
        package_version: Some(e.version.clone()),
        package_file_name: e.file_name.clone(),
        package_supplier: Some(e.supplier.spdx()),
        package_download_location: e.download.clone().unwrap_or_else(|| "NOASSERTION".into()),
        files_analyzed: Some(false),
        package_checksum: e
            .sha256
            .iter()
            .map(|h| Checksum::new(Algorithm::SHA256, h))
            .collect(),
        package_home_page: e.homepage.clone(),
        concluded_license: noassertion(),
        declared_license: license.or_else(noassertion),
        copyright_text: Some("NOASSERTION".into()),
        package_comment: Some(comment),
        external_reference: refs,
        primary_package_purpose: Some(match e.kind {
            Kind::Image => Purpose::Container,
            Kind::Built | Kind::Debian => Purpose::Library,
            Kind::Source | Kind::Patch => Purpose::Source,
            Kind::Toolchain => Purpose::Application,
        }),
        ..spdx::PackageInformation::default()
    }
}

/// `v` as pretty JSON with a final newline.
pub fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    let mut b = serde_json::to_vec_pretty(v).map_err(|e| ImageError::Io {
        context: "encoding the SBOM".into(),
        source: std::io::Error::other(e),
    })?;
    b.push(b'\n');
    Ok(b)
}

/// The SPDX 2.3 JSON of `plan`.
pub fn spdx_json(plan: &Plan) -> Result<Vec<u8>, ImageError> {
    to_json(&plan.spdx())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx() -> SbomPackage {
        SbomPackage {
            name: "nginx".into(),
            version: "1.22.1".into(),
            atom: "www-servers/nginx-1.22.1".into(),
            path: "/bld/store/r7s2dp6c3clf9wfsh2l6swqgly8bqpss-nginx-1.22.1".into(),
            source_url: "mirror://debian/pool/main/n/nginx/nginx_1.22.1.orig.tar.gz".into(),
            source_sha256: "ab".repeat(32),
            patches: vec![SbomPatch {
                name: "server-header.patch".into(),
                sha256: "cd".repeat(32),
                ..SbomPatch::default()
            }],
            options: vec!["http2".into(), "ssl".into()],
            purl: "pkg:generic/nginx".into(),
            cpe: "cpe:2.3:a:f5:nginx".into(),
            license: "BSD-2-Clause".into(),
            homepage: "https://nginx.org".into(),
            author: "Sysadmin42 <sys@admin42.org>".into(),
            depends: vec!["deb:libc6".into()],
            builder: "/bld/store/0123456789abcdfghijklmnpqrsvwxyz-sysroot-bookworm".into(),
            ..SbomPackage::default()
        }
    }

    fn libc() -> SbomPackage {
        SbomPackage {
            name: "libc6".into(),
            version: "2.36-9+deb12u14".into(),
            debian: true,
            arch: "amd64".into(),
            source: "glibc".into(),
            suite: "bookworm".into(),
            source_url: "mirror://debian/pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb".into(),
            source_sha256: "ef".repeat(32),
            path: "/bld/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-debian-libc6".into(),
            ..SbomPackage::default()
        }
    }

    #[test]
    fn purls_name_debian_sources_and_generic_checksums() {
        assert_eq!(
            debian_purl(&libc()).as_deref(),
            Some(
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12&upstream=glibc"
            )
        );
        // a binNMU: the source package and its version in `upstream`
        let mut binnmu = libc();
        binnmu.version = "2.36-9+deb12u14+b1".into();
        binnmu.source_version = "2.36-9+deb12u14".into();
        assert_eq!(
            debian_purl(&binnmu).as_deref(),
            Some(
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14%2Bb1?arch=amd64&distro=debian-12&upstream=glibc%402.36-9%2Bdeb12u14"
            )
        );
        let mut same = libc();
        same.source = "libc6".into();
        assert_eq!(
            debian_purl(&same).as_deref(),
            Some("pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12")
        );
        // a mirror location is no download_url; the checksum is the source's
        assert_eq!(
            built_purl(&nginx()).as_deref(),
            Some(
                format!(
                    "pkg:generic/nginx@1.22.1?checksum=sha256:{}",
                    "ab".repeat(32)
                )
                .as_str()
            )
        );
        let mut hello = nginx();
        hello.name = "hello".into();
        hello.version = "2.10".into();
        hello.purl = String::new();
        hello.source_url = "https://example.org/hello-2.10.tar.gz https://example.net/h.tgz".into();
        assert_eq!(
            built_purl(&hello).as_deref(),
            Some(format!("pkg:generic/hello@2.10?checksum=sha256:{}&download_url=https:%2F%2Fexample.org%2Fhello-2.10.tar.gz", "ab".repeat(32)).as_str())
        );
    }

    #[test]
    fn cpes_are_completed_with_the_version() {
        assert_eq!(
            full_cpe("cpe:2.3:a:f5:nginx", "1.22.1").as_deref(),
            Some("cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*")
        );
        assert_eq!(
            full_cpe("cpe:2.3:a:gnu:glibc:2.36:*:*:*:*:*:*:*", "9").as_deref(),
            Some("cpe:2.3:a:gnu:glibc:2.36:*:*:*:*:*:*:*")
        );
        assert_eq!(
            full_cpe("cpe:2.3:a:x:y", "1.0+dfsg").as_deref(),
            Some("cpe:2.3:a:x:y:1.0\\+dfsg:*:*:*:*:*:*:*")
        );
        assert_eq!(full_cpe("cpe:/a:f5:nginx", "1"), None);
        assert_eq!(full_cpe("cpe:2.3:q:f5:nginx", "1"), None);
        assert_eq!(full_cpe("cpe:2.3:a:f5 x:nginx", "1"), None);
    }

    #[test]
    fn actors_and_distributors() {
        assert_eq!(
            Actor::parse("Sysadmin42 <sys@admin42.org>", true).map(|a| a.spdx()),
            Some("Person: Sysadmin42 (sys@admin42.org)".into())
        );
        assert_eq!(Actor::parse("  ", true), None);
        assert_eq!(
            distributor("mirror://debian/pool/x").map(|a| a.spdx()),
            Some("Organization: Debian".into())
        );
        assert_eq!(
            distributor("https://user@ftp.example.org/a/b").map(|a| a.spdx()),
            Some("Organization: ftp.example.org".into())
        );
        assert_eq!(distributor(""), None);
    }

    #[test]
    fn image_plan_relates_sources_patches_toolchain_and_dependencies() {
        let mut spec = ImageSpec::new("web", "1.0", vec![]);
        spec.labels.insert(
            "org.opencontainers.image.authors".into(),
            "Sysadmin42".into(),
        );
        spec.sbom = vec![nginx(), libc()];
        let plan = Plan::for_image(&spec, "sha256:00ff");
        let ids: Vec<&str> = plan.elements.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "Image",
                "Package-1-nginx",
                "Source-1-nginx",
                "Patch-1-1-server-header.patch",
                "Toolchain-1",
                "Debian-2-libc6"
            ]
        );
        let rels: Vec<(&str, Rel, &str)> = plan
            .relations
            .iter()
            .map(|&(a, r, b)| (ids[a], r, ids[b]))
            .collect();
        for want in [
            ("Package-1-nginx", Rel::GeneratedFrom, "Source-1-nginx"),
            (
                "Patch-1-1-server-header.patch",
                Rel::PatchApplied,
                "Package-1-nginx",
            ),
            ("Toolchain-1", Rel::BuildToolOf, "Package-1-nginx"),
            ("Image", Rel::Contains, "Package-1-nginx"),
            ("Image", Rel::Contains, "Debian-2-libc6"),
            ("Package-1-nginx", Rel::DependsOn, "Debian-2-libc6"),
        ] {
            assert!(rels.contains(&want), "{want:?} not in {rels:?}");
        }
        let doc = serde_json::to_value(plan.spdx()).expect("SPDX as JSON");
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:01Z");
        let ps = doc["packages"].as_array().expect("packages");
        assert_eq!(ps[0]["supplier"], "Person: Sysadmin42");
        assert_eq!(ps[1]["supplier"], "Person: Sysadmin42 (sys@admin42.org)");
        assert_eq!(ps[1]["licenseDeclared"], "BSD-2-Clause");
        // the mirror location is an external reference, never a download location
        assert_eq!(ps[2]["downloadLocation"], "NOASSERTION");
        assert_eq!(
            ps[2]["externalRefs"][0]["referenceLocator"],
            "mirror://debian/pool/main/n/nginx/nginx_1.22.1.orig.tar.gz"
        );
        assert_eq!(ps[2]["supplier"], "Organization: Debian");
        assert!(ps.iter().all(|p| p["supplier"].is_string()));
    }

    #[test]
    fn unknown_licences_are_noassertion_and_bytes_are_stable() {
        let mut p = nginx();
        p.license = "GPL-2+ or whatever".into();
        let mut spec = ImageSpec::new("web", "1.0", vec![]);
        spec.sbom = vec![p];
        let plan = Plan::for_image(&spec, "sha256:00ff");
        let doc = serde_json::to_value(plan.spdx()).expect("SPDX as JSON");
        assert_eq!(doc["packages"][1]["licenseDeclared"], "NOASSERTION");
        assert_eq!(
            doc["packages"][0]["supplier"],
            "Organization: buildit package set"
        );
        assert_eq!(
            spdx_json(&plan).expect("json"),
            spdx_json(&Plan::for_image(&spec, "sha256:00ff")).expect("json")
        );
        assert!(plan.serial_uuid().starts_with("urn:uuid:"));
        assert_eq!(plan.serial_uuid().len(), 45);
    }
}
