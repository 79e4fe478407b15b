//! Image assembly and the writers of every format.
//!
//! [`build_image_with`] gathers the closure, plans and builds (or reuses) the store layers,
//! makes the top layer, then writes the image config, the manifest and the output:
//!
//! - `oci`: an OCI image layout in the output directory (`oci-layout`, `index.json` with
//!   exactly one manifest annotated `org.opencontainers.image.ref.name = name:tag`,
//!   `blobs/sha256/`).
//! - `oci-archive`: that layout as one tar, `image.oci.tar`.
//! - `docker-archive`: `image.docker.tar` with `manifest.json`, the config as `<hex>.json` and
//!   each layer uncompressed as `<diff_id hex>.tar` (what `docker load` and
//!   `skopeo copy docker-archive:` read).
//! - `aci`: `image.aci`, a tar with `manifest` (the spec's template rendered, or a manifest
//!   derived from the config) and `rootfs/`: the layers applied in order as a runtime applies
//!   them (see [`crate::flatten`]), SELinux labels kept.
//!
//! Every format also gets `sbom.spdx.json` (SPDX 2.3, see [`crate::sbom`]) and `sbom.cdx.json`
//! (CycloneDX 1.6, see [`crate::sbom_cdx`]) in the output directory, beside the layout or the
//! archive; OCI tools never see them.
//!
//! Every file is written with fixed metadata, in a fixed order, from deterministic inputs, so
//! the same spec and store give the same bytes (and digests) on every run and machine.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::layers::{self, BuiltLayer};
use crate::selinux::Labels;
use crate::tarw::{self, Entry, HashWriter};
use crate::{template, Compression, ImageError, ImageFormat, ImageSpec, StoreView};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const DEFAULT_PATH: &str = "/usr/bin:/usr/sbin:/bin:/sbin";

/// One layer of a written image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub uncompressed_size: u64,
    pub media_type: String,
    /// Store paths in the layer; empty for the top layer.
    pub members: Vec<String>,
    /// Taken from the layer cache (not compressed in this run).
    pub reused: bool,
}

/// What [`build_image_with`] wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageReport {
    pub format: ImageFormat,
    /// The OCI layout directory, or the archive file inside the output directory.
    pub output: PathBuf,
    /// `name:tag`, the layout's ref name and the docker-archive's tag.
    pub ref_name: String,
    /// The OCI manifest's digest (for every format; the image's identity).
    pub manifest_digest: String,
    pub config_digest: String,
    /// sha256 of the archive file for the archive formats.
    pub artifact_digest: Option<String>,
    /// Store layers in order, then the top layer.
    pub layers: Vec<LayerReport>,
    /// Total uncompressed layer bytes.
    pub layer_bytes: u64,
    /// Total compressed layer bytes.
    pub compressed_bytes: u64,
    pub warnings: Vec<String>,
    /// The SPDX 2.3 SBOM written beside the image (the CycloneDX one is [`SBOM_CDX_FILE`]
    /// beside it).
    pub sbom: PathBuf,
}

/// The SBOM's file name in an image's output directory (SPDX 2.3 JSON).
pub const SBOM_FILE: &str = "sbom.spdx.json";
/// The CycloneDX 1.6 JSON SBOM's file name in an image's output directory.
pub const SBOM_CDX_FILE: &str = "sbom.cdx.json";

