//! Evaluating what a command names: a file or an expression with `-A ATTR` ([`EvalTarget`]),
//! type-checked first unless turned off, and the derivations the value denotes. Also the
//! static analysis of `buildit check` and the value-to-JSON step of internal queries.

use std::path::Path;

use buildit_eval::{find_derivations, Evaluator, FoundDrv, Value};
use buildit_lang::{Diagnostic, SourceMap, Span};
use buildit_store::StorePath;

use crate::error::{DriverError, Result};

/// The name of an expression given on the command line.
pub const CMDLINE: &str = "«cmdline»";

/// What to evaluate: a file or an expression, and an attribute path to select.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvalTarget<'a> {
    pub file: Option<&'a str>,
    pub expr: Option<&'a str>,
    pub attr: Option<&'a str>,
    pub typecheck: bool,
}

/// The working directory as a string (`/` when it cannot be read).
pub fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

/// `path` made absolute against the working directory (lexically normalised).
pub fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        buildit_eval::lower::canon_path(&format!("{}/{}", cwd(), path))
    }
}

/// The source of a file as the evaluator would read it (a directory means its default file):
/// its absolute name and text.
pub fn read_source(file: &str) -> Option<(String, String)> {
    let path = absolute(file);
    let path = if Path::new(&path).is_dir() {
        let bld = format!("{path}/default.bld");
        if Path::new(&bld).exists() {
            bld
        } else {
            format!("{path}/default.nix")
        }
    } else {
        path
    };
    let text = std::fs::read_to_string(&path).ok()?;
    Some((path, text))
}

/// The type diagnostics of one source, its imports typed (none when it has syntax errors: the
/// evaluator reports those; none for the files it imports: evaluation reaches those), with
/// its source map.
pub fn type_errors(name: &str, text: &str) -> (SourceMap, Vec<Diagnostic>) {
    let c = crate::typecheck::TypeCheck::new(false).check_root(name, text);
    let diags = c
        .diagnostics
        .into_iter()
        .take(c.root_diagnostics)
        .filter(|d| d.code.starts_with("buildit::type::"))
        .collect();
    (c.sources, diags)
}

/// `buildit check`'s static analysis of one source and the files it imports, without
/// evaluating anything: syntax, scope (undefined variables with "did you mean", duplicate
/// attributes: the evaluator's lowering, which resolves every name statically) and types.
/// `(sources, diagnostics: the source's in source order, then the imported files', type)`; the
/// type is empty when there are syntax errors.
pub fn check_source(name: &str, text: &str) -> (SourceMap, Vec<Diagnostic>, String) {
    let c = crate::typecheck::TypeCheck::new(false).check_root(name, text);
    (c.sources, c.diagnostics, c.ty)
}

/// Type-check a program before evaluating it; with type errors, the error also reports the
/// undefined names of the program (in source order). Syntax errors are left to the evaluator.
pub fn typecheck(name: &str, text: &str, note: &str) -> Result<()> {
    let (_, diags) = type_errors(name, text);
    if diags.is_empty() {
        return Ok(());
    }
    let (sources, diagnostics, _) = check_source(name, text);
    Err(DriverError::Diagnostics {
        sources,
        diagnostics,
        note: Some(note.to_string()),
    })
}

/// Type-check (unless turned off), evaluate and select `-A`: the value in weak head normal form.
pub fn evaluate(ev: &mut Evaluator, t: &EvalTarget<'_>) -> Result<Value> {
    if t.typecheck {
        let root = match (t.file, t.expr) {
            (_, Some(expr)) => Some((CMDLINE.to_string(), expr.to_string())),
            (Some(file), None) => read_source(file),
            (None, None) => None,
        };
        if let Some((name, text)) = root {
            typecheck(&name, &text, "(evaluate anyway with --no-typecheck)")?;
        }
    }
    let result = match (t.file, t.expr) {
        (_, Some(expr)) => match ev.compile(CMDLINE, expr, &cwd()) {
            Ok(ir) => ev.eval_root(&ir),
            Err(diagnostics) => {
                return Err(DriverError::diagnostics_in(
                    std::mem::take(&mut ev.sources),
                    diagnostics,
                ))
            }
        },
        (Some(file), None) => ev.import(&absolute(file), Span::default()),
        (None, None) => {
            return Err(DriverError::request(
                "buildit::cli::nothing-to-evaluate",
                "nothing to evaluate",
                "give a FILE or -E EXPR (see `--help`)",
            ));
        }
    };
    let mut value = result.map_err(|e| DriverError::eval(ev, e))?;
    if let Some(path) = t.attr {
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let next = match &value {
                Value::Attrs(at) => at.get(buildit_eval::Symbol::intern(part)).cloned(),
                _ => None,
            };
            let Some(next) = next else {
                let help = match &value {
                    Value::Attrs(at) => {
                        let names: Vec<&str> = at
                            .iter_sorted()
                            .into_iter()
                            .map(|(k, _)| k.as_str())
                            .collect();
                        let near = buildit_eval::lower::did_you_mean(part, names.iter().copied());
                        let listed = format!("available here: {}", names.join(", "));
                        match near {
                            Some(n) => format!("did you mean '{n}'? {listed}"),
                            None => listed,
                        }
                    }
                    other => format!(
                        "available here: (the value is {}, not a set)",
                        other.describe()
                    ),
                };
                return Err(DriverError::request(
                    "buildit::cli::attribute-not-found",
                    format!("attribute '{part}' of '{path}' not found"),
                    help,
                ));
            };
            value = ev.force(&next).map_err(|e| DriverError::eval(ev, e))?;
        }
    }
    Ok(value)
}

