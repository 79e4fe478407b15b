//! Conversions to and from data formats, byte-compatible with Nix 2.8: `toJSON` (and
//! [`value_to_json`], which `buildit eval --json` uses so that its output equals
//! `nix-instantiate --eval --strict --json`), `fromJSON`, `fromTOML` and `toXML`.
//!
//! Nix 2.8 details reproduced here:
//! - `toJSON`: sets with `__toString` become the (uncopied) string it returns, sets with
//!   `outPath` become the JSON of that value, other sets are objects with sorted keys; paths
//!   are copied to the store; floats print like C++ `ostream << double` (`%g`, 6 significant
//!   digits: `0.1`, `1e+20`, `inf`); strings escape only `"`, `\`, and control characters
//!   (`\n \r \t` by name, others as `\u00XX`), leaving `/`, DEL and non-ASCII as they are.
//!   The result keeps the context of every string it contains.
//! - `fromJSON` (nlohmann/json): integers that fit `i64` are integers, larger positive ones up
//!   to `u64::MAX` wrap around into `i64` as in Nix, anything else is a float; a float that
//!   overflows is an error; duplicate keys: the last wins. The parser is iterative, so deeply
//!   nested input cannot overflow the stack.
//! - `fromTOML`: dates and times are an error ("Dates and times are not supported");
//!   out-of-range numbers are clamped (`i64::MAX`, `f64::MAX`, ...) as toml11's C++ streams do.
//! - `toXML`: Nix's exact element layout, indentation and attribute escaping.

use super::strings::{arg, coerce_no_copy, force_string_no_ctx};
use crate::error::{ErrorKind, EvalError};
use crate::eval::CoerceMode;
use crate::ir;
use crate::print::format_float_g;
use crate::symbol::Symbol;
use crate::value::{Attrs, Context, EvalResult, List, NixString, PrimOp, Value};
use crate::Evaluator;
use buildit_lang::Span;
use rustc_hash::FxHashSet;
use std::fmt::Write as _;

pub(crate) fn primops() -> Vec<PrimOp> {
    vec![
        PrimOp { name: "toJSON", arity: 1, func: to_json, doc: "toJSON e: the JSON text of e (sets with outPath/__toString as strings, paths copied to the store)" },
        PrimOp { name: "fromJSON", arity: 1, func: from_json, doc: "fromJSON s: the value described by JSON text s" },
        PrimOp { name: "fromTOML", arity: 1, func: from_toml, doc: "fromTOML s: the set described by TOML text s (dates and times are not supported)" },
        PrimOp { name: "toXML", arity: 1, func: to_xml, doc: "toXML e: the XML representation of e, as Nix writes it" },
    ]
}

const RED_ZONE: usize = 64 * 1024;
const STACK_SEGMENT: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// toJSON

/// The JSON text of `v`, forcing it deeply, exactly as Nix 2.8's `toJSON` (and
/// `nix-instantiate --eval --strict --json`) prints it. The contexts of the strings met are
/// added to `ctx`.
pub fn value_to_json(
    ev: &mut Evaluator,
    v: &Value,
    span: Span,
    ctx: &mut Context,
) -> EvalResult<String> {
    let mut out = String::new();
    write_json(ev, v, span, &mut out, ctx)?;
    Ok(out)
}

/// Nix's JSON string escaping.
pub(crate) fn escape_json(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut plain = 0;
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let esc: Option<&str> = match c {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(s.get(plain..i).unwrap_or(""));
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or(""));
    out.push('"');
}

fn write_json(
    ev: &mut Evaluator,
    v: &Value,
    span: Span,
    out: &mut String,
    ctx: &mut Context,
) -> EvalResult<()> {
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || {
        let v = ev.force(v)?;
        match &v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float_g(*f)),
            Value::String(s) => {
                ctx.union(s.context());
                escape_json(s.as_str(), out);
            }
            Value::Path(_) => {
                let s = ev.coerce_to_string(&v, span, CoerceMode::Interpolation)?;
                ctx.union(s.context());
                escape_json(s.as_str(), out);
            }
            Value::Attrs(a) => {
                if let Some(f) = a.get(ev.sym.to_string) {
                    let f = f.clone();
                    let r = ev.apply(f, v.clone(), span)?;
                    let s = coerce_no_copy(ev, &r, span)?;
                    ctx.union(s.context());
                    escape_json(s.as_str(), out);
                    return Ok(());
                }
                if let Some(o) = a.get(ev.sym.out_path) {
                    let o = o.clone();
                    return write_json(ev, &o, span, out, ctx);
                }
                out.push('{');
                for (i, (k, x)) in a.iter_sorted().into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape_json(k.as_str(), out);
                    out.push(':');
                    write_json(ev, x, span, out, ctx)?;
                }
                out.push('}');
            }
            Value::List(l) => {
                out.push('[');
                for (i, x) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json(ev, x, span, out, ctx)?;
                }
                out.push(']');
            }
            other => {
                return Err(EvalError::new(
                    ErrorKind::Json,
                    format!("cannot convert {} to JSON", other.describe()),
                    span,
                ))
            }
        }
        Ok(())
    })
}

