//! `cargo run -p buildit-lang --example bld-parse -- [--str|--nix] FILE…`: parse files and
//! print, per file, `OK path` or `ERR path` followed by the diagnostics. With `--str`, a file
//! whose expression is a string literal (interpolating only string literals) prints
//! `STR <json>`, its value. With `--nix`, a parsed file prints `NIX <source>`: the AST printed
//! back as fully parenthesized Nix, so that `nix-instantiate --parse` of the original and of the
//! reprint can be compared. A development aid for differential testing against Nix.

use buildit_lang::ast::{AttrKey, Binding, Expr, ExprKind, Param, PathKind, StrPart, UnaryOp};
use buildit_lang::{parse, SourceMap};

/// The value of a string literal whose interpolations are string literals themselves.
fn string_value(e: &Expr, out: &mut String) -> bool {
    let ExprKind::Str(parts) = &e.kind else {
        return false;
    };
    parts.iter().all(|p| match p {
        StrPart::Lit(s) => {
            out.push_str(s);
            true
        }
        StrPart::Interp(e) => string_value(e, out),
    })
}

fn json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The inside of the `.bld` literal of `s` (without its quotes).
fn escape_str(s: &str) -> String {
    let q = buildit_lang::text::quote(s);
    q[1..q.len() - 1].to_string()
}

fn nix_parts(parts: &[StrPart], escape: bool, out: &mut String) {
    for p in parts {
        match p {
            StrPart::Lit(s) if escape => out.push_str(&escape_str(s)),
            StrPart::Lit(s) => out.push_str(s),
            StrPart::Interp(e) => {
                out.push_str("${");
                nix(e, out);
                out.push('}');
            }
        }
    }
}

fn nix_path(path: &[AttrKey], out: &mut String) {
    for (i, k) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match k {
            AttrKey::Static(n, _) => {
                out.push('"');
                out.push_str(&escape_str(n));
                out.push('"');
            }
            AttrKey::Dynamic(e) => {
                out.push_str("${");
                nix(e, out);
                out.push('}');
            }
        }
    }
}

fn nix_bindings(bs: &[Binding], out: &mut String) {
    for b in bs {
        match b {
            Binding::Attr { path, value, .. } => {
                nix_path(path, out);
                out.push_str(" = ");
                nix(value, out);
                out.push_str("; ");
            }
            Binding::Inherit { from, names, .. } => {
                out.push_str("inherit ");
                if let Some(f) = from {
                    out.push('(');
                    nix(f, out);
                    out.push_str(") ");
                }
                for (n, _) in names {
                    out.push('"');
                    out.push_str(&escape_str(n));
                    out.push_str("\" ");
                }
                out.push_str("; ");
            }
        }
    }
}

