//! Tests of the `.deb` unpacker on packages built here with a small ar + tar writer (every
//! compression Debian uses), plus real packages from the apt cache when there are any.

use super::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// A tar with raw names (so tests can write `..` and absolute names the tar crate refuses).
fn tar_bytes(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, kind, data, mode, link): (&str, tar::EntryType, &[u8], u32, &str) = match *e {
            E::Dir(n, m) => (n, tar::EntryType::Directory, b"", m, ""),
            E::File(n, d, m) => (n, tar::EntryType::Regular, d, m, ""),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", 0o777, t),
            E::Hard(n, t) => (n, tar::EntryType::Link, b"", 0o644, t),
        };
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

fn compress(kind: &str, raw: &[u8]) -> Vec<u8> {
    match kind {
        "xz" => {
            let mut w = xz2::write::XzEncoder::new(Vec::new(), 1);
            w.write_all(raw).expect("xz");
            w.finish().expect("xz")
        }
        "zst" => zstd::encode_all(raw, 1).expect("zstd"),
        "gz" => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(raw).expect("gz");
            w.finish().expect("gz")
        }
        _ => raw.to_vec(),
    }
}

fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
}

fn write_deb(path: &Path, package: &str, comp: &str, entries: &[E]) {
    let control = format!(
        "Package: {package}\nVersion: 1.0-1\nArchitecture: amd64\nDescription: test\n two lines\n"
    );
    write_deb_with_control(path, &control, comp, entries);
}

fn write_deb_with_control(path: &Path, control: &str, comp: &str, entries: &[E]) {
    let ctl = tar_bytes(&[
        E::Dir("./", 0o755),
        E::File("./control", control.as_bytes(), 0o644),
    ]);
    let ext = |c: &str| {
        if c.is_empty() {
            String::new()
        } else {
            format!(".{c}")
        }
    };
    let mut out = b"!<arch>\n".to_vec();
    ar_member(&mut out, "debian-binary", b"2.0\n");
    ar_member(
        &mut out,
        &format!("control.tar{}", ext(comp)),
        &compress(comp, &ctl),
    );
    ar_member(
        &mut out,
        &format!("data.tar{}/", ext(comp)),
        &compress(comp, &tar_bytes(entries)),
    );
    fs::write(path, out).expect("write deb");
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn unpacks_several_debs_into_a_merged_usr_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.deb");
    let b = dir.path().join("b.deb");
    let c = dir.path().join("c.deb");
    write_deb(
        &a,
        "pkg-a",
        "xz",
        &[
            E::Dir("./", 0o755),
            E::Dir("./bin/", 0o755),
            E::File("./bin/sh", b"#!shell", 0o755),
            E::Dir("./usr/", 0o755),
            E::Dir("./usr/lib/", 0o755),
            E::File("./usr/lib/libx.so.1.0", b"ELF...", 0o644),
            E::Hard("./usr/lib/libx-hard.so", "./usr/lib/libx.so.1.0"),
            E::Symlink("./usr/lib/libx.so.1", "libx.so.1.0"),
            E::File("./usr/bin/su", b"setuid", 0o4755),
        ],
    );
    write_deb(
        &b,
        "pkg-b",
        "zst",
        &[
            E::Dir("./lib/x86_64-linux-gnu/", 0o755),
            E::File("./lib/x86_64-linux-gnu/libc.so.6", b"libc", 0o755),
            E::Symlink(
                "./lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld.so",
            ),
            E::Symlink("./sbin/init", "../bin/sh"),
        ],
    );
    write_deb(
        &c,
        "pkg-c",
        "gz",
        &[
            E::File("./bin/sh", b"#!newer shell", 0o755),
            E::File("./etc/x.conf", b"x", 0o600),
        ],
    );
    let dest = dir.path().join("root");
    let report = unpack_debs(&[a, b, c.clone()], &dest, &UnpackOptions::default()).expect("unpack");
    for (link, target) in MERGED_USR_LINKS {
        assert_eq!(
            fs::read_link(dest.join(link)).expect("link"),
            Path::new(target)
        );
    }
    // Later packages win; entries under ./bin follow the link into usr/bin.
    assert_eq!(
        fs::read(dest.join("usr/bin/sh")).expect("sh"),
        b"#!newer shell"
    );
    assert_eq!(mode(&dest.join("usr/bin/sh")), 0o755);
    assert_eq!(mode(&dest.join("usr/bin/su")), 0o4755);
    assert_eq!(mode(&dest.join("etc/x.conf")), 0o600);
    assert_eq!(
        fs::read(dest.join("usr/lib/x86_64-linux-gnu/libc.so.6")).expect("libc"),
        b"libc"
    );
    let ino = |p: &str| fs::metadata(dest.join(p)).expect("stat").ino();
    assert_eq!(ino("usr/lib/libx.so.1.0"), ino("usr/lib/libx-hard.so"));
    assert_eq!(
        fs::read_link(dest.join("usr/lib/libx.so.1")).expect("symlink"),
        Path::new("libx.so.1.0")
    );
    assert_eq!(
        fs::read_link(dest.join("usr/lib64/ld-linux-x86-64.so.2")).expect("abs symlink"),
        Path::new("/lib/x86_64-linux-gnu/ld.so")
    );
    assert_eq!(
        fs::read(dest.join("sbin/init")).expect("through links"),
        b"#!newer shell"
    );
    // mtimes are kept.
    assert_eq!(
        fs::metadata(dest.join("usr/lib/libx.so.1.0"))
            .expect("stat")
            .mtime(),
        1_600_000_000
    );
    let names: Vec<&str> = report.packages.iter().map(|p| p.package.as_str()).collect();
    assert_eq!(names, ["pkg-a", "pkg-b", "pkg-c"]);
    assert_eq!(report.packages[0].version, "1.0-1");
    assert_eq!(report.packages[0].hardlinks, 1);
    assert_eq!(report.files(), 6);
    let desc = report.packages[2]
        .control
        .iter()
        .find(|(k, _)| k == "Description");
    assert_eq!(desc.map(|(_, v)| v.as_str()), Some("test\ntwo lines"));
    assert_eq!(
        read_control(&c).expect("control")[0],
        ("Package".into(), "pkg-c".into())
    );
}

