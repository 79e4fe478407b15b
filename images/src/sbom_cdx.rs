//! The CycloneDX 1.6 JSON SBOM (`sbom.cdx.json`), from the same [`Plan`] as the SPDX one: the
//! image (or the package of `buildit sbom ATOM`) is `metadata.component`; every built and
//! Debian package is a component with its supplier, purl, CPE, hashes, licence and
//! properties (build options, atom, store path, toolchain, Debian source package); the source
//! a package was generated from is its `pedigree.ancestors`, its patches `pedigree.patches`
//! (with the advisories they resolve) and, in order with their hashes, `pedigree.notes`;
//! runtime dependencies (and what the image contains) are `dependencies`.
//!
//! Written with our own serde types rather than the `cyclonedx-bom` crate: its newest release
//! (0.8.1) writes spec versions 1.3 to 1.5 only (`SpecVersion` has no 1.6), and 1.6 is what
//! this file claims and is validated against (cyclonedx-python-lib's JSON schema validator in
//! the tests). The serial number is derived from the document namespace (a UUID of version 8),
//! and the timestamp is the image's, so the bytes are the same on every machine.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sbom::{Kind, Plan, Rel};
use crate::ImageError;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata,
    components: Vec<Component>,
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
struct Metadata {
    timestamp: String,
    tools: Tools,
    component: Component,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Component>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<Entity>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<License>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pedigree: Option<Pedigree>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
struct Entity {
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contact: Vec<Contact>,
}

#[derive(Serialize)]
struct Contact {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    email: String,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum License {
    Expression { expression: String },
}

#[derive(Serialize)]
struct ExternalReference {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
}

#[derive(Serialize, Default)]
struct Pedigree {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ancestors: Vec<Component>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    patches: Vec<Patch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

#[derive(Serialize)]
struct Patch {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<Diff>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resolves: Vec<Issue>,
}

#[derive(Serialize)]
struct Diff {
    url: String,
}

#[derive(Serialize)]
struct Issue {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
}

#[derive(Serialize)]
struct Property {
    name: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
}

fn sha256(h: &Option<String>) -> Vec<Hash> {
    h.iter()
        .map(|c| Hash {
            alg: "SHA-256",
            content: c.clone(),
        })
        .collect()
}

/// The component of element `i` (without pedigree).
fn component(plan: &Plan, i: usize) -> Component {
    let e = &plan.elements[i];
    let mut refs = Vec::new();
    if let Some(u) = &e.download {
        refs.push(ExternalReference {
            url: u.clone(),
            comment: None,
            kind: "distribution",
            hashes: sha256(&e.sha256),
        });
    }
    if let Some(m) = &e.mirror {
        refs.push(ExternalReference {
            url: m.clone(),
            comment: Some(
                "a buildit mirror name (mirror://NAME/PATH), resolved by whoever fetches it".into(),
            ),
            kind: "distribution",
            hashes: sha256(&e.sha256),
        });
    }
    if let Some(h) = &e.homepage {
        refs.push(ExternalReference {
            url: h.clone(),
            comment: None,
            kind: "website",
            hashes: Vec::new(),
        });
    }
    Component {
        kind: match e.kind {
            Kind::Image => "container",
            Kind::Toolchain => "platform",
            Kind::Patch => "file",
            Kind::Built | Kind::Source | Kind::Debian => {
                if i == plan.root {
                    "application"
                } else {
                    "library"
                }
            }
        },
        bom_ref: Some(e.id.clone()),
        supplier: Some(Entity {
            name: e.supplier.name.clone(),
            contact: if e.supplier.email.is_empty() {
                Vec::new()
            } else {
                vec![Contact {
                    name: e.supplier.person.then(|| e.supplier.name.clone()),
                    email: e.supplier.email.clone(),
                }]
            },
        }),
        name: e.name.clone(),
        version: Some(e.version.clone()).filter(|v| !v.is_empty()),
        description: Some(e.comment.clone()),
        hashes: sha256(&e.sha256),
        licenses: e
            .license
            .iter()
            .map(|l| License::Expression {
                expression: l.clone(),
            })
            .collect(),
        cpe: e.cpe.clone(),
        purl: e.purl.clone(),
        external_references: refs,
        pedigree: None,
        properties: e
            .properties
            .iter()
            .map(|(n, v)| Property {
                name: n.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

/// The CycloneDX 1.6 document of `plan`.
fn bom(plan: &Plan) -> Bom {
    // the source and patches of each built package
    let mut pedigrees: BTreeMap<usize, Pedigree> = BTreeMap::new();
    for &(a, r, b) in &plan.relations {
        match r {
            Rel::GeneratedFrom => pedigrees
                .entry(a)
                .or_default()
                .ancestors
                .push(component(plan, b)),
            Rel::PatchApplied => {
                let e = &plan.elements[a];
                let p = pedigrees.entry(b).or_default();
                p.patches.push(Patch {
                    kind: "unofficial",
                    diff: e
                        .download
                        .clone()
                        .or(e.mirror.clone())
                        .map(|url| Diff { url }),
                    resolves: e
                        .properties
                        .iter()
                        .filter(|(k, _)| k == "buildit:fixes")
                        .map(|(_, id)| Issue {
                            kind: "security",
                            id: id.clone(),
                        })
                        .collect(),
                });
                let line = match &e.sha256 {
                    Some(h) => format!("{} (sha256 {h})", e.name),
                    None => e.name.clone(),
                };
                p.notes = Some(match p.notes.take() {
                    None => format!("patches applied in order: {line}"),
                    Some(n) => format!("{n}, {line}"),
                });
            }
            _ => {}
        }
    }
    let with_pedigree = |i: usize, mut c: Component, pedigrees: &mut BTreeMap<usize, Pedigree>| {
        c.pedigree = pedigrees.remove(&i);
        c
    };
    let root = with_pedigree(plan.root, component(plan, plan.root), &mut pedigrees);
    let listed: Vec<usize> = plan
        .elements
        .iter()
        .enumerate()
        .filter(|(i, e)| *i != plan.root && matches!(e.kind, Kind::Built | Kind::Debian))
        .map(|(i, _)| i)
        .collect();
    let components: Vec<Component> = listed
        .iter()
        .map(|&i| with_pedigree(i, component(plan, i), &mut pedigrees))
        .collect();
    let mut dependencies = Vec::new();
    for i in std::iter::once(plan.root).chain(listed.iter().copied()) {
        let depends_on: Vec<String> = plan
            .relations
            .iter()
            .filter(|(a, r, _)| *a == i && matches!(r, Rel::DependsOn | Rel::Contains))
            .map(|(_, _, b)| plan.elements[*b].id.clone())
            .collect();
        dependencies.push(Dependency {
            reference: plan.elements[i].id.clone(),
            depends_on,
        });
    }
    Bom {
        schema: "http://cyclonedx.org/schema/bom-1.6.schema.json",
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: plan.serial_uuid(),
        version: 1,
        metadata: Metadata {
            timestamp: plan.created.clone(),
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    name: "buildit".into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                    ..Component::default()
                }],
            },
            component: root,
        },
        components,
        dependencies,
    }
}

/// The CycloneDX 1.6 JSON of `plan`.
pub fn cyclonedx_json(plan: &Plan) -> Result<Vec<u8>, ImageError> {
    crate::sbom::to_json(&bom(plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::{SbomPackage, SbomPatch, Subject};

    #[test]
    fn pedigree_dependencies_and_stable_serial() {
        let nginx = SbomPackage {
            name: "nginx".into(),
            version: "1.22.1".into(),
            path: "/bld/store/r7s2dp6c3clf9wfsh2l6swqgly8bqpss-nginx-1.22.1".into(),
            source_url: "mirror://debian/pool/main/n/nginx/nginx_1.22.1.orig.tar.gz".into(),
            source_sha256: "ab".repeat(32),
            patches: vec![SbomPatch {
                name: "fix.patch".into(),
                sha256: "cd".repeat(32),
                ..SbomPatch::default()
            }],
            fixes: [(
                "fix.patch".to_string(),
                serde_json::json!(["CVE-2023-0001"]),
            )]
            .into_iter()
            .collect(),
            depends: vec!["deb:libc6".into()],
            ..SbomPackage::default()
        };
        let libc = SbomPackage {
            name: "libc6".into(),
            version: "2.36-9".into(),
            debian: true,
            ..SbomPackage::default()
        };
        let plan = Plan::new(&Subject::Package, &[nginx, libc], 1);
        let v = serde_json::to_value(bom(&plan)).expect("JSON");
        assert_eq!(v["specVersion"], "1.6");
        assert_eq!(v["metadata"]["component"]["name"], "nginx");
        assert_eq!(v["metadata"]["component"]["type"], "application");
        let ped = &v["metadata"]["component"]["pedigree"];
        assert_eq!(ped["ancestors"][0]["name"], "nginx-source");
        assert_eq!(ped["patches"][0]["resolves"][0]["id"], "CVE-2023-0001");
        assert!(ped["notes"]
            .as_str()
            .is_some_and(|n| n.contains("fix.patch (sha256 cdcd")));
        assert_eq!(v["components"][0]["name"], "libc6");
        assert_eq!(
            v["dependencies"][0],
            serde_json::json!({ "ref": "Package-1-nginx", "dependsOn": ["Debian-2-libc6"] })
        );
        assert_eq!(
            cyclonedx_json(&plan).expect("bytes"),
            cyclonedx_json(&plan).expect("bytes")
        );
    }
}
