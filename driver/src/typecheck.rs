//! Type checking across files: the driver's side of typed imports ([`buildit_lang::types::Imports`]).
//!
//! The checker in `lang` does no IO; a [`TypeCheck`] resolves what an `import` names (a path
//! literal relative to the importing file, `~/`, absolute, or `<buildit>`/`<buildit/sub>`: the
//! embedded standard library, whose files are named `<buildit/REL>` here), reads and checks that
//! file (syntax, scope through the evaluator's lowering, types), and returns its interface.
//! Import cycles, missing and unparsable files give `None` (the import is `Dyn`).
//!
//! Interfaces are cached per file and content: the key is a hash of the checker's version, the
//! running binary (its size and modification time), the file's name and its text. An entry
//! records the interface and, for every import the file made, the resolved name and a hash of
//! the interface it got; an entry is used only when each of those still hashes the same (checked
//! recursively, so a change deep in the import graph re-checks exactly the files whose imports'
//! interfaces changed, and a change that keeps a file's interface stops there). Entries live in
//! memory for the life of a [`TypeCheck`] (a REPL or a language server keeps one) and on disk
//! under `$XDG_CACHE_HOME/buildit/types` (`~/.cache/buildit/types`) for one-shot commands;
//! `BUILDIT_TYPE_CACHE=off` turns the disk cache off, another value names its directory. Only
//! files without diagnostics are cached, so the diagnostics of a file with errors are found
//! again on every run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use buildit_eval::Evaluator;
use buildit_lang::ast::PathKind;
use buildit_lang::types::{self, CheckOptions, ImportTarget, Imports, Type, TypeEnv};
use buildit_lang::{Diagnostic, FileId, SourceMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever inference changes what it gives for the same text (cache keys include it).
const CHECKER_VERSION: u32 = 1;

/// The prefix and suffix of the names of the standard library's files.
const STDLIB_PREFIX: &str = "<buildit/";

/// One cached file: its interface and what it saw of its imports.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    /// `(resolved name, hash of the interface it got)` per import, in order
    deps: Vec<(String, String)>,
    interface: Option<Type>,
}

/// A file being checked (or validated from the cache): its name and the imports it made.
struct Frame {
    key: String,
    deps: Vec<(String, String)>,
}

/// How many files a [`TypeCheck`] checked and how many it took from its caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub checked: usize,
    pub from_memory: usize,
    pub from_disk: usize,
}

/// The result of checking one root file.
pub struct Checked {
    /// Every file read, for rendering the diagnostics.
    pub sources: SourceMap,
    /// The root file's diagnostics (in source order), then those of the files it imports
    /// (each file's in source order).
    pub diagnostics: Vec<Diagnostic>,
    /// How many of `diagnostics` are the root file's.
    pub root_diagnostics: usize,
    /// The root's type, printed (empty after syntax errors).
    pub ty: String,
    /// The root's type (`Dyn` after syntax errors).
    pub root_type: Type,
}

/// A type checker that follows imports, with its caches. One per process or per command.
pub struct TypeCheck {
    sources: SourceMap,
    strict: bool,
    memory: HashMap<String, Entry>,
    disk: Option<PathBuf>,
    /// the binary's identity, part of every key
    build: String,
    stack: Vec<Frame>,
    /// diagnostics of imported files (not the root's)
    imported: Vec<Diagnostic>,
    /// imported files whose diagnostics were already collected (by this or an earlier root)
    reported: std::collections::HashSet<String>,
    /// the interfaces established in this run, by file name
    done: HashMap<String, Option<Type>>,
    evaluator: Evaluator,
    home: Option<String>,
    /// What relative imports of a source that is not a file resolve against (a REPL's
    /// directory; `None`: the process's)
    source_dir: Option<String>,
    pub stats: Stats,
}

