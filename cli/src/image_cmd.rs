//! The image commands: `buildit image ATOM|PKGDIR` packs one package (with its runtime closure)
//! as its own image, the seed's "one container per package"; `buildit push IMAGE
//! REGISTRY/REPO:TAG` and `buildit contents IMAGE` work on an already built image (a
//! `./result` OCI layout, or an archive).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::common::{session, store_layout};
use buildit_driver::{DriverError, ImageOp, Session};
use buildit_images::PushOptions;
use buildit_store::StorePath;
use clap::Args;

#[derive(Args)]
pub struct PushArgs {
    /// The image: an OCI image layout directory (`./result` of an `oci` image)
    pub image: PathBuf,
    /// Where to: REGISTRY/REPO[:TAG] (e.g. 127.0.0.1:5000/nginx:1.22)
    pub target: String,
    /// Allow plain HTTP (only to a loopback registry: 127.0.0.1, ::1, localhost)
    #[arg(long)]
    pub insecure: bool,
    /// Registry user, `NAME` or `NAME:PASSWORD` (else the password is read from
    /// BUILDIT_REGISTRY_PASSWORD)
    #[arg(long, value_name = "NAME[:PASSWORD]")]
    pub user: Option<String>,
    /// Another repository on the same registry to mount blobs from (repeatable)
    #[arg(long = "mount-from", value_name = "REPO")]
    pub mount_from: Vec<String>,
    /// Upload chunk size in bytes
    #[arg(long, default_value_t = 8 << 20)]
    pub chunk_size: usize,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Do not attach the image's SBOM (sbom.spdx.json) as an OCI artifact
    #[arg(long)]
    pub no_sbom: bool,
}

#[derive(Args)]
pub struct ContentsArgs {
    /// The image: an OCI layout directory, an OCI archive, a docker-archive or an ACI (or a
    /// directory holding image.oci.tar, image.docker.tar or image.aci)
    pub image: PathBuf,
    /// Print the entries as a JSON list
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ImageArgs {
    /// The package: an atom of the set (`app-misc/hello`, `www-servers/nginx-1.22.1`) or a
    /// directory holding a pkg.yaml
    #[arg(value_name = "ATOM|PKGDIR")]
    pub package: String,
    /// The image format
    #[arg(long, default_value = "oci", value_parser = ["oci", "oci-archive", "docker-archive", "docker", "aci"])]
    pub format: String,
    /// Print a JSON object (image path, derivation, reference, format, entrypoint, manifest
    /// digest) on stdout instead of the path
    #[arg(long)]
    pub json: bool,
    /// Name of the out-link
    #[arg(short = 'o', long, value_name = "NAME", default_value = "result")]
    pub out_link: String,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// Evaluate `text` (a program in `base_dir`) to its one image derivation.
fn evaluate_image(
    session: &Session,
    name: &str,
    text: &str,
    base_dir: &Path,
) -> Result<StorePath, DriverError> {
    let (sources, diagnostics) = buildit_driver::eval::type_errors(name, text);
    if !diagnostics.is_empty() {
        return Err(DriverError::diagnostics_in(sources, diagnostics));
    }
    let mut ev = session.evaluator();
    let found = buildit_driver::eval::evaluate_program(&mut ev, name, text, base_dir)?;
    let Some(f) = found.into_iter().next() else {
        return Err(DriverError::request(
            "buildit::image::no-derivation",
            "the image program gave no derivation",
            "this is a bug in buildit",
        ));
    };
    buildit_driver::eval::drv_path(&f)
}

/// The package expression and the directory it is evaluated in, for an atom or a PKGDIR.
fn package_source(
    session: &Session,
    store: &buildit_store::Store,
    what: &str,
) -> Result<(String, PathBuf), DriverError> {
    let dir = PathBuf::from(what);
    if dir.join("pkg.yaml").is_file() {
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let c = buildit_driver::spec::compile_fetching(
            session,
            store,
            &|s| buildit_driver::spec::compile_pkg(s, &dir),
            &mut |l| eprintln!("{l}"),
        )?;
        return Ok((c.text, dir));
    }
    if dir.is_dir() {
        return Err(DriverError::request(
            "buildit::image::no-pkg-yaml",
            format!("{what} is a directory without pkg.yaml"),
            "give a package atom (`buildit search` lists them) or a directory holding pkg.yaml",
        ));
    }
    // an atom: checked against the set first, so a typo gets a "did you mean"
    let set = buildit_driver::pkgset::package_set(session)?;
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
        buildit_driver::pkgset::atom_expr(what),
        PathBuf::from(buildit_driver::eval::cwd()),
    ))
}

