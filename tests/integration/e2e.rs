//! End to end, through the real `buildit` binary: the README's main job
//! (`buildit build examples/nginx-prod`) with a freshly refreshed Debian lock, then what issues 6
//! and 7 ask of it.
//!
//! One process-wide fixture ([`fixture`]) refreshes the lock (`buildit debian lock --output
//! TMP` from the committed lock's roots, so CI does not go stale when Debian publishes a point
//! release) and builds the example once in a fresh store A (`--debian-lock TMP`). The trials
//! then check that a second fresh store B builds bit-identical paths and the same image digest,
//! that nginx from its package serves the page in its own network namespace, that the image
//! passes `skopeo copy` and runs under `umoci unpack` + `runc run` in its own netns, and that
//! the program `buildit compile` prints realises to the same image.
//!
//! The image runs as shipped: the runtime config is the one `umoci unpack` derives from the
//! image (its user, entrypoint and environment; umoci's default capabilities and mounts), and
//! the test changes only what a runtime operator decides and an image cannot declare: no
//! terminal (the container runs detached) and a network namespace of its own (umoci's default,
//! made sure of), which isolates the test's port 8080 from the host. What nginx needs is declared
//! by the image: it runs as 65534:65534 (`user` in container.yaml), listens on 8080 and writes
//! only the image's /tmp, so it needs no added capability, mount or privilege. Two cheaper trials check
//! `--debian-lock` itself and the "left the pool" error against a local HTTP mirror.
//!
//! The heavy trials need the tools `.ci/run` installs (bubblewrap, skopeo, umoci, runc,
//! busybox-static), and the runc trial root; without them they are ignored with the reason, and
//! under CI they fail naming what is missing. The builds run for root and for an ordinary user
//! alike (`scripts/test-unprivileged` runs them as one). The work directory is `$CARGO_TARGET_TMPDIR/e2e`,
//! emptied at the start of each run.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

type R = Result<(), Failed>;

/// The header the example's patch puts in every response.
const PATCHED_SERVER: &str = "Server: nginx/1.22.1 (buildit nginx-production)";
/// The example image's tag (container.yaml's `version`).
const TAG: &str = "1.22.1-p1";

fn bin() -> PathBuf {
    crate::buildit_bin()
}

fn example() -> PathBuf {
    crate::root().join("examples/nginx-prod")
}

/// A tool the trials run, found on `PATH` (see [`crate::tool_path`]).
fn tool(name: &str) -> PathBuf {
    crate::tool_path(name)
}

pub fn trials() -> Vec<Trial> {
    const BUILD: &[&str] = &["bwrap"];
    // The builds run for any caller (an ordinary user's sandbox is an unprivileged user
    // namespace); only runc needs root.
    let t = |name: &str, tools: &[&str], f: fn() -> R| {
        crate::gated(format!("e2e::{name}"), tools, false, f)
    };
    vec![
        Trial::test("e2e::debian_lock_flag_replaces_the_lock", lock_flag),
        Trial::test("e2e::left_pool_names_the_refresh_command", left_pool),
        t("refreshed_lock_keeps_the_roots", BUILD, refreshed_lock),
        t("fresh_store_bit_identical", BUILD, fresh_store_identical),
        t(
            "nginx_serves_in_own_netns",
            &["bwrap", "busybox"],
            nginx_netns,
        ),
        crate::gated(
            "e2e::image_runs_under_runc".to_string(),
            &["bwrap", "busybox", "skopeo", "umoci", "runc", "nsenter"],
            true,
            image_runc,
        ),
        t("compiled_bld_same_image", BUILD, compiled_same_image),
    ]
}

// ---------------------------------------------------------------------------------------------
// running buildit

/// Run a command; its output, or an error with both streams when it fails.
fn run(cmd: &mut Command) -> Result<Output, Failed> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr (tail)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 60)
        )
        .into());
    }
    Ok(out)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn buildit() -> Command {
    let mut c = Command::new(bin());
    c.stdin(Stdio::null())
        .env_remove("BUILDIT_DEBIAN_LOCK")
        .env_remove("BUILDIT_STORE_ROOT")
        .env_remove("BUILDIT_MIRRORS")
        .env("NO_COLOR", "1");
    c
}

