//! Tests of the fetcher against a real HTTP server on loopback (a thread with a
//! `TcpListener`) that serves byte ranges and can misbehave on purpose.

use super::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request the test server saw: path and `Range` header.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serve `files` on 127.0.0.1. Paths under `/flaky/` send half the body and drop the
/// connection on their first request; `/busy/` answers 503 once; `/norange/` ignores `Range`.
fn serve(files: Vec<(&str, Vec<u8>)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let files: HashMap<String, Vec<u8>> =
        files.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let mut count: HashMap<String, usize> = HashMap::new();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = handle(conn, &files, &mut count, &seen2);
        }
    });
    Server {
        base: format!("http://{addr}"),
        seen,
    }
}

fn handle(
    mut conn: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    count: &mut HashMap<String, usize>,
    seen: &Mutex<Vec<Seen>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().expect("lock").push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let n = {
        let c = count.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let Some(body) = files.get(&path) else {
        conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    if path.starts_with("/busy/") && n == 1 {
        conn.write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let start = range
        .as_deref()
        .filter(|_| !path.starts_with("/norange/"))
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let (status, slice, extra) = match start {
        Some(s) if s < body.len() => (
            "206 Partial Content",
            &body[s..],
            format!(
                "Content-Range: bytes {s}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ),
        ),
        _ => ("200 OK", &body[..], String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
        slice.len()
    );
    conn.write_all(head.as_bytes())?;
    if path.starts_with("/flaky/") && n == 1 {
        conn.write_all(&slice[..slice.len() / 2])?;
        conn.flush()?;
        return Ok(()); // dropped mid-body
    }
    conn.write_all(slice)?;
    Ok(())
}

fn sha256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn request<'a>(urls: &[String], mirrors: &'a Mirrors, body: &[u8]) -> FetchRequest<'a> {
    let mut r = FetchRequest::new(urls.to_vec(), mirrors);
    r.expected = Some(FixedOutput {
        mode: HashMode::Flat,
        algo: HashAlgo::Sha256,
        hash: sha256(body),
    });
    r.format = HashFormat::Hex;
    r.backoff = Duration::from_millis(10);
    r
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn fetches_over_http_with_progress() {
    let body = content(300_000);
    let srv = serve(vec![("/a.bin", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("a.bin");
    let m = Mirrors::new();
    let req = request(&[format!("{}/a.bin", srv.base)], &m, &body);
    let mut last = None;
    fetch_url(&req, &dest, &mut |p| last = Some(p)).expect("fetch");
    assert_eq!(fs::read(&dest).expect("read"), body);
    assert_eq!(mode(&dest), 0o644);
    let last = last.expect("progress was reported");
    assert_eq!(last.bytes, body.len() as u64);
    assert_eq!(last.total, Some(body.len() as u64));
    assert!(!partial_path(&dest).exists());
}

#[test]
fn retries_after_a_server_error() {
    let body = content(1000);
    let srv = serve(vec![("/busy/x", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("x");
    let m = Mirrors::new();
    let req = request(&[format!("{}/busy/x", srv.base)], &m, &body);
    fetch_url(&req, &dest, &mut |_| {}).expect("fetch after one 503");
    assert_eq!(fs::read(&dest).expect("read"), body);
    assert_eq!(srv.seen.lock().expect("lock").len(), 2);
}

#[test]
fn no_retries_means_the_503_is_the_answer() {
    let body = content(1000);
    let srv = serve(vec![("/busy/x", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("x");
    let m = Mirrors::new();
    let mut req = request(&[format!("{}/busy/x", srv.base)], &m, &body);
    req.retries = 0;
    let err = fetch_url(&req, &dest, &mut |_| {}).expect_err("503 without retries");
    assert!(err.to_string().contains("503"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn resumes_a_dropped_download_with_range() {
    let body = content(500_000);
    let srv = serve(vec![("/flaky/big", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("big");
    let m = Mirrors::new();
    let req = request(&[format!("{}/flaky/big", srv.base)], &m, &body);
    let mut attempts = Vec::new();
    fetch_url(&req, &dest, &mut |p| attempts.push((p.attempt, p.bytes))).expect("fetch");
    assert_eq!(fs::read(&dest).expect("read"), body);
    let seen = srv.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(
        seen[1].range.as_deref(),
        Some(format!("bytes={}-", body.len() / 2).as_str())
    );
    // The second attempt starts where the first stopped.
    let first_of_2 = attempts.iter().find(|(a, _)| *a == 2).expect("attempt 2");
    assert_eq!(first_of_2.1, (body.len() / 2) as u64);
}

#[test]
fn restarts_when_the_server_ignores_range() {
    let body = content(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("r");
    // A stale partial file from an earlier run.
    fs::write(partial_path(&dest), b"garbage").expect("write partial");
    let srv = serve(vec![("/norange/r", body.clone())]);
    let m = Mirrors::new();
    let req = request(&[format!("{}/norange/r", srv.base)], &m, &body);
    fetch_url(&req, &dest, &mut |_| {}).expect("fetch");
    assert_eq!(fs::read(&dest).expect("read"), body);
}

#[test]
fn hash_mismatch_names_url_and_both_hashes_and_writes_nothing() {
    let body = content(4096);
    let srv = serve(vec![("/m", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("m");
    let m = Mirrors::new();
    let wrong = sha256(b"something else");
    for (text, fmt) in [
        (hex::encode(&wrong), HashFormat::Hex),
        (base32_encode(&wrong), HashFormat::NixBase32),
        (
            HashFormat::Sri.render(HashAlgo::Sha256, &wrong),
            HashFormat::Sri,
        ),
    ] {
        assert_eq!(HashFormat::of(&text), fmt);
        let mut env = BTreeMap::new();
        env.insert("url".to_string(), format!("{}/m", srv.base));
        env.insert("outputHash".to_string(), text.clone());
        env.insert("outputHashAlgo".to_string(), "sha256".to_string());
        env.insert("outputHashMode".to_string(), "flat".to_string());
        let err = builtin_fetchurl(&env, &dest, &m, &mut |_| {}).expect_err("mismatch");
        let msg = err.to_string();
        let actual = fmt.render(HashAlgo::Sha256, &sha256(&body));
        assert!(matches!(err, FetchError::HashMismatch { .. }), "{msg}");
        assert!(msg.contains(&format!("{}/m", srv.base)), "{msg}");
        assert!(msg.contains(&format!("expected: {text}")), "{msg}");
        assert!(msg.contains(&format!("got: {actual}")), "{msg}");
        assert!(msg.contains("update the hash"), "{msg}");
        assert!(!dest.exists());
        assert!(!partial_path(&dest).exists());
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}

#[test]
fn file_urls_and_executable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("a script.sh");
    fs::write(&src, b"#!/bin/sh\necho hi\n").expect("write");
    let dest = dir.path().join("out");
    let url = format!("file://{}", src.display()).replace(' ', "%20");
    let mut env = BTreeMap::new();
    env.insert("url".to_string(), url);
    env.insert("executable".to_string(), "1".to_string());
    env.insert(
        "outputHash".to_string(),
        HashFormat::Sri.render(
            HashAlgo::Blake3,
            blake3::hash(b"#!/bin/sh\necho hi\n").as_bytes(),
        ),
    );
    builtin_fetchurl(&env, &dest, &Mirrors::new(), &mut |_| {}).expect("fetch file://");
    assert_eq!(fs::read(&dest).expect("read"), b"#!/bin/sh\necho hi\n");
    assert_eq!(mode(&dest), 0o755);
    // A missing file is an error naming it.
    env.insert("url".to_string(), "file:///nonexistent/x".to_string());
    let err = builtin_fetchurl(&env, &dir.path().join("o2"), &Mirrors::new(), &mut |_| {})
        .expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/x"), "{err}");
}

#[test]
fn urls_are_tried_in_order() {
    let body = content(100);
    let srv = serve(vec![("/second", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("o");
    let mut env = BTreeMap::new();
    env.insert(
        "urls".to_string(),
        format!("{0}/first {0}/second", srv.base),
    );
    env.insert("outputHash".to_string(), hex::encode(sha256(&body)));
    env.insert("outputHashAlgo".to_string(), "sha256".to_string());
    builtin_fetchurl(&env, &dest, &Mirrors::new(), &mut |_| {}).expect("second URL");
    assert_eq!(fs::read(&dest).expect("read"), body);
    let paths: Vec<String> = srv
        .seen
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(paths, ["/first", "/second"]);
}

/// `mirror://NAME/path` tries every base URL of the mirror in order.
#[test]
fn mirror_urls_resolve_against_the_configured_bases() {
    let body = content(2048);
    let srv = serve(vec![(
        "/debian/pool/main/h/hello/hello_1_amd64.deb",
        body.clone(),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = Mirrors::new();
    m.insert(
        "debian",
        vec![
            format!("{}/missing", srv.base),
            format!("{}/debian/", srv.base),
        ],
    );
    assert_eq!(
        m.resolve("mirror://debian/pool/x.deb").expect("resolve"),
        [
            format!("{}/missing/pool/x.deb", srv.base),
            format!("{}/debian/pool/x.deb", srv.base)
        ]
    );
    assert_eq!(
        m.resolve("http://a/b").expect("plain URL"),
        ["http://a/b".to_string()]
    );
    let dest = dir.path().join("hello.deb");
    let req = request(
        &["mirror://debian/pool/main/h/hello/hello_1_amd64.deb".to_string()],
        &m,
        &body,
    );
    fetch_url(&req, &dest, &mut |_| {}).expect("fetch through the mirror");
    assert_eq!(fs::read(&dest).expect("read"), body);
    m.insert("debian-security", Vec::new());
    let err = m
        .resolve("mirror://debian-security/pool/x.deb")
        .expect_err("no URLs");
    assert!(matches!(err, FetchError::EmptyMirror { .. }), "{err}");
}

#[test]
fn a_debian_404_says_how_to_refresh_the_lock() {
    let srv = serve(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = Mirrors::new();
    m.insert("debian", vec![format!("{}/debian", srv.base)]);
    let dest = dir.path().join("gone.deb");
    let req = request(
        &["mirror://debian/pool/main/g/gone/gone_1_amd64.deb".to_string()],
        &m,
        b"",
    );
    let err = fetch_url(&req, &dest, &mut |_| {}).expect_err("404");
    let msg = err.to_string();
    assert!(matches!(err, FetchError::LeftPool { .. }), "{msg}");
    assert!(msg.contains("pool/main/g/gone/gone_1_amd64.deb"), "{msg}");
    assert!(msg.contains("buildit debian lock"), "{msg}");
    assert!(!dest.exists());
    // An unknown mirror names the configured ones.
    let req = request(&["mirror://gnu/hello.tar.gz".to_string()], &m, b"");
    let err = fetch_url(&req, &dest, &mut |_| {}).expect_err("unknown mirror");
    assert!(
        err.to_string().contains("configured mirrors: debian"),
        "{err}"
    );
}

#[test]
fn file_urls_are_percent_decoded() {
    assert_eq!(percent_decode("/a%20b%zz%4"), "/a b%zz%4");
}

/// The Debian mirrors of the machine's apt configuration.
fn apt_mirrors() -> Mirrors {
    let mut m = Mirrors::new();
    let apt = buildit_debian::apt::debian_mirrors(Path::new(buildit_debian::apt::DEFAULT_APT_ROOT))
        .expect("apt config");
    for (name, bases) in apt {
        m.insert(&name, bases);
    }
    m
}

/// Network: fetch `zlib1g` as pinned in `stdlib/debian/bookworm.lock` from the machine's apt
/// mirror and unpack it (`cargo test -p buildit-builder -- --ignored`).
#[test]
#[ignore = "needs the Debian mirror of the machine's apt configuration"]
fn real_debian_mirror_fetch_and_unpack() {
    let lock = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../stdlib/debian/bookworm.lock"
    ))
    .expect("lock");
    let entry = lock
        .split("[[package]]")
        .find(|e| e.contains("name = \"zlib1g\""))
        .expect("zlib1g in the lock");
    let field = |k: &str| {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .expect("field")
            .to_string()
    };
    let m = apt_mirrors();
    let mut env = BTreeMap::new();
    env.insert(
        "url".to_string(),
        format!("mirror://{}/{}", field("mirror"), field("filename")),
    );
    env.insert("outputHash".to_string(), field("sha256"));
    env.insert("outputHashAlgo".to_string(), "sha256".to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = dir.path().join("zlib1g.deb");
    builtin_fetchurl(&env, &deb, &m, &mut |_| {}).expect("fetch from the mirror");
    let report =
        buildit_debian::unpack::unpack_debs(&[deb], &dir.path().join("root"), &Default::default())
            .expect("unpack");
    assert_eq!(report.packages[0].package, "zlib1g");
    assert!(dir
        .path()
        .join("root/lib/x86_64-linux-gnu/libz.so.1")
        .exists());
}

/// Network: fetch every `.deb` of `stdlib/debian/bookworm.lock` and unpack them into one
/// tree, printing the times (`cargo test -p buildit-builder sysroot -- --ignored --nocapture`).
#[test]
#[ignore = "needs the Debian mirror; downloads about 75 MB"]
fn sysroot_from_the_lock() {
    let lock = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../stdlib/debian/bookworm.lock"
    ))
    .expect("lock");
    let m = apt_mirrors();
    let dir = tempfile::tempdir().expect("tempdir");
    let t = std::time::Instant::now();
    let mut debs = Vec::new();
    for entry in lock.split("[[package]]").skip(1) {
        let field = |k: &str| {
            entry
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .and_then(|v| v.strip_suffix('"'))
                .expect("field")
                .to_string()
        };
        let mut env = BTreeMap::new();
        env.insert(
            "url".to_string(),
            format!("mirror://{}/{}", field("mirror"), field("filename")),
        );
        env.insert("outputHash".to_string(), field("sha256"));
        env.insert("outputHashAlgo".to_string(), "sha256".to_string());
        let deb = dir.path().join(format!("{}.deb", field("name")));
        builtin_fetchurl(&env, &deb, &m, &mut |_| {}).expect("fetch");
        debs.push(deb);
    }
    let fetched = t.elapsed();
    let t = std::time::Instant::now();
    let report =
        buildit_debian::unpack::unpack_debs(&debs, &dir.path().join("root"), &Default::default())
            .expect("unpack");
    println!(
        "{} debs fetched in {:.2?}, unpacked ({} files, {} bytes) in {:.2?}",
        debs.len(),
        fetched,
        report.files(),
        report.bytes(),
        t.elapsed()
    );
    assert!(dir.path().join("root/usr/bin/gcc-12").exists());
    assert!(dir.path().join("root/usr/include/stdio.h").exists());
}

#[test]
fn recursive_hashes_cover_the_executable_bit() {
    let body = b"#!/bin/sh\necho recursive\n".to_vec();
    let srv = serve(vec![("/tool", body.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let want = buildit_store::archive::content_hash_of_bytes(&body, true);
    let sri = HashFormat::Sri.render(HashAlgo::Blake3, &want.0);
    let mut env = BTreeMap::new();
    env.insert("url".to_string(), format!("{}/tool", srv.base));
    env.insert("outputHash".to_string(), sri);
    env.insert("outputHashMode".to_string(), "recursive".to_string());
    env.insert("executable".to_string(), "1".to_string());
    let dest = dir.path().join("tool");
    builtin_fetchurl(&env, &dest, &Mirrors::new(), &mut |_| {}).expect("recursive, executable");
    assert_eq!(mode(&dest), 0o755);
    // The same bytes without the executable bit are another archive: a mismatch.
    env.insert("executable".to_string(), String::new());
    let err = builtin_fetchurl(&env, &dir.path().join("t2"), &Mirrors::new(), &mut |_| {})
        .expect_err("not executable");
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
}

#[test]
fn no_output_hash_fetches_nothing() {
    let srv = serve(vec![("/secret", b"host service".to_vec())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("host-file");
    fs::write(&src, b"host secret").expect("write");
    for url in [
        format!("file://{}", src.display()),
        format!("{}/secret", srv.base),
    ] {
        let mut env = BTreeMap::new();
        env.insert("url".to_string(), url.clone());
        let dest = dir.path().join("out");
        let err =
            builtin_fetchurl(&env, &dest, &Mirrors::new(), &mut |_| {}).expect_err("no outputHash");
        match &err {
            FetchError::NotFixedOutput { urls } => assert_eq!(urls, &url),
            other => panic!("expected NotFixedOutput, got {other}"),
        }
        assert!(err.to_string().contains("needs a fixed output"), "{err}");
        assert!(!dest.exists());
        assert!(!partial_path(&dest).exists());
    }
    assert!(
        srv.seen.lock().expect("lock").is_empty(),
        "the server was asked"
    );
}
