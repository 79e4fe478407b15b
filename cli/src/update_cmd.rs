//! `buildit outdated`, `buildit update` and `buildit diff`: the update loop's commands. The
//! work is the driver's (`buildit_driver::update`, `buildit_driver::diff`); this module parses
//! the arguments, builds the updated images with the build command's progress, and prints the
//! reports (text, or one JSON object on stdout with `--json`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use buildit_driver::diff::ImageDiff;
use buildit_driver::update::{OutdatedReport, Subject, UpdateReport, UpdateRequest};
use buildit_driver::DriverError;
use clap::Args;

use crate::common::session;

/// `buildit outdated DIR|ATOM`
#[derive(Args, Debug)]
pub struct OutdatedArgs {
    /// A container spec directory, a package atom of the set, or a directory holding pkg.yaml
    #[arg(value_name = "DIR|ATOM")]
    pub what: String,
    /// Read the indexes of this private apt root (its var/lib/apt/lists) instead of the
    /// machine's
    #[arg(long, value_name = "DIR")]
    pub apt_root: Option<PathBuf>,
    /// Compare the packages built from the set with the versions of the package set FILE
    /// evaluates to (e.g. an overlay `(import <buildit>).pkgs.extend (self: super: { … })`)
    #[arg(long, value_name = "FILE")]
    pub set: Option<String>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// `buildit update DIR`
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The container spec directory (its debian.lock is written)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Take only the newer versions of the security suites (bookworm-security); every other
    /// package stays as locked
    #[arg(long)]
    pub security_only: bool,
    /// Read the indexes of this private apt root (its var/lib/apt/lists) instead of the
    /// machine's
    #[arg(long, value_name = "DIR")]
    pub apt_root: Option<PathBuf>,
    /// Write the lock but build nothing (packages are compared from the evaluated images)
    #[arg(long)]
    pub no_build: bool,
    /// Write nothing and build nothing: report what an update would change
    #[arg(long, conflicts_with = "no_build")]
    pub dry_run: bool,
    /// List every file that differs (default: the counts)
    #[arg(long)]
    pub files: bool,
    /// Name of the out-link of the rebuilt images
    #[arg(short = 'o', long, value_name = "NAME", default_value = "result")]
    pub out_link: String,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
    /// The repositories the rebuild looks packages up in and uploads to (`--push`, as
    /// `buildit build --push`)
    #[command(flatten)]
    pub share: crate::args::ShareFlags,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// `buildit diff IMAGE IMAGE`
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The old image: an out-link (./result) or a store path
    #[arg(value_name = "OLD")]
    pub old: String,
    /// The new image
    #[arg(value_name = "NEW")]
    pub new: String,
    /// List every file that differs (default: the counts)
    #[arg(long)]
    pub files: bool,
    /// Print the difference as one JSON object
    #[arg(long)]
    pub json: bool,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, DriverError> {
    serde_json::to_string_pretty(v)
        .map_err(|e| DriverError::request("buildit::cli::json", e.to_string(), "this is a bug"))
}

/// Run `buildit outdated`.
pub fn run_outdated(a: OutdatedArgs) -> Result<ExitCode, DriverError> {
    let session = session(a.store_root.as_deref(), false);
    let store = session.open_store()?;
    let r = buildit_driver::update::outdated(
        &session,
        &store,
        &Subject::parse(&a.what),
        a.apt_root.as_deref(),
        a.set.as_deref(),
    )?;
    if a.json {
        println!("{}", json_text(&r)?);
    } else {
        print!("{}", render_outdated(&r));
    }
    Ok(ExitCode::SUCCESS)
}

/// `outdated`'s report as text.
pub fn render_outdated(r: &OutdatedReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} (Debian lock: {}, {})",
        if r.images.is_empty() {
            "(no image)".to_string()
        } else {
            r.images.join(", ")
        },
        r.lock,
        r.suite
    );
    let _ = writeln!(
        s,
        "Debian packages with newer versions: {} of {}",
        r.debian.len(),
        r.debian_checked
    );
    for d in &r.debian {
        let n = &d.newer;
        let used = if d.runtime { "runtime" } else { "build" };
        let _ = write!(
            s,
            "  {} {} -> {} ({}; {used}",
            n.name, n.locked, n.newest, n.newest_suite
        );
        match (&n.security, &n.security_suite) {
            (Some(v), Some(suite)) if *v != n.newest => {
                let _ = write!(s, "; security update {v} in {suite}");
            }
            (Some(_), _) => s.push_str("; security update"),
            _ => {}
        }
        s.push_str(")\n");
    }
    let _ = writeln!(
        s,
        "Packages of the set with newer versions: {} of {}",
        r.set.len(),
        r.set_checked
    );
    for p in &r.set {
        let _ = writeln!(s, "  {} {} -> {}", p.atom, p.version, p.newer.join(", "));
    }
    s
}

