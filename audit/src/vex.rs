//! OpenVEX (<https://openvex.dev>, v0.2.0) in and out.
//!
//! In ([`Vex::read`]): a statement whose status is `not_affected` or `fixed` suppresses the
//! findings of its vulnerability (by name or alias: a CVE suppresses the Debian or GitHub
//! advisory that aliases it) in the products it lists — purls, compared by type, namespace and
//! name, and by version when the product names one; a statement without products applies to
//! every package. The reason shown is the status with its justification, impact statement
//! and notes. `affected` and `under_investigation` statements suppress nothing. Both the
//! v0.2.0 shapes (`"vulnerability": {"name": …}`, `"products": [{"@id": …}]`) and the older
//! plain strings are read.
//!
//! Out ([`emit`]): one statement per finding: `affected` (with the fixed version as the
//! action), `fixed` for a patch that declares it, and the status of the statement that
//! suppressed it.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::index::purl_key;
use crate::matching::{Finding, Report, Suppression};
use crate::{AuditError, Result};

/// The largest VEX document read.
pub const MAX_VEX_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Named {
    Name(String),
    Object {
        #[serde(default, alias = "@id")]
        name: String,
        #[serde(default)]
        aliases: Vec<String>,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Product {
    Id(String),
    Object {
        #[serde(rename = "@id", default)]
        id: String,
        #[serde(default)]
        subcomponents: Vec<Product>,
    },
}

#[derive(Clone, Debug, Deserialize)]
struct Statement {
    vulnerability: Named,
    #[serde(default)]
    products: Vec<Product>,
    status: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    status_notes: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct Document {
    statements: Vec<Statement>,
}

/// A read OpenVEX document.
#[derive(Clone, Debug)]
pub struct Vex {
    statements: Vec<Statement>,
}

fn product_ids(p: &Product, out: &mut Vec<String>) {
    match p {
        Product::Id(s) => out.push(s.clone()),
        Product::Object { id, subcomponents } => {
            if !id.is_empty() {
                out.push(id.clone());
            }
            for s in subcomponents {
                product_ids(s, out);
            }
        }
    }
}

/// Whether product purl `product` names the package with purl `purl`.
fn product_matches(product: &str, purl: &str) -> bool {
    let (Some(pk), Some(fk)) = (purl_key(product), purl_key(purl)) else {
        return product == purl;
    };
    if pk != fk {
        return false;
    }
    let version = |s: &str| -> Option<String> {
        let s = s.split(['?', '#']).next()?;
        let (_, v) = s.rsplit_once('@')?;
        Some(v.to_string())
    };
    match version(product) {
        Some(v) => version(purl)
            .is_some_and(|pv| pv == v || pv.replace("%2B", "+") == v.replace("%2B", "+")),
        None => true,
    }
}

impl Vex {
    /// Read the OpenVEX document at `path` (at most [`MAX_VEX_BYTES`]).
    pub fn read(path: &Path) -> Result<Vex> {
        use std::io::Read;
        let bad = |why: String| AuditError::BadVex {
            path: path.to_path_buf(),
            why,
        };
        let f = std::fs::File::open(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut bytes = Vec::new();
        f.take(MAX_VEX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string()))?;
        if bytes.len() as u64 > MAX_VEX_BYTES {
            return Err(bad(format!("larger than {MAX_VEX_BYTES} bytes")));
        }
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        for s in &doc.statements {
            if !matches!(
                s.status.as_str(),
                "not_affected" | "affected" | "fixed" | "under_investigation"
            ) {
                return Err(bad(format!(
                    "unknown status `{}` (not_affected, affected, fixed or under_investigation)",
                    s.status
                )));
            }
        }
        Ok(Vex {
            statements: doc.statements,
        })
    }

    /// The suppression a statement gives `f`, if any.
    pub fn suppression(&self, f: &Finding) -> Option<Suppression> {
        let ids: Vec<&str> = f.ids().collect();
        self.statements.iter().find_map(|s| {
            if !matches!(s.status.as_str(), "not_affected" | "fixed") {
                return None;
            }
            let (name, aliases) = match &s.vulnerability {
                Named::Name(n) => (n.as_str(), &[][..]),
                Named::Object { name, aliases } => (name.as_str(), aliases.as_slice()),
            };
            let named = std::iter::once(name)
                .chain(aliases.iter().map(String::as_str))
                .any(|n| ids.contains(&n));
            if !named {
                return None;
            }
            let mut products = Vec::new();
            for p in &s.products {
                product_ids(p, &mut products);
            }
            let applies = products.is_empty()
                || f.purl
                    .as_deref()
                    .is_some_and(|purl| products.iter().any(|p| product_matches(p, purl)));
            if !applies {
                return None;
            }
            let mut reason = s.status.clone();
            for extra in [&s.justification, &s.impact_statement, &s.status_notes]
                .into_iter()
                .flatten()
            {
                reason.push_str(": ");
                reason.push_str(extra);
            }
            Some(Suppression {
                by: "vex".into(),
                status: s.status.clone(),
                reason,
            })
        })
    }
}

/// An OpenVEX document of `report`'s findings, by `author` at `timestamp` (RFC 3339).
pub fn emit(report: &Report, author: &str, timestamp: &str) -> Value {
    let statements: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut s = json!({
                "vulnerability": { "name": f.id, "aliases": f.ids().skip(1).filter(|a| *a != f.id).collect::<Vec<_>>() },
                "products": [ { "@id": f.purl.clone().unwrap_or_else(|| f.store_path.clone()) } ],
            });
            let obj = s.as_object_mut();
            if let Some(obj) = obj {
                match &f.suppressed {
                    Some(sup) => {
                        obj.insert("status".into(), json!(sup.status));
                        if sup.status == "not_affected" {
                            obj.insert(
                                "impact_statement".into(),
                                json!(sup.reason),
                            );
                        } else {
                            obj.insert("status_notes".into(), json!(sup.reason));
                        }
                    }
                    None => {
                        obj.insert("status".into(), json!("affected"));
                        let action = match &f.fixed {
                            Some(v) => format!("update {} to {v} or later", f.package),
                            None => "no fixed version is known".to_string(),
                        };
                        obj.insert("action_statement".into(), json!(action));
                    }
                }
            }
            s
        })
        .collect();
    let body = serde_json::to_string(&statements).unwrap_or_default();
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": format!("urn:buildit:vex:{}", &blake3::hash(body.as_bytes()).to_hex().as_str()[..32]),
        "author": author,
        "timestamp": timestamp,
        "version": 1,
        "tooling": "buildit audit",
        "statements": statements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products match by type, namespace and name, and by version only when they name one.
    #[test]
    fn products() {
        let libc = "pkg:deb/debian/libc6@2.36-9+deb12u14?arch=amd64&distro=debian-12";
        assert!(product_matches("pkg:deb/debian/libc6", libc));
        assert!(product_matches(
            "pkg:deb/debian/libc6@2.36-9+deb12u14",
            libc
        ));
        assert!(!product_matches(
            "pkg:deb/debian/libc6@2.36-9+deb12u13",
            libc
        ));
        assert!(!product_matches("pkg:deb/debian/libssl3", libc));
        assert!(product_matches(
            "pkg:generic/nginx@1.22.1",
            "pkg:generic/nginx@1.22.1"
        ));
        assert!(!product_matches(
            "pkg:generic/nginx@1.24.0",
            "pkg:generic/nginx@1.22.1"
        ));
    }

    /// Both statement shapes read; an unknown status is refused; too large is refused.
    #[test]
    fn documents() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("v.json");
        std::fs::write(
            &p,
            r#"{"statements":[{"vulnerability":"CVE-1","products":["pkg:generic/x"],"status":"fixed"},
               {"vulnerability":{"name":"CVE-2","aliases":["GHSA-1"]},"status":"not_affected"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let v = Vex::read(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.statements.len(), 2);
        std::fs::write(
            &p,
            r#"{"statements":[{"vulnerability":"CVE-1","status":"maybe"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = Vex::read(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown status `maybe`"), "{e}");
        std::fs::write(&p, "[".repeat(1000)).unwrap_or_else(|e| panic!("{e}"));
        assert!(Vex::read(&p).is_err());
    }
}
