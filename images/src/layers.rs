//! Store layers: one per store path of the closure, each the store's canonical archive with
//! the prefix `bld/store/<hash>-<name>` after the two parent entries `bld/` and `bld/store/`
//! (directories, mode 0555 like every store directory, owner 0:0, mtime 1).
//!
//! The layer budget: an image has at most `budget` layers (default 32, hard cap 100), one of
//! them the top layer. When the closure has more paths than `budget - 1`, the paths are ranked
//! by (popularity descending, size descending, base name ascending), where popularity is how
//! many other paths of the closure depend on the path (directly or not). The first
//! `budget - 2` get a layer each; the rest (the least shared and smallest) share one combined
//! layer, inside which paths are in base-name order. Layers are ordered by that rank (most
//! depended-upon first), the combined layer last. Nothing in the rule depends on the file
//! system's or the database's order, so the plan is the same on every machine.
//!
//! Store paths listed as *at root* ([`crate::ImageSpec::rooted`]: Debian runtime packages,
//! unpacked with merged /usr) are not put under `/bld/store` but laid out at `/`, where a
//! Debian system has them (`usr/lib/x86_64-linux-gnu/libc.so.6`, `lib64` → `usr/lib64`). They
//! count in the budget like any other path and are ranked by the same rule; their entries are
//! written from the store object with image-style modes (directories 0755, files 0644 or 0755),
//! before the store members of the same layer. Because their paths do not name the package,
//! each layer records where every at-root member's entries are ([`AtRoot`]), and the image's
//! config history carries it (see [`crate::contents`]).
//!
//! Compressed layers are cached under the store's state directory (`var/buildit/layers/`),
//! keyed by sha256 over a format version, the compression and level, and each member's base
//! name and content hash: a layer is compressed once and copied (with its digest checked)
//! into every image that uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use buildit_store::StorePath;

use crate::selinux::{FileKind, Labels};
use crate::tarw::{self, Entry, HashWriter, StripTrailer};
use crate::{ArchiveFn, Compression, ImageError, StoreView};

/// gzip level of every layer (fixed: changing it changes every digest).
pub const GZIP_LEVEL: u32 = 6;
/// zstd level of every zstd layer.
pub const ZSTD_LEVEL: i32 = 3;
/// The mode of the `bld/` and `bld/store/` entries of every layer.
pub const STORE_DIR_MODE: u32 = 0o555;

/// Bumped whenever the layer bytes for the same inputs would change.
const CACHE_VERSION: &str = "buildit-layer-v1";

/// A store path of the closure with what the budget needs.
#[derive(Clone, Debug)]
pub struct PathMeta {
    pub path: StorePath,
    pub physical: PathBuf,
    pub content_hash: String,
    pub size: u64,
    /// How many other closure members depend on this one (transitively).
    pub popularity: usize,
    /// Laid out at `/` rather than under `/bld/store` (a Debian runtime package).
    pub at_root: bool,
    /// SELinux labels for the member's files (its package's `selinux` option).
    pub labels: Option<std::sync::Arc<Labels>>,
}

/// Where the entries of an at-root member are in its layer's tar: entries `start ..
/// start + count` (counting every entry of the layer from 0).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AtRoot {
    pub path: StorePath,
    pub start: u64,
    pub count: u64,
}

