//! Work stealing, made visible: a burst of CPU tasks spawned by one task on one worker of
//! a multi-thread runtime lands in that worker's local queue (the newest in its LIFO
//! slot), and the other workers steal from it; the same burst spawned from outside the
//! workers goes through the global (injection) queue instead. Each task records the worker
//! that spawned it, the worker that ran it, and when; the runtime's stable metrics
//! (`tokio::runtime::RuntimeMetrics`, no `tokio_unstable` needed) are read before, just
//! after the burst, and at the end.

use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Table, check_range, cores, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The worker number of the current thread, read from the name [`crate::lab::rt::run`]
/// gives its workers (`rt1a2b3c-w1` → `Some(1)`); `None` on the thread that drives
/// `block_on`, a blocking-pool thread or any other thread. Call it inside a task to see
/// where the task runs: `tokio::spawn(async { current_worker() })`.
pub fn current_worker() -> Option<usize> {
    let t = std::thread::current();
    let tail = t.name()?.rsplit_once('-')?.1;
    tail.strip_prefix('w')?.parse().ok()
}

/// The stable runtime metrics of tokio 1.x at one moment, with a label ("before").
///
/// `num_workers`, `num_alive_tasks` and `global_queue_depth` are stable; so are the
/// per-worker `worker_total_busy_duration`, `worker_park_count` and
/// `worker_park_unpark_count` (on targets with 64-bit atomics). Per-worker queue depths,
/// steal counts and poll counts need `--cfg tokio_unstable` and are not read here. The
/// per-worker vectors are indexed by tokio's own worker index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// When it was taken, in words.
    pub at: String,
    pub num_workers: usize,
    /// Tasks spawned and not yet finished (and released).
    pub num_alive_tasks: usize,
    /// Tasks waiting in the global (injection) queue.
    pub global_queue_depth: usize,
    /// Per worker: total time spent running tasks since the runtime started, ms.
    pub busy_ms: Vec<f64>,
    /// Per worker: times it parked (went idle waiting for work).
    pub park_count: Vec<u64>,
    /// Per worker: parks plus unparks (odd: parked right now).
    pub park_unpark_count: Vec<u64>,
}

impl MetricsSnapshot {
    /// Reads the metrics of the runtime this code runs in (`Handle::current()`); panics
    /// outside a runtime, as `Handle::current` does.
    pub fn now(at: &str) -> MetricsSnapshot {
        MetricsSnapshot::of(at, &tokio::runtime::Handle::current().metrics())
    }

    /// Reads the given metrics.
    pub fn of(at: &str, m: &tokio::runtime::RuntimeMetrics) -> MetricsSnapshot {
        let n = m.num_workers();
        MetricsSnapshot {
            at: at.to_string(),
            num_workers: n,
            num_alive_tasks: m.num_alive_tasks(),
            global_queue_depth: m.global_queue_depth(),
            busy_ms: (0..n).map(|w| m.worker_total_busy_duration(w).as_secs_f64() * 1e3).collect(),
            park_count: (0..n).map(|w| m.worker_park_count(w)).collect(),
            park_unpark_count: (0..n).map(|w| m.worker_park_unpark_count(w)).collect(),
        }
    }
}

/// Metrics snapshots as a table: one row per snapshot, per-worker values listed in
/// tokio's worker order (`12 / 11` for two workers).
///
/// ```
/// use conclab::prelude::*;
/// let t = rt::run(Rt::multi(2), || async {
///     let before = MetricsSnapshot::now("before");
///     let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(async { std::hint::black_box(1) })).collect();
///     let during = MetricsSnapshot::now("right after spawning");
///     for t in tasks {
///         t.await.unwrap();
///     }
///     metrics_table("Runtime metrics", &[before, during, MetricsSnapshot::now("after")])
/// })
/// .unwrap();
/// assert!(t.to_string().contains("num_alive_tasks"));
/// ```
pub fn metrics_table(title: &str, snapshots: &[MetricsSnapshot]) -> Table {
    let mut t = Table::new(
        title,
        &[
            "when",
            "num_workers",
            "num_alive_tasks",
            "global_queue_depth",
            "busy ms per worker",
            "parks per worker",
            "park+unpark per worker",
        ],
    );
    let join = |v: Vec<String>| v.join(" / ");
    for s in snapshots {
        t.row(vec![
            s.at.clone(),
            s.num_workers.to_string(),
            s.num_alive_tasks.to_string(),
            s.global_queue_depth.to_string(),
            join(s.busy_ms.iter().map(|v| if *v < 0.01 { "0".into() } else { fmt_num(*v) }).collect()),
            join(s.park_count.iter().map(u64::to_string).collect()),
            join(s.park_unpark_count.iter().map(u64::to_string).collect()),
        ]);
    }
    t
}

