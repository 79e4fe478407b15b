//! The abstract syntax tree of `.bld`, with a [`Span`] on every node. It is the parser's output
//! and the input of the evaluator's lowering (and later of the type checker). It is close to the
//! surface syntax on purpose: desugaring (nested attribute paths, `inherit`, `rec`) happens in
//! the evaluator's lowering, where scopes are resolved, so that diagnostics can still point at
//! what the user wrote.

use crate::span::Span;

/// An identifier or attribute name as written.
pub type Name = String;

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    /// A string literal, plain or indented (`''…''`, already dedented), with interpolations.
    Str(Vec<StrPart>),
    /// A path literal: `./a/b`, `/abs`, `~/x`, with optional interpolations (`./a/${b}`).
    Path(PathKind, Vec<StrPart>),
    /// A search path `<nixpkgs/lib>`; evaluating one is an error in buildit (no NIX_PATH), but it
    /// parses so the diagnostic can say so.
    SearchPath(String),
    /// An unquoted URL literal (`http://x.org/a`), a string.
    Uri(String),
    /// A variable reference.
    Var(Name),
    List(Vec<Expr>),
    Attrs {
        rec: bool,
        bindings: Vec<Binding>,
    },
    /// `let … in body`. Type aliases (`type Pkg = { … };`) declared in the block are kept apart
    /// from the value bindings: they are resolved at parse time (see `types::aliases`) and
    /// evaluation ignores them.
    Let {
        bindings: Vec<Binding>,
        aliases: Vec<TypeAlias>,
        body: Box<Expr>,
    },
    /// `let { a = 1; body = a; }` (legacy Nix form; its value is the `body` attribute).
    LegacyLet(Vec<Binding>),
    Lambda {
        param: Param,
        body: Box<Expr>,
    },
    Apply {
        func: Box<Expr>,
        arg: Box<Expr>,
    },
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        else_: Box<Expr>,
    },
    Assert {
        cond: Box<Expr>,
        body: Box<Expr>,
    },
    /// `e.a.b` or `e.a.b or d`.
    Select {
        expr: Box<Expr>,
        path: Vec<AttrKey>,
        default: Option<Box<Expr>>,
    },
    /// `e ? a.b`
    HasAttr {
        expr: Box<Expr>,
        path: Vec<AttrKey>,
    },
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `(e :: T)` or `let x :: T = e;`: a type annotation, checked by `types` and erased before
    /// evaluation.
    Annot {
        expr: Box<Expr>,
        ty: crate::types::Type,
    },
    /// Placeholder left by error recovery; evaluating it is an error (it is never reached,
    /// because a file with parse errors is not evaluated).
    Error,
}

/// `type Name = T;` in a `let` block: `ty` is already resolved (no alias names left in it).
#[derive(Clone, Debug, PartialEq)]
pub struct TypeAlias {
    pub name: Name,
    pub name_span: Span,
    pub ty: crate::types::Type,
    /// The whole declaration, `type` to `;`.
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// `./x`, `../x`, `a/b` (relative to the directory of the file containing it)
    Relative,
    /// `/x`
    Absolute,
    /// `~/x`
    Home,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StrPart {
    Lit(String),
    Interp(Expr),
}

/// One element of an attribute path.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrKey {
    /// `a` or `"a"` (a string without interpolation)
    Static(Name, Span),
    /// `${e}` or `"x${e}"`
    Dynamic(Expr),
}

impl AttrKey {
    pub fn span(&self) -> Span {
        match self {
            AttrKey::Static(_, s) => *s,
            AttrKey::Dynamic(e) => e.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Binding {
    /// `a.b.c = value;`
    Attr {
        path: Vec<AttrKey>,
        value: Expr,
        span: Span,
    },
    /// `inherit a b;` or `inherit (e) a b;`. Names are static or (in attribute sets only)
    /// string literals.
    Inherit {
        from: Option<Box<Expr>>,
        names: Vec<(Name, Span)>,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// `x: body`
    Ident(Name, Span),
    /// `{ a, b ? d, ... } @ name: body`
    Pattern {
        fields: Vec<PatField>,
        ellipsis: bool,
        bind: Option<(Name, Span)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct PatField {
    pub name: Name,
    pub span: Span,
    pub default: Option<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-e`
    Neg,
    /// `!e`
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `++`
    Concat,
    /// `//`
    Update,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// `->`
    Impl,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Concat => "++",
            BinOp::Update => "//",
            BinOp::Eq => "==",
            BinOp::NotEq => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Impl => "->",
        }
    }
}
