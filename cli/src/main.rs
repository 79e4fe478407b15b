//! The `buildit` command. Parses arguments (clap), runs the command, prints results on stdout
//! and diagnostics on stderr. Exit status: 0 on success, 1 on any user error (with a
//! diagnostic), 2 on an internal error; a panic is caught and reported, never exit 101.

use buildit_cli::common::*;
use buildit_cli::render;
use buildit_cli::repl::Repl;
use buildit_eval::print;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// What every command returns: its exit status, or the error `main` renders.
type CliResult = Result<ExitCode, buildit_driver::DriverError>;

/// mimalloc: the evaluator allocates many small, short-lived objects (thunks, frames); it is
/// measurably faster than glibc malloc on the evaluation benchmarks (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: Mi = Mi;

/// The `mimalloc` crate's allocator always takes mimalloc's aligned-allocation path; for the
/// alignments mimalloc guarantees anyway (≤ 16 and ≤ the size) the plain path is about twice
/// as fast (callgrind: 15% of all instructions of the overlay benchmark were aligned mallocs).
struct Mi;

/// mimalloc's `MI_SMALL_SIZE_MAX` (128 words): sizes up to it may use `mi_malloc_small`, which
/// skips the size-class dispatch (the evaluator's thunks, frames and records are all small).
const SMALL: usize = 128 * std::mem::size_of::<usize>();

