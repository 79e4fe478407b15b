//! Layers flattened into one tree, the way an OCI runtime applies them in order: what the ACI
//! writer puts under `rootfs/` (an appc image is one tree, not a stack of layers).
//!
//! The rules are those of the OCI image spec's *applying changesets* and of the runtimes that
//! implement it (containerd's `archive.Apply`, umoci's `layer.UnpackLayer`):
//!
//! - an entry's parent directories are resolved through the symlinks already in the tree,
//!   confined to the root (an absolute target starts at the root, `..` stops there), so
//!   `bin/x` written after `bin` → `usr/bin` lands at `usr/bin/x`;
//! - a directory over a directory merges: the children stay, the later entry's metadata
//!   (mode, owner, extended attributes) wins;
//! - any other entry replaces what was at its path, a directory with everything below it
//!   (a directory over a symlink replaces the symlink, a symlink over a directory the
//!   directory);
//! - `.wh.NAME` removes `NAME` of the lower layers, `.wh..wh..opq` empties its directory of
//!   the lower layers' entries; neither is itself part of the tree;
//! - a missing parent is created as a directory (mode 0755, owner 0:0).
//!
//! What cannot be applied is refused with the path named: an entry below a regular file, a
//! symlink chain longer than [`MAX_SYMLINK_HOPS`], an entry name that is absolute or has `..`,
//! and a hard link whose target is missing or replaced by a later layer (the flattened tar
//! could not give the link the content it had).
//!
//! [`plan`] reads only the entries' names, kinds and link targets ([`EntryInfo`]); the ACI
//! writer then streams the layers a second time and writes each surviving entry at its
//! [`Kept`] name.

use std::collections::{BTreeMap, HashMap};

/// The most symlinks followed while resolving one entry's parent (Linux's limit is 40; a
/// layer may hold chains a little longer than a path lookup would).
pub const MAX_SYMLINK_HOPS: usize = 255;

/// What kind of entry a layer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file, device, fifo: anything that is replaced as a whole.
    File,
    Symlink(String),
    /// A hard link to the named path (relative to the root).
    HardLink(String),
}

/// One entry of a layer as [`plan`] sees it.
#[derive(Clone, Debug)]
pub struct EntryInfo {
    /// The name in the layer (`./` prefix and trailing `/` allowed).
    pub name: String,
    pub kind: Kind,
}

/// Where an entry of the flattened tree comes from: its position (layer, entry index).
pub type Pos = (usize, u64);

/// How a surviving entry is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Its path in the flattened tree (relative, no trailing `/`).
    pub name: String,
    /// For a directory merged with later ones: the entry whose metadata it takes.
    pub meta_from: Option<Pos>,
    /// For a hard link: the target's path in the flattened tree.
    pub link_to: Option<String>,
    /// Directories to create (mode 0755) right before this entry: parents no layer had.
    pub implicit_parents: Vec<String>,
}

/// A layer stack that cannot be flattened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layer {layer}: /{path}: {why}")]
pub struct FlattenError {
    pub layer: usize,
    pub path: String,
    pub why: String,
}

#[derive(Clone, Debug)]
struct Node {
    pos: Pos,
    kind: Kind,
    meta_from: Option<Pos>,
    /// For a hard link: the position of its target when the link was made.
    link_pos: Option<Pos>,
    link_to: Option<String>,
    /// Created for an entry below it, not written by any layer.
    implicit: bool,
}

/// The flattened tree being built.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// `name` as a clean relative path: `./` and empty or `.` components dropped; `None` for an
/// absolute path, a `..` component or an empty name (the root itself).
pub fn clean(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut comps = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => comps.push(c),
        }
    }
    (!comps.is_empty()).then(|| comps.join("/"))
}

fn parent_of(p: &str) -> (&str, &str) {
    match p.rsplit_once('/') {
        Some((a, b)) => (a, b),
        None => ("", p),
    }
}

fn join(dir: &str, base: &str) -> String {
    if dir.is_empty() {
        base.to_string()
    } else {
        format!("{dir}/{base}")
    }
}

