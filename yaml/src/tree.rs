//! A YAML document as a tree whose every node knows its byte range in the source, so that
//! every error in a spec (unknown key, wrong type, bad value) points at the exact line and
//! column. Built from yaml-rust2's event parser (which gives start markers); scalars keep their
//! raw text and whether they were quoted, so `chmod: 0644` stays the text `0644` (YAML 1.1
//! would read an octal number, YAML 1.2 a decimal one: buildit reads the text).

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A node and its byte range.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A scalar: its text, and whether it was quoted (a quoted scalar is always a string).
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Key/value pairs in document order (keys are scalars; others are refused).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    /// Whether this is the null scalar (`~`, `null`, empty, unquoted).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, quoted: false } if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }
    /// What kind of node this is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "nothing (null)",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// The largest spec file read, in bytes (specs are a few KiB; this keeps a hostile file from
/// costing more than a bounded amount of memory and time).
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;
/// The deepest nesting of sequences and mappings (a spec needs five or six levels).
pub const MAX_DEPTH: usize = 128;
/// The least weight that anchors and aliases may copy in a document, however small it is (see
/// [`Weight`]).
pub const MIN_ALIAS_BUDGET: u64 = 1 << 20;
/// Anchors and aliases may copy at most this many times the document's length in weight.
pub const ALIAS_BUDGET_RATIO: u64 = 4;

/// Why a document was refused: each kind is its own diagnostic code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not YAML (yaml-rust2's scanner or parser refused it), an unknown alias, a second document.
    Syntax,
    /// The file is larger than [`MAX_DOCUMENT_BYTES`].
    TooLarge,
    /// Sequences and mappings nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Anchors and aliases copy more than the document's budget (a "billion laughs").
    AliasBudget,
}

/// A refused document: what, why, and the byte offset to point at.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub kind: ErrorKind,
    pub message: String,
    pub offset: usize,
}

/// What a subtree costs when an alias copies it: 64 per node (about a node's size in memory)
/// plus the bytes of its scalars' text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weight(pub u64);

impl Weight {
    fn scalar(text: &str) -> Weight {
        Weight(64 + text.len() as u64)
    }
}

enum Frame {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(Node, Node)>, Option<Node>),
}

/// An open collection: its frame, its anchor id, and the weight of its children so far.
struct Open {
    frame: Frame,
    anchor: usize,
    weight: Weight,
}

/// `i`, or the start of the character it falls into, at most the length of `src`.
fn floor_char(src: &str, i: usize) -> usize {
    let mut i = i.min(src.len());
    while !src.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Byte offsets of yaml-rust2's markers, which count characters: a checkpoint every 64
/// characters, then a short walk (the identity for ASCII text).
struct Offsets {
    ascii: bool,
    checkpoints: Vec<usize>,
}

impl Offsets {
    fn new(src: &str) -> Offsets {
        let ascii = src.is_ascii();
        let checkpoints = if ascii {
            Vec::new()
        } else {
            src.char_indices().step_by(64).map(|(b, _)| b).collect()
        };
        Offsets { ascii, checkpoints }
    }

    /// The byte offset of character `chars` of `src` (its length past the end).
    fn byte(&self, src: &str, chars: usize) -> usize {
        if self.ascii {
            return chars.min(src.len());
        }
        let Some(&from) = self.checkpoints.get(chars / 64) else {
            return src.len();
        };
        src.get(from..)
            .and_then(|rest| rest.char_indices().nth(chars % 64))
            .map(|(b, _)| from + b)
            .unwrap_or(src.len())
    }
}

struct Builder<'a> {
    src: &'a str,
    offsets: Offsets,
    stack: Vec<Open>,
    docs: Vec<Node>,
    /// Anchored nodes by anchor id, with their weight.
    anchors: std::collections::HashMap<usize, (Node, Weight)>,
    /// The weight anchors and aliases have copied so far, and how much they may copy.
    expanded: u64,
    budget: u64,
}

