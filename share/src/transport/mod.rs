//! Transports: how bytes reach and leave a repository. A repository is a flat namespace of
//! keys (`buildit-repository.json`, `<hashpart>.info`, `archives/<hex>.tar.zst`, …); every
//! transport offers the same operations over it, so the record format and substitution
//! never know where a repository lives.
//!
//! Locations ([`Location::parse`]): `file:///DIR` or an absolute `/DIR`,
//! `http://HOST[:PORT]/PATH`, `https://…`, `ssh://[USER@]HOST[:PORT]/PATH`, the seed's
//! `USER@HOST[:PORT]/PATH` (ssh, the path relative to the login directory, like scp's
//! `USER@HOST:PATH`), `oci://REGISTRY[:PORT]/REPO`, and a bare `HOST[:PORT]/PATH` (no
//! scheme), which means `https://HOST[:PORT]/PATH`. Locations come from configuration files
//! and command lines that may be someone else's, so parsing is strict: no white space or
//! control characters, no `..`, no `?`/`#`, valid host names and ports, and nothing that
//! starts with `-` where `ssh` would read it as an option.

pub mod file;
pub mod http;
pub mod oci;
pub mod ssh;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ShareError;

/// Longest location text accepted.
pub const MAX_LOCATION_LEN: usize = 2048;

/// Where a repository is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    File(PathBuf),
    /// A static HTTP(S) tree: base URL without a trailing slash.
    Http(String),
    /// A directory on an ssh host: `path` starts with `/` when absolute (`ssh://` form) and
    /// is relative to the login directory otherwise (the seed's `USER@HOST/PATH` form).
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// An OCI registry repository: `registry` is `HOST[:PORT]`, `repo` the repository name.
    Oci { registry: String, repo: String },
}

impl Location {
    /// Parse a location as a user writes it (see the module documentation for the forms).
    pub fn parse(text: &str) -> Result<Location, ShareError> {
        parse_location(text).map_err(|reason| ShareError::BadLocation {
            location: text.escape_debug().to_string(),
            reason,
        })
    }

    /// The location in its canonical written form, which [`Location::parse`] reads back to
    /// the same value.
    pub fn display(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "file://{}", p.display()),
            Location::Http(url) => f.write_str(url),
            Location::Ssh {
                user,
                host,
                port,
                path,
            } => {
                let absolute = path.starts_with('/');
                if absolute {
                    f.write_str("ssh://")?;
                }
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write_host(f, host)?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                if absolute {
                    f.write_str(path)
                } else {
                    write!(f, "/{path}")
                }
            }
            Location::Oci { registry, repo } => write!(f, "oci://{registry}/{repo}"),
        }
    }
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")
    } else {
        f.write_str(host)
    }
}

fn parse_location(text: &str) -> Result<Location, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.len() > MAX_LOCATION_LEN {
        return Err(format!("it is longer than {MAX_LOCATION_LEN} characters"));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(format!(
            "it contains {c:?} (white space, control and non-ASCII characters are not allowed)"
        ));
    }
    if let Some(rest) = text.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err("a file:// location is file:///ABSOLUTE/DIR (no host)".into());
        }
        return Ok(Location::File(PathBuf::from(clean_path(rest)?)));
    }
    if text.starts_with('/') {
        return Ok(Location::File(PathBuf::from(clean_path(text)?)));
    }
    for scheme in ["http://", "https://"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            let (authority, path) = split_authority(rest);
            let (host, port) = host_port(authority)?;
            return Ok(Location::Http(http_url(
                &scheme[..scheme.len() - 3],
                &host,
                port,
                path,
            )?));
        }
    }
    if let Some(rest) = text.strip_prefix("ssh://") {
        let (authority, path) = split_authority(rest);
        let (user, hostport) = match authority.split_once('@') {
            Some((u, h)) => (Some(check_user(u)?), h),
            None => (None, authority),
        };
        let (host, port) = host_port(hostport)?;
        if path.is_empty() || path == "/" {
            return Err(
                "an ssh:// location needs a directory: ssh://[USER@]HOST[:PORT]/DIR".into(),
            );
        }
        return Ok(Location::Ssh {
            user,
            host,
            port,
            path: clean_path(path)?,
        });
    }
    if let Some(rest) = text.strip_prefix("oci://") {
        let (authority, path) = split_authority(rest);
        let (host, port) = host_port(authority)?;
        let repo = path.trim_start_matches('/');
        check_oci_repo(repo)?;
        let registry = match port {
            Some(p) => format!("{}:{p}", bracket(&host)),
            None => bracket(&host),
        };
        return Ok(Location::Oci {
            registry,
            repo: repo.to_string(),
        });
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "unknown scheme '{scheme}://' (known: file://, http://, https://, ssh://, oci://)"
        ));
    }
    let (authority, path) = split_authority(text);
    if let Some((user, hostport)) = authority.split_once('@') {
        let user = check_user(user)?;
        let (host, port) = host_port(hostport)?;
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return Err("the ssh form is USER@HOST[:PORT]/DIR (a directory is needed)".into());
        }
        return Ok(Location::Ssh {
            user: Some(user),
            host,
            port,
            path: clean_path(rel)?,
        });
    }
    let (host, port) = host_port(authority).map_err(|e| {
        format!("{e} (a location without a scheme is HOST[:PORT]/PATH, read as https://; use file:// or an absolute path for a directory)")
    })?;
    if port.is_none() && !host.contains('.') && !host.contains(':') && host != "localhost" {
        return Err(format!(
            "'{host}' does not look like a host name (a location without a scheme is HOST[:PORT]/PATH, read as https://; use file:// or an absolute path for a directory)"
        ));
    }
    Ok(Location::Http(http_url("https", &host, port, path)?))
}

