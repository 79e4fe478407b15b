//! Making a lock, the work of `buildit debian lock`: the roots (named packages, or the header
//! of the lock being refreshed), the apt indexes to read (the machine's, or a private apt root
//! set up and updated first), resolution, and the [`Lock`] that results. Writing or printing
//! it is the caller's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::apt::{setup_apt_root, DEFAULT_APT_ROOT};
use crate::index::{apt_index_files, Index, DEFAULT_LISTS_DIR};
use crate::lock::{read_lock, Lock, LOCK_VERSION};
use crate::resolve::resolve_for;
use crate::DebianError;

/// What to lock.
#[derive(Clone, Debug)]
pub struct LockRequest {
    /// Packages (`name` or `name=version`); none means the roots of the lock at `refresh`.
    pub packages: Vec<String>,
    /// The Debian release (its `-updates` and `-security` suites are included); a refresh
    /// keeps the suite of the lock it refreshes.
    pub suite: String,
    /// The architecture to resolve for (with `all`).
    pub arch: String,
    /// The lock file to refresh when no packages are named.
    pub refresh: Option<PathBuf>,
    /// Read the indexes of this private apt root instead of the machine's.
    pub apt_root: Option<PathBuf>,
    /// Set up the private apt root and run `apt-get update` in it first.
    pub update: bool,
}

/// A lock, and what making it took.
#[derive(Debug)]
pub struct LockSummary {
    pub lock: Lock,
    /// The `Packages` files read.
    pub index_files: usize,
    pub seconds: f64,
}

/// Resolve `req` into a lock.
pub fn make_lock(req: &LockRequest) -> Result<LockSummary, DebianError> {
    let start = Instant::now();
    let (roots, suite) = if req.packages.is_empty() {
        let Some(old) = &req.refresh else {
            return Err(DebianError::NoPackages);
        };
        let old = read_lock(old).map_err(|e| match e {
            DebianError::Io { .. } => DebianError::NoLockToRefresh { path: old.clone() },
            e => e,
        })?;
        (old.roots, old.suite)
    } else {
        (req.packages.clone(), req.suite.clone())
    };
    let lists = match &req.apt_root {
        Some(root) => {
            if req.update {
                setup_apt_root(root, Path::new(DEFAULT_APT_ROOT), &suite, &req.arch)?;
            }
            root.join("var/lib/apt/lists")
        }
        None => PathBuf::from(DEFAULT_LISTS_DIR),
    };
    let files = apt_index_files(&lists, &suite, &req.arch)?;
    let index = Index::load(&files)?;
    let root_refs: Vec<&str> = roots.iter().map(String::as_str).collect();
    let packages = resolve_for(&index, &root_refs, &req.arch)?;
    Ok(LockSummary {
        lock: Lock {
            version: LOCK_VERSION,
            suite,
            architecture: req.arch.clone(),
            roots,
            packages,
        },
        index_files: files.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LockRequest {
        LockRequest {
            packages: Vec::new(),
            suite: "bookworm".to_string(),
            arch: "amd64".to_string(),
            refresh: None,
            apt_root: None,
            update: false,
        }
    }

    /// A crafted index: a binNMU (`+b1`, `Source: NAME (VERSION)`), a binary versioned apart
    /// from its differently named source, and a plain package.
    const CRAFTED: &str = "Package: app\nVersion: 1.0-1+b1\nArchitecture: amd64\nSource: app (1.0-1)\nDepends: libx1, plain\nFilename: pool/main/a/app/app_1.0-1+b1_amd64.deb\nSize: 3\nSHA256: 0a\n\n\
Package: libx1\nVersion: 2:3.1-2\nArchitecture: amd64\nSource: x-project (5.4-1)\nFilename: pool/main/x/x-project/libx1_3.1-2_amd64.deb\nSize: 2\nSHA256: 0b\n\n\
Package: plain\nVersion: 7.0-3\nArchitecture: all\nSource: plain-src\nFilename: pool/main/p/plain-src/plain_7.0-3_all.deb\nSize: 1\nSHA256: 0c\n";

    #[test]
    fn the_lock_records_source_versions_from_the_source_field() {
        let mut index = Index::new();
        index
            .add_packages_text(CRAFTED, "debian", "bookworm")
            .expect("crafted index");
        let packages = resolve_for(&index, &["app"], "amd64").expect("resolves");
        let lock = Lock {
            version: LOCK_VERSION,
            suite: "bookworm".into(),
            architecture: "amd64".into(),
            roots: vec!["app".into()],
            packages,
        };
        let text = crate::lock::render_lock(&lock, "crafted.lock");
        let back = crate::lock::parse_lock(&text).expect("reads back");
        let mut got: Vec<(&str, &str, &str, Option<&str>)> = back
            .packages
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.source.as_str(),
                    e.source_version(),
                    e.source_version.as_deref(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("app", "app", "1.0-1", Some("1.0-1")),
                ("libx1", "x-project", "5.4-1", Some("5.4-1")),
                ("plain", "plain-src", "7.0-3", None),
            ],
            "{text}"
        );
        assert!(
            text.contains("source = \"x-project\"\nsource_version = \"5.4-1\"\n"),
            "{text}"
        );
    }

    #[test]
    fn a_refresh_needs_a_lock_and_named_packages_need_indexes() {
        let e = make_lock(&request()).expect_err("nothing to lock");
        assert!(matches!(e, DebianError::NoPackages), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.lock");
        let e = make_lock(&LockRequest {
            refresh: Some(missing.clone()),
            ..request()
        })
        .expect_err("no lock");
        assert!(
            matches!(&e, DebianError::NoLockToRefresh { path } if *path == missing),
            "{e}"
        );
        let e = make_lock(&LockRequest {
            packages: vec!["hello".to_string()],
            apt_root: Some(dir.path().to_path_buf()),
            ..request()
        })
        .expect_err("no indexes");
        assert!(matches!(e, DebianError::Io { .. }), "{e}");
    }
}
