//! `buildit run ATOM [-- ARGS]`: build a package of the set if needed and run its main program
//! in a bubblewrap sandbox that holds exactly the package's runtime closure.
//!
//! Steps: the atom (`app-misc/hello`, `hello`, `app-misc/hello-2.10`, `hello-2.10`; no version
//! means the newest, by `builtins.compareVersions`) is resolved against the set's
//! `pkgs.atoms` ([`resolve_atom`], a pure function); the package and the Debian runtime tree
//! of its closure (every Debian package among its `runtimeDeps`, through the buildit packages
//! among them) are realised like `buildit realise`; then the program runs with:
//!
//! - the store closure of the output and of the runtime tree (from the store's database)
//!   bind-mounted read-only at their `/bld/store/...` paths, and nothing else of the store;
//! - the runtime tree's `usr/` at `/usr` with the merged-/usr links `/bin /sbin /lib /lib64`,
//!   where the dynamic loader finds Debian's libraries, as the builder mounts the sysroot;
//! - a synthetic `/etc` (passwd, group, hosts; the host's resolv.conf with `--net`), `/proc`,
//!   `/dev`, tmpfs `/tmp`, the root read-only, the working directory `/`;
//! - its own network namespace with only loopback unless `--net`, the caller's uid and gid
//!   (1000:100 for root: a program never runs as root), no capabilities, a cleared
//!   environment (`PATH`, `HOME=/tmp`, `TMPDIR`, `TERM`);
//! - the current directory only with `--bind-cwd` (read-write, at the same path, as the
//!   working directory).
//!
//! stdin, stdout and stderr are the caller's; the exit status is the program's (128 + N when
//! it died of signal N).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use buildit_builder::{BuildOptions, ScheduleOptions};
use buildit_eval::Evaluator;
use buildit_store::{Store, StorePath, STORE_DIR};
use clap::Args;
use miette::miette;

use crate::build_cmd::{realise_drvs, Progress, RealiseOpts};
use crate::common::{cli_error, style};
use crate::store_cmd::{fail, open_store, store_error};

/// `buildit run ATOM [-- ARGS]`
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The package: `category/name`, `name`, either with `-VERSION` (no version: the newest)
    #[arg(value_name = "ATOM")]
    pub atom: String,
    /// Arguments passed to the program (write them after `--`)
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
    /// Share the host's network (default: an own network namespace with only loopback)
    #[arg(long)]
    pub net: bool,
    /// Make the current directory visible (read-write, same path) and start there
    #[arg(long)]
    pub bind_cwd: bool,
    /// Take the package from this set instead of `(import <buildit>).pkgs`: a .bld file that
    /// evaluates to a package set, e.g. `(import <buildit>).pkgs.extend (self: super: { … })`
    #[arg(long = "set", value_name = "FILE")]
    pub set: Option<String>,
    /// Run this file of the package instead of its main program (`bin/NAME`, relative to the
    /// package's store path)
    #[arg(long, value_name = "PATH")]
    pub program: Option<String>,
    /// Cores a build may use if the package must be built (default: 1)
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Show the whole evaluation trace of an error
    #[arg(long)]
    pub show_trace: bool,
    /// The store's physical root directory (default: $BUILDIT_STORE_ROOT, else /bld when
    /// writable, else $XDG_DATA_HOME/buildit)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// An atom of the set with its versions, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtomVersions {
    pub atom: String,
    pub versions: Vec<String>,
}

/// Why an atom does not name a package of the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown package atom '{atom}'")]
    Unknown {
        atom: String,
        suggestion: Option<String>,
    },
    #[error("'{name}' is ambiguous: {}", candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
    #[error("{atom} has no version {version} (the set has {})", available.join(", "))]
    NoVersion {
        atom: String,
        version: String,
        available: Vec<String>,
    },
}

/// Split `name-version` the way `builtins.parseDrvName` does: the version starts after the
/// first `-` that is followed by a character that is not a letter.
pub fn split_name_version(s: &str) -> (&str, Option<&str>) {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()) {
            return (&s[..i], Some(&s[i + 1..]));
        }
    }
    (s, None)
}

fn short_name(atom: &str) -> &str {
    atom.rsplit_once('/').map(|(_, n)| n).unwrap_or(atom)
}

