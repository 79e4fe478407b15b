//! `buildit debian lock` through the real binary, offline: a private apt root whose lists
//! directory holds small hand-written `Packages` indexes (one lz4-free plain file per suite),
//! and `buildit debian lock --source` over the crafted `Sources` indexes of
//! `tests/data/debian-src` beside them.

use crate::cli::buildit;
use libtest_mimic::{Failed, Trial};
use std::path::Path;

const MAIN: &str = "Package: tool\nVersion: 1.0-1\nArchitecture: amd64\nDepends: libt1 (>= 1.0), awk\nFilename: pool/main/t/tool/tool_1.0-1_amd64.deb\nSize: 10\nSHA256: 00aa\n\n\
Package: libt1\nVersion: 1.2-1\nArchitecture: amd64\nFilename: pool/main/t/t/libt1_1.2-1_amd64.deb\nSize: 5\nSHA256: 00bb\n\n\
Package: mawk\nVersion: 1.3.4\nArchitecture: amd64\nProvides: awk\nFilename: pool/main/m/mawk/mawk_1.3.4_amd64.deb\nSize: 3\nSHA256: 00cc\n";
const SECURITY: &str = "Package: libt1\nVersion: 1.2-1+deb12u1\nArchitecture: amd64\nFilename: pool/updates/main/t/t/libt1_1.2-1+deb12u1_amd64.deb\nSize: 6\nSHA256: 00dd\n";

fn apt_root(dir: &Path) -> Result<(), Failed> {
    let lists = dir.join("var/lib/apt/lists");
    std::fs::create_dir_all(&lists)?;
    std::fs::write(
        lists.join("mirror.invalid_debian_dists_bookworm_main_binary-amd64_Packages"),
        MAIN,
    )?;
    std::fs::write(
        lists.join(
            "mirror.invalid_debian-security_dists_bookworm-security_main_binary-amd64_Packages",
        ),
        SECURITY,
    )?;
    Ok(())
}

fn lock_and_refresh() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    apt_root(dir.path())?;
    let out = dir.path().join("test.lock");
    let o = buildit()
        .args(["debian", "lock", "tool", "--apt-root"])
        .arg(dir.path())
        .arg("--output")
        .arg(&out)
        .output()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success()
        || !stderr.contains("locked 3 packages (1 root) for bookworm from 2 indexes")
    {
        return Err(format!("lock failed: {stderr}").into());
    }
    let text = std::fs::read_to_string(&out)?;
    for want in [
        "name = \"libt1\"\nversion = \"1.2-1+deb12u1\"",
        "mirror = \"debian-security\"",
        "depends = [\"libt1\", \"mawk\"]",
        "roots = [\"tool\"]",
    ] {
        if !text.contains(want) {
            return Err(format!("lock lacks {want:?}:\n{text}").into());
        }
    }
    // Refresh: no packages, the roots come from the lock; the same indexes give the same bytes.
    let o = buildit()
        .args(["debian", "lock", "--apt-root"])
        .arg(dir.path())
        .arg("--output")
        .arg(&out)
        .output()?;
    if !o.status.success() || std::fs::read_to_string(&out)? != text {
        return Err(format!(
            "refresh changed the lock: {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(())
}

fn unknown_package() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    apt_root(dir.path())?;
    let o = buildit()
        .args(["debian", "lock", "tol", "--apt-root"])
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(1)
        || !stderr.contains("buildit::debian::unknown-package")
        || !stderr.contains("did you mean 'tool'?")
    {
        return Err(format!("unexpected: {:?} {stderr}", o.status).into());
    }
    let o = buildit()
        .args(["debian", "lock", "tool", "--suite", "trixie", "--apt-root"])
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(1) || !stderr.contains("buildit::debian::no-index") {
        return Err(format!("unexpected: {:?} {stderr}", o.status).into());
    }
    Ok(())
}

/// Source packages are added as `[[source]]` tables after a binary lock, which stays byte for
/// byte; a binary refresh keeps them; a second `--source` replaces the entry of its name.
fn lock_sources() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    apt_root(dir.path())?;
    let lists = dir.path().join("var/lib/apt/lists");
    let crafted = crate::data("debian-src/apt-root/var/lib/apt/lists");
    for e in std::fs::read_dir(&crafted)? {
        let e = e?;
        std::fs::copy(e.path(), lists.join(e.file_name()))?;
    }
    let out = dir.path().join("test.lock");
    let run = |args: &[&str]| -> Result<String, Failed> {
        let o = buildit()
            .args(["debian", "lock"])
            .args(args)
            .arg("--apt-root")
            .arg(dir.path())
            .arg("--output")
            .arg(&out)
            .output()?;
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        if !o.status.success() {
            return Err(format!("{args:?} failed: {stderr}").into());
        }
        Ok(stderr)
    };
    run(&["tool"])?;
    let binary = std::fs::read_to_string(&out)?;
    let said = run(&["--source", "hello", "--source", "zlib=1:1.2.13.dfsg-1"])?;
    if !said.contains(
        "locked 2 source packages (hello 2.10-3, zlib 1:1.2.13.dfsg-1) for bookworm from 2 Sources indexes",
    ) {
        return Err(format!("unexpected summary: {said}").into());
    }
    let with = std::fs::read_to_string(&out)?;
    if !with.starts_with(&binary) {
        return Err(format!("the binary lock changed:\n{with}").into());
    }
    for want in [
        "[[source]]\nname = \"hello\"\nversion = \"2.10-3\"\nformat = \"3.0 (quilt)\"",
        "url = \"mirror://debian/pool/main/h/hello/hello_2.10.orig.tar.gz\"",
        "dsc = \"zlib_1.2.13.dfsg-1.dsc\"",
        "build_depends = \"debhelper-compat (= 13), help2man <!nocheck>\"",
    ] {
        if !with.contains(want) {
            return Err(format!("lock lacks {want:?}:\n{with}").into());
        }
    }
    // a binary refresh keeps the source tables
    run(&[])?;
    if std::fs::read_to_string(&out)? != with {
        return Err("the refresh dropped or changed the source tables".into());
    }
    // the newest zlib (the security suite's) replaces the pinned one
    run(&["--source", "zlib"])?;
    let text = std::fs::read_to_string(&out)?;
    if !text.contains("version = \"1:1.2.13.dfsg-1+deb12u1\"\nformat = \"3.0 (quilt)\"\nmirror = \"debian-security\"")
        || text.matches("[[source]]").count() != 2
    {
        return Err(format!("zlib not replaced:\n{text}").into());
    }
    Ok(())
}

