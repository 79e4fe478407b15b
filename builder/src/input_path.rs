//! Where a builtin builder may read: the physical file of a logical store path that a
//! derivation names (`/bld/store/<hash>-<name>[/sub/path]`), allowed only when it is exact and
//! inside the build's input closure.
//!
//! Builtin builders (`builtin:unpack-deb`, `builtin:image`) run in the `buildit` process, not
//! in the sandbox, so nothing stops them from opening host files except this check. It is the
//! builtin's sandbox: the store path must be a path of the request's input closure, the
//! sub-path must be canonical (no `.`, `..` or empty components, no trailing `/`), and no
//! component, the object itself included, may be a symlink (a symlink could point anywhere on
//! the host). Store objects are read-only and owned by the store, so what is checked here is
//! what is opened.

use std::io;
use std::path::PathBuf;

use buildit_store::path::PathError;
use buildit_store::{StoreLayout, StorePath};

/// Why a builtin may not read a path.
#[derive(Debug, thiserror::Error)]
pub enum InputPathError {
    #[error("'{path}' is not a store path: {source}")]
    NotAStorePath {
        path: String,
        #[source]
        source: PathError,
    },
    #[error("'{path}' is not a canonical store path ('.', '..' and empty components are refused)")]
    NotCanonical { path: String },
    #[error(
        "'{path}' is not in the derivation's input closure (only declared inputs may be read)"
    )]
    NotAnInput { path: String },
    #[error("'{path}' goes through the symlink {link} (builtin builders follow no symlinks)")]
    Symlink { path: String, link: String },
    #[error("'{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The physical path of `logical` (a store path with an optional canonical sub-path) in the
/// store at `layout`, if it lies inside `closure` (the request's input closure, any order) and
/// no component on the way is a symlink.
pub fn input_path(
    layout: &StoreLayout,
    closure: &[StorePath],
    logical: &str,
) -> Result<PathBuf, InputPathError> {
    let (sp, rest) =
        StorePath::parse_prefix(logical).map_err(|source| InputPathError::NotAStorePath {
            path: logical.to_string(),
            source,
        })?;
    let comps: Vec<&str> = match rest.strip_prefix('/') {
        None => Vec::new(),
        Some(r) => r.split('/').collect(),
    };
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(InputPathError::NotCanonical {
            path: logical.to_string(),
        });
    }
    if !closure.contains(&sp) {
        return Err(InputPathError::NotAnInput {
            path: logical.to_string(),
        });
    }
    let mut phys = layout.physical(&sp);
    let mut shown = sp.to_string();
    let check = |p: &PathBuf, shown: &str| -> Result<(), InputPathError> {
        let m = std::fs::symlink_metadata(p).map_err(|source| InputPathError::Io {
            path: logical.to_string(),
            source,
        })?;
        if m.file_type().is_symlink() {
            return Err(InputPathError::Symlink {
                path: logical.to_string(),
                link: shown.to_string(),
            });
        }
        Ok(())
    };
    check(&phys, &shown)?;
    for c in comps {
        phys.push(c);
        shown.push('/');
        shown.push_str(c);
        check(&phys, &shown)?;
    }
    Ok(phys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_paths_of_the_closure() {
        let t = tempfile::tempdir().expect("tmp");
        let layout = StoreLayout::at(t.path());
        let store = buildit_store::Store::open(layout.clone()).expect("store");
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).expect("mkdir");
        std::fs::write(src.join("d/f.deb"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", src.join("d/link")).expect("symlink");
        let p = store.add_path(&src, Some("debs")).expect("add");
        let other = store.add_bytes("other", b"other", &[]).expect("add other");
        let closure = vec![p.clone()];
        let ok = input_path(&layout, &closure, &format!("{p}/d/f.deb")).expect("inside");
        assert_eq!(std::fs::read(ok).expect("read"), b"x");
        assert_eq!(
            input_path(&layout, &closure, &p.to_string()).expect("root"),
            layout.physical(&p)
        );
        for (sub, want) in [
            ("/../../../../etc/passwd", "canonical"),
            ("/d/./f.deb", "canonical"),
            ("//d/f.deb", "canonical"),
            ("/d/", "canonical"),
            ("/d/link", "symlink"),
            ("/d/missing", "io"),
        ] {
            let e = input_path(&layout, &closure, &format!("{p}{sub}")).expect_err(sub);
            let got = match e {
                InputPathError::NotCanonical { .. } => "canonical",
                InputPathError::Symlink { .. } => "symlink",
                InputPathError::Io { .. } => "io",
                other => panic!("{sub}: unexpected {other}"),
            };
            assert_eq!(got, want, "{sub}");
        }
        assert!(matches!(
            input_path(&layout, &closure, &other.to_string()),
            Err(InputPathError::NotAnInput { .. })
        ));
        assert!(matches!(
            input_path(&layout, &closure, "/etc/passwd"),
            Err(InputPathError::NotAStorePath { .. })
        ));
    }
}
