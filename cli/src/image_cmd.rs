//! `buildit push IMAGE REGISTRY/REPO:TAG` and `buildit contents IMAGE`: the image commands
//! that work on an already built image (a `./result` OCI layout, or an archive).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::render::{self, Style};
use buildit_images::{ImageError, PushOptions};
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

fn style() -> Style {
    let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    Style {
        color: tty,
        unicode: tty,
        full_trace: false,
    }
}

fn fail(code: &'static str, message: &str, help: &str) -> ExitCode {
    let d = buildit_lang::Diagnostic::error(code, message).with_help(help);
    eprint!(
        "{}",
        render::diagnostic(&buildit_lang::SourceMap::new(), &d, style())
    );
    ExitCode::from(1)
}

fn image_fail(area: &'static str, e: &ImageError) -> ExitCode {
    let (code, help) = match (area, e) {
        (_, ImageError::NotAnImage(_)) => (
            "buildit::image::not_an_image",
            "pass the directory `buildit build` left (./result) or an image archive",
        ),
        ("push", ImageError::Registry(_)) => (
            "buildit::push::registry",
            "check the registry address, --insecure (loopback only) and --user",
        ),
        ("push", _) => (
            "buildit::push::failed",
            "the image or the registry could not be read; see the message",
        ),
        _ => (
            "buildit::image::read",
            "the image could not be read; see the message",
        ),
    };
    fail(code, &e.to_string(), help)
}

/// Where `push` remembers which repositories hold which blobs (for cross-repository mounts).
fn known_blobs_file() -> Option<PathBuf> {
    let env_root = std::env::var_os("BUILDIT_STORE_ROOT").map(PathBuf::from);
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    let layout =
        buildit_store::StoreLayout::choose(None, env_root.as_deref(), data_home.as_deref());
    Some(layout.state_dir().join("push/known-blobs.json"))
}

pub fn run_push(a: PushArgs) -> ExitCode {
    let credentials = match &a.user {
        None => None,
        Some(u) => match u.split_once(':') {
            Some((n, p)) => Some((n.to_string(), p.to_string())),
            None => match std::env::var("BUILDIT_REGISTRY_PASSWORD") {
                Ok(p) => Some((u.clone(), p)),
                Err(_) => {
                    return fail(
                        "buildit::push::no_password",
                        &format!("--user {u} without a password"),
                        "give --user NAME:PASSWORD or set BUILDIT_REGISTRY_PASSWORD",
                    )
                }
            },
        },
    };
    let opts = PushOptions {
        insecure: a.insecure,
        credentials,
        mount_from: a.mount_from.clone(),
        chunk_size: a.chunk_size.max(1),
        known_blobs: known_blobs_file(),
        verbose: !a.json,
    };
    match buildit_images::push_image(&a.image, &a.target, &opts) {
        Ok(r) => {
            if a.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("error: {e}"),
                }
            } else {
                let up = r.blobs.iter().filter(|b| b.action == "uploaded").count();
                let ex = r.blobs.iter().filter(|b| b.action == "exists").count();
                let mo = r.blobs.iter().filter(|b| b.action == "mounted").count();
                println!(
                    "pushed {} ({})\n  uploaded {} bytes ({up} blobs), skipped {} bytes ({ex} already there, {mo} mounted)",
                    r.reference, r.manifest_digest, r.uploaded_bytes, r.skipped_bytes
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => image_fail("push", &e),
    }
}

pub fn run_contents(a: ContentsArgs) -> ExitCode {
    match buildit_images::image_contents(&a.image) {
        Ok(entries) => {
            if a.json {
                match serde_json::to_string_pretty(&entries) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("error: {e}"),
                }
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
            ExitCode::SUCCESS
        }
        Err(e) => image_fail("contents", &e),
    }
}
