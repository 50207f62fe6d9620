//! Oversubscription: a fixed CPU-bound job over far more threads than cores, with and
//! without the threads having to meet after every step, and the context switches it costs.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::separated;
use crate::lab::os::Switches;
use crate::lab::wait::TimedBarrier;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_choices, check_list, check_range, cores, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Parameters of [`oversubscription`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Oversubscription {
    /// Thread counts, each 1..=1024, at most 16 of them; 1 must be among them (the baseline).
    pub threads: Vec<usize>,
    /// Single-thread CPU time of the whole job, in milliseconds: 1..=5000.
    pub work_ms: u64,
    /// Steps of the "lock-step" job: after each, every thread waits at a barrier for all
    /// the others: 1..=10_000.
    pub phases: usize,
    /// Timed samples per point (after one warm-up): 1..=51.
    pub samples: usize,
    /// Jobs, any of [`Workload`]: "independent" and "lock-step".
    pub workloads: Vec<Workload>,
}

impl Default for Oversubscription {
    fn default() -> Self {
        Oversubscription {
            threads: vec![1, 2, 4, 8, 16, 32, 64],
            work_ms: 100,
            phases: 100,
            samples: 3,
            workloads: Workload::ALL.to_vec(),
        }
    }
}

crate::choices! {
    /// The jobs [`oversubscription`] knows.
    pub enum Workload {
        /// Each thread computes its share in one go and ends.
        Independent = "independent",
        /// The shares are cut into `phases` steps with a barrier between them.
        LockStep = "lock-step",
    }
}

impl Oversubscription {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=1024)?;
        if !self.threads.contains(&1) {
            return Err(ParamError::new("threads", "a list that includes 1 (the baseline)", &self.threads));
        }
        check_range("work_ms", self.work_ms, 1..=5000)?;
        check_range("phases", self.phases, 1..=10_000)?;
        check_range("samples", self.samples, 1..=51)?;
        check_choices("workloads", &self.workloads)?;
        // Each point runs samples + 1 times, at best min(threads, CPUs) times faster than
        // one thread; the lock-step job adds a barrier per phase (~50 µs per thread).
        let cores = crate::lab::cores() as f64;
        let per_workload_ms: f64 = self
            .threads
            .iter()
            .map(|&t| self.work_ms as f64 / cores.min(t as f64) + self.phases as f64 * t as f64 * 0.05)
            .sum();
        let ms = per_workload_ms * (self.samples + 1) as f64 * self.workloads.len() as f64;
        check_estimate("work_ms × phases × samples × thread counts", Duration::from_secs_f64(ms / 1e3))
    }
}

/// One job at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OversubscriptionRow {
    pub workload: Workload,
    pub threads: usize,
    /// Wall time of the job in milliseconds (spawning and joining the threads included).
    pub millis: Stats,
    /// Median single-thread time / median time here.
    pub speedup: f64,
    /// Context switches of all threads together per run (median over samples).
    pub voluntary: f64,
    pub involuntary: f64,
}

/// Result of [`oversubscription`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OversubscriptionReport {
    pub params: Oversubscription,
    pub cores: usize,
    pub rows: Vec<OversubscriptionRow>,
    pub load: Load,
}

/// Splits a fixed job (`work_ms` of single-thread CPU time) over each thread count and
/// measures its wall time and the context switches of its threads. "independent": each
/// thread computes its share and ends. "lock-step": the shares are cut into `phases`
/// steps and every thread waits for all others after each step (a barrier with a
/// timeout), as iterative numerical codes do.
pub fn oversubscription(p: &Oversubscription) -> Result<OversubscriptionReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("oversubscription", p.workloads.len() * p.threads.len());
    let total = p.work_ms * iters_per_ms();
    let mut rows = Vec::new();
    for workload in Workload::ALL.iter().copied().filter(|w| p.workloads.contains(w)) {
        let phases = match workload {
            Workload::Independent => 1,
            Workload::LockStep => p.phases,
        };
        let mut base = None;
        for &t in &p.threads {
            let (mut ms, mut vol, mut invol) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..=p.samples {
                let (d, sw) = job(total, t, phases).map_err(|e| RunError::new(format!("running {t} threads"), e))?;
                if i > 0 {
                    ms.push(d.as_secs_f64() * 1e3);
                    vol.push(sw.voluntary as f64);
                    invol.push(sw.involuntary as f64);
                }
            }
            let millis = Stats::of(&ms);
            if t == 1 {
                base = Some(millis.median);
            }
            rows.push(OversubscriptionRow {
                workload,
                threads: t,
                millis,
                speedup: 0.0,
                voluntary: Stats::of(&vol).median,
                involuntary: Stats::of(&invol).median,
            });
            progress.step()?;
        }
        let base = base.expect("validated: 1 is among the counts");
        for r in rows.iter_mut().filter(|r| r.workload == workload) {
            r.speedup = base / r.millis.median;
        }
    }
    Ok(OversubscriptionReport { params: p.clone(), cores: cores(), rows, load: probe.finish() })
}