/// Resolve `text` (`cat/name`, `name`, with an optional `-VERSION`) against the set's atoms:
/// the atom and the version to use (the newest when none is given).
pub fn resolve_atom(text: &str, set: &[AtomVersions]) -> Result<(String, String), ResolveError> {
    let find = |cat: Option<&str>, name: &str| -> Vec<&AtomVersions> {
        set.iter()
            .filter(|a| match cat {
                Some(c) => a.atom == format!("{c}/{name}"),
                None => short_name(&a.atom) == name,
            })
            .collect()
    };
    let (cat, rest) = match text.split_once('/') {
        Some((c, r)) => (Some(c), r),
        None => (None, text),
    };
    // a name that itself looks like name-version (`hello-2.10`) is tried whole first
    let (hits, version) = {
        let whole = find(cat, rest);
        if !whole.is_empty() {
            (whole, None)
        } else {
            let (n, v) = split_name_version(rest);
            (find(cat, n), v)
        }
    };
    match hits.as_slice() {
        [] => {
            let names: Vec<&str> = set
                .iter()
                .flat_map(|a| [a.atom.as_str(), short_name(&a.atom)])
                .collect();
            let (n, _) = split_name_version(rest);
            let wanted = match cat {
                Some(c) => format!("{c}/{n}"),
                None => n.to_string(),
            };
            let suggestion = buildit_yaml::spec::did_you_mean(&wanted, &names).map(str::to_string);
            Err(ResolveError::Unknown {
                atom: text.to_string(),
                suggestion,
            })
        }
        [one] => match version {
            None => one
                .versions
                .first()
                .map(|v| (one.atom.clone(), v.clone()))
                .ok_or_else(|| ResolveError::NoVersion {
                    atom: one.atom.clone(),
                    version: "(any)".into(),
                    available: Vec::new(),
                }),
            Some(v) if one.versions.iter().any(|x| x == v) => Ok((one.atom.clone(), v.to_string())),
            Some(v) => Err(ResolveError::NoVersion {
                atom: one.atom.clone(),
                version: v.to_string(),
                available: one.versions.clone(),
            }),
        },
        many => Err(ResolveError::Ambiguous {
            name: rest.to_string(),
            candidates: many.iter().map(|a| a.atom.clone()).collect(),
        }),
    }
}

/// The set's atoms with their versions, newest first.
fn list_expr(set: &str) -> String {
    format!(
        r#"
let
  atoms = ({set}).atoms;
  newestFirst = vs: builtins.sort (a: b: builtins.compareVersions a b > 0) vs;
in map (a: {{ atom = a; versions = newestFirst (builtins.attrNames atoms.${{a}}); }}) (builtins.attrNames atoms)
"#
    )
}

/// The package set expression: the embedded one, or `import FILE`.
fn set_expr(file: Option<&str>) -> String {
    match file {
        None => "(import <buildit>).pkgs".to_string(),
        Some(f) => format!("import {}", bld_string(&crate::common::absolute(f))),
    }
}

/// A `.bld` string literal holding `s`.
fn bld_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The package, its main program and the Debian runtime tree of its closure.
fn package_expr(set: &str, atom: &str, version: &str) -> String {
    format!(
        r#"
let
  b = import <buildit>;
  p = ({set}).atoms.{atom}.{version};
  # the Debian packages the package needs at run time, through the buildit packages it needs
  debianOf = d:
    if d.isDebian or false then [ d.debianName ]
    else builtins.concatMap debianOf (d.runtimeDeps or [ ]);
  names = builtins.attrNames (builtins.listToAttrs (map (n: {{ name = n; value = true; }}) (debianOf p)));
in {{
  drv = p.drvPath;
  out = p.outPath;
  name = p.pname or p.name;
  main = (p.meta or {{ }}).mainProgram or "";
  debian = names;
  runtimeDrv = if names == [ ] then "" else (b.debian.runtime names).drvPath;
}}
"#,
        atom = bld_string(atom),
        version = bld_string(version),
    )
}

/// Evaluate `expr` (no type check: it is ours) to JSON; diagnostics are printed on failure.
fn eval_json(
    ev: &mut Evaluator,
    expr: &str,
    st: crate::render::Style,
) -> Result<serde_json::Value, ExitCode> {
    crate::common::eval_internal_json(ev, expr, st, "buildit::run::json")
}

