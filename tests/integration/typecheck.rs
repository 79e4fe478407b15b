//! The type checker's corpus: `typecheck/accept/*.bld` must type-check and print the type in
//! the `.type` file next to it; `typecheck/reject/*.bld` must be rejected with the code named by
//! its `# expect: CODE` line, the plain rendering of every diagnostic snapshotted in `.err`.
//! Also: every shipped `.bld` file (examples/, stdlib/) type-checks, every primop of the
//! evaluator has a declared type, and at least 80% of the `eval/ok` programs type-check (a
//! program the parser rejects counts against it). Each corpus holds a stated minimum of cases.
//! Across files, with the driver's import-following checker: `typecheck/imports/<case>/main.bld`
//! (plus the files it imports) is accepted with its type in `main.type`, or rejected with the
//! code of its `# expect:` line and every diagnostic (of every file) in `main.err`.
//! `typecheck/strict/reject/*.bld` type-check without `--strict` and are rejected with it (code
//! and `.err`), `typecheck/strict/accept/*.bld` pass `--strict`. The per-file cache is checked
//! on disk: a second run checks only the root, and a one-line change re-checks only the files
//! whose imports' types changed. `typecheck/stdlib-misuse/reject/*.bld` call `<buildit>` wrongly
//! and are rejected at the caller's mistake (code and `.err`), `typecheck/stdlib-misuse/accept`
//! pass `--strict`; every public name of `<buildit>` has a type without `Dyn` at the top (but
//! the few of `typecheck/stdlib-dyn-allowed.txt`).

use crate::{data, glob, name_of, root, snapshot};
use buildit_lang::types::{self, builtins::BUILTIN_TYPES};
use buildit_lang::{parse, SourceMap};
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};

/// Parse and check a file: `(printed type, rendered diagnostics, first code)`.
pub fn check_file(path: &Path) -> Result<(String, String, Option<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut sources = SourceMap::new();
    let file = sources.add(path.to_string_lossy().into_owned(), text.as_str());
    let parsed = parse(file, &text);
    if !parsed.syntax_ok() {
        let r: String = parsed
            .diagnostics
            .iter()
            .map(|d| d.render_plain(&sources))
            .collect();
        return Err(format!("parse errors:\n{r}"));
    }
    let Some(expr) = parsed.expr else {
        return Err("no expression".into());
    };
    let res = types::check(&expr);
    // alias errors (found while parsing) come first, then the checker's
    let diagnostics: Vec<_> = parsed
        .diagnostics
        .into_iter()
        .chain(res.diagnostics)
        .collect();
    let rendered: String = diagnostics
        .iter()
        .map(|d| d.render_plain(&sources))
        .collect();
    let prefix = format!("{}/", root().display());
    Ok((
        res.ty.to_string(),
        rendered.replace(&prefix, "$ROOT/"),
        diagnostics.first().map(|d| d.code.to_string()),
    ))
}

fn expected_code(bld: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bld).ok()?;
    text.lines().take(3).find_map(|l| {
        l.trim()
            .strip_prefix("# expect:")
            .map(|c| c.trim().to_string())
    })
}

fn accept_trial(bld: PathBuf) -> Trial {
    Trial::test(format!("typecheck::accept::{}", name_of(&bld)), move || {
        let (ty, diags, _) = check_file(&bld).map_err(Failed::from)?;
        if !diags.is_empty() {
            return Err(format!("expected to type-check, got:\n{diags}").into());
        }
        snapshot(&bld.with_extension("type"), &format!("{ty}\n")).map_err(Failed::from)
    })
}

fn reject_trial(bld: PathBuf) -> Trial {
    Trial::test(format!("typecheck::reject::{}", name_of(&bld)), move || {
        let want = expected_code(&bld)
            .ok_or_else(|| Failed::from("no `# expect: CODE` line in the first 3 lines"))?;
        let (ty, diags, code) = check_file(&bld).map_err(Failed::from)?;
        match code {
            None => Err(format!("expected {want}, but it type-checks as {ty}").into()),
            Some(c) if c != want => Err(format!("expected {want}, got {c}:\n{diags}").into()),
            Some(_) => snapshot(&bld.with_extension("err"), &diags).map_err(Failed::from),
        }
    })
}

