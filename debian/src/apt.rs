//! The machine's apt configuration: its `deb` sources (one-line `*.list` and deb822
//! `*.sources`), the Debian mirrors they name, and private apt roots.
//!
//! Mirrors are configuration, never hosts written in the repository: [`debian_mirrors`] reads
//! the apt sources at run time and gives `debian` (the Debian archive entries) and
//! `debian-security` (the security entries), which `mirror://debian/...` URLs resolve
//! against. [`setup_apt_root`] makes a private apt root over the same mirrors for
//! `buildit debian lock --apt-root DIR --update`, and [`setup_source_apt_root`] one that also
//! fetches the `deb-src` `Sources` indexes (this machine's apt configuration has `deb`
//! entries only; the source entries are derived from them).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::stanza::{self, StanzaError};
use crate::DebianError;

/// The default location of the apt configuration.
pub const DEFAULT_APT_ROOT: &str = "/etc/apt";

/// The keyring a private apt root's sources are signed by.
pub const DEBIAN_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// `debian` and `debian-security` → their base URLs, from the apt configuration under
/// `apt_root` (normally [`DEFAULT_APT_ROOT`]), in apt's order without repeats. Missing files
/// mean no entries, not an error.
pub fn debian_mirrors(apt_root: &Path) -> Result<BTreeMap<String, Vec<String>>, DebianError> {
    let sources = read_apt_sources(apt_root)?;
    let mut debian = Vec::new();
    let mut security = Vec::new();
    for s in sources.iter().filter(|s| s.is_debian_archive()) {
        let list = if s.is_security() {
            &mut security
        } else {
            &mut debian
        };
        let uri = s.uri.trim_end_matches('/').to_string();
        if !list.contains(&uri) {
            list.push(uri);
        }
    }
    let mut m = BTreeMap::new();
    m.insert("debian".to_string(), debian);
    m.insert("debian-security".to_string(), security);
    Ok(m)
}

/// One `deb` source entry of the apt configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
}

impl AptSource {
    /// A Debian archive entry: a Debian suite name (codename or alias, with the usual
    /// suffixes) or Debian's archive keyring; http(s)/file URIs only.
    pub fn is_debian_archive(&self) -> bool {
        const SUITES: &[&str] = &[
            "buster",
            "bullseye",
            "bookworm",
            "trixie",
            "forky",
            "duke",
            "sid",
            "stable",
            "oldstable",
            "oldoldstable",
            "testing",
            "unstable",
            "experimental",
        ];
        let scheme_ok = ["http://", "https://", "file:/"]
            .iter()
            .any(|p| self.uri.starts_with(p));
        let base = self
            .suite
            .split(['-', '/'])
            .next()
            .unwrap_or(self.suite.as_str());
        let keyring = self
            .signed_by
            .as_deref()
            .is_some_and(|k| k.contains("debian-archive-keyring"));
        scheme_ok && (SUITES.contains(&base) || keyring)
    }

    /// A security-suite entry (`*-security`, or `updates` under a `debian-security` URI).
    pub fn is_security(&self) -> bool {
        self.suite.ends_with("-security")
            || self.suite.ends_with("/updates")
            || self.uri.trim_end_matches('/').ends_with("debian-security")
    }
}

/// Every `deb` entry of the apt configuration under `apt_root`: `sources.list`, then
/// `sources.list.d/*.list` and `*.sources` in name order (apt's order). Disabled deb822
/// stanzas (`Enabled: no`) and `deb-src` lines are skipped.
pub fn read_apt_sources(apt_root: &Path) -> Result<Vec<AptSource>, DebianError> {
    let mut out = Vec::new();
    let main = apt_root.join("sources.list");
    if let Some(text) = read_optional(&main)? {
        out.extend(parse_one_line_sources(&text));
    }
    let dir = apt_root.join("sources.list.d");
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(DebianError::AptConfig { path: dir, source }),
    };
    files.sort();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str());
        let Some(text) = (match ext {
            Some("list") | Some("sources") => read_optional(&f)?,
            _ => None,
        }) else {
            continue;
        };
        if ext == Some("list") {
            out.extend(parse_one_line_sources(&text));
        } else {
            out.extend(
                parse_deb822_sources(&text).map_err(|e| DebianError::BadSources {
                    path: f.clone(),
                    why: e.why,
                })?,
            );
        }
    }
    Ok(out)
}

