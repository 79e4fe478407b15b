//! Types as the user sees them: the owned [`Type`] tree returned by the checker, its printing in
//! the language's own syntax (`{ name : String, .. }`, `Int -> Int`), and a small parser for
//! that syntax (used by the builtin table and the tests; `::` annotations are parsed by the grammar).
//!
//! The checker works on an arena of type nodes (see `infer`); this module is the stable,
//! printable view of it.

use std::fmt;

/// A type, in the syntax of `docs/types.md`. Serialisable for the checker's cache of imported
/// files' interfaces (an `Alias` never reaches it: it fails to serialise).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Type {
    Int,
    Float,
    Bool,
    String,
    Path,
    Null,
    /// Data whose shape is only known at run time; consistent with every type.
    Dyn,
    /// A type variable (`a`, `b`, …).
    Var(String),
    List(Box<Type>),
    Fun(Box<Type>, Box<Type>),
    /// `{ a : T, b ? U }`, open (`..`) when `open`.
    Record {
        fields: Vec<Field>,
        open: bool,
    },
    /// `{ _ : T }`: a record with computed keys.
    Dict(Box<Type>),
    /// Printed as `…` when a type is too deep to print.
    Elided,
    /// A capitalised name in an annotation, as written (at `span`): a `type` alias. Only the
    /// parser produces it, and its alias resolution (`types::aliases`) replaces every one, so
    /// the checker and the evaluator never see it.
    #[serde(skip)]
    Alias(String, crate::span::Span),
}

/// One field of a record type.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Field {
    pub name: String,
    pub ty: Type,
    pub optional: bool,
}

fn needs_quotes(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return true,
    }
    !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '\'')
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Int => write!(f, "Int"),
            Type::Float => write!(f, "Float"),
            Type::Bool => write!(f, "Bool"),
            Type::String => write!(f, "String"),
            Type::Path => write!(f, "Path"),
            Type::Null => write!(f, "Null"),
            Type::Dyn => write!(f, "Dyn"),
            Type::Elided => write!(f, "…"),
            Type::Var(v) | Type::Alias(v, _) => write!(f, "{v}"),
            Type::List(t) => write!(f, "[{t}]"),
            Type::Fun(a, b) => {
                if matches!(**a, Type::Fun(..)) {
                    write!(f, "({a}) -> {b}")
                } else {
                    write!(f, "{a} -> {b}")
                }
            }
            Type::Dict(t) => write!(f, "{{ _ : {t} }}"),
            Type::Record { fields, open } => {
                if fields.is_empty() {
                    return write!(f, "{}", if *open { "{ .. }" } else { "{ }" });
                }
                write!(f, "{{ ")?;
                for (i, fl) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    if needs_quotes(&fl.name) {
                        write!(f, "{:?}", fl.name)?;
                    } else {
                        write!(f, "{}", fl.name)?;
                    }
                    write!(f, " {} {}", if fl.optional { "?" } else { ":" }, fl.ty)?;
                }
                if *open {
                    write!(f, ", ..")?;
                }
                write!(f, " }}")
            }
        }
    }
}

/// Parse a type written in the language's syntax. Lower-case identifiers are type variables;
/// a variable whose name starts with `num` is restricted to numbers (`Int` or `Float`).
/// `Derivation` is an alias for `{ name : String, outPath : String, drvPath : String, .. }`.
pub fn parse_type(src: &str) -> Result<Type, String> {
    let toks = tokenize(src)?;
    let mut p = TyParser { toks, pos: 0 };
    let t = p.fun()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected `{}`", p.toks[p.pos]));
    }
    Ok(t)
}

fn tokenize(src: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'\'') {
                i += 1;
            }
            out.push(src[s..i].to_string());
        } else if src[i..].starts_with("->") || src[i..].starts_with("..") {
            out.push(src[i..i + 2].to_string());
            i += 2;
        } else if b"[]{}():?,".contains(&c) {
            out.push((c as char).to_string());
            i += 1;
        } else {
            return Err(format!("unexpected character `{}`", c as char));
        }
    }
    Ok(out)
}

struct TyParser {
    toks: Vec<String>,
    pos: usize,
}

impl TyParser {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(|s| s.as_str())
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) -> Result<(), String> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(format!("expected `{t}`"))
        }
    }
    fn fun(&mut self) -> Result<Type, String> {
        let a = self.atom()?;
        if self.eat("->") {
            let b = self.fun()?;
            Ok(Type::Fun(Box::new(a), Box::new(b)))
        } else {
            Ok(a)
        }
    }
    fn atom(&mut self) -> Result<Type, String> {
        let Some(t) = self.peek().map(str::to_string) else {
            return Err("unexpected end of type".into());
        };
        self.pos += 1;
        match t.as_str() {
            "(" => {
                let t = self.fun()?;
                self.expect(")")?;
                Ok(t)
            }
            "[" => {
                let t = self.fun()?;
                self.expect("]")?;
                Ok(Type::List(Box::new(t)))
            }
            "{" => self.record(),
            "Int" => Ok(Type::Int),
            "Float" => Ok(Type::Float),
            "Bool" => Ok(Type::Bool),
            "String" => Ok(Type::String),
            "Path" => Ok(Type::Path),
            "Null" => Ok(Type::Null),
            "Dyn" => Ok(Type::Dyn),
            "Derivation" => Ok(derivation()),
            v if v.starts_with(|c: char| c.is_ascii_lowercase()) => Ok(Type::Var(v.to_string())),
            other => Err(format!("unknown type `{other}`")),
        }
    }
    fn record(&mut self) -> Result<Type, String> {
        let mut fields = Vec::new();
        let mut open = false;
        loop {
            if self.eat("}") {
                break;
            }
            if self.eat("..") {
                open = true;
                self.expect("}")?;
                break;
            }
            let name = self
                .peek()
                .map(str::to_string)
                .ok_or("unexpected end of type")?;
            self.pos += 1;
            if name == "_" {
                self.expect(":")?;
                let t = self.fun()?;
                self.eat(",");
                self.expect("}")?;
                return Ok(Type::Dict(Box::new(t)));
            }
            let optional = if self.eat("?") {
                true
            } else {
                self.expect(":")?;
                false
            };
            let ty = self.fun()?;
            fields.push(Field { name, ty, optional });
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Type::Record { fields, open })
    }
}

/// The `Derivation` alias: an open record.
pub fn derivation() -> Type {
    let f = |n: &str| Field {
        name: n.to_string(),
        ty: Type::String,
        optional: false,
    };
    Type::Record {
        fields: vec![f("drvPath"), f("name"), f("outPath"), f("type")],
        open: true,
    }
}
