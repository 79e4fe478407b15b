//! The YAML front end through the real binary:
//!
//! - `yaml/fail/*/`: broken spec directories; `buildit compile DIR` exits 1 with diagnostics at
//!   the right YAML line (snapshot `expected.err` in each directory), never a panic, and the
//!   store is unchanged. Package-set errors (`eval-*`: unknown atoms, versions and options,
//!   option constraints) are found before evaluation; `build-*` cases run `buildit build` on a
//!   copy (URL patches: unreachable, or served on 127.0.0.1 with another hash than
//!   buildit.lock records).
//! - `yaml/type-fail/*/`: specs whose generated program is ill-typed against the typed standard
//!   library (with `args`, e.g. `--strict`); `buildit check DIR` reports the type error at the
//!   YAML line (snapshot `expected.err`); every spec that builds (examples/, the seed's) checks,
//!   with and without `--strict`.
//! - `examples/nginx-prod`: `buildit compile` prints the program (snapshot), and evaluating that
//!   printed text gives the same image derivation as `buildit instantiate` of the spec does
//!   through `buildit build`'s path (the build evaluates exactly the compiled text).

use crate::cli::buildit;
use crate::{data, root, snapshot};
use libtest_mimic::{Failed, Trial};

/// The names in a store directory (to check that a failure left the store as it was).
fn store_listing(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("store"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The address a case's `serve/` files are served at in its YAML (a 5-digit ephemeral port
/// replaces the zeros, so columns in the diagnostics stay the same).
const SERVE_PLACEHOLDER: &str = "127.0.0.1:00000";

/// Serve the files of `dir` over HTTP on 127.0.0.1 (GET /NAME) until the process ends.
fn serve(dir: std::path::PathBuf) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut line = String::new();
            let Ok(clone) = c.try_clone() else { continue };
            let mut r = std::io::BufReader::new(clone);
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // skip the headers
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let name = path.trim_start_matches('/');
            let _ = match std::fs::read(dir.join(name)) {
                Ok(body) if !name.contains("..") => c
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| c.write_all(&body)),
                _ => c.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                ),
            };
        }
    });
    Ok(addr)
}

