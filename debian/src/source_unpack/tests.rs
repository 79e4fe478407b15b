//! Crafted tiny source packages (tarballs written here, `.dsc` with their real hashes) in
//! each format, a file that does not match its `.dsc`, and hostile tarballs and series.

use super::*;
use std::io::Write;

/// One tar entry: a path, and file contents or a symlink target.
enum E<'a> {
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
}

fn tar_bytes(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (path, data, link) = match e {
            E::File(p, d) => (*p, d.as_bytes(), None),
            E::Link(p, t) => (*p, &b""[..], Some(*t)),
        };
        // the raw name, so that hostile names are written as given
        let name = &mut h.as_gnu_mut().expect("gnu header").name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        match link {
            Some(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).expect("link name");
            }
            None => h.set_entry_type(tar::EntryType::Regular),
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gz");
    e.finish().expect("gz")
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(bytes).expect("xz");
    e.finish().expect("xz")
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write `files` and a `.dsc` listing them into `dir`; the `.dsc`'s path and sha256.
fn source(dir: &Path, format: &str, files: &[(&str, Vec<u8>)]) -> (PathBuf, String) {
    let mut sums = String::new();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).expect("write");
        sums.push_str(&format!(" {} {} {name}\n", sha(bytes), bytes.len()));
    }
    let dsc = format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nFormat: {format}\nSource: p\nVersion: 1.0-1\nChecksums-Sha256:\n{sums}-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n");
    let path = dir.join("p_1.0-1.dsc");
    fs::write(&path, &dsc).expect("write dsc");
    (path, sha(dsc.as_bytes()))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
}

fn quilt(dir: &Path) -> (PathBuf, String) {
    let orig = gz(&tar_bytes(&[
        E::File("p-1.0/src/a.c", "int a;\n"),
        E::File("p-1.0/debian/upstream-only", "x"),
    ]));
    let doc = xz(&tar_bytes(&[E::File("doc/README", "docs\n")]));
    let debian = xz(&tar_bytes(&[
        E::File("debian/control", "Source: p\n"),
        E::File(
            "debian/patches/series",
            "# Debian's patches\nfix.patch\n\nsub/two.patch -p0 # upstream's\n",
        ),
        E::File("debian/patches/fix.patch", "--- a\n"),
        E::File("debian/patches/sub/two.patch", "--- b\n"),
    ]));
    source(
        dir,
        "3.0 (quilt)",
        &[
            ("p_1.0.orig.tar.gz", orig),
            ("p_1.0.orig-doc.tar.xz", doc),
            ("p_1.0-1.debian.tar.xz", debian),
        ],
    )
}

#[test]
fn quilt_sources_unpack_with_their_series_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dsc, dsc_sha) = quilt(dir.path());
    let dest = dir.path().join("tree");
    let u = unpack_source(&dsc, Some(&dsc_sha), &dest).expect("unpacks");
    assert_eq!(
        (u.dsc.source.as_str(), u.dsc.format.as_str()),
        ("p", "3.0 (quilt)")
    );
    assert_eq!(read(&dest.join("src/a.c")), "int a;\n");
    assert_eq!(read(&dest.join("doc/README")), "docs\n");
    assert_eq!(read(&dest.join("debian/control")), "Source: p\n");
    assert!(
        !dest.join("debian/upstream-only").exists(),
        "the upstream debian/ stays"
    );
    let got: Vec<(PathBuf, u32, bool)> = u
        .patches
        .into_iter()
        .map(|p| (p.path, p.strip, p.gzipped))
        .collect();
    assert_eq!(
        got,
        [
            (dest.join("debian/patches/fix.patch"), 1, false),
            (dest.join("debian/patches/sub/two.patch"), 0, false)
        ]
    );
}

#[test]
fn native_and_1_0_sources_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = xz(&tar_bytes(&[E::File(
        "p-1.0/debian/rules",
        "#!/usr/bin/make -f\n",
    )]));
    let (dsc, _) = source(dir.path(), "3.0 (native)", &[("p_1.0.tar.xz", tar)]);
    let u = unpack_source(&dsc, None, &dir.path().join("native")).expect("native");
    assert!(u.patches.is_empty());
    assert_eq!(
        read(&dir.path().join("native/debian/rules")),
        "#!/usr/bin/make -f\n"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let orig = gz(&tar_bytes(&[E::File("p-1.0.orig/main.c", "int main;\n")]));
    let diff = gz(b"--- p-1.0.orig/main.c\n+++ p-1.0/main.c\n");
    let (dsc, _) = source(
        dir.path(),
        "1.0",
        &[("p_1.0.orig.tar.gz", orig), ("p_1.0-1.diff.gz", diff)],
    );
    let u = unpack_source(&dsc, None, &dir.path().join("one")).expect("1.0");
    assert_eq!(read(&dir.path().join("one/main.c")), "int main;\n");
    assert_eq!(
        u.patches,
        [SourcePatch {
            path: dir.path().join("p_1.0-1.diff.gz"),
            strip: 1,
            gzipped: true
        }]
    );
}

