//! Inference proper: an arena of type nodes with union-find links, unification with a trail (so
//! a tentative unification can be undone and replaced by `Dyn`), levels for generalisation, and
//! the walk over the AST. Recursion goes through `stacker::maybe_grow`, so deep inputs cannot
//! overflow the native stack.

use super::builtins::{BUILTIN_TYPES, GLOBAL_NAMES};
use super::imports::{ImportTarget, Imports};
use super::ty::{parse_type, Field, Type};
use crate::ast::{AttrKey, BinOp, Binding, Expr, ExprKind, Param, StrPart, UnaryOp};
use crate::diag::Diagnostic;
use crate::span::Span;
use std::collections::{BTreeMap, HashMap};

type T = u32;
const GENERIC: u32 = u32::MAX;

/// What an unresolved variable may become (a chain: `Num ⊂ Add ⊂ Cmp ⊂ Any`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `Int` or `Float`
    Num,
    /// numbers, `String`, `Path` (operands of `+`)
    Add,
    /// numbers, strings, paths, lists (operands of `<`)
    Cmp,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prim {
    Int,
    Float,
    Bool,
    String,
    Path,
    Null,
}

#[derive(Clone, Debug)]
struct RField {
    name: String,
    ty: T,
    optional: bool,
}

#[derive(Clone, Debug)]
enum Node {
    Var {
        level: u32,
        kind: Kind,
    },
    Link(T),
    Prim(Prim),
    List(T),
    Fun(T, T),
    /// fields sorted by name; `tail` is `None` when closed, else a row (a variable, another
    /// record, or `Dyn`)
    Record {
        fields: Vec<RField>,
        tail: Option<T>,
    },
    Dict(T),
    Dyn,
}

enum Tail {
    Closed,
    Open(T),
    Unknown,
}

enum UErr {
    Mismatch(T, T),
    Kind(Kind, T),
    Missing(String, Vec<String>),
    Unexpected(String, Vec<String>),
    Infinite,
}

/// The types of the names in scope before the program: builtins and globals, plus any the
/// caller adds (the REPL's variables).
#[derive(Clone, Debug)]
pub struct TypeEnv {
    names: Vec<(String, Type)>,
    /// how many of `names` are the builtin scope (the rest are the caller's)
    builtin_len: usize,
}

impl Default for TypeEnv {
    fn default() -> Self {
        TypeEnv::new()
    }
}

impl TypeEnv {
    /// The global scope of every program: `builtins`, `true`, `false`, `null`, the global
    /// builtins and their `__name` aliases.
    pub fn new() -> TypeEnv {
        let mut names = Vec::new();
        let mut fields = Vec::new();
        for (name, sig) in BUILTIN_TYPES {
            let ty = parse_type(sig).unwrap_or(Type::Dyn);
            if GLOBAL_NAMES.contains(name) {
                names.push((name.to_string(), ty.clone()));
            }
            names.push((format!("__{name}"), ty.clone()));
            fields.push(Field {
                name: name.to_string(),
                ty,
                optional: false,
            });
        }
        // `builtins.builtins` is the record itself: one level is enough for checking
        fields.push(Field {
            name: "builtins".into(),
            ty: Type::Dyn,
            optional: false,
        });
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        names.push((
            "builtins".into(),
            Type::Record {
                fields,
                open: false,
            },
        ));
        names.push(("true".into(), Type::Bool));
        names.push(("false".into(), Type::Bool));
        names.push(("null".into(), Type::Null));
        let builtin_len = names.len();
        TypeEnv { names, builtin_len }
    }

    /// Add (or shadow) a name; `Type::Dyn` when its type is unknown.
    pub fn insert(&mut self, name: impl Into<String>, ty: Type) {
        self.names.push((name.into(), ty));
    }
}

/// The outcome of checking one expression.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub ty: Type,
    pub diagnostics: Vec<Diagnostic>,
    /// The type as another file importing this one sees it: like `ty`, with what each type
    /// variable may become kept in its name (see [`super::imports`]); not for printing.
    pub interface: Type,
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// Type-check a program in the default global scope.
pub fn check(expr: &Expr) -> CheckResult {
    check_with(expr, &TypeEnv::new())
}

/// Type-check a program in the given scope.
pub fn check_with(expr: &Expr, env: &TypeEnv) -> CheckResult {
    check_program(
        expr,
        env,
        CheckOptions {
            imports: &mut super::imports::NoImports,
            strict: false,
        },
    )
}

/// How to check a program: where imported files' types come from, and whether every silent
/// fallback to `Dyn` is an error (`buildit check --strict`).
pub struct CheckOptions<'a> {
    pub imports: &'a mut dyn Imports,
    pub strict: bool,
}

/// Type-check a program in the given scope, with typed imports and optionally strict.
pub fn check_program(expr: &Expr, env: &TypeEnv, opts: CheckOptions<'_>) -> CheckResult {
    let mut c = Checker {
        imports: Some(opts.imports),
        strict: opts.strict,
        builtin_len: env.builtin_len,
        ..Checker::default()
    };
    for (name, ty) in &env.names {
        c.level = 1;
        let t = c.node_of_type(ty, &mut HashMap::new());
        c.level = 0;
        c.generalize(t);
        c.push_env(name.clone(), t);
    }
    let t = c.infer(expr);
    let ty = c.type_of_node(t, &mut Namer::default(), 0);
    let interface = c.type_of_node(
        t,
        &mut Namer {
            exact: true,
            ..Namer::default()
        },
        0,
    );
    CheckResult {
        ty,
        diagnostics: c.diags,
        interface,
    }
}

#[derive(Default)]
struct Checker<'i> {
    nodes: Vec<Node>,
    level: u32,
    env: Vec<(String, T)>,
    /// name → positions in `env`, innermost last
    index: HashMap<String, Vec<usize>>,
    /// `(variable, field)` pairs known present (inside `if v ? field then …`)
    guards: Vec<(String, String)>,
    diags: Vec<Diagnostic>,
    trail: Vec<(T, Node)>,
    trailing: u32,
    /// where `import` of a path literal gets its type (`None`: every import is `Dyn`)
    imports: Option<&'i mut dyn Imports>,
    /// report every silent fallback to `Dyn` as an error
    strict: bool,
    /// positions of `env` below this are the builtin scope
    builtin_len: usize,
    /// the expression directly under a `::` annotation: its `Dyn` is explicit, not silent
    annotated: Option<Span>,
    /// the annotated type of the lambda about to be inferred (`f :: A -> B = x: …`): its
    /// parameter gets `A` before the body is inferred, so the body sees the annotation
    lambda_hint: Option<T>,
}

const RED: usize = 64 * 1024;
const GROW: usize = 1024 * 1024;

impl<'i> Checker<'i> {
    // ---------------------------------------------------------------- the arena

    fn add(&mut self, n: Node) -> T {
        self.nodes.push(n);
        (self.nodes.len() - 1) as T
    }
    fn node(&self, t: T) -> &Node {
        &self.nodes[t as usize]
    }
    fn set(&mut self, t: T, n: Node) {
        if self.trailing > 0 {
            let old = std::mem::replace(&mut self.nodes[t as usize], n);
            self.trail.push((t, old));
        } else {
            self.nodes[t as usize] = n;
        }
    }
    fn fresh(&mut self) -> T {
        self.add(Node::Var {
            level: self.level,
            kind: Kind::Any,
        })
    }
    fn fresh_kind(&mut self, kind: Kind) -> T {
        self.add(Node::Var {
            level: self.level,
            kind,
        })
    }
    fn prim(&mut self, p: Prim) -> T {
        self.add(Node::Prim(p))
    }
    fn dyn_(&mut self) -> T {
        self.add(Node::Dyn)
    }
    fn resolve(&mut self, mut t: T) -> T {
        let start = t;
        while let Node::Link(n) = self.node(t) {
            t = *n;
        }
        // path compression (not trailed: links never change meaning)
        let mut s = start;
        while let Node::Link(n) = self.nodes[s as usize].clone() {
            if n == t {
                break;
            }
            if self.trailing == 0 {
                self.nodes[s as usize] = Node::Link(t);
            }
            s = n;
        }
        t
    }

    /// The fields and tail of a record, following row links.
    fn record_view(&mut self, t: T) -> Option<(Vec<RField>, Tail)> {
        let t = self.resolve(t);
        let Node::Record { fields, tail } = self.node(t).clone() else {
            return None;
        };
        let mut fields = fields;
        let mut tail = tail;
        let mut guard = 0;
        loop {
            guard += 1;
            let Some(tl) = tail else {
                break;
            };
            let tl = self.resolve(tl);
            match self.node(tl).clone() {
                Node::Var { .. } => return Some((sorted(fields), Tail::Open(tl))),
                Node::Record {
                    fields: more,
                    tail: next,
                } if guard < 10_000 => {
                    for f in more {
                        if !fields.iter().any(|g| g.name == f.name) {
                            fields.push(f);
                        }
                    }
                    tail = next;
                }
                _ => return Some((sorted(fields), Tail::Unknown)),
            }
        }
        Some((sorted(fields), Tail::Closed))
    }

    // ---------------------------------------------------------------- conversion

    fn node_of_type(&mut self, ty: &Type, vars: &mut HashMap<String, T>) -> T {
        match ty {
            Type::Int => self.prim(Prim::Int),
            Type::Float => self.prim(Prim::Float),
            Type::Bool => self.prim(Prim::Bool),
            Type::String => self.prim(Prim::String),
            Type::Path => self.prim(Prim::Path),
            Type::Null => self.prim(Prim::Null),
            Type::Dyn | Type::Elided | Type::Alias(..) => self.dyn_(),
            Type::Var(v) => {
                if let Some(t) = vars.get(v) {
                    return *t;
                }
                // an interface's variables carry their kind (`super::imports`)
                let kind = match v.strip_prefix('\'').and_then(|r| r.chars().next()) {
                    Some('n') => Kind::Num,
                    Some('a') => Kind::Add,
                    Some('c') => Kind::Cmp,
                    Some(_) => Kind::Any,
                    None if v.starts_with("num") => Kind::Num,
                    None => Kind::Any,
                };
                let t = self.fresh_kind(kind);
                vars.insert(v.clone(), t);
                t
            }
            Type::List(e) => {
                let e = self.node_of_type(e, vars);
                self.add(Node::List(e))
            }
            Type::Fun(a, b) => {
                let a = self.node_of_type(a, vars);
                let b = self.node_of_type(b, vars);
                self.add(Node::Fun(a, b))
            }
            Type::Dict(e) => {
                let e = self.node_of_type(e, vars);
                self.add(Node::Dict(e))
            }
            Type::Record { fields, open } => {
                let mut fs = Vec::new();
                for f in fields {
                    let ty = self.node_of_type(&f.ty, vars);
                    fs.push(RField {
                        name: f.name.clone(),
                        ty,
                        optional: f.optional,
                    });
                }
                let tail = if *open { Some(self.fresh()) } else { None };
                self.add(Node::Record {
                    fields: sorted(fs),
                    tail,
                })
            }
        }
    }