fn to_json(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let mut ctx = Context::empty();
    let s = value_to_json(ev, &arg(a, 0), span, &mut ctx)?;
    Ok(Value::String(NixString::new(s, ctx)))
}

// ---------------------------------------------------------------------------------------------
// fromJSON

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
    span: Span,
}

enum Frame {
    List(Vec<Value>),
    Object(Vec<(Symbol, Value)>, Symbol),
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> EvalError {
        // nlohmann reports the 1-based column of the last character read
        let upto = &self.s[..self.pos.min(self.s.len())];
        let line = upto.iter().filter(|&&c| c == b'\n').count() + 1;
        let col = upto.len() - upto.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        EvalError::new(
            ErrorKind::Json,
            format!(
                "[json.exception.parse_error.101] parse error at line {line}, column {col}: syntax error while parsing value - {what}"
            ),
            self.span,
        )
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.s.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn token_name(&self) -> String {
        match self.peek() {
            None => "unexpected end of input".into(),
            Some(c) => format!("unexpected '{}'", c as char),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> EvalResult<Value> {
        if self.s.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            // consume what matches, as nlohmann does, for the column
            let mut k = 0;
            while k < word.len() && self.s.get(self.pos + k) == word.get(k) {
                k += 1;
            }
            self.pos += k + 1;
            Err(self.error("invalid literal"))
        }
    }

    fn hex4(&mut self) -> EvalResult<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.peek().ok_or_else(|| {
                self.error("invalid string: '\\u' must be followed by 4 hex digits")
            })?;
            let d = (c as char).to_digit(16).ok_or_else(|| {
                self.error("invalid string: '\\u' must be followed by 4 hex digits")
            })?;
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// A string; `self.pos` is at the opening quote.
    fn string(&mut self) -> EvalResult<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&String::from_utf8_lossy(&self.s[start..self.pos]));
            match self.peek() {
                None => {
                    return Err(self.error("invalid string: missing closing quote"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek();
                    self.pos += 1;
                    match c {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.peek() == Some(b'\\')
                                    && self.s.get(self.pos + 1) == Some(&b'u')
                                {
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(self.error("invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF"));
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    return Err(self.error("invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF"));
                                }
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.error("invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF"));
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ => {
                            return Err(
                                self.error("invalid string: forbidden character after backslash")
                            )
                        }
                    }
                }
                Some(c) => {
                    self.pos += 1;
                    return Err(self.error(&format!(
                        "invalid string: control character U+{:04X} must be escaped",
                        c
                    )));
                }
            }
        }
    }

