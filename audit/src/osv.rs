//! OSV records (the schema osv.dev publishes, <https://ossf.github.io/osv-schema/>) as the
//! audit reads them, and loading them.
//!
//! The records are this crate's own serde types, not the `osv` crate's: `osv` 0.3 decodes an
//! ecosystem into a closed enum, so one record naming an ecosystem it does not list (measured:
//! `"Azure Linux:3"`, which osv.dev publishes, and the range type `"GIT"` fails with "unknown
//! variant") fails the whole record, and a dump of all ecosystems cannot be read. Here the
//! ecosystem is a string, range types are strings (unknown ones are ignored), and only the
//! fields the audit uses are kept (no `details`, `references`, `credits`).
//!
//! Accepted inputs ([`load`]): a `.json` file holding one record or an array of records; a
//! `.jsonl`/`.ndjson` file with one record per line; a `.zip` of `.json` records (osv.dev's
//! per-ecosystem `all.zip`); a directory holding any of those (other files are ignored,
//! subdirectories read up to [`Limits::depth`]). Every record, line and zip entry is bounded
//! by [`Limits`]; JSON nesting deeper than serde_json's limit (128) is refused.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AuditError, Limits, Result};

/// One OSV advisory (the fields the audit uses).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// `severity[]`: a scoring system and its vector or value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeverityScore {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub score: String,
}

/// `affected[]`: one package and the versions of it the advisory covers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<Value>,
}

/// `affected[].package`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PackageId {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// `affected[].ranges[]`: `ECOSYSTEM`, `SEMVER` or `GIT` (not evaluated: the audit has no
/// commits) and its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One event of a range (exactly one field is set in a well-formed record).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Record {
    /// The CVE this advisory is (its id, else the first CVE among its aliases and upstream
    /// ids), or its own id.
    pub fn display_id(&self) -> &str {
        if self.id.starts_with("CVE-") {
            return &self.id;
        }
        self.aliases
            .iter()
            .chain(&self.upstream)
            .find(|a| a.starts_with("CVE-"))
            .map_or(self.id.as_str(), String::as_str)
    }

    /// The id and every alias and upstream id.
    pub fn all_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(self.upstream.iter().map(String::as_str))
    }
}

/// Decode one record from `bytes` (`place` names it in errors).
pub fn parse_record(bytes: &[u8], place: &str) -> Result<Record> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| AuditError::BadAdvisory {
        place: place.to_string(),
        why: e.to_string(),
    })?;
    if r.id.is_empty() {
        return Err(AuditError::BadAdvisory {
            place: place.to_string(),
            why: "the record has no `id`".into(),
        });
    }
    Ok(r)
}

/// Decode a `.json` file's bytes: one record, or an array of records.
fn parse_json_file(
    bytes: &[u8],
    place: &str,
    out: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let all: Vec<Record> =
            serde_json::from_slice(bytes).map_err(|e| AuditError::BadAdvisory {
                place: place.to_string(),
                why: e.to_string(),
            })?;
        for (i, r) in all.into_iter().enumerate() {
            if r.id.is_empty() {
                return Err(AuditError::BadAdvisory {
                    place: format!("{place}[{i}]"),
                    why: "the record has no `id`".into(),
                });
            }
            out(r)?;
        }
        Ok(())
    } else {
        out(parse_record(bytes, place)?)
    }
}

/// What kind of advisory file a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Json,
    JsonLines,
    Zip,
}

/// The kind of advisory file `path` names by its extension, if any.
pub fn file_kind(path: &Path) -> Option<FileKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "json" => Some(FileKind::Json),
        "jsonl" | "ndjson" => Some(FileKind::JsonLines),
        "zip" => Some(FileKind::Zip),
        _ => None,
    }
}

