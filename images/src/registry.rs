//! A small client of the OCI distribution API, shared by `buildit push` ([`crate::push`]) and
//! the `oci://` repositories of `buildit-share`: one [`Client`] per registry repository.
//!
//! It speaks HTTPS (with an optional extra CA), or plain HTTP to loopback registries only when
//! asked. Authentication follows the registry's `WWW-Authenticate` challenge: `Basic` with the
//! given credentials, or `Bearer` (a token fetched from the challenge's realm, with the
//! credentials if any). The token is shared by every thread using the client: all methods take
//! `&self`, so one client serves parallel lookups. Every wait (connecting, the answer's
//! headers, each read of a body) is bounded by the client's timeout; a timeout is a
//! [`RegistryError::Timeout`] so callers can tell a hanging registry from a refusal.
//!
//! Every answer may come from a hostile server: bodies read here are bounded, a `Location`
//! that does not parse is an error, and nothing is followed beyond reqwest's redirect limit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::ImageError;

/// The media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI empty descriptor's media type (its content is `{}`).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The content of the OCI empty descriptor.
pub const EMPTY_JSON: &[u8] = b"{}";
/// The sha256 digest of [`EMPTY_JSON`].
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// How many times a read answered with a transient server error is sent again.
const READ_RETRIES: usize = 4;

/// The largest answer read whole into memory (manifests, token and tag-list answers).
const SMALL_BODY_LIMIT: u64 = 4 << 20;

/// An error of a registry request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry did not answer (connect, headers, or the next bytes of a body) in time.
    #[error("{0}")]
    Timeout(String),
    /// A refusal, an unexpected answer, or a connection failure.
    #[error("{0}")]
    Protocol(String),
    /// Reading a local file to upload.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> ImageError {
        match e {
            RegistryError::Io { context, source } => ImageError::Io { context, source },
            other => ImageError::Registry(other.to_string()),
        }
    }
}

fn proto(m: impl Into<String>) -> RegistryError {
    RegistryError::Protocol(m.into())
}

/// A reqwest error as a [`RegistryError`], `what` naming the request.
fn http_err(what: &str, e: reqwest::Error) -> RegistryError {
    if e.is_timeout() {
        RegistryError::Timeout(format!("{what}: {e}"))
    } else {
        RegistryError::Protocol(format!("{what}: {e}"))
    }
}

/// An error reading a response body (reqwest reports its read timeouts as `TimedOut`).
pub fn body_err(what: &str, e: std::io::Error) -> RegistryError {
    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        RegistryError::Timeout(format!("{what}: {e}"))
    } else {
        RegistryError::Protocol(format!("{what}: {e}"))
    }
}

/// How a [`Client`] connects.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Plain HTTP (allowed for loopback registries only).
    pub insecure: bool,
    /// User name and password for basic auth or the token endpoint.
    pub credentials: Option<(String, String)>,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Bound on each wait for the registry (the answer's headers, each read of a body);
    /// `None`: no bound after connecting.
    pub timeout: Option<Duration>,
    /// An extra PEM CA certificate file trusted for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// More token scopes asked for with `Bearer` (e.g. `repository:other:pull` for mounts).
    pub extra_scopes: Vec<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            credentials: None,
            connect_timeout: Duration::from_secs(15),
            timeout: None,
            ca_file: None,
            extra_scopes: Vec::new(),
        }
    }
}

/// Whether a registry host is loopback (the only place plain HTTP is allowed).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Whether `repo` is a valid repository name: `/`-separated components of lowercase letters,
/// digits and `._-`.
pub fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// Whether `tag` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// Whether `d` is a `sha256:` digest of 64 lowercase hex digits.
pub fn valid_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A client of one repository of one registry.
pub struct Client {
    http: HttpClient,
    base: Url,
    registry: String,
    repo: String,
    auth: Mutex<Option<String>>,
    creds: Option<(String, String)>,
    extra_scopes: Vec<String>,
}