    fn number(&mut self) -> EvalResult<Value> {
        let start = self.pos;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos - s
        };
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(c) if c.is_ascii_digit() => {
                digits(self);
            }
            _ => {
                self.pos += 1;
                return Err(self.error("invalid number; expected digit after '-'"));
            }
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            self.pos += 1;
            if digits(self) == 0 {
                self.pos += 1;
                return Err(self.error("invalid number; expected digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_float = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos += 1;
                return Err(self.error("invalid number; expected digit after exponent sign"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("0");
        if !is_float {
            if neg {
                if let Ok(i) = text.parse::<i64>() {
                    return Ok(Value::Int(i));
                }
            } else if let Ok(u) = text.parse::<u64>() {
                // Nix stores nlohmann's unsigned integers in an i64: they wrap around
                return Ok(Value::Int(u as i64));
            }
        }
        let f: f64 = text.parse().unwrap_or(f64::NAN);
        if f.is_infinite() {
            return Err(EvalError::new(
                ErrorKind::Json,
                format!("[json.exception.out_of_range.406] number overflow parsing '{text}'"),
                self.span,
            ));
        }
        Ok(Value::Float(f))
    }

    /// Parse a whole document.
    fn parse(&mut self) -> EvalResult<Value> {
        let mut stack: Vec<Frame> = Vec::new();
        'value: loop {
            self.skip_ws();
            // a value starts here
            let mut v = match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Value::attrs(Attrs::new())
                    } else {
                        let k = self.key()?;
                        stack.push(Frame::Object(Vec::new(), k));
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        Value::list(Vec::new())
                    } else {
                        stack.push(Frame::List(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'"') => Value::string(self.string()?),
                Some(b't') => self.literal(b"true", Value::Bool(true))?,
                Some(b'f') => self.literal(b"false", Value::Bool(false))?,
                Some(b'n') => self.literal(b"null", Value::Null)?,
                Some(c) if c == b'-' || c.is_ascii_digit() => self.number()?,
                _ => {
                    let t = self.token_name();
                    self.pos += 1;
                    return Err(self.error(&format!("{t}; expected '[', '{{', or a literal")));
                }
            };
            // the value is complete: attach it to the enclosing containers
            loop {
                let Some(top) = stack.last_mut() else {
                    self.skip_ws();
                    if self.pos < self.s.len() {
                        let t = self.token_name();
                        self.pos += 1;
                        return Err(self.error(&format!("{t}; expected end of input")));
                    }
                    return Ok(v);
                };
                self.skip_ws();
                match top {
                    Frame::List(items) => {
                        items.push(v);
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                let Some(Frame::List(items)) = stack.pop() else {
                                    return Err(self.error("internal error"));
                                };
                                v = Value::list(items);
                            }
                            _ => {
                                let t = self.token_name();
                                self.pos += 1;
                                return Err(self.error(&format!("{t}; expected ']'")));
                            }
                        }
                    }
                    Frame::Object(entries, key) => {
                        entries.push((*key, v));
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                let k = self.key()?;
                                if let Some(Frame::Object(_, key)) = stack.last_mut() {
                                    *key = k;
                                }
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                let Some(Frame::Object(entries, _)) = stack.pop() else {
                                    return Err(self.error("internal error"));
                                };
                                // duplicate keys: the last one wins, as in Nix
                                v = Value::attrs(Attrs::from_unsorted(entries));
                            }
                            _ => {
                                let t = self.token_name();
                                self.pos += 1;
                                return Err(self.error(&format!("{t}; expected '}}'")));
                            }
                        }
                    }
                }
            }
        }
    }

    /// `"key" :` of an object member.
    fn key(&mut self) -> EvalResult<Symbol> {
        if self.peek() != Some(b'"') {
            let t = self.token_name();
            self.pos += 1;
            return Err(self.error(&format!("{t}; expected string literal")));
        }
        let k = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            let t = self.token_name();
            self.pos += 1;
            return Err(self.error(&format!("{t}; expected ':'")));
        }
        self.pos += 1;
        Ok(Symbol::intern(&k))
    }
}

/// Parse JSON text into a value (Nix 2.8 `fromJSON` semantics).
pub fn parse_json(text: &str, span: Span) -> EvalResult<Value> {
    JsonParser {
        s: text.as_bytes(),
        pos: 0,
        span,
    }
    .parse()
}

fn from_json(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = force_string_no_ctx(ev, &arg(a, 0), span)?;
    parse_json(s.as_str(), span).map_err(|e| e.add_trace(span, "decoding a JSON string"))
}

// ---------------------------------------------------------------------------------------------
// fromTOML

fn toml_error(msg: impl std::fmt::Display, span: Span) -> EvalError {
    EvalError::new(
        ErrorKind::Invalid,
        format!("while parsing a TOML string: {msg}"),
        span,
    )
}

/// How Nix's toml11 reads numbers that do not fit: C++ streams clamp them to the largest
/// representable value (`i64::MAX`, `f64::MAX`, ...), where the `toml` crate errs or gives
/// `inf`.
#[derive(Clone, Copy)]
struct TomlClamp {
    /// Map infinite floats to ±`f64::MAX` (the text has no `inf` literal at all).
    infinities: bool,
}

