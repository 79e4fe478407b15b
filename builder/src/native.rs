//! The native sandbox backend: the same sandbox as the bubblewrap command line of
//! [`crate::sandbox`], set up by our own code with system calls, without exec'ing `bwrap`.
//!
//! Why: bubblewrap 0.8 re-reads and parses `/proc/self/mountinfo` after each of its mount
//! operations (about fifteen per build: binds, `/dev` nodes, `/proc` subdirectories, the final
//! read-only remount). With the input closure mounted, every one of those reads formats one
//! line per input mount, so a build with k inputs cost O(k) *times fifteen* in the kernel's
//! mountinfo generation and bwrap's parser: 60% of the CPU time of a 1,000-derivation chain.
//! Here every mount is made once, and nothing reads the mount table.
//!
//! Process structure: one `clone` with the new namespaces and `CLONE_VM` (as `posix_spawn`:
//! no page tables copied); this thread waits until the child has exec'd (a close-on-exec pipe
//! reaching end-of-file). Between the two, the child waits on a second pipe until this side has
//! prepared what the child cannot do itself: when `buildit` runs as root, writing its
//! `uid_map`/`gid_map` (`1000 <build uid> 1`, `100 <build gid> 1`: a foreign uid can only be
//! mapped by a process holding `CAP_SETUID` outside the new namespace), and moving it into the
//! build's control groups. The child, on its own stack and only making system calls on data
//! prepared before the clone: log pipe on stdout/stderr, `/dev/null` on stdin,
//! `PR_SET_PDEATHSIG = SIGKILL`, rlimits; when not root, uid 1000 / gid 100 mapped onto the
//! invoking user by itself; then a tmpfs as the new root and, as root, the switch to the build
//! user (uid 1000 / gid 100 inside, the build user's ids on the host; the capabilities in the
//! new namespace stay until the exec, because root of that namespace is not mapped); then, with
//! host paths reached only through descriptors this side opened before the clone (so the build
//! user needs no access to the store's directories): the scratch store bound writable at
//! `/bld/store` with the input closure bound read-only onto its stubs, the sysroot at `/usr`
//! with the merged-/usr links, `/etc` read-only, `/build` writable, `/dev` (tmpfs with the
//! host's `null zero full random urandom tty`, `pts`, `shm`), `/proc` (with `sys sysrq-trigger
//! irq bus` read-only), `/tmp`; `pivot_root`, the old root detached, `/` remounted read-only;
//! hostname `localhost`, loopback up, `/build` as working directory, a new session, no new
//! privileges, empty capability bounding and ambient sets, the seccomp filters of
//! [`crate::seccomp`], every inherited descriptor above stderr close-on-exec; then `execve` of
//! the builder with exactly the sandbox environment. The builder *is* PID 1 of its namespace:
//! when it exits or is killed, the kernel kills whatever it left behind (as under Nix).
//!
//! Failing to create the namespaces or to map the build user is reported as
//! [`SpawnError::Unsupported`] (the caller then falls back to bwrap); a later setup failure is
//! written to the build log and the child exits with status 126.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sandbox::{BUILD_GID, BUILD_UID};

/// Exit status of init when setting up the sandbox failed (after a message on stderr).
const SETUP_FAILED: i32 = 126;

/// Where a bind mount comes from.
enum Src {
    /// A path (absolute on the host, or relative to init's working directory).
    Path(CString),
    /// [`NativePlan::sources`]`[i]`, opened by init before it becomes the build user and bound
    /// as `/proc/self/fd/N`, so the build user needs no access to the directories above it.
    Host(usize),
}

/// One mount operation of init. Paths are relative to the new root (init's working directory
/// while it runs them).
enum Op {
    /// `mkdir` (mode 0755); an existing directory is fine.
    Mkdir(CString),
    /// Create an empty file (a mount point for a device node).
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    /// A bind mount, then a remount with the given flags (read-only or not).
    Bind {
        src: Src,
        dst: CString,
        ro: bool,
        /// Keep device nodes usable (`/dev/null`...).
        dev: bool,
    },
    /// A tmpfs with these mount options.
    Tmpfs(CString, CString),
    Chdir(CString),
    /// Back to the new root.
    ChdirRoot,
    /// A plain bind mount (it inherits the source mount's flags).
    BindAs {
        src: CString,
        dst: CString,
    },
    /// Detach a mount and remove its mount point.
    Detach(CString),
}

