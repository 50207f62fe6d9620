//! Self-check exercises of notebook 02: the reader writes a function in a cell, a checker
//! here runs it on threads of its own, bounded in time, and answers with a [`Verdict`].

use crate::lab::findings::group;
use crate::lab::rng::Rng;
use crate::lab::{Verdict, cores, fmt_num};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a reader's code may run in one check before the checker gives up on it.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `f` on a thread of its own and waits at most `limit` for its answer. A panic or a
/// time-out comes back as `Err` (a thread that never returns is left behind: the reader's
/// code is what would have to end it).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("checker".into()).spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(out);
    });
    if let Err(e) = spawned {
        return Err(format!("could not start a thread ({e})"));
    }
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("your code panicked".into()),
        Err(_) => Err(format!("your code did not finish within {} s", limit.as_secs())),
    }
}

// ------------------------------------------------------------------ a counter that keeps every increment

const COUNTER: &str = "a shared counter that keeps every increment";

/// Checks an `increment` function for a shared `AtomicU64`: 8 runs in which one more
/// thread than the machine has CPUs (at least 3) each call it 1 000 000 times at once, so
/// the threads both run in parallel and get preempted. Passes when no run lost (or added)
/// an increment.
pub fn check_counter(increment: fn(&AtomicU64)) -> Verdict {
    check_counter_with(increment, 8, 1_000_000)
}

fn check_counter_with(increment: fn(&AtomicU64), runs: usize, per_thread: u64) -> Verdict {
    let threads = (cores() + 1).clamp(3, 5);
    let expected = threads as u64 * per_thread;
    let outcome = bounded(LIMIT, move || {
        let mut finals = Vec::with_capacity(runs);
        for _ in 0..runs {
            let c = AtomicU64::new(0);
            let start = std::sync::Barrier::new(threads);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        start.wait();
                        for _ in 0..per_thread {
                            increment(&c);
                        }
                    });
                }
            });
            finals.push(c.into_inner());
        }
        finals
    });
    let finals = match outcome {
        Ok(f) => f,
        Err(e) => return Verdict::not_yet(COUNTER, e, "each call should add exactly 1 and return"),
    };
    let what = format!("{runs} runs × {threads} threads × {} calls", group(per_thread));
    let lost: u64 = finals.iter().map(|&v| expected.saturating_sub(v)).sum();
    let lossy = finals.iter().filter(|&&v| v < expected).count();
    if finals.iter().any(|&v| v > expected) {
        return Verdict::not_yet(
            COUNTER,
            format!("{what}: a run ended above {} — each call must add exactly 1", group(expected)),
            "increment by 1, not more",
        );
    }
    if lossy > 0 {
        return Verdict::not_yet(
            COUNTER,
            format!("{what}: {} increments lost, in {lossy} of {runs} runs", group(lost)),
            "between your load and your store another thread's increment slips in and is overwritten: \
             make the read-modify-write one atomic operation (`fetch_add`), or retry with \
             `compare_exchange` until no other thread got in between",
        );
    }
    Verdict::pass(
        COUNTER,
        format!(
            "{what}: every run ended at exactly {} (0 lost in {runs} runs: each atomic read-modify-write \
             sees the latest value and no other thread can get in between)",
            group(expected)
        ),
    )
}

// ------------------------------------------------------------------ a sharded histogram

const SHARDS: &str = "a histogram counted in shards";

/// The input of [`check_histogram`]: one slice of bucket numbers per thread.
fn histogram_input(threads: usize, per_thread: usize, buckets: usize) -> Vec<Vec<u32>> {
    (0..threads)
        .map(|i| {
            let mut x = Rng::new(i as u64 + 7);
            (0..per_thread).map(|_| (x.next_u64() % buckets as u64) as u32).collect()
        })
        .collect()
}

