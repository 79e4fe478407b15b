//! `buildit realise` (alias `build`) and `buildit log`: realise `.drv` store paths with the
//! builder's scheduler, show progress, leave `./result` links as GC roots, print the output
//! paths on stdout (one a line), and print build logs.
//!
//! Progress goes to stderr: an indicatif display on a terminal (running builds with their
//! latest log line, downloads, totals, elapsed time), plain lines otherwise, or with `--json`
//! one JSON object per event and line (stdout stays reserved for the output paths, so
//! `out=$(buildit realise --json X 2>events.jsonl)` works). [`realise_drvs`] is the entry point
//! for other commands that first evaluate a file into derivations.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use buildit_builder::{
    BuildError, BuildLimits, BuildOptions, Builtins, ScheduleOptions, Scheduler, Target,
};
use buildit_store::{Store, StorePath};
use clap::Args;
use miette::{miette, Report};

pub use crate::progress::Progress;
use crate::progress::Ui;
use crate::store_cmd::{fail, open_store, store_error};

/// `buildit realise DRV...`
#[derive(Args, Debug)]
pub struct RealiseArgs {
    /// What to build: .bld files (evaluated; `-A` selects), `.drv` store paths (or links to
    /// them; `DRV!out,dev` selects outputs)
    #[arg(value_name = "FILE|DRV")]
    pub drvs: Vec<String>,
    /// Build this expression
    #[arg(short = 'E', long = "expr", value_name = "EXPR")]
    pub expr: Option<String>,
    /// Select an attribute path of the evaluated file (`-A hello`)
    #[arg(short = 'A', long = "attr", value_name = "PATH")]
    pub attr: Option<String>,
    /// Do not type-check before evaluating
    #[arg(long)]
    pub no_typecheck: bool,
    /// Show the whole evaluation trace of an error
    #[arg(long)]
    pub show_trace: bool,
    /// Binary repositories to look in first, the seed's form: `--discover=URL[,push=True]`
    #[arg(long, value_name = "URL[,push=True]")]
    pub discover: Option<String>,
    /// Builds at once (default: the number of cores)
    #[arg(short = 'j', long = "max-jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Cores each build may use (BUILDIT_BUILD_CORES; default: 1)
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Keep building independent derivations after a failure
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Keep the build directory of failed builds
    #[arg(short = 'K', long)]
    pub keep_failed: bool,
    /// Name of the out-link (default: result)
    #[arg(short = 'o', long, value_name = "NAME", conflicts_with = "no_out_link")]
    pub out_link: Option<String>,
    /// Do not create out-links
    #[arg(long)]
    pub no_out_link: bool,
    /// Report progress as JSON events on stderr, one object a line
    #[arg(long)]
    pub json: bool,
    /// Kill a build after this many seconds
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Kill a build that prints nothing for this many seconds
    #[arg(long, value_name = "SECS")]
    pub max_silent_time: Option<u64>,
    /// Memory of one build's processes together (e.g. 4G, or none; default: half the RAM)
    #[arg(long, value_name = "SIZE", value_parser = buildit_builder::request::parse_size)]
    pub max_memory: Option<u64>,
    /// Processes of one build at once (default: 4096)
    #[arg(long, value_name = "N")]
    pub max_pids: Option<u64>,
    /// Total size of one build's outputs, and of any file it writes (default: 4G)
    #[arg(long, value_name = "SIZE", value_parser = buildit_builder::request::parse_size)]
    pub max_output: Option<u64>,
    /// Size of one build's log before it is killed (default: 64M)
    #[arg(long, value_name = "SIZE", value_parser = buildit_builder::request::parse_size)]
    pub max_log: Option<u64>,
    /// Size of each of a build's /tmp and /dev/shm (default: 1G)
    #[arg(long, value_name = "SIZE", value_parser = buildit_builder::request::parse_size)]
    pub max_tmpfs: Option<u64>,
    /// Rebuild already-valid outputs and report the files that differ (exit 1 if any)
    #[arg(long)]
    pub check: bool,
    /// The store's physical root directory (default: $BUILDIT_STORE_ROOT, else /bld when
    /// writable, else $XDG_DATA_HOME/buildit)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// `buildit log PATH`
#[derive(Args, Debug)]
pub struct LogArgs {
    /// A `.drv` store path, or an output path (its deriver's log is shown)
    pub path: String,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// How [`realise_drvs`] builds and reports.
#[derive(Clone, Debug)]
pub struct RealiseOpts {
    pub schedule: ScheduleOptions,
    /// `None`: no out-links; `Some(name)`: `name`, `name-2`, ..., `name-<output>`.
    pub out_link: Option<String>,
    pub progress: Progress,
}

/// A miette report for a builder error.
pub fn build_error(e: BuildError) -> Report {
    let msg = e.to_string();
    match &e {
        BuildError::BwrapMissing => miette!(
            code = "buildit::build::no-bwrap",
            help = "builds run in bubblewrap: apt-get install bubblewrap",
            "{msg}"
        ),
        BuildError::Failed(f) => {
            let drv = f.drv.to_string();
            miette!(
                code = "buildit::build::failed",
                help = format!("the whole log: buildit log {drv}"),
                "{msg}"
            )
        }
        BuildError::Several { .. } | BuildError::DependencyFailed { .. } => miette!(
            code = "buildit::build::failed",
            help = "the failures are listed above; see their logs with `buildit log DRV`",
            "{msg}"
        ),
        BuildError::WrongSystem { .. } => miette!(
            code = "buildit::build::system",
            help = "set system = \"x86_64-linux\" (builtins.currentSystem)",
            "{msg}"
        ),
        BuildError::UnknownBuiltin { .. } => miette!(
            code = "buildit::build::builtin",
            help = "this buildit does not provide that builtin builder",
            "{msg}"
        ),
        BuildError::BuiltinNeedsFixedOutput { .. } => miette!(
            code = "buildit::build::not-fixed-output",
            help = "declare the expected content: outputHash (with outputHashAlgo, or SRI) and outputHashMode",
            "{msg}"
        ),
        BuildError::BadDerivation { .. } | BuildError::Request(_) => miette!(
            code = "buildit::build::bad-derivation",
            help = "give a .drv store path written by this buildit (`buildit store ls`)",
            "{msg}"
        ),
        BuildError::Store(_) | BuildError::Io { .. } => miette!(
            code = "buildit::build::io",
            help = "check the store root and its permissions (`buildit store verify`)",
            "{msg}"
        ),
    }
}

/// Parse `DRV[!out,dev]` into a target.
/// Whether a command-line argument names a source to evaluate (a `.bld`/`.nix` file or a
/// directory with a default file) rather than a store path.
fn is_source(arg: &str) -> bool {
    let p = Path::new(arg);
    !arg.starts_with(buildit_store::STORE_DIR)
        && !p.is_symlink()
        && (arg.ends_with(".bld")
            || arg.ends_with(".nix")
            || p.join("default.bld").is_file()
            || p.join("default.nix").is_file())
}

/// A container spec directory: compile the YAML (fetching URL patches without a recorded hash
/// once and writing their hashes to `buildit.lock`), type-check and evaluate exactly the
/// compiled text, and print the seed's kind of transcript on stderr.
fn container_targets(store: &Store, dir: &Path, a: &RealiseArgs) -> Result<Vec<Target>, ExitCode> {
    let mut compiled = crate::yaml_cmd::compile(dir, Some(&store.layout().root))?;
    // URL patches: fetched once when buildit.lock has no hash for them, verified against it
    // otherwise; errors point at the patch's line in pkg.yaml, and nothing is evaluated yet
    if crate::yaml_cmd::fetch_patches(&compiled, store)? {
        compiled = crate::yaml_cmd::compile(dir, Some(&store.layout().root))?;
    }
    let vars: std::collections::BTreeMap<String, String> = compiled
        .spec
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    let get = |k: &str, d: &str| vars.get(k).cloned().unwrap_or_else(|| d.to_string());
    let who = vars
        .get("author")
        .map(|a| format!("{a}/"))
        .unwrap_or_default();
    eprintln!(
        "Building {who}{}-{}",
        get("name", "image"),
        get("version", "latest")
    );
    for p in &compiled.spec.packages {
        let what = match p {
            buildit_yaml::spec::PackageRef::Embedded(path) => {
                format!("package from '{}'", path.value)
            }
            buildit_yaml::spec::PackageRef::Set(atom) => format!("package {}", atom.value),
            buildit_yaml::spec::PackageRef::Debian { name, .. } => {
                format!("Debian package {}", name.value)
            }
        };
        eprintln!(
            "Processing {what} for {}/{}.",
            get("os", "linux"),
            get("arch", "amd64")
        );
    }
    let st = crate::common::style(a.show_trace);
    let name = format!(
        "{} (compiled)",
        compiled.dir.join("container.yaml").display()
    );
    if !a.no_typecheck {
        let (sources, _, diags, _) = crate::common::typecheck_source(&name, &compiled.text);
        if !diags.is_empty() {
            eprint!("{}", crate::render::diagnostics(&sources, &diags, st));
            eprintln!(
                "(this is the program `buildit compile {}` prints)",
                dir.display()
            );
            return Err(ExitCode::from(1));
        }
    }
    let io = crate::common::new_store_io(crate::common::fs_io(false), store.layout().clone());
    let mut ev = std::mem::ManuallyDrop::new(buildit_eval::Evaluator::new(Box::new(io)));
    let value = match ev.compile(&name, &compiled.text, &compiled.dir.display().to_string()) {
        Ok(ir) => ev.eval_root(&ir),
        Err(diags) => {
            eprint!("{}", crate::render::diagnostics(&ev.sources, &diags, st));
            return Err(ExitCode::from(1));
        }
    };
    let found = value.and_then(|v| crate::instantiate::find_derivations(&mut ev, &v));
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            eprint!("{}", crate::render::eval_error(&ev.sources, &e, st));
            return Err(ExitCode::from(1));
        }
    };
    let mut out = Vec::new();
    for f in found {
        let drv = buildit_store::StorePath::parse(&f.drv_path).map_err(|e| {
            crate::common::cli_error("buildit::build::bad-drv", &e.to_string(), "this is a bug")
        })?;
        eprintln!("HASH: {}", drv.hash_part());
        out.push(Target {
            drv,
            outputs: Some(std::iter::once(f.output).collect()),
        });
    }
    Ok(out)
}

