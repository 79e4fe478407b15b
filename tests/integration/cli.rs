//! The real `buildit` binary: snapshot tests of its output (`tests/data/cli/NAME.cmd`, one
//! argument per line, run in `tests/data/cli/`; expected exit status, stdout and stderr in
//! `NAME.expected`), and robustness tests on generated hostile input.

use crate::{data, name_of, snapshot};
use libtest_mimic::{Failed, Trial};
use std::path::Path;
use std::process::{Command, Output};

pub fn buildit() -> Command {
    let mut c = Command::new(crate::buildit_bin());
    c.env("NO_COLOR", "1").env_remove("BUILDIT_STORE_ROOT");
    c
}

fn describe(o: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        o.status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| format!(
                "signal {:?}",
                std::os::unix::process::ExitStatusExt::signal(&o.status)
            )),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn snapshot_trial(cmd: std::path::PathBuf) -> Trial {
    Trial::test(format!("cli::{}", name_of(&cmd)), move || {
        let text = std::fs::read_to_string(&cmd).map_err(|e| e.to_string())?;
        let args: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let out = buildit()
            .args(&args)
            .current_dir(data("cli"))
            .output()
            .map_err(|e| e.to_string())?;
        snapshot(&cmd.with_extension("expected"), &describe(&out)).map_err(Into::into)
    })
}

/// Run `buildit eval` on a generated file; it must exit with `want` (never crash or 101).
fn hostile(name: &str, content: Vec<u8>, want: i32, stdout: Option<&'static str>) -> Trial {
    let name = name.to_string();
    Trial::test(format!("cli::robust::{name}"), move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let f = dir.path().join("input.bld");
        std::fs::write(&f, &content).map_err(|e| e.to_string())?;
        let out = run_file(&f)?;
        let code = out.status.code();
        if code != Some(want) {
            return Err(format!("expected exit {want}\n{}", describe(&out)).into());
        }
        if want == 1 && !String::from_utf8_lossy(&out.stderr).contains("buildit::") {
            return Err(format!("no diagnostic code on stderr\n{}", describe(&out)).into());
        }
        if let Some(s) = stdout {
            if String::from_utf8_lossy(&out.stdout).trim_end() != s {
                return Err(format!("expected stdout {s}\n{}", describe(&out)).into());
            }
        }
        Ok(())
    })
}

fn run_file(f: &Path) -> Result<Output, Failed> {
    buildit()
        .arg("eval")
        .arg("--no-typecheck")
        .arg(f)
        .output()
        .map_err(|e| Failed::from(e.to_string()))
}

