//! Resolution of `type` aliases (`let type Pkg = { name : String, .. }; in …`).
//!
//! Aliases are abbreviations: this pass, run by [`crate::parse`] right after parsing, replaces
//! every alias name in an annotation (and in other aliases) by the type it stands for, so the
//! checker and the evaluator (whose run-time casts need the shape) only ever see plain types.
//! It is name resolution of the type namespace, which is purely lexical, hence done once here
//! rather than by each consumer.
//!
//! Scoping: the aliases of a `let … in` block are visible in every annotation of the block (its
//! bindings and its body, nested expressions included) and in each other, in any order; an
//! inner block may shadow an outer alias. An alias that refers to itself, directly or through
//! other aliases, is an error (`buildit::type::recursive-alias`): there are no recursive types.
//! An unknown capitalised name is `buildit::type::unknown-type` with "did you mean". After an
//! error the offending name stands for `Dyn`, so one mistake is reported once.

use super::infer::did_you_mean;
use super::ty::Type;
use crate::ast::{AttrKey, Binding, Expr, ExprKind, Param, StrPart, TypeAlias};
use crate::diag::Diagnostic;
use crate::span::Span;

/// The built-in type names, for "did you mean".
const BUILTIN_NAMES: [&str; 8] = [
    "Int",
    "Float",
    "Bool",
    "String",
    "Path",
    "Null",
    "Dyn",
    "Derivation",
];

/// An expanded alias larger than this many type nodes is an error (aliases that double at each
/// level would otherwise expand exponentially).
const MAX_EXPANDED_NODES: usize = 4000;
/// An expanded alias deeper than this is an error (the checker walks types recursively).
const MAX_EXPANDED_DEPTH: usize = 200;

/// Resolve every alias of `expr` in place, appending the diagnostics found.
pub(crate) fn resolve(expr: &mut Expr, diags: &mut Vec<Diagnostic>) {
    let mut r = Resolver {
        scopes: Vec::new(),
        diags,
    };
    r.expr(expr);
}

enum State {
    Todo,
    InProgress,
    Done(Type),
}

struct Resolver<'d> {
    /// Resolved aliases of the enclosing `let` blocks, innermost last.
    scopes: Vec<Vec<(String, Type)>>,
    diags: &'d mut Vec<Diagnostic>,
}

/// The aliases of the block being resolved: raw definitions and their resolution state.
struct Block<'a> {
    aliases: &'a [TypeAlias],
    state: Vec<State>,
    /// Indices of the aliases being expanded, outermost first (to name a cycle).
    chain: Vec<usize>,
}

