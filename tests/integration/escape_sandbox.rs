//! The sandbox escape suite: each trial is a derivation that tries one escape or abuse from
//! inside a build, run through the real `buildit realise`, and checked from the outside, under
//! both backends (`::native`, the default, and `::bwrap`, `BUILDIT_SANDBOX=bwrap`), as root and
//! as an ordinary user (`.ci/run` runs the suite again as an unprivileged account):
//!
//! - a descriptor the caller left open is not visible in the build;
//! - the build runs as a uid of its own on the host (root's builds: a build user; an ordinary
//!   user's: the user's own uid, in a user namespace of its own), its directories are closed
//!   to other users, and no setuid/setgid file can be made (chmod, creating with the mode), even
//!   after `kill -9` of `buildit` while the build runs;
//! - nested user namespaces are refused unless the derivation asks for them;
//! - a fork bomb past `--max-pids`, a memory hog past `--max-memory`, an output past
//!   `--max-output` and a log flood past `--max-log` fail the build naming the limit (for an
//!   ordinary user without a delegated control group, the per-process rlimits of
//!   docs/builder.md stand in);
//! - `/tmp` and `/dev/shm` are bounded by `--max-tmpfs`.
//!
//! One combination is not made: the fork bomb under bwrap for an ordinary user without a pids
//! control group. There the only process limit would count every process of the user, since
//! bwrap creates the build's user namespace after the limit is set (docs/builder.md, "Limits").
//!
//! Small limits keep each trial fast. Needs `bwrap` and `busybox-static`.

use crate::cli::buildit;
use buildit_store::derivation::{DerivationOutput, ModuloHasher, SandboxProfile, DRV_VERSION};
use buildit_store::{Derivation, Store, StoreLayout, StorePath};
use libtest_mimic::{Failed, Trial};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The first uid of the build users (see `buildit_builder::uids`).
const FIRST_BUILD_UID: u32 = buildit_builder::uids::FIRST_BUILD_UID;
const BUILD_UID_SLOTS: u32 = buildit_builder::uids::BUILD_UID_SLOTS;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Native,
    Bwrap,
}

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    busybox: StorePath,
    backend: Backend,
}

fn fx(backend: Backend) -> Result<Fx, Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    // bwrap sets the sandbox up as the build user, who must be able to pass the store root.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let root = tmp.path().join("root");
    let store = Store::open(StoreLayout::at(&root)).map_err(|e| e.to_string())?;
    let bb = tmp.path().join("busybox");
    std::fs::create_dir_all(bb.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy("/usr/bin/busybox", bb.join("bin/busybox"))
        .map_err(|e| format!("busybox-static is needed: {e}"))?;
    let busybox = store
        .add_path(&bb, Some("busybox"))
        .map_err(|e| e.to_string())?;
    Ok(Fx {
        _tmp: tmp,
        root,
        store,
        busybox,
        backend,
    })
}

