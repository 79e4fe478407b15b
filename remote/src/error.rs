//! Errors of remote execution: one enum, split by [`RemoteError::unavailable`] into "the
//! endpoint is not there" (a fallback to a local build may follow) and everything else (a
//! protocol error, a result that does not verify: the build fails, nothing is registered).

use std::path::PathBuf;

/// Errors of `buildit-remote`.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("`{url}` is not a remote execution endpoint URL: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the TLS connection to {url} failed: {message}")]
    Tls { url: String, message: String },
    #[error("{what}: {status}")]
    Rpc {
        what: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("the endpoint does not execute actions (its capabilities say so); a cache-only server cannot build")]
    NoExecution,
    #[error("the endpoint supports neither SHA-256 nor BLAKE3 digests")]
    NoDigestFunction,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what} cannot be sent to a remote execution endpoint")]
    Unsupported { path: PathBuf, what: &'static str },
    #[error("the endpoint sent a blob that does not match its digest {digest} ({what})")]
    DigestMismatch { digest: String, what: String },
    #[error("the endpoint broke the protocol: {0}")]
    Protocol(String),
    #[error("the execution failed on the endpoint: {0}")]
    Execution(String),
}

impl RemoteError {
    pub(crate) fn rpc(what: &'static str, status: tonic::Status) -> RemoteError {
        RemoteError::Rpc {
            what,
            status: Box::new(status),
        }
    }

    /// Whether the endpoint could not be reached or broke off (as opposed to answering with
    /// something wrong).
    pub fn unavailable(&self) -> bool {
        match self {
            RemoteError::Connect { .. } => true,
            RemoteError::Rpc { status, .. } => match status.code() {
                tonic::Code::Unavailable | tonic::Code::Cancelled => true,
                // a connection that broke off in the middle of a stream
                tonic::Code::Unknown | tonic::Code::Internal => {
                    let m = status.message().to_ascii_lowercase();
                    [
                        "transport",
                        "connection",
                        "h2 protocol",
                        "broken pipe",
                        "stream",
                    ]
                    .iter()
                    .any(|w| m.contains(w))
                }
                _ => false,
            },
            _ => false,
        }
    }
}
