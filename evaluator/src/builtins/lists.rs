//! List builtins, with Nix 2.8's evaluation order and laziness: `map`, `genList` and
//! `concatMap`'s results keep elements as thunks, `filter`/`any`/`all`/`partition`/`groupBy`
//! force only the predicate results, `foldl'` forces the accumulator at each step, `sort` forces
//! every element first and then runs the exact comparison sequence of libstdc++'s
//! `std::stable_sort` (which Nix uses), so that side effects (`trace`), errors and results for
//! inconsistent comparators agree with Nix; it never panics, whatever the comparator returns.
//! Also `listToAttrs` (first occurrence of a name wins) and `genericClosure`.

use super::strings::{arg, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::symbol::Symbol;
use crate::value::{Attrs, EvalResult, List, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;
use rustc_hash::{FxHashMap, FxHashSet};

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "length", arity: 1, func: length, doc: "length list: the number of elements of list" },
        PrimOp { name: "head", arity: 1, func: head, doc: "head list: the first element of list (error if empty)" },
        PrimOp { name: "tail", arity: 1, func: tail, doc: "tail list: list without its first element (error if empty)" },
        PrimOp { name: "elemAt", arity: 2, func: elem_at, doc: "elemAt list n: the n-th element of list, counting from 0" },
        PrimOp { name: "elem", arity: 2, func: elem, doc: "elem x list: whether x is an element of list (by ==)" },
        PrimOp { name: "map", arity: 2, func: map, doc: "map f list: the list of f applied to each element (lazily)" },
        PrimOp { name: "filter", arity: 2, func: filter, doc: "filter pred list: the elements of list for which pred is true" },
        PrimOp { name: "foldl'", arity: 3, func: foldl_strict, doc: "foldl' op nul list: op (... (op (op nul x0) x1) ...) xn, forcing each intermediate result" },
        PrimOp { name: "genList", arity: 2, func: gen_list, doc: "genList f n: [ (f 0) (f 1) ... (f (n - 1)) ], elements computed lazily" },
        PrimOp { name: "concatLists", arity: 1, func: concat_lists, doc: "concatLists lists: the concatenation of a list of lists" },
        PrimOp { name: "concatMap", arity: 2, func: concat_map, doc: "concatMap f list: concatLists (map f list)" },
        PrimOp { name: "all", arity: 2, func: all, doc: "all pred list: whether pred is true for every element" },
        PrimOp { name: "any", arity: 2, func: any, doc: "any pred list: whether pred is true for some element" },
        PrimOp { name: "sort", arity: 2, func: sort, doc: "sort lessThan list: list stably sorted by the comparator lessThan" },
        PrimOp { name: "partition", arity: 2, func: partition, doc: "partition pred list: { right = elements where pred is true; wrong = the others; }" },
        PrimOp { name: "groupBy", arity: 2, func: group_by, doc: "groupBy f list: the elements grouped in a set by the string f returns for them" },
        PrimOp { name: "listToAttrs", arity: 1, func: list_to_attrs, doc: "listToAttrs [ { name; value; } ... ]: a set (the first occurrence of a name wins)" },
        PrimOp { name: "genericClosure", arity: 1, func: generic_closure, doc: "genericClosure { startSet; operator; }: all sets reachable from startSet through operator, unique by their `key`" },
    ]
}

fn length(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let l = ev.force_list(&arg(a, 0), span)?;
    Ok(Value::Int(l.len() as i64))
}

/// The element at index `n`, or an error naming `n` as given. (Nix 2.8 truncates the index
/// to a C `int`, so that `elemAt [ 1 2 ] 4294967296` is 1 and a huge index is reported as
/// some other number; buildit takes the whole 64-bit index.)
fn elem_at_index(ev: &mut Evaluator, l: &List, n: i64, span: Span) -> EvalResult<Value> {
    match usize::try_from(n).ok().and_then(|i| l.get(i)) {
        Some(x) => {
            let x = x.clone();
            ev.force(&x)
        }
        None => Err(EvalError::new(
            ErrorKind::IndexOutOfBounds,
            format!("list index {n} is out of bounds"),
            span,
        )),
    }
}

