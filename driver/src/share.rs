//! Sharing for the commands: which repositories a command looks in and uploads to (the
//! merged configuration plus `--discover`), the keys it trusts and signs with, the
//! scheduler's substituter over them, and what `push=True` uploads.
//!
//! Lookups go to every configured repository's download location and every discovered
//! location at once. Uploads go to the configured repositories that have an upload location;
//! a discovered location with `push=True` that names no configured repository is uploaded to
//! itself when it can be written (`file://`, ssh, `oci://`). Paths are signed with
//! `signing-key:` when one is configured.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use buildit_share::cache::CacheTtl;
use buildit_share::keys::{PublicKey, SecretKey, Trust};
use buildit_share::substitute::{Repo, SubstituteOptions, Substituter};
use buildit_share::transport::{self, Location, Transport, TransportOptions};
use buildit_share::upload::{upload, UploadEvent, UploadOptions, UploadReport};
use buildit_share::ShareError;
use buildit_store::{Store, StorePath};

use crate::config::{DiscoverTarget, LoadedConfig, RepositoryConfig};
use crate::error::{DriverError, Result};
use crate::substitute::RepoSubstituter;

/// A repository as one command uses it: a name for messages, where to read and where (if
/// anywhere) to write, and how to connect.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub download: Location,
    pub upload: Option<Location>,
    pub priority: u32,
    pub options: TransportOptions,
}

/// Whether missing paths are looked up before building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubstituteMode {
    /// Not at all (`--no-substitute`, `substitute: false`).
    Off,
    /// Yes; what is not found is built.
    On,
    /// Yes; what is not found is an error (`--substitute-only`).
    Only,
}

/// The repositories, trust and keys of one command.
pub struct Sharing {
    config: LoadedConfig,
    lookup: Vec<Endpoint>,
    /// Where uploads go, each opened once for the whole command (an ssh master connection
    /// serves every upload of a build).
    push: Vec<(Endpoint, Box<dyn Transport>)>,
    /// The signing key, read once when something is pushed.
    push_key: Option<SecretKey>,
    trust: Trust,
    mode: SubstituteMode,
}

/// The error of a repository operation, with the code and help of its kind.
pub fn share_error(e: ShareError) -> DriverError {
    let (code, help) = match &e {
        ShareError::BadLocation { .. } => (
            "buildit::share::bad-location",
            "write a location as file:///DIR, https://HOST/PATH, ssh://USER@HOST/PATH, USER@HOST/PATH, oci://REGISTRY/REPO or HOST/PATH (docs/sharing.md)",
        ),
        ShareError::Timeout { .. } => (
            "buildit::share::timeout",
            "the repository did not answer in time: check that it is up, or raise `timeout:` (docs/config.md)",
        ),
        ShareError::Unsigned { .. }
        | ShareError::Untrusted { .. }
        | ShareError::Revoked { .. }
        | ShareError::BadSignature { .. } => (
            "buildit::share::untrusted",
            "only records signed by a key in `trusted-keys:` (and not in `revoked-keys:`) are used; check the repository and docs/sharing.md",
        ),
        ShareError::BadKeyText { .. } => (
            "buildit::share::bad-key",
            "a key file holds one line NAME:BASE64, as `buildit key generate NAME` writes",
        ),
        ShareError::Unsupported { .. } => (
            "buildit::share::unsupported",
            "upload through an ssh://, USER@HOST/PATH, file:// or oci:// location (https is read-only)",
        ),
        _ => (
            "buildit::share::failed",
            "the repository refused or failed; nothing was registered from it (docs/sharing.md)",
        ),
    };
    DriverError::request(code, e.to_string(), help)
}

/// The environment variable with extra `ssh` options for every ssh repository:
/// whitespace-separated `NAME=VALUE` words, each given as `-o NAME=VALUE` (as `NIX_SSHOPTS`
/// and `GIT_SSH_COMMAND` do for their tools), e.g. a known-hosts file.
pub const SSH_OPTIONS_ENV: &str = "BUILDIT_SSH_OPTIONS";