/// `buildit build examples/nginx-prod` into the store at `store`; the image path (logical)
/// and stderr (the transcript).
fn build_example(
    work: &Path,
    store: &Path,
    lock: &Path,
    link: &str,
) -> Result<(String, String), Failed> {
    let out = run(buildit()
        .current_dir(work)
        .arg("build")
        .arg(example())
        .arg("--store-root")
        .arg(store)
        .arg("--debian-lock")
        .arg(lock)
        .args(["--out-link", link]))?;
    let image = stdout(&out);
    if !image.starts_with("/bld/store/") || !image.ends_with(&format!("-{TAG}-oci")) {
        return Err(
            format!("`buildit build` printed {image:?}, not the image's store path").into(),
        );
    }
    Ok((image, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// The physical location of the logical store path `p` in the store rooted at `store`.
fn physical(store: &Path, p: &str) -> PathBuf {
    store
        .join("store")
        .join(p.trim_start_matches("/bld/store/"))
}

/// The image derivation's spec (image.bld's JSON): found through the image's deriver.
fn image_spec(store: &Path, image: &str) -> Result<Value, Failed> {
    let info = run(buildit()
        .args(["store", "path-info", "--json", "--store-root"])
        .arg(store)
        .arg(image))?;
    let info: Value = serde_json::from_slice(&info.stdout)?;
    let deriver = find_key(&info, "deriver")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no deriver in path-info: {info}"))?
        .to_string();
    let drv: Value = serde_json::from_slice(&std::fs::read(physical(store, &deriver))?)?;
    let spec = drv["env"]["imageSpec"]
        .as_str()
        .ok_or_else(|| format!("{deriver} has no imageSpec"))?;
    Ok(serde_json::from_str(spec)?)
}

/// The first value under `key` anywhere in `v` (path-info's JSON is a list or a map).
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// the fixture: refresh the lock, build once in store A

struct Built {
    work: PathBuf,
    lock: PathBuf,
    store_a: PathBuf,
    /// the image's logical store path
    image: String,
    /// the nginx package (the image's only package)
    nginx: String,
    /// the Debian runtime trees laid out at / in the image (each a merged-/usr tree)
    runtime: Vec<String>,
}

static FIXTURE: OnceLock<Result<Built, String>> = OnceLock::new();

/// The committed Debian lock refreshed against the machine's current apt indexes (same roots),
/// made once per test run. Every test that builds real packages from Debian uses it, so CI
/// does not go stale when Debian publishes a point release and a pinned .deb leaves the pool.
pub fn refreshed_debian_lock() -> Result<&'static Path, Failed> {
    static LOCK: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LOCK.get_or_init(|| {
        let dir = crate::target_tmpdir().join("refreshed-lock");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lock = dir.join("bookworm.lock");
        std::fs::copy(crate::root().join("stdlib/debian/bookworm.lock"), &lock)
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        run(buildit().args(["debian", "lock", "--output"]).arg(&lock)).map_err(|e| {
            format!(
                "refreshing the Debian lock: {}",
                e.message().unwrap_or("failed")
            )
        })?;
        eprintln!(
            "tests: refreshed the Debian lock in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(lock)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(|e| Failed::from(e.clone()))
}

/// The Debian lock for tests that build real packages: the refreshed lock, or `None` (the
/// committed lock embedded in buildit, with a note printed once) when the refresh fails
/// outside CI, e.g. offline. Under CI a failed refresh is the trial's failure.
pub fn debian_lock_for_builds() -> Result<Option<&'static Path>, Failed> {
    match refreshed_debian_lock() {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if crate::in_ci() => Err(format!(
            "{} (under CI the committed lock is not used instead)",
            e.message().unwrap_or("refreshing the Debian lock failed")
        )
        .into()),
        Err(e) => {
            static NOTE: std::sync::Once = std::sync::Once::new();
            NOTE.call_once(|| {
                eprintln!(
                    "tests: using the committed Debian lock: {}",
                    e.message().unwrap_or("the refresh failed")
                );
            });
            Ok(None)
        }
    }
}

/// The fixture's store A (examples/nginx-prod built in it) and the Debian lock it was built
/// with: trials that build variants of the example there build only what differs.
pub fn built_store() -> Result<(&'static Path, &'static Path), Failed> {
    let b = fixture()?;
    Ok((&b.store_a, &b.lock))
}

fn fixture() -> Result<&'static Built, Failed> {
    FIXTURE
        .get_or_init(|| build_fixture().map_err(|e| format!("the E2E fixture failed: {e:?}")))
        .as_ref()
        .map_err(|e| Failed::from(e.clone()))
}

fn build_fixture() -> Result<Built, Failed> {
    let work = crate::target_tmpdir().join("e2e");
    remove_tree(&work);
    std::fs::create_dir_all(&work)?;
    let lock = refreshed_debian_lock()?.to_path_buf();
    let store_a = work.join("store-a");
    let t = Instant::now();
    let (image, _) = build_example(&work, &store_a, &lock, "result-a")?;
    eprintln!(
        "e2e: cold build of examples/nginx-prod (fetch, sysroot, build, image) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let spec = image_spec(&store_a, &image)?;
    let nginx = spec["packages"][0]
        .as_str()
        .filter(|p| p.ends_with("-nginx-1.22.1"))
        .ok_or_else(|| format!("the image's package is not nginx: {spec}"))?
        .to_string();
    // the Debian runtime trees the image lays out at / (merged /usr): the image derivation's
    // `debian-*` inputs (or, with an older image.bld, one tree synced at /usr)
    let mut runtime: Vec<String> = spec["files"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f["src"].as_str())
                .filter(|s| s.contains("-debian-runtime"))
                .map(|s| s.trim_end_matches("/usr").to_string())
                .collect()
        })
        .unwrap_or_default();
    let info = run(buildit()
        .args(["store", "path-info", "--json", "--store-root"])
        .arg(&store_a)
        .arg(&image))?;
    let info: Value = serde_json::from_slice(&info.stdout)?;
    let deriver = find_key(&info, "deriver")
        .and_then(Value::as_str)
        .ok_or("the image has no deriver")?
        .to_string();
    let drv: Value = serde_json::from_slice(&std::fs::read(physical(&store_a, &deriver))?)?;
    for input in drv["input_drvs"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
    {
        if input.contains("-debian-") {
            let d: Value = serde_json::from_slice(&std::fs::read(physical(&store_a, input))?)?;
            if let Some(out) = d["outputs"]["out"]["path"].as_str() {
                runtime.push(out.to_string());
            }
        }
    }
    Ok(Built {
        work,
        lock,
        store_a,
        image,
        nginx,
        runtime,
    })
}

/// Remove a work tree of an earlier run (store objects are read-only), ignoring failures.
pub(crate) fn remove_tree(p: &Path) {
    let _ = buildit_store::archive::remove_tree(p);
}

// ---------------------------------------------------------------------------------------------
// trials

/// `--debian-lock FILE` and `BUILDIT_DEBIAN_LOCK` replace the embedded lock (another suite
/// shows through `<buildit>`); a file that is not a lock is refused with a diagnostic.
fn lock_flag() -> R {
    let tmp = tempfile::tempdir()?;
    let lock = tmp.path().join("other.lock");
    std::fs::write(
        &lock,
        "version = 1\nsuite = \"trixie\"\narchitecture = \"amd64\"\nroots = [\"x\"]\n",
    )?;
    let expr = "(import <buildit>).debian.lock.suite";
    let store = tmp.path().join("store");
    let with_flag = run(buildit()
        .args(["eval", "--store-root"])
        .arg(&store)
        .arg("--debian-lock")
        .arg(&lock)
        .args(["-E", expr]))?;
    let with_env = run(buildit()
        .args(["eval", "--store-root"])
        .arg(&store)
        .env("BUILDIT_DEBIAN_LOCK", &lock)
        .args(["-E", expr]))?;
    let default = run(buildit()
        .args(["eval", "--store-root"])
        .arg(&store)
        .args(["-E", expr]))?;
    if stdout(&with_flag) != "\"trixie\"" || stdout(&with_env) != "\"trixie\"" {
        return Err(format!(
            "the replaced lock is not used: flag {:?}, env {:?}",
            stdout(&with_flag),
            stdout(&with_env)
        )
        .into());
    }
    if stdout(&default) != "\"bookworm\"" {
        return Err(format!("the embedded lock says {:?}", stdout(&default)).into());
    }
    std::fs::write(&lock, "this is = not [ a lock")?;
    let bad = buildit()
        .args(["eval", "--store-root"])
        .arg(&store)
        .arg("--debian-lock")
        .arg(&lock)
        .args(["-E", "1"])
        .output()?;
    let err = String::from_utf8_lossy(&bad.stderr);
    if bad.status.code() != Some(1) || !err.contains("buildit::debian::bad-lock") {
        return Err(format!("a broken lock must be refused: {bad:?}").into());
    }
    Ok(())
}

/// A tiny HTTP/1.1 server on 127.0.0.1: `GET /debian/<path>` answers the bytes in `files`,
/// everything else 404. Runs until the process ends.
fn serve(files: Vec<(String, Vec<u8>)>) -> Result<String, Failed> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req);
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let head = req.starts_with("HEAD ");
            let found = files
                .iter()
                .find(|(p, _)| format!("/debian/{p}") == path)
                .map(|(_, b)| b.clone());
            let (status, body) = match found {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b"not here\n".to_vec()),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if !head {
                let _ = conn.write_all(&body);
            }
        }
    });
    Ok(format!("http://{addr}/debian"))
}