fn head(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let l = ev.force_list(&arg(a, 0), span)?;
    elem_at_index(ev, &l, 0, span)
}

fn tail(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let l = ev.force_list(&arg(a, 0), span)?;
    match l.as_slice().split_first() {
        Some((_, rest)) => Ok(Value::list(rest.to_vec())),
        None => Err(EvalError::new(
            ErrorKind::IndexOutOfBounds,
            "'tail' called on an empty list",
            span,
        )),
    }
}

fn elem_at(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let l = ev.force_list(&arg(a, 0), span)?;
    let n = ev.force_int(&arg(a, 1), span)?;
    elem_at_index(ev, &l, n, span)
}

fn elem(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let x = arg(a, 0);
    let l = ev.force_list(&arg(a, 1), span)?;
    for y in l.iter() {
        if ev.equals(&x, y, span)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn map(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = arg(a, 0);
    let l = ev.force_list(&arg(a, 1), span)?;
    let mut out = Vec::with_capacity(l.len());
    // an already-evaluated function may allow cheap eagerness (never forced here: Nix's
    // genList/map do not force it)
    let f = match &f {
        Value::Thunk(t) => t.value().unwrap_or(f),
        _ => f,
    };
    for x in l.iter() {
        out.push(match ev.try_cheap_apply(&f, x) {
            Some(v) => v,
            None => Value::lazy_apply(f.clone(), x.clone()),
        });
    }
    Ok(Value::list(out))
}

fn filter(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 1), span)?;
    let mut out = Vec::new();
    let mut same = true;
    for x in l.iter() {
        let r = ev.apply(f.clone(), x.clone(), span)?;
        if ev.force_bool(&r, span)? {
            out.push(x.clone());
        } else {
            same = false;
        }
    }
    if same {
        Ok(Value::List(l))
    } else {
        Ok(Value::list(out))
    }
}

fn foldl_strict(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 2), span)?;
    let mut acc = arg(a, 1);
    if l.is_empty() {
        return ev.force(&acc);
    }
    for x in l.iter() {
        acc = ev.apply2(&f, acc, x.clone(), span)?;
    }
    Ok(acc)
}

/// The largest list `genList` creates (2^27 elements, several GiB with their thunks).
const MAX_LIST: i64 = 1 << 27;

/// Refuse list sizes that cannot be allocated instead of aborting the process.
fn check_list_size(n: i64, span: Span) -> EvalResult<usize> {
    if n < 0 {
        return Err(EvalError::new(
            ErrorKind::Invalid,
            format!("cannot create list of size {n}"),
            span,
        ));
    }
    // Nix would try (and exhaust memory); a clean error is kinder
    if n > MAX_LIST {
        return Err(EvalError::new(
            ErrorKind::Invalid,
            format!("cannot create list of size {n}: buildit limits lists to {MAX_LIST} elements"),
            span,
        ));
    }
    Ok(n as usize)
}

fn alloc_vec(n: usize, span: Span) -> EvalResult<Vec<Value>> {
    let mut v: Vec<Value> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        EvalError::new(
            ErrorKind::Invalid,
            format!("cannot create list of size {n}: out of memory"),
            span,
        )
    })?;
    Ok(v)
}

fn gen_list(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = arg(a, 0);
    let n = ev.force_int(&arg(a, 1), span)?;
    let n = check_list_size(n, span)?;
    let mut out = alloc_vec(n, span)?;
    // an already-evaluated function may allow cheap eagerness (never forced here: Nix's
    // genList/map do not force it)
    let f = match &f {
        Value::Thunk(t) => t.value().unwrap_or(f),
        _ => f,
    };
    for i in 0..n {
        let x = Value::Int(i as i64);
        out.push(match ev.try_cheap_apply(&f, &x) {
            Some(v) => v,
            None => Value::lazy_apply(f.clone(), x),
        });
    }
    Ok(Value::list(out))
}

