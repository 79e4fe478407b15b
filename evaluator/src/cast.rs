//! Run-time checked casts: what `(e :: T)` and `let x :: T = e;` do at evaluation.
//!
//! The type checker trusts annotations on `Dyn` values (data whose shape is only known at run
//! time: `fromJSON`, `fromTOML`, `import`, YAML specs). So that a wrong guess fails *at the
//! annotation*, with its span and the path inside the value (`buildit::eval::cast`), rather than
//! later as a confusing error far away, every annotation is checked when its value is forced.
//! Doing it for every annotation (not only those the checker saw as `Dyn`) keeps evaluation
//! the same with and without `--no-typecheck`.
//!
//! Laziness: the cast forces nothing the program would not force. Forcing `(e :: T)` forces `e`
//! to weak head normal form (which forcing `e` does anyway) and checks its head: the kind of
//! value, for a record its field names (missing required fields, unexpected ones in a closed
//! record) — field names are known without forcing anything. Components the type describes
//! (field values, list elements, dictionary values) that are *already evaluated* are checked at
//! once, recursively, so data from `fromJSON` is checked completely at the boundary; components
//! that are still thunks are wrapped in a thunk that checks them when, and if, they are forced.
//! Functions are only checked to be functions (their arguments and results are checked
//! statically). Type variables and `Dyn` check nothing.

use crate::error::{ErrorKind, EvalError};
use crate::symbol::Symbol;
use crate::value::{Attrs, EvalResult, List, Value};
use crate::Evaluator;
use buildit_lang::types::Type;
use buildit_lang::Span;
use std::rc::Rc;

/// The run-time form of an annotation's type.
pub struct CastTy {
    pub shape: Shape,
    /// The type as written (after alias resolution), for messages.
    pub ty: Type,
}

pub enum Shape {
    /// `Dyn` or a type variable: nothing to check.
    Any,
    Int,
    Float,
    Bool,
    String,
    Path,
    Null,
    Function,
    List(Rc<CastTy>),
    Dict(Rc<CastTy>),
    /// Fields sorted by symbol: `(name, type, optional)`.
    Record {
        fields: Vec<(Symbol, Rc<CastTy>, bool)>,
        open: bool,
    },
}

impl CastTy {
    /// The cast for an annotation's type, or `None` when it checks nothing (`Dyn`, `a`).
    pub fn of(ty: &Type) -> Option<Rc<CastTy>> {
        let c = Self::build(ty, 0);
        match c.shape {
            Shape::Any => None,
            _ => Some(Rc::new(c)),
        }
    }

    fn build(ty: &Type, depth: u32) -> CastTy {
        let shape = if depth > 200 {
            Shape::Any
        } else {
            match ty {
                Type::Int => Shape::Int,
                Type::Float => Shape::Float,
                Type::Bool => Shape::Bool,
                Type::String => Shape::String,
                Type::Path => Shape::Path,
                Type::Null => Shape::Null,
                Type::Fun(..) => Shape::Function,
                Type::List(e) => Shape::List(Rc::new(Self::build(e, depth + 1))),
                Type::Dict(e) => Shape::Dict(Rc::new(Self::build(e, depth + 1))),
                Type::Record { fields, open } => {
                    let mut fs: Vec<(Symbol, Rc<CastTy>, bool)> = fields
                        .iter()
                        .map(|f| {
                            (
                                Symbol::intern(&f.name),
                                Rc::new(Self::build(&f.ty, depth + 1)),
                                f.optional,
                            )
                        })
                        .collect();
                    fs.sort_by_key(|f| f.0);
                    Shape::Record {
                        fields: fs,
                        open: *open,
                    }
                }
                Type::Dyn | Type::Var(_) | Type::Elided | Type::Alias(..) => Shape::Any,
            }
        };
        CastTy {
            shape,
            ty: ty.clone(),
        }
    }

    fn is_any(&self) -> bool {
        matches!(self.shape, Shape::Any)
    }
}

/// Where in the annotated value a mismatch is: `.deps`, `[2]`.
#[derive(Clone)]
enum Seg {
    Field(Symbol),
    Index(usize),
}