#[test]
fn a_file_that_does_not_match_the_dsc_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dsc, _) = quilt(dir.path());
    // one byte changed in the orig tarball
    let orig = dir.path().join("p_1.0.orig.tar.gz");
    let mut bytes = fs::read(&orig).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&orig, &bytes).expect("write");
    let dest = dir.path().join("tree");
    let e = unpack_source(&dsc, None, &dest).expect_err("mismatch");
    assert!(matches!(e, DebianError::SourceFileMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("p_1.0.orig.tar.gz: does not match the .dsc"),
        "{msg}"
    );
    assert!(
        !dest.exists(),
        "nothing unpacked before every file is checked"
    );
    // the .dsc itself against its pinned hash
    let e = unpack_source(&dsc, Some(&"0".repeat(64)), &dest).expect_err("dsc mismatch");
    assert!(
        e.to_string().starts_with("p_1.0-1.dsc: does not match"),
        "{e}"
    );
    // a missing file names its path
    fs::remove_file(&orig).expect("rm");
    let e = unpack_source(&dsc, None, &dest).expect_err("missing");
    assert!(e.to_string().contains("p_1.0.orig.tar.gz"), "{e}");
}

/// A source package's files: names and bytes.
type Files = Vec<(&'static str, Vec<u8>)>;

#[test]
fn hostile_tarballs_series_and_formats_are_refused() {
    let cases: Vec<(&str, Files, &str)> = vec![
        (
            "3.0 (native)",
            vec![(
                "p_1.0.tar.gz",
                gz(&tar_bytes(&[E::File("p/../../evil", "x")])),
            )],
            "'..' in the path",
        ),
        (
            "3.0 (native)",
            vec![(
                "p_1.0.tar.gz",
                gz(&tar_bytes(&[
                    E::Link("p/out", "/../../../tmp"),
                    E::File("p/out/evil", "x"),
                ])),
            )],
            "outside the destination",
        ),
        (
            "3.0 (native)",
            vec![("p_1.0.tar.lzma", b"]\0\0\x80\0".to_vec())],
            "unsupported member compression",
        ),
        (
            "3.0 (native)",
            vec![
                ("p_1.0.tar.gz", gz(&tar_bytes(&[]))),
                ("q_1.0.tar.gz", gz(&tar_bytes(&[]))),
            ],
            "exactly one tarball",
        ),
        (
            "3.0 (quilt)",
            vec![
                ("p_1.0.orig.tar.gz", gz(&tar_bytes(&[E::File("p/a", "a")]))),
                (
                    "p_1.0-1.debian.tar.gz",
                    gz(&tar_bytes(&[E::File(
                        "debian/patches/series",
                        "../../etc/passwd\n",
                    )])),
                ),
            ],
            "leaves debian/patches",
        ),
        (
            "3.0 (quilt)",
            vec![
                ("p_1.0.orig.tar.gz", gz(&tar_bytes(&[E::File("p/a", "a")]))),
                (
                    "p_1.0-1.debian.tar.gz",
                    gz(&tar_bytes(&[E::File(
                        "debian/patches/series",
                        "missing.patch\n",
                    )])),
                ),
            ],
            "not a regular file",
        ),
        (
            "3.0 (git)",
            vec![("p.git", b"x".to_vec())],
            "'3.0 (git)' is not supported",
        ),
    ];
    for (format, files, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dsc, _) = source(dir.path(), format, &files);
        let e = unpack_source(&dsc, None, &dir.path().join("tree")).expect_err(want);
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert!(!dir.path().join("evil").exists() && !Path::new("/tmp/evil").exists());
    }
}

/// The builtin's body: inputs by logical path, only those `input` grants; a file the `.dsc`
/// lists that `files` does not give is an error naming it.
#[test]
fn the_builtin_reads_its_files_through_the_input_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dsc, dsc_sha) = quilt(dir.path());
    let logical = |n: &str| format!("/bld/store/0000-{n}");
    let names = [
        "p_1.0.orig.tar.gz",
        "p_1.0.orig-doc.tar.xz",
        "p_1.0-1.debian.tar.xz",
    ];
    let mut env: std::collections::BTreeMap<String, String> = [
        ("dsc", logical("p_1.0-1.dsc")),
        ("dscName", "p_1.0-1.dsc".to_string()),
        ("dscSha256", dsc_sha),
        (
            "files",
            names
                .iter()
                .map(|n| format!("{n}={}", logical(n)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let host = dir.path().to_path_buf();
    let mut input = |l: &str| -> Result<PathBuf, String> {
        l.strip_prefix("/bld/store/0000-")
            .map(|n| host.join(n))
            .ok_or_else(|| "not in the input closure".to_string())
    };
    let out = dir.path().join("out");
    let u = builtin_unpack_debian_source(&env, &out, &mut input).expect("unpacks");
    assert_eq!(u.patches.len(), 2);
    assert_eq!(read(&out.join("src/a.c")), "int a;\n");
    assert_eq!(
        dsc.file_name().and_then(|n| n.to_str()),
        Some("p_1.0-1.dsc")
    );
    // one file left out of `files`
    env.insert(
        "files".into(),
        format!("p_1.0.orig.tar.gz={}", logical("p_1.0.orig.tar.gz")),
    );
    let e = builtin_unpack_debian_source(&env, &dir.path().join("out2"), &mut input)
        .expect_err("missing");
    assert!(
        e.to_string()
            .contains("lists p_1.0.orig-doc.tar.xz, which `files` does not give"),
        "{e}"
    );
    // an input outside the closure
    env.insert("dsc".into(), "/etc/passwd".into());
    let e = builtin_unpack_debian_source(&env, &dir.path().join("out3"), &mut input)
        .expect_err("outside");
    assert!(
        e.to_string()
            .contains("/etc/passwd: not in the input closure"),
        "{e}"
    );
}
