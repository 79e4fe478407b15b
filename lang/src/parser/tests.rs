//! Parser tests: precedence and associativity (expected trees taken from
//! `nix-instantiate --parse`), every construct, indented-string dedent cases (expected strings
//! taken from `nix-instantiate --eval`), error recovery, very deep inputs, garbage input.

use super::*;
use crate::ast::{AttrKey, Binding, Param, PathKind, StrPart};
use std::fmt::Write;

/// A compact s-expression rendering of an AST, to write expected trees concisely.
fn sexp(e: &Expr) -> String {
    let mut s = String::new();
    write_expr(&mut s, e);
    s
}

fn write_str_parts(out: &mut String, parts: &[StrPart]) {
    out.push('"');
    for p in parts {
        match p {
            StrPart::Lit(l) => {
                let esc = format!("{:?}", l);
                out.push_str(esc.get(1..esc.len() - 1).unwrap_or(""));
            }
            StrPart::Interp(e) => {
                out.push_str("${");
                write_expr(out, e);
                out.push('}');
            }
        }
    }
    out.push('"');
}

fn write_key(out: &mut String, k: &AttrKey) {
    match k {
        AttrKey::Static(n, _) => out.push_str(n),
        AttrKey::Dynamic(e) => {
            out.push_str("${");
            write_expr(out, e);
            out.push('}');
        }
    }
}

fn write_path(out: &mut String, path: &[AttrKey]) {
    for (i, k) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        write_key(out, k);
    }
}

fn write_bindings(out: &mut String, bs: &[Binding]) {
    out.push('{');
    for b in bs {
        match b {
            Binding::Attr { path, value, .. } => {
                write_path(out, path);
                out.push_str(" = ");
                write_expr(out, value);
                out.push_str("; ");
            }
            Binding::Inherit { from, names, .. } => {
                out.push_str("inherit ");
                if let Some(f) = from {
                    out.push('(');
                    write_expr(out, f);
                    out.push_str(") ");
                }
                for (n, _) in names {
                    out.push_str(n);
                    out.push(' ');
                }
                out.push_str("; ");
            }
        }
    }
    out.push('}');
}

fn write_expr(out: &mut String, e: &Expr) {
    match &e.kind {
        ExprKind::Int(n) => {
            let _ = write!(out, "{}", n);
        }
        ExprKind::Float(f) => {
            let _ = write!(out, "{:?}", f);
        }
        ExprKind::Str(parts) => write_str_parts(out, parts),
        ExprKind::Path(kind, parts) => {
            out.push_str(match kind {
                PathKind::Relative => "(rel ",
                PathKind::Absolute => "(abs ",
                PathKind::Home => "(home ",
            });
            write_str_parts(out, parts);
            out.push(')');
        }
        ExprKind::SearchPath(p) => {
            let _ = write!(out, "<{}>", p);
        }
        ExprKind::Uri(u) => {
            let _ = write!(out, "(uri {})", u);
        }
        ExprKind::Var(n) => out.push_str(n),
        ExprKind::List(xs) => {
            out.push('[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_expr(out, x);
            }
            out.push(']');
        }
        ExprKind::Attrs { rec, bindings } => {
            if *rec {
                out.push_str("rec");
            }
            write_bindings(out, bindings);
        }
        ExprKind::Let { bindings, body, .. } => {
            out.push_str("(let ");
            write_bindings(out, bindings);
            out.push(' ');
            write_expr(out, body);
            out.push(')');
        }
        ExprKind::LegacyLet(bindings) => {
            out.push_str("(legacy-let ");
            write_bindings(out, bindings);
            out.push(')');
        }
        ExprKind::Lambda { param, body } => {
            out.push_str("(fn ");
            match param {
                Param::Ident(n, _) => out.push_str(n),
                Param::Pattern {
                    fields,
                    ellipsis,
                    bind,
                } => {
                    out.push('{');
                    let mut items: Vec<String> = fields
                        .iter()
                        .map(|f| match &f.default {
                            Some(d) => format!("{} ? {}", f.name, sexp(d)),
                            None => f.name.clone(),
                        })
                        .collect();
                    if *ellipsis {
                        items.push("...".to_string());
                    }
                    out.push_str(&items.join(", "));
                    out.push('}');
                    if let Some((b, _)) = bind {
                        out.push('@');
                        out.push_str(b);
                    }
                }
            }
            out.push(' ');
            write_expr(out, body);
            out.push(')');
        }
        ExprKind::Apply { func, arg } => {
            out.push('(');
            write_expr(out, func);
            out.push(' ');
            write_expr(out, arg);
            out.push(')');
        }
        ExprKind::If { cond, then, else_ } => {
            out.push_str("(if ");
            write_expr(out, cond);
            out.push(' ');
            write_expr(out, then);
            out.push(' ');
            write_expr(out, else_);
            out.push(')');
        }
        ExprKind::Assert { cond, body } => {
            out.push_str("(assert ");
            write_expr(out, cond);
            out.push(' ');
            write_expr(out, body);
            out.push(')');
        }
        ExprKind::Select {
            expr,
            path,
            default,
        } => {
            out.push_str("(. ");
            write_expr(out, expr);
            out.push(' ');
            write_path(out, path);
            if let Some(d) = default {
                out.push_str(" or ");
                write_expr(out, d);
            }
            out.push(')');
        }
        ExprKind::HasAttr { expr, path } => {
            out.push_str("(? ");
            write_expr(out, expr);
            out.push(' ');
            write_path(out, path);
            out.push(')');
        }
        ExprKind::Unary { op, expr } => {
            out.push_str(match op {
                crate::ast::UnaryOp::Neg => "(neg ",
                crate::ast::UnaryOp::Not => "(not ",
            });
            write_expr(out, expr);
            out.push(')');
        }
        ExprKind::Binary { op, lhs, rhs } => {
            out.push('(');
            out.push_str(op.symbol());
            out.push(' ');
            write_expr(out, lhs);
            out.push(' ');
            write_expr(out, rhs);
            out.push(')');
        }
        ExprKind::Annot { expr, ty } => {
            out.push('(');
            write_expr(out, expr);
            out.push_str(&format!(" :: {ty})"));
        }
        ExprKind::Error => out.push_str("ERR"),
    }
}