/// Parameters of [`work_stealing`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkStealing {
    /// Worker threads of the multi-thread runtime: 1..=16 (default: the core count, at
    /// least 2 and at most 4).
    pub workers: usize,
    /// CPU tasks in the burst: 1..=1000 (a worker's local queue holds 256; more overflow
    /// to the global queue).
    pub tasks: usize,
    /// CPU work per task in µs (a calibrated busy loop, no `.await`): 50..=20000.
    pub task_us: u64,
}

impl Default for WorkStealing {
    fn default() -> Self {
        WorkStealing { workers: cores().clamp(2, 4), tasks: 48, task_us: 1_000 }
    }
}

impl WorkStealing {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("workers", self.workers, 1..=16)?;
        check_range("tasks", self.tasks, 1..=1000)?;
        check_range("task_us", self.task_us, 50..=20_000)?;
        check_estimate("tasks × task_us", self.estimate())
    }

    /// Both bursts, each spread over at most as many workers as there are cores, plus
    /// start-up and calibration.
    pub fn estimate(&self) -> Duration {
        let parallel = self.workers.min(cores()).max(1) as u64;
        let burst = self.tasks as u64 * self.task_us / parallel;
        Duration::from_micros(2 * burst + 100_000)
    }
}

/// Where a burst was spawned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SpawnFrom {
    /// By a task running on a worker: `tokio::spawn` pushes to that worker's local queue
    /// (the newest task into its LIFO slot).
    Worker,
    /// From the thread that drives `block_on`, which is not a worker: `tokio::spawn`
    /// pushes to the global (injection) queue, as `Handle::spawn` from any other thread.
    Outside,
}

impl SpawnFrom {
    /// A short name for tables and figures.
    pub fn label(self) -> &'static str {
        match self {
            SpawnFrom::Worker => "spawned on a worker (local queue)",
            SpawnFrom::Outside => "spawned from outside (global queue)",
        }
    }
}

/// One CPU task of a burst.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRun {
    /// Spawn order, 0 first.
    pub index: usize,
    /// The worker whose task spawned it (`None`: spawned from outside the workers).
    pub spawned_on: Option<usize>,
    /// The worker that ran it (`None` only if it ran off the workers, which it should not).
    pub ran_on: Option<usize>,
    /// Start and end of its (single) poll, ms since the burst began.
    pub start_ms: f64,
    pub end_ms: f64,
}

impl TaskRun {
    /// Whether it ran on a worker other than its spawner's (it was stolen).
    pub fn moved(&self) -> bool {
        self.spawned_on.is_some() && self.ran_on != self.spawned_on
    }
}

/// One burst: its tasks, the spawner's stretch and the metrics around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burst {
    pub from: SpawnFrom,
    /// The worker the spawning task ran on (`None` for [`SpawnFrom::Outside`]).
    pub spawner: Option<usize>,
    /// The spawning loop, ms since the burst began (the spawner's own span).
    pub spawn_ms: (f64, f64),
    /// Every task, in spawn order.
    pub tasks: Vec<TaskRun>,
    /// Metrics before the burst, right after spawning it, and after every task finished.
    pub metrics: Vec<MetricsSnapshot>,
}