fn concat_lists(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let l = ev.force_list(&arg(a, 0), span)?;
    let mut lists = Vec::with_capacity(l.len());
    let mut total = 0usize;
    for x in l.iter() {
        let xs = ev.force_list(x, span)?;
        total = total.saturating_add(xs.len());
        lists.push(xs);
    }
    if lists.len() == 1 {
        if let Some(only) = lists.pop() {
            return Ok(Value::List(only));
        }
    }
    let mut out = alloc_vec(total, span)?;
    for xs in &lists {
        out.extend_from_slice(xs.as_slice());
    }
    Ok(Value::list(out))
}

fn concat_map(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 1), span)?;
    let mut lists = Vec::with_capacity(l.len());
    let mut total = 0usize;
    for x in l.iter() {
        let r = ev.apply(f.clone(), x.clone(), span)?;
        let xs = ev.force_list(&r, span)?;
        total = total.saturating_add(xs.len());
        lists.push(xs);
    }
    let mut out = alloc_vec(total, span)?;
    for xs in &lists {
        out.extend_from_slice(xs.as_slice());
    }
    Ok(Value::list(out))
}

fn any_or_all(ev: &mut Evaluator, a: &[Value], span: Span, any: bool) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 1), span)?;
    for x in l.iter() {
        let r = ev.apply(f.clone(), x.clone(), span)?;
        if ev.force_bool(&r, span)? == any {
            return Ok(Value::Bool(any));
        }
    }
    Ok(Value::Bool(!any))
}

fn all(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    any_or_all(ev, a, span, false)
}

fn any(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    any_or_all(ev, a, span, true)
}

fn partition(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 1), span)?;
    let mut right = Vec::new();
    let mut wrong = Vec::new();
    for x in l.iter() {
        let xv = ev.force(x)?;
        let r = ev.apply(f.clone(), xv.clone(), span)?;
        if ev.force_bool(&r, span)? {
            right.push(xv);
        } else {
            wrong.push(xv);
        }
    }
    Ok(Value::attrs(Attrs::from_unsorted(vec![
        (ev.sym.right, Value::list(right)),
        (ev.sym.wrong, Value::list(wrong)),
    ])))
}

fn group_by(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let f = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 1), span)?;
    let mut groups: FxHashMap<Symbol, Vec<Value>> = FxHashMap::default();
    for x in l.iter() {
        let r = ev.apply(f.clone(), x.clone(), span)?;
        let name = force_string_no_ctx(ev, &r, span)?;
        groups.entry(name.symbol()).or_default().push(x.clone());
    }
    let entries = groups
        .into_iter()
        .map(|(k, v)| (k, Value::list(v)))
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn missing_attr(name: &str, func: &str, span: Span) -> EvalError {
    EvalError::new(
        ErrorKind::MissingAttribute,
        format!("attribute '{name}' missing for call to '{func}'"),
        span,
    )
}

