//! The advisory index: every record of an advisory source (a file or directory, see
//! [`crate::osv`]) stored once, under the keys a package is matched by —
//! `eco:ECOSYSTEM:NAME` (`eco:Debian:12:openssl`), `purl:TYPE/NAMESPACE/NAME` from
//! `affected[].package.purl`, and `cpe:VENDOR:PRODUCT` from `affected[].database_specific.cpe`
//! or `.cpes` (where converters of NVD data put the CPEs a record applies to).
//!
//! It is an SQLite file in the cache directory, named by the source's path, built in a
//! temporary file and renamed into place, and reused while its fingerprint (a blake3 over the
//! source's files, their sizes and modification times) matches: parsing 100,000 advisories
//! takes seconds, looking up a closure's packages in the built index milliseconds
//! (docs/benchmarks.md, *Supply chain*).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::osv::{self, Affected, Record};
use crate::{AuditError, Limits, Result};

/// Bumped when the index's tables or keys change.
const SCHEMA: &str = "buildit-audit-index-v1";

/// The key of a purl (type, namespace and name; version, qualifiers and subpath dropped), or
/// `None` when it is not a purl.
pub fn purl_key(purl: &str) -> Option<String> {
    let p = packageurl::PackageUrl::from_str(purl.trim()).ok()?;
    let ns = p.namespace().unwrap_or("");
    Some(format!(
        "purl:{}/{}/{}",
        p.ty().to_ascii_lowercase(),
        ns,
        p.name()
    ))
}

/// The key of a CPE 2.3 formatted string or 2.2 URI (vendor and product), or `None`.
pub fn cpe_key(cpe: &str) -> Option<String> {
    let cpe = cpe.trim().to_ascii_lowercase();
    let rest = cpe
        .strip_prefix("cpe:2.3:")
        .or_else(|| cpe.strip_prefix("cpe:/"))?;
    let mut parts = rest.split(':');
    let _part = parts.next()?;
    let vendor = parts.next().filter(|s| !s.is_empty() && *s != "*")?;
    let product = parts.next().filter(|s| !s.is_empty() && *s != "*")?;
    Some(format!("cpe:{vendor}:{product}"))
}

/// The version a CPE names, if it names one.
pub fn cpe_version(cpe: &str) -> Option<String> {
    let cpe = cpe.trim();
    let rest = cpe
        .strip_prefix("cpe:2.3:")
        .or_else(|| cpe.strip_prefix("cpe:/"))?;
    let v = rest.split(':').nth(3)?;
    (!v.is_empty() && v != "*" && v != "-").then(|| v.to_string())
}

/// The CPEs an `affected` entry names in its `database_specific`.
pub fn cpes_of(a: &Affected) -> Vec<String> {
    let Some(db) = &a.database_specific else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["cpe", "cpes"] {
        match db.get(key) {
            Some(serde_json::Value::String(s)) => out.push(s.clone()),
            Some(serde_json::Value::Array(list)) => {
                out.extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)))
            }
            _ => {}
        }
    }
    out
}

/// Every key an `affected` entry is found by.
pub fn keys_of(a: &Affected) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(p) = &a.package {
        if !p.ecosystem.is_empty() && !p.name.is_empty() {
            keys.push(format!("eco:{}:{}", p.ecosystem, p.name));
        }
        if let Some(k) = p.purl.as_deref().and_then(purl_key) {
            keys.push(k);
        }
    }
    keys.extend(cpes_of(a).iter().filter_map(|c| cpe_key(c)));
    keys
}

/// An opened advisory index.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// Whether this open built it (the advisory files were new or had changed).
    pub built: bool,
    /// How many advisories it holds.
    pub records: u64,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| AuditError::Index {
        path: path.to_path_buf(),
        source,
    }
}

