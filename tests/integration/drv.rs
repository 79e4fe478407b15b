//! Derivations and the store through the real binary, each case in a fresh temporary store:
//!
//! - `drv/ok/*.bld`: `buildit eval` prints the expected value (`.exp`), which holds golden
//!   `.drv` and output paths: the same expression gives the same paths on every machine. Each
//!   program is evaluated twice, in two different stores, and must print the same.
//! - `drv/fail/*.bld`: exit 1 with the code of its `# expect: CODE` line; `.err` snapshot.
//! - `instantiate` and `show-derivation` agree with `eval`.
//!
//! Each corpus holds a stated minimum of programs.

use crate::cli::buildit;
use crate::{data, name_of, snapshot};
use libtest_mimic::{Failed, Trial};
use std::path::Path;

fn eval_in_store(file: &Path, root: &Path) -> std::process::Output {
    buildit()
        .arg("eval")
        .arg("--store-root")
        .arg(root)
        .arg(file)
        .current_dir(file.parent().unwrap_or(Path::new("/")))
        .output()
        .expect("run buildit")
}

fn ok_trial(file: std::path::PathBuf) -> Trial {
    Trial::test(format!("drv::ok::{}", name_of(&file)), move || {
        let a = tempfile::tempdir().map_err(|e| e.to_string())?;
        let b = tempfile::tempdir().map_err(|e| e.to_string())?;
        let o1 = eval_in_store(&file, a.path());
        if !o1.status.success() {
            return Err(format!(
                "exit {:?}\n{}",
                o1.status.code(),
                String::from_utf8_lossy(&o1.stderr)
            )
            .into());
        }
        let o2 = eval_in_store(&file, &b.path().join("other"));
        if o1.stdout != o2.stdout {
            return Err(format!(
                "two stores gave different results:\n{}\n{}",
                String::from_utf8_lossy(&o1.stdout),
                String::from_utf8_lossy(&o2.stdout)
            )
            .into());
        }
        snapshot(
            &file.with_extension("exp"),
            &String::from_utf8_lossy(&o1.stdout),
        )
        .map_err(Failed::from)
    })
}

fn fail_trial(file: std::path::PathBuf) -> Trial {
    Trial::test(format!("drv::fail::{}", name_of(&file)), move || {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let code = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .ok_or("missing `# expect: CODE` line")?
            .trim()
            .to_string();
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let o = eval_in_store(&file, root.path());
        let err = String::from_utf8_lossy(&o.stderr)
            .replace(&root.path().display().to_string(), "$STORE");
        if o.status.code() != Some(1) {
            return Err(format!("expected exit 1, got {:?}\n{err}", o.status.code()).into());
        }
        if err.lines().next().map(str::trim) != Some(code.as_str()) {
            return Err(format!("expected code {code} in:\n{err}").into());
        }
        snapshot(&file.with_extension("err"), &err).map_err(Failed::from)
    })
}

fn instantiate_agrees() -> Result<(), Failed> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = data("drv/ok/chain.bld");
    let o = buildit()
        .args(["instantiate", "--store-root"])
        .arg(root.path())
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    // chain.bld evaluates to a set of strings, not derivations: a clear error
    if o.status.code() != Some(1)
        || !String::from_utf8_lossy(&o.stderr).contains("buildit::cli::no-derivation")
    {
        return Err(format!(
            "expected no-derivation error, got {:?}: {stdout}",
            o.status.code()
        )
        .into());
    }
    let expr = "let mk = name: derivation { inherit name; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }; in { a = mk \"a\"; b = mk \"b\"; s = { recurseForDerivations = true; c = mk \"c\"; }; x = 1; }";
    let o = buildit()
        .args(["instantiate", "--store-root"])
        .arg(root.path())
        .args(["-E", expr])
        .output()
        .map_err(|e| e.to_string())?;
    let paths: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if !o.status.success()
        || paths.len() != 3
        || !paths
            .iter()
            .all(|p| p.starts_with("/bld/store/") && p.ends_with(".drv"))
    {
        return Err(format!(
            "instantiate printed {paths:?}; stderr {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    // the same drv path from eval
    let o = buildit()
        .args(["eval", "--store-root"])
        .arg(root.path())
        .args(["-E", &format!("({expr}).b.drvPath")])
        .output()
        .map_err(|e| e.to_string())?;
    let evald = String::from_utf8_lossy(&o.stdout)
        .trim()
        .trim_matches('"')
        .to_string();
    if evald != paths[1] {
        return Err(format!("eval gave {evald}, instantiate {}", paths[1]).into());
    }
    // the .drv file is in the store, and show-derivation decodes it
    let o = buildit()
        .args(["show-derivation", "--store-root"])
        .arg(root.path())
        .arg(&paths[1])
        .output()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&o.stderr)))?;
    let d = &v[&paths[1]];
    if d["name"] != "b" || d["builder"] != "/bin/sh" || d["version"] != "buildit-drv-1" {
        return Err(format!("show-derivation gave {v}").into());
    }
    let base = paths[1].trim_start_matches("/bld/store/");
    if !root.path().join("store").join(base).is_file() {
        return Err(format!("{base} is not in the physical store").into());
    }
    Ok(())
}

/// The fewest programs `drv/ok` and `drv/fail` may hold.
const MIN_OK: usize = 7;
const MIN_FAIL: usize = 9;

pub fn trials() -> Vec<Trial> {
    let (ok, ok_guard) = crate::corpus("drv/ok", "bld", MIN_OK);
    let (fail, fail_guard) = crate::corpus("drv/fail", "bld", MIN_FAIL);
    let mut v = vec![ok_guard, fail_guard];
    v.extend(ok.into_iter().map(ok_trial));
    v.extend(fail.into_iter().map(fail_trial));
    v.push(Trial::test(
        "drv::instantiate-agrees-with-eval",
        instantiate_agrees,
    ));
    v
}
