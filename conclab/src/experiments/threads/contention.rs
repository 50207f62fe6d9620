//! Locks under contention: threads increment one counter behind a hand-built spin lock,
//! `std::sync::Mutex` and `parking_lot::Mutex`, from one thread to more threads than cores.

use crate::lab::budget::{Progress, check_estimate, timed_runs};
use crate::lab::findings::compare;
use crate::lab::machine::default_threads;
use crate::lab::together::batched;
use crate::lab::together::run_for;
use crate::lab::together::threads_error;
use crate::lab::work::busy;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, Series, Stats, Style, Table, check_choices,
    check_list, check_range, cores, fmt_num,
};
use crate::primitives::SpinLock;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A counter behind one of the compared locks.
trait CounterLock: Sync {
    /// Locks, runs `f` on the counter, unlocks.
    fn with(&self, f: impl FnOnce(&mut u64));
    fn into_count(self) -> u64;
}

impl CounterLock for SpinLock<u64> {
    fn with(&self, f: impl FnOnce(&mut u64)) {
        f(&mut self.lock())
    }
    fn into_count(self) -> u64 {
        self.into_inner()
    }
}

impl CounterLock for std::sync::Mutex<u64> {
    fn with(&self, f: impl FnOnce(&mut u64)) {
        f(&mut self.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn into_count(self) -> u64 {
        self.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl CounterLock for parking_lot::Mutex<u64> {
    fn with(&self, f: impl FnOnce(&mut u64)) {
        f(&mut self.lock())
    }
    fn into_count(self) -> u64 {
        self.into_inner()
    }
}

/// `t` threads increment the counter behind `lock` for `d`, doing `inside` iterations of
/// work while holding it and `outside` between two critical sections; returns the run
/// and the final count.
fn hammer<L: CounterLock>(
    lock: L,
    t: usize,
    d: Duration,
    inside: u64,
    outside: u64,
) -> (Result<crate::lab::together::Run, String>, u64) {
    let run = run_for(t, d, |_, stop| {
        batched(stop, || {
            lock.with(|g| {
                *g += 1;
                if inside > 0 {
                    busy(inside, *g);
                }
            });
            if outside > 0 {
                busy(outside, 1);
            }
        })
    });
    (run, lock.into_count())
}

/// Parameters of [`lock_contention`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockContention {
    /// Thread counts, each 1..=256, at most 16 of them.
    pub threads: Vec<usize>,
    /// Locks to compare, any of [`LockKind`]: "spin", "std", "parking_lot".
    pub locks: Vec<LockKind>,
    /// How long each sample runs, in milliseconds: 5..=2000.
    pub duration_ms: u64,
    /// Samples per lock and thread count: 1..=51.
    pub samples: usize,
    /// Extra work inside the critical section, in `busy` iterations (~1 ns each): 0..=100_000.
    pub work_inside: u64,
    /// Work between two critical sections, in `busy` iterations: 0..=100_000.
    pub work_outside: u64,
}

impl Default for LockContention {
    fn default() -> Self {
        LockContention {
            threads: default_threads(cores()),
            locks: LockKind::ALL.to_vec(),
            duration_ms: 40,
            samples: 5,
            work_inside: 0,
            work_outside: 0,
        }
    }
}

crate::choices! {
    /// The locks [`lock_contention`] knows, in drawing order.
    pub enum LockKind {
        /// The hand-built `conclab::primitives::SpinLock`.
        Spin = "spin",
        /// `std::sync::Mutex`.
        Std = "std",
        /// `parking_lot::Mutex`.
        ParkingLot = "parking_lot",
    }
}

impl LockContention {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=256)?;
        check_choices("locks", &self.locks)?;
        check_range("duration_ms", self.duration_ms, 5..=2000)?;
        check_range("samples", self.samples, 1..=51)?;
        check_range("work_inside", self.work_inside, 0..=100_000)?;
        check_range("work_outside", self.work_outside, 0..=100_000)?;
        let runs = self.threads.len() * self.locks.len() * self.samples;
        check_estimate("threads × locks × samples × duration_ms", timed_runs(runs, self.duration_ms))
    }
}

/// One lock at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentionRow {
    pub lock: LockKind,
    pub threads: usize,
    /// Lock + increment + unlock, millions per second, all threads together.
    pub mops: Stats,
    /// Fewest increments of one thread / most (median over samples): 1 = even, 0 = starved.
    pub fairness: f64,
    /// Context switches per thread per second (all samples): voluntary ones mean threads
    /// went to sleep waiting; involuntary ones that the scheduler preempted them.
    pub voluntary_per_s: f64,
    pub involuntary_per_s: f64,
    /// Whether the counter ended equal to the increments the threads counted (it must).
    pub exact: bool,
}

