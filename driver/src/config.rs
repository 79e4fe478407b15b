//! The configuration of a command: which files are read, in which order, how they merge, and
//! where every merged value came from (docs/config.md). The schema of one file is
//! `buildit_yaml::config`; this module does the IO around it: finding the files, refusing
//! unsafe or oversized ones, reading the `.pub` files that `trusted-keys:` names, checking
//! repository locations with the transports' own parser (`buildit_share::Location`), and
//! merging everything with the command line into one [`LoadedConfig`].
//!
//! Order (later overrides earlier): `/etc/buildit/config.yaml`,
//! `$XDG_CONFIG_HOME/buildit/config.yaml` (`~/.config/buildit/config.yaml`), then every
//! `.buildit-config.yaml` from the repository root (the nearest ancestor holding `.git`, else
//! the file-system root) down to the spec directory, then the command line. `BUILDIT_CONFIG=FILE`
//! replaces all the files by that one. Scalars are overridden; repositories and mirrors merge
//! by name (a closer file's block replaces a farther one's of the same name); trusted and
//! revoked keys accumulate; `discover:` is replaced as a whole. `BUILDIT_MIRRORS` overrides the
//! mirrors it names.
//!
//! A configuration file can add trusted keys, so one written by somebody else is refused:
//! every file read must belong to the user running buildit or to root and must not be
//! writable by others (a `.buildit-config.yaml` dropped into `/tmp` does not configure the
//! builds below it).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use buildit_lang::{Diagnostic, SourceMap, Span};
use buildit_share::Location;
use buildit_yaml::config::{self as schema, ConfigFile, KeyForm};
use buildit_yaml::spec::Spanned;
use serde::Serialize;

use crate::error::DriverError;

/// The environment variable naming the one configuration file to read instead of the usual
/// ones (`/dev/null`: none).
pub const CONFIG_ENV: &str = "BUILDIT_CONFIG";
/// The name of a project's configuration file, looked for in the spec directory and its
/// parents up to the repository root.
pub const PROJECT_FILE: &str = ".buildit-config.yaml";
/// The machine's configuration file.
pub const SYSTEM_FILE: &str = "/etc/buildit/config.yaml";
/// How long a repository may take to answer, unless `timeout:` says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// A repository's priority unless it says otherwise (lower is preferred).
pub const DEFAULT_PRIORITY: u32 = 50;
/// The largest key file (`.pub`) read for `trusted-keys:` / `revoked-keys:`.
pub const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Where a merged value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// A configuration file, at a line (1-based).
    File {
        #[serde(serialize_with = "lossy_path")]
        file: PathBuf,
        line: usize,
    },
    /// The command line (`--discover`, `--no-substitute`).
    CommandLine,
    /// An environment variable (`BUILDIT_MIRRORS`).
    Environment { variable: &'static str },
    /// Nothing said otherwise.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { file, line } => write!(f, "{}:{line}", file.display()),
            Origin::CommandLine => f.write_str("command line"),
            Origin::Environment { variable } => write!(f, "environment ({variable})"),
            Origin::Default => f.write_str("default"),
        }
    }
}

fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn lossy_opt_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

fn location_text<S: serde::Serializer>(l: &Location, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&l.to_string())
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub from: Origin,
}

impl<T> Sourced<T> {
    fn new(value: T, from: Origin) -> Sourced<T> {
        Sourced { value, from }
    }
}

/// A location with its origin (serialised as its written form).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourcedLocation {
    #[serde(serialize_with = "location_text")]
    pub value: Location,
    pub from: Origin,
}

/// A path with its origin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourcedPath {
    #[serde(serialize_with = "lossy_path")]
    pub value: PathBuf,
    pub from: Origin,
}

/// One configured repository, merged.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepositoryConfig {
    pub name: String,
    /// Where its block is.
    pub from: Origin,
    pub priority: Sourced<u32>,
    /// Where it is read from.
    pub download: SourcedLocation,
    /// Where uploads go, if anywhere.
    pub upload: Option<SourcedLocation>,
    /// Extra CA certificates for `https` (absolute).
    pub ca_file: Option<SourcedPath>,
    /// The key `ssh` logs in with (absolute).
    pub ssh_identity: Option<SourcedPath>,
}

/// A trusted or revoked key: a `.pub` file (read at load) or the key's text.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeySource {
    /// The file it was read from (`None`: written in the configuration itself).
    #[serde(serialize_with = "lossy_opt_path")]
    pub file: Option<PathBuf>,
    /// The key text (`NAME:BASE64`, trimmed), to give to `buildit_share`'s key parser.
    pub text: String,
}

