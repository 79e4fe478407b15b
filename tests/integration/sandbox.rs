//! The sandboxed builder through the real `buildit realise` binary. Each sandbox property is a
//! derivation (built in Rust: a static busybox added to the store, the `.drv` written with
//! `add_bytes`) that tries something and records what happened in `$out`; the test reads
//! `$out`. Also: no network but for fixed-output derivations, timeouts, daemons killed,
//! `kill -9` of `buildit realise`, two concurrent realisations building each derivation once,
//! failure reports, `--check` and `buildit log`. Needs `bwrap` and `busybox-static`: without them
//! the trials are ignored with the reason, and under CI they fail naming what is missing.

use crate::cli::buildit;
use buildit_store::derivation::{
    DerivationOutput, FixedOutput, HashAlgo, HashMode, ModuloHasher, SandboxProfile, DRV_VERSION,
};
use buildit_store::{Derivation, Store, StoreLayout, StorePath};
use libtest_mimic::{Failed, Trial};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    busybox: StorePath,
}

fn fx() -> Result<Fx, Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tmp.path().join("root");
    let store = Store::open(StoreLayout::at(&root)).map_err(|e| e.to_string())?;
    let bb = tmp.path().join("busybox");
    std::fs::create_dir_all(bb.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(crate::tool_path("busybox"), bb.join("bin/busybox"))
        .map_err(|e| format!("busybox-static is needed: {e}"))?;
    let busybox = store
        .add_path(&bb, Some("busybox"))
        .map_err(|e| e.to_string())?;
    Ok(Fx {
        _tmp: tmp,
        root,
        store,
        busybox,
    })
}

/// Options of a test derivation.
#[derive(Default)]
struct D<'a> {
    deps: &'a [StorePath],
    srcs: &'a [StorePath],
    env: &'a [(&'a str, &'a str)],
    fixed: Option<FixedOutput>,
}

