//! The schema of `.buildit-config.yaml` (and of `config.yaml` in `/etc/buildit` and
//! `$XDG_CONFIG_HOME/buildit`): one file read from its spanned YAML tree into a typed
//! [`ConfigFile`] whose every value keeps its span, so that an unknown key ("did you mean"), a
//! wrong type, a missing `download-path` or a location that cannot be reached is reported at
//! its line. Plain data, no IO: finding, reading and merging the files is the driver's
//! (`buildit_driver::config`), and so is parsing key files.
//!
//! Repository locations are checked here for their form only (a scheme buildit has a
//! transport for, a host, no spaces or control characters); [`location_text`] turns a
//! `*-type` and `*-path` pair into the one location text the transports parse, where a bare
//! `HOST/PATH` means `https://HOST/PATH`.
//!
//! The seed's own example writes its `repository:` block without indentation (the keys at the
//! top level, after a `repository:` with no value). Exactly that shape is read as the
//! repository it means: a `repository` key whose value is empty, followed only by repository
//! keys to the end of the file. Anything else keeps YAML's meaning.

use std::path::Path;

use buildit_lang::{Diagnostic, FileId, Span};

use crate::spec::{did_you_mean, Reader, Spanned};
use crate::tree::{self, Kind, Node};

/// The largest configuration file read, in bytes: a configuration is a few hundred bytes, and
/// every command reads several of them.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The keys of a configuration file.
pub const CONFIG_KEYS: &[&str] = &[
    "repository",
    "repositories",
    "mirrors",
    "trusted-keys",
    "revoked-keys",
    "signing-key",
    "discover",
    "substitute",
    "timeout",
    "audit",
    "remote-execution",
];

/// The keys of `remote-execution:` (docs/distributed.md). Headers (authorisation) are given on
/// the command line only: a configuration file holds no secrets.
pub const REMOTE_KEYS: &[&str] = &[
    "url",
    "instance",
    "fallback",
    "accept-cached",
    "ca-file",
    "cores",
];

/// The greatest `cores:` of remote builds.
pub const MAX_REMOTE_CORES: u64 = 1024;

/// `remote-execution:`: where and how to build remotely (each key as written).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RemoteBlock {
    /// `grpc://HOST:PORT` or `grpcs://HOST:PORT`.
    pub url: Option<Spanned<String>>,
    pub instance: Option<Spanned<String>>,
    pub fallback: Option<Spanned<bool>>,
    pub accept_cached: Option<Spanned<bool>>,
    /// Relative to the file's directory.
    pub ca_file: Option<Spanned<String>>,
    pub cores: Option<Spanned<u64>>,
}

/// The keys of one repository block (`repository:` or an item of `repositories:`).
pub const REPOSITORY_KEYS: &[&str] = &[
    "name",
    "priority",
    "upload-type",
    "upload-path",
    "download-type",
    "download-path",
    "ca-file",
    "ssh-identity",
];

/// The longest location, URL or path accepted (longer text is an error, not a slow one).
const MAX_TEXT: usize = 4096;

/// The greatest `timeout:` in seconds (a day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// The greatest `priority:`.
pub const MAX_PRIORITY: u32 = 1_000_000;

/// How a repository is reached: the `upload-type` / `download-type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Https,
    Http,
    Ssh,
    File,
    Oci,
}

impl TransportKind {
    /// Every kind with its name, in the order messages list them.
    pub const ALL: [TransportKind; 5] = [
        TransportKind::Https,
        TransportKind::Http,
        TransportKind::Ssh,
        TransportKind::File,
        TransportKind::Oci,
    ];

    /// The name as written in the configuration (also the URL scheme).
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Https => "https",
            TransportKind::Http => "http",
            TransportKind::Ssh => "ssh",
            TransportKind::File => "file",
            TransportKind::Oci => "oci",
        }
    }

    /// The kind named `s` (case-insensitive).
    pub fn parse(s: &str) -> Option<TransportKind> {
        let s = s.to_ascii_lowercase();
        TransportKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether uploads can go this way (static HTTP trees are read-only).
    pub fn can_upload(self) -> bool {
        matches!(
            self,
            TransportKind::Ssh | TransportKind::File | TransportKind::Oci
        )
    }
}

/// One direction of a repository: its `*-type` (if written) and `*-path`.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub kind: Option<Spanned<TransportKind>>,
    pub path: Spanned<String>,
}

impl Endpoint {
    /// The location text (see [`location_text`]), a relative `file` path taken relative to
    /// `base` (the directory of the configuration file).
    pub fn location(&self, base: &Path) -> Result<String, String> {
        location_text(self.kind.as_ref().map(|k| k.value), &self.path.value, base)
    }
}

/// One repository block.
#[derive(Clone, Debug, PartialEq)]
pub struct RepositoryBlock {
    pub name: Spanned<String>,
    pub priority: Option<Spanned<u32>>,
    pub download: Endpoint,
    pub upload: Option<Endpoint>,
    /// A PEM file of CA certificates for `https` (relative to the configuration file).
    pub ca_file: Option<Spanned<String>>,
    /// The private key `ssh` logs in with (relative to the configuration file).
    pub ssh_identity: Option<Spanned<String>>,
    /// The whole block.
    pub span: Span,
}

