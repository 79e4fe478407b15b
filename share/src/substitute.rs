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
//! order given). A repository that times out or fails to answer is asked nothing more by this
//! substituter (its remaining paths count as not there, with that reason), so a dead server
//! costs one timeout per lookup round, not one per path.
//!
//! [`Substituter::fetch`] takes the closure through the records' references (paths valid in
//! the local store end the walk), downloads every archive in parallel into a
//! [`buildit_store::StagingDir`] with its size bounded by the record, checks the compressed
//! bytes' blake3 against the record, decompresses (bounded to the record's size; trailing
//! data refused) through the store's safe unpacker (`archive::unpack_canonical_object`: no
//! `..` names, nothing written through a symlink, only the canonical writer's metadata, which
//! it writes as it unpacks, so no normalising walk follows), and checks content hash, size and content
//! address ([`Store::check_unpacked`]: the decompressed bytes are hashed on their way to the
//! unpacker, so a canonical archive is not read back and hashed a second time). Then everything is registered in one transaction
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};

use buildit_store::archive::unpack_canonical_object;
use buildit_store::{ContentHash, ImportOptions, PathInfo, Store, StorePath};

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
    /// The most paths one closure walk looks up (a repository inventing ever new references
    /// cannot keep the walk going); what lies beyond counts as not found.
    pub max_closure: usize,
}

