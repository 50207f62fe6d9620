//! Cores and true parallelism: a fixed CPU-bound job split over more and more threads,
//! with Amdahl's law and the Universal Scalability Law fitted to the speedup where the
//! data can support a fit (enough thread counts up to the CPU count), and not otherwise.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::separated;
use crate::lab::fit::{Usl, amdahl, fit_amdahl, fit_usl, karp_flatt};
use crate::lab::together::run_together;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, LabError, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style, Table, check_list,
    check_range, cores, fmt_num,
};
use crate::lab::{Finding, Load, LoadProbe};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Parameters of [`scaling`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scaling {
    /// Thread counts to measure: each 1..=1024, at most 24 of them; 1 must be among them
    /// (speedup is relative to it).
    pub threads: Vec<usize>,
    /// Single-thread CPU time of the whole job, in milliseconds: 1..=5000.
    pub work_ms: u64,
    /// Timed samples per point (after one warm-up): 1..=51.
    pub samples: usize,
    /// Also run the job on a rayon thread pool of each size (built and dropped per point).
    pub rayon: bool,
}

impl Default for Scaling {
    fn default() -> Self {
        // Enough work that each thread's share stays well above thread start-up costs.
        let work_ms = (50 * cores() as u64).clamp(100, 2000);
        Scaling { threads: default_threads_within(cores(), 1024, 24), work_ms, samples: 5, rayon: true }
    }
}

pub use crate::lab::machine::{default_threads, default_threads_within};

impl Scaling {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 24, 1..=1024)?;
        if !self.threads.contains(&1) {
            return Err(ParamError::new("threads", "a list that includes 1 (the baseline)", &self.threads));
        }
        check_range("work_ms", self.work_ms, 1..=5000)?;
        check_range("samples", self.samples, 1..=51)?;
        // Each point runs the job samples + 1 times, at best min(threads, CPUs) times faster
        // than on one thread.
        let cores = cores() as f64;
        let per_method: f64 =
            self.threads.iter().map(|&t| self.work_ms as f64 * (self.samples + 1) as f64 / cores.min(t as f64)).sum();
        let methods = if self.rayon { 2.0 } else { 1.0 };
        check_estimate("work_ms × (samples + 1) × thread counts", Duration::from_secs_f64(per_method * methods / 1e3))?;
        Ok(())
    }
}

/// Wall time of the job at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingRow {
    pub method: String,
    pub threads: usize,
    /// Wall time in milliseconds over the samples.
    pub millis: Stats,
    /// Median single-thread time divided by median time here.
    pub speedup: f64,
}

/// Result of [`scaling`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingReport {
    pub params: Scaling,
    pub cores: usize,
    pub rows: Vec<ScalingRow>,
    /// Amdahl parallel fraction fitted to the std::thread speedups at 2..=cores threads,
    /// when there are at least [`MIN_AMDAHL_POINTS`] such counts.
    pub amdahl_p: Option<f64>,
    /// USL fitted to the std::thread speedups at 2..=cores threads, when there are at
    /// least [`MIN_USL_POINTS`] such counts and it describes them within [`FIT_TOLERANCE`].
    pub usl: Option<Usl>,
    /// The USL's largest relative miss on those points, when it was fitted (kept or not).
    pub usl_miss: Option<f64>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

pub const THREADS: &str = "std::thread (scoped)";
/// Amdahl's law has one parameter: with fewer counts above 1 it is fitted exactly and
/// nothing checks it.
pub const MIN_AMDAHL_POINTS: usize = 3;
/// The USL has two parameters; a third and fourth point check the fit.
pub const MIN_USL_POINTS: usize = 4;
/// A fit that misses a measured speedup by more than this share is not drawn.
pub const FIT_TOLERANCE: f64 = 0.10;
pub const RAYON: &str = "rayon pool";

