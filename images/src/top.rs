//! The top layer, made straight from the spec (not from the store): the base directories
//! (`/etc`, `/usr/bin`, `/usr/sbin`, `/tmp`, `/root`, and `/bin` → `usr/bin`, `/sbin` →
//! `usr/sbin`), `/etc/passwd` and `/etc/group`, the profile (for each package of the spec in
//! order, every entry of its `bin/` and `sbin/` linked as `/usr/bin/<prog>` or
//! `/usr/sbin/<prog>` → `/bld/store/<hash>-<name>/bin/<prog>`; on a name clash the first
//! package wins and a warning says so), and the synced files with their `chmod` and `owner`.
//! A synced file may replace a generated one (a spec's own `/etc/passwd`); two syncs of the
//! same destination are an error. Entries are sorted component-wise with mtime 1.

use std::collections::HashMap;
use std::path::PathBuf;

use buildit_store::{StorePath, STORE_DIR};

use crate::layers::STORE_DIR_MODE;
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

/// Where a sync source is on this machine (store paths map to their physical location).
fn source_path(view: &dyn StoreView, src: &std::path::Path) -> Result<PathBuf, ImageError> {
    let s = src.to_string_lossy();
    if s.starts_with(&format!("{STORE_DIR}/")) {
        let (sp, rest) = StorePath::parse_prefix(&s)
            .map_err(|e| ImageError::Spec(format!("sync source `{s}`: {e}")))?;
        let mut p = view.physical(&sp);
        let rest = rest.trim_start_matches('/');
        if !rest.is_empty() {
            p = p.join(rest);
        }
        return Ok(p);
    }
    Ok(src.to_path_buf())
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
            let dir = phys.join(sub);
            if !dir.is_dir() {
                continue;
            }
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

/// Write the top layer's tar.
pub fn write_top_tar(entries: &[Entry], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(out);
    for e in entries {
        tarw::append(&mut b, e)?;
    }
    b.finish()
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
}
