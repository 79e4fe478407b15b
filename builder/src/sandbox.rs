//! The sandbox: runs one [`BuildRequest`] under the sandbox contract of `docs/builder.md` and
//! hands back the staged outputs (not yet store objects) and the log. The sandbox is set up by
//! the native backend ([`crate::native`], default) or by exec'ing `bwrap` with the contract's
//! command line ([`Sandbox::bwrap_args`]; `BUILDIT_SANDBOX=bwrap`, and the fallback where the
//! namespaces cannot be created). Everything else here (directories, logs, supervision,
//! limits) is shared by both.
//!
//! Layout of one build directory (`ROOT/var/buildit/tmp/<pid>-b<n>-<drv base>/`), created fresh
//! for every attempt and removed afterwards (kept on failure with `keep_failed`):
//!
//! - `build/` → `/build`, writable: the working directory and `TMPDIR`.
//! - `etc/` → `/etc`, read-only: synthetic `passwd`, `group` and `hosts` written here.
//! - `store/` → `/bld/store`, writable: a scratch store directory. Every path of the input
//!   closure is bind-mounted read-only on top of it (bubblewrap leaves empty mount points here),
//!   so the builder sees exactly its inputs and cannot modify them, and can create each output
//!   `$out` as a file, a directory or a symlink, as under Nix. After the build only the declared
//!   outputs are taken (`store/<hash>-<name>`); anything else written there is discarded.
//!
//! Process control (bwrap backend; the native one does the same in its child): bwrap is started in its own session (`setsid`) with `PR_SET_PDEATHSIG` =
//! `SIGKILL`, core dumps off and a fixed open-files limit. `--unshare-pid` gives the build its
//! own PID namespace, so when the builder exits (or bwrap is killed) the kernel kills every
//! process left behind, daemons included. stdout and stderr share one pipe; a loop polls it
//! against the wall-clock and silence deadlines and the log-size limit, and kills bwrap's
//! process group when one is exceeded.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buildit_store::archive::remove_tree;
use buildit_store::{StoreLayout, StorePath, STORE_DIR};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{BuildError, BuildFailure, FailReason};
use crate::log::LogSink;
use crate::request::BuildRequest;

/// The uid and gid of the build user inside the sandbox.
pub const BUILD_UID: u32 = 1000;
pub const BUILD_GID: u32 = 100;
/// The open-files limit of every build (soft and, where the host allows, hard).
pub const NOFILE_LIMIT: u64 = 65536;
/// `SOURCE_DATE_EPOCH` unless the derivation sets it (1980-01-01, the earliest zip date).
pub const DEFAULT_SOURCE_DATE_EPOCH: &str = "315532800";

/// The sandbox's `/etc/passwd`, `/etc/group` and `/etc/hosts` (also laid out by remote
/// execution's input root).
pub const PASSWD: &str = "builder:x:1000:100:buildit build user:/build:/noshell\n\
nobody:x:65534:65534:nobody:/var/empty:/noshell\n";
pub const GROUP: &str = "builder:x:100:\nnobody:x:65534:\n";
pub const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost\n";

/// A scratch store directory (mounted at `/bld/store`) reused by one build after another, with
/// the mount-point stubs of the inputs it holds: creating a stub costs a file-system
/// operation per input and consecutive builds mostly share their inputs, so only the
/// difference is created or removed. Anything else found in it (outputs of failed builds,
/// files a builder wrote) is removed before reuse. Removed when the sandbox is dropped.
///
/// It also carries the previous build's directory when that build left it as it was created
/// (an empty `build/` and nothing else): the next build uses it instead of creating one, which
/// saves two directory creations and removals per build (see [`BuildDir`]'s `Drop`).
#[derive(Debug)]
struct ScratchStore {
    /// `<pid>-s<n>-store/`: root's (the build user's group may pass), holding `dir`.
    wrapper: PathBuf,
    /// `<wrapper>/store`: mounted at `/bld/store`, the build user's.
    dir: PathBuf,
    stubs: HashSet<String>,
    keep: bool,
    spare: Option<PathBuf>,
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_tree(&self.wrapper);
        }
        if let Some(p) = self.spare.take() {
            let _ = remove_tree(&p);
        }
    }
}

/// Whether a finished build's directory is as it was created: only an empty `build/`, which
/// gets its mode back (the builder owned it). Anything else, and it is removed instead.
fn reusable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let only_build = std::fs::read_dir(path).is_ok_and(|mut rd| {
        matches!(rd.next(), Some(Ok(e)) if e.file_name() == "build") && rd.next().is_none()
    });
    let build = path.join("build");
    only_build
        && std::fs::symlink_metadata(&build).is_ok_and(|m| m.is_dir())
        && std::fs::read_dir(&build).is_ok_and(|mut rd| rd.next().is_none())
        && std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o700)).is_ok()
}

type Pool = Arc<Mutex<Vec<ScratchStore>>>;

impl ScratchStore {
    /// Make the stubs exactly `inputs` (base name → physical path) and nothing else.
    fn sync(&mut self, inputs: &[(String, PathBuf)]) -> std::io::Result<()> {
        let wanted: HashSet<&str> = inputs.iter().map(|(b, _)| b.as_str()).collect();
        let mut present = HashSet::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if self.stubs.contains(&name) && wanted.contains(name.as_str()) {
                present.insert(name);
            } else {
                remove_tree(&e.path())?;
            }
        }
        for (base, phys) in inputs {
            if present.contains(base) {
                continue;
            }
            let stub = self.dir.join(base);
            let meta = std::fs::symlink_metadata(phys)?;
            if meta.file_type().is_symlink() {
                // Not a mount point, so a builder could replace it: never reused.
                std::os::unix::fs::symlink(std::fs::read_link(phys)?, &stub)?;
                continue;
            } else if meta.is_dir() {
                std::fs::create_dir(&stub)?;
            } else {
                std::fs::File::create(&stub)?;
            }
            present.insert(base.clone());
        }
        self.stubs = present;
        Ok(())
    }
}

/// A build's temporary directory; removed on drop unless kept.
#[derive(Debug)]
pub struct BuildDir {
    path: PathBuf,
    keep: bool,
    scratch: Option<(ScratchStore, Pool)>,
}

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Create the directory `p` with mode 0700 (not subject to the umask).
fn private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(p)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}