pub fn trials() -> Vec<Trial> {
    // the corpus holds at least 15 commands
    let (cmds, guard) = crate::corpus("cli", "cmd", 15);
    let mut v: Vec<Trial> = vec![guard];
    v.extend(cmds.into_iter().map(snapshot_trial));
    let deep = |open: &str, mid: &str, close: &str, n: usize| {
        let mut s = open.repeat(n);
        s.push_str(mid);
        s.push_str(&close.repeat(n));
        s.into_bytes()
    };
    v.push(hostile(
        "recursion-1m-deep",
        b"let count = n: if n == 0 then 0 else 1 + count (n - 1); in count 1000000".to_vec(),
        0,
        Some("1000000"),
    ));
    v.push(hostile(
        "parens-100k-deep",
        deep("(", "1", ")", 100_000),
        1,
        None,
    ));
    v.push(hostile(
        "lists-100k-deep",
        deep("[", "1", "]", 100_000),
        1,
        None,
    ));
    v.push(hostile(
        "unclosed-brackets",
        b"{ a = [ 1 2 ( 3 ".to_vec(),
        1,
        None,
    ));
    v.push(hostile(
        "garbage-bytes",
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect(),
        1,
        None,
    ));
    v.push(hostile(
        "undefined-name",
        b"let a = 1; in b".to_vec(),
        1,
        None,
    ));
    v.push(hostile(
        "runtime-type-error",
        b"1 + \"a\"".to_vec(),
        1,
        None,
    ));
    // a million-deep nested list is built and freed during evaluation without a crash
    v.push(hostile(
        "nested-list-1m-dropped",
        b"let mk = n: builtins.foldl' (acc: x: [acc]) [] (builtins.genList (x: x) n); in builtins.length (mk 1000000)".to_vec(),
        0,
        Some("1"),
    ));
    v.push(hostile(
        "fromjson-200k-deep",
        format!(
            "builtins.length (builtins.fromJSON \"{}{}\")",
            "[".repeat(200_000),
            "]".repeat(200_000)
        )
        .into_bytes(),
        0,
        Some("1"),
    ));
    // a 100k-long operator chain is refused with a diagnostic (nesting limit), not a crash
    v.push(hostile(
        "sum-chain-100k",
        {
            let mut s = "1".to_string();
            s.push_str(&" + 1".repeat(100_000));
            s.into_bytes()
        },
        1,
        None,
    ));
    // a 100k-arrow type is refused (type depth limit); its diagnostic, far past column 65535,
    // is rendered without miette's panic
    v.push(hostile(
        "type-arrows-100k",
        format!("(1 :: {}Int)", "Int -> ".repeat(100_000)).into_bytes(),
        1,
        None,
    ));
    // a type error at column 400,000 of one line
    v.push(hostile(
        "type-error-on-a-long-line",
        format!("[ {}(1 + \"a\") ]", "1 ".repeat(200_000)).into_bytes(),
        1,
        None,
    ));
    // aliases that double at each level are cut off, not expanded exponentially
    v.push(hostile(
        "alias-exponential",
        {
            let mut s = String::from("let type A0 = Int;");
            for i in 1..64 {
                s.push_str(&format!(
                    " type A{i} = {{ a : A{p}, b : A{p} }};",
                    p = i - 1
                ));
            }
            s.push_str(" x :: A63 = 1; in x");
            s.into_bytes()
        },
        1,
        None,
    ));
    v.push(hostile(
        "sum-chain-1000",
        {
            let mut s = "1".to_string();
            s.push_str(&" + 1".repeat(1000));
            s.into_bytes()
        },
        0,
        Some("1001"),
    ));
    v.extend(limit_trials());
    v
}

/// Run `buildit ARGS input.bld` on a generated program, in a fresh directory that `setup` may
/// add files to: it must exit with `want` within `secs` seconds (the whole run, so a runaway
/// evaluation fails the test instead of the machine), with each of `expect` in its stdout or
/// stderr.
fn bounded(
    name: &str,
    args: &'static [&'static str],
    src: String,
    setup: fn(&Path) -> std::io::Result<()>,
    want: i32,
    expect: &'static [&'static str],
    secs: u64,
) -> Trial {
    Trial::test(format!("cli::robust::{name}"), move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        setup(dir.path()).map_err(|e| format!("setup: {e}"))?;
        let f = dir.path().join("input.bld");
        std::fs::write(&f, &src).map_err(|e| e.to_string())?;
        let start = std::time::Instant::now();
        let out = buildit()
            .args(args)
            .arg(&f)
            .current_dir(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if out.status.code() != Some(want) {
            return Err(format!("expected exit {want}\n{}", describe(&out)).into());
        }
        if took > std::time::Duration::from_secs(secs) {
            return Err(format!("took {took:?}, more than {secs} s\n{}", describe(&out)).into());
        }
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match expect.iter().find(|e| !all.contains(*e)) {
            Some(e) => Err(format!("no `{e}` in the output\n{}", describe(&out)).into()),
            None => Ok(()),
        }
    })
}

