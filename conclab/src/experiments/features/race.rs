//! Data races: what safe Rust refuses to compile, run anyway through `unsafe`, to count
//! the updates a racy counter really loses — with the threads free to use every CPU, and
//! with all of them pinned to one CPU, where the answer depends on how the loop was
//! compiled.

use crate::lab::findings::{count_of, group};
use crate::lab::together::run_together;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_choices, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

crate::choices! {
    /// Where the racing threads may run.
    pub enum RacePlacement {
        /// The scheduler places the threads: on a multi-core machine they run at once.
        Free = "free",
        /// Every thread pinned to the same CPU: they only take turns, never run at once.
        OneCpu = "one-cpu",
    }
}

/// Parameters of [`racy_counter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RacyCounter {
    /// Thread counts: each 1..=64, at most 12 counts.
    pub threads: Vec<usize>,
    /// Increments each thread makes per run: 1_000..=20_000_000.
    pub increments: u64,
    /// Runs per thread count and placement (a race gives a different result every time): 1..=51.
    pub runs: usize,
    /// Placements to run, any of [`RacePlacement`]: free, one-cpu.
    pub placements: Vec<RacePlacement>,
}

impl Default for RacyCounter {
    fn default() -> Self {
        RacyCounter {
            threads: crate::lab::machine::default_threads_within(crate::lab::cores(), 64, 12),
            increments: 5_000_000,
            runs: 9,
            placements: RacePlacement::ALL.to_vec(),
        }
    }
}

impl RacyCounter {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 12, 1..=64)?;
        check_range("increments", self.increments, 1_000..=20_000_000)?;
        check_range("runs", self.runs, 1..=51)?;
        check_choices("placements", &self.placements)?;
        // Racy and atomic increments over the whole run, at about 20 ns each for the
        // contended atomic (the slower of the two).
        let total: u64 = self.threads.iter().map(|&t| t as u64).sum::<u64>()
            * self.increments
            * self.runs as u64
            * self.placements.len() as u64;
        crate::lab::budget::check_estimate(
            "sum(threads) × increments × runs × placements",
            std::time::Duration::from_secs_f64(total as f64 * 25e-9),
        )
    }
}

/// How the code this run executed was compiled: whether `v + 1` carries an overflow
/// check decides whether the racy loop's load and store stay separate instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Build {
    pub overflow_checks: bool,
    pub debug_assertions: bool,
}

impl Build {
    /// The build of the code running now.
    pub fn current() -> Build {
        Build { overflow_checks: overflow_checks(), debug_assertions: cfg!(debug_assertions) }
    }

    /// "build with overflow checks and debug assertions on (cargo's debug profile)" or
    /// "build with overflow checks off (release, or the lab's notebook build)".
    pub fn name(&self) -> &'static str {
        match (self.overflow_checks, self.debug_assertions) {
            (true, true) => "build with overflow checks and debug assertions on (cargo's debug profile)",
            (true, false) => "build with overflow checks on",
            (false, true) => "build with debug assertions on, overflow checks off",
            (false, false) => "build with overflow checks off (release, or the lab's notebook build)",
        }
    }

    /// What the compiler made of `*p = *p + 1` on x86-64.
    pub fn loop_code(&self) -> &'static str {
        if self.overflow_checks {
            "the increment is a load, an overflow check and a separate store"
        } else if cfg!(target_arch = "x86_64") {
            "the increment is one `inc` instruction on memory (on x86-64), without a `lock` prefix"
        } else {
            "the increment is a separate load, add and store (this CPU has no add-to-memory instruction)"
        }
    }
}