/// Build the image of `spec` from `view` into `out_dir` (which must not exist or be empty).
pub fn build_image_with(
    view: &dyn StoreView,
    spec: &ImageSpec,
    out_dir: &Path,
) -> Result<ImageReport, ImageError> {
    check_spec(spec)?;
    let budget = layers::check_budget(spec.layer_budget)?;
    prepare_out_dir(out_dir)?;
    let mut metas = layers::gather(view, &spec.packages, &spec.rooted)?;
    let top_labels = load_labels(view, spec, &mut metas)?;
    let groups = layers::plan(&metas, budget);
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cache = view.layer_cache_dir();
    let mut built = layers::build_store_layers(
        &metas,
        &groups,
        view.archive_fn(),
        &cache,
        spec.compression,
        jobs,
    )?;
    let top = crate::top::top_entries(view, spec)?;
    built.push(build_top_layer(
        &top.entries,
        top_labels.as_ref(),
        &cache,
        spec.compression,
    )?);

    let config = config_json(spec, &built)?;
    let config_digest = sha256_hex(&config);
    let manifest = manifest_json(&built, &config_digest, config.len() as u64)?;
    let manifest_digest = sha256_hex(&manifest);
    let ref_name = format!("{}:{}", spec.name, spec.tag);
    let index = index_json(&manifest_digest, manifest.len() as u64, &ref_name)?;

    let (output, artifact_digest) = match spec.format {
        ImageFormat::Oci => {
            write_layout(out_dir, &built, &config, &manifest, &index)?;
            (out_dir.to_path_buf(), None)
        }
        ImageFormat::OciArchive => {
            let tmp = out_dir.join(".layout");
            write_layout(&tmp, &built, &config, &manifest, &index)?;
            let file = out_dir.join("image.oci.tar");
            let d = write_file_tar(&file, &|w| tar_layout(&tmp, w))?;
            remove_dir(&tmp)?;
            (file, Some(d))
        }
        ImageFormat::DockerArchive => {
            let file = out_dir.join("image.docker.tar");
            let d = write_file_tar(&file, &|w| {
                docker_archive(&built, &config, &config_digest, &ref_name, w)
            })?;
            (file, Some(d))
        }
        ImageFormat::Aci => {
            let manifest = aci_manifest(spec)?;
            let file = out_dir.join("image.aci");
            let d = write_file_tar(&file, &|w| aci_archive(&built, manifest.as_bytes(), w))?;
            (file, Some(d))
        }
    };
    // the SBOM beside the image (not in index.json: OCI tools see exactly one manifest)
    let sbom_path = out_dir.join(SBOM_FILE);
    let plan = crate::sbom::Plan::for_image(spec, &format!("sha256:{manifest_digest}"));
    std::fs::write(&sbom_path, crate::sbom::spdx_json(&plan)?)
        .map_err(ImageError::io(format!("writing {}", sbom_path.display())))?;
    let cdx_path = out_dir.join(SBOM_CDX_FILE);
    std::fs::write(&cdx_path, crate::sbom_cdx::cyclonedx_json(&plan)?)
        .map_err(ImageError::io(format!("writing {}", cdx_path.display())))?;
    let layers: Vec<LayerReport> = built
        .iter()
        .map(|l| LayerReport {
            digest: l.info.digest.clone(),
            diff_id: l.info.diff_id.clone(),
            size: l.info.size,
            uncompressed_size: l.info.uncompressed_size,
            media_type: l.info.media_type.clone(),
            members: l.members.iter().map(|p| p.to_string()).collect(),
            reused: l.reused,
        })
        .collect();
    Ok(ImageReport {
        format: spec.format,
        output,
        ref_name,
        manifest_digest: format!("sha256:{manifest_digest}"),
        config_digest: format!("sha256:{config_digest}"),
        artifact_digest: artifact_digest.map(|d| format!("sha256:{d}")),
        layer_bytes: layers.iter().map(|l| l.uncompressed_size).sum(),
        compressed_bytes: layers.iter().map(|l| l.size).sum(),
        layers,
        warnings: top.warnings,
        sbom: sbom_path,
    })
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn json_bytes(v: &Value) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Io {
        context: "encoding JSON".into(),
        source: io::Error::other(e),
    })
}

fn prepare_out_dir(out: &Path) -> Result<(), ImageError> {
    if out.exists() {
        let mut rd = std::fs::read_dir(out).map_err(ImageError::io(format!(
            "reading the output directory {}",
            out.display()
        )))?;
        if rd.next().is_some() {
            return Err(ImageError::Spec(format!(
                "the output directory {} is not empty",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(ImageError::io(format!("creating {}", out.display())))
}

fn remove_dir(p: &Path) -> Result<(), ImageError> {
    std::fs::remove_dir_all(p).map_err(ImageError::io(format!("removing {}", p.display())))
}

/// Reference-name rules (the parts buildit writes into refs, tags and RepoTags).
fn check_spec(spec: &ImageSpec) -> Result<(), ImageError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 255
        && spec.name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'.'
                        || b == b'_'
                        || b == b'-'
                })
        });
    if !name_ok {
        return Err(ImageError::Spec(format!(
            "image name `{}` is not a valid reference name (lowercase letters, digits, `.`, `_`, `-`, components separated by `/`)",
            spec.name
        )));
    }
    let tag_ok = !spec.tag.is_empty()
        && spec.tag.len() <= 128
        && spec
            .tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && spec
            .tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !tag_ok {
        return Err(ImageError::Spec(format!(
            "image tag `{}` is not a valid tag (letters, digits, `.`, `_`, `-`, at most 128)",
            spec.tag
        )));
    }
    for (k, _) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ImageError::Spec(format!(
                "environment variable name `{k}` is empty or contains `=`"
            )));
        }
    }
    for p in &spec.ports {
        port_key(p)?;
    }
    if spec.os.is_empty() || spec.arch.is_empty() {
        return Err(ImageError::Spec("os and arch must not be empty".into()));
    }
    Ok(())
}

