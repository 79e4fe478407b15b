//! `buildit diff`, `buildit outdated` and `buildit update` through the real binary, in the E2E
//! fixture's store (examples/nginx-prod built there, [`crate::e2e::built_store`]), so that
//! only what differs is built.
//!
//! - `diff`: a variant of the example with one more Debian runtime package (busybox-static)
//!   against the example: exactly that package is added, and only files are added.
//! - `outdated` and `update --security-only`: a private apt root whose lists are the machine's
//!   indexes (linked) plus a crafted `bookworm-security` index holding a newer busybox-static.
//!   Its `.deb` is real: the locked busybox-static `.deb` (already in the store) repackaged by
//!   `dpkg-deb` with the new version and one more file, served as the `debian-security` mirror
//!   from a `file://` directory (`BUILDIT_MIRRORS`). `outdated` lists exactly that package with
//!   its suite, for a busybox-only spec and for the example (where busybox-static is part of
//!   the toolchain, not of the image); `update --security-only` re-locks exactly that package,
//!   rebuilds the busybox spec's image and reports the one package and the one file; with
//!   `--push` it uploads the rebuilt spec to a `file://` repository configured beside the spec
//!   and names the container record in `--json`.
//! - `diff` of images copied out of the store (output directories, an OCI archive beside its
//!   SBOM) says what the store's images say; `outdated --set` with an overlay that adds a
//!   newer nginx lists nginx as behind it.
//!
//! Human output is snapshotted (tests/data/update, with store hashes and temporary paths
//! replaced); the JSON is asserted field by field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

type R = Result<(), Failed>;

pub fn trials() -> Vec<Trial> {
    let t = |name: &str, tools: &[&str], f: fn() -> R| {
        crate::gated(format!("update::{name}"), tools, false, f)
    };
    vec![
        t(
            "diff_shows_exactly_the_added_package",
            &["bwrap"],
            diff_one_package,
        ),
        t(
            "outdated_lists_the_crafted_security_update",
            &["bwrap", "dpkg-deb"],
            outdated_crafted,
        ),
        t(
            "update_security_only_relocks_and_rebuilds",
            &["bwrap", "dpkg-deb"],
            update_security_only,
        ),
    ]
}

fn buildit(store: &Path) -> Command {
    let mut c = Command::new(crate::buildit_bin());
    c.stdin(Stdio::null())
        .env_remove("BUILDIT_DEBIAN_LOCK")
        .env_remove("BUILDIT_STORE_ROOT")
        .env_remove("BUILDIT_MIRRORS")
        .env("NO_COLOR", "1")
        .arg("--store-root")
        .arg(store);
    c
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

fn json(out: &Output) -> Result<Value, Failed> {
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)).into())
}

fn work() -> Result<PathBuf, Failed> {
    let w = crate::target_tmpdir().join("update");
    std::fs::create_dir_all(&w)?;
    Ok(w)
}

