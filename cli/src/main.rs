//! The `buildit` command. Parses arguments (clap), runs the command, prints results on stdout
//! and diagnostics on stderr. Exit status: 0 on success, 1 on any user error (with a
//! diagnostic), 2 on an internal error; a panic is caught and reported, never exit 101.

mod image_cmd;

use buildit_cli::render::{self, Style};
use buildit_cli::repl::Repl;
use buildit_eval::{print, Evaluator, Value};
use buildit_stdlib::FsIo;
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// mimalloc: the evaluator allocates many small, short-lived objects (thunks, frames); it is
/// measurably faster than glibc malloc on the evaluation benchmarks (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "buildit",
    version,
    about = "Package-centric, source-based, reproducible container builds",
    long_about = "buildit builds software from upstream source into bit-reproducible packages and \
container images. Package recipes are written in .bld, a small lazily evaluated language with \
Nix's syntax (minus `with`).\n\nStart with `buildit eval -E '1 + 2'` or `buildit repl`.",
    after_help = "Examples:\n  buildit eval examples/hello.bld\n  buildit eval -E 'builtins.map (x: x * 2) [ 1 2 3 ]'\n  buildit eval --json examples/hello.bld\n  buildit repl"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a .bld file or expression and print the value (fully evaluated)
    #[command(
        after_help = "Examples:\n  buildit eval file.bld\n  buildit eval -E '{ a = 1; b = [ 2 3 ]; }'\n  buildit eval --json -A packages.hello file.bld"
    )]
    Eval(EvalArgs),
    /// Start an interactive read-eval-print loop
    #[command(after_help = "Type :? at the prompt for the list of commands.")]
    Repl(ReplArgs),
    /// Type-check .bld files without evaluating them (exit 1 when any has a type error)
    #[command(
        after_help = "Examples:\n  buildit check file.bld\n  buildit check --json a.bld b.bld"
    )]
    Check(CheckArgs),
    /// Push an OCI image layout to a registry (OCI distribution API)
    #[command(
        after_help = "Examples:\n  buildit push result 127.0.0.1:5000/nginx:1.22 --insecure\n  buildit push result registry.example/team/app:1.0 --user me --json"
    )]
    Push(image_cmd::PushArgs),
    /// List every file of an image with the package it came from
    #[command(after_help = "Examples:\n  buildit contents result\n  buildit contents --json result/image.aci")]
    Contents(image_cmd::ContentsArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The files to check
    #[arg(required = true)]
    files: Vec<String>,
    /// Print the diagnostics as a JSON list on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CommonArgs {
    /// Do not type-check before evaluating
    #[arg(long)]
    no_typecheck: bool,
    /// Show the whole evaluation trace of an error
    #[arg(long)]
    show_trace: bool,
    /// Let `builtins.getEnv` read the real environment
    #[arg(long)]
    impure: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// The file to evaluate (a directory means its default.bld / default.nix)
    #[arg(conflicts_with = "expr")]
    file: Option<String>,
    /// Evaluate this expression instead of a file
    #[arg(short = 'E', long = "expr", value_name = "EXPR")]
    expr: Option<String>,
    /// Select an attribute path of the result (`-A packages.hello`)
    #[arg(short = 'A', long = "attr", value_name = "PATH")]
    attr: Option<String>,
    /// Print the result as JSON (forces it completely)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct ReplArgs {
    /// Files whose sets are loaded into scope at start (like `:l`)
    files: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

fn style(full_trace: bool) -> Style {
    let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    Style {
        color: tty,
        unicode: tty,
        full_trace,
    }
}

fn fs_io(impure: bool) -> FsIo {
    FsIo::new(|msg| eprintln!("trace: {msg}")).with_impure_env(impure)
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into())
}

fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        buildit_eval::lower::canon_path(&format!("{}/{}", cwd(), path))
    }
}

fn run_eval(a: EvalArgs) -> ExitCode {
    // The evaluator and its values are never dropped: the process ends right after, and
    // tearing down a deep graph of thunks would only cost time (and native stack).
    let mut ev = std::mem::ManuallyDrop::new(Evaluator::new(Box::new(fs_io(a.common.impure))));
    run_eval_with(&mut ev, a)
}

