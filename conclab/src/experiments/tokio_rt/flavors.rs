//! Runtime flavors: the same mixed workload — tasks that mostly wait (tokio sleeps, as
//! I/O would) and compute a little, some of them with a longer CPU burst — on a
//! current-thread runtime and on multi-thread runtimes with 1 … 2 × cores workers.
//! Throughput and the latency of the short tasks, against the worker count.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::timing::quantile_sorted;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_list, check_range, cores, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Parameters of [`runtime_flavors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Flavors {
    /// Worker counts of the multi-thread runtimes: 1..=12 distinct values, each 1..=256.
    /// A current-thread runtime always runs as well. Default: 1 … 2 × cores.
    pub workers: Vec<usize>,
    /// Task chains running at once; each spawns one task, awaits it, spawns the next:
    /// 1..=4096. Default 16 × cores (enough to keep every core busy).
    pub clients: usize,
    /// Waits per task (tokio sleeps standing for I/O): 0..=32.
    pub waits: usize,
    /// Length of each wait, µs: 100..=100000.
    pub wait_us: u64,
    /// CPU work after each wait, µs: 0..=10000.
    pub slice_us: u64,
    /// One task in this many also runs a CPU burst after its first wait (0: none): 0..=1000.
    pub burst_every: usize,
    /// Length of a burst, µs: 0..=100000.
    pub burst_us: u64,
    /// How long each runtime is kept loaded, ms (the first tenth is a warm-up and not
    /// counted): 50..=5000.
    pub run_ms: u64,
    /// Runs per runtime, interleaved so drift hits all alike: 1..=10.
    pub repeats: usize,
}

/// 1 … 2 × cores: every count up to 8 when 2 × cores ≤ 8, else powers of two, the core
/// count and 2 × cores (at most 12 values, at most 256).
pub fn default_workers(cores: usize) -> Vec<usize> {
    let top = (2 * cores).clamp(2, 256);
    if top <= 8 {
        return (1..=top).collect();
    }
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |p| Some(p * 2)).take_while(|&p| p <= top).collect();
    for extra in [cores.min(256), top] {
        if !v.contains(&extra) {
            v.push(extra);
        }
    }
    v.sort_unstable();
    v.truncate(12);
    v
}

impl Default for Flavors {
    fn default() -> Self {
        let c = cores();
        Flavors {
            workers: default_workers(c),
            clients: (16 * c).clamp(1, 4096),
            waits: 4,
            wait_us: 1_000,
            slice_us: 100,
            burst_every: 8,
            burst_us: 5_000,
            run_ms: 300,
            repeats: 3,
        }
    }
}

impl Flavors {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("workers", &self.workers, 12, 1..=256)?;
        check_range("clients", self.clients, 1..=4096)?;
        check_range("waits", self.waits, 0..=32)?;
        check_range("wait_us", self.wait_us, 100..=100_000)?;
        check_range("slice_us", self.slice_us, 0..=10_000)?;
        check_range("burst_every", self.burst_every, 0..=1000)?;
        check_range("burst_us", self.burst_us, 0..=100_000)?;
        check_range("run_ms", self.run_ms, 50..=5_000)?;
        check_range("repeats", self.repeats, 1..=10)?;
        if self.waits == 0 && self.slice_us == 0 && (self.burst_every == 0 || self.burst_us == 0) {
            return Err(ParamError {
                param: "waits, slice_us, burst_us".into(),
                allowed: "a task that does something: waits ≥ 1, slice_us ≥ 1 or a burst".into(),
                got: "tasks with no wait and no work".into(),
            });
        }
        check_estimate("(workers + 1) × repeats × run_ms", self.estimate())
    }

    /// Each run: `run_ms`, the tail of the tasks still running at its end, and about
    /// 50 ms to start and stop a runtime; plus the calibration of the CPU work.
    pub fn estimate(&self) -> Duration {
        let task_us = self.waits as u64 * (self.wait_us + 1_000 + self.slice_us) + self.burst_us;
        let per_run = self.run_ms * 1_000 + 4 * task_us + 50_000;
        Duration::from_micros(per_run * ((self.workers.len() + 1) * self.repeats) as u64 + 100_000)
    }

    /// CPU work of an average task, µs: its slices and its share of the bursts.
    pub fn cpu_per_task_us(&self) -> f64 {
        let burst = if self.burst_every > 0 { self.burst_us as f64 / self.burst_every as f64 } else { 0.0 };
        self.waits.max(1) as f64 * self.slice_us as f64 + burst
    }
}

