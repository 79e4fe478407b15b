//! [`BuildRequest`]: one build, normalised to plain data.
//!
//! The builder never sees language values or even whole derivations: the scheduler turns a
//! [`Derivation`] plus the closure of its inputs into a `BuildRequest` (command, environment,
//! outputs, the exact set of store paths the sandbox may see, the sandbox profile and limits),
//! and a backend (bubblewrap today, remote execution later) runs it. Keeping this type free of
//! store handles and callbacks is what lets a request be shipped to another machine.

use std::collections::BTreeMap;
use std::time::Duration;

use buildit_store::{Derivation, StorePath};
use serde::{Deserialize, Serialize};

/// Limits that end a build early. `None` means unlimited. [`BuildLimits::default`] has the
/// defaults below for the resource limits (see `docs/builder.md`, *Limits*), none for time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildLimits {
    /// Wall-clock time for the whole build.
    pub timeout: Option<Duration>,
    /// Longest time without any output on stdout/stderr.
    pub max_silent: Option<Duration>,
    /// Largest log (uncompressed bytes) before the build is killed.
    pub max_log_bytes: Option<u64>,
    /// Memory of all the build's processes together, tmpfs contents included (control group).
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Processes and threads of the build at once (control group, else `RLIMIT_NPROC`).
    #[serde(default)]
    pub max_pids: Option<u64>,
    /// Size of each of the build's `/tmp` and `/dev/shm` (tmpfs `size=`).
    #[serde(default)]
    pub max_tmpfs: Option<u64>,
    /// Total bytes of the outputs (and the largest file the build may write, `RLIMIT_FSIZE`).
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
}

/// Default of [`BuildLimits::max_log_bytes`]: 64 MiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 64 << 20;
/// Default of [`BuildLimits::max_pids`].
pub const DEFAULT_MAX_PIDS: u64 = 4096;
/// Default of [`BuildLimits::max_tmpfs`]: 1 GiB.
pub const DEFAULT_MAX_TMPFS: u64 = 1 << 30;
/// Default of [`BuildLimits::max_output_bytes`]: 4 GiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 4 << 30;

/// Default of [`BuildLimits::max_memory`]: half the machine's physical memory (none when it
/// cannot be read).
pub fn default_max_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| (pages as u64).saturating_mul(size as u64) / 2)
}

impl Default for BuildLimits {
    fn default() -> BuildLimits {
        BuildLimits {
            timeout: None,
            max_silent: None,
            max_log_bytes: Some(DEFAULT_MAX_LOG_BYTES),
            max_memory: default_max_memory(),
            max_pids: Some(DEFAULT_MAX_PIDS),
            max_tmpfs: Some(DEFAULT_MAX_TMPFS),
            max_output_bytes: Some(DEFAULT_MAX_OUTPUT_BYTES),
        }
    }
}

impl BuildLimits {
    /// No limit at all.
    pub fn unlimited() -> BuildLimits {
        BuildLimits {
            timeout: None,
            max_silent: None,
            max_log_bytes: None,
            max_memory: None,
            max_pids: None,
            max_tmpfs: None,
            max_output_bytes: None,
        }
    }
}

/// Parse a size limit as given on the command line: bytes, with an optional binary suffix
/// `K`, `M`, `G`, `T` (`KiB`... and `KB`... mean the same), or `none`/`unlimited` (returned as
/// `u64::MAX`, see [`limit`]).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(u64::MAX);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 512M, 2G, none)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("`{s}`: unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A parsed limit as an `Option`: `u64::MAX` (`none`) is unlimited.
pub fn limit(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

/// Per-build knobs chosen by the caller (CLI flags), not by the derivation. The default
/// leaves the cores to the scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// `BUILDIT_BUILD_CORES`: how many cores one build may use; `0` lets the scheduler share
    /// the machine's cores among the builds it runs ([`crate::schedule::cores_for`]).
    pub cores: u32,
    pub limits: BuildLimits,
    /// Keep the build directory of a failed build (and say where).
    pub keep_failed: bool,
}

/// Everything one build needs, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRequest {
    /// The `.drv` store path this request realises (names the log file).
    pub drv_path: StorePath,
    /// The derivation's name (for progress display).
    pub name: String,
    /// The program to run (an absolute path inside the sandbox, or `builtin:NAME`).
    pub builder: String,
    pub args: Vec<String>,
    /// The derivation's environment (the sandbox adds the contract's variables).
    pub env: BTreeMap<String, String>,
    /// Output name → output store path.
    pub outputs: BTreeMap<String, StorePath>,
    /// The closure of all inputs: exactly the store paths visible in the sandbox (sorted).
    pub input_closure: Vec<StorePath>,
    /// The tree mounted at `/usr`, if any.
    pub sysroot: Option<StorePath>,
    /// Real network access (fixed-output derivations only).
    pub network: bool,
    pub cores: u32,
    pub limits: BuildLimits,
    pub keep_failed: bool,
}

