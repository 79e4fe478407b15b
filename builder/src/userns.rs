//! Whether this process may create a user namespace, which every sandbox of an unprivileged
//! caller needs (the native backend's `clone` and bubblewrap's `--unshare-user` alike), and,
//! where the kernel refuses, what the administrator enables to allow it. The probe forks a
//! child that only calls `unshare(CLONE_NEWUSER)`, so the caller's own namespaces never change.
//! The refusal names the switch that is off — the sysctls of upstream Linux, of Debian's and
//! Ubuntu's kernels — as rootless container engines do, instead of a sandbox failing with
//! `EPERM`/`ENOSPC` somewhere in its log.

use std::path::Path;

/// The kernel's answer: why user namespaces cannot be created here, and what allows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The `unshare` error (`EPERM`, `ENOSPC`, `EUSERS`, `EINVAL`, `ENOSYS`).
    pub errno: i32,
    /// The settings that refuse it, each with the command that changes it.
    pub remedies: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.errno {
            libc::EPERM => "EPERM: not permitted".to_string(),
            libc::ENOSPC => "ENOSPC: the limit of user namespaces is 0 or reached".to_string(),
            libc::EUSERS => "EUSERS: too deeply nested".to_string(),
            libc::EINVAL | libc::ENOSYS => "not supported by this kernel".to_string(),
            e => std::io::Error::from_raw_os_error(e).to_string(),
        };
        write!(
            f,
            "this kernel refuses unprivileged user namespaces ({why}), which the sandbox needs \
             when buildit does not run as root"
        )?;
        if self.remedies.is_empty() {
            write!(
                f,
                "; in a container, start it with user namespaces allowed (its seccomp profile \
                 and capabilities), or run buildit as root"
            )
        } else {
            write!(f, "; as the administrator: {}", self.remedies.join("; "))
        }
    }
}

/// Whether `bwrap` can set a sandbox up for this caller: root, a set-user-ID root `bwrap`, or
/// a kernel that lets the caller create user namespaces (asked once per process).
pub fn usable_by_bwrap(bwrap: &Path) -> Result<(), Refusal> {
    use std::os::unix::fs::MetadataExt;
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let setuid_root =
        std::fs::metadata(bwrap).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0);
    if setuid_root {
        return Ok(());
    }
    static PROBE: std::sync::OnceLock<Result<(), Refusal>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

/// `Ok(())` where a user namespace can be created, else why not.
pub fn probe() -> Result<(), Refusal> {
    // SAFETY: the child makes only async-signal-safe calls (unshare, _exit) before exiting;
    // the parent waits for it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        // Cannot tell; let the sandbox report what it meets.
        return Ok(());
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let code = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                0
            } else {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EPERM)
                    .clamp(1, 255)
            };
            libc::_exit(code)
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid || !libc::WIFEXITED(status) {
        return Ok(());
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        errno => Err(Refusal {
            errno,
            remedies: remedies(Path::new("/proc/sys")),
        }),
    }
}

/// The switches under `sysctl` (normally `/proc/sys`) that refuse unprivileged user namespaces,
/// each as the command that turns it around.
pub fn remedies(sysctl: &Path) -> Vec<String> {
    let read = |name: &str| {
        std::fs::read_to_string(sysctl.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut out = Vec::new();
    if read("user/max_user_namespaces").as_deref() == Some("0") {
        out.push("`sysctl -w user.max_user_namespaces=15000` (it is 0)".to_string());
    }
    if read("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        out.push(
            "`sysctl -w kernel.unprivileged_userns_clone=1` (Debian's switch, off)".to_string(),
        );
    }
    if read("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        out.push(
            "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or an AppArmor profile \
             for buildit and bwrap that allows `userns` (Ubuntu's restriction, on)"
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, value) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, format!("{value}\n")).expect("write");
        }
        d
    }

    #[test]
    fn each_refusing_switch_is_named_with_its_remedy() {
        let d = sysctl(&[
            ("user/max_user_namespaces", "0"),
            ("kernel/unprivileged_userns_clone", "0"),
            ("kernel/apparmor_restrict_unprivileged_userns", "1"),
        ]);
        let r = remedies(d.path());
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].contains("user.max_user_namespaces=15000"));
        assert!(r[1].contains("kernel.unprivileged_userns_clone=1"));
        assert!(r[2].contains("apparmor_restrict_unprivileged_userns=0"));
    }

    #[test]
    fn permissive_switches_name_nothing() {
        let d = sysctl(&[
            ("user/max_user_namespaces", "96367"),
            ("kernel/unprivileged_userns_clone", "1"),
            ("kernel/apparmor_restrict_unprivileged_userns", "0"),
        ]);
        assert!(remedies(d.path()).is_empty());
        let refusal = Refusal {
            errno: libc::EPERM,
            remedies: Vec::new(),
        };
        assert!(refusal.to_string().contains("run buildit as root"));
    }

    /// On this machine the probe agrees with what `unshare` itself does.
    #[test]
    fn probe_matches_the_kernel() {
        let unshare_works = std::process::Command::new("unshare")
            .args(["-U", "true"])
            .status()
            .map(|s| s.success());
        if let Ok(works) = unshare_works {
            assert_eq!(probe().is_ok(), works);
        }
    }
}
