//! Waits that always end: a bounded spin (that yields to a thread sharing its CPU) and a
//! barrier whose waits time out. Nothing an experiment waits on can hang the kernel.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A wait that gave up at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a wait passed its deadline")
    }
}

/// Spins until `done()` holds; `Err` once `deadline` passes. After a short while it yields
/// between looks, so a waiter that shares a CPU with the thread it waits for lets it run;
/// when this process may use only one CPU it yields at once (spinning there only burns
/// the time slice the other thread needs).
#[inline]
pub fn spin_until(deadline: Instant, mut done: impl FnMut() -> bool) -> Result<(), Stalled> {
    // A partner that is running answers within a microsecond or so; after ~2 000 spins
    // (a few µs) it is more likely descheduled, and yielding lets it (or others) run.
    let (check_every, yield_after) = if one_cpu() { (1, 0) } else { (256, 2 * 1024) };
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(check_every) {
            if Instant::now() >= deadline {
                return Err(Stalled);
            }
            if spins >= yield_after {
                std::thread::yield_now();
            }
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// Whether this process may run on one CPU only (`taskset -c 0`, a one-CPU container).
pub fn one_cpu() -> bool {
    static ONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE.get_or_init(|| crate::lab::usable_cpus().len() < 2)
}

/// A barrier whose waits time out: `wait` returns `Err` if the others do not all arrive
/// in time (or one gave up), and every waiter is released — a stuck phase ends the run
/// instead of hanging it.
#[derive(Debug)]
pub struct TimedBarrier {
    n: usize,
    state: Mutex<(usize, u64, bool)>, // (arrived, generation, broken)
    cv: Condvar,
}

impl TimedBarrier {
    pub fn new(n: usize) -> TimedBarrier {
        TimedBarrier { n, state: Mutex::new((0, 0, false)), cv: Condvar::new() }
    }

    /// Waits until `n` threads have called `wait` for this generation.
    pub fn wait(&self, timeout: Duration) -> Result<(), Stalled> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.2 {
            return Err(Stalled);
        }
        let generation = st.1;
        st.0 += 1;
        if st.0 == self.n {
            st.0 = 0;
            st.1 += 1;
            self.cv.notify_all();
            return Ok(());
        }
        let (mut st, res) =
            self.cv.wait_timeout_while(st, timeout, |s| s.1 == generation && !s.2).unwrap_or_else(|e| e.into_inner());
        if st.1 != generation {
            return Ok(());
        }
        if res.timed_out() || st.2 {
            st.2 = true; // break the barrier: everyone else gives up too
            self.cv.notify_all();
        }
        Err(Stalled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_until_times_out() {
        assert!(spin_until(Instant::now() + Duration::from_millis(5), || false).is_err());
        assert!(spin_until(Instant::now(), || true).is_ok());
    }

    #[test]
    fn barrier_passes_together_and_breaks_on_timeout() {
        let b = TimedBarrier::new(3);
        std::thread::scope(|s| {
            let hs: Vec<_> =
                (0..3).map(|_| s.spawn(|| (0..50).all(|_| b.wait(Duration::from_secs(5)).is_ok()))).collect();
            assert!(hs.into_iter().all(|h| h.join().unwrap()));
        });
        let b = TimedBarrier::new(2);
        assert!(b.wait(Duration::from_millis(5)).is_err());
        assert!(b.wait(Duration::from_secs(5)).is_err(), "a broken barrier stays broken");
    }
}
