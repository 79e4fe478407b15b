//! Fuzz target `parse`: runs the lexer and the parser on arbitrary bytes (decoded as lossy
//! UTF-8) and checks the invariants the rest of buildit relies on: no panic, no stack overflow,
//! an expression is always returned, and every token, diagnostic label and AST span lies inside
//! the source.

#![no_main]

use buildit_lang::ast::{AttrKey, Binding, Expr, ExprKind, Param, StrPart};
use buildit_lang::{lexer, parse, FileId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let len = src.len();

    let lexed = lexer::lex(FileId(0), &src);
    let mut prev = 0;
    for (l, _, r) in &lexed.tokens {
        assert!(l <= r && *r <= len, "token span {l}..{r} out of 0..{len}");
        assert!(*l >= prev, "tokens out of order");
        prev = *l;
    }

    let parsed = parse(FileId(0), &src);
    for d in &parsed.diagnostics {
        assert!(!d.code.is_empty() && !d.message.is_empty());
        for l in &d.labels {
            assert!(
                l.span.start <= l.span.end && l.span.end as usize <= len,
                "{d:?}"
            );
        }
    }
    let expr = parsed.expr.expect("parse always returns an expression");
    check_spans(&expr, len);
});

/// Walk the tree iteratively and check that every span is inside the source.
fn check_spans(root: &Expr, len: usize) {
    let mut stack = vec![root];
    let ok = |s: buildit_lang::Span| s.start <= s.end && s.end as usize <= len;
    while let Some(e) = stack.pop() {
        assert!(ok(e.span), "span {} out of 0..{len}", e.span);
        match &e.kind {
            ExprKind::Str(parts) | ExprKind::Path(_, parts) => {
                for p in parts {
                    if let StrPart::Interp(x) = p {
                        stack.push(x);
                    }
                }
            }
            ExprKind::List(xs) => stack.extend(xs),
            ExprKind::Attrs { bindings, .. } | ExprKind::LegacyLet(bindings) => {
                bindings_of(bindings, &mut stack, len)
            }
            ExprKind::Let { bindings, body, .. } => {
                bindings_of(bindings, &mut stack, len);
                stack.push(body);
            }
            ExprKind::Lambda { param, body } => {
                if let Param::Pattern { fields, .. } = param {
                    for f in fields {
                        if let Some(d) = &f.default {
                            stack.push(d);
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
                keys(path, &mut stack, len);
                if let Some(d) = default {
                    stack.push(d);
                }
            }
            ExprKind::HasAttr { expr, path } => {
                stack.push(expr);
                keys(path, &mut stack, len);
            }
            ExprKind::Unary { expr, .. } | ExprKind::Annot { expr, .. } => stack.push(expr),
            ExprKind::Binary { lhs, rhs, .. } => {
                stack.push(lhs);
                stack.push(rhs);
            }
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::SearchPath(_)
            | ExprKind::Uri(_)
            | ExprKind::Var(_)
            | ExprKind::Error => {}
        }
    }
}

fn keys<'a>(path: &'a [AttrKey], stack: &mut Vec<&'a Expr>, len: usize) {
    for k in path {
        let s = k.span();
        assert!(s.start <= s.end && s.end as usize <= len);
        if let AttrKey::Dynamic(e) = k {
            stack.push(e);
        }
    }
}

fn bindings_of<'a>(bindings: &'a [Binding], stack: &mut Vec<&'a Expr>, len: usize) {
    for b in bindings {
        match b {
            Binding::Attr { path, value, span } => {
                assert!(span.end as usize <= len);
                keys(path, stack, len);
                stack.push(value);
            }
            Binding::Inherit { from, names, span } => {
                assert!(span.end as usize <= len);
                for (_, s) in names {
                    assert!(s.end as usize <= len);
                }
                if let Some(f) = from {
                    stack.push(f);
                }
            }
        }
    }
}