fn port_key(p: &str) -> Result<String, ImageError> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok = num.parse::<u16>().is_ok_and(|n| n > 0) && matches!(proto, "tcp" | "udp" | "sctp");
    if !ok {
        return Err(ImageError::Spec(format!(
            "port `{p}` is not PORT or PORT/tcp|udp|sctp"
        )));
    }
    Ok(format!("{num}/{proto}"))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (proleptic Gregorian)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn created(spec: &ImageSpec) -> String {
    rfc3339(spec.created.unwrap_or(1))
}

/// The SELinux labels of the spec's [`ImageSpec::file_contexts`]: each package's own (set on
/// its [`layers::PathMeta`]), and all of them together for the top layer (`None` without any).
fn load_labels(
    view: &dyn StoreView,
    spec: &ImageSpec,
    metas: &mut [layers::PathMeta],
) -> Result<Option<Labels>, ImageError> {
    if spec.file_contexts.is_empty() {
        return Ok(None);
    }
    let mut all = Vec::new();
    let mut per_package: BTreeMap<String, (Vec<Vec<u8>>, String)> = BTreeMap::new();
    for fc in &spec.file_contexts {
        let (sp, rest) = buildit_store::StorePath::parse_prefix(&fc.module)
            .map_err(|e| ImageError::Spec(format!("SELinux module `{}`: {e}", fc.module)))?;
        let phys = view.physical(&sp);
        let rest = rest.trim_start_matches('/');
        let file = if rest.is_empty() {
            phys
        } else {
            tarw::regular_below(&phys, rest)
                .map_err(ImageError::io(format!("SELinux module {}", fc.module)))?
        };
        let bytes = tarw::open_regular(&file)
            .and_then(crate::selinux::read_module)
            .map_err(ImageError::io(format!(
                "reading the SELinux module {}",
                fc.module
            )))?;
        let prefix = fc.prefix.trim_end_matches('/');
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.split('/').any(|c| c == ".."))
        {
            return Err(ImageError::Spec(format!(
                "SELinux prefix `{}` is not an absolute path without `..`",
                fc.prefix
            )));
        }
        let e = per_package
            .entry(fc.package.to_string())
            .or_insert_with(|| (Vec::new(), prefix.to_string()));
        if e.1 != prefix {
            return Err(ImageError::Spec(format!(
                "{}: two SELinux prefixes (`{}` and `{prefix}`)",
                fc.package, e.1
            )));
        }
        e.0.push(bytes.clone());
        all.push(bytes);
    }
    for (pkg, (modules, prefix)) in &per_package {
        let m = metas
            .iter_mut()
            .find(|m| m.path.to_string() == *pkg && !m.at_root)
            .ok_or_else(|| {
                ImageError::Spec(format!(
                    "SELinux file contexts for {pkg}, which is not a package of the image"
                ))
            })?;
        m.labels = Some(std::sync::Arc::new(Labels::from_modules(modules, prefix)?));
    }
    Ok(Some(Labels::from_modules(&all, "")?))
}

fn build_top_layer(
    entries: &[Entry],
    labels: Option<&Labels>,
    cache: &Path,
    c: Compression,
) -> Result<BuiltLayer, ImageError> {
    // key the cache by the uncompressed tar's digest: one cheap pass, no compression on a hit
    let mut h = HashWriter::new(io::sink());
    crate::top::write_top_tar(entries, labels, &mut h)
        .map_err(ImageError::io("writing the top layer"))?;
    let (_, diff, _) = h.finish();
    let key = hex::encode(Sha256::digest(
        format!("buildit-top-v1\n{}\n{diff}\n", c.as_str()).as_bytes(),
    ));
    if let Some((info, blob)) = layers::cache_lookup(cache, &key) {
        return Ok(BuiltLayer {
            info,
            blob,
            members: Vec::new(),
            reused: true,
            at_root: Vec::new(),
        });
    }
    let (info, blob) = layers::compress_into_cache(cache, &key, c, &|w| {
        crate::top::write_top_tar(entries, labels, w)
    })?;
    if info.diff_id != format!("sha256:{diff}") {
        return Err(ImageError::Spec(
            "a synced file changed while the image was being written".into(),
        ));
    }
    Ok(BuiltLayer {
        info,
        blob,
        members: Vec::new(),
        reused: false,
        at_root: Vec::new(),
    })
}

