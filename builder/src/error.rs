//! Errors of the builder: why one build failed ([`BuildFailure`], carrying the last log lines and
//! the log path, as the sandbox contract requires) and why building could not even start
//! ([`BuildError`]). One enum for the crate so the CLI maps each case to one diagnostic code.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use buildit_store::StorePath;

/// Why a build that ran did not produce its outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// The builder exited with a non-zero status.
    Exit(i32),
    /// The builder was killed by a signal it did not get from us.
    Signal(i32),
    /// Wall-clock timeout.
    Timeout(Duration),
    /// No output for this long.
    Silent(Duration),
    /// The log grew past this many bytes.
    LogLimit(u64),
    /// The build's processes used more memory than this many bytes (killed by the OOM killer of
    /// its control group).
    MemoryLimit(u64),
    /// A process of the build failed to allocate past this many bytes, the per-process
    /// memory limit that stands in for a control group's (`RLIMIT_DATA`).
    ProcessMemoryLimit(u64),
    /// The build tried to run more processes at once than this.
    PidsLimit(u64),
    /// The outputs (or one file the build wrote) grew past this many bytes.
    OutputLimit(u64),
    /// The builder succeeded but did not create this output.
    MissingOutput(String),
    /// An in-process builtin (`builtin:NAME`) failed with this message.
    Builtin(String),
    /// A fixed-output derivation produced something else than declared.
    HashMismatch {
        output: String,
        algo: String,
        expected: String,
        actual: String,
    },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Exit(c) => write!(f, "builder exited with status {c}"),
            FailReason::Signal(s) => write!(f, "builder was killed by signal {s}"),
            FailReason::Timeout(d) => write!(f, "timed out after {} s", d.as_secs_f64()),
            FailReason::Silent(d) => {
                write!(f, "no output for {} s (max silent time)", d.as_secs_f64())
            }
            FailReason::LogLimit(n) => write!(f, "log exceeded the limit of {n} bytes"),
            FailReason::MemoryLimit(n) => write!(
                f,
                "the build exceeded its memory limit of {n} bytes (--max-memory) and was killed"
            ),
            FailReason::ProcessMemoryLimit(n) => write!(
                f,
                "a process of the build ran out of memory at the per-process memory limit of {n} bytes (--max-memory; without a control group the limit applies to each process)"
            ),
            FailReason::PidsLimit(n) => write!(
                f,
                "the build exceeded its limit of {n} processes (--max-pids)"
            ),
            FailReason::OutputLimit(n) => write!(
                f,
                "the build's output exceeded the limit of {n} bytes (--max-output)"
            ),
            FailReason::MissingOutput(o) => {
                write!(f, "builder succeeded but did not create output `{o}`")
            }
            FailReason::Builtin(m) => write!(f, "{m}"),
            FailReason::HashMismatch {
                output,
                algo,
                expected,
                actual,
            } => write!(
                f,
                "hash mismatch in fixed-output `{output}`: expected {algo}:{expected}, got {algo}:{actual}"
            ),
        }
    }
}

/// A failed build: what, why, the last log lines and where the full log is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildFailure {
    pub drv: StorePath,
    pub name: String,
    pub reason: FailReason,
    /// The last (up to 25) lines of the log.
    pub log_tail: Vec<String>,
    pub log_path: PathBuf,
    /// The build directory, when kept (`--keep-failed`).
    pub kept: Option<PathBuf>,
}

impl fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "build of {} failed: {}", self.drv, self.reason)?;
        if !self.log_tail.is_empty() {
            writeln!(f, "last {} log lines:", self.log_tail.len())?;
            for l in &self.log_tail {
                writeln!(f, "  > {l}")?;
            }
        }
        write!(f, "full log: {}", self.log_path.display())?;
        if let Some(k) = &self.kept {
            write!(f, "\nbuild directory kept at {}", k.display())?;
        }
        Ok(())
    }
}

/// Errors of the builder crate.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "bubblewrap (`bwrap`) was not found in PATH; install it with `apt-get install bubblewrap`"
    )]
    BwrapMissing,
    #[error("{0}")]
    NoUserNamespaces(crate::userns::Refusal),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(Box<BuildFailure>),
    #[error("{drv} is for system `{system}`, but this machine builds only x86_64-linux (no remote builders are configured)")]
    WrongSystem { drv: StorePath, system: String },
    #[error("no builtin builder `{name}` is available for {drv}")]
    UnknownBuiltin { drv: StorePath, name: String },
    #[error("builtin:{name} runs outside the sandbox and may only build fixed-output derivations, but {drv} declares no output hash; nothing was built")]
    BuiltinNeedsFixedOutput { drv: StorePath, name: String },
    #[error("cannot read derivation {drv}: {message}")]
    BadDerivation { drv: StorePath, message: String },
    #[error(transparent)]
    Request(#[from] crate::request::RequestError),
    #[error("store: {0}")]
    Store(String),
    #[error("{failed} of {total} builds failed")]
    Several { failed: usize, total: usize },
    #[error("dependency {dep} of {drv} failed")]
    DependencyFailed { drv: StorePath, dep: StorePath },
    /// Substitution failed for a reason other than a path being absent (a refused download,
    /// an unreachable repository while fetching); nothing of it was registered.
    #[error("{message}")]
    Substitute { message: String },
    /// A remote execution endpoint (see [`crate::schedule::RemoteExecutor`]) could not run
    /// the build or gave back a result that does not verify; nothing of it was registered.
    #[error("remote execution of {drv}: {message}")]
    Remote {
        drv: StorePath,
        message: String,
        /// The endpoint could not be reached or broke off (`--remote-fallback` builds locally).
        unavailable: bool,
    },
    /// Building was not allowed (substitute-only) and no repository offers these paths.
    #[error("{} not available from any repository (substitute-only: nothing is built): {detail}", if paths.len() == 1 { "1 path is".to_string() } else { format!("{} paths are", paths.len()) })]
    NotSubstituted {
        paths: Vec<StorePath>,
        detail: String,
    },
}

impl BuildError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            what: what.into(),
            source,
        }
    }
}