/// The closure of `roots` and `rooted` with sizes, content hashes and popularity, sorted by
/// base name; the members of `rooted` are marked [`PathMeta::at_root`].
pub fn gather(
    view: &dyn StoreView,
    roots: &[StorePath],
    rooted: &[StorePath],
) -> Result<Vec<PathMeta>, ImageError> {
    let mut all: Vec<StorePath> = roots.to_vec();
    all.extend(rooted.iter().cloned());
    let closure: BTreeSet<StorePath> = view.closure(&all)?.into_iter().collect();
    let rooted: BTreeSet<&StorePath> = rooted.iter().collect();
    let mut refs: BTreeMap<&StorePath, Vec<StorePath>> = BTreeMap::new();
    for p in &closure {
        let mut r: Vec<StorePath> = view
            .references(p)?
            .into_iter()
            .filter(|q| q != p && closure.contains(q))
            .collect();
        r.sort();
        r.dedup();
        refs.insert(p, r);
    }
    // popularity: for every path, each member of its closure (itself excluded) gains one
    let mut popularity: BTreeMap<&StorePath, usize> = closure.iter().map(|p| (p, 0)).collect();
    for p in &closure {
        let mut seen: BTreeSet<&StorePath> = BTreeSet::new();
        let mut stack: Vec<&StorePath> =
            refs.get(p).map(|v| v.iter().collect()).unwrap_or_default();
        while let Some(q) = stack.pop() {
            if q == p || !seen.insert(q) {
                continue;
            }
            if let Some(rs) = refs.get(q) {
                stack.extend(rs.iter());
            }
        }
        for q in seen {
            if let Some(c) = popularity.get_mut(q) {
                *c += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(closure.len());
    for p in &closure {
        out.push(PathMeta {
            path: p.clone(),
            physical: view.physical(p),
            content_hash: view.content_hash(p)?,
            size: view.size(p)?,
            popularity: popularity.get(p).copied().unwrap_or(0),
            at_root: rooted.contains(p),
            labels: None,
        });
    }
    out.sort_by_key(|m| m.path.base_name());
    Ok(out)
}

/// Check a layer budget (None = default) and return it.
pub fn check_budget(budget: Option<usize>) -> Result<usize, ImageError> {
    let b = budget.unwrap_or(crate::DEFAULT_LAYER_BUDGET);
    if !(2..=crate::MAX_LAYER_BUDGET).contains(&b) {
        return Err(ImageError::Spec(format!(
            "layer budget {b} is out of range: an image has between 2 and {} layers (the top layer included)",
            crate::MAX_LAYER_BUDGET
        )));
    }
    Ok(b)
}

/// The layer plan: groups of indices into `metas`, in layer order; each group's members in
/// base-name order. See the module documentation for the rule.
pub fn plan(metas: &[PathMeta], budget: usize) -> Vec<Vec<usize>> {
    let mut ranked: Vec<usize> = (0..metas.len()).collect();
    ranked.sort_by(|&a, &b| {
        let (x, y) = (&metas[a], &metas[b]);
        y.popularity
            .cmp(&x.popularity)
            .then(y.size.cmp(&x.size))
            .then_with(|| x.path.base_name().cmp(&y.path.base_name()))
    });
    let slots = budget.saturating_sub(1).max(1);
    if ranked.len() <= slots {
        return ranked.into_iter().map(|i| vec![i]).collect();
    }
    let alone = slots - 1;
    let mut groups: Vec<Vec<usize>> = ranked[..alone].iter().map(|&i| vec![i]).collect();
    let mut rest: Vec<usize> = ranked[alone..].to_vec();
    rest.sort_by_key(|&i| metas[i].path.base_name());
    groups.push(rest);
    groups
}

/// A compressed layer, as cached.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CachedLayer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    pub uncompressed_size: u64,
    pub media_type: String,
}

/// A layer ready to go into an image.
#[derive(Clone, Debug)]
pub struct BuiltLayer {
    pub info: CachedLayer,
    /// The compressed blob (in the cache).
    pub blob: PathBuf,
    /// Store paths in the layer (empty for the top layer).
    pub members: Vec<StorePath>,
    /// Taken from the cache rather than compressed now.
    pub reused: bool,
    /// Where the at-root members' entries are (empty when there are none).
    pub at_root: Vec<AtRoot>,
}

pub fn media_type(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

fn level_of(c: Compression) -> String {
    match c {
        Compression::Gzip => format!("gzip-{GZIP_LEVEL}"),
        Compression::Zstd => format!("zstd-{ZSTD_LEVEL}"),
    }
}

/// The cache key of a store layer.
pub fn store_layer_key(members: &[&PathMeta], c: Compression) -> String {
    let mut s = format!("{CACHE_VERSION}\n{}\n", level_of(c));
    for m in members {
        if m.at_root {
            // a different layout of the same object is a different layer
            s.push_str("at-root:");
        }
        s.push_str(&m.path.base_name());
        s.push('\n');
        s.push_str(&m.content_hash);
        s.push('\n');
        if let Some(l) = &m.labels {
            // labelled entries are other bytes; an unlabelled member keeps its key
            s.push_str("selinux:");
            s.push_str(&l.digest);
            s.push('\n');
        }
    }
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()))
}

/// The parent entries every layer starts with.
pub fn store_parents() -> [Entry; 2] {
    [
        Entry::dir("bld", STORE_DIR_MODE),
        Entry::dir("bld/store", STORE_DIR_MODE),
    ]
}

/// The entries of an at-root member: everything below the object's root (the root itself is
/// `/`, which a layer does not describe), with image-style modes: directories 0755, files 0755
/// when executable and 0644 otherwise, owner 0:0.
pub fn at_root_entries(physical: &Path) -> io::Result<Vec<Entry>> {
    let modes = |is_dir: bool, host: u32| -> u32 {
        if is_dir || host & 0o111 != 0 {
            0o755
        } else {
            0o644
        }
    };
    // the object itself must be a directory, not a symlink to one (its entries would be
    // another directory's); `walk` keeps every symlink below it as a symlink
    let md = std::fs::symlink_metadata(physical)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", physical.display())))?;
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: a package laid out at / must be a directory (symlinks are not followed)",
                physical.display()
            ),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for de in std::fs::read_dir(physical)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", physical.display())))?
    {
        let n = de?.file_name();
        names.push(n.to_string_lossy().into_owned());
    }
    names.sort();
    let mut out = Vec::new();
    for n in names {
        tarw::walk(&physical.join(&n), &n, 0, 0, &modes, &mut out)?;
    }
    Ok(out)
}