impl Fx {
    /// A derivation running `sh -c script` with busybox on PATH and `env` added.
    fn drv(&self, name: &str, script: &str, env: &[(&str, &str)]) -> Result<StorePath, Failed> {
        let bb = self.busybox.to_string();
        let mut e = BTreeMap::new();
        e.insert("PATH".to_string(), format!("{bb}/bin"));
        for (k, v) in env {
            e.insert(k.to_string(), v.to_string());
        }
        let mut drv = Derivation {
            version: DRV_VERSION.into(),
            name: name.into(),
            system: "x86_64-linux".into(),
            builder: format!("{bb}/bin/busybox"),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: e,
            outputs: BTreeMap::from([(
                "out".to_string(),
                DerivationOutput {
                    path: None,
                    fixed: None,
                },
            )]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::from([self.busybox.clone()]),
            sandbox: SandboxProfile {
                sysroot: None,
                network: false,
            },
        };
        let mut hasher = ModuloHasher::new();
        let h = hasher
            .hash(&drv, &mut |_| {
                Err(buildit_store::derivation::DerivationError::Decode(
                    "no input derivations".into(),
                ))
            })
            .map_err(|e| e.to_string())?;
        drv.fill_output_paths(&h).map_err(|e| e.to_string())?;
        self.store
            .add_bytes(&format!("{name}.drv"), &drv.encode(), &drv.references())
            .map_err(|e| Failed::from(e.to_string()))
    }

    fn out_of(&self, drv: &StorePath) -> Result<PathBuf, Failed> {
        let bytes = std::fs::read(self.store.layout().physical(drv)).map_err(|e| e.to_string())?;
        let d = Derivation::decode(&bytes).map_err(|e| e.to_string())?;
        let p = d.outputs["out"].path.clone().ok_or("no out path")?;
        Ok(self.store.layout().physical(&p))
    }

    fn realise_cmd(&self, args: &[&str]) -> Command {
        let mut c = buildit();
        c.arg("realise")
            .arg("--store-root")
            .arg(&self.root)
            .arg("--no-out-link")
            .args(args);
        match self.backend {
            Backend::Native => c.env_remove("BUILDIT_SANDBOX"),
            Backend::Bwrap => c.env("BUILDIT_SANDBOX", "bwrap"),
        };
        c
    }

    fn realise(&self, args: &[&str]) -> Result<Output, Failed> {
        self.realise_cmd(args)
            .output()
            .map_err(|e| Failed::from(e.to_string()))
    }

    /// Build `drv` with `args` (must succeed) and return its output's contents.
    fn build_read(&self, drv: &StorePath, args: &[&str]) -> Result<String, Failed> {
        let mut all: Vec<&str> = args.to_vec();
        let d = drv.to_string();
        all.push(&d);
        let o = self.realise(&all)?;
        if !o.status.success() {
            return Err(describe("realise", &o).into());
        }
        std::fs::read_to_string(self.out_of(drv)?).map_err(|e| e.to_string().into())
    }

    /// Build `drv` with `args`; it must fail with `reason` in the report and nothing
    /// registered.
    fn build_fails(&self, drv: &StorePath, args: &[&str], reason: &str) -> Result<Output, Failed> {
        let mut all: Vec<&str> = args.to_vec();
        let d = drv.to_string();
        all.push(&d);
        let t = Instant::now();
        let o = self.realise(&all)?;
        let err = String::from_utf8_lossy(&o.stderr);
        check(
            o.status.code() == Some(1) && err.contains(reason),
            format!(
                "wanted a failure naming `{reason}`: {}",
                describe("realise", &o)
            ),
        )?;
        check(
            t.elapsed() < Duration::from_secs(60),
            "the limit did not stop the build promptly",
        )?;
        check(
            !self.out_of(drv)?.exists(),
            "an output was registered after a limit was hit",
        )?;
        Ok(o)
    }
}

fn describe(what: &str, o: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn check(cond: bool, msg: impl std::fmt::Display) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg.to_string().into())
    }
}

fn is_root() -> bool {
    crate::is_root_user()
}

fn in_build_range(uid: u32) -> bool {
    (FIRST_BUILD_UID..FIRST_BUILD_UID + BUILD_UID_SLOTS).contains(&uid)
}

/// Every file under `dir` with a setuid or setgid bit.
fn setid_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.mode() & 0o6000 != 0 && !m.is_dir() {
                found.push(p.clone());
            }
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    found
}

/// A descriptor the caller left open on a host directory is not visible in the build.
fn inherited_fd(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let secret = f._tmp.path().join("host-dir");
    std::fs::create_dir(&secret).map_err(|e| e.to_string())?;
    std::fs::write(secret.join("secret"), "host secret\n").map_err(|e| e.to_string())?;
    let d = f.drv(
        "fd",
        "if cat /proc/self/fd/7/secret 2>/dev/null; then echo READ; fi > $out; \
         if echo x > /proc/self/fd/7/f 2>/dev/null; then echo WROTE; fi >> $out; \
         if [ -e /proc/self/fd/7 ]; then echo fd7-open; else echo fd7-closed; fi >> $out",
        &[],
    )?;
    // As in the report: `( exec 7</some/dir; buildit realise ... )`.
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("exec 7<\"$1\"; shift; exec \"$@\"")
        .arg("sh")
        .arg(&secret)
        .arg(crate::buildit_bin())
        .args(["realise", "--no-out-link", "--store-root"])
        .arg(&f.root)
        .arg(d.to_string())
        .env("NO_COLOR", "1")
        .env_remove("BUILDIT_STORE_ROOT");
    match b {
        Backend::Native => c.env_remove("BUILDIT_SANDBOX"),
        Backend::Bwrap => c.env("BUILDIT_SANDBOX", "bwrap"),
    };
    let o = c.output().map_err(|e| e.to_string())?;
    check(o.status.success(), describe("realise", &o))?;
    let out = std::fs::read_to_string(f.out_of(&d)?).map_err(|e| e.to_string())?;
    check(out == "fd7-closed\n", format!("the build saw fd 7: {out}"))?;
    check(
        !secret.join("f").exists(),
        "the build wrote into the caller's directory",
    )
}