/// How a key of `trusted-keys:` / `revoked-keys:` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyForm {
    /// A path to a `.pub` file, relative to the configuration file.
    File,
    /// The key's text, `NAME:BASE64`.
    Text,
}

/// One entry of `trusted-keys:` or `revoked-keys:`.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyEntry {
    pub form: KeyForm,
    pub value: Spanned<String>,
}

/// One mirror: its name and base URLs, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorEntry {
    pub name: Spanned<String>,
    pub urls: Vec<Spanned<String>>,
}

/// One configuration file, as written (nothing merged, nothing resolved).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConfigFile {
    pub repositories: Vec<RepositoryBlock>,
    pub mirrors: Vec<MirrorEntry>,
    pub trusted_keys: Vec<KeyEntry>,
    pub revoked_keys: Vec<KeyEntry>,
    pub signing_key: Option<Spanned<String>>,
    /// `None` when the file does not say (a closer file's list replaces a farther one's).
    pub discover: Option<Vec<Spanned<String>>>,
    pub substitute: Option<Spanned<bool>>,
    pub timeout: Option<Spanned<u64>>,
    /// `audit: { advisory-urls: [...] }`: the OSV dumps `buildit audit --update` downloads
    /// (`None` when the file does not say; a closer file's list replaces a farther one's).
    pub audit_urls: Option<Vec<Spanned<String>>>,
    /// `remote-execution:` (`None` when the file does not say).
    pub remote: Option<RemoteBlock>,
}

/// Parse the configuration file `text` (registered as `file` in the caller's source map):
/// the typed file, or the diagnostics (YAML syntax, size, aliases, schema), all with
/// `buildit::config::` codes. An empty file is an empty configuration.
pub fn parse_config(file: FileId, text: &str) -> Result<ConfigFile, Vec<Diagnostic>> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(vec![Diagnostic::error(
            "buildit::config::too-large",
            format!(
                "the configuration file has {} bytes; configuration files may have at most {} KiB",
                text.len(),
                MAX_CONFIG_BYTES >> 10
            ),
        )
        .with_label(Span::new(file, 0, 0), "this file")
        .with_help(
            "a configuration is a few hundred bytes of YAML (docs/config.md)",
        )]);
    }
    let root = match tree::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(ConfigFile::default()),
        Err(e) => {
            let mut d = crate::syntax_diagnostic(&e, file, text);
            d.code = recode(d.code);
            return Err(vec![d]);
        }
    };
    let mut r = Reader::new(file);
    let c = read_config(&mut r, &root);
    if r.diags.is_empty() {
        Ok(c)
    } else {
        Err(r
            .diags
            .into_iter()
            .map(|mut d| {
                d.code = recode(d.code);
                d
            })
            .collect())
    }
}