fn fresh_dir(layout: &StoreLayout, kind: &str, base: &str) -> std::io::Result<PathBuf> {
    let tmp = layout.tmp_dir();
    std::fs::create_dir_all(&tmp)?;
    loop {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        // `<pid>-...`: the store's GC removes entries of processes that are gone.
        let path = tmp.join(format!("{}-{kind}{n}-{base}", std::process::id()));
        match private_dir(&path) {
            Ok(()) => return Ok(path),
            // Left over by an earlier process with the same pid (killed): use another name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

impl BuildDir {
    /// A fresh, empty directory under `layout.tmp_dir()` with `build/` and `store/`.
    pub fn create(layout: &StoreLayout, drv: &StorePath) -> std::io::Result<BuildDir> {
        let path = fresh_dir(layout, "b", &drv.base_name())?;
        let dir = BuildDir {
            path,
            keep: false,
            scratch: None,
        };
        private_dir(&dir.build_top())?;
        private_dir(&dir.store_dir())?;
        Ok(dir)
    }

    /// A fresh directory with `build/`, and a scratch store from `pool` holding exactly the
    /// mount-point stubs of `inputs`.
    fn create_pooled(
        layout: &StoreLayout,
        drv: &StorePath,
        pool: &Pool,
        inputs: &[(String, PathBuf)],
    ) -> std::io::Result<BuildDir> {
        let reused = pool.lock().ok().and_then(|mut p| p.pop());
        let mut scratch = match reused {
            Some(s) => s,
            None => {
                let wrapper = fresh_dir(layout, "s", "store")?;
                let dir = wrapper.join("store");
                private_dir(&dir)?;
                ScratchStore {
                    wrapper,
                    dir,
                    stubs: HashSet::new(),
                    keep: false,
                    spare: None,
                }
            }
        };
        let path = match scratch.spare.take() {
            Some(p) => p,
            None => {
                let p = fresh_dir(layout, "b", &drv.base_name())?;
                private_dir(&p.join("build"))?;
                p
            }
        };
        let mut dir = BuildDir {
            path,
            keep: false,
            scratch: None,
        };
        scratch.sync(inputs)?;
        dir.scratch = Some((scratch, pool.clone()));
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The base names of the inputs with a mount-point stub in the scratch store (every
    /// input that is not a symlink), when the scratch store comes from the pool.
    fn stubs(&self) -> Option<&HashSet<String>> {
        self.scratch.as_ref().map(|(s, _)| &s.stubs)
    }
    /// Mounted at `/build`.
    pub fn build_top(&self) -> PathBuf {
        self.path.join("build")
    }
    /// Mounted at `/bld/store`.
    pub fn store_dir(&self) -> PathBuf {
        match &self.scratch {
            Some((s, _)) => s.dir.clone(),
            None => self.path.join("store"),
        }
    }
    /// Where output `p` is created (host path).
    pub fn staged(&self, p: &StorePath) -> PathBuf {
        self.store_dir().join(p.base_name())
    }
    /// Give the directories to the build: with a build user of its own (`(uid, gid)`), the
    /// build directory and the scratch store become the build user's (mode 0700) and the
    /// directories holding them root's with the build user's group allowed to pass (0710), so
    /// nothing the build creates there is reachable by other host users. Without one, the
    /// invoking user keeps them (all 0700).
    fn hand_to(&self, user: Option<(u32, u32)>) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let store = self.store_dir();
        let store_wrapper = match &self.scratch {
            Some((s, _)) => s.wrapper.clone(),
            None => self.path.clone(),
        };
        let set = |p: &Path, owner: Option<(u32, u32)>, mode: u32| -> std::io::Result<()> {
            if let Some((u, g)) = owner {
                std::os::unix::fs::chown(p, Some(u), Some(g))?;
            }
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        };
        match user {
            Some((uid, gid)) => {
                set(&self.path, Some((0, gid)), 0o710)?;
                set(&store_wrapper, Some((0, gid)), 0o710)?;
                set(&self.build_top(), Some((uid, gid)), 0o700)?;
                set(&store, Some((uid, gid)), 0o700)
            }
            None => set(&self.build_top(), None, 0o700),
        }
    }

    /// Keep the directory (it is not removed on drop); returns its path.
    pub fn keep(&mut self) -> PathBuf {
        self.keep = true;
        if let Some((s, _)) = self.scratch.as_mut() {
            s.keep = true;
        }
        self.path.clone()
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match self.scratch.take() {
            Some((mut s, pool)) => {
                if s.spare.is_none() && reusable(&self.path) {
                    s.spare = Some(self.path.clone());
                } else {
                    let _ = remove_tree(&self.path);
                }
                if let Ok(mut p) = pool.lock() {
                    p.push(s);
                }
            }
            None => {
                let _ = remove_tree(&self.path);
            }
        }
    }
}

/// A successful sandboxed build: its outputs are staged in `dir`, not yet in the store.
#[derive(Debug)]
pub struct SandboxOutcome {
    /// Output name → host path of the staged output (exists).
    pub outputs: BTreeMap<String, PathBuf>,
    pub log_path: PathBuf,
    pub duration: Duration,
    /// Owns the staging area: drop it after registering the outputs.
    pub dir: BuildDir,
}

/// The environment a build sees, exactly (see the module docs and `docs/builder.md`).
pub fn sandbox_env(req: &BuildRequest) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    // Defaults the derivation may override.
    env.insert("PATH".to_string(), "/path-not-set".to_string());
    env.insert("HOME".to_string(), "/homeless-shelter".to_string());
    env.insert(
        "SOURCE_DATE_EPOCH".to_string(),
        DEFAULT_SOURCE_DATE_EPOCH.to_string(),
    );
    env.insert("LC_ALL".to_string(), "C".to_string());
    env.insert("TZ".to_string(), "UTC".to_string());
    for (k, v) in &req.env {
        env.insert(k.clone(), v.clone());
    }
    // Set by the sandbox whatever the derivation says.
    for (name, p) in &req.outputs {
        env.insert(name.clone(), p.to_string());
    }
    for k in [
        "TMPDIR",
        "TEMP",
        "TMP",
        "TEMPDIR",
        "BUILDIT_BUILD_TOP",
        "PWD",
    ] {
        env.insert(k.to_string(), "/build".to_string());
    }
    env.insert("BUILDIT_BUILD_CORES".to_string(), req.cores.to_string());
    env
}

/// The bubblewrap sandbox of one store.
#[derive(Clone, Debug)]
pub struct Sandbox {
    layout: StoreLayout,
    bwrap: PathBuf,
    /// Whether inputs are mounted by us before bwrap (see [`Premount`]); turned off after the
    /// first failure to do so.
    premount: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Scratch store directories for reuse (see [`ScratchStore`]).
    pool: Pool,
    /// Whether builds use the native backend ([`crate::native`]) instead of exec'ing bwrap;
    /// turned off after the first failure to create the namespaces.
    native: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Find `bwrap` in `PATH`.
pub fn find_bwrap() -> Result<PathBuf, BuildError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .ok_or(BuildError::BwrapMissing)
}

impl Sandbox {
    /// The sandbox for `layout`, with `bwrap` from `PATH` (error if it is not installed).
    pub fn new(layout: StoreLayout) -> Result<Sandbox, BuildError> {
        Ok(Sandbox::with_bwrap(layout, find_bwrap()?))
    }

    /// The sandbox with an explicit `bwrap` binary.
    pub fn with_bwrap(layout: StoreLayout, bwrap: PathBuf) -> Sandbox {
        Sandbox {
            layout,
            bwrap,
            premount: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            pool: Pool::default(),
            native: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
                std::env::var_os("BUILDIT_SANDBOX").is_none_or(|v| v != "bwrap"),
            )),
        }
    }

    /// Run every build through the `bwrap` program (as with `BUILDIT_SANDBOX=bwrap`) instead of
    /// the native backend.
    pub fn with_bwrap_program(self) -> Sandbox {
        self.native.store(false, Ordering::Relaxed);
        self
    }

    /// Whether builds currently use the native backend.
    pub fn is_native(&self) -> bool {
        self.native.load(Ordering::Relaxed)
    }

    /// Let bwrap mount every input itself (one `--ro-bind` each) instead of [`Premount`].
    pub fn without_premount(self) -> Sandbox {
        self.premount.store(false, Ordering::Relaxed);
        self
    }

    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    /// The full bwrap command line for `req` in `dir` (without the program itself).
    pub fn bwrap_args(&self, req: &BuildRequest, dir: &BuildDir) -> Vec<OsString> {
        self.bwrap_args_with(req, dir, false, &[])
    }

    /// The bwrap command line; with `premounted`, the inputs are already bind-mounted
    /// read-only in the scratch store directory (see [`Premount`]) and bwrap binds it once.
    fn bwrap_args_with(
        &self,
        req: &BuildRequest,
        dir: &BuildDir,
        premounted: bool,
        seccomp_fds: &[i32],
    ) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::with_capacity(64 + 3 * req.input_closure.len());
        let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
        push(&["--unshare-all".as_ref(), "--unshare-user".as_ref()]);
        if req.network {
            push(&["--share-net".as_ref()]);
        }
        let uid = BUILD_UID.to_string();
        let gid = BUILD_GID.to_string();
        push(&[
            "--die-with-parent".as_ref(),
            "--new-session".as_ref(),
            "--cap-drop".as_ref(),
            "ALL".as_ref(),
            "--clearenv".as_ref(),
            "--hostname".as_ref(),
            "localhost".as_ref(),
            "--uid".as_ref(),
            uid.as_ref(),
            "--gid".as_ref(),
            gid.as_ref(),
        ]);
        let store = dir.store_dir();
        push(&["--bind".as_ref(), store.as_os_str(), STORE_DIR.as_ref()]);
        let mut mounts: Vec<(PathBuf, String)> = req
            .input_closure
            .iter()
            .map(|p| (self.layout.physical(p), p.to_string()))
            .collect();
        mounts.sort_by(|x, y| x.1.cmp(&y.1));
        if !premounted {
            for (phys, logical) in &mounts {
                let link =
                    std::fs::symlink_metadata(phys).is_ok_and(|m| m.file_type().is_symlink());
                if !link {
                    push(&["--ro-bind".as_ref(), phys.as_os_str(), logical.as_ref()]);
                }
            }
        }
        if let Some(sys) = &req.sysroot {
            let phys = self.layout.physical(sys);
            push(&["--ro-bind".as_ref(), phys.as_os_str(), "/usr".as_ref()]);
            for d in ["bin", "sbin", "lib", "lib64"] {
                let target = format!("usr/{d}");
                let link = format!("/{d}");
                push(&["--symlink".as_ref(), target.as_ref(), link.as_ref()]);
            }
        }
        let etc = if req.network {
            dir.path().join("etc")
        } else {
            self.shared_etc()
        };
        let top = dir.build_top();
        push(&[
            "--ro-bind".as_ref(),
            etc.as_os_str(),
            "/etc".as_ref(),
            "--bind".as_ref(),
            top.as_os_str(),
            "/build".as_ref(),
            "--chdir".as_ref(),
            "/build".as_ref(),
            "--proc".as_ref(),
            "/proc".as_ref(),
            "--dev".as_ref(),
            "/dev".as_ref(),
        ]);
        let size = req.limits.max_tmpfs.map(|n| n.to_string());
        for t in ["/tmp", "/dev/shm"] {
            if let Some(n) = &size {
                push(&["--size".as_ref(), n.as_ref()]);
            }
            push(&["--tmpfs".as_ref(), t.as_ref()]);
        }
        push(&["--remount-ro".as_ref(), "/".as_ref()]);
        for fd in seccomp_fds {
            let fd = fd.to_string();
            push(&["--add-seccomp-fd".as_ref(), fd.as_ref()]);
        }
        for (k, v) in sandbox_env(req) {
            push(&["--setenv".as_ref(), k.as_ref(), v.as_ref()]);
        }
        push(&["--".as_ref(), req.builder.as_ref()]);
        for x in &req.args {
            push(&[x.as_ref()]);
        }
        a
    }

    /// The `/etc` of ordinary builds: the same three files for every build, written once per
    /// store (file operations cost more than the sandbox itself on slow disks).
    fn shared_etc(&self) -> PathBuf {
        self.layout.tmp_dir().join("sandbox-etc-1")
    }

    fn write_etc_files(etc: &Path, network: bool) -> std::io::Result<()> {
        std::fs::write(etc.join("passwd"), PASSWD)?;
        std::fs::write(etc.join("group"), GROUP)?;
        std::fs::write(etc.join("hosts"), HOSTS)?;
        if network {
            // Fixed-output builds may resolve names: the host's resolver configuration only.
            if let Ok(r) = std::fs::read("/etc/resolv.conf") {
                std::fs::write(etc.join("resolv.conf"), r)?;
            }
        }
        Ok(())
    }

    fn write_etc(&self, req: &BuildRequest, dir: &BuildDir) -> std::io::Result<()> {
        if req.network {
            let etc = dir.path().join("etc");
            std::fs::create_dir(&etc)?;
            return Sandbox::write_etc_files(&etc, true);
        }
        let etc = self.shared_etc();
        if etc.join("hosts").exists() {
            return Ok(());
        }
        // Written under a private name and renamed, so concurrent processes never see a
        // half-written directory.
        let tmp = dir.path().join("etc");
        std::fs::create_dir(&tmp)?;
        Sandbox::write_etc_files(&tmp, false)?;
        match std::fs::rename(&tmp, &etc) {
            Ok(()) => Ok(()),
            Err(_) if etc.join("hosts").exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Run `req`; `on_line` receives each log line as it arrives.
    pub fn build(
        &self,
        req: &BuildRequest,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<SandboxOutcome, BuildError> {
        let start = Instant::now();
        let inputs: Vec<(String, PathBuf)> = req
            .input_closure
            .iter()
            .map(|p| (p.base_name(), self.layout.physical(p)))
            .collect();
        let mut dir = BuildDir::create_pooled(&self.layout, &req.drv_path, &self.pool, &inputs)
            .map_err(|e| BuildError::io("creating the build directory", e))?;
        self.write_etc(req, &dir)
            .map_err(|e| BuildError::io("writing the sandbox's /etc", e))?;
        let guard = Guard::new(&self.layout, req)?;
        dir.hand_to(guard.ids())
            .map_err(|e| BuildError::io("handing the build directories to the build user", e))?;
        let mut sink = LogSink::create(&self.layout, &req.drv_path, on_line)
            .map_err(|e| BuildError::io("creating the build log", e))?;
        let result = self.run(req, &dir, &mut sink, &guard);
        let finish = sink.finish();
        let log_path = sink.path().to_path_buf();
        let tail = sink.tail();
        drop(sink);
        let reason = match result {
            Ok(None) => {
                finish.map_err(|e| BuildError::io("writing the build log", e))?;
                let mut outputs = BTreeMap::new();
                let mut missing = None;
                for (name, p) in &req.outputs {
                    let staged = dir.staged(p);
                    if std::fs::symlink_metadata(&staged).is_ok() {
                        outputs.insert(name.clone(), staged);
                    } else {
                        missing = Some(name.clone());
                        break;
                    }
                }
                let total: u64 = outputs.values().map(|p| tree_size(p)).sum();
                match (missing, req.limits.max_output_bytes) {
                    (Some(m), _) => FailReason::MissingOutput(m),
                    (None, Some(max)) if total > max => FailReason::OutputLimit(max),
                    (None, _) => {
                        return Ok(SandboxOutcome {
                            outputs,
                            log_path,
                            duration: start.elapsed(),
                            dir,
                        })
                    }
                }
            }
            Ok(Some(reason)) => match (
                guard.explain(reason, &req.limits, &tail),
                req.limits.max_output_bytes,
            ) {
                // A write stopped at RLIMIT_FSIZE fails with EFBIG where SIGXFSZ does not kill
                // (the builder is PID 1 under the native backend): the outputs reached the limit.
                (r @ (FailReason::Exit(_) | FailReason::Signal(_)), Some(max)) => {
                    let total: u64 = req
                        .outputs
                        .values()
                        .map(|p| tree_size(&dir.staged(p)))
                        .sum();
                    if total >= max {
                        FailReason::OutputLimit(max)
                    } else {
                        r
                    }
                }
                (r, _) => r,
            },
            Err(e) => return Err(e),
        };
        let kept = req.keep_failed.then(|| dir.keep());
        Err(BuildError::Failed(Box::new(BuildFailure {
            drv: req.drv_path.clone(),
            name: req.name.clone(),
            reason,
            log_tail: tail,
            log_path,
            kept,
        })))
    }

    /// Spawn bwrap and supervise it. `Ok(None)`: exited 0; `Ok(Some(r))`: failed for `r`.
    fn run(
        &self,
        req: &BuildRequest,
        dir: &BuildDir,
        sink: &mut LogSink<'_>,
        guard: &Guard,
    ) -> Result<Option<FailReason>, BuildError> {
        if self.native.load(Ordering::Relaxed) {
            match self.run_native(req, dir, sink, guard) {
                Err(None) => {
                    // No namespaces for us here: bwrap (setuid, perhaps) from now on.
                    self.native.store(false, Ordering::Relaxed);
                }
                Err(Some(e)) => return Err(e),
                Ok(r) => return Ok(r),
            }
        }
        crate::userns::usable_by_bwrap(&self.bwrap).map_err(BuildError::NoUserNamespaces)?;
        let (mut reader, writer) =
            std::io::pipe().map_err(|e| BuildError::io("creating the log pipe", e))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| BuildError::io("creating the log pipe", e))?;
        let premount = if self.premount.load(Ordering::Relaxed) {
            Premount::prepare(&self.layout, req, dir).ok()
        } else {
            None
        };
        let ids = guard.ids();
        if ids.is_some() {
            // bwrap sets the sandbox up as the build user: it must reach the store.
            for p in [self.layout.store_dir(), self.layout.tmp_dir()] {
                if let Some(closed) = closed_to_others(&p) {
                    return Err(BuildError::io(
                        format!(
                            "the bwrap backend sets builds up as their build user, who cannot pass {} (no o+x); make it traversable or use the native backend",
                            closed.display()
                        ),
                        std::io::ErrorKind::PermissionDenied.into(),
                    ));
                }
            }
        }
        let seccomp_readers = seccomp_pipes(&guard.filters)
            .map_err(|e| BuildError::io("passing the seccomp filter", e))?;
        let seccomp_fds: Vec<i32> = seccomp_readers
            .iter()
            .map(std::os::fd::AsRawFd::as_raw_fd)
            .collect();
        let procs = guard.procs_cstrings()?;
        let fsize = req.limits.max_output_bytes;
        let nproc = guard.nproc(req, false);
        let data = guard.data_limit(req);
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(self.bwrap_args_with(req, dir, premount.is_some(), &seccomp_fds))
            .env_clear()
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (setsid, prctl, getrlimit, setrlimit, for the
        // premount unshare, open/write/close, statfs and mount, then setgroups, setresgid,
        // setresuid and fcntl, all on data prepared before fork).
        unsafe {
            cmd.pre_exec(move || {
                let io = std::io::Error::from;
                nix::unistd::setsid().map_err(io)?;
                setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(io)?;
                let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io)?;
                let lim = NOFILE_LIMIT.min(hard);
                setrlimit(Resource::RLIMIT_NOFILE, lim, lim).map_err(io)?;
                if let Some(n) = fsize {
                    setrlimit(Resource::RLIMIT_FSIZE, n, n).map_err(io)?;
                }
                if let Some(n) = nproc {
                    setrlimit(Resource::RLIMIT_NPROC, n, n).map_err(io)?;
                }
                if let Some(n) = data {
                    setrlimit(Resource::RLIMIT_DATA, n, n).map_err(io)?;
                }
                if let Some(p) = &premount {
                    p.apply()?;
                }
                for f in &procs {
                    write_proc(f, b"0")?;
                }
                if let Some((uid, gid)) = ids {
                    // bwrap, and so the build, runs as the build user from here.
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setresgid(gid, gid, gid) != 0
                        || libc::setresuid(uid, uid, uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After the change of credentials, which clears it.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io)?;
                // The caller's open descriptors stay outside: closed at the exec of bwrap,
                // except the seccomp programs bwrap reads.
                crate::native::cloexec_above_stderr();
                for fd in &seccomp_fds {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // The command holds the pipe's write ends: drop them so EOF means "all writers gone".
        drop(cmd);
        drop(seccomp_readers);
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BuildError::BwrapMissing)
            }
            Err(_) if self.premount.swap(false, Ordering::Relaxed) => {
                // No mount namespace for us here (e.g. user namespaces disabled): let bwrap
                // mount every input itself from now on.
                return self.run(req, dir, sink, guard);
            }
            Err(e) => return Err(BuildError::io("starting bwrap", e)),
        };
        let mut proc = Proc::Bwrap(child);
        let killed = supervise(&mut proc, &mut reader, sink, req);
        if killed.is_err() {
            proc.kill();
        }
        let status = proc
            .wait()
            .map_err(|e| BuildError::io("waiting for bwrap", e))?;
        if let Some(reason) = killed? {
            return Ok(Some(reason));
        }
        Ok(exit_reason(status))
    }

    /// The native backend ([`crate::native`]). `Err(None)`: namespaces are not available.
    fn run_native(
        &self,
        req: &BuildRequest,
        dir: &BuildDir,
        sink: &mut LogSink<'_>,
        guard: &Guard,
    ) -> Result<Option<FailReason>, Option<BuildError>> {
        let io = |what: &'static str| move |e: std::io::Error| Some(BuildError::io(what, e));
        let root_mount = self.layout.tmp_dir().join("sandbox-root");
        if !root_mount.is_dir() {
            std::fs::create_dir_all(&root_mount).map_err(io("creating the sandbox root"))?;
        }
        let inputs: Vec<(String, PathBuf)> = match dir.stubs() {
            Some(stubs) => req
                .input_closure
                .iter()
                .map(|p| p.base_name())
                .filter(|b| stubs.contains(b))
                .map(|b| {
                    let phys = self.layout.store_dir().join(&b);
                    (b, phys)
                })
                .collect(),
            None => return Err(None),
        };
        let etc = if req.network {
            dir.path().join("etc")
        } else {
            self.shared_etc()
        };
        let store_dir = self.layout.store_dir();
        let scratch = dir.store_dir();
        let top = dir.build_top();
        let layout = crate::native::Layout {
            root_mount: &root_mount,
            scratch_store: &scratch,
            inputs,
            store_dir: &store_dir,
            sysroot: req.sysroot.as_ref().map(|s| self.layout.physical(s)),
            etc: &etc,
            build_top: &top,
        };
        let plan = crate::native::NativePlan::new(
            &layout,
            &req.builder,
            &req.args,
            &sandbox_env(req),
            req.network,
            NOFILE_LIMIT,
            crate::native::Hardening {
                build_user: guard.ids(),
                tmpfs_size: req.limits.max_tmpfs,
                fsize: req.limits.max_output_bytes,
                nproc: guard.nproc(req, true),
                data: guard.data_limit(req),
                filters: guard.filters.iter().map(crate::seccomp::to_libc).collect(),
                cgroup_procs: guard
                    .cgroup
                    .as_ref()
                    .map(|c| c.procs_files())
                    .unwrap_or_default(),
            },
        )
        .map_err(io("preparing the sandbox"))?;
        let (mut reader, writer) = std::io::pipe().map_err(io("creating the log pipe"))?;
        let child = match crate::native::spawn(&plan, writer.into()) {
            Ok(c) => c,
            Err(crate::native::SpawnError::Unsupported) => return Err(None),
            Err(crate::native::SpawnError::Io(e)) => {
                return Err(Some(BuildError::io("starting the sandbox", e)))
            }
        };
        let mut proc = Proc::Native(child);
        let killed = supervise(&mut proc, &mut reader, sink, req);
        if killed.is_err() {
            proc.kill();
        }
        let status = proc.wait().map_err(io("waiting for the sandbox"))?;
        if let Some(reason) = killed.map_err(Some)? {
            return Ok(Some(reason));
        }
        Ok(exit_reason(status))
    }
}

/// The seccomp programs as bwrap reads them: one pipe each, filled and closed for writing
/// (`--add-seccomp-fd N`; the child must clear `FD_CLOEXEC` on the read ends).
pub(crate) fn seccomp_pipes(
    filters: &[seccompiler::BpfProgram],
) -> std::io::Result<Vec<std::io::PipeReader>> {
    let mut readers = Vec::new();
    for prog in filters {
        let (r, mut w) = std::io::pipe()?;
        std::io::Write::write_all(&mut w, &crate::seccomp::to_bytes(prog))?;
        readers.push(r);
    }
    Ok(readers)
}

/// What one build holds while it runs besides its directories: its build user (when `buildit`
/// is root), its control group and its seccomp programs.
struct Guard {
    user: Option<crate::uids::BuildUser>,
    cgroup: Option<crate::cgroup::BuildCgroup>,
    filters: Vec<seccompiler::BpfProgram>,
}

/// Whether the derivation asks for nested user namespaces (`requiredSystemFeatures` naming
/// `userns`); the seccomp filter refuses them otherwise.
pub fn allows_userns(req: &BuildRequest) -> bool {
    req.env
        .get("requiredSystemFeatures")
        .is_some_and(|f| f.split_whitespace().any(|x| x == "userns"))
}

impl Guard {
    fn new(layout: &StoreLayout, req: &BuildRequest) -> Result<Guard, BuildError> {
        let user = if nix::unistd::geteuid().is_root() {
            Some(
                crate::uids::claim(&layout.state_dir().join("build-users")).map_err(|e| {
                    BuildError::io("claiming a build user", std::io::Error::other(e))
                })?,
            )
        } else {
            None
        };
        let cgroup = crate::cgroup::BuildCgroup::create(crate::cgroup::CgroupLimits {
            memory: req.limits.max_memory,
            pids: req.limits.max_pids,
        });
        // Compiled once per process for each of the two variants.
        type Programs = Result<Vec<seccompiler::BpfProgram>, String>;
        static STRICT: std::sync::OnceLock<Programs> = std::sync::OnceLock::new();
        static LAX: std::sync::OnceLock<Programs> = std::sync::OnceLock::new();
        let allow = allows_userns(req);
        let cell = if allow { &LAX } else { &STRICT };
        let filters = cell
            .get_or_init(|| crate::seccomp::programs(allow).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| BuildError::io("seccomp", std::io::Error::other(e)))?;
        Ok(Guard {
            user,
            cgroup,
            filters,
        })
    }

    /// The build user's host `(uid, gid)`, if the build has one.
    fn ids(&self) -> Option<(u32, u32)> {
        self.user.as_ref().map(|u| (u.uid, u.gid))
    }

    /// `RLIMIT_NPROC` for the build: the process limit where no control group enforces it.
    /// The kernel counts the processes of a uid per user namespace, so the limit confines
    /// exactly the build where the build has a uid of its own (a build user) or is set inside
    /// the build's own user namespace (the native backend, `native`: its child sets it after
    /// `clone`). Set before bwrap creates the namespace it would count every process of the
    /// invoking user instead, so an unprivileged caller's bwrap builds go without it.
    fn nproc(&self, req: &BuildRequest, native: bool) -> Option<u64> {
        let by_cgroup = self.cgroup.as_ref().is_some_and(|c| c.limits_pids());
        if by_cgroup || (self.user.is_none() && !native) {
            None
        } else {
            req.limits.max_pids
        }
    }

    /// `RLIMIT_DATA` for every process of the build: the memory limit where no control group
    /// enforces it (an unprivileged caller without a delegated cgroup). It bounds each process's
    /// heap and private mappings, not the build as a whole.
    fn data_limit(&self, req: &BuildRequest) -> Option<u64> {
        if self.cgroup.as_ref().is_some_and(|c| c.limits_memory()) {
            None
        } else {
            req.limits.max_memory
        }
    }

    fn procs_cstrings(&self) -> Result<Vec<std::ffi::CString>, BuildError> {
        use std::os::unix::ffi::OsStrExt;
        self.cgroup
            .as_ref()
            .map(|c| c.procs_files())
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                    BuildError::io("cgroup path", std::io::Error::other("NUL in a path"))
                })
            })
            .collect()
    }

    /// The failure as the user should see it: a build that died while over a limit failed
    /// because of the limit.
    ///
    /// Where a resource limit is only a per-process rlimit (no control group counts for the
    /// build), nothing records that it was hit: the process that ran into it failed on its own
    /// terms. Then the log's last lines decide: a failed `fork` means the process limit, a
    /// failed allocation the memory limit.
    fn explain(
        &self,
        reason: FailReason,
        limits: &crate::request::BuildLimits,
        tail: &[String],
    ) -> FailReason {
        if !matches!(reason, FailReason::Exit(_) | FailReason::Signal(_)) {
            return reason;
        }
        match self.cgroup.as_ref().and_then(|c| c.exceeded()) {
            Some(crate::cgroup::Exceeded::Memory) => {
                if let Some(m) = limits.max_memory {
                    return FailReason::MemoryLimit(m);
                }
            }
            Some(crate::cgroup::Exceeded::Pids) => {
                if let Some(p) = limits.max_pids {
                    return FailReason::PidsLimit(p);
                }
            }
            None => {}
        }
        let pids_by_rlimit = !self.cgroup.as_ref().is_some_and(|c| c.limits_pids());
        let memory_by_rlimit = !self.cgroup.as_ref().is_some_and(|c| c.limits_memory());
        let said = |needles: &[&str]| {
            tail.iter().any(|l| {
                let l = l.to_ascii_lowercase();
                needles.iter().any(|n| l.contains(n))
            })
        };
        if let (true, Some(p)) = (pids_by_rlimit, limits.max_pids) {
            if said(&["can't fork", "cannot fork", "fork: retry", "fork failed"]) {
                return FailReason::PidsLimit(p);
            }
        }
        if let (true, Some(m)) = (memory_by_rlimit, limits.max_memory) {
            if said(&[
                "out of memory",
                "cannot allocate memory",
                "memory exhausted",
                "std::bad_alloc",
            ]) {
                return FailReason::ProcessMemoryLimit(m);
            }
        }
        // A file past RLIMIT_FSIZE: SIGXFSZ, or a shell reporting its child's death by it.
        let xfsz = libc::SIGXFSZ;
        if let Some(max) = limits.max_output_bytes {
            if reason == FailReason::Signal(xfsz) || reason == FailReason::Exit(128 + xfsz) {
                return FailReason::OutputLimit(max);
            }
        }
        reason
    }
}

