//! [`Session`]: what every command that evaluates or builds shares — the store's layout, the
//! evaluation IO over it ([`StoreIo`]), the Debian lock in use and the builtin builders. The
//! store root is chosen in one place, [`store_layout`].

use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use buildit_builder::fetch::Mirrors;
use buildit_builder::Builtins;
use buildit_eval::Evaluator;
use buildit_stdlib::{FsIo, StoreIo};
use buildit_store::{Store, StoreLayout};

use crate::error::{DriverError, Result};

/// The environment variable naming a Debian lock to build with (as `--debian-lock`).
pub const DEBIAN_LOCK_ENV: &str = "BUILDIT_DEBIAN_LOCK";

/// The environment variable naming the store's physical root (as `--store-root`).
pub const STORE_ROOT_ENV: &str = "BUILDIT_STORE_ROOT";

/// The store layout: `explicit` (`--store-root DIR`), else `BUILDIT_STORE_ROOT`, else `/bld`
/// for root (or the user who owns it), else `$XDG_DATA_HOME/buildit` (`~/.local/share/buildit`):
/// see `StoreLayout::choose`.
pub fn store_layout(explicit: Option<&Path>) -> StoreLayout {
    let env_root = std::env::var_os(STORE_ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    StoreLayout::choose(explicit, env_root.as_deref(), data_home.as_deref())
}

/// A Debian lock given instead of the embedded one: where it is and its text.
#[derive(Clone, Debug)]
pub struct DebianLock {
    pub path: PathBuf,
    pub text: String,
}

impl DebianLock {
    /// Read and parse the lock at `path` (a file `buildit debian lock` wrote), so that a wrong
    /// file is an error here rather than deep inside evaluation.
    pub fn read(path: &Path) -> Result<DebianLock> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            DriverError::request(
                "buildit::debian::lock-unreadable",
                format!("cannot read the Debian lock {}: {e}", path.display()),
                "give a lock written by `buildit debian lock --output FILE` (--debian-lock FILE or BUILDIT_DEBIAN_LOCK)",
            )
        })?;
        if let Err(e) = buildit_debian::lock::parse_lock(&text) {
            return Err(DriverError::request(
                "buildit::debian::bad-lock",
                format!("{} is not a Debian lock: {e}", path.display()),
                "regenerate it: buildit debian lock PKG... --output FILE (or refresh: buildit debian lock --output FILE)",
            ));
        }
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(DebianLock { path, text })
    }
}

/// Where `builtins.trace` messages go.
pub type TraceFn = Arc<dyn Fn(&str) + Send + Sync>;

/// One command's view of buildit: the store, the Debian lock, and how evaluation reads the
/// host.
#[derive(Clone)]
pub struct Session {
    layout: StoreLayout,
    debian_lock: Option<DebianLock>,
    impure_env: bool,
    trace: TraceFn,
    mirrors: Option<Mirrors>,
}

impl Session {
    /// A session over the store at `layout`, with the embedded Debian lock, a pure environment
    /// and `builtins.trace` messages dropped.
    pub fn new(layout: StoreLayout) -> Session {
        Session {
            layout,
            debian_lock: None,
            impure_env: false,
            trace: Arc::new(|_| {}),
            mirrors: None,
        }
    }

    /// Resolve `mirror://NAME/` with `mirrors` (the configuration's, `BUILDIT_MIRRORS`
    /// applied) instead of the machine's apt sources and `BUILDIT_MIRRORS` alone.
    pub fn with_mirrors(mut self, mirrors: Mirrors) -> Session {
        self.mirrors = Some(mirrors);
        self
    }

    /// What `mirror://NAME/` resolves against.
    pub fn mirrors(&self) -> Mirrors {
        self.mirrors
            .clone()
            .unwrap_or_else(crate::builtins::mirrors)
    }

    /// Build with `lock` instead of the embedded Debian lock.
    pub fn with_debian_lock(mut self, lock: Option<DebianLock>) -> Session {
        self.debian_lock = lock;
        self
    }

    /// Let `builtins.getEnv` read the real environment.
    pub fn with_impure_env(mut self, impure: bool) -> Session {
        self.impure_env = impure;
        self
    }

    /// Send `builtins.trace` messages to `f`.
    pub fn with_trace(mut self, f: TraceFn) -> Session {
        self.trace = f;
        self
    }

    /// The store's layout.
    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    /// The Debian lock given instead of the embedded one, if any.
    pub fn debian_lock(&self) -> Option<&DebianLock> {
        self.debian_lock.as_ref()
    }

    /// Evaluation IO over the host only (no store).
    pub fn fs_io(&self) -> FsIo {
        let trace = self.trace.clone();
        FsIo::new(move |m| trace(m)).with_impure_env(self.impure_env)
    }

    /// Evaluation IO over the host and the store, with the session's Debian lock in place and
    /// the fetcher of `fetchTarball`/`fetchGit` ([`crate::fetchtree`]).
    pub fn store_io(&self) -> StoreIo {
        let io = StoreIo::new(self.fs_io(), self.layout.clone());
        let io = match &self.debian_lock {
            // the lock is a file of the embedded library, so replacing it cannot fail
            Some(lock) => io
                .with_stdlib_file(buildit_stdlib::embedded::DEBIAN_LOCK, lock.text.clone())
                .unwrap_or_else(|_| StoreIo::new(self.fs_io(), self.layout.clone())),
            None => io,
        };
        io.with_tree_fetcher(Box::new(crate::fetchtree::Fetcher::new()))
    }

    /// An evaluator over [`Session::store_io`]. It is never dropped: commands end right after
    /// evaluating, and tearing down a deep graph of thunks would only cost time (and native
    /// stack).
    pub fn evaluator(&self) -> ManuallyDrop<Evaluator> {
        ManuallyDrop::new(Evaluator::new(Box::new(self.store_io())))
    }

    /// Open the store.
    pub fn open_store(&self) -> Result<Store> {
        Ok(Store::open(self.layout.clone())?)
    }

    /// The builtin builders (`builtin:fetchurl`, `builtin:unpack-deb`, `builtin:image`).
    pub fn builtins(&self) -> Builtins {
        crate::builtins::all(
            self.debian_lock.as_ref().map(|l| l.path.clone()),
            self.mirrors(),
        )
    }
}