impl Default for SubstituteOptions {
    fn default() -> SubstituteOptions {
        SubstituteOptions {
            jobs: 16,
            max_object_size: 64 << 30,
            max_closure: 200_000,
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

/// A reader that hashes (blake3) what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Counts and hashes the compressed bytes of an archive as the decoder reads them.
struct CountingHasher<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for CountingHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
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
    /// Per repository: it timed out or failed to answer, so it is asked nothing more.
    down: Vec<AtomicBool>,
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
            down: repos.iter().map(|_| AtomicBool::new(false)).collect(),
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
                    let cached = if r.transport.is_local() {
                        None
                    } else {
                        cache.get(&r.transport.describe(), p)
                    };
                    per.push((pi, ri, cached));
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
                let repo = &self.repos[ri];
                if self.down[ri].load(Ordering::SeqCst) {
                    return Err(ShareError::Transport {
                        repo: repo.transport.describe(),
                        message: "not asked: it failed to answer earlier".into(),
                    });
                }
                let r = repo.transport.get(&record_key(&paths[pi]), RECORD_LIMIT);
                if let Err(
                    ShareError::Timeout { .. }
                    | ShareError::Transport { .. }
                    | ShareError::Io { .. },
                ) = &r
                {
                    self.down[ri].store(true, Ordering::SeqCst);
                }
                r
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
            // answers of local repositories are neither read from nor written to the cache
            let cacheable = !repo.transport.is_local();
            let (bytes, fresh) = match cached {
                Some(Cached::Present(b)) => (Some(b), false),
                Some(Cached::Absent) => (None, false),
                None => match from_net.remove(&(pi, ri)) {
                    Some(Ok(Some(b))) => (Some(b), true),
                    Some(Ok(None)) => {
                        if cacheable {
                            cache.put(&loc, p, &Cached::Absent);
                        }
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
                    if fresh && cacheable {
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
                    if seen.contains(r) || store.is_valid(r)? {
                        continue;
                    }
                    seen.insert(r.clone());
                    if seen.len() > self.opts.max_closure {
                        all.missing.insert(
                            r.clone(),
                            vec![format!(
                                "the closure has more than {} paths",
                                self.opts.max_closure
                            )],
                        );
                    } else {
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
        // After the first refusal no further download starts (those are `None`).
        let refused = AtomicBool::new(false);
        let results = parallel(
            &order,
            self.opts.jobs,
            |(_, f), tx| {
                if refused.load(Ordering::SeqCst) {
                    return None;
                }
                let r = self.download(f, work, tx);
                if r.is_err() {
                    refused.store(true, Ordering::SeqCst);
                }
                Some(r)
            },
            on_event,
        );
        // a refusal fails everything (the first in closure order among the downloads that ran)
        let mut staged: Vec<(PathBuf, PathInfo)> = Vec::new();
        let mut absent: BTreeSet<StorePath> = BTreeSet::new();
        let mut first_error = None;
        for ((p, f), r) in order.iter().zip(results) {
            match r {
                None => {}
                Some(Ok(Some(s))) => staged.push(s),
                Some(Ok(None)) => {
                    // its record is stale: do not offer it again
                    let loc = self.repos[f.index].transport.describe();
                    lock(&self.cache).forget(&loc, p);
                    lock(&self.known).remove(p);
                    absent.insert(p.clone());
                }
                Some(Err(e)) => {
                    first_error.get_or_insert((p, f, e));
                }
            }
        }
        if let Some((p, f, e)) = first_error {
            return Err(ShareError::Substitute {
                path: p.clone(),
                repo: f.repo.clone(),
                source: Box::new(e),
            });
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
        // The archive streams from the repository through the compressed-bytes hash, zstd
        // and the unpacker in one pass; transports that cannot stream spool it to `zpath`.
        let zpath = work.join(format!("{base}.tar.zst"));
        let Some(raw) = transport.open_read(&rec.archive, rec.archive_size, &zpath)? else {
            return Ok(None);
        };
        let mut compressed = CountingHasher {
            inner: raw,
            hasher: blake3::Hasher::new(),
            count: 0,
        };
        let decoder = zstd::stream::read::Decoder::with_buffer(std::io::BufReader::with_capacity(
            1 << 18,
            &mut compressed,
        ))
        .map_err(|e| bad(format!("not zstd: {e}")))?
        .single_frame();
        let dest = work.join(&base);
        let mut take = HashingReader {
            inner: decoder.take(rec.size),
            hasher: blake3::Hasher::new(),
        };
        let stats = match unpack_canonical_object(&mut take, &dest) {
            Ok(s) => s,
            Err(e) => {
                // Name what is wrong with the bytes when that is the reason: the rest of
                // the stream is read to count and hash it.
                drop(take);
                let _ = std::io::copy(&mut compressed, &mut std::io::sink());
                if compressed.count != rec.archive_size {
                    return Err(bad(format!(
                        "{} bytes arrived, the record says {} (truncated or padded)",
                        compressed.count, rec.archive_size
                    )));
                }
                let digest = compressed.hasher.finalize().to_hex().to_string();
                if digest != rec.archive_hash {
                    return Err(bad(format!(
                        "its blake3 is {digest}, the record says {}",
                        rec.archive_hash
                    )));
                }
                return Err(e.into());
            }
        };
        let streamed = ContentHash(*take.hasher.finalize().as_bytes());
        let take = take.inner;
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
        // whatever the decoder's buffer holds past the frame, then the rest of the stream,
        // counts as compressed bytes: the total and their hash must be the record's
        let mut tail = rest.finish();
        std::io::copy(&mut tail, &mut std::io::sink())
            .map_err(|e| bad(format!("reading the archive: {e}")))?;
        drop(tail);
        let got = compressed.count;
        if got != rec.archive_size {
            return Err(bad(format!(
                "{got} bytes arrived, the record says {} (truncated or padded)",
                rec.archive_size
            )));
        }
        let digest = compressed.hasher.finalize().to_hex().to_string();
        if digest != rec.archive_hash {
            return Err(bad(format!(
                "its blake3 is {digest}, the record says {}",
                rec.archive_hash
            )));
        }
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
        Store::check_unpacked(
            &info,
            rec.ca.as_deref(),
            &dest,
            ImportOptions {
                trust_input_addressed: true,
            },
            streamed,
            &stats,
        )?;
        let _ = tx.send(SubstituteEvent::DownloadFinished {
            path: rec.path.clone(),
            repo: f.repo.clone(),
            bytes: rec.archive_size,
        });
        Ok(Some((dest, info)))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use buildit_store::archive::write_archive;
    use buildit_store::StoreLayout;

    use super::*;
    use crate::cache::CacheTtl;
    use crate::keys::SecretKey;
    use crate::record::archive_key;
    use crate::transport::file::FileTransport;
    use crate::transport::http::HttpTransport;
    use crate::transport::TransportOptions;
    use crate::upload::{upload, UploadOptions};

    /// The real file transport, counting every request that reads, optionally slowed down.
    struct Counting {
        inner: FileTransport,
        reads: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl Counting {
        fn read(&self) {
            self.reads.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
        }
    }

    impl Transport for Counting {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError> {
            self.read();
            self.inner.get(key, limit)
        }
        fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError> {
            self.read();
            self.inner.get_to_file(key, dest, limit)
        }
        fn exists(&self, key: &str) -> Result<bool, ShareError> {
            self.read();
            self.inner.exists(key)
        }
        fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError> {
            self.inner.put_file(key, src)
        }
        fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError> {
            self.inner.put_bytes(key, data)
        }
    }

    /// Store A with a closure (a source tree `dep`, an input-addressed `out` referring to it
    /// through a file and an absolute symlink), uploaded and signed to a `file://` repository.
    struct World {
        t: tempfile::TempDir,
        a: Store,
        dep: StorePath,
        out: StorePath,
        key: SecretKey,
        repo: PathBuf,
    }

    fn world() -> World {
        let t = tempfile::tempdir().expect("tmp");
        let a = Store::open(StoreLayout::at(t.path().join("a"))).expect("open");
        let src = t.path().join("src");
        fs::create_dir_all(src.join("bin")).expect("mkdir");
        fs::write(src.join("bin/tool"), "#!/bin/sh\necho hi\n").expect("w");
        std::os::unix::fs::symlink("bin/tool", src.join("link")).expect("ln");
        let dep = a.add_path(&src, Some("dep")).expect("add");
        let out = StorePath::for_output(&[7; 32], "out", "thing").expect("path");
        let staged = a.new_tmp_path("out");
        fs::create_dir(&staged).expect("mkdir");
        fs::write(staged.join("uses"), format!("uses {dep}/bin/tool\n")).expect("w");
        std::os::unix::fs::symlink(format!("{dep}/bin/tool"), staged.join("tool")).expect("ln");
        a.register_output(&staged, &out, std::slice::from_ref(&dep), None)
            .expect("register");
        let key = SecretKey::generate("test-1").expect("key");
        let repo = t.path().join("repo");
        upload(
            &a,
            &FileTransport::new(&repo),
            std::slice::from_ref(&out),
            Some(&key),
            &UploadOptions::default(),
            &mut |_| {},
        )
        .expect("upload");
        World {
            t,
            a,
            dep,
            out,
            key,
            repo,
        }
    }

    static STORES: AtomicUsize = AtomicUsize::new(0);

    impl World {
        fn trust(&self) -> Trust {
            Trust {
                trusted: vec![self.key.public()],
                revoked: Vec::new(),
            }
        }
        fn fresh_store(&self) -> Store {
            let n = STORES.fetch_add(1, Ordering::SeqCst);
            Store::open(StoreLayout::at(self.t.path().join(format!("b{n}")))).expect("open")
        }
        fn counting(&self, delay: Duration) -> (Box<dyn Transport>, Arc<AtomicUsize>) {
            let reads = Arc::new(AtomicUsize::new(0));
            let t = Counting {
                inner: FileTransport::new(&self.repo),
                reads: reads.clone(),
                delay,
            };
            (Box::new(t), reads)
        }
        fn substituter(
            &self,
            trust: Trust,
            cache: Option<LookupCache>,
        ) -> (Substituter, Arc<AtomicUsize>) {
            let (transport, reads) = self.counting(Duration::ZERO);
            let repo = Repo {
                name: "test-repo".into(),
                transport,
                priority: 40,
            };
            (
                Substituter::new(vec![repo], trust, cache, SubstituteOptions::default()),
                reads,
            )
        }
        fn record_file(&self, p: &StorePath) -> PathBuf {
            self.repo.join(record_key(p))
        }
        fn record(&self, p: &StorePath) -> PathRecord {
            PathRecord::parse(&fs::read(self.record_file(p)).expect("read")).expect("record")
        }
        fn write_record(&self, r: &PathRecord) {
            fs::write(self.record_file(&r.path), r.to_json()).expect("write");
        }
        fn archive_file(&self, p: &StorePath) -> PathBuf {
            self.repo.join(self.record(p).archive)
        }
        /// Put `tar` (compressed) in the repository as `out`'s archive, with a record that
        /// describes those bytes, signed by the trusted key.
        fn serve_as_out(&self, tar: &[u8], size: u64) {
            let z = zstd::encode_all(tar, 3).expect("zstd");
            let hex = blake3::hash(&z).to_hex().to_string();
            fs::write(self.repo.join(archive_key(&hex)), &z).expect("write");
            let mut r = self.record(&self.out);
            r.archive = archive_key(&hex);
            r.archive_hash = hex;
            r.archive_size = z.len() as u64;
            r.size = size;
            self.key.sign_record(&mut r);
            self.write_record(&r);
        }
        /// Substitute `out` into a fresh store and expect a refusal whose message contains
        /// `needle`; nothing may be registered or left staged.
        fn refused(&self, trust: Trust, needle: &str) -> ShareError {
            let b = self.fresh_store();
            let (sub, _) = self.substituter(trust, None);
            let e = sub
                .fetch(&b, std::slice::from_ref(&self.out), &mut |_| {})
                .expect_err("must be refused");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{needle:?} not in: {msg}");
            assert!(!b.is_valid(&self.out).expect("v") && !b.is_valid(&self.dep).expect("v"));
            assert_eq!(
                fs::read_dir(b.layout().tmp_dir()).expect("ls").count(),
                0,
                "staging left behind"
            );
            e
        }
    }

    #[test]
    fn a_closure_is_substituted_and_verifies() {
        let w = world();
        let b = w.fresh_store();
        let (sub, _) = w.substituter(w.trust(), None);
        let mut events = Vec::new();
        let got = sub
            .fetch(&b, std::slice::from_ref(&w.out), &mut |e| events.push(e))
            .expect("fetch");
        assert_eq!(got, vec![w.dep.clone(), w.out.clone()]);
        let rep = b.verify(true, false).expect("verify");
        assert!(rep.ok() && rep.checked == 2, "{rep:?}");
        let (ia, ib) = (
            w.a.path_info(&w.out).expect("i").expect("v"),
            b.path_info(&w.out).expect("i").expect("v"),
        );
        assert_eq!(
            (ia.content_hash, ia.size, &ia.references),
            (ib.content_hash, ib.size, &ib.references)
        );
        assert_eq!(
            fs::read_link(b.layout().physical(&w.out).join("tool")).expect("link"),
            PathBuf::from(format!("{}/bin/tool", w.dep))
        );
        for p in [&w.dep, &w.out] {
            assert!(events.contains(&SubstituteEvent::Found {
                path: p.clone(),
                repo: "test-repo".into()
            }));
            assert!(events.iter().any(|e| matches!(e,
                SubstituteEvent::DownloadFinished { path, bytes, .. } if path == p && *bytes > 0)));
        }
        // again: nothing to do
        assert_eq!(
            sub.fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
                .expect("again"),
            Vec::<StorePath>::new()
        );
    }

    #[test]
    fn a_flipped_byte_in_an_archive_is_refused() {
        let w = world();
        let f = w.archive_file(&w.out);
        let mut z = fs::read(&f).expect("read");
        let mid = z.len() / 2;
        z[mid] ^= 0x01;
        fs::write(&f, z).expect("write");
        let e = w.refused(w.trust(), "blake3");
        assert!(
            matches!(&e, ShareError::Substitute { path, repo, .. } if *path == w.out && repo == "test-repo"),
            "{e:?}"
        );
    }

    #[test]
    fn a_truncated_archive_is_refused() {
        let w = world();
        let f = w.archive_file(&w.dep);
        let z = fs::read(&f).expect("read");
        fs::write(&f, &z[..z.len() / 2]).expect("write");
        w.refused(w.trust(), "truncated");
    }

    #[test]
    fn an_edited_record_is_refused() {
        let w = world();
        let mut r = w.record(&w.out);
        r.size += 1;
        w.write_record(&r);
        let e = w.refused(w.trust(), "altered after signing");
        assert!(matches!(e, ShareError::NotFound { .. }), "{e:?}");
        // a reference dropped from the record: the same
        let w = world();
        let mut r = w.record(&w.out);
        r.references.clear();
        w.write_record(&r);
        w.refused(w.trust(), "altered after signing");
    }

    #[test]
    fn untrusted_revoked_and_missing_signatures_are_refused() {
        let w = world();
        let other = SecretKey::generate("other").expect("key");
        let mut r = w.record(&w.out);
        r.signatures.clear();
        other.sign_record(&mut r);
        w.write_record(&r);
        w.refused(w.trust(), "untrusted keys (other)");

        let w = world();
        let revoked = Trust {
            trusted: vec![w.key.public()],
            revoked: vec![w.key.public()],
        };
        w.refused(revoked, "revoked key 'test-1'");

        let w = world();
        let mut r = w.record(&w.out);
        r.signatures.clear();
        w.write_record(&r);
        w.refused(w.trust(), "is not signed");
        // nobody trusted at all
        let w = world();
        w.refused(Trust::default(), "untrusted");
    }

    #[test]
    fn an_archive_with_other_content_is_refused_after_unpacking() {
        // the archive's own fields (key, digest, compressed size) are not signed: a swapped
        // archive of the same size passes the download checks and fails the content hash
        let w = world();
        let mut tar = Vec::new();
        write_archive(&w.a.layout().physical(&w.out), "", &mut tar).expect("archive");
        let pos = tar
            .windows(9)
            .position(|x| x == b"uses /bld")
            .expect("content");
        tar[pos] = b'U';
        let z = zstd::encode_all(&tar[..], 3).expect("zstd");
        let hex = blake3::hash(&z).to_hex().to_string();
        fs::write(w.repo.join(archive_key(&hex)), &z).expect("write");
        let mut r = w.record(&w.out);
        r.archive = archive_key(&hex);
        r.archive_hash = hex;
        r.archive_size = z.len() as u64;
        w.write_record(&r);
        w.refused(w.trust(), "content hash mismatch");
    }

    type Entry<'a> = (&'a str, tar::EntryType, &'a [u8], Option<&'a str>);

    fn raw_tar(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_mtime(1);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn hostile_archives_are_refused_and_write_nothing_outside() {
        use tar::EntryType::{Directory as D, Regular as F, Symlink as S};
        let probe = tempfile::tempdir().expect("tmp");
        let outside = probe.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        let abs = outside.to_str().expect("utf-8").to_string();
        let cases: Vec<Vec<Entry<'_>>> = vec![
            vec![("./", D, b"", None), ("../x", F, b"pwned", None)],
            vec![
                ("./", D, b"", None),
                ("l", S, b"", Some(&abs)),
                ("l/x", F, b"pwned", None),
            ],
            vec![
                ("./", D, b"", None),
                ("l", S, b"", Some("../../../../../../../..")),
                ("l/x", F, b"pwned", None),
            ],
        ];
        for c in cases {
            let w = world();
            let tar = raw_tar(&c);
            w.serve_as_out(&tar, tar.len() as u64);
            let e = w.refused(w.trust(), "unsafe");
            assert!(
                matches!(&e, ShareError::Substitute { path, source, .. }
                    if *path == w.out && matches!(**source, ShareError::Archive(_))),
                "{e:?}"
            );
            assert_eq!(fs::read_dir(&outside).expect("ls").count(), 0);
            assert!(!w.t.path().join("x").exists());
        }
    }

    #[test]
    fn data_after_the_archive_and_a_wrong_size_are_refused() {
        let w = world();
        let mut tar = Vec::new();
        write_archive(&w.a.layout().physical(&w.out), "", &mut tar).expect("archive");
        let size = tar.len() as u64;
        tar.extend_from_slice(&[0u8; 4096]);
        w.serve_as_out(&tar, size);
        // the record's size is the signed one, so the signature by the trusted key holds
        w.refused(w.trust(), "data after the archive");
    }

    /// A loopback HTTP server over the repository directory that answers records and never
    /// answers for archives (it hangs).
    fn hanging_server(root: PathBuf, hang_all: bool) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let root = root.clone();
                std::thread::spawn(move || {
                    let mut rd = BufReader::new(conn.try_clone().expect("clone"));
                    let mut line = String::new();
                    let _ = rd.read_line(&mut line);
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    loop {
                        let mut h = String::new();
                        if rd.read_line(&mut h).map(|n| n <= 2).unwrap_or(true) {
                            break;
                        }
                    }
                    if hang_all || path.starts_with("/archives/") {
                        std::thread::sleep(Duration::from_secs(20));
                        return;
                    }
                    let resp = match fs::read(root.join(path.trim_start_matches('/'))) {
                        Ok(body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend(body);
                            r
                        }
                        Err(_) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&resp);
                });
            }
        });
        port
    }

    #[test]
    fn a_repository_that_hangs_is_a_timeout_and_registers_nothing() {
        let w = world();
        let port = hanging_server(w.repo.clone(), false);
        let opts = TransportOptions {
            timeout: Duration::from_secs(1),
            ..TransportOptions::default()
        };
        let http =
            HttpTransport::new(&format!("http://127.0.0.1:{port}"), &opts).expect("transport");
        let sub = Substituter::new(
            vec![Repo {
                name: "hangs".into(),
                transport: Box::new(http),
                priority: 1,
            }],
            w.trust(),
            None,
            SubstituteOptions::default(),
        );
        let b = w.fresh_store();
        let start = Instant::now();
        let e = sub
            .fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
            .expect_err("timeout");
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(&e, ShareError::Substitute { repo, source, .. }
                if repo == "hangs" && matches!(**source, ShareError::Timeout { .. })),
            "{e:?}"
        );
        assert!(!b.is_valid(&w.out).expect("v") && !b.is_valid(&w.dep).expect("v"));
        assert_eq!(fs::read_dir(b.layout().tmp_dir()).expect("ls").count(), 0);
    }

    #[test]
    fn a_repository_that_hangs_costs_one_timeout_per_lookup() {
        let w = world();
        let port = hanging_server(w.repo.clone(), true);
        let opts = TransportOptions {
            timeout: Duration::from_secs(1),
            ..TransportOptions::default()
        };
        let http =
            HttpTransport::new(&format!("http://127.0.0.1:{port}"), &opts).expect("transport");
        let sub = Substituter::new(
            vec![
                Repo {
                    name: "hangs".into(),
                    transport: Box::new(http),
                    priority: 1,
                },
                Repo {
                    name: "good".into(),
                    transport: Box::new(FileTransport::new(&w.repo)),
                    priority: 50,
                },
            ],
            w.trust(),
            None,
            SubstituteOptions::default(),
        );
        let mut paths: Vec<StorePath> = (0..47u8)
            .map(|i| StorePath::for_output(&[i; 32], "out", "absent").expect("p"))
            .collect();
        paths.push(w.out.clone());
        let start = Instant::now();
        let l = sub.query(&paths).expect("query");
        // 48 lookups, 16 at a time: three rounds of timeouts if each waited for its own
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(l.found[&w.out].repo, "good");
        assert!(l
            .missing
            .values()
            .all(|why| why.len() == 1 && why[0].starts_with("hangs: ")));
    }

    #[test]
    fn lookups_run_in_parallel() {
        let w = world();
        let (transport, reads) = w.counting(Duration::from_millis(200));
        let sub = Substituter::new(
            vec![Repo {
                name: "slow".into(),
                transport,
                priority: 1,
            }],
            w.trust(),
            None,
            SubstituteOptions::default(),
        );
        let paths: Vec<StorePath> = (0..12u8)
            .map(|i| StorePath::for_output(&[i; 32], "out", "absent").expect("p"))
            .collect();
        let start = Instant::now();
        let l = sub.query(&paths).expect("query");
        // one after the other would take 12 × 200 ms
        assert!(
            start.elapsed() < Duration::from_millis(1200),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(reads.load(Ordering::SeqCst), 12);
        assert_eq!(l.missing.len(), 12);
        assert!(l.found.is_empty());
    }

    #[test]
    fn the_preferred_repository_wins_and_a_refused_record_falls_through() {
        let w = world();
        // a second repository whose record of `out` is signed by an unknown key
        let bad_dir = w.t.path().join("bad");
        upload(
            &w.a,
            &FileTransport::new(&bad_dir),
            std::slice::from_ref(&w.out),
            Some(&SecretKey::generate("stranger").expect("key")),
            &UploadOptions::default(),
            &mut |_| {},
        )
        .expect("upload");
        let repo = |name: &str, dir: &Path, priority: u32| Repo {
            name: name.into(),
            transport: Box::new(FileTransport::new(dir)),
            priority,
        };
        let sub = Substituter::new(
            vec![
                repo("good-late", &w.repo, 60),
                repo("bad-first", &bad_dir, 1),
                repo("good-early", &w.repo, 20),
            ],
            w.trust(),
            None,
            SubstituteOptions::default(),
        );
        let l = sub.query(std::slice::from_ref(&w.out)).expect("query");
        assert_eq!(l.found[&w.out].repo, "good-early");
        // the content-addressed dependency needs no signature: the preferred one has it
        let l = sub.query(std::slice::from_ref(&w.dep)).expect("query");
        assert_eq!(l.found[&w.dep].repo, "bad-first");
        let b = w.fresh_store();
        sub.fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
            .expect("fetch");
        assert!(b.verify(true, false).expect("verify").ok());
    }

    #[test]
    fn the_lookup_cache_answers_repeated_queries_and_negative_answers_expire() {
        let w = world();
        let b = w.fresh_store();
        let state = b.layout().state_dir();
        let absent = StorePath::for_output(&[9; 32], "out", "absent").expect("p");
        let all = vec![w.out.clone(), w.dep.clone(), absent.clone()];
        let cache = || Some(LookupCache::open(&state, CacheTtl::default()));
        let (s1, r1) = w.substituter(w.trust(), cache());
        let l1 = s1.query(&all).expect("query");
        assert_eq!(r1.load(Ordering::SeqCst), 3);
        assert_eq!(l1.found.len(), 2);
        // another command (a new substituter over the same cache): the repository is not asked
        let (s2, r2) = w.substituter(w.trust(), cache());
        assert_eq!(s2.query(&all).expect("query"), l1);
        assert_eq!(r2.load(Ordering::SeqCst), 0);
        // fetching reads only the archives
        s2.fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
            .expect("fetch");
        assert_eq!(r2.load(Ordering::SeqCst), 2);
        // a cached record is trust-checked on use: nobody trusted, nothing found
        let (s3, r3) = w.substituter(Trust::default(), cache());
        let l3 = s3.query(std::slice::from_ref(&w.out)).expect("query");
        assert!(l3.found.is_empty() && l3.missing[&w.out][0].contains("untrusted"));
        assert_eq!(r3.load(Ordering::SeqCst), 0);

        // negative answers expire
        let short = || {
            Some(LookupCache::open(
                &state,
                CacheTtl {
                    positive: Duration::from_secs(3600),
                    negative: Duration::from_millis(300),
                },
            ))
        };
        let gone = StorePath::for_output(&[10; 32], "out", "gone").expect("p");
        let (s4, r4) = w.substituter(w.trust(), short());
        s4.query(std::slice::from_ref(&gone)).expect("query");
        let (s5, r5) = w.substituter(w.trust(), short());
        s5.query(std::slice::from_ref(&gone)).expect("query");
        assert_eq!(
            (r4.load(Ordering::SeqCst), r5.load(Ordering::SeqCst)),
            (1, 0)
        );
        std::thread::sleep(Duration::from_millis(400));
        let (s6, r6) = w.substituter(w.trust(), short());
        s6.query(std::slice::from_ref(&gone)).expect("query");
        assert_eq!(r6.load(Ordering::SeqCst), 1);
    }

    /// A local (`file://`) repository is read directly: its answers are not cached, and a
    /// command that only reads local repositories never makes the cache file.
    #[test]
    fn local_repositories_bypass_the_lookup_cache() {
        let w = world();
        let b = w.fresh_store();
        let state = b.layout().state_dir();
        let repo = Repo {
            name: "local".into(),
            transport: Box::new(FileTransport::new(&w.repo)),
            priority: 40,
        };
        let cache = Some(LookupCache::open(&state, CacheTtl::default()));
        let sub = Substituter::new(vec![repo], w.trust(), cache, SubstituteOptions::default());
        let absent = StorePath::for_output(&[9; 32], "out", "absent").expect("p");
        let l = sub.query(&[w.out.clone(), absent.clone()]).expect("query");
        assert!(l.found.contains_key(&w.out) && l.missing.contains_key(&absent));
        sub.fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
            .expect("fetch");
        assert!(b.is_valid(&w.out).expect("valid"));
        assert!(!state.join(crate::cache::CACHE_FILE).exists());
    }

    #[test]
    fn a_missing_reference_makes_a_path_unavailable() {
        let w = world();
        fs::remove_file(w.record_file(&w.dep)).expect("rm");
        let b = w.fresh_store();
        let (sub, _) = w.substituter(w.trust(), None);
        let l = sub
            .query_closure(&b, std::slice::from_ref(&w.out))
            .expect("query");
        assert!(l.found.is_empty());
        assert!(
            l.missing[&w.out]
                .iter()
                .any(|r| r.contains("in no repository")),
            "{l:?}"
        );
        // with the reference valid locally, the path is available
        let mut stream = Vec::new();
        w.a.export(std::slice::from_ref(&w.dep), &mut stream)
            .expect("export");
        b.import(&stream[..], ImportOptions::default())
            .expect("import");
        let (sub, _) = w.substituter(w.trust(), None);
        let l = sub
            .query_closure(&b, std::slice::from_ref(&w.out))
            .expect("query");
        assert!(l.found.contains_key(&w.out), "{l:?}");
        assert_eq!(
            sub.fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
                .expect("fetch"),
            vec![w.out.clone()]
        );
    }

    #[test]
    fn a_closure_walk_is_bounded() {
        let w = world();
        let b = w.fresh_store();
        let (transport, _) = w.counting(Duration::ZERO);
        let sub = Substituter::new(
            vec![Repo {
                name: "r".into(),
                transport,
                priority: 1,
            }],
            w.trust(),
            None,
            SubstituteOptions {
                max_closure: 1,
                ..SubstituteOptions::default()
            },
        );
        let l = sub
            .query_closure(&b, std::slice::from_ref(&w.out))
            .expect("query");
        assert!(l.found.is_empty());
        assert!(
            l.missing[&w.out]
                .iter()
                .any(|r| r.contains("in no repository")),
            "{l:?}"
        );
    }

    #[test]
    fn an_archive_gone_from_the_repository_leaves_its_referrers_out() {
        let w = world();
        fs::remove_file(w.archive_file(&w.dep)).expect("rm");
        let b = w.fresh_store();
        let cache = || {
            Some(LookupCache::open(
                &b.layout().state_dir(),
                CacheTtl::default(),
            ))
        };
        let (sub, _) = w.substituter(w.trust(), cache());
        let got = sub
            .fetch(&b, std::slice::from_ref(&w.out), &mut |_| {})
            .expect("soft");
        assert!(got.is_empty());
        // the stale record is not believed from the cache again
        let (sub, reads) = w.substituter(w.trust(), cache());
        sub.query(&[w.out.clone(), w.dep.clone()]).expect("query");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(!b.is_valid(&w.out).expect("v") && !b.is_valid(&w.dep).expect("v"));
        assert_eq!(fs::read_dir(b.layout().tmp_dir()).expect("ls").count(), 0);
    }
}