/// A lock whose entry has left the mirror: the download fails with the "left the pool"
/// message, naming the refresh command for the lock in use (and not the embedded lock); the
/// entry the mirror still has is fetched (through `BUILDIT_MIRRORS`) and registered.
fn left_pool() -> R {
    use sha2::Digest;
    let tmp = tempfile::tempdir()?;
    let present = b"a stand-in .deb that the local mirror still serves\n".to_vec();
    let present_file = "pool/main/p/present/present_1.0-1_amd64.deb";
    let gone_file = "pool/main/g/gone/gone_1.0-1_amd64.deb";
    let mirror = serve(vec![(present_file.to_string(), present.clone())])?;
    let entry = |name: &str, file: &str, sha: &str| {
        format!(
            "[[package]]\nname = \"{name}\"\nversion = \"1.0-1\"\narchitecture = \"amd64\"\nsource = \"{name}\"\nmirror = \"debian\"\nfilename = \"{file}\"\nsize = 52\nsha256 = \"{sha}\"\ndepends = []\n\n"
        )
    };
    let lock = tmp.path().join("stale.lock");
    std::fs::write(
        &lock,
        format!(
            "version = 1\nsuite = \"bookworm\"\narchitecture = \"amd64\"\nroots = [\"gone\", \"present\"]\n\n{}{}",
            entry("gone", gone_file, &"0".repeat(64)),
            entry("present", present_file, &hex::encode(sha2::Sha256::digest(&present))),
        ),
    )?;
    let store = tmp.path().join("store");
    let out = buildit()
        .current_dir(tmp.path())
        .env("BUILDIT_MIRRORS", format!("debian={mirror}"))
        .args(["realise", "--keep-going", "--no-out-link", "--store-root"])
        .arg(&store)
        .arg("--debian-lock")
        .arg(&lock)
        .args([
            "-E",
            "let d = (import <buildit>).debian; in [ (d.deb \"present\") (d.deb \"gone\") ]",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = [
        format!("the pinned Debian file {gone_file} has left the pool"),
        format!("{mirror}/{gone_file}"),
        format!("buildit debian lock --output {}", lock.display()),
        "buildit::build::failed".to_string(),
    ];
    for e in &expected {
        if !err.contains(e.as_str()) {
            return Err(format!("the error does not say {e:?}:\n{err}").into());
        }
    }
    // with an override, only the lock in use is named as the one to refresh
    if err.contains("stdlib/debian/bookworm.lock") {
        return Err(
            format!("the error names the embedded lock, not the one in use:\n{err}").into(),
        );
    }
    if out.status.code() != Some(1) {
        return Err(format!("a failed download must exit 1: {:?}", out.status).into());
    }
    // the entry the mirror has was fetched and checked despite the failure (--keep-going)
    let fetched: Vec<PathBuf> = std::fs::read_dir(store.join("store"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-present_1.0-1_amd64.deb"))
        .collect();
    match fetched.as_slice() {
        [p] if std::fs::read(p)? == present => Ok(()),
        _ => Err(format!("the present .deb was not fetched: {fetched:?}\n{err}").into()),
    }
}

/// The refreshed lock is a lock for the same roots and suite as the committed one.
fn refreshed_lock() -> R {
    let f = fixture()?;
    let parse = |p: &Path| -> Result<buildit_debian::Lock, Failed> {
        Ok(buildit_debian::lock::parse_lock(&std::fs::read_to_string(
            p,
        )?)?)
    };
    let fresh = parse(&f.lock)?;
    let committed = parse(&crate::root().join("stdlib/debian/bookworm.lock"))?;
    if (&fresh.roots, &fresh.suite, &fresh.architecture)
        != (&committed.roots, &committed.suite, &committed.architecture)
    {
        return Err(format!(
            "the refreshed lock changed its header: {:?} {} {} vs {:?} {} {}",
            fresh.roots,
            fresh.suite,
            fresh.architecture,
            committed.roots,
            committed.suite,
            committed.architecture
        )
        .into());
    }
    let n = fresh.packages.len();
    if n < 50 {
        return Err(format!("the refreshed lock has only {n} packages").into());
    }
    Ok(())
}

/// Every file, directory and link of a tree, with its kind, mode and contents (sorted).
fn tree_listing(root: &Path) -> Result<Vec<(String, String)>, Failed> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(p: &Path, rel: &str, out: &mut Vec<(String, String)>) -> Result<(), Failed> {
        let m = std::fs::symlink_metadata(p)?;
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            out.push((
                rel.into(),
                format!("link {}", std::fs::read_link(p)?.display()),
            ));
        } else if m.is_dir() {
            out.push((rel.into(), format!("dir {mode:o}")));
            let mut names: Vec<_> = std::fs::read_dir(p)?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                walk(&p.join(&n), &format!("{rel}/{}", n.to_string_lossy()), out)?;
            }
        } else {
            let h = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(p)?));
            out.push((rel.into(), format!("file {mode:o} {h}")));
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

/// The non-`.drv` store paths of `store` (names), the fixed-output downloads separately.
fn store_outputs(store: &Path) -> Result<(Vec<String>, Vec<String>), Failed> {
    let mut built = Vec::new();
    let mut fetched = Vec::new();
    for e in std::fs::read_dir(store.join("store"))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".drv") || name.starts_with('.') {
            continue;
        }
        let drv: Value = serde_json::from_slice(&std::fs::read(e.path())?)
            .map_err(|err| format!("{name} is not a derivation: {err}"))?;
        let is_fetch = drv["builder"] == "builtin:fetchurl";
        if let Some(outs) = drv["outputs"].as_object() {
            for o in outs.values() {
                if let Some(p) = o["path"].as_str() {
                    let base = p.trim_start_matches("/bld/store/").to_string();
                    if !store.join("store").join(&base).exists() {
                        continue;
                    }
                    if is_fetch {
                        fetched.push(p.to_string());
                    } else {
                        built.push(base);
                    }
                }
            }
        }
    }
    built.sort();
    fetched.sort();
    Ok((built, fetched))
}