/// Splits a fixed job of `work_ms` single-thread milliseconds into equal parts over each
/// thread count, measures wall time (median of `samples`), and fits Amdahl's law (to
/// the counts up to the number of cores) and the USL (to all counts) to the speedups.
pub fn scaling(p: &Scaling) -> Result<ScalingReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let total = p.work_ms * iters_per_ms();
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut rows = Vec::new();
    let mut methods = vec![THREADS];
    if p.rayon {
        methods.push(RAYON);
    }
    let mut progress = Progress::new("scaling", methods.len() * p.threads.len());
    for method in methods {
        let mut base = None;
        for &t in &p.threads {
            let stats = if method == THREADS {
                // Threads are created first and released together: only the work is timed.
                sampling
                    .try_measure(|| run_together(t, |_| Ok(()), |i| busy(total / t as u64, i as u64)).map(|d| d.wall))
                    .map_err(|e| RunError::new("scaling", e))?
            } else {
                // `build_scoped` returns only after the pool's threads have exited: nothing
                // outlives the call. The pool exists before timing starts.
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build_scoped(
                        |thread| thread.run(),
                        |pool| {
                            sampling.time(|| {
                                pool.install(|| split_with_rayon(total, t));
                            })
                        },
                    )
                    .map_err(|e| RunError::new("scaling", format!("could not start a rayon pool of {t}: {e}")))?
            }
            .scaled(1e3);
            if t == 1 {
                base = Some(stats.median);
            }
            rows.push(ScalingRow { method: method.into(), threads: t, millis: stats, speedup: 0.0 });
            progress.step()?;
        }
        let base = base.expect("validated: 1 is among the counts");
        for r in rows.iter_mut().filter(|r| r.method == method) {
            r.speedup = base / r.millis.median;
        }
    }
    let n = cores();
    // Past the CPU count the curve is flat because CPUs are missing, not because of
    // serial work or contention: both models are fitted to 1..=cores only.
    let upto_cores: Vec<(f64, f64)> =
        rows.iter().filter(|r| r.method == THREADS && r.threads <= n).map(|r| (r.threads as f64, r.speedup)).collect();
    let above_one = upto_cores.iter().filter(|(t, _)| *t > 1.0).count();
    let amdahl_p = if above_one >= MIN_AMDAHL_POINTS { fit_amdahl(&upto_cores) } else { None };
    let (usl, usl_miss) = match (above_one >= MIN_USL_POINTS).then(|| fit_usl(&upto_cores)).flatten() {
        Some(u) => {
            let miss = upto_cores.iter().map(|&(t, s)| ((u.speedup(t) - s) / s).abs()).fold(0.0, f64::max);
            ((miss <= FIT_TOLERANCE).then_some(u), Some(miss))
        }
        None => (None, None),
    };
    let load = probe.finish();
    Ok(ScalingReport { params: p.clone(), cores: n, amdahl_p, usl, usl_miss, rows, load })
}

fn split_with_rayon(total: u64, t: usize) -> u64 {
    // A few pieces per thread, so work stealing can even out uneven progress.
    let pieces = (t * 4) as u64;
    let part = total / pieces;
    (0..pieces).into_par_iter().map(|i| busy(part, i)).reduce(|| 0, |a, b| a ^ b)
}

impl ScalingReport {
    /// The figure's title, from the data: where the std::thread speedup peaked.
    pub fn headline(&self) -> String {
        let best = self.rows.iter().filter(|r| r.method == THREADS).max_by(|a, b| a.speedup.total_cmp(&b.speedup));
        match best {
            Some(b) if self.cores > 1 && b.threads > 1 => format!(
                "Speedup peaks at {}× with {} threads ({} CPUs here)",
                fmt_num(b.speedup),
                b.threads,
                self.cores
            ),
            Some(_) if self.cores > 1 => {
                format!("No thread count beat 1 thread here ({} CPUs; see the load finding)", self.cores)
            }
            _ => format!("One CPU here: more threads cannot run at once ({} CPU)", self.cores),
        }
    }

