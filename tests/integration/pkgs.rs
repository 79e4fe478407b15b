//! The package set for real: hello and zlib build from their orig tarballs with the Debian
//! sysroot and pass their own `make check` (asserted on `buildit log`), the runtime closure
//! check (ELF `NEEDED`) fails a package that does not declare a library it links and passes it
//! once declared, and `buildit run` runs packages in a sandbox holding exactly their closure
//! (nginx too, serving a page on loopback).
//!
//! All trials share one store (a process-wide `OnceLock` fixture), so the sysroot is built
//! once: `$BUILDIT_PKGS_TEST_STORE` when set (a warm store), else
//! `$CARGO_TARGET_TMPDIR/pkgs-store`, which persists between runs like a cache. A cold store
//! downloads the pinned `.deb`s and orig tarballs from the Debian mirror of the local apt
//! configuration (about 75 MB) and builds the sysroot (about 20 s). Needs `bwrap`: without it
//! the trials are ignored with the reason, and under CI they fail naming it.

use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

type R = Result<(), Failed>;

/// The `buildit` command with the refreshed Debian lock (see
/// [`crate::e2e::debian_lock_for_builds`]), so these builds do not go stale at a Debian point
/// release either; under CI a failed refresh fails the trial.
fn buildit() -> Result<Command, Failed> {
    let mut c = crate::cli::buildit();
    if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
        c.env("BUILDIT_DEBIAN_LOCK", lock);
    }
    Ok(c)
}

/// The shared store root, with the sysroot and the C library realised in it (also used by the
/// image tests that build real packages, so a test run builds the sysroot once).
pub fn shared_store() -> Result<&'static Path, Failed> {
    store()
}

/// See [`shared_store`].
fn store() -> Result<&'static Path, Failed> {
    static STORE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = STORE.get_or_init(|| {
        let root = std::env::var_os("BUILDIT_PKGS_TEST_STORE")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::target_tmpdir().join("pkgs-store"));
        let o = realise(
            &root,
            &[
                "-E",
                "let b = import <buildit>; in [ b.debian.sysroot (b.debian.package \"libc6\" \"\") ]",
            ],
        )
        .map_err(|e| format!("{e:?}"))?;
        if !o.status.success() {
            return Err(format!("the sysroot did not build\n{}", describe(&o)));
        }
        Ok(root)
    });
    match r {
        Ok(p) => Ok(p.as_path()),
        Err(e) => Err(e.clone().into()),
    }
}

