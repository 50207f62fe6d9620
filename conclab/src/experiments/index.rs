//! Experiments of the index notebook (00): what it costs to start a unit of concurrency.

use crate::lab::findings::compare;
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style,
    Table, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Parameters of [`spawn_cost`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpawnCost {
    /// How many threads (and, separately, tokio tasks) one sample spawns and then joins;
    /// one point per count. Each in 1..=4096, at most 12 counts.
    pub counts: Vec<usize>,
    /// Timed samples per point (after one warm-up): 1..=101.
    pub samples: usize,
    /// Worker threads of the tokio multi-thread runtime: 1..=256.
    pub workers: usize,
}

impl Default for SpawnCost {
    fn default() -> Self {
        SpawnCost { counts: vec![1, 4, 16, 64, 256, 1024], samples: 7, workers: crate::lab::cores() }
    }
}

impl SpawnCost {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("counts", &self.counts, 12, 1..=4096)?;
        // All threads of a sample are alive at once before they are joined.
        crate::lab::limits::check_threads("counts", self.counts.iter().copied().max().unwrap_or(1))?;
        check_range("samples", self.samples, 1..=101)?;
        check_range("workers", self.workers, 1..=256)
    }
}

/// One measured point: `count` spawns of `kind`, cost per spawn in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpawnRow {
    pub kind: &'static str,
    pub count: usize,
    /// Microseconds per spawn + join (or spawn + await), over the samples.
    pub micros_per_spawn: Stats,
}

/// Result of [`spawn_cost`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpawnCostReport {
    pub params: SpawnCost,
    pub rows: Vec<SpawnRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

pub const THREAD: &str = "std::thread::spawn + join";
pub const TASK: &str = "tokio::spawn + await";

/// Measures the cost of starting and finishing `n` OS threads (`std::thread::spawn`, then
/// `join` each) against `n` tokio tasks on a multi-thread runtime (`tokio::spawn`, then
/// `.await` each), per unit, for every `n` in `counts`.
///
/// The tasks run through [`crate::lab::rt`]: a fresh runtime per count, on its own thread,
/// with a bounded wait and a shutdown that leaves no thread behind; every thread is
/// joined. Typical result: a thread costs tens of microseconds, a task well under one.
pub fn spawn_cost(p: &SpawnCost) -> Result<SpawnCostReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut rows = Vec::new();
    for &n in &p.counts {
        let stats = sampling
            .try_measure(|| spawn_join_threads(n))
            .map_err(|e| RunError::new(format!("spawning {n} threads"), e))?;
        rows.push(SpawnRow { kind: THREAD, count: n, micros_per_spawn: stats.scaled(1e6 / n as f64) });
    }
    // At most 4096 tasks × 102 runs per count: far below a second; 30 s is a safety net.
    let rt = Rt::multi(p.workers).timeout(Duration::from_secs(30));
    for &n in &p.counts {
        let stats = sampling
            .measure_async(&rt, move || spawn_await_tasks(n))
            .map_err(|e| RunError::new(format!("spawn-cost with {n} tasks on a {rt}"), e))?;
        rows.push(SpawnRow { kind: TASK, count: n, micros_per_spawn: stats.scaled(1e6 / n as f64) });
    }
    Ok(SpawnCostReport { params: p.clone(), rows, load: probe.finish() })
}

fn spawn_join_threads(n: usize) -> std::io::Result<Duration> {
    let t = Instant::now();
    let mut handles = Vec::with_capacity(n);
    let mut error = None;
    for _ in 0..n {
        match std::thread::Builder::new().spawn(|| std::hint::black_box(())) {
            Ok(h) => handles.push(h),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    match error {
        Some(e) => Err(e),
        None => Ok(t.elapsed()),
    }
}

async fn spawn_await_tasks(n: usize) -> Duration {
    let t = Instant::now();
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async { std::hint::black_box(()) })).collect();
    for h in handles {
        let _ = h.await;
    }
    t.elapsed()
}

