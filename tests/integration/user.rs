//! What an ordinary (non-root) caller gets without any flag: a private store in their home
//! (`$XDG_DATA_HOME/buildit`, else `~/.local/share/buildit`), never a `/bld` they do not own.
//! These trials exist only when the test process is not root; `scripts/test-unprivileged` runs
//! them as an unprivileged account (and fails when none ran). The rest of what an ordinary
//! user does — the store, the escape suite, hello built and run, the README's main job — are
//! the `store::`, `escape::`, `pkgs::` and `e2e::` trials, run by that script as the same
//! account.

use crate::cli::buildit;
use libtest_mimic::{Failed, Trial};
use std::path::Path;

type R = Result<(), Failed>;

pub fn trials() -> Vec<Trial> {
    if crate::is_root_user() {
        return Vec::new();
    }
    vec![
        Trial::test("user::private-store-in-home", private_store_in_home),
        Trial::test("user::xdg-data-home-names-the-store", xdg_data_home),
    ]
}

/// `buildit store add FILE` with `HOME` set and no store named: the object lands under
/// `~/.local/share/buildit/store`, the logical path is still `/bld/store/…`.
fn private_store_in_home() -> R {
    let home = tempfile::tempdir()?;
    let file = home.path().join("greeting");
    std::fs::write(&file, "hello\n")?;
    let out = add(&file, home.path(), None)?;
    let base = out
        .strip_prefix("/bld/store/")
        .ok_or_else(|| format!("not a store path: {out}"))?;
    let phys = home.path().join(".local/share/buildit/store").join(base);
    if std::fs::read_to_string(&phys).ok().as_deref() != Some("hello\n") {
        return Err(format!("the object is not at {}", phys.display()).into());
    }
    Ok(())
}

/// `XDG_DATA_HOME` moves the private store.
fn xdg_data_home() -> R {
    let home = tempfile::tempdir()?;
    let data = home.path().join("data");
    let file = home.path().join("greeting");
    std::fs::write(&file, "hello xdg\n")?;
    let out = add(&file, home.path(), Some(&data))?;
    let base = out.strip_prefix("/bld/store/").unwrap_or(&out);
    if !data.join("buildit/store").join(base).exists() {
        return Err(format!("the object is not under {}", data.display()).into());
    }
    if home.path().join(".local/share/buildit").exists() {
        return Err("the store was made under HOME too".into());
    }
    Ok(())
}

fn add(file: &Path, home: &Path, xdg: Option<&Path>) -> Result<String, Failed> {
    let mut c = buildit();
    c.arg("store")
        .arg("add")
        .arg(file)
        .env_remove("BUILDIT_STORE_ROOT")
        .env("HOME", home);
    match xdg {
        Some(d) => c.env("XDG_DATA_HOME", d),
        None => c.env_remove("XDG_DATA_HOME"),
    };
    let o = c.output()?;
    if !o.status.success() {
        return Err(format!(
            "buildit store add failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}