fn describe(o: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn check(cond: bool, msg: impl std::fmt::Display) -> R {
    if cond {
        Ok(())
    } else {
        Err(msg.to_string().into())
    }
}

fn realise(root: &Path, args: &[&str]) -> Result<Output, Failed> {
    buildit()?
        .arg("realise")
        .arg("--store-root")
        .arg(root)
        .args(["--no-out-link", "--cores", "2"])
        .args(args)
        .output()
        .map_err(|e| Failed::from(e.to_string()))
}

fn run_cmd(root: &Path, args: &[&str]) -> Result<Command, Failed> {
    let mut c = buildit()?;
    c.arg("run").arg("--store-root").arg(root).args(args);
    Ok(c)
}

fn output(mut c: Command) -> Result<Output, Failed> {
    c.output().map_err(|e| Failed::from(e.to_string()))
}

fn log_of(root: &Path, path: &str) -> Result<String, Failed> {
    let o = output({
        let mut c = buildit()?;
        c.arg("log").arg("--store-root").arg(root).arg(path);
        c
    })?;
    check(
        o.status.success(),
        format!("buildit log {path}\n{}", describe(&o)),
    )?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Build one package of the set and return its output path.
fn build(root: &Path, name: &str) -> Result<String, Failed> {
    let expr = format!("(import <buildit>).pkgs.{name}");
    let o = realise(root, &["-E", &expr])?;
    check(
        o.status.success(),
        format!("{name} did not build\n{}", describe(&o)),
    )?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The text after the check phase's banner and before the next banner.
fn phase<'a>(log: &'a str, name: &str) -> Option<&'a str> {
    let banner = format!("::: buildit phase {name}\n");
    let start = log.find(&banner)? + banner.len();
    let rest = &log[start..];
    Some(&rest[..rest.find("::: buildit phase ").unwrap_or(rest.len())])
}

fn hello_make_check() -> R {
    let root = store()?;
    let out = build(root, "hello")?;
    let log = log_of(root, &out)?;
    let checks = phase(&log, "check").ok_or("the log has no check phase")?;
    check(
        !checks.contains("checks disabled"),
        "hello's check phase was skipped",
    )?;
    for want in [
        "Testsuite summary for GNU Hello 2.10",
        "PASS: tests/hello-1",
        "PASS: tests/greeting-1",
        "# FAIL:  0",
        "# ERROR: 0",
    ] {
        check(
            checks.contains(want),
            format!("hello's check phase lacks {want:?}:\n{checks}"),
        )?;
    }
    let pass = checks
        .lines()
        .find_map(|l| l.strip_prefix("# PASS:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    check(pass >= 4, format!("only {pass} hello tests passed"))?;
    let closure = phase(&log, "closure").ok_or("the log has no closure phase")?;
    check(
        closure.contains("every NEEDED library provided"),
        format!("hello's closure check: {closure}"),
    )
}

fn zlib_make_check() -> R {
    let root = store()?;
    let out = build(root, "zlib")?;
    let log = log_of(root, &out)?;
    let checks = phase(&log, "check").ok_or("the log has no check phase")?;
    for want in [
        "*** zlib test OK ***",
        "*** zlib shared test OK ***",
        "*** zlib 64-bit test OK ***",
    ] {
        check(
            checks.contains(want),
            format!("zlib's check phase lacks {want:?}:\n{checks}"),
        )?;
    }
    let closure = phase(&log, "closure").ok_or("the log has no closure phase")?;
    check(
        closure.contains("closure check: 1 ELF file(s), every NEEDED library provided"),
        format!("zlib's closure check (libz.so.1.2.13 is its one ELF file): {closure}"),
    )
}

/// A package whose program links libcrypt (from the sysroot's libcrypt-dev): without a runtime
/// dependency providing libcrypt.so.1 the closure check fails the build; declared, it builds.
fn closure_check() -> R {
    let root = store()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src = dir.path().join("src");
    std::fs::create_dir(&src).map_err(|e| e.to_string())?;
    std::fs::write(
        src.join("demo.c"),
        "#include <crypt.h>\n#include <stdio.h>\nint main(void) { puts(crypt(\"pw\", \"$5$salt\")); return 0; }\n",
    )
    .map_err(|e| e.to_string())?;
    let recipe = |deps: &str| {
        format!(
            r#"let b = import <buildit>; in b.stdenv.mkPackage {{
  pname = "cryptdemo"; version = "1"; src = ./src;
  buildPhase = "cc -o cryptdemo demo.c -lcrypt";
  installPhase = "mkdir -p $out/bin && cp cryptdemo $out/bin/";
  runtimeDeps = [ {deps} ];
}}"#
        )
    };
    let file = dir.path().join("demo.bld");
    std::fs::write(&file, recipe("")).map_err(|e| e.to_string())?;
    let f = file.to_string_lossy().into_owned();
    let o = realise(root, &[&f])?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1),
        format!(
            "an undeclared libcrypt must fail the build\n{}",
            describe(&o)
        ),
    )?;
    for want in [
        "closure check: bin/cryptdemo needs libcrypt.so.1, which no runtime dependency provides",
        "help: declare a runtime dependency",
        "runtimeDeps = [ (debian.package \"libcrypt1\" \"\") ]",
    ] {
        check(
            err.contains(want),
            format!("the failure lacks {want:?}\n{}", describe(&o)),
        )?;
    }
    std::fs::write(&file, recipe("(b.debian.package \"libcrypt1\" \"\")"))
        .map_err(|e| e.to_string())?;
    let o = realise(root, &[&f])?;
    check(
        o.status.success(),
        format!("with libcrypt1 declared the build passes\n{}", describe(&o)),
    )?;
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let log = log_of(root, &out)?;
    check(
        phase(&log, "closure").is_some_and(|c| c.contains("1 ELF file(s), every NEEDED")),
        format!("closure phase:\n{log}"),
    )?;
    // in a set of one's own (an overlay), `buildit run --set` runs it: libcrypt.so.1 comes
    // from the declared Debian package, laid out at /usr in the sandbox
    let set = dir.path().join("set.bld");
    std::fs::write(
        &set,
        r#"(import <buildit>).pkgs.extend (self: super: {
  atoms = super.atoms // { "app-misc/cryptdemo"."1" = import ./demo.bld; };
})"#,
    )
    .map_err(|e| e.to_string())?;
    let s = set.to_string_lossy().into_owned();
    let o = output(run_cmd(root, &["--set", &s, "cryptdemo"])?)?;
    let text = String::from_utf8_lossy(&o.stdout);
    check(
        o.status.success() && text.starts_with("$5$salt$") && text.trim_end().len() == 8 + 43,
        format!("buildit run --set set.bld cryptdemo\n{}", describe(&o)),
    )
}

