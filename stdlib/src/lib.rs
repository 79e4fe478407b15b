//! `buildit-stdlib`: the glue between the pure evaluator and the world. For now this is
//! [`FsIo`], the [`EvalIo`] over the real file system and environment; the store-backed
//! builtins (`derivation`, fetchers, path copying), the embedded `.bld` standard library and the
//! YAML lowering arrive with their issues.

pub mod debian;
pub mod fsio;

pub use fsio::FsIo;
