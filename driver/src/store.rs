//! Store queries the commands answer: paths named on the command line (store paths, their
//! physical locations, out-links), why one path depends on another, the entries of a store
//! object, and `.drv` files with the derivations they need.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use buildit_store::derivation::Derivation;
use buildit_store::{Store, StoreError, StoreLayout, StorePath};

use crate::error::{DriverError, Result};

/// A command-line path as a valid store path of `store` (an out-link or a physical path
/// resolves to its store path).
pub fn resolve_valid(store: &Store, arg: &str) -> Result<StorePath> {
    let (p, _) = store.resolve(arg)?;
    if !store.is_valid(&p)? {
        return Err(StoreError::NotValid(p).into());
    }
    Ok(p)
}

/// A chain of references from `a` to `b` (both included, `a` first), shortest first found;
/// an error when `a`'s closure does not contain `b`.
pub fn why_depends(store: &Store, a: &StorePath, b: &StorePath) -> Result<Vec<StorePath>> {
    let mut prev: HashMap<StorePath, StorePath> = HashMap::new();
    let mut seen = BTreeSet::from([a.clone()]);
    let mut q = VecDeque::from([a.clone()]);
    let mut found = a == b;
    while let Some(p) = q.pop_front() {
        if found {
            break;
        }
        for r in store.references(&p)? {
            if seen.insert(r.clone()) {
                prev.insert(r.clone(), p.clone());
                if &r == b {
                    found = true;
                    break;
                }
                q.push_back(r);
            }
        }
    }
    if !found {
        return Err(DriverError::request(
            "buildit::store::no-dependency",
            format!("{a} does not depend on {b}"),
            "see its closure with `buildit store path-info --closure`",
        ));
    }
    let mut chain = vec![b.clone()];
    let mut cur = b.clone();
    while let Some(p) = prev.get(&cur) {
        chain.push(p.clone());
        cur = p.clone();
    }
    chain.reverse();
    Ok(chain)
}

/// What an entry of a store object is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File { executable: bool, size: u64 },
    Dir,
    Symlink { target: String },
}

/// One entry of a store object: its path inside the object (`.` for the object itself when it
/// is not a directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
}

fn no_such(p: &StorePath, sub: &str, e: std::io::Error) -> DriverError {
    DriverError::request(
        "buildit::store::no-such-file",
        format!("{}: {e}", Store::logical(p, sub)),
        "list the object with `buildit store ls -R`",
    )
}

fn io_error(p: &Path, e: std::io::Error) -> DriverError {
    DriverError::request(
        "buildit::store::io",
        format!("{}: {e}", p.display()),
        "check the path and permissions",
    )
}

fn entry(phys: &Path, meta: &std::fs::Metadata, name: String) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        let target = std::fs::read_link(phys).unwrap_or_default();
        EntryKind::Symlink {
            target: target.display().to_string(),
        }
    } else if ft.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File {
            executable: meta.permissions().mode() & 0o111 != 0,
            size: meta.size(),
        }
    };
    Entry { name, kind }
}

fn list_dir(dir: &Path, prefix: &str, recursive: bool, out: &mut Vec<Entry>) -> Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for n in names {
        let p = dir.join(&n);
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io_error(&p, e))?;
        let name = format!("{prefix}{}", n.to_string_lossy());
        out.push(entry(&p, &meta, name.clone()));
        if recursive && meta.is_dir() {
            list_dir(&p, &format!("{name}/"), true, out)?;
        }
    }
    Ok(())
}

/// The entries of the store object (or the directory inside one) `arg` names, sorted by name
/// bytes; with `recursive`, everything below too.
pub fn list(store: &Store, arg: &str, recursive: bool) -> Result<Vec<Entry>> {
    let (p, sub) = store.resolve(arg)?;
    if !store.is_valid(&p)? {
        return Err(StoreError::NotValid(p).into());
    }
    let phys = store.physical_sub(&p, &sub)?;
    let meta = std::fs::symlink_metadata(&phys).map_err(|e| no_such(&p, &sub, e))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        list_dir(&phys, "", recursive, &mut out)?;
    } else {
        out.push(entry(&phys, &meta, ".".to_string()));
    }
    Ok(out)
}

/// Resolve a command-line path to a store path without opening the store: `/bld/store/…`, the
/// physical `ROOT/store/…`, or a symlink (an out-link such as `./result`) to either.
pub fn resolve_store_path(
    layout: &StoreLayout,
    arg: &str,
) -> std::result::Result<StorePath, String> {
    let phys = layout.store_dir();
    let mut text = arg.to_string();
    if !text.starts_with(buildit_store::STORE_DIR) {
        let p = Path::new(arg);
        let target = if p.is_symlink() {
            std::fs::read_link(p).map_err(|e| format!("{arg}: {e}"))?
        } else {
            p.to_path_buf()
        };
        let target = if target.is_relative() {
            Path::new(&crate::eval::cwd()).join(target)
        } else {
            target
        };
        if let Ok(rest) = target.strip_prefix(&phys) {
            text = format!("{}/{}", buildit_store::STORE_DIR, rest.display());
        } else {
            text = target.display().to_string();
        }
    }
    StorePath::parse_prefix(&text)
        .map(|(p, _)| p)
        .map_err(|e| e.to_string())
}

/// The derivations of the `.drv` paths named by `args`, and with `recursive` of every
/// derivation they need, by store path.
pub fn read_derivations(
    layout: &StoreLayout,
    args: &[String],
    recursive: bool,
) -> Result<BTreeMap<StorePath, Derivation>> {
    let mut todo: Vec<StorePath> = Vec::new();
    for a in args {
        match resolve_store_path(layout, a) {
            Ok(sp) if sp.is_derivation() => todo.push(sp),
            Ok(sp) => {
                return Err(DriverError::request(
                    "buildit::cli::not-a-derivation",
                    format!("'{sp}' is not a derivation (.drv) path"),
                    "pass the .drv path printed by `buildit instantiate`",
                ))
            }
            Err(e) => {
                return Err(DriverError::request(
                    "buildit::cli::bad-store-path",
                    e,
                    "store paths look like /bld/store/<hash>-<name>.drv",
                ))
            }
        }
    }
    let mut out = BTreeMap::new();
    while let Some(p) = todo.pop() {
        if out.contains_key(&p) {
            continue;
        }
        let bytes = std::fs::read(layout.physical(&p)).map_err(|e| {
            DriverError::request(
                "buildit::store::missing",
                format!("cannot read {p}: {e}"),
                "instantiate the expression first (`buildit instantiate FILE`), or check --store-root",
            )
        })?;
        let d = Derivation::decode(&bytes).map_err(|e| {
            DriverError::request(
                "buildit::store::bad-derivation",
                format!("{p}: {e}"),
                "the file is not a buildit derivation; `buildit store verify --check-contents` checks the store",
            )
        })?;
        if recursive {
            todo.extend(d.input_drvs.keys().cloned());
        }
        out.insert(p, d);
    }
    Ok(out)
}