/// A member of a layer being written.
pub struct LayerMember<'a> {
    pub physical: &'a Path,
    pub base: String,
    /// `Some(entries)` for an at-root member (from [`at_root_entries`]).
    pub at_root: Option<Vec<Entry>>,
    /// Labels for a store member's files: its archive is rewritten with a `security.selinux`
    /// PAX record before every labelled entry.
    pub labels: Option<&'a Labels>,
}

/// Where each at-root member's entries go in the layer: the two parent entries come first
/// when the layer has store members, then the at-root members in order, then the store members.
pub fn at_root_ranges(members: &[(StorePath, Option<u64>)]) -> Vec<AtRoot> {
    let has_store = members.iter().any(|(_, n)| n.is_none());
    let mut start: u64 = if has_store { 2 } else { 0 };
    let mut out = Vec::new();
    for (p, n) in members {
        if let Some(count) = n {
            out.push(AtRoot {
                path: p.clone(),
                start,
                count: *count,
            });
            start += count;
        }
    }
    out
}

/// Write the uncompressed tar of a store layer: the parents (when there are store members),
/// the at-root members' entries, then each store member's archive.
pub fn write_store_layer_tar(
    archive: ArchiveFn,
    members: &[LayerMember<'_>],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    if members.iter().any(|m| m.at_root.is_none()) {
        for e in store_parents() {
            tarw::append(&mut b, &e)?;
        }
    }
    for m in members {
        if let Some(entries) = &m.at_root {
            for e in entries {
                tarw::append(&mut b, e)?;
            }
        }
    }
    for m in members.iter().filter(|m| m.at_root.is_none()) {
        let prefix = format!("bld/store/{}", m.base);
        let failed =
            |e: String| io::Error::other(format!("archiving {}: {e}", m.physical.display()));
        match m.labels {
            None => {
                let mut s = StripTrailer::new(b.get_mut());
                archive(m.physical, &prefix, &mut s).map_err(failed)?;
                s.finish()?;
            }
            Some(labels) => {
                // the canonical archive, held in memory, then written entry by entry with
                // the labels (only a package with the `selinux` option takes this way)
                let mut buf = Vec::new();
                archive(m.physical, &prefix, &mut buf).map_err(failed)?;
                relabel(&mut b, &buf, &prefix, labels)?;
            }
        }
    }
    b.finish()
}

/// The selinux file kind of a tar entry.
pub fn file_kind(t: tar::EntryType) -> FileKind {
    match t {
        tar::EntryType::Directory => FileKind::Dir,
        tar::EntryType::Symlink => FileKind::Symlink,
        tar::EntryType::Char => FileKind::Char,
        tar::EntryType::Block => FileKind::Block,
        tar::EntryType::Fifo => FileKind::Fifo,
        _ => FileKind::Regular,
    }
}

