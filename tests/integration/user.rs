//! What an ordinary (non-root) caller gets without any flag: a private store in their home
//! (`$XDG_DATA_HOME/buildit`, else `~/.local/share/buildit`), never a `/bld` they do not own.
//! These trials exist only when the test process is not root; `scripts/test-unprivileged` runs
//! them as an unprivileged account (and fails when none ran). As root, one trial instead sets up
//! a kernel that refuses unprivileged user namespaces and checks what an ordinary user is told. The rest of what an ordinary
//! user does — the store, the escape suite, hello built and run, the README's main job — are
//! the `store::`, `escape::`, `pkgs::` and `e2e::` trials, run by that script as the same
//! account.

use crate::cli::buildit;
use libtest_mimic::{Failed, Trial};
use std::path::Path;

type R = Result<(), Failed>;

pub fn trials() -> Vec<Trial> {
    if crate::is_root_user() {
        return vec![crate::gated(
            "userns::refusal-names-the-sysctl".to_string(),
            &["unshare", "setpriv"],
            true,
            refusal_names_the_sysctl,
        )];
    }
    vec![
        Trial::test("user::private-store-in-home", private_store_in_home),
        Trial::test("user::xdg-data-home-names-the-store", xdg_data_home),
    ]
}

/// Where the kernel refuses unprivileged user namespaces, an ordinary user's build stops before
/// it starts with `buildit::build::no-user-namespaces`, naming the switch. Root sets the scene:
/// a user namespace mapping uids 0–65535 onto themselves whose `user.max_user_namespaces` is 0,
/// and in it `buildit realise` runs as `nobody`.
fn refusal_names_the_sysctl() -> R {
    use std::io::{BufRead, Write};
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    let bin = tmp.path().join("buildit");
    std::fs::copy(crate::buildit_bin(), &bin)?;
    let home = tmp.path().join("home");
    std::fs::create_dir(&home)?;
    std::os::unix::fs::chown(&home, Some(65534), Some(65534))?;
    // The shell exec'd by `unshare` had no uid in the namespace, so no capabilities; once
    // mapped it execs a shell again, which starts as the namespace's root with all of them.
    let script =
        "echo ready; read go; exec sh -c 'echo 0 > /proc/sys/user/max_user_namespaces || exit 90; \
                  exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"' sh \"$@\"";
    let expr = "derivation { name = \"refused\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo > $out\" ]; }";
    let mut child = std::process::Command::new(crate::tool_path("unshare"))
        .arg("--user")
        .args(["sh", "-c", script, "sh"])
        .arg(&bin)
        .args(["realise", "--no-out-link", "-E", expr])
        .env("HOME", &home)
        .env("NO_COLOR", "1")
        .env_remove("BUILDIT_STORE_ROOT")
        .env_remove("XDG_DATA_HOME")
        .current_dir(&home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err(format!("unshare --user did not start: {line:?}").into());
    }
    let pid = child.id();
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{map}"), "0 0 65536\n")?;
    }
    child.stdin.take().ok_or("no stdin")?.write_all(b"go\n")?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest)?;
    let o = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(1)
        || !err.contains("buildit::build::no-user-namespaces")
        || !err.contains("user.max_user_namespaces")
    {
        return Err(format!(
            "expected buildit::build::no-user-namespaces naming user.max_user_namespaces; got {}:\n{rest}{err}",
            o.status
        )
        .into());
    }
    Ok(())
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