/// How to connect: the timeout, `BUILDIT_SSH_OPTIONS`, and a repository's CA file and ssh key.
fn transport_options(
    timeout: std::time::Duration,
    ca_file: Option<PathBuf>,
    ssh_identity: Option<PathBuf>,
) -> TransportOptions {
    TransportOptions {
        timeout,
        ca_file,
        ssh_identity,
        ssh_options: std::env::var(SSH_OPTIONS_ENV)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        // a registry on this machine may speak plain HTTP, as Docker allows for localhost
        insecure_loopback: true,
    }
}

fn endpoint_of(r: &RepositoryConfig, timeout: std::time::Duration) -> Endpoint {
    Endpoint {
        name: r.name.clone(),
        download: r.download.value.clone(),
        upload: r.upload.as_ref().map(|u| u.value.clone()),
        priority: r.priority.value,
        options: transport_options(
            timeout,
            r.ca_file.as_ref().map(|p| p.value.clone()),
            r.ssh_identity.as_ref().map(|p| p.value.clone()),
        ),
    }
}

/// Whether uploads can go to `l` (https is read-only).
fn writable(l: &Location) -> bool {
    !matches!(l, Location::Http(_))
}

fn parse_keys(keys: &[crate::config::Sourced<crate::config::KeySource>]) -> Result<Vec<PublicKey>> {
    keys.iter()
        .map(|k| {
            PublicKey::parse(&k.value.text).map_err(|e| {
                DriverError::request(
                    "buildit::config::bad-key",
                    format!("{} ({}): {e}", k.from, k.value.file.as_ref().map_or_else(|| "key text".to_string(), |f| f.display().to_string())),
                    "a public key is one line NAME:BASE64, as `buildit key generate NAME` writes into NAME.pub",
                )
            })
        })
        .collect()
}

impl Sharing {
    /// The sharing of a command with configuration `config`; `push` (`--push`) uploads to
    /// the configured upload repositories as `push=True` does.
    pub fn new(config: LoadedConfig, push: bool, mode: SubstituteMode) -> Result<Sharing> {
        let timeout = config.timeout();
        let mut lookup: Vec<Endpoint> = config
            .repositories
            .iter()
            .map(|r| endpoint_of(r, timeout))
            .collect();
        let mut push_to: Vec<Endpoint> = Vec::new();
        let mut pushed_any = push;
        for d in &config.discover {
            let e = match &d.value.target {
                DiscoverTarget::Repository(name) => match config.repository(name) {
                    Some(r) => endpoint_of(r, timeout),
                    None => {
                        return Err(DriverError::request(
                            "buildit::config::unknown-repository",
                            format!("{}: no repository is called '{name}'", d.from),
                            "name a repository of `repository:`/`repositories:` or give a location (buildit config show)",
                        ))
                    }
                },
                DiscoverTarget::Location(l) => Endpoint {
                    name: l.to_string(),
                    download: l.clone(),
                    upload: writable(l).then(|| l.clone()),
                    priority: crate::config::DEFAULT_PRIORITY,
                    options: transport_options(timeout, None, None),
                },
            };
            if d.value.push {
                pushed_any = true;
                if let DiscoverTarget::Location(_) = &d.value.target {
                    if config.upload_repositories().is_empty() && e.upload.is_some() {
                        push_to.push(e.clone());
                    }
                }
            }
            if !lookup.iter().any(|l| l.download == e.download) {
                lookup.push(e);
            }
        }
        if pushed_any {
            for r in config.upload_repositories() {
                if !push_to.iter().any(|p| p.name == r.name) {
                    push_to.push(endpoint_of(r, timeout));
                }
            }
            if push_to.is_empty() {
                return Err(DriverError::request(
                    "buildit::config::nowhere-to-push",
                    "push=True, but no repository has an upload location",
                    "give a repository an `upload-path:` in .buildit-config.yaml, or --discover a writable location (file://, ssh, oci://) with push=True",
                ));
            }
        }
        let trust = Trust {
            trusted: parse_keys(&config.trusted_keys)?,
            revoked: parse_keys(&config.revoked_keys)?,
        };
        let mode = if !config.substitute.value && mode == SubstituteMode::On {
            SubstituteMode::Off
        } else {
            mode
        };
        let mut push = Vec::new();
        for e in push_to {
            if let Some(loc) = &e.upload {
                let t = transport::open(loc, &e.options).map_err(share_error)?;
                push.push((e, t));
            }
        }
        let mut sharing = Sharing {
            config,
            lookup,
            push,
            push_key: None,
            trust,
            mode,
        };
        if !sharing.push.is_empty() {
            sharing.push_key = sharing.signing_key()?;
        }
        Ok(sharing)
    }

