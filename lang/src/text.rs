//! Small text helpers every front end of the language shares: the edit distance behind every
//! "did you mean" suggestion, and the `.bld` string literal that denotes a given string (for
//! programs generated as text: the YAML lowering, `buildit image`, the package-set queries).

/// The optimal-string-alignment distance between `a` and `b` (in characters): insertions,
/// deletions, substitutions and transpositions of neighbours (`nmae` → `name`) cost 1 each.
/// Time and memory are proportional to `a.len() * b.len()`; callers bound the lengths they
/// compare.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let mut v = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                v = v.min(prev2[j - 1] + 1);
            }
            cur.push(v);
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// The `.bld` string literal whose value is `s`: `"` and `\` escaped, line breaks and tabs as
/// `\n`, `\r`, `\t`, and `${` as `\${` so that nothing is interpolated. This is also how values
/// print.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// That a quoted string evaluates back to itself is tested where evaluation is at hand
/// (`buildit-driver`'s `eval` tests).
/// `N thing` or `N things`: a count with the right one of two forms (`1 derivation`,
/// `2 derivations`).
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("zlib", "zlib"), 0);
        assert_eq!(edit_distance("ä", "a"), 1);
    }
}