fn toml_to_value(v: toml::Value, clamp: TomlClamp, span: Span) -> EvalResult<Value> {
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || {
        Ok(match v {
            toml::Value::String(s) => Value::string(s),
            toml::Value::Integer(i) => Value::Int(i),
            toml::Value::Float(f) if clamp.infinities && f.is_infinite() => {
                Value::Float(if f > 0.0 { f64::MAX } else { f64::MIN })
            }
            toml::Value::Float(f) => Value::Float(f),
            toml::Value::Boolean(b) => Value::Bool(b),
            toml::Value::Datetime(_) => {
                return Err(toml_error("Dates and times are not supported", span))
            }
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for x in items {
                    out.push(toml_to_value(x, clamp, span)?);
                }
                Value::List(List::new(out))
            }
            toml::Value::Table(t) => table_to_value(t, clamp, span)?,
        })
    })
}

fn table_to_value(t: toml::Table, clamp: TomlClamp, span: Span) -> EvalResult<Value> {
    let mut entries = Vec::with_capacity(t.len());
    for (k, x) in t {
        entries.push((Symbol::intern(&k), toml_to_value(x, clamp, span)?));
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

/// The replacement text for an out-of-range number literal the `toml` crate rejected (at
/// byte `start` of `text`), as toml11 would have read it; `None` if it is not such a literal.
fn clamped_number(text: &str, start: usize, message: &str) -> Option<(usize, &'static str)> {
    let rest = text.get(start..)?;
    let len = rest
        .bytes()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.')))
        .unwrap_or(rest.len());
    let token = rest.get(..len)?;
    let negative = token.starts_with('-');
    match message {
        "number too large to fit in target type" => Some((len, "9223372036854775807")),
        "number too small to fit in target type" => Some((len, "-9223372036854775808")),
        "invalid floating-point number" => {
            let f: f64 = token.replace('_', "").parse().ok()?;
            if !f.is_infinite() {
                return None;
            }
            Some((
                len,
                if negative {
                    "-1.7976931348623157e308"
                } else {
                    "1.7976931348623157e308"
                },
            ))
        }
        _ => None,
    }
}

fn from_toml(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let s = force_string_no_ctx(ev, &arg(a, 0), span)?;
    let clamp = TomlClamp {
        infinities: !s.as_str().contains("inf"),
    };
    let mut text = s.as_str().to_string();
    // each round fixes one out-of-range literal
    for _ in 0..10_000 {
        match text.parse::<toml::Table>() {
            Ok(table) => return table_to_value(table, clamp, span),
            Err(e) => {
                let fix = e.span().and_then(|r| {
                    clamped_number(&text, r.start, e.message()).map(|f| (r.start, f))
                });
                match fix {
                    Some((start, (len, with))) => text.replace_range(start..start + len, with),
                    None => return Err(toml_error(e.message(), span)),
                }
            }
        }
    }
    Err(toml_error("too many out-of-range numbers", span))
}

// ---------------------------------------------------------------------------------------------
// toXML

const XML_LIMIT: usize = 1 << 30;

struct Xml {
    span: Span,
    out: String,
    ctx: Context,
    drvs_seen: FxHashSet<String>,
}

fn xml_escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' => out.push_str("&#xA;"),
            c => out.push(c),
        }
    }
}