/// Runs the job once on `t` threads in `phases` steps (1: no barrier).
fn job(total: u64, t: usize, phases: usize) -> Result<(Duration, Switches), String> {
    let step = (total / (t as u64 * phases as u64)).max(1);
    let barrier = TimedBarrier::new(t);
    let start = Instant::now();
    let result = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(t);
        for i in 0..t {
            let barrier = &barrier;
            let h = std::thread::Builder::new().spawn_scoped(s, move || {
                let before = Switches::this_thread();
                for _ in 0..phases {
                    busy(step, i as u64);
                    if phases > 1 && barrier.wait(Duration::from_secs(10)).is_err() {
                        return Err("a barrier wait timed out".to_string());
                    }
                }
                Ok(Switches::this_thread().since(before))
            });
            match h {
                Ok(h) => handles.push(h),
                // The threads already started time out at the barrier and end by themselves.
                Err(e) => return Err(format!("the OS refused thread {} ({e})", i + 1)),
            }
        }
        let mut sw = Switches::default();
        for h in handles {
            sw = sw + h.join().map_err(|_| "a worker panicked".to_string())??;
        }
        Ok(sw)
    });
    result.map(|sw| (start.elapsed(), sw))
}

impl OversubscriptionReport {
    /// Speedup of `workload` at `threads`.
    pub fn speedup(&self, workload: Workload, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.workload == workload && r.threads == threads).map(|r| r.speedup)
    }

    fn row(&self, workload: Workload, threads: usize) -> Option<&OversubscriptionRow> {
        self.rows.iter().find(|r| r.workload == workload && r.threads == threads)
    }
}

