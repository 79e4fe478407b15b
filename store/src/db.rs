//! The store database: one SQLite file (`ROOT/var/buildit/db.sqlite`, WAL, `synchronous=NORMAL`)
//! recording which store paths are valid, their content hashes, sizes, derivers, signatures and
//! references (indexed both ways), which derivation outputs produced which paths, and
//! realisations. A `buildit_schema` table carries the schema version; a file that is not a
//! SQLite database, or a database that is not a buildit store, is refused with a clear error.
//!
//! A connection does not checkpoint when it closes (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`): the
//! write-ahead log stays beside the database and SQLite's automatic checkpoint (every 1000
//! pages) moves it into the main file. Closing with a checkpoint would cost each command two
//! fsyncs, and deleting the log on close would cost the next command two more when it makes
//! the log again (its header and its directory are synced); on ext4 each of those waits for
//! the journal to commit the objects the command just wrote, 5–12 ms apiece. Durability is
//! what `synchronous=NORMAL` in WAL mode gives either way: a power loss may drop the last
//! commits, never corrupt the file, and an object without its row is an unregistered leftover.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS buildit_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS valid_paths (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    deriver TEXT,
    registration_time INTEGER NOT NULL,
    signatures TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS refs (
    referrer INTEGER NOT NULL,
    reference INTEGER NOT NULL,
    PRIMARY KEY (referrer, reference)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_by_reference ON refs (reference, referrer);
CREATE TABLE IF NOT EXISTS derivation_outputs (
    drv TEXT NOT NULL,
    output TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (drv, output)
);
CREATE INDEX IF NOT EXISTS derivation_outputs_by_path ON derivation_outputs (path);
CREATE TABLE IF NOT EXISTS realisations (
    drv_hash TEXT NOT NULL,
    output TEXT NOT NULL,
    path TEXT NOT NULL,
    signatures TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (drv_hash, output)
);
";

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the store database {path} is not a buildit store database ({detail})")]
    Foreign { path: PathBuf, detail: String },
    #[error("the store database {path} is corrupt or unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the store database {path} has schema version {found}, this buildit understands {SCHEMA_VERSION}")]
    Version { path: PathBuf, found: i64 },
    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// An open store database.
pub struct Db {
    pub conn: Connection,
    pub path: PathBuf,
}

impl Db {
    /// Open (creating when absent) the database at `path`.
    ///
    /// SQLite does not call the busy handler in every case where opening meets another
    /// connection's lock (switching to WAL while another process creates the file, WAL
    /// recovery): those `SQLITE_BUSY` results are retried here for up to a minute, so two
    /// processes that open a fresh store at once both succeed.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut pause = Duration::from_millis(2);
        loop {
            match Db::open_once(path) {
                Err(DbError::Corrupt { source, .. })
                    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Db, DbError> {
        let corrupt = |source| DbError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(corrupt)?;
        conn.busy_timeout(Duration::from_secs(60))
            .map_err(corrupt)?;
        // The first statement that reads the file tells a foreign or corrupt file apart.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Foreign {
                path: path.into(),
                detail: format!("cannot switch to WAL mode (journal mode {mode})"),
            });
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")
            .map_err(corrupt)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(corrupt)?;
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .map_err(corrupt)?;
        let has_schema: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='buildit_schema'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(corrupt)?
            > 0;
        if tables > 0 && !has_schema {
            return Err(DbError::Foreign {
                path: path.into(),
                detail: "it has tables but no buildit_schema table".into(),
            });
        }
        if !has_schema {
            // Two processes may create a fresh store at once: serialise on the write lock.
            conn.execute_batch("BEGIN IMMEDIATE").map_err(corrupt)?;
            let created = (|| -> rusqlite::Result<()> {
                conn.execute_batch(SCHEMA)?;
                let n: i64 =
                    conn.query_row("SELECT count(*) FROM buildit_schema", [], |r| r.get(0))?;
                if n == 0 {
                    conn.execute(
                        "INSERT INTO buildit_schema (version) VALUES (?1)",
                        [SCHEMA_VERSION],
                    )?;
                }
                conn.execute_batch("COMMIT")
            })();
            if let Err(e) = created {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(corrupt(e));
            }
        }
        let found: Option<i64> = conn
            .query_row("SELECT max(version) FROM buildit_schema", [], |r| r.get(0))
            .optional()
            .map_err(corrupt)?
            .flatten();
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(DbError::Version {
                    path: path.into(),
                    found: v,
                })
            }
            None => {
                return Err(DbError::Foreign {
                    path: path.into(),
                    detail: "its buildit_schema table is empty".into(),
                })
            }
        }
        // Check the tables we rely on are there and readable.
        conn.query_row("SELECT count(*) FROM valid_paths WHERE id < 0", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(corrupt)?;
        Ok(Db {
            conn,
            path: path.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_and_corrupt_files_are_refused() {
        let t = tempfile::tempdir().expect("tmp");
        let garbage = t.path().join("g.sqlite");
        std::fs::write(&garbage, vec![0x42u8; 8192]).expect("w");
        assert!(matches!(Db::open(&garbage), Err(DbError::Corrupt { .. })));
        let foreign = t.path().join("f.sqlite");
        {
            let c = Connection::open(&foreign).expect("open");
            c.execute_batch("CREATE TABLE x (a INTEGER);")
                .expect("create");
        }
        assert!(matches!(Db::open(&foreign), Err(DbError::Foreign { .. })));
        let ok = t.path().join("ok.sqlite");
        Db::open(&ok).expect("fresh");
        Db::open(&ok).expect("again");
    }
}
