//! Trees fetched during evaluation (`builtins.fetchTarball`, `builtins.fetchGit`): where their
//! store paths come from, when the network is needed at all, and how a fetched tree becomes a
//! valid path.
//!
//! The store path is known before anything is fetched, so a tree that is already valid costs
//! one database lookup and no network (a second evaluation works offline):
//!
//! - a tarball is a fixed output: `StorePath::for_fixed("recursive", algo, hash, name)`, the
//!   path a fixed-output derivation declaring that hash has. A `.drv` describing the fetch is
//!   written and recorded as the path's deriver, so the store knows the path is
//!   content-addressed by that hash (export and copies check it);
//! - a git tree is addressed by its commit: the fingerprint `git:<rev>:<store dir>:<name>`.
//!   The commit hash pins the tree (git checks every object it fetches against its hash), so
//!   the same revision gives the same path on every machine, whatever URL served it.
//!
//! Fetching is the driver's ([`TreeFetcher`]: it owns the downloader and runs git); it hands
//! back an archive (the download, or `git archive` output). Unpacking it under the archive
//! rules ([`crate::unpack`]), checking the hash and registering happen here, in the one place
//! that registers: a tree is registered only when every entry was accepted and its recursive
//! hash is the pinned one, and then atomically, by the store.

use std::path::{Path, PathBuf};

use buildit_eval::io::{DrvRequest, TreeError, TreeRequest, TreeSource};
use buildit_store::archive::fixed_output_hash;
use buildit_store::derivation::{FixedOutput, HashAlgo, HashMode};
use buildit_store::path::{base32_encode, validate_name, StorePath, STORE_DIR};
use buildit_store::Store;

use crate::unpack::{unpack_archive, UnpackLimits};

/// Fetches trees for evaluation: given by whoever builds the [`crate::StoreIo`] (the driver,
/// which owns the downloader and knows git).
pub trait TreeFetcher {
    /// Fetch `source` into `work` (an empty directory on the store's file system, removed
    /// afterwards) and return the archive holding the tree, a file inside `work`: the
    /// download of a tarball, the `git archive` of a revision (tar; plain, gzip, xz or zstd).
    /// Nothing is checked here: the caller unpacks and checks before registering. The error
    /// says what failed (network, a missing revision, a time limit).
    fn fetch(&self, source: &TreeSource, work: &Path) -> Result<PathBuf, String>;
}

/// How the expression wrote a hash, so a mismatch prints the actual one the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    Hex,
    NixBase32,
    Sri,
}

impl Written {
    fn of(text: &str) -> Written {
        if text.is_empty() || text.contains('-') {
            Written::Sri
        } else if text.len() == 52 {
            Written::NixBase32
        } else {
            Written::Hex
        }
    }

    fn render(self, algo: HashAlgo, digest: &[u8]) -> String {
        match self {
            Written::Hex => digest.iter().map(|b| format!("{b:02x}")).collect(),
            Written::NixBase32 => base32_encode(digest),
            Written::Sri => FixedOutput {
                mode: HashMode::Recursive,
                algo,
                hash: digest.to_vec(),
            }
            .sri(),
        }
    }
}

/// The pin of a tarball: `None` for an empty hash (fetch, then report the actual hash).
fn tarball_pin(hash: &str) -> Result<Option<FixedOutput>, TreeError> {
    if hash.is_empty() {
        return Ok(None);
    }
    let algo = (!hash.contains('-')).then_some("sha256");
    FixedOutput::parse(hash, algo, "recursive")
        .map(Some)
        .map_err(|e| TreeError::Invalid(format!("the hash: {e}")))
}

/// The store path of a git tree: addressed by the commit it is the tree of.
pub fn git_tree_path(rev: &str, name: &str) -> Result<StorePath, String> {
    StorePath::from_fingerprint(&format!("git:{rev}:{STORE_DIR}:{name}"), name)
        .map_err(|e| e.to_string())
}

/// The store path of a tarball's tree pinned by `pin`.
pub fn tarball_path(pin: &FixedOutput, name: &str) -> Result<StorePath, String> {
    StorePath::for_fixed(HashMode::Recursive.name(), pin.algo.name(), &pin.hash, name)
        .map_err(|e| e.to_string())
}

/// The derivation recorded as a tarball's deriver: a fixed output, so its output path is
/// [`tarball_path`] and it says where the content came from.
pub(crate) fn tarball_drv(name: &str, url: &str, pin: &FixedOutput) -> DrvRequest {
    let mut req = DrvRequest {
        name: name.to_string(),
        system: "builtin".to_string(),
        builder: "builtin:fetchTarball".to_string(),
        outputs: vec!["out".to_string()],
        fixed: Some((pin.sri(), None, "recursive".to_string())),
        ..DrvRequest::default()
    };
    for (k, v) in [
        ("name", name),
        ("system", "builtin"),
        ("builder", "builtin:fetchTarball"),
        ("url", url),
        ("outputHash", pin.sri().as_str()),
        ("outputHashMode", "recursive"),
        ("unpack", "1"),
    ] {
        req.env.insert(k.to_string(), v.to_string());
    }
    req
}