// SAFETY: every method forwards to mimalloc, which implements the GlobalAlloc contract; the
// plain calls are used only where mimalloc's natural alignment already satisfies the layout.
unsafe impl std::alloc::GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.align() <= 8 && l.size() <= SMALL {
            // SAFETY: forwarded allocation (see above); mimalloc's small-object path takes
            // any size up to MI_SMALL_SIZE_MAX
            unsafe { libmimalloc_sys::mi_malloc_small(l.size()) as *mut u8 }
        } else if l.align() <= 8 {
            // SAFETY: forwarded allocation (see above)
            unsafe { libmimalloc_sys::mi_malloc(l.size()) as *mut u8 }
        } else {
            // SAFETY: forwarded allocation
            unsafe { libmimalloc_sys::mi_malloc_aligned(l.size(), l.align()) as *mut u8 }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.align() <= 8 {
            // SAFETY: forwarded allocation
            unsafe { libmimalloc_sys::mi_zalloc(l.size()) as *mut u8 }
        } else {
            // SAFETY: forwarded allocation
            unsafe { libmimalloc_sys::mi_zalloc_aligned(l.size(), l.align()) as *mut u8 }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _l: std::alloc::Layout) {
        // SAFETY: p came from mimalloc
        unsafe { libmimalloc_sys::mi_free(p as *mut std::ffi::c_void) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if l.align() <= 8 {
            // SAFETY: p came from mimalloc; every block is 8-aligned
            unsafe { libmimalloc_sys::mi_realloc(p as *mut std::ffi::c_void, new_size) as *mut u8 }
        } else {
            // SAFETY: p came from mimalloc
            unsafe {
                libmimalloc_sys::mi_realloc_aligned(p as *mut std::ffi::c_void, new_size, l.align())
                    as *mut u8
            }
        }
    }
}

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
    /// Build with this Debian lock instead of the embedded stdlib/debian/bookworm.lock
    /// (also: BUILDIT_DEBIAN_LOCK=FILE); refresh one with `buildit debian lock --output FILE`
    #[arg(long, global = true, value_name = "FILE")]
    debian_lock: Option<std::path::PathBuf>,
    /// Evaluation fails (buildit::eval::max-call-depth) past N nested calls: endless recursion
    /// ends in seconds [default: 2000000]
    #[arg(long, global = true, value_name = "N")]
    max_call_depth: Option<u32>,
    /// Evaluation fails (buildit::eval::memory-limit) when the process uses more memory than
    /// SIZE (e.g. 4G, 512M; 0: no ceiling) [default: 3G]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    max_eval_memory: Option<u64>,
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
    /// Check .bld files without evaluating them: syntax, names, types (exit 1 on any error)
    #[command(
        after_help = "Examples:\n  buildit check file.bld\n  buildit check --json a.bld b.bld"
    )]
    Check(CheckArgs),
    /// Evaluate, write the derivations to the store and print their .drv paths
    #[command(
        after_help = "Examples:\n  buildit instantiate examples/package-set.bld -A hello\n  buildit instantiate -E 'derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }'"
    )]
    Instantiate(buildit_cli::instantiate::InstantiateArgs),
    /// Show .drv files as JSON
    #[command(after_help = "Example:\n  buildit show-derivation $(buildit instantiate file.bld)")]
    ShowDerivation(buildit_cli::instantiate::ShowDerivationArgs),
    /// Print the .bld program a container spec directory (container.yaml, pkg.yaml) lowers to
    #[command(after_help = "Example:\n  buildit compile examples/nginx-prod")]
    Compile(buildit_cli::yaml_cmd::CompileArgs),
    /// Work with the store: add, path-info, verify, gc, roots, export/import, cat, ls, delete
    Store(buildit_cli::store_cmd::StoreArgs),
    /// Build in the sandbox: container spec directories, .bld files, or .drv paths; print the
    /// output paths and leave ./result links (GC roots)
    #[command(
        visible_alias = "build",
        after_help = "Examples:\n  buildit build examples/nginx-prod          (a container spec directory; also: buildit examples/nginx-prod)\n  buildit realise examples/packages.bld -A hello\n  buildit realise -E '(import <buildit>).pkgs.zlib'\n  buildit realise /bld/store/...-hello.drv\n  buildit realise -j 4 --keep-going --no-out-link A.drv B.drv\n  buildit realise --check /bld/store/...-hello.drv"
    )]
    Realise(buildit_cli::build_cmd::RealiseArgs),
    /// Print the build log of a derivation or of a path built from one
    Log(buildit_cli::build_cmd::LogArgs),
    /// Debian packages as pinned inputs: `buildit debian lock PKG...` writes the lock
    Debian(buildit_cli::debian_cmd::DebianArgs),
    /// List the package set's atoms, versions and build options (+ on by default, - off)
    #[command(
        after_help = "Examples:\n  buildit search\n  buildit search nginx\n  buildit search --json zlib"
    )]
    Search(buildit_cli::search_cmd::SearchArgs),
    /// Build a package of the set if needed and run its main program in a sandbox holding
    /// exactly its runtime closure
    #[command(
        after_help = "Examples:\n  buildit run hello\n  buildit run hello -- --greeting=hi\n  buildit run app-misc/hello-2.10\n  buildit run --net --bind-cwd nginx -- -p . -c nginx.conf\n  buildit run --program bin/busybox busybox -- ls /\n  buildit run --set ./my-set.bld mytool\n\nThe program sees only its runtime closure at /bld/store, the Debian runtime libraries at /usr, a synthetic /etc and a tmpfs /tmp; the current directory only with --bind-cwd; no network but loopback unless --net. The exit status is the program's."
    )]
    Run(buildit_cli::run_cmd::RunArgs),
    /// Push an OCI image layout to a registry (OCI distribution API)
    #[command(
        after_help = "Examples:\n  buildit push result 127.0.0.1:5000/nginx:1.22 --insecure\n  buildit push result registry.example/team/app:1.0 --user me --json"
    )]
    Push(buildit_cli::image_cmd::PushArgs),
    /// List every file of an image with the package it came from
    #[command(
        after_help = "Examples:\n  buildit contents result\n  buildit contents --json result/image.aci"
    )]
    Contents(buildit_cli::image_cmd::ContentsArgs),
    /// Pack one package (with its runtime closure) as its own image; prints the image path
    #[command(
        after_help = "Examples:\n  buildit image app-misc/hello\n  buildit image --format docker-archive www-servers/nginx\n  buildit image --json ./pkgs/nginx"
    )]
    Image(buildit_cli::image_cmd::ImageArgs),
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
    /// The store's physical root (default: $BUILDIT_STORE_ROOT, /bld, ~/.local/share/buildit)
    #[arg(long, value_name = "DIR")]
    store_root: Option<std::path::PathBuf>,
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

