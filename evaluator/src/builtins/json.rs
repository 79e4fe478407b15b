//! Placeholder until the builtins land.
use crate::value::{Context, EvalResult, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;

pub(crate) fn primops() -> Vec<PrimOp> {
    Vec::new()
}

/// JSON text of a value (placeholder).
pub fn value_to_json(
    ev: &mut Evaluator,
    v: &Value,
    span: Span,
    ctx: &mut Context,
) -> EvalResult<String> {
    let _ = (ctx, span);
    crate::print::print_value(ev, v)
}
