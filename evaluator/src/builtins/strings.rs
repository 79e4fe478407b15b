//! String builtins: `stringLength`, `substring`, `replaceStrings`, `concatStringsSep`, version
//! handling (`splitVersion`, `compareVersions`, `parseDrvName`), string context inspection
//! (`getContext`, `hasContext`, `unsafeDiscardStringContext`) and `placeholder`.
//!
//! Nix strings are byte strings and these builtins count and cut bytes, exactly as Nix 2.8 does
//! (`stringLength "é"` is 2). buildit strings are UTF-8, so a cut inside a multi-byte character
//! (which yields invalid UTF-8 in Nix) is repaired with U+FFFD replacement characters; whenever
//! Nix's result is valid UTF-8 ours is byte-for-byte the same.
//!
//! Context rules follow Nix: `substring`, `concatStringsSep` and `replaceStrings` keep the
//! context of their inputs (`replaceStrings` adds a replacement's context only when that
//! replacement is used); version functions and `placeholder` refuse strings with context.
//!
//! This module also holds helpers shared by the other builtin modules (argument access, Nix's
//! `forceStringNoCtx`, and the "no coercion, no store copy" string conversion Nix uses for
//! `baseNameOf`, `dirOf` and `__toString` results in `toJSON`).

use crate::error::{ErrorKind, EvalError};
use crate::eval::CoerceMode;
use crate::symbol::Symbol;
use crate::value::{Attrs, Context, ContextElem, EvalResult, List, NixString, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;
use std::borrow::Cow;
use std::collections::BTreeMap;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp {
            name: "stringLength",
            arity: 1,
            func: string_length,
            doc: "stringLength s: the length of s in bytes",
        },
        PrimOp {
            name: "substring",
            arity: 3,
            func: substring,
            doc: "substring start len s: the bytes of s from start (0-based) on, at most len of them (len < 0: to the end)",
        },
        PrimOp {
            name: "replaceStrings",
            arity: 3,
            func: replace_strings,
            doc: "replaceStrings from to s: replace in s every occurrence of from[i] by to[i], scanning left to right",
        },
        PrimOp {
            name: "concatStringsSep",
            arity: 2,
            func: concat_strings_sep,
            doc: "concatStringsSep sep list: the strings of list joined with sep",
        },
        PrimOp {
            name: "splitVersion",
            arity: 1,
            func: split_version,
            doc: "splitVersion s: the components of version string s (\"1.2pre3\" -> [\"1\" \"2\" \"pre\" \"3\"])",
        },
        PrimOp {
            name: "compareVersions",
            arity: 2,
            func: compare_versions,
            doc: "compareVersions a b: -1, 0 or 1 as version a is older than, equal to or newer than b",
        },
        PrimOp {
            name: "parseDrvName",
            arity: 1,
            func: parse_drv_name,
            doc: "parseDrvName s: { name; version; } split at the first dash not followed by a letter",
        },
        PrimOp {
            name: "getContext",
            arity: 1,
            func: get_context,
            doc: "getContext s: the store paths s depends on, as { path = { path = true; allOutputs = true; outputs = [...]; }; }",
        },
        PrimOp {
            name: "hasContext",
            arity: 1,
            func: has_context,
            doc: "hasContext s: whether s depends on store paths",
        },
        PrimOp {
            name: "unsafeDiscardStringContext",
            arity: 1,
            func: unsafe_discard_string_context,
            doc: "unsafeDiscardStringContext s: s without its store dependencies",
        },
        PrimOp {
            name: "placeholder",
            arity: 1,
            func: placeholder,
            doc: "placeholder output: the string that stands for the path of the derivation's output while building (buildit: \"/\" + nix-base32(blake3(\"buildit-output:\" + output)))",
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// shared helpers

/// Argument `i` of a primop call (the evaluator always passes `arity` arguments).
pub(crate) fn arg(a: &[Value], i: usize) -> Value {
    a.get(i).cloned().unwrap_or(Value::Null)
}

/// How a context element is written in Nix's serialisation (`/p`, `=/p.drv`, `!out!/p.drv`).
pub(crate) fn context_elem_text(e: &ContextElem) -> String {
    match e {
        ContextElem::Opaque(p) => p.to_string(),
        ContextElem::AllOutputs(p) => format!("={p}"),
        ContextElem::Output { drv, output } => format!("!{output}!{drv}"),
    }
}

/// Nix's `forceStringNoCtx`: a string that must not refer to the store.
pub(crate) fn force_string_no_ctx(
    ev: &mut Evaluator,
    v: &Value,
    span: Span,
) -> EvalResult<NixString> {
    let s = ev.force_string(v, span)?;
    if let Some(e) = s.context().iter().next() {
        return Err(EvalError::new(
            ErrorKind::Invalid,
            format!(
                "the string '{}' is not allowed to refer to a store path (such as '{}')",
                s.as_str(),
                context_elem_text(e)
            ),
            span,
        )
        .with_help(
            "use `builtins.unsafeDiscardStringContext` if the dependency really is not needed",
        ));
    }
    Ok(s)
}

/// Nix's `coerceToString` with neither extra coercions nor copying paths to the store: strings
/// (with their context), paths as their text, sets through `__toString` or `outPath`.
pub(crate) fn coerce_no_copy(ev: &mut Evaluator, v: &Value, span: Span) -> EvalResult<NixString> {
    let mut cur = v.clone();
    // `__toString`/`outPath` chains are followed iteratively; a cycle is cut off cleanly.
    for _ in 0..100_000 {
        let f = ev.force(&cur)?;
        match &f {
            Value::String(s) => return Ok(s.clone()),
            Value::Path(p) => return Ok(NixString::plain(&**p)),
            Value::Attrs(a) => {
                if let Some(ts) = a.get(ev.sym.to_string) {
                    let ts = ts.clone();
                    cur = ev.apply(ts, f.clone(), span)?;
                } else if let Some(o) = a.get(ev.sym.out_path) {
                    cur = o.clone();
                } else {
                    return Err(cannot_coerce(&f, span));
                }
            }
            other => return Err(cannot_coerce(other, span)),
        }
    }
    Err(EvalError::new(
        ErrorKind::InfiniteRecursion,
        "`__toString`/`outPath` keep producing sets while converting a value to a string",
        span,
    ))
}

fn cannot_coerce(v: &Value, span: Span) -> EvalError {
    EvalError::new(
        ErrorKind::TypeError,
        format!("cannot coerce {} to a string", v.describe()),
        span,
    )
}

/// A string from bytes that are valid UTF-8 whenever Nix's result would be; invalid sequences
/// (a cut inside a character) become U+FFFD.
pub(crate) fn string_from_bytes(b: Vec<u8>) -> String {
    match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn str_from_slice(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

// ---------------------------------------------------------------------------------------------
// builtins

fn string_length(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = ev.coerce_to_string(&arg(a, 0), span, CoerceMode::Interpolation)?;
    Ok(Value::Int(s.as_str().len() as i64))
}

fn substring(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    // Nix 2.8 stores both numbers in a C `int` (truncating to 32 bits) and hands a negative
    // length to `std::string::substr` as a huge unsigned count ("to the end").
    let start = ev.force_int(&arg(a, 0), span)? as i32;
    let len = ev.force_int(&arg(a, 1), span)? as i32;
    let s = ev.coerce_to_string(&arg(a, 2), span, CoerceMode::Interpolation)?;
    if start < 0 {
        return Err(EvalError::new(
            ErrorKind::Invalid,
            "negative start position in 'substring'",
            span,
        ));
    }
    let bytes = s.as_str().as_bytes();
    let start = start as usize;
    if start >= bytes.len() {
        return Ok(Value::String(NixString::new("", s.context().clone())));
    }
    let end = if len < 0 {
        bytes.len()
    } else {
        start.saturating_add(len as usize).min(bytes.len())
    };
    if start == 0 && end == bytes.len() {
        return Ok(Value::String(s));
    }
    let text = match s.as_str().get(start..end) {
        Some(t) => t.to_string(),
        None => str_from_slice(&bytes[start..end]).into_owned(),
    };
    Ok(Value::String(NixString::new(text, s.context().clone())))
}

/// The longest string `replaceStrings` builds (its output can be quadratic in its input).
const MAX_RESULT: usize = 1 << 30;

fn replace_strings(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let from_list = ev.force_list(&arg(a, 0), span)?;
    let to_list = ev.force_list(&arg(a, 1), span)?;
    if from_list.len() != to_list.len() {
        return Err(EvalError::new(
            ErrorKind::Invalid,
            "'from' and 'to' arguments to 'replaceStrings' have different lengths",
            span,
        ));
    }
    let mut from = Vec::with_capacity(from_list.len());
    for x in from_list.iter() {
        from.push(ev.force_string(x, span)?);
    }
    let mut to = Vec::with_capacity(to_list.len());
    for x in to_list.iter() {
        to.push(ev.force_string(x, span)?);
    }
    let s = ev.force_string(&arg(a, 2), span)?;
    if from.is_empty() {
        return Ok(Value::String(s));
    }
    let sb = s.as_str().as_bytes();
    let n = sb.len();
    let mut ctx = s.context().clone();
    let mut used = vec![false; to.len()];
    let has_empty = from.iter().any(|f| f.as_str().is_empty());
    // bytes that can start a (non-empty) pattern: everything else is copied without trying
    let mut first = [false; 256];
    for f in &from {
        if let Some(b) = f.as_str().as_bytes().first() {
            first[*b as usize] = true;
        }
    }
    let mut res: Vec<u8> = Vec::with_capacity(n + n / 8);
    let mut p = 0usize;
    // Nix loops one past the last byte so that an empty pattern also matches at the end.
    while p <= n {
        if !has_empty {
            // fast path: skip bytes no pattern starts with
            let run_start = p;
            while p < n && !first[sb[p] as usize] {
                p += 1;
            }
            res.extend_from_slice(&sb[run_start..p]);
            if p >= n {
                break;
            }
        }
        let rest = &sb[p..];
        let mut found = false;
        for (i, f) in from.iter().enumerate() {
            let fb = f.as_str().as_bytes();
            if rest.starts_with(fb) {
                found = true;
                if res.len() > MAX_RESULT {
                    return Err(EvalError::new(
                        ErrorKind::Invalid,
                        format!("replaceStrings: the result would exceed {MAX_RESULT} bytes"),
                        span,
                    ));
                }
                res.extend_from_slice(to[i].as_str().as_bytes());
                if !used[i] {
                    used[i] = true;
                    ctx.union(to[i].context());
                }
                if fb.is_empty() {
                    if p < n {
                        res.push(sb[p]);
                    }
                    p += 1;
                } else {
                    p += fb.len();
                }
                break;
            }
        }
        if !found {
            if p < n {
                res.push(sb[p]);
            }
            p += 1;
        }
    }
    Ok(Value::String(NixString::new(string_from_bytes(res), ctx)))
}

fn concat_strings_sep(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let sep = ev.force_string(&arg(a, 0), span)?;
    let list = ev.force_list(&arg(a, 1), span)?;
    let mut ctx = sep.context().clone();
    let mut out = String::with_capacity((list.len() + 32) * sep.as_str().len().max(1));
    for (i, x) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(sep.as_str());
        }
        let s = ev.coerce_to_string(x, span, CoerceMode::Interpolation)?;
        out.push_str(s.as_str());
        ctx.union(s.context());
    }
    Ok(Value::String(NixString::new(out, ctx)))
}

// ---------------------------------------------------------------------------------------------
// versions (Nix's names.cc)

/// The next version component starting at `*p` (dots and dashes separate components; a run of
/// digits or a run of other characters is one component). Empty at the end.
fn next_component<'a>(s: &'a [u8], p: &mut usize) -> &'a [u8] {
    while *p < s.len() && (s[*p] == b'.' || s[*p] == b'-') {
        *p += 1;
    }
    let start = *p;
    if *p >= s.len() {
        return &s[start..start];
    }
    if s[*p].is_ascii_digit() {
        while *p < s.len() && s[*p].is_ascii_digit() {
            *p += 1;
        }
    } else {
        while *p < s.len() && !s[*p].is_ascii_digit() && s[*p] != b'.' && s[*p] != b'-' {
            *p += 1;
        }
    }
    &s[start..*p]
}

