//! Resource limits of evaluation, so that a runaway program (`let f = x: 1 + f x; in f 1`)
//! ends quickly with a diagnostic instead of taking the machine's memory:
//!
//! - the **call depth**: how many evaluations are nested on the native stack at once (one per
//!   level of non-tail recursion). The evaluator counts them where it may recurse (the same
//!   place that grows the stack through `stacker`) and fails with
//!   `buildit::eval::max-call-depth` past [`Evaluator::set_max_call_depth`]'s limit
//!   (default [`DEFAULT_MAX_CALL_DEPTH`]);
//! - an **interrupt**, raised from another thread by the embedder: the CLI watches the
//!   process's memory and calls [`interrupt_memory`] past its ceiling (`--max-eval-memory`).
//!   Every evaluation in the process then stops at its next step with
//!   `buildit::eval::memory-limit`. The flag is process-wide because memory is.
//!
//! [`Evaluator::set_max_call_depth`]: crate::Evaluator::set_max_call_depth

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The default maximum call depth. The deepest recursions in use (the 1,000,000-deep
/// `count` benchmark, scripts/bench-eval/deep-recursion.bld) pass with headroom, while an
/// endless recursion reaches it in a few seconds and about 1.5 GiB.
pub const DEFAULT_MAX_CALL_DEPTH: u32 = 2_000_000;

static DEFAULT_DEPTH: AtomicU32 = AtomicU32::new(DEFAULT_MAX_CALL_DEPTH);

/// The maximum call depth of evaluators created from now on in this process (the CLI's
/// `--max-call-depth`); existing ones keep theirs.
pub fn set_default_max_call_depth(n: u32) {
    DEFAULT_DEPTH.store(n, Ordering::Relaxed);
}

/// The maximum call depth a new evaluator starts with.
pub fn default_max_call_depth() -> u32 {
    DEFAULT_DEPTH.load(Ordering::Relaxed)
}

/// 0, or the memory ceiling (bytes) whose crossing interrupted evaluation.
static INTERRUPT: AtomicU64 = AtomicU64::new(0);

/// Stop every evaluation in this process at its next step with a memory-limit error naming
/// `ceiling` (bytes). Safe to call from any thread (the CLI's memory watchdog calls it).
pub fn interrupt_memory(ceiling: u64) {
    INTERRUPT.store(ceiling.max(1), Ordering::Relaxed);
}

/// Whether an interrupt is pending (one load: checked at every step of the interpreter loop).
#[inline(always)]
pub(crate) fn interrupted() -> bool {
    INTERRUPT.load(Ordering::Relaxed) != 0
}

/// Take the pending interrupt (its ceiling in bytes), clearing it: the evaluation that reports
/// it is the one that stops; a later one (the REPL's next input) runs unless it is raised again.
pub(crate) fn take_interrupt() -> u64 {
    INTERRUPT.swap(0, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use crate::{ErrorKind, Evaluator, PureIo};

    fn eval_limited(src: &str, depth: u32) -> Result<String, crate::EvalError> {
        let mut ev = Evaluator::new(Box::new(PureIo::default()));
        ev.set_max_call_depth(depth);
        let v = ev.eval_str(src)?;
        crate::print::print_value(&mut ev, &v)
    }

    /// Endless recursions of every shape end with the limit error, which names the cycle.
    #[test]
    fn endless_recursion_reaches_the_depth_limit() {
        for (src, chain) in [
            ("let f = x: 1 + f x; in f 1", "f → f → f → …"),
            ("let f = n: [n] ++ f (n + 1); in f 0", "f → f → f → …"),
            // (the cycle starts where the limit was hit: with either function)
            ("let f = x: 1 + g x; g = x: 2 * f x; in f 1", "f → g → …"),
            // through forced thunks only: no call is ever nested in another
            (
                "let f = n: { a = \"${(f (n + 1)).a}\"; }; in (f 0).a",
                "→ …",
            ),
            ("let f = x: builtins.head (map f [ x ]); in f 1", "→ …"),
        ] {
            let e = eval_limited(src, 10_000).expect_err(src);
            assert_eq!(e.kind(), ErrorKind::MaxCallDepth, "{src}: {e:?}");
            let d = e.to_diagnostic();
            assert!(d.code == "buildit::eval::max-call-depth", "{src}");
            assert!(d.message.contains("(10000)"), "{src}: {}", d.message);
            let mutual = ["f → g → f → g → …", "g → f → g → f → …"];
            let want: &[&str] = if chain.contains('g') {
                &mutual
            } else {
                &[chain]
            };
            assert!(
                want.iter().any(|c| d.message.ends_with(c)),
                "{src}: {}",
                d.message
            );
            assert!(!d.labels.is_empty(), "{src}: the cycle is labelled");
        }
    }

    /// Recursion below the limit is unaffected, and the depth is back to zero after an error
    /// (the same evaluator evaluates as deep again).
    #[test]
    fn the_limit_is_exact_and_resets() {
        let count = "let count = n: if n == 0 then 0 else 1 + count (n - 1); in count";
        let mut ev = Evaluator::new(Box::new(PureIo::default()));
        ev.set_max_call_depth(5_000);
        let ok = |ev: &mut Evaluator, n: u32| ev.eval_str(&format!("{count} {n}")).is_ok();
        assert!(ok(&mut ev, 4_000));
        assert!(!ok(&mut ev, 6_000));
        assert!(ok(&mut ev, 4_000));
        // not catchable, as Nix's stack overflow
        let e = ev
            .eval_str(&format!("builtins.tryEval ({count} 6000)"))
            .expect_err("uncatchable");
        assert_eq!(e.kind(), ErrorKind::MaxCallDepth);
    }

    /// The default lets the 1,000,000-deep recursion of the benchmark through.
    #[test]
    fn the_default_allows_a_million_deep_recursion() {
        const { assert!(super::DEFAULT_MAX_CALL_DEPTH >= 1_100_000) };
        let mut ev = Evaluator::new(Box::new(PureIo::default()));
        let v = ev
            .eval_str("let count = n: if n == 0 then 0 else 1 + count (n - 1); in count 200000")
            .expect("deep recursion");
        assert!(matches!(v, crate::Value::Int(200000)));
    }
}