impl Resolver<'_> {
    fn expr(&mut self, e: &mut Expr) {
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.expr_inner(e));
    }

    fn expr_inner(&mut self, e: &mut Expr) {
        let span = e.span;
        match &mut e.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::SearchPath(_)
            | ExprKind::Uri(_)
            | ExprKind::Var(_)
            | ExprKind::Error => {}
            ExprKind::Str(parts) | ExprKind::Path(_, parts) => self.parts(parts),
            ExprKind::List(xs) => {
                for x in xs {
                    self.expr(x);
                }
            }
            ExprKind::Attrs { bindings, .. } | ExprKind::LegacyLet(bindings) => {
                self.bindings(bindings)
            }
            ExprKind::Let {
                bindings,
                aliases,
                body,
            } => {
                let scope = self.block(aliases);
                self.scopes.push(scope);
                self.bindings(bindings);
                self.expr(body);
                self.scopes.pop();
            }
            ExprKind::Lambda { param, body } => {
                if let Param::Pattern { fields, .. } = param {
                    for f in fields {
                        if let Some(d) = &mut f.default {
                            self.expr(d);
                        }
                    }
                }
                self.expr(body);
            }
            ExprKind::Apply { func: a, arg: b }
            | ExprKind::Binary { lhs: a, rhs: b, .. }
            | ExprKind::Assert { cond: a, body: b } => {
                self.expr(a);
                self.expr(b);
            }
            ExprKind::If { cond, then, else_ } => {
                self.expr(cond);
                self.expr(then);
                self.expr(else_);
            }
            ExprKind::Select {
                expr,
                path,
                default,
            } => {
                self.expr(expr);
                self.keys(path);
                if let Some(d) = default {
                    self.expr(d);
                }
            }
            ExprKind::HasAttr { expr, path } => {
                self.expr(expr);
                self.keys(path);
            }
            ExprKind::Unary { expr, .. } => self.expr(expr),
            ExprKind::Annot { expr, ty } => {
                let t = std::mem::replace(ty, Type::Dyn);
                *ty = self.use_site(t, span);
                self.expr(expr);
            }
        }
    }

    fn parts(&mut self, parts: &mut [StrPart]) {
        for p in parts {
            if let StrPart::Interp(x) = p {
                self.expr(x);
            }
        }
    }

    fn keys(&mut self, path: &mut [AttrKey]) {
        for k in path {
            if let AttrKey::Dynamic(d) = k {
                self.expr(d);
            }
        }
    }

    fn bindings(&mut self, bindings: &mut [Binding]) {
        for b in bindings {
            match b {
                Binding::Attr { path, value, .. } => {
                    self.keys(path);
                    self.expr(value);
                }
                Binding::Inherit { from, .. } => {
                    if let Some(f) = from {
                        self.expr(f);
                    }
                }
            }
        }
    }

    /// Resolve the aliases of one block in place; returns them as the block's scope.
    fn block(&mut self, aliases: &mut [TypeAlias]) -> Vec<(String, Type)> {
        if aliases.is_empty() {
            return Vec::new();
        }
        // a name defined twice: the first definition counts
        let mut keep = vec![true; aliases.len()];
        for i in 0..aliases.len() {
            if let Some(j) = (0..i).find(|j| keep[*j] && aliases[*j].name == aliases[i].name) {
                keep[i] = false;
                self.diags.push(
                    Diagnostic::error(
                        "buildit::type::duplicate-alias",
                        format!("the type alias `{}` is defined twice", aliases[i].name),
                    )
                    .with_label(aliases[i].name_span, "defined again here")
                    .with_label(aliases[j].name_span, "first defined here")
                    .with_help("remove or rename one of the definitions"),
                );
            }
        }
        let mut block = Block {
            aliases,
            state: keep
                .iter()
                .map(|k| {
                    if *k {
                        State::Todo
                    } else {
                        State::Done(Type::Dyn)
                    }
                })
                .collect(),
            chain: Vec::new(),
        };
        for i in 0..block.aliases.len() {
            self.expand(&mut block, i);
        }
        let resolved: Vec<Type> = block
            .state
            .into_iter()
            .map(|s| match s {
                State::Done(t) => t,
                _ => Type::Dyn,
            })
            .collect();
        let mut scope = Vec::new();
        for ((a, t), k) in aliases.iter_mut().zip(resolved).zip(keep) {
            a.ty = t.clone();
            if k {
                scope.push((a.name.clone(), t));
            }
        }
        scope
    }

    /// The resolved type of alias `i` of `block`.
    fn expand(&mut self, block: &mut Block<'_>, i: usize) -> Type {
        match &block.state[i] {
            State::Done(t) => return t.clone(),
            State::InProgress => return Type::Dyn, // reported by the caller
            State::Todo => {}
        }
        block.state[i] = State::InProgress;
        block.chain.push(i);
        let raw = block.aliases[i].ty.clone();
        let t = self.subst(raw, &mut Some(block), 0);
        let t = self.limit(t, block.aliases[i].name_span, &block.aliases[i].name);
        block.chain.pop();
        block.state[i] = State::Done(t.clone());
        t
    }

    /// An annotation's type (at `span`) with its aliases replaced.
    fn use_site(&mut self, t: Type, span: Span) -> Type {
        if !mentions_alias(&t, 0) {
            return t;
        }
        let t = self.subst(t, &mut None, 0);
        self.limit(t, span, "annotation")
    }

    fn subst(&mut self, t: Type, block: &mut Option<&mut Block<'_>>, depth: usize) -> Type {
        if depth > MAX_EXPANDED_DEPTH {
            return Type::Dyn;
        }
        match t {
            Type::Alias(name, span) => self.lookup(&name, span, block),
            Type::List(e) => Type::List(Box::new(self.subst(*e, block, depth + 1))),
            Type::Dict(e) => Type::Dict(Box::new(self.subst(*e, block, depth + 1))),
            Type::Fun(a, b) => Type::Fun(
                Box::new(self.subst(*a, block, depth + 1)),
                Box::new(self.subst(*b, block, depth + 1)),
            ),
            Type::Record { fields, open } => Type::Record {
                fields: fields
                    .into_iter()
                    .map(|mut f| {
                        f.ty = self.subst(f.ty, block, depth + 1);
                        f
                    })
                    .collect(),
                open,
            },
            other => other,
        }
    }

    fn lookup(&mut self, name: &str, span: Span, block: &mut Option<&mut Block<'_>>) -> Type {
        if let Some(b) = block.as_deref_mut() {
            if let Some(i) = b.aliases.iter().position(|a| a.name == name) {
                if matches!(b.state[i], State::InProgress) {
                    self.recursive(b, i, span);
                    return Type::Dyn;
                }
                return self.expand(b, i);
            }
        }
        for scope in self.scopes.iter().rev() {
            if let Some((_, t)) = scope.iter().rev().find(|(n, _)| n == name) {
                return t.clone();
            }
        }
        self.unknown(name, span, block.as_deref());
        Type::Dyn
    }

    fn recursive(&mut self, b: &Block<'_>, i: usize, span: Span) {
        let start = b.chain.iter().position(|j| *j == i).unwrap_or(0);
        let mut cycle: Vec<String> = b.chain[start..]
            .iter()
            .map(|j| format!("`{}`", b.aliases[*j].name))
            .collect();
        cycle.push(format!("`{}`", b.aliases[i].name));
        let a = &b.aliases[i];
        let message = if cycle.len() == 2 {
            format!("the type alias `{}` refers to itself", a.name)
        } else {
            format!(
                "the type alias `{}` is recursive: {}",
                a.name,
                cycle.join(" → ")
            )
        };
        self.diags.push(
            Diagnostic::error("buildit::type::recursive-alias", message)
                .with_label(span, format!("`{}` is used here", a.name))
                .with_label(a.name_span, "inside its own definition")
                .with_help("an alias is an abbreviation and cannot be recursive; use an open record `{ .. }`, a dictionary or `Dyn` for the recursive part"),
        );
    }

    fn unknown(&mut self, name: &str, span: Span, block: Option<&Block<'_>>) {
        let mut candidates: Vec<String> = BUILTIN_NAMES.iter().map(|s| s.to_string()).collect();
        if let Some(b) = block {
            candidates.extend(b.aliases.iter().map(|a| a.name.clone()));
        }
        for scope in &self.scopes {
            candidates.extend(scope.iter().map(|(n, _)| n.clone()));
        }
        let help = match did_you_mean(name, &candidates) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "types are Int, Float, Bool, String, Path, Null, Dyn, Derivation, [T], { a : T, .. }, { _ : T }, A -> B, lower-case variables and the aliases declared with `type Name = T;` in an enclosing `let`".to_string(),
        };
        self.diags.push(
            Diagnostic::error(
                "buildit::type::unknown-type",
                format!("unknown type `{name}`"),
            )
            .with_label(span, "not a built-in type nor a `type` alias in scope")
            .with_help(help),
        );
    }

    /// `t`, or `Dyn` with a diagnostic when the expansion of alias `name` (or of an
    /// annotation) is too large.
    fn limit(&mut self, t: Type, span: Span, name: &str) -> Type {
        let (nodes, depth) = size(&t, 0);
        if nodes <= MAX_EXPANDED_NODES && depth <= MAX_EXPANDED_DEPTH {
            return t;
        }
        let what = if name == "annotation" {
            "this annotation".to_string()
        } else {
            format!("the type alias `{name}`")
        };
        self.diags.push(
            Diagnostic::error(
                "buildit::type::alias-too-large",
                format!("{what} expands to a type too large to check"),
            )
            .with_label(span, "expanded here")
            .with_help(format!(
                "an expanded alias may have at most {MAX_EXPANDED_NODES} parts, nested at most {MAX_EXPANDED_DEPTH} deep; use `Dyn` or an open record for parts of it"
            )),
        );
        Type::Dyn
    }
}