/// The fingerprint of `source`'s advisory files.
fn fingerprint(source: &Path, limits: &Limits) -> Result<String> {
    let files = osv::files(source, limits)?;
    let mut h = blake3::Hasher::new();
    h.update(SCHEMA.as_bytes());
    for (p, size, mtime) in &files {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update(&[0]);
        h.update(&size.to_le_bytes());
        h.update(&mtime.to_le_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

impl Index {
    /// The index of `source` from `cache_dir`, built first when missing or stale.
    pub fn open(source: &Path, cache_dir: &Path, limits: &Limits) -> Result<Index> {
        let source = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
        let fp = fingerprint(&source, limits)?;
        let name = blake3::hash(source.as_os_str().as_encoded_bytes()).to_hex();
        let path = cache_dir.join(format!("index-{}.sqlite", &name.as_str()[..24]));
        if path.is_file() {
            if let Ok(ix) = Index::open_existing(&path) {
                if ix.meta("fingerprint")?.as_deref() == Some(fp.as_str()) {
                    return Ok(ix);
                }
            }
        }
        std::fs::create_dir_all(cache_dir).map_err(|source| AuditError::Io {
            path: cache_dir.to_path_buf(),
            source,
        })?;
        Index::build(&source, &path, &fp, limits)?;
        let mut ix = Index::open_existing(&path)?;
        ix.built = true;
        Ok(ix)
    }

    fn open_existing(path: &Path) -> Result<Index> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_err(path))?;
        let mut ix = Index {
            conn,
            path: path.to_path_buf(),
            built: false,
            records: 0,
        };
        ix.records = ix
            .meta("records")?
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(ix)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(db_err(&self.path))
    }

    /// Parse every record of `source` into a new index at `path` (through a temporary file).
    fn build(source: &Path, path: &Path, fp: &str, limits: &Limits) -> Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let err = db_err(&tmp);
        let result = (|| -> Result<()> {
            let mut conn = Connection::open(&tmp).map_err(&err)?;
            conn.execute_batch(
                "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
                 CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE advisory(n INTEGER PRIMARY KEY, id TEXT NOT NULL, record TEXT NOT NULL);
                 CREATE TABLE key(k TEXT NOT NULL, n INTEGER NOT NULL);",
            )
            .map_err(&err)?;
            let tx = conn.transaction().map_err(&err)?;
            let mut count = 0u64;
            {
                let mut add = tx
                    .prepare("INSERT INTO advisory(n, id, record) VALUES (?1, ?2, ?3)")
                    .map_err(&err)?;
                let mut key = tx
                    .prepare("INSERT INTO key(k, n) VALUES (?1, ?2)")
                    .map_err(&err)?;
                osv::load(source, limits, &mut |r: Record| {
                    if r.withdrawn.is_some() {
                        return Ok(());
                    }
                    let keys: BTreeSet<String> = r.affected.iter().flat_map(keys_of).collect();
                    if keys.is_empty() {
                        return Ok(());
                    }
                    count += 1;
                    let n = count as i64;
                    let text = serde_json::to_string(&r).unwrap_or_default();
                    add.execute(params![n, r.id, text]).map_err(&err)?;
                    for k in &keys {
                        key.execute(params![k, n]).map_err(&err)?;
                    }
                    Ok(())
                })?;
            }
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('fingerprint', ?1), ('records', ?2), ('source', ?3)",
                params![fp, count.to_string(), source.display().to_string()],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            conn.execute_batch("CREATE INDEX key_k ON key(k);")
                .map_err(&err)?;
            Ok(())
        })();
        match result {
            Ok(()) => std::fs::rename(&tmp, path).map_err(|source| AuditError::Io {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Every advisory found under any of `keys`, each once, in index order.
    pub fn lookup(&self, keys: &[String]) -> Result<Vec<Record>> {
        let err = db_err(&self.path);
        let mut ns = BTreeSet::new();
        let mut q = self
            .conn
            .prepare_cached("SELECT n FROM key WHERE k = ?1")
            .map_err(&err)?;
        for k in keys {
            let rows = q.query_map([k], |r| r.get::<_, i64>(0)).map_err(&err)?;
            for n in rows {
                ns.insert(n.map_err(&err)?);
            }
        }
        let mut get = self
            .conn
            .prepare_cached("SELECT id, record FROM advisory WHERE n = ?1")
            .map_err(&err)?;
        let mut out = Vec::new();
        for n in ns {
            let (id, text): (String, String) = get
                .query_row([n], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(&err)?;
            out.push(osv::parse_record(
                text.as_bytes(),
                &format!("index record {id}"),
            )?);
        }
        Ok(out)
    }

    /// Where the index file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys drop versions and qualifiers; CPEs of both forms give vendor and product.
    #[test]
    fn keys() {
        assert_eq!(
            purl_key("pkg:generic/nginx@1.22.1?download_url=x").as_deref(),
            Some("purl:generic//nginx")
        );
        assert_eq!(
            purl_key("pkg:deb/debian/openssl").as_deref(),
            Some("purl:deb/debian/openssl")
        );
        assert_eq!(purl_key("nginx"), None);
        assert_eq!(
            cpe_key("cpe:2.3:a:F5:nginx:1.22.1:*:*:*:*:*:*:*").as_deref(),
            Some("cpe:f5:nginx")
        );
        assert_eq!(cpe_key("cpe:/a:f5:nginx").as_deref(), Some("cpe:f5:nginx"));
        assert_eq!(
            cpe_version("cpe:2.3:a:f5:nginx:1.22.1:*").as_deref(),
            Some("1.22.1")
        );
        assert_eq!(cpe_key("cpe:2.3:a:*:*"), None);
    }

    /// The index is built once, reused while the files are unchanged, rebuilt when they
    /// change; lookups find records by every key.
    #[test]
    fn built_once_and_rebuilt_on_change() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let src = dir.path().join("adv.jsonl");
        let cache = dir.path().join("cache");
        let rec = |id: &str| {
            format!(
                r#"{{"id":"{id}","affected":[{{"package":{{"ecosystem":"Debian:12","name":"openssl","purl":"pkg:deb/debian/openssl"}}}}]}}"#
            )
        };
        std::fs::write(&src, rec("A") + "\n" + r#"{"id":"NOPKG"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let ix = Index::open(&src, &cache, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(ix.built);
        assert_eq!(ix.records, 1);
        let found = ix
            .lookup(&[
                "eco:Debian:12:openssl".into(),
                "purl:deb/debian/openssl".into(),
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.len(), 1);
        let again = Index::open(&src, &cache, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!again.built);
        std::fs::write(&src, rec("A") + "\n" + &rec("B") + "\n").unwrap_or_else(|e| panic!("{e}"));
        let third = Index::open(&src, &cache, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(third.built);
        assert_eq!(third.records, 2);
    }
}
