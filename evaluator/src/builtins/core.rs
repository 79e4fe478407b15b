//! Core builtins tied to the evaluator itself: errors (`throw`, `abort`, `tryEval`), strictness
//! (`seq`, `deepSeq`), type tests, `toString`, `trace`, `import`, `functionArgs`, and the
//! constants (`currentSystem`, `storeDir`, ...).

use crate::error::{ErrorKind, EvalError};
use crate::eval::CoerceMode;
use crate::ir;
use crate::value::{Attrs, EvalResult, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "throw", arity: 1, func: throw, doc: "throw s: raise an error with message s (catchable by tryEval)" },
        PrimOp { name: "abort", arity: 1, func: abort, doc: "abort s: stop evaluation with message s (not catchable)" },
        PrimOp { name: "tryEval", arity: 1, func: try_eval, doc: "tryEval e: { success = true; value = e; } or { success = false; value = false; } when e throws or fails an assertion" },
        PrimOp { name: "seq", arity: 2, func: seq, doc: "seq e1 e2: evaluate e1 to weak head normal form, then return e2" },
        PrimOp { name: "deepSeq", arity: 2, func: deep_seq, doc: "deepSeq e1 e2: evaluate e1 completely, then return e2" },
        PrimOp { name: "typeOf", arity: 1, func: type_of, doc: "typeOf e: \"int\", \"bool\", \"string\", \"path\", \"null\", \"set\", \"list\", \"lambda\" or \"float\"" },
        PrimOp { name: "isInt", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::Int(_))), doc: "isInt e: whether e is an integer" },
        PrimOp { name: "isFloat", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::Float(_))), doc: "isFloat e: whether e is a float" },
        PrimOp { name: "isBool", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::Bool(_))), doc: "isBool e: whether e is a Boolean" },
        PrimOp { name: "isString", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::String(_))), doc: "isString e: whether e is a string" },
        PrimOp { name: "isPath", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::Path(_))), doc: "isPath e: whether e is a path" },
        PrimOp { name: "isNull", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::Null)), doc: "isNull e: whether e is null" },
        PrimOp { name: "isList", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::List(_))), doc: "isList e: whether e is a list" },
        PrimOp { name: "isAttrs", arity: 1, func: |ev, a, _| is(ev, a, |v| matches!(v, Value::Attrs(_))), doc: "isAttrs e: whether e is a set" },
        PrimOp { name: "isFunction", arity: 1, func: |ev, a, _| is(ev, a, Value::is_function), doc: "isFunction e: whether e is a function" },
        PrimOp { name: "toString", arity: 1, func: to_string, doc: "toString e: convert a string, path, number, Boolean, null, list or set with __toString/outPath to a string" },
        PrimOp { name: "trace", arity: 2, func: trace, doc: "trace e1 e2: print e1 to standard error, return e2" },
        PrimOp { name: "import", arity: 1, func: import, doc: "import path: evaluate the file at path (a directory's default.nix/default.bld), cached per path" },
        PrimOp { name: "functionArgs", arity: 1, func: function_args, doc: "functionArgs f: the pattern fields of f mapped to whether they have a default" },
        PrimOp { name: "derivation", arity: 1, func: crate::builtins::store::derivation, doc: "derivation attrs: describe a build; the result has drvPath, outPath, type = \"derivation\" and one attribute per output" },
    ]
}

pub(crate) fn constants(_ev: &Evaluator) -> Vec<(&'static str, Value)> {
    vec![
        ("currentSystem", Value::string("x86_64-linux")),
        ("storeDir", Value::string("/bld/store")),
        ("langVersion", Value::Int(6)),
        ("nixVersion", Value::string("2.8.0")),
    ]
}

fn arg(a: &[Value], i: usize) -> Value {
    a.get(i).cloned().unwrap_or(Value::Null)
}

fn throw(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let msg = ev.coerce_to_string(&arg(a, 0), span, CoerceMode::Interpolation)?;
    Err(EvalError::new(
        ErrorKind::Throw,
        msg.as_str().to_string(),
        span,
    ))
}

fn abort(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let msg = ev.coerce_to_string(&arg(a, 0), span, CoerceMode::Interpolation)?;
    Err(EvalError::new(
        ErrorKind::Abort,
        format!(
            "evaluation aborted with the following error message: '{}'",
            msg.as_str()
        ),
        span,
    ))
}

fn try_eval(ev: &mut Evaluator, a: &[Value], _span: Span) -> EvalResult<Value> {
    let (ok, v) = match ev.force(&arg(a, 0)) {
        Ok(v) => (true, v),
        Err(e) if e.kind().catchable() => (false, Value::Bool(false)),
        Err(e) => return Err(e),
    };
    Ok(Value::attrs(Attrs::from_unsorted(vec![
        (ev.sym.success, Value::Bool(ok)),
        (ev.sym.value, v),
    ])))
}

fn seq(ev: &mut Evaluator, a: &[Value], _span: Span) -> EvalResult<Value> {
    ev.force(&arg(a, 0))?;
    ev.force(&arg(a, 1))
}

fn deep_seq(ev: &mut Evaluator, a: &[Value], _span: Span) -> EvalResult<Value> {
    ev.force_deep(&arg(a, 0))?;
    ev.force(&arg(a, 1))
}

fn type_of(ev: &mut Evaluator, a: &[Value], _span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    Ok(Value::string(v.type_name()))
}

fn is(ev: &mut Evaluator, a: &[Value], p: impl Fn(&Value) -> bool) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    Ok(Value::Bool(p(&v)))
}

fn to_string(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = ev.coerce_to_string(&arg(a, 0), span, CoerceMode::ToString)?;
    Ok(Value::String(s))
}

fn trace(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    let msg = match &v {
        Value::String(s) => s.as_str().to_string(),
        other => crate::print::print_value(ev, other)?,
    };
    let _ = span;
    ev.io().trace(&msg);
    ev.force(&arg(a, 1))
}

fn import(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let p = ev.coerce_to_path(&arg(a, 0), span)?;
    ev.import(&p, span)
}

fn function_args(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force(&arg(a, 0))?;
    match &f {
        Value::Lambda(c) => match &c.lambda.param {
            ir::Param::Ident => Ok(Value::attrs(Attrs::new())),
            ir::Param::Pattern { fields, .. } => Ok(Value::attrs(Attrs::from_unsorted(
                fields
                    .iter()
                    .map(|f| (f.name, Value::Bool(f.default.is_some())))
                    .collect(),
            ))),
        },
        Value::PrimOp(_) | Value::PrimOpApp(_) => Ok(Value::attrs(Attrs::new())),
        other => Err(ev.type_error("a function", other, span)),
    }
}