/// Per-worker summary of a burst.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerShare {
    pub worker: usize,
    pub tasks: usize,
    /// Sum of the task spans it ran, ms.
    pub task_ms: f64,
}

impl Burst {
    /// Tasks that ran on a worker other than their spawner's.
    pub fn moved(&self) -> usize {
        self.tasks.iter().filter(|t| t.moved()).count()
    }

    /// Tasks run and time spent per worker (every worker of the runtime, in order).
    pub fn shares(&self, workers: usize) -> Vec<WorkerShare> {
        (0..workers)
            .map(|w| {
                let mine: Vec<&TaskRun> = self.tasks.iter().filter(|t| t.ran_on == Some(w)).collect();
                WorkerShare { worker: w, tasks: mine.len(), task_ms: mine.iter().map(|t| t.end_ms - t.start_ms).sum() }
            })
            .collect()
    }

    /// The tasks the spawner's worker ran, in the order it started them.
    pub fn run_order_on_spawner(&self) -> Vec<usize> {
        let mut mine: Vec<&TaskRun> =
            self.tasks.iter().filter(|t| t.ran_on.is_some() && t.ran_on == self.spawner).collect();
        mine.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        mine.iter().map(|t| t.index).collect()
    }

    /// From the first task start to the last task end, ms.
    pub fn makespan_ms(&self) -> f64 {
        let lo = self.tasks.iter().map(|t| t.start_ms).fold(f64::INFINITY, f64::min);
        let hi = self.tasks.iter().map(|t| t.end_ms).fold(0.0, f64::max);
        if lo.is_finite() { hi - lo } else { 0.0 }
    }

    /// When the last worker to get any task started its first one, ms since the burst
    /// began (`None` if a worker ran nothing).
    pub fn all_started_ms(&self, workers: usize) -> Option<f64> {
        (0..workers)
            .map(|w| self.tasks.iter().filter(|t| t.ran_on == Some(w)).map(|t| t.start_ms).min_by(f64::total_cmp))
            .try_fold(0.0f64, |acc, s| s.map(|s| acc.max(s)))
    }

    /// The first start on a worker other than the spawner's, ms since the burst began.
    pub fn first_elsewhere_ms(&self) -> Option<f64> {
        self.tasks.iter().filter(|t| t.ran_on != self.spawner).map(|t| t.start_ms).min_by(f64::total_cmp)
    }

    /// Per worker, busy ms from the metrics (after all − before).
    pub fn busy_ms(&self) -> Vec<f64> {
        match (self.metrics.first(), self.metrics.last()) {
            (Some(a), Some(b)) => b.busy_ms.iter().zip(&a.busy_ms).map(|(b, a)| (b - a).max(0.0)).collect(),
            _ => Vec::new(),
        }
    }
}

/// Result of [`work_stealing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkStealingReport {
    pub params: WorkStealing,
    /// Busy-loop iterations per ms on this machine (the task work).
    pub iters_per_ms: u64,
    /// [`SpawnFrom::Worker`] first, then [`SpawnFrom::Outside`].
    pub bursts: Vec<Burst>,
    pub load: Load,
}

async fn cpu_task(index: usize, spawned_on: Option<usize>, iters: u64, origin: Instant) -> TaskRun {
    let start = Instant::now();
    let ran_on = current_worker();
    crate::lab::work::busy(iters, index as u64 + 1);
    let end = Instant::now();
    let ms = |t: Instant| t.duration_since(origin).as_secs_f64() * 1e3;
    TaskRun { index, spawned_on, ran_on, start_ms: ms(start), end_ms: ms(end) }
}

type Spawned = (Vec<tokio::task::JoinHandle<TaskRun>>, Option<usize>, (f64, f64), MetricsSnapshot);