/// Issue 6 "built twice → bit-identical" and issue 7 "same spec, fresh store, same digest":
/// a second fresh store B (given A's fixed-output downloads through `buildit store export` /
/// `import`, and nothing else) rebuilds every derivation and gets the same store paths with
/// the same bytes, and the same image digest.
fn fresh_store_identical() -> R {
    let f = fixture()?;
    let store_b = f.work.join("store-b");
    remove_tree(&store_b);
    let (built_a, fetched) = store_outputs(&f.store_a)?;
    let export = f.work.join("downloads.export");
    let out = run(buildit()
        .args(["store", "export", "--no-closure", "--store-root"])
        .arg(&f.store_a)
        .args(&fetched))?;
    std::fs::write(&export, &out.stdout)?;
    let imported = run(buildit()
        .args(["store", "import", "--store-root"])
        .arg(&store_b)
        .stdin(std::fs::File::open(&export)?))?;
    if stdout(&imported).lines().count() != fetched.len() {
        return Err(format!(
            "imported {} of {} downloads",
            stdout(&imported).lines().count(),
            fetched.len()
        )
        .into());
    }
    let t = Instant::now();
    let (image_b, transcript) = build_example(&f.work, &store_b, &f.lock, "result-b")?;
    eprintln!(
        "e2e: second build in a fresh store (downloads imported) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if image_b != f.image {
        return Err(format!("image paths differ: A {} B {image_b}", f.image).into());
    }
    if !transcript.contains("built nginx-1.22.1") || !transcript.contains("built sysroot-") {
        return Err(format!(
            "store B did not rebuild nginx and the sysroot:\n{}",
            tail(&transcript, 40)
        )
        .into());
    }
    let (built_b, _) = store_outputs(&store_b)?;
    if built_b != built_a {
        return Err(format!("different outputs: A {built_a:?}\nB {built_b:?}").into());
    }
    for p in &built_a {
        let a = tree_listing(&f.store_a.join("store").join(p))?;
        let b = tree_listing(&store_b.join("store").join(p))?;
        if a != b {
            let diff: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(5).collect();
            return Err(format!("{p} differs between the stores: {diff:?}").into());
        }
    }
    let index = |s: &Path| std::fs::read(physical(s, &f.image).join("index.json"));
    let (ia, ib) = (index(&f.store_a)?, index(&store_b)?);
    if ia != ib {
        return Err("the image index.json differs".into());
    }
    eprintln!(
        "e2e: {} built paths bit-identical across two fresh stores; index.json sha256 {}",
        built_a.len(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&ia))
    );
    remove_tree(&store_b);
    Ok(())
}