/// How many of the evaluation corpus' programs type-check (printed; fails below 80%, and on a
/// corpus smaller than [`crate::eval::MIN_OK`]). A program the parser rejects counts as not
/// type-checking: the `eval/ok` programs all evaluate, so all must parse.
fn corpus_trial() -> Trial {
    Trial::test("typecheck::eval-corpus-acceptance", || {
        let files = glob(&data("eval/ok"), "bld");
        if files.len() < crate::eval::MIN_OK {
            return Err(format!(
                "eval/ok holds {} programs, fewer than {}: nothing to measure",
                files.len(),
                crate::eval::MIN_OK
            )
            .into());
        }
        let mut ok = 0;
        let mut rejected = Vec::new();
        let mut unparsed = Vec::new();
        for f in &files {
            match check_file(f) {
                Ok((_, d, None)) if d.is_empty() => ok += 1,
                Ok((_, d, _)) => rejected.push(format!("{}:\n{d}", name_of(f))),
                Err(e) => unparsed.push(format!("{}: {e}", name_of(f))),
            }
        }
        if std::env::var_os("BUILDIT_TYPECHECK_VERBOSE").is_some() {
            for r in &rejected {
                eprintln!("{r}");
            }
        }
        for u in &unparsed {
            eprintln!("not parsed by the checker's front end: {u}");
        }
        eprintln!(
            "type-checked {ok} of {} eval/ok programs ({} rejected, {} not parsed)",
            files.len(),
            rejected.len(),
            unparsed.len()
        );
        if ok * 100 < files.len() * 80 {
            return Err(format!("only {ok} of {} eval/ok programs type-check", files.len()).into());
        }
        Ok(())
    })
}

/// Every `.bld` file buildit ships (under `examples/` and `stdlib/`, at any depth) type-checks.
fn examples_trial() -> Trial {
    Trial::test("typecheck::shipped-bld-files-type-check", || {
        let mut files = Vec::new();
        let mut dirs = vec![root().join("examples"), root().join("stdlib")];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && !p.ends_with("target") {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "bld") {
                    files.push(p);
                }
            }
        }
        if files.is_empty() {
            return Err("no shipped .bld file found".into());
        }
        let mut bad = String::new();
        for f in &files {
            match check_file(f) {
                Ok((_, d, None)) if d.is_empty() => {}
                Ok((_, d, _)) => bad.push_str(&d),
                Err(e) => bad.push_str(&e),
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.into())
        }
    })
}

fn builtins_trial() -> Trial {
    Trial::test("typecheck::every-builtin-has-a-type", || {
        let missing: Vec<&str> = buildit_eval::builtins::all_primops()
            .iter()
            .map(|p| p.name)
            .filter(|n| !BUILTIN_TYPES.iter().any(|(m, _)| m == n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("builtins without a declared type: {missing:?}").into())
        }
    })
}

fn docs_trial() -> Trial {
    Trial::test("typecheck::docs-types-md-lists-every-builtin-type", || {
        let doc =
            std::fs::read_to_string(root().join("docs/types.md")).map_err(|e| e.to_string())?;
        let missing: Vec<String> = BUILTIN_TYPES
            .iter()
            .map(|(n, t)| format!("| `builtins.{n}` | `{t}` |"))
            .filter(|row| !doc.contains(row.as_str()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("docs/types.md lacks rows:\n{}", missing.join("\n")).into())
        }
    })
}