impl Xml {
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            xml_escape_attr(v, &mut self.out);
            self.out.push('"');
        }
    }

    fn empty(&mut self, depth: usize, name: &str, attrs: &[(&str, &str)]) {
        self.indent(depth);
        self.tag(name, attrs);
        self.out.push_str(" />\n");
    }

    fn open(&mut self, depth: usize, name: &str, attrs: &[(&str, &str)]) {
        self.indent(depth);
        self.tag(name, attrs);
        self.out.push_str(">\n");
    }

    fn close(&mut self, depth: usize, name: &str) {
        self.indent(depth);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn attrs(&mut self, ev: &mut Evaluator, a: &Attrs, depth: usize) -> EvalResult<()> {
        for (k, x) in a.iter_sorted() {
            self.open(depth, "attr", &[("name", k.as_str())]);
            self.value(ev, x, depth + 1)?;
            self.close(depth, "attr");
        }
        Ok(())
    }

    fn value(&mut self, ev: &mut Evaluator, v: &Value, depth: usize) -> EvalResult<()> {
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || {
            // indentation makes the text quadratic in the nesting depth: refuse absurd sizes
            // rather than exhaust memory (Nix would try)
            if self.out.len() > XML_LIMIT {
                return Err(EvalError::new(
                    ErrorKind::Invalid,
                    format!("toXML: the XML text would exceed {XML_LIMIT} bytes"),
                    self.span,
                ));
            }
            let v = ev.force(v)?;
            match &v {
                Value::Int(i) => self.empty(depth, "int", &[("value", &i.to_string())]),
                Value::Bool(b) => self.empty(
                    depth,
                    "bool",
                    &[("value", if *b { "true" } else { "false" })],
                ),
                Value::String(s) => {
                    self.ctx.union(s.context());
                    self.empty(depth, "string", &[("value", s.as_str())]);
                }
                Value::Path(p) => self.empty(depth, "path", &[("value", &**p)]),
                Value::Null => self.empty(depth, "null", &[]),
                Value::Float(f) => self.empty(depth, "float", &[("value", &format_float_g(*f))]),
                Value::Attrs(a) => {
                    if ev.is_derivation(a)? {
                        let mut drv_path: Option<String> = None;
                        let mut out_path: Option<String> = None;
                        if let Some(d) = a.get(ev.sym.drv_path) {
                            let d = d.clone();
                            if let Value::String(s) = ev.force(&d)? {
                                drv_path = Some(s.as_str().to_string());
                            }
                        }
                        if let Some(o) = a.get(ev.sym.out_path) {
                            let o = o.clone();
                            if let Value::String(s) = ev.force(&o)? {
                                out_path = Some(s.as_str().to_string());
                            }
                        }
                        let mut xa: Vec<(&str, &str)> = Vec::new();
                        if let Some(d) = &drv_path {
                            xa.push(("drvPath", d));
                        }
                        if let Some(o) = &out_path {
                            xa.push(("outPath", o));
                        }
                        self.open(depth, "derivation", &xa);
                        let d = drv_path.unwrap_or_default();
                        if !d.is_empty() && self.drvs_seen.insert(d) {
                            self.attrs(ev, a, depth + 1)?;
                        } else {
                            self.empty(depth + 1, "repeated", &[]);
                        }
                        self.close(depth, "derivation");
                    } else {
                        self.open(depth, "attrs", &[]);
                        self.attrs(ev, a, depth + 1)?;
                        self.close(depth, "attrs");
                    }
                }
                Value::List(l) => {
                    self.open(depth, "list", &[]);
                    for x in l.iter() {
                        self.value(ev, x, depth + 1)?;
                    }
                    self.close(depth, "list");
                }
                Value::Lambda(c) => {
                    self.open(depth, "function", &[]);
                    let text = ev.sources.snippet(c.lambda.span).to_string();
                    match &c.lambda.param {
                        ir::Param::Ident => {
                            let name = leading_ident(&text);
                            self.empty(depth + 1, "varpat", &[("name", name)]);
                        }
                        ir::Param::Pattern {
                            fields,
                            ellipsis,
                            bind,
                        } => {
                            let bound = if *bind { pattern_bind_name(&text) } else { "" };
                            let mut xa: Vec<(&str, &str)> = Vec::new();
                            if *ellipsis {
                                xa.push(("ellipsis", "1"));
                            }
                            if !bound.is_empty() {
                                xa.push(("name", bound));
                            }
                            self.open(depth + 1, "attrspat", &xa);
                            let mut names: Vec<&str> =
                                fields.iter().map(|f| f.name.as_str()).collect();
                            names.sort_unstable();
                            for n in names {
                                self.empty(depth + 2, "attr", &[("name", n)]);
                            }
                            self.close(depth + 1, "attrspat");
                        }
                    }
                    self.close(depth, "function");
                }
                _ => self.empty(depth, "unevaluated", &[]),
            }
            Ok(())
        })
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'\'' || c == b'-'
}

/// The identifier a lambda's source text starts with (`x` in `x: …`, `args` in `args@{…}: …`).
fn leading_ident(text: &str) -> &str {
    let b = text.as_bytes();
    if !b.first().is_some_and(|c| is_ident_start(*c)) {
        return "";
    }
    let end = b.iter().position(|c| !is_ident_char(*c)).unwrap_or(b.len());
    text.get(..end).unwrap_or("")
}