impl Fx {
    /// A derivation running `sh -c script` with busybox on PATH; `$dep0`, `$dep1`... are the
    /// outputs of `deps`.
    fn drv(&self, name: &str, script: &str, o: D<'_>) -> Result<StorePath, Failed> {
        let bb = self.busybox.to_string();
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), format!("{bb}/bin"));
        let mut input_drvs = BTreeMap::new();
        for (i, d) in o.deps.iter().enumerate() {
            let dd = self.load(d)?;
            let out = dd.outputs["out"].path.clone().ok_or("no out")?;
            env.insert(format!("dep{i}"), out.to_string());
            input_drvs.insert(d.clone(), BTreeSet::from(["out".to_string()]));
        }
        for (k, v) in o.env {
            env.insert(k.to_string(), v.to_string());
        }
        let mut input_srcs: BTreeSet<StorePath> = o.srcs.iter().cloned().collect();
        input_srcs.insert(self.busybox.clone());
        let drv = Derivation {
            version: DRV_VERSION.into(),
            name: name.into(),
            system: "x86_64-linux".into(),
            builder: format!("{bb}/bin/busybox"),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env,
            outputs: BTreeMap::from([(
                "out".to_string(),
                DerivationOutput {
                    path: None,
                    fixed: o.fixed.clone(),
                },
            )]),
            input_drvs,
            input_srcs,
            sandbox: SandboxProfile {
                sysroot: None,
                network: o.fixed.is_some(),
            },
        };
        self.write_drv(name, drv)
    }

    /// Give `drv` the output paths its hash gives (whatever it claimed) and add it to the store.
    fn write_drv(&self, name: &str, mut drv: Derivation) -> Result<StorePath, Failed> {
        for o in drv.outputs.values_mut() {
            o.path = None;
        }
        let mut hasher = ModuloHasher::new();
        let h = hasher
            .hash(&drv, &mut |p| {
                self.load(p).map_err(|e| {
                    buildit_store::derivation::DerivationError::Decode(format!("{e:?}"))
                })
            })
            .map_err(|e| e.to_string())?;
        drv.fill_output_paths(&h).map_err(|e| e.to_string())?;
        let bytes = drv.encode();
        self.store
            .add_bytes(&format!("{name}.drv"), &bytes, &drv.references())
            .map_err(|e| Failed::from(e.to_string()))
    }

    fn load(&self, p: &StorePath) -> Result<Derivation, Failed> {
        let bytes = std::fs::read(self.store.layout().physical(p)).map_err(|e| e.to_string())?;
        Derivation::decode(&bytes).map_err(|e| Failed::from(e.to_string()))
    }

    fn out_of(&self, drv: &StorePath) -> Result<StorePath, Failed> {
        self.load(drv)?.outputs["out"]
            .path
            .clone()
            .ok_or_else(|| Failed::from("no out path"))
    }

    fn realise_cmd(&self, args: &[&str]) -> Command {
        let mut c = buildit();
        c.arg("realise")
            .arg("--store-root")
            .arg(&self.root)
            .arg("--no-out-link")
            .args(args);
        c
    }

    fn realise(&self, args: &[&str]) -> Result<Output, Failed> {
        self.realise_cmd(args)
            .output()
            .map_err(|e| Failed::from(e.to_string()))
    }

    /// Build `drv` (must succeed) and return the contents of its output.
    fn build_read(&self, drv: &StorePath) -> Result<String, Failed> {
        let o = self.realise(&[&drv.to_string()])?;
        if !o.status.success() {
            return Err(describe("realise", &o).into());
        }
        let out = self.out_of(drv)?;
        let stdout = String::from_utf8_lossy(&o.stdout);
        if stdout.trim() != out.to_string() {
            return Err(format!("stdout {stdout:?} is not {out}").into());
        }
        std::fs::read_to_string(self.store.layout().physical(&out))
            .map_err(|e| e.to_string().into())
    }

    fn valid(&self, p: &StorePath) -> Result<bool, Failed> {
        // A fresh handle: the CLI ran in another process.
        let s = Store::open(StoreLayout::at(&self.root)).map_err(|e| e.to_string())?;
        s.is_valid(p).map_err(|e| e.to_string().into())
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

fn host_isolation() -> Result<(), Failed> {
    let f = fx()?;
    let project = crate::root().display().to_string();
    let script = format!(
        "for p in /root /home {project} /etc/shadow /usr /bin /var; do \
           if [ -e $p ]; then echo present $p; else echo absent $p; fi; done > $out; \
         echo uid=$(id -u) gid=$(id -g) user=$(id -un) host=$(hostname) >> $out; \
         cat /etc/passwd >> $out; pwd >> $out"
    );
    let d = f.drv("isolation", &script, D::default())?;
    let out = f.build_read(&d)?;
    for p in [
        "/root",
        "/home",
        project.as_str(),
        "/etc/shadow",
        "/usr",
        "/bin",
        "/var",
    ] {
        check(
            out.contains(&format!("absent {p}\n")),
            format!("{p} visible:\n{out}"),
        )?;
    }
    check(
        out.contains("uid=1000 gid=100 user=builder host=localhost\n"),
        format!("identity:\n{out}"),
    )?;
    check(
        out.contains(
            "builder:x:1000:100:buildit build user:/build:/noshell\nnobody:x:65534:65534:nobody:/var/empty:/noshell\n/build\n",
        ) && !out.contains("root:"),
        format!("passwd is not the synthetic one:\n{out}"),
    )
}

/// A one-request HTTP server on 127.0.0.1 answering `body`; returns its port and how many
/// connections it accepted.
fn http_server(
    body: &'static [u8],
) -> Result<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>), Failed> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h2 = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    Ok((port, hits))
}

fn network() -> Result<(), Failed> {
    let f = fx()?;
    let (port, hits) = http_server(b"hello from the host\n")?;
    let url = format!("http://127.0.0.1:{port}/file");
    let d = f.drv(
        "no-network",
        &format!(
            "if wget -q -O /build/x {url} 2>/build/err; then echo connected; else cat /build/err; fi > $out"
        ),
        D::default(),
    )?;
    let out = f.build_read(&d)?;
    check(
        out.contains("Connection refused"),
        format!("ordinary derivation reached the network: {out}"),
    )?;
    check(
        hits.load(std::sync::atomic::Ordering::SeqCst) == 0,
        "the server saw a connection",
    )?;
    use sha2::Digest;
    let fixed = FixedOutput {
        mode: HashMode::Flat,
        algo: HashAlgo::Sha256,
        hash: sha2::Sha256::digest(b"hello from the host\n").to_vec(),
    };
    let d = f.drv(
        "fetched",
        &format!("wget -q -O $out {url}"),
        D {
            fixed: Some(fixed),
            ..D::default()
        },
    )?;
    let out = f.build_read(&d)?;
    check(
        out == "hello from the host\n",
        format!("fixed-output got {out:?}"),
    )?;
    // A wrong declared hash: the build fails naming both hashes, nothing is registered.
    let bad = FixedOutput {
        mode: HashMode::Flat,
        algo: HashAlgo::Sha256,
        hash: vec![0u8; 32],
    };
    let d = f.drv(
        "fetched-bad",
        &format!("wget -q -O $out {url}"),
        D {
            fixed: Some(bad),
            ..D::default()
        },
    )?;
    let o = f.realise(&[&d.to_string()])?;
    let err = String::from_utf8_lossy(&o.stderr);
    let actual = hex::encode(sha2::Sha256::digest(b"hello from the host\n"));
    check(
        !o.status.success()
            && err.contains("hash mismatch")
            && err.contains(&actual)
            && err.contains(&"0".repeat(64)),
        describe("bad hash", &o),
    )?;
    check(
        !f.valid(&f.out_of(&d)?)?,
        "a mismatching output was registered",
    )
}

