//! The command-line conventions people expect of a Unix tool, through the real `buildit`
//! binary: a closed pipe ends it quietly, global options go before or after the command,
//! completions and man pages are generated, and every diagnostic code has the one style
//! `buildit::area::kebab-name`.

use crate::cli::buildit;
use crate::root;
use libtest_mimic::{Failed, Trial};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Output, Stdio};

/// Run `buildit ARGS` with its standard output a pipe whose reading end is closed before the
/// command writes: it must end as other tools do (killed by SIGPIPE, or exit 0), silently.
fn closed_pipe(name: &str, args: &'static [&'static str]) -> Trial {
    Trial::test(format!("conventions::closed-pipe::{name}"), move || {
        let store = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut child = buildit()
            .args(args)
            .env("BUILDIT_STORE_ROOT", store.path())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        drop(child.stdout.take());
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let quiet = out.status.success() || out.status.signal() == Some(libc::SIGPIPE);
        if !quiet || !stderr.is_empty() {
            return Err(format!(
                "`buildit {}` into a closed pipe: {:?}, stderr:\n{stderr}",
                args.join(" "),
                out.status
            )
            .into());
        }
        Ok(())
    })
}

fn closed_pipe_trials() -> Vec<Trial> {
    vec![
        closed_pipe("search", &["search"]),
        closed_pipe("eval", &["eval", "-E", "builtins.genList (x: x) 100000"]),
        closed_pipe(
            "eval-json",
            &["eval", "--json", "-E", "builtins.genList (x: x) 100000"],
        ),
        closed_pipe("compile", &["compile", "examples/nginx-prod"]),
        closed_pipe("check", &["check", "tests/data/cli/sample.bld"]),
        closed_pipe(
            "instantiate",
            &[
                "instantiate",
                "-E",
                "derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }",
            ],
        ),
        closed_pipe("help", &["--help"]),
        closed_pipe("search-json", &["search", "--json"]),
    ]
}

/// `buildit ARGS` in a fresh store (`BUILDIT_STORE_ROOT` unset) and directory.
fn run_in(dir: &Path, args: &[&str]) -> Result<Output, Failed> {
    buildit()
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| Failed::from(e.to_string()))
}

/// A failure showing the command's whole output.
fn failed(what: &str, out: &Output) -> Failed {
    format!(
        "{what}: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .into()
}

const DRV: &str = "derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }";

/// `--store-root` and the other global options are accepted before and after the command,
/// and `--store-root` takes effect in both places.
fn global_option_trials() -> Vec<Trial> {
    let store_root = |before: bool| {
        let name = if before { "before" } else { "after" };
        Trial::test(
            format!("conventions::store-root-{name}-the-command"),
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let store = dir.path().join("store-root");
                let store_arg = store.display().to_string();
                let mut args = vec!["instantiate", "-E", DRV];
                if before {
                    args.splice(0..0, ["--store-root", store_arg.as_str()]);
                } else {
                    args.extend(["--store-root", store_arg.as_str()]);
                }
                let out = run_in(dir.path(), &args)?;
                let printed = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() || !printed.trim_end().ends_with("-x.drv") {
                    return Err(failed("instantiate", &out));
                }
                let name = printed.trim_end().rsplit('/').next().unwrap_or_default();
                if !store.join("store").join(name).is_file() {
                    return Err(failed(
                        &format!("no {name} under {}", store.display()),
                        &out,
                    ));
                }
                Ok(())
            },
        )
    };
    let mut v = vec![store_root(true), store_root(false)];
    for flag in [
        "-q",
        "--quiet",
        "-v",
        "--verbose",
        "-L",
        "--print-build-logs",
    ] {
        v.push(Trial::test(
            format!("conventions::global-flag{flag}-before-and-after"),
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                for args in [[flag, "eval", "-E", "1 + 1"], ["eval", "-E", "1 + 1", flag]] {
                    let out = run_in(dir.path(), &args)?;
                    if !out.status.success() || String::from_utf8_lossy(&out.stdout) != "2\n" {
                        return Err(failed(&args.join(" "), &out));
                    }
                }
                Ok(())
            },
        ));
    }
    v.push(Trial::test(
        "conventions::quiet-and-verbose-conflict",
        || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let out = run_in(dir.path(), &["-q", "-v", "eval", "-E", "1"])?;
            if out.status.code() != Some(1) {
                return Err(failed("-q -v", &out));
            }
            Ok(())
        },
    ));
    v
}

