//! Miscellaneous builtins: file access through [`crate::EvalIo`] (`readFile`, `pathExists`,
//! `readDir`, `getEnv`), path-string helpers with Nix 2.8's exact semantics (`baseNameOf`,
//! `dirOf` — which returns a path for a path argument — and `toPath`), and arithmetic
//! (`add sub mul div lessThan bitAnd bitOr bitXor floor ceil`). Integer arithmetic goes through
//! [`Evaluator::arith`], so overflow and division by zero are errors, never wrap-around.

use super::strings::{arg, coerce_no_copy, force_string_no_ctx, string_from_bytes};
use crate::error::{ErrorKind, EvalError};
use crate::io::FileKind;
use crate::symbol::Symbol;
use crate::value::{Attrs, EvalResult, NixString, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::ast::BinOp;
use buildit_lang::Span;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "readFile", arity: 1, func: read_file, doc: "readFile path: the contents of the regular file at path, as a string (devices, FIFOs and sockets are refused)" },
        PrimOp { name: "pathExists", arity: 1, func: path_exists, doc: "pathExists path: whether something exists at path (a broken symlink does)" },
        PrimOp { name: "readDir", arity: 1, func: read_dir, doc: "readDir path: the entries of a directory, as { name = \"regular\"|\"directory\"|\"symlink\"|\"unknown\"; }" },
        PrimOp { name: "getEnv", arity: 1, func: get_env, doc: "getEnv name: the value of environment variable name, or \"\" if unset" },
        PrimOp { name: "baseNameOf", arity: 1, func: base_name_of, doc: "baseNameOf s: everything after the last slash of s (a trailing slash is ignored)" },
        PrimOp { name: "dirOf", arity: 1, func: dir_of, doc: "dirOf s: everything before the last slash of s; a path for a path, a string for a string" },
        PrimOp { name: "toPath", arity: 1, func: to_path, doc: "toPath s: the canonical form of absolute path s, as a string (deprecated)" },
        PrimOp { name: "add", arity: 2, func: add, doc: "add a b: a + b (integers or floats)" },
        PrimOp { name: "sub", arity: 2, func: sub, doc: "sub a b: a - b (integers or floats)" },
        PrimOp { name: "mul", arity: 2, func: mul, doc: "mul a b: a * b (integers or floats)" },
        PrimOp { name: "div", arity: 2, func: div, doc: "div a b: a / b (integer division for integers)" },
        PrimOp { name: "lessThan", arity: 2, func: less_than, doc: "lessThan a b: a < b (numbers, strings, paths, lists)" },
        PrimOp { name: "bitAnd", arity: 2, func: |ev, a, s| bit(ev, a, s, |x, y| x & y), doc: "bitAnd a b: bitwise and of two integers" },
        PrimOp { name: "bitOr", arity: 2, func: |ev, a, s| bit(ev, a, s, |x, y| x | y), doc: "bitOr a b: bitwise or of two integers" },
        PrimOp { name: "bitXor", arity: 2, func: |ev, a, s| bit(ev, a, s, |x, y| x ^ y), doc: "bitXor a b: bitwise exclusive or of two integers" },
        PrimOp { name: "floor", arity: 1, func: |ev, a, s| round(ev, a, s, f64::floor), doc: "floor x: the largest integer not greater than x" },
        PrimOp { name: "ceil", arity: 1, func: |ev, a, s| round(ev, a, s, f64::ceil), doc: "ceil x: the smallest integer not less than x" },
    ]
}

fn io_error(what: &str, path: &str, e: &std::io::Error, span: Span) -> EvalError {
    EvalError::new(ErrorKind::Io, format!("{what} '{path}': {e}"), span)
}

/// Refuse to read anything but a regular file (for `readFile`, `hashFile` and `import`): a
/// device (`/dev/zero`, `/dev/urandom`), FIFO or socket could be endless or block forever, so
/// it is refused before it is opened. What does not exist is left to the read's own error.
pub(crate) fn check_regular_file(ev: &Evaluator, path: &str, span: Span) -> EvalResult<()> {
    match ev.io().file_kind(path) {
        Some(FileKind::Unknown) => Err(EvalError::new(
            ErrorKind::Io,
            format!("cannot read '{path}': it is not a regular file (a device, FIFO or socket)"),
            span,
        )
        .with_help("only regular files can be read: a device or FIFO may never end")),
        Some(FileKind::Directory) => Err(EvalError::new(
            ErrorKind::Io,
            format!("cannot read '{path}': it is a directory"),
            span,
        )),
        _ => Ok(()),
    }
}

fn read_file(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let path = ev.coerce_to_path(&arg(a, 0), span)?;
    check_regular_file(ev, &path, span)?;
    let data = ev
        .io()
        .read_file(&path)
        .map_err(|e| io_error("opening file", &path, &e, span))?;
    if data.contains(&0) {
        return Err(EvalError::new(
            ErrorKind::Invalid,
            format!("the contents of the file '{path}' cannot be represented as a Nix string"),
            span,
        ));
    }
    Ok(Value::string(string_from_bytes(data)))
}

