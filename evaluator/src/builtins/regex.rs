//! `builtins.match` and `builtins.split`: POSIX extended regular expressions with exactly the
//! semantics Nix 2.8 has, which are those of libstdc++'s `std::regex` (GCC 12, flag
//! `std::regex::extended`), not textbook POSIX and not the `regex` crate's:
//!
//! - Matching is a backtracking depth-first search over a Thompson-style NFA built the way
//!   libstdc++ builds it. At an alternation `a|b` *both* branches are explored and the branch
//!   giving the longest overall match wins (the first one on ties); at a repetition (`*`, `+`,
//!   `?`, `{m,n}`) the greedy branch is taken and, if it leads to any match, the shorter
//!   branch is never tried. So `match "(a|ab)(c|bcd)(d*)" "abcd"` is `["a" "bcd" ""]` (the
//!   first full match found), while `split "(a|ab)" "abc"` splits at `"ab"` (the longer).
//!   Empty-loop protection mirrors libstdc++'s per-state `(position, count)` guard.
//! - Everything works on bytes (`.` matches one byte, so `match "(.)" "é"` is `null`);
//!   bracket ranges compare signed `char`s; character classes use the C locale.
//! - Syntax: `\` may only escape `.[\()*+?{|^$` (anything else, e.g. `\d`, `\]`, is an
//!   error), `]` first in a bracket is literal, `[[:class:]]`, `[[.name.]]` (libstdc++'s
//!   collating names such as `hyphen`), `[[=c=]]`, `{m}`, `{m,}`, `{m,n}`; a quantifier
//!   needs an atom before it; more than 100000 NFA states is "memory limit exceeded".
//! - `split` iterates like `std::regex_iterator` (an empty match is retried at the same place
//!   as a non-empty one, then the search moves one byte on).
//!
//! We do not share libstdc++'s recursion (which overflows the native stack on long inputs):
//! the search runs on an explicit task stack, and a (very generous) step budget turns
//! pathological exponential backtracking into an error instead of a hang. Compiled programs
//! are cached per thread, keyed by the pattern text.

use super::strings::{arg, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::value::{EvalResult, NixString, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::rc::Rc;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp {
            name: "match",
            arity: 2,
            func: prim_match,
            doc: "match regex s: the list of capture groups (null for groups that did not participate) if POSIX extended regex matches all of s, else null",
        },
        PrimOp {
            name: "split",
            arity: 2,
            func: prim_split,
            doc: "split regex s: s cut at every match of regex, interleaved with the lists of capture groups of the matches",
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// errors

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegexError {
    /// Any syntax error ("invalid regular expression").
    Invalid,
    /// More NFA states than libstdc++ allows (`_GLIBCXX_REGEX_STATE_LIMIT`).
    Space,
    /// The search exceeded its step budget (buildit only; Nix would run "forever").
    TooComplex,
}

type PResult<T> = Result<T, RegexError>;

const STATE_LIMIT: u64 = 100_000;

// ---------------------------------------------------------------------------------------------
// syntax tree

/// 256-bit byte set.
#[derive(Clone, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn empty() -> ByteSet {
        ByteSet([0; 4])
    }
    fn insert(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1u64 << (b & 63);
    }
    fn contains(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] & (1u64 << (b & 63)) != 0
    }
    fn union(&mut self, o: &ByteSet) {
        for i in 0..4 {
            self.0[i] |= o.0[i];
        }
    }
    fn all_but_nul() -> ByteSet {
        let mut s = ByteSet([u64::MAX; 4]);
        s.0[0] &= !1;
        s
    }
}

