//! The top layer, made straight from the spec (not from the store): the base directories
//! (`/etc`, `/usr/bin`, `/usr/sbin`, `/tmp`, `/root`, and `/bin` → `usr/bin`, `/sbin` →
//! `usr/sbin`), `/etc/passwd` and `/etc/group`, the profile (for each package of the spec in
//! order, every entry of its `bin/` and `sbin/` linked as `/usr/bin/<prog>` or
//! `/usr/sbin/<prog>` → `/bld/store/<hash>-<name>/bin/<prog>`; on a name clash the first
//! package wins and a warning says so), and the synced files with their `chmod` and `owner`.
//! A synced file may replace a generated one (a spec's own `/etc/passwd`); two syncs of the
//! same destination are an error. Entries are sorted component-wise with mtime 1. With SELinux
//! labels (a package's `selinux` option), each labelled entry carries its `security.selinux`
//! attribute.

use std::collections::HashMap;
use std::path::PathBuf;

use buildit_store::{StorePath, STORE_DIR};

use crate::layers::STORE_DIR_MODE;
use crate::selinux::{FileKind, Labels};
use crate::tarw::{self, Entry, Node};
use crate::{Group, ImageError, ImageSpec, StoreView, User};

/// The top layer's entries (sorted) and the warnings found while making them.
#[derive(Debug, Clone)]
pub struct TopLayer {
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Generated,
    Profile,
    Sync(usize),
}

/// Parse an octal permission text (`0644`, `644`, `4755`); 8 or 9 or too many digits are errors.
pub fn parse_chmod(s: &str) -> Result<u32, ImageError> {
    let t = s.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ImageError::Spec(format!(
            "chmod `{s}` is not an octal mode such as 0644"
        )));
    }
    if t.bytes().any(|b| b == b'8' || b == b'9') {
        return Err(ImageError::Spec(format!(
            "chmod `{s}` has a digit 8 or 9; modes are octal (0644, 0755)"
        )));
    }
    u32::from_str_radix(t, 8).map_err(|e| ImageError::Spec(format!("chmod `{s}`: {e}")))
}

/// Parse `uid:gid` (numeric).
pub fn parse_owner(s: &str) -> Result<(u64, u64), ImageError> {
    let bad = || ImageError::Spec(format!("owner `{s}` is not numeric `uid:gid` such as 0:0"));
    let (u, g) = s.trim().split_once(':').ok_or_else(bad)?;
    let u: u32 = u.parse().map_err(|_| bad())?;
    let g: u32 = g.parse().map_err(|_| bad())?;
    Ok((u64::from(u), u64::from(g)))
}

/// The users of the image (the spec's, or root and nobody).
pub fn users(spec: &ImageSpec) -> Vec<User> {
    if !spec.users.is_empty() {
        return spec.users.clone();
    }
    vec![
        User {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
            shell: "/bin/sh".into(),
        },
        User {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
        },
    ]
}

/// The groups of the image (the spec's, or one per distinct gid of the users).
pub fn groups(spec: &ImageSpec, users: &[User]) -> Vec<Group> {
    if !spec.groups.is_empty() {
        return spec.groups.clone();
    }
    let mut out: Vec<Group> = Vec::new();
    for u in users {
        if out.iter().any(|g| g.gid == u.gid) {
            continue;
        }
        let name = if u.gid == 65534 {
            "nogroup".to_string()
        } else {
            u.name.clone()
        };
        out.push(Group {
            name,
            gid: u.gid,
            members: Vec::new(),
        });
    }
    out
}

fn check_field(what: &str, s: &str) -> Result<(), ImageError> {
    if s.contains(':') || s.contains('\n') {
        return Err(ImageError::Spec(format!(
            "{what} `{s}` contains `:` or a newline"
        )));
    }
    Ok(())
}

fn passwd_text(users: &[User]) -> Result<String, ImageError> {
    let mut s = String::new();
    for u in users {
        for (w, v) in [
            ("user name", &u.name),
            ("home", &u.home),
            ("shell", &u.shell),
        ] {
            check_field(w, v)?;
        }
        if u.name.is_empty() {
            return Err(ImageError::Spec("a user has an empty name".into()));
        }
        s.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            u.name, u.uid, u.gid, u.name, u.home, u.shell
        ));
    }
    Ok(s)
}

fn group_text(groups: &[Group]) -> Result<String, ImageError> {
    let mut s = String::new();
    for g in groups {
        check_field("group name", &g.name)?;
        for m in &g.members {
            check_field("group member", m)?;
        }
        s.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")));
    }
    Ok(s)
}