fn run_eval_with(ev: &mut Evaluator, a: EvalArgs) -> ExitCode {
    let st = style(a.common.show_trace);
    if !a.common.no_typecheck {
        if let Some(code) = typecheck_root(&a, st) {
            return code;
        }
    }
    let result = match (&a.file, &a.expr) {
        (_, Some(expr)) => match ev.compile("«cmdline»", expr, &cwd()) {
            Ok(ir) => ev.eval_root(&ir),
            Err(diags) => {
                eprint!("{}", render::diagnostics(&ev.sources, &diags, st));
                return ExitCode::from(1);
            }
        },
        (Some(file), None) => ev.import(&absolute(file), buildit_lang::Span::default()),
        (None, None) => {
            return cli_error(
                "buildit::cli::nothing-to-evaluate",
                "nothing to evaluate",
                "give a FILE or -E EXPR (see `buildit eval --help`)",
            );
        }
    };
    let mut value = match result {
        Ok(v) => std::mem::ManuallyDrop::new(v),
        Err(e) => {
            eprint!("{}", render::eval_error(&ev.sources, &e, st));
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &a.attr {
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let sym = buildit_eval::Symbol::intern(part);
            let next = match &*value {
                Value::Attrs(at) => at.get(sym).cloned(),
                _ => None,
            };
            let Some(next) = next else {
                let names = match &*value {
                    Value::Attrs(at) => at
                        .iter_sorted()
                        .into_iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => format!("(the value is {}, not a set)", other.describe()),
                };
                return cli_error(
                    "buildit::cli::attribute-not-found",
                    &format!("attribute '{part}' of '{path}' not found"),
                    &format!("available here: {names}"),
                );
            };
            value = match ev.force(&next) {
                Ok(v) => std::mem::ManuallyDrop::new(v),
                Err(e) => {
                    eprint!("{}", render::eval_error(&ev.sources, &e, st));
                    return ExitCode::from(1);
                }
            };
        }
    }
    let printed = if a.json {
        let mut ctx = buildit_eval::Context::empty();
        buildit_eval::builtins::json::value_to_json(
            ev,
            &value,
            buildit_lang::Span::default(),
            &mut ctx,
        )
    } else {
        print::print_value(ev, &value)
    };
    match printed {
        Ok(s) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}", render::eval_error(&ev.sources, &e, st));
            ExitCode::from(1)
        }
    }
}

/// The source of a file as the evaluator would read it (a directory means its default file).
fn read_source(file: &str) -> Option<(String, String)> {
    let path = absolute(file);
    let path = if std::path::Path::new(&path).is_dir() {
        let bld = format!("{path}/default.bld");
        if std::path::Path::new(&bld).exists() {
            bld
        } else {
            format!("{path}/default.nix")
        }
    } else {
        path
    };
    let text = std::fs::read_to_string(&path).ok()?;
    Some((path, text))
}

/// Parse and type-check one source: `(sources, parse diagnostics, type diagnostics, type)`.
fn typecheck_source(
    name: &str,
    text: &str,
) -> (
    buildit_lang::SourceMap,
    Vec<buildit_lang::Diagnostic>,
    Vec<buildit_lang::Diagnostic>,
    String,
) {
    let mut sources = buildit_lang::SourceMap::new();
    let file = sources.add(name.to_string(), text);
    let parsed = buildit_lang::parse(file, text);
    let (diags, ty) = match (&parsed.expr, parsed.diagnostics.is_empty()) {
        (Some(e), true) => {
            let r = buildit_lang::types::check(e);
            (r.diagnostics, r.ty.to_string())
        }
        _ => (Vec::new(), String::new()),
    };
    (sources, parsed.diagnostics, diags, ty)
}

/// Type-check the root of `eval` (imports are `Dyn`); `Some(exit code)` when it has type
/// errors. Syntax errors are left to the evaluator, which reports them as before.
fn typecheck_root(a: &EvalArgs, st: Style) -> Option<ExitCode> {
    let (name, text) = match (&a.file, &a.expr) {
        (_, Some(expr)) => ("«cmdline»".to_string(), expr.clone()),
        (Some(file), None) => read_source(file)?,
        (None, None) => return None,
    };
    let (sources, _, diags, _) = typecheck_source(&name, &text);
    if diags.is_empty() {
        return None;
    }
    eprint!("{}", render::diagnostics(&sources, &diags, st));
    eprintln!("(evaluate anyway with --no-typecheck)");
    Some(ExitCode::from(1))
}

