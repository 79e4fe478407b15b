//! The `.bld` lexer: turns source text into the token stream the lalrpop grammar consumes.
//!
//! Why it looks like this: the language's lexical structure is Nix 2.8's (`src/libexpr/lexer.l`),
//! which is *modal* (code, `"…"` strings, `''…''` strings, path continuations after a `${…}`) and
//! relies on flex's longest-match rule. In code mode, keywords, identifiers, integers and
//! operators come from a [`logos`] DFA, while the rules that need backtracking (floats, paths,
//! URIs, search paths, `...`, `''`, comments) are scanned by hand, and the longest candidate
//! wins, as in flex (logos 0.14 returns wrong spans when a longer candidate fails part-way).
//! On top, a hand-driven layer keeps a stack of modes, exactly like the flex start-condition
//! stack (`{` and `${` push code mode, `}` pops), and scans the string and path modes by hand.
//!
//! Lexing never fails: problems (an invalid character, an unterminated string or comment, an
//! integer literal that does not fit in 64 bits, a path with a trailing slash) become
//! [`Diagnostic`]s, and a [`Tok::Invalid`] token is emitted where the parser must not continue
//! silently. The parser does not report a second error for an `Invalid` token. Lexing is linear
//! in the input.

use crate::ast::PathKind;
use crate::diag::Diagnostic;
use crate::span::{FileId, Span};
use logos::Logos;

/// One token. Text-carrying tokens own their (already unescaped) text.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    If,
    Then,
    Else,
    Assert,
    With,
    Let,
    In,
    Rec,
    Inherit,
    /// The keyword `or` (also usable as an attribute name, and `f or` applies `f` to `or`).
    OrKw,
    /// `...`
    Ellipsis,
    /// `==`
    Eq,
    /// `!=`
    NotEq,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `->`
    Impl,
    /// `//`
    Update,
    /// `++`
    Concat,
    Lt,
    Gt,
    Plus,
    Minus,
    Star,
    Slash,
    /// `!`
    Not,
    Question,
    Dot,
    Colon,
    /// `::` (type annotations)
    ColonColon,
    Semi,
    Comma,
    At,
    /// `=`
    Assign,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    /// `${`, in code, strings and paths alike.
    DollarBrace,
    Id(String),
    Int(i64),
    Float(f64),
    /// The `"` opening a string.
    StrOpen,
    /// The `"` closing a string.
    StrClose,
    /// Literal text inside `"…"`, escapes already resolved.
    StrText(String),
    /// `''` (plus the rest of its line when that is only spaces).
    IndOpen,
    /// The `''` closing an indented string.
    IndClose,
    /// Literal text inside `''…''`.
    IndText(IndText),
    /// The first segment of a path literal, as written (`./a/b`, `/abs`, `~/x`, `a/`).
    PathStart(PathStart),
    /// A literal continuation of a path after an interpolation (`./a/${x}/b` → `/b`).
    PathText(String),
    /// Zero-width end of a path literal.
    PathEnd,
    /// `<nixpkgs/lib>`, without the angle brackets.
    SearchPath(String),
    Uri(String),
    /// Something the lexer already reported; the parser reports nothing more at it.
    Invalid,
}

/// A piece of literal text inside `''…''`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndText {
    pub text: String,
    /// True for raw text, which takes part in the indentation computation; false for escapes
    /// (`''$`, `'''`, `''\n`) and lone `$`/`'`, which, as in Nix, count as non-whitespace.
    pub indent: bool,
}

/// The first segment of a path literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathStart {
    pub kind: PathKind,
    /// As written: `./a/b`, `/abs`, `~/x`, `a/` (before an interpolation).
    pub text: String,
}

/// Characters allowed in path segments (`PATH_CHAR` in Nix's lexer).
pub fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
}

