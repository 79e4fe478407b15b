//! The repository commands and flags: `buildit key generate`, `buildit sign`, `buildit copy`,
//! and `--discover`, `--no-substitute`, `--substitute-only`, `--push` of `buildit build` /
//! `realise` (their grammar is in `args`, their meaning in docs/config.md). Each reaches
//! [`run`], which reads the configuration (so a bad `--discover` or configuration file is
//! reported as such) and then says that sharing through repositories is not wired into this
//! build of buildit yet.

use std::path::PathBuf;
use std::process::ExitCode;

use buildit_driver::DriverError;

use crate::args::{CopyArgs, KeyArgs, KeyCommand, ShareFlags, SignArgs};

/// A repository command or build with repository flags.
pub enum ShareCommand {
    Key(KeyArgs),
    Sign(SignArgs),
    Copy(CopyArgs),
    /// `buildit build` / `realise` with repository flags, run on `start` (the spec directory,
    /// or `None` for the current directory).
    Build {
        flags: ShareFlags,
        start: Option<PathBuf>,
    },
}

/// Run a repository command.
pub fn run(cmd: ShareCommand) -> Result<ExitCode, DriverError> {
    let (what, cli, start) = match cmd {
        ShareCommand::Key(KeyArgs {
            command: KeyCommand::Generate(_),
        }) => ("buildit key generate", Default::default(), None),
        ShareCommand::Sign(a) => {
            if let Some(why) = a.usage_error() {
                return Err(DriverError::request(
                    "buildit::sign::usage",
                    why,
                    "buildit sign --key FILE PATH... URL, or buildit sign --key FILE --all URL",
                ));
            }
            ("buildit sign", Default::default(), None)
        }
        ShareCommand::Copy(_) => ("buildit copy", Default::default(), None),
        ShareCommand::Build { flags, start } => (
            "building with --discover, --push or substitution flags",
            flags.cli_config(),
            start,
        ),
    };
    buildit_driver::config::load(start.as_deref(), &cli)?;
    Err(DriverError::request(
        "buildit::share::not-wired",
        format!("{what} is not available in this build of buildit yet"),
        "binary repositories are configured (`buildit config show`) but not wired into the commands yet; build without these flags for now",
    ))
}
