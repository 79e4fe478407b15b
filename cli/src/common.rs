//! What several commands share: terminal style, the evaluation IO, paths relative to the
//! working directory, reading and type-checking a root file, evaluating a `FILE | -E EXPR`
//! target with `-A ATTR`, choosing the store, and command-line errors as diagnostics.

use crate::render::{self, Style};
use buildit_eval::{Evaluator, Value};
use buildit_stdlib::{FsIo, StoreIo};
use buildit_store::StoreLayout;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn style(full_trace: bool) -> Style {
    let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    Style {
        color: tty,
        unicode: tty,
        full_trace,
    }
}

pub fn fs_io(impure: bool) -> FsIo {
    FsIo::new(|msg| eprintln!("trace: {msg}")).with_impure_env(impure)
}

pub fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

pub fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        buildit_eval::lower::canon_path(&format!("{}/{}", cwd(), path))
    }
}

/// The source of a file as the evaluator would read it (a directory means its default file).
pub fn read_source(file: &str) -> Option<(String, String)> {
    let path = absolute(file);
    let path = if std::path::Path::new(&path).is_dir() {
        let bld = format!("{path}/default.bld");
        if std::path::Path::new(&bld).exists() {
            bld
        } else {
            format!("{path}/default.nix")
        }
    } else {
        path
    };
    let text = std::fs::read_to_string(&path).ok()?;
    Some((path, text))
}

/// Parse and type-check one source: `(sources, parse diagnostics, type diagnostics, type)`.
pub fn typecheck_source(
    name: &str,
    text: &str,
) -> (
    buildit_lang::SourceMap,
    Vec<buildit_lang::Diagnostic>,
    Vec<buildit_lang::Diagnostic>,
    String,
) {
    let mut sources = buildit_lang::SourceMap::new();
    let file = sources.add(name.to_string(), text);
    let parsed = buildit_lang::parse(file, text);
    let (diags, ty) = match (&parsed.expr, parsed.syntax_ok()) {
        (Some(e), true) => {
            let r = buildit_lang::types::check(e);
            (r.diagnostics, r.ty.to_string())
        }
        _ => (Vec::new(), String::new()),
    };
    (sources, parsed.diagnostics, diags, ty)
}

/// `buildit check`'s static analysis of one source, without evaluating anything: syntax, scope
/// (undefined variables with "did you mean", duplicate attributes: the evaluator's lowering,
/// which resolves every name statically) and types. `(sources, diagnostics in source order,
/// type)`; the type is empty when there are syntax errors.
pub fn check_source(
    name: &str,
    text: &str,
) -> (
    buildit_lang::SourceMap,
    Vec<buildit_lang::Diagnostic>,
    String,
) {
    let mut sources = buildit_lang::SourceMap::new();
    let file = sources.add(name.to_string(), text);
    let parsed = buildit_lang::parse(file, text);
    let (Some(e), true) = (&parsed.expr, parsed.syntax_ok()) else {
        return (sources, parsed.diagnostics, String::new());
    };
    let ev = Evaluator::new(Box::new(fs_io(false)));
    let base_dir = Path::new(name)
        .parent()
        .filter(|p| p.is_absolute())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(cwd);
    let ctx = buildit_eval::lower::LowerCtx {
        globals: ev.globals(),
        base_dir,
        home: std::env::var("HOME").ok(),
    };
    let (_, scope) = buildit_eval::lower::lower(e, &ctx);
    let r = buildit_lang::types::check(e);
    let mut all: Vec<buildit_lang::Diagnostic> = parsed
        .diagnostics
        .into_iter()
        .chain(scope)
        .chain(r.diagnostics)
        .collect();
    let at = |d: &buildit_lang::Diagnostic| d.labels.first().map_or(0, |l| l.span.start);
    all.sort_by_key(at);
    (sources, all, r.ty.to_string())
}

/// Report an error about the command line itself (no source span) and exit 1.
pub fn cli_error(code: &'static str, message: &str, help: &str) -> ExitCode {
    let d = buildit_lang::Diagnostic::error(code, message).with_help(help);
    eprint!(
        "{}",
        render::diagnostic(&buildit_lang::SourceMap::new(), &d, style(false))
    );
    ExitCode::from(1)
}