/// Evaluate a file or expression and return the derivations it denotes as build targets
/// (each with the output the value selects).
fn evaluate_targets(
    store: &Store,
    file: Option<&str>,
    expr: Option<&str>,
    a: &RealiseArgs,
) -> Result<Vec<Target>, ExitCode> {
    let st = crate::common::style(a.show_trace);
    let io = crate::common::new_store_io(crate::common::fs_io(false), store.layout().clone());
    let mut ev = std::mem::ManuallyDrop::new(buildit_eval::Evaluator::new(Box::new(io)));
    let t = crate::common::Target {
        file,
        expr,
        attr: a.attr.as_deref(),
        typecheck: !a.no_typecheck,
    };
    let found = crate::instantiate::instantiate_target(&mut ev, &t, st)?;
    let mut out = Vec::new();
    for f in found {
        match buildit_store::StorePath::parse(&f.drv_path) {
            Ok(drv) => out.push(Target {
                drv,
                outputs: Some(std::iter::once(f.output).collect()),
            }),
            Err(e) => {
                return Err(crate::common::cli_error(
                    "buildit::build::bad-drv",
                    &e.to_string(),
                    "this is a bug",
                ))
            }
        }
    }
    Ok(out)
}

fn parse_target(store: &Store, arg: &str) -> miette::Result<Target> {
    let (path, outs) = match arg.rsplit_once('!') {
        Some((p, o)) => (p, Some(o)),
        None => (arg, None),
    };
    let (drv, sub) = store.resolve(path).map_err(store_error)?;
    if !sub.is_empty() || !drv.is_derivation() {
        return Err(miette!(
            code = "buildit::build::not-a-derivation",
            help = "give a .drv store path (evaluate a file first)",
            "{path} is not a derivation (.drv) store path"
        ));
    }
    Ok(Target {
        drv,
        outputs: outs.map(|o| o.split(',').map(str::to_string).collect()),
    })
}

