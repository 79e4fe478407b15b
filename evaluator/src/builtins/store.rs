//! The builtins that reach the store, through [`crate::io::EvalIo`]: `derivationStrict` (and
//! `derivation`, written in the language over it, see [`DERIVATION_SOURCE`]), `toFile`,
//! `storePath`, `path` and `filterSource`.
//!
//! `derivationStrict` turns a set of attributes into a plain [`DrvRequest`]: every attribute
//! except `args` is coerced to a string as Nix does (numbers, Booleans, null, lists, paths copied
//! to the store), and the string contexts of all of them become the inputs (a `drvPath`
//! reference depends on every output, an output reference on that output, a plain store path is
//! an input source). The glue behind `EvalIo` hashes and writes the derivation.

use std::collections::BTreeSet;
use std::rc::Rc;

use crate::builtins::strings::{arg, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::eval::CoerceMode;
use crate::io::{DrvRequest, FileKind};
use crate::symbol::Symbol;
use crate::value::{Attrs, Context, ContextElem, EvalResult, NixString, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;

/// Nix's `derivation` over `derivationStrict`: the result is the first output's record, every
/// output is an attribute, `all` lists them, `drvAttrs` keeps the input.
pub(crate) const DERIVATION_SOURCE: &str = r#"
drvAttrs @ { outputs ? [ "out" ], ... }:
let
  strict = builtins.derivationStrict drvAttrs;
  commonAttrs = drvAttrs // (builtins.listToAttrs outputsList) // {
    all = map (x: x.value) outputsList;
    inherit drvAttrs;
  };
  outputToAttrListElement = outputName: {
    name = outputName;
    value = commonAttrs // {
      outPath = builtins.getAttr outputName strict;
      drvPath = strict.drvPath;
      type = "derivation";
      inherit outputName;
    };
  };
  outputsList = map outputToAttrListElement outputs;
in (builtins.head outputsList).value
"#;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "derivationStrict", arity: 1, func: derivation_strict, doc: "derivationStrict attrs: write the derivation described by attrs to the store; returns { drvPath; <output> = path; }" },
        PrimOp { name: "toFile", arity: 2, func: to_file, doc: "toFile name contents: a store path holding contents (which may refer to other store paths, not to derivation outputs)" },
        PrimOp { name: "storePath", arity: 1, func: store_path, doc: "storePath p: p, which must be a valid store path, as a string depending on it" },
        PrimOp { name: "path", arity: 1, func: path, doc: "path { path; name ? baseNameOf path; filter ? (p: t: true); recursive ? true; }: copy a path to the store, keeping the entries filter accepts" },
        PrimOp { name: "filterSource", arity: 2, func: filter_source, doc: "filterSource filter path: copy path to the store keeping the entries for which filter path type is true" },
    ]
}

fn err(kind: ErrorKind, msg: impl Into<String>, span: Span) -> EvalError {
    EvalError::new(kind, msg, span)
}

/// `derivation` (arity 1): apply the compiled wrapper.
pub(crate) fn derivation(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.derivation_fn()?;
    ev.apply(f, arg(a, 0), span)
}

fn add_context(req: &mut DrvRequest, ctx: &Context) {
    let mut all = BTreeSet::new();
    for e in ctx.iter() {
        match e {
            ContextElem::Opaque(p) => {
                req.input_srcs.insert(p.to_string());
            }
            ContextElem::AllOutputs(d) => {
                all.insert(d.to_string());
            }
            ContextElem::Output { drv, output } => {
                req.input_drvs
                    .entry(drv.to_string())
                    .or_default()
                    .insert(output.to_string());
            }
        }
    }
    // an empty set means "every output" (the glue reads the .drv to list them)
    for d in all {
        req.input_drvs.insert(d, BTreeSet::new());
    }
}

