//! A derivation's build request as a REAPI action, run on an endpoint: the builder's
//! [`RemoteExecutor`] over [`Endpoint`].
//!
//! For each request: the input root ([`crate::merkle`]), the `Command` (the builder and its
//! arguments, exactly the local sandbox's environment, the outputs as paths relative to the
//! working directory `build`, the platform), the `Action` (with the timeout). The
//! ActionCache is asked first (unless cached results are refused); otherwise the blobs the
//! CAS lacks are uploaded (a set of blobs known to be there saves the question for the next
//! actions) and the action executed. The outputs are downloaded into the staging paths the
//! scheduler gave, every blob checked against its digest, and the build's stdout and stderr
//! written to its log; the scheduler then registers the outputs as it registers a local
//! build's.
//!
//! The gRPC calls run on a small tokio runtime owned by the executor; the scheduler's worker
//! threads block on it, so `-j N` gives N actions in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    command, platform, Action, ActionResult, Command, Digest, Directory, Platform, Tree,
};
use buildit_builder::log::LogSink;
use buildit_builder::{BuildRequest, RemoteFailure, RemoteRun};
use buildit_store::{StoreLayout, StorePath};
use prost::Message;

use crate::client::{Endpoint, EndpointConfig};
use crate::digest::show;
use crate::error::RemoteError;
use crate::merkle::{self, Blobs, TreeCache};

/// The working directory of every action, relative to the input root (`/build`).
pub const WORKING_DIRECTORY: &str = "build";
/// Deepest output tree accepted from an endpoint.
const MAX_DEPTH: usize = 256;

/// How to use an endpoint.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    pub endpoint: EndpointConfig,
    /// Build locally what the endpoint cannot take because it is down.
    pub fallback: bool,
    /// Use results from the endpoint's ActionCache (results of earlier executions).
    pub accept_cached: bool,
    /// `BUILDIT_BUILD_CORES` of remote builds (part of the action: a fixed number keeps the
    /// ActionCache's keys the same from one machine to the next).
    pub cores: u32,
}

impl Default for RemoteOptions {
    fn default() -> RemoteOptions {
        RemoteOptions {
            endpoint: EndpointConfig::default(),
            fallback: false,
            accept_cached: true,
            cores: DEFAULT_CORES,
        }
    }
}

/// Default of [`RemoteOptions::cores`].
pub const DEFAULT_CORES: u32 = 4;

/// What an executor did, for progress and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Actions executed by the endpoint.
    pub executed: u64,
    /// Actions answered from the ActionCache.
    pub cached: u64,
    /// Blobs and bytes uploaded (only what the CAS lacked).
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
    /// Bytes of the input roots of all actions (what a client without a CAS would send).
    pub input_bytes: u64,
    /// Bytes downloaded (outputs and logs).
    pub downloaded_bytes: u64,
}

/// Builds through one endpoint.
pub struct RemoteBuilder {
    rt: tokio::runtime::Runtime,
    ep: Endpoint,
    layout: StoreLayout,
    opts: RemoteOptions,
    trees: TreeCache,
    /// Blobs the CAS is known to hold (uploaded or found there by this process).
    present: Mutex<HashSet<String>>,
    executed: AtomicU64,
    cached: AtomicU64,
    uploaded_blobs: AtomicU64,
    uploaded_bytes: AtomicU64,
    input_bytes: AtomicU64,
    downloaded_bytes: AtomicU64,
}

impl std::fmt::Debug for RemoteBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBuilder")
            .field("url", &self.ep.url)
            .finish()
    }
}

fn failure(e: RemoteError) -> RemoteFailure {
    if e.unavailable() {
        RemoteFailure::Unavailable(e.to_string())
    } else {
        RemoteFailure::Error(e.to_string())
    }
}

/// Where output `p` is, relative to the working directory.
pub fn output_rel(p: &StorePath) -> String {
    format!("..{p}")
}