    /// The merged configuration.
    pub fn config(&self) -> &LoadedConfig {
        &self.config
    }

    /// Whether missing paths are looked up first.
    pub fn mode(&self) -> SubstituteMode {
        self.mode
    }

    /// The repositories looked in.
    pub fn lookup(&self) -> &[Endpoint] {
        &self.lookup
    }

    /// The repositories uploaded to (empty without `push=True` / `--push`).
    pub fn push_targets(&self) -> impl Iterator<Item = &Endpoint> {
        self.push.iter().map(|(e, _)| e)
    }

    /// The trusted and revoked keys.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The key uploads are signed with, read from `signing-key:`.
    pub fn signing_key(&self) -> Result<Option<SecretKey>> {
        match &self.config.signing_key {
            None => Ok(None),
            Some(p) => SecretKey::read_file(&p.value).map(Some).map_err(|e| {
                DriverError::request(
                    "buildit::config::bad-signing-key",
                    format!("signing-key ({}): {e}", p.from),
                    "give the NAME.secret file `buildit key generate NAME` wrote",
                )
            }),
        }
    }

    /// The scheduler's substituter over the lookup repositories, or `None` when substitution
    /// is off or there is nowhere to look.
    pub fn substituter(&self, store: &Store) -> Result<Option<RepoSubstituter>> {
        if self.mode == SubstituteMode::Off || self.lookup.is_empty() {
            return Ok(None);
        }
        let repos = self
            .lookup
            .iter()
            .map(|e| {
                Ok(Repo {
                    name: e.name.clone(),
                    transport: transport::open(&e.download, &e.options).map_err(share_error)?,
                    priority: e.priority,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(substituter_over(store, repos, self.trust.clone())))
    }

    /// A repository by a configured name or a location, for reading (`copy --from`,
    /// `sign`): the configured repository's download location and options, else the location.
    pub fn resolve(&self, text: &str, for_upload: bool) -> Result<Endpoint> {
        if let Some(r) = self.config.repository(text) {
            let mut e = endpoint_of(r, self.config.timeout());
            if for_upload {
                match e.upload.clone() {
                    Some(u) => e.download = u,
                    None if writable(&e.download) => {}
                    None => {
                        return Err(DriverError::request(
                            "buildit::config::nowhere-to-push",
                            format!("repository '{text}' has no upload location"),
                            "give it an `upload-path:` (docs/config.md)",
                        ))
                    }
                }
            }
            return Ok(e);
        }
        let l = Location::parse(text).map_err(share_error)?;
        Ok(Endpoint {
            name: l.to_string(),
            download: l.clone(),
            upload: writable(&l).then(|| l.clone()),
            priority: crate::config::DEFAULT_PRIORITY,
            options: transport_options(self.config.timeout(), None, None),
        })
    }

    /// Upload the closures of `paths` to every push target, signed with the signing key.
    pub fn push_paths(
        &self,
        store: &Store,
        paths: &[StorePath],
        progress: &mut dyn FnMut(&str, UploadEvent),
    ) -> Result<Vec<(String, UploadReport)>> {
        let mut reports = Vec::new();
        for (t, tr) in &self.push {
            let r = upload(
                store,
                tr.as_ref(),
                paths,
                self.push_key.as_ref(),
                &UploadOptions::default(),
                &mut |e| progress(&t.name, e),
            )
            .map_err(share_error)?;
            reports.push((t.name.clone(), r));
        }
        Ok(reports)
    }

    /// Publish a container under `containers/ID/`: `files` (keys below
    /// `containers/ID/KEY/`) and then the record `containers/ID/KEY.json`, to every push
    /// target that does not have that record yet (one existence check when it has).
    pub fn push_container(
        &self,
        id: &str,
        key: &str,
        record: &[u8],
        files: &[(String, PathBuf)],
    ) -> Result<()> {
        let base = format!("containers/{id}/{key}");
        transport::check_key(&base).map_err(share_error)?;
        for (_, tr) in &self.push {
            if tr.exists(&format!("{base}.json")).map_err(share_error)? {
                continue;
            }
            for (k, file) in files {
                tr.put_file(&format!("{base}/{k}"), file)
                    .map_err(share_error)?;
            }
            tr.put_bytes(&format!("{base}.json"), record)
                .map_err(share_error)?;
        }
        Ok(())
    }
}

/// A substituter over opened repositories with the store's lookup cache.
pub fn substituter_over(store: &Store, repos: Vec<Repo>, trust: Trust) -> RepoSubstituter {
    let cache =
        buildit_share::cache::LookupCache::open(&store.layout().state_dir(), CacheTtl::default());
    RepoSubstituter::new(Substituter::new(
        repos,
        trust,
        Some(cache),
        SubstituteOptions::default(),
    ))
}

/// Every path a `push=True` build shares: the closures of the targets' outputs, and every
/// valid output of every derivation in their `.drv` closures (the packages built on the way
/// and the fixed-output downloads: the shareable sources).
pub fn shareable_paths(
    store: &Store,
    drvs: &[StorePath],
    outputs: &[StorePath],
) -> Result<Vec<StorePath>> {
    let mut out: BTreeSet<StorePath> = outputs.iter().cloned().collect();
    let drv_closure = store.closure(drvs)?;
    for d in drv_closure.iter().filter(|p| p.is_derivation()) {
        for p in store.outputs_of(d)?.into_values() {
            if store.is_valid(&p)? {
                out.insert(p);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The spec files a push shares: every regular file under `dir` (relative keys), skipping
/// result links and dot-files; names a repository cannot hold are refused.
pub fn spec_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        let rd = std::fs::read_dir(dir).map_err(|e| {
            DriverError::request(
                "buildit::share::spec-unreadable",
                format!("cannot read {}: {e}", dir.display()),
                "the spec directory must be readable",
            )
        })?;
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with("result") {
                continue;
            }
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = match e.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            if ft.is_dir() {
                walk(&e.path(), &key, out)?;
            } else if ft.is_file() {
                transport::check_key(&key).map_err(share_error)?;
                out.push((key, e.path()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

/// What a build with repositories reports: transcript lines, build events, uploads.
#[derive(Debug)]
pub enum SharedEvent {
    /// A line of the seed's transcript (`Can't find HASH in any known location...`).
    Note(String),
    /// A build event of a realisation phase.
    Build(buildit_builder::BuildEvent),
    /// A realisation phase starts (the front end starts its progress display) or ends.
    Phase { start: bool },
    /// Progress of an upload to the named repository.
    Upload { repo: String, event: UploadEvent },
    /// An upload to the named repository finished.
    Uploaded { repo: String, report: UploadReport },
}

/// The output paths of a target (all outputs, or those it selects).
fn target_outputs(store: &Store, t: &buildit_builder::Target) -> Result<Vec<StorePath>> {
    let d = buildit_builder::schedule::load_derivation(store, &t.drv)?;
    Ok(d.outputs
        .iter()
        .filter(|(name, _)| t.outputs.as_ref().is_none_or(|w| w.contains(*name)))
        .filter_map(|(_, o)| o.path.clone())
        .collect())
}

/// The key of the record a push writes for spec `s` (`containers/ID/HASH.json`, HASH the hash
/// part of its first output), when it has an output.
pub fn container_record_key(store: &Store, s: &crate::build::SpecBuild) -> Result<Option<String>> {
    let mut outputs = Vec::new();
    for t in &s.targets {
        outputs.extend(target_outputs(store, t)?);
    }
    Ok(outputs
        .first()
        .map(|o| format!("containers/{}/{}.json", s.id, o.hash_part())))
}

/// The image file types a push shares under `containers/ID/`.
fn image_word(kind: buildit_yaml::spec::ImageType) -> &'static str {
    use buildit_yaml::spec::ImageType;
    match kind {
        ImageType::Aci => "ACI",
        ImageType::Oci => "OCI image",
        ImageType::OciArchive => "OCI archive",
        ImageType::DockerArchive => "Docker archive",
    }
}

/// How [`build_shared`] realises.
pub struct SharedBuild<'a> {
    pub schedule: buildit_builder::ScheduleOptions,
    pub builtins: buildit_builder::Builtins,
    pub out_link: Option<&'a str>,
}

/// Realise a build plan with the repositories of `sharing`, as the seed's transcript tells
/// it: each spec target is looked up first (`Can't find HASH in any known location...`);
/// what is not found is built (`Defaulting to local build... [OK]`), looking up its inputs
/// on the way; with `push=True` the packages (every output of the build graph: packages
/// built and source downloads) are uploaded (`Uploading packages to 'NAME' [OK]`) before the
/// image is packed (`Packaging TITLE as ACI... [OK]`), then the spec's files and image
/// (`Uploading container spec and image(s) to 'NAME' [OK]`). Returns the targets' outputs.
pub fn build_shared(
    store: &Store,
    sharing: &Sharing,
    plan: &crate::build::BuildPlan,
    b: SharedBuild<'_>,
    on: &mut dyn FnMut(SharedEvent),
) -> Result<Vec<StorePath>> {
    let subst = sharing.substituter(store)?;
    let sref: Option<&dyn buildit_builder::Substituter> = subst
        .as_ref()
        .map(|s| s as &dyn buildit_builder::Substituter);
    let pushing = sharing.push_targets().next().is_some();
    let realise = |targets: &[buildit_builder::Target],
                   out_link: Option<&str>,
                   on: &mut dyn FnMut(SharedEvent)|
     -> Result<Vec<StorePath>> {
        on(SharedEvent::Phase { start: true });
        let r = crate::build::realise_with(
            store,
            targets,
            b.schedule.clone(),
            b.builtins.clone(),
            sref,
            out_link,
            &mut |e| on(SharedEvent::Build(e)),
        );
        on(SharedEvent::Phase { start: false });
        r
    };
    // Which spec targets must be built here: announced before anything is built.
    let mut to_build_specs: Vec<&crate::build::SpecBuild> = Vec::new();
    for spec in &plan.specs {
        let mut missing = Vec::new();
        for t in &spec.targets {
            for p in target_outputs(store, t)? {
                if !store.is_valid(&p)? {
                    missing.push(p);
                }
            }
        }
        if missing.is_empty() {
            continue;
        }
        let found = match sref {
            Some(s) if sharing.mode() != SubstituteMode::Off => {
                let a = s.query(store, &missing)?;
                missing.iter().all(|p| a.found.contains(p))
            }
            _ => false,
        };
        for t in &spec.targets {
            let h = t.drv.hash_part();
            on(SharedEvent::Note(if found {
                format!("Found {h} in a known location, downloading...")
            } else {
                format!("Can't find {h} in any known location...")
            }));
        }
        if !found {
            to_build_specs.push(spec);
        }
    }
    // Specs built here with an image and a push: packages first, then the image.
    let phased: Vec<&crate::build::SpecBuild> = to_build_specs
        .iter()
        .copied()
        .filter(|s| pushing && s.image.is_some())
        .collect();
    if !phased.is_empty() {
        let mut inputs = Vec::new();
        for s in &phased {
            for t in &s.targets {
                let d = buildit_builder::schedule::load_derivation(store, &t.drv)?;
                for (drv, outs) in &d.input_drvs {
                    inputs.push(buildit_builder::Target {
                        drv: drv.clone(),
                        outputs: Some(outs.clone()),
                    });
                }
            }
        }
        realise(&inputs, None, on)?;
        on(SharedEvent::Note(
            "Defaulting to local build... [OK]".into(),
        ));
        let drvs: Vec<StorePath> = inputs.iter().map(|t| t.drv.clone()).collect();
        push_packages(store, sharing, &drvs, &[], on)?;
        for s in &phased {
            if let Some(kind) = s.image {
                on(SharedEvent::Note(format!(
                    "Packaging {} as {}...",
                    s.title,
                    image_word(kind)
                )));
            }
        }
    }
    let outputs = realise(&plan.targets, b.out_link, on)?;
    for s in &phased {
        if let Some(kind) = s.image {
            on(SharedEvent::Note(format!(
                "Packaging {} as {}... [OK]",
                s.title,
                image_word(kind)
            )));
        }
    }
    if phased.is_empty() && !to_build_specs.is_empty() {
        on(SharedEvent::Note(
            "Defaulting to local build... [OK]".into(),
        ));
    }
    if pushing {
        let drvs: Vec<StorePath> = plan.targets.iter().map(|t| t.drv.clone()).collect();
        if phased.is_empty() {
            push_packages(store, sharing, &drvs, &outputs, on)?;
        }
        for s in &plan.specs {
            push_spec(store, sharing, s, on)?;
        }
    }
    Ok(outputs)
}

fn push_packages(
    store: &Store,
    sharing: &Sharing,
    drvs: &[StorePath],
    outputs: &[StorePath],
    on: &mut dyn FnMut(SharedEvent),
) -> Result<()> {
    let paths = shareable_paths(store, drvs, outputs)?;
    for name in upload_all(store, sharing, &paths, on)? {
        on(SharedEvent::Note(format!(
            "Uploading packages to '{name}' [OK]"
        )));
    }
    Ok(())
}

/// Upload `paths` (with their closures) to every push target; the names of the targets.
fn upload_all(
    store: &Store,
    sharing: &Sharing,
    paths: &[StorePath],
    on: &mut dyn FnMut(SharedEvent),
) -> Result<Vec<String>> {
    let reports = sharing.push_paths(store, paths, &mut |repo, event| {
        on(SharedEvent::Upload {
            repo: repo.to_string(),
            event,
        })
    })?;
    let mut names = Vec::new();
    for (name, report) in reports {
        on(SharedEvent::Uploaded {
            repo: name.clone(),
            report,
        });
        names.push(name);
    }
    Ok(names)
}

/// The record of a pushed container: `containers/ID/HASH.json`, where HASH is the hash part of
/// its (first) image path: which spec, derivations and outputs it is.
#[derive(serde::Serialize)]
struct ContainerRecord<'a> {
    title: &'a str,
    id: &'a str,
    image_type: Option<&'static str>,
    /// The spec directory's files as a store path (in the repository with the packages).
    spec: String,
    derivations: Vec<String>,
    outputs: Vec<String>,
    /// The image's own files, beside the record (an `.aci`, an OCI layout's index), for
    /// consumers without buildit.
    files: Vec<String>,
}

fn push_spec(
    store: &Store,
    sharing: &Sharing,
    s: &crate::build::SpecBuild,
    on: &mut dyn FnMut(SharedEvent),
) -> Result<()> {
    let mut outputs = Vec::new();
    for t in &s.targets {
        outputs.extend(target_outputs(store, t)?);
    }
    let drvs: Vec<StorePath> = s.targets.iter().map(|t| t.drv.clone()).collect();
    // the spec's files enter the store (content-addressed), so an unchanged spec costs one
    // existence check like every package
    let staging = tempfile::tempdir_in(store.layout().tmp_dir()).map_err(|e| {
        DriverError::request(
            "buildit::share::failed",
            format!("cannot make a temporary directory: {e}"),
            "check the store's tmp directory",
        )
    })?;
    let copy_dir = staging.path().join("spec");
    for (k, f) in spec_files(&s.dir)? {
        let dest = copy_dir.join(&k);
        let made = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::copy(&f, &dest).map(drop));
        made.map_err(|e| {
            DriverError::request(
                "buildit::share::failed",
                format!("cannot copy {}: {e}", f.display()),
                "check the spec directory",
            )
        })?;
    }
    let spec_path = store.add_path(&copy_dir, Some(&format!("{}-spec", s.id)))?;
    let mut paths = shareable_paths(store, &drvs, &outputs)?;
    paths.push(spec_path.clone());
    upload_all(store, sharing, &paths, on)?;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for o in &outputs {
        let dir = store.layout().physical(o);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| transport::check_key(n).is_ok())
            .collect();
        names.sort();
        for n in names {
            files.push((n.clone(), dir.join(&n)));
        }
    }
    let record = ContainerRecord {
        title: &s.title,
        id: &s.id,
        image_type: s.image.map(image_word),
        spec: spec_path.to_string(),
        derivations: drvs.iter().map(ToString::to_string).collect(),
        outputs: outputs.iter().map(ToString::to_string).collect(),
        files: files.iter().map(|(k, _)| k.clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| {
        DriverError::request("buildit::share::failed", e.to_string(), "report this")
    })?;
    let key = outputs.first().map_or_else(
        || spec_path.hash_part().to_string(),
        |o| o.hash_part().to_string(),
    );
    sharing.push_container(&s.id, &key, &json, &files)?;
    for t in sharing.push_targets() {
        on(SharedEvent::Note(format!(
            "Uploading container spec and image(s) to '{}' [OK]",
            t.name
        )));
    }
    Ok(())
}
