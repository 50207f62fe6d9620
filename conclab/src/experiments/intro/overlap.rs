//! Why concurrency helps on one CPU at all: tasks that wait (sleep, I/O) leave the CPU
//! free, and another thread can compute meanwhile. The same tasks with the waiting
//! replaced by computing gain nothing from more threads on one CPU.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::compare;
use crate::lab::together::run_together;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style,
    Table, check_cpu, check_list, check_range, fmt_num, pin_current_thread, usable_cpus,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Parameters of [`overlap`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overlap {
    /// Tasks in the job: 1..=64.
    pub tasks: usize,
    /// CPU time each task computes, in ms: 1..=100.
    pub work_ms: u64,
    /// Time each task then waits (a `thread::sleep`, standing in for I/O), in ms: 0..=200.
    pub wait_ms: u64,
    /// Thread counts, all pinned to one CPU; each 1..=64, at most 8 counts, 1 among them.
    pub threads: Vec<usize>,
    /// Timed samples per point (after one warm-up): 1..=21.
    pub samples: usize,
    /// The one CPU every thread is pinned to.
    pub cpu: usize,
}

impl Default for Overlap {
    fn default() -> Self {
        Overlap { tasks: 8, work_ms: 2, wait_ms: 10, threads: vec![1, 2, 4, 8], samples: 5, cpu: usable_cpus()[0] }
    }
}

impl Overlap {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("tasks", self.tasks, 1..=64)?;
        check_range("work_ms", self.work_ms, 1..=100)?;
        check_range("wait_ms", self.wait_ms, 0..=200)?;
        check_list("threads", &self.threads, 8, 1..=64)?;
        if !self.threads.contains(&1) {
            return Err(ParamError::new("threads", "a list that includes 1 (the baseline)", &self.threads));
        }
        check_range("samples", self.samples, 1..=21)?;
        check_cpu("cpu", self.cpu)?;
        // Both variants take at most tasks × (work + wait) per run.
        let per_run = self.tasks as f64 * (self.work_ms + self.wait_ms) as f64;
        let runs = 2.0 * self.threads.len() as f64 * (self.samples + 1) as f64;
        check_estimate("tasks × (work_ms + wait_ms) × samples × counts", Duration::from_secs_f64(per_run * runs / 1e3))
    }
}

/// One variant at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverlapRow {
    /// [`WAITING`] or [`COMPUTING`].
    pub job: String,
    pub threads: usize,
    /// Wall time of the whole job in ms, over the samples.
    pub millis: Stats,
    /// Median time on 1 thread / median time here.
    pub speedup: f64,
}

/// Result of [`overlap`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverlapReport {
    pub params: Overlap,
    pub rows: Vec<OverlapRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

pub const WAITING: &str = "compute, then wait";
pub const COMPUTING: &str = "compute only (the wait replaced by work)";

/// Runs a job of `tasks` tasks on 1, 2, … threads that are all pinned to one CPU: each
/// thread takes the next task until none is left. In the first job a task computes for
/// `work_ms` and then sleeps for `wait_ms`; in the second it computes for
/// `work_ms + wait_ms`. On 1 thread both take `tasks × (work_ms + wait_ms)`.
pub fn overlap(p: &Overlap) -> Result<OverlapReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let per_ms = iters_per_ms();
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut progress = Progress::new("overlap", 2 * p.threads.len());
    let mut rows = Vec::new();
    for job in [WAITING, COMPUTING] {
        let (work, wait) = if job == WAITING {
            (p.work_ms * per_ms, Duration::from_millis(p.wait_ms))
        } else {
            ((p.work_ms + p.wait_ms) * per_ms, Duration::ZERO)
        };
        for &t in &p.threads {
            let next = AtomicUsize::new(0);
            let stats = sampling
                .try_measure(|| {
                    next.store(0, Ordering::Relaxed);
                    let prepare = |_| {
                        if pin_current_thread(p.cpu) { Ok(()) } else { Err(format!("could not pin to CPU {}", p.cpu)) }
                    };
                    run_together(t, prepare, |i| {
                        let mut x = 0;
                        while next.fetch_add(1, Ordering::Relaxed) < p.tasks {
                            x ^= busy(work, i as u64);
                            if !wait.is_zero() {
                                std::thread::sleep(wait);
                            }
                        }
                        x
                    })
                    .map(|d| d.wall)
                })
                .map_err(|e| RunError::new("overlap", e))?
                .scaled(1e3);
            rows.push(OverlapRow { job: job.into(), threads: t, millis: stats, speedup: 0.0 });
            progress.step()?;
        }
    }
    for job in [WAITING, COMPUTING] {
        let base = rows.iter().find(|r| r.job == job && r.threads == 1).map(|r| r.millis.median).unwrap_or(1.0);
        for r in rows.iter_mut().filter(|r| r.job == job) {
            r.speedup = base / r.millis.median;
        }
    }
    Ok(OverlapReport { params: p.clone(), rows, load: probe.finish() })
}

impl OverlapReport {
    pub fn row(&self, job: &str, threads: usize) -> Option<&OverlapRow> {
        self.rows.iter().find(|r| r.job == job && r.threads == threads)
    }