/// Bytes in the tree at `p` (regular files' sizes, symlinks' target lengths).
fn tree_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        m.len()
    }
}

/// The first of `p` and its ancestors that other users cannot pass (no `o+x`), if any.
fn closed_to_others(p: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    p.ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| {
            std::fs::metadata(a).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 == 0)
        })
        .map(Path::to_path_buf)
}

/// `(exit code, signal)` → the failure, if any.
fn exit_reason(status: (Option<i32>, Option<i32>)) -> Option<FailReason> {
    match status {
        (Some(0), _) => None,
        (Some(c), _) => Some(FailReason::Exit(c)),
        (None, Some(s)) => Some(FailReason::Signal(s)),
        (None, None) => Some(FailReason::Exit(-1)),
    }
}

/// The supervised process of a build: bwrap, or the native sandbox's outer process.
enum Proc {
    Bwrap(Child),
    Native(crate::native::NativeChild),
}

impl Proc {
    /// Kill the whole sandbox.
    fn kill(&self) {
        match self {
            Proc::Bwrap(c) => kill_tree(c),
            Proc::Native(n) => n.kill(),
        }
    }
    fn try_wait(&mut self) -> std::io::Result<Option<(Option<i32>, Option<i32>)>> {
        match self {
            Proc::Bwrap(c) => Ok(c.try_wait()?.map(|s| (s.code(), s.signal()))),
            Proc::Native(n) => n.try_wait(),
        }
    }
    fn wait(&mut self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        match self {
            Proc::Bwrap(c) => c.wait().map(|s| (s.code(), s.signal())),
            Proc::Native(n) => n.wait(),
        }
    }
}