/// The build runs as a uid of its own (root's: a build user; an ordinary user's: that user,
/// mapped in the build's own user namespace); chmod u+s / g+s and creating setuid files fail;
/// nothing setuid appears under the store root, even after `kill -9` of buildit while the build
/// runs; the build's directories are closed to other users.
fn build_user_and_setuid(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let d = f.drv(
        "setuid",
        "mkdir $out; cp $(command -v busybox) /build/sh; cp /build/sh $out/sh; \
         for m in 4755 2755 u+s g+s; do \
           if chmod $m /build/sh $out/sh 2>/dev/null; then echo chmod-$m-ok; else echo chmod-$m-refused; fi; \
         done > $out/log; \
         if install -m 4755 /build/sh /build/sh2 2>/dev/null; then echo install-ok; else echo install-refused; fi >> $out/log; \
         touch /build/running; echo started; sleep 30",
        &[],
    )?;
    let mut child = f
        .realise_cmd(&[&d.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Wait for the build to be running, then look at its files from the host.
    let tmp = f.store.layout().tmp_dir();
    let t = Instant::now();
    let running = loop {
        let found = std::fs::read_dir(&tmp).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path().join("build/running"))
                .find(|p| p.exists())
        });
        if let Some(p) = found {
            break p;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err("the build never started".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let build_dir = running.parent().ok_or("no parent")?.to_path_buf();
    let wrapper = build_dir.parent().ok_or("no parent")?.to_path_buf();
    let file = std::fs::metadata(&running).map_err(|e| e.to_string())?;
    let bmeta = std::fs::metadata(&build_dir).map_err(|e| e.to_string())?;
    let wmeta = std::fs::metadata(&wrapper).map_err(|e| e.to_string())?;
    // kill -9 of buildit: the sandbox dies with it, its files stay until gc.
    child.kill().map_err(|e| e.to_string())?;
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    check(
        bmeta.permissions().mode() & 0o777 == 0o700,
        format!("/build is {:o} on the host", bmeta.permissions().mode()),
    )?;
    check(
        wmeta.permissions().mode() & 0o007 == 0,
        format!(
            "the build directory's parent is {:o}: other users may pass",
            wmeta.permissions().mode()
        ),
    )?;
    if is_root() {
        check(
            in_build_range(file.uid()) && file.uid() == bmeta.uid(),
            format!("a file the build created is owned by uid {}", file.uid()),
        )?;
        check(
            wmeta.uid() == 0 && wmeta.gid() == file.gid(),
            format!("wrapper owned by {}:{}", wmeta.uid(), wmeta.gid()),
        )?;
    } else {
        let me = crate::effective_uid().ok_or("no uid in /proc/self/status")?;
        check(
            file.uid() == me && bmeta.uid() == me && wmeta.uid() == me,
            format!(
                "a file the build created is owned by uid {}, /build by {}, its parent by {} (the caller is {me})",
                file.uid(),
                bmeta.uid(),
                wmeta.uid()
            ),
        )?;
    }
    // The chmod attempts, from the scratch store left behind.
    let setid = setid_files(&f.root);
    check(setid.is_empty(), format!("setuid/setgid files: {setid:?}"))?;
    let logs: Vec<String> = std::fs::read_dir(&tmp)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path().join("store"))
        .filter_map(|s| std::fs::read_dir(s).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path().join("log")))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let want = "chmod-4755-refused\nchmod-2755-refused\nchmod-u+s-refused\nchmod-g+s-refused\ninstall-refused\n";
    check(
        logs.iter().any(|l| l == want),
        format!("chmod results: {logs:?}"),
    )?;
    // gc removes what the killed process left.
    let o = buildit()
        .args(["store", "gc", "--store-root"])
        .arg(&f.root)
        .output()
        .map_err(|e| e.to_string())?;
    check(o.status.success(), describe("gc", &o))?;
    check(!wrapper.exists(), "gc left the killed build's directory")
}

/// Nested user namespaces: refused, unless the derivation asks for them.
fn nested_userns(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let script = "if unshare -U true 2>/dev/null; then echo userns-ok; else echo userns-refused; fi > $out; \
                  if unshare -r true 2>/dev/null; then echo mapped-ok; else echo mapped-refused; fi >> $out";
    let d = f.drv("userns", script, &[])?;
    let out = f.build_read(&d, &[])?;
    check(
        out == "userns-refused\nmapped-refused\n",
        format!("unshare -U in a build: {out}"),
    )?;
    let d = f.drv(
        "userns-allowed",
        script,
        &[("requiredSystemFeatures", "userns")],
    )?;
    let out = f.build_read(&d, &[])?;
    check(
        out.starts_with("userns-ok\n"),
        format!("unshare -U with requiredSystemFeatures = userns: {out}"),
    )
}