/// Realise `drvs` (all outputs of each), showing progress, creating out-links as GC roots.
/// Returns the output paths in order (targets in order, outputs sorted by name).
pub fn realise_drvs(
    store: &Store,
    drvs: &[StorePath],
    opts: &RealiseOpts,
    builtins: Builtins,
) -> miette::Result<Vec<StorePath>> {
    let targets: Vec<Target> = drvs.iter().cloned().map(Target::all).collect();
    realise_targets(store, &targets, opts, builtins)
}

fn realise_targets(
    store: &Store,
    targets: &[Target],
    opts: &RealiseOpts,
    builtins: Builtins,
) -> miette::Result<Vec<StorePath>> {
    let mut sched = Scheduler::new(store, opts.schedule.clone()).with_builtins(builtins);
    let mut ui = Ui::new(opts.progress);
    let r = sched.realise(targets, &mut |e| ui.event(e));
    ui.finish();
    let realised = r.map_err(build_error)?;
    let mut paths = Vec::new();
    for (i, (_, outs)) in realised.iter().enumerate() {
        for (name, p) in outs {
            if let Some(base) = &opts.out_link {
                let mut link = base.clone();
                if i > 0 {
                    link.push_str(&format!("-{}", i + 1));
                }
                if name != "out" {
                    link.push_str(&format!("-{name}"));
                }
                store.add_root(Path::new(&link), p).map_err(store_error)?;
            }
            paths.push(p.clone());
        }
    }
    Ok(paths)
}

