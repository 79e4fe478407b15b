//! Fuzz target `typecheck`: parses arbitrary bytes (lossy UTF-8), resolves `type` aliases (part
//! of `parse`) and runs the type checker on whatever tree the parser returned — error nodes
//! included, although the CLI only checks files without syntax errors. Checks: no panic, no
//! stack overflow, every diagnostic has a code, a message and labels inside the source, and the
//! inferred type prints.

#![no_main]

use buildit_lang::{parse, types, FileId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let len = src.len();
    let parsed = parse(FileId(0), &src);
    let expr = parsed.expr.expect("parse always returns an expression");
    let r = types::check(&expr);
    for d in parsed.diagnostics.iter().chain(&r.diagnostics) {
        assert!(!d.code.is_empty() && !d.message.is_empty(), "{d:?}");
        for l in &d.labels {
            assert!(
                l.span.start <= l.span.end && l.span.end as usize <= len,
                "{d:?}"
            );
        }
    }
    let printed = r.ty.to_string();
    assert!(!printed.is_empty());
});
