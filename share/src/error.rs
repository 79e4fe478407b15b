//! [`ShareError`]: everything that can go wrong reaching, reading or writing a repository,
//! and judging what it holds (records, signatures, keys).

use buildit_store::StorePath;
use thiserror::Error;

/// An error of a repository operation; `repo` names the repository as the user wrote it.
#[derive(Debug, Error)]
pub enum ShareError {
    /// A repository location that cannot be parsed.
    #[error("'{location}' is not a repository location: {reason}")]
    BadLocation { location: String, reason: String },
    /// A key inside a repository that is not a plain relative name.
    #[error("'{key}' is not a valid repository key")]
    BadKey { key: String },
    /// The transport failed (connection, protocol, remote command).
    #[error("{repo}: {message}")]
    Transport { repo: String, message: String },
    /// The repository did not answer in time.
    #[error("{repo}: no answer within {seconds} s")]
    Timeout { repo: String, seconds: u64 },
    /// An object larger than the bound given for it.
    #[error("{repo}: '{key}' is larger than {limit} bytes")]
    TooLarge {
        repo: String,
        key: String,
        limit: u64,
    },
    /// Local file-system trouble.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The transport cannot do this operation (uploading over https, listing over http, …).
    #[error("{repo}: {what}")]
    Unsupported { repo: String, what: String },
    /// A record (`<hash>.info`, `buildit-repository.json`) that is not well-formed or does
    /// not describe what it was fetched for; `what` names the record.
    #[error("{what}: bad record: {reason}")]
    BadRecord { what: String, reason: String },
    /// A signing or public key text that cannot be parsed.
    #[error("bad {kind} key: {reason}")]
    BadKeyText { kind: &'static str, reason: String },
    /// An input-addressed path whose record carries no signature at all.
    #[error("{path} is not signed (an input-addressed path is accepted only with a signature by a trusted key)")]
    Unsigned { path: StorePath },
    /// Every signature of the record is by a key that is not trusted.
    #[error("{path} is signed only by untrusted keys ({keys})")]
    Untrusted { path: StorePath, keys: String },
    /// The only valid signatures are by a revoked key.
    #[error("{path} is signed by the revoked key '{key}' and by no trusted key")]
    Revoked { path: StorePath, key: String },
    /// A signature by a trusted key that does not verify: the record was altered after signing.
    #[error(
        "{path}: the signature by '{key}' does not match the record (it was altered after signing)"
    )]
    BadSignature { path: StorePath, key: String },
    /// Substituting `path` from the repository `repo` failed (a download, a check of what
    /// arrived, or a refused record); nothing was registered.
    #[error("substituting {path} from {repo}: {source}; nothing was registered")]
    Substitute {
        path: StorePath,
        repo: String,
        #[source]
        source: Box<ShareError>,
    },
    /// A downloaded archive that is not what its record says (truncated, another digest,
    /// data after its end, another size once decompressed).
    #[error("archive '{key}': {reason}")]
    BadArchive { key: String, reason: String },
    /// Paths that no repository offers (or only with records that were refused); `detail`
    /// names each path and what each repository answered.
    #[error("not found in any repository: {detail}")]
    NotFound {
        paths: Vec<StorePath>,
        detail: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] buildit_store::StoreError),
    /// Writing or reading a canonical archive failed.
    #[error(transparent)]
    Archive(#[from] buildit_store::ArchiveError),
}

impl ShareError {
    /// An [`ShareError::Io`] for `path`.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> ShareError {
        ShareError::Io {
            path: path.to_string(),
            source,
        }
    }
}