/// What [`fetch_tree`] needs from the store glue.
pub(crate) trait TreeStore {
    fn store(&self) -> Result<&Store, String>;
    fn fetcher(&self) -> Option<&dyn TreeFetcher>;
    /// The bounds of unpacking.
    fn unpack_limits(&self) -> UnpackLimits {
        UnpackLimits::default()
    }
    /// Write a derivation; returns its `.drv` path and its outputs.
    fn write_drv(&self, req: &DrvRequest) -> Result<(StorePath, Vec<(String, String)>), String>;
}

fn store_err(e: impl std::fmt::Display) -> TreeError {
    TreeError::Fetch(format!("the store: {e}"))
}

/// `EvalIo::fetch_tree` over a store: the path if it is valid, else fetch, check, register.
pub(crate) fn fetch_tree(io: &dyn TreeStore, req: &TreeRequest) -> Result<String, TreeError> {
    validate_name(&req.name)
        .map_err(|e| TreeError::Invalid(format!("invalid name '{}': {e}", req.name)))?;
    let store = io.store().map_err(TreeError::Unavailable)?;
    match &req.source {
        TreeSource::Tarball { url, hash } => {
            let pin = tarball_pin(hash)?;
            if let Some(pin) = &pin {
                let path = tarball_path(pin, &req.name).map_err(TreeError::Invalid)?;
                store.add_temp_root(&path);
                if store.is_valid(&path).map_err(store_err)? {
                    return Ok(path.to_string());
                }
            }
            let fetcher = io.fetcher().ok_or_else(|| {
                TreeError::Unavailable("this evaluation has no fetcher".to_string())
            })?;
            let work = store.staging_dir("fetch").map_err(store_err)?;
            let tree = fetched(fetcher, &req.source, work.path(), io.unpack_limits())?;
            let algo = pin.as_ref().map(|p| p.algo).unwrap_or(HashAlgo::Sha256);
            let actual = fixed_output_hash(&tree, HashMode::Recursive, algo)
                .map_err(|e| TreeError::Fetch(format!("hashing the tree from {url}: {e}")))?;
            let written = Written::of(hash);
            let pin = match pin {
                Some(p) if p.hash == actual => p,
                _ => {
                    return Err(TreeError::HashMismatch {
                        url: url.clone(),
                        expected: if hash.is_empty() {
                            "(none given)".to_string()
                        } else {
                            hash.clone()
                        },
                        actual: written.render(algo, &actual),
                    })
                }
            };
            let path = tarball_path(&pin, &req.name).map_err(TreeError::Invalid)?;
            // the deriver is written only now, so a failed fetch registers nothing at all
            let (drv, outs) = io
                .write_drv(&tarball_drv(&req.name, url, &pin))
                .map_err(store_err)?;
            if outs.first().map(|(_, p)| p.as_str()) != Some(path.to_string().as_str()) {
                return Err(TreeError::Fetch(format!(
                    "the fetch derivation {drv} does not produce {path}"
                )));
            }
            store
                .register_output(&tree, &path, &[], Some(&drv))
                .map_err(store_err)?;
            Ok(path.to_string())
        }
        TreeSource::Git { rev, .. } => {
            let path = git_tree_path(rev, &req.name).map_err(TreeError::Invalid)?;
            store.add_temp_root(&path);
            if store.is_valid(&path).map_err(store_err)? {
                return Ok(path.to_string());
            }
            let fetcher = io.fetcher().ok_or_else(|| {
                TreeError::Unavailable("this evaluation has no fetcher".to_string())
            })?;
            let work = store.staging_dir("fetch").map_err(store_err)?;
            let tree = fetched(fetcher, &req.source, work.path(), io.unpack_limits())?;
            store
                .register_output(&tree, &path, &[], None)
                .map_err(store_err)?;
            Ok(path.to_string())
        }
    }
}