impl Client {
    /// A client of `registry` (`HOST[:PORT]`) and its repository `repo`. Nothing is sent yet.
    pub fn new(registry: &str, repo: &str, opts: &ClientOptions) -> Result<Client, RegistryError> {
        let scheme = if opts.insecure {
            if !is_loopback(registry) {
                return Err(proto(format!(
                    "--insecure allows plain HTTP to loopback registries only, not {registry}"
                )));
            }
            "http"
        } else {
            "https"
        };
        if !valid_repo(repo) {
            return Err(proto(format!(
                "`{repo}` is not a repository name (lowercase components of letters, digits, `._-`)"
            )));
        }
        let base = Url::parse(&format!("{scheme}://{registry}/"))
            .map_err(|e| proto(format!("bad registry {registry}: {e}")))?;
        if base.path() != "/" || base.query().is_some() || !base.username().is_empty() {
            return Err(proto(format!("bad registry {registry}: not HOST[:PORT]")));
        }
        let mut b = HttpClient::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout);
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|source| RegistryError::Io {
                context: format!("reading the CA file {}", ca.display()),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| proto(format!("the CA file {}: {e}", ca.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| proto(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            registry: registry.to_string(),
            repo: repo.to_string(),
            auth: Mutex::new(None),
            creds: opts.credentials.clone(),
            extra_scopes: opts.extra_scopes.clone(),
        })
    }

    /// The registry, `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository name.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The base URL (`https://HOST[:PORT]/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `path` (absolute, e.g. `/v2/`) on the registry.
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base
            .join(path)
            .map_err(|e| proto(format!("bad URL {path}: {e}")))
    }

    fn current_auth(&self) -> Option<String> {
        self.auth.lock().ok().and_then(|a| a.clone())
    }

    fn set_auth(&self, value: String) {
        if let Ok(mut a) = self.auth.lock() {
            *a = Some(value);
        }
    }