/// The reference the reader's code races against: one thread per part, all counting into
/// one shared `Mutex<Vec<u64>>`.
pub fn histogram_with_mutex(parts: &[Vec<u32>], buckets: usize) -> Vec<u64> {
    let h = Mutex::new(vec![0u64; buckets]);
    std::thread::scope(|s| {
        for part in parts {
            let h = &h;
            s.spawn(move || {
                for &k in part {
                    h.lock().unwrap_or_else(|e| e.into_inner())[k as usize] += 1;
                }
            });
        }
    });
    h.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Checks a histogram function `count(parts, buckets)`: `parts` holds one `Vec` of bucket
/// numbers (each below `buckets`) per thread the function should use; it returns the
/// counts per bucket. Passes when the counts are exact and the function is at least twice
/// as fast as one `Mutex<Vec<u64>>` shared by one thread per part (median of 3 timings
/// each, on the same input).
pub fn check_histogram(count: fn(&[Vec<u32>], usize) -> Vec<u64>) -> Verdict {
    check_histogram_with(count, 1_000_000)
}

fn check_histogram_with(count: fn(&[Vec<u32>], usize) -> Vec<u64>, per_thread: usize) -> Verdict {
    let threads = cores().clamp(2, 4);
    let buckets = 16;
    let outcome = bounded(LIMIT, move || {
        let parts = Arc::new(histogram_input(threads, per_thread, buckets));
        let mut want = vec![0u64; buckets];
        for &k in parts.iter().flatten() {
            want[k as usize] += 1;
        }
        let time = |f: &dyn Fn() -> Vec<u64>| {
            let mut secs = Vec::new();
            let mut last = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                last = f();
                secs.push(t.elapsed().as_secs_f64());
            }
            secs.sort_by(f64::total_cmp);
            (last, secs[1])
        };
        let (theirs, their_secs) = time(&|| count(&parts, buckets));
        let (_, mutex_secs) = time(&|| histogram_with_mutex(&parts, buckets));
        (want, theirs, their_secs, mutex_secs)
    });
    let (want, theirs, their_secs, mutex_secs) = match outcome {
        Ok(x) => x,
        Err(e) => return Verdict::not_yet(SHARDS, e, "count every part and return one Vec with a total per bucket"),
    };
    let what = format!("{threads} parts × {} values into {buckets} buckets", group(per_thread as u64));
    if theirs.len() != buckets {
        return Verdict::not_yet(
            SHARDS,
            format!("{what}: your function returned {} buckets", theirs.len()),
            "return a Vec with one count per bucket: vec![0u64; buckets] to start",
        );
    }
    if theirs != want {
        let (got, total): (u64, u64) = (theirs.iter().sum(), want.iter().sum());
        return Verdict::not_yet(
            SHARDS,
            format!("{what}: the counts are wrong (they add up to {} of {})", group(got), group(total)),
            "count each part into its own Vec on its own thread, then add the Vecs bucket by bucket after joining",
        );
    }
    let speedup = mutex_secs / their_secs.max(1e-9);
    let ratio = if speedup >= 1.0 {
        format!("{}× faster", fmt_num(speedup))
    } else {
        format!("{}× slower", fmt_num(1.0 / speedup))
    };
    let timing = format!(
        "{} ms against {} ms for the shared Mutex ({ratio})",
        fmt_num(their_secs * 1e3),
        fmt_num(mutex_secs * 1e3)
    );
    if speedup < 2.0 {
        return Verdict::not_yet(
            SHARDS,
            format!("{what}: exact, but {timing}"),
            "do not share anything while counting: give each thread its own Vec (a shard), and merge the shards \
             once at the end",
        );
    }
    Verdict::pass(SHARDS, format!("{what}: exact, {timing}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn fetch_add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn load_then_store(c: &AtomicU64) {
        let v = c.load(Ordering::Relaxed);
        c.store(v + 1, Ordering::Relaxed);
    }

    fn twice(c: &AtomicU64) {
        c.fetch_add(2, Ordering::Relaxed);
    }

    #[test]
    fn the_counter_checker_passes_fetch_add_and_catches_lost_updates() {
        let v = check_counter_with(fetch_add, 4, 200_000);
        assert!(v.passed, "{v}");
        // A lost update needs the threads to overlap or a preemption inside the window;
        // on a busy machine one attempt may see neither, ten in a row essentially never.
        let caught = (0..10).map(|_| check_counter_with(load_then_store, 4, 200_000)).find(|v| !v.passed);
        let v = caught.expect("ten attempts of a racy load-then-store lost no update");
        assert!(v.detail.contains("lost"), "{v}");
        assert!(!check_counter_with(twice, 1, 1_000).passed);
    }

    fn shards(parts: &[Vec<u32>], buckets: usize) -> Vec<u64> {
        let mine: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = parts
                .iter()
                .map(|p| {
                    s.spawn(move || {
                        let mut h = vec![0u64; buckets];
                        for &k in p {
                            h[k as usize] += 1;
                        }
                        h
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut total = vec![0u64; buckets];
        for h in mine {
            for (t, v) in total.iter_mut().zip(h) {
                *t += v;
            }
        }
        total
    }

    fn forgets_the_merge(parts: &[Vec<u32>], buckets: usize) -> Vec<u64> {
        let mut h = vec![0u64; buckets];
        for &k in &parts[0] {
            h[k as usize] += 1;
        }
        h
    }

    #[test]
    fn the_histogram_checker_wants_exact_and_fast() {
        // Exactness is deterministic; the speed verdict depends on the machine (beside a
        // CPU hog the reference Mutex run can be the slow one), so it is not asserted here.
        let v = check_histogram_with(shards, 300_000);
        assert!(v.detail.contains("exact"), "{v}");
        let v = check_histogram_with(histogram_with_mutex, 300_000);
        assert!(v.detail.contains("exact"), "{v}");
        let v = check_histogram_with(forgets_the_merge, 300_000);
        assert!(!v.passed && v.detail.contains("wrong"), "{v}");
    }
}
