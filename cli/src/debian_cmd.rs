//! `buildit debian ...`: Debian packages as pinned inputs. `buildit debian lock PKG...`
//! resolves the dependency closure of the named packages from apt's indexes (the machine's
//! `/var/lib/apt/lists`, or a private apt root that `--update` sets up and refreshes with the
//! machine's Debian mirrors) and writes the lock file the package set reads. The work is
//! `buildit_debian::make_lock`; this module parses the arguments, writes or prints the lock and
//! gives each error its code and help. `--source NAME[=VERSION]` also records Debian source
//! packages (their `.dsc` and files, from the deb-src `Sources` indexes) as `[[source]]`
//! tables after the binary packages (`buildit_debian::source_lock`); a binary lock written
//! over a file keeps the file's `[[source]]` tables.

use crate::output::plural;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use buildit_debian::source_lock::{merge_sources, parse_sources, with_sources, SourceLockEntry};
use buildit_debian::{self as debian, LockRequest, LockSummary};
use buildit_driver::debian_src::{self, SourceIndexes};
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
        buildit debian lock hello --apt-root <dir> --update   # private apt indexes, fetched now\n  \
        buildit debian lock --source hello --apt-root <dir> --update --output my.lock   # a source package")]
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
    /// Also lock this Debian source package (`name` or `name=version`, repeatable): its .dsc
    /// and files from the deb-src Sources indexes (with --update, fetched into --apt-root)
    #[arg(long = "source", value_name = "NAME[=VERSION]")]
    pub sources: Vec<String>,
}

/// Run `buildit debian ...`.
pub fn run_debian(args: &DebianArgs) -> Result<ExitCode, DriverError> {
    match &args.command {
        DebianCommand::Lock(a) if !a.sources.is_empty() => lock_sources(a),
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
        Some(p) => {
            let kept = existing_sources(p)?;
            if kept.is_empty() {
                debian::write_lock(p, &s.lock)?
            } else {
                let text = debian::render_lock(&s.lock, &p.to_string_lossy());
                write_atomically(p, &with_sources(&text, &kept))?
            }
        }
        None => print!("{}", debian::render_lock(&s.lock, "FILE")),
    }
    Ok(s)
}

/// The text of the lock at `path` and its `[[source]]` tables; `None` when there is no file.
fn existing_lock(path: &Path) -> Result<Option<(String, Vec<SourceLockEntry>)>, DriverError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(debian::DebianError::Io {
                path: path.to_path_buf(),
                source,
            }
            .into())
        }
    };
    let sources = parse_sources(&text).map_err(|why| debian::DebianError::BadLock {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(Some((text, sources)))
}

fn existing_sources(path: &Path) -> Result<Vec<SourceLockEntry>, DriverError> {
    Ok(existing_lock(path)?.map(|(_, s)| s).unwrap_or_default())
}

fn write_atomically(path: &Path, text: &str) -> Result<(), DriverError> {
    let io = |source| debian::DebianError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("lock.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// `buildit debian lock --source NAME...`: the source packages from the `Sources` indexes as
/// `[[source]]` tables after the binary lock: a fresh one when packages are named, else the
/// existing file's (or an empty header), its other source tables kept.
fn lock_sources(a: &LockArgs) -> Result<ExitCode, DriverError> {
    let start = std::time::Instant::now();
    let indexes = SourceIndexes {
        apt_root: a.apt_root.clone(),
        update: a.update,
        suite: a.suite.clone(),
        arch: a.arch.clone(),
    };
    let index = indexes.load()?;
    let new = debian_src::lock_sources(&index, &a.sources)?;
    let existing = match &a.output {
        Some(p) => existing_lock(p)?,
        None => None,
    };
    let output = a
        .output
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "FILE".to_string());
    let binary = if !a.packages.is_empty() {
        let s = debian::make_lock(&LockRequest {
            packages: a.packages.clone(),
            suite: a.suite.clone(),
            arch: a.arch.clone(),
            refresh: None,
            apt_root: a.apt_root.clone(),
            update: false,
        })?;
        debian::render_lock(&s.lock, &output)
    } else if let Some((text, _)) = &existing {
        text.clone()
    } else {
        let empty = debian::Lock {
            version: debian::LOCK_VERSION,
            suite: a.suite.clone(),
            architecture: a.arch.clone(),
            roots: Vec::new(),
            packages: Vec::new(),
        };
        debian::render_lock(&empty, &output)
    };
    let old = existing.map(|(_, s)| s).unwrap_or_default();
    let text = with_sources(&binary, &merge_sources(old, new.clone()));
    match &a.output {
        Some(p) => write_atomically(p, &text)?,
        None => print!("{text}"),
    }
    let names: Vec<String> = new
        .iter()
        .map(|e| format!("{} {}", e.name, e.version))
        .collect();
    eprintln!(
        "locked {} ({}) for {} from {} in {:.2} s",
        plural(new.len(), "source package", "source packages"),
        names.join(", "),
        a.suite,
        plural(index.files.len(), "Sources index", "Sources indexes"),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
