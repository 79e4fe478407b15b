//! Build users: when `buildit` runs as root, every sandboxed build runs as a host uid and gid
//! of its own, taken from a range reserved for builds, never as root. Inside the sandbox that
//! identity is uid 1000 / gid 100 (`builder`); on the host, a file the build creates is owned
//! by the build user, so whatever a build leaves behind (a setuid bit it managed to set, a file
//! in a directory it made world-readable) gives no one root.
//!
//! Why a range of its own (like Nix's `auto-allocate-uids`) rather than one shared account:
//! two builds running at once must not share a uid, or one could signal, trace or write into
//! the other. A slot is claimed with an exclusive `flock` on `<lock dir>/<slot>`, held for the
//! whole build and released by the kernel when the build ends or `buildit` dies, so concurrent
//! builds of any number of `buildit` processes on the host never share one. The lock directory
//! is host-wide (`/run/buildit/build-users`) because the uids are; where `/run` is not
//! writable the store's own state directory is used.
//!
//! When `buildit` is not root it cannot switch to another uid, and builds keep running as the
//! caller's own uid (mapped to 1000 inside).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The first uid (and gid) of the build range: `0x7E000000`. Chosen above the ranges systemd
/// hands to containers (524288–1879048191) and to Nix's auto-allocated build users
/// (872415232 onwards), below 2^31 (tools that store uids as signed 32-bit numbers).
pub const FIRST_BUILD_UID: u32 = 0x7E00_0000;
/// How many builds may run at once on one host (uids `FIRST_BUILD_UID` to
/// `FIRST_BUILD_UID + BUILD_UID_SLOTS - 1`).
pub const BUILD_UID_SLOTS: u32 = 4096;
/// The host-wide directory of the slot lock files.
pub const LOCK_DIR: &str = "/run/buildit/build-users";

/// A claimed build user: the uid and gid (the same number), held until dropped.
#[derive(Debug)]
pub struct BuildUser {
    pub uid: u32,
    pub gid: u32,
    /// The locked slot file; closing it releases the slot.
    _lock: File,
}

/// Why no build user could be claimed.
#[derive(Debug, thiserror::Error)]
pub enum UidError {
    #[error("creating the build-user lock directory {dir}: {source}")]
    LockDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("all {BUILD_UID_SLOTS} build users (uids {FIRST_BUILD_UID}..) are in use")]
    Exhausted,
    #[error("locking build-user slot {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The lock directory: [`LOCK_DIR`], or `fallback` when that cannot be created.
fn lock_dir(fallback: &Path) -> Result<PathBuf, UidError> {
    use std::os::unix::fs::DirBuilderExt;
    let mk = |d: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
    };
    let main = PathBuf::from(LOCK_DIR);
    if mk(&main).is_ok() {
        return Ok(main);
    }
    mk(fallback).map_err(|source| UidError::LockDir {
        dir: fallback.to_path_buf(),
        source,
    })?;
    Ok(fallback.to_path_buf())
}

/// Claim a free build user (non-blocking `flock` on one slot file after another, starting at a
/// different slot for each claim so concurrent claims rarely collide). `fallback` is the lock
/// directory when the host-wide one cannot be created.
pub fn claim(fallback: &Path) -> Result<BuildUser, UidError> {
    let dir = lock_dir(fallback)?;
    let start =
        (std::process::id().wrapping_mul(31)).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for i in 0..BUILD_UID_SLOTS {
        let slot = start.wrapping_add(i) % BUILD_UID_SLOTS;
        let path = dir.join(slot.to_string());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| UidError::Lock {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            let id = FIRST_BUILD_UID + slot;
            return Ok(BuildUser {
                uid: id,
                gid: id,
                _lock: f,
            });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(UidError::Lock { path, source: e });
        }
    }
    Err(UidError::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_claims_get_distinct_uids_in_the_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Exercise the fallback directory explicitly (the host-wide one may not be writable).
        let claim_in = |d: &Path| -> BuildUser {
            let p = d.join("users");
            std::fs::create_dir_all(&p).expect("mkdir");
            // Same algorithm as `claim`, on a private directory.
            for slot in 0..BUILD_UID_SLOTS {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(p.join(slot.to_string()))
                    .expect("open");
                // SAFETY: flock on a descriptor we own.
                if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                    let id = FIRST_BUILD_UID + slot;
                    return BuildUser {
                        uid: id,
                        gid: id,
                        _lock: f,
                    };
                }
            }
            panic!("exhausted");
        };
        let a = claim_in(dir.path());
        let b = claim_in(dir.path());
        assert_ne!(a.uid, b.uid, "a held slot is not handed out twice");
        let a_uid = a.uid;
        drop(a);
        let c = claim_in(dir.path());
        assert_eq!(c.uid, a_uid, "a released slot is free again");
        let real = claim(&dir.path().join("fallback")).expect("claim");
        assert!((FIRST_BUILD_UID..FIRST_BUILD_UID + BUILD_UID_SLOTS).contains(&real.uid));
        let other = claim(&dir.path().join("fallback")).expect("claim");
        assert_ne!(real.uid, other.uid);
    }
}
