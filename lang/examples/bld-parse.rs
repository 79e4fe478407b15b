//! `cargo run -p buildit-lang --example bld-parse -- [--str] FILE…`: parse files and print, per
//! file, `OK path` or `ERR path` followed by the diagnostics. With `--str`, a file whose
//! expression is a string literal (interpolating only string literals) prints `STR <json>`,
//! its value. A development aid for comparing the parser with `nix-instantiate` on corpora.

use buildit_lang::ast::{Expr, ExprKind, StrPart};
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

fn main() {
    let mut sources = SourceMap::new();
    let mut failed = false;
    let mut str_mode = false;
    for path in std::env::args().skip(1) {
        if path == "--str" {
            str_mode = true;
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
