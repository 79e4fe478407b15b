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
//! Process structure: one `clone` with the new namespaces and `CLONE_VM | CLONE_VFORK` (as
//! `posix_spawn` does: no page tables copied, this thread waits until the child has exec'd).
//! The child, on its own stack and only making system calls on data prepared before the clone:
//! log pipe on stdout/stderr, `/dev/null` on stdin, `PR_SET_PDEATHSIG = SIGKILL`, rlimits, uid
//! 1000 / gid 100 mapped onto the invoking user; then a tmpfs as the new root, the scratch store
//! bound writable at `/bld/store` with the input closure bound read-only onto its stubs, the
//! sysroot at `/usr` with the merged-/usr links, `/etc` read-only, `/build` writable, `/dev`
//! (tmpfs with the host's `null zero full random urandom tty`, `pts`, `shm`), `/proc` (with
//! `sys sysrq-trigger irq bus` read-only), `/tmp`; `pivot_root`, the old root detached, `/`
//! remounted read-only; hostname `localhost`, loopback up, `/build` as working directory, a
//! new session, no new privileges, empty capability bounding and ambient sets; then `execve` of
//! the builder with exactly the sandbox environment. The builder *is* PID 1 of its namespace:
//! when it exits or is killed, the kernel kills whatever it left behind (as under Nix).
//!
//! Failing to create the namespaces or to map the build user is reported as
//! [`SpawnError::Unsupported`] (the caller then falls back to bwrap); a later setup failure is
//! written to the build log and the child exits with status 126.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Exit status of init when setting up the sandbox failed (after a message on stderr).
const SETUP_FAILED: i32 = 126;

/// One mount operation of init (paths are absolute host paths before `pivot_root`).
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
        src: CString,
        dst: CString,
        ro: bool,
        /// Keep device nodes usable (`/dev/null`...).
        dev: bool,
        /// Skip when the source does not exist.
        optional: bool,
    },
    Tmpfs(CString),
    Chdir(CString),
    /// A plain bind mount (it inherits the source mount's flags).
    BindAs {
        src: CString,
        dst: CString,
    },
    /// Detach a mount and remove its mount point.
    Detach(CString),
}

/// Everything init needs, prepared before `fork`.
pub(crate) struct NativePlan {
    root: CString,
    ops: Vec<Op>,
    /// Done after `/proc` is mounted (bind `/proc/sys`... read-only).
    proc_dir: CString,
    proc_ro: Vec<CString>,
    devpts: CString,
    put_old: CString,
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
}

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