fn run_eval(a: EvalArgs) -> CliResult {
    let session = session(a.common.store_root.as_deref(), a.common.impure);
    let mut ev = session.evaluator();
    let target = buildit_driver::EvalTarget {
        file: a.file.as_deref(),
        expr: a.expr.as_deref(),
        attr: a.attr.as_deref(),
        typecheck: !a.common.no_typecheck,
    };
    // the value is never dropped either: the process ends right after printing it
    let value = std::mem::ManuallyDrop::new(buildit_driver::eval::evaluate(&mut ev, &target)?);
    let printed = if a.json {
        buildit_driver::eval::to_json_text(&mut ev, &value)?
    } else {
        print::print_value(&mut ev, &value)
            .map_err(|e| buildit_driver::DriverError::eval(&mut ev, e))?
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{printed}");
    Ok(ExitCode::SUCCESS)
}

fn run_check(a: CheckArgs) -> CliResult {
    let st = style(false);
    let mut failed = false;
    let mut json = Vec::new();
    for f in &a.files {
        let Some((name, text)) = buildit_driver::eval::read_source(f) else {
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
        let (sources, all, ty) = buildit_driver::eval::check_source(&name, &text);
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
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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

fn run_repl(a: ReplArgs) -> CliResult {
    use std::cell::RefCell;
    use std::rc::Rc;
    let st = style(a.common.show_trace);
    let session = session(a.common.store_root.as_deref(), a.common.impure);
    let repl = Rc::new(RefCell::new(Repl::new(
        Box::new(session.store_io()),
        cwd(),
        st,
    )));
    repl.borrow_mut().set_typecheck(!a.common.no_typecheck);
    repl.borrow_mut().set_store(session.layout().clone());
    repl.borrow_mut()
        .set_progress(Box::new(|l: &str| eprintln!("{l}")));
    for f in &a.files {
        let r = repl.borrow_mut().handle(&format!(":l {f}"));
        eprint!("{}", r.text);
    }
    let mut rl =
        match rustyline::Editor::<front::ReplHelper, rustyline::history::DefaultHistory>::new() {
            Ok(rl) => rl,
            Err(e) => {
                return Err(buildit_driver::DriverError::request(
                    "buildit::repl::line-editor",
                    format!("cannot start the line editor: {e}"),
                    "run the REPL on a terminal, or pipe the lines in",
                ))
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
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // the seed's form `buildit DIR [--discover=…]`: a spec directory as the first argument
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(first) = args.get(1) {
        let p = std::path::Path::new(first);
        if !first.to_string_lossy().starts_with('-') && p.join("container.yaml").is_file() {
            args.insert(1, "build".into());
        }
    }
    let cli = match Cli::try_parse_from(args) {
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
    let debian_lock = cli.debian_lock.clone().or_else(|| {
        std::env::var_os(DEBIAN_LOCK_ENV)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    // (`buildit debian lock` writes locks; it never reads this one)
    if let (Some(lock), false) = (debian_lock, matches!(cli.command, Command::Debian(_))) {
        match buildit_driver::DebianLock::read(&lock) {
            Ok(l) => use_debian_lock(l),
            Err(e) => {
                eprint!("{}", render::error(&e, style(false)));
                return ExitCode::from(1);
            }
        }
    }
    if let Some(n) = cli.max_call_depth {
        buildit_eval::limits::set_default_max_call_depth(n);
    }
    watch_memory(cli.max_eval_memory.unwrap_or(DEFAULT_MAX_EVAL_MEMORY));
    std::panic::set_hook(Box::new(|info| {
        if buildit_cli::pipe::is_broken_pipe_panic(info.payload()) {
            buildit_cli::pipe::die_of_sigpipe();
        }
        eprintln!("error: internal error in buildit (this is a bug; please report it)\n  {info}");
    }));
    let st = style(cli.command.show_trace());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.command {
        Command::Eval(a) => run_eval(a),
        Command::Repl(a) => run_repl(a),
        Command::Check(a) => run_check(a),
        Command::Instantiate(a) => buildit_cli::instantiate::run_instantiate(a),
        Command::ShowDerivation(a) => buildit_cli::instantiate::run_show_derivation(a),
        Command::Compile(a) => buildit_cli::yaml_cmd::run_compile(a),
        Command::Store(a) => buildit_cli::store_cmd::run_store(a),
        Command::Realise(a) => buildit_cli::build_cmd::run_realise(a),
        Command::Log(a) => buildit_cli::build_cmd::run_log(a),
        Command::Search(a) => buildit_cli::search_cmd::run_search(a),
        Command::Debian(a) => Ok(buildit_cli::debian_cmd::run(&a, &mut |e| {
            let e = buildit_driver::DriverError::request(e.code, e.message.clone(), e.help.clone());
            eprint!("{}", render::error(&e, st));
        })),
        Command::Run(a) => Ok(buildit_cli::run_cmd::run(a)),
        Command::Push(a) => buildit_cli::image_cmd::run_push(a),
        Command::Contents(a) => buildit_cli::image_cmd::run_contents(a),
        Command::Image(a) => buildit_cli::image_cmd::run_image(a),
    }));
    match r {
        Ok(Ok(code)) => code,
        // every command's error is rendered here, once
        Ok(Err(e)) => {
            eprint!("{}", render::error(&e, st));
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(2),
    }
}

impl Command {
    /// Whether the command asked for the whole evaluation trace of an error.
    fn show_trace(&self) -> bool {
        match self {
            Command::Eval(a) => a.common.show_trace,
            Command::Repl(a) => a.common.show_trace,
            Command::Instantiate(a) => a.eval.show_trace,
            Command::Realise(a) => a.show_trace,
            _ => false,
        }
    }
}