/// `builtin:unpack-debian-source` through `buildit build`: the crafted native source of
/// `tests/data/debian-src/native` unpacks into a store path; a tampered tarball is refused
/// naming the file.
fn unpack_source_builtin() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let native = crate::data("debian-src/native");
    for f in ["p_1.0.dsc", "p_1.0.tar.gz"] {
        std::fs::copy(native.join(f), dir.path().join(f))?;
    }
    let bld = dir.path().join("src.bld");
    std::fs::write(
        &bld,
        "derivation {\n  name = \"p-src\";\n  system = builtins.currentSystem;\n  builder = \"builtin:unpack-debian-source\";\n  dsc = \"${./p_1.0.dsc}\";\n  dscName = \"p_1.0.dsc\";\n  files = \"p_1.0.tar.gz=${./p_1.0.tar.gz}\";\n}\n",
    )?;
    let build = || {
        buildit()
            .arg("build")
            .arg("--store-root")
            .arg(dir.path().join("store"))
            .arg(&bld)
            .current_dir(dir.path())
            .output()
    };
    let o = build()?;
    let readme = dir.path().join("result/debian/README");
    if !o.status.success()
        || std::fs::read_to_string(&readme).ok().as_deref() != Some("hello from a native source\n")
    {
        return Err(format!("unpack failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    // one byte changed: a new input, refused before anything is unpacked
    let tar = dir.path().join("p_1.0.tar.gz");
    let mut bytes = std::fs::read(&tar)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tar, bytes)?;
    let o = build()?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if o.status.success() || !stderr.contains("p_1.0.tar.gz: does not match the .dsc") {
        return Err(format!("tampered tarball not refused: {stderr}").into());
    }
    Ok(())
}

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("debian::lock-and-refresh", lock_and_refresh),
        Trial::test("debian::unknown-package-and-suite", unknown_package),
        Trial::test("debian::lock-sources", lock_sources),
        Trial::test("debian::unpack-source-builtin", unpack_source_builtin),
    ]
}