/// Whether anything is at `path`, without following a final symlink (as Nix's `lstat`): a
/// broken symlink exists. `EvalIo::file_kind` follows symlinks, so when it finds nothing the
/// parent directory's listing (which does not follow them) decides.
fn path_exists(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let path = ev.coerce_to_path(&arg(a, 0), span)?;
    if ev.io().file_kind(&path).is_some() {
        return Ok(Value::Bool(true));
    }
    let (dir, name) = match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => return Ok(Value::Bool(false)),
    };
    let listed = !name.is_empty()
        && ev
            .io()
            .read_dir(dir)
            .is_ok_and(|entries| entries.iter().any(|(n, _)| n == name));
    Ok(Value::Bool(listed))
}

fn read_dir(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let path = ev.coerce_to_path(&arg(a, 0), span)?;
    let entries = ev
        .io()
        .read_dir(&path)
        .map_err(|e| io_error("opening directory", &path, &e, span))?;
    let out = entries
        .into_iter()
        .map(|(name, kind)| {
            let k = match kind {
                FileKind::Regular => "regular",
                FileKind::Directory => "directory",
                FileKind::Symlink => "symlink",
                FileKind::Unknown => "unknown",
            };
            (Symbol::intern(&name), Value::string(k))
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(out)))
}

fn get_env(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &arg(a, 0), span)?;
    Ok(Value::string(
        ev.io().get_env(name.as_str()).unwrap_or_default(),
    ))
}

/// Nix's `baseNameOf` on text: after the last slash, ignoring one trailing slash.
pub(crate) fn base_name(path: &str) -> &str {
    if path.is_empty() {
        return "";
    }
    let b = path.as_bytes();
    let mut last = b.len() - 1;
    if b[last] == b'/' && last > 0 {
        last -= 1;
    }
    let head = path.get(..=last).unwrap_or(path);
    let start = match head.rfind('/') {
        Some(p) => p + 1,
        None => 0,
    };
    head.get(start..).unwrap_or("")
}

/// Nix's `dirOf` on text: before the last slash; "." without one, "/" for a top-level path.
pub(crate) fn dir_name(path: &str) -> &str {
    match path.rfind('/') {
        None => ".",
        Some(0) => "/",
        Some(p) => path.get(..p).unwrap_or(path),
    }
}

fn base_name_of(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = coerce_no_copy(ev, &arg(a, 0), span)?;
    let b = base_name(s.as_str());
    if b.len() == s.as_str().len() {
        return Ok(Value::String(s));
    }
    Ok(Value::String(NixString::new(b, s.context().clone())))
}

fn dir_of(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    let s = coerce_no_copy(ev, &v, span)?;
    let d = dir_name(s.as_str());
    if matches!(v, Value::Path(_)) {
        Ok(Value::Path(crate::value::PathStr::from(d)))
    } else {
        Ok(Value::String(NixString::new(d, s.context().clone())))
    }
}

/// Nix's `canonPath` without symlink resolution: collapse slashes, drop `.`, resolve `..`.
pub(crate) fn canon_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if let Some(p) = out.rfind('/') {
                    out.truncate(p);
                }
            }
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn to_path(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    let ctx = match &v {
        Value::String(s) => s.context().clone(),
        _ => crate::value::Context::empty(),
    };
    let p = ev.coerce_to_path(&v, span)?;
    Ok(Value::String(NixString::new(canon_path(&p), ctx)))
}

// ---------------------------------------------------------------------------------------------
// arithmetic

/// Nix's `add`/`sub`/`mul` force both operands and then need numbers (no string `+`).
fn numbers(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<(Value, Value)> {
    let x = ev.force(&arg(a, 0))?;
    let y = ev.force(&arg(a, 1))?;
    for v in [&x, &y] {
        if !matches!(v, Value::Int(_) | Value::Float(_)) {
            let expected = if matches!(x, Value::Float(_)) || matches!(y, Value::Float(_)) {
                "a float"
            } else {
                "an integer"
            };
            return Err(ev.type_error(expected, v, span));
        }
    }
    Ok((x, y))
}

fn add(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let (x, y) = numbers(ev, a, span)?;
    ev.arith(BinOp::Add, &x, &y, span)
}

fn sub(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let (x, y) = numbers(ev, a, span)?;
    ev.arith(BinOp::Sub, &x, &y, span)
}

fn mul(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let (x, y) = numbers(ev, a, span)?;
    ev.arith(BinOp::Mul, &x, &y, span)
}

fn div(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    // Nix checks the divisor first (as a float), then the dividend
    let x = ev.force(&arg(a, 0))?;
    let y = ev.force(&arg(a, 1))?;
    let d = ev.force_float(&y, span)?;
    if d == 0.0 {
        return Err(EvalError::new(
            ErrorKind::DivisionByZero,
            "division by zero",
            span,
        ));
    }
    let (x, y) = numbers(ev, &[x, y], span)?;
    ev.arith(BinOp::Div, &x, &y, span)
}

fn less_than(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let x = ev.force(&arg(a, 0))?;
    let y = ev.force(&arg(a, 1))?;
    Ok(Value::Bool(ev.less_than(&x, &y, span)?))
}

fn bit(ev: &mut Evaluator, a: &[Value], span: Span, op: fn(i64, i64) -> i64) -> EvalResult<Value> {
    let x = ev.force_int(&arg(a, 0), span)?;
    let y = ev.force_int(&arg(a, 1), span)?;
    Ok(Value::Int(op(x, y)))
}

fn round(ev: &mut Evaluator, a: &[Value], span: Span, f: fn(f64) -> f64) -> EvalResult<Value> {
    // like Nix, integers go through a double too (exact up to 2^53)
    let x = ev.force_float(&arg(a, 0), span)?;
    let r = f(x);
    // i64 covers [-2^63, 2^63); the float 2^63 is just outside
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&r) {
        return Err(EvalError::new(
            ErrorKind::Overflow,
            format!(
                "{} does not fit in an integer",
                crate::print::format_float_g(x)
            ),
            span,
        ));
    }
    Ok(Value::Int(r as i64))
}

