//! Input roots as Merkle trees of REAPI `Directory` messages.
//!
//! A store path becomes a node (a file, a directory with its `Directory` messages, or a
//! symlink) once per process: store objects never change after registration, so
//! [`TreeCache`] keeps each path's tree by store path and an action of a big graph hashes
//! only the inputs no earlier action had. The input root of a build is the filesystem the
//! command sees, laid out as the local sandbox lays it out (`docs/distributed.md`):
//!
//! ```text
//! bld/store/<each path of the input closure>
//! build/            the working directory (empty)
//! etc/passwd, etc/group, etc/hosts
//! tmp/              (empty)
//! usr/              the sysroot's tree, with bin, sbin, lib, lib64 -> usr/... (when it has one)
//! ```
//!
//! The runner provides `/proc` and `/dev`. Permissions and times are not part of the tree:
//! a file is its bytes and its executable bit, which is all the store keeps of it too.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    Digest, Directory, DirectoryNode, FileNode, SymlinkNode,
};
use buildit_store::{StoreLayout, StorePath};
use prost::Message;

use crate::digest::DigestFn;
use crate::error::RemoteError;

/// One entry of a tree.
#[derive(Clone, Debug)]
pub enum Node {
    File { digest: Digest, executable: bool },
    Dir { digest: Digest },
    Symlink { target: String },
}

/// The Merkle tree of one host path: its node and every blob below it.
#[derive(Clone, Debug, Default)]
pub struct PathTree {
    pub node: Option<Node>,
    /// Every `Directory` message (encoded) of the tree.
    pub dirs: Vec<(Digest, Vec<u8>)>,
    /// Every file: its digest and where its bytes are.
    pub files: Vec<(Digest, PathBuf)>,
}

/// The blobs an action needs in the CAS, by hash.
#[derive(Debug, Default)]
pub struct Blobs {
    /// Messages (directories, the command, the action), encoded.
    pub messages: HashMap<String, (Digest, Arc<Vec<u8>>)>,
    /// Files, read when uploaded.
    pub files: HashMap<String, (Digest, PathBuf)>,
}

impl Blobs {
    pub fn add_message(&mut self, d: Digest, bytes: Vec<u8>) {
        self.messages
            .entry(d.hash.clone())
            .or_insert_with(|| (d, Arc::new(bytes)));
    }
    fn add_tree(&mut self, t: &PathTree) {
        for (d, b) in &t.dirs {
            self.add_message(d.clone(), b.clone());
        }
        for (d, p) in &t.files {
            self.files
                .entry(d.hash.clone())
                .or_insert_with(|| (d.clone(), p.clone()));
        }
    }
    /// Every digest.
    pub fn digests(&self) -> Vec<Digest> {
        self.messages
            .values()
            .map(|(d, _)| d.clone())
            .chain(self.files.values().map(|(d, _)| d.clone()))
            .collect()
    }
    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.digests()
            .iter()
            .map(|d| u64::try_from(d.size_bytes).unwrap_or(0))
            .sum()
    }
}

/// The trees of store paths, computed once per process.
#[derive(Debug, Default)]
pub struct TreeCache {
    trees: Mutex<HashMap<StorePath, Arc<PathTree>>>,
}

impl TreeCache {
    /// The tree of `p` (physically under `layout`).
    pub fn get(
        &self,
        f: DigestFn,
        layout: &StoreLayout,
        p: &StorePath,
    ) -> Result<Arc<PathTree>, RemoteError> {
        if let Some(t) = self.trees.lock().ok().and_then(|m| m.get(p).cloned()) {
            return Ok(t);
        }
        let phys = layout.physical(p);
        let t = Arc::new(tree_of(f, &phys)?);
        if let Ok(mut m) = self.trees.lock() {
            m.insert(p.clone(), t.clone());
        }
        Ok(t)
    }
}

fn io(p: &Path, e: std::io::Error) -> RemoteError {
    RemoteError::Io {
        what: format!("reading {}", p.display()),
        source: e,
    }
}

/// A directory's message from its entries (sorted by name, as the protocol requires).
pub fn directory(entries: &BTreeMap<String, Node>) -> Directory {
    let mut d = Directory::default();
    for (name, n) in entries {
        match n {
            Node::File { digest, executable } => d.files.push(FileNode {
                name: name.clone(),
                digest: Some(digest.clone()),
                is_executable: *executable,
                node_properties: None,
            }),
            Node::Dir { digest } => d.directories.push(DirectoryNode {
                name: name.clone(),
                digest: Some(digest.clone()),
            }),
            Node::Symlink { target } => d.symlinks.push(SymlinkNode {
                name: name.clone(),
                target: target.clone(),
                node_properties: None,
            }),
        }
    }
    d
}

/// The tree of the host path `p` (a file, a directory or a symlink).
pub fn tree_of(f: DigestFn, p: &Path) -> Result<PathTree, RemoteError> {
    let mut t = PathTree::default();
    let node = walk(f, p, &mut t)?;
    t.node = Some(node);
    Ok(t)
}

