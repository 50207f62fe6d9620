//! A task's life on a tokio runtime, as an event log: a `JoinHandle` awaited for its
//! result, a task that panics, one that is aborted, a `JoinSet` gathering results as they
//! complete, a detached task, `spawn_blocking` — and then what `shutdown_timeout` does to
//! the tasks still waiting (dropped at their `.await`) and to a blocking job still running
//! (nothing: it cannot be interrupted, it runs to its end on its own).
//!
//! Also the self-check [`check_gather_with_deadline`]: gather a `JoinSet`'s results until
//! a deadline, checked on a paused clock.

use super::paused::run_paused;
use crate::lab::budget::check_estimate;
use crate::lab::check::Verdict;
use crate::lab::noise::mark_busy;
use crate::lab::panics::panic_message;
use crate::lab::rt::{Rt, threads_named};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Table, check_range, fmt_num,
    one_line_panics,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Parameters of [`task_lifecycle`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskLifecycle {
    /// Worker threads of the multi-thread runtime: 1..=64.
    pub workers: usize,
    /// The unit of every task's work (a `tokio::time::sleep`), in ms: 2..=500.
    pub step_ms: u64,
    /// Tasks gathered in the `JoinSet` (task i works `set_tasks − i` steps): 2..=12.
    pub set_tasks: usize,
    /// How long the `spawn_blocking` job that is running at shutdown works, in ms: 1..=5000.
    pub blocking_ms: u64,
    /// What `shutdown_timeout` is given, in ms: 1..=5000.
    pub shutdown_timeout_ms: u64,
}

impl Default for TaskLifecycle {
    fn default() -> Self {
        TaskLifecycle { workers: 2, step_ms: 10, set_tasks: 4, blocking_ms: 200, shutdown_timeout_ms: 50 }
    }
}

impl TaskLifecycle {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("workers", self.workers, 1..=64)?;
        check_range("step_ms", self.step_ms, 2..=500)?;
        check_range("set_tasks", self.set_tasks, 2..=12)?;
        check_range("blocking_ms", self.blocking_ms, 1..=5000)?;
        check_range("shutdown_timeout_ms", self.shutdown_timeout_ms, 1..=5000)?;
        check_estimate("step_ms × set_tasks + blocking_ms", self.estimate())
    }

    /// The tasks run side by side: the longest of them (`set_tasks` or 4 steps), the
    /// shutdown phase's step, and the longer of the blocking job and the shutdown timeout.
    pub fn estimate(&self) -> Duration {
        let steps = self.set_tasks.max(4) as u64 + 2;
        Duration::from_millis(steps * self.step_ms + self.blocking_ms.max(self.shutdown_timeout_ms) + 50)
    }
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskEventKind {
    /// `tokio::spawn` (or `spawn_blocking`) returned its handle.
    Spawned,
    /// Its body began to run (first poll; for `spawn_blocking`, the closure started).
    Started,
    /// Its body returned.
    Finished,
    /// Its body is about to panic.
    Panicked,
    /// Its `JoinHandle` was dropped without awaiting it: the task is detached.
    HandleDropped,
    /// `abort()` was called on its handle.
    AbortCalled,
    /// Its Drop guard ran before the body finished: the future was dropped at an
    /// `.await` (aborted, or the runtime shut down), or unwound by a panic.
    Dropped,
    /// Whoever awaited it (its `JoinHandle` or `JoinSet::join_next`) got the outcome.
    Joined,
    /// The block_on body returned; the runtime is about to shut down.
    BodyReturned,
    /// `shutdown_timeout` was called.
    ShutdownBegan,
    /// `shutdown_timeout` returned.
    ShutdownReturned,
    /// No thread of the runtime was alive any more.
    ThreadsGone,
}

impl TaskEventKind {
    /// The event in a few words.
    pub fn label(self) -> &'static str {
        match self {
            TaskEventKind::Spawned => "spawned",
            TaskEventKind::Started => "started",
            TaskEventKind::Finished => "finished",
            TaskEventKind::Panicked => "panicked",
            TaskEventKind::HandleDropped => "handle dropped",
            TaskEventKind::AbortCalled => "abort() called",
            TaskEventKind::Dropped => "dropped (Drop guard)",
            TaskEventKind::Joined => "joined (outcome received)",
            TaskEventKind::BodyReturned => "block_on body returned",
            TaskEventKind::ShutdownBegan => "shutdown_timeout called",
            TaskEventKind::ShutdownReturned => "shutdown_timeout returned",
            TaskEventKind::ThreadsGone => "all runtime threads exited",
        }
    }
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    /// Since the runtime was built, in ms.
    pub at_ms: f64,
    /// The task's name (its lane in the figure), or [`RUNTIME`].
    pub task: String,
    pub event: TaskEventKind,
    /// The outcome, the error's text, why it was dropped.
    pub detail: String,
    /// The thread it happened on.
    pub thread: String,
}

/// The task names of [`task_lifecycle`], one lane each.
pub const AWAITED: &str = "awaited";
/// The task that panics.
pub const PANICS: &str = "panics";
/// The task that is aborted.
pub const ABORTED: &str = "aborted";
/// The task whose handle is dropped.
pub const DETACHED: &str = "detached";
/// The `spawn_blocking` job awaited for its result.
pub const BLOCKING: &str = "spawn_blocking";
/// A task sleeping an hour when the runtime shuts down.
pub const SLEEPER: &str = "sleeping at shutdown";
/// A `spawn_blocking` job still running when the runtime shuts down.
pub const BLOCKING_AT_SHUTDOWN: &str = "blocking at shutdown";
/// A task awaiting [`BLOCKING_AT_SHUTDOWN`]'s handle when the runtime shuts down.
pub const WAITER: &str = "awaiting that job";
/// The runtime's own lane.
pub const RUNTIME: &str = "runtime";