/// Run `buildit realise`.
pub fn run_realise(a: RealiseArgs) -> ExitCode {
    let store = match open_store(a.store_root.as_deref()) {
        Ok(s) => s,
        Err(r) => return fail(r),
    };
    let mut targets = Vec::new();
    if a.drvs.is_empty() && a.expr.is_none() {
        return crate::common::cli_error(
            "buildit::build::nothing",
            "nothing to build",
            "give a .bld FILE (with -A ATTR), -E EXPR, or .drv paths (see `buildit realise --help`)",
        );
    }
    if let Some(d) = &a.discover {
        let (url, rest) = d.split_once(',').unwrap_or((d.as_str(), ""));
        let push = rest
            .split(',')
            .any(|kv| kv.eq_ignore_ascii_case("push=true"));
        return crate::common::cli_error(
            "buildit::build::repositories-not-yet",
            &format!(
                "binary repositories are not available yet: cannot look in '{url}'{}",
                if push { " or upload to it" } else { "" }
            ),
            "build without --discover for now: everything is built locally (sharing through repositories arrives in a later release)",
        );
    }
    for d in &a.drvs {
        if Path::new(d).join("container.yaml").is_file() {
            match container_targets(&store, Path::new(d), &a) {
                Ok(t) => targets.extend(t),
                Err(code) => return code,
            }
            continue;
        }
        if is_source(d) {
            match evaluate_targets(&store, Some(d.as_str()), None, &a) {
                Ok(t) => targets.extend(t),
                Err(code) => return code,
            }
            continue;
        }
        match parse_target(&store, d) {
            Ok(t) => targets.push(t),
            Err(r) => return fail(r),
        }
    }
    if let Some(e) = &a.expr {
        match evaluate_targets(&store, None, Some(e.as_str()), &a) {
            Ok(t) => targets.extend(t),
            Err(code) => return code,
        }
    }
    let mut schedule = ScheduleOptions::default();
    if let Some(j) = a.jobs {
        schedule.jobs = j.max(1);
    }
    schedule.keep_going = a.keep_going;
    schedule.build = BuildOptions {
        cores: a.cores.unwrap_or(1).max(1),
        limits: {
            let d = BuildLimits::default();
            let pick = |v: Option<u64>, default| v.map_or(default, buildit_builder::request::limit);
            BuildLimits {
                timeout: a.timeout.map(Duration::from_secs),
                max_silent: a.max_silent_time.map(Duration::from_secs),
                max_log_bytes: pick(a.max_log, d.max_log_bytes),
                max_memory: pick(a.max_memory, d.max_memory),
                max_pids: pick(a.max_pids, d.max_pids),
                max_tmpfs: pick(a.max_tmpfs, d.max_tmpfs),
                max_output_bytes: pick(a.max_output, d.max_output_bytes),
            }
        },
        keep_failed: a.keep_failed,
    };
    let progress = if a.json {
        Progress::Json
    } else {
        Progress::auto()
    };
    if a.check {
        return run_check(&store, &targets, schedule, progress);
    }
    let opts = RealiseOpts {
        schedule,
        out_link: if a.no_out_link {
            None
        } else {
            Some(a.out_link.unwrap_or_else(|| "result".into()))
        },
        progress,
    };
    match realise_targets(
        &store,
        &targets,
        &opts,
        crate::builtins::all(store.layout()),
    ) {
        Ok(paths) => {
            let mut out = std::io::stdout().lock();
            for p in paths {
                let _ = writeln!(out, "{p}");
            }
            ExitCode::SUCCESS
        }
        Err(r) => fail(r),
    }
}

