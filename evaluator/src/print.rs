//! Printing values in Nix's format (what `nix-instantiate --eval --strict` prints), used by
//! `buildit eval`, the REPL and the test corpus. Printing forces deeply. Shared sets and lists
//! print once and then as `«repeated»`, as Nix does, which also makes cyclic values finite.

use crate::value::{EvalResult, Value};
use crate::Evaluator;
use rustc_hash::FxHashSet;
use std::fmt::Write;

/// Print `v` deeply (forcing everything) in Nix's syntax.
pub fn print_value(ev: &mut Evaluator, v: &Value) -> EvalResult<String> {
    let mut out = String::new();
    let mut seen = FxHashSet::default();
    print_rec(ev, v, &mut out, &mut seen)?;
    Ok(out)
}

/// Print without forcing: unevaluated parts show as `«thunk»` (REPL `:p` forces, plain REPL
/// output uses this on the top-level WHNF).
pub fn print_shallow(v: &Value) -> String {
    let mut out = String::new();
    shallow(v, &mut out, 0);
    out
}

fn shallow(v: &Value, out: &mut String, depth: usize) {
    match v {
        Value::Thunk(t) => match t.value() {
            Some(v) => shallow(&v, out, depth),
            None => out.push_str("«thunk»"),
        },
        Value::List(l) if depth < 2 && !l.is_empty() => {
            out.push_str("[ ");
            for x in l.iter() {
                shallow(x, out, depth + 1);
                out.push(' ');
            }
            out.push(']');
        }
        Value::Attrs(a) if depth < 2 && !a.is_empty() => {
            out.push_str("{ ");
            for (k, x) in a.iter_sorted() {
                out.push_str(&attr_name(k.as_str()));
                out.push_str(" = ");
                shallow(x, out, depth + 1);
                out.push_str("; ");
            }
            out.push('}');
        }
        Value::List(l) if !l.is_empty() => out.push_str("[ … ]"),
        Value::Attrs(a) if !a.is_empty() => out.push_str("{ … }"),
        other => scalar(other, out),
    }
}

fn print_rec(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    seen: &mut FxHashSet<usize>,
) -> EvalResult<()> {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
        let v = ev.force(v)?;
        match &v {
            Value::List(l) => {
                if l.is_empty() {
                    out.push_str("[ ]");
                    return Ok(());
                }
                if !seen.insert(l.id()) {
                    out.push_str("«repeated»");
                    return Ok(());
                }
                out.push_str("[ ");
                for x in l.iter() {
                    print_rec(ev, x, out, seen)?;
                    out.push(' ');
                }
                out.push(']');
            }
            Value::Attrs(a) => {
                if a.is_empty() {
                    out.push_str("{ }");
                    return Ok(());
                }
                if !seen.insert(std::rc::Rc::as_ptr(a) as *const u8 as usize) {
                    out.push_str("«repeated»");
                    return Ok(());
                }
                out.push_str("{ ");
                for (k, x) in a.iter_sorted() {
                    out.push_str(&attr_name(k.as_str()));
                    out.push_str(" = ");
                    print_rec(ev, x, out, seen)?;
                    out.push_str("; ");
                }
                out.push('}');
            }
            other => scalar(other, out),
        }
        Ok(())
    })
}

fn scalar(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&format_float_g(*f)),
        Value::String(s) => out.push_str(&quote_string(s.as_str())),
        Value::Path(p) => out.push_str(p),
        Value::Lambda(_) => out.push_str("<LAMBDA>"),
        Value::PrimOp(_) => out.push_str("<PRIMOP>"),
        Value::PrimOpApp(_) => out.push_str("<PRIMOP-APP>"),
        Value::Thunk(_) => out.push_str("«thunk»"),
        Value::List(_) => out.push_str("[ … ]"),
        Value::Attrs(_) => out.push_str("{ … }"),
    }
}

/// An attribute name as Nix prints it: bare when it is a plain identifier, quoted otherwise.
pub fn attr_name(s: &str) -> String {
    if is_var_name(s) {
        s.to_string()
    } else {
        quote_string(s)
    }
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(c) = chars.next() else { return false };
    if c.is_ascii_digit() || c == '-' || c == '\'' || s == "if" {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '\'')
}

/// A string literal as Nix prints it (the `.bld` literal denoting `s`).
pub use buildit_lang::text::quote as quote_string;

/// C++ ostream's default float output (`%g` with precision 6): `1.5`, `3`, `1e+15`,
/// `1.23457e+08`, `inf`, `nan`.
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    const P: i32 = 6;
    // exponent after rounding to P significant digits
    let sci = format!("{:.*e}", (P - 1) as usize, f);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..P).contains(&exp) {
        let mant = trim_zeros(mant);
        format!(
            "{}e{}{:02}",
            mant,
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        let decimals = (P - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, f)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_ostream() {
        for (f, s) in [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (3.0, "3"),
            (123456789.0, "1.23457e+08"),
            (1.0e-7, "1e-07"),
            (1.0 / 3.0, "0.333333"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1.0e15, "1e+15"),
            (123456.7, "123457"),
            (0.000123, "0.000123"),
        ] {
            assert_eq!(format_float_g(f), s, "{f}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(attr_name("a-b"), "a-b");
        assert_eq!(attr_name("if"), "\"if\"");
        assert_eq!(attr_name("1a"), "\"1a\"");
        assert_eq!(attr_name(""), "\"\"");
        assert_eq!(attr_name("é"), "\"é\"");
    }
}