/// Split `AUTHORITY/PATH` at the first `/` (the path keeps its `/`).
fn split_authority(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn http_url(scheme: &str, host: &str, port: Option<u16>, path: &str) -> Result<String, String> {
    if path.contains(['?', '#']) {
        return Err("a repository URL has no query or fragment ('?', '#')".into());
    }
    let path = if path.is_empty() {
        String::new()
    } else {
        clean_path(path)?
    };
    let mut url = format!("{scheme}://{}", bracket(host));
    if let Some(p) = port {
        url.push_str(&format!(":{p}"));
    }
    url.push_str(path.trim_end_matches('/'));
    Ok(url)
}

/// A path without `.` or `..` components, trailing `/` removed (a lone `/` stays).
fn clean_path(p: &str) -> Result<String, String> {
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err("'.' and '..' are not allowed in a repository path".into());
    }
    if p.starts_with('-') {
        return Err("a repository path may not start with '-'".into());
    }
    let t = p.trim_end_matches('/');
    Ok(if t.is_empty() && p.starts_with('/') {
        "/".to_string()
    } else {
        t.to_string()
    })
}

/// A login name: `[A-Za-z0-9._-]`, not starting with `-`, at most 64 characters.
fn check_user(u: &str) -> Result<String, String> {
    let ok = !u.is_empty()
        && u.len() <= 64
        && !u.starts_with('-')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(u.to_string())
    } else {
        Err(format!("'{u}' is not a user name"))
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`: a DNS name (labels of letters, digits and `-`, not
/// starting or ending with `-`), an IPv4 address or a bracketed IPv6 address; a port of
/// 1 to 65535.
fn host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if s.is_empty() {
        return Err("the host is missing".into());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{s}': unclosed '['"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{h}' is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("'{s}': expected ':PORT' after ']'"))?,
            ),
        };
        (h.to_string(), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        check_host(h)?;
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{p}' is not a port"));
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{p}' is not a port (1 to 65535)")),
    }
}

fn check_host(h: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(format!("'{h}' is not a host name"));
    }
    Ok(())
}

/// An OCI repository name: `/`-separated components of lowercase letters and digits joined
/// by `.`, `_`, `__` or `-`s, at most 255 characters.
fn check_oci_repo(repo: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|x| x.is_ascii_digit() || x.is_ascii_lowercase() || b"._-".contains(x))
            && !c.contains("..")
            && !c.contains("___")
    };
    if repo.is_empty() || repo.len() > 255 || !repo.split('/').all(component_ok) {
        return Err(format!(
            "'{repo}' is not an OCI repository name (lowercase letters, digits, '.', '_', '-', '/')"
        ));
    }
    Ok(())
}

/// One repository's bytes. Implementations are shared between threads (lookups run in
/// parallel), never print, and bound every wait by their timeout.
pub trait Transport: Send + Sync {
    /// The location as the user should read it in messages.
    fn describe(&self) -> String;
    /// The whole object under `key`, at most `limit` bytes (more is
    /// [`ShareError::TooLarge`]); `Ok(None)` when the repository does not have it.
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError>;
    /// Stream the object under `key` into the new file `dest`, at most `limit` bytes;
    /// `Ok(false)` when the repository does not have it (then `dest` is not left behind).
    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError>;
    /// A reader of the object under `key`, or `Ok(None)` when the repository does not have
    /// it. The reader yields at most `limit` bytes and then fails, so a caller that reads it to
    /// the end never takes more. The default downloads into `scratch` (a new file, which the
    /// caller removes afterwards) with [`Transport::get_to_file`] and reads that; a transport
    /// that can stream overrides it, so an archive is checked and unpacked as it arrives.
    fn open_read(
        &self,
        key: &str,
        limit: u64,
        scratch: &Path,
    ) -> Result<Option<Box<dyn std::io::Read + Send>>, ShareError> {
        if !self.get_to_file(key, scratch, limit)? {
            return Ok(None);
        }
        let f = std::fs::File::open(scratch).map_err(|e| ShareError::io(scratch.display(), e))?;
        Ok(Some(Box::new(f)))
    }
    /// Whether the repository has `key` (an existence check only: no body is transferred).
    fn exists(&self, key: &str) -> Result<bool, ShareError>;
    /// Store the file `src` under `key` atomically: a reader sees either no object (or the
    /// old one) or the whole new one, never a part (temporary name, then rename).
    fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError>;
    /// [`Transport::put_file`] for bytes in memory.
    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError>;
    /// The keys directly under the directory `prefix` (`""` for the top; else a key prefix
    /// ending in `/`), sorted; names starting with `.` (temporary files) are left out.
    /// Transports that cannot list say so with [`ShareError::Unsupported`].
    fn list(&self, prefix: &str) -> Result<Vec<String>, ShareError> {
        let _ = prefix;
        Err(ShareError::Unsupported {
            repo: self.describe(),
            what: "this kind of repository cannot list its records".into(),
        })
    }
    /// How many uploads may run at once against this repository.
    fn upload_parallelism(&self) -> usize {
        4
    }
    /// Whether reading a record costs what reading the lookup cache would (a local
    /// directory): then the substituter neither asks nor fills the cache for it.
    fn is_local(&self) -> bool {
        false
    }
}

/// Open the transport for `loc`.
pub fn open(loc: &Location, opts: &TransportOptions) -> Result<Box<dyn Transport>, ShareError> {
    match loc {
        Location::File(dir) => Ok(Box::new(file::FileTransport::new(dir))),
        Location::Http(url) => Ok(Box::new(http::HttpTransport::new(url, opts)?)),
        Location::Ssh {
            user,
            host,
            port,
            path,
        } => Ok(Box::new(ssh::SshTransport::new(
            user.as_deref(),
            host,
            *port,
            path,
            opts,
        )?)),
        Location::Oci { registry, repo } => {
            Ok(Box::new(oci::OciTransport::new(registry, repo, opts)?))
        }
    }
}

/// Check that `key` is a plain relative name: `/`-separated components of
/// `[A-Za-z0-9._+-]`, none empty, `.` or `..`, at most 255 bytes in all.
pub fn check_key(key: &str) -> Result<(), ShareError> {
    let ok = !key.is_empty()
        && key.len() <= 255
        && key.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ShareError::BadKey {
            key: key.to_string(),
        })
    }
}

/// Check a [`Transport::list`] prefix: empty, or a valid key followed by `/`.
pub fn check_prefix(prefix: &str) -> Result<(), ShareError> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some(dir) => check_key(dir),
        None => Err(ShareError::BadKey {
            key: prefix.to_string(),
        }),
    }
}

/// How transports connect; one value for all repositories of a command.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Bound on connecting and on any wait for data.
    pub timeout: std::time::Duration,
    /// Extra PEM CA certificates trusted for `https://` (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The private key `ssh` logs in with (`-i`), else ssh's own choice.
    pub ssh_identity: Option<PathBuf>,
    /// Extra `ssh` options (`-o NAME=VALUE` each), e.g. a known-hosts file.
    pub ssh_options: Vec<String>,
    /// Allow plain HTTP to loopback registries for `oci://` (tests, local registries).
    pub insecure_loopback: bool,
}

