//! `buildit realise` (alias `build`) and `buildit log`: realise `.drv` store paths with the
//! builder's scheduler, show progress, leave `./result` links as GC roots, print the output
//! paths on stdout (one a line), and print build logs.
//!
//! Progress goes to stderr: an indicatif display on a terminal (running builds with their
//! latest log line, downloads, totals, elapsed time), plain lines otherwise, or with `--json`
//! one JSON object per event and line, the transcript and an error included (stdout stays
//! reserved for the result: the output paths, or with `--json` one object
//! `{ drvs, outputs, out_link }`, so `out=$(buildit realise --json X 2>events.jsonl)` works). [`realise`] is the entry point for
//! other commands that first evaluate a file into derivations.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use buildit_builder::{BuildLimits, BuildOptions, Builtins, ScheduleOptions, Scheduler, Target};
use buildit_driver::DriverError;
use buildit_store::{Store, StorePath};
use clap::Args;

use crate::common::session;
pub use crate::progress::Progress;
use crate::progress::Ui;

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
    #[command(flatten)]
    pub share: crate::args::ShareFlags,
    /// Builds at once (default: the number of cores)
    #[arg(short = 'j', long = "max-jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Cores each build may use (BUILDIT_BUILD_CORES; default: an equal share of the cores no
    /// running build holds, so that the last build alone gets them all)
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
    /// The store's physical root directory (default: $BUILDIT_STORE_ROOT, else /bld for root,
    /// else $XDG_DATA_HOME/buildit)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
    /// Boxed: the command enum's variants stay small.
    #[command(flatten)]
    pub remote: Box<RemoteFlags>,
}

/// Remote execution (docs/distributed.md).
#[derive(Args, Debug, Default)]
pub struct RemoteFlags {
    /// Build through this Remote Execution API endpoint (grpc://HOST:PORT, grpcs://HOST:PORT);
    /// downloads and builtin builders stay local
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The endpoint's instance name
    #[arg(long, value_name = "NAME", requires = "remote")]
    pub remote_instance: Option<String>,
    /// A header sent with every request (e.g. `authorization=Bearer TOKEN`; repeatable)
    #[arg(long, value_name = "NAME=VALUE", requires = "remote", value_parser = buildit_driver::remote::parse_header)]
    pub remote_header: Vec<(String, String)>,
    /// Build locally when the endpoint is down (otherwise that is an error)
    #[arg(long, requires = "remote")]
    pub remote_fallback: bool,
    /// Do not take results from the endpoint's ActionCache: every action runs
    #[arg(long, requires = "remote")]
    pub remote_no_cache: bool,
    /// Certificate authorities (PEM) trusted for a grpcs:// endpoint, besides the system's
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub remote_ca: Option<PathBuf>,
    /// BUILDIT_BUILD_CORES of remote builds (part of each action's key; default: 4)
    #[arg(long, value_name = "N", requires = "remote")]
    pub remote_cores: Option<u32>,
}

impl RemoteFlags {
    /// The settings these flags give over the configuration's `remote-execution:` (`None`:
    /// neither names an endpoint).
    pub fn settings(
        &self,
        cfg: Option<&buildit_driver::config::RemoteConfig>,
    ) -> Option<buildit_driver::remote::RemoteSettings> {
        let url = self
            .remote
            .clone()
            .or_else(|| cfg.and_then(|c| c.url.as_ref()).map(|u| u.value.clone()))?;
        Some(buildit_driver::remote::RemoteSettings {
            url,
            instance: self
                .remote_instance
                .clone()
                .or_else(|| {
                    cfg.and_then(|c| c.instance.as_ref())
                        .map(|i| i.value.clone())
                })
                .unwrap_or_default(),
            headers: self.remote_header.clone(),
            fallback: self.remote_fallback
                || cfg
                    .and_then(|c| c.fallback.as_ref())
                    .is_some_and(|f| f.value),
            no_cache: self.remote_no_cache
                || cfg
                    .and_then(|c| c.accept_cached.as_ref())
                    .is_some_and(|a| !a.value),
            ca_file: self.remote_ca.clone().or_else(|| {
                cfg.and_then(|c| c.ca_file.as_ref())
                    .map(|p| p.value.clone())
            }),
            cores: self
                .remote_cores
                .or_else(|| {
                    cfg.and_then(|c| c.cores.as_ref())
                        .and_then(|c| u32::try_from(c.value).ok())
                })
                .unwrap_or(0),
        })
    }
}

