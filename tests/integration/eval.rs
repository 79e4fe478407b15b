//! The evaluation corpus: expected output, expected failures, and the differential tests
//! against Nix 2.8: every `ok` program gives the same JSON through `buildit eval --json` as
//! through `nix-instantiate --eval --strict --json`, and every `fail` program fails under Nix
//! too (unless a `# nix-differs: <why>` line documents a deliberate divergence), with the
//! message its `# nix:` line records. The corpora hold at least [`MIN_OK`] and [`MIN_FAIL`]
//! programs.

use crate::{name_of, root, snapshot};
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
    // a `# max-call-depth: N` header line sets the limit for this program: the fail corpus
    // reaches it in milliseconds instead of seconds at the default
    if let Some(n) = header(path, "# max-call-depth:").and_then(|n| n.parse().ok()) {
        ev.set_max_call_depth(n);
    }
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

/// The value of a `PREFIX value` line among the first 3 lines of a corpus file.
fn header(bld: &Path, prefix: &str) -> Option<String> {
    let text = std::fs::read(bld).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .take(3)
        .find_map(|l| l.trim().strip_prefix(prefix).map(|c| c.trim().to_string()))
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

/// `nix-instantiate` as found on `PATH` (see [`crate::tool_path`]).
pub fn nix_instantiate() -> PathBuf {
    crate::tool_path("nix-instantiate")
}

/// Run Nix 2.8 on a file: `--eval --strict --json`.
pub fn nix_json(nix: &Path, file: &Path) -> Result<String, String> {
    let out = Command::new(nix)
        .args(["--eval", "--strict", "--json", "--readonly-mode"])
        .arg(file)
        .env("NIX_PATH", "")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nix.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The real binary on a file: `buildit eval --json --no-typecheck FILE` (evaluation is the same
/// with and without type checking; the differential tests compare evaluation), in a store
/// under the target directory. Its stdout, or its stderr when it fails.
pub fn buildit_json(file: &Path) -> Result<String, String> {
    let store = crate::target_tmpdir().join("eval-store");
    let out = crate::cli::buildit()
        .args(["eval", "--json", "--no-typecheck", "--store-root"])
        .arg(&store)
        .arg(file)
        .current_dir(file.parent().unwrap_or(Path::new("/")))
        .output()
        .map_err(|e| format!("cannot run buildit: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn diff_trial(bld: PathBuf) -> Trial {
    crate::gated(
        format!("eval::differential::{}", name_of(&bld)),
        &["nix-instantiate"],
        false,
        move || {
            let theirs = match nix_json(&nix_instantiate(), &bld) {
                Ok(s) => s,
                // functions have no JSON: nothing to compare (the .exp test covers them)
                Err(e) if e.contains("cannot convert a function to JSON") => return Ok(()),
                Err(e) => return Err(format!("Nix 2.8 failed on a corpus program:\n{e}").into()),
            };
            match buildit_json(&bld) {
                Ok(ours) if ours == theirs => Ok(()),
                Ok(ours) => Err(format!("JSON differs\nnix:     {theirs}\nbuildit: {ours}").into()),
                Err(r) => Err(format!("buildit failed where Nix gives {theirs}:\n{r}").into()),
            }
        },
    )
}

/// What Nix 2.8 says about a fail program, exactly as `scripts/gen-eval-expected` writes it on
/// the program's `# nix:` line: run from the program's directory by its relative name, the first
/// `error` line of stderr (or `(succeeds) OUTPUT` when Nix accepts it, `(killed by signal N)`
/// when it crashes without one), the directory removed, bytes outside printable ASCII as `?`,
/// at most 200 bytes. `Ok((accepted, message))`.
fn nix_verdict(bld: &Path) -> Result<(bool, String), String> {
    use std::os::unix::process::ExitStatusExt;
    let dir = bld.parent().ok_or("no directory")?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (tmp.path().join("out"), tmp.path().join("err"));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| e.to_string());
    let mut child = Command::new(nix_instantiate())
        .args(["--eval", "--strict"])
        .arg(bld.file_name().ok_or("no file name")?)
        .current_dir(dir)
        .env("NIX_PATH", "")
        .env("LC_ALL", "C")
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        .spawn()
        .map_err(|e| format!("cannot run nix-instantiate: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("nix-instantiate timed out after 120 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let out = std::fs::read(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::read(&err_path).map_err(|e| e.to_string())?;
    let mut msg: Vec<u8> = if status.success() {
        let mut m = b"(succeeds) ".to_vec();
        m.extend_from_slice(&out[..out.len().min(100)]);
        while m.last() == Some(&b'\n') {
            m.pop();
        }
        m
    } else if let Some(l) = err.split(|b| *b == b'\n').find(|l| l.starts_with(b"error")) {
        l.to_vec()
    } else if let Some(sig) = status.signal() {
        format!("(killed by signal {sig})").into_bytes()
    } else {
        err.split(|b| *b == b'\n').next().unwrap_or(b"").to_vec()
    };
    let prefix = format!("{}/", dir.display());
    if let Some(i) = msg
        .windows(prefix.len())
        .position(|w| w == prefix.as_bytes())
    {
        msg.splice(i..i + prefix.len(), []);
    }
    msg.retain(|b| *b != b'\r');
    let mut text: String = msg
        .iter()
        .map(|b| {
            if (0x20..0x7f).contains(b) {
                *b as char
            } else {
                '?'
            }
        })
        .collect();
    text.truncate(200);
    Ok((status.success(), text))
}

/// A fail program must also fail under Nix 2.8, unless a `# nix-differs: <why>` line documents
/// a deliberate divergence; its `# nix:` line must be what Nix says now.
fn fail_nix_trial(bld: PathBuf) -> Trial {
    crate::gated(
        format!("eval::fail-under-nix::{}", name_of(&bld)),
        &["nix-instantiate"],
        false,
        move || {
            let text = String::from_utf8_lossy(&std::fs::read(&bld)?).into_owned();
            let differs = text
                .lines()
                .find_map(|l| l.strip_prefix("# nix-differs:"))
                .map(str::trim);
            if differs == Some("") {
                return Err("`# nix-differs:` without a reason".into());
            }
            let recorded = text
                .lines()
                .nth(1)
                .and_then(|l| l.strip_prefix("# nix: "))
                .ok_or(
                    "line 2 is not the `# nix: ...` line (scripts/gen-eval-expected writes it)",
                )?;
            let (accepted, said) = nix_verdict(&bld)?;
            if accepted && differs.is_none() {
                return Err(format!(
                    "Nix 2.8 accepts this program ({said}); a fail case must fail under Nix too, \
                     or document why with a `# nix-differs: <why>` line"
                )
                .into());
            }
            if recorded != said {
                return Err(format!(
                    "Nix 2.8 now says {said:?}, the program records {recorded:?} \
                     (scripts/gen-eval-expected {} updates it)",
                    name_of(&bld)
                )
                .into());
            }
            Ok(())
        },
    )
}

/// The fewest programs `eval/ok` and `eval/fail` may hold.
pub const MIN_OK: usize = 300;
const MIN_FAIL: usize = 115;

pub fn trials() -> Vec<Trial> {
    let (ok, ok_guard) = crate::corpus("eval/ok", "bld", MIN_OK);
    let (fail, fail_guard) = crate::corpus("eval/fail", "bld", MIN_FAIL);
    let mut v = vec![ok_guard, fail_guard];
    for bld in ok {
        v.push(ok_trial(bld.clone()));
        v.push(diff_trial(bld));
    }
    for bld in fail {
        v.push(fail_trial(bld.clone()));
        v.push(fail_nix_trial(bld));
    }
    v
}