    fn type_of_node(&mut self, t: T, names: &mut Namer, depth: u32) -> Type {
        if depth > 40 {
            return Type::Elided;
        }
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Var { kind, .. } => {
                if names.exact {
                    Type::Var(names.exact_name(t, kind))
                } else if kind == Kind::Any {
                    Type::Var(names.name(t))
                } else {
                    Type::Int
                }
            }
            Node::Link(_) => Type::Dyn,
            Node::Prim(p) => match p {
                Prim::Int => Type::Int,
                Prim::Float => Type::Float,
                Prim::Bool => Type::Bool,
                Prim::String => Type::String,
                Prim::Path => Type::Path,
                Prim::Null => Type::Null,
            },
            Node::List(e) => Type::List(Box::new(self.type_of_node(e, names, depth + 1))),
            Node::Dict(e) => Type::Dict(Box::new(self.type_of_node(e, names, depth + 1))),
            Node::Fun(a, b) => Type::Fun(
                Box::new(self.type_of_node(a, names, depth + 1)),
                Box::new(self.type_of_node(b, names, depth + 1)),
            ),
            Node::Dyn => Type::Dyn,
            Node::Record { .. } => {
                let Some((fields, tail)) = self.record_view(t) else {
                    return Type::Dyn;
                };
                let mut out = Vec::new();
                for f in fields {
                    out.push(Field {
                        name: f.name,
                        ty: self.type_of_node(f.ty, names, depth + 1),
                        optional: f.optional,
                    });
                }
                Type::Record {
                    fields: out,
                    open: !matches!(tail, Tail::Closed),
                }
            }
        }
    }

    /// A type for a diagnostic: large records are abbreviated.
    fn show(&mut self, t: T) -> String {
        let ty = self.type_of_node(t, &mut Namer::default(), 0);
        abbreviate(ty, 0).to_string()
    }

    // ---------------------------------------------------------------- generalisation

    fn generalize(&mut self, t: T) {
        stacker::maybe_grow(RED, GROW, || self.generalize_inner(t))
    }
    fn generalize_inner(&mut self, t: T) {
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Var { level, kind } if level > self.level && level != GENERIC => {
                self.set(
                    t,
                    Node::Var {
                        level: GENERIC,
                        kind,
                    },
                );
            }
            Node::List(e) | Node::Dict(e) => self.generalize(e),
            Node::Fun(a, b) => {
                self.generalize(a);
                self.generalize(b);
            }
            Node::Record { fields, tail } => {
                for f in fields {
                    self.generalize(f.ty);
                }
                if let Some(tl) = tail {
                    self.generalize(tl);
                }
            }
            _ => {}
        }
    }

    fn has_generic(&mut self, t: T, depth: u32) -> bool {
        if depth > 200 {
            return false;
        }
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Var { level, .. } => level == GENERIC,
            Node::List(e) | Node::Dict(e) => self.has_generic(e, depth + 1),
            Node::Fun(a, b) => self.has_generic(a, depth + 1) || self.has_generic(b, depth + 1),
            Node::Record { fields, tail } => {
                fields.iter().any(|f| self.has_generic(f.ty, depth + 1))
                    || tail.is_some_and(|tl| self.has_generic(tl, depth + 1))
            }
            _ => false,
        }
    }

    fn instantiate(&mut self, t: T) -> T {
        if !self.has_generic(t, 0) {
            return t;
        }
        self.inst(t, &mut HashMap::new())
    }
    fn inst(&mut self, t: T, map: &mut HashMap<T, T>) -> T {
        stacker::maybe_grow(RED, GROW, || self.inst_inner(t, map))
    }
    fn inst_inner(&mut self, t: T, map: &mut HashMap<T, T>) -> T {
        let t = self.resolve(t);
        if let Some(n) = map.get(&t) {
            return *n;
        }
        let out = match self.node(t).clone() {
            Node::Var { level, kind } if level == GENERIC => self.fresh_kind(kind),
            Node::List(e) => {
                let e = self.inst(e, map);
                self.add(Node::List(e))
            }
            Node::Dict(e) => {
                let e = self.inst(e, map);
                self.add(Node::Dict(e))
            }
            Node::Fun(a, b) => {
                let a = self.inst(a, map);
                let b = self.inst(b, map);
                self.add(Node::Fun(a, b))
            }
            Node::Record { fields, tail } => {
                let mut fs = Vec::with_capacity(fields.len());
                for f in fields {
                    let ty = self.inst(f.ty, map);
                    fs.push(RField { ty, ..f });
                }
                let tail = tail.map(|tl| self.inst(tl, map));
                self.add(Node::Record { fields: fs, tail })
            }
            _ => t,
        };
        map.insert(t, out);
        out
    }

    // ---------------------------------------------------------------- unification

    /// Occurs check and level adjustment before binding variable `v` to `t`.
    fn occurs(&mut self, v: T, t: T, level: u32, depth: u32) -> bool {
        if depth > 10_000 {
            return true;
        }
        stacker::maybe_grow(RED, GROW, || {
            let t = self.resolve(t);
            if t == v {
                return true;
            }
            match self.node(t).clone() {
                Node::Var { level: l, kind } => {
                    if l > level {
                        self.set(t, Node::Var { level, kind });
                    }
                    false
                }
                Node::List(e) | Node::Dict(e) => self.occurs(v, e, level, depth + 1),
                Node::Fun(a, b) => {
                    self.occurs(v, a, level, depth + 1) || self.occurs(v, b, level, depth + 1)
                }
                Node::Record { fields, tail } => {
                    fields
                        .iter()
                        .any(|f| self.occurs(v, f.ty, level, depth + 1))
                        || tail.is_some_and(|tl| self.occurs(v, tl, level, depth + 1))
                }
                _ => false,
            }
        })
    }

    fn bind(&mut self, v: T, t: T) -> Result<(), UErr> {
        let Node::Var { level, kind } = self.node(v).clone() else {
            return Ok(());
        };
        match self.node(t).clone() {
            Node::Var {
                level: l2,
                kind: k2,
            } => {
                self.set(
                    t,
                    Node::Var {
                        level: level.min(l2),
                        kind: kind.min(k2),
                    },
                );
                self.set(v, Node::Link(t));
                return Ok(());
            }
            Node::Dyn => {}
            Node::Prim(p) => {
                let ok = match kind {
                    Kind::Any => true,
                    Kind::Num => matches!(p, Prim::Int | Prim::Float),
                    Kind::Add | Kind::Cmp => {
                        matches!(p, Prim::Int | Prim::Float | Prim::String | Prim::Path)
                    }
                };
                if !ok {
                    return Err(UErr::Kind(kind, t));
                }
            }
            Node::List(_) if kind >= Kind::Cmp => {}
            _ if kind != Kind::Any => return Err(UErr::Kind(kind, t)),
            _ => {}
        }
        if self.occurs(v, t, level, 0) {
            return Err(UErr::Infinite);
        }
        self.set(v, Node::Link(t));
        Ok(())
    }

    fn unify(&mut self, exp: T, act: T) -> Result<(), UErr> {
        stacker::maybe_grow(RED, GROW, || self.unify_inner(exp, act))
    }

    fn unify_inner(&mut self, exp: T, act: T) -> Result<(), UErr> {
        let e = self.resolve(exp);
        let a = self.resolve(act);
        if e == a {
            return Ok(());
        }
        match (self.node(e).clone(), self.node(a).clone()) {
            (Node::Dyn, _) | (_, Node::Dyn) => Ok(()),
            (Node::Var { .. }, _) => self.bind(e, a),
            (_, Node::Var { .. }) => self.bind(a, e),
            (Node::Prim(p), Node::Prim(q)) if p == q => Ok(()),
            (Node::List(x), Node::List(y)) | (Node::Dict(x), Node::Dict(y)) => self.unify(x, y),
            (Node::Fun(p1, r1), Node::Fun(p2, r2)) => {
                self.unify(p1, p2)?;
                self.unify(r1, r2)
            }
            (Node::Record { .. }, Node::Record { .. }) => self.unify_records(e, a),
            (Node::Dict(x), Node::Record { .. }) | (Node::Record { .. }, Node::Dict(x)) => {
                let r = if matches!(self.node(e), Node::Dict(_)) {
                    a
                } else {
                    e
                };
                if let Some((fields, _)) = self.record_view(r) {
                    for f in fields {
                        // a record used as a dictionary: its values constrain the element
                        // type where they are known; heterogeneous values leave it alone
                        let ft = self.resolve(f.ty);
                        if matches!(self.node(ft), Node::Var { .. }) {
                            continue;
                        }
                        if !self.try_unify(x, f.ty) {
                            break;
                        }
                    }
                }
                Ok(())
            }
            _ => Err(UErr::Mismatch(e, a)),
        }
    }

    fn try_unify(&mut self, exp: T, act: T) -> bool {
        self.transaction(|c| c.unify(exp, act).is_ok())
    }

    /// Run `f`; when it returns false, undo every change it made to the arena.
    fn transaction(&mut self, f: impl FnOnce(&mut Self) -> bool) -> bool {
        self.trailing += 1;
        let mark = self.trail.len();
        let ok = f(self);
        self.trailing -= 1;
        if !ok {
            while self.trail.len() > mark {
                if let Some((t, n)) = self.trail.pop() {
                    self.nodes[t as usize] = n;
                }
            }
        } else if self.trailing == 0 {
            self.trail.clear();
        }
        ok
    }

    fn unify_records(&mut self, e: T, a: T) -> Result<(), UErr> {
        let (Some((ef, et)), Some((af, at))) = (self.record_view(e), self.record_view(a)) else {
            return Ok(());
        };
        let mut only_e = Vec::new();
        let mut only_a = Vec::new();
        let amap: BTreeMap<&str, &RField> = af.iter().map(|f| (f.name.as_str(), f)).collect();
        let emap: BTreeMap<&str, &RField> = ef.iter().map(|f| (f.name.as_str(), f)).collect();
        let mut pairs = Vec::new();
        let mut now_optional = Vec::new();
        for f in &ef {
            match amap.get(f.name.as_str()) {
                Some(g) => {
                    pairs.push((f.ty, g.ty));
                    if f.optional != g.optional {
                        now_optional.push(f.name.clone());
                    }
                }
                None => only_e.push(f.clone()),
            }
        }
        for g in &af {
            if !emap.contains_key(g.name.as_str()) {
                only_a.push(g.clone());
            }
        }
        let a_names: Vec<String> = af.iter().map(|f| f.name.clone()).collect();
        // fields the actual record lacks
        if matches!(at, Tail::Closed) {
            if let Some(f) = only_e.iter().find(|f| !f.optional) {
                return Err(UErr::Missing(f.name.clone(), a_names));
            }
        }
        // fields the expected record does not allow
        if matches!(et, Tail::Closed) {
            if let Some(g) = only_a.first() {
                let free: Vec<String> = only_e.iter().map(|f| f.name.clone()).collect();
                return Err(UErr::Unexpected(g.name.clone(), free));
            }
        }
        for (x, y) in pairs {
            self.unify(x, y)?;
        }
        // a field optional on one side (a pattern's `a ? d`) and given on the other (an
        // argument) is optional in the unified type, whichever side represents it
        for name in &now_optional {
            self.mark_optional(e, name);
            self.mark_optional(a, name);
        }
        match (et, at) {
            (Tail::Open(ev), Tail::Open(av)) => {
                if ev == av {
                    if !only_e.is_empty() || !only_a.is_empty() {
                        return Err(UErr::Infinite);
                    }
                    return Ok(());
                }
                let r = self.fresh();
                let er = self.add(Node::Record {
                    fields: only_a,
                    tail: Some(r),
                });
                self.bind(ev, er)?;
                let ar = self.add(Node::Record {
                    fields: only_e,
                    tail: Some(r),
                });
                self.bind(av, ar)?;
            }
            (Tail::Open(ev), other) => {
                let tail = match other {
                    Tail::Closed => None,
                    _ => Some(self.dyn_()),
                };
                let er = self.add(Node::Record {
                    fields: only_a,
                    tail,
                });
                self.bind(ev, er)?;
            }
            (other, Tail::Open(av)) => {
                let tail = match other {
                    Tail::Closed => None,
                    _ => Some(self.dyn_()),
                };
                let only_e = if tail.is_none() {
                    only_e
                } else {
                    // a closed expectation only constrains the fields it names
                    only_e
                };
                let ar = self.add(Node::Record {
                    fields: only_e,
                    tail,
                });
                self.bind(av, ar)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Make the field `name` of the record `t` (found along its row) optional.
    fn mark_optional(&mut self, t: T, name: &str) {
        let mut cur = Some(t);
        let mut guard = 0;
        while let Some(c) = cur {
            guard += 1;
            if guard > 10_000 {
                return;
            }
            let c = self.resolve(c);
            let Node::Record { fields, tail } = self.node(c).clone() else {
                return;
            };
            if let Some(i) = fields.iter().position(|f| f.name == name) {
                if !fields[i].optional {
                    let mut fields = fields;
                    fields[i].optional = true;
                    self.set(c, Node::Record { fields, tail });
                }
                return;
            }
            cur = tail;
        }
    }

    /// Unify and report a failure: `exp` is the type required at `exp_span` (explained by
    /// `why`), `act` the type of the expression at `act_span`.
    fn expect(&mut self, exp: T, act: T, act_span: Span, exp_span: Span, why: &str) -> bool {
        match self.unify(exp, act) {
            Ok(()) => true,
            Err(err) => {
                self.report(err, exp, act, act_span, exp_span, why);
                false
            }
        }
    }

    fn report(&mut self, err: UErr, exp: T, act: T, act_span: Span, exp_span: Span, why: &str) {
        let whole_e = self.show(exp);
        let whole_a = self.show(act);
        let context = |d: Diagnostic, inner: bool| {
            if inner {
                d.with_help(format!(
                    "the expected type is `{whole_e}`, the actual one `{whole_a}`"
                ))
            } else {
                d
            }
        };
        let d = match err {
            UErr::Mismatch(e, a) => {
                let se = self.show(e);
                let sa = self.show(a);
                let inner = se != whole_e || sa != whole_a;
                let d = Diagnostic::error(
                    "buildit::type::mismatch",
                    format!("type mismatch: expected `{se}`, found `{sa}`"),
                )
                .with_label(act_span, format!("this has type `{whole_a}`"))
                .with_label(exp_span, format!("{why}: `{whole_e}`"));
                if inner {
                    context(d, true)
                } else {
                    d.with_help(mismatch_help(&se, &sa))
                }
            }
            UErr::Kind(k, t) => {
                let st = self.show(t);
                let want = match k {
                    Kind::Num => "a number (`Int` or `Float`)",
                    Kind::Add => "a number, `String` or `Path`",
                    _ => "a number, `String`, `Path` or list",
                };
                Diagnostic::error(
                    "buildit::type::mismatch",
                    format!("type mismatch: expected {want}, found `{st}`"),
                )
                .with_label(act_span, format!("this has type `{whole_a}`"))
                .with_label(exp_span, format!("{why}: `{whole_e}`"))
                .with_help(
                    "arithmetic and comparison work on numbers; `+` also on strings and paths",
                )
            }
            UErr::Missing(name, candidates) => {
                let mut d = Diagnostic::error(
                    "buildit::type::missing-field",
                    format!("missing field `{name}`"),
                )
                .with_label(
                    act_span,
                    format!("this record has no field `{name}`: `{whole_a}`"),
                )
                .with_label(exp_span, format!("{why}: `{whole_e}`"));
                d = match did_you_mean(&name, &candidates) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help(format!(
                        "add the field `{name}` or make it optional (`{name} ? default`)"
                    )),
                };
                d
            }
            UErr::Unexpected(name, candidates) => {
                let d = Diagnostic::error(
                    "buildit::type::unexpected-field",
                    format!("unexpected field `{name}`"),
                )
                .with_label(
                    act_span,
                    format!("this record has a field `{name}`: `{whole_a}`"),
                )
                .with_label(exp_span, format!("{why}: `{whole_e}` (no field `{name}`)"));
                match did_you_mean(&name, &candidates) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help(
                        "remove the field, or accept more fields with `...` in the pattern",
                    ),
                }
            }
            UErr::Infinite => Diagnostic::error(
                "buildit::type::infinite-type",
                "infinite type: a value would have to contain itself",
            )
            .with_label(act_span, format!("this has type `{whole_a}`"))
            .with_label(exp_span, format!("{why}: `{whole_e}`"))
            .with_help(
                "a function applied to itself, or a list containing itself, has no finite type",
            ),
        };
        self.diags.push(d);
    }

    // ---------------------------------------------------------------- environment

    fn push_env(&mut self, name: String, t: T) {
        self.index
            .entry(name.clone())
            .or_default()
            .push(self.env.len());
        self.env.push((name, t));
    }

    fn truncate_env(&mut self, mark: usize) {
        while self.env.len() > mark {
            if let Some((n, _)) = self.env.pop() {
                if let Some(v) = self.index.get_mut(&n) {
                    v.pop();
                }
            }
        }
    }

    fn lookup(&self, name: &str, limit: usize) -> Option<T> {
        let stack = self.index.get(name)?;
        let i = stack.iter().rev().find(|i| **i < limit)?;
        self.env.get(*i).map(|(_, t)| *t)
    }

    // ---------------------------------------------------------------- inference

    fn infer(&mut self, e: &Expr) -> T {
        stacker::maybe_grow(RED, GROW, || self.infer_inner(e))
    }

    fn infer_inner(&mut self, e: &Expr) -> T {
        match &e.kind {
            ExprKind::Int(_) => self.prim(Prim::Int),
            ExprKind::Float(_) => self.prim(Prim::Float),
            ExprKind::Str(parts) => {
                self.interpolations(parts);
                self.prim(Prim::String)
            }
            ExprKind::Path(_, parts) => {
                self.interpolations(parts);
                self.prim(Prim::Path)
            }
            ExprKind::SearchPath(_) => self.prim(Prim::Path),
            ExprKind::Uri(_) => self.prim(Prim::String),
            ExprKind::Var(name) => match self.lookup(name, usize::MAX) {
                Some(t) => self.instantiate(t),
                None => self.dyn_(),
            },
            ExprKind::List(items) => self.list(items, e.span),
            ExprKind::Attrs { rec, bindings } => {
                if *rec {
                    self.rec_group(bindings, false)
                } else {
                    let entries = self.entries(bindings, self.env.len());
                    self.record_of(entries, e.span)
                }
            }
            ExprKind::LegacyLet(bindings) => {
                let r = self.rec_group(bindings, false);
                match self.record_view(r) {
                    Some((fields, _)) => match fields.iter().find(|f| f.name == "body") {
                        Some(f) => self.instantiate(f.ty),
                        None => self.dyn_(),
                    },
                    None => self.dyn_(),
                }
            }
            ExprKind::Let { bindings, body, .. } => {
                let mark = self.env.len();
                self.let_bindings(bindings);
                let t = self.infer(body);
                self.truncate_env(mark);
                t
            }
            ExprKind::Lambda { param, body } => self.lambda(param, body),
            ExprKind::Apply { func, arg } => match self.typed_import(func, arg, e.span) {
                Some(t) => t,
                None => self.apply(func, arg, e.span),
            },
            ExprKind::If { cond, then, else_ } => {
                self.condition(cond, e.span, "an `if` condition must be");
                // `if r ? a then r.a else …`: the selection is guarded
                let mark = self.guards.len();
                collect_guards(cond, &mut self.guards);
                let a = self.infer(then);
                self.guards.truncate(mark);
                let b = self.infer(else_);
                if let Some(t) = self.join_record_default(a, b) {
                    t
                } else if self.try_unify(a, b) {
                    a
                } else if let Some(t) = self.join_closed_records(a, b) {
                    t
                } else {
                    // branches of different types: valid Nix, typed as `Dyn`
                    if self.strict {
                        let (sa, sb) = (self.show(a), self.show(b));
                        self.strict_dyn(
                            e.span,
                            "buildit::strict::if-branches",
                            format!("the branches of this `if` have different types, `{sa}` and `{sb}`, so it is `Dyn`"),
                            vec![(then.span, format!("this has type `{sa}`")), (else_.span, format!("this has type `{sb}`"))],
                            "give both branches one type, or say that the `if` is dynamic: `(if … then … else … :: Dyn)`",
                        );
                    }
                    self.dyn_()
                }
            }
            ExprKind::Assert { cond, body } => {
                self.condition(cond, e.span, "an `assert` condition must be");
                self.infer(body)
            }
            ExprKind::Select {
                expr,
                path,
                default,
            } => {
                let t = self.infer(expr);
                let guarded = match (&expr.kind, path.first()) {
                    (ExprKind::Var(v), Some(AttrKey::Static(k, _))) => {
                        self.guards.iter().any(|(gv, gk)| gv == v && gk == k)
                    }
                    _ => false,
                };
                if guarded && default.is_none() {
                    let r = self.resolve(t);
                    if let Some((fields, Tail::Closed)) = self.record_view(r) {
                        if let Some(AttrKey::Static(k, _)) = path.first() {
                            if !fields.iter().any(|f| &f.name == k) {
                                return self.dyn_();
                            }
                        }
                    }
                }
                self.select(t, expr.span, path, default.as_deref(), guarded, e.span)
            }
            ExprKind::HasAttr { expr, path } => {
                self.infer(expr);
                for k in path {
                    if let AttrKey::Dynamic(d) = k {
                        self.infer(d);
                    }
                }
                self.prim(Prim::Bool)
            }
            ExprKind::Unary { op, expr } => {
                let t = self.infer(expr);
                match op {
                    UnaryOp::Not => {
                        let b = self.prim(Prim::Bool);
                        self.expect(b, t, expr.span, e.span, "`!` needs");
                        b
                    }
                    UnaryOp::Neg => {
                        let n = self.fresh_kind(Kind::Num);
                        if self.expect(n, t, expr.span, e.span, "negation needs a number") {
                            n
                        } else {
                            self.dyn_()
                        }
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.span),
            ExprKind::Annot { expr, ty } => {
                let known = unknown_type_name(ty, 0).is_none();
                let hint = match (&expr.kind, known) {
                    (ExprKind::Lambda { .. }, true) => {
                        Some(self.node_of_type(ty, &mut HashMap::new()))
                    }
                    _ => None,
                };
                let outer = self.annotated.replace(expr.span);
                self.lambda_hint = hint;
                let t = self.infer(expr);
                self.lambda_hint = None;
                self.annotated = outer;
                if let Some(name) = unknown_type_name(ty, 0) {
                    self.diags.push(
                        Diagnostic::error(
                            "buildit::type::unknown-type",
                            format!("unknown type `{name}`"),
                        )
                        .with_label(e.span, "in this annotation")
                        .with_label(expr.span, "annotating this expression")
                        .with_help("types are Int, Float, Bool, String, Path, Null, Dyn, Derivation, [T], { a : T, .. }, { _ : T }, A -> B and lower-case variables and `type` aliases declared in an enclosing `let`"),
                    );
                    return t;
                }
                let a = match hint {
                    Some(a) => a,
                    None => self.node_of_type(ty, &mut HashMap::new()),
                };
                if self.expect(a, t, expr.span, e.span, "the annotation says") {
                    a
                } else {
                    self.dyn_()
                }
            }
            ExprKind::Error => self.dyn_(),
        }
    }

    fn interpolations(&mut self, parts: &[StrPart]) {
        for p in parts {
            if let StrPart::Interp(x) = p {
                let t = self.infer(x);
                let r = self.resolve(t);
                let bad = match self.node(r) {
                    Node::Prim(p) => !matches!(p, Prim::String | Prim::Path),
                    Node::List(_) | Node::Fun(..) => true,
                    _ => false,
                };
                if bad {
                    let s = self.show(r);
                    self.diags.push(
                        Diagnostic::error(
                            "buildit::type::mismatch",
                            format!("type mismatch: cannot interpolate a value of type `{s}`"),
                        )
                        .with_label(x.span, format!("this has type `{s}`"))
                        .with_label(
                            x.span,
                            "interpolation needs `String`, `Path` or a derivation",
                        )
                        .with_help("convert it with `toString`"),
                    );
                }
            }
        }
    }

    fn condition(&mut self, cond: &Expr, whole: Span, why: &str) {
        let t = self.infer(cond);
        let b = self.prim(Prim::Bool);
        self.expect(b, t, cond.span, whole, why);
    }

    fn list(&mut self, items: &[Expr], span: Span) -> T {
        let elem = self.fresh();
        let mut uniform = true;
        let types: Vec<T> = items.iter().map(|it| self.infer(it)).collect();
        let roots: Vec<T> = types.iter().map(|t| self.resolve(*t)).collect();
        let is_var = |c: &Self, t: T| {
            matches!(
                c.node(t),
                Node::Var {
                    kind: Kind::Any,
                    ..
                }
            )
        };
        // Nix lists are heterogeneous: in a list of several elements, an element of a yet
        // unknown type (a parameter: `[ zlib openssl ]`) is not forced to the others' type;
        // the list is then `[Dyn]` (unless every element is that same variable)
        let same = roots.windows(2).all(|w| w[0] == w[1]);
        let mut odd = None;
        for (i, (t, r)) in types.iter().zip(&roots).enumerate() {
            if items.len() > 1 && !same && is_var(self, *r) {
                uniform = false;
                odd = odd.or(Some((i, true)));
                continue;
            }
            if uniform && !self.try_unify(elem, *t) {
                uniform = false;
                odd = odd.or(Some((i, false)));
            }
        }
        if let (true, Some((i, unknown))) = (self.strict, odd) {
            let s = self.show(types[i]);
            let (why, label) = if unknown {
                (
                    "an element's type is not known here",
                    format!("the type of this element is not known here (`{s}`)"),
                )
            } else {
                (
                    "its elements have different types",
                    format!("this element has type `{s}`, unlike the ones before it"),
                )
            };
            self.strict_dyn(
                span,
                "buildit::strict::mixed-list",
                format!("this list is `[Dyn]`: {why}"),
                vec![(items[i].span, label)],
                "give the elements one type, or annotate the list with the type wanted (`([ … ] :: [Derivation])`, or `:: [Dyn]` to say it is mixed)",
            );
        }
        let elem = if uniform { elem } else { self.dyn_() };
        self.add(Node::List(elem))
    }

    fn lambda(&mut self, param: &Param, body: &Expr) -> T {
        let hint = self.lambda_hint.take();
        let mark = self.env.len();
        let p = match param {
            Param::Ident(name, _) => {
                let v = self.fresh();
                self.push_env(name.clone(), v);
                v
            }
            Param::Pattern {
                fields,
                ellipsis,
                bind,
            } => {
                let mut fs = Vec::new();
                for f in fields {
                    let v = self.fresh();
                    fs.push(RField {
                        name: f.name.clone(),
                        ty: v,
                        optional: f.default.is_some(),
                    });
                }
                let tail = if *ellipsis { Some(self.fresh()) } else { None };
                let rec = self.add(Node::Record {
                    fields: sorted(fs.clone()),
                    tail,
                });
                if let Some((name, _)) = bind {
                    self.push_env(name.clone(), rec);
                }
                for f in &fs {
                    self.push_env(f.name.clone(), f.ty);
                }
                for (f, pf) in fs.iter().zip(fields) {
                    if let Some(d) = &pf.default {
                        let t = self.infer(d);
                        let Some(t) = self.default_constraint(t) else {
                            continue;
                        };
                        if !self.try_unify(f.ty, t) {
                            self.expect(f.ty, t, d.span, pf.span, "the argument is used as");
                        }
                    }
                }
                rec
            }
        };
        // an annotated function: its parameter has the annotation's type inside the body (when
        // they do not unify, the annotation's mismatch is reported where it is checked)
        if let Some(h) = hint {
            let h = self.resolve(h);
            if let Node::Fun(hp, hr) = self.node(h).clone() {
                let (rhp, rp) = (self.resolve(hp), self.resolve(p));
                if matches!(self.node(rhp), Node::Dyn) && matches!(self.node(rp), Node::Var { .. })
                {
                    // `Dyn` unifies with a variable without binding it: bind it here
                    self.set(rp, Node::Link(rhp));
                }
                if self.try_unify(hp, p) && matches!(body.kind, ExprKind::Lambda { .. }) {
                    self.lambda_hint = Some(hr);
                }
            }
        }
        let r = self.infer(body);
        self.lambda_hint = None;
        self.truncate_env(mark);
        self.add(Node::Fun(p, r))
    }

    fn apply(&mut self, func: &Expr, arg: &Expr, whole: Span) -> T {
        let r = self.apply_inner(func, arg, whole);
        if self.strict && self.annotated != Some(whole) {
            let rr = self.resolve(r);
            if !matches!(self.node(rr), Node::Fun(..)) && self.contains_dyn(rr, 0) {
                let head = self.builtin_head(func);
                if let Some(name) = head.filter(|n| builtin_result_is_dyn(n, func)) {
                    let s = self.show(rr);
                    self.strict_dyn(
                        whole,
                        "buildit::strict::dyn-builtin",
                        format!("`{name}` gives `{s}`: what it returns is only known at run time"),
                        vec![],
                        "annotate the result with the type expected (`(builtins.fromJSON s :: { a : Int })`), or `:: Dyn` to say it is dynamic",
                    );
                }
            }
        }
        r
    }

    /// The name of the builtin at the head of an application (`f` of `f a b`): a builtin
    /// variable not shadowed, or `builtins.NAME`.
    fn builtin_head(&self, func: &Expr) -> Option<String> {
        let mut e = func;
        while let ExprKind::Apply { func, .. } = &e.kind {
            e = func;
        }
        match &e.kind {
            ExprKind::Var(n) if self.is_builtin_var(n) => Some(n.clone()),
            ExprKind::Select {
                expr,
                path,
                default: None,
            } => match (&expr.kind, path.as_slice()) {
                (ExprKind::Var(b), [AttrKey::Static(n, _)])
                    if b == "builtins" && self.is_builtin_var(b) =>
                {
                    Some(format!("builtins.{n}"))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether `name` here is the builtin scope's (not shadowed by a binding).
    fn is_builtin_var(&self, name: &str) -> bool {
        self.index
            .get(name)
            .and_then(|v| v.last())
            .is_some_and(|p| *p < self.builtin_len)
    }

    fn contains_dyn(&mut self, t: T, depth: u32) -> bool {
        if depth > 200 {
            return false;
        }
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Dyn => true,
            Node::List(e) | Node::Dict(e) => self.contains_dyn(e, depth + 1),
            Node::Fun(a, b) => self.contains_dyn(a, depth + 1) || self.contains_dyn(b, depth + 1),
            Node::Record { fields, .. } => {
                fields.iter().any(|f| self.contains_dyn(f.ty, depth + 1))
            }
            _ => false,
        }
    }

    /// Report a silent fallback to `Dyn` (only with `strict`, and not directly under a `::`
    /// annotation, which makes it explicit): `span` is the expression that became `Dyn`.
    fn strict_dyn(
        &mut self,
        span: Span,
        code: &'static str,
        message: impl Into<String>,
        labels: Vec<(Span, String)>,
        help: &str,
    ) {
        if !self.strict || self.annotated == Some(span) {
            return;
        }
        let mut d = Diagnostic::error(code, message)
            .with_label(span, "this is `Dyn` (checked only at run time)");
        for (s, l) in labels {
            d = d.with_label(s, l);
        }
        self.diags.push(d.with_help(help));
    }

    /// `import LITERAL` of the builtin `import`: the imported file's interface through
    /// [`Imports`] (`Dyn` when it is not known). `None` when the application is no import.
    fn typed_import(&mut self, func: &Expr, arg: &Expr, whole: Span) -> Option<T> {
        match &func.kind {
            ExprKind::Var(n) if n == "import" && self.is_builtin_var(n) => {}
            ExprKind::Select {
                expr,
                path,
                default: None,
            } if matches!((&expr.kind, path.as_slice()), (ExprKind::Var(b), [AttrKey::Static(n, _)]) if b == "builtins" && n == "import" && self.is_builtin_var(b)) =>
                {}
            _ => return None,
        }
        let target = match &arg.kind {
            ExprKind::Path(kind, parts) => match parts.as_slice() {
                [StrPart::Lit(p)] => Some(ImportTarget::Path {
                    kind: *kind,
                    path: p,
                }),
                _ => None,
            },
            ExprKind::SearchPath(p) if p == "buildit" || p.starts_with("buildit/") => {
                Some(ImportTarget::Lookup(p))
            }
            _ => None,
        };
        let found = match (target, self.imports.as_deref_mut()) {
            (Some(t), Some(imports)) => imports.import_type(whole.file, t),
            _ => None,
        };
        if let Some(ty) = found {
            return Some(self.node_of_type(&ty, &mut HashMap::new()));
        }
        self.infer(arg);
        let why = if target.is_some() {
            "the imported file's type is not known (an import cycle, or a file that cannot be read or parsed)"
        } else {
            "its path is computed at run time"
        };
        self.strict_dyn(
            whole,
            "buildit::strict::dynamic-import",
            format!("this import is `Dyn`: {why}"),
            vec![(arg.span, "the file imported".to_string())],
            "import a path literal (`import ./file.bld`), or annotate the import with the type expected (`(import p :: { … })`)",
        );
        Some(self.dyn_())
    }

    fn apply_inner(&mut self, func: &Expr, arg: &Expr, whole: Span) -> T {
        let f = self.infer(func);
        let a = self.infer(arg);
        let fr = self.resolve(f);
        match self.node(fr).clone() {
            Node::Fun(p, r) => {
                if self.monomorphic_head(func) {
                    // a function known only through its uses may be used at several types:
                    // a use says what it passes, not all the function accepts
                    let a = self.weaken_argument(a);
                    if self.try_unify(p, a) {
                        r
                    } else {
                        if self.strict {
                            let (sp, sa) = (self.show(p), self.show(a));
                            self.strict_dyn(
                                whole,
                                "buildit::strict::untyped-call",
                                "this call's result is `Dyn`: the function is known only through its uses, and this use does not fit the others",
                                vec![
                                    (func.span, format!("its uses so far say it takes `{sp}`")),
                                    (arg.span, format!("this argument has type `{sa}`")),
                                ],
                                "give the function a type where it is defined (`f :: A -> B = …;`), or annotate this call's result",
                            );
                        }
                        self.dyn_()
                    }
                } else if self.field_mismatches(p, a, arg, func.span) {
                    self.dyn_()
                } else if self.expect(p, a, arg.span, func.span, "the function expects") {
                    r
                } else {
                    self.dyn_()
                }
            }
            Node::Var {
                kind: Kind::Any, ..
            } => {
                let r = self.fresh();
                let a = if self.monomorphic_head(func) {
                    self.weaken_argument(a)
                } else {
                    a
                };
                let fun = self.add(Node::Fun(a, r));
                match self.unify(fr, fun) {
                    Ok(()) => r,
                    Err(err) => {
                        self.report(err, fun, fr, func.span, arg.span, "applied to an argument");
                        self.dyn_()
                    }
                }
            }
            Node::Record { .. } => {
                // records with `__functor` are callable
                let callable = match self.record_view(fr) {
                    Some((fields, tail)) => {
                        fields.iter().any(|f| f.name == "__functor")
                            || !matches!(tail, Tail::Closed)
                    }
                    None => true,
                };
                if !callable {
                    self.not_a_function(fr, func, arg, whole);
                } else if self.strict {
                    let s = self.show(fr);
                    self.strict_dyn(
                        whole,
                        "buildit::strict::functor-call",
                        "applying a record (through `__functor`) gives `Dyn`",
                        vec![(func.span, format!("this has type `{s}`"))],
                        "annotate the call's result with the type wanted: `(r arg :: T)`",
                    );
                }
                self.dyn_()
            }
            Node::Dyn => self.dyn_(),
            _ => {
                self.not_a_function(fr, func, arg, whole);
                self.dyn_()
            }
        }
    }

    /// A record literal passed where a record is expected: each field whose value does not
    /// have the type the function expects for it is reported at that field (`version = 2`),
    /// not at the whole record. Whether any was.
    fn field_mismatches(&mut self, p: T, a: T, arg: &Expr, func_span: Span) -> bool {
        let ExprKind::Attrs { bindings, .. } = &arg.kind else {
            return false;
        };
        let (rp, ra) = (self.resolve(p), self.resolve(a));
        let (Some((want, _)), Some((got, _))) = (self.record_view(rp), self.record_view(ra)) else {
            return false;
        };
        // the fields' unifications are kept only when one of them fails (then the call is
        // `Dyn`); otherwise the whole argument is checked as usual
        self.transaction(|c| {
            let mut found = false;
            for b in bindings {
                let Binding::Attr { path, value, .. } = b else {
                    continue;
                };
                let [AttrKey::Static(n, _)] = path.as_slice() else {
                    continue;
                };
                let (Some(w), Some(g)) = (
                    want.iter().find(|f| &f.name == n),
                    got.iter().find(|f| &f.name == n),
                ) else {
                    continue;
                };
                let mut err = None;
                c.transaction(|c| match c.unify(w.ty, g.ty) {
                    Ok(()) => true,
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                });
                match err {
                    Some(UErr::Mismatch(..)) => {
                        let (se, sa) = (c.show(w.ty), c.show(g.ty));
                        c.diags.push(
                            Diagnostic::error(
                                "buildit::type::mismatch",
                                format!("type mismatch: expected `{se}`, found `{sa}`"),
                            )
                            .with_label(value.span, format!("the field `{n}` has type `{sa}`"))
                            .with_label(
                                func_span,
                                format!("the function expects `{n}` to be `{se}`"),
                            )
                            .with_help(mismatch_help(&se, &sa)),
                        );
                        found = true;
                    }
                    Some(e) => {
                        let why = format!("the function expects `{n}` to be");
                        c.report(e, w.ty, g.ty, value.span, func_span, &why);
                        found = true;
                    }
                    None => {}
                }
            }
            found
        })
    }

    /// Whether the function of an application (the head of `f a b`) is a variable, or a field
    /// selected from one, whose type was not generalised and still has unknowns: a lambda
    /// parameter (`self.callPackage` in `self: { … }`) or a binding of the recursive group
    /// being inferred (`callPackage = callPackageWith pkgs;` next to `pkgs`). Hindley–Milner
    /// gives such a function one type for all its uses, while Nix code uses it at several (one
    /// per package's argument set); so there a use that does not fit the others is `Dyn`
    /// rather than an error. Generalised functions (let-bound, builtins) are checked strictly.
    fn monomorphic_head(&mut self, func: &Expr) -> bool {
        let mut e = func;
        while let ExprKind::Apply { func, .. } = &e.kind {
            e = func;
        }
        let name = match &e.kind {
            ExprKind::Var(n) => n,
            ExprKind::Select {
                expr,
                default: None,
                ..
            } => match &expr.kind {
                ExprKind::Var(n) => n,
                _ => return false,
            },
            _ => return false,
        };
        let Some(t) = self.lookup(name, usize::MAX) else {
            return false;
        };
        !self.has_generic(t, 0) && self.has_unknown(t, 0)
    }

    /// The type one use contributes to a function known only through its uses: a closed record
    /// argument (`mkDerivation { pname = …; }`) counts as a default does — some record with
    /// these fields — and so does the closed pattern of a function argument
    /// (`callPackage ({ stdenv, zlib }: …) { }`), so that the next use may pass other fields.
    fn weaken_argument(&mut self, a: T) -> T {
        let a = self.resolve(a);
        match self.node(a).clone() {
            Node::Record { .. } => self.weaken_deep(a, 0),
            Node::Fun(p, r) => {
                let pr = self.resolve(p);
                if matches!(self.node(pr), Node::Record { .. }) {
                    let p = self.weaken_deep(pr, 0);
                    self.add(Node::Fun(p, r))
                } else {
                    a
                }
            }
            _ => a,
        }
    }

    /// [`Self::weaken_argument`] of a record, at every depth: each closed record in it (in
    /// fields and list elements) counts as a default does, so two uses passing different
    /// nested records (`meta = { … }`, `options = { … }`) both fit.
    fn weaken_deep(&mut self, t: T, depth: u32) -> T {
        if depth > 32 {
            return t;
        }
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Record { .. } => match self.record_view(t) {
                Some((fields, Tail::Closed)) => {
                    let mut out = Vec::with_capacity(fields.len());
                    for f in fields {
                        let ty = self.weaken_deep(f.ty, depth + 1);
                        out.push(RField {
                            ty,
                            optional: true,
                            ..f
                        });
                    }
                    let tail = Some(self.fresh());
                    self.add(Node::Record {
                        fields: sorted(out),
                        tail,
                    })
                }
                _ => t,
            },
            Node::List(e) => {
                let w = self.weaken_deep(e, depth + 1);
                if w == self.resolve(e) {
                    t
                } else {
                    self.add(Node::List(w))
                }
            }
            _ => t,
        }
    }

    /// Whether a type still has a (non-generalised) type variable.
    fn has_unknown(&mut self, t: T, depth: u32) -> bool {
        if depth > 200 {
            return false;
        }
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Var { level, .. } => level != GENERIC,
            Node::List(e) | Node::Dict(e) => self.has_unknown(e, depth + 1),
            Node::Fun(a, b) => self.has_unknown(a, depth + 1) || self.has_unknown(b, depth + 1),
            Node::Record { fields, tail } => {
                fields.iter().any(|f| self.has_unknown(f.ty, depth + 1))
                    || tail.is_some_and(|tl| self.has_unknown(tl, depth + 1))
            }
            _ => false,
        }
    }

    fn not_a_function(&mut self, f: T, func: &Expr, arg: &Expr, _whole: Span) {
        let s = self.show(f);
        self.diags.push(
            Diagnostic::error(
                "buildit::type::not-a-function",
                format!("this is not a function: it has type `{s}`"),
            )
            .with_label(func.span, format!("this has type `{s}`"))
            .with_label(arg.span, "but it is applied to this argument")
            .with_help("only functions (and records with `__functor`) can be applied; is a `;` or an operator missing?"),
        );
    }

    /// `e.a.b` (`or default`); `guarded`: the first key is tested by an enclosing
    /// `if e ? a then …`, so it is an optional field like one with a default.
    fn select(
        &mut self,
        t: T,
        span: Span,
        path: &[AttrKey],
        default: Option<&Expr>,
        guarded: bool,
        whole: Span,
    ) -> T {
        let mut cur = t;
        let mut failed = false;
        for (i, key) in path.iter().enumerate() {
            let optional = default.is_some() || (guarded && i == 0);
            let r = self.resolve(cur);
            let name = match key {
                AttrKey::Static(n, _) => Some(n.clone()),
                AttrKey::Dynamic(d) => {
                    self.infer(d);
                    None
                }
            };
            let next = match (self.node(r).clone(), name) {
                (Node::Dyn, _) => self.dyn_(),
                (Node::Dict(e), _) => e,
                (_, None) => {
                    let is_rec = matches!(self.node(r), Node::Record { .. } | Node::Var { .. });
                    if !is_rec {
                        self.expected_record(r, span, key.span());
                    } else if self.strict {
                        let s = self.show(r);
                        self.strict_dyn(
                            whole,
                            "buildit::strict::dynamic-select",
                            "selecting a computed name from a record gives `Dyn`",
                            vec![
                                (key.span(), "the name is computed at run time".to_string()),
                                (span, format!("this has type `{s}`")),
                            ],
                            "make the value a dictionary (`{ _ : T }`: a record built with computed keys), or annotate the selection (`(r.${k} :: T)`)",
                        );
                    }
                    self.dyn_()
                }
                (Node::Var { .. }, Some(n)) => {
                    let v = self.fresh();
                    let tail = Some(self.fresh());
                    let rec = self.add(Node::Record {
                        fields: vec![RField {
                            name: n,
                            ty: v,
                            optional,
                        }],
                        tail,
                    });
                    if self.unify(r, rec).is_err() {
                        self.dyn_()
                    } else {
                        v
                    }
                }
                (Node::Record { .. }, Some(n)) => {
                    let Some((fields, tail)) = self.record_view(r) else {
                        return self.dyn_();
                    };
                    if let Some(f) = fields.iter().find(|f| f.name == n) {
                        self.instantiate(f.ty)
                    } else {
                        match tail {
                            Tail::Open(v) => {
                                let ty = self.fresh();
                                let tl = Some(self.fresh());
                                let ext = self.add(Node::Record {
                                    fields: vec![RField {
                                        name: n,
                                        ty,
                                        optional,
                                    }],
                                    tail: tl,
                                });
                                let _ = self.bind(v, ext);
                                ty
                            }
                            Tail::Unknown => {
                                if self.strict && default.is_none() {
                                    let s = self.show(r);
                                    self.strict_dyn(
                                        whole,
                                        "buildit::strict::unknown-field",
                                        format!("the field `{n}` is `Dyn`: the record's other fields are not known (it was merged with `//` from a record of unknown shape)"),
                                        vec![(span, format!("this has type `{s}`"))],
                                        "annotate the record where it is made (`(a // b :: { n : T, .. })`), or this selection",
                                    );
                                }
                                self.dyn_()
                            }
                            Tail::Closed => {
                                if default.is_none() {
                                    let s = self.show(r);
                                    let names: Vec<String> =
                                        fields.iter().map(|f| f.name.clone()).collect();
                                    let mut d = Diagnostic::error(
                                        "buildit::type::missing-field",
                                        format!("missing field `{n}`"),
                                    )
                                    .with_label(
                                        key.span(),
                                        format!("the field `{n}` is selected here"),
                                    )
                                    .with_label(
                                        span,
                                        format!("but this record has no field `{n}`: `{s}`"),
                                    );
                                    d = match did_you_mean(&n, &names) {
                                        Some(c) => d.with_help(format!("did you mean `{c}`?")),
                                        None => d.with_help(format!(
                                            "use `.{n} or default` if the field may be absent"
                                        )),
                                    };
                                    self.diags.push(d);
                                }
                                failed = true;
                                self.dyn_()
                            }
                        }
                    }
                }
                (_, Some(_)) => {
                    self.expected_record(r, span, key.span());
                    failed = true;
                    self.dyn_()
                }
            };
            cur = next;
            if failed {
                break;
            }
        }
        if let Some(d) = default {
            let dt = self.infer(d);
            if failed {
                return dt;
            }
            let Some(dt) = self.default_constraint(dt) else {
                return cur;
            };
            if self.try_unify(cur, dt) {
                cur
            } else {
                if self.strict {
                    let (sc, sd) = (self.show(cur), self.show(dt));
                    self.strict_dyn(
                        whole,
                        "buildit::strict::default-type",
                        format!("the default has type `{sd}` but the field `{sc}`, so this is `Dyn`"),
                        vec![(d.span, format!("this has type `{sd}`"))],
                        "give the default the field's type, or annotate the selection (`(r.a or d :: Dyn)`)",
                    );
                }
                self.dyn_()
            }
        } else if failed {
            self.dyn_()
        } else {
            cur
        }
    }

    /// What a default value (`e.f or d`, the pattern field `f ? d`) says about the type of the
    /// field it stands in for. A default is one possible value of the field, not its type:
    /// `null` says nothing (`None`), and a closed record (`{ }`, `{ a = 1; }`) only that the
    /// field holds *some* record: its fields become optional and the row is opened with a
    /// fresh variable, so `{ }` unifies with every record and with every dictionary `{ _ : T }`.
    /// The same holds for the result of a function default (`overrides ? (final: prev: { })`).
    /// Any other default has the field's type.
    fn default_constraint(&mut self, t: T) -> Option<T> {
        self.default_constraint_at(t, 0)
    }

    fn default_constraint_at(&mut self, t: T, depth: u32) -> Option<T> {
        let t = self.resolve(t);
        match self.node(t).clone() {
            Node::Fun(a, r) if depth < 16 => {
                let r = match self.default_constraint_at(r, depth + 1) {
                    Some(r) => r,
                    None => self.fresh(),
                };
                Some(self.add(Node::Fun(a, r)))
            }
            Node::Prim(Prim::Null) => None,
            Node::Record { .. } => match self.record_view(t) {
                Some((fields, Tail::Closed)) => {
                    let fields = fields
                        .into_iter()
                        .map(|f| RField {
                            optional: true,
                            ..f
                        })
                        .collect();
                    let tail = Some(self.fresh());
                    Some(self.add(Node::Record { fields, tail }))
                }
                _ => Some(t),
            },
            _ => Some(t),
        }
    }

    /// The join of two `if` branches when one is a closed record (`if c then s else { }`,
    /// lib's `optionalAttrs`) and the other's shape is still open (a variable, an open record
    /// or a dictionary): the closed record is then a default for the other branch, as with
    /// `or` ([`Self::default_constraint`]), and the `if` has the other branch's type. `None`
    /// when that does not apply or does not unify (then the branches are unified as usual).
    fn join_record_default(&mut self, a: T, b: T) -> Option<T> {
        for (open, closed) in [(a, b), (b, a)] {
            let (o, c) = (self.resolve(open), self.resolve(closed));
            if !matches!(self.record_view(c), Some((_, Tail::Closed))) {
                continue;
            }
            let is_open = match self.node(o) {
                Node::Var {
                    kind: Kind::Any, ..
                }
                | Node::Dict(_) => true,
                Node::Record { .. } => !matches!(self.record_view(o), Some((_, Tail::Closed))),
                _ => false,
            };
            if !is_open {
                continue;
            }
            let d = self.default_constraint(c)?;
            if self.try_unify(o, d) {
                return Some(o);
            }
        }
        None
    }

    /// The `if` branches `a` and `b`, two closed records with different fields (`if c then { }
    /// else { port = 80; }`): a closed record of every field of either, a field optional unless
    /// both have it required. Fields both have must have one type; otherwise `None`.
    fn join_closed_records(&mut self, a: T, b: T) -> Option<T> {
        let (ra, rb) = (self.resolve(a), self.resolve(b));
        let Some((fa, Tail::Closed)) = self.record_view(ra) else {
            return None;
        };
        let Some((fb, Tail::Closed)) = self.record_view(rb) else {
            return None;
        };
        let mut fields: Vec<RField> = Vec::new();
        let ok = self.transaction(|c| {
            for f in &fa {
                match fb.iter().find(|g| g.name == f.name) {
                    Some(g) => {
                        if c.unify(f.ty, g.ty).is_err() {
                            return false;
                        }
                        fields.push(RField {
                            name: f.name.clone(),
                            ty: f.ty,
                            optional: f.optional || g.optional,
                        });
                    }
                    None => fields.push(RField {
                        optional: true,
                        ..f.clone()
                    }),
                }
            }
            for g in &fb {
                if !fa.iter().any(|f| f.name == g.name) {
                    fields.push(RField {
                        optional: true,
                        ..g.clone()
                    });
                }
            }
            true
        });
        ok.then(|| {
            self.add(Node::Record {
                fields: sorted(fields),
                tail: None,
            })
        })
    }

    /// With `strict`: `//` of dictionaries (or a dictionary and a record) whose values differ.
    fn strict_mixed_dict(&mut self, whole: Span, l: T, r: T) {
        if !self.strict {
            return;
        }
        let (sl, sr) = (self.show(l), self.show(r));
        self.strict_dyn(
            whole,
            "buildit::strict::mixed-dict",
            format!("`//` merges a dictionary with values of another type (`{sl}` and `{sr}`), so it is `{{ _ : Dyn }}`"),
            vec![],
            "give the values one type, or annotate the result (`(a // b :: { _ : Dyn })`)",
        );
    }

    fn expected_record(&mut self, t: T, span: Span, key: Span) {
        let s = self.show(t);
        self.diags.push(
            Diagnostic::error(
                "buildit::type::mismatch",
                format!("type mismatch: expected a record, found `{s}`"),
            )
            .with_label(span, format!("this has type `{s}`"))
            .with_label(key, "an attribute is selected here, so it must be a record")
            .with_help("only records (attribute sets) have attributes"),
        );
    }

    fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr, whole: Span) -> T {
        let l = self.infer(lhs);
        let r = self.infer(rhs);
        match op {
            BinOp::And | BinOp::Or | BinOp::Impl => {
                let b = self.prim(Prim::Bool);
                let why = format!("`{}` needs", op.symbol());
                self.expect(b, l, lhs.span, whole, &why);
                self.expect(b, r, rhs.span, whole, &why);
                b
            }
            BinOp::Eq | BinOp::NotEq => {
                // `x == null` tests for absence: it says nothing about the type of `x`
                let is_null = |c: &mut Self, t: T| {
                    let t = c.resolve(t);
                    matches!(c.node(t), Node::Prim(Prim::Null))
                };
                if is_null(self, l) || is_null(self, r) {
                    return self.prim(Prim::Bool);
                }
                if !self.try_unify(l, r) {
                    let lr = self.resolve(l);
                    let rr = self.resolve(r);
                    if let (Node::Prim(p), Node::Prim(q)) =
                        (self.node(lr).clone(), self.node(rr).clone())
                    {
                        let numeric = |p: Prim| matches!(p, Prim::Int | Prim::Float);
                        if p != Prim::Null && q != Prim::Null && !(numeric(p) && numeric(q)) {
                            self.expect(lr, rr, rhs.span, lhs.span, "it is compared with");
                        }
                    }
                }
                self.prim(Prim::Bool)
            }
            BinOp::Concat => {
                let a = self.fresh();
                let la = self.add(Node::List(a));
                let b = self.fresh();
                let lb = self.add(Node::List(b));
                let ok1 = self.expect(la, l, lhs.span, whole, "`++` needs");
                let ok2 = self.expect(lb, r, rhs.span, whole, "`++` needs");
                if ok1 && ok2 && self.try_unify(a, b) {
                    la
                } else {
                    if ok1 && ok2 && self.strict {
                        let (sl, sr) = (self.show(l), self.show(r));
                        self.strict_dyn(
                            whole,
                            "buildit::strict::mixed-list",
                            format!("this list is `[Dyn]`: `++` joins lists of different types, `{sl}` and `{sr}`"),
                            vec![(lhs.span, format!("this has type `{sl}`")), (rhs.span, format!("this has type `{sr}`"))],
                            "give the lists one element type, or annotate the result (`(a ++ b :: [Dyn])`)",
                        );
                    }
                    let d = self.dyn_();
                    self.add(Node::List(d))
                }
            }
            BinOp::Update => self.update(l, r, lhs, rhs),
            BinOp::Add
            | BinOp::Sub
            | BinOp::Mul
            | BinOp::Div
            | BinOp::Lt
            | BinOp::Le
            | BinOp::Gt
            | BinOp::Ge => {
                let cmp = matches!(op, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge);
                let kind = match op {
                    BinOp::Add => Kind::Add,
                    BinOp::Sub | BinOp::Mul | BinOp::Div => Kind::Num,
                    _ => Kind::Cmp,
                };
                let res = self.arith(op, kind, l, r, lhs, rhs, whole);
                if cmp {
                    self.prim(Prim::Bool)
                } else {
                    res
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn arith(
        &mut self,
        op: BinOp,
        kind: Kind,
        l: T,
        r: T,
        lhs: &Expr,
        rhs: &Expr,
        whole: Span,
    ) -> T {
        let mut lr = self.resolve(l);
        let mut rr = self.resolve(r);
        if op == BinOp::Add {
            // records with `__toString` or `outPath` (derivations) concatenate as strings
            lr = self.coerce_string(lr);
            rr = self.coerce_string(rr);
        }
        let why = format!("`{}` needs", op.symbol());
        let (ln, rn) = (self.node(lr).clone(), self.node(rr).clone());
        if matches!(ln, Node::Dyn) || matches!(rn, Node::Dyn) {
            return self.dyn_();
        }
        // check each side against the operator's kind
        let k = self.fresh_kind(kind);
        if !self.expect(k, lr, lhs.span, whole, &why) {
            return self.dyn_();
        }
        let k2 = self.fresh_kind(kind);
        if !self.expect(k2, rr, rhs.span, whole, &why) {
            return self.dyn_();
        }
        let lr = self.resolve(lr);
        let rr = self.resolve(rr);
        match (self.node(lr).clone(), self.node(rr).clone()) {
            (Node::Prim(p), Node::Prim(q)) => {
                use Prim::*;
                let out = match (p, q) {
                    (Int, Int) => Some(Int),
                    (Int, Float) | (Float, Int) | (Float, Float) => Some(Float),
                    (String, String) | (String, Path) if op == BinOp::Add || kind == Kind::Cmp => {
                        Some(String)
                    }
                    (Path, String) | (Path, Path) if op == BinOp::Add || kind == Kind::Cmp => {
                        Some(Path)
                    }
                    _ => None,
                };
                match out {
                    Some(o) => self.prim(o),
                    None => {
                        self.expect(
                            lr,
                            rr,
                            rhs.span,
                            lhs.span,
                            &format!("the other operand of `{}` has type", op.symbol()),
                        );
                        self.dyn_()
                    }
                }
            }
            (Node::List(_), _) | (_, Node::List(_)) => {
                self.expect(lr, rr, rhs.span, lhs.span, "it is compared with");
                lr
            }
            _ => {
                // at least one side unresolved: the operands share a type
                if self.expect(
                    lr,
                    rr,
                    rhs.span,
                    lhs.span,
                    &format!("the other operand of `{}` has type", op.symbol()),
                ) {
                    lr
                } else {
                    self.dyn_()
                }
            }
        }
    }

    fn coerce_string(&mut self, t: T) -> T {
        if !matches!(self.node(t), Node::Record { .. }) {
            return t;
        }
        match self.record_view(t) {
            Some((fields, tail))
                if !matches!(tail, Tail::Closed)
                    || fields
                        .iter()
                        .any(|f| f.name == "__toString" || f.name == "outPath") =>
            {
                self.prim(Prim::String)
            }
            _ => t,
        }
    }

    fn update(&mut self, l: T, r: T, lhs: &Expr, rhs: &Expr) -> T {
        let mut sides = [l, r];
        for (i, (t, e)) in [(l, lhs), (r, rhs)].into_iter().enumerate() {
            let t = self.resolve(t);
            sides[i] = t;
            match self.node(t).clone() {
                Node::Var { .. } => {
                    // an unknown side updated with (or into) a dictionary is taken to be one
                    // (`foldl' (acc: n: acc // { ${n} = …; }) { } names`); else a record
                    let other = self.resolve(if i == 0 { r } else { l });
                    let shape = if matches!(self.node(other), Node::Dict(_)) {
                        let e = self.fresh();
                        Node::Dict(e)
                    } else {
                        let tail = Some(self.fresh());
                        Node::Record {
                            fields: Vec::new(),
                            tail,
                        }
                    };
                    let rec = self.add(shape);
                    let _ = self.unify(t, rec);
                }
                Node::Record { .. } | Node::Dict(_) | Node::Dyn => {}
                _ => {
                    let s = self.show(t);
                    self.diags.push(
                        Diagnostic::error(
                            "buildit::type::mismatch",
                            format!("type mismatch: expected a record, found `{s}`"),
                        )
                        .with_label(e.span, format!("this has type `{s}`"))
                        .with_label(lhs.span.to(rhs.span), "`//` merges two records")
                        .with_help("both operands of `//` must be records"),
                    );
                    return self.dyn_();
                }
            }
        }
        let (l, r) = (self.resolve(sides[0]), self.resolve(sides[1]));
        match (self.node(l).clone(), self.node(r).clone()) {
            (Node::Dict(a), Node::Dict(b)) => {
                if self.try_unify(a, b) {
                    l
                } else {
                    self.strict_mixed_dict(lhs.span.to(rhs.span), l, r);
                    let d = self.dyn_();
                    self.add(Node::Dict(d))
                }
            }
            (Node::Dict(a), Node::Record { .. }) | (Node::Record { .. }, Node::Dict(a)) => {
                // a dictionary updated with (or into) a record is a dictionary, of the same
                // element type when the record's values all have it (`{ }` always does)
                let rec = if matches!(self.node(l), Node::Dict(_)) {
                    r
                } else {
                    l
                };
                let fields = self.record_view(rec).map(|(f, _)| f).unwrap_or_default();
                let uniform = self.transaction(|c| fields.iter().all(|f| c.unify(a, f.ty).is_ok()));
                if !uniform {
                    self.strict_mixed_dict(lhs.span.to(rhs.span), l, r);
                }
                let elem = if uniform { a } else { self.dyn_() };
                self.add(Node::Dict(elem))
            }
            (Node::Record { .. }, Node::Record { .. }) => {
                let (Some((lf, lt)), Some((rf, rt))) = (self.record_view(l), self.record_view(r))
                else {
                    return self.dyn_();
                };
                let mut fields: Vec<RField> = lf
                    .into_iter()
                    .filter(|f| !rf.iter().any(|g| g.name == f.name))
                    .collect();
                fields.extend(rf);
                let tail = match (lt, rt) {
                    (Tail::Closed, Tail::Closed) => None,
                    _ => Some(self.dyn_()),
                };
                self.add(Node::Record {
                    fields: sorted(fields),
                    tail,
                })
            }
            _ => self.dyn_(),
        }
    }

    // ---------------------------------------------------------------- bindings

    /// Collect the bindings of a record or `let` as `(path, value)` entries; `inherit (e)`
    /// sources are inferred once, here, in the current scope; plain `inherit` looks names up
    /// below `limit` (outside the group being defined).
    fn entries<'a>(&mut self, bindings: &'a [Binding], limit: usize) -> Vec<Entry<'a>> {
        self.entries_for(bindings, None, limit, None)
    }

    /// [`Self::entries`] restricted to the bindings of the names in `only`.
    fn entries_for<'a>(
        &mut self,
        bindings: &'a [Binding],
        selection: Option<&[usize]>,
        limit: usize,
        only: Option<&[&str]>,
    ) -> Vec<Entry<'a>> {
        let wanted = |n: &str| only.is_none_or(|o| o.contains(&n));
        let mut out = Vec::new();
        let selected: Vec<&'a Binding> = match selection {
            Some(ix) => ix.iter().filter_map(|i| bindings.get(*i)).collect(),
            None => bindings.iter().collect(),
        };
        for b in selected {
            match b {
                Binding::Attr { path, .. }
                    if only.is_some()
                        && !matches!(path.first(), Some(AttrKey::Static(n, _)) if wanted(n)) => {}
                Binding::Inherit { names, .. } if !names.iter().any(|(n, _)| wanted(n)) => {}
                Binding::Attr { path, value, span } => out.push(Entry {
                    path,
                    val: Val::Expr(value),
                    span: *span,
                }),
                Binding::Inherit { from, names, span } => {
                    let src = from.as_ref().map(|f| (self.infer(f), f.span));
                    for (n, nspan) in names {
                        if !wanted(n) {
                            continue;
                        }
                        let t = match src {
                            Some((st, sspan)) => {
                                let key = [AttrKey::Static(n.clone(), *nspan)];
                                self.select(st, sspan, &key, None, false, *nspan)
                            }
                            None => match self.lookup(n, limit) {
                                Some(t) => self.instantiate(t),
                                None => self.dyn_(),
                            },
                        };
                        out.push(Entry {
                            path: &[],
                            val: Val::Typed(n.clone(), t),
                            span: *span,
                        });
                    }
                }
            }
        }
        out
    }

    /// The type of a (non-recursive) record built from entries, grouped by first key.
    fn record_of(&mut self, entries: Vec<Entry<'_>>, span: Span) -> T {
        let mut groups: Vec<(String, Vec<Entry<'_>>)> = Vec::new();
        let mut dynamic = Vec::new();
        for en in entries {
            let first = match (&en.val, en.path.first()) {
                (Val::Typed(n, _), _) => Some(n.clone()),
                (_, Some(AttrKey::Static(n, _))) => Some(n.clone()),
                (_, Some(AttrKey::Dynamic(d))) => {
                    let t = self.infer(d);
                    let s = self.prim(Prim::String);
                    if !self.try_unify(s, t) {
                        let rt = self.resolve(t);
                        if !matches!(self.node(rt), Node::Prim(Prim::Null)) {
                            self.expect(s, t, d.span, en.span, "an attribute name must be");
                        }
                    }
                    None
                }
                (_, None) => None,
            };
            match first {
                Some(n) => match groups.iter_mut().find(|(g, _)| *g == n) {
                    Some((_, v)) => v.push(en),
                    None => groups.push((n, vec![en])),
                },
                None => dynamic.push(en),
            }
        }
        let mut fields = Vec::new();
        for (name, group) in groups {
            let t = self.group_type(group, span);
            fields.push(RField {
                name,
                ty: t,
                optional: false,
            });
        }
        if dynamic.is_empty() {
            return self.add(Node::Record {
                fields: sorted(fields),
                tail: None,
            });
        }
        // computed keys: a dictionary
        let elem = self.fresh();
        let mut uniform = true;
        for f in &fields {
            if uniform && !self.try_unify(elem, f.ty) {
                uniform = false;
            }
        }
        let mut odd = None;
        for en in dynamic {
            let at = en.span;
            let t = self.group_type(vec![en], span);
            if uniform && !self.try_unify(elem, t) {
                uniform = false;
                odd = Some((at, t));
            }
        }
        if let (true, false, Some((at, t))) = (self.strict, uniform, odd) {
            let s = self.show(t);
            self.strict_dyn(
                span,
                "buildit::strict::mixed-dict",
                "this record has computed names and values of different types, so it is `{ _ : Dyn }`",
                vec![(at, format!("this value has type `{s}`, unlike the ones before it"))],
                "give the values one type, or annotate the record (`({ … } :: { _ : Dyn })`)",
            );
        }
        let elem = if uniform { elem } else { self.dyn_() };
        self.add(Node::Dict(elem))
    }

    /// The type of the value of one attribute defined by one or more entries (`a.b = 1; a.c = 2;`).
    /// Recurses (through [`Self::record_of`]) once per key of the longest path, an input-sized
    /// depth, so each level goes through `stacker`.
    fn group_type(&mut self, group: Vec<Entry<'_>>, span: Span) -> T {
        stacker::maybe_grow(RED, GROW, || self.group_type_inner(group, span))
    }

    fn group_type_inner(&mut self, mut group: Vec<Entry<'_>>, span: Span) -> T {
        if group.len() == 1 {
            let en = &group[0];
            match &en.val {
                Val::Typed(_, t) => return *t,
                Val::Expr(e) if en.path.len() <= 1 => return self.infer(e),
                _ => {}
            }
        }
        // nested: strip the first key; attribute-set literals merge
        let mut sub = Vec::new();
        for en in group.drain(..) {
            match en.val {
                Val::Expr(e) if en.path.len() <= 1 => match &e.kind {
                    ExprKind::Attrs {
                        rec: false,
                        bindings,
                    } => {
                        let inner = self.entries(bindings, self.env.len());
                        sub.extend(inner);
                    }
                    _ => {
                        let _ = self.infer(e);
                        return self.dyn_();
                    }
                },
                Val::Expr(_) => sub.push(Entry {
                    path: &en.path[1..],
                    val: en.val,
                    span: en.span,
                }),
                Val::Typed(..) => return self.dyn_(),
            }
        }
        self.record_of(sub, span)
    }

    /// `let` bindings: monomorphic together, then generalised; names are pushed on the env.
    fn let_bindings(&mut self, bindings: &[Binding]) {
        let limit = self.env.len();
        self.bind_group(bindings, limit);
    }

    /// Push a fresh variable per name defined by `bindings` (the env keeps them), then infer
    /// the definitions one strongly connected component at a time (dependencies first), each
    /// generalised before the next: `let` polymorphism where the dependency order allows it.
    fn bind_group(&mut self, bindings: &[Binding], limit: usize) -> Vec<(String, T)> {
        let mut names: Vec<(String, T)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut deps: Vec<Vec<usize>> = Vec::new();
        let mut free: Vec<std::collections::HashSet<String>> = Vec::new();
        self.level += 1;
        let mut by_name: Vec<Vec<usize>> = Vec::new();
        for (bi, b) in bindings.iter().enumerate() {
            let (ns, exprs): (Vec<&String>, Vec<&Expr>) = match b {
                Binding::Attr { path, value, .. } => match path.first() {
                    Some(AttrKey::Static(n, _)) => (vec![n], vec![value]),
                    _ => (vec![], vec![]),
                },
                Binding::Inherit {
                    from, names: ns, ..
                } => (
                    ns.iter().map(|(n, _)| n).collect(),
                    from.iter().map(|f| &**f).collect(),
                ),
            };
            for n in ns {
                let i = match index.get(n) {
                    Some(i) => *i,
                    None => {
                        let v = self.fresh();
                        names.push((n.clone(), v));
                        free.push(Default::default());
                        by_name.push(Vec::new());
                        index.insert(n.clone(), names.len() - 1);
                        names.len() - 1
                    }
                };
                if by_name[i].last() != Some(&bi) {
                    by_name[i].push(bi);
                }
                for e in &exprs {
                    free_vars(e, &mut free[i], 0);
                }
                if let Binding::Attr { path, .. } = b {
                    for k in &path[1..] {
                        if let AttrKey::Dynamic(d) = k {
                            free_vars(d, &mut free[i], 0);
                        }
                    }
                }
            }
        }
        self.level -= 1;
        for f in &free {
            deps.push(f.iter().filter_map(|n| index.get(n).copied()).collect());
        }
        for (n, v) in &names {
            self.push_env(n.clone(), *v);
        }
        // `x :: T = …;`: uses of `x` (recursive ones too) see the annotated type
        for b in bindings {
            if let Binding::Attr { path, value, .. } = b {
                if let ([AttrKey::Static(n, _)], ExprKind::Annot { ty, .. }) =
                    (path.as_slice(), &value.kind)
                {
                    if unknown_type_name(ty, 0).is_none() {
                        if let Some(i) = index.get(n) {
                            self.level += 1;
                            let a = self.node_of_type(ty, &mut HashMap::new());
                            self.level -= 1;
                            let _ = self.unify(names[*i].1, a);
                        }
                    }
                }
            }
        }
        for scc in tarjan(&deps) {
            let members: Vec<&str> = scc.iter().map(|i| names[*i].0.as_str()).collect();
            self.level += 1;
            let mut sel: Vec<usize> = scc
                .iter()
                .flat_map(|i| by_name[*i].iter().copied())
                .collect();
            sel.sort_unstable();
            sel.dedup();
            let only = (scc.len() < names.len()).then_some(members.as_slice());
            let entries = self.entries_for(bindings, Some(&sel), limit, only);
            let rec = self.record_of(entries, Span::default());
            if let Some((fields, _)) = self.record_view(rec) {
                for i in &scc {
                    let (n, v) = (&names[*i].0, names[*i].1);
                    if let Some(f) = fields.iter().find(|f| &f.name == n) {
                        if self.unify(v, f.ty).is_err() {
                            // a recursive definition whose uses disagree: keep going with `Dyn`
                            if self.strict {
                                self.strict_recursive(bindings, &by_name[*i], n, f.ty);
                            }
                            let d = self.dyn_();
                            let rv = self.resolve(v);
                            if matches!(self.node(rv), Node::Var { .. }) {
                                self.set(rv, Node::Link(d));
                            }
                        }
                    }
                }
            }
            self.level -= 1;
            for i in &scc {
                self.generalize(names[*i].1);
            }
        }
        names
    }

    /// With `strict`: the definition of `name` (bindings `at`) does not fit its uses in its
    /// own recursive group, so it became `Dyn` (unless the binding is annotated).
    fn strict_recursive(&mut self, bindings: &[Binding], at: &[usize], name: &str, defined: T) {
        let Some(b) = at.first().and_then(|i| bindings.get(*i)) else {
            return;
        };
        let (span, annotated) = match b {
            Binding::Attr { value, span, .. } => {
                (*span, matches!(value.kind, ExprKind::Annot { .. }))
            }
            Binding::Inherit { span, .. } => (*span, false),
        };
        if annotated {
            return;
        }
        let s = self.show(defined);
        self.strict_dyn(
            span,
            "buildit::strict::recursive-use",
            format!("`{name}` is `Dyn`: its definition (of type `{s}`) and its uses in the same recursive group disagree"),
            vec![],
            &format!("annotate the binding with the type wanted: `{name} :: T = …;`"),
        );
    }

    /// `rec { … }`: the names are in scope in their own definitions; the type is the record.
    fn rec_group(&mut self, bindings: &[Binding], _legacy: bool) -> T {
        let mark = self.env.len();
        let names = self.bind_group(bindings, mark);
        // the record: static names as fields; dynamic keys make it a dictionary
        let has_dynamic = bindings.iter().any(|b| {
            matches!(b, Binding::Attr { path, .. } if matches!(path.first(), Some(AttrKey::Dynamic(_))))
        });
        self.truncate_env(mark);
        if has_dynamic {
            let d = self.dyn_();
            return self.add(Node::Dict(d));
        }
        let fields = names
            .into_iter()
            .map(|(name, ty)| RField {
                name,
                ty,
                optional: false,
            })
            .collect();
        self.add(Node::Record {
            fields: sorted(fields),
            tail: None,
        })
    }
}

struct Entry<'a> {
    path: &'a [AttrKey],
    val: Val<'a>,
    span: Span,
}

enum Val<'a> {
    Expr(&'a Expr),
    /// an inherited name and its type
    Typed(String, T),
}

/// Whether the builtin `name` (as [`Checker::builtin_head`] names it), applied to the arguments
/// of `func` plus one, is declared to give `Dyn` (or a type containing it): `fromJSON s`,
/// `split r s`, but not `map f l` (whose `Dyn` can only come from an argument, reported where
/// it came from) nor `import` (a path literal gets the imported file's type; a computed path is
/// `dynamic-import`).
fn builtin_result_is_dyn(name: &str, func: &Expr) -> bool {
    let bare = name.strip_prefix("builtins.").unwrap_or(name);
    let bare = bare.strip_prefix("__").unwrap_or(bare);
    if bare == "import" {
        return false;
    }
    let Some(sig) = BUILTIN_TYPES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, s)| s)
    else {
        return true;
    };
    let Ok(mut t) = parse_type(sig) else {
        return true;
    };
    let mut e = func;
    let mut args = 1;
    while let ExprKind::Apply { func, .. } = &e.kind {
        args += 1;
        e = func;
    }
    for _ in 0..args {
        match t {
            Type::Fun(_, r) => t = *r,
            _ => break,
        }
    }
    type_has_dyn(&t, 0)
}