fn no_setup(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Limits and hostile input that reach other paths than parsing: input-sized attribute
/// paths, endless recursion and memory growth (which must end in seconds with their
/// diagnostic, at the default limits too), unbounded files and out-of-range indices.
fn limit_trials() -> Vec<Trial> {
    let path = vec!["a"; 100_000].join(".");
    let endless_self = "let f = x: 1 + f x; in f 1";
    vec![
        // a 100,000-key attribute path: lowered, type-checked, printed and selected
        bounded(
            "attrpath-100k-eval",
            &["eval"],
            format!("{{ {path} = 1; }}"),
            no_setup,
            0,
            &["{ a = { a = { a = "],
            30,
        ),
        bounded(
            "attrpath-100k-select",
            &["eval"],
            format!("let s = {{ {path}.b = 1; {path}.c = 2; }}; in s.{path}.c"),
            no_setup,
            0,
            &["2"],
            30,
        ),
        bounded(
            "attrpath-100k-check",
            &["check"],
            format!("{{ {path} = 1; }}"),
            no_setup,
            0,
            &["{ a : { a : "],
            30,
        ),
        // endless recursion, at the default depth limit: the recursion is named
        bounded(
            "recursion-endless-default-limit",
            &["eval"],
            endless_self.to_string(),
            no_setup,
            1,
            &["buildit::eval::max-call-depth", "f → f → f → …", "calls itself here"],
            10,
        ),
        bounded(
            "recursion-endless-concat",
            &["eval", "--no-typecheck", "--max-call-depth", "300000"],
            "let f = n: [ n ] ++ f (n + 1); in f 0".to_string(),
            no_setup,
            1,
            &["buildit::eval::max-call-depth", "f → f → f → …"],
            10,
        ),
        bounded(
            "recursion-endless-mutual",
            &["eval", "--max-call-depth", "100000"],
            "let f = x: 1 + g x; g = x: 2 * f x; in f 1".to_string(),
            no_setup,
            1,
            &["buildit::eval::max-call-depth", "(100000)", "f → g → f"],
            10,
        ),
        // the depth limit counts: a million-deep recursion needs the default's headroom
        bounded(
            "recursion-1m-under-a-lower-limit",
            &["eval", "--no-typecheck", "--max-call-depth", "500000"],
            "let count = n: if n == 0 then 0 else 1 + count (n - 1); in count 1000000"
                .to_string(),
            no_setup,
            1,
            &["buildit::eval::max-call-depth", "count → count → count → …"],
            10,
        ),
        // strings that double at every step: the memory ceiling stops them
        bounded(
            "memory-ceiling-doubling-strings",
            &["eval", "--no-typecheck", "--max-eval-memory", "256M"],
            "let f = s: n: if n == 0 then builtins.stringLength s else f (s + s) (n - 1); in f \"x\" 40"
                .to_string(),
            no_setup,
            1,
            &["buildit::eval::memory-limit", "256 MiB"],
            10,
        ),
        // devices and FIFOs are never read (they could be endless or block forever)
        bounded(
            "readfile-dev-zero",
            &["eval"],
            "builtins.readFile /dev/zero".to_string(),
            no_setup,
            1,
            &["buildit::eval::io", "not a regular file"],
            5,
        ),
        bounded(
            "readfile-dev-urandom",
            &["eval"],
            "builtins.hashFile \"sha256\" /dev/urandom".to_string(),
            no_setup,
            1,
            &["buildit::eval::io", "not a regular file"],
            5,
        ),
        bounded(
            "readfile-fifo",
            &["eval"],
            "import ./fifo".to_string(),
            |dir| {
                let st = std::process::Command::new("mkfifo")
                    .arg(dir.join("fifo"))
                    .status()?;
                st.success()
                    .then_some(())
                    .ok_or_else(|| std::io::Error::other("mkfifo failed"))
            },
            1,
            &["buildit::eval::io", "not a regular file"],
            5,
        ),
        // a broken symlink exists (lstat, as in Nix)
        bounded(
            "pathexists-broken-symlink",
            &["eval"],
            "[ (builtins.pathExists ./dangling) (builtins.pathExists ./nothing) ]".to_string(),
            |dir| std::os::unix::fs::symlink("nowhere", dir.join("dangling")),
            0,
            &["[ true false ]"],
            5,
        ),
        // the index is reported as given, not truncated to 32 bits
        bounded(
            "elemat-huge-index",
            &["eval"],
            "builtins.elemAt [ 1 2 ] 9223372036854775807".to_string(),
            no_setup,
            1,
            &["list index 9223372036854775807 is out of bounds"],
            5,
        ),
    ]
}
