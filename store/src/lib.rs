//! `buildit-store`: everything about the store that is not the language and not the sandbox.
//!
//! - [`path`]: store paths (`/bld/store/<hash>-<name>`), name validation, the typed fingerprints
//!   that give a path its hash, and nix-base32.
//! - [`layout`]: where the logical store lives physically (`--store-root`, `BUILDIT_STORE_ROOT`,
//!   `/bld`, `$XDG_DATA_HOME/buildit`).
//! - [`derivation`]: derivations as plain data, their canonical versioned encoding and their
//!   hash modulo fixed outputs.
//!
//! The store knows nothing of the language: a derivation here is plain data.

pub mod derivation;
pub mod layout;
pub mod path;

pub use derivation::{Derivation, DerivationOutput};
pub use layout::StoreLayout;
pub use path::{StorePath, STORE_DIR};
