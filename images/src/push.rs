//! `buildit push`: an OCI image layout to a registry over the OCI distribution API.
//!
//! For each blob (layers, then the config): `HEAD` it (present: skipped); else try a
//! cross-repository mount (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`) from
//! the repositories this machine pushed it to before (recorded in a small JSON file) and any
//! named by the caller; else upload it in chunks (`POST` to open a session, `PATCH` with
//! `Content-Range`, `PUT ?digest=` to close). Then the manifest is `PUT` under the tag.
//! The requests, authentication (`Basic` or `Bearer` challenges) and the HTTPS rule (plain HTTP
//! only with `--insecure`, to loopback hosts only) are the [`crate::registry`] client's.
//!
//! The image's SBOMs (`sbom.spdx.json` and `sbom.cdx.json` beside the layout) are then attached
//! as OCI artifacts, one each: an image manifest with `artifactType: application/spdx+json`
//! (CycloneDX: `application/vnd.cyclonedx+json`), the empty config, the SBOM as its one layer
//! and `subject` naming the image's manifest (what the OCI 1.1 referrers API indexes), pushed
//! under the tag `sha256-<image manifest hex>.sbom` (CycloneDX: `….cdx`) so that registries
//! without that API find them too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::registry::{Client, ClientOptions};
use crate::ImageError;

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Allow plain HTTP (loopback registries only).
    pub insecure: bool,
    /// User name and password for basic auth or the token endpoint.
    pub credentials: Option<(String, String)>,
    /// More repositories (on the same registry) to try mounting blobs from.
    pub mount_from: Vec<String>,
    /// Upload chunk size in bytes.
    pub chunk_size: usize,
    /// Where to remember which repositories hold which blobs (for mounts), if anywhere.
    pub known_blobs: Option<PathBuf>,
    /// Where a line per blob (and one for the attached SBOM) goes, if anywhere.
    pub progress: Option<fn(&str)>,
    /// Attach the image's `sbom.spdx.json` and `sbom.cdx.json` (those it has) as OCI artifacts.
    pub sbom: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            insecure: false,
            credentials: None,
            mount_from: Vec::new(),
            chunk_size: 8 << 20,
            known_blobs: None,
            progress: None,
            sbom: true,
        }
    }
}

/// What happened to one blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlobPush {
    pub digest: String,
    pub size: u64,
    /// `uploaded`, `exists` or `mounted`.
    pub action: &'static str,
    /// The repository it was mounted from.
    pub from: Option<String>,
}

/// The result of a push.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    /// `registry/repo:tag`.
    pub reference: String,
    pub manifest_digest: String,
    pub uploaded_bytes: u64,
    /// Bytes not sent because the registry had them (in this repository or by a mount).
    pub skipped_bytes: u64,
    pub blobs: Vec<BlobPush>,
    /// The SPDX SBOM artifact, when one was attached (its bytes are not in the counts above).
    pub sbom: Option<SbomPush>,
    /// The CycloneDX SBOM artifact, when one was attached (likewise).
    pub sbom_cyclonedx: Option<SbomPush>,
}

/// An SBOM attached to a pushed image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SbomPush {
    /// `registry/repo:sha256-<image manifest hex>.sbom` (SPDX) or `….cdx` (CycloneDX).
    pub reference: String,
    /// The artifact manifest's digest.
    pub manifest_digest: String,
    /// Bytes sent for the SBOM and the empty config.
    pub uploaded_bytes: u64,
}

/// The media type of an SPDX JSON document (the SBOM artifact's type and layer).
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// The media type of a CycloneDX JSON document (the CycloneDX SBOM artifact's type and layer).
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
use crate::registry::EMPTY_JSON;
/// The OCI empty descriptor's media type, digest and content (`{}`).
pub use crate::registry::EMPTY_MEDIA_TYPE;

/// A parsed `REGISTRY/REPO:TAG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repo: String,
    pub tag: String,
}

fn reg_err(m: impl Into<String>) -> ImageError {
    ImageError::Registry(m.into())
}

