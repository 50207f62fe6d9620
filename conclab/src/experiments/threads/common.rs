//! Helpers shared by this notebook's experiments: fixed-duration runs of worker threads,
//! bounded spin waits, a barrier with a timeout, a tiny random generator.

use crate::lab::os::Switches;
use crate::lab::{RunError, Stats};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a [`run_for`] measured: each worker's operation count and own running time, and
/// the context switches of all workers together.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Run {
    pub ops: Vec<u64>,
    pub secs: Vec<f64>,
    pub switches: Switches,
}

impl Run {
    /// Total throughput in millions of operations per second: the sum of every worker's
    /// own rate, so a worker that started late is not charged for the wait.
    pub fn mops(&self) -> f64 {
        self.ops.iter().zip(&self.secs).map(|(o, s)| if *s > 0.0 { *o as f64 / s } else { 0.0 }).sum::<f64>() / 1e6
    }

    /// Fewest operations of a worker divided by most (1 = perfectly even; 0 = someone starved).
    pub fn fairness(&self) -> f64 {
        let max = self.ops.iter().copied().max().unwrap_or(0);
        let min = self.ops.iter().copied().min().unwrap_or(0);
        if max == 0 { 1.0 } else { min as f64 / max as f64 }
    }

    /// Sum of every worker's running time, in seconds.
    pub fn thread_seconds(&self) -> f64 {
        self.secs.iter().sum()
    }
}

/// Operations per stop-flag check: keeps the check out of the measured cost while bounding
/// how long a worker runs past the end.
pub const BATCH: u64 = 64;

/// Runs `op` in batches until `stop` is set; returns how many times it ran.
#[inline]
pub fn batched(stop: &AtomicBool, mut op: impl FnMut()) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            op();
        }
        n += BATCH;
    }
    n
}

/// Starts `threads` scoped workers, lets them all begin at once, stops them after
/// `duration`, and joins every one. `body(i, stop)` is worker `i`'s loop: it must return
/// (with its operation count) soon after `stop` is set. An error if the OS refuses a
/// thread or a worker panics; the workers already started are stopped and joined first.
pub fn run_for<F>(threads: usize, duration: Duration, body: F) -> Result<Run, String>
where
    F: Fn(usize, &AtomicBool) -> u64 + Sync,
{
    let ready = AtomicUsize::new(0);
    let go = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(threads);
        let mut failed = None;
        for i in 0..threads {
            let (ready, go, stop, body) = (&ready, &go, &stop, &body);
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                ready.fetch_add(1, Ordering::AcqRel);
                while !go.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                let before = Switches::this_thread();
                let t = Instant::now();
                let ops = body(i, stop);
                (ops, t.elapsed().as_secs_f64(), Switches::this_thread().since(before))
            });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    failed = Some(format!("the OS refused thread {} ({e})", i + 1));
                    stop.store(true, Ordering::Release);
                    break;
                }
            }
        }
        // Wait (bounded) until every worker is ready, so they start together.
        let deadline = Instant::now() + Duration::from_secs(10);
        while failed.is_none() && ready.load(Ordering::Acquire) < handles.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        go.store(true, Ordering::Release);
        if failed.is_none() {
            std::thread::sleep(duration);
        }
        stop.store(true, Ordering::Release);
        let mut run = Run::default();
        for h in handles {
            match h.join() {
                Ok((ops, secs, sw)) => {
                    run.ops.push(ops);
                    run.secs.push(secs);
                    run.switches = run.switches + sw;
                }
                Err(_) => failed = failed.or(Some("a worker thread panicked".into())),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(run),
        }
    })
}

/// Turns a failed run into the error an experiment returns, blaming the thread count.
pub fn threads_error(threads: usize) -> impl Fn(String) -> RunError {
    move |e| RunError::new(format!("running {threads} threads"), e)
}

/// Median and quartiles of `values` (which must not be empty).
pub fn stats(values: &[f64]) -> Stats {
    Stats::from_samples(values).unwrap_or(Stats {
        n: 0,
        median: 0.0,
        p25: 0.0,
        p75: 0.0,
        min: 0.0,
        max: 0.0,
        mean: 0.0,
        cv: 0.0,
    })
}

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
    let (check_every, yield_after) = if one_cpu() { (1, 0) } else { (1024, 64 * 1024) };
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

/// xorshift64: a tiny, fast, reproducible random generator for jitter and choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (`n` > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
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
    fn run_for_counts_and_joins() {
        let r = run_for(3, Duration::from_millis(20), |i, stop| {
            batched(stop, || {
                std::hint::black_box(i);
            })
        })
        .unwrap();
        assert_eq!(r.ops.len(), 3);
        assert!(r.ops.iter().all(|o| *o > 0 && o % BATCH == 0));
        assert!(r.mops() > 0.0 && r.fairness() > 0.0 && r.fairness() <= 1.0);
    }

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

    #[test]
    fn rng_is_spread() {
        let mut r = Rng::new(1);
        let mut seen = [false; 8];
        for _ in 0..200 {
            seen[r.below(8) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