/// Completion scripts for three shells and the manual pages, generated from the grammar.
fn generated_trials() -> Vec<Trial> {
    let mut v = Vec::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef buildit"),
        ("fish", "complete -c buildit"),
    ] {
        v.push(Trial::test(
            format!("conventions::completions-{shell}"),
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let out = run_in(dir.path(), &["completions", shell])?;
                let text = String::from_utf8_lossy(&out.stdout);
                // every command is offered
                let missing: Vec<&str> = ["eval", "realise", "store", "completions", "man"]
                    .into_iter()
                    .filter(|c| !text.contains(c))
                    .collect();
                if !out.status.success() || !text.contains(marker) || !missing.is_empty() {
                    return Err(failed(
                        &format!("completions {shell} (missing: {missing:?})"),
                        &out,
                    ));
                }
                Ok(())
            },
        ));
    }
    v.push(Trial::test("conventions::man-pages", || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = run_in(dir.path(), &["man", "pages"])?;
        if !out.status.success() {
            return Err(failed("man pages", &out));
        }
        for page in [
            "buildit.1",
            "buildit-eval.1",
            "buildit-realise.1",
            "buildit-store-gc.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join("pages").join(page))
                .map_err(|e| failed(&format!("{page}: {e}"), &out))?;
            if !text.contains(".TH") {
                return Err(failed(&format!("{page} is not a man page"), &out));
            }
        }
        Ok(())
    }));
    v.push(closed_pipe("completions", &["completions", "bash"]));
    v
}

/// Every diagnostic code written in the source, the docs and the test snapshots has the one
/// style `buildit::area::kebab-name`: lower-case words joined by `-`, never `_`.
fn error_code_style() -> Trial {
    Trial::test("conventions::error-codes-are-kebab-case", || {
        let root = root();
        let mut files = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || matches!(name.as_str(), "target" | "fuzz") {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if p.starts_with(root.join("tests/data"))
                    || p.extension().is_some_and(|x| x == "rs" || x == "md")
                {
                    files.push(p);
                }
            }
        }
        let mut bad = Vec::new();
        let mut seen = 0;
        for f in &files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                for code in codes_in(line) {
                    seen += 1;
                    if !is_kebab_code(code) {
                        bad.push(format!("{}:{}: {code}", f.display(), n + 1));
                    }
                }
            }
        }
        if seen < 100 {
            return Err(format!("only {seen} codes found: the scan is broken").into());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "codes not in the style buildit::area::kebab-name:\n{}",
                bad.join("\n")
            )
            .into())
        }
    })
}

/// The `buildit::…` words of a line (a code, or an area prefix ending in `::`).
fn codes_in(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("buildit::") {
        let tail = &rest[i..];
        let len = tail
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')))
            .map_or(tail.len(), |(j, _)| j);
        // a single `:` after a code ends a sentence ("buildit::type::mismatch: …")
        let code = &tail[..len];
        let code = match code.strip_suffix(':') {
            Some(c) if !c.ends_with(':') => c,
            _ => code,
        };
        out.push(code);
        rest = &tail[len..];
    }
    out
}

/// `buildit::` then at most two `::`-separated words of lower-case letters and digits joined
/// by single `-` (a trailing `::` marks an area prefix).
fn is_kebab_code(code: &str) -> bool {
    let Some(path) = code.strip_prefix("buildit::") else {
        return false;
    };
    let path = path.strip_suffix("::").unwrap_or(path);
    let words: Vec<&str> = path.split("::").collect();
    words.len() <= 2
        && words.iter().all(|w| {
            w.is_empty() && words.len() == 1
                || (!w.is_empty()
                    && w.split('-').all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    }))
        })
}