/// What hardens one build beyond the mounts: who it runs as, its rlimits and seccomp filters.
#[derive(Default)]
pub(crate) struct Hardening {
    /// The build user's host uid and gid (see [`crate::uids`]) when `buildit` runs as root;
    /// `None`: the invoking user's own ids.
    pub build_user: Option<(u32, u32)>,
    /// `size=` of `/tmp` and `/dev/shm`.
    pub tmpfs_size: Option<u64>,
    /// `RLIMIT_FSIZE` (largest file).
    pub fsize: Option<u64>,
    /// `RLIMIT_NPROC`, set in the child after `clone`, inside the build's user namespace.
    pub nproc: Option<u64>,
    /// `RLIMIT_DATA` (per-process memory, where no control group limits the build).
    pub data: Option<u64>,
    /// Seccomp programs, installed in order just before the exec.
    pub filters: Vec<Vec<libc::sock_filter>>,
    /// `cgroup.procs` files the child's pid is written to before it runs.
    pub cgroup_procs: Vec<std::path::PathBuf>,
}

/// Everything init needs, prepared before `clone`.
pub(crate) struct NativePlan {
    /// The host directory the new root's tmpfs is mounted on (absolute).
    root: CString,
    root_opts: CString,
    ops: Vec<Op>,
    /// Done after `/proc` is mounted (bind `proc/sys`... read-only).
    proc_ro: Vec<CString>,
    network: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// Flags the kernel keeps locked on binds of the store's file system (noexec, atime...).
    store_locked: libc::c_ulong,
    /// Candidate paths of the builder (inside the sandbox), tried in order.
    exe: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    dev_null: CString,
    nofile: u64,
    hardening: Hardening,
    /// Host directories bound into the sandbox (absolute; see [`Src::Host`]).
    sources: Vec<CString>,
}

/// At most this many [`NativePlan::sources`].
const MAX_SOURCES: usize = 8;

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("NUL in a path"))
}

fn cs(s: &str) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| std::io::Error::other("NUL in a string"))
}

/// What the sandbox is made of (host paths), see [`NativePlan::new`].
pub(crate) struct Layout<'a> {
    /// An existing empty directory where the new root's tmpfs is mounted (in the build's own
    /// mount namespace only, so all builds share it).
    pub root_mount: &'a Path,
    pub scratch_store: &'a Path,
    /// `(store base name, physical path)` of each input that is not a symlink (symlink
    /// inputs are symlinks in the scratch store already).
    pub inputs: Vec<(String, std::path::PathBuf)>,
    pub store_dir: &'a Path,
    pub sysroot: Option<std::path::PathBuf>,
    pub etc: &'a Path,
    pub build_top: &'a Path,
}

/// Register host directory `p` as a bind source (see [`Src::Host`]).
fn source(p: &Path, keep: &mut Vec<CString>) -> std::io::Result<Src> {
    keep.push(cstr(p)?);
    Ok(Src::Host(keep.len() - 1))
}

