//! Issue 13, "Security and limits": ways out of the store's guarantees, each reproduced through
//! the real `buildit` binary in a fresh temporary store and shown to be refused with nothing
//! registered:
//!
//! - `builtin:fetchurl` without an output hash (`file:///etc/shadow`, `http://127.0.0.1`):
//!   refused before any access (a local listener sees no connection);
//! - `builtin:unpack-deb` given `<input>/../../..`: refused;
//! - a hand-made `.drv` claiming another derivation's output path, and one with no outputs;
//! - `store import` of an input-addressed path without `--no-check-sigs`, of a content-addressed
//!   path under a wrong claimed path, with trailing data, and with a reference cycle;
//! - `store export` of an object holding symlinks out of it: exported as symlinks, not followed.
//!
//! None needs bwrap: every refusal happens before a sandbox would be started.

use crate::cli::buildit;
use buildit_store::{Store, StoreLayout, StorePath};
use libtest_mimic::{Failed, Trial};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

fn err(e: impl std::fmt::Display) -> Failed {
    Failed::from(e.to_string())
}

fn check(cond: bool, msg: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg.into().into())
    }
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `buildit ARGS --store-root ROOT` (the store flag after the subcommand words).
fn run(words: &[&str], root: &Path, rest: &[&str], stdin: Option<&[u8]>) -> Result<Output, Failed> {
    let mut c = buildit();
    c.args(words).arg("--store-root").arg(root).args(rest);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(err)?;
    if let Some(mut i) = child.stdin.take() {
        if let Some(data) = stdin {
            let _ = i.write_all(data);
        }
    }
    child.wait_with_output().map_err(err)
}

/// Exit status 1 with `code` and every one of `texts` in stderr.
fn refused(o: &Output, code: &str, texts: &[&str]) -> Result<(), Failed> {
    let e = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1) && e.contains(code) && texts.iter().all(|t| e.contains(t)),
        format!("expected {code} with {texts:?}\n{}", describe(o)),
    )
}

/// The names of the objects in the store that are not `.drv` files or `toFile` texts given in
/// `allowed` (what a refused build must not have left registered or in place).
fn objects_besides(root: &Path, allowed: &[&str]) -> Result<Vec<String>, Failed> {
    let dir = root.join("store");
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd {
            let n = e.map_err(err)?.file_name().to_string_lossy().into_owned();
            if !n.ends_with(".drv") && !allowed.iter().any(|a| n.ends_with(a)) {
                v.push(n);
            }
        }
    }
    v.sort();
    Ok(v)
}

fn is_valid(root: &Path, p: &str) -> Result<bool, Failed> {
    Ok(run(&["store", "path-info"], root, &[p], None)?
        .status
        .success())
}

/// Realise the program `text` (written to DIR/default.bld) in the store at `root`.
fn realise(dir: &Path, root: &Path, text: &str) -> Result<Output, Failed> {
    let f = dir.join("default.bld");
    fs::write(&f, text).map_err(err)?;
    run(
        &["realise"],
        root,
        &["--no-out-link", f.to_str().unwrap_or("")],
        None,
    )
}

fn fetch_without_hash() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(err)?;
    let root = t.path().join("root");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let port = listener.local_addr().map_err(err)?.port();
    for url in [
        "file:///etc/shadow".to_string(),
        format!("http://127.0.0.1:{port}/secret"),
    ] {
        let o = realise(
            t.path(),
            &root,
            &format!(
                r#"derivation {{ name = "grab"; system = "x86_64-linux"; builder = "builtin:fetchurl"; url = "{url}"; }}"#
            ),
        )?;
        refused(
            &o,
            "buildit::build::not-fixed-output",
            &["builtin:fetchurl", "declares no output hash", "outputHash"],
        )?;
        let left = objects_besides(&root, &[])?;
        check(
            left.is_empty(),
            format!("{url}: left in the store: {left:?}"),
        )?;
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Ok((_, from)) => Err(format!("the local service was contacted from {from}").into()),
        Err(e) => Err(err(e)),
    }
}