/// Whether an alias name occurs in `t`.
fn mentions_alias(t: &Type, depth: usize) -> bool {
    if depth > MAX_EXPANDED_DEPTH {
        return false;
    }
    match t {
        Type::Alias(..) => true,
        Type::List(e) | Type::Dict(e) => mentions_alias(e, depth + 1),
        Type::Fun(a, b) => mentions_alias(a, depth + 1) || mentions_alias(b, depth + 1),
        Type::Record { fields, .. } => fields.iter().any(|f| mentions_alias(&f.ty, depth + 1)),
        _ => false,
    }
}

/// `(nodes, depth)` of a type, counting stops early past the limits.
fn size(t: &Type, depth: usize) -> (usize, usize) {
    if depth > MAX_EXPANDED_DEPTH {
        return (1, depth);
    }
    match t {
        Type::List(e) | Type::Dict(e) => {
            let (n, d) = size(e, depth + 1);
            (n + 1, d)
        }
        Type::Fun(a, b) => {
            let (n1, d1) = size(a, depth + 1);
            let (n2, d2) = size(b, depth + 1);
            (n1 + n2 + 1, d1.max(d2))
        }
        Type::Record { fields, .. } => {
            let mut n = 1;
            let mut d = depth;
            for f in fields {
                let (fnodes, fd) = size(&f.ty, depth + 1);
                n += fnodes;
                d = d.max(fd);
                if n > MAX_EXPANDED_NODES {
                    break;
                }
            }
            (n, d)
        }
        _ => (1, depth),
    }
}
