//! Diagnostics as plain data. Parsing (and later type checking) never fails as a function: it
//! returns its result plus a list of [`Diagnostic`]s. They become `miette` reports only at the
//! edge (`cli`), through [`Diagnostic::to_report`], so the REPL, the CLI, the test corpus and a
//! future LSP all share one representation.

use crate::span::{SourceMap, Span};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A labelled span inside a diagnostic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One problem found in a source: a stable code (`buildit::parse::unexpected-token`), a one-line
/// message, labelled spans (the first is the primary one) and an optional help line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn primary_span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }

    /// A miette report carrying the source text of the primary label's file. Labels in other
    /// files are mentioned in the message (miette renders one source per report).
    pub fn to_report(&self, sources: &SourceMap) -> miette::Report {
        let mut extra = String::new();
        let file = self.primary_span().map(|s| s.file);
        let mut labels = Vec::new();
        for l in &self.labels {
            if Some(l.span.file) == file {
                labels.push(miette::LabeledSpan::new_with_span(
                    if l.message.is_empty() {
                        None
                    } else {
                        Some(l.message.clone())
                    },
                    miette::SourceSpan::from(l.span.range()),
                ));
            } else {
                extra.push_str(&format!(
                    "\n  at {}: {}",
                    sources.position(l.span),
                    l.message
                ));
            }
        }
        let severity = match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        };
        let mut diag = miette::MietteDiagnostic::new(format!("{}{}", self.message, extra))
            .with_code(self.code)
            .with_severity(severity)
            .with_labels(labels);
        if let Some(h) = &self.help {
            diag = diag.with_help(h.clone());
        }
        let report = miette::Report::new(diag);
        match file.and_then(|f| sources.get(f)) {
            Some(f) => report
                .with_source_code(miette::NamedSource::new(f.name.clone(), f.text.to_string())),
            None => report,
        }
    }

    /// A compact, stable, plain-text rendering used by the test corpora:
    /// `error[code]: message` then `  --> file:line:col: label` lines and `  help: ...`.
    pub fn render_plain(&self, sources: &SourceMap) -> String {
        let mut out = format!(
            "{}[{}]: {}\n",
            match self.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            self.code,
            self.message
        );
        for l in &self.labels {
            out.push_str(&format!(
                "  --> {}: {}\n",
                sources.position(l.span),
                l.message
            ));
        }
        if let Some(h) = &self.help {
            out.push_str(&format!("  help: {}\n", h));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}
