//! Container images against real tools: a store holding busybox (and a script package that
//! refers to it) is packed into images that `skopeo` copies (it checks every digest), `umoci`
//! unpacks and `runc` runs, and that `buildit push` sends to a real `docker-registry` on
//! 127.0.0.1, from which skopeo pulls the same manifest back. Trials that need a tool that is
//! not installed (or root, for runc) are ignored with a message naming it, and under CI they fail
//! naming it (`.ci/run` installs busybox-static, skopeo, umoci, runc and docker-registry from
//! Debian). runc runs the config `umoci unpack` derives from the image; a trial changes only
//! what a runtime operator would: no terminal, and the command where it probes the image's files
//! (as `docker run IMAGE COMMAND` does).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use buildit_images::{
    build_image, Compression, ImageFormat, ImageReport, ImageSpec, PushOptions, SyncFile,
};
use buildit_store::{Store, StoreLayout, StorePath};
use libtest_mimic::{Failed, Trial};
use serde_json::Value;

type R = Result<(), Failed>;

fn tool_path(tool: &str) -> PathBuf {
    crate::tool_path(tool)
}

/// A trial needing busybox (every fixture holds it) and `tools` (and root for runc).
fn trial(name: &str, tools: &[&str], needs_root: bool, f: fn() -> R) -> Trial {
    let mut all = vec!["busybox"];
    all.extend_from_slice(tools);
    crate::gated(format!("images::{name}"), &all, needs_root, f)
}

pub fn trials() -> Vec<Trial> {
    vec![
        trial("skopeo_accepts_oci_layout", &["skopeo"], false, skopeo_oci),
        trial("same_spec_same_digest", &[], false, reproducible),
        trial(
            "docker_archive_with_skopeo",
            &["skopeo"],
            false,
            docker_archive,
        ),
        trial("oci_archive_with_skopeo", &["skopeo"], false, oci_archive),
        trial("aci_manifest_and_rootfs", &[], false, aci),
        trial("layer_budget_merges", &["skopeo"], false, budget),
        trial("contents_cli", &[], false, contents_cli),
        trial(
            "buildit_image_one_package",
            &["skopeo", "bwrap"],
            false,
            image_cli,
        ),
        trial("sbom_of_nginx_prod", &["skopeo"], false, sbom_nginx),
        trial("sbom_reaches_deep_dependencies", &[], false, sbom_deep),
        trial(
            "debian_style_packages_at_root",
            &["umoci", "runc", "skopeo"],
            true,
            at_root,
        ),
        trial(
            "umoci_unpack_runc_run",
            &["umoci", "runc"],
            true,
            umoci_runc,
        ),
        trial(
            "registry_push_pull",
            &["docker-registry", "skopeo"],
            false,
            registry,
        ),
    ]
}

fn busybox() -> PathBuf {
    tool_path("busybox")
}

/// A store with `busybox` (bin/busybox + applet links) and `greet` (a script run by busybox's
/// sh, so it refers to busybox).
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    busybox: StorePath,
    greet: StorePath,
}

fn fixture() -> Result<Fixture, Failed> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("store-root");
    let store = Store::open(StoreLayout::at(&root))?;
    let stage = dir.path().join("busybox");
    std::fs::create_dir_all(stage.join("bin"))?;
    std::fs::copy(busybox(), stage.join("bin/busybox"))?;
    for applet in ["sh", "echo", "cat", "ls", "env", "id"] {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet))?;
    }
    let bb = store.add_path(&stage, Some("busybox"))?;
    let greet = StorePath::from_fingerprint("test:greet", "greet")?;
    let staged = store.new_tmp_path("greet");
    std::fs::create_dir_all(staged.join("bin"))?;
    std::fs::write(
        staged.join("bin/greet"),
        format!("#!{bb}/bin/sh\necho \"hello from greet as $(id -u)\"\n"),
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            staged.join("bin/greet"),
            std::fs::Permissions::from_mode(0o755),
        )?;
    }
    store.register_output(&staged, &greet, std::slice::from_ref(&bb), None)?;
    Ok(Fixture {
        _dir: dir,
        store,
        busybox: bb,
        greet,
    })
}

fn spec(f: &Fixture) -> ImageSpec {
    let mut s = ImageSpec::new("greeter", "1.0", vec![f.greet.clone(), f.busybox.clone()]);
    s.entrypoint = vec!["/bin/greet".into()];
    s.env.push(("GREETING".into(), "hi".into()));
    s.labels
        .insert("org.opencontainers.image.title".into(), "greeter".into());
    s.ports.push("8080".into());
    s
}

fn sync_file(dir: &Path, name: &str, text: &str, dest: &str) -> Result<SyncFile, Failed> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(SyncFile {
        src: p,
        dest: dest.into(),
        recursive: false,
        chmod: Some("0640".into()),
        owner: Some("0:65534".into()),
    })
}

fn run(cmd: &mut Command) -> Result<String, Failed> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({})\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn index_manifest_digest(layout: &Path) -> Result<String, Failed> {
    let v: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let ms = v["manifests"].as_array().ok_or("no manifests")?;
    if ms.len() != 1 {
        return Err(format!("{} manifests in {}", ms.len(), layout.display()).into());
    }
    Ok(ms[0]["digest"].as_str().ok_or("no digest")?.to_string())
}

