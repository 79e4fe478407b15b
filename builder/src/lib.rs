//! `buildit-builder`: turns derivations into store paths.
//!
//! A build is described by a plain-data [`BuildRequest`] (never a language value); the
//! sandbox ([`sandbox`]: our own namespace set-up, or bubblewrap as the fallback) runs it
//! under the sandbox contract of `docs/builder.md`; the scheduler ([`schedule`]) loads the derivation graph, orders builds topologically, runs them in
//! parallel and registers their outputs. The in-process builder of fixed-output downloads lives
//! in [`fetch`] (`builtin:fetchurl`); [`input_path`] is what keeps builtins (this one and those
//! the front end registers, such as `builtin:unpack-deb`) inside their input closure.

pub mod cgroup;
pub mod error;
pub mod fetch;
pub mod input_path;
pub mod log;
mod native;
pub mod request;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod seccomp;
pub mod uids;
pub mod userns;

pub use error::{BuildError, BuildFailure, FailReason};
pub use request::{BuildLimits, BuildOptions, BuildRequest, RequestError};
pub use sandbox::{Sandbox, SandboxOutcome};
pub use schedule::{
    Availability, BuildEvent, BuiltinBuilder, BuiltinContext, Builtins, CheckReport, Realised,
    RemoteExecutor, RemoteFailure, RemoteHook, RemoteRun, ScheduleOptions, Scheduler, Substituter,
    Target,
};
