//! `EvalIo`: the one door through which evaluation touches the world (files, the environment,
//! trace output, and later the store and builder). `lang` and the evaluator do no IO themselves;
//! the CLI passes an implementation from `buildit-stdlib`, tests may pass their own.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// A derivation as the evaluator hands it to the store glue: every attribute already coerced to
/// a string, the string contexts already turned into inputs. Plain data, no language values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrvRequest {
    pub name: String,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    /// Every attribute except `args` and the `__`-prefixed control attributes, as strings.
    pub env: BTreeMap<String, String>,
    /// Output names in declaration order (default `["out"]`).
    pub outputs: Vec<String>,
    /// `outputHash`, `outputHashAlgo` (if given) and `outputHashMode` (default `flat`).
    pub fixed: Option<(String, Option<String>, String)>,
    /// Input derivations (`.drv` paths) with the outputs used (empty set: all outputs).
    pub input_drvs: BTreeMap<String, BTreeSet<String>>,
    /// Input sources (plain store paths).
    pub input_srcs: BTreeSet<String>,
    /// `__sysroot`: the toolchain tree mounted at `/usr` in the sandbox.
    pub sysroot: Option<String>,
}

/// What writing a derivation gives back: its `.drv` path and each output's store path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrvResult {
    pub drv_path: String,
    pub outputs: Vec<(String, String)>,
}

/// What a directory entry is (for `builtins.readDir` and `import` of a directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Unknown,
}

/// A tree fetched during evaluation (`builtins.fetchTarball`, `builtins.fetchGit`): the only
/// network access evaluation has, and only for content pinned by a hash the caller gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeSource {
    /// A tar archive (plain, gzip, xz or zstd) unpacked with its single top-level directory
    /// stripped; `hash` is the declared recursive hash of the unpacked tree (`sha256` in hex or
    /// nix-base32, or SRI `sha256-…`/`blake3-…`), exactly as the expression wrote it.
    Tarball { url: String, hash: String },
    /// The tree of commit `rev` (40 hex digits) of the git repository at `url`, found by
    /// fetching `git_ref` (or the repository's branches and tags when `None`).
    Git {
        url: String,
        rev: String,
        git_ref: Option<String>,
    },
}

/// One tree to fetch: what and under which store name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeRequest {
    pub name: String,
    pub source: TreeSource,
}

/// Why a tree could not be fetched; the builtin maps each to its own error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// This evaluation has no store (or no fetcher) to put the tree in.
    Unavailable(String),
    /// The request itself is wrong (a malformed hash, a bad name or URL).
    Invalid(String),
    /// The content arrived but its hash is not the declared one; `actual` is written the way
    /// the declared hash was, so it can be pasted into the expression.
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    /// Fetching or unpacking failed (network, missing revision, a hostile archive, a limit).
    Fetch(String),
}

pub trait EvalIo {
    /// Read a whole file.
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>>;
    /// What is at `path` (following symlinks), or `None` when nothing is.
    fn file_kind(&self, path: &str) -> Option<FileKind>;
    /// The entries of a directory, sorted by name.
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileKind)>>;
    /// `$HOME`, for `~/` paths.
    fn home_dir(&self) -> Option<String>;
    /// `builtins.getEnv` (impure; the default returns "").
    fn get_env(&self, _name: &str) -> Option<String> {
        None
    }
    /// `builtins.trace`: called with the already-printed value.
    fn trace(&self, message: &str);
    /// Copy a path into the store (path interpolation, `builtins.path`, `toFile`); returns the
    /// store path. An IO without a store (`buildit check`, tests) refuses, saying why.
    fn add_to_store(&self, name: &str, path: &str) -> Result<String, String> {
        let _ = (name, path);
        Err("copying paths into the store needs a store, and this evaluation has none".into())
    }
    /// `builtins.toFile name contents` with the store paths it references.
    fn add_text_to_store(
        &self,
        name: &str,
        contents: &str,
        references: &[String],
    ) -> Result<String, String> {
        let _ = (name, contents, references);
        Err("`toFile` needs a store, and this evaluation has none".into())
    }
    /// Copy `path` into the store leaving out the entries (paths below `path`) in `excluded`
    /// (`builtins.path { filter = …; }`).
    fn add_filtered_to_store(
        &self,
        name: &str,
        path: &str,
        excluded: &BTreeSet<String>,
    ) -> Result<String, String> {
        if excluded.is_empty() {
            self.add_to_store(name, path)
        } else {
            Err("filtered copies need a store".into())
        }
    }
    /// Write a derivation to the store (`derivation`, `derivationStrict`).
    fn derivation(&self, drv: &DrvRequest) -> Result<DrvResult, String> {
        let _ = drv;
        Err("`derivation` needs a store".into())
    }
    /// Whether `path` (a `/bld/store/…` path) is a valid store path (`builtins.storePath`).
    fn is_valid_store_path(&self, path: &str) -> Result<bool, String> {
        let _ = path;
        Err("`storePath` needs a store".into())
    }
    /// `<buildit>` and `<buildit/sub/path>`: the standard library's directory (or a path in it).
    fn lookup_path(&self, name: &str) -> Result<String, String> {
        Err(format!(
            "<{name}>: the standard library is not available in this evaluation"
        ))
    }
    /// Fetch a pinned tree into the store and return its store path: a path already valid
    /// there is returned without any network access. An IO without a store refuses.
    fn fetch_tree(&self, req: &TreeRequest) -> Result<String, TreeError> {
        let _ = req;
        Err(TreeError::Unavailable(
            "fetching a tree needs a store, and this evaluation has none".into(),
        ))
    }
    /// The logical store directory (`/bld/store`).
    fn store_dir(&self) -> String {
        "/bld/store".into()
    }
}

/// An `EvalIo` that refuses everything impure except tracing to stderr-like sink (a Vec): used by
/// tests that must not touch the file system.
#[derive(Default)]
pub struct PureIo {
    pub traces: std::cell::RefCell<Vec<String>>,
}

impl EvalIo for PureIo {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("pure evaluation: cannot read '{path}'"),
        ))
    }
    fn file_kind(&self, _path: &str) -> Option<FileKind> {
        None
    }
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileKind)>> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("pure evaluation: cannot read '{path}'"),
        ))
    }
    fn home_dir(&self) -> Option<String> {
        None
    }
    fn trace(&self, message: &str) {
        self.traces.borrow_mut().push(message.to_string());
    }
}