fn closure_only() -> Result<(), Failed> {
    let f = fx()?;
    let secret = f
        .store
        .add_bytes("secret", b"not an input", &[])
        .map_err(|e| e.to_string())?;
    let input = f
        .store
        .add_bytes("declared", b"an input", &[])
        .map_err(|e| e.to_string())?;
    let script = format!(
        "if [ -e {secret} ]; then echo secret-visible; else echo secret-absent; fi > $out; \
         cat {input} >> $out; echo >> $out; \
         if echo x > {input} 2>/dev/null; then echo input-writable; else echo input-ro; fi >> $out; \
         if touch {bb}/bin/new 2>/dev/null; then echo bb-writable; else echo bb-ro; fi >> $out; \
         if touch /new 2>/dev/null; then echo root-writable; else echo root-ro; fi >> $out; \
         if touch /build/new /tmp/new 2>/dev/null; then echo build-writable; fi >> $out",
        bb = f.busybox
    );
    let d = f.drv(
        "closure",
        &script,
        D {
            srcs: std::slice::from_ref(&input),
            ..D::default()
        },
    )?;
    let out = f.build_read(&d)?;
    check(
        out == "secret-absent\nan input\ninput-ro\nbb-ro\nroot-ro\nbuild-writable\n",
        format!("unexpected:\n{out}"),
    )
}

fn env_exact() -> Result<(), Failed> {
    let f = fx()?;
    let d = f.drv(
        "env",
        "tr '\\0' '\\n' < /proc/$$/environ | sort > $out",
        D {
            env: &[("FOO", "bar"), ("TZ", "Europe/Paris")],
            ..D::default()
        },
    )?;
    let out = f.build_read(&d)?;
    let o = f.out_of(&d)?;
    // alone, the build is given every core (the scheduler's share, docs/builder.md)
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut want = vec![
        format!("BUILDIT_BUILD_CORES={cores}"),
        "BUILDIT_BUILD_TOP=/build".into(),
        "FOO=bar".into(),
        "HOME=/homeless-shelter".into(),
        "LC_ALL=C".into(),
        format!("PATH={}/bin", f.busybox),
        "PWD=/build".into(),
        "SOURCE_DATE_EPOCH=315532800".into(),
        "TEMP=/build".into(),
        "TEMPDIR=/build".into(),
        "TMP=/build".into(),
        "TMPDIR=/build".into(),
        "TZ=Europe/Paris".into(),
        format!("out={o}"),
    ];
    want.sort();
    let got: Vec<&str> = out.lines().collect();
    check(
        got == want,
        format!("env differs:\n{out}\nwanted:\n{}", want.join("\n")),
    )
}

fn marker_alive(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten().any(|e| {
                let c = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.contains("sleep") && c.contains(marker)
            })
        })
        .unwrap_or(false)
}

fn daemon_killed() -> Result<(), Failed> {
    let f = fx()?;
    let marker = format!("{}", 2_000_000 + std::process::id());
    let d = f.drv(
        "daemon",
        &format!("(sleep {marker} &) ; sleep {marker} & echo $! > $out"),
        D::default(),
    )?;
    let t = Instant::now();
    f.build_read(&d)?;
    check(
        t.elapsed() < Duration::from_secs(30),
        "the build waited for its daemons",
    )?;
    check(
        !marker_alive(&marker),
        "a process left behind by the builder survived",
    )
}

fn timeout() -> Result<(), Failed> {
    let f = fx()?;
    let d = f.drv(
        "slow",
        "echo starting; sleep 60; echo done > $out",
        D::default(),
    )?;
    let t = Instant::now();
    let o = f.realise(&["--timeout", "1", &d.to_string()])?;
    check(
        t.elapsed() < Duration::from_secs(20),
        "the timeout did not kill the build",
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1)
            && err.contains("timed out after 1 s")
            && err.contains("> starting"),
        describe("timeout", &o),
    )?;
    check(
        !f.valid(&f.out_of(&d)?)?,
        "a timed-out output was registered",
    )
}

