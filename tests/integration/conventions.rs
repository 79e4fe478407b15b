//! The command-line conventions people expect of a Unix tool, through the real `buildit`
//! binary: a closed pipe ends it quietly, global options go before or after the command,
//! completions and man pages are generated, and every diagnostic code has the one style
//! `buildit::area::kebab-name`.

use crate::cli::buildit;
use crate::root;
use libtest_mimic::Trial;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

/// Run `buildit ARGS` with its standard output a pipe whose reading end is closed before the
/// command writes: it must end as other tools do (killed by SIGPIPE, or exit 0), silently.
fn closed_pipe(name: &str, args: &'static [&'static str]) -> Trial {
    Trial::test(format!("conventions::closed-pipe::{name}"), move || {
        let store = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut child = buildit()
            .args(args)
            .env("BUILDIT_STORE_ROOT", store.path())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        drop(child.stdout.take());
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let quiet = out.status.success() || out.status.signal() == Some(libc::SIGPIPE);
        if !quiet || !stderr.is_empty() {
            return Err(format!(
                "`buildit {}` into a closed pipe: {:?}, stderr:\n{stderr}",
                args.join(" "),
                out.status
            )
            .into());
        }
        Ok(())
    })
}

fn closed_pipe_trials() -> Vec<Trial> {
    vec![
        closed_pipe("search", &["search"]),
        closed_pipe("eval", &["eval", "-E", "builtins.genList (x: x) 100000"]),
        closed_pipe(
            "eval-json",
            &["eval", "--json", "-E", "builtins.genList (x: x) 100000"],
        ),
        closed_pipe("compile", &["compile", "examples/nginx-prod"]),
        closed_pipe("check", &["check", "tests/data/cli/sample.bld"]),
        closed_pipe(
            "instantiate",
            &[
                "instantiate",
                "-E",
                "derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }",
            ],
        ),
        closed_pipe("help", &["--help"]),
        closed_pipe("search-json", &["search", "--json"]),
    ]
}

pub fn trials() -> Vec<Trial> {
    let mut v = Vec::new();
    v.extend(closed_pipe_trials());
    v
}
