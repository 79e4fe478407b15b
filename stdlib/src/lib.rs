//! `buildit-stdlib`: the glue between the pure evaluator and the world. For now this is
//! [`FsIo`], the [`EvalIo`] over the real file system and environment; the store-backed
//! builtins (`derivation`, fetchers, path copying), the embedded `.bld` standard library and the
//! YAML lowering arrive with their issues.

pub mod embedded;
pub mod fsio;
pub mod storeio;
pub mod yaml;

pub use fsio::FsIo;
pub use storeio::StoreIo;
