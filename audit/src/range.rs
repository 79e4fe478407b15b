//! Whether a version is affected by an OSV `affected` entry, and which version fixes it.
//!
//! Version order: `Debian:*` ecosystems use dpkg's (the `debversion` crate, through
//! `buildit-debian`); `SEMVER` ranges use Semantic Versioning 2.0 (the `semver` crate, a
//! leading `v` allowed); other `ECOSYSTEM` ranges — the generic purls of source-built packages
//! — also use dpkg's order, which orders dotted numeric releases (`1.22.1 < 1.23.0`, `1.2.9 <
//! 1.2.10`) and pre-releases written with `~` as upstreams number them. `GIT` ranges are not
//! evaluated (the audit knows versions, not commits).
//!
//! A range is evaluated as the OSV schema describes: its events sorted by version, walking up
//! to the installed version, `introduced` opens an affected span, `fixed` and `limit` close it
//! at their version, `last_affected` just after its version.

use std::cmp::Ordering;

use crate::osv::{Affected, Event};

/// How versions of one `affected` entry compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Dpkg,
    Semver,
}

impl Scheme {
    /// Compare `a` and `b`, or `None` when either is not a version of this scheme.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Scheme::Dpkg => {
                let pa = buildit_debian::version::parse(a)?;
                let pb = buildit_debian::version::parse(b)?;
                Some(pa.cmp(&pb))
            }
            Scheme::Semver => {
                let p = |s: &str| semver::Version::parse(s.trim().trim_start_matches('v')).ok();
                Some(p(a)?.cmp(&p(b)?))
            }
        }
    }
}

/// The verdict on one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    NotAffected,
    /// Affected; the version that fixes it, when the advisory names one.
    Affected {
        fixed: Option<String>,
    },
}

/// Whether `version` is affected by `a`, judged with ECOSYSTEM ranges in `ecosystem_scheme`.
pub fn check(a: &Affected, version: &str, ecosystem_scheme: Scheme) -> Verdict {
    let mut listed = a.versions.iter().any(|v| v == version);
    let mut fixed: Option<String> = None;
    for r in &a.ranges {
        let scheme = match r.kind.as_str() {
            "SEMVER" => Scheme::Semver,
            "ECOSYSTEM" => ecosystem_scheme,
            _ => continue,
        };
        if let Some(f) = in_range(&r.events, version, scheme) {
            listed = true;
            if let Some(f) = f {
                // the lowest fixing version any matching range names
                if fixed
                    .as_deref()
                    .map_or(true, |cur| scheme.compare(&f, cur) == Some(Ordering::Less))
                {
                    fixed = Some(f);
                }
            }
        }
    }
    if listed {
        Verdict::Affected { fixed }
    } else {
        Verdict::NotAffected
    }
}

/// An event as (version, rank, kind): at the same version `introduced` sorts first.
fn event_key(e: &Event) -> Option<(&str, u8)> {
    if let Some(v) = &e.introduced {
        Some((v, 0))
    } else if let Some(v) = &e.fixed {
        Some((v, 1))
    } else if let Some(v) = &e.last_affected {
        Some((v, 2))
    } else {
        e.limit.as_deref().map(|v| (v, 3))
    }
}