fn run_hello() -> R {
    let root = store()?;
    let o = output(run_cmd(root, &["hello", "--", "--greeting=hi"])?)?;
    check(
        o.status.success() && o.stdout == b"hi\n",
        format!("buildit run hello -- --greeting=hi\n{}", describe(&o)),
    )?;
    for atom in ["app-misc/hello", "app-misc/hello-2.10", "hello-2.10"] {
        let o = output(run_cmd(root, &[atom])?)?;
        check(
            o.status.success() && o.stdout == b"Hello, world!\n",
            format!("buildit run {atom}\n{}", describe(&o)),
        )?;
    }
    Ok(())
}

fn run_unknown_atom() -> R {
    let root = store()?;
    let o = output(run_cmd(root, &["helo"])?)?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1)
            && err.contains("buildit::run::unknown-atom")
            && err.contains("unknown package atom 'helo'")
            && err.contains("did you mean 'hello'"),
        format!("buildit run helo\n{}", describe(&o)),
    )?;
    let o = output(run_cmd(root, &["app-misc/hello-9.9"])?)?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1) && err.contains("app-misc/hello has no version 9.9"),
        format!("buildit run app-misc/hello-9.9\n{}", describe(&o)),
    )
}

/// busybox (the Debian package) as a shell inside the sandbox: exit statuses pass through,
/// the host's files and network are not there, the store holds exactly the closure.
fn run_sandbox() -> R {
    let root = store()?;
    let sh = |extra: &[&str], script: &str| -> Result<Output, Failed> {
        let mut args = extra.to_vec();
        args.extend(["busybox", "--", "sh", "-c", script]);
        output(run_cmd(root, &args)?)
    };
    let o = sh(&[], "echo on stderr >&2; exit 7")?;
    check(
        o.status.code() == Some(7) && String::from_utf8_lossy(&o.stderr).contains("on stderr"),
        format!("exit 7 passes through\n{}", describe(&o)),
    )?;
    // the checkout (the current directory of the test) and /root are not visible
    let checkout = crate::root();
    let probe = format!(
        "for p in /root {c} {c}/Cargo.toml /work /home; do if [ -e $p ]; then echo visible $p; fi; done; ls /; ls /bld/store",
        c = checkout.display()
    );
    let mut c = run_cmd(root, &["busybox", "--", "sh", "-c", &probe])?;
    c.current_dir(&checkout);
    let o = output(c)?;
    let text = String::from_utf8_lossy(&o.stdout);
    check(
        o.status.success() && !text.contains("visible"),
        format!("host paths leak into the sandbox\n{}", describe(&o)),
    )?;
    let store_entries: Vec<&str> = text
        .lines()
        .filter(|l| l.len() > 33 && l.as_bytes()[32] == b'-')
        .collect();
    check(
        store_entries.iter().all(|l| l.contains("debian-")) && store_entries.len() == 2,
        format!("the store holds the busybox tree and its runtime tree only: {store_entries:?}"),
    )?;
    // with --bind-cwd the current directory is there, and is the working directory
    let mut c = run_cmd(
        root,
        &[
            "--bind-cwd",
            "busybox",
            "--",
            "sh",
            "-c",
            "pwd; cat Cargo.toml",
        ],
    )?;
    c.current_dir(&checkout);
    let o = output(c)?;
    let text = String::from_utf8_lossy(&o.stdout);
    check(
        o.status.success()
            && text.starts_with(&format!("{}\n", checkout.display()))
            && text.contains("[workspace]"),
        format!("--bind-cwd\n{}", describe(&o)),
    )?;
    // no network but loopback, unless --net
    let o = sh(&[], "cat /proc/net/dev")?;
    let ifaces: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    check(
        o.status.success() && ifaces == ["lo"],
        format!(
            "own network namespace with loopback only: {ifaces:?}\n{}",
            describe(&o)
        ),
    )?;
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let o = sh(&["--net"], "cat /proc/net/dev")?;
    check(
        o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() == host_ifaces,
        format!("--net shares the host's interfaces\n{}", describe(&o)),
    )
}