    pub fn speedup(&self, method: &str, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.method == method && r.threads == threads).map(|r| r.speedup)
    }

    /// The speedup with one thread per CPU against one thread.
    fn speedup_finding(&self, out: &mut Vec<Finding>) {
        let one = self.row(THREADS, 1);
        // The largest count that still has a CPU per thread.
        let fit = self.params.threads.iter().copied().filter(|&t| t <= self.cores && t > 1).max();
        if let (Some(one), Some(t)) = (one, fit.and_then(|t| self.row(THREADS, t))) {
            let speedup = one.millis.median / t.millis.median;
            let how = if speedup >= 1.05 {
                format!("{}× faster", fmt_num(speedup))
            } else if speedup > 0.95 {
                format!("no faster ({}×)", fmt_num(speedup))
            } else {
                format!("slower ({}×)", fmt_num(speedup))
            };
            let text = format!(
                "With {} threads (one per CPU) the job took {} ms against {} ms on 1 thread: {how}; the ideal is {}×",
                t.threads,
                fmt_num(t.millis.median),
                fmt_num(one.millis.median),
                t.threads
            );
            out.push(if separated(&one.millis, &t.millis) { Finding::clear(text) } else { Finding::unclear(text) });
        }
    }

    /// Whether more threads than CPUs added speed.
    fn past_the_cpus_finding(&self, out: &mut Vec<Finding>) {
        // Past the CPU count: did more threads add speed? Best row within the CPUs
        // against the best row past them.
        let best_of = |within: bool| {
            self.rows
                .iter()
                .filter(|r| r.method == THREADS && (r.threads <= self.cores) == within)
                .max_by(|a, b| a.speedup.total_cmp(&b.speedup))
        };
        if let (Some(inside), Some(beyond), Some(max_t)) =
            (best_of(true), best_of(false), self.params.threads.iter().copied().max())
        {
            let at_max = self.row(THREADS, max_t).map_or(0.0, |r| r.speedup);
            if beyond.speedup > inside.speedup * 1.05 && separated(&beyond.millis, &inside.millis) {
                out.push(Finding::clear(format!(
                    "Past {} CPU(s), more threads were faster: {}× at {} threads against {}× at {} — more than the \
                     CPUs can explain; on a busy machine more threads win a larger share of the CPUs from other \
                     programs",
                    self.cores,
                    fmt_num(beyond.speedup),
                    beyond.threads,
                    fmt_num(inside.speedup),
                    inside.threads
                )));
            } else {
                let past = if beyond.threads == max_t {
                    format!("{}× at {max_t}", fmt_num(at_max))
                } else {
                    format!("{}× at {} and {}× at {max_t}", fmt_num(beyond.speedup), beyond.threads, fmt_num(at_max))
                };
                out.push(Finding::note(format!(
                    "Past {} CPU(s), extra threads added no speed: the best within the CPUs was {}× at {} thread(s), \
                     past them {past}",
                    self.cores,
                    fmt_num(inside.speedup),
                    inside.threads,
                )));
            }
        }
    }

    /// The Amdahl and USL fits, or why there is none.
    fn fit_findings(&self, out: &mut Vec<Finding>) {
        let above_one = self.params.threads.iter().filter(|&&t| t > 1 && t <= self.cores).count();
        match self.amdahl_p {
            Some(p) => out.push(Finding::note(format!(
                "Amdahl fit to {above_one} counts up to {} CPUs: p = {p:.3}. This job has no serial part by \
                 construction, so the 1 − p = {:.3} it finds is overhead and noise, not serial code",
                self.cores,
                1.0 - p
            ))),
            None => out.push(Finding::note(format!(
                "No Amdahl fit: it needs at least {MIN_AMDAHL_POINTS} thread counts between 2 and the {} CPU(s), \
                 this run has {above_one} — with fewer, the one parameter passes exactly through the points and \
                 tests nothing",
                self.cores
            ))),
        }
        match (self.usl, self.usl_miss) {
            (Some(u), Some(miss)) => out.push(Finding::note(format!(
                "USL fit up to {} CPUs: σ = {:.3}, κ = {:.4}; it misses the measured speedups by at most {:.0} %",
                self.cores,
                u.sigma,
                u.kappa,
                miss * 100.0
            ))),
            (None, Some(miss)) => out.push(Finding::note(format!(
                "The USL was fitted but not drawn: it missed a measured speedup by {:.0} % (more than {:.0} %), \
                 so it does not describe these points",
                miss * 100.0,
                FIT_TOLERANCE * 100.0
            ))),
            _ => out.push(Finding::note(format!(
                "No USL fit: its two parameters need at least {MIN_USL_POINTS} thread counts between 2 and the {} \
                 CPU(s); past the CPU count the curve is flat for lack of CPUs, which the USL does not model",
                self.cores
            ))),
        }
    }
}

impl ScalingReport {
    fn row(&self, method: &str, threads: usize) -> Option<&ScalingRow> {
        self.rows.iter().find(|r| r.method == method && r.threads == threads)
    }
}

/// "At 4 threads, the rayon pool reached 1.9×, std::thread 1.6×", sure when their time
/// quartiles separate.
fn compare_speedups(t: usize, threads: &ScalingRow, rayon: &ScalingRow) -> Finding {
    let text = format!(
        "At {t} threads the rayon pool reached {}×, plain threads {}×",
        fmt_num(rayon.speedup),
        fmt_num(threads.speedup)
    );
    if (rayon.speedup / threads.speedup - 1.0).abs() < 0.05 {
        Finding::note(format!("{text}: about equal"))
    } else if separated(&threads.millis, &rayon.millis) {
        Finding::clear(text)
    } else {
        Finding::unclear(text)
    }
}

