//! Evaluation errors. [`EvalError`] is one pointer wide (the payload is boxed) so `Result<Value,
//! EvalError>` stays small on the hot path. Each error has an [`ErrorKind`] with a stable code
//! (`buildit::eval::…`), a message, the span where it happened, optional extra labels and help,
//! and an evaluation trace (innermost first) that callers extend as the error propagates.
//!
//! An error raised inside the standard library because of what a user's program passed it
//! carries a *blame*: the user's call that led there (found by the evaluator, see
//! `Evaluator::blame`). Such an error is shown at that call first, and the place in the
//! library where it was raised becomes the first line of its trace.

use buildit_lang::{Diagnostic, SourceMap, Span};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    UndefinedVariable,
    TypeError,
    MissingAttribute,
    MissingArgument,
    UnexpectedArgument,
    InfiniteRecursion,
    Overflow,
    DivisionByZero,
    Throw,
    Abort,
    AssertionFailed,
    IndexOutOfBounds,
    DuplicateAttribute,
    InvalidRegex,
    Json,
    NotAFunction,
    Incomparable,
    /// A file could not be read, a path does not exist, ...
    Io,
    /// An imported file has syntax errors (the diagnostics are in `related`).
    Parse,
    /// A feature buildit does not support (search paths, impure builtins without an EvalIo).
    Unsupported,
    /// Any other runtime failure of a builtin (bad argument value, ...).
    Invalid,
    /// A `derivation` call with bad attributes (missing name, bad output hash, ...).
    Derivation,
    /// The store refused an operation (bad name, unreadable source, database error).
    Store,
    /// A value does not match its `::` annotation (a run-time checked cast).
    Cast,
    /// Too many evaluations nested at once (endless recursion): see [`crate::limits`].
    MaxCallDepth,
    /// The process crossed the memory ceiling during evaluation: see [`crate::limits`].
    MemoryLimit,
    /// `fetchTarball` / `fetchGit` could not fetch, unpack or register their tree.
    Fetch,
    /// A fetched tree's hash is not the one the expression pins.
    HashMismatch,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::UndefinedVariable => "buildit::eval::undefined-variable",
            ErrorKind::TypeError => "buildit::eval::type-error",
            ErrorKind::MissingAttribute => "buildit::eval::missing-attribute",
            ErrorKind::MissingArgument => "buildit::eval::missing-argument",
            ErrorKind::UnexpectedArgument => "buildit::eval::unexpected-argument",
            ErrorKind::InfiniteRecursion => "buildit::eval::infinite-recursion",
            ErrorKind::Overflow => "buildit::eval::overflow",
            ErrorKind::DivisionByZero => "buildit::eval::division-by-zero",
            ErrorKind::Throw => "buildit::eval::throw",
            ErrorKind::Abort => "buildit::eval::abort",
            ErrorKind::AssertionFailed => "buildit::eval::assertion-failed",
            ErrorKind::IndexOutOfBounds => "buildit::eval::index-out-of-bounds",
            ErrorKind::DuplicateAttribute => "buildit::eval::duplicate-attribute",
            ErrorKind::InvalidRegex => "buildit::eval::invalid-regex",
            ErrorKind::Json => "buildit::eval::json",
            ErrorKind::NotAFunction => "buildit::eval::not-a-function",
            ErrorKind::Incomparable => "buildit::eval::incomparable",
            ErrorKind::Io => "buildit::eval::io",
            ErrorKind::Parse => "buildit::eval::parse",
            ErrorKind::Unsupported => "buildit::eval::unsupported",
            ErrorKind::Invalid => "buildit::eval::invalid-value",
            ErrorKind::Derivation => "buildit::eval::derivation",
            ErrorKind::Store => "buildit::eval::store",
            ErrorKind::Cast => "buildit::eval::cast",
            ErrorKind::MaxCallDepth => "buildit::eval::max-call-depth",
            ErrorKind::MemoryLimit => "buildit::eval::memory-limit",
            ErrorKind::Fetch => "buildit::eval::fetch",
            ErrorKind::HashMismatch => "buildit::eval::hash-mismatch",
        }
    }

    /// Whether `builtins.tryEval` catches it (as in Nix: `throw` and failed `assert`).
    pub fn catchable(self) -> bool {
        matches!(self, ErrorKind::Throw | ErrorKind::AssertionFailed)
    }

    /// A resource limit ([`crate::limits`]): the error records the evaluations it unwinds
    /// through, to show the recursion that reached the limit.
    pub fn is_limit(self) -> bool {
        matches!(self, ErrorKind::MaxCallDepth | ErrorKind::MemoryLimit)
    }

    fn default_help(self) -> Option<&'static str> {
        Some(match self {
            ErrorKind::UndefinedVariable => "define it with `let`, take it as a function argument, or check the spelling",
            ErrorKind::TypeError => "convert the value explicitly (e.g. `toString`) or fix the expression producing it",
            ErrorKind::MissingAttribute => "use `e.a or default` or `e ? a` when the attribute may be absent",
            ErrorKind::MissingArgument => "pass the argument, or give it a default in the pattern (`{ x ? default }:`)",
            ErrorKind::UnexpectedArgument => "remove the argument, or add `...` to the function's pattern to accept extra ones",
            ErrorKind::InfiniteRecursion => "a value depends on itself; break the cycle (e.g. refer to the previous stage of an overlay)",
            ErrorKind::Overflow => "integers are 64-bit signed; use floats for larger magnitudes",
            ErrorKind::DivisionByZero => "check the divisor before dividing",
            ErrorKind::Throw => "this error was raised by `throw`; `builtins.tryEval` can catch it",
            ErrorKind::Abort => "this error was raised by `abort` and cannot be caught",
            ErrorKind::AssertionFailed => "the condition of this `assert` is false",
            ErrorKind::IndexOutOfBounds => "check the list's length first (`builtins.length`)",
            ErrorKind::DuplicateAttribute => "each attribute may be defined once; merge the definitions or rename one",
            ErrorKind::InvalidRegex => "regular expressions use POSIX extended syntax",
            ErrorKind::Json => "only null, Booleans, numbers, strings, lists and sets convert to and from JSON",
            ErrorKind::NotAFunction => "only functions (and sets with `__functor`) can be applied to arguments",
            ErrorKind::Incomparable => "only numbers, strings, paths and lists of those can be ordered",
            ErrorKind::Io => "check that the path exists and is readable",
            ErrorKind::Parse => "fix the syntax errors reported for the imported file",
            ErrorKind::Unsupported => "buildit is pure: lookup paths and impure builtins are not available",
            ErrorKind::Invalid => return None,
            ErrorKind::Derivation => "a derivation needs `name`, `system` and `builder`; see docs/language.md, section Derivations",
            ErrorKind::Store => "check the path and the store (`buildit store verify`)",
            ErrorKind::Cast => "fix the data, or loosen the annotation",
            ErrorKind::MaxCallDepth => "a recursion that never reaches its base case? If it really is this deep, raise the limit with --max-call-depth N",
            ErrorKind::MemoryLimit => "an evaluation that grows without end? If it really needs more memory, raise the ceiling with --max-eval-memory SIZE",
            ErrorKind::Fetch => "check the URL (or the repository and revision); evaluation fetches only trees pinned by a hash or a git revision (docs/language.md, Fetching during evaluation)",
            ErrorKind::HashMismatch => "if the new content is what you want (check where it comes from), pin the hash printed as `got`",
        })
    }
}

