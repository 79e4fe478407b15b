//! `buildit instantiate` (evaluate, write the derivations, print their `.drv` paths) and
//! `buildit show-derivation` (a `.drv` file as JSON). Both are front ends over the evaluator
//! with a store (the driver's session) and over [`buildit_store::Derivation`].

use crate::common::*;
use buildit_driver::{DriverError, EvalTarget};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InstantiateArgs {
    #[command(flatten)]
    pub target: crate::args::TargetArgs,
    /// Print a JSON list of { attr, drvPath, output }, one object per derivation, instead of
    /// one path per line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub eval: EvalOpts,
}

/// Options of every command that evaluates.
#[derive(Args, Clone)]
pub struct EvalOpts {
    /// Do not type-check before evaluating
    #[arg(long)]
    pub no_typecheck: bool,
    /// Show the whole evaluation trace of an error
    #[arg(long)]
    pub show_trace: bool,
    /// Let `builtins.getEnv` read the real environment
    #[arg(long)]
    pub impure: bool,
    /// The store's physical root (default: $BUILDIT_STORE_ROOT, /bld, ~/.local/share/buildit)
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

#[derive(Args)]
pub struct ShowDerivationArgs {
    /// `.drv` store paths (as /bld/store/… or their physical location)
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Also show every derivation these depend on
    #[arg(short, long)]
    pub recursive: bool,
    /// The store's physical root
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

pub fn run_instantiate(a: InstantiateArgs) -> Result<ExitCode, DriverError> {
    let session = session(a.eval.store_root.as_deref(), a.eval.impure);
    let mut ev = session.evaluator();
    let t = EvalTarget {
        file: a.target.file.as_deref(),
        expr: a.target.expr.as_deref(),
        attr: a.target.attr.as_deref(),
        typecheck: !a.eval.no_typecheck,
    };
    let found = buildit_driver::eval::instantiate(&mut ev, &t)?;
    if a.json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|f| serde_json::json!({ "attr": f.attr, "drvPath": f.drv_path, "output": f.output }))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let mut seen = std::collections::BTreeSet::new();
        for f in &found {
            if seen.insert(f.drv_path.clone()) {
                println!("{}", f.drv_path);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_show_derivation(a: ShowDerivationArgs) -> Result<ExitCode, DriverError> {
    let layout = store_layout(a.store_root.as_deref());
    let drvs = buildit_driver::store::read_derivations(&layout, &a.paths, a.recursive)?;
    let out: BTreeMap<String, serde_json::Value> = drvs
        .iter()
        .map(|(p, d)| {
            let v = serde_json::to_value(d).unwrap_or(serde_json::Value::Null);
            (p.to_string(), v)
        })
        .collect();
    let s = serde_json::to_string_pretty(&out)
        .map_err(|e| DriverError::request("buildit::cli::json", e.to_string(), "this is a bug"))?;
    println!("{s}");
    Ok(ExitCode::SUCCESS)
}
