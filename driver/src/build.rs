//! What a build command names, turned into build targets, and realising them: container spec
//! directories (compiled, checked, patches pinned, evaluated), `.bld` files and `-E`
//! expressions (evaluated, `-A` selects), `.drv` store paths (`DRV!out,dev` selects outputs).
//! Realising leaves out-links as GC roots; the logs of built derivations are read back here.

use std::path::{Path, PathBuf};

use buildit_builder::{BuildEvent, Builtins, ScheduleOptions, Scheduler, Substituter, Target};
use buildit_eval::FoundDrv;
use buildit_store::{Store, StoreError, StorePath};

use crate::error::{DriverError, Result};
use crate::eval::EvalTarget;
use crate::session::Session;

/// What a build command line names.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildRequest<'a> {
    /// Spec directories, `.bld` files (or directories with a default file) and `.drv` paths.
    pub args: &'a [String],
    /// An expression to build.
    pub expr: Option<&'a str>,
    /// The attribute path selected in evaluated files and expressions.
    pub attr: Option<&'a str>,
    /// Type-check programs before evaluating them.
    pub typecheck: bool,
}

/// Build targets for the derivations an evaluation found (each with the output it selects).
pub fn targets_of(found: Vec<FoundDrv>) -> Result<Vec<Target>> {
    found
        .into_iter()
        .map(|f| {
            Ok(Target {
                drv: crate::eval::drv_path(&f)?,
                outputs: Some(std::iter::once(f.output).collect()),
            })
        })
        .collect()
}

/// Whether a command-line argument names a source to evaluate (a `.bld`/`.nix` file or a
/// directory with a default file) rather than a store path.
pub fn is_source(arg: &str) -> bool {
    let p = Path::new(arg);
    !arg.starts_with(buildit_store::STORE_DIR)
        && !p.is_symlink()
        && (arg.ends_with(".bld")
            || arg.ends_with(".nix")
            || p.join("default.bld").is_file()
            || p.join("default.nix").is_file())
}

/// Whether a command-line argument is a container spec directory.
pub fn is_spec_dir(arg: &str) -> bool {
    Path::new(arg).join("container.yaml").is_file()
}

/// `DRV[!out,dev]`: a `.drv` store path (or a link to one) and the outputs to build.
pub fn parse_drv_target(store: &Store, arg: &str) -> Result<Target> {
    let (path, outs) = match arg.rsplit_once('!') {
        Some((p, o)) => (p, Some(o)),
        None => (arg, None),
    };
    let (drv, sub) = store.resolve(path)?;
    if !sub.is_empty() || !drv.is_derivation() {
        return Err(DriverError::request(
            "buildit::build::not-a-derivation",
            format!("{path} is not a derivation (.drv) store path"),
            "give a .drv store path (evaluate a file first)",
        ));
    }
    Ok(Target {
        drv,
        outputs: outs.map(|o| o.split(',').map(str::to_string).collect()),
    })
}

/// A container spec directory: compile the YAML (fetching URL patches without a recorded hash
/// once and writing their hashes to `buildit.lock`), type-check and evaluate exactly the
/// compiled text. `notice` hears the transcript: what is built, each package, each hash.
pub fn spec_targets(
    session: &Session,
    store: &Store,
    dir: &Path,
    typecheck: bool,
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<Target>> {
    Ok(spec_build(session, store, dir, typecheck, notice)?.targets)
}

/// A container spec being built: its targets and what the transcript and `push=True` say
/// of it.
#[derive(Clone, Debug)]
pub struct SpecBuild {
    /// The spec directory.
    pub dir: PathBuf,
    /// `AUTHOR/NAME-VERSION` (the transcript's title).
    pub title: String,
    /// `NAME-VERSION`.
    pub id: String,
    /// The image's type, when the spec makes one.
    pub image: Option<buildit_yaml::spec::ImageType>,
    pub targets: Vec<Target>,
}

/// [`spec_targets`] with what is known of the spec.
pub fn spec_build(
    session: &Session,
    store: &Store,
    dir: &Path,
    typecheck: bool,
    notice: &mut dyn FnMut(&str),
) -> Result<SpecBuild> {
    let session = &crate::spec::spec_session(session, dir)?;
    let compiled =
        crate::spec::compile_fetching(session, store, &|s| crate::spec::compile(s, dir), notice)?;
    let vars: std::collections::BTreeMap<&str, &str> = compiled
        .spec
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    let get = |k: &str, d: &str| vars.get(k).copied().unwrap_or(d).to_string();
    let who = vars
        .get("author")
        .map(|a| format!("{a}/"))
        .unwrap_or_default();
    notice(&format!(
        "Building {who}{}-{}",
        get("name", "image"),
        get("version", "latest")
    ));
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
        notice(&format!(
            "Processing {what} for {}/{}.",
            get("os", "linux"),
            get("arch", "amd64")
        ));
    }
    let found = crate::spec::evaluate_spec(session, &compiled, typecheck)?;
    let targets = targets_of(found)?;
    for t in &targets {
        notice(&format!("HASH: {}", t.drv.hash_part()));
    }
    let id = format!("{}-{}", get("name", "image"), get("version", "latest"));
    Ok(SpecBuild {
        dir: dir.to_path_buf(),
        title: format!("{who}{id}"),
        id,
        image: compiled.spec.image.as_ref().map(|i| i.kind),
        targets,
    })
}

