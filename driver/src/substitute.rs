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
