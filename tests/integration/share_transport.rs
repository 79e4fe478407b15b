//! The repository transports of `buildit-share` against real servers on loopback
//! (`servers.rs`): `file://`, `https://` (nginx with a test CA given as `ca_file`), `ssh://` and
//! the seed's `USER@HOST/PATH` (openssh-server), and `oci://` (docker-registry). For each:
//! objects of 0 bytes to a few MiB put, then read back whole, into files, checked for
//! existence and listed; the read limit ([`ShareError::TooLarge`]); absence (`None`, `false`,
//! no file left); uploads seen only whole by a concurrent reader and leaving no temporary file;
//! eight threads reading at once. And the refusals: a server that accepts and never answers
//! is [`ShareError::Timeout`] within the bound (https, ssh, oci), HTTPS with the wrong CA or
//! none fails, hostile text in an ssh path stays text.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildit_share::transport::{self, Location, Transport, TransportOptions};
use buildit_share::ShareError;
use libtest_mimic::{Failed, Trial};

use crate::servers::{self, HTTPS_TOOLS, REGISTRY_TOOLS, SSH_TOOLS};

type R = Result<(), Failed>;

fn trial(name: &str, tools: &[&str], f: fn() -> R) -> Trial {
    crate::gated(format!("share::transport::{name}"), tools, false, f)
}

pub fn trials() -> Vec<Trial> {
    vec![
        trial("file::round_trip", &[], file_round_trip),
        trial("file::atomic_put", &[], file_atomic),
        trial("file::concurrent_gets", &[], file_concurrent),
        trial("https::round_trip", HTTPS_TOOLS, https_round_trip),
        trial("https::concurrent_gets", HTTPS_TOOLS, https_concurrent),
        trial("https::wrong_ca_is_refused", HTTPS_TOOLS, https_wrong_ca),
        trial("https::hanging_server_times_out", &[], https_hang),
        trial("ssh::round_trip", SSH_TOOLS, ssh_round_trip),
        trial(
            "ssh::seed_form_is_relative_to_home",
            SSH_TOOLS,
            ssh_seed_form,
        ),
        trial("ssh::atomic_put", SSH_TOOLS, ssh_atomic),
        trial("ssh::concurrent_gets", SSH_TOOLS, ssh_concurrent),
        trial(
            "ssh::one_connection_for_many_requests",
            SSH_TOOLS,
            ssh_reuse,
        ),
        trial("ssh::hostile_path_stays_text", SSH_TOOLS, ssh_hostile_path),
        trial("ssh::hanging_server_times_out", SSH_TOOLS, ssh_hang),
        trial(
            "ssh::stalled_or_trickling_remote_times_out",
            SSH_TOOLS,
            ssh_trickle,
        ),
        trial("oci::round_trip", REGISTRY_TOOLS, oci_round_trip),
        trial("oci::atomic_put", REGISTRY_TOOLS, oci_atomic),
        trial("oci::concurrent_gets", REGISTRY_TOOLS, oci_concurrent),
        trial("oci::foreign_tag_is_refused", REGISTRY_TOOLS, oci_foreign),
        trial("oci::hanging_server_times_out", &[], oci_hang),
    ]
}

// ---------------------------------------------------------------------------------------
// helpers

/// Deterministic bytes: `n` of them from seed `seed`.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The objects every round trip writes: sizes from 0 bytes to 3 MiB, keys at the top, in
/// directories, and with the characters the OCI tag mapping escapes.
fn objects() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "buildit-repository.json".into(),
            b"{\"version\":1}".to_vec(),
        ),
        ("objects/empty".into(), Vec::new()),
        ("objects/one".into(), bytes(1, 1)),
        ("objects/k_1+x.info".into(), bytes(1000, 2)),
        ("objects/hundred-k".into(), bytes(100_000, 3)),
        (
            "archives/big.tar.zst".into(),
            bytes(3 * 1024 * 1024 + 17, 4),
        ),
    ]
}

