//! The scheduler's substitution hook backed by binary repositories: [`RepoSubstituter`]
//! implements `buildit_builder::Substituter` with `buildit_share`'s substituter, so the
//! builder knows nothing of records, keys or transports and `share` nothing of derivations.
//!
//! A lookup asks for the whole closure of each missing output (a path counts as available
//! only when every path it refers to is valid here or offered too); a fetch's events become
//! [`BuildEvent::Fetching`]; a share error becomes [`BuildError::Substitute`] carrying its
//! full message (which names the path and the repository), so the command fails with it.

use buildit_builder::{Availability, BuildError, BuildEvent};
use buildit_share::cache::{CacheTtl, LookupCache};
use buildit_share::substitute::{Repo, SubstituteEvent, SubstituteOptions, Substituter};
use buildit_share::transport::{self, Location, TransportOptions};
use buildit_share::{ShareError, Trust};
use buildit_store::{Store, StorePath};

/// One repository to substitute from, as configuration names it.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// The name shown in messages.
    pub name: String,
    pub location: Location,
    /// Lower is preferred when several repositories have a path.
    pub priority: u32,
}

/// `buildit_builder::Substituter` over `buildit_share`'s substituter.
pub struct RepoSubstituter {
    inner: Substituter,
}

impl RepoSubstituter {
    /// Wrap a substituter.
    pub fn new(inner: Substituter) -> RepoSubstituter {
        RepoSubstituter { inner }
    }

    /// Open every repository of `repos` (no request is made yet) with the lookup cache of
    /// `store` (`ttl`: how long answers are kept; `None` for no cache).
    pub fn open(
        store: &Store,
        repos: &[RepoSpec],
        trust: Trust,
        transport_opts: &TransportOptions,
        ttl: Option<CacheTtl>,
        opts: SubstituteOptions,
    ) -> Result<RepoSubstituter, ShareError> {
        let mut opened = Vec::new();
        for r in repos {
            opened.push(Repo {
                name: r.name.clone(),
                transport: transport::open(&r.location, transport_opts)?,
                priority: r.priority,
            });
        }
        let cache = ttl.map(|t| LookupCache::open(&store.layout().state_dir(), t));
        Ok(RepoSubstituter::new(Substituter::new(
            opened, trust, cache, opts,
        )))
    }

    /// The share substituter (for `buildit copy --from`).
    pub fn inner(&self) -> &Substituter {
        &self.inner
    }
}

/// The builder's error for a share error: its whole message.
pub fn build_error(e: ShareError) -> BuildError {
    BuildError::Substitute {
        message: e.to_string(),
    }
}

impl buildit_builder::Substituter for RepoSubstituter {
    fn query(&self, store: &Store, paths: &[StorePath]) -> Result<Availability, BuildError> {
        let l = self
            .inner
            .query_closure(store, paths)
            .map_err(build_error)?;
        Ok(Availability {
            found: l.found.into_keys().collect(),
            missing: l.missing,
        })
    }