/// Whether `u64::MAX + 1` panics in this build (the same `+ 1` the racy loop performs).
fn overflow_checks() -> bool {
    if cfg!(panic = "abort") {
        // Cannot probe without aborting; debug assertions and overflow checks go together
        // in cargo's default profiles.
        return cfg!(debug_assertions);
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let max = std::hint::black_box(u64::MAX);
    let probe = std::panic::catch_unwind(move || max + std::hint::black_box(1));
    std::panic::set_hook(previous);
    probe.is_err()
}

/// One placement and thread count over all runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaceRow {
    pub placement: RacePlacement,
    pub threads: usize,
    /// Increments made per run: threads × increments.
    pub expected: u64,
    /// Share of the increments the racy counter lost, in percent, over the runs.
    pub lost_percent: Stats,
    /// Final values of the racy counter, one per run.
    pub racy_finals: Vec<u64>,
    /// Runs in which the `AtomicU64`, incremented the same way, lost an update.
    pub atomic_lossy_runs: usize,
}

impl RaceRow {
    /// Runs in which the racy counter lost at least one update.
    pub fn lossy_runs(&self) -> usize {
        self.racy_finals.iter().filter(|&&v| v < self.expected).count()
    }
}

/// Result of [`racy_counter`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaceReport {
    pub params: RacyCounter,
    pub build: Build,
    pub rows: Vec<RaceRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

/// A counter that lets every thread write it without synchronisation — exactly what
/// `Sync` exists to forbid. The `unsafe impl` below is the lie that makes it compile.
struct Racy(UnsafeCell<u64>);

impl Racy {
    fn ptr(&self) -> *mut u64 {
        self.0.get()
    }
}

// SAFETY: none. This is deliberately wrong: concurrent unsynchronised access to the
// cell is a data race, undefined behaviour in Rust. It exists only to be measured.
unsafe impl Sync for Racy {}