impl SpawnCostReport {
    /// Median cost in µs of one spawn of `kind` at `count`, if measured.
    pub fn median(&self, kind: &str, count: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.kind == kind && r.count == count).map(|r| r.micros_per_spawn.median)
    }

    fn stats(&self, kind: &str, count: usize) -> Option<&Stats> {
        self.rows.iter().find(|r| r.kind == kind && r.count == count).map(|r| &r.micros_per_spawn)
    }

    /// Ratio of thread cost to task cost at the largest count.
    pub fn ratio_at_largest(&self) -> Option<f64> {
        let n = *self.params.counts.iter().max()?;
        Some(self.median(THREAD, n)? / self.median(TASK, n)?)
    }
}

impl Report for SpawnCostReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut counts = self.params.counts.clone();
        counts.sort_unstable();
        counts.dedup();
        let (Some(&first), Some(&last)) = (counts.first(), counts.last()) else { return out };
        // Thread against task where the batch is longest.
        if let (Some(th), Some(ta)) = (self.stats(THREAD, last), self.stats(TASK, last)) {
            out.push(compare(&format!("In batches of {last}, a thread"), th, "a task", ta, " µs"));
        }
        // Does the cost per thread depend on the batch? A short batch against the longest:
        // the largest of 4..=16 (all on stacks from glibc's cache, which holds about 19;
        // a single thread also pays for its lone wake-up), else the smallest of at least 4.
        let short = counts.iter().rev().find(|&&c| (4..=16).contains(&c) && c < last);
        let short = short.or_else(|| counts.iter().find(|&&c| c >= 4 && c < last)).copied();
        if let Some(small) = short
            && let (Some(a), Some(b)) = (self.stats(THREAD, small), self.stats(THREAD, last))
        {
            out.push(compare(
                &format!("Per thread in a batch of {last}"),
                b,
                &format!("in a batch of {small}"),
                a,
                " µs",
            ));
        }
        // The left end: a lone task wakes a sleeping worker.
        if first < last
            && let (Some(a), Some(b)) = (self.stats(TASK, first), self.stats(TASK, last))
        {
            out.push(compare(
                &format!("Per task in a batch of {first}"),
                a,
                &format!("in a batch of {last}"),
                b,
                " µs",
            ));
        }
        // A short batch far above the rest of the thread line (the longest batch is
        // compared above): on a busy machine a few threads wait for a CPU, and nothing
        // overlaps those waits.
        let threads: Vec<(usize, &Stats)> = counts.iter().filter_map(|&c| Some((c, self.stats(THREAD, c)?))).collect();
        let peak = threads.iter().max_by(|a, b| a.1.median.total_cmp(&b.1.median));
        let low = threads.iter().min_by(|a, b| a.1.median.total_cmp(&b.1.median));
        if let (Some(&(pc, p)), Some(&(lc, l))) = (peak, low)
            && pc != last
            && p.median > 2.0 * l.median
        {
            out.push(compare(
                &format!("Per thread in a batch of {pc} (the costliest)"),
                p,
                &format!("in a batch of {lc} (the cheapest)"),
                l,
                " µs",
            ));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let series = |kind: &str| {
            let pts = self
                .rows
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| Point::quartiles(r.count as f64, &r.micros_per_spawn))
                .collect();
            Series::new(kind, Style::Measured, pts)
        };
        // The axis names the parameters this run used, so a figure left over from an
        // earlier run (a parameters cell that failed to compile) cannot pass for a new one.
        let x_label = format!(
            "spawned per sample ({} samples each; tokio: {} workers)",
            self.params.samples, self.params.workers
        );
        let f = Figure::lines(
            "How much does it cost to start a thread vs a task?",
            &x_label,
            "µs per spawn (median, p25–p75)",
        )
        .log_x()
        .log_y()
        .series(series(THREAD))
        .series(series(TASK))
        .legend(crate::lab::Legend::LowerLeft);
        vec![mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Spawn cost per unit (µs)",
            &["spawned", "thread median", "thread p25–p75", "task median", "task p25–p75", "thread / task"],
        );
        for &n in &self.params.counts {
            let get = |kind| self.rows.iter().find(|r| r.kind == kind && r.count == n).map(|r| &r.micros_per_spawn);
            if let (Some(th), Some(ta)) = (get(THREAD), get(TASK)) {
                t.row(vec![
                    n.to_string(),
                    fmt_num(th.median),
                    th.quartile_range(),
                    fmt_num(ta.median),
                    ta.quartile_range(),
                    format!("{}×", fmt_num(th.median / ta.median)),
                ]);
            }
        }
        t.note(format!(
            "Parameters used: counts = {:?}, samples = {} (after one warm-up), workers = {} (tokio multi-thread runtime).",
            self.params.counts, self.params.samples, self.params.workers
        ));
        t
    }
}

