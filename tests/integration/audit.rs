//! `buildit audit` through the real binary, against the crafted OSV set in
//! tests/data/audit/advisories: CVE-2023-44487 for nginx (upstream, by purl, ECOSYSTEM range),
//! DEBIAN-CVE-2099-0001 for openssl (libssl3's source package) and DEBIAN-CVE-2099-0002 for
//! glibc (libc6's), each fixed one Debian revision above what the committed lock pins, and
//! decoys that must not match (fixed in exactly the pinned version, another Debian release,
//! the binary package's name, listed versions that are not the set's, withdrawn, a range
//! ending before 1.22.1, a GIT range).
//!
//! Every audit runs on a fresh empty store with the committed lock: the trials check that only
//! derivations and sources were written (nothing built). Human output and SARIF are
//! snapshotted (tests/data/audit, store hashes and temporary paths replaced); JSON is asserted
//! field by field. `--update` downloads from a loopback HTTP server in the trial.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

type R = Result<(), Failed>;

pub fn trials() -> Vec<Trial> {
    let t = |name: &str, f: fn() -> R| Trial::test(format!("audit::{name}"), f);
    vec![
        t("finds_nginx_libssl3_and_libc6", finds_three),
        t("vex_suppresses_and_emit_vex_writes_openvex", vex_in_and_out),
        t("patch_fixes_suppresses_the_nginx_finding", patch_fixes),
        t("a_lock_at_fixed_versions_is_clean", fixed_lock_clean),
        t("the_locked_source_version_decides", source_version_decides),
        t("hostile_advisories_are_clear_errors", hostile),
        t("update_downloads_from_a_loopback_server", update_loopback),
        crate::gated(
            "audit::a_built_image_names_its_layers".into(),
            &["bwrap"],
            false,
            built_layers,
        ),
    ]
}

fn work(name: &str) -> Result<PathBuf, Failed> {
    let w = crate::target_tmpdir().join("audit").join(name);
    if w.exists() {
        std::fs::remove_dir_all(&w)?;
    }
    std::fs::create_dir_all(&w)?;
    Ok(w)
}

fn buildit(store: &Path) -> Command {
    let mut c = Command::new(crate::buildit_bin());
    c.stdin(Stdio::null())
        .current_dir(crate::root())
        .env_remove("BUILDIT_DEBIAN_LOCK")
        .env_remove("BUILDIT_STORE_ROOT")
        .env("NO_COLOR", "1")
        .arg("--store-root")
        .arg(store);
    c
}

fn output(cmd: &mut Command) -> Result<Output, Failed> {
    cmd.output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}").into())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run `cmd`, expecting exit status `code`.
