//! Remote execution for build commands (`--remote URL`, `docs/distributed.md`): the
//! endpoint's settings checked, the connection made once per command, and the scheduler's
//! executor hook over `buildit-remote`. A down endpoint is an error naming the fallback,
//! or with the fallback a note and a local build.

use std::sync::Arc;

use buildit_builder::RemoteHook;
use buildit_remote::{EndpointConfig, RemoteError, RemoteOptions};
pub use buildit_remote::{RemoteBuilder, RemoteStats};
use buildit_store::Store;

use crate::error::{DriverError, Result};

/// Where and how to build remotely.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteSettings {
    /// `grpc://HOST:PORT` or `grpcs://HOST:PORT`.
    pub url: String,
    /// The REAPI instance name.
    pub instance: String,
    /// `NAME=VALUE` headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// Build locally when the endpoint is down.
    pub fallback: bool,
    /// Refuse the endpoint's ActionCache results (every action runs).
    pub no_cache: bool,
    /// Certificate authorities for `grpcs://` (PEM).
    pub ca_file: Option<std::path::PathBuf>,
    /// `BUILDIT_BUILD_CORES` of remote builds (0: the default).
    pub cores: u32,
}

/// A header given as `NAME=VALUE` (or `NAME: VALUE`).
pub fn parse_header(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| format!("`{s}`: give a header as NAME=VALUE"))?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("`{k}` is not a header name"));
    }
    Ok((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// The connected executor, or why there is none.
pub struct Remote {
    pub builder: Option<Arc<RemoteBuilder>>,
    /// With the fallback, why builds are local (the endpoint is down).
    pub fallback_note: Option<String>,
}

impl Remote {
    /// The scheduler's hook.
    pub fn hook(&self) -> Option<RemoteHook> {
        self.builder
            .as_ref()
            .map(|b| RemoteHook(b.clone() as Arc<dyn buildit_builder::RemoteExecutor>))
    }
}

/// A remote error as a driver error with its code and help.
pub fn remote_error(e: RemoteError) -> DriverError {
    let (code, help) = match &e {
        RemoteError::BadUrl { .. } => (
            "buildit::remote::bad-url",
            "give the endpoint as grpc://HOST:PORT or grpcs://HOST:PORT",
        ),
        RemoteError::NoExecution => (
            "buildit::remote::no-execution",
            "give the URL of an execution service, not of a cache only",
        ),
        RemoteError::Tls { .. } => (
            "buildit::remote::tls",
            "give the certificate authority that signed the endpoint's certificate with --remote-ca FILE (PEM), and the host name the certificate names in the URL",
        ),
        _ if e.unavailable() => (
            "buildit::remote::unavailable",
            "check that the endpoint runs (--remote URL); --remote-fallback builds locally when it is down",
        ),
        _ => (
            "buildit::remote::failed",
            "see docs/distributed.md for what an endpoint must provide",
        ),
    };
    DriverError::request(code, e.to_string(), help)
}

/// Connect to the endpoint of `s` for builds into `store`.
pub fn connect(store: &Store, s: &RemoteSettings) -> Result<Remote> {
    let opts = RemoteOptions {
        endpoint: EndpointConfig {
            url: s.url.clone(),
            instance: s.instance.clone(),
            headers: s.headers.clone(),
            ca_file: s.ca_file.clone(),
        },
        fallback: s.fallback,
        accept_cached: !s.no_cache,
        cores: if s.cores == 0 {
            buildit_remote::exec::DEFAULT_CORES
        } else {
            s.cores
        },
    };
    match RemoteBuilder::connect(store.layout().clone(), opts) {
        Ok(b) => Ok(Remote {
            builder: Some(Arc::new(b)),
            fallback_note: None,
        }),
        Err(e) if s.fallback && e.unavailable() => Ok(Remote {
            builder: None,
            fallback_note: Some(format!("{e}: building locally (--remote-fallback)")),
        }),
        Err(e) => Err(remote_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Authorization=Bearer x=y").expect("ok"),
            ("authorization".to_string(), "Bearer x=y".to_string())
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("bad name=1").is_err());
    }
}