/// The runtime one row measured.
pub const CURRENT: &str = "current-thread";

/// One runtime's measurements, all repeats pooled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlavorRow {
    /// [`CURRENT`] or "multi-thread".
    pub runtime: String,
    /// Worker threads (1 for the current-thread runtime).
    pub workers: usize,
    /// Tasks finished per second in the counted window, one per repeat.
    pub throughput: Vec<f64>,
    pub throughput_stats: Stats,
    /// Latency (spawn to completion seen by the awaiting task) of the tasks without a
    /// burst that started in the counted window, ms: median and 99th percentile.
    pub short_p50_ms: f64,
    pub short_p99_ms: f64,
    /// Median latency of the tasks with a burst, ms (0 when none ran).
    pub burst_p50_ms: f64,
    /// Tasks counted (all repeats).
    pub tasks: usize,
}

/// Result of [`runtime_flavors`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlavorsReport {
    pub params: Flavors,
    /// This machine's cores, as the experiment saw them.
    pub cores: usize,
    /// Median latency of a short task with nothing else running (one chain, no bursts,
    /// current-thread runtime), ms: the "no queueing" reference. Longer than the waits
    /// requested, as tokio rounds each sleep up to its 1 ms tick.
    pub alone_ms: f64,
    /// The current-thread runtime first, then the multi-thread ones by worker count.
    pub rows: Vec<FlavorRow>,
    pub load: Load,
}

/// What one run returns: per task (start offset µs, latency µs, had a burst).
struct RunData {
    tasks: Vec<(u64, u64, bool)>,
}

/// One task: `waits` sleeps, each followed by a CPU slice; a burst after the first wait.
async fn mixed_task(waits: usize, wait: Duration, slice_iters: u64, burst_iters: u64, seed: u64) -> u64 {
    let mut acc = seed;
    for i in 0..waits {
        tokio::time::sleep(wait).await;
        acc ^= busy(slice_iters, acc.wrapping_add(i as u64));
        if i == 0 && burst_iters > 0 {
            acc ^= busy(burst_iters, acc);
        }
    }
    if waits == 0 {
        acc ^= busy(slice_iters + burst_iters, acc);
    }
    acc
}

fn one_run(p: &Flavors, rt: Rt, iters_per_us: f64) -> Result<RunData, LabError> {
    let (clients, waits, every) = (p.clients, p.waits, p.burst_every);
    let wait = Duration::from_micros(p.wait_us);
    let slice_iters = (p.slice_us as f64 * iters_per_us) as u64;
    let burst_iters = if every > 0 { (p.burst_us as f64 * iters_per_us) as u64 } else { 0 };
    let run = Duration::from_millis(p.run_ms);
    let what = rt.to_string();
    let limit = run * 4 + Duration::from_secs(10);
    crate::lab::rt::run(rt.timeout(limit), move || async move {
        let start = Instant::now();
        let deadline = start + run;
        let mut chains = Vec::with_capacity(clients);
        for c in 0..clients {
            chains.push(tokio::spawn(async move {
                let mut out = Vec::new();
                let mut j = 0usize;
                while Instant::now() < deadline {
                    let burst = every > 0 && (c + j).is_multiple_of(every);
                    let t = Instant::now();
                    let b = if burst { burst_iters } else { 0 };
                    let h = tokio::spawn(mixed_task(waits, wait, slice_iters, b, (c * 7919 + j) as u64));
                    let _ = h.await;
                    let started = t.duration_since(start).as_micros() as u64;
                    out.push((started, t.elapsed().as_micros() as u64, burst));
                    j += 1;
                }
                out
            }));
        }
        let mut tasks = Vec::new();
        for h in chains {
            if let Ok(v) = h.await {
                tasks.extend(v);
            }
        }
        RunData { tasks }
    })
    .map_err(|e| RunError::new(format!("the mixed workload on a {what}"), e).into())
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() { 0.0 } else { quantile_sorted(sorted, q) }
}