/// Print an expression as fully parenthesized Nix source.
fn nix(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Int(n) => out.push_str(&n.to_string()),
        ExprKind::Float(f) => out.push_str(&format!("{:.17e}", f)),
        ExprKind::Str(parts) => {
            out.push('"');
            nix_parts(parts, true, out);
            out.push('"');
        }
        ExprKind::Path(kind, parts) => {
            let _ = kind == &PathKind::Home;
            nix_parts(parts, false, out);
        }
        ExprKind::SearchPath(p) => {
            out.push('<');
            out.push_str(p);
            out.push('>');
        }
        ExprKind::Uri(u) => out.push_str(u),
        ExprKind::Var(n) => out.push_str(n),
        ExprKind::List(xs) => {
            out.push_str("[ ");
            for x in xs {
                out.push('(');
                nix(x, out);
                out.push_str(") ");
            }
            out.push(']');
        }
        ExprKind::Attrs { rec, bindings } => {
            out.push_str(if *rec { "rec { " } else { "{ " });
            nix_bindings(bindings, out);
            out.push('}');
        }
        ExprKind::Let { bindings, body, .. } => {
            out.push_str("(let ");
            nix_bindings(bindings, out);
            out.push_str("in ");
            nix(body, out);
            out.push(')');
        }
        // Nix has no annotations: print the expression alone
        ExprKind::Annot { expr, .. } => nix(expr, out),
        ExprKind::LegacyLet(bindings) => {
            out.push_str("let { ");
            nix_bindings(bindings, out);
            out.push('}');
        }
        ExprKind::Lambda { param, body } => {
            out.push('(');
            match param {
                Param::Ident(n, _) => out.push_str(n),
                Param::Pattern {
                    fields,
                    ellipsis,
                    bind,
                } => {
                    out.push_str("{ ");
                    for f in fields {
                        out.push_str(&f.name);
                        if let Some(d) = &f.default {
                            out.push_str(" ? ");
                            nix(d, out);
                        }
                        out.push_str(", ");
                    }
                    if *ellipsis {
                        out.push_str("... ");
                    }
                    out.push('}');
                    if let Some((b, _)) = bind {
                        out.push_str(" @ ");
                        out.push_str(b);
                    }
                }
            }
            out.push_str(": ");
            nix(body, out);
            out.push(')');
        }
        ExprKind::Apply { func, arg } => {
            out.push_str("((");
            nix(func, out);
            out.push_str(") ");
            if matches!(&arg.kind, ExprKind::Var(n) if n == "or") {
                out.push_str("or)");
            } else {
                out.push('(');
                nix(arg, out);
                out.push_str("))");
            }
        }
        ExprKind::If { cond, then, else_ } => {
            out.push_str("(if ");
            nix(cond, out);
            out.push_str(" then ");
            nix(then, out);
            out.push_str(" else ");
            nix(else_, out);
            out.push(')');
        }
        ExprKind::Assert { cond, body } => {
            out.push_str("(assert ");
            nix(cond, out);
            out.push_str("; ");
            nix(body, out);
            out.push(')');
        }
        ExprKind::Select {
            expr,
            path,
            default,
        } => {
            out.push_str("((");
            nix(expr, out);
            out.push_str(").");
            nix_path(path, out);
            if let Some(d) = default {
                out.push_str(" or (");
                nix(d, out);
                out.push(')');
            }
            out.push(')');
        }
        ExprKind::HasAttr { expr, path } => {
            out.push_str("((");
            nix(expr, out);
            out.push_str(") ? ");
            nix_path(path, out);
            out.push(')');
        }
        ExprKind::Unary { op, expr } => {
            out.push_str(match op {
                UnaryOp::Neg => "(- (",
                UnaryOp::Not => "(! (",
            });
            nix(expr, out);
            out.push_str("))");
        }
        ExprKind::Binary { op, lhs, rhs } => {
            out.push_str("((");
            nix(lhs, out);
            out.push_str(") ");
            out.push_str(op.symbol());
            out.push_str(" (");
            nix(rhs, out);
            out.push_str("))");
        }
        ExprKind::Error => out.push_str("ERROR"),
    }
}

fn main() {
    let mut sources = SourceMap::new();
    let mut failed = false;
    let mut str_mode = false;
    let mut nix_mode = false;
    for path in std::env::args().skip(1) {
        if path == "--str" {
            str_mode = true;
            continue;
        }
        if path == "--nix" {
            nix_mode = true;
            continue;
        }
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
                continue;
            }
        };
        let file = sources.add(path.clone(), text.as_str());
        let parsed = parse(file, &text);
        if parsed.diagnostics.is_empty() {
            let mut s = String::new();
            match &parsed.expr {
                Some(e) if str_mode && string_value(e, &mut s) => println!("STR {}", json(&s)),
                Some(e) if nix_mode => {
                    nix(e, &mut s);
                    println!("NIX {}", s.replace('\n', "\\n"));
                }
                _ => println!("OK {path}"),
            }
        } else {
            failed = true;
            println!("ERR {path}");
            for d in &parsed.diagnostics {
                print!("{}", d.render_plain(&sources));
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