/// The `JoinSet` task number `i`.
pub fn set_task(i: usize) -> String {
    format!("set #{i}")
}

/// A shared, timestamped event log.
#[derive(Clone)]
struct Log {
    t0: Instant,
    events: Arc<Mutex<Vec<TaskEvent>>>,
    /// Set just before `shutdown_timeout`, so a Drop guard can say why it ran.
    shutting_down: Arc<AtomicBool>,
}

impl Log {
    fn new() -> Log {
        Log { t0: Instant::now(), events: Arc::default(), shutting_down: Arc::default() }
    }

    fn push(&self, task: &str, event: TaskEventKind, detail: impl Into<String>) {
        let e = TaskEvent {
            at_ms: self.t0.elapsed().as_secs_f64() * 1e3,
            task: task.into(),
            event,
            detail: detail.into(),
            thread: std::thread::current().name().unwrap_or("<unnamed>").to_string(),
        };
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }

    fn has(&self, task: &str, event: TaskEventKind) -> bool {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|e| e.task == task && e.event == event)
    }

    fn take(&self) -> Vec<TaskEvent> {
        let mut v = self.events.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        v
    }
}

/// Lives as long as a task's body; when dropped before [`Guard::finish`], records why.
struct Guard {
    log: Log,
    task: String,
    done: bool,
}

impl Guard {
    fn finish(mut self, detail: impl Into<String>) {
        self.done = true;
        self.log.push(&self.task, TaskEventKind::Finished, detail);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let why = if std::thread::panicking() {
            "unwound by its panic"
        } else if self.log.shutting_down.load(Ordering::SeqCst) {
            "dropped mid-await at runtime shutdown"
        } else {
            "dropped mid-await after abort()"
        };
        self.log.push(&self.task, TaskEventKind::Dropped, why);
    }
}

/// Wraps a task's body: records its start, and its end or its drop.
async fn tracked<T>(log: Log, task: String, body: impl Future<Output = T>) -> T {
    log.push(&task, TaskEventKind::Started, "");
    let guard = Guard { log, task, done: false };
    let v = body.await;
    guard.finish("");
    v
}

/// Sleeps `n` steps.
async fn steps(n: u64, step: Duration) {
    tokio::time::sleep(step * n as u32).await;
}

/// What the block_on body saw of the outcomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcomes {
    /// What awaiting [`AWAITED`]'s handle gave, `Ok(42)` expected.
    pub awaited: Result<u32, String>,
    /// `JoinError::is_panic()` of [`PANICS`].
    pub is_panic: bool,
    /// The panic's message, from `JoinError::into_panic()`.
    pub panic_message: String,
    /// `JoinError::is_cancelled()` of [`ABORTED`].
    pub is_cancelled: bool,
    /// `JoinSet` task numbers in the order `join_next` returned them (spawned 0, 1, 2, …).
    pub join_order: Vec<usize>,
    /// What awaiting [`BLOCKING`]'s handle gave, `Ok(7)` expected.
    pub blocking: Result<u32, String>,
}

/// Result of [`task_lifecycle`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskLifecycleReport {
    pub params: TaskLifecycle,
    /// Every event, by time.
    pub events: Vec<TaskEvent>,
    pub outcomes: Outcomes,
    /// How long `shutdown_timeout` took, in ms.
    pub shutdown_ms: f64,
    /// Runtime threads still alive right after `shutdown_timeout` returned.
    pub alive_after_shutdown: Vec<String>,
    /// From `shutdown_timeout` returning until no runtime thread was left, in ms.
    pub threads_gone_after_ms: f64,
    pub load: Load,
}

/// A name prefix for one run's threads: `tlc` and five hex digits.
fn fresh_prefix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u32;
    format!("tlc{:05x}", (nanos ^ n.wrapping_mul(0x9E37_79B9) ^ std::process::id().rotate_left(12)) & 0xF_FFFF)
}

