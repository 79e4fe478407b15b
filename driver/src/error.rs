//! [`DriverError`]: the one error everything below the command line returns. Each phase keeps
//! its library's typed error (evaluation, store, build, image); [`DriverError::diagnostics`]
//! gives every one of them as diagnostics with a stable code and a help line, so the front end
//! renders all errors the same way, in one place.

use buildit_builder::BuildError;
use buildit_eval::EvalError;
use buildit_images::ImageError;
use buildit_lang::{Diagnostic, SourceMap};
use buildit_store::store::StoreError;

/// Which image operation an [`ImageError`] came from (the codes differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOp {
    /// `buildit push`.
    Push,
    /// Reading an image (`buildit contents`).
    Read,
}

/// An error of a driver operation, with what is needed to show it.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Diagnostics at source spans: syntax, scope and type errors, YAML errors, package-set
    /// checks; `note` is a line shown after them.
    #[error("{}", .diagnostics.first().map_or("error", |d| d.message.as_str()))]
    Diagnostics {
        sources: SourceMap,
        diagnostics: Vec<Diagnostic>,
        note: Option<String>,
    },
    /// Evaluation failed; `sources` are the evaluator's, which the error's spans point into.
    #[error("{error}")]
    Eval {
        sources: SourceMap,
        error: EvalError,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A build failed, or the scheduler refused a derivation.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Resolving or locking Debian packages failed.
    #[error(transparent)]
    Debian(#[from] buildit_debian::DebianError),
    /// Reading or pushing an image failed.
    #[error("{error}")]
    Image { op: ImageOp, error: ImageError },
    /// A request that cannot be carried out, without a source position (nothing to evaluate,
    /// an unknown atom, an unreadable lock): a diagnostic with a code and a help line.
    #[error("{}", .0.message)]
    Request(Diagnostic),
}

/// A driver result.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

impl DriverError {
    /// A [`DriverError::Request`] with its code, message and help.
    pub fn request(
        code: &'static str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        DriverError::Request(Diagnostic::error(code, message).with_help(help))
    }

    /// Diagnostics without a source map (for [`DriverError::Diagnostics`] built from
    /// diagnostics whose spans point nowhere).
    pub fn diagnostics_in(sources: SourceMap, diagnostics: Vec<Diagnostic>) -> Self {
        DriverError::Diagnostics {
            sources,
            diagnostics,
            note: None,
        }
    }

    /// An evaluation error of `ev` (its sources move into the error: the evaluator is not
    /// used for reporting afterwards).
    pub fn eval(ev: &mut buildit_eval::Evaluator, error: EvalError) -> Self {
        DriverError::Eval {
            sources: std::mem::take(&mut ev.sources),
            error,
        }
    }

    /// The error as diagnostics with codes and help lines, and the sources their spans point
    /// into (`None` when they point nowhere). An evaluation error gives its main diagnostic
    /// here; its trace is [`DriverError::Eval`]'s to render.
    pub fn diagnostics(&self) -> (Option<&SourceMap>, Vec<Diagnostic>) {
        let plain = |code: &'static str, help: &str| {
            vec![Diagnostic::error(code, self.to_string()).with_help(help)]
        };
        match self {
            DriverError::Diagnostics {
                sources,
                diagnostics,
                ..
            } => (Some(sources), diagnostics.clone()),
            DriverError::Eval { sources, error } => (Some(sources), vec![error.to_diagnostic()]),
            DriverError::Store(e) => {
                let (code, help) = store_code(e);
                (None, plain(code, help))
            }
            DriverError::Build(e) => {
                let (code, help) = build_code(e);
                (None, plain(code, &help))
            }
            DriverError::Debian(e) => {
                let (code, help) = debian_code(e);
                (None, plain(code, help))
            }
            DriverError::Image { op, error } => {
                let (code, help) = image_code(*op, error);
                (None, plain(code, help))
            }
            DriverError::Request(d) => (None, vec![d.clone()]),
        }
    }
}

