//! `buildit-builder`: turns derivations into store paths. A build is described by a plain-data
//! [`BuildRequest`]-style value (never a language value); the bubblewrap backend runs it under the
//! sandbox contract of `docs/builder.md`; the scheduler orders builds topologically and the
//! fetchers realise fixed-output derivations over the network.

pub mod deb;
pub mod fetch;
