//! Distributed builds through the Bazel Remote Execution API v2 (`docs/distributed.md`):
//! a derivation's build request becomes an action (the input closure as a Merkle tree of
//! `Directory` messages laid out as the local sandbox lays it out, the command with the
//! sandbox's environment, the platform), run by any REAPI engine (buildbox-casd with
//! buildbox-run, Buildbarn, BuildGrid, ...), its outputs downloaded, checked against their
//! digests and handed back to the scheduler, which registers them as it registers a local
//! build's. The generated protocol types and gRPC clients come from `bazel-remote-apis`
//! (with `tonic`); nothing here prints.

pub mod client;
pub mod digest;
pub mod error;
pub mod exec;
pub mod merkle;

pub use client::{Endpoint, EndpointConfig};
pub use error::RemoteError;
pub use exec::{RemoteBuilder, RemoteOptions, RemoteStats};