/// Result of [`lock_contention`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockContentionReport {
    pub params: LockContention,
    pub cores: usize,
    pub rows: Vec<ContentionRow>,
    pub load: Load,
}

/// Every thread repeatedly locks, increments a shared `u64` (plus `work_inside`), unlocks
/// (and does `work_outside`) for `duration_ms`; reported as total increments per second,
/// with how evenly the threads shared the lock and how often they were switched out.
/// The counter is checked against the threads' own counts afterwards.
pub fn lock_contention(p: &LockContention) -> Result<LockContentionReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("contention", p.locks.len() * p.threads.len());
    let d = Duration::from_millis(p.duration_ms);
    let (inside, outside) = (p.work_inside, p.work_outside);
    let mut rows = Vec::new();
    for lock in LockKind::ALL.iter().copied().filter(|l| p.locks.contains(l)) {
        for &t in &p.threads {
            let mut mops = Vec::new();
            let mut fair = Vec::new();
            let (mut vol, mut invol, mut secs) = (0u64, 0u64, 0.0);
            let mut exact = true;
            for _ in 0..p.samples {
                let (run, total) = match lock {
                    LockKind::Spin => hammer(SpinLock::new(0u64), t, d, inside, outside),
                    LockKind::Std => hammer(std::sync::Mutex::new(0u64), t, d, inside, outside),
                    LockKind::ParkingLot => hammer(parking_lot::Mutex::new(0u64), t, d, inside, outside),
                };
                let run = run.map_err(threads_error(t))?;
                exact &= run.ops.iter().sum::<u64>() == total;
                mops.push(run.mops());
                fair.push(run.fairness());
                vol += run.switches.voluntary;
                invol += run.switches.involuntary;
                secs += run.thread_seconds();
            }
            let secs = secs.max(1e-9);
            rows.push(ContentionRow {
                lock,
                threads: t,
                mops: Stats::of(&mops),
                fairness: Stats::of(&fair).median,
                voluntary_per_s: vol as f64 / secs,
                involuntary_per_s: invol as f64 / secs,
                exact,
            });
            progress.step()?;
        }
    }
    Ok(LockContentionReport { params: p.clone(), cores: cores(), rows, load: probe.finish() })
}

/// How a lock is named in figures and tables.
pub fn lock_label(lock: LockKind) -> &'static str {
    match lock {
        LockKind::Spin => "SpinLock (hand-built)",
        LockKind::Std => "std::sync::Mutex",
        LockKind::ParkingLot => "parking_lot::Mutex",
    }
}

impl LockContentionReport {
    /// Median Mops/s of `lock` at `threads`.
    pub fn median(&self, lock: LockKind, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.lock == lock && r.threads == threads).map(|r| r.mops.median)
    }

    fn row(&self, lock: LockKind, threads: usize) -> Option<&ContentionRow> {
        self.rows.iter().find(|r| r.lock == lock && r.threads == threads)
    }

    /// The fastest and slowest lock at `threads` (by median).
    fn extremes(&self, threads: usize) -> Option<(&ContentionRow, &ContentionRow)> {
        let at: Vec<&ContentionRow> = self.rows.iter().filter(|r| r.threads == threads).collect();
        let best = at.iter().copied().max_by(|a, b| a.mops.median.total_cmp(&b.mops.median))?;
        let worst = at.iter().copied().min_by(|a, b| a.mops.median.total_cmp(&b.mops.median))?;
        Some((best, worst))
    }
}