fn unpack_deb_dotdot() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(err)?;
    let root = t.path().join("root");
    let o = realise(
        t.path(),
        &root,
        r#"let src = builtins.toFile "pkg.deb" "not a deb"; in
           derivation { name = "sysroot"; system = "x86_64-linux"; builder = "builtin:unpack-deb";
                        debs = "${src}/../../../../etc/passwd"; }"#,
    )?;
    refused(
        &o,
        "buildit::build::failed",
        &[
            "unpack-deb",
            "is not a canonical store path",
            "/../../../../etc/passwd",
        ],
    )?;
    let left = objects_besides(&root, &["-pkg.deb"])?;
    check(left.is_empty(), format!("left in the store: {left:?}"))?;
    // a store path outside the input closure is refused too
    let o = realise(
        t.path(),
        &root,
        r#"derivation { name = "sysroot"; system = "x86_64-linux"; builder = "builtin:unpack-deb";
                        debs = "/bld/store/00000000000000000000000000000000-pkg.deb"; }"#,
    )?;
    refused(
        &o,
        "buildit::build::failed",
        &["unpack-deb", "is not in the derivation's input closure"],
    )
}

/// Instantiate `text` and return the `.drv` path and its JSON.
fn instantiate(dir: &Path, root: &Path, text: &str) -> Result<(String, serde_json::Value), Failed> {
    let f = dir.join("drv.bld");
    fs::write(&f, text).map_err(err)?;
    let o = run(&["instantiate"], root, &[f.to_str().unwrap_or("")], None)?;
    check(o.status.success(), describe(&o))?;
    let drv = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let sp = StorePath::parse(&drv).map_err(err)?;
    let bytes = fs::read(StoreLayout::at(root).physical(&sp)).map_err(err)?;
    Ok((drv, serde_json::from_slice(&bytes).map_err(err)?))
}

/// `store add` these bytes as a file named `name`; its store path.
fn add_file(dir: &Path, root: &Path, name: &str, bytes: &[u8]) -> Result<String, Failed> {
    let d = dir.join("add");
    fs::create_dir_all(&d).map_err(err)?;
    let f = d.join(name);
    fs::write(&f, bytes).map_err(err)?;
    let o = run(&["store", "add"], root, &[f.to_str().unwrap_or("")], None)?;
    check(o.status.success(), describe(&o))?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn hijack_drv() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(err)?;
    let root = t.path().join("root");
    let (_victim_drv, victim) = instantiate(
        t.path(),
        &root,
        r#"derivation { name = "victim"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo good > $out" ]; }"#,
    )?;
    let victim_out = victim["outputs"]["out"]["path"]
        .as_str()
        .ok_or("no output path")?
        .to_string();
    // the attacker's derivation: other commands, the victim's output path
    let mut evil = victim.clone();
    evil["args"] = serde_json::json!(["-c", "echo evil > $out"]);
    evil["env"]["out"] = serde_json::json!(victim_out);
    let bytes = serde_json::to_vec(&evil).map_err(err)?;
    let evil_drv = add_file(t.path(), &root, "victim.drv", &bytes)?;
    let o = run(&["realise"], &root, &["--no-out-link", &evil_drv], None)?;
    refused(
        &o,
        "buildit::build::bad-derivation",
        &[
            "output `out` claims the path",
            &victim_out,
            "a .drv may not name another derivation's output",
        ],
    )?;
    check(
        !is_valid(&root, &victim_out)?,
        "the victim's path was registered",
    )?;
    // a derivation with no outputs
    let mut none = victim.clone();
    none["outputs"] = serde_json::json!({});
    let bytes = serde_json::to_vec(&none).map_err(err)?;
    let none_drv = add_file(t.path(), &root, "none.drv", &bytes)?;
    let o = run(&["realise"], &root, &["--no-out-link", &none_drv], None)?;
    refused(
        &o,
        "buildit::build::bad-derivation",
        &["the derivation has no outputs"],
    )?;
    let left = objects_besides(&root, &[])?;
    check(left.is_empty(), format!("left in the store: {left:?}"))
}

