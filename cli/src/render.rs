//! Rendering of diagnostics for humans: miette's graphical handler (colours only on a terminal)
//! for parse and lowering diagnostics and for evaluation errors, plus the trimmed evaluation
//! trace.

use buildit_eval::EvalError;
use buildit_lang::{Diagnostic, SourceMap};
use miette::{GraphicalReportHandler, GraphicalTheme};

/// How to draw reports.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
    pub unicode: bool,
    /// Show every trace frame instead of the innermost few.
    pub full_trace: bool,
}

impl Style {
    /// Plain ASCII without colours: what tests snapshot.
    pub fn plain() -> Style {
        Style {
            color: false,
            unicode: false,
            full_trace: false,
        }
    }
}

fn handler(style: Style) -> GraphicalReportHandler {
    let theme = match (style.unicode, style.color) {
        (true, true) => GraphicalTheme::unicode(),
        (true, false) => GraphicalTheme::unicode_nocolor(),
        (false, _) => GraphicalTheme::none(),
    };
    // the plain style (tests, logs) never wraps, so output does not depend on path lengths
    GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_wrap_lines(style.color || style.unicode)
        .with_links(false)
}

/// miette's graphical handler panics on labels past column 65535 (a formatting width); far
/// beyond this column the plain rendering is used instead.
const MAX_GRAPHICAL_COLUMN: usize = 10_000;

/// Render a miette report (errors at the CLI edge, such as a failed build).
pub fn report(r: &miette::Report, style: Style) -> String {
    let mut out = String::new();
    if handler(style).render_report(&mut out, r.as_ref()).is_err() {
        out = format!("error: {r}\n");
    }
    out
}

/// Render one diagnostic.
pub fn diagnostic(sources: &SourceMap, d: &Diagnostic, style: Style) -> String {
    let too_wide = d.labels.iter().any(|l| {
        sources.get(l.span.file).is_some_and(|sf| {
            [l.span.start, l.span.end]
                .iter()
                .any(|o| sf.line_col(*o as usize).1 > MAX_GRAPHICAL_COLUMN)
        })
    });
    if too_wide {
        return d.render_plain(sources);
    }
    let report = d.to_report(sources);
    let mut out = String::new();
    if handler(style)
        .render_report(&mut out, report.as_ref())
        .is_err()
    {
        out = d.render_plain(sources);
    }
    out
}

/// Render several diagnostics, then a summary line when there is more than one.
pub fn diagnostics(sources: &SourceMap, ds: &[Diagnostic], style: Style) -> String {
    let mut out = String::new();
    for d in ds {
        out.push_str(&diagnostic(sources, d, style));
    }
    if ds.len() > 1 {
        out.push_str(&format!("{} errors\n", ds.len()));
    }
    out
}

const TRACE_LINES: usize = 6;

/// Render an evaluation error: its diagnostic (or the syntax errors of an imported file) and
/// the innermost frames of its trace.
pub fn eval_error(sources: &SourceMap, e: &EvalError, style: Style) -> String {
    let mut out = String::new();
    if !e.related().is_empty() {
        out.push_str(&diagnostics(sources, e.related(), style));
    } else {
        out.push_str(&diagnostic(sources, &e.to_diagnostic(), style));
    }
    let lines = e.trace_lines(sources);
    let n = if style.full_trace {
        lines.len()
    } else {
        lines.len().min(TRACE_LINES)
    };
    for l in &lines[..n] {
        out.push_str("  … ");
        out.push_str(l);
        out.push('\n');
    }
    if n < lines.len() {
        out.push_str(&format!(
            "  … {} more frames (use --show-trace to see them)\n",
            lines.len() - n
        ));
    }
    out
}
