//! The scheduler: realises `.drv` store paths.
//!
//! 1. Load the derivation graph from the store (`.drv` files, decoded), starting at the targets
//!    and descending only into derivations whose wanted outputs are not all valid (a
//!    derivation whose wanted outputs are valid needs none of its inputs). Every loaded
//!    derivation's output paths are recomputed from its hash modulo fixed outputs and a
//!    mismatch refused (a hand-made `.drv` cannot claim another derivation's output), and a
//!    `builtin:` builder that needs a fixed output is refused for a derivation without one,
//!    before anything is built.
//! 2. Substitution (with a [`Substituter`]): every missing wanted output of that graph is
//!    looked up at once ([`Substituter::query`], one batch; [`BuildEvent::Looked`]). The graph
//!    is then walked again from the targets: a derivation whose missing wanted outputs are all
//!    offered is substituted instead of built, and its inputs are not descended into (unless
//!    another derivation that is built needs them). Every chosen path is fetched in one call
//!    ([`Substituter::fetch`], parallel inside; [`BuildEvent::Substituted`] per path). A path
//!    that was offered but whose archive has gone is built instead (the walk is redone
//!    without it). Any other fetch failure (a download that fails its verification, a
//!    refused archive, a repository that stops answering) fails the realisation with that
//!    error, and nothing it fetched is registered: unlike Nix, which falls back to building
//!    when a substitute is bad, a repository that serves tampered data is something the user
//!    must hear about, not a slow build. With [`ScheduleOptions::substitute_only`] nothing is
//!    built: any output no repository offers is an error naming the paths, before anything
//!    is fetched.
//! 3. Build topologically, up to `jobs` at once (one thread each). The store is only touched
//!    from the scheduling thread (it is not `Sync`); worker threads run the sandbox (or a
//!    `builtin:` builder) and report back over a channel, together with their events.
//! 4. Before a build, its outputs are locked with the store's per-path locks (without blocking:
//!    a path locked by another process is retried) and their validity re-checked, so two
//!    concurrent `buildit realise` of one graph build every derivation once.
//! 5. After a build, fixed outputs are checked against their declared hash, then every output
//!    is registered (`register_output`: normalise, scan references among the input closure and
//!    the outputs, hash, move into the store) and recorded as the derivation's output.
//!
//! Progress is reported as [`BuildEvent`]s to a callback; the CLI renders them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildit_store::derivation::{DerivationError, FixedOutput, HashAlgo, HashMode, ModuloHasher};
use buildit_store::{Derivation, PathInfo, PathLock, Store, StorePath};
use serde::Serialize;
use sha2::Digest;

use crate::error::{BuildError, BuildFailure, FailReason};
use crate::log::LogSink;
use crate::request::{BuildOptions, BuildRequest};
use crate::sandbox::{BuildDir, Sandbox};

/// The only system built locally.
pub const HOST_SYSTEM: &str = "x86_64-linux";

/// Progress of a realisation, for display.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildEvent {
    /// What will happen: number of builds and of paths to substitute.
    Planned {
        builds: usize,
        substitutions: usize,
    },
    Started {
        drv: StorePath,
        name: String,
    },
    LogLine {
        drv: StorePath,
        line: String,
    },
    Finished {
        drv: StorePath,
        name: String,
        outputs: Vec<StorePath>,
        #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
        duration: Duration,
        /// Built through a remote execution endpoint (executed there, or its ActionCache's
        /// result); absent for a local build.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote: Option<RemoteRun>,
    },
    Failed {
        drv: StorePath,
        name: String,
        reason: String,
        log_tail: Vec<String>,
        log_path: PathBuf,
    },
    /// The result of looking up the missing outputs in the repositories (one batch).
    Looked {
        found: Vec<StorePath>,
        missing: Vec<StorePath>,
    },
    /// The download of a substitute started (`bytes` compressed).
    Fetching {
        path: StorePath,
        repo: String,
        bytes: u64,
    },
    /// A path was substituted (downloaded, verified and registered).
    Substituted {
        path: StorePath,
    },
    Download {
        drv: StorePath,
        url: String,
        bytes: u64,
        total: Option<u64>,
    },
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// What the repositories offer of a set of paths ([`Substituter::query`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// Paths a repository offers together with their whole closure.
    pub found: BTreeSet<StorePath>,
    /// The other paths, each with what the repositories said (a refused record, an
    /// unreachable repository); empty when they simply do not have it.
    pub missing: BTreeMap<StorePath, Vec<String>>,
}

/// Fetches store paths from elsewhere (binary repositories) instead of building them.
pub trait Substituter {
    /// Which of `paths` (none of them valid in `store`) the repositories offer; asked once
    /// per realisation, with every missing output of the graph.
    fn query(&self, store: &Store, paths: &[StorePath]) -> Result<Availability, BuildError>;

    /// Make `paths` (offered by [`Substituter::query`]) and their closures valid in `store`,
    /// all at once. Returns the paths made valid: a path whose archive the repository no
    /// longer has is left out (with everything that needs it) and the scheduler builds it.
    /// Any other failure is an error and registers nothing.
    fn fetch(
        &self,
        store: &Store,
        paths: &[StorePath],
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<Vec<StorePath>, BuildError>;
}

/// How a remote build produced its outputs ([`RemoteExecutor::execute`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteRun {
    /// The endpoint ran the build.
    Executed,
    /// The endpoint's ActionCache had the result: nothing ran.
    Cached,
}

/// Why a remote build gave no outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteFailure {
    /// The endpoint could not be reached or broke off before a result arrived.
    Unavailable(String),
    /// The build ran there and its builder exited with this status (its output is in the
    /// log).
    Exit(i32),
    /// Anything else: a protocol error, a result that does not verify.
    Error(String),
}

/// Runs builds elsewhere: a remote execution endpoint (`buildit-remote` through the driver).
/// The scheduler hands it every request that [`RemoteExecutor::accepts`] (never a
/// `builtin:` builder); it creates the outputs at the given host paths, and the scheduler
/// registers them exactly as it registers a local build's (fixed-output check, normalisation,
/// references, hash).
pub trait RemoteExecutor: Send + Sync {
    /// Whether `req` goes to the endpoint (default: every request without network access;
    /// fixed-output derivations download here).
    fn accepts(&self, req: &BuildRequest) -> bool {
        !req.network
    }
    /// Whether a build the endpoint could not take ([`RemoteFailure::Unavailable`]) is built
    /// in the local sandbox instead of failing.
    fn fallback(&self) -> bool;
    /// Run `req`, creating each output at `outputs[name]` (host paths that do not exist yet)
    /// and writing the build's output to `log`.
    fn execute(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        log: &mut LogSink<'_>,
    ) -> Result<RemoteRun, RemoteFailure>;
}

/// A [`RemoteExecutor`] as a scheduling option.
#[derive(Clone)]
pub struct RemoteHook(pub Arc<dyn RemoteExecutor>);

impl std::fmt::Debug for RemoteHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteHook")
    }
}