fn p(src: &str) -> Parsed {
    parse(FileId(0), src)
}

/// Parse, require success, render.
#[track_caller]
fn ok(src: &str) -> String {
    let r = p(src);
    assert!(
        r.diagnostics.is_empty(),
        "unexpected diagnostics for {:?}: {:#?}",
        src,
        r.diagnostics
    );
    sexp(r.expr.as_ref().expect("an expression"))
}

#[track_caller]
fn check(src: &str, expected: &str) {
    assert_eq!(ok(src), expected, "source: {:?}", src);
}

/// Parse, require errors, return their codes.
#[track_caller]
fn codes(src: &str) -> Vec<&'static str> {
    let r = p(src);
    assert!(r.expr.is_some(), "no expression for {:?}", src);
    r.diagnostics.iter().map(|d| d.code).collect()
}

#[track_caller]
fn err(src: &str, code: &str) {
    let c = codes(src);
    assert!(
        c.contains(&code),
        "expected {} for {:?}, got {:?}",
        code,
        src,
        c
    );
}

#[test]
fn precedence_matches_nix() {
    // Expected trees from `nix-instantiate --parse` (Nix 2.8).
    check("!a + b", "(not (+ a b))");
    check("a + !b + c", "(+ a (not (+ b c)))");
    check("a * !b + c", "(* a (not (+ b c)))");
    check("-a ? b", "(? (neg a) b)");
    check("- !a + b", "(neg (not (+ a b)))");
    check("!a == b", "(== (not a) b)");
    check("a ? b + c", "(+ (? a b) c)");
    check("-a.b", "(neg (. a b))");
    check("-f x", "(neg (f x))");
    check("a - -b", "(- a (neg b))");
    check("!a ? b", "(not (? a b))");
    check("a // !b // c", "(// a (// (not b) c))");
    check("a || !b && c", "(|| a (&& (not b) c))");
    check("!a || b", "(|| (not a) b)");
    check("a ++ - b ++ c", "(++ a (++ (neg b) c))");
    check("-a * b", "(* (neg a) b)");
    check("a < b == c", "(== (< a b) c)");
    check("a == b < c", "(== a (< b c))");
    check("a ? b ++ c", "(++ (? a b) c)");
    check("{a=1;} ? a ? b", "(? (? {a = 1; } a) b)");
    check("a -> b -> c", "(-> a (-> b c))");
    check("a ++ b ++ c", "(++ a (++ b c))");
    check("a // b // c", "(// a (// b c))");
    check("a - b - c", "(- (- a b) c)");
    check("a / b / c", "(/ (/ a b) c)");
    check("a + b * c", "(+ a (* b c))");
    check("a * b + c", "(+ (* a b) c)");
    check("a || b && c || d", "(|| (|| a (&& b c)) d)");
    check("a -> b || c", "(-> a (|| b c))");
    check("a && b -> c", "(-> (&& a b) c)");
    check("a + b ++ c", "(+ a (++ b c))");
    check("a // b + c", "(// a (+ b c))");
    check("a <= b && c >= d", "(&& (<= a b) (>= c d))");
    check("a != b || c > d", "(|| (!= a b) (> c d))");
    check("f -1", "(- f 1)");
    check("a -1", "(- a 1)");
    check("- - a", "(neg (neg a))");
    check("! ! a", "(not (not a))");
    check("f x y", "((f x) y)");
    check("f x.y z", "((f (. x y)) z)");
    check("if a then b else c + d", "(if a b (+ c d))");
    check("x: - -x", "(fn x (neg (neg x)))");
}