impl Builder<'_> {
    fn scalar_end(&self, start: usize, text: &str, style: TScalarStyle) -> usize {
        let src = self.src.as_bytes();
        let line_end = |from: usize| {
            let mut i = from;
            while i < src.len() && src[i] != b'\n' {
                i += 1;
            }
            i
        };
        match style {
            TScalarStyle::Plain => {
                // a plain scalar's text is the source, up to folding of multi-line scalars
                floor_char(self.src, (start + text.len()).max(start))
            }
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let q = src.get(start).copied().unwrap_or(b'"');
                let mut i = start + 1;
                while i < src.len() {
                    if src[i] == b'\\' && q == b'"' {
                        i += 2;
                        continue;
                    }
                    if src[i] == q {
                        if q == b'\'' && src.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return i + 1;
                    }
                    i += 1;
                }
                line_end(start)
            }
            _ => {
                // block scalars (| and >): the marker may be at the indicator or at the first
                // content line; the text continues while lines are indented at least as much
                // as its first content line
                let indent_of = |l: usize| src[l..].iter().take_while(|b| **b == b' ').count();
                let line_start = |at: usize| {
                    src[..at]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map(|p| p + 1)
                        .unwrap_or(0)
                };
                let ls = line_start(start);
                let rest_of_line = &src[start..line_end(start)];
                let at_indicator = rest_of_line
                    .first()
                    .is_some_and(|b| *b == b'|' || *b == b'>');
                let (mut end, indent) = if at_indicator {
                    let next = (line_end(start) + 1).min(src.len());
                    (line_end(start), indent_of(next))
                } else {
                    (line_end(start), indent_of(ls))
                };
                let mut i = end;
                while i < src.len() {
                    let l = i + 1;
                    if l >= src.len() {
                        break;
                    }
                    let le = line_end(l);
                    let blank = src[l..le].iter().all(|b| *b == b' ');
                    if !blank && indent_of(l) < indent.max(1) {
                        break;
                    }
                    if !blank {
                        end = le;
                    }
                    i = le;
                }
                end
            }
        }
    }

    fn push(&mut self, node: Node, w: Weight) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(open) => {
                open.weight.0 = open.weight.0.saturating_add(w.0);
                match &mut open.frame {
                    Frame::Seq(_, items) => items.push(node),
                    Frame::Map(_, pairs, key) => match key.take() {
                        None => *key = Some(node),
                        Some(k) => pairs.push((k, node)),
                    },
                }
            }
        }
    }

    /// Keep a copy of an anchored node for its aliases. The copy is charged to the alias budget
    /// like an alias is (anchors nested in anchors copy their subtrees once per level).
    fn remember(
        &mut self,
        aid: usize,
        node: &Node,
        w: Weight,
        at: usize,
    ) -> Result<(), SyntaxError> {
        if aid > 0 {
            self.charge(w, at)?;
            self.anchors.insert(aid, (node.clone(), w));
        }
        Ok(())
    }

    /// Add `w` to the weight that anchors and aliases have copied; past the budget, an error at
    /// `at`.
    fn charge(&mut self, w: Weight, at: usize) -> Result<(), SyntaxError> {
        self.expanded = self.expanded.saturating_add(w.0);
        if self.expanded > self.budget {
            return Err(SyntaxError {
                kind: ErrorKind::AliasBudget,
                message: format!(
                    "anchors and aliases expand to more than {} KiB of YAML nodes in this file",
                    self.budget >> 10
                ),
                offset: at,
            });
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, anchor: usize, at: usize) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                kind: ErrorKind::TooDeep,
                message: format!(
                    "sequences and mappings are nested deeper than {MAX_DEPTH} levels"
                ),
                offset: at,
            });
        }
        self.stack.push(Open {
            frame,
            anchor,
            weight: Weight(64),
        });
        Ok(())
    }

    fn close(&mut self, at: usize) -> Result<(), SyntaxError> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let node = match open.frame {
            Frame::Seq(start, items) => {
                let end = items.last().map(|n| n.end).unwrap_or(at).max(start);
                Node {
                    kind: Kind::Seq(items),
                    start,
                    end,
                }
            }
            Frame::Map(start, pairs, _) => {
                let end = pairs.last().map(|(_, v)| v.end).unwrap_or(at).max(start);
                Node {
                    kind: Kind::Map(pairs),
                    start,
                    end,
                }
            }
        };
        // an anchor's copy is charged at the collection it copies
        self.remember(open.anchor, &node, open.weight, node.start)?;
        self.push(node, open.weight);
        Ok(())
    }

    fn event(&mut self, ev: Event, mark: Marker) -> Result<(), SyntaxError> {
        let at = self.offsets.byte(self.src, mark.index());
        match ev {
            Event::Scalar(text, style, aid, _tag) => {
                let end = self.scalar_end(at, &text, style);
                let quoted = !matches!(style, TScalarStyle::Plain);
                let w = Weight::scalar(&text);
                let node = Node {
                    kind: Kind::Scalar { text, quoted },
                    start: at,
                    end,
                };
                self.remember(aid, &node, w, at)?;
                self.push(node, w);
            }
            Event::SequenceStart(aid, _) => self.open(Frame::Seq(at, Vec::new()), aid, at)?,
            Event::MappingStart(aid, _) => self.open(Frame::Map(at, Vec::new(), None), aid, at)?,
            Event::SequenceEnd | Event::MappingEnd => self.close(at)?,
            Event::Alias(aid) => {
                let Some(w) = self.anchors.get(&aid).map(|(_, w)| *w) else {
                    return Err(SyntaxError {
                        kind: ErrorKind::Syntax,
                        message: "unknown alias".into(),
                        offset: at,
                    });
                };
                // charged before the copy is made: a copy is never larger than the budget
                self.charge(w, at)?;
                let Some(mut n) = self.anchors.get(&aid).map(|(n, _)| n.clone()) else {
                    return Ok(());
                };
                // the alias points where it is used
                let len = n.end - n.start;
                n.start = at;
                n.end = floor_char(self.src, at + len).max(at);
                self.push(n, w);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Parse one YAML document (a stream with several documents is refused). The document's size,
/// its nesting and what its aliases expand to are bounded (see [`MAX_DOCUMENT_BYTES`],
/// [`MAX_DEPTH`], [`MIN_ALIAS_BUDGET`] and [`ALIAS_BUDGET_RATIO`]): a hostile spec is an error,
/// never gigabytes of memory.
pub fn parse(src: &str) -> Result<Option<Node>, SyntaxError> {
    if src.len() > MAX_DOCUMENT_BYTES {
        return Err(SyntaxError {
            kind: ErrorKind::TooLarge,
            message: format!(
                "the file has {} bytes; spec files may have at most {} MiB",
                src.len(),
                MAX_DOCUMENT_BYTES >> 20
            ),
            offset: 0,
        });
    }
    let mut b = Builder {
        src,
        offsets: Offsets::new(src),
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: Default::default(),
        expanded: 0,
        budget: (src.len() as u64)
            .saturating_mul(ALIAS_BUDGET_RATIO)
            .max(MIN_ALIAS_BUDGET),
    };
    // the events are pulled one by one (yaml-rust2's `load` recurses once per nesting level)
    let mut p = Parser::new_from_str(src);
    loop {
        let (ev, mark) = p.next_token().map_err(|e| SyntaxError {
            kind: ErrorKind::Syntax,
            message: e.info().to_string(),
            offset: b.offsets.byte(src, e.marker().index()),
        })?;
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart if !b.docs.is_empty() => {
                return Err(SyntaxError {
                    kind: ErrorKind::Syntax,
                    message: "a spec file holds one YAML document; this is a second one".into(),
                    offset: b.offsets.byte(src, mark.index()),
                });
            }
            ev => b.event(ev, mark)?,
        }
    }
    Ok(b.docs.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(src: &'a str, n: &Node) -> &'a str {
        &src[n.start..n.end]
    }

    #[test]
    fn nodes_know_their_spans() {
        let src = "---\nbase: www-servers/nginx-1.22.1\npatches:\n  patches/a.patch: \"Deny http\"\nuse:\n  with:\n    - ipv6\n    - ssl\nchmod: 0644\nnote: é ü\n";
        let root = parse(src).expect("parses").expect("a document");
        let Kind::Map(pairs) = &root.kind else {
            panic!("map")
        };
        let keys: Vec<&str> = pairs
            .iter()
            .map(|(k, _)| k.scalar().expect("scalar key"))
            .collect();
        assert_eq!(keys, ["base", "patches", "use", "chmod", "note"]);
        assert_eq!(text(src, &pairs[0].1), "www-servers/nginx-1.22.1");
        let Kind::Map(p) = &pairs[1].1.kind else {
            panic!("map")
        };
        assert_eq!(text(src, &p[0].1), "\"Deny http\"");
        assert_eq!(pairs[3].1.scalar(), Some("0644"));
        assert_eq!(text(src, &pairs[4].1), "é ü");
        let Kind::Map(u) = &pairs[2].1.kind else {
            panic!("map")
        };
        let Kind::Seq(items) = &u[0].1.kind else {
            panic!("seq")
        };
        assert_eq!(text(src, &items[1]), "ssl");
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let src = "a: [1, 2\nb: 3\n";
        let e = parse(src).expect_err("unclosed");
        assert!(e.offset <= src.len());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert_eq!(parse("").expect("empty ok"), None);
    }

    #[test]
    fn block_scalars_span_their_lines() {
        let src = "image:\n  content: |\n    {\n      \"a\": 1\n    }\n  type: aci\n";
        let root = parse(src).expect("ok").expect("doc");
        let Kind::Map(p) = &root.kind else { panic!() };
        let Kind::Map(q) = &p[0].1.kind else { panic!() };
        assert!(
            text(src, &q[0].1).ends_with('}'),
            "{:?}",
            text(src, &q[0].1)
        );
        assert_eq!(q[1].1.scalar(), Some("aci"));
    }

    /// The classic "billion laughs": nine levels of ten aliases each.
    fn laughs() -> String {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 9].join(",");
            s.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
        }
        s
    }

    #[test]
    fn alias_bombs_are_refused_at_the_alias() {
        let src = laughs();
        assert!(src.len() < 2048);
        let e = parse(&src).expect_err("a bomb");
        assert_eq!(e.kind, ErrorKind::AliasBudget);
        // the offset is an alias (`*x`) or an anchored list of aliases, past the first line
        assert!(e.offset > src.find('\n').unwrap_or(0));
        assert!(matches!(src.as_bytes().get(e.offset), Some(b'*' | b'[')));
    }

    #[test]
    fn modest_aliases_are_fine() {
        let src = "base: &b { a: 1, b: 2 }\nx: *b\ny: *b\nz: [*b, *b]\n";
        let root = parse(src).expect("ok").expect("doc");
        let Kind::Map(p) = &root.kind else { panic!() };
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].1.kind, p[0].1.kind);
        assert_eq!(&src[p[1].1.start..p[1].1.start + 2], "*b");
    }

    #[test]
    fn nested_anchors_are_charged() {
        // every level anchors (copies) everything below it: quadratic without the budget
        let big = "x".repeat(200_000);
        let mut src = String::new();
        for i in 0..100 {
            src.push_str(&format!("{}- &a{i}\n", "  ".repeat(i)));
        }
        src.push_str(&format!("{}- {big}\n", "  ".repeat(100)));
        let e = parse(&src).expect_err("over budget");
        assert_eq!(e.kind, ErrorKind::AliasBudget);
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = parse(&deep).expect_err("too deep");
        assert_eq!(e.kind, ErrorKind::TooDeep);
        assert_eq!(e.offset, MAX_DEPTH);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let large = format!("a: \"{}\"\n", "x".repeat(MAX_DOCUMENT_BYTES));
        assert_eq!(
            parse(&large).expect_err("too large").kind,
            ErrorKind::TooLarge
        );
    }

    #[test]
    fn offsets_are_bytes_after_multibyte_text() {
        let src = "a: \"ééééé\"\nb: [1, *nope]\n";
        let e = parse(src).expect_err("unknown alias");
        assert_eq!(&src[e.offset..e.offset + 5], "*nope");
        let e = parse("é: [\n").expect_err("unclosed");
        assert!(e.offset <= 7);
    }
}