/// Replace `from` by `to` in every file below `dir` but `serve/` and `expected.err`.
fn replace_in_tree(dir: &std::path::Path, from: &str, to: &str) -> Result<(), String> {
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let p = e.map_err(|e| e.to_string())?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_dir() {
            if name != "serve" {
                replace_in_tree(&p, from, to)?;
            }
        } else if name != "expected.err" {
            if let Ok(t) = std::fs::read_to_string(&p) {
                if t.contains(from) {
                    std::fs::write(&p, t.replace(from, to)).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// A broken spec: `buildit compile` (or, when the case has a `command` file saying `build`,
/// `buildit build` of a copy, with `serve/` served on 127.0.0.1) exits 1 with a
/// `buildit::yaml::` diagnostic matching `expected.err`, and leaves the store as it was.
fn fail_trial(dir: std::path::PathBuf) -> Trial {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Trial::test(format!("yaml::fail::{name}"), move || {
        let store = tempfile::tempdir().map_err(|e| e.to_string())?;
        // materialise the standard library first: a failure must add nothing after it
        let s = buildit()
            .args(["search", "--store-root"])
            .arg(store.path())
            .arg("nginx")
            .output()
            .map_err(|e| e.to_string())?;
        if !s.status.success() {
            return Err(format!("search: {}", String::from_utf8_lossy(&s.stderr)).into());
        }
        let before = store_listing(store.path());
        let build = std::fs::read_to_string(dir.join("command")).is_ok_and(|c| c.trim() == "build");
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (o, case, addr) = if build {
            let status = std::process::Command::new("cp")
                .arg("-r")
                .arg(&dir)
                .arg(work.path().join("case"))
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cp failed".into());
            }
            let case = work.path().join("case");
            let addr = if dir.join("serve").is_dir() {
                let a = serve(dir.join("serve"))?;
                replace_in_tree(&case, SERVE_PLACEHOLDER, &a)?;
                Some(a)
            } else {
                None
            };
            let o = buildit()
                .current_dir(work.path())
                .args(["build", "--store-root"])
                .arg(store.path())
                .arg(&case)
                .output()
                .map_err(|e| e.to_string())?;
            (o, Some(case), addr)
        } else {
            let o = buildit()
                .arg("compile")
                .arg("--store-root")
                .arg(store.path())
                .arg(&dir)
                .output()
                .map_err(|e| e.to_string())?;
            (o, None, None)
        };
        let mut err = String::from_utf8_lossy(&o.stderr).to_string();
        if let Some(case) = &case {
            err = err.replace(&case.display().to_string(), "$CASE");
        }
        if let Some(a) = &addr {
            err = err.replace(a.as_str(), SERVE_PLACEHOLDER);
        }
        if o.status.code() != Some(1) {
            return Err(format!("expected exit 1, got {:?}\n{err}", o.status.code()).into());
        }
        let first = err
            .lines()
            .find(|l| l.starts_with("buildit::"))
            .unwrap_or("");
        if !first.starts_with("buildit::yaml::") {
            return Err(format!("expected a buildit::yaml diagnostic first:\n{err}").into());
        }
        let after = store_listing(store.path());
        if before != after {
            return Err(format!("the store changed: {before:?} -> {after:?}").into());
        }
        if let Some(case) = &case {
            if work.path().join("result").exists() {
                return Err("a failed build left ./result".into());
            }
            let lock = |d: &std::path::Path| std::fs::read_to_string(d.join("buildit.lock")).ok();
            let mut want = lock(&dir);
            if let (Some(w), Some(a)) = (&mut want, &addr) {
                *w = w.replace(SERVE_PLACEHOLDER, a);
            }
            if lock(case) != want {
                return Err("a failed build changed buildit.lock".into());
            }
        }
        snapshot(&dir.join("expected.err"), &err).map_err(Failed::from)
    })
}

/// `buildit check [ARGS] DIR` of a spec whose program is ill-typed (`tests/data/yaml/type-fail/*/`,
/// `args` holding ARGS): exit 1 with a `buildit::type::` diagnostic at the YAML line, matching
/// `expected.err`. Without ARGS the same spec checks (exit 0): only `--strict` takes plain
/// scalars as YAML types them, and no spec that builds is rejected without it.
fn type_fail_trial(dir: std::path::PathBuf) -> Trial {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Trial::test(format!("yaml::type-fail::{name}"), move || {
        let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
        let args: Vec<&str> = args.split_whitespace().collect();
        let check = |args: &[&str]| {
            buildit()
                .env("BUILDIT_TYPE_CACHE", "off")
                .arg("check")
                .args(args)
                .arg(&dir)
                .output()
                .map_err(|e| e.to_string())
        };
        let o = check(&args)?;
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        if o.status.code() != Some(1) {
            return Err(format!("expected exit 1, got {:?}\n{err}", o.status.code()).into());
        }
        let first = err
            .lines()
            .find(|l| l.starts_with("buildit::"))
            .unwrap_or("");
        if !first.starts_with("buildit::type::") {
            return Err(format!("expected a buildit::type diagnostic first:\n{err}").into());
        }
        if !args.is_empty() {
            let plain = check(&[])?;
            if !plain.status.success() {
                return Err(format!(
                    "without {args:?} the spec should check:\n{}",
                    String::from_utf8_lossy(&plain.stderr)
                )
                .into());
            }
        }
        snapshot(&dir.join("expected.err"), &err).map_err(Failed::from)
    })
}

/// Every spec that builds (examples/, the seed's) passes `buildit check DIR`, with and without
/// `--strict`.
fn specs_check() -> Result<(), Failed> {
    let mut dirs = vec![root().join("examples/nginx-prod")];
    if let Ok(rd) = std::fs::read_dir(data("seed")) {
        let mut seed: Vec<std::path::PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("container.yaml").is_file())
            .collect();
        seed.sort();
        dirs.extend(seed);
    }
    for dir in &dirs {
        for strict in [false, true] {
            let mut c = buildit();
            c.env("BUILDIT_TYPE_CACHE", "off").arg("check");
            if strict {
                c.arg("--strict");
            }
            let o = c.arg(dir).output().map_err(|e| e.to_string())?;
            if !o.status.success() {
                return Err(format!(
                    "buildit check{} {} failed:\n{}",
                    if strict { " --strict" } else { "" },
                    dir.display(),
                    String::from_utf8_lossy(&o.stderr)
                )
                .into());
            }
        }
    }
    Ok(())
}

fn example_compiles() -> Result<(), Failed> {
    let dir = root().join("examples/nginx-prod");
    let store = tempfile::tempdir().map_err(|e| e.to_string())?;
    let o = buildit()
        .arg("compile")
        .arg("--store-root")
        .arg(store.path())
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
    // the corpus holds at least 44 cases
    let mut v = vec![crate::corpus_guard(
        "yaml/fail",
        "case directories",
        dirs.len(),
        44,
    )];
    v.extend(dirs.into_iter().map(fail_trial));
    let mut typed: Vec<std::path::PathBuf> = std::fs::read_dir(data("yaml/type-fail"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    typed.sort();
    v.push(crate::corpus_guard(
        "yaml/type-fail",
        "case directories",
        typed.len(),
        4,
    ));
    v.extend(typed.into_iter().map(type_fail_trial));
    v.push(Trial::test("yaml::specs-that-build-check", specs_check));
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