/// Nix's `string2Int<int>`: only components that are numbers fitting a C `int` count as numbers.
fn component_int(c: &[u8]) -> Option<i32> {
    if c.is_empty() || !c.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(c).ok()?.parse::<i32>().ok()
}

fn components_lt(c1: &[u8], c2: &[u8]) -> bool {
    let n1 = component_int(c1);
    let n2 = component_int(c2);
    match (n1, n2) {
        (Some(a), Some(b)) => a < b,
        _ if c1.is_empty() && n2.is_some() => true,
        _ if c1 == b"pre" && c2 != b"pre" => true,
        _ if c2 == b"pre" => false,
        // `2.3a` < `2.3.1`
        (_, Some(_)) => true,
        (Some(_), _) => false,
        _ => c1 < c2,
    }
}

pub(crate) fn compare_version_strings(v1: &str, v2: &str) -> i64 {
    let (s1, s2) = (v1.as_bytes(), v2.as_bytes());
    let (mut p1, mut p2) = (0usize, 0usize);
    while p1 < s1.len() || p2 < s2.len() {
        let c1 = next_component(s1, &mut p1);
        let c2 = next_component(s2, &mut p2);
        if components_lt(c1, c2) {
            return -1;
        } else if components_lt(c2, c1) {
            return 1;
        }
    }
    0
}