fn run_expect(cmd: &mut Command, code: i32) -> Result<Output, Failed> {
    let out = output(cmd)?;
    if out.status.code() != Some(code) {
        return Err(format!(
            "{cmd:?}: exit {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

fn advisories() -> PathBuf {
    crate::data("audit/advisories")
}

fn example() -> PathBuf {
    crate::root().join("examples/nginx-prod")
}

/// `/bld/store/<hash>-` → `/bld/store/HASH-`, `dir` → `$WORK`.
fn normalized(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "$WORK");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("/bld/store/") {
        let after = &rest[i + 11..];
        out.push_str(&rest[..i + 11]);
        if after.len() > 32 && after.as_bytes()[32] == b'-' {
            out.push_str("HASH");
            rest = &after[32..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn snapshot(name: &str, text: &str) -> R {
    crate::snapshot(&crate::data("audit").join(name), text).map_err(Failed::from)
}

fn json(out: &Output) -> Result<Value, Failed> {
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("not JSON ({e}):\n{}", text(&out.stdout)).into())
}

/// Nothing but derivations and sources in the store: no built output (the outputs of the
/// closure are named after packages, Debian packages and the image).
fn nothing_built(store: &Path) -> R {
    let dir = store.join("store");
    let mut built = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        let base = name.get(33..).unwrap_or("");
        if name.ends_with(".drv") || name.starts_with('.') {
            continue;
        }
        if [
            "nginx-1.22.1",
            "zlib-",
            "pcre2-",
            "debian-",
            "sysroot",
            "nginx-production",
        ]
        .iter()
        .any(|p| base.starts_with(p))
            && !base.ends_with(".tar.gz")
            && !base.ends_with(".tar.bz2")
        {
            built.push(name);
        }
    }
    if built.is_empty() {
        Ok(())
    } else {
        Err(format!("audit built store paths: {built:?}").into())
    }
}

/// (id, package, installed, fixed, severity) of each finding that counts.
fn findings(v: &Value) -> Vec<(String, String, String, String, String)> {
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            (
                s("id"),
                s("package"),
                s("installed"),
                s("fixed"),
                s("severity"),
            )
        })
        .collect()
}

fn the_three() -> Vec<(String, String, String, String, String)> {
    [
        (
            "CVE-2099-0001",
            "libssl3",
            "3.0.22-1~deb12u2",
            "3.0.22-1~deb12u3",
            "critical",
        ),
        ("CVE-2023-44487", "nginx", "1.22.1", "1.25.3", "high"),
        (
            "CVE-2099-0002",
            "libc6",
            "2.36-9+deb12u14",
            "2.36-9+deb12u15",
            "medium",
        ),
    ]
    .iter()
    .map(|(a, b, c, d, e)| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            d.to_string(),
            e.to_string(),
        )
    })
    .collect()
}

/// The committed lock pins what the crafted advisories are written against.
fn lock_pins_what_the_data_assumes() -> R {
    let lock = std::fs::read_to_string(crate::root().join("stdlib/debian/bookworm.lock"))?;
    for (name, version) in [
        ("libssl3", "3.0.22-1~deb12u2"),
        ("libc6", "2.36-9+deb12u14"),
    ] {
        let block = format!("name = \"{name}\"\nversion = \"{version}\"\n");
        if !lock.contains(&block) {
            return Err(format!(
                "stdlib/debian/bookworm.lock no longer pins {name} {version}: move the fixed versions in tests/data/audit/advisories/debian.jsonl (and this list) one revision above the new pins"
            )
            .into());
        }
    }
    Ok(())
}

fn finds_three() -> R {
    lock_pins_what_the_data_assumes()?;
    let w = work("three")?;
    let store = w.join("store");
    let audit = |extra: &[&str], code: i32| {
        run_expect(
            buildit(&store)
                .arg("audit")
                .arg("--advisories")
                .arg(advisories())
                .args(extra)
                .arg(example()),
            code,
        )
    };
    let out = audit(&[], 0)?;
    snapshot("nginx-prod.txt", &normalized(&text(&out.stdout), &w))?;
    nothing_built(&store)?;
    let v = json(&audit(&["--json"], 0)?)?;
    let got = findings(&v);
    if got != the_three() {
        return Err(format!("findings: {got:?}\nexpected {:?}", the_three()).into());
    }
    let libssl3 = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["package"] == "libssl3"))
        .ok_or("no libssl3 finding")?;
    if libssl3["source"] != "openssl 3.0.22-1~deb12u2"
        || libssl3["osv_id"] != "DEBIAN-CVE-2099-0001"
    {
        return Err(format!("libssl3's finding: {libssl3}").into());
    }
    if !v["suppressed"].as_array().is_some_and(Vec::is_empty) {
        return Err(format!("suppressed: {}", v["suppressed"]).into());
    }
    let sarif = json(&audit(&["--sarif"], 0)?)?;
    if sarif["version"] != "2.1.0"
        || sarif["runs"][0]["results"].as_array().map(Vec::len) != Some(3)
    {
        return Err(format!("SARIF: {sarif}").into());
    }
    let pretty = serde_json::to_string_pretty(&sarif)?;
    snapshot("nginx-prod.sarif.json", &(normalized(&pretty, &w) + "\n"))?;
    // --fail-on: critical (libssl3) reaches every level
    audit(&["--fail-on", "critical"], 1)?;
    audit(&["--fail-on", "low"], 1)?;
    Ok(())
}