fn build(f: &Fixture, s: &ImageSpec, out: &Path) -> Result<ImageReport, Failed> {
    Ok(build_image(&f.store, s, out)?)
}

fn skopeo_oci() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let img = tmp.path().join("img");
    let rep = build(&f, &spec(&f), &img)?;
    if rep.layers.len() != 3 {
        return Err(format!("expected 2 store layers + top, got {:?}", rep.layers).into());
    }
    if rep.layers[0].members != vec![f.busybox.to_string()] {
        return Err(format!(
            "busybox (depended upon) must be the bottom layer: {:?}",
            rep.layers
        )
        .into());
    }
    let other = tmp.path().join("other");
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci:{}", img.display()),
        &format!("oci:{}:copied", other.display()),
    ]))?;
    let got = index_manifest_digest(&other)?;
    if got != rep.manifest_digest {
        return Err(format!(
            "skopeo's copy has manifest {got}, ours is {}",
            rep.manifest_digest
        )
        .into());
    }
    // skopeo reads our config back
    let inspect = run(Command::new(tool_path("skopeo")).args([
        "inspect",
        "--config",
        &format!("oci:{}", img.display()),
    ]))?;
    let cfg: Value = serde_json::from_str(&inspect)?;
    if cfg["config"]["Entrypoint"][0] != "/bin/greet" || cfg["created"] != "1970-01-01T00:00:01Z" {
        return Err(format!("unexpected config {cfg}").into());
    }
    if cfg["config"]["ExposedPorts"]["8080/tcp"] != serde_json::json!({}) {
        return Err(format!("ports missing: {cfg}").into());
    }
    Ok(())
}

fn reproducible() -> R {
    // two independent stores with the same contents, cold layer caches
    let a = fixture()?;
    let b = fixture()?;
    if a.greet != b.greet || a.busybox != b.busybox {
        return Err("the fixtures differ".into());
    }
    let tmp = tempfile::tempdir()?;
    // the layer cache is keyed by content and compression, not by output format: only the first
    // build of each compression starts cold
    let mut warm = std::collections::HashSet::new();
    for (fmt, compression) in [
        (ImageFormat::Oci, Compression::Gzip),
        (ImageFormat::Oci, Compression::Zstd),
        (ImageFormat::OciArchive, Compression::Gzip),
        (ImageFormat::DockerArchive, Compression::Gzip),
        (ImageFormat::Aci, Compression::Gzip),
    ] {
        let mut s = spec(&a);
        s.format = fmt;
        s.compression = compression;
        s.files
            .push(sync_file(tmp.path(), "motd", "welcome\n", "/etc/motd")?);
        let tag = format!("{}-{}", fmt.as_str(), compression.as_str());
        let r1 = build(&a, &s, &tmp.path().join(format!("a-{tag}")))?;
        let r2 = build(&b, &s, &tmp.path().join(format!("b-{tag}")))?;
        // and again from a warm cache
        let r3 = build(&a, &s, &tmp.path().join(format!("c-{tag}")))?;
        if r1.manifest_digest != r2.manifest_digest
            || r1.manifest_digest != r3.manifest_digest
            || r1.artifact_digest != r2.artifact_digest
            || r1.artifact_digest != r3.artifact_digest
        {
            return Err(format!("{tag}: digests differ: {r1:?} / {r2:?} / {r3:?}").into());
        }
        let cold = warm.insert(compression.as_str());
        if (cold && r1.layers.iter().any(|l| l.reused)) || !r3.layers.iter().all(|l| l.reused) {
            return Err(format!("{tag}: the cache was not used as expected").into());
        }
    }
    // a different synced file changes the top layer only
    let mut s1 = spec(&a);
    s1.files
        .push(sync_file(tmp.path(), "m1", "one\n", "/etc/motd")?);
    let mut s2 = spec(&a);
    s2.files
        .push(sync_file(tmp.path(), "m2", "two\n", "/etc/motd")?);
    let r1 = build(&a, &s1, &tmp.path().join("s1"))?;
    let r2 = build(&a, &s2, &tmp.path().join("s2"))?;
    let n = r1.layers.len();
    if r1.layers[..n - 1]
        .iter()
        .map(|l| &l.digest)
        .ne(r2.layers[..n - 1].iter().map(|l| &l.digest))
        || r1.layers[n - 1].digest == r2.layers[n - 1].digest
    {
        return Err("changing a synced file must change exactly the top layer".into());
    }
    Ok(())
}

fn docker_archive() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let mut s = spec(&f);
    s.format = ImageFormat::DockerArchive;
    let rep = build(&f, &s, &tmp.path().join("img"))?;
    let other = tmp.path().join("other");
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("docker-archive:{}", rep.output.display()),
        &format!("oci:{}:x", other.display()),
    ]))?;
    let md = index_manifest_digest(&other)?;
    let m: Value = serde_json::from_slice(&std::fs::read(
        other.join("blobs").join(md.replacen(':', "/", 1)),
    )?)?;
    let n = m["layers"].as_array().map(|l| l.len()).unwrap_or(0);
    if n != rep.layers.len() {
        return Err(format!("skopeo saw {n} layers, the image has {}", rep.layers.len()).into());
    }
    let entries = buildit_images::image_contents(&rep.output)?;
    if !entries.iter().any(|e| e.path == "/etc/passwd") {
        return Err("contents of the docker-archive lack /etc/passwd".into());
    }
    Ok(())
}

