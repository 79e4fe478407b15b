//! The command line's grammar: every command, option and example of `buildit`, as clap
//! types. They live in the library rather than beside `main` so that tests parse the examples
//! of `--help` and of the docs with the same grammar, and so that completion scripts and man
//! pages are generated from it.

use crate::common::parse_size;
use clap::{Args, Parser, Subcommand};

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Build with this Debian lock instead of the embedded stdlib/debian/bookworm.lock
    /// (also: BUILDIT_DEBIAN_LOCK=FILE); refresh one with `buildit debian lock --output FILE`
    #[arg(long, global = true, value_name = "FILE")]
    pub debian_lock: Option<std::path::PathBuf>,
    /// Evaluation fails (buildit::eval::max-call-depth) past N nested calls: endless recursion
    /// ends in seconds [default: 2000000]
    #[arg(long, global = true, value_name = "N")]
    pub max_call_depth: Option<u32>,
    /// Evaluation fails (buildit::eval::memory-limit) when the process uses more memory than
    /// SIZE (e.g. 4G, 512M; 0: no ceiling) [default: 3G]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    pub max_eval_memory: Option<u64>,
    /// The store's physical root, for every command that uses a store (default:
    /// $BUILDIT_STORE_ROOT, else /bld for root, else $XDG_DATA_HOME/buildit)
    #[arg(long, global = true, value_name = "DIR")]
    pub store_root: Option<std::path::PathBuf>,
    /// Say more on stderr: each finished download
    #[arg(short = 'v', long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Say nothing on stderr but errors: no progress, no transcript
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Stream the build logs to stderr, each line prefixed with its package's name
    #[arg(short = 'L', long, global = true)]
    pub print_build_logs: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Evaluate a .bld file or expression and print the value (fully evaluated)
    #[command(
        after_help = "Examples:\n  buildit eval examples/hello.bld\n  buildit eval -E '{ a = 1; b = [ 2 3 ]; }'\n  buildit eval --json -A hello.meta examples/packages.bld"
    )]
    Eval(EvalArgs),
    /// Start an interactive read-eval-print loop
    #[command(after_help = "Type :? at the prompt for the list of commands.")]
    Repl(ReplArgs),
    /// Check .bld files without evaluating them: syntax, names, types (exit 1 on any error)
    #[command(
        after_help = "Examples:\n  buildit check examples/hello.bld\n  buildit check --json examples/hello.bld examples/packages.bld"
    )]
    Check(CheckArgs),
    /// Evaluate, write the derivations to the store and print their .drv paths
    #[command(
        after_help = "Examples:\n  buildit instantiate examples/packages.bld -A hello\n  buildit instantiate -E 'derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }'"
    )]
    Instantiate(crate::instantiate::InstantiateArgs),
    /// Show .drv files as JSON
    #[command(
        after_help = "Example:\n  buildit show-derivation $(buildit instantiate examples/packages.bld -A hello)"
    )]
    ShowDerivation(crate::instantiate::ShowDerivationArgs),
    /// Print the .bld program a container spec directory (container.yaml, pkg.yaml) lowers to
    #[command(after_help = "Example:\n  buildit compile examples/nginx-prod")]
    Compile(crate::yaml_cmd::CompileArgs),
    /// Work with the store: add, path-info, verify, gc, roots, export/import, cat, ls, delete
    Store(crate::store_cmd::StoreArgs),
    /// Build in the sandbox: container spec directories, .bld files, or .drv paths; print the
    /// output paths and leave ./result links (GC roots)
    #[command(
        visible_alias = "build",
        after_help = "Examples:\n  buildit build examples/nginx-prod       # a container spec directory; also: buildit examples/nginx-prod\n  buildit realise examples/packages.bld -A hello\n  buildit realise -E '(import <buildit>).pkgs.zlib'\n  buildit realise -L -E '(import <buildit>).pkgs.hello'   # with its build log on stderr\n  buildit realise /bld/store/<hash>-hello-2.10.drv\n  buildit realise -j 4 --keep-going --no-out-link <a.drv> <b.drv>\n  buildit realise --check /bld/store/<hash>-hello-2.10.drv"
    )]
    Realise(crate::build_cmd::RealiseArgs),
    /// Print the build log of a derivation or of a path built from one
    Log(crate::build_cmd::LogArgs),
    /// Debian packages as pinned inputs: `buildit debian lock PKG...` writes the lock
    Debian(crate::debian_cmd::DebianArgs),
    /// List the package set's atoms, versions and build options (+ on by default, - off)
    #[command(
        after_help = "Examples:\n  buildit search\n  buildit search nginx\n  buildit search --json zlib"
    )]
    Search(crate::search_cmd::SearchArgs),
    /// Build a package of the set if needed and run its main program in a sandbox holding
    /// exactly its runtime closure
    #[command(
        after_help = "Examples:\n  buildit run hello\n  buildit run hello -- --greeting=hi\n  buildit run app-misc/hello-2.10\n  buildit run --net --bind-cwd nginx -- -p . -c <nginx.conf>\n  buildit run --program bin/busybox busybox -- ls /\n  buildit run --set <my-set.bld> <tool>\n\nThe program sees only its runtime closure at /bld/store, the Debian runtime libraries at /usr, a synthetic /etc and a tmpfs /tmp; the current directory only with --bind-cwd; no network but loopback unless --net. The exit status is the program's."
    )]
    Run(crate::run_cmd::RunArgs),
    /// Push an OCI image layout to a registry (OCI distribution API)
    #[command(
        after_help = "Examples:\n  buildit push result 127.0.0.1:5000/nginx:1.22 --insecure\n  buildit push result registry.example/team/app:1.0 --user me --json\n\nThe image is the OCI layout `buildit build` leaves at ./result; the destination is\n<registry host>/<repository>:<tag>."
    )]
    Push(crate::image_cmd::PushArgs),
    /// List every file of an image with the package it came from
    #[command(
        after_help = "Examples:\n  buildit build examples/nginx-prod\n  buildit contents result\n  buildit contents --json result"
    )]
    Contents(crate::image_cmd::ContentsArgs),
    /// Pack one package (with its runtime closure) as its own image; prints the image path
    #[command(
        after_help = "Examples:\n  buildit image app-misc/hello\n  buildit image --format docker-archive www-servers/nginx\n  buildit image --json examples/nginx-prod/pkgs/nginx   # a directory holding pkg.yaml"
    )]
    Image(crate::image_cmd::ImageArgs),
    /// Write a container spec to start from (container.yaml; --package: a pkg.yaml too)
    #[command(
        after_help = "Examples:\n  buildit init my-image\n  buildit init --package my-app\n  buildit build my-app   # the image, at ./result"
    )]
    Init(crate::init_cmd::InitArgs),
    /// Print a shell completion script on stdout
    #[command(
        after_help = "Examples:\n  buildit completions bash > ~/.local/share/bash-completion/completions/buildit\n  buildit completions zsh > ~/.zfunc/_buildit\n  buildit completions fish > ~/.config/fish/completions/buildit.fish"
    )]
    Completions(CompletionsArgs),
    /// Write the manual pages (buildit.1 and one per command) into a directory
    #[command(after_help = "Example:\n  buildit man ~/.local/share/man/man1")]
    Man(ManArgs),
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing)
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: std::path::PathBuf,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The files to check
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Print the diagnostics as a JSON list on stdout
    #[arg(long)]
    pub json: bool,
}

