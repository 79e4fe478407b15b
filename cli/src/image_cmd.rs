//! The image commands: `buildit image ATOM|PKGDIR` packs one package (with its runtime closure)
//! as its own image, the seed's "one container per package"; `buildit push IMAGE
//! REGISTRY/REPO:TAG` and `buildit contents IMAGE` work on an already built image (a
//! `./result` OCI layout, or an archive).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::common::{session, store_layout};
use buildit_driver::{DriverError, ImageOp};
use buildit_images::PushOptions;
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

pub fn run_image(a: ImageArgs) -> Result<ExitCode, DriverError> {
    let session = session(a.store_root.as_deref(), false);
    let store = session.open_store()?;
    let drv = buildit_driver::image::image_derivation(
        &session,
        &store,
        &a.package,
        &a.format,
        &mut |l| crate::build_cmd::notice(a.json, l),
    )?;
    let opts = crate::build_cmd::RealiseOpts {
        schedule: buildit_builder::ScheduleOptions::default(),
        out_link: Some(a.out_link.clone()),
        progress: if a.json {
            crate::build_cmd::Progress::Json
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
    let info = buildit_driver::image::describe(store.layout(), &drv, &out);
    let v = serde_json::json!({
        "image": out.to_string(),
        "drv": drv.to_string(),
        "ref": info.reference,
        "format": info.format,
        "entrypoint": info.entrypoint,
        "manifest_digest": info.manifest_digest,
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
            "pushed {} ({})\n  uploaded {} bytes ({}), skipped {} bytes ({ex} already there, {mo} mounted)",
            r.reference,
            r.manifest_digest,
            r.uploaded_bytes,
            crate::output::plural(up, "blob", "blobs"),
            r.skipped_bytes
        );
        for (what, sb) in [("SBOM", &r.sbom), ("CycloneDX SBOM", &r.sbom_cyclonedx)] {
            if let Some(sb) = sb {
                println!(
                    "  {what} attached as {} ({}, {} bytes uploaded)",
                    sb.reference, sb.manifest_digest, sb.uploaded_bytes
                );
            }
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