/// The builtin's body reads `debs` from the environment, opens each `.deb` at the path its
/// caller's input check gives, and names the store path the check refused.
#[test]
fn the_builtin_opens_only_what_the_input_check_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.deb");
    write_deb(&a, "pkg-a", "xz", &[E::File("./usr/share/a", b"a", 0o644)]);
    let mut env = BTreeMap::new();
    env.insert(
        "debs".to_string(),
        "/bld/store/aaaa-a.deb\n /bld/store/bbbb-b.deb".to_string(),
    );
    let mut asked = Vec::new();
    let err = builtin_unpack_deb(&env, &dir.path().join("out"), &mut |d| {
        asked.push(d.to_string());
        if d.ends_with("a.deb") {
            Ok(a.clone())
        } else {
            Err("not in the input closure".to_string())
        }
    })
    .expect_err("b refused");
    assert_eq!(asked, ["/bld/store/aaaa-a.deb", "/bld/store/bbbb-b.deb"]);
    assert!(
        matches!(&err, DebError::Input { path, why } if path == "/bld/store/bbbb-b.deb" && why == "not in the input closure"),
        "{err}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "nothing unpacked before every input is allowed"
    );
    env.insert("debs".to_string(), "/bld/store/aaaa-a.deb".to_string());
    env.insert("mergedUsr".to_string(), String::new());
    env.insert("keepControl".to_string(), "1".to_string());
    let out = dir.path().join("out");
    let report = builtin_unpack_deb(&env, &out, &mut |_| Ok(a.clone())).expect("unpack");
    assert_eq!(report.packages[0].package, "pkg-a");
    assert!(out.join("usr/share/a").is_file());
    assert!(
        !out.join("bin").exists(),
        "mergedUsr = \"\" skips the links"
    );
    assert!(out.join("var/lib/dpkg/info/pkg-a.control").is_file());
}

/// A control file that is not deb822 is a format error naming the package file.
#[test]
fn a_control_file_that_is_not_deb822_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.deb");
    write_deb_with_control(&bad, "Package: x\nno colon on this line\n", "", &[]);
    let err = unpack_debs(
        std::slice::from_ref(&bad),
        &dir.path().join("root"),
        &UnpackOptions::default(),
    )
    .expect_err("bad control");
    assert!(matches!(err, DebError::Format { .. }), "{err}");
    assert!(err.to_string().contains("bad.deb"), "{err}");
    assert!(err.to_string().contains("control file"), "{err}");
    read_control(&bad).expect_err("read_control refuses it too");
}

#[test]
fn keeps_control_files_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.deb");
    write_deb(&a, "pkg-a", "", &[E::File("./usr/share/a", b"a", 0o644)]);
    let dest = dir.path().join("root");
    let opts = UnpackOptions {
        merged_usr: false,
        keep_control: true,
    };
    unpack_debs(&[a], &dest, &opts).expect("unpack");
    assert!(
        fs::read_to_string(dest.join("var/lib/dpkg/info/pkg-a.control"))
            .expect("control kept")
            .starts_with("Package: pkg-a")
    );
    assert!(!dest.join("bin").exists());
}

