//! Running N units at once, one OS thread per unit or one tokio task per unit: timed (from
//! the first start to the last finish) or held (every unit started and waiting, memory
//! read, then released). Every thread is joined and every task awaited before these
//! return, on every path; every wait has a deadline.

use super::memory::{self, UnitMemory};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a held run waits for all its units to arrive before it gives up (and releases them).
pub(crate) const ARRIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Failures of some units: how many, and the first message.
fn failures(what: &str, n: usize, errors: &[String]) -> Result<(), String> {
    match errors.first() {
        None => Ok(()),
        Some(first) => Err(format!("{} of {n} {what} failed; the first: {first}", errors.len())),
    }
}

/// Runs `unit(i)` for `i in 0..n`, each on an OS thread of its own (std's default stack
/// size), all started one after another and then joined; returns the wall time.
pub(crate) fn timed_threads<U>(n: usize, unit: U) -> Result<Duration, String>
where
    U: Fn(usize) -> Result<(), String> + Sync,
{
    let unit = &unit;
    let start = Instant::now();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        let mut refused = None;
        for i in 0..n {
            match std::thread::Builder::new().spawn_scoped(s, move || unit(i)) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    refused = Some(format!("the OS refused thread {} of {n}: {e}", i + 1));
                    break;
                }
            }
        }
        // The threads started so far end by themselves (each unit's waits are bounded).
        let errors: Vec<String> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| Err("a unit panicked".into())).err())
            .collect();
        if let Some(r) = refused {
            return Err(r);
        }
        failures("threads", n, &errors)?;
        Ok(start.elapsed())
    })
}

/// Starts `unit(i)` for `i in 0..n` on threads of their own; once `arrived()` reaches `n`
/// (every unit is waiting) reads the memory they added, then calls `release()` (always,
/// also when something failed), unparks every thread, and joins them all.
pub(crate) fn held_threads<U, A, R>(n: usize, arrived: A, release: R, unit: U) -> Result<UnitMemory, String>
where
    U: Fn(usize) -> Result<(), String> + Sync,
    A: Fn() -> usize,
    R: Fn(),
{
    let unit = &unit;
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        let base = memory::baseline();
        let mut outcome = Ok(UnitMemory { rss_kib: 0.0, kernel_kib: 0.0, rss_total_mib: 0.0 });
        for i in 0..n {
            match std::thread::Builder::new().spawn_scoped(s, move || unit(i)) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    outcome = Err(format!("the OS refused thread {} of {n}: {e}", i + 1));
                    break;
                }
            }
        }
        if outcome.is_ok() {
            let deadline = Instant::now() + ARRIVE_TIMEOUT;
            while arrived() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(500));
            }
            outcome = if arrived() >= n {
                Ok(memory::snapshot().per_unit_since(&base, n))
            } else {
                Err(format!("only {} of {n} threads were waiting after {} s", arrived(), ARRIVE_TIMEOUT.as_secs()))
            };
        }
        release();
        for h in &handles {
            h.thread().unpark();
        }
        let errors: Vec<String> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| Err("a unit panicked".into())).err())
            .collect();
        let m = outcome?;
        failures("threads", n, &errors)?;
        Ok(m)
    })
}

/// Inside a runtime: spawns `unit(i)` for `i in 0..n` as tokio tasks and awaits them all;
/// returns the wall time from the first spawn to the last task's end.
pub(crate) async fn timed_tasks<U, F>(n: usize, unit: U) -> Result<Duration, String>
where
    U: Fn(usize) -> F,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(unit(i))).collect();
    let mut errors = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    failures("tasks", n, &errors)?;
    Ok(start.elapsed())
}

/// Inside a runtime: spawns `unit(i)` for `i in 0..n`; once `arrived()` reaches `n` reads
/// the memory they added, calls `release()` and, with `abort`, cancels every task (a task
/// parked in a long sleep is released that way); then awaits them all.
pub(crate) async fn held_tasks<U, F, A, R>(
    n: usize,
    arrived: A,
    release: R,
    abort: bool,
    unit: U,
) -> Result<UnitMemory, String>
where
    U: Fn(usize) -> F,
    F: Future<Output = Result<(), String>> + Send + 'static,
    A: Fn() -> usize,
    R: Fn(),
{
    let mut handles = Vec::with_capacity(n);
    let base = memory::baseline();
    for i in 0..n {
        handles.push(tokio::spawn(unit(i)));
    }
    let deadline = Instant::now() + ARRIVE_TIMEOUT;
    while arrived() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let outcome = if arrived() >= n {
        Ok(memory::snapshot().per_unit_since(&base, n))
    } else {
        Err(format!("only {} of {n} tasks were waiting after {} s", arrived(), ARRIVE_TIMEOUT.as_secs()))
    };
    release();
    if abort {
        for h in &handles {
            h.abort();
        }
    }
    let mut errors = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) if e.is_cancelled() && abort => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    let m = outcome?;
    failures("tasks", n, &errors)?;
    Ok(m)
}

/// A counter of units that have reached their wait.
#[derive(Debug, Default)]
pub(crate) struct Arrivals(AtomicUsize);

impl Arrivals {
    pub(crate) fn arrive(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rt::{self, Rt};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn timed_threads_join_all_and_report_failures() {
        let d = timed_threads(8, |_| Ok(())).unwrap();
        assert!(d < Duration::from_secs(10));
        let e = timed_threads(4, |i| if i == 2 { Err("boom".into()) } else { Ok(()) }).unwrap_err();
        assert!(e.contains("1 of 4 threads failed; the first: boom"), "{e}");
    }

    #[test]
    fn held_threads_release_on_every_path() {
        let arrived = Arrivals::default();
        let released = AtomicBool::new(false);
        let m = held_threads(
            16,
            || arrived.count(),
            || released.store(true, Ordering::Release),
            |_| {
                arrived.arrive();
                while !released.load(Ordering::Acquire) {
                    std::thread::park_timeout(Duration::from_secs(5));
                }
                Ok(())
            },
        );
        assert!(m.is_ok(), "{m:?}");
        assert!(released.load(Ordering::Relaxed));
    }

    #[test]
    fn held_tasks_are_cancelled_and_awaited() {
        let out = rt::run(Rt::multi(2), || async {
            let arrived = Arc::new(Arrivals::default());
            let a = arrived.clone();
            held_tasks(
                100,
                move || a.count(),
                || {},
                true,
                move |_| {
                    let arrived = arrived.clone();
                    async move {
                        arrived.arrive();
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(())
                    }
                },
            )
            .await
        })
        .unwrap();
        assert!(out.is_ok(), "{out:?}");
    }
}