/// Run `buildit update`.
pub fn run_update(a: UpdateArgs) -> Result<ExitCode, DriverError> {
    let session = session(a.store_root.as_deref(), false);
    let store = session.open_store()?;
    let req = UpdateRequest {
        dir: &a.dir,
        security_only: a.security_only,
        apt_root: a.apt_root.as_deref(),
        dry_run: a.dry_run,
    };
    let plan = buildit_driver::update::plan_update(&session, &store, &req)?;
    let build = !a.no_build && !a.dry_run && !plan.changes.is_empty();
    let mut pushed = Vec::new();
    if build {
        pushed = rebuild(&a, &session, &store, &plan)?;
    }
    let mut r = buildit_driver::update::report(&store, &plan, &req, build, a.files)?;
    r.pushed = pushed;
    if a.json {
        println!("{}", json_text(&r)?);
    } else {
        print!("{}", render_update(&r));
    }
    Ok(ExitCode::SUCCESS)
}

/// Build the updated spec as `buildit build DIR` does, with the spec's new lock: missing
/// paths are looked up in the configured repositories, and with `--push` (or `push=True`)
/// what was built is uploaded with the spec and its images. The repositories uploaded to.
fn rebuild(
    a: &UpdateArgs,
    session: &buildit_driver::Session,
    store: &buildit_store::Store,
    plan: &buildit_driver::update::UpdatePlan,
) -> Result<Vec<buildit_driver::update::Pushed>, DriverError> {
    use crate::build_cmd::{upload_event, Progress};
    use buildit_driver::share::{build_shared, SharedBuild, SharedEvent, Sharing, SubstituteMode};
    let config = buildit_driver::config::load(Some(&a.dir), &a.share.cli_config())?;
    let mode = if a.share.no_substitute {
        SubstituteMode::Off
    } else if a.share.substitute_only {
        SubstituteMode::Only
    } else {
        SubstituteMode::On
    };
    let sharing = Sharing::new(config, a.share.push, mode)?;
    let lock = buildit_driver::session::DebianLock::read(&plan.lock_file)?;
    let session = session
        .clone()
        .with_debian_lock(Some(lock))
        .with_mirrors(sharing.config().fetch_mirrors());
    let dir = a.dir.display().to_string();
    let req = buildit_driver::build::BuildRequest {
        args: std::slice::from_ref(&dir),
        expr: None,
        attr: None,
        typecheck: true,
    };
    let json = a.json;
    let notice = |l: &str| crate::build_cmd::notice(json, l);
    let build_plan = buildit_driver::build::plan(&session, store, &req, &mut |l| notice(l))?;
    let schedule = buildit_builder::ScheduleOptions {
        substitute_only: sharing.mode() == SubstituteMode::Only,
        substitute_fixed_only: a.share.substitute_sources_only,
        ..Default::default()
    };
    let progress = if json {
        Progress::Json
    } else {
        Progress::auto()
    };
    let mut ui: Option<crate::progress::Ui> = None;
    let r = build_shared(
        store,
        &sharing,
        &build_plan,
        SharedBuild {
            schedule,
            builtins: session.builtins(),
            out_link: Some(&a.out_link),
        },
        &mut |e| match e {
            SharedEvent::Phase { start: true } => ui = Some(crate::progress::Ui::new(progress)),
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
            SharedEvent::Note(line) => notice(&line),
            SharedEvent::Upload { repo, event } => upload_event(json, &repo, &event),
            SharedEvent::Uploaded { .. } => {}
        },
    );
    if let Some(mut u) = ui.take() {
        u.finish();
    }
    r?;
    let mut records = Vec::new();
    for s in &build_plan.specs {
        if let Some(k) = buildit_driver::share::container_record_key(store, s)? {
            records.push(k);
        }
    }
    Ok(sharing
        .push_targets()
        .map(|t| {
            let location = t.upload.as_ref().unwrap_or(&t.download).display();
            buildit_driver::update::Pushed {
                repository: t.name.clone(),
                records: records
                    .iter()
                    .map(|k| format!("{}/{k}", location.trim_end_matches('/')))
                    .collect(),
                location,
            }
        })
        .collect())
}