async fn burst(from: SpawnFrom, tasks: usize, iters: u64) -> Burst {
    // Let the freshly started workers go idle first, as in a server between requests.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = MetricsSnapshot::now("before the burst");
    let origin = Instant::now();
    let spawn_all = move || -> Spawned {
        let me = current_worker();
        let t0 = Instant::now();
        let handles = (0..tasks).map(|i| tokio::spawn(cpu_task(i, me, iters, origin))).collect();
        let t1 = Instant::now();
        let after = MetricsSnapshot::now("right after spawning");
        let ms = |t: Instant| t.duration_since(origin).as_secs_f64() * 1e3;
        (handles, me, (ms(t0), ms(t1)), after)
    };
    let (handles, spawner, spawn_ms, mid) = match from {
        SpawnFrom::Worker => tokio::spawn(async move { spawn_all() }).await.expect("the spawner does not panic"),
        SpawnFrom::Outside => spawn_all(),
    };
    let mut runs = Vec::with_capacity(tasks);
    for h in handles {
        runs.push(h.await.expect("a CPU task does not panic"));
    }
    // A finished task is released a moment after its JoinHandle reports: let the count settle.
    let settle = Instant::now() + Duration::from_millis(50);
    while tokio::runtime::Handle::current().metrics().num_alive_tasks() > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after = MetricsSnapshot::now("after every task finished");
    Burst { from, spawner, spawn_ms, tasks: runs, metrics: vec![before, mid, after] }
}

/// Runs two bursts of `tasks` CPU tasks (`task_us` µs of busy work each, no `.await`) on
/// a fresh multi-thread runtime with `workers` workers each: first spawned by one task
/// running on a worker (they land in its local queue; the others must steal), then
/// spawned from the `block_on` thread (they go to the global queue). Records the spawner's
/// and the runner's worker and the span of every task, and the stable runtime metrics
/// before, right after spawning and at the end.
pub fn work_stealing(p: &WorkStealing) -> Result<WorkStealingReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let ipm = crate::lab::work::iters_per_ms();
    let iters = (ipm * p.task_us / 1_000).max(1);
    let mut bursts = Vec::new();
    for from in [SpawnFrom::Worker, SpawnFrom::Outside] {
        let tasks = p.tasks;
        // Bounded: 20× the work run on one worker, plus 10 s.
        let limit = Duration::from_micros(20 * tasks as u64 * p.task_us) + Duration::from_secs(10);
        let b = crate::lab::rt::run(Rt::multi(p.workers).timeout(limit), move || burst(from, tasks, iters))
            .map_err(|e| RunError::new(format!("the burst {}", from.label()), e))?;
        bursts.push(b);
    }
    Ok(WorkStealingReport { params: p.clone(), iters_per_ms: ipm, bursts, load: probe.finish() })
}

/// Span colours (keys) of the Gantt charts.
const SPAWNER: &str = "the spawning task";
const STAYED: &str = "ran on the spawner's worker";
const LIFO: &str = "ran first from the LIFO slot (newest task)";
const MOVED: &str = "moved: stolen by another worker";
const GLOBAL: &str = "taken from the global queue";

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 { fmt_num(100.0 * part / whole) } else { "0".into() }
}

impl WorkStealingReport {
    /// The burst spawned from `from`.
    pub fn burst(&self, from: SpawnFrom) -> Option<&Burst> {
        self.bursts.iter().find(|b| b.from == from)
    }

    /// One row per task: spawn order, spawner, runner, moved, start, end.
    pub fn tasks_table(&self) -> Table {
        let mut t = Table::new(
            "Every task of both bursts",
            &["burst", "task", "spawned on", "ran on", "moved", "start ms", "end ms"],
        );
        let w = |o: Option<usize>| o.map_or("outside".to_string(), |w| format!("worker {w}"));
        for b in &self.bursts {
            for r in &b.tasks {
                t.row(vec![
                    b.from.label().into(),
                    r.index.to_string(),
                    w(r.spawned_on),
                    w(r.ran_on),
                    if r.moved() { "yes".into() } else { "".into() },
                    fmt_num(r.start_ms),
                    fmt_num(r.end_ms),
                ]);
            }
        }
        t
    }