/// What a `builtin:NAME` builder can see of the store and report while it runs. The store's
/// facts about the input closure are read on the scheduler's thread before the builtin starts
/// (the store's database connection stays on that thread).
pub struct BuiltinContext<'a, 'b> {
    drv: &'a StorePath,
    log: &'a mut LogSink<'b>,
    events: &'a mpsc::Sender<Msg>,
    layout: &'a buildit_store::StoreLayout,
    inputs: &'a BTreeMap<StorePath, PathInfo>,
}

impl BuiltinContext<'_, '_> {
    /// Where the store is.
    pub fn layout(&self) -> &buildit_store::StoreLayout {
        self.layout
    }
    /// The store's record of `p`, for the paths of the request's input closure only.
    pub fn input_info(&self, p: &StorePath) -> Option<&PathInfo> {
        self.inputs.get(p)
    }
    /// A line for the build log (and the progress display).
    pub fn log(&mut self, line: &str) {
        let _ = self.log.line(line);
    }
    /// Download progress.
    pub fn download(&mut self, url: &str, bytes: u64, total: Option<u64>) {
        let _ = self.events.send(Msg::Event(BuildEvent::Download {
            drv: self.drv.clone(),
            url: url.to_string(),
            bytes,
            total,
        }));
    }
}

/// An in-process builder for derivations whose `builder` is `builtin:NAME` (fetchers).
///
/// Builtins run in the `buildit` process, outside the sandbox. One that can reach the network
/// or the host's files (a fetcher) must only run for fixed-output derivations, where the
/// declared hash is what makes its result safe; that is the default
/// ([`BuiltinBuilder::fixed_output_only`]). A builtin that is a pure function of its store
/// inputs may build input-addressed derivations, but must then read nothing but the request's
/// input closure (see [`crate::input_path`]).
pub trait BuiltinBuilder: Send + Sync {
    /// Whether this builtin may only build fixed-output derivations (default: yes). The
    /// scheduler refuses to run it for any other derivation, before anything is built.
    fn fixed_output_only(&self) -> bool {
        true
    }

    /// Realise `req`, creating each output at `outputs[name]` (host paths that do not exist yet;
    /// a file or a directory). An `Err` is the failure message shown to the user.
    fn build(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &mut BuiltinContext<'_, '_>,
    ) -> Result<(), String>;
}

/// `builtin:NAME` → its builder.
pub type Builtins = BTreeMap<String, Arc<dyn BuiltinBuilder>>;

/// How to realise.
#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    /// Builds at once.
    pub jobs: usize,
    /// Per-build options (cores, limits, keep-failed).
    pub build: BuildOptions,
    /// Continue with independent builds after a failure.
    pub keep_going: bool,
    /// Build nothing: every missing output must come from the substituter, else the
    /// realisation fails naming the paths no repository offers.
    pub substitute_only: bool,
    /// Look up only the outputs of fixed-output derivations (the downloads: sources and
    /// Debian packages); everything else is built here.
    pub substitute_fixed_only: bool,
    /// Build through this remote executor instead of the local sandbox (builtins stay local).
    pub remote: Option<RemoteHook>,
}

impl Default for ScheduleOptions {
    fn default() -> ScheduleOptions {
        ScheduleOptions {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            build: BuildOptions::default(),
            keep_going: false,
            substitute_only: false,
            substitute_fixed_only: false,
            remote: None,
        }
    }
}

/// A target: a `.drv` path and the outputs wanted (`None`: all).
#[derive(Clone, Debug)]
pub struct Target {
    pub drv: StorePath,
    pub outputs: Option<BTreeSet<String>>,
}

impl Target {
    pub fn all(drv: StorePath) -> Target {
        Target { drv, outputs: None }
    }
}

/// The realised outputs of each target, in target order.
pub type Realised = Vec<(StorePath, BTreeMap<String, StorePath>)>;

/// Messages from worker threads.
pub enum Msg {
    Event(BuildEvent),
    Done(usize, Result<Staged, BuildError>),
}

/// A finished build's staged outputs (not yet registered).
pub struct Staged {
    outputs: BTreeMap<String, PathBuf>,
    duration: Duration,
    log_path: PathBuf,
    remote: Option<RemoteRun>,
    _dir: BuildDir,
}

struct Node {
    drv_path: StorePath,
    drv: Derivation,
    /// Indices of the nodes this one needs built first.
    deps: Vec<usize>,
    dependents: Vec<usize>,
    state: State,
    locks: Vec<PathLock>,
    closure: Vec<StorePath>,
    /// The cores the build was given while it runs.
    cores: u32,
}

/// What a walk of the graph found.
#[derive(Default)]
struct Plan {
    /// The derivations to build.
    nodes: Vec<Node>,
    /// Outputs to substitute: path → (derivation, output name).
    chosen: BTreeMap<StorePath, (StorePath, String)>,
    /// The missing wanted outputs of the derivations to build.
    missing: BTreeSet<StorePath>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Done,
    Failed,
}

/// Read and decode a `.drv` file of the store.
pub fn load_derivation(store: &Store, drv: &StorePath) -> Result<Derivation, BuildError> {
    let phys = store.layout().physical(drv);
    let mut bytes = Vec::new();
    std::fs::File::open(&phys)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| BuildError::BadDerivation {
            drv: drv.clone(),
            message: e.to_string(),
        })?;
    Derivation::decode(&bytes).map_err(|e| BuildError::BadDerivation {
        drv: drv.clone(),
        message: e.to_string(),
    })
}

/// Check that `drv`'s declared output paths are the ones its hash modulo fixed outputs gives
/// (computed as instantiation computes them, input derivations read from the store and
/// memoised in `hasher`), so a hand-made `.drv` cannot claim another derivation's output.
pub fn check_output_paths(
    store: &Store,
    hasher: &mut ModuloHasher,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<(), BuildError> {
    let bad = |e: DerivationError| BuildError::BadDerivation {
        drv: drv_path.clone(),
        message: e.to_string(),
    };
    let h = match hasher.get(drv_path) {
        Some(h) => h,
        None => {
            let mut load = |p: &StorePath| -> Result<Derivation, DerivationError> {
                let bytes = std::fs::read(store.layout().physical(p))
                    .map_err(|e| DerivationError::Decode(format!("input derivation {p}: {e}")))?;
                Derivation::decode(&bytes)
            };
            let h = hasher.hash(drv, &mut load).map_err(bad)?;
            hasher.insert(drv_path.clone(), h);
            h
        }
    };
    drv.check_output_paths(&h).map_err(bad)
}

fn store_err(e: buildit_store::StoreError) -> BuildError {
    BuildError::Store(e.to_string())
}

fn output_path(drv_path: &StorePath, drv: &Derivation, out: &str) -> Result<StorePath, BuildError> {
    drv.outputs
        .get(out)
        .and_then(|o| o.path.clone())
        .ok_or_else(|| BuildError::BadDerivation {
            drv: drv_path.clone(),
            message: format!("it has no output `{out}`"),
        })
}

/// The scheduler over one store.
pub struct Scheduler<'a> {
    store: &'a Store,
    sandbox: Option<Sandbox>,
    opts: ScheduleOptions,
    builtins: Builtins,
    substituter: Option<&'a dyn Substituter>,
}