/// The `@` name of a pattern lambda, written before (`args@{ … }`) or after (`{ … }@args`).
fn pattern_bind_name(text: &str) -> &str {
    let before = leading_ident(text);
    if !before.is_empty() {
        return before;
    }
    // skip the braces (nested braces, strings and comments included), then `@ name`
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    i += 1;
                    break;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    let rest = text.get(i.min(text.len())..).unwrap_or("");
    let rest = rest.trim_start();
    match rest.strip_prefix('@') {
        Some(r) => leading_ident(r.trim_start()),
        None => "",
    }
}

fn to_xml(ev: &mut Evaluator, a: &[Value], span: Span) -> EvalResult<Value> {
    let mut x = Xml {
        span,
        out: String::from("<?xml version='1.0' encoding='utf-8'?>\n<expr>\n"),
        ctx: Context::empty(),
        drvs_seen: FxHashSet::default(),
    };
    x.value(ev, &arg(a, 0), 1)?;
    x.out.push_str("</expr>\n");
    Ok(Value::String(NixString::new(x.out, x.ctx)))
}

#[cfg(test)]
mod tests {
    use super::super::strings::test_util::{check, check_err};

    #[test]
    fn to_json_like_nix() {
        check(&[
            (
                "builtins.toJSON [0.1 1.0 1.0e20 1.5e-7 123456789.123 (1.0 / 3) 100000.0 1000000.0 1.0e-5 0.0001 1234567.0]",
                r#""[0.1,1,1e+20,1.5e-07,1.23457e+08,0.333333,100000,1e+06,1e-05,0.0001,1.23457e+06]""#,
            ),
            (
                r#"builtins.toJSON (builtins.fromJSON "\"\\u0001\\u001f\\b\\f/\\\\\"")"#,
                r#""\"\\u0001\\u001f\\u0008\\u000c/\\\\\"""#,
            ),
            ("builtins.toJSON { outPath = 1; }", r#""1""#),
            (r#"builtins.toJSON { __toString = s: "y"; outPath = "z"; }"#, r#""\"y\"""#),
            ("builtins.toJSON { __toString = s: /foo; }", r#""\"/foo\"""#),
            (
                r#"builtins.toJSON { b = 1; a = 2; "@" = 3; Z = 4; }"#,
                r#""{\"@\":3,\"Z\":4,\"a\":2,\"b\":1}""#,
            ),
            ("builtins.toJSON [true false null {} []]", r#""[true,false,null,{},[]]""#),
            (
                "builtins.toJSON /t/a.txt",
                r#""\"/bld/store/00000000000000000000000000000000-a.txt\"""#,
            ),
        ]);
        check_err(&[
            ("builtins.toJSON (x: x)", "json"),
            ("builtins.toJSON { __toString = s: 1; }", "type-error"),
        ]);
    }

    #[test]
    fn from_json_like_nix() {
        check(&[
            (
                r#"builtins.fromJSON "9223372036854775807""#,
                "9223372036854775807",
            ),
            (
                r#"builtins.fromJSON "9223372036854775808""#,
                "-9223372036854775808",
            ),
            (r#"builtins.fromJSON "18446744073709551615""#, "-1"),
            (r#"builtins.fromJSON "18446744073709551616""#, "1.84467e+19"),
            (
                r#"builtins.fromJSON "-9223372036854775809""#,
                "-9.22337e+18",
            ),
            (r#"builtins.fromJSON "1e2""#, "100"),
            (r#"builtins.fromJSON "-0""#, "0"),
            (r#"builtins.fromJSON "-0.0""#, "-0"),
            (r#"builtins.fromJSON "{\"a\":1,\"a\":2}""#, "{ a = 2; }"),
            (r#"builtins.fromJSON " [1, 2] ""#, "[ 1 2 ]"),
            (r#"builtins.fromJSON "\"\\ud83d\\ude00\"""#, r#""😀""#),
            (r#"builtins.fromJSON "[0.1, 1e-400]""#, "[ 0.1 0 ]"),
            (
                r#"builtins.fromJSON "{\"x\": [1, 2, {\"y\": null}], \"z\": \"s\"}""#,
                r#"{ x = [ 1 2 { y = null; } ]; z = "s"; }"#,
            ),
        ]);
        check_err(&[
            (r#"builtins.fromJSON "1e400""#, "json"),
            (r#"builtins.fromJSON """#, "json"),
            (r#"builtins.fromJSON "[1,]""#, "json"),
            (r#"builtins.fromJSON "01""#, "json"),
            (r#"builtins.fromJSON "\"\\ud800\"""#, "json"),
            (r#"builtins.fromJSON "nul""#, "json"),
            (r#"builtins.fromJSON "true false""#, "json"),
            (r#"builtins.fromJSON "1.""#, "json"),
            (r#"builtins.fromJSON "{\"a\" 1}""#, "json"),
        ]);
        // deep nesting is parsed without recursion
        let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        let v = super::parse_json(&deep, buildit_lang::Span::default());
        assert!(v.is_ok());
    }

    #[test]
    fn from_toml_like_nix() {
        check(&[
            (
                r#"builtins.fromTOML "a = 1\nb = \"x\"\n[c]\nd = [1, 2.5, true]\n[[e]]\nf = 1\n[[e]]\nf = 2""#,
                r#"{ a = 1; b = "x"; c = { d = [ 1 2.5 true ]; }; e = [ { f = 1; } { f = 2; } ]; }"#,
            ),
            (
                r#"builtins.fromTOML "a.b.c = 1""#,
                "{ a = { b = { c = 1; }; }; }",
            ),
            (
                r#"builtins.fromTOML "x = 0xff\ny = 1_000\nz = 0o7\nw = 0b11""#,
                "{ w = 3; x = 255; y = 1000; z = 7; }",
            ),
            (r#"builtins.fromTOML """#, "{ }"),
        ]);
        check_err(&[
            (
                r#"builtins.fromTOML "a = 1979-05-27T07:32:00Z""#,
                "invalid-value",
            ),
            (r#"builtins.fromTOML "a = 1\na = 2""#, "invalid-value"),
        ]);
    }

    #[test]
    fn from_toml_clamps_like_toml11() {
        check(&[
            (
                r#"builtins.fromTOML "x = -1.0e400\ny = 99999999999999999999\nz = [1e999, -1e999]""#,
                "{ x = -1.79769e+308; y = 9223372036854775807; z = [ 1.79769e+308 -1.79769e+308 ]; }",
            ),
            (
                r#"builtins.fromTOML "x = 0xFFFFFFFFFFFFFFFFFF""#,
                "{ x = 9223372036854775807; }",
            ),
        ]);
    }

    #[test]
    fn to_xml_like_nix() {
        check(&[
            (
                r#"builtins.toXML { a = 1; b = "x<&>\"\n"; c = [ true null 1.5 ]; }"#,
                r#""<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <attrs>\n    <attr name=\"a\">\n      <int value=\"1\" />\n    </attr>\n    <attr name=\"b\">\n      <string value=\"x&lt;&amp;&gt;&quot;&#xA;\" />\n    </attr>\n    <attr name=\"c\">\n      <list>\n        <bool value=\"true\" />\n        <null />\n        <float value=\"1.5\" />\n      </list>\n    </attr>\n  </attrs>\n</expr>\n""#,
            ),
            (
                "builtins.toXML [ (x: 1) ({a, b ? 1, ...}: a) (args@{a}: a) ({a}@b: 1) builtins.map ]",
                r#""<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <list>\n    <function>\n      <varpat name=\"x\" />\n    </function>\n    <function>\n      <attrspat ellipsis=\"1\">\n        <attr name=\"a\" />\n        <attr name=\"b\" />\n      </attrspat>\n    </function>\n    <function>\n      <attrspat name=\"args\">\n        <attr name=\"a\" />\n      </attrspat>\n    </function>\n    <function>\n      <attrspat name=\"b\">\n        <attr name=\"a\" />\n      </attrspat>\n    </function>\n    <unevaluated />\n  </list>\n</expr>\n""#,
            ),
            (
                r#"builtins.toXML [ { type = "derivation"; drvPath = "/d"; outPath = "/o"; } { type = "derivation"; drvPath = "/d"; outPath = "/o"; } ]"#,
                r#""<?xml version='1.0' encoding='utf-8'?>\n<expr>\n  <list>\n    <derivation drvPath=\"/d\" outPath=\"/o\">\n      <attr name=\"drvPath\">\n        <string value=\"/d\" />\n      </attr>\n      <attr name=\"outPath\">\n        <string value=\"/o\" />\n      </attr>\n      <attr name=\"type\">\n        <string value=\"derivation\" />\n      </attr>\n    </derivation>\n    <derivation drvPath=\"/d\" outPath=\"/o\">\n      <repeated />\n    </derivation>\n  </list>\n</expr>\n""#,
            ),
        ]);
    }
}