    fn gantt(&self, b: &Burst) -> Figure {
        let title = match b.from {
            SpawnFrom::Worker => format!(
                "{} tasks spawned by one task on worker {}: who ran them ({} moved)",
                b.tasks.len(),
                b.spawner.map_or("?".into(), |w| w.to_string()),
                b.moved()
            ),
            SpawnFrom::Outside => {
                format!("{} tasks spawned from outside the workers: the global queue feeds every worker", b.tasks.len())
            }
        };
        let mut f = Figure::timeline(&title, "time since the burst began (ms)", "worker");
        let lifo = self.lifo_first(b);
        let lane = |w: Option<usize>| w.map_or("off the workers".to_string(), |w| format!("worker {w}"));
        // Lanes top to bottom in worker order: spans are added lane by lane.
        let mut lanes: Vec<Option<usize>> = (0..self.params.workers).map(Some).collect();
        lanes.push(None);
        for w in lanes {
            if b.from == SpawnFrom::Worker && w == b.spawner {
                f = f.span(&lane(w), SPAWNER, b.spawn_ms.0, b.spawn_ms.1.max(b.spawn_ms.0 + 0.02));
            }
            for r in b.tasks.iter().filter(|r| r.ran_on == w) {
                let key = match b.from {
                    SpawnFrom::Outside => GLOBAL,
                    SpawnFrom::Worker if r.moved() => MOVED,
                    SpawnFrom::Worker if Some(r.index) == lifo => LIFO,
                    SpawnFrom::Worker => STAYED,
                };
                // 4 % shorter, so back-to-back tasks stay apart.
                f = f.span(&lane(w), key, r.start_ms, r.end_ms - 0.04 * (r.end_ms - r.start_ms));
            }
        }
        let note = match b.from {
            SpawnFrom::Worker => "tokio::spawn on a worker pushes to that worker's LIFO slot; the task that was there moves \
                                  to the back of its local queue. Idle workers steal half of a busy worker's local queue \
                                  (never its LIFO slot)."
                .to_string(),
            SpawnFrom::Outside => "tokio::spawn from a thread that is not a worker pushes to the global (injection) \
                                   queue; an idle worker takes a batch of tasks from it into its own local queue."
                .to_string(),
        };
        let f = f.note(note).note(
            "One bar per task, drawn 4 % shorter so that back-to-back tasks stay apart. A gap on a lane: the \
             worker had nothing to run, or its thread was not on a CPU.",
        );
        mark_busy(f, &self.load)
    }

    /// The task the spawner's worker ran first, when it was the newest one (the LIFO slot).
    fn lifo_first(&self, b: &Burst) -> Option<usize> {
        let first = *b.run_order_on_spawner().first()?;
        (first + 1 == b.tasks.len() && b.tasks.len() > 1).then_some(first)
    }
}

