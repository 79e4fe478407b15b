//! The seed's example as the seed writes it (`tests/data/seed/nginx-prod/`: its container.yaml,
//! pkg.yaml and the patch file it names).
//!
//! - `seed::pkg_yaml_as_written`: the seed's pkg.yaml asks for nginx 1.7.6, which the package
//!   set does not have (its nginx is Debian 12's 1.22.1, and 1.7.6's source is not pinned
//!   anywhere): that is `buildit::yaml::unknown-version` at its line, with the way out in the
//!   help. With the version the set has, the rest of the file compiles as written: the patch
//!   file, the URL patch (pinned by `buildit.lock` when it has a line for it) and
//!   `use: with: [ipv6, selinux]`. `selinux` does not change the package's build (the same
//!   derivation), only the image's.
//! - `seed::container_yaml_builds_a_valid_aci`: the seed's container.yaml verbatim (an ACI with
//!   the JSON manifest template, `recursive: True`, `chmod: 0644`) over the example's own nginx
//!   package with `selinux` added builds in the E2E fixture's store (so nothing is compiled
//!   again: only the policy module and the images are built), `actool validate` accepts the
//!   `.aci` and its manifest, its SBOMs pass the SBOM validators, the rootfs holds every path
//!   once with `/sbin/nginx` reaching the store's nginx, and the files carry the reference
//!   policy's labels (`security.selinux`) in the ACI and in the OCI layers of the same spec;
//!   the example's image (no `selinux`) has none.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

type R = Result<(), Failed>;

/// The URL patch of the seed's pkg.yaml.
const URL_PATCH: &str =
    "https://github.com/nginx/nginx/commit/52e4dc2f74fd032dace01acbe5eb29ddf7c1ad96.patch";
const EXEC_T: &str = "system_u:object_r:httpd_exec_t:s0";
const CONFIG_T: &str = "system_u:object_r:httpd_config_t:s0";
const SELINUX_PAX: &str = "SCHILY.xattr.security.selinux";

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("seed::pkg_yaml_as_written", pkg_yaml_as_written),
        crate::gated(
            "seed::container_yaml_builds_a_valid_aci".to_string(),
            &["bwrap", "actool"],
            false,
            container_yaml_aci,
        ),
    ]
}

fn seed_dir() -> PathBuf {
    crate::data("seed/nginx-prod")
}

fn run(cmd: &mut Command) -> Result<Output, Failed> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// Copy a directory tree (files and directories only).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// The seed's directory in `dir` with its pkg.yaml's `base:` line replaced by `base`.
fn seed_copy(dir: &Path, base: &str) -> Result<PathBuf, Failed> {
    let spec = dir.join("nginx-prod");
    copy_tree(&seed_dir(), &spec)?;
    let pkg = spec.join("pkgs/nginx/pkg.yaml");
    let text = std::fs::read_to_string(&pkg)?;
    if !text.contains("base: www-servers/nginx-1.7.6\n") {
        return Err(format!("the seed's pkg.yaml changed: {text}").into());
    }
    std::fs::write(
        &pkg,
        text.replace(
            "base: www-servers/nginx-1.7.6\n",
            &format!("base: {base}\n"),
        ),
    )?;
    Ok(spec)
}

fn pkg_yaml_as_written() -> R {
    // as written: nginx 1.7.6 is not in the set, said at the line with the way out
    let o = crate::cli::buildit()
        .arg("compile")
        .arg(seed_dir())
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(1)
        || !err.contains("buildit::yaml::unknown-version")
        || !err.contains("www-servers/nginx has no version 1.7.6")
        || !err.contains("pkg.yaml:2:7")
        || !err.contains("the set has www-servers/nginx 1.22.1")
        || !err.contains("source:")
        || err.contains("unknown-option")
    {
        return Err(format!("the seed's pkg.yaml as written: {o:?}\n{err}").into());
    }
    // with the set's version, the rest compiles as written
    let tmp = tempfile::tempdir()?;
    let spec = seed_copy(tmp.path(), "www-servers/nginx-1.22.1")?;
    let o = run(crate::cli::buildit().arg("compile").arg(&spec))?;
    let bld = String::from_utf8_lossy(&o.stdout);
    let note = String::from_utf8_lossy(&o.stderr);
    for want in [
        "(buildit.pkgs.byAtom \"www-servers/nginx-1.22.1\")",
        "./pkgs/nginx/patches/https-only.patch",
        &format!("buildit.fetchurl {{ url = \"{URL_PATCH}\"; sha256 = \"\"; }}"),
        "use = { enable = [ \"ipv6\" \"selinux\" ]; disable = [ ]; };",
        "type = \"aci\";",
        "\\\"name\\\": \\\"nginx-production-1.7.6-p1\\\"",
        "recursive = true; mode = 420;",
    ] {
        if !bld.contains(want) {
            return Err(format!("`buildit compile` lacks {want:?}:\n{bld}").into());
        }
    }
    if !note.contains("URL patch(es) have no hash in buildit.lock yet") {
        return Err(format!("no note about the unpinned URL patch: {note}").into());
    }
    // a buildit.lock line pins the URL patch: its hash goes into the fixed-output fetch
    let pin = "0000000000000000000000000000000000000000000000000000000000000001";
    std::fs::write(spec.join("buildit.lock"), format!("{pin} {URL_PATCH}\n"))?;
    let o = run(crate::cli::buildit().arg("compile").arg(&spec))?;
    let bld = String::from_utf8_lossy(&o.stdout);
    if !bld.contains(&format!("url = \"{URL_PATCH}\"; sha256 = \"{pin}\";")) {
        return Err(format!("the pinned hash is not used:\n{bld}").into());
    }
    // `selinux` does not change nginx's build, only what goes with it
    let store = tmp.path().join("store");
    let expr = "let n = (import <buildit>).pkgs.byAtom \"www-servers/nginx-1.22.1\"; s = n.withOptions { enable = [ \"selinux\" ]; }; in [ (\"${n}\" == \"${s}\") (builtins.length n.fileContexts) (builtins.length s.fileContexts) s.resolved.selinux ]";
    let o = run(crate::cli::buildit()
        .args(["eval", "--store-root"])
        .arg(&store)
        .args(["-E", expr]))?;
    let got = String::from_utf8_lossy(&o.stdout);
    if got.split_whitespace().collect::<String>() != "[true01true]" {
        return Err(format!("nginx with and without selinux: {got}").into());
    }
    Ok(())
}