/// `/bld/store/<hash>-` → `/bld/store/HASH-`, and `dir` → `$WORK`: what snapshots compare.
fn normalized(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "$WORK");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("/bld/store/") {
        let after = &rest[i + 11..];
        out.push_str(&rest[..i + 11]);
        if after.len() > 32 && after.as_bytes()[32] == b'-' {
            out.push_str("HASH");
            rest = &after[32..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The number before `word` on every line → `N` (file counts that follow the Debian versions
/// of the day; the JSON assertions check what they mean).
fn uncounted(text: &str, word: &str) -> String {
    text.lines()
        .map(|l| match l.find(word) {
            Some(i) => {
                let head = l[..i].trim_end_matches(|c: char| c.is_ascii_digit());
                format!("{head}N{}\n", &l[i..])
            }
            None => format!("{l}\n"),
        })
        .collect()
}

fn snapshot(name: &str, text: &str) -> R {
    crate::snapshot(&crate::data("update").join(name), text).map_err(Failed::from)
}

/// Build the spec `dir` into `store` (with `lock` unless the spec has its own); the image.
fn build(store: &Path, dir: &Path, lock: Option<&Path>, link: &Path) -> Result<String, Failed> {
    let mut c = buildit(store);
    c.arg("build").arg(dir).arg("--out-link").arg(link);
    if let Some(l) = lock {
        c.arg("--debian-lock").arg(l);
    }
    let out = run(&mut c)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A copy of examples/nginx-prod with `extra` appended to its container.yaml.
fn example_variant(dir: &Path, extra: &str) -> R {
    let _ = std::fs::remove_dir_all(dir);
    let src = crate::root().join("examples/nginx-prod");
    let out = Command::new("cp").arg("-r").arg(&src).arg(dir).output()?;
    if !out.status.success() {
        return Err(format!("cp -r {}: {out:?}", src.display()).into());
    }
    let yaml = dir.join("container.yaml");
    let text = std::fs::read_to_string(&yaml)?;
    // before the image step, so the package is one of the image's
    let text = text.replacen("- image:", &format!("{extra}\n- image:"), 1);
    std::fs::write(&yaml, text)?;
    Ok(())
}

const BUSYBOX_STEP: &str = "- package:\n    type: debian\n    name: busybox-static\n";

fn diff_one_package() -> R {
    let (store, lock) = crate::e2e::built_store()?;
    let w = work()?.join("diff");
    std::fs::create_dir_all(&w)?;
    let old = build(
        store,
        &crate::root().join("examples/nginx-prod"),
        Some(lock),
        &w.join("result-old"),
    )?;
    let variant = w.join("nginx-busybox");
    example_variant(&variant, BUSYBOX_STEP)?;
    let new = build(store, &variant, Some(lock), &w.join("result-new"))?;
    let out = run(buildit(store)
        .args(["diff", "--json"])
        .arg(w.join("result-old"))
        .arg(w.join("result-new")))?;
    let d = json(&out)?;
    let packages = d["packages"].as_array().ok_or("no packages")?;
    let want = [("busybox-static", "debian", "added")];
    let got: Vec<(&str, &str, &str)> = packages
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or(""),
                p["kind"].as_str().unwrap_or(""),
                p["change"].as_str().unwrap_or(""),
            )
        })
        .collect();
    if got != want {
        return Err(format!("diff packages {got:?}, expected {want:?}:\n{d:#}").into());
    }
    let files = &d["files"];
    let n = |k: &str| files[k].as_u64().unwrap_or(u64::MAX);
    if n("added") == 0 || n("removed") != 0 || n("changed") != 0 || n("unchanged") == 0 {
        return Err(format!("diff files {files}: expected only added files").into());
    }
    if d["old"]["image"] != old.as_str()
        || d["new"]["image"] != new.as_str()
        || d["identical"] != false
    {
        return Err(format!("diff sides: {d:#}").into());
    }
    // every added file is busybox-static's
    let out = run(buildit(store)
        .args(["diff", "--files", "--json"])
        .arg(w.join("result-old"))
        .arg(w.join("result-new")))?;
    let listed = json(&out)?;
    let changes = listed["file_changes"]
        .as_array()
        .ok_or("no file_changes with --files")?;
    if changes.len() as u64 != n("added")
        || changes
            .iter()
            .any(|c| c["change"] != "added" || c["package"] != "busybox-static")
        || !changes.iter().any(|c| c["path"] == "/usr/bin/busybox")
    {
        return Err(format!("diff --files: {listed:#}").into());
    }
    // the same images copied out of the store (output directories with their SBOMs), and the
    // new one as an OCI archive beside its SBOM: the same packages and file counts
    let physical = |image: &str| {
        store
            .join("store")
            .join(image.trim_start_matches("/bld/store/"))
    };
    let (disk_old, disk_new) = (w.join("disk-old"), w.join("disk-new"));
    for (from, to) in [(&old, &disk_old), (&new, &disk_new)] {
        let _ = std::fs::remove_dir_all(to);
        run(Command::new("cp").arg("-r").arg(physical(from)).arg(to))?;
        run(Command::new("chmod").arg("-R").arg("u+w").arg(to))?;
    }
    let archive = disk_new.join("image.oci.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&disk_new)
        .args(["oci-layout", "index.json", "blobs"]))?;
    for new_arg in [&disk_new, &archive] {
        let out = run(buildit(store)
            .args(["diff", "--json"])
            .arg(&disk_old)
            .arg(new_arg))?;
        let on_disk = json(&out)?;
        if on_disk["packages"] != d["packages"]
            || on_disk["files"] != d["files"]
            || on_disk["identical"] != false
            || on_disk["old"]["drv"] != ""
            || on_disk["old"]["reference"] != d["old"]["reference"]
            || on_disk["new"]["manifest_digest"] != d["new"]["manifest_digest"]
        {
            return Err(format!(
                "diff of the images on disk ({}):\n{on_disk:#}\nin the store:\n{d:#}",
                new_arg.display()
            )
            .into());
        }
    }
    // the store's image and its copy: the same manifest
    let out = run(buildit(store)
        .args(["diff", "--json"])
        .arg(w.join("result-new"))
        .arg(&disk_new))?;
    let copy = json(&out)?;
    if copy["identical"] != true || !copy["packages"].as_array().is_some_and(Vec::is_empty) {
        return Err(format!("an image against its copy: {copy:#}").into());
    }
    // a directory that is no image of buildit's: a clear error
    let o = buildit(store).arg("diff").arg(&disk_old).arg(&w).output()?;
    if o.status.code() != Some(1)
        || !String::from_utf8_lossy(&o.stderr).contains("buildit::diff::not-an-image")
    {
        return Err(format!("diff against a directory that is no image: {o:?}").into());
    }
    // an image against itself
    let same = run(buildit(store)
        .arg("diff")
        .arg(w.join("result-old"))
        .arg(&old))?;
    if !String::from_utf8_lossy(&same.stdout).ends_with("identical\n") {
        return Err(format!("diff of an image with itself: {same:?}").into());
    }
    let human = run(buildit(store)
        .arg("diff")
        .arg(w.join("result-old"))
        .arg(w.join("result-new")))?;
    let version = lock_field(&std::fs::read_to_string(lock)?, "version").ok_or("no version")?;
    let text = normalized(&String::from_utf8_lossy(&human.stdout), &w).replace(&version, "VERSION");
    snapshot(
        "diff-one-package.txt",
        &uncounted(&uncounted(&text, " added,"), " unchanged"),
    )
}

// ---------------------------------------------------------------------------------------------
// the crafted security update

/// The crafted update: its apt root, the mirror directory serving its `.deb`, the new version.
struct Crafted {
    apt_root: PathBuf,
    mirror: PathBuf,
    old_version: String,
    new_version: String,
}

/// `name = "busybox-static"`'s field `key` in a lock file's text.
fn lock_field(lock: &str, key: &str) -> Option<String> {
    let entry = lock
        .split("[[package]]")
        .find(|e| e.contains("name = \"busybox-static\""))?;
    entry.lines().find_map(|l| {
        l.strip_prefix(&format!("{key} = "))
            .map(|v| v.trim_matches('"').to_string())
    })
}

fn crafted() -> Result<&'static Crafted, Failed> {
    static C: OnceLock<Result<Crafted, String>> = OnceLock::new();
    C.get_or_init(|| make_crafted().map_err(|e| e.message().unwrap_or("failed").to_string()))
        .as_ref()
        .map_err(|e| Failed::from(format!("crafting the security update: {e}")))
}

fn make_crafted() -> Result<Crafted, Failed> {
    let (store, lock) = crate::e2e::built_store()?;
    let w = work()?.join("crafted");
    let _ = std::fs::remove_dir_all(&w);
    std::fs::create_dir_all(&w)?;
    let text = std::fs::read_to_string(lock)?;
    let field = |k: &str| {
        lock_field(&text, k)
            .ok_or_else(|| format!("busybox-static has no {k} in {}", lock.display()))
    };
    let old_version = field("version")?;
    let new_version = format!("{old_version}+buildit1");
    // the locked .deb, fetched by the fixture's toolchain
    let sha = field("sha256")?;
    let deb = std::fs::read_dir(store.join("store"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.contains("-busybox-static_") && n.ends_with("_amd64.deb")
        })
        .ok_or("the fixture's store has no busybox-static .deb")?;
    {
        use sha2::Digest;
        let got = hex::encode(sha2::Sha256::digest(std::fs::read(&deb)?));
        if got != sha {
            return Err(
                format!("{} is not the locked .deb ({got} != {sha})", deb.display()).into(),
            );
        }
    }
    // repackaged: the new version, and a file that says so
    let tree = w.join("tree");
    run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tree))?;
    let control = tree.join("DEBIAN/control");
    let c = std::fs::read_to_string(&control)?;
    let upstream = old_version
        .split_once(':')
        .map_or(old_version.as_str(), |(_, v)| v);
    let new_upstream = new_version
        .split_once(':')
        .map_or(new_version.as_str(), |(_, v)| v);
    std::fs::write(
        &control,
        c.replace(
            &format!("Version: {old_version}\n"),
            &format!("Version: {new_version}\n"),
        ),
    )?;
    let doc = tree.join("usr/share/doc/busybox-static");
    std::fs::create_dir_all(&doc)?;
    std::fs::write(
        doc.join("SECURITY-UPDATE"),
        "a crafted security update (buildit's tests)\n",
    )?;
    let filename = format!("pool/updates/main/b/busybox/busybox-static_{new_upstream}_amd64.deb");
    let mirror = w.join("mirror");
    let new_deb = mirror.join(&filename);
    std::fs::create_dir_all(new_deb.parent().ok_or("no parent")?)?;
    run(Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", "1")
        .args(["--root-owner-group", "-Zxz", "-b"])
        .arg(&tree)
        .arg(&new_deb))?;
    let bytes = std::fs::read(&new_deb)?;
    let new_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let _ = upstream;
    // the apt root: the machine's indexes, and the crafted security index
    let apt_root = w.join("apt");
    let lists = apt_root.join("var/lib/apt/lists");
    std::fs::create_dir_all(&lists)?;
    for e in std::fs::read_dir("/var/lib/apt/lists")?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains("_dists_bookworm") && name.contains("_binary-amd64_Packages") {
            std::os::unix::fs::symlink(e.path(), lists.join(&name))?;
        }
    }
    let stanza = format!(
        "Package: busybox-static\nSource: busybox\nVersion: {new_version}\nArchitecture: amd64\nFilename: {filename}\nSize: {}\nSHA256: {new_sha}\nDescription: crafted\n",
        bytes.len()
    );
    std::fs::write(
        lists.join(
            "crafted.invalid_debian-security_dists_bookworm-security_main_binary-amd64_Packages",
        ),
        stanza,
    )?;
    Ok(Crafted {
        apt_root,
        mirror,
        old_version,
        new_version,
    })
}

