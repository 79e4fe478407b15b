//! Attribute-set builtins: `attrNames`, `attrValues` (both in name order, as Nix sorts them),
//! `hasAttr`, `getAttr`, `removeAttrs`, `intersectAttrs`, `mapAttrs`, `catAttrs` and
//! `zipAttrsWith`. Laziness follows Nix 2.8: values are never forced by `attrValues`,
//! `intersectAttrs`, `catAttrs` or `removeAttrs`; `mapAttrs` and `zipAttrsWith` build thunks
//! (`f name value`) without calling `f`.

use super::strings::{arg, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::symbol::Symbol;
use crate::value::{Attrs, EvalResult, Pending, PrimOp, Thunk, Value};
use crate::Evaluator;
use buildit_lang::Span;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "attrNames", arity: 1, func: attr_names, doc: "attrNames set: the names of the attributes of set, sorted" },
        PrimOp { name: "attrValues", arity: 1, func: attr_values, doc: "attrValues set: the values of set, in the order of their names" },
        PrimOp { name: "hasAttr", arity: 2, func: has_attr, doc: "hasAttr name set: whether set has an attribute name (like set ? name)" },
        PrimOp { name: "getAttr", arity: 2, func: get_attr, doc: "getAttr name set: the attribute name of set (like set.${name})" },
        PrimOp { name: "removeAttrs", arity: 2, func: remove_attrs, doc: "removeAttrs set names: set without the attributes listed in names" },
        PrimOp { name: "intersectAttrs", arity: 2, func: intersect_attrs, doc: "intersectAttrs e1 e2: the attributes of e2 whose names are also in e1" },
        PrimOp { name: "mapAttrs", arity: 2, func: map_attrs, doc: "mapAttrs f set: set with each value v of attribute n replaced by f n v (lazily)" },
        PrimOp { name: "catAttrs", arity: 2, func: cat_attrs, doc: "catAttrs name list: the values of attribute name of the sets in list that have it" },
        PrimOp { name: "zipAttrsWith", arity: 2, func: zip_attrs_with, doc: "zipAttrsWith f sets: for each name in any of sets, f name [ values of that name, in list order ]" },
    ]
}

fn attr_names(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let set = ev.force_attrs(&arg(a, 0), span)?;
    let out = set
        .iter_sorted()
        .into_iter()
        .map(|(k, _)| ev.symbol_string(*k))
        .collect();
    Ok(Value::list(out))
}

fn attr_values(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let set = ev.force_attrs(&arg(a, 0), span)?;
    let out = set
        .iter_sorted()
        .into_iter()
        .map(|(_, v)| v.clone())
        .collect();
    Ok(Value::list(out))
}

fn has_attr(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let set = ev.force_attrs(&arg(a, 1), span)?;
    Ok(Value::Bool(set.contains(name.symbol())))
}

fn get_attr(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let set = ev.force_attrs(&arg(a, 1), span)?;
    match set.get(name.symbol()) {
        Some(v) => {
            let v = v.clone();
            ev.force(&v)
        }
        None => Err(EvalError::new(
            ErrorKind::MissingAttribute,
            format!(
                "attribute '{}' missing for call to 'getAttr'",
                name.as_str()
            ),
            span,
        )),
    }
}

fn remove_attrs(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let set = ev.force_attrs(&arg(a, 0), span)?;
    let names = ev.force_list(&arg(a, 1), span)?;
    let mut remove: Vec<Symbol> = Vec::with_capacity(names.len());
    for n in names.iter() {
        let s = force_string_no_ctx(ev, n, span)?;
        remove.push(s.symbol());
    }
    if !remove.iter().any(|s| set.contains(*s)) {
        return Ok(Value::Attrs(set));
    }
    remove.sort_unstable();
    let mut out = (*set).clone();
    out.retain(|(k, _)| remove.binary_search(k).is_err());
    Ok(Value::attrs(out))
}

