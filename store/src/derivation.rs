//! Derivations as plain data, their canonical encoding and their hash modulo fixed outputs.
//!
//! A [`Derivation`] is what a build needs and nothing of the language: name, system, builder,
//! args, env, outputs (each with its store path and, for fixed-output derivations, the declared
//! hash), input derivations with the outputs used, input sources and the sandbox profile.
//!
//! The `.drv` file is canonical JSON (fields in a fixed order, maps sorted, no whitespace)
//! starting with `"version":"buildit-drv-1"`, so the same derivation is the same bytes on every
//! machine. Its identity for output paths is the *hash modulo fixed outputs*: the derivation
//! with its output paths blanked and every input derivation replaced by that input's own modulo
//! hash; a fixed-output derivation's modulo hash depends only on its declared output hash, so
//! changing a download URL or mirror rebuilds nothing downstream.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::path::{PathError, StorePath};

/// The version tag at the start of every `.drv` file.
pub const DRV_VERSION: &str = "buildit-drv-1";

/// How a fixed output's hash is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// The output is one regular file; its bytes are hashed.
    Flat,
    /// The output is any tree; its canonical archive is hashed.
    Recursive,
}

/// The hash algorithms a fixed output may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgo {
    Sha256,
    Blake3,
}

impl HashAlgo {
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Blake3 => "blake3",
        }
    }
}

impl HashMode {
    pub fn name(self) -> &'static str {
        match self {
            HashMode::Flat => "flat",
            HashMode::Recursive => "recursive",
        }
    }
}

/// The declared result of a fixed-output derivation (32-byte digest).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FixedOutput {
    pub mode: HashMode,
    pub algo: HashAlgo,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

/// One output of a derivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivationOutput {
    /// The output's store path (blank only while hashing).
    pub path: Option<StorePath>,
    /// Present for a fixed-output derivation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<FixedOutput>,
}

/// How the sandbox is set up for this build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxProfile {
    /// The toolchain tree mounted at `/usr` (a store path), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysroot: Option<StorePath>,
    /// Network access: only fixed-output derivations get it.
    #[serde(default)]
    pub network: bool,
}

/// A derivation: everything a build needs, as plain data. Field order is the canonical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derivation {
    pub version: String,
    pub name: String,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, DerivationOutput>,
    /// Input derivations (`.drv` paths) and the outputs of each that are used.
    pub input_drvs: BTreeMap<StorePath, BTreeSet<String>>,
    /// Input sources (store paths that are not built by this graph: added files, `toFile`).
    pub input_srcs: BTreeSet<StorePath>,
    pub sandbox: SandboxProfile,
}

/// Errors while decoding or hashing derivations.
#[derive(Debug, thiserror::Error)]
pub enum DerivationError {
    #[error("not a buildit derivation: {0}")]
    Decode(String),
    #[error("unsupported derivation version '{0}' (this buildit reads {DRV_VERSION})")]
    Version(String),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("input derivation {0} is unknown (it was never written to this store)")]
    UnknownInput(StorePath),
    #[error("a fixed-output derivation must have exactly one output, named `out`")]
    FixedOutputs,
    #[error("the derivation has no outputs (a derivation must declare at least one, e.g. `out`)")]
    NoOutputs,
    #[error("output `{output}` has no store path")]
    MissingOutputPath { output: String },
    #[error("output `{output}` claims the path {declared}, but the derivation's hash gives {expected} (a .drv may not name another derivation's output)")]
    OutputPathMismatch {
        output: String,
        declared: StorePath,
        expected: StorePath,
    },
}

impl Derivation {
    /// Whether this is a fixed-output derivation (one output `out` with a declared hash).
    pub fn fixed_output(&self) -> Option<&FixedOutput> {
        match self.outputs.get("out") {
            Some(DerivationOutput { fixed: Some(f), .. }) if self.outputs.len() == 1 => Some(f),
            _ => None,
        }
    }

