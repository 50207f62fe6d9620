//! Starting threads together: spawn all of them first, then release them at once, so a
//! measurement covers the work and not thread creation; and never hang if a thread
//! cannot be created. [`run_together`] runs a job to completion on n threads;
//! [`run_for`] runs n workers for a fixed time and counts their operations.

use crate::lab::RunError;
use crate::lab::os::{Switches, thread_cpu_seconds};
use serde::Serialize;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a started thread waits to be released before it gives up (a safeguard: the
/// gate is always opened or aborted on every path).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// A one-shot start line: threads [`Gate::wait`] until the gate is opened or aborted.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Releases every waiter; `wait` returns `true`.
    pub fn open(&self) {
        self.set(true)
    }

    /// Releases every waiter; `wait` returns `false` (they should not do their work).
    pub fn abort(&self) {
        self.set(false)
    }

    fn set(&self, go: bool) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(go);
        self.cv.notify_all();
    }

    /// Blocks until the gate opens (`true`) or is aborted or `timeout` passes (`false`).
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self.cv.wait_timeout_while(guard, timeout, |s| s.is_none()).unwrap_or_else(|e| e.into_inner());
        *guard == Some(true)
    }
}

/// What [`run_together`] returns: each thread's result (in thread order) and the wall
/// time from the first thread starting its work to the last one finishing.
#[derive(Debug)]
pub struct Together<T> {
    pub results: Vec<T>,
    pub wall: Duration,
    /// When the first thread started its work.
    pub start: Instant,
}

/// Runs `work(i)` on `n` scoped threads that start together: every thread is created
/// and has run `prepare(i)` (pin itself, say) before any starts `work`. If a thread
/// cannot be created or `prepare` fails, the others are released without working, all
/// are joined, and the error is returned. A panic in `work` is returned as an error too.
pub fn run_together<T, P, W>(n: usize, prepare: P, work: W) -> io::Result<Together<T>>
where
    T: Send,
    P: Fn(usize) -> Result<(), String> + Sync,
    W: Fn(usize) -> T + Sync,
{
    let gate = Gate::new();
    let ready = Mutex::new((0usize, None::<String>));
    let all_ready = Condvar::new();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        let mut spawn_error = None;
        for i in 0..n {
            let (gate, ready, all_ready, prepare, work) = (&gate, &ready, &all_ready, &prepare, &work);
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                let prepared = prepare(i);
                {
                    let mut r = ready.lock().unwrap_or_else(|e| e.into_inner());
                    r.0 += 1;
                    if let Err(e) = prepared {
                        r.1.get_or_insert(e);
                    }
                    all_ready.notify_all();
                }
                if !gate.wait(RELEASE_TIMEOUT) {
                    return None;
                }
                let start = Instant::now();
                let out = work(i);
                Some((out, start, Instant::now()))
            });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        // Wait (bounded) until every started thread has prepared itself.
        let started = handles.len();
        let failure = {
            let r = ready.lock().unwrap_or_else(|e| e.into_inner());
            let (r, _) =
                all_ready.wait_timeout_while(r, RELEASE_TIMEOUT, |r| r.0 < started).unwrap_or_else(|e| e.into_inner());
            match (&spawn_error, &r.1) {
                (Some(e), _) => Some(io::Error::new(e.kind(), format!("could not start thread {started} of {n}: {e}"))),
                (None, Some(msg)) => Some(io::Error::other(msg.clone())),
                (None, None) if r.0 < started => Some(io::Error::other("threads did not get ready within 30 s")),
                _ => None,
            }
        };
        if failure.is_some() {
            gate.abort();
        } else {
            gate.open();
        }
        let mut results = Vec::with_capacity(started);
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        let mut panicked = false;
        for h in handles {
            match h.join() {
                Ok(Some((out, a, b))) => {
                    first = Some(first.map_or(a, |f| f.min(a)));
                    last = Some(last.map_or(b, |l| l.max(b)));
                    results.push(out);
                }
                Ok(None) => {}
                Err(_) => panicked = true,
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if panicked {
            return Err(io::Error::other("a worker thread panicked"));
        }
        let start = first.unwrap_or_else(Instant::now);
        let wall = last.map_or(Duration::ZERO, |b| b.duration_since(start));
        Ok(Together { results, wall, start })
    })
}

