//! Resolution, index and lock tests on small hand-written indexes (the real bookworm
//! indexes are exercised by `buildit debian lock` and its integration test).

use super::*;
use std::io::Write;

const MAIN: &str = "\
Package: app
Version: 1.0-1
Architecture: amd64
Pre-Depends: libc6 (>= 2.34)
Depends: libfoo1 (>= 2) | libfoo-compat, awk, perl:any, shared (= 1.0-1)
Recommends: bloat
Filename: pool/main/a/app/app_1.0-1_amd64.deb
Size: 100
SHA256: aa

Package: libc6
Version: 2.36-9
Architecture: amd64
Filename: pool/main/g/glibc/libc6_2.36-9_amd64.deb
Size: 10
SHA256: c0
Source: glibc

Package: libfoo1
Version: 1.5-1
Architecture: amd64
Filename: pool/main/f/foo/libfoo1_1.5-1_amd64.deb
Size: 1
SHA256: f1

Package: libfoo-compat
Version: 3
Architecture: amd64
Filename: pool/main/f/foo/libfoo-compat_3_amd64.deb
Size: 1
SHA256: fc

Package: mawk
Version: 1.3.4-1
Architecture: amd64
Provides: awk
Filename: pool/main/m/mawk/mawk_1.3.4-1_amd64.deb
Size: 1
SHA256: 3a

Package: gawk
Version: 1:5.2.1-2
Architecture: amd64
Provides: awk
Depends: libc6 (>= 2.38)
Filename: pool/main/g/gawk/gawk_5.2.1-2_amd64.deb
Size: 1
SHA256: 6a

Package: perl
Version: 5.36.0-7
Architecture: amd64
Depends: perl-base (= 5.36.0-7)
Filename: pool/main/p/perl/perl_5.36.0-7_amd64.deb
Size: 1
SHA256: 9e

Package: perl-base
Version: 5.36.0-7
Architecture: amd64
Essential: yes
Filename: pool/main/p/perl/perl-base_5.36.0-7_amd64.deb
Size: 1
SHA256: 9b

Package: shared
Version: 1.0-1
Architecture: all
Filename: pool/main/a/app/shared_1.0-1_all.deb
Size: 1
SHA256: 5a

Package: bloat
Version: 1
Architecture: amd64
Filename: pool/main/b/bloat/bloat_1_amd64.deb
Size: 1
SHA256: b1

Package: broken
Version: 1
Architecture: amd64
Depends: nothere (>= 1) | libc6 (>= 3)
Filename: pool/main/b/broken/broken_1_amd64.deb
Size: 1
SHA256: b2

Package: wants-broken
Version: 1
Architecture: amd64
Depends: broken
Filename: pool/main/w/wants-broken/wants-broken_1_amd64.deb
Size: 1
SHA256: b3

Package: versioned-virtual
Version: 1
Architecture: amd64
Depends: mail-transport-agent (>= 2)
Filename: pool/main/v/vv/vv_1_amd64.deb
Size: 1
SHA256: b4

Package: mta-old
Version: 1
Architecture: amd64
Provides: mail-transport-agent
Filename: pool/main/m/mta-old/mta-old_1_amd64.deb
Size: 1
SHA256: b5

Package: mta-new
Version: 1
Architecture: amd64
Provides: mail-transport-agent (= 2.1)
Filename: pool/main/m/mta-new/mta-new_1_amd64.deb
Size: 1
SHA256: b6
";

const SECURITY: &str = "\
Package: libc6
Version: 2.36-9+deb12u10
Architecture: amd64
Filename: pool/updates/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb
Size: 11
SHA256: c1
Source: glibc (2.36-9+deb12u10)
";

fn index() -> Index {
    let mut i = Index::new();
    i.add_packages_text(MAIN, "debian", "bookworm")
        .expect("main index");
    i.add_packages_text(SECURITY, "debian-security", "bookworm-security")
        .expect("security index");
    i
}

fn get<'a>(v: &'a [LockEntry], name: &str) -> Option<&'a LockEntry> {
    v.iter().find(|e| e.name == name)
}

#[test]
fn resolves_a_closure_like_apt() {
    let idx = index();
    let out = resolve(&idx, &["app"]).expect("resolve");
    let names: Vec<&str> = out.iter().map(|e| e.name.as_str()).collect();
    // libfoo1 is too old for (>= 2): the second alternative; awk is virtual: the provider
    // with the smallest name (gawk) needs a newer libc6 than exists, so mawk; no Recommends.
    assert_eq!(
        names,
        [
            "app",
            "libc6",
            "libfoo-compat",
            "mawk",
            "perl",
            "perl-base",
            "shared"
        ]
    );
    let libc = get(&out, "libc6").expect("libc6");
    assert_eq!(
        libc.version, "2.36-9+deb12u10",
        "the newest version across suites"
    );
    assert_eq!(libc.mirror, "debian-security");
    assert_eq!(libc.source, "glibc");
    assert_eq!(
        get(&out, "app").expect("app").depends,
        ["libc6", "libfoo-compat", "mawk", "perl", "shared"]
    );
    assert_eq!(get(&out, "shared").expect("shared").architecture, "all");
}

#[test]
fn an_already_chosen_alternative_satisfies_a_group() {
    let idx = index();
    // With gawk's requirement unsatisfiable it cannot be picked even as a root...
    let err = resolve(&idx, &["gawk"]).expect_err("gawk needs libc6 >= 2.38");
    assert!(err.to_string().contains("gawk"), "{err}");
    // ...but a root that is chosen first satisfies later groups: libfoo1 is not taken.
    let out = resolve(&idx, &["libfoo-compat", "app"]).expect("resolve");
    assert!(get(&out, "libfoo1").is_none());
}