fn show_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            Seg::Field(f) => {
                s.push('.');
                s.push_str(f.as_str());
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

impl Evaluator {
    /// Check the forced value `v` against the annotation `c` (at `span`); the result is `v`
    /// itself, or a copy whose unevaluated components check themselves when forced.
    pub fn cast(&mut self, v: Value, c: &Rc<CastTy>, span: Span) -> EvalResult<Value> {
        let mut path = Vec::new();
        Ok(self.check(&v, c, span, &mut path)?.unwrap_or(v))
    }

    /// `None` when `v` (in weak head normal form) passes unchanged.
    fn check(
        &mut self,
        v: &Value,
        c: &Rc<CastTy>,
        span: Span,
        path: &mut Vec<Seg>,
    ) -> EvalResult<Option<Value>> {
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
            self.check_inner(v, c, span, path)
        })
    }

    fn check_inner(
        &mut self,
        v: &Value,
        c: &Rc<CastTy>,
        span: Span,
        path: &mut Vec<Seg>,
    ) -> EvalResult<Option<Value>> {
        let ok = match (&c.shape, v) {
            (Shape::Any, _)
            | (Shape::Int, Value::Int(_))
            | (Shape::Float, Value::Float(_))
            | (Shape::Bool, Value::Bool(_))
            | (Shape::String, Value::String(_))
            | (Shape::Path, Value::Path(_))
            | (Shape::Null, Value::Null) => true,
            (Shape::Function, v) if v.is_function() => true,
            (Shape::Function, Value::Attrs(a)) if a.contains(Symbol::intern("__functor")) => true,
            (Shape::List(e), Value::List(l)) => return self.check_list(l, e, span, path),
            (Shape::Dict(e), Value::Attrs(a)) => {
                let fields: Vec<(Symbol, &Rc<CastTy>)> = a.iter().map(|(k, _)| (*k, e)).collect();
                return self.check_fields(a, &fields, span, path);
            }
            (Shape::Record { fields, open }, Value::Attrs(a)) => {
                for (name, _, optional) in fields {
                    if !optional && !a.contains(*name) {
                        return Err(self.missing_field(a, *name, c, span, path));
                    }
                }
                if !open {
                    for (k, _) in a.iter() {
                        if fields.binary_search_by_key(k, |f| f.0).is_err() {
                            return Err(cast_error(
                                format!("unexpected field `{}`", k.as_str()),
                                c,
                                span,
                                path,
                            )
                            .with_help(format!(
                                "the annotation is a closed record; add `{} : …` or `..` to it, or remove the field",
                                k.as_str()
                            )));
                        }
                    }
                }
                let checks: Vec<(Symbol, &Rc<CastTy>)> = fields
                    .iter()
                    .filter(|(k, t, _)| !t.is_any() && a.contains(*k))
                    .map(|(k, t, _)| (*k, t))
                    .collect();
                return self.check_fields(a, &checks, span, path);
            }
            _ => false,
        };
        if ok {
            Ok(None)
        } else {
            Err(cast_error(
                format!("expected `{}` but found {}", c.ty, v.describe()),
                c,
                span,
                path,
            ))
        }
    }

    fn check_list(
        &mut self,
        l: &List,
        e: &Rc<CastTy>,
        span: Span,
        path: &mut Vec<Seg>,
    ) -> EvalResult<Option<Value>> {
        if e.is_any() {
            return Ok(None);
        }
        let mut out: Option<Vec<Value>> = None;
        for (i, x) in l.iter().enumerate() {
            path.push(Seg::Index(i));
            let r = self.component(x, e, span, path);
            path.pop();
            if let Some(nv) = r? {
                out.get_or_insert_with(|| l.iter().cloned().collect())[i] = nv;
            }
        }
        Ok(out.map(Value::list))
    }

    fn check_fields(
        &mut self,
        a: &Rc<Attrs>,
        fields: &[(Symbol, &Rc<CastTy>)],
        span: Span,
        path: &mut Vec<Seg>,
    ) -> EvalResult<Option<Value>> {
        let mut out: Option<Attrs> = None;
        for (k, t) in fields {
            if t.is_any() {
                continue;
            }
            let Some(x) = a.get(*k) else { continue };
            path.push(Seg::Field(*k));
            let r = self.component(x, t, span, path);
            path.pop();
            if let Some(nv) = r? {
                out.get_or_insert_with(|| (**a).clone()).insert(*k, nv);
            }
        }
        Ok(out.map(Value::attrs))
    }

    /// A component of a checked value: checked now when already evaluated, else wrapped.
    fn component(
        &mut self,
        x: &Value,
        c: &Rc<CastTy>,
        span: Span,
        path: &mut Vec<Seg>,
    ) -> EvalResult<Option<Value>> {
        match x {
            Value::Thunk(t) => match t.value() {
                Some(v) => self.check(&v, c, span, path),
                None => {
                    let (x, c, path) = (x.clone(), c.clone(), path.clone());
                    Ok(Some(Value::lazy_native(move |ev| {
                        let v = ev.force(&x)?;
                        let mut path = path;
                        Ok(ev.check(&v, &c, span, &mut path)?.unwrap_or(v))
                    })))
                }
            },
            v => self.check(v, c, span, path),
        }
    }

    fn missing_field(
        &self,
        a: &Attrs,
        name: Symbol,
        c: &CastTy,
        span: Span,
        path: &[Seg],
    ) -> EvalError {
        let names: Vec<String> = a.iter().map(|(k, _)| k.as_str().to_string()).collect();
        let e = cast_error(format!("missing field `{}`", name.as_str()), c, span, path);
        match buildit_lang::types::did_you_mean(name.as_str(), &names) {
            Some(m) => e.with_help(format!(
                "the value has a field `{m}`: a misspelling of `{}` (in the data or in the annotation)?",
                name.as_str()
            )),
            None => e,
        }
    }
}