#[test]
fn refuses_entries_that_escape() {
    let cases: Vec<(&str, Vec<E>)> = vec![
        ("dotdot", vec![E::File("./usr/../../evil", b"x", 0o644)]),
        ("absolute", vec![E::File("/evil", b"x", 0o644)]),
        (
            "through-symlink",
            vec![
                E::Symlink("./usr/lib/out", "../../../.."),
                E::File("./usr/lib/out/evil", b"x", 0o644),
            ],
        ),
        ("hardlink-out", vec![E::Hard("./usr/h", "../../etc/passwd")]),
    ];
    for (name, entries) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let deb = dir.path().join(format!("{name}.deb"));
        write_deb(&deb, name, "xz", &entries);
        let dest = dir.path().join("a/b/root");
        let err = unpack_debs(&[deb], &dest, &UnpackOptions::default()).expect_err(name);
        assert!(matches!(err, DebError::Escape { .. }), "{name}: {err}");
        assert!(err.to_string().contains("outside the destination"), "{err}");
        assert!(!dir.path().join("evil").exists() && !dir.path().join("a/evil").exists());
    }
    // An absolute symlink is rooted at the destination, so writing through it stays inside.
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = dir.path().join("abs.deb");
    write_deb(
        &deb,
        "abs",
        "xz",
        &[
            E::Symlink("./usr/lib/abs", "/opt"),
            E::File("./usr/lib/abs/f", b"in", 0o644),
        ],
    );
    let dest = dir.path().join("root");
    unpack_debs(&[deb], &dest, &UnpackOptions::default()).expect("absolute link inside");
    assert_eq!(fs::read(dest.join("opt/f")).expect("inside"), b"in");
}

#[test]
fn rejects_things_that_are_not_debs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("x.deb");
    fs::write(&p, b"not an archive at all").expect("write");
    let err = unpack_debs(
        std::slice::from_ref(&p),
        &dir.path().join("r"),
        &UnpackOptions::default(),
    )
    .expect_err("bad");
    assert!(err.to_string().contains("not a Debian package"), "{err}");
    let mut out = b"!<arch>\n".to_vec();
    ar_member(&mut out, "debian-binary", b"2.0\n");
    ar_member(&mut out, "data.tar.lzma", b"xx");
    fs::write(&p, out).expect("write");
    let err = unpack_debs(&[p], &dir.path().join("r"), &UnpackOptions::default())
        .expect_err("bad compression");
    assert!(
        err.to_string().contains("unsupported member compression"),
        "{err}"
    );
}

/// A listing of a tree: (path, kind, mode, size or link target), sorted.
fn listing(root: &Path) -> Vec<(String, char, u32, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("stat");
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let (kind, extra) = if m.file_type().is_symlink() {
                (
                    'l',
                    fs::read_link(&p)
                        .expect("link")
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if m.is_dir() {
                todo.push(p.clone());
                ('d', String::new())
            } else {
                ('f', format!("{}:{}", m.len(), m.nlink()))
            };
            let mode = if kind == 'l' {
                0
            } else {
                m.permissions().mode() & 0o7777
            };
            out.push((rel, kind, mode, extra));
        }
    }
    out.sort();
    out
}

/// Real packages: whatever `.deb` files the apt cache (or `$BUILDIT_TEST_DEB_DIR`) holds,
/// each unpacked without the merged-/usr links and compared with `dpkg-deb -x` when it exists.
#[test]
fn unpacks_real_debs_like_dpkg_deb() {
    let dirs = [
        std::env::var("BUILDIT_TEST_DEB_DIR").unwrap_or_default(),
        "/var/cache/apt/archives".to_string(),
    ];
    let mut debs: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| !d.is_empty())
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    debs.truncate(6);
    let have_dpkg = std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    for deb in &debs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = dir.path().join("ours");
        let opts = UnpackOptions {
            merged_usr: false,
            keep_control: false,
        };
        let report = unpack_debs(std::slice::from_ref(deb), &ours, &opts).expect("real deb");
        let file = deb
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let info = &report.packages[0];
        assert!(
            file.starts_with(&format!("{}_", info.package)),
            "{file} vs {}",
            info.package
        );
        if have_dpkg {
            let theirs = dir.path().join("theirs");
            let st = std::process::Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb)
                .arg(&theirs)
                .status()
                .expect("dpkg-deb");
            assert!(st.success());
            let (a, b) = (listing(&ours), listing(&theirs));
            // Directory modes may differ in the owner-write bit (ours are kept writable).
            let strip = |v: Vec<(String, char, u32, String)>| {
                v.into_iter()
                    .map(|(p, k, m, e)| (p, k, if k == 'd' { m | 0o700 } else { m }, e))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(a), strip(b), "{file}");
        }
    }
}