fn config_json(spec: &ImageSpec, built: &[BuiltLayer]) -> Result<Vec<u8>, ImageError> {
    let created = created(spec);
    let mut env: Vec<String> = Vec::new();
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut cfg = Map::new();
    if let Some(u) = &spec.user {
        cfg.insert("User".into(), json!(u));
    }
    if !spec.ports.is_empty() {
        let mut ports = Map::new();
        let mut keys: Vec<String> = spec
            .ports
            .iter()
            .map(|p| port_key(p))
            .collect::<Result<_, _>>()?;
        keys.sort();
        keys.dedup();
        for k in keys {
            ports.insert(k, json!({}));
        }
        cfg.insert("ExposedPorts".into(), Value::Object(ports));
    }
    cfg.insert("Env".into(), json!(env));
    if !spec.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(spec.cmd));
    }
    if let Some(w) = &spec.workdir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if !spec.labels.is_empty() {
        cfg.insert("Labels".into(), json!(spec.labels));
    }
    let history: Vec<Value> = built
        .iter()
        .map(|l| {
            let by = if l.members.is_empty() {
                "buildit: top layer (synced files, users, profile)".to_string()
            } else {
                let names: Vec<String> = l.members.iter().map(|p| p.to_string()).collect();
                format!("buildit: {}", names.join(" "))
            };
            if l.at_root.is_empty() {
                json!({ "created": created, "created_by": by })
            } else {
                json!({ "created": created, "created_by": by, "comment": at_root_comment(&l.at_root) })
            }
        })
        .collect();
    let diff_ids: Vec<&str> = built.iter().map(|l| l.info.diff_id.as_str()).collect();
    json_bytes(&json!({
        "created": created,
        "architecture": spec.arch,
        "os": spec.os,
        "config": Value::Object(cfg),
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    }))
}

/// The prefix of a history comment that records a layer's at-root members.
pub const AT_ROOT_COMMENT: &str = "buildit at-root: ";

/// `buildit at-root: /bld/store/<x> START+COUNT; …`: where each at-root member's entries are
/// in the layer (read back by [`crate::contents`]).
pub fn at_root_comment(r: &[layers::AtRoot]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|a| format!("{} {}+{}", a.path, a.start, a.count))
        .collect();
    format!("{AT_ROOT_COMMENT}{}", parts.join("; "))
}

/// Parse [`at_root_comment`]'s text: (store path, start, count) per member.
pub fn parse_at_root_comment(s: &str) -> Vec<(String, u64, u64)> {
    let Some(rest) = s.strip_prefix(AT_ROOT_COMMENT) else {
        return Vec::new();
    };
    rest.split("; ")
        .filter_map(|part| {
            let (p, range) = part.rsplit_once(' ')?;
            let (a, n) = range.split_once('+')?;
            Some((p.to_string(), a.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

fn manifest_json(
    built: &[BuiltLayer],
    config_hex: &str,
    config_size: u64,
) -> Result<Vec<u8>, ImageError> {
    let layers: Vec<Value> = built
        .iter()
        .map(|l| json!({ "mediaType": l.info.media_type, "digest": l.info.digest, "size": l.info.size }))
        .collect();
    json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": format!("sha256:{config_hex}"), "size": config_size },
        "layers": layers,
    }))
}

fn index_json(manifest_hex: &str, size: u64, ref_name: &str) -> Result<Vec<u8>, ImageError> {
    json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": format!("sha256:{manifest_hex}"),
            "size": size,
            "annotations": { REF_NAME: ref_name },
        }],
    }))
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn write_layout(
    dir: &Path,
    built: &[BuiltLayer],
    config: &[u8],
    manifest: &[u8],
    index: &[u8],
) -> Result<(), ImageError> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(ImageError::io(format!("creating {}", blobs.display())))?;
    for l in built {
        layers::install_blob(&l.blob, &l.info.digest, &blobs)?;
    }
    for b in [config, manifest] {
        let p = blobs.join(sha256_hex(b));
        std::fs::write(&p, b).map_err(ImageError::io(format!("writing {}", p.display())))?;
    }
    for (name, data) in [("oci-layout", OCI_LAYOUT), ("index.json", index)] {
        let p = dir.join(name);
        std::fs::write(&p, data).map_err(ImageError::io(format!("writing {}", p.display())))?;
    }
    Ok(())
}