/// A fork bomb past `--max-pids` fails the build naming the limit.
fn fork_bomb(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let d = f.drv(
        "forkbomb",
        "set -e; i=0; while [ $i -lt 300 ]; do sleep 20 & i=$((i+1)); done; wait; echo > $out",
        &[],
    )?;
    f.build_fails(&d, &["--max-pids", "64"], "limit of 64 processes")?;
    Ok(())
}

/// A memory hog past `--max-memory` fails the build naming the limit.
fn memory_hog(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let d = f.drv(
        "memhog",
        "set -e; echo hogging; awk 'BEGIN { s = \"xxxxxxxxxxxxxxxx\"; while (1) s = s s }'; echo > $out",
        &[],
    )?;
    f.build_fails(
        &d,
        &["--max-memory", "64M"],
        "memory limit of 67108864 bytes",
    )?;
    Ok(())
}

/// An output past `--max-output` fails the build naming the limit: one big file (stopped
/// by `RLIMIT_FSIZE` while written) and several smaller ones (the total, after the build).
fn output_limit(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let d = f.drv("bigfile", "head -c 3000000 /dev/zero > $out", &[])?;
    f.build_fails(
        &d,
        &["--max-output", "1M"],
        "output exceeded the limit of 1048576 bytes",
    )?;
    let d = f.drv(
        "manyfiles",
        "mkdir $out; for i in 1 2 3; do head -c 600000 /dev/zero > $out/$i; done",
        &[],
    )?;
    f.build_fails(
        &d,
        &["--max-output", "1M"],
        "output exceeded the limit of 1048576 bytes",
    )?;
    Ok(())
}

/// A log flood past `--max-log` fails the build naming the limit; the log keeps at most
/// the limit.
fn log_flood(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let d = f.drv("logflood", "yes 'flooding the log'; echo > $out", &[])?;
    f.build_fails(
        &d,
        &["--max-log", "100K"],
        "log exceeded the limit of 102400 bytes",
    )?;
    let log = buildit()
        .args(["log", "--store-root"])
        .arg(&f.root)
        .arg(d.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    check(
        !log.stdout.is_empty() && log.stdout.len() <= 102_400,
        format!("the kept log has {} bytes", log.stdout.len()),
    )
}

/// `/tmp` and `/dev/shm` are bounded by `--max-tmpfs`.
fn tmpfs_bounded(b: Backend) -> Result<(), Failed> {
    let f = fx(b)?;
    let d = f.drv(
        "tmpfs",
        "for t in /tmp /dev/shm; do \
           if head -c 3000000 /dev/zero > $t/big 2>/dev/null; then echo $t-unbounded; else echo $t-full; fi; \
         done > $out; \
         df -k /tmp | tail -1 | awk '{print $2}' >> $out",
        &[],
    )?;
    let out = f.build_read(&d, &["--max-tmpfs", "1M"])?;
    check(
        out == "/tmp-full\n/dev/shm-full\n1024\n",
        format!("tmpfs with --max-tmpfs 1M: {out}"),
    )
}

pub fn trials() -> Vec<Trial> {
    type F = fn(Backend) -> Result<(), Failed>;
    let cases: [(&str, F); 8] = [
        ("inherited-fd-not-visible", inherited_fd),
        ("build-user-no-setuid-kill9", build_user_and_setuid),
        ("nested-userns-refused", nested_userns),
        ("fork-bomb-pids-limit", fork_bomb),
        ("memory-hog-memory-limit", memory_hog),
        ("output-limit", output_limit),
        ("log-flood-log-limit", log_flood),
        ("tmpfs-bounded", tmpfs_bounded),
    ];
    let mut v = Vec::new();
    for (name, f) in cases {
        for (b, bn) in [(Backend::Native, "native"), (Backend::Bwrap, "bwrap")] {
            if name == "fork-bomb-pids-limit" && b == Backend::Bwrap && !pids_limit_under_bwrap() {
                continue;
            }
            v.push(crate::gated(
                format!("escape::{name}::{bn}"),
                &["bwrap", "busybox"],
                false,
                move || f(b),
            ));
        }
    }
    v
}

/// Whether bwrap builds of this caller have a process limit: root's (a build user's uid, or a
/// pids control group) do, an ordinary user's only with a delegated cgroup v2
/// (`BUILDIT_CGROUP`).
fn pids_limit_under_bwrap() -> bool {
    is_root() || std::env::var_os("BUILDIT_CGROUP").is_some()
}