/// The inputs mounted by us, not by bwrap: bubblewrap 0.8 re-reads the whole mount table after
/// each bind, so a closure of k paths costs O(k²) there. Instead the child, before exec'ing
/// bwrap, enters a new mount namespace (inside a new user namespace unless it is root),
/// bind-mounts each input read-only onto its mount point in the scratch store directory (one
/// `mount` each), and bwrap then binds the scratch directory with its submounts once. Symlink
/// inputs are recreated as symlinks. Everything is prepared before fork: the child only makes
/// system calls.
struct Premount {
    /// `(uid_map, gid_map)` contents when a user namespace is needed.
    maps: Option<(Vec<u8>, Vec<u8>)>,
    binds: Vec<(std::ffi::CString, std::ffi::CString)>,
}

impl Premount {
    fn prepare(
        layout: &StoreLayout,
        req: &BuildRequest,
        dir: &BuildDir,
    ) -> std::io::Result<Premount> {
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::other("NUL in a path"))
        };
        let mut binds = Vec::with_capacity(req.input_closure.len());
        for p in &req.input_closure {
            // The stubs exist (ScratchStore::sync); symlink inputs are symlinks there already.
            let phys = layout.physical(p);
            if std::fs::symlink_metadata(&phys)?.file_type().is_symlink() {
                continue;
            }
            binds.push((cstr(&phys)?, cstr(&dir.staged(p))?));
        }
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let maps = (uid != 0).then(|| {
            (
                format!("0 {uid} 1\n").into_bytes(),
                format!("0 {gid} 1\n").into_bytes(),
            )
        });
        Ok(Premount { maps, binds })
    }

    /// In the child, before exec: only system calls.
    fn apply(&self) -> std::io::Result<()> {
        use nix::mount::{mount, MsFlags};
        use nix::sched::{unshare, CloneFlags};
        let io = std::io::Error::from;
        match &self.maps {
            Some((uid_map, gid_map)) => {
                unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(io)?;
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", uid_map)?;
                write_proc(c"/proc/self/gid_map", gid_map)?;
            }
            None => unshare(CloneFlags::CLONE_NEWNS).map_err(io)?,
        }
        mount(
            None::<&std::ffi::CStr>,
            c"/",
            None::<&std::ffi::CStr>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&std::ffi::CStr>,
        )
        .map_err(io)?;
        for (src, dst) in &self.binds {
            mount(
                Some(src.as_c_str()),
                dst.as_c_str(),
                None::<&std::ffi::CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&std::ffi::CStr>,
            )
            .map_err(io)?;
            // Keep the flags the kernel locks in a user namespace (noexec, atime...).
            // SAFETY: statvfs on a NUL-terminated path into a zeroed struct we own.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            let kept = if unsafe { libc::statvfs(dst.as_ptr(), &mut st) } == 0 {
                MsFlags::from_bits_truncate(st.f_flag as libc::c_ulong)
                    & (MsFlags::MS_NOEXEC
                        | MsFlags::MS_NOATIME
                        | MsFlags::MS_NODIRATIME
                        | MsFlags::MS_RELATIME)
            } else {
                MsFlags::empty()
            };
            mount(
                None::<&std::ffi::CStr>,
                dst.as_c_str(),
                None::<&std::ffi::CStr>,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | kept,
                None::<&std::ffi::CStr>,
            )
            .map_err(io)?;
        }
        Ok(())
    }
}

