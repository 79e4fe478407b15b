//! Lowering: AST → IR. Resolves every variable statically (there is no `with`, so scoping is
//! lexical and an undefined variable is found before evaluation, even in a branch never taken,
//! exactly as Nix reports it at parse time), merges nested attribute paths, detects duplicate
//! attributes, turns literals into values and resolves path literals against the directory of
//! the file that contains them. Errors are collected as diagnostics; lowering never fails as a
//! function (a bad node becomes an `ExprKind::Fail`).

use crate::error::ErrorKind;
use crate::ir::{self, AttrsIr, ExprKind, Key, StrPart};
use crate::symbol::Symbol;
use crate::value::{NixString, Value};
use buildit_lang::ast::{self, AttrKey, Binding, PathKind};
use buildit_lang::{Diagnostic, Span};
use rustc_hash::FxHashMap;
use std::rc::Rc;

/// Lexical context of one file.
pub struct LowerCtx<'a> {
    /// Names visible at the top of every file (`builtins`, `true`, `map`, ...).
    pub globals: &'a FxHashMap<Symbol, Value>,
    /// Absolute directory of the file, for relative path literals.
    pub base_dir: String,
    /// `$HOME` for `~/` paths.
    pub home: Option<String>,
}

struct Frame {
    names: FxHashMap<Symbol, u32>,
}

struct Lowerer<'c> {
    ctx: &'c LowerCtx<'c>,
    frames: Vec<Frame>,
    diags: Vec<Diagnostic>,
    /// Whether the file is the standard library's (marks its lambdas, see [`ir::Lambda`]).
    library: bool,
}

/// Lower a parsed file. Returns the IR and the diagnostics found (undefined variables,
/// duplicate attributes, ...). With diagnostics present the IR must not be evaluated.
pub fn lower(expr: &ast::Expr, ctx: &LowerCtx<'_>) -> (Rc<ir::Expr>, Vec<Diagnostic>) {
    lower_in_scope(expr, ctx, &[])
}

/// Lower with extra frames already in scope (outermost first): used by the REPL, whose
/// bindings live in frames around each input.
pub fn lower_in_scope(
    expr: &ast::Expr,
    ctx: &LowerCtx<'_>,
    frames: &[Vec<Symbol>],
) -> (Rc<ir::Expr>, Vec<Diagnostic>) {
    lower_file(expr, ctx, frames, false)
}

/// [`lower_in_scope`] for a file that is the standard library's (`library`) or not.
pub fn lower_file(
    expr: &ast::Expr,
    ctx: &LowerCtx<'_>,
    frames: &[Vec<Symbol>],
    library: bool,
) -> (Rc<ir::Expr>, Vec<Diagnostic>) {
    let mut l = Lowerer {
        library,
        ctx,
        frames: frames
            .iter()
            .map(|names| Frame {
                names: names
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (*s, i as u32))
                    .collect(),
            })
            .collect(),
        diags: Vec::new(),
    };
    let e = l.expr(expr);
    (e, l.diags)
}

/// Lexically normalise an absolute path: collapse `//`, `.` and `..` (without touching the file
/// system, as Nix does), no trailing slash except for `/` itself.
pub fn canon_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        "/".to_string()
    } else {
        let mut s = String::with_capacity(p.len());
        for c in parts {
            s.push('/');
            s.push_str(c);
        }
        s
    }
}

fn mk(kind: ExprKind, span: Span) -> Rc<ir::Expr> {
    Rc::new(ir::Expr { kind, span })
}

/// Native stack kept free before each recursive step, and the size of a fresh segment.
const RED_ZONE: usize = 64 * 1024;
const STACK_SEGMENT: usize = 1024 * 1024;

/// An entry of a binding tree before it is turned into IR.
enum Entry<'a> {
    Value(&'a ast::Expr),
    /// `inherit x;` (from = None) or `inherit (e) x;` (index of the hidden source slot).
    Inherit(Option<usize>, Span),
    Nested(Node<'a>),
}

#[derive(Default)]
struct Node<'a> {
    rec: bool,
    /// Static entries in first-definition order, with the span of their first definition.
    statics: Vec<(Symbol, Entry<'a>, Span)>,
    index: FxHashMap<Symbol, usize>,
    dynamics: Vec<(&'a ast::Expr, Entry<'a>, Span)>,
    /// `inherit (e)` sources, in order; only used at the top level of a binding list.
    sources: Vec<&'a ast::Expr>,
}

/// Nodes nest as deep as attribute paths are long: dropping one level at a time through
/// `stacker` keeps a 100,000-key path from overflowing the native stack.
impl Drop for Node<'_> {
    fn drop(&mut self) {
        if self
            .statics
            .iter()
            .all(|(_, e, _)| !matches!(e, Entry::Nested(_)))
            && self
                .dynamics
                .iter()
                .all(|(_, e, _)| !matches!(e, Entry::Nested(_)))
        {
            return;
        }
        let statics = std::mem::take(&mut self.statics);
        let dynamics = std::mem::take(&mut self.dynamics);
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, move || drop((statics, dynamics)));
    }
}