/// Every line of `text` is a JSON object; the objects.
fn json_lines(text: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(serde_json::Value::is_object)
                .ok_or_else(|| format!("not a JSON object: {l}"))
        })
        .collect()
}

/// A derivation whose builder does not exist in the sandbox: it fails at once.
const FAILING: &str = "derivation { name = \"fails\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"exit 3\" ]; }";

/// `buildit realise [EXTRA] --no-out-link -E FAILING` in a fresh store and directory.
fn build_failing(extra: &[&str]) -> Result<Output, Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut args = vec![
        "--store-root",
        "s",
        "realise",
        "--no-out-link",
        "-E",
        FAILING,
    ];
    args.extend(extra);
    run_in(dir.path(), &args)
}

/// `--json`: stderr holds only JSON (events, then the error); results are JSON on stdout; a
/// failed build is reported once.
fn json_trials() -> Vec<Trial> {
    let mut v = vec![
        Trial::test("conventions::json-eval-error-is-json", || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let out = run_in(dir.path(), &["eval", "--json", "-E", "1 + \"a\""])?;
            let lines = json_lines(&out.stderr).map_err(|e| failed(&e, &out))?;
            let ok = out.status.code() == Some(1)
                && lines.len() == 1
                && lines[0]["event"] == "error"
                && lines[0]["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("buildit::"));
            if !ok {
                return Err(failed("eval --json with a type error", &out));
            }
            Ok(())
        }),
        Trial::test("conventions::json-trace-is-an-event", || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let expr = "builtins.trace \"hello from trace\" 1";
            let out = run_in(dir.path(), &["eval", "--json", "-E", expr])?;
            let lines = json_lines(&out.stderr).map_err(|e| failed(&e, &out))?;
            let ok = out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim() == "1"
                && lines.len() == 1
                && lines[0]["event"] == "trace"
                && lines[0]["message"] == "hello from trace";
            if !ok {
                return Err(failed("eval --json with builtins.trace", &out));
            }
            let plain = run_in(dir.path(), &["eval", "-E", expr])?;
            if String::from_utf8_lossy(&plain.stderr).trim() != "trace: hello from trace" {
                return Err(failed("eval with builtins.trace", &plain));
            }
            Ok(())
        }),
        Trial::test("conventions::json-compile", || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let spec = root().join("examples/nginx-prod");
            let spec = spec.display().to_string();
            let out = run_in(dir.path(), &["compile", "--json", &spec])?;
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| failed(&e.to_string(), &out))?;
            let text = run_in(dir.path(), &["compile", &spec])?;
            if !out.status.success()
                || v["program"].as_str() != Some(&*String::from_utf8_lossy(&text.stdout))
                || !v["missing_hashes"].is_array()
            {
                return Err(failed("compile --json", &out));
            }
            Ok(())
        }),
    ];
    v.push(Trial::test(
        "conventions::image-of-a-missing-directory",
        || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let out = run_in(
                dir.path(),
                &["--store-root", "s", "image", "--json", "./pkgs/nginx"],
            )?;
            let lines = json_lines(&out.stderr).map_err(|e| failed(&e, &out))?;
            let said = lines.first().cloned().unwrap_or_default();
            if out.status.code() != Some(1)
                || said["code"] != "buildit::image::no-such-directory"
                || !said["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("./pkgs/nginx does not exist"))
            {
                return Err(failed("image of a missing directory", &out));
            }
            Ok(())
        },
    ));
    v.push(Trial::test(
        "conventions::json-store-roots-verify-gc",
        || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let d = dir.path();
            let hello = root().join("examples/hello.bld").display().to_string();
            let added = run_in(d, &["--store-root", "s", "store", "add", &hello])?;
            let path = String::from_utf8_lossy(&added.stdout).trim().to_string();
            let rooted = run_in(
                d,
                &["--store-root", "s", "store", "add-root", "kept", &path],
            )?;
            let loose = run_in(
                d,
                &[
                    "--store-root",
                    "s",
                    "store",
                    "add",
                    "--name",
                    "loose",
                    &hello,
                ],
            )?;
            if !added.status.success() || !rooted.status.success() || !loose.status.success() {
                return Err(failed("store add / add-root", &rooted));
            }
            let object = |args: &[&str]| -> Result<serde_json::Value, Failed> {
                let mut all = vec!["--store-root", "s", "store"];
                all.extend(args);
                let out = run_in(d, &all)?;
                if !out.status.success() || !out.stderr.is_empty() {
                    return Err(failed(&all.join(" "), &out));
                }
                serde_json::from_slice(&out.stdout).map_err(|e| failed(&e.to_string(), &out))
            };
            let roots = object(&["roots", "--json"])?;
            let verify = object(&["verify", "--json"])?;
            let gc = object(&["gc", "--dry-run", "--json"])?;
            let targets: Vec<&str> = roots
                .as_array()
                .map(|a| a.iter().filter_map(|r| r["target"].as_str()).collect())
                .unwrap_or_default();
            let deleted = gc["deleted"].as_array().cloned().unwrap_or_default();
            if targets != [path.as_str()]
                || verify["ok"] != true
                || verify["checked"].as_u64().is_none_or(|n| n < 2)
                || gc["dry_run"] != true
                || deleted.len() != 1
                || !deleted[0].as_str().is_some_and(|p| p.ends_with("-loose"))
            {
                return Err(format!("roots {roots}\nverify {verify}\ngc {gc}").into());
            }
            Ok(())
        },
    ));
    v.push(crate::gated(
        "conventions::json-failed-build-stderr-is-json".into(),
        &["bwrap"],
        false,
        || {
            let out = build_failing(&["--json"])?;
            let lines = json_lines(&out.stderr).map_err(|e| failed(&e, &out))?;
            let failed_events = lines.iter().filter(|l| l["event"] == "failed").count();
            let last = lines.last().cloned().unwrap_or_default();
            if out.status.code() != Some(1)
                || failed_events != 1
                || last["event"] != "error"
                || last["code"] != "buildit::build::failed"
                || !out.stdout.is_empty()
            {
                return Err(failed("realise --json of a failing build", &out));
            }
            Ok(())
        },
    ));
    v.push(crate::gated(
        "conventions::failed-build-reported-once".into(),
        &["bwrap"],
        false,
        || {
            let out = build_failing(&[])?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.code() != Some(1)
                || stderr.matches("builder exited with status").count() != 1
                || stderr.matches("buildit::build::failed").count() != 1
            {
                return Err(failed("a failing build", &out));
            }
            Ok(())
        },
    ));
    v.push(crate::gated(
        "conventions::json-realise-result-on-stdout".into(),
        &["bwrap"],
        false,
        || {
            let store = crate::pkgs::shared_store()?;
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mut cmd = buildit();
            if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
                cmd.env("BUILDIT_DEBIAN_LOCK", lock);
            }
            let out = cmd
                .args(["realise", "--json", "-E", "(import <buildit>).pkgs.busybox"])
                .arg("--store-root")
                .arg(store)
                .current_dir(dir.path())
                .output()
                .map_err(|e| e.to_string())?;
            json_lines(&out.stderr).map_err(|e| failed(&e, &out))?;
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| failed(&e.to_string(), &out))?;
            let outputs = v["outputs"].as_array().cloned().unwrap_or_default();
            if !out.status.success()
                || outputs.len() != 1
                || v["drvs"].as_array().map(Vec::len) != Some(1)
                || v["out_link"] != "result"
                || !dir.path().join("result").exists()
            {
                return Err(failed("realise --json", &out));
            }
            Ok(())
        },
    ));
    v
}

