//! `buildit debian ...`: Debian packages as pinned inputs. `buildit debian lock PKG...`
//! resolves the dependency closure of the named packages from apt's indexes (the machine's
//! `/var/lib/apt/lists`, or a private apt root that `--update` sets up and refreshes with the
//! machine's Debian mirrors) and writes the lock file the package set reads. The work is
//! `buildit_debian::make_lock`; this module parses the arguments, writes or prints the lock and
//! gives each error its code and help.

use std::path::PathBuf;
use std::process::ExitCode;

use buildit_debian::{self as debian, DebianError, LockRequest, LockSummary};
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
            DebianError::BadIndex { .. } => CmdError::new(
                "buildit::debian::bad-index",
                message,
                "run `apt-get update` to fetch the indexes again",
            ),
            DebianError::NoPackages => CmdError::new(
                "buildit::debian::no-packages",
                message,
                "name packages (buildit debian lock gcc make ...), or give --output FILE of an existing lock to refresh it",
            ),
            DebianError::NoLockToRefresh { .. } => CmdError::new(
                "buildit::debian::no-packages",
                message,
                "name the packages to lock: buildit debian lock PKG... --output FILE",
            ),
            DebianError::AptConfig { .. } | DebianError::BadSources { .. } => CmdError::new(
                "buildit::debian::apt-config",
                message,
                "check /etc/apt/sources.list and /etc/apt/sources.list.d",
            ),
            DebianError::NoMirror { .. } => CmdError::new(
                "buildit::debian::no-mirror",
                message,
                "add a Debian entry to /etc/apt/sources.list.d/debian.sources",
            ),
            DebianError::AptRoot { .. } => CmdError::new(
                "buildit::debian::apt-root",
                message,
                "give --apt-root a writable directory",
            ),
            DebianError::AptGetSpawn { .. } => CmdError::new(
                "buildit::debian::apt-get",
                message,
                "--update needs apt-get (Debian's apt package)",
            ),
            DebianError::AptGet { .. } => CmdError::new(
                "buildit::debian::apt-get",
                message,
                "check the network and the mirror; the keyring comes from the debian-archive-keyring package",
            ),
            DebianError::Io { .. } => CmdError::new("buildit::debian::io", message, "check the path and its permissions"),
        }
    }
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

/// `buildit debian lock`: resolve, then write the lock to `--output` or print it.
pub fn lock(a: &LockArgs) -> Result<LockSummary, CmdError> {
    let s = debian::make_lock(&LockRequest {
        packages: a.packages.clone(),
        suite: a.suite.clone(),
        arch: a.arch.clone(),
        refresh: a.output.clone(),
        apt_root: a.apt_root.clone(),
        update: a.update,
    })?;
    match &a.output {
        Some(p) => debian::write_lock(p, &s.lock)?,
        None => print!("{}", debian::render_lock(&s.lock, "FILE")),
    }
    Ok(s)
}
