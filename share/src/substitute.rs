//! Substitution: making store paths valid by fetching them from repositories instead of
//! building them.
//!
//! [`Substituter::query`] asks every repository for every path's record at once (a bounded
//! pool of threads, [`SubstituteOptions::jobs`] requests in flight), after consulting the
//! [`LookupCache`]. Each record is parsed for the path it was fetched for and trust-checked
//! ([`Trust::check`]: input-addressed paths need a valid signature by a trusted, non-revoked
//! key; content-addressed ones are recomputed from their content). A refused record counts as
//! "not there" in that repository, its reason kept for the message when no repository has the
//! path. Among the repositories that have a path, the lowest priority number wins (then the
//! order given).
//!
//! [`Substituter::fetch`] takes the closure through the records' references (paths valid in
//! the local store end the walk), downloads every archive in parallel into a
//! [`buildit_store::StagingDir`] with its size bounded by the record, checks the compressed
//! bytes' blake3 against the record, decompresses (bounded to the record's size; trailing
//! data refused) through the store's safe unpacker (`archive::unpack_store_object`: no `..`
//! names, nothing written through a symlink), and checks content hash, size and content
//! address ([`Store::check_object`]). Then everything is registered in one transaction
//! ([`Store::register_objects`]) or nothing is: any refusal is an error naming the path and
//! the repository, and the staging directory is removed. The one soft failure is an archive
//! the repository no longer has: that path and everything whose closure needs it are left
//! out (the caller builds them), the rest is registered.
//!
//! Records found are remembered for the life of the [`Substituter`], so a query followed by a
//! fetch of the same paths asks each repository once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};

use buildit_store::archive::unpack_store_object;
use buildit_store::{ImportOptions, PathInfo, Store, StorePath};

use crate::cache::{Cached, LookupCache};
use crate::keys::Trust;
use crate::record::{record_key, PathRecord, RECORD_LIMIT};
use crate::{ShareError, Transport};

/// One repository substitutes are taken from.
pub struct Repo {
    /// The name the user gave it (messages).
    pub name: String,
    /// How to reach it.
    pub transport: Box<dyn Transport>,
    /// Lower is preferred when several repositories have a path.
    pub priority: u32,
}

/// How substitution runs.
#[derive(Clone, Debug)]
pub struct SubstituteOptions {
    /// Requests (lookups, downloads) in flight at once.
    pub jobs: usize,
    /// The largest archive, compressed or not, accepted whatever its record says.
    pub max_object_size: u64,
}

impl Default for SubstituteOptions {
    fn default() -> SubstituteOptions {
        SubstituteOptions {
            jobs: 16,
            max_object_size: 64 << 30,
        }
    }
}

/// A trusted record of a path and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub record: PathRecord,
    /// The repository's name.
    pub repo: String,
    /// The repository's priority.
    pub priority: u32,
    /// Index of the repository in the substituter's list.
    index: usize,
}

/// The answer to a query: the paths found, and for the others what each repository said
/// (empty when every repository simply did not have it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    pub found: BTreeMap<StorePath, Found>,
    pub missing: BTreeMap<StorePath, Vec<String>>,
}

impl Lookup {
    /// The missing paths and their reasons as one line for an error message.
    pub fn missing_detail(&self) -> String {
        describe_missing(&self.missing)
    }
}

