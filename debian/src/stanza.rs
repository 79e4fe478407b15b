//! Debian's `Field: value` stanzas (deb822): the one parser behind apt's `Packages` indexes,
//! deb822 `*.sources` files and a `.deb`'s `control` file.
//!
//! Stanzas are separated by blank lines, a line starting with a space or tab continues the
//! field above it, and `#` lines are comments. Field names compare without regard to case.
//! A value is its lines with surrounding white space removed, joined by `\n`. Readers pass
//! text through [`unix_line_ends`] first, so a file with CRLF line ends reads the same.
//!
//! The parser is `deb822-fast`'s borrowing one. `deb822-lossless` (the format-preserving
//! parser of the same family) was measured on bookworm's main `Packages` index for amd64
//! (50 MB, 63,440 stanzas, release build): it took 0.81 s and about 330 MB of memory for the
//! syntax tree, against 0.055 s and no copy of the text here; `buildit debian lock` reads three
//! such indexes and never edits them, so the lossless tree's cost would dominate the command.

use std::borrow::Cow;

/// A stanza that is not deb822.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Debian stanza: {why}")]
pub struct StanzaError {
    /// What the parser met (the offending line where there is one).
    pub why: String,
}

/// One stanza: its fields in order, borrowing from the text.
#[derive(Debug)]
pub struct Stanza<'a> {
    fields: Vec<(&'a str, Vec<&'a str>)>,
}

impl<'a> Stanza<'a> {
    /// The value of field `name` (compared without regard to case), if present.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, lines)| join(lines))
    }

    /// Every field as (name, value), in the order written.
    pub fn fields(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .map(|(k, lines)| (k.to_string(), join(lines).into_owned()))
            .collect()
    }
}

/// The lines of one value, trimmed; borrowed when there is one non-empty line.
fn join<'a>(lines: &[&'a str]) -> Cow<'a, str> {
    let mut kept = lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty());
    let Some(first) = kept.next() else {
        return Cow::Borrowed("");
    };
    match kept.next() {
        None => Cow::Borrowed(first),
        Some(second) => {
            let mut s = format!("{first}\n{second}");
            for l in kept {
                s.push('\n');
                s.push_str(l);
            }
            Cow::Owned(s)
        }
    }
}

/// The stanzas of `text`, in order. Iteration ends after the first error.
pub fn stanzas(text: &str) -> impl Iterator<Item = Result<Stanza<'_>, StanzaError>> {
    deb822_fast::borrowed::iter_paragraphs_borrowed(text).map(|p| match p {
        Ok(p) => Ok(Stanza {
            fields: p
                .iter()
                .map(|f| (f.name().trim(), f.lines().to_vec()))
                .collect(),
        }),
        Err(e) => Err(StanzaError { why: e.to_string() }),
    })
}

/// `text` with its CRLF line ends as LF; borrowed when there is no carriage return.
pub fn unix_line_ends(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Every stanza of `text`, or the first error.
pub fn parse(text: &str) -> Result<Vec<Stanza<'_>>, StanzaError> {
    stanzas(text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_continuations_comments_and_case() {
        let text = "# a comment\nPackage: hello\nDescription: short\n long one\n .\n more\nDEPENDS: libc6 (>= 2.34),\n  zlib1g\n\n\n\nPackage: two\n# inside\nVersion: 1  \n";
        let v = parse(text).expect("parse");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].get("package").as_deref(), Some("hello"));
        assert_eq!(
            v[0].get("Description").as_deref(),
            Some("short\nlong one\n.\nmore")
        );
        assert_eq!(
            v[0].get("Depends").as_deref(),
            Some("libc6 (>= 2.34),\nzlib1g")
        );
        assert_eq!(v[1].get("Version").as_deref(), Some("1"));
        assert_eq!(v[1].get("Depends"), None);
        assert_eq!(
            v[1].fields(),
            [
                ("Package".to_string(), "two".to_string()),
                ("Version".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn crlf_line_ends_read_like_lf() {
        let crlf = "Package: a\r\nDepends: b,\r\n c\r\n\r\nPackage: d\r\n";
        let text = unix_line_ends(crlf);
        assert!(matches!(unix_line_ends("A: b\n"), Cow::Borrowed(_)));
        let v = parse(&text).expect("parse");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].get("Depends").as_deref(), Some("b,\nc"));
        assert_eq!(v[1].get("Package").as_deref(), Some("d"));
    }

    #[test]
    fn empty_and_blank_texts_have_no_stanzas() {
        for t in ["", "\n\n", "# only a comment\n", "  \n\t\n"] {
            assert!(parse(t).expect(t).is_empty(), "{t:?}");
        }
    }

    /// Malformed text is an error naming what was met, never a panic.
    #[test]
    fn malformed_text_is_an_error() {
        for t in [
            "no colon here\n",
            " continuation first\n",
            "Package: a\n\n indented after a blank line\n",
            ": empty name\n",
        ] {
            let e = stanzas(t)
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{t:?} parsed"));
            assert!(e.to_string().starts_with("not a Debian stanza"), "{e}");
        }
        // arbitrary bytes (as text) end in stanzas or an error
        let junk: String = (0u32..2000)
            .filter_map(|i| char::from_u32((i * 7919) % 0x3000))
            .collect();
        let _ = parse(&junk);
    }
}
