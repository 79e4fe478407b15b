//! Shared package sets: a set published as a tarball (served by a loopback HTTP server the
//! trial starts) or as a git repository (a local one, by `file://`) is imported with
//! `builtins.fetchTarball { url; sha256; }` / `builtins.fetchGit { url; rev; }`, fetched during
//! evaluation and pinned. Checked through the real binary: pinning by trial (the mismatch
//! prints the hash to pin), a wrong pin failing with its code, the second evaluation working
//! with the server stopped (the path is valid), hostile archives refused with nothing
//! registered, a wrong revision failing clearly.

use crate::gated;
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub fn trials() -> Vec<Trial> {
    vec![
        gated(
            "sharing::tarball-set-pinned-and-offline".into(),
            &["tar", "gzip"],
            false,
            tarball_set,
        ),
        gated(
            "sharing::hostile-tarballs-register-nothing".into(),
            &["tar", "gzip"],
            false,
            hostile_tarballs,
        ),
        gated(
            "sharing::git-set-pinned-by-revision".into(),
            &["git"],
            false,
            git_set,
        ),
    ]
}

/// The package set every trial publishes: a plain value, a function from a second file, and a
/// derivation (instantiated, not built).
const SET: &str = r#"{
  answer = 42;
  greeting = "hello from the shared set";
  lib = import ./lib.bld;
  hello = derivation {
    name = "hello";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "echo hi > $out" ];
  };
}
"#;
const LIB: &str = "{ double = x: x * 2; }\n";

