//! `buildit outdated` and `buildit update`: a spec's (or a package's) packages against what is
//! newer, from evaluation and the lock alone, and the re-lock that takes the newer Debian
//! versions.
//!
//! The Debian packages of a closure are the `.deb` downloads among the derivations the images
//! need (every `mirror://debian…/pool/…` fetch, matched with the lock's entries by pool
//! path): the Debian runtime packages an image lays out at `/`, and the toolchain its
//! packages are built with. Nothing is built: evaluating writes `.drv` files, which are read
//! back. Newer versions come from the apt indexes (the machine's, or a private apt root's) of
//! the lock's suite; packages built from source are compared with the versions the package
//! set knows of their atoms.
//!
//! A spec's lock is its directory's `debian.lock` when it has one (see
//! [`crate::spec::spec_session`]); `update` writes that file, so the spec, the lock and the
//! images it gives stay together. `update --security-only` takes only the security suites'
//! newer versions and keeps every other entry ([`buildit_debian::updates::security_relock`]);
//! without it the lock's roots are resolved again against the current indexes, as
//! `buildit debian lock` refreshes a lock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use buildit_builder::Target;
use buildit_debian::lock::{parse_lock, render_lock, Lock};
use buildit_debian::updates::{self, LockChange, Newer};
use buildit_debian::{apt_index_files, Index, DEFAULT_LISTS_DIR};
use buildit_store::{Store, StorePath};
use serde::Serialize;

use crate::diff::{image_facts, ImageDiff, ImageFacts};
use crate::error::{DriverError, Result};
use crate::session::{DebianLock, Session};
use crate::spec::{spec_session, SPEC_DEBIAN_LOCK};

/// The Debian lock a session evaluates with, and where it is (`None`: the embedded one).
#[derive(Clone, Debug)]
pub struct LockInUse {
    pub lock: Lock,
    pub path: Option<PathBuf>,
}

impl LockInUse {
    /// The lock file's path, or `embedded`.
    pub fn shown(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "embedded".to_string(), |p| p.display().to_string())
    }
}

/// The session's Debian lock, parsed.
pub fn lock_in_use(session: &Session) -> Result<LockInUse> {
    let (text, path) = match session.debian_lock() {
        Some(l) => (l.text.as_str(), Some(l.path.clone())),
        None => (embedded_lock(), None),
    };
    let lock = parse_lock(text).map_err(|e| {
        DriverError::request(
            "buildit::debian::bad-lock",
            format!("the Debian lock is not readable: {e}"),
            "regenerate it: buildit debian lock PKG... --output FILE",
        )
    })?;
    Ok(LockInUse { lock, path })
}

fn embedded_lock() -> &'static str {
    buildit_stdlib::embedded::FILES
        .iter()
        .find(|(p, _)| *p == buildit_stdlib::embedded::DEBIAN_LOCK)
        .map_or("", |(_, t)| t)
}

/// The apt indexes of `lock`'s suite and architecture: the private apt root's lists, or the
/// machine's.
pub fn load_index(lock: &Lock, apt_root: Option<&Path>) -> Result<Index> {
    let lists = apt_root.map_or_else(
        || PathBuf::from(DEFAULT_LISTS_DIR),
        |r| r.join("var/lib/apt/lists"),
    );
    let files = apt_index_files(&lists, &lock.suite, &lock.architecture)?;
    Ok(Index::load(&files)?)
}

/// What `outdated` and `update` are given: a container spec directory, or a package (an atom
/// of the set or a directory holding pkg.yaml, packed as `buildit image` packs it).
#[derive(Clone, Debug)]
pub enum Subject {
    Spec(PathBuf),
    Package(String),
}

impl Subject {
    /// A spec directory when `arg` holds container.yaml, else a package.
    pub fn parse(arg: &str) -> Subject {
        if crate::build::is_spec_dir(arg) {
            Subject::Spec(PathBuf::from(arg))
        } else {
            Subject::Package(arg.to_string())
        }
    }
}

