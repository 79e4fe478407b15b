//! Rendering of diagnostics for humans: miette's graphical handler (colours only on a terminal)
//! for parse and lowering diagnostics and for evaluation errors, plus the trimmed evaluation
//! trace.
//!
//! Everything from user input (source snippets, messages quoting user strings, file names) is
//! passed through [`escape_controls`] first: a control character such as ESC would otherwise
//! reach the terminal and could rewrite it, so it is shown as `\u{1b}` instead.

use buildit_eval::EvalError;
use buildit_lang::{Diagnostic, FileId, SourceMap, Span};
use miette::{GraphicalReportHandler, GraphicalTheme};
use std::borrow::Cow;

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

/// Render a miette report (errors at the CLI edge, such as a failed build). Without colours
/// every control character but line breaks in the output came from the report's text and is
/// escaped; with colours, the graphical handler's own escape sequences are kept.
pub fn report(r: &miette::Report, style: Style) -> String {
    let mut out = String::new();
    if handler(style).render_report(&mut out, r.as_ref()).is_err() {
        out = format!("error: {r}\n");
    }
    if style.color {
        out
    } else {
        escape_controls(&out).into_owned()
    }
}

/// Whether `c` must not reach a terminal raw: C0 controls but tab and line feed, DEL and C1
/// controls (a carriage return only when it does not end a line).
fn is_unsafe_control(c: char, next: Option<char>) -> bool {
    match c {
        '\n' | '\t' => false,
        '\r' => next != Some('\n'),
        c => c.is_control(),
    }
}

/// `s` with every unsafe control character shown as a Rust-style escape (`\u{1b}` for ESC).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    let mut chars = s.chars().peekable();
    let mut out: Option<String> = None;
    let mut at = 0;
    while let Some(c) = chars.next() {
        if is_unsafe_control(c, chars.peek().copied()) {
            let o = out.get_or_insert_with(|| s[..at].to_string());
            o.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else if let Some(o) = &mut out {
            o.push(c);
        }
        at += c.len_utf8();
    }
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(s),
    }
}

/// A copy of `sources` whose texts have their control characters escaped, and `d` with its
/// strings escaped and its spans moved to match; `None` when nothing needs escaping.
fn escaped(sources: &SourceMap, d: &Diagnostic) -> Option<(SourceMap, Diagnostic)> {
    let files: Vec<FileId> = (0u32..)
        .map(FileId)
        .take_while(|f| sources.get(*f).is_some())
        .collect();
    let used = |f: &FileId| d.labels.iter().any(|l| l.span.file == *f);
    let dirty_file = |f: &FileId| {
        sources.get(*f).is_some_and(|sf| {
            matches!(escape_controls(&sf.text), Cow::Owned(_))
                || matches!(escape_controls(&sf.name), Cow::Owned(_))
        })
    };
    let dirty_text = |s: &str| matches!(escape_controls(s), Cow::Owned(_));
    let dirty = dirty_text(&d.message)
        || d.labels.iter().any(|l| dirty_text(&l.message))
        || d.help.as_deref().is_some_and(dirty_text)
        || files.iter().filter(|f| used(f)).any(dirty_file);
    if !dirty {
        return None;
    }
    // per file: the byte offsets that moved, with how far (sorted), to move the spans
    let mut shifts: Vec<Vec<(u32, u32)>> = Vec::new();
    let mut out = SourceMap::new();
    for f in &files {
        let Some(sf) = sources.get(*f) else { break };
        let name = escape_controls(&sf.name).into_owned();
        if !used(f) || matches!(escape_controls(&sf.text), Cow::Borrowed(_)) {
            out.add(name, sf.text.clone());
            shifts.push(Vec::new());
            continue;
        }
        let mut text = String::with_capacity(sf.text.len() + 16);
        let mut moved = Vec::new();
        let mut extra = 0u32;
        let mut chars = sf.text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if is_unsafe_control(c, chars.peek().map(|(_, n)| *n)) {
                let e = format!("\\u{{{:x}}}", u32::from(c));
                // offsets after this character move by the escape's extra length
                extra += (e.len() - c.len_utf8()) as u32;
                text.push_str(&e);
                moved.push((u32::try_from(i + c.len_utf8()).unwrap_or(u32::MAX), extra));
            } else {
                text.push(c);
            }
        }
        out.add(name, text);
        shifts.push(moved);
    }
    let shift = |file: FileId, o: u32| -> u32 {
        let moved = shifts
            .get(file.0 as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // the extra length of every escape that ends at or before `o`
        match moved.partition_point(|(at, _)| *at <= o) {
            0 => o,
            n => o + moved[n - 1].1,
        }
    };
    let mut d = d.clone();
    d.message = escape_controls(&d.message).into_owned();
    d.help = d.help.map(|h| escape_controls(&h).into_owned());
    for l in &mut d.labels {
        l.message = escape_controls(&l.message).into_owned();
        l.span = Span {
            file: l.span.file,
            start: shift(l.span.file, l.span.start),
            end: shift(l.span.file, l.span.end),
        };
    }
    Some((out, d))
}