/// `open` + `write` + `close` without allocating (for the child after fork).
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: plain system calls on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n < 0 || n as usize != data.len() {
            return Err(err);
        }
    }
    Ok(())
}

fn kill_tree(child: &Child) {
    // bwrap leads its own process group (setsid); killing it ends the sandbox's PID namespace.
    let pid = Pid::from_raw(child.id() as i32);
    let _ = killpg(pid, Signal::SIGKILL);
}

/// Read the log until EOF and the child's exit, enforcing the limits. Returns the reason when
/// the build was killed.
fn supervise(
    child: &mut Proc,
    reader: &mut std::io::PipeReader,
    sink: &mut LogSink<'_>,
    req: &BuildRequest,
) -> Result<Option<FailReason>, BuildError> {
    let start = Instant::now();
    let mut last_output = start;
    let mut buf = [0u8; 16 * 1024];
    let mut eof = false;
    let lim = &req.limits;
    loop {
        let now = Instant::now();
        if let Some(t) = lim.timeout {
            if now >= start + t {
                child.kill();
                return Ok(Some(FailReason::Timeout(t)));
            }
        }
        if let Some(s) = lim.max_silent {
            if now >= last_output + s {
                child.kill();
                return Ok(Some(FailReason::Silent(s)));
            }
        }
        if eof {
            // All writers closed their end; wait for the exit (a builder may close its output
            // and keep running), still under the deadlines.
            match child.try_wait() {
                Ok(Some(_)) => return Ok(None),
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => return Err(BuildError::io("waiting for bwrap", e)),
            }
            continue;
        }
        let mut wait = Duration::from_secs(1);
        if let Some(t) = lim.timeout {
            wait = wait.min((start + t).saturating_duration_since(now));
        }
        if let Some(s) = lim.max_silent {
            wait = wait.min((last_output + s).saturating_duration_since(now));
        }
        let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(1000);
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(BuildError::io("polling the build log", e.into())),
        }
        match reader.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => {
                last_output = Instant::now();
                // The log keeps at most the limit; the first byte past it ends the build.
                let room = lim.max_log_bytes.map_or(n, |max| {
                    max.saturating_sub(sink.bytes()).min(n as u64) as usize
                });
                sink.write(&buf[..room])
                    .map_err(|e| BuildError::io("writing the build log", e))?;
                if let (Some(max), true) = (lim.max_log_bytes, room < n) {
                    child.kill();
                    return Ok(Some(FailReason::LogLimit(max)));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BuildError::io("reading the build log", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::BuildLimits;
    use std::os::fd::AsRawFd;

    struct Fixture {
        _tmp: tempfile::TempDir,
        sandbox: Sandbox,
        busybox: StorePath,
    }

    /// A store root with a static busybox at `<hash>-busybox/bin/busybox` (no database needed:
    /// the sandbox only mounts physical paths).
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Under bwrap, a root `buildit` sets the sandbox up as the build user: it must pass.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let layout = StoreLayout::at(tmp.path());
        let busybox = StorePath::from_fingerprint("test:busybox", "busybox").expect("valid");
        let bin = layout.physical(&busybox).join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::copy("/usr/bin/busybox", bin.join("busybox")).expect("busybox-static installed");
        Fixture {
            _tmp: tmp,
            sandbox: Sandbox::new(layout).expect("bwrap installed"),
            busybox,
        }
    }

    fn request(f: &Fixture, script: &str) -> BuildRequest {
        let drv = StorePath::from_fingerprint(script, "t.drv").expect("valid");
        let out = StorePath::from_fingerprint(&format!("out{script}"), "t").expect("valid");
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), format!("{}/bin", f.busybox));
        BuildRequest {
            drv_path: drv,
            name: "t".into(),
            builder: format!("{}/bin/busybox", f.busybox),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env,
            outputs: [("out".to_string(), out)].into_iter().collect(),
            input_closure: vec![f.busybox.clone()],
            sysroot: None,
            network: false,
            cores: 1,
            limits: BuildLimits::default(),
            keep_failed: false,
        }
    }

    #[test]
    fn trivial_build_creates_out_and_log() {
        let f = fixture();
        let req = request(&f, "echo building; echo hello > $out");
        let mut lines = Vec::new();
        let r = f
            .sandbox
            .build(&req, &mut |l| lines.push(l.to_string()))
            .expect("build succeeds");
        assert_eq!(lines, vec!["building".to_string()]);
        assert!(
            f.sandbox.is_native(),
            "the native backend was used (no fallback to bwrap)"
        );
        let staged = &r.outputs["out"];
        assert_eq!(std::fs::read_to_string(staged).expect("out"), "hello\n");
        let log = crate::log::read_log(f.sandbox.layout(), &req.drv_path).expect("log");
        assert_eq!(log, b"building\n");
        let dir = r.dir.path().to_path_buf();
        drop(r);
        // Untouched by the build: kept (empty) for the next one.
        assert_eq!(
            f.sandbox.pool.lock().expect("pool")[0].spare.as_deref(),
            Some(dir.as_path())
        );
    }

    #[test]
    fn build_dir_is_reused_only_when_left_as_created() {
        let f = fixture();
        let r = f
            .sandbox
            .build(&request(&f, "chmod 700 /build; : > $out"), &mut |_| {})
            .expect("build");
        let first = r.dir.path().to_path_buf();
        drop(r);
        let r = f
            .sandbox
            .build(
                &request(&f, "stat -c %a /build > $out; ls -A /build >> $out"),
                &mut |_| {},
            )
            .expect("build");
        assert_eq!(r.dir.path(), first, "reused");
        assert_eq!(
            std::fs::read_to_string(&r.outputs["out"]).expect("out"),
            "700\n"
        );
        drop(r);
        let r = f
            .sandbox
            .build(&request(&f, "echo x > /build/f; : > $out"), &mut |_| {})
            .expect("build");
        assert_eq!(r.dir.path(), first);
        drop(r);
        assert!(
            !first.exists(),
            "a directory the build wrote into is removed"
        );
        let r = f
            .sandbox
            .build(&request(&f, "ls -A /build > $out"), &mut |_| {})
            .expect("build");
        assert_ne!(r.dir.path(), first);
        assert_eq!(std::fs::read_to_string(&r.outputs["out"]).expect("out"), "");
    }

    #[test]
    fn background_process_is_killed() {
        let f = fixture();
        let marker = format!("{}", 1_000_000 + std::process::id() * 7 % 999_999);
        let req = request(
            &f,
            &format!("busybox sleep {marker} & echo started; touch $out"),
        );
        let t = Instant::now();
        f.sandbox.build(&req, &mut |_| {}).expect("build succeeds");
        assert!(t.elapsed() < Duration::from_secs(20), "did not wait for it");
        for e in std::fs::read_dir("/proc").expect("proc").flatten() {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !(cmd.contains("sleep") && cmd.contains(&marker)),
                "left-behind process survived: {cmd}"
            );
        }
    }

    #[test]
    fn timeout_and_silence_kill_the_build() {
        let f = fixture();
        let mut req = request(&f, "echo start; busybox sleep 30; touch $out");
        req.limits.timeout = Some(Duration::from_millis(300));
        let t = Instant::now();
        let e = f.sandbox.build(&req, &mut |_| {}).expect_err("times out");
        assert!(t.elapsed() < Duration::from_secs(10));
        match e {
            BuildError::Failed(fl) => {
                assert_eq!(fl.reason, FailReason::Timeout(Duration::from_millis(300)));
                assert_eq!(fl.log_tail, vec!["start".to_string()]);
            }
            other => panic!("unexpected {other}"),
        }
        req.limits.timeout = None;
        req.limits.max_silent = Some(Duration::from_millis(300));
        let e = f.sandbox.build(&req, &mut |_| {}).expect_err("silent");
        assert!(matches!(e, BuildError::Failed(fl) if matches!(fl.reason, FailReason::Silent(_))));
    }

    #[test]
    fn log_limit_kills_the_build() {
        let f = fixture();
        let mut req = request(&f, "busybox yes; touch $out");
        req.limits.max_log_bytes = Some(100_000);
        let e = f.sandbox.build(&req, &mut |_| {}).expect_err("log limit");
        assert!(matches!(e, BuildError::Failed(fl) if fl.reason == FailReason::LogLimit(100_000)));
    }

    #[test]
    fn failure_reports_tail_and_cleans_up_unless_kept() {
        let f = fixture();
        let mut req = request(
            &f,
            "echo x > /build/junk; i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); done; echo x > $out; exit 3",
        );
        let e = f.sandbox.build(&req, &mut |_| {}).expect_err("fails");
        let BuildError::Failed(fl) = e else {
            panic!("unexpected {e}")
        };
        assert_eq!(fl.reason, FailReason::Exit(3));
        assert_eq!(fl.log_tail.len(), 25);
        assert_eq!(fl.log_tail[24], "line 39");
        assert!(fl.kept.is_none());
        let tmp = f.sandbox.layout().tmp_dir();
        // The scratch store went back to the pool; the failed output is removed on reuse.
        let pool = f.sandbox.pool.lock().expect("pool");
        assert_eq!(pool.len(), 1);
        assert!(
            pool[0].spare.is_none(),
            "a build directory with files is not reused"
        );
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .expect("tmp")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("-b"))
            .collect();
        assert!(left.is_empty(), "build directories left: {left:?}");
        assert!(pool[0].dir.join(req.outputs["out"].base_name()).exists());
        drop(pool);
        assert!(fl.to_string().contains("full log: "));

        req.keep_failed = true;
        let e = f.sandbox.build(&req, &mut |_| {}).expect_err("fails");
        let BuildError::Failed(fl) = e else {
            panic!("unexpected {e}")
        };
        let kept = fl.kept.clone().expect("kept");
        assert!(kept.join("build").is_dir());
        assert!(fl.to_string().contains("build directory kept at"));
    }

    #[test]
    fn per_path_binds_fallback_behaves_the_same() {
        let mut f = fixture();
        f.sandbox = f.sandbox.clone().without_premount().with_bwrap_program();
        let req = request(
            &f,
            "if touch $PATH/x 2>/dev/null; then echo writable; else echo ro; fi > $out",
        );
        let r = f.sandbox.build(&req, &mut |_| {}).expect("build");
        assert_eq!(
            std::fs::read_to_string(&r.outputs["out"]).expect("out"),
            "ro\n"
        );
    }

    #[test]
    fn scratch_store_is_reused_with_exactly_the_inputs() {
        let f = fixture();
        let other = StorePath::from_fingerprint("test:other", "other").expect("valid");
        std::fs::write(f.sandbox.layout().physical(&other), "x").expect("write");
        let mut req = request(&f, "echo junk > /bld/store/junk; ls /bld/store > $out");
        req.input_closure.push(other.clone());
        let r = f.sandbox.build(&req, &mut |_| {}).expect("build");
        let listed = std::fs::read_to_string(&r.outputs["out"]).expect("out");
        assert!(listed.contains(&other.base_name()));
        let scratch = r.dir.store_dir();
        drop(r);
        // Next build: `other` is not an input any more, and the junk is gone.
        let req = request(&f, "ls /bld/store > $out");
        let r = f.sandbox.build(&req, &mut |_| {}).expect("build");
        assert_eq!(r.dir.store_dir(), scratch, "the scratch store was reused");
        let listed = std::fs::read_to_string(&r.outputs["out"]).expect("out");
        assert_eq!(
            listed,
            format!(
                "{}\n{}\n",
                f.busybox.base_name(),
                req.outputs["out"].base_name()
            )
            .lines()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
        );
    }

    /// The native backend and the bwrap command line give the builder the same world.
    #[test]
    fn native_and_bwrap_sandboxes_agree() {
        let script = "exec > $out 2>&1; id; hostname; pwd; ls -a / /dev /bld/store /build /tmp; \
             ls -l /dev/null /dev/fd /dev/ptmx; awk '{print $1, $3}' /proc/self/uid_map /proc/self/gid_map; \
             grep -E ' / | /bld| /build| /tmp| /etc| /proc | /dev ' /proc/self/mountinfo | \
             cut -d' ' -f5,6,9 | sort; echo pid $$; ulimit -n; ulimit -c; \
             grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; \
             ip link 2>&1 | grep -o 'lo:.*UP' | head -1; \
             echo x > /dev/null && echo devnull-ok; head -c 4 /dev/zero | wc -c; \
             touch /bld/store/new && echo store-writable; touch /etc/x 2>/dev/null || echo etc-ro; \
             env | sort";
        let run = |sandbox: &Sandbox, f: &Fixture| {
            let req = request(f, script);
            let r = sandbox.build(&req, &mut |_| {}).expect("build");
            std::fs::read_to_string(&r.outputs["out"])
                .expect("out")
                .replace(&req.outputs["out"].base_name(), "OUT")
        };
        let f = fixture();
        let native = run(&f.sandbox, &f);
        assert!(f.sandbox.is_native());
        let g = fixture();
        let bwrap = g.sandbox.clone().with_bwrap_program();
        let via_bwrap = run(&bwrap, &g);
        let native = native.replace(&f.busybox.base_name(), "BB");
        let via_bwrap = via_bwrap.replace(&g.busybox.base_name(), "BB");
        // The one difference: the builder is PID 1 here (as under Nix), bwrap keeps an init.
        assert!(native.contains("\npid 1\n"), "{native}");
        assert!(via_bwrap.contains("\npid 2\n"), "{via_bwrap}");
        assert_eq!(
            native.replace("\npid 1\n", "\npid\n"),
            via_bwrap.replace("\npid 2\n", "\npid\n")
        );
        assert!(
            native.contains("uid=1000(builder) gid=100(builder)"),
            "{native}"
        );
    }

    /// A descriptor the caller left open (not close-on-exec) is not inherited by the build,
    /// under either backend.
    #[test]
    fn inherited_descriptors_do_not_reach_the_build() {
        let f = fixture();
        let dir = std::fs::File::open(f.sandbox.layout().store_dir()).expect("open");
        // SAFETY: dup2 onto a descriptor number nothing else in the tests uses.
        let fd = unsafe { libc::dup2(dir.as_raw_fd(), 77) };
        assert_eq!(fd, 77);
        let script = "if [ -e /proc/self/fd/77 ]; then echo leaked; else echo closed; fi > $out; \
                      ls /proc/$$/fd >> $out";
        for sandbox in [f.sandbox.clone(), f.sandbox.clone().with_bwrap_program()] {
            let req = request(&f, script);
            let r = sandbox.build(&req, &mut |_| {}).expect("build");
            let out = std::fs::read_to_string(&r.outputs["out"]).expect("out");
            assert!(out.starts_with("closed\n"), "{out}");
            let fds: Vec<&str> = out.lines().skip(1).collect();
            assert!(
                fds.iter().all(|d| d.parse::<i32>().is_ok_and(|n| n <= 3)),
                "{out}"
            );
        }
        // SAFETY: closing the descriptor made above.
        unsafe { libc::close(77) };
    }

    /// As root, a build runs as a build user of its own: what it creates is that user's on the
    /// host (not root's), its directories are closed to other users, and chmod u+s fails.
    #[test]
    fn build_runs_as_a_build_user_under_both_backends() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let f = fixture();
        let script = "mkdir $out; touch /build/f; chmod 755 /build/f; \
                      chmod 4755 /build/f 2>/dev/null || echo refused > $out/log; \
                      cp /build/f $out/f; stat -c %a /build/f >> $out/log";
        for sandbox in [f.sandbox.clone(), f.sandbox.clone().with_bwrap_program()] {
            let req = request(&f, script);
            let r = sandbox.build(&req, &mut |_| {}).expect("build");
            let out = &r.outputs["out"];
            let log = std::fs::read_to_string(out.join("log")).expect("log");
            assert_eq!(log, "refused\n755\n", "the setuid bit was refused");
            let uid = std::fs::metadata(out.join("f")).expect("f").uid();
            let build = std::fs::metadata(r.dir.build_top()).expect("build");
            assert_eq!(build.permissions().mode() & 0o777, 0o700);
            assert_eq!(
                std::fs::metadata(r.dir.path())
                    .expect("dir")
                    .permissions()
                    .mode()
                    & 0o007,
                0
            );
            if nix::unistd::geteuid().is_root() {
                let range = crate::uids::FIRST_BUILD_UID
                    ..crate::uids::FIRST_BUILD_UID + crate::uids::BUILD_UID_SLOTS;
                assert!(range.contains(&uid), "owned by {uid}");
                assert_eq!(build.uid(), uid);
            } else {
                assert_eq!(uid, nix::unistd::geteuid().as_raw());
            }
        }
    }

    /// `RLIMIT_NPROC` is the process limit only without a pids control group and only where
    /// it counts the build's processes alone: a build user's uid, or the native backend's own
    /// user namespace (not bwrap's, which is created after the limit is set).
    #[test]
    fn nproc_is_the_fallback_where_it_counts_only_the_build() {
        let f = fixture();
        let req = request(&f, "true");
        let no_user = Guard {
            user: None,
            cgroup: None,
            filters: Vec::new(),
        };
        assert_eq!(no_user.nproc(&req, false), None);
        assert_eq!(no_user.nproc(&req, true), req.limits.max_pids);
        assert_eq!(no_user.data_limit(&req), req.limits.max_memory);
        if nix::unistd::geteuid().is_root() {
            let dir = tempfile::tempdir().expect("tempdir");
            let user = crate::uids::claim(dir.path()).expect("claim");
            let g = Guard {
                user: Some(user),
                cgroup: None,
                filters: Vec::new(),
            };
            assert_eq!(g.nproc(&req, false), req.limits.max_pids);
        }
    }

    #[test]
    fn missing_output_is_a_failure() {
        let f = fixture();
        let req = request(&f, "true");
        let e = f.sandbox.build(&req, &mut |_| {}).expect_err("no output");
        assert!(
            matches!(e, BuildError::Failed(fl) if fl.reason == FailReason::MissingOutput("out".into()))
        );
    }

    #[test]
    fn out_may_be_a_directory_and_inputs_are_read_only() {
        let f = fixture();
        let req = request(
            &f,
            "mkdir -p $out/sub; if touch $PATH/x 2>/dev/null; then echo writable > $out/sub/r; else echo ro > $out/sub/r; fi",
        );
        let r = f.sandbox.build(&req, &mut |_| {}).expect("build");
        assert_eq!(
            std::fs::read_to_string(r.outputs["out"].join("sub/r")).expect("r"),
            "ro\n"
        );
    }
}