/// The real binary: `check` exits 0/1, `--json` is a parseable list, `eval` refuses an
/// ill-typed program unless `--no-typecheck`.
fn cli_trial() -> Trial {
    Trial::test("typecheck::cli-check-and-eval", || {
        let run = |args: &[&str]| {
            std::process::Command::new(crate::buildit_bin())
                .args(args)
                .env("NO_COLOR", "1")
                .output()
                .map_err(|e| e.to_string())
        };
        let ok = data("typecheck/accept/package-set.bld");
        let bad = data("typecheck/reject/several-errors.bld");
        let out = run(&["check", &ok.to_string_lossy()])?;
        if out.status.code() != Some(0) {
            return Err(format!("check {}: {:?}", ok.display(), out).into());
        }
        let out = run(&["check", "--json", &bad.to_string_lossy()])?;
        if out.status.code() != Some(1) {
            return Err(format!("check --json should exit 1: {out:?}").into());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("--json output: {e}"))?;
        let n = v.as_array().map(|a| a.len()).unwrap_or(0);
        if n != 3 {
            return Err(format!("expected 3 diagnostics, got {n}: {v}").into());
        }
        // a misspelled name, even in a branch never taken, is reported by `check` (with
        // "did you mean"), together with the type errors
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let typo = dir.path().join("typo.bld");
        std::fs::write(&typo, "let foo = 1; in if false then fo + \"a\" else foo")
            .map_err(|e| e.to_string())?;
        let out = run(&["check", "--json", &typo.to_string_lossy()])?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("--json output: {e}"))?;
        let codes: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["code"].as_str()).collect())
            .unwrap_or_default();
        if out.status.code() != Some(1)
            || codes.first() != Some(&"buildit::eval::undefined-variable")
            || !v.to_string().contains("did you mean 'foo'?")
        {
            return Err(format!("check of a misspelled name: {out:?}").into());
        }
        let out = run(&["eval", "-E", "if false then 1 + \"a\" else 2"])?;
        if out.status.code() != Some(1)
            || !String::from_utf8_lossy(&out.stderr).contains("buildit::type::mismatch")
        {
            return Err(format!(
                "eval of an ill-typed program should fail with buildit::type::mismatch: {out:?}"
            )
            .into());
        }
        let out = run(&[
            "eval",
            "--no-typecheck",
            "-E",
            "if false then 1 + \"a\" else 2",
        ])?;
        if out.status.code() != Some(0) || String::from_utf8_lossy(&out.stdout).trim() != "2" {
            return Err(format!("--no-typecheck should evaluate: {out:?}").into());
        }
        Ok(())
    })
}

/// The REPL's `:t`: types without evaluating, REPL variables with their inferred types, errors
/// as diagnostics.
fn repl_trial() -> Trial {
    Trial::test("typecheck::repl-t", || {
        use buildit_cli::render::{ReplRender, Style};
        use buildit_driver::repl::Repl;
        let mut repl = Repl::new(
            Box::new(buildit_stdlib::FsIo::new(|_| {})),
            root().to_string_lossy().into_owned(),
            Box::new(ReplRender(Style::plain())),
        );
        let cases = [
            (":t x: x + 1", "Int -> Int\n", false),
            (
                ":t { a, b ? 1, ... }: a + b",
                "{ a : Int, b ? Int, .. } -> Int\n",
                false,
            ),
            ("y = 2", "", false),
            (":t y", "Int\n", false),
        ];
        for (input, want, _) in cases {
            let r = repl.handle(input);
            if !want.is_empty() && (r.is_error || r.text != want) {
                return Err(format!("{input}: expected {want:?}, got {:?}", r.text).into());
            }
        }
        let r = repl.handle(":t 1 + \"a\"");
        if !r.is_error || !r.text.contains("buildit::type::mismatch") {
            return Err(format!(":t of an ill-typed expression: {:?}", r.text).into());
        }
        Ok(())
    })
}

/// Check a file with the driver's import-following checker (caches in memory only):
/// `(printed type, rendered diagnostics of every file, first code)`.
fn check_across(path: &Path, strict: bool) -> Result<(String, String, Option<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tc = buildit_driver::typecheck::TypeCheck::with_cache(strict, None);
    let c = tc.check_root(&path.to_string_lossy(), &text);
    let rendered: String = c
        .diagnostics
        .iter()
        .map(|d| d.render_plain(&c.sources))
        .collect();
    let prefix = format!("{}/", root().display());
    Ok((
        c.ty,
        rendered.replace(&prefix, "$ROOT/"),
        c.diagnostics.first().map(|d| d.code.to_string()),
    ))
}

/// One case directory of `typecheck/imports`: accepted (`main.type`) or rejected as its
/// `# expect:` line says (`main.err`).
fn imports_trial(dir: PathBuf) -> Trial {
    Trial::test(
        format!("typecheck::imports::{}", name_of(&dir)),
        move || {
            let main = dir.join("main.bld");
            let (ty, diags, code) = check_across(&main, false).map_err(Failed::from)?;
            match (expected_code(&main), code) {
                (None, None) => {
                    snapshot(&dir.join("main.type"), &format!("{ty}\n")).map_err(Failed::from)
                }
                (None, Some(_)) => Err(format!("expected to type-check, got:\n{diags}").into()),
                (Some(want), None) => {
                    Err(format!("expected {want}, but it type-checks as {ty}").into())
                }
                (Some(want), Some(c)) if c != want => {
                    Err(format!("expected {want}, got {c}:\n{diags}").into())
                }
                (Some(_), Some(_)) => snapshot(&dir.join("main.err"), &diags).map_err(Failed::from),
            }
        },
    )
}