fn run_check(
    store: &Store,
    targets: &[Target],
    schedule: ScheduleOptions,
    progress: Progress,
) -> ExitCode {
    let mut sched = Scheduler::new(store, schedule);
    let mut differs = false;
    for t in targets {
        let mut ui = Ui::new(progress);
        let r = sched.check(&t.drv, &mut |e| ui.event(e));
        ui.finish();
        match r {
            Ok(rep) => {
                if progress == Progress::Json {
                    if let Ok(s) = serde_json::to_string(&rep) {
                        eprintln!("{s}");
                    }
                }
                for (path, files) in &rep.differing {
                    differs = true;
                    println!("{path} differs when rebuilt:");
                    for f in files {
                        println!("  {f}");
                    }
                }
                if rep.differing.is_empty() {
                    eprintln!("{}: rebuilt identically", t.drv);
                }
            }
            Err(e) => return fail(build_error(e)),
        }
    }
    if differs {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Run `buildit log`.
pub fn run_log(a: LogArgs) -> ExitCode {
    let store = match open_store(a.store_root.as_deref()) {
        Ok(s) => s,
        Err(r) => return fail(r),
    };
    let (p, _) = match store.resolve(&a.path) {
        Ok(x) => x,
        Err(e) => return fail(store_error(e)),
    };
    let drv = if p.is_derivation() {
        p
    } else {
        match store.path_info(&p) {
            Ok(Some(info)) => match info.deriver {
                Some(d) => d,
                None => {
                    return fail(miette!(
                        code = "buildit::build::no-log",
                        help = "only built paths have logs; sources were added, not built",
                        "{p} was not built here (it has no deriver)"
                    ))
                }
            },
            Ok(None) => return fail(store_error(buildit_store::StoreError::NotValid(p))),
            Err(e) => return fail(store_error(e)),
        }
    };
    match buildit_builder::log::read_log(store.layout(), &drv) {
        Ok(bytes) => {
            let _ = std::io::stdout().lock().write_all(&bytes);
            ExitCode::SUCCESS
        }
        Err(e) => fail(miette!(
            code = "buildit::build::no-log",
            help = "the derivation was never built on this machine, or its log was removed",
            "no log for {drv}: {e}"
        )),
    }
}
