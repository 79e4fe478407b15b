//! The standard-library misuse corpus (`tests/data/stdlib-misuse`): programs that call
//! `<buildit>` wrongly fail with the code of their `# expect:` line, and the rendered error
//! (`buildit eval --no-typecheck`, the real binary) is snapshotted in `NAME.err`. Errors raised
//! inside the library because of an argument are shown at the program's call first.

use crate::{corpus, name_of, snapshot};
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};

/// The fewest programs the corpus may hold.
const MIN: usize = 12;

/// `/bld/store/<32 characters>-buildit-stdlib` as `$STDLIB`: the library's store path changes
/// with every edit of the library.
fn normalise_stdlib(text: &str) -> String {
    const MARK: &str = "-buildit-stdlib";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let head = &rest[..i];
        match head.rfind("/bld/store/") {
            Some(j) if i - j == "/bld/store/".len() + 32 => {
                out.push_str(&head[..j]);
                out.push_str("$STDLIB");
            }
            _ => {
                out.push_str(head);
                out.push_str(MARK);
            }
        }
        rest = &rest[i + MARK.len()..];
    }
    out.push_str(rest);
    out
}

fn expected_code(bld: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bld).ok()?;
    text.lines()
        .next()
        .and_then(|l| l.trim().strip_prefix("# expect:"))
        .map(|c| c.trim().to_string())
}

fn trial(bld: PathBuf) -> Trial {
    Trial::test(format!("stdlib-misuse::{}", name_of(&bld)), move || {
        let want =
            expected_code(&bld).ok_or_else(|| Failed::from("no `# expect: CODE` first line"))?;
        let store = crate::target_tmpdir().join("stdlib-misuse-store");
        let dir = bld.parent().unwrap_or(Path::new("/"));
        let out = crate::cli::buildit()
            .args(["eval", "--no-typecheck", "--store-root"])
            .arg(&store)
            .arg(&bld)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run buildit: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return Err(format!(
                "expected {want}, but it evaluated to {}",
                String::from_utf8_lossy(&out.stdout)
            )
            .into());
        }
        let code = stderr.lines().next().unwrap_or("").trim();
        if code != want {
            return Err(format!("expected {want}, got:\n{stderr}").into());
        }
        let rendered = normalise_stdlib(&stderr).replace(&format!("{}/", dir.display()), "");
        snapshot(&bld.with_extension("err"), &rendered).map_err(Failed::from)
    })
}

pub fn trials() -> Vec<Trial> {
    let (files, guard) = corpus("stdlib-misuse", "bld", MIN);
    let mut v = vec![guard];
    v.extend(files.into_iter().map(trial));
    v.push(Trial::test("stdlib-misuse::normalise", || {
        let p =
            "at /bld/store/0123456789abcdfghijklmnpqrsvwxyz-buildit-stdlib/stdenv/default.bld:1:2";
        if normalise_stdlib(p) != "at $STDLIB/stdenv/default.bld:1:2" {
            return Err(normalise_stdlib(p).into());
        }
        Ok(())
    }));
    v
}
