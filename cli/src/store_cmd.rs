//! `buildit store ...`: the store's command-line interface (add, path-info, verify, gc, roots,
//! add-root, why-depends, export, import, cat, ls, delete), plus [`open_store`], which every
//! command that needs a store (instantiate, realise, build) uses to pick the physical root the
//! same way: `--store-root DIR`, else `BUILDIT_STORE_ROOT`, else `/bld` when writable, else
//! `$XDG_DATA_HOME/buildit` (`~/.local/share/buildit`). Errors are miette diagnostics with codes
//! `buildit::store::*`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use buildit_store::store::StoreError;
use buildit_store::{GcOptions, Store, StoreLayout, StorePath};
use clap::{Args, Subcommand};
use miette::{miette, Report};

/// `buildit store` and its global option.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The store's physical root directory (default: $BUILDIT_STORE_ROOT, else /bld when
    /// writable, else $XDG_DATA_HOME/buildit)
    #[arg(long, global = true, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The `buildit store` subcommands.
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Add a file or directory to the store and print its store path
    #[command(
        after_help = "Examples:\n  buildit store add ./src\n  buildit store add --name hello-src ./src"
    )]
    Add {
        /// The file or directory to add
        path: PathBuf,
        /// The store object name (default: the file name)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Show what the store knows about paths (content hash, size, references, deriver)
    #[command(name = "path-info")]
    PathInfo {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Include everything the paths refer to, transitively
        #[arg(long, short = 'r')]
        closure: bool,
        /// Store paths (/bld/store/..., ROOT/store/... or a link such as ./result)
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Check that every registered path is present (exit 1 when one is missing or corrupt)
    Verify {
        /// Also recompute every object's content hash
        #[arg(long)]
        check_contents: bool,
        /// Unregister broken paths and everything referring to them
        #[arg(long)]
        repair: bool,
    },
    /// Delete store paths unreachable from GC roots
    Gc {
        /// Only print what would be deleted
        #[arg(long)]
        dry_run: bool,
        /// Stop after freeing this much (bytes; K, M, G suffixes allowed)
        #[arg(long, value_name = "BYTES")]
        max: Option<String>,
    },
    /// List the GC roots and the store paths they keep alive
    Roots,
    /// Make LINK a symlink to PATH's object and register it as a GC root
    #[command(name = "add-root")]
    AddRoot {
        /// The link to create (like ./result)
        link: PathBuf,
        /// The store path it keeps alive
        path: String,
    },
    /// Print a chain of references from A to B (why A's closure contains B)
    #[command(name = "why-depends")]
    WhyDepends { a: String, b: String },
    /// Write the closures of paths as an export stream to stdout
    #[command(after_help = "Example:\n  buildit store export ./result > closure.bldx")]
    Export {
        /// Export only the named paths, not their closures
        #[arg(long)]
        no_closure: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Read an export stream from stdin and register its paths (all or nothing)
    #[command(
        after_help = "Content-addressed paths (sources, .drv files, fixed-output downloads) are checked against their content. Input-addressed paths (build outputs) cannot be checked that way and need signatures, which buildit does not support yet: they are refused unless you pass --no-check-sigs because you trust where the stream comes from.\n\nExample:\n  buildit store import < closure.bldx\n  buildit store import --no-check-sigs < my-other-store.bldx"
    )]
    Import {
        /// Also accept input-addressed paths (build outputs), trusting the stream's claims
        #[arg(long)]
        no_check_sigs: bool,
    },
    /// Print a file inside a store object
    Cat {
        /// PATH/sub/file
        path: String,
    },
    /// List a directory inside a store object
    Ls {
        /// List recursively
        #[arg(short = 'R', long)]
        recursive: bool,
        /// PATH or PATH/sub
        path: String,
    },
    /// Delete store paths (refused when they are reachable from a root or referenced)
    Delete {
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

/// Open the store chosen by `root`, `BUILDIT_STORE_ROOT`, `/bld` or the data directory.
pub fn open_store(root: Option<&Path>) -> miette::Result<Store> {
    let env_root = std::env::var_os("BUILDIT_STORE_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    let layout = StoreLayout::choose(root, env_root.as_deref(), data_home.as_deref());
    Store::open(layout).map_err(store_error)
}

/// A miette report for a store error, with a stable code and a help line.
pub fn store_error(e: StoreError) -> Report {
    use buildit_store::db::DbError;
    let msg = e.to_string();
    match &e {
        StoreError::Db(DbError::Corrupt { .. } | DbError::Foreign { .. } | DbError::Version { .. }) => miette!(
            code = "buildit::store::database",
            help = "the database file is damaged or belongs to something else; move it away or choose another root with --store-root",
            "{msg}"
        ),
        StoreError::Db(_) => miette!(code = "buildit::store::database", help = "retry; if it persists, run `buildit store verify`", "{msg}"),
        StoreError::NotValid(_) => miette!(
            code = "buildit::store::not-valid",
            help = "add it with `buildit store add` or import it with `buildit store import`",
            "{msg}"
        ),
        StoreError::NotAStorePath(_) => miette!(
            code = "buildit::store::not-a-store-path",
            help = "give /bld/store/<hash>-<name>, ROOT/store/<hash>-<name> or a link to one such as ./result",
            "{msg}"
        ),
        StoreError::Path(_) => miette!(
            code = "buildit::store::bad-path",
            help = "names may contain letters, digits and + - . _ ? = and must not start with '.'",
            "{msg}"
        ),
        StoreError::NoName(_) => miette!(code = "buildit::store::bad-path", help = "use --name NAME", "{msg}"),
        StoreError::Alive { .. } => miette!(
            code = "buildit::store::alive",
            help = "remove its roots (`buildit store roots`) or delete its referrers first",
            "{msg}"
        ),
        StoreError::MissingReference { .. } => miette!(
            code = "buildit::store::missing-reference",
            help = "import or add the referenced paths first (export closures with `buildit store export`)",
            "{msg}"
        ),
        StoreError::UntrustedImport(_) => miette!(
            code = "buildit::store::untrusted-import",
            help = "input-addressed paths need a trusted signature, and signature checking (with signing keys) is not supported yet; if you trust where this stream comes from (e.g. your own other store), import it with `buildit store import --no-check-sigs`; nothing was registered",
            "{msg}"
        ),
        StoreError::ContentAddressMismatch { .. } => miette!(
            code = "buildit::store::bad-import",
            help = "the stream claims a path its content does not give; nothing was registered",
            "{msg}"
        ),
        StoreError::ImportTrailingData | StoreError::ImportCycle(_) => miette!(
            code = "buildit::store::bad-import",
            help = "the export stream is malformed; nothing was registered",
            "{msg}"
        ),
        StoreError::HashMismatch { .. } | StoreError::Import(_) => miette!(
            code = "buildit::store::bad-import",
            help = "the export stream is truncated or corrupt; nothing was registered",
            "{msg}"
        ),
        StoreError::Archive(buildit_store::ArchiveError::Unsafe { .. } | buildit_store::ArchiveError::Malformed(_)) => miette!(
            code = "buildit::store::bad-archive",
            help = "the archive is not a canonical buildit archive; nothing was registered",
            "{msg}"
        ),
        StoreError::Archive(buildit_store::ArchiveError::UnsupportedFileType { .. })
        | StoreError::Normalise(buildit_store::normalise::NormaliseError::UnsupportedFileType { .. }) => miette!(
            code = "buildit::store::unsupported-file",
            help = "remove sockets, fifos and device files from the tree",
            "{msg}"
        ),
        _ => miette!(code = "buildit::store::io", help = "check the path and permissions", "{msg}"),
    }
}

fn render(r: &Report) -> String {
    let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if tty {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::none()
    };
    let mut out = String::new();
    if miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_wrap_lines(tty)
        .with_links(false)
        .render_report(&mut out, r.as_ref())
        .is_err()
    {
        out = format!("error: {r}\n");
    }
    out
}

/// Print a report on stderr and return exit status 1.
pub fn fail(r: Report) -> ExitCode {
    eprint!("{}", render(&r));
    ExitCode::from(1)
}

/// Run `buildit store ...`.
pub fn run(a: StoreArgs) -> ExitCode {
    let store = match open_store(a.store_root.as_deref()) {
        Ok(s) => s,
        Err(r) => return fail(r),
    };
    match run_with(&store, a.command) {
        Ok(code) => code,
        Err(r) => fail(r),
    }
}

fn resolve(store: &Store, arg: &str) -> miette::Result<(StorePath, String)> {
    store.resolve(arg).map_err(store_error)
}

fn resolve_valid(store: &Store, arg: &str) -> miette::Result<StorePath> {
    let (p, _) = resolve(store, arg)?;
    if !store.is_valid(&p).map_err(store_error)? {
        return Err(store_error(StoreError::NotValid(p)));
    }
    Ok(p)
}

fn parse_bytes(s: &str) -> miette::Result<u64> {
    let t = s.trim();
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| {
            miette!(
                code = "buildit::store::bad-size",
                help = "give a number of bytes, optionally with K, M, G or T",
                "'{s}' is not a size"
            )
        })
}

fn out_err(e: std::io::Error) -> Report {
    miette!(
        code = "buildit::store::io",
        help = "is stdout closed?",
        "writing the output: {e}"
    )
}

fn run_with(store: &Store, cmd: StoreCommand) -> miette::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        StoreCommand::Add { path, name } => {
            let p = store
                .add_path(&path, name.as_deref())
                .map_err(store_error)?;
            writeln!(out, "{p}").map_err(out_err)?;
        }
        StoreCommand::PathInfo {
            json,
            closure,
            paths,
        } => {
            let mut ps = Vec::new();
            for a in &paths {
                ps.push(resolve_valid(store, a)?);
            }
            let ps: Vec<StorePath> = if closure {
                store
                    .closure(&ps)
                    .map_err(store_error)?
                    .into_iter()
                    .collect()
            } else {
                ps
            };
            let mut infos = Vec::new();
            for p in &ps {
                let info = store
                    .path_info(p)
                    .map_err(store_error)?
                    .ok_or_else(|| store_error(StoreError::NotValid(p.clone())))?;
                infos.push(info);
            }
            if json {
                let s = serde_json::to_string_pretty(&infos)
                    .map_err(|e| miette!("cannot print JSON: {e}"))?;
                writeln!(out, "{s}").map_err(out_err)?;
            } else {
                for i in &infos {
                    writeln!(out, "{}\t{}\t{}", i.path, i.size, i.content_hash).map_err(out_err)?;
                }
            }
        }
        StoreCommand::Verify {
            check_contents,
            repair,
        } => {
            let rep = store.verify(check_contents, repair).map_err(store_error)?;
            for p in &rep.missing {
                eprintln!(
                    "missing: {p} (registered, but {} is absent)",
                    store.layout().physical(p).display()
                );
            }
            for p in &rep.corrupt {
                eprintln!("corrupt: {p} (its contents do not match the registered content hash)");
            }
            for p in &rep.unregistered {
                eprintln!("unregistered: {p}");
            }
            eprintln!(
                "checked {} paths: {} missing, {} corrupt{}",
                rep.checked,
                rep.missing.len(),
                rep.corrupt.len(),
                if repair {
                    format!(", {} unregistered", rep.unregistered.len())
                } else {
                    String::new()
                }
            );
            if !rep.ok() && !repair {
                return Ok(ExitCode::from(1));
            }
        }
        StoreCommand::Gc { dry_run, max } => {
            let max_bytes = max.as_deref().map(parse_bytes).transpose()?;
            let rep = store
                .gc(GcOptions { dry_run, max_bytes })
                .map_err(store_error)?;
            for p in &rep.deleted {
                writeln!(out, "{p}").map_err(out_err)?;
            }
            eprintln!(
                "{} {} store paths ({} bytes){}, {} live, in {:.3} s",
                if dry_run { "would delete" } else { "deleted" },
                rep.deleted.len(),
                rep.bytes_freed,
                if rep.leftovers_removed.is_empty() && rep.stale_tmp_removed == 0 {
                    String::new()
                } else {
                    format!(
                        "; removed {} unregistered leftovers and {} stale temporary entries",
                        rep.leftovers_removed.len(),
                        rep.stale_tmp_removed
                    )
                },
                rep.live,
                rep.seconds
            );
        }
        StoreCommand::Roots => {
            for r in store.roots().map_err(store_error)? {
                writeln!(out, "{} -> {}", r.link.display(), r.target).map_err(out_err)?;
            }
        }
        StoreCommand::AddRoot { link, path } => {
            let p = resolve_valid(store, &path)?;
            store.add_root(&link, &p).map_err(store_error)?;
        }
        StoreCommand::WhyDepends { a, b } => {
            let a = resolve_valid(store, &a)?;
            let b = resolve_valid(store, &b)?;
            let mut prev: HashMap<StorePath, StorePath> = HashMap::new();
            let mut seen = BTreeSet::new();
            let mut q = VecDeque::from([a.clone()]);
            seen.insert(a.clone());
            let mut found = a == b;
            while let Some(p) = q.pop_front() {
                if found {
                    break;
                }
                for r in store.references(&p).map_err(store_error)? {
                    if seen.insert(r.clone()) {
                        prev.insert(r.clone(), p.clone());
                        if r == b {
                            found = true;
                            break;
                        }
                        q.push_back(r);
                    }
                }
            }
            if !found {
                return Err(miette!(
                    code = "buildit::store::no-dependency",
                    help = "see its closure with `buildit store path-info --closure`",
                    "{a} does not depend on {b}"
                ));
            }
            let mut chain = vec![b.clone()];
            let mut cur = b;
            while let Some(p) = prev.get(&cur) {
                chain.push(p.clone());
                cur = p.clone();
            }
            chain.reverse();
            for (i, p) in chain.iter().enumerate() {
                if i == 0 {
                    writeln!(out, "{p}").map_err(out_err)?;
                } else {
                    writeln!(out, "{}-> {p}", "  ".repeat(i)).map_err(out_err)?;
                }
            }
        }
        StoreCommand::Export { no_closure, paths } => {
            if std::io::stdout().is_terminal() {
                return Err(miette!(
                    code = "buildit::store::export-to-terminal",
                    help = "redirect it: buildit store export PATH > file",
                    "refusing to write a binary export stream to a terminal"
                ));
            }
            let mut ps = Vec::new();
            for a in &paths {
                ps.push(resolve_valid(store, a)?);
            }
            let ps: Vec<StorePath> = if no_closure {
                ps
            } else {
                store
                    .closure(&ps)
                    .map_err(store_error)?
                    .into_iter()
                    .collect()
            };
            let n = store.export(&ps, &mut out).map_err(store_error)?;
            eprintln!("exported {n} store paths");
        }
        StoreCommand::Import { no_check_sigs } => {
            let stdin = std::io::stdin();
            let opts = buildit_store::ImportOptions {
                trust_input_addressed: no_check_sigs,
            };
            let got = store.import(stdin.lock(), opts).map_err(store_error)?;
            for p in &got {
                writeln!(out, "{p}").map_err(out_err)?;
            }
        }
        StoreCommand::Cat { path } => {
            let (p, sub) = resolve(store, &path)?;
            if !store.is_valid(&p).map_err(store_error)? {
                return Err(store_error(StoreError::NotValid(p)));
            }
            let phys = store.physical_sub(&p, &sub).map_err(store_error)?;
            let meta = std::fs::metadata(&phys).map_err(|e| no_such(&p, &sub, e))?;
            if meta.is_dir() {
                return Err(miette!(
                    code = "buildit::store::is-a-directory",
                    help = "list it with `buildit store ls`",
                    "{} is a directory",
                    Store::logical(&p, &sub)
                ));
            }
            let mut f = std::fs::File::open(&phys).map_err(|e| no_such(&p, &sub, e))?;
            std::io::copy(&mut f, &mut out).map_err(out_err)?;
        }
        StoreCommand::Ls { recursive, path } => {
            let (p, sub) = resolve(store, &path)?;
            if !store.is_valid(&p).map_err(store_error)? {
                return Err(store_error(StoreError::NotValid(p)));
            }
            let phys = store.physical_sub(&p, &sub).map_err(store_error)?;
            let meta = std::fs::symlink_metadata(&phys).map_err(|e| no_such(&p, &sub, e))?;
            if meta.is_dir() {
                ls_dir(&mut out, &phys, "", recursive)?;
            } else {
                ls_line(&mut out, &phys, &meta, ".")?;
            }
        }
        StoreCommand::Delete { paths } => {
            let mut ps = Vec::new();
            for a in &paths {
                ps.push(resolve_valid(store, a)?);
            }
            for p in store.delete(&ps).map_err(store_error)? {
                writeln!(out, "{p}").map_err(out_err)?;
            }
        }
    }
    out.flush().map_err(out_err)?;
    Ok(ExitCode::SUCCESS)
}