fn list_to_attrs(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let l = ev.force_list(&arg(a, 0), span)?;
    let mut seen: FxHashSet<Symbol> =
        FxHashSet::with_capacity_and_hasher(l.len(), Default::default());
    let mut entries = Vec::with_capacity(l.len());
    for x in l.iter() {
        let set = ev.force_attrs(x, span)?;
        let name_v = set
            .get(ev.sym.name)
            .cloned()
            .ok_or_else(|| missing_attr("name", "listToAttrs", span))?;
        let name = force_string_no_ctx(ev, &name_v, span)?;
        let sym = name.symbol();
        if seen.insert(sym) {
            let value = set
                .get(ev.sym.value)
                .cloned()
                .ok_or_else(|| missing_attr("value", "listToAttrs", span))?;
            entries.push((sym, value));
        }
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

// ---------------------------------------------------------------------------------------------
// sort: libstdc++'s std::stable_sort, comparison for comparison

struct Sorter<'a> {
    ev: &'a mut Evaluator,
    elems: &'a [Value],
    cmp: Value,
    /// The comparator is `builtins.lessThan`: compare directly (as Nix does).
    builtin_less: bool,
    span: Span,
}

impl Sorter<'_> {
    /// `comp(a, b)`: whether element `a` sorts before element `b`.
    fn less(&mut self, a: usize, b: usize) -> EvalResult<bool> {
        let (Some(x), Some(y)) = (self.elems.get(a), self.elems.get(b)) else {
            return Ok(false);
        };
        if self.builtin_less {
            return self.ev.less_than(x, y, self.span);
        }
        let (x, y) = (x.clone(), y.clone());
        let r = self.ev.call(&self.cmp, &[x, y], self.span)?;
        self.ev.force_bool(&r, self.span)
    }

    /// `std::__insertion_sort` on `v[lo..hi]`.
    fn insertion_sort(&mut self, v: &mut [usize], lo: usize, hi: usize) -> EvalResult<()> {
        if lo >= hi {
            return Ok(());
        }
        for i in lo + 1..hi {
            let val = v[i];
            if self.less(val, v[lo])? {
                v.copy_within(lo..i, lo + 1);
                v[lo] = val;
            } else {
                // `__unguarded_linear_insert`, guarded: a pure comparator stops at `lo` anyway
                let mut last = i;
                while last > lo && self.less(val, v[last - 1])? {
                    v[last] = v[last - 1];
                    last -= 1;
                }
                v[last] = val;
            }
        }
        Ok(())
    }

    /// `std::__move_merge`: merge `src[a..b]` and `src[b..c]` into `dst[out..]`.
    fn move_merge(
        &mut self,
        src: &[usize],
        (mut i, b, mut j, c): (usize, usize, usize, usize),
        dst: &mut [usize],
        mut out: usize,
    ) -> EvalResult<usize> {
        while i < b && j < c {
            if self.less(src[j], src[i])? {
                dst[out] = src[j];
                j += 1;
            } else {
                dst[out] = src[i];
                i += 1;
            }
            out += 1;
        }
        let n1 = b - i;
        dst[out..out + n1].copy_from_slice(&src[i..b]);
        out += n1;
        let n2 = c - j;
        dst[out..out + n2].copy_from_slice(&src[j..c]);
        Ok(out + n2)
    }

    /// `std::__merge_sort_loop`: merge runs of `step` from `src[lo..hi]` into `dst[dlo..]`.
    fn merge_sort_loop(
        &mut self,
        src: &[usize],
        (mut first, last): (usize, usize),
        dst: &mut [usize],
        mut out: usize,
        step: usize,
    ) -> EvalResult<()> {
        let two = 2 * step;
        while last - first >= two {
            out = self.move_merge(
                src,
                (first, first + step, first + step, first + two),
                dst,
                out,
            )?;
            first += two;
        }
        let s = (last - first).min(step);
        self.move_merge(src, (first, first + s, first + s, last), dst, out)?;
        Ok(())
    }

    /// `std::__merge_sort_with_buffer` on `v[lo..hi]` (buffer at least `hi - lo` long).
    fn merge_sort_with_buffer(
        &mut self,
        v: &mut [usize],
        (lo, hi): (usize, usize),
        buf: &mut [usize],
    ) -> EvalResult<()> {
        const CHUNK: usize = 7;
        let len = hi - lo;
        // __chunk_insertion_sort
        let mut f = lo;
        while hi - f >= CHUNK {
            self.insertion_sort(v, f, f + CHUNK)?;
            f += CHUNK;
        }
        self.insertion_sort(v, f, hi)?;
        let mut step = CHUNK;
        while step < len {
            self.merge_sort_loop(v, (lo, hi), buf, 0, step)?;
            step *= 2;
            // buffer back into v[lo..hi]
            self.merge_sort_loop(buf, (0, len), v, lo, step)?;
            step *= 2;
        }
        Ok(())
    }

    /// The whole of `std::stable_sort` with a sufficient buffer.
    fn stable_sort(&mut self, v: &mut [usize]) -> EvalResult<()> {
        let n = v.len();
        if n == 0 {
            return Ok(());
        }
        let mut buf = vec![0usize; n];
        let middle = n.div_ceil(2);
        self.merge_sort_with_buffer(v, (0, middle), &mut buf)?;
        self.merge_sort_with_buffer(v, (middle, n), &mut buf)?;
        // __merge_adaptive with enough buffer
        let (len1, len2) = (middle, n - middle);
        if len1 <= len2 {
            // forward: first half into the buffer
            buf[..len1].copy_from_slice(&v[..len1]);
            let (mut b, mut j, mut out) = (0usize, middle, 0usize);
            while b < len1 && j < n {
                if self.less(v[j], buf[b])? {
                    v[out] = v[j];
                    j += 1;
                } else {
                    v[out] = buf[b];
                    b += 1;
                }
                out += 1;
            }
            if b < len1 {
                v[out..out + (len1 - b)].copy_from_slice(&buf[b..len1]);
            }
        } else {
            // backward: second half into the buffer (__move_merge_adaptive_backward)
            buf[..len2].copy_from_slice(&v[middle..]);
            if len2 == 0 {
                return Ok(());
            }
            let mut last1 = middle - 1; // index into v of the current first-half element
            let mut last2 = len2 - 1; // index into buf
            let mut result = n; // one past the next slot to fill
            loop {
                if self.less(buf[last2], v[last1])? {
                    result -= 1;
                    v[result] = v[last1];
                    if last1 == 0 {
                        // copy the rest of the buffer before `result`
                        let k = last2 + 1;
                        v[result - k..result].copy_from_slice(&buf[..k]);
                        return Ok(());
                    }
                    last1 -= 1;
                } else {
                    result -= 1;
                    v[result] = buf[last2];
                    if last2 == 0 {
                        return Ok(());
                    }
                    last2 -= 1;
                }
            }
        }
        Ok(())
    }
}