fn platform() -> Platform {
    // sorted by name, as the protocol requires
    let props = [
        ("ISA", "x86-64"),
        ("OSFamily", "linux"),
        ("unixGID", "100"),
        ("unixUID", "1000"),
    ];
    Platform {
        properties: props
            .iter()
            .map(|(n, v)| platform::Property {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
    }
}

impl RemoteBuilder {
    /// Connect to the endpoint of `opts` (its capabilities are asked here, so a down
    /// endpoint is known before anything is built).
    pub fn connect(layout: StoreLayout, opts: RemoteOptions) -> Result<RemoteBuilder, RemoteError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("buildit-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Io {
                what: "starting the gRPC runtime".into(),
                source: e,
            })?;
        let ep = rt.block_on(Endpoint::connect(&opts.endpoint))?;
        Ok(RemoteBuilder {
            rt,
            ep,
            layout,
            opts,
            trees: TreeCache::default(),
            present: Mutex::new(HashSet::new()),
            executed: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            uploaded_blobs: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
            input_bytes: AtomicU64::new(0),
            downloaded_bytes: AtomicU64::new(0),
        })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.ep.url
    }

    /// The digest function in use.
    pub fn digest_function(&self) -> &'static str {
        self.ep.digest.name()
    }

    /// What this executor has done so far.
    pub fn stats(&self) -> RemoteStats {
        RemoteStats {
            executed: self.executed.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            uploaded_blobs: self.uploaded_blobs.load(Ordering::Relaxed),
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Relaxed),
            input_bytes: self.input_bytes.load(Ordering::Relaxed),
            downloaded_bytes: self.downloaded_bytes.load(Ordering::Relaxed),
        }
    }

    /// The action of `req` and every blob it needs.
    pub fn action(&self, req: &BuildRequest) -> Result<(Digest, Blobs), RemoteError> {
        let f = self.ep.digest;
        let mut blobs = Blobs::default();
        let root = merkle::input_root(
            f,
            &self.trees,
            &self.layout,
            &req.input_closure,
            req.sysroot.as_ref(),
            &mut blobs,
        )?;
        let mut fixed = req.clone();
        fixed.cores = self.opts.cores.max(1);
        let env = buildit_builder::sandbox::sandbox_env(&fixed);
        let mut outputs: Vec<String> = req.outputs.values().map(output_rel).collect();
        outputs.sort();
        let mut arguments = vec![req.builder.clone()];
        arguments.extend(req.args.iter().cloned());
        // The platform is in the Command too, where servers of API versions before 2.2
        // read it.
        #[allow(deprecated)]
        let cmd = Command {
            arguments,
            environment_variables: env
                .into_iter()
                .map(|(name, value)| command::EnvironmentVariable { name, value })
                .collect(),
            output_paths: outputs,
            platform: Some(platform()),
            working_directory: WORKING_DIRECTORY.to_string(),
            ..Command::default()
        };
        let cmd_bytes = cmd.encode_to_vec();
        let cmd_digest = f.of(&cmd_bytes);
        blobs.add_message(cmd_digest.clone(), cmd_bytes);
        let action = Action {
            command_digest: Some(cmd_digest),
            input_root_digest: Some(root),
            timeout: req
                .limits
                .timeout
                .map(|t| bazel_remote_apis::google::protobuf::Duration {
                    seconds: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            do_not_cache: false,
            salt: Vec::new(),
            platform: Some(platform()),
        };
        let bytes = action.encode_to_vec();
        let digest = f.of(&bytes);
        blobs.add_message(digest.clone(), bytes);
        Ok((digest, blobs))
    }

    /// Upload what the CAS lacks of `blobs`.
    async fn upload(&self, blobs: &Blobs) -> Result<(), RemoteError> {
        self.input_bytes.fetch_add(blobs.bytes(), Ordering::Relaxed);
        let known: Vec<Digest> = {
            let present = self.present.lock().map_err(|_| poisoned())?;
            blobs
                .digests()
                .into_iter()
                .filter(|d| !present.contains(&d.hash))
                .collect()
        };
        if known.is_empty() {
            return Ok(());
        }
        let missing = self.ep.find_missing(known.clone()).await?;
        let mut small: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut small_bytes = 0usize;
        for d in &missing {
            let size = u64::try_from(d.size_bytes).unwrap_or(0);
            self.uploaded_blobs.fetch_add(1, Ordering::Relaxed);
            self.uploaded_bytes.fetch_add(size, Ordering::Relaxed);
            if let Some((_, bytes)) = blobs.messages.get(&d.hash) {
                if self.ep.fits_batch(d.size_bytes) {
                    small_bytes += bytes.len();
                    small.push((d.clone(), bytes.as_ref().clone()));
                } else {
                    let data: Vec<u8> = bytes.as_ref().clone();
                    self.ep
                        .write_stream(d, Box::new(std::io::Cursor::new(data)))
                        .await?;
                }
            } else if let Some((_, path)) = blobs.files.get(&d.hash) {
                if self.ep.fits_batch(d.size_bytes) {
                    let data = std::fs::read(path).map_err(|e| RemoteError::Io {
                        what: format!("reading {}", path.display()),
                        source: e,
                    })?;
                    small_bytes += data.len();
                    small.push((d.clone(), data));
                } else {
                    self.ep.write_file(d, path).await?;
                }
            } else {
                return Err(RemoteError::Protocol(format!(
                    "the CAS asks for blob {} that was never offered",
                    show(d)
                )));
            }
            // keep memory bounded: send what is gathered every 64 MiB
            if small_bytes > 64 << 20 {
                self.ep.batch_update(std::mem::take(&mut small)).await?;
                small_bytes = 0;
            }
        }
        if !small.is_empty() {
            self.ep.batch_update(small).await?;
        }
        let mut present = self.present.lock().map_err(|_| poisoned())?;
        present.extend(known.into_iter().map(|d| d.hash));
        Ok(())
    }

    /// Write the build's stdout and stderr to its log.
    async fn write_log(&self, r: &ActionResult, log: &mut LogSink<'_>) -> Result<(), RemoteError> {
        for (raw, digest) in [
            (&r.stdout_raw, &r.stdout_digest),
            (&r.stderr_raw, &r.stderr_digest),
        ] {
            let bytes = if !raw.is_empty() {
                raw.clone()
            } else if let Some(d) = digest.as_ref().filter(|d| d.size_bytes > 0) {
                self.ep.read_blob(d).await?
            } else {
                continue;
            };
            self.downloaded_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            log.write(&bytes).map_err(|e| RemoteError::Io {
                what: "writing the build log".into(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Create every output of `r` at its staging path.
    async fn download(
        &self,
        req: &BuildRequest,
        r: &ActionResult,
        outputs: &BTreeMap<String, PathBuf>,
    ) -> Result<(), RemoteError> {
        let max = req.limits.max_output_bytes.unwrap_or(u64::MAX);
        let mut total = 0u64;
        for (name, host) in outputs {
            let Some(p) = req.outputs.get(name) else {
                continue;
            };
            let rel = output_rel(p);
            // servers of API versions before 2.1 report symlinks in the per-kind fields
            #[allow(deprecated)]
            let old_links = r
                .output_file_symlinks
                .iter()
                .chain(&r.output_directory_symlinks);
            if let Some(f) = r.output_files.iter().find(|f| f.path == rel) {
                let d = f.digest.clone().unwrap_or_default();
                total = total.saturating_add(u64::try_from(d.size_bytes).unwrap_or(0));
                if total > max {
                    return Err(too_big(max));
                }
                let data = if !f.contents.is_empty() || d.size_bytes == 0 {
                    f.contents.clone()
                } else {
                    Vec::new()
                };
                if data.is_empty() && d.size_bytes > 0 {
                    self.fetch_file(&d, host).await?;
                } else {
                    let got = self.ep.digest.of(&data);
                    if got != d {
                        return Err(RemoteError::DigestMismatch {
                            digest: show(&d),
                            what: format!("inline output {rel}"),
                        });
                    }
                    write_new(host, &data)?;
                }
                set_mode(host, f.is_executable)?;
            } else if let Some(dir) = r.output_directories.iter().find(|x| x.path == rel) {
                let d = dir
                    .tree_digest
                    .clone()
                    .ok_or_else(|| RemoteError::Protocol(format!("output {rel} has no tree")))?;
                let bytes = self.ep.read_blob(&d).await?;
                self.downloaded_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let tree = Tree::decode(bytes.as_slice())
                    .map_err(|e| RemoteError::Protocol(format!("output {rel}: {e}")))?;
                total = self.materialise(&tree, host, total, max).await?;
            } else if let Some(l) = r
                .output_symlinks
                .iter()
                .chain(old_links)
                .find(|l| l.path == rel)
            {
                std::os::unix::fs::symlink(&l.target, host).map_err(|e| RemoteError::Io {
                    what: format!("creating {}", host.display()),
                    source: e,
                })?;
            }
            // an output the result lacks stays absent: the scheduler reports it missing
        }
        Ok(())
    }

    /// Lay out an output tree at `host`; returns the running total of bytes.
    async fn materialise(
        &self,
        tree: &Tree,
        host: &Path,
        mut total: u64,
        max: u64,
    ) -> Result<u64, RemoteError> {
        let f = self.ep.digest;
        let children: HashMap<String, &Directory> = tree
            .children
            .iter()
            .map(|c| (f.of(&c.encode_to_vec()).hash, c))
            .collect();
        let root = tree
            .root
            .as_ref()
            .ok_or_else(|| RemoteError::Protocol("an output tree without root".into()))?;
        // files to fetch: digest -> (destinations, executable)
        let mut files: HashMap<String, (Digest, Vec<(PathBuf, bool)>)> = HashMap::new();
        let mut todo: Vec<(&Directory, PathBuf, usize)> = vec![(root, host.to_path_buf(), 0)];
        while let Some((dir, at, depth)) = todo.pop() {
            if depth > MAX_DEPTH {
                return Err(RemoteError::Protocol(format!(
                    "an output tree deeper than {MAX_DEPTH}"
                )));
            }
            mkdir(&at)?;
            for n in &dir.files {
                let d = n.digest.clone().unwrap_or_default();
                total = total.saturating_add(u64::try_from(d.size_bytes).unwrap_or(0));
                if total > max {
                    return Err(too_big(max));
                }
                files
                    .entry(d.hash.clone())
                    .or_insert_with(|| (d, Vec::new()))
                    .1
                    .push((at.join(entry_name(&n.name)?), n.is_executable));
            }
            for n in &dir.symlinks {
                let p = at.join(entry_name(&n.name)?);
                std::os::unix::fs::symlink(&n.target, &p).map_err(|e| RemoteError::Io {
                    what: format!("creating {}", p.display()),
                    source: e,
                })?;
            }
            for n in &dir.directories {
                let d = n
                    .digest
                    .as_ref()
                    .map(|d| d.hash.clone())
                    .unwrap_or_default();
                let child = children.get(&d).ok_or_else(|| {
                    RemoteError::Protocol(format!(
                        "directory `{}` is not in the output tree",
                        n.name
                    ))
                })?;
                todo.push((child, at.join(entry_name(&n.name)?), depth + 1));
            }
        }
        let (small, large): (Vec<_>, Vec<_>) = files
            .into_values()
            .partition(|(d, _)| self.ep.fits_batch(d.size_bytes));
        let mut wanted: HashMap<String, Vec<(PathBuf, bool)>> = HashMap::new();
        let mut digests = Vec::new();
        for (d, dests) in small {
            if d.size_bytes == 0 {
                for (p, x) in &dests {
                    write_new(p, b"")?;
                    set_mode(p, *x)?;
                }
                continue;
            }
            wanted.insert(d.hash.clone(), dests);
            digests.push(d);
        }
        for (d, data) in self.ep.batch_read(digests).await? {
            self.downloaded_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            for (p, x) in wanted.remove(&d.hash).unwrap_or_default() {
                write_new(&p, &data)?;
                set_mode(&p, x)?;
            }
        }
        if let Some(h) = wanted.keys().next() {
            return Err(RemoteError::Protocol(format!("blob {h} was not returned")));
        }
        for (d, dests) in large {
            let mut it = dests.into_iter();
            let Some((first, x)) = it.next() else {
                continue;
            };
            self.fetch_file(&d, &first).await?;
            set_mode(&first, x)?;
            for (p, x) in it {
                std::fs::copy(&first, &p).map_err(|e| RemoteError::Io {
                    what: format!("creating {}", p.display()),
                    source: e,
                })?;
                set_mode(&p, x)?;
            }
        }
        Ok(total)
    }

    /// Stream a blob into a new file at `p`.
    async fn fetch_file(&self, d: &Digest, p: &Path) -> Result<(), RemoteError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(|e| RemoteError::Io {
                what: format!("creating {}", p.display()),
                source: e,
            })?;
        let mut n = 0u64;
        self.ep
            .read_stream(d, &mut |b| {
                n += b.len() as u64;
                f.write_all(b)
            })
            .await?;
        self.downloaded_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    async fn run(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        log: &mut LogSink<'_>,
    ) -> Result<Result<RemoteRun, i32>, RemoteError> {
        let (action, blobs) = self.action(req)?;
        if self.opts.accept_cached {
            if let Some(r) = self.ep.action_result(&action).await? {
                if r.exit_code == 0 {
                    self.write_log(&r, log).await?;
                    self.download(req, &r, outputs).await?;
                    self.cached.fetch_add(1, Ordering::Relaxed);
                    return Ok(Ok(RemoteRun::Cached));
                }
            }
        }
        self.upload(&blobs).await?;
        // A cached failure is not taken for the result: the action runs again.
        let resp = self.ep.execute(&action, true).await?;
        // A failing command has an OK status: anything else is the endpoint failing to run it.
        if let Some(st) = resp.status.as_ref().filter(|s| s.code != 0) {
            let what = if st.code == tonic::Code::DeadlineExceeded as i32 {
                format!("timed out ({})", st.message)
            } else {
                format!("{} (code {})", st.message, st.code)
            };
            return Err(RemoteError::Execution(what));
        }
        let r = resp
            .result
            .ok_or_else(|| RemoteError::Protocol("an execution without result".into()))?;
        self.write_log(&r, log).await?;
        if r.exit_code != 0 {
            self.executed.fetch_add(1, Ordering::Relaxed);
            return Ok(Err(r.exit_code));
        }
        self.download(req, &r, outputs).await?;
        if resp.cached_result {
            self.cached.fetch_add(1, Ordering::Relaxed);
            Ok(Ok(RemoteRun::Cached))
        } else {
            self.executed.fetch_add(1, Ordering::Relaxed);
            Ok(Ok(RemoteRun::Executed))
        }
    }
}

impl buildit_builder::RemoteExecutor for RemoteBuilder {
    fn fallback(&self) -> bool {
        self.opts.fallback
    }

    fn execute(
        &self,
        req: &BuildRequest,
        outputs: &BTreeMap<String, PathBuf>,
        log: &mut LogSink<'_>,
    ) -> Result<RemoteRun, RemoteFailure> {
        match self.rt.block_on(self.run(req, outputs, log)) {
            Ok(Ok(run)) => Ok(run),
            Ok(Err(code)) => Err(RemoteFailure::Exit(code)),
            Err(e) => Err(failure(e)),
        }
    }
}

fn poisoned() -> RemoteError {
    RemoteError::Protocol("internal: a lock was poisoned by a panic".into())
}

fn too_big(max: u64) -> RemoteError {
    RemoteError::Protocol(format!(
        "the outputs exceed the limit of {max} bytes (--max-output)"
    ))
}

/// A name from an output tree: one plain path component.
fn entry_name(n: &str) -> Result<&str, RemoteError> {
    if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0') {
        return Err(RemoteError::Protocol(format!(
            "`{}` is not a file name",
            n.escape_debug()
        )));
    }
    Ok(n)
}

fn mkdir(p: &Path) -> Result<(), RemoteError> {
    std::fs::create_dir(p).map_err(|e| RemoteError::Io {
        what: format!("creating {}", p.display()),
        source: e,
    })
}

fn write_new(p: &Path, data: &[u8]) -> Result<(), RemoteError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| RemoteError::Io {
            what: format!("creating {}", p.display()),
            source: e,
        })
}

fn set_mode(p: &Path, executable: bool) -> Result<(), RemoteError> {
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        RemoteError::Io {
            what: format!("setting the mode of {}", p.display()),
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for n in ["", ".", "..", "a/b", "x\0"] {
            assert!(entry_name(n).is_err(), "{n:?}");
        }
        assert_eq!(entry_name("bin").expect("ok"), "bin");
    }

    #[test]
    fn platform_properties_are_sorted() {
        let p = platform();
        let names: Vec<&str> = p.properties.iter().map(|x| x.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
