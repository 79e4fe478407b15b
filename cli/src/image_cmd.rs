//! The image commands: `buildit image ATOM|PKGDIR` packs one package (with its runtime closure)
//! as its own image, the seed's "one container per package"; `buildit push IMAGE
//! REGISTRY/REPO:TAG` and `buildit contents IMAGE` work on an already built image (a
//! `./result` OCI layout, or an archive).

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

/// The image program around a package expression: the package's runtime closure, its main
/// program (`meta.mainProgram`, else `bin/<pname>`) as the entrypoint, named after the package
/// and tagged with its version.
pub fn image_program(package_expr: &str, format: &str) -> String {
    format!(
        r#"# `buildit image`: one package as its own image
let
  buildit = import <buildit>;
  package = {package_expr};
  main = (package.meta or {{ }}).mainProgram or "bin/${{package.pname}}";
in
buildit.image {{
  name = builtins.replaceStrings [ "_" "+" ] [ "-" "-" ] package.pname;
  tag = builtins.replaceStrings [ "+" "~" ":" ] [ "_" "_" "_" ] package.version;
  packages = [ package ];
  type = {format};
  config = {{
    entrypoint = [ "/${{main}}" ];
    labels = {{ "org.opencontainers.image.title" = package.pname; "org.opencontainers.image.version" = package.version; }};
  }};
}}
"#,
        format = buildit_yaml::lower::quote(format)
    )
}

/// Evaluate `text` (a program in `base_dir`) to its one image derivation.
fn evaluate_image(
    store: &buildit_store::Store,
    name: &str,
    text: &str,
    base_dir: &std::path::Path,
) -> Result<buildit_store::StorePath, ExitCode> {
    let st = crate::common::style(false);
    let (sources, _, diags, _) = crate::common::typecheck_source(name, text);
    if !diags.is_empty() {
        eprint!("{}", render::diagnostics(&sources, &diags, st));
        return Err(ExitCode::from(1));
    }
    let io = crate::common::new_store_io(crate::common::fs_io(false), store.layout().clone());
    let mut ev = std::mem::ManuallyDrop::new(buildit_eval::Evaluator::new(Box::new(io)));
    let value = match ev.compile(name, text, &base_dir.display().to_string()) {
        Ok(ir) => ev.eval_root(&ir),
        Err(diags) => {
            eprint!("{}", render::diagnostics(&ev.sources, &diags, st));
            return Err(ExitCode::from(1));
        }
    };
    let found = match value.and_then(|v| crate::instantiate::find_derivations(&mut ev, &v)) {
        Ok(f) => f,
        Err(e) => {
            eprint!("{}", render::eval_error(&ev.sources, &e, st));
            return Err(ExitCode::from(1));
        }
    };
    let Some(f) = found.into_iter().next() else {
        return Err(fail(
            "buildit::image::no-derivation",
            "the image program gave no derivation",
            "this is a bug in buildit",
        ));
    };
    buildit_store::StorePath::parse(&f.drv_path).map_err(|e| {
        fail(
            "buildit::image::bad-drv",
            &e.to_string(),
            "this is a bug in buildit",
        )
    })
}

/// The package expression and the directory it is evaluated in, for an atom or a PKGDIR.
fn package_source(store: &buildit_store::Store, what: &str) -> Result<(String, PathBuf), ExitCode> {
    let dir = PathBuf::from(what);
    if dir.join("pkg.yaml").is_file() {
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let show = |f: buildit_yaml::Failed| {
            eprint!(
                "{}",
                render::diagnostics(&f.sources, &f.diagnostics, crate::common::style(false))
            );
            ExitCode::from(1)
        };
        let compile = || -> Result<buildit_yaml::Compiled, ExitCode> {
            let lock = buildit_yaml::read_lock(&dir);
            let c = buildit_yaml::compile_pkg_dir(&dir, &lock).map_err(show)?;
            let set = crate::yaml_cmd::set_info(Some(&store.layout().root))?;
            let diags = c.check(&set);
            if !diags.is_empty() {
                eprint!(
                    "{}",
                    render::diagnostics(&c.sources, &diags, crate::common::style(false))
                );
                return Err(ExitCode::from(1));
            }
            Ok(c)
        };
        let mut c = compile()?;
        if crate::yaml_cmd::fetch_patches(&c, store)? {
            c = compile()?;
        }
        return Ok((c.text, dir));
    }
    if dir.is_dir() {
        return Err(fail(
            "buildit::image::no-pkg-yaml",
            &format!("{what} is a directory without pkg.yaml"),
            "give a package atom (`buildit search` lists them) or a directory holding pkg.yaml",
        ));
    }
    // an atom: checked against the set first, so a typo gets a "did you mean"
    let set = crate::yaml_cmd::set_info(Some(&store.layout().root))?;
    let (key, _) = buildit_yaml::check::split_atom(what);
    if !set.atoms.contains_key(what) && !set.atoms.contains_key(&key) {
        let names: Vec<&str> = set.atoms.keys().map(String::as_str).collect();
        let help = match buildit_yaml::spec::did_you_mean(&key, &names) {
            Some(s) => format!("did you mean `{s}`? `buildit search` lists the set"),
            None => "`buildit search` lists the set's atoms".to_string(),
        };
        return Err(fail(
            "buildit::image::unknown-atom",
            &format!("unknown package atom `{what}`"),
            &help,
        ));
    }
    Ok((
        format!("buildit.pkgs.byAtom {}", buildit_yaml::lower::quote(what)),
        PathBuf::from(crate::common::cwd()),
    ))
}

pub fn run_image(a: ImageArgs) -> ExitCode {
    let store = match crate::store_cmd::open_store(a.store_root.as_deref()) {
        Ok(s) => s,
        Err(r) => return crate::store_cmd::fail(r),
    };
    let (expr, dir) = match package_source(&store, &a.package) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let text = image_program(&expr, &a.format);
    let drv = match evaluate_image(&store, &format!("«image {}»", a.package), &text, &dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let opts = crate::build_cmd::RealiseOpts {
        schedule: buildit_builder::ScheduleOptions::default(),
        out_link: Some(a.out_link.clone()),
        progress: if a.json {
            crate::build_cmd::Progress::Quiet
        } else {
            crate::build_cmd::Progress::auto()
        },
    };
    let paths = match crate::build_cmd::realise_drvs(
        &store,
        std::slice::from_ref(&drv),
        &opts,
        crate::builtins::all(store.layout()),
    ) {
        Ok(p) => p,
        Err(r) => return crate::store_cmd::fail(r),
    };
    let Some(out) = paths.into_iter().next() else {
        return fail(
            "buildit::image::no-output",
            "the image derivation has no output",
            "this is a bug in buildit",
        );
    };
    if !a.json {
        println!("{out}");
        return ExitCode::SUCCESS;
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
    match serde_json::to_string_pretty(&v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: {e}"),
    }
    ExitCode::SUCCESS
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
                        "buildit::push::no-password",
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
        sbom: !a.no_sbom,
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
                if let Some(sb) = &r.sbom {
                    println!(
                        "  SBOM attached as {} ({}, {} bytes uploaded)",
                        sb.reference, sb.manifest_digest, sb.uploaded_bytes
                    );
                }
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
