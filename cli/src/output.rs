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
    /// `--json`: everything on stderr is a JSON event, `builtins.trace` messages included.
    pub json: bool,
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
pub use buildit_lang::text::plural;

/// A diagnostic as a JSON object, the shape `buildit check --json` lists and `--json` errors
/// use: `{ code, message, labels: [{ file, start, end, line, column, message }], help }`.
pub fn diagnostic_json(
    sources: Option<&buildit_lang::SourceMap>,
    d: &buildit_lang::Diagnostic,
) -> serde_json::Value {
    let labels: Vec<serde_json::Value> = d
        .labels
        .iter()
        .map(|l| {
            let file = sources.and_then(|s| s.get(l.span.file));
            let (line, column) = file
                .map(|f| f.line_col(l.span.start as usize))
                .unwrap_or((0, 0));
            serde_json::json!({
                "file": sources.map(|s| s.name(l.span.file)),
                "start": l.span.start, "end": l.span.end,
                "line": line, "column": column, "message": l.message,
            })
        })
        .collect();
    serde_json::json!({
        "code": d.code, "message": d.message, "labels": labels, "help": d.help,
    })
}

/// The lines a command run with `--json` writes on stderr for its error: one JSON object per
/// diagnostic, `{ "event": "error", code, message, labels, help }`, so that stderr holds only
/// JSON (after the build events, if any).
pub fn error_json_lines(e: &buildit_driver::DriverError) -> Vec<String> {
    let (sources, diagnostics) = e.diagnostics();
    diagnostics
        .iter()
        .map(|d| {
            let mut o = serde_json::Map::new();
            o.insert("event".into(), "error".into());
            if let serde_json::Value::Object(fields) = diagnostic_json(sources, d) {
                o.extend(fields);
            }
            serde_json::Value::Object(o).to_string()
        })
        .collect()
}