/// Write a tar file with `write`, returning its sha256 hex.
fn write_file_tar(
    file: &Path,
    write: &dyn Fn(&mut dyn Write) -> io::Result<()>,
) -> Result<String, ImageError> {
    let ctx = format!("writing {}", file.display());
    let f = File::create(file).map_err(ImageError::io(ctx.clone()))?;
    let mut h = HashWriter::new(BufWriter::with_capacity(1 << 20, f));
    write(&mut h).map_err(ImageError::io(ctx.clone()))?;
    let (mut w, d, _) = h.finish();
    w.flush().map_err(ImageError::io(ctx))?;
    Ok(d)
}

fn tar_layout(dir: &Path, w: &mut dyn Write) -> io::Result<()> {
    let mut entries = Vec::new();
    let modes = |is_dir: bool, _: u32| if is_dir { 0o755 } else { 0o644 };
    for top in ["blobs", "index.json", "oci-layout"] {
        tarw::walk(&dir.join(top), top, 0, 0, &modes, &mut entries)?;
    }
    let mut b = tar::Builder::new(w);
    for e in &entries {
        tarw::append(&mut b, e)?;
    }
    b.finish()
}

/// A reader of a layer blob's uncompressed tar.
pub fn decompress(blob: &Path, media_type: &str) -> io::Result<Box<dyn Read>> {
    let f = io::BufReader::with_capacity(1 << 20, File::open(blob)?);
    if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
        Ok(Box::new(flate2::read::GzDecoder::new(f)))
    } else if media_type.ends_with("+zstd") {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(f)?))
    } else if media_type.ends_with(".tar")
        || media_type.ends_with("rootfs.diff.tar")
        || media_type.ends_with("layer.v1.tar")
    {
        Ok(Box::new(f))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unsupported layer media type {media_type}"),
        ))
    }
}

/// A reader that hashes what passes through it.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(tarw::MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(mode);
    h.set_size(size);
    h
}

fn docker_archive(
    built: &[BuiltLayer],
    config: &[u8],
    config_hex: &str,
    ref_name: &str,
    w: &mut dyn Write,
) -> io::Result<()> {
    let config_name = format!("{config_hex}.json");
    let layer_names: Vec<String> = built
        .iter()
        .map(|l| format!("{}.tar", l.info.diff_id.trim_start_matches("sha256:")))
        .collect();
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [ref_name],
        "Layers": layer_names,
    }]))
    .map_err(io::Error::other)?;
    // entries in name order
    let mut names: Vec<(String, Option<usize>)> =
        vec![(config_name.clone(), None), ("manifest.json".into(), None)];
    let mut seen = HashSet::new();
    for (i, n) in layer_names.iter().enumerate() {
        if seen.insert(n.clone()) {
            names.push((n.clone(), Some(i)));
        }
    }
    names.sort();
    let mut b = tar::Builder::new(w);
    for (name, layer) in names {
        match layer {
            Some(i) => {
                let l = &built[i];
                let mut r = HashReader {
                    inner: decompress(&l.blob, &l.info.media_type)?.take(l.info.uncompressed_size),
                    hasher: Sha256::new(),
                };
                let mut h = file_header(l.info.uncompressed_size, 0o644);
                b.append_data(&mut h, &name, &mut r)?;
                let got = format!("sha256:{}", hex::encode(r.hasher.finalize()));
                if got != l.info.diff_id {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "layer {} decompressed to {got}, expected {}",
                            l.info.digest, l.info.diff_id
                        ),
                    ));
                }
            }
            None => {
                let data: &[u8] = if name == config_name {
                    config
                } else {
                    &manifest
                };
                let mut h = file_header(data.len() as u64, 0o644);
                b.append_data(&mut h, &name, data)?;
            }
        }
    }
    b.finish()
}

