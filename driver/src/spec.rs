//! Container and package specs (`container.yaml`, `pkg.yaml`): compiled to `.bld` text by the
//! YAML front end, checked against the package set before anything is evaluated, URL patches
//! fetched once and pinned in `buildit.lock`, then evaluated to derivations (with the spec's
//! own `debian.lock` when it has one, [`spec_session`]). `buildit build
//! DIR` evaluates exactly the text `buildit compile DIR` prints.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use buildit_eval::FoundDrv;
use buildit_lang::{Diagnostic, FileId, SourceMap};
use buildit_store::Store;
use buildit_yaml::Compiled;

use crate::error::{DriverError, Result};
use crate::session::Session;
use crate::typecheck::TypeCheck;

fn failed(f: buildit_yaml::Failed) -> DriverError {
    DriverError::diagnostics_in(f.sources, f.diagnostics)
}

/// Check a compiled spec against the session's package set.
fn checked(session: &Session, c: Compiled) -> Result<Compiled> {
    let set = crate::pkgset::set_info(session)?;
    let diags = c.check(&set);
    if diags.is_empty() {
        Ok(c)
    } else {
        Err(DriverError::diagnostics_in(c.sources, diags))
    }
}

/// The file in a container spec directory that pins the spec's Debian packages (written by
/// `buildit update DIR`).
pub const SPEC_DEBIAN_LOCK: &str = "debian.lock";

/// The session a container spec in `dir` is evaluated with: the Debian lock given on the
/// command line (`--debian-lock`, `BUILDIT_DEBIAN_LOCK`) when there is one, else the spec's own
/// `debian.lock` when the directory holds one, else the embedded lock.
pub fn spec_session(session: &Session, dir: &Path) -> Result<Session> {
    let own = dir.join(SPEC_DEBIAN_LOCK);
    if session.debian_lock().is_some() || !own.is_file() {
        return Ok(session.clone());
    }
    let lock = crate::session::DebianLock::read(&own)?;
    Ok(session.clone().with_debian_lock(Some(lock)))
}

/// Compile a container spec directory (holding `container.yaml`) and check it against the
/// package set.
pub fn compile(session: &Session, dir: &Path) -> Result<Compiled> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !dir.join("container.yaml").is_file() {
        return Err(DriverError::request(
            "buildit::yaml::no-spec",
            format!("{} has no container.yaml", dir.display()),
            "a spec directory holds container.yaml (see docs/yaml.md and examples/nginx-prod)",
        ));
    }
    let lock = buildit_yaml::read_lock(&dir);
    let c = buildit_yaml::compile_dir(&dir, &lock).map_err(failed)?;
    checked(session, c)
}

/// Compile a package directory (holding `pkg.yaml`) and check it against the package set.
pub fn compile_pkg(session: &Session, dir: &Path) -> Result<Compiled> {
    let lock = buildit_yaml::read_lock(dir);
    let c = buildit_yaml::compile_pkg_dir(dir, &lock).map_err(failed)?;
    checked(session, c)
}

/// Compile with `compile`, then fetch the URL patches (see [`fetch_patches`]), compiling again
/// when hashes were recorded.
pub fn compile_fetching(
    session: &Session,
    store: &Store,
    compile: &dyn Fn(&Session) -> Result<Compiled>,
    notice: &mut dyn FnMut(&str),
) -> Result<Compiled> {
    let c = compile(session)?;
    if fetch_patches(&c, store, notice)? {
        return compile(session);
    }
    Ok(c)
}

