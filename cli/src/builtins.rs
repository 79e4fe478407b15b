//! The in-process builders the CLI gives the scheduler: `builtin:fetchurl` (downloads, the only
//! network access), `builtin:unpack-deb` (Debian packages unpacked in Rust) and
//! `builtin:image` (container images from a JSON spec that `image.bld` writes). The builder crate
//! knows none of them by name; this table is where they meet.

use buildit_builder::fetch::{builtin_fetchurl, FetchError, Mirrors};
use buildit_builder::{BuildRequest, BuiltinBuilder, BuiltinContext, Builtins};
use buildit_images::{Compression, ImageFormat, ImageSpec, SyncFile};
use buildit_store::{Store, StoreLayout, StorePath};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct FetchUrl {
    mirrors: Mirrors,
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
        .map_err(|e| match (e, crate::common::debian_lock_override()) {
            // the lock in use is not the embedded one: name the file to refresh
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

struct UnpackDeb {
    layout: StoreLayout,
}

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
        let report = buildit_debian::unpack::builtin_unpack_deb(&req.env, out, &mut |deb| {
            buildit_builder::input_path::input_path(&self.layout, &req.input_closure, deb)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())?;
        ctx.log(&format!("{report:?}"));
        Ok(())
    }
}

/// `builtin:image`: `imageSpec` (JSON, from image.bld) → an image directory or archive.
struct Image {
    layout: StoreLayout,
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn store_path_of(s: &str) -> Result<StorePath, String> {
    StorePath::parse_prefix(s)
        .map(|(p, _)| p)
        .map_err(|e| format!("image: {e}"))
}

/// Translate image.bld's JSON into the image writer's spec.
pub fn image_spec(json: &str) -> Result<ImageSpec, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("image: bad spec: {e}"))?;
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut packages = Vec::new();
    for p in strings(&v["packages"]) {
        packages.push(store_path_of(&p)?);
    }
    let mut spec = ImageSpec::new(&s("name"), &s("tag"), packages);
    if let Some(debs) = v["debian"].as_array() {
        for d in debs {
            spec.rooted
                .push(store_path_of(d["path"].as_str().unwrap_or(""))?);
        }
    }
    if let Some(sbom) = v.get("sbom") {
        spec.sbom = serde_json::from_value(sbom.clone())
            .map_err(|e| format!("image: bad SBOM facts in the spec: {e}"))?;
    }
    if let Some(files) = v["files"].as_array() {
        for f in files {
            let mode = f["mode"]
                .as_u64()
                .filter(|m| *m != 0)
                .map(|m| format!("{m:o}"));
            let owner = f["owner"]
                .as_str()
                .filter(|o| !o.is_empty())
                .map(str::to_string);
            // `allowSetuid` (YAML `allow-setuid: true`): this sync's chmod may set the setuid,
            // setgid and sticky bits, which the image writer refuses otherwise
            if f["allowSetuid"].as_bool() == Some(true) {
                spec.setuid_allowed
                    .push(f["dest"].as_str().unwrap_or("").to_string());
            }
            spec.files.push(SyncFile {
                src: PathBuf::from(f["src"].as_str().unwrap_or("")),
                dest: f["dest"].as_str().unwrap_or("").to_string(),
                recursive: f["recursive"].as_bool().unwrap_or(false),
                chmod: mode,
                owner,
            });
        }
    }
    let c = &v["config"];
    spec.entrypoint = strings(&c["entrypoint"]);
    spec.cmd = strings(&c["cmd"]);
    spec.ports = strings(&c["ports"]);
    spec.user = c["user"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    spec.workdir = c["workdir"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    if let Some(env) = c["env"].as_object() {
        spec.env = env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
    }
    if let Some(l) = c["labels"].as_object() {
        spec.labels = l
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
    }
    if let Some(vars) = v["vars"].as_object() {
        spec.vars = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
    }
    spec.os = s("os");
    spec.arch = s("arch");
    spec.format = ImageFormat::parse(&s("type"))
        .ok_or_else(|| format!("image: unknown type '{}'", s("type")))?;
    spec.compression = Compression::parse(&s("compression"))
        .ok_or_else(|| format!("image: unknown compression '{}'", s("compression")))?;
    spec.layer_budget = v["layers"].as_u64().map(|n| n as usize);
    let manifest = s("manifest");
    spec.aci_manifest = if manifest.is_empty() {
        None
    } else {
        Some(manifest)
    };
    Ok(spec)
}

/// `builtin:image` runs outside the sandbox: everything its spec reads (packages, Debian
/// trees, synced files) must be in the derivation's input closure, synced files given as exact
/// store paths (no host paths, `..` or symlinks on the way).
fn check_image_inputs(
    spec: &ImageSpec,
    layout: &StoreLayout,
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
    Ok(())
}

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
        check_image_inputs(&spec, &self.layout, &req.input_closure)?;
        let store = Store::open(self.layout.clone()).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let report = buildit_images::build_image(&store, &spec, out).map_err(|e| e.to_string())?;
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
    let apt = buildit_debian::apt::debian_mirrors(Path::new(buildit_debian::apt::DEFAULT_APT_ROOT))
        .unwrap_or_default();
    let mut m = Mirrors::new();
    for (name, urls) in apt.into_iter().chain(overrides) {
        m.insert(&name, urls);
    }
    m
}

/// Every builtin builder, for a store at `layout`.
pub fn all(layout: &StoreLayout) -> Builtins {
    let mirrors = mirrors();
    let mut b: Builtins = BTreeMap::new();
    b.insert("fetchurl".into(), Arc::new(FetchUrl { mirrors }));
    b.insert(
        "unpack-deb".into(),
        Arc::new(UnpackDeb {
            layout: layout.clone(),
        }),
    );
    b.insert(
        "image".into(),
        Arc::new(Image {
            layout: layout.clone(),
        }),
    );
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
    }
}
