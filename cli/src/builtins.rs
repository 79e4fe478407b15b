//! The builtin builders for a store chosen outside a session (`buildit run` opens its store
//! itself): the driver's table, with the command line's Debian lock.

use buildit_builder::Builtins;
use buildit_store::StoreLayout;

/// Every builtin builder, for the store at `layout`.
pub fn all(layout: &StoreLayout) -> Builtins {
    crate::common::session_at(layout.clone()).builtins()
}