/// `buildit init` writes a spec that builds, in under a minute on a warm store, and never
/// overwrites.
fn init_trials() -> Vec<Trial> {
    let builds = |package: bool| {
        let name = if package {
            "init-package-builds"
        } else {
            "init-builds"
        };
        crate::gated(
            format!("conventions::{name}"),
            &["bwrap"],
            false,
            move || {
                let store = crate::pkgs::shared_store()?;
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let mut args = vec!["init", "my-app"];
                if package {
                    args.push("--package");
                }
                let init = run_in(dir.path(), &args)?;
                if !init.status.success() {
                    return Err(failed("init", &init));
                }
                let again = run_in(dir.path(), &args)?;
                if again.status.code() != Some(1)
                    || !String::from_utf8_lossy(&again.stderr).contains("buildit::init::exists")
                {
                    return Err(failed("init over an existing spec", &again));
                }
                let mut cmd = buildit();
                if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
                    cmd.env("BUILDIT_DEBIAN_LOCK", lock);
                }
                let start = std::time::Instant::now();
                let out = cmd
                    .args(["build", "my-app", "--store-root"])
                    .arg(store)
                    .current_dir(dir.path())
                    .output()
                    .map_err(|e| e.to_string())?;
                let took = start.elapsed();
                if !out.status.success() || !dir.path().join("result/index.json").is_file() {
                    return Err(failed("build of the init spec", &out));
                }
                if took > std::time::Duration::from_secs(60) {
                    return Err(failed(&format!("the build took {took:?}"), &out));
                }
                Ok(())
            },
        )
    };
    vec![builds(false), builds(true)]
}

