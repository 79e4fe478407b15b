//! `buildit search [QUERY]`: the package set's atoms (category/name), their versions and build
//! options (with defaults and descriptions), filtered by substring (case-insensitive). Versions
//! are listed newest first; options and description are the newest version's. It evaluates the embedded
//! set (`(import <buildit>).pkgs.atoms`) without building anything.

use crate::common::*;
use buildit_eval::Evaluator;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SearchArgs {
    /// Show atoms containing this text (all when absent)
    pub query: Option<String>,
    /// Print JSON: [{ atom, versions, options: { name: { default, description } } }]
    #[arg(long)]
    pub json: bool,
    /// The store's physical root (the standard library is materialised there)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

const EXPR: &str = r#"
let
  pkgs = (import <buildit>).pkgs;
  atoms = pkgs.atoms;
  # newest first; options and description are the newest version's
  versionsOf = a: builtins.sort (x: y: builtins.compareVersions x y > 0) (builtins.attrNames atoms.${a});
  newest = a: atoms.${a}.${builtins.head (versionsOf a)};
in map (a: {
  atom = a;
  versions = versionsOf a;
  options = builtins.mapAttrs (_: o: { default = o.default or false; description = o.description or ""; })
    ((newest a).options or { });
  description = ((newest a).meta or { }).description or "";
}) (builtins.attrNames atoms)
"#;

pub fn run_search(a: SearchArgs) -> ExitCode {
    let st = style(false);
    let io = store_io(false, a.store_root.as_deref());
    let mut ev = std::mem::ManuallyDrop::new(Evaluator::new(Box::new(io)));
    let t = Target {
        file: None,
        expr: Some(EXPR),
        attr: None,
        typecheck: false,
    };
    let v = match evaluate_target(&mut ev, &t, st) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let mut ctx = buildit_eval::Context::empty();
    let json = match buildit_eval::builtins::json::value_to_json(
        &mut ev,
        &v,
        buildit_lang::Span::default(),
        &mut ctx,
    ) {
        Ok(j) => j,
        Err(e) => {
            eprint!("{}", crate::render::eval_error(&ev.sources, &e, st));
            return ExitCode::from(1);
        }
    };
    let all: serde_json::Value = match serde_json::from_str(&json) {
        Ok(j) => j,
        Err(e) => return cli_error("buildit::search::json", &e.to_string(), "this is a bug"),
    };
    let q = a.query.clone().unwrap_or_default().to_lowercase();
    let hits: Vec<&serde_json::Value> = all
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|p| {
                    p["atom"]
                        .as_str()
                        .is_some_and(|s| s.to_lowercase().contains(&q))
                })
                .collect()
        })
        .unwrap_or_default();
    if a.json {
        println!(
            "{}",
            serde_json::Value::Array(hits.into_iter().cloned().collect())
        );
        return ExitCode::SUCCESS;
    }
    if hits.is_empty() {
        return cli_error(
            "buildit::search::no-match",
            &format!("no package atom contains '{}'", a.query.unwrap_or_default()),
            "run `buildit search` without a query to list every atom",
        );
    }
    for p in hits {
        let versions: Vec<&str> = p["versions"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        println!(
            "{} [{}]  {}",
            p["atom"].as_str().unwrap_or(""),
            versions.join(" "),
            p["description"].as_str().unwrap_or("")
        );
        if let Some(opts) = p["options"].as_object() {
            for (name, o) in opts {
                let on = if o["default"].as_bool().unwrap_or(false) {
                    "+"
                } else {
                    "-"
                };
                println!(
                    "    {on}{name}  {}",
                    o["description"].as_str().unwrap_or("")
                );
            }
        }
    }
    ExitCode::SUCCESS
}