fn resolve_error(e: &ResolveError) -> ExitCode {
    let help = match e {
        ResolveError::Unknown {
            suggestion: Some(s),
            ..
        } => format!("did you mean '{s}'? (`buildit search` lists the atoms)"),
        ResolveError::Unknown { .. } => "`buildit search` lists the package set's atoms".into(),
        ResolveError::Ambiguous { candidates, .. } => {
            format!("name the category: buildit run {}", candidates[0])
        }
        ResolveError::NoVersion {
            atom, available, ..
        } => match available.first() {
            Some(v) => format!("run the newest with `buildit run {atom}`, or name one: {atom}-{v}"),
            None => "this atom has no versions".into(),
        },
    };
    let code = match e {
        ResolveError::Unknown { .. } => "buildit::run::unknown-atom",
        ResolveError::Ambiguous { .. } => "buildit::run::ambiguous-atom",
        ResolveError::NoVersion { .. } => "buildit::run::no-version",
    };
    cli_error(code, &e.to_string(), &help)
}

/// What to run: the program's path inside the sandbox.
fn main_program(
    store: &Store,
    out: &StorePath,
    name: &str,
    declared: &str,
) -> Result<String, ExitCode> {
    let phys = store.layout().physical(out);
    let exists = |rel: &str| {
        let p = phys.join(rel);
        p.exists() || p.is_symlink()
    };
    if !declared.is_empty() {
        if declared.starts_with('/') {
            return Ok(declared.to_string());
        }
        if exists(declared) {
            return Ok(format!("{out}/{declared}"));
        }
        return Err(cli_error(
            "buildit::run::no-main-program",
            &format!("the main program {declared} (meta.mainProgram) is not in {out}"),
            "fix meta.mainProgram in the recipe, or pick a file with --program PATH",
        ));
    }
    for dir in ["bin", "sbin"] {
        let rel = format!("{dir}/{name}");
        if exists(&rel) {
            return Ok(format!("{out}/{rel}"));
        }
    }
    let mut found = Vec::new();
    for dir in ["bin", "sbin"] {
        if let Ok(rd) = std::fs::read_dir(phys.join(dir)) {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
                .collect();
            names.sort();
            found.extend(names);
        }
    }
    let help = if found.is_empty() {
        format!("{out} has no bin/ or sbin/ programs; set meta.mainProgram in the recipe")
    } else {
        format!(
            "choose one with --program PATH ({}), or set meta.mainProgram in the recipe",
            found.join(", ")
        )
    };
    Err(cli_error(
        "buildit::run::no-main-program",
        &format!("{out} has no main program: neither bin/{name} nor sbin/{name}, and meta.mainProgram is not set"),
        &help,
    ))
}

/// How the sandbox of one run is laid out (everything [`bwrap_args`] needs).
#[derive(Clone, Debug)]
pub struct RunSandbox {
    /// (physical path, logical /bld/store path) of every store path to mount read-only.
    pub closure: Vec<(PathBuf, String)>,
    /// The physical `usr/` of the Debian runtime tree, mounted at `/usr`.
    pub usr: Option<PathBuf>,
    /// The directory mounted at `/etc`.
    pub etc: PathBuf,
    pub net: bool,
    /// The current directory, bound at its own path and used as the working directory.
    pub cwd: Option<PathBuf>,
    /// The uid and gid inside.
    pub ids: (u32, u32),
    /// `--new-session` (not when the caller's stdin is a terminal: the program may want it).
    pub new_session: bool,
    pub env: Vec<(String, String)>,
    pub program: String,
    pub args: Vec<OsString>,
}

