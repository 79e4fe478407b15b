//! Placeholder until the builtins land.
use crate::value::PrimOp;

pub(crate) fn primops() -> Vec<PrimOp> {
    Vec::new()
}