/// The `buildit::config::` code of a `buildit::yaml::` code the spec reader gives.
fn recode(code: &'static str) -> &'static str {
    match code {
        "buildit::yaml::syntax" => "buildit::config::syntax",
        "buildit::yaml::too-large" => "buildit::config::too-large",
        "buildit::yaml::too-deep" => "buildit::config::too-deep",
        "buildit::yaml::alias-budget" => "buildit::config::alias-budget",
        "buildit::yaml::expected-mapping" => "buildit::config::expected-mapping",
        "buildit::yaml::bad-key" => "buildit::config::bad-key",
        "buildit::yaml::duplicate-key" => "buildit::config::duplicate-key",
        "buildit::yaml::unknown-key" => "buildit::config::unknown-key",
        "buildit::yaml::expected-string" => "buildit::config::expected-string",
        "buildit::yaml::expected-bool" => "buildit::config::expected-bool",
        "buildit::yaml::expected-list" => "buildit::config::expected-list",
        other => other,
    }
}

/// The root with the seed's unindented `repository:` block folded under its key: when the
/// document is a mapping with a key `repository` whose value is empty, followed by at least
/// one key and only by repository keys, those keys become the repository's mapping.
fn fold_seed_layout(root: &Node) -> Option<Node> {
    let Kind::Map(pairs) = &root.kind else {
        return None;
    };
    let at = pairs
        .iter()
        .position(|(k, v)| k.scalar() == Some("repository") && v.is_null())?;
    let after = &pairs[at + 1..];
    let all_repo_keys = after
        .iter()
        .all(|(k, _)| k.scalar().is_some_and(|k| REPOSITORY_KEYS.contains(&k)));
    let (first, last) = (after.first()?, after.last()?);
    if !all_repo_keys {
        return None;
    }
    let block = Node {
        kind: Kind::Map(after.to_vec()),
        start: first.0.start,
        end: last.1.end,
    };
    let mut folded: Vec<(Node, Node)> = pairs[..at].to_vec();
    folded.push((pairs[at].0.clone(), block));
    Some(Node {
        kind: Kind::Map(folded),
        start: root.start,
        end: root.end,
    })
}

/// Read one configuration file's tree; problems go to `r.diags`.
pub fn read_config(r: &mut Reader, root: &Node) -> ConfigFile {
    let folded = fold_seed_layout(root);
    let root = folded.as_ref().unwrap_or(root);
    let mut c = ConfigFile::default();
    let before = r.diags.len();
    let pairs = r.map(root, "the configuration", CONFIG_KEYS);
    // a repository key at the top level: say where it belongs
    for d in &mut r.diags[before..] {
        let misplaced = REPOSITORY_KEYS
            .iter()
            .find(|k| d.message == format!("unknown key `{k}` in the configuration"));
        if let (Some(k), "buildit::yaml::unknown-key") = (misplaced, d.code) {
            d.message = format!("`{k}` is a key of a repository, not of the configuration");
            d.help = Some("indent the repository's keys under `repository:` (two spaces), or write a list under `repositories:`".into());
            if let Some(l) = d.labels.first_mut() {
                l.message = "a repository key at the top level".into();
            }
        }
    }
    let Some(pairs) = pairs else {
        return c;
    };
    for (key, _, v) in pairs {
        match key {
            "repository" => c.repositories.extend(read_repository(r, v)),
            "repositories" => match &v.kind {
                Kind::Seq(items) => {
                    for i in items {
                        c.repositories.extend(read_repository(r, i));
                    }
                }
                _ => r.error(
                    "buildit::config::expected-list",
                    v,
                    format!("repositories must be a list, found {}", v.describe()),
                    "expected a list",
                    "write one `- name: …` block per repository (or a single `repository:` block)",
                ),
            },
            "mirrors" => c.mirrors = read_mirrors(r, v),
            "trusted-keys" => c.trusted_keys = read_keys(r, v, key),
            "revoked-keys" => c.revoked_keys = read_keys(r, v, key),
            // `signing-key: null` is no key, as `config show` prints it
            "signing-key" if v.is_null() => c.signing_key = None,
            "signing-key" => c.signing_key = read_text(r, v, key),
            "discover" => c.discover = Some(read_discover(r, v)),
            "audit" => {
                for (_, _, u) in r.map(v, "audit", &["advisory-urls"]).unwrap_or_default() {
                    c.audit_urls = Some(read_advisory_urls(r, u));
                }
            }
            "remote-execution" => c.remote = Some(read_remote(r, v)),
            "substitute" => {
                c.substitute = r.boolean(v, key).map(|b| Spanned {
                    value: b,
                    span: r.span(v),
                })
            }
            "timeout" => {
                c.timeout = read_number(
                    r,
                    v,
                    key,
                    1,
                    MAX_TIMEOUT_SECS,
                    "seconds, e.g. `timeout: 30`",
                )
            }
            _ => {}
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for repo in &c.repositories {
        if seen.contains(&repo.name.value.as_str()) {
            r.diags.push(
                Diagnostic::error(
                    "buildit::config::duplicate-repository",
                    format!(
                        "the repository `{}` is configured twice in this file",
                        repo.name.value
                    ),
                )
                .with_label(repo.name.span, "again here")
                .with_help("give each repository its own name"),
            );
        } else {
            seen.push(&repo.name.value);
        }
    }
    c
}

/// The `remote-execution:` block.
fn read_remote(r: &mut Reader, n: &Node) -> RemoteBlock {
    let mut b = RemoteBlock::default();
    let flag = |r: &mut Reader, v: &Node, k: &str| {
        r.boolean(v, k).map(|value| Spanned {
            value,
            span: r.span(v),
        })
    };
    for (k, _, v) in r
        .map(n, "remote-execution", REMOTE_KEYS)
        .unwrap_or_default()
    {
        match k {
            "url" => {
                b.url = read_text(r, v, k).filter(|u| {
                    let ok = u.value.starts_with("grpc://") || u.value.starts_with("grpcs://");
                    if !ok {
                        r.error(
                            "buildit::config::bad-remote-url",
                            v,
                            format!("`{}` is not a grpc:// or grpcs:// URL", u.value),
                            "not an endpoint URL",
                            "write the endpoint as `url: grpc://HOST:PORT` (or grpcs:// for TLS)",
                        );
                    }
                    ok
                })
            }
            "instance" => b.instance = read_text(r, v, k),
            "fallback" => b.fallback = flag(r, v, k),
            "accept-cached" => b.accept_cached = flag(r, v, k),
            "ca-file" => b.ca_file = read_text(r, v, k),
            _ => b.cores = read_number(r, v, k, 1, MAX_REMOTE_CORES, "cores, e.g. `cores: 8`"),
        }
    }
    b
}

/// A text value, bounded in length and free of control characters.
fn read_text(r: &mut Reader, n: &Node, what: &str) -> Option<Spanned<String>> {
    let s = r.string(n, what)?;
    if s.value.len() > MAX_TEXT || s.value.chars().any(char::is_control) {
        r.error(
            "buildit::config::bad-value",
            n,
            format!("{what} must be a single line of at most {MAX_TEXT} bytes"),
            "not a usable value",
            format!("write {what} on one line"),
        );
        return None;
    }
    if s.value.trim().is_empty() {
        r.error(
            "buildit::config::bad-value",
            n,
            format!("{what} is empty"),
            "empty",
            format!("give {what} a value, or leave the key out"),
        );
        return None;
    }
    Some(s)
}

/// A whole number in `min..=max`.
fn read_number(
    r: &mut Reader,
    n: &Node,
    what: &str,
    min: u64,
    max: u64,
    example: &str,
) -> Option<Spanned<u64>> {
    let quoted = matches!(n.kind, Kind::Scalar { quoted: true, .. });
    let parsed = match n.scalar() {
        Some(s) if !quoted && !n.is_null() => s.parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(v) if (min..=max).contains(&v) => Some(Spanned {
            value: v,
            span: r.span(n),
        }),
        Some(v) => {
            r.error(
                "buildit::config::out-of-range",
                n,
                format!("{what} must be between {min} and {max}, found {v}"),
                "out of range",
                format!("write {what} in {example}"),
            );
            None
        }
        None => {
            let found = match n.scalar() {
                Some(s) if !n.is_null() => format!("`{}`", s.chars().take(40).collect::<String>()),
                _ => n.describe().to_string(),
            };
            r.error(
                "buildit::config::expected-number",
                n,
                format!("{what} must be a whole number, found {found}"),
                "expected a number",
                format!("write {what} in {example}"),
            );
            None
        }
    }
}

/// A repository block.
fn read_repository(r: &mut Reader, n: &Node) -> Option<RepositoryBlock> {
    let before = r.diags.len();
    let pairs = r.map(n, "a repository", REPOSITORY_KEYS)?;
    // a misspelt key is reported as such, not again as the key it misses
    let misspelt = r.diags[before..]
        .iter()
        .any(|d| d.code == "buildit::yaml::unknown-key");
    let mut name = None;
    let mut name_given = false;
    // a refused upload-type is reported once, not again as a wrong location
    let mut up_kind_bad = false;
    let mut priority = None;
    let (mut up_kind, mut up_path, mut down_kind, mut down_path) = (None, None, None, None);
    let (mut ca_file, mut ssh_identity) = (None, None);
    for (key, _, v) in pairs {
        match key {
            "name" => {
                name_given = true;
                name = read_text(r, v, "the repository's name");
                if let Some(s) = &name {
                    let ok = s.value.len() <= 64
                        && s.value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                    if !ok {
                        r.error(
                            "buildit::config::bad-value",
                            v,
                            format!("`{}` is not a repository name", s.value),
                            "not a name",
                            "a repository name is up to 64 letters, digits, `.`, `_` and `-` (it is what `--discover=NAME` and the transcript call it)",
                        );
                        name = None;
                    }
                }
            }
            "priority" => {
                priority = read_number(
                    r,
                    v,
                    "priority",
                    0,
                    u64::from(MAX_PRIORITY),
                    "a whole number, lower first, e.g. `priority: 10`",
                )
                .map(|p| Spanned {
                    value: u32::try_from(p.value).unwrap_or(MAX_PRIORITY),
                    span: p.span,
                })
            }
            "upload-type" => {
                up_kind = read_kind(r, v, key, true);
                up_kind_bad = up_kind.is_none();
            }
            "download-type" => down_kind = read_kind(r, v, key, false),
            "upload-path" => up_path = read_text(r, v, key),
            "download-path" => down_path = read_text(r, v, key),
            "ca-file" => ca_file = read_text(r, v, key),
            _ => ssh_identity = read_text(r, v, key),
        }
    }
    let mut missing = |key: &str, help: &str| {
        r.error(
            "buildit::config::missing-key",
            n,
            format!("this repository has no `{key}`"),
            "in this repository",
            help.to_string(),
        );
    };
    if misspelt {
        return None;
    }
    if !name_given {
        missing(
            "name",
            "name it: `name: myrepo` (the transcript and `--discover=NAME` use it)",
        );
    }
    if down_path.is_none() {
        missing(
            "download-path",
            "say where it is read from: `download-path: HOST/PATH` (https), a URL, or a directory with `download-type: file`",
        );
    }
    if up_kind.is_some() && up_path.is_none() {
        missing(
            "upload-path",
            "say where uploads go: `upload-path: USER@HOST/PATH` (ssh), or remove `upload-type`",
        );
    }
    let download = Endpoint {
        kind: down_kind,
        path: down_path?,
    };
    check_endpoint(r, &download, "download", false);
    let upload = up_path.map(|path| Endpoint {
        kind: up_kind,
        path,
    });
    if let (Some(u), false) = (&upload, up_kind_bad) {
        check_endpoint(r, u, "upload", true);
    }
    Some(RepositoryBlock {
        name: name?,
        priority,
        download,
        upload,
        ca_file,
        ssh_identity,
        span: r.span(n),
    })
}

/// An `upload-type` / `download-type` value.
fn read_kind(r: &mut Reader, n: &Node, key: &str, upload: bool) -> Option<Spanned<TransportKind>> {
    let s = r.string(n, key)?;
    let names: Vec<&str> = TransportKind::ALL
        .iter()
        .filter(|k| !upload || k.can_upload())
        .map(|k| k.name())
        .collect();
    match TransportKind::parse(&s.value) {
        Some(k) if upload && !k.can_upload() => {
            r.error(
                "buildit::config::bad-type",
                n,
                format!("uploads cannot go over {}", k.name()),
                "read-only transport",
                format!(
                    "a static {} tree is only read; upload-type is one of {}",
                    k.name(),
                    names.join(", ")
                ),
            );
            None
        }
        Some(k) => Some(Spanned {
            value: k,
            span: s.span,
        }),
        None => {
            let help = match did_you_mean(&s.value.to_ascii_lowercase(), &names) {
                Some(m) => format!("did you mean `{m}`? {key} is one of {}", names.join(", ")),
                None => format!("{key} is one of {}", names.join(", ")),
            };
            r.error(
                "buildit::config::bad-type",
                n,
                format!("unknown {key} `{}`", s.value),
                "unknown transport",
                help,
            );
            None
        }
    }
}

/// Report a location whose form is wrong (at its path's span).
fn check_endpoint(r: &mut Reader, e: &Endpoint, which: &str, upload: bool) {
    let kind = e.kind.as_ref().map(|k| k.value);
    match location_text(kind, &e.path.value, Path::new("/")) {
        Err(why) => r.diags.push(
            Diagnostic::error(
                "buildit::config::bad-location",
                format!("`{}` is not a repository location: {why}", e.path.value),
            )
            .with_label(e.path.span, "this location")
            .with_help(LOCATION_FORMS),
        ),
        Ok(loc) if upload => {
            let scheme = loc.split_once("://").map(|(s, _)| s).unwrap_or("ssh");
            if matches!(scheme, "http" | "https") {
                r.diags.push(
                    Diagnostic::error(
                        "buildit::config::bad-location",
                        format!(
                            "the {which} location `{}` is a static {scheme} tree, which is only read",
                            e.path.value
                        ),
                    )
                    .with_label(e.path.span, "read-only")
                    .with_help("upload over ssh (`USER@HOST/PATH`), to a directory (`file:///DIR`) or to a registry (`oci://REGISTRY/REPO`)"),
                );
            }
        }
        Ok(_) => {}
    }
}

/// The location forms, for help lines.
pub const LOCATION_FORMS: &str = "locations are `HOST/PATH` (https), `https://…`, `http://…`, `file:///DIR`, `ssh://[USER@]HOST[:PORT]/PATH`, `USER@HOST/PATH` (ssh) or `oci://REGISTRY/REPO` (docs/config.md)";

/// Whether `s` has a `SCHEME://` prefix, and which.
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then_some(scheme)
}

/// The location text of a `*-type` (`kind`) and `*-path` (`path`) pair, as the transports
/// parse it:
///
/// - a path with a scheme (`https://…`, `file:///DIR`, `ssh://…`, `oci://…`) is kept (with a
///   type, the two must agree);
/// - `USER@HOST/PATH` without a type, or with `ssh`, is the seed's ssh form and is kept;
/// - with a type, `SCHEME://` is put before the path (`file`: a relative directory is taken
///   relative to `base`);
/// - without a type, a bare `HOST/PATH` means `https://HOST/PATH`.
pub fn location_text(
    kind: Option<TransportKind>,
    path: &str,
    base: &Path,
) -> Result<String, String> {
    let path = path.trim();
    if path.is_empty() {
        return Err("it is empty".into());
    }
    if path.len() > MAX_TEXT {
        return Err(format!("it is longer than {MAX_TEXT} bytes"));
    }
    if let Some(c) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains {c:?}"));
    }
    if let Some(scheme) = scheme_of(path) {
        let Some(k) = TransportKind::parse(scheme) else {
            return Err(format!(
                "buildit has no transport for `{scheme}://` (it has https, http, ssh, file and oci)"
            ));
        };
        if let Some(t) = kind {
            if t != k {
                return Err(format!(
                    "the type says {} but the location is a {}:// URL",
                    t.name(),
                    k.name()
                ));
            }
        }
        let rest = &path[scheme.len() + 3..];
        if k == TransportKind::File {
            if !rest.starts_with('/') {
                return Err("a file:// location is absolute: file:///DIR".into());
            }
        } else {
            check_host(rest)?;
        }
        return Ok(format!("{}://{rest}", k.name()));
    }
    let seed_ssh = path
        .split_once('/')
        .is_some_and(|(authority, _)| authority.contains('@'));
    match kind {
        None if seed_ssh => {
            check_host(path)?;
            Ok(path.to_string())
        }
        None if path.starts_with('/') => Ok(format!("file://{path}")),
        None if path.starts_with('.') => Err(
            "a relative directory needs `*-type: file` (it is then relative to the configuration file)".into(),
        ),
        None => {
            check_host(path)?;
            Ok(format!("https://{path}"))
        }
        Some(TransportKind::File) => {
            let dir = if path.starts_with('/') {
                std::path::PathBuf::from(path)
            } else {
                base.join(path)
            };
            Ok(format!("file://{}", dir.display()))
        }
        Some(TransportKind::Ssh) if seed_ssh => {
            check_host(path)?;
            Ok(path.to_string())
        }
        Some(k) => {
            check_host(path)?;
            Ok(format!("{}://{path}", k.name()))
        }
    }
}

/// The `[USER@]HOST[:PORT]` before the first `/` is there and plausible.
fn check_host(rest: &str) -> Result<(), String> {
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || host.starts_with('[') => {
            if port.parse::<u16>().is_err() {
                return Err(format!("`{port}` is not a port number"));
            }
            h
        }
        _ => host,
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    let ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    if !ok {
        return Err(format!("`{host}` is not a host name"));
    }
    Ok(())
}

/// `mirrors:`: NAME → list of base URLs (a single URL is a list of one).
fn read_mirrors(r: &mut Reader, n: &Node) -> Vec<MirrorEntry> {
    let Some(pairs) = r.map(n, "mirrors", &[]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, k, v) in pairs {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            r.error(
                "buildit::config::bad-value",
                k,
                format!("`{name}` is not a mirror name"),
                "not a name",
                "a mirror name is what `mirror://NAME/…` URLs say: letters, digits, `.`, `_`, `-`",
            );
            continue;
        }
        let urls: Vec<Spanned<String>> = r.strings(v, &format!("mirrors.{name}"));
        let mut good = Vec::new();
        for u in urls {
            let fine = ["http://", "https://", "file://"]
                .iter()
                .any(|p| u.value.starts_with(p))
                && u.value.len() <= MAX_TEXT
                && !u.value.chars().any(|c| c.is_whitespace() || c.is_control());
            if fine {
                good.push(u);
            } else {
                r.diags.push(
                    Diagnostic::error(
                        "buildit::config::bad-mirror",
                        format!("`{}` is not a mirror URL", u.value),
                    )
                    .with_label(u.span, "not an http, https or file URL")
                    .with_help("a mirror is a base URL: `mirror://NAME/PATH` fetches BASE/PATH, e.g. `debian: [http://127.0.0.1:8000/debian]`"),
                );
            }
        }
        if good.is_empty()
            && !r
                .diags
                .iter()
                .any(|d| d.code == "buildit::config::bad-mirror")
        {
            r.error(
                "buildit::config::bad-mirror",
                v,
                format!("the mirror `{name}` has no URL"),
                "no URL",
                "give one or more base URLs, in the order they are tried",
            );
            continue;
        }
        out.push(MirrorEntry {
            name: Spanned {
                value: name.to_string(),
                span: r.span(k),
            },
            urls: good,
        });
    }
    out
}