impl Default for TransportOptions {
    fn default() -> TransportOptions {
        TransportOptions {
            timeout: std::time::Duration::from_secs(30),
            ca_file: None,
            ssh_identity: None,
            ssh_options: Vec::new(),
            insecure_loopback: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> Location {
        Location::Ssh {
            user: user.map(str::to_string),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn accepted_forms() {
        let http = |s: &str| Location::Http(s.to_string());
        let table: Vec<(&str, Location)> = vec![
            ("file:///srv/repo", Location::File("/srv/repo".into())),
            ("file:///srv/repo/", Location::File("/srv/repo".into())),
            ("/srv/repo", Location::File("/srv/repo".into())),
            ("http://127.0.0.1:8080/r", http("http://127.0.0.1:8080/r")),
            (
                "https://Cache.Example.org/",
                http("https://cache.example.org"),
            ),
            ("https://[::1]:443/a/b", http("https://[::1]:443/a/b")),
            (
                "mysuperbinhost.org/containers",
                http("https://mysuperbinhost.org/containers"),
            ),
            (
                "github.com/sysadmin42/containers",
                http("https://github.com/sysadmin42/containers"),
            ),
            ("127.0.0.1:9000/x", http("https://127.0.0.1:9000/x")),
            ("localhost/x", http("https://localhost/x")),
            ("example.org", http("https://example.org")),
            (
                "containers@mysuperbinhost.org/containers",
                ssh(Some("containers"), "mysuperbinhost.org", None, "containers"),
            ),
            (
                "me@127.0.0.1:2222/repo/x",
                ssh(Some("me"), "127.0.0.1", Some(2222), "repo/x"),
            ),
            (
                "ssh://host.lan/srv/r",
                ssh(None, "host.lan", None, "/srv/r"),
            ),
            (
                "ssh://u@[::1]:22/srv/r/",
                ssh(Some("u"), "::1", Some(22), "/srv/r"),
            ),
            (
                "oci://127.0.0.1:5000/team/store-paths",
                Location::Oci {
                    registry: "127.0.0.1:5000".into(),
                    repo: "team/store-paths".into(),
                },
            ),
            (
                "oci://ghcr.io/a/b_c__d.e--f",
                Location::Oci {
                    registry: "ghcr.io".into(),
                    repo: "a/b_c__d.e--f".into(),
                },
            ),
        ];
        for (text, want) in table {
            let got = Location::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
            let again = Location::parse(&got.display())
                .unwrap_or_else(|e| panic!("{} (display of {text}): {e}", got.display()));
            assert_eq!(again, got, "display of {text} is {}", got.display());
        }
    }

    #[test]
    fn refused_forms() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "white space"),
            ("/srv/my repo", "white space"),
            ("/srv/\u{7f}x", "control"),
            ("https://h.org/a\nb", "control"),
            ("/srv/caf\u{e9}", "non-ASCII"),
            ("/srv/../etc", "'..'"),
            ("file:///srv/./x", "'..'"),
            ("file://host/srv", "no host"),
            ("file://", "no host"),
            ("https://h.org/a/../../b", "'..'"),
            ("https://h.org/a?x=1", "query"),
            ("https://h.org/#f", "query"),
            ("https://", "host is missing"),
            ("https://h.org:0/", "not a port"),
            ("https://h.org:65536/", "not a port"),
            ("https://h.org:-1/", "not a port"),
            ("https://h.org:8o/", "not a port"),
            ("https://h.org:/x", "not a port"),
            ("https://-h.org/", "not a host"),
            ("https://h_o.org/", "not a host"),
            ("https://[zz]/x", "IPv6"),
            ("https://[::1/x", "unclosed"),
            ("ftp://h.org/x", "unknown scheme"),
            ("ssh://h.org", "needs a directory"),
            ("ssh://h.org/", "needs a directory"),
            ("ssh://-oProxyCommand=x@h.org/r", "not a user"),
            ("ssh://u@-oProxyCommand=x/r", "not a host"),
            ("u@h.org", "a directory is needed"),
            ("u@h.org/-r", "start with '-'"),
            ("u;rm@h.org/r", "not a user"),
            ("oci://r.io", "OCI repository"),
            ("oci://r.io/Upper", "OCI repository"),
            ("oci://r.io/a//b", "OCI repository"),
            ("oci://r.io/-a", "OCI repository"),
            ("cache/dir", "does not look like a host"),
            ("./cache", "not a host"),
            ("~/cache", "not a host"),
            ("host:99999/x", "not a port"),
        ];
        for (text, needle) in table {
            match Location::parse(text) {
                Ok(l) => panic!("{text:?} accepted as {l:?}"),
                Err(e) => {
                    assert!(matches!(e, ShareError::BadLocation { .. }), "{e}");
                    assert!(
                        e.to_string().contains(needle),
                        "{text:?}: {e} (wanted {needle})"
                    );
                }
            }
        }
        let long = format!("https://h.org/{}", "a".repeat(MAX_LOCATION_LEN));
        assert!(Location::parse(&long).is_err());
    }

    #[test]
    fn keys_and_prefixes() {
        for k in ["a.info", "archives/ab.tar.zst", "buildit-repository.json"] {
            check_key(k).expect(k);
        }
        for k in ["", "/a", "a/", "a//b", "../a", "a/./b", "a b", "a\0b", "ä"] {
            assert!(check_key(k).is_err(), "{k:?}");
        }
        check_prefix("").expect("top");
        check_prefix("archives/").expect("dir");
        for p in ["archives", "/", "../", "a//"] {
            assert!(check_prefix(p).is_err(), "{p:?}");
        }
    }
}
