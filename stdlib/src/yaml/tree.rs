//! A YAML document as a tree whose every node knows its byte range in the source, so that
//! every error in a spec (unknown key, wrong type, bad value) points at the exact line and
//! column. Built from yaml-rust2's event parser (which gives start markers); scalars keep their
//! raw text and whether they were quoted, so `chmod: 0644` stays the text `0644` (YAML 1.1
//! would read an octal number, YAML 1.2 a decimal one: buildit reads the text).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
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

/// A syntax error with its byte offset.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
}

enum Frame {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(Node, Node)>, Option<Node>),
}

struct Builder<'a> {
    src: &'a str,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: std::collections::HashMap<usize, Node>,
    error: Option<SyntaxError>,
    pending_anchor: Vec<usize>,
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
                (start + text.len()).min(src.len()).max(start)
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

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, pairs, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => pairs.push((k, node)),
            },
        }
    }

    fn remember(&mut self, aid: usize, node: &Node) {
        if aid > 0 {
            self.anchors.insert(aid, node.clone());
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = mark.index().min(self.src.len());
        match ev {
            Event::Scalar(text, style, aid, _tag) => {
                let end = self.scalar_end(at, &text, style);
                let quoted = !matches!(style, TScalarStyle::Plain);
                let node = Node {
                    kind: Kind::Scalar { text, quoted },
                    start: at,
                    end,
                };
                self.remember(aid, &node);
                self.push(node);
            }
            Event::SequenceStart(aid, _) => {
                self.pending_anchor.push(aid);
                self.stack.push(Frame::Seq(at, Vec::new()));
            }
            Event::MappingStart(aid, _) => {
                self.pending_anchor.push(aid);
                self.stack.push(Frame::Map(at, Vec::new(), None));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(start, items)) = self.stack.pop() {
                    let end = items.last().map(|n| n.end).unwrap_or(at).max(start);
                    let node = Node {
                        kind: Kind::Seq(items),
                        start,
                        end,
                    };
                    let aid = self.pending_anchor.pop().unwrap_or(0);
                    self.remember(aid, &node);
                    self.push(node);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(start, pairs, _)) = self.stack.pop() {
                    let end = pairs.last().map(|(_, v)| v.end).unwrap_or(at).max(start);
                    let node = Node {
                        kind: Kind::Map(pairs),
                        start,
                        end,
                    };
                    let aid = self.pending_anchor.pop().unwrap_or(0);
                    self.remember(aid, &node);
                    self.push(node);
                }
            }
            Event::Alias(aid) => match self.anchors.get(&aid).cloned() {
                Some(mut n) => {
                    // the alias points where it is used
                    let len = n.end - n.start;
                    n.start = at;
                    n.end = at + len.min(self.src.len().saturating_sub(at));
                    self.push(n);
                }
                None => {
                    self.error = Some(SyntaxError {
                        message: "unknown alias".into(),
                        offset: at,
                    })
                }
            },
            _ => {}
        }
    }
}

/// Parse one YAML document (a stream with several documents is refused).
pub fn parse(src: &str) -> Result<Option<Node>, SyntaxError> {
    let mut b = Builder {
        src,
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: Default::default(),
        error: None,
        pending_anchor: Vec::new(),
    };
    let mut p = Parser::new_from_str(src);
    if let Err(e) = p.load(&mut b, true) {
        let m = e.marker();
        return Err(SyntaxError {
            message: e.info().to_string(),
            offset: m.index().min(src.len()),
        });
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    if b.docs.len() > 1 {
        let second = &b.docs[1];
        return Err(SyntaxError {
            message: "a spec file holds one YAML document; this is a second one".into(),
            offset: second.start,
        });
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
}
