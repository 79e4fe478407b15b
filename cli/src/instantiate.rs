//! `buildit instantiate` (evaluate, write the derivations, print their `.drv` paths) and
//! `buildit show-derivation` (a `.drv` file as JSON). Both are front ends over the evaluator
//! with [`buildit_stdlib::StoreIo`] and over [`buildit_store::Derivation`].

use crate::common::*;
use buildit_eval::{EvalResult, Evaluator, Symbol, Value};
use buildit_store::derivation::Derivation;
use buildit_store::path::StorePath;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct InstantiateArgs {
    /// The file to evaluate (a directory means its default.bld / default.nix)
    #[arg(conflicts_with = "expr")]
    pub file: Option<String>,
    /// Evaluate this expression instead of a file
    #[arg(short = 'E', long = "expr", value_name = "EXPR")]
    pub expr: Option<String>,
    /// Select an attribute path of the result (`-A packages.hello`)
    #[arg(short = 'A', long = "attr", value_name = "PATH")]
    pub attr: Option<String>,
    /// Print a JSON list of { drvPath, outputs } instead of one path per line
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

/// A derivation found in an evaluation result: its `.drv` path and the output selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDrv {
    pub drv_path: String,
    pub output: String,
    /// The attribute path where it was found (empty for the root).
    pub attr: String,
}

fn is_derivation(ev: &mut Evaluator, v: &Value) -> EvalResult<bool> {
    if let Value::Attrs(a) = v {
        if let Some(t) = a.get(Symbol::intern("type")) {
            let t = t.clone();
            return Ok(matches!(ev.force(&t)?, Value::String(s) if s.as_str() == "derivation"));
        }
    }
    Ok(false)
}

/// The derivations in `v`, as `nix-instantiate` finds them: `v` itself, or the derivations in a
/// list or set at the top, recursing further only into sets with `recurseForDerivations = true`.
pub fn find_derivations(ev: &mut Evaluator, v: &Value) -> EvalResult<Vec<FoundDrv>> {
    let mut out = Vec::new();
    collect(ev, v, "", true, &mut out)?;
    Ok(out)
}

