//! Turning lalrpop's parse errors into [`Diagnostic`]s a user can act on: a stable code, the
//! offending token, the expected tokens in user terms ("an expression", "an operator", `` `;` ``
//! rather than lalrpop's terminal names) and a help line guessed from the context.

use crate::diag::Diagnostic;
use crate::lexer::{Spanned, Tok};
use crate::span::{FileId, Span};
use lalrpop_util::ParseError;
use std::convert::Infallible;

/// Tokens that can start an operand (an argument of a function application).
const OPERAND_START: &[&str] = &[
    "ID",
    "INT",
    "FLOAT",
    "STR_OPEN",
    "IND_OPEN",
    "PATH_START",
    "SPATH",
    "URI",
    "\"(\"",
    "\"[\"",
    "\"{\"",
    "\"let\"",
    "\"rec\"",
];
/// Tokens that can start an expression but not an operand.
const EXPR_ONLY_START: &[&str] = &["\"if\"", "\"assert\"", "\"with\"", "\"-\"", "\"!\""];
const OPERATORS: &[&str] = &[
    "\"+\"", "\"-\"", "\"*\"", "\"/\"", "\"==\"", "\"!=\"", "\"<\"", "\">\"", "\"<=\"", "\">=\"",
    "\"&&\"", "\"||\"", "\"->\"", "\"//\"", "\"++\"", "\"?\"",
];

fn terminal_name(t: &str) -> Option<String> {
    let s = match t {
        "ID" => "an identifier",
        "INT" => "an integer",
        "FLOAT" => "a float",
        "STR_OPEN" => "a string",
        "STR_CLOSE" => "`\"`",
        "STR_TEXT" | "IND_TEXT" => "string text",
        "IND_OPEN" => "an indented string",
        "IND_CLOSE" => "`''`",
        "PATH_START" => "a path",
        "PATH_TEXT" => "more path",
        "PATH_END" => "the end of the path",
        "SPATH" => "a search path",
        "URI" => "a URI",
        "INVALID" => return None,
        other => {
            let inner = other
                .strip_prefix('"')
                .and_then(|o| o.strip_suffix('"'))
                .unwrap_or(other);
            return Some(format!("`{}`", inner.replace("\\\"", "\"")));
        }
    };
    Some(s.to_string())
}