/// `Some(fixed)` when `version` is inside the range (with the `fixed` event that closes its
/// span, if any), `None` when it is not or the range cannot be ordered.
fn in_range(events: &[Event], version: &str, scheme: Scheme) -> Option<Option<String>> {
    let mut evs: Vec<(&str, u8)> = events.iter().filter_map(event_key).collect();
    // "0" is the beginning of time whatever the scheme
    let cmp = |a: &str, b: &str| -> Option<Ordering> {
        match (a == "0", b == "0") {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            _ => scheme.compare(a, b),
        }
    };
    for (v, _) in &evs {
        cmp(v, v)?;
    }
    cmp(version, version)?;
    evs.sort_by(|a, b| cmp(a.0, b.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1)));
    let mut affected = false;
    for (v, kind) in &evs {
        let order = cmp(version, v)?;
        match kind {
            0 if order != Ordering::Less => affected = true,
            1 | 3 if order != Ordering::Less => affected = false,
            2 if order == Ordering::Greater => affected = false,
            _ => {}
        }
    }
    if !affected {
        return None;
    }
    // the first `fixed` above the installed version
    let fixed = evs
        .iter()
        .filter(|(v, k)| *k == 1 && cmp(version, v) == Some(Ordering::Less))
        .map(|(v, _)| v.to_string())
        .next();
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::Range;

    fn ev(kind: &str, v: &str) -> Event {
        let mut e = Event::default();
        let s = Some(v.to_string());
        match kind {
            "i" => e.introduced = s,
            "f" => e.fixed = s,
            "l" => e.last_affected = s,
            _ => e.limit = s,
        }
        e
    }

    fn affected(kind: &str, events: Vec<Event>, versions: &[&str]) -> Affected {
        Affected {
            ranges: vec![Range {
                kind: kind.into(),
                events,
            }],
            versions: versions.iter().map(|s| s.to_string()).collect(),
            ..Affected::default()
        }
    }

    fn fixed(s: &str) -> Verdict {
        Verdict::Affected {
            fixed: Some(s.into()),
        }
    }

    /// dpkg order decides Debian ranges: `~deb12u2` before the release, epochs, revisions.
    #[test]
    fn debian_ranges() {
        let a = affected(
            "ECOSYSTEM",
            vec![ev("i", "0"), ev("f", "3.0.22-1~deb12u3")],
            &[],
        );
        assert_eq!(
            check(&a, "3.0.22-1~deb12u2", Scheme::Dpkg),
            fixed("3.0.22-1~deb12u3")
        );
        assert_eq!(
            check(&a, "3.0.22-1~deb12u3", Scheme::Dpkg),
            Verdict::NotAffected
        );
        assert_eq!(check(&a, "3.0.22-1", Scheme::Dpkg), Verdict::NotAffected);
        assert_eq!(check(&a, "1:1.0", Scheme::Dpkg), Verdict::NotAffected);
    }

    /// Two spans, last_affected, limit, `versions` and SEMVER.
    #[test]
    fn spans_and_schemes() {
        let a = affected(
            "ECOSYSTEM",
            vec![
                ev("i", "1.0"),
                ev("f", "1.2"),
                ev("i", "1.5"),
                ev("l", "1.6"),
            ],
            &["0.9"],
        );
        assert_eq!(check(&a, "1.1", Scheme::Dpkg), fixed("1.2"));
        assert_eq!(check(&a, "1.3", Scheme::Dpkg), Verdict::NotAffected);
        assert_eq!(
            check(&a, "1.6", Scheme::Dpkg),
            Verdict::Affected { fixed: None }
        );
        assert_eq!(check(&a, "1.6.1", Scheme::Dpkg), Verdict::NotAffected);
        assert_eq!(
            check(&a, "0.9", Scheme::Dpkg),
            Verdict::Affected { fixed: None }
        );
        let s = affected("SEMVER", vec![ev("i", "1.20.0"), ev("f", "1.23.2")], &[]);
        assert_eq!(check(&s, "1.22.1", Scheme::Dpkg), fixed("1.23.2"));
        assert_eq!(check(&s, "v1.23.2", Scheme::Dpkg), Verdict::NotAffected);
        let g = affected("GIT", vec![ev("i", "0")], &[]);
        assert_eq!(check(&g, "1.0", Scheme::Dpkg), Verdict::NotAffected);
        let bad = affected("SEMVER", vec![ev("i", "not a version")], &[]);
        assert_eq!(check(&bad, "1.0.0", Scheme::Dpkg), Verdict::NotAffected);
    }
}