/// `n` in decimal ASCII, written into the end of `digits` without allocating (for the child
/// between clone and exec, where only async-signal-safe work is allowed).
fn decimal(mut n: u32, digits: &mut [u8; 12]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// `/proc/self/fd/<fd>` in `buf`, without allocating (for init).
fn fd_path(fd: i32, buf: &mut [u8; 32]) -> &CStr {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let d = decimal(fd.unsigned_abs(), &mut digits);
    let end = prefix.len() + d.len();
    buf[prefix.len()..end].copy_from_slice(d);
    buf[end] = 0;
    CStr::from_bytes_with_nul(&buf[..=end]).unwrap_or(c"/")
}

impl NativePlan {
    pub(crate) fn new(
        l: &Layout<'_>,
        builder: &str,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
        network: bool,
        nofile: u64,
        hardening: Hardening,
    ) -> std::io::Result<NativePlan> {
        let at = |inner: &str| cs(inner.trim_start_matches('/'));
        let mut keep = Vec::new();
        let ids = format!("uid={BUILD_UID},gid={BUILD_GID}");
        let small = cs(&format!("mode=0755,{ids}"))?;
        let sized = match hardening.tmpfs_size {
            Some(n) => cs(&format!("mode=0755,{ids},size={n}"))?,
            None => small.clone(),
        };
        let mut ops = Vec::with_capacity(l.inputs.len() + 40);
        for d in [
            "bld",
            "bld/store",
            "etc",
            "build",
            "proc",
            "dev",
            "tmp",
            ".oldroot",
        ] {
            ops.push(Op::Mkdir(at(d)?));
        }
        ops.push(Op::Bind {
            src: source(l.scratch_store, &mut keep)?,
            dst: at("bld/store")?,
            ro: false,
            dev: false,
        });
        // Inputs: the store bound read-only once at `/.store`, then each input bound from
        // there (a bind keeps its source's read-only, nosuid and nodev flags: one mount per
        // input) with short relative paths from `/bld/store` (path lookups are most of the
        // cost of a bind).
        if !l.inputs.is_empty() {
            ops.push(Op::Mkdir(at(".store")?));
            ops.push(Op::Bind {
                src: source(l.store_dir, &mut keep)?,
                dst: at(".store")?,
                ro: true,
                dev: false,
            });
            ops.push(Op::Chdir(at("bld/store")?));
            for (base, _) in &l.inputs {
                ops.push(Op::BindAs {
                    src: cs(&format!("../../.store/{base}"))?,
                    dst: cs(base)?,
                });
            }
            ops.push(Op::ChdirRoot);
            ops.push(Op::Detach(at(".store")?));
        }
        if let Some(sys) = &l.sysroot {
            ops.push(Op::Mkdir(at("usr")?));
            ops.push(Op::Bind {
                src: source(sys, &mut keep)?,
                dst: at("usr")?,
                ro: true,
                dev: false,
            });
            for d in ["bin", "sbin", "lib", "lib64"] {
                ops.push(Op::Symlink {
                    target: cs(&format!("usr/{d}"))?,
                    link: at(d)?,
                });
            }
        }
        ops.push(Op::Bind {
            src: source(l.etc, &mut keep)?,
            dst: at("etc")?,
            ro: true,
            dev: false,
        });
        ops.push(Op::Bind {
            src: source(l.build_top, &mut keep)?,
            dst: at("build")?,
            ro: false,
            dev: false,
        });
        // /dev as bubblewrap's `--dev`.
        ops.push(Op::Tmpfs(at("dev")?, small.clone()));
        for n in ["null", "zero", "full", "random", "urandom", "tty"] {
            ops.push(Op::Touch(at(&format!("dev/{n}"))?));
            ops.push(Op::Bind {
                src: Src::Path(cs(&format!("/dev/{n}"))?),
                dst: at(&format!("dev/{n}"))?,
                ro: false,
                dev: true,
            });
        }
        for (t, n) in [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("/proc/kcore", "core"),
            ("pts/ptmx", "ptmx"),
        ] {
            ops.push(Op::Symlink {
                target: cs(t)?,
                link: at(&format!("dev/{n}"))?,
            });
        }
        ops.push(Op::Mkdir(at("dev/shm")?));
        ops.push(Op::Tmpfs(at("dev/shm")?, sized.clone()));
        ops.push(Op::Mkdir(at("dev/pts")?));
        ops.push(Op::Tmpfs(at("tmp")?, sized));
        let proc_ro = ["sys", "sysrq-trigger", "irq", "bus"]
            .iter()
            .map(|d| at(&format!("proc/{d}")))
            .collect::<std::io::Result<Vec<_>>>()?;

        // The builder: an absolute path, or searched in the sandbox's PATH like execvp.
        let mut exe = Vec::new();
        if builder.contains('/') {
            exe.push(cs(builder)?);
        } else {
            let path = env.get("PATH").map(String::as_str).unwrap_or("");
            for d in path.split(':').filter(|d| !d.is_empty()) {
                exe.push(cs(&format!("{d}/{builder}"))?);
            }
        }
        let mut argv = vec![cs(builder)?];
        for a in args {
            argv.push(cs(a)?);
        }
        let envp = env
            .iter()
            .map(|(k, v)| cs(&format!("{k}={v}")))
            .collect::<std::io::Result<Vec<_>>>()?;

        let (uid, gid) = match hardening.build_user {
            Some(ids) => ids,
            None => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        };
        let store_locked = locked_flags(&cstr(l.store_dir)?);
        Ok(NativePlan {
            root: cstr(l.root_mount)?,
            root_opts: small,
            ops,
            proc_ro,
            network,
            uid_map: format!("{BUILD_UID} {uid} 1\n").into_bytes(),
            gid_map: format!("{BUILD_GID} {gid} 1\n").into_bytes(),
            store_locked,
            exe,
            argv,
            envp,
            dev_null: cs("/dev/null")?,
            nofile,
            hardening,
            sources: keep,
        })
    }
}

/// The mount flags of the file system at `path` that a bind in a user namespace must keep.
fn locked_flags(path: &CStr) -> libc::c_ulong {
    // SAFETY: statvfs on a NUL-terminated path into a zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    (st.f_flag as libc::c_ulong)
        & (libc::MS_NOEXEC | libc::MS_NOATIME | libc::MS_NODIRATIME | libc::MS_RELATIME)
}

/// A running native sandbox: the builder, PID 1 of its PID namespace, our direct child.
pub(crate) struct NativeChild {
    pub pid: Pid,
    status: Option<WaitStatus>,
}

/// Why the sandbox could not be started: the namespaces are not available here (fall back to
/// bubblewrap), or something else.
pub(crate) enum SpawnError {
    Unsupported,
    Io(std::io::Error),
}

impl NativeChild {
    /// Kill the sandbox: the builder is PID 1 of its namespace, so the kernel kills everything
    /// else in it.
    pub(crate) fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    /// `Some((exit code, signal))` once the builder has exited.
    pub(crate) fn try_wait(&mut self) -> std::io::Result<Option<(Option<i32>, Option<i32>)>> {
        if self.status.is_none() {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return Ok(None),
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.status = Some(s)
                }
                Ok(_) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.status.map(decode))
    }

    pub(crate) fn wait(&mut self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        loop {
            if let Some(s) = self.status {
                return Ok(decode(s));
            }
            match waitpid(self.pid, None) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.status = Some(s)
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn decode(s: WaitStatus) -> (Option<i32>, Option<i32>) {
    match s {
        WaitStatus::Exited(_, c) => (Some(c), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(sig as i32)),
        _ => (Some(-1), None),
    }
}

/// What the child reads (prepared before `clone`) and reports (written before it exits).
struct ChildArgs<'a> {
    plan: &'a NativePlan,
    log: i32,
    /// The child waits for one byte on this before setting up the sandbox.
    sync_read: i32,
    /// Our end of that pipe (the child closes its copy, so our death means end-of-file).
    sync_write: i32,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    /// Set by the child when creating the build user failed: `(step, errno)`.
    failed: std::sync::atomic::AtomicI64,
}

/// The child's stack (it shares our memory until it execs, so it needs its own).
const STACK: usize = 256 * 1024;

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Start `plan`; the build's stdout and stderr go to `log` (the write end is consumed).
///
/// `clone` with the new namespaces and `CLONE_VM`, like `posix_spawn`: the child borrows our
/// address space until it execs (no page tables copied, nothing to tear down). This thread
/// maps the build user and fills the control groups while the child waits on the sync pipe,
/// then waits until the child has exec'd or exited (the close-on-exec pipe reaches
/// end-of-file) before the stack and the plan may go. The child only makes system calls on
/// data prepared here and writes nothing of ours but [`ChildArgs::failed`] and its own stack.
pub(crate) fn spawn(plan: &NativePlan, log: OwnedFd) -> Result<NativeChild, SpawnError> {
    let argv: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = plan
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (sync_r, sync_w) = pipe().map_err(SpawnError::Io)?;
    let (exec_r, exec_w) = pipe().map_err(SpawnError::Io)?;
    let args = ChildArgs {
        plan,
        log: log.as_raw_fd(),
        sync_read: sync_r.as_raw_fd(),
        sync_write: sync_w.as_raw_fd(),
        argv: &argv,
        envp: &envp,
        failed: std::sync::atomic::AtomicI64::new(0),
    };
    // Not zeroed: the child only uses (and so only faults in) the top few kilobytes.
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(STACK);
    let mut flags = libc::CLONE_VM
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP
        | libc::SIGCHLD;
    if !plan.network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: the stack is ours and outlives the child's use of it (we return only once it
    // has exec'd or exited, below); `args` likewise.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(STACK).cast::<u8>();
        let top = top.sub(top as usize % 16);
        libc::clone(
            child_main,
            top.cast(),
            flags,
            std::ptr::addr_of!(args) as *mut libc::c_void,
        )
    };
    drop(log);
    drop(exec_w);
    drop(sync_r);
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EPERM | libc::EINVAL | libc::ENOSPC | libc::EUSERS | libc::ENOSYS) => {
                Err(SpawnError::Unsupported)
            }
            _ => Err(SpawnError::Io(e)),
        };
    }
    let mut child = NativeChild {
        pid: Pid::from_raw(pid),
        status: None,
    };
    let prepared = prepare_child(plan, pid);
    if let Err(e) = prepared {
        // The child sees end-of-file on the sync pipe and exits; make sure of it.
        drop(sync_w);
        child.kill();
        let _ = child.wait();
        return Err(SpawnError::Io(e));
    }
    // SAFETY: one byte to a pipe we own.
    unsafe { libc::write(sync_w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    drop(sync_w);
    // Until the child's exec (or exit) closes its copy of the write end. The child shares our
    // `errno` while it runs, so the loop does not look at it: a failed read is retried.
    let mut buf = [0u8; 8];
    for _ in 0..100_000 {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(exec_r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
    }
    drop(stack);
    let failed = args.failed.load(std::sync::atomic::Ordering::SeqCst);
    if failed != 0 {
        let _ = child.wait();
        let (step, errno) = ((failed >> 32) as i32, failed as i32);
        // Mapping the build user (step 2) fails where user namespaces are restricted.
        if step == 2 {
            return Err(SpawnError::Unsupported);
        }
        let e = std::io::Error::from_raw_os_error(errno);
        return Err(SpawnError::Io(std::io::Error::new(
            e.kind(),
            format!("sandbox setup step {step}: {e}"),
        )));
    }
    Ok(child)
}

/// What this side does for the waiting child: map the build user (when `buildit` is root) and
/// move it into the build's control groups.
fn prepare_child(plan: &NativePlan, pid: i32) -> std::io::Result<()> {
    if plan.hardening.build_user.is_some() {
        // `setgroups` stays allowed: the child clears its supplementary groups itself.
        std::fs::write(format!("/proc/{pid}/uid_map"), &plan.uid_map)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing uid_map: {e}")))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &plan.gid_map)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing gid_map: {e}")))?;
    }
    for f in &plan.hardening.cgroup_procs {
        std::fs::write(f, pid.to_string())
            .map_err(|e| std::io::Error::new(e.kind(), format!("joining {}: {e}", f.display())))?;
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn write_file(path: &CStr, data: &[u8]) -> bool {
    // SAFETY: raw system calls on NUL-terminated strings and buffers we own.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        n >= 0 && n as usize == data.len()
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) {
    let l = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit on a struct we own.
    unsafe { libc::setrlimit(resource, &l) };
}

/// The child: stdio, session, limits, waiting for the parent, build user; then
/// [`init_process`].
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's `ChildArgs`, alive until we exec or exit.
    let a = unsafe { &*(arg as *const ChildArgs<'_>) };
    let fail = |step: i64| {
        let e = errno() as u32 as i64;
        a.failed
            .store((step << 32) | e, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: ends the child without touching the shared memory further.
        unsafe { libc::_exit(127) }
    };
    let plan = a.plan;
    // SAFETY: raw system calls on data prepared before clone.
    unsafe {
        libc::close(a.sync_write);
        let null = libc::open(plan.dev_null.as_ptr(), libc::O_RDONLY);
        if null < 0
            || libc::dup2(null, 0) < 0
            || libc::dup2(a.log, 1) < 0
            || libc::dup2(a.log, 2) < 0
        {
            fail(1);
        }
        if null > 2 {
            libc::close(null);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            fail(1);
        }
        set_rlimit(libc::RLIMIT_CORE, 0);
        let mut nf = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut nf) == 0 {
            set_rlimit(libc::RLIMIT_NOFILE, plan.nofile.min(nf.rlim_max));
        }
        if let Some(n) = plan.hardening.fsize {
            set_rlimit(libc::RLIMIT_FSIZE, n);
        }
        if let Some(n) = plan.hardening.nproc {
            set_rlimit(libc::RLIMIT_NPROC, n);
        }
        if let Some(n) = plan.hardening.data {
            set_rlimit(libc::RLIMIT_DATA, n);
        }
        // The parent maps the build user and fills the control groups meanwhile; end-of-file
        // means it gave up (or died).
        let mut b = [0u8; 1];
        if libc::read(a.sync_read, b.as_mut_ptr().cast(), 1) != 1 {
            libc::_exit(127);
        }
        libc::close(a.sync_read);
        if plan.hardening.build_user.is_none()
            && (!write_file(c"/proc/self/setgroups", b"deny")
                || !write_file(c"/proc/self/uid_map", &plan.uid_map)
                || !write_file(c"/proc/self/gid_map", &plan.gid_map))
        {
            fail(2);
        }
        init_process(plan, a.argv, a.envp)
    }
}

/// Write `step: errno N` to stderr (the build log) and return [`SETUP_FAILED`].
fn init_fail(step: &CStr, path: Option<&CStr>) -> i32 {
    // SAFETY: raw system calls on NUL-terminated strings and buffers we own.
    unsafe {
        let e = errno();
        let w = |b: &[u8]| {
            libc::write(2, b.as_ptr().cast(), b.len());
        };
        w(b"buildit sandbox: ");
        w(step.to_bytes());
        if let Some(p) = path {
            w(b" ");
            w(p.to_bytes());
        }
        w(b": errno ");
        let mut digits = [0u8; 12];
        w(decimal(e.unsigned_abs(), &mut digits));
        w(b"\n");
        SETUP_FAILED
    }
}

fn mount(
    src: *const libc::c_char,
    dst: &CStr,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_char,
) -> bool {
    // SAFETY: raw system calls on NUL-terminated strings and buffers we own.
    unsafe { libc::mount(src, dst.as_ptr(), fstype, flags, data.cast()) == 0 }
}

/// Bind `src` on `dst` and remount it with `nosuid` (and `nodev`, `ro` as asked), keeping the
/// flags the kernel locks.
fn bind(src: &CStr, dst: &CStr, ro: bool, dev: bool, locked: libc::c_ulong) -> bool {
    {
        let null = std::ptr::null();
        if !mount(src.as_ptr(), dst, null, libc::MS_BIND | libc::MS_REC, null) {
            return false;
        }
        let mut f = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
        if ro {
            f |= libc::MS_RDONLY;
        }
        if !dev {
            f |= libc::MS_NODEV;
        }
        if mount(null, dst, null, f | locked, null) {
            return true;
        }
        // Another file system than the store's: read its own locked flags.
        mount(null, dst, null, f | locked_flags(dst), null)
    }
}

/// Become the build user (uid 1000 / gid 100 of the namespace, the build user's ids on the
/// host), without supplementary groups. Root of the namespace is not mapped, so the kernel
/// keeps our capabilities in it across the switch (they go at the exec).
fn become_build_user() -> bool {
    // SAFETY: raw system calls with integer arguments.
    unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(BUILD_GID, BUILD_GID, BUILD_GID) == 0
            && libc::setresuid(BUILD_UID, BUILD_UID, BUILD_UID) == 0
            // A change of credentials clears the parent-death signal.
            && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == 0
    }
}

/// Init: builds the file system view, then execs the builder (see the module docs).
fn init_process(
    plan: &NativePlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> i32 {
    // SAFETY: raw system calls on NUL-terminated strings and buffers we own.
    unsafe {
        let null = std::ptr::null();
        if !mount(null, c"/", null, libc::MS_REC | libc::MS_PRIVATE, null) {
            return init_fail(c"making / private", None);
        }
        if !mount(
            c"tmpfs".as_ptr(),
            &plan.root,
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            plan.root_opts.as_ptr(),
        ) {
            return init_fail(c"mounting the root tmpfs on", Some(&plan.root));
        }
        // From here on, paths are relative to the new root (host paths through descriptors).
        if libc::chdir(plan.root.as_ptr()) != 0 {
            return init_fail(c"chdir", Some(&plan.root));
        }
        // Opened here, in our own mount namespace (a bind's source must be in it), before the
        // switch to the build user.
        let mut fds = [-1i32; MAX_SOURCES];
        for (i, p) in plan.sources.iter().enumerate().take(MAX_SOURCES) {
            fds[i] = libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fds[i] < 0 {
                return init_fail(c"opening", Some(p));
            }
        }
        let root_fd = libc::open(
            c".".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if root_fd < 0 {
            return init_fail(c"opening the new root", None);
        }
        if plan.hardening.build_user.is_some() && !become_build_user() {
            return init_fail(c"switching to the build user", None);
        }
        for op in &plan.ops {
            match op {
                Op::Mkdir(p) => {
                    if libc::mkdir(p.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                        return init_fail(c"mkdir", Some(p));
                    }
                }
                Op::Touch(p) => {
                    let fd = libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                    if fd < 0 {
                        return init_fail(c"creating", Some(p));
                    }
                    libc::close(fd);
                }
                Op::Symlink { target, link } => {
                    if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                        return init_fail(c"symlink", Some(link));
                    }
                }
                Op::Bind { src, dst, ro, dev } => {
                    let mut buf = [0u8; 32];
                    let src = match src {
                        Src::Path(p) => p.as_c_str(),
                        Src::Host(i) => fd_path(fds[*i % MAX_SOURCES], &mut buf),
                    };
                    if !bind(src, dst, *ro, *dev, plan.store_locked) {
                        return init_fail(c"bind-mounting", Some(dst));
                    }
                }
                Op::Chdir(p) => {
                    if libc::chdir(p.as_ptr()) != 0 {
                        return init_fail(c"chdir", Some(p));
                    }
                }
                Op::ChdirRoot => {
                    if libc::fchdir(root_fd) != 0 {
                        return init_fail(c"chdir back to the new root", None);
                    }
                }
                Op::BindAs { src, dst } => {
                    if !mount(src.as_ptr(), dst, null, libc::MS_BIND, null) {
                        return init_fail(c"bind-mounting", Some(src));
                    }
                }
                Op::Detach(p) => {
                    if libc::umount2(p.as_ptr(), libc::MNT_DETACH) != 0 {
                        return init_fail(c"detaching", Some(p));
                    }
                    libc::rmdir(p.as_ptr());
                }
                Op::Tmpfs(p, opts) => {
                    if !mount(
                        c"tmpfs".as_ptr(),
                        p,
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        opts.as_ptr(),
                    ) {
                        return init_fail(c"mounting a tmpfs on", Some(p));
                    }
                }
            }
        }
        // Pseudo-terminals of our own (as bwrap; not fatal where the kernel refuses).
        mount(
            c"devpts".as_ptr(),
            c"dev/pts",
            c"devpts".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"newinstance,ptmxmode=0666,mode=620".as_ptr(),
        );
        // /proc of the new PID namespace (we are its PID 1).
        if !mount(
            c"proc".as_ptr(),
            c"proc",
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            null,
        ) {
            return init_fail(c"mounting /proc", None);
        }
        for p in &plan.proc_ro {
            if libc::access(p.as_ptr(), libc::F_OK) == 0 && !bind(p, p, true, false, 0) {
                return init_fail(c"read-only /proc part", Some(p));
            }
        }
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".oldroot".as_ptr()) != 0 {
            return init_fail(c"pivot_root", None);
        }
        libc::close(root_fd);
        if libc::chdir(c"/".as_ptr()) != 0 {
            return init_fail(c"chdir /", None);
        }
        if libc::umount2(c"/.oldroot".as_ptr(), libc::MNT_DETACH) != 0 {
            return init_fail(c"detaching the host's root", None);
        }
        libc::rmdir(c"/.oldroot".as_ptr());
        if !mount(
            null,
            c"/",
            null,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            null,
        ) {
            return init_fail(c"remounting / read-only", None);
        }
        let host = b"localhost";
        if libc::sethostname(host.as_ptr().cast(), host.len()) != 0 {
            return init_fail(c"sethostname", None);
        }
        if !plan.network {
            loopback_up();
        }
        if libc::chdir(c"/build".as_ptr()) != 0 {
            return init_fail(c"chdir /build", None);
        }
        libc::setsid();
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            return init_fail(c"no_new_privs", None);
        }
        for cap in 0..64 {
            libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        // What std::process does for a child: default SIGPIPE, empty signal mask.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // The seccomp filters last: nothing of the set-up above is subject to them.
        for f in &plan.hardening.filters {
            let prog = libc::sock_fprog {
                len: f.len() as libc::c_ushort,
                filter: f.as_ptr() as *mut libc::sock_filter,
            };
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return init_fail(c"installing the seccomp filter", None);
            }
        }
        // Nothing the caller left open reaches the builder: every descriptor above stderr is
        // closed at the exec (the setup's own descriptors included).
        cloexec_above_stderr();
        for exe in &plan.exe {
            // ETXTBSY: another thread of the parent (a multi-threaded build or test process)
            // may have forked while it still held the executable open for writing (it was just
            // copied into the store); that child's copy of the descriptor closes at its own
            // exec, so a short wait resolves it.
            for _ in 0..200 {
                libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
                if errno() != libc::ETXTBSY {
                    break;
                }
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 5_000_000,
                };
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
        }
        let w = |b: &[u8]| {
            libc::write(2, b.as_ptr().cast(), b.len());
        };
        w(b"buildit sandbox: cannot execute ");
        w(plan.argv.first().map(|a| a.to_bytes()).unwrap_or(b""));
        w(b": ");
        let e = errno();
        w(if e == libc::ENOENT {
            b"No such file or directory\n"
        } else if e == libc::EACCES {
            b"Permission denied\n"
        } else if e == libc::ETXTBSY {
            b"Text file busy (still open for writing)\n"
        } else {
            b"exec failed\n"
        });
        127
    }
}

/// Mark every file descriptor above 2 close-on-exec (`close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`,
/// or one `fcntl` per possible descriptor where the kernel lacks it): whatever the caller of
/// `buildit` left open (a directory, a socket) must not reach a build. Marking instead of
/// closing keeps descriptors the set-up still uses valid until the exec; only system calls, so
/// it is safe between `fork` and `exec`.
pub(crate) fn cloexec_above_stderr() {
    // SAFETY: plain system calls on integers.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as i32
        } else {
            65536
        };
        for fd in 3..top {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// `ip link set lo up` in the new network namespace.
fn loopback_up() {
    // SAFETY: raw system calls on NUL-terminated strings and buffers we own.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        libc::close(s);
    }
}