/// Whether `s` is a key's text, `NAME:BASE64` (no `/` in the name), rather than a path.
pub fn is_key_text(s: &str) -> bool {
    let Some((name, data)) = s.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && !name.contains('/')
        && data.len() >= 4
        && data
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
}

/// `trusted-keys:` / `revoked-keys:`: key texts or `.pub` paths.
fn read_keys(r: &mut Reader, n: &Node, what: &str) -> Vec<KeyEntry> {
    let items = match &n.kind {
        Kind::Seq(items) => items.as_slice(),
        Kind::Scalar { .. } if n.is_null() => return Vec::new(),
        Kind::Scalar { .. } => std::slice::from_ref(n),
        Kind::Map(_) => {
            r.error(
                "buildit::config::expected-list",
                n,
                format!("{what} must be a list, found a mapping"),
                "expected a list",
                "write one `- FILE.pub` or `- NAME:BASE64` per line",
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .filter_map(|i| read_text(r, i, what))
        .map(|value| KeyEntry {
            form: if is_key_text(&value.value) {
                KeyForm::Text
            } else {
                KeyForm::File
            },
            value,
        })
        .collect()
}

/// `discover:`: a list of `LOCATION[,push=True]` or repository names (checked by the driver,
/// which knows the repositories of every file).
fn read_discover(r: &mut Reader, n: &Node) -> Vec<Spanned<String>> {
    let items = r.strings(n, "discover");
    items
        .into_iter()
        .filter(|s| {
            if let Err(why) = split_discover(&s.value) {
                r.diags.push(
                    Diagnostic::error("buildit::config::bad-discover", why)
                        .with_label(s.span, "here")
                        .with_help(DISCOVER_HELP),
                );
                false
            } else {
                true
            }
        })
        .collect()
}

/// `audit: advisory-urls:`: http(s) or file URLs.
fn read_advisory_urls(r: &mut Reader, n: &Node) -> Vec<Spanned<String>> {
    let items = r.strings(n, "advisory-urls");
    items
        .into_iter()
        .filter(|s| {
            let ok = ["https://", "http://", "file://"]
                .iter()
                .any(|p| s.value.starts_with(p))
                && s.value.len() <= MAX_TEXT;
            if !ok {
                r.diags.push(
                    Diagnostic::error(
                        "buildit::config::bad-advisory-url",
                        format!("`{}` is not an http(s) or file URL", s.value),
                    )
                    .with_label(s.span, "here")
                    .with_help("list the URLs of OSV dumps, e.g. `advisory-urls: [https://host/Debian/all.zip]`"),
                );
            }
            ok
        })
        .collect()
}

/// The help line of a bad `--discover` / `discover:` entry.
pub const DISCOVER_HELP: &str = "write LOCATION or NAME, then options after commas: `--discover=github.com/team/containers,push=True` (push=True|False)";

/// The parts of a `LOCATION[,push=True|False]` text: the location (or repository name) and
/// whether `push` was set. Options are `push=True`/`push=False` (any case of `true`/`false`);
/// anything else is an error naming it.
pub fn split_discover(text: &str) -> Result<(&str, bool), String> {
    let mut parts = text.split(',');
    let target = parts.next().unwrap_or("").trim();
    if target.is_empty() {
        return Err(format!("`{text}` names no location"));
    }
    let mut push = None;
    for opt in parts {
        let opt = opt.trim();
        let Some((k, v)) = opt.split_once('=') else {
            return Err(if opt.is_empty() {
                format!("`{text}` has an empty option")
            } else {
                format!("the option `{opt}` has no value (write `{opt}=True`)")
            });
        };
        if k.trim() != "push" {
            return Err(match did_you_mean(k.trim(), &["push"]) {
                Some(s) => format!("unknown option `{}`; did you mean `{s}`?", k.trim()),
                None => format!("unknown option `{}` (the only option is push)", k.trim()),
            });
        }
        if push.is_some() {
            return Err("`push` is given twice".into());
        }
        push = Some(match v.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "push is True or False, not `{}`",
                    other.chars().take(40).collect::<String>()
                ))
            }
        });
    }
    Ok((target, push.unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildit_lang::SourceMap;

    fn parse(text: &str) -> Result<ConfigFile, Vec<Diagnostic>> {
        let mut sources = SourceMap::new();
        let f = sources.add("c.yaml", text);
        parse_config(f, text)
    }

    fn codes(text: &str) -> Vec<&'static str> {
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(ds) => ds.iter().map(|d| d.code).collect(),
        }
    }

    const SEED_FLAT: &str = "---\nrepository:\nname: mysuperbinhost\nupload-type: ssh\nupload-path: containers@mysuperbinhost.org/containers\ndownload-type: https\ndownload-path: mysuperbinhost.org/containers\n";
    const SEED_INDENTED: &str = "---\nrepository:\n  name: mysuperbinhost\n  upload-type: ssh\n  upload-path: containers@mysuperbinhost.org/containers\n  download-type: https\n  download-path: mysuperbinhost.org/containers\n";

    #[test]
    fn the_seed_block_reads_both_ways() {
        let flat = parse(SEED_FLAT).expect("the seed's text as printed");
        let indented = parse(SEED_INDENTED).expect("the seed's block indented");
        for c in [&flat, &indented] {
            assert_eq!(c.repositories.len(), 1);
            let r = &c.repositories[0];
            assert_eq!(r.name.value, "mysuperbinhost");
            assert_eq!(
                r.download.location(Path::new("/")).as_deref(),
                Ok("https://mysuperbinhost.org/containers")
            );
            let up = r.upload.as_ref().expect("an upload");
            assert_eq!(
                up.location(Path::new("/")).as_deref(),
                Ok("containers@mysuperbinhost.org/containers")
            );
        }
    }

    #[test]
    fn the_flat_form_is_only_the_exact_shape() {
        // another top-level key after the flat keys: YAML's meaning, so errors
        let c = codes(&format!("{SEED_FLAT}timeout: 3\n"));
        assert!(c.contains(&"buildit::config::expected-mapping"), "{c:?}");
        assert!(c.contains(&"buildit::config::unknown-key"), "{c:?}");
        // an empty repository alone
        assert_eq!(
            codes("repository:\n"),
            ["buildit::config::expected-mapping"]
        );
    }

    #[test]
    fn unknown_keys_suggest() {
        let ds = parse("substitue: true\n").expect_err("unknown");
        assert_eq!(ds[0].code, "buildit::config::unknown-key");
        assert!(
            ds[0]
                .help
                .as_deref()
                .unwrap_or("")
                .contains("did you mean `substitute`"),
            "{:?}",
            ds[0].help
        );
        let ds = parse("repository:\n  name: a\n  download-pth: h/x\n").expect_err("unknown");
        assert!(ds[0]
            .help
            .as_deref()
            .unwrap_or("")
            .contains("`download-path`"));
    }

    #[test]
    fn wrong_types_and_missing_keys() {
        assert_eq!(
            codes("substitute: maybe\n"),
            ["buildit::config::expected-bool"]
        );
        assert_eq!(
            codes("timeout: soon\n"),
            ["buildit::config::expected-number"]
        );
        assert_eq!(codes("timeout: 0\n"), ["buildit::config::out-of-range"]);
        assert_eq!(
            codes("timeout: \"30\"\n"),
            ["buildit::config::expected-number"]
        );
        assert_eq!(
            codes("repositories: x\n"),
            ["buildit::config::expected-list"]
        );
        assert_eq!(
            codes("repository:\n  name: a\n  upload-path: u@h/p\n"),
            ["buildit::config::missing-key"]
        );
        assert_eq!(
            codes("repository:\n  download-path: h/p\n"),
            ["buildit::config::missing-key"]
        );
        assert_eq!(
            codes("repository:\n  name: a\n  download-type: ftp\n  download-path: h/p\n"),
            ["buildit::config::bad-type"]
        );
        assert_eq!(
            codes("repository:\n  name: a\n  download-path: h/p\n  upload-type: https\n  upload-path: h/p\n"),
            ["buildit::config::bad-type"]
        );
        assert_eq!(
            codes("repositories:\n  - name: a\n    download-path: h/p\n  - name: a\n    download-path: h/q\n"),
            ["buildit::config::duplicate-repository"]
        );
        assert_eq!(codes("name: a\n"), ["buildit::config::unknown-key"]);
    }

    #[test]
    fn locations() {
        let at = |k: Option<TransportKind>, p: &str| location_text(k, p, Path::new("/cfg"));
        assert_eq!(at(None, "h.org/c").as_deref(), Ok("https://h.org/c"));
        assert_eq!(
            at(None, "127.0.0.1:8080/c").as_deref(),
            Ok("https://127.0.0.1:8080/c")
        );
        assert_eq!(at(None, "u@h.org/c").as_deref(), Ok("u@h.org/c"));
        assert_eq!(at(None, "file:///srv/r").as_deref(), Ok("file:///srv/r"));
        assert_eq!(
            at(Some(TransportKind::File), "repo").as_deref(),
            Ok("file:///cfg/repo")
        );
        assert_eq!(
            at(Some(TransportKind::Http), "127.0.0.1:1/x").as_deref(),
            Ok("http://127.0.0.1:1/x")
        );
        assert_eq!(
            at(Some(TransportKind::Oci), "127.0.0.1:5000/r").as_deref(),
            Ok("oci://127.0.0.1:5000/r")
        );
        assert!(at(Some(TransportKind::Https), "ssh://h/x").is_err());
        assert!(at(None, "ftp://h/x").is_err());
        assert_eq!(at(None, "/srv/r").as_deref(), Ok("file:///srv/r"));
        assert!(at(None, "./r").is_err());
        assert!(at(None, "h.org:99999/x").is_err());
        assert!(at(None, "bad host/x").is_err());
        assert!(at(None, "file://relative").is_err());
        assert!(at(None, "").is_err());
    }

    #[test]
    fn keys_mirrors_and_discover() {
        let c = parse("trusted-keys:\n  - keys/team.pub\n  - team-1:AAAAC3NzaC1lZDI1NTE5AAAAIGa3sH0tUUFpX5c=\nrevoked-keys: old.pub\nmirrors:\n  debian: [http://127.0.0.1:1/debian, https://d.example/debian]\n  gnu: http://127.0.0.1:2/gnu\ndiscover: [mysuperbinhost, 'h.org/c,push=True']\nsubstitute: no\ntimeout: 5\n")
            .expect("valid");
        assert_eq!(c.trusted_keys[0].form, KeyForm::File);
        assert_eq!(c.trusted_keys[1].form, KeyForm::Text);
        assert_eq!(c.revoked_keys.len(), 1);
        assert_eq!(c.mirrors.len(), 2);
        assert_eq!(c.mirrors[0].urls.len(), 2);
        assert_eq!(c.mirrors[1].urls.len(), 1);
        assert_eq!(c.discover.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.substitute.map(|s| s.value), Some(false));
        assert_eq!(c.timeout.map(|s| s.value), Some(5));
        assert_eq!(
            parse("signing-key: null\n").map(|c| c.signing_key),
            Ok(None)
        );
        assert_eq!(
            codes("signing-key: [a]\n"),
            ["buildit::config::expected-string"]
        );
        assert_eq!(
            codes("mirrors:\n  debian: ftp://x\n"),
            ["buildit::config::bad-mirror"]
        );
        assert_eq!(
            codes("mirrors:\n  debian: []\n"),
            ["buildit::config::bad-mirror"]
        );
        assert_eq!(
            codes("discover: ['h/x,pusj=True']\n"),
            ["buildit::config::bad-discover"]
        );
    }

    #[test]
    fn discover_options() {
        assert_eq!(split_discover("h/x"), Ok(("h/x", false)));
        assert_eq!(split_discover("h/x,push=True"), Ok(("h/x", true)));
        assert_eq!(split_discover("h/x,push=false"), Ok(("h/x", false)));
        assert_eq!(split_discover("h/x, push = TRUE"), Ok(("h/x", true)));
        assert!(split_discover("h/x,push=yes").is_err());
        assert!(split_discover("h/x,push").is_err());
        assert!(split_discover("h/x,push=True,push=False").is_err());
        let e = split_discover("h/x,puhs=True").expect_err("unknown option");
        assert!(e.contains("did you mean `push`"), "{e}");
        assert!(split_discover(",push=True").is_err());
        assert!(split_discover("h/x,").is_err());
    }

    #[test]
    fn hostile_files_are_errors() {
        let big = format!("timeout: 1\n#{}\n", "x".repeat(MAX_CONFIG_BYTES));
        assert_eq!(codes(&big), ["buildit::config::too-large"]);
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 9].join(",");
            bomb.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
        }
        assert_eq!(codes(&bomb), ["buildit::config::alias-budget"]);
        assert_eq!(codes("a: [\n"), ["buildit::config::syntax"]);
        assert_eq!(codes("- 1\n"), ["buildit::config::expected-mapping"]);
        assert!(parse("").is_ok());
        assert!(parse("# nothing\n").is_ok());
    }
}