fn read_optional(path: &Path) -> Result<Option<String>, DebianError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DebianError::AptConfig {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parse the one-line format: `deb [opt=val ...] URI SUITE [COMPONENT...]`.
pub fn parse_one_line_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for o in opts.split_whitespace() {
                if let Some(v) = o.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            uri: uri.to_string(),
            suite: suite.to_string(),
            components: words.map(str::to_string).collect(),
            signed_by,
        });
    }
    out
}

/// Parse the deb822 format: one entry per URI × suite of each enabled `deb` stanza.
pub fn parse_deb822_sources(text: &str) -> Result<Vec<AptSource>, StanzaError> {
    let mut out = Vec::new();
    let text = stanza::unix_line_ends(text);
    for stanza in stanza::stanzas(&text) {
        let stanza = stanza?;
        let get = |k: &str| stanza.get(k).unwrap_or_default();
        if !get("Types").split_whitespace().any(|t| t == "deb") {
            continue;
        }
        if get("Enabled").eq_ignore_ascii_case("no") {
            continue;
        }
        let comps: Vec<String> = get("Components")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let signed_by = stanza.get("Signed-By").map(|s| s.into_owned());
        let suites = get("Suites");
        for uri in get("URIs").split_whitespace() {
            for suite in suites.split_whitespace() {
                out.push(AptSource {
                    uri: uri.to_string(),
                    suite: suite.to_string(),
                    components: comps.clone(),
                    signed_by: signed_by.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Make `root` a private apt root for `suite` and `arch` (sources: the Debian mirrors of the
/// apt configuration under `apt_config`, signed by Debian's archive keyring) and run
/// `apt-get update` in it, so that `root/var/lib/apt/lists` holds fresh indexes.
pub fn setup_apt_root(
    root: &Path,
    apt_config: &Path,
    suite: &str,
    arch: &str,
) -> Result<(), DebianError> {
    setup_apt_root_types(root, apt_config, suite, arch, "deb")
}

/// [`setup_apt_root`] with `deb-src` entries beside the `deb` ones, so that the lists also
/// hold the `Sources` indexes (checked against the same signed `InRelease` files).
pub fn setup_source_apt_root(
    root: &Path,
    apt_config: &Path,
    suite: &str,
    arch: &str,
) -> Result<(), DebianError> {
    setup_apt_root_types(root, apt_config, suite, arch, "deb deb-src")
}

fn setup_apt_root_types(
    root: &Path,
    apt_config: &Path,
    suite: &str,
    arch: &str,
    types: &str,
) -> Result<(), DebianError> {
    let mirrors = debian_mirrors(apt_config)?;
    let joined = |name: &str| mirrors.get(name).map(|v| v.join(" ")).unwrap_or_default();
    let (debian, security) = (joined("debian"), joined("debian-security"));
    if debian.is_empty() {
        return Err(DebianError::NoMirror {
            apt_config: apt_config.to_path_buf(),
        });
    }
    let io = |what: &'static str| {
        move |source| DebianError::AptRoot {
            root: root.to_path_buf(),
            what,
            source,
        }
    };
    for d in [
        "etc/apt/sources.list.d",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/lib/dpkg",
    ] {
        fs::create_dir_all(root.join(d)).map_err(io("creating directories"))?;
    }
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        fs::write(&status, "").map_err(io("writing the dpkg status"))?;
    }
    let keyring = DEBIAN_ARCHIVE_KEYRING;
    let mut sources = format!(
        "Types: {types}\nURIs: {debian}\nSuites: {suite} {suite}-updates\nComponents: main\nSigned-By: {keyring}\n"
    );
    if !security.is_empty() {
        sources.push_str(&format!(
            "\nTypes: {types}\nURIs: {security}\nSuites: {suite}-security\nComponents: main\nSigned-By: {keyring}\n"
        ));
    }
    fs::write(root.join("etc/apt/sources.list.d/debian.sources"), sources)
        .map_err(io("writing the sources"))?;
    let abs = std::path::absolute(root).map_err(io("resolving the path"))?;
    let out = std::process::Command::new("apt-get")
        .arg("update")
        .arg("-q")
        .arg(format!("-oDir={}", abs.display()))
        .arg(format!(
            "-oDir::State::status={}",
            abs.join("var/lib/dpkg/status").display()
        ))
        .arg(format!("-oAPT::Architecture={arch}"))
        .arg("-oDir::Etc::trusted=/nonexistent")
        .arg("-oDir::Etc::trustedparts=/nonexistent")
        .arg("-oAcquire::Languages=none")
        .arg("-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
        .output()
        .map_err(|source| DebianError::AptGetSpawn { source })?;
    if !out.status.success() {
        return Err(DebianError::AptGet {
            root: root.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An apt configuration with one-line and deb822 entries, a disabled stanza, a non-Debian
    /// repository and a file apt ignores.
    fn apt_root(dir: &Path) -> PathBuf {
        let root = dir.join("etc-apt");
        fs::create_dir_all(root.join("sources.list.d")).expect("mkdir");
        fs::write(
            root.join("sources.list"),
            "# comment\n\
             deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://first.invalid/debian/ bookworm main contrib\n\
             deb-src http://src.invalid/debian bookworm main\n\
             deb http://sec.invalid/debian-security bookworm-security main\n\
             deb https://vendor.invalid/apt cloud-sdk-bookworm main\n",
        )
        .expect("write sources.list");
        fs::write(
            root.join("sources.list.d/debian.sources"),
            "Types: deb\n# comment\nURIs: http://second.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
             Types: deb deb-src\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n\
             Types: deb\nURIs: http://second.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n",
        )
        .expect("write .sources");
        fs::write(
            root.join("sources.list.d/node.sources"),
            "Types: deb\nURIs: https://node.invalid/node_20.x\nSuites: nodistro\nComponents: main\n",
        )
        .expect("write node.sources");
        fs::write(
            root.join("sources.list.d/off.sources.disabled"),
            "Types: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\n",
        )
        .expect("write disabled");
        root
    }

    #[test]
    fn debian_mirrors_come_from_the_apt_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = debian_mirrors(&apt_root(dir.path())).expect("read apt config");
        assert_eq!(
            m["debian"],
            [
                "http://first.invalid/debian",
                "http://second.invalid/debian"
            ]
        );
        assert_eq!(
            m["debian-security"],
            [
                "http://sec.invalid/debian-security",
                "http://second.invalid/debian-security"
            ]
        );
        // no configuration at all: no entries
        let m = debian_mirrors(&dir.path().join("missing")).expect("missing root");
        assert!(m.values().all(Vec::is_empty), "{m:?}");
    }

    #[test]
    fn one_line_and_deb822_parsers() {
        let v = parse_one_line_sources(
            "deb [ signed-by=/k.gpg ] http://a/debian sid main\ndeb http://b x\n",
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uri, "http://a/debian");
        assert_eq!(v[0].signed_by.as_deref(), Some("/k.gpg"));
        assert!(v[0].is_debian_archive());
        assert!(!v[1].is_debian_archive());
        let v = parse_deb822_sources(
            "Types: deb\nURIs: http://a/debian\n http://b/debian\nSuites: trixie\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n debian-archive-keyring\n",
        )
        .expect("deb822");
        assert_eq!(
            v.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
            ["http://a/debian", "http://b/debian"]
        );
        assert!(v.iter().all(AptSource::is_debian_archive));
    }

    /// A `.sources` file that is not deb822 is an error naming the file.
    #[test]
    fn a_malformed_sources_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("etc-apt");
        fs::create_dir_all(root.join("sources.list.d")).expect("mkdir");
        fs::write(
            root.join("sources.list.d/bad.sources"),
            "Types: deb\nthis line has no colon\n",
        )
        .expect("write");
        let e = debian_mirrors(&root).expect_err("malformed");
        assert!(matches!(e, DebianError::BadSources { .. }), "{e}");
        assert!(e.to_string().contains("bad.sources"), "{e}");
    }

    #[test]
    fn a_private_apt_root_needs_a_debian_mirror() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = setup_apt_root(
            &dir.path().join("root"),
            &dir.path().join("no-config"),
            "bookworm",
            "amd64",
        )
        .expect_err("no mirror");
        assert!(matches!(e, DebianError::NoMirror { .. }), "{e}");
        assert!(!dir.path().join("root").exists());
    }
}
