//! Debian version numbers and their ordering: dpkg's (`[epoch:]upstream[-revision]`, compared
//! part by part; within a part, non-digit runs compare with `~` before everything, even the
//! end, and letters before other characters, and digit runs compare as numbers), as the
//! `debversion` crate implements it. The table below checks it against `dpkg` where dpkg is
//! installed.

use std::cmp::Ordering;

pub use debversion::Version;

/// `text` as a Debian version (surrounding white space ignored), or `None` when it is not
/// one. The characters Debian policy allows are accepted, and `_`, which real packages use.
pub fn parse(text: &str) -> Option<Version> {
    Version::parse_lenient(text.trim()).ok()
}

/// Compare two version strings as dpkg does. A string that is not a Debian version sorts
/// before every version, and such strings among themselves by their bytes, so the order is
/// total and sorting by it is well defined for any input.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(va), Some(vb)) => va.cmp(&vb),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
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
        ("1.0~rc1-1", "1.0-1", Ordering::Less),
        ("2:0.1", "1:9.9", Ordering::Greater),
        ("1.2.3+dfsg-1", "1.2.3-1", Ordering::Greater),
        ("0.9~beta", "0.9~alpha", Ordering::Greater),
        ("1.0.0", "1.0", Ordering::Greater),
        ("1.0-1+b1", "1.0-1+b10", Ordering::Less),
        ("3.0~rc1+dfsg-1", "3.0~rc1-1", Ordering::Greater),
        ("1:1.18.36:5.4-3", "1:1.18.37:1.1-1", Ordering::Less),
        ("7.4.052-1ubuntu3", "7.4.052-1ubuntu3.1", Ordering::Less),
        ("1.0-0", "1.0-00", Ordering::Equal),
        (
            "99999999999999999999999",
            "99999999999999999999998",
            Ordering::Greater,
        ),
        ("1.0+~", "1.0+", Ordering::Less),
        ("2.4.57-2", "2.4.57-2~deb12u1", Ordering::Greater),
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
        let v = parse(" 1:2.3-4-5 ").expect("a version");
        assert_eq!(
            (
                v.epoch,
                v.upstream_version.as_str(),
                v.debian_revision.as_deref()
            ),
            (Some(1), "2.3-4", Some("5"))
        );
        let v = parse("2.3").expect("a version");
        assert_eq!(
            (
                v.epoch,
                v.upstream_version.as_str(),
                v.debian_revision.as_deref()
            ),
            (None, "2.3", None)
        );
        for bad in ["", " ", "1.0 beta", "é1", "99999999999:1"] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    /// Strings that are not versions sort before versions, by their bytes among themselves,
    /// and never panic.
    #[test]
    fn not_versions_sort_first() {
        assert_eq!(compare_versions("", "0"), Ordering::Less);
        assert_eq!(compare_versions("1.0 beta", "0~"), Ordering::Less);
        assert_eq!(compare_versions("é", "1"), Ordering::Less);
        assert_eq!(compare_versions("b c", "a b"), Ordering::Greater);
        let mut v = vec!["2", "x y", "1~", "", "1:0", "é"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["", "x y", "é", "1~", "2", "1:0"]);
    }
}