#[cfg(test)]
mod overhead {
    /// `cargo test -p buildit-builder --release -- --ignored overhead --nocapture`: the mean
    /// wall-clock time of a trivial sandboxed build, and of bare `bwrap` for comparison.
    #[test]
    #[ignore]
    fn overhead() {
        use super::*;
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = StoreLayout::at(tmp.path());
        let bb = StorePath::from_fingerprint("bench:busybox", "busybox").expect("valid");
        let bin = layout.physical(&bb).join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::copy("/usr/bin/busybox", bin.join("busybox")).expect("busybox");
        let sandbox = Sandbox::new(layout).expect("bwrap");
        let n: u32 = std::env::var("BN")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let t = Instant::now();
        for i in 0..n {
            let req = BuildRequest {
                drv_path: StorePath::from_fingerprint(&format!("d{i}"), "t.drv").expect("valid"),
                name: "t".into(),
                builder: format!("{bb}/bin/busybox"),
                args: vec!["sh".into(), "-c".into(), ": > $out".into()],
                env: BTreeMap::new(),
                outputs: [(
                    "out".to_string(),
                    StorePath::from_fingerprint(&format!("o{i}"), "t").expect("valid"),
                )]
                .into_iter()
                .collect(),
                input_closure: vec![bb.clone()],
                sysroot: None,
                network: false,
                cores: 1,
                limits: Default::default(),
                keep_failed: false,
            };
            sandbox.build(&req, &mut |_| {}).expect("build");
        }
        let per = t.elapsed() / n;
        {
            let req = BuildRequest {
                drv_path: StorePath::from_fingerprint("dx", "t.drv").expect("valid"),
                name: "t".into(),
                builder: format!("{bb}/bin/busybox"),
                args: vec!["sh".into(), "-c".into(), ": > $out".into()],
                env: BTreeMap::new(),
                outputs: [(
                    "out".to_string(),
                    StorePath::from_fingerprint("ox", "t").expect("valid"),
                )]
                .into_iter()
                .collect(),
                input_closure: vec![bb.clone()],
                sysroot: None,
                network: false,
                cores: 1,
                limits: Default::default(),
                keep_failed: false,
            };
            let dir = BuildDir::create(sandbox.layout(), &req.drv_path).expect("dir");
            let args = sandbox.bwrap_args(&req, &dir);
            let mut tb = Duration::ZERO;
            let mut tm = Duration::ZERO;
            let mut tf = Duration::ZERO;
            for i in 0..n {
                let t = Instant::now();
                let mut c = Command::new("/usr/bin/bwrap");
                c.args(&args).env_clear().stdout(Stdio::piped());
                let st = c.output().expect("bwrap");
                assert!(st.status.success());
                tm += t.elapsed();
                let t = Instant::now();
                {
                    let d2 = BuildDir::create(sandbox.layout(), &req.drv_path).expect("dir");
                    sandbox.write_etc(&req, &d2).expect("etc");
                    let mut c = Command::new("/usr/bin/bwrap");
                    c.args(sandbox.bwrap_args(&req, &d2))
                        .env_clear()
                        .stdout(Stdio::piped());
                    let st = c.output().expect("bwrap");
                    assert!(st.status.success());
                }
                tf += t.elapsed();
                let mut r2 = req.clone();
                r2.drv_path =
                    StorePath::from_fingerprint(&format!("dy{i}"), "t.drv").expect("valid");
                let t = Instant::now();
                sandbox.build(&r2, &mut |_| {}).expect("build");
                tb += t.elapsed();
            }
            println!(
                "interleaved: direct {:?} fresh dir {:?} build {:?}",
                tm / n,
                tf / n,
                tb / n
            );
        }
        let t = Instant::now();
        for _ in 0..n {
            let st = Command::new("bwrap")
                .args([
                    "--unshare-all",
                    "--ro-bind",
                    "/usr/bin/busybox",
                    "/true",
                    "/true",
                ])
                .status()
                .expect("bwrap");
            assert!(st.success());
        }
        let bare = t.elapsed() / n;
        println!("sandboxed trivial build: {per:?} per build; bare bwrap: {bare:?}");
    }
}