/// The block_on body: every kind of task, its outcome, then the tasks that will meet the
/// shutdown.
async fn lifecycle_body(log: Log, p: TaskLifecycle) -> Outcomes {
    let step = Duration::from_millis(p.step_ms);
    let l = log.clone();
    let awaited = tokio::spawn(tracked(l, AWAITED.into(), async move {
        steps(3, step).await;
        42u32
    }));
    log.push(AWAITED, TaskEventKind::Spawned, "");
    let l = log.clone();
    let panics = tokio::spawn(tracked(l.clone(), PANICS.into(), async move {
        steps(1, step).await;
        l.push(PANICS, TaskEventKind::Panicked, "panic!(\"task 'panics' failed on purpose\")");
        panic!("task 'panics' failed on purpose");
    }));
    log.push(PANICS, TaskEventKind::Spawned, "");
    let l = log.clone();
    let aborted = tokio::spawn(tracked(l, ABORTED.into(), steps(1000, step)));
    log.push(ABORTED, TaskEventKind::Spawned, "works 1000 steps unless aborted");
    let (report_back, detached_done) = tokio::sync::oneshot::channel::<()>();
    let l = log.clone();
    let detached = tokio::spawn(tracked(l, DETACHED.into(), async move {
        steps(4, step).await;
        let _ = report_back.send(());
    }));
    log.push(DETACHED, TaskEventKind::Spawned, "");
    drop(detached);
    log.push(DETACHED, TaskEventKind::HandleDropped, "drop(handle): the task is detached, not cancelled");
    let l = log.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        l.push(BLOCKING, TaskEventKind::Started, "std::thread::sleep on a blocking-pool thread");
        std::thread::sleep(step * 2);
        l.push(BLOCKING, TaskEventKind::Finished, "");
        7u32
    });
    log.push(BLOCKING, TaskEventKind::Spawned, "");
    let mut set = JoinSet::new();
    let n = p.set_tasks;
    for i in 0..n {
        let l = log.clone();
        set.spawn(tracked(l, set_task(i), async move {
            steps((n - i) as u64, step).await;
            i
        }));
        log.push(&set_task(i), TaskEventKind::Spawned, format!("works {} steps", n - i));
    }

    steps(2, step).await;
    // Logged just before the call: a worker may drop the future before abort() returns,
    // and the guard's event must not come before the request's.
    log.push(ABORTED, TaskEventKind::AbortCalled, "");
    aborted.abort();
    let is_cancelled = match aborted.await {
        Ok(()) => {
            log.push(ABORTED, TaskEventKind::Joined, "Ok(()): it finished before abort() took effect");
            false
        }
        Err(e) => {
            log.push(ABORTED, TaskEventKind::Joined, format!("Err(JoinError): is_cancelled() = {}", e.is_cancelled()));
            e.is_cancelled()
        }
    };
    let awaited = awaited.await.map_err(|e| e.to_string());
    log.push(AWAITED, TaskEventKind::Joined, format!("{awaited:?}"));
    let (is_panic, panic_message) = match panics.await {
        Ok(()) => (false, String::new()),
        Err(e) if e.is_panic() => (true, panic_message(&*e.into_panic())),
        Err(e) => (false, e.to_string()),
    };
    log.push(
        PANICS,
        TaskEventKind::Joined,
        format!("Err(JoinError): is_panic() = {is_panic}, message {panic_message:?}"),
    );
    let blocking = blocking.await.map_err(|e| e.to_string());
    log.push(BLOCKING, TaskEventKind::Joined, format!("{blocking:?}"));
    let mut join_order = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(i) => {
                join_order.push(i);
                log.push(
                    &set_task(i),
                    TaskEventKind::Joined,
                    format!("join_next() → Ok({i}), result #{}", join_order.len()),
                );
            }
            Err(e) => log.push(RUNTIME, TaskEventKind::Joined, format!("join_next() → Err({e})")),
        }
    }
    // The detached task reports back over a channel: nobody holds its handle.
    let _ = detached_done.await;

    // The tasks that meet the shutdown: one sleeping an hour, a blocking job, and a task
    // awaiting that job's handle.
    let l = log.clone();
    drop(tokio::spawn(tracked(l, SLEEPER.into(), tokio::time::sleep(Duration::from_secs(3600)))));
    log.push(SLEEPER, TaskEventKind::Spawned, "sleeps an hour");
    let l = log.clone();
    let blocking_ms = p.blocking_ms;
    let job = tokio::task::spawn_blocking(move || {
        l.push(BLOCKING_AT_SHUTDOWN, TaskEventKind::Started, format!("std::thread::sleep({blocking_ms} ms)"));
        std::thread::sleep(Duration::from_millis(blocking_ms));
        l.push(BLOCKING_AT_SHUTDOWN, TaskEventKind::Finished, "");
    });
    log.push(BLOCKING_AT_SHUTDOWN, TaskEventKind::Spawned, "");
    let l = log.clone();
    drop(tokio::spawn(tracked(l, WAITER.into(), async move {
        let _ = job.await;
    })));
    log.push(WAITER, TaskEventKind::Spawned, "awaits the blocking job's JoinHandle");
    // Let them all start and reach their `.await`.
    steps(1, step).await;
    log.push(RUNTIME, TaskEventKind::BodyReturned, "");
    Outcomes { awaited, is_panic, panic_message, is_cancelled, join_order, blocking }
}

