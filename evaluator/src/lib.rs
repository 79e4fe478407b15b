//! `buildit-eval`: the lazy evaluator of `.bld`.
//!
//! Pipeline: a parsed [`buildit_lang::ast::Expr`] is *lowered* ([`lower`]) into a compact IR
//! ([`ir`]) where every variable is resolved to a (depth, slot) pair, attribute names are
//! interned [`Symbol`]s and constants are pre-built values. The [`Evaluator`] then runs the IR
//! call-by-need: lazy positions hold [`value::Thunk`]s that are forced at most once, with
//! blackholing to report infinite recursion by the spans of the cycle.
//!
//! Invariants: no IO here except through [`EvalIo`]; evaluation is deterministic; no input makes
//! it panic or overflow the native stack (deep recursion grows a heap-allocated stack through
//! `stacker`), integer overflow is an error, and the call depth and memory are bounded
//! ([`limits`]).

pub mod builtins;
pub mod cast;
pub mod derivations;
pub mod error;
mod eval;
pub mod io;
pub mod ir;
pub mod limits;
pub mod lower;
pub mod print;
pub mod symbol;
pub mod value;

pub use derivations::{find_derivations, FoundDrv};
pub use error::{ErrorKind, EvalError};
pub use eval::{CoerceMode, Evaluator};
pub use io::{EvalIo, FileKind, PureIo};
pub use symbol::Symbol;
pub use value::{Attrs, Context, ContextElem, EvalResult, List, NixString, Value};