/// Evaluate a target and return the derivations it denotes. An empty result is an error
/// saying what the value was.
pub fn instantiate(ev: &mut Evaluator, t: &EvalTarget<'_>) -> Result<Vec<FoundDrv>> {
    let v = evaluate(ev, t)?;
    let found = find_derivations(ev, &v).map_err(|e| DriverError::eval(ev, e))?;
    if found.is_empty() {
        return Err(DriverError::request(
            "buildit::cli::no-derivation",
            format!(
                "the expression evaluates to {}, which contains no derivation",
                v.describe()
            ),
            "select a package with -A ATTR, or evaluate an expression that calls `derivation`",
        ));
    }
    Ok(found)
}

/// Evaluate a program buildit generated (`name` for messages, relative paths against
/// `base_dir`) and return the derivations it denotes. The caller type-checks first if wanted.
pub fn evaluate_program(
    ev: &mut Evaluator,
    name: &str,
    text: &str,
    base_dir: &Path,
) -> Result<Vec<FoundDrv>> {
    let ir = match ev.compile(name, text, &base_dir.display().to_string()) {
        Ok(ir) => ir,
        Err(diagnostics) => {
            return Err(DriverError::diagnostics_in(
                std::mem::take(&mut ev.sources),
                diagnostics,
            ))
        }
    };
    let found = ev
        .eval_root(&ir)
        .and_then(|v| find_derivations(ev, &v))
        .map_err(|e| DriverError::eval(ev, e))?;
    Ok(found)
}

/// The `.drv` store path of a found derivation.
pub fn drv_path(f: &FoundDrv) -> Result<StorePath> {
    StorePath::parse(&f.drv_path).map_err(|e| {
        DriverError::request("buildit::build::bad-drv", e.to_string(), "this is a bug")
    })
}

/// A value forced completely and given as JSON text.
pub fn to_json_text(ev: &mut Evaluator, v: &Value) -> Result<String> {
    let mut ctx = buildit_eval::Context::empty();
    buildit_eval::builtins::json::value_to_json(ev, v, Span::default(), &mut ctx)
        .map_err(|e| DriverError::eval(ev, e))
}

/// Evaluate one of buildit's own expressions (no type check: it is ours) and decode its JSON
/// value as `T`. `code` names the query in the (internal) error for a value of the wrong shape.
pub fn query<T: serde::de::DeserializeOwned>(
    ev: &mut Evaluator,
    expr: &str,
    code: &'static str,
) -> Result<T> {
    let t = EvalTarget {
        expr: Some(expr),
        ..EvalTarget::default()
    };
    let v = evaluate(ev, &t)?;
    let json = to_json_text(ev, &v)?;
    serde_json::from_str(&json)
        .map_err(|e| DriverError::request(code, e.to_string(), "this is a bug in buildit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literal `lang::text::quote` makes evaluates back to the string it quotes.
    #[test]
    fn quoted_strings_evaluate_to_themselves() {
        let cases = [
            "",
            "plain",
            "a \"quoted\" word",
            "back\\slash",
            "line\nbreak\r\ttab",
            "${not interpolated}",
            "$ alone, $$ and $${x}",
            "dollar at the end $",
            "ünïcödé ✓",
            "\\${",
            "''",
        ];
        let mut ev = Evaluator::new(Box::new(buildit_stdlib::FsIo::new(|_| {})));
        for s in cases {
            let text = buildit_lang::text::quote(s);
            let ir = ev.compile("quoted", &text, "/").expect("compiles");
            let v = ev.eval_root(&ir).expect("evaluates");
            let got = ev.force_string(&v, Span::default()).expect("a string");
            assert_eq!(got.as_str(), s, "{text}");
        }
    }
}