#[cfg(test)]
mod tests {
    use super::super::strings::test_util::{check, check_err};

    #[test]
    fn paths_and_names() {
        check(&[
            (r#"builtins.baseNameOf "/a/b/""#, r#""b""#),
            (r#"builtins.baseNameOf "/""#, r#""""#),
            (r#"builtins.baseNameOf "//""#, r#""""#),
            (r#"builtins.baseNameOf "a""#, r#""a""#),
            ("builtins.baseNameOf /a/b", r#""b""#),
            ("builtins.baseNameOf { outPath = /foo/bar; }", r#""bar""#),
            (r#"builtins.dirOf "a/b/""#, r#""a/b""#),
            ("builtins.dirOf /a/b", "/a"),
            (r#"builtins.dirOf "/""#, r#""/""#),
            (r#"builtins.dirOf """#, r#"".""#),
            (r#"builtins.toPath "/a/../b//c/.""#, r#""/b/c""#),
        ]);
        check_err(&[(r#"builtins.toPath "a""#, "type-error")]);
    }

    #[test]
    fn files() {
        check(&[
            ("builtins.readFile /t/a.txt", r#""hello\n""#),
            (r#"builtins.readFile "/t/a.txt""#, r#""hello\n""#),
            ("builtins.pathExists /t/a.txt", "true"),
            ("builtins.pathExists /t/nope", "false"),
            // a symlink exists even when what it points to does not (lstat, as in Nix)
            ("builtins.pathExists /t/link", "true"),
            ("builtins.pathExists /t/nope/link", "false"),
            ("builtins.pathExists /t", "true"),
            (
                "builtins.readDir /t",
                r#"{ "a.txt" = "regular"; bin = "regular"; link = "symlink"; sub = "directory"; }"#,
            ),
            (r#"builtins.getEnv "FOO""#, r#""bar""#),
            (r#"builtins.getEnv "NOPE""#, r#""""#),
        ]);
        check_err(&[
            ("builtins.readFile /t/bin", "invalid-value"),
            ("builtins.readFile /t/dev", "io"),
            ("builtins.hashFile \"sha256\" /t/dev", "io"),
            ("import /t/dev", "io"),
            ("builtins.readFile /t/nope", "io"),
            ("builtins.readDir /t/nope", "io"),
        ]);
    }

    #[test]
    fn arithmetic() {
        check(&[
            ("builtins.add 1 2", "3"),
            ("builtins.add 1 2.5", "3.5"),
            ("builtins.sub 1 2", "-1"),
            ("builtins.mul 3 2.0", "6"),
            ("builtins.div 7 2", "3"),
            ("builtins.div 7.0 2", "3.5"),
            ("builtins.lessThan 1 2", "true"),
            (r#"builtins.lessThan "b" "a""#, "false"),
            ("builtins.bitAnd 12 10", "8"),
            ("builtins.bitOr 12 10", "14"),
            ("builtins.bitXor 12 10", "6"),
            ("builtins.floor 9007199254740993", "9007199254740992"),
            ("builtins.ceil 1.5", "2"),
            ("builtins.floor (-1.5)", "-2"),
            ("builtins.ceil 3", "3"),
        ]);
        check_err(&[
            (r#"builtins.add "a" "b""#, "type-error"),
            (r#"builtins.add 1.0 "b""#, "type-error"),
            ("builtins.add 9223372036854775807 1", "overflow"),
            (r#"builtins.div "a" 0"#, "division-by-zero"),
            ("builtins.div 1 0.0", "division-by-zero"),
            (r#"builtins.lessThan 1 "a""#, "incomparable"),
            ("builtins.floor 1.0e30", "overflow"),
        ]);
    }
}
