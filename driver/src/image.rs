//! `buildit image ATOM|PKGDIR`: one package (an atom of the set, or a directory holding a
//! `pkg.yaml`) as its own image — the package's runtime closure, its main program as the
//! entrypoint — evaluated to the image's derivation.

use std::path::{Path, PathBuf};

use buildit_store::{Store, StorePath};

use crate::error::{DriverError, Result};
use crate::session::Session;

/// The derivation of the image of `what` (an atom or a PKGDIR) in `format` (`oci`,
/// `oci-archive`, `docker-archive`, `docker`, `aci`); `notice` hears about patches fetched.
pub fn image_derivation(
    session: &Session,
    store: &Store,
    what: &str,
    format: &str,
    notice: &mut dyn FnMut(&str),
) -> Result<StorePath> {
    let (expr, dir) = package_source(session, store, what, notice)?;
    let text = crate::pkgset::image_program(&expr, format);
    evaluate_image(session, &format!("«image {what}»"), &text, &dir)
}

/// Evaluate `text` (a program in `base_dir`) to its one image derivation.
fn evaluate_image(session: &Session, name: &str, text: &str, base_dir: &Path) -> Result<StorePath> {
    let (sources, diagnostics) = crate::eval::type_errors(name, text);
    if !diagnostics.is_empty() {
        return Err(DriverError::diagnostics_in(sources, diagnostics));
    }
    let mut ev = session.evaluator();
    let found = crate::eval::evaluate_program(&mut ev, name, text, base_dir)?;
    let Some(f) = found.into_iter().next() else {
        return Err(DriverError::request(
            "buildit::image::no-derivation",
            "the image program gave no derivation",
            "this is a bug in buildit",
        ));
    };
    crate::eval::drv_path(&f)
}

/// The package expression and the directory it is evaluated in, for an atom or a PKGDIR.
pub fn package_source(
    session: &Session,
    store: &Store,
    what: &str,
    notice: &mut dyn FnMut(&str),
) -> Result<(String, PathBuf)> {
    let dir = PathBuf::from(what);
    if dir.join("pkg.yaml").is_file() {
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let c = crate::spec::compile_fetching(
            session,
            store,
            &|s| crate::spec::compile_pkg(s, &dir),
            notice,
        )?;
        return Ok((c.text, dir));
    }
    // `./x`, `../x`, `/x`: a directory was meant, not an atom
    if ["./", "../", "/"].iter().any(|p| what.starts_with(p)) && !dir.exists() {
        return Err(DriverError::request(
            "buildit::image::no-such-directory",
            format!("the directory {what} does not exist"),
            "give a directory holding pkg.yaml, or a package atom (`buildit search` lists them)",
        ));
    }
    if dir.is_dir() {
        return Err(DriverError::request(
            "buildit::image::no-pkg-yaml",
            format!("{what} is a directory without pkg.yaml"),
            "give a package atom (`buildit search` lists them) or a directory holding pkg.yaml",
        ));
    }
    // an atom: checked against the set first, so a typo gets a "did you mean"
    let set = crate::pkgset::package_set(session)?;
    let (key, _) = buildit_yaml::check::split_atom(what);
    if !set.atoms.contains_key(what) && !set.atoms.contains_key(&key) {
        let names: Vec<&str> = set.atoms.keys().map(String::as_str).collect();
        let help = match buildit_yaml::spec::did_you_mean(&key, &names) {
            Some(s) => format!("did you mean `{s}`? `buildit search` lists the set"),
            None => "`buildit search` lists the set's atoms".to_string(),
        };
        return Err(DriverError::request(
            "buildit::image::unknown-atom",
            format!("unknown package atom `{what}`"),
            help,
        ));
    }
    Ok((
        crate::pkgset::atom_expr(what),
        PathBuf::from(crate::eval::cwd()),
    ))
}

/// What a built image is, for `buildit image --json`: its name and tag (`ref`), format and
/// entrypoint from the derivation's spec, and (for an OCI layout) its manifest digest.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    pub reference: String,
    pub format: serde_json::Value,
    pub entrypoint: serde_json::Value,
    pub manifest_digest: Option<String>,
}

/// Describe the image `out` built by the derivation `drv` (unreadable parts stay empty).
pub fn describe(
    layout: &buildit_store::StoreLayout,
    drv: &StorePath,
    out: &StorePath,
) -> ImageInfo {
    let spec: serde_json::Value = std::fs::read(layout.physical(drv))
        .ok()
        .and_then(|b| buildit_store::derivation::Derivation::decode(&b).ok())
        .and_then(|d| d.env.get("imageSpec").cloned())
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let manifest_digest = std::fs::read(layout.physical(out).join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"][0]["digest"].as_str().map(str::to_string));
    ImageInfo {
        reference: format!(
            "{}:{}",
            spec["name"].as_str().unwrap_or(""),
            spec["tag"].as_str().unwrap_or("")
        ),
        format: spec["type"].clone(),
        entrypoint: spec["config"]["entrypoint"].clone(),
        manifest_digest,
    }
}