/// What a [`run_for`] measured: each worker's operation count, own running time (wall)
/// and CPU time, and the context switches of all workers together.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Run {
    pub ops: Vec<u64>,
    pub secs: Vec<f64>,
    /// CPU time each worker used while it ran (less than its `secs` when it waited for a CPU).
    pub cpu_secs: Vec<f64>,
    pub switches: Switches,
}

impl Run {
    /// Total throughput in millions of operations per second: every worker's operations
    /// over the window in which they counted (the longest worker's running time). Not the
    /// sum of each worker's own rate: on a busy machine the scheduler starts workers
    /// milliseconds apart, and a worker that counted only for the last few milliseconds
    /// would add a full rate it never kept up — more threads would look faster.
    pub fn mops(&self) -> f64 {
        let window = self.window();
        if window > 0.0 { self.ops.iter().sum::<u64>() as f64 / window / 1e6 } else { 0.0 }
    }

    /// The longest worker's running time, in seconds: the window the workers counted in.
    pub fn window(&self) -> f64 {
        self.secs.iter().copied().fold(0.0, f64::max)
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

    /// How many CPUs' worth of time the workers got together: their CPU time over the
    /// window they counted in. n workers each on a CPU of its own make n; n workers taking
    /// turns on one CPU (or squeezed by other processes) make about 1 or less.
    pub fn cpus_used(&self) -> f64 {
        let window = self.window();
        if window > 0.0 { (self.cpu_secs.iter().sum::<f64>() / window).min(self.secs.len() as f64) } else { 0.0 }
    }
}

/// Operations per stop-flag check: keeps the check out of the measured cost while bounding
/// how long a worker runs past the end.
pub const BATCH: u64 = 64;

/// Runs `op` in batches until `stop` is set; returns how many times it ran. At least one
/// batch runs, so a worker the scheduler started late still reports what it did.
#[inline]
pub fn batched(stop: &AtomicBool, mut op: impl FnMut()) -> u64 {
    let mut n = 0;
    loop {
        for _ in 0..BATCH {
            op();
        }
        n += BATCH;
        if stop.load(Ordering::Relaxed) {
            return n;
        }
    }
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
                let cpu = thread_cpu_seconds();
                let t = Instant::now();
                let ops = body(i, stop);
                let secs = t.elapsed().as_secs_f64();
                (ops, secs, thread_cpu_seconds() - cpu, Switches::this_thread().since(before))
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
                Ok((ops, secs, cpu, sw)) => {
                    run.ops.push(ops);
                    run.secs.push(secs);
                    run.cpu_secs.push(cpu);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_threads_run_and_results_keep_their_order() {
        let t = run_together(4, |_| Ok(()), |i| i * 10).unwrap();
        assert_eq!(t.results, vec![0, 10, 20, 30]);
    }

    #[test]
    fn wall_time_excludes_preparation() {
        let t = run_together(
            2,
            |_| {
                std::thread::sleep(Duration::from_millis(50));
                Ok(())
            },
            |_| std::thread::sleep(Duration::from_millis(5)),
        )
        .unwrap();
        assert!(t.wall < Duration::from_millis(45), "{:?}", t.wall);
        assert!(t.wall >= Duration::from_millis(5));
    }

    #[test]
    fn a_failed_preparation_releases_everyone_without_working() {
        let worked = AtomicUsize::new(0);
        let e = run_together(
            3,
            |i| if i == 1 { Err("cannot pin".into()) } else { Ok(()) },
            |_| {
                worked.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot pin"));
        assert_eq!(worked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn gate_times_out_closed() {
        assert!(!Gate::new().wait(Duration::from_millis(5)));
        let g = Gate::new();
        g.open();
        assert!(g.wait(Duration::from_millis(5)));
    }

    #[test]
    fn a_late_worker_does_not_count_as_a_full_rate() {
        // Two workers at the same speed, one started 9 ms late: 1 100 operations in a 10 ms
        // window are 0.11 M/s, not the 0.2 M/s their own rates add up to.
        let r = Run { ops: vec![1000, 100], secs: vec![0.010, 0.001], cpu_secs: vec![0.010, 0.001], ..Run::default() };
        assert!((r.mops() - 0.11).abs() < 1e-9, "{}", r.mops());
        assert!((r.cpus_used() - 1.1).abs() < 1e-9, "{}", r.cpus_used());
    }

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
        assert_eq!(r.cpu_secs.len(), 3);
        assert!(r.cpus_used() > 0.0 && r.cpus_used() <= 3.0, "{}", r.cpus_used());
    }
}