/// Download `url` once and return its sha256 (hex), for `buildit.lock`.
fn fetch_sha256(url: &str) -> std::result::Result<String, String> {
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
fn verified_file(store: &Store) -> PathBuf {
    store.layout().state_dir().join("yaml/verified-patches")
}

fn patch_error(
    c: &Compiled,
    url: &str,
    code: &'static str,
    message: String,
    label: &str,
    help: &str,
) -> DriverError {
    let mut d = Diagnostic::error(code, message).with_help(help);
    if let Some(span) = c.patch_span(url) {
        d = d.with_label(span, label);
    }
    let mut sources = buildit_lang::SourceMap::new();
    for f in (0u32..).map(buildit_lang::FileId) {
        let Some(sf) = c.sources.get(f) else { break };
        sources.add(sf.name.clone(), sf.text.clone());
    }
    DriverError::diagnostics_in(sources, vec![d])
}

/// The URL patches of a compiled spec, before anything is evaluated: each one without a hash
/// in `buildit.lock` is fetched once and its hash recorded (then `true` is returned: compile
/// again); each one with a hash is fetched and checked once per store (remembered in the
/// store's state directory). An unreachable URL or a different hash is a diagnostic at the
/// patch's line in pkg.yaml; the store is left as it was. `notice` hears what is fetched.
pub fn fetch_patches(c: &Compiled, store: &Store, notice: &mut dyn FnMut(&str)) -> Result<bool> {
    let mut lock = buildit_yaml::read_lock(&c.dir);
    let verified_path = verified_file(store);
    let verified: BTreeSet<String> = std::fs::read_to_string(&verified_path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let mut newly = Vec::new();
    let mut recorded = false;
    let urls: BTreeSet<&str> = c
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
            notice(&format!("Checking patch {url} against buildit.lock..."));
        } else {
            notice(&format!(
                "Fetching patch {url} (no hash in buildit.lock yet)..."
            ));
        }
        let got = fetch_sha256(url).map_err(|e| {
            patch_error(
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
                return Err(patch_error(
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
        buildit_yaml::write_lock(&c.dir, &lock).map_err(|e| {
            DriverError::request(
                "buildit::yaml::lock-write",
                format!("cannot write buildit.lock: {e}"),
                "check the directory's permissions",
            )
        })?;
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

/// A compiled spec's program checked against the typed standard library.
pub struct SpecCheck {
    /// The YAML sources (and any library file a label names).
    pub sources: SourceMap,
    /// The type errors, at the YAML they came from.
    pub diagnostics: Vec<Diagnostic>,
    /// The program's type, printed.
    pub ty: String,
}

/// The type errors of a compiled spec's program, checked with `checker` against the typed
/// standard library and reported at the YAML they came from ([`Compiled::remap`]). Only
/// `buildit::type::` diagnostics of the generated program count: its syntax and scope are
/// buildit's own, and the library's files are checked by the library's tests.
pub fn type_errors(checker: &mut TypeCheck, c: &Compiled) -> SpecCheck {
    let name = compiled_name(c);
    let checked = checker.check_root(&name, &c.program());
    let generated = (0u32..)
        .map(FileId)
        .take_while(|f| checked.sources.get(*f).is_some())
        .find(|f| checked.sources.name(*f) == name)
        .unwrap_or(FileId(0));
    let diags: Vec<Diagnostic> = checked
        .diagnostics
        .into_iter()
        .take(checked.root_diagnostics)
        .filter(|d| d.code.starts_with("buildit::type::"))
        .collect();
    let (sources, diagnostics) = c.remap(&checked.sources, generated, buildit_yaml::capped(diags));
    SpecCheck {
        sources,
        diagnostics,
        ty: checked.ty,
    }
}

/// `buildit check DIR` of a spec directory (holding container.yaml, else pkg.yaml): the YAML
/// read and lowered (its errors at their lines), then the program type-checked with `checker`
/// (errors at the YAML lines). With `strict`, the program checked is the one with YAML's own
/// typing of plain scalars ([`Compiled::typed_program`]: `version: 2` is a number there).
/// Static: the package set's facts (atoms, versions, options) are `buildit compile DIR`'s.
/// `None` when `dir` holds neither file.
pub fn check_dir(checker: &mut TypeCheck, dir: &Path, strict: bool) -> Option<SpecCheck> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let lock = buildit_yaml::read_lock(&dir);
    let compiled = if dir.join("container.yaml").is_file() {
        buildit_yaml::compile_dir(&dir, &lock)
    } else if dir.join("pkg.yaml").is_file() {
        buildit_yaml::compile_pkg_dir(&dir, &lock)
    } else {
        return None;
    };
    Some(match compiled {
        Ok(c) if strict => type_errors(checker, &c.typed_program()),
        Ok(c) => type_errors(checker, &c),
        Err(f) => SpecCheck {
            sources: f.sources,
            diagnostics: f.diagnostics,
            ty: String::new(),
        },
    })
}

/// The name the generated program of a compiled spec is known by (in traces and the checker).
fn compiled_name(c: &Compiled) -> String {
    let file = if c.package_only {
        "pkg.yaml"
    } else {
        "container.yaml"
    };
    format!("{} (compiled)", c.dir.join(file).display())
}

/// [`type_errors`] as a result: the type errors of a compiled spec at its YAML lines.
pub fn typecheck(c: &Compiled) -> Result<()> {
    let checked = type_errors(&mut TypeCheck::new(false), c);
    if checked.diagnostics.is_empty() {
        return Ok(());
    }
    Err(DriverError::Diagnostics {
        sources: checked.sources,
        diagnostics: checked.diagnostics,
        note: Some(
            "(the spec's generated program, checked against the typed standard library; `buildit compile DIR` prints it)".to_string(),
        ),
    })
}

/// Type-check (unless turned off) and evaluate a compiled container spec: the derivations it
/// denotes. Type errors are reported at the YAML lines that produced them.
pub fn evaluate_spec(session: &Session, c: &Compiled, typecheck: bool) -> Result<Vec<FoundDrv>> {
    if typecheck {
        self::typecheck(c)?;
    }
    let name = compiled_name(c);
    let mut ev = session.evaluator();
    crate::eval::evaluate_program(&mut ev, &name, &c.text, &c.dir)
}
