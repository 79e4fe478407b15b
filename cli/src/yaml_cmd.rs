//! `buildit compile DIR`: the `.bld` program a container spec directory (container.yaml and the
//! pkg.yaml files of its embedded packages) lowers to. `buildit build DIR` evaluates exactly
//! this text. YAML errors are diagnostics pointing at the YAML line and column, and so are the
//! package-set errors (unknown atom or version, misspelled or conflicting build options): the
//! spec is checked against the set's facts before anything is evaluated, and the program against
//! the typed standard library (type errors at the YAML lines too). `--json` wraps the
//! program in an object with the directory and the URL patches still to fetch.

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
    /// Print `{ dir, program, missing_hashes }` as JSON instead of the program text
    #[arg(long)]
    pub json: bool,
}

/// `buildit check` of a spec directory (holding container.yaml or pkg.yaml): its YAML errors,
/// else the type errors of the program it lowers to, at the YAML lines; `None` for anything
/// else (a `.bld` file or directory). The generated program is checked without the `.bld`
/// strict rules (it is buildit's text, not the user's); `strict` instead takes plain YAML
/// scalars as YAML types them (`version: 2` is a number, an error where text is expected).
pub fn check_spec(arg: &str, strict: bool) -> Option<buildit_driver::spec::SpecCheck> {
    let dir = std::path::Path::new(arg);
    if !dir.is_dir() {
        return None;
    }
    let mut checker = buildit_driver::typecheck::TypeCheck::new(false);
    buildit_driver::spec::check_dir(&mut checker, dir, strict)
}

pub fn run_compile(a: CompileArgs) -> Result<ExitCode, DriverError> {
    let c = buildit_driver::spec::compile(&session(a.store_root.as_deref(), false), &a.dir)?;
    buildit_driver::spec::typecheck(&c)?;
    if a.json {
        let missing: Vec<&str> = c.missing_hashes.iter().map(|(u, _)| u.as_str()).collect();
        println!(
            "{}",
            serde_json::json!({
                "dir": c.dir.display().to_string(),
                "program": c.text,
                "missing_hashes": missing,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", c.text);
    if !c.missing_hashes.is_empty() {
        eprintln!(
            "note: {} URL patch(es) have no hash in buildit.lock yet; `buildit build` fetches them once and records them",
            c.missing_hashes.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
