//! `buildit debian lock` through the real binary, offline: a private apt root whose lists
//! directory holds small hand-written `Packages` indexes (one lz4-free plain file per suite).

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

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("debian::lock-and-refresh", lock_and_refresh),
        Trial::test("debian::unknown-package-and-suite", unknown_package),
    ]
}