/// Append every entry of the tar `archive` (a store object's, its entries below `prefix`) to
/// `b`, each with the `security.selinux` record its path under `labels.prefix` gets.
pub fn relabel<W: Write>(
    b: &mut tar::Builder<W>,
    archive: &[u8],
    prefix: &str,
    labels: &Labels,
) -> io::Result<()> {
    let mut ar = tar::Archive::new(archive);
    for e in ar.entries()? {
        let mut e = e?;
        let name = String::from_utf8(e.path_bytes().into_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{prefix}: an entry name that is not UTF-8"),
            )
        })?;
        let name = name.trim_end_matches('/').to_string();
        let rel = match name.strip_prefix(prefix) {
            Some("") => "",
            Some(r) if r.starts_with('/') => r,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an entry `{name}` outside `{prefix}` in its archive"),
                ))
            }
        };
        let mut h = e.header().clone();
        if let Some(label) = labels.label(rel, file_kind(h.entry_type())) {
            b.append_pax_extensions([(crate::selinux::PAX_KEY, label.as_bytes())])?;
        }
        match h.entry_type() {
            tar::EntryType::Directory => b.append_data(&mut h, format!("{name}/"), io::empty())?,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8(target).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{name}: a link target that is not UTF-8"),
                    )
                })?;
                b.append_link(&mut h, &name, target)?
            }
            _ => b.append_data(&mut h, &name, &mut e)?,
        }
    }
    Ok(())
}

/// Look `key` up in the cache.
pub fn cache_lookup(cache_dir: &Path, key: &str) -> Option<(CachedLayer, PathBuf)> {
    let json = std::fs::read(cache_dir.join(format!("{key}.json"))).ok()?;
    let info: CachedLayer = serde_json::from_slice(&json).ok()?;
    let blob = cache_dir.join(format!("{key}.blob"));
    let md = std::fs::metadata(&blob).ok()?;
    (md.len() == info.size).then_some((info, blob))
}

/// Compress what `write_tar` writes into the cache under `key`, recording both digests.
pub fn compress_into_cache(
    cache_dir: &Path,
    key: &str,
    c: Compression,
    write_tar: &dyn Fn(&mut dyn Write) -> io::Result<()>,
) -> Result<(CachedLayer, PathBuf), ImageError> {
    std::fs::create_dir_all(cache_dir).map_err(ImageError::io(format!(
        "creating the layer cache {}",
        cache_dir.display()
    )))?;
    let tmp = cache_dir.join(format!(
        "{key}.tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let ctx = format!("writing layer {}", tmp.display());
    let res = (|| -> io::Result<CachedLayer> {
        let f = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let compressed = HashWriter::new(f);
        let (compressed, diff, usize_) = match c {
            Compression::Gzip => {
                let enc = flate2::GzBuilder::new()
                    .operating_system(255)
                    .write(compressed, flate2::Compression::new(GZIP_LEVEL));
                let mut tarh = HashWriter::new(enc);
                write_tar(&mut tarh)?;
                let (enc, diff, n) = tarh.finish();
                (enc.finish()?, diff, n)
            }
            Compression::Zstd => {
                let enc = zstd::stream::write::Encoder::new(compressed, ZSTD_LEVEL)?;
                let mut tarh = HashWriter::new(enc);
                write_tar(&mut tarh)?;
                let (enc, diff, n) = tarh.finish();
                (enc.finish()?, diff, n)
            }
        };
        let (mut f, digest, size) = compressed.finish();
        f.flush()?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(CachedLayer {
            diff_id: format!("sha256:{diff}"),
            digest: format!("sha256:{digest}"),
            size,
            uncompressed_size: usize_,
            media_type: media_type(c).to_string(),
        })
    })();
    let info = match res {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(ImageError::Io {
                context: ctx,
                source: e,
            });
        }
    };
    let blob = cache_dir.join(format!("{key}.blob"));
    std::fs::rename(&tmp, &blob).map_err(ImageError::io(ctx.clone()))?;
    let json = serde_json::to_vec(&info).map_err(|e| ImageError::Io {
        context: ctx.clone(),
        source: io::Error::other(e),
    })?;
    let jtmp = cache_dir.join(format!("{key}.json.tmp.{}", std::process::id()));
    std::fs::write(&jtmp, json).map_err(ImageError::io(ctx.clone()))?;
    std::fs::rename(&jtmp, cache_dir.join(format!("{key}.json"))).map_err(ImageError::io(ctx))?;
    Ok((info, blob))
}

/// Build (or take from the cache) every store layer of `groups`, on up to `jobs` threads.
pub fn build_store_layers(
    metas: &[PathMeta],
    groups: &[Vec<usize>],
    archive: ArchiveFn,
    cache_dir: &Path,
    c: Compression,
    jobs: usize,
) -> Result<Vec<BuiltLayer>, ImageError> {
    let results: Mutex<Vec<Option<Result<BuiltLayer, ImageError>>>> =
        Mutex::new((0..groups.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= groups.len() {
            break;
        }
        let members: Vec<&PathMeta> = groups[i].iter().map(|&j| &metas[j]).collect();
        let r = build_one(&members, archive, cache_dir, c);
        if let Ok(mut g) = results.lock() {
            g[i] = Some(r);
        }
    };
    let jobs = jobs.clamp(1, groups.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..jobs {
            s.spawn(work);
        }
        work();
    });
    let results = results
        .into_inner()
        .map_err(|_| ImageError::Store("a layer worker panicked".into()))?;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ImageError::Store("a layer was not built".into()))))
        .collect()
}