fn vex_in_and_out() -> R {
    let w = work("vex")?;
    let store = w.join("store");
    let emitted = w.join("out.vex.json");
    let out = run_expect(
        buildit(&store)
            .arg("audit")
            .arg("--advisories")
            .arg(advisories())
            .arg("--vex")
            .arg(crate::data("audit/triage.vex.json"))
            .arg("--emit-vex")
            .arg(&emitted)
            .arg(example()),
        0,
    )?;
    let human = text(&out.stdout);
    snapshot("nginx-prod-vex.txt", &normalized(&human, &w))?;
    if !human.contains("CVE-2099-0002 in libc6 2.36-9+deb12u14: not_affected: vulnerable_code_not_in_execute_path: nginx never calls the affected resolver function (vex)") {
        return Err(format!("the suppression and its reason are not shown:\n{human}").into());
    }
    let doc: Value = serde_json::from_slice(&std::fs::read(&emitted)?)?;
    if doc["@context"] != "https://openvex.dev/ns/v0.2.0" {
        return Err(format!("not OpenVEX: {doc}").into());
    }
    let mut statuses: Vec<(String, String)> = doc["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["vulnerability"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    statuses.sort();
    let want = [
        ("CVE-2023-44487", "affected"),
        ("CVE-2099-0001", "affected"),
        ("CVE-2099-0002", "not_affected"),
    ];
    if statuses
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect::<Vec<_>>()
        != want
    {
        return Err(format!("emitted statements: {statuses:?}").into());
    }
    // the emitted document, read back, suppresses what the triage suppressed
    let again = run_expect(
        buildit(&store)
            .arg("audit")
            .arg("--json")
            .arg("--advisories")
            .arg(advisories())
            .arg("--vex")
            .arg(&emitted)
            .arg(example()),
        0,
    )?;
    let v = json(&again)?;
    if v["findings"].as_array().map(Vec::len) != Some(2)
        || v["suppressed"][0]["id"] != "CVE-2099-0002"
    {
        return Err(format!("the emitted VEX read back: {v}").into());
    }
    Ok(())
}

/// A copy of examples/nginx-prod whose patch declares CVE-2023-44487 fixed.
fn patched_example(w: &Path, fixes: &str) -> Result<PathBuf, Failed> {
    let dir = w.join("nginx-prod");
    copy_tree(&example(), &dir)?;
    let pkg = dir.join("pkgs/nginx/pkg.yaml");
    let text = std::fs::read_to_string(&pkg)?;
    let line =
        "  patches/server-header.patch: \"Announce the production build in the Server header\"\n";
    if !text.contains(line) {
        return Err(format!("examples/nginx-prod/pkgs/nginx/pkg.yaml has no line {line:?}").into());
    }
    let new = text.replace(
        line,
        &format!("  patches/server-header.patch:\n    description: \"Announce the production build in the Server header\"\n    fixes: {fixes}\n"),
    );
    std::fs::write(&pkg, new)?;
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> R {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

fn patch_fixes() -> R {
    let w = work("patch")?;
    let store = w.join("store");
    let dir = patched_example(&w, "[CVE-2023-44487]")?;
    let out = run_expect(
        buildit(&store)
            .arg("audit")
            .arg("--json")
            .arg("--advisories")
            .arg(advisories())
            .arg(&dir),
        0,
    )?;
    let v = json(&out)?;
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["id"].as_str())
        .collect();
    let sup = &v["suppressed"][0];
    if ids != ["CVE-2099-0001", "CVE-2099-0002"]
        || sup["id"] != "CVE-2023-44487"
        || sup["suppressed"]["by"] != "patch"
        || sup["suppressed"]["reason"]
            != "the patch patches/server-header.patch fixes CVE-2023-44487 (pkg.yaml `fixes:`)"
    {
        return Err(format!("with the patch's fixes: {v}").into());
    }
    // the compiled program carries it in the package's meta, nowhere near the derivation
    let compiled = run_expect(buildit(&store).arg("compile").arg(&dir), 0)?;
    let c = text(&compiled.stdout);
    if !c.contains("fixes = ((old.meta or { }).fixes or { }) // { \"CVE-2023-44487\" = \"patches/server-header.patch\"; };") {
        return Err(format!("compiled:\n{c}").into());
    }
    // a malformed id is a diagnostic at its YAML line
    let bad = patched_example(&work("patch-bad")?, "[\"not an id\"]")?;
    let out = run_expect(
        buildit(&store)
            .arg("audit")
            .arg("--advisories")
            .arg(advisories())
            .arg(&bad),
        1,
    )?;
    let err = text(&out.stderr);
    if !err.contains("buildit::yaml::bad-advisory-id") || !err.contains("pkg.yaml") {
        return Err(format!("a malformed fixes id: {err}").into());
    }
    Ok(())
}

fn fixed_lock_clean() -> R {
    lock_pins_what_the_data_assumes()?;
    let w = work("fixed-lock")?;
    let store = w.join("store");
    let mut lock = std::fs::read_to_string(crate::root().join("stdlib/debian/bookworm.lock"))?;
    for (name, old, new) in [
        ("libssl3", "3.0.22-1~deb12u2", "3.0.22-1~deb12u3"),
        ("libc6", "2.36-9+deb12u14", "2.36-9+deb12u15"),
    ] {
        lock = lock.replace(
            &format!("name = \"{name}\"\nversion = \"{old}\"\n"),
            &format!("name = \"{name}\"\nversion = \"{new}\"\n"),
        );
    }
    let lock_path = w.join("fixed.lock");
    std::fs::write(&lock_path, lock)?;
    let dir = patched_example(&w, "[CVE-2023-44487]")?;
    let out = run_expect(
        buildit(&store)
            .arg("--debian-lock")
            .arg(&lock_path)
            .arg("audit")
            .arg("--fail-on")
            .arg("unknown")
            .arg("--advisories")
            .arg(advisories())
            .arg(&dir),
        0,
    )?;
    let human = text(&out.stdout);
    if !human.contains(": 0 findings in ") {
        return Err(format!("not clean with the fixed lock:\n{human}").into());
    }
    // the same lock without the patch's fixes: the nginx finding alone
    let v = json(&run_expect(
        buildit(&store)
            .arg("--debian-lock")
            .arg(&lock_path)
            .arg("audit")
            .arg("--json")
            .arg("--advisories")
            .arg(advisories())
            .arg(example()),
        0,
    )?)?;
    let got: Vec<String> = findings(&v).into_iter().map(|f| f.0).collect();
    if got != ["CVE-2023-44487"] {
        return Err(format!("with the fixed lock alone: {got:?}").into());
    }
    nothing_built(&store)
}

/// A lock recording source versions apart from the binary versions (`source_version`, as a
/// lock made from a `Source: NAME (VERSION)` field has): libc6's binary version is the
/// affected one but its source is fixed, libssl3's binary version looks fixed but its source
/// is not. Debian's advisories go by the source version, and the SBOM's purl names it.
fn source_version_decides() -> R {
    lock_pins_what_the_data_assumes()?;
    let w = work("source-version")?;
    let store = w.join("store");
    let mut lock = std::fs::read_to_string(crate::root().join("stdlib/debian/bookworm.lock"))?;
    for (name, old, binary, source) in [
        (
            "libssl3",
            "3.0.22-1~deb12u2",
            "3.0.22-1~deb12u3",
            "3.0.22-1~deb12u2",
        ),
        (
            "libc6",
            "2.36-9+deb12u14",
            "2.36-9+deb12u14",
            "2.36-9+deb12u15",
        ),
    ] {
        let from = format!("name = \"{name}\"\nversion = \"{old}\"\n");
        let at = lock.find(&from).ok_or(format!("no {name} in the lock"))?;
        let source_line = lock[at..]
            .find("source = ")
            .and_then(|i| lock[at + i..].find('\n').map(|j| at + i + j + 1))
            .ok_or("no source line")?;
        lock.insert_str(source_line, &format!("source_version = \"{source}\"\n"));
        lock = lock.replace(
            &from,
            &format!("name = \"{name}\"\nversion = \"{binary}\"\n"),
        );
    }
    let lock_path = w.join("source-versions.lock");
    std::fs::write(&lock_path, &lock)?;
    let v = json(&run_expect(
        buildit(&store)
            .arg("--debian-lock")
            .arg(&lock_path)
            .arg("audit")
            .arg("--json")
            .arg("--advisories")
            .arg(advisories())
            .arg(example()),
        0,
    )?)?;
    let got: Vec<(String, String)> = findings(&v).into_iter().map(|f| (f.0, f.1)).collect();
    let libssl3 = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["package"] == "libssl3"));
    if got
        != [
            ("CVE-2099-0001".to_string(), "libssl3".to_string()),
            ("CVE-2023-44487".to_string(), "nginx".to_string()),
        ]
        || libssl3.map(|f| f["source"].clone()) != Some(Value::from("openssl 3.0.22-1~deb12u2"))
        || libssl3.map(|f| f["installed"].clone()) != Some(Value::from("3.0.22-1~deb12u3"))
    {
        return Err(format!("audit with recorded source versions: {got:?}\n{v:#}").into());
    }
    // the SBOM names the source package and its version in the purl's `upstream`
    let o = run_expect(
        buildit(&store)
            .arg("--debian-lock")
            .arg(&lock_path)
            .args(["sbom", "--format", "cyclonedx"])
            .arg(example().join("pkgs/nginx")),
        0,
    )?;
    let doc: Value = serde_json::from_slice(&o.stdout)?;
    let purl = |name: &str| {
        doc["components"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .and_then(|c| c["purl"].as_str())
            .unwrap_or("")
            .to_string()
    };
    if !purl("libc6").ends_with("&upstream=glibc%402.36-9%2Bdeb12u15")
        || !purl("libssl3").ends_with("&upstream=openssl%403.0.22-1~deb12u2")
        || !purl("libgcc-s1").ends_with("&upstream=gcc-12")
    {
        return Err(format!(
            "purls: libc6 {}, libssl3 {}, libgcc-s1 {}",
            purl("libc6"),
            purl("libssl3"),
            purl("libgcc-s1")
        )
        .into());
    }
    nothing_built(&store)
}

fn hostile() -> R {
    let w = work("hostile")?;
    let store = w.join("store");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "huge.json",
            format!("{{\"id\":\"X\",\"summary\":\"{}\"}}", "a".repeat(9 << 20)).into_bytes(),
        ),
        (
            "malformed.json",
            b"{\"id\": \"X\", \"affected\": [".to_vec(),
        ),
        (
            "deep.json",
            format!(
                "{{\"id\":\"X\",\"database_specific\":{}{}}}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
            .into_bytes(),
        ),
        (
            "no-id.jsonl",
            b"{\"id\":\"A\"}\n{\"summary\":\"no id\"}\n".to_vec(),
        ),
        ("not-a-zip.zip", b"PK\x03\x04 truncated".to_vec()),
        ("notes.txt", b"not advisories".to_vec()),
    ];
    let mut report = String::new();
    for (name, bytes) in cases {
        let f = w.join(name);
        std::fs::write(&f, bytes)?;
        let t = std::time::Instant::now();
        let out = run_expect(
            buildit(&store)
                .arg("audit")
                .arg("--advisories")
                .arg(&f)
                .arg(example()),
            1,
        )?;
        let secs = t.elapsed().as_secs_f64();
        let err = text(&out.stderr);
        if err.contains("panicked") || err.contains("internal error") || secs > 20.0 {
            return Err(format!("{name}: {secs:.1} s\n{err}").into());
        }
        report.push_str(&format!("== {name}\n{}\n", normalized(&err, &w).trim_end()));
    }
    snapshot("hostile.txt", &report)
}

