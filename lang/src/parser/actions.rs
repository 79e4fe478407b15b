//! Semantic actions of the grammar: how each production builds AST nodes, plus the checks Nix
//! does at parse time (dynamic attributes in `let`/`inherit`, duplicate formals, `with`).
//!
//! Why a separate module: the grammar file stays a readable list of productions, and every node
//! is built through [`State::node`], which tracks the depth of the tree being built. A subtree
//! deeper than [`MAX_DEPTH`] is replaced by an `Error` node with a `buildit::parse::too-deep`
//! diagnostic, so no tree this crate hands out (or drops, including partial trees the parser
//! discards during error recovery) is deep enough to overflow the native stack when walked or
//! dropped recursively.

use super::dedent::{strip_indentation, IndPart};
use super::ops::{resolve, OpItem};
use crate::ast::{
    AttrKey, Binding, Expr, ExprKind, Name, Param, PatField, StrPart, TypeAlias, UnaryOp,
};
use crate::diag::Diagnostic;
use crate::lexer::{IndText, PathStart, Tok};
use crate::span::{FileId, Span};
use crate::types::Type;
use lalrpop_util::ErrorRecovery;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::rc::Rc;

/// Maximum nesting depth of expressions in a parsed tree.
pub const MAX_DEPTH: u32 = 2000;

/// Maximum nesting depth of a type in an annotation or alias.
pub const MAX_TYPE_DEPTH: u32 = 200;

/// One item of a `let … in` block: a binding or a type alias (`None` after an error).
pub enum LetItem {
    Bind(Option<D<Binding>>),
    Alias(Option<TypeAlias>),
}

/// A value with the depth of the deepest expression inside it (0 when it has none).
#[derive(Debug)]
pub struct D<T> {
    pub v: T,
    pub d: u32,
}

/// An expression with its depth (at least 1).
pub type N = D<Expr>;

impl<T> D<T> {
    pub fn new(v: T, d: u32) -> D<T> {
        D { v, d }
    }
}

/// Parsing progress, shared between the grammar actions and the token feed (see
/// `parser::Feed`): how many tokens were handed to the parser, how many had been when an action
/// last ran, and how many errors were recovered from.
#[derive(Debug, Default)]
pub struct Progress {
    pub delivered: Cell<usize>,
    pub last_action: Cell<usize>,
    pub errors: Cell<usize>,
}

/// The grammar's mutable context: the file, the diagnostics found by actions, and the parse
/// errors lalrpop recovered from.
pub struct State<'s> {
    pub file: FileId,
    pub src: &'s str,
    pub diags: Vec<Diagnostic>,
    pub recovered: Vec<ErrorRecovery<usize, Tok, Infallible>>,
    pub progress: Rc<Progress>,
    /// Whether a `type` alias or an alias name occurs (alias resolution is skipped otherwise).
    pub has_aliases: bool,
    too_deep: bool,
}

fn max_d<'a, T: 'a>(items: impl IntoIterator<Item = &'a D<T>>) -> u32 {
    items.into_iter().map(|x| x.d).max().unwrap_or(0)
}

