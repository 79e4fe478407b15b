//! The SBOM of an image: an SPDX 2.3 JSON document written beside the image
//! (`sbom.spdx.json` in the output directory, next to `index.json` but not listed in it), made
//! from the derivation graph's facts that `image.bld` puts into the spec ([`SbomPackage`]):
//! every package of the runtime closure with its version, atom, source URL and hash, patches
//! and build options, and every Debian runtime package with its exact version and `.deb` hash.
//!
//! The document is deterministic: its namespace is derived from the image's manifest digest,
//! its creation time is the image's, and packages are in the spec's order (which comes from the
//! evaluation, not from the file system), so the same image gives the same bytes.

use serde_json::{json, Value};

use crate::ImageSpec;

/// A patch applied to a package's source, in order.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SbomPatch {
    /// The file name (a local patch) or the derivation name (a fetched one).
    pub name: String,
    /// Where a fetched patch came from ("" for a local file).
    #[serde(default)]
    pub url: String,
    /// sha256 (hex) of a fetched patch ("" for a local file).
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
    /// The source's URL(s), space-separated ("" for a local source).
    #[serde(default)]
    pub source_url: String,
    /// The source's sha256 (hex) ("" when unknown).
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
}

/// SPDX identifiers allow letters, digits, `.` and `-`.
fn spdx_id(prefix: &str, i: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{prefix}-{i}-{clean}")
}

/// Percent-encode a purl component (RFC 3986 unreserved characters stay).
fn purl_enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn package_json(id: &str, p: &SbomPackage) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": p.name,
        "versionInfo": p.version,
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    });
    let o = v.as_object_mut().expect("a JSON object literal");
    if p.debian {
        o.insert("supplier".into(), json!("Organization: Debian"));
        o.insert("downloadLocation".into(), json!("NOASSERTION"));
        if !p.source_sha256.is_empty() {
            o.insert(
                "checksums".into(),
                json!([{ "algorithm": "SHA256", "checksumValue": p.source_sha256 }]),
            );
        }
        let arch = if p.arch.is_empty() { "amd64" } else { &p.arch };
        o.insert(
            "externalRefs".into(),
            json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:deb/debian/{}@{}?arch={}", purl_enc(&p.name), purl_enc(&p.version), purl_enc(arch)),
            }]),
        );
        o.insert(
            "comment".into(),
            json!(format!(
                "Debian package (the .deb's sha256 is its checksum), unpacked at / with merged /usr; store path {}",
                p.path
            )),
        );
        return v;
    }
    let first_url = p.source_url.split_whitespace().next().unwrap_or("");
    o.insert(
        "downloadLocation".into(),
        json!(if first_url.is_empty() {
            "NOASSERTION"
        } else {
            first_url
        }),
    );
    if !p.source_sha256.is_empty() {
        o.insert(
            "checksums".into(),
            json!([{ "algorithm": "SHA256", "checksumValue": p.source_sha256 }]),
        );
    }
    let patches: Vec<String> = p
        .patches
        .iter()
        .map(|x| {
            if x.url.is_empty() {
                x.name.clone()
            } else {
                format!("{} (sha256 {})", x.url, x.sha256)
            }
        })
        .collect();
    let mut source_info = format!(
        "source: {}",
        if p.source_url.is_empty() {
            "local"
        } else {
            &p.source_url
        }
    );
    if !patches.is_empty() {
        source_info.push_str(&format!(
            "; patches applied in order: {}",
            patches.join(", ")
        ));
    }
    o.insert("sourceInfo".into(), json!(source_info));
    let mut comment = format!(
        "build options: {}",
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
    o.insert("comment".into(), json!(comment));
    if !p.atom.is_empty() {
        o.insert(
            "externalRefs".into(),
            json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:generic/{}@{}", purl_enc(&p.name), purl_enc(&p.version)),
            }]),
        );
    }
    if !p.patches.is_empty() {
        let notes: Vec<Value> = p
            .patches
            .iter()
            .enumerate()
            .map(|(i, x)| {
                json!({
                    "annotationType": "OTHER",
                    "annotator": "Tool: buildit",
                    "annotationDate": "1970-01-01T00:00:01Z",
                    "comment": if x.url.is_empty() {
                        format!("patch {}: {}", i + 1, x.name)
                    } else {
                        format!("patch {}: {} sha256 {}", i + 1, x.url, x.sha256)
                    },
                })
            })
            .collect();
        o.insert("annotations".into(), Value::Array(notes));
    }
    v
}

/// The SPDX 2.3 document of the image `spec` whose manifest digest is `manifest_digest`.
pub fn spdx(spec: &ImageSpec, manifest_digest: &str, created: &str) -> Value {
    let image_id = "SPDXRef-Image";
    let hexd = manifest_digest
        .strip_prefix("sha256:")
        .unwrap_or(manifest_digest);
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": spec.name,
        "versionInfo": spec.tag,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": hexd }],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{}@{}?tag={}", purl_enc(spec.name.rsplit('/').next().unwrap_or(&spec.name)), purl_enc(manifest_digest), purl_enc(&spec.tag)),
        }],
        "comment": format!("OCI image {}:{} ({} {}); the checksum is the manifest's", spec.name, spec.tag, spec.os, spec.arch),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (i, p) in spec.sbom.iter().enumerate() {
        let id = spdx_id(if p.debian { "Debian" } else { "Package" }, i + 1, &p.name);
        packages.push(package_json(&id, p));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}:{}", spec.name, spec.tag),
        "documentNamespace": format!("urn:buildit:image:{}:{}:sha256:{hexd}", purl_enc(&spec.name), purl_enc(&spec.tag)),
        "creationInfo": {
            "created": created,
            "creators": ["Tool: buildit"],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_patches_options_and_debian_versions() {
        let mut spec = ImageSpec::new("web", "1.0", vec![]);
        spec.sbom = vec![
            SbomPackage {
                name: "nginx".into(),
                version: "1.22.1".into(),
                atom: "www-servers/nginx-1.22.1".into(),
                source_url: "mirror://debian/pool/main/n/nginx/nginx_1.22.1.orig.tar.gz".into(),
                source_sha256: "ab".repeat(32),
                patches: vec![SbomPatch {
                    name: "server-header.patch".into(),
                    ..SbomPatch::default()
                }],
                options: vec!["http2".into(), "ssl".into()],
                ..SbomPackage::default()
            },
            SbomPackage {
                name: "libc6".into(),
                version: "2.36-9+deb12u14".into(),
                debian: true,
                arch: "amd64".into(),
                ..SbomPackage::default()
            },
        ];
        let d = spdx(&spec, "sha256:00ff", "1970-01-01T00:00:01Z");
        assert_eq!(d["spdxVersion"], "SPDX-2.3");
        let ps = d["packages"].as_array().expect("packages");
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[1]["versionInfo"], "1.22.1");
        assert!(ps[1]["sourceInfo"]
            .as_str()
            .is_some_and(|s| s.contains("server-header.patch")));
        assert!(ps[1]["comment"]
            .as_str()
            .is_some_and(|s| s.starts_with("build options: http2 ssl")));
        assert_eq!(
            ps[2]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64"
        );
        assert_eq!(ps[2]["SPDXID"], "SPDXRef-Debian-2-libc6");
        assert_eq!(d["relationships"].as_array().map(Vec::len), Some(3));
    }
}
