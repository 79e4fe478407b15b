//! Fuzz target `store_import`: feeds arbitrary bytes to `Store::import` as an export stream, into
//! one temporary store per fuzzing process (the first byte's low bit chooses whether
//! input-addressed paths are trusted, as with `--no-check-sigs`). Checks: no panic; on an error
//! nothing is registered (the number of valid paths is unchanged) and no staging entry is left
//! under `var/buildit/tmp`; on success every returned path is valid and passes a content check.
//! Work is bounded by the input: the importer reads the stream once and every archive is limited
//! by its header's size.

#![no_main]

use std::sync::OnceLock;

use buildit_store::{ImportOptions, Store, StoreLayout};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

// `Store` is used from the fuzzing thread only; libFuzzer runs the target on one thread.
unsafe impl Sync for Fixture {}
unsafe impl Send for Fixture {}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(StoreLayout::at(dir.path().join("root"))).expect("open store");
        Fixture { _dir: dir, store }
    })
}

fn valid_count(s: &Store) -> u64 {
    s.verify(false, false).expect("verify").checked
}

fn tmp_is_empty(s: &Store) -> bool {
    std::fs::read_dir(s.layout().tmp_dir())
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let before = valid_count(&f.store);
    let opts = ImportOptions {
        trust_input_addressed: flags & 1 == 1,
    };
    match f.store.import(stream, opts) {
        Ok(paths) => {
            for p in &paths {
                assert!(f.store.is_valid(p).expect("is_valid"), "{p} not valid");
            }
            assert!(f.store.verify(true, false).expect("verify").ok());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert_eq!(valid_count(&f.store), before, "registered on error: {e}");
        }
    }
    assert!(tmp_is_empty(&f.store), "a staging entry was left behind");
});