/// What the remote executor did, after the build: a `remote` JSON event with `--json`, a
/// line otherwise (with `-v`, or when something ran remotely).
fn remote_report(json: bool, r: &buildit_driver::remote::RemoteBuilder) {
    let s = r.stats();
    if json {
        eprintln!(
            "{}",
            serde_json::json!({
                "event": "remote",
                "endpoint": r.url(),
                "digest_function": r.digest_function(),
                "executed": s.executed,
                "cached": s.cached,
                "uploaded_blobs": s.uploaded_blobs,
                "uploaded_bytes": s.uploaded_bytes,
                "input_bytes": s.input_bytes,
                "downloaded_bytes": s.downloaded_bytes,
            })
        );
    } else if !crate::output::get().quiet && (s.executed + s.cached > 0) {
        eprintln!(
            "remote {}: {} executed, {} from the ActionCache; uploaded {} blobs ({} bytes)",
            r.url(),
            s.executed,
            s.cached,
            s.uploaded_blobs,
            s.uploaded_bytes
        );
    }
}

/// A line of the build's transcript on stderr ("Building …", "HASH: …"): a JSON `note` event
/// with `--json`, nothing with `-q`.
pub fn notice(json: bool, line: &str) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({ "event": "note", "message": line })
        );
    } else if !crate::output::get().quiet {
        eprintln!("{line}");
    }
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

/// Realise `drvs` (all outputs of each) for `buildit run`, which prints its own errors.
pub fn realise_drvs(
    store: &Store,
    drvs: &[StorePath],
    opts: &RealiseOpts,
    builtins: Builtins,
) -> miette::Result<Vec<StorePath>> {
    let targets: Vec<Target> = drvs.iter().cloned().map(Target::all).collect();
    realise(store, &targets, opts, builtins).map_err(|e| {
        let (_, ds) = e.diagnostics();
        match ds.into_iter().next() {
            Some(d) => d.to_report(&buildit_lang::SourceMap::new()),
            None => miette::miette!("{e}"),
        }
    })
}

/// Realise `targets`, showing progress, creating out-links as GC roots. Returns the output
/// paths in order (targets in order, outputs sorted by name).
pub fn realise(
    store: &Store,
    targets: &[Target],
    opts: &RealiseOpts,
    builtins: Builtins,
) -> Result<Vec<StorePath>, DriverError> {
    let mut ui = Ui::new(opts.progress);
    let r = buildit_driver::build::realise(
        store,
        targets,
        opts.schedule.clone(),
        builtins,
        opts.out_link.as_deref(),
        &mut |e| ui.event(e),
    );
    ui.finish();
    r
}

