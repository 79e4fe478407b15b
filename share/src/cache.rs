//! The lookup cache: what each repository answered when asked for a path's record, kept for
//! a while so that a repeated lookup (a warm no-op build) asks no repository anything.
//!
//! One small SQLite file, `lookup-cache.sqlite` under the store's state directory
//! (`StoreLayout::state_dir()`), holds one row per (repository, store path): the repository
//! is keyed by its location text (`Transport::describe`), so two names for one location share
//! answers and one name moved to another location does not. A row is either *present* (the
//! record's bytes, kept [`CacheTtl::positive`], 30 days by default) or *absent* (the
//! repository did not have the path, kept [`CacheTtl::negative`], one hour by default: a path
//! someone uploads is found within the hour). Expired rows are ignored, and removed whenever
//! the cache is opened.
//!
//! The cache is an optimisation only, never a source of trust or of errors:
//! - a present row holds the record's bytes, and the substituter parses and trust-checks them
//!   on every use exactly as if they had just been downloaded (a key revoked since is honoured);
//!   the archive is fetched and verified as always;
//! - only records that parsed and passed the trust check are cached, so a repository that
//!   fixes a broken record is asked again next time;
//! - a file that cannot be opened, is not a database, or has another schema is removed and
//!   made again; if even that fails the cache is disabled for the command, and any failing
//!   read or write later counts as a miss. Nothing here returns an error.
//!
//! The file is opened on first use, not when the cache is made: a command whose repositories
//! are all local (`file://`, whose answers the substituter does not cache: reading the record
//! costs what reading the cache would) never creates or opens it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buildit_store::StorePath;
use rusqlite::{params, Connection, OptionalExtension};

/// The cache file's name under the store's state directory.
pub const CACHE_FILE: &str = "lookup-cache.sqlite";

/// The schema; its `user_version` marks a file this code made.
const SCHEMA_VERSION: i64 = 1;

/// How long answers are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTtl {
    /// A found record.
    pub positive: Duration,
    /// "Not there".
    pub negative: Duration,
}

impl Default for CacheTtl {
    fn default() -> CacheTtl {
        CacheTtl {
            positive: Duration::from_secs(30 * 24 * 3600),
            negative: Duration::from_secs(3600),
        }
    }
}

/// What a repository answered, as the cache remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cached {
    /// The record's bytes (to be parsed and trust-checked again by the reader).
    Present(Vec<u8>),
    /// The repository did not have the path.
    Absent,
}

/// The lookup cache of one store (see the module documentation).
pub struct LookupCache {
    /// The database file; `None` for a cache that remembers nothing.
    file: Option<PathBuf>,
    /// The connection, made on first use (`None` inside: the file could not be made usable).
    conn: std::cell::OnceCell<Option<Connection>>,
    ttl: CacheTtl,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ttl_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Open `file` and check (or make) the schema.
fn open_conn(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    // A cache may lose its last answers in a crash (they are asked again): no fsync per
    // answer, which would cost more than the lookups it saves.
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous=OFF;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS lookups (
                 repo TEXT NOT NULL,
                 path TEXT NOT NULL,
                 record BLOB,
                 expires_ms INTEGER NOT NULL,
                 PRIMARY KEY (repo, path)
             );
             PRAGMA user_version = 1;",
        )?;
    } else if version != SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidQuery);
    }
    // A file that is not a database, or whose table is not ours, fails here.
    conn.query_row(
        "SELECT count(repo), count(path), count(record), count(expires_ms) FROM lookups WHERE 0",
        [],
        |_| Ok(()),
    )?;
    Ok(conn)
}

impl LookupCache {
    /// The cache of the store whose state directory is `state_dir`, with these expiry times.
    pub fn open(state_dir: &Path, ttl: CacheTtl) -> LookupCache {
        LookupCache::open_file(&state_dir.join(CACHE_FILE), ttl)
    }