fn derivation_strict(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let attrs = ev.force_attrs(&arg(a, 0), span)?;
    let sym = |s: &str| Symbol::intern(s);
    let ignore_nulls = match attrs.get(sym("__ignoreNulls")) {
        Some(v) => {
            let v = v.clone();
            ev.force_bool(&v, span)?
        }
        None => false,
    };
    if attrs.get(sym("__structuredAttrs")).is_some() {
        return Err(err(
            ErrorKind::Derivation,
            "`__structuredAttrs` is not supported by buildit",
            span,
        )
        .with_help("pass values as ordinary attributes (strings), or write a JSON file with `builtins.toFile`"));
    }
    let mut req = DrvRequest::default();
    let mut all_ctx = Context::empty();
    let mut outputs_seen = false;
    for (k, v) in attrs.iter_sorted() {
        let key = k.as_str();
        let v = v.clone();
        if key == "__ignoreNulls" {
            continue;
        }
        if ignore_nulls && matches!(ev.force(&v)?, Value::Null) {
            continue;
        }
        let in_attr = |e: EvalError| {
            e.add_trace(span, format!("evaluating the derivation attribute `{key}`"))
        };
        match key {
            "args" => {
                let l = ev.force_list(&v, span).map_err(in_attr)?;
                for x in l.iter() {
                    let s = ev
                        .coerce_to_string(x, span, CoerceMode::DerivationAttr)
                        .map_err(in_attr)?;
                    all_ctx.union(s.context());
                    req.args.push(s.as_str().to_string());
                }
            }
            "outputs" => {
                let l = ev.force_list(&v, span).map_err(in_attr)?;
                let mut names = Vec::new();
                for x in l.iter() {
                    let s = force_string_no_ctx(ev, x, span).map_err(in_attr)?;
                    let n = s.as_str().to_string();
                    if n == "drv" {
                        return Err(err(
                            ErrorKind::Derivation,
                            "invalid derivation output name 'drv'",
                            span,
                        ));
                    }
                    if names.contains(&n) {
                        return Err(err(
                            ErrorKind::Derivation,
                            format!("duplicate derivation output '{n}'"),
                            span,
                        ));
                    }
                    if n.is_empty() {
                        return Err(err(
                            ErrorKind::Derivation,
                            "a derivation output name is empty",
                            span,
                        ));
                    }
                    names.push(n);
                }
                if names.is_empty() {
                    return Err(err(
                        ErrorKind::Derivation,
                        "a derivation must have at least one output",
                        span,
                    ));
                }
                req.env.insert("outputs".into(), names.join(" "));
                req.outputs = names;
                outputs_seen = true;
            }
            _ => {
                let s = ev
                    .coerce_to_string(&v, span, CoerceMode::DerivationAttr)
                    .map_err(in_attr)?;
                all_ctx.union(s.context());
                let text = s.as_str().to_string();
                match key {
                    "name" => req.name = text.clone(),
                    "system" => req.system = text.clone(),
                    "builder" => req.builder = text.clone(),
                    "__sysroot" => {
                        req.sysroot = Some(text);
                        continue;
                    }
                    _ => {}
                }
                req.env.insert(key.to_string(), text);
            }
        }
    }
    for (field, what) in [
        ("name", &req.name),
        ("system", &req.system),
        ("builder", &req.builder),
    ] {
        if attrs.get(sym(field)).is_none() {
            return Err(err(
                ErrorKind::Derivation,
                format!("required attribute '{field}' missing"),
                span,
            ));
        }
        let _ = what;
    }
    if !outputs_seen {
        req.outputs = vec!["out".into()];
    }
    if let Some(h) = req.env.get("outputHash") {
        let algo = req.env.get("outputHashAlgo").cloned();
        let mode = req
            .env
            .get("outputHashMode")
            .cloned()
            .unwrap_or_else(|| "flat".into());
        if req.outputs != ["out"] {
            return Err(err(
                ErrorKind::Derivation,
                "a fixed-output derivation (with `outputHash`) must have exactly one output, `out`",
                span,
            ));
        }
        req.fixed = Some((h.clone(), algo, mode));
    }
    add_context(&mut req, &all_ctx);
    let res = ev
        .io()
        .derivation(&req)
        .map_err(|m| err(ErrorKind::Derivation, m, span))?;
    let drv: Rc<str> = Rc::from(res.drv_path.as_str());
    let mut entries = vec![(
        Symbol::intern("drvPath"),
        Value::String(NixString::new(
            res.drv_path.as_str(),
            Context::single(ContextElem::AllOutputs(drv.clone())),
        )),
    )];
    for (o, p) in res.outputs {
        let ctx = Context::single(ContextElem::Output {
            drv: drv.clone(),
            output: Rc::from(o.as_str()),
        });
        entries.push((Symbol::intern(&o), Value::String(NixString::new(p, ctx))));
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn to_file(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let name = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let contents = ev.force_string(&arg(a, 1), span)?;
    let mut refs = Vec::new();
    for e in contents.context().iter() {
        match e {
            ContextElem::Opaque(p) => refs.push(p.to_string()),
            _ => {
                return Err(err(
                    ErrorKind::Invalid,
                    format!(
                        "in 'toFile': the file '{}' cannot refer to derivation outputs",
                        name.as_str()
                    ),
                    span,
                )
                .with_help("write the file in a derivation instead, or refer to sources only"))
            }
        }
    }
    let p = ev
        .io()
        .add_text_to_store(name.as_str(), contents.as_str(), &refs)
        .map_err(|m| {
            err(
                ErrorKind::Store,
                format!("toFile '{}': {m}", name.as_str()),
                span,
            )
        })?;
    let ctx = Context::single(ContextElem::Opaque(Rc::from(p.as_str())));
    Ok(Value::String(NixString::new(p, ctx)))
}

fn store_path(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let v = ev.force(&arg(a, 0))?;
    let text = match &v {
        Value::Path(p) => p.to_string(),
        _ => ev
            .coerce_to_string(&v, span, CoerceMode::ToString)?
            .as_str()
            .to_string(),
    };
    let dir = ev.io().store_dir();
    let rest = text
        .strip_prefix(&dir)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            err(
                ErrorKind::Invalid,
                format!("path '{text}' is not in the store ({dir})"),
                span,
            )
        })?;
    let base = rest.split('/').next().unwrap_or(rest);
    let sp = format!("{dir}/{base}");
    match ev.io().is_valid_store_path(&sp) {
        Ok(true) => {}
        Ok(false) => {
            return Err(err(
                ErrorKind::Store,
                format!("path '{sp}' is not valid in the store"),
                span,
            )
            .with_help(
                "add it with `buildit store add`, or build the derivation that produces it",
            ))
        }
        Err(m) => return Err(err(ErrorKind::Store, m, span)),
    }
    let ctx = Context::single(ContextElem::Opaque(Rc::from(sp.as_str())));
    Ok(Value::String(NixString::new(text, ctx)))
}