    /// The best speedup one CPU allows with `threads` threads. The CPU computes every
    /// task's work one after another, and the last work to finish is followed by its
    /// wait: at least `tasks × work + wait`. Each thread runs its share of the tasks one
    /// after another: at least `ceil(tasks / threads) × (work + wait)`.
    pub fn bound(&self, threads: f64) -> f64 {
        let p = &self.params;
        let (tasks, work, wait) = (p.tasks as f64, p.work_ms as f64, p.wait_ms as f64);
        let one = tasks * (work + wait);
        let cpu = tasks * work + wait;
        let per_thread = (tasks / threads.clamp(1.0, tasks)).ceil() * (work + wait);
        one / cpu.max(per_thread)
    }
}

impl Report for OverlapReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let max_t = self.params.threads.iter().copied().max().unwrap_or(1);
        if max_t > 1 {
            for job in [WAITING, COMPUTING] {
                if let (Some(one), Some(many)) = (self.row(job, 1), self.row(job, max_t)) {
                    let mut f = compare(
                        &format!("\"{job}\" on {max_t} threads"),
                        &many.millis,
                        "on 1 thread",
                        &one.millis,
                        " ms",
                    );
                    if job == WAITING {
                        let bound = self.bound(max_t as f64);
                        f.text += &if many.speedup >= 0.95 * bound {
                            format!(
                                " — a speedup of {}× on one CPU: at the bound of {}× that the nominal work and \
                                 wait times allow (the work is calibrated, so a few per cent either way is noise)",
                                fmt_num(many.speedup),
                                fmt_num(bound)
                            )
                        } else {
                            format!(
                                " — a speedup of {}× on one CPU, below the bound of {}×",
                                fmt_num(many.speedup),
                                fmt_num(bound)
                            )
                        };
                    } else if many.speedup > 1.2 {
                        f.text += &format!(
                            " — {}× on one CPU, and not from overlap: there is nothing to overlap, so more threads \
                             took a larger share of that CPU from other programs running on it",
                            fmt_num(many.speedup)
                        );
                    } else {
                        f.text += &format!(" — {}× on one CPU: nothing to overlap", fmt_num(many.speedup));
                    }
                    out.push(f);
                }
            }
        }
        if self.params.wait_ms == 0 {
            out.push(Finding::note("wait_ms = 0: both jobs only compute, so neither can gain on one CPU"));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let max_t = p.threads.iter().copied().max().unwrap_or(1) as f64;
        let mut f = Figure::lines(
            "On one CPU, more threads help only while tasks wait",
            &format!(
                "threads, all pinned to CPU {} ({} tasks of {} ms work + {} ms wait each)",
                p.cpu, p.tasks, p.work_ms, p.wait_ms
            ),
            "speedup over 1 thread (×); band: quartiles of the time",
        )
        .linear_x();
        let bound: Vec<Point> = (0..=40)
            .map(|i| 1.0 + (max_t - 1.0) * i as f64 / 40.0)
            .map(|x| Point::new(x, self.bound(x.floor().max(1.0))))
            .collect();
        f = f.series(Series::new("bound for \"compute, then wait\" on one CPU", Style::Ideal, bound));
        for job in [WAITING, COMPUTING] {
            let pts = self
                .rows
                .iter()
                .filter(|r| r.job == job)
                .map(|r| Point::speedup(r.threads as f64, r.speedup, &r.millis))
                .collect();
            f = f.series(Series::new(job, Style::Measured, pts));
        }
        vec![super::mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Threads on one CPU: waiting tasks vs computing tasks",
            &["job", "threads", "median ms", "p25–p75 ms", "speedup"],
        );
        for r in &self.rows {
            t.row(vec![
                r.job.clone(),
                r.threads.to_string(),
                fmt_num(r.millis.median),
                r.millis.quartile_range(),
                format!("{}×", fmt_num(r.speedup)),
            ]);
        }
        t.note(format!(
            "{} tasks; each computes {} ms and then sleeps {} ms (or computes {} ms); every thread pinned to CPU {}; \
             {} samples per point.",
            self.params.tasks,
            self.params.work_ms,
            self.params.wait_ms,
            self.params.work_ms + self.params.wait_ms,
            self.params.cpu,
            self.params.samples
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        assert!(overlap(&Overlap { tasks: 0, ..Default::default() }).is_err());
        assert!(overlap(&Overlap { threads: vec![2, 4], ..Default::default() }).is_err());
        assert!(overlap(&Overlap { work_ms: 0, ..Default::default() }).is_err());
        assert!(Overlap::default().validate().is_ok());
    }

    #[test]
    fn waiting_tasks_overlap_on_one_cpu_and_computing_ones_do_not() {
        let p = Overlap { tasks: 4, work_ms: 1, wait_ms: 8, threads: vec![1, 4], samples: 3, ..Default::default() };
        let r = overlap(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        // 4 × 9 ms on one thread against about 12 ms on four: far above 1.5× even on a
        // busy machine. Computing has nothing to overlap (on a busy CPU more threads may
        // still win a larger share of it, so only the order is asserted).
        let (w, c) = (r.row(WAITING, 4).unwrap().speedup, r.row(COMPUTING, 4).unwrap().speedup);
        assert!(w > 1.5 && w > c, "{:?}", r.rows);
        // 4 × 9 ms = 36 ms on one thread; at best 4 × 1 + 8 = 12 ms on four: 3×.
        assert_eq!(r.bound(4.0), 3.0);
        assert_eq!(r.bound(1.0), 1.0);
        assert!(r.findings().len() >= 3);
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