fn oci_archive() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let mut s = spec(&f);
    s.format = ImageFormat::OciArchive;
    let rep = build(&f, &s, &tmp.path().join("img"))?;
    let other = tmp.path().join("other");
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci-archive:{}", rep.output.display()),
        &format!("oci:{}:x", other.display()),
    ]))?;
    let got = index_manifest_digest(&other)?;
    if got != rep.manifest_digest {
        return Err(format!(
            "oci-archive copy changed the manifest: {got} vs {}",
            rep.manifest_digest
        )
        .into());
    }
    Ok(())
}

fn aci() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let mut s = spec(&f);
    s.format = ImageFormat::Aci;
    s.vars.insert("author".into(), "Sysadmin42".into());
    s.aci_manifest = Some(
        r#"{
  "acKind": "ImageManifest",
  "acVersion": "0.6.1",
  "name": "{{ name }}-{{ version }}",
  "labels": [
    {"name": "os", "value": "{{ os }}"},
    {"name": "arch", "value": "{{ arch }}"}
  ],
  "annotations": [{"name": "authors", "value": "{{ author }}"}],
  "app": {"exec": ["/bin/greet"], "user": "0", "group": "0"}
}
"#
        .into(),
    );
    let rep = build(&f, &s, &tmp.path().join("img"))?;
    let mut ar = tar::Archive::new(std::fs::File::open(&rep.output)?);
    let mut names = Vec::new();
    let mut manifest = String::new();
    for e in ar.entries()? {
        let mut e = e?;
        let n = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if n == "manifest" {
            std::io::Read::read_to_string(&mut e, &mut manifest)?;
        }
        names.push(n);
    }
    let m: Value = serde_json::from_str(&manifest)?;
    if m["name"] != "greeter-1.0"
        || m["labels"][1]["value"] != "amd64"
        || m["annotations"][0]["value"] != "Sysadmin42"
    {
        return Err(format!("manifest not rendered: {manifest}").into());
    }
    let bb = format!("rootfs/bld/store/{}/bin/busybox", f.busybox.base_name());
    for want in [
        bb.as_str(),
        "rootfs/etc/passwd",
        "rootfs/usr/bin/greet",
        "rootfs/bin",
    ] {
        if !names.iter().any(|n| n == want) {
            return Err(format!("{want} missing from the ACI: {names:?}").into());
        }
    }
    if names.first().map(String::as_str) != Some("manifest") {
        return Err("manifest must come first".into());
    }
    // an unknown variable is an error, not a silent blank
    s.aci_manifest =
        Some(r#"{"acKind": "ImageManifest", "acVersion": "0.6.1", "name": "{{ nope }}"}"#.into());
    match build(&f, &s, &tmp.path().join("img2")) {
        Err(e) if format!("{e:?}").contains("nope") => Ok(()),
        other => Err(format!("expected an unknown-variable error, got {other:?}").into()),
    }
}

fn budget() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let mut s = spec(&f);
    s.layer_budget = Some(2);
    let rep = build(&f, &s, &tmp.path().join("img"))?;
    if rep.layers.len() != 2 || rep.layers[0].members.len() != 2 {
        return Err(format!(
            "budget 2 must merge both paths into one layer: {:?}",
            rep.layers
        )
        .into());
    }
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci:{}", tmp.path().join("img").display()),
        &format!("oci:{}:x", tmp.path().join("other").display()),
    ]))?;
    s.layer_budget = Some(101);
    match build(&f, &s, &tmp.path().join("img2")) {
        Err(e)
            if e.message().is_some_and(|m| {
                m.contains(
                    "layer budget 101 is out of range: an image has between 2 and 100 layers",
                )
            }) =>
        {
            Ok(())
        }
        other => {
            Err(format!("a budget over 100 must be refused as out of range: {other:?}").into())
        }
    }
}

fn contents_cli() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let img = tmp.path().join("img");
    build(&f, &spec(&f), &img)?;
    let out = run(crate::cli::buildit().args(["contents", "--json"]).arg(&img))?;
    let v: Value = serde_json::from_str(&out)?;
    let list = v.as_array().ok_or("not a list")?;
    let find = |p: &str| list.iter().find(|e| e["path"] == p);
    let bb = f.busybox.to_string();
    let e = find(&format!("{bb}/bin/busybox")).ok_or("busybox binary missing")?;
    if e["package"] != bb.as_str() || e["kind"] != "file" || e["mode"] != 0o555 {
        return Err(format!("busybox entry: {e}").into());
    }
    let sh = find("/usr/bin/sh").ok_or("profile link /usr/bin/sh missing")?;
    if sh["package"] != bb.as_str() || sh["target"] != format!("{bb}/bin/sh").as_str() {
        return Err(format!("profile link: {sh}").into());
    }
    if find("/etc/passwd").ok_or("no /etc/passwd")?["package"] != Value::Null {
        return Err("/etc/passwd belongs to no package".into());
    }
    let text = run(crate::cli::buildit().arg("contents").arg(&img))?;
    if !text.contains(&format!("{bb}\t/usr/bin/echo -> {bb}/bin/echo")) {
        return Err(format!("text listing:\n{text}").into());
    }
    let bad = crate::cli::buildit()
        .arg("contents")
        .arg(tmp.path())
        .output()?;
    if bad.status.code() != Some(1)
        || !String::from_utf8_lossy(&bad.stderr).contains("buildit::image::not-an-image")
    {
        return Err(format!("a non-image must be a diagnostic: {bad:?}").into());
    }
    Ok(())
}