/// One entry of a tar stream.
#[derive(Debug)]
struct TarEntry {
    name: String,
    /// The tar type byte.
    kind: u8,
    /// A link's target (empty for other entries).
    link: String,
    /// The `security.selinux` PAX record.
    label: Option<String>,
}

/// Every entry of a tar stream, in order.
fn tar_entries(r: impl Read) -> Result<Vec<TarEntry>, Failed> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(r);
    for e in ar.entries()? {
        let mut e = e?;
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let kind = e.header().entry_type().as_byte();
        let link = e
            .link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default();
        let mut label = None;
        if let Some(pax) = e.pax_extensions()? {
            for x in pax {
                let x = x?;
                if x.key().ok() == Some(SELINUX_PAX) {
                    label = Some(String::from_utf8_lossy(x.value_bytes()).into_owned());
                }
            }
        }
        out.push(TarEntry {
            name,
            kind,
            link,
            label,
        });
    }
    Ok(out)
}

/// Build the spec directory `spec` in the fixture's store; the image's store path.
fn build(spec: &Path, store: &Path, lock: &Path, work: &Path) -> Result<String, Failed> {
    let out = run(crate::cli::buildit()
        .current_dir(work)
        .arg("build")
        .arg(spec)
        .arg("--store-root")
        .arg(store)
        .arg("--debian-lock")
        .arg(lock)
        .arg("--no-out-link"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn physical(store: &Path, p: &str) -> PathBuf {
    store
        .join("store")
        .join(p.trim_start_matches("/bld/store/"))
}

/// The (name → label) of every entry of an OCI layout's layers.
fn oci_labels(layout: &Path) -> Result<BTreeMap<String, Option<String>>, Failed> {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let m = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("no manifest")?;
    let m: Value = serde_json::from_slice(&std::fs::read(blob(m))?)?;
    let mut out = BTreeMap::new();
    for l in m["layers"].as_array().ok_or("no layers")? {
        let d = l["digest"].as_str().ok_or("no digest")?;
        let mt = l["mediaType"].as_str().ok_or("no media type")?;
        let r = buildit_images::oci::decompress(&blob(d), mt)?;
        for e in tar_entries(r)? {
            out.insert(e.name, e.label);
        }
    }
    Ok(out)
}

fn container_yaml_aci() -> R {
    let (store, lock) = crate::e2e::built_store()?;
    let tmp = tempfile::tempdir()?;
    // the seed's container.yaml and files verbatim; the package: the example's nginx (built
    // by the fixture) with the seed's `selinux`
    let spec = tmp.path().join("nginx-prod");
    copy_tree(&seed_dir(), &spec)?;
    let pkg = spec.join("pkgs/nginx");
    std::fs::remove_dir_all(&pkg)?;
    copy_tree(&crate::root().join("examples/nginx-prod/pkgs/nginx"), &pkg)?;
    let yaml = std::fs::read_to_string(pkg.join("pkg.yaml"))?;
    let with_selinux = yaml.replace("    - pcre-jit\n", "    - pcre-jit\n    - selinux\n");
    if with_selinux == yaml {
        return Err(format!("the example's pkg.yaml changed: {yaml}").into());
    }
    std::fs::write(pkg.join("pkg.yaml"), with_selinux)?;
    let t = Instant::now();
    let image = build(&spec, store, lock, tmp.path())?;
    eprintln!(
        "seed: the seed's container.yaml (ACI) in the fixture's store in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if !image.ends_with("-nginx-production-1.7.6-p1.aci") {
        return Err(format!("`buildit build` printed {image:?}").into());
    }
    let aci = physical(store, &image).join("image.aci");
    // the ACI's output directory carries both SBOMs, which pass the validators
    let out_dir = physical(store, &image);
    for f in ["sbom.spdx.json", "sbom.cdx.json"] {
        if !out_dir.join(f).is_file() {
            return Err(format!("the ACI's output directory has no {f}").into());
        }
    }
    crate::sbom::validate_image_dir(&out_dir)?;
    // appc's own validator: the image file, then its manifest alone
    run(Command::new(crate::tool_path("actool"))
        .arg("validate")
        .arg(&aci))?;
    let entries = tar_entries(std::fs::File::open(&aci)?)?;
    let manifest = {
        let mut ar = tar::Archive::new(std::fs::File::open(&aci)?);
        let mut text = String::new();
        for e in ar.entries()? {
            let mut e = e?;
            if e.path_bytes().as_ref() == b"manifest" {
                e.read_to_string(&mut text)?;
            }
        }
        text
    };
    let mpath = tmp.path().join("manifest");
    std::fs::write(&mpath, &manifest)?;
    run(Command::new(crate::tool_path("actool"))
        .arg("validate")
        .arg(&mpath))?;
    let m: Value = serde_json::from_str(&manifest)?;
    if m["name"] != "nginx-production-1.7.6-p1"
        || m["app"]["exec"] != serde_json::json!(["/sbin/nginx"])
        || m["labels"][1]["value"] != "amd64"
    {
        return Err(format!("the rendered manifest: {manifest}").into());
    }
    // one tree: every path once
    let mut seen = BTreeSet::new();
    for e in &entries {
        if !seen.insert(e.name.clone()) {
            return Err(format!("{} is twice in the ACI", e.name).into());
        }
    }
    let find = |n: &str| entries.iter().find(|e| e.name == n);
    let symlink = tar::EntryType::Symlink.as_byte();
    let regular = tar::EntryType::Regular.as_byte();
    // /sbin/nginx → usr/sbin/nginx → the package's sbin/nginx, a file of the rootfs
    if find("rootfs/sbin").map(|e| (e.kind, e.link.as_str())) != Some((symlink, "usr/sbin")) {
        return Err(format!("rootfs/sbin: {:?}", find("rootfs/sbin")).into());
    }
    let target = find("rootfs/usr/sbin/nginx")
        .filter(|e| e.kind == symlink)
        .map(|e| e.link.clone())
        .ok_or("rootfs/usr/sbin/nginx is not the profile's link")?;
    let program = find(&format!("rootfs{target}")).ok_or("the link's target is missing")?;
    if program.kind != regular || !target.ends_with("-nginx-1.22.1/sbin/nginx") {
        return Err(format!("/usr/sbin/nginx → {target}: {program:?}").into());
    }
    // the reference policy's labels: the package's files as installed under /usr, the
    // image's own files at their paths
    let label = |n: &str| find(n).and_then(|e| e.label.clone());
    let want = [
        (format!("rootfs{target}"), Some(EXEC_T)),
        ("rootfs/etc/nginx".to_string(), Some(CONFIG_T)),
        ("rootfs/etc/nginx/nginx.conf".to_string(), Some(CONFIG_T)),
        ("rootfs/usr/sbin/nginx".to_string(), None),
        ("rootfs/etc/passwd".to_string(), None),
    ];
    for (n, l) in &want {
        if label(n).as_deref() != *l {
            return Err(format!("{n}: label {:?}, expected {l:?}", label(n)).into());
        }
    }
    // the same spec as an OCI image: the labels are in the layers
    let yaml = std::fs::read_to_string(spec.join("container.yaml"))?;
    let at = yaml.find("- image:").ok_or("no image step")?;
    std::fs::write(
        spec.join("container.yaml"),
        format!("{}- image:\n    type: oci\n", &yaml[..at]),
    )?;
    let oci = build(&spec, store, lock, tmp.path())?;
    let labels = oci_labels(&physical(store, &oci))?;
    let program = target.trim_start_matches('/');
    for (n, l) in [
        (program, Some(EXEC_T)),
        ("etc/nginx/nginx.conf", Some(CONFIG_T)),
        ("usr/sbin/nginx", None),
    ] {
        if labels.get(n).map(|x| x.as_deref()) != Some(l) {
            return Err(format!("OCI layer entry {n}: {:?}, expected {l:?}", labels.get(n)).into());
        }
    }
    // the example (no `selinux`) has no label anywhere
    let example = build(
        &crate::root().join("examples/nginx-prod"),
        store,
        lock,
        tmp.path(),
    )?;
    let plain = oci_labels(&physical(store, &example))?;
    if !plain.contains_key(program) {
        return Err(format!("the example's image has no {program}").into());
    }
    if let Some((n, l)) = plain.iter().find(|(_, l)| l.is_some()) {
        return Err(format!("the example's image labels {n}: {l:?}").into());
    }
    eprintln!(
        "seed: the ACI, the OCI variant and the checks in {:.1} s after the fixture",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