/// Serve `files` (name → bytes) over HTTP on loopback until `count` requests were answered;
/// a name not among them is answered 404.
fn serve(
    files: Vec<(String, Vec<u8>)>,
    count: usize,
) -> Result<(String, std::thread::JoinHandle<()>), Failed> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let h = std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = req
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            match files.iter().find(|(name, _)| *name == path) {
                Some((_, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    Ok((base, h))
}

fn update_loopback() -> R {
    let w = work("update")?;
    let store = w.join("store");
    let files: Vec<(String, Vec<u8>)> = ["debian.jsonl", "nginx-CVE-2023-44487.json"]
        .iter()
        .map(|n| Ok((n.to_string(), std::fs::read(advisories().join(n))?)))
        .collect::<Result<_, std::io::Error>>()?;
    let (base, server) = serve(files, 4)?;
    // nothing downloaded yet: a clear error naming --update
    let out = run_expect(buildit(&store).arg("audit").arg(example()), 1)?;
    if !text(&out.stderr).contains("buildit::audit::no-advisories") {
        return Err(format!("without advisories: {}", text(&out.stderr)).into());
    }
    let out = run_expect(
        buildit(&store)
            .arg("audit")
            .arg("--json")
            .arg("--update")
            .arg("--advisory-url")
            .arg(format!("{base}/debian.jsonl"))
            .arg("--advisory-url")
            .arg(format!("{base}/nginx-CVE-2023-44487.json"))
            .arg(example()),
        0,
    )?;
    let got = findings(&json(&out)?);
    if got != the_three() {
        return Err(format!("after --update: {got:?}").into());
    }
    // the cache serves the next audit without a download
    let again = run_expect(buildit(&store).arg("audit").arg("--json").arg(example()), 0)?;
    if findings(&json(&again)?) != the_three() {
        return Err("the downloaded cache does not serve the next audit".into());
    }
    let out = run_expect(
        buildit(&store)
            .arg("audit")
            .arg("--update")
            .arg("--advisory-url")
            .arg(format!("{base}/missing.zip")),
        1,
    )?;
    let err = text(&out.stderr);
    if !err.contains("buildit::audit::download") || !err.contains("404") {
        return Err(format!("a 404: {err}").into());
    }
    // the configuration's `audit: advisory-urls` when no --advisory-url is given
    let config = w.join("buildit-config.yaml");
    std::fs::write(
        &config,
        format!("audit:\n  advisory-urls: [{base}/debian.jsonl]\n"),
    )?;
    let out = run_expect(
        buildit(&store)
            .env("BUILDIT_CONFIG", &config)
            .arg("audit")
            .arg("--json")
            .arg("--update")
            .arg(example()),
        0,
    )?;
    let got: Vec<String> = findings(&json(&out)?).into_iter().map(|f| f.0).collect();
    if got != ["CVE-2099-0001", "CVE-2099-0002"] {
        return Err(format!("after --update from the configuration: {got:?}").into());
    }
    server.join().map_err(|_| "the loopback server panicked")?;
    Ok(())
}

fn built_layers() -> R {
    let (store, lock) = crate::e2e::built_store()?;
    let out = run_expect(
        buildit(store)
            .arg("--debian-lock")
            .arg(lock)
            .arg("audit")
            .arg("--json")
            .arg("--advisories")
            .arg(advisories())
            .arg(example()),
        0,
    )?;
    let v = json(&out)?;
    if v["image_built"] != true {
        return Err(format!("the fixture's image is not seen as built: {v}").into());
    }
    let nginx = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["package"] == "nginx"))
        .ok_or_else(|| format!("no nginx finding: {v}"))?;
    let layer = nginx["layers"][0].as_str().unwrap_or("");
    if !(layer.starts_with('#') && layer.contains(" sha256:")) {
        return Err(format!("nginx's layer: {nginx}").into());
    }
    // every Debian package of the image is in a layer too
    for p in v["packages"].as_array().into_iter().flatten() {
        if p["layers"].as_array().filter(|l| !l.is_empty()).is_none() {
            return Err(format!("a package without a layer: {p}").into());
        }
    }
    Ok(())
}