/// The advisory files of `source` (itself when it is a file), sorted, with size and
/// modification time (what the index's fingerprint is made of).
pub fn files(source: &Path, limits: &Limits) -> Result<Vec<(PathBuf, u64, i128)>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Io { path, source }
    };
    let meta = std::fs::metadata(source).map_err(io(source))?;
    let stamp = |m: &std::fs::Metadata| -> i128 {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128)
    };
    if meta.is_file() {
        if file_kind(source).is_none() {
            return Err(AuditError::NotAdvisories {
                path: source.to_path_buf(),
                why: "not a .json, .jsonl, .ndjson or .zip file".into(),
            });
        }
        return Ok(vec![(source.to_path_buf(), meta.len(), stamp(&meta))]);
    }
    if !meta.is_dir() {
        return Err(AuditError::NotAdvisories {
            path: source.to_path_buf(),
            why: "neither a file nor a directory".into(),
        });
    }
    let mut out = Vec::new();
    let mut todo = vec![(source.to_path_buf(), 0usize)];
    let mut seen = 0u64;
    while let Some((dir, depth)) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            seen += 1;
            if seen > limits.files {
                return Err(AuditError::TooLarge {
                    place: source.display().to_string(),
                    why: format!("more than {} files", limits.files),
                });
            }
            let path = entry.path();
            // symlinks are not followed: the directory's own files only
            let ft = entry.file_type().map_err(io(&path))?;
            if ft.is_dir() {
                if depth + 1 > limits.depth {
                    return Err(AuditError::TooLarge {
                        place: path.display().to_string(),
                        why: format!("directories nested deeper than {}", limits.depth),
                    });
                }
                todo.push((path, depth + 1));
            } else if ft.is_file() && file_kind(&path).is_some() {
                let m = entry.metadata().map_err(io(&path))?;
                out.push((path, m.len(), stamp(&m)));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Read at most `limit` bytes of `r`; more is [`AuditError::TooLarge`].
fn read_bounded(r: &mut dyn Read, limit: u64, place: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| AuditError::BadAdvisory {
            place: place.to_string(),
            why: e.to_string(),
        })?;
    if buf.len() as u64 > limit {
        return Err(AuditError::TooLarge {
            place: place.to_string(),
            why: format!("an advisory larger than {} bytes", limit),
        });
    }
    Ok(buf)
}

/// Counts what one input has read, against the limits.
struct Budget<'a> {
    limits: &'a Limits,
    records: u64,
    bytes: u64,
}

impl Budget<'_> {
    fn take(&mut self, bytes: u64, place: &str) -> Result<()> {
        self.bytes += bytes;
        if self.bytes > self.limits.total_bytes {
            return Err(AuditError::TooLarge {
                place: place.to_string(),
                why: format!("more than {} bytes of advisories", self.limits.total_bytes),
            });
        }
        Ok(())
    }

    fn record(&mut self, place: &str) -> Result<()> {
        self.records += 1;
        if self.records > self.limits.records {
            return Err(AuditError::TooLarge {
                place: place.to_string(),
                why: format!("more than {} advisories", self.limits.records),
            });
        }
        Ok(())
    }
}

/// Every record of `source` (a file or directory, see the module doc), in file order, handed
/// to `out`.
pub fn load(
    source: &Path,
    limits: &Limits,
    out: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let list = files(source, limits)?;
    if list.is_empty() {
        return Err(AuditError::NotAdvisories {
            path: source.to_path_buf(),
            why: "no .json, .jsonl, .ndjson or .zip files".into(),
        });
    }
    let mut budget = Budget {
        limits,
        records: 0,
        bytes: 0,
    };
    for (path, _, _) in &list {
        load_file(path, &mut budget, out)?;
    }
    Ok(())
}