/// Code-mode tokens that a DFA recognises without backtracking: keywords, identifiers,
/// integers, operators and punctuation. Everything else (floats, paths, URIs, search paths,
/// `...`, `''`, comments) is scanned by hand in [`Lexer::code`], because logos returns wrong
/// spans when a longer candidate fails part-way (`1+1` would be taken for a prefix of a path);
/// the driver then picks the longest candidate, as flex does.
#[derive(Logos, Clone, Copy, Debug, PartialEq)]
enum Raw {
    #[token("if")]
    If,
    #[token("then")]
    Then,
    #[token("else")]
    Else,
    #[token("assert")]
    Assert,
    #[token("with")]
    With,
    #[token("let")]
    Let,
    #[token("in")]
    In,
    #[token("rec")]
    Rec,
    #[token("inherit")]
    Inherit,
    #[token("or")]
    OrKw,
    #[token("==")]
    Eq,
    #[token("!=")]
    NotEq,
    #[token("<=")]
    Le,
    #[token(">=")]
    Ge,
    #[token("&&")]
    And,
    #[token("||")]
    Or,
    #[token("->")]
    Impl,
    #[token("//")]
    Update,
    #[token("++")]
    Concat,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("!")]
    Not,
    #[token("?")]
    Question,
    #[token(".")]
    Dot,
    #[token(":")]
    Colon,
    #[token("::")]
    ColonColon,
    #[token(";")]
    Semi,
    #[token(",")]
    Comma,
    #[token("@")]
    At,
    #[token("=")]
    Assign,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("${")]
    DollarBrace,
    #[token("\"")]
    Quote,
    #[regex(r"[a-zA-Z_][a-zA-Z0-9_'\-]*")]
    Id,
    #[regex(r"[0-9]+")]
    Int,
}

/// Code-mode tokens scanned by hand (see [`Raw`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hand {
    Ellipsis,
    IndOpen,
    Float,
    /// `{PATH_SEG}\$\{` or `{HPATH_START}\$\{`: a path whose first segment is followed by an
    /// interpolation (`./${x}`, `a/${x}`, `~/${x}`).
    PathInterp,
    Path,
    HPath,
    SPath,
    Uri,
}

/// A lexer mode (flex start condition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Code; the bottom entry is never popped by `}`.
    Code,
    /// Inside `"…"`, opened at the given offset.
    Str(usize),
    /// Inside `''…''`, opened at the given offset.
    Ind(usize),
    /// Right after a path segment or a path interpolation: more path may follow.
    InPath,
    /// Right after a path segment ending in `/`: more path *must* follow.
    InPathSlash,
}

/// A token with its byte range, as lalrpop wants it.
pub type Spanned = (usize, Tok, usize);

/// The output of [`lex`].
#[derive(Debug, Default)]
pub struct Lexed {
    pub tokens: Vec<Spanned>,
    pub diagnostics: Vec<Diagnostic>,
    /// True when the lexer reported a problem at the end of the input (unterminated string or
    /// comment); the parser then does not also report "unexpected end of input".
    pub eof_reported: bool,
}

/// Tokenize a whole file. Never panics; see the module documentation.
pub fn lex(file: FileId, src: &str) -> Lexed {
    let mut lx = Lexer {
        file,
        src,
        pos: 0,
        modes: vec![Mode::Code],
        out: Lexed::default(),
        no_path_before: 0,
        no_uri_before: 0,
    };
    lx.run();
    lx.out
}

struct Lexer<'a> {
    file: FileId,
    src: &'a str,
    pos: usize,
    modes: Vec<Mode>,
    out: Lexed,
    /// No path literal starts before this offset (see [`Lexer::code`]).
    no_path_before: usize,
    /// No URI starts before this offset.
    no_uri_before: usize,
}

impl<'a> Lexer<'a> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn push(&mut self, start: usize, tok: Tok, end: usize) {
        self.out.tokens.push((start, tok, end));
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn mode(&self) -> Mode {
        self.modes.last().copied().unwrap_or(Mode::Code)
    }

    fn set_mode(&mut self, m: Mode) {
        match self.modes.last_mut() {
            Some(top) => *top = m,
            None => self.modes.push(m),
        }
    }

    fn pop_mode(&mut self) {
        if self.modes.len() > 1 {
            self.modes.pop();
        }
    }

    fn run(&mut self) {
        loop {
            let more = match self.mode() {
                Mode::Code => self.code(),
                Mode::Str(open) => self.string(open),
                Mode::Ind(open) => self.ind_string(open),
                Mode::InPath => self.in_path(false),
                Mode::InPathSlash => self.in_path(true),
            };
            if !more {
                break;
            }
        }
    }

