//! The repository commands: `buildit key generate`, `buildit sign` and `buildit copy`
//! (their grammar is in `args`, their meaning in docs/sharing.md and docs/config.md). A build's
//! repository flags (`--discover`, `--push`, …) are `build_cmd`'s.

use std::process::ExitCode;

use buildit_driver::config::CliConfig;
use buildit_driver::share::{share_error, Sharing, SubstituteMode};
use buildit_driver::DriverError;
use buildit_share::keys::{write_key_files, SecretKey};
use buildit_share::transport;
use buildit_share::upload::{sign_repository, upload, SignWhich, UploadOptions};
use buildit_store::StorePath;

use crate::args::{CopyArgs, KeyArgs, KeyCommand, SignArgs};
use crate::common::session;

/// A repository command.
pub enum ShareCommand {
    Key(KeyArgs),
    Sign(SignArgs),
    Copy(CopyArgs),
}

/// Run a repository command.
pub fn run(cmd: ShareCommand) -> Result<ExitCode, DriverError> {
    match cmd {
        ShareCommand::Key(KeyArgs {
            command: KeyCommand::Generate(a),
        }) => {
            let key = SecretKey::generate(&a.name).map_err(share_error)?;
            let (secret, public) = write_key_files(&a.dir, &key).map_err(share_error)?;
            println!("{}", public.display());
            eprintln!(
                "wrote {} (keep it secret: `signing-key:`) and {} (give it to users: `trusted-keys:`)",
                secret.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ShareCommand::Sign(a) => sign(a),
        ShareCommand::Copy(a) => copy(a),
    }
}

/// The configuration of a repository command run in the current directory.
fn sharing() -> Result<Sharing, DriverError> {
    let config = buildit_driver::config::load(None, &CliConfig::default())?;
    Sharing::new(config, false, SubstituteMode::On)
}

/// Store paths from the command line (or links to them, such as ./result).
fn store_paths(
    store: &buildit_store::Store,
    words: &[String],
) -> Result<Vec<StorePath>, DriverError> {
    words
        .iter()
        .map(|w| Ok(store.resolve(w)?.0))
        .collect::<Result<Vec<_>, DriverError>>()
}

fn sign(a: SignArgs) -> Result<ExitCode, DriverError> {
    if let Some(why) = a.usage_error() {
        return Err(DriverError::request(
            "buildit::sign::usage",
            why,
            "buildit sign --key FILE PATH... URL, or buildit sign --key FILE --all URL",
        ));
    }
    let sharing = sharing()?;
    let key = SecretKey::read_file(&a.key).map_err(share_error)?;
    let target = sharing.resolve(a.url(), true)?;
    let tr = transport::open(&target.download, &target.options).map_err(share_error)?;
    let paths: Vec<StorePath> = a
        .paths()
        .iter()
        .map(|p| {
            let text = p.trim_end_matches('/');
            StorePath::parse(text).map_err(|e| {
                DriverError::request(
                    "buildit::sign::not-a-store-path",
                    format!("'{p}' is not a store path: {e}"),
                    "name paths as /bld/store/HASH-NAME (the repository's records are keyed by them)",
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let which = if a.all {
        SignWhich::All
    } else {
        SignWhich::Paths(&paths)
    };
    // Records are re-signed only when they are trusted as they stand (rotation never signs
    // a tampered record); with no trusted key configured the caller vouches for them.
    let trust = (!sharing.trust().trusted.is_empty()).then(|| sharing.trust());
    let report = sign_repository(tr.as_ref(), &key, which, trust).map_err(share_error)?;
    for (p, why) in &report.refused {
        eprintln!("not signed: {p}: {why}");
    }
    eprintln!(
        "signed {} record(s) with '{}' in '{}' ({} already signed{})",
        report.signed.len(),
        key.name(),
        target.name,
        report.unchanged.len(),
        if report.refused.is_empty() {
            String::new()
        } else {
            format!(", {} refused", report.refused.len())
        }
    );
    Ok(if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn copy(a: CopyArgs) -> Result<ExitCode, DriverError> {
    let sharing = sharing()?;
    let session = session(a.store_root.as_deref(), false);
    let store = session.open_store()?;
    if let Some(to) = &a.to {
        let paths = store_paths(&store, &a.paths)?;
        let target = sharing.resolve(to, true)?;
        let tr = transport::open(&target.download, &target.options).map_err(share_error)?;
        let key = sharing.signing_key()?;
        let json = crate::output::get().json;
        let report = upload(
            &store,
            tr.as_ref(),
            &paths,
            key.as_ref(),
            &UploadOptions {
                priority: target.priority,
                ..UploadOptions::default()
            },
            &mut |e| crate::build_cmd::upload_event(json, &target.name, &e),
        )
        .map_err(share_error)?;
        eprintln!(
            "copied {} path(s) to '{}' ({} already there, {} bytes sent{})",
            report.uploaded.len(),
            target.name,
            report.skipped.len(),
            report.bytes,
            if key.is_none() { ", unsigned" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let from = a.from.as_deref().unwrap_or_default();
    let source = sharing.resolve(from, false)?;
    let paths: Vec<StorePath> = a
        .paths
        .iter()
        .map(|p| {
            let text = p.trim_end_matches('/');
            store.resolve(p).map(|(p, _)| p).or_else(|_| {
                // a path of this or another store: its base name is what names it
                let base = text.rsplit('/').next().unwrap_or(text);
                StorePath::parse(text)
                    .or_else(|_| StorePath::parse_base_name(base))
                    .map_err(|e| {
                        DriverError::request(
                            "buildit::copy::not-a-store-path",
                            format!("'{p}' is not a store path: {e}"),
                            "name paths as /bld/store/HASH-NAME",
                        )
                    })
            })
        })
        .collect::<Result<_, _>>()?;
    let repo = buildit_share::substitute::Repo {
        name: source.name.clone(),
        transport: transport::open(&source.download, &source.options).map_err(share_error)?,
        priority: source.priority,
    };
    let subst =
        buildit_driver::share::substituter_over(&store, vec![repo], sharing.trust().clone());
    let missing: Vec<StorePath> = paths
        .iter()
        .filter(|p| !store.is_valid(p).unwrap_or(false))
        .cloned()
        .collect();
    let got = if missing.is_empty() {
        Vec::new()
    } else {
        subst
            .inner()
            .fetch(&store, &missing, &mut |_| {})
            .map_err(share_error)?
    };
    let mut out = std::io::stdout().lock();
    for p in &paths {
        use std::io::Write;
        let _ = writeln!(out, "{p}");
    }
    eprintln!(
        "copied {} path(s) from '{}' ({} already here)",
        got.len(),
        source.name,
        paths.len() - missing.len()
    );
    Ok(ExitCode::SUCCESS)
}