/// One nested evaluation a limit error unwound through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub span: Span,
    /// What it calls (`f` for `f x`), or the expression's own text when it is not a call.
    pub name: String,
    pub call: bool,
}

/// How many frames a limit error keeps, and the longest cycle looked for among them.
const MAX_FRAMES: usize = 64;
const MAX_CYCLE: usize = 8;

#[derive(Clone, Debug)]
pub struct ErrorInner {
    pub kind: ErrorKind,
    pub message: String,
    pub span: Option<Span>,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
    /// Where the error passed through, innermost first: (span, what was being done).
    pub trace: Vec<(Span, String)>,
    /// Diagnostics of an imported file that failed to parse.
    pub related: Vec<Diagnostic>,
    /// For limit errors ([`ErrorKind::is_limit`]): the nested evaluations it unwound through,
    /// innermost first (bounded).
    pub frames: Vec<Frame>,
    /// For an error raised in the standard library: the call in the user's program that led
    /// there (the function expression of that call).
    pub blame: Option<Span>,
}

/// An evaluation error (boxed: one pointer).
#[derive(Clone)]
pub struct EvalError(pub Box<ErrorInner>);

impl EvalError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, span: Span) -> EvalError {
        EvalError(Box::new(ErrorInner {
            kind,
            message: message.into(),
            span: Some(span),
            labels: Vec::new(),
            help: None,
            trace: Vec::new(),
            related: Vec::new(),
            frames: Vec::new(),
            blame: None,
        }))
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn with_help(mut self, help: impl Into<String>) -> EvalError {
        self.0.help = Some(help.into());
        self
    }

    /// The user's call that led to this error in the standard library, if any.
    pub fn blame(&self) -> Option<Span> {
        self.0.blame
    }

    /// Blame the call at `site` (in the user's program) for this error of the library.
    pub fn with_blame(mut self, site: Span) -> EvalError {
        self.0.blame = Some(site);
        self
    }

    pub fn with_label(mut self, span: Span, msg: impl Into<String>) -> EvalError {
        self.0.labels.push((span, msg.into()));
        self
    }

    /// Record that the error passed through `span` while doing `what` (bounded).
    pub fn add_trace(mut self, span: Span, what: impl Into<String>) -> EvalError {
        if self.0.trace.len() < 64 {
            self.0.trace.push((span, what.into()));
        }
        self
    }

    /// Record one nested evaluation a limit error unwinds through (innermost first, bounded).
    pub fn add_frame(mut self, frame: Frame) -> EvalError {
        if self.0.frames.len() < MAX_FRAMES {
            self.0.frames.push(frame);
        }
        self
    }

