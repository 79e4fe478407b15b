//! The evaluator's intermediate representation: the AST after scope resolution. Variables are
//! (depth, slot) pairs into the runtime [`crate::value::Scope`] chain, attribute names are
//! interned, literals are pre-built [`Value`]s, `let`/`rec`/hidden bindings are all one
//! [`ExprKind::Scope`] node, and nested attribute paths (`a.b.c = 1; a.b.d = 2;`) are already
//! merged. Children are `Rc` so thunks can hold on to the code they will run.

use crate::symbol::Symbol;
use crate::value::Value;
use buildit_lang::ast::BinOp;
use buildit_lang::Span;
use std::rc::Rc;

pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// Attribute paths lower to records nested as deep as the path is long (`a.a.a… = 1` with
/// 100,000 keys), deeper than any stack allows a recursive drop: every node with children is
/// dropped through `stacker`, which moves onto a fresh segment when the current one runs low.
impl Drop for Expr {
    fn drop(&mut self) {
        if matches!(
            self.kind,
            ExprKind::Const(_)
                | ExprKind::Var { .. }
                | ExprKind::Fail(..)
                | ExprKind::LookupPath(_)
        ) {
            return;
        }
        let kind = std::mem::replace(&mut self.kind, ExprKind::Const(Value::Null));
        stacker::maybe_grow(64 * 1024, 1024 * 1024, move || drop(kind));
    }
}

pub enum ExprKind {
    Const(Value),
    /// A variable: `depth` frames up, slot `index`.
    Var {
        depth: u32,
        index: u32,
    },
    /// String interpolation: the parts are concatenated (non-literal parts are coerced).
    Str(Vec<StrPart>),
    /// A path with interpolations: the first part is already an absolute or home-resolved path.
    Path(Vec<StrPart>),
    List(Vec<Rc<Expr>>),
    /// A record literal evaluated in the current environment.
    Attrs(Rc<AttrsIr>),
    /// A new frame: slots evaluated lazily in the new frame, then `body` in it. `let`, `rec { }`,
    /// and hidden bindings (shared `inherit (e)` sources) all lower to this.
    Scope {
        slots: Vec<Rc<Expr>>,
        body: Rc<Expr>,
        /// For a `rec` set with `__overrides`: that slot's index and the slot names. Its
        /// attributes replace (or add to) the set's own, and recursive references see them.
        overrides: Option<Rc<(u32, Vec<Symbol>)>>,
    },
    Lambda(Rc<Lambda>),
    /// `f a b c`: one node for the whole spine.
    Apply(Rc<Expr>, Vec<Rc<Expr>>),
    If(Rc<Expr>, Rc<Expr>, Rc<Expr>),
    Assert(Rc<Expr>, Rc<Expr>),
    Select(Rc<Expr>, Vec<Key>, Option<Rc<Expr>>),
    HasAttr(Rc<Expr>, Vec<Key>),
    Not(Rc<Expr>),
    Neg(Rc<Expr>),
    Binary(BinOp, Rc<Expr>, Rc<Expr>),
    /// `(e :: T)`: `e`, checked against `T` when forced (see [`crate::cast`]).
    Cast(Rc<Expr>, Rc<crate::cast::CastTy>),
    /// Code that always fails when evaluated (e.g. a `<lookup>` path).
    Fail(crate::error::ErrorKind, String),
    /// `<buildit>` / `<buildit/sub/path>`: a path in the standard library, found through
    /// `EvalIo::lookup_path` (the only lookup path buildit has).
    LookupPath(String),
}

pub enum StrPart {
    Lit(Rc<str>),
    Interp(Rc<Expr>),
}

pub enum Key {
    Static(Symbol, Span),
    Dynamic(Rc<Expr>),
}

/// A record literal. Static keys are known at lowering time (merged and checked for duplicates
/// there); dynamic ones (`${k} = v;`) are computed when the record is built, in order.
pub struct AttrsIr {
    pub statics: Vec<(Symbol, Rc<Expr>)>,
    pub dynamics: Vec<(Rc<Expr>, Rc<Expr>, Span)>,
}

pub struct Lambda {
    pub param: Param,
    pub body: Rc<Expr>,
    pub span: Span,
    /// Defined in a file of the standard library: its calls are noted for errors that blame
    /// the caller (`Evaluator::note_call`).
    pub library: bool,
}

pub enum Param {
    /// `x: …` — one slot.
    Ident,
    /// `{ a, b ? d, ... } @ x: …` — one slot per field (declaration order), then the `@` name.
    Pattern {
        fields: Vec<Field>,
        ellipsis: bool,
        bind: bool,
    },
}

pub struct Field {
    pub name: Symbol,
    pub span: Span,
    pub default: Option<Rc<Expr>>,
}

impl Lambda {
    pub fn slot_count(&self) -> usize {
        match &self.param {
            Param::Ident => 1,
            Param::Pattern { fields, bind, .. } => fields.len() + usize::from(*bind),
        }
    }
}