/// What `eval` and `instantiate` evaluate: a file or an expression, and an attribute path.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// The file to evaluate (a directory means its default.bld / default.nix)
    #[arg(conflicts_with = "expr")]
    pub file: Option<String>,
    /// Evaluate this expression instead of a file
    #[arg(short = 'E', long = "expr", value_name = "EXPR")]
    pub expr: Option<String>,
    /// Select an attribute path of the result (`-A packages.hello`)
    #[arg(short = 'A', long = "attr", value_name = "PATH")]
    pub attr: Option<String>,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print the result as JSON (forces it completely)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: crate::instantiate::EvalOpts,
}

#[derive(Args)]
pub struct ReplArgs {
    /// Files whose sets are loaded into scope at start (like `:l`)
    pub files: Vec<String>,
    #[command(flatten)]
    pub common: crate::instantiate::EvalOpts,
}

impl Command {
    /// Whether the command was asked for JSON (`--json`): then its error is JSON too.
    pub fn json(&self) -> bool {
        match self {
            Command::Eval(a) => a.json,
            Command::Check(a) => a.json,
            Command::Instantiate(a) => a.json,
            Command::Realise(a) => a.json,
            Command::Search(a) => a.json,
            Command::Push(a) => a.json,
            Command::Contents(a) => a.json,
            Command::Image(a) => a.json,
            Command::Compile(a) => a.json,
            Command::Store(a) => a.json(),
            _ => false,
        }
    }

    /// Whether the command asked for the whole evaluation trace of an error.
    pub fn show_trace(&self) -> bool {
        match self {
            Command::Eval(a) => a.common.show_trace,
            Command::Repl(a) => a.common.show_trace,
            Command::Instantiate(a) => a.eval.show_trace,
            Command::Realise(a) => a.show_trace,
            _ => false,
        }
    }
}