/// "expected …" text for a list of lalrpop terminal names.
pub fn describe_expected(expected: &[String]) -> String {
    let has = |t: &str| expected.iter().any(|e| e == t);
    let mut groups: Vec<String> = Vec::new();
    // `::` (a type annotation) is possible in many places but almost never what was missing
    let mut skip: Vec<&str> = vec!["\"::\""];
    let operand = has("ID") && has("INT") && has("\"(\"") && has("\"[\"");
    if operand {
        groups.push("an expression".to_string());
        skip.extend(OPERAND_START);
        skip.extend(EXPR_ONLY_START);
    }
    if has("\"+\"") && has("\"==\"") && has("\"&&\"") {
        groups.push("an operator".to_string());
        skip.extend(OPERATORS);
    }
    for e in expected {
        if skip.contains(&e.as_str()) {
            continue;
        }
        if let Some(n) = terminal_name(e) {
            if !groups.contains(&n) {
                groups.push(n);
            }
        }
    }
    match groups.len() {
        0 => "something else".to_string(),
        1 => groups.remove(0),
        n if n > 10 => format!(
            "one of {}, …",
            groups
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => {
            let last = groups.pop().unwrap_or_default();
            format!("{} or {}", groups.join(", "), last)
        }
    }
}

fn describe_token(tok: &Tok, src: &str, l: usize, r: usize) -> String {
    match tok {
        Tok::PathEnd => "end of path".to_string(),
        Tok::StrText(_) | Tok::IndText(_) => "string text".to_string(),
        Tok::StrOpen => "string".to_string(),
        Tok::IndOpen => "indented string".to_string(),
        Tok::Id(s) => format!("identifier `{}`", s),
        Tok::Int(_) | Tok::Float(_) => {
            format!("number `{}`", src.get(l..r).unwrap_or("?"))
        }
        Tok::If
        | Tok::Then
        | Tok::Else
        | Tok::Assert
        | Tok::With
        | Tok::Let
        | Tok::In
        | Tok::Rec
        | Tok::Inherit
        | Tok::OrKw => format!("keyword `{}`", src.get(l..r).unwrap_or("?")),
        _ => {
            let text = src.get(l..r).unwrap_or("?");
            let short: String = text.chars().take(30).collect();
            if short.len() < text.len() {
                format!("`{}…`", short)
            } else {
                format!("`{}`", short)
            }
        }
    }
}

fn help_for(tok: Option<&Tok>, expected: &[String]) -> String {
    let has = |t: &str| expected.iter().any(|e| e == t);
    match tok {
        Some(Tok::PathEnd) => {
            "`//` cannot appear inside a path literal (unless the path has an interpolation)".to_string()
        }
        Some(Tok::Comma) if has("\"]\"") => {
            "list elements are separated by whitespace, not commas: `[ 1 2 3 ]`".to_string()
        }
        Some(Tok::Assign) if has("\"then\"") || has("\"==\"") => {
            "to compare values use `==`; `=` only appears in bindings (`name = value;`)".to_string()
        }
        Some(
            Tok::Minus
            | Tok::Plus
            | Tok::Star
            | Tok::Slash
            | Tok::Not
            | Tok::Concat
            | Tok::Update
            | Tok::Eq
            | Tok::NotEq
            | Tok::Lt
            | Tok::Le
            | Tok::Gt
            | Tok::Ge
            | Tok::And
            | Tok::Or
            | Tok::Impl
            | Tok::Question
            | Tok::If
            | Tok::Assert
            | Tok::With
            | Tok::Colon
            | Tok::At,
        ) if has("\"]\"") => {
            "list elements are separated by whitespace, so an element that is not a simple value needs parentheses: `[ (-1) (a + b) (f x) ]`".to_string()
        }
        Some(Tok::Semi) if has("\"]\"") => {
            "list elements are separated by whitespace, not `;`".to_string()
        }
        Some(Tok::Assign) if has("\":\"") || has("\",\"") => {
            "in a function pattern, defaults are written `name ? value`".to_string()
        }
        Some(Tok::Semi | Tok::RParen | Tok::RBracket | Tok::RBrace) if has("ID") && has("INT") => {
            "a value is missing before this point".to_string()
        }
        _ if has("\";\"") => {
            "did you forget a `;`? Every binding (`name = value;`, `inherit …;`) ends with one, as do `assert c;` and `with e;`".to_string()
        }
        _ if has("\"then\"") => "an `if` needs both branches: `if c then a else b`".to_string(),
        _ if has("\"else\"") => "an `if` needs both branches: `if c then a else b`".to_string(),
        _ if has("\"in\"") => "`let` bindings are followed by `in` and the body: `let a = 1; in a`".to_string(),
        _ if has("\")\"") => "check that every `(` has a matching `)`".to_string(),
        _ if has("\"]\"") => "check that every `[` has a matching `]`".to_string(),
        _ if has("\"}\"") => "check that every `{` and `${` has a matching `}`".to_string(),
        _ if has("\"=\"") => "a binding is written `name = value;`".to_string(),
        _ => "the expression before this point is incomplete or has a typo".to_string(),
    }
}

/// The innermost bracket or string still open at the end of `tokens`.
fn unclosed_opener(tokens: &[Spanned]) -> Option<(usize, usize, &'static str)> {
    let mut stack: Vec<(usize, usize, &'static str)> = Vec::new();
    for (l, t, r) in tokens {
        match t {
            Tok::LParen => stack.push((*l, *r, "(")),
            Tok::LBracket => stack.push((*l, *r, "[")),
            Tok::LBrace => stack.push((*l, *r, "{")),
            Tok::DollarBrace => stack.push((*l, *r, "${")),
            Tok::StrOpen => stack.push((*l, *r, "\"")),
            Tok::IndOpen => stack.push((*l, *r, "''")),
            Tok::RParen | Tok::RBracket | Tok::RBrace | Tok::StrClose | Tok::IndClose => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop()
}

fn opener_name(t: &Tok) -> Option<&'static str> {
    Some(match t {
        Tok::LParen => "(",
        Tok::LBracket => "[",
        Tok::LBrace => "{",
        Tok::DollarBrace => "${",
        _ => return None,
    })
}

fn closer_for(opener: &str) -> &'static str {
    match opener {
        "(" => ")",
        "[" => "]",
        _ => "}",
    }
}

/// Context-specific advice for an unexpected token at `tokens[idx]`: extra labels and a help
/// line that replaces the generic one.
fn context_hint(
    file: FileId,
    tokens: &[Spanned],
    idx: usize,
    expected: &[String],
) -> Option<(Vec<(Span, String)>, String)> {
    let has = |t: &str| expected.iter().any(|e| e == t);
    let (_, tok, _) = tokens.get(idx)?;
    let span = |l: usize, r: usize| Span::new(file, l, r);

    // A closing bracket that does not match the innermost open one.
    if matches!(tok, Tok::RParen | Tok::RBracket | Tok::RBrace) {
        let mut stack: Vec<(usize, usize, &'static str)> = Vec::new();
        for (l, t, r) in tokens.iter().take(idx) {
            if let Some(o) = opener_name(t) {
                stack.push((*l, *r, o));
            } else if matches!(t, Tok::RParen | Tok::RBracket | Tok::RBrace) {
                stack.pop();
            }
        }
        let this = match tok {
            Tok::RParen => ")",
            Tok::RBracket => "]",
            _ => "}",
        };
        return match stack.last() {
            None => Some((
                vec![],
                format!("this `{}` has no matching opening bracket", this),
            )),
            Some((l, r, o)) if closer_for(o) != this => Some((
                vec![(span(*l, *r), format!("this `{}` is still open", o))],
                format!("close the `{}` with `{}` first", o, closer_for(o)),
            )),
            Some(_) => None,
        };
    }

    // `name = …` where an expression was still going on: the previous binding lacks its `;`.
    if matches!(tok, Tok::Assign) && has("\";\"") {
        let mut j = idx;
        while j > 0
            && matches!(
                tokens.get(j - 1),
                Some((_, Tok::Id(_) | Tok::OrKw | Tok::Dot, _))
            )
        {
            j -= 1;
        }
        if j < idx && j > 0 {
            if let Some((l, _, r)) = tokens.get(j - 1) {
                return Some((
                    vec![(
                        span(*l, *r),
                        "the previous binding probably ends here".to_string(),
                    )],
                    "add the missing `;` at the end of the previous binding".to_string(),
                ));
            }
        }
    }

    // Bindings going on where the body of a `let` was meant: `in` is missing.
    if has("\"=\"") && !matches!(tok, Tok::Assign) {
        let mut lets: Vec<(usize, usize)> = Vec::new();
        for (k, (l, t, r)) in tokens.iter().enumerate().take(idx) {
            match t {
                Tok::Let if !matches!(tokens.get(k + 1), Some((_, Tok::LBrace, _))) => {
                    lets.push((*l, *r))
                }
                Tok::In => {
                    lets.pop();
                }
                _ => {}
            }
        }
        if let Some((l, r)) = lets.last() {
            return Some((
                vec![(span(*l, *r), "this `let` has no `in`".to_string())],
                "end the bindings with `in` before the body: `let a = 1; in a`".to_string(),
            ));
        }
    }
    None
}

/// A diagnostic for a parse error, or `None` when the lexer already reported it.
pub fn parse_error(
    file: FileId,
    src: &str,
    tokens: &[Spanned],
    eof_reported: bool,
    err: &ParseError<usize, Tok, Infallible>,
) -> Option<Diagnostic> {
    let span = |l: usize, r: usize| Span::new(file, l, r);
    match err {
        ParseError::UnrecognizedToken {
            token: (_, Tok::Invalid, _),
            ..
        }
        | ParseError::ExtraToken {
            token: (_, Tok::Invalid, _),
        } => None,
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => {
            let what = describe_token(tok, src, *l, *r);
            let idx = tokens.iter().position(|(tl, t, _)| tl == l && t == tok);
            let (l, r) = if l == r {
                (*l, (*l + 1).min(src.len().max(*l)))
            } else {
                (*l, *r)
            };
            let label = if expected.is_empty() {
                "expected the end of the input".to_string()
            } else {
                format!("expected {}", describe_expected(expected))
            };
            let mut d = Diagnostic::error(
                "buildit::parse::unexpected-token",
                format!("unexpected {}", what),
            )
            .with_label(span(l, r), label);
            match idx.and_then(|i| context_hint(file, tokens, i, expected)) {
                Some((labels, help)) => {
                    for (s, m) in labels {
                        d = d.with_label(s, m);
                    }
                    d = d.with_help(help);
                }
                None if expected.is_empty() => {
                    d = d.with_help(
                        "a file holds a single expression; anything after it is an error",
                    )
                }
                None => d = d.with_help(help_for(Some(tok), expected)),
            }
            Some(d)
        }
        ParseError::UnrecognizedEof { location, expected } => {
            if eof_reported {
                return None;
            }
            let end = (*location).min(src.len());
            let start = src
                .get(..end)
                .and_then(|s| s.char_indices().next_back())
                .map_or(end, |(i, _)| i);
            let mut d =
                Diagnostic::error("buildit::parse::unexpected-eof", "unexpected end of input")
                    .with_label(
                        span(start, end),
                        format!("expected {} after this", describe_expected(expected)),
                    );
            match unclosed_opener(tokens) {
                Some((ol, or, what)) => {
                    d = d
                        .with_label(span(ol, or), format!("this `{}` is not closed", what))
                        .with_help(format!(
                            "close the `{}`, or check for a missing `;` or `}}` before it",
                            what
                        ));
                }
                None => d = d.with_help(help_for(None, expected)),
            }
            Some(d)
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            let what = describe_token(tok, src, *l, *r);
            Some(
                Diagnostic::error(
                    "buildit::parse::unexpected-token",
                    format!("unexpected {}", what),
                )
                .with_label(span(*l, *r), "expected the end of the file")
                .with_help(
                    "a file contains a single expression; combine several with a record or a list",
                ),
            )
        }
        ParseError::InvalidToken { location } => Some(
            Diagnostic::error("buildit::parse::invalid-token", "invalid token")
                .with_label(span(*location, *location), "here")
                .with_help("this character cannot appear here"),
        ),
        ParseError::User { error } => match *error {},
    }
}