impl Report for ScalingReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        self.speedup_finding(&mut out);
        self.past_the_cpus_finding(&mut out);
        if let Some(max_t) = self.params.threads.iter().copied().max()
            && max_t > 1
            && let (Some(a), Some(b)) = (self.row(THREADS, max_t), self.row(RAYON, max_t))
        {
            out.push(compare_speedups(max_t, a, b));
        }
        self.fit_findings(&mut out);
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let max_t = self.params.threads.iter().copied().max().unwrap_or(1) as f64;
        let mut f = Figure::lines(&self.headline(), "threads", "speedup over 1 thread (×); band: quartiles of T(n)");
        let curve = |to: f64, g: &dyn Fn(f64) -> f64| -> Vec<Point> {
            (0..=60).map(|i| 1.0 + (to - 1.0) * i as f64 / 60.0).map(|x| Point::new(x, g(x))).collect()
        };
        let n = self.cores as f64;
        f = f.series(Series::new("ideal (linear up to the cores)", Style::Ideal, curve(max_t, &|x| x.min(n))));
        for method in [THREADS, RAYON] {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.method == method)
                .map(|r| Point::speedup(r.threads as f64, r.speedup, &r.millis))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(method, Style::Measured, pts));
            }
        }
        if let Some(p) = self.amdahl_p {
            // Amdahl describes the work, not the hardware: drawn only up to the core count.
            let to = n.min(max_t).max(1.0);
            f = f.series(Series::new(
                format!("Amdahl fit (≤ cores), p = {p:.3}"),
                Style::Fit,
                curve(to, &|x| amdahl(p, x)),
            ));
        }
        if let Some(u) = self.usl {
            let to = n.min(max_t).max(1.0);
            f = f.series(Series::new(
                format!("USL fit (≤ cores), σ = {:.3}, κ = {:.4}", u.sigma, u.kappa),
                Style::Fit,
                curve(to, &|x| u.speedup(x)),
            ));
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::LowerRight), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Scaling a fixed CPU-bound job",
            &["method", "threads", "median ms", "p25–p75 ms", "speedup", "Karp–Flatt e"],
        );
        for r in &self.rows {
            t.row(vec![
                r.method.clone(),
                r.threads.to_string(),
                fmt_num(r.millis.median),
                r.millis.quartile_range(),
                format!("{}×", fmt_num(r.speedup)),
                // Past the core count e only reflects the missing cores: not shown.
                karp_flatt(r.threads as f64, r.speedup)
                    .filter(|_| r.threads <= self.cores)
                    .map_or("–".into(), |e| format!("{e:.3}")),
            ]);
        }
        if let Some(p) = self.amdahl_p {
            t.note(format!(
                "Amdahl fit (threads ≤ {} cores): parallel fraction p = {p:.3}, serial fraction {:.3}; limit {}×.",
                self.cores,
                1.0 - p,
                if p < 1.0 { fmt_num(1.0 / (1.0 - p)) } else { "∞".into() }
            ));
        }
        if let Some(u) = self.usl {
            t.note(format!(
                "USL fit (threads ≤ cores): σ = {:.4} (contention), κ = {:.5} (coherency); modelled peak at {} threads.",
                u.sigma,
                u.kappa,
                if u.peak().is_finite() { fmt_num(u.peak()) } else { "∞".into() }
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_cover_twice_the_cores() {
        assert_eq!(default_threads(2), vec![1, 2, 3, 4]);
        assert_eq!(default_threads(16), vec![1, 2, 3, 4, 5, 6, 7, 8, 16, 24, 32]);
    }

    #[test]
    fn defaults_stay_in_range_on_any_machine() {
        for c in [1, 2, 3, 8, 16, 48, 64, 96, 128, 255, 256, 512, 1000, 1024] {
            let v = default_threads_within(c, 64, 12);
            assert!(v.len() <= 12 && v.iter().all(|&t| (1..=64).contains(&t)) && v[0] == 1, "{c}: {v:?}");
            let v = default_threads_within(c, 1024, 24);
            assert!(v.len() <= 24 && v.iter().all(|&t| (1..=1024).contains(&t)), "{c}: {v:?}");
        }
        assert!(Scaling::default().validate().is_ok());
    }

    #[test]
    fn refuses_bad_parameters() {
        assert!(scaling(&Scaling { threads: vec![0, 1], ..Default::default() }).is_err());
        assert!(scaling(&Scaling { threads: vec![2, 4], ..Default::default() }).is_err());
        assert!(scaling(&Scaling { work_ms: 1_000_000_000, ..Default::default() }).is_err());
        assert!(scaling(&Scaling { samples: 0, ..Default::default() }).is_err());
    }

    #[test]
    fn one_thread_is_the_baseline_and_fits_exist() {
        let r = scaling(&Scaling { threads: vec![1, 2], work_ms: 20, samples: 2, rayon: true }).unwrap();
        assert_eq!(r.rows.len(), 4);
        assert_eq!(r.speedup(THREADS, 1), Some(1.0));
        assert_eq!(r.speedup(RAYON, 1), Some(1.0));
        // One count above 1: nothing to fit, and the findings say so.
        assert!(r.amdahl_p.is_none() && r.usl.is_none());
        let f = r.findings();
        assert!(f.iter().any(|x| x.text.starts_with("No Amdahl fit")), "{f:?}");
        assert!(f.iter().any(|x| x.text.starts_with("No USL fit")), "{f:?}");
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
