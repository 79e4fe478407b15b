//! The static type checker of `.bld`: Hindley–Milner inference with let-polymorphism (levels),
//! row-polymorphic records (open `..` and closed), optional fields from record patterns,
//! dictionaries `{ _ : T }` for computed keys, and `Dyn` (consistent with every type) for data
//! whose shape is only known at run time.
//!
//! It runs on the AST before lowering and never fails as a function: [`check`] returns the type
//! of the program plus every diagnostic found (several independent errors per run; after an
//! error the offending expression gets type `Dyn` so one mistake is reported once).
//! Where Nix code is valid but not typable in plain HM (heterogeneous lists, `if` branches of
//! different types, `==` against `null`) the checker falls back to `Dyn` instead of rejecting it.
//! Undefined variables are reported by the evaluator's lowering, not here (they get `Dyn`).

pub mod builtins;
mod infer;
pub mod ty;

pub use infer::{check, check_with, CheckResult, TypeEnv};
pub use ty::{parse_type, Field, Type};