fn collect(
    ev: &mut Evaluator,
    v: &Value,
    attr: &str,
    top: bool,
    out: &mut Vec<FoundDrv>,
) -> EvalResult<()> {
    let v = ev.force(v)?;
    if is_derivation(ev, &v)? {
        let Value::Attrs(a) = &v else { return Ok(()) };
        let span = buildit_lang::Span::default();
        let drv = a
            .get(Symbol::intern("drvPath"))
            .cloned()
            .unwrap_or(Value::Null);
        let drv = ev.force_string(&drv, span)?.as_str().to_string();
        let output = match a.get(Symbol::intern("outputName")).cloned() {
            Some(o) => ev.force_string(&o, span)?.as_str().to_string(),
            None => "out".to_string(),
        };
        out.push(FoundDrv {
            drv_path: drv,
            output,
            attr: attr.to_string(),
        });
        return Ok(());
    }
    match &v {
        Value::Attrs(a) => {
            let recurse = match a.get(Symbol::intern("recurseForDerivations")).cloned() {
                Some(r) => matches!(ev.force(&r)?, Value::Bool(true)),
                None => false,
            };
            if top || recurse {
                for (k, x) in a
                    .iter_sorted()
                    .into_iter()
                    .map(|(k, x)| (*k, x.clone()))
                    .collect::<Vec<_>>()
                {
                    let path = if attr.is_empty() {
                        k.as_str().to_string()
                    } else {
                        format!("{attr}.{}", k.as_str())
                    };
                    collect(ev, &x, &path, false, out)?;
                }
            }
        }
        Value::List(l) if top => {
            for (i, x) in l.iter().enumerate() {
                collect(ev, x, &format!("{attr}[{i}]"), false, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Evaluate a target and return the derivations it denotes (exit code on failure, after the
/// diagnostics were printed). An empty result is an error saying what the value was.
pub fn instantiate_target(
    ev: &mut Evaluator,
    t: &Target<'_>,
    st: crate::render::Style,
) -> Result<Vec<FoundDrv>, ExitCode> {
    let v = evaluate_target(ev, t, st)?;
    match find_derivations(ev, &v) {
        Ok(found) if !found.is_empty() => Ok(found),
        Ok(_) => Err(cli_error(
            "buildit::cli::no-derivation",
            &format!(
                "the expression evaluates to {}, which contains no derivation",
                v.describe()
            ),
            "select a package with -A ATTR, or evaluate an expression that calls `derivation`",
        )),
        Err(e) => {
            eprint!("{}", crate::render::eval_error(&ev.sources, &e, st));
            Err(ExitCode::from(1))
        }
    }
}

pub fn run_instantiate(a: InstantiateArgs) -> ExitCode {
    let st = style(a.eval.show_trace);
    let io = store_io(a.eval.impure, a.eval.store_root.as_deref());
    let mut ev = std::mem::ManuallyDrop::new(Evaluator::new(Box::new(io)));
    let t = Target {
        file: a.file.as_deref(),
        expr: a.expr.as_deref(),
        attr: a.attr.as_deref(),
        typecheck: !a.eval.no_typecheck,
    };
    let found = match instantiate_target(&mut ev, &t, st) {
        Ok(f) => f,
        Err(code) => return code,
    };
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
    ExitCode::SUCCESS
}

/// Resolve a command-line path to a store path: `/bld/store/…`, the physical `ROOT/store/…`,
/// or a symlink (an out-link such as `./result`) to either.
pub fn resolve_store_path(
    layout: &buildit_store::StoreLayout,
    arg: &str,
) -> Result<StorePath, String> {
    let phys = layout.store_dir();
    let mut text = arg.to_string();
    if !text.starts_with(buildit_store::STORE_DIR) {
        let p = std::path::Path::new(arg);
        let target = if p.is_symlink() {
            std::fs::read_link(p).map_err(|e| format!("{arg}: {e}"))?
        } else {
            p.to_path_buf()
        };
        let target = if target.is_relative() {
            std::path::Path::new(&cwd()).join(target)
        } else {
            target
        };
        if let Ok(rest) = target.strip_prefix(&phys) {
            text = format!("{}/{}", buildit_store::STORE_DIR, rest.display());
        } else {
            text = target.display().to_string();
        }
    }
    StorePath::parse_prefix(&text)
        .map(|(p, _)| p)
        .map_err(|e| e.to_string())
}

pub fn run_show_derivation(a: ShowDerivationArgs) -> ExitCode {
    let layout = store_layout(a.store_root.as_deref());
    let mut todo: Vec<StorePath> = Vec::new();
    for p in &a.paths {
        match resolve_store_path(&layout, p) {
            Ok(sp) if sp.is_derivation() => todo.push(sp),
            Ok(sp) => {
                return cli_error(
                    "buildit::cli::not-a-derivation",
                    &format!("'{sp}' is not a derivation (.drv) path"),
                    "pass the .drv path printed by `buildit instantiate`",
                )
            }
            Err(e) => {
                return cli_error(
                    "buildit::cli::bad-store-path",
                    &e,
                    "store paths look like /bld/store/<hash>-<name>.drv",
                )
            }
        }
    }
    let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    while let Some(p) = todo.pop() {
        if out.contains_key(&p.to_string()) {
            continue;
        }
        let bytes = match std::fs::read(layout.physical(&p)) {
            Ok(b) => b,
            Err(e) => {
                return cli_error(
                    "buildit::store::missing",
                    &format!("cannot read {p}: {e}"),
                    "instantiate the expression first (`buildit instantiate FILE`), or check --store-root",
                )
            }
        };
        let d = match Derivation::decode(&bytes) {
            Ok(d) => d,
            Err(e) => return cli_error("buildit::store::bad-derivation", &format!("{p}: {e}"), "the file is not a buildit derivation; `buildit store verify --check-contents` checks the store"),
        };
        if a.recursive {
            todo.extend(d.input_drvs.keys().cloned());
        }
        out.insert(
            p.to_string(),
            serde_json::to_value(&d).unwrap_or(serde_json::Value::Null),
        );
    }
    match serde_json::to_string_pretty(&out) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => cli_error("buildit::cli::json", &e.to_string(), "this is a bug"),
    }
}