/// A store error's code and help.
fn store_code(e: &StoreError) -> (&'static str, &'static str) {
    use buildit_store::db::DbError;
    use buildit_store::ArchiveError;
    match e {
        StoreError::Db(DbError::Corrupt { .. } | DbError::Foreign { .. } | DbError::Version { .. }) => (
            "buildit::store::database",
            "the database file is damaged or belongs to something else; move it away or choose another root with --store-root",
        ),
        StoreError::Db(_) => ("buildit::store::database", "retry; if it persists, run `buildit store verify`"),
        StoreError::NotValid(_) => (
            "buildit::store::not-valid",
            "add it with `buildit store add` or import it with `buildit store import`",
        ),
        StoreError::NotAStorePath(_) => (
            "buildit::store::not-a-store-path",
            "give /bld/store/<hash>-<name>, ROOT/store/<hash>-<name> or a link to one such as ./result",
        ),
        StoreError::Path(_) => (
            "buildit::store::bad-path",
            "names may contain letters, digits and + - . _ ? = and must not start with '.'",
        ),
        StoreError::NoName(_) => ("buildit::store::bad-path", "use --name NAME"),
        StoreError::Alive { .. } => (
            "buildit::store::alive",
            "remove its roots (`buildit store roots`) or delete its referrers first",
        ),
        StoreError::MissingReference { .. } => (
            "buildit::store::missing-reference",
            "import or add the referenced paths first (export closures with `buildit store export`)",
        ),
        StoreError::UntrustedImport(_) => (
            "buildit::store::untrusted-import",
            "input-addressed paths need a trusted signature, and signature checking (with signing keys) is not supported yet; if you trust where this stream comes from (e.g. your own other store), import it with `buildit store import --no-check-sigs`; nothing was registered",
        ),
        StoreError::ContentAddressMismatch { .. } => (
            "buildit::store::bad-import",
            "the stream claims a path its content does not give; nothing was registered",
        ),
        StoreError::ImportTrailingData | StoreError::ImportCycle(_) => (
            "buildit::store::bad-import",
            "the export stream is malformed; nothing was registered",
        ),
        StoreError::HashMismatch { .. } | StoreError::Import(_) => (
            "buildit::store::bad-import",
            "the export stream is truncated or corrupt; nothing was registered",
        ),
        StoreError::Archive(ArchiveError::Unsafe { .. } | ArchiveError::Malformed(_)) => (
            "buildit::store::bad-archive",
            "the archive is not a canonical buildit archive; nothing was registered",
        ),
        StoreError::Archive(ArchiveError::UnsupportedFileType { .. })
        | StoreError::Normalise(buildit_store::normalise::NormaliseError::UnsupportedFileType {
            ..
        }) => (
            "buildit::store::unsupported-file",
            "remove sockets, fifos and device files from the tree",
        ),
        _ => ("buildit::store::io", "check the path and permissions"),
    }
}

/// A build error's code and help.
fn build_code(e: &BuildError) -> (&'static str, String) {
    match e {
        BuildError::BwrapMissing => (
            "buildit::build::no-bwrap",
            "builds run in bubblewrap: apt-get install bubblewrap".into(),
        ),
        BuildError::NoUserNamespaces(_) => (
            "buildit::build::no-user-namespaces",
            "the administrator allows unprivileged user namespaces (above), or buildit runs as root (docs/store.md: who owns a store)".into(),
        ),
        BuildError::Failed(f) => (
            "buildit::build::failed",
            format!("the whole log: buildit log {}", f.drv),
        ),
        BuildError::Several { .. } | BuildError::DependencyFailed { .. } => (
            "buildit::build::failed",
            "the failures are listed above; see their logs with `buildit log DRV`".into(),
        ),
        BuildError::WrongSystem { .. } => (
            "buildit::build::system",
            "set system = \"x86_64-linux\" (builtins.currentSystem)".into(),
        ),
        BuildError::UnknownBuiltin { .. } => (
            "buildit::build::builtin",
            "this buildit does not provide that builtin builder".into(),
        ),
        BuildError::BuiltinNeedsFixedOutput { .. } => (
            "buildit::build::not-fixed-output",
            "declare the expected content: outputHash (with outputHashAlgo, or SRI) and outputHashMode".into(),
        ),
        BuildError::BadDerivation { .. } | BuildError::Request(_) => (
            "buildit::build::bad-derivation",
            "give a .drv store path written by this buildit (`buildit store ls`)".into(),
        ),
        BuildError::Store(_) | BuildError::Io { .. } => (
            "buildit::build::io",
            "check the store root and its permissions (`buildit store verify`)".into(),
        ),
        BuildError::Substitute { .. } => (
            "buildit::share::refused",
            "the repository serves data that does not verify: tell its owner; --no-substitute builds locally".into(),
        ),
        BuildError::NotSubstituted { .. } => (
            "buildit::share::not-found",
            "drop --substitute-only to build what no repository has".into(),
        ),
        BuildError::Remote {
            unavailable: true, ..
        } => (
            "buildit::remote::unavailable",
            "check the endpoint (--remote URL); --remote-fallback builds locally when it is down".into(),
        ),
        BuildError::Remote { .. } => (
            "buildit::remote::failed",
            "the endpoint's result was refused and nothing was registered; see docs/distributed.md".into(),
        ),
    }
}