fn build_one(
    members: &[&PathMeta],
    archive: ArchiveFn,
    cache_dir: &Path,
    c: Compression,
) -> Result<BuiltLayer, ImageError> {
    let key = store_layer_key(members, c);
    let paths: Vec<StorePath> = members.iter().map(|m| m.path.clone()).collect();
    // at-root members are small (Debian packages): walking them again on a cache hit is cheap
    // and keeps the recorded ranges in step with the tree
    let mut walked: Vec<Option<Vec<Entry>>> = Vec::with_capacity(members.len());
    for m in members {
        walked.push(if m.at_root {
            Some(
                at_root_entries(&m.physical)
                    .map_err(ImageError::io(format!("reading {}", m.physical.display())))?,
            )
        } else {
            None
        });
    }
    let ranges = at_root_ranges(
        &members
            .iter()
            .zip(&walked)
            .map(|(m, w)| (m.path.clone(), w.as_ref().map(|e| e.len() as u64)))
            .collect::<Vec<_>>(),
    );
    if let Some((info, blob)) = cache_lookup(cache_dir, &key) {
        return Ok(BuiltLayer {
            info,
            blob,
            members: paths,
            reused: true,
            at_root: ranges,
        });
    }
    let srcs: Vec<LayerMember<'_>> = members
        .iter()
        .zip(walked)
        .map(|(m, w)| LayerMember {
            physical: m.physical.as_path(),
            base: m.path.base_name(),
            at_root: w,
            labels: m.labels.as_deref(),
        })
        .collect();
    let (info, blob) = compress_into_cache(cache_dir, &key, c, &|w| {
        write_store_layer_tar(archive, &srcs, w)
    })?;
    Ok(BuiltLayer {
        info,
        blob,
        members: paths,
        reused: false,
        at_root: ranges,
    })
}

/// Copy a blob into `blobs/sha256/` of a layout, checking its digest on the way (a corrupt
/// cache entry is an error, never a silently wrong image). Returns false when it was there.
pub fn install_blob(blob: &Path, digest: &str, blobs_dir: &Path) -> Result<bool, ImageError> {
    let hexd = digest.strip_prefix("sha256:").unwrap_or(digest);
    let dest = blobs_dir.join(hexd);
    if dest.exists() {
        return Ok(false);
    }
    let tmp = blobs_dir.join(format!(".{hexd}.tmp"));
    let ctx = format!("copying {} into the image", blob.display());
    let mut src = File::open(blob).map_err(ImageError::io(ctx.clone()))?;
    let mut w = HashWriter::new(BufWriter::with_capacity(
        1 << 20,
        File::create(&tmp).map_err(ImageError::io(ctx.clone()))?,
    ));
    io::copy(&mut src, &mut w).map_err(ImageError::io(ctx.clone()))?;
    let (mut f, got, _) = w.finish();
    f.flush().map_err(ImageError::io(ctx.clone()))?;
    drop(f);
    if got != hexd {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(blob);
        return Err(ImageError::Store(format!(
            "the cached layer {} is corrupt (sha256 {got}, expected {hexd}); it was removed, build again",
            blob.display()
        )));
    }
    std::fs::rename(&tmp, &dest).map_err(ImageError::io(ctx))?;
    Ok(true)
}

