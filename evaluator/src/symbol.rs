//! Interned identifiers. Attribute names and variables become [`Symbol`]s (a `u32`) so that
//! records compare and look up keys by integer, never by string. The table is per thread and
//! never shrinks: the interned text is leaked on purpose, which lets [`Symbol::as_str`] hand out
//! `&'static str` without locking or reference counting (the Nix evaluator's symbol table never
//! frees either; the number of distinct names of a program is small next to its values).

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(u32);

struct Interner {
    map: FxHashMap<&'static str, Symbol>,
    names: Vec<&'static str>,
}

thread_local! {
    static INTERNER: RefCell<Interner> = RefCell::new(Interner {
        map: FxHashMap::default(),
        names: Vec::new(),
    });
}

impl Symbol {
    /// Intern `s`, returning its symbol (the same one for equal strings).
    pub fn intern(s: &str) -> Symbol {
        INTERNER.with(|i| {
            let mut i = i.borrow_mut();
            if let Some(sym) = i.map.get(s) {
                return *sym;
            }
            let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
            let sym = Symbol(u32::try_from(i.names.len()).expect("fewer than 2^32 symbols"));
            i.names.push(leaked);
            i.map.insert(leaked, sym);
            sym
        })
    }

    /// The symbol of `s` if it was ever interned, without interning it: a name nobody
    /// interned cannot be an attribute of any record.
    pub fn lookup(s: &str) -> Option<Symbol> {
        INTERNER.with(|i| i.borrow().map.get(s).copied())
    }

    /// The names of many symbols at once (one access to the table).
    pub fn names_of<T>(items: &[T], key: impl Fn(&T) -> Symbol) -> Vec<&'static str> {
        INTERNER.with(|i| {
            let i = i.borrow();
            items
                .iter()
                .map(|x| i.names.get(key(x).0 as usize).copied().unwrap_or(""))
                .collect()
        })
    }

    pub fn as_str(self) -> &'static str {
        INTERNER.with(|i| i.borrow().names.get(self.0 as usize).copied().unwrap_or(""))
    }

    pub fn id(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Symbols the evaluator itself looks up; interned once per evaluator.
#[derive(Clone, Copy, Debug)]
pub struct KnownSymbols {
    pub functor: Symbol,
    pub to_string: Symbol,
    pub out_path: Symbol,
    pub type_: Symbol,
    pub name: Symbol,
    pub value: Symbol,
    pub drv_path: Symbol,
    pub outputs: Symbol,
    pub success: Symbol,
    pub key: Symbol,
    pub overrides: Symbol,
    pub body: Symbol,
    pub right: Symbol,
    pub wrong: Symbol,
    pub path: Symbol,
    pub operator: Symbol,
    pub start_set: Symbol,
}

impl KnownSymbols {
    pub fn new() -> KnownSymbols {
        KnownSymbols {
            functor: Symbol::intern("__functor"),
            to_string: Symbol::intern("__toString"),
            out_path: Symbol::intern("outPath"),
            type_: Symbol::intern("type"),
            name: Symbol::intern("name"),
            value: Symbol::intern("value"),
            drv_path: Symbol::intern("drvPath"),
            outputs: Symbol::intern("outputs"),
            success: Symbol::intern("success"),
            key: Symbol::intern("key"),
            overrides: Symbol::intern("__overrides"),
            body: Symbol::intern("body"),
            right: Symbol::intern("right"),
            wrong: Symbol::intern("wrong"),
            path: Symbol::intern("path"),
            operator: Symbol::intern("operator"),
            start_set: Symbol::intern("startSet"),
        }
    }
}

impl Default for KnownSymbols {
    fn default() -> Self {
        Self::new()
    }
}