    /// Send a request (rebuilt by `mk`), answering one authentication challenge.
    pub fn send(
        &self,
        mk: &dyn Fn(&HttpClient) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut tried_auth = false;
        loop {
            let mut rb = mk(&self.http);
            if let Some(a) = self.current_auth() {
                rb = rb.header("Authorization", a);
            }
            let resp = rb.send().map_err(|e| http_err(self.base.as_str(), e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !tried_auth {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        proto("401 Unauthorized without a WWW-Authenticate challenge")
                    })?;
                self.authenticate(&challenge)?;
                tried_auth = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// [`Client::send`] for a read (`GET`, `HEAD`), sent again after a short pause when the
    /// registry answers 500, 502, 503 or 504: registries have transient failures (the
    /// filesystem storage of docker-registry answers 500 to a read of a tag being written).
    pub fn send_read(
        &self,
        mk: &dyn Fn(&HttpClient) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut pause = Duration::from_millis(50);
        for _ in 0..READ_RETRIES {
            let r = self.send(mk)?;
            let transient = matches!(
                r.status(),
                StatusCode::INTERNAL_SERVER_ERROR
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            );
            if !transient {
                return Ok(r);
            }
            std::thread::sleep(pause);
            pause *= 2;
        }
        self.send(mk)
    }

    fn authenticate(&self, challenge: &str) -> Result<(), RegistryError> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let (u, p) = self.creds.clone().ok_or_else(|| {
                    proto("the registry wants a user name and password (--user, BUILDIT_REGISTRY_PASSWORD)")
                })?;
                let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                self.set_auth(format!("Basic {enc}"));
                Ok(())
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| proto("a Bearer challenge without realm"))?;
                let mut url = Url::parse(realm)
                    .map_err(|e| proto(format!("bad token realm {realm}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = params.get("service") {
                        q.append_pair("service", s);
                    }
                    let mut scopes: BTreeSet<String> = BTreeSet::new();
                    scopes.insert(format!("repository:{}:pull,push", self.repo));
                    if let Some(s) = params.get("scope") {
                        scopes.insert(s.clone());
                    }
                    for s in &self.extra_scopes {
                        scopes.insert(s.clone());
                    }
                    for s in scopes {
                        q.append_pair("scope", &s);
                    }
                }
                let mut rb = self.http.get(url.clone());
                if let Some((u, p)) = &self.creds {
                    rb = rb.basic_auth(u, Some(p));
                }
                let what = format!("token request to {url}");
                let resp = rb.send().map_err(|e| http_err(&what, e))?;
                if !resp.status().is_success() {
                    return Err(proto(format!(
                        "the token service {realm} answered {}",
                        resp.status()
                    )));
                }
                let body = read_bounded(resp, SMALL_BODY_LIMIT, "token response")?
                    .ok_or_else(|| proto("the token response is too large"))?;
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| proto(format!("token response is not JSON: {e}")))?;
                let tok = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| proto("the token response has no token"))?;
                self.set_auth(format!("Bearer {tok}"));
                Ok(())
            }
            other => Err(proto(format!(
                "unsupported authentication scheme `{other}`"
            ))),
        }
    }

    /// `GET /v2/`: the registry speaks the API (and an early authentication challenge).
    pub fn check_api(&self) -> Result<(), RegistryError> {
        let v2 = self.url("/v2/")?;
        let r = self.send(&|c| c.get(v2.clone()))?;
        if !r.status().is_success() {
            return Err(proto(format!("{v2}: {}", r.status())));
        }
        Ok(())
    }

    /// Whether the repository has the blob `digest`.
    pub fn head_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repo))?;
        let r = self.send_read(&|c| c.head(url.clone()))?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(proto(format!("HEAD {url}: {s}"))),
        }
    }

    /// The blob `digest` as a streaming response, `None` when the repository lacks it. The
    /// caller bounds and verifies what it reads.
    pub fn get_blob(&self, digest: &str) -> Result<Option<Response>, RegistryError> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repo))?;
        let r = self.send_read(&|c| c.get(url.clone()))?;
        match r.status() {
            s if s.is_success() => Ok(Some(r)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(proto(format!("GET {url}: {s}"))),
        }
    }

    fn location(&self, r: &Response, what: &str) -> Result<Url, RegistryError> {
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| proto(format!("{what}: no Location header")))?;
        self.base
            .join(loc)
            .map_err(|e| proto(format!("{what}: bad Location {loc}: {e}")))
    }

    /// Try a cross-repository mount; `Ok(None)` when mounted, `Ok(Some(upload url))` when the
    /// registry opened an upload instead, `Err` when neither.
    pub fn mount(&self, digest: &str, from: &str) -> Result<Option<Url>, RegistryError> {
        let mut url = self.url(&format!("/v2/{}/blobs/uploads/", self.repo))?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let r = self.send(&|c| c.post(url.clone()).header("Content-Length", "0"))?;
        match r.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&r, "mount")?)),
            s => Err(proto(format!("mount of {digest} from {from}: {s}"))),
        }
    }

    /// Open an upload session; its URL.
    pub fn start_upload(&self) -> Result<Url, RegistryError> {
        let url = self.url(&format!("/v2/{}/blobs/uploads/", self.repo))?;
        let r = self.send(&|c| c.post(url.clone()).header("Content-Length", "0"))?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(proto(format!(
                "starting an upload at {url}: {}",
                r.status()
            )));
        }
        self.location(&r, "starting an upload")
    }

    /// Upload the `size` bytes of `src` as the blob `digest` to the session at `at`, in
    /// `PATCH` chunks of `chunk` bytes, then close it with `PUT ?digest=` (the registry checks
    /// the digest). `what` names the source in errors.
    pub fn upload(
        &self,
        mut at: Url,
        src: &mut dyn Read,
        digest: &str,
        size: u64,
        chunk: usize,
        what: &str,
    ) -> Result<(), RegistryError> {
        let mut offset: u64 = 0;
        let mut buf = vec![0u8; chunk.max(1)];
        loop {
            let mut n = 0;
            while n < buf.len() {
                let k = src
                    .read(&mut buf[n..])
                    .map_err(|source| RegistryError::Io {
                        context: format!("reading {what}"),
                        source,
                    })?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            let range = format!("{}-{}", offset, offset + n as u64 - 1);
            let u = at.clone();
            let r = self.send(&|c| {
                c.request(Method::PATCH, u.clone())
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", range.clone())
                    .header("Content-Length", n.to_string())
                    .body(data.to_vec())
            })?;
            if r.status() != StatusCode::ACCEPTED {
                return Err(proto(format!(
                    "uploading {digest} (bytes {range}): {}",
                    r.status()
                )));
            }
            at = self.location(&r, "chunk upload")?;
            offset += n as u64;
        }
        if offset != size {
            return Err(proto(format!(
                "{what} is {offset} bytes, the manifest says {size}"
            )));
        }
        at.query_pairs_mut().append_pair("digest", digest);
        let r = self.send(&|c| c.put(at.clone()).header("Content-Length", "0"))?;
        if r.status() != StatusCode::CREATED {
            return Err(proto(format!(
                "finishing the upload of {digest}: {}",
                r.status()
            )));
        }
        Ok(())
    }

    /// `PUT` a manifest under `reference` (a tag or digest), checking the digest the registry
    /// answers with against `digest`.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(), RegistryError> {
        let murl = self.url(&format!("/v2/{}/manifests/{reference}", self.repo))?;
        let r = self.send(&|c| {
            c.put(murl.clone())
                .header("Content-Type", media_type.to_string())
                .body(bytes.to_vec())
        })?;
        if r.status() != StatusCode::CREATED {
            let st = r.status();
            let body = read_bounded(r, 4096, "error body")
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(proto(format!("PUT {murl}: {st} {body}")));
        }
        if let Some(d) = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if d != digest {
                return Err(proto(format!(
                    "the registry stored the manifest as {d}, expected {digest}"
                )));
            }
        }
        Ok(())
    }

    /// Whether the manifest `reference` exists (`HEAD`, no body).
    pub fn head_manifest(&self, reference: &str, accept: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", self.repo))?;
        let r = self.send_read(&|c| c.head(url.clone()).header("Accept", accept.to_string()))?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(proto(format!("HEAD {url}: {s}"))),
        }
    }

    /// The manifest `reference` (at most `limit` bytes), `None` when the repository lacks it.
    pub fn get_manifest(
        &self,
        reference: &str,
        accept: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", self.repo))?;
        let r = self.send_read(&|c| c.get(url.clone()).header("Accept", accept.to_string()))?;
        match r.status() {
            s if s.is_success() => {
                let what = format!("GET {url}");
                read_bounded(r, limit, &what)?
                    .map(Some)
                    .ok_or_else(|| proto(format!("{what}: a manifest larger than {limit} bytes")))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(proto(format!("GET {url}: {s}"))),
        }
    }

    /// The repository's tags (the tags list API, following `Link` pages), at most `max` of
    /// them; an absent repository has none.
    pub fn tags(&self, max: usize) -> Result<Vec<String>, RegistryError> {
        let mut out: Vec<String> = Vec::new();
        let mut next = Some(self.url(&format!("/v2/{}/tags/list?n=1000", self.repo))?);
        while let Some(url) = next.take() {
            let r = self.send_read(&|c| c.get(url.clone()))?;
            match r.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => return Ok(out),
                s => return Err(proto(format!("GET {url}: {s}"))),
            }
            next = match r.headers().get("link").and_then(|v| v.to_str().ok()) {
                Some(link) => Some(self.link_next(link, &url)?),
                None => None,
            };
            let what = format!("GET {url}");
            let body = read_bounded(r, SMALL_BODY_LIMIT, &what)?.ok_or_else(|| {
                proto(format!(
                    "{what}: a tag list larger than {SMALL_BODY_LIMIT} bytes"
                ))
            })?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| proto(format!("{what}: not JSON: {e}")))?;
            let page: Vec<String> = match v.get("tags") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| proto(format!("{what}: a tag that is not a string")))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(proto(format!("{what}: `tags` is not a list"))),
            };
            if page.is_empty() {
                break;
            }
            out.extend(page);
            if out.len() > max {
                return Err(proto(format!("{}: more than {max} tags", self.repo)));
            }
        }
        Ok(out)
    }

    /// The URL of a `Link: <URL>; rel="next"` header, which must stay on this registry.
    fn link_next(&self, link: &str, current: &Url) -> Result<Url, RegistryError> {
        let target = link
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(u, _)| u)
            .ok_or_else(|| proto(format!("a bad Link header `{link}`")))?;
        let u = current
            .join(target)
            .map_err(|e| proto(format!("a bad Link header `{link}`: {e}")))?;
        if u.origin() != self.base.origin() {
            return Err(proto(format!(
                "a Link header leaving the registry: `{link}`"
            )));
        }
        Ok(u)
    }
}

