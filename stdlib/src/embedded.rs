//! The `.bld` standard library, embedded in the binary: `stdlib/bld/` (the package set,
//! `stdenv`, build options, the generic builder script). `<buildit>` in a program names this
//! tree; [`crate::StoreIo`] materialises it once as a store path (content-addressed, so every
//! machine with the same buildit gets the same path), and relative imports inside it work as
//! in any directory.

/// Every file of `stdlib/bld/`, relative path and contents. A unit test checks that the table
/// lists exactly the files of the directory.
pub const FILES: &[(&str, &str)] = &[
    // the Debian lock lives in stdlib/debian/ (where `buildit debian lock` writes it)
    (
        "debian/bookworm.lock",
        include_str!("../debian/bookworm.lock"),
    ),
    ("debian.bld", include_str!("../bld/debian.bld")),
    (
        "debian/fixup-sysroot.sh",
        include_str!("../bld/debian/fixup-sysroot.sh"),
    ),
    ("default.bld", include_str!("../bld/default.bld")),
    ("fetchurl.bld", include_str!("../bld/fetchurl.bld")),
    ("image.bld", include_str!("../bld/image.bld")),
    ("options.bld", include_str!("../bld/options.bld")),
    ("pkgs/default.bld", include_str!("../bld/pkgs/default.bld")),
    ("pkgs/hello.bld", include_str!("../bld/pkgs/hello.bld")),
    ("pkgs/nginx.bld", include_str!("../bld/pkgs/nginx.bld")),
    ("pkgs/pcre2.bld", include_str!("../bld/pkgs/pcre2.bld")),
    ("pkgs/zlib.bld", include_str!("../bld/pkgs/zlib.bld")),
    (
        "stdenv/default.bld",
        include_str!("../bld/stdenv/default.bld"),
    ),
    ("stdenv/setup.sh", include_str!("../bld/stdenv/setup.sh")),
];

/// The Debian lock inside the tree (`--debian-lock FILE` replaces it).
pub const DEBIAN_LOCK: &str = "debian/bookworm.lock";

/// Whether `rel` names a file of the tree.
pub fn is_file(rel: &str) -> bool {
    FILES.iter().any(|(p, _)| *p == rel)
}

/// Write the tree into `dir` (which must not exist yet).
pub fn write_to(dir: &std::path::Path) -> std::io::Result<()> {
    write_with(dir, &std::collections::BTreeMap::new())
}

/// Write the tree into `dir`, with the files named in `replaced` (relative paths, as in
/// [`FILES`]) given other contents.
pub fn write_with(
    dir: &std::path::Path,
    replaced: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (rel, text) in FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = replaced.get(*rel).map(String::as_str).unwrap_or(text);
        std::fs::write(p, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("stdlib/bld is readable") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .expect("below base")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }

    #[test]
    fn table_lists_every_file() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bld");
        let mut on_disk = Vec::new();
        walk(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut listed: Vec<String> = FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p != DEBIAN_LOCK)
            .collect();
        listed.sort();
        assert_eq!(
            listed, on_disk,
            "stdlib/src/embedded.rs must list every file of stdlib/bld"
        );
    }
}
