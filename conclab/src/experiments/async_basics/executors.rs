//! Executors: what it costs to spawn a task and to poll it, on the hand-built
//! [`MiniExecutor`] and on tokio's runtimes, for the same tasks.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::{compare, group};
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::{
    Figure, Finding, LabError, Legend, Load, LoadProbe, ParamError, Point, Report, RunError, Sampling, Series, Stats,
    Style, Table, check_list, check_range, fmt_num,
};
use crate::primitives::executor::{ExecError, ExecStats, MiniExecutor, yield_now};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Parameters of [`executors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Executors {
    /// Tasks spawned together in one round, one point per count: each 1..=100_000, at most 8 counts.
    pub tasks: Vec<usize>,
    /// Times each task of the per-poll measurement yields (wakes itself and returns
    /// `Pending`) before it finishes: 1..=10_000. Each task is polled `yields + 1` times.
    pub yields: usize,
    /// Timed samples per point (after one warm-up): 1..=51.
    pub samples: usize,
    /// Also measure tokio's multi-thread runtime with one worker (the tasks run on the worker).
    pub multi_thread: bool,
}

impl Default for Executors {
    fn default() -> Self {
        Executors { tasks: vec![1, 10, 100, 1_000, 10_000], yields: 100, samples: 7, multi_thread: true }
    }
}

/// Each sample repeats its round (spawn all tasks, run them all to the end) until it has
/// polled at least this many times, so that even a single task is timed over milliseconds.
pub const MIN_POLLS: usize = 100_000;
/// The same for the per-spawn measurement: at least this many spawns per sample.
pub const MIN_SPAWNS: usize = 10_000;
/// Slow-machine guesses used only for the run-time estimate.
const EST_NS_PER_POLL: f64 = 200.0;
const EST_NS_PER_SPAWN: f64 = 1_000.0;

impl Executors {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("tasks", &self.tasks, 8, 1..=100_000)?;
        check_range("yields", self.yields, 1..=10_000)?;
        check_range("samples", self.samples, 1..=51)?;
        let per_sample_ns: f64 = self
            .tasks
            .iter()
            .map(|&n| {
                let (sr, pr) = self.rounds(n);
                (sr * n) as f64 * EST_NS_PER_SPAWN + (pr * n * (self.yields + 1)) as f64 * EST_NS_PER_POLL
            })
            .sum();
        let runs = (self.samples + 1) as f64 * self.executors().len() as f64;
        check_estimate("tasks × yields × samples", Duration::from_secs_f64(per_sample_ns * runs / 1e9))
    }

    /// Rounds per sample at `n` tasks: (per-spawn measurement, per-poll measurement).
    pub fn rounds(&self, n: usize) -> (usize, usize) {
        (MIN_SPAWNS.div_ceil(n).max(1), MIN_POLLS.div_ceil(n * (self.yields + 1)).max(1))
    }

    /// The executors measured, in the order of the figure and the table.
    pub fn executors(&self) -> Vec<&'static str> {
        let mut v = vec![MINI, TOKIO_CURRENT];
        if self.multi_thread {
            v.push(TOKIO_MULTI);
        }
        v
    }
}

pub const MINI: &str = "mini executor";
pub const TOKIO_CURRENT: &str = "tokio current-thread";
pub const TOKIO_MULTI: &str = "tokio multi-thread, 1 worker";

/// One executor at one task count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorRow {
    pub executor: String,
    pub tasks: usize,
    /// Nanoseconds per task that finishes at once: spawn, one poll, completion, and
    /// taking its output through the join handle.
    pub ns_per_spawn: Stats,
    /// Nanoseconds per poll of tasks that each yield `yields` times: the whole round
    /// (spawns included) divided by `tasks × (yields + 1)` polls.
    pub ns_per_poll: Stats,
    /// Rounds per sample of the two measurements (see [`MIN_SPAWNS`], [`MIN_POLLS`]).
    pub spawn_rounds: usize,
    pub poll_rounds: usize,
}

/// The mini executor's own counters after the last per-poll sample at one task count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MiniCounts {
    pub tasks: usize,
    /// `poll_rounds × tasks × (yields + 1)`: what the workload implies.
    pub expected_polls: u64,
    pub stats: ExecStats,
}

/// Result of [`executors`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorsReport {
    pub params: Executors,
    pub rows: Vec<ExecutorRow>,
    pub counts: Vec<MiniCounts>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

/// A task of the benchmark: yields `yields` times, then finishes.
pub async fn yielding_task(yields: usize) {
    for _ in 0..yields {
        yield_now().await;
    }
}

/// `rounds` times: spawn `tasks` [`yielding_task`]s on one [`MiniExecutor`], run it
/// until all have finished, take their outputs. Returns the time and the executor's counters.
pub fn mini_rounds(tasks: usize, yields: usize, rounds: usize) -> Result<(Duration, ExecStats), ExecError> {
    let mut ex = MiniExecutor::new();
    let mut handles = Vec::with_capacity(tasks);
    let t = Instant::now();
    for _ in 0..rounds {
        handles.extend((0..tasks).map(|_| ex.spawn(yielding_task(yields))));
        ex.run()?;
        for h in handles.drain(..) {
            black_box(h.try_take());
        }
    }
    Ok((t.elapsed(), ex.stats()))
}

/// The same rounds with `tokio::spawn` and `.await` on each handle, on the runtime
/// this future runs on.
pub async fn tokio_rounds(tasks: usize, yields: usize, rounds: usize) -> Duration {
    let mut handles = Vec::with_capacity(tasks);
    let t = Instant::now();
    for _ in 0..rounds {
        handles.extend((0..tasks).map(|_| tokio::spawn(yielding_task(yields))));
        for h in handles.drain(..) {
            black_box(h.await.is_ok());
        }
    }
    t.elapsed()
}

/// Measures one executor at `n` tasks with `yields` yields per task: nanoseconds per
/// spawn or per poll (`per` units per round), and the mini executor's counters.
fn measure(
    executor: &str,
    n: usize,
    yields: usize,
    rounds: usize,
    per: f64,
    sampling: Sampling,
) -> Result<(Stats, Option<ExecStats>), LabError> {
    let what = || format!("{executor} with {n} tasks yielding {yields} times");
    let scale = 1e9 / (rounds as f64 * per);
    if executor == MINI {
        let mut last = None;
        let stats = sampling
            .try_measure(|| {
                let (d, s) = mini_rounds(n, yields, rounds)?;
                last = Some(s);
                Ok::<_, ExecError>(d)
            })
            .map_err(|e| RunError::new(what(), e))?;
        return Ok((stats.scaled(scale), last));
    }
    // Rounds take milliseconds; the timeout only guards against a hang.
    let rt = if executor == TOKIO_CURRENT { Rt::current() } else { Rt::multi(1) }.timeout(Duration::from_secs(120));
    // The rounds run inside a spawned task, as a server's tasks do. (Driven by
    // `block_on` itself, the runtime's run queue would empty at every join of a round of
    // few tasks, and each time the runtime parks on its I/O and timer driver.)
    let stats = sampling
        .measure_async(&rt, move || async move {
            tokio::spawn(tokio_rounds(n, yields, rounds)).await.expect("the rounds do not panic")
        })
        .map_err(|e| RunError::new(what(), e))?;
    Ok((stats.scaled(scale), None))
}

/// Spawns `n` tasks and runs them to the end, on the mini executor and on tokio's
/// current-thread runtime (and, with `multi_thread`, a multi-thread runtime with one
/// worker), for every `n` in `tasks`. Two measurements each: tasks that finish at once
/// (cost per spawn: spawn + one poll + join), and tasks that yield `yields` times (cost
/// per poll: each yield is one wake, one trip through the run queue and one poll).
///
/// Every task is the same [`yielding_task`] future on every executor; the tokio runs go
/// through [`crate::lab::rt`] (a fresh runtime per point, timers and I/O enabled, shut
/// down after). Each sample repeats its round until it has at least [`MIN_POLLS`] polls
/// (or [`MIN_SPAWNS`] spawns).
pub fn executors(p: &Executors) -> Result<ExecutorsReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let execs = p.executors();
    let mut progress = Progress::new("executors", p.tasks.len() * execs.len());
    let mut rows = Vec::new();
    let mut counts = Vec::new();
    for &n in &p.tasks {
        let (spawn_rounds, poll_rounds) = p.rounds(n);
        for &executor in &execs {
            let (ns_per_spawn, _) = measure(executor, n, 0, spawn_rounds, n as f64, sampling)?;
            let polls = (n * (p.yields + 1)) as f64;
            let (ns_per_poll, last) = measure(executor, n, p.yields, poll_rounds, polls, sampling)?;
            if let Some(stats) = last {
                counts.push(MiniCounts { tasks: n, expected_polls: (poll_rounds as f64 * polls) as u64, stats });
            }
            rows.push(ExecutorRow {
                executor: executor.into(),
                tasks: n,
                ns_per_spawn,
                ns_per_poll,
                spawn_rounds,
                poll_rounds,
            });
            progress.step()?;
        }
    }
    Ok(ExecutorsReport { params: p.clone(), rows, counts, load: probe.finish() })
}

impl ExecutorsReport {
    /// The row of `executor` at `tasks`, if measured.
    pub fn row(&self, executor: &str, tasks: usize) -> Option<&ExecutorRow> {
        self.rows.iter().find(|r| r.executor == executor && r.tasks == tasks)
    }

    /// Median ns per poll of the mini executor / of tokio's current-thread runtime.
    pub fn poll_ratio(&self, tasks: usize) -> Option<f64> {
        Some(self.row(MINI, tasks)?.ns_per_poll.median / self.row(TOKIO_CURRENT, tasks)?.ns_per_poll.median)
    }

    /// Median ns per spawn of the mini executor / of tokio's current-thread runtime.
    pub fn spawn_ratio(&self, tasks: usize) -> Option<f64> {
        Some(self.row(MINI, tasks)?.ns_per_spawn.median / self.row(TOKIO_CURRENT, tasks)?.ns_per_spawn.median)
    }

    fn largest(&self) -> Option<usize> {
        self.params.tasks.iter().copied().max()
    }

    fn smallest(&self) -> Option<usize> {
        self.params.tasks.iter().copied().min()
    }
}

/// What this run's per-poll ratio mini / tokio says, in words a reader can check against
/// the figure (the notebook sets no target to compare it with).
fn against_target(ratio: f64) -> &'static str {
    if ratio <= 1.0 {
        "the hand-built executor is not slower per poll at all"
    } else {
        "tokio is the faster one per poll here"
    }
}

impl Report for ExecutorsReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (Some(big), Some(small)) = (self.largest(), self.smallest()) else { return out };
        let tasks = |n: usize| if n == 1 { "1 task".to_string() } else { format!("{} tasks", group(n as u64)) };
        if let (Some(m), Some(t)) = (self.row(MINI, big), self.row(TOKIO_CURRENT, big)) {
            let mut f = compare(
                &format!("Per poll with {}, the mini executor", tasks(big)),
                &m.ns_per_poll,
                TOKIO_CURRENT,
                &t.ns_per_poll,
                " ns",
            );
            f.text += &format!(" — {}", against_target(m.ns_per_poll.median / t.ns_per_poll.median));
            out.push(f);
            let mut f = compare(
                &format!("Per spawn with {}, the mini executor", tasks(big)),
                &m.ns_per_spawn,
                TOKIO_CURRENT,
                &t.ns_per_spawn,
                " ns",
            );
            f.text += " (one spawn here: spawn, first poll, completion and join)";
            out.push(f);
        }
        // The ratio over all task counts, so one point does not stand for the whole curve.
        let ratios: Vec<(usize, f64)> =
            self.params.tasks.iter().filter_map(|&n| self.poll_ratio(n).map(|r| (n, r))).collect();
        if ratios.len() > 1 {
            let lo = ratios.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0));
            let hi = ratios.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0));
            out.push(Finding::note(format!(
                "Per poll, mini / tokio current-thread ranged from {}× ({}) to {}× ({}) over the task counts \
                 measured",
                fmt_num(lo.1),
                tasks(lo.0),
                fmt_num(hi.1),
                tasks(hi.0)
            )));
        }
        if let (Some(m), Some(t)) = (self.row(TOKIO_MULTI, big), self.row(TOKIO_CURRENT, big)) {
            out.push(compare(
                &format!("Per poll with {}, tokio's multi-thread runtime with 1 worker", tasks(big)),
                &m.ns_per_poll,
                "its current-thread runtime",
                &t.ns_per_poll,
                " ns",
            ));
        }
        if small < big
            && let (Some(a), Some(b)) = (self.row(MINI, small), self.row(MINI, big))
        {
            out.push(compare(
                &format!("The mini executor per poll with {}", tasks(big)),
                &b.ns_per_poll,
                &format!("with {}", tasks(small)),
                &a.ns_per_poll,
                " ns",
            ));
        }
        // The executor's own counters: did every wake queue its task exactly once?
        if !self.counts.is_empty() {
            let exact = self.counts.iter().all(|c| {
                c.stats.polls == c.expected_polls
                    && c.stats.requeues == c.stats.wakes
                    && c.stats.wakes == c.expected_polls - c.expected_polls / (self.params.yields as u64 + 1)
            });
            let c = self.counts.iter().max_by_key(|c| c.tasks).expect("not empty");
            if exact {
                let rounds = c.expected_polls / (c.tasks as u64 * (self.params.yields as u64 + 1));
                out.push(Finding::note(format!(
                    "The mini executor's counters match the workload at every task count: with {}, {} polls \
                     ({} × {} polls: {} yield{} and the first{}) and {} wakes, each of which queued its task once \
                     — no wake lost, no task queued twice",
                    tasks(c.tasks),
                    group(c.stats.polls),
                    tasks(c.tasks),
                    self.params.yields + 1,
                    self.params.yields,
                    if self.params.yields == 1 { "" } else { "s" },
                    if rounds == 1 { String::new() } else { format!(", the whole run repeated {rounds} times") },
                    group(c.stats.wakes)
                )));
            } else {
                let bad: Vec<String> = self
                    .counts
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: {} polls for {} expected, {} wakes, {} queued",
                            tasks(c.tasks),
                            c.stats.polls,
                            c.expected_polls,
                            c.stats.wakes,
                            c.stats.requeues
                        )
                    })
                    .collect();
                out.push(Finding::note(format!(
                    "The mini executor's counters do not match the workload: {}",
                    bad.join("; ")
                )));
            }
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let figure = |title: &str, x: String, y: &str, stats: fn(&ExecutorRow) -> &Stats| {
            let mut f = Figure::lines(title, &x, y).log_x().log_y().legend(Legend::LowerLeft);
            for executor in p.executors() {
                let pts = self
                    .rows
                    .iter()
                    .filter(|r| r.executor == executor)
                    .map(|r| Point::quartiles(r.tasks as f64, stats(r)))
                    .collect();
                f = f.series(Series::new(executor, Style::Measured, pts));
            }
            mark_busy(f, &self.load)
        };
        vec![
            figure(
                "How much does one poll cost? The mini executor vs tokio",
                format!(
                    "tasks, each yielding {} time{} ({} samples per point)",
                    p.yields,
                    if p.yields == 1 { "" } else { "s" },
                    p.samples
                ),
                "ns per poll (median, p25–p75; log scale)",
                |r| &r.ns_per_poll,
            ),
            figure(
                "How much does one spawn cost? The mini executor vs tokio",
                format!("tasks spawned together, each finishing at its first poll ({} samples per point)", p.samples),
                "ns per spawn + poll + join (median, p25–p75; log scale)",
                |r| &r.ns_per_spawn,
            ),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Cost per spawn and per poll (ns)",
            &["tasks", "executor", "per spawn", "p25–p75", "per poll", "p25–p75", "per poll ÷ tokio current-thread"],
        );
        for &n in &self.params.tasks {
            let base = self.row(TOKIO_CURRENT, n).map(|r| r.ns_per_poll.median);
            for executor in self.params.executors() {
                if let Some(r) = self.row(executor, n) {
                    t.row(vec![
                        n.to_string(),
                        executor.to_string(),
                        fmt_num(r.ns_per_spawn.median),
                        r.ns_per_spawn.quartile_range(),
                        fmt_num(r.ns_per_poll.median),
                        r.ns_per_poll.quartile_range(),
                        base.map_or_else(|| "–".into(), |b| format!("{}×", fmt_num(r.ns_per_poll.median / b))),
                    ]);
                }
            }
        }
        let p = &self.params;
        t.note(format!(
            "Per spawn: tasks that finish at once (spawn, one poll, completion, output taken through the handle). \
             Per poll: tasks that yield {} times, the whole round divided by tasks × {} polls. Each sample repeats \
             its round until it has at least {} spawns or {} polls; {} samples per point after one warm-up. tokio \
             runtimes are built fresh per point with timers and I/O enabled; the rounds run inside a spawned task.",
            p.yields,
            p.yields + 1,
            group(MIN_SPAWNS as u64),
            group(MIN_POLLS as u64),
            p.samples
        ));
        t
    }
}

crate::impl_params!(Executors);

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "executors",
        "04-async",
        "cost per spawn and per poll over N tasks: the hand-built mini executor vs tokio's runtimes",
        executors,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_refused_before_running() {
        let bad = [
            Executors { tasks: vec![], ..Default::default() },
            Executors { tasks: vec![0], ..Default::default() },
            Executors { tasks: vec![100_001], ..Default::default() },
            Executors { tasks: vec![4, 4], ..Default::default() },
            Executors { yields: 0, ..Default::default() },
            Executors { samples: 0, ..Default::default() },
            Executors { tasks: vec![100_000], yields: 10_000, ..Default::default() },
        ];
        for p in bad {
            let e = executors(&p).unwrap_err();
            assert!(e.to_string().contains("must be"), "{e}");
        }
        assert!(Executors::default().validate().is_ok());
    }

    #[test]
    fn the_hot_loops_run_every_poll_they_promise() {
        let (_, s) = mini_rounds(10, 3, 2).unwrap();
        assert_eq!((s.spawned, s.completed, s.polls, s.wakes, s.requeues), (20, 20, 80, 60, 60));
    }

    #[test]
    fn one_row_per_executor_and_count_with_findings() {
        let p = Executors { tasks: vec![1, 50], yields: 3, samples: 1, multi_thread: false };
        let r = executors(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        assert!(r.rows.iter().all(|row| row.ns_per_poll.median > 0.0 && row.ns_per_spawn.median > 0.0));
        assert_eq!(r.counts.len(), 2);
        let text: Vec<String> = r.findings().iter().map(|f| f.text.clone()).collect();
        assert!(text.iter().any(|t| t.contains("per poll at all") || t.contains("faster one per poll")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("no wake lost")), "{text:?}");
        assert_eq!(r.table().rows.len(), 4);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.poll_ratio(50).is_some() && r.spawn_ratio(1).is_some());
    }
}