/// Read the whole body of `r` when it is at most `limit` bytes (`None` when larger).
pub fn read_bounded(r: Response, limit: u64, what: &str) -> Result<Option<Vec<u8>>, RegistryError> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| body_err(what, e))?;
    if buf.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Parse `Scheme k="v", k2=v2`.
pub fn parse_challenge(s: &str) -> (String, BTreeMap<String, String>) {
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("registry.example:443"));
    }

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn names() {
        assert!(valid_tag("abc_1.2-x"));
        assert!(valid_tag("_x"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag(""));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag("a/b"));
        assert!(valid_repo("team/app"));
        assert!(!valid_repo("Team/app"));
        assert!(!valid_repo("team//app"));
        assert!(valid_sha256_digest(EMPTY_DIGEST));
        assert!(!valid_sha256_digest("sha256:ABC"));
    }

    #[test]
    fn empty_digest_is_the_digest_of_empty_json() {
        use sha2::Digest;
        let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(EMPTY_JSON)));
        assert_eq!(d, EMPTY_DIGEST);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let opts = ClientOptions {
            insecure: true,
            ..ClientOptions::default()
        };
        assert!(Client::new("10.1.2.3:5000", "a", &opts).is_err());
        assert!(Client::new("127.0.0.1:5000", "a", &opts).is_ok());
        assert!(Client::new("127.0.0.1:5000", "A", &opts).is_err());
        assert!(Client::new("127.0.0.1:5000/x", "a", &opts).is_err());
    }
}