fn umoci_runc() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let img = tmp.path().join("img");
    let mut s = spec(&f);
    s.files
        .push(sync_file(tmp.path(), "motd", "synced file\n", "/etc/motd")?);
    build(&f, &s, &img)?;
    let bundle = tmp.path().join("bundle");
    run(Command::new(tool_path("umoci")).args([
        "unpack",
        "--image",
        &format!("{}:greeter:1.0", img.display()),
        &bundle.display().to_string(),
    ]))?;
    let cfg_path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
    let args = cfg["process"]["args"].clone();
    if args != serde_json::json!(["/bin/greet"]) {
        return Err(format!("umoci's config lost the entrypoint: {args}").into());
    }
    let mut outputs = Vec::new();
    for (i, argv) in [
        serde_json::json!(["/bin/greet"]),
        serde_json::json!([
            "/bin/sh",
            "-c",
            "cat /etc/motd; ls -l /etc/motd | cut -c1-10; echo $GREETING"
        ]),
    ]
    .into_iter()
    .enumerate()
    {
        cfg["process"]["args"] = argv;
        cfg["process"]["terminal"] = Value::Bool(false);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
        let id = format!("buildit-test-{}-{i}", std::process::id());
        let out = run(Command::new(tool_path("runc"))
            .arg("--root")
            .arg(tmp.path().join("runc-state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null()))?;
        outputs.push(out);
    }
    if outputs[0] != "hello from greet as 0\n" {
        return Err(format!("greet printed {:?}", outputs[0]).into());
    }
    if outputs[1] != "synced file\n-rw-r-----\nhi\n" {
        return Err(format!("the synced file / env in the container: {:?}", outputs[1]).into());
    }
    Ok(())
}

fn registry() -> R {
    let f = fixture()?;
    let reg = crate::servers::start_registry()?;
    let tmp = tempfile::tempdir()?;
    let img = tmp.path().join("img");
    let rep = build(&f, &spec(&f), &img)?;
    let opts = PushOptions {
        insecure: true,
        chunk_size: 300_000, // several PATCH requests for busybox's layer
        known_blobs: Some(tmp.path().join("known.json")),
        ..PushOptions::default()
    };
    // without --insecure the push speaks HTTPS only, which the plain-HTTP registry cannot answer
    match buildit_images::push_image(
        &img,
        &format!("{}/greeter:1.0", reg.addr),
        &PushOptions::default(),
    ) {
        Err(buildit_images::ImageError::Registry(m))
            if m.starts_with(&format!("https://{}/: error sending request", reg.addr)) => {}
        other => {
            return Err(format!(
                "a push without --insecure must fail on HTTPS to the plain-HTTP registry: {other:?}"
            )
            .into())
        }
    }
    let p1 = buildit_images::push_image(&img, &format!("{}/greeter:1.0", reg.addr), &opts)?;
    let total: u64 = rep.layers.iter().map(|l| l.size).sum();
    if p1.uploaded_bytes < total || p1.skipped_bytes != 0 {
        return Err(format!("first push: {p1:?}").into());
    }
    let pulled = tmp.path().join("pulled");
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/greeter:1.0", reg.addr),
        &format!("oci:{}:x", pulled.display()),
    ]))?;
    let got = index_manifest_digest(&pulled)?;
    if got != rep.manifest_digest {
        return Err(format!("pulled {got}, pushed {}", rep.manifest_digest).into());
    }
    // the SBOM is attached as an artifact whose subject is the image's manifest
    let sb = p1.sbom.as_ref().ok_or("no SBOM attached")?;
    let tag = format!("{}.sbom", rep.manifest_digest.replacen(':', "-", 1));
    if sb.reference != format!("{}/greeter:{tag}", reg.addr) {
        return Err(format!("SBOM reference {}", sb.reference).into());
    }
    let raw = run(Command::new(tool_path("skopeo")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/greeter:{tag}", reg.addr),
    ]))?;
    let art: Value = serde_json::from_str(&raw)?;
    if art["artifactType"] != "application/spdx+json"
        || art["subject"]["digest"] != rep.manifest_digest.as_str()
        || art["layers"][0]["mediaType"] != "application/spdx+json"
    {
        return Err(format!("SBOM artifact: {art}").into());
    }
    let sbom_file = std::fs::read(img.join("sbom.spdx.json"))?;
    let want = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sbom_file))
    );
    if art["layers"][0]["digest"] != want.as_str() {
        return Err(format!("the SBOM layer is not sbom.spdx.json: {art}").into());
    }
    // the CycloneDX SBOM beside it, as its own artifact of the same subject
    let cdx = p1
        .sbom_cyclonedx
        .as_ref()
        .ok_or("no CycloneDX SBOM attached")?;
    let cdx_tag = format!("{}.cdx", rep.manifest_digest.replacen(':', "-", 1));
    if cdx.reference != format!("{}/greeter:{cdx_tag}", reg.addr) {
        return Err(format!("CycloneDX SBOM reference {}", cdx.reference).into());
    }
    let raw = run(Command::new(tool_path("skopeo")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/greeter:{cdx_tag}", reg.addr),
    ]))?;
    let art: Value = serde_json::from_str(&raw)?;
    let cdx_file = std::fs::read(img.join("sbom.cdx.json"))?;
    let want = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cdx_file))
    );
    if art["artifactType"] != "application/vnd.cyclonedx+json"
        || art["subject"]["digest"] != rep.manifest_digest.as_str()
        || art["layers"][0]["mediaType"] != "application/vnd.cyclonedx+json"
        || art["layers"][0]["digest"] != want.as_str()
        || cdx.manifest_digest
            != format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()))
            )
    {
        return Err(format!("CycloneDX SBOM artifact ({}): {art}", cdx.manifest_digest).into());
    }
    let p2 = buildit_images::push_image(&img, &format!("{}/greeter:1.0", reg.addr), &opts)?;
    if p2.uploaded_bytes != 0 {
        return Err(format!("second push uploaded {} bytes", p2.uploaded_bytes).into());
    }
    // a second image sharing the store layers, into another repository: only the new top
    // layer and config are uploaded, the rest mounted from greeter
    let mut s2 = spec(&f);
    s2.files
        .push(sync_file(tmp.path(), "motd", "v2\n", "/etc/motd")?);
    let img2 = tmp.path().join("img2");
    let rep2 = build(&f, &s2, &img2)?;
    let p3 = buildit_images::push_image(&img2, &format!("{}/greeter-v2:2.0", reg.addr), &opts)?;
    let top = rep2.layers.last().ok_or("no layers")?;
    let cfg_size = std::fs::metadata(
        img2.join("blobs")
            .join(rep2.config_digest.replacen(':', "/", 1)),
    )?
    .len();
    if p3.uploaded_bytes != top.size + cfg_size {
        return Err(format!(
            "second image uploaded {} bytes, expected top layer {} + config {cfg_size}: {p3:?}",
            p3.uploaded_bytes, top.size
        )
        .into());
    }
    if !p3.blobs.iter().any(|b| b.action == "mounted") {
        return Err(format!("no blob was mounted: {p3:?}").into());
    }
    // the CLI prints bytes uploaded vs skipped
    let out = run(crate::cli::buildit()
        .args(["push", "--insecure", "--json"])
        .arg(&img2)
        .arg(format!("{}/greeter-v2:2.0", reg.addr)))?;
    let v: Value = serde_json::from_str(&out)?;
    if v["uploaded_bytes"] != 0 || v["manifest_digest"] != rep2.manifest_digest.as_str() {
        return Err(format!("CLI push report: {v}").into());
    }
    Ok(())
}

