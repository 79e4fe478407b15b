//! `buildit-cli` library: the parts of the command-line front end that tests drive directly —
//! the argument grammar, diagnostic rendering (also the REPL's, [`render::ReplRender`]) and the
//! commands; the `buildit` binary's rustyline front end only moves lines between the terminal
//! and `buildit_driver::repl::Repl`.

pub mod args;
pub mod audit_cmd;
pub mod build_cmd;
pub mod common;
pub mod config_cmd;
pub mod debian_cmd;
pub mod generate;
pub mod image_cmd;
pub mod init_cmd;
pub mod instantiate;
pub mod output;
pub mod pipe;
pub mod progress;
pub mod render;
pub mod run_cmd;
pub mod sbom_cmd;
pub mod search_cmd;
pub mod share_cmd;
pub mod store_cmd;
pub mod update_cmd;
pub mod yaml_cmd;