fn load_file(
    path: &Path,
    budget: &mut Budget<'_>,
    out: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let place = path.display().to_string();
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let limits = budget.limits;
    match file_kind(path) {
        Some(FileKind::Json) => {
            let mut f = File::open(path).map_err(io)?;
            let bytes = read_bounded(&mut f, limits.record_bytes, &place)?;
            budget.take(bytes.len() as u64, &place)?;
            parse_json_file(&bytes, &place, &mut |r| {
                budget.record(&place)?;
                out(r)
            })
        }
        Some(FileKind::JsonLines) => {
            let f = File::open(path).map_err(io)?;
            let mut reader = BufReader::new(f);
            let mut line = Vec::new();
            for n in 1u64.. {
                line.clear();
                let got = (&mut reader)
                    .take(limits.record_bytes + 1)
                    .read_until(b'\n', &mut line)
                    .map_err(io)?;
                if got == 0 {
                    break;
                }
                let at = format!("{place}:{n}");
                if line.len() as u64 > limits.record_bytes && line.last() != Some(&b'\n') {
                    return Err(AuditError::TooLarge {
                        place: at,
                        why: format!("a line longer than {} bytes", limits.record_bytes),
                    });
                }
                budget.take(got as u64, &at)?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                budget.record(&at)?;
                out(parse_record(&line, &at)?)?;
            }
            Ok(())
        }
        Some(FileKind::Zip) => {
            let f = File::open(path).map_err(io)?;
            let mut z =
                zip::ZipArchive::new(BufReader::new(f)).map_err(|e| AuditError::BadAdvisory {
                    place: place.clone(),
                    why: format!("not a zip archive: {e}"),
                })?;
            if z.len() as u64 > limits.records {
                return Err(AuditError::TooLarge {
                    place,
                    why: format!("more than {} entries", limits.records),
                });
            }
            for i in 0..z.len() {
                let mut e = z.by_index(i).map_err(|e| AuditError::BadAdvisory {
                    place: format!("{place} entry {i}"),
                    why: e.to_string(),
                })?;
                if !e.is_file() || !e.name().to_ascii_lowercase().ends_with(".json") {
                    continue;
                }
                let at = format!("{place}!{}", e.name());
                if e.size() > limits.record_bytes {
                    return Err(AuditError::TooLarge {
                        place: at,
                        why: format!("an advisory larger than {} bytes", limits.record_bytes),
                    });
                }
                let bytes = read_bounded(&mut e, limits.record_bytes, &at)?;
                budget.take(bytes.len() as u64, &at)?;
                parse_json_file(&bytes, &at, &mut |r| {
                    budget.record(&at)?;
                    out(r)
                })?;
            }
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(source: &Path, limits: &Limits) -> Result<Vec<Record>> {
        let mut v = Vec::new();
        load(source, limits, &mut |r| {
            v.push(r);
            Ok(())
        })?;
        Ok(v)
    }

    /// A record keeps the fields the audit uses; unknown ecosystems and range types decode.
    #[test]
    fn records_decode_with_any_ecosystem() {
        let j = br#"{"id":"X-1","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2024-1"],
          "affected":[{"package":{"ecosystem":"Azure Linux:3","name":"nginx"},
            "ranges":[{"type":"GIT","repo":"r","events":[{"introduced":"0"}]}]}]}"#;
        let r = parse_record(j, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.display_id(), "CVE-2024-1");
        assert_eq!(r.affected[0].ranges[0].kind, "GIT");
    }

    /// Every accepted form loads; nesting, size and shape errors are typed.
    #[test]
    fn forms_and_hostile_inputs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        std::fs::write(d.join("a.json"), br#"{"id":"A"}"#).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.join("b.jsonl"), b"{\"id\":\"B\"}\n\n{\"id\":\"C\"}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.join("c.json"), br#"[{"id":"D"},{"id":"E"}]"#)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.join("notes.txt"), b"ignored").unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<String> = collect(d, &Limits::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["A", "B", "C", "D", "E"]);

        let deep = format!(
            "{{\"id\":\"X\",\"database_specific\":{}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        std::fs::write(d.join("a.json"), deep).unwrap_or_else(|e| panic!("{e}"));
        let e = collect(d, &Limits::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("recursion limit"), "{e}");

        let small = Limits {
            record_bytes: 4,
            ..Limits::default()
        };
        let e = collect(&d.join("c.json"), &small)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("larger than 4 bytes"), "{e}");
        let e = collect(&d.join("notes.txt"), &Limits::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a .json"), "{e}");
    }
}