/// Runs the mixed workload — `clients` chains of tasks, each task `waits` tokio sleeps of
/// `wait_us` with `slice_us` of CPU work after each, one task in `burst_every` with a
/// `burst_us` CPU burst — for `run_ms` on a current-thread runtime and on a multi-thread
/// runtime per worker count, `repeats` times, interleaved. Counts the tasks finished in
/// the window after a warm-up of a tenth of it, and the latency of those that started in it.
pub fn runtime_flavors(p: &Flavors) -> Result<FlavorsReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let iters_per_us = iters_per_ms() as f64 / 1e3;
    let mut rts = vec![Rt::current()];
    let mut workers = p.workers.clone();
    workers.sort_unstable();
    rts.extend(workers.iter().map(|&n| Rt::multi(n)));
    let mut progress = Progress::new("runtime-flavors", rts.len() * p.repeats + 1);
    // The reference: one chain, no bursts, nothing else running.
    let alone_p = Flavors { clients: 1, burst_every: 0, run_ms: p.run_ms.min(200), ..p.clone() };
    let mut alone: Vec<f64> =
        one_run(&alone_p, Rt::current(), iters_per_us)?.tasks.iter().map(|&(_, lat, _)| lat as f64 / 1e3).collect();
    alone.sort_by(f64::total_cmp);
    let alone_ms = pct(&alone, 0.5);
    progress.step()?;
    let run_us = p.run_ms * 1_000;
    let warm_us = run_us / 10;
    let window_s = (run_us - warm_us) as f64 / 1e6;
    // Per runtime: throughput per repeat, short and burst latencies pooled.
    let mut acc: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); rts.len()];
    for _ in 0..p.repeats {
        for (i, rt) in rts.iter().enumerate() {
            let data = one_run(p, rt.clone(), iters_per_us)?;
            let mut done = 0usize;
            for &(start, lat, burst) in &data.tasks {
                let end = start + lat;
                if end >= warm_us && end < run_us {
                    done += 1;
                }
                if start >= warm_us {
                    let ms = lat as f64 / 1e3;
                    if burst { acc[i].2.push(ms) } else { acc[i].1.push(ms) }
                }
            }
            acc[i].0.push(done as f64 / window_s);
            progress.step()?;
        }
    }
    let rows = rts
        .iter()
        .zip(acc)
        .map(|(rt, (thr, mut short, mut burst))| {
            short.sort_by(f64::total_cmp);
            burst.sort_by(f64::total_cmp);
            let current = rt.flavor == crate::lab::rt::Flavor::CurrentThread;
            FlavorRow {
                runtime: if current { CURRENT.into() } else { "multi-thread".into() },
                workers: rt.workers(),
                throughput_stats: Stats::of(&thr),
                throughput: thr,
                short_p50_ms: pct(&short, 0.5),
                short_p99_ms: pct(&short, 0.99),
                burst_p50_ms: pct(&burst, 0.5),
                tasks: short.len() + burst.len(),
            }
        })
        .collect();
    Ok(FlavorsReport { params: p.clone(), cores: cores(), alone_ms, rows, load: probe.finish() })
}

impl FlavorsReport {
    /// The current-thread runtime's row.
    pub fn current(&self) -> &FlavorRow {
        &self.rows[0]
    }

    /// The multi-thread runtime's row with `n` workers.
    pub fn multi(&self, n: usize) -> Option<&FlavorRow> {
        self.rows[1..].iter().find(|r| r.workers == n)
    }

    fn multis(&self) -> &[FlavorRow] {
        &self.rows[1..]
    }