/// `typecheck/strict/reject/*.bld`: accepted without `--strict`, rejected with it.
fn strict_reject_trial(bld: PathBuf) -> Trial {
    Trial::test(
        format!("typecheck::strict::reject::{}", name_of(&bld)),
        move || {
            let want = expected_code(&bld)
                .ok_or_else(|| Failed::from("no `# expect: CODE` line in the first 3 lines"))?;
            let (_, diags, code) = check_across(&bld, false).map_err(Failed::from)?;
            if code.is_some() {
                return Err(format!("rejected even without --strict:\n{diags}").into());
            }
            let (ty, diags, code) = check_across(&bld, true).map_err(Failed::from)?;
            match code {
                None => {
                    Err(format!("expected {want} with --strict, but it type-checks as {ty}").into())
                }
                Some(c) if c != want => Err(format!("expected {want}, got {c}:\n{diags}").into()),
                Some(_) => snapshot(&bld.with_extension("err"), &diags).map_err(Failed::from),
            }
        },
    )
}

/// `typecheck/strict/accept/*.bld`: pass `--strict`.
fn strict_accept_trial(bld: PathBuf) -> Trial {
    Trial::test(
        format!("typecheck::strict::accept::{}", name_of(&bld)),
        move || {
            let (_, diags, code) = check_across(&bld, true).map_err(Failed::from)?;
            match code {
                None => Ok(()),
                Some(_) => Err(format!("rejected by --strict:\n{diags}").into()),
            }
        },
    )
}

/// `typecheck/stdlib-misuse/reject/*.bld`: programs that call `<buildit>` wrongly (wrong field
/// types, missing required fields, unknown option names, misspelled names with "did you
/// mean") are rejected by `buildit check` before anything is evaluated, with the code of their
/// `# expect:` line and every diagnostic in `.err`; `accept/*.bld`, right calls, pass
/// `--strict`.
fn stdlib_misuse_reject_trial(bld: PathBuf) -> Trial {
    Trial::test(
        format!("typecheck::stdlib-misuse::reject::{}", name_of(&bld)),
        move || {
            let want = expected_code(&bld)
                .ok_or_else(|| Failed::from("no `# expect: CODE` line in the first 3 lines"))?;
            let (ty, diags, code) = check_across(&bld, false).map_err(Failed::from)?;
            match code {
                None => Err(format!("expected {want}, but it type-checks as {ty}").into()),
                Some(c) if c != want => Err(format!("expected {want}, got {c}:\n{diags}").into()),
                Some(_) => snapshot(&bld.with_extension("err"), &diags).map_err(Failed::from),
            }
        },
    )
}

fn stdlib_misuse_accept_trial(bld: PathBuf) -> Trial {
    Trial::test(
        format!("typecheck::stdlib-misuse::accept::{}", name_of(&bld)),
        move || {
            let (_, diags, code) = check_across(&bld, true).map_err(Failed::from)?;
            match code {
                None => Ok(()),
                Some(_) => Err(format!("rejected by --strict:\n{diags}").into()),
            }
        },
    )
}

