//! `buildit store ...`: the store's command-line interface (add, path-info, verify, gc, roots,
//! add-root, why-depends, export, import, cat, ls, delete). The store is the session's
//! (`buildit_driver::store_layout`: `--store-root DIR`, else `BUILDIT_STORE_ROOT`, else `/bld`
//! for its owner, else `$XDG_DATA_HOME/buildit`); errors are `DriverError`s with codes
//! `buildit::store::*`, rendered by `main`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use buildit_driver::store::EntryKind;
use buildit_driver::DriverError;
use buildit_store::store::StoreError;
use buildit_store::{GcOptions, Store, StorePath};
use clap::{Args, Subcommand};

use crate::common::store_layout;

/// `buildit store` and its global option.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The store's physical root directory (default: $BUILDIT_STORE_ROOT, else /bld for root,
    /// else $XDG_DATA_HOME/buildit)
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
        after_help = "Examples:\n  buildit store add examples/hello.bld\n  buildit store add --name nginx-files examples/nginx-prod/files"
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
        /// Print `{ checked, missing, corrupt, unregistered, ok }` on stdout instead of lines
        /// on stderr
        #[arg(long)]
        json: bool,
    },
    /// Delete store paths unreachable from GC roots
    Gc {
        /// Only print what would be deleted
        #[arg(long)]
        dry_run: bool,
        /// Stop after freeing this much (bytes; K, M, G suffixes allowed)
        #[arg(long, value_name = "BYTES")]
        max: Option<String>,
        /// Print `{ deleted, bytes_freed, live, leftovers_removed, stale_tmp_removed, seconds,
        /// dry_run }` on stdout instead of the deleted paths and a summary
        #[arg(long)]
        json: bool,
    },
    /// List the GC roots and the store paths they keep alive
    Roots {
        /// Print a JSON list of `{ link, target }`
        #[arg(long)]
        json: bool,
    },
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
    #[command(
        after_help = "Example:\n  buildit store export ./result > closure.bldx   # a closure: ./result and everything it refers to"
    )]
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

/// Run `buildit store ...`.
impl StoreArgs {
    /// Whether the subcommand prints JSON (`--json`).
    pub fn json(&self) -> bool {
        match &self.command {
            StoreCommand::PathInfo { json, .. }
            | StoreCommand::Verify { json, .. }
            | StoreCommand::Gc { json, .. }
            | StoreCommand::Roots { json } => *json,
            _ => false,
        }
    }
}

pub fn run_store(a: StoreArgs) -> Result<ExitCode, DriverError> {
    let store = Store::open(store_layout(a.store_root.as_deref()))?;
    run_with(&store, a.command)
}

fn resolve(store: &Store, arg: &str) -> Result<(StorePath, String), DriverError> {
    Ok(store.resolve(arg)?)
}

fn resolve_valid(store: &Store, arg: &str) -> Result<StorePath, DriverError> {
    buildit_driver::store::resolve_valid(store, arg)
}

fn parse_bytes(s: &str) -> Result<u64, DriverError> {
    buildit_builder::request::parse_size(s).map_err(|why| {
        DriverError::request(
            "buildit::store::bad-size",
            why,
            "give a number of bytes, optionally with K, M, G or T",
        )
    })
}

fn out_err(e: std::io::Error) -> DriverError {
    DriverError::request(
        "buildit::store::io",
        format!("writing the output: {e}"),
        "is stdout closed?",
    )
}