/// nginx (with pcre2 and zlib from the set, OpenSSL and libcrypt from Debian) passes the
/// closure check, and `buildit run --net --bind-cwd nginx` serves a page on the host's loopback.
fn nginx_closure_and_run() -> R {
    use std::io::{Read, Write};
    let root = store()?;
    for name in ["pcre2", "nginx"] {
        let out = build(root, name)?;
        let log = log_of(root, &out)?;
        check(
            phase(&log, "closure").is_some_and(|c| c.contains("every NEEDED library provided")),
            format!("{name}'s closure check:\n{:?}", phase(&log, "closure")),
        )?;
    }
    let o = output(run_cmd(root, &["nginx", "--", "-V"])?)?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.success()
            && err.contains("nginx version: nginx/1.22.1")
            && err.contains("built with OpenSSL 3"),
        format!("buildit run nginx -- -V\n{}", describe(&o)),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path().to_string_lossy().into_owned();
    std::fs::create_dir(dir.path().join("html")).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("html/index.html"),
        "served by buildit run\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nerror_log stderr;\npid /tmp/nginx.pid;\nevents {{ }}\nhttp {{ access_log off; server {{ listen 127.0.0.1:{port}; root {d}/html; }} }}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let conf = format!("{d}/nginx.conf");
    let mut c = run_cmd(
        root,
        &["--net", "--bind-cwd", "nginx", "--", "-p", &d, "-c", &conf],
    )?;
    c.current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut response = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let _ = s.read_to_string(&mut response);
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    check(
        response.starts_with("HTTP/1.1 200 OK")
            && response.contains("Server: nginx/1.22.1")
            && response.ends_with("served by buildit run\n"),
        format!(
            "nginx under buildit run did not serve the page: {response:?}\n{}",
            describe(&o)
        ),
    )
}

/// `buildit search QUERY` and `pkgs.search`: atoms containing the text (not a pattern).
fn search_substring() -> R {
    let root = store()?;
    let search = |q: &str| -> Result<Output, Failed> {
        output({
            let mut c = buildit()?;
            c.arg("search").arg("--store-root").arg(root).arg(q);
            c
        })
    };
    let o = search("NGI")?;
    let text = String::from_utf8_lossy(&o.stdout);
    let atoms: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split(' ').next())
        .collect();
    check(
        o.status.success() && atoms == ["www-servers/nginx"] && text.contains("    +ssl  "),
        format!("buildit search NGI\n{}", describe(&o)),
    )?;
    let o = search("zzz")?;
    check(
        o.status.code() == Some(1)
            && String::from_utf8_lossy(&o.stderr).contains("no package atom contains 'zzz'"),
        format!("buildit search zzz\n{}", describe(&o)),
    )?;
    let o = output({
        let mut c = buildit()?;
        c.args(["eval", "--json", "--store-root"]).arg(root).args([
            "-E",
            "let p = (import <buildit>).pkgs; in [ (p.search \"s/\") (p.search \".*\") (p.search \"hello\") ]",
        ]);
        c
    })?;
    let want = r#"[["dev-libs/pcre2","sys-apps/busybox","sys-libs/zlib","www-servers/nginx"],[],["app-misc/hello"]]"#;
    check(
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == want,
        format!("pkgs.search\n{}", describe(&o)),
    )
}

pub fn trials() -> Vec<Trial> {
    let t = |name: &str, f: fn() -> R| crate::gated(format!("pkgs::{name}"), &["bwrap"], false, f);
    vec![
        t("hello-make-check", hello_make_check),
        t("zlib-make-check", zlib_make_check),
        t("closure-check-needed-libraries", closure_check),
        t("run-hello", run_hello),
        t("run-unknown-atom", run_unknown_atom),
        t("run-sandbox-busybox", run_sandbox),
        t("search-substring", search_substring),
        t("nginx-closure-check-and-run", nginx_closure_and_run),
    ]
}
