//! The one integration-test binary. Test cases are data, found by glob under `tests/data/`:
//!
//! - `eval/ok/*.bld` + `.exp`: buildit's printed value must equal the expected text (generated
//!   from Nix 2.8 by `scripts/gen-eval-expected`).
//! - `eval/ok/*.bld` again, differentially: `nix-instantiate --eval --strict --json` and
//!   `buildit eval --json` must print the same JSON (needs Nix 2.8; `.ci/run` installs it).
//! - `eval/fail/*.bld`: must fail with the code named by its `# expect: CODE` line; the rendered
//!   diagnostic is snapshotted in `.err` (`BUILDIT_BLESS=1` rewrites snapshots).
//! - Nix's own language tests (when `target/nix-lang-tests/manifest.tsv` exists, made by
//!   `scripts/nix-lang-tests`): at least 90% must agree with Nix 2.8.
//! - `repl/*.txt`: REPL transcripts (`> ` input lines, `. ` continuation lines, then output).
//! - `cli/*.cmd` + `.expected`: the real `buildit` binary's stdout, stderr and exit status.
//! - Robustness: deep recursion, deep nesting and garbage bytes through the real binary.

mod cli;
mod debian;
mod docs;
mod drv;
mod e2e;
mod eval;
mod images;
mod nixlang;
mod pkgs;
mod repl;
mod sandbox;
mod store;
mod typecheck;
mod yaml;

use libtest_mimic::{Arguments, Trial};
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

pub fn data(sub: &str) -> PathBuf {
    root().join("tests/data").join(sub)
}

/// Files directly in `dir` with extension `ext`, sorted.
pub fn glob(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext) && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn bless() -> bool {
    std::env::var_os("BUILDIT_BLESS").is_some()
}

/// Compare `actual` with the snapshot file, or write it when blessing.
pub fn snapshot(path: &Path, actual: &str) -> Result<(), String> {
    // snapshots must not depend on where the checkout lives
    let actual = actual.replace(&root().display().to_string(), "$ROOT");
    let actual = actual.as_str();
    if bless() {
        std::fs::write(path, actual).map_err(|e| format!("writing {}: {e}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "missing snapshot {} ({e}); run with BUILDIT_BLESS=1 to create it. Actual:\n{actual}",
            path.display()
        )
    })?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "snapshot {} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ))
    }
}

pub fn name_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() {
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(eval::trials());
    trials.extend(nixlang::trials());
    trials.extend(repl::trials());
    trials.extend(cli::trials());
    trials.extend(debian::trials());
    trials.extend(docs::trials());
    trials.extend(typecheck::trials());
    trials.extend(drv::trials());
    trials.extend(yaml::trials());
    trials.extend(store::trials());
    trials.extend(sandbox::trials());
    trials.extend(images::trials());
    trials.extend(e2e::trials());
    trials.extend(pkgs::trials());
    libtest_mimic::run(&args, trials).exit();
}

/// Whether this run is CI's (`CI` set to anything but `0`/`false`/empty): there a trial whose
/// tool or privilege is missing fails instead of being ignored.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether the test process runs as root (effective uid 0, read from /proc).
pub fn is_root_user() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| {
                l.split_whitespace()
                    .nth(2)
                    .and_then(|u| u.parse::<u32>().ok())
            })
        })
        == Some(0)
}

/// The Debian package that provides a tool the trials need.
fn package_of(tool: &str) -> &str {
    match tool {
        "bwrap" => "bubblewrap",
        "busybox" => "busybox-static",
        "nsenter" => "util-linux",
        "nix-instantiate" => "nix-bin",
        t => t,
    }
}

/// Whether `tool` is an executable on PATH (or `/usr/bin/busybox` for `busybox`).
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            let p = d.join(tool);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
    })
}

/// Why a trial needing `tools` (and root, when `needs_root`) cannot run here, if it cannot.
pub fn missing_requirements(tools: &[&str], needs_root: bool) -> Option<String> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        let pkgs: Vec<&str> = missing.iter().map(|t| package_of(t)).collect();
        why.push(format!(
            "not installed: {} (apt-get install -y {})",
            missing.join(", "),
            pkgs.join(" ")
        ));
    }
    if needs_root && !is_root_user() {
        why.push("needs root".to_string());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// A trial that needs `tools` (and root when `needs_root`): where they are missing it is ignored
/// with the reason printed, except under CI, where it runs and fails naming what is missing.
pub fn gated<F>(name: String, tools: &[&str], needs_root: bool, f: F) -> Trial
where
    F: FnOnce() -> Result<(), libtest_mimic::Failed> + Send + 'static,
{
    match missing_requirements(tools, needs_root) {
        None => Trial::test(name, f),
        Some(why) if in_ci() => {
            Trial::test(name, move || Err(format!("cannot run in CI: {why}").into()))
        }
        Some(why) => {
            eprintln!("{name}: skipped: {why}");
            Trial::test(name, f).with_ignored_flag(true)
        }
    }
}
