//! The gRPC side: one connection to an endpoint (`grpc://HOST:PORT`, `grpcs://` with TLS),
//! its capabilities, the CAS (missing blobs, batch and ByteStream transfers), the
//! ActionCache and Execute with its operation stream. Every request carries the instance
//! name and the configured headers (authorisation); every blob read is checked against its
//! digest before it is used.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    action_cache_client::ActionCacheClient, batch_update_blobs_request,
    capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient, digest_function,
    execution_client::ExecutionClient, ActionResult, BatchReadBlobsRequest,
    BatchUpdateBlobsRequest, Digest, ExecuteRequest, ExecuteResponse, FindMissingBlobsRequest,
    GetActionResultRequest, GetCapabilitiesRequest, WaitExecutionRequest,
};
use bazel_remote_apis::google::bytestream::{
    byte_stream_client::ByteStreamClient, ReadRequest, WriteRequest,
};
use bazel_remote_apis::google::longrunning::{operation, Operation};
use futures_util::StreamExt;
use prost::Message;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::digest::{show, DigestFn, Hasher};
use crate::error::RemoteError;

/// Largest gRPC message accepted from the endpoint (a Tree of a big output, a batch read).
const MAX_MESSAGE: usize = 64 << 20;
/// Batches stay below this many bytes even when the server allows more (tonic's default
/// limit on the server's side of most engines is 4 MiB per message).
const MAX_BATCH: usize = 3 << 20;
/// Pieces of a ByteStream write.
const CHUNK: usize = 1 << 20;

/// How to reach an endpoint.
#[derive(Clone, Debug, Default)]
pub struct EndpointConfig {
    /// `grpc://HOST:PORT` or `grpcs://HOST:PORT`.
    pub url: String,
    /// The REAPI instance name (empty: the default instance).
    pub instance: String,
    /// Headers sent with every request (`authorization: Bearer ...`).
    pub headers: Vec<(String, String)>,
    /// A PEM file of certificate authorities trusted for `grpcs://` (besides the system's).
    pub ca_file: Option<std::path::PathBuf>,
}

/// A connected endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    channel: Channel,
    instance: String,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    pub url: String,
    pub digest: DigestFn,
    batch_limit: usize,
}

fn bad_url(url: &str, why: &str) -> RemoteError {
    RemoteError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    }
}

/// Check an endpoint URL and give the URI tonic connects to and whether it is TLS.
pub fn parse_url(url: &str) -> Result<(String, bool), RemoteError> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("grpc://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("grpcs://") {
        (r, true)
    } else {
        return Err(bad_url(url, "it must start with grpc:// or grpcs://"));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(bad_url(
            url,
            "give HOST:PORT after the scheme, nothing else",
        ));
    }
    let port_ok = host
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|n| n > 0));
    if !port_ok {
        return Err(bad_url(url, "give HOST:PORT (the port is required)"));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok((format!("{scheme}://{host}"), tls))
}