fn split_version(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let s = v.as_str().as_bytes();
    let mut p = 0usize;
    let mut out = Vec::new();
    while p < s.len() {
        let c = next_component(s, &mut p);
        if c.is_empty() {
            break;
        }
        out.push(Value::string(str_from_slice(c).into_owned()));
    }
    Ok(Value::list(out))
}

fn compare_versions(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v1 = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let v2 = force_string_no_ctx(ev, &arg(a, 1), span)?;
    Ok(Value::Int(compare_version_strings(
        v1.as_str(),
        v2.as_str(),
    )))
}

/// Nix's `DrvName`: the name is everything before the first dash that is followed by a
/// non-letter; the version is the rest.
pub(crate) fn split_drv_name(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
            // both cuts are at ASCII bytes, hence at character boundaries
            return (s.get(..i).unwrap_or(s), s.get(i + 1..).unwrap_or(""));
        }
    }
    (s, "")
}

fn parse_drv_name(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let (name, version) = split_drv_name(s.as_str());
    Ok(Value::attrs(Attrs::from_unsorted(vec![
        (ev.sym.name, Value::string(name)),
        (Symbol::intern("version"), Value::string(version)),
    ])))
}

// ---------------------------------------------------------------------------------------------
// context

fn get_context(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = ev.force_string(&arg(a, 0), span)?;
    #[derive(Default)]
    struct Info {
        path: bool,
        all_outputs: bool,
        outputs: Vec<Value>,
    }
    let mut infos: BTreeMap<&str, Info> = BTreeMap::new();
    for e in s.context().iter() {
        match e {
            ContextElem::Opaque(p) => infos.entry(p).or_default().path = true,
            ContextElem::AllOutputs(d) => infos.entry(d).or_default().all_outputs = true,
            ContextElem::Output { drv, output } => infos
                .entry(drv)
                .or_default()
                .outputs
                .push(Value::string(&**output)),
        }
    }
    let path_sym = ev.sym.path;
    let all_sym = Symbol::intern("allOutputs");
    let outputs_sym = ev.sym.outputs;
    let mut entries = Vec::with_capacity(infos.len());
    for (p, info) in infos {
        let mut fields = Vec::with_capacity(3);
        if info.path {
            fields.push((path_sym, Value::Bool(true)));
        }
        if info.all_outputs {
            fields.push((all_sym, Value::Bool(true)));
        }
        if !info.outputs.is_empty() {
            fields.push((outputs_sym, Value::List(List::new(info.outputs))));
        }
        entries.push((
            Symbol::intern(p),
            Value::attrs(Attrs::from_unsorted(fields)),
        ));
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn has_context(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = ev.force_string(&arg(a, 0), span)?;
    Ok(Value::Bool(s.has_context()))
}

fn unsafe_discard_string_context(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = ev.coerce_to_string(&arg(a, 0), span, CoerceMode::Interpolation)?;
    if !s.has_context() {
        return Ok(Value::String(s));
    }
    Ok(Value::String(NixString::new(s.as_str(), Context::empty())))
}

/// buildit's placeholder for output `name`: `"/" + nix-base32(blake3("buildit-output:" + name))`
/// (52 characters). Nix uses a sha256 of `"nix-output:" + name` instead; the string only has to
/// be unique and stable, and is replaced by the real output path when building.
pub(crate) fn placeholder_for(name: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"buildit-output:");
    h.update(name.as_bytes());
    let digest = h.finalize();
    let enc = super::hash::nix_base32(digest.as_bytes());
    let mut out = String::with_capacity(53);
    out.push('/');
    out.push_str(enc.get(..52).unwrap_or(&enc));
    out
}

fn placeholder(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &arg(a, 0), span)?;
    Ok(Value::string(placeholder_for(name.as_str())))
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::io::{EvalIo, FileKind};
    use crate::Evaluator;
    use std::cell::RefCell;
    use std::io;
    use std::rc::Rc;

    /// An `EvalIo` whose "store" just names paths (to exercise string context), and a fixed
    /// file system: `/t/a.txt` ("hello\n"), `/t/bin` (bytes with a NUL), directory `/t`.
    pub(crate) struct FakeIo(Rc<RefCell<Vec<String>>>);

    impl EvalIo for FakeIo {
        fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
            match path {
                "/t/a.txt" => Ok(b"hello\n".to_vec()),
                "/t/bin" => Ok(b"a\0b".to_vec()),
                "/t/dev" => panic!("a device is never read"),
                _ => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "No such file or directory",
                )),
            }
        }
        fn file_kind(&self, path: &str) -> Option<FileKind> {
            match path {
                "/t/a.txt" | "/t/bin" => Some(FileKind::Regular),
                // a device: reading it would never end
                "/t/dev" => Some(FileKind::Unknown),
                "/t" => Some(FileKind::Directory),
                _ => None,
            }
        }
        fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileKind)>> {
            if path == "/t" {
                Ok(vec![
                    ("a.txt".into(), FileKind::Regular),
                    ("bin".into(), FileKind::Regular),
                    ("link".into(), FileKind::Symlink),
                    ("sub".into(), FileKind::Directory),
                ])
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "No such file or directory",
                ))
            }
        }
        fn home_dir(&self) -> Option<String> {
            None
        }
        fn get_env(&self, name: &str) -> Option<String> {
            (name == "FOO").then(|| "bar".to_string())
        }
        fn trace(&self, message: &str) {
            self.0.borrow_mut().push(message.to_string());
        }
        fn add_to_store(&self, name: &str, _path: &str) -> Result<String, String> {
            Ok(format!(
                "/bld/store/00000000000000000000000000000000-{name}"
            ))
        }
    }

    pub(crate) fn evaluator() -> Evaluator {
        evaluator_with_traces().0
    }

    /// An evaluator and the messages `builtins.trace` gave it.
    pub(crate) fn evaluator_with_traces() -> (Evaluator, Rc<RefCell<Vec<String>>>) {
        let traces = Rc::new(RefCell::new(Vec::new()));
        (Evaluator::new(Box::new(FakeIo(traces.clone()))), traces)
    }

    /// Evaluate and print deeply (Nix's format), or `error: <code>: <message>`.
    pub(crate) fn run(src: &str) -> String {
        let mut ev = evaluator();
        match ev
            .eval_str(src)
            .and_then(|v| crate::print::print_value(&mut ev, &v))
        {
            Ok(s) => s,
            Err(e) => format!("error: {}: {}", e.kind().code(), e.message()),
        }
    }

    /// Assert that each `(expression, expected output)` pair evaluates as expected.
    pub(crate) fn check(cases: &[(&str, &str)]) {
        for (src, want) in cases {
            assert_eq!(&run(src), want, "evaluating {src}");
        }
    }

    /// Assert that evaluation fails with this error kind code suffix (e.g. "type-error").
    pub(crate) fn check_err(cases: &[(&str, &str)]) {
        for (src, code) in cases {
            let got = run(src);
            assert!(
                got.starts_with(&format!("error: buildit::eval::{code}:")),
                "evaluating {src}: expected {code}, got {got}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{check, check_err, evaluator};
    use super::*;

    #[test]
    fn lengths_and_substrings() {
        check(&[
            (r#"builtins.stringLength "é""#, "2"),
            (r#"builtins.substring 1 2 "hello""#, r#""el""#),
            (r#"builtins.substring 1 (-1) "hello""#, r#""ello""#),
            (r#"builtins.substring 10 2 "hello""#, r#""""#),
            (r#"builtins.substring 4294967297 2 "hello""#, r#""el""#),
            (r#"builtins.substring 1 4294967295 "hello""#, r#""ello""#),
            (r#"builtins.substring 0 1 "é""#, "\"\u{fffd}\""),
            (r#"builtins.substring 0 2 "éa""#, r#""é""#),
        ]);
        check_err(&[
            (r#"builtins.substring (-1) 2 "hello""#, "invalid-value"),
            ("builtins.stringLength 1", "type-error"),
        ]);
    }

    #[test]
    fn replace_strings_nix_semantics() {
        check(&[
            (
                r#"builtins.replaceStrings [""] ["-"] "abc""#,
                r#""-a-b-c-""#,
            ),
            (
                r#"builtins.replaceStrings ["" "a"] ["-" "X"] "abc""#,
                r#""-a-b-c-""#,
            ),
            (
                r#"builtins.replaceStrings ["a" ""] ["X" "-"] "abc""#,
                r#""X-b-c-""#,
            ),
            (
                r#"builtins.replaceStrings ["ab" "a"] ["1" "2"] "aab""#,
                r#""21""#,
            ),
            (r#"builtins.replaceStrings [] [] "x""#, r#""x""#),
            (
                r#"builtins.replaceStrings ["oo" "a"] ["0" "A"] "foo bar baz""#,
                r#""f0 bAr bAz""#,
            ),
            (
                r#"builtins.replaceStrings ["é"] ["e"] "café é""#,
                r#""cafe e""#,
            ),
        ]);
        check_err(&[
            (r#"builtins.replaceStrings ["a"] [] "x""#, "invalid-value"),
            (r#"builtins.replaceStrings [1] ["a"] "x""#, "type-error"),
        ]);
    }

    #[test]
    fn versions() {
        check(&[
            (
                r#"builtins.splitVersion "1.2.3a-pre5..x""#,
                r#"[ "1" "2" "3" "a" "pre" "5" "x" ]"#,
            ),
            (r#"builtins.splitVersion """#, "[ ]"),
            (r#"builtins.compareVersions "1.2.3" "1.2.10""#, "-1"),
            (r#"builtins.compareVersions "2.3a" "2.3.1""#, "-1"),
            (r#"builtins.compareVersions "1.0pre1" "1.0""#, "-1"),
            (r#"builtins.compareVersions "1.99999999999" "1.100""#, "-1"),
            (r#"builtins.compareVersions "1.0" "1.0""#, "0"),
            (r#"builtins.compareVersions "1.0.0" "1.0""#, "1"),
            (
                r#"builtins.parseDrvName "nix-0.12pre12876""#,
                r#"{ name = "nix"; version = "0.12pre12876"; }"#,
            ),
            (
                r#"builtins.parseDrvName "foo-bar-baz""#,
                r#"{ name = "foo-bar-baz"; version = ""; }"#,
            ),
            (
                r#"builtins.parseDrvName "a-1-b-2""#,
                r#"{ name = "a"; version = "1-b-2"; }"#,
            ),
        ]);
    }

    #[test]
    fn concat_strings_sep() {
        check(&[
            (
                r#"builtins.concatStringsSep ", " ["a" "b" "c"]"#,
                r#""a, b, c""#,
            ),
            (r#"builtins.concatStringsSep "," []"#, r#""""#),
        ]);
        check_err(&[(r#"builtins.concatStringsSep "," ["a" 1]"#, "type-error")]);
    }

    #[test]
    fn context_is_tracked() {
        let p = "/bld/store/00000000000000000000000000000000-a.txt";
        check(&[
            (r#"builtins.getContext "abc""#, "{ }"),
            (r#"builtins.hasContext "${/t/a.txt}""#, "true"),
            (
                r#"builtins.getContext "${/t/a.txt}""#,
                &format!(r#"{{ "{p}" = {{ path = true; }}; }}"#),
            ),
            (
                r#"builtins.hasContext (builtins.substring 0 0 "${/t/a.txt}")"#,
                "true",
            ),
            (
                r#"builtins.hasContext (builtins.unsafeDiscardStringContext "${/t/a.txt}")"#,
                "false",
            ),
            (
                r#"builtins.hasContext (builtins.concatStringsSep "${/t/a.txt}" [])"#,
                "true",
            ),
            (
                r#"builtins.hasContext (builtins.replaceStrings ["x"] ["${/t/a.txt}"] "abc")"#,
                "false",
            ),
            (
                r#"builtins.hasContext (builtins.replaceStrings ["b"] ["${/t/a.txt}"] "abc")"#,
                "true",
            ),
            (
                r#"builtins.hasContext (builtins.toJSON [ /t/a.txt ])"#,
                "true",
            ),
        ]);
        check_err(&[
            (
                r#"builtins.compareVersions "${/t/a.txt}" "1""#,
                "invalid-value",
            ),
            (r#"builtins.getContext { outPath = "x"; }"#, "type-error"),
            ("builtins.hasContext 1", "type-error"),
        ]);
    }

    #[test]
    fn derivation_contexts_are_grouped_by_path() {
        let mut ev = evaluator();
        let drv: std::rc::Rc<str> = std::rc::Rc::from("/bld/store/x.drv");
        let mut ctx = Context::empty();
        ctx.insert(ContextElem::Output {
            drv: drv.clone(),
            output: "out".into(),
        });
        ctx.insert(ContextElem::Output {
            drv: drv.clone(),
            output: "dev".into(),
        });
        ctx.insert(ContextElem::AllOutputs(drv));
        ctx.insert(ContextElem::Opaque("/bld/store/y".into()));
        let s = Value::String(NixString::new("x", ctx));
        let v = get_context(&mut ev, &[s], Span::default()).expect("getContext");
        assert_eq!(
            crate::print::print_value(&mut ev, &v).expect("print"),
            r#"{ "/bld/store/x.drv" = { allOutputs = true; outputs = [ "dev" "out" ]; }; "/bld/store/y" = { path = true; }; }"#
        );
    }

    #[test]
    fn placeholder_is_stable() {
        let p = placeholder_for("out");
        assert_eq!(p.len(), 53);
        assert!(p.starts_with('/'));
        assert_ne!(p, placeholder_for("dev"));
        check(&[("builtins.stringLength (placeholder \"out\")", "53")]);
    }
}
