//! The YAML front end through the real binary:
//!
//! - `yaml/fail/*/`: broken spec directories; `buildit compile DIR` exits 1 with diagnostics at
//!   the right YAML line (snapshot `expected.err` in each directory), never a panic.
//! - `examples/nginx-prod`: `buildit compile` prints the program (snapshot), and evaluating that
//!   printed text gives the same image derivation as `buildit instantiate` of the spec does
//!   through `buildit build`'s path (the build evaluates exactly the compiled text).

use crate::cli::buildit;
use crate::{data, root, snapshot};
use libtest_mimic::{Failed, Trial};

fn fail_trial(dir: std::path::PathBuf) -> Trial {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Trial::test(format!("yaml::fail::{name}"), move || {
        let o = buildit()
            .arg("compile")
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        if o.status.code() != Some(1) {
            return Err(format!("expected exit 1, got {:?}\n{err}", o.status.code()).into());
        }
        if !err.starts_with("buildit::yaml::") {
            return Err(format!("expected a buildit::yaml diagnostic first:\n{err}").into());
        }
        snapshot(&dir.join("expected.err"), &err).map_err(Failed::from)
    })
}

fn example_compiles() -> Result<(), Failed> {
    let dir = root().join("examples/nginx-prod");
    let o = buildit()
        .arg("compile")
        .arg(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).to_string().into());
    }
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    snapshot(&data("yaml/nginx-prod.compiled.bld"), &text)?;
    // evaluate the printed text, saved as a file in the spec directory's place
    let store = tempfile::tempdir().map_err(|e| e.to_string())?;
    let copy = tempfile::tempdir().map_err(|e| e.to_string())?;
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&dir)
        .arg(copy.path())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("cp failed".into());
    }
    let spec_dir = copy.path().join("nginx-prod");
    std::fs::write(spec_dir.join("compiled.bld"), &text).map_err(|e| e.to_string())?;
    let a = buildit()
        .args(["instantiate", "--store-root"])
        .arg(store.path())
        .arg(spec_dir.join("compiled.bld"))
        .output()
        .map_err(|e| e.to_string())?;
    if !a.status.success() {
        return Err(format!(
            "instantiate of the compiled text failed:\n{}",
            String::from_utf8_lossy(&a.stderr)
        )
        .into());
    }
    let drv = String::from_utf8_lossy(&a.stdout).trim().to_string();
    if !drv.ends_with("-nginx-production-1.22.1-p1-oci.drv") {
        return Err(format!("unexpected derivation {drv}").into());
    }
    Ok(())
}

pub fn trials() -> Vec<Trial> {
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(data("yaml/fail"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let mut v: Vec<Trial> = dirs.into_iter().map(fail_trial).collect();
    v.push(Trial::test(
        "yaml::nginx-prod-compiles-and-the-text-evaluates",
        example_compiles,
    ));
    v.push(Trial::test("pkgs::search-and-build-options", package_set));
    v
}

fn run_in_store(store: &std::path::Path, args: &[&str]) -> Result<std::process::Output, String> {
    buildit()
        .args(args)
        .arg("--store-root")
        .arg(store)
        .output()
        .map_err(|e| e.to_string())
}

/// `buildit search` lists atoms, versions and options; build options give each variant its own
/// identity; an unknown option is an error with "did you mean"; violated `requires` names both.
fn package_set() -> Result<(), Failed> {
    let store = tempfile::tempdir().map_err(|e| e.to_string())?;
    let o = run_in_store(store.path(), &["search", "nginx"])?;
    let out = String::from_utf8_lossy(&o.stdout);
    if !o.status.success()
        || !out.contains("www-servers/nginx [1.22.1]")
        || !out.contains("+ssl")
        || !out.contains("-http2")
    {
        return Err(format!(
            "search output:\n{out}{}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let drv = |sel: &str| -> Result<String, String> {
        let e = format!("(import <buildit>).pkgs.nginx.withOptions {sel}");
        let o = run_in_store(store.path(), &["instantiate", "-E", &e])?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).to_string());
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let a = drv("{ enable = [ \"http2\" ]; }")?;
    let b = drv("{ enable = [ \"http2\" ]; disable = [ \"ipv6\" ]; }")?;
    let c = drv("{ disable = [ \"ipv6\" ]; enable = [ \"http2\" ]; }")?;
    if a == b || b != c {
        return Err(format!("option sets: {a} {b} {c}").into());
    }
    let err = drv("{ enable = [ \"htp2\" ]; }").err().unwrap_or_default();
    if !err.contains("unknown build option 'htp2' (did you mean 'http2'?)") {
        return Err(format!("unknown option error:\n{err}").into());
    }
    let err = drv("{ enable = [ \"http2\" ]; disable = [ \"ssl\" ]; }")
        .err()
        .unwrap_or_default();
    if !err.contains("'http2' requires 'ssl'") {
        return Err(format!("requires error:\n{err}").into());
    }
    Ok(())
}
