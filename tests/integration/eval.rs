//! The evaluation corpus: expected output, expected failures, and the differential test
//! against Nix 2.8.

use crate::{data, glob, name_of, root, snapshot};
use buildit_cli::render::{self, Style};
use buildit_eval::{print, Evaluator};
use buildit_lang::Span;
use buildit_stdlib::FsIo;
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::Command;

fn evaluator() -> Evaluator {
    Evaluator::new(Box::new(FsIo::new(|_| {})))
}

/// Evaluate a file and print it in Nix's format (or the rendered error).
pub fn eval_file(path: &Path, json: bool) -> Result<String, (String, String)> {
    let mut ev = evaluator();
    let p = path.to_string_lossy().into_owned();
    let r = ev.import(&p, Span::default()).and_then(|v| {
        if json {
            let mut ctx = buildit_eval::Context::empty();
            buildit_eval::builtins::json::value_to_json(&mut ev, &v, Span::default(), &mut ctx)
        } else {
            print::print_value(&mut ev, &v)
        }
    });
    r.map_err(|e| {
        let code = e
            .related()
            .first()
            .map(|d| d.code.to_string())
            .unwrap_or_else(|| e.kind().code().to_string());
        let rendered = render::eval_error(&ev.sources, &e, Style::plain());
        let prefix = format!("{}/", root().display());
        (code, rendered.replace(&prefix, ""))
    })
}

fn ok_trial(bld: PathBuf) -> Trial {
    Trial::test(format!("eval::ok::{}", name_of(&bld)), move || {
        let exp_path = bld.with_extension("exp");
        let expected = std::fs::read_to_string(&exp_path)
            .map_err(|e| Failed::from(format!("{}: {e}", exp_path.display())))?;
        match eval_file(&bld, false) {
            Ok(out) if out.trim_end() == expected.trim_end() => Ok(()),
            Ok(out) => Err(format!("expected:\n{}\nactual:\n{}", expected.trim_end(), out).into()),
            Err((_, rendered)) => Err(format!("evaluation failed:\n{rendered}").into()),
        }
    })
}

fn expected_code(bld: &Path) -> Option<String> {
    let text = std::fs::read(bld).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines().take(3).find_map(|l| {
        l.trim()
            .strip_prefix("# expect:")
            .map(|c| c.trim().to_string())
    })
}

fn fail_trial(bld: PathBuf) -> Trial {
    Trial::test(format!("eval::fail::{}", name_of(&bld)), move || {
        let want = expected_code(&bld)
            .ok_or_else(|| Failed::from("no `# expect: CODE` line in the first 3 lines"))?;
        match eval_file(&bld, false) {
            Ok(out) => Err(format!("expected failure {want}, but it evaluated to {out}").into()),
            Err((code, rendered)) => {
                if code != want {
                    return Err(format!("expected {want}, got {code}:\n{rendered}").into());
                }
                snapshot(&bld.with_extension("err"), &rendered).map_err(Failed::from)
            }
        }
    })
}

/// `nix-instantiate` if installed.
pub fn nix_instantiate() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/nix-instantiate");
    p.exists().then_some(p)
}

/// Run Nix 2.8 on a file: `--eval --strict --json`.
pub fn nix_json(nix: &Path, file: &Path) -> Result<String, String> {
    let out = Command::new(nix)
        .args(["--eval", "--strict", "--json", "--readonly-mode"])
        .arg(file)
        .env("NIX_PATH", "")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn diff_trial(bld: PathBuf) -> Trial {
    let nix = nix_instantiate();
    let ignored = nix.is_none() && std::env::var_os("CI").is_none();
    Trial::test(
        format!("eval::differential::{}", name_of(&bld)),
        move || {
            let nix = nix.ok_or_else(|| {
                Failed::from(
                    "nix-instantiate (Debian nix-bin) is not installed; .ci/run installs it",
                )
            })?;
            let theirs = match nix_json(&nix, &bld) {
                Ok(s) => s,
                // functions have no JSON: nothing to compare (the .exp test covers them)
                Err(e) if e.contains("cannot convert a function to JSON") => return Ok(()),
                Err(e) => return Err(format!("Nix 2.8 failed on a corpus program:\n{e}").into()),
            };
            match eval_file(&bld, true) {
                Ok(ours) if ours == theirs => Ok(()),
                Ok(ours) => Err(format!("JSON differs\nnix:     {theirs}\nbuildit: {ours}").into()),
                Err((_, r)) => Err(format!("buildit failed where Nix gives {theirs}:\n{r}").into()),
            }
        },
    )
    .with_ignored_flag(ignored)
}

pub fn trials() -> Vec<Trial> {
    let mut v = Vec::new();
    for bld in glob(&data("eval/ok"), "bld") {
        v.push(ok_trial(bld.clone()));
        v.push(diff_trial(bld));
    }
    for bld in glob(&data("eval/fail"), "bld") {
        v.push(fail_trial(bld));
    }
    v
}
