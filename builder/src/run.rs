//! The sandbox of `buildit run`: one program of a package, run interactively with exactly its
//! runtime closure. It is the build sandbox's sibling and shares its parts: `bwrap` from
//! [`crate::sandbox::find_bwrap`], the user-namespace check of [`crate::userns`], the build
//! user's ids inside for a root caller, `/etc`'s `hosts`, and the system-call filter of
//! [`crate::seccomp`] (no setuid files, no nested user namespaces, no `io_uring`). It differs
//! where a run is not a build: the caller's terminal and standard streams, the caller's uid
//! (never root), `/usr` from the package's Debian runtime tree, optionally the host network and
//! the current directory, and no limits beyond the caller's own.
//!
//! The program runs with:
//! - the store closure bind-mounted read-only at its `/bld/store/...` paths, nothing else of
//!   the store;
//! - the runtime tree's `usr/` at `/usr` with the merged-/usr links `/bin /sbin /lib /lib64`;
//! - a synthetic `/etc` (passwd, group, hosts; the host's resolv.conf with the network),
//!   `/proc`, `/dev`, tmpfs `/tmp`, the root read-only, the working directory `/`;
//! - its own network namespace with only loopback unless [`RunSpec::net`], no capabilities,
//!   the environment it is given and nothing else.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::userns::Refusal;

/// What to run and with what (plain data, from the front end).
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// (physical path, logical /bld/store path) of every store path to mount read-only.
    pub closure: Vec<(PathBuf, String)>,
    /// The physical `usr/` of the Debian runtime tree, mounted at `/usr`.
    pub usr: Option<PathBuf>,
    /// Share the host's network (else: loopback only).
    pub net: bool,
    /// The current directory, bound read-write at its own path and used as working directory.
    pub cwd: Option<PathBuf>,
    /// `--new-session` (not when the caller's stdin is a terminal: the program may want it).
    pub new_session: bool,
    pub env: Vec<(String, String)>,
    /// The program's path inside the sandbox.
    pub program: String,
    pub args: Vec<OsString>,
}

/// Why a program could not be run (its own failure is its exit status).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "bubblewrap (`bwrap`) was not found in PATH; install it with `apt-get install bubblewrap`"
    )]
    BwrapMissing,
    #[error("{0}")]
    NoUserNamespaces(Refusal),
    #[error("cannot bind {0} into the sandbox")]
    BadCwd(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Io { what, source }
}

