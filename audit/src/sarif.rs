//! SARIF 2.1.0 (OASIS) of a report, as code-scanning services read it: one rule per
//! advisory (its summary, the CVSS score as `security-severity`), one result per finding
//! that counts (level `error` for high and critical, `warning` for medium, `note` below),
//! located at the file that pins the package (`artifact`, given by the driver: the spec's
//! `container.yaml` or the Debian lock). Suppressed findings are results with a
//! `suppressions` entry carrying the reason.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::matching::Report;
use crate::severity::Severity;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        _ => "note",
    }
}

/// The SARIF log of `report`; `artifact_of` gives the file that pins a package (by name).
pub fn sarif(report: &Report, artifact_of: &dyn Fn(&str) -> String) -> Value {
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    for f in &report.findings {
        rules.entry(f.id.as_str()).or_insert_with(|| {
            let text = if f.summary.is_empty() {
                f.id.clone()
            } else {
                f.summary.clone()
            };
            let mut props = json!({ "tags": ["security", "vulnerability"] });
            if let (Some(score), Some(p)) = (f.score, props.as_object_mut()) {
                p.insert("security-severity".into(), json!(format!("{score:.1}")));
            }
            json!({
                "id": f.id,
                "shortDescription": { "text": text },
                "help": { "text": format!("{} ({}); aliases: {}", f.id, f.osv_id, f.aliases.join(", ")) },
                "properties": props,
            })
        });
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let fixed = f
                .fixed
                .as_deref()
                .map_or("no fixed version is known".to_string(), |v| format!("fixed in {v}"));
            let mut r = json!({
                "ruleId": f.id,
                "ruleIndex": index.get(f.id.as_str()).copied().unwrap_or(0),
                "level": level(f.severity),
                "message": { "text": format!("{} {} is affected by {} ({} severity); {fixed}", f.package, f.installed, f.id, f.severity.as_str()) },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": artifact_of(&f.package) } },
                    "logicalLocations": [{ "name": f.package, "fullyQualifiedName": f.purl.clone().unwrap_or_else(|| f.store_path.clone()), "kind": "package" }],
                }],
                "properties": { "installed": f.installed, "fixed": f.fixed, "severity": f.severity.as_str(), "storePath": f.store_path, "layers": f.layers },
            });
            if let (Some(s), Some(obj)) = (&f.suppressed, r.as_object_mut()) {
                obj.insert(
                    "suppressions".into(),
                    json!([{ "kind": "external", "justification": s.reason }]),
                );
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "buildit audit",
                "informationUri": "https://example.invalid/buildit/docs/supply-chain.md",
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}
