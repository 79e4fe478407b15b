//! Where a store lives physically. The logical directory is always [`crate::STORE_DIR`]; the
//! physical root ROOT is `--store-root DIR`, else `BUILDIT_STORE_ROOT`, else `/bld` when it is
//! writable, else `$XDG_DATA_HOME/buildit` (`~/.local/share/buildit`). Objects live in
//! `ROOT/store/`, all other state (database, logs, GC roots, locks, temporary build dirs) in
//! `ROOT/var/buildit/`.

use std::path::{Path, PathBuf};

use crate::path::StorePath;

/// The physical places of one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLayout {
    /// ROOT.
    pub root: PathBuf,
}

impl StoreLayout {
    /// A layout at an explicit root (the directory need not exist yet).
    pub fn at(root: impl Into<PathBuf>) -> StoreLayout {
        StoreLayout { root: root.into() }
    }

    /// The root chosen by the rules above: `explicit` (from `--store-root`), then the environment
    /// variable `BUILDIT_STORE_ROOT` (passed in as `env_root` so the caller decides about reading
    /// the environment), then `/bld` if writable or creatable, then `data_home/buildit`.
    pub fn choose(
        explicit: Option<&Path>,
        env_root: Option<&Path>,
        data_home: Option<&Path>,
    ) -> StoreLayout {
        if let Some(p) = explicit.or(env_root) {
            return StoreLayout::at(p);
        }
        let bld = Path::new("/bld");
        if writable_or_creatable(bld) {
            return StoreLayout::at(bld);
        }
        match data_home {
            Some(d) => StoreLayout::at(d.join("buildit")),
            None => StoreLayout::at(bld),
        }
    }

    /// `ROOT/store`: the objects.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    /// `ROOT/var/buildit`: all other state.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("var/buildit")
    }
    /// The SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir().join("db.sqlite")
    }
    /// Build logs (compressed), sharded by the first two characters of the hash part.
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir().join("log")
    }
    /// GC roots (symlinks to out-links or store paths).
    pub fn gcroots_dir(&self) -> PathBuf {
        self.state_dir().join("gcroots")
    }
    /// Per-path lock files.
    pub fn locks_dir(&self) -> PathBuf {
        self.state_dir().join("locks")
    }
    /// Temporary directories (builds, staged additions) that are not store objects yet.
    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir().join("tmp")
    }
    /// The physical location of a store path's object.
    pub fn physical(&self, p: &StorePath) -> PathBuf {
        self.store_dir().join(p.base_name())
    }
}

fn writable_or_creatable(p: &Path) -> bool {
    if p.exists() {
        nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
    } else {
        p.parent()
            .map(|parent| nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK).is_ok())
            .unwrap_or(false)
    }
}