/// Register `content` at an input-addressed (output) path in the store at `root`, as a build
/// would, and return the path.
fn input_addressed(root: &Path, dir: &Path, content: &[u8]) -> Result<StorePath, Failed> {
    let s = Store::open(StoreLayout::at(root)).map_err(err)?;
    let p = StorePath::for_output(&[42; 32], "out", "built").map_err(err)?;
    let staged = s.new_tmp_path("test");
    let _ = dir;
    fs::write(&staged, content).map_err(err)?;
    s.register_output(&staged, &p, &[], None).map_err(err)?;
    Ok(p)
}

fn export(root: &Path, paths: &[&str]) -> Result<Vec<u8>, Failed> {
    let mut rest = vec!["--no-closure"];
    rest.extend_from_slice(paths);
    let o = run(&["store", "export"], root, &rest, None)?;
    check(o.status.success(), describe(&o))?;
    Ok(o.stdout)
}

fn import_checks() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(err)?;
    let a = t.path().join("a");
    let p = input_addressed(&a, t.path(), b"built bytes")?.to_string();
    let stream = export(&a, &[&p])?;

    // input-addressed: refused without --no-check-sigs, accepted with it
    let b = t.path().join("b");
    let o = run(&["store", "import"], &b, &[], Some(&stream))?;
    refused(
        &o,
        "buildit::store::untrusted-import",
        &[
            "it is input-addressed",
            &p,
            "--no-check-sigs",
            "signature checking (with signing keys) is not supported yet",
        ],
    )?;
    check(!is_valid(&b, &p)?, "registered without --no-check-sigs")?;
    let o = run(
        &["store", "import"],
        &b,
        &["--no-check-sigs"],
        Some(&stream),
    )?;
    check(o.status.success(), describe(&o))?;
    check(String::from_utf8_lossy(&o.stdout).trim() == p, describe(&o))?;
    check(is_valid(&b, &p)?, "not registered with --no-check-sigs")?;

    // content-addressed under a wrong claimed path: refused even with --no-check-sigs
    let src = add_file(t.path(), &a, "data.txt", b"some data")?;
    let good = export(&a, &[&src])?;
    let c = t.path().join("c");
    let o = run(&["store", "import"], &c, &[], Some(&good))?;
    check(o.status.success(), format!("source path: {}", describe(&o)))?;
    let sp = StorePath::parse(&src).map_err(err)?;
    let fake = format!("/bld/store/{}-data.txt", "1".repeat(32));
    let text = String::from_utf8_lossy(&good).replace(&sp.to_string(), &fake);
    let d = t.path().join("d");
    let o = run(
        &["store", "import"],
        &d,
        &["--no-check-sigs"],
        Some(text.as_bytes()),
    )?;
    refused(
        &o,
        "buildit::store::bad-import",
        &["claims to be content-addressed (source)", &src],
    )?;
    check(!is_valid(&d, &fake)?, "the wrong path was registered")?;

    // trailing data after the end line
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"{\"path\":\"more\"}\n");
    let o = run(
        &["store", "import"],
        &d,
        &["--no-check-sigs"],
        Some(&trailing),
    )?;
    refused(
        &o,
        "buildit::store::bad-import",
        &["there is data after its end line"],
    )?;
    check(!is_valid(&d, &src)?, "registered despite trailing data")?;

    // a reference cycle between two imported paths
    let x = StorePath::for_output(&[1; 32], "out", "x").map_err(err)?;
    let y = StorePath::for_output(&[2; 32], "out", "y").map_err(err)?;
    let f = t.path().join("obj");
    fs::write(&f, b"cyclic").map_err(err)?;
    let mut arch = Vec::new();
    let stats = buildit_store::archive::write_archive(&f, "", &mut arch).map_err(err)?;
    let hash = buildit_store::content_hash(&f).map_err(err)?;
    let mut cyc = b"buildit-export-1\n".to_vec();
    for (p, r) in [(&x, &y), (&y, &x)] {
        let h = serde_json::json!({
            "path": p.to_string(), "content_hash": hash.to_string(), "size": stats.bytes,
            "references": [r.to_string()], "deriver": null, "signatures": []
        });
        cyc.extend(serde_json::to_vec(&h).map_err(err)?);
        cyc.push(b'\n');
        cyc.extend_from_slice(&arch);
    }
    cyc.extend_from_slice(b"{\"end\":2}\n");
    let o = run(&["store", "import"], &d, &["--no-check-sigs"], Some(&cyc))?;
    refused(
        &o,
        "buildit::store::bad-import",
        &[
            "refer to each other in a cycle",
            &x.to_string(),
            &y.to_string(),
        ],
    )?;
    for p in [&x, &y] {
        check(!is_valid(&d, &p.to_string())?, format!("{p} registered"))?;
    }
    Ok(())
}