impl Tree {
    /// Remove `p` and everything below it whose position passes `filter`.
    fn remove_below(&mut self, p: &str, include_self: bool, filter: &dyn Fn(&Node) -> bool) {
        let prefix = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, n)| filter(n))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
        if include_self && self.nodes.get(p).is_some_and(filter) {
            self.nodes.remove(p);
        }
    }

    /// Resolve the directory `dir` through the tree's symlinks; every missing component is
    /// created as an implicit directory.
    fn resolve_dir(&mut self, dir: &str, pos: Pos) -> Result<String, String> {
        let mut todo: Vec<String> = dir
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0usize;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." | "" => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            let here = join(&cur.join("/"), &c);
            match self.nodes.get(&here).map(|n| n.kind.clone()) {
                Some(Kind::Dir) => cur.push(c),
                Some(Kind::Symlink(t)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(format!(
                            "more than {MAX_SYMLINK_HOPS} symlinks on the way (a loop?)"
                        ));
                    }
                    if t.starts_with('/') {
                        cur.clear();
                    }
                    todo.extend(t.split('/').rev().map(str::to_string));
                }
                Some(_) => return Err(format!("/{here} is not a directory")),
                None => {
                    self.nodes.insert(
                        here.clone(),
                        Node {
                            pos,
                            kind: Kind::Dir,
                            meta_from: None,
                            link_pos: None,
                            link_to: None,
                            implicit: true,
                        },
                    );
                    cur.push(c);
                }
            }
        }
        Ok(cur.join("/"))
    }
}

/// The flattened tree: how each surviving entry is written, keyed by its position.
#[derive(Debug, Default)]
pub struct Plan {
    pub kept: HashMap<Pos, Kept>,
    /// Implicit directories with no surviving entry at or below them: written after
    /// everything else (a runtime would have made them too).
    pub trailing: Vec<String>,
}

/// Flatten `layers` (each the entries of one layer, in order). Every entry that survives is
/// in [`Plan::kept`]; every other entry is left out.
pub fn plan<I, L>(layers: L) -> Result<Plan, FlattenError>
where
    L: IntoIterator<Item = I>,
    I: IntoIterator<Item = EntryInfo>,
{
    let mut t = Tree::default();
    for (l, entries) in layers.into_iter().enumerate() {
        for (i, e) in entries.into_iter().enumerate() {
            apply(&mut t, (l, i as u64), e)?;
        }
    }
    let mut out = Plan::default();
    for (name, n) in &t.nodes {
        if n.implicit {
            continue;
        }
        if let (Some(target), Some(want)) = (&n.link_to, n.link_pos) {
            if t.nodes.get(target).map(|x| x.pos) != Some(want) {
                return Err(FlattenError {
                    layer: n.pos.0,
                    path: name.clone(),
                    why: format!(
                        "a hard link to /{target}, which a later layer replaced or removed"
                    ),
                });
            }
        }
        out.kept.insert(
            n.pos,
            Kept {
                name: name.clone(),
                meta_from: n.meta_from,
                link_to: n.link_to.clone(),
                implicit_parents: Vec::new(),
            },
        );
    }
    // an implicit directory is written right before the first surviving entry below it
    for (name, _) in t.nodes.iter().filter(|(_, n)| n.implicit) {
        let prefix = format!("{name}/");
        let first = t
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, x)| !x.implicit)
            .map(|(_, x)| x.pos)
            .min();
        match first.and_then(|p| out.kept.get_mut(&p)) {
            Some(k) => k.implicit_parents.push(name.clone()),
            None => out.trailing.push(name.clone()),
        }
    }
    for k in out.kept.values_mut() {
        k.implicit_parents
            .sort_by(|a, b| crate::tarw::path_cmp(a, b));
    }
    out.trailing.sort_by(|a, b| crate::tarw::path_cmp(a, b));
    Ok(out)
}

