//! Per-build control groups: the memory and process-count limits of one build, and after it
//! the reason it was stopped (the memory limit's OOM kill, the process limit refusing a fork).
//!
//! Which hierarchy is used, in order:
//!
//! 1. cgroup v2, where one is delegated to `buildit`: `BUILDIT_CGROUP` names a cgroup2
//!    directory whose `cgroup.subtree_control` enables `memory` and `pids`; each build gets a
//!    child `<pid>-<n>` with `memory.max`, `memory.swap.max = 0` and `pids.max`; the reason comes
//!    from `memory.events` (`oom_kill`) and `pids.events` (`max`).
//! 2. cgroup v1, where `/sys/fs/cgroup/memory` and `/sys/fs/cgroup/pids` are writable (root):
//!    `buildit/<pid>-<n>` in each, with `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`
//!    where swap accounting exists) and `pids.max`; the reason comes from `memory.oom_control`
//!    (`oom_kill`) and `pids.events` (`max`).
//! 3. Neither (typically an unprivileged caller without a delegated cgroup): the memory limit
//!    falls back to `RLIMIT_DATA` on every process of the build, and the process limit to
//!    `RLIMIT_NPROC` where it counts only the build's processes (see `Guard::nproc` in
//!    [`crate::sandbox`]).
//!
//! The build's first process is moved into the group before it runs anything of the builder's,
//! so everything it starts is accounted. The group is removed when the build ends (after
//! killing anything still in it); groups left by a killed `buildit` are removed by the next one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The limits a control group enforces (`None`: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

/// Which limit stopped a build, read from the group after it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Memory,
    Pids,
}

#[derive(Debug)]
enum Kind {
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
    V2(PathBuf),
}

