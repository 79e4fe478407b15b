//! `buildit sbom IMAGE|DIR|ATOM --format spdx|cyclonedx`: print an SBOM on stdout. An image
//! prints the SBOM it carries; a container spec is built (or found built) first, as
//! `buildit build DIR` builds it, progress on stderr; a package's SBOM is made from its
//! evaluated closure without building (see `buildit_driver::sbom`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use buildit_builder::ScheduleOptions;
use buildit_driver::sbom::{SbomFormat, SbomTarget};
use buildit_driver::DriverError;
use clap::Args;

use crate::build_cmd::{realise, Progress, RealiseOpts};
use crate::common::session;

/// `buildit sbom IMAGE|DIR|ATOM`
#[derive(Args, Debug)]
pub struct SbomArgs {
    /// An image's output directory (`./result`), a container spec directory (built if
    /// needed), a package atom (`nginx`, `www-servers/nginx-1.22.1`) or a directory holding
    /// pkg.yaml
    #[arg(value_name = "IMAGE|DIR|ATOM")]
    pub what: String,
    /// The SBOM format: SPDX 2.3 JSON or CycloneDX 1.6 JSON
    #[arg(long, default_value = "spdx", value_parser = ["spdx", "cyclonedx"])]
    pub format: String,
    /// The store's physical root directory
    #[arg(long, value_name = "DIR")]
    pub store_root: Option<PathBuf>,
}

/// Run `buildit sbom`.
pub fn run(a: SbomArgs) -> Result<ExitCode, DriverError> {
    let format = if a.format == "cyclonedx" {
        SbomFormat::CycloneDx
    } else {
        SbomFormat::Spdx
    };
    let notice = &mut |l: &str| crate::build_cmd::notice(false, l);
    let bytes = match buildit_driver::sbom::target(&a.what)? {
        SbomTarget::Image(dir) => buildit_driver::sbom::image_sbom(&dir, format)?,
        SbomTarget::Spec(dir) => {
            let session = session(a.store_root.as_deref(), false);
            let store = session.open_store()?;
            let targets = buildit_driver::sbom::spec_image(&session, &store, &dir, notice)?;
            let opts = RealiseOpts {
                schedule: ScheduleOptions::default(),
                out_link: None,
                progress: Progress::auto(),
            };
            let outs = realise(&store, &targets, &opts, session.builtins())?;
            let Some(out) = outs.first() else {
                return Err(DriverError::request(
                    "buildit::sbom::no-image",
                    format!("the spec {} built no image", dir.display()),
                    "add an `image:` entry to container.yaml",
                ));
            };
            buildit_driver::sbom::image_sbom(&store.layout().physical(out), format)?
        }
        SbomTarget::Package(what) => {
            let session = session(a.store_root.as_deref(), false);
            let store = session.open_store()?;
            buildit_driver::sbom::package_sbom(&session, &store, &what, format, notice)?
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&bytes).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            crate::pipe::die_of_sigpipe();
        }
        return Err(DriverError::request(
            "buildit::sbom::write",
            format!("writing the SBOM: {e}"),
            "check where standard output goes",
        ));
    }
    Ok(ExitCode::SUCCESS)
}