/// Why a derivation cannot become a request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("output `{output}` of {drv} has no store path (the derivation was never finalised)")]
    MissingOutputPath { drv: StorePath, output: String },
    #[error("{drv} has no outputs")]
    NoOutputs { drv: StorePath },
}

impl BuildRequest {
    /// The request for `drv` (stored at `drv_path`) whose inputs' closure is `closure`.
    /// Network access is granted only when the derivation is fixed-output, whatever its
    /// sandbox profile asks for.
    pub fn from_derivation(
        drv_path: &StorePath,
        drv: &Derivation,
        closure: Vec<StorePath>,
        opts: &BuildOptions,
    ) -> Result<BuildRequest, RequestError> {
        if drv.outputs.is_empty() {
            return Err(RequestError::NoOutputs {
                drv: drv_path.clone(),
            });
        }
        let mut outputs = BTreeMap::new();
        for (name, o) in &drv.outputs {
            let path = o
                .path
                .clone()
                .ok_or_else(|| RequestError::MissingOutputPath {
                    drv: drv_path.clone(),
                    output: name.clone(),
                })?;
            outputs.insert(name.clone(), path);
        }
        let mut input_closure = closure;
        input_closure.sort();
        input_closure.dedup();
        Ok(BuildRequest {
            drv_path: drv_path.clone(),
            name: drv.name.clone(),
            builder: drv.builder.clone(),
            args: drv.args.clone(),
            env: drv.env.clone(),
            outputs,
            input_closure,
            sysroot: drv.sandbox.sysroot.clone(),
            network: drv.fixed_output().is_some(),
            cores: opts.cores.max(1),
            limits: opts.limits.clone(),
            keep_failed: opts.keep_failed,
        })
    }

    /// Whether this request is handled in-process (`builtin:NAME`) rather than in the sandbox.
    pub fn builtin(&self) -> Option<&str> {
        self.builder.strip_prefix("builtin:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildit_store::derivation::{
        DerivationOutput, FixedOutput, HashAlgo, HashMode, SandboxProfile, DRV_VERSION,
    };
    use std::collections::BTreeSet;

    fn drv(fixed: bool, network: bool) -> Derivation {
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "out".to_string(),
            DerivationOutput {
                path: Some(StorePath::from_fingerprint("x", "hello").expect("valid")),
                fixed: fixed.then(|| FixedOutput {
                    mode: HashMode::Flat,
                    algo: HashAlgo::Sha256,
                    hash: vec![0; 32],
                }),
            },
        );
        Derivation {
            version: DRV_VERSION.into(),
            name: "hello".into(),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec!["-c".into(), "true".into()],
            env: BTreeMap::new(),
            outputs,
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::new(),
            sandbox: SandboxProfile {
                sysroot: None,
                network,
            },
        }
    }

    #[test]
    fn network_only_for_fixed_output() {
        let p = StorePath::from_fingerprint("d", "hello.drv").expect("valid");
        let opts = BuildOptions::default();
        let r = BuildRequest::from_derivation(&p, &drv(false, true), vec![], &opts).expect("ok");
        assert!(!r.network, "an ordinary derivation never gets network");
        let r = BuildRequest::from_derivation(&p, &drv(true, false), vec![], &opts).expect("ok");
        assert!(r.network);
    }

    #[test]
    fn missing_output_path_is_an_error() {
        let p = StorePath::from_fingerprint("d", "hello.drv").expect("valid");
        let mut d = drv(false, false);
        if let Some(o) = d.outputs.get_mut("out") {
            o.path = None;
        }
        let e = BuildRequest::from_derivation(&p, &d, vec![], &BuildOptions::default());
        assert!(matches!(e, Err(RequestError::MissingOutputPath { .. })));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("none").map(limit), Ok(None));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        let d = BuildLimits::default();
        assert_eq!(d.max_log_bytes, Some(DEFAULT_MAX_LOG_BYTES));
        assert_eq!(d.max_pids, Some(DEFAULT_MAX_PIDS));
        assert_eq!(BuildLimits::unlimited().max_memory, None);
    }

    #[test]
    fn closure_is_sorted_and_deduplicated() {
        let p = StorePath::from_fingerprint("d", "hello.drv").expect("valid");
        let a = StorePath::from_fingerprint("a", "a").expect("valid");
        let b = StorePath::from_fingerprint("b", "b").expect("valid");
        let r = BuildRequest::from_derivation(
            &p,
            &drv(false, false),
            vec![b.clone(), a.clone(), b.clone()],
            &BuildOptions::default(),
        )
        .expect("ok");
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(r.input_closure, want);
    }
}