pub fn run_image(a: ImageArgs) -> Result<ExitCode, DriverError> {
    let session = session(a.store_root.as_deref(), false);
    let store = session.open_store()?;
    let (expr, dir) = package_source(&session, &store, &a.package)?;
    let text = buildit_driver::pkgset::image_program(&expr, &a.format);
    let drv = evaluate_image(&session, &format!("«image {}»", a.package), &text, &dir)?;
    let opts = crate::build_cmd::RealiseOpts {
        schedule: buildit_builder::ScheduleOptions::default(),
        out_link: Some(a.out_link.clone()),
        progress: if a.json {
            crate::build_cmd::Progress::Quiet
        } else {
            crate::build_cmd::Progress::auto()
        },
    };
    let paths = crate::build_cmd::realise(
        &store,
        &[buildit_builder::Target::all(drv.clone())],
        &opts,
        session.builtins(),
    )?;
    let Some(out) = paths.into_iter().next() else {
        return Err(DriverError::request(
            "buildit::image::no-output",
            "the image derivation has no output",
            "this is a bug in buildit",
        ));
    };
    if !a.json {
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    // what the image is, from its derivation's spec and (for a layout) its index
    let spec: serde_json::Value = std::fs::read(store.layout().physical(&drv))
        .ok()
        .and_then(|b| buildit_store::derivation::Derivation::decode(&b).ok())
        .and_then(|d| d.env.get("imageSpec").cloned())
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let digest = std::fs::read(store.layout().physical(&out).join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["manifests"][0]["digest"].as_str().map(str::to_string));
    let v = serde_json::json!({
        "image": out.to_string(),
        "drv": drv.to_string(),
        "ref": format!("{}:{}", spec["name"].as_str().unwrap_or(""), spec["tag"].as_str().unwrap_or("")),
        "format": spec["type"],
        "entrypoint": spec["config"]["entrypoint"],
        "manifest_digest": digest,
        "out_link": a.out_link,
    });
    println!("{}", json_text(&v)?);
    Ok(ExitCode::SUCCESS)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, DriverError> {
    serde_json::to_string_pretty(v)
        .map_err(|e| DriverError::request("buildit::cli::json", e.to_string(), "this is a bug"))
}

/// Where `push` remembers which repositories hold which blobs (for cross-repository mounts).
fn known_blobs_file() -> PathBuf {
    store_layout(None).state_dir().join("push/known-blobs.json")
}

pub fn run_push(a: PushArgs) -> Result<ExitCode, DriverError> {
    let credentials = match &a.user {
        None => None,
        Some(u) => match u.split_once(':') {
            Some((n, p)) => Some((n.to_string(), p.to_string())),
            None => match std::env::var("BUILDIT_REGISTRY_PASSWORD") {
                Ok(p) => Some((u.clone(), p)),
                Err(_) => {
                    return Err(DriverError::request(
                        "buildit::push::no-password",
                        format!("--user {u} without a password"),
                        "give --user NAME:PASSWORD or set BUILDIT_REGISTRY_PASSWORD",
                    ))
                }
            },
        },
    };
    let opts = PushOptions {
        insecure: a.insecure,
        credentials,
        mount_from: a.mount_from.clone(),
        chunk_size: a.chunk_size.max(1),
        known_blobs: Some(known_blobs_file()),
        progress: if a.json {
            None
        } else {
            Some(|l| eprintln!("{l}"))
        },
        sbom: !a.no_sbom,
    };
    let r = buildit_images::push_image(&a.image, &a.target, &opts).map_err(|error| {
        DriverError::Image {
            op: ImageOp::Push,
            error,
        }
    })?;
    if a.json {
        println!("{}", json_text(&r)?);
    } else {
        let up = r.blobs.iter().filter(|b| b.action == "uploaded").count();
        let ex = r.blobs.iter().filter(|b| b.action == "exists").count();
        let mo = r.blobs.iter().filter(|b| b.action == "mounted").count();
        println!(
            "pushed {} ({})\n  uploaded {} bytes ({up} blobs), skipped {} bytes ({ex} already there, {mo} mounted)",
            r.reference, r.manifest_digest, r.uploaded_bytes, r.skipped_bytes
        );
        if let Some(sb) = &r.sbom {
            println!(
                "  SBOM attached as {} ({}, {} bytes uploaded)",
                sb.reference, sb.manifest_digest, sb.uploaded_bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_contents(a: ContentsArgs) -> Result<ExitCode, DriverError> {
    let entries = buildit_images::image_contents(&a.image).map_err(|error| DriverError::Image {
        op: ImageOp::Read,
        error,
    })?;
    if a.json {
        println!("{}", json_text(&entries)?);
    } else {
        let mut out = String::new();
        for e in &entries {
            let pkg = e.package.as_deref().unwrap_or("-");
            match &e.target {
                Some(t) => out.push_str(&format!("{pkg}\t{} -> {t}\n", e.path)),
                None if e.kind == "dir" => out.push_str(&format!("{pkg}\t{}/\n", e.path)),
                None => out.push_str(&format!("{pkg}\t{}\n", e.path)),
            }
        }
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}