/// Parse `REGISTRY/REPO[:TAG]` (the tag defaults to `latest`).
pub fn parse_reference(s: &str) -> Result<ImageRef, ImageError> {
    let (registry, rest) = s.split_once('/').ok_or_else(|| {
        reg_err(format!(
            "`{s}` is not REGISTRY/REPO:TAG (for example 127.0.0.1:5000/app:1.0)"
        ))
    })?;
    if registry.is_empty() || rest.is_empty() {
        return Err(reg_err(format!("`{s}` is not REGISTRY/REPO:TAG")));
    }
    let last = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], &rest[last + i + 1..]),
        None => (rest, "latest"),
    };
    let repo_ok = repo.split('/').all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    });
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !repo_ok || !tag_ok {
        return Err(reg_err(format!(
            "`{s}`: repository `{repo}` or tag `{tag}` is not valid (lowercase repository components, tag of letters, digits, `._-`)"
        )));
    }
    Ok(ImageRef {
        registry: registry.to_string(),
        repo: repo.to_string(),
        tag: tag.to_string(),
    })
}

pub use crate::registry::is_loopback;

struct Blob {
    digest: String,
    size: u64,
    path: PathBuf,
    /// The bytes, for blobs that are not files of the layout (the empty config).
    data: Option<Vec<u8>>,
}

fn read_json(p: &Path) -> Result<(Vec<u8>, Value), ImageError> {
    let b = std::fs::read(p).map_err(ImageError::io(format!("reading {}", p.display())))?;
    let v = serde_json::from_slice(&b)
        .map_err(|e| ImageError::NotAnImage(format!("{}: {e}", p.display())))?;
    Ok((b, v))
}

type Known = BTreeMap<String, BTreeSet<String>>;

fn load_known(p: Option<&Path>) -> Known {
    p.and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_known(p: &Path, k: &Known) {
    // best effort: it only saves uploads next time
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(b) = serde_json::to_vec_pretty(k) {
        let tmp = p.with_extension("tmp");
        if std::fs::write(&tmp, b).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
}

/// Push the OCI layout at `image` (a directory with `index.json`) to `target`
/// (`REGISTRY/REPO:TAG`).
pub fn push_image(
    image: &Path,
    target: &str,
    opts: &PushOptions,
) -> Result<PushReport, ImageError> {
    let t = parse_reference(target)?;
    if !image.join("index.json").is_file() {
        return Err(ImageError::NotAnImage(format!(
            "{}: push needs an OCI image layout (an image built with `type: oci`)",
            image.display()
        )));
    }
    let (_, index) = read_json(&image.join("index.json"))?;
    let md = index
        .get("manifests")
        .and_then(Value::as_array)
        .filter(|m| m.len() == 1)
        .and_then(|m| m[0].get("digest"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ImageError::NotAnImage(format!(
                "{}: index.json must list exactly one manifest",
                image.display()
            ))
        })?
        .to_string();
    let blob_path = |d: &str| image.join("blobs").join(d.replacen(':', "/", 1));
    let (manifest_bytes, manifest) = read_json(&blob_path(&md))?;
    let media_type = manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(crate::oci::MANIFEST_MEDIA_TYPE)
        .to_string();
    let mut blobs: Vec<Blob> = Vec::new();
    let descs = manifest
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(manifest.get("config").cloned());
    for d in descs {
        let digest = d
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| ImageError::NotAnImage("a descriptor without digest".into()))?;
        if !digest.starts_with("sha256:") || digest.len() != 71 {
            return Err(ImageError::NotAnImage(format!(
                "unsupported digest {digest}"
            )));
        }
        let size = d.get("size").and_then(Value::as_u64).unwrap_or(0);
        if blobs.iter().any(|b| b.digest == digest) {
            continue;
        }
        blobs.push(Blob {
            digest: digest.to_string(),
            size,
            path: blob_path(digest),
            data: None,
        });
    }

    let mut known = load_known(opts.known_blobs.as_deref());
    let mut from_repos: BTreeSet<String> = opts.mount_from.iter().cloned().collect();
    for b in &blobs {
        if let Some(rs) = known.get(&format!("{}/{}", t.registry, b.digest)) {
            from_repos.extend(rs.iter().cloned());
        }
    }
    from_repos.remove(&t.repo);
    let s = Client::new(
        &t.registry,
        &t.repo,
        &ClientOptions {
            insecure: opts.insecure,
            credentials: opts.credentials.clone(),
            extra_scopes: from_repos
                .iter()
                .map(|r| format!("repository:{r}:pull"))
                .collect(),
            ..ClientOptions::default()
        },
    )?;
    // API check (and an early authentication challenge)
    s.check_api()?;

    let mut report = PushReport {
        reference: format!("{}/{}:{}", t.registry, t.repo, t.tag),
        manifest_digest: md.clone(),
        uploaded_bytes: 0,
        skipped_bytes: 0,
        blobs: Vec::new(),
        sbom: None,
        sbom_cyclonedx: None,
    };
    push_blobs(&s, &t, &blobs, opts, &mut known, &mut report)?;
    put_manifest(&s, &t, &t.tag, &media_type, &manifest_bytes, &md)?;
    if opts.sbom {
        let subject = Subject {
            media_type: &media_type,
            digest: &md,
            size: manifest_bytes.len(),
        };
        for (file, artifact_type, suffix) in [
            (crate::oci::SBOM_FILE, SPDX_MEDIA_TYPE, "sbom"),
            (crate::oci::SBOM_CDX_FILE, CYCLONEDX_MEDIA_TYPE, "cdx"),
        ] {
            let path = image.join(file);
            if !path.is_file() {
                continue;
            }
            let pushed = attach(
                &s,
                &t,
                &path,
                artifact_type,
                suffix,
                &subject,
                opts,
                &mut known,
            )?;
            if artifact_type == SPDX_MEDIA_TYPE {
                report.sbom = Some(pushed);
            } else {
                report.sbom_cyclonedx = Some(pushed);
            }
        }
    }
    if let Some(p) = &opts.known_blobs {
        save_known(p, &known);
    }
    Ok(report)
}

/// The image manifest an attached artifact names as its `subject`.
struct Subject<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: usize,
}

