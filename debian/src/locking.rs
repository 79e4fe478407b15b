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
