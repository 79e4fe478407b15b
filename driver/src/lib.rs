//! `buildit-driver`: what the command line drives, between the libraries and `cli`. A
//! [`Session`] holds the store layout, the Debian lock and the evaluation IO; [`eval`]
//! evaluates targets into values and derivations; [`build`] turns what a build command names
//! into targets and realises them; [`spec`] compiles and evaluates YAML specs;
//! [`pkgset`] asks the package set typed questions; [`builtins`] are the in-process builders
//! the scheduler runs; [`update`] and [`diff`] compare a spec's packages and images with
//! what is newer. Every operation returns a [`DriverError`], which the front end renders
//! in one place. Nothing here prints.

pub mod audit;
pub mod build;
pub mod builtins;
pub mod config;
pub mod debian_src;
pub mod diff;
pub mod error;
pub mod eval;
pub mod fetchtree;
pub mod image;
pub mod limits;
pub mod pkgset;
pub mod remote;
pub mod repl;
pub mod run;
pub mod sbom;
pub mod session;
pub mod share;
pub mod spec;
pub mod store;
pub mod substitute;
pub mod typecheck;
pub mod update;

pub use error::{DriverError, ImageOp, Result};
pub use eval::EvalTarget;
pub use session::{store_layout, DebianLock, Session};
