//! Debian version numbers and their ordering: dpkg's algorithm (`[epoch:]upstream[-revision]`,
//! compared part by part; within a part, alternating non-digit runs compared with letters
//! before non-letters and `~` before everything, even the end, and digit runs compared as
//! numbers).

use std::cmp::Ordering;

/// A parsed Debian version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    pub epoch: u64,
    pub upstream: &'a str,
    pub revision: &'a str,
}

impl<'a> Version<'a> {
    /// Split `text` into epoch, upstream version and revision (lenient like dpkg: a missing
    /// or unparsable epoch is 0, no `-` means revision "").
    pub fn parse(text: &'a str) -> Version<'a> {
        let text = text.trim();
        let (epoch, rest) = match text.split_once(':') {
            Some((e, r)) if e.bytes().all(|b| b.is_ascii_digit()) && !e.is_empty() => {
                (e.parse().unwrap_or(0), r)
            }
            _ => (0, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        Version {
            epoch,
            upstream,
            revision,
        }
    }
}

/// Compare two version strings as dpkg does.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (va, vb) = (Version::parse(a), Version::parse(b));
    va.epoch
        .cmp(&vb.epoch)
        .then_with(|| compare_part(va.upstream, vb.upstream))
        .then_with(|| compare_part(va.revision, vb.revision))
}

/// The sort weight of one non-digit character: `~` lowest, the end of the run next,
/// letters, then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            if ca.is_some() {
                i += 1;
            }
            if cb.is_some() {
                j += 1;
            }
        }
        // Digit run, compared as a number (leading zeros ignored).
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (a, b, expected ordering of a against b).
    const CASES: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Ordering::Equal),
        ("1.0", "1.1", Ordering::Less),
        ("1.10", "1.9", Ordering::Greater),
        ("1.0~rc1", "1.0", Ordering::Less),
        ("1.0~rc1", "1.0~rc2", Ordering::Less),
        ("1.0~~", "1.0~", Ordering::Less),
        ("1.0~", "1.0", Ordering::Less),
        ("1.0+b1", "1.0", Ordering::Greater),
        ("1.0a", "1.0", Ordering::Greater),
        ("1.0a", "1.0+", Ordering::Less),
        ("1.0.", "1.0+", Ordering::Greater),
        ("1:1.0", "2.0", Ordering::Greater),
        ("0:1.0", "1.0", Ordering::Equal),
        ("1.0-1", "1.0-1", Ordering::Equal),
        ("1.0-1", "1.0-2", Ordering::Less),
        ("1.0-10", "1.0-9", Ordering::Greater),
        ("1.0", "1.0-0", Ordering::Equal),
        ("2.36-9+deb12u4", "2.36-9+deb12u10", Ordering::Less),
        ("2.36-9+deb12u4", "2.36-9", Ordering::Greater),
        ("1.2.3-1~bpo12+1", "1.2.3-1", Ordering::Less),
        ("001", "1", Ordering::Equal),
        ("1.0-a-b", "1.0-a", Ordering::Greater),
        ("1:1.35.0-4+b3", "1:1.35.0-4+deb12u1+b1", Ordering::Less),
        ("12.2.0-14", "12.2.0-14+deb12u1", Ordering::Less),
        ("3.0.11-1~deb12u2", "3.0.11-1", Ordering::Less),
        ("9.1-1", "9.1-1", Ordering::Equal),
        ("1.22.1-9", "1.22.1-9+deb12u1", Ordering::Less),
        ("1a", "1b", Ordering::Less),
        ("1A", "1a", Ordering::Less),
        ("10:1", "9:2", Ordering::Greater),
    ];

    #[test]
    fn table() {
        for (a, b, want) in CASES {
            assert_eq!(compare_versions(a, b), *want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// The same table checked against `dpkg --compare-versions` when dpkg is installed,
    /// so the expectations above are dpkg's, not ours.
    #[test]
    fn table_agrees_with_dpkg() {
        let dpkg = |a: &str, op: &str, b: &str| {
            std::process::Command::new("dpkg")
                .args(["--compare-versions", a, op, b])
                .status()
                .ok()
                .map(|s| s.success())
        };
        if dpkg("1", "eq", "1") != Some(true) {
            return; // no dpkg here
        }
        for (a, b, want) in CASES {
            let op = match want {
                Ordering::Less => "lt",
                Ordering::Equal => "eq",
                Ordering::Greater => "gt",
            };
            assert_eq!(dpkg(a, op, b), Some(true), "dpkg disagrees: {a} {op} {b}");
        }
    }

    #[test]
    fn parse_parts() {
        let v = Version::parse("1:2.3-4-5");
        assert_eq!((v.epoch, v.upstream, v.revision), (1, "2.3-4", "5"));
        let v = Version::parse("2.3");
        assert_eq!((v.epoch, v.upstream, v.revision), (0, "2.3", ""));
    }
}
