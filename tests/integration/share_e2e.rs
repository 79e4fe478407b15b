//! The seed's sharing workflow end to end, through the real `buildit` binary and real servers
//! on loopback (`servers.rs`): a configuration like the seed's `.buildit-config.yaml` (upload
//! over ssh to an sshd, download over HTTPS from an nginx serving the same directory, a test
//! CA), `buildit nginx-prod/ --discover=…,push=True`.
//!
//! - `share::seed-workflow`: store A (the E2E fixture's, where examples/nginx-prod is built)
//!   pushes; a fresh store B with only the configuration and the public key runs the same
//!   command and builds nothing, its image bit-identical; an unchanged push sends only
//!   existence checks; a changed spec prints the seed's whole transcript (`Can't find HASH in
//!   any known location...`, `Defaulting to local build... [OK]`, `Uploading packages…`,
//!   `Packaging … [OK]`, `Uploading container spec and image(s)…`).
//! - `share::sources-from-the-repository`: a fresh store whose Debian mirrors point at a dead
//!   port builds the example with `--substitute-sources-only`: every download (the shareable
//!   sources) comes from the repository, every package is built.
//! - `share::copy-both-ways` and `share::copy-refuses-a-flipped-byte`: `buildit copy` to and
//!   from `file://` and `oci://` repositories, and a tampered archive refused with nothing
//!   registered.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::servers;

type R = Result<(), Failed>;

pub fn trials() -> Vec<Trial> {
    let net = &["bwrap", "nginx", "sshd", "ssh", "ssh-keygen", "openssl"];
    vec![
        crate::gated("share::seed-workflow".into(), net, false, seed_workflow),
        crate::gated(
            "share::sources-from-the-repository".into(),
            net,
            false,
            sources_from_repository,
        ),
        crate::gated(
            "share::copy-both-ways".into(),
            &["bwrap", "docker-registry"],
            false,
            copy_both_ways,
        ),
        crate::gated(
            "share::copy-refuses-a-flipped-byte".into(),
            &["bwrap"],
            false,
            copy_refuses_flipped_byte,
        ),
    ]
}

fn buildit(env: &Env) -> Command {
    let mut c = Command::new(crate::buildit_bin());
    c.stdin(Stdio::null())
        .current_dir(&env.work)
        .env_remove("BUILDIT_DEBIAN_LOCK")
        .env_remove("BUILDIT_STORE_ROOT")
        .env_remove("BUILDIT_MIRRORS")
        .env_remove("BUILDIT_CONFIG")
        .env("XDG_CONFIG_HOME", env.work.join("no-user-config"))
        .env("BUILDIT_SSH_OPTIONS", &env.ssh_options)
        .env("NO_COLOR", "1");
    c
}

fn run(c: &mut Command) -> Result<Output, Failed> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?} failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 40)
        )
        .into());
    }
    Ok(out)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shared set-up: the servers, a fresh repository directory, keys and the seed-like
/// configuration in a work directory holding a copy of examples/nginx-prod.
struct Env {
    work: PathBuf,
    spec: PathBuf,
    repo: PathBuf,
    https_url: String,
    ssh_options: String,
    store_a: PathBuf,
    lock: PathBuf,
}

fn env() -> Result<&'static Env, Failed> {
    static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
    ENV.get_or_init(|| make_env().map_err(|e| format!("the sharing fixture failed: {e:?}")))
        .as_ref()
        .map_err(|e| Failed::from(e.clone()))
}

fn make_env() -> Result<Env, Failed> {
    let (store_a, lock) = crate::e2e::built_store()?;
    let ssh = servers::ssh_server()?;
    let repo = ssh.dir.join("repos").join("seed");
    crate::e2e::remove_tree(&repo);
    std::fs::create_dir_all(&repo)?;
    let https = servers::https_fixture(&repo)?;
    let work = crate::target_tmpdir().join("share-e2e");
    crate::e2e::remove_tree(&work);
    std::fs::create_dir_all(work.join("keys"))?;
    let spec = work.join("nginx-prod");
    crate::e2e::copy_tree(&crate::root().join("examples/nginx-prod"), &spec)?;
    let mut e = Env {
        work: work.clone(),
        spec,
        repo: repo.clone(),
        https_url: https.url.clone(),
        ssh_options: ssh.ssh_options().join(" "),
        store_a: store_a.to_path_buf(),
        lock: lock.to_path_buf(),
    };
    run(buildit(&e).args(["key", "generate", "mysuperbinhost-1", "--dir", "keys"]))?;
    let port = https.url.rsplit(':').next().unwrap_or_default().to_string();
    // The seed's block, with loopback locations: upload over ssh, download over https.
    let config = format!(
        "---\nrepository:\n  name: mysuperbinhost\n  upload-type: ssh\n  upload-path: ssh://{user}@127.0.0.1:{sport}{repo}\n  download-type: https\n  download-path: 127.0.0.1:{port}\n  ca-file: {ca}\n  ssh-identity: {id}\nsigning-key: keys/mysuperbinhost-1.secret\ntrusted-keys:\n  - keys/mysuperbinhost-1.pub\n",
        user = ssh.user,
        sport = ssh.port,
        repo = repo.display(),
        ca = https.ca_pem.display(),
        id = ssh.identity_path.display(),
    );
    std::fs::write(work.join(".buildit-config.yaml"), config)?;
    e.work = work;
    Ok(e)
}