fn intersect_attrs(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let e1 = ev.force_attrs(&arg(a, 0), span)?;
    let e2 = ev.force_attrs(&arg(a, 1), span)?;
    // both are sorted by symbol: merge-join, keeping e2's values
    let mut out = Vec::with_capacity(e1.len().min(e2.len()));
    let (mut i1, mut i2) = (e1.iter().peekable(), e2.iter().peekable());
    while let (Some((k1, _)), Some((k2, v2))) = (i1.peek(), i2.peek()) {
        match k1.cmp(k2) {
            Ordering::Less => {
                i1.next();
            }
            Ordering::Greater => {
                i2.next();
            }
            Ordering::Equal => {
                out.push((*k2, v2.clone()));
                i1.next();
                i2.next();
            }
        }
    }
    Ok(Value::attrs(Attrs::from_sorted(out)))
}

fn map_attrs(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = arg(a, 0);
    let set = ev.force_attrs(&arg(a, 1), span)?;
    let out = set
        .iter()
        .map(|(k, v)| {
            (
                *k,
                Value::Thunk(Thunk::new(Pending::ApplyName(f.clone(), *k, v.clone()))),
            )
        })
        .collect();
    Ok(Value::attrs(Attrs::from_sorted(out)))
}

fn cat_attrs(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let sym = name.symbol();
    let list = ev.force_list(&arg(a, 1), span)?;
    let mut out = Vec::new();
    for x in list.iter() {
        let set = ev.force_attrs(x, span)?;
        if let Some(v) = set.get(sym) {
            out.push(v.clone());
        }
    }
    Ok(Value::list(out))
}

fn zip_attrs_with(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let list = ev.force_list(&arg(a, 1), span)?;
    let mut sets = Vec::with_capacity(list.len());
    for x in list.iter() {
        sets.push(ev.force_attrs(x, span)?);
    }
    let mut groups: FxHashMap<Symbol, Vec<Value>> = FxHashMap::default();
    for set in &sets {
        for (k, v) in set.iter() {
            groups.entry(*k).or_default().push(v.clone());
        }
    }
    let out = groups
        .into_iter()
        .map(|(k, vs)| {
            (
                k,
                Value::lazy_apply2(f.clone(), Value::string(k.as_str()), Value::list(vs)),
            )
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(out)))
}

#[cfg(test)]
mod tests {
    use super::super::strings::test_util::{check, check_err};

    #[test]
    fn attrs_builtins() {
        check(&[
            (
                "builtins.attrNames { b = 1; a = 2; B = 3; }",
                r#"[ "B" "a" "b" ]"#,
            ),
            ("builtins.attrValues { b = 1; a = 2; }", "[ 2 1 ]"),
            (r#"builtins.getAttr "x" { x = 4; }"#, "4"),
            (r#"builtins.hasAttr "x" { x = 1; }"#, "true"),
            (r#"builtins.hasAttr "y" { x = 1; }"#, "false"),
            (
                r#"builtins.removeAttrs { a = 1; b = 2; } ["a" "c"]"#,
                "{ b = 2; }",
            ),
            (
                "builtins.intersectAttrs { a = 1; b = 2; } { b = 3; c = 4; }",
                "{ b = 3; }",
            ),
            (
                r#"builtins.mapAttrs (n: v: n + v) { a = "x"; }"#,
                r#"{ a = "ax"; }"#,
            ),
            (
                r#"builtins.catAttrs "a" [{a = 1;} {b = 2;} {a = 3;}]"#,
                "[ 1 3 ]",
            ),
            (
                "builtins.zipAttrsWith (n: vs: vs) [{a = 1;} {a = 2; b = 3;}]",
                "{ a = [ 1 2 ]; b = [ 3 ]; }",
            ),
            // laziness: values are not forced, mapAttrs does not call f
            (
                "builtins.length (builtins.attrValues { a = throw \"x\"; })",
                "1",
            ),
            (
                "builtins.attrNames (builtins.mapAttrs 1 { a = 1; })",
                r#"[ "a" ]"#,
            ),
            (
                r#"builtins.attrNames (builtins.removeAttrs { a = throw "x"; b = 1; } ["b"])"#,
                r#"[ "a" ]"#,
            ),
        ]);
        check_err(&[
            (r#"builtins.getAttr "x" {}"#, "missing-attribute"),
            ("builtins.removeAttrs { a = 1; } [1]", "type-error"),
            (r#"builtins.catAttrs "a" [1]"#, "type-error"),
            ("builtins.zipAttrsWith 1 []", "type-error"),
            ("builtins.zipAttrsWith (n: v: v) [1]", "type-error"),
        ]);
    }
}
