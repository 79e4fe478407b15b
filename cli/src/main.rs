//! The `buildit` command. Parses arguments (clap), runs the command, prints results on stdout
//! and diagnostics on stderr. Exit status: 0 on success, 1 on any user error (with a
//! diagnostic), 2 on an internal error; a panic is caught and reported, never exit 101.

use buildit_cli::args::*;
use buildit_cli::common::*;
use buildit_cli::render;
use buildit_driver::repl::Repl;
use buildit_eval::print;
use clap::Parser;
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

fn run_eval(a: EvalArgs) -> CliResult {
    let session = session(a.common.store_root.as_deref(), a.common.impure);
    let mut ev = session.evaluator();
    let target = buildit_driver::EvalTarget {
        file: a.target.file.as_deref(),
        expr: a.target.expr.as_deref(),
        attr: a.target.attr.as_deref(),
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
    let mut checker = buildit_driver::typecheck::TypeCheck::new(a.strict);
    for f in &a.files {
        // a spec directory: its YAML and the program it lowers to, errors at the YAML lines
        if let Some(c) = buildit_cli::yaml_cmd::check_spec(f, a.strict) {
            if c.diagnostics.is_empty() {
                if !a.json {
                    println!("{f}: {}", c.ty);
                }
                continue;
            }
            failed = true;
            if a.json {
                for d in &c.diagnostics {
                    let mut o = serde_json::Map::new();
                    let file = d.primary_span().map(|s| c.sources.name(s.file).to_string());
                    o.insert("file".into(), file.unwrap_or_else(|| f.clone()).into());
                    if let serde_json::Value::Object(fields) =
                        buildit_cli::output::diagnostic_json(Some(&c.sources), d)
                    {
                        o.extend(fields);
                    }
                    json.push(serde_json::Value::Object(o));
                }
            } else {
                eprint!("{}", render::diagnostics(&c.sources, &c.diagnostics, st));
            }
            continue;
        }
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
        let checked = checker.check_root(&name, &text);
        let (sources, all, ty) = (checked.sources, checked.diagnostics, checked.ty);
        if all.is_empty() {
            if !a.json {
                println!("{f}: {ty}");
            }
            continue;
        }
        failed = true;
        if a.json {
            for (i, d) in all.iter().enumerate() {
                let mut o = serde_json::Map::new();
                // a diagnostic of an imported file names that file
                let file = match d.primary_span() {
                    Some(s) if i >= checked.root_diagnostics => sources.name(s.file).to_string(),
                    _ => f.clone(),
                };
                o.insert("file".into(), file.into());
                if let serde_json::Value::Object(fields) =
                    buildit_cli::output::diagnostic_json(Some(&sources), d)
                {
                    o.extend(fields);
                }
                json.push(serde_json::Value::Object(o));
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
    use buildit_driver::repl::Repl;
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
        Box::new(buildit_cli::render::ReplRender(st)),
    )));
    repl.borrow_mut().set_typecheck(!a.common.no_typecheck);
    repl.borrow_mut().set_session(session.clone());
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

/// `buildit man DIR`: write the pages, print their paths.
fn run_man(a: &ManArgs) -> CliResult {
    let written = buildit_cli::generate::man_pages(&a.dir).map_err(|e| {
        buildit_driver::DriverError::request(
            "buildit::cli::cannot-write",
            format!(
                "cannot write the manual pages into {}: {e}",
                a.dir.display()
            ),
            "give a directory you can write to: buildit man DIR",
        )
    })?;
    for p in written {
        println!("{}", p.display());
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
    buildit_cli::output::set(buildit_cli::output::Verbosity {
        quiet: cli.quiet,
        verbose: cli.verbose,
        print_build_logs: cli.print_build_logs,
        json: cli.command.json(),
    });
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
    let json = cli.command.json();
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
        Command::Debian(a) => buildit_cli::debian_cmd::run_debian(&a),
        Command::Run(a) => buildit_cli::run_cmd::run(a),
        Command::Push(a) => buildit_cli::image_cmd::run_push(a),
        Command::Contents(a) => buildit_cli::image_cmd::run_contents(a),
        Command::Image(a) => buildit_cli::image_cmd::run_image(a),
        Command::Sbom(a) => buildit_cli::sbom_cmd::run(a),
        Command::Outdated(a) => buildit_cli::update_cmd::run_outdated(a),
        Command::Update(a) => buildit_cli::update_cmd::run_update(a),
        Command::Diff(a) => buildit_cli::update_cmd::run_diff(a),
        Command::Audit(a) => buildit_cli::audit_cmd::run(a),
        Command::Completions(a) => {
            print!("{}", buildit_cli::generate::completions(a.shell));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(a) => run_man(&a),
        Command::Init(a) => buildit_cli::init_cmd::run_init(&a),
        Command::Config(a) => buildit_cli::config_cmd::run(a),
        Command::Key(a) => {
            buildit_cli::share_cmd::run(buildit_cli::share_cmd::ShareCommand::Key(a))
        }
        Command::Sign(a) => {
            buildit_cli::share_cmd::run(buildit_cli::share_cmd::ShareCommand::Sign(a))
        }
        Command::Copy(a) => {
            buildit_cli::share_cmd::run(buildit_cli::share_cmd::ShareCommand::Copy(a))
        }
    }));
    match r {
        Ok(Ok(code)) => code,
        // every command's error is rendered here, once
        Ok(Err(e)) if json => {
            for line in buildit_cli::output::error_json_lines(&e) {
                eprintln!("{line}");
            }
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprint!("{}", render::error(&e, st));
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(2),
    }
}
