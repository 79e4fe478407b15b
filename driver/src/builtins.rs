//! The in-process builders the scheduler is given: `builtin:fetchurl` (downloads, the only
//! network access), `builtin:unpack-deb` (Debian packages unpacked in Rust),
//! `builtin:unpack-debian-source` (a Debian source package unpacked as `dpkg-source -x` does,
//! its patches left for a sandboxed step) and `builtin:image` (container images from the JSON spec `image.bld` writes). The builder crate
//! knows none of them by name; this table is where they meet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use buildit_builder::fetch::{builtin_fetchurl, FetchError, Mirrors};
use buildit_builder::{BuildRequest, BuiltinBuilder, BuiltinContext, Builtins};
use buildit_images::{
    ArchiveFn, Compression, ImageError, ImageFormat, ImageSpec, SbomPackage, StoreView, SyncFile,
};
use buildit_store::StorePath;

struct FetchUrl {
    mirrors: Mirrors,
    /// The Debian lock in use when it is not the embedded one (named in the hint of a
    /// package that left the mirror's pool).
    debian_lock: Option<PathBuf>,
}

impl BuiltinBuilder for FetchUrl {
    fn build(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &mut BuiltinContext<'_, '_>,
    ) -> Result<(), String> {
        let out = outputs.get("out").ok_or("fetchurl has one output, `out`")?;
        builtin_fetchurl(&req.env, out, &self.mirrors, &mut |p| {
            ctx.download(&p.url, p.bytes, p.total)
        })
        .map_err(|e| match (e, &self.debian_lock) {
            (FetchError::LeftPool { path, tried, .. }, Some(lock)) => FetchError::LeftPool {
                path,
                tried,
                hint: format!(
                    "this build uses the Debian lock {0} (--debian-lock / BUILDIT_DEBIAN_LOCK), refresh that file with `buildit debian lock --output {0}` (run `apt-get update` first)",
                    lock.display()
                ),
            }
            .to_string(),
            (e, _) => e.to_string(),
        })
    }
}

struct UnpackDeb;

impl BuiltinBuilder for UnpackDeb {
    /// A pure function of its `.deb` inputs (read only inside the input closure).
    fn fixed_output_only(&self) -> bool {
        false
    }