/// The subject evaluated: the session it was evaluated with (its lock) and the derivations
/// it denotes (for a spec, its images).
struct Evaluated {
    session: Session,
    targets: Vec<Target>,
}

fn evaluate(session: &Session, store: &Store, subject: &Subject) -> Result<Evaluated> {
    match subject {
        Subject::Spec(dir) => {
            let session = spec_session(session, dir)?;
            let b = crate::build::spec_build(&session, store, dir, true, &mut |_| {})?;
            Ok(Evaluated {
                session,
                targets: b.targets,
            })
        }
        Subject::Package(what) => {
            let drv = crate::image::image_derivation(session, store, what, "oci", &mut |_| {})?;
            Ok(Evaluated {
                session: session.clone(),
                targets: vec![Target::all(drv)],
            })
        }
    }
}

/// The pool paths of the Debian packages the derivations `drvs` need, however deep.
fn debian_downloads(store: &Store, drvs: &[StorePath]) -> Result<BTreeSet<String>> {
    let args: Vec<String> = drvs.iter().map(ToString::to_string).collect();
    let all = crate::store::read_derivations(store.layout(), &args, true)?;
    let mut out = BTreeSet::new();
    for d in all.values().filter(|d| d.builder == "builtin:fetchurl") {
        for url in d
            .env
            .get("urls")
            .into_iter()
            .flat_map(|u| u.split_whitespace())
        {
            let pool = url
                .strip_prefix("mirror://debian/")
                .or_else(|| url.strip_prefix("mirror://debian-security/"));
            if let Some(p) = pool {
                out.insert(p.to_string());
            }
        }
    }
    Ok(out)
}

/// The image facts of the derivations that are images.
fn images_of(store: &Store, targets: &[Target]) -> Vec<ImageFacts> {
    targets
        .iter()
        .filter_map(|t| image_facts(store.layout(), &t.drv).ok())
        .collect()
}

/// A Debian package of the closure with a newer version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DebianNewer {
    #[serde(flatten)]
    pub newer: Newer,
    /// In an image (a runtime package), rather than only in the toolchain packages are built
    /// with.
    pub runtime: bool,
}

/// A package built from source whose atom has newer versions in the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetNewer {
    /// `category/name`.
    pub atom: String,
    pub version: String,
    /// The set's versions newer than `version`, newest first.
    pub newer: Vec<String>,
}

/// What `buildit outdated` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutdatedReport {
    /// The Debian lock (a path, or `embedded`).
    pub lock: String,
    pub suite: String,
    /// The images looked at (`name:tag`).
    pub images: Vec<String>,
    /// How many Debian packages the closure has, and how many packages built from a recipe
    /// of the set.
    pub debian_checked: usize,
    pub set_checked: usize,
    /// Security updates first, then by name.
    pub debian: Vec<DebianNewer>,
    pub set: Vec<SetNewer>,
}