/// The full bwrap command line (without `bwrap` itself).
pub fn bwrap_args(s: &RunSandbox) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
    push(&["--unshare-all".as_ref(), "--unshare-user".as_ref()]);
    if s.net {
        push(&["--share-net".as_ref()]);
    }
    push(&[
        "--die-with-parent".as_ref(),
        "--cap-drop".as_ref(),
        "ALL".as_ref(),
        "--hostname".as_ref(),
        "localhost".as_ref(),
        "--clearenv".as_ref(),
    ]);
    let (uid, gid) = (s.ids.0.to_string(), s.ids.1.to_string());
    push(&[
        "--uid".as_ref(),
        uid.as_ref(),
        "--gid".as_ref(),
        gid.as_ref(),
    ]);
    if s.new_session {
        push(&["--new-session".as_ref()]);
    }
    for (phys, logical) in &s.closure {
        push(&["--ro-bind".as_ref(), phys.as_os_str(), logical.as_ref()]);
    }
    if let Some(usr) = &s.usr {
        push(&["--ro-bind".as_ref(), usr.as_os_str(), "/usr".as_ref()]);
        for d in ["bin", "sbin", "lib", "lib64"] {
            let target = format!("usr/{d}");
            let link = format!("/{d}");
            push(&["--symlink".as_ref(), target.as_ref(), link.as_ref()]);
        }
    }
    push(&[
        "--ro-bind".as_ref(),
        s.etc.as_os_str(),
        "/etc".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    match &s.cwd {
        Some(c) => push(&[
            "--bind".as_ref(),
            c.as_os_str(),
            c.as_os_str(),
            "--chdir".as_ref(),
            c.as_os_str(),
        ]),
        None => push(&["--chdir".as_ref(), "/".as_ref()]),
    }
    push(&["--remount-ro".as_ref(), "/".as_ref()]);
    for (k, v) in &s.env {
        push(&["--setenv".as_ref(), k.as_ref(), v.as_ref()]);
    }
    push(&["--".as_ref(), s.program.as_ref()]);
    a.extend(s.args.iter().cloned());
    a
}

/// The uid and gid the program runs as: the caller's, but never root (a root caller's program
/// runs as 1000:100, the builds' user), so that programs that drop privileges when started as
/// root (nginx's workers) do not try to and fail in the user namespace.
fn sandbox_ids() -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // this process's own /proc entry belongs to its (effective) uid and gid
    let me = std::fs::metadata("/proc/self")?;
    Ok(if me.uid() == 0 {
        (
            buildit_builder::sandbox::BUILD_UID,
            buildit_builder::sandbox::BUILD_GID,
        )
    } else {
        (me.uid(), me.gid())
    })
}

/// The synthetic `/etc` of a run: the program's uid and gid as `user`/`users`, `nobody`,
/// localhost, and with the host network its resolver configuration.
fn write_etc(dir: &Path, net: bool, uid: u32, gid: u32) -> std::io::Result<()> {
    let (user, group) = ("user", "users");
    let mut passwd = format!("{user}:x:{uid}:{gid}:buildit run:/tmp:/bin/sh\n");
    let mut groups = format!("{group}:x:{gid}:\n");
    if uid != 65534 {
        passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/noshell\n");
    }
    if gid != 65534 {
        // Debian calls it nogroup; upstream defaults (nginx's `user nobody nobody`) nobody
        groups.push_str("nogroup:x:65534:\nnobody:x:65534:\n");
    }
    std::fs::write(dir.join("passwd"), passwd)?;
    std::fs::write(dir.join("group"), groups)?;
    std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n")?;
    if net {
        if let Ok(r) = std::fs::read("/etc/resolv.conf") {
            std::fs::write(dir.join("resolv.conf"), r)?;
        }
    }
    Ok(())
}