impl Report for WorkStealingReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        if let Some(b) = self.burst(SpawnFrom::Worker) {
            let n = b.tasks.len();
            let moved = b.moved();
            let sp = b.spawner.map_or("?".into(), |w| w.to_string());
            let text = if p.workers == 1 {
                format!(
                    "with 1 worker nothing can move: all {n} tasks ran on worker {sp}, one after another — \
                     stealing needs a second worker with nothing to do"
                )
            } else if moved == 0 {
                format!(
                    "no task moved: all {n} ran on worker {sp}, whose task spawned them. The other workers never \
                     stole from its local queue — they were not woken, or the OS did not run them in time (a busy \
                     or 1-core machine); run it again on a quiet machine"
                )
            } else {
                let late = b
                    .first_elsewhere_ms()
                    .map(|t| format!("; the first stolen task started {} ms after the burst began", fmt_num(t)))
                    .unwrap_or_default();
                format!(
                    "{moved} of {n} tasks ({} %) moved: spawned on worker {sp}, they ran on another worker. tokio::spawn \
                     put every one in worker {sp}'s local queue; the idle workers, woken by the spawns, stole half of \
                     that queue at a time{late}",
                    pct(moved as f64, n as f64)
                )
            };
            out.push(Finding::clear(text));
            let order = b.run_order_on_spawner();
            if n > 1
                && let Some(&first) = order.first()
            {
                let text = if first + 1 == n {
                    format!(
                        "the first task worker {sp} ran after its spawner was task {first}, the LAST one spawned: it \
                             sat in the worker's LIFO slot, which a worker runs before its queue (good for a task that \
                             just handed a message to the task it spawned) and which no other worker may steal"
                    )
                } else {
                    format!(
                        "the first task worker {sp} ran after its spawner was task {first}, not the newest ({}), \
                             which waits in the LIFO slot and normally runs first: something else got there first in \
                             this run (see tasks_table())",
                        n - 1
                    )
                };
                out.push(Finding::clear(text));
            }
            let busy = b.busy_ms();
            let total: f64 = busy.iter().sum();
            if total > 0.0 && p.workers > 1 {
                let split: Vec<String> = busy
                    .iter()
                    .enumerate()
                    .map(|(w, ms)| format!("worker {w} {} ms ({} %)", fmt_num(*ms), pct(*ms, total)))
                    .collect();
                let most = busy.iter().cloned().fold(0.0, f64::max);
                let even = 100.0 / p.workers as f64;
                let how = if most / total < 1.5 / p.workers as f64 {
                    format!("close to an even split ({} % each): stealing spread the burst", fmt_num(even))
                } else {
                    format!(
                        "uneven (an even split would be {} % each): the other workers came late or found little left \
                         to steal",
                        fmt_num(even)
                    )
                };
                out.push(Finding::clear(format!(
                    "busy time during the local-queue burst (worker_total_busy_duration, after − before): {}; {how}",
                    split.join(", ")
                )));
            }
            if let Some(mid) = b.metrics.get(1) {
                out.push(Finding::clear(format!(
                    "right after spawning {n} tasks from a worker, global_queue_depth was {} and num_alive_tasks {}: \
                     the tasks {} — a worker's local queue is invisible to the stable metrics \
                     (worker_local_queue_depth needs --cfg tokio_unstable)",
                    mid.global_queue_depth,
                    mid.num_alive_tasks,
                    if mid.global_queue_depth == 0 {
                        "were alive but not in the global queue"
                    } else {
                        "were alive, some already in the global queue (the local queue of 256 overflowed)"
                    }
                )));
            }
            if n > 256 {
                out.push(Finding::note(format!(
                    "{n} tasks is more than a local queue holds (256 plus the LIFO slot): on overflow tokio moves half \
                     of the local queue to the global queue, where any worker takes them"
                )));
            }
        }
        if let Some(g) = self.burst(SpawnFrom::Outside) {
            let n = g.tasks.len();
            let per: Vec<String> = g
                .shares(p.workers)
                .iter()
                .map(|s| {
                    let each = if s.tasks > 0 { s.task_ms / s.tasks as f64 } else { 0.0 };
                    format!("worker {} ran {} ({} ms each)", s.worker, s.tasks, fmt_num(each))
                })
                .collect();
            let depth = g.metrics.get(1).map_or(0, |m| m.global_queue_depth);
            let started = match (g.all_started_ms(p.workers), self.burst(SpawnFrom::Worker)) {
                (Some(t), Some(b)) if p.workers > 1 => format!(
                    "; every worker had started a task {} ms after the burst began{}",
                    fmt_num(t),
                    b.all_started_ms(p.workers)
                        .map(|l| format!(" (with the local queue, where they had to steal: {} ms)", fmt_num(l)))
                        .unwrap_or_default()
                ),
                _ => String::new(),
            };
            out.push(Finding::clear(format!(
                "spawned from the block_on thread (not a worker), the {n} tasks went to the global queue (its depth \
                 right after spawning: {depth}; the workers had already begun taking them); {}. An idle worker takes a \
                 batch from the global queue into its own, so no worker waits for a spawner's queue to be stolen \
                 from{started}",
                per.join(", ")
            )));
            if let Some(b) = self.burst(SpawnFrom::Worker) {
                let (a, c) = (b.makespan_ms(), g.makespan_ms());
                if a > 0.0 && c > 0.0 {
                    let ideal = n as f64 * p.task_us as f64 / 1e3 / p.workers.min(cores()).max(1) as f64;
                    let started = |x: &Burst| x.all_started_ms(p.workers).unwrap_or(0.0);
                    let (sa, sc) = (started(b), started(g));
                    let per_task: Vec<f64> = [b, g]
                        .iter()
                        .flat_map(|x| x.shares(p.workers))
                        .filter(|s| s.tasks > 0)
                        .map(|s| s.task_ms / s.tasks as f64)
                        .collect();
                    let lo = per_task.iter().cloned().fold(f64::INFINITY, f64::min);
                    let hi = per_task.iter().cloned().fold(0.0, f64::max);
                    let why = if (a / c - 1.0).abs() < 0.15 {
                        "about the same: once the tasks are spread, the work takes as long either way".to_string()
                    } else if a > c && sa - sc >= 0.5 * (a - c) {
                        format!(
                            "the local-queue burst was slower: the other workers had to wake up and steal before \
                             they could help (all had begun after {} ms vs {} ms)",
                            fmt_num(sa),
                            fmt_num(sc)
                        )
                    } else {
                        format!(
                            "not an effect of the queues: every worker had begun within {} ms in both bursts, but a \
                             task took {}–{} ms per worker for {} µs of work — the OS gave the workers' threads \
                             unequal CPU time (other processes, or fewer free cores than workers)",
                            fmt_num(sa.max(sc)),
                            fmt_num(lo),
                            fmt_num(hi),
                            p.task_us
                        )
                    };
                    out.push(Finding::clear(format!(
                        "first start to last end: {} ms from a worker's local queue vs {} ms from the global queue \
                         (ideal on {} of this machine's cores: {} ms) — {why}",
                        fmt_num(a),
                        fmt_num(c),
                        p.workers.min(cores()),
                        fmt_num(ideal),
                    )));
                    if a.min(c) > 1.5 * ideal {
                        out.push(Finding::note(format!(
                            "both bursts took {}× or more the ideal: the workers' threads did not get {} full cores \
                             (other processes were running, or the tasks slowed each other down)",
                            fmt_num(a.min(c) / ideal),
                            p.workers.min(cores())
                        )));
                    }
                }
            }
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        self.bursts.iter().map(|b| self.gantt(b)).collect()
    }

    fn table(&self) -> Table {
        let rows: Vec<MetricsSnapshot> = self
            .bursts
            .iter()
            .flat_map(|b| {
                let short = match b.from {
                    SpawnFrom::Worker => "local queue",
                    SpawnFrom::Outside => "global queue",
                };
                b.metrics.iter().map(move |m| MetricsSnapshot { at: format!("{short}: {}", m.at), ..m.clone() })
            })
            .collect();
        let mut t = metrics_table(
            &format!("Stable tokio runtime metrics around each burst ({} workers)", self.params.workers),
            &rows,
        );
        t.note(
            "Each burst runs on a fresh runtime. busy ms and parks are totals since the runtime started, \
             per worker in tokio's worker order.",
        );
        for b in &self.bursts {
            let shares: Vec<String> = b
                .shares(self.params.workers)
                .iter()
                .map(|s| format!("worker {}: {} tasks", s.worker, s.tasks))
                .collect();
            t.note(format!("{}: {}; moved {}.", b.from.label(), shares.join(", "), b.moved()));
        }
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "work-stealing",
        super::NOTEBOOK,
        "a burst of CPU tasks spawned on one worker vs from outside: who ran what (Gantt), tasks stolen, runtime metrics",
        work_stealing,
    )]
}