fn walk(f: DigestFn, p: &Path, t: &mut PathTree) -> Result<Node, RemoteError> {
    let meta = std::fs::symlink_metadata(p).map_err(|e| io(p, e))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(p).map_err(|e| io(p, e))?;
        let target = target.to_str().ok_or_else(|| RemoteError::Unsupported {
            path: p.to_path_buf(),
            what: "a symlink whose target is not UTF-8",
        })?;
        return Ok(Node::Symlink {
            target: target.to_string(),
        });
    }
    if ft.is_file() {
        let digest = f.of_file(p).map_err(|e| io(p, e))?;
        t.files.push((digest.clone(), p.to_path_buf()));
        return Ok(Node::File {
            digest,
            executable: meta.permissions().mode() & 0o111 != 0,
        });
    }
    if !ft.is_dir() {
        return Err(RemoteError::Unsupported {
            path: p.to_path_buf(),
            what: "a file that is neither a regular file, a directory nor a symlink",
        });
    }
    let mut entries = BTreeMap::new();
    for e in std::fs::read_dir(p).map_err(|e| io(p, e))? {
        let e = e.map_err(|e| io(p, e))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|_| RemoteError::Unsupported {
                path: e.path(),
                what: "a file name that is not UTF-8",
            })?;
        let n = walk(f, &e.path(), t)?;
        entries.insert(name, n);
    }
    let bytes = directory(&entries).encode_to_vec();
    let digest = f.of(&bytes);
    t.dirs.push((digest.clone(), bytes));
    Ok(Node::Dir { digest })
}

/// The input root of one build (see the module documentation): its digest, with every blob
/// it holds added to `blobs`.
pub fn input_root(
    f: DigestFn,
    cache: &TreeCache,
    layout: &StoreLayout,
    closure: &[StorePath],
    sysroot: Option<&StorePath>,
    blobs: &mut Blobs,
) -> Result<Digest, RemoteError> {
    let add_dir = |blobs: &mut Blobs, entries: &BTreeMap<String, Node>| -> Node {
        let bytes = directory(entries).encode_to_vec();
        let digest = f.of(&bytes);
        blobs.add_message(digest.clone(), bytes);
        Node::Dir { digest }
    };
    let mut store = BTreeMap::new();
    for p in closure {
        let t = cache.get(f, layout, p)?;
        blobs.add_tree(&t);
        if let Some(n) = &t.node {
            store.insert(p.base_name(), n.clone());
        }
    }
    let mut root = BTreeMap::new();
    let store = add_dir(blobs, &store);
    let bld = add_dir(blobs, &BTreeMap::from([("store".to_string(), store)]));
    root.insert("bld".to_string(), bld);
    let empty = add_dir(blobs, &BTreeMap::new());
    root.insert("build".to_string(), empty.clone());
    root.insert("tmp".to_string(), empty);
    let mut etc = BTreeMap::new();
    for (name, text) in [
        ("group", buildit_builder::sandbox::GROUP),
        ("hosts", buildit_builder::sandbox::HOSTS),
        ("passwd", buildit_builder::sandbox::PASSWD),
    ] {
        let digest = f.of(text.as_bytes());
        blobs.add_message(digest.clone(), text.as_bytes().to_vec());
        etc.insert(
            name.to_string(),
            Node::File {
                digest,
                executable: false,
            },
        );
    }
    root.insert("etc".to_string(), add_dir(blobs, &etc));
    if let Some(s) = sysroot {
        let t = cache.get(f, layout, s)?;
        blobs.add_tree(&t);
        match &t.node {
            Some(n @ Node::Dir { .. }) => {
                root.insert("usr".to_string(), n.clone());
            }
            _ => {
                return Err(RemoteError::Unsupported {
                    path: layout.physical(s),
                    what: "a sysroot that is not a directory",
                })
            }
        }
        for d in ["bin", "sbin", "lib", "lib64"] {
            root.insert(
                d.to_string(),
                Node::Symlink {
                    target: format!("usr/{d}"),
                },
            );
        }
    }
    let bytes = directory(&root).encode_to_vec();
    let digest = f.of(&bytes);
    blobs.add_message(digest.clone(), bytes);
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_is_sorted_and_content_addressed() {
        let d = tempfile::tempdir().expect("tmp");
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("sub")).expect("mkdir");
        std::fs::write(a.join("z"), b"z").expect("w");
        std::fs::write(a.join("b"), b"b").expect("w");
        std::fs::set_permissions(a.join("b"), std::fs::Permissions::from_mode(0o755)).expect("x");
        std::os::unix::fs::symlink("b", a.join("l")).expect("ln");
        let t = tree_of(DigestFn::Sha256, &a).expect("tree");
        let root = Directory::decode(t.dirs.last().expect("root").1.as_slice()).expect("decode");
        let names: Vec<&str> = root.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b", "z"]);
        assert!(root.files[0].is_executable && !root.files[1].is_executable);
        assert_eq!(root.symlinks[0].target, "b");
        assert_eq!(t.files.len(), 2);
        // same content elsewhere, same digest
        let c = d.path().join("c");
        std::fs::create_dir_all(c.join("sub")).expect("mkdir");
        std::fs::write(c.join("z"), b"z").expect("w");
        std::fs::write(c.join("b"), b"b").expect("w");
        std::fs::set_permissions(c.join("b"), std::fs::Permissions::from_mode(0o755)).expect("x");
        std::os::unix::fs::symlink("b", c.join("l")).expect("ln");
        let t2 = tree_of(DigestFn::Sha256, &c).expect("tree");
        assert_eq!(t.dirs.last().map(|x| &x.0), t2.dirs.last().map(|x| &x.0));
        std::fs::write(c.join("z"), b"y").expect("w");
        let t3 = tree_of(DigestFn::Sha256, &c).expect("tree");
        assert_ne!(t.dirs.last().map(|x| &x.0), t3.dirs.last().map(|x| &x.0));
    }
}