#[test]
fn non_associative_operators() {
    err("a == b == c", "buildit::parse::non-associative");
    err("a < b > c", "buildit::parse::non-associative");
    err("a != b == c", "buildit::parse::non-associative");
    check("(a == b) == c", "(== (== a b) c)");
}

#[test]
fn literals() {
    check("1", "1");
    check("1.5", "1.5");
    check(".5", "0.5");
    check("1.", "1.0");
    check("1.e5", "100000.0");
    check("01.5", "(1 0.5)");
    check("a.5", "(a 0.5)");
    check("9223372036854775807", "9223372036854775807");
    err("9223372036854775808", "buildit::parse::int-overflow");
    err("1.0e999", "buildit::parse::float-range");
    check("true", "true");
    check("x:x", "(uri x:x)");
    check(
        "https://example.org/a?b=c",
        "(uri https://example.org/a?b=c)",
    );
    check("<nixpkgs>", "<nixpkgs>");
    check("<nixpkgs/lib>", "<nixpkgs/lib>");
    check("__curPos", "__curPos");
}

#[test]
fn strings() {
    check(r#""""#, r#""""#);
    check(r#""abc""#, r#""abc""#);
    check(r#""a\nb\t\r\\\"\$\q""#, r#""a\nb\t\r\\\"$q""#);
    check(r#""a${b}c""#, r#""a${b}c""#);
    check(r#""${a}${b}""#, r#""${a}${b}""#);
    check(r#""$${x}""#, r#""$${x}""#);
    check(r#""\${x}""#, r#""${x}""#);
    check(r#""a$""#, r#""a$""#);
    check(r#""$$""#, r#""$$""#);
    check(r#""${ {a = 1;}.a }""#, r#""${(. {a = 1; } a)}""#);
    check(r#""${"${x}"}""#, r#""${"${x}"}""#);
    check("\"a\r\nb\"", r#""a\nb""#);
    let r = p(r#""abc"#);
    assert_eq!(
        r.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec!["buildit::parse::unterminated-string"]
    );
}

#[test]
fn string_representation() {
    // A plain string is one literal part; an empty string has none.
    let r = p(r#""abc""#);
    assert_eq!(
        r.expr.map(|e| e.kind),
        Some(ExprKind::Str(vec![StrPart::Lit("abc".into())]))
    );
    let r = p(r#""""#);
    assert_eq!(r.expr.map(|e| e.kind), Some(ExprKind::Str(vec![])));
}

/// Indented strings: expected values from `nix-instantiate --eval --strict --json`.
#[test]
fn indented_strings() {
    let cases: &[(&str, &str)] = &[
        ("''''", ""),
        ("''abc''", "abc"),
        ("''\n  a\n  b\n''", "a\nb\n"),
        ("''\n  a\n    b\n  ''", "a\n  b\n"),
        ("''\n    a\n  b\n''", "  a\nb\n"),
        ("''  a\n  b''", "a\nb"),
        ("''\n\n  a\n\n  b\n''", "\na\n\nb\n"),
        ("''\n  a\n \n  b\n''", "a\n\nb\n"),
        ("''\n  a\n  ''", "a\n"),
        ("''\n  a\n  b''", "a\nb"),
        ("''\n  a''", "a"),
        ("''  \n  a''", "a"),
        ("''\t\n  a''", "\t\n  a"),
        ("''\n\ta\n  b''", "\ta\n  b"),
        ("''a''\\nb''", "a\nb"),
        ("''a'''b''", "a''b"),
        ("''a''$b''", "a$b"),
        ("''''${x}''", "${x}"),
        ("''$${x}''", "$${x}"),
        ("''a$''", "a$"),
        ("''a'b''", "a'b"),
        ("''a'$b''", "a'$b"),
        ("''\n  ''\\t\n  a\n''", "\t\na\n"),
        ("''\n  '''\n    b\n''", "''\n  b\n"),
        ("''\n    ''$a\n  b\n''", "  $a\nb\n"),
        ("''\n  x\n  ''\\ny\n''", "x\n\ny\n"),
        ("''   ''", ""),
        ("''\n   ''", ""),
        ("''\n  a\n   ''", "a\n"),
        ("''\n  a\n  b  ''", "a\nb  "),
        ("'' a ''", "a "),
        ("''\r\n  a''", "\r\n  a"),
    ];
    for (src, expected) in cases {
        let r = p(src);
        assert!(r.diagnostics.is_empty(), "{:?}: {:?}", src, r.diagnostics);
        let got = match r.expr.map(|e| e.kind) {
            Some(ExprKind::Str(parts)) => parts
                .into_iter()
                .map(|p| match p {
                    StrPart::Lit(s) => s,
                    StrPart::Interp(_) => "<interp>".to_string(),
                })
                .collect::<String>(),
            other => panic!("{:?}: not a string: {:?}", src, other),
        };
        assert_eq!(&got, expected, "source {:?}", src);
    }
    // Interpolations count as text for the indentation and are kept.
    check("''\n  ${a}\n    b\n''", "\"${a}\\n  b\\n\"");
    check("''\n    x ${a}\n  b\n''", "\"  x ${a}\\nb\\n\"");
    check("''\n  ${a}''", "\"${a}\"");
    check("''${a}\n  b''", "\"${a}\\n  b\"");
    check("''\n    a ${b} c\n      d\n    ''", "\"a ${b} c\\n  d\\n\"");
}

#[test]
fn paths() {
    check("./a", r#"(rel "./a")"#);
    check("./a/b.nix", r#"(rel "./a/b.nix")"#);
    check("../a", r#"(rel "../a")"#);
    check("a/b", r#"(rel "a/b")"#);
    check("/abs", r#"(abs "/abs")"#);
    check("~/x", r#"(home "~/x")"#);
    check("x.y/z", r#"(rel "x.y/z")"#);
    check("1/2", r#"(rel "1/2")"#);
    check("2 / 3", "(/ 2 3)");
    check("a//b", "(// a b)");
    check("./${a}", r#"(rel "./${a}")"#);
    check("./a/${b}c/d", r#"(rel "./a/${b}c/d")"#);
    check("./a${b}", r#"(rel "./a${b}")"#);
    check("~/${b}", r#"(home "~/${b}")"#);
    check("/a/${b}/${c}", r#"(abs "/a/${b}/${c}")"#);
    check("[ ./a ./b ]", r#"[(rel "./a") (rel "./b")]"#);
    check("f ./a", r#"(f (rel "./a"))"#);
    err("./a//b", "buildit::parse::unexpected-token");
    check("./${a}//b", r#"(rel "./${a}//b")"#);
    err("a/b/", "buildit::parse::path-trailing-slash");
    err("./${b}/", "buildit::parse::path-trailing-slash");
}

#[test]
fn lists_and_records() {
    check("[]", "[]");
    check("[ 1 a.b (f x) [ ] ]", "[1 (. a b) (f x) []]");
    check("[ a or b ]", "[(a or) b]");
    check("{}", "{}");
    check("{ a = 1; b.c = 2; }", "{a = 1; b.c = 2; }");
    check("rec { a = 1; b = a; }", "rec{a = 1; b = a; }");
    check("rec {}", "rec{}");
    check(
        "{ inherit a b; inherit (e) c \"d\"; }",
        "{inherit a b ; inherit (e) c d ; }",
    );
    check("{ inherit; }", "{inherit ; }");
    check("{ \"a b\" = 1; }", "{a b = 1; }");
    check("{ ${a} = 1; }", "{${a} = 1; }");
    check("{ ${\"a\"} = 1; }", "{a = 1; }");
    check("{ \"x${a}\" = 1; }", "{${\"x${a}\"} = 1; }");
    check("{ \"${a}\" = 1; }", "{${\"${a}\"} = 1; }");
    check("{ a.${b}.\"c\" = 1; }", "{a.${b}.c = 1; }");
    check("{ or = 1; }.or", "(. {or = 1; } or)");
    check("{ inherit ${\"a\"}; }", "{inherit a ; }");
    err("{ inherit ${a}; }", "buildit::parse::dynamic-inherit");
    // Static keys keep their span, dynamic ones are expressions.
    let r = p("{ \"a\" = 1; ${b} = 2; }");
    match r.expr.map(|e| e.kind) {
        Some(ExprKind::Attrs { bindings, .. }) => match &bindings[..] {
            [Binding::Attr { path: p1, .. }, Binding::Attr { path: p2, .. }] => {
                assert_eq!(p1[0].span(), Span::new(FileId(0), 2, 5));
                assert!(
                    matches!(&p2[0], AttrKey::Dynamic(e) if e.kind == ExprKind::Var("b".into()))
                );
            }
            other => panic!("{:?}", other),
        },
        other => panic!("{:?}", other),
    }
}

#[test]
fn let_and_functions() {
    check("let a = 1; in a", "(let {a = 1; } a)");
    check("let in 1", "(let {} 1)");
    check("let a.b = 1; in a", "(let {a.b = 1; } a)");
    check("let { body = 1; }", "(legacy-let {body = 1; })");
    check("let ${\"a\"} = 1; in a", "(let {a = 1; } a)");
    err("let \"${a}\" = 1; in a", "buildit::parse::dynamic-let");
    err("let ${a} = 1; in a", "buildit::parse::dynamic-let");
    err("let or = 1; in or", "buildit::parse::unexpected-token");
    check("x: y: x", "(fn x (fn y x))");
    check("{ a, b ? 1, ... }: a", "(fn {a, b ? 1, ...} a)");
    check("{ a, }: a", "(fn {a} a)");
    check("{}: 1", "(fn {} 1)");
    check("{ ... }: 1", "(fn {...} 1)");
    check("args@{ a, ... }: a", "(fn {a, ...}@args a)");
    check("{ a }@args: a", "(fn {a}@args a)");
    check("{}@args: 1", "(fn {}@args 1)");
    check("args@{}: 1", "(fn {}@args 1)");
    check("{ a ? x: x }: a", "(fn {a ? (fn x x)} a)");
    err("{ a, a }: 1", "buildit::parse::duplicate-formal");
    err("a@{ a }: 1", "buildit::parse::duplicate-formal");
    err("{ ..., a }: 1", "buildit::parse::unexpected-token");
    check("if a then b else c", "(if a b c)");
    check("assert a; b", "(assert a b)");
    check("assert a; x: x", "(assert a (fn x x))");
    check("a.b.c", "(. a b.c)");
    check("a.b.c or d", "(. a b.c or d)");
    check("a.b or c.d or e", "(. a b or (. c d or e))");
    check("a.${b}.c or d", "(. a ${b}.c or d)");
    check("a.\"b${c}\"", "(. a ${\"b${c}\"})");
    check("a.or", "(. a or)");
    check("f x or", "(f (x or))");
    check("map or [1]", "((map or) [1])");
    check("a ? b.c", "(? a b.c)");
    check("a ? ${\"b\"}.c", "(? a b.c)");
    check("(a b) c", "((a b) c)");
}

#[test]
fn spans() {
    let r = p("  f  x ");
    let e = r.expr.expect("expr");
    assert_eq!(e.span, Span::new(FileId(0), 2, 6));
    let r = p("let a = 1; in a");
    let e = r.expr.expect("expr");
    assert_eq!(e.span.range(), 0..15);
    match e.kind {
        ExprKind::Let { bindings, body, .. } => {
            match &bindings[0] {
                Binding::Attr { span, value, .. } => {
                    assert_eq!(span.range(), 4..10);
                    assert_eq!(value.span.range(), 8..9);
                }
                other => panic!("{:?}", other),
            }
            assert_eq!(body.span.range(), 14..15);
        }
        other => panic!("{:?}", other),
    }
    let r = p("-a + b");
    assert_eq!(r.expr.expect("expr").span.range(), 0..6);
}

#[test]
fn with_is_rejected_with_help() {
    let r = p("with pkgs; [ hello git ]");
    assert_eq!(r.diagnostics.len(), 1, "{:?}", r.diagnostics);
    let d = &r.diagnostics[0];
    assert_eq!(d.code, "buildit::parse::with");
    let help = d.help.as_deref().unwrap_or("");
    assert!(
        help.contains("let inherit (pkgs) git hello; in"),
        "{}",
        help
    );
    assert_eq!(d.labels[0].span.range(), 0..10);
}

#[test]
fn error_recovery_reports_each_error() {
    let src = "{\n  a = 1 +;\n  b = ;\n  c = [ 1 2 ) ];\n  d = 4;\n}\n";
    let r = p(src);
    let codes: Vec<_> = r.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes.len(), 3, "{:#?}", r.diagnostics);
    assert!(codes
        .iter()
        .all(|c| *c == "buildit::parse::unexpected-token"));
    // The record is still there, with the good binding.
    let s = sexp(r.expr.as_ref().expect("expr"));
    assert!(s.contains("d = 4;"), "{}", s);

    let r = p("[ 1 ) 2 } 3 ]");
    assert_eq!(r.diagnostics.len(), 2, "{:#?}", r.diagnostics);

    let r = p("let a = ; b = 2 c = 3; in b");
    assert!(r.diagnostics.len() >= 2, "{:#?}", r.diagnostics);
}

#[test]
fn error_messages_are_in_user_terms() {
    let r = p("{ a = 1 }");
    let d = &r.diagnostics[0];
    assert_eq!(d.code, "buildit::parse::unexpected-token");
    assert_eq!(d.message, "unexpected `}`");
    let label = &d.labels[0].message;
    assert!(label.contains("`;`"), "{}", label);
    assert!(!label.contains('"'), "{}", label);
    assert!(d.help.as_deref().unwrap_or("").contains(';'));

    let r = p("[ 1, 2 ]");
    assert!(r.diagnostics[0]
        .help
        .as_deref()
        .unwrap_or("")
        .contains("whitespace"));

    let r = p("{ a = [ 1 2 ");
    let d = &r.diagnostics[0];
    assert_eq!(d.code, "buildit::parse::unexpected-eof");
    assert_eq!(d.labels.len(), 2);

    let r = p("1 2 )");
    assert_eq!(r.diagnostics[0].code, "buildit::parse::unexpected-token");

    let r = p("a ` b");
    assert_eq!(r.diagnostics.len(), 1, "{:#?}", r.diagnostics);
    assert_eq!(r.diagnostics[0].code, "buildit::parse::invalid-token");

    let r = p("");
    assert_eq!(r.diagnostics[0].code, "buildit::parse::unexpected-eof");
}

#[track_caller]
fn help_of(src: &str) -> String {
    let r = p(src);
    r.diagnostics
        .first()
        .and_then(|d| d.help.clone())
        .unwrap_or_default()
}

#[test]
fn contextual_hints() {
    // Missing `;`: points at the end of the previous binding.
    let r = p("let\n  a = 1\n  b = 2;\nin a");
    let d = &r.diagnostics[0];
    assert!(
        d.help.as_deref().unwrap_or("").contains("missing `;`"),
        "{:?}",
        d
    );
    assert_eq!(d.labels[1].span.range(), 10..11);
    // Missing `in`.
    let r = p("let a = 1; b = 2;\na + b");
    assert!(r.diagnostics[0].labels[1].message.contains("no `in`"));
    // Mismatched and unmatched brackets.
    let r = p("[ 1 ( 2 ]");
    assert!(r.diagnostics[0].labels[1]
        .message
        .contains("`(` is still open"));
    assert!(help_of("{ a = 1; } }").contains("no matching"));
    // Lists.
    assert!(help_of("[ -1 ]").contains("parentheses"));
    assert!(help_of("[ 1, 2 ]").contains("commas"));
    // Interpolation missing its `}` inside a string.
    let r = p("\"abc ${x\" + 1");
    assert_eq!(r.diagnostics.len(), 1);
    assert!(r.diagnostics[0]
        .help
        .as_deref()
        .unwrap_or("")
        .contains("missing its `}`"));
    assert!(help_of("if a = b then 1 else 2").contains("=="));
}

#[test]
fn lexer_errors_are_not_reported_twice() {
    for (src, code) in [
        ("\"abc", "buildit::parse::unterminated-string"),
        ("''abc", "buildit::parse::unterminated-string"),
        ("{ a = \"x${b", "buildit::parse::unterminated-string"),
        ("1 /* abc", "buildit::parse::unexpected-eof"),
        ("1 + ~", "buildit::parse::invalid-token"),
    ] {
        let c = codes(src);
        assert_eq!(c, vec![code], "{:?}", src);
    }
}

const DEEP: usize = 100_000;

#[track_caller]
fn deep(src: &str) {
    let r = p(src);
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.code == "buildit::parse::too-deep"),
        "no too-deep diagnostic for {:?}…: {:?}",
        src.get(..40),
        r.diagnostics.first()
    );
    assert!(r.diagnostics.len() < 10, "{:?}", r.diagnostics.len());
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_crash() {
    deep(&format!("{}1{}", "(".repeat(DEEP), ")".repeat(DEEP)));
    deep(&"(".repeat(DEEP));
    deep(&format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP)));
    deep(&"{ a = ".repeat(DEEP));
    deep(&format!("{}1{}", "\"${".repeat(DEEP), "}\"".repeat(DEEP)));
    deep(&format!("1{}", "+1".repeat(DEEP)));
    deep(&format!("1{}", "++1".repeat(DEEP)));
    deep(&format!("{}1", "-".repeat(DEEP)));
    deep(&format!("{}1", "!".repeat(DEEP)));
    deep(&format!("f{}", " a".repeat(DEEP)));
    deep(&format!("{}1", "x: ".repeat(DEEP)));
    deep(&format!("{}1", "let a = 1; in ".repeat(DEEP)));
    deep(&format!("{}1", "if a then b else ".repeat(DEEP)));
    deep(&format!("{}1", "assert a; ".repeat(DEEP)));
    deep(&format!("a{}", ".b or a".repeat(DEEP)));
    deep(&format!("a{}", " ? a".repeat(DEEP)));
    deep(&format!("{}1", "a -> ".repeat(DEEP)));
    // Deep but erroneous: partial trees discarded during recovery must drop fine too.
    deep(&format!("1{} )", "+1".repeat(DEEP)));
    deep(&format!("[ ({}1) ) ]", "-".repeat(DEEP)));
    // Error recovery stays cheap on deep parse stacks followed by many bad tokens (lalrpop
    // rescans the stack for every skipped token, which must not make recovery quadratic).
    let r = p(&format!("{}{}", "x: ".repeat(DEEP), ")".repeat(DEEP)));
    assert!(!r.diagnostics.is_empty());
    for prefix in ["{ a = ", "[ ", "let a = ", "{ a = [ ", "assert "] {
        let r = p(&format!("{}{}", prefix.repeat(120), ") ; ".repeat(DEEP)));
        assert!(!r.diagnostics.is_empty());
        assert!(r.diagnostics.len() <= MAX_SYNTAX_ERRORS + 1);
        let r = p(&format!("{}{}", prefix.repeat(1000), ") ; ".repeat(DEEP)));
        assert!(!r.diagnostics.is_empty());
    }
    let r = p(&format!("a{}{}", ".b or a".repeat(DEEP), ")".repeat(DEEP)));
    assert!(!r.diagnostics.is_empty());
    // Long but flat inputs are fine.
    let r = p(&format!("a{}", ".b".repeat(DEEP)));
    assert!(r.diagnostics.is_empty());
    let r = p(&format!("[{}]", " 1".repeat(DEEP)));
    assert!(r.diagnostics.is_empty());
    let r = p(&format!("{{{}}}", " a = 1;".repeat(DEEP)));
    assert!(r.diagnostics.is_empty());
}

#[test]
fn deep_inputs_report_their_first_error_without_recovery() {
    // Beyond RECOVERY_NESTING, only the first syntax error is reported.
    let src = format!("{}1 +; b = ; }}", "{ a = ".repeat(300));
    let r = p(&src);
    assert_eq!(r.diagnostics.len(), 1, "{:?}", r.diagnostics);
    assert_eq!(r.diagnostics[0].code, "buildit::parse::unexpected-token");
    // Shallow ones report each.
    let r = p("{ a = { a = 1 +; b = ; }; }");
    assert_eq!(r.diagnostics.len(), 2, "{:?}", r.diagnostics);
}

#[test]
fn large_valid_inputs_have_no_diagnostics() {
    // Long runs of tokens must not trip the cap on tokens skipped during recovery.
    let item = "(let a = { b = [ 1 2 \"x${y}\" ./p/${q}.nix ''\n  z\n'' ]; inherit c; inherit (d) e; }; in { f ? 1, ... }@g: x: y: if a.b or 1 + -1 + !z -> w then - - 1 else assert t; u v w) ";
    let src = format!("[ {} ]", item.repeat(3000));
    let r = p(&src);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics.first());
    let src = format!(
        "{{ {} }}",
        "a.b.\"c\".${d} = ! ! ! ! ! - - - - x; inherit a b c d e f g h i j; ".repeat(3000)
    );
    let r = p(&src);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics.first());
    let src = format!("{{ {} }}: 1", "a, ".repeat(5000));
    let r = p(&src);
    // (duplicate formals are reported, but nothing else)
    assert!(r
        .diagnostics
        .iter()
        .all(|d| d.code == "buildit::parse::duplicate-formal"));
    let src = format!("''{}''", "''$ '''".repeat(5000));
    let r = p(&src);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics.first());
    let src = format!("1{}", " + - - 1".repeat(900));
    let r = p(&src);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics.first());
}

#[test]
fn nesting_estimate() {
    let est = |src: &str| nesting(FileId(0), &crate::lexer::lex(FileId(0), src).tokens).0;
    assert_eq!(est("1"), 0);
    assert_eq!(est("[ [ 1 ] [ 2 ] ]"), 2);
    assert_eq!(est("x: y: z: 1"), 3);
    assert_eq!(est("{ a = x: 1; b = y: 2; }"), 3);
    assert_eq!(est("if a then b else if c then d else e"), 2);
    assert_eq!(est("let a = 1; b = 2; in let c = 3; in c"), 2);
    assert_eq!(est("assert a; assert b; c"), 2);
    assert_eq!(est("{ a ? x: 1, b ? y: 2 }: 1"), 2);
    // Sequential constructs in separate levels do not add up.
    let many = format!("[ {} ]", "(x: x) ".repeat(5000));
    assert_eq!(est(&many), 3);
    assert!(p(&many).diagnostics.is_empty());
    let many = format!("{{ {} }}", "a = if x then y else z; ".repeat(5000));
    assert_eq!(est(&many), 3);
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let n = (MAX_DEPTH - 1) as usize;
    let r = p(&format!("{}1{}", "[".repeat(n), "]".repeat(n)));
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics.first());
    let r = p(&format!("1{}", "+1".repeat(n)));
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics.first());
    // Dropping a maximal tree on a small stack does not overflow.
    let src = format!("1{}", "+1".repeat(n));
    let t = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let r = p(&src);
            drop(r);
        })
        .expect("spawn");
    assert!(t.join().is_ok());
}

/// A deterministic xorshift generator for garbage inputs.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let alphabet: &[u8] = b"{}[]()${}\"''\\/.:;,@=?!<>+-*&|~#ab or in let if then else with rec inherit 0 1.5 ./a ~/ x:y \n\t\r";
    for _ in 0..3000 {
        let len = (rng(&mut seed) % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng(&mut seed);
                if r & 3 == 0 {
                    (r >> 8) as u8
                } else {
                    alphabet[((r >> 8) as usize) % alphabet.len()]
                }
            })
            .collect();
        let src = String::from_utf8_lossy(&bytes);
        let r = p(&src);
        assert!(r.expr.is_some());
        for d in &r.diagnostics {
            for l in &d.labels {
                assert!(l.span.end as usize <= src.len(), "{:?}: {:?}", src, d);
                assert!(l.span.start <= l.span.end);
            }
        }
    }
}

#[test]
fn parse_is_ok_helper() {
    assert!(p("1").is_ok());
    assert!(!p("1 +").is_ok());
}
