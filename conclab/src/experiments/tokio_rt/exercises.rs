//! Self-check exercises of notebook 05: the reader writes async code in a cell, a checker
//! here runs it on a fresh runtime (bounded in time) and answers with a [`Verdict`].
//!
//! - [`check_no_lost_frames`]: a consumer that receives framed messages from a stream
//!   while it also serves a ticker, with `select!`, and loses no frame.
//! - [`check_graceful_shutdown`]: workers stopped by a `CancellationToken` within
//!   [`STOP_WITHIN_MS`] ms, each running its async clean-up once.

use super::cancel::{HEADER, frame_seq, frame_stream};
use crate::lab::check::Verdict;
use crate::lab::findings::group;
use crate::lab::fmt_num;
use crate::lab::rt::{self, Rt};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::DuplexStream;
use tokio_util::sync::CancellationToken;

const FRAMES_EXERCISE: &str = "no frame lost in select!";
/// Frames [`check_no_lost_frames`] streams.
pub const EXERCISE_FRAMES: usize = 300;
/// Bytes per frame (its 4-byte header included) in [`check_no_lost_frames`].
pub const EXERCISE_FRAME_BYTES: usize = 64;
/// The period of the [`FrameTicker`], ms.
pub const TICK_MS: u64 = 1;

/// The ticker a consumer in [`check_no_lost_frames`] must keep serving: `tick()` waits for
/// the next tick (every [`TICK_MS`] ms). Cancel safe (it wraps `Interval::tick`); the
/// checker counts the ticks served while the frames were streaming.
pub struct FrameTicker {
    interval: tokio::time::Interval,
    served: Arc<Mutex<Vec<Instant>>>,
}

impl FrameTicker {
    /// Waits for the next tick and counts it as served.
    pub async fn tick(&mut self) {
        self.interval.tick().await;
        // No .await between the tick and the count: a cancelled tick() counts nothing.
        self.served.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now());
    }
}