impl NativePlan {
    pub(crate) fn new(
        l: &Layout<'_>,
        builder: &str,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
        network: bool,
        nofile: u64,
    ) -> std::io::Result<NativePlan> {
        let root = l.root_mount.to_path_buf();
        let at = |inner: &str| cstr(&root.join(inner.trim_start_matches('/')));
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
            src: cstr(l.scratch_store)?,
            dst: at("bld/store")?,
            ro: false,
            dev: false,
            optional: false,
        });
        // Inputs: the store bound read-only once at `/.store`, then each input bound from
        // there (a bind keeps its source's read-only, nosuid and nodev flags: one mount per
        // input) with short relative paths from `/bld/store` (path lookups are most of the
        // cost of a bind).
        if !l.inputs.is_empty() {
            ops.push(Op::Mkdir(at(".store")?));
            ops.push(Op::Bind {
                src: cstr(l.store_dir)?,
                dst: at(".store")?,
                ro: true,
                dev: false,
                optional: false,
            });
            ops.push(Op::Chdir(at("bld/store")?));
            for (base, _) in &l.inputs {
                ops.push(Op::BindAs {
                    src: cs(&format!("../../.store/{base}"))?,
                    dst: cs(base)?,
                });
            }
            ops.push(Op::Chdir(cs("/")?));
            ops.push(Op::Detach(at(".store")?));
        }
        if let Some(sys) = &l.sysroot {
            ops.push(Op::Mkdir(at("usr")?));
            ops.push(Op::Bind {
                src: cstr(sys)?,
                dst: at("usr")?,
                ro: true,
                dev: false,
                optional: false,
            });
            for d in ["bin", "sbin", "lib", "lib64"] {
                ops.push(Op::Symlink {
                    target: cs(&format!("usr/{d}"))?,
                    link: at(d)?,
                });
            }
        }
        ops.push(Op::Bind {
            src: cstr(l.etc)?,
            dst: at("etc")?,
            ro: true,
            dev: false,
            optional: false,
        });
        ops.push(Op::Bind {
            src: cstr(l.build_top)?,
            dst: at("build")?,
            ro: false,
            dev: false,
            optional: false,
        });
        // /dev as bubblewrap's `--dev`.
        ops.push(Op::Tmpfs(at("dev")?));
        for n in ["null", "zero", "full", "random", "urandom", "tty"] {
            ops.push(Op::Touch(at(&format!("dev/{n}"))?));
            ops.push(Op::Bind {
                src: cs(&format!("/dev/{n}"))?,
                dst: at(&format!("dev/{n}"))?,
                ro: false,
                dev: true,
                optional: false,
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
        ops.push(Op::Tmpfs(at("dev/shm")?));
        ops.push(Op::Mkdir(at("dev/pts")?));
        ops.push(Op::Tmpfs(at("tmp")?));
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

        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let store_locked = locked_flags(&cstr(l.store_dir)?);
        Ok(NativePlan {
            root: cstr(&root)?,
            ops,
            proc_dir: at("proc")?,
            proc_ro,
            devpts: at("dev/pts")?,
            put_old: at(".oldroot")?,
            network,
            uid_map: format!("{} {uid} 1\n", crate::sandbox::BUILD_UID).into_bytes(),
            gid_map: format!("{} {gid} 1\n", crate::sandbox::BUILD_GID).into_bytes(),
            store_locked,
            exe,
            argv,
            envp,
            dev_null: cs("/dev/null")?,
            nofile,
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
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    /// Set by the child when creating the build user failed: `(step, errno)`.
    failed: std::sync::atomic::AtomicI64,
}

/// The child's stack (it shares our memory until it execs, so it needs its own).
const STACK: usize = 256 * 1024;

/// Start `plan`; the build's stdout and stderr go to `log` (the write end is consumed).
///
/// `clone` with the new namespaces, `CLONE_VM` and `CLONE_VFORK`, like `posix_spawn`: the
/// child borrows our address space until it execs (no page tables copied, nothing to tear
/// down), and this thread waits meanwhile. The child only makes system calls on data prepared
/// here and writes nothing of ours but [`ChildArgs::failed`] and its own stack.
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
    let args = ChildArgs {
        plan,
        log: log.as_raw_fd(),
        argv: &argv,
        envp: &envp,
        failed: std::sync::atomic::AtomicI64::new(0),
    };
    // Not zeroed: the child only uses (and so only faults in) the top few kilobytes.
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(STACK);
    let mut flags = libc::CLONE_VM
        | libc::CLONE_VFORK
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
    // SAFETY: the stack is ours and outlives the child's use of it (CLONE_VFORK: we resume
    // only once it has exec'd or exited); `args` likewise.
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

/// The child: stdio, session, limits, build user; then [`init_process`].
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's `ChildArgs`, alive while we run (CLONE_VFORK).
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
        let core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &core);
        let mut nf = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut nf) == 0 {
            let lim = plan.nofile.min(nf.rlim_max);
            nf.rlim_cur = lim;
            nf.rlim_max = lim;
            libc::setrlimit(libc::RLIMIT_NOFILE, &nf);
        }
        if !write_file(c"/proc/self/setgroups", b"deny")
            || !write_file(c"/proc/self/uid_map", &plan.uid_map)
            || !write_file(c"/proc/self/gid_map", &plan.gid_map)
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
        let mut n = e.unsigned_abs();
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        w(&digits[i..]);
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
            c"mode=0755".as_ptr(),
        ) {
            return init_fail(c"mounting the root tmpfs on", Some(&plan.root));
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
                Op::Bind {
                    src,
                    dst,
                    ro,
                    dev,
                    optional,
                } => {
                    if *optional && libc::access(src.as_ptr(), libc::F_OK) != 0 {
                        continue;
                    }
                    if !bind(src, dst, *ro, *dev, plan.store_locked) {
                        return init_fail(c"bind-mounting", Some(src));
                    }
                }
                Op::Chdir(p) => {
                    if libc::chdir(p.as_ptr()) != 0 {
                        return init_fail(c"chdir", Some(p));
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
                Op::Tmpfs(p) => {
                    if !mount(
                        c"tmpfs".as_ptr(),
                        p,
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        c"mode=0755".as_ptr(),
                    ) {
                        return init_fail(c"mounting a tmpfs on", Some(p));
                    }
                }
            }
        }
        // Pseudo-terminals of our own (as bwrap; not fatal where the kernel refuses).
        mount(
            c"devpts".as_ptr(),
            &plan.devpts,
            c"devpts".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"newinstance,ptmxmode=0666,mode=620".as_ptr(),
        );
        // /proc of the new PID namespace (we are its PID 1).
        if !mount(
            c"proc".as_ptr(),
            &plan.proc_dir,
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            null,
        ) {
            return init_fail(c"mounting /proc on", Some(&plan.proc_dir));
        }
        for p in &plan.proc_ro {
            if libc::access(p.as_ptr(), libc::F_OK) == 0 && !bind(p, p, true, false, 0) {
                // The kernel keeps proc's own locked flags: retry with them.
                return init_fail(c"read-only /proc part", Some(p));
            }
        }
        if libc::syscall(
            libc::SYS_pivot_root,
            plan.root.as_ptr(),
            plan.put_old.as_ptr(),
        ) != 0
        {
            return init_fail(c"pivot_root", None);
        }
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