/// What `--discover` or `discover:` names.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum DiscoverTarget {
    /// A configured repository, by name.
    Repository(String),
    /// A location that is not configured (read only, with the configured trust).
    #[serde(serialize_with = "location_text")]
    Location(Location),
}

/// One place to discover packages in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Discover {
    pub target: DiscoverTarget,
    /// `push=True`: what is built is uploaded (docs/config.md says where).
    pub push: bool,
}

/// What the command line adds to the configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CliConfig {
    /// Every `--discover=LOCATION[,push=True]` given (they replace `discover:`).
    pub discover: Vec<String>,
    /// `--no-substitute` (`Some(false)`) or `--substitute-only` (`Some(true)`).
    pub substitute: Option<bool>,
}

/// Which files are read: the usual places, or `BUILDIT_CONFIG`'s one file.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigPaths {
    /// `BUILDIT_CONFIG`: only this file is read.
    pub explicit: Option<PathBuf>,
    /// `/etc/buildit/config.yaml`.
    pub system: PathBuf,
    /// `$XDG_CONFIG_HOME/buildit/config.yaml` (`None` without a home).
    pub user: Option<PathBuf>,
}

impl ConfigPaths {
    /// The places of this process's environment: `BUILDIT_CONFIG`, `XDG_CONFIG_HOME` (an
    /// absolute path; otherwise `$HOME/.config`).
    pub fn from_env() -> ConfigPaths {
        let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
        ConfigPaths {
            explicit: var(CONFIG_ENV).map(PathBuf::from),
            system: PathBuf::from(SYSTEM_FILE),
            user: config_home.map(|d| d.join("buildit/config.yaml")),
        }
    }
}

/// The merged configuration of a command.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadedConfig {
    /// The files read, in merge order (farthest first).
    #[serde(serialize_with = "lossy_paths")]
    pub files: Vec<PathBuf>,
    /// By priority (lower first), then in the order they were first configured.
    pub repositories: Vec<RepositoryConfig>,
    /// Mirror name → base URLs (`BUILDIT_MIRRORS` applied).
    pub mirrors: BTreeMap<String, Sourced<Vec<String>>>,
    pub trusted_keys: Vec<Sourced<KeySource>>,
    pub revoked_keys: Vec<Sourced<KeySource>>,
    /// The `.secret` file that signs uploads (absolute; read when signing).
    pub signing_key: Option<SourcedPath>,
    /// Where to discover packages besides the repositories: the command line's, else the
    /// configuration's.
    pub discover: Vec<Sourced<Discover>>,
    /// Whether missing paths are looked up in repositories before building.
    pub substitute: Sourced<bool>,
    /// How long a repository may take to answer, in seconds.
    pub timeout: Sourced<u64>,
    /// The OSV dumps `buildit audit --update` downloads (`audit: advisory-urls:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_urls: Option<Sourced<Vec<String>>>,
    /// `remote-execution:` merged (a closer file's keys win, key by key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteConfig>,
}

/// `remote-execution:` (docs/distributed.md), each value with where it was set.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RemoteConfig {
    pub url: Option<Sourced<String>>,
    pub instance: Option<Sourced<String>>,
    pub fallback: Option<Sourced<bool>>,
    pub accept_cached: Option<Sourced<bool>>,
    pub ca_file: Option<SourcedPath>,
    pub cores: Option<Sourced<u64>>,
}

fn lossy_paths<S: serde::Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ps.iter().map(|p| p.to_string_lossy()))
}

impl LoadedConfig {
    /// The configured repository called `name`.
    pub fn repository(&self, name: &str) -> Option<&RepositoryConfig> {
        self.repositories.iter().find(|r| r.name == name)
    }

    /// A repository named by a command's argument (`buildit copy --to URL`, `buildit sign …
    /// URL`): a configured repository's name, else a location; options (`,push=…`) belong to
    /// `--discover` only.
    pub fn target(&self, text: &str) -> Result<DiscoverTarget, DriverError> {
        let bad = |why: String| {
            DriverError::request(
                "buildit::config::bad-target",
                format!("`{text}` names no repository: {why}"),
                format!(
                    "give a configured repository's name or a location; {}",
                    schema::LOCATION_FORMS
                ),
            )
        };
        if text.contains(',') {
            return Err(bad("options after a comma are for --discover only".into()));
        }
        parse_discover(text, &self.repositories)
            .map(|d| d.target)
            .map_err(bad)
    }