/// `buildit nginx-prod/ --discover=…,push=True` (the seed's command) in `store`.
fn seed_command(e: &Env, spec: &Path, store: &Path, extra: &[&str]) -> Result<Output, Failed> {
    let discover = format!("--discover={},push=True", e.https_url);
    run(buildit(e)
        .arg(format!("{}/", spec.display()))
        .arg(discover)
        .arg("--store-root")
        .arg(store)
        .arg("--debian-lock")
        .arg(&e.lock)
        .arg("--no-out-link")
        .args(extra))
}

/// The JSON events of `--json` on stderr.
fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn content_hash(store: &Path, path: &str) -> Result<String, Failed> {
    let out = Command::new(crate::buildit_bin())
        .args(["store", "path-info", "--json", "--store-root"])
        .arg(store)
        .arg(path)
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("path-info {path}: {e}: {}", stderr(&out)))?;
    v[0]["content_hash"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no content hash for {path}: {v}").into())
}

fn expect_lines(text: &str, lines: &[&str]) -> R {
    let mut at = 0usize;
    for want in lines {
        match text[at..].find(want) {
            Some(i) => at += i + want.len(),
            None => return Err(format!("the transcript lacks {want:?} (in order):\n{text}").into()),
        }
    }
    Ok(())
}

fn seed_workflow() -> R {
    let e = env()?;
    // store A pushes everything it built for the example
    let out = seed_command(e, &e.spec, &e.store_a, &[])?;
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    expect_lines(
        &stderr(&out),
        &[
            "Building Sysadmin42/nginx-production-1.22.1-p1",
            "Processing package from './pkgs/nginx' for linux/amd64.",
            "HASH: ",
            "Uploading packages to 'mysuperbinhost' [OK]",
            "Uploading container spec and image(s) to 'mysuperbinhost' [OK]",
        ],
    )?;
    let records = std::fs::read_dir(&e.repo)?
        .filter_map(|d| d.ok())
        .filter(|d| d.file_name().to_string_lossy().ends_with(".info"))
        .count();
    if records < 20 {
        return Err(format!("only {records} records in the repository after the push").into());
    }
    // a fresh store B with only the configuration and the public key builds nothing
    let store_b = e.work.join("store-b");
    crate::e2e::remove_tree(&store_b);
    let out = seed_command(e, &e.spec, &store_b, &["--json"])?;
    let image_b = String::from_utf8_lossy(&out.stdout).to_string();
    let got: Value = serde_json::from_str(&image_b)?;
    let outputs = got["outputs"].as_array().cloned().unwrap_or_default();
    if outputs.first().and_then(Value::as_str) != Some(image.as_str()) {
        return Err(format!("store B made {outputs:?}, store A {image}").into());
    }
    let evs = events(&out);
    let started: Vec<&Value> = evs.iter().filter(|v| v["event"] == "started").collect();
    if !started.is_empty() {
        return Err(format!("store B built {started:?}").into());
    }
    let notes: Vec<&str> = evs
        .iter()
        .filter(|v| v["event"] == "note")
        .filter_map(|v| v["message"].as_str())
        .collect();
    if !notes.iter().any(|n| n.contains("in a known location")) {
        return Err(format!("no substitution note in {notes:?}").into());
    }
    if content_hash(&store_b, &image)? != content_hash(&e.store_a, &image)? {
        return Err("the substituted image differs from store A's".into());
    }
    run(buildit(e)
        .args(["store", "verify", "--check-contents", "--store-root"])
        .arg(&store_b))?;
    // pushing the unchanged image again sends only existence checks
    let out = seed_command(e, &e.spec, &e.store_a, &["--json"])?;
    let reports: Vec<Value> = events(&out)
        .into_iter()
        .filter(|v| v["event"] == "upload-report")
        .collect();
    if reports.is_empty() {
        return Err(format!("no upload report:\n{}", stderr(&out)).into());
    }
    for r in &reports {
        if r["uploaded"] != 0 || r["requests"] != r["skipped"] {
            return Err(format!("a no-op push sent more than existence checks: {r}").into());
        }
    }
    // a changed spec (another page): the image is not in any repository, its packages are
    let changed = e.work.join("nginx-prod-changed");
    crate::e2e::remove_tree(&changed);
    crate::e2e::copy_tree(&e.spec, &changed)?;
    std::fs::write(
        changed.join("files/html/index.html"),
        "<p>changed for the sharing trial</p>\n",
    )?;
    let out = seed_command(e, &changed, &e.store_a, &[])?;
    expect_lines(
        &stderr(&out),
        &[
            "Building Sysadmin42/nginx-production-1.22.1-p1",
            "HASH: ",
            "Can't find ",
            " in any known location...",
            "Defaulting to local build... [OK]",
            "Uploading packages to 'mysuperbinhost' [OK]",
            "Packaging Sysadmin42/nginx-production-1.22.1-p1 as OCI image... [OK]",
            "Uploading container spec and image(s) to 'mysuperbinhost' [OK]",
        ],
    )?;
    Ok(())
}

