//! The derivations an evaluation result denotes, found the way `nix-instantiate` finds them:
//! what `buildit instantiate`, `buildit build`, `buildit image` and the REPL's `:b` build.

use crate::{EvalResult, Evaluator, Symbol, Value};
use buildit_lang::Span;

/// A derivation found in an evaluation result: its `.drv` path and the output selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDrv {
    pub drv_path: String,
    pub output: String,
    /// The attribute path where it was found (empty for the root).
    pub attr: String,
}

/// The derivations in `v`: `v` itself, or the derivations in a list or set at the top,
/// recursing further only into sets with `recurseForDerivations = true`.
pub fn find_derivations(ev: &mut Evaluator, v: &Value) -> EvalResult<Vec<FoundDrv>> {
    let mut out = Vec::new();
    collect(ev, v, "", true, &mut out)?;
    Ok(out)
}

fn collect(
    ev: &mut Evaluator,
    v: &Value,
    attr: &str,
    top: bool,
    out: &mut Vec<FoundDrv>,
) -> EvalResult<()> {
    let v = ev.force(v)?;
    match &v {
        Value::Attrs(a) if ev.is_derivation(a)? => {
            let span = Span::default();
            let drv = a
                .get(Symbol::intern("drvPath"))
                .cloned()
                .unwrap_or(Value::Null);
            let drv = ev.force_string(&drv, span)?.as_str().to_string();
            let output = match a.get(Symbol::intern("outputName")).cloned() {
                Some(o) => ev.force_string(&o, span)?.as_str().to_string(),
                None => "out".to_string(),
            };
            out.push(FoundDrv {
                drv_path: drv,
                output,
                attr: attr.to_string(),
            });
        }
        Value::Attrs(a) => {
            let recurse = match a.get(Symbol::intern("recurseForDerivations")).cloned() {
                Some(r) => matches!(ev.force(&r)?, Value::Bool(true)),
                None => false,
            };
            if top || recurse {
                let entries: Vec<(Symbol, Value)> = a
                    .iter_sorted()
                    .into_iter()
                    .map(|(k, x)| (*k, x.clone()))
                    .collect();
                for (k, x) in entries {
                    let path = if attr.is_empty() {
                        k.as_str().to_string()
                    } else {
                        format!("{attr}.{}", k.as_str())
                    };
                    collect(ev, &x, &path, false, out)?;
                }
            }
        }
        Value::List(l) if top => {
            for (i, x) in l.iter().enumerate() {
                collect(ev, x, &format!("{attr}[{i}]"), false, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}