/// The page and headers `busybox wget -S` got, split from its output.
fn check_response(what: &str, hdr: &str, body: &str) -> R {
    let page = std::fs::read_to_string(example().join("files/html/index.html"))?;
    if !hdr.contains("HTTP/1.1 200 OK") {
        return Err(format!("{what}: no 200 status:\n{hdr}").into());
    }
    if !hdr.contains(PATCHED_SERVER) {
        return Err(format!("{what}: no patched Server header:\n{hdr}").into());
    }
    if body != page {
        return Err(format!("{what}: body {body:?}, expected {page:?}").into());
    }
    Ok(())
}

/// nginx from its package, in a bwrap with its own network namespace: /usr is the Debian
/// runtime trees of the image (libc, libssl, ...), the store is store A, the config and page are the example's;
/// a client in the same namespace fetches the page on loopback.
fn nginx_netns() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(etc.join("group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let nginx = format!("{}/sbin/nginx", f.nginx);
    let script = format!(
        "{nginx} -e stderr -p /tmp/ -c /conf/nginx.conf -g 'daemon off; master_process off;' &\n\
         i=0\n\
         while [ $i -lt 100 ]; do\n\
           /client/busybox wget -q -S -O /tmp/body http://127.0.0.1:8080/ 2>/tmp/hdr && break\n\
           i=$((i+1)); /client/busybox usleep 100000\n\
         done\n\
         kill %1\n\
         /client/busybox cat /tmp/hdr; echo '@@body'; /client/busybox cat /tmp/body\n"
    );
    let busybox = tool("busybox");
    // /usr: links to every file of the Debian runtime trees (resolved inside the sandbox,
    // where store A is /bld/store)
    let usr = tmp.path().join("usr");
    std::fs::create_dir_all(&usr)?;
    for tree in &f.runtime {
        link_tree(
            &physical(&f.store_a, tree).join("usr"),
            &format!("{tree}/usr"),
            &usr,
        )?;
    }
    let out = run(Command::new(tool("bwrap"))
        .args(["--unshare-net", "--unshare-pid", "--die-with-parent"])
        .arg("--ro-bind")
        .arg(&usr)
        .arg("/usr")
        .args(["--symlink", "usr/lib", "/lib"])
        .args(["--symlink", "usr/lib64", "/lib64"])
        .args(["--symlink", "usr/bin", "/bin"])
        .args(["--symlink", "usr/sbin", "/sbin"])
        .arg("--ro-bind")
        .arg(f.store_a.join("store"))
        .arg("/bld/store")
        .arg("--ro-bind")
        .arg(etc.join("passwd"))
        .arg("/etc/passwd")
        .arg("--ro-bind")
        .arg(etc.join("group"))
        .arg("/etc/group")
        .arg("--ro-bind")
        .arg(example().join("files/nginx.conf"))
        .arg("/conf/nginx.conf")
        .arg("--ro-bind")
        .arg(example().join("files/html"))
        .arg("/srv/www")
        .arg("--ro-bind")
        .arg(&busybox)
        .arg("/client/busybox")
        .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
        .args(["/client/busybox", "sh", "-c", &script]))?;
    let text = stdout(&out);
    let (hdr, body) = text.split_once("@@body\n").ok_or_else(|| {
        format!(
            "no response:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    check_response("nginx in bwrap", hdr, &format!("{}\n", body.trim_end()))
}

/// Mirror the tree at `src` (whose path inside the sandbox is `logical`) into `dst`: real
/// directories, and a symlink to the logical path for everything else.
fn link_tree(src: &Path, logical: &str, dst: &Path) -> R {
    for e in std::fs::read_dir(src)?.flatten() {
        let name = e.file_name();
        let (s, d) = (e.path(), dst.join(&name));
        let l = format!("{logical}/{}", name.to_string_lossy());
        if e.file_type()?.is_dir() {
            std::fs::create_dir_all(&d)?;
            link_tree(&s, &l, &d)?;
        } else if std::fs::symlink_metadata(&d).is_err() {
            std::os::unix::fs::symlink(&l, &d)?;
        }
    }
    Ok(())
}

/// Stops and deletes a runc container when dropped.
struct Container {
    runc: PathBuf,
    state: PathBuf,
    id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &self.id])
            .output();
    }
}

/// The image: `skopeo copy oci:… oci:…` accepts it (checking every digest) and keeps its
/// manifest; `umoci unpack` + `runc run` starts nginx in its own network namespace, and a
/// client entering that namespace fetches the synced page with the patched header.
fn image_runc() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let image = physical(&f.store_a, &f.image);
    let copy = tmp.path().join("copy");
    run(Command::new(tool("skopeo")).args([
        "copy",
        "--quiet",
        &format!("oci:{}", image.display()),
        &format!("oci:{}:{TAG}", copy.display()),
    ]))?;
    let digest = |dir: &Path| -> Result<String, Failed> {
        let v: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
        let m = v["manifests"].as_array().ok_or("no manifests")?;
        if m.len() != 1 {
            return Err(format!("{} manifests in {}", m.len(), dir.display()).into());
        }
        Ok(m[0]["digest"].as_str().unwrap_or("").to_string())
    };
    if digest(&copy)? != digest(&image)? {
        return Err("skopeo's copy has another manifest digest".into());
    }
    let bundle = tmp.path().join("bundle");
    run(Command::new(tool("umoci")).args([
        "unpack",
        "--image",
        &format!("{}:{TAG}", copy.display()),
        &bundle.display().to_string(),
    ]))?;
    let cfg_path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
    let args = &cfg["process"]["args"];
    if args[0] != "/usr/sbin/nginx" {
        return Err(format!("the image's entrypoint is lost: {args}").into());
    }
    // the image declares its unprivileged user (container.yaml), and umoci carries it over
    let user = &cfg["process"]["user"];
    if user["uid"] != 65534 || user["gid"] != 65534 {
        return Err(format!("the image's user (65534:65534) is lost: {user}").into());
    }
    // Only what a runtime operator decides: runc runs the container detached, without a
    // terminal, and in a network namespace of its own (umoci's default; made sure of here).
    // Capabilities, mounts and the user stay exactly as umoci derived them from the image.
    cfg["process"]["terminal"] = Value::Bool(false);
    let ns = cfg["linux"]["namespaces"]
        .as_array_mut()
        .ok_or("no namespaces in the runc config")?;
    if !ns.iter().any(|n| n["type"] == "network") {
        ns.push(serde_json::json!({ "type": "network" }));
    }
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
    let runc = tool("runc");
    let state = tmp.path().join("runc-state");
    let ctr = Container {
        runc: runc.clone(),
        state: state.clone(),
        id: format!("buildit-e2e-{}", std::process::id()),
    };
    let log = tmp.path().join("nginx.log");
    run(Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg(&ctr.id)
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(tmp.path().join("nginx.err"))?))?;
    let st: Value = serde_json::from_slice(
        &run(Command::new(&runc)
            .arg("--root")
            .arg(&state)
            .args(["state", &ctr.id]))?
        .stdout,
    )?;
    let pid = st["pid"].as_u64().ok_or_else(|| format!("no pid: {st}"))?;
    let host_ns = std::fs::read_link("/proc/self/ns/net")?;
    let ctr_ns = std::fs::read_link(format!("/proc/{pid}/ns/net"))?;
    if host_ns == ctr_ns {
        return Err("the container shares the host's network namespace".into());
    }
    let busybox = tool("busybox");
    let mut last = String::new();
    for _ in 0..100 {
        let o = Command::new(tool("nsenter"))
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(&busybox)
            .args(["wget", "-q", "-S", "-O", "-", "http://127.0.0.1:8080/"])
            .output()?;
        if o.status.success() {
            return check_response(
                "nginx under runc",
                &String::from_utf8_lossy(&o.stderr),
                &String::from_utf8_lossy(&o.stdout),
            );
        }
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "nginx in the container never answered: {last}\nits output: {}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(tmp.path().join("nginx.err")).unwrap_or_default()
    )
    .into())
}

/// Issue 7: "the build evaluates exactly that text": the program `buildit compile` prints,
/// saved beside a copy of the spec and realised, is the same image.
fn compiled_same_image() -> R {
    let f = fixture()?;
    let tmp = tempfile::tempdir()?;
    let spec = tmp.path().join("nginx-prod");
    copy_tree(&example(), &spec)?;
    let text = run(buildit().arg("compile").arg(example()))?;
    std::fs::write(spec.join("x.bld"), &text.stdout)?;
    let t = Instant::now();
    let out = run(buildit()
        .current_dir(tmp.path())
        .args(["realise", "--no-out-link", "--store-root"])
        .arg(&f.store_a)
        .arg("--debian-lock")
        .arg(&f.lock)
        .arg(spec.join("x.bld")))?;
    eprintln!(
        "e2e: warm realise of the compiled program in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    if stdout(&out) != f.image {
        return Err(format!(
            "realising the compiled text gave {:?}, `buildit build` gave {}",
            stdout(&out),
            f.image
        )
        .into());
    }
    Ok(())
}

pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), Failed> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)?.flatten() {
        let p = e.path();
        let d = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&p, &d)?;
        } else {
            std::fs::copy(&p, &d)?;
        }
    }
    Ok(())
}