/// Normalise an absolute destination to a relative tar path, refusing `..`, `/`, `/bld`.
fn dest_path(dest: &str) -> Result<String, ImageError> {
    let rest = dest.strip_prefix('/').ok_or_else(|| {
        ImageError::Spec(format!("sync destination `{dest}` is not an absolute path"))
    })?;
    let comps: Vec<&str> = rest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.is_empty() {
        return Err(ImageError::Spec(
            "sync destination `/` would replace the whole image; name a directory".into(),
        ));
    }
    if comps.contains(&"..") {
        return Err(ImageError::Spec(format!(
            "sync destination `{dest}` contains `..`"
        )));
    }
    if comps[0] == "bld" {
        return Err(ImageError::Spec(format!(
            "sync destination `{dest}` is under /bld, which belongs to the store's layers"
        )));
    }
    Ok(comps.join("/"))
}

/// Where a sync source is on this machine (store paths map to their physical location). A
/// path below a store object (`/bld/store/<hash>-x/sub/file`) must reach it through real
/// directories of the object: a symlink on the way is not followed out of it.
fn source_path(view: &dyn StoreView, src: &std::path::Path) -> Result<PathBuf, ImageError> {
    let s = src.to_string_lossy();
    if s.starts_with(&format!("{STORE_DIR}/")) {
        let (sp, rest) = StorePath::parse_prefix(&s)
            .map_err(|e| ImageError::Spec(format!("sync source `{s}`: {e}")))?;
        let p = view.physical(&sp);
        let rest = rest.trim_start_matches('/');
        if rest.is_empty() {
            return Ok(p);
        }
        return inside_object(&p, rest)
            .ok_or_else(|| {
                ImageError::Spec(format!(
                    "sync source `{s}` is not a file or directory reached without symlinks inside its store object"
                ))
            });
    }
    Ok(src.to_path_buf())
}

/// `object/rel` when every component is a real directory of `object` (the last may be
/// anything but is not followed): never a path through a symlink, so reading it stays inside
/// the object.
fn inside_object(object: &std::path::Path, rel: &str) -> Option<PathBuf> {
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.is_empty() || comps.contains(&"..") {
        return None;
    }
    let mut p = object.to_path_buf();
    if !std::fs::symlink_metadata(&p).ok()?.is_dir() {
        return None;
    }
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        let md = std::fs::symlink_metadata(&p).ok()?;
        if i + 1 < comps.len() && !md.is_dir() {
            return None;
        }
    }
    Some(p)
}

/// The directory `object/sub` (a package's `bin` or `sbin`), when it stays inside the object:
/// a real directory, or a symlink whose target resolves to a directory inside the object
/// (`sbin` → `bin`). A symlink leading out (`bin` → `/usr/bin`) gives `None`: the host's
/// directory is never listed into an image.
fn program_dir(object: &std::path::Path, sub: &str) -> Option<PathBuf> {
    if !std::fs::symlink_metadata(object).ok()?.is_dir() {
        return None;
    }
    let dir = object.join(sub);
    let md = std::fs::symlink_metadata(&dir).ok()?;
    if md.is_dir() {
        return Some(dir);
    }
    if md.file_type().is_symlink() {
        let real_object = object.canonicalize().ok()?;
        let real = dir.canonicalize().ok()?;
        if real.starts_with(&real_object) && real.is_dir() {
            return Some(real);
        }
    }
    None
}

struct Tree {
    map: HashMap<String, (Entry, Origin)>,
}

impl Tree {
    fn put(&mut self, e: Entry, o: Origin) {
        self.map.insert(e.path.clone(), (e, o));
    }
    fn ensure_dir(&mut self, path: &str) {
        if !self.map.contains_key(path) {
            self.put(Entry::dir(path, 0o755), Origin::Generated);
        }
    }
    fn ensure_parents(&mut self, path: &str) -> Result<(), ImageError> {
        let comps: Vec<&str> = path.split('/').collect();
        for i in 1..comps.len() {
            let p = comps[..i].join("/");
            match self.map.get(&p) {
                Some((e, _)) if matches!(e.node, Node::Symlink(_)) => {
                    return Err(ImageError::Spec(format!(
                        "sync destination `/{path}` goes through the symlink `/{p}`; name the real directory"
                    )))
                }
                Some((e, _)) if !matches!(e.node, Node::Dir) => {
                    return Err(ImageError::Spec(format!(
                        "sync destination `/{path}` is below `/{p}`, which is a file"
                    )))
                }
                Some(_) => {}
                None => self.ensure_dir(&p),
            }
        }
        Ok(())
    }
}