crate::impl_params!(SpawnCost);

/// This notebook's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    use crate::lab::Experiment;
    vec![Experiment::new(
        "spawn-cost",
        "00-index",
        "cost of std::thread::spawn+join vs tokio::spawn+await, per unit, over a range of counts",
        spawn_cost,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_refused_before_running() {
        let bad = [
            SpawnCost { counts: vec![], ..Default::default() },
            SpawnCost { counts: vec![0], ..Default::default() },
            SpawnCost { counts: vec![5000], ..Default::default() },
            SpawnCost { samples: 0, ..Default::default() },
            SpawnCost { workers: 0, ..Default::default() },
        ];
        for p in bad {
            let e = spawn_cost(&p).unwrap_err();
            assert!(e.to_string().contains("must be"), "{e}");
        }
    }

    #[test]
    fn a_short_batch_far_above_the_rest_gets_a_finding() {
        let st = |m: f64| Stats { n: 7, median: m, p25: m * 0.9, p75: m * 1.1, min: m, max: m, mean: m, cv: 0.1 };
        let row = |kind, count, m| SpawnRow { kind, count, micros_per_spawn: st(m) };
        let report = |peak_at_4: f64| SpawnCostReport {
            params: SpawnCost { counts: vec![1, 4, 16, 1024], samples: 7, workers: 2 },
            rows: vec![
                row(THREAD, 1, 28.0),
                row(THREAD, 4, peak_at_4),
                row(THREAD, 16, 18.0),
                row(THREAD, 1024, 52.0),
                row(TASK, 1, 9.0),
                row(TASK, 4, 9.0),
                row(TASK, 16, 1.3),
                row(TASK, 1024, 0.5),
            ],
            load: Load { seconds: 1.0, others_share: Some(0.5), steal_share: Some(0.0) },
        };
        let f = report(952.0).findings();
        assert!(f.iter().any(|x| x.text.starts_with("Per thread in a batch of 4 (the costliest): 952")), "{f:?}");
        // No outlier (the longest batch is the costliest): no such finding.
        let f = report(30.0).findings();
        assert!(!f.iter().any(|x| x.text.contains("the costliest")), "{f:?}");
    }

    #[test]
    fn one_row_per_kind_and_count_and_threads_cost_more() {
        let p = SpawnCost { counts: vec![1, 64], samples: 5, workers: 2 };
        let r = spawn_cost(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        assert!(r.rows.iter().all(|row| row.micros_per_spawn.n == 5 && row.micros_per_spawn.median > 0.0));
        // A thread start is a clone(2) syscall plus a stack mapping; a task is an
        // allocation and a queue push. The gap is about 100× on a quiet machine; the test
        // asks for 5× between the fastest samples of each: preemption only ever adds time,
        // so beside a CPU hog (which preempted a task batch into a 3× median gap in CI)
        // the least disturbed of 5 samples still shows the mechanism.
        let fastest =
            |kind: &str| r.rows.iter().find(|x| x.kind == kind && x.count == 64).unwrap().micros_per_spawn.min;
        assert!(fastest(THREAD) > 5.0 * fastest(TASK), "{:?}", r.rows);
        assert!(r.ratio_at_largest().is_some());
        assert_eq!(r.table().rows.len(), 2);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.figure().x_label.contains("5 samples each; tokio: 2 workers"));
        assert!(r.table().to_text().contains("counts = [1, 64], samples = 5"), "{}", r.table().to_text());
    }
}