/// The disk cache: a second checker (a second `buildit check`) checks only the root file;
/// after a one-line change in a leaf that keeps its type, only that leaf and the root are
/// checked again; after a change of the leaf's type, the files on the way to the root too,
/// and the root sees the new type.
fn cache_trial() -> Trial {
    Trial::test("typecheck::imports-cache", || {
        use buildit_driver::typecheck::{Stats, TypeCheck};
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let cache = dir.path().join("cache");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).map_err(|e| e.to_string())
        };
        write("leaf.bld", "{ n = 1; }\n")?;
        write("mid.bld", "{ leaf = import ./leaf.bld; }\n")?;
        write("other.bld", "{ s = \"x\"; }\n")?;
        let main_text =
            "let m = import ./mid.bld; o = import ./other.bld; in m.leaf.n + 1\n".to_string();
        let main = dir.path().join("main.bld");
        write("main.bld", &main_text)?;
        let run = |text: &str| {
            let mut tc = TypeCheck::with_cache(false, Some(cache.clone()));
            let c = tc.check_root(&main.to_string_lossy(), text);
            let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code).collect();
            (tc.stats, c.ty, codes.join(","))
        };
        let stats = |checked, from_disk| Stats {
            checked,
            from_memory: 0,
            from_disk,
        };
        let first = run(&main_text);
        if first != (stats(4, 0), "Int".into(), String::new()) {
            return Err(format!("first run: {first:?}").into());
        }
        let second = run(&main_text);
        if second != (stats(1, 3), "Int".into(), String::new()) {
            return Err(format!("second run (all imports cached): {second:?}").into());
        }
        // the same type: leaf is checked, mid is not (its import's type did not change)
        write("leaf.bld", "{ n = 2; }\n")?;
        let third = run(&main_text);
        if third != (stats(2, 2), "Int".into(), String::new()) {
            return Err(format!("after a change keeping leaf's type: {third:?}").into());
        }
        // another type: leaf and mid are checked again, and main sees a String
        write("leaf.bld", "{ n = \"two\"; }\n")?;
        let fourth = run(&main_text);
        if fourth != (stats(3, 1), "Dyn".into(), "buildit::type::mismatch".into()) {
            return Err(format!("after a change of leaf's type: {fourth:?}").into());
        }
        Ok(())
    })
}

/// Where `Dyn` shows at the top of a public name's type: the type itself, a list or dictionary
/// of `Dyn`, or a parameter or the result of a function (not the fields of a record a function
/// takes or gives: an argument's `src : Dyn` is a field of `stdenv.mkPackage`'s parameter).
fn dyn_at_top(t: &types::Type) -> bool {
    use types::Type;
    let shallow = |t: &Type| match t {
        Type::Dyn => true,
        Type::List(e) | Type::Dict(e) => matches!(**e, Type::Dyn),
        _ => false,
    };
    match t {
        Type::Fun(a, b) => shallow(a) || dyn_at_top(b),
        t => shallow(t),
    }
}

/// The public names of a type (fields of records, `NAME.*` for a dictionary's values, `NAME[]`
/// for a list's elements, recursively) whose type has `Dyn` at the top.
fn public_dyn_names(path: &str, t: &types::Type, depth: u32, out: &mut Vec<String>) {
    use types::Type;
    if depth > 32 {
        return;
    }
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    match t {
        Type::Record { fields, .. } => {
            for f in fields {
                public_dyn_names(&join(&f.name), &f.ty, depth + 1, out);
            }
        }
        Type::Dict(e) if !matches!(**e, Type::Dyn) => {
            public_dyn_names(&join("*"), e, depth + 1, out)
        }
        Type::List(e) if !matches!(**e, Type::Dyn) => {
            public_dyn_names(&format!("{path}[]"), e, depth + 1, out)
        }
        t if dyn_at_top(t) => out.push(format!("{path} : {t}")),
        _ => {}
    }
}