/// A fresh directory for one trial.
fn trial_dir(name: &str) -> Result<PathBuf, Failed> {
    let d = servers::fixture_dir().join("trials").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn open(loc: &str, opts: &TransportOptions) -> Result<Arc<dyn Transport>, Failed> {
    let loc = Location::parse(loc)?;
    Ok(Arc::from(transport::open(&loc, opts)?))
}

fn opts() -> TransportOptions {
    TransportOptions {
        timeout: Duration::from_secs(20),
        ..TransportOptions::default()
    }
}

/// Write every object through `w` (alternating `put_bytes` and `put_file`).
fn put_all(w: &dyn Transport, objs: &[(String, Vec<u8>)], scratch: &Path) -> R {
    for (i, (k, data)) in objs.iter().enumerate() {
        if i % 2 == 0 {
            w.put_bytes(k, data)?;
        } else {
            let f = scratch.join(format!("src.{i}"));
            std::fs::write(&f, data)?;
            w.put_file(k, &f)?;
        }
    }
    Ok(())
}

/// Read every object back through `r` in every way, the limits, absence, and (when `listed`)
/// the listings.
fn check_all(r: &dyn Transport, objs: &[(String, Vec<u8>)], scratch: &Path, listed: bool) -> R {
    let name = r.describe();
    for (i, (k, data)) in objs.iter().enumerate() {
        let len = data.len() as u64;
        match r.get(k, len)? {
            Some(got) if got == *data => {}
            Some(got) => {
                return Err(format!("{name}: {k}: {} bytes, not the {len} put", got.len()).into())
            }
            None => return Err(format!("{name}: {k} is missing").into()),
        }
        if !r.exists(k)? {
            return Err(format!("{name}: exists({k}) is false").into());
        }
        let dest = scratch.join(format!("got.{i}"));
        if !r.get_to_file(k, &dest, len)? || std::fs::read(&dest)? != *data {
            return Err(format!("{name}: get_to_file({k}) differs").into());
        }
        let stream = scratch.join(format!("stream.{i}"));
        let mut streamed = Vec::new();
        std::io::Read::read_to_end(
            &mut r
                .open_read(k, len, &stream)?
                .ok_or_else(|| format!("{name}: open_read({k}) found nothing"))?,
            &mut streamed,
        )?;
        let _ = std::fs::remove_file(&stream);
        if streamed != *data {
            return Err(format!("{name}: open_read({k}) differs").into());
        }
        if len > 0 {
            match r.get(k, len - 1) {
                Err(ShareError::TooLarge { limit, .. }) if limit == len - 1 => {}
                other => {
                    return Err(format!(
                        "{name}: get({k}) with a limit one byte short: {:?}",
                        other.map(|o| o.map(|v| v.len()))
                    )
                    .into())
                }
            }
            let dest = scratch.join(format!("short.{i}"));
            match r.get_to_file(k, &dest, len - 1) {
                Err(ShareError::TooLarge { .. }) if !dest.exists() => {}
                other => {
                    return Err(format!(
                        "{name}: get_to_file({k}) one byte short: {other:?}, file left: {}",
                        dest.exists()
                    )
                    .into())
                }
            }
        }
    }
    for absent in ["objects/absent", "nothing-here", "no-dir/x"] {
        if r.get(absent, 1 << 20)?.is_some() {
            return Err(format!("{name}: get({absent}) found something").into());
        }
        if r.exists(absent)? {
            return Err(format!("{name}: exists({absent}) is true").into());
        }
        if r.open_read(absent, 1 << 20, &scratch.join("absent-stream"))?
            .is_some()
        {
            return Err(format!("{name}: open_read({absent}) found something").into());
        }
        let dest = scratch.join("absent");
        if r.get_to_file(absent, &dest, 1 << 20)? || dest.exists() {
            return Err(
                format!("{name}: get_to_file({absent}) found something or left a file").into(),
            );
        }
    }
    match r.get("../escape", 10) {
        Err(ShareError::BadKey { .. }) => {}
        other => return Err(format!("{name}: get(../escape): {other:?}").into()),
    }
    if listed {
        let mut want: Vec<String> = objs
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.starts_with("objects/"))
            .collect();
        want.sort();
        let got = r.list("objects/")?;
        if got != want {
            return Err(format!("{name}: list(objects/) = {got:?}, want {want:?}").into());
        }
        let top = r.list("")?;
        if top != ["buildit-repository.json"] {
            return Err(format!("{name}: list(\"\") = {top:?}").into());
        }
        if !r.list("no-dir/")?.is_empty() {
            return Err(format!("{name}: list(no-dir/) is not empty").into());
        }
    }
    Ok(())
}