/// Streams [`EXERCISE_FRAMES`] known frames (made by [`super::cancel::frame`]) into a
/// `tokio::io::duplex` pipe — in 16-byte pieces 100 µs apart, so reads see parts of
/// frames — and gives the other end and a [`FrameTicker`] to `consumer`. The consumer must
/// receive with [`super::cancel::read_frame`] (or a receive of its own) while serving the
/// ticker, and return the frame bodies in order. Passes when every frame arrived intact
/// and in order and the ticker was served while the frames were streaming.
///
/// ```no_run
/// use conclab::prelude::*;
/// // The loop to fix: each time the ticker wins, select! drops read_frame mid-frame.
/// let v = check_no_lost_frames(|mut stream, mut ticker| async move {
///     let mut frames = Vec::new();
///     loop {
///         tokio::select! {
///             f = read_frame(&mut stream) => match f {
///                 Ok(Some(body)) => frames.push(body),
///                 _ => break,
///             },
///             _ = ticker.tick() => {}
///         }
///     }
///     frames
/// });
/// assert!(!v.passed);
/// ```
pub fn check_no_lost_frames<F, Fut>(consumer: F) -> Verdict
where
    F: FnOnce(DuplexStream, FrameTicker) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<Vec<u8>>> + 'static,
{
    let served = Arc::new(Mutex::new(Vec::new()));
    let s = served.clone();
    let out = rt::run(Rt::current().timeout(Duration::from_secs(10)), move || async move {
        let bytes = frame_stream(EXERCISE_FRAMES, EXERCISE_FRAME_BYTES);
        let (mut w, r) = tokio::io::duplex(bytes.len() + 1);
        let producer = tokio::task::spawn_blocking(move || {
            use tokio::io::AsyncWriteExt;
            let start = Instant::now();
            for piece in bytes.chunks(16) {
                if futures::executor::block_on(w.write_all(piece)).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            (start, Instant::now())
        });
        let mut interval = tokio::time::interval(Duration::from_millis(TICK_MS));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let bodies = consumer(r, FrameTicker { interval, served: s }).await;
        let window = producer.await.ok();
        (bodies, window)
    });
    let (bodies, window) = match out {
        Ok(v) => v,
        Err(e) => {
            return Verdict::not_yet(
                FRAMES_EXERCISE,
                format!("the run failed: {e}"),
                "return the frame bodies once read_frame returns Ok(None) (the end of the stream)",
            );
        }
    };
    let seqs: Vec<Option<u32>> =
        bodies.iter().map(|b| frame_seq(b).filter(|_| b.len() == EXERCISE_FRAME_BYTES - HEADER)).collect();
    let corrupted = seqs.iter().filter(|s| s.is_none()).count();
    let got: Vec<u32> = seqs.iter().flatten().copied().collect();
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let lost = EXERCISE_FRAMES.saturating_sub(distinct.len());
    let bytes = (EXERCISE_FRAMES * EXERCISE_FRAME_BYTES) as u64;
    if lost > 0 || corrupted > 0 {
        return Verdict::not_yet(
            FRAMES_EXERCISE,
            format!(
                "{} of {EXERCISE_FRAMES} frames arrived intact; {lost} lost ({} of {} bytes), {corrupted} corrupted",
                distinct.len(),
                group((lost * EXERCISE_FRAME_BYTES) as u64),
                group(bytes)
            ),
            "each time the ticker wins, select! drops the read_frame future and the bytes it had read. Keep one \
             receive alive across iterations (make it before the loop, tokio::pin! it, poll &mut fut, and make \
             the next one when it completes), or receive with something cancel safe: FrameReader::next_frame, or \
             a task that calls read_frame in a loop and sends the frames over an mpsc channel",
        );
    }
    if got.len() != distinct.len() || got.windows(2).any(|w| w[0] > w[1]) {
        return Verdict::not_yet(
            FRAMES_EXERCISE,
            format!("all {EXERCISE_FRAMES} frames arrived, but {} times out of order or twice", got.len()),
            "return each frame once, in the order it arrived",
        );
    }
    let ticks: Vec<Instant> = served.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let during = match window {
        Some((start, end)) => ticks.iter().filter(|t| **t > start && **t < end).count(),
        None => 0,
    };
    let stream_ms = window.map_or(0.0, |(a, b)| (b - a).as_secs_f64() * 1e3);
    if during < 5 {
        return Verdict::not_yet(
            FRAMES_EXERCISE,
            format!(
                "all {EXERCISE_FRAMES} frames arrived intact, but the ticker was served only {during} times during \
                 the {} ms the frames were streaming",
                fmt_num(stream_ms)
            ),
            "the consumer must keep serving ticker.tick() while it receives: select! on both in one loop",
        );
    }
    Verdict::pass(
        FRAMES_EXERCISE,
        format!(
            "all {EXERCISE_FRAMES} frames ({} bytes) arrived intact and in order, while the ticker was served {during} \
             times during the {} ms of streaming",
            group(bytes),
            fmt_num(stream_ms)
        ),
    )
}

const SHUTDOWN_EXERCISE: &str = "graceful shutdown";
/// Workers [`check_graceful_shutdown`] expects: numbered `0..WORKERS`.
pub const WORKERS: usize = 4;
/// How long one [`ShutdownJobs::step`] takes, ms.
pub const STEP_MS: u64 = 200;
/// How long one [`ShutdownJobs::cleanup`] takes, ms.
pub const CLEANUP_MS: u64 = 5;
/// When the checker cancels the token, ms after the start.
pub const CANCEL_AFTER_MS: u64 = 300;
/// The longest the workers may take from `cancel()` until all are done, clean-up included, ms.
pub const STOP_WITHIN_MS: u64 = 50;

#[derive(Default)]
struct JobLog {
    /// (worker, started, finished) of every step.
    steps: Vec<(usize, Instant, Option<Instant>)>,
    /// (worker, finished) of every clean-up.
    cleanups: Vec<(usize, Instant)>,
}

/// The work of [`check_graceful_shutdown`]'s workers. Clone it into each worker (clones
/// share one log).
#[derive(Clone, Default)]
pub struct ShutdownJobs {
    log: Arc<Mutex<JobLog>>,
}

impl ShutdownJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One step of `worker`'s job: waits [`STEP_MS`] ms. Dropping it mid-way is harmless.
    pub async fn step(&self, worker: usize) {
        let i = {
            let mut l = self.lock();
            l.steps.push((worker, Instant::now(), None));
            l.steps.len() - 1
        };
        tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
        self.lock().steps[i].2 = Some(Instant::now());
    }

    /// `worker`'s clean-up (a flush, a goodbye): waits [`CLEANUP_MS`] ms, then counts.
    /// Run it once per worker, after the worker has seen the token, and await it.
    pub async fn cleanup(&self, worker: usize) {
        tokio::time::sleep(Duration::from_millis(CLEANUP_MS)).await;
        self.lock().cleanups.push((worker, Instant::now()));
    }
}