/// Two Debian-style packages (unpacked with merged /usr) in the store: `fakelib` holds a
/// library file, `rootsh` a shell at `usr/bin/ash` (busybox) with the `bin` → `usr/bin`
/// link, as `builtin:unpack-deb` leaves them.
fn debian_style(f: &Fixture, dir: &Path) -> Result<(StorePath, StorePath), Failed> {
    let mk =
        |name: &str, fill: &dyn Fn(&Path) -> std::io::Result<()>| -> Result<StorePath, Failed> {
            let stage = dir.join(name);
            std::fs::create_dir_all(stage.join("usr/bin"))?;
            std::fs::create_dir_all(stage.join("usr/lib/x86_64-linux-gnu"))?;
            std::os::unix::fs::symlink("usr/bin", stage.join("bin"))?;
            fill(&stage)?;
            Ok(f.store.add_path(&stage, Some(name))?)
        };
    let lib = mk("debian-fakelib_1.0-1", &|s| {
        std::fs::write(
            s.join("usr/lib/x86_64-linux-gnu/libfake.so.1"),
            "not really a library\n",
        )
    })?;
    let sh = mk("debian-rootsh_2.0-1", &|s| {
        std::fs::copy(busybox(), s.join("usr/bin/ash")).map(|_| ())
    })?;
    Ok((lib, sh))
}

