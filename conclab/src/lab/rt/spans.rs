//! Who ran what, when: spans of tasks on the runtime's threads, for a timeline figure.

use crate::lab::figure::Figure;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// One stretch of work: task `task` ran on thread `thread` from `start_ms` to `end_ms`,
/// in milliseconds since the recorder's origin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskSpan {
    pub task: usize,
    /// The thread's name, e.g. `rt1a2b3c-w1`.
    pub thread: String,
    /// The worker's number from the thread name (`-w1` → 1); `None` for the thread that
    /// drives `block_on` (`-main`, where a current-thread runtime runs every task) or a
    /// blocking-pool or foreign thread. A label given at start-up, not tokio's own index.
    pub worker: Option<usize>,
    pub start_ms: f64,
    pub end_ms: f64,
}

impl TaskSpan {
    /// A short lane label: `worker 1`, `block_on thread`, `blocking 0` or the thread name.
    pub fn lane(&self) -> String {
        lane_of(&self.thread)
    }
}

fn lane_of(thread: &str) -> String {
    let tail = thread.rsplit_once('-').map_or("", |(_, t)| t);
    if let Some(i) = tail.strip_prefix('w').and_then(|n| n.parse::<usize>().ok()) {
        format!("worker {i}")
    } else if tail == "main" {
        "block_on thread".into()
    } else if let Some(i) = tail.strip_prefix('b').and_then(|n| n.parse::<usize>().ok()) {
        format!("blocking {i}")
    } else {
        thread.to_string()
    }
}

fn worker_of(thread: &str) -> Option<usize> {
    let tail = thread.rsplit_once('-')?.1;
    tail.strip_prefix('w')?.parse().ok()
}

/// Records which thread ran which task, and when, relative to one origin, for a
/// [`Figure::timeline`]. Clone it into each task (clones share the record).
///
/// [`SpanRecorder::trace`] wraps a future and records one span per poll, so a task that
/// moves between workers shows up on each; [`SpanRecorder::record`] times a synchronous
/// stretch on the current thread.
///
/// ```
/// use conclab::lab::rt::{self, Rt, SpanRecorder, ms};
/// let spans = rt::run(Rt::multi(2), || async {
///     let rec = SpanRecorder::new();
///     let tasks: Vec<_> = (0..4)
///         .map(|i| tokio::spawn(rec.trace(i, async move { tokio::time::sleep(ms(5)).await })))
///         .collect();
///     for t in tasks { t.await.unwrap(); }
///     rec.spans()
/// })
/// .unwrap();
/// assert!((0..4).all(|i| spans.iter().any(|s| s.task == i && s.worker.is_some())));
/// ```
#[derive(Clone, Debug)]
pub struct SpanRecorder {
    origin: Instant,
    spans: Arc<Mutex<Vec<TaskSpan>>>,
}

impl Default for SpanRecorder {
    fn default() -> Self {
        SpanRecorder::new()
    }
}

impl SpanRecorder {
    /// A recorder whose origin is now.
    pub fn new() -> SpanRecorder {
        SpanRecorder::with_origin(Instant::now())
    }

    /// A recorder whose origin is `origin` (the instant a [`StartGate`] opened, say).
    pub fn with_origin(origin: Instant) -> SpanRecorder {
        SpanRecorder { origin, spans: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The instant spans are measured from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Milliseconds from the origin to `t` (negative before it).
    pub fn ms_since_origin(&self, t: Instant) -> f64 {
        match t.checked_duration_since(self.origin) {
            Some(d) => d.as_secs_f64() * 1e3,
            None => -(self.origin.duration_since(t).as_secs_f64() * 1e3),
        }
    }

    /// Adds a span of `task` on the current thread from `start` to `end`.
    pub fn push(&self, task: usize, start: Instant, end: Instant) {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let span = TaskSpan {
            task,
            worker: worker_of(&thread),
            thread,
            start_ms: self.ms_since_origin(start),
            end_ms: self.ms_since_origin(end),
        };
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    }

    /// Runs `f` on the current thread and records it as a span of `task`.
    pub fn record<T>(&self, task: usize, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.push(task, start, Instant::now());
        out
    }

    /// Wraps `fut` so that every poll of it is recorded as a span of `task` on the thread
    /// that polled it. The result is `Send` when `fut` is, so it can be `tokio::spawn`ed.
    pub fn trace<F: Future>(&self, task: usize, fut: F) -> Spanned<F> {
        Spanned { fut: Box::pin(fut), task, rec: self.clone() }
    }

    /// Every span so far, ordered by start.
    pub fn spans(&self) -> Vec<TaskSpan> {
        let mut v = self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        v
    }

    /// A timeline of every span so far: one lane per thread, one colour per task.
    pub fn figure(&self, title: &str) -> Figure {
        spans_figure(title, &self.spans())
    }
}

/// Draws spans as a timeline: one lane per thread (`worker 0`, …), one key per task.
pub fn spans_figure(title: &str, spans: &[TaskSpan]) -> Figure {
    let mut f = Figure::timeline(title, "time since the origin (ms)", "thread");
    for s in spans {
        f = f.span(&s.lane(), &format!("task {}", s.task), s.start_ms, s.end_ms);
    }
    f
}

/// A future whose polls are recorded by a [`SpanRecorder`] (see [`SpanRecorder::trace`]).
pub struct Spanned<F> {
    fut: Pin<Box<F>>,
    task: usize,
    rec: SpanRecorder,
}

impl<F: Future> Future for Spanned<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        let out = self.fut.as_mut().poll(cx);
        self.rec.push(self.task, start, Instant::now());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rt::{Rt, StartGate, ms, run};

    #[test]
    fn the_gate_releases_all_tasks_together_and_spans_are_recorded() {
        let (spans, origin_ms) = run(Rt::multi(2), || async {
            let gate = StartGate::new(4);
            let rec = SpanRecorder::new();
            let tasks: Vec<_> = (0..4)
                .map(|i| {
                    let (gate, rec) = (gate.clone(), rec.clone());
                    tokio::spawn(async move {
                        gate.wait().await;
                        rec.record(i, || std::hint::black_box(i));
                        rec.trace(i, tokio::time::sleep(ms(2))).await;
                    })
                })
                .collect();
            let opened = gate.opened().await;
            for t in tasks {
                t.await.unwrap();
            }
            (rec.spans(), rec.ms_since_origin(opened))
        })
        .unwrap();
        for i in 0..4 {
            let mine: Vec<_> = spans.iter().filter(|s| s.task == i).collect();
            // one recorded stretch plus at least two polls of the sleep (pending, then ready)
            assert!(mine.len() >= 3, "{spans:?}");
            assert!(mine.iter().all(|s| s.start_ms >= origin_ms && s.end_ms >= s.start_ms));
            assert!(mine.iter().all(|s| s.worker.is_some_and(|w| w < 2)), "{mine:?}");
        }
        let f = spans_figure("which worker ran which task", &spans);
        assert!(f.to_svg().contains("<svg"));
    }

    #[test]
    fn lanes_are_read_from_thread_names() {
        assert_eq!(lane_of("rt00ab12-w3"), "worker 3");
        assert_eq!(lane_of("rt00ab12-b0"), "blocking 0");
        assert_eq!(lane_of("rt00ab12-main"), "block_on thread");
        assert_eq!(lane_of("main"), "main");
        assert_eq!(worker_of("rt00ab12-main"), None);
        assert_eq!(worker_of("rt00ab12-w11"), Some(11));
    }
}
