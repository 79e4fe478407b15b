//! Host paths named in specs: a spec is untrusted input, and every string it gives as a file
//! (`sync: src`, an embedded package's `path`, a pkg.yaml's patches and `source: { path }`)
//! is read at evaluation time and copied into the world-readable store. So such a path must
//! name something inside the directory it is relative to — the spec directory for
//! container.yaml, the package's own directory for pkg.yaml — with symlinks resolved: an
//! absolute path, a `..` component, or a symlink leading out is refused at the YAML span.
//! (`..` is refused even when it would stay inside: the evaluator resolves `..` lexically,
//! the file system through symlinks, and the two could disagree.) URLs in place of files are
//! limited to the schemes that fetch over the network (`http`, `https`, `mirror`): a `file://`
//! URL is a host path too.

use std::path::{Path, PathBuf};

use buildit_lang::{Diagnostic, Span};

/// Why a spec path was refused.
#[derive(Debug)]
pub enum Refused {
    /// The path starts with `/`.
    Absolute,
    /// The path has a `..` component.
    Parent,
    /// The path (or a symlink on the way) resolves outside the directory, to this path.
    Outside(PathBuf),
    /// Nothing is there (or it cannot be resolved).
    Missing(std::io::Error),
}

/// The host path of `rel` below `root`, if it exists and stays inside `root` once symlinks are
/// resolved (`root` itself may be reached through symlinks). The path returned is
/// `root/rel`, as the generated program names it.
pub fn confine(root: &Path, rel: &str) -> Result<PathBuf, Refused> {
    if rel.starts_with('/') {
        return Err(Refused::Absolute);
    }
    if rel.split('/').any(|c| c == "..") {
        return Err(Refused::Parent);
    }
    let joined = root.join(rel.trim_start_matches("./"));
    let real_root = root.canonicalize().map_err(Refused::Missing)?;
    let real = joined.canonicalize().map_err(Refused::Missing)?;
    if !real.starts_with(&real_root) {
        return Err(Refused::Outside(real));
    }
    Ok(joined)
}

/// Whether `url` is fetched over the network (`http://`, `https://`, `mirror://`).
pub fn network_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    ["http://", "https://", "mirror://"]
        .iter()
        .any(|s| lower.starts_with(s))
}

/// The diagnostic of a URL with another scheme than [`network_url`]'s, at `span`.
pub fn url_diagnostic(what: &str, url: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        "buildit::yaml::url-scheme",
        format!("{what} `{url}` is not an http, https or mirror URL"),
    )
    .with_label(span, "not fetched over the network")
    .with_help("a spec fetches URLs over the network only; a local file goes next to the spec (a `file://` URL would read the building machine's files)")
}

/// The diagnostic of a refused path: `what` names the key (`sync source`, `patch`, …),
/// `root_name` the directory it must stay in (`the spec directory`, `the package directory`).
pub fn diagnostic(
    what: &str,
    rel: &str,
    span: Span,
    root: &Path,
    root_name: &str,
    why: &Refused,
) -> Diagnostic {
    let help = format!(
        "a {what} names a file inside {root_name} ({}); absolute paths, `..` and symlinks leading out are refused",
        root.display()
    );
    match why {
        Refused::Absolute => Diagnostic::error(
            "buildit::yaml::path-outside",
            format!("{what} `{rel}` is an absolute path"),
        )
        .with_label(span, "absolute")
        .with_help(help),
        Refused::Parent => Diagnostic::error(
            "buildit::yaml::path-outside",
            format!("{what} `{rel}` has a `..` component"),
        )
        .with_label(span, "`..` is not allowed")
        .with_help(help),
        Refused::Outside(real) => Diagnostic::error(
            "buildit::yaml::path-outside",
            format!(
                "{what} `{rel}` leads out of {root_name} (to {})",
                real.display()
            ),
        )
        .with_label(span, "a symlink leads out")
        .with_help(help),
        Refused::Missing(_) => Diagnostic::error(
            "buildit::yaml::missing-file",
            format!("{what} `{rel}` not found"),
        )
        .with_label(span, "no such file or directory")
        .with_help(format!("a {what} is relative to {}", root.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("spec");
        std::fs::create_dir_all(root.join("files/sub")).expect("mkdir");
        std::fs::write(root.join("files/a.conf"), "a").expect("write");
        std::fs::write(t.path().join("secret"), "s").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("../../secret", root.join("files/out")).expect("link");
            std::os::unix::fs::symlink("a.conf", root.join("files/in")).expect("link");
            std::os::unix::fs::symlink("/etc", root.join("etc")).expect("link");
        }
        assert!(confine(&root, "files/a.conf").is_ok());
        assert!(confine(&root, "./files/sub").is_ok());
        assert!(confine(&root, "files/in").is_ok());
        assert!(matches!(
            confine(&root, "/etc/shadow"),
            Err(Refused::Absolute)
        ));
        assert!(matches!(confine(&root, "../secret"), Err(Refused::Parent)));
        assert!(matches!(
            confine(&root, "files/../files/a.conf"),
            Err(Refused::Parent)
        ));
        assert!(matches!(
            confine(&root, "files/out"),
            Err(Refused::Outside(_))
        ));
        assert!(matches!(
            confine(&root, "etc/passwd"),
            Err(Refused::Outside(_))
        ));
        assert!(matches!(
            confine(&root, "files/none"),
            Err(Refused::Missing(_))
        ));
    }

    #[test]
    fn only_network_urls() {
        assert!(network_url("https://example.org/a.patch"));
        assert!(network_url("HTTP://example.org/a.patch"));
        assert!(network_url("mirror://debian/pool/x.deb"));
        assert!(!network_url("file:///etc/shadow"));
        assert!(!network_url("ftp://example.org/a"));
    }
}