fn at_root() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let (lib, sh) = debian_style(&f, tmp.path())?;
    let mut s = spec(&f);
    s.rooted = vec![sh.clone(), lib.clone()];
    let img = tmp.path().join("img");
    let rep = build(&f, &s, &img)?;
    // greet, busybox, each Debian-style package alone, then the top layer
    if rep.layers.len() != 5 {
        return Err(format!("one layer per package expected: {:?}", rep.layers).into());
    }
    for p in [&lib, &sh] {
        if !rep.layers.iter().any(|l| l.members == [p.to_string()]) {
            return Err(format!("{p} has no layer of its own: {:?}", rep.layers).into());
        }
    }
    let contents = |img: &Path| -> Result<Vec<Value>, Failed> {
        let out = run(crate::cli::buildit().args(["contents", "--json"]).arg(img))?;
        let v: Value = serde_json::from_str(&out)?;
        Ok(v.as_array().ok_or("not a list")?.clone())
    };
    let check = |list: &[Value], what: &str| -> R {
        let pkg = |p: &str| {
            list.iter()
                .filter(|e| e["path"] == p)
                .map(|e| e["package"].clone())
                .collect::<Vec<_>>()
        };
        if pkg("/usr/lib/x86_64-linux-gnu/libfake.so.1") != [Value::from(lib.to_string())] {
            return Err(format!("{what}: libfake.so.1 is not attributed to {lib}").into());
        }
        if pkg("/usr/bin/ash") != [Value::from(sh.to_string())] {
            return Err(format!("{what}: /usr/bin/ash is not attributed to {sh}").into());
        }
        if list
            .iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.contains("debian-")))
        {
            return Err(format!("{what}: an at-root package was put under /bld/store").into());
        }
        Ok(())
    };
    check(&contents(&img)?, "own layers")?;
    // a budget of 2 merges everything into one layer: the ranges still say which is which
    let mut merged = s.clone();
    merged.layer_budget = Some(2);
    let img2 = tmp.path().join("img2");
    let rep2 = build(&f, &merged, &img2)?;
    if rep2.layers.len() != 2 {
        return Err(format!("budget 2: {:?}", rep2.layers).into());
    }
    check(&contents(&img2)?, "merged layer")?;
    let mut dock = s.clone();
    dock.format = ImageFormat::DockerArchive;
    let img3 = tmp.path().join("img3");
    build(&f, &dock, &img3)?;
    check(&contents(&img3)?, "docker-archive")?;
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci:{}", img.display()),
        &format!("oci:{}:x", tmp.path().join("copy").display()),
    ]))?;
    // the unpacked image runs the at-root shell through the /bin → usr/bin link
    let bundle = tmp.path().join("bundle");
    run(Command::new(tool_path("umoci")).args([
        "unpack",
        "--image",
        &format!("{}:greeter:1.0", img.display()),
        &bundle.display().to_string(),
    ]))?;
    let cfg_path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
    cfg["process"]["args"] = serde_json::json!([
        "/bin/ash",
        "-c",
        "cat /usr/lib/x86_64-linux-gnu/libfake.so.1; ls -ld /usr/lib | cut -c1-10"
    ]);
    cfg["process"]["terminal"] = Value::Bool(false);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
    let out = run(Command::new(tool_path("runc"))
        .arg("--root")
        .arg(tmp.path().join("runc-state"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(format!("buildit-test-root-{}", std::process::id()))
        .stdin(Stdio::null()))?;
    if out != "not really a library\ndrwxr-xr-x\n" {
        return Err(format!("the at-root files in the container: {out:?}").into());
    }
    Ok(())
}

/// `buildit image ATOM|PKGDIR`: app-misc/hello (built from source in the package tests' shared
/// store, so the sysroot is built once per test run) packed as
/// its own image: skopeo accepts it, `buildit contents` lists bin/hello with its package, the
/// entrypoint is /bin/hello, Debian's libc6 is a layer of its own; a PKGDIR with `base:` gives
/// the same image; `--format docker-archive --json` reports it; an unknown atom is a diagnostic.
fn image_cli() -> R {
    let store = crate::pkgs::shared_store()?;
    let work = tempfile::tempdir()?;
    let image = |args: &[&str]| -> Result<std::process::Output, Failed> {
        let mut c = crate::cli::buildit();
        if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
            c.env("BUILDIT_DEBIAN_LOCK", lock);
        }
        Ok(c.current_dir(work.path())
            .arg("image")
            .args(args)
            .arg("--store-root")
            .arg(store)
            .output()?)
    };
    let o = image(&["app-misc/hello"])?;
    if !o.status.success() {
        return Err(format!("buildit image: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !path.ends_with("-hello-2.10-oci") {
        return Err(format!("printed {path:?}").into());
    }
    let result = work.path().join("result");
    if !result.join("index.json").is_file() {
        return Err("./result is not an OCI layout".into());
    }
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci:{}", result.display()),
        &format!("oci:{}:x", work.path().join("copy").display()),
    ]))?;
    let out = run(crate::cli::buildit()
        .args(["contents", "--json"])
        .arg(&result))?;
    let list: Vec<Value> = serde_json::from_str(&out)?;
    let hello = list
        .iter()
        .find(|e| {
            e["path"].as_str().is_some_and(|p| {
                p.starts_with("/bld/store/") && p.ends_with("-hello-2.10/bin/hello")
            })
        })
        .ok_or("no bin/hello in the image")?;
    if hello["package"]
        .as_str()
        .is_none_or(|p| !p.ends_with("-hello-2.10"))
    {
        return Err(format!("bin/hello: {hello}").into());
    }
    if !list.iter().any(|e| e["path"] == "/usr/bin/hello") {
        return Err("no /usr/bin/hello profile link".into());
    }
    if !list.iter().any(|e| {
        e["path"] == "/usr/lib/x86_64-linux-gnu/libc.so.6"
            && e["package"]
                .as_str()
                .is_some_and(|p| p.contains("-debian-libc6_"))
    }) {
        return Err("libc6 is not laid out at / as its own package".into());
    }
    let manifest = index_manifest_digest(&result)?;
    let blob = |d: &str| {
        result
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let m: Value = serde_json::from_slice(&std::fs::read(blob(&manifest))?)?;
    let cfg: Value = serde_json::from_slice(&std::fs::read(blob(
        m["config"]["digest"].as_str().ok_or("no config")?,
    ))?)?;
    if cfg["config"]["Entrypoint"] != serde_json::json!(["/bin/hello"]) {
        return Err(format!("entrypoint: {}", cfg["config"]["Entrypoint"]).into());
    }
    // the SBOM beside the layout: hello with its source, Debian's libc6 with its version
    let sbom: Value = serde_json::from_slice(&std::fs::read(result.join("sbom.spdx.json"))?)?;
    let pk = sbom["packages"].as_array().ok_or("no SBOM packages")?;
    if !pk
        .iter()
        .any(|p| p["name"] == "hello" && p["versionInfo"] == "2.10")
        || !pk.iter().any(|p| {
            p["name"] == "hello-source"
                && p["externalRefs"][0]["referenceLocator"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("hello_2.10.orig.tar.gz"))
        })
        || !pk.iter().any(|p| {
            p["name"] == "libc6"
                && p["versionInfo"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("2.36-"))
        })
    {
        return Err(format!("hello's SBOM: {sbom}").into());
    }
    crate::sbom::validate_image_dir(&result)?;
    // a pkg.yaml directory naming the same package: the same image
    let pkgdir = work.path().join("pkg");
    std::fs::create_dir_all(&pkgdir)?;
    std::fs::write(pkgdir.join("pkg.yaml"), "base: app-misc/hello-2.10\n")?;
    let o = image(&["--json", "-o", "pkgresult", &pkgdir.display().to_string()])?;
    let v: Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&o.stderr)))?;
    if v["image"] != path.as_str()
        || v["ref"] != "hello:2.10"
        || v["manifest_digest"] != manifest.as_str()
    {
        return Err(format!("PKGDIR image: {v}").into());
    }
    let o = image(&[
        "--json",
        "--format",
        "docker-archive",
        "-o",
        "dock",
        "app-misc/hello",
    ])?;
    let v: Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&o.stderr)))?;
    if v["format"] != "docker-archive"
        || !v["image"]
            .as_str()
            .is_some_and(|p| p.ends_with("-hello-2.10-docker.tar"))
    {
        return Err(format!("docker-archive: {v}").into());
    }
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!(
            "docker-archive:{}",
            work.path().join("dock/image.docker.tar").display()
        ),
        &format!("oci:{}:y", work.path().join("copy2").display()),
    ]))?;
    let o = image(&["app-misc/helo"])?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(1)
        || !err.contains("buildit::image::unknown-atom")
        || !err.contains("did you mean `app-misc/hello`")
    {
        return Err(format!("unknown atom: {err}").into());
    }
    Ok(())
}