    /// Skip whitespace and comments. Returns false when an unterminated comment ends the input.
    fn skip_trivia(&mut self) -> bool {
        loop {
            let rest = self.rest();
            let b = rest.as_bytes();
            match b.first() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.pos += 1,
                Some(b'#') => {
                    let len = rest.find(['\r', '\n']).unwrap_or(rest.len());
                    self.pos += len;
                }
                Some(b'/') if b.get(1) == Some(&b'*') => match rest
                    .get(2..)
                    .and_then(|r| r.find("*/"))
                {
                    Some(i) => self.pos += i + 4,
                    None => {
                        let start = self.pos;
                        self.out.diagnostics.push(
                            Diagnostic::error(
                                "buildit::parse::unexpected-eof",
                                "unexpected end of input inside a comment",
                            )
                            .with_label(self.span(start, start + 2), "this `/*` is never closed")
                            .with_help("close the comment with `*/`"),
                        );
                        self.out.eof_reported = true;
                        self.push(start, Tok::Invalid, self.src.len());
                        self.pos = self.src.len();
                        return false;
                    }
                },
                _ => return true,
            }
        }
    }

    /// One token in code mode. Returns false at the end of input.
    fn code(&mut self) -> bool {
        if !self.skip_trivia() {
            return false;
        }
        let start = self.pos;
        let rest = self.rest();
        if rest.is_empty() {
            // End of input inside `${…}` of a string: the string is unterminated.
            let open = self.modes.iter().rev().find_map(|m| match m {
                Mode::Str(o) => Some((*o, "string", "\"")),
                Mode::Ind(o) => Some((*o, "indented string", "''")),
                _ => None,
            });
            if let Some((o, what, close)) = open {
                self.unterminated(o, what, close);
            }
            return false;
        }
        // The longest hand-scanned candidate (flex rule order breaks ties; none tie in practice).
        let mut hand: Option<(usize, Hand)> = None;
        // Paths and URIs start with a run of characters (`[a-zA-Z0-9._+-]*`, resp. the URI
        // scheme) whose end decides whether they match at all, whichever position of the run
        // they start at. Remember a run that does not lead to one, so that lexing `1+1+1+…` or
        // `a.b.c.…` stays linear.
        let (path, path_interp) = if start < self.no_path_before {
            (0, 0)
        } else {
            let (p, pi) = (path_len(rest), path_interp_len(rest));
            if p == 0 && pi == 0 {
                self.no_path_before = start + path_char_run(rest);
            }
            (p, pi)
        };
        let uri = if start < self.no_uri_before {
            0
        } else {
            let u = uri_len(rest);
            if u == 0 && rest.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
                self.no_uri_before = start + uri_scheme_run(rest);
            }
            u
        };
        for (len, kind) in [
            (usize::from(rest.starts_with("...")) * 3, Hand::Ellipsis),
            (ind_open_len(rest), Hand::IndOpen),
            (float_len(rest), Hand::Float),
            (path_interp, Hand::PathInterp),
            (path, Hand::Path),
            (hpath_len(rest), Hand::HPath),
            (spath_len(rest), Hand::SPath),
            (uri, Hand::Uri),
        ] {
            if len > 0 && !matches!(hand, Some((l, _)) if l >= len) {
                hand = Some((len, kind));
            }
        }
        let mut raw = Raw::lexer(rest);
        let dfa = match raw.next() {
            Some(Ok(r)) if raw.span().start == 0 => Some((raw.span().end, r)),
            _ => None,
        };
        match (hand, dfa) {
            (Some((hl, h)), Some((dl, _))) if hl > dl => self.hand_token(start, hl, h),
            (Some((hl, h)), None) => self.hand_token(start, hl, h),
            (_, Some((dl, d))) => self.raw_token(start, dl, d),
            (None, None) => self.invalid_char(start),
        }
        true
    }

    fn hand_token(&mut self, start: usize, len: usize, kind: Hand) {
        let end = start + len;
        let text = self.src.get(start..end).unwrap_or("");
        self.pos = end;
        let tok = match kind {
            Hand::Ellipsis => Tok::Ellipsis,
            Hand::IndOpen => {
                self.modes.push(Mode::Ind(start));
                Tok::IndOpen
            }
            Hand::Float => Tok::Float(self.float(text, start, end)),
            Hand::PathInterp => {
                // Emit the segment before `${`; the `${` itself is lexed in path mode.
                let seg = text.strip_suffix("${").unwrap_or(text);
                let seg_end = start + seg.len();
                self.pos = seg_end;
                self.modes.push(Mode::InPathSlash);
                self.push(start, path_start(seg), seg_end);
                return;
            }
            Hand::Path | Hand::HPath => {
                self.modes.push(if text.ends_with('/') {
                    Mode::InPathSlash
                } else {
                    Mode::InPath
                });
                path_start(text)
            }
            Hand::SPath => {
                let inner = text
                    .strip_prefix('<')
                    .and_then(|t| t.strip_suffix('>'))
                    .unwrap_or(text);
                Tok::SearchPath(inner.to_string())
            }
            Hand::Uri => Tok::Uri(text.to_string()),
        };
        self.push(start, tok, end);
    }

    fn raw_token(&mut self, start: usize, len: usize, raw: Raw) {
        let end = start + len;
        let text = self.src.get(start..end).unwrap_or("");
        self.pos = end;
        let tok = match raw {
            Raw::If => Tok::If,
            Raw::Then => Tok::Then,
            Raw::Else => Tok::Else,
            Raw::Assert => Tok::Assert,
            Raw::With => Tok::With,
            Raw::Let => Tok::Let,
            Raw::In => Tok::In,
            Raw::Rec => Tok::Rec,
            Raw::Inherit => Tok::Inherit,
            Raw::OrKw => Tok::OrKw,
            Raw::Eq => Tok::Eq,
            Raw::NotEq => Tok::NotEq,
            Raw::Le => Tok::Le,
            Raw::Ge => Tok::Ge,
            Raw::And => Tok::And,
            Raw::Or => Tok::Or,
            Raw::Impl => Tok::Impl,
            Raw::Update => Tok::Update,
            Raw::Concat => Tok::Concat,
            Raw::Lt => Tok::Lt,
            Raw::Gt => Tok::Gt,
            Raw::Plus => Tok::Plus,
            Raw::Minus => Tok::Minus,
            Raw::Star => Tok::Star,
            Raw::Slash => Tok::Slash,
            Raw::Not => Tok::Not,
            Raw::Question => Tok::Question,
            Raw::Dot => Tok::Dot,
            Raw::Colon => Tok::Colon,
            Raw::ColonColon => Tok::ColonColon,
            Raw::Semi => Tok::Semi,
            Raw::Comma => Tok::Comma,
            Raw::At => Tok::At,
            Raw::Assign => Tok::Assign,
            Raw::LParen => Tok::LParen,
            Raw::RParen => Tok::RParen,
            Raw::LBracket => Tok::LBracket,
            Raw::RBracket => Tok::RBracket,
            Raw::LBrace => {
                self.modes.push(Mode::Code);
                Tok::LBrace
            }
            Raw::RBrace => {
                self.pop_mode();
                Tok::RBrace
            }
            Raw::DollarBrace => {
                self.modes.push(Mode::Code);
                Tok::DollarBrace
            }
            Raw::Quote => {
                self.modes.push(Mode::Str(start));
                Tok::StrOpen
            }
            Raw::Id => Tok::Id(text.to_string()),
            Raw::Int => Tok::Int(self.int(text, start, end)),
        };
        self.push(start, tok, end);
    }

    fn invalid_char(&mut self, start: usize) {
        let ch = self.src.get(start..).and_then(|r| r.chars().next());
        let len = ch.map_or(1, char::len_utf8);
        let end = (start + len).min(self.src.len());
        self.pos = end;
        let shown = match ch {
            Some(c) if c.is_control() || c.is_whitespace() => format!("{:?}", c),
            Some(c) => format!("`{}`", c),
            None => "end of input".to_string(),
        };
        let help = match ch {
            Some('\'') => "an indented string starts with two single quotes: ''…''",
            Some('$') => "interpolation is written `${…}` and only allowed in strings, paths and attribute names",
            Some('~') => "a home path needs a slash and a name: `~/x`",
            Some('`') => "strings are written with double quotes: \"…\"",
            _ => "this character cannot appear here outside a string or comment",
        };
        self.out.diagnostics.push(
            Diagnostic::error(
                "buildit::parse::invalid-token",
                format!("unexpected character {}", shown),
            )
            .with_label(self.span(start, end), "not a valid token")
            .with_help(help),
        );
        self.push(start, Tok::Invalid, end);
    }

    fn int(&mut self, text: &str, start: usize, end: usize) -> i64 {
        match text.parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                self.out.diagnostics.push(
                    Diagnostic::error(
                        "buildit::parse::int-overflow",
                        format!("integer literal `{}` does not fit in 64 bits", text),
                    )
                    .with_label(self.span(start, end), "too large")
                    .with_help(format!(
                        "integers are signed 64-bit: the largest is {}; use a float (`{}.0`) if precision does not matter",
                        i64::MAX,
                        text.trim_start_matches('0')
                    )),
                );
                0
            }
        }
    }

    fn float(&mut self, text: &str, start: usize, end: usize) -> f64 {
        let v = text.parse::<f64>().ok();
        // Nix uses strtod and rejects ERANGE: overflow to infinity and underflow to a
        // subnormal or zero value of a non-zero literal.
        let mantissa_nonzero = text
            .split(['e', 'E'])
            .next()
            .is_some_and(|m| m.chars().any(|c| c.is_ascii_digit() && c != '0'));
        match v {
            Some(f) if f.is_finite() && (f == 0.0 && !mantissa_nonzero || f.is_normal()) => f,
            _ => {
                self.out.diagnostics.push(
                    Diagnostic::error(
                        "buildit::parse::float-range",
                        format!("float literal `{}` is out of range", text),
                    )
                    .with_label(
                        self.span(start, end),
                        "not representable as a normal 64-bit float",
                    )
                    .with_help(
                        "floats are IEEE 754 doubles: magnitudes from about 2.2e-308 to 1.8e308",
                    ),
                );
                0.0
            }
        }
    }

    fn unterminated(&mut self, open: usize, what: &str, close: &str) {
        let open_len = if close == "\"" { 1 } else { 2 };
        // The innermost string that contains this one through an interpolation, if any.
        let outer = self
            .modes
            .iter()
            .rev()
            .filter_map(|m| match m {
                Mode::Str(o) | Mode::Ind(o) => Some(*o),
                _ => None,
            })
            .find(|o| *o < open);
        let mut d = Diagnostic::error(
            "buildit::parse::unterminated-string",
            format!("unterminated {}", what),
        )
        .with_label(
            self.span(open, open + open_len),
            format!("this {} is never closed", what),
        );
        d = match outer {
            Some(o) => d
                .with_label(self.span(o, o + 1), "inside an interpolation `${…}` of this string")
                .with_help(format!(
                    "if this {} was meant to end the outer string, the `${{` before it is missing its `}}`",
                    close
                )),
            None => d.with_help(format!(
                "add the closing {} (inside the string, write it escaped)",
                close
            )),
        };
        self.out.diagnostics.push(d);
        self.out.eof_reported = true;
        self.push(self.src.len(), Tok::Invalid, self.src.len());
    }

    /// One token inside `"…"`.
    fn string(&mut self, open: usize) -> bool {
        let rest = self.rest();
        let start = self.pos;
        let b = rest.as_bytes();
        if b.is_empty() {
            self.unterminated(open, "string", "\"");
            return false;
        }
        if b.first() == Some(&b'"') {
            self.pos += 1;
            self.pop_mode();
            self.push(start, Tok::StrClose, start + 1);
            return true;
        }
        if rest.starts_with("${") {
            self.pos += 2;
            self.modes.push(Mode::Code);
            self.push(start, Tok::DollarBrace, start + 2);
            return true;
        }
        // ([^$"\\]|\$[^{"\\]|\\ANY|\$\\ANY)+  and  (...)*\$/\"
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => break,
                b'\\' => i += 1 + char_len_at(rest, i + 1),
                b'$' => match b.get(i + 1) {
                    None => i += 1,
                    Some(b'{') => break,
                    Some(b'"') => i += 1,
                    Some(b'\\') => i += 2 + char_len_at(rest, i + 2),
                    Some(_) => i += 1 + char_len_at(rest, i + 1),
                },
                _ => i += char_len_at(rest, i).max(1),
            }
        }
        let i = i.min(b.len());
        let raw = rest.get(..i).unwrap_or("");
        self.pos += i;
        self.push(start, Tok::StrText(unescape(raw)), start + i);
        true
    }

    /// One token inside `''…''`.
    fn ind_string(&mut self, open: usize) -> bool {
        let rest = self.rest();
        let start = self.pos;
        let b = rest.as_bytes();
        if b.is_empty() {
            self.unterminated(open, "indented string", "''");
            return false;
        }
        let ind = |text: &str, indent: bool| {
            Tok::IndText(IndText {
                text: text.to_string(),
                indent,
            })
        };
        if rest.starts_with("''") {
            let (tok, len) = match b.get(2) {
                Some(b'\'') => (ind("''", false), 3),
                Some(b'$') => (ind("$", false), 3),
                Some(b'\\') if b.len() > 3 => {
                    let l = char_len_at(rest, 3);
                    let esc = rest.get(3..3 + l).unwrap_or("");
                    (ind(&unescape_escape(esc), false), 3 + l)
                }
                _ => {
                    self.pop_mode();
                    (Tok::IndClose, 2)
                }
            };
            self.pos += len;
            self.push(start, tok, start + len);
            return true;
        }
        if rest.starts_with("${") {
            self.pos += 2;
            self.modes.push(Mode::Code);
            self.push(start, Tok::DollarBrace, start + 2);
            return true;
        }
        // ([^$']|\$[^{']|'[^'$])+ ; a lone `$` or `'` is its own (non-indentation) token.
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            match c {
                b'$' => match b.get(i + 1) {
                    None | Some(b'{') | Some(b'\'') => break,
                    Some(_) => i += 1 + char_len_at(rest, i + 1),
                },
                b'\'' => match b.get(i + 1) {
                    None | Some(b'\'') | Some(b'$') => break,
                    Some(_) => i += 1 + char_len_at(rest, i + 1),
                },
                _ => i += char_len_at(rest, i).max(1),
            }
        }
        let i = i.min(b.len());
        if i == 0 {
            // A lone `$` or `'`.
            let text = if b.first() == Some(&b'$') { "$" } else { "'" };
            self.pos += 1;
            self.push(start, ind(text, false), start + 1);
            return true;
        }
        let raw = rest.get(..i).unwrap_or("");
        self.pos += i;
        self.push(start, ind(raw, true), start + i);
        true
    }

    /// One token after a path segment or a path interpolation.
    fn in_path(&mut self, after_slash: bool) -> bool {
        let rest = self.rest();
        let start = self.pos;
        if rest.starts_with("${") {
            self.pos += 2;
            self.set_mode(Mode::InPath);
            self.modes.push(Mode::Code);
            self.push(start, Tok::DollarBrace, start + 2);
            return true;
        }
        let len = path_continuation_len(rest);
        if len > 0 {
            let text = rest.get(..len).unwrap_or("");
            self.pos += len;
            self.set_mode(if text.ends_with('/') {
                Mode::InPathSlash
            } else {
                Mode::InPath
            });
            self.push(start, Tok::PathText(text.to_string()), start + len);
            return true;
        }
        if after_slash {
            // Report at the slash; then end the path so parsing can go on.
            let slash = start.saturating_sub(1);
            self.out.diagnostics.push(
                Diagnostic::error("buildit::parse::path-trailing-slash", "path has a trailing slash")
                    .with_label(self.span(slash, start), "remove this `/`")
                    .with_help("a path literal cannot end with `/`; write `./dir` (or `./dir + \"/\"` for a string)"),
            );
        }
        self.pop_mode();
        self.push(start, Tok::PathEnd, start);
        true
    }
}

