//! `buildit debian ...`: Debian packages as pinned inputs. `buildit debian lock PKG...`
//! resolves the dependency closure of the named packages from apt's indexes (the machine's
//! `/var/lib/apt/lists`, or a private apt root that `--update` sets up and refreshes with the
//! machine's Debian mirrors) and writes the lock file the package set reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use buildit_stdlib::debian::{self, DebianError, Index, Lock, LOCK_VERSION};
use clap::{Args, Subcommand};

/// `buildit debian`.
#[derive(Args, Debug)]
pub struct DebianArgs {
    #[command(subcommand)]
    pub command: DebianCommand,
}

/// The `buildit debian` subcommands.
#[derive(Subcommand, Debug)]
pub enum DebianCommand {
    /// Resolve packages and their dependency closure into a lock file
    #[command(after_help = "Examples:\n  \
        buildit debian lock gcc make --output stdlib/debian/bookworm.lock\n  \
        buildit debian lock --output stdlib/debian/bookworm.lock   (refresh: same packages as the lock's header)\n  \
        buildit debian lock hello --apt-root /tmp/apt --update     (private apt indexes, fetched now)")]
    Lock(LockArgs),
}

/// `buildit debian lock`.
#[derive(Args, Debug)]
pub struct LockArgs {
    /// Packages to lock (`name` or `name=version`); none means the roots of the existing
    /// lock at --output (a refresh)
    pub packages: Vec<String>,
    /// The Debian release (its `-updates` and `-security` suites are included)
    #[arg(long, default_value = "bookworm")]
    pub suite: String,
    /// Where to write the lock (default: standard output)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Read the indexes of a private apt root (its var/lib/apt/lists) instead of the machine's
    #[arg(long, value_name = "DIR")]
    pub apt_root: Option<PathBuf>,
    /// With --apt-root: write its sources (the machine's Debian mirrors, for --suite) and run
    /// `apt-get update` in it first
    #[arg(long, requires = "apt_root")]
    pub update: bool,
    /// The architecture to resolve for (with `all`)
    #[arg(long, default_value = "amd64")]
    pub arch: String,
}

/// An error at the command's edge: a stable code, the message and a help line.
#[derive(Debug)]
pub struct CmdError {
    pub code: &'static str,
    pub message: String,
    pub help: String,
}

impl CmdError {
    fn new(code: &'static str, message: impl Into<String>, help: impl Into<String>) -> CmdError {
        CmdError {
            code,
            message: message.into(),
            help: help.into(),
        }
    }
}

impl From<DebianError> for CmdError {
    fn from(e: DebianError) -> CmdError {
        let message = e.to_string();
        match e {
            DebianError::UnknownPackage { .. } => CmdError::new(
                "buildit::debian::unknown-package",
                message,
                "package names are binary package names as in `apt-cache show NAME`; run `apt-get update` if the indexes are old",
            ),
            DebianError::NoSuchVersion { .. } => CmdError::new(
                "buildit::debian::no-such-version",
                message,
                "pin one of the available versions, or drop `=VERSION` to take the newest",
            ),
            DebianError::Unsatisfiable { .. } => CmdError::new(
                "buildit::debian::unsatisfiable",
                message,
                "the indexes have no version that fits; check the suite (--suite) and run `apt-get update`",
            ),
            DebianError::NoIndexes { .. } => CmdError::new(
                "buildit::debian::no-index",
                message,
                "run `apt-get update` (or use --apt-root DIR --update for a private apt root)",
            ),
            DebianError::BadLock { .. } => CmdError::new(
                "buildit::debian::bad-lock",
                message,
                "regenerate it: buildit debian lock PKG... --output FILE",
            ),
            DebianError::Io { .. } => CmdError::new("buildit::debian::io", message, "check the path and its permissions"),
        }
    }
}

/// What `lock` did, for the summary line and tests.
#[derive(Debug)]
pub struct LockSummary {
    pub lock: Lock,
    pub index_files: usize,
    pub seconds: f64,
}

/// Run `buildit debian ...`; `report` receives the error (the binary renders it).
pub fn run(args: &DebianArgs, report: &mut dyn FnMut(&CmdError)) -> ExitCode {
    match &args.command {
        DebianCommand::Lock(a) => match lock(a) {
            Ok(s) => {
                eprintln!(
                    "locked {} packages ({} roots) for {} from {} indexes in {:.2} s",
                    s.lock.packages.len(),
                    s.lock.roots.len(),
                    s.lock.suite,
                    s.index_files,
                    s.seconds
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                report(&e);
                ExitCode::from(1)
            }
        },
    }
}

/// `buildit debian lock`: resolve and write (or print) the lock.
pub fn lock(a: &LockArgs) -> Result<LockSummary, CmdError> {
    let start = Instant::now();
    let (roots, suite) = if a.packages.is_empty() {
        let Some(out) = &a.output else {
            return Err(CmdError::new(
                "buildit::debian::no-packages",
                "no packages to lock",
                "name packages (buildit debian lock gcc make ...), or give --output FILE of an existing lock to refresh it",
            ));
        };
        let old = debian::read_lock(out).map_err(|e| match e {
            DebianError::Io { .. } => CmdError::new(
                "buildit::debian::no-packages",
                format!(
                    "no packages named and no lock to refresh at {}",
                    out.display()
                ),
                "name the packages to lock: buildit debian lock PKG... --output FILE",
            ),
            e => e.into(),
        })?;
        (old.roots, old.suite)
    } else {
        (a.packages.clone(), a.suite.clone())
    };
    let lists = match &a.apt_root {
        Some(root) => {
            if a.update {
                setup_apt_root(root, &suite, &a.arch)?;
            }
            root.join("var/lib/apt/lists")
        }
        None => PathBuf::from(debian::DEFAULT_LISTS_DIR),
    };
    let files = debian::apt_index_files(&lists, &suite, &a.arch)?;
    let index = Index::load(&files)?;
    let root_refs: Vec<&str> = roots.iter().map(String::as_str).collect();
    let packages = debian::resolve_for(&index, &root_refs, &a.arch)?;
    let lock = Lock {
        version: LOCK_VERSION,
        suite,
        architecture: a.arch.clone(),
        roots,
        packages,
    };
    match &a.output {
        Some(p) => debian::write_lock(p, &lock)?,
        None => print!("{}", debian::render_lock(&lock, "FILE")),
    }
    Ok(LockSummary {
        lock,
        index_files: files.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Make `root` a private apt root for `suite` (sources from the machine's Debian mirrors,
/// signed by Debian's archive keyring) and run `apt-get update` in it.
fn setup_apt_root(root: &Path, suite: &str, arch: &str) -> Result<(), CmdError> {
    let io = |what: &str, e: std::io::Error| {
        CmdError::new(
            "buildit::debian::apt-root",
            format!("{what} in {}: {e}", root.display()),
            "give --apt-root a writable directory",
        )
    };
    let mirrors = buildit_builder::fetch::Mirrors::from_apt(Path::new(
        buildit_builder::fetch::DEFAULT_APT_ROOT,
    ))
    .map_err(|e| {
        CmdError::new(
            "buildit::debian::apt-config",
            e.to_string(),
            "check /etc/apt/sources.list and /etc/apt/sources.list.d",
        )
    })?;
    let debian = mirrors.get("debian").unwrap_or(&[]).join(" ");
    let security = mirrors.get("debian-security").unwrap_or(&[]).join(" ");
    if debian.is_empty() {
        return Err(CmdError::new(
            "buildit::debian::no-mirror",
            "the apt configuration names no Debian mirror",
            "add a Debian entry to /etc/apt/sources.list.d/debian.sources",
        ));
    }
    for d in [
        "etc/apt/sources.list.d",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| io("creating directories", e))?;
    }
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        std::fs::write(&status, "").map_err(|e| io("writing the dpkg status", e))?;
    }
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let mut sources = format!(
        "Types: deb\nURIs: {debian}\nSuites: {suite} {suite}-updates\nComponents: main\nSigned-By: {keyring}\n"
    );
    if !security.is_empty() {
        sources.push_str(&format!(
            "\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\nSigned-By: {keyring}\n"
        ));
    }
    std::fs::write(root.join("etc/apt/sources.list.d/debian.sources"), sources)
        .map_err(|e| io("writing the sources", e))?;
    let abs = std::path::absolute(root).map_err(|e| io("resolving", e))?;
    let out = std::process::Command::new("apt-get")
        .arg("update")
        .arg("-q")
        .arg(format!("-oDir={}", abs.display()))
        .arg(format!(
            "-oDir::State::status={}",
            abs.join("var/lib/dpkg/status").display()
        ))
        .arg(format!("-oAPT::Architecture={arch}"))
        .arg("-oDir::Etc::trusted=/nonexistent")
        .arg("-oDir::Etc::trustedparts=/nonexistent")
        .arg("-oAcquire::Languages=none")
        .arg("-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
        .output()
        .map_err(|e| {
            CmdError::new(
                "buildit::debian::apt-get",
                format!("cannot run apt-get: {e}"),
                "--update needs apt-get (Debian's apt package)",
            )
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(CmdError::new(
            "buildit::debian::apt-get",
            format!("apt-get update in {} failed:\n{}", root.display(), err.trim()),
            "check the network and the mirror; the keyring comes from the debian-archive-keyring package",
        ));
    }
    Ok(())
}