/// Run `buildit realise`: the configuration is read (from the spec directory up, see
/// docs/config.md), missing paths are looked up in its repositories and `--discover`ed ones
/// before anything is built, and `push=True` / `--push` uploads what was built.
pub fn run_realise(a: RealiseArgs) -> Result<ExitCode, DriverError> {
    use buildit_driver::share::{build_shared, SharedBuild, SharedEvent, Sharing, SubstituteMode};
    let start = a.drvs.first().map(PathBuf::from).filter(|p| p.is_dir());
    let config = buildit_driver::config::load(start.as_deref(), &a.share.cli_config())?;
    let mode = if a.share.no_substitute {
        SubstituteMode::Off
    } else if a.share.substitute_only {
        SubstituteMode::Only
    } else {
        SubstituteMode::On
    };
    let remote_settings = a.remote.settings(config.remote.as_ref());
    let sharing = Sharing::new(config, a.share.push, mode)?;
    let session =
        session(a.store_root.as_deref(), false).with_mirrors(sharing.config().fetch_mirrors());
    let store = session.open_store()?;
    let remote = match remote_settings {
        Some(s) => Some(buildit_driver::remote::connect(&store, &s)?),
        None => None,
    };
    if let Some(note) = remote.as_ref().and_then(|r| r.fallback_note.as_deref()) {
        notice(a.json, note);
    }
    let req = buildit_driver::build::BuildRequest {
        args: &a.drvs,
        expr: a.expr.as_deref(),
        attr: a.attr.as_deref(),
        typecheck: !a.no_typecheck,
    };
    let plan = buildit_driver::build::plan(&session, &store, &req, &mut |l| notice(a.json, l))?;
    let targets = &plan.targets;
    let mut schedule = ScheduleOptions::default();
    if let Some(j) = a.jobs {
        schedule.jobs = j.max(1);
    }
    schedule.keep_going = a.keep_going;
    schedule.substitute_only = sharing.mode() == SubstituteMode::Only;
    schedule.substitute_fixed_only = a.share.substitute_sources_only;
    schedule.remote = remote.as_ref().and_then(|r| r.hook());
    schedule.build = BuildOptions {
        cores: a.cores.unwrap_or(0),
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
        return run_check(&store, targets, schedule, progress);
    }
    let out_link = if a.no_out_link {
        None
    } else {
        Some(a.out_link.clone().unwrap_or_else(|| "result".into()))
    };
    let mut ui: Option<Ui> = None;
    let r = build_shared(
        &store,
        &sharing,
        &plan,
        SharedBuild {
            schedule,
            builtins: session.builtins(),
            out_link: out_link.as_deref(),
        },
        &mut |e| match e {
            SharedEvent::Phase { start: true } => ui = Some(Ui::new(progress)),
            SharedEvent::Phase { start: false } => {
                if let Some(mut u) = ui.take() {
                    u.finish();
                }
            }
            SharedEvent::Build(e) => {
                if let Some(u) = ui.as_mut() {
                    u.event(e);
                }
            }
            SharedEvent::Note(line) => notice(a.json, &line),
            SharedEvent::Upload { repo, event } => upload_event(a.json, &repo, &event),
            SharedEvent::Uploaded { repo, report } => {
                if a.json {
                    eprintln!(
                        "{}",
                        serde_json::json!({
                            "event": "upload-report",
                            "repository": repo,
                            "uploaded": report.uploaded.len(),
                            "skipped": report.skipped.len(),
                            "bytes": report.bytes,
                            "requests": report.requests,
                        })
                    );
                }
            }
        },
    );
    if let Some(mut u) = ui.take() {
        u.finish();
    }
    if let Some(b) = remote.as_ref().and_then(|r| r.builder.as_ref()) {
        remote_report(a.json, b);
    }
    let paths = r?;
    if a.json {
        let drvs: Vec<String> = targets.iter().map(|t| t.drv.to_string()).collect();
        let outputs: Vec<String> = paths.iter().map(ToString::to_string).collect();
        println!(
            "{}",
            serde_json::json!({ "drvs": drvs, "outputs": outputs, "out_link": out_link })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for p in paths {
        let _ = writeln!(out, "{p}");
    }
    Ok(ExitCode::SUCCESS)
}

/// An upload's progress: a JSON `upload` event with `--json`, with `-v` a line per path sent.
pub fn upload_event(json: bool, repo: &str, e: &buildit_share::upload::UploadEvent) {
    use buildit_share::upload::UploadEvent;
    if json {
        let v = match e {
            UploadEvent::Checked { total, missing } => {
                serde_json::json!({ "event": "upload-checked", "repository": repo, "total": total, "missing": missing })
            }
            UploadEvent::Skipped(p) => {
                serde_json::json!({ "event": "upload-skipped", "repository": repo, "path": p.to_string() })
            }
            UploadEvent::Started(p) => {
                serde_json::json!({ "event": "upload-started", "repository": repo, "path": p.to_string() })
            }
            UploadEvent::Uploaded { path, bytes } => {
                serde_json::json!({ "event": "uploaded", "repository": repo, "path": path.to_string(), "bytes": bytes })
            }
        };
        eprintln!("{v}");
    } else if crate::output::get().verbose {
        if let UploadEvent::Uploaded { path, bytes } = e {
            eprintln!("uploaded {path} to '{repo}' ({bytes} bytes)");
        }
    }
}

fn run_check(
    store: &Store,
    targets: &[Target],
    schedule: ScheduleOptions,
    progress: Progress,
) -> Result<ExitCode, DriverError> {
    let mut sched = Scheduler::new(store, schedule);
    let mut differs = false;
    for t in targets {
        let mut ui = Ui::new(progress);
        let r = sched.check(&t.drv, &mut |e| ui.event(e));
        ui.finish();
        let rep = r?;
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
        if rep.differing.is_empty() && progress != Progress::Json {
            eprintln!("{}: rebuilt identically", t.drv);
        }
    }
    Ok(if differs {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Run `buildit log`.
pub fn run_log(a: LogArgs) -> Result<ExitCode, DriverError> {
    let store = session(a.store_root.as_deref(), false).open_store()?;
    let bytes = buildit_driver::build::read_log(&store, &a.path)?;
    let _ = std::io::stdout().lock().write_all(&bytes);
    Ok(ExitCode::SUCCESS)
}