/// `buildit outdated SUBJECT`: building nothing.
pub fn outdated(
    session: &Session,
    store: &Store,
    subject: &Subject,
    apt_root: Option<&Path>,
    set_file: Option<&str>,
) -> Result<OutdatedReport> {
    let ev = evaluate(session, store, subject)?;
    let lock = lock_in_use(&ev.session)?;
    let drvs: Vec<StorePath> = ev.targets.iter().map(|t| t.drv.clone()).collect();
    let pools = debian_downloads(store, &drvs)?;
    let images = images_of(store, &ev.targets);
    let runtime: BTreeSet<&str> = images
        .iter()
        .flat_map(|i| i.debian.iter().map(String::as_str))
        .collect();
    let closure: Vec<_> = lock
        .lock
        .packages
        .iter()
        .filter(|e| pools.contains(&e.filename))
        .collect();
    let index = load_index(&lock.lock, apt_root)?;
    let debian = updates::newer_versions(closure.iter().copied(), &index)
        .into_iter()
        .map(|newer| DebianNewer {
            runtime: runtime.contains(newer.name.as_str()),
            newer,
        })
        .collect();
    // the packages of the set in the images, and the versions the set knows of each
    let versions = set_versions(&ev.session, set_file)?;
    let mut atoms: Vec<(String, String)> = images
        .iter()
        .flat_map(|i| &i.packages)
        .filter(|p| !p.atom.is_empty())
        .map(|p| {
            let (key, _) = buildit_yaml::check::split_atom(&p.atom);
            (key, p.version.clone())
        })
        .collect();
    atoms.sort();
    atoms.dedup();
    let set_checked = atoms.len();
    let set_newer = atoms
        .into_iter()
        .filter_map(|(atom, version)| {
            let known = versions.get(&atom)?;
            let newer: Vec<String> = known
                .iter()
                .filter(|v| buildit_debian::compare_versions(v, &version).is_gt())
                .cloned()
                .collect();
            (!newer.is_empty()).then_some(SetNewer {
                atom,
                version,
                newer,
            })
        })
        .collect();
    Ok(OutdatedReport {
        lock: lock.shown(),
        suite: lock.lock.suite.clone(),
        images: images.iter().map(|i| i.reference.clone()).collect(),
        debian_checked: closure.len(),
        set_checked,
        debian,
        set: set_newer,
    })
}

/// The versions each atom has in the package set (`set_file`: the set that file evaluates
/// to, e.g. an overlay `(import <buildit>).pkgs.extend (self: super: { … })`; else the
/// session's), newest first.
fn set_versions(
    session: &Session,
    set_file: Option<&str>,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let Some(file) = set_file else {
        let set = crate::pkgset::package_set(session)?;
        return Ok(set
            .atoms
            .into_iter()
            .map(|(atom, a)| (atom, a.versions))
            .collect());
    };
    let expr = format!(
        "let atoms = (import {}).atoms; newestFirst = vs: builtins.sort (a: b: builtins.compareVersions a b > 0) (builtins.attrNames vs); in builtins.mapAttrs (a: vs: newestFirst vs) atoms",
        buildit_lang::text::quote(&crate::eval::absolute(file))
    );
    let mut ev = session.evaluator();
    crate::eval::query(&mut ev, &expr, "buildit::outdated::set")
}

/// What `buildit update DIR` is asked.
#[derive(Clone, Copy, Debug)]
pub struct UpdateRequest<'a> {
    pub dir: &'a Path,
    /// Take only the security suites' newer versions.
    pub security_only: bool,
    /// Read this private apt root's indexes instead of the machine's.
    pub apt_root: Option<&'a Path>,
    /// Compute and report, writing nothing.
    pub dry_run: bool,
}

/// An update, before anything is built: the lock's changes (already written to the spec's
/// `debian.lock` unless a dry run), and the spec's image derivations before and after.
#[derive(Clone, Debug)]
pub struct UpdatePlan {
    /// The lock updated from (a path, or `embedded`).
    pub old_lock: String,
    /// The spec's lock file (written when anything changed, unless a dry run).
    pub lock_file: PathBuf,
    pub written: bool,
    pub changes: Vec<LockChange>,
    /// The spec's derivations with the old lock and with the new one, in the same order.
    pub old: Vec<Target>,
    pub new: Vec<Target>,
}