impl<'a> Scheduler<'a> {
    /// A scheduler building with bubblewrap (found lazily: a graph with nothing to build in
    /// the sandbox does not need it).
    pub fn new(store: &'a Store, opts: ScheduleOptions) -> Scheduler<'a> {
        Scheduler {
            store,
            sandbox: None,
            opts,
            builtins: Builtins::new(),
            substituter: None,
        }
    }
    /// Handle `builtin:NAME` builders with these.
    pub fn with_builtins(mut self, builtins: Builtins) -> Scheduler<'a> {
        self.builtins = builtins;
        self
    }
    /// Try this substituter before building.
    pub fn with_substituter(mut self, s: &'a dyn Substituter) -> Scheduler<'a> {
        self.substituter = Some(s);
        self
    }
    /// Use this sandbox (e.g. an explicit bwrap).
    pub fn with_sandbox(mut self, s: Sandbox) -> Scheduler<'a> {
        self.sandbox = Some(s);
        self
    }

    /// Refuse a `builtin:NAME` builder that needs a fixed output for a derivation without one
    /// (an unknown builtin is reported when it would run).
    fn check_builtin(&self, drv_path: &StorePath, drv: &Derivation) -> Result<(), BuildError> {
        let Some(name) = drv.builder.strip_prefix("builtin:") else {
            return Ok(());
        };
        match self.builtins.get(name) {
            Some(b) if b.fixed_output_only() && drv.fixed_output().is_none() => {
                Err(BuildError::BuiltinNeedsFixedOutput {
                    drv: drv_path.clone(),
                    name: name.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    fn outputs_valid(
        &self,
        drv_path: &StorePath,
        drv: &Derivation,
        wanted: &BTreeSet<String>,
    ) -> Result<bool, BuildError> {
        for o in wanted {
            let p = output_path(drv_path, drv, o)?;
            if !self.store.is_valid(&p).map_err(store_err)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Walk the graph from `targets` (see the module documentation, step 1): the derivations
    /// to build, with their dependencies, and the outputs that `offered` lets the walk
    /// substitute instead.
    fn walk(
        &self,
        targets: &[Target],
        offered: &BTreeSet<StorePath>,
        loaded: &mut HashMap<StorePath, Derivation>,
        hasher: &mut ModuloHasher,
    ) -> Result<Plan, BuildError> {
        let mut plan = Plan::default();
        let mut index: HashMap<StorePath, usize> = HashMap::new();
        // (drv, wanted outputs, dependent node)
        let mut todo: VecDeque<(StorePath, Option<BTreeSet<String>>, Option<usize>)> = targets
            .iter()
            .map(|t| (t.drv.clone(), t.outputs.clone(), None))
            .collect();
        let nodes = &mut plan.nodes;
        while let Some((drv_path, wanted, parent)) = todo.pop_front() {
            if let Some(&i) = index.get(&drv_path) {
                if let Some(p) = parent {
                    nodes[p].deps.push(i);
                    nodes[i].dependents.push(p);
                }
                continue;
            }
            let drv = match loaded.get(&drv_path) {
                Some(d) => d.clone(),
                None => {
                    let d = load_derivation(self.store, &drv_path)?;
                    check_output_paths(self.store, hasher, &drv_path, &d)?;
                    loaded.insert(drv_path.clone(), d.clone());
                    d
                }
            };
            let wanted: BTreeSet<String> =
                wanted.unwrap_or_else(|| drv.outputs.keys().cloned().collect());
            let mut missing: Vec<(String, StorePath)> = Vec::new();
            for o in &wanted {
                let p = output_path(&drv_path, &drv, o)?;
                self.store.add_temp_root(&p);
                if !self.store.is_valid(&p).map_err(store_err)? {
                    missing.push((o.clone(), p));
                }
            }
            if missing.is_empty() {
                continue;
            }
            if missing.iter().all(|(_, p)| offered.contains(p)) {
                for (o, p) in missing {
                    plan.chosen.insert(p, (drv_path.clone(), o));
                }
                continue;
            }
            if drv.system != HOST_SYSTEM {
                return Err(BuildError::WrongSystem {
                    drv: drv_path,
                    system: drv.system.clone(),
                });
            }
            self.check_builtin(&drv_path, &drv)?;
            if !self.opts.substitute_fixed_only || drv.fixed_output().is_some() {
                plan.missing.extend(missing.into_iter().map(|(_, p)| p));
            }
            let i = nodes.len();
            index.insert(drv_path.clone(), i);
            for (dep, outs) in &drv.input_drvs {
                todo.push_back((dep.clone(), Some(outs.clone()), Some(i)));
            }
            if let Some(p) = parent {
                nodes[p].deps.push(i);
            }
            nodes.push(Node {
                drv_path,
                drv,
                deps: Vec::new(),
                dependents: parent.into_iter().collect(),
                state: State::Waiting,
                locks: Vec::new(),
                closure: Vec::new(),
                cores: 0,
            });
        }
        Ok(plan)
    }

    /// Realise `targets`; events go to `on_event`.
    pub fn realise(
        &mut self,
        targets: &[Target],
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<Realised, BuildError> {
        // --- load the graph of what must be built, and substitute what can be ---
        let mut loaded: HashMap<StorePath, Derivation> = HashMap::new();
        let mut hasher = ModuloHasher::new();
        let mut offered: BTreeSet<StorePath> = BTreeSet::new();
        let mut reasons: BTreeMap<StorePath, Vec<String>> = BTreeMap::new();
        let mut plan = self.walk(targets, &offered, &mut loaded, &mut hasher)?;
        if let (Some(s), false) = (self.substituter, plan.missing.is_empty()) {
            let asked: Vec<StorePath> = plan.missing.iter().cloned().collect();
            let a = s.query(self.store, &asked)?;
            on_event(BuildEvent::Looked {
                found: a.found.iter().cloned().collect(),
                missing: asked
                    .iter()
                    .filter(|p| !a.found.contains(*p))
                    .cloned()
                    .collect(),
            });
            offered = a.found;
            reasons = a.missing;
            plan = self.walk(targets, &offered, &mut loaded, &mut hasher)?;
        }
        let mut nodes = loop {
            if self.opts.substitute_only && !plan.nodes.is_empty() {
                let detail = plan
                    .missing
                    .iter()
                    .map(|p| match reasons.get(p) {
                        Some(why) if !why.is_empty() => format!("{p} ({})", why.join("; ")),
                        _ => p.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(BuildError::NotSubstituted {
                    paths: plan.missing.into_iter().collect(),
                    detail,
                });
            }
            on_event(BuildEvent::Planned {
                builds: plan.nodes.len(),
                substitutions: plan.chosen.len(),
            });
            let Some(s) = self.substituter.filter(|_| !plan.chosen.is_empty()) else {
                break plan.nodes;
            };
            let chosen: Vec<StorePath> = plan.chosen.keys().cloned().collect();
            let got: BTreeSet<StorePath> = s
                .fetch(self.store, &chosen, on_event)?
                .into_iter()
                .collect();
            let mut gone = Vec::new();
            for (p, (drv, out)) in &plan.chosen {
                if got.contains(p) || self.store.is_valid(p).map_err(store_err)? {
                    self.store.set_output(drv, out, p).map_err(store_err)?;
                    on_event(BuildEvent::Substituted { path: p.clone() });
                } else {
                    gone.push(p.clone());
                }
            }
            if gone.is_empty() {
                break plan.nodes;
            }
            // offered, but gone from the repository by now: build those
            for p in gone {
                offered.remove(&p);
            }
            plan = self.walk(targets, &offered, &mut loaded, &mut hasher)?;
        };
        for n in nodes.iter_mut() {
            n.deps.sort_unstable();
            n.deps.dedup();
            n.dependents.sort_unstable();
            n.dependents.dedup();
        }
        // With a remote executor the sandbox is needed only for what stays local (downloads)
        // and for the fallback; it is then found when first used.
        let local = match &self.opts.remote {
            None => true,
            Some(r) => r.0.fallback(),
        };
        if local
            && nodes.iter().any(|n| !n.drv.builder.starts_with("builtin:"))
            && self.sandbox.is_none()
        {
            self.sandbox = Some(Sandbox::new(self.store.layout().clone())?);
        }

        // --- build ---
        let failures = self.run_graph(&mut nodes, on_event)?;

        // --- results ---
        if !failures.is_empty() {
            let total = nodes.len();
            return Err(if failures.len() == 1 {
                failures
                    .into_iter()
                    .next()
                    .unwrap_or(BuildError::Several { failed: 1, total })
            } else {
                BuildError::Several {
                    failed: failures.len(),
                    total,
                }
            });
        }
        let mut out = Vec::new();
        for t in targets {
            let drv = match loaded.get(&t.drv) {
                Some(d) => d.clone(),
                None => load_derivation(self.store, &t.drv)?,
            };
            let wanted: BTreeSet<String> = t
                .outputs
                .clone()
                .unwrap_or_else(|| drv.outputs.keys().cloned().collect());
            let mut m = BTreeMap::new();
            for o in wanted {
                let p = output_path(&t.drv, &drv, &o)?;
                m.insert(o, p);
            }
            out.push((t.drv.clone(), m));
        }
        Ok(out)
    }

    fn run_graph(
        &self,
        nodes: &mut [Node],
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<Vec<BuildError>, BuildError> {
        let jobs = self.opts.jobs.max(1);
        let mut ready: VecDeque<usize> = VecDeque::new();
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.deps.is_empty() {
                n.state = State::Ready;
                ready.push_back(i);
            }
        }
        // Nodes whose outputs another process holds locked.
        let mut lock_wait: Vec<usize> = Vec::new();
        let mut running = 0usize;
        // the cores the running builds were given (see `cores_for`)
        let machine_cores = machine_cores();
        let mut cores_in_use = 0u32;
        let mut failures: Vec<BuildError> = Vec::new();
        let mut stop = false;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::scope(|scope| -> Result<(), BuildError> {
            // Build directories are removed off the scheduling thread (directory removal is
            // slow on some disks); the thread ends when this closure drops the sender.
            let (clean_tx, clean_rx) = mpsc::channel::<Staged>();
            scope.spawn(move || clean_rx.into_iter().for_each(drop));
            loop {
                // Retry the nodes waiting for another process's locks.
                if !lock_wait.is_empty() {
                    ready.extend(lock_wait.drain(..));
                }
                while running < jobs && !stop {
                    let Some(i) = ready.pop_front() else { break };
                    match self.prepare(nodes, i)? {
                        Prepared::Locked => lock_wait.push(i),
                        Prepared::AlreadyValid => {
                            nodes[i].locks.clear();
                            self.complete(nodes, i, &mut ready);
                        }
                        Prepared::Request(mut req) => {
                            nodes[i].state = State::Running;
                            running += 1;
                            if self.opts.build.cores == 0 {
                                // the builds that can start with this one share what is free
                                let starting = (jobs - running + 1).min(ready.len() + 1);
                                req.cores = cores_for(machine_cores, cores_in_use, starting);
                            }
                            cores_in_use += req.cores;
                            nodes[i].cores = req.cores;
                            on_event(BuildEvent::Started {
                                drv: req.drv_path.clone(),
                                name: req.name.clone(),
                            });
                            let tx = tx.clone();
                            let sandbox = self.sandbox.clone();
                            let builtin = req
                                .builtin()
                                .map(|b| (b.to_string(), self.builtins.get(b).cloned()));
                            let layout = self.store.layout().clone();
                            let inputs = match builtin {
                                Some(_) => self.input_infos(&req)?,
                                None => BTreeMap::new(),
                            };
                            let remote = match (&builtin, &self.opts.remote) {
                                (None, Some(r)) if r.0.accepts(&req) => Some(r.0.clone()),
                                _ => None,
                            };
                            let sandbox = match (&sandbox, &remote) {
                                (None, None) => Some(Sandbox::new(self.store.layout().clone())?),
                                _ => sandbox,
                            };
                            scope.spawn(move || {
                                let r = match (builtin, remote) {
                                    (Some((name, b)), _) => {
                                        run_builtin(&layout, &inputs, &req, name, b, &tx)
                                    }
                                    (None, Some(x)) => {
                                        run_remote(&layout, sandbox.as_ref(), &*x, &req, &tx)
                                    }
                                    (None, None) => run_sandboxed(sandbox.as_ref(), &req, &tx),
                                };
                                let _ = tx.send(Msg::Done(i, r));
                            });
                        }
                    }
                }
                if running == 0 && (lock_wait.is_empty() || stop) {
                    break;
                }
                let msg = if lock_wait.is_empty() {
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                } else {
                    // Some outputs are being built by another process: poll their locks.
                    match rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(m) => m,
                        Err(_) => continue,
                    }
                };
                match msg {
                    Msg::Event(e) => on_event(e),
                    Msg::Done(i, r) => {
                        running -= 1;
                        cores_in_use = cores_in_use.saturating_sub(nodes[i].cores);
                        let r = r.and_then(|staged| {
                            let res = self.register(&nodes[i], &staged);
                            let remote = staged.remote;
                            let _ = clean_tx.send(staged);
                            res.map(|(o, d)| (o, d, remote))
                        });
                        // Only needed for registration (and large in deep graphs).
                        nodes[i].closure = Vec::new();
                        match r {
                            Ok((outputs, duration, remote)) => {
                                nodes[i].locks.clear();
                                on_event(BuildEvent::Finished {
                                    drv: nodes[i].drv_path.clone(),
                                    name: nodes[i].drv.name.clone(),
                                    outputs,
                                    duration,
                                    remote,
                                });
                                self.complete(nodes, i, &mut ready);
                            }
                            Err(e) => {
                                nodes[i].locks.clear();
                                if let BuildError::Failed(f) = &e {
                                    on_event(BuildEvent::Failed {
                                        drv: f.drv.clone(),
                                        name: f.name.clone(),
                                        reason: f.reason.to_string(),
                                        log_tail: f.log_tail.clone(),
                                        log_path: f.log_path.clone(),
                                    });
                                } else {
                                    on_event(BuildEvent::Failed {
                                        drv: nodes[i].drv_path.clone(),
                                        name: nodes[i].drv.name.clone(),
                                        reason: e.to_string(),
                                        log_tail: Vec::new(),
                                        log_path: crate::log::log_path(
                                            self.store.layout(),
                                            &nodes[i].drv_path,
                                        ),
                                    });
                                }
                                fail_dependents(nodes, i);
                                failures.push(e);
                                if !self.opts.keep_going {
                                    stop = true;
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(failures)
    }

    /// Mark `i` done and queue the dependents whose dependencies are all done.
    fn complete(&self, nodes: &mut [Node], i: usize, ready: &mut VecDeque<usize>) {
        nodes[i].state = State::Done;
        let deps = nodes[i].dependents.clone();
        for d in deps {
            if nodes[d].state == State::Waiting
                && nodes[d].deps.iter().all(|&x| nodes[x].state == State::Done)
            {
                nodes[d].state = State::Ready;
                ready.push_back(d);
            }
        }
    }

    /// Lock the outputs of node `i`, re-check them, and build its request.
    /// The store's records of a builtin request's input closure (see [`BuiltinContext`]).
    fn input_infos(&self, req: &BuildRequest) -> Result<BTreeMap<StorePath, PathInfo>, BuildError> {
        let mut infos = BTreeMap::new();
        for p in &req.input_closure {
            if let Some(info) = self.store.path_info(p).map_err(store_err)? {
                infos.insert(p.clone(), info);
            }
        }
        Ok(infos)
    }

    fn prepare(&self, nodes: &mut [Node], i: usize) -> Result<Prepared, BuildError> {
        let n = &nodes[i];
        let mut outs: Vec<StorePath> = Vec::new();
        for o in n.drv.outputs.keys() {
            outs.push(output_path(&n.drv_path, &n.drv, o)?);
        }
        outs.sort();
        let mut locks = Vec::new();
        for p in &outs {
            match self.store.try_lock_path(p).map_err(store_err)? {
                Some(l) => locks.push(l),
                None => return Ok(Prepared::Locked),
            }
        }
        // Another process may have built it while we waited.
        let all: BTreeSet<String> = n.drv.outputs.keys().cloned().collect();
        if self.outputs_valid(&n.drv_path, &n.drv, &all)? {
            nodes[i].locks = locks;
            return Ok(Prepared::AlreadyValid);
        }
        let mut roots: Vec<StorePath> = n.drv.input_srcs.iter().cloned().collect();
        for (dep, used) in &n.drv.input_drvs {
            let d = match nodes.iter().find(|m| &m.drv_path == dep) {
                Some(m) => m.drv.clone(),
                None => load_derivation(self.store, dep)?,
            };
            for o in used {
                roots.push(output_path(dep, &d, o)?);
            }
        }
        if let Some(s) = &nodes[i].drv.sandbox.sysroot {
            roots.push(s.clone());
        }
        for r in &roots {
            self.store.add_temp_root(r);
        }
        let closure: Vec<StorePath> = self
            .store
            .closure(&roots)
            .map_err(store_err)?
            .into_iter()
            .collect();
        let req = BuildRequest::from_derivation(
            &nodes[i].drv_path,
            &nodes[i].drv,
            closure.clone(),
            &self.opts.build,
        )?;
        nodes[i].locks = locks;
        nodes[i].closure = closure;
        Ok(Prepared::Request(Box::new(req)))
    }

    /// Check fixed outputs and register every output of a finished build.
    fn register(
        &self,
        node: &Node,
        staged: &Staged,
    ) -> Result<(Vec<StorePath>, Duration), BuildError> {
        let fail = |reason: FailReason| {
            BuildError::Failed(Box::new(BuildFailure {
                drv: node.drv_path.clone(),
                name: node.drv.name.clone(),
                reason,
                log_tail: Vec::new(),
                log_path: staged.log_path.clone(),
                kept: None,
            }))
        };
        if let Some(f) = node.drv.fixed_output() {
            let p = staged
                .outputs
                .get("out")
                .ok_or_else(|| fail(FailReason::MissingOutput("out".into())))?;
            let actual = hash_output(p, f).map_err(|e| BuildError::io("hashing the output", e))?;
            if actual != f.hash {
                return Err(fail(FailReason::HashMismatch {
                    output: "out".into(),
                    algo: f.algo.name().into(),
                    expected: hex::encode(&f.hash),
                    actual: hex::encode(&actual),
                }));
            }
        }
        let mut cands = node.closure.clone();
        for o in node.drv.outputs.keys() {
            cands.push(output_path(&node.drv_path, &node.drv, o)?);
        }
        let mut outs = Vec::new();
        for (name, p) in &staged.outputs {
            let path = output_path(&node.drv_path, &node.drv, name)?;
            self.store
                .register_output(p, &path, &cands, Some(&node.drv_path))
                .map_err(store_err)?;
            self.store
                .set_output(&node.drv_path, name, &path)
                .map_err(store_err)?;
            outs.push(path);
        }
        Ok((outs, staged.duration))
    }
}

/// The cores of this machine (those the process may run on).
fn machine_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// The cores a build gets when it starts and the caller left the choice to the scheduler
/// (`BuildOptions::cores == 0`): an equal share, among the `starting` builds starting now, of
/// the machine's cores that no running build holds, and at least one. A build keeps its
/// share until it ends, so the running builds never hold more cores than the machine has
/// (beyond one each), and the last build of a graph, alone, gets them all.
pub fn cores_for(machine: u32, in_use: u32, starting: usize) -> u32 {
    let free = machine.saturating_sub(in_use);
    let starting = u32::try_from(starting.max(1)).unwrap_or(u32::MAX);
    (free / starting).max(1)
}

enum Prepared {
    Locked,
    AlreadyValid,
    Request(Box<BuildRequest>),
}

fn fail_dependents(nodes: &mut [Node], i: usize) {
    nodes[i].state = State::Failed;
    let mut todo = nodes[i].dependents.clone();
    while let Some(d) = todo.pop() {
        if nodes[d].state == State::Waiting || nodes[d].state == State::Ready {
            nodes[d].state = State::Failed;
            todo.extend(nodes[d].dependents.iter().copied());
        }
    }
}

fn run_sandboxed(
    sandbox: Option<&Sandbox>,
    req: &BuildRequest,
    tx: &mpsc::Sender<Msg>,
) -> Result<Staged, BuildError> {
    let sandbox = sandbox.ok_or(BuildError::BwrapMissing)?;
    let drv = req.drv_path.clone();
    let mut on_line = |l: &str| {
        let _ = tx.send(Msg::Event(BuildEvent::LogLine {
            drv: drv.clone(),
            line: l.to_string(),
        }));
    };
    let r = sandbox.build(req, &mut on_line)?;
    Ok(Staged {
        outputs: r.outputs,
        duration: r.duration,
        log_path: r.log_path,
        remote: None,
        _dir: r.dir,
    })
}

/// Run `req` through the remote executor, staging its outputs as a local build stages them;
/// when the endpoint is unavailable and the executor falls back, build it in `sandbox`.
fn run_remote(
    layout: &buildit_store::StoreLayout,
    sandbox: Option<&Sandbox>,
    exec: &dyn RemoteExecutor,
    req: &BuildRequest,
    tx: &mpsc::Sender<Msg>,
) -> Result<Staged, BuildError> {
    let start = Instant::now();
    with_staging(layout, req, tx, |mut dir, outputs, mut sink| {
        let r = exec.execute(req, &outputs, &mut sink);
        let reason = match r {
            Ok(run) => match outputs
                .iter()
                .find(|(_, p)| std::fs::symlink_metadata(p).is_err())
            {
                None => {
                    sink.finish()
                        .map_err(|e| BuildError::io("writing the build log", e))?;
                    let log_path = sink.path().to_path_buf();
                    return Ok(Staged {
                        outputs,
                        duration: start.elapsed(),
                        log_path,
                        remote: Some(run),
                        _dir: dir,
                    });
                }
                Some((n, _)) => FailReason::MissingOutput(n.clone()),
            },
            Err(RemoteFailure::Exit(code)) => FailReason::Exit(code),
            Err(RemoteFailure::Unavailable(message)) if exec.fallback() => {
                drop(sink);
                drop(dir);
                let _ = tx.send(Msg::Event(BuildEvent::LogLine {
                    drv: req.drv_path.clone(),
                    line: format!("remote execution unavailable ({message}): building locally"),
                }));
                return run_sandboxed(sandbox, req, tx);
            }
            Err(RemoteFailure::Unavailable(message)) => {
                return Err(BuildError::Remote {
                    drv: req.drv_path.clone(),
                    message,
                    unavailable: true,
                })
            }
            Err(RemoteFailure::Error(message)) => {
                return Err(BuildError::Remote {
                    drv: req.drv_path.clone(),
                    message,
                    unavailable: false,
                })
            }
        };
        let _ = sink.line(&reason.to_string());
        let _ = sink.finish();
        let log_path = sink.path().to_path_buf();
        let tail = sink.tail();
        drop(sink);
        let kept = req.keep_failed.then(|| dir.keep());
        Err(BuildError::Failed(Box::new(BuildFailure {
            drv: req.drv_path.clone(),
            name: req.name.clone(),
            reason,
            log_tail: tail,
            log_path,
            kept,
        })))
    })
}

fn run_builtin(
    layout: &buildit_store::StoreLayout,
    inputs: &BTreeMap<StorePath, PathInfo>,
    req: &BuildRequest,
    name: String,
    builder: Option<Arc<dyn BuiltinBuilder>>,
    tx: &mpsc::Sender<Msg>,
) -> Result<Staged, BuildError> {
    let builder = builder.ok_or_else(|| BuildError::UnknownBuiltin {
        drv: req.drv_path.clone(),
        name: name.clone(),
    })?;
    let start = Instant::now();
    with_staging(layout, req, tx, |mut dir, outputs, mut sink| {
        let r = {
            let mut ctx = BuiltinContext {
                drv: &req.drv_path,
                log: &mut sink,
                events: tx,
                layout,
                inputs,
            };
            builder.build(req, &outputs, &mut ctx)
        };
        let reason = match r {
            Err(m) => Some(FailReason::Builtin(m)),
            Ok(()) => outputs
                .iter()
                .find(|(_, p)| std::fs::symlink_metadata(p).is_err())
                .map(|(n, _)| FailReason::MissingOutput(n.clone())),
        };
        if let Some(reason) = &reason {
            let _ = sink.line(&reason.to_string());
        }
        sink.finish()
            .map_err(|e| BuildError::io("writing the build log", e))?;
        let log_path = sink.path().to_path_buf();
        let tail = sink.tail();
        drop(sink);
        match reason {
            None => Ok(Staged {
                outputs,
                duration: start.elapsed(),
                log_path,
                remote: None,
                _dir: dir,
            }),
            Some(reason) => {
                let kept = req.keep_failed.then(|| dir.keep());
                Err(BuildError::Failed(Box::new(BuildFailure {
                    drv: req.drv_path.clone(),
                    name: req.name.clone(),
                    reason,
                    log_tail: tail,
                    log_path,
                    kept,
                })))
            }
        }
    })
}

/// Set up a build that runs in this process (a builtin builder, the remote executor) as the
/// sandbox sets up its own: the build directory, the staged path of each output, and the log,
/// whose lines are also sent as `LogLine` events; then run `body` with them.
fn with_staging<T>(
    layout: &buildit_store::StoreLayout,
    req: &BuildRequest,
    tx: &mpsc::Sender<Msg>,
    body: impl FnOnce(BuildDir, BTreeMap<String, PathBuf>, LogSink<'_>) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    let dir = BuildDir::create(layout, &req.drv_path)
        .map_err(|e| BuildError::io("creating the build directory", e))?;
    let outputs: BTreeMap<String, PathBuf> = req
        .outputs
        .iter()
        .map(|(n, p)| (n.clone(), dir.staged(p)))
        .collect();
    let drv = req.drv_path.clone();
    let mut on_line = |l: &str| {
        let _ = tx.send(Msg::Event(BuildEvent::LogLine {
            drv: drv.clone(),
            line: l.to_string(),
        }));
    };
    let sink = LogSink::create(layout, &req.drv_path, &mut on_line)
        .map_err(|e| BuildError::io("creating the build log", e))?;
    body(dir, outputs, sink)
}

/// The hash of a fixed output as declared: flat = the file's bytes, recursive = the canonical
/// archive of the tree.
pub fn hash_output(p: &Path, f: &FixedOutput) -> std::io::Result<Vec<u8>> {
    enum H {
        Sha(sha2::Sha256),
        B3(Box<blake3::Hasher>),
    }
    impl std::io::Write for H {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            match self {
                H::Sha(h) => h.update(b),
                H::B3(h) => {
                    h.update(b);
                }
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = match f.algo {
        HashAlgo::Sha256 => H::Sha(sha2::Sha256::new()),
        HashAlgo::Blake3 => H::B3(Box::new(blake3::Hasher::new())),
    };
    match f.mode {
        HashMode::Flat => {
            let meta = std::fs::symlink_metadata(p)?;
            if !meta.is_file() {
                return Err(std::io::Error::other(
                    "a flat fixed output must be a single regular file",
                ));
            }
            let mut file = std::fs::File::open(p)?;
            std::io::copy(&mut file, &mut h)?;
        }
        HashMode::Recursive => {
            buildit_store::archive::write_archive(p, "", &mut h)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    Ok(match h {
        H::Sha(s) => s.finalize().to_vec(),
        H::B3(b) => b.finalize().as_bytes().to_vec(),
    })
}

/// What `--check` found: the relative paths that differ between the registered output and a
/// rebuild (empty: reproducible).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub drv: StorePath,
    pub differing: BTreeMap<String, Vec<String>>,
}

impl<'a> Scheduler<'a> {
    /// Rebuild `drv` (whose outputs and inputs must be valid) into a temporary location and
    /// compare with the registered outputs. Nothing is registered.
    pub fn check(
        &mut self,
        drv_path: &StorePath,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<CheckReport, BuildError> {
        let drv = load_derivation(self.store, drv_path)?;
        check_output_paths(self.store, &mut ModuloHasher::new(), drv_path, &drv)?;
        if drv.system != HOST_SYSTEM {
            return Err(BuildError::WrongSystem {
                drv: drv_path.clone(),
                system: drv.system.clone(),
            });
        }
        self.check_builtin(drv_path, &drv)?;
        let mut roots: Vec<StorePath> = drv.input_srcs.iter().cloned().collect();
        for (dep, used) in &drv.input_drvs {
            let d = load_derivation(self.store, dep)?;
            for o in used {
                roots.push(output_path(dep, &d, o)?);
            }
        }
        roots.extend(drv.sandbox.sysroot.clone());
        for o in drv.outputs.keys() {
            let p = output_path(drv_path, &drv, o)?;
            if !self.store.is_valid(&p).map_err(store_err)? {
                return Err(BuildError::Store(format!(
                    "{p} is not valid: build it before checking it"
                )));
            }
        }
        let closure: Vec<StorePath> = self
            .store
            .closure(&roots)
            .map_err(store_err)?
            .into_iter()
            .collect();
        let req = BuildRequest::from_derivation(drv_path, &drv, closure, &self.opts.build)?;
        on_event(BuildEvent::Started {
            drv: drv_path.clone(),
            name: drv.name.clone(),
        });
        let (tx, rx) = mpsc::channel::<Msg>();
        let staged = match req.builtin() {
            Some(b) => run_builtin(
                self.store.layout(),
                &self.input_infos(&req)?,
                &req,
                b.to_string(),
                self.builtins.get(b).cloned(),
                &tx,
            ),
            None => {
                if self.sandbox.is_none() {
                    self.sandbox = Some(Sandbox::new(self.store.layout().clone())?);
                }
                run_sandboxed(self.sandbox.as_ref(), &req, &tx)
            }
        };
        drop(tx);
        for m in rx.try_iter() {
            if let Msg::Event(e) = m {
                on_event(e);
            }
        }
        let staged = staged?;
        let mut report = CheckReport {
            drv: drv_path.clone(),
            differing: BTreeMap::new(),
        };
        for (name, p) in &staged.outputs {
            let path = output_path(drv_path, &drv, name)?;
            let old = self.store.layout().physical(&path);
            let mut diffs = Vec::new();
            diff_trees(&old, p, "", &mut diffs)
                .map_err(|e| BuildError::io("comparing outputs", e))?;
            if !diffs.is_empty() {
                report.differing.insert(path.to_string(), diffs);
            }
        }
        on_event(BuildEvent::Finished {
            drv: drv_path.clone(),
            name: drv.name.clone(),
            outputs: Vec::new(),
            duration: staged.duration,
            remote: staged.remote,
        });
        Ok(report)
    }
}

/// Compare two trees by kind, contents, executable bit and symlink target (not mtimes or
/// other permission bits, which the store normalises).
fn diff_trees(a: &Path, b: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let name = if rel.is_empty() { "." } else { rel };
    let (ma, mb) = match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(_), Err(_)) => return Ok(()),
        _ => {
            out.push(name.to_string());
            return Ok(());
        }
    };
    let kind = |m: &std::fs::Metadata| {
        if m.is_dir() {
            0
        } else if m.file_type().is_symlink() {
            1
        } else {
            2
        }
    };
    if kind(&ma) != kind(&mb) {
        out.push(name.to_string());
        return Ok(());
    }
    if ma.is_dir() {
        let mut names: BTreeSet<std::ffi::OsString> = BTreeSet::new();
        for e in std::fs::read_dir(a)?.chain(std::fs::read_dir(b)?) {
            names.insert(e?.file_name());
        }
        for n in names {
            let sub = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            diff_trees(&a.join(&n), &b.join(&n), &sub, out)?;
        }
    } else if ma.file_type().is_symlink() {
        if std::fs::read_link(a)? != std::fs::read_link(b)? {
            out.push(name.to_string());
        }
    } else {
        let xa = ma.permissions().mode() & 0o111 != 0;
        let xb = mb.permissions().mode() & 0o111 != 0;
        if xa != xb || ma.len() != mb.len() || std::fs::read(a)? != std::fs::read(b)? {
            out.push(name.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod cores_tests {
    use super::cores_for;

    #[test]
    fn a_build_alone_gets_every_core() {
        assert_eq!(cores_for(8, 0, 1), 8);
        assert_eq!(cores_for(2, 0, 1), 2);
    }

    #[test]
    fn builds_starting_together_share_the_free_cores() {
        assert_eq!(cores_for(8, 0, 4), 2);
        assert_eq!(cores_for(8, 2, 3), 2);
        assert_eq!(cores_for(2, 0, 2), 1);
    }

    #[test]
    fn a_build_gets_at_least_one_core() {
        assert_eq!(cores_for(2, 2, 1), 1);
        assert_eq!(cores_for(2, 5, 3), 1);
        assert_eq!(cores_for(1, 0, 0), 1);
    }
}

#[cfg(test)]
mod substitute_tests {
    use std::cell::Cell;

    use buildit_store::derivation::{
        DerivationError, DerivationOutput, ModuloHasher, SandboxProfile, DRV_VERSION,
    };
    use buildit_store::{ImportOptions, StoreLayout};

    use super::*;

    /// A substituter whose "repository" is another local store: lookups are validity checks
    /// there, fetches are a real export and import of the closure.
    struct FromStore<'a> {
        repo: &'a Store,
        queries: Cell<usize>,
        fetches: Cell<usize>,
        fail: bool,
    }

    impl Substituter for FromStore<'_> {
        fn query(&self, _: &Store, paths: &[StorePath]) -> Result<Availability, BuildError> {
            self.queries.set(self.queries.get() + 1);
            let mut a = Availability::default();
            for p in paths {
                if self.repo.is_valid(p).map_err(store_err)? {
                    a.found.insert(p.clone());
                } else {
                    a.missing.insert(p.clone(), vec!["repo: not there".into()]);
                }
            }
            Ok(a)
        }

        fn fetch(
            &self,
            store: &Store,
            paths: &[StorePath],
            _: &mut dyn FnMut(BuildEvent),
        ) -> Result<Vec<StorePath>, BuildError> {
            self.fetches.set(self.fetches.get() + 1);
            if self.fail {
                return Err(BuildError::Substitute {
                    message: "archive digest mismatch".into(),
                });
            }
            let closure: Vec<StorePath> = self
                .repo
                .closure(paths)
                .map_err(store_err)?
                .into_iter()
                .filter(|p| !store.is_valid(p).unwrap_or(false))
                .collect();
            let mut stream = Vec::new();
            self.repo.export(&closure, &mut stream).map_err(store_err)?;
            store
                .import(
                    &stream[..],
                    ImportOptions {
                        trust_input_addressed: true,
                    },
                )
                .map_err(store_err)
        }
    }

    /// A derivation named `name` depending on `deps`' `out`, whose builder no scheduler has
    /// (building it fails), written into `store`; returns its path and output path.
    fn drv(
        store: &Store,
        hasher: &mut ModuloHasher,
        name: &str,
        deps: &[&StorePath],
    ) -> (StorePath, StorePath) {
        let mut d = Derivation {
            version: DRV_VERSION.into(),
            name: name.into(),
            system: HOST_SYSTEM.into(),
            builder: "builtin:not-here".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            outputs: BTreeMap::from([(
                "out".to_string(),
                DerivationOutput {
                    path: None,
                    fixed: None,
                },
            )]),
            input_drvs: deps
                .iter()
                .map(|p| ((*p).clone(), BTreeSet::from(["out".to_string()])))
                .collect(),
            input_srcs: BTreeSet::new(),
            sandbox: SandboxProfile::default(),
        };
        let h = hasher
            .hash(&d, &mut |p| Err(DerivationError::UnknownInput(p.clone())))
            .expect("hash");
        d.fill_output_paths(&h).expect("outputs");
        let p = store
            .add_bytes(&format!("{name}.drv"), &d.encode(), &d.references())
            .expect("drv");
        hasher.insert(p.clone(), h);
        let out = d.outputs["out"].path.clone().expect("out");
        (p, out)
    }

    /// Register `out` in `repo` as a file that mentions `refs`.
    fn output(repo: &Store, out: &StorePath, refs: &[&StorePath]) {
        let staged = repo.new_tmp_path("out");
        let text: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        std::fs::write(&staged, text.join("\n")).expect("write");
        let cands: Vec<StorePath> = refs.iter().map(|r| (*r).clone()).collect();
        repo.register_output(&staged, out, &cands, None)
            .expect("register");
    }

    struct Setup {
        _t: tempfile::TempDir,
        local: Store,
        repo: Store,
        top: (StorePath, StorePath),
        dep: (StorePath, StorePath),
    }

    fn setup() -> Setup {
        let t = tempfile::tempdir().expect("tmp");
        let local = Store::open(StoreLayout::at(t.path().join("local"))).expect("open");
        let repo = Store::open(StoreLayout::at(t.path().join("repo"))).expect("open");
        let mut h = ModuloHasher::new();
        let dep = drv(&local, &mut h, "dep", &[]);
        let top = drv(&local, &mut h, "top", &[&dep.0]);
        Setup {
            _t: t,
            local,
            repo,
            top,
            dep,
        }
    }

    fn realise(
        s: &Setup,
        sub: &FromStore<'_>,
        substitute_only: bool,
    ) -> (Result<Realised, BuildError>, Vec<BuildEvent>) {
        let opts = ScheduleOptions {
            substitute_only,
            ..ScheduleOptions::default()
        };
        let mut events = Vec::new();
        let r = Scheduler::new(&s.local, opts)
            .with_substituter(sub)
            .realise(&[Target::all(s.top.0.clone())], &mut |e| events.push(e));
        (r, events)
    }

    fn from(repo: &Store) -> FromStore<'_> {
        FromStore {
            repo,
            queries: Cell::new(0),
            fetches: Cell::new(0),
            fail: false,
        }
    }

    #[test]
    fn a_substitutable_graph_builds_nothing() {
        let s = setup();
        output(&s.repo, &s.dep.1, &[]);
        output(&s.repo, &s.top.1, &[&s.dep.1]);
        let sub = from(&s.repo);
        let (r, events) = realise(&s, &sub, false);
        let r = r.expect("realised");
        assert_eq!(r[0].1["out"], s.top.1);
        assert_eq!((sub.queries.get(), sub.fetches.get()), (1, 1));
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, BuildEvent::Started { .. })),
            "{events:?}"
        );
        let mut both = vec![s.top.1.clone(), s.dep.1.clone()];
        both.sort();
        assert!(events.contains(&BuildEvent::Looked {
            found: both,
            missing: Vec::new()
        }));
        assert!(events.contains(&BuildEvent::Planned {
            builds: 0,
            substitutions: 1
        }));
        // the top is substituted; its dependency's derivation is never looked at again
        assert!(events.contains(&BuildEvent::Substituted {
            path: s.top.1.clone()
        }));
        assert!(s.local.is_valid(&s.top.1).expect("v") && s.local.is_valid(&s.dep.1).expect("v"));
        assert_eq!(
            s.local.outputs_of(&s.top.0).expect("outputs").get("out"),
            Some(&s.top.1)
        );
        // a second realisation finds everything valid: no lookup at all
        let (r, _) = realise(&s, &sub, false);
        r.expect("no-op");
        assert_eq!((sub.queries.get(), sub.fetches.get()), (1, 1));
    }

    #[test]
    fn substitute_only_names_what_no_repository_has_and_fetches_nothing() {
        let s = setup();
        output(&s.repo, &s.dep.1, &[]);
        let sub = from(&s.repo);
        let (r, events) = realise(&s, &sub, true);
        match r {
            Err(BuildError::NotSubstituted { paths, detail }) => {
                assert_eq!(paths, vec![s.top.1.clone()]);
                assert!(detail.contains("not there"), "{detail}");
            }
            other => panic!("expected NotSubstituted, got {other:?}"),
        }
        assert_eq!(sub.fetches.get(), 0);
        assert!(!s.local.is_valid(&s.dep.1).expect("v"));
        assert!(!events
            .iter()
            .any(|e| matches!(e, BuildEvent::Started { .. })));
    }

    #[test]
    fn what_is_not_found_is_built_after_the_rest_is_substituted() {
        let s = setup();
        output(&s.repo, &s.dep.1, &[]);
        let sub = from(&s.repo);
        let (r, events) = realise(&s, &sub, false);
        // the top is built (and fails here: its builder does not exist), after its
        // dependency came from the repository
        assert!(r.is_err());
        assert!(s.local.is_valid(&s.dep.1).expect("v"));
        assert!(events.contains(&BuildEvent::Planned {
            builds: 1,
            substitutions: 1
        }));
        assert!(events.contains(&BuildEvent::Started {
            drv: s.top.0.clone(),
            name: "top".into()
        }));
    }

    #[test]
    fn a_refused_fetch_fails_the_realisation_without_building() {
        let s = setup();
        output(&s.repo, &s.dep.1, &[]);
        output(&s.repo, &s.top.1, &[&s.dep.1]);
        let mut sub = from(&s.repo);
        sub.fail = true;
        let (r, events) = realise(&s, &sub, false);
        match r {
            Err(BuildError::Substitute { message }) => assert!(message.contains("digest")),
            other => panic!("expected Substitute, got {other:?}"),
        }
        assert!(!events
            .iter()
            .any(|e| matches!(e, BuildEvent::Started { .. })));
        assert!(!s.local.is_valid(&s.top.1).expect("v"));
    }
}