    /// How long a repository may take to answer.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.value)
    }

    /// The repositories uploads go to (those with an upload location), in priority order.
    pub fn upload_repositories(&self) -> Vec<&RepositoryConfig> {
        self.repositories
            .iter()
            .filter(|r| r.upload.is_some())
            .collect()
    }

    /// The mirrors `mirror://NAME/…` resolves against: the machine's apt sources (`debian`,
    /// `debian-security`), replaced name by name by the configured ones (and so by
    /// `BUILDIT_MIRRORS`, already applied).
    pub fn fetch_mirrors(&self) -> buildit_builder::fetch::Mirrors {
        let mut m = buildit_builder::fetch::Mirrors::new();
        let apt = buildit_debian::debian_mirrors(Path::new(buildit_debian::DEFAULT_APT_ROOT));
        for (name, urls) in apt.unwrap_or_default() {
            m.insert(&name, urls);
        }
        for (name, urls) in &self.mirrors {
            m.insert(name, urls.value.clone());
        }
        m
    }
}

/// The configuration of a command run on `start` (a spec directory, or the current directory
/// when `None`), with the command line's additions: the files of this process's environment
/// ([`ConfigPaths::from_env`]) and `BUILDIT_MIRRORS`.
pub fn load(start: Option<&Path>, cli: &CliConfig) -> Result<LoadedConfig, DriverError> {
    let env_mirrors = std::env::var(crate::builtins::MIRRORS_ENV).ok();
    load_with(&ConfigPaths::from_env(), start, cli, env_mirrors.as_deref())
}