fn failure_report() -> Result<(), Failed> {
    let f = fx()?;
    let d = f.drv(
        "failing",
        "i=0; while [ $i -lt 30 ]; do echo line $i; i=$((i+1)); done; echo partial > $out; exit 2",
        D::default(),
    )?;
    let o = f.realise(&[&d.to_string()])?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1)
            && err.contains("builder exited with status 2")
            && err.contains("> line 5\n")
            && err.contains("> line 29\n")
            && !err.contains("> line 4\n")
            && err.contains("full log: ")
            && err.contains("buildit::build::failed"),
        describe("failure", &o),
    )?;
    check(!f.valid(&f.out_of(&d)?)?, "a failed output was registered")?;
    let tmp_left: Vec<_> = std::fs::read_dir(f.store.layout().tmp_dir())
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-b"))
        .collect();
    check(
        tmp_left.is_empty(),
        format!("build dirs left: {tmp_left:?}"),
    )?;
    let log = buildit()
        .args(["log", "--store-root"])
        .arg(&f.root)
        .arg(d.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&log.stdout);
    check(
        log.status.success() && text.starts_with("line 0\n") && text.ends_with("line 29\n"),
        describe("buildit log", &log),
    )?;
    // --keep-failed keeps the build directory and says where.
    let o = f.realise(&["--keep-failed", &d.to_string()])?;
    let err = String::from_utf8_lossy(&o.stderr);
    let kept = err
        .lines()
        .find_map(|l| l.split("build directory kept at ").nth(1))
        .map(|s| PathBuf::from(s.trim()));
    check(
        kept.as_ref().is_some_and(|k| k.join("build").is_dir()),
        describe("keep-failed", &o),
    )
}