/// Evaluate a file or expression and return the derivations it denotes as build targets.
pub fn evaluated_targets(session: &Session, t: &EvalTarget<'_>) -> Result<Vec<Target>> {
    let mut ev = session.evaluator();
    targets_of(crate::eval::instantiate(&mut ev, t)?)
}

/// Every target a build command line names, in order (the `-E` expression last).
pub fn targets(
    session: &Session,
    store: &Store,
    req: &BuildRequest<'_>,
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<Target>> {
    Ok(plan(session, store, req, notice)?.targets)
}

/// What a build command line names: every target in order, and the container specs among
/// them.
#[derive(Clone, Debug, Default)]
pub struct BuildPlan {
    pub targets: Vec<Target>,
    pub specs: Vec<SpecBuild>,
}

/// [`targets`] with the specs they came from.
pub fn plan(
    session: &Session,
    store: &Store,
    req: &BuildRequest<'_>,
    notice: &mut dyn FnMut(&str),
) -> Result<BuildPlan> {
    if req.args.is_empty() && req.expr.is_none() {
        return Err(DriverError::request(
            "buildit::build::nothing",
            "nothing to build",
            "give a .bld FILE (with -A ATTR), -E EXPR, or .drv paths (see `buildit realise --help`)",
        ));
    }
    let eval = |file, expr| EvalTarget {
        file,
        expr,
        attr: req.attr,
        typecheck: req.typecheck,
    };
    let mut targets = Vec::new();
    let mut specs = Vec::new();
    for d in req.args {
        if is_spec_dir(d) {
            let s = spec_build(session, store, Path::new(d), req.typecheck, notice)?;
            targets.extend(s.targets.iter().cloned());
            specs.push(s);
        } else if is_source(d) {
            targets.extend(evaluated_targets(session, &eval(Some(d.as_str()), None))?);
        } else {
            targets.push(parse_drv_target(store, d)?);
        }
    }
    if let Some(e) = req.expr {
        targets.extend(evaluated_targets(session, &eval(None, Some(e)))?);
    }
    Ok(BuildPlan { targets, specs })
}

/// Realise `targets` with `builtins`, reporting progress to `on_event`, then make out-links
/// as GC roots when `out_link` names them (`NAME`, `NAME-2`, ..., `NAME-<output>`). Returns the
/// output paths in order (targets in order, outputs sorted by name).
pub fn realise(
    store: &Store,
    targets: &[Target],
    schedule: ScheduleOptions,
    builtins: Builtins,
    out_link: Option<&str>,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<Vec<StorePath>> {
    realise_with(store, targets, schedule, builtins, None, out_link, on_event)
}

/// [`realise`], looking missing paths up with `substituter` first.
pub fn realise_with(
    store: &Store,
    targets: &[Target],
    schedule: ScheduleOptions,
    builtins: Builtins,
    substituter: Option<&dyn Substituter>,
    out_link: Option<&str>,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<Vec<StorePath>> {
    let mut sched = Scheduler::new(store, schedule).with_builtins(builtins);
    if let Some(s) = substituter {
        sched = sched.with_substituter(s);
    }
    let realised = sched.realise(targets, on_event)?;
    let mut paths = Vec::new();
    for (i, (_, outs)) in realised.iter().enumerate() {
        for (name, p) in outs {
            if let Some(base) = out_link {
                let mut link = base.to_string();
                if i > 0 {
                    link.push_str(&format!("-{}", i + 1));
                }
                if name != "out" {
                    link.push_str(&format!("-{name}"));
                }
                store.add_root(Path::new(&link), p)?;
            }
            paths.push(p.clone());
        }
    }
    Ok(paths)
}

/// The build log of a derivation, or of the derivation an output path was built by.
pub fn read_log(store: &Store, arg: &str) -> Result<Vec<u8>> {
    let (p, _) = store.resolve(arg)?;
    let drv = if p.is_derivation() {
        p
    } else {
        match store.path_info(&p)? {
            Some(info) => info.deriver.ok_or_else(|| {
                DriverError::request(
                    "buildit::build::no-log",
                    format!("{p} was not built here (it has no deriver)"),
                    "only built paths have logs; sources were added, not built",
                )
            })?,
            None => return Err(StoreError::NotValid(p).into()),
        }
    };
    buildit_builder::log::read_log(store.layout(), &drv).map_err(|e| {
        DriverError::request(
            "buildit::build::no-log",
            format!("no log for {drv}: {e}"),
            "the derivation was never built on this machine, or its log was removed",
        )
    })
}