/// A Debian error's code and help.
fn debian_code(e: &buildit_debian::DebianError) -> (&'static str, &'static str) {
    use buildit_debian::DebianError;
    match e {
            DebianError::UnknownPackage { .. } => ("buildit::debian::unknown-package", "package names are binary package names as in `apt-cache show NAME`; run `apt-get update` if the indexes are old"),
            DebianError::NoSuchVersion { .. } => ("buildit::debian::no-such-version", "pin one of the available versions, or drop `=VERSION` to take the newest"),
            DebianError::Unsatisfiable { .. } => ("buildit::debian::unsatisfiable", "the indexes have no version that fits; check the suite (--suite) and run `apt-get update`"),
            DebianError::NoIndexes { .. } => ("buildit::debian::no-index", "run `apt-get update` (or use --apt-root DIR --update for a private apt root)"),
            DebianError::BadLock { .. } => ("buildit::debian::bad-lock", "regenerate it: buildit debian lock PKG... --output FILE"),
            DebianError::BadIndex { .. } => ("buildit::debian::bad-index", "run `apt-get update` to fetch the indexes again"),
            DebianError::NoPackages => ("buildit::debian::no-packages", "name packages (buildit debian lock gcc make ...), or give --output FILE of an existing lock to refresh it"),
            DebianError::NoLockToRefresh { .. } => ("buildit::debian::no-packages", "name the packages to lock: buildit debian lock PKG... --output FILE"),
            DebianError::AptConfig { .. } | DebianError::BadSources { .. } => ("buildit::debian::apt-config", "check /etc/apt/sources.list and /etc/apt/sources.list.d"),
            DebianError::NoMirror { .. } => ("buildit::debian::no-mirror", "add a Debian entry to /etc/apt/sources.list.d/debian.sources"),
            DebianError::AptRoot { .. } => ("buildit::debian::apt-root", "give --apt-root a writable directory"),
            DebianError::AptGetSpawn { .. } => ("buildit::debian::apt-get", "--update needs apt-get (Debian's apt package)"),
            DebianError::AptGet { .. } => ("buildit::debian::apt-get", "check the network and the mirror; the keyring comes from the debian-archive-keyring package"),
            DebianError::NoSourceIndexes { .. } => ("buildit::debian::no-source-index", "fetch the deb-src indexes into a private apt root: --apt-root DIR --update"),
            DebianError::BadDsc { .. } => ("buildit::debian::bad-dsc", "the file is not the archive's .dsc; lock the source package again from fresh indexes"),
            DebianError::SourceFileMismatch { .. } => ("buildit::debian::source-hash", "the file is not the one the Sources index pinned; fetch it again from the mirror"),
            DebianError::SourceFormat { .. } => ("buildit::debian::source-format", "dpkg-source formats 3.0 (quilt), 3.0 (native) and 1.0 are supported"),
            DebianError::Unpack(_) => ("buildit::debian::unpack", "the source tarball breaks the archive rules (no '..', no absolute names or links out)"),
            DebianError::Io { .. } => ("buildit::debian::io", "check the path and its permissions"),
            DebianError::SecurityUpdateConflict { .. } => ("buildit::debian::security-update-conflict", "take every update instead: `buildit update DIR` (without --security-only) resolves the whole lock again"),
        }
}

/// An image error's code and help.
fn image_code(op: ImageOp, e: &ImageError) -> (&'static str, &'static str) {
    match (op, e) {
        (_, ImageError::NotAnImage(_)) => (
            "buildit::image::not-an-image",
            "pass the directory `buildit build` left (./result) or an image archive",
        ),
        (ImageOp::Push, ImageError::Registry(_)) => (
            "buildit::push::registry",
            "check the registry address, --insecure (loopback only) and --user",
        ),
        (ImageOp::Push, _) => (
            "buildit::push::failed",
            "the image or the registry could not be read; see the message",
        ),
        (ImageOp::Read, _) => (
            "buildit::image::read",
            "the image could not be read; see the message",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: &DriverError) -> String {
        let (_, ds) = e.diagnostics();
        assert_eq!(ds.len(), 1, "{e}");
        ds[0].code.to_string()
    }

    /// Every phase's error becomes one diagnostic with its stable code and a help line.
    #[test]
    fn errors_become_coded_diagnostics() {
        let p = buildit_store::StorePath::parse("/bld/store/0000000000000000000000000000000a-x")
            .unwrap_or_else(|e| panic!("a store path: {e}"));
        let store = DriverError::from(StoreError::NotValid(p));
        assert_eq!(code(&store), "buildit::store::not-valid");
        assert!(store.diagnostics().1[0].help.is_some());
        let req = DriverError::request("buildit::cli::nothing", "nothing", "give something");
        assert_eq!(code(&req), "buildit::cli::nothing");
        assert_eq!(req.to_string(), "nothing");
        let image = DriverError::Image {
            op: ImageOp::Read,
            error: ImageError::NotAnImage("x".into()),
        };
        assert_eq!(code(&image), "buildit::image::not-an-image");
        let debian = DriverError::from(buildit_debian::DebianError::NoPackages);
        assert_eq!(code(&debian), "buildit::debian::no-packages");
    }

    /// Diagnostics keep their sources and every diagnostic.
    #[test]
    fn diagnostics_keep_their_sources() {
        let mut sources = SourceMap::new();
        let file = sources.add("t.bld".to_string(), "x");
        let span = buildit_lang::Span {
            file,
            start: 0,
            end: 1,
        };
        let d = Diagnostic::error("buildit::t", "m").with_label(span, "here");
        let e = DriverError::diagnostics_in(sources, vec![d.clone(), d]);
        let (s, ds) = e.diagnostics();
        assert!(s.is_some_and(|s| s.get(file).is_some()));
        assert_eq!(ds.len(), 2);
        assert_eq!(e.to_string(), "m");
    }
}