/// Run `buildit run`.
pub fn run(a: RunArgs) -> ExitCode {
    let st = style(a.show_trace);
    let store = match open_store(a.store_root.as_deref()) {
        Ok(s) => s,
        Err(r) => return fail(r),
    };
    let io = crate::common::new_store_io(crate::common::fs_io(false), store.layout().clone());
    let mut ev = std::mem::ManuallyDrop::new(Evaluator::new(Box::new(io)));

    // 1. the atom
    let set_text = set_expr(a.set.as_deref());
    let listing = match eval_json(&mut ev, &list_expr(&set_text), st) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let set: Vec<AtomVersions> = listing
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| {
                    Some(AtomVersions {
                        atom: x["atom"].as_str()?.to_string(),
                        versions: x["versions"]
                            .as_array()?
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let (atom, version) = match resolve_atom(&a.atom, &set) {
        Ok(x) => x,
        Err(e) => return resolve_error(&e),
    };

    // 2. the package and its Debian runtime tree, built if needed
    let pkg = match eval_json(&mut ev, &package_expr(&set_text, &atom, &version), st) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let text = |k: &str| pkg[k].as_str().unwrap_or("").to_string();
    let parse = |s: &str| {
        StorePath::parse(s).map_err(|e| {
            cli_error(
                "buildit::run::bad-path",
                &format!("{s}: {e}"),
                "this is a bug",
            )
        })
    };
    let mut drvs = Vec::new();
    let out = match parse(&text("out")).and_then(|o| Ok((o, parse(&text("drv"))?))) {
        Ok((o, d)) => {
            drvs.push(d);
            o
        }
        Err(code) => return code,
    };
    let runtime_drv = text("runtimeDrv");
    if !runtime_drv.is_empty() {
        match parse(&runtime_drv) {
            Ok(d) => drvs.push(d),
            Err(code) => return code,
        }
    }
    let schedule = ScheduleOptions {
        build: BuildOptions {
            cores: a.cores.unwrap_or(1).max(1),
            ..BuildOptions::default()
        },
        ..ScheduleOptions::default()
    };
    let opts = RealiseOpts {
        schedule,
        out_link: None,
        progress: Progress::auto(),
    };
    let built = match realise_drvs(&store, &drvs, &opts, crate::builtins::all(store.layout())) {
        Ok(p) => p,
        Err(r) => return fail(r),
    };
    // realise_drvs gives each target's outputs in order: the runtime tree is the last one
    let runtime = if runtime_drv.is_empty() {
        None
    } else {
        built.last().cloned()
    };
    let mut roots = vec![out.clone()];
    roots.extend(runtime.clone());
    for r in &roots {
        store.add_temp_root(r);
    }
    let closure: BTreeSet<StorePath> = match store.closure(&roots) {
        Ok(c) => c,
        Err(e) => return fail(store_error(e)),
    };

    // 3. the program
    let program = match &a.program {
        Some(p) if p.starts_with('/') => p.clone(),
        Some(p) => format!("{out}/{p}"),
        None => match main_program(&store, &out, &text("name"), &text("main")) {
            Ok(p) => p,
            Err(code) => return code,
        },
    };

    // 4. the sandbox
    let bwrap = match buildit_builder::sandbox::find_bwrap() {
        Ok(b) => b,
        Err(_) => {
            return cli_error(
                "buildit::run::no-bwrap",
                "bwrap (bubblewrap) is not installed",
                "programs run in bubblewrap: apt-get install bubblewrap",
            )
        }
    };
    if let Err(refusal) = buildit_builder::userns::usable_by_bwrap(&bwrap) {
        return cli_error(
            "buildit::run::no-user-namespaces",
            &refusal.to_string(),
            "the administrator allows unprivileged user namespaces (above), or buildit runs as root (docs/store.md: who owns a store)",
        );
    }
    let etc = match tempfile::Builder::new().prefix("buildit-run-etc").tempdir() {
        Ok(d) => d,
        Err(e) => {
            return cli_error(
                "buildit::run::io",
                &format!("cannot create a temporary directory: {e}"),
                "check TMPDIR",
            )
        }
    };
    let (uid, gid) = match sandbox_ids() {
        Ok(ids) => ids,
        Err(e) => {
            return cli_error(
                "buildit::run::io",
                &format!("cannot read /proc/self: {e}"),
                "buildit run needs /proc",
            )
        }
    };
    if let Err(e) = write_etc(etc.path(), a.net, uid, gid) {
        return cli_error(
            "buildit::run::io",
            &format!("cannot write the sandbox's /etc: {e}"),
            "check TMPDIR",
        );
    }
    let cwd = if a.bind_cwd {
        match std::env::current_dir() {
            Ok(c) if c == Path::new("/") || c.starts_with(STORE_DIR) => {
                return cli_error(
                    "buildit::run::bad-cwd",
                    &format!("cannot bind {} into the sandbox", c.display()),
                    "run from a directory other than / or the store",
                )
            }
            Ok(c) => Some(c),
            Err(e) => {
                return cli_error(
                    "buildit::run::bad-cwd",
                    &format!("the current directory is not usable: {e}"),
                    "cd to an existing directory",
                )
            }
        }
    } else {
        None
    };
    let mut env = vec![
        (
            "PATH".to_string(),
            format!("{out}/bin:{out}/sbin:/usr/bin:/usr/sbin:/bin"),
        ),
        ("HOME".to_string(), "/tmp".to_string()),
        ("TMPDIR".to_string(), "/tmp".to_string()),
    ];
    if let Some(t) = std::env::var_os("TERM") {
        env.push(("TERM".to_string(), t.to_string_lossy().into_owned()));
    }
    let sandbox = RunSandbox {
        closure: closure
            .iter()
            .map(|p| (store.layout().physical(p), p.to_string()))
            .collect(),
        usr: runtime.map(|r| store.layout().physical(&r).join("usr")),
        etc: etc.path().to_path_buf(),
        net: a.net,
        cwd,
        ids: (uid, gid),
        new_session: !std::io::stdin().is_terminal(),
        env,
        program,
        args: a.args.clone(),
    };
    let status = std::process::Command::new(&bwrap)
        .args(bwrap_args(&sandbox))
        .status();
    drop(etc);
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            match (s.code(), s.signal()) {
                (Some(c), _) => ExitCode::from((c & 0xff) as u8),
                (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
                (None, None) => ExitCode::from(1),
            }
        }
        Err(e) => fail(miette!(
            code = "buildit::run::spawn",
            help = "check that bwrap can be executed",
            "cannot start {}: {e}",
            bwrap.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Vec<AtomVersions> {
        let a = |atom: &str, vs: &[&str]| AtomVersions {
            atom: atom.into(),
            versions: vs.iter().map(|s| s.to_string()).collect(),
        };
        vec![
            a("app-misc/hello", &["2.12", "2.10"]),
            a("sys-libs/zlib", &["1.2.13"]),
            a("www-servers/nginx", &["1.22.1"]),
            a("dev-libs/foo", &["1"]),
            a("sys-apps/foo", &["2"]),
        ]
    }

    #[test]
    fn forms_of_an_atom() {
        let s = set();
        let ok = |t: &str| resolve_atom(t, &s).expect("resolves");
        assert_eq!(ok("hello"), ("app-misc/hello".into(), "2.12".into()));
        assert_eq!(
            ok("app-misc/hello"),
            ("app-misc/hello".into(), "2.12".into())
        );
        assert_eq!(
            ok("app-misc/hello-2.10"),
            ("app-misc/hello".into(), "2.10".into())
        );
        assert_eq!(ok("hello-2.10"), ("app-misc/hello".into(), "2.10".into()));
        assert_eq!(ok("dev-libs/foo"), ("dev-libs/foo".into(), "1".into()));
    }

    #[test]
    fn errors() {
        let s = set();
        match resolve_atom("helo", &s) {
            Err(ResolveError::Unknown { suggestion, .. }) => {
                assert_eq!(suggestion.as_deref(), Some("hello"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve_atom("nothing-like-it-at-all", &s),
            Err(ResolveError::Unknown {
                suggestion: None,
                ..
            })
        ));
        assert!(matches!(
            resolve_atom("foo", &s),
            Err(ResolveError::Ambiguous { candidates, .. }) if candidates.len() == 2
        ));
        assert!(matches!(
            resolve_atom("hello-9", &s),
            Err(ResolveError::NoVersion { version, .. }) if version == "9"
        ));
        assert!(matches!(
            resolve_atom("sys-libs/hello", &s),
            Err(ResolveError::Unknown { .. })
        ));
    }

    #[test]
    fn drv_name_split() {
        assert_eq!(split_name_version("hello-2.10"), ("hello", Some("2.10")));
        assert_eq!(split_name_version("pcre2-10.42"), ("pcre2", Some("10.42")));
        assert_eq!(split_name_version("gzip-static"), ("gzip-static", None));
        assert_eq!(split_name_version("nginx"), ("nginx", None));
    }

    #[test]
    fn sandbox_command_line() {
        let s = RunSandbox {
            closure: vec![(PathBuf::from("/r/store/x-a"), "/bld/store/x-a".into())],
            usr: Some(PathBuf::from("/r/store/y-rt/usr")),
            etc: PathBuf::from("/tmp/etc"),
            net: false,
            cwd: None,
            ids: (1000, 100),
            new_session: true,
            env: vec![("PATH".into(), "/usr/bin".into())],
            program: "/bld/store/x-a/bin/a".into(),
            args: vec!["--x".into()],
        };
        let a: Vec<String> = bwrap_args(&s)
            .iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect();
        let joined = a.join(" ");
        assert!(joined.starts_with("--unshare-all --unshare-user --die-with-parent"));
        assert!(!joined.contains("--share-net"));
        assert!(joined.contains("--ro-bind /r/store/x-a /bld/store/x-a"));
        assert!(joined.contains("--ro-bind /r/store/y-rt/usr /usr"));
        assert!(joined.contains("--chdir / --remount-ro /"));
        assert!(joined.contains("--uid 1000 --gid 100"));
        assert!(joined.ends_with("-- /bld/store/x-a/bin/a --x"));
        let mut s2 = s.clone();
        s2.net = true;
        s2.cwd = Some(PathBuf::from("/home/u/p"));
        let j2 = bwrap_args(&s2)
            .iter()
            .map(|x| x.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(j2.contains("--share-net"));
        assert!(j2.contains("--bind /home/u/p /home/u/p --chdir /home/u/p"));
    }
}
