//! `buildit compile DIR`: the `.bld` program a container spec directory (container.yaml and the
//! pkg.yaml files of its embedded packages) lowers to. `buildit build DIR` evaluates exactly
//! this text. YAML errors are diagnostics pointing at the YAML line and column, and so are the
//! package-set errors (unknown atom or version, misspelled or conflicting build options): the
//! spec is checked against the set's facts before anything is evaluated.

use crate::common::*;
use crate::render;
use buildit_yaml as yaml;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct CompileArgs {
    /// The spec directory (holding container.yaml)
    pub dir: PathBuf,
    /// The store's physical root (the standard library, whose package set the spec is checked
    /// against, is materialised there)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// The package set's atoms, versions and options (evaluated from the standard library).
pub fn set_info(store_root: Option<&Path>) -> Result<yaml::check::SetInfo, ExitCode> {
    let st = style(false);
    let io = store_io(false, store_root);
    let mut ev = std::mem::ManuallyDrop::new(buildit_eval::Evaluator::new(Box::new(io)));
    let v = crate::common::eval_internal_json(
        &mut ev,
        yaml::check::SET_INFO_EXPR,
        st,
        "buildit::yaml::set-info",
    )?;
    Ok(yaml::check::SetInfo::from_json(&v))
}

/// Compile a spec directory and check it against the package set of the store at
/// `store_root`, printing diagnostics on failure.
pub fn compile(dir: &Path, store_root: Option<&Path>) -> Result<yaml::Compiled, ExitCode> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        Path::new(&cwd()).join(dir)
    };
    if !dir.join("container.yaml").is_file() {
        return Err(cli_error(
            "buildit::yaml::no-spec",
            &format!("{} has no container.yaml", dir.display()),
            "a spec directory holds container.yaml (see docs/yaml.md and examples/nginx-prod)",
        ));
    }
    let lock = yaml::read_lock(&dir);
    match yaml::compile_dir(&dir, &lock) {
        Ok(c) => {
            let set = set_info(store_root)?;
            let diags = c.check(&set);
            if diags.is_empty() {
                Ok(c)
            } else {
                eprint!("{}", render::diagnostics(&c.sources, &diags, style(false)));
                Err(ExitCode::from(1))
            }
        }
        Err(f) => {
            eprint!(
                "{}",
                render::diagnostics(&f.sources, &f.diagnostics, style(false))
            );
            Err(ExitCode::from(1))
        }
    }
}

pub fn run_compile(a: CompileArgs) -> ExitCode {
    match compile(&a.dir, a.store_root.as_deref()) {
        Ok(c) => {
            print!("{}", c.text);
            if !c.missing_hashes.is_empty() {
                eprintln!(
                    "note: {} URL patch(es) have no hash in buildit.lock yet; `buildit build` fetches them once and records them",
                    c.missing_hashes.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Download `url` once and return its sha256 (hex), for `buildit.lock`.
fn fetch_sha256(url: &str) -> Result<String, String> {
    use sha2::Digest;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dest = tmp.path().join("patch");
    let mirrors = crate::builtins::mirrors();
    let req = buildit_builder::fetch::FetchRequest::new(vec![url.to_string()], &mirrors);
    buildit_builder::fetch::fetch_url(&req, &dest, &mut |_| {}).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&dest).map_err(|e| e.to_string())?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Where the (hash, URL) pairs of patches already checked against `buildit.lock` are kept.
fn verified_file(store: &buildit_store::Store) -> PathBuf {
    store.layout().state_dir().join("yaml/verified-patches")
}

fn yaml_error(
    c: &yaml::Compiled,
    url: &str,
    code: &'static str,
    message: String,
    label: &str,
    help: &str,
) -> ExitCode {
    let mut d = buildit_lang::Diagnostic::error(code, message).with_help(help);
    if let Some(span) = c.patch_span(url) {
        d = d.with_label(span, label);
    }
    eprint!("{}", render::diagnostics(&c.sources, &[d], style(false)));
    ExitCode::from(1)
}

/// The URL patches of a compiled spec, before anything is evaluated: each one without a hash
/// in `buildit.lock` is fetched once and its hash recorded (then `true` is returned: compile
/// again); each one with a hash is fetched and checked once per store (remembered in the
/// store's state directory). An unreachable URL or a different hash is a diagnostic at the
/// patch's line in pkg.yaml; the store is left as it was.
pub fn fetch_patches(c: &yaml::Compiled, store: &buildit_store::Store) -> Result<bool, ExitCode> {
    let mut lock = yaml::read_lock(&c.dir);
    let verified_path = verified_file(store);
    let verified: std::collections::BTreeSet<String> = std::fs::read_to_string(&verified_path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let mut newly = Vec::new();
    let mut recorded = false;
    let urls: std::collections::BTreeSet<&str> = c
        .embedded
        .values()
        .flat_map(|p| &p.patches)
        .filter(|p| p.is_url)
        .map(|p| p.source.value.as_str())
        .collect();
    for url in urls {
        let want = lock.get(url).cloned();
        if let Some(h) = &want {
            if verified.contains(&format!("{h} {url}")) {
                continue;
            }
            eprintln!("Checking patch {url} against buildit.lock...");
        } else {
            eprintln!("Fetching patch {url} (no hash in buildit.lock yet)...");
        }
        let got = fetch_sha256(url).map_err(|e| {
            yaml_error(
                c,
                url,
                "buildit::yaml::patch-fetch",
                format!("cannot fetch patch {url}: {e}"),
                "this patch",
                "check the URL (and the network); or download the patch next to pkg.yaml and name the file instead",
            )
        })?;
        match want {
            Some(h) if h != got => {
                return Err(yaml_error(
                    c,
                    url,
                    "buildit::yaml::patch-hash",
                    format!("patch {url} has sha256 {got}, but buildit.lock records {h}"),
                    "this patch changed",
                    "if the new patch is what you want, delete its line from buildit.lock and build again to record it; otherwise fix the URL",
                ))
            }
            Some(h) => newly.push(format!("{h} {url}")),
            None => {
                newly.push(format!("{got} {url}"));
                lock.insert(url.to_string(), got);
                recorded = true;
            }
        }
    }
    if recorded {
        if let Err(e) = yaml::write_lock(&c.dir, &lock) {
            return Err(cli_error(
                "buildit::yaml::lock-write",
                &format!("cannot write buildit.lock: {e}"),
                "check the directory's permissions",
            ));
        }
    }
    if !newly.is_empty() {
        let mut all: Vec<String> = verified.into_iter().collect();
        all.extend(newly);
        all.sort();
        all.dedup();
        if let Some(parent) = verified_path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // only a cache: failing to write it costs a download next time
        let _ = std::fs::write(&verified_path, all.join("\n") + "\n");
    }
    Ok(recorded)
}