fn sort(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let cmp = ev.force_function(&arg(a, 0), span)?;
    let l = ev.force_list(&arg(a, 1), span)?;
    let mut elems = Vec::with_capacity(l.len());
    for x in l.iter() {
        elems.push(ev.force(x)?);
    }
    let builtin_less = matches!(&cmp, Value::PrimOp(p) if p.name == "lessThan");
    let mut order: Vec<usize> = (0..elems.len()).collect();
    let mut sorter = Sorter {
        ev,
        elems: &elems,
        cmp,
        builtin_less,
        span,
    };
    sorter.stable_sort(&mut order)?;
    let out = order
        .into_iter()
        .filter_map(|i| elems.get(i).cloned())
        .collect();
    Ok(Value::list(out))
}

// ---------------------------------------------------------------------------------------------
// genericClosure

/// The keys seen so far. Nix keeps them in a `std::set` ordered by `<` (so `1` and `1.0` are the
/// same key and incomparable keys are an error); all-integer and all-string key sets, the common
/// cases, use a hash set, anything else a sorted vector searched with the evaluator's `<`.
enum DoneKeys {
    Empty,
    Ints(FxHashSet<i64>),
    Strs(FxHashSet<Box<str>>),
    Sorted(Vec<Value>),
}

impl DoneKeys {
    /// Insert `key` (forced); false when an equal key was already there.
    fn insert(&mut self, ev: &mut Evaluator, key: Value, span: Span) -> EvalResult<bool> {
        match (&mut *self, &key) {
            (DoneKeys::Empty, Value::Int(i)) => {
                let mut s = FxHashSet::default();
                s.insert(*i);
                *self = DoneKeys::Ints(s);
                return Ok(true);
            }
            (DoneKeys::Empty, Value::String(s)) => {
                let mut set = FxHashSet::default();
                set.insert(Box::from(s.as_str()));
                *self = DoneKeys::Strs(set);
                return Ok(true);
            }
            (DoneKeys::Empty, _) => {
                *self = DoneKeys::Sorted(vec![key]);
                return Ok(true);
            }
            (DoneKeys::Ints(s), Value::Int(i)) => return Ok(s.insert(*i)),
            (DoneKeys::Strs(s), Value::String(x)) => {
                if s.contains(x.as_str()) {
                    return Ok(false);
                }
                s.insert(Box::from(x.as_str()));
                return Ok(true);
            }
            _ => {}
        }
        // switch to the general representation
        if !matches!(self, DoneKeys::Sorted(_)) {
            let old = std::mem::replace(self, DoneKeys::Sorted(Vec::new()));
            let mut v: Vec<Value> = match old {
                DoneKeys::Ints(s) => s.into_iter().map(Value::Int).collect(),
                DoneKeys::Strs(s) => s
                    .into_iter()
                    .map(|x| Value::string(String::from(x)))
                    .collect(),
                _ => Vec::new(),
            };
            // sorting homogeneous ints/strings cannot fail
            v.sort_by(|a, b| match (a, b) {
                (Value::Int(x), Value::Int(y)) => x.cmp(y),
                (Value::String(x), Value::String(y)) => x.as_str().cmp(y.as_str()),
                _ => std::cmp::Ordering::Equal,
            });
            *self = DoneKeys::Sorted(v);
        }
        let DoneKeys::Sorted(v) = self else {
            return Ok(false);
        };
        // binary search with `<`: first element not less than key
        let (mut lo, mut hi) = (0usize, v.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if ev.less_than(&v[mid], &key, span)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < v.len() && !ev.less_than(&key, &v[lo], span)? {
            return Ok(false);
        }
        v.insert(lo, key);
        Ok(true)
    }
}

fn generic_closure(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let args = ev.force_attrs(&arg(a, 0), span)?;
    let start = args
        .get(ev.sym.start_set)
        .cloned()
        .ok_or_else(|| missing_attr("startSet", "genericClosure", span))?;
    let start = ev.force_list(&start, span)?;
    let op = args
        .get(ev.sym.operator)
        .cloned()
        .ok_or_else(|| missing_attr("operator", "genericClosure", span))?;
    let op = ev.force(&op)?;
    let mut work: std::collections::VecDeque<Value> = start.iter().cloned().collect();
    let mut done = DoneKeys::Empty;
    let mut res = Vec::new();
    while let Some(e) = work.pop_front() {
        let set = ev.force_attrs(&e, span)?;
        let key = set.get(ev.sym.key).cloned().ok_or_else(|| {
            EvalError::new(
                ErrorKind::MissingAttribute,
                "attribute 'key' required",
                span,
            )
        })?;
        let key = ev.force(&key)?;
        if !done.insert(ev, key, span)? {
            continue;
        }
        let ev_set = Value::Attrs(set);
        res.push(ev_set.clone());
        let next = ev.apply(op.clone(), ev_set, span)?;
        let next = ev.force_list(&next, span)?;
        for x in next.iter() {
            work.push_back(ev.force(x)?);
        }
    }
    Ok(Value::list(res))
}

#[cfg(test)]
mod tests {
    use super::super::strings::test_util::{check, check_err, run};