/// Byte predicate helper: is the byte at `i` in the class?
fn at(b: &[u8], i: usize, class: impl Fn(u8) -> bool) -> bool {
    b.get(i).is_some_and(|&c| class(c))
}

fn is_pc(c: u8) -> bool {
    is_path_char(c as char)
}

/// Length of `C*(/C+)+/?` at the start of `s` (0 if none), given the leading `C*` run length.
fn segments_len(b: &[u8], mut i: usize) -> usize {
    let mut matched = false;
    while b.get(i) == Some(&b'/') && at(b, i + 1, is_pc) {
        i += 1;
        while at(b, i, is_pc) {
            i += 1;
        }
        matched = true;
    }
    if !matched {
        return 0;
    }
    if b.get(i) == Some(&b'/') {
        i += 1;
    }
    i
}

/// Length of the leading run of path characters.
fn path_char_run(s: &str) -> usize {
    s.bytes().take_while(|&c| is_pc(c)).count()
}

/// Length of the leading run of URI scheme characters (`[a-zA-Z0-9+\-.]`).
fn uri_scheme_run(s: &str) -> usize {
    s.bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        .count()
}

/// `{PATH}`: `C*(/C+)+/?`.
fn path_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while at(b, i, is_pc) {
        i += 1;
    }
    segments_len(b, i)
}