fn path(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let attrs = ev.force_attrs(&arg(a, 0), span)?;
    let mut src = None;
    let mut name = None;
    let mut filter = None;
    for (k, v) in attrs.iter() {
        let v = v.clone();
        match k.as_str() {
            "path" => {
                let pv = ev.force(&v)?;
                src = Some(match pv {
                    Value::Path(p) => p.to_string(),
                    other => force_string_no_ctx(ev, &other, span)?.as_str().to_string(),
                });
            }
            "name" => name = Some(force_string_no_ctx(ev, &v, span)?.as_str().to_string()),
            "filter" => filter = Some(v),
            "recursive" => {
                if !ev.force_bool(&v, span)? {
                    return Err(err(ErrorKind::Unsupported, "`builtins.path` with `recursive = false` is not supported", span)
                        .with_help("copy the file with `recursive = true` (the default)"));
                }
            }
            "sha256" => {
                return Err(err(ErrorKind::Unsupported, "`builtins.path` does not take `sha256` in buildit (store paths of sources come from their content hash)", span)
                    .with_help("remove `sha256`; use a fixed-output derivation to pin downloaded content"))
            }
            other => {
                return Err(err(ErrorKind::Invalid, format!("unsupported argument '{other}' to 'builtins.path'"), span)
                    .with_help("the arguments are `path`, `name`, `filter` and `recursive`"))
            }
        }
    }
    let src = src.ok_or_else(|| {
        err(
            ErrorKind::MissingArgument,
            "missing required argument 'path' to 'builtins.path'",
            span,
        )
    })?;
    copy_filtered(ev, &src, name, filter, span)
}

