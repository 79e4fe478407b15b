//! `buildit init [DIR] [--package]`: a container spec to start from. It builds as written (GNU
//! hello from the package set, one synced file, an OCI image running as nobody), and each step
//! says what it is, in the terms of a Dockerfile, so a first edit has a working base. With
//! `--package` the image's package is a pkg.yaml of its own that changes the set's hello (the
//! place for patches and build options). Existing files are never overwritten.

use buildit_driver::DriverError;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `buildit init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The directory to write the spec into (created if missing)
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Also write a pkg.yaml (pkgs/hello/pkg.yaml) that the container builds instead of the
    /// set's package: the place for patches and build options
    #[arg(long)]
    pub package: bool,
}

/// The image's name: the directory's name in lower case, `-` for anything but letters and
/// digits (`app` when nothing is left).
fn image_name(dir: &Path) -> String {
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name: String = base
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "app".into()
    } else {
        name
    }
}

/// container.yaml for an image named `name`; `package` picks the embedded package.
fn container_yaml(name: &str, package: bool) -> String {
    let package_step = if package {
        "# FROM and RUN at once: the package built from source, here the set's GNU hello as
# changed by pkgs/hello/pkg.yaml (patches, build options)
- package:
    type: embedded
    path: ./pkgs/hello"
    } else {
        "# FROM and RUN at once: a package of the set, built from source with its runtime
# closure (`buildit search` lists the set; `type: debian` takes a Debian package as is)
- package:
    type: set
    atom: app-misc/hello"
    };
    format!(
        "---
# A container spec (docs/yaml.md; docs/tutorial.md compares it with a Dockerfile). Steps run
# in order:
#   buildit compile .    the .bld program this spec becomes
#   buildit build .      build the image: an OCI layout at ./result
#   buildit contents result
- vars:
    name: {name}
    version: \"0.1\"

{package_step}

# COPY: a file of this directory into the image
- sync:
    src: ./files/greeting.txt
    dest: /srv/greeting.txt
    chmod: 0644

# ENTRYPOINT, USER, LABEL: packages' programs are linked into /usr/bin and /usr/sbin
- image:
    type: oci
    config:
      entrypoint: [\"/usr/bin/hello\"]
      user: \"65534:65534\"
      labels:
        org.opencontainers.image.version: \"{{{{ version }}}}\"
"
    )
}

/// pkgs/hello/pkg.yaml: the set's hello, with its build options spelled out.
const PKG_YAML: &str = "---
# A package of the set, changed (docs/yaml.md, pkg.yaml). Add patches with
#   patches:
#     patches/my.patch: \"what it changes\"
# and turn build options on or off under `use:` (`buildit search hello` lists them).
base: app-misc/hello-2.10
use:
  without:
    - nls
";

const GREETING: &str = "Hello from a buildit image.\n";

/// Write `text` to `path` unless it exists.
fn write_new(path: &Path, text: &str) -> Result<(), DriverError> {
    if path.exists() {
        return Err(exists(path));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| cannot_write(parent, &e))?;
    }
    std::fs::write(path, text).map_err(|e| cannot_write(path, &e))
}

fn exists(path: &Path) -> DriverError {
    DriverError::request(
        "buildit::init::exists",
        format!("{} exists already", path.display()),
        "buildit init writes into a new or empty directory: give another DIR",
    )
}

fn cannot_write(path: &Path, e: &std::io::Error) -> DriverError {
    DriverError::request(
        "buildit::init::cannot-write",
        format!("cannot write {}: {e}", path.display()),
        "give a directory you can write to",
    )
}

/// Run `buildit init`: write the files, print their paths.
pub fn run_init(a: &InitArgs) -> Result<ExitCode, DriverError> {
    let mut files = vec![
        (a.dir.join("container.yaml"), None),
        (a.dir.join("files/greeting.txt"), Some(GREETING)),
    ];
    if a.package {
        files.push((a.dir.join("pkgs/hello/pkg.yaml"), Some(PKG_YAML)));
    }
    // nothing is written when any file exists
    if let Some((p, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(exists(p));
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| cannot_write(&a.dir, &e))?;
    let container = container_yaml(&image_name(&a.dir), a.package);
    for (path, text) in &files {
        write_new(path, text.unwrap_or(&container))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