/// Every public name of `import <buildit>` (walked through records, dictionaries and lists) has
/// a type without `Dyn` at the top, except the names of `typecheck/stdlib-dyn-allowed.txt`
/// (`NAME # reason`), each of which must still need its place there.
fn stdlib_public_types_trial() -> Trial {
    Trial::test("typecheck::stdlib-public-names-are-typed", || {
        use buildit_lang::types::{ImportTarget, Imports};
        let mut tc = buildit_driver::typecheck::TypeCheck::with_cache(false, None);
        let mut sources = SourceMap::new();
        let from = sources.add("<test>".to_string(), "import <buildit>");
        let ty = tc
            .import_type(from, ImportTarget::Lookup("buildit"))
            .ok_or("import <buildit> has no type")?;
        let mut names = Vec::new();
        public_dyn_names("", &ty, 0, &mut names);
        let list = data("typecheck/stdlib-dyn-allowed.txt");
        let text =
            std::fs::read_to_string(&list).map_err(|e| format!("{}: {e}", list.display()))?;
        let mut allowed = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('#') {
                Some((name, reason)) if !reason.trim().is_empty() => {
                    allowed.push(name.trim().to_string())
                }
                _ => return Err(format!("{}: `{line}` gives no `# reason`", list.display()).into()),
            }
        }
        let is_allowed = |n: &str| allowed.iter().any(|a| n.split(" : ").next() == Some(a));
        let bad: Vec<&String> = names.iter().filter(|n| !is_allowed(n)).collect();
        let stale: Vec<&String> = allowed
            .iter()
            .filter(|a| {
                !names
                    .iter()
                    .any(|n| n.split(" : ").next() == Some(a.as_str()))
            })
            .collect();
        if !bad.is_empty() || !stale.is_empty() {
            let mut msg = String::new();
            for n in bad {
                msg.push_str(&format!(
                    "public name with `Dyn` at the top of its type: {n}\n"
                ));
            }
            for a in stale {
                msg.push_str(&format!(
                    "{}: `{a}` no longer has `Dyn` at the top (remove it)\n",
                    list.display()
                ));
            }
            return Err(msg.into());
        }
        // the walk itself: a `Dyn` at the top is found, one deep in a parameter is not
        let probe = types::parse_type(
            "{ a : { b : Int -> Dyn }, c : [Dyn], d : { src : Dyn } -> Int, e : { _ : { f : Dyn } } }",
        )
        .map_err(|e| format!("{e:?}"))?;
        let mut found = Vec::new();
        public_dyn_names("", &probe, 0, &mut found);
        let found: Vec<&str> = found.iter().filter_map(|n| n.split(" : ").next()).collect();
        if found != ["a.b", "c", "e.*.f"] {
            return Err(format!("the walk of a probe type found {found:?}").into());
        }
        Ok(())
    })
}

/// The fewest programs `typecheck/accept` and `typecheck/reject` may hold.
const MIN_ACCEPT: usize = 155;
const MIN_REJECT: usize = 80;

pub fn trials() -> Vec<Trial> {
    let mut v = vec![
        corpus_trial(),
        examples_trial(),
        builtins_trial(),
        docs_trial(),
        cli_trial(),
        repl_trial(),
        stdlib_public_types_trial(),
    ];
    let (accept, accept_guard) = crate::corpus("typecheck/accept", "bld", MIN_ACCEPT);
    let (reject, reject_guard) = crate::corpus("typecheck/reject", "bld", MIN_REJECT);
    v.extend([accept_guard, reject_guard]);
    v.extend(accept.into_iter().map(accept_trial));
    v.extend(reject.into_iter().map(reject_trial));
    let mut cases: Vec<PathBuf> = std::fs::read_dir(data("typecheck/imports"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("main.bld").is_file())
                .collect()
        })
        .unwrap_or_default();
    cases.sort();
    v.push(crate::corpus_guard(
        "typecheck/imports",
        "case directories with a main.bld",
        cases.len(),
        MIN_IMPORTS,
    ));
    v.extend(cases.into_iter().map(imports_trial));
    let (strict_reject, g1) = crate::corpus("typecheck/strict/reject", "bld", MIN_STRICT_REJECT);
    let (strict_accept, g2) = crate::corpus("typecheck/strict/accept", "bld", MIN_STRICT_ACCEPT);
    v.extend([g1, g2, cache_trial()]);
    v.extend(strict_reject.into_iter().map(strict_reject_trial));
    v.extend(strict_accept.into_iter().map(strict_accept_trial));
    let (misuse, g1) = crate::corpus(
        "typecheck/stdlib-misuse/reject",
        "bld",
        MIN_STDLIB_MISUSE_REJECT,
    );
    let (right, g2) = crate::corpus(
        "typecheck/stdlib-misuse/accept",
        "bld",
        MIN_STDLIB_MISUSE_ACCEPT,
    );
    v.extend([g1, g2]);
    v.extend(misuse.into_iter().map(stdlib_misuse_reject_trial));
    v.extend(right.into_iter().map(stdlib_misuse_accept_trial));
    v
}

/// The fewest cases of the cross-file and `--strict` corpora.
const MIN_IMPORTS: usize = 12;
const MIN_STRICT_REJECT: usize = 13;
const MIN_STRICT_ACCEPT: usize = 5;
/// The fewest cases of the check-time standard-library misuse corpus.
const MIN_STDLIB_MISUSE_REJECT: usize = 12;
const MIN_STDLIB_MISUSE_ACCEPT: usize = 3;
