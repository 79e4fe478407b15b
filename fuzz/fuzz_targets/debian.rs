//! Fuzz target `debian`: arbitrary bytes through the Debian crate's parsers of files that come
//! from outside: apt's `Packages` indexes, apt sources (one-line and deb822), dependency fields,
//! version strings and `.deb` files. The input is split at NUL bytes: the first part is a
//! `Packages` text, the second a sources text (read both ways), the third the bytes of a `.deb`
//! unpacked into a directory of a temporary tree per fuzzing process.
//!
//! A finding is a panic; an order of versions that is not antisymmetric or not reflexive; a
//! resolution that returns a package the index does not list; or an unpacked `.deb` that
//! wrote anything outside its destination (the tree holds a file beside the destination that
//! must stay as it is).

#![no_main]

use std::cmp::Ordering;
use std::path::PathBuf;
use std::sync::OnceLock;

use buildit_debian::apt::{parse_deb822_sources, parse_one_line_sources};
use buildit_debian::unpack::{unpack_debs, UnpackOptions};
use buildit_debian::{compare_versions, parse_depends, resolve_for, Index};
use libfuzzer_sys::fuzz_target;

/// The temporary tree: `outside` (a file that must not change) and the `.deb` path.
fn tree() -> &'static (tempfile::TempDir, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("outside"), "unchanged").expect("write");
        let deb = t.path().join("input.deb");
        (t, deb)
    })
}

fn check_versions(versions: &[&str]) {
    for a in versions {
        assert_eq!(compare_versions(a, a), Ordering::Equal, "{a:?} vs itself");
        for b in versions {
            assert_eq!(
                compare_versions(a, b),
                compare_versions(b, a).reverse(),
                "{a:?} vs {b:?}"
            );
        }
    }
}

fn unpack(bytes: &[u8]) {
    let (t, deb) = tree();
    std::fs::write(deb, bytes).expect("write");
    let dest = t.path().join("root");
    let _ = unpack_debs(std::slice::from_ref(deb), &dest, &UnpackOptions::default());
    let _ = std::fs::remove_dir_all(&dest);
    assert_eq!(
        std::fs::read_to_string(t.path().join("outside"))
            .ok()
            .as_deref(),
        Some("unchanged"),
        "a .deb wrote outside its destination"
    );
    let mut names: Vec<String> = std::fs::read_dir(t.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["input.deb", "outside"],
        "a .deb left files beside its destination"
    );
}

fn index(text: &str) {
    let mut idx = Index::new();
    if idx.add_packages_text(text, "debian", "bookworm").is_err() {
        return;
    }
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Package:"))
        .map(|n| n.trim().to_string())
        .take(8)
        .collect();
    let mut versions: Vec<&str> = Vec::new();
    for n in &names {
        versions.extend(idx.versions(n).iter().map(|p| p.version.as_str()));
        for g in parse_depends(
            &idx.versions(n)
                .first()
                .map(|p| p.depends.clone())
                .unwrap_or_default(),
        ) {
            for d in g {
                if let Some((_, v)) = &d.version {
                    let _ = compare_versions(v, "1.0");
                }
            }
        }
    }
    versions.truncate(16);
    check_versions(&versions);
    let roots: Vec<&str> = names.iter().map(String::as_str).take(3).collect();
    if let Ok(entries) = resolve_for(&idx, &roots, "amd64") {
        for e in entries {
            assert!(
                idx.versions(&e.name).iter().any(|p| p.version == e.version),
                "resolved {} {} is not in the index",
                e.name,
                e.version
            );
        }
    }
    let _ = idx.suggestions(names.first().map(String::as_str).unwrap_or("x"));
}

fn sources(text: &str) {
    for s in parse_one_line_sources(text) {
        let _ = (s.is_debian_archive(), s.is_security());
    }
    if let Ok(v) = parse_deb822_sources(text) {
        for s in v {
            let _ = (s.is_debian_archive(), s.is_security());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let packages = String::from_utf8_lossy(parts.next().unwrap_or(&[]));
    let apt = String::from_utf8_lossy(parts.next().unwrap_or(&[]));
    index(&packages);
    sources(&apt);
    let words: Vec<&str> = packages.split_whitespace().take(12).collect();
    check_versions(&words);
    if let Some(deb) = parts.next() {
        unpack(deb);
    }
});
