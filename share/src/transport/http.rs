//! The `http://` and `https://` transport: a repository is a static file tree behind a web
//! server, read with `GET` and `HEAD` (reqwest's blocking client, rustls). Read-only: uploads
//! go through `ssh://` or `file://` to the directory the server serves.
//!
//! Every answer may come from an attacker, so: connecting and every wait for data are bounded
//! by the timeout (a server that accepts and then says nothing gives
//! [`ShareError::Timeout`], and so does a body arriving slower than 1 KiB/s over a window of
//! the timeout, so a trickle cannot hold a download open for ever); a body is read in a stream and refused as soon as it passes the
//! caller's limit (or when its `Content-Length` already does); a body that ends before its
//! `Content-Length` is an error, never a short success; no content encoding is requested, so
//! nothing is decompressed behind our back; redirects are followed at most a few times.
//! `404` and `410` mean "not there"; every other non-success status is an error naming it.
//!
//! One client (a connection pool) serves every thread: substitution asks for many keys at
//! once.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

use super::{check_key, Transport, TransportOptions};
use crate::ShareError;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// The slowest body accepted, in bytes per second, averaged over windows of the timeout: a
/// server that trickles a byte now and then (never quite silent for a whole timeout) is
/// cut off like one that hangs.
const MIN_RATE: u64 = 1024;

/// A repository served over HTTP(S).
#[derive(Debug)]
pub struct HttpTransport {
    base: String,
    client: Client,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport for the base URL `base` (no trailing `/`), trusting the CA certificates
    /// in `opts.ca_file` in addition to the built-in roots.
    pub fn new(base: &str, opts: &TransportOptions) -> Result<HttpTransport, ShareError> {
        let mut b = Client::builder()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("buildit/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            let pem = fs::read(ca).map_err(|e| ShareError::io(ca.display(), e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ShareError::io(
                    ca.display(),
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not PEM certificates: {e}"),
                    ),
                )
            })?;
            if certs.is_empty() {
                return Err(ShareError::io(
                    ca.display(),
                    io::Error::new(io::ErrorKind::InvalidData, "no PEM certificate in it"),
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| ShareError::Transport {
            repo: base.to_string(),
            message: format!("cannot set up the HTTP client: {}", chain(&e)),
        })?;
        Ok(HttpTransport {
            base: base.trim_end_matches('/').to_string(),
            client,
            timeout: opts.timeout,
        })
    }

    fn url(&self, key: &str) -> Result<String, ShareError> {
        check_key(key)?;
        Ok(format!("{}/{key}", self.base))
    }

    fn timeout_err(&self) -> ShareError {
        ShareError::Timeout {
            repo: self.base.clone(),
            seconds: self.timeout.as_secs().max(1),
        }
    }

    fn request_err(&self, key: &str, e: reqwest::Error) -> ShareError {
        if e.is_timeout() {
            return self.timeout_err();
        }
        ShareError::Transport {
            repo: self.base.clone(),
            message: format!("{key}: {}", chain(&e)),
        }
    }

    fn read_err(&self, key: &str, e: io::Error) -> ShareError {
        if is_timeout(&e) {
            return self.timeout_err();
        }
        ShareError::Transport {
            repo: self.base.clone(),
            message: format!("{key}: reading the answer: {}", chain(&e)),
        }
    }

    fn too_large(&self, key: &str, limit: u64) -> ShareError {
        ShareError::TooLarge {
            repo: self.base.clone(),
            key: key.to_string(),
            limit,
        }
    }

    /// `GET key`: `None` for 404/410, the response for success (its `Content-Length`
    /// already checked against `limit`).
    fn fetch(&self, key: &str, limit: u64) -> Result<Option<Response>, ShareError> {
        let url = self.url(key)?;
        let resp = self
            .client
            .get(&url)
            .send()
            .map_err(|e| self.request_err(key, e))?;
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(None),
            s if s.is_success() => {}
            s => {
                return Err(ShareError::Transport {
                    repo: self.base.clone(),
                    message: format!("{key}: the server answered {s}"),
                })
            }
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(self.too_large(key, limit));
        }
        Ok(Some(resp))
    }

    /// Copy the body of `resp` into `out`, at most `limit` bytes, and check it against its
    /// `Content-Length`; returns the byte count.
    fn copy_body(
        &self,
        key: &str,
        resp: Response,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, ShareError> {
        let declared = resp.content_length();
        let mut body = resp.take(limit.saturating_add(1));
        let mut buf = vec![0u8; 64 * 1024];
        let mut n: u64 = 0;
        let window = self.timeout.max(Duration::from_secs(1));
        let min_bytes = MIN_RATE.saturating_mul(window.as_secs());
        let mut window_start = Instant::now();
        let mut window_bytes: u64 = 0;
        loop {
            let k = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(key, e)),
            };
            n += k as u64;
            if n > limit {
                return Err(self.too_large(key, limit));
            }
            window_bytes += k as u64;
            if window_start.elapsed() >= window {
                if window_bytes < min_bytes {
                    return Err(self.timeout_err());
                }
                window_start = Instant::now();
                window_bytes = 0;
            }
            out.write_all(&buf[..k])
                .map_err(|e| ShareError::io("the download", e))?;
        }
        if let Some(d) = declared {
            if d != n {
                return Err(ShareError::Transport {
                    repo: self.base.clone(),
                    message: format!(
                        "{key}: the answer ended after {n} of its {d} bytes (truncated)"
                    ),
                });
            }
        }
        Ok(n)
    }

    fn read_only(&self) -> ShareError {
        ShareError::Unsupported {
            repo: self.base.clone(),
            what: "upload to http(s) is not supported: use an ssh:// or file:// upload location"
                .into(),
        }
    }
}

/// Whether an IO error from a response body is reqwest's timeout.
fn is_timeout(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::TimedOut {
        return true;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
        .is_some_and(|r| r.is_timeout())
}

/// An error and its sources, `: `-joined (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

impl Transport for HttpTransport {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError> {
        let Some(resp) = self.fetch(key, limit)? else {
            return Ok(None);
        };
        let cap = resp.content_length().unwrap_or(0).min(limit).min(1 << 24);
        let mut out = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
        self.copy_body(key, resp, limit, &mut out)?;
        Ok(Some(out))
    }

    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError> {
        let Some(resp) = self.fetch(key, limit)? else {
            return Ok(false);
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| ShareError::io(dest.display(), e))?;
        let mut out = io::BufWriter::with_capacity(1 << 20, file);
        let r = self
            .copy_body(key, resp, limit, &mut out)
            .and_then(|_| out.flush().map_err(|e| ShareError::io(dest.display(), e)));
        if let Err(e) = r {
            drop(out);
            let _ = fs::remove_file(dest);
            return Err(e);
        }
        Ok(true)
    }

    fn exists(&self, key: &str) -> Result<bool, ShareError> {
        let url = self.url(key)?;
        let resp = self
            .client
            .head(&url)
            .send()
            .map_err(|e| self.request_err(key, e))?;
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(false),
            s if s.is_success() => Ok(true),
            s => Err(ShareError::Transport {
                repo: self.base.clone(),
                message: format!("{key}: the server answered {s}"),
            }),
        }
    }

    fn put_file(&self, _key: &str, _src: &Path) -> Result<(), ShareError> {
        Err(self.read_only())
    }

    fn put_bytes(&self, _key: &str, _data: &[u8]) -> Result<(), ShareError> {
        Err(self.read_only())
    }
}