impl TypeCheck {
    /// A checker with the disk cache of this environment (see the module documentation).
    pub fn new(strict: bool) -> TypeCheck {
        let disk = match std::env::var_os("BUILDIT_TYPE_CACHE") {
            Some(v) if v == "off" => None,
            Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
            _ => std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("buildit/types")),
        };
        TypeCheck::with_cache(strict, disk)
    }

    /// A checker with the given disk cache directory (`None`: in memory only).
    pub fn with_cache(strict: bool, disk: Option<PathBuf>) -> TypeCheck {
        let build = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}:{t}", m.len())
            })
            .unwrap_or_default();
        TypeCheck {
            sources: SourceMap::new(),
            strict,
            memory: HashMap::new(),
            disk,
            build,
            stack: Vec::new(),
            imported: Vec::new(),
            reported: Default::default(),
            done: HashMap::new(),
            evaluator: Evaluator::new(Box::new(buildit_stdlib::FsIo::new(|_| {}))),
            home: std::env::var("HOME").ok(),
            source_dir: None,
            stats: Stats::default(),
        }
    }

    /// Check the program `text` named `name` (an absolute path, `«cmdline»`, …) and every file
    /// it imports: syntax, scope and types; `--strict` rules apply to the root and to imported
    /// files outside the standard library.
    pub fn check_root(&mut self, name: &str, text: &str) -> Checked {
        self.sources = SourceMap::new();
        self.imported.clear();
        self.done.clear();
        self.stack.clear();
        let key = name.to_string();
        self.reported.insert(key.clone());
        self.source_dir = None;
        let (mut diagnostics, ty, root_type) = match self.check_text(&key, text) {
            Some((d, Some(r))) => (d, r.ty.to_string(), r.ty),
            Some((d, None)) => (d, String::new(), Type::Dyn),
            None => (Vec::new(), String::new(), Type::Dyn),
        };
        let root_diagnostics = diagnostics.len();
        diagnostics.append(&mut self.imported);
        Checked {
            sources: std::mem::take(&mut self.sources),
            diagnostics,
            root_diagnostics,
            ty,
            root_type,
        }
    }

    /// Start checking a source that is not read from a file (a REPL input) named `name`, whose
    /// relative imports resolve against the directory `dir`. The caches are kept; the sources
    /// of the previous check are dropped. The id to parse `text` with (for
    /// [`TypeCheck::check_expr`]).
    pub fn begin_source(&mut self, name: &str, dir: &str, text: &str) -> FileId {
        self.source_dir = Some(dir.to_string());
        self.sources = SourceMap::new();
        self.imported.clear();
        self.done.clear();
        self.stack.clear();
        self.sources.add(name.to_string(), text)
    }

    /// Type-check `e`, parsed from the source of [`TypeCheck::begin_source`], in `env`, its
    /// imports typed (their diagnostics are not reported here).
    pub fn check_expr(&mut self, e: &buildit_lang::ast::Expr, env: &TypeEnv) -> types::CheckResult {
        let strict = self.strict;
        types::check_program(
            e,
            env,
            CheckOptions {
                imports: self,
                strict,
            },
        )
    }

    /// The sources of the current check (the source of [`TypeCheck::begin_source`] and the
    /// files it imported), for rendering diagnostics.
    pub fn sources(&self) -> &SourceMap {
        &self.sources
    }

    /// Parse, lower (scope) and type-check one file as the top of the stack; its diagnostics in
    /// source order, and the checker's result (`None` after syntax errors).
    fn check_text(
        &mut self,
        key: &str,
        text: &str,
    ) -> Option<(Vec<Diagnostic>, Option<types::CheckResult>)> {
        self.stats.checked += 1;
        let file = self.sources.add(key.to_string(), text);
        let parsed = buildit_lang::parse(file, text);
        let (Some(e), true) = (&parsed.expr, parsed.syntax_ok()) else {
            return Some((parsed.diagnostics, None));
        };
        let base_dir = match stdlib_rel(key) {
            Some(_) => "/".to_string(),
            None => Path::new(key)
                .parent()
                .filter(|p| p.is_absolute())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(crate::eval::cwd),
        };
        let ctx = buildit_eval::lower::LowerCtx {
            globals: self.evaluator.globals(),
            base_dir,
            home: self.home.clone(),
        };
        let (_, scope) = buildit_eval::lower::lower(e, &ctx);
        self.stack.push(Frame {
            key: key.to_string(),
            deps: Vec::new(),
        });
        let strict = self.strict && stdlib_rel(key).is_none();
        let r = types::check_program(
            e,
            &TypeEnv::new(),
            CheckOptions {
                imports: self,
                strict,
            },
        );
        let frame = self.stack.pop();
        let mut all: Vec<Diagnostic> = parsed
            .diagnostics
            .into_iter()
            .chain(scope)
            .chain(r.diagnostics.iter().cloned())
            .collect();
        all.sort_by_key(|d| d.labels.first().map_or(0, |l| l.span.start));
        if all.is_empty() {
            if let Some(frame) = frame {
                let entry = Entry {
                    deps: frame.deps,
                    interface: Some(r.interface.clone()),
                };
                self.store(&self.key_of(key, text), entry);
            }
        }
        Some((all, Some(r)))
    }

    /// The cache key of a file's text.
    fn key_of(&self, name: &str, text: &str) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "buildit-types {CHECKER_VERSION} {}\0{name}\0",
            self.build
        ));
        h.update(text.as_bytes());
        hex::encode(h.finalize())
    }

    fn store(&mut self, key: &str, entry: Entry) {
        if let Some(dir) = &self.disk {
            // best effort: a cache that cannot be written is only slower
            if let Ok(json) = serde_json::to_vec(&entry) {
                let _ = std::fs::create_dir_all(dir);
                let tmp = dir.join(format!(".{key}.{}", std::process::id()));
                if std::fs::write(&tmp, json).is_ok()
                    && std::fs::rename(&tmp, dir.join(key)).is_err()
                {
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        self.memory.insert(key.to_string(), entry);
    }

    /// A cached entry for this key, from memory or disk (not yet validated).
    fn lookup(&mut self, key: &str) -> Option<(Entry, bool)> {
        if let Some(e) = self.memory.get(key) {
            return Some((e.clone(), false));
        }
        let dir = self.disk.as_ref()?;
        let bytes = std::fs::read(dir.join(key)).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        Some((e, true))
    }

    /// The interface of the file named `key` (resolved): from the caches when every import it
    /// made still has the interface it had, else checked now. `None` for a cycle, a file that
    /// cannot be read, or one with syntax errors.
    fn interface(&mut self, key: &str) -> Option<Type> {
        if self.stack.iter().any(|f| f.key == key) {
            return None;
        }
        if let Some(t) = self.done.get(key) {
            return t.clone();
        }
        let t = self.interface_now(key);
        self.done.insert(key.to_string(), t.clone());
        t
    }

    fn interface_now(&mut self, key: &str) -> Option<Type> {
        let text = self.read(key)?;
        let ck = self.key_of(key, &text);
        if let Some((entry, from_disk)) = self.lookup(&ck) {
            self.stack.push(Frame {
                key: key.to_string(),
                deps: Vec::new(),
            });
            let valid = entry
                .deps
                .iter()
                .all(|(dep, hash)| hash_of(&self.interface(dep)) == *hash);
            self.stack.pop();
            if valid {
                if from_disk {
                    self.stats.from_disk += 1;
                    self.memory.insert(ck, entry.clone());
                } else {
                    self.stats.from_memory += 1;
                }
                return entry.interface;
            }
        }
        let (diags, r) = self.check_text(key, &text)?;
        if !diags.is_empty() && self.reported.insert(key.to_string()) {
            self.imported.extend(diags);
        }
        r.map(|r| r.interface)
    }

    /// The text of a resolved file: the embedded library's, or the file system's.
    fn read(&self, key: &str) -> Option<String> {
        match stdlib_rel(key) {
            Some(rel) => buildit_stdlib::embedded::FILES
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, t)| t.to_string()),
            // only a regular file is read (a fifo or device would block or never end; the
            // evaluator refuses those too), and at most 64 MiB of it
            None => {
                let meta = std::fs::metadata(key).ok()?;
                if !meta.is_file() || meta.len() > 64 << 20 {
                    return None;
                }
                std::fs::read_to_string(key).ok()
            }
        }
    }

    /// What an import names, as a resolved file name (`None`: nothing to import).
    fn resolve(&self, from: FileId, target: ImportTarget<'_>) -> Option<String> {
        let from_name = self
            .sources
            .get(from)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        match target {
            ImportTarget::Lookup(p) => {
                let rel = p
                    .strip_prefix("buildit")
                    .unwrap_or(p)
                    .trim_start_matches('/');
                stdlib_file(&buildit_eval::lower::canon_path(&format!("/{rel}")))
            }
            ImportTarget::Path { kind, path } => match (kind, stdlib_rel(&from_name)) {
                (PathKind::Relative, Some(rel)) => {
                    let dir = Path::new(rel)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    stdlib_file(&buildit_eval::lower::canon_path(&format!("/{dir}/{path}")))
                }
                (PathKind::Relative, None) => {
                    let dir = Path::new(&from_name)
                        .parent()
                        .filter(|p| p.is_absolute())
                        .map(|p| p.to_string_lossy().into_owned())
                        .or_else(|| self.source_dir.clone())
                        .unwrap_or_else(crate::eval::cwd);
                    fs_file(&buildit_eval::lower::canon_path(&format!("{dir}/{path}")))
                }
                (PathKind::Absolute, _) => fs_file(&buildit_eval::lower::canon_path(path)),
                (PathKind::Home, _) => {
                    let home = self.home.as_deref()?;
                    let rest = path.trim_start_matches('~').trim_start_matches('/');
                    fs_file(&buildit_eval::lower::canon_path(&format!("{home}/{rest}")))
                }
            },
        }
    }
}