/// `update`'s report as text.
pub fn render_update(r: &UpdateReport) -> String {
    let mut s = String::new();
    let which = if r.security_only {
        "security updates"
    } else {
        "updates"
    };
    if r.changes.is_empty() {
        let _ = writeln!(
            s,
            "Debian lock {}: up to date (no {which} in the indexes)",
            r.old_lock
        );
        return s;
    }
    let _ = writeln!(
        s,
        "Debian lock: {} ({which}), {} {}",
        crate::output::plural(r.changes.len(), "package changed", "packages changed"),
        if r.written {
            "written to"
        } else {
            "not written (--dry-run) to"
        },
        r.lock_file
    );
    for c in &r.changes {
        let _ = writeln!(
            s,
            "  {} {} -> {}{}",
            c.name,
            c.old.as_deref().unwrap_or("(none)"),
            c.new.as_deref().unwrap_or("(removed)"),
            c.mirror
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
    }
    for d in &r.images {
        if d.identical {
            let _ = writeln!(s, "Image {} unchanged", d.new.reference);
            continue;
        }
        let _ = writeln!(
            s,
            "Image {} changed: {}",
            d.new.reference,
            d.new.image.as_deref().unwrap_or(if r.built {
                "(not built)"
            } else {
                "(not built: --no-build)"
            })
        );
        s.push_str(&render_changes(d, "  "));
    }
    for p in &r.pushed {
        let _ = writeln!(s, "Pushed to '{}' ({})", p.repository, p.location);
        for rec in &p.records {
            let _ = writeln!(s, "  {rec}");
        }
    }
    s
}

/// Run `buildit diff`.
pub fn run_diff(a: DiffArgs) -> Result<ExitCode, DriverError> {
    let store = session(a.store_root.as_deref(), false).open_store()?;
    let d = buildit_driver::diff::diff(&store, &a.old, &a.new, a.files)?;
    if a.json {
        println!("{}", json_text(&d)?);
    } else {
        let mut s = format!(
            "{} {} -> {} {}\n",
            d.old.reference,
            d.old.image.as_deref().unwrap_or(""),
            d.new.reference,
            d.new.image.as_deref().unwrap_or("")
        );
        if d.identical {
            s.push_str("identical\n");
        } else {
            s.push_str(&render_changes(&d, ""));
        }
        print!("{s}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The package and file changes of a comparison, each line after `indent`.
pub fn render_changes(d: &ImageDiff, indent: &str) -> String {
    let mut s = String::new();
    if d.packages.is_empty() {
        let _ = writeln!(s, "{indent}packages: no change");
    } else {
        let _ = writeln!(s, "{indent}packages:");
    }
    for p in &d.packages {
        let (sign, what) = match p.change {
            "added" => ("+", p.new.clone().unwrap_or_default()),
            "removed" => ("-", p.old.clone().unwrap_or_default()),
            "rebuilt" => (
                "~",
                format!("{} (rebuilt)", p.new.as_deref().unwrap_or_default()),
            ),
            _ => (
                "~",
                format!(
                    "{} -> {}",
                    p.old.as_deref().unwrap_or_default(),
                    p.new.as_deref().unwrap_or_default()
                ),
            ),
        };
        let _ = writeln!(s, "{indent}  {sign} {} {what} ({})", p.name, p.kind);
    }
    match &d.files {
        None => {
            let _ = writeln!(s, "{indent}files: not compared (an image is not built)");
        }
        Some(f) => {
            let _ = write!(
                s,
                "{indent}files: {} added, {} removed, {} changed, {} unchanged",
                f.added, f.removed, f.changed, f.unchanged
            );
            if d.file_changes.is_none() && f.added + f.removed + f.changed > 0 {
                s.push_str(" (--files lists them)");
            }
            s.push('\n');
        }
    }
    for f in d.file_changes.iter().flatten() {
        let sign = match f.change {
            "added" => "+",
            "removed" => "-",
            _ => "~",
        };
        let _ = writeln!(
            s,
            "{indent}  {sign} {}{}",
            f.path,
            f.package
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        );
    }
    s
}