fn sources_from_repository() -> R {
    let e = env()?;
    // the repository must hold the sources first: the workflow trial's push, or this one
    seed_command(e, &e.spec, &e.store_a, &[])?;
    let store_c = e.work.join("store-c");
    crate::e2e::remove_tree(&store_c);
    let dead = servers::free_port()?;
    let out = run(buildit(e)
        .env(
            "BUILDIT_MIRRORS",
            format!("debian=http://127.0.0.1:{dead}/debian;debian-security=http://127.0.0.1:{dead}/debian-security"),
        )
        .arg("build")
        .arg(&e.spec)
        .arg("--store-root")
        .arg(&store_c)
        .arg("--debian-lock")
        .arg(&e.lock)
        .arg("--no-out-link")
        .arg("--substitute-sources-only")
        .arg("--json"))?;
    let evs = events(&out);
    let built = evs.iter().filter(|v| v["event"] == "finished").count();
    let fetched = evs.iter().filter(|v| v["event"] == "substituted").count();
    if built == 0 || fetched == 0 {
        return Err(format!(
            "expected builds and substituted downloads, got {built} builds and {fetched} substitutions"
        )
        .into());
    }
    let image = String::from_utf8_lossy(&out.stdout).to_string();
    let got: Value = serde_json::from_str(&image)?;
    let path = got["outputs"][0].as_str().unwrap_or_default().to_string();
    if content_hash(&store_c, &path)? != content_hash(&e.store_a, &path)? {
        return Err("the image built from shared sources differs from store A's".into());
    }
    Ok(())
}

/// The nginx package's closure in store A (a few paths, some MiB).
fn nginx_path(e: &Env) -> Result<String, Failed> {
    let out = run(buildit(e)
        .args(["store", "path-info", "--json", "-r", "--store-root"])
        .arg(&e.store_a)
        .arg(e.store_a.join("..").join("result-a")))?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["path"].as_str())
        .find(|p| p.ends_with("-nginx-1.22.1"))
        .map(str::to_string)
        .ok_or_else(|| "no nginx in the image's closure".into())
}

fn copy_both_ways() -> R {
    let e = env()?;
    let nginx = nginx_path(e)?;
    let registry = servers::registry()?;
    for (i, to) in [
        format!("file://{}", e.work.join("copy-repo").display()),
        format!("oci://{registry}/buildit-share-copy"),
    ]
    .iter()
    .enumerate()
    {
        run(buildit(e)
            .args(["copy", "--to", to, "--store-root"])
            .arg(&e.store_a)
            .arg(&nginx))?;
        let fresh = e.work.join(format!("copy-store-{i}"));
        crate::e2e::remove_tree(&fresh);
        let out = run(buildit(e)
            .args(["copy", "--from", to, "--store-root"])
            .arg(&fresh)
            .arg(&nginx))?;
        if !String::from_utf8_lossy(&out.stdout).contains(&nginx) {
            return Err(format!("copy --from {to} printed {out:?}").into());
        }
        if content_hash(&fresh, &nginx)? != content_hash(&e.store_a, &nginx)? {
            return Err(format!("{nginx} differs after a round trip through {to}").into());
        }
    }
    Ok(())
}

fn copy_refuses_flipped_byte() -> R {
    let e = env()?;
    let nginx = nginx_path(e)?;
    let repo = e.work.join("flip-repo");
    crate::e2e::remove_tree(&repo);
    let url = format!("file://{}", repo.display());
    run(buildit(e)
        .args(["copy", "--to", &url, "--store-root"])
        .arg(&e.store_a)
        .arg(&nginx))?;
    let hash = nginx
        .trim_start_matches("/bld/store/")
        .split('-')
        .next()
        .unwrap_or_default()
        .to_string();
    let record: Value = serde_json::from_slice(&std::fs::read(repo.join(format!("{hash}.info")))?)?;
    let archive = repo.join(record["archive"].as_str().unwrap_or_default());
    let mut bytes = std::fs::read(&archive)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&archive, bytes)?;
    let fresh = e.work.join("flip-store");
    crate::e2e::remove_tree(&fresh);
    let out = Command::new(crate::buildit_bin())
        .current_dir(&e.work)
        .env("XDG_CONFIG_HOME", e.work.join("no-user-config"))
        .args(["copy", "--from", &url, "--store-root"])
        .arg(&fresh)
        .arg(&nginx)
        .output()?;
    let err = stderr(&out);
    if out.status.code() != Some(1) || !err.contains("buildit::share::") {
        return Err(format!(
            "a flipped byte was not refused clearly ({}):\n{err}",
            out.status
        )
        .into());
    }
    let listed = Command::new(crate::buildit_bin())
        .args(["store", "path-info", "--store-root"])
        .arg(&fresh)
        .arg(&nginx)
        .output()?;
    if listed.status.success() {
        return Err(format!("{nginx} was registered from a tampered archive").into());
    }
    Ok(())
}