/// The full bwrap command line (without `bwrap` itself) for `spec` run as `ids` with `/etc`
/// from `etc` and the seccomp programs on `seccomp_fds`.
pub fn bwrap_args(
    spec: &RunSpec,
    etc: &Path,
    ids: (u32, u32),
    seccomp_fds: &[i32],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
    push(&["--unshare-all".as_ref(), "--unshare-user".as_ref()]);
    if spec.net {
        push(&["--share-net".as_ref()]);
    }
    push(&[
        "--die-with-parent".as_ref(),
        "--cap-drop".as_ref(),
        "ALL".as_ref(),
        "--hostname".as_ref(),
        "localhost".as_ref(),
        "--clearenv".as_ref(),
    ]);
    let (uid, gid) = (ids.0.to_string(), ids.1.to_string());
    push(&[
        "--uid".as_ref(),
        uid.as_ref(),
        "--gid".as_ref(),
        gid.as_ref(),
    ]);
    if spec.new_session {
        push(&["--new-session".as_ref()]);
    }
    for (phys, logical) in &spec.closure {
        push(&["--ro-bind".as_ref(), phys.as_os_str(), logical.as_ref()]);
    }
    if let Some(usr) = &spec.usr {
        push(&["--ro-bind".as_ref(), usr.as_os_str(), "/usr".as_ref()]);
        for d in ["bin", "sbin", "lib", "lib64"] {
            let target = format!("usr/{d}");
            let link = format!("/{d}");
            push(&["--symlink".as_ref(), target.as_ref(), link.as_ref()]);
        }
    }
    push(&[
        "--ro-bind".as_ref(),
        etc.as_os_str(),
        "/etc".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    match &spec.cwd {
        Some(c) => push(&[
            "--bind".as_ref(),
            c.as_os_str(),
            c.as_os_str(),
            "--chdir".as_ref(),
            c.as_os_str(),
        ]),
        None => push(&["--chdir".as_ref(), "/".as_ref()]),
    }
    push(&["--remount-ro".as_ref(), "/".as_ref()]);
    for fd in seccomp_fds {
        let fd = fd.to_string();
        push(&["--add-seccomp-fd".as_ref(), fd.as_ref()]);
    }
    for (k, v) in &spec.env {
        push(&["--setenv".as_ref(), k.as_ref(), v.as_ref()]);
    }
    push(&["--".as_ref(), spec.program.as_ref()]);
    a.extend(spec.args.iter().cloned());
    a
}

/// The uid and gid the program runs as: the caller's, but never root (a root caller's program
/// runs as the builds' user, 1000:100), so that programs that drop privileges when started as
/// root (nginx's workers) do not try to and fail in the user namespace.
pub fn run_ids() -> (u32, u32) {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if uid == 0 {
        (crate::sandbox::BUILD_UID, crate::sandbox::BUILD_GID)
    } else {
        (uid, gid)
    }
}

/// The synthetic `/etc` of a run: the program's uid and gid as `user`/`users`, `nobody`,
/// localhost, and with the host network its resolver configuration.
pub fn write_etc(dir: &Path, net: bool, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut passwd = format!("user:x:{uid}:{gid}:buildit run:/tmp:/bin/sh\n");
    let mut groups = format!("users:x:{gid}:\n");
    if uid != 65534 {
        passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/noshell\n");
    }
    if gid != 65534 {
        // Debian calls it nogroup; upstream defaults (nginx's `user nobody nobody`) nobody
        groups.push_str("nogroup:x:65534:\nnobody:x:65534:\n");
    }
    std::fs::write(dir.join("passwd"), passwd)?;
    std::fs::write(dir.join("group"), groups)?;
    std::fs::write(dir.join("hosts"), crate::sandbox::HOSTS)?;
    if net {
        if let Ok(r) = std::fs::read("/etc/resolv.conf") {
            std::fs::write(dir.join("resolv.conf"), r)?;
        }
    }
    Ok(())
}

/// Run `spec` with the caller's standard streams and wait for it: the program's exit status,
/// 128 + N when it died of signal N.
pub fn run(spec: &RunSpec) -> Result<u8, RunError> {
    if let Some(c) = &spec.cwd {
        if c == Path::new("/") || c.starts_with(buildit_store::STORE_DIR) {
            return Err(RunError::BadCwd(c.clone()));
        }
    }
    let bwrap = crate::sandbox::find_bwrap().map_err(|_| RunError::BwrapMissing)?;
    crate::userns::usable_by_bwrap(&bwrap).map_err(RunError::NoUserNamespaces)?;
    let etc = tempfile::Builder::new()
        .prefix("buildit-run-etc")
        .tempdir()
        .map_err(io("creating the sandbox's /etc"))?;
    let (uid, gid) = run_ids();
    write_etc(etc.path(), spec.net, uid, gid).map_err(io("writing the sandbox's /etc"))?;
    let filters = crate::seccomp::programs(false).map_err(|e| RunError::Io {
        what: "compiling the system-call filter",
        source: std::io::Error::other(e.to_string()),
    })?;
    let readers =
        crate::sandbox::seccomp_pipes(&filters).map_err(io("passing the system-call filter"))?;
    let fds: Vec<i32> = readers.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = std::process::Command::new(&bwrap);
    cmd.args(bwrap_args(spec, etc.path(), (uid, gid), &fds));
    let inherit = fds.clone();
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl on
    // descriptors prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &inherit {
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let status = cmd.status().map_err(io("starting bwrap"))?;
    drop(readers);
    drop(etc);
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_command_line() {
        let s = RunSpec {
            closure: vec![(PathBuf::from("/r/store/x-a"), "/bld/store/x-a".into())],
            usr: Some(PathBuf::from("/r/store/y-rt/usr")),
            net: false,
            cwd: None,
            new_session: true,
            env: vec![("PATH".into(), "/usr/bin".into())],
            program: "/bld/store/x-a/bin/a".into(),
            args: vec!["--x".into()],
        };
        let joined = |s: &RunSpec| {
            bwrap_args(s, Path::new("/tmp/etc"), (1000, 100), &[5])
                .iter()
                .map(|x| x.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let j = joined(&s);
        assert!(j.starts_with("--unshare-all --unshare-user --die-with-parent"));
        assert!(!j.contains("--share-net"));
        assert!(j.contains("--ro-bind /r/store/x-a /bld/store/x-a"));
        assert!(j.contains("--ro-bind /r/store/y-rt/usr /usr"));
        assert!(j.contains("--ro-bind /tmp/etc /etc"));
        assert!(j.contains("--chdir / --remount-ro / --add-seccomp-fd 5"));
        assert!(j.contains("--uid 1000 --gid 100"));
        assert!(j.ends_with("-- /bld/store/x-a/bin/a --x"));
        let mut s2 = s.clone();
        s2.net = true;
        s2.cwd = Some(PathBuf::from("/home/u/p"));
        let j2 = joined(&s2);
        assert!(j2.contains("--share-net"));
        assert!(j2.contains("--bind /home/u/p /home/u/p --chdir /home/u/p"));
    }

    #[test]
    fn etc_names_the_caller_and_nobody() {
        let d = tempfile::tempdir().expect("tempdir");
        write_etc(d.path(), false, 1001, 1001).expect("etc");
        let passwd = std::fs::read_to_string(d.path().join("passwd")).expect("passwd");
        assert!(passwd.starts_with("user:x:1001:1001:"));
        assert!(passwd.contains("nobody:x:65534:65534:"));
        assert!(!d.path().join("resolv.conf").exists());
    }

    #[test]
    fn store_and_root_are_not_bound() {
        for cwd in ["/", "/bld/store/x"] {
            let s = RunSpec {
                cwd: Some(PathBuf::from(cwd)),
                ..RunSpec::default()
            };
            assert!(matches!(run(&s), Err(RunError::BadCwd(_))), "{cwd}");
        }
    }
}