/// Lets `threads` threads each increment one shared counter `increments` times with a
/// plain load and store (`*p = *p + 1`, through volatile accesses so the compiler keeps
/// every one), and an `AtomicU64` with `fetch_add` for comparison; once with the threads
/// free to run on any CPU, once with all of them pinned to one CPU. Reports how many
/// increments the racy counter lost, and how this code was compiled.
///
/// # Safety
/// There is no safe way to call this: it performs a data race on purpose, which is
/// undefined behaviour. On x86-64 and AArch64 the observable effect is lost updates;
/// the function exists to show them. Call it only to observe that.
pub unsafe fn racy_counter(p: &RacyCounter) -> Result<RaceReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let build = Build::current();
    let failed = |e| RunError::new("racy_counter", e);
    let cpu = crate::lab::usable_cpus()[0];
    let mut rows = Vec::new();
    let mut progress = crate::lab::budget::Progress::new("racy counter", p.placements.len() * p.threads.len());
    for placement in RacePlacement::ALL.iter().copied().filter(|x| p.placements.contains(x)) {
        let prepare = |_| match placement {
            RacePlacement::Free => Ok(()),
            RacePlacement::OneCpu if crate::lab::pin_current_thread(cpu) => Ok(()),
            RacePlacement::OneCpu => Err(format!("could not pin a thread to CPU {cpu}")),
        };
        for &t in &p.threads {
            let expected = t as u64 * p.increments;
            let (mut finals, mut lost, mut atomic_lossy_runs) = (Vec::new(), Vec::new(), 0);
            for _ in 0..p.runs {
                // Threads are created first and released together, so they really overlap.
                let racy = Racy(UnsafeCell::new(0));
                run_together(t, prepare, |_| {
                    let ptr = racy.ptr();
                    for _ in 0..p.increments {
                        // SAFETY: not safe — the deliberate data race (see the type's note).
                        unsafe { ptr.write_volatile(ptr.read_volatile() + 1) };
                    }
                })
                .map_err(failed)?;
                let atomic = AtomicU64::new(0);
                run_together(t, prepare, |_| {
                    for _ in 0..p.increments {
                        atomic.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .map_err(failed)?;
                let v = racy.0.into_inner();
                finals.push(v);
                lost.push(100.0 * expected.saturating_sub(v) as f64 / expected as f64);
                atomic_lossy_runs += usize::from(atomic.into_inner() != expected);
            }
            rows.push(RaceRow {
                placement,
                threads: t,
                expected,
                lost_percent: Stats::of(&lost),
                racy_finals: finals,
                atomic_lossy_runs,
            });
            progress.step()?;
        }
    }
    Ok(RaceReport { params: p.clone(), build, rows, load: probe.finish() })
}

/// How close `lost` is to a whole number of one thread's increments: `Some(k)` when it is
/// within 2 % of `k ≥ 1` threads' work.
pub fn whole_threads(lost: u64, increments: u64) -> Option<u64> {
    let k = (lost as f64 / increments as f64).round();
    let off = (lost as f64 - k * increments as f64).abs() / increments as f64;
    (k >= 1.0 && off <= 0.02).then_some(k as u64)
}

impl RaceReport {
    fn rows_of(&self, placement: RacePlacement) -> impl Iterator<Item = &RaceRow> {
        self.rows.iter().filter(move |r| r.placement == placement)
    }

    fn placement_finding(&self, placement: RacePlacement) -> Vec<Finding> {
        let racing: Vec<&RaceRow> = self.rows_of(placement).filter(|r| r.threads > 1).collect();
        if racing.is_empty() {
            return Vec::new();
        }
        let runs: usize = racing.iter().map(|r| r.racy_finals.len()).sum();
        let lossy: usize = racing.iter().map(|r| r.lossy_runs()).sum();
        let n = self.params.increments;
        let losses = |r: &RaceRow| -> Vec<u64> {
            r.racy_finals.iter().map(|&v| r.expected.saturating_sub(v)).filter(|&l| l > 0).collect()
        };
        let whole: usize =
            racing.iter().map(|r| losses(r).into_iter().filter(|&l| whole_threads(l, n).is_some()).count()).sum();
        let name = match placement {
            RacePlacement::Free => "Threads free to use every CPU",
            RacePlacement::OneCpu => "Threads pinned to one CPU",
        };
        let counts = racing.iter().map(|r| r.threads.to_string()).collect::<Vec<_>>().join(", ");
        if lossy == 0 {
            return vec![count_of(&format!("{name} ({counts} threads): runs that lost an update"), 0, runs as u64)];
        }
        let means = racing
            .iter()
            .map(|r| format!("{} % at {}", fmt_num(r.lost_percent.mean), r.threads))
            .collect::<Vec<_>>()
            .join(", ");
        let worth = racing
            .iter()
            .filter_map(|r| {
                let l: Vec<f64> = losses(r).into_iter().map(|l| l as f64 / n as f64).collect();
                (!l.is_empty()).then(|| format!("{} at {}", fmt_num(Stats::of(&l).median), r.threads))
            })
            .collect::<Vec<_>>()
            .join(", ");
        vec![
            Finding::note(format!(
                "{name}: updates were lost in {lossy} of {runs} runs with 2 or more threads; \
                 mean loss {means} threads"
            )),
            Finding::note(format!(
                "{name}: a run that lost updates lost a median of {worth} threads' work (lost ÷ {} increments); \
                 a whole number of threads' work (±2 %) in {whole} of those {lossy} runs",
                group(n)
            )),
        ]
    }
}

impl Report for RaceReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = vec![Finding::note(format!("This is the {}: {}.", self.build.name(), self.build.loop_code()))];
        for placement in RacePlacement::ALL {
            out.extend(self.placement_finding(*placement));
        }
        let runs: usize = self.rows.iter().filter(|r| r.threads > 1).map(|r| r.racy_finals.len()).sum();
        let atomic: usize = self.rows.iter().map(|r| r.atomic_lossy_runs).sum();
        out.push(count_of("AtomicU64::fetch_add, same work: runs that lost an update", atomic as u64, runs as u64));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "Does an unsynchronised counter keep every increment?",
            "threads",
            "increments lost (%): mean of the runs, bars min–max",
        )
        .linear_y()
        .legend(crate::lab::Legend::LowerRight);
        // The one-CPU line and the atomic's often both sit at 0: each is drawn a little
        // to one side of its thread count, so that neither hides the other.
        const NUDGE: f64 = 0.06;
        for placement in RacePlacement::ALL {
            let dx = if *placement == RacePlacement::OneCpu { -NUDGE } else { 0.0 };
            let pts: Vec<Point> = self
                .rows_of(*placement)
                .map(|r| {
                    let x = r.threads as f64 + dx;
                    Point::spread(x, r.lost_percent.mean, r.lost_percent.min, r.lost_percent.max)
                })
                .collect();
            if !pts.is_empty() {
                let name = match placement {
                    RacePlacement::Free => "racy load + store, threads on any CPU",
                    RacePlacement::OneCpu => "racy load + store, all threads on one CPU",
                };
                f = f.series(Series::new(name, Style::ErrorBars, pts));
            }
        }
        let mut counts: Vec<usize> = self.rows.iter().map(|r| r.threads).collect();
        counts.dedup();
        let atomic = counts
            .iter()
            .map(|&t| {
                let lossy = self.rows.iter().any(|r| r.threads == t && r.atomic_lossy_runs > 0);
                Point::new(t as f64 + NUDGE, if lossy { f64::NAN } else { 0.0 })
            })
            .collect();
        f = f.series(Series::new("AtomicU64::fetch_add (0 = exact every run)", Style::Measured, atomic));
        f = f.note(format!(
            "{} runs per point: the line is the mean loss, the bars span the smallest to the largest. \
             One-CPU points are drawn just left of their thread count, atomic ones just right.",
            self.params.runs
        ));
        vec![super::caption_with_load(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Lost updates",
            &["placement", "threads", "expected per run", "lost (mean)", "lost (min–max)", "racy finals / increments"],
        );
        for r in &self.rows {
            let l = &r.lost_percent;
            t.row(vec![
                r.placement.to_string(),
                r.threads.to_string(),
                group(r.expected),
                format!("{} %", fmt_num(l.mean)),
                format!("{}–{} %", fmt_num(l.min), fmt_num(l.max)),
                r.racy_finals
                    .iter()
                    .map(|&v| format!("{:.2}", v as f64 / self.params.increments as f64))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
        t.note(format!(
            "{} increments per thread; a final of 1.00 means one thread's worth survived. {}: {}.",
            group(self.params.increments),
            self.build.name(),
            self.build.loop_code()
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_loses_nothing_and_atomics_never_lose() {
        let p = RacyCounter { threads: vec![1, 2], increments: 200_000, runs: 2, ..Default::default() };
        // SAFETY: see racy_counter; with one thread there is no race at all.
        let r = unsafe { racy_counter(&p) }.unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in r.rows.iter().filter(|x| x.threads == 1) {
            assert_eq!(row.racy_finals, vec![200_000, 200_000]);
            assert_eq!(row.lost_percent.max, 0.0);
        }
        assert!(r.rows.iter().all(|x| x.atomic_lossy_runs == 0));
        let f = r.findings();
        assert!(f[0].text.contains("build"), "{f:?}");
        assert!(f.iter().any(|x| x.text.contains("AtomicU64")), "{f:?}");
        assert!(f.last().unwrap().text.to_lowercase().contains("machine"), "{f:?}");
        assert!(unsafe { racy_counter(&RacyCounter { threads: vec![0], ..Default::default() }) }.is_err());
        assert!(unsafe { racy_counter(&RacyCounter { runs: 0, ..Default::default() }) }.is_err());
        assert!(unsafe { racy_counter(&RacyCounter { placements: vec![], ..Default::default() }) }.is_err());
    }

    #[test]
    fn this_test_build_has_overflow_checks() {
        // `cargo test` uses the dev profile: overflow checks on.
        assert_eq!(Build::current().overflow_checks, cfg!(debug_assertions));
    }

    #[test]
    fn whole_thread_losses_are_recognised() {
        assert_eq!(whole_threads(1_000_000, 1_000_000), Some(1));
        assert_eq!(whole_threads(2_010_000, 1_000_000), Some(2));
        assert_eq!(whole_threads(500_000, 1_000_000), None);
        assert_eq!(whole_threads(5_000, 1_000_000), None);
    }
}