fn describe_missing(missing: &BTreeMap<StorePath, Vec<String>>) -> String {
    missing
        .iter()
        .map(|(p, why)| {
            if why.is_empty() {
                p.to_string()
            } else {
                format!("{p} ({})", why.join("; "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Progress of a fetch, for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubstituteEvent {
    /// `path` will come from `repo`.
    Found { path: StorePath, repo: String },
    /// No repository offers `path`; `reasons` as in [`Lookup::missing`].
    NotFound {
        path: StorePath,
        reasons: Vec<String>,
    },
    /// The download of `path`'s archive (`bytes` compressed) started.
    DownloadStarted {
        path: StorePath,
        repo: String,
        bytes: u64,
    },
    /// `path`'s archive arrived and checked out; it is registered with the rest at the end.
    DownloadFinished {
        path: StorePath,
        repo: String,
        bytes: u64,
    },
}

/// What one repository answered for one path.
#[derive(Clone, Debug)]
enum Answer {
    Found(Box<Found>),
    Missing(Vec<String>),
}

/// A repository's answer to a record request.
type RecordAnswer = Result<Option<Vec<u8>>, ShareError>;

/// Fetches store paths from repositories (see the module documentation).
pub struct Substituter {
    repos: Vec<Repo>,
    trust: Trust,
    cache: Mutex<LookupCache>,
    opts: SubstituteOptions,
    /// Answers of this substituter's earlier queries.
    known: Mutex<HashMap<StorePath, Answer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Run `f` over `items` on up to `jobs` threads; results in the order of `items`. Events the
/// workers send go to `on_event` on the calling thread while they run.
fn parallel<T, R, E>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T, &mpsc::Sender<E>) -> R + Sync,
    on_event: &mut dyn FnMut(E),
) -> Vec<R>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    let (tx, rx) = mpsc::channel::<E>();
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            let tx = tx.clone();
            let (next, results, f) = (&next, &results, &f);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item, &tx);
                lock(results)[i] = Some(r);
            });
        }
        drop(tx);
        for e in rx {
            on_event(e);
        }
    });
    let results = match results.into_inner() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    };
    results.into_iter().flatten().collect()
}