fn run_check(a: CheckArgs) -> ExitCode {
    let st = style(false);
    let mut failed = false;
    let mut json = Vec::new();
    for f in &a.files {
        let Some((name, text)) = read_source(f) else {
            failed = true;
            let d = buildit_lang::Diagnostic::error(
                "buildit::cli::cannot-read",
                format!("cannot read `{f}`"),
            );
            if a.json {
                json.push(serde_json::json!({ "file": f, "code": d.code, "message": d.message, "labels": [], "help": null }));
            } else {
                eprint!(
                    "{}",
                    render::diagnostic(&buildit_lang::SourceMap::new(), &d, st)
                );
            }
            continue;
        };
        let (sources, parse, types, ty) = typecheck_source(&name, &text);
        let all: Vec<buildit_lang::Diagnostic> = parse.into_iter().chain(types).collect();
        if all.is_empty() {
            if !a.json {
                println!("{f}: {ty}");
            }
            continue;
        }
        failed = true;
        if a.json {
            for d in &all {
                let labels: Vec<serde_json::Value> = d
                    .labels
                    .iter()
                    .map(|l| {
                        let (line, col) = sources
                            .get(l.span.file)
                            .map(|sf| sf.line_col(l.span.start as usize))
                            .unwrap_or((0, 0));
                        serde_json::json!({
                            "file": sources.name(l.span.file),
                            "start": l.span.start, "end": l.span.end,
                            "line": line, "column": col, "message": l.message,
                        })
                    })
                    .collect();
                json.push(serde_json::json!({
                    "file": f, "code": d.code, "message": d.message,
                    "labels": labels, "help": d.help,
                }));
            }
        } else {
            eprint!("{}", render::diagnostics(&sources, &all, st));
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Array(json));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Report an error about the command line itself (no source span) and exit 1.
fn cli_error(code: &'static str, message: &str, help: &str) -> ExitCode {
    let d = buildit_lang::Diagnostic::error(code, message).with_help(help);
    eprint!(
        "{}",
        render::diagnostic(&buildit_lang::SourceMap::new(), &d, style(false))
    );
    ExitCode::from(1)
}

fn history_path() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state"))
        })?;
    let dir = base.join("buildit");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("repl-history"))
}

mod front {
    //! rustyline glue: completion and multi-line validation delegate to the REPL back end.
    use buildit_cli::repl::Repl;
    use rustyline::completion::Completer;
    use rustyline::highlight::Highlighter;
    use rustyline::hint::Hinter;
    use rustyline::validate::{ValidationContext, ValidationResult, Validator};
    use rustyline::{Context, Helper};
    use std::cell::RefCell;
    use std::rc::Rc;

    pub struct ReplHelper(pub Rc<RefCell<Repl>>);

    impl Completer for ReplHelper {
        type Candidate = String;
        fn complete(
            &self,
            line: &str,
            pos: usize,
            _ctx: &Context<'_>,
        ) -> rustyline::Result<(usize, Vec<String>)> {
            Ok(self.0.borrow_mut().complete(line, pos))
        }
    }
    impl Hinter for ReplHelper {
        type Hint = String;
    }
    impl Highlighter for ReplHelper {}
    impl Validator for ReplHelper {
        fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
            if Repl::is_incomplete(ctx.input()) {
                Ok(ValidationResult::Incomplete)
            } else {
                Ok(ValidationResult::Valid(None))
            }
        }
    }
    impl Helper for ReplHelper {}
}

fn run_repl(a: ReplArgs) -> ExitCode {
    use std::cell::RefCell;
    use std::rc::Rc;
    let st = style(a.common.show_trace);
    let repl = Rc::new(RefCell::new(Repl::new(
        Box::new(fs_io(a.common.impure)),
        cwd(),
        st,
    )));
    for f in &a.files {
        let r = repl.borrow_mut().handle(&format!(":l {f}"));
        eprint!("{}", r.text);
    }
    let mut rl =
        match rustyline::Editor::<front::ReplHelper, rustyline::history::DefaultHistory>::new() {
            Ok(rl) => rl,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return ExitCode::from(1);
            }
        };
    rl.set_helper(Some(front::ReplHelper(repl.clone())));
    let hist = history_path();
    if let Some(h) = &hist {
        let _ = rl.load_history(h);
    }
    eprintln!(
        "buildit repl {} — type :? for help",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        match rl.readline("buildit> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                }
                let r = repl.borrow_mut().handle(&line);
                if r.is_error {
                    eprint!("{}", r.text);
                } else {
                    print!("{}", r.text);
                }
                if r.quit {
                    break;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        }
    }
    if let Some(h) = &hist {
        let _ = rl.save_history(h);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in buildit (this is a bug; please report it)\n  {info}");
    }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Eval(a) => run_eval(a),
        Command::Repl(a) => run_repl(a),
        Command::Check(a) => run_check(a),
        Command::Push(a) => image_cmd::run_push(a),
        Command::Contents(a) => image_cmd::run_contents(a),
    }));
    r.unwrap_or(ExitCode::from(2))
}
