//! The editor support of `editors/`: the tree-sitter grammar's corpus and highlight assertions
//! (`tree-sitter test`), every `.bld` of the repository parsing without ERROR/MISSING nodes
//! (`editors/tree-sitter-bld/scripts/check-repo`), and the VS Code extension's TextMate grammar
//! against its scope assertions (`vscode-tmgrammar-test` over `editors/vscode/test/*.bld`).
//!
//! The tools are installed by `.ci/run` (tree-sitter-cli with cargo, the extension's npm
//! dependencies with `npm ci`); the trials themselves never touch the network. Where a tool is
//! missing they are ignored, except under CI, where they fail naming it (`crate::gated`).
//! Compiled parsers go to a directory under the test tmpdir (`TREE_SITTER_LIBDIR`), never the
//! user's cache.

use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

type R = Result<(), Failed>;

/// Held by each tree-sitter trial: both regenerate `src/parser.c` and compile it into the same
/// library directory, which must not happen twice at once.
static TREE_SITTER: Mutex<()> = Mutex::new(());

pub fn trials() -> Vec<Trial> {
    vec![
        crate::gated(
            "editors::tree_sitter_corpus".into(),
            &["tree-sitter", "cc"],
            false,
            tree_sitter_corpus,
        ),
        crate::gated(
            "editors::tree_sitter_parses_every_repository_bld".into(),
            &["tree-sitter", "cc", "git"],
            false,
            repository_parses,
        ),
        tmgrammar_trial(),
    ]
}

fn grammar_dir() -> PathBuf {
    crate::root().join("editors/tree-sitter-bld")
}

/// `tree-sitter` with its compiled-parser directory under the test tmpdir.
fn tree_sitter(args: &[&str]) -> Result<Command, Failed> {
    let libdir = crate::target_tmpdir().join("editors/tree-sitter-lib");
    std::fs::create_dir_all(&libdir)?;
    let mut c = Command::new(crate::tool_path("tree-sitter"));
    c.args(args)
        .current_dir(grammar_dir())
        .stdin(Stdio::null())
        .env("TREE_SITTER_LIBDIR", &libdir);
    Ok(c)
}

/// Runs `c`; a failure carries its output.
fn run(what: &str, c: &mut Command) -> Result<String, Failed> {
    let out = c
        .output()
        .map_err(|e| format!("{what}: could not run: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("{what} failed ({}):\n{text}", out.status).into());
    }
    Ok(text)
}

fn tree_sitter_corpus() -> R {
    let _one = TREE_SITTER.lock().unwrap_or_else(|e| e.into_inner());
    run("tree-sitter generate", &mut tree_sitter(&["generate"])?)?;
    let out = run("tree-sitter test", &mut tree_sitter(&["test"])?)?;
    // The corpus must not be empty: a vanished test/corpus would make `tree-sitter test` pass.
    let cases = count_corpus_cases(&grammar_dir().join("test/corpus"))?;
    if cases < 20 {
        return Err(
            format!("the tree-sitter corpus holds {cases} cases, fewer than 20\n{out}").into(),
        );
    }
    // And the highlight tests of test/highlight (their assertions check queries/highlights.scm).
    if !out.contains("assertions)") {
        return Err(format!(
            "tree-sitter test ran no highlight assertions (test/highlight)\n{out}"
        )
        .into());
    }
    Ok(())
}

/// The number of test cases (headers between `===` lines) in the corpus files.
fn count_corpus_cases(dir: &Path) -> Result<usize, Failed> {
    let mut n = 0;
    for f in crate::glob(dir, "txt") {
        let text = std::fs::read_to_string(&f)?;
        n += text.lines().filter(|l| l.starts_with("====")).count() / 2;
    }
    Ok(n)
}

fn repository_parses() -> R {
    let _one = TREE_SITTER.lock().unwrap_or_else(|e| e.into_inner());
    let libdir = crate::target_tmpdir().join("editors/tree-sitter-lib");
    std::fs::create_dir_all(&libdir)?;
    let out = run(
        "editors/tree-sitter-bld/scripts/check-repo",
        Command::new(grammar_dir().join("scripts/check-repo"))
            .stdin(Stdio::null())
            .env("TREE_SITTER", crate::tool_path("tree-sitter"))
            .env("TREE_SITTER_LIBDIR", &libdir),
    )?;
    // check-repo names how many files it parsed; the repository has hundreds.
    let parsed: usize = out
        .split_whitespace()
        .skip_while(|w| *w != "check-repo:")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("check-repo printed no count:\n{out}"))?;
    if parsed < 500 {
        return Err(
            format!("check-repo parsed {parsed} files, expected at least 500:\n{out}").into(),
        );
    }
    Ok(())
}

/// `vscode-tmgrammar-test` comes from the extension's `node_modules` (`npm ci` in .ci/run):
/// gated on `node` and on that install.
fn tmgrammar_trial() -> Trial {
    let name = "editors::vscode_textmate_grammar_scopes".to_string();
    let bin = crate::root().join("editors/vscode/node_modules/.bin/vscode-tmgrammar-test");
    if bin.is_file() || crate::in_ci() {
        return crate::gated(name, &["node"], false, move || tmgrammar(&bin));
    }
    eprintln!("{name}: skipped: run `npm ci` in editors/vscode (as .ci/run does)");
    Trial::test(name, || Ok(())).with_ignored_flag(true)
}

fn tmgrammar(bin: &Path) -> R {
    let dir = crate::root().join("editors/vscode");
    let tests = crate::glob(&dir.join("test"), "bld");
    if tests.len() < 3 {
        return Err(format!(
            "editors/vscode/test holds {} .bld files, fewer than 3",
            tests.len()
        )
        .into());
    }
    let mut c = Command::new(bin);
    c.current_dir(&dir)
        .stdin(Stdio::null())
        .arg("-g")
        .arg("syntaxes/bld.tmLanguage.json")
        .args(&tests);
    let out = run("vscode-tmgrammar-test", &mut c)?;
    let passed = out.matches("run successfuly").count();
    if passed != tests.len() {
        return Err(format!(
            "vscode-tmgrammar-test passed {passed} of {} files:\n{out}",
            tests.len()
        )
        .into());
    }
    Ok(())
}
