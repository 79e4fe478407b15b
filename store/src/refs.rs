//! Reference scanning: which of a set of candidate store paths an object mentions. A build's
//! output refers to an input exactly when the input's 32-character hash part occurs somewhere
//! in the output's file contents or symlink targets, so the scanner runs one Aho-Corasick
//! automaton over all candidates' hash parts. Files are read in large chunks; the last
//! `HASH_PART_LEN - 1` bytes of a chunk are carried over into the next, so a hash split across
//! a chunk boundary is still found.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;

use crate::archive::kind_name;
use crate::path::{StorePath, HASH_PART_LEN};

/// Chunk size of the scan.
const CHUNK: usize = 1 << 20;

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unsupported file type ({kind})")]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
    #[error("cannot build the reference scanner: {0}")]
    Automaton(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ScanError + '_ {
    move |source| ScanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A reusable scanner for one set of candidates.
pub struct RefScanner {
    ac: Option<AhoCorasick>,
    candidates: Vec<StorePath>,
    found: Vec<bool>,
    buf: Vec<u8>,
}

impl RefScanner {
    /// A scanner for these candidates (duplicates are harmless).
    pub fn new(candidates: &[StorePath]) -> Result<RefScanner, ScanError> {
        let mut cands: Vec<StorePath> = candidates.to_vec();
        cands.sort();
        cands.dedup();
        let ac = if cands.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::new(cands.iter().map(|c| c.hash_part().as_bytes()))
                    .map_err(|e| ScanError::Automaton(e.to_string()))?,
            )
        };
        let n = cands.len();
        Ok(RefScanner {
            ac,
            candidates: cands,
            found: vec![false; n],
            buf: Vec::new(),
        })
    }

    /// Scan a byte slice (e.g. a symlink target or an in-memory file).
    pub fn scan_bytes(&mut self, bytes: &[u8]) {
        if let Some(ac) = &self.ac {
            for m in ac.find_overlapping_iter(bytes) {
                self.found[m.pattern().as_usize()] = true;
            }
        }
    }

    /// Scan everything readable from `r`, chunk by chunk with overlap.
    pub fn scan_reader<R: Read>(&mut self, mut r: R) -> io::Result<()> {
        if self.ac.is_none() {
            return Ok(());
        }
        let keep = HASH_PART_LEN - 1;
        if self.buf.len() < CHUNK + keep {
            self.buf.resize(CHUNK + keep, 0);
        }
        let mut carried = 0usize;
        loop {
            let n = match r.read(&mut self.buf[carried..carried + CHUNK]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let end = carried + n;
            if let Some(ac) = &self.ac {
                for m in ac.find_overlapping_iter(&self.buf[..end]) {
                    self.found[m.pattern().as_usize()] = true;
                }
            }
            let k = keep.min(end);
            self.buf.copy_within(end - k..end, 0);
            carried = k;
        }
    }

    /// Scan the file or tree at `root`: file contents and symlink targets.
    pub fn scan_path(&mut self, root: &Path) -> Result<(), ScanError> {
        if self.ac.is_none() || self.found.iter().all(|f| *f) {
            return Ok(());
        }
        let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            for e in fs::read_dir(root).map_err(io_err(root))? {
                let e = e.map_err(io_err(root))?;
                self.scan_path(&e.path())?;
            }
        } else if ft.is_symlink() {
            let t = fs::read_link(root).map_err(io_err(root))?;
            self.scan_bytes(t.as_os_str().as_bytes());
        } else if ft.is_file() {
            // O_NOFOLLOW: a symlink that replaced the file since it was listed is not followed.
            let f = {
                use std::os::unix::fs::OpenOptionsExt;
                fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(root)
                    .map_err(io_err(root))?
            };
            self.scan_reader(f).map_err(io_err(root))?;
        } else {
            return Err(ScanError::UnsupportedFileType {
                path: root.into(),
                kind: kind_name(&ft),
            });
        }
        Ok(())
    }

    /// The candidates found so far.
    pub fn found(&self) -> BTreeSet<StorePath> {
        self.candidates
            .iter()
            .zip(&self.found)
            .filter(|(_, f)| **f)
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// The candidates whose hash parts occur in the files or symlink targets under `root`.
pub fn scan_references(
    root: &Path,
    candidates: &[StorePath],
) -> Result<BTreeSet<StorePath>, ScanError> {
    let mut s = RefScanner::new(candidates)?;
    s.scan_path(root)?;
    Ok(s.found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(n: &str) -> StorePath {
        StorePath::from_fingerprint(n, n).expect("path")
    }

    #[test]
    fn finds_exactly_the_mentioned_hashes() {
        let (a, b, c, d) = (sp("a"), sp("b"), sp("c"), sp("d"));
        let t = tempfile::tempdir().expect("tmp");
        let o = t.path().join("o");
        fs::create_dir(&o).expect("mkdir");
        fs::write(o.join("f"), format!("prefix {a}/bin/x suffix")).expect("w");
        // b split across the first chunk boundary
        let mut big = vec![b'z'; CHUNK - 10];
        big.extend_from_slice(b.hash_part().as_bytes());
        big.extend_from_slice(&[b'z'; 100]);
        fs::write(o.join("big"), &big).expect("w");
        std::os::unix::fs::symlink(format!("/bld/store/{}-c/lib", c.hash_part()), o.join("l"))
            .expect("ln");
        let found = scan_references(&o, &[a.clone(), b.clone(), c.clone(), d]).expect("scan");
        assert_eq!(found, [a, b, c].into_iter().collect());
    }

    #[test]
    fn boundary_at_every_offset() {
        let x = sp("x");
        let h = x.hash_part().as_bytes();
        for off in [CHUNK - 31, CHUNK - 16, CHUNK - 1, CHUNK, 2 * CHUNK - 5] {
            let mut data = vec![0u8; off];
            data.extend_from_slice(h);
            data.extend_from_slice(&[0u8; 3]);
            let mut s = RefScanner::new(std::slice::from_ref(&x)).expect("scanner");
            s.scan_reader(&data[..]).expect("scan");
            assert_eq!(s.found().len(), 1, "offset {off}");
        }
    }
}