/// Render one diagnostic.
pub fn diagnostic(sources: &SourceMap, d: &Diagnostic, style: Style) -> String {
    match escaped(sources, d) {
        Some((sources, d)) => diagnostic_raw(&sources, &d, style),
        None => diagnostic_raw(sources, d, style),
    }
}

fn diagnostic_raw(sources: &SourceMap, d: &Diagnostic, style: Style) -> String {
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

/// Render any error of the driver: diagnostics at their sources (and the note after them), an
/// evaluation error with its trace, or the coded diagnostic of a store, build, image or
/// request error. Every command's error is shown through here.
pub fn error(e: &buildit_driver::DriverError, style: Style) -> String {
    use buildit_driver::DriverError;
    match e {
        DriverError::Eval { sources, error } => eval_error(sources, error, style),
        DriverError::Diagnostics {
            sources,
            diagnostics: ds,
            note,
        } => {
            let mut out = diagnostics(sources, ds, style);
            if let Some(n) = note {
                out.push_str(&escape_controls(n));
                out.push('\n');
            }
            out
        }
        other => {
            let (_, ds) = other.diagnostics();
            diagnostics(&SourceMap::new(), &ds, style)
        }
    }
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
        out.push_str(&escape_controls(l));
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

/// The REPL's renderer: this module's functions with one style.
pub struct ReplRender(pub Style);

impl buildit_driver::repl::Render for ReplRender {
    fn diagnostics(&self, sources: &SourceMap, diagnostics: &[Diagnostic]) -> String {
        self::diagnostics(sources, diagnostics, self.0)
    }
    fn eval_error(&self, sources: &SourceMap, error: &EvalError) -> String {
        self::eval_error(sources, error, self.0)
    }
    fn error(&self, error: &buildit_driver::DriverError) -> String {
        self::error(error, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape_controls("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            escape_controls("\u{7f}\u{9b}\r\n\r"),
            "\\u{7f}\\u{9b}\r\n\\u{d}"
        );
    }

    /// Spans after an escaped character move with it: the label still points at the same text.
    #[test]
    fn spans_follow_the_escaped_text() {
        let mut sources = SourceMap::new();
        let text = "\"\u{1b}[31m\" + 1";
        let file = sources.add("t.bld", text);
        let at = text.find('+').expect("a plus") as u32;
        let d = Diagnostic::error("buildit::test::control-chars", "bad \u{1b}]0;title\u{7}")
            .with_label(
                Span {
                    file,
                    start: at,
                    end: at + 1,
                },
                "here",
            );
        let out = diagnostic(&sources, &d, Style::plain());
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out}");
        assert!(out.contains("bad \\u{1b}]0;title\\u{7}"), "{out}");
        assert!(out.contains("\"\\u{1b}[31m\" + 1"), "{out}");
        // the label's marker (`|` for a one-character span) is under the `+`, 6 columns further
        // right than in the raw text
        let lines: Vec<&str> = out.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains("+ 1"))
            .unwrap_or_else(|| panic!("no source line in {out}"));
        let marker = lines
            .get(at + 1)
            .unwrap_or_else(|| panic!("no marker line in {out}"));
        assert_eq!(lines[at].find('+'), marker.rfind('|'), "{out}");
    }
}
