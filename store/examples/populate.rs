//! Benchmark helper: `populate ROOT N` adds N small unrooted objects (each referring to up to
//! two earlier ones) to the store at ROOT, in one process, so `buildit store gc` has N dead
//! paths to collect (scripts/bench-store/run).

use buildit_store::{Store, StoreLayout, StorePath};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args.next().ok_or("usage: populate ROOT N")?;
    let n: usize = args.next().ok_or("usage: populate ROOT N")?.parse()?;
    let store = Store::open(StoreLayout::at(root))?;
    let _batch = store.hold_gc_lock()?;
    let mut made: Vec<StorePath> = Vec::with_capacity(n);
    let start = std::time::Instant::now();
    for i in 0..n {
        let refs: Vec<StorePath> = made.iter().rev().take(2).cloned().collect();
        let text = format!("object {i} of {n}\n");
        made.push(store.add_bytes(&format!("obj-{i}"), text.as_bytes(), &refs)?);
    }
    eprintln!("added {n} paths in {:.3} s", start.elapsed().as_secs_f64());
    Ok(())
}