/// Run the fetcher and unpack the archive it fetched into `work/tree` (a tarball's single
/// top-level directory stripped); returns the tree.
fn fetched(
    fetcher: &dyn TreeFetcher,
    source: &TreeSource,
    work: &Path,
    limits: UnpackLimits,
) -> Result<PathBuf, TreeError> {
    let archive = fetcher.fetch(source, work).map_err(TreeError::Fetch)?;
    if !archive.starts_with(work) || archive == work {
        return Err(TreeError::Fetch(format!(
            "the fetcher left the archive outside its work directory ({})",
            archive.display()
        )));
    }
    let (from, strip) = match source {
        TreeSource::Tarball { url, .. } => (url, true),
        TreeSource::Git { url, rev, .. } => {
            return unpack_archive(&archive, &work.join("tree"), false, limits).map_err(|e| {
                TreeError::Fetch(format!("{url} at {rev}: {e}; nothing was registered"))
            })
        }
    };
    unpack_archive(&archive, &work.join("tree"), strip, limits)
        .map_err(|e| TreeError::Fetch(format!("{from}: {e}; nothing was registered")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FsIo, StoreIo};
    use buildit_eval::EvalIo;
    use buildit_store::StoreLayout;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Writes a tarball of a one-file tree, counting its calls.
    struct OneFile(Rc<Cell<u32>>);

    impl TreeFetcher for OneFile {
        fn fetch(&self, _s: &TreeSource, work: &Path) -> Result<PathBuf, String> {
            self.0.set(self.0.get() + 1);
            let a = work.join("download");
            let f = std::fs::File::create(&a).map_err(|e| e.to_string())?;
            let mut b = tar::Builder::new(f);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "set-1.0/default.bld", &b"42\n"[..])
                .map_err(|e| e.to_string())?;
            b.finish().map_err(|e| e.to_string())?;
            Ok(a)
        }
    }

    fn tarball(hash: &str) -> TreeRequest {
        TreeRequest {
            name: "set".into(),
            source: TreeSource::Tarball {
                url: "http://127.0.0.1:1/set.tar".into(),
                hash: hash.into(),
            },
        }
    }

    /// An empty pin reports the actual hash and registers nothing; the actual hash then
    /// registers the tree (with its deriver), and a valid tree is not fetched again.
    #[test]
    fn pin_by_trial_then_offline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let calls = Rc::new(Cell::new(0));
        let io = StoreIo::new(FsIo::new(|_| {}), StoreLayout::at(dir.path()))
            .with_tree_fetcher(Box::new(OneFile(calls.clone())));
        let Err(TreeError::HashMismatch { actual, .. }) = io.fetch_tree(&tarball("")) else {
            panic!("an empty pin is a mismatch");
        };
        let pin = tarball_pin(&actual).expect("sri").expect("a pin");
        let path = tarball_path(&pin, "set").expect("path");
        let store = io.store().expect("store");
        assert!(!store.is_valid(&path).expect("db"));
        let got = io.fetch_tree(&tarball(&actual)).expect("fetched");
        assert_eq!(got, path.to_string());
        assert_eq!(calls.get(), 2);
        let info = store.path_info(&path).expect("db").expect("registered");
        assert!(info.deriver.is_some());
        assert!(store.content_address(&info).is_some());
        let again = StoreIo::new(FsIo::new(|_| {}), StoreLayout::at(dir.path()));
        assert_eq!(again.fetch_tree(&tarball(&actual)).expect("valid"), got);
        assert_eq!(calls.get(), 2);
        let wrong = "0".repeat(64);
        let Err(TreeError::HashMismatch { actual: hex, .. }) = io.fetch_tree(&tarball(&wrong))
        else {
            panic!("a wrong pin is a mismatch");
        };
        assert_eq!(hex.len(), 64);
        let no_fetcher = StoreIo::new(FsIo::new(|_| {}), StoreLayout::at(dir.path()));
        assert!(matches!(
            no_fetcher.fetch_tree(&tarball(&wrong)),
            Err(TreeError::Unavailable(_))
        ));
    }

    #[test]
    fn mismatches_are_written_as_the_pin_was() {
        let d = [0xabu8; 32];
        assert_eq!(Written::of("").render(HashAlgo::Sha256, &d).len(), 51);
        assert!(Written::of("")
            .render(HashAlgo::Sha256, &d)
            .starts_with("sha256-"));
        assert_eq!(
            Written::of(&"0".repeat(64)).render(HashAlgo::Sha256, &d),
            "ab".repeat(32)
        );
        assert_eq!(
            Written::of(&"0".repeat(52))
                .render(HashAlgo::Sha256, &d)
                .len(),
            52
        );
    }

    #[test]
    fn paths_follow_the_pin() {
        let pin = tarball_pin(&"0".repeat(64)).expect("hex").expect("a pin");
        let a = tarball_path(&pin, "source").expect("path");
        let b = tarball_path(&pin, "set").expect("path");
        assert_ne!(a, b);
        assert!(tarball_pin("sha256-abc").is_err());
        assert!(tarball_pin("").expect("empty").is_none());
        let rev = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            git_tree_path(rev, "source").expect("path"),
            git_tree_path(rev, "source").expect("path")
        );
        assert_ne!(
            git_tree_path(rev, "source").expect("path"),
            git_tree_path(&rev.replace('0', "1"), "source").expect("path")
        );
    }
}