/// Builds a multi-thread runtime with `workers` workers on a thread of its own and runs,
/// side by side: a task whose `JoinHandle` is awaited; one that panics; one aborted after
/// 2 steps (its Drop guard records where); `set_tasks` tasks in a `JoinSet`, task i
/// working `set_tasks − i` steps, gathered with `join_next`; a detached task (handle
/// dropped) that reports back over a channel; a `spawn_blocking` job. Then it starts a
/// task sleeping an hour, a `spawn_blocking` job of `blocking_ms` and a task awaiting that
/// job, returns from `block_on`, and calls `shutdown_timeout(shutdown_timeout_ms)`. Every
/// event is logged with its time and thread; the run waits (bounded) until the blocking
/// job has ended and no runtime thread is left.
pub fn task_lifecycle(p: &TaskLifecycle) -> Result<TaskLifecycleReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let prefix = fresh_prefix();
    let log = Log::new();
    let limit = p.estimate() * 4 + Duration::from_secs(5);
    let grace = Duration::from_millis(p.shutdown_timeout_ms);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Outcomes, f64), String>>(1);
    let (l, params, name_prefix) = (log.clone(), p.clone(), prefix.clone());
    let workers = p.workers;
    // The panic is on purpose: one line on stderr, not a backtrace.
    let main_name = format!("{prefix}-main");
    let joined = one_line_panics(move || {
        let thread = std::thread::Builder::new().name(main_name).spawn(move || {
            let started = AtomicUsize::new(0);
            let built = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .thread_name_fn(move || {
                    let i = started.fetch_add(1, Ordering::Relaxed);
                    // Workers and blocking threads come from one pool, and which thread takes
                    // which role can vary from run to run: the names say only the order.
                    format!("{name_prefix}-t{i}")
                })
                .build();
            let runtime = match built {
                Ok(r) => r,
                Err(e) => return drop(tx.send(Err(format!("tokio refused the runtime: {e}")))),
            };
            let body = lifecycle_body(l.clone(), params);
            let out = runtime.block_on(async move { tokio::time::timeout(limit, body).await });
            l.shutting_down.store(true, Ordering::SeqCst);
            l.push(RUNTIME, TaskEventKind::ShutdownBegan, format!("shutdown_timeout({} ms)", grace.as_millis()));
            let t = Instant::now();
            runtime.shutdown_timeout(grace);
            let took = t.elapsed().as_secs_f64() * 1e3;
            l.push(RUNTIME, TaskEventKind::ShutdownReturned, "");
            let _ = tx.send(out.map(|o| (o, took)).map_err(|_| format!("the tasks did not finish within {limit:?}")));
        });
        let thread = thread.map_err(|e| format!("the OS refused a thread: {e}"))?;
        let got = rx.recv_timeout(limit + grace + Duration::from_secs(1));
        match got {
            Ok(r) => {
                let _ = thread.join();
                r
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err("the runtime's thread did not answer in time (it was detached)".to_string())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(format!(
                "the runtime's thread ended without a result: {}",
                thread.join().err().map_or_else(|| "no reason given".into(), |p| panic_message(&*p))
            )),
        }
    });
    let (outcomes, shutdown_ms) = joined.map_err(|why| RunError::new("the task-lifecycle runtime", why))?;
    // The blocking job cannot be interrupted: wait (bounded) for it and for every thread.
    let returned = Instant::now();
    let alive_after_shutdown = threads_named(&prefix);
    let until = returned + Duration::from_millis(p.blocking_ms) + Duration::from_secs(2);
    while (!log.has(BLOCKING_AT_SHUTDOWN, TaskEventKind::Finished) || !threads_named(&prefix).is_empty())
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let left = threads_named(&prefix);
    if !left.is_empty() {
        return Err(
            RunError::new("the task-lifecycle runtime", format!("threads still alive: {}", left.join(", "))).into()
        );
    }
    log.push(RUNTIME, TaskEventKind::ThreadsGone, "");
    let threads_gone_after_ms = returned.elapsed().as_secs_f64() * 1e3;
    Ok(TaskLifecycleReport {
        params: p.clone(),
        events: log.take(),
        outcomes,
        shutdown_ms,
        alive_after_shutdown,
        threads_gone_after_ms,
        load: probe.finish(),
    })
}

impl TaskLifecycleReport {
    /// The first event of this kind for this task.
    pub fn event(&self, task: &str, event: TaskEventKind) -> Option<&TaskEvent> {
        self.events.iter().find(|e| e.task == task && e.event == event)
    }

    /// Time of the first such event, in ms.
    pub fn at(&self, task: &str, event: TaskEventKind) -> Option<f64> {
        self.event(task, event).map(|e| e.at_ms)
    }

    /// Tasks whose Drop guard ran at shutdown, in the order it ran.
    pub fn dropped_at_shutdown(&self) -> Vec<&TaskEvent> {
        self.events.iter().filter(|e| e.event == TaskEventKind::Dropped && e.detail.contains("shutdown")).collect()
    }

    /// The threads on which async tasks (not `spawn_blocking` jobs) started: the workers.
    pub fn async_threads(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .events
            .iter()
            .filter(|e| e.event == TaskEventKind::Started && e.task != BLOCKING && e.task != BLOCKING_AT_SHUTDOWN)
            .map(|e| e.thread.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A timeline of the events up to `until` ms: a bar per task from its start to its end,
    /// narrow bars as markers at the events that matter.
    fn timeline(&self, title: &str, until: f64) -> Figure {
        let events: Vec<&TaskEvent> = self.events.iter().filter(|e| e.at_ms <= until).collect();
        let end = events.iter().map(|e| e.at_ms).fold(0.0, f64::max);
        let w = (end / 250.0).max(0.02);
        let mut f = Figure::timeline(title, "time since the runtime was built (ms)", "task");
        let mut lanes: Vec<&str> = Vec::new();
        for e in &events {
            if !lanes.contains(&e.task.as_str()) {
                lanes.push(&e.task);
            }
        }
        for lane in lanes {
            let mine = || events.iter().filter(move |e| e.task == lane);
            let start = mine().find(|e| e.event == TaskEventKind::Started).map(|e| e.at_ms);
            let stop = mine()
                .filter(|e| {
                    matches!(e.event, TaskEventKind::Finished | TaskEventKind::Dropped | TaskEventKind::Panicked)
                })
                .map(|e| e.at_ms)
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a: f64| a.max(b))));
            let blocking = lane == BLOCKING || lane == BLOCKING_AT_SHUTDOWN;
            let key = if blocking { "running (spawn_blocking job)" } else { "alive (async task, mostly awaiting)" };
            match (start, stop) {
                (Some(s), Some(e)) => f = f.span(lane, key, s, e.max(s + w)),
                // Still running at the edge of the figure.
                (Some(s), None) => f = f.span(lane, key, s, end.max(s + w)),
                _ => {}
            }
        }
        // Colours go to keys in the order they first appear. The markers are added kind by
        // kind in a fixed order, and the shutdown keys (absent from the zoom) last, so a key
        // has the same colour in the full figure and in the zoom.
        let markers = [
            (TaskEventKind::HandleDropped, "▮ handle dropped"),
            (TaskEventKind::Panicked, "▮ panicked"),
            (TaskEventKind::AbortCalled, "▮ abort()"),
            (TaskEventKind::Dropped, "▮ dropped (Drop guard)"),
            (TaskEventKind::Joined, "▮ joined"),
        ];
        for (kind, marker) in markers {
            for e in events.iter().filter(|e| e.event == kind) {
                f = f.span(&e.task, marker, e.at_ms - w, e.at_ms + w);
            }
        }
        for e in events.iter().filter(|e| e.event == TaskEventKind::ShutdownBegan) {
            let ret = events
                .iter()
                .find(|r| r.task == e.task && r.event == TaskEventKind::ShutdownReturned)
                .map_or(end, |r| r.at_ms);
            f = f.span(&e.task, "shutdown_timeout", e.at_ms, ret.max(e.at_ms + w));
        }
        for e in events.iter().filter(|e| e.event == TaskEventKind::ThreadsGone) {
            f = f.span(&e.task, "▮ all threads exited", e.at_ms - w, e.at_ms + w);
        }
        f.size(760, 600).note(
            "Bars: from a task's first poll to its end. Markers: narrow bars at the events. The runtime lane's bar \
             is shutdown_timeout.",
        )
    }
}