impl<'c> Lowerer<'c> {
    fn error(&mut self, d: Diagnostic) {
        if self.diags.len() < 200 {
            self.diags.push(d);
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> Rc<ir::Expr> {
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || self.expr_inner(e))
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> Rc<ir::Expr> {
        use ast::ExprKind as A;
        let span = e.span;
        match &e.kind {
            // annotations become run-time checked casts (or vanish when they check nothing)
            A::Annot { expr, ty } => match crate::cast::CastTy::of(ty) {
                Some(c) => mk(ExprKind::Cast(self.expr(expr), c), span),
                None => self.expr(expr),
            },
            A::Int(i) => mk(ExprKind::Const(Value::Int(*i)), span),
            A::Float(f) => mk(ExprKind::Const(Value::Float(*f)), span),
            A::Uri(u) => mk(ExprKind::Const(Value::string(u.clone())), span),
            A::Str(parts) => self.string(parts, span),
            A::Path(kind, parts) => self.path(*kind, parts, span),
            A::SearchPath(p) if p == "buildit" || p.starts_with("buildit/") => {
                mk(ExprKind::LookupPath(p.clone()), span)
            }
            A::SearchPath(p) => mk(
                ExprKind::Fail(
                    ErrorKind::Unsupported,
                    format!("lookup path <{p}> is not supported: buildit has no NIX_PATH (only <buildit>, the standard library); import a path instead"),
                ),
                span,
            ),
            A::Var(name) => self.var(name, span, 0),
            A::List(items) => {
                let items: Vec<Rc<ir::Expr>> = items.iter().map(|i| self.expr(i)).collect();
                // a list of constants is itself a constant: built once, shared by every use
                if items.iter().all(|i| matches!(i.kind, ExprKind::Const(_))) {
                    let values = items
                        .iter()
                        .filter_map(|i| match &i.kind {
                            ExprKind::Const(v) => Some(v.clone()),
                            _ => None,
                        })
                        .collect();
                    return mk(ExprKind::Const(Value::list(values)), span);
                }
                mk(ExprKind::List(items), span)
            }
            A::Attrs { rec, bindings } => self.attrs(*rec, bindings, span),
            A::Let { bindings, body, .. } => self.let_(bindings, Some(body), span),
            A::LegacyLet(bindings) => self.let_(bindings, None, span),
            A::Lambda { param, body } => self.lambda(param, body, span),
            A::Apply { .. } => {
                let mut args = Vec::new();
                let mut f = e;
                while let A::Apply { func, arg } = &f.kind {
                    args.push(&**arg);
                    f = func;
                }
                let func = self.expr(f);
                let args = args.iter().rev().map(|a| self.expr(a)).collect();
                mk(ExprKind::Apply(func, args), span)
            }
            A::If { cond, then, else_ } => mk(
                ExprKind::If(self.expr(cond), self.expr(then), self.expr(else_)),
                span,
            ),
            A::Assert { cond, body } => {
                mk(ExprKind::Assert(self.expr(cond), self.expr(body)), span)
            }
            A::Select {
                expr,
                path,
                default,
            } => {
                let base = self.expr(expr);
                let keys = self.keys(path);
                let default = default.as_ref().map(|d| self.expr(d));
                mk(ExprKind::Select(base, keys, default), span)
            }
            A::HasAttr { expr, path } => {
                let base = self.expr(expr);
                let keys = self.keys(path);
                mk(ExprKind::HasAttr(base, keys), span)
            }
            A::Unary { op, expr } => {
                let inner = self.expr(expr);
                match op {
                    ast::UnaryOp::Neg => mk(ExprKind::Neg(inner), span),
                    ast::UnaryOp::Not => mk(ExprKind::Not(inner), span),
                }
            }
            A::Binary { op, lhs, rhs } => {
                mk(ExprKind::Binary(*op, self.expr(lhs), self.expr(rhs)), span)
            }
            A::Error => mk(
                ExprKind::Fail(ErrorKind::Parse, "syntax error".into()),
                span,
            ),
        }
    }

    /// Resolve a variable, skipping the `skip` innermost frames (for `inherit x;`).
    fn var(&mut self, name: &str, span: Span, skip: usize) -> Rc<ir::Expr> {
        let sym = Symbol::intern(name);
        let n = self.frames.len();
        for (depth, frame) in self.frames.iter().rev().enumerate().skip(skip) {
            if let Some(&index) = frame.names.get(&sym) {
                let _ = n;
                return mk(
                    ExprKind::Var {
                        depth: depth as u32,
                        index,
                    },
                    span,
                );
            }
        }
        if let Some(v) = self.ctx.globals.get(&sym) {
            return mk(ExprKind::Const(v.clone()), span);
        }
        let mut d = Diagnostic::error(
            ErrorKind::UndefinedVariable.code(),
            format!("undefined variable '{name}'"),
        )
        .with_label(span, "not defined here");
        let candidates: Vec<&str> = self
            .frames
            .iter()
            .flat_map(|f| f.names.keys().map(|s| s.as_str()))
            .chain(self.ctx.globals.keys().map(|s| s.as_str()))
            .collect();
        d = match did_you_mean(name, candidates) {
            Some(s) => d.with_help(format!("did you mean '{s}'?")),
            None => d.with_help(
                "define it with `let`, take it as a function argument, or check the spelling",
            ),
        };
        self.error(d);
        mk(
            ExprKind::Fail(
                ErrorKind::UndefinedVariable,
                format!("undefined variable '{name}'"),
            ),
            span,
        )
    }

    fn string(&mut self, parts: &[ast::StrPart], span: Span) -> Rc<ir::Expr> {
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                ast::StrPart::Lit(s) => out.push(StrPart::Lit(Rc::from(s.as_str()))),
                ast::StrPart::Interp(e) => out.push(StrPart::Interp(self.expr(e))),
            }
        }
        match out.as_slice() {
            [] => mk(ExprKind::Const(Value::string("")), span),
            [StrPart::Lit(s)] => mk(ExprKind::Const(Value::String(NixString::plain(&**s))), span),
            _ => mk(ExprKind::Str(out), span),
        }
    }