    /// The canonical bytes of this derivation (the `.drv` file).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a derivation always serialises (string keys only)")
    }

    /// Parse a `.drv` file's bytes, checking the version and that it declares at least one
    /// output. (Whether the output paths are the ones the derivation's hash gives is
    /// [`Self::check_output_paths`], which needs the input derivations.)
    pub fn decode(bytes: &[u8]) -> Result<Derivation, DerivationError> {
        let d: Derivation =
            serde_json::from_slice(bytes).map_err(|e| DerivationError::Decode(e.to_string()))?;
        if d.version != DRV_VERSION {
            return Err(DerivationError::Version(d.version));
        }
        if d.outputs.is_empty() {
            return Err(DerivationError::NoOutputs);
        }
        Ok(d)
    }

    /// Check that every output's declared path is the one [`Self::fill_output_paths`] computes
    /// from `drv_hash` (this derivation's hash modulo fixed outputs): a `.drv` written by hand
    /// cannot claim another derivation's output path.
    pub fn check_output_paths(&self, drv_hash: &[u8; 32]) -> Result<(), DerivationError> {
        if self.outputs.is_empty() {
            return Err(DerivationError::NoOutputs);
        }
        let mut expected = self.clone();
        expected.fill_output_paths(drv_hash)?;
        for (name, o) in &self.outputs {
            let want = expected
                .outputs
                .get(name)
                .and_then(|e| e.path.clone())
                .ok_or_else(|| DerivationError::MissingOutputPath {
                    output: name.clone(),
                })?;
            match &o.path {
                None => {
                    return Err(DerivationError::MissingOutputPath {
                        output: name.clone(),
                    })
                }
                Some(p) if *p != want => {
                    return Err(DerivationError::OutputPathMismatch {
                        output: name.clone(),
                        declared: p.clone(),
                        expected: want,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every store path this derivation references (input derivations and sources): the
    /// references of its `.drv` file.
    pub fn references(&self) -> Vec<StorePath> {
        let mut v: Vec<StorePath> = self.input_drvs.keys().cloned().collect();
        v.extend(self.input_srcs.iter().cloned());
        v.sort();
        v.dedup();
        v
    }

    /// The hash modulo fixed outputs. `input_hash` gives the modulo hash of an input derivation
    /// (callers memoise it; [`crate::derivation::ModuloHasher`] does).
    pub fn hash_modulo(
        &self,
        mut input_hash: impl FnMut(&StorePath) -> Result<[u8; 32], DerivationError>,
    ) -> Result<[u8; 32], DerivationError> {
        if let Some(f) = self.fixed_output() {
            // The output path is left out (as it is blank when instantiation hashes a new
            // derivation), so the hash is the same before and after the paths are filled in:
            // the builder recomputes it from the written `.drv` and must get the same.
            let fp = format!(
                "fixed:out:{}:{}:{}:",
                f.mode.name(),
                f.algo.name(),
                hex::encode(&f.hash)
            );
            return Ok(*blake3::hash(fp.as_bytes()).as_bytes());
        }
        // Blank the output paths and replace inputs by their modulo hashes (hex, sorted).
        let mut masked = self.clone();
        for (name, o) in masked.outputs.iter_mut() {
            o.path = None;
            if let Some(v) = masked.env.get_mut(name) {
                v.clear();
            }
        }
        let mut inputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (drv, outs) in &self.input_drvs {
            inputs.insert(hex::encode(input_hash(drv)?), outs.clone());
        }
        masked.input_drvs = BTreeMap::new();
        let mut bytes = b"modulo:".to_vec();
        bytes.extend(serde_json::to_vec(&inputs).expect("string maps serialise"));
        bytes.push(b':');
        bytes.extend(masked.encode());
        Ok(*blake3::hash(&bytes).as_bytes())
    }

    /// Fill in the output paths from the modulo hash: fixed outputs get a `fixed:` path from their
    /// declared hash, others an `output:` path from `drv_hash`.
    pub fn fill_output_paths(&mut self, drv_hash: &[u8; 32]) -> Result<(), DerivationError> {
        let name = self.name.clone();
        let fixed = self.fixed_output().cloned();
        if fixed.is_none() && self.outputs.values().any(|o| o.fixed.is_some()) {
            return Err(DerivationError::FixedOutputs);
        }
        for (out, o) in self.outputs.iter_mut() {
            o.path = Some(match &fixed {
                Some(f) => StorePath::for_fixed(f.mode.name(), f.algo.name(), &f.hash, &name)?,
                None => StorePath::for_output(drv_hash, out, &name)?,
            });
        }
        Ok(())
    }
}

impl FixedOutput {
    /// Parse Nix-style fixed-output attributes: `hash` in hex, nix-base32 or SRI
    /// (`sha256-<base64>`, `blake3-<base64>`), `algo` (`sha256` | `blake3`; optional with SRI),
    /// `mode` (`flat` | `recursive`).
    pub fn parse(hash: &str, algo: Option<&str>, mode: &str) -> Result<FixedOutput, String> {
        let mode = match mode {
            "flat" => HashMode::Flat,
            "recursive" => HashMode::Recursive,
            other => {
                return Err(format!(
                    "unknown outputHashMode '{other}' (expected \"flat\" or \"recursive\")"
                ))
            }
        };
        let parse_algo = |a: &str| match a {
            "sha256" => Ok(HashAlgo::Sha256),
            "blake3" => Ok(HashAlgo::Blake3),
            other => Err(format!(
                "unsupported hash algorithm '{other}' (buildit accepts sha256 and blake3)"
            )),
        };
        let (algo, digest) = if let Some((a, b64)) =
            hash.split_once('-').filter(|(a, _)| parse_algo(a).is_ok())
        {
            let sri_algo = parse_algo(a)?;
            if let Some(given) = algo.filter(|g| !g.is_empty()) {
                if parse_algo(given)? != sri_algo {
                    return Err(format!(
                        "outputHashAlgo '{given}' does not match the SRI hash '{hash}'"
                    ));
                }
            }
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("invalid SRI hash '{hash}': {e}"))?;
            (sri_algo, bytes)
        } else {
            let algo = match algo.filter(|g| !g.is_empty()) {
                Some(a) => parse_algo(a)?,
                None => {
                    return Err(format!(
                        "outputHash '{hash}' needs outputHashAlgo (or write it in SRI form, e.g. sha256-<base64>)"
                    ))
                }
            };
            let bytes = if hash.len() == 64 {
                hex::decode(hash).map_err(|e| format!("invalid hex hash '{hash}': {e}"))?
            } else if hash.len() == 52 {
                crate::path::base32_decode(hash, 32)
                    .ok_or_else(|| format!("invalid nix-base32 hash '{hash}'"))?
            } else {
                return Err(format!(
                    "hash '{hash}' has the wrong length for {} (64 hex digits, 52 nix-base32 characters, or SRI)",
                    algo.name()
                ));
            };
            (algo, bytes)
        };
        if digest.len() != 32 {
            return Err(format!(
                "hash '{hash}' is not a 32-byte {} digest",
                algo.name()
            ));
        }
        Ok(FixedOutput {
            mode,
            algo,
            hash: digest,
        })
    }

    /// The hash in SRI form (`sha256-<base64>`), how buildit prints it back.
    pub fn sri(&self) -> String {
        use base64::Engine;
        format!(
            "{}-{}",
            self.algo.name(),
            base64::engine::general_purpose::STANDARD.encode(&self.hash)
        )
    }
}

/// Memoised modulo hashes of derivations by `.drv` path.
#[derive(Default)]
pub struct ModuloHasher {
    memo: std::collections::HashMap<StorePath, [u8; 32]>,
}

impl ModuloHasher {
    pub fn new() -> ModuloHasher {
        ModuloHasher::default()
    }
    /// Remember the modulo hash of a `.drv` path (e.g. one just written).
    pub fn insert(&mut self, drv_path: StorePath, hash: [u8; 32]) {
        self.memo.insert(drv_path, hash);
    }
    /// The memoised modulo hash of a `.drv` path, if known.
    pub fn get(&self, drv_path: &StorePath) -> Option<[u8; 32]> {
        self.memo.get(drv_path).copied()
    }
    /// The modulo hash of `drv`, with inputs looked up in the memo or loaded by `load` (which
    /// reads a `.drv` file) and hashed recursively.
    pub fn hash(
        &mut self,
        drv: &Derivation,
        load: &mut dyn FnMut(&StorePath) -> Result<Derivation, DerivationError>,
    ) -> Result<[u8; 32], DerivationError> {
        let mut missing: Vec<StorePath> = drv
            .input_drvs
            .keys()
            .filter(|p| !self.memo.contains_key(*p))
            .cloned()
            .collect();
        while let Some(p) = missing.pop() {
            if self.memo.contains_key(&p) {
                continue;
            }
            let d = load(&p)?;
            let unknown: Vec<StorePath> = d
                .input_drvs
                .keys()
                .filter(|q| !self.memo.contains_key(*q))
                .cloned()
                .collect();
            if unknown.is_empty() {
                let h = d.hash_modulo(|q| {
                    self.memo
                        .get(q)
                        .copied()
                        .ok_or_else(|| DerivationError::UnknownInput(q.clone()))
                })?;
                self.memo.insert(p, h);
            } else {
                missing.push(p);
                missing.extend(unknown);
            }
        }
        drv.hash_modulo(|q| {
            self.memo
                .get(q)
                .copied()
                .ok_or_else(|| DerivationError::UnknownInput(q.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drv(name: &str, inputs: &[(&StorePath, &str)]) -> Derivation {
        let mut d = Derivation {
            version: DRV_VERSION.into(),
            name: name.into(),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec!["-c".into(), "echo hi > $out".into()],
            env: BTreeMap::new(),
            outputs: BTreeMap::from([(
                "out".to_string(),
                DerivationOutput {
                    path: None,
                    fixed: None,
                },
            )]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::new(),
            sandbox: SandboxProfile::default(),
        };
        for (p, o) in inputs {
            d.input_drvs
                .entry((*p).clone())
                .or_default()
                .insert(o.to_string());
        }
        d.env.insert("out".into(), String::new());
        d
    }

    #[test]
    fn fixed_output_hash_forms_agree() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let a = FixedOutput::parse(hex, Some("sha256"), "flat").expect("hex");
        let b = FixedOutput::parse(
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            Some("sha256"),
            "flat",
        )
        .expect("base32");
        let c = FixedOutput::parse(&a.sri(), None, "flat").expect("sri");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(FixedOutput::parse(hex, None, "flat").is_err());
        assert!(FixedOutput::parse(hex, Some("md5"), "flat").is_err());
        assert!(FixedOutput::parse("abc", Some("sha256"), "flat").is_err());
        assert!(FixedOutput::parse(hex, Some("sha256"), "nar").is_err());
    }

    #[test]
    fn fixed_output_url_change_changes_nothing_downstream() {
        let fixed = |url: &str| {
            let mut d = drv("src.tar", &[]);
            d.builder = "builtin:fetchurl".into();
            d.env.insert("url".into(), url.into());
            d.outputs.get_mut("out").expect("out").fixed = Some(FixedOutput {
                mode: HashMode::Flat,
                algo: HashAlgo::Sha256,
                hash: vec![7; 32],
            });
            d
        };
        let (f1, f2) = (fixed("http://a/x"), fixed("http://b/x"));
        let h1 = f1.hash_modulo(|_| unreachable!()).expect("hash");
        let h2 = f2.hash_modulo(|_| unreachable!()).expect("hash");
        assert_eq!(h1, h2);
        // the fixed drvs themselves differ (different .drv files) but a consumer does not
        assert_ne!(f1.encode(), f2.encode());
        let p1 = StorePath::from_fingerprint("x1", "src.tar.drv").expect("p");
        let p2 = StorePath::from_fingerprint("x2", "src.tar.drv").expect("p");
        let c1 = drv("app", &[(&p1, "out")]);
        let c2 = drv("app", &[(&p2, "out")]);
        let hc1 = c1.hash_modulo(|_| Ok(h1)).expect("hash");
        let hc2 = c2.hash_modulo(|_| Ok(h2)).expect("hash");
        assert_eq!(hc1, hc2);
    }

    #[test]
    fn output_paths_are_checked_and_outputs_required() {
        let mut d = drv("app", &[]);
        let h = d.hash_modulo(|_| unreachable!()).expect("hash");
        d.fill_output_paths(&h).expect("fill");
        d.check_output_paths(&h).expect("own paths");
        // claiming another derivation's output path
        let victim = StorePath::from_fingerprint("victim", "app").expect("p");
        let mut evil = d.clone();
        if let Some(o) = evil.outputs.get_mut("out") {
            o.path = Some(victim.clone());
        }
        let h2 = evil.hash_modulo(|_| unreachable!()).expect("hash");
        assert_eq!(h, h2, "output paths are blanked in the modulo hash");
        match evil.check_output_paths(&h2) {
            Err(DerivationError::OutputPathMismatch {
                output,
                declared,
                expected,
            }) => {
                assert_eq!(output, "out");
                assert_eq!(declared, victim);
                assert_eq!(Some(expected), d.outputs["out"].path.clone());
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        // a blank output path
        let mut blank = d.clone();
        if let Some(o) = blank.outputs.get_mut("out") {
            o.path = None;
        }
        assert!(matches!(
            blank.check_output_paths(&h),
            Err(DerivationError::MissingOutputPath { output }) if output == "out"
        ));
        // no outputs at all: refused by decode and by the check
        let mut none = d.clone();
        none.outputs.clear();
        assert!(matches!(
            Derivation::decode(&none.encode()),
            Err(DerivationError::NoOutputs)
        ));
        assert!(matches!(
            none.check_output_paths(&h),
            Err(DerivationError::NoOutputs)
        ));
    }

    #[test]
    fn fixed_modulo_hash_is_stable_after_filling_outputs() {
        let mut f = drv("src.tar", &[]);
        f.outputs.insert(
            "out".into(),
            DerivationOutput {
                path: None,
                fixed: Some(FixedOutput {
                    mode: HashMode::Flat,
                    algo: HashAlgo::Sha256,
                    hash: vec![3; 32],
                }),
            },
        );
        let h = f.hash_modulo(|_| unreachable!()).expect("hash");
        f.fill_output_paths(&h).expect("fill");
        let again = Derivation::decode(&f.encode()).expect("decode");
        assert_eq!(again.hash_modulo(|_| unreachable!()).expect("hash"), h);
        again.check_output_paths(&h).expect("fixed path");
    }

    #[test]
    fn modulo_hash_is_stable_after_filling_outputs() {
        let mut d = drv("app", &[]);
        let h = d.hash_modulo(|_| unreachable!()).expect("hash");
        d.fill_output_paths(&h).expect("fill");
        let out = d.outputs["out"].path.clone().expect("path").to_string();
        d.env.insert("out".into(), out);
        let again = Derivation::decode(&d.encode()).expect("decode");
        assert_eq!(again.hash_modulo(|_| unreachable!()).expect("hash"), h);
        // changing anything else changes it
        let mut e = again.clone();
        e.args.push("x".into());
        assert_ne!(e.hash_modulo(|_| unreachable!()).expect("hash"), h);
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
