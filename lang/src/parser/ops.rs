//! Operator expressions: the grammar collects `-a * b + !c ? d` as a flat sequence of prefix
//! operators, operands, binary operators and `? path` suffixes, and [`resolve`] builds the tree.
//!
//! Why not a stratified grammar: Nix's bison grammar uses precedence declarations, under which a
//! low-precedence prefix operator may appear as the right operand of a tighter binary operator
//! and then extends over it (`a * !b + c` is `a * (!(b + c))`). An operator-precedence pass
//! reproduces bison's shift/reduce decisions exactly, runs iteratively (a 100,000-term chain is
//! no problem for the native stack), and keeps the LR grammar small.

use super::actions::{State, D, N};
use crate::ast::{AttrKey, BinOp, Expr, ExprKind, UnaryOp};
use crate::diag::Diagnostic;
use crate::span::Span;

/// One element of an operator sequence, in source order.
#[derive(Debug)]
pub enum OpItem {
    /// A prefix operator starting at the given offset.
    Prefix(UnaryOp, usize),
    Operand(N),
    Bin(BinOp, Span),
    /// `? a.b`, ending at the given offset.
    Has(Vec<D<AttrKey>>, usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Assoc {
    Left,
    Right,
    Neither,
}

/// Precedence of `!` (bison's `NOT`).
const PREC_NOT: u8 = 7;
/// Precedence of `?`.
const PREC_HAS: u8 = 11;
/// Precedence of unary `-` (bison's `NEGATE`).
const PREC_NEG: u8 = 12;

/// Binary operator precedence (higher binds tighter) and associativity, from Nix 2.8's
/// `parser.y`.
fn bin_prec(op: BinOp) -> (u8, Assoc) {
    match op {
        BinOp::Impl => (1, Assoc::Right),
        BinOp::Or => (2, Assoc::Left),
        BinOp::And => (3, Assoc::Left),
        BinOp::Eq | BinOp::NotEq => (4, Assoc::Neither),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => (5, Assoc::Neither),
        BinOp::Update => (6, Assoc::Right),
        BinOp::Add | BinOp::Sub => (8, Assoc::Left),
        BinOp::Mul | BinOp::Div => (9, Assoc::Left),
        BinOp::Concat => (10, Assoc::Right),
    }
}

enum StackOp {
    Prefix(UnaryOp, usize),
    Bin(BinOp, Span),
}

impl StackOp {
    fn prec(&self) -> u8 {
        match self {
            StackOp::Prefix(UnaryOp::Not, _) => PREC_NOT,
            StackOp::Prefix(UnaryOp::Neg, _) => PREC_NEG,
            StackOp::Bin(op, _) => bin_prec(*op).0,
        }
    }
}

/// Build the expression tree of an operator sequence.
pub fn resolve(st: &mut State<'_>, items: Vec<OpItem>) -> N {
    let mut operands: Vec<N> = Vec::new();
    let mut ops: Vec<StackOp> = Vec::new();
    for item in items {
        match item {
            OpItem::Prefix(op, l) => ops.push(StackOp::Prefix(op, l)),
            OpItem::Operand(n) => operands.push(n),
            OpItem::Bin(op, span) => {
                let (p, assoc) = bin_prec(op);
                while let Some(top) = ops.last() {
                    let tp = top.prec();
                    let reduce = if tp == p {
                        match assoc {
                            Assoc::Left => true,
                            Assoc::Right => false,
                            Assoc::Neither => {
                                if let StackOp::Bin(prev, prev_span) = top {
                                    st.diags.push(non_assoc(*prev, *prev_span, op, span));
                                }
                                true
                            }
                        }
                    } else {
                        tp > p
                    };
                    if !reduce {
                        break;
                    }
                    reduce_top(st, &mut ops, &mut operands);
                }
                ops.push(StackOp::Bin(op, span));
            }
            OpItem::Has(path, r) => {
                while ops.last().is_some_and(|top| top.prec() > PREC_HAS) {
                    reduce_top(st, &mut ops, &mut operands);
                }
                let e = pop_operand(st, &mut operands);
                let span = Span::new(st.file, e.v.span.start as usize, r);
                let d = e.d.max(path.iter().map(|k| k.d).max().unwrap_or(0));
                let n = st.node(
                    ExprKind::HasAttr {
                        expr: Box::new(e.v),
                        path: path.into_iter().map(|k| k.v).collect(),
                    },
                    span,
                    d,
                );
                operands.push(n);
            }
        }
    }
    while !ops.is_empty() {
        reduce_top(st, &mut ops, &mut operands);
    }
    pop_operand(st, &mut operands)
}

fn pop_operand(st: &mut State<'_>, operands: &mut Vec<N>) -> N {
    match operands.pop() {
        Some(n) => n,
        // Unreachable with the grammar's sequences; stay total anyway.
        None => D::new(Expr::new(ExprKind::Error, st.span(0, 0)), 1),
    }
}

fn reduce_top(st: &mut State<'_>, ops: &mut Vec<StackOp>, operands: &mut Vec<N>) {
    let Some(op) = ops.pop() else { return };
    let n = match op {
        StackOp::Prefix(op, l) => {
            let e = pop_operand(st, operands);
            let span = Span::new(st.file, l, e.v.span.end as usize);
            let d = e.d;
            st.node(
                ExprKind::Unary {
                    op,
                    expr: Box::new(e.v),
                },
                span,
                d,
            )
        }
        StackOp::Bin(op, _) => {
            let rhs = pop_operand(st, operands);
            let lhs = pop_operand(st, operands);
            let span = lhs.v.span.to(rhs.v.span);
            let d = lhs.d.max(rhs.d);
            st.node(
                ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs.v),
                    rhs: Box::new(rhs.v),
                },
                span,
                d,
            )
        }
    };
    operands.push(n);
}

fn non_assoc(prev: BinOp, prev_span: Span, op: BinOp, span: Span) -> Diagnostic {
    Diagnostic::error(
        "buildit::parse::non-associative",
        format!("`{}` cannot be chained with `{}`", op.symbol(), prev.symbol()),
    )
    .with_label(span, "this operator")
    .with_label(prev_span, "follows this one at the same precedence")
    .with_help(format!(
        "comparison operators are non-associative: add parentheses, e.g. `(a {} b) {} c`, or combine comparisons with `&&`",
        prev.symbol(),
        op.symbol()
    ))
}