    /// The index is reported as given, not truncated to 32 bits.
    #[test]
    fn out_of_bounds_names_the_index() {
        for (src, n) in [
            (
                "builtins.elemAt [1 2] 9223372036854775807",
                "9223372036854775807",
            ),
            ("builtins.elemAt [1 2] 4294967296", "4294967296"),
            (
                "builtins.elemAt [1 2] (-9223372036854775807 - 1)",
                "-9223372036854775808",
            ),
            ("builtins.elemAt [1 2] (-1)", "-1"),
        ] {
            let out = run(src);
            assert!(
                out.contains(&format!("list index {n} is out of bounds")),
                "{src}: {out}"
            );
        }
    }

    #[test]
    fn basics() {
        check(&[
            ("builtins.length [1 2 3]", "3"),
            ("builtins.head [1 2]", "1"),
            ("builtins.tail [1 2 3]", "[ 2 3 ]"),
            ("builtins.elemAt [1 2] 1", "2"),
            ("builtins.elem 1 [1.0]", "true"),
            ("builtins.elem 3 [1 2]", "false"),
            ("builtins.concatLists [[1] [2 3] []]", "[ 1 2 3 ]"),
            ("builtins.concatMap (x: [x x]) [1 2]", "[ 1 1 2 2 ]"),
            ("builtins.filter (x: x > 1) [1 2 3]", "[ 2 3 ]"),
            ("builtins.all (x: x > 0) [1 2]", "true"),
            ("builtins.any (x: x > 1) [1 2]", "true"),
            ("builtins.foldl' (a: b: a ++ [b]) [] [1 2 3]", "[ 1 2 3 ]"),
            ("builtins.genList (x: x * x) 4", "[ 0 1 4 9 ]"),
            (
                "builtins.partition (x: x > 2) [1 2 3 4]",
                "{ right = [ 3 4 ]; wrong = [ 1 2 ]; }",
            ),
            (
                r#"builtins.groupBy (x: if x > 2 then "big" else "small") [1 2 3 4]"#,
                "{ big = [ 3 4 ]; small = [ 1 2 ]; }",
            ),
        ]);
        check_err(&[
            ("builtins.head []", "index-out-of-bounds"),
            ("builtins.tail []", "index-out-of-bounds"),
            ("builtins.elemAt [1 2] 2", "index-out-of-bounds"),
            ("builtins.elemAt [1 2] (-1)", "index-out-of-bounds"),
            ("builtins.elemAt [1 2] 4294967296", "index-out-of-bounds"),
            ("builtins.genList (x: x) (-1)", "invalid-value"),
            ("builtins.genList (x: x) 4000000000", "invalid-value"),
            ("builtins.concatLists [1]", "type-error"),
            ("builtins.concatMap (x: x) [1 2]", "type-error"),
            ("builtins.filter 1 []", "type-error"),
            ("builtins.foldl' 1 0 []", "type-error"),
            ("builtins.any (x: 1) [1]", "type-error"),
        ]);
    }