fn no_such(p: &StorePath, sub: &str, e: std::io::Error) -> Report {
    miette!(
        code = "buildit::store::no-such-file",
        help = "list the object with `buildit store ls -R`",
        "{}: {e}",
        Store::logical(p, sub)
    )
}

fn ls_line<W: Write>(
    out: &mut W,
    phys: &Path,
    meta: &std::fs::Metadata,
    name: &str,
) -> miette::Result<()> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let t = std::fs::read_link(phys).unwrap_or_default();
        writeln!(out, "lrwxrwxrwx {:>12} {name} -> {}", 0, t.display()).map_err(out_err)
    } else if ft.is_dir() {
        writeln!(out, "dr-xr-xr-x {:>12} {name}/", 0).map_err(out_err)
    } else {
        let m = if meta.permissions().mode() & 0o111 != 0 {
            "-r-xr-xr-x"
        } else {
            "-r--r--r--"
        };
        writeln!(out, "{m} {:>12} {name}", meta.size()).map_err(out_err)
    }
}

fn ls_dir<W: Write>(out: &mut W, dir: &Path, prefix: &str, recursive: bool) -> miette::Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(|e| miette!(code = "buildit::store::io", "{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for n in names {
        let p = dir.join(&n);
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| miette!(code = "buildit::store::io", "{}: {e}", p.display()))?;
        let name = format!("{prefix}{}", n.to_string_lossy());
        ls_line(out, &p, &meta, &name)?;
        if recursive && meta.is_dir() {
            ls_dir(out, &p, &format!("{name}/"), true)?;
        }
    }
    Ok(())
}