impl Imports for TypeCheck {
    fn import_type(&mut self, from: FileId, target: ImportTarget<'_>) -> Option<Type> {
        let key = self.resolve(from, target);
        let ty = match &key {
            Some(k) => self.interface(k),
            None => None,
        };
        if let (Some(k), Some(frame)) = (key, self.stack.last_mut()) {
            frame.deps.push((k, hash_of(&ty)));
        }
        ty
    }
}

/// A stable hash of an interface (or of its absence).
fn hash_of(t: &Option<Type>) -> String {
    let json = serde_json::to_vec(t).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// The path inside the standard library of a file named `<buildit/REL>`.
fn stdlib_rel(name: &str) -> Option<&str> {
    name.strip_prefix(STDLIB_PREFIX)?.strip_suffix('>')
}

/// The library file a path (`/REL`, lexically normalised) names: the file, or a directory's
/// `default.bld`.
fn stdlib_file(abs: &str) -> Option<String> {
    let rel = abs.trim_start_matches('/');
    let is = |r: &str| buildit_stdlib::embedded::is_file(r);
    let file = if is(rel) && rel.ends_with(".bld") {
        rel.to_string()
    } else if rel.is_empty() {
        "default.bld".to_string()
    } else if is(&format!("{rel}/default.bld")) {
        format!("{rel}/default.bld")
    } else {
        return None;
    };
    Some(format!("{STDLIB_PREFIX}{file}>"))
}

/// The file a path names as the evaluator reads it: a directory means its `default.bld` (else
/// `default.nix`).
fn fs_file(path: &str) -> Option<String> {
    let p = Path::new(path);
    if p.is_dir() {
        let bld = format!("{path}/default.bld");
        if Path::new(&bld).is_file() {
            return Some(bld);
        }
        return Some(format!("{path}/default.nix"));
    }
    Some(path.to_string())
}
