//! SBOMs through the real `buildit` binary, checked by the real validators: the SPDX reference
//! validator (`pyspdxtools -i`), the NTIA minimum-elements checker (`sbomcheck`, its JSON
//! report's `isNtiaConformant`) and CycloneDX's JSON-schema validator for 1.6
//! (cyclonedx-python-lib's `JsonStrictValidator`, run by the CI venv's Python). `.ci/run`
//! installs them (.ci/python-tools.txt); without them the trials are ignored outside CI and
//! fail under it.
//!
//! - every package SBOM (`buildit sbom ATOM|PKGDIR`, evaluated, not built) of the set's
//!   packages passes all three, and is the same bytes in another store with another mirror
//!   configuration (no mirror is ever resolved into it);
//! - the nginx-prod image the E2E fixture built carries both SBOMs, which pass all three;
//!   `buildit sbom DIR` (found built) and `buildit sbom IMAGE` print exactly those bytes;
//! - `buildit sbom app-misc/hello` in both formats is snapshotted (store hashes masked, so the
//!   snapshot follows the document's shape and facts, not every change to the set's recipes).
//!
//! Other trials call [`validate_image_dir`] on the images they build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

type R = Result<(), Failed>;

const VALIDATORS: &[&str] = &["pyspdxtools", "sbomcheck"];

pub fn trials() -> Vec<Trial> {
    vec![
        crate::gated(
            "sbom::package_sboms_pass_the_validators".into(),
            VALIDATORS,
            false,
            package_sboms,
        ),
        crate::gated(
            "sbom::nginx_prod_image_passes_the_validators".into(),
            &["bwrap", "pyspdxtools", "sbomcheck"],
            false,
            e2e_image,
        ),
        Trial::test("sbom::snapshot_of_a_package", snapshot),
        Trial::test("sbom::bad_arguments", bad_arguments),
    ]
}

fn work(name: &str) -> PathBuf {
    let d = crate::target_tmpdir().join("sbom").join(name);
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `buildit sbom ARGS…`'s stdout (it must succeed).
fn sbom(args: &[&str], store: &Path, env: &[(&str, &str)]) -> Result<Vec<u8>, Failed> {
    let mut c = crate::cli::buildit();
    c.arg("sbom").args(args).arg("--store-root").arg(store);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output()?;
    if !o.status.success() {
        return Err(format!("buildit sbom {args:?}: {}", describe(&o)).into());
    }
    Ok(o.stdout)
}

/// Run the three validators on an SPDX and a CycloneDX document (files).
pub fn validate(spdx: &Path, cdx: &Path) -> R {
    let o = Command::new(crate::tool_path("pyspdxtools"))
        .arg("-i")
        .arg(spdx)
        .output()?;
    if !o.status.success() || !o.stderr.is_empty() {
        return Err(format!("pyspdxtools -i {}: {}", spdx.display(), describe(&o)).into());
    }
    let o = Command::new(crate::tool_path("sbomcheck"))
        .args(["--output", "json"])
        .arg(spdx)
        .output()?;
    let report: Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("sbomcheck's report ({e}): {}", describe(&o)))?;
    if report["isNtiaConformant"] != true || report["validationMessages"] != serde_json::json!([]) {
        return Err(format!("sbomcheck {}: {report}", spdx.display()).into());
    }
    let python = crate::ci_venv().join("bin/python3");
    let o = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             e = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
             print(e or 'valid')\n\
             sys.exit(1 if e else 0)\n",
        )
        .arg(cdx)
        .output()?;
    if !o.status.success() || String::from_utf8_lossy(&o.stdout).trim() != "valid" {
        return Err(format!("CycloneDX 1.6 schema, {}: {}", cdx.display(), describe(&o)).into());
    }
    Ok(())
}

