//! The configuration files (docs/config.md) through the real binary:
//!
//! - `config/fail/*.yaml`: `buildit config show` with `BUILDIT_CONFIG` naming the file exits 1
//!   with the code of its `# expect: CODE` line, the diagnostic at the YAML line (snapshot
//!   `.err`);
//! - `config/ok/*.yaml`: `buildit config show` prints the merged configuration with the file
//!   and line of every value (snapshot `.out`) and the same as JSON (snapshot `.json`);
//! - generated cases: the merge order of the system-independent files (the user's
//!   `$XDG_CONFIG_HOME/buildit/config.yaml`, then every `.buildit-config.yaml` from the
//!   repository root down), `BUILDIT_CONFIG` replacing them, the command line's `--discover`,
//!   the seed's block read the same way as printed and indented, a file over the size limit,
//!   a file others may write, and `--discover` refused with a bad option before anything is
//!   built.

use crate::cli::buildit;
use crate::{data, name_of, snapshot};
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `buildit config show ARGS` with `BUILDIT_CONFIG=config` (when given) and a home of its own.
fn show(config: Option<&Path>, home: &Path, args: &[&str], cwd: &Path) -> Result<Output, Failed> {
    let mut c: Command = buildit();
    c.args(["config", "show"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("BUILDIT_MIRRORS");
    match config {
        Some(f) => c.env("BUILDIT_CONFIG", f),
        None => c.env_remove("BUILDIT_CONFIG"),
    };
    c.output().map_err(|e| Failed::from(e.to_string()))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fail_trial(file: PathBuf) -> Trial {
    Trial::test(format!("config::fail::{}", name_of(&file)), move || {
        let src = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let want = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .ok_or("the first line must be `# expect: CODE`")?
            .trim()
            .to_string();
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let o = show(Some(&file), home.path(), &[], &data("config"))?;
        let err = text(&o.stderr);
        if o.status.code() != Some(1) {
            return Err(format!("expected exit 1, got {:?}\n{err}", o.status.code()).into());
        }
        if !o.stdout.is_empty() {
            return Err(format!("a refused configuration printed:\n{}", text(&o.stdout)).into());
        }
        if err.lines().next() != Some(want.as_str()) {
            return Err(format!("expected {want} first:\n{err}").into());
        }
        // the diagnostic shows the YAML line it is about
        if !err.contains(&format!("{}:", file.display())) && want != "buildit::config::too-large" {
            return Err(format!("the diagnostic does not point into the file:\n{err}").into());
        }
        snapshot(&file.with_extension("err"), &err).map_err(Failed::from)
    })
}

fn ok_trial(file: PathBuf) -> Trial {
    Trial::test(format!("config::ok::{}", name_of(&file)), move || {
        let home = tempfile::tempdir().map_err(|e| e.to_string())?;
        let o = show(Some(&file), home.path(), &[], &data("config"))?;
        if o.status.code() != Some(0) || !o.stderr.is_empty() {
            return Err(format!("config show failed:\n{}", text(&o.stderr)).into());
        }
        snapshot(&file.with_extension("out"), &text(&o.stdout))?;
        let j = show(Some(&file), home.path(), &["--json"], &data("config"))?;
        let v: serde_json::Value =
            serde_json::from_slice(&j.stdout).map_err(|e| format!("--json: {e}"))?;
        if v["files"][0].as_str() != Some(file.display().to_string().as_str()) {
            return Err(format!("--json names other files: {}", v["files"]).into());
        }
        snapshot(&file.with_extension("json"), &text(&j.stdout)).map_err(Failed::from)
    })
}

fn write(p: &Path, s: &str) -> Result<(), Failed> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(p, s).map_err(|e| Failed::from(e.to_string()))
}

/// The `from` of a JSON value as `FILE:LINE` (or its kind).
fn from(v: &serde_json::Value) -> String {
    match v["from"]["kind"].as_str() {
        Some("file") => format!(
            "{}:{}",
            v["from"]["file"].as_str().unwrap_or("?"),
            v["from"]["line"]
        ),
        Some(k) => k.to_string(),
        None => format!("no origin in {v}"),
    }
}

/// Files from the user's directory down to the spec directory, closer ones overriding
/// farther ones; a file above the repository root (`.git`) is not read.
fn merge_order() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    let t = t.path();
    let home = t.join("home");
    write(
        &home.join(".config/buildit/config.yaml"),
        "timeout: 11\nsubstitute: false\nrepository:\n  name: team\n  download-path: 127.0.0.1:1/user\nmirrors:\n  gnu: http://127.0.0.1:2/gnu\n",
    )?;
    write(&t.join(".buildit-config.yaml"), "timeout: 99\nbogus: 1\n")?;
    std::fs::create_dir_all(t.join("repo/.git")).map_err(|e| e.to_string())?;
    write(
        &t.join("repo/.buildit-config.yaml"),
        "timeout: 22\nrepositories:\n  - name: team\n    download-path: 127.0.0.1:1/repo\n  - name: other\n    priority: 70\n    download-path: 127.0.0.1:1/other\n",
    )?;
    write(
        &t.join("repo/spec/.buildit-config.yaml"),
        "timeout: 33\ndiscover: [other]\n",
    )?;
    let o = show(None, &home, &["--json", "spec"], &t.join("repo"))?;
    if o.status.code() != Some(0) {
        return Err(format!("config show failed:\n{}", text(&o.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    let repo = std::fs::canonicalize(t.join("repo")).map_err(|e| e.to_string())?;
    let files: Vec<&str> = v["files"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    let want = [
        home.join(".config/buildit/config.yaml"),
        repo.join(".buildit-config.yaml"),
        repo.join("spec/.buildit-config.yaml"),
    ];
    let want: Vec<String> = want.iter().map(|p| p.display().to_string()).collect();
    // /etc/buildit/config.yaml may come first on this machine
    if !files.ends_with(&want.iter().map(String::as_str).collect::<Vec<_>>()) {
        return Err(format!("files read: {files:?}, expected to end with {want:?}").into());
    }
    let spec_file = &want[2];
    let checks = [
        (
            v["timeout"]["value"] == 33,
            from(&v["timeout"]) == format!("{spec_file}:1"),
        ),
        (
            v["substitute"]["value"] == false,
            from(&v["substitute"]) == format!("{}:2", want[0]),
        ),
        (
            v["repositories"][0]["download"]["value"] == "https://127.0.0.1:1/repo",
            from(&v["repositories"][0]["download"]) == format!("{}:4", want[1]),
        ),
        (
            v["repositories"][1]["name"] == "other",
            from(&v["repositories"][1]["priority"]) == format!("{}:6", want[1]),
        ),
        (
            v["mirrors"]["gnu"]["value"][0] == "http://127.0.0.1:2/gnu",
            from(&v["mirrors"]["gnu"]) == format!("{}:7", want[0]),
        ),
        (
            v["discover"][0]["value"]["target"]["value"] == "other",
            from(&v["discover"][0]) == format!("{spec_file}:2"),
        ),
    ];
    for (i, (value, origin)) in checks.iter().enumerate() {
        if !value || !origin {
            return Err(
                format!("check {i} (value {value}, origin {origin}) failed:\n{v:#}").into(),
            );
        }
    }
    // the command line replaces discover:
    let o = show(
        None,
        &home,
        &[
            "--json",
            "spec",
            "--discover=team,push=True",
            "--discover",
            "127.0.0.1:3/x",
        ],
        &t.join("repo"),
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("{e}: {}", text(&o.stderr)))?;
    let d = &v["discover"];
    let ok = d.as_array().map(Vec::len) == Some(2)
        && d[0]["value"]["target"]["value"] == "team"
        && d[0]["value"]["push"] == true
        && from(&d[0]) == "command-line"
        && d[1]["value"]["target"]["value"] == "https://127.0.0.1:3/x"
        && d[1]["value"]["push"] == false;
    if !ok {
        return Err(format!("--discover: {d:#}").into());
    }
    // BUILDIT_CONFIG: that file alone
    write(&t.join("only.yaml"), "timeout: 44\n")?;
    let o = show(
        Some(&t.join("only.yaml")),
        &home,
        &["--json", "spec"],
        &t.join("repo"),
    )?;
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("{e}: {}", text(&o.stderr)))?;
    if v["timeout"]["value"] != 44 || v["repositories"].as_array().map(Vec::len) != Some(0) {
        return Err(format!("BUILDIT_CONFIG did not replace the other files:\n{v:#}").into());
    }
    // XDG_CONFIG_HOME moves the user's file
    let o = buildit()
        .args(["config", "show", "--json"])
        .current_dir(t.join("repo/spec"))
        .env("HOME", t.join("nowhere"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("BUILDIT_CONFIG")
        .output()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("{e}: {}", text(&o.stderr)))?;
    if v["substitute"]["value"] != false {
        return Err(format!("XDG_CONFIG_HOME's file was not read:\n{v:#}").into());
    }
    // without the repository root, the file above is read too, and it is wrong
    std::fs::remove_dir(t.join("repo/.git")).map_err(|e| e.to_string())?;
    let o = show(None, &home, &["spec"], &t.join("repo"))?;
    let err = text(&o.stderr);
    if o.status.code() != Some(1) || !err.starts_with("buildit::config::unknown-key") {
        return Err(format!("the file above the repository was not read:\n{err}").into());
    }
    Ok(())
}

/// The seed's block as printed (no indentation) and indented give the same repository.
fn seed_both_ways() -> Result<(), Failed> {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut repos = Vec::new();
    for name in ["seed-flat", "seed-indented"] {
        let f = data("config/ok").join(format!("{name}.yaml"));
        let o = show(Some(&f), home.path(), &["--json"], &data("config"))?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .map_err(|e| format!("{name}: {e}: {}", text(&o.stderr)))?;
        let r = &v["repositories"][0];
        repos.push((
            r["name"].clone(),
            r["download"]["value"].clone(),
            r["upload"]["value"].clone(),
        ));
    }
    let want = (
        serde_json::json!("mysuperbinhost"),
        serde_json::json!("https://mysuperbinhost.org/containers"),
        serde_json::json!("containers@mysuperbinhost.org/containers"),
    );
    if repos[0] != want || repos[1] != want {
        return Err(format!("{repos:?}").into());
    }
    Ok(())
}

/// A configuration file over the size limit is refused before it is parsed.
fn huge_file() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    let f = t.path().join("huge.yaml");
    let mut s = String::from("timeout: 1\n");
    while s.len() <= buildit_yaml::config::MAX_CONFIG_BYTES {
        s.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    write(&f, &s)?;
    let o = show(Some(&f), t.path(), &[], t.path())?;
    let err = text(&o.stderr);
    if o.status.code() != Some(1) || !err.starts_with("buildit::config::too-large") {
        return Err(format!("{:?}\n{err}", o.status.code()).into());
    }
    Ok(())
}

/// A project file every user may write is refused (it could add trusted keys).
fn writable_by_others() -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(t.path().join(".git")).map_err(|e| e.to_string())?;
    let f = t.path().join(".buildit-config.yaml");
    write(&f, "timeout: 1\n")?;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| e.to_string())?;
    let o = show(None, t.path(), &[], t.path())?;
    let err = text(&o.stderr);
    if o.status.code() != Some(1) || !err.starts_with("buildit::config::unsafe-file") {
        return Err(format!("{:?}\n{err}", o.status.code()).into());
    }
    Ok(())
}

/// `buildit realise … --discover=URL,bad=1` is refused, naming the option, before building.
fn discover_bad_option() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    let o = buildit()
        .args(["realise", "-E", "1", "--store-root"])
        .arg(t.path().join("store"))
        .arg("--discover=127.0.0.1:1/x,pussh=True")
        .current_dir(t.path())
        .env("BUILDIT_CONFIG", "/dev/null")
        .output()
        .map_err(|e| e.to_string())?;
    let err = text(&o.stderr);
    if o.status.code() != Some(1)
        || !err.starts_with("buildit::config::bad-discover")
        || !err.contains("did you mean `push`")
    {
        return Err(format!("{:?}\n{err}", o.status.code()).into());
    }
    Ok(())
}

/// `v` without its origins and its list of files.
fn values_only(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "from" && k.as_str() != "files")
                .map(|(k, v)| (k.clone(), values_only(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => a.iter().map(values_only).collect(),
        other => other.clone(),
    }
}

/// What `config show` prints is a configuration file that means the same.
fn show_reads_back() -> Result<(), Failed> {
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    for name in ["full", "seed-flat"] {
        let f = data("config/ok").join(format!("{name}.yaml"));
        let shown = show(Some(&f), t.path(), &[], &data("config"))?;
        let again = t.path().join(format!("{name}.yaml"));
        std::fs::write(&again, &shown.stdout).map_err(|e| e.to_string())?;
        let mut json = Vec::new();
        for file in [&f, &again] {
            let o = show(Some(file), t.path(), &["--json"], &data("config"))?;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                .map_err(|e| format!("{}: {e}: {}", file.display(), text(&o.stderr)))?;
            json.push(values_only(&v));
        }
        if json[0] != json[1] {
            return Err(format!(
                "{name}: the shown configuration reads back differently:\n{:#}\n{:#}",
                json[0], json[1]
            )
            .into());
        }
    }
    Ok(())
}

pub fn trials() -> Vec<Trial> {
    let (fails, fail_guard) = crate::corpus("config/fail", "yaml", 15);
    let (oks, ok_guard) = crate::corpus("config/ok", "yaml", 4);
    let mut v = vec![fail_guard, ok_guard];
    v.extend(fails.into_iter().map(fail_trial));
    v.extend(oks.into_iter().map(ok_trial));
    v.push(Trial::test("config::merge-order", merge_order));
    v.push(Trial::test("config::seed-both-ways", seed_both_ways));
    v.push(Trial::test("config::show-reads-back", show_reads_back));
    v.push(Trial::test("config::huge-file", huge_file));
    v.push(Trial::test(
        "config::writable-by-others",
        writable_by_others,
    ));
    v.push(Trial::test(
        "config::discover-bad-option",
        discover_bad_option,
    ));
    v
}
