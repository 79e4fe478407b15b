//! Limits on evaluation that need the process around it: the memory ceiling is watched from a
//! background thread (the evaluator itself reads no clock and no `/proc`), which interrupts
//! evaluation when the process crosses it.

/// The default memory ceiling of evaluation (`--max-eval-memory`): far above what real
/// package sets need, well below what takes a machine down.
pub const DEFAULT_MAX_EVAL_MEMORY: u64 = 3 << 30;

/// The resident memory of this process in bytes (`VmRSS` of /proc/self/status), native stacks
/// and every allocator included.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Watch the process's memory from a background thread (every 10 ms) and interrupt evaluation
/// ([`buildit_eval::limits::interrupt_memory`]) when it crosses `ceiling` bytes; evaluation
/// then ends with `buildit::eval::memory-limit`. It is raised once per crossing: the memory
/// must fall below the ceiling before it is raised again (the REPL goes on after the error).
pub fn watch_memory(ceiling: u64) {
    if ceiling == 0 || resident_bytes().is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("memory-watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut armed = true;
            loop {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let Some(rss) = resident_bytes() else { return };
                if armed && rss > ceiling {
                    buildit_eval::limits::interrupt_memory(ceiling);
                    armed = false;
                } else if rss <= ceiling {
                    armed = true;
                }
            }
        });
    // without the thread there is no ceiling, as with `--max-eval-memory 0`
    drop(spawned);
}
