//! [`StoreIo`]: the [`EvalIo`] that evaluation uses when a store is at hand. File access goes
//! to the host (through [`FsIo`]) except for paths in the logical store directory, which are
//! read from the store's physical location; everything that creates store objects (copying
//! sources, `toFile`, `derivation`) goes to the [`Store`], and so do the trees that
//! `fetchTarball`/`fetchGit` fetch through the [`TreeFetcher`] the driver gives
//! ([`crate::fetchtree`]).
//!
//! The store is opened lazily, on the first operation that needs it, so `buildit eval` of an
//! expression without derivations never touches (or creates) a store. Derivations are hashed
//! modulo fixed outputs with a per-session memo, so instantiating a graph hashes every
//! derivation once.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use buildit_eval::io::{DrvRequest, DrvResult, TreeError, TreeRequest};
use buildit_eval::{EvalIo, FileKind};
use buildit_store::derivation::{
    Derivation, DerivationError, DerivationOutput, FixedOutput, ModuloHasher, SandboxProfile,
    DRV_VERSION,
};
use buildit_store::path::{output_path_name, validate_name, StorePath, STORE_DIR};
use buildit_store::{Store, StoreLayout};

use crate::fetchtree::{TreeFetcher, TreeStore};
use crate::FsIo;

/// Evaluation IO over the host file system and a store.
pub struct StoreIo {
    fs: FsIo,
    layout: StoreLayout,
    store: OnceCell<Result<Store, String>>,
    hasher: RefCell<ModuloHasher>,
    stdlib: OnceCell<Result<String, String>>,
    stdlib_files: BTreeMap<String, String>,
    fetcher: Option<Box<dyn TreeFetcher>>,
}

impl StoreIo {
    /// Evaluation IO with the store at `layout` (opened on first use).
    pub fn new(fs: FsIo, layout: StoreLayout) -> StoreIo {
        StoreIo {
            fs,
            layout,
            store: OnceCell::new(),
            hasher: RefCell::new(ModuloHasher::new()),
            stdlib: OnceCell::new(),
            stdlib_files: BTreeMap::new(),
            fetcher: None,
        }
    }

    /// Fetch the trees of `builtins.fetchTarball` / `builtins.fetchGit` with `fetcher`
    /// (without one, only trees already in the store are available).
    pub fn with_tree_fetcher(mut self, fetcher: Box<dyn TreeFetcher>) -> StoreIo {
        self.fetcher = Some(fetcher);
        self
    }

    /// Give the file `rel` of the embedded standard library (a path inside `<buildit>`, such as
    /// [`crate::embedded::DEBIAN_LOCK`]) other contents when it is materialised. The library
    /// is content-addressed, so a replaced file gives another `<buildit>` store path (and
    /// derivations that depend on it change as they should). An `rel` that is not a file of
    /// the library is an error.
    pub fn with_stdlib_file(mut self, rel: &str, contents: String) -> Result<StoreIo, String> {
        if !crate::embedded::is_file(rel) {
            return Err(format!("the standard library has no file {rel}"));
        }
        self.stdlib_files.insert(rel.to_string(), contents);
        Ok(self)
    }