/// The ACI manifest: the spec's template rendered (JSON-escaped values) and checked, or one
/// derived from the spec.
pub fn aci_manifest(spec: &ImageSpec) -> Result<String, ImageError> {
    let Some(tpl) = &spec.aci_manifest else {
        return derived_aci_manifest(spec);
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("name".into(), spec.name.clone());
    vars.insert("version".into(), spec.tag.clone());
    vars.insert("tag".into(), spec.tag.clone());
    vars.insert("os".into(), spec.os.clone());
    vars.insert("arch".into(), spec.arch.clone());
    for (k, v) in &spec.vars {
        vars.insert(k.clone(), v.clone());
    }
    let text = template::render(tpl, &vars, template::json_string_contents)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        ImageError::Spec(format!(
            "the ACI manifest is not JSON after substitution: {e}"
        ))
    })?;
    if v.get("acKind").and_then(Value::as_str) != Some("ImageManifest") {
        return Err(ImageError::Spec(
            "the ACI manifest must have \"acKind\": \"ImageManifest\"".into(),
        ));
    }
    if v.get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ImageError::Spec("the ACI manifest has no \"name\"".into()));
    }
    if v.get("acVersion").and_then(Value::as_str).is_none() {
        return Err(ImageError::Spec(
            "the ACI manifest has no \"acVersion\"".into(),
        ));
    }
    Ok(text)
}