    fn fetch(
        &self,
        store: &Store,
        paths: &[StorePath],
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<Vec<StorePath>, BuildError> {
        let mut events = |e: SubstituteEvent| {
            if let SubstituteEvent::DownloadStarted { path, repo, bytes } = e {
                on_event(BuildEvent::Fetching { path, repo, bytes });
            }
        };
        self.inner
            .fetch(store, paths, &mut events)
            .map_err(build_error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use buildit_builder::{ScheduleOptions, Scheduler, Target};
    use buildit_share::keys::SecretKey;
    use buildit_share::transport::file::FileTransport;
    use buildit_share::upload::{upload, UploadOptions};
    use buildit_store::derivation::{
        DerivationError, DerivationOutput, ModuloHasher, SandboxProfile, DRV_VERSION,
    };
    use buildit_store::{Derivation, StoreLayout};

    use super::*;

    /// A derivation whose builder nothing provides (building it fails), written into both
    /// stores; returns its path and output path.
    fn drv(
        stores: [&Store; 2],
        h: &mut ModuloHasher,
        name: &str,
        deps: &[&StorePath],
    ) -> (StorePath, StorePath) {
        let mut d = Derivation {
            version: DRV_VERSION.into(),
            name: name.into(),
            system: "x86_64-linux".into(),
            builder: "builtin:not-here".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            outputs: BTreeMap::from([(
                "out".to_string(),
                DerivationOutput {
                    path: None,
                    fixed: None,
                },
            )]),
            input_drvs: deps
                .iter()
                .map(|p| ((*p).clone(), BTreeSet::from(["out".to_string()])))
                .collect(),
            input_srcs: BTreeSet::new(),
            sandbox: SandboxProfile::default(),
        };
        let hash = h
            .hash(&d, &mut |p| Err(DerivationError::UnknownInput(p.clone())))
            .expect("hash");
        d.fill_output_paths(&hash).expect("outputs");
        let mut p = None;
        for s in stores {
            p = Some(
                s.add_bytes(&format!("{name}.drv"), &d.encode(), &d.references())
                    .expect("drv"),
            );
        }
        let p = p.expect("written");
        h.insert(p.clone(), hash);
        (p, d.outputs["out"].path.clone().expect("out"))
    }

    fn output(store: &Store, drv: &StorePath, out: &StorePath, refs: &[&StorePath]) {
        let staged = store.new_tmp_path("out");
        let text: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        std::fs::write(&staged, text.join("\n")).expect("write");
        let cands: Vec<StorePath> = refs.iter().map(|r| (*r).clone()).collect();
        store
            .register_output(&staged, out, &cands, Some(drv))
            .expect("register");
    }

    #[test]
    fn a_graph_from_a_signed_repository_builds_nothing() {
        let t = tempfile::tempdir().expect("tmp");
        let a = Store::open(StoreLayout::at(t.path().join("a"))).expect("open");
        let b = Store::open(StoreLayout::at(t.path().join("b"))).expect("open");
        let mut h = ModuloHasher::new();
        let dep = drv([&a, &b], &mut h, "dep", &[]);
        let top = drv([&a, &b], &mut h, "top", &[&dep.0]);
        output(&a, &dep.0, &dep.1, &[]);
        output(&a, &top.0, &top.1, &[&dep.1]);
        let key = SecretKey::generate("a-1").expect("key");
        let repo = t.path().join("repo");
        upload(
            &a,
            &FileTransport::new(&repo),
            std::slice::from_ref(&top.1),
            Some(&key),
            &UploadOptions::default(),
            &mut |_| {},
        )
        .expect("upload");
        let trust = Trust {
            trusted: vec![key.public()],
            revoked: Vec::new(),
        };
        let spec = RepoSpec {
            name: "team".into(),
            location: Location::parse(&format!("file://{}", repo.display())).expect("location"),
            priority: 10,
        };
        let sub = RepoSubstituter::open(
            &b,
            &[spec],
            trust,
            &TransportOptions::default(),
            Some(CacheTtl::default()),
            SubstituteOptions::default(),
        )
        .expect("open");
        let mut events = Vec::new();
        Scheduler::new(&b, ScheduleOptions::default())
            .with_substituter(&sub)
            .realise(&[Target::all(top.0.clone())], &mut |e| events.push(e))
            .expect("realised");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, BuildEvent::Started { .. })),
            "{events:?}"
        );
        assert!(events.iter().any(
            |e| matches!(e, BuildEvent::Fetching { path, repo, .. } if *path == top.1 && repo == "team")
        ));
        assert!(b.verify(true, false).expect("verify").ok());
        assert!(b.is_valid(&dep.1).expect("v") && b.is_valid(&top.1).expect("v"));

        // with the key no longer trusted, a fresh store finds nothing and substitute-only
        // says why
        let c = Store::open(StoreLayout::at(t.path().join("c"))).expect("open");
        let mut h = ModuloHasher::new();
        let dep = drv([&c, &c], &mut h, "dep", &[]);
        let top = drv([&c, &c], &mut h, "top", &[&dep.0]);
        let spec = RepoSpec {
            name: "team".into(),
            location: Location::File(repo.clone()),
            priority: 10,
        };
        let sub = RepoSubstituter::open(
            &c,
            &[spec],
            Trust::default(),
            &TransportOptions::default(),
            None,
            SubstituteOptions::default(),
        )
        .expect("open");
        let e = Scheduler::new(
            &c,
            ScheduleOptions {
                substitute_only: true,
                ..ScheduleOptions::default()
            },
        )
        .with_substituter(&sub)
        .realise(&[Target::all(top.0.clone())], &mut |_| {})
        .expect_err("untrusted");
        match e {
            BuildError::NotSubstituted { paths, detail } => {
                assert!(paths.contains(&top.1), "{paths:?}");
                assert!(detail.contains("untrusted"), "{detail}");
            }
            other => panic!("expected NotSubstituted, got {other:?}"),
        }
        assert!(!c.is_valid(&top.1).expect("v"));
    }
}