/// A loopback HTTP server for the files of a directory, counting the requests it answers,
/// that can be stopped (its port then refuses connections).
struct Server {
    addr: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(dir: PathBuf) -> Result<Server, Failed> {
        use std::io::{BufRead, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = conn else { continue };
                let Ok(clone) = c.try_clone() else { continue };
                let mut r = std::io::BufReader::new(clone);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut h = String::new();
                while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                    h.clear();
                }
                r2.fetch_add(1, Ordering::SeqCst);
                let name = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                let _ = match std::fs::read(dir.join(&name)) {
                    Ok(body) if !name.contains("..") && !name.contains('/') => c
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| c.write_all(&body)),
                    _ => c.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    ),
                };
            }
        });
        Ok(Server {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stop answering and close the port.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
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

/// `buildit eval --store-root STORE -E EXPR`.
fn eval(store: &Path, expr: &str) -> Result<Output, Failed> {
    Command::new(crate::buildit_bin())
        .env("NO_COLOR", "1")
        .env_remove("BUILDIT_STORE_ROOT")
        .arg("--store-root")
        .arg(store)
        .args(["eval", "-E", expr])
        .output()
        .map_err(|e| format!("running buildit: {e}").into())
}

/// The evaluation must succeed and print `want`.
fn eval_ok(store: &Path, expr: &str, want: &str) -> Result<(), Failed> {
    let out = eval(store, expr)?;
    let got = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || got.trim_end() != want {
        return Err(format!("{expr}\nwanted {want}\n{}", describe(&out)).into());
    }
    Ok(())
}

/// The evaluation must fail naming `code` and every one of `needles`; returns stderr.
fn eval_fails(store: &Path, expr: &str, code: &str, needles: &[&str]) -> Result<String, Failed> {
    let out = eval(store, expr)?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() || !err.contains(code) || !needles.iter().all(|n| err.contains(n)) {
        return Err(format!(
            "{expr}\nwanted a failure with {code} and {needles:?}\n{}",
            describe(&out)
        )
        .into());
    }
    Ok(err)
}

/// The names in the store's object directory, sorted.
fn store_objects(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("store"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sh(dir: &Path, program: &str, args: &[&str]) -> Result<String, Failed> {
    let out = Command::new(crate::tool_path(program))
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {args:?}\n{}", describe(&out)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write(p: &Path, text: &str) -> Result<(), Failed> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()).into())
}

fn tempdir() -> Result<tempfile::TempDir, Failed> {
    let base = crate::target_tmpdir();
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    tempfile::Builder::new()
        .prefix("sharing-")
        .tempdir_in(base)
        .map_err(|e| e.to_string().into())
}

/// The hash a mismatch reports (`got: HASH`).
fn got_hash(stderr: &str) -> Result<String, Failed> {
    stderr
        .lines()
        .find_map(|l| l.split_once("got: "))
        .map(|(_, h)| h.trim().to_string())
        .ok_or_else(|| format!("no `got:` line in\n{stderr}").into())
}

fn tarball_expr(url: &str, sha256: &str, body: &str) -> String {
    format!(
        r#"let set = import (builtins.fetchTarball {{ url = "{url}"; sha256 = "{sha256}"; }}); in {body}"#
    )
}

fn tarball_set() -> Result<(), Failed> {
    let t = tempdir()?;
    let dir = t.path();
    write(&dir.join("src/myset-1.0/default.bld"), SET)?;
    write(&dir.join("src/myset-1.0/lib.bld"), LIB)?;
    std::fs::create_dir_all(dir.join("serve")).map_err(|e| e.to_string())?;
    let archive = dir.join("serve/set.tar.gz");
    sh(
        &dir.join("src"),
        "tar",
        &["-czf", &archive.to_string_lossy(), "myset-1.0"],
    )?;
    let mut server = Server::start(dir.join("serve"))?;
    let url = server.url("set.tar.gz");
    let store = dir.join("store");

    // pinning by trial: an empty hash fetches, registers nothing and prints the hash
    let err = eval_fails(
        &store,
        &tarball_expr(&url, "", "set.answer"),
        "buildit::eval::hash-mismatch",
        &["got: sha256-", "nothing was registered"],
    )?;
    let pin = got_hash(&err)?;
    if store_objects(&store).iter().any(|o| o.ends_with("-source")) {
        return Err("a tree was registered without its pin".into());
    }
    eval_ok(&store, &tarball_expr(&url, &pin, "set.answer"), "42")?;
    eval_ok(&store, &tarball_expr(&url, &pin, "set.lib.double 21"), "42")?;
    eval_ok(
        &store,
        &tarball_expr(&url, &pin, "set.greeting"),
        "\"hello from the shared set\"",
    )?;
    let out = eval(
        &store,
        &tarball_expr(
            &url,
            &pin,
            "builtins.match \".*-hello.drv\" set.hello.drvPath != null",
        ),
    )?;
    if String::from_utf8_lossy(&out.stdout).trim() != "true" {
        return Err(format!("the set's derivation\n{}", describe(&out)).into());
    }
    // the hash pins the content: a wrong hash (hex) fails and prints the actual one in hex
    let zeros = "0".repeat(64);
    let err = eval_fails(
        &store,
        &tarball_expr(&url, &zeros, "set.answer"),
        "buildit::eval::hash-mismatch",
        &[&format!("expected: {zeros}")],
    )?;
    let hex = got_hash(&err)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the actual hash is not written as hex: {hex}").into());
    }
    eval_ok(&store, &tarball_expr(&url, &hex, "set.answer"), "42")?;
    // the path is valid: no request, and none possible once the server is stopped
    let before = server.requests();
    eval_ok(&store, &tarball_expr(&url, &pin, "set.answer"), "42")?;
    if server.requests() != before {
        return Err("a valid tree was fetched again".into());
    }
    server.stop();
    eval_ok(&store, &tarball_expr(&url, &pin, "set.lib.double 4"), "8")?;
    // a bare URL is not pinned
    eval_fails(
        &store,
        &format!(r#"import (builtins.fetchTarball "{url}")"#),
        "buildit::eval::missing-argument",
        &["not pinned"],
    )?;
    Ok(())
}

fn hostile_tarballs() -> Result<(), Failed> {
    let t = tempdir()?;
    let dir = t.path();
    std::fs::create_dir_all(dir.join("serve")).map_err(|e| e.to_string())?;
    // `../x`: a member named with `..` (GNU tar keeps it with --absolute-names)
    write(&dir.join("dotdot/x"), "escaped\n")?;
    write(&dir.join("dotdot/inner/default.bld"), "1\n")?;
    let a = dir.join("serve/dotdot.tar.gz");
    sh(
        &dir.join("dotdot/inner"),
        "tar",
        &["-czPf", &a.to_string_lossy(), "default.bld", "../x"],
    )?;
    // an absolute symlink
    write(&dir.join("abs/set/default.bld"), "1\n")?;
    std::os::unix::fs::symlink("/etc/passwd", dir.join("abs/set/passwd"))
        .map_err(|e| e.to_string())?;
    let b = dir.join("serve/abs.tar.gz");
    sh(
        &dir.join("abs"),
        "tar",
        &["-czf", &b.to_string_lossy(), "set"],
    )?;
    // a relative symlink leading out of the tree
    write(&dir.join("up/set/default.bld"), "1\n")?;
    std::os::unix::fs::symlink("../../../etc", dir.join("up/set/etc"))
        .map_err(|e| e.to_string())?;
    let c = dir.join("serve/up.tar.gz");
    sh(
        &dir.join("up"),
        "tar",
        &["-czf", &c.to_string_lossy(), "set"],
    )?;
    let server = Server::start(dir.join("serve"))?;
    let store = dir.join("store");
    // a store that exists, so that "nothing registered" compares two listings
    eval(&store, r#"builtins.toFile "marker" "x""#)?;
    let before = store_objects(&store);
    for (file, why) in [
        ("dotdot.tar.gz", "'..' in the name"),
        ("abs.tar.gz", "absolute path '/etc/passwd'"),
        ("up.tar.gz", "outside the tree"),
    ] {
        for sha in ["", &"0".repeat(64)] {
            let expr = format!(
                r#"import (builtins.fetchTarball {{ url = "{}"; sha256 = "{sha}"; name = "evil"; }})"#,
                server.url(file)
            );
            eval_fails(&store, &expr, "buildit::eval::fetch", &["refused", why])?;
        }
        if store_objects(&store) != before {
            return Err(format!(
                "{file}: the store changed\nbefore: {before:?}\nafter: {:?}",
                store_objects(&store)
            )
            .into());
        }
    }
    if dir.join("store/var/buildit/x").exists() || dir.join("store/var/x").exists() {
        return Err("an entry was written outside its directory".into());
    }
    Ok(())
}

fn git_expr(url: &str, rev: &str, extra: &str, body: &str) -> String {
    format!(
        r#"let src = builtins.fetchGit {{ url = "{url}"; rev = "{rev}";{extra} }}; set = import src; in {body}"#
    )
}

fn git_set() -> Result<(), Failed> {
    let t = tempdir()?;
    let dir = t.path();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| e.to_string())?;
    let git = |args: &[&str]| -> Result<String, Failed> {
        let mut all = vec!["-c", "user.name=buildit", "-c", "user.email=ci@example.org"];
        all.extend_from_slice(args);
        sh(&repo, "git", &all)
    };
    git(&["init", "-q", "-b", "main"])?;
    write(&repo.join("default.bld"), SET)?;
    write(&repo.join("lib.bld"), LIB)?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "the set"])?;
    let first = git(&["rev-parse", "HEAD"])?;
    write(
        &repo.join("default.bld"),
        &SET.replace("answer = 42", "answer = 43"),
    )?;
    git(&["commit", "-q", "-am", "a new answer"])?;
    let second = git(&["rev-parse", "HEAD"])?;
    let url = format!("file://{}", repo.display());
    let store = dir.join("store");

    eval_ok(&store, &git_expr(&url, &first, "", "set.answer"), "42")?;
    eval_ok(&store, &git_expr(&url, &second, "", "set.answer"), "43")?;
    eval_ok(
        &store,
        &git_expr(&url, &second, r#" ref = "main";"#, "set.lib.double 5"),
        "10",
    )?;
    eval_ok(
        &store,
        &git_expr(&url, &first, "", "src.shortRev"),
        &format!("\"{}\"", &first[..7]),
    )?;
    // no `.git` in the tree
    eval_ok(
        &store,
        &git_expr(&url, &first, "", "builtins.pathExists \"${src}/.git\""),
        "false",
    )?;
    // a revision that is not there fails naming it; a short one is refused before fetching
    let zeros = "0".repeat(40);
    eval_fails(
        &store,
        &git_expr(&url, &zeros, "", "set.answer"),
        "buildit::eval::fetch",
        &[&zeros],
    )?;
    eval_fails(
        &store,
        &git_expr(&url, &first[..12], "", "set.answer"),
        "buildit::eval::invalid-value",
        &["full commit hash"],
    )?;
    eval_fails(
        &store,
        &format!(r#"builtins.fetchGit {{ url = "{url}"; }}"#),
        "buildit::eval::missing-argument",
        &["missing `rev`"],
    )?;
    // the revision addresses the tree: with the repository gone, the valid path still answers
    let moved = dir.join("moved");
    std::fs::rename(&repo, &moved).map_err(|e| e.to_string())?;
    eval_ok(&store, &git_expr(&url, &first, "", "set.answer"), "42")?;
    // and another URL serving the same revision gives the same path
    let a = eval(&store, &git_expr(&url, &first, "", "src.outPath"))?;
    let moved_url = format!("file://{}", moved.display());
    let fresh = dir.join("store2");
    let b = eval(&fresh, &git_expr(&moved_url, &first, "", "src.outPath"))?;
    if !a.status.success() || a.stdout != b.stdout {
        return Err(format!(
            "the same revision gave different paths\n{}\n{}",
            describe(&a),
            describe(&b)
        )
        .into());
    }
    Ok(())
}
