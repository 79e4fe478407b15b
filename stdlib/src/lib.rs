//! `buildit-stdlib`: the glue between the pure evaluator and the world.
//!
//! - [`FsIo`]: the `EvalIo` over the real file system and environment;
//! - [`StoreIo`]: `FsIo` plus the store: derivations, sources, `toFile`, `<buildit>`;
//! - [`embedded`]: the `.bld` standard library (stdenv, build options, package set);
//! - [`fetchtree`] and [`unpack`]: the trees `fetchTarball`/`fetchGit` fetch during
//!   evaluation, unpacked under the archive rules, checked against their pin and registered.

pub mod embedded;
pub mod fetchtree;
pub mod fsio;
pub mod storeio;
pub mod unpack;

pub use fsio::FsIo;
pub use storeio::StoreIo;
