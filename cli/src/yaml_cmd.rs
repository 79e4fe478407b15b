//! `buildit compile DIR`: the `.bld` program a container spec directory (container.yaml and the
//! pkg.yaml files of its embedded packages) lowers to. `buildit build DIR` evaluates exactly
//! this text. YAML errors are diagnostics pointing at the YAML line and column, and so are the
//! package-set errors (unknown atom or version, misspelled or conflicting build options): the
//! spec is checked against the set's facts before anything is evaluated.

use crate::common::session;
use buildit_driver::DriverError;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct CompileArgs {
    /// The spec directory (holding container.yaml)
    pub dir: PathBuf,
    /// The store's physical root (the standard library, whose package set the spec is checked
    /// against, is materialised there)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

pub fn run_compile(a: CompileArgs) -> Result<ExitCode, DriverError> {
    let c = buildit_driver::spec::compile(&session(a.store_root.as_deref(), false), &a.dir)?;
    print!("{}", c.text);
    if !c.missing_hashes.is_empty() {
        eprintln!(
            "note: {} URL patch(es) have no hash in buildit.lock yet; `buildit build` fetches them once and records them",
            c.missing_hashes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
