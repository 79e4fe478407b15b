//! The store through the real `buildit` binary (and the store crate where the CLI cannot build
//! the situation): golden paths, idempotent adds, reference scanning, crash safety under
//! `kill -9` of `store add` and `store gc`, concurrent adds, all-or-nothing import, unsafe
//! archives, a corrupt database, garbage collection of dead paths with rooted closures kept, and
//! the whole life of a tree with read-only directories (add, verify, export, import, delete,
//! gc), which an ordinary user's store must handle without root's bypass of file modes
//! (`scripts/test-unprivileged` runs these trials as an unprivileged account). Every test uses
//! its own temporary store root.

use crate::cli::buildit;
use buildit_store::{Store, StoreLayout, StorePath};
use libtest_mimic::{Failed, Trial};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn store_cmd(root: &Path) -> Command {
    let mut c = buildit();
    c.arg("store").arg("--store-root").arg(root);
    c
}

fn run(root: &Path, args: &[&str]) -> Result<Output, Failed> {
    store_cmd(root)
        .args(args)
        .output()
        .map_err(|e| Failed::from(e.to_string()))
}

fn ok(root: &Path, args: &[&str]) -> Result<String, Failed> {
    let o = run(root, args)?;
    if !o.status.success() {
        return Err(format!(
            "buildit store {args:?} failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn check(cond: bool, msg: impl Into<String>) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg.into().into())
    }
}

/// `buildit store export PATH`: the stream, or the failure.
fn export(root: &Path, path: &str) -> Result<Vec<u8>, Failed> {
    let exp = store_cmd(root)
        .args(["export", path])
        .output()
        .map_err(|e| e.to_string())?;
    check(
        exp.status.success(),
        String::from_utf8_lossy(&exp.stderr).to_string(),
    )?;
    Ok(exp.stdout)
}

/// `buildit store import` of `data` into the store at `root` (whatever it answers).
fn import(root: &Path, data: &[u8]) -> Result<Output, Failed> {
    use std::io::Write;
    let mut c = store_cmd(root)
        .arg("import")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut i) = c.stdin.take() {
        let _ = i.write_all(data);
    }
    c.wait_with_output().map_err(|e| e.to_string().into())
}

/// A small fixed tree: the same bytes and modes on every machine.
fn tiny_tree(dir: &Path) -> Result<(), Failed> {
    let e = |e: std::io::Error| Failed::from(e.to_string());
    fs::create_dir_all(dir.join("bin")).map_err(e)?;
    fs::write(dir.join("hello.txt"), "hello, store\n").map_err(e)?;
    fs::write(dir.join("bin/run"), "#!/bin/sh\necho run\n").map_err(e)?;
    fs::set_permissions(dir.join("bin/run"), fs::Permissions::from_mode(0o755)).map_err(e)?;
    std::os::unix::fs::symlink("hello.txt", dir.join("link")).map_err(e)?;
    Ok(())
}

/// A tree of about `mb` MiB: a few large files and many small ones.
fn big_tree(dir: &Path, mb: usize) -> Result<(), Failed> {
    let e = |e: std::io::Error| Failed::from(e.to_string());
    fs::create_dir_all(dir).map_err(e)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..mb / 2 {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        fs::write(dir.join(format!("big{i:03}")), &chunk).map_err(e)?;
    }
    for d in 0..20 {
        let sub = dir.join(format!("d{d:02}"));
        fs::create_dir_all(&sub).map_err(e)?;
        for f in 0..50 {
            let n = (mb / 2) * (1 << 20) / 1000;
            fs::write(
                sub.join(format!("f{f:03}")),
                &chunk[f..f + n.min(chunk.len() - f)],
            )
            .map_err(e)?;
        }
    }
    Ok(())
}

fn tmp() -> Result<tempfile::TempDir, Failed> {
    tempfile::tempdir().map_err(|e| e.to_string().into())
}

/// The seed of a crash test's kill delays: `BUILDIT_TEST_SEED` when set, else taken from the
/// clock. It is printed, so the delays of a failing run can be repeated.
fn seed(test: &str) -> u64 {
    let s = std::env::var("BUILDIT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("store::{test}: seed {s} (BUILDIT_TEST_SEED={s} repeats these kill delays)");
    s
}

/// splitmix64: the kill delays from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay between 10% and 90% of `run` (how long the uninterrupted command took here),
    /// so that the kill lands while the command works.
    fn delay_within(&mut self, run: Duration) -> Duration {
        let ms = run.as_millis().max(10) as u64;
        Duration::from_millis(ms / 10 + self.next() % (ms * 8 / 10).max(1))
    }
}

/// How long `cmd` takes when it is not interrupted (it must succeed).
fn timed(cmd: &mut Command) -> Result<Duration, Failed> {
    let t = std::time::Instant::now();
    let o = cmd.output().map_err(|e| e.to_string())?;
    check(
        o.status.success(),
        format!(
            "the uninterrupted run failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
    )?;
    Ok(t.elapsed())
}

/// Start `cmd`, send it SIGKILL after `delay`, and report whether the signal is what ended it
/// (`false`: it had already exited, so this run proved nothing about a crash).
fn killed_after(cmd: &mut Command, delay: Duration) -> Result<bool, Failed> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(delay);
    if child.try_wait().map_err(|e| e.to_string())?.is_none() {
        child.kill().map_err(|e| e.to_string())?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    match status.signal() {
        Some(9) => Ok(true),
        None if status.success() => Ok(false),
        _ => Err(format!("the command ended with {status} before the kill").into()),
    }
}

/// Kill `make()`'s command after a seeded delay within `run`; when it finishes first, try
/// again with half the delay (logged). Fails when no attempt was ended by the signal.
fn kill_during(
    test: &str,
    round: u64,
    rng: &mut Rng,
    run: Duration,
    make: &mut dyn FnMut() -> Result<Command, Failed>,
) -> Result<Duration, Failed> {
    let mut delay = rng.delay_within(run);
    for _ in 0..4 {
        if killed_after(&mut make()?, delay)? {
            eprintln!(
                "store::{test}: round {round}: killed by SIGKILL after {} ms (an uninterrupted run takes {} ms)",
                delay.as_millis(),
                run.as_millis()
            );
            return Ok(delay);
        }
        eprintln!(
            "store::{test}: round {round}: finished before the kill at {} ms; again at half the delay",
            delay.as_millis()
        );
        delay /= 2;
    }
    Err(
        format!("round {round}: the command always finished before SIGKILL; nothing was tested")
            .into(),
    )
}

/// The golden path of [`tiny_tree`] added as `golden` (committed: same on every machine).
const GOLDEN_PATH: &str = "/bld/store/vmmnm8mlwm4np34z0myhxs0apgkjsbjx-golden";
const GOLDEN_HASH: &str = "blake3:b154872d6521879941b86ef90796f89dab614fdd3b205470fa7364d6db89bc7b";

fn golden() -> Result<(), Failed> {
    let t = tmp()?;
    let src = t.path().join("src");
    tiny_tree(&src)?;
    let root = t.path().join("root");
    let out = ok(
        &root,
        &["add", "--name", "golden", src.to_str().unwrap_or("")],
    )?;
    let info = ok(&root, &["path-info", out.trim()])?;
    check(
        out.trim() == GOLDEN_PATH && info.contains(GOLDEN_HASH),
        format!("golden path changed: {out}{info}"),
    )
}

fn add_twice() -> Result<(), Failed> {
    let t = tmp()?;
    let src = t.path().join("src");
    tiny_tree(&src)?;
    let root = t.path().join("root");
    let a = ok(&root, &["add", src.to_str().unwrap_or("")])?;
    let b = ok(&root, &["add", src.to_str().unwrap_or("")])?;
    check(
        a == b && a.starts_with("/bld/store/"),
        format!("{a} vs {b}"),
    )?;
    let p = a.trim();
    let listing = ok(&root, &["ls", "-R", p])?;
    check(
        listing.contains("-r-xr-xr-x")
            && listing.contains("bin/run")
            && listing.contains("link -> hello.txt"),
        listing.clone(),
    )?;
    let cat = ok(&root, &["cat", &format!("{p}/hello.txt")])?;
    check(cat == "hello, store\n", cat)?;
    // the physical path and an out-link resolve too
    let link = t.path().join("result");
    ok(&root, &["add-root", link.to_str().unwrap_or(""), p])?;
    let cat2 = ok(&root, &["cat", &format!("{}/hello.txt", link.display())])?;
    check(cat2 == "hello, store\n", cat2)?;
    let roots = ok(&root, &["roots"])?;
    check(roots.contains(p), roots.clone())?;
    // bad names are refused clearly
    let o = run(
        &root,
        &["add", "--name", ".hidden", src.to_str().unwrap_or("")],
    )?;
    let err = String::from_utf8_lossy(&o.stderr);
    check(
        o.status.code() == Some(1) && err.contains("buildit::store::bad-path"),
        err.to_string(),
    )?;
    let v = run(&root, &["verify", "--check-contents"])?;
    check(
        v.status.success(),
        String::from_utf8_lossy(&v.stderr).to_string(),
    )
}

fn refs_scan() -> Result<(), Failed> {
    let t = tmp()?;
    let a = StorePath::from_fingerprint("a", "a").map_err(|e| e.to_string())?;
    let b = StorePath::from_fingerprint("b", "b").map_err(|e| e.to_string())?;
    let c = StorePath::from_fingerprint("c", "c").map_err(|e| e.to_string())?;
    let d = StorePath::from_fingerprint("d", "d").map_err(|e| e.to_string())?;
    let o = t.path().join("o");
    fs::create_dir(&o).map_err(|e| e.to_string())?;
    // b straddles the 1 MiB chunk boundary of the scanner
    let mut big = vec![b'.'; (1 << 20) - 13];
    big.extend_from_slice(b.hash_part().as_bytes());
    big.extend_from_slice(b"tail");
    fs::write(o.join("big"), &big).map_err(|e| e.to_string())?;
    fs::write(o.join("small"), format!("uses {a}/lib")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(format!("{c}/bin/sh"), o.join("sh")).map_err(|e| e.to_string())?;
    let found = buildit_store::refs::scan_references(&o, &[a.clone(), b.clone(), c.clone(), d])
        .map_err(|e| e.to_string())?;
    check(
        found == [a, b, c].into_iter().collect(),
        format!("{found:?}"),
    )
}

/// `kill -9` of `store add` at seeded delays inside its run time: each run must die of the
/// signal (not finish first), and the store must verify after each.
fn kill_add() -> Result<(), Failed> {
    let t = tmp()?;
    let src = t.path().join("src");
    big_tree(&src, 64)?;
    let root = t.path().join("root");
    let mut rng = Rng(seed("kill-9-during-add"));
    let add = |r: &Path| {
        let mut c = store_cmd(r);
        c.args(["add", src.to_str().unwrap_or("")]);
        c
    };
    let run_time = timed(&mut add(&t.path().join("calibration")))?;
    for i in 0..6u64 {
        let delay = kill_during("kill-9-during-add", i, &mut rng, run_time, &mut || {
            Ok(add(&root))
        })?;
        let v = run(&root, &["verify", "--check-contents"])?;
        check(
            v.status.success(),
            format!(
                "after kill at {} ms: {}",
                delay.as_millis(),
                String::from_utf8_lossy(&v.stderr)
            ),
        )?;
    }
    // the store still works, and gc removes every leftover
    let p = ok(&root, &["add", src.to_str().unwrap_or("")])?;
    ok(
        &root,
        &[
            "add-root",
            t.path().join("result").to_str().unwrap_or(""),
            p.trim(),
        ],
    )?;
    ok(&root, &["gc"])?;
    let entries: Vec<String> = fs::read_dir(root.join("store"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    check(
        entries.len() == 1 && p.trim().ends_with(&entries[0]),
        format!("store dir after gc: {entries:?}"),
    )?;
    let v = run(&root, &["verify", "--check-contents"])?;
    check(
        v.status.success(),
        String::from_utf8_lossy(&v.stderr).to_string(),
    )
}

/// 1,500 dead objects in chains, written with the store crate under the GC lock.
fn dead_objects(root: &Path, round: u64) -> Result<(), Failed> {
    let s = Store::open(StoreLayout::at(root)).map_err(|e| e.to_string())?;
    let _g = s.hold_gc_lock().map_err(|e| e.to_string())?;
    let mut prev: Vec<StorePath> = Vec::new();
    for i in 0..1500 {
        let text = format!("round {round} object {i}");
        let refs: Vec<StorePath> = prev.iter().rev().take(2).cloned().collect();
        let p = s
            .add_bytes("obj", text.as_bytes(), &refs)
            .map_err(|e| e.to_string())?;
        prev.push(p);
    }
    Ok(())
}

/// `kill -9` of `store gc` at seeded delays inside its run time: each run must die of the
/// signal, and the store must verify after each.
fn kill_gc() -> Result<(), Failed> {
    let t = tmp()?;
    let root = t.path().join("root");
    let mut rng = Rng(seed("kill-9-during-gc"));
    let calibration = t.path().join("calibration");
    dead_objects(&calibration, 0)?;
    let run_time = timed(store_cmd(&calibration).arg("gc"))?;
    for round in 0..3u64 {
        let delay = kill_during("kill-9-during-gc", round, &mut rng, run_time, &mut || {
            // every attempt starts from a full store: a finished attempt deleted everything
            dead_objects(&root, round)?;
            let mut c = store_cmd(&root);
            c.arg("gc");
            Ok(c)
        })?;
        let v = run(&root, &["verify", "--check-contents"])?;
        check(
            v.status.success(),
            format!(
                "after gc killed at {} ms: {}",
                delay.as_millis(),
                String::from_utf8_lossy(&v.stderr)
            ),
        )?;
    }
    ok(&root, &["gc"])?;
    let left = fs::read_dir(root.join("store"))
        .map_err(|e| e.to_string())?
        .count();
    check(left == 0, format!("{left} entries left after a full gc"))
}

fn concurrent_add() -> Result<(), Failed> {
    let t = tmp()?;
    let src = t.path().join("src");
    big_tree(&src, 16)?;
    let root = t.path().join("root");
    let spawn = || {
        store_cmd(&root)
            .args(["add", src.to_str().unwrap_or("")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let a = spawn().map_err(|e| e.to_string())?;
    let b = spawn().map_err(|e| e.to_string())?;
    let a = a.wait_with_output().map_err(|e| e.to_string())?;
    let b = b.wait_with_output().map_err(|e| e.to_string())?;
    check(
        a.status.success() && b.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    )?;
    check(a.stdout == b.stdout, "different paths")?;
    let v = run(&root, &["verify", "--check-contents"])?;
    let err = String::from_utf8_lossy(&v.stderr);
    check(
        v.status.success() && err.contains("checked 1 path:"),
        err.to_string(),
    )
}

fn import_all_or_nothing() -> Result<(), Failed> {
    let t = tmp()?;
    let src = t.path().join("src");
    tiny_tree(&src)?;
    let root = t.path().join("root");
    let p = ok(&root, &["add", src.to_str().unwrap_or("")])?;
    let p = p.trim().to_string();
    let q = {
        let s = Store::open(StoreLayout::at(&root)).map_err(|e| e.to_string())?;
        let pp = StorePath::parse(&p).map_err(|e| e.to_string())?;
        s.add_bytes("user.txt", p.as_bytes(), &[pp])
            .map_err(|e| e.to_string())?
            .to_string()
    };
    let stream = export(&root, &q)?;
    let other = t.path().join("other");
    let mut corrupted = stream.clone();
    if let Some(pos) = corrupted.windows(5).position(|w| w == b"hello") {
        corrupted[pos] = b'j';
    }
    for (what, data) in [
        ("truncated", &stream[..stream.len() * 2 / 3]),
        ("truncated at the end", &stream[..stream.len() - 2]),
        ("corrupted", &corrupted[..]),
    ] {
        let o = import(&other, data)?;
        let err = String::from_utf8_lossy(&o.stderr);
        check(
            o.status.code() == Some(1) && err.contains("buildit::store::"),
            format!("{what}: {err}"),
        )?;
        for path in [&p, &q] {
            let i = run(&other, &["path-info", path])?;
            check(
                i.status.code() == Some(1)
                    && String::from_utf8_lossy(&i.stderr).contains("buildit::store::not-valid"),
                format!(
                    "{what}: {path} is registered ({}): {}",
                    i.status,
                    String::from_utf8_lossy(&i.stderr)
                ),
            )?;
        }
    }
    let o = import(&other, &stream)?;
    check(
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )?;
    let info = ok(&other, &["path-info", "--closure", &q])?;
    check(info.contains(&p) && info.contains(&q), info.clone())?;
    let why = ok(&other, &["why-depends", &q, &p])?;
    check(why.lines().count() == 2, why.clone())?;
    let v = run(&other, &["verify", "--check-contents"])?;
    check(
        v.status.success(),
        String::from_utf8_lossy(&v.stderr).to_string(),
    )
}

/// One raw ustar header block (plus data) for hostile archives.
fn ustar(name: &str, kind: u8, data: &[u8], link: &str, mode: u32) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |v: u64, width: usize| format!("{v:0w$o}\0", w = width - 1);
    h[100..108].copy_from_slice(octal(mode as u64, 8).as_bytes());
    h[108..116].copy_from_slice(octal(0, 8).as_bytes());
    h[116..124].copy_from_slice(octal(0, 8).as_bytes());
    h[124..136].copy_from_slice(octal(data.len() as u64, 12).as_bytes());
    h[136..148].copy_from_slice(octal(1, 12).as_bytes());
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut v = h.to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// Hostile archives are refused, each for its own reason, leaving nothing behind; a control
/// archive written by the same [`ustar`] helper (a directory, files, relative symlinks that
/// stay inside) unpacks, so the refusals come from the hostile entries and not from the helper.
fn unsafe_archives() -> Result<(), Failed> {
    let t = tmp()?;
    let root_dir = ustar("./", b'5', b"", "", 0o755);
    let finish = |body: Vec<u8>| {
        let mut ar = root_dir.clone();
        ar.extend(body);
        ar.extend([0u8; 1024]);
        ar
    };
    let control = finish(
        [
            ustar("bin", b'5', b"", "", 0o755),
            ustar("bin/tool", b'0', b"#!/bin/sh\n", "", 0o755),
            ustar("f", b'0', b"x", "", 0o644),
            ustar("l", b'2', b"", "f", 0o777),
            ustar("bin/up", b'2', b"", "../f", 0o777),
        ]
        .concat(),
    );
    let dest = t.path().join("control");
    buildit_store::archive::unpack_archive(&control[..], &dest)
        .map_err(|e| format!("the control archive was refused: {e}"))?;
    let link = |p: &str| fs::read_link(dest.join(p)).map_err(|e| format!("{p}: {e}"));
    let tool_mode = fs::metadata(dest.join("bin/tool"))
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    check(
        fs::read_to_string(dest.join("f")).map_err(|e| e.to_string())? == "x"
            && link("l")? == Path::new("f")
            && link("bin/up")? == Path::new("../f")
            && tool_mode & 0o777 == 0o755,
        format!("the control archive unpacked wrongly (bin/tool mode {tool_mode:o})"),
    )?;
    fs::remove_dir_all(&dest).map_err(|e| e.to_string())?;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            ustar("../escaped", b'0', b"x", "", 0o644),
            "'..' component",
        ),
        (
            "nested dotdot",
            ustar("a/../../escaped", b'0', b"x", "", 0o644),
            "'..' component",
        ),
        (
            "absolute name",
            ustar("/tmp/escaped", b'0', b"x", "", 0o644),
            "absolute entry name",
        ),
        (
            "absolute symlink",
            ustar("l", b'2', b"", "/etc", 0o777),
            "absolute symlink target",
        ),
        (
            "escaping symlink",
            ustar("l", b'2', b"", "../../..", 0o777),
            "symlink target leaves the archive root",
        ),
        (
            "through a symlink",
            {
                let mut v = ustar("l", b'2', b"", ".", 0o777);
                v.extend(ustar("l/x", b'0', b"x", "", 0o644));
                v
            },
            "its parent is not a directory created earlier in the archive",
        ),
        ("device", ustar("dev", b'3', b"", "", 0o644), "device"),
        (
            "setuid",
            ustar("suid", b'0', b"x", "", 0o4755),
            "setuid, setgid or sticky mode",
        ),
    ];
    for (what, body, reason) in cases {
        let ar = finish(body);
        let dest = t.path().join("dest");
        match buildit_store::archive::unpack_archive(&ar[..], &dest) {
            Ok(_) => return Err(format!("{what}: accepted").into()),
            Err(e @ buildit_store::archive::ArchiveError::Unsafe { .. })
                if e.to_string().contains(reason) => {}
            Err(e) => {
                return Err(format!("{what}: refused, but not as unsafe ({reason}): {e}").into())
            }
        }
        check(!dest.exists(), format!("{what}: left {}", dest.display()))?;
    }
    let names: Vec<String> = fs::read_dir(t.path())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    check(names.is_empty(), format!("left behind: {names:?}"))?;
    check(!Path::new("/tmp/escaped").exists(), "wrote /tmp/escaped")
}

fn corrupt_db() -> Result<(), Failed> {
    let t = tmp()?;
    let root = t.path().join("root");
    ok(&root, &["verify"])?;
    let db: PathBuf = root.join("var/buildit/db.sqlite");
    for f in ["db.sqlite-wal", "db.sqlite-shm"] {
        let _ = fs::remove_file(root.join("var/buildit").join(f));
    }
    fs::write(&db, vec![0xa5u8; 16384]).map_err(|e| e.to_string())?;
    for args in [&["verify"][..], &["gc"][..], &["add", "/etc/hostname"][..]] {
        let o = run(&root, args)?;
        let err = String::from_utf8_lossy(&o.stderr);
        check(
            o.status.code() == Some(1)
                && err.contains("buildit::store::database")
                && !err.contains("internal error"),
            format!("{args:?}: {}: {err}", o.status),
        )?;
    }
    Ok(())
}

fn gc_keeps_rooted_closures() -> Result<(), Failed> {
    let t = tmp()?;
    let root = t.path().join("root");
    let (a, b, c, d) = {
        let s = Store::open(StoreLayout::at(&root)).map_err(|e| e.to_string())?;
        let a = s.add_bytes("a", b"a", &[]).map_err(|e| e.to_string())?;
        let b = s.add_bytes("b", b"b", &[]).map_err(|e| e.to_string())?;
        let c = s
            .add_bytes("c", a.to_string().as_bytes(), std::slice::from_ref(&a))
            .map_err(|e| e.to_string())?;
        let d = s
            .add_bytes("d", b.to_string().as_bytes(), std::slice::from_ref(&b))
            .map_err(|e| e.to_string())?;
        (a, b, c, d)
    };
    let link = t.path().join("result");
    ok(
        &root,
        &["add-root", link.to_str().unwrap_or(""), &c.to_string()],
    )?;
    // deleting a rooted or referenced path is refused
    let o = run(&root, &["delete", &a.to_string()])?;
    check(
        o.status.code() == Some(1)
            && String::from_utf8_lossy(&o.stderr).contains("buildit::store::alive"),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )?;
    let dry = ok(&root, &["gc", "--dry-run"])?;
    check(dry.lines().count() == 2, dry.clone())?;
    let out = ok(&root, &["gc"])?;
    let mut deleted: Vec<&str> = out.lines().collect();
    deleted.sort();
    let mut want = vec![b.to_string(), d.to_string()];
    want.sort();
    check(deleted == want, format!("deleted {deleted:?}"))?;
    for p in [&a, &c] {
        ok(&root, &["path-info", &p.to_string()])?;
    }
    check(
        !root.join("store").join(b.base_name()).exists(),
        "b's object survived",
    )?;
    fs::remove_file(&link).map_err(|e| e.to_string())?;
    let out = ok(&root, &["gc"])?;
    check(out.lines().count() == 2, out)
}

pub fn trials() -> Vec<Trial> {
    let t = |name: &str, f: fn() -> Result<(), Failed>| Trial::test(format!("store::{name}"), f);
    vec![
        t("golden-path", golden),
        t("add-twice-same-path", add_twice),
        t("reference-scan", refs_scan),
        t("kill-9-during-add", kill_add),
        t("kill-9-during-gc", kill_gc),
        t("concurrent-add", concurrent_add),
        t("import-all-or-nothing", import_all_or_nothing),
        t("unsafe-archives-rejected", unsafe_archives),
        t("corrupt-database", corrupt_db),
        t("gc-keeps-rooted-closures", gc_keeps_rooted_closures),
        t("read-only-tree-lifecycle", read_only_tree_lifecycle),
    ]
}

/// A tree whose directories and files are read-only (as a build output or an unpacked archive
/// often is) goes through the whole store life cycle: add, verify, export, import into another
/// store, delete and gc. Root ignores the modes; an ordinary user does not, so under
/// `scripts/test-unprivileged` this is the user's store at work.
fn read_only_tree_lifecycle() -> Result<(), Failed> {
    let t = tmp()?;
    let e = |e: std::io::Error| Failed::from(e.to_string());
    let src = t.path().join("src");
    fs::create_dir_all(src.join("a/b")).map_err(e)?;
    fs::write(src.join("a/b/f"), "deep\n").map_err(e)?;
    fs::write(src.join("top"), "top\n").map_err(e)?;
    for (p, m) in [
        ("a/b/f", 0o444),
        ("top", 0o400),
        ("a/b", 0o555),
        ("a", 0o500),
    ] {
        fs::set_permissions(src.join(p), fs::Permissions::from_mode(m)).map_err(e)?;
    }
    fs::set_permissions(&src, fs::Permissions::from_mode(0o555)).map_err(e)?;
    let root = t.path().join("root");
    let p = ok(&root, &["add", src.to_str().unwrap_or("")])?;
    let p = p.trim().to_string();
    let cat = ok(&root, &["cat", &format!("{p}/a/b/f")])?;
    check(cat == "deep\n", format!("cat: {cat:?}"))?;
    let v = run(&root, &["verify"])?;
    let said = String::from_utf8_lossy(&v.stderr);
    check(
        v.status.success() && said.contains("0 missing, 0 corrupt"),
        format!("verify: {said}"),
    )?;
    let stream = export(&root, &p)?;
    let other = t.path().join("other");
    let imp = import(&other, &stream)?;
    check(
        imp.status.success() && String::from_utf8_lossy(&imp.stdout).contains(&p),
        format!(
            "import: {}\n{}",
            String::from_utf8_lossy(&imp.stdout),
            String::from_utf8_lossy(&imp.stderr)
        ),
    )?;
    let base = p.trim_start_matches("/bld/store/").to_string();
    ok(&root, &["delete", &p])?;
    check(
        !root.join("store").join(&base).exists(),
        "delete left the read-only object",
    )?;
    ok(&other, &["gc"])?;
    check(
        !other.join("store").join(&base).exists(),
        "gc left the read-only object",
    )?;
    // the source tree itself is left as it was
    let m = fs::metadata(src.join("a")).map_err(e)?;
    check(
        m.permissions().mode() & 0o777 == 0o500,
        format!("the source's mode changed to {:o}", m.permissions().mode()),
    )
}
