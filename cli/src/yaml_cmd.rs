//! `buildit compile DIR`: the `.bld` program a container spec directory (container.yaml and the
//! pkg.yaml files of its embedded packages) lowers to. `buildit build DIR` evaluates exactly
//! this text. YAML errors are diagnostics pointing at the YAML line and column.

use crate::common::*;
use crate::render;
use buildit_stdlib::yaml;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct CompileArgs {
    /// The spec directory (holding container.yaml)
    pub dir: PathBuf,
}

/// Compile a spec directory, printing diagnostics on failure.
pub fn compile(dir: &Path) -> Result<yaml::Compiled, ExitCode> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        Path::new(&cwd()).join(dir)
    };
    if !dir.join("container.yaml").is_file() {
        return Err(cli_error(
            "buildit::yaml::no-spec",
            &format!("{} has no container.yaml", dir.display()),
            "a spec directory holds container.yaml (see docs/yaml.md and examples/nginx-prod)",
        ));
    }
    let lock = yaml::read_lock(&dir);
    match yaml::compile_dir(&dir, &lock) {
        Ok(c) => Ok(c),
        Err(f) => {
            eprint!(
                "{}",
                render::diagnostics(&f.sources, &f.diagnostics, style(false))
            );
            Err(ExitCode::from(1))
        }
    }
}

pub fn run_compile(a: CompileArgs) -> ExitCode {
    match compile(&a.dir) {
        Ok(c) => {
            print!("{}", c.text);
            if !c.missing_hashes.is_empty() {
                eprintln!(
                    "note: {} URL patch(es) have no hash in buildit.lock yet; `buildit build` fetches them once and records them",
                    c.missing_hashes.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
