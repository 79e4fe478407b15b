//! Sharing store paths through repositories: the signed record format (`docs/sharing.md`),
//! signing keys and trust, the transports that move records and archives (`transport`), and
//! substitution (fetch, verify, register) and upload on top of them.
//!
//! Nothing here prints or reads configuration files: the driver gives it repository
//! locations, keys and trust as values, and gets typed [`ShareError`]s back.

pub mod error;
pub mod record;
pub mod transport;

pub use error::ShareError;
pub use transport::{Location, Transport};
