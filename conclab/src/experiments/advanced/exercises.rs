//! Self-check exercises of notebook 06: the reader writes async code in a cell, a checker
//! here runs it on a fresh runtime (bounded in time) and answers with a [`Verdict`].
//!
//! - [`check_bounded_concurrency`]: run [`BOUND_JOBS`] jobs with at most [`BOUND_LIMIT`]
//!   at once (a `Semaphore`, `buffer_unordered`, …), yet more than one at once.

use crate::lab::check::Verdict;
use crate::lab::rt::{self, Rt};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const BOUND_EXERCISE: &str = "bound concurrency";
/// Jobs [`check_bounded_concurrency`] hands out.
pub const BOUND_JOBS: usize = 20;
/// The most jobs that may run at once in [`check_bounded_concurrency`].
pub const BOUND_LIMIT: usize = 4;

/// One job of [`check_bounded_concurrency`]: `run().await` takes about 5 ms (a timer, not
/// CPU) and counts how many jobs were running meanwhile.
#[derive(Debug)]
pub struct Job {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

impl Job {
    /// Runs the job.
    pub async fn run(self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// Gives `runner` [`BOUND_JOBS`] [`Job`]s on a multi-thread runtime; passes when every
/// job ran, never more than [`BOUND_LIMIT`] at once, and more than one at once.
///
/// ```no_run
/// use conclab::prelude::*;
/// // Unbounded: all 20 at once.
/// let v = check_bounded_concurrency(|jobs| async move {
///     let handles: Vec<_> = jobs.into_iter().map(|j| tokio::spawn(j.run())).collect();
///     for h in handles {
///         h.await.unwrap();
///     }
/// });
/// assert!(!v.passed);
/// ```
pub fn check_bounded_concurrency<F, Fut>(runner: F) -> Verdict
where
    F: FnOnce(Vec<Job>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (now, max, done) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let jobs: Vec<Job> =
        (0..BOUND_JOBS).map(|_| Job { now: now.clone(), max: max.clone(), done: done.clone() }).collect();
    let out = rt::run(Rt::multi(2).timeout(Duration::from_secs(10)), move || runner(jobs));
    if let Err(e) = out {
        return Verdict::not_yet(BOUND_EXERCISE, format!("the run failed: {e}"), "await every job before returning");
    }
    let (max, done) = (max.load(Ordering::SeqCst), done.load(Ordering::SeqCst));
    if done < BOUND_JOBS {
        Verdict::not_yet(
            BOUND_EXERCISE,
            format!("{done} of {BOUND_JOBS} jobs finished"),
            "run every job, and await them all before the cell's future ends",
        )
    } else if max > BOUND_LIMIT {
        Verdict::not_yet(
            BOUND_EXERCISE,
            format!("{max} jobs ran at once; the limit is {BOUND_LIMIT}"),
            "share an Arc::new(Semaphore::new(4)); take a permit (acquire_owned) before each job and keep it until the job ends — bind it to a name (`_permit`, not `_`, which drops it at once) — or use buffer_unordered(4)",
        )
    } else if max <= 1 {
        Verdict::not_yet(
            BOUND_EXERCISE,
            format!("at most {max} job ran at once: bounded, but sequential"),
            "spawn the jobs (or use buffer_unordered(4)) so up to 4 run together",
        )
    } else {
        Verdict::pass(BOUND_EXERCISE, format!("all {BOUND_JOBS} jobs ran, at most {max} at once (limit {BOUND_LIMIT})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbounded_and_sequential_fail_a_semaphore_passes() {
        let v = check_bounded_concurrency(|jobs| async move {
            let hs: Vec<_> = jobs.into_iter().map(|j| tokio::spawn(j.run())).collect();
            for h in hs {
                h.await.unwrap();
            }
        });
        assert!(!v.passed, "{v}");
        let v = check_bounded_concurrency(|jobs| async move {
            for j in jobs {
                j.run().await;
            }
        });
        assert!(!v.passed && v.detail.contains("sequential"), "{v}");
        let v = check_bounded_concurrency(|jobs| async move {
            let sem = Arc::new(tokio::sync::Semaphore::new(BOUND_LIMIT));
            let mut hs = Vec::new();
            for j in jobs {
                let permit = sem.clone().acquire_owned().await.unwrap();
                hs.push(tokio::spawn(async move {
                    j.run().await;
                    drop(permit);
                }));
            }
            for h in hs {
                h.await.unwrap();
            }
        });
        assert!(v.passed, "{v}");
        let v = check_bounded_concurrency(|jobs| async move {
            use futures::StreamExt;
            futures::stream::iter(jobs).map(|j| j.run()).buffer_unordered(BOUND_LIMIT).collect::<Vec<()>>().await;
        });
        assert!(v.passed, "{v}");
        let v = check_bounded_concurrency(|jobs| async move {
            drop(jobs);
        });
        assert!(!v.passed, "{v}");
    }
}