/// The SBOM facts of examples/nginx-prod come from the derivation graph (instantiated, not
/// built: nginx with its version, patch and options, zlib and pcre2 with their sources, each
/// Debian runtime package with the lock's exact version); the SPDX document written beside an
/// image with those facts lists them, is not in index.json, and is the same bytes when the
/// image is written again.
/// Instantiate the image expression in `file` into the store at `store` and read the SBOM
/// facts from its derivation's `imageSpec` (no build needed).
fn sbom_facts(store: &Path, file: &Path) -> Result<Vec<buildit_images::SbomPackage>, Failed> {
    let drv = run(crate::cli::buildit()
        .args(["instantiate", "--store-root"])
        .arg(store)
        .arg(file))?;
    let drv = StorePath::parse(drv.trim())?;
    let layout = StoreLayout::at(store);
    let d = buildit_store::derivation::Derivation::decode(&std::fs::read(layout.physical(&drv))?)?;
    let spec_json: Value = serde_json::from_str(d.env.get("imageSpec").ok_or("no imageSpec")?)?;
    Ok(serde_json::from_value(spec_json["sbom"].clone())?)
}

/// The SBOM facts follow runtimeDeps to any depth, each package once, the listed ones first:
/// a chain seven deep with shared dependencies (the facts are in the image derivation's
/// `imageSpec`, so instantiating is enough).
fn sbom_deep() -> R {
    let store = tempfile::tempdir()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("deep.bld");
    std::fs::write(
        &file,
        r#"let
  b = import <buildit>;
  pkg = i: deps: {
    outPath = builtins.toFile "p${toString i}" "package ${toString i}";
    pname = "p${toString i}"; version = "1.${toString i}";
    runtimeDeps = deps; resolved = { }; src = { };
  };
  p1 = pkg 1 [ ];
  p2 = pkg 2 [ p1 ];
  p3 = pkg 3 [ p2 ];
  p4 = pkg 4 [ p3 p2 ];
  p5 = pkg 5 [ p4 ];
  p6 = pkg 6 [ p5 p3 ];
  p7 = pkg 7 [ p6 ];
in
b.image { name = "deep"; packages = [ p7 ]; }
"#,
    )?;
    let facts = sbom_facts(store.path(), &file)?;
    let names: Vec<&str> = facts.iter().map(|p| p.name.as_str()).collect();
    if names != ["p7", "p6", "p5", "p3", "p4", "p2", "p1"] {
        return Err(format!("SBOM packages: {names:?}").into());
    }
    Ok(())
}