crate::impl_params!(WorkStealing);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rt::RtError;

    #[test]
    fn stealing_refuses_bad_parameters() {
        assert!(work_stealing(&WorkStealing { workers: 0, ..Default::default() }).is_err());
        assert!(work_stealing(&WorkStealing { tasks: 0, ..Default::default() }).is_err());
        assert!(work_stealing(&WorkStealing { task_us: 10, ..Default::default() }).is_err());
        let e = WorkStealing { workers: 17, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=16"), "{e}");
        assert!(WorkStealing::default().validate().is_ok());
        assert!(WorkStealing::default().estimate() < Duration::from_secs(8));
    }

    #[test]
    fn stealing_records_every_task_and_draws() {
        let p = WorkStealing { workers: 2, tasks: 16, task_us: 300 };
        let r = work_stealing(&p).unwrap();
        assert_eq!(r.bursts.len(), 2);
        let local = r.burst(SpawnFrom::Worker).unwrap();
        assert!(local.spawner.is_some());
        for b in &r.bursts {
            assert_eq!(b.tasks.len(), 16);
            assert!(b.tasks.iter().enumerate().all(|(i, t)| t.index == i && t.end_ms >= t.start_ms));
            assert!(b.tasks.iter().all(|t| t.ran_on.is_some_and(|w| w < 2)), "{:?}", b.tasks);
            assert_eq!(b.metrics.len(), 3);
            assert_eq!(b.metrics[0].num_workers, 2);
            let s: usize = b.shares(2).iter().map(|s| s.tasks).sum();
            assert_eq!(s, 16);
        }
        let outside = r.burst(SpawnFrom::Outside).unwrap();
        assert!(outside.tasks.iter().all(|t| t.spawned_on.is_none() && !t.moved()));
        assert!(local.tasks.iter().all(|t| t.spawned_on == local.spawner));
        // The metrics count the burst: every task was alive right after spawning (none
        // can have finished in the microseconds the spawning took... but allow a few).
        assert!(local.metrics[1].num_alive_tasks >= 8, "{:?}", local.metrics[1]);
        assert!(local.metrics[2].busy_ms.iter().sum::<f64>() > 0.0);
        let f = r.findings();
        assert!(f.len() >= 5, "{f:?}");
        assert!(r.figures().len() == 2);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("global_queue_depth"));
        assert!(r.tasks_table().to_string().contains("ran on"));
    }

    #[test]
    fn one_worker_moves_nothing_and_says_so() {
        let r = work_stealing(&WorkStealing { workers: 1, tasks: 6, task_us: 100 }).unwrap();
        assert_eq!(r.burst(SpawnFrom::Worker).unwrap().moved(), 0);
        assert!(r.findings()[0].text.contains("nothing can move"), "{:?}", r.findings());
    }

    #[test]
    fn a_task_knows_its_worker_and_metrics_read_inside_a_run() {
        let (w, m) = crate::lab::rt::run(Rt::multi(2), || async {
            let w = tokio::spawn(async { current_worker() }).await.unwrap();
            (w, MetricsSnapshot::now("now"))
        })
        .unwrap();
        assert!(w.is_some_and(|w| w < 2));
        assert_eq!(m.num_workers, 2);
        assert_eq!(m.busy_ms.len(), 2);
        assert_eq!(current_worker(), None, "the test thread is not a worker");
    }

    /// The notebook cell proposed for "where do tasks run?", as a learner writes it.
    #[test]
    fn notebook_cell_where_tasks_run() -> Result<(), RtError> {
        use crate::prelude::*;
        use std::time::Instant;
        let (spawner, ran_on) = rt::run(Rt::multi(2), || async {
            tokio::spawn(async {
                let me = current_worker();
                let tasks: Vec<_> = (0..8)
                    .map(|i| {
                        tokio::spawn(async move {
                            let t = Instant::now();
                            while t.elapsed() < ms(1) {} // 1 ms of CPU work, no .await
                            (i, current_worker())
                        })
                    })
                    .collect();
                let mut ran_on = Vec::new();
                for t in tasks {
                    ran_on.push(t.await.unwrap());
                }
                (me, ran_on)
            })
            .await
            .unwrap()
        })?;
        let moved = ran_on.iter().filter(|(_, w)| *w != spawner).count();
        println!("spawned on worker {spawner:?}; ran on {ran_on:?}; {moved} moved");
        assert!(spawner.is_some() && ran_on.len() == 8);
        Ok(())
    }
}
