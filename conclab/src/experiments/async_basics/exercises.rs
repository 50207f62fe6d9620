//! Self-check exercises of notebook 04: the reader writes async code in a cell, a checker
//! here runs it (bounded in time) and answers with a [`Verdict`].
//!
//! - [`check_third_poll`]: a hand-written future that is `Pending` twice and `Ready` on its
//!   third poll, and wakes its waker every time it says `Pending` (else no executor would
//!   poll it again).
//! - [`check_concurrent_fetches`]: three slow fetches made concurrent; checked for the
//!   right result and for the three waits overlapping in time — not for a wall time, so
//!   a busy machine cannot fail a correct answer.

use crate::lab::check::Verdict;
use crate::lab::fmt_num;
use crate::lab::rt::{self, Rt};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

const THIRD_POLL: &str = "ready on the third poll";

/// A waker that only counts its wakes.
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits up to `limit` for the wake count to exceed `seen` (a wake may come from another
/// thread, a little after `poll` returned).
fn woken_after(count: &AtomicUsize, seen: usize, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if count.load(Ordering::SeqCst) > seen {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Checks a future made by `make`: polled by hand with a counting waker, it must return
/// `Pending` on the first and second poll — each time having woken the waker (at once, or
/// from another thread within a second) — and `Ready` on the third. Two fresh futures
/// are checked, so one that keeps its count in a global passes only if it resets it.
///
/// ```
/// use conclab::experiments::async_basics::check_third_poll;
/// use std::{future::Future, pin::Pin, task::{Context, Poll}};
/// struct Third(u8);
/// impl Future for Third {
///     type Output = &'static str;
///     fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
///         self.0 += 1;
///         if self.0 == 3 { return Poll::Ready("done"); }
///         cx.waker().wake_by_ref();
///         Poll::Pending
///     }
/// }
/// assert!(check_third_poll(|| Third(0)).passed);
/// ```
pub fn check_third_poll<F: Future>(make: impl Fn() -> F) -> Verdict {
    for round in 1..=2 {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(make());
        for poll in 1..=3 {
            let before = counter.0.load(Ordering::SeqCst);
            let ready = fut.as_mut().poll(&mut cx).is_ready();
            match (poll, ready) {
                (1 | 2, true) => {
                    return Verdict::not_yet(
                        THIRD_POLL,
                        format!("future {round} was Ready on poll {poll}"),
                        "count the polls in a field of your struct and return Poll::Pending until the third",
                    );
                }
                (3, false) => {
                    return Verdict::not_yet(
                        THIRD_POLL,
                        format!("future {round} was still Pending on poll 3"),
                        "return Poll::Ready(..) when your poll counter reaches 3 (did you count from 0 or from 1?)",
                    );
                }
                (1 | 2, false) if !woken_after(&counter.0, before, Duration::from_secs(1)) => {
                    return Verdict::not_yet(
                        THIRD_POLL,
                        format!(
                            "future {round} returned Pending on poll {poll} without waking its waker: an executor \
                             would never poll it again, and the task would hang"
                        ),
                        "call cx.waker().wake_by_ref() before returning Poll::Pending",
                    );
                }
                _ => {}
            }
        }
        let wakes = counter.0.load(Ordering::SeqCst);
        if round == 2 {
            return Verdict::pass(
                THIRD_POLL,
                format!(
                    "two fresh futures: Pending, Pending, Ready, with {wakes} wakes each time Pending was returned"
                ),
            );
        }
    }
    unreachable!("the loop returns in round 2")
}

const CONCURRENT: &str = "concurrent fetches";
/// How long one [`Fetcher::get`] waits, in ms.
pub const FETCH_MS: u64 = 100;

/// The slow service of [`check_concurrent_fetches`]: `get(n)` waits [`FETCH_MS`] ms (a
/// tokio timer, standing in for a network call) and returns `10 * n`. It notes when each
/// call started and ended, so the checker can tell whether the waits overlapped.
#[derive(Clone, Default)]
pub struct Fetcher {
    calls: Arc<Mutex<Vec<Call>>>,
}

/// One [`Fetcher::get`]: its argument, when it started, when its wait ended.
type Call = (u32, Instant, Option<Instant>);

impl Fetcher {
    /// Waits [`FETCH_MS`] ms, then returns `10 * n`.
    pub async fn get(&self, n: u32) -> u32 {
        let i = {
            let mut c = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            c.push((n, Instant::now(), None));
            c.len() - 1
        };
        tokio::time::sleep(Duration::from_millis(FETCH_MS)).await;
        self.calls.lock().unwrap_or_else(|e| e.into_inner())[i].2 = Some(Instant::now());
        10 * n
    }
}

/// Runs the reader's `body` (given a [`Fetcher`]) on a current-thread runtime. It must
/// fetch 1, 2 and 3 and return the sum of the answers (60) — with the three waits
/// overlapping in time, so the whole takes about one fetch instead of three. Sequential
/// `.await`s get the sum right but fail with the start times as evidence.
pub fn check_concurrent_fetches<F, Fut>(body: F) -> Verdict
where
    F: FnOnce(Fetcher) -> Fut + Send + 'static,
    Fut: Future<Output = u32> + 'static,
{
    let fetcher = Fetcher::default();
    let f = fetcher.clone();
    let start = Instant::now();
    let out = rt::run(Rt::current().timeout(Duration::from_secs(5)), move || body(f));
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let sum = match out {
        Ok(s) => s,
        Err(e) => {
            return Verdict::not_yet(CONCURRENT, format!("the run failed: {e}"), "return the sum of the three answers");
        }
    };
    let calls = fetcher.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut asked: Vec<u32> = calls.iter().map(|c| c.0).collect();
    asked.sort_unstable();
    if asked != [1, 2, 3] {
        return Verdict::not_yet(
            CONCURRENT,
            format!("fetched {asked:?}"),
            "call f.get(1), f.get(2) and f.get(3), once each",
        );
    }
    if sum != 60 {
        return Verdict::not_yet(
            CONCURRENT,
            format!("returned {sum}"),
            "return the sum of the three answers (10 + 20 + 30)",
        );
    }
    let t0 = calls.iter().map(|c| c.1).min().unwrap_or(start);
    let starts: Vec<String> =
        calls.iter().map(|c| format!("get({}) at {} ms", c.0, fmt_num((c.1 - t0).as_secs_f64() * 1e3))).collect();
    // Overlap: every wait began before the first one ended.
    let first_end = calls.iter().filter_map(|c| c.2).min();
    let last_start = calls.iter().map(|c| c.1).max();
    match (first_end, last_start) {
        (Some(end), Some(s)) if s < end => Verdict::pass(
            CONCURRENT,
            format!(
                "sum 60; the three waits overlapped ({}); the whole took {} ms for {FETCH_MS} ms fetches",
                starts.join(", "),
                fmt_num(wall_ms)
            ),
        ),
        _ => Verdict::not_yet(
            CONCURRENT,
            format!("sum 60, but the waits ran one after another ({})", starts.join(", ")),
            "an .await waits before the next line starts: build the three futures first and await them together \
             with tokio::join!(f.get(1), f.get(2), f.get(3))",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::Poll;

    struct Polls {
        ready_on: u8,
        wake: bool,
        n: u8,
    }

    impl Future for Polls {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.n += 1;
            if self.n >= self.ready_on {
                return Poll::Ready(());
            }
            if self.wake {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    #[test]
    fn third_poll_checker_passes_the_answer_and_names_each_mistake() {
        assert!(check_third_poll(|| Polls { ready_on: 3, wake: true, n: 0 }).passed);
        let early = check_third_poll(|| Polls { ready_on: 2, wake: true, n: 0 });
        assert!(early.detail.contains("Ready on poll 2"), "{early}");
        let late = check_third_poll(|| Polls { ready_on: 4, wake: true, n: 0 });
        assert!(late.detail.contains("still Pending on poll 3"), "{late}");
        let silent = check_third_poll(|| Polls { ready_on: 3, wake: false, n: 0 });
        assert!(silent.detail.contains("without waking"), "{silent}");
    }

    #[test]
    fn concurrent_fetch_checker_tells_join_from_sequential_awaits() {
        let joined = check_concurrent_fetches(|f| async move {
            let (a, b, c) = tokio::join!(f.get(1), f.get(2), f.get(3));
            a + b + c
        });
        assert!(joined.passed, "{joined}");
        let sequential = check_concurrent_fetches(|f| async move { f.get(1).await + f.get(2).await + f.get(3).await });
        assert!(!sequential.passed && sequential.detail.contains("one after another"), "{sequential}");
        let wrong = check_concurrent_fetches(|f| async move { f.get(1).await });
        assert!(!wrong.passed && wrong.detail.contains("fetched [1]"), "{wrong}");
    }
}