fn sbom_nginx() -> R {
    let store = tempfile::tempdir()?;
    let copy = tempfile::tempdir()?;
    let spec_dir = copy.path().join("nginx-prod");
    run(Command::new("cp")
        .arg("-r")
        .arg(crate::root().join("examples/nginx-prod"))
        .arg(&spec_dir))?;
    let text = run(crate::cli::buildit()
        .args(["compile", "--store-root"])
        .arg(store.path())
        .arg(&spec_dir))?;
    std::fs::write(spec_dir.join("compiled.bld"), &text)?;
    let facts = sbom_facts(store.path(), &spec_dir.join("compiled.bld"))?;
    let find = |n: &str| facts.iter().find(|p| p.name == n);
    let nginx = find("nginx").ok_or("no nginx in the SBOM facts")?;
    if nginx.version != "1.22.1"
        || nginx.atom != "www-servers/nginx-1.22.1"
        || nginx
            .patches
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            != ["server-header.patch"]
        || nginx.options != ["http2", "pcre-jit", "ssl"]
        || !nginx.source_url.ends_with("nginx_1.22.1.orig.tar.gz")
        || nginx.source_sha256.len() != 64
    {
        return Err(format!("nginx facts: {nginx:?}").into());
    }
    for n in ["zlib", "pcre2"] {
        let p = find(n).ok_or(format!("no {n}"))?;
        if p.debian || p.source_url.is_empty() || p.version.is_empty() {
            return Err(format!("{n} facts: {p:?}").into());
        }
    }
    // the exact versions of the lock
    let lock = std::fs::read_to_string(crate::root().join("stdlib/debian/bookworm.lock"))?;
    let locked = |n: &str| -> Option<String> {
        let at = lock.find(&format!("\nname = \"{n}\"\n"))?;
        let rest = &lock[at..];
        let v = rest.find("\nversion = \"")? + "\nversion = \"".len();
        rest[v..].split('"').next().map(str::to_string)
    };
    let debs: Vec<&buildit_images::SbomPackage> = facts.iter().filter(|p| p.debian).collect();
    for n in ["libc6", "libssl3", "libcrypt1"] {
        let p = debs
            .iter()
            .find(|p| p.name == n)
            .ok_or(format!("no Debian {n}"))?;
        if Some(p.version.clone()) != locked(n) || p.source_sha256.len() != 64 {
            return Err(format!("Debian {n}: {p:?} (lock: {:?})", locked(n)).into());
        }
    }
    // the document, written beside an image with these facts
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let mut s = spec(&f);
    s.sbom = facts.clone();
    build(&f, &s, &tmp.path().join("a"))?;
    build(&f, &s, &tmp.path().join("b"))?;
    let a = std::fs::read(tmp.path().join("a/sbom.spdx.json"))?;
    if a != std::fs::read(tmp.path().join("b/sbom.spdx.json"))? {
        return Err("the SBOM differs between two writes of the same image".into());
    }
    let doc: Value = serde_json::from_slice(&a)?;
    if doc["spdxVersion"] != "SPDX-2.3"
        || doc["documentDescribes"] != serde_json::json!(["SPDXRef-Image"])
    {
        return Err(format!("not an SPDX 2.3 document: {doc}").into());
    }
    let pk = doc["packages"].as_array().ok_or("no packages")?;
    let by = |n: &str| pk.iter().find(|p| p["name"] == n);
    let n = by("nginx").ok_or("nginx not in the SPDX packages")?;
    let src = by("nginx-source").ok_or("nginx's source not in the SPDX packages")?;
    let comment = n["comment"].as_str().unwrap_or("");
    if n["versionInfo"] != "1.22.1"
        || by("server-header.patch").is_none()
        || !comment.contains("build options: http2 pcre-jit ssl")
        || src["checksums"][0]["checksumValue"] != nginx.source_sha256.as_str()
    {
        return Err(format!("nginx in the SBOM: {n}").into());
    }
    let libc = by("libc6").ok_or("libc6 not in the SPDX packages")?;
    if Some(libc["versionInfo"].as_str().unwrap_or("").to_string()) != locked("libc6") {
        return Err(format!("libc6 in the SBOM: {libc}").into());
    }
    if std::fs::read_to_string(tmp.path().join("a/index.json"))?.contains("sbom") {
        return Err("the SBOM must not be listed in index.json".into());
    }
    crate::sbom::validate_image_dir(&tmp.path().join("a"))?;
    run(Command::new(tool_path("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci:{}", tmp.path().join("a").display()),
        &format!("oci:{}:x", tmp.path().join("copy").display()),
    ]))?;
    Ok(())
}
