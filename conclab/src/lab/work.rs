//! A CPU-bound kernel with a known cost, for experiments that need "work".

use std::time::Instant;

/// Runs `iters` rounds of a xorshift generator and returns its state, so the compiler
/// cannot drop the loop. No memory traffic: it scales with cores, not with caches.
#[inline(never)]
pub fn busy(iters: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// How many [`busy`] iterations take one millisecond on this thread (best of 5 short
/// runs, so a preempted run does not lower it). Measured with one core busy: with every
/// core busy, turbo clocks drop and the same work can take a little longer.
pub fn iters_per_ms() -> u64 {
    let probe = 200_000u64;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        busy(probe, 7);
        best = best.min(t.elapsed().as_secs_f64());
    }
    ((probe as f64 / (best * 1e3)).max(1.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_depends_on_iterations_and_calibration_is_positive() {
        assert_ne!(busy(10, 1), busy(11, 1));
        assert!(iters_per_ms() > 1_000);
    }
}