/// A spec of busybox-static alone, with its own debian.lock (the fixture's lock).
fn busybox_spec(dir: &Path) -> R {
    let (_, lock) = crate::e2e::built_store()?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("container.yaml"),
        format!("- vars:\n    name: busybox-update\n    version: \"1\"\n\n{BUSYBOX_STEP}\n- image:\n    type: oci\n    config:\n      entrypoint: [\"/usr/bin/busybox\"]\n"),
    )?;
    std::fs::copy(lock, dir.join("debian.lock"))?;
    Ok(())
}

fn outdated_crafted() -> R {
    let (store, lock) = crate::e2e::built_store()?;
    let c = crafted()?;
    let w = work()?.join("outdated");
    let spec = w.join("busybox");
    busybox_spec(&spec)?;
    let out = run(buildit(store)
        .args(["outdated", "--json", "--apt-root"])
        .arg(&c.apt_root)
        .arg(&spec))?;
    let r = json(&out)?;
    let check = |r: &Value, checked: Option<u64>, runtime: bool| -> R {
        let debian = r["debian"].as_array().ok_or("no debian list")?;
        let [d] = debian.as_slice() else {
            return Err(format!("expected exactly busybox-static: {r:#}").into());
        };
        let ok = d["name"] == "busybox-static"
            && d["source"] == "busybox"
            && d["locked"] == c.old_version.as_str()
            && d["newest"] == c.new_version.as_str()
            && d["newest_suite"] == "bookworm-security"
            && d["security"] == c.new_version.as_str()
            && d["security_suite"] == "bookworm-security"
            && d["runtime"] == runtime
            && r["set"].as_array().is_some_and(Vec::is_empty)
            && r["suite"] == "bookworm";
        let counted = checked.is_none_or(|n| r["debian_checked"] == n);
        if !ok || !counted {
            return Err(format!("outdated: {r:#}").into());
        }
        Ok(())
    };
    // the busybox image: its one Debian package, laid out in the image
    check(&r, Some(1), true)?;
    if r["lock"] != spec.join("debian.lock").display().to_string().as_str() {
        return Err(format!("outdated did not use the spec's debian.lock: {r:#}").into());
    }
    // the example: busybox-static is in the toolchain its packages are built with
    let out = run(buildit(store)
        .args(["outdated", "--json", "--apt-root"])
        .arg(&c.apt_root)
        .arg("--debian-lock")
        .arg(lock)
        .arg(crate::root().join("examples/nginx-prod")))?;
    let r = json(&out)?;
    check(&r, None, false)?;
    if r["debian_checked"].as_u64().unwrap_or(0) < 50 || r["set_checked"] != 3 {
        return Err(format!(
            "the example's closure is the toolchain and 3 packages of the set: {r:#}"
        )
        .into());
    }
    // a set extended with a second nginx version (an overlay): nginx is behind it
    let set = w.join("set.bld");
    std::fs::write(
        &set,
        r#"(import <buildit>).pkgs.extend (self: super: {
  atoms = super.atoms // {
    "www-servers/nginx" = super.atoms."www-servers/nginx" // { "1.25.3" = super.atoms."www-servers/nginx"."1.22.1"; };
  };
})"#,
    )?;
    let out = run(buildit(store)
        .args(["outdated", "--json", "--apt-root"])
        .arg(&c.apt_root)
        .arg("--debian-lock")
        .arg(lock)
        .arg("--set")
        .arg(&set)
        .arg(crate::root().join("examples/nginx-prod")))?;
    let r = json(&out)?;
    let want = serde_json::json!([{ "atom": "www-servers/nginx", "version": "1.22.1", "newer": ["1.25.3"] }]);
    if r["set"] != want || r["set_checked"] != 3 {
        return Err(format!("outdated --set with a newer nginx: {r:#}").into());
    }
    let human = run(buildit(store)
        .args(["outdated", "--apt-root"])
        .arg(&c.apt_root)
        .arg(&spec))?;
    snapshot(
        "outdated-security.txt",
        &normalized(&String::from_utf8_lossy(&human.stdout), &w)
            .replace(&c.old_version, "OLD")
            .replace(&c.new_version.replace(&c.old_version, "OLD"), "NEW"),
    )
}

