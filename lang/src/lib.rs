//! `buildit-lang`: everything about `.bld` source text that needs no evaluation: the source map,
//! the logos lexer, the lalrpop grammar, the AST with spans, and diagnostics as data.
//!
//! Invariant: nothing here does IO or panics on any input. [`parse`] always returns an AST (with
//! `ExprKind::Error` nodes where recovery happened) plus the diagnostics found.

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod parser;
pub mod span;
pub mod text;
pub mod types;

pub use diag::{Diagnostic, Label, Severity};
pub use parser::{parse, Parsed};
pub use span::{FileId, SourceFile, SourceMap, Span};
