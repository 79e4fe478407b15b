//! Runtime values. [`Value`] is 16 bytes: scalars inline, everything else behind one `Rc`.
//! Laziness lives in [`Value::Thunk`]: a value in a lazy position (a variable slot, a list
//! element, an attribute) may be a thunk, and `Evaluator::force` turns it into weak head normal
//! form. Records ([`Attrs`]) are vectors sorted by [`Symbol`] id (lookup by binary search on
//! integers, merge in one pass for `//`); they are iterated in name order only where Nix's
//! semantics need it (`attrNames`, printing, JSON). Strings carry their context (store paths
//! they depend on) so that derivations can find their inputs.

use crate::error::EvalError;
use crate::ir;
use crate::symbol::Symbol;
use crate::Evaluator;
use buildit_lang::Span;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::rc::Rc;

pub type EvalResult<T> = Result<T, EvalError>;

#[derive(Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(NixString),
    /// An absolute, canonical path (no `.`/`..`, no trailing slash).
    Path(PathStr),
    Attrs(Rc<Attrs>),
    List(List),
    Lambda(Rc<Closure>),
    PrimOp(Rc<PrimOp>),
    PrimOpApp(Rc<PrimOpApp>),
    Thunk(Thunk),
}

impl Value {
    /// Nix's `builtins.typeOf` name (a thunk must be forced first).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Path(_) => "path",
            Value::Attrs(_) => "set",
            Value::List(_) => "list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => "lambda",
            Value::Thunk(_) => "thunk",
        }
    }

    /// A human description for error messages ("a string", "an integer", ...).
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::String(_) => "a string",
            Value::Path(_) => "a path",
            Value::Attrs(_) => "a set",
            Value::List(_) => "a list",
            Value::Lambda(_) => "a function",
            Value::PrimOp(_) => "a built-in function",
            Value::PrimOpApp(_) => "a partially applied built-in function",
            Value::Thunk(_) => "a thunk",
        }
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(NixString::new(s.into(), Context::empty()))
    }

    pub fn attrs(a: Attrs) -> Value {
        Value::Attrs(Rc::new(a))
    }

    pub fn list(v: Vec<Value>) -> Value {
        Value::List(List::new(v))
    }

    pub fn is_function(&self) -> bool {
        matches!(
            self,
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_)
        )
    }

    /// A thunk that applies `f` to `arg` when forced (used by lazy builtins like `map`).
    pub fn lazy_apply(f: Value, arg: Value) -> Value {
        Value::Thunk(Thunk::new(Pending::Apply(f, arg)))
    }

    /// A thunk that applies `f` to `a` then `b` when forced.
    pub fn lazy_apply2(f: Value, a: Value, b: Value) -> Value {
        Value::Thunk(Thunk::new(Pending::Apply2(Box::new((f, a, b)))))
    }

    /// A thunk computed by native code when forced.
    pub fn lazy_native(f: impl FnOnce(&mut Evaluator) -> EvalResult<Value> + 'static) -> Value {
        Value::Thunk(Thunk::new(Pending::Native(Box::new(f))))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{:?}", s.as_str()),
            Value::Path(p) => write!(f, "{p}"),
            Value::Attrs(a) => write!(f, "{{ {} attrs }}", a.len()),
            Value::List(l) => write!(f, "[ {} elems ]", l.len()),
            Value::Lambda(_) => write!(f, "<LAMBDA>"),
            Value::PrimOp(p) => write!(f, "<PRIMOP {}>", p.name),
            Value::PrimOpApp(_) => write!(f, "<PRIMOP-APP>"),
            Value::Thunk(_) => write!(f, "<thunk>"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

/// The text of a path value behind one thin pointer (an `Rc<str>` is two words wide and would
/// make every [`Value`] 24 bytes instead of 16).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathStr(Rc<Box<str>>);

impl std::ops::Deref for PathStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PathStr {
    fn from(s: &str) -> PathStr {
        PathStr(Rc::new(s.into()))
    }
}

impl From<String> for PathStr {
    fn from(s: String) -> PathStr {
        PathStr(Rc::new(s.into_boxed_str()))
    }
}

impl fmt::Display for PathStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for PathStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &**self)
    }
}

// ---------------------------------------------------------------------------------------------
// Strings and their context