fn ms(v: f64) -> String {
    format!("{} ms", fmt_num(v))
}

impl Report for TaskLifecycleReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let o = &self.outcomes;
        if let (Some(fin), Some(joined)) =
            (self.at(AWAITED, TaskEventKind::Finished), self.at(AWAITED, TaskEventKind::Joined))
        {
            out.push(Finding::clear(format!(
                "awaiting a JoinHandle gave the task's value: {:?} (the task finished at {}, the awaiting side had \
                 it at {})",
                o.awaited,
                ms(fin),
                ms(joined)
            )));
        }
        if o.is_panic {
            let panicked = self.at(PANICS, TaskEventKind::Panicked).unwrap_or(0.0);
            let later = self
                .events
                .iter()
                .filter(|e| e.event == TaskEventKind::Finished && e.task != PANICS && e.at_ms > panicked)
                .count();
            out.push(Finding::clear(format!(
                "the panicking task's handle gave Err(JoinError) with is_panic() = true and the message {:?}: the \
                 panic was caught at the task's edge — {later} other task(s) finished after it, on the same runtime",
                o.panic_message
            )));
        } else {
            out.push(Finding::clear("the panicking task's handle did not report a panic — unexpected"));
        }
        match (self.at(ABORTED, TaskEventKind::AbortCalled), self.event(ABORTED, TaskEventKind::Dropped)) {
            (Some(a), Some(d)) => out.push(Finding::clear(format!(
                "abort() at {}: the aborted task's Drop guard ran {} later on {} — the future was dropped where it \
                 was waiting — and awaiting its handle gave is_cancelled() = {}",
                ms(a),
                ms(d.at_ms - a),
                d.thread,
                o.is_cancelled
            ))),
            _ => out.push(Finding::clear(format!(
                "the aborted task's Drop guard did not run before the end (is_cancelled() = {})",
                o.is_cancelled
            ))),
        }
        let spawn_order: Vec<usize> = (0..self.params.set_tasks).collect();
        out.push(if o.join_order != spawn_order {
            Finding::clear(format!(
                "join_next() returned the JoinSet's tasks in the order {:?}, not in spawn order {:?}: a JoinSet \
                 hands out results as tasks complete (task i worked {} − i steps)",
                o.join_order, spawn_order, self.params.set_tasks
            ))
        } else {
            Finding::clear(format!(
                "join_next() returned the tasks in spawn order {:?} here — they also completed in that order \
                 (a busy machine can delay the short ones)",
                o.join_order
            ))
        });
        if let (Some(dropped), Some(fin)) =
            (self.at(DETACHED, TaskEventKind::HandleDropped), self.at(DETACHED, TaskEventKind::Finished))
        {
            out.push(Finding::clear(format!(
                "the detached task ran to its end {} after its handle was dropped: dropping a JoinHandle detaches a \
                 task, it does not cancel it (only abort() or the runtime's shutdown does)",
                ms(fin - dropped)
            )));
        }
        if let Some(s) = self.event(BLOCKING, TaskEventKind::Started) {
            let workers = self.async_threads();
            out.push(Finding::clear(format!(
                "the spawn_blocking job ran on {} — {} (the async tasks ran on {})",
                s.thread,
                if workers.contains(&s.thread) {
                    "a thread that also ran async tasks: unexpected, tokio keeps blocking jobs off its workers"
                } else {
                    "a thread of tokio's blocking pool, which ran no async task, so its std::thread::sleep held up \
                     no task"
                },
                workers.join(", ")
            )));
        }
        let dropped = self.dropped_at_shutdown();
        let names: Vec<String> = dropped.iter().map(|e| format!("\"{}\"", e.task)).collect();
        let began = self.at(RUNTIME, TaskEventKind::ShutdownBegan).unwrap_or(0.0);
        out.push(Finding::clear(format!(
            "shutdown_timeout({} ms) returned after {}; dropped mid-await at shutdown: {} — their Drop guards ran {} \
             after shutdown began, so their .await never returned",
            self.params.shutdown_timeout_ms,
            ms(self.shutdown_ms),
            if names.is_empty() { "none".into() } else { names.join(", ") },
            dropped.iter().map(|e| ms(e.at_ms - began)).collect::<Vec<_>>().join(", ")
        )));
        let returned = self.at(RUNTIME, TaskEventKind::ShutdownReturned).unwrap_or(0.0);
        match self.at(BLOCKING_AT_SHUTDOWN, TaskEventKind::Finished) {
            Some(fin) if fin > returned => out.push(Finding::clear(format!(
                "the spawn_blocking job running at shutdown could not be interrupted: shutdown_timeout gave up on it \
                 after {} and returned, and the job ran to its end on its own {} later (threads alive when \
                 shutdown returned: {}; the last exited {} after)",
                ms(self.shutdown_ms),
                ms(fin - returned),
                self.alive_after_shutdown.len(),
                ms(self.threads_gone_after_ms)
            ))),
            Some(fin) => out.push(Finding::clear(format!(
                "shutdown_timeout waited for the spawn_blocking job running at shutdown: the job ended at {}, before \
                 the {} ms timeout ran out, and shutdown returned at {} — a blocking job is never interrupted, only \
                 waited for (up to the timeout)",
                ms(fin),
                self.params.shutdown_timeout_ms,
                ms(returned)
            ))),
            None => out.push(Finding::clear("the blocking job at shutdown never recorded its end")),
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let body_end = self.at(RUNTIME, TaskEventKind::BodyReturned).unwrap_or(f64::INFINITY);
        let whole =
            self.timeline("Each task's life on one runtime, from spawn to shutdown (one lane per task)", f64::INFINITY);
        let first = self.timeline("Zoom: the tasks before the runtime shuts down", body_end);
        vec![mark_busy(whole, &self.load), mark_busy(first, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t =
            Table::new("Event log: every task's life on one runtime", &["ms", "task", "event", "detail", "thread"]);
        for e in &self.events {
            t.row(vec![fmt_num(e.at_ms), e.task.clone(), e.event.label().into(), e.detail.clone(), e.thread.clone()]);
        }
        t.note(format!(
            "Multi-thread runtime, {} workers; one step = {} ms; shutdown_timeout({} ms). Threads are numbered in \
             the order tokio started them; workers and blocking threads come from one pool, so which number ends \
             up a worker can vary: here the async tasks ran on {}.",
            self.params.workers,
            self.params.step_ms,
            self.params.shutdown_timeout_ms,
            self.async_threads().join(", ")
        ));
        t
    }
}

const DEADLINE: &str = "gather with a deadline";

/// The tasks of [`check_gather_with_deadline`]: (value, how long it works).
pub const GATHER_TASKS: [(u32, Duration); 6] = [
    (1, Duration::from_millis(300)),
    (2, Duration::from_secs(2)),
    (3, Duration::from_millis(50)),
    (4, Duration::from_secs(3600)),
    (5, Duration::from_millis(700)),
    (6, Duration::from_secs(5)),
];

/// The deadline [`check_gather_with_deadline`] gives.
pub const GATHER_DEADLINE: Duration = Duration::from_secs(1);

/// Self-check: write `gather(set, deadline)`, which returns the results of the tasks in
/// `set` that finish within `deadline` and does not wait for the others (which must not
/// keep running). The checker fills a `JoinSet` with [`GATHER_TASKS`] (50 ms to an hour)
/// and gives [`GATHER_DEADLINE`]; it runs on a paused clock ([`run_paused`]), so the hour
/// costs no wall time and the times are exact. It checks the results (1, 3 and 5, in any
/// order), that `gather` returned at the deadline, not later, and that the late tasks were
/// stopped (their futures dropped) rather than left running.
///
/// ```
/// use conclab::experiments::tokio_rt::lifecycle::check_gather_with_deadline;
/// let v = check_gather_with_deadline(|mut set, deadline| async move {
///     let mut got = Vec::new();
///     let end = tokio::time::Instant::now() + deadline;
///     while let Ok(Some(r)) = tokio::time::timeout_at(end, set.join_next()).await {
///         got.extend(r.ok());
///     }
///     got // dropping the JoinSet aborts the tasks still in it
/// });
/// assert!(v.passed, "{v}");
/// // Waiting for everything is correct, but it takes an hour:
/// let v = check_gather_with_deadline(|set, _| async move { set.join_all().await });
/// assert!(!v.passed);
/// ```
pub fn check_gather_with_deadline<F, Fut>(gather: F) -> Verdict
where
    F: FnOnce(JoinSet<u32>, Duration) -> Fut + Send + 'static,
    Fut: Future<Output = Vec<u32>> + 'static,
{
    let alive = Arc::new(AtomicUsize::new(0));
    let out = run_paused(Rt::current().timeout(Duration::from_secs(5)), move || async move {
        let mut set = JoinSet::new();
        for (v, d) in GATHER_TASKS {
            let a = alive.clone();
            set.spawn(async move {
                // Counts itself alive until it returns or its future is dropped.
                struct Alive(Arc<AtomicUsize>);
                impl Drop for Alive {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                a.fetch_add(1, Ordering::SeqCst);
                let _alive = Alive(a);
                tokio::time::sleep(d).await;
                v
            });
        }
        let t = tokio::time::Instant::now();
        let got = gather(set, GATHER_DEADLINE).await;
        let took = t.elapsed();
        // Give aborted tasks a moment (1 ms of paused time) to be dropped.
        tokio::time::sleep(Duration::from_millis(1)).await;
        (got, took, alive.load(Ordering::SeqCst))
    });
    let (mut got, took, running) = match out {
        Ok(v) => v,
        Err(e) => {
            return Verdict::not_yet(
                DEADLINE,
                format!("the run failed: {e}"),
                "return a Vec<u32> of the results that arrived before the deadline",
            );
        }
    };
    got.sort_unstable();
    let expected: Vec<u32> = GATHER_TASKS.iter().filter(|(_, d)| *d <= GATHER_DEADLINE).map(|(v, _)| *v).collect();
    let secs = fmt_num(took.as_secs_f64());
    if took > GATHER_DEADLINE + Duration::from_millis(5) {
        return Verdict::not_yet(
            DEADLINE,
            format!("gather returned after {secs} s (paused clock) for a {} s deadline", GATHER_DEADLINE.as_secs()),
            "stop waiting at the deadline: wrap each join_next() in tokio::time::timeout_at(end, ..) with a fixed end",
        );
    }
    if got != expected {
        return Verdict::not_yet(
            DEADLINE,
            format!("gather returned {got:?} after {secs} s; the tasks done by the deadline were {expected:?}"),
            "keep calling join_next() until the deadline passes (or the set is empty), collecting every Ok value",
        );
    }
    if running > 0 {
        return Verdict::not_yet(
            DEADLINE,
            format!("results {got:?} at {secs} s, but {running} late task(s) were still running afterwards"),
            "do not detach the late tasks: let the JoinSet drop (it aborts what is left) or call abort_all()",
        );
    }
    Verdict::pass(
        DEADLINE,
        format!(
            "results {got:?} at {secs} s of a {} s deadline; the {} late tasks (up to an hour) were dropped",
            GATHER_DEADLINE.as_secs(),
            GATHER_TASKS.len() - expected.len()
        ),
    )
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "task-lifecycle",
        super::NOTEBOOK,
        "an event log per tokio task: JoinHandle, panic, abort, JoinSet, detached, spawn_blocking, and shutdown_timeout",
        task_lifecycle,
    )]
}