/// Whether a declared type is or contains `Dyn`.
fn type_has_dyn(t: &Type, depth: u32) -> bool {
    if depth > 200 {
        return false;
    }
    match t {
        Type::Dyn => true,
        Type::List(e) | Type::Dict(e) => type_has_dyn(e, depth + 1),
        Type::Fun(a, b) => type_has_dyn(a, depth + 1) || type_has_dyn(b, depth + 1),
        Type::Record { fields, .. } => fields.iter().any(|f| type_has_dyn(&f.ty, depth + 1)),
        _ => false,
    }
}

fn sorted(mut v: Vec<RField>) -> Vec<RField> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

#[derive(Default)]
struct Namer {
    names: HashMap<T, String>,
    /// name variables for an interface: with their kind, never as `Int`
    exact: bool,
}

impl Namer {
    fn exact_name(&mut self, t: T, kind: Kind) -> String {
        let n = self.names.len();
        let k = match kind {
            Kind::Num => 'n',
            Kind::Add => 'a',
            Kind::Cmp => 'c',
            Kind::Any => 'v',
        };
        self.names
            .entry(t)
            .or_insert_with(|| format!("'{k}{n}"))
            .clone()
    }

    fn name(&mut self, t: T) -> String {
        let n = self.names.len();
        self.names
            .entry(t)
            .or_insert_with(|| {
                let letter = (b'a' + (n % 26) as u8) as char;
                if n < 26 {
                    letter.to_string()
                } else {
                    format!("{letter}{}", n / 26)
                }
            })
            .clone()
    }
}

