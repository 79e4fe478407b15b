//! How much `buildit` says on stderr besides errors, set once from the global options
//! `-q/--quiet`, `-v/--verbose` and `-L/--print-build-logs` and read where progress is shown.
//! A process-wide setting because it belongs to the invocation, not to any one command.

use std::sync::OnceLock;

/// The chattiness of this invocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verbosity {
    /// Errors only: no progress, no transcript, no notes.
    pub quiet: bool,
    /// Each finished download as well.
    pub verbose: bool,
    /// Every line of every build's log, prefixed with its package's name.
    pub print_build_logs: bool,
}

static VERBOSITY: OnceLock<Verbosity> = OnceLock::new();

/// Set the invocation's verbosity; the first call wins (`main` makes it, before any command).
pub fn set(v: Verbosity) {
    let _ = VERBOSITY.set(v);
}

/// The invocation's verbosity (the default, neither quiet nor verbose, when never set).
pub fn get() -> Verbosity {
    VERBOSITY.get().copied().unwrap_or_default()
}

/// A count and its noun: `1 derivation`, `2 derivations`, `0 derivations`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
