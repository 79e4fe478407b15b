//! A finding's qualitative severity: from a CVSS vector (v3.0, v3.1 or v4.0, scored with the
//! `cvss` crate: none/low/medium/high/critical at 0.1, 4.0, 7.0 and 9.0) in the `affected`
//! entry's or the record's `severity`, else from a database's own rating
//! (`database_specific.severity`: GitHub's LOW/MODERATE/HIGH/CRITICAL), else from Debian's
//! urgency (`ecosystem_specific.urgency`), else unknown. Unknown ranks below low.

use std::str::FromStr;

use serde_json::Value;

use crate::osv::{Affected, Record, SeverityScore};

/// A qualitative severity, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::None,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// A severity by its name (any case; `moderate` is medium).
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unknown" => Some(Severity::Unknown),
            "none" | "negligible" => Some(Severity::None),
            "low" | "unimportant" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" | "important" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The rating of a CVSS base score.
    pub fn of_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::None
        }
    }
}

/// A severity and the CVSS score and vector it came from, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Rated {
    pub severity: Severity,
    pub score: Option<f64>,
    pub vector: Option<String>,
}

/// The highest score of the CVSS vectors among `scores` that parse.
fn cvss(scores: &[SeverityScore]) -> Option<(f64, String)> {
    scores
        .iter()
        .filter(|s| matches!(s.kind.as_str(), "CVSS_V3" | "CVSS_V4"))
        .filter_map(|s| {
            let v = cvss::Cvss::from_str(s.score.trim()).ok()?;
            Some((v.score(), s.score.trim().to_string()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn named(v: Option<&Value>, key: &str) -> Option<Severity> {
    v?.get(key)?.as_str().and_then(Severity::parse)
}

/// The severity of `record` for the package of `affected`.
pub fn rate(record: &Record, affected: &Affected) -> Rated {
    if let Some((score, vector)) = cvss(&affected.severity).or_else(|| cvss(&record.severity)) {
        return Rated {
            severity: Severity::of_score(score),
            score: Some((score * 10.0).round() / 10.0),
            vector: Some(vector),
        };
    }
    let severity = named(affected.database_specific.as_ref(), "severity")
        .or_else(|| named(record.database_specific.as_ref(), "severity"))
        .or_else(|| named(affected.ecosystem_specific.as_ref(), "urgency"))
        .or_else(|| named(affected.ecosystem_specific.as_ref(), "severity"))
        .unwrap_or(Severity::Unknown);
    Rated {
        severity,
        score: None,
        vector: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CVSS v3.1 vectors are scored; a database rating is the fallback; order is total.
    #[test]
    fn ratings() {
        let mut r = Record {
            severity: vec![SeverityScore {
                kind: "CVSS_V3".into(),
                score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
            }],
            ..Record::default()
        };
        let a = Affected::default();
        let got = rate(&r, &a);
        assert_eq!((got.severity, got.score), (Severity::Critical, Some(9.8)));
        r.severity[0].score = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N".into();
        assert_eq!(rate(&r, &a).severity, Severity::Low);
        r.severity[0].score = "garbage".into();
        r.database_specific = Some(serde_json::json!({"severity": "MODERATE"}));
        assert_eq!(rate(&r, &a).severity, Severity::Medium);
        assert!(Severity::Unknown < Severity::Low && Severity::High < Severity::Critical);
    }
}