/// Check both SBOMs of an image's output directory with the validators (and that no mirror
/// was resolved into them). Outside CI, where the validators may be missing, nothing is
/// checked when they are; under CI they must be there.
pub fn validate_image_dir(dir: &Path) -> R {
    if crate::missing_requirements(VALIDATORS, false).is_some() && !crate::in_ci() {
        return Ok(());
    }
    let spdx = dir.join("sbom.spdx.json");
    let cdx = dir.join("sbom.cdx.json");
    for f in [&spdx, &cdx] {
        no_resolved_mirror(&std::fs::read(f)?).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    validate(&spdx, &cdx)
}

/// A Debian pool path appears only behind `mirror://` (a resolved mirror would put a host in
/// front of it).
fn no_resolved_mirror(doc: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(doc);
    for (i, _) in text.match_indices("/pool/") {
        let start = text[..i]
            .rfind(|c: char| c == '"' || c.is_whitespace())
            .map(|s| s + 1)
            .unwrap_or(0);
        let value = &text[start..i];
        if !value.starts_with("mirror://") {
            return Err(format!(
                "a pool location not behind mirror://: {value}/pool/…"
            ));
        }
    }
    Ok(())
}

/// Every package of the set's examples, in both formats, through all three validators; the
/// same bytes in a second store with other mirrors.
fn package_sboms() -> R {
    let dir = work("packages");
    let nginx_pkgdir = crate::root().join("examples/nginx-prod/pkgs/nginx");
    let nginx_pkgdir = nginx_pkgdir.display().to_string();
    let targets = [
        "app-misc/hello",
        "www-servers/nginx",
        "sys-libs/zlib",
        nginx_pkgdir.as_str(),
    ];
    let other_mirrors = [(
        "BUILDIT_MIRRORS",
        "debian=http://127.0.0.1:9/elsewhere debian-security=http://127.0.0.1:9/sec",
    )];
    for (i, t) in targets.iter().enumerate() {
        let spdx = sbom(&["--format", "spdx", t], &dir.join("store-a"), &[])?;
        let cdx = sbom(&["--format", "cyclonedx", t], &dir.join("store-a"), &[])?;
        for doc in [&spdx, &cdx] {
            no_resolved_mirror(doc).map_err(|e| format!("{t}: {e}"))?;
        }
        let (sf, cf) = (
            dir.join(format!("{i}.spdx.json")),
            dir.join(format!("{i}.cdx.json")),
        );
        std::fs::write(&sf, &spdx)?;
        std::fs::write(&cf, &cdx)?;
        validate(&sf, &cf).map_err(|e| format!("{t}: {}", e.message().unwrap_or("failed")))?;
        // another store, another mirror configuration: the same bytes
        let again = sbom(
            &["--format", "spdx", t],
            &dir.join("store-b"),
            &other_mirrors,
        )?;
        let again_cdx = sbom(
            &["--format", "cyclonedx", t],
            &dir.join("store-b"),
            &other_mirrors,
        )?;
        if again != spdx || again_cdx != cdx {
            return Err(format!("{t}: the SBOM differs with another store and mirrors").into());
        }
        if String::from_utf8_lossy(&again).contains("127.0.0.1:9") {
            return Err(format!("{t}: a configured mirror is in the SBOM").into());
        }
    }
    // what the customised nginx says: its author supplies it, its patch is applied, its
    // options and its Debian runtime packages with the source package named in the purl
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("3.spdx.json"))?)?;
    let pk = doc["packages"].as_array().ok_or("no packages")?;
    let by = |n: &str| pk.iter().find(|p| p["name"] == n);
    let nginx = by("nginx").ok_or("no nginx")?;
    let purl = |p: &Value| {
        p["externalRefs"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["referenceType"] == "purl"))
            .and_then(|x| x["referenceLocator"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let libssl = by("libssl3").ok_or("no libssl3")?;
    let patch = by("server-header.patch").ok_or("no patch element")?;
    let rels = doc["relationships"].as_array().ok_or("no relationships")?;
    let has = |a: &Value, t: &str, b: &Value| {
        rels.iter().any(|r| {
            r["spdxElementId"] == a["SPDXID"]
                && r["relationshipType"] == t
                && r["relatedSpdxElement"] == b["SPDXID"]
        })
    };
    if nginx["supplier"] != "Person: Sysadmin42 (sys@admin42.org)"
        || !purl(nginx).starts_with("pkg:generic/nginx@1.22.1?checksum=sha256:")
        || !nginx["comment"]
            .as_str()
            .is_some_and(|c| c.contains("build options: http2 pcre-jit ssl"))
        || !purl(libssl).starts_with("pkg:deb/debian/libssl3@")
        || !purl(libssl).ends_with("&distro=debian-12&upstream=openssl")
        || !has(patch, "PATCH_APPLIED", nginx)
        || !has(nginx, "DEPENDS_ON", libssl)
        || !has(
            nginx,
            "GENERATED_FROM",
            by("nginx-source").ok_or("no nginx source")?,
        )
    {
        return Err(format!("the nginx package SBOM: {doc}").into());
    }
    Ok(())
}

/// The E2E fixture's nginx-prod image: both SBOMs valid; `buildit sbom DIR` finds the image
/// built and prints its SBOM, as does `buildit sbom IMAGE`.
fn e2e_image() -> R {
    let (store, lock) = crate::e2e::built_store()?;
    let example = crate::root().join("examples/nginx-prod");
    let lock = lock.display().to_string();
    let mut c = crate::cli::buildit();
    let o = c
        .args(["sbom", "--format", "cyclonedx", "--store-root"])
        .arg(store)
        .arg(&example)
        .env("BUILDIT_DEBIAN_LOCK", &lock)
        .output()?;
    if !o.status.success() {
        return Err(format!("buildit sbom DIR: {}", describe(&o)).into());
    }
    // found built: the build reports nothing to build (no builder ran)
    let cdx = o.stdout;
    let v: Value = serde_json::from_slice(&cdx)?;
    let image = v["metadata"]["component"]["name"].as_str().unwrap_or("");
    if image != "nginx-production" || v["specVersion"] != "1.6" {
        return Err(format!("the spec's CycloneDX SBOM: {v}").into());
    }
    // the image's output directory: the same bytes as the files it carries
    let images: Vec<PathBuf> = std::fs::read_dir(store.join("store"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-nginx-production-1.22.1-p1-oci"))
                && p.join("sbom.cdx.json").is_file()
        })
        .collect();
    let dir = images
        .iter()
        .find(|d| std::fs::read(d.join("sbom.cdx.json")).is_ok_and(|b| b == cdx))
        .ok_or("no image directory of the store carries the SBOM `buildit sbom DIR` printed")?;
    let spdx = sbom(
        &["--format", "spdx", &dir.display().to_string()],
        store,
        &[],
    )?;
    if spdx != std::fs::read(dir.join("sbom.spdx.json"))? {
        return Err("buildit sbom IMAGE is not the image's sbom.spdx.json".into());
    }
    if crate::missing_requirements(VALIDATORS, false).is_some() {
        return Err("the validators are missing".into());
    }
    validate_image_dir(dir)?;
    let doc: Value = serde_json::from_slice(&spdx)?;
    let pk = doc["packages"].as_array().ok_or("no packages")?;
    for n in [
        "nginx-production",
        "nginx",
        "zlib",
        "pcre2",
        "libc6",
        "libssl3",
    ] {
        if !pk.iter().any(|p| p["name"] == n) {
            return Err(format!("{n} is not in the image's SBOM").into());
        }
    }
    Ok(())
}

/// Store hashes masked (in store paths and the namespace), and the serial number derived
/// from them.
fn mask(text: &str) -> Result<String, Failed> {
    let mut out = text.to_string();
    for (prefix, len, with) in [
        ("/bld/store/", 32, "<hash>"),
        ("urn:buildit:package:", 32, "<hash>"),
        ("urn:uuid:", 36, "<derived>"),
    ] {
        let mut masked = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(prefix) {
            let after = i + prefix.len();
            masked.push_str(&rest[..after]);
            let end = (after + len).min(rest.len());
            if !rest.is_char_boundary(end) {
                return Err(format!("a {prefix} value is cut in the middle of a character").into());
            }
            masked.push_str(with);
            rest = &rest[end..];
        }
        masked.push_str(rest);
        out = masked;
    }
    Ok(out)
}

fn snapshot() -> R {
    let dir = work("snapshot");
    for (format, file) in [("spdx", "hello.spdx.json"), ("cyclonedx", "hello.cdx.json")] {
        let out = sbom(
            &["--format", format, "app-misc/hello"],
            &dir.join("store"),
            &[],
        )?;
        let text = String::from_utf8(out)?;
        crate::snapshot(&crate::data("sbom").join(file), &mask(&text)?)?;
    }
    Ok(())
}

/// A path that does not exist, a directory that is no image, an unknown atom: typed errors.
fn bad_arguments() -> R {
    let dir = work("bad");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty)?;
    let empty = empty.display().to_string();
    for (arg, code) in [
        ("./no/such/dir", "buildit::sbom::no-such-path"),
        (empty.as_str(), "buildit::sbom::not-an-image"),
        ("app-misc/no-such-package", "buildit::run::unknown-atom"),
    ] {
        let o = crate::cli::buildit()
            .args(["sbom", arg, "--store-root"])
            .arg(dir.join("store"))
            .output()?;
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.code() != Some(1) || !err.contains(code) || !o.stdout.is_empty() {
            return Err(format!("buildit sbom {arg}: {}", describe(&o)).into());
        }
    }
    Ok(())
}