impl Report for LockContentionReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut counts = self.params.threads.clone();
        counts.sort_unstable();
        let lo = counts[0];
        let at_cores = counts.iter().copied().filter(|&t| t > 1 && t <= self.cores).max();
        let hi = *counts.last().unwrap_or(&1);
        let mut points = vec![lo];
        points.extend(at_cores);
        if hi > self.cores {
            points.push(hi);
        }
        points.dedup();
        for t in points {
            if let Some((best, worst)) = self.extremes(t)
                && best.lock != worst.lock
            {
                out.push(compare(
                    &format!("{t} thread{}: fastest {}", if t == 1 { "" } else { "s" }, lock_label(best.lock)),
                    &best.mops,
                    &format!("slowest {}", lock_label(worst.lock)),
                    &worst.mops,
                    " Mops/s",
                ));
            }
        }
        if hi > self.cores
            && let Some(r) = self.row(LockKind::Spin, hi)
        {
            out.push(Finding::note(format!(
                "At {hi} threads the spin lock's fairness (fewest ÷ most increments of a thread) was {:.2}, with {} \
                 involuntary switches per thread per second",
                r.fairness,
                fmt_num(r.involuntary_per_s)
            )));
        }
        if self.rows.iter().any(|r| !r.exact) {
            out.push(Finding::clear("A counter did NOT match the increments counted: a lock let two threads in"));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            &format!("Which lock holds up under contention, and past {} cores?", self.cores),
            "threads",
            "lock+increment+unlock, Mops/s (median, p25–p75)",
        )
        .log_y();
        for &lock in LockKind::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.lock == lock)
                .map(|r| Point::quartiles(r.threads as f64, &r.mops))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(lock_label(lock), Style::Measured, pts));
            }
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::LowerLeft), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Lock contention",
            &[
                "lock",
                "threads",
                "median Mops/s",
                "p25–p75",
                "fairness (min/max)",
                "voluntary sw/s per thread",
                "involuntary sw/s per thread",
                "count exact",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                lock_label(r.lock).into(),
                r.threads.to_string(),
                fmt_num(r.mops.median),
                r.mops.quartile_range(),
                format!("{:.2}", r.fairness),
                fmt_num(r.voluntary_per_s),
                fmt_num(r.involuntary_per_s),
                if r.exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!(
            "{} ms per sample, {} samples; work inside / outside the lock: {} / {} busy iterations.",
            self.params.duration_ms, self.params.samples, self.params.work_inside, self.params.work_outside
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        for p in [
            LockContention { threads: vec![0], ..Default::default() },
            LockContention { threads: vec![], ..Default::default() },
            LockContention { locks: vec![LockKind::Std, LockKind::Std], ..Default::default() },
            LockContention { duration_ms: 0, ..Default::default() },
            LockContention { samples: 0, ..Default::default() },
            LockContention { work_inside: 1 << 40, ..Default::default() },
        ] {
            assert!(lock_contention(&p).is_err(), "{p:?}");
        }
        let e = lock_contention(&LockContention { threads: vec![999], ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "threads must be a list of 1..=16 distinct values, each in 1..=256, got [999]");
    }

    #[test]
    fn unknown_lock_names_the_choices() {
        let e = crate::lab::params_from_pairs::<LockContention>("lock-contention", &[("locks".into(), "futex".into())])
            .unwrap_err();
        assert!(e.to_string().contains("spin, std, parking_lot"), "{e}");
    }

    #[test]
    fn every_lock_counts_exactly() {
        let p =
            LockContention { threads: vec![1, 3], duration_ms: 10, samples: 2, work_inside: 10, ..Default::default() };
        let r = lock_contention(&p).unwrap();
        assert_eq!(r.rows.len(), 6);
        for row in &r.rows {
            assert!(row.exact, "{row:?}");
            assert!(row.mops.median > 0.0);
            assert!((0.0..=1.0).contains(&row.fairness));
        }
        assert!(r.median(LockKind::Std, 3).is_some());
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.table().rows.len(), 6);
    }
}