    fn path(&mut self, kind: PathKind, parts: &[ast::StrPart], span: Span) -> Rc<ir::Expr> {
        let mut out: Vec<StrPart> = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            match p {
                ast::StrPart::Lit(s) if i == 0 => {
                    let abs = match kind {
                        PathKind::Absolute => s.clone(),
                        PathKind::Relative => format!("{}/{}", self.ctx.base_dir, s),
                        PathKind::Home => match &self.ctx.home {
                            Some(h) => format!("{}/{}", h, s.trim_start_matches("~/")),
                            None => {
                                return mk(
                                    ExprKind::Fail(
                                        ErrorKind::Unsupported,
                                        "a `~/` path needs $HOME, which is not set".into(),
                                    ),
                                    span,
                                )
                            }
                        },
                    };
                    let mut c = canon_path(&abs);
                    if parts.len() > 1 && s.ends_with('/') && !c.ends_with('/') {
                        c.push('/');
                    }
                    out.push(StrPart::Lit(Rc::from(c)));
                }
                ast::StrPart::Lit(s) => out.push(StrPart::Lit(Rc::from(s.as_str()))),
                ast::StrPart::Interp(e) => {
                    if i == 0 {
                        // a path always starts with a literal; be defensive anyway
                        out.push(StrPart::Lit(Rc::from(format!("{}/", self.ctx.base_dir))));
                    }
                    out.push(StrPart::Interp(self.expr(e)));
                }
            }
        }
        match out.as_slice() {
            [StrPart::Lit(s)] => mk(
                ExprKind::Const(Value::Path(crate::value::PathStr::from(&**s))),
                span,
            ),
            _ => mk(ExprKind::Path(out), span),
        }
    }

    fn keys(&mut self, path: &[AttrKey]) -> Vec<Key> {
        path.iter()
            .map(|k| match k {
                AttrKey::Static(n, s) => Key::Static(Symbol::intern(n), *s),
                AttrKey::Dynamic(e) => Key::Dynamic(self.expr(e)),
            })
            .collect()
    }

    // ---- bindings ------------------------------------------------------------------------

    fn build_node<'a>(
        &mut self,
        bindings: &'a [Binding],
        rec: bool,
        allow_dynamic: bool,
    ) -> Node<'a> {
        let mut node = Node::default();
        node.rec = rec;
        for b in bindings {
            match b {
                Binding::Attr { path, value, span } => {
                    self.insert_path(&mut node, path, value, *span, allow_dynamic)
                }
                Binding::Inherit { from, names, .. } => {
                    let src = from.as_ref().map(|e| {
                        node.sources.push(e);
                        node.sources.len() - 1
                    });
                    for (n, s) in names {
                        let sym = Symbol::intern(n);
                        self.insert_static(&mut node, sym, Entry::Inherit(src, *s), *s);
                    }
                }
            }
        }
        node
    }

    fn insert_static<'a>(
        &mut self,
        node: &mut Node<'a>,
        sym: Symbol,
        entry: Entry<'a>,
        span: Span,
    ) {
        if let Some(&i) = node.index.get(&sym) {
            let first = node.statics[i].2;
            // merging two attribute-set literals is allowed (`a = { b = 1; }; a = { c = 2; };`)
            let incoming = match entry {
                Entry::Value(e) => match &e.kind {
                    ast::ExprKind::Attrs { rec, bindings } => Some((*rec, bindings)),
                    _ => None,
                },
                _ => None,
            };
            if let Some((rec, bindings)) = incoming {
                if self.as_nested(&mut node.statics[i].1) {
                    if let Entry::Nested(n) = &mut node.statics[i].1 {
                        n.rec |= rec;
                        let bs: &'a [Binding] = bindings;
                        self.merge_into(n, bs);
                        return;
                    }
                }
            }
            self.duplicate(sym.as_str(), span, first);
            return;
        }
        node.index.insert(sym, node.statics.len());
        node.statics.push((sym, entry, span));
    }

    fn duplicate(&mut self, name: &str, span: Span, first: Span) {
        self.error(
            Diagnostic::error(
                ErrorKind::DuplicateAttribute.code(),
                format!("attribute '{name}' already defined"),
            )
            .with_label(span, "defined again here")
            .with_label(first, "first defined here")
            .with_help("each attribute may be defined once; merge the definitions or rename one"),
        );
    }

    /// Turn an entry holding an attribute-set literal into a `Nested` node (so that paths can
    /// extend it). Returns false when it is not a set literal.
    fn as_nested<'a>(&mut self, entry: &mut Entry<'a>) -> bool {
        match entry {
            Entry::Nested(_) => true,
            Entry::Value(e) => {
                if let ast::ExprKind::Attrs { rec, bindings } = &e.kind {
                    let bs: &'a [Binding] = bindings;
                    let n = self.build_node(bs, *rec, true);
                    *entry = Entry::Nested(n);
                    true
                } else {
                    false
                }
            }
            Entry::Inherit(..) => false,
        }
    }

    fn merge_into<'a>(&mut self, node: &mut Node<'a>, bindings: &'a [Binding]) {
        for b in bindings {
            match b {
                Binding::Attr { path, value, span } => {
                    self.insert_path(node, path, value, *span, true)
                }
                Binding::Inherit { names, from, .. } => {
                    let src = from.as_ref().map(|e| {
                        node.sources.push(e);
                        node.sources.len() - 1
                    });
                    for (n, s) in names {
                        self.insert_static(node, Symbol::intern(n), Entry::Inherit(src, *s), *s);
                    }
                }
            }
        }
    }

    /// Insert `path = value` into `node`. Recurses once per key of the path (an input-sized
    /// depth: `a.a.a… = 1` with 100,000 keys), so each level goes through `stacker`.
    fn insert_path<'a>(
        &mut self,
        node: &mut Node<'a>,
        path: &'a [AttrKey],
        value: &'a ast::Expr,
        span: Span,
        allow_dynamic: bool,
    ) {
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || {
            self.insert_path_inner(node, path, value, span, allow_dynamic)
        })
    }

    fn insert_path_inner<'a>(
        &mut self,
        node: &mut Node<'a>,
        path: &'a [AttrKey],
        value: &'a ast::Expr,
        span: Span,
        allow_dynamic: bool,
    ) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        match first {
            AttrKey::Dynamic(k) => {
                if !allow_dynamic {
                    self.error(
                        Diagnostic::error(
                            "buildit::eval::dynamic-let",
                            "dynamic attributes are not allowed in `let`",
                        )
                        .with_label(k.span, "dynamic attribute")
                        .with_help("bind a static name, or build a set with `listToAttrs`"),
                    );
                    return;
                }
                let entry = if rest.is_empty() {
                    Entry::Value(value)
                } else {
                    let mut n = Node::default();
                    self.insert_path(&mut n, rest, value, span, true);
                    Entry::Nested(n)
                };
                node.dynamics.push((k, entry, span));
            }
            AttrKey::Static(name, kspan) => {
                let sym = Symbol::intern(name);
                if rest.is_empty() {
                    self.insert_static(node, sym, Entry::Value(value), *kspan);
                    return;
                }
                if let Some(&i) = node.index.get(&sym) {
                    let first_span = node.statics[i].2;
                    let ok = {
                        let entry = &mut node.statics[i].1;
                        // re-borrow dance: as_nested needs &mut self and &mut entry
                        let mut taken = std::mem::replace(entry, Entry::Inherit(None, span));
                        let ok = self.as_nested(&mut taken);
                        node.statics[i].1 = taken;
                        ok
                    };
                    if ok {
                        if let Entry::Nested(n) = &mut node.statics[i].1 {
                            let mut inner = std::mem::take(n);
                            self.insert_path(&mut inner, rest, value, span, true);
                            if let Entry::Nested(n) = &mut node.statics[i].1 {
                                *n = inner;
                            }
                        }
                    } else {
                        self.duplicate(name, *kspan, first_span);
                    }
                } else {
                    let mut n = Node::default();
                    self.insert_path(&mut n, rest, value, span, true);
                    node.index.insert(sym, node.statics.len());
                    node.statics.push((sym, Entry::Nested(n), *kspan));
                }
            }
        }
    }

    /// Lower one entry's value in the current scope. `hidden_base` is the slot index of the
    /// first `inherit (e)` source in the innermost frame (for `Entry::Inherit(Some(i))`), and
    /// `inherit_skip` the number of innermost frames a plain `inherit x;` looks past.
    fn entry<'a>(
        &mut self,
        sym: Symbol,
        entry: &Entry<'a>,
        span: Span,
        hidden_base: u32,
        inherit_skip: usize,
    ) -> Rc<ir::Expr> {
        match entry {
            Entry::Value(e) => self.expr(e),
            Entry::Inherit(None, s) => {
                let v = self.var(sym.as_str(), *s, inherit_skip);
                if let ExprKind::Var { depth, index } = v.kind {
                    // `var` skipped `inherit_skip` frames but reports depth from the innermost
                    return mk(ExprKind::Var { depth, index }, *s);
                }
                v
            }
            Entry::Inherit(Some(i), s) => mk(
                ExprKind::Select(
                    mk(
                        ExprKind::Var {
                            depth: 0,
                            index: hidden_base + *i as u32,
                        },
                        *s,
                    ),
                    vec![Key::Static(sym, *s)],
                    None,
                ),
                *s,
            ),
            Entry::Nested(n) => self.node_expr(n, span),
        }
    }

    /// A nested (path-built or merged) set: a record in the current scope, or a `rec` frame.
    /// Nodes nest as deep as attribute paths are long, so each level goes through `stacker`.
    fn node_expr<'a>(&mut self, n: &Node<'a>, span: Span) -> Rc<ir::Expr> {
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || self.node_expr_inner(n, span))
    }

    fn node_expr_inner<'a>(&mut self, n: &Node<'a>, span: Span) -> Rc<ir::Expr> {
        if n.rec {
            return self.rec_node(n, span);
        }
        if !n.sources.is_empty() {
            return self.sourced_node(n, span);
        }
        self.record(n, span, 0)
    }

    /// The record of a non-`rec` node in the current scope; `inherit_skip` frames (a hidden
    /// sources frame) are looked past by plain `inherit x;`.
    fn record<'a>(&mut self, n: &Node<'a>, span: Span, inherit_skip: usize) -> Rc<ir::Expr> {
        let statics = n
            .statics
            .iter()
            .map(|(s, e, sp)| (*s, self.entry(*s, e, *sp, 0, inherit_skip)))
            .collect();
        let dynamics = n
            .dynamics
            .iter()
            .map(|(k, e, sp)| {
                (
                    self.expr(k),
                    self.entry(Symbol::intern(""), e, *sp, 0, inherit_skip),
                    *sp,
                )
            })
            .collect();
        mk(
            ExprKind::Attrs(Rc::new(sorted_attrs(statics, dynamics))),
            span,
        )
    }

    /// Push the frame of a `let` or `rec` binding list (its names, then hidden slots for the
    /// `inherit (e)` sources) and lower every slot in it. The caller pops the frame.
    fn push_binding_frame<'a>(&mut self, n: &Node<'a>) -> Vec<Rc<ir::Expr>> {
        let names: FxHashMap<Symbol, u32> = n
            .statics
            .iter()
            .enumerate()
            .map(|(i, (s, _, _))| (*s, i as u32))
            .collect();
        let hidden_base = n.statics.len() as u32;
        self.frames.push(Frame { names });
        let mut slots: Vec<Rc<ir::Expr>> = n
            .statics
            .iter()
            .map(|(s, e, sp)| self.entry(*s, e, *sp, hidden_base, 1))
            .collect();
        for src in &n.sources {
            slots.push(self.expr(src));
        }
        slots
    }

    fn rec_node<'a>(&mut self, n: &Node<'a>, span: Span) -> Rc<ir::Expr> {
        let hidden_base = n.statics.len() as u32;
        let slots = self.push_binding_frame(n);
        let statics = n
            .statics
            .iter()
            .enumerate()
            .map(|(i, (s, _, sp))| {
                (
                    *s,
                    mk(
                        ExprKind::Var {
                            depth: 0,
                            index: i as u32,
                        },
                        *sp,
                    ),
                )
            })
            .collect();
        let dynamics = n
            .dynamics
            .iter()
            .map(|(k, e, sp)| {
                (
                    self.expr(k),
                    self.entry(Symbol::intern(""), e, *sp, hidden_base, 1),
                    *sp,
                )
            })
            .collect();
        self.frames.pop();
        let body = mk(
            ExprKind::Attrs(Rc::new(sorted_attrs(statics, dynamics))),
            span,
        );
        let ov = Symbol::intern("__overrides");
        let overrides = n
            .index
            .get(&ov)
            .map(|&i| Rc::new((i as u32, n.statics.iter().map(|(s, _, _)| *s).collect())));
        mk(
            ExprKind::Scope {
                slots,
                body,
                overrides,
            },
            span,
        )
    }

    fn attrs(&mut self, rec: bool, bindings: &[Binding], span: Span) -> Rc<ir::Expr> {
        let node = self.build_node(bindings, rec, true);
        self.node_expr(&node, span)
    }

    /// A plain set with `inherit (e) …`: each source is evaluated once, in a hidden frame.
    fn sourced_node<'a>(&mut self, node: &Node<'a>, span: Span) -> Rc<ir::Expr> {
        // `inherit (e) …` in a plain set: evaluate each source once, in a hidden frame (the
        // sources are evaluated in it too, so they are lowered with it in scope)
        self.frames.push(Frame {
            names: FxHashMap::default(),
        });
        let sources: Vec<Rc<ir::Expr>> = node.sources.iter().map(|e| self.expr(e)).collect();
        let body = self.record(node, span, 1);
        self.frames.pop();
        mk(
            ExprKind::Scope {
                slots: sources,
                body,
                overrides: None,
            },
            span,
        )
    }

    fn let_<'a>(
        &mut self,
        bindings: &'a [Binding],
        body: Option<&'a ast::Expr>,
        span: Span,
    ) -> Rc<ir::Expr> {
        let mut node = self.build_node(bindings, true, false);
        if body.is_none() {
            // legacy `let { …; body = e; }`: a rec set whose `body` is the value
            node.rec = true;
            let set = self.rec_node(&node, span);
            return mk(
                ExprKind::Select(set, vec![Key::Static(Symbol::intern("body"), span)], None),
                span,
            );
        }
        let slots = self.push_binding_frame(&node);
        let body = match body {
            Some(b) => self.expr(b),
            None => mk(ExprKind::Const(Value::Null), span),
        };
        self.frames.pop();
        mk(
            ExprKind::Scope {
                slots,
                body,
                overrides: None,
            },
            span,
        )
    }

    fn lambda(&mut self, param: &ast::Param, body: &ast::Expr, span: Span) -> Rc<ir::Expr> {
        match param {
            ast::Param::Ident(name, _) => {
                let mut names = FxHashMap::default();
                names.insert(Symbol::intern(name), 0);
                self.frames.push(Frame { names });
                let b = self.expr(body);
                self.frames.pop();
                mk(
                    ExprKind::Lambda(Rc::new(ir::Lambda {
                        param: ir::Param::Ident,
                        body: b,
                        span,
                        library: self.library,
                    })),
                    span,
                )
            }
            ast::Param::Pattern {
                fields,
                ellipsis,
                bind,
            } => {
                let mut names = FxHashMap::default();
                let mut seen: FxHashMap<Symbol, Span> = FxHashMap::default();
                for (i, f) in fields.iter().enumerate() {
                    let s = Symbol::intern(&f.name);
                    if let Some(first) = seen.insert(s, f.span) {
                        self.error(
                            Diagnostic::error(
                                "buildit::eval::duplicate-formal",
                                format!("duplicate formal function argument '{}'", f.name),
                            )
                            .with_label(f.span, "declared again here")
                            .with_label(first, "first declared here")
                            .with_help("remove one of the two"),
                        );
                    }
                    names.insert(s, i as u32);
                }
                if let Some((b, bspan)) = bind {
                    let s = Symbol::intern(b);
                    if seen.contains_key(&s) {
                        self.error(
                            Diagnostic::error(
                                "buildit::eval::duplicate-formal",
                                format!("duplicate formal function argument '{b}'"),
                            )
                            .with_label(*bspan, "also a field of the pattern")
                            .with_help("give the `@` binding another name"),
                        );
                    }
                    names.insert(s, fields.len() as u32);
                }
                self.frames.push(Frame { names });
                let ir_fields = fields
                    .iter()
                    .map(|f| ir::Field {
                        name: Symbol::intern(&f.name),
                        span: f.span,
                        default: f.default.as_ref().map(|d| self.expr(d)),
                    })
                    .collect();
                let b = self.expr(body);
                self.frames.pop();
                mk(
                    ExprKind::Lambda(Rc::new(ir::Lambda {
                        param: ir::Param::Pattern {
                            fields: ir_fields,
                            ellipsis: *ellipsis,
                            bind: bind.is_some(),
                        },
                        library: self.library,
                        body: b,
                        span,
                    })),
                    span,
                )
            }
        }
    }
}