/// The top layer's entries for `spec`.
pub fn top_entries(view: &dyn StoreView, spec: &ImageSpec) -> Result<TopLayer, ImageError> {
    let mut t = Tree {
        map: HashMap::new(),
    };
    let mut warnings = Vec::new();
    for e in crate::layers::store_parents() {
        t.put(e, Origin::Generated);
    }
    debug_assert_eq!(STORE_DIR_MODE, 0o555);
    for d in ["etc", "usr", "usr/bin", "usr/sbin"] {
        t.ensure_dir(d);
    }
    t.put(Entry::dir("tmp", 0o1777), Origin::Generated);
    t.put(Entry::dir("root", 0o700), Origin::Generated);
    t.put(Entry::symlink("bin", "usr/bin"), Origin::Generated);
    t.put(Entry::symlink("sbin", "usr/sbin"), Origin::Generated);
    // Debian's merged /usr: the dynamic loader is /lib64/ld-linux-x86-64.so.2, libraries are
    // found under /lib/<triplet>; Debian runtime packages are layers laid out at / (see
    // `layers`), which carry the same links
    t.put(Entry::symlink("lib", "usr/lib"), Origin::Generated);
    t.put(Entry::symlink("lib64", "usr/lib64"), Origin::Generated);
    let us = users(spec);
    let gs = groups(spec, &us);
    t.put(
        Entry::bytes("etc/passwd", passwd_text(&us)?.into_bytes(), 0o644),
        Origin::Generated,
    );
    t.put(
        Entry::bytes("etc/group", group_text(&gs)?.into_bytes(), 0o644),
        Origin::Generated,
    );

    // profile
    let mut owner_of: HashMap<String, String> = HashMap::new();
    for p in &spec.packages {
        let phys = view.physical(p);
        for (sub, dest) in [("bin", "usr/bin"), ("sbin", "usr/sbin")] {
            let Some(dir) = program_dir(&phys, sub) else {
                continue;
            };
            let rd = std::fs::read_dir(&dir)
                .map_err(ImageError::io(format!("reading {}", dir.display())))?;
            let mut names: Vec<String> = Vec::new();
            for de in rd {
                let de = de.map_err(ImageError::io(format!("reading {}", dir.display())))?;
                if let Some(n) = de.file_name().to_str() {
                    names.push(n.to_string());
                }
            }
            names.sort();
            for n in names {
                let link = format!("{dest}/{n}");
                if let Some(first) = owner_of.get(&link) {
                    warnings.push(format!(
                        "/{link}: {p} also provides it; keeping the one of {first} (listed first)"
                    ));
                    continue;
                }
                owner_of.insert(link.clone(), p.to_string());
                t.put(
                    Entry::symlink(&link, &format!("{p}/{sub}/{n}")),
                    Origin::Profile,
                );
            }
        }
    }

    // synced files
    for (i, f) in spec.files.iter().enumerate() {
        let dest = dest_path(&f.dest)?;
        let mode = f.chmod.as_deref().map(parse_chmod).transpose()?;
        if let Some(m) = mode {
            if m & 0o7000 != 0 && !spec.setuid_allowed.contains(&f.dest) {
                return Err(ImageError::Spec(format!(
                    "sync `{}`: chmod 0{m:o} sets the setuid, setgid or sticky bit, and the spec does not allow it (`allow-setuid: true`)",
                    f.dest
                )));
            }
        }
        let (uid, gid) = f
            .owner
            .as_deref()
            .map(parse_owner)
            .transpose()?
            .unwrap_or((0, 0));
        let src = source_path(view, &f.src)?;
        let md = std::fs::symlink_metadata(&src)
            .map_err(|e| ImageError::Spec(format!("sync source `{}`: {e}", f.src.display())))?;
        if md.is_dir() && !f.recursive {
            return Err(ImageError::Spec(format!(
                "sync source `{}` is a directory; set `recursive: true` to copy it",
                f.src.display()
            )));
        }
        let modes = move |is_dir: bool, host: u32| -> u32 {
            match (mode, is_dir) {
                (Some(m), false) => m,
                (Some(m), true) => m | ((m & 0o444) >> 2),
                (None, true) => 0o755,
                (None, false) => {
                    if host & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    }
                }
            }
        };
        let mut es = Vec::new();
        tarw::walk(&src, &dest, uid, gid, &modes, &mut es)
            .map_err(|e| ImageError::Spec(format!("sync source `{}`: {e}", f.src.display())))?;
        t.ensure_parents(&dest)?;
        for e in es {
            match t.map.get(&e.path) {
                Some((_, Origin::Sync(j))) if *j != i => {
                    return Err(ImageError::Spec(format!(
                        "`/{}` is synced twice (sync #{} and #{})",
                        e.path,
                        j + 1,
                        i + 1
                    )))
                }
                Some((_, Origin::Profile)) => warnings.push(format!(
                    "/{}: the synced file replaces the profile's link",
                    e.path
                )),
                Some((old, Origin::Generated))
                    if matches!(old.node, Node::Dir) && !matches!(e.node, Node::Dir) =>
                {
                    return Err(ImageError::Spec(format!(
                        "sync destination `/{}` is a directory of the image",
                        e.path
                    )))
                }
                _ => {}
            }
            t.put(e, Origin::Sync(i));
        }
    }
    let mut entries: Vec<Entry> = t.map.into_values().map(|(e, _)| e).collect();
    entries.sort_by(|a, b| tarw::path_cmp(&a.path, &b.path));
    Ok(TopLayer { entries, warnings })
}