fn cast_error(what: String, c: &CastTy, span: Span, path: &[Seg]) -> EvalError {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!(" at `{}`", show_path(path))
    };
    EvalError::new(
        ErrorKind::Cast,
        format!("the value does not match its type annotation{at}: {what}"),
        span,
    )
    .with_help(format!(
        "this annotation says `{}` there; fix the data, or loosen the annotation (`Dyn`, `..`, `b ? T`)",
        c.ty
    ))
}

#[cfg(test)]
mod tests {
    use crate::{print, Evaluator, PureIo};

    /// Evaluate deeply and print, or the error's code and message.
    fn run(src: &str) -> Result<String, String> {
        let mut ev = Evaluator::new(Box::new(PureIo::default()));
        let r = ev
            .eval_str(src)
            .and_then(|v| print::print_value(&mut ev, &v));
        r.map_err(|e| format!("{} {}", e.kind().code(), e.message()))
    }

    #[test]
    fn matching_values_pass_unchanged() {
        assert_eq!(
            run(r#"(builtins.fromJSON "{\"a\": [1, 2], \"b\": \"x\"}" :: { a : [Int], b : String })"#)
                .as_deref(),
            Ok(r#"{ a = [ 1 2 ]; b = "x"; }"#)
        );
        assert_eq!(run("(x: x :: Int -> Int) 3").as_deref(), Ok("3"));
        assert_eq!(run("({ a = 1; } :: { _ : Int }).a").as_deref(), Ok("1"));
    }

    #[test]
    fn evaluated_data_is_checked_deeply_at_the_boundary() {
        let e = run(r#"let x = (builtins.fromJSON "{\"a\": [1, \"2\"]}" :: { a : [Int] }); in builtins.attrNames x"#)
            .unwrap_err();
        assert!(e.starts_with("buildit::eval::cast"), "{e}");
        assert!(
            e.contains("at `.a[1]`") && e.contains("expected `Int`"),
            "{e}"
        );
        let e = run(r#"(builtins.fromJSON "{\"nmae\": 1}" :: { name : Int, .. })"#).unwrap_err();
        assert!(e.contains("missing field `name`"), "{e}");
        let e = run(r#"(builtins.fromJSON "{\"a\": 1, \"b\": 2}" :: { a : Int })"#).unwrap_err();
        assert!(e.contains("unexpected field `b`"), "{e}");
    }

    #[test]
    fn unevaluated_parts_are_checked_only_when_forced() {
        // `b` is never forced: neither its `throw` nor its wrong type matter
        assert_eq!(
            run(r#"({ a = 1; b = throw "no"; } :: { a : Int, b : String }).a"#).as_deref(),
            Ok("1")
        );
        assert_eq!(
            run(r#"builtins.length ([ 1 (throw "no") ] :: [Int])"#).as_deref(),
            Ok("2")
        );
        // forced: the wrapped thunk checks it, at the annotation
        let e = run(r#"({ a = 1; b = 1 + 1; } :: { a : Int, b : String }).b"#).unwrap_err();
        assert!(
            e.starts_with("buildit::eval::cast") && e.contains("at `.b`"),
            "{e}"
        );
    }
}