fn filter_source(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let pv = ev.force(&arg(a, 1))?;
    let src = match pv {
        Value::Path(p) => p.to_string(),
        other => force_string_no_ctx(ev, &other, span)?.as_str().to_string(),
    };
    copy_filtered(ev, &src, None, Some(arg(a, 0)), span)
}

fn copy_filtered(
    ev: &mut Evaluator,
    src: &str,
    name: Option<String>,
    filter: Option<Value>,
    span: Span,
) -> EvalResult<Value> {
    let name = name.unwrap_or_else(|| {
        src.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string()
    });
    let mut excluded = BTreeSet::new();
    if let Some(f) = filter {
        if ev.io().file_kind(src) == Some(FileKind::Directory) {
            walk(ev, &f, src, &mut excluded, span)?;
        }
    }
    let p = ev
        .io()
        .add_filtered_to_store(&name, src, &excluded)
        .map_err(|m| {
            err(
                ErrorKind::Store,
                format!("cannot copy '{src}' to the store: {m}"),
                span,
            )
        })?;
    let ctx = Context::single(ContextElem::Opaque(Rc::from(p.as_str())));
    Ok(Value::String(NixString::new(p, ctx)))
}

fn walk(
    ev: &mut Evaluator,
    f: &Value,
    dir: &str,
    excluded: &mut BTreeSet<String>,
    span: Span,
) -> EvalResult<()> {
    let entries = ev.io().read_dir(dir).map_err(|e| {
        err(
            ErrorKind::Io,
            format!("cannot read directory '{dir}': {e}"),
            span,
        )
    })?;
    for (n, kind) in entries {
        let full = format!("{}/{n}", dir.trim_end_matches('/'));
        let t = match kind {
            FileKind::Regular => "regular",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Unknown => "unknown",
        };
        let r = ev.call(f, &[Value::string(full.as_str()), Value::string(t)], span)?;
        if !ev.force_bool(&r, span)? {
            excluded.insert(full);
        } else if kind == FileKind::Directory {
            walk(ev, f, &full, excluded, span)?;
        }
    }
    Ok(())
}