/// `-L` streams a build's log lines to stderr as `NAME> line`; `-q` leaves stderr empty.
fn log_flag_trials() -> Vec<Trial> {
    let probe = |flag: &'static str| {
        crate::gated(
            format!("conventions::build-with{flag}"),
            &["bwrap"],
            false,
            move || {
                let store = crate::pkgs::shared_store()?;
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                // a new derivation each run, so that it builds
                let nonce = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let expr = format!(
                    "let bb = (import <buildit>).pkgs.busybox; in derivation {{ name = \"log-probe\"; \
                     system = \"x86_64-linux\"; builder = \"${{bb}}/bin/busybox\"; nonce = \"{nonce}\"; \
                     args = [ \"sh\" \"-c\" \"echo probe-line; echo > $out\" ]; }}"
                );
                let mut cmd = buildit();
                if let Some(lock) = crate::e2e::debian_lock_for_builds()? {
                    cmd.env("BUILDIT_DEBIAN_LOCK", lock);
                }
                let out = cmd
                    .args([
                        flag,
                        "realise",
                        "--no-out-link",
                        "-E",
                        &expr,
                        "--store-root",
                    ])
                    .arg(store)
                    .current_dir(dir.path())
                    .output()
                    .map_err(|e| e.to_string())?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                let ok = match flag {
                    "-L" => stderr.contains("log-probe> probe-line"),
                    _ => stderr.is_empty(),
                };
                if !out.status.success() || !ok {
                    return Err(failed(&format!("realise {flag}"), &out));
                }
                Ok(())
            },
        )
    };
    let verbose = crate::gated(
        "conventions::build-with-v-names-downloads".into(),
        &["bwrap"],
        false,
        || {
            let file = root().join("examples/hello.bld");
            let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            let expr = format!(
                "(import <buildit>).fetchurl {{ url = \"file://{}\"; sha256 = \"{sha}\"; }}",
                file.display()
            );
            for (flag, want) in [("-v", true), ("--quiet", false)] {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let out = run_in(
                    dir.path(),
                    &[
                        "--store-root",
                        "s",
                        flag,
                        "realise",
                        "--no-out-link",
                        "-E",
                        &expr,
                    ],
                )?;
                let said = String::from_utf8_lossy(&out.stderr).contains("downloaded file://");
                if !out.status.success() || said != want {
                    return Err(failed(&format!("realise {flag} of a download"), &out));
                }
            }
            Ok(())
        },
    );
    vec![probe("-L"), probe("-q"), verbose]
}

pub fn trials() -> Vec<Trial> {
    let mut v = Vec::new();
    v.extend(closed_pipe_trials());
    v.extend(global_option_trials());
    v.extend(generated_trials());
    v.push(error_code_style());
    v.extend(json_trials());
    v.extend(init_trials());
    v.extend(log_flag_trials());
    v
}
