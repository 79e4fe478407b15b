//! `buildit run ATOM [-- ARGS]`: build a package of the set if needed and run its main program
//! in a sandbox that holds exactly the package's runtime closure. The atom is resolved and the
//! package instantiated by `buildit_driver::run`, built like `buildit realise`, and run by
//! `buildit_builder::run` (its sandbox is described there). stdin, stdout and stderr are the
//! caller's; the exit status is the program's (128 + N when it died of signal N).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use buildit_builder::{BuildOptions, ScheduleOptions, Target};
use buildit_driver::DriverError;
use buildit_store::StorePath;
use clap::Args;

use crate::build_cmd::{realise, Progress, RealiseOpts};
use crate::common::session;

/// `buildit run ATOM [-- ARGS]`
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The package: `category/name`, `name`, either with `-VERSION` (no version: the newest)
    #[arg(value_name = "ATOM")]
    pub atom: String,
    /// Arguments passed to the program (write them after `--`)
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
    /// Share the host's network (default: an own network namespace with only loopback)
    #[arg(long)]
    pub net: bool,
    /// Make the current directory visible (read-write, same path) and start there
    #[arg(long)]
    pub bind_cwd: bool,
    /// Take the package from this set instead of `(import <buildit>).pkgs`: a .bld file that
    /// evaluates to a package set, e.g. `(import <buildit>).pkgs.extend (self: super: { … })`
    #[arg(long = "set", value_name = "FILE")]
    pub set: Option<String>,
    /// Run this file of the package instead of its main program (`bin/NAME`, relative to the
    /// package's store path)
    #[arg(long, value_name = "PATH")]
    pub program: Option<String>,
    /// Cores a build may use if the package must be built (default: 1)
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Show the whole evaluation trace of an error
    #[arg(long)]
    pub show_trace: bool,
    /// The store's physical root directory (default: $BUILDIT_STORE_ROOT, else /bld for root,
    /// else $XDG_DATA_HOME/buildit)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// Run `buildit run`.
pub fn run(a: RunArgs) -> Result<ExitCode, DriverError> {
    let session = session(a.store_root.as_deref(), false);
    let store = session.open_store()?;
    let t = buildit_driver::run::target(&session, a.set.as_deref(), &a.atom)?;
    let mut targets = vec![Target::all(t.drv.clone())];
    targets.extend(t.runtime_drv.iter().cloned().map(Target::all));
    let opts = RealiseOpts {
        schedule: ScheduleOptions {
            build: BuildOptions {
                cores: a.cores.unwrap_or(1).max(1),
                ..BuildOptions::default()
            },
            ..ScheduleOptions::default()
        },
        out_link: None,
        progress: Progress::auto(),
    };
    let built = realise(&store, &targets, &opts, session.builtins())?;
    // each target's outputs in order: the runtime tree is the last one
    let runtime = t.runtime_drv.as_ref().and_then(|_| built.last().cloned());
    let mut roots = vec![t.out.clone()];
    roots.extend(runtime.clone());
    for r in &roots {
        store.add_temp_root(r);
    }
    let closure: BTreeSet<StorePath> = store.closure(&roots)?;
    let out = &t.out;
    let program = match &a.program {
        Some(p) if p.starts_with('/') => p.clone(),
        Some(p) => format!("{out}/{p}"),
        None => buildit_driver::run::main_program(&store, &t)?,
    };
    let cwd = if a.bind_cwd {
        Some(std::env::current_dir().map_err(|e| {
            DriverError::request(
                "buildit::run::bad-cwd",
                format!("the current directory is not usable: {e}"),
                "cd to an existing directory",
            )
        })?)
    } else {
        None
    };
    let mut env = vec![
        (
            "PATH".to_string(),
            format!("{out}/bin:{out}/sbin:/usr/bin:/usr/sbin:/bin"),
        ),
        ("HOME".to_string(), "/tmp".to_string()),
        ("TMPDIR".to_string(), "/tmp".to_string()),
    ];
    if let Some(term) = std::env::var_os("TERM") {
        env.push(("TERM".to_string(), term.to_string_lossy().into_owned()));
    }
    let spec = buildit_builder::run::RunSpec {
        closure: closure
            .iter()
            .map(|p| (store.layout().physical(p), p.to_string()))
            .collect(),
        usr: runtime.map(|r| store.layout().physical(&r).join("usr")),
        net: a.net,
        cwd,
        new_session: !std::io::stdin().is_terminal(),
        env,
        program,
        args: a.args,
    };
    Ok(ExitCode::from(buildit_builder::run::run(&spec)?))
}