/// Write the top layer's tar; with `labels`, every entry a rule labels gets a
/// `security.selinux` PAX record (matched at its own path in the image).
pub fn write_top_tar(
    entries: &[Entry],
    labels: Option<&Labels>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    for e in entries {
        if let Some(label) = labels.and_then(|l| l.label(&e.path, entry_kind(&e.node))) {
            b.append_pax_extensions([(crate::selinux::PAX_KEY, label.as_bytes())])?;
        }
        tarw::append(&mut b, e)?;
    }
    b.finish()
}

fn entry_kind(n: &Node) -> FileKind {
    match n {
        Node::Dir => FileKind::Dir,
        Node::Symlink(_) => FileKind::Symlink,
        Node::Bytes(_) | Node::Host { .. } => FileKind::Regular,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_is_octal_text() {
        assert_eq!(parse_chmod("0644").ok(), Some(0o644));
        assert_eq!(parse_chmod("755").ok(), Some(0o755));
        assert_eq!(parse_chmod("4755").ok(), Some(0o4755));
        assert!(parse_chmod("0698").is_err());
        assert!(parse_chmod("rw").is_err());
        assert!(parse_chmod("07777").is_err());
        assert!(parse_chmod("").is_err());
    }

    #[test]
    fn owner_is_numeric() {
        assert_eq!(parse_owner("101:102").ok(), Some((101, 102)));
        assert!(parse_owner("www:www").is_err());
        assert!(parse_owner("1").is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(
            dest_path("/etc//nginx/./x.conf").ok().as_deref(),
            Some("etc/nginx/x.conf")
        );
        assert!(dest_path("etc/x").is_err());
        assert!(dest_path("/").is_err());
        assert!(dest_path("/etc/../x").is_err());
        assert!(dest_path("/bld/store/x").is_err());
    }

    #[test]
    fn default_users_and_groups() {
        let spec = ImageSpec::new("x", "1", vec![]);
        let us = users(&spec);
        assert_eq!(
            passwd_text(&us).ok().as_deref(),
            Some("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        );
        assert_eq!(
            group_text(&groups(&spec, &us)).ok().as_deref(),
            Some("root:x:0:\nnogroup:x:65534:\n")
        );
    }

    /// A store of plain directories: `physical` is `root/<base name>`.
    struct DirStore(PathBuf);

    impl StoreView for DirStore {
        fn physical(&self, p: &StorePath) -> PathBuf {
            self.0.join(p.base_name())
        }
        fn closure(&self, roots: &[StorePath]) -> Result<Vec<StorePath>, ImageError> {
            Ok(roots.to_vec())
        }
        fn references(&self, _: &StorePath) -> Result<Vec<StorePath>, ImageError> {
            Ok(Vec::new())
        }
        fn content_hash(&self, _: &StorePath) -> Result<String, ImageError> {
            Ok(String::new())
        }
        fn size(&self, _: &StorePath) -> Result<u64, ImageError> {
            Ok(0)
        }
        fn layer_cache_dir(&self) -> PathBuf {
            self.0.join("cache")
        }
        fn archive_fn(&self) -> crate::ArchiveFn {
            |_, _, _| Err("no archives here".into())
        }
    }

    fn store_path(name: &str) -> StorePath {
        StorePath::from_fingerprint(name, name).expect("a store path")
    }

    /// A package whose `bin` is a symlink to a host directory, one whose `sbin` links to its
    /// own `bin`, and a synced object holding a symlink to a host file.
    fn crafted() -> (tempfile::TempDir, DirStore, StorePath, StorePath, StorePath) {
        let t = tempfile::tempdir().expect("tempdir");
        let (evil, good, files) = (store_path("evil"), store_path("good"), store_path("files"));
        let root = t.path().to_path_buf();
        let e = root.join(evil.base_name());
        std::fs::create_dir_all(&e).expect("mkdir");
        std::os::unix::fs::symlink("/usr/bin", e.join("bin")).expect("link");
        let g = root.join(good.base_name());
        std::fs::create_dir_all(g.join("bin")).expect("mkdir");
        std::fs::write(g.join("bin/tool"), "#!/bin/sh\n").expect("write");
        std::os::unix::fs::symlink("bin", g.join("sbin")).expect("link");
        let f = root.join(files.base_name());
        std::fs::create_dir_all(f.join("conf")).expect("mkdir");
        std::fs::write(f.join("conf/a.conf"), "a").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", f.join("conf/passwd")).expect("link");
        std::os::unix::fs::symlink("/etc", f.join("etc")).expect("link");
        (t, DirStore(root), evil, good, files)
    }

    fn sync(src: String, dest: &str, chmod: Option<&str>) -> crate::SyncFile {
        crate::SyncFile {
            src: PathBuf::from(src),
            dest: dest.into(),
            recursive: true,
            chmod: chmod.map(str::to_string),
            owner: None,
        }
    }

    #[test]
    fn the_profile_never_lists_a_host_directory() {
        let (_t, view, evil, good, _) = crafted();
        let spec = ImageSpec::new("x", "1", vec![evil.clone(), good.clone()]);
        let top = top_entries(&view, &spec).expect("top layer");
        let links: Vec<&str> = top
            .entries
            .iter()
            .filter(|e| e.path.starts_with("usr/bin/") || e.path.starts_with("usr/sbin/"))
            .map(|e| e.path.as_str())
            .collect();
        // `good`'s own bin (and its sbin, a link to it); nothing of the host's /usr/bin
        assert_eq!(links, ["usr/bin/tool", "usr/sbin/tool"]);
    }

    #[test]
    fn synced_symlinks_stay_symlinks() {
        let (_t, view, _, _, files) = crafted();
        let mut spec = ImageSpec::new("x", "1", vec![]);
        spec.files
            .push(sync(format!("{files}/conf"), "/etc/app", None));
        let top = top_entries(&view, &spec).expect("top layer");
        let passwd = top
            .entries
            .iter()
            .find(|e| e.path == "etc/app/passwd")
            .expect("the link");
        assert_eq!(passwd.node, Node::Symlink("/etc/passwd".into()));
        // a source through a symlink of the object is refused, not followed
        let mut spec = ImageSpec::new("x", "1", vec![]);
        spec.files
            .push(sync(format!("{files}/etc/shadow"), "/etc/x", None));
        assert!(top_entries(&view, &spec).is_err());
        let mut spec = ImageSpec::new("x", "1", vec![]);
        spec.files
            .push(sync(format!("{files}/conf/../etc"), "/etc/x", None));
        assert!(top_entries(&view, &spec).is_err());
    }

    #[test]
    fn setuid_needs_the_spec_to_allow_it() {
        let (_t, view, _, _, files) = crafted();
        let mut spec = ImageSpec::new("x", "1", vec![]);
        spec.files.push(sync(
            format!("{files}/conf/a.conf"),
            "/usr/bin/a",
            Some("4755"),
        ));
        let e = top_entries(&view, &spec).expect_err("refused");
        assert!(e.to_string().contains("setuid"), "{e}");
        spec.setuid_allowed.push("/usr/bin/a".into());
        let top = top_entries(&view, &spec).expect("allowed");
        let a = top
            .entries
            .iter()
            .find(|e| e.path == "usr/bin/a")
            .expect("a");
        assert_eq!(a.mode, 0o4755);
        spec.files[0].chmod = Some("1755".into());
        spec.setuid_allowed.clear();
        assert!(top_entries(&view, &spec).is_err());
    }
}