crate::impl_params!(TaskLifecycle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_refuses_bad_parameters() {
        assert!(task_lifecycle(&TaskLifecycle { workers: 0, ..Default::default() }).is_err());
        assert!(task_lifecycle(&TaskLifecycle { set_tasks: 1, ..Default::default() }).is_err());
        let e = TaskLifecycle { shutdown_timeout_ms: 0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=5000"), "{e}");
        assert!(TaskLifecycle::default().validate().is_ok());
        assert!(TaskLifecycle::default().estimate() < Duration::from_secs(2));
    }

    #[test]
    fn lifecycle_logs_every_outcome_and_draws() {
        let p =
            TaskLifecycle { step_ms: 5, set_tasks: 3, blocking_ms: 200, shutdown_timeout_ms: 20, ..Default::default() };
        let r = task_lifecycle(&p).unwrap();
        let o = &r.outcomes;
        assert_eq!(o.awaited, Ok(42));
        assert!(o.is_panic);
        assert_eq!(o.panic_message, "task 'panics' failed on purpose");
        assert!(o.is_cancelled);
        assert_eq!(o.blocking, Ok(7));
        let mut sorted = o.join_order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2]);
        // The abort drops the task's future: its guard ran, after abort() was called.
        let dropped = r.event(ABORTED, TaskEventKind::Dropped).unwrap();
        assert!(dropped.detail.contains("abort"), "{dropped:?}");
        assert!(dropped.at_ms >= r.at(ABORTED, TaskEventKind::AbortCalled).unwrap());
        // The detached task finished although nobody held its handle.
        assert!(r.event(DETACHED, TaskEventKind::Finished).is_some());
        // Shutdown dropped the sleeper and the waiter at their await, not the blocking job.
        let names: Vec<&str> = r.dropped_at_shutdown().iter().map(|e| e.task.as_str()).collect();
        assert!(names.contains(&SLEEPER) && names.contains(&WAITER), "{names:?}");
        assert!(r.event(SLEEPER, TaskEventKind::Finished).is_none());
        // The 200 ms blocking job outlived a 20 ms shutdown_timeout (a 10× margin), and
        // still ran to its end.
        let fin = r.at(BLOCKING_AT_SHUTDOWN, TaskEventKind::Finished).unwrap();
        assert!(fin > r.at(RUNTIME, TaskEventKind::ShutdownReturned).unwrap(), "{:#?}", r.events);
        assert!(r.at(RUNTIME, TaskEventKind::ThreadsGone).unwrap() >= fin);
        assert!(r.findings().len() >= 9);
        assert!(r.findings().iter().any(|f| f.text.contains("could not be interrupted")));
        let svg = r.figure().to_svg();
        assert!(svg.contains("<svg"));
        assert!(r.figure().errors.is_empty());
        assert!(r.table().to_string().contains("is_panic() = true"));
    }

    #[test]
    fn a_long_shutdown_timeout_waits_for_the_blocking_job() {
        let p = TaskLifecycle {
            step_ms: 5,
            set_tasks: 2,
            blocking_ms: 20,
            shutdown_timeout_ms: 2_000,
            ..Default::default()
        };
        let r = task_lifecycle(&p).unwrap();
        let fin = r.at(BLOCKING_AT_SHUTDOWN, TaskEventKind::Finished).unwrap();
        assert!(fin <= r.at(RUNTIME, TaskEventKind::ShutdownReturned).unwrap());
        assert!(r.shutdown_ms < 1_500.0, "{}", r.shutdown_ms);
        assert!(r.findings().iter().any(|f| f.text.contains("waited for the spawn_blocking job")));
    }

    #[test]
    fn the_deadline_checker_tells_right_from_wrong() {
        let good = check_gather_with_deadline(|mut set, deadline| async move {
            let mut got = Vec::new();
            let end = tokio::time::Instant::now() + deadline;
            while let Ok(Some(r)) = tokio::time::timeout_at(end, set.join_next()).await {
                got.extend(r.ok());
            }
            got
        });
        assert!(good.passed, "{good}");
        // Waits for all: right values for "all", but an hour late.
        let all = check_gather_with_deadline(|set, _| async move { set.join_all().await });
        assert!(!all.passed && all.detail.contains("3600"), "{all}");
        // Stops at the deadline but detaches the rest.
        let detach = check_gather_with_deadline(|mut set, deadline| async move {
            let mut got = Vec::new();
            let end = tokio::time::Instant::now() + deadline;
            while let Ok(Some(r)) = tokio::time::timeout_at(end, set.join_next()).await {
                got.extend(r.ok());
            }
            set.detach_all();
            got
        });
        assert!(!detach.passed && detach.detail.contains("still running"), "{detach}");
        // Returns at once with nothing.
        let none = check_gather_with_deadline(|_, _| async { Vec::new() });
        assert!(!none.passed && none.hint.as_deref().unwrap().contains("join_next"), "{none}");
    }
}