    /// The multi-thread row with the highest median throughput.
    pub fn best(&self) -> &FlavorRow {
        self.multis()
            .iter()
            .max_by(|a, b| a.throughput_stats.median.total_cmp(&b.throughput_stats.median))
            .expect("≥ 1")
    }

    /// CPU demand of the workload in cores if nothing queued: the chains × CPU per task
    /// over an average task's time alone (a short task's measured time plus its share of
    /// the bursts).
    pub fn demand_cores(&self) -> f64 {
        let p = &self.params;
        let burst = if p.burst_every > 0 { p.burst_us as f64 / p.burst_every as f64 } else { 0.0 };
        let wall = self.alone_ms * 1e3 + burst;
        if wall > 0.0 { p.clients as f64 * p.cpu_per_task_us() / wall } else { 0.0 }
    }
}

fn tps(v: f64) -> String {
    crate::lab::findings::group(v.round() as u64)
}

impl Report for FlavorsReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let p = &self.params;
        let c = self.cores;
        let demand = self.demand_cores();
        let first = &self.multis()[0];
        // 1. Throughput against workers: gain up to the cores, not past them.
        let at_cores = self.multis().iter().rfind(|r| r.workers <= c);
        if let Some(r) = at_cores
            && r.workers > first.workers
        {
            let gain = r.throughput_stats.median / first.throughput_stats.median.max(1e-9);
            let limit = (r.workers as f64).min(demand.max(1.0)) / (first.workers as f64).min(demand.max(1.0));
            let text = if gain >= 1.3 {
                format!(
                    "{} workers finished {} tasks/s, {}× what {} worker{} did ({}): the CPU slices and bursts need a core \
                     each, and every added worker up to the {c} cores brings one (the waits cost no core: a sleeping \
                     task is only a timer entry)",
                    r.workers,
                    tps(r.throughput_stats.median),
                    fmt_num(gain),
                    first.workers,
                    if first.workers == 1 { "" } else { "s" },
                    tps(first.throughput_stats.median)
                )
            } else if gain >= 0.85 * limit && limit > 1.05 {
                // The demand, not the machine, capped the gain.
                format!(
                    "{} workers finished {} tasks/s, {}× what {} worker did: close to the most this workload allows — \
                     it needs only about {} cores of CPU, so past that an added worker finds nothing to run",
                    r.workers,
                    tps(r.throughput_stats.median),
                    fmt_num(gain),
                    first.workers,
                    fmt_num(demand)
                )
            } else {
                format!(
                    "{} workers finished {} tasks/s, only {}× what {} worker did: with a CPU demand of about {} cores \
                     the work was {}",
                    r.workers,
                    tps(r.throughput_stats.median),
                    fmt_num(gain),
                    first.workers,
                    fmt_num(demand),
                    if demand < 1.2 {
                        "mostly waiting, which one worker already overlaps"
                    } else {
                        "starved of cores (the machine was busy, or its cores are shared)"
                    }
                )
            };
            out.push(Finding::clear(format!("{text} (at most {}× was possible)", fmt_num(limit))));
        }
        if let Some(r) = at_cores {
            let beyond: Vec<&FlavorRow> = self.multis().iter().filter(|x| x.workers > c).collect();
            if let Some(top) = beyond.last() {
                let ratio = top.throughput_stats.median / r.throughput_stats.median.max(1e-9);
                let words = crate::lab::findings::change_words(
                    ratio,
                    0.1,
                    "about the same throughput",
                    |f| format!("{f}× more throughput"),
                    |f| format!("{f}× less throughput"),
                );
                let why = if ratio > 1.1 {
                    ": more threads than cores still gained, so a core sat idle at times with fewer workers — a \
                     worker parked while its tasks slept, or the OS counts SMT siblings as cores"
                } else if ratio < 0.9 {
                    ": the extra workers only take turns on the same cores, and each OS switch, cold cache and \
                     steal attempt costs time"
                } else {
                    ": the cores were already all busy, so extra workers only take turns on them"
                };
                out.push(Finding::clear(format!(
                    "{} workers (2 × the {c} cores) gave {words} compared with {} ({} vs {} tasks/s){why}",
                    top.workers,
                    r.workers,
                    tps(top.throughput_stats.median),
                    tps(r.throughput_stats.median)
                )));
            }
        }
        // 2. current-thread vs multi-thread(1): the machinery.
        if let Some(m1) = self.multi(1) {
            let cur = self.current();
            let ratio = cur.throughput_stats.median / m1.throughput_stats.median.max(1e-9);
            let text = crate::lab::findings::change_words(
                ratio,
                0.05,
                "the current-thread runtime and a 1-worker multi-thread runtime were about equal",
                |f| format!("the current-thread runtime did {f}× the throughput of a 1-worker multi-thread runtime"),
                |f| format!("the current-thread runtime did {f}× less throughput than a 1-worker multi-thread runtime"),
            );
            let why = if ratio >= 1.05 {
                ": same single core of work, but the multi-thread one pays for its machinery — a worker thread \
                 apart from the one that awaits the tasks (every join is a cross-thread wake-up), atomic \
                 reference counts and queues built for stealing"
            } else if ratio <= 0.95 {
                ": here the second thread helped — the multi-thread runtime's driver thread (which awaits the \
                 chains) ran on the other core beside its worker, while the current-thread runtime did all of it \
                 on one"
            } else {
                ": the machinery of the multi-thread runtime (a separate worker, cross-thread wake-ups, atomics) \
                 costs little next to tasks that last milliseconds"
            };
            out.push(Finding::clear(format!(
                "{text} ({} vs {} tasks/s){why}",
                tps(cur.throughput_stats.median),
                tps(m1.throughput_stats.median)
            )));
        }
        // 3. Latency of the short tasks and the bursts in their way.
        let alone = self.alone_ms;
        let name = |r: &FlavorRow| {
            if r.runtime == CURRENT { CURRENT.to_string() } else { format!("{} worker(s)", r.workers) }
        };
        let worst = self.rows.iter().max_by(|a, b| a.short_p99_ms.total_cmp(&b.short_p99_ms)).expect("rows");
        let calm = self.rows.iter().min_by(|a, b| a.short_p99_ms.total_cmp(&b.short_p99_ms)).expect("rows");
        let spread = worst.short_p99_ms / worst.short_p50_ms.max(1e-3);
        let why = if p.burst_every > 0 && p.burst_us > 0 {
            format!(
                "a task whose sleep has ended waits in the queue for a free worker, and tokio never preempts a running \
                 task: each {} ms burst holds its worker until it returns, so the unlucky tasks that wake behind one \
                 or more bursts make the p99 ({}× the median there)",
                fmt_num(p.burst_us as f64 / 1e3),
                fmt_num(spread)
            )
        } else {
            format!(
                "without bursts only the {} µs slices stand in a woken task's way, so the tail is the queue of slices",
                p.slice_us
            )
        };
        out.push(Finding::clear(format!(
            "a short task (no burst) took {} ms alone; under load its p50/p99 were {}/{} ms with {} (the worst) and \
             {}/{} ms with {} (the best): {why}; the median grows with the queue itself — {} chains over the \
             workers' throughput (Little's law)",
            fmt_num(alone),
            fmt_num(worst.short_p50_ms),
            fmt_num(worst.short_p99_ms),
            name(worst),
            fmt_num(calm.short_p50_ms),
            fmt_num(calm.short_p99_ms),
            name(calm),
            p.clients
        )));
        out.push(Finding::note(format!(
            "the workload asks for about {} cores of CPU when nothing queues ({} chains); this machine has {c}",
            fmt_num(demand),
            p.clients
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let multis = self.multis();
        let cur = self.current();
        let xs: Vec<f64> = multis.iter().map(|r| r.workers as f64).collect();
        let flat = |v: f64| xs.iter().map(|&x| Point::new(x, v)).collect::<Vec<_>>();
        let mut t = Figure::lines(
            "Throughput of the mixed workload vs worker threads",
            "worker threads (multi-thread runtime)",
            "tasks finished per second; band: p25–p75 of repeats",
        )
        .linear_x()
        .linear_y();
        let pts = multis.iter().map(|r| Point::quartiles(r.workers as f64, &r.throughput_stats)).collect();
        t = t.series(Series::new("multi-thread", Style::Measured, pts));
        t = t.series(Series::new("current-thread (1 thread)", Style::Measured, flat(cur.throughput_stats.median)));
        let c = self.cores as f64;
        t = t.series(Series::new(
            format!("{} cores", self.cores),
            Style::Ideal,
            vec![Point::new(c, 0.0), Point::new(c, self.best().throughput_stats.p75.max(1.0))],
        ));
        let mut l = Figure::lines(
            "Latency of the short tasks (no burst) vs worker threads",
            "worker threads (multi-thread runtime)",
            "spawn → done (ms)",
        )
        .linear_x();
        for (name, f) in [("p50", 0usize), ("p99", 1)] {
            let get = |r: &FlavorRow| if f == 0 { r.short_p50_ms } else { r.short_p99_ms };
            let pts = multis.iter().map(|r| Point::new(r.workers as f64, get(r))).collect();
            l = l.series(Series::new(format!("multi-thread {name}"), Style::Measured, pts));
            l = l.series(Series::new(format!("current-thread {name}"), Style::Fit, flat(get(cur))));
        }
        l = l.series(Series::new("alone (no queueing)", Style::Ideal, flat(self.alone_ms)));
        vec![mark_busy(t, &self.load), mark_busy(l, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Mixed workload per runtime: throughput and task latency",
            &[
                "runtime",
                "workers",
                "tasks/s (median)",
                "p25–p75",
                "short p50 ms",
                "short p99 ms",
                "burst p50 ms",
                "tasks",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                r.runtime.clone(),
                r.workers.to_string(),
                tps(r.throughput_stats.median),
                format!("{}–{}", tps(r.throughput_stats.p25), tps(r.throughput_stats.p75)),
                fmt_num(r.short_p50_ms),
                fmt_num(r.short_p99_ms),
                fmt_num(r.burst_p50_ms),
                r.tasks.to_string(),
            ]);
        }
        let p = &self.params;
        let bursts = if p.burst_every > 0 && p.burst_us > 0 {
            format!("one in {} also a {} µs burst", p.burst_every, p.burst_us)
        } else {
            "no bursts".to_string()
        };
        t.note(format!(
            "{} chains; each task: {} × (sleep {} µs + {} µs CPU); {bursts}; {} ms per run × {} repeats.",
            p.clients, p.waits, p.wait_us, p.slice_us, p.run_ms, p.repeats
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "runtime-flavors",
        super::NOTEBOOK,
        "current-thread vs multi-thread(1 … 2×cores) on a mixed wait/CPU workload: throughput and task latency",
        runtime_flavors,
    )]
}

crate::impl_params!(Flavors);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_refuse_bad_parameters() {
        let d = Flavors::default();
        assert!(d.validate().is_ok());
        assert!(d.estimate() < Duration::from_secs(20), "{:?}", d.estimate());
        assert!(runtime_flavors(&Flavors { workers: vec![], ..d.clone() }).is_err());
        assert!(runtime_flavors(&Flavors { workers: vec![0], ..d.clone() }).is_err());
        assert!(runtime_flavors(&Flavors { workers: vec![1, 1], ..d.clone() }).is_err());
        assert!(runtime_flavors(&Flavors { clients: 0, ..d.clone() }).is_err());
        assert!(runtime_flavors(&Flavors { waits: 0, slice_us: 0, burst_every: 0, ..d.clone() }).is_err());
        let e = Flavors { run_ms: 5_000, repeats: 10, workers: (1..=12).collect(), ..d }.validate().unwrap_err();
        assert!(e.to_string().contains("estimated"), "{e}");
    }

    #[test]
    fn default_workers_go_to_twice_the_cores() {
        assert_eq!(default_workers(1), vec![1, 2]);
        assert_eq!(default_workers(2), vec![1, 2, 3, 4]);
        assert_eq!(default_workers(16), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(default_workers(12), vec![1, 2, 4, 8, 12, 16, 24]);
        assert!(default_workers(512).len() <= 12 && default_workers(512).iter().all(|&n| n <= 256));
    }

    #[test]
    fn flavors_small_run_measures_every_runtime_and_draws() {
        let p = Flavors {
            workers: vec![1, 2],
            clients: 8,
            waits: 2,
            wait_us: 500,
            slice_us: 50,
            burst_every: 4,
            burst_us: 500,
            run_ms: 100,
            repeats: 1,
        };
        let r = runtime_flavors(&p).unwrap();
        assert_eq!(r.rows.len(), 3);
        assert_eq!(r.current().runtime, CURRENT);
        assert!(r.alone_ms >= 1.0, "two 0.5 ms sleeps take at least 1 ms: {}", r.alone_ms);
        for row in &r.rows {
            assert!(row.tasks > 0 && row.throughput[0] > 0.0, "{row:?}");
            // A task cannot finish before its own sleeps.
            assert!(row.short_p50_ms >= 1.0 && row.short_p99_ms >= row.short_p50_ms, "{row:?}");
        }
        assert!(r.findings().len() >= 3);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.table().to_string().contains("short p99"));
    }

    /// The cells proposed for the notebook, as a learner would write them (through the
    /// prelude only). Only counts and orderings are asserted, never timings.
    #[test]
    fn notebook_cells_run_through_the_prelude() {
        use crate::prelude::*;
        use std::time::Instant;

        // Cell 1: the same CPU-heavy tasks on a current-thread and a multi-thread runtime.
        fn spin(ms: u64) -> u64 {
            let t = Instant::now();
            let mut x = 1u64;
            while t.elapsed() < std::time::Duration::from_millis(ms) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            x
        }
        for rt in [Rt::current(), Rt::multi(cores())] {
            let took = rt
                .run(|| async {
                    let t = Instant::now();
                    let tasks: Vec<_> = (0..4).map(|_| tokio::spawn(async { spin(10) })).collect();
                    for h in tasks {
                        h.await.unwrap();
                    }
                    t.elapsed()
                })
                .unwrap();
            println!("{rt}: 4 × 10 ms of CPU took {took:?}");
            assert!(took >= ms(10));
        }

        // Cell 2: which worker thread ran each task?
        let names = rt::run(Rt::multi(2), || async {
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    tokio::spawn(async move {
                        tokio::time::sleep(ms(1)).await;
                        (i, std::thread::current().name().unwrap_or("?").to_string())
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in tasks {
                out.push(h.await.unwrap());
            }
            out
        })
        .unwrap();
        assert!(names.iter().all(|(_, n)| n.contains("-w")), "{names:?}");

        // Cell 3: a blocking call inside a task stalls every task of a current-thread runtime.
        let late = rt::run(Rt::current(), || async {
            let timer = tokio::spawn(async {
                let t = Instant::now();
                tokio::time::sleep(ms(1)).await;
                t.elapsed()
            });
            tokio::spawn(async { std::thread::sleep(ms(30)) }); // blocks the only thread
            timer.await.unwrap()
        })
        .unwrap();
        assert!(late >= ms(30), "the 1 ms sleep had to wait for the blocking call: {late:?}");

        // Cell 4: the blocking pool's cap sets how many blocking jobs wait at once.
        for cap in [1, 8] {
            let took = rt::run(Rt::current().max_blocking_threads(cap), || async {
                let t = Instant::now();
                let jobs: Vec<_> = (0..8).map(|_| tokio::task::spawn_blocking(|| std::thread::sleep(ms(10)))).collect();
                for j in jobs {
                    j.await.unwrap();
                }
                t.elapsed()
            })
            .unwrap();
            println!("max_blocking_threads({cap}): 8 jobs of 10 ms took {took:?}");
            if cap == 1 {
                assert!(took >= ms(80), "one thread runs the jobs one after the other: {took:?}");
            }
        }
    }
}
