//! Benchmark helper (scripts/bench-builder/run): writes N trivial derivations into a store,
//! as a chain (each depends on the previous) or a fan-out (one top depending on N leaves), with
//! a static busybox as the builder, and prints the top `.drv` path.
//!
//! `gen-drvs STORE_ROOT BUSYBOX_DIR chain|fanout N [SALT]`

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use buildit_store::derivation::{
    DerivationError, DerivationOutput, ModuloHasher, SandboxProfile, DRV_VERSION,
};
use buildit_store::{Derivation, Store, StoreLayout, StorePath};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err("usage: gen-drvs STORE_ROOT BUSYBOX_DIR chain|fanout N [SALT]".into());
    }
    let store = Store::open(StoreLayout::at(&a[1]))?;
    let bb = store.add_path(Path::new(&a[2]), Some("busybox"))?;
    let n: usize = a[4].parse()?;
    let salt = a.get(5).cloned().unwrap_or_default();
    let hasher = std::cell::RefCell::new(ModuloHasher::new());
    let mk = |name: &str,
              script: String,
              deps: &[(StorePath, StorePath)]|
     -> Result<(StorePath, StorePath), Box<dyn std::error::Error>> {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), format!("{bb}/bin"));
        env.insert("salt".to_string(), salt.clone());
        let mut input_drvs = BTreeMap::new();
        for (d, _) in deps {
            input_drvs.insert(d.clone(), BTreeSet::from(["out".to_string()]));
        }
        let mut drv = Derivation {
            version: DRV_VERSION.into(),
            name: name.into(),
            system: "x86_64-linux".into(),
            builder: format!("{bb}/bin/busybox"),
            args: vec!["sh".into(), "-c".into(), script],
            env,
            outputs: BTreeMap::from([(
                "out".to_string(),
                DerivationOutput {
                    path: None,
                    fixed: None,
                },
            )]),
            input_drvs,
            input_srcs: BTreeSet::from([bb.clone()]),
            sandbox: SandboxProfile::default(),
        };
        // Output paths from the hash modulo fixed outputs, as instantiation computes them (the
        // scheduler recomputes and checks them); inputs were written by this process, so their
        // hashes are in the memo.
        let h = hasher
            .borrow_mut()
            .hash(&drv, &mut |p| Err(DerivationError::UnknownInput(p.clone())))?;
        drv.fill_output_paths(&h)?;
        let p = store.add_bytes(&format!("{name}.drv"), &drv.encode(), &drv.references())?;
        hasher.borrow_mut().insert(p.clone(), h);
        let out = drv.outputs["out"].path.clone().ok_or("no out")?;
        Ok((p, out))
    };
    let top = match a[3].as_str() {
        "chain" => {
            let mut prev: Option<(StorePath, StorePath)> = None;
            for i in 0..n {
                let deps: Vec<_> = prev.iter().cloned().collect();
                let script = match &prev {
                    Some((_, o)) => format!("echo {i} {o} > $out"),
                    None => format!("echo {i} > $out"),
                };
                prev = Some(mk(&format!("chain-{i}"), script, &deps)?);
            }
            prev.ok_or("N must be > 0")?.0
        }
        "fanout" => {
            let mut leaves = Vec::new();
            for i in 0..n {
                leaves.push(mk(&format!("leaf-{i}"), format!("echo {i} > $out"), &[])?);
            }
            mk("top", "echo done > $out".into(), &leaves)?.0
        }
        other => return Err(format!("unknown shape {other}").into()),
    };
    println!("{top}");
    Ok(())
}