/// `{HPATH}`: `~(/C+)+/?`.
fn hpath_len(s: &str) -> usize {
    if !s.starts_with('~') {
        return 0;
    }
    segments_len(s.as_bytes(), 1)
}

/// `{PATH_SEG}\$\{` (`C*/${`) or `{HPATH_START}\$\{` (`~/${`).
fn path_interp_len(s: &str) -> usize {
    if s.starts_with("~/${") {
        return 4;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while at(b, i, is_pc) {
        i += 1;
    }
    if b.get(i) == Some(&b'/') && b.get(i + 1) == Some(&b'$') && b.get(i + 2) == Some(&b'{') {
        i + 3
    } else {
        0
    }
}

/// `{SPATH}`: `<C+(/C+)*>`.
fn spath_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') || !at(b, 1, is_pc) {
        return 0;
    }
    let mut i = 1;
    loop {
        while at(b, i, is_pc) {
            i += 1;
        }
        if b.get(i) == Some(&b'/') && at(b, i + 1, is_pc) {
            i += 1;
            continue;
        }
        break;
    }
    if b.get(i) == Some(&b'>') {
        i + 1
    } else {
        0
    }
}

/// `{URI}`: `[a-zA-Z][a-zA-Z0-9+\-.]*:[a-zA-Z0-9%/?:@&=+$,\-_.!~*']+`.
fn uri_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !at(b, 0, |c| c.is_ascii_alphabetic()) {
        return 0;
    }
    let mut i = 1;
    while at(b, i, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
    }) {
        i += 1;
    }
    if b.get(i) != Some(&b':') {
        return 0;
    }
    i += 1;
    let body = |c: u8| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'%' | b'/'
                    | b'?'
                    | b':'
                    | b'@'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b'-'
                    | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
            )
    };
    let body_start = i;
    while at(b, i, body) {
        i += 1;
    }
    if i == body_start {
        0
    } else {
        i
    }
}

