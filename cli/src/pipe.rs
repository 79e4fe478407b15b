//! A closed standard output or error ends `buildit` the way it ends other Unix tools.
//!
//! Rust starts programs with `SIGPIPE` ignored, so a write to a pipe whose reader is gone
//! (`buildit search | head -1`) fails with `EPIPE`, and `println!` turns that failure into a
//! panic. The signal stays ignored (the builder and the sandbox rely on `EPIPE` for their own
//! pipes); instead the panic hook recognises this one panic and [`die_of_sigpipe`] ends the
//! process by the signal it would have received, silently, with the status a shell reports for
//! `yes | head -1`'s `yes`.

use std::any::Any;

/// Whether a panic payload is the standard library's report of a print to a closed pipe
/// (`failed printing to stdout: Broken pipe (os error 32)`, or the same for stderr).
pub fn is_broken_pipe_panic(payload: &(dyn Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to std")
        && msg.contains(&std::io::Error::from_raw_os_error(libc::EPIPE).to_string())
}

/// End the process by `SIGPIPE` with its default action (termination, no core, no message).
pub fn die_of_sigpipe() -> ! {
    // SAFETY: restoring a signal's default disposition and raising it in this thread are plain
    // system calls with no memory effects; no handler of ours runs
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // raise() delivers a default-action SIGPIPE before it returns; this line is reached only
    // if the signal is blocked, and then exits with the status a shell shows for it
    std::process::exit(128 + libc::SIGPIPE)
}