/// Keep `popularity` in [`PathMeta`] honest for tests: the rank key as a tuple.
#[cfg(test)]
fn meta(name: &str, size: u64, popularity: usize) -> PathMeta {
    PathMeta {
        path: StorePath::from_fingerprint(name, name).expect("valid name"),
        physical: PathBuf::from("/nonexistent"),
        content_hash: String::new(),
        size,
        popularity,
        at_root: false,
        labels: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_closures_get_a_layer_each() {
        let m = vec![meta("a", 1, 0), meta("b", 5, 2), meta("c", 3, 2)];
        assert_eq!(plan(&m, 32), vec![vec![1], vec![2], vec![0]]);
    }

    #[test]
    fn budget_merges_least_shared_and_smallest() {
        let m: Vec<PathMeta> = (0..10)
            .map(|i| meta(&format!("p{i}"), 100 + i as u64, i % 3))
            .collect();
        let g = plan(&m, 5);
        assert_eq!(g.len(), 4, "budget 5 = 4 store layers + top");
        // ranked: popularity 2 (p8, p5, p2 by size desc), then popularity 1 (p7 ...)
        assert_eq!(&g[..3], &[vec![8], vec![5], vec![2]]);
        let merged = &g[3];
        assert_eq!(merged.len(), 7);
        let mut names: Vec<String> = merged.iter().map(|&i| m[i].path.base_name()).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort();
            s
        };
        assert_eq!(
            names, sorted,
            "members of a merged layer are in base-name order"
        );
        names.clear();
        // same input in another order gives the same plan (by name)
        let mut rev = m.clone();
        rev.reverse();
        let g2 = plan(&rev, 5);
        let by_name = |g: &Vec<Vec<usize>>, ms: &[PathMeta]| -> Vec<Vec<String>> {
            g.iter()
                .map(|l| l.iter().map(|&i| ms[i].path.base_name()).collect())
                .collect()
        };
        assert_eq!(by_name(&g, &m), by_name(&g2, &rev));
    }

    #[test]
    fn at_root_ranges_follow_the_parents() {
        let p = |n: &str| StorePath::from_fingerprint(n, n).expect("valid name");
        // with a store member: bld/, bld/store/ first, then the at-root members in order
        let r = at_root_ranges(&[(p("a"), Some(3)), (p("b"), None), (p("c"), Some(4))]);
        assert_eq!(
            r.iter().map(|a| (a.start, a.count)).collect::<Vec<_>>(),
            [(2, 3), (5, 4)]
        );
        // at-root members only: no parents
        let r = at_root_ranges(&[(p("a"), Some(3))]);
        assert_eq!((r[0].start, r[0].count), (0, 3));
        let c = crate::oci::at_root_comment(&r);
        assert_eq!(
            crate::oci::parse_at_root_comment(&c),
            [(p("a").to_string(), 0, 3)]
        );
    }

    #[test]
    fn budget_bounds() {
        assert!(check_budget(Some(1)).is_err());
        assert!(check_budget(Some(101)).is_err());
        assert_eq!(check_budget(None).ok(), Some(32));
        assert_eq!(check_budget(Some(100)).ok(), Some(100));
    }

    #[test]
    fn gzip_is_byte_deterministic_without_name_or_mtime() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = |w: &mut dyn Write| w.write_all(&[7u8; 100_000]);
        let (a, pa) = compress_into_cache(dir.path(), "a", Compression::Gzip, &data).expect("a");
        let (b, pb) = compress_into_cache(dir.path(), "b", Compression::Gzip, &data).expect("b");
        assert_eq!(a.digest, b.digest);
        let bytes = std::fs::read(pa).expect("read");
        assert_eq!(bytes, std::fs::read(pb).expect("read"));
        // magic, deflate, no flags (no name), mtime 0
        assert_eq!(&bytes[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let (z1, _) = compress_into_cache(dir.path(), "z1", Compression::Zstd, &data).expect("z");
        let (z2, _) = compress_into_cache(dir.path(), "z2", Compression::Zstd, &data).expect("z");
        assert_eq!(z1.digest, z2.digest);
        assert_eq!(z1.diff_id, a.diff_id);
        assert_eq!(z1.uncompressed_size, 100_000);
    }

    #[test]
    fn corrupt_cache_blob_is_detected() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = |w: &mut dyn Write| w.write_all(b"layer");
        let (info, blob) =
            compress_into_cache(dir.path(), "k", Compression::Gzip, &data).expect("k");
        let mut bytes = std::fs::read(&blob).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&blob, bytes).expect("write");
        let out = tempfile::tempdir().expect("tmp");
        assert!(install_blob(&blob, &info.digest, out.path()).is_err());
    }

    #[test]
    fn at_root_members_keep_symlinks_and_are_directories() {
        let t = tempfile::tempdir().expect("tempdir");
        let obj = t.path().join("deb");
        std::fs::create_dir_all(obj.join("usr/lib")).expect("mkdir");
        std::fs::write(obj.join("usr/lib/libx.so.1"), "elf").expect("write");
        std::os::unix::fs::symlink("/etc/shadow", obj.join("usr/lib/shadow")).expect("link");
        let es = at_root_entries(&obj).expect("entries");
        let link = es
            .iter()
            .find(|e| e.path == "usr/lib/shadow")
            .expect("link");
        assert_eq!(link.node, tarw::Node::Symlink("/etc/shadow".into()));
        // an object that is a symlink to a directory is not listed
        std::os::unix::fs::symlink("/etc", t.path().join("etc-link")).expect("link");
        assert!(at_root_entries(&t.path().join("etc-link")).is_err());
    }

    #[test]
    fn labelled_members_carry_selinux_records_and_their_own_key() {
        let t = tempfile::tempdir().expect("tempdir");
        let obj = t.path().join("nginx");
        std::fs::create_dir_all(obj.join("sbin")).expect("mkdir");
        std::fs::write(obj.join("sbin/nginx"), "elf").expect("write");
        std::os::unix::fs::symlink("nginx", obj.join("sbin/nginx-link")).expect("link");
        let labels = Labels::from_modules(
            &[crate::selinux::test_module(
                "/usr/sbin/nginx\t--\tsystem_u:object_r:httpd_exec_t:s0\n/usr/sbin/nginx-link\ta:b:l_t:s0\n",
            )],
            "/usr",
        )
        .expect("labels");
        let write = |labels: Option<&Labels>| {
            let m = LayerMember {
                physical: &obj,
                base: "abc-nginx".into(),
                at_root: None,
                labels,
            };
            let mut out = Vec::new();
            write_store_layer_tar(crate::store_archive, &[m], &mut out).expect("layer");
            out
        };
        let read = |bytes: &[u8]| -> Vec<(String, Option<String>)> {
            let mut ar = tar::Archive::new(bytes);
            let mut v = Vec::new();
            for e in ar.entries().expect("entries") {
                let mut e = e.expect("entry");
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let mut label = None;
                if let Some(pax) = e.pax_extensions().expect("pax") {
                    for x in pax {
                        let x = x.expect("record");
                        if x.key().ok() == Some(crate::selinux::PAX_KEY) {
                            label = Some(String::from_utf8_lossy(x.value_bytes()).into_owned());
                        }
                    }
                }
                v.push((name, label));
            }
            v
        };
        let plain = write(None);
        let labelled = write(Some(&labels));
        let (p, l) = (read(&plain), read(&labelled));
        // the same entries in the same order; only the labels differ
        assert_eq!(
            p.iter().map(|e| &e.0).collect::<Vec<_>>(),
            l.iter().map(|e| &e.0).collect::<Vec<_>>()
        );
        assert!(p.iter().all(|e| e.1.is_none()));
        let label = |n: &str| l.iter().find(|e| e.0 == n).and_then(|e| e.1.clone());
        assert_eq!(
            label("bld/store/abc-nginx/sbin/nginx").as_deref(),
            Some("system_u:object_r:httpd_exec_t:s0")
        );
        assert_eq!(
            label("bld/store/abc-nginx/sbin/nginx-link").as_deref(),
            Some("a:b:l_t:s0")
        );
        // the directory matches no rule
        let sbin: Vec<_> = l
            .iter()
            .filter(|e| e.0.trim_end_matches('/') == "bld/store/abc-nginx/sbin")
            .collect();
        assert_eq!(sbin.len(), 1);
        assert_eq!(sbin[0].1, None);
        // the cache key: unchanged without labels, another one with them
        let mut m = meta("abc-nginx", 1, 0);
        let plain_key = store_layer_key(&[&m], Compression::Gzip);
        m.labels = Some(std::sync::Arc::new(labels));
        assert_ne!(store_layer_key(&[&m], Compression::Gzip), plain_key);
        m.labels = None;
        assert_eq!(store_layer_key(&[&m], Compression::Gzip), plain_key);
    }
}
