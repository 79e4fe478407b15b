//! Sharing store paths through repositories: the signed record format (`record`,
//! `docs/sharing.md`), signing keys and trust (`keys`), the transports that move records and
//! archives (`transport`), and upload and re-signing (`upload`); substitution (fetch, verify,
//! register) builds on the same pieces.
//!
//! Nothing here prints or reads configuration files: the driver gives it repository
//! locations, keys and trust as values, and gets typed [`ShareError`]s back.

pub mod cache;
pub mod error;
pub mod keys;
pub mod record;
pub mod substitute;
pub mod transport;
pub mod upload;

pub use error::ShareError;
pub use keys::{PublicKey, SecretKey, Trust};
pub use record::{PathRecord, RepositoryInfo};
pub use transport::{Location, Transport};