fn derived_aci_manifest(spec: &ImageSpec) -> Result<String, ImageError> {
    let mut m = Map::new();
    m.insert("acKind".into(), json!("ImageManifest"));
    m.insert("acVersion".into(), json!("0.8.11"));
    m.insert("name".into(), json!(spec.name));
    m.insert(
        "labels".into(),
        json!([
            { "name": "version", "value": spec.tag },
            { "name": "os", "value": spec.os },
            { "name": "arch", "value": spec.arch },
        ]),
    );
    let exec: Vec<&String> = spec.entrypoint.iter().chain(spec.cmd.iter()).collect();
    if !exec.is_empty() {
        let (user, group) = match spec
            .user
            .as_deref()
            .map(|u| u.split_once(':').unwrap_or((u, "0")))
        {
            Some((u, g)) => (u.to_string(), g.to_string()),
            None => ("0".to_string(), "0".to_string()),
        };
        let mut app = Map::new();
        app.insert("exec".into(), json!(exec));
        app.insert("user".into(), json!(user));
        app.insert("group".into(), json!(group));
        if let Some(w) = &spec.workdir {
            app.insert("workingDirectory".into(), json!(w));
        }
        let mut env = vec![json!({"name": "PATH", "value": DEFAULT_PATH})];
        if spec.env.iter().any(|(k, _)| k == "PATH") {
            env.clear();
        }
        env.extend(spec.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
        app.insert("environment".into(), json!(env));
        m.insert("app".into(), Value::Object(app));
    }
    if !spec.labels.is_empty() {
        let a: Vec<Value> = spec
            .labels
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        m.insert("annotations".into(), json!(a));
    }
    let mut s = serde_json::to_string_pretty(&Value::Object(m)).map_err(|e| ImageError::Io {
        context: "encoding the ACI manifest".into(),
        source: io::Error::other(e),
    })?;
    s.push('\n');
    Ok(s)
}

/// The extended attributes of a layer entry (`SCHILY.xattr.*` PAX records: SELinux labels,
/// capabilities), carried into the ACI's rootfs tar.
fn xattrs<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Vec<Xattr>> {
    let mut out = Vec::new();
    if let Some(pax) = e.pax_extensions()? {
        for x in pax {
            let x = x?;
            if let Ok(k) = x.key() {
                if k.starts_with("SCHILY.xattr.") {
                    out.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

/// A PAX extended attribute: key (`SCHILY.xattr.NAME`) and value.
type Xattr = (String, Vec<u8>);

/// One entry as [`crate::flatten`] sees it.
fn entry_info<R: Read>(e: &tar::Entry<'_, R>) -> crate::flatten::EntryInfo {
    use crate::flatten::{EntryInfo, Kind};
    let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    let link = || {
        e.link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default()
    };
    let kind = match e.header().entry_type() {
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink(link()),
        tar::EntryType::Link => Kind::HardLink(link()),
        _ => Kind::File,
    };
    EntryInfo { name, kind }
}

fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, x: &[Xattr]) -> io::Result<()> {
    if x.is_empty() {
        return Ok(());
    }
    b.append_pax_extensions(x.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

/// The ACI: `manifest`, then `rootfs/` with the layers flattened the way a runtime applies
/// them ([`crate::flatten`]): a first pass over the layers' entry headers decides which entry
/// survives under which name, a second writes the survivors in layer order.
fn aci_archive(built: &[BuiltLayer], manifest: &[u8], w: &mut dyn Write) -> io::Result<()> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    // pass 1: names and kinds, and the metadata of every directory (a merged directory takes
    // the last layer's)
    let mut layers_info = Vec::with_capacity(built.len());
    let mut dir_meta: BTreeMap<crate::flatten::Pos, (tar::Header, Vec<Xattr>)> = BTreeMap::new();
    for (li, l) in built.iter().enumerate() {
        let mut ar = tar::Archive::new(decompress(&l.blob, &l.info.media_type)?);
        let mut infos = Vec::new();
        for (i, e) in ar.entries()?.enumerate() {
            let mut e = e?;
            if e.header().entry_type().is_dir() {
                let x = xattrs(&mut e)?;
                dir_meta.insert((li, i as u64), (e.header().clone(), x));
            }
            infos.push(entry_info(&e));
        }
        layers_info.push(infos);
    }
    let plan = crate::flatten::plan(layers_info).map_err(|e| {
        invalid(format!(
            "the layers cannot be flattened into the ACI's rootfs: {e}"
        ))
    })?;
    let implicit_dir = |b: &mut tar::Builder<&mut dyn Write>, name: &str| {
        tarw::append(b, &Entry::dir(&format!("rootfs/{name}"), 0o755))
    };
    let mut b = tar::Builder::new(w);
    let mut h = file_header(manifest.len() as u64, 0o644);
    b.append_data(&mut h, "manifest", manifest)?;
    tarw::append(&mut b, &Entry::dir("rootfs", 0o755))?;
    // pass 2: the survivors
    for (li, l) in built.iter().enumerate() {
        let mut ar = tar::Archive::new(decompress(&l.blob, &l.info.media_type)?);
        for (i, e) in ar.entries()?.enumerate() {
            let mut e = e?;
            let Some(k) = plan.kept.get(&(li, i as u64)) else {
                continue;
            };
            for p in &k.implicit_parents {
                implicit_dir(&mut b, p)?;
            }
            let dest = format!("rootfs/{}", k.name);
            let (mut h, x) = match k.meta_from.and_then(|p| dir_meta.get(&p)) {
                Some((h, x)) => (h.clone(), x.clone()),
                None => (e.header().clone(), xattrs(&mut e)?),
            };
            append_xattrs(&mut b, &x)?;
            match h.entry_type() {
                tar::EntryType::Directory => {
                    b.append_data(&mut h, format!("{dest}/"), io::empty())?
                }
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    b.append_link(&mut h, &dest, target)?
                }
                tar::EntryType::Link => {
                    let target = k.link_to.as_deref().ok_or_else(|| {
                        invalid(format!("/{}: a hard link without a target", k.name))
                    })?;
                    b.append_link(&mut h, &dest, format!("rootfs/{target}"))?
                }
                _ => b.append_data(&mut h, &dest, &mut e)?,
            }
        }
    }
    for p in &plan.trailing {
        implicit_dir(&mut b, p)?;
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(1), "1970-01-01T00:00:01Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ports() {
        assert_eq!(port_key("80").ok().as_deref(), Some("80/tcp"));
        assert_eq!(port_key("53/udp").ok().as_deref(), Some("53/udp"));
        assert!(port_key("0").is_err());
        assert!(port_key("80/xyz").is_err());
        assert!(port_key("http").is_err());
    }

    #[test]
    fn seed_aci_template() {
        let mut spec = ImageSpec::new("nginx-production", "1.7.6-p1", vec![]);
        spec.aci_manifest = Some(
            "{\"acKind\": \"ImageManifest\", \"acVersion\": \"0.6.1\", \"name\": \"{{ name }}-{{ version }}\",\n\"labels\": [{\"name\": \"os\", \"value\": \"{{ os }}\"}, {\"name\": \"arch\", \"value\": \"{{ arch }}\"}],\n\"app\": {\"exec\": [\"/sbin/nginx\"], \"user\": \"0\", \"group\": \"0\"}}".into(),
        );
        let m = aci_manifest(&spec).expect("renders");
        let v: Value = serde_json::from_str(&m).expect("json");
        assert_eq!(v["name"], "nginx-production-1.7.6-p1");
        assert_eq!(v["labels"][1]["value"], "amd64");
        spec.aci_manifest =
            Some("{\"acKind\": \"ImageManifest\", \"name\": \"{{ author }}\"}".into());
        assert!(matches!(aci_manifest(&spec), Err(ImageError::Template(_))));
        spec.vars.insert("author".into(), "Sysadmin42".into());
        assert!(
            matches!(aci_manifest(&spec), Err(ImageError::Spec(ref m)) if m.contains("acVersion"))
        );
    }

    /// A layer blob (gzip, in `dir`) of `entries`, the first with a SELinux label.
    fn layer(dir: &Path, key: &str, entries: &[Entry], label: Option<&str>) -> BuiltLayer {
        let (info, blob) = layers::compress_into_cache(dir, key, Compression::Gzip, &|w| {
            let mut b = tar::Builder::new(w);
            for (i, e) in entries.iter().enumerate() {
                if let (0, Some(l)) = (i, label) {
                    b.append_pax_extensions([(crate::selinux::PAX_KEY, l.as_bytes())])?;
                }
                tarw::append(&mut b, e)?;
            }
            b.finish()
        })
        .expect("a layer");
        BuiltLayer {
            info,
            blob,
            members: Vec::new(),
            reused: false,
            at_root: Vec::new(),
        }
    }

    #[test]
    fn aci_rootfs_is_the_layers_applied_in_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let debian = layer(
            t.path(),
            "a",
            &[
                Entry::symlink("bin", "usr/bin"),
                Entry::dir("usr", 0o755),
                Entry::dir("usr/bin", 0o755),
                Entry::bytes("usr/bin/sh", b"sh".to_vec(), 0o755),
                Entry::dir("etc", 0o700),
                Entry::bytes("etc/old", b"old".to_vec(), 0o644),
            ],
            None,
        );
        let top = layer(
            t.path(),
            "b",
            &[
                Entry::dir("etc", 0o755),
                Entry::bytes("etc/old", b"new".to_vec(), 0o600),
                Entry::symlink("bin", "usr/bin"),
                Entry::dir("usr", 0o755),
                Entry::dir("usr/bin", 0o755),
                Entry::symlink("usr/bin/env", "sh"),
            ],
            Some("system_u:object_r:etc_t:s0"),
        );
        let mut out = Vec::new();
        aci_archive(&[debian, top], b"{}", &mut out).expect("flattens");
        let mut ar = tar::Archive::new(out.as_slice());
        let mut got = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            let mode = e.header().mode().expect("mode");
            let label = xattrs(&mut e).expect("pax");
            let mut data = String::new();
            e.read_to_string(&mut data).expect("data");
            got.push(format!("{name} {mode:o} {data} {label:?}"));
        }
        let label = format!("{:?}", "system_u:object_r:etc_t:s0".as_bytes().to_vec());
        assert_eq!(
            got,
            [
                "manifest 644 {} []".to_string(),
                "rootfs/ 755  []".into(),
                "rootfs/usr/ 755  []".into(),
                "rootfs/usr/bin/ 755  []".into(),
                "rootfs/usr/bin/sh 755 sh []".into(),
                // the merged directory keeps its place with the later layer's mode and label
                format!(
                    "rootfs/etc/ 755  [(\"{}\", {label})]",
                    crate::selinux::PAX_KEY
                ),
                "rootfs/etc/old 600 new []".into(),
                "rootfs/bin 777  []".into(),
                "rootfs/usr/bin/env 777  []".into(),
            ]
        );
        // a real conflict is refused with the path
        let t2 = tempfile::tempdir().expect("tempdir");
        let a = layer(
            t2.path(),
            "a",
            &[Entry::bytes("x", b"f".to_vec(), 0o644)],
            None,
        );
        let b = layer(
            t2.path(),
            "b",
            &[Entry::bytes("x/y", b"f".to_vec(), 0o644)],
            None,
        );
        let e = aci_archive(&[a, b], b"{}", &mut Vec::new()).expect_err("below a file");
        assert!(e.to_string().contains("/x/y"), "{e}");
    }

    #[test]
    fn bad_names_and_tags() {
        let mut s = ImageSpec::new("Nginx", "1", vec![]);
        assert!(check_spec(&s).is_err());
        s.name = "team/nginx".into();
        assert!(check_spec(&s).is_ok());
        s.tag = "-x".into();
        assert!(check_spec(&s).is_err());
        s.tag = "1.0".into();
        s.env.push(("A=B".into(), "c".into()));
        assert!(check_spec(&s).is_err());
    }
}
