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
        after_help = "Examples:\n  buildit check examples/hello.bld\n  buildit check --json examples/hello.bld examples/packages.bld\n  buildit check --strict examples/hello.bld"
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
        after_help = "Examples:\n  buildit search\n  buildit search nginx\n  buildit search --json zlib\n  buildit search --debian --apt-root <dir> --update curl   # Debian source packages"
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
    /// Print the SBOM (SPDX 2.3 or CycloneDX 1.6 JSON) of an image, a spec's image or a package
    #[command(
        after_help = "Examples:\n  buildit sbom app-misc/hello                          # a package: evaluated, not built\n  buildit sbom --format cyclonedx examples/nginx-prod/pkgs/nginx  # a directory holding pkg.yaml\n  buildit sbom <image-dir>                             # ./result: the SBOM the image carries\n  buildit sbom <spec-dir>                              # built first if needed\n\nAn image prints the SBOM it carries (sbom.spdx.json, sbom.cdx.json beside it); see\ndocs/supply-chain.md."
    )]
    Sbom(crate::sbom_cmd::SbomArgs),
    /// Write a container spec to start from (container.yaml; --package: a pkg.yaml too)
    #[command(
        after_help = "Examples:\n  buildit init my-image\n  buildit init --package my-app\n  buildit build my-app   # the image, at ./result"
    )]
    Init(crate::init_cmd::InitArgs),
    /// Show the configuration: the merged configuration files and where each value came from
    #[command(
        after_help = "Examples:\n  buildit config show\n  buildit config show --json examples/nginx-prod\n\nThe files, their merge order and every key: docs/config.md."
    )]
    Config(ConfigArgs),
    /// Signing keys for repositories: `buildit key generate NAME` writes NAME.secret and NAME.pub
    Key(KeyArgs),
    /// Sign the records of store paths in a repository with a key (key rotation: sign with
    /// the new key while the old one stays trusted)
    #[command(
        after_help = "Examples:\n  buildit sign --key <team-2.secret> --all file:///srv/repo\n  buildit sign --key <team-2.secret> /bld/store/<hash>-hello-2.10 mysuperbinhost"
    )]
    Sign(SignArgs),
    /// Copy store paths with their closures to a repository, or from one into the store
    #[command(
        after_help = "Examples:\n  buildit copy --to file:///srv/repo ./result\n  buildit copy --from mysuperbinhost /bld/store/<hash>-hello-2.10\n\nURL is a location (docs/config.md: HOST/PATH is https) or a configured repository's name."
    )]
    Copy(CopyArgs),
    /// List the Debian packages of a spec's (or package's) closure with newer versions in the
    /// apt indexes, and packages with newer versions in the set; builds nothing
    #[command(
        after_help = "Examples:\n  buildit outdated examples/nginx-prod\n  buildit outdated --json www-servers/nginx\n  buildit outdated --apt-root <dir> examples/nginx-prod   # a private apt root's indexes"
    )]
    Outdated(crate::update_cmd::OutdatedArgs),
    /// Re-lock a spec's Debian packages (its DIR/debian.lock), rebuild, and report which images
    /// changed, package by package
    #[command(
        after_help = "Examples:\n  buildit update --dry-run examples/nginx-prod\n  buildit update --security-only <spec-dir>\n  buildit update --json <spec-dir> > update.json\n\nThe spec's lock is DIR/debian.lock (written here; `buildit build DIR` uses it). The loop from a\nsecurity update to a pushed image: docs/supply-chain.md."
    )]
    Update(crate::update_cmd::UpdateArgs),
    /// Compare two images: packages added, removed or at other versions, and files
    #[command(
        after_help = "Examples:\n  buildit diff <old-image> result\n  buildit diff --files --json <old-image> <new-image>"
    )]
    Diff(crate::update_cmd::DiffArgs),
    /// Match the packages of an image's closure against OSV advisories (CVEs by package: Debian
    /// by source package, source-built packages by purl/CPE); builds nothing
    #[command(
        after_help = "Examples:\n  buildit audit --advisories <osv-dir> examples/nginx-prod\n  buildit audit --advisories <debian-all.zip> --fail-on high --sarif result > audit.sarif\n  buildit audit --advisories <osv-dir> --vex <triage.vex.json> --emit-vex <image.vex.json> www-servers/nginx\n  buildit audit --update --advisory-url <https://host/Debian/all.zip>\n\nWhat is matched and how, the accepted advisory files and OpenVEX: docs/supply-chain.md."
    )]
    Audit(crate::audit_cmd::AuditArgs),
    /// Print a shell completion script on stdout
    #[command(
        after_help = "Examples:\n  buildit completions bash > ~/.local/share/bash-completion/completions/buildit\n  buildit completions zsh > ~/.zfunc/_buildit\n  buildit completions fish > ~/.config/fish/completions/buildit.fish"
    )]
    Completions(CompletionsArgs),
    /// Write the manual pages (buildit.1 and one per command) into a directory
    #[command(after_help = "Example:\n  buildit man ~/.local/share/man/man1")]
    Man(ManArgs),
}

/// `buildit config …`
#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the merged configuration, each value with the file and line it came from (or
    /// `command line`, `environment (…)`, `default`)
    Show(ConfigShowArgs),
}