/// Records of more than 8 fields keep their first 6 (and become open, `..`, in print).
fn abbreviate(t: Type, depth: u32) -> Type {
    if depth > 40 {
        return Type::Elided;
    }
    let d = depth + 1;
    match t {
        Type::List(e) => Type::List(Box::new(abbreviate(*e, d))),
        Type::Dict(e) => Type::Dict(Box::new(abbreviate(*e, d))),
        Type::Fun(a, b) => Type::Fun(Box::new(abbreviate(*a, d)), Box::new(abbreviate(*b, d))),
        Type::Record { fields, open } => {
            let long = fields.len() > 8;
            let fields = fields
                .into_iter()
                .take(if long { 6 } else { usize::MAX })
                .map(|f| Field {
                    ty: abbreviate(f.ty, d),
                    ..f
                })
                .collect();
            Type::Record {
                fields,
                open: open || long,
            }
        }
        other => other,
    }
}

fn mismatch_help(exp: &str, act: &str) -> String {
    match (exp, act) {
        ("Int" | "Float", "String") => {
            "convert the string with `builtins.fromJSON` or use a number literal".into()
        }
        ("String", "Int" | "Float" | "Bool" | "Path") => "convert it with `toString`".into(),
        ("Bool", _) => {
            "a condition must be `true` or `false`; compare explicitly (`x != null`, `x == 0`)"
                .into()
        }
        _ => format!("a value of type `{act}` cannot be used where `{exp}` is needed"),
    }
}