impl<'s> State<'s> {
    pub fn new(file: FileId, src: &'s str) -> State<'s> {
        State {
            file,
            src,
            diags: Vec::new(),
            recovered: Vec::new(),
            progress: Rc::new(Progress::default()),
            has_aliases: false,
            too_deep: false,
        }
    }

    /// Record that an action ran: the parser is making progress (not skipping tokens).
    pub fn tick(&self) {
        self.progress.last_action.set(self.progress.delivered.get());
    }

    pub fn span(&self, l: usize, r: usize) -> Span {
        self.tick();
        Span::new(self.file, l, r)
    }

    pub fn prefix(&self, op: UnaryOp, l: usize) -> OpItem {
        self.tick();
        OpItem::Prefix(op, l)
    }

    pub fn ind_text(&self, t: IndText) -> IndPart {
        self.tick();
        IndPart::Text(t)
    }

    /// Build a node whose deepest child has depth `child_d`, or an `Error` node (and a
    /// diagnostic, once per file) when the result would exceed [`MAX_DEPTH`].
    pub fn node(&mut self, kind: ExprKind, span: Span, child_d: u32) -> N {
        self.tick();
        let d = child_d.saturating_add(1);
        if d > MAX_DEPTH {
            self.report_too_deep(span);
            // `kind` is dropped here; its children are at most MAX_DEPTH deep.
            drop(kind);
            return D::new(Expr::new(ExprKind::Error, span), 1);
        }
        D::new(Expr::new(kind, span), d)
    }

    pub fn report_too_deep(&mut self, span: Span) {
        if !self.too_deep {
            self.too_deep = true;
            self.diags.push(too_deep_diag(span));
        }
    }

    pub fn leaf(&mut self, kind: ExprKind, l: usize, r: usize) -> N {
        let span = self.span(l, r);
        self.node(kind, span, 0)
    }

    pub fn error_node(&mut self, l: usize, r: usize) -> N {
        self.leaf(ExprKind::Error, l, r)
    }

    pub fn recover(&mut self, e: ErrorRecovery<usize, Tok, Infallible>) {
        self.tick();
        self.progress.errors.set(self.progress.errors.get() + 1);
        self.recovered.push(e);
    }

    pub fn var(&mut self, id: (Name, Span)) -> N {
        let (name, span) = id;
        self.node(ExprKind::Var(name), span, 0)
    }

    pub fn string(&mut self, parts: Vec<D<StrPart>>, l: usize, r: usize) -> N {
        let d = max_d(&parts);
        let parts = merge_parts(parts.into_iter().map(|p| p.v));
        let span = self.span(l, r);
        self.node(ExprKind::Str(parts), span, d)
    }

    pub fn ind_string(&mut self, parts: Vec<IndPart>, l: usize, r: usize) -> N {
        let d = parts
            .iter()
            .map(|p| match p {
                IndPart::Interp(n) => n.d,
                IndPart::Text(_) => 0,
            })
            .max()
            .unwrap_or(0);
        let parts = merge_parts(strip_indentation(parts));
        let span = self.span(l, r);
        self.node(ExprKind::Str(parts), span, d)
    }

    pub fn path(&mut self, start: PathStart, rest: Vec<D<StrPart>>, l: usize, r: usize) -> N {
        let d = max_d(&rest);
        let parts = merge_parts(
            std::iter::once(StrPart::Lit(start.text)).chain(rest.into_iter().map(|p| p.v)),
        );
        let span = self.span(l, r);
        self.node(ExprKind::Path(start.kind, parts), span, d)
    }

    pub fn lit_part(&self, s: String) -> D<StrPart> {
        self.tick();
        D::new(StrPart::Lit(s), 0)
    }

    pub fn interp_part(&self, e: N) -> D<StrPart> {
        D::new(StrPart::Interp(e.v), e.d)
    }

    pub fn list(&mut self, elems: Vec<N>, l: usize, r: usize) -> N {
        let d = max_d(&elems);
        let span = self.span(l, r);
        self.node(
            ExprKind::List(elems.into_iter().map(|e| e.v).collect()),
            span,
            d,
        )
    }

    pub fn attrs(&mut self, rec: bool, binds: Vec<Option<D<Binding>>>, l: usize, r: usize) -> N {
        let binds: Vec<D<Binding>> = binds.into_iter().flatten().collect();
        let d = max_d(&binds);
        let span = self.span(l, r);
        let bindings = binds.into_iter().map(|b| b.v).collect();
        self.node(ExprKind::Attrs { rec, bindings }, span, d)
    }

    fn check_let_bindings(&mut self, binds: &[D<Binding>]) {
        for b in binds {
            if let Binding::Attr { path, .. } = &b.v {
                if let Some(k @ AttrKey::Dynamic(_)) = path.first() {
                    self.diags.push(
                        Diagnostic::error(
                            "buildit::parse::dynamic-let",
                            "dynamic attributes are not allowed in `let`",
                        )
                        .with_label(k.span(), "the name of a `let` binding must be known statically")
                        .with_help("bind a record instead: `let r = { ${k} = v; }; in …` and select from it"),
                    );
                }
            }
        }
    }

    pub fn let_in(&mut self, items: Vec<LetItem>, body: N, l: usize, r: usize) -> N {
        let mut binds: Vec<D<Binding>> = Vec::new();
        let mut aliases = Vec::new();
        for it in items {
            match it {
                LetItem::Bind(b) => binds.extend(b),
                LetItem::Alias(a) => aliases.extend(a),
            }
        }
        self.check_let_bindings(&binds);
        let d = max_d(&binds).max(body.d);
        let span = self.span(l, r);
        let bindings = binds.into_iter().map(|b| b.v).collect();
        self.node(
            ExprKind::Let {
                bindings,
                aliases,
                body: Box::new(body.v),
            },
            span,
            d,
        )
    }

    pub fn legacy_let(&mut self, binds: Vec<Option<D<Binding>>>, l: usize, r: usize) -> N {
        let binds: Vec<D<Binding>> = binds.into_iter().flatten().collect();
        let d = max_d(&binds);
        let span = self.span(l, r);
        self.node(
            ExprKind::LegacyLet(binds.into_iter().map(|b| b.v).collect()),
            span,
            d,
        )
    }

    pub fn lambda_ident(&mut self, id: (Name, Span), body: N, l: usize, r: usize) -> N {
        let span = self.span(l, r);
        let d = body.d;
        self.node(
            ExprKind::Lambda {
                param: Param::Ident(id.0, id.1),
                body: Box::new(body.v),
            },
            span,
            d,
        )
    }

    pub fn lambda_pattern(
        &mut self,
        formals: (Vec<D<PatField>>, bool),
        bind: Option<(Name, Span)>,
        body: N,
        l: usize,
        r: usize,
    ) -> N {
        let (fields, ellipsis) = formals;
        let mut seen = std::collections::HashMap::new();
        for f in &fields {
            if let Some(first) = seen.insert(f.v.name.as_str(), f.v.span) {
                self.diags
                    .push(duplicate_formal(&f.v.name, f.v.span, first));
            }
        }
        if let Some((name, span)) = &bind {
            if let Some(first) = seen.get(name.as_str()) {
                self.diags.push(duplicate_formal(name, *span, *first));
            }
        }
        let d = max_d(&fields).max(body.d);
        let span = self.span(l, r);
        self.node(
            ExprKind::Lambda {
                param: Param::Pattern {
                    fields: fields.into_iter().map(|f| f.v).collect(),
                    ellipsis,
                    bind,
                },
                body: Box::new(body.v),
            },
            span,
            d,
        )
    }

    pub fn formal(&self, id: (Name, Span), default: Option<N>) -> D<PatField> {
        self.tick();
        let d = default.as_ref().map_or(0, |n| n.d);
        D::new(
            PatField {
                name: id.0,
                span: id.1,
                default: default.map(|n| n.v),
            },
            d,
        )
    }

    pub fn assert(&mut self, cond: N, body: N, l: usize, r: usize) -> N {
        let span = self.span(l, r);
        let d = cond.d.max(body.d);
        self.node(
            ExprKind::Assert {
                cond: Box::new(cond.v),
                body: Box::new(body.v),
            },
            span,
            d,
        )
    }

    /// `with e; body`: parsed (so the rest of the file is still checked) but rejected.
    pub fn with(&mut self, scope: N, body: N, l: usize, semi_r: usize, r: usize) -> N {
        let scope_text = self.src.get(scope.v.span.range()).unwrap_or("e");
        let scope_text = if scope_text.len() <= 40 && !scope_text.contains('\n') {
            scope_text
        } else {
            "e"
        };
        let names = free_vars(&body.v);
        let names = if names.is_empty() {
            "a b".to_string()
        } else {
            names.into_iter().collect::<Vec<_>>().join(" ")
        };
        self.diags.push(
            Diagnostic::error("buildit::parse::with", "`with` is not supported in buildit")
                .with_label(self.span(l, semi_r), "`with` brings names into scope dynamically")
                .with_help(format!(
                    "scoping is static in buildit: bring the names you use into scope explicitly, e.g. `let inherit ({}) {}; in …`",
                    scope_text, names
                )),
        );
        let span = self.span(l, r);
        drop((scope, body));
        self.node(ExprKind::Error, span, 0)
    }

    pub fn if_(&mut self, c: N, t: N, e: N, l: usize, r: usize) -> N {
        let span = self.span(l, r);
        let d = c.d.max(t.d).max(e.d);
        self.node(
            ExprKind::If {
                cond: Box::new(c.v),
                then: Box::new(t.v),
                else_: Box::new(e.v),
            },
            span,
            d,
        )
    }

    pub fn select(
        &mut self,
        e: N,
        path: Vec<D<AttrKey>>,
        default: Option<N>,
        l: usize,
        r: usize,
    ) -> N {
        let span = self.span(l, r);
        let d =
            e.d.max(max_d(&path))
                .max(default.as_ref().map_or(0, |n| n.d));
        self.node(
            ExprKind::Select {
                expr: Box::new(e.v),
                path: path.into_iter().map(|k| k.v).collect(),
                default: default.map(|n| Box::new(n.v)),
            },
            span,
            d,
        )
    }

    /// `e or` (no attribute path): Nix applies `e` to a variable named `or`.
    pub fn apply_or(&mut self, e: N, or_l: usize, r: usize) -> N {
        let or_var = self.leaf(ExprKind::Var("or".to_string()), or_l, r);
        self.apply_chain(vec![e, or_var])
    }

    /// `f a b c` as `((f a) b) c`.
    pub fn apply_chain(&mut self, items: Vec<N>) -> N {
        let mut it = items.into_iter();
        let Some(mut acc) = it.next() else {
            return D::new(Expr::new(ExprKind::Error, self.span(0, 0)), 1);
        };
        for arg in it {
            let span = acc.v.span.to(arg.v.span);
            let d = acc.d.max(arg.d);
            acc = self.node(
                ExprKind::Apply {
                    func: Box::new(acc.v),
                    arg: Box::new(arg.v),
                },
                span,
                d,
            );
        }
        acc
    }

    pub fn ops(&mut self, items: Vec<OpItem>) -> N {
        resolve(self, items)
    }

    /// `(e :: T)`
    pub fn annot(&mut self, e: N, ty: crate::types::Type, l: usize, r: usize) -> N {
        let span = self.span(l, r);
        let d = e.d;
        self.node(
            ExprKind::Annot {
                expr: Box::new(e.v),
                ty,
            },
            span,
            d,
        )
    }

    /// `a.b :: T = e;`: the value is annotated.
    pub fn annot_binding(
        &mut self,
        path: Vec<D<AttrKey>>,
        ty: crate::types::Type,
        value: N,
        l: usize,
        r: usize,
    ) -> D<Binding> {
        let span = self.span(l, r);
        let d = value.d;
        let annotated = self.node(
            ExprKind::Annot {
                expr: Box::new(value.v),
                ty,
            },
            span,
            d,
        );
        self.attr_binding(path, annotated, l, r)
    }

    /// A named type in an annotation: a primitive, `Dyn`, `Derivation`, a lower-case type
    /// variable, or (any other capitalised name) a reference to a `type` alias, resolved after
    /// parsing (`types::aliases`).
    pub fn type_name(&mut self, id: Name, l: usize, r: usize) -> D<Type> {
        let span = self.span(l, r);
        let t = match crate::types::parse_type(&id) {
            Ok(t) => t,
            Err(_) if id.starts_with(|c: char| c.is_ascii_lowercase()) => Type::Var(id),
            Err(_) => {
                self.has_aliases = true;
                Type::Alias(id, span)
            }
        };
        D::new(t, 1)
    }

    /// A type node whose deepest child has depth `child_d`; too deep a type (a long `->`
    /// chain, say) becomes `Dyn` with a diagnostic, so no type tree overflows the native stack
    /// when it is walked or dropped.
    fn type_node(&mut self, t: Type, child_d: u32, l: usize, r: usize) -> D<Type> {
        let span = self.span(l, r);
        let d = child_d.saturating_add(1);
        if d > MAX_TYPE_DEPTH {
            self.report_too_deep(span);
            drop(t);
            return D::new(Type::Dyn, 1);
        }
        D::new(t, d)
    }

    pub fn type_fun(&mut self, a: D<Type>, b: D<Type>, l: usize, r: usize) -> D<Type> {
        let d = a.d.max(b.d);
        self.type_node(Type::Fun(Box::new(a.v), Box::new(b.v)), d, l, r)
    }

    pub fn type_list(&mut self, t: D<Type>, l: usize, r: usize) -> D<Type> {
        let d = t.d;
        self.type_node(Type::List(Box::new(t.v)), d, l, r)
    }

    pub fn type_record(
        &mut self,
        fields: Vec<(Name, bool, D<Type>)>,
        open: bool,
        l: usize,
        r: usize,
    ) -> D<Type> {
        let d = fields.iter().map(|(_, _, t)| t.d).max().unwrap_or(0);
        if let [(n, false, _)] = fields.as_slice() {
            if n == "_" && !open {
                let t = fields
                    .into_iter()
                    .next()
                    .map(|f| f.2.v)
                    .unwrap_or(Type::Dyn);
                return self.type_node(Type::Dict(Box::new(t)), d, l, r);
            }
        }
        let mut fields: Vec<crate::types::Field> = fields
            .into_iter()
            .map(|(name, optional, ty)| crate::types::Field {
                name,
                ty: ty.v,
                optional,
            })
            .collect();
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        self.type_node(Type::Record { fields, open }, d, l, r)
    }

    /// `type Name = T;` in a `let` block. The grammar accepts any two identifiers before the
    /// `=`; this checks that the first is `type` and that the name is capitalised (lower-case
    /// names in types are type variables).
    pub fn type_alias(
        &mut self,
        kw: (Name, Span),
        name: (Name, Span),
        ty: D<Type>,
        l: usize,
        r: usize,
    ) -> LetItem {
        let span = self.span(l, r);
        if kw.0 != "type" {
            self.diags.push(
                Diagnostic::error(
                    "buildit::parse::unexpected",
                    format!("unexpected `{}` after `{}`", name.0, kw.0),
                )
                .with_label(name.1, "expected `=`, `.` or `::` here")
                .with_help(format!(
                    "a binding is `{} = value;`; a type alias is `type {} = T;`",
                    kw.0, name.0
                )),
            );
            return LetItem::Alias(None);
        }
        if !name.0.starts_with(|c: char| c.is_ascii_uppercase()) {
            self.diags.push(
                Diagnostic::error(
                    "buildit::type::alias-name",
                    format!(
                        "the type alias `{}` must start with a capital letter",
                        name.0
                    ),
                )
                .with_label(name.1, "this name")
                .with_help(
                    "lower-case names in types are type variables; write e.g. `type Pkg = { … };`",
                ),
            );
            return LetItem::Alias(None);
        }
        if crate::types::parse_type(&name.0).is_ok() {
            self.diags.push(
                Diagnostic::error(
                    "buildit::type::alias-name",
                    format!("`{}` is a built-in type and cannot be redefined", name.0),
                )
                .with_label(name.1, "this name")
                .with_help("choose another name for the alias"),
            );
            return LetItem::Alias(None);
        }
        self.has_aliases = true;
        LetItem::Alias(Some(TypeAlias {
            name: name.0,
            name_span: name.1,
            ty: ty.v,
            span,
        }))
    }

    pub fn attr_binding(
        &mut self,
        path: Vec<D<AttrKey>>,
        value: N,
        l: usize,
        r: usize,
    ) -> D<Binding> {
        let d = max_d(&path).max(value.d);
        D::new(
            Binding::Attr {
                path: path.into_iter().map(|k| k.v).collect(),
                value: value.v,
                span: self.span(l, r),
            },
            d,
        )
    }

    pub fn inherit(
        &mut self,
        from: Option<N>,
        names: Vec<D<AttrKey>>,
        l: usize,
        r: usize,
    ) -> Option<D<Binding>> {
        let mut out = Vec::with_capacity(names.len());
        for k in names {
            match k.v {
                AttrKey::Static(name, span) => out.push((name, span)),
                AttrKey::Dynamic(e) => self.diags.push(
                    Diagnostic::error(
                        "buildit::parse::dynamic-inherit",
                        "dynamic attributes are not allowed in `inherit`",
                    )
                    .with_label(e.span, "`inherit` needs names known statically")
                    .with_help("write a binding instead: `${k} = r.${k};`"),
                ),
            }
        }
        let d = from.as_ref().map_or(0, |n| n.d);
        Some(D::new(
            Binding::Inherit {
                from: from.map(|n| Box::new(n.v)),
                names: out,
                span: self.span(l, r),
            },
            d,
        ))
    }

    /// `"…"` as an attribute name: static unless it has interpolations.
    pub fn string_key(&mut self, parts: Vec<D<StrPart>>, l: usize, r: usize) -> D<AttrKey> {
        let n = self.string(parts, l, r);
        self.key_of(n)
    }

    /// `${e}` as an attribute name: static when `e` is a plain string literal (as in Nix).
    pub fn interp_key(&mut self, e: N) -> D<AttrKey> {
        self.key_of(e)
    }

    fn key_of(&mut self, n: N) -> D<AttrKey> {
        let span = n.v.span;
        match n.v.kind {
            ExprKind::Str(parts) if parts.len() <= 1 => match parts.into_iter().next() {
                None => D::new(AttrKey::Static(String::new(), span), 0),
                Some(StrPart::Lit(s)) => D::new(AttrKey::Static(s, span), 0),
                Some(p @ StrPart::Interp(_)) => D::new(
                    AttrKey::Dynamic(Expr::new(ExprKind::Str(vec![p]), span)),
                    n.d,
                ),
            },
            kind => D::new(AttrKey::Dynamic(Expr::new(kind, span)), n.d),
        }
    }
}

/// Merge adjacent literal parts and drop empty ones.
pub fn merge_parts(parts: impl IntoIterator<Item = StrPart>) -> Vec<StrPart> {
    let mut out: Vec<StrPart> = Vec::new();
    for p in parts {
        match p {
            StrPart::Lit(s) if s.is_empty() => {}
            StrPart::Lit(s) => match out.last_mut() {
                Some(StrPart::Lit(prev)) => prev.push_str(&s),
                _ => out.push(StrPart::Lit(s)),
            },
            interp => out.push(interp),
        }
    }
    out
}

pub fn too_deep_diag(span: Span) -> Diagnostic {
    Diagnostic::error(
        "buildit::parse::too-deep",
        format!("expression nested too deeply (more than {} levels)", MAX_DEPTH),
    )
    .with_label(span, "nesting limit exceeded here")
    .with_help("split the expression into named `let` bindings, or build long lists and chains with functions like `builtins.foldl'`")
}

fn duplicate_formal(name: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(
        "buildit::parse::duplicate-formal",
        format!("duplicate function argument `{}`", name),
    )
    .with_label(span, "declared again here")
    .with_label(first, "first declared here")
    .with_help("each argument of a function pattern must have a distinct name")
}

/// Names of variables used in `e` that `e` does not bind itself (approximately: any name bound
/// anywhere inside `e` is excluded), minus common globals. At most 8, sorted.
fn free_vars(e: &Expr) -> BTreeSet<String> {
    const GLOBALS: &[&str] = &[
        "builtins",
        "true",
        "false",
        "null",
        "import",
        "toString",
        "map",
        "throw",
        "abort",
        "derivation",
        "baseNameOf",
        "dirOf",
        "removeAttrs",
        "isNull",
        "placeholder",
        "__curPos",
        "or",
        "fetchTarball",
        "scopedImport",
    ];
    let mut used = BTreeSet::new();
    let mut bound = BTreeSet::new();
    let mut stack: Vec<&Expr> = vec![e];
    while let Some(e) = stack.pop() {
        match &e.kind {
            ExprKind::Var(n) => {
                used.insert(n.clone());
            }
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::SearchPath(_)
            | ExprKind::Uri(_)
            | ExprKind::Error => {}
            ExprKind::Str(parts) | ExprKind::Path(_, parts) => {
                for p in parts {
                    if let StrPart::Interp(x) = p {
                        stack.push(x);
                    }
                }
            }
            ExprKind::List(xs) => stack.extend(xs.iter()),
            ExprKind::Attrs { bindings, rec } => {
                visit_bindings(bindings, *rec, &mut stack, &mut bound, &mut used);
            }
            ExprKind::LegacyLet(bindings) => {
                visit_bindings(bindings, true, &mut stack, &mut bound, &mut used);
            }
            ExprKind::Annot { expr, .. } => stack.push(expr),
            ExprKind::Let { bindings, body, .. } => {
                visit_bindings(bindings, true, &mut stack, &mut bound, &mut used);
                stack.push(body);
            }
            ExprKind::Lambda { param, body } => {
                match param {
                    Param::Ident(n, _) => {
                        bound.insert(n.clone());
                    }
                    Param::Pattern { fields, bind, .. } => {
                        for f in fields {
                            bound.insert(f.name.clone());
                            if let Some(d) = &f.default {
                                stack.push(d);
                            }
                        }
                        if let Some((n, _)) = bind {
                            bound.insert(n.clone());
                        }
                    }
                }
                stack.push(body);
            }
            ExprKind::Apply { func, arg } => {
                stack.push(func);
                stack.push(arg);
            }
            ExprKind::If { cond, then, else_ } => {
                stack.push(cond);
                stack.push(then);
                stack.push(else_);
            }
            ExprKind::Assert { cond, body } => {
                stack.push(cond);
                stack.push(body);
            }
            ExprKind::Select {
                expr,
                path,
                default,
            } => {
                stack.push(expr);
                push_keys(path, &mut stack);
                if let Some(d) = default {
                    stack.push(d);
                }
            }
            ExprKind::HasAttr { expr, path } => {
                stack.push(expr);
                push_keys(path, &mut stack);
            }
            ExprKind::Unary { expr, .. } => stack.push(expr),
            ExprKind::Binary { lhs, rhs, .. } => {
                stack.push(lhs);
                stack.push(rhs);
            }
        }
    }
    used.into_iter()
        .filter(|n| !bound.contains(n) && !GLOBALS.contains(&n.as_str()))
        .take(8)
        .collect()
}

fn push_keys<'a>(path: &'a [AttrKey], stack: &mut Vec<&'a Expr>) {
    for k in path {
        if let AttrKey::Dynamic(e) = k {
            stack.push(e);
        }
    }
}

fn visit_bindings<'a>(
    bindings: &'a [Binding],
    binds_names: bool,
    stack: &mut Vec<&'a Expr>,
    bound: &mut BTreeSet<String>,
    used: &mut BTreeSet<String>,
) {
    for b in bindings {
        match b {
            Binding::Attr { path, value, .. } => {
                if binds_names {
                    if let Some(AttrKey::Static(n, _)) = path.first() {
                        bound.insert(n.clone());
                    }
                }
                push_keys(path, stack);
                stack.push(value);
            }
            Binding::Inherit { from, names, .. } => match from {
                Some(f) => {
                    stack.push(f);
                    if binds_names {
                        for (n, _) in names {
                            bound.insert(n.clone());
                        }
                    }
                }
                None => {
                    for (n, _) in names {
                        used.insert(n.clone());
                    }
                }
            },
        }
    }
}