impl Report for OversubscriptionReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let max_t = self.params.threads.iter().copied().max().unwrap_or(1);
        // The largest count with a CPU per thread: where the speedup should top out.
        let at_cores = self.params.threads.iter().copied().filter(|&t| t <= self.cores).max().unwrap_or(1);
        for &w in Workload::ALL {
            let (Some(one), Some(c), Some(m)) = (self.row(w, 1), self.row(w, at_cores), self.row(w, max_t)) else {
                continue;
            };
            let name = workload_label(w, self.params.phases);
            if max_t > at_cores {
                let text = format!(
                    "{name}: {}× at {at_cores} threads, {}× at {max_t} threads",
                    fmt_num(c.speedup),
                    fmt_num(m.speedup)
                );
                let text = if m.speedup < 1.0 {
                    format!("{text} — slower than one thread")
                } else if m.speedup > 1.15 * c.speedup {
                    format!(
                        "{text}: more threads did better — with other processes running, more runnable threads \
                         win a larger share of the CPUs (see the load line)"
                    )
                } else if m.speedup >= 0.9 * c.speedup {
                    format!("{text}: the extra threads cost little")
                } else {
                    format!(
                        "{text}: the extra threads cost {} % of the speed",
                        fmt_num(100.0 * (1.0 - m.speedup / c.speedup))
                    )
                };
                out.push(if separated(&c.millis, &m.millis) || m.speedup >= 0.9 * c.speedup {
                    Finding::clear(text)
                } else {
                    Finding::unclear(text)
                });
            } else {
                let text = format!("{name}: {}× at {at_cores} threads", fmt_num(c.speedup));
                out.push(if separated(&one.millis, &c.millis) { Finding::clear(text) } else { Finding::unclear(text) });
            }
        }
        if let (Some(i), Some(l)) = (self.row(Workload::Independent, max_t), self.row(Workload::LockStep, max_t)) {
            out.push(Finding::note(format!(
                "Context switches per run at {max_t} threads: independent {} voluntary + {} involuntary, \
                 lock-step {} voluntary + {} involuntary",
                fmt_num(i.voluntary),
                fmt_num(i.involuntary),
                fmt_num(l.voluntary),
                fmt_num(l.involuntary)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let max_t = self.params.threads.iter().copied().max().unwrap_or(1);
        let mut f = Figure::lines(
            &format!("More threads than cores ({}): free, or a cost?", self.cores),
            "threads",
            "speedup over 1 thread (×; median, p25–p75)",
        )
        .log_x();
        let n = self.cores as f64;
        let mut xs: Vec<f64> = self.params.threads.iter().map(|t| *t as f64).collect();
        xs.push(n);
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        f = f.series(Series::new(
            "ideal: linear up to the cores, flat after",
            Style::Ideal,
            xs.iter().filter(|x| **x <= max_t as f64).map(|x| Point::new(*x, x.min(n))).collect(),
        ));
        for &w in Workload::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.workload == w)
                .map(|r| Point::speedup(r.threads as f64, r.speedup, &r.millis))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(workload_label(w, self.params.phases), Style::Measured, pts));
            }
        }
        let mut g = Figure::lines(
            "Context switches the job needed",
            "threads",
            "context switches per run, all threads (median)",
        )
        .log_x()
        .log_y();
        let mut never = Vec::new();
        for &w in Workload::ALL {
            for (kind, pick) in [("voluntary", true), ("involuntary", false)] {
                let pts: Vec<Point> = self
                    .rows
                    .iter()
                    .filter(|r| r.workload == w)
                    .map(|r| Point::new(r.threads as f64, if pick { r.voluntary } else { r.involuntary }))
                    .collect();
                if pts.iter().all(|p| p.y == 0.0) {
                    if !pts.is_empty() {
                        never.push(format!("{w}: no {kind} switches at all"));
                    }
                } else {
                    g = g.series(Series::new(format!("{w}: {kind}"), Style::Measured, pts));
                }
            }
        }
        if !never.is_empty() {
            let caption = format!("{} · {}", never.join(", "), g.caption);
            g = g.caption(caption);
        }
        g = g.note("Points at zero switches are left out (log scale).");
        vec![
            super::mark_busy(f.legend(crate::lab::Legend::LowerLeft), &self.load),
            g.legend(crate::lab::Legend::UpperLeft),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Oversubscription",
            &["job", "threads", "median ms", "p25–p75 ms", "speedup", "voluntary switches", "involuntary switches"],
        );
        for r in &self.rows {
            t.row(vec![
                r.workload.to_string(),
                r.threads.to_string(),
                fmt_num(r.millis.median),
                r.millis.quartile_range(),
                format!("{}×", fmt_num(r.speedup)),
                fmt_num(r.voluntary),
                fmt_num(r.involuntary),
            ]);
        }
        t.note(format!(
            "{} ms of single-thread work, lock-step in {} phases; {} samples; {} CPUs. Thread start and join are \
             inside the time.",
            self.params.work_ms, self.params.phases, self.params.samples, self.cores
        ));
        t
    }
}

fn workload_label(w: Workload, phases: usize) -> String {
    match w {
        Workload::Independent => "independent shares".into(),
        Workload::LockStep => format!("lock-step ({phases} barriers)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        for p in [
            Oversubscription { threads: vec![2, 4], ..Default::default() },
            Oversubscription { threads: vec![1, 5000], ..Default::default() },
            Oversubscription { work_ms: 0, ..Default::default() },
            Oversubscription { phases: 0, ..Default::default() },
            Oversubscription { workloads: vec![], ..Default::default() },
        ] {
            assert!(oversubscription(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_workload_names_the_choices() {
        let e =
            crate::lab::params_from_pairs::<Oversubscription>("oversubscription", &[("workloads".into(), "io".into())])
                .unwrap_err();
        assert!(e.to_string().contains("independent") && e.to_string().contains("lock-step"), "{e}");
    }

    #[test]
    fn lock_step_switches_more_than_independent() {
        let p = Oversubscription { threads: vec![1, 8], work_ms: 20, phases: 50, samples: 1, ..Default::default() };
        let r = oversubscription(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        assert_eq!(r.speedup(Workload::Independent, 1), Some(1.0));
        let get = |w: Workload| r.rows.iter().find(|x| x.workload == w && x.threads == 8).unwrap().voluntary;
        // 8 threads meeting 50 times must block at the barrier: many voluntary switches.
        assert!(get(Workload::LockStep) > get(Workload::Independent), "{:?}", r.rows);
        assert_eq!(r.figures().len(), 2);
    }
}
