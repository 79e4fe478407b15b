//! `buildit debian ...`: Debian packages as pinned inputs. `buildit debian lock PKG...`
//! resolves the dependency closure of the named packages from apt's indexes (the machine's
//! `/var/lib/apt/lists`, or a private apt root that `--update` sets up and refreshes with the
//! machine's Debian mirrors) and writes the lock file the package set reads. The work is
//! `buildit_debian::make_lock`; this module parses the arguments, writes or prints the lock and
//! gives each error its code and help.

use crate::output::plural;
use std::path::PathBuf;
use std::process::ExitCode;

use buildit_debian::{self as debian, LockRequest, LockSummary};
use buildit_driver::DriverError;
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
        buildit debian lock gcc make --output my.lock\n  \
        buildit debian lock --output my.lock      # refresh: the roots of the lock's header, current indexes\n  \
        buildit debian lock hello --apt-root <dir> --update   # private apt indexes, fetched now")]
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

/// Run `buildit debian ...`.
pub fn run_debian(args: &DebianArgs) -> Result<ExitCode, DriverError> {
    match &args.command {
        DebianCommand::Lock(a) => {
            let s = lock(a)?;
            eprintln!(
                "locked {} ({}) for {} from {} in {:.2} s",
                plural(s.lock.packages.len(), "package", "packages"),
                plural(s.lock.roots.len(), "root", "roots"),
                s.lock.suite,
                plural(s.index_files, "index", "indexes"),
                s.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `buildit debian lock`: resolve, then write the lock to `--output` or print it.
pub fn lock(a: &LockArgs) -> Result<LockSummary, DriverError> {
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