    fn build(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &mut BuiltinContext<'_, '_>,
    ) -> Result<(), String> {
        let out = outputs
            .get("out")
            .ok_or("unpack-deb has one output, `out`")?;
        // the .deb inputs are named by their logical store paths; only exact paths of the
        // input closure are read (this builtin runs outside the sandbox)
        let layout = ctx.layout().clone();
        let report = buildit_debian::unpack::builtin_unpack_deb(&req.env, out, &mut |logical| {
            buildit_builder::input_path::input_path(&layout, &req.input_closure, logical)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?;
        ctx.log(&format!("{report:?}"));
        Ok(())
    }
}

struct UnpackDebianSource;

impl BuiltinBuilder for UnpackDebianSource {
    /// A pure function of its `.dsc` and files (read only inside the input closure).
    fn fixed_output_only(&self) -> bool {
        false
    }

    fn build(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &mut BuiltinContext<'_, '_>,
    ) -> Result<(), String> {
        let out = outputs
            .get("out")
            .ok_or("unpack-debian-source has one output, `out`")?;
        let layout = ctx.layout().clone();
        let unpacked = buildit_debian::source_unpack::builtin_unpack_debian_source(
            &req.env,
            out,
            &mut |logical| {
                buildit_builder::input_path::input_path(&layout, &req.input_closure, logical)
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(|e| e.to_string())?;
        ctx.log(&format!(
            "{} {} ({}): {} patches to apply",
            unpacked.dsc.source,
            unpacked.dsc.version,
            unpacked.dsc.format,
            unpacked.patches.len()
        ));
        Ok(())
    }
}

/// image.bld's JSON spec, as written there (`builtins.toJSON spec`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SpecJson {
    name: String,
    tag: String,
    packages: Vec<String>,
    debian: Vec<DebianJson>,
    sbom: Vec<SbomPackage>,
    files: Vec<FileJson>,
    config: ConfigJson,
    vars: BTreeMap<String, String>,
    os: String,
    arch: String,
    #[serde(rename = "type")]
    format: String,
    compression: String,
    layers: Option<usize>,
    manifest: String,
    /// SELinux file contexts of the packages' `selinux` option (absent without one).
    #[serde(rename = "fileContexts")]
    file_contexts: Vec<buildit_images::FileContexts>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct DebianJson {
    path: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct FileJson {
    src: String,
    dest: String,
    recursive: bool,
    /// The mode as a number (0: keep the host's executable bit).
    mode: u32,
    owner: String,
    /// `allow-setuid: true`: this sync's mode may set the setuid, setgid and sticky bits.
    #[serde(rename = "allowSetuid")]
    allow_setuid: bool,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ConfigJson {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: BTreeMap<String, String>,
    user: String,
    workdir: String,
    ports: Vec<String>,
    labels: BTreeMap<String, String>,
}

fn store_path_of(s: &str) -> Result<StorePath, String> {
    StorePath::parse_prefix(s)
        .map(|(p, _)| p)
        .map_err(|e| format!("image: {e}"))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Decode image.bld's JSON into the image writer's spec.
pub fn image_spec(json: &str) -> Result<ImageSpec, String> {
    let j: SpecJson = serde_json::from_str(json).map_err(|e| format!("image: bad spec: {e}"))?;
    let packages = j
        .packages
        .iter()
        .map(|p| store_path_of(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut spec = ImageSpec::new(&j.name, &j.tag, packages);
    for d in &j.debian {
        spec.rooted.push(store_path_of(&d.path)?);
    }
    spec.sbom = j.sbom;
    for f in j.files {
        if f.allow_setuid {
            spec.setuid_allowed.push(f.dest.clone());
        }
        spec.files.push(SyncFile {
            src: PathBuf::from(f.src),
            dest: f.dest,
            recursive: f.recursive,
            chmod: (f.mode != 0).then(|| format!("{:o}", f.mode)),
            owner: non_empty(f.owner),
        });
    }
    let c = j.config;
    spec.entrypoint = c.entrypoint;
    spec.cmd = c.cmd;
    spec.ports = c.ports;
    spec.user = non_empty(c.user);
    spec.workdir = non_empty(c.workdir);
    spec.env = c.env.into_iter().collect();
    spec.labels = c.labels;
    spec.vars = j.vars;
    spec.os = j.os;
    spec.arch = j.arch;
    spec.format = ImageFormat::parse(&j.format)
        .ok_or_else(|| format!("image: unknown type '{}'", j.format))?;
    spec.compression = Compression::parse(&j.compression)
        .ok_or_else(|| format!("image: unknown compression '{}'", j.compression))?;
    spec.layer_budget = j.layers;
    spec.aci_manifest = non_empty(j.manifest);
    spec.file_contexts = j.file_contexts;
    Ok(spec)
}

/// `builtin:image` runs outside the sandbox: everything its spec reads (packages, Debian
/// trees, synced files) must be in the derivation's input closure, synced files given as exact
/// store paths (no host paths, `..` or symlinks on the way).
fn check_image_inputs(
    spec: &ImageSpec,
    layout: &buildit_store::StoreLayout,
    closure: &[StorePath],
) -> Result<(), String> {
    for p in spec.packages.iter().chain(&spec.rooted) {
        if !closure.contains(p) {
            return Err(format!(
                "image: {p} is not in the derivation's input closure (only declared inputs may be read)"
            ));
        }
    }
    for f in &spec.files {
        let src = f.src.to_string_lossy();
        buildit_builder::input_path::input_path(layout, closure, &src)
            .map_err(|e| format!("image: sync source: {e}"))?;
    }
    for fc in &spec.file_contexts {
        buildit_builder::input_path::input_path(layout, closure, &fc.module)
            .map_err(|e| format!("image: SELinux module: {e}"))?;
        if !closure.contains(&fc.package) {
            return Err(format!(
                "image: {} (SELinux file contexts) is not in the derivation's input closure",
                fc.package
            ));
        }
    }
    Ok(())
}

/// The store as image building sees it from a builtin: the records of the input closure the
/// scheduler handed over.
struct InputView<'c, 'a, 'b> {
    ctx: &'c BuiltinContext<'a, 'b>,
}

impl InputView<'_, '_, '_> {
    fn info(&self, p: &StorePath) -> Result<&buildit_store::PathInfo, ImageError> {
        self.ctx.input_info(p).ok_or_else(|| {
            ImageError::Store(format!(
                "{p} is not a valid path of the derivation's input closure"
            ))
        })
    }
}

impl StoreView for InputView<'_, '_, '_> {
    fn physical(&self, p: &StorePath) -> PathBuf {
        self.ctx.layout().physical(p)
    }
    fn closure(&self, roots: &[StorePath]) -> Result<Vec<StorePath>, ImageError> {
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut todo: Vec<StorePath> = roots.to_vec();
        while let Some(p) = todo.pop() {
            if seen.contains(&p) {
                continue;
            }
            todo.extend(self.info(&p)?.references.iter().cloned());
            seen.insert(p);
        }
        Ok(seen.into_iter().collect())
    }
    fn references(&self, p: &StorePath) -> Result<Vec<StorePath>, ImageError> {
        Ok(self.info(p)?.references.iter().cloned().collect())
    }
    fn content_hash(&self, p: &StorePath) -> Result<String, ImageError> {
        Ok(self.info(p)?.content_hash.to_hex())
    }
    fn size(&self, p: &StorePath) -> Result<u64, ImageError> {
        Ok(self.info(p)?.size)
    }
    fn layer_cache_dir(&self) -> PathBuf {
        buildit_images::layer_cache_dir(self.ctx.layout())
    }
    fn archive_fn(&self) -> ArchiveFn {
        buildit_images::store_archive
    }
}

/// `builtin:image`: `imageSpec` (JSON, from image.bld) → an image directory or archive.
struct Image;

impl BuiltinBuilder for Image {
    /// A pure function of its store inputs (every path of the spec must be in the input
    /// closure).
    fn fixed_output_only(&self) -> bool {
        false
    }

    fn build(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &mut BuiltinContext<'_, '_>,
    ) -> Result<(), String> {
        let out = outputs.get("out").ok_or("an image has one output, `out`")?;
        let json = req
            .env
            .get("imageSpec")
            .ok_or("image: the derivation has no `imageSpec`")?;
        let spec = image_spec(json)?;
        check_image_inputs(&spec, ctx.layout(), &req.input_closure)?;
        let started = std::time::Instant::now();
        let report = buildit_images::build_image_with(&InputView { ctx }, &spec, out)
            .map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        let reused = report.layers.iter().filter(|l| l.reused).count();
        // one summary line (scripts/bench-images reads it), then the layers
        ctx.log(&format!(
            "image {}:{}: {} layers ({reused} from the layer cache), {} bytes of layer data ({} compressed) assembled in {secs:.3} s = {:.1} MB/s",
            spec.name,
            spec.tag,
            report.layers.len(),
            report.layer_bytes,
            report.compressed_bytes,
            report.layer_bytes as f64 / 1e6 / secs.max(1e-9),
        ));
        for l in &report.layers {
            let what = if l.members.is_empty() {
                "top layer".to_string()
            } else {
                l.members.join(" ")
            };
            ctx.log(&format!(
                "  {} {} bytes {}: {what}",
                l.digest,
                l.uncompressed_size,
                if l.reused { "cached" } else { "new" }
            ));
        }
        for w in &report.warnings {
            ctx.log(&format!("warning: {w}"));
        }
        Ok(())
    }
}

/// The environment variable that overrides mirrors: `NAME=URL[,URL...]` entries separated by
/// whitespace or `;` (e.g. `BUILDIT_MIRRORS="debian=http://127.0.0.1:8000/debian"`).
pub const MIRRORS_ENV: &str = "BUILDIT_MIRRORS";

/// Parse the value of [`MIRRORS_ENV`]: mirror name → base URLs (entries without `=` or with
/// no URL are ignored).
pub fn parse_mirror_overrides(v: &str) -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::new();
    for entry in v.split(|c: char| c == ';' || c.is_whitespace()) {
        let Some((name, urls)) = entry.split_once('=') else {
            continue;
        };
        let urls: Vec<String> = urls
            .split(',')
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if !name.is_empty() && !urls.is_empty() {
            m.insert(name.to_string(), urls);
        }
    }
    m
}

/// The mirrors `mirror://NAME/...` URLs resolve against: the machine's apt sources
/// (`debian`, `debian-security`), then [`MIRRORS_ENV`] replacing the mirrors it names.
pub fn mirrors() -> Mirrors {
    let overrides = std::env::var(MIRRORS_ENV)
        .map(|v| parse_mirror_overrides(&v))
        .unwrap_or_default();
    let mut m = Mirrors::new();
    let apt = buildit_debian::debian_mirrors(Path::new(buildit_debian::DEFAULT_APT_ROOT));
    for (name, urls) in apt.unwrap_or_default() {
        m.insert(&name, urls);
    }
    for (name, urls) in overrides {
        m.insert(&name, urls);
    }
    m
}

/// Every builtin builder; `debian_lock` is the Debian lock in use when it is not the
/// embedded one, `mirrors` what `mirror://NAME/` resolves against.
pub fn all(debian_lock: Option<PathBuf>, mirrors: Mirrors) -> Builtins {
    let mut b: Builtins = BTreeMap::new();
    b.insert(
        "fetchurl".into(),
        Arc::new(FetchUrl {
            mirrors,
            debian_lock,
        }),
    );
    b.insert("unpack-deb".into(), Arc::new(UnpackDeb));
    b.insert("unpack-debian-source".into(), Arc::new(UnpackDebianSource));
    b.insert("image".into(), Arc::new(Image));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_overrides() {
        let m = parse_mirror_overrides(
            "debian=http://a/d,http://b/d; x=  debian-security=http://c nothing",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m["debian"], vec!["http://a/d", "http://b/d"]);
        assert_eq!(m["debian-security"], vec!["http://c"]);
    }

    #[test]
    fn allow_setuid_reaches_the_image_spec() {
        let spec = image_spec(
            r#"{"name":"x","tag":"1","type":"oci","compression":"gzip","packages":[],"files":[
                {"src":"/tmp/a","dest":"/usr/bin/a","mode":2541,"allowSetuid":true},
                {"src":"/tmp/b","dest":"/usr/bin/b","mode":493}]}"#,
        )
        .expect("a spec");
        assert_eq!(spec.setuid_allowed, ["/usr/bin/a"]);
        assert_eq!(spec.files[0].chmod.as_deref(), Some("4755"));
        assert_eq!(spec.files[1].chmod.as_deref(), Some("755"));
    }

    /// A value of the wrong type is an error naming the field, not an empty string.
    #[test]
    fn wrong_types_are_errors() {
        let e = image_spec(r#"{"name":1,"tag":"1","type":"oci","compression":"gzip"}"#)
            .expect_err("a number is not a name");
        assert!(e.contains("bad spec"), "{e}");
        let e = image_spec(r#"{"name":"x","tag":"1","type":"floppy","compression":"gzip"}"#)
            .expect_err("an unknown type");
        assert!(e.contains("floppy"), "{e}");
    }
}
