//! Typed imports: how the checker learns the type of an imported file without doing IO.
//!
//! `lang` reads no files, so the checker asks its caller through the narrow [`Imports`] trait:
//! for `import ./lib.bld`, `import /abs/dir`, `import ~/x.bld` (a path literal without
//! interpolation) and `import <buildit>` / `import <buildit/sub/path>` it hands over the file of
//! the import expression and the literal ([`ImportTarget`]), and gets back the *interface* of the
//! imported file: the type [`crate::types::check_program`] computed for it
//! ([`crate::types::CheckResult::interface`]). The caller (the driver) resolves the path, reads
//! and checks the file, detects cycles and caches interfaces per file and content; `None` (a
//! cycle, a missing or unparsable file) makes the import `Dyn`, as is any import of a path
//! computed at run time.
//!
//! An interface is an ordinary [`Type`] whose type variables carry what an unresolved variable
//! may become in their name (`'n0` a number, `'a1` an operand of `+`, `'c2` of `<`, `'v3`
//! anything): names no annotation can spell, so the printed types users see never show them,
//! and an imported `a: b: a + b` stays usable on strings as well as numbers.

use super::Type;
use crate::ast::PathKind;
use crate::span::FileId;

/// What an `import` names, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportTarget<'a> {
    /// A path literal without interpolation, as written (`./lib.bld`, `../x`, `/abs`, `~/x`).
    Path { kind: PathKind, path: &'a str },
    /// `<buildit>` (`"buildit"`) or `<buildit/sub/path>` (`"buildit/sub/path"`).
    Lookup(&'a str),
}

/// The checker's only way to the files a program imports.
pub trait Imports {
    /// The interface of the file `target` names, imported from the file `from` (the file of
    /// the `import` expression). `None` when it is not known statically (a cycle, a missing or
    /// unparsable file): the import is then `Dyn`.
    fn import_type(&mut self, from: FileId, target: ImportTarget<'_>) -> Option<Type>;
}

/// No imports known: every import is `Dyn` (what [`crate::types::check`] does).
pub struct NoImports;

impl Imports for NoImports {
    fn import_type(&mut self, _: FileId, _: ImportTarget<'_>) -> Option<Type> {
        None
    }
}