enum Node {
    Empty,
    Byte(u8),
    Any,
    Set(Box<ByteSet>),
    LineBegin,
    LineEnd,
    Group(u32, Box<Node>),
    Concat(Vec<Node>),
    Alt(Box<Node>, Box<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
    Opt(Box<Node>),
    /// `{min}`, `{min,}` (max None), `{min,max}`.
    Repeat(Box<Node>, u32, Option<u32>),
}

impl Drop for Node {
    /// Iterative, so that deeply nested patterns cannot overflow the stack when freed.
    fn drop(&mut self) {
        fn take_children(n: &mut Node, out: &mut Vec<Node>) {
            match n {
                Node::Group(_, b) | Node::Star(b) | Node::Plus(b) | Node::Opt(b) => {
                    out.push(std::mem::replace(&mut **b, Node::Empty));
                }
                Node::Repeat(b, _, _) => out.push(std::mem::replace(&mut **b, Node::Empty)),
                Node::Alt(l, r) => {
                    out.push(std::mem::replace(&mut **l, Node::Empty));
                    out.push(std::mem::replace(&mut **r, Node::Empty));
                }
                Node::Concat(v) => out.append(v),
                _ => {}
            }
        }
        let mut stack = Vec::new();
        take_children(self, &mut stack);
        while let Some(mut n) = stack.pop() {
            take_children(&mut n, &mut stack);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// parser (libstdc++'s _Scanner + _Compiler, POSIX extended flavour)

const SPECIAL: &[u8] = b".[\\()*+?{|^$";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ord(u8),
    Any,
    LineBegin,
    LineEnd,
    Or,
    Star,
    Plus,
    Opt,
    IntervalBegin,
    GroupOpen,
    GroupClose,
    BracketOpen(bool),
    Eof,
}

enum BTok {
    Dash,
    Ord(u8),
    Coll(Vec<u8>),
    Class(Vec<u8>),
    Equiv(Vec<u8>),
    End,
}

enum Last {
    None,
    Char(u8),
    Class,
}

struct Parser<'a> {
    p: &'a [u8],
    i: usize,
    ngroups: u32,
    /// NFA states libstdc++ would have allocated so far.
    states: u64,
    at_bracket_start: bool,
}

/// libstdc++'s collating element names, indexed by character code.
const COLLATE_NAMES: [&str; 128] = [
    "NUL",
    "SOH",
    "STX",
    "ETX",
    "EOT",
    "ENQ",
    "ACK",
    "alert",
    "backspace",
    "tab",
    "newline",
    "vertical-tab",
    "form-feed",
    "carriage-return",
    "SO",
    "SI",
    "DLE",
    "DC1",
    "DC2",
    "DC3",
    "DC4",
    "NAK",
    "SYN",
    "ETB",
    "CAN",
    "EM",
    "SUB",
    "ESC",
    "IS4",
    "IS3",
    "IS2",
    "IS1",
    "space",
    "exclamation-mark",
    "quotation-mark",
    "number-sign",
    "dollar-sign",
    "percent-sign",
    "ampersand",
    "apostrophe",
    "left-parenthesis",
    "right-parenthesis",
    "asterisk",
    "plus-sign",
    "comma",
    "hyphen",
    "period",
    "slash",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "colon",
    "semicolon",
    "less-than-sign",
    "equals-sign",
    "greater-than-sign",
    "question-mark",
    "commercial-at",
    "A",
    "B",
    "C",
    "D",
    "E",
    "F",
    "G",
    "H",
    "I",
    "J",
    "K",
    "L",
    "M",
    "N",
    "O",
    "P",
    "Q",
    "R",
    "S",
    "T",
    "U",
    "V",
    "W",
    "X",
    "Y",
    "Z",
    "left-square-bracket",
    "backslash",
    "right-square-bracket",
    "circumflex",
    "underscore",
    "grave-accent",
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "t",
    "u",
    "v",
    "w",
    "x",
    "y",
    "z",
    "left-curly-bracket",
    "vertical-line",
    "right-curly-bracket",
    "tilde",
    "DEL",
];

fn lookup_collate(name: &[u8]) -> Option<u8> {
    COLLATE_NAMES
        .iter()
        .position(|n| n.as_bytes() == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// A character class of the C locale (`[:alpha:]` ...), by lower-cased name.
fn class_set(name: &[u8]) -> Option<ByteSet> {
    let lower: Vec<u8> = name.iter().map(u8::to_ascii_lowercase).collect();
    let pred: fn(u8) -> bool = match lower.as_slice() {
        b"d" | b"digit" => |c| c.is_ascii_digit(),
        b"w" => |c| c.is_ascii_alphanumeric() || c == b'_',
        b"s" | b"space" => |c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"alnum" => |c| c.is_ascii_alphanumeric(),
        b"alpha" => |c| c.is_ascii_alphabetic(),
        b"blank" => |c| c == b' ' || c == b'\t',
        b"cntrl" => |c| c < 0x20 || c == 0x7f,
        b"graph" => |c| (0x21..0x7f).contains(&c),
        b"lower" => |c| c.is_ascii_lowercase(),
        b"print" => |c| (0x20..0x7f).contains(&c),
        b"punct" => |c| c.is_ascii_punctuation(),
        b"upper" => |c| c.is_ascii_uppercase(),
        b"xdigit" => |c| c.is_ascii_hexdigit(),
        _ => return None,
    };
    let mut s = ByteSet::empty();
    for c in 0u8..128 {
        if pred(c) {
            s.insert(c);
        }
    }
    Some(s)
}

impl Parser<'_> {
    fn count(&mut self, n: u64) -> PResult<()> {
        self.states = self.states.saturating_add(n);
        if self.states > STATE_LIMIT {
            return Err(RegexError::Space);
        }
        Ok(())
    }

    /// The next token in the normal state and the position after it.
    fn peek(&self) -> PResult<(Tok, usize)> {
        let i = self.i;
        let Some(&c) = self.p.get(i) else {
            return Ok((Tok::Eof, i));
        };
        if c == 0 {
            return Err(RegexError::Invalid);
        }
        if !SPECIAL.contains(&c) {
            return Ok((Tok::Ord(c), i + 1));
        }
        Ok(match c {
            b'\\' => match self.p.get(i + 1) {
                Some(&e) if e != 0 && SPECIAL.contains(&e) => (Tok::Ord(e), i + 2),
                _ => return Err(RegexError::Invalid),
            },
            b'(' => (Tok::GroupOpen, i + 1),
            b')' => (Tok::GroupClose, i + 1),
            b'[' => {
                if self.p.get(i + 1) == Some(&b'^') {
                    (Tok::BracketOpen(true), i + 2)
                } else {
                    (Tok::BracketOpen(false), i + 1)
                }
            }
            b'{' => (Tok::IntervalBegin, i + 1),
            b'.' => (Tok::Any, i + 1),
            b'^' => (Tok::LineBegin, i + 1),
            b'$' => (Tok::LineEnd, i + 1),
            b'|' => (Tok::Or, i + 1),
            b'*' => (Tok::Star, i + 1),
            b'+' => (Tok::Plus, i + 1),
            _ => (Tok::Opt, i + 1),
        })
    }

    fn eat(&mut self, t: Tok) -> PResult<bool> {
        let (tok, next) = self.peek()?;
        if tok == t {
            self.i = next;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn parse(&mut self) -> PResult<Node> {
        self.ngroups = 1; // group 0 is the whole match
        self.count(1)?; // subexpr begin 0
        let n = self.disjunction()?;
        if !self.eat(Tok::Eof)? {
            return Err(RegexError::Invalid);
        }
        self.count(2)?; // subexpr end 0, accept
        Ok(Node::Group(0, Box::new(n)))
    }

    fn disjunction(&mut self) -> PResult<Node> {
        stacker::maybe_grow(32 * 1024, 1024 * 1024, || {
            let mut left = self.alternative()?;
            while self.eat(Tok::Or)? {
                let right = self.alternative()?;
                self.count(2)?; // end dummy, alternative
                left = Node::Alt(Box::new(left), Box::new(right));
            }
            Ok(left)
        })
    }

    fn alternative(&mut self) -> PResult<Node> {
        let mut items = Vec::new();
        while let Some(t) = self.term()? {
            items.push(t);
        }
        self.count(1)?; // the dummy closing the sequence
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    fn term(&mut self) -> PResult<Option<Node>> {
        let (tok, next) = self.peek()?;
        match tok {
            Tok::LineBegin | Tok::LineEnd => {
                self.i = next;
                self.count(1)?;
                return Ok(Some(if tok == Tok::LineBegin {
                    Node::LineBegin
                } else {
                    Node::LineEnd
                }));
            }
            _ => {}
        }
        let before = self.states;
        let Some(mut atom) = self.atom()? else {
            return Ok(None);
        };
        loop {
            let (tok, next) = self.peek()?;
            atom = match tok {
                Tok::Star => {
                    self.i = next;
                    self.count(1)?;
                    Node::Star(Box::new(atom))
                }
                Tok::Plus => {
                    self.i = next;
                    self.count(1)?;
                    Node::Plus(Box::new(atom))
                }
                Tok::Opt => {
                    self.i = next;
                    self.count(2)?;
                    Node::Opt(Box::new(atom))
                }
                Tok::IntervalBegin => {
                    self.i = next;
                    let r = self.states - before;
                    self.interval(atom, r)?
                }
                _ => return Ok(Some(atom)),
            };
        }
    }

    /// `{m}`, `{m,}`, `{m,n}` after the `{`; `r` is the size of the repeated sub-NFA.
    fn interval(&mut self, atom: Node, r: u64) -> PResult<Node> {
        let min = self.dup_count()?.ok_or(RegexError::Invalid)?;
        let mut max = Some(min);
        if self.p.get(self.i) == Some(&b',') {
            self.i += 1;
            max = self.dup_count()?;
        } else if self.i >= self.p.len() {
            return Err(RegexError::Invalid);
        }
        match self.p.get(self.i) {
            Some(b'}') => self.i += 1,
            _ => return Err(RegexError::Invalid),
        }
        self.count(1)?; // leading dummy
        self.count(min.saturating_mul(r))?;
        match max {
            None => {
                self.count(r.saturating_add(1))?;
            }
            Some(max) => {
                if max < min {
                    return Err(RegexError::Invalid);
                }
                self.count(1)?;
                self.count((max - min).saturating_mul(r.saturating_add(1)))?;
            }
        }
        let min32 = u32::try_from(min).map_err(|_| RegexError::Space)?;
        let max32 = match max {
            None => None,
            Some(m) => Some(u32::try_from(m).map_err(|_| RegexError::Space)?),
        };
        Ok(Node::Repeat(Box::new(atom), min32, max32))
    }

    /// A run of digits in a brace (`None` when there is none, error at the end of the pattern).
    fn dup_count(&mut self) -> PResult<Option<u64>> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(c) = self.p.get(self.i).filter(|c| c.is_ascii_digit()) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .filter(|v| *v <= i64::MAX as u64)
                .ok_or(RegexError::Invalid)?;
            self.i += 1;
        }
        if self.i == start {
            match self.p.get(self.i) {
                None => return Err(RegexError::Invalid),
                Some(b',' | b'}') => return Ok(None),
                Some(_) => return Err(RegexError::Invalid),
            }
        }
        Ok(Some(v))
    }

    fn atom(&mut self) -> PResult<Option<Node>> {
        let (tok, next) = self.peek()?;
        Ok(Some(match tok {
            Tok::Any => {
                self.i = next;
                self.count(1)?;
                Node::Any
            }
            Tok::Ord(c) => {
                self.i = next;
                self.count(1)?;
                Node::Byte(c)
            }
            Tok::GroupOpen => {
                self.i = next;
                let k = self.ngroups;
                self.ngroups = self.ngroups.checked_add(1).ok_or(RegexError::Space)?;
                self.count(1)?;
                let inner = self.disjunction()?;
                if !self.eat(Tok::GroupClose)? {
                    return Err(RegexError::Invalid);
                }
                self.count(1)?;
                Node::Group(k, Box::new(inner))
            }
            Tok::BracketOpen(neg) => {
                self.i = next;
                self.at_bracket_start = true;
                let set = self.bracket(neg)?;
                self.count(1)?;
                Node::Set(Box::new(set))
            }
            _ => return Ok(None),
        }))
    }

    /// The next token inside a bracket expression.
    fn btok(&mut self) -> PResult<BTok> {
        let Some(&c) = self.p.get(self.i) else {
            return Err(RegexError::Invalid);
        };
        self.i += 1;
        let at_start = self.at_bracket_start;
        self.at_bracket_start = false;
        Ok(match c {
            b'-' => BTok::Dash,
            b'[' => match self.p.get(self.i) {
                None => return Err(RegexError::Invalid),
                Some(&k @ (b'.' | b':' | b'=')) => {
                    self.i += 1;
                    let start = self.i;
                    while self.p.get(self.i).is_some_and(|&x| x != k) {
                        self.i += 1;
                    }
                    let name = self.p[start..self.i].to_vec();
                    if self.p.get(self.i) != Some(&k) || self.p.get(self.i + 1) != Some(&b']') {
                        return Err(RegexError::Invalid);
                    }
                    self.i += 2;
                    match k {
                        b'.' => BTok::Coll(name),
                        b':' => BTok::Class(name),
                        _ => BTok::Equiv(name),
                    }
                }
                Some(_) => BTok::Ord(b'['),
            },
            b']' if !at_start => BTok::End,
            c => BTok::Ord(c),
        })
    }

    fn bracket(&mut self, neg: bool) -> PResult<ByteSet> {
        let mut chars = ByteSet::empty();
        let mut ranges: Vec<(i8, i8)> = Vec::new();
        let mut classes = ByteSet::empty();
        let mut equiv = ByteSet::empty();
        let mut last = Last::None;
        // the first token: a character or a dash is a plain character
        let mut pending: Option<BTok> = None;
        match self.btok()? {
            BTok::Ord(c) => last = Last::Char(c),
            BTok::Dash => last = Last::Char(b'-'),
            other => pending = Some(other),
        }
        loop {
            let t = match pending.take() {
                Some(t) => t,
                None => self.btok()?,
            };
            match t {
                BTok::End => break,
                BTok::Coll(name) => {
                    let c = lookup_collate(&name).ok_or(RegexError::Invalid)?;
                    chars.insert(c);
                    if let Last::Char(l) = last {
                        chars.insert(l);
                    }
                    last = Last::Char(c);
                }
                BTok::Equiv(name) => {
                    if let Last::Char(l) = last {
                        chars.insert(l);
                    }
                    last = Last::Class;
                    let c = lookup_collate(&name).ok_or(RegexError::Invalid)?;
                    equiv.insert(c.to_ascii_lowercase());
                }
                BTok::Class(name) => {
                    if let Last::Char(l) = last {
                        chars.insert(l);
                    }
                    last = Last::Class;
                    classes.union(&class_set(&name).ok_or(RegexError::Invalid)?);
                }
                BTok::Ord(c) => {
                    if let Last::Char(l) = last {
                        chars.insert(l);
                    }
                    last = Last::Char(c);
                }
                BTok::Dash => {
                    let t2 = self.btok()?;
                    if let BTok::End = t2 {
                        if let Last::Char(l) = last {
                            chars.insert(l);
                        }
                        last = Last::Char(b'-');
                        break;
                    }
                    match last {
                        Last::Char(l) => {
                            let r = match t2 {
                                BTok::Ord(r) => r,
                                BTok::Dash => b'-',
                                _ => return Err(RegexError::Invalid),
                            };
                            let (l, r) = (l as i8, r as i8);
                            if l > r {
                                return Err(RegexError::Invalid);
                            }
                            ranges.push((l, r));
                            last = Last::None;
                        }
                        _ => return Err(RegexError::Invalid),
                    }
                }
            }
        }
        if let Last::Char(l) = last {
            chars.insert(l);
        }
        let mut set = ByteSet::empty();
        for b in 0..=255u8 {
            let sb = b as i8;
            let m = chars.contains(b)
                || ranges.iter().any(|&(l, r)| l <= sb && sb <= r)
                || classes.contains(b)
                || equiv.contains(b.to_ascii_lowercase());
            if m != neg {
                set.insert(b);
            }
        }
        Ok(set)
    }
}

// ---------------------------------------------------------------------------------------------
// program

#[derive(Clone, Copy)]
enum Inst {
    Byte(u8, u32),
    Any(u32),
    Set(u32, u32),
    LineBegin(u32),
    LineEnd(u32),
    SubBegin(u32, u32),
    SubEnd(u32, u32),
    /// Explore `.0` then `.1`, keep the longer match.
    Alt(u32, u32),
    /// Greedy repeat: body `.0`, continue `.1` only if the body found no match.
    Repeat(u32, u32),
    Accept,
}

pub(crate) struct Prog {
    insts: Vec<Inst>,
    sets: Vec<ByteSet>,
    start: u32,
    ngroups: usize,
    /// Bytes a match can start with, when every match consumes at least one byte.
    first: Option<ByteSet>,
}

struct Compiler {
    insts: Vec<Inst>,
    sets: Vec<ByteSet>,
}

impl Compiler {
    fn push(&mut self, i: Inst) -> u32 {
        self.insts.push(i);
        (self.insts.len() - 1) as u32
    }

    /// Compile `n` so that it continues at `next`; returns its entry.
    fn compile(&mut self, n: &Node, next: u32) -> u32 {
        stacker::maybe_grow(32 * 1024, 1024 * 1024, || match n {
            Node::Empty => next,
            Node::Byte(c) => self.push(Inst::Byte(*c, next)),
            Node::Any => self.push(Inst::Any(next)),
            Node::Set(s) => {
                let k = self.sets.len() as u32;
                self.sets.push((**s).clone());
                self.push(Inst::Set(k, next))
            }
            Node::LineBegin => self.push(Inst::LineBegin(next)),
            Node::LineEnd => self.push(Inst::LineEnd(next)),
            Node::Group(k, inner) => {
                let end = self.push(Inst::SubEnd(*k, next));
                let body = self.compile(inner, end);
                self.push(Inst::SubBegin(*k, body))
            }
            Node::Concat(items) => {
                let mut cur = next;
                for it in items.iter().rev() {
                    cur = self.compile(it, cur);
                }
                cur
            }
            Node::Alt(l, r) => {
                let li = self.compile(l, next);
                let ri = self.compile(r, next);
                self.push(Inst::Alt(li, ri))
            }
            Node::Star(inner) => self.star(inner, next),
            Node::Plus(inner) => {
                let rep = self.push(Inst::Repeat(u32::MAX, next));
                let body = self.compile(inner, rep);
                if let Some(Inst::Repeat(b, _)) = self.insts.get_mut(rep as usize) {
                    *b = body;
                }
                body
            }
            Node::Opt(inner) => {
                let body = self.compile(inner, next);
                self.push(Inst::Repeat(body, next))
            }
            Node::Repeat(inner, min, max) => {
                let mut cur = match max {
                    None => self.star(inner, next),
                    Some(max) => {
                        let mut cur = next;
                        for _ in *min..*max {
                            let body = self.compile(inner, cur);
                            cur = self.push(Inst::Repeat(body, next));
                        }
                        cur
                    }
                };
                for _ in 0..*min {
                    cur = self.compile(inner, cur);
                }
                cur
            }
        })
    }

    fn star(&mut self, inner: &Node, next: u32) -> u32 {
        let rep = self.push(Inst::Repeat(u32::MAX, next));
        let body = self.compile(inner, rep);
        if let Some(Inst::Repeat(b, _)) = self.insts.get_mut(rep as usize) {
            *b = body;
        }
        rep
    }
}

/// First-byte analysis: (bytes a match can start with, whether it can be empty).
fn first_bytes(n: &Node) -> (ByteSet, bool) {
    stacker::maybe_grow(32 * 1024, 1024 * 1024, || match n {
        Node::Empty | Node::LineBegin | Node::LineEnd => (ByteSet::empty(), true),
        Node::Byte(c) => {
            let mut s = ByteSet::empty();
            s.insert(*c);
            (s, false)
        }
        Node::Any => (ByteSet::all_but_nul(), false),
        Node::Set(s) => ((**s).clone(), false),
        Node::Group(_, inner) | Node::Plus(inner) => first_bytes(inner),
        Node::Star(inner) | Node::Opt(inner) => (first_bytes(inner).0, true),
        Node::Repeat(inner, min, _) => {
            let (s, e) = first_bytes(inner);
            (s, e || *min == 0)
        }
        Node::Concat(items) => {
            let mut set = ByteSet::empty();
            for it in items {
                let (s, e) = first_bytes(it);
                set.union(&s);
                if !e {
                    return (set, false);
                }
            }
            (set, true)
        }
        Node::Alt(l, r) => {
            let (mut s1, e1) = first_bytes(l);
            let (s2, e2) = first_bytes(r);
            s1.union(&s2);
            (s1, e1 || e2)
        }
    })
}

pub(crate) fn compile(pattern: &str) -> Result<Prog, RegexError> {
    let mut p = Parser {
        p: pattern.as_bytes(),
        i: 0,
        ngroups: 0,
        states: 0,
        at_bracket_start: false,
    };
    let node = p.parse()?;
    let mut c = Compiler {
        insts: Vec::new(),
        sets: Vec::new(),
    };
    let accept = c.push(Inst::Accept);
    let start = c.compile(&node, accept);
    let (fs, nullable) = first_bytes(&node);
    Ok(Prog {
        insts: c.insts,
        sets: c.sets,
        start,
        ngroups: p.ngroups as usize,
        first: if nullable { None } else { Some(fs) },
    })
}

// ---------------------------------------------------------------------------------------------
// executor (libstdc++'s DFS _Executor, on an explicit stack)

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sub {
    pub first: usize,
    pub second: usize,
    pub matched: bool,
}

const UNSET: usize = usize::MAX;

impl Sub {
    const NONE: Sub = Sub {
        first: UNSET,
        second: UNSET,
        matched: false,
    };
}

enum Task {
    Visit(u32),
    RestorePos(usize),
    RestoreFirst(u32, usize),
    RestoreSub(u32, Sub),
    AltRight(u32),
    AltJoin(bool),
    RepeatNext(u32),
    RestoreRep(u32, (usize, u32)),
    DecRep(u32),
}

#[derive(Clone, Copy, Default)]
struct Flags {
    prev_avail: bool,
    not_null: bool,
    continuous: bool,
}

struct Exec<'a> {
    prog: &'a Prog,
    s: &'a [u8],
    cur: Vec<Sub>,
    best: Vec<Sub>,
    rep: Vec<(usize, u32)>,
    stack: Vec<Task>,
    /// Steps left before giving up.
    budget: u64,
}

impl<'a> Exec<'a> {
    fn new(prog: &'a Prog, s: &'a [u8]) -> Exec<'a> {
        Exec {
            prog,
            s,
            cur: vec![Sub::NONE; prog.ngroups],
            best: vec![Sub::NONE; prog.ngroups],
            rep: vec![(0, 0); prog.insts.len()],
            stack: Vec::new(),
            budget: 200_000_000u64.saturating_add((s.len() as u64).saturating_mul(1000)),
        }
    }

    /// One `_M_main_dispatch` from `begin`: returns whether a match was found (in `best`).
    fn run(&mut self, begin: usize, exact: bool, flags: Flags) -> Result<bool, RegexError> {
        let prog = self.prog;
        let s = self.s;
        let end = s.len();
        let mut pos = begin;
        let mut has_sol = false;
        let mut sol_pos: Option<usize> = None;
        let mut dirty = false;
        self.stack.clear();
        self.stack.push(Task::Visit(prog.start));
        while let Some(task) = self.stack.pop() {
            if self.budget == 0 {
                return Err(RegexError::TooComplex);
            }
            self.budget -= 1;
            match task {
                Task::Visit(i) => match prog.insts.get(i as usize).copied() {
                    None => {}
                    Some(Inst::Byte(c, n)) if pos < end && s[pos] == c => {
                        self.stack.push(Task::RestorePos(pos));
                        pos += 1;
                        self.stack.push(Task::Visit(n));
                    }
                    Some(Inst::Any(n)) if pos < end && s[pos] != 0 => {
                        self.stack.push(Task::RestorePos(pos));
                        pos += 1;
                        self.stack.push(Task::Visit(n));
                    }
                    Some(Inst::Set(k, n))
                        if pos < end
                            && prog
                                .sets
                                .get(k as usize)
                                .is_some_and(|set| set.contains(s[pos])) =>
                    {
                        self.stack.push(Task::RestorePos(pos));
                        pos += 1;
                        self.stack.push(Task::Visit(n));
                    }
                    Some(Inst::LineBegin(n)) if pos == begin && !flags.prev_avail => {
                        self.stack.push(Task::Visit(n));
                    }
                    Some(Inst::LineEnd(n)) if pos == end => {
                        self.stack.push(Task::Visit(n));
                    }
                    Some(
                        Inst::Byte(..)
                        | Inst::Any(_)
                        | Inst::Set(..)
                        | Inst::LineBegin(_)
                        | Inst::LineEnd(_),
                    ) => {}
                    Some(Inst::SubBegin(k, n)) => {
                        if let Some(sub) = self.cur.get_mut(k as usize) {
                            self.stack.push(Task::RestoreFirst(k, sub.first));
                            sub.first = pos;
                        }
                        self.stack.push(Task::Visit(n));
                    }
                    Some(Inst::SubEnd(k, n)) => {
                        if let Some(sub) = self.cur.get_mut(k as usize) {
                            self.stack.push(Task::RestoreSub(k, *sub));
                            sub.second = pos;
                            sub.matched = true;
                        }
                        self.stack.push(Task::Visit(n));
                    }
                    Some(Inst::Alt(l, r)) => {
                        self.stack.push(Task::AltRight(r));
                        self.stack.push(Task::Visit(l));
                    }
                    Some(Inst::Repeat(body, next)) => {
                        self.stack.push(Task::RepeatNext(next));
                        // _M_rep_once_more
                        if let Some(rc) = self.rep.get_mut(i as usize) {
                            let saved = *rc;
                            if rc.1 == 0 || rc.0 != pos {
                                *rc = (pos, 1);
                                self.stack.push(Task::RestoreRep(i, saved));
                                self.stack.push(Task::Visit(body));
                            } else if rc.1 < 2 {
                                rc.1 += 1;
                                self.stack.push(Task::DecRep(i));
                                self.stack.push(Task::Visit(body));
                            }
                        }
                    }
                    Some(Inst::Accept) => {
                        has_sol = if exact { pos == end } else { true };
                        if pos == begin && flags.not_null {
                            has_sol = false;
                        }
                        if has_sol && sol_pos.is_none_or(|sp| sp < pos) {
                            sol_pos = Some(pos);
                            self.best.clone_from(&self.cur);
                            // nothing can beat this any more: stop (the results are final)
                            if exact || pos == end {
                                dirty = true;
                                break;
                            }
                        }
                    }
                },
                Task::RestorePos(p) => pos = p,
                Task::RestoreFirst(k, f) => {
                    if let Some(sub) = self.cur.get_mut(k as usize) {
                        sub.first = f;
                    }
                }
                Task::RestoreSub(k, saved) => {
                    if let Some(sub) = self.cur.get_mut(k as usize) {
                        *sub = saved;
                    }
                }
                Task::AltRight(r) => {
                    self.stack.push(Task::AltJoin(has_sol));
                    has_sol = false;
                    self.stack.push(Task::Visit(r));
                }
                Task::AltJoin(h) => has_sol |= h,
                Task::RepeatNext(next) => {
                    if !has_sol {
                        self.stack.push(Task::Visit(next));
                    }
                }
                Task::RestoreRep(i, saved) => {
                    if let Some(rc) = self.rep.get_mut(i as usize) {
                        *rc = saved;
                    }
                }
                Task::DecRep(i) => {
                    if let Some(rc) = self.rep.get_mut(i as usize) {
                        rc.1 = rc.1.saturating_sub(1);
                    }
                }
            }
        }
        if dirty {
            // we left in the middle of the search: undo its state changes wholesale
            self.stack.clear();
            self.cur.iter_mut().for_each(|x| *x = Sub::NONE);
            self.rep.iter_mut().for_each(|x| *x = (0, 0));
        }
        Ok(sol_pos.is_some())
    }

    /// `std::regex_match` from the start of the string.
    fn full_match(&mut self) -> Result<Option<Vec<Sub>>, RegexError> {
        if self.run(0, true, Flags::default())? {
            Ok(Some(std::mem::take(&mut self.best)))
        } else {
            Ok(None)
        }
    }

    /// `std::regex_search` on `s[from..]` (`_M_search`).
    fn search(&mut self, from: usize, mut flags: Flags) -> Result<Option<Vec<Sub>>, RegexError> {
        let end = self.s.len();
        let mut begin = from;
        loop {
            let try_here = match &self.prog.first {
                Some(fs) => begin < end && fs.contains(self.s[begin]),
                None => true,
            };
            if try_here && self.run(begin, false, flags)? {
                let r = self.best.clone();
                self.best.iter_mut().for_each(|x| *x = Sub::NONE);
                return Ok(Some(r));
            }
            if flags.continuous || begin >= end {
                return Ok(None);
            }
            flags.prev_avail = true;
            begin += 1;
        }
    }
}

/// Capture groups of a full match of `s`, or `None`.
pub(crate) fn regex_match(prog: &Prog, s: &[u8]) -> Result<Option<Vec<Sub>>, RegexError> {
    Exec::new(prog, s).full_match()
}

/// All matches as `std::regex_iterator` finds them: (prefix start, groups) per match.
pub(crate) fn regex_split(prog: &Prog, s: &[u8]) -> Result<Vec<(usize, Vec<Sub>)>, RegexError> {
    let mut ex = Exec::new(prog, s);
    let end = s.len();
    let mut out = Vec::new();
    let mut flags = Flags::default();
    let Some(mut m) = ex.search(0, flags)? else {
        return Ok(out);
    };
    let mut prefix_first = 0usize;
    loop {
        let (mfirst, msecond) = match m.first() {
            Some(g) => (g.first, g.second),
            None => return Ok(out),
        };
        out.push((prefix_first, m));
        let mut start = msecond;
        prefix_first = msecond;
        if mfirst == msecond {
            if start >= end {
                return Ok(out);
            }
            let retry = Flags {
                not_null: true,
                continuous: true,
                ..flags
            };
            if let Some(m2) = ex.search(start, retry)? {
                m = m2;
                continue;
            }
            start += 1;
        }
        flags.prev_avail = true;
        match ex.search(start, flags)? {
            Some(m2) => m = m2,
            None => return Ok(out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cache and builtins

thread_local! {
    static CACHE: RefCell<FxHashMap<String, Rc<Result<Prog, RegexError>>>> =
        RefCell::new(FxHashMap::default());
}

fn cached(pattern: &str) -> Rc<Result<Prog, RegexError>> {
    if let Some(p) = CACHE.with(|c| c.borrow().get(pattern).cloned()) {
        return p;
    }
    let p = Rc::new(compile(pattern));
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 10_000 {
            c.clear();
        }
        c.insert(pattern.to_string(), p.clone());
    });
    p
}

fn regex_error(e: RegexError, pattern: &str, span: Span) -> EvalError {
    let msg = match e {
        RegexError::Invalid => format!("invalid regular expression '{pattern}'"),
        RegexError::Space => format!("memory limit exceeded by regular expression '{pattern}'"),
        RegexError::TooComplex => {
            format!("regular expression '{pattern}' needs too much backtracking on this input")
        }
    };
    EvalError::new(ErrorKind::InvalidRegex, msg, span)
}

fn sub_string(s: &[u8], g: &Sub) -> Value {
    if !g.matched {
        return Value::Null;
    }
    match s.get(g.first..g.second) {
        Some(b) => Value::string(String::from_utf8_lossy(b).into_owned()),
        None => Value::Null,
    }
}

fn with_prog<T>(
    ev: &mut Evaluator,
    a: &[Value],
    span: Span,
    f: impl FnOnce(&mut Evaluator, &Prog, &str) -> EvalResult<T>,
) -> EvalResult<T> {
    let re = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let prog = cached(re.as_str());
    match &*prog {
        Ok(p) => f(ev, p, re.as_str()),
        Err(e) => Err(regex_error(*e, re.as_str(), span)),
    }
}

fn prim_match(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    with_prog(ev, a, span, |ev, prog, re| {
        let s = ev.force_string(&arg(a, 1), span)?;
        let b = s.as_str().as_bytes();
        match regex_match(prog, b).map_err(|e| regex_error(e, re, span))? {
            None => Ok(Value::Null),
            Some(groups) => Ok(Value::list(
                groups.iter().skip(1).map(|g| sub_string(b, g)).collect(),
            )),
        }
    })
}

fn prim_split(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    with_prog(ev, a, span, |ev, prog, re| {
        let sv = arg(a, 1);
        let s: NixString = ev.force_string(&sv, span)?;
        let b = s.as_str().as_bytes();
        let matches = regex_split(prog, b).map_err(|e| regex_error(e, re, span))?;
        if matches.is_empty() {
            return Ok(Value::list(vec![Value::String(s)]));
        }
        let mut out = Vec::with_capacity(2 * matches.len() + 1);
        let mut last_end = 0usize;
        for (prefix_first, groups) in &matches {
            let (mfirst, msecond) = groups.first().map_or((0, 0), |g| (g.first, g.second));
            let prefix = b.get(*prefix_first..mfirst).unwrap_or(b"");
            out.push(Value::string(String::from_utf8_lossy(prefix).into_owned()));
            out.push(Value::list(
                groups.iter().skip(1).map(|g| sub_string(b, g)).collect(),
            ));
            last_end = msecond;
        }
        let suffix = b.get(last_end..).unwrap_or(b"");
        out.push(Value::string(String::from_utf8_lossy(suffix).into_owned()));
        Ok(Value::list(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(re: &str, s: &str) -> Result<Option<Vec<Option<String>>>, RegexError> {
        let p = compile(re)?;
        Ok(regex_match(&p, s.as_bytes())?.map(|g| {
            g.iter()
                .skip(1)
                .map(|x| {
                    x.matched.then(|| {
                        String::from_utf8_lossy(&s.as_bytes()[x.first..x.second]).into_owned()
                    })
                })
                .collect()
        }))
    }

    fn sp(re: &str, s: &str) -> Result<Vec<String>, RegexError> {
        let p = compile(re)?;
        let b = s.as_bytes();
        let ms = regex_split(&p, b)?;
        let mut out = Vec::new();
        if ms.is_empty() {
            return Ok(vec![s.to_string()]);
        }
        let mut last = 0;
        for (pf, g) in &ms {
            out.push(String::from_utf8_lossy(&b[*pf..g[0].first]).into_owned());
            let groups: Vec<String> = g
                .iter()
                .skip(1)
                .map(|x| {
                    if x.matched {
                        format!("{:?}", String::from_utf8_lossy(&b[x.first..x.second]))
                    } else {
                        "null".into()
                    }
                })
                .collect();
            out.push(format!("[{}]", groups.join(" ")));
            last = g[0].second;
        }
        out.push(String::from_utf8_lossy(&b[last..]).into_owned());
        Ok(out)
    }

    fn some(v: &[&str]) -> Option<Vec<Option<String>>> {
        Some(v.iter().map(|s| Some(s.to_string())).collect())
    }

    #[test]
    fn posix_semantics() {
        assert_eq!(m("(a|ab)(c|bcd)(d*)", "abcd"), Ok(some(&["a", "bcd", ""])));
        assert_eq!(
            sp("(a|ab)", "abc"),
            Ok(vec!["".into(), "[\"ab\"]".into(), "c".into()])
        );
        assert_eq!(
            sp("a*", "baaac"),
            Ok(vec!["", "[]", "b", "[]", "", "[]", "c", "[]", ""]
                .into_iter()
                .map(String::from)
                .collect())
        );
        assert_eq!(m("((a)|b)*", "ab"), Ok(some(&["b", "a"])));
        assert_eq!(m("(a*)*", ""), Ok(some(&[""])));
        assert_eq!(m("(a*)+", "b"), Ok(None));
        assert_eq!(m("(a|ab)(bc|c)?", "abc"), Ok(some(&["a", "bc"])));
        assert_eq!(m("(.)", "é"), Ok(None));
        assert_eq!(m("(..)", "é"), Ok(some(&["é"])));
    }

    #[test]
    fn syntax() {
        assert_eq!(m("\\d", "d"), Err(RegexError::Invalid));
        assert_eq!(m("[]a]*", "]a]"), Ok(Some(vec![])));
        assert_eq!(m("[^]a]*", "bcd"), Ok(Some(vec![])));
        assert_eq!(m("[a-c-e]", "a"), Err(RegexError::Invalid));
        assert_eq!(m("[a-c-]+", "a-"), Ok(Some(vec![])));
        assert_eq!(m("[--0]+", "-./0"), Ok(Some(vec![])));
        assert_eq!(m("[[:alpha:]-z]", "a"), Err(RegexError::Invalid));
        assert_eq!(m("[[.hyphen.]]", "-"), Ok(Some(vec![])));
        assert_eq!(m("[[=a=]]", "A"), Ok(Some(vec![])));
        assert_eq!(m("a{,3}", "aa"), Err(RegexError::Invalid));
        assert_eq!(m("a{2,}", "aaaa"), Ok(Some(vec![])));
        assert_eq!(m("a{3,2}", "aa"), Err(RegexError::Invalid));
        assert_eq!(m("*a", "a"), Err(RegexError::Invalid));
        assert_eq!(m("a**", "aa"), Ok(Some(vec![])));
        assert_eq!(m(")", ")"), Err(RegexError::Invalid));
        assert_eq!(m("x\\", "x"), Err(RegexError::Invalid));
        assert_eq!(m("a{1000}{1000}", "a"), Err(RegexError::Space));
        assert_eq!(m("[]", "]"), Err(RegexError::Invalid));
    }

    #[test]
    fn deep_and_long_inputs_do_not_overflow() {
        let s = "a".repeat(200_000);
        assert_eq!(m("(a*)", &s).map(|r| r.is_some()), Ok(true));
        assert_eq!(m("(a|b)*", &s).map(|r| r.is_some()), Ok(true));
        let deep = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
        assert!(compile(&deep).is_ok());
    }
}