fn run_with(store: &Store, cmd: StoreCommand) -> Result<ExitCode, DriverError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        StoreCommand::Add { path, name } => {
            let p = store.add_path(&path, name.as_deref())?;
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
                store.closure(&ps)?.into_iter().collect()
            } else {
                ps
            };
            let mut infos = Vec::new();
            for p in &ps {
                let info = store
                    .path_info(p)?
                    .ok_or_else(|| DriverError::from(StoreError::NotValid(p.clone())))?;
                infos.push(info);
            }
            if json {
                let s = serde_json::to_string_pretty(&infos).map_err(|e| {
                    DriverError::request(
                        "buildit::cli::json",
                        format!("cannot print JSON: {e}"),
                        "this is a bug",
                    )
                })?;
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
            json,
        } => {
            let rep = store.verify(check_contents, repair)?;
            if json {
                let list =
                    |ps: &[StorePath]| ps.iter().map(ToString::to_string).collect::<Vec<_>>();
                let v = serde_json::json!({
                    "checked": rep.checked,
                    "missing": list(&rep.missing),
                    "corrupt": list(&rep.corrupt),
                    "unregistered": list(&rep.unregistered),
                    "ok": rep.ok(),
                });
                writeln!(out, "{v}").map_err(out_err)?;
                return Ok(if rep.ok() || repair {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
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
                "checked {}: {} missing, {} corrupt{}",
                crate::output::plural(rep.checked as usize, "path", "paths"),
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
        StoreCommand::Gc { dry_run, max, json } => {
            let max_bytes = max.as_deref().map(parse_bytes).transpose()?;
            let rep = store.gc(GcOptions { dry_run, max_bytes })?;
            if json {
                let deleted: Vec<String> = rep.deleted.iter().map(ToString::to_string).collect();
                let v = serde_json::json!({
                    "deleted": deleted,
                    "bytes_freed": rep.bytes_freed,
                    "live": rep.live,
                    "leftovers_removed": rep.leftovers_removed,
                    "stale_tmp_removed": rep.stale_tmp_removed,
                    "seconds": rep.seconds,
                    "dry_run": dry_run,
                });
                writeln!(out, "{v}").map_err(out_err)?;
                return Ok(ExitCode::SUCCESS);
            }
            for p in &rep.deleted {
                writeln!(out, "{p}").map_err(out_err)?;
            }
            eprintln!(
                "{} {} ({} bytes){}, {} live, in {:.3} s",
                if dry_run { "would delete" } else { "deleted" },
                crate::output::plural(rep.deleted.len(), "store path", "store paths"),
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
        StoreCommand::Roots { json: true } => {
            let roots: Vec<serde_json::Value> = store
                .roots()?
                .iter()
                .map(|r| {
                    serde_json::json!({ "link": r.link.display().to_string(), "target": r.target.to_string() })
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(roots)).map_err(out_err)?;
        }
        StoreCommand::Roots { json: false } => {
            for r in store.roots()? {
                writeln!(out, "{} -> {}", r.link.display(), r.target).map_err(out_err)?;
            }
        }
        StoreCommand::AddRoot { link, path } => {
            let p = resolve_valid(store, &path)?;
            store.add_root(&link, &p)?;
        }
        StoreCommand::WhyDepends { a, b } => {
            let a = resolve_valid(store, &a)?;
            let b = resolve_valid(store, &b)?;
            let chain = buildit_driver::store::why_depends(store, &a, &b)?;
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
                return Err(DriverError::request(
                    "buildit::store::export-to-terminal",
                    "refusing to write a binary export stream to a terminal",
                    "redirect it: buildit store export PATH > file",
                ));
            }
            let mut ps = Vec::new();
            for a in &paths {
                ps.push(resolve_valid(store, a)?);
            }
            let ps: Vec<StorePath> = if no_closure {
                ps
            } else {
                store.closure(&ps)?.into_iter().collect()
            };
            let n = store.export(&ps, &mut out)?;
            eprintln!(
                "exported {}",
                crate::output::plural(n as usize, "store path", "store paths")
            );
        }
        StoreCommand::Import { no_check_sigs } => {
            let stdin = std::io::stdin();
            let opts = buildit_store::ImportOptions {
                trust_input_addressed: no_check_sigs,
            };
            let got = store.import(stdin.lock(), opts)?;
            for p in &got {
                writeln!(out, "{p}").map_err(out_err)?;
            }
        }
        StoreCommand::Cat { path } => {
            let (p, sub) = resolve(store, &path)?;
            if !store.is_valid(&p)? {
                return Err(StoreError::NotValid(p).into());
            }
            let phys = store.physical_sub(&p, &sub)?;
            let meta = std::fs::metadata(&phys).map_err(|e| no_such(&p, &sub, e))?;
            if meta.is_dir() {
                return Err(DriverError::request(
                    "buildit::store::is-a-directory",
                    format!("{} is a directory", Store::logical(&p, &sub)),
                    "list it with `buildit store ls`",
                ));
            }
            let mut f = std::fs::File::open(&phys).map_err(|e| no_such(&p, &sub, e))?;
            std::io::copy(&mut f, &mut out).map_err(out_err)?;
        }
        StoreCommand::Ls { recursive, path } => {
            for e in buildit_driver::store::list(store, &path, recursive)? {
                let name = &e.name;
                match e.kind {
                    EntryKind::Symlink { target } => {
                        writeln!(out, "lrwxrwxrwx {:>12} {name} -> {target}", 0)
                    }
                    EntryKind::Dir => writeln!(out, "dr-xr-xr-x {:>12} {name}/", 0),
                    EntryKind::File { executable, size } => {
                        let m = if executable {
                            "-r-xr-xr-x"
                        } else {
                            "-r--r--r--"
                        };
                        writeln!(out, "{m} {size:>12} {name}")
                    }
                }
                .map_err(out_err)?;
            }
        }
        StoreCommand::Delete { paths } => {
            let mut ps = Vec::new();
            for a in &paths {
                ps.push(resolve_valid(store, a)?);
            }
            for p in store.delete(&ps)? {
                writeln!(out, "{p}").map_err(out_err)?;
            }
        }
    }
    out.flush().map_err(out_err)?;
    Ok(ExitCode::SUCCESS)
}

fn no_such(p: &StorePath, sub: &str, e: std::io::Error) -> DriverError {
    DriverError::request(
        "buildit::store::no-such-file",
        format!("{}: {e}", Store::logical(p, sub)),
        "list the object with `buildit store ls -R`",
    )
}