/// Attach the file at `path` to the image `subject` as an OCI artifact of `artifact_type`
/// (the empty config, the file as its one layer), tagged `sha256-<image hex>.<suffix>`.
#[allow(clippy::too_many_arguments)]
fn attach(
    s: &Client,
    t: &ImageRef,
    path: &Path,
    artifact_type: &str,
    suffix: &str,
    subject: &Subject<'_>,
    opts: &PushOptions,
    known: &mut Known,
) -> Result<SbomPush, ImageError> {
    let bytes =
        std::fs::read(path).map_err(ImageError::io(format!("reading {}", path.display())))?;
    let file_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let empty_digest = format!("sha256:{}", hex::encode(Sha256::digest(EMPTY_JSON)));
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": { "mediaType": EMPTY_MEDIA_TYPE, "digest": empty_digest, "size": EMPTY_JSON.len() },
        "layers": [{
            "mediaType": artifact_type,
            "digest": file_digest,
            "size": bytes.len(),
            "annotations": { "org.opencontainers.image.title": title },
        }],
        "subject": { "mediaType": subject.media_type, "digest": subject.digest, "size": subject.size },
    });
    let artifact_bytes = serde_json::to_vec(&artifact).map_err(|e| reg_err(e.to_string()))?;
    let artifact_digest = format!("sha256:{}", hex::encode(Sha256::digest(&artifact_bytes)));
    let blobs = [
        Blob {
            digest: file_digest,
            size: bytes.len() as u64,
            path: path.to_path_buf(),
            data: None,
        },
        Blob {
            digest: empty_digest,
            size: EMPTY_JSON.len() as u64,
            path: PathBuf::from("(the empty config)"),
            data: Some(EMPTY_JSON.to_vec()),
        },
    ];
    let mut side = PushReport {
        reference: String::new(),
        manifest_digest: String::new(),
        uploaded_bytes: 0,
        skipped_bytes: 0,
        blobs: Vec::new(),
        sbom: None,
        sbom_cyclonedx: None,
    };
    push_blobs(s, t, &blobs, opts, known, &mut side)?;
    let tag = format!("{}.{suffix}", subject.digest.replacen(':', "-", 1));
    put_manifest(
        s,
        t,
        &tag,
        crate::oci::MANIFEST_MEDIA_TYPE,
        &artifact_bytes,
        &artifact_digest,
    )?;
    if let Some(progress) = opts.progress {
        progress(&format!(
            "attached {title} as {}/{}:{tag}",
            t.registry, t.repo
        ));
    }
    Ok(SbomPush {
        reference: format!("{}/{}:{tag}", t.registry, t.repo),
        manifest_digest: artifact_digest,
        uploaded_bytes: side.uploaded_bytes,
    })
}