/// `buildit config show [--json] [DIR]`
#[derive(Args)]
pub struct ConfigShowArgs {
    /// The directory whose `.buildit-config.yaml` files (up to the repository root) are read
    /// (default: the current directory)
    #[arg(value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Print the configuration as one JSON object
    #[arg(long)]
    pub json: bool,
    /// Show the configuration as these `--discover` values would change it
    #[arg(long, value_name = "LOCATION[,push=True]")]
    pub discover: Vec<String>,
}

/// `buildit key …`
#[derive(Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Write a new ed25519 signing key: NAME.secret (mode 0600) and NAME.pub
    #[command(
        after_help = "Example:\n  buildit key generate <mysuperbinhost-1>\n\nPut NAME.pub into `trusted-keys:` where packages are downloaded and NAME.secret into\n`signing-key:` where they are uploaded (docs/config.md)."
    )]
    Generate(KeyGenerateArgs),
}

/// `buildit key generate NAME [--dir DIR]`
#[derive(Args)]
pub struct KeyGenerateArgs {
    /// The key's name (it is part of every signature: `NAME:BASE64`)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write NAME.secret and NAME.pub
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: std::path::PathBuf,
}

/// `buildit sign --key FILE (PATH…|--all) URL`: the paths and the repository are one list of
/// words whose last is the repository ([`SignArgs::url`], [`SignArgs::paths`]).
#[derive(Args)]
#[command(override_usage = "buildit sign --key <FILE> (<PATH>... | --all) <URL>")]
pub struct SignArgs {
    /// The secret key to sign with (a NAME.secret file)
    #[arg(long, value_name = "FILE")]
    pub key: std::path::PathBuf,
    /// Sign the record of every path the repository holds (then give only URL)
    #[arg(long)]
    pub all: bool,
    /// The store paths whose records are signed, then the repository (a location or a
    /// configured repository's name)
    #[arg(value_name = "PATH... URL", required = true, num_args = 1..)]
    pub targets: Vec<String>,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<std::path::PathBuf>,
}

impl SignArgs {
    /// The repository: the last word.
    pub fn url(&self) -> &str {
        self.targets.last().map_or("", String::as_str)
    }

    /// The store paths: every word but the last.
    pub fn paths(&self) -> &[String] {
        &self.targets[..self.targets.len().saturating_sub(1)]
    }

    /// Why the words do not fit `(PATH…|--all) URL`, if they do not.
    pub fn usage_error(&self) -> Option<&'static str> {
        match (self.all, self.paths().is_empty()) {
            (true, false) => {
                Some("--all signs every path of the repository: give only URL after it")
            }
            (false, true) => Some("name the store paths to sign before URL, or give --all"),
            _ => None,
        }
    }
}

/// `buildit copy (--to URL | --from URL) PATH…`
#[derive(Args)]
pub struct CopyArgs {
    /// Upload the paths and their closures to this repository (a location or a configured
    /// repository's name)
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    pub to: Option<String>,
    /// Download the paths and their closures from this repository into the store (verified
    /// against the trusted keys)
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The store paths (or links to them, such as ./result)
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<std::path::PathBuf>,
}

/// The repository flags of `buildit build` / `realise` (docs/config.md).
#[derive(Args, Clone, Debug, Default)]
pub struct ShareFlags {
    /// Look for packages in this repository too, the seed's form `--discover=LOCATION[,push=True]`
    /// (a location or a configured repository's name; may be given several times; replaces
    /// `discover:` of the configuration)
    #[arg(long, value_name = "LOCATION[,push=True]")]
    pub discover: Vec<String>,
    /// Ask no repository: build every missing path here
    #[arg(long, conflicts_with = "substitute_only")]
    pub no_substitute: bool,
    /// Build nothing: every missing path must come from a repository
    #[arg(long)]
    pub substitute_only: bool,
    /// Look up only downloads (sources, Debian packages) in repositories; build every
    /// package here
    #[arg(long, conflicts_with_all = ["no_substitute", "substitute_only"])]
    pub substitute_sources_only: bool,
    /// Upload what is built (packages, source downloads, the spec and its images) to the
    /// configured repositories that have an upload location, as `push=True` does
    #[arg(long)]
    pub push: bool,
}

impl ShareFlags {
    /// What the flags add to the configuration files.
    pub fn cli_config(&self) -> buildit_driver::config::CliConfig {
        buildit_driver::config::CliConfig {
            discover: self.discover.clone(),
            substitute: if self.no_substitute {
                Some(false)
            } else if self.substitute_only {
                Some(true)
            } else {
                None
            },
        }
    }
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
    /// Reject every place the checker would fall back to `Dyn` silently (heterogeneous lists,
    /// `if` branches of different types, …), in the files given and the files they import
    #[arg(long)]
    pub strict: bool,
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
            Command::Outdated(a) => a.json,
            Command::Update(a) => a.json,
            Command::Diff(a) => a.json,
            Command::Audit(a) => a.json || a.sarif,
            Command::Store(a) => a.json(),
            Command::Config(ConfigArgs {
                command: ConfigCommand::Show(a),
            }) => a.json,
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