#[test]
fn versioned_virtual_dependencies_need_versioned_provides() {
    let idx = index();
    let out = resolve(&idx, &["versioned-virtual"]).expect("resolve");
    assert!(get(&out, "mta-new").is_some());
    assert!(get(&out, "mta-old").is_none());
}

#[test]
fn pinned_roots_and_their_errors() {
    let idx = index();
    let out = resolve(&idx, &["libc6=2.36-9"]).expect("pinned");
    assert_eq!(out[0].version, "2.36-9");
    let err = resolve(&idx, &["libc6=9.9"]).expect_err("no such version");
    let msg = err.to_string();
    assert!(msg.contains("2.36-9+deb12u10, 2.36-9"), "{msg}");
}

#[test]
fn unknown_and_unsatisfiable_packages_are_explained() {
    let idx = index();
    let err = resolve(&idx, &["libfoo"]).expect_err("unknown");
    let msg = err.to_string();
    assert!(msg.contains("unknown Debian package 'libfoo'"), "{msg}");
    assert!(msg.contains("did you mean"), "{msg}");
    assert!(msg.contains("libfoo1"), "{msg}");
    let err = resolve(&idx, &["wants-broken"]).expect_err("unsatisfiable");
    assert_eq!(
        err.to_string(),
        "cannot satisfy the dependency 'nothere (>= 1) | libc6 (>= 3)' of wants-broken → broken"
    );
}

#[test]
fn dependency_fields_parse() {
    let g = parse_depends("a (>= 1:2.0~rc1), b:any | c [amd64] <!nocheck>, d(<<3)");
    assert_eq!(g.len(), 3);
    assert_eq!(
        g[0][0].version,
        Some((Relation::Ge, "1:2.0~rc1".to_string()))
    );
    assert_eq!(g[1][0].arch.as_deref(), Some("any"));
    assert_eq!(g[1][1].name, "c");
    assert_eq!(g[2][0].version, Some((Relation::Lt, "3".to_string())));
}

#[test]
fn lock_round_trips_and_gives_closures() {
    let idx = index();
    let packages = resolve(&idx, &["app"]).expect("resolve");
    let lock = Lock {
        version: LOCK_VERSION,
        suite: "bookworm".into(),
        architecture: "amd64".into(),
        roots: vec!["app".into()],
        packages,
    };
    let text = render_lock(&lock, "x.lock");
    assert!(text.contains("# Refresh (after `apt-get update`): buildit debian lock --suite bookworm --output x.lock app"));
    assert_eq!(lock::parse_lock(&text).expect("parse"), lock);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("sub/b.lock");
    write_lock(&p, &lock).expect("write");
    assert_eq!(read_lock(&p).expect("read"), lock);
    let c: Vec<&str> = lock
        .closure(&["perl"])
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(c, ["perl", "perl-base"]);
    assert_eq!(
        lock.get("perl").expect("perl").url(),
        "mirror://debian/pool/main/p/perl/perl_5.36.0-7_amd64.deb"
    );
    let err = lock::parse_lock("version = 7\nsuite = \"x\"\narchitecture = \"y\"\nroots = []\n")
        .expect_err("version");
    assert!(err.contains("version 7"), "{err}");
}

#[test]
fn finds_and_reads_apt_lists_in_every_compression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
    lz.write_all(MAIN.as_bytes()).expect("lz4");
    std::fs::write(
        d.join("mirror.example_debian_dists_bookworm_main_binary-amd64_Packages.lz4"),
        lz.finish().expect("lz4"),
    )
    .expect("write");
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(SECURITY.as_bytes()).expect("xz");
    std::fs::write(
        d.join(
            "mirror.example_debian-security_dists_bookworm-security_main_binary-amd64_Packages.xz",
        ),
        xz.finish().expect("xz"),
    )
    .expect("write");
    std::fs::write(
        d.join("mirror.example_debian_dists_trixie_main_binary-amd64_Packages"),
        "Package: other\nVersion: 1\nFilename: x\n",
    )
    .expect("write");
    std::fs::write(
        d.join("mirror.example_debian_dists_bookworm_main_binary-i386_Packages"),
        "",
    )
    .expect("write");
    let files = apt_index_files(d, "bookworm", "amd64").expect("files");
    let summary: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f.mirror.as_str(), f.suite.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("debian-security", "bookworm-security"),
            ("debian", "bookworm")
        ]
    );
    let idx = Index::load(&files).expect("load");
    assert_eq!(
        idx.candidate("libc6").expect("libc6").version,
        "2.36-9+deb12u10"
    );
    assert!(idx.candidate("other").is_none());
    let err = apt_index_files(d, "sid", "amd64").expect_err("none");
    assert!(
        err.to_string()
            .contains("no apt package index for suite 'sid'"),
        "{err}"
    );
}

/// An index that is not deb822 is an error naming the file, not a silently shorter index.
#[test]
fn a_malformed_index_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir
        .path()
        .join("mirror.example_debian_dists_bookworm_main_binary-amd64_Packages");
    std::fs::write(&path, format!("{MAIN}\nthis is not a field\n")).expect("write");
    let files = apt_index_files(dir.path(), "bookworm", "amd64").expect("files");
    let err = Index::load(&files).expect_err("malformed");
    assert!(matches!(err, DebianError::BadIndex { .. }), "{err}");
    assert!(err.to_string().contains("binary-amd64_Packages"), "{err}");
}