fn export_symlinks_out() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(err)?;
    let a = t.path().join("a");
    let tree = t.path().join("tree");
    fs::create_dir_all(&tree).map_err(err)?;
    std::os::unix::fs::symlink("/etc/passwd", tree.join("passwd")).map_err(err)?;
    std::os::unix::fs::symlink("/etc", tree.join("etc")).map_err(err)?;
    std::os::unix::fs::symlink("../../../../etc/hostname", tree.join("up")).map_err(err)?;
    let o = run(&["store", "add"], &a, &[tree.to_str().unwrap_or("")], None)?;
    check(o.status.success(), describe(&o))?;
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let stream = export(&a, &[&p])?;
    let passwd = fs::read("/etc/passwd").map_err(err)?;
    let first_line = passwd.split(|b| *b == b'\n').next().unwrap_or(b"root:");
    check(
        !stream.windows(first_line.len()).any(|w| w == first_line),
        "the export holds the host's /etc/passwd",
    )?;
    check(
        stream.windows(11).any(|w| w == b"/etc/passwd"),
        "the symlink target is not in the stream",
    )?;
    let o = run(&["store", "verify"], &a, &["--check-contents"], None)?;
    check(o.status.success(), describe(&o))?;
    // the links come back as links (source path: no --no-check-sigs needed)
    let b = t.path().join("b");
    let o = run(&["store", "import"], &b, &[], Some(&stream))?;
    check(o.status.success(), describe(&o))?;
    let sp = StorePath::parse(&p).map_err(err)?;
    let phys: PathBuf = StoreLayout::at(&b).physical(&sp);
    for (link, target) in [
        ("passwd", "/etc/passwd"),
        ("etc", "/etc"),
        ("up", "../../../../etc/hostname"),
    ] {
        let got = fs::read_link(phys.join(link)).map_err(err)?;
        check(
            got == Path::new(target),
            format!("{link} -> {}", got.display()),
        )?;
    }
    let o = run(&["store", "verify"], &b, &["--check-contents"], None)?;
    check(o.status.success(), describe(&o))
}

pub fn trials() -> Vec<Trial> {
    let t =
        |name: &str, f: fn() -> Result<(), Failed>| Trial::test(format!("escape_store::{name}"), f);
    vec![
        t("fetch-without-hash-refused", fetch_without_hash),
        t("unpack-deb-dotdot-refused", unpack_deb_dotdot),
        t("hijack-and-empty-drv-refused", hijack_drv),
        t("import-checks", import_checks),
        t("export-symlinks-out", export_symlinks_out),
    ]
}