impl Endpoint {
    /// Connect, and choose the digest function from the server's capabilities.
    pub async fn connect(cfg: &EndpointConfig) -> Result<Endpoint, RemoteError> {
        let (uri, tls) = parse_url(&cfg.url)?;
        let mut ep = Channel::from_shared(uri)
            .map_err(|e| bad_url(&cfg.url, &e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if tls {
            let mut t = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca).map_err(|e| RemoteError::Io {
                    what: format!("reading {}", ca.display()),
                    source: e,
                })?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep.tls_config(t).map_err(|e| RemoteError::Connect {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
        }
        let channel = ep.connect().await.map_err(|e| match tls_failure(&e) {
            Some(message) => RemoteError::Tls {
                url: cfg.url.clone(),
                message,
            },
            None => RemoteError::Connect {
                url: cfg.url.clone(),
                message: source_chain(&e),
            },
        })?;
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| bad_url(&cfg.url, &format!("`{k}` is not a header name")))?;
            let value = AsciiMetadataValue::try_from(v.as_str()).map_err(|_| {
                bad_url(&cfg.url, &format!("the value of header `{k}` is not ASCII"))
            })?;
            headers.push((key, value));
        }
        let mut e = Endpoint {
            channel,
            instance: cfg.instance.clone(),
            headers,
            url: cfg.url.clone(),
            digest: DigestFn::Sha256,
            batch_limit: MAX_BATCH,
        };
        let caps = CapabilitiesClient::new(e.channel.clone())
            .get_capabilities(e.req(GetCapabilitiesRequest {
                instance_name: e.instance.clone(),
            }))
            .await
            .map_err(|s| unavailable_or(&cfg.url, "asking the endpoint's capabilities", s))?
            .into_inner();
        let exec = caps.execution_capabilities.unwrap_or_default();
        if !exec.exec_enabled {
            return Err(RemoteError::NoExecution);
        }
        let cache = caps.cache_capabilities.unwrap_or_default();
        let fns = &cache.digest_functions;
        let b3 = digest_function::Value::Blake3 as i32;
        let sha = digest_function::Value::Sha256 as i32;
        e.digest = if fns.contains(&b3) {
            DigestFn::Blake3
        } else if fns.contains(&sha) || fns.is_empty() || exec.digest_function == sha {
            DigestFn::Sha256
        } else {
            return Err(RemoteError::NoDigestFunction);
        };
        if cache.max_batch_total_size_bytes > 0 {
            let server = usize::try_from(cache.max_batch_total_size_bytes).unwrap_or(MAX_BATCH);
            // room for the message's own fields
            e.batch_limit = server.saturating_sub(64 << 10).clamp(64 << 10, MAX_BATCH);
        }
        Ok(e)
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        for (k, v) in &self.headers {
            r.metadata_mut().insert(k.clone(), v.clone());
        }
        r
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn resource(&self, kind: &str, d: &Digest) -> String {
        let inst = if self.instance.is_empty() {
            String::new()
        } else {
            format!("{}/", self.instance)
        };
        format!(
            "{inst}{kind}blobs/{}{}/{}",
            self.digest.resource_prefix(),
            d.hash,
            d.size_bytes
        )
    }

    /// The ActionCache's result for an action, if it has one.
    pub async fn action_result(
        &self,
        action: &Digest,
    ) -> Result<Option<ActionResult>, RemoteError> {
        let r = ActionCacheClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .get_action_result(self.req(GetActionResultRequest {
                instance_name: self.instance.clone(),
                action_digest: Some(action.clone()),
                inline_stdout: true,
                inline_stderr: true,
                inline_output_files: Vec::new(),
                digest_function: self.digest.proto(),
            }))
            .await;
        match r {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(RemoteError::rpc(
                "looking the action up in the ActionCache",
                s,
            )),
        }
    }

    /// Which of `digests` the CAS lacks.
    pub async fn find_missing(&self, digests: Vec<Digest>) -> Result<Vec<Digest>, RemoteError> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(4096) {
            let r = self
                .cas()
                .find_missing_blobs(self.req(FindMissingBlobsRequest {
                    instance_name: self.instance.clone(),
                    blob_digests: chunk.to_vec(),
                    digest_function: self.digest.proto(),
                }))
                .await
                .map_err(|s| RemoteError::rpc("asking the CAS for missing blobs", s))?;
            missing.extend(r.into_inner().missing_blob_digests);
        }
        Ok(missing)
    }

    /// Upload small blobs in batches (each under the batch limit).
    pub async fn batch_update(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<(), RemoteError> {
        let mut batch: Vec<batch_update_blobs_request::Request> = Vec::new();
        let mut size = 0usize;
        let mut batches = Vec::new();
        for (d, data) in blobs {
            if size + data.len() > self.batch_limit && !batch.is_empty() {
                batches.push(std::mem::take(&mut batch));
                size = 0;
            }
            size += data.len() + d.hash.len() + 16;
            batch.push(batch_update_blobs_request::Request {
                digest: Some(d),
                data,
                compressor: 0,
            });
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for requests in batches {
            let r = self
                .cas()
                .batch_update_blobs(self.req(BatchUpdateBlobsRequest {
                    instance_name: self.instance.clone(),
                    requests,
                    digest_function: self.digest.proto(),
                }))
                .await
                .map_err(|s| RemoteError::rpc("uploading blobs", s))?;
            for resp in r.into_inner().responses {
                if let Some(st) = resp.status.filter(|s| s.code != 0) {
                    return Err(RemoteError::Protocol(format!(
                        "the CAS refused blob {}: {} (code {})",
                        resp.digest.as_ref().map(show).unwrap_or_default(),
                        st.message,
                        st.code
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether a blob of this size goes through a batch (or through ByteStream).
    pub fn fits_batch(&self, size: i64) -> bool {
        usize::try_from(size).is_ok_and(|s| s <= self.batch_limit / 2)
    }

    /// Upload one file through ByteStream `Write`.
    pub async fn write_file(&self, d: &Digest, path: &Path) -> Result<(), RemoteError> {
        let file = std::fs::File::open(path).map_err(|e| RemoteError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        })?;
        self.write_stream(d, Box::new(file)).await
    }

    /// Upload one blob from `file` through ByteStream `Write`.
    pub async fn write_stream(
        &self,
        d: &Digest,
        file: Box<dyn Read + Send>,
    ) -> Result<(), RemoteError> {
        let name = self.resource(&format!("uploads/{}/", upload_id()), d);
        let total = d.size_bytes;
        let state = (file, 0i64, false, name);
        let stream =
            futures_util::stream::unfold(state, move |(mut f, off, done, name)| async move {
                if done {
                    return None;
                }
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        // a read error ends the stream short: the server refuses the size
                        Err(_) => break,
                    }
                }
                buf.truncate(n);
                let next = off + n as i64;
                let finish = next >= total || n == 0;
                let req = WriteRequest {
                    resource_name: if off == 0 {
                        name.clone()
                    } else {
                        String::new()
                    },
                    write_offset: off,
                    finish_write: finish,
                    data: buf,
                };
                Some((req, (f, next, finish, name)))
            });
        let r = ByteStreamClient::new(self.channel.clone())
            .write(self.req(stream))
            .await
            .map_err(|s| RemoteError::rpc("uploading a blob (ByteStream)", s))?
            .into_inner();
        if r.committed_size != total && r.committed_size != -1 {
            return Err(RemoteError::Protocol(format!(
                "the CAS committed {} of {} bytes of {}",
                r.committed_size,
                total,
                show(d)
            )));
        }
        Ok(())
    }

    /// Download small blobs in batches; each is checked against its digest.
    pub async fn batch_read(
        &self,
        digests: Vec<Digest>,
    ) -> Result<Vec<(Digest, Vec<u8>)>, RemoteError> {
        let mut out = Vec::with_capacity(digests.len());
        let mut batch: Vec<Digest> = Vec::new();
        let mut size = 0usize;
        let mut batches = Vec::new();
        for d in digests {
            let n = usize::try_from(d.size_bytes).unwrap_or(usize::MAX);
            if size.saturating_add(n) > self.batch_limit && !batch.is_empty() {
                batches.push(std::mem::take(&mut batch));
                size = 0;
            }
            size = size.saturating_add(n);
            batch.push(d);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for digests in batches {
            let r = self
                .cas()
                .batch_read_blobs(self.req(BatchReadBlobsRequest {
                    instance_name: self.instance.clone(),
                    digests,
                    acceptable_compressors: Vec::new(),
                    digest_function: self.digest.proto(),
                }))
                .await
                .map_err(|s| RemoteError::rpc("downloading blobs", s))?;
            for resp in r.into_inner().responses {
                let d = resp
                    .digest
                    .ok_or_else(|| RemoteError::Protocol("a batch read without digest".into()))?;
                if let Some(st) = resp.status.filter(|s| s.code != 0) {
                    return Err(RemoteError::Protocol(format!(
                        "the CAS could not give blob {}: {} (code {})",
                        show(&d),
                        st.message,
                        st.code
                    )));
                }
                self.check(&d, &resp.data, "batch read")?;
                out.push((d, resp.data));
            }
        }
        Ok(out)
    }

    /// One blob, whatever its size (batch or ByteStream), checked.
    pub async fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, RemoteError> {
        if self.fits_batch(d.size_bytes) {
            let mut v = self.batch_read(vec![d.clone()]).await?;
            return v
                .pop()
                .map(|(_, b)| b)
                .ok_or_else(|| RemoteError::Protocol(format!("blob {} not returned", show(d))));
        }
        let mut out = Vec::new();
        self.read_stream(d, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Stream a blob through ByteStream `Read` into `sink`, checking its digest at the end
    /// (the caller discards what it wrote when this fails).
    pub async fn read_stream(
        &self,
        d: &Digest,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<(), RemoteError> {
        let mut s = ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .read(self.req(ReadRequest {
                resource_name: self.resource("", d),
                read_offset: 0,
                read_limit: 0,
            }))
            .await
            .map_err(|s| RemoteError::rpc("downloading a blob (ByteStream)", s))?
            .into_inner();
        let mut h = Hasher::new(self.digest);
        let mut size = 0u64;
        while let Some(m) = s.next().await {
            let m = m.map_err(|s| RemoteError::rpc("downloading a blob (ByteStream)", s))?;
            h.update(&m.data);
            size += m.data.len() as u64;
            sink(&m.data).map_err(|e| RemoteError::Io {
                what: "writing a downloaded blob".into(),
                source: e,
            })?;
        }
        let got = h.finish(size);
        if got != *d {
            return Err(RemoteError::DigestMismatch {
                digest: show(d),
                what: format!("got {}", show(&got)),
            });
        }
        Ok(())
    }

    fn check(&self, d: &Digest, data: &[u8], what: &str) -> Result<(), RemoteError> {
        let got = self.digest.of(data);
        if got != *d {
            return Err(RemoteError::DigestMismatch {
                digest: show(d),
                what: format!("{what}: got {}", show(&got)),
            });
        }
        Ok(())
    }

    /// Execute an action and follow its operation to the end (reattaching with
    /// `WaitExecution` when the stream ends early).
    pub async fn execute(
        &self,
        action: &Digest,
        skip_cache: bool,
    ) -> Result<ExecuteResponse, RemoteError> {
        let mut client =
            ExecutionClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let mut stream = client
            .execute(self.req(ExecuteRequest {
                instance_name: self.instance.clone(),
                skip_cache_lookup: skip_cache,
                action_digest: Some(action.clone()),
                execution_policy: None,
                results_cache_policy: None,
                digest_function: self.digest.proto(),
                inline_stdout: true,
                inline_stderr: true,
                inline_output_files: Vec::new(),
            }))
            .await
            .map_err(|s| RemoteError::rpc("starting the execution", s))?
            .into_inner();
        let mut name = String::new();
        let mut reattached = 0;
        loop {
            match stream.next().await {
                Some(Ok(op)) => {
                    name.clone_from(&op.name);
                    if op.done {
                        return finished(op);
                    }
                }
                Some(Err(s)) => return Err(RemoteError::rpc("following the execution", s)),
                None => {
                    if name.is_empty() || reattached >= 3 {
                        return Err(RemoteError::rpc(
                            "following the execution",
                            tonic::Status::unavailable(
                                "the operation stream ended before the action finished",
                            ),
                        ));
                    }
                    reattached += 1;
                    stream = client
                        .wait_execution(self.req(WaitExecutionRequest { name: name.clone() }))
                        .await
                        .map_err(|s| RemoteError::rpc("waiting for the execution", s))?
                        .into_inner();
                }
            }
        }
    }
}

/// The result of a finished operation.
fn finished(op: Operation) -> Result<ExecuteResponse, RemoteError> {
    match op.result {
        Some(operation::Result::Response(any)) => ExecuteResponse::decode(any.value.as_slice())
            .map_err(|e| {
                RemoteError::Protocol(format!(
                    "an operation's response is not an ExecuteResponse: {e}"
                ))
            }),
        Some(operation::Result::Error(st)) => Err(RemoteError::Execution(format!(
            "{} (code {})",
            st.message, st.code
        ))),
        None => Err(RemoteError::Protocol(
            "a finished operation without result".into(),
        )),
    }
}

/// A connection failure as an "unavailable" error (the fallback applies).
fn unavailable_or(url: &str, what: &'static str, s: tonic::Status) -> RemoteError {
    if let Some(message) = tls_failure(&s) {
        return RemoteError::Tls {
            url: url.to_string(),
            message,
        };
    }
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => RemoteError::Connect {
            url: url.to_string(),
            message: s.message().to_string(),
        },
        _ => RemoteError::rpc(what, s),
    }
}

/// The TLS error (rustls's: an unknown issuer, a name mismatch, a server that does not speak
/// TLS) somewhere in the sources of `e`, if there is one.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(t.to_string());
        }
        cur = c.source();
    }
    None
}

/// An error with its sources, one line.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A fresh name for one upload (ByteStream wants a unique one per write).
fn upload_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = blake3::hash(format!("{}-{t}-{n}", std::process::id()).as_bytes());
    let x = h.to_hex();
    // UUID-shaped, as servers that parse the segment expect
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("grpc://127.0.0.1:8980").expect("ok"),
            ("http://127.0.0.1:8980".to_string(), false)
        );
        assert_eq!(
            parse_url("grpcs://cas.example:443/").expect("ok"),
            ("https://cas.example:443".to_string(), true)
        );
        for bad in [
            "http://x:1",
            "grpc://",
            "grpc://host",
            "grpc://h:0",
            "grpc://h:1/path",
            "grpc://u@h:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    /// An error wrapping others, as tonic's transport errors wrap the connector's.
    #[derive(Debug)]
    struct Wrapped(Box<dyn std::error::Error + Send + Sync>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn tls_failures_are_told_apart() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // rustls's error inside an io::Error (tokio-rustls), inside the transport's
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        let e = Wrapped(Box::new(io));
        let m = tls_failure(&e).expect("a TLS failure");
        assert!(m.contains("UnknownIssuer"), "{m}");
        // a refused connection is not one
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_failure(&Wrapped(Box::new(refused))), None);
        let status = tonic::Status::unavailable("connection refused");
        assert_eq!(tls_failure(&status), None);
    }
}