/// The store layout: `--store-root DIR`, else `BUILDIT_STORE_ROOT`, else `/bld` when writable,
/// else `$XDG_DATA_HOME/buildit` (`~/.local/share/buildit`).
pub fn store_layout(explicit: Option<&Path>) -> StoreLayout {
    let env_root = std::env::var_os("BUILDIT_STORE_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    StoreLayout::choose(explicit, env_root.as_deref(), data_home.as_deref())
}

/// The evaluation IO of commands that may create store objects.
pub fn store_io(impure: bool, store_root: Option<&Path>) -> StoreIo {
    new_store_io(fs_io(impure), store_layout(store_root))
}

/// The Debian lock that replaces the embedded one for this process (`--debian-lock FILE` or
/// `BUILDIT_DEBIAN_LOCK`): its path and text.
static DEBIAN_LOCK: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();

/// The environment variable naming a Debian lock to build with (as `--debian-lock`).
pub const DEBIAN_LOCK_ENV: &str = "BUILDIT_DEBIAN_LOCK";

/// Use the Debian lock at `path` instead of `stdlib/debian/bookworm.lock` in `<buildit>` for the
/// rest of the process. The file must be a lock `buildit debian lock` wrote (it is parsed
/// now, so a wrong file is an error here rather than deep inside evaluation).
pub fn set_debian_lock(path: &Path) -> Result<(), ExitCode> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(cli_error(
                "buildit::debian::lock-unreadable",
                &format!("cannot read the Debian lock {}: {e}", path.display()),
                "give a lock written by `buildit debian lock --output FILE` (--debian-lock FILE or BUILDIT_DEBIAN_LOCK)",
            ))
        }
    };
    if let Err(e) = buildit_debian::lock::parse_lock(&text) {
        return Err(cli_error(
            "buildit::debian::bad-lock",
            &format!("{} is not a Debian lock: {e}", path.display()),
            "regenerate it: buildit debian lock PKG... --output FILE (or refresh: buildit debian lock --output FILE)",
        ));
    }
    let abs = PathBuf::from(absolute(&path.to_string_lossy()));
    let _ = DEBIAN_LOCK.set((abs, text));
    Ok(())
}

/// The Debian lock given with `--debian-lock` / `BUILDIT_DEBIAN_LOCK`, if any.
pub fn debian_lock_override() -> Option<&'static Path> {
    DEBIAN_LOCK.get().map(|(p, _)| p.as_path())
}

/// A [`StoreIo`] over `fs` and `layout`, with the Debian lock of [`set_debian_lock`] in place.
pub fn new_store_io(fs: FsIo, layout: StoreLayout) -> StoreIo {
    let io = StoreIo::new(fs, layout);
    match DEBIAN_LOCK.get() {
        Some((_, text)) => io
            .with_stdlib_file(buildit_stdlib::embedded::DEBIAN_LOCK, text.clone())
            .expect("the Debian lock is a file of the embedded standard library"),
        None => io,
    }
}

/// What to evaluate: a file or an expression, and an attribute path to select.
pub struct Target<'a> {
    pub file: Option<&'a str>,
    pub expr: Option<&'a str>,
    pub attr: Option<&'a str>,
    pub typecheck: bool,
}

/// Type-check (unless turned off), evaluate and select `-A`: the value in weak head normal form,
/// or the exit code after the diagnostics were printed.
pub fn evaluate_target(ev: &mut Evaluator, t: &Target<'_>, st: Style) -> Result<Value, ExitCode> {
    if t.typecheck {
        if let Some(code) = typecheck_root(t.file, t.expr, st) {
            return Err(code);
        }
    }
    let result = match (t.file, t.expr) {
        (_, Some(expr)) => match ev.compile("«cmdline»", expr, &cwd()) {
            Ok(ir) => ev.eval_root(&ir),
            Err(diags) => {
                eprint!("{}", render::diagnostics(&ev.sources, &diags, st));
                return Err(ExitCode::from(1));
            }
        },
        (Some(file), None) => ev.import(&absolute(file), buildit_lang::Span::default()),
        (None, None) => {
            return Err(cli_error(
                "buildit::cli::nothing-to-evaluate",
                "nothing to evaluate",
                "give a FILE or -E EXPR (see `--help`)",
            ));
        }
    };
    let mut value = match result {
        Ok(v) => v,
        Err(e) => {
            eprint!("{}", render::eval_error(&ev.sources, &e, st));
            return Err(ExitCode::from(1));
        }
    };
    if let Some(path) = t.attr {
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let sym = buildit_eval::Symbol::intern(part);
            let next = match &value {
                Value::Attrs(at) => at.get(sym).cloned(),
                _ => None,
            };
            let Some(next) = next else {
                let names = match &value {
                    Value::Attrs(at) => at
                        .iter_sorted()
                        .into_iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => format!("(the value is {}, not a set)", other.describe()),
                };
                return Err(cli_error(
                    "buildit::cli::attribute-not-found",
                    &format!("attribute '{part}' of '{path}' not found"),
                    &format!("available here: {names}"),
                ));
            };
            value = match ev.force(&next) {
                Ok(v) => v,
                Err(e) => {
                    eprint!("{}", render::eval_error(&ev.sources, &e, st));
                    return Err(ExitCode::from(1));
                }
            };
        }
    }
    Ok(value)
}