/// Put, read back, overwrite, read again.
fn round_trip(w: &dyn Transport, r: &dyn Transport, scratch: &Path, listed: bool) -> R {
    let objs = objects();
    put_all(w, &objs, scratch)?;
    check_all(r, &objs, scratch, listed)?;
    // an overwrite replaces the object
    let new = bytes(5000, 99);
    w.put_bytes("objects/one", &new)?;
    if r.get("objects/one", 1 << 20)?.as_deref() != Some(&new[..]) {
        return Err(format!("{}: an overwritten object reads old bytes", r.describe()).into());
    }
    Ok(())
}

/// While a large upload runs, a reader sees the key absent or whole, never a part; after it,
/// no temporary file is left in `dir` (when the repository is a local directory).
fn atomic(t: Arc<dyn Transport>, scratch: &Path, dir: Option<&Path>) -> R {
    let big = bytes(40 << 20, 7);
    let src = scratch.join("big.src");
    std::fs::write(&src, &big)?;
    let key = "archives/atomic.tar.zst";
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let t = Arc::clone(&t);
        let done = Arc::clone(&done);
        let src = src.clone();
        std::thread::spawn(move || {
            let r = t.put_file(key, &src);
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let (mut absent, mut whole) = (0usize, 0usize);
    let mut failure = None;
    while !done.load(Ordering::SeqCst) {
        match t.get(key, big.len() as u64) {
            Ok(None) => absent += 1,
            Ok(Some(v)) if v == big => whole += 1,
            Ok(Some(v)) => {
                failure = Some(format!("a reader saw {} of {} bytes", v.len(), big.len()));
                break;
            }
            Err(e) => {
                failure = Some(format!("a reader failed during the upload: {e}"));
                break;
            }
        }
        if let Some(d) = dir {
            let leaked: Vec<String> = std::fs::read_dir(d.join("archives"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("atomic.tar.zst") && n != "atomic.tar.zst")
                .collect();
            if !leaked.is_empty() {
                failure = Some(format!("a temporary name under the key: {leaked:?}"));
                break;
            }
        }
    }
    writer.join().map_err(|_| "the writer panicked")??;
    if let Some(f) = failure {
        return Err(f.into());
    }
    if t.get(key, big.len() as u64)?.as_deref() != Some(&big[..]) {
        return Err("after the upload the object is not whole".into());
    }
    let listed = t.list("archives/");
    if let Ok(keys) = &listed {
        if keys != &[key.to_string()] {
            return Err(format!("list(archives/) after the upload: {keys:?}").into());
        }
    }
    if let Some(d) = dir {
        let mut left = Vec::new();
        for e in walk(d) {
            let n = e.file_name().map(|n| n.to_string_lossy().into_owned());
            if n.is_some_and(|n| n.starts_with('.')) {
                left.push(e);
            }
        }
        if !left.is_empty() {
            return Err(format!("temporary files left after the upload: {left:?}").into());
        }
    }
    eprintln!(
        "{}: the reader saw the key absent {absent} times and whole {whole} times during the upload",
        t.describe()
    );
    Ok(())
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Eight threads read every object several times at once.
fn concurrent(w: &dyn Transport, r: Arc<dyn Transport>, scratch: &Path) -> R {
    let objs: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| (format!("objects/c{i}"), bytes(1000 + i * 7919, i as u64)))
        .chain([("archives/c-big".to_string(), bytes(2 << 20, 77))])
        .collect();
    put_all(w, &objs, scratch)?;
    let objs = Arc::new(objs);
    let handles: Vec<_> = (0..8)
        .map(|n| {
            let r = Arc::clone(&r);
            let objs = Arc::clone(&objs);
            std::thread::spawn(move || -> Result<(), String> {
                for round in 0..2 {
                    for j in 0..objs.len() {
                        let (k, data) = &objs[(j + n * 3 + round) % objs.len()];
                        match r.get(k, 8 << 20) {
                            Ok(Some(v)) if v == *data => {}
                            other => {
                                return Err(format!(
                                    "thread {n}: {k}: {:?}",
                                    other.map(|o| o.map(|v| v.len()))
                                ))
                            }
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a reader panicked")??;
    }
    Ok(())
}

/// `f` fails with a timeout, within a few times the bound.
fn times_out<T: std::fmt::Debug>(bound: Duration, f: impl FnOnce() -> Result<T, ShareError>) -> R {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    match r {
        Err(ShareError::Timeout { .. }) if took < bound * 4 + Duration::from_secs(2) => Ok(()),
        Err(ShareError::Timeout { .. }) => {
            Err(format!("timed out after {took:?}, the bound is {bound:?}").into())
        }
        other => {
            Err(format!("expected a timeout after {bound:?}, got {other:?} after {took:?}").into())
        }
    }
}

// ---------------------------------------------------------------------------------------
// file://

fn file_transport(name: &str) -> Result<(PathBuf, PathBuf, Arc<dyn Transport>), Failed> {
    let d = trial_dir(name)?;
    let repo = d.join("repo");
    let scratch = d.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let t = open(&format!("file://{}", repo.display()), &opts())?;
    Ok((repo, scratch, t))
}

fn file_round_trip() -> R {
    let (_, scratch, t) = file_transport("file-round-trip")?;
    round_trip(t.as_ref(), t.as_ref(), &scratch, true)
}

fn file_atomic() -> R {
    let (repo, scratch, t) = file_transport("file-atomic")?;
    atomic(t, &scratch, Some(&repo))
}

fn file_concurrent() -> R {
    let (_, scratch, t) = file_transport("file-concurrent")?;
    concurrent(t.as_ref(), Arc::clone(&t), &scratch)
}

// ---------------------------------------------------------------------------------------
// https:// (nginx; written through file:// into the directory it serves)

struct HttpsCase {
    scratch: PathBuf,
    writer: Arc<dyn Transport>,
    https: Arc<dyn Transport>,
    http: Arc<dyn Transport>,
}

fn https_case(name: &str) -> Result<HttpsCase, Failed> {
    let d = trial_dir(name)?;
    let repo = d.join("repo");
    let scratch = d.join("scratch");
    std::fs::create_dir_all(&repo)?;
    std::fs::create_dir_all(&scratch)?;
    let h = servers::https_fixture(&repo)?;
    let writer = open(&format!("file://{}", repo.display()), &opts())?;
    let with_ca = TransportOptions {
        ca_file: Some(h.ca_pem.clone()),
        ..opts()
    };
    let https = open(&h.url, &with_ca)?;
    let http = open(&h.http_url, &opts())?;
    Ok(HttpsCase {
        scratch,
        writer,
        https,
        http,
    })
}

fn https_round_trip() -> R {
    let c = https_case("https-round-trip")?;
    round_trip(c.writer.as_ref(), c.https.as_ref(), &c.scratch, false)?;
    // the same tree in plain HTTP
    let plain = c.scratch.join("plain");
    std::fs::create_dir_all(&plain)?;
    check_all(
        c.http.as_ref(),
        &[("objects/hundred-k".into(), bytes(100_000, 3))],
        &plain,
        false,
    )?;
    // https is read-only
    match c.https.put_bytes("objects/x", b"x") {
        Err(ShareError::Unsupported { .. }) => Ok(()),
        other => Err(format!("a put over https: {other:?}").into()),
    }
}

fn https_concurrent() -> R {
    let c = https_case("https-concurrent")?;
    concurrent(c.writer.as_ref(), Arc::clone(&c.https), &c.scratch)
}

fn https_wrong_ca() -> R {
    let d = trial_dir("https-wrong-ca")?;
    std::fs::write(d.join("k"), b"secret")?;
    let (url, ca_pem) = servers::https_server(&d)?;
    for ca in [Some(servers::untrusted_ca_pem()?), None] {
        let o = TransportOptions {
            ca_file: ca.clone(),
            ..opts()
        };
        let t = open(&url, &o)?;
        match t.get("k", 100) {
            Err(ShareError::Transport { .. }) => {}
            other => {
                return Err(
                    format!("https with CA {ca:?} instead of the server's: {other:?}").into(),
                )
            }
        }
    }
    // and with the right one it is read
    let o = TransportOptions {
        ca_file: Some(ca_pem),
        ..opts()
    };
    if open(&url, &o)?.get("k", 100)?.as_deref() != Some(&b"secret"[..]) {
        return Err("with the right CA the object is not read".into());
    }
    Ok(())
}

fn https_hang() -> R {
    let addr = servers::hanging_server()?;
    let bound = Duration::from_secs(2);
    let o = TransportOptions {
        timeout: bound,
        ..TransportOptions::default()
    };
    let t = open(&format!("https://{addr}/repo"), &o)?;
    times_out(bound, || t.get("buildit-repository.json", 1000))?;
    let t = open(&format!("http://{addr}/repo"), &o)?;
    times_out(bound, || t.exists("x.info"))
}

// ---------------------------------------------------------------------------------------
// ssh (sshd on loopback)

fn ssh_opts(f: &servers::SshFixture) -> TransportOptions {
    TransportOptions {
        ssh_identity: Some(f.identity_path.clone()),
        ssh_options: f.ssh_options(),
        ..opts()
    }
}

struct SshCase {
    repo: PathBuf,
    scratch: PathBuf,
    t: Arc<dyn Transport>,
}

fn ssh_case(name: &str) -> Result<SshCase, Failed> {
    let f = servers::ssh_server()?;
    let d = f.dir.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    let scratch = trial_dir(name)?;
    let loc = format!("ssh://{}@127.0.0.1:{}{}", f.user, f.port, d.display());
    let t = open(&loc, &ssh_opts(f))?;
    Ok(SshCase {
        repo: d,
        scratch,
        t,
    })
}

fn ssh_round_trip() -> R {
    let c = ssh_case("ssh-round-trip")?;
    round_trip(c.t.as_ref(), c.t.as_ref(), &c.scratch, true)?;
    // the objects are plain files at their keys on the host
    if std::fs::read(c.repo.join("objects/k_1+x.info"))? != bytes(1000, 2) {
        return Err("objects/k_1+x.info is not on the server's disk".into());
    }
    Ok(())
}

fn ssh_seed_form() -> R {
    let f = servers::ssh_server()?;
    let rel = format!("buildit-share-trial.{}", std::process::id());
    let on_disk = f.home.join(&rel);
    let _ = std::fs::remove_dir_all(&on_disk);
    let scratch = trial_dir("ssh-seed-form")?;
    let loc = format!("{}@127.0.0.1:{}/{rel}/cache", f.user, f.port);
    let result = (|| -> R {
        let parsed = Location::parse(&loc)?;
        let t: Arc<dyn Transport> = Arc::from(transport::open(&parsed, &ssh_opts(f))?);
        if t.describe() != loc {
            return Err(format!("describe() = {}, written {loc}", t.describe()).into());
        }
        round_trip(t.as_ref(), t.as_ref(), &scratch, true)?;
        // the path is relative to the login directory
        if std::fs::read(on_disk.join("cache/objects/hundred-k"))? != bytes(100_000, 3) {
            return Err(format!("{} does not hold the objects", on_disk.display()).into());
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&on_disk);
    result
}

fn ssh_atomic() -> R {
    let c = ssh_case("ssh-atomic")?;
    atomic(Arc::clone(&c.t), &c.scratch, Some(&c.repo))
}

fn ssh_concurrent() -> R {
    let c = ssh_case("ssh-concurrent")?;
    concurrent(c.t.as_ref(), Arc::clone(&c.t), &c.scratch)
}

fn ssh_reuse() -> R {
    let f = servers::ssh_server()?;
    let d = f.dir.join("ssh-reuse");
    let _ = std::fs::remove_dir_all(&d);
    // a key of its own, so that other trials' connections are not counted
    let o = TransportOptions {
        ssh_identity: Some(f.second_identity_path.clone()),
        ..ssh_opts(f)
    };
    let loc = format!("ssh://{}@127.0.0.1:{}{}", f.user, f.port, d.display());
    let c = SshCase {
        repo: d,
        scratch: trial_dir("ssh-reuse")?,
        t: open(&loc, &o)?,
    };
    let before = f.accepted_connections(&f.second_identity_path)?;
    c.t.put_bytes("objects/a", b"a")?;
    for _ in 0..40 {
        if !c.t.exists("objects/a")? {
            return Err("objects/a vanished".into());
        }
    }
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let t = Arc::clone(&c.t);
            std::thread::spawn(move || -> Result<(), String> {
                for _ in 0..10 {
                    if t.get("objects/a", 10)
                        .map_err(|e| e.to_string())?
                        .as_deref()
                        != Some(b"a")
                    {
                        return Err("objects/a reads wrong".into());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a reader panicked")??;
    }
    // sshd logs its "Accepted publickey" line when the login completes; give it a moment
    std::thread::sleep(Duration::from_millis(300));
    let made = f.accepted_connections(&f.second_identity_path)? - before;
    if made != 1 {
        return Err(format!("121 requests made {made} ssh connections, not one").into());
    }
    Ok(())
}

fn ssh_hostile_path() -> R {
    let f = servers::ssh_server()?;
    let base = f.dir.join("hostile");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let evil = "it's $(touch PWNED1) `touch PWNED2`; touch PWNED3 \"x\" \\ *";
    let path = format!("{}/{evil}", base.display());
    let t = buildit_share::transport::ssh::SshTransport::new(
        Some(&f.user),
        "127.0.0.1",
        Some(f.port),
        &path,
        &ssh_opts(f),
    )?;
    t.put_bytes("objects/k", b"kept as text")?;
    if t.get("objects/k", 100)?.as_deref() != Some(&b"kept as text"[..]) {
        return Err("the object under the hostile path reads wrong".into());
    }
    if t.list("objects/")? != ["objects/k"] {
        return Err("the listing under the hostile path is wrong".into());
    }
    if std::fs::read(base.join(evil).join("objects/k"))? != b"kept as text" {
        return Err("the hostile path was not used literally".into());
    }
    let home_files: Vec<PathBuf> = [&base, &f.home]
        .iter()
        .flat_map(|d| ["PWNED1", "PWNED2", "PWNED3"].map(|n| d.join(n)))
        .filter(|p| p.exists())
        .collect();
    if !home_files.is_empty() {
        return Err(format!("the remote shell ran text of the path: {home_files:?}").into());
    }
    Ok(())
}

fn ssh_hang() -> R {
    let addr = servers::hanging_server()?;
    let bound = Duration::from_secs(2);
    let o = TransportOptions {
        timeout: bound,
        ..TransportOptions::default()
    };
    let t = open(
        &format!("ssh://nobody@127.0.0.1:{}/srv/repo", addr.port()),
        &o,
    )?;
    times_out(bound, || t.get("x.info", 100))
}

/// A remote `cat` that gets no byte (a FIFO nobody writes) or a trickle (ten bytes every
/// 200 ms, under 1 KiB per window of the timeout) is a timeout within a few times the bound.
fn ssh_trickle() -> R {
    use std::os::unix::fs::OpenOptionsExt;
    let f = servers::ssh_server()?;
    let d = f.dir.join("ssh-trickle");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("objects"))?;
    for name in ["stalled", "trickle"] {
        let st = std::process::Command::new("mkfifo")
            .arg(d.join("objects").join(name))
            .status()?;
        if !st.success() {
            return Err(format!("mkfifo: {st}").into());
        }
    }
    let bound = Duration::from_secs(4);
    let o = TransportOptions {
        timeout: bound,
        ..ssh_opts(f)
    };
    let loc = format!("ssh://{}@127.0.0.1:{}{}", f.user, f.port, d.display());
    let t = open(&loc, &o)?;
    // a first request sets up the connection (again if a loaded machine made it time out),
    // so that the bound below is the command's own
    let mut warm = Err(ShareError::BadKey { key: String::new() });
    for _ in 0..3 {
        warm = t.exists("objects/absent");
        if warm.is_ok() {
            break;
        }
    }
    if warm? {
        return Err("objects/absent exists".into());
    }
    let stalled = times_out(bound, || t.get("objects/stalled", 1 << 20));
    // the remote `cat` still waits for a writer: open and close one so that it ends
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(d.join("objects/stalled"));
    stalled?;
    let fifo = d.join("objects/trickle");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // a non-blocking open fails until the remote `cat` opens the other end
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut w = loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo)
                {
                    Ok(w) => break w,
                    Err(_) if Instant::now() < deadline && !stop.load(Ordering::SeqCst) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => return,
                }
            };
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if std::io::Write::write_all(&mut w, b"0123456789").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let r = times_out(bound, || t.get("objects/trickle", 1 << 20));
    stop.store(true, Ordering::SeqCst);
    writer.join().map_err(|_| "the trickling writer panicked")?;
    r
}

// ---------------------------------------------------------------------------------------
// oci:// (docker-registry)

fn oci_opts() -> TransportOptions {
    TransportOptions {
        insecure_loopback: true,
        ..opts()
    }
}

fn oci_case(name: &str) -> Result<(PathBuf, Arc<dyn Transport>), Failed> {
    let addr = servers::registry()?;
    let scratch = trial_dir(name)?;
    let repo = format!("buildit/{}-{}", name, std::process::id());
    let t = open(&format!("oci://{addr}/{repo}"), &oci_opts())?;
    Ok((scratch, t))
}

fn oci_round_trip() -> R {
    let (scratch, t) = oci_case("oci-round-trip")?;
    round_trip(t.as_ref(), t.as_ref(), &scratch, true)
}

fn oci_atomic() -> R {
    let (scratch, t) = oci_case("oci-atomic")?;
    atomic(t, &scratch, None)
}

fn oci_concurrent() -> R {
    let (scratch, t) = oci_case("oci-concurrent")?;
    concurrent(t.as_ref(), Arc::clone(&t), &scratch)
}

/// A tag that is not one of our artifacts (an image manifest pushed by someone else under
/// the key's tag) is an error, not an object.
fn oci_foreign() -> R {
    use buildit_images::registry::{Client, ClientOptions, EMPTY_DIGEST, EMPTY_JSON};
    let addr = servers::registry()?;
    let repo = format!("buildit/foreign-{}", std::process::id());
    let c = Client::new(
        addr,
        &repo,
        &ClientOptions {
            insecure: true,
            ..ClientOptions::default()
        },
    )?;
    let at = c.start_upload()?;
    let mut src: &[u8] = EMPTY_JSON;
    c.upload(at, &mut src, EMPTY_DIGEST, 2, 1024, "{}")?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": EMPTY_DIGEST, "size": 2 },
        "layers": [],
    });
    let b = serde_json::to_vec(&manifest)?;
    let d = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b))
    );
    c.put_manifest(
        "buildit-repository.json",
        "application/vnd.oci.image.manifest.v1+json",
        &b,
        &d,
    )?;
    let t = open(&format!("oci://{addr}/{repo}"), &oci_opts())?;
    match t.get("buildit-repository.json", 1000) {
        Err(ShareError::Transport { message, .. }) if message.contains("not a buildit object") => {
            Ok(())
        }
        other => Err(format!("a foreign manifest under the key's tag: {other:?}").into()),
    }
}

fn oci_hang() -> R {
    let addr = servers::hanging_server()?;
    let bound = Duration::from_secs(2);
    let o = TransportOptions {
        timeout: bound,
        insecure_loopback: true,
        ..TransportOptions::default()
    };
    let t = open(&format!("oci://{addr}/repo"), &o)?;
    times_out(bound, || t.get("x.info", 100))?;
    times_out(bound, || t.exists("x.info"))?;
    times_out(bound, || t.put_bytes("x.info", b"x"))
}