    /// The store, opening it on first use.
    pub fn store(&self) -> Result<&Store, String> {
        self.store
            .get_or_init(|| Store::open(self.layout.clone()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// A host path for `path`: store paths map to their physical location.
    fn host_path(&self, path: &str) -> PathBuf {
        match path
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(rest) if !rest.is_empty() => self.layout.store_dir().join(rest),
            _ => PathBuf::from(path),
        }
    }

    fn load_drv(&self, p: &StorePath) -> Result<Derivation, DerivationError> {
        let bytes = std::fs::read(self.layout.physical(p))
            .map_err(|e| DerivationError::Decode(format!("cannot read {p}: {e}")))?;
        Derivation::decode(&bytes)
    }

    fn build_derivation(&self, req: &DrvRequest) -> Result<DrvResult, String> {
        let store = self.store()?;
        if req.name.is_empty() {
            return Err("the derivation's `name` is empty".into());
        }
        validate_name(&format!("{}.drv", req.name))
            .map_err(|e| format!("invalid derivation name: {e}"))?;
        for o in &req.outputs {
            validate_name(&output_path_name(&req.name, o))
                .map_err(|e| format!("invalid output name '{o}': {e}"))?;
        }
        let fixed = match &req.fixed {
            Some((h, algo, mode)) => Some(FixedOutput::parse(h, algo.as_deref(), mode)?),
            None => None,
        };
        let mut input_drvs: BTreeMap<StorePath, BTreeSet<String>> = BTreeMap::new();
        let mut input_srcs = BTreeSet::new();
        for (d, outs) in &req.input_drvs {
            let p = StorePath::parse(d).map_err(|e| e.to_string())?;
            let outs = if outs.is_empty() {
                // a `drvPath` reference: the .drv itself and every output
                input_srcs.insert(p.clone());
                self.load_drv(&p)
                    .map_err(|e| e.to_string())?
                    .outputs
                    .keys()
                    .cloned()
                    .collect()
            } else {
                outs.clone()
            };
            input_drvs.entry(p).or_default().extend(outs);
        }
        for s in &req.input_srcs {
            let (p, _) = StorePath::parse_prefix(s).map_err(|e| e.to_string())?;
            input_srcs.insert(p);
        }
        let sysroot = match &req.sysroot {
            Some(s) => {
                let (p, rest) =
                    StorePath::parse_prefix(s).map_err(|e| format!("`__sysroot`: {e}"))?;
                if !rest.is_empty() {
                    return Err(format!(
                        "`__sysroot` must be a store path, not a path inside one ({s})"
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let mut env = req.env.clone();
        for o in &req.outputs {
            env.insert(o.clone(), String::new());
        }
        let mut drv = Derivation {
            version: DRV_VERSION.to_string(),
            name: req.name.clone(),
            system: req.system.clone(),
            builder: req.builder.clone(),
            args: req.args.clone(),
            env,
            outputs: req
                .outputs
                .iter()
                .map(|o| {
                    (
                        o.clone(),
                        DerivationOutput {
                            path: None,
                            fixed: fixed.clone(),
                        },
                    )
                })
                .collect(),
            input_drvs,
            input_srcs,
            sandbox: SandboxProfile {
                sysroot,
                network: fixed.is_some(),
            },
        };
        let h = {
            let mut hasher = self.hasher.borrow_mut();
            hasher
                .hash(&drv, &mut |p| self.load_drv(p))
                .map_err(|e| e.to_string())?
        };
        drv.fill_output_paths(&h).map_err(|e| e.to_string())?;
        let mut outputs = Vec::new();
        for (o, out) in &drv.outputs {
            let p = out.path.as_ref().map(|p| p.to_string()).unwrap_or_default();
            outputs.push((o.clone(), p));
        }
        for (o, p) in &outputs {
            drv.env.insert(o.clone(), p.clone());
        }
        // outputs in declaration order, as Nix lists them
        outputs.sort_by_key(|(o, _)| req.outputs.iter().position(|x| x == o));
        let bytes = drv.encode();
        let drv_path = store
            .add_bytes(&format!("{}.drv", req.name), &bytes, &drv.references())
            .map_err(|e| e.to_string())?;
        self.hasher.borrow_mut().insert(drv_path.clone(), h);
        Ok(DrvResult {
            drv_path: drv_path.to_string(),
            outputs,
        })
    }
}

impl EvalIo for StoreIo {
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        self.fs.read_file(&self.host_path(path).to_string_lossy())
    }
    fn file_kind(&self, path: &str) -> Option<FileKind> {
        self.fs.file_kind(&self.host_path(path).to_string_lossy())
    }
    fn read_dir(&self, path: &str) -> io::Result<Vec<(String, FileKind)>> {
        self.fs.read_dir(&self.host_path(path).to_string_lossy())
    }
    fn home_dir(&self) -> Option<String> {
        self.fs.home_dir()
    }
    fn get_env(&self, name: &str) -> Option<String> {
        self.fs.get_env(name)
    }
    fn trace(&self, message: &str) {
        self.fs.trace(message)
    }
    fn add_to_store(&self, name: &str, path: &str) -> Result<String, String> {
        let store = self.store()?;
        let src = self.host_path(path);
        if let Some(known) = already_added(store, &src, name) {
            return Ok(known.to_string());
        }
        store
            .add_path(&src, Some(name))
            .map(|p| p.to_string())
            .map_err(|e| e.to_string())
    }
    fn add_filtered_to_store(
        &self,
        name: &str,
        path: &str,
        excluded: &BTreeSet<String>,
    ) -> Result<String, String> {
        if excluded.is_empty() {
            return self.add_to_store(name, path);
        }
        let store = self.store()?;
        std::fs::create_dir_all(self.layout.tmp_dir()).map_err(|e| e.to_string())?;
        let tmp = tempdir_in(&self.layout.tmp_dir()).map_err(|e| e.to_string())?;
        let staged = tmp.join("src");
        let src = self.host_path(path);
        let res = copy_tree(&src, Path::new(path), &staged, excluded)
            .map_err(|e| format!("copying {}: {e}", src.display()))
            .and_then(|_| {
                store
                    .add_path(&staged, Some(name))
                    .map_err(|e| e.to_string())
            });
        let _ = buildit_store::archive::remove_tree(&tmp);
        res.map(|p| p.to_string())
    }
    fn add_text_to_store(
        &self,
        name: &str,
        contents: &str,
        references: &[String],
    ) -> Result<String, String> {
        let store = self.store()?;
        let mut refs = Vec::new();
        for r in references {
            let (p, _) = StorePath::parse_prefix(r).map_err(|e| e.to_string())?;
            refs.push(p);
        }
        store
            .add_bytes(name, contents.as_bytes(), &refs)
            .map(|p| p.to_string())
            .map_err(|e| e.to_string())
    }
    fn derivation(&self, drv: &DrvRequest) -> Result<DrvResult, String> {
        self.build_derivation(drv)
    }
    fn fetch_tree(&self, req: &TreeRequest) -> Result<String, TreeError> {
        crate::fetchtree::fetch_tree(self, req)
    }
    fn is_valid_store_path(&self, path: &str) -> Result<bool, String> {
        let p = StorePath::parse(path).map_err(|e| e.to_string())?;
        self.store()?.is_valid(&p).map_err(|e| e.to_string())
    }
    fn store_dir(&self) -> String {
        STORE_DIR.to_string()
    }
    fn lookup_path(&self, name: &str) -> Result<String, String> {
        let root = self
            .stdlib
            .get_or_init(|| {
                let store = self.store()?;
                std::fs::create_dir_all(self.layout.tmp_dir()).map_err(|e| e.to_string())?;
                let tmp = tempdir_in(&self.layout.tmp_dir()).map_err(|e| e.to_string())?;
                let dir = tmp.join("buildit-stdlib");
                let res = crate::embedded::write_with(&dir, &self.stdlib_files)
                    .map_err(|e| e.to_string())
                    .and_then(|_| match already_added(store, &dir, "buildit-stdlib") {
                        Some(p) => Ok(p),
                        None => store
                            .add_path(&dir, Some("buildit-stdlib"))
                            .map_err(|e| e.to_string()),
                    });
                let _ = buildit_store::archive::remove_tree(&tmp);
                res.map(|p| p.to_string())
            })
            .clone()?;
        Ok(match name.strip_prefix("buildit") {
            Some("") | None => root,
            Some(rest) => format!("{root}{rest}"),
        })
    }
}

impl TreeStore for StoreIo {
    fn store(&self) -> Result<&Store, String> {
        StoreIo::store(self)
    }
    fn fetcher(&self) -> Option<&dyn TreeFetcher> {
        self.fetcher.as_deref()
    }
    fn write_drv(&self, req: &DrvRequest) -> Result<(StorePath, Vec<(String, String)>), String> {
        let r = self.build_derivation(req)?;
        let drv = StorePath::parse(&r.drv_path).map_err(|e| e.to_string())?;
        Ok((drv, r.outputs))
    }
}

/// The store path of `src` added as `name` when the store has it already: evaluating the same
/// sources again (every no-op rebuild) then costs one hashing pass and one lookup, instead of a
/// copy into the store's staging area that is thrown away. `None` when it must be added (or
/// anything failed: [`Store::add_path`] then reports it).
fn already_added(store: &Store, src: &Path, name: &str) -> Option<StorePath> {
    let hash = buildit_store::content_hash(src).ok()?;
    let p = StorePath::for_source(&hash.0, &[], false, name).ok()?;
    // held from now on, as add_path would, so a collection cannot take it from under us
    store.add_temp_root(&p);
    store.is_valid(&p).ok()?.then_some(p)
}

/// A fresh directory under `parent` (removed by the caller).
fn tempdir_in(parent: &Path) -> io::Result<PathBuf> {
    for i in 0..1000u32 {
        let p = parent.join(format!("copy-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a temporary directory"))
}

/// Copy `src` (whose logical name, as the filter saw it, is `logical`) to `dst`, leaving out the
/// logical paths in `excluded`. Symlinks are copied as links.
fn copy_tree(
    src: &Path,
    logical: &Path,
    dst: &Path,
    excluded: &BTreeSet<String>,
) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else if ft.is_dir() {
        std::fs::create_dir(dst)?;
        let mut names: Vec<_> = std::fs::read_dir(src)?.collect::<io::Result<Vec<_>>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name();
            let l = logical.join(&name);
            if excluded.contains(&*l.to_string_lossy()) {
                continue;
            }
            copy_tree(&e.path(), &l, &dst.join(&name), excluded)?;
        }
        Ok(())
    } else {
        std::fs::copy(src, dst).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(root: &Path) -> StoreIo {
        StoreIo::new(FsIo::new(|_| {}), StoreLayout::at(root))
    }

    /// A replaced library file is what `<buildit>` holds, and the library gets another path;
    /// the same replacement gives the same path, and an unknown file is refused.
    #[test]
    fn replaced_stdlib_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = io(dir.path());
        let lock = crate::embedded::DEBIAN_LOCK;
        let other = || {
            io(dir.path())
                .with_stdlib_file(lock, "version = 1\n".to_string())
                .expect("the lock is a library file")
        };
        let (a, b, c) = (
            plain.lookup_path("buildit").expect("stdlib"),
            other().lookup_path("buildit").expect("stdlib"),
            other().lookup_path("buildit").expect("stdlib"),
        );
        assert_ne!(a, b);
        assert_eq!(b, c);
        let text = other()
            .read_file(&format!("{b}/{lock}"))
            .expect("the replaced lock is readable");
        assert_eq!(text, b"version = 1\n");
        let original = plain
            .read_file(&format!("{a}/{lock}"))
            .expect("the lock is readable");
        assert_ne!(original, b"version = 1\n");
        assert!(io(dir.path())
            .with_stdlib_file("no/such.bld", String::new())
            .is_err());
    }
}