/// The cells proposed for the notebook, as a learner would write them (only `use
/// conclab::prelude::*;` in scope), run here so they keep compiling.
#[cfg(test)]
mod notebook_cells {
    use crate::prelude::*;

    #[test]
    fn join_handle_outcomes() {
        let outcomes = one_line_panics(|| {
            rt::run(Rt::multi(2), || async {
                let ok = tokio::spawn(async { 6 * 7 });
                let boom = tokio::spawn(async {
                    let empty: Vec<u32> = Vec::new();
                    empty[3] // panics: index out of bounds
                });
                let slow = tokio::spawn(async { tokio::time::sleep(ms(60_000)).await });
                slow.abort();
                let ok = ok.await;
                let boom = boom.await.unwrap_err();
                let slow = slow.await.unwrap_err();
                format!(
                    "ok:    {ok:?}\npanic: is_panic() = {}, {:?}\nabort: is_cancelled() = {}",
                    boom.is_panic(),
                    boom.into_panic().downcast_ref::<String>(),
                    slow.is_cancelled()
                )
            })
        });
        let text = outcomes.unwrap();
        println!("{text}");
        assert!(text.contains("Ok(42)") && text.contains("index out of bounds") && text.contains("= true"));
    }

    #[test]
    fn join_set_in_completion_order() {
        let order = rt::run(Rt::multi(2), || async {
            let mut set = tokio::task::JoinSet::new();
            for (name, wait) in [("slow", 60), ("fast", 10), ("medium", 35)] {
                set.spawn(async move {
                    tokio::time::sleep(ms(wait)).await;
                    name
                });
            }
            let mut order = Vec::new();
            while let Some(done) = set.join_next().await {
                order.push(done.expect("the task panicked"));
            }
            order
        });
        println!("{order:?}");
        assert_eq!(order.unwrap(), ["fast", "medium", "slow"]);
    }