    /// The shortest cycle among the innermost frames of a limit error (the recursion that
    /// reached it, after at most a few frames of the step that hit the limit), innermost
    /// first; empty when the frames do not repeat.
    pub fn cycle(&self) -> &[Frame] {
        for start in 0..4 {
            let f = self.0.frames.get(start..).unwrap_or_default();
            for p in 1..=MAX_CYCLE {
                let window = f.len().min(4 * p);
                if window >= 2 * p && (0..window - p).all(|i| f[i].span == f[i + p].span) {
                    return &f[..p];
                }
            }
        }
        &[]
    }

    /// The primary diagnostic (labels, help). The trace is rendered separately
    /// ([`EvalError::trace_lines`]) so callers can trim it.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let cycle = self.cycle();
        let mut message = self.0.message.clone();
        if !cycle.is_empty() {
            // the calls in the order they were made: outermost first, then once more
            let names: Vec<&str> = cycle.iter().rev().map(|f| f.name.as_str()).collect();
            let mut calls = names.clone();
            while calls.len() < 3 {
                calls.extend(&names);
            }
            let chain = calls.join(" → ");
            message = format!("{message}: {chain} → …");
        }
        let mut d = Diagnostic::error(self.0.kind.code(), message);
        if let Some(site) = self.0.blame {
            // the user's call first; where the library raised it is the trace's first line
            d = d.with_label(site, "the standard library fails in this call");
        } else if let Some(span) = self
            .0
            .span
            // `Span::default()` means "no location" (errors raised from the command line)
            // (a recursion that reached a limit is shown by its frames instead)
            .filter(|s| *s != Span::default() && cycle.is_empty())
        {
            d = d.with_label(span, primary_label(self.0.kind));
        }
        for (s, m) in self.0.labels.iter().filter(|(s, _)| *s != Span::default()) {
            d = d.with_label(*s, m.clone());
        }
        // each distinct frame of the cycle, with who calls whom
        for (i, f) in cycle.iter().enumerate() {
            if f.span == Span::default() {
                continue;
            }
            let caller = &cycle[(i + 1) % cycle.len()].name;
            let what = if !f.call {
                "evaluated again (and again) here".to_string()
            } else if *caller == f.name {
                format!("`{}` calls itself here", f.name)
            } else {
                format!("`{caller}` calls `{}` here", f.name)
            };
            d = d.with_label(f.span, what);
        }
        if let Some(h) = self
            .0
            .help
            .clone()
            .or(self.0.kind.default_help().map(String::from))
        {
            d = d.with_help(h);
        }
        d
    }

    /// `while <what> at file:line:col` lines, innermost first. A limit error's trace is the
    /// recursion its labels already show: each line appears once.
    /// A blamed error starts with the place in the library where it was raised.
    pub fn trace_lines(&self, sources: &SourceMap) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        if let (Some(_), Some(span)) = (self.0.blame, self.0.span) {
            lines.push(format!(
                "raised in the standard library at {} ({})",
                sources.position(span),
                primary_label(self.0.kind)
            ));
        }
        for (s, w) in self.0.trace.iter().filter(|(s, _)| *s != Span::default()) {
            let line = format!("while {} at {}", w, sources.position(*s));
            if !(self.0.kind.is_limit() && lines.contains(&line)) {
                lines.push(line);
            }
        }
        lines
    }

    pub fn related(&self) -> &[Diagnostic] {
        &self.0.related
    }
}

fn primary_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::UndefinedVariable => "not defined here",
        ErrorKind::TypeError => "wrong type",
        ErrorKind::MissingAttribute => "attribute missing",
        ErrorKind::MissingArgument => "called without this argument",
        ErrorKind::UnexpectedArgument => "unexpected argument",
        ErrorKind::InfiniteRecursion => "depends on itself",
        ErrorKind::Overflow => "overflows",
        ErrorKind::DivisionByZero => "divides by zero",
        ErrorKind::Throw => "thrown here",
        ErrorKind::Abort => "aborted here",
        ErrorKind::AssertionFailed => "assertion is false",
        ErrorKind::IndexOutOfBounds => "out of bounds",
        ErrorKind::DuplicateAttribute => "defined again here",
        ErrorKind::InvalidRegex => "invalid regular expression",
        ErrorKind::Json => "cannot convert",
        ErrorKind::NotAFunction => "not a function",
        ErrorKind::Incomparable => "cannot compare",
        ErrorKind::Io => "while reading this",
        ErrorKind::Parse => "imported here",
        ErrorKind::Unsupported => "not supported",
        ErrorKind::Invalid => "here",
        ErrorKind::Derivation => "in this derivation",
        ErrorKind::Store => "while adding this to the store",
        ErrorKind::Cast => "this annotation",
        ErrorKind::MaxCallDepth => "the limit was reached here",
        ErrorKind::MemoryLimit => "evaluating this",
        ErrorKind::Fetch => "while fetching this",
        ErrorKind::HashMismatch => "pinned here",
    }
}

impl fmt::Debug for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind.code(), self.0.message)
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for EvalError {}