impl Substituter {
    /// A substituter over `repos` (tried in parallel; the lowest priority wins), believing
    /// what `trust` says, with an optional lookup cache.
    pub fn new(
        repos: Vec<Repo>,
        trust: Trust,
        cache: Option<LookupCache>,
        opts: SubstituteOptions,
    ) -> Substituter {
        Substituter {
            repos,
            trust,
            cache: Mutex::new(cache.unwrap_or_else(LookupCache::disabled)),
            opts,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The repositories, in the order given.
    pub fn repos(&self) -> &[Repo] {
        &self.repos
    }

    /// Judge a record's bytes fetched from repository `index` for `path`.
    fn judge(&self, index: usize, path: &StorePath, bytes: &[u8]) -> Result<Found, ShareError> {
        let record = PathRecord::parse_for(path, bytes)?;
        self.trust.check(&record)?;
        let repo = &self.repos[index];
        Ok(Found {
            record,
            repo: repo.name.clone(),
            priority: repo.priority,
            index,
        })
    }

    /// Look up the records of `paths` in every repository at once (see the module
    /// documentation). Repository failures (unreachable, refused records) make a path
    /// missing there, never an error of the query.
    pub fn query(&self, paths: &[StorePath]) -> Result<Lookup, ShareError> {
        let wanted: BTreeSet<StorePath> = paths.iter().cloned().collect();
        let todo: Vec<StorePath> = {
            let known = lock(&self.known);
            wanted
                .iter()
                .filter(|p| !known.contains_key(*p))
                .cloned()
                .collect()
        };
        if !todo.is_empty() {
            let answers = self.ask(&todo);
            lock(&self.known).extend(answers);
        }
        let known = lock(&self.known);
        let mut out = Lookup::default();
        for p in wanted {
            match known.get(&p) {
                Some(Answer::Found(f)) => {
                    out.found.insert(p, (**f).clone());
                }
                Some(Answer::Missing(why)) => {
                    out.missing.insert(p, why.clone());
                }
                None => {
                    out.missing.insert(p, Vec::new());
                }
            }
        }
        Ok(out)
    }

    /// Ask the cache, then the repositories, for `paths`.
    fn ask(&self, paths: &[StorePath]) -> Vec<(StorePath, Answer)> {
        // (path, repository) → what is known so far
        let mut per: Vec<(usize, usize, Option<Cached>)> = Vec::new();
        {
            let cache = lock(&self.cache);
            for (pi, p) in paths.iter().enumerate() {
                for (ri, r) in self.repos.iter().enumerate() {
                    per.push((pi, ri, cache.get(&r.transport.describe(), p)));
                }
            }
        }
        let network: Vec<(usize, usize)> = per
            .iter()
            .filter(|(_, _, c)| c.is_none())
            .map(|(pi, ri, _)| (*pi, *ri))
            .collect();
        let fetched = parallel(
            &network,
            self.opts.jobs,
            |&(pi, ri), _: &mpsc::Sender<()>| {
                let key = record_key(&paths[pi]);
                self.repos[ri].transport.get(&key, RECORD_LIMIT)
            },
            &mut |_| {},
        );
        let mut from_net: HashMap<(usize, usize), RecordAnswer> =
            network.into_iter().zip(fetched).collect();
        let mut best: Vec<Option<Found>> = vec![None; paths.len()];
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); paths.len()];
        let cache = lock(&self.cache);
        for (pi, ri, cached) in per {
            let p = &paths[pi];
            let repo = &self.repos[ri];
            let loc = repo.transport.describe();
            let (bytes, fresh) = match cached {
                Some(Cached::Present(b)) => (Some(b), false),
                Some(Cached::Absent) => (None, false),
                None => match from_net.remove(&(pi, ri)) {
                    Some(Ok(Some(b))) => (Some(b), true),
                    Some(Ok(None)) => {
                        cache.put(&loc, p, &Cached::Absent);
                        (None, true)
                    }
                    Some(Err(e)) => {
                        reasons[pi].push(format!("{}: {e}", repo.name));
                        continue;
                    }
                    None => (None, true),
                },
            };
            let Some(bytes) = bytes else { continue };
            match self.judge(ri, p, &bytes) {
                Ok(f) => {
                    if fresh {
                        cache.put(&loc, p, &Cached::Present(bytes));
                    }
                    let better = match &best[pi] {
                        None => true,
                        Some(b) => (f.priority, f.index) < (b.priority, b.index),
                    };
                    if better {
                        best[pi] = Some(f);
                    }
                }
                Err(e) => {
                    if !fresh {
                        cache.forget(&loc, p);
                    }
                    reasons[pi].push(format!("{}: {e}", repo.name));
                }
            }
        }
        paths
            .iter()
            .cloned()
            .zip(best.into_iter().zip(reasons))
            .map(|(p, (b, why))| match b {
                Some(f) => (p, Answer::Found(Box::new(f))),
                None => (p, Answer::Missing(why)),
            })
            .collect()
    }

    /// [`Substituter::query`] of `paths` and, level by level, of the references of what is
    /// found that `store` does not have: a path counts as found only when its whole closure
    /// is valid in `store` or found.
    pub fn query_closure(&self, store: &Store, paths: &[StorePath]) -> Result<Lookup, ShareError> {
        let mut all = Lookup::default();
        let mut frontier: Vec<StorePath> = paths.to_vec();
        let mut seen: BTreeSet<StorePath> = paths.iter().cloned().collect();
        while !frontier.is_empty() {
            let l = self.query(&frontier)?;
            frontier = Vec::new();
            for f in l.found.values() {
                for r in &f.record.references {
                    if !seen.contains(r) && !store.is_valid(r)? {
                        seen.insert(r.clone());
                        frontier.push(r.clone());
                    }
                }
            }
            all.found.extend(l.found);
            all.missing.extend(l.missing);
        }
        // A found path with a reference neither valid nor (still) found is not available;
        // repeat until nothing changes.
        loop {
            let mut gone: Vec<(StorePath, String)> = Vec::new();
            for (p, f) in &all.found {
                for r in &f.record.references {
                    if r != p && !all.found.contains_key(r) && !store.is_valid(r)? {
                        gone.push((p.clone(), format!("its reference {r} is in no repository")));
                        break;
                    }
                }
            }
            if gone.is_empty() {
                break;
            }
            for (p, why) in gone {
                all.found.remove(&p);
                all.missing.entry(p).or_default().push(why);
            }
        }
        let asked: BTreeSet<&StorePath> = paths.iter().collect();
        all.found.retain(|p, _| asked.contains(p));
        all.missing.retain(|p, _| asked.contains(p));
        Ok(all)
    }