/// One build's control group(s); removed on drop.
#[derive(Debug)]
pub struct BuildCgroup {
    kind: Kind,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

const V1_ROOT: &str = "/sys/fs/cgroup";

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// Remove the groups under `parent` whose creating process (`<pid>-...`) is gone.
fn remove_stale(parent: &Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid as u32 != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_members(&e.path());
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// SIGKILL every process still in the group at `dir`.
fn kill_members(dir: &Path) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Remove a group directory, waiting briefly for its last processes to be reaped.
fn remove_group(dir: &Path) {
    for i in 0..200 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => {
                if i % 20 == 0 {
                    kill_members(dir);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

fn name() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl BuildCgroup {
    /// A group enforcing `limits`, from the first hierarchy that works here (see the module
    /// docs); `None` where there is none (or nothing to limit).
    pub fn create(limits: CgroupLimits) -> Option<BuildCgroup> {
        if limits.memory.is_none() && limits.pids.is_none() {
            return None;
        }
        if let Some(base) = std::env::var_os("BUILDIT_CGROUP") {
            if let Some(g) = Self::create_v2(Path::new(&base), limits) {
                return Some(g);
            }
        }
        Self::create_v1(limits)
    }

    fn create_v2(base: &Path, limits: CgroupLimits) -> Option<BuildCgroup> {
        let ctl = std::fs::read_to_string(base.join("cgroup.subtree_control")).ok()?;
        if !(ctl.split_whitespace().any(|c| c == "memory")
            && ctl.split_whitespace().any(|c| c == "pids"))
        {
            return None;
        }
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(|| remove_stale(base));
        let dir = base.join(name());
        std::fs::create_dir(&dir).ok()?;
        let g = BuildCgroup {
            kind: Kind::V2(dir.clone()),
        };
        let ok = limits
            .memory
            .is_none_or(|m| write(&dir.join("memory.max"), &m.to_string()).is_ok())
            && limits
                .pids
                .is_none_or(|p| write(&dir.join("pids.max"), &p.to_string()).is_ok());
        if limits.memory.is_some() {
            let _ = write(&dir.join("memory.swap.max"), "0");
        }
        ok.then_some(g)
    }

    fn create_v1(limits: CgroupLimits) -> Option<BuildCgroup> {
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(|| {
            for c in ["memory", "pids"] {
                remove_stale(&Path::new(V1_ROOT).join(c).join("buildit"));
            }
        });
        let n = name();
        let make = |controller: &str| -> Option<PathBuf> {
            let top = Path::new(V1_ROOT).join(controller);
            if !top.join("cgroup.procs").exists() {
                return None;
            }
            let dir = top.join("buildit").join(&n);
            std::fs::create_dir_all(&dir).ok()?;
            Some(dir)
        };
        let memory = limits.memory.and_then(|_| make("memory"));
        let pids = limits.pids.and_then(|_| make("pids"));
        if memory.is_none() && pids.is_none() {
            return None;
        }
        let g = BuildCgroup {
            kind: Kind::V1 {
                memory: memory.clone(),
                pids: pids.clone(),
            },
        };
        if let (Some(d), Some(m)) = (&memory, limits.memory) {
            write(&d.join("memory.limit_in_bytes"), &m.to_string()).ok()?;
            let memsw = d.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                let _ = write(&memsw, &m.to_string());
            }
        }
        if let (Some(d), Some(p)) = (&pids, limits.pids) {
            write(&d.join("pids.max"), &p.to_string()).ok()?;
        }
        Some(g)
    }

    /// Whether the group enforces the process limit (else `RLIMIT_NPROC` is the fallback).
    pub fn limits_pids(&self) -> bool {
        match &self.kind {
            Kind::V1 { pids, .. } => pids.is_some(),
            Kind::V2(_) => true,
        }
    }

    /// Whether the group enforces the memory limit (else `RLIMIT_DATA` is the fallback).
    pub fn limits_memory(&self) -> bool {
        match &self.kind {
            Kind::V1 { memory, .. } => memory.is_some(),
            Kind::V2(_) => true,
        }
    }

    /// The `cgroup.procs` files a build's first process is written to.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match &self.kind {
            Kind::V1 { memory, pids } => memory
                .iter()
                .chain(pids.iter())
                .map(|d| d.join("cgroup.procs"))
                .collect(),
            Kind::V2(d) => vec![d.join("cgroup.procs")],
        }
    }

    /// Move process `pid` (a pid of our PID namespace; `0`: the writing process) into the group.
    pub fn attach(&self, pid: i32) -> std::io::Result<()> {
        for f in self.procs_files() {
            write(&f, &pid.to_string())?;
        }
        Ok(())
    }

    /// Which limit the build hit, if any (read after it ended).
    pub fn exceeded(&self) -> Option<Exceeded> {
        let (mem_oom, pids_max) = match &self.kind {
            Kind::V1 { memory, pids } => (
                memory
                    .as_ref()
                    .and_then(|d| keyed(&d.join("memory.oom_control"), "oom_kill")),
                pids.as_ref()
                    .and_then(|d| keyed(&d.join("pids.events"), "max")),
            ),
            Kind::V2(d) => (
                keyed(&d.join("memory.events"), "oom_kill"),
                keyed(&d.join("pids.events"), "max"),
            ),
        };
        if mem_oom.is_some_and(|n| n > 0) {
            Some(Exceeded::Memory)
        } else if pids_max.is_some_and(|n| n > 0) {
            Some(Exceeded::Pids)
        } else {
            None
        }
    }

    /// Which hierarchy this is, for messages and tests: `"v1"` or `"v2"`.
    pub fn hierarchy(&self) -> &'static str {
        match self.kind {
            Kind::V1 { .. } => "v1",
            Kind::V2(_) => "v2",
        }
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        match &self.kind {
            Kind::V1 { memory, pids } => {
                for d in memory.iter().chain(pids.iter()) {
                    remove_group(d);
                }
            }
            Kind::V2(d) => remove_group(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("memory.oom_control");
        std::fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(keyed(&f, "oom_kill"), Some(3));
        assert_eq!(keyed(&f, "missing"), None);
        assert!(BuildCgroup::create(CgroupLimits::default()).is_none());
    }

    /// Where cgroup v1 is writable (root on the development machine): a group with both
    /// limits is created, reports nothing exceeded, and is removed on drop.
    #[test]
    fn v1_group_is_created_and_removed() {
        if std::env::var_os("BUILDIT_CGROUP").is_some()
            || !Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
            || !nix::unistd::geteuid().is_root()
        {
            return;
        }
        let Some(g) = BuildCgroup::create(CgroupLimits {
            memory: Some(64 << 20),
            pids: Some(10),
        }) else {
            return;
        };
        assert_eq!(g.hierarchy(), "v1");
        assert!(g.limits_pids());
        let files = g.procs_files();
        assert_eq!(files.len(), 2);
        let pids_dir = files
            .iter()
            .find(|f| f.starts_with("/sys/fs/cgroup/pids"))
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .expect("pids group");
        assert_eq!(
            std::fs::read_to_string(pids_dir.join("pids.max"))
                .expect("pids.max")
                .trim(),
            "10"
        );
        assert_eq!(g.exceeded(), None);
        drop(g);
        assert!(!pids_dir.exists());
    }
}
