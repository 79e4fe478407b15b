//! Fuzz target `yaml`: arbitrary bytes through the YAML front end, as `buildit compile` runs it
//! on an untrusted spec directory. The bytes up to the first NUL are `container.yaml`, the
//! bytes after it the `pkg.yaml` of an embedded package `pkgs/x` (which also holds a patch);
//! both are written into one temporary spec directory per fuzzing process, which also holds a
//! file to sync and a symlink leading out of it. The directory is compiled (parse → typed spec →
//! checks → `.bld` text, no network, no store) and checked against an empty package set, and
//! the package directory is compiled alone as `buildit image PKGDIR` does.
//!
//! A finding is a panic, a diagnostic label outside its file, a failure without diagnostics,
//! or a compiled program that names a spec file through `..` (every path the front end turns
//! into a host path must stay inside the spec directory). Time and memory per input are bounded
//! by the front end's own limits (document size, nesting, alias and template budgets).

#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use buildit_lang::{Diagnostic, SourceMap};
use buildit_yaml as yaml;
use libfuzzer_sys::fuzz_target;

/// The spec directory (inside a temporary directory kept for the process's lifetime).
fn spec_dir() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("secret"), "outside the spec directory").expect("write");
        let d = t.path().join("spec");
        std::fs::create_dir_all(d.join("files/html")).expect("mkdir");
        std::fs::create_dir_all(d.join("pkgs/x/patches")).expect("mkdir");
        std::fs::write(d.join("files/a.conf"), "a").expect("write");
        std::fs::write(d.join("files/html/index.html"), "<p>").expect("write");
        std::fs::write(d.join("pkgs/x/patches/p.patch"), "--- a\n+++ b\n").expect("write");
        std::os::unix::fs::symlink("../../secret", d.join("files/out")).expect("symlink");
        (t, d)
    })
    .1
}

fn check_labels(sources: &SourceMap, diags: &[Diagnostic]) {
    for d in diags {
        assert!(!d.code.is_empty() && !d.message.is_empty(), "{d:?}");
        for l in &d.labels {
            let text = sources.text(l.span.file);
            assert!(
                l.span.start <= l.span.end && l.span.end as usize <= text.len(),
                "label outside its file: {d:?}"
            );
            assert!(
                text.is_char_boundary(l.span.start as usize)
                    && text.is_char_boundary(l.span.end as usize),
                "label not on character boundaries: {d:?}"
            );
        }
    }
}

fn check_text(text: &str) {
    assert!(!text.is_empty());
    // paths in the program are `./rel` literals or `(./. + "/rel")`: never through `..`
    let needle = "(./. + \"";
    for (i, _) in text.match_indices(needle) {
        let rest = &text[i + needle.len()..];
        let rel = &rest[..rest.find("\")").unwrap_or(rest.len())];
        assert!(
            !rel.split('/').any(|c| c == ".."),
            "a path out of the spec: {rel}"
        );
    }
}

fn compile(dir: &Path, pkg_alone: bool) {
    let lock = BTreeMap::new();
    let r = if pkg_alone {
        yaml::compile_pkg_dir(dir, &lock)
    } else {
        yaml::compile_dir(dir, &lock)
    };
    match r {
        Ok(c) => {
            check_text(&c.text);
            let diags = c.check(&yaml::check::SetInfo::default());
            check_labels(&c.sources, &diags);
        }
        Err(f) => {
            assert!(!f.diagnostics.is_empty(), "a failure without diagnostics");
            check_labels(&f.sources, &f.diagnostics);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = spec_dir();
    let (container, pkg) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    std::fs::write(dir.join("container.yaml"), container).expect("write");
    std::fs::write(dir.join("pkgs/x/pkg.yaml"), pkg).expect("write");
    compile(dir, false);
    compile(&dir.join("pkgs/x"), true);
});