/// `{FLOAT}`: `(([1-9][0-9]*\.[0-9]*)|(0?\.[0-9]+))([Ee][+-]?[0-9]+)?`.
fn float_len(s: &str) -> usize {
    let b = s.as_bytes();
    let digit = |c: u8| c.is_ascii_digit();
    let mut i;
    if at(b, 0, |c| (b'1'..=b'9').contains(&c)) {
        i = 1;
        while at(b, i, digit) {
            i += 1;
        }
        if b.get(i) != Some(&b'.') {
            return 0;
        }
        i += 1;
        while at(b, i, digit) {
            i += 1;
        }
    } else {
        i = usize::from(b.first() == Some(&b'0'));
        if b.get(i) != Some(&b'.') || !at(b, i + 1, digit) {
            return 0;
        }
        i += 1;
        while at(b, i, digit) {
            i += 1;
        }
    }
    // Optional exponent, only if complete.
    if at(b, i, |c| c == b'e' || c == b'E') {
        let mut j = i + 1;
        if at(b, j, |c| c == b'+' || c == b'-') {
            j += 1;
        }
        if at(b, j, digit) {
            while at(b, j, digit) {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// `''( *\n)?`.
fn ind_open_len(s: &str) -> usize {
    if !s.starts_with("''") {
        return 0;
    }
    let b = s.as_bytes();
    let mut i = 2;
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) == Some(&b'\n') {
        i + 1
    } else {
        2
    }
}

fn path_start(text: &str) -> Tok {
    Tok::PathStart(PathStart {
        kind: path_kind(text),
        text: text.to_string(),
    })
}

fn path_kind(text: &str) -> PathKind {
    if text.starts_with('/') {
        PathKind::Absolute
    } else if text.starts_with('~') {
        PathKind::Home
    } else {
        PathKind::Relative
    }
}

/// Length of the longest prefix of `s` matching `{PATH}|{PATH_SEG}|{PATH_CHAR}+`, i.e.
/// `C*(/C+)+/?`, `C*/` or `C+` (0 when none matches).
fn path_continuation_len(s: &str) -> usize {
    let b = s.as_bytes();
    let is_c = |i: usize| b.get(i).is_some_and(|&c| is_path_char(c as char));
    let mut i = 0;
    while is_c(i) {
        i += 1;
    }
    let lead = i;
    let mut best = lead; // `C+` (or nothing when lead == 0)
    if b.get(i) == Some(&b'/') {
        best = i + 1; // `C*/`
                      // `(/C+)+/?`
        loop {
            if b.get(i) != Some(&b'/') || !is_c(i + 1) {
                break;
            }
            i += 1;
            while is_c(i) {
                i += 1;
            }
            best = best.max(i);
            if b.get(i) == Some(&b'/') {
                best = best.max(i + 1);
            }
        }
    }
    best
}

/// Byte length of the character at byte offset `i` of `s` (0 past the end).
fn char_len_at(s: &str, i: usize) -> usize {
    s.get(i..)
        .and_then(|r| r.chars().next())
        .map_or(0, char::len_utf8)
}

/// Nix's `unescapeStr`: `\n`, `\r`, `\t` and `\<any>` → `<any>`; a raw CR or CR LF becomes LF.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(c) => out.push(c),
                None => {}
            },
            '\r' => {
                out.push('\n');
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The character after `''\` in an indented string (Nix runs `unescapeStr` on it alone).
fn unescape_escape(c: &str) -> String {
    match c {
        "n" => "\n".to_string(),
        "r" => "\r".to_string(),
        "t" => "\t".to_string(),
        "\r" => "\n".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(FileId(0), src)
            .tokens
            .into_iter()
            .map(|(_, t, _)| t)
            .collect()
    }

    fn id(s: &str) -> Tok {
        Tok::Id(s.to_string())
    }

    #[test]
    fn keywords_and_identifiers() {
        assert_eq!(
            toks("if then else assert with let in rec inherit or iff a-b x' _"),
            vec![
                Tok::If,
                Tok::Then,
                Tok::Else,
                Tok::Assert,
                Tok::With,
                Tok::Let,
                Tok::In,
                Tok::Rec,
                Tok::Inherit,
                Tok::OrKw,
                id("iff"),
                id("a-b"),
                id("x'"),
                id("_")
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("1 1.5 .5 1. 01.5 1.e5"),
            vec![
                Tok::Int(1),
                Tok::Float(1.5),
                Tok::Float(0.5),
                Tok::Float(1.0),
                Tok::Int(1),
                Tok::Float(0.5),
                Tok::Float(100000.0)
            ]
        );
        assert_eq!(toks("1e5"), vec![Tok::Int(1), id("e5")]);
        let l = lex(FileId(0), "9223372036854775808");
        assert_eq!(l.diagnostics[0].code, "buildit::parse::int-overflow");
        let l = lex(FileId(0), "1.0e999 1.0e-310 0.0e-999");
        assert_eq!(l.diagnostics.len(), 2);
    }

    #[test]
    fn paths() {
        let p = |kind, s: &str| {
            Tok::PathStart(PathStart {
                kind,
                text: s.to_string(),
            })
        };
        use PathKind::*;
        assert_eq!(toks("./a"), vec![p(Relative, "./a"), Tok::PathEnd]);
        assert_eq!(toks("a/b"), vec![p(Relative, "a/b"), Tok::PathEnd]);
        assert_eq!(
            toks("/abs/x.nix"),
            vec![p(Absolute, "/abs/x.nix"), Tok::PathEnd]
        );
        assert_eq!(toks("~/x"), vec![p(Home, "~/x"), Tok::PathEnd]);
        assert_eq!(toks("1/2"), vec![p(Relative, "1/2"), Tok::PathEnd]);
        assert_eq!(toks("a / b"), vec![id("a"), Tok::Slash, id("b")]);
        assert_eq!(toks("a//b"), vec![id("a"), Tok::Update, id("b")]);
        assert_eq!(
            toks("./${x}"),
            vec![
                p(Relative, "./"),
                Tok::DollarBrace,
                id("x"),
                Tok::RBrace,
                Tok::PathEnd
            ]
        );
        assert_eq!(
            toks("./a/${x}b/c d"),
            vec![
                p(Relative, "./a/"),
                Tok::DollarBrace,
                id("x"),
                Tok::RBrace,
                Tok::PathText("b/c".into()),
                Tok::PathEnd,
                id("d")
            ]
        );
        assert_eq!(
            toks("./a${x}"),
            vec![
                p(Relative, "./a"),
                Tok::DollarBrace,
                id("x"),
                Tok::RBrace,
                Tok::PathEnd
            ]
        );
        assert_eq!(
            toks("<nixpkgs/lib>"),
            vec![Tok::SearchPath("nixpkgs/lib".into())]
        );
        let l = lex(FileId(0), "./a/ ");
        assert_eq!(l.diagnostics[0].code, "buildit::parse::path-trailing-slash");
    }

    #[test]
    fn uris() {
        assert_eq!(toks("x:x"), vec![Tok::Uri("x:x".into())]);
        assert_eq!(toks("x: x"), vec![id("x"), Tok::Colon, id("x")]);
        assert_eq!(
            toks("https://a.org/b?c=d"),
            vec![Tok::Uri("https://a.org/b?c=d".into())]
        );
    }

    #[test]
    fn strings() {
        assert_eq!(
            toks(r#""a\n\"${x}$${y}$""#),
            vec![
                Tok::StrOpen,
                Tok::StrText("a\n\"".into()),
                Tok::DollarBrace,
                id("x"),
                Tok::RBrace,
                Tok::StrText("$${y}$".into()),
                Tok::StrClose
            ]
        );
        assert_eq!(
            toks(r#""${ {a=1;}.a }""#),
            vec![
                Tok::StrOpen,
                Tok::DollarBrace,
                Tok::LBrace,
                id("a"),
                Tok::Assign,
                Tok::Int(1),
                Tok::Semi,
                Tok::RBrace,
                Tok::Dot,
                id("a"),
                Tok::RBrace,
                Tok::StrClose
            ]
        );
        let l = lex(FileId(0), "\"abc");
        assert_eq!(l.diagnostics[0].code, "buildit::parse::unterminated-string");
    }

    #[test]
    fn comments() {
        assert_eq!(
            toks("1 # c\n 2 /* x ** / */ 3"),
            vec![Tok::Int(1), Tok::Int(2), Tok::Int(3)]
        );
        let l = lex(FileId(0), "1 /* x");
        assert_eq!(l.diagnostics[0].code, "buildit::parse::unexpected-eof");
    }

    #[test]
    fn path_continuation() {
        assert_eq!(path_continuation_len("abc"), 3);
        assert_eq!(path_continuation_len("a/b/c x"), 5);
        assert_eq!(path_continuation_len("a//b"), 2);
        assert_eq!(path_continuation_len("/"), 1);
        assert_eq!(path_continuation_len("/b/"), 3);
        assert_eq!(path_continuation_len(" a"), 0);
    }
}