    /// Make `paths` and their closures valid in `store` from the repositories (see the
    /// module documentation). Returns the paths registered, references first. A path no
    /// repository offers is [`ShareError::NotFound`]; any refusal of what arrived is
    /// [`ShareError::Substitute`] naming the path and the repository; either way nothing is
    /// registered.
    pub fn fetch(
        &self,
        store: &Store,
        paths: &[StorePath],
        on_event: &mut dyn FnMut(SubstituteEvent),
    ) -> Result<Vec<StorePath>, ShareError> {
        let mut asked: Vec<StorePath> = Vec::new();
        for p in paths {
            if !store.is_valid(p)? && !asked.contains(p) {
                asked.push(p.clone());
            }
        }
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        let lookup = self.query_closure(store, &asked)?;
        for (p, why) in &lookup.missing {
            on_event(SubstituteEvent::NotFound {
                path: p.clone(),
                reasons: why.clone(),
            });
        }
        if !lookup.missing.is_empty() {
            return Err(ShareError::NotFound {
                paths: lookup.missing.keys().cloned().collect(),
                detail: lookup.missing_detail(),
            });
        }
        // the closure, references first
        let order = self.closure_order(store, &asked)?;
        for (p, f) in &order {
            on_event(SubstituteEvent::Found {
                path: p.clone(),
                repo: f.repo.clone(),
            });
        }
        let staging = store.staging_dir("substitute")?;
        let work = staging.path();
        let results = parallel(
            &order,
            self.opts.jobs,
            |(_, f), tx| self.download(f, work, tx),
            on_event,
        );
        // the first refusal in closure order fails everything
        let mut staged: Vec<(PathBuf, PathInfo)> = Vec::new();
        let mut absent: BTreeSet<StorePath> = BTreeSet::new();
        for ((p, f), r) in order.iter().zip(results) {
            match r {
                Ok(Some(s)) => staged.push(s),
                Ok(None) => {
                    absent.insert(p.clone());
                }
                Err(e) => {
                    return Err(ShareError::Substitute {
                        path: p.clone(),
                        repo: f.repo.clone(),
                        source: Box::new(e),
                    })
                }
            }
        }
        // leave out what needs an archive the repository no longer has
        if !absent.is_empty() {
            let mut out = absent;
            loop {
                let before = out.len();
                for (_, info) in &staged {
                    if info.references.iter().any(|r| out.contains(r)) {
                        out.insert(info.path.clone());
                    }
                }
                if out.len() == before {
                    break;
                }
            }
            staged.retain(|(_, i)| !out.contains(&i.path));
            if staged.is_empty() {
                return Ok(Vec::new());
            }
        }
        let registered = store.register_objects(staged)?;
        drop(staging);
        Ok(registered)
    }

    /// The closure of `paths` among found records, paths valid in `store` left out,
    /// references before referrers.
    fn closure_order(
        &self,
        store: &Store,
        paths: &[StorePath],
    ) -> Result<Vec<(StorePath, Found)>, ShareError> {
        let known = lock(&self.known);
        let mut order: Vec<(StorePath, Found)> = Vec::new();
        let mut done: BTreeSet<StorePath> = BTreeSet::new();
        // iterative post-order walk
        let mut stack: Vec<(StorePath, bool)> =
            paths.iter().rev().map(|p| (p.clone(), false)).collect();
        while let Some((p, expanded)) = stack.pop() {
            if done.contains(&p) {
                continue;
            }
            let Some(Answer::Found(f)) = known.get(&p) else {
                return Err(ShareError::NotFound {
                    paths: vec![p.clone()],
                    detail: p.to_string(),
                });
            };
            if expanded {
                done.insert(p.clone());
                order.push((p, (**f).clone()));
                continue;
            }
            stack.push((p.clone(), true));
            for r in f.record.references.iter().rev() {
                if *r != p && !done.contains(r) && !store.is_valid(r)? {
                    stack.push((r.clone(), false));
                }
            }
        }
        Ok(order)
    }