    /// The cache in `file`: on first use made when absent, made again when broken, disabled
    /// when neither works (see the module documentation).
    pub fn open_file(file: &Path, ttl: CacheTtl) -> LookupCache {
        LookupCache {
            file: Some(file.to_path_buf()),
            conn: std::cell::OnceCell::new(),
            ttl,
        }
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> LookupCache {
        LookupCache {
            file: None,
            conn: std::cell::OnceCell::new(),
            ttl: CacheTtl::default(),
        }
    }

    /// The connection: the file opened (and pruned of expired rows) on the first call.
    fn conn(&self) -> Option<&Connection> {
        self.conn
            .get_or_init(|| {
                let file = self.file.as_deref()?;
                let conn = open_conn(file).ok().or_else(|| {
                    for f in [
                        file.to_path_buf(),
                        PathBuf::from(format!("{}-journal", file.display())),
                        PathBuf::from(format!("{}-wal", file.display())),
                        PathBuf::from(format!("{}-shm", file.display())),
                    ] {
                        let _ = std::fs::remove_file(f);
                    }
                    open_conn(file).ok()
                })?;
                let _ = conn.execute(
                    "DELETE FROM lookups WHERE expires_ms <= ?1",
                    params![now_ms()],
                );
                Some(conn)
            })
            .as_ref()
    }

    /// Whether the cache works (it has a database; this opens it).
    pub fn is_enabled(&self) -> bool {
        self.conn().is_some()
    }

    /// The unexpired answer of repository `repo` for `path`, if any.
    pub fn get(&self, repo: &str, path: &StorePath) -> Option<Cached> {
        let conn = self.conn()?;
        let row: Option<Option<Vec<u8>>> = conn
            .query_row(
                "SELECT record FROM lookups WHERE repo = ?1 AND path = ?2 AND expires_ms > ?3",
                params![repo, path.to_string(), now_ms()],
                |r| r.get(0),
            )
            .optional()
            .ok()?;
        row.map(|record| match record {
            Some(bytes) => Cached::Present(bytes),
            None => Cached::Absent,
        })
    }

    /// Remember the answer of `repo` for `path`.
    pub fn put(&self, repo: &str, path: &StorePath, answer: &Cached) {
        let Some(conn) = self.conn() else {
            return;
        };
        let (record, ttl) = match answer {
            Cached::Present(b) => (Some(b.as_slice()), self.ttl.positive),
            Cached::Absent => (None, self.ttl.negative),
        };
        let expires = now_ms().saturating_add(ttl_ms(ttl));
        let _ = conn.execute(
            "INSERT OR REPLACE INTO lookups (repo, path, record, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![repo, path.to_string(), record, expires],
        );
    }

    /// Forget what `repo` answered for `path` (its record turned out to be unusable).
    pub fn forget(&self, repo: &str, path: &StorePath) {
        if let Some(conn) = self.conn() {
            let _ = conn.execute(
                "DELETE FROM lookups WHERE repo = ?1 AND path = ?2",
                params![repo, path.to_string()],
            );
        }
    }

    /// Remove expired rows (also done when the file is opened, so it holds only live answers).
    pub fn prune(&self) {
        if let Some(conn) = self.conn() {
            let _ = conn.execute(
                "DELETE FROM lookups WHERE expires_ms <= ?1",
                params![now_ms()],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(c: char) -> StorePath {
        StorePath::parse(&format!("/bld/store/{}-x", c.to_string().repeat(32))).expect("path")
    }

    #[test]
    fn answers_are_kept_per_repository_until_they_expire() {
        let t = tempfile::tempdir().expect("tmp");
        let c = LookupCache::open(t.path(), CacheTtl::default());
        assert!(c.is_enabled());
        assert_eq!(c.get("file:///a", &sp('a')), None);
        c.put("file:///a", &sp('a'), &Cached::Present(b"rec".to_vec()));
        c.put("file:///a", &sp('b'), &Cached::Absent);
        assert_eq!(
            c.get("file:///a", &sp('a')),
            Some(Cached::Present(b"rec".to_vec()))
        );
        assert_eq!(c.get("file:///a", &sp('b')), Some(Cached::Absent));
        assert_eq!(c.get("file:///other", &sp('a')), None);
        c.forget("file:///a", &sp('a'));
        assert_eq!(c.get("file:///a", &sp('a')), None);
        // a second handle on the same file sees the answers
        drop(c);
        let c = LookupCache::open(t.path(), CacheTtl::default());
        assert_eq!(c.get("file:///a", &sp('b')), Some(Cached::Absent));

        let short = LookupCache::open(
            t.path(),
            CacheTtl {
                positive: Duration::from_secs(3600),
                negative: Duration::from_millis(200),
            },
        );
        short.put("file:///a", &sp('c'), &Cached::Absent);
        short.put("file:///a", &sp('d'), &Cached::Present(b"r".to_vec()));
        assert_eq!(short.get("file:///a", &sp('c')), Some(Cached::Absent));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(short.get("file:///a", &sp('c')), None);
        assert_eq!(
            short.get("file:///a", &sp('d')),
            Some(Cached::Present(b"r".to_vec()))
        );
        short.prune();
        assert!(short.get("file:///a", &sp('d')).is_some());
    }

    #[test]
    fn a_broken_cache_file_is_made_again() {
        let t = tempfile::tempdir().expect("tmp");
        let f = t.path().join(CACHE_FILE);
        std::fs::write(&f, b"this is not a database, just text that is long enough").expect("w");
        let c = LookupCache::open(t.path(), CacheTtl::default());
        assert!(c.is_enabled());
        c.put("r", &sp('a'), &Cached::Absent);
        assert_eq!(c.get("r", &sp('a')), Some(Cached::Absent));
        drop(c);
        // a database of someone else's schema
        std::fs::remove_file(&f).expect("rm");
        let other = Connection::open(&f).expect("open");
        other
            .execute_batch("CREATE TABLE lookups (x INTEGER); PRAGMA user_version = 1;")
            .expect("schema");
        drop(other);
        let c = LookupCache::open(t.path(), CacheTtl::default());
        assert!(c.is_enabled());
        c.put("r", &sp('a'), &Cached::Absent);
        assert_eq!(c.get("r", &sp('a')), Some(Cached::Absent));
        // a directory nobody can open as a file: disabled, never an error
        let d = LookupCache::open(&t.path().join("no/such/dir"), CacheTtl::default());
        assert!(!d.is_enabled());
        d.put("r", &sp('a'), &Cached::Absent);
        assert_eq!(d.get("r", &sp('a')), None);
    }
}