/// [`load`] with explicit places and `BUILDIT_MIRRORS` value.
pub fn load_with(
    paths: &ConfigPaths,
    start: Option<&Path>,
    cli: &CliConfig,
    env_mirrors: Option<&str>,
) -> Result<LoadedConfig, DriverError> {
    let files = files_to_read(paths, start)?;
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let mut parsed: Vec<(PathBuf, buildit_lang::FileId, ConfigFile)> = Vec::new();
    for path in &files {
        let text = read_config_file(path)?;
        let id = sources.add(path.display().to_string(), text.as_str());
        match schema::parse_config(id, &text) {
            Ok(c) => parsed.push((path.clone(), id, c)),
            Err(ds) => diags.extend(ds),
        }
    }
    if !diags.is_empty() {
        return Err(DriverError::diagnostics_in(
            sources,
            buildit_yaml::capped(diags),
        ));
    }
    let mut m = Merger {
        sources: &sources,
        diags: Vec::new(),
        cfg: LoadedConfig {
            files: files.clone(),
            repositories: Vec::new(),
            mirrors: BTreeMap::new(),
            trusted_keys: Vec::new(),
            revoked_keys: Vec::new(),
            signing_key: None,
            discover: Vec::new(),
            substitute: Sourced::new(true, Origin::Default),
            timeout: Sourced::new(DEFAULT_TIMEOUT_SECS, Origin::Default),
            audit_urls: None,
            remote: None,
        },
        discover: Vec::new(),
    };
    for (path, _, file) in &parsed {
        m.merge(path, file);
    }
    m.finish_repositories();
    // discover: entries may name repositories of any file, so they are checked after merging
    // (and only when every repository was read: one that was refused is not "unknown")
    let pending = if m.diags.is_empty() {
        std::mem::take(&mut m.discover)
    } else {
        Vec::new()
    };
    for s in pending {
        match parse_discover(&s.value, &m.cfg.repositories) {
            Ok(d) => {
                let from = m.origin(s.span);
                m.cfg.discover.push(Sourced::new(d, from));
            }
            Err(why) => m.diags.push(
                Diagnostic::error("buildit::config::bad-discover", why)
                    .with_label(s.span, "here")
                    .with_help(schema::DISCOVER_HELP),
            ),
        }
    }
    if !m.diags.is_empty() {
        let diags = buildit_yaml::capped(m.diags);
        return Err(DriverError::diagnostics_in(sources, diags));
    }
    let mut cfg = m.cfg;
    if let Some(env) = env_mirrors {
        for (name, urls) in crate::builtins::parse_mirror_overrides(env) {
            cfg.mirrors.insert(
                name,
                Sourced::new(
                    urls,
                    Origin::Environment {
                        variable: crate::builtins::MIRRORS_ENV,
                    },
                ),
            );
        }
    }
    if !cli.discover.is_empty() {
        cfg.discover = cli
            .discover
            .iter()
            .map(|d| {
                parse_discover(d, &cfg.repositories)
                    .map(|v| Sourced::new(v, Origin::CommandLine))
                    .map_err(|why| {
                        DriverError::request(
                            "buildit::config::bad-discover",
                            format!("--discover={d}: {why}"),
                            schema::DISCOVER_HELP,
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(s) = cli.substitute {
        cfg.substitute = Sourced::new(s, Origin::CommandLine);
    }
    Ok(cfg)
}

/// The files read for a command run on `start`, in merge order, that exist: `BUILDIT_CONFIG`'s
/// alone (it must exist), else the system file, the user's file, and the `.buildit-config.yaml`
/// files from the repository root down to `start`.
pub fn files_to_read(
    paths: &ConfigPaths,
    start: Option<&Path>,
) -> Result<Vec<PathBuf>, DriverError> {
    if let Some(f) = &paths.explicit {
        if f == Path::new("/dev/null") {
            return Ok(Vec::new());
        }
        if !f.exists() {
            return Err(DriverError::request(
                "buildit::config::missing-file",
                format!("{CONFIG_ENV} names {}, which does not exist", f.display()),
                format!("point {CONFIG_ENV} at a configuration file (or /dev/null for none), or unset it"),
            ));
        }
        // relative to the current directory, so that paths inside it resolve the same way
        let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        return Ok(vec![f]);
    }
    let mut files: Vec<PathBuf> = Vec::new();
    files.push(paths.system.clone());
    files.extend(paths.user.clone());
    files.extend(project_files(start)?);
    Ok(files.into_iter().filter(|f| f.exists()).collect())
}

/// The `.buildit-config.yaml` paths from the repository root down to `start` (farthest first);
/// the repository root is the nearest ancestor holding `.git`, else the file-system root.
pub fn project_files(start: Option<&Path>) -> Result<Vec<PathBuf>, DriverError> {
    let start = match start {
        Some(s) => s.to_path_buf(),
        None => std::env::current_dir().map_err(|e| {
            DriverError::request(
                "buildit::config::no-directory",
                format!("cannot tell the current directory: {e}"),
                "run buildit from a directory that exists",
            )
        })?,
    };
    // a file (a .bld file, a pkg.yaml) is looked up from its directory
    let dir = if start.is_file() {
        start.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        start
    };
    let dir = std::fs::canonicalize(&dir).map_err(|e| {
        DriverError::request(
            "buildit::config::no-directory",
            format!("cannot look for {PROJECT_FILE} from {}: {e}", dir.display()),
            "give a directory that exists",
        )
    })?;
    let mut out = Vec::new();
    for d in dir.ancestors() {
        out.push(d.join(PROJECT_FILE));
        if d.join(".git").exists() {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// The text of a configuration file: a regular file (through links), owned by this user or
/// root, not writable by others, at most [`schema::MAX_CONFIG_BYTES`].
fn read_config_file(path: &Path) -> Result<String, DriverError> {
    use std::os::unix::fs::MetadataExt;
    let unreadable = |e: std::io::Error| {
        DriverError::request(
            "buildit::config::unreadable",
            format!("cannot read the configuration file {}: {e}", path.display()),
            "check the file's permissions (docs/config.md lists the files buildit reads)",
        )
    };
    let f = open_nonblocking(path).map_err(unreadable)?;
    let meta = f.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(DriverError::request(
            "buildit::config::unreadable",
            format!(
                "the configuration file {} is not a regular file",
                path.display()
            ),
            "remove it or make it a file (docs/config.md)",
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(DriverError::request(
            "buildit::config::unsafe-file",
            format!(
                "the configuration file {} belongs to another user (uid {})",
                path.display(),
                meta.uid()
            ),
            "a configuration can add trusted keys, so buildit reads only files of its own user or of root; remove the file or take it over (chown)",
        ));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(DriverError::request(
            "buildit::config::unsafe-file",
            format!(
                "the configuration file {} is writable by every user",
                path.display()
            ),
            format!(
                "a configuration can add trusted keys; chmod o-w {}",
                path.display()
            ),
        ));
    }
    let limit = schema::MAX_CONFIG_BYTES as u64;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(DriverError::request(
            "buildit::config::too-large",
            format!(
                "the configuration file {} is larger than {} KiB",
                path.display(),
                limit >> 10
            ),
            "a configuration is a few hundred bytes of YAML (docs/config.md)",
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        DriverError::request(
            "buildit::config::unreadable",
            format!(
                "the configuration file {} is not UTF-8 text",
                path.display()
            ),
            "write configuration files as UTF-8 YAML",
        )
    })
}

/// Open `path` for reading without waiting: a FIFO put where a configuration or key file is
/// expected opens at once (and is then refused as not a regular file) instead of blocking.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
}

/// Merges files one after the other (farthest first).
struct Merger<'s> {
    sources: &'s SourceMap,
    diags: Vec<Diagnostic>,
    cfg: LoadedConfig,
    /// The latest file's `discover:` entries, checked after merging.
    discover: Vec<Spanned<String>>,
}

impl Merger<'_> {
    fn origin(&self, span: Span) -> Origin {
        match self.sources.get(span.file) {
            Some(f) => Origin::File {
                file: PathBuf::from(&f.name),
                line: f.line_col(span.start as usize).0,
            },
            None => Origin::Default,
        }
    }

    fn sourced<T>(&self, value: T, span: Span) -> Sourced<T> {
        Sourced::new(value, self.origin(span))
    }

    /// A location written in `file` at `span`: the transports' parse of it, or a diagnostic.
    fn location(&mut self, e: &schema::Endpoint, base: &Path) -> Option<SourcedLocation> {
        let parsed = e
            .location(base)
            .and_then(|t| Location::parse(&t).map_err(|err| reason_of(&err)));
        match parsed {
            Ok(value) => Some(SourcedLocation {
                value,
                from: self.origin(e.path.span),
            }),
            Err(why) => {
                self.diags.push(
                    Diagnostic::error(
                        "buildit::config::bad-location",
                        format!("`{}` is not a repository location: {why}", e.path.value),
                    )
                    .with_label(e.path.span, "this location")
                    .with_help(schema::LOCATION_FORMS),
                );
                None
            }
        }
    }

    fn path(&self, s: &Spanned<String>, base: &Path) -> SourcedPath {
        SourcedPath {
            value: base.join(&s.value),
            from: self.origin(s.span),
        }
    }

    fn keys(&mut self, entries: &[schema::KeyEntry], base: &Path) -> Vec<Sourced<KeySource>> {
        let mut out = Vec::new();
        for k in entries {
            let key = match k.form {
                KeyForm::Text => KeySource {
                    file: None,
                    text: k.value.value.trim().to_string(),
                },
                KeyForm::File => {
                    let path = base.join(&k.value.value);
                    match read_key_file(&path) {
                        Ok(text) => KeySource {
                            file: Some(path),
                            text,
                        },
                        Err(why) => {
                            self.diags.push(
                                Diagnostic::error(
                                    "buildit::config::key-file",
                                    format!("cannot read the key file {}: {why}", path.display()),
                                )
                                .with_label(k.value.span, "this key")
                                .with_help("a key entry is a `.pub` file (relative to this configuration file) or the key's text NAME:BASE64, as `buildit key generate NAME` writes it"),
                            );
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = buildit_share::keys::PublicKey::parse(&key.text) {
                self.diags.push(
                    Diagnostic::error("buildit::config::bad-key", e.to_string())
                        .with_label(k.value.span, "this key")
                        .with_help("a public key is NAME:BASE64 (32 bytes), as the NAME.pub that `buildit key generate NAME` writes holds it"),
                );
                continue;
            }
            out.push(self.sourced(key, k.value.span));
        }
        out
    }

    fn merge(&mut self, path: &Path, file: &ConfigFile) {
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        for block in &file.repositories {
            let download = self.location(&block.download, &base);
            let upload = match &block.upload {
                Some(u) => self.location(u, &base).map(Some),
                None => Some(None),
            };
            let (Some(download), Some(upload)) = (download, upload) else {
                continue;
            };
            let repo = RepositoryConfig {
                name: block.name.value.clone(),
                from: self.origin(block.span),
                priority: match &block.priority {
                    Some(p) => self.sourced(p.value, p.span),
                    None => Sourced::new(DEFAULT_PRIORITY, Origin::Default),
                },
                download,
                upload,
                ca_file: block.ca_file.as_ref().map(|s| self.path(s, &base)),
                ssh_identity: block.ssh_identity.as_ref().map(|s| self.path(s, &base)),
            };
            match self
                .cfg
                .repositories
                .iter_mut()
                .find(|r| r.name == repo.name)
            {
                Some(old) => *old = repo,
                None => self.cfg.repositories.push(repo),
            }
        }
        for mirror in &file.mirrors {
            let urls = mirror.urls.iter().map(|u| u.value.clone()).collect();
            let v = self.sourced(urls, mirror.name.span);
            self.cfg.mirrors.insert(mirror.name.value.clone(), v);
        }
        let trusted = self.keys(&file.trusted_keys, &base);
        add_keys(&mut self.cfg.trusted_keys, trusted);
        let revoked = self.keys(&file.revoked_keys, &base);
        add_keys(&mut self.cfg.revoked_keys, revoked);
        if let Some(s) = &file.signing_key {
            self.cfg.signing_key = Some(self.path(s, &base));
        }
        if let Some(d) = &file.discover {
            self.discover = d.clone();
        }
        if let Some(s) = &file.substitute {
            self.cfg.substitute = self.sourced(s.value, s.span);
        }
        if let Some(t) = &file.timeout {
            self.cfg.timeout = self.sourced(t.value, t.span);
        }
        if let Some(b) = &file.remote {
            let mut r = self.cfg.remote.take().unwrap_or_default();
            if let Some(u) = &b.url {
                r.url = Some(self.sourced(u.value.clone(), u.span));
            }
            if let Some(i) = &b.instance {
                r.instance = Some(self.sourced(i.value.clone(), i.span));
            }
            if let Some(f) = &b.fallback {
                r.fallback = Some(self.sourced(f.value, f.span));
            }
            if let Some(a) = &b.accept_cached {
                r.accept_cached = Some(self.sourced(a.value, a.span));
            }
            if let Some(c) = &b.ca_file {
                r.ca_file = Some(self.path(c, &base));
            }
            if let Some(c) = &b.cores {
                r.cores = Some(self.sourced(c.value, c.span));
            }
            self.cfg.remote = Some(r);
        }
        if let Some(urls) = &file.audit_urls {
            let span = urls.first().map(|u| u.span);
            let list = urls.iter().map(|u| u.value.clone()).collect();
            self.cfg.audit_urls = Some(match span {
                Some(span) => self.sourced(list, span),
                None => Sourced::new(list, Origin::Default),
            });
        }
    }

    /// Order the repositories by priority (stable: ties keep their configuration order).
    fn finish_repositories(&mut self) {
        self.cfg.repositories.sort_by_key(|r| r.priority.value);
    }
}

/// Add keys not already there (the same text from two files is one key).
fn add_keys(to: &mut Vec<Sourced<KeySource>>, keys: Vec<Sourced<KeySource>>) {
    for k in keys {
        if !to.iter().any(|o| o.value.text == k.value.text) {
            to.push(k);
        }
    }
}

/// The text of a key file, trimmed: at most [`MAX_KEY_FILE_BYTES`], UTF-8, one line.
fn read_key_file(path: &Path) -> Result<String, String> {
    let f = open_nonblocking(path).map_err(|e| e.to_string())?;
    if !f.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    f.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "it is larger than {} KiB; a public key is one short line",
            MAX_KEY_FILE_BYTES >> 10
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "it is not text".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.lines().count() > 1 || !schema::is_key_text(text) {
        return Err("it does not hold one key NAME:BASE64".into());
    }
    Ok(text.to_string())
}

/// The reason of a location error (its message without the location, which the caller
/// quotes).
fn reason_of(e: &buildit_share::ShareError) -> String {
    match e {
        buildit_share::ShareError::BadLocation { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Parse one `--discover` value (or `discover:` entry), the seed's `LOCATION[,push=True]`:
/// a configured repository's name, or a location (a bare `HOST/PATH` is https), then
/// comma-separated options, of which there is one: `push=True|False` (also `true`/`false`).
pub fn parse_discover(text: &str, repositories: &[RepositoryConfig]) -> Result<Discover, String> {
    let (target, push) = schema::split_discover(text)?;
    if repositories.iter().any(|r| r.name == target) {
        return Ok(Discover {
            target: DiscoverTarget::Repository(target.to_string()),
            push,
        });
    }
    let looks_like_location = target.contains('/') || target.contains("://");
    if !looks_like_location {
        let names: Vec<&str> = repositories.iter().map(|r| r.name.as_str()).collect();
        return Err(match buildit_yaml::spec::did_you_mean(target, &names) {
            Some(s) => format!(
                "no repository named `{target}` is configured; did you mean `{s}`?"
            ),
            None if names.is_empty() => format!(
                "`{target}` is not a location (HOST/PATH, or a URL), and no repositories are configured"
            ),
            None => format!(
                "`{target}` is not a location (HOST/PATH, or a URL) nor a configured repository ({})",
                names.join(", ")
            ),
        });
    }
    let loc = Location::parse(target)
        .map_err(|e| format!("`{target}` is not a repository location: {}", reason_of(&e)))?;
    Ok(Discover {
        target: DiscoverTarget::Location(loc),
        push,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(p, text).unwrap_or_else(|e| panic!("{e}"));
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    fn paths(t: &Path) -> ConfigPaths {
        ConfigPaths {
            explicit: None,
            system: t.join("etc/buildit/config.yaml"),
            user: Some(t.join("home/.config/buildit/config.yaml")),
        }
    }

    const KEY_A: &str = "team-a:k4ec+Jv2RIelmoHI+hkXsYitdB8qy1YCDJb6vZsBtyA=";
    const KEY_B: &str = "team-b:FESvCYthNNGSHOibbZgnADc1fsyc/APYKxYPZ1lB1t8=";

    #[test]
    fn files_merge_farthest_first() {
        let t = tmp();
        let t = t.path();
        let p = paths(t);
        write(
            &p.system,
            "timeout: 10\nsubstitute: false\nrepositories:\n  - name: cache\n    download-path: cache.example/x\n  - name: team\n    download-path: team.example/old\nmirrors:\n  gnu: [http://127.0.0.1:1/gnu]\ntrusted-keys: [\"team-a:k4ec+Jv2RIelmoHI+hkXsYitdB8qy1YCDJb6vZsBtyA=\"]\n",
        );
        write(
            p.user.as_deref().unwrap_or(Path::new("/")),
            "timeout: 20\nmirrors:\n  gnu: http://127.0.0.1:2/gnu\n  debian: http://127.0.0.1:3/debian\n",
        );
        std::fs::create_dir_all(t.join("repo/.git")).unwrap_or_else(|e| panic!("{e}"));
        // above the repository root: never read
        write(&t.join(PROJECT_FILE), "timeout: 99\n");
        write(
            &t.join("repo").join(PROJECT_FILE),
            "timeout: 30\nrepository:\n  name: team\n  priority: 5\n  download-path: team.example/new\n  upload-path: me@team.example/new\n",
        );
        write(&t.join("repo/keys/b.pub"), &format!("{KEY_B}\n"));
        write(
            &t.join("repo/spec").join(PROJECT_FILE),
            "timeout: 40\ntrusted-keys: [../keys/b.pub]\ndiscover: [team, 'other.example/c,push=True']\n",
        );
        let spec = t.join("repo/spec");
        let c = load_with(&p, Some(&spec), &CliConfig::default(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.files.len(), 4, "{:?}", c.files);
        assert_eq!(c.timeout.value, 40);
        assert_eq!(
            c.timeout.from,
            Origin::File {
                file: std::fs::canonicalize(&spec)
                    .unwrap_or_default()
                    .join(PROJECT_FILE),
                line: 1
            }
        );
        assert!(!c.substitute.value);
        // `team` replaced by the closer file, and first by priority
        assert_eq!(c.repositories.len(), 2);
        assert_eq!(c.repositories[0].name, "team");
        assert_eq!(
            c.repositories[0].download.value.to_string(),
            "https://team.example/new"
        );
        assert_eq!(c.upload_repositories().len(), 1);
        assert_eq!(c.mirrors["gnu"].value, ["http://127.0.0.1:2/gnu"]);
        assert_eq!(c.mirrors.len(), 2);
        // keys accumulate
        let texts: Vec<&str> = c
            .trusted_keys
            .iter()
            .map(|k| k.value.text.as_str())
            .collect();
        assert_eq!(texts, [KEY_A, KEY_B]);
        assert!(c.trusted_keys[1].value.file.is_some());
        assert_eq!(c.discover.len(), 2);
        assert_eq!(
            c.discover[0].value.target,
            DiscoverTarget::Repository("team".into())
        );
        assert!(c.discover[1].value.push);
        // the command line replaces discover: and substitute:, BUILDIT_MIRRORS the mirrors it names
        let cli = CliConfig {
            discover: vec!["cache".into()],
            substitute: Some(true),
        };
        let c = load_with(&p, Some(&spec), &cli, Some("gnu=http://127.0.0.1:4/gnu"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.discover.len(), 1);
        assert_eq!(c.discover[0].from, Origin::CommandLine);
        assert_eq!(c.substitute, Sourced::new(true, Origin::CommandLine));
        assert_eq!(c.mirrors["gnu"].value, ["http://127.0.0.1:4/gnu"]);
        assert_eq!(c.mirrors["debian"].value, ["http://127.0.0.1:3/debian"]);
    }

    #[test]
    fn buildit_config_names_the_only_file() {
        let t = tmp();
        let t = t.path();
        let mut p = paths(t);
        write(&p.system, "timeout: 10\n");
        write(&t.join("only.yaml"), "timeout: 7\n");
        p.explicit = Some(t.join("only.yaml"));
        let c =
            load_with(&p, Some(t), &CliConfig::default(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.timeout.value, 7);
        assert_eq!(c.files, [t.join("only.yaml")]);
        // a relative BUILDIT_CONFIG is taken from the current directory
        let cwd = std::env::current_dir().unwrap_or_else(|e| panic!("{e}"));
        p.explicit = Some(PathBuf::from("Cargo.toml"));
        assert_eq!(
            files_to_read(&p, None).ok(),
            Some(vec![cwd.join("Cargo.toml")])
        );
        p.explicit = Some(t.join("missing.yaml"));
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("missing");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::missing-file");
        p.explicit = Some(PathBuf::from("/dev/null"));
        let c =
            load_with(&p, Some(t), &CliConfig::default(), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.files.is_empty());
        assert_eq!(c.timeout.from, Origin::Default);
    }

    #[test]
    fn errors_point_at_their_file() {
        let t = tmp();
        let t = t.path();
        let p = paths(t);
        std::fs::create_dir_all(t.join(".git")).unwrap_or_else(|e| panic!("{e}"));
        write(&t.join(PROJECT_FILE), "timeout: 1\nsubstitue: true\n");
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("unknown key");
        let (sources, ds) = e.diagnostics();
        assert_eq!(ds[0].code, "buildit::config::unknown-key");
        let pos = sources.map(|s| s.position(ds[0].labels[0].span));
        assert!(pos.is_some_and(|p| p.ends_with(".buildit-config.yaml:2:1")));
        write(&t.join(PROJECT_FILE), "trusted-keys: [nope.pub]\n");
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("no key file");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::key-file");
        write(&t.join(PROJECT_FILE), "discover: [nosuchrepo]\n");
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("no repo");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::bad-discover");
        write(
            &t.join(PROJECT_FILE),
            "repository:\n  name: r\n  download-path: 'h.example/a/../b'\n",
        );
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("bad location");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::bad-location");
    }

    #[test]
    fn files_others_can_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tmp();
        let t = t.path();
        let p = paths(t);
        std::fs::create_dir_all(t.join(".git")).unwrap_or_else(|e| panic!("{e}"));
        write(&t.join(PROJECT_FILE), "timeout: 1\n");
        std::fs::set_permissions(t.join(PROJECT_FILE), std::fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("o+w");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::unsafe-file");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let t = tmp();
        let t = t.path();
        let mut p = paths(t);
        let fifo = t.join("fifo.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        p.explicit = Some(fifo);
        let e = load_with(&p, Some(t), &CliConfig::default(), None).expect_err("a fifo");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::unreadable");
    }

    #[test]
    fn discover_values() {
        let repo = RepositoryConfig {
            name: "mysuperbinhost".into(),
            from: Origin::Default,
            priority: Sourced::new(DEFAULT_PRIORITY, Origin::Default),
            download: SourcedLocation {
                value: Location::parse("mysuperbinhost.org/containers")
                    .unwrap_or_else(|e| panic!("{e}")),
                from: Origin::Default,
            },
            upload: None,
            ca_file: None,
            ssh_identity: None,
        };
        let repos = [repo];
        let d = parse_discover("github.com/sysadmin42/containers,push=True", &repos)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(d.push);
        assert_eq!(
            d.target,
            DiscoverTarget::Location(
                Location::parse("https://github.com/sysadmin42/containers")
                    .unwrap_or_else(|e| panic!("{e}"))
            )
        );
        let d =
            parse_discover("mysuperbinhost,push=false", &repos).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            d.target,
            DiscoverTarget::Repository("mysuperbinhost".into())
        );
        assert!(!d.push);
        let e = parse_discover("mysuperbinhots", &repos).expect_err("a typo");
        assert!(e.contains("did you mean `mysuperbinhost`"), "{e}");
        assert!(parse_discover("h.example/x,push=maybe", &repos).is_err());
        assert!(parse_discover("h.example/x,mirror=1", &repos).is_err());
        assert!(parse_discover("127.0.0.1:8080/r", &repos).is_ok());
        assert!(parse_discover("file:///srv/repo", &repos).is_ok());
        assert!(parse_discover("h.example/../x", &repos).is_err());
        let cfg = LoadedConfig {
            files: Vec::new(),
            repositories: repos.to_vec(),
            mirrors: BTreeMap::new(),
            trusted_keys: Vec::new(),
            revoked_keys: Vec::new(),
            signing_key: None,
            discover: Vec::new(),
            substitute: Sourced::new(true, Origin::Default),
            timeout: Sourced::new(DEFAULT_TIMEOUT_SECS, Origin::Default),
            audit_urls: None,
            remote: None,
        };
        assert_eq!(
            cfg.target("mysuperbinhost").ok(),
            Some(DiscoverTarget::Repository("mysuperbinhost".into()))
        );
        assert!(matches!(
            cfg.target("file:///srv/repo"),
            Ok(DiscoverTarget::Location(Location::File(_)))
        ));
        let e = cfg.target("h.example/x,push=True").expect_err("options");
        assert_eq!(e.diagnostics().1[0].code, "buildit::config::bad-target");
        assert!(cfg.target("nosuch").is_err());
    }
}