    /// Download, check and unpack one path's archive into `work`; `Ok(None)` when the
    /// repository does not have the archive.
    fn download(
        &self,
        f: &Found,
        work: &Path,
        tx: &mpsc::Sender<SubstituteEvent>,
    ) -> Result<Option<(PathBuf, PathInfo)>, ShareError> {
        let rec = &f.record;
        let transport = &self.repos[f.index].transport;
        let repo = transport.describe();
        let bad = |reason: String| ShareError::BadArchive {
            key: rec.archive.clone(),
            reason,
        };
        for (what, n) in [("compressed", rec.archive_size), ("unpacked", rec.size)] {
            if n > self.opts.max_object_size {
                return Err(ShareError::TooLarge {
                    repo: repo.clone(),
                    key: format!("{} ({what})", rec.archive),
                    limit: self.opts.max_object_size,
                });
            }
        }
        let _ = tx.send(SubstituteEvent::DownloadStarted {
            path: rec.path.clone(),
            repo: f.repo.clone(),
            bytes: rec.archive_size,
        });
        let base = rec.path.hash_part().to_string();
        let zpath = work.join(format!("{base}.tar.zst"));
        if !transport.get_to_file(&rec.archive, &zpath, rec.archive_size)? {
            return Ok(None);
        }
        let got = std::fs::metadata(&zpath)
            .map_err(|e| ShareError::io(zpath.display(), e))?
            .len();
        if got != rec.archive_size {
            return Err(bad(format!(
                "{got} bytes arrived, the record says {} (truncated)",
                rec.archive_size
            )));
        }
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(
                std::fs::File::open(&zpath).map_err(|e| ShareError::io(zpath.display(), e))?,
            )
            .map_err(|e| ShareError::io(zpath.display(), e))?;
        let digest = hasher.finalize().to_hex().to_string();
        if digest != rec.archive_hash {
            return Err(bad(format!(
                "its blake3 is {digest}, the record says {}",
                rec.archive_hash
            )));
        }
        let file = std::fs::File::open(&zpath).map_err(|e| ShareError::io(zpath.display(), e))?;
        let decoder =
            zstd::stream::read::Decoder::new(file).map_err(|e| bad(format!("not zstd: {e}")))?;
        let dest = work.join(&base);
        let mut take = decoder.take(rec.size);
        let stats = unpack_store_object(&mut take, &dest)?;
        if stats.bytes != rec.size {
            return Err(bad(format!(
                "it unpacks to {} bytes, the record says {}",
                stats.bytes, rec.size
            )));
        }
        let mut rest = take.into_inner();
        let mut one = [0u8; 1];
        match rest.read(&mut one) {
            Ok(0) => {}
            Ok(_) => return Err(bad("there is data after the archive's end".into())),
            Err(e) => return Err(bad(format!("decompressing: {e}"))),
        }
        drop(rest);
        let _ = std::fs::remove_file(&zpath);
        let info = PathInfo {
            path: rec.path.clone(),
            content_hash: rec.content_hash,
            size: rec.size,
            references: rec.references.clone(),
            deriver: rec.deriver.clone(),
            registration_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            signatures: rec.signatures.clone(),
        };
        // The record passed the trust check: a signed input-addressed path is believed, a
        // content-addressed one is checked against its content here.
        Store::check_object(
            &info,
            rec.ca.as_deref(),
            &dest,
            ImportOptions {
                trust_input_addressed: true,
            },
        )?;
        let _ = tx.send(SubstituteEvent::DownloadFinished {
            path: rec.path.clone(),
            repo: f.repo.clone(),
            bytes: rec.archive_size,
        });
        Ok(Some((dest, info)))
    }
}
