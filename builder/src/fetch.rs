//! `builtin:fetchurl`: the fetcher behind fixed-output downloads.
//!
//! A download is tried URL by URL (a `mirror://NAME/path` URL expands to one candidate per
//! configured mirror), each with retries and exponential backoff. HTTP downloads resume with a
//! `Range` request when a partial file exists and the server answers `206`. The bytes go to a
//! temporary file beside the destination, are checked against the declared hash, and only then
//! renamed into place, so a failed or wrong download never leaves anything at the destination.
//!
//! Mirrors are configuration, never hosts written in the repository: whoever registers the
//! builtin fills [`Mirrors`] at run time (the `debian` and `debian-security` mirrors come from
//! the machine's apt sources, read by the `buildit-debian` crate).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use buildit_store::derivation::{FixedOutput, HashAlgo, HashMode};
use buildit_store::path::base32_encode;

/// The command that refreshes the Debian lock, named in the "left the pool" error.
pub const DEBIAN_REFRESH_HINT: &str =
    "refresh the lock: `buildit debian lock --output stdlib/debian/bookworm.lock` (re-resolves the packages named in the lock's header against the current apt indexes; run `apt-get update` first)";

/// Errors of the fetchers. Each names the URL(s) involved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "unsupported URL '{0}' (buildit fetches http://, https://, file:// and mirror://NAME/...)"
    )]
    Scheme(String),
    #[error("unknown mirror '{name}' in '{url}' (configured mirrors: {known})")]
    UnknownMirror {
        name: String,
        url: String,
        known: String,
    },
    #[error("mirror '{name}' has no URLs configured ({hint})")]
    EmptyMirror { name: String, hint: String },
    #[error("no URL to fetch (the derivation sets neither `url` nor `urls`)")]
    NoUrls,
    #[error("builtin:fetchurl needs a fixed output: set `outputHash` (with `outputHashAlgo`, or in SRI form); without one it could put any host file or local service's answer into the store, so {urls} was not fetched")]
    NotFixedOutput { urls: String },
    #[error("invalid fixed-output attributes: {0}")]
    BadHash(String),
    #[error(
        "hash mismatch in fixed-output download of {url}\n  expected: {expected}\n       got: {actual}\n\
         If the new content is what you want (check where it comes from), update the hash in the \
         recipe to {actual}; nothing was registered."
    )]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("the pinned Debian file {path} has left the pool (HTTP 404 from {tried}); Debian removes superseded versions: {hint}")]
    LeftPool {
        path: String,
        tried: String,
        /// How to refresh the lock in use ([`DEBIAN_REFRESH_HINT`] for the embedded one).
        hint: String,
    },
    #[error("fetching {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("all URLs failed:\n{0}")]
    AllFailed(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> FetchError + 'p {
    move |source| FetchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Mirror names and their base URLs (`mirror://NAME/path` → `BASE/path`, tried in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirrors {
    map: BTreeMap<String, Vec<String>>,
}

impl Mirrors {
    /// No mirrors.
    pub fn new() -> Mirrors {
        Mirrors::default()
    }

    /// Set (replace) the base URLs of mirror `name`.
    pub fn insert(&mut self, name: &str, bases: Vec<String>) {
        self.map.insert(name.to_string(), bases);
    }

    /// The base URLs of mirror `name`.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.map.get(name).map(Vec::as_slice)
    }

    /// The concrete URLs for `url`: itself, or one per mirror base for `mirror://`.
    pub fn resolve(&self, url: &str) -> Result<Vec<String>, FetchError> {
        let Some(rest) = url.strip_prefix("mirror://") else {
            return Ok(vec![url.to_string()]);
        };
        let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
        let bases = self
            .map
            .get(name)
            .ok_or_else(|| FetchError::UnknownMirror {
                name: name.to_string(),
                url: url.to_string(),
                known: if self.map.is_empty() {
                    "none".to_string()
                } else {
                    self.map.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
        if bases.is_empty() {
            let hint = if name.starts_with("debian") {
                "no Debian entry in the apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources); set mirrors.debian in .buildit-config.yaml"
            } else {
                "set it in .buildit-config.yaml under mirrors"
            };
            return Err(FetchError::EmptyMirror {
                name: name.to_string(),
                hint: hint.to_string(),
            });
        }
        Ok(bases
            .iter()
            .map(|b| format!("{}/{}", b.trim_end_matches('/'), path))
            .collect())
    }
}

/// How the user wrote a hash, so errors print the actual hash the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFormat {
    Hex,
    NixBase32,
    Sri,
}

impl HashFormat {
    /// Guess the format from the text: SRI has `algo-`, 64 characters are hex, 52 nix-base32.
    pub fn of(text: &str) -> HashFormat {
        if text.contains('-') {
            HashFormat::Sri
        } else if text.len() == 52 {
            HashFormat::NixBase32
        } else {
            HashFormat::Hex
        }
    }

    /// `digest` (of `algo`) in this format.
    pub fn render(self, algo: HashAlgo, digest: &[u8]) -> String {
        match self {
            HashFormat::Hex => hex::encode(digest),
            HashFormat::NixBase32 => base32_encode(digest),
            HashFormat::Sri => {
                use base64::Engine;
                format!(
                    "{}-{}",
                    algo.name(),
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            }
        }
    }
}

/// Progress of one download: bytes so far and the total when the server said it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchProgress {
    pub url: String,
    pub bytes: u64,
    pub total: Option<u64>,
    /// 1 for the first attempt at this URL, 2 for the first retry, ...
    pub attempt: u32,
}

/// What to fetch and how.
#[derive(Clone, Debug)]
pub struct FetchRequest<'a> {
    /// Tried in order; `mirror://` URLs expand to their mirrors.
    pub urls: Vec<String>,
    /// The declared hash, checked before the file is put at its destination.
    pub expected: Option<FixedOutput>,
    /// How the user wrote the expected hash (used for the mismatch message).
    pub format: HashFormat,
    /// Make the file executable (0755 instead of 0644).
    pub executable: bool,
    pub mirrors: &'a Mirrors,
    /// Retries per URL after the first attempt.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Connect and read timeout for HTTP.
    pub timeout: Duration,
}

impl<'a> FetchRequest<'a> {
    /// A request with the defaults: no hash, 3 retries, 1 s first backoff, 60 s timeout.
    pub fn new(urls: Vec<String>, mirrors: &'a Mirrors) -> FetchRequest<'a> {
        FetchRequest {
            urls,
            expected: None,
            format: HashFormat::Sri,
            executable: false,
            mirrors,
            retries: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        }
    }
}

/// How one attempt failed.
enum Failure {
    /// Worth retrying (network errors, 5xx, truncated bodies).
    Transient(String),
    /// Retrying this URL cannot help (404, 403, bad file path); try the next URL.
    Permanent { status: Option<u16>, reason: String },
}

/// Fetch `req` to `dest`: try each URL (retrying transient failures with exponential backoff,
/// resuming partial HTTP downloads), check the hash, then rename into place. On any error
/// nothing exists at `dest`.
pub fn fetch_url(
    req: &FetchRequest,
    dest: &Path,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<(), FetchError> {
    if req.urls.is_empty() {
        return Err(FetchError::NoUrls);
    }
    let part = partial_path(dest);
    let mut client: Option<reqwest::blocking::Client> = None;
    let mut failures: Vec<String> = Vec::new();
    let mut debian_404s: Vec<(String, String)> = Vec::new();
    for written in &req.urls {
        let candidates = req.mirrors.resolve(written)?;
        let mut all_404 = true;
        for url in &candidates {
            match fetch_one(req, url, &part, &mut client, progress) {
                Ok(()) => {
                    return finish(req, url, &part, dest);
                }
                Err(Failure::Permanent { status, reason }) => {
                    all_404 &= status == Some(404);
                    failures.push(format!("  {url}: {reason}"));
                }
                Err(Failure::Transient(reason)) => {
                    all_404 = false;
                    failures.push(format!("  {url}: {reason} (after {} retries)", req.retries));
                }
            }
            let _ = fs::remove_file(&part);
        }
        if all_404 {
            if let Some(path) = written
                .strip_prefix("mirror://debian/")
                .or_else(|| written.strip_prefix("mirror://debian-security/"))
                .filter(|p| p.starts_with("pool/"))
            {
                debian_404s.push((path.to_string(), candidates.join(", ")));
            }
        }
    }
    if debian_404s.len() == req.urls.len() {
        if let Some((path, tried)) = debian_404s.into_iter().next() {
            return Err(FetchError::LeftPool {
                path,
                tried,
                hint: DEBIAN_REFRESH_HINT.to_string(),
            });
        }
    }
    if failures.len() == 1 {
        let (url, reason) = failures[0]
            .trim_start()
            .split_once(": ")
            .unwrap_or(("", failures[0].as_str()));
        return Err(FetchError::Download {
            url: url.to_string(),
            reason: reason.to_string(),
        });
    }
    Err(FetchError::AllFailed(failures.join("\n")))
}

/// The temporary file a download of `dest` goes to (kept across retries for resuming).
fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".to_string());
    dest.with_file_name(format!(".{name}.part"))
}

/// Check the hash of the downloaded `part`, set its mode, and rename it to `dest`.
fn finish(req: &FetchRequest, url: &str, part: &Path, dest: &Path) -> Result<(), FetchError> {
    let mode = if req.executable { 0o755 } else { 0o644 };
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(part, fs::Permissions::from_mode(mode))
            .map_err(io_err("setting the mode of", part))?;
    }
    if let Some(exp) = &req.expected {
        let actual = match exp.mode {
            HashMode::Flat => hash_file(exp.algo, part)?,
            HashMode::Recursive => hash_archive(exp.algo, part)?,
        };
        if actual != exp.hash {
            let _ = fs::remove_file(part);
            return Err(FetchError::HashMismatch {
                url: url.to_string(),
                expected: req.format.render(exp.algo, &exp.hash),
                actual: req.format.render(exp.algo, &actual),
            });
        }
    }
    fs::rename(part, dest).map_err(io_err("moving the download to", dest))
}

/// The digest of the canonical archive of `path` (a recursive fixed output: for a single
/// file, its bytes and whether it is executable); the store's own fixed-output hash.
pub fn hash_archive(algo: HashAlgo, path: &Path) -> Result<Vec<u8>, FetchError> {
    buildit_store::archive::fixed_output_hash(path, HashMode::Recursive, algo).map_err(|e| {
        FetchError::Io {
            what: "archiving",
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        }
    })
}

/// The digest of a file's bytes.
pub fn hash_file(algo: HashAlgo, path: &Path) -> Result<Vec<u8>, FetchError> {
    let mut f = File::open(path).map_err(io_err("reading", path))?;
    let mut buf = vec![0u8; 1 << 16];
    match algo {
        HashAlgo::Sha256 => {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            loop {
                let n = f.read(&mut buf).map_err(io_err("reading", path))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finalize().to_vec())
        }
        HashAlgo::Blake3 => {
            let mut h = blake3::Hasher::new();
            loop {
                let n = f.read(&mut buf).map_err(io_err("reading", path))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finalize().as_bytes().to_vec())
        }
    }
}

/// Fetch one concrete URL into `part`, with retries.
fn fetch_one(
    req: &FetchRequest,
    url: &str,
    part: &Path,
    client: &mut Option<reqwest::blocking::Client>,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<(), Failure> {
    if let Some(path) = url.strip_prefix("file://") {
        return copy_file(url, &percent_decode(path), part, progress);
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Failure::Permanent {
            status: None,
            reason: FetchError::Scheme(url.to_string()).to_string(),
        });
    }
    if client.is_none() {
        let c = reqwest::blocking::Client::builder()
            .connect_timeout(req.timeout)
            .timeout(req.timeout)
            .user_agent(concat!("buildit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Permanent {
                status: None,
                reason: format!("cannot create an HTTP client: {e}"),
            })?;
        *client = Some(c);
    }
    let Some(c) = client.as_ref() else {
        return Err(Failure::Permanent {
            status: None,
            reason: "no HTTP client".to_string(),
        });
    };
    let mut delay = req.backoff;
    let mut attempt = 1;
    loop {
        match http_attempt(c, url, part, attempt, progress) {
            Ok(()) => return Ok(()),
            Err(Failure::Transient(_)) if attempt <= req.retries => {
                std::thread::sleep(delay);
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One HTTP GET, resuming from `part`'s length when it exists.
fn http_attempt(
    c: &reqwest::blocking::Client,
    url: &str,
    part: &Path,
    attempt: u32,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<(), Failure> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut rq = c.get(url);
    if have > 0 {
        rq = rq.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = rq.send().map_err(|e| Failure::Transient(describe(&e)))?;
    let status = resp.status();
    let (append, start) = if status.as_u16() == 206 && have > 0 {
        let ok = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok())
            == Some(have);
        if !ok {
            let _ = fs::remove_file(part);
            return Err(Failure::Transient(
                "the server resumed at the wrong offset".to_string(),
            ));
        }
        (true, have)
    } else if status.as_u16() == 416 && have > 0 {
        // The partial file is not a prefix the server can continue; start over.
        let _ = fs::remove_file(part);
        return Err(Failure::Transient(
            "the server refused to resume (416); restarting".to_string(),
        ));
    } else if status.is_success() {
        (false, 0)
    } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        return Err(Failure::Transient(format!("HTTP {status}")));
    } else {
        return Err(Failure::Permanent {
            status: Some(status.as_u16()),
            reason: format!("HTTP {status}"),
        });
    };
    let total = resp.content_length().map(|l| l + start);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(|e| Failure::Permanent {
            status: None,
            reason: format!("cannot write {}: {e}", part.display()),
        })?;
    let mut bytes = start;
    progress(FetchProgress {
        url: url.to_string(),
        bytes,
        total,
        attempt,
    });
    let mut resp = resp;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                return Err(Failure::Transient(format!(
                    "connection broken after {bytes} bytes: {e}"
                )));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| Failure::Permanent {
            status: None,
            reason: format!("cannot write {}: {e}", part.display()),
        })?;
        bytes += n as u64;
        progress(FetchProgress {
            url: url.to_string(),
            bytes,
            total,
            attempt,
        });
    }
    file.flush().map_err(|e| Failure::Permanent {
        status: None,
        reason: format!("cannot write {}: {e}", part.display()),
    })?;
    if let Some(t) = total {
        if bytes < t {
            return Err(Failure::Transient(format!(
                "the connection closed after {bytes} of {t} bytes"
            )));
        }
    }
    Ok(())
}

/// An error message with its causes (reqwest's Display hides them).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// `file://` download: a copy with progress.
fn copy_file(
    url: &str,
    src: &str,
    part: &Path,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<(), Failure> {
    let perm = |reason: String| Failure::Permanent {
        status: None,
        reason,
    };
    let mut from = File::open(src).map_err(|e| perm(format!("cannot open {src}: {e}")))?;
    let total = from.metadata().ok().map(|m| m.len());
    let mut to =
        File::create(part).map_err(|e| perm(format!("cannot write {}: {e}", part.display())))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = from
            .read(&mut buf)
            .map_err(|e| perm(format!("cannot read {src}: {e}")))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])
            .map_err(|e| perm(format!("cannot write {}: {e}", part.display())))?;
        bytes += n as u64;
        progress(FetchProgress {
            url: url.to_string(),
            bytes,
            total,
            attempt: 1,
        });
    }
    Ok(())
}

/// Decode `%XX` escapes of a `file://` URL path (invalid escapes stay as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scheduler's entry point for `builder = "builtin:fetchurl"`: reads `url` / `urls`
/// (space separated), `executable` (`"1"`/`"true"`), `outputHash`, `outputHashAlgo` and
/// `outputHashMode` from the derivation's env and fetches to `out`. Without `outputHash` it
/// refuses ([`FetchError::NotFixedOutput`]) before touching any URL: network and `file://`
/// access is for fixed-output derivations only (the scheduler also refuses to run
/// `builtin:fetchurl` for a derivation without a fixed output).
pub fn builtin_fetchurl(
    env: &BTreeMap<String, String>,
    out: &Path,
    mirrors: &Mirrors,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<(), FetchError> {
    let mut urls: Vec<String> = Vec::new();
    for key in ["url", "urls"] {
        if let Some(v) = env.get(key) {
            urls.extend(v.split_whitespace().map(str::to_string));
        }
    }
    if urls.is_empty() {
        return Err(FetchError::NoUrls);
    }
    // The declared hash is what makes a download (and a file:// read of the host) safe: the
    // result can only be content the recipe already names. Nothing is fetched without one.
    let Some(hash) = env.get("outputHash").filter(|h| !h.is_empty()) else {
        return Err(FetchError::NotFixedOutput {
            urls: urls.join(" "),
        });
    };
    let mode = env
        .get("outputHashMode")
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or("flat");
    let fixed = FixedOutput::parse(hash, env.get("outputHashAlgo").map(String::as_str), mode)
        .map_err(FetchError::BadHash)?;
    let mut req = FetchRequest::new(urls, mirrors);
    req.executable = matches!(
        env.get("executable").map(String::as_str),
        Some("1") | Some("true")
    );
    req.format = HashFormat::of(hash);
    req.expected = Some(fixed);
    fetch_url(&req, out, progress)
}

#[cfg(test)]
mod tests;