fn sorted_attrs(
    mut statics: Vec<(Symbol, Rc<ir::Expr>)>,
    dynamics: Vec<(Rc<ir::Expr>, Rc<ir::Expr>, Span)>,
) -> AttrsIr {
    statics.sort_by_key(|(s, _)| *s);
    AttrsIr { statics, dynamics }
}

/// The closest candidate by edit distance, if close enough to be a plausible typo.
pub fn did_you_mean<'s>(
    name: &str,
    candidates: impl IntoIterator<Item = &'s str>,
) -> Option<&'s str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name || c.starts_with("__") && !name.starts_with("__") {
            continue;
        }
        let d = buildit_lang::text::edit_distance(name, c);
        let limit = (name.len().max(c.len()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildit_lang::SourceMap;

    fn lower_src(src: &str) -> Vec<Diagnostic> {
        let mut sm = SourceMap::new();
        let f = sm.add("t", src);
        let parsed = buildit_lang::parse(f, src);
        let e = parsed.expr.expect("parses");
        let globals = FxHashMap::default();
        let ctx = LowerCtx {
            globals: &globals,
            base_dir: "/".into(),
            home: None,
        };
        let (ir, diags) = lower(&e, &ctx);
        drop(ir);
        diags
    }

    /// Paths of 100,000 keys (in a set, in `let`, merged with a second path, in a `rec` set)
    /// lower and drop on a test thread's 2 MiB stack.
    #[test]
    fn deep_attribute_paths_are_stack_safe() {
        let path = vec!["a"; 100_000].join(".");
        assert!(lower_src(&format!("{{ {path} = 1; }}")).is_empty());
        assert!(lower_src(&format!("let {path} = 1; in a")).is_empty());
        assert!(lower_src(&format!("rec {{ {path}.b = 1; {path}.c = 2; }}")).is_empty());
        let dup = lower_src(&format!("{{ {path} = 1; {path} = 2; }}"));
        assert_eq!(dup.len(), 1, "one duplicate attribute");
    }
}