/// The candidate closest to `name` (edit distance at most a third of its length, at least 1).
pub fn did_you_mean<'s>(name: &str, candidates: &'s [String]) -> Option<&'s str> {
    let max = (name.chars().count().div_ceil(3)).max(1);
    candidates
        .iter()
        .map(|c| (crate::text::edit_distance(name, c), c))
        .filter(|(d, _)| *d <= max && *d < name.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// A capitalised name the type syntax does not know. The parser resolves `type` aliases, so
/// this only happens in types built by other means (a `Type::Var("Pkg")`, an unresolved
/// `Type::Alias`).
fn unknown_type_name(t: &Type, depth: u32) -> Option<String> {
    if depth > 200 {
        return None;
    }
    match t {
        Type::Var(v) if v.starts_with(|c: char| !c.is_ascii_lowercase()) => Some(v.clone()),
        Type::Alias(v, _) => Some(v.clone()),
        Type::List(e) | Type::Dict(e) => unknown_type_name(e, depth + 1),
        Type::Fun(a, b) => {
            unknown_type_name(a, depth + 1).or_else(|| unknown_type_name(b, depth + 1))
        }
        Type::Record { fields, .. } => fields
            .iter()
            .find_map(|f| unknown_type_name(&f.ty, depth + 1)),
        _ => None,
    }
}

/// The `v ? a` tests of a condition (through `&&`).
fn collect_guards(cond: &Expr, out: &mut Vec<(String, String)>) {
    match &cond.kind {
        ExprKind::HasAttr { expr, path } => {
            if let (ExprKind::Var(v), Some(AttrKey::Static(k, _))) = (&expr.kind, path.first()) {
                out.push((v.clone(), k.clone()));
            }
        }
        ExprKind::Binary {
            op: BinOp::And,
            lhs,
            rhs,
        } if out.len() < 64 => {
            collect_guards(lhs, out);
            collect_guards(rhs, out);
        }
        _ => {}
    }
}

/// Every variable name occurring in `e` (an over-approximation of its free variables: binders
/// are ignored, which can only merge dependency components).
fn free_vars(e: &Expr, out: &mut std::collections::HashSet<String>, depth: u32) {
    if depth > 4000 {
        return;
    }
    stacker::maybe_grow(RED, GROW, || {
        let d = depth + 1;
        let parts = |ps: &[StrPart], out: &mut std::collections::HashSet<String>| {
            for p in ps {
                if let StrPart::Interp(x) = p {
                    free_vars(x, out, d);
                }
            }
        };
        let keys = |ks: &[AttrKey], out: &mut std::collections::HashSet<String>| {
            for k in ks {
                if let AttrKey::Dynamic(x) = k {
                    free_vars(x, out, d);
                }
            }
        };
        let binds = |bs: &[Binding], out: &mut std::collections::HashSet<String>| {
            for b in bs {
                match b {
                    Binding::Attr { path, value, .. } => {
                        keys(path, out);
                        free_vars(value, out, d);
                    }
                    Binding::Inherit { from, names, .. } => match from {
                        Some(f) => free_vars(f, out, d),
                        None => out.extend(names.iter().map(|(n, _)| n.clone())),
                    },
                }
            }
        };
        match &e.kind {
            ExprKind::Var(n) => {
                out.insert(n.clone());
            }
            ExprKind::Str(ps) | ExprKind::Path(_, ps) => parts(ps, out),
            ExprKind::List(xs) => xs.iter().for_each(|x| free_vars(x, out, d)),
            ExprKind::Attrs { bindings, .. } | ExprKind::LegacyLet(bindings) => {
                binds(bindings, out)
            }
            ExprKind::Let { bindings, body, .. } => {
                binds(bindings, out);
                free_vars(body, out, d);
            }
            ExprKind::Lambda { param, body } => {
                if let Param::Pattern { fields, .. } = param {
                    for f in fields {
                        if let Some(x) = &f.default {
                            free_vars(x, out, d);
                        }
                    }
                }
                free_vars(body, out, d);
            }
            ExprKind::Apply { func, arg } => {
                free_vars(func, out, d);
                free_vars(arg, out, d);
            }
            ExprKind::If { cond, then, else_ } => {
                free_vars(cond, out, d);
                free_vars(then, out, d);
                free_vars(else_, out, d);
            }
            ExprKind::Assert { cond, body } => {
                free_vars(cond, out, d);
                free_vars(body, out, d);
            }
            ExprKind::Select {
                expr,
                path,
                default,
            } => {
                free_vars(expr, out, d);
                keys(path, out);
                if let Some(x) = default {
                    free_vars(x, out, d);
                }
            }
            ExprKind::HasAttr { expr, path } => {
                free_vars(expr, out, d);
                keys(path, out);
            }
            ExprKind::Unary { expr, .. } => free_vars(expr, out, d),
            ExprKind::Binary { lhs, rhs, .. } => {
                free_vars(lhs, out, d);
                free_vars(rhs, out, d);
            }
            _ => {}
        }
    })
}

/// Strongly connected components of a dependency graph (`deps[i]` = nodes `i` uses), each
/// listed after every component it depends on. Iterative Tarjan: no recursion on deep graphs.
fn tarjan(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if *i < deps[v].len() {
                let w = deps[v][*i];
                *i += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(u, _)) = work.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comp.sort_unstable();
                    out.push(comp);
                }
            }
        }
    }
    out
}