/// One dependency of a string on the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContextElem {
    /// A plain store path (a source added to the store, an output path).
    Opaque(Rc<str>),
    /// A derivation with all its outputs (`drvPath` interpolated): `=/bld/store/…drv` in Nix.
    AllOutputs(Rc<str>),
    /// One output of a derivation: `!out!/bld/store/…drv` in Nix.
    Output { drv: Rc<str>, output: Rc<str> },
}

/// The (possibly empty) set of store dependencies of a string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context(Option<Rc<BTreeSet<ContextElem>>>);

impl Context {
    pub fn empty() -> Context {
        Context(None)
    }

    pub fn single(e: ContextElem) -> Context {
        let mut s = BTreeSet::new();
        s.insert(e);
        Context(Some(Rc::new(s)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = &ContextElem> {
        self.0.iter().flat_map(|s| s.iter())
    }

    /// Add every element of `other` to `self`.
    pub fn union(&mut self, other: &Context) {
        let Some(o) = &other.0 else { return };
        if o.is_empty() {
            return;
        }
        match &mut self.0 {
            None => self.0 = Some(o.clone()),
            Some(mine) => {
                if Rc::ptr_eq(mine, o) {
                    return;
                }
                let m = Rc::make_mut(mine);
                m.extend(o.iter().cloned());
            }
        }
    }

    pub fn insert(&mut self, e: ContextElem) {
        match &mut self.0 {
            None => self.0 = Some(Rc::new(BTreeSet::from([e]))),
            Some(m) => {
                Rc::make_mut(m).insert(e);
            }
        }
    }
}

struct StrInner {
    s: Box<str>,
    ctx: Context,
    /// The interned symbol of `s`, once known (a string used as an attribute name again and
    /// again is interned once).
    sym: std::cell::Cell<Option<Symbol>>,
}

/// An immutable string with its context. Cloning is a reference-count increment.
#[derive(Clone)]
pub struct NixString(Rc<StrInner>);

impl NixString {
    pub fn new(s: impl Into<Box<str>>, ctx: Context) -> NixString {
        NixString(Rc::new(StrInner {
            s: s.into(),
            ctx,
            sym: std::cell::Cell::new(None),
        }))
    }

    /// The string of an attribute name, which knows its symbol.
    pub fn of_symbol(sym: Symbol) -> NixString {
        NixString(Rc::new(StrInner {
            s: sym.as_str().into(),
            ctx: Context::empty(),
            sym: std::cell::Cell::new(Some(sym)),
        }))
    }

    /// The interned symbol of this string (interned on first use, then remembered).
    pub fn symbol(&self) -> Symbol {
        match self.0.sym.get() {
            Some(sym) => sym,
            None => {
                let sym = Symbol::intern(&self.0.s);
                self.0.sym.set(Some(sym));
                sym
            }
        }
    }

    pub fn plain(s: impl Into<Box<str>>) -> NixString {
        NixString::new(s, Context::empty())
    }

    pub fn as_str(&self) -> &str {
        &self.0.s
    }

    pub fn context(&self) -> &Context {
        &self.0.ctx
    }

    pub fn has_context(&self) -> bool {
        !self.0.ctx.is_empty()
    }

    pub fn ptr_eq(a: &NixString, b: &NixString) -> bool {
        Rc::ptr_eq(&a.0, &b.0)
    }
}

impl fmt::Debug for NixString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Lists and records

/// An immutable list of (possibly unevaluated) values.
#[derive(Clone)]
pub struct List(Rc<ListItems>);

/// The elements of a list. Dropping goes through [`guarded_drop`] so that deeply nested lists
/// (`fromJSON "[[[…]]]"`, a fold building `[ acc ]`) are freed without deep native recursion.
pub struct ListItems(Vec<Value>);

impl std::ops::Deref for ListItems {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl Drop for ListItems {
    fn drop(&mut self) {
        if self.0.iter().any(drop_may_recurse) {
            guarded_drop(Deferred::Items(std::mem::take(&mut self.0)));
        }
    }
}

impl List {
    pub fn new(v: Vec<Value>) -> List {
        List(Rc::new(ListItems(v)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Value> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Value] {
        &self.0
    }

    pub fn ptr_eq(a: &List, b: &List) -> bool {
        Rc::ptr_eq(&a.0, &b.0)
    }

    /// Identity of the list's storage (for visited sets).
    pub fn id(&self) -> usize {
        Rc::as_ptr(&self.0) as *const u8 as usize
    }
}

/// A record: entries sorted by symbol id, no duplicates.
#[derive(Default)]
pub struct Attrs {
    entries: Vec<(Symbol, Value)>,
}

impl Clone for Attrs {
    fn clone(&self) -> Attrs {
        Attrs {
            entries: self.entries.clone(),
        }
    }
}

impl Attrs {
    pub fn new() -> Attrs {
        Attrs::default()
    }

    pub fn with_capacity(n: usize) -> Attrs {
        Attrs {
            entries: Vec::with_capacity(n),
        }
    }

    /// Build from entries in any order; on duplicate keys the last one wins.
    pub fn from_unsorted(mut entries: Vec<(Symbol, Value)>) -> Attrs {
        entries.sort_by_key(|(k, _)| *k);
        // keep the last of equal keys
        let mut out: Vec<(Symbol, Value)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match out.last_mut() {
                Some((lk, lv)) if *lk == k => *lv = v,
                _ => out.push((k, v)),
            }
        }
        Attrs { entries: out }
    }

    /// Build from entries already sorted by symbol with no duplicates.
    pub fn from_sorted(entries: Vec<(Symbol, Value)>) -> Attrs {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        Attrs { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lookup by symbol. A large record whose names were interned together (a package set
    /// built by `listToAttrs` or `genList`) has nearly consecutive symbol ids, so the position
    /// is first guessed by interpolation; when the ids are exactly consecutive the guess is
    /// always right. Otherwise, binary search.
    pub fn get(&self, k: Symbol) -> Option<&Value> {
        let e = &self.entries;
        if let (true, Some(first), Some(last)) = (e.len() > 8, e.first(), e.last()) {
            let (lo, hi, id) = (first.0.id(), last.0.id(), k.id());
            if id < lo || id > hi {
                return None;
            }
            let guess =
                (u64::from(id - lo) * (e.len() as u64 - 1) / u64::from((hi - lo).max(1))) as usize;
            if let Some((s, v)) = e.get(guess) {
                if *s == k {
                    return Some(v);
                }
            }
        }
        e.binary_search_by_key(&k, |(s, _)| *s)
            .ok()
            .map(|i| &e[i].1)
    }

    pub fn contains(&self, k: Symbol) -> bool {
        self.get(k).is_some()
    }

    /// Insert or replace.
    pub fn insert(&mut self, k: Symbol, v: Value) {
        match self.entries.binary_search_by_key(&k, |(s, _)| *s) {
            Ok(i) => self.entries[i].1 = v,
            Err(i) => self.entries.insert(i, (k, v)),
        }
    }

    /// Entries in symbol order (NOT name order): fast, for lookups and merges.
    pub fn iter(&self) -> std::slice::Iter<'_, (Symbol, Value)> {
        self.entries.iter()
    }

    /// Entries in name order, as Nix iterates records (attrNames, printing, JSON).
    pub fn iter_sorted(&self) -> Vec<&(Symbol, Value)> {
        let names = Symbol::names_of(&self.entries, |e| e.0);
        let mut v: Vec<(u64, &'static str, &(Symbol, Value))> = names
            .into_iter()
            .zip(self.entries.iter())
            .map(|(n, e)| (name_prefix(n), n, e))
            .collect();
        // names are unique, so an unstable sort is deterministic; most comparisons are
        // decided by the first eight bytes, compared as one integer
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        v.into_iter().map(|(_, _, e)| e).collect()
    }

    /// `self // other`: other's entries win.
    pub fn update(&self, other: &Attrs) -> Attrs {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(b[j].clone());
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        Attrs { entries: out }
    }

    pub fn into_entries(mut self) -> Vec<(Symbol, Value)> {
        std::mem::take(&mut self.entries)
    }

    pub fn retain(&mut self, f: impl FnMut(&(Symbol, Value)) -> bool) {
        self.entries.retain(f)
    }
}

/// The first eight bytes of `s`, zero-padded, as a big-endian integer. When two names' prefixes
/// differ, they order the names as the names themselves would (a name that ends early pads with
/// zero, below any byte it could be compared with); when they are equal, the names decide.
fn name_prefix(s: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

// ---------------------------------------------------------------------------------------------
// Functions

/// A lambda closed over its environment.
pub struct Closure {
    pub lambda: Rc<ir::Lambda>,
    pub env: Env,
}

/// The signature of every builtin: the evaluator, the (unforced) arguments, and the span of the
/// application (for error messages).
pub type PrimOpFn = fn(&mut Evaluator, &[Value], Span) -> EvalResult<Value>;

pub struct PrimOp {
    /// Name without `builtins.` (`"map"`).
    pub name: &'static str,
    pub arity: usize,
    pub func: PrimOpFn,
    /// One-line documentation for `:doc`.
    pub doc: &'static str,
}

/// A builtin applied to fewer arguments than its arity.
pub struct PrimOpApp {
    pub op: Rc<PrimOp>,
    pub args: Vec<Value>,
}

// ---------------------------------------------------------------------------------------------
// Environments and thunks

/// One lexical frame: the slots of a `let`, `rec`, lambda parameter or hidden binding, plus the
/// enclosing frame. Variables are resolved at lowering time to (depth, index).
pub struct Scope {
    pub slots: RefCell<smallvec::SmallVec<[Value; 2]>>,
    pub parent: Option<Env>,
}

pub type Env = Rc<Scope>;

/// Whether dropping this value may free a structure that holds further values (only then can a
/// drop recurse): the last reference to a thunk, record, list or closure.
/// An evaluated thunk is looked into: the last reference to a thunk whose value is a number or
/// a string frees nothing further.
#[inline]
fn drop_may_recurse(v: &Value) -> bool {
    match v {
        Value::Thunk(t) => {
            Rc::strong_count(&t.0) == 1
                && match t.0.try_borrow() {
                    Ok(st) => match &*st {
                        ThunkState::Done(v) => drop_may_recurse_whnf(v),
                        _ => true,
                    },
                    Err(_) => true,
                }
        }
        v => drop_may_recurse_whnf(v),
    }
}

/// [`drop_may_recurse`] for a value that is not a thunk (a thunk's value never is).
#[inline]
fn drop_may_recurse_whnf(v: &Value) -> bool {
    match v {
        Value::Thunk(_) => true,
        Value::Attrs(a) => Rc::strong_count(a) == 1,
        Value::List(l) => Rc::strong_count(&l.0) == 1,
        Value::Lambda(c) => Rc::strong_count(c) == 1,
        Value::PrimOpApp(p) => Rc::strong_count(p) == 1,
        _ => false,
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let parent_last = self
            .parent
            .as_ref()
            .is_some_and(|p| Rc::strong_count(p) == 1);
        let slots = self.slots.get_mut();
        if !parent_last && !slots.iter().any(drop_may_recurse) {
            return; // plain drop: nothing below can recurse
        }
        let slots = std::mem::take(slots);
        if !slots.is_empty() {
            guarded_drop(Deferred::Slots(slots));
        }
        if let Some(p) = self.parent.take() {
            guarded_drop(Deferred::Env(p));
        }
    }
}

impl Drop for Attrs {
    fn drop(&mut self) {
        if self.entries.iter().any(|(_, v)| drop_may_recurse(v)) {
            guarded_drop(Deferred::Entries(std::mem::take(&mut self.entries)));
        }
    }
}

/// Parts of values whose drop is deferred past a nesting limit (held only to be dropped).
#[allow(dead_code)]
enum Deferred {
    Slots(smallvec::SmallVec<[Value; 2]>),
    Env(Env),
    State(ThunkState),
    Entries(Vec<(Symbol, Value)>),
    Items(Vec<Value>),
}

thread_local! {
    static DROP_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Whether `DROP_QUEUE` may be non-empty (a plain flag: checking it needs no access to the
    /// queue, which has a destructor and so a slower thread-local access).
    static DROP_QUEUED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static DROP_QUEUE: RefCell<Vec<Deferred>> = const { RefCell::new(Vec::new()) };
}

/// Drop `d`, but never more than 64 nested levels deep: deeper parts are queued and dropped
/// iteratively by the outermost call. A chain of a million thunks or nested sets is freed
/// without a million native frames.
fn guarded_drop(d: Deferred) {
    let Ok(depth) = DROP_DEPTH.try_with(|c| c.get()) else {
        return drop(d);
    };
    if depth >= 64 {
        if let Err(_gone) = DROP_QUEUE.try_with(|q| {
            if let Ok(mut q) = q.try_borrow_mut() {
                q.push(d);
                DROP_QUEUED.set(true);
            }
        }) {
            // thread-local storage is being torn down: leak rather than recurse
        }
        return;
    }
    DROP_DEPTH.set(depth + 1);
    drop(d);
    if depth == 0 && DROP_QUEUED.get() {
        DROP_QUEUED.set(false);
        loop {
            let next = DROP_QUEUE.with(|q| q.try_borrow_mut().ok().and_then(|mut q| q.pop()));
            match next {
                Some(d) => drop(d),
                None => break,
            }
        }
    }
    DROP_DEPTH.set(depth);
}

impl Scope {
    pub fn new(parent: Option<Env>, slots: smallvec::SmallVec<[Value; 2]>) -> Env {
        Rc::new(Scope {
            slots: RefCell::new(slots),
            parent,
        })
    }
}

/// Native code a thunk runs when forced.
pub type NativeThunk = Box<dyn FnOnce(&mut Evaluator) -> EvalResult<Value>>;

/// Work a thunk still has to do.
pub enum Pending {
    Expr(Rc<ir::Expr>, Env),
    Apply(Value, Value),
    /// Boxed: rare, and it would make every thunk 16 bytes larger.
    Apply2(Box<(Value, Value, Value)>),
    /// `f name v` where `name` is an attribute's name as a string (`mapAttrs`): the string is
    /// made (once per name, see `Evaluator::symbol_string`) only when the thunk is forced.
    ApplyName(Value, Symbol, Value),
    Native(NativeThunk),
}

pub enum ThunkState {
    Pending(Pending),
    /// Being forced; the index into the evaluator's force stack where that started (to report
    /// the cycle) and the span of the code being forced.
    Blackhole(usize, Span),
    Done(Value),
}

/// The shared cell of a thunk. Derefs to its `RefCell<ThunkState>`; dropping it goes through
/// [`guarded_drop`] so that long chains of thunks never recurse deeply in `Drop`.
pub struct ThunkCell(RefCell<ThunkState>);

impl std::ops::Deref for ThunkCell {
    type Target = RefCell<ThunkState>;
    fn deref(&self) -> &RefCell<ThunkState> {
        &self.0
    }
}

impl Drop for ThunkCell {
    fn drop(&mut self) {
        let st = std::mem::replace(self.0.get_mut(), ThunkState::Done(Value::Null));
        match st {
            ThunkState::Done(v) if !drop_may_recurse(&v) => {}
            st => guarded_drop(Deferred::State(st)),
        }
    }
}

/// A suspended computation, evaluated at most once (call-by-need).
#[derive(Clone)]
pub struct Thunk(pub Rc<ThunkCell>);

impl Thunk {
    pub fn new(p: Pending) -> Thunk {
        Thunk(Rc::new(ThunkCell(RefCell::new(ThunkState::Pending(p)))))
    }

    pub fn done(v: Value) -> Thunk {
        Thunk(Rc::new(ThunkCell(RefCell::new(ThunkState::Done(v)))))
    }

    /// The value, when already evaluated.
    pub fn value(&self) -> Option<Value> {
        match &*self.0.borrow() {
            ThunkState::Done(v) => Some(v.clone()),
            _ => None,
        }
    }

    pub fn ptr_eq(a: &Thunk, b: &Thunk) -> bool {
        Rc::ptr_eq(&a.0, &b.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name order through the integer prefix is exactly string order.
    #[test]
    fn prefix_order_is_string_order() {
        let names = [
            "",
            "a",
            "a\u{0}",
            "a\u{0}b",
            "ab",
            "abcdefgh",
            "abcdefgh\u{0}",
            "abcdefghi",
            "abcdefgg",
            "b",
            "pkg1",
            "pkg10",
            "pkg2",
            "Z",
            "é",
            "\u{7f}",
        ];
        for x in names {
            for y in names {
                let by_prefix = name_prefix(x).cmp(&name_prefix(y)).then_with(|| x.cmp(y));
                assert_eq!(by_prefix, x.cmp(y), "{x:?} vs {y:?}");
            }
        }
    }

    /// The sizes the evaluator's speed and memory depend on (see the module doc).
    #[test]
    fn compact_sizes() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
        assert_eq!(std::mem::size_of::<NixString>(), 8);
        assert!(
            std::mem::size_of::<ThunkState>() <= 40,
            "{}",
            std::mem::size_of::<ThunkState>()
        );
    }
}
