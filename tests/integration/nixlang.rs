//! Nix's own language tests (`eval-okay-*.nix` of NixOS/nix), run differentially when a copy
//! was prepared by `scripts/nix-lang-tests` into `target/nix-lang-tests/` (they are read from a
//! fetched snapshot, never committed). Tests Nix 2.8 itself cannot evaluate are left out by the
//! manifest; of the rest at least 90% must agree, and every disagreement is listed.

use crate::eval::{eval_file, nix_instantiate, nix_json};
use crate::root;
use libtest_mimic::Trial;
use std::path::PathBuf;

pub fn trials() -> Vec<Trial> {
    let dir = std::env::var_os("BUILDIT_NIX_LANG_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/nix-lang-tests"));
    let manifest = dir.join("manifest.tsv");
    let present = manifest.exists() && nix_instantiate().is_some();
    vec![
        Trial::test("nixlang::agreement-at-least-90-percent", move || {
            let text = std::fs::read_to_string(&manifest).map_err(|e| e.to_string())?;
            let nix = nix_instantiate().ok_or("nix-instantiate missing")?;
            let (mut total, mut agree) = (0usize, 0usize);
            let mut disagreements = Vec::new();
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split('\t').collect();
                let (Some(name), Some(status)) = (cols.first(), cols.get(1)) else {
                    continue;
                };
                if *status != "json" {
                    continue;
                }
                let file = [dir.join("lang"), dir.clone()]
                    .into_iter()
                    .map(|d| d.join(format!("{name}.nix")))
                    .find(|f| f.exists())
                    .unwrap_or_else(|| dir.join(format!("{name}.nix")));
                let Ok(theirs) = nix_json(&nix, &file) else {
                    continue;
                };
                total += 1;
                match eval_file(&file, true) {
                    Ok(ours) if ours == theirs => agree += 1,
                    Ok(ours) => {
                        disagreements.push(format!("{name}: nix {theirs} / buildit {ours}"))
                    }
                    Err((code, _)) => {
                        disagreements.push(format!("{name}: buildit fails with {code}"))
                    }
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
            if pct >= 90.0 {
                Ok(())
            } else {
                Err(format!("only {agree}/{total} ({pct:.1}%) agree with Nix 2.8").into())
            }
        })
        .with_ignored_flag(!present),
    ]
}