/// Type-check the root of an evaluation (imports are `Dyn`); `Some(exit code)` when it has type
/// errors. Syntax errors are left to the evaluator, which reports them as before.
pub fn typecheck_root(file: Option<&str>, expr: Option<&str>, st: Style) -> Option<ExitCode> {
    let (name, text) = match (file, expr) {
        (_, Some(expr)) => ("«cmdline»".to_string(), expr.to_string()),
        (Some(file), None) => read_source(file)?,
        (None, None) => return None,
    };
    let (_, _, diags, _) = typecheck_source(&name, &text);
    if diags.is_empty() {
        return None;
    }
    // with type errors, report the undefined names of the file in the same run (in source
    // order); without, the evaluator's lowering reports them as usual
    let (sources, diags, _) = check_source(&name, &text);
    eprint!("{}", render::diagnostics(&sources, &diags, st));
    eprintln!("(evaluate anyway with --no-typecheck)");
    Some(ExitCode::from(1))
}

/// Evaluate one of buildit's own expressions (no type check: it is ours) and return its value
/// as JSON; evaluation diagnostics are printed on failure. `code` names the caller's area in
/// the (internal) error for JSON that does not parse.
pub fn eval_internal_json(
    ev: &mut Evaluator,
    expr: &str,
    st: Style,
    code: &'static str,
) -> Result<serde_json::Value, ExitCode> {
    let t = Target {
        file: None,
        expr: Some(expr),
        attr: None,
        typecheck: false,
    };
    let v = evaluate_target(ev, &t, st)?;
    let mut ctx = buildit_eval::Context::empty();
    let json = buildit_eval::builtins::json::value_to_json(
        ev,
        &v,
        buildit_lang::Span::default(),
        &mut ctx,
    )
    .map_err(|e| {
        eprint!("{}", render::eval_error(&ev.sources, &e, st));
        ExitCode::from(1)
    })?;
    serde_json::from_str(&json)
        .map_err(|e| cli_error(code, &e.to_string(), "this is a bug in buildit"))
}

/// The default memory ceiling of evaluation (`--max-eval-memory`): far above what real
/// package sets need, well below what takes a machine down.
pub const DEFAULT_MAX_EVAL_MEMORY: u64 = 3 << 30;

/// `--max-eval-memory`'s value: bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers
/// of 1024, optionally followed by `iB` or `B`); `0` turns the ceiling off.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown unit in `{s}` (use K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 4G, 512M, 1073741824)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// The resident memory of this process in bytes (`VmRSS` of /proc/self/status), native stacks
/// and every allocator included.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Watch the process's memory from a background thread (every 10 ms) and interrupt evaluation
/// ([`buildit_eval::limits::interrupt_memory`]) when it crosses `ceiling` bytes; evaluation
/// then ends with `buildit::eval::memory-limit`. It is raised once per crossing: the memory
/// must fall below the ceiling before it is raised again (the REPL goes on after the error).
pub fn watch_memory(ceiling: u64) {
    if ceiling == 0 || resident_bytes().is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("memory-watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut armed = true;
            loop {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let Some(rss) = resident_bytes() else { return };
                if armed && rss > ceiling {
                    buildit_eval::limits::interrupt_memory(ceiling);
                    armed = false;
                } else if rss <= ceiling {
                    armed = true;
                }
            }
        });
    // without the thread there is no ceiling, as with `--max-eval-memory 0`
    drop(spawned);
}
