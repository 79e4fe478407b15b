//! Where a store lives physically. The logical directory is always [`crate::STORE_DIR`]; the
//! physical root ROOT is `--store-root DIR`, else `BUILDIT_STORE_ROOT`, else the system store
//! `/bld` for root (and for a user who owns `/bld`: a single-user install), else the caller's
//! private store `$XDG_DATA_HOME/buildit` (`~/.local/share/buildit`). An ordinary user never
//! defaults to a `/bld` someone else owns, even a writable one: objects another account can
//! change are not the user's to trust (docs/store.md, "Who owns a store"). Objects live in
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
    /// the environment), then `/bld` if the caller owns it (root: or may create it), then
    /// `data_home/buildit`.
    pub fn choose(
        explicit: Option<&Path>,
        env_root: Option<&Path>,
        data_home: Option<&Path>,
    ) -> StoreLayout {
        if let Some(p) = explicit.or(env_root) {
            return StoreLayout::at(p);
        }
        let bld = Path::new("/bld");
        if system_store_is_ours(bld) {
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

/// Whether the store at `p` is the caller's: it exists, is owned by the caller and writable,
/// or (root only) it can be created.
fn system_store_is_ours(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let writable = |q: &Path| nix::unistd::access(q, nix::unistd::AccessFlags::W_OK).is_ok();
    let me = nix::unistd::geteuid();
    match std::fs::metadata(p) {
        Ok(m) => m.is_dir() && m.uid() == me.as_raw() && writable(p),
        Err(_) => me.is_root() && p.parent().is_some_and(writable),
    }
}