fn kill9() -> Result<(), Failed> {
    let f = fx()?;
    let marker = format!("{}", 3_000_000 + std::process::id());
    let d = f.drv(
        "killed",
        &format!("echo started; sleep {marker} & sleep 2; echo ok > $out"),
        D::default(),
    )?;
    let mut child = f
        .realise_cmd(&["--json", &d.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Wait for the build to start (its first log line).
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let t = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("\"line\":\"started\"") {
        let n = err.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 || t.elapsed() > Duration::from_secs(30) {
            return Err(format!("build never started: {}", String::from_utf8_lossy(&seen)).into());
        }
        seen.extend_from_slice(&buf[..n]);
    }
    child.kill().map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    check(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        format!("buildit realise ended with {status}, not by SIGKILL"),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    check(
        !marker_alive(&marker),
        "the sandbox outlived a killed buildit",
    )?;
    check(!f.valid(&f.out_of(&d)?)?, "registered after kill -9")?;
    let out = f.build_read(&d)?;
    check(out == "ok\n", format!("rebuild gave {out:?}"))
}

fn concurrent() -> Result<(), Failed> {
    let f = fx()?;
    let a = f.drv("a", "sleep 0.3; echo a > $out", D::default())?;
    let b = f.drv(
        "b",
        "sleep 0.3; cat $dep0 > $out; echo b >> $out",
        D {
            deps: std::slice::from_ref(&a),
            ..D::default()
        },
    )?;
    let c1 = f.drv(
        "c1",
        "cat $dep0 > $out; echo c1 >> $out",
        D {
            deps: std::slice::from_ref(&b),
            ..D::default()
        },
    )?;
    let c2 = f.drv(
        "c2",
        "sleep 0.2; cat $dep0 > $out; echo c2 >> $out",
        D {
            deps: std::slice::from_ref(&b),
            ..D::default()
        },
    )?;
    let top = f.drv(
        "top",
        "cat $dep0 $dep1 > $out",
        D {
            deps: &[c1.clone(), c2.clone()],
            ..D::default()
        },
    )?;
    let spawn = || {
        f.realise_cmd(&["--json", "-j", "2", &top.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let p1 = spawn().map_err(|e| e.to_string())?;
    let p2 = spawn().map_err(|e| e.to_string())?;
    let o1 = p1.wait_with_output().map_err(|e| e.to_string())?;
    let o2 = p2.wait_with_output().map_err(|e| e.to_string())?;
    check(o1.status.success(), describe("first", &o1))?;
    check(o2.status.success(), describe("second", &o2))?;
    check(o1.stdout == o2.stdout, "different outputs")?;
    let starts = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.contains("\"event\":\"started\""))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut all = starts(&o1);
    all.extend(starts(&o2));
    let mut drvs: Vec<String> = all
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["drv"].as_str().map(str::to_string))
        .collect();
    drvs.sort();
    let mut want: Vec<String> = [&a, &b, &c1, &c2, &top]
        .iter()
        .map(|p| p.to_string())
        .collect();
    want.sort();
    check(drvs == want, format!("builds started: {drvs:#?}"))?;
    let out = std::fs::read_to_string(f.store.layout().physical(&f.out_of(&top)?))
        .map_err(|e| e.to_string())?;
    check(out == "a\nb\nc1\na\nb\nc2\n", out)
}

fn check_reproducible() -> Result<(), Failed> {
    let f = fx()?;
    let good = f.drv("same", "mkdir $out; echo same > $out/f", D::default())?;
    let bad = f.drv(
        "differs",
        "mkdir $out; echo same > $out/f; cat /proc/sys/kernel/random/uuid > $out/g",
        D::default(),
    )?;
    for d in [&good, &bad] {
        let o = f.realise(&[&d.to_string()])?;
        check(o.status.success(), describe("build", &o))?;
    }
    let o = f.realise(&["--check", &good.to_string()])?;
    check(
        o.status.success() && o.stdout.is_empty(),
        describe("check same", &o),
    )?;
    let o = f.realise(&["--check", &bad.to_string()])?;
    let out = String::from_utf8_lossy(&o.stdout);
    check(
        o.status.code() == Some(1)
            && out.contains("differs when rebuilt")
            && out.contains("  g\n")
            && !out.contains("  f\n"),
        describe("check differs", &o),
    )
}

fn wrong_system() -> Result<(), Failed> {
    let f = fx()?;
    let d = f.drv("ok", "echo > $out", D::default())?;
    let mut drv = f.load(&d)?;
    drv.system = "aarch64-darwin".into();
    // a well-formed derivation for another system (its own output paths)
    let p = f.write_drv("other", drv)?;
    let o = f.realise(&[&p.to_string()])?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1)
            && err.contains("aarch64-darwin")
            && err.contains("buildit::build::system"),
        describe("wrong system", &o),
    )
}

fn out_links() -> Result<(), Failed> {
    let f = fx()?;
    let a = f.drv("la", "echo a > $out", D::default())?;
    let b = f.drv("lb", "echo b > $out", D::default())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let o = buildit()
        .current_dir(dir.path())
        .args(["realise", "--store-root"])
        .arg(&f.root)
        .arg(a.to_string())
        .arg(b.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    check(o.status.success(), describe("realise", &o))?;
    let r1 = std::fs::read_to_string(dir.path().join("result")).map_err(|e| e.to_string())?;
    let r2 = std::fs::read_to_string(dir.path().join("result-2")).map_err(|e| e.to_string())?;
    check(r1 == "a\n" && r2 == "b\n", format!("{r1:?} {r2:?}"))
}

fn keep_going() -> Result<(), Failed> {
    let f = fx()?;
    let bad = f.drv("bad", "echo broken; exit 1", D::default())?;
    let after = f.drv(
        "after-bad",
        "cat $dep0 > $out",
        D {
            deps: std::slice::from_ref(&bad),
            ..D::default()
        },
    )?;
    let good = f.drv("good", "sleep 0.5; echo good > $out", D::default())?;
    let o = f.realise(&[
        "--keep-going",
        "-j",
        "1",
        &bad.to_string(),
        &after.to_string(),
        &good.to_string(),
    ])?;
    check(o.status.code() == Some(1), describe("keep-going", &o))?;
    check(
        f.valid(&f.out_of(&good)?)?,
        describe("good not built with --keep-going", &o),
    )?;
    check(
        !f.valid(&f.out_of(&after)?)?,
        "a dependent of a failed build was built",
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        err.contains("> broken")
            && err.contains("builder exited with status 1")
            && err.contains("buildit::build::failed"),
        describe("the failure of bad is not reported", &o),
    )
}

pub fn trials() -> Vec<Trial> {
    let t = |name: &str, f: fn() -> Result<(), Failed>| {
        crate::gated(format!("sandbox::{name}"), &["bwrap", "busybox"], false, f)
    };
    vec![
        t("host-isolation", host_isolation),
        t("network-only-for-fixed-output", network),
        t("closure-only-and-read-only", closure_only),
        t("env-exactly-the-contract", env_exact),
        t("daemon-killed", daemon_killed),
        t("timeout", timeout),
        t("failure-report-log-keep-failed", failure_report),
        t("kill-9-realise", kill9),
        t("concurrent-realise-builds-once", concurrent),
        t("check-reproducibility", check_reproducible),
        t("wrong-system", wrong_system),
        t("out-links", out_links),
        t("keep-going", keep_going),
    ]
}
