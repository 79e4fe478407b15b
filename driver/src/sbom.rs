//! `buildit sbom IMAGE|DIR|ATOM`: what the argument names and the SBOM of it.
//!
//! An image (an output directory, `./result`, or an archive inside one) already carries its
//! SBOMs (`sbom.spdx.json`, `sbom.cdx.json`, written by the image builder): they are read as
//! they are, so `buildit sbom` prints exactly the bytes the image ships. A container spec
//! directory is built (or found built) as `buildit build DIR` builds it, by the front end
//! with the targets [`spec_image`] gives, and then read the same way. A package (an atom as
//! `buildit run` resolves it, or a directory holding pkg.yaml) is not built: its image
//! derivation is instantiated as `buildit image` does, and the SBOM is made from the facts in
//! the derivation's spec, describing the package with its runtime closure.

use std::path::{Path, PathBuf};

use buildit_images::sbom::{Plan, Subject};
use buildit_store::{Store, StorePath};

use crate::error::{DriverError, Result};
use crate::session::Session;

/// The SBOM formats `buildit sbom` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    CycloneDx,
}

impl SbomFormat {
    /// The file an image directory holds this format in.
    pub fn file_name(self) -> &'static str {
        match self {
            SbomFormat::Spdx => buildit_images::oci::SBOM_FILE,
            SbomFormat::CycloneDx => buildit_images::oci::SBOM_CDX_FILE,
        }
    }
}

/// What `buildit sbom`'s argument names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SbomTarget {
    /// A built image's output directory.
    Image(PathBuf),
    /// A container spec directory (holding container.yaml).
    Spec(PathBuf),
    /// A package: an atom of the set, or a directory holding pkg.yaml.
    Package(String),
}

/// Classify `arg`: a directory holding container.yaml is a spec, one holding pkg.yaml a
/// package, one holding an SBOM or an OCI layout an image (an archive file inside an image's
/// output directory names that directory); anything else is an atom.
pub fn target(arg: &str) -> Result<SbomTarget> {
    let p = Path::new(arg);
    if p.is_dir() {
        if p.join("container.yaml").is_file() {
            return Ok(SbomTarget::Spec(p.to_path_buf()));
        }
        if p.join("pkg.yaml").is_file() {
            return Ok(SbomTarget::Package(arg.to_string()));
        }
        if p.join(buildit_images::oci::SBOM_FILE).is_file() || p.join("index.json").is_file() {
            return Ok(SbomTarget::Image(p.to_path_buf()));
        }
        return Err(DriverError::request(
            "buildit::sbom::not-an-image",
            format!("{arg} is a directory without an image, container.yaml or pkg.yaml"),
            "give an image's output directory (./result), a container spec directory, or a package atom",
        ));
    }
    if p.is_file() {
        if let Some(dir) = p
            .parent()
            .filter(|d| d.join(buildit_images::oci::SBOM_FILE).is_file())
        {
            return Ok(SbomTarget::Image(dir.to_path_buf()));
        }
        return Err(DriverError::request(
            "buildit::sbom::not-an-image",
            format!("{arg} is a file outside an image's output directory"),
            "give the image's output directory (it holds the archive and its SBOMs)",
        ));
    }
    if ["./", "../", "/"].iter().any(|s| arg.starts_with(s)) {
        return Err(DriverError::request(
            "buildit::sbom::no-such-path",
            format!("{arg} does not exist"),
            "give an image's output directory (./result), a container spec directory, or a package atom",
        ));
    }
    Ok(SbomTarget::Package(arg.to_string()))
}

/// The SBOM an image directory `dir` carries, as written.
pub fn image_sbom(dir: &Path, format: SbomFormat) -> Result<Vec<u8>> {
    let file = dir.join(format.file_name());
    match std::fs::read(&file) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DriverError::request(
            "buildit::sbom::missing",
            format!("{} has no {}", dir.display(), format.file_name()),
            "images written by this buildit carry sbom.spdx.json and sbom.cdx.json; rebuild the image",
        )),
        Err(e) => Err(DriverError::request(
            "buildit::sbom::read",
            format!("reading {}: {e}", file.display()),
            "check the image directory's permissions",
        )),
    }
}

/// The image derivations of the container spec `dir` (as `buildit build DIR` evaluates it):
/// build them, then read [`image_sbom`] from the first output.
pub fn spec_image(
    session: &Session,
    store: &Store,
    dir: &Path,
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<buildit_builder::Target>> {
    let built = crate::build::spec_build(session, store, dir, true, notice)?;
    if built.image.is_none() {
        return Err(DriverError::request(
            "buildit::sbom::no-image",
            format!("the spec {} makes no image", dir.display()),
            "add an `image:` entry to container.yaml, or give a package atom",
        ));
    }
    Ok(built.targets)
}

/// The SBOM of a package (an atom as `buildit run` resolves it, or a PKGDIR) with its runtime
/// closure, from its image derivation's facts; nothing is built.
pub fn package_sbom(
    session: &Session,
    store: &Store,
    what: &str,
    format: SbomFormat,
    notice: &mut dyn FnMut(&str),
) -> Result<Vec<u8>> {
    let full = if Path::new(what).join("pkg.yaml").is_file() {
        what.to_string()
    } else {
        let t = crate::run::target(session, None, what)?;
        format!("{}-{}", t.atom, t.version)
    };
    let drv = crate::image::image_derivation(session, store, &full, "oci", notice)?;
    let spec = image_spec_of(store, &drv)?;
    let plan = Plan::new(&Subject::Package, &spec.sbom, spec.created.unwrap_or(1));
    render(&plan, format)
}

/// The image spec in the derivation `drv`'s `imageSpec`.
fn image_spec_of(store: &Store, drv: &StorePath) -> Result<buildit_images::ImageSpec> {
    let bad = |m: String| {
        DriverError::request(
            "buildit::sbom::bad-derivation",
            m,
            "this is a bug in buildit",
        )
    };
    let bytes = std::fs::read(store.layout().physical(drv))
        .map_err(|e| bad(format!("reading {drv}: {e}")))?;
    let d = buildit_store::derivation::Derivation::decode(&bytes)
        .map_err(|e| bad(format!("{drv}: {e}")))?;
    let json = d
        .env
        .get("imageSpec")
        .ok_or_else(|| bad(format!("{drv} has no imageSpec")))?;
    crate::builtins::image_spec(json).map_err(bad)
}

fn render(plan: &Plan, format: SbomFormat) -> Result<Vec<u8>> {
    let r = match format {
        SbomFormat::Spdx => buildit_images::sbom::spdx_json(plan),
        SbomFormat::CycloneDx => buildit_images::sbom_cdx::cyclonedx_json(plan),
    };
    r.map_err(|e| {
        DriverError::request(
            "buildit::sbom::encode",
            e.to_string(),
            "this is a bug in buildit",
        )
    })
}