/// Re-lock the spec in `req.dir` and evaluate it again (see the module documentation).
pub fn plan_update(
    session: &Session,
    store: &Store,
    req: &UpdateRequest<'_>,
) -> Result<UpdatePlan> {
    let dir = std::path::absolute(req.dir).unwrap_or_else(|_| req.dir.to_path_buf());
    let before = evaluate(session, store, &Subject::Spec(dir.clone()))?;
    let old = lock_in_use(&before.session)?;
    let index = load_index(&old.lock, req.apt_root)?;
    let new_lock = if req.security_only {
        updates::security_relock(&old.lock, &index)?
    } else {
        let roots: Vec<&str> = old.lock.roots.iter().map(String::as_str).collect();
        let packages = buildit_debian::resolve_for(&index, &roots, &old.lock.architecture)?;
        Lock {
            packages,
            ..old.lock.clone()
        }
    };
    let changes = updates::lock_changes(&old.lock, &new_lock);
    let lock_file = dir.join(SPEC_DEBIAN_LOCK);
    if changes.is_empty() {
        return Ok(UpdatePlan {
            old_lock: old.shown(),
            lock_file,
            written: false,
            changes,
            new: before.targets.clone(),
            old: before.targets,
        });
    }
    let text = render_lock(&new_lock, SPEC_DEBIAN_LOCK);
    if !req.dry_run {
        write_atomically(&lock_file, &text)?;
    }
    let lock = DebianLock {
        path: lock_file.clone(),
        text,
    };
    let after = evaluate(
        &session.clone().with_debian_lock(Some(lock)),
        store,
        &Subject::Spec(dir),
    )?;
    Ok(UpdatePlan {
        old_lock: old.shown(),
        lock_file,
        written: !req.dry_run,
        changes,
        old: before.targets,
        new: after.targets,
    })
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let err = |e: std::io::Error| {
        DriverError::request(
            "buildit::update::lock-write",
            format!("cannot write {}: {e}", path.display()),
            "check the spec directory's permissions",
        )
    };
    let tmp = path.with_extension("lock.tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// What `buildit update` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpdateReport {
    pub old_lock: String,
    pub lock_file: String,
    /// Whether the spec's lock file was written.
    pub written: bool,
    pub security_only: bool,
    /// Whether the new images were built.
    pub built: bool,
    pub changes: Vec<LockChange>,
    /// One per image of the spec, in order.
    pub images: Vec<ImageDiff>,
    /// Where the rebuilt spec was uploaded (`--push`, `push=True`): one per repository.
    pub pushed: Vec<Pushed>,
}

/// A repository an update uploaded the rebuilt spec to, as `buildit build --push` does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// The repository's name (its configured name, or its location).
    pub repository: String,
    /// Its upload location.
    pub location: String,
    /// The container record of each spec pushed: `LOCATION/containers/ID/HASH.json`.
    pub records: Vec<String>,
}

/// The report of `plan`, once the new images are built (`built`) or not; files are compared
/// where both images are in the store.
pub fn report(
    store: &Store,
    plan: &UpdatePlan,
    req: &UpdateRequest<'_>,
    built: bool,
    list_files: bool,
) -> Result<UpdateReport> {
    let mut images = Vec::new();
    for (a, b) in plan.old.iter().zip(&plan.new) {
        if image_facts(store.layout(), &b.drv).is_err() {
            continue;
        }
        let (oa, ob) = (built_output(store, &a.drv)?, built_output(store, &b.drv)?);
        images.push(crate::diff::diff_drvs(
            store,
            &a.drv,
            oa.as_ref(),
            &b.drv,
            ob.as_ref(),
            list_files,
        )?);
    }
    Ok(UpdateReport {
        old_lock: plan.old_lock.clone(),
        lock_file: plan.lock_file.display().to_string(),
        written: plan.written,
        security_only: req.security_only,
        built,
        changes: plan.changes.clone(),
        images,
        pushed: Vec::new(),
    })
}

/// The `out` output of `drv` when it is built in `store`.
fn built_output(store: &Store, drv: &StorePath) -> Result<Option<StorePath>> {
    let bytes = match std::fs::read(store.layout().physical(drv)) {
        Ok(b) => b,
        Err(_) => return Ok(None),
    };
    let Ok(d) = buildit_store::derivation::Derivation::decode(&bytes) else {
        return Ok(None);
    };
    let Some(out) = d.outputs.get("out").and_then(|o| o.path.clone()) else {
        return Ok(None);
    };
    Ok(store.is_valid(&out)?.then_some(out))
}