    #[test]
    fn laziness_matches_nix() {
        check(&[
            ("builtins.length (map (x: throw \"no\") [1 2])", "2"),
            ("map 1 []", "[ ]"),
            (
                "builtins.length (builtins.genList (x: throw \"no\") 3)",
                "3",
            ),
            ("builtins.foldl' (a: b: b) (throw \"x\") [1]", "1"),
            (
                "builtins.attrNames (builtins.listToAttrs [{name=\"a\"; value=throw \"x\";}])",
                "[ \"a\" ]",
            ),
            (
                "builtins.length (builtins.filter (x: true) [(throw \"x\")])",
                "1",
            ),
        ]);
        check_err(&[("builtins.foldl' (a: b: b) (throw \"x\") []", "throw")]);
    }

    #[test]
    fn list_to_attrs_first_wins() {
        check(&[
            (
                "builtins.listToAttrs [{name=\"a\"; value=1;} {name=\"a\"; value=2;}]",
                "{ a = 1; }",
            ),
            (
                "builtins.listToAttrs [{name=\"a\"; value=1;} {name=\"a\";}]",
                "{ a = 1; }",
            ),
        ]);
        check_err(&[
            ("builtins.listToAttrs [{name=\"a\";}]", "missing-attribute"),
            ("builtins.listToAttrs [{value=1;}]", "missing-attribute"),
        ]);
    }

