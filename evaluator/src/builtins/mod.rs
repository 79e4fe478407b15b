//! The builtins: every primop, grouped by topic in submodules, registered in the `builtins`
//! record and (for the names Nix makes global, and as `__name` for all of them) in the global
//! scope. Primops receive their arguments unforced and force what they need, so laziness is
//! exactly where Nix has it.

mod attrs;
mod core;
mod fetch;
mod hash;
pub mod json;
mod lists;
pub(crate) mod misc;
mod regex;
mod store;
mod strings;

pub(crate) use store::DERIVATION_SOURCE;

use crate::symbol::Symbol;
use crate::value::{Attrs, PrimOp, Value};
use crate::Evaluator;
use rustc_hash::FxHashMap;
use std::rc::Rc;

/// Names that are global in Nix besides `builtins.*` (and `__name` for every builtin). One list,
/// shared with the type checker, which lives in `lang` (below this crate).
use buildit_lang::types::builtins::GLOBAL_NAMES;

/// Every primop, in no particular order.
pub fn all_primops() -> Vec<PrimOp> {
    let mut v = core::primops();
    v.extend(lists::primops());
    v.extend(attrs::primops());
    v.extend(strings::primops());
    v.extend(regex::primops());
    v.extend(json::primops());
    v.extend(hash::primops());
    v.extend(misc::primops());
    v.extend(store::primops());
    v.extend(fetch::primops());
    v
}

/// The global scope: `builtins`, `true`, `false`, `null`, the global primops and `__name`
/// aliases.
pub(crate) fn globals(ev: &Evaluator) -> FxHashMap<Symbol, Value> {
    let mut entries: Vec<(Symbol, Value)> = Vec::new();
    let mut globals = FxHashMap::default();
    for op in all_primops() {
        let name = op.name;
        let v = Value::PrimOp(Rc::new(op));
        if GLOBAL_NAMES.contains(&name) {
            globals.insert(Symbol::intern(name), v.clone());
        }
        globals.insert(Symbol::intern(&format!("__{name}")), v.clone());
        entries.push((Symbol::intern(name), v));
    }
    for (name, v) in core::constants(ev) {
        globals.insert(Symbol::intern(&format!("__{name}")), v.clone());
        entries.push((Symbol::intern(name), v));
    }
    // `builtins.builtins` refers to the record itself: a thunk resolved after construction
    let cell = crate::value::Thunk::done(Value::Null);
    entries.push((Symbol::intern("builtins"), Value::Thunk(cell.clone())));
    let builtins = Value::attrs(Attrs::from_unsorted(entries));
    *cell.0.borrow_mut() = crate::value::ThunkState::Done(builtins.clone());
    globals.insert(Symbol::intern("builtins"), builtins);
    globals.insert(Symbol::intern("true"), Value::Bool(true));
    globals.insert(Symbol::intern("false"), Value::Bool(false));
    globals.insert(Symbol::intern("null"), Value::Null);
    globals
}

/// The one-line documentation of a builtin, for the REPL's `:doc`.
pub fn doc(name: &str) -> Option<(&'static str, usize, &'static str)> {
    let name = name.strip_prefix("builtins.").unwrap_or(name);
    all_primops()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| (p.name, p.arity, p.doc))
}
