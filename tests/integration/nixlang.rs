//! Nix's own language tests (the `eval-okay-*.nix` of Nix 2.8's `tests/lang`), run
//! differentially: `buildit eval --json` against `nix-instantiate --eval --strict --json`.
//!
//! `scripts/nix-lang-tests` prepares them into `target/nix-lang-tests/` (or
//! `$BUILDIT_NIX_LANG_TESTS`): `--debian` takes them from the Debian source package of the
//! installed nix-bin (the oracle's own version, downloaded from the apt mirror, SHA-256 pinned),
//! which is what `scripts/test` does under CI; they are never committed. Its manifest classifies
//! every test (`json`, `nojson`, `nixfail`, `excluded` with the reason). The `json` ones are
//! compared: at least [`MIN_AGREE_PERCENT`] of them must agree, and there must be at least
//! [`MIN_JSON_TESTS`] of them (Nix 2.8 has 50). Every disagreement, every test Nix itself fails on
//! (in the manifest or now) and every `nojson` test is listed in the output, not dropped.
//!
//! Needs `nix-instantiate` and the prepared tests: without them the trial is ignored with the
//! reason, and under CI it fails naming what is missing.

use crate::eval::{buildit_json, nix_instantiate, nix_json};
use crate::root;
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};

/// The agreement the trial requires, in percent of the compared tests (all 50 `json` tests of
/// Nix 2.8 agree today; the margin is two of them).
const MIN_AGREE_PERCENT: f64 = 95.0;
/// The fewest `json` tests the manifest may list (Nix 2.8's tests/lang gives 50).
const MIN_JSON_TESTS: usize = 45;

const NAME: &str = "nixlang::nix-2.8-language-tests-agree";

pub fn trials() -> Vec<Trial> {
    let dir = std::env::var_os("BUILDIT_NIX_LANG_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/nix-lang-tests"));
    let manifest = dir.join("manifest.tsv");
    if !manifest.is_file() {
        let why = format!(
            "{} is missing: run scripts/nix-lang-tests --debian (scripts/test does under CI)",
            manifest.display()
        );
        return vec![if crate::in_ci() {
            Trial::test(NAME, move || Err(format!("cannot run in CI: {why}").into()))
        } else {
            eprintln!("{NAME}: skipped: {why}");
            Trial::test(NAME, || Ok(())).with_ignored_flag(true)
        }];
    }
    vec![crate::gated(
        NAME.to_string(),
        &["nix-instantiate"],
        false,
        move || agreement(&dir, &manifest),
    )]
}

fn agreement(dir: &Path, manifest: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(manifest).map_err(|e| e.to_string())?;
    let nix = nix_instantiate();
    let (mut total, mut agree) = (0usize, 0usize);
    let mut disagreements = Vec::new();
    let mut nix_fails = Vec::new();
    let mut not_compared = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(name), Some(status)) = (cols.first(), cols.get(1)) else {
            return Err(format!("{}: malformed row {line:?}", manifest.display()).into());
        };
        let reason = cols.get(2).copied().unwrap_or("");
        match *status {
            "json" => {}
            "nixfail" => {
                nix_fails.push(format!("{name}: {reason}"));
                continue;
            }
            "nojson" => {
                not_compared.push(format!("{name}: {reason}"));
                continue;
            }
            _ => continue,
        }
        let file = [dir.join("lang"), dir.to_path_buf()]
            .into_iter()
            .map(|d| d.join(format!("{name}.nix")))
            .find(|f| f.exists())
            .ok_or_else(|| format!("{name}.nix is listed in the manifest but missing"))?;
        let theirs = match nix_json(&nix, &file) {
            Ok(s) => s,
            Err(e) => {
                let first = e.lines().find(|l| l.starts_with("error")).unwrap_or("");
                nix_fails.push(format!(
                    "{name}: fails now (it passed when prepared): {first}"
                ));
                continue;
            }
        };
        total += 1;
        match buildit_json(&file) {
            Ok(ours) if ours == theirs => agree += 1,
            Ok(ours) => disagreements.push(format!("{name}: nix {theirs} / buildit {ours}")),
            Err(e) => disagreements.push(format!(
                "{name}: buildit fails: {}",
                e.lines().next().unwrap_or("")
            )),
        }
    }
    let pct = if total == 0 {
        0.0
    } else {
        100.0 * agree as f64 / total as f64
    };
    eprintln!("nix lang tests: {agree}/{total} agree ({pct:.1}%)");
    for d in &disagreements {
        eprintln!("  differs: {d}");
    }
    for d in &nix_fails {
        eprintln!("  Nix 2.8 fails: {d}");
    }
    for d in &not_compared {
        eprintln!("  not compared (no JSON from Nix): {d}");
    }
    if total < MIN_JSON_TESTS {
        return Err(format!(
            "only {total} tests were compared (at least {MIN_JSON_TESTS} expected): is {} complete?",
            manifest.display()
        )
        .into());
    }
    if pct >= MIN_AGREE_PERCENT {
        Ok(())
    } else {
        Err(format!(
            "only {agree}/{total} ({pct:.1}%) agree with Nix 2.8 (at least {MIN_AGREE_PERCENT}% required)"
        )
        .into())
    }
}
