//! `buildit audit IMAGE|DIR|ATOM`: the closure's packages against OSV advisories (the work is
//! `buildit_driver::audit`; this file prints the report as text, JSON or SARIF, writes the
//! OpenVEX document `--emit-vex` asks for, and turns `--fail-on` into the exit status), and
//! `buildit audit --update`, which downloads the advisory dumps.

use std::path::PathBuf;
use std::process::ExitCode;

use buildit_audit::{Report, Severity};
use buildit_driver::DriverError;
use clap::Args;

use crate::common::{session, store_layout};

#[derive(Args)]
pub struct AuditArgs {
    /// What to audit: an image built in the store (./result), a container spec directory, a
    /// package directory (pkg.yaml) or an atom of the set; nothing is built
    #[arg(value_name = "IMAGE|DIR|ATOM", required_unless_present = "update")]
    pub target: Option<String>,
    /// OSV advisories: a .json file (a record or an array), .jsonl/.ndjson, a .zip of records
    /// (osv.dev's per-ecosystem all.zip) or a directory of those [default: the cache
    /// `--update` fills]
    #[arg(long, value_name = "DIR|FILE")]
    pub advisories: Option<PathBuf>,
    /// Print the report as JSON on stdout
    #[arg(long, conflicts_with = "sarif")]
    pub json: bool,
    /// Print the report as SARIF 2.1.0 on stdout
    #[arg(long)]
    pub sarif: bool,
    /// Exit with status 1 when a finding (not suppressed) is at least this severe
    #[arg(long, value_name = "SEVERITY", value_parser = ["unknown", "low", "medium", "high", "critical"])]
    pub fail_on: Option<String>,
    /// An OpenVEX document: its not_affected and fixed statements suppress findings (shown
    /// with the reason)
    #[arg(long, value_name = "FILE")]
    pub vex: Option<PathBuf>,
    /// Write the findings as an OpenVEX document to FILE
    #[arg(long, value_name = "FILE")]
    pub emit_vex: Option<PathBuf>,
    /// Download the advisory dumps (the configuration's `audit: advisory-urls`, or
    /// --advisory-url) into the advisory cache, then audit TARGET if one is given
    #[arg(long)]
    pub update: bool,
    /// A URL to download with --update instead of the configured ones (repeatable)
    #[arg(long = "advisory-url", value_name = "URL", requires = "update")]
    pub advisory_urls: Vec<String>,
    /// Do not type-check the compiled spec before evaluating it
    #[arg(long)]
    pub no_typecheck: bool,
    /// The store's physical root directory (where the index and the downloaded advisories are
    /// kept)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

fn notice(a: &AuditArgs, line: &str) {
    crate::build_cmd::notice(a.json || a.sarif, line);
}

/// The advisory URLs `--update` downloads: the flags', else the configuration's.
fn urls(a: &AuditArgs) -> Result<Vec<String>, DriverError> {
    if !a.advisory_urls.is_empty() {
        return Ok(a.advisory_urls.clone());
    }
    let config = buildit_driver::config::load(None, &Default::default())?;
    Ok(config.audit_urls.map(|u| u.value).unwrap_or_default())
}

pub fn run(a: AuditArgs) -> Result<ExitCode, DriverError> {
    if a.update {
        let layout = store_layout(a.store_root.as_deref());
        let got = buildit_driver::audit::update(&layout, &urls(&a)?, &mut |l| notice(&a, l))?;
        for (path, n) in &got {
            notice(&a, &format!("{} ({n} bytes)", path.display()));
        }
        if a.target.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let target = a.target.clone().unwrap_or_default();
    let session = session(a.store_root.as_deref(), false);
    let req = buildit_driver::audit::AuditRequest {
        target: &target,
        advisories: a.advisories.as_deref(),
        vex: a.vex.as_deref(),
        typecheck: !a.no_typecheck,
    };
    let audited = buildit_driver::audit::audit(&session, &req)?;
    let report = &audited.report;
    if audited.index_built {
        notice(
            &a,
            &format!(
                "indexed {} advisories in {:.2} s",
                report.advisories, audited.index_seconds
            ),
        );
    }
    if let Some(path) = &a.emit_vex {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let author = format!("buildit audit {}", env!("CARGO_PKG_VERSION"));
        let doc = buildit_audit::vex::emit(report, &author, &buildit_images::oci::rfc3339(now));
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        std::fs::write(path, text).map_err(|e| {
            DriverError::request(
                "buildit::audit::emit-vex",
                format!("cannot write {}: {e}", path.display()),
                "give --emit-vex a writable file path",
            )
        })?;
    }
    if a.sarif {
        let artifact = audited.artifact.clone();
        let doc = buildit_audit::sarif::sarif(report, &|_| artifact.clone());
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_report(report, &audited)).unwrap_or_default()
        );
    } else {
        print!("{}", human(report));
    }
    let fail = a
        .fail_on
        .as_deref()
        .and_then(Severity::parse)
        .is_some_and(|level| report.reaches(level));
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The `--json` document: the report with what the audit knew of the image.
fn json_report(r: &Report, a: &buildit_driver::audit::Audited) -> serde_json::Value {
    serde_json::json!({
        "target": r.target,
        "advisories": r.advisories,
        "image_built": a.image_built,
        "packages": r.packages,
        "findings": r.open_findings().collect::<Vec<_>>(),
        "suppressed": r.findings.iter().filter(|f| f.suppressed.is_some()).collect::<Vec<_>>(),
    })
}

/// The text report: one block per finding, most severe first, then the suppressed ones.
pub fn human(r: &Report) -> String {
    let open: Vec<_> = r.open_findings().collect();
    let suppressed: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.suppressed.is_some())
        .collect();
    let mut s = String::new();
    let mut counts: Vec<String> = Vec::new();
    for level in Severity::ALL.iter().rev() {
        let n = open.iter().filter(|f| f.severity == *level).count();
        if n > 0 {
            counts.push(format!("{n} {}", level.as_str()));
        }
    }
    s.push_str(&format!(
        "{}: {} finding{}{} in {} packages ({} advisories), {} suppressed\n",
        r.target,
        open.len(),
        if open.len() == 1 { "" } else { "s" },
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        },
        r.packages.len(),
        r.advisories,
        suppressed.len()
    ));
    for f in &open {
        let score = f.score.map(|x| format!(" {x:.1}")).unwrap_or_default();
        let source = f
            .source
            .as_deref()
            .map(|x| format!(" (source {x})"))
            .unwrap_or_default();
        let other = if f.osv_id != f.id {
            format!(" [{}]", f.osv_id)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "\n{}{other}  {}{score}\n  package:   {} {}{source}\n  fixed in:  {}\n",
            f.id,
            f.severity.as_str(),
            f.package,
            f.installed,
            f.fixed.as_deref().unwrap_or("(no fixed version known)")
        ));
        if !f.summary.is_empty() {
            s.push_str(&format!("  summary:   {}\n", f.summary));
        }
        for l in &f.layers {
            s.push_str(&format!("  layer:     {l}\n"));
        }
    }
    if !suppressed.is_empty() {
        s.push_str("\nsuppressed:\n");
        for f in &suppressed {
            if let Some(sup) = &f.suppressed {
                s.push_str(&format!(
                    "  {} in {} {}: {} ({})\n",
                    f.id, f.package, f.installed, sup.reason, sup.by
                ));
            }
        }
    }
    s
}
