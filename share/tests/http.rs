//! The http(s) transport against a real HTTP server on loopback (a small std `TcpListener`
//! server in this test, so each hostile behaviour can be staged exactly): files served,
//! 404/410 and other statuses, a server that accepts and then hangs (before the headers and
//! in the middle of a body), a body shorter than its `Content-Length`, bodies over the
//! limit with and without a length, uploads refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use buildit_share::transport::{self, Location, TransportOptions};
use buildit_share::ShareError;

/// What the server does for one request path.
fn respond(stream: &mut TcpStream, method: &str, path: &str) {
    let head_only = method == "HEAD";
    let send = |s: &mut TcpStream, status: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        if !head_only {
            let _ = s.write_all(body);
        }
    };
    match path {
        "/repo/a.info" => send(stream, "200 OK", b"hello record"),
        "/repo/archives/big.tar.zst" => send(stream, "200 OK", &vec![7u8; 100_000]),
        "/repo/gone.info" => send(stream, "410 Gone", b""),
        "/repo/err.info" => send(stream, "500 Internal Server Error", b"oops"),
        "/repo/forbidden.info" => send(stream, "403 Forbidden", b""),
        "/repo/hang.info" => thread::sleep(Duration::from_secs(10)),
        "/repo/hang-body.info" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part");
            let _ = stream.flush();
            thread::sleep(Duration::from_secs(10));
        }
        "/repo/trickle.info" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            for _ in 0..100 {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(100));
            }
        }
        "/repo/short.info" => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly ten b",
            );
        }
        "/repo/chunked.info" => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            for _ in 0..100 {
                let _ = stream.write_all(b"400\r\n");
                let _ = stream.write_all(&[b'x'; 0x400]);
                let _ = stream.write_all(b"\r\n");
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        _ => send(stream, "404 Not Found", b"no"),
    }
}

/// Start the server; returns its base URL and a counter of requests served.
fn server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let c = c.clone();
            thread::spawn(move || {
                let mut req = Vec::new();
                let mut b = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") && req.len() < 8192 {
                    match stream.read(&mut b) {
                        Ok(1) => req.push(b[0]),
                        _ => return,
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&req).to_string();
                let mut words = text.split_whitespace();
                let method = words.next().unwrap_or("").to_string();
                let path = words.next().unwrap_or("").to_string();
                respond(&mut stream, &method, &path);
            });
        }
    });
    (format!("http://127.0.0.1:{port}/repo"), count)
}

fn open(base: &str, timeout: Duration) -> Box<dyn transport::Transport> {
    let loc = Location::parse(base).expect("location");
    let opts = TransportOptions {
        timeout,
        ..TransportOptions::default()
    };
    transport::open(&loc, &opts).expect("open")
}

#[test]
fn serves_files_and_statuses() {
    let (base, count) = server();
    let t = open(&base, Duration::from_secs(5));
    assert_eq!(
        t.get("a.info", 1000).expect("get").as_deref(),
        Some(&b"hello record"[..])
    );
    assert!(t.exists("a.info").expect("head"));
    assert!(!t.exists("missing.info").expect("head"));
    assert_eq!(t.get("missing.info", 1000).expect("get"), None);
    assert_eq!(t.get("gone.info", 1000).expect("get"), None);
    for key in ["err.info", "forbidden.info"] {
        match t.get(key, 1000) {
            Err(ShareError::Transport { message, .. }) => {
                assert!(message.contains(&key[..3]), "{message}")
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let e = t.get("err.info", 1000).expect_err("500");
    assert!(e.to_string().contains("500"), "{e}");
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = tmp.path().join("big");
    assert!(t
        .get_to_file("archives/big.tar.zst", &dest, 100_000)
        .expect("download"));
    assert_eq!(std::fs::read(&dest).expect("read"), vec![7u8; 100_000]);
    assert!(!t
        .get_to_file("missing.info", &tmp.path().join("m"), 10)
        .expect("absent"));
    assert!(!tmp.path().join("m").exists());
    assert!(matches!(
        t.get("../etc/passwd", 10),
        Err(ShareError::BadKey { .. })
    ));
    // An upload is refused without a request.
    let before = count.load(Ordering::SeqCst);
    let e = t.put_bytes("a.info", b"x").expect_err("read-only");
    assert!(e.to_string().contains("use an ssh:// or file://"), "{e}");
    assert!(t.put_file("a.info", &dest).is_err());
    assert_eq!(count.load(Ordering::SeqCst), before);
}

#[test]
fn a_hanging_server_times_out() {
    let (base, _) = server();
    let t = open(&base, Duration::from_secs(1));
    for key in ["hang.info", "hang-body.info"] {
        let start = Instant::now();
        let e = t.get(key, 1000).expect_err(key);
        let took = start.elapsed();
        assert!(
            matches!(e, ShareError::Timeout { seconds: 1, .. }),
            "{key}: {e:?}"
        );
        assert!(took < Duration::from_millis(2500), "{key}: took {took:?}");
    }
    // A byte every 100 ms is never silent for the 1 s timeout, but far below the slowest
    // rate accepted.
    let start = Instant::now();
    let e = t.get("trickle.info", 1_000_000).expect_err("trickle");
    assert!(matches!(e, ShareError::Timeout { .. }), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_millis(3000),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert!(matches!(
        t.exists("hang.info"),
        Err(ShareError::Timeout { .. })
    ));
    assert!(start.elapsed() < Duration::from_millis(2500));
}

#[test]
fn a_truncated_body_is_an_error() {
    let (base, _) = server();
    let t = open(&base, Duration::from_secs(5));
    let e = t.get("short.info", 1000).expect_err("truncated");
    assert!(matches!(e, ShareError::Transport { .. }), "{e:?}");
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = tmp.path().join("short");
    assert!(t.get_to_file("short.info", &dest, 1000).is_err());
    assert!(!dest.exists(), "a truncated download leaves no file");
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let (base, _) = server();
    let t = open(&base, Duration::from_secs(5));
    // Refused by its Content-Length, and while streaming a body without one.
    for (key, limit) in [("archives/big.tar.zst", 99_999), ("chunked.info", 50_000)] {
        match t.get(key, limit) {
            Err(ShareError::TooLarge { limit: l, .. }) => assert_eq!(l, limit),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert_eq!(
        t.get("chunked.info", 102_400)
            .expect("exactly the limit")
            .map(|b| b.len()),
        Some(102_400)
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let dest = tmp.path().join("c");
    assert!(matches!(
        t.get_to_file("chunked.info", &dest, 1000),
        Err(ShareError::TooLarge { .. })
    ));
    assert!(!dest.exists());
}

#[test]
fn a_bad_ca_file_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, b"not a certificate").expect("write");
    let opts = TransportOptions {
        ca_file: Some(ca),
        ..TransportOptions::default()
    };
    let loc = Location::parse("https://127.0.0.1:1/x").expect("location");
    assert!(transport::open(&loc, &opts).is_err());
    let missing = TransportOptions {
        ca_file: Some(tmp.path().join("absent.pem")),
        ..TransportOptions::default()
    };
    assert!(matches!(
        transport::open(&loc, &missing),
        Err(ShareError::Io { .. })
    ));
}