    #[test]
    fn sort_is_stable_and_total() {
        check(&[
            ("builtins.sort builtins.lessThan [3 1 2]", "[ 1 2 3 ]"),
            (
                "builtins.sort (a: b: a.k < b.k) [{k=2; v=1;} {k=1; v=2;} {k=2; v=3;} {k=1; v=4;}]",
                "[ { k = 1; v = 2; } { k = 1; v = 4; } { k = 2; v = 1; } { k = 2; v = 3; } ]",
            ),
            // inconsistent comparators: the same answers as libstdc++'s stable_sort
            (
                "builtins.sort (a: b: true) [1 2 3 4 5 6 7 8 9 10]",
                "[ 10 9 8 7 6 5 4 3 2 1 ]",
            ),
            ("builtins.sort (a: b: false) [3 1 2]", "[ 3 1 2 ]"),
        ]);
        check_err(&[
            ("builtins.sort (a: b: 1) [1 2]", "type-error"),
            ("builtins.sort builtins.lessThan [3 \"a\"]", "incomparable"),
            ("builtins.sort 1 []", "type-error"),
        ]);
        // random comparators never panic, whatever the list size
        for n in [0, 1, 2, 7, 8, 15, 33, 100, 1000] {
            let src = format!(
                "builtins.length (builtins.sort (a: b: builtins.bitAnd (a * 7 + b * 13) 4 == 0) (builtins.genList (x: x) {n}))"
            );
            assert_eq!(run(&src), n.to_string());
        }
    }

    #[test]
    fn sort_matches_libstdcxx_order() {
        // the trace order of comparisons is the one Nix 2.8 (libstdc++ stable_sort) prints
        let (mut ev, traces) = super::super::strings::test_util::evaluator_with_traces();
        let v = ev
            .eval_str(
                r#"builtins.sort (a: b: builtins.trace "${toString a}<${toString b}" (a < b)) [5 3 9 1 7 2 8 4 6 0 11 10 15 13 12 14]"#,
            )
            .expect("sort");
        let _ = crate::print::print_value(&mut ev, &v).expect("print");
        // first comparisons of the chunked insertion sort, then the final forward merge
        let want = "3<5 9<3 9<5 1<3 7<1 7<9 7<5 2<1 2<9 2<7 2<5 2<3 2<1 8<1 8<9 8<7 4<1 4<2 4<3 4<5 0<6 11<0 11<6 10<0 10<11 10<6 15<0 15<11 13<0 13<15 13<11 12<0 12<15 12<13 12<11 14<0 14<6 14<10 14<11 14<12 14<13 14<15 0<1 6<1 6<2 6<3 6<4 6<5 6<7 10<7 10<8 10<9";
        assert_eq!(traces.borrow().join(" "), want);
    }

    #[test]
    fn generic_closure() {
        check(&[
            (
                "builtins.genericClosure { startSet = [{key=5;}]; operator = item: [{key = if builtins.div item.key 2 * 2 == item.key then builtins.div item.key 2 else 3 * item.key + 1;}]; }",
                "[ { key = 5; } { key = 16; } { key = 8; } { key = 4; } { key = 2; } { key = 1; } ]",
            ),
            (
                "builtins.genericClosure { startSet = [{key=1;} {key=1.0;} {key = 2; x = 1;}]; operator = x: []; }",
                "[ { key = 1; } { key = 2; x = 1; } ]",
            ),
            (
                "builtins.genericClosure { startSet = [{key=[1 2];} {key=[1 2];}]; operator = x: []; }",
                "[ { key = [ 1 2 ]; } ]",
            ),
            (
                "builtins.genericClosure { startSet = [{key=\"b\";} {key=\"a\";} {key=\"b\";}]; operator = x: []; }",
                "[ { key = \"b\"; } { key = \"a\"; } ]",
            ),
        ]);
        check_err(&[
            (
                "builtins.genericClosure { startSet = [{key=1;} {key=\"a\";}]; operator = x: []; }",
                "incomparable",
            ),
            (
                "builtins.genericClosure { startSet = [{}]; operator = x: []; }",
                "missing-attribute",
            ),
            (
                "builtins.genericClosure { operator = x: []; }",
                "missing-attribute",
            ),
        ]);
    }
}