fn apply(t: &mut Tree, pos: Pos, e: EntryInfo) -> Result<(), FlattenError> {
    let err = |path: &str, why: String| FlattenError {
        layer: pos.0,
        path: path.to_string(),
        why,
    };
    let Some(name) = clean(&e.name) else {
        if e.name.trim_matches(|c| c == '/' || c == '.').is_empty() && e.kind == Kind::Dir {
            // the root directory itself (`./`): nothing to place
            return Ok(());
        }
        return Err(err(
            &e.name,
            "an entry name that is absolute or has `..`".into(),
        ));
    };
    let (dir, base) = parent_of(&name);
    let dir = t.resolve_dir(dir, pos).map_err(|why| err(&name, why))?;
    if let Some(hidden) = base.strip_prefix(".wh.") {
        let lower = |n: &Node| n.pos.0 < pos.0;
        if hidden == ".wh..opq" {
            t.remove_below(&dir, false, &lower);
        } else if !hidden.is_empty() {
            t.remove_below(&join(&dir, hidden), true, &lower);
        }
        return Ok(());
    }
    let path = join(&dir, base);
    let (link_to, link_pos) = match &e.kind {
        Kind::HardLink(target) => {
            let target = clean(target).ok_or_else(|| {
                err(
                    &path,
                    format!("a hard link to `{target}` (absolute or with `..`)"),
                )
            })?;
            let (td, tb) = parent_of(&target);
            let td = t.resolve_dir(td, pos).map_err(|why| err(&path, why))?;
            let resolved = join(&td, tb);
            let tp = t
                .nodes
                .get(&resolved)
                .filter(|n| !matches!(n.kind, Kind::Dir | Kind::Symlink(_)) && !n.implicit)
                .map(|n| n.pos)
                .ok_or_else(|| {
                    err(
                        &path,
                        format!("a hard link to /{resolved}, which is not a file of the layers"),
                    )
                })?;
            (Some(resolved), Some(tp))
        }
        _ => (None, None),
    };
    match t.nodes.get_mut(&path) {
        Some(old) if old.kind == Kind::Dir && e.kind == Kind::Dir => {
            if old.implicit {
                // a layer writes the directory that was made for an entry below it
                old.implicit = false;
                old.pos = pos;
            } else {
                old.meta_from = Some(pos);
            }
            return Ok(());
        }
        Some(_) => t.remove_below(&path, true, &|_| true),
        None => {}
    }
    t.nodes.insert(
        path,
        Node {
            pos,
            kind: e.kind,
            meta_from: None,
            link_pos,
            link_to,
            implicit: false,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: &str) -> EntryInfo {
        EntryInfo {
            name: n.into(),
            kind: Kind::Dir,
        }
    }
    fn f(n: &str) -> EntryInfo {
        EntryInfo {
            name: n.into(),
            kind: Kind::File,
        }
    }
    fn l(n: &str, t: &str) -> EntryInfo {
        EntryInfo {
            name: n.into(),
            kind: Kind::Symlink(t.into()),
        }
    }
    fn h(n: &str, t: &str) -> EntryInfo {
        EntryInfo {
            name: n.into(),
            kind: Kind::HardLink(t.into()),
        }
    }

    /// The flattened tree as sorted `name@layer.index` strings.
    fn names(layers: Vec<Vec<EntryInfo>>) -> Vec<String> {
        let p = plan(layers).expect("flattens");
        let mut v: Vec<String> = p
            .kept
            .iter()
            .map(|(pos, k)| format!("{}@{}.{}", k.name, pos.0, pos.1))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_same_symlink_in_two_layers_is_one_entry() {
        // the failure of the seed's ACI: `bin` → usr/bin from a Debian layer and the top layer
        let v = names(vec![
            vec![l("bin", "usr/bin"), d("usr"), d("usr/bin"), f("usr/bin/sh")],
            vec![
                l("bin", "usr/bin"),
                d("usr/"),
                d("usr/bin/"),
                f("usr/bin/env"),
            ],
        ]);
        assert_eq!(
            v,
            [
                "bin@1.0",
                "usr/bin/env@1.3",
                "usr/bin/sh@0.3",
                "usr/bin@0.2",
                "usr@0.1"
            ]
        );
    }

    #[test]
    fn directories_merge_and_take_the_later_metadata() {
        let p = plan(vec![
            vec![d("etc"), f("etc/a")],
            vec![d("./etc/"), f("etc/b")],
        ])
        .expect("flattens")
        .kept;
        let etc = p.get(&(0, 0)).expect("etc kept at its first place");
        assert_eq!(etc.name, "etc");
        assert_eq!(etc.meta_from, Some((1, 0)));
        assert!(p.contains_key(&(0, 1)) && p.contains_key(&(1, 1)));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn entries_below_a_symlinked_directory_land_at_its_target() {
        let v = names(vec![
            vec![d("usr"), d("usr/sbin"), l("sbin", "usr/sbin")],
            vec![d("sbin"), f("sbin/nginx")],
        ]);
        // a directory over a symlink replaces the symlink (as tar extraction does)
        assert_eq!(v, ["sbin/nginx@1.1", "sbin@1.0", "usr/sbin@0.1", "usr@0.0"]);
        let v = names(vec![
            vec![d("usr"), d("usr/sbin"), l("sbin", "/usr/./sbin")],
            vec![f("sbin/nginx")],
        ]);
        assert_eq!(
            v,
            ["sbin@0.2", "usr/sbin/nginx@1.0", "usr/sbin@0.1", "usr@0.0"]
        );
        // `..` in a target stops at the root
        let v = names(vec![vec![d("usr"), l("x", "../../../usr")], vec![f("x/f")]]);
        assert_eq!(v, ["usr/f@1.0", "usr@0.0", "x@0.1"]);
    }

    #[test]
    fn a_file_or_symlink_replaces_a_directory_with_its_contents() {
        let v = names(vec![
            vec![d("lib"), d("lib/x"), f("lib/x/a"), f("lib/b"), f("lib-c")],
            vec![l("lib", "usr/lib")],
        ]);
        assert_eq!(v, ["lib-c@0.4", "lib@1.0"]);
        let v = names(vec![vec![f("a")], vec![d("a"), f("a/b")]]);
        assert_eq!(v, ["a/b@1.1", "a@1.0"]);
    }

    #[test]
    fn whiteouts_remove_lower_entries() {
        let v = names(vec![
            vec![d("etc"), f("etc/a"), f("etc/b"), d("var"), f("var/x")],
            vec![f("etc/.wh.a"), f("var/.wh..wh..opq"), f("var/y")],
        ]);
        assert_eq!(v, ["etc/b@0.2", "etc@0.0", "var/y@1.2", "var@0.3"]);
    }

    #[test]
    fn missing_parents_are_created_once() {
        let p = plan(vec![vec![f("a/b/c"), f("a/b/d")]])
            .expect("flattens")
            .kept;
        assert_eq!(p[&(0, 0)].implicit_parents, ["a", "a/b"]);
        assert!(p[&(0, 1)].implicit_parents.is_empty());
        // a layer that writes the directory later takes it over
        let p = plan(vec![vec![f("a/b"), d("a")]]).expect("flattens").kept;
        assert!(p[&(0, 0)].implicit_parents.is_empty());
        assert_eq!(p[&(0, 1)].name, "a");
        // the entry that needed them is replaced: the survivor below them gets them
        let p = plan(vec![vec![f("x/y/a"), f("x/y/b")], vec![f("x/y/a")]]).expect("flattens");
        assert_eq!(p.kept[&(0, 1)].implicit_parents, ["x", "x/y"]);
        // nothing survives below them: they come last
        let p = plan(vec![vec![f("x/y/a")], vec![f("x/y/.wh.a")]]).expect("flattens");
        assert!(p.kept.is_empty());
        assert_eq!(p.trailing, ["x", "x/y"]);
    }

    #[test]
    fn real_conflicts_are_refused() {
        let e = plan(vec![vec![f("a")], vec![f("a/b")]]).expect_err("below a file");
        assert_eq!((e.layer, e.path.as_str()), (1, "a/b"));
        assert!(e.why.contains("not a directory"), "{e}");
        assert!(
            plan(vec![vec![l("a", "a")], vec![f("a/b")]]).is_err(),
            "a loop"
        );
        assert!(plan(vec![vec![l("a", "b"), l("b", "a")], vec![f("a/x")]]).is_err());
        for bad in ["../x", "a/../../x", "/etc/passwd"] {
            assert!(plan(vec![vec![f(bad)]]).is_err(), "{bad}");
        }
        // a hard link whose target a later layer replaces cannot keep its content
        let e = plan(vec![vec![f("a"), h("b", "a")], vec![f("a")]]).expect_err("stale link");
        assert!(e.why.contains("hard link"), "{e}");
        assert!(plan(vec![vec![h("b", "nowhere")]]).is_err());
        let p = plan(vec![vec![d("d"), f("d/a"), h("b", "./d/a")]])
            .expect("a good link")
            .kept;
        assert_eq!(p[&(0, 2)].link_to.as_deref(), Some("d/a"));
    }

    #[test]
    fn the_root_entry_is_skipped() {
        assert_eq!(names(vec![vec![d("./"), f("a")]]), ["a@0.1"]);
    }
}
