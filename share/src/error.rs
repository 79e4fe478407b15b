//! [`ShareError`]: everything that can go wrong reaching, reading or writing a repository.

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
    TooLarge { repo: String, key: String, limit: u64 },
    /// Local file-system trouble.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
