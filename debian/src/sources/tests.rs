//! Tests of `Sources` indexes, build-dependency restrictions and `.dsc` parsing on the crafted
//! indexes of `tests/data/debian-src` and crafted `.dsc` texts.

use super::*;

const LISTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/debian-src/apt-root/var/lib/apt/lists"
);

fn index() -> SourceIndex {
    let files = apt_sources_files(Path::new(LISTS), "bookworm").expect("crafted lists");
    assert_eq!(files.len(), 2);
    SourceIndex::load(&files).expect("crafted indexes")
}

fn names(groups: &[Vec<Dep>]) -> Vec<String> {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn the_crafted_indexes_read_with_versions_files_and_mirrors() {
    let idx = index();
    assert_eq!(idx.len(), 4);
    let zlib: Vec<(&str, &str)> = idx
        .versions("zlib")
        .iter()
        .map(|p| (p.version.as_str(), p.mirror.as_str()))
        .collect();
    assert_eq!(
        zlib,
        [
            ("1:1.2.13.dfsg-1+deb12u1", "debian-security"),
            ("1:1.2.13.dfsg-1", "debian")
        ]
    );
    let hello = idx.find("hello", None).expect("hello");
    assert_eq!(hello.format, "3.0 (quilt)");
    assert_eq!(hello.files.len(), 3);
    let dsc = hello.dsc().expect("a .dsc");
    assert_eq!(
        hello.url(dsc),
        "mirror://debian/pool/main/h/hello/hello_2.10-3.dsc"
    );
    assert_eq!(dsc.size, 1183);
    let zlib = idx.find("zlib", Some("1:1.2.13.dfsg-1")).expect("pinned");
    assert_eq!(
        zlib.binaries,
        [
            "zlib1g",
            "zlib1g-dev",
            "zlib1g-udeb",
            "lib32z1",
            "lib32z1-dev"
        ]
    );
    assert_eq!(idx.search("LIB"), ["libyaml", "zlib"]);
    let e = idx.find("zlb", None).expect_err("unknown");
    assert!(e.to_string().contains("did you mean 'zlib'?"), "{e}");
    let e = idx.find("hello", Some("9.9")).expect_err("no such version");
    assert!(e.to_string().contains("available: 2.10-3"), "{e}");
    let e = apt_sources_files(Path::new(LISTS), "trixie").expect_err("no trixie");
    assert!(matches!(e, DebianError::NoSourceIndexes { .. }), "{e}");
}

#[test]
fn build_depends_follow_architecture_and_profile_restrictions() {
    let idx = index();
    let hello = idx.find("hello", None).expect("hello");
    assert_eq!(
        names(&hello.build_depends_for("amd64", &[])),
        ["debhelper-compat", "help2man"]
    );
    assert_eq!(
        names(&hello.build_depends_for("amd64", &["nocheck"])),
        ["debhelper-compat"]
    );
    let zlib = idx.find("zlib", Some("1:1.2.13.dfsg-1")).expect("zlib");
    assert_eq!(
        names(&zlib.build_depends_for("amd64", &[])),
        ["debhelper", "gcc-multilib", "dpkg-dev", "texlive-base"]
    );
    assert_eq!(
        names(&zlib.build_depends_for("arm64", &["nodoc"])),
        ["debhelper", "dpkg-dev"]
    );
    let yaml = idx.find("libyaml", None).expect("libyaml");
    assert_eq!(
        names(&yaml.build_depends_for("amd64", &[])),
        ["debhelper-compat"]
    );
    assert_eq!(
        names(&yaml.build_depends_for("arm64", &[])),
        ["debhelper-compat", "not-on-amd64"]
    );
    // versions survive the restrictions; `<<` in a version is no profile
    let groups = restrict_relations(
        "a (<< 2.0) [linux-any] <!stage1> <cross>, b [any-amd64] | c, d <stage1>",
        "amd64",
        &[],
    );
    assert_eq!(names(&groups), ["a", "b|c"]);
    assert_eq!(
        groups[0][0].version.as_ref().map(|(_, v)| v.as_str()),
        Some("2.0")
    );
}

#[test]
fn malformed_sources_stanzas_are_errors_naming_the_package() {
    let good = "0000000000000000000000000000000000000000000000000000000000000000";
    for (files, want) in [
        (format!("{good} 1 ../evil.dsc"), "not a plain name"),
        (format!("{good} 1 a/b.dsc"), "not a plain name"),
        (format!("{good} x p.dsc"), "bad size"),
        ("00 1 p.dsc".to_string(), "bad sha256"),
        (format!("{good} 1 p.dsc\n {good} 2 p.dsc"), "listed twice"),
        (format!("{good} 1 p.tar.gz"), "no .dsc file"),
        (format!("{good} 1"), "malformed"),
    ] {
        let text = format!(
            "Package: p\nVersion: 1\nDirectory: pool/main/p/p\nChecksums-Sha256:\n {files}\n"
        );
        let e = SourceIndex::new()
            .add_sources_text(&text, "debian", "bookworm")
            .expect_err(want);
        assert!(
            e.contains(want) && e.contains("source package p 1"),
            "{want}: {e}"
        );
    }
    let e = SourceIndex::new()
        .add_sources_text(
            &format!("Package: p\nVersion: 1\nDirectory: pool/../../etc\nChecksums-Sha256:\n {good} 1 p.dsc\n"),
            "debian",
            "bookworm",
        )
        .expect_err("bad directory");
    assert!(e.contains("bad Directory"), "{e}");
}

const DSC_BODY: &str = "Format: 3.0 (quilt)\nSource: hello\nBinary: hello\nVersion: 2.10-3\nBuild-Depends: debhelper-compat (= 13)\nChecksums-Sha256:\n 0101010101010101010101010101010101010101010101010101010101010101 725946 hello_2.10.orig.tar.gz\n 0202020202020202020202020202020202020202020202020202020202020202 12688 hello_2.10-3.debian.tar.xz\n";

fn signed(body: &str) -> String {
    format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{body}-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
}

#[test]
fn a_clearsigned_dsc_parses_like_an_unsigned_one() {
    let plain = parse_dsc("hello_2.10-3.dsc", DSC_BODY.as_bytes()).expect("unsigned");
    let from_signed = parse_dsc("hello_2.10-3.dsc", signed(DSC_BODY).as_bytes()).expect("signed");
    assert_eq!(plain, from_signed);
    assert_eq!(
        (
            plain.source.as_str(),
            plain.version.as_str(),
            plain.format.as_str()
        ),
        ("hello", "2.10-3", "3.0 (quilt)")
    );
    assert_eq!(plain.files.len(), 2);
    assert_eq!(plain.files[1].name, "hello_2.10-3.debian.tar.xz");
    // CRLF line ends, and a dash-escaped line
    let crlf = signed(DSC_BODY).replace('\n', "\r\n");
    assert_eq!(parse_dsc("x.dsc", crlf.as_bytes()).expect("crlf"), plain);
    assert_eq!(
        strip_clearsign(&signed("A: b\n- -dash\n")).expect("escaped"),
        "A: b\n-dash\n"
    );
}

#[test]
fn hostile_dsc_files_are_clear_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![b'A'; MAX_DSC_BYTES + 1], "larger than"),
        (vec![0xff, 0xfe, b'\n'], "not UTF-8"),
        (
            signed(DSC_BODY)
                .replace("-----END PGP SIGNATURE-----\n", "")
                .into_bytes(),
            "not closed",
        ),
        (
            signed(DSC_BODY)
                .replace("-----BEGIN PGP SIGNATURE-----", "")
                .into_bytes(),
            "unescaped dash line",
        ),
        (
            format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{DSC_BODY}").into_bytes(),
            "no signature block",
        ),
        (
            format!("{}Extra: stanza\n", signed(DSC_BODY)).into_bytes(),
            "after the signature block",
        ),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n".as_bytes().to_vec(),
            "unexpected armour line",
        ),
        (
            format!("{DSC_BODY}\nSource: second\n").into_bytes(),
            "2 stanzas",
        ),
        (
            DSC_BODY.replace("Version: 2.10-3\n", "").into_bytes(),
            "no Version field",
        ),
        (
            DSC_BODY
                .replace("hello_2.10.orig", "../hello_2.10.orig")
                .into_bytes(),
            "not a plain name",
        ),
        (b"no colon\n".to_vec(), "not a Debian"),
    ];
    for (bytes, want) in cases {
        let e = parse_dsc("h.dsc", &bytes).expect_err(want);
        assert!(matches!(e, DebianError::BadDsc { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("h.dsc: ") && msg.contains(want),
            "{want}: {msg}"
        );
    }
}
