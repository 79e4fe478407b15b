//! Indentation stripping of indented strings (`''…''`), a transcription of Nix 2.8's
//! `stripIndentation` (`src/libexpr/parser.y`), so that `.bld` and Nix agree on every string.
//!
//! The rules: the minimum indentation (in spaces) of all lines is removed from every line, where
//! lines containing only spaces do not count, an interpolation or an escape (`''$`, `'''`,
//! `''\n`) counts as non-space text, and the last line is dropped when it consists only of
//! spaces (so `''\n  a\n  ''` is `"a\n"`).

use super::actions::N;
use crate::ast::StrPart;
use crate::lexer::IndText;

/// One piece of an indented string as lexed.
#[derive(Debug)]
pub enum IndPart {
    Text(IndText),
    Interp(N),
}

/// Strip the common indentation; returns the parts (literal parts may be empty or adjacent).
pub fn strip_indentation(parts: Vec<IndPart>) -> Vec<StrPart> {
    if parts.is_empty() {
        return Vec::new();
    }

    // Minimum indentation.
    let mut at_start = true;
    let mut min_indent = usize::MAX;
    let mut cur = 0usize;
    for p in &parts {
        match p {
            IndPart::Text(t) if t.indent => {
                for c in t.text.chars() {
                    if at_start {
                        if c == ' ' {
                            cur += 1;
                        } else if c == '\n' {
                            cur = 0;
                        } else {
                            at_start = false;
                            min_indent = min_indent.min(cur);
                        }
                    } else if c == '\n' {
                        at_start = true;
                        cur = 0;
                    }
                }
            }
            _ => {
                if at_start {
                    at_start = false;
                    min_indent = min_indent.min(cur);
                }
            }
        }
    }

    // Strip.
    let mut out = Vec::with_capacity(parts.len());
    let mut at_start = true;
    let mut dropped = 0usize;
    let last = parts.len() - 1;
    for (i, p) in parts.into_iter().enumerate() {
        match p {
            IndPart::Interp(n) => {
                at_start = false;
                dropped = 0;
                out.push(StrPart::Interp(n.v));
            }
            IndPart::Text(t) => {
                let mut s2 = String::with_capacity(t.text.len());
                for c in t.text.chars() {
                    if at_start {
                        if c == ' ' {
                            if dropped >= min_indent {
                                s2.push(c);
                            }
                            dropped += 1;
                        } else if c == '\n' {
                            dropped = 0;
                            s2.push(c);
                        } else {
                            at_start = false;
                            dropped = 0;
                            s2.push(c);
                        }
                    } else {
                        s2.push(c);
                        if c == '\n' {
                            at_start = true;
                        }
                    }
                }
                if i == last {
                    // Remove the last line if it is empty and consists only of spaces.
                    if let Some(nl) = s2.rfind('\n') {
                        if s2
                            .get(nl + 1..)
                            .is_some_and(|t| t.chars().all(|c| c == ' '))
                        {
                            s2.truncate(nl + 1);
                        }
                    }
                }
                out.push(StrPart::Lit(s2));
            }
        }
    }
    out
}
