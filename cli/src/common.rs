//! What several commands share: the terminal style, the session (store, Debian lock, trace
//! output) every command opens and the evaluation memory ceiling.

use crate::render::Style;
pub use buildit_driver::eval::{absolute, cwd};
pub use buildit_driver::session::{store_layout, DEBIAN_LOCK_ENV};
use buildit_driver::{DebianLock, Session};
use buildit_store::StoreLayout;
use std::io::IsTerminal;
use std::path::Path;

pub fn style(full_trace: bool) -> Style {
    let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    Style {
        color: tty,
        unicode: tty,
        full_trace,
    }
}

/// The Debian lock given on the command line (`--debian-lock FILE` or `BUILDIT_DEBIAN_LOCK`),
/// read once by `main` before any command runs.
static DEBIAN_LOCK: std::sync::OnceLock<DebianLock> = std::sync::OnceLock::new();

/// Use `lock` instead of the embedded Debian lock in every session of this process.
pub fn use_debian_lock(lock: DebianLock) {
    let _ = DEBIAN_LOCK.set(lock);
}

/// `builtins.trace` messages: one line each on stderr (a JSON `trace` event with `--json`).
pub fn trace_to_stderr() -> buildit_driver::session::TraceFn {
    std::sync::Arc::new(|msg: &str| {
        if crate::output::get().json {
            eprintln!(
                "{}",
                serde_json::json!({ "event": "trace", "message": msg })
            );
        } else {
            eprintln!("trace: {msg}");
        }
    })
}

/// The session of a command: the store at `store_root` (or the default choice), the Debian
/// lock of the command line, and `builtins.trace` on stderr.
pub fn session(store_root: Option<&Path>, impure: bool) -> Session {
    session_at(store_layout(store_root)).with_impure_env(impure)
}

/// [`session`] over an already chosen store layout.
pub fn session_at(layout: StoreLayout) -> Session {
    Session::new(layout)
        .with_debian_lock(DEBIAN_LOCK.get().cloned())
        .with_trace(trace_to_stderr())
}

/// `--max-eval-memory`'s value: bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers
/// of 1024, optionally followed by `B` or `iB`); `0` turns the ceiling off. The same sizes as
/// the build limits take.
pub use buildit_builder::request::parse_size;

pub use buildit_driver::limits::{watch_memory, DEFAULT_MAX_EVAL_MEMORY};