fn update_security_only() -> R {
    let (store, _) = crate::e2e::built_store()?;
    let c = crafted()?;
    let w = work()?.join("relock");
    let spec = w.join("busybox");
    busybox_spec(&spec)?;
    let lock_before = std::fs::read_to_string(spec.join("debian.lock"))?;
    let old_image = build(store, &spec, None, &w.join("result-old"))?;
    let mirrors = format!("debian-security=file://{}", c.mirror.display());
    // a file:// repository to push to, configured beside the spec (read from its directory up)
    let repo = w.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo)?;
    std::fs::write(
        w.join(".buildit-config.yaml"),
        format!(
            "repository:\n  name: updates\n  download-type: file\n  download-path: {0}\n  upload-type: file\n  upload-path: {0}\n",
            repo.display()
        ),
    )?;
    let out = run(buildit(store)
        .current_dir(&w)
        .env("BUILDIT_MIRRORS", &mirrors)
        .args([
            "update",
            "--security-only",
            "--json",
            "--files",
            "--push",
            "--apt-root",
        ])
        .arg(&c.apt_root)
        .arg(&spec))?;
    let _ = std::fs::remove_file(w.join(".buildit-config.yaml"));
    let r = json(&out)?;
    let changes = r["changes"].as_array().ok_or("no changes")?;
    let [ch] = changes.as_slice() else {
        return Err(format!("expected exactly busybox-static re-locked: {r:#}").into());
    };
    if ch["name"] != "busybox-static"
        || ch["old"] != c.old_version.as_str()
        || ch["new"] != c.new_version.as_str()
        || ch["mirror"] != "debian-security"
        || r["written"] != true
        || r["built"] != true
    {
        return Err(format!("update: {r:#}").into());
    }
    // the lock file: only busybox-static's entry differs
    let lock_after = std::fs::read_to_string(spec.join("debian.lock"))?;
    let entries =
        |t: &str| -> Vec<String> { t.split("[[package]]").skip(1).map(str::to_string).collect() };
    let (a, b) = (entries(&lock_before), entries(&lock_after));
    let differing: Vec<&String> = b.iter().filter(|e| !a.contains(e)).collect();
    if a.len() != b.len()
        || differing.len() != 1
        || !differing[0].contains("name = \"busybox-static\"")
    {
        return Err(format!("the new lock differs in {} entries", differing.len()).into());
    }
    // the image: exactly busybox-static at the new version, and its one new file
    let [img] = r["images"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    else {
        return Err(format!("expected one image: {r:#}").into());
    };
    let pk = img["packages"].as_array().ok_or("no packages")?;
    let [p] = pk.as_slice() else {
        return Err(format!("expected one package change: {img:#}").into());
    };
    if p["name"] != "busybox-static"
        || p["change"] != "version"
        || p["old"] != c.old_version.as_str()
        || p["new"] != c.new_version.as_str()
        || img["old"]["image"] != old_image.as_str()
        || img["identical"] != false
    {
        return Err(format!("update's image report: {img:#}").into());
    }
    let added: Vec<&Value> = img["file_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["change"] == "added")
        .collect();
    if added.len() != 1 || added[0]["path"] != "/usr/share/doc/busybox-static/SECURITY-UPDATE" {
        return Err(format!("update's file changes: {img:#}").into());
    }
    let new_image = img["new"]["image"].as_str().ok_or("no new image")?;
    let linked = std::fs::read_link(w.join("result"))?;
    if !linked
        .to_string_lossy()
        .ends_with(new_image.trim_start_matches("/bld/store/"))
    {
        return Err(format!("./result is {}, not {new_image}", linked.display()).into());
    }
    // pushed as `build --push` does: the container record names the new image
    let [pushed] = r["pushed"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    else {
        return Err(format!("expected one repository pushed to: {r:#}").into());
    };
    let location = format!("file://{}", repo.display());
    let records: Vec<&str> = pushed["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let [record] = records.as_slice() else {
        return Err(format!("expected one container record: {pushed:#}").into());
    };
    let record_file = record
        .strip_prefix(&format!("{location}/"))
        .map(|k| repo.join(k))
        .ok_or_else(|| format!("the record {record} is not under {location}"))?;
    let rec: Value = serde_json::from_slice(&std::fs::read(&record_file)?)?;
    if pushed["repository"] != "updates"
        || pushed["location"] != location.as_str()
        || !rec["outputs"]
            .as_array()
            .is_some_and(|o| o.iter().any(|p| p == new_image))
    {
        return Err(format!("update --push: {pushed:#}\nrecord: {rec:#}").into());
    }
    // a build of the spec now uses its updated lock: the same image
    let rebuilt = build(store, &spec, None, &w.join("result-again"))?;
    if rebuilt != new_image {
        return Err(format!("build after update gave {rebuilt}, update built {new_image}").into());
    }
    // nothing newer is left
    let again = run(buildit(store)
        .current_dir(&w)
        .args(["update", "--security-only", "--apt-root"])
        .arg(&c.apt_root)
        .arg(&spec))?;
    let outdated = run(buildit(store)
        .args(["outdated", "--json", "--apt-root"])
        .arg(&c.apt_root)
        .arg(&spec))?;
    if !json(&outdated)?["debian"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        return Err(format!("still outdated after the update: {outdated:?}").into());
    }
    // the human report of the same update, from the old lock again, without building
    std::fs::write(spec.join("debian.lock"), &lock_before)?;
    let human = run(buildit(store)
        .current_dir(&w)
        .args(["update", "--security-only", "--dry-run", "--apt-root"])
        .arg(&c.apt_root)
        .arg(&spec))?;
    let text = format!(
        "$ buildit update --security-only --dry-run --apt-root <crafted> <spec>\n{}\n$ buildit update --security-only --apt-root <crafted> <spec>   # after the update\n{}",
        String::from_utf8_lossy(&human.stdout),
        String::from_utf8_lossy(&again.stdout)
    );
    let text = normalized(&text, &w)
        .replace(&c.new_version, "NEW")
        .replace(&c.old_version, "OLD");
    snapshot("update-security-only.txt", &uncounted(&text, " unchanged"))
}