/// For tests of the builtins: an [`crate::io::EvalIo`] that "writes" derivations by hashing
/// their request (no store), so evaluation can be checked without one.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{DrvResult, EvalIo};
    use std::cell::RefCell;

    #[derive(Default)]
    struct FakeStore {
        seen: RefCell<Vec<DrvRequest>>,
    }
    impl EvalIo for FakeStore {
        fn read_file(&self, p: &str) -> std::io::Result<Vec<u8>> {
            Err(std::io::Error::other(p.to_string()))
        }
        fn file_kind(&self, _p: &str) -> Option<FileKind> {
            None
        }
        fn read_dir(&self, p: &str) -> std::io::Result<Vec<(String, FileKind)>> {
            Err(std::io::Error::other(p.to_string()))
        }
        fn home_dir(&self) -> Option<String> {
            None
        }
        fn trace(&self, _m: &str) {}
        fn derivation(&self, d: &DrvRequest) -> Result<DrvResult, String> {
            self.seen.borrow_mut().push(d.clone());
            let h = blake3::hash(format!("{d:?}").as_bytes())
                .to_hex()
                .to_string();
            Ok(DrvResult {
                drv_path: format!("/bld/store/{}-{}.drv", &h[..32], d.name),
                outputs: d
                    .outputs
                    .iter()
                    .map(|o| {
                        (
                            o.clone(),
                            format!("/bld/store/{}-{}-{o}", &h[32..64], d.name),
                        )
                    })
                    .collect(),
            })
        }
    }

    fn eval(src: &str) -> (String, Vec<DrvRequest>) {
        let store = Rc::new(FakeStore::default());
        struct Shared(Rc<FakeStore>);
        impl EvalIo for Shared {
            fn read_file(&self, p: &str) -> std::io::Result<Vec<u8>> {
                self.0.read_file(p)
            }
            fn file_kind(&self, p: &str) -> Option<FileKind> {
                self.0.file_kind(p)
            }
            fn read_dir(&self, p: &str) -> std::io::Result<Vec<(String, FileKind)>> {
                self.0.read_dir(p)
            }
            fn home_dir(&self) -> Option<String> {
                None
            }
            fn trace(&self, _m: &str) {}
            fn derivation(&self, d: &DrvRequest) -> Result<DrvResult, String> {
                self.0.derivation(d)
            }
        }
        let mut ev = Evaluator::new(Box::new(Shared(store.clone())));
        let out = match ev.eval_str(src) {
            Ok(v) => {
                crate::print::print_value(&mut ev, &v).unwrap_or_else(|e| format!("error: {e:?}"))
            }
            Err(e) => format!("error: {e:?}"),
        };
        let seen = store.seen.borrow().clone();
        (out, seen)
    }

    #[test]
    fn derivation_collects_env_outputs_and_inputs() {
        let (out, seen) = eval(
            r#"let a = derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" ]; };
                   b = derivation { name = "b"; system = "x86_64-linux"; builder = "${a}/bin/sh"; args = [ "-c" a.dev ]; n = 3; f = true; nul = null; l = [ 1 "x" ]; };
               in [ b.type (builtins.length (builtins.attrNames (builtins.getContext b.drvPath))) a.outputName a.dev.outputName ]"#,
        );
        assert_eq!(out, r#"[ "derivation" 1 "out" "dev" ]"#);
        assert_eq!(seen.len(), 2);
        let b = &seen[1];
        assert_eq!(b.env["n"], "3");
        assert_eq!(b.env["f"], "1");
        assert_eq!(b.env["nul"], "");
        assert_eq!(b.env["l"], "1 x");
        assert!(!b.env.contains_key("args"));
        assert_eq!(b.args[0], "-c");
        let (drv, outs) = b.input_drvs.iter().next().expect("one input");
        assert!(drv.ends_with("-a.drv"));
        assert_eq!(
            outs.iter().cloned().collect::<Vec<_>>(),
            vec!["dev".to_string(), "out".to_string()]
        );
    }

    #[test]
    fn derivation_errors() {
        let (out, _) = eval(r#"(derivation { system = "x"; builder = "y"; }).drvPath"#);
        assert!(out.contains("required attribute 'name' missing"), "{out}");
        let (out, _) = eval(
            r#"(derivation { name = "n"; system = "x"; builder = "y"; outputs = [ "out" "out" ]; }).drvPath"#,
        );
        assert!(out.contains("duplicate derivation output"), "{out}");
        let (out, _) = eval(
            r#"(derivation { name = "n"; system = "x"; builder = "y"; outputHash = "abc"; outputs = [ "out" "dev" ]; }).drvPath"#,
        );
        assert!(out.contains("exactly one output"), "{out}");
    }

    #[test]
    fn fixed_output_is_passed_on() {
        let (_, seen) = eval(
            r#"(derivation { name = "n"; system = "x"; builder = "builtin:fetchurl"; outputHash = "sha256-AAAA"; outputHashMode = "recursive"; }).outPath"#,
        );
        assert_eq!(
            seen[0].fixed,
            Some(("sha256-AAAA".into(), None, "recursive".into()))
        );
    }
}