/// Runs the reader's `body(token, jobs)` on a 2-worker runtime. It must start [`WORKERS`]
/// workers — worker `w` calls `jobs.step(w).await` over and over — and return once all
/// have stopped. After [`CANCEL_AFTER_MS`] ms the checker calls `token.cancel()`; every
/// worker must then stop and run `jobs.cleanup(w).await` once, and `body` must return within
/// [`STOP_WITHIN_MS`] ms of the cancel. Steps take [`STEP_MS`] ms, so a worker that only
/// looks at the token between steps is too slow.
///
/// ```no_run
/// use conclab::prelude::*;
/// let v = check_graceful_shutdown(|token, jobs| async move {
///     let mut set = tokio::task::JoinSet::new();
///     for w in 0..4 {
///         let (token, jobs) = (token.clone(), jobs.clone());
///         set.spawn(async move {
///             loop {
///                 tokio::select! {
///                     _ = token.cancelled() => break,
///                     _ = jobs.step(w) => {}
///                 }
///             }
///             jobs.cleanup(w).await;
///         });
///     }
///     set.join_all().await;
/// });
/// assert!(v.passed, "{v}");
/// ```
pub fn check_graceful_shutdown<F, Fut>(body: F) -> Verdict
where
    F: FnOnce(CancellationToken, ShutdownJobs) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let jobs = ShutdownJobs::default();
    let j = jobs.clone();
    let cancelled_at = Arc::new(Mutex::new(None::<Instant>));
    let c = cancelled_at.clone();
    let limit = Duration::from_millis(CANCEL_AFTER_MS + 1_000);
    let start = Instant::now();
    let out = rt::run(Rt::multi(2).timeout(limit).grace(Duration::from_millis(200)), move || async move {
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(CANCEL_AFTER_MS)).await;
            *c.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            t.cancel();
        });
        body(token, j).await;
        Instant::now()
    });
    let cancel = *cancelled_at.lock().unwrap_or_else(|e| e.into_inner());
    let log = jobs.lock();
    let returned = match out {
        Ok(t) => t,
        Err(e) => {
            let detail = match cancel {
                Some(_) => format!("the workers were still running 1 s after token.cancel(): {e}"),
                None => format!("the run failed before the token was cancelled: {e}"),
            };
            return Verdict::not_yet(
                SHUTDOWN_EXERCISE,
                detail,
                "each worker must watch the token: tokio::select! { _ = token.cancelled() => break, _ = jobs.step(w) \
                 => {} } in its loop, and your function must wait for all workers (JoinSet::join_all, \
                 TaskTracker::wait)",
            );
        }
    };
    let Some(cancel) = cancel.filter(|c| *c <= returned) else {
        return Verdict::not_yet(
            SHUTDOWN_EXERCISE,
            format!(
                "your function returned after {} ms, before the token was cancelled (at {CANCEL_AFTER_MS} ms)",
                fmt_num((returned - start).as_secs_f64() * 1e3)
            ),
            "wait for the workers before returning (JoinSet::join_all, TaskTracker::wait): tasks still running when \
             the runtime shuts down are dropped, clean-up and all",
        );
    };
    let mut started: Vec<usize> = log.steps.iter().map(|s| s.0).collect();
    started.sort_unstable();
    started.dedup();
    if started != (0..WORKERS).collect::<Vec<_>>() {
        return Verdict::not_yet(
            SHUTDOWN_EXERCISE,
            format!("workers that ran a step: {started:?}"),
            format!("start {WORKERS} workers, numbered 0..{WORKERS}; worker w calls jobs.step(w)"),
        );
    }
    let mut cleaned: Vec<usize> = log.cleanups.iter().map(|c| c.0).collect();
    cleaned.sort_unstable();
    if cleaned != (0..WORKERS).collect::<Vec<_>>() {
        return Verdict::not_yet(
            SHUTDOWN_EXERCISE,
            format!("clean-ups that ran, by worker: {cleaned:?} (each of 0..{WORKERS} once expected)"),
            "after a worker sees the token, it must run jobs.cleanup(w).await once; abort() or a dropped task \
             never runs async clean-up",
        );
    }
    let stop_ms = (returned - cancel).as_secs_f64() * 1e3;
    let late_steps = log.steps.iter().filter(|s| s.2.is_some_and(|end| end > cancel)).count();
    if stop_ms > STOP_WITHIN_MS as f64 {
        let why = if late_steps > 0 {
            format!(
                "; {late_steps} step(s) ran on to their end after the cancel: a worker that checks the token only \
                 between steps finishes its current {STEP_MS} ms step first"
            )
        } else {
            String::new()
        };
        return Verdict::not_yet(
            SHUTDOWN_EXERCISE,
            format!("all {WORKERS} workers stopped, but {} ms after token.cancel(){why}", fmt_num(stop_ms)),
            format!(
                "stop within {STOP_WITHIN_MS} ms: race the step against token.cancelled() with tokio::select!, so \
                 the step is dropped the moment the token fires"
            ),
        );
    }
    Verdict::pass(
        SHUTDOWN_EXERCISE,
        format!(
            "all {WORKERS} workers stopped and ran their {CLEANUP_MS} ms clean-up once each; your function returned \
             {} ms after token.cancel() (limit {STOP_WITHIN_MS} ms)",
            fmt_num(stop_ms)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::tokio_rt::cancel::{FrameReader, read_frame};

    #[test]
    fn frames_checker_fails_the_naive_loop_and_passes_the_fixes() {
        let naive = check_no_lost_frames(|mut stream, mut ticker| async move {
            let mut frames = Vec::new();
            loop {
                tokio::select! {
                    f = read_frame(&mut stream) => match f {
                        Ok(Some(body)) => frames.push(body),
                        _ => break,
                    },
                    _ = ticker.tick() => {}
                }
            }
            frames
        });
        assert!(!naive.passed && naive.detail.contains("lost"), "{naive}");
        assert!(naive.hint.as_deref().unwrap().contains("tokio::pin!"));

        let buffered = check_no_lost_frames(|mut stream, mut ticker| async move {
            let mut fr = FrameReader::new();
            let mut frames = Vec::new();
            loop {
                tokio::select! {
                    f = fr.next_frame(&mut stream) => match f {
                        Ok(Some(body)) => frames.push(body),
                        _ => break,
                    },
                    _ = ticker.tick() => {}
                }
            }
            frames
        });
        assert!(buffered.passed, "{buffered}");

        let task = check_no_lost_frames(|mut stream, mut ticker| async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            tokio::spawn(async move {
                while let Ok(Some(body)) = read_frame(&mut stream).await {
                    if tx.send(body).await.is_err() {
                        break;
                    }
                }
            });
            let mut frames = Vec::new();
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(body) => frames.push(body),
                        None => break,
                    },
                    _ = ticker.tick() => {}
                }
            }
            frames
        });
        assert!(task.passed, "{task}");

        // Right data, but the ticker starved: read everything first, tick after.
        let starved = check_no_lost_frames(|mut stream, mut ticker| async move {
            let mut frames = Vec::new();
            while let Ok(Some(body)) = read_frame(&mut stream).await {
                frames.push(body);
            }
            for _ in 0..20 {
                ticker.tick().await;
            }
            frames
        });
        assert!(!starved.passed && starved.detail.contains("ticker was served only"), "{starved}");
    }

    async fn workers(token: CancellationToken, jobs: ShutdownJobs, between_steps: bool, cleanup: bool) {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..WORKERS {
            let (token, jobs) = (token.clone(), jobs.clone());
            set.spawn(async move {
                if between_steps {
                    while !token.is_cancelled() {
                        jobs.step(w).await;
                    }
                } else {
                    loop {
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = jobs.step(w) => {}
                        }
                    }
                }
                if cleanup {
                    jobs.cleanup(w).await;
                }
            });
        }
        set.join_all().await;
    }

    #[test]
    fn shutdown_checker_passes_select_and_names_each_mistake() {
        let right = check_graceful_shutdown(|t, j| workers(t, j, false, true));
        assert!(right.passed, "{right}");
        let slow = check_graceful_shutdown(|t, j| workers(t, j, true, true));
        assert!(!slow.passed && slow.detail.contains("step(s) ran on"), "{slow}");
        let no_cleanup = check_graceful_shutdown(|t, j| workers(t, j, false, false));
        assert!(!no_cleanup.passed && no_cleanup.detail.contains("clean-ups"), "{no_cleanup}");
        let early = check_graceful_shutdown(|_, j| async move {
            tokio::spawn(async move { j.step(0).await });
        });
        assert!(!early.passed && early.detail.contains("before the token was cancelled"), "{early}");
        let t = Instant::now();
        let deaf = check_graceful_shutdown(|_, j| async move {
            loop {
                j.step(0).await;
            }
        });
        assert!(!deaf.passed && deaf.detail.contains("still running"), "{deaf}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