    #[test]
    fn shutdown_drops_a_task_mid_await() {
        use std::sync::{Arc, Mutex};
        struct Noisy(&'static str, Arc<Mutex<Vec<String>>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.1.lock().unwrap().push(format!("{} dropped", self.0));
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let done = rt::run(Rt::multi(2).grace(ms(50)), move || async move {
            let l2 = l.clone();
            tokio::spawn(async move {
                let _guard = Noisy("sleeper", l2);
                tokio::time::sleep(ms(60_000)).await;
                println!("never printed");
            });
            tokio::time::sleep(ms(10)).await;
            l.lock().unwrap().push("the body returns".into());
        });
        let lines = log.lock().unwrap().join("\n");
        println!("{done:?}\n{lines}");
        assert_eq!(done, Ok(()));
        assert_eq!(lines, "the body returns\nsleeper dropped");
    }

    #[test]
    fn an_hour_of_backoff_on_a_paused_clock() {
        let (attempts, virtual_time, wall) = run_paused(Rt::current(), || async {
            let wall = std::time::Instant::now();
            let start = tokio::time::Instant::now();
            let mut attempts = 0;
            let policy = Backoff::doubling(std::time::Duration::from_secs(1), 20);
            let _ = retry_with_backoff(policy, |n| {
                attempts = n;
                async move { if n <= 12 { Err("service down") } else { Ok(()) } }
            })
            .await;
            (attempts, start.elapsed(), wall.elapsed())
        })
        .unwrap();
        println!("{attempts} attempts, {virtual_time:?} of tokio time, {wall:?} of wall time");
        assert_eq!(attempts, 13);
        assert!(virtual_time.as_secs() >= 3600 && wall.as_secs() < 5);
    }

    #[test]
    fn advance_by_hand() {
        let seen = run_paused(Rt::current(), || async {
            let timer = tokio::spawn(tokio::time::sleep(std::time::Duration::from_secs(30)));
            tokio::task::yield_now().await; // let the task start its sleep
            tokio::time::advance(std::time::Duration::from_secs(29)).await;
            let after_29_s = timer.is_finished();
            tokio::time::advance(std::time::Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
            (after_29_s, timer.is_finished())
        });
        println!("{seen:?}");
        assert_eq!(seen, Ok((false, true)));
    }
}