/// Push `blobs` (HEAD, mount, or upload), recording each in `report`.
fn push_blobs(
    s: &Client,
    t: &ImageRef,
    blobs: &[Blob],
    opts: &PushOptions,
    known: &mut Known,
    report: &mut PushReport,
) -> Result<(), ImageError> {
    for b in blobs {
        let key = format!("{}/{}", t.registry, b.digest);
        let mut done: Option<(&'static str, Option<String>)> = None;
        if s.head_blob(&b.digest)? {
            done = Some(("exists", None));
        }
        let mut upload_at: Option<Url> = None;
        if done.is_none() {
            let candidates: Vec<String> = opts
                .mount_from
                .iter()
                .cloned()
                .chain(known.get(&key).into_iter().flatten().cloned())
                .filter(|r| r != &t.repo)
                .collect();
            for from in candidates {
                match s.mount(&b.digest, &from) {
                    Ok(None) => {
                        done = Some(("mounted", Some(from)));
                        break;
                    }
                    Ok(Some(u)) => {
                        upload_at = Some(u);
                        break;
                    }
                    Err(_) => continue,
                }
            }
        }
        let (action, from) = match done {
            Some(d) => {
                report.skipped_bytes += b.size;
                d
            }
            None => {
                let at = match upload_at {
                    Some(u) => u,
                    None => s.start_upload()?,
                };
                let mut src: Box<dyn Read> = match &b.data {
                    Some(d) => Box::new(std::io::Cursor::new(d.clone())),
                    None => Box::new(
                        File::open(&b.path)
                            .map_err(ImageError::io(format!("reading {}", b.path.display())))?,
                    ),
                };
                let what = b.path.display().to_string();
                s.upload(at, &mut src, &b.digest, b.size, opts.chunk_size, &what)?;
                report.uploaded_bytes += b.size;
                ("uploaded", None)
            }
        };
        if let Some(progress) = opts.progress {
            progress(&format!("{action:>8} {} ({} bytes)", b.digest, b.size));
        }
        known.entry(key).or_default().insert(t.repo.clone());
        report.blobs.push(BlobPush {
            digest: b.digest.clone(),
            size: b.size,
            action,
            from,
        });
    }
    Ok(())
}

/// `PUT` a manifest under `reference`, checking the digest the registry answers with.
fn put_manifest(
    s: &Client,
    t: &ImageRef,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    digest: &str,
) -> Result<(), ImageError> {
    debug_assert_eq!(s.repo(), t.repo);
    Ok(s.put_manifest(reference, media_type, bytes, digest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_reference("127.0.0.1:5000/team/app:1.0").expect("ok");
        assert_eq!(
            (t.registry.as_str(), t.repo.as_str(), t.tag.as_str()),
            ("127.0.0.1:5000", "team/app", "1.0")
        );
        let t = parse_reference("localhost/app").expect("ok");
        assert_eq!(t.tag, "latest");
        assert!(parse_reference("app:1").is_err());
        assert!(parse_reference("r/App:1").is_err());
        assert!(parse_reference("r/app:").is_err());
    }
}
