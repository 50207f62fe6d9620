//! Data races: what safe Rust refuses to compile, run anyway through `unsafe`, to count
//! the updates a racy counter really loses.

use crate::lab::together::run_together;
use crate::lab::{
    Figure, LabError, Point, Report, RunError, Series, Stats, Style, Table, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Parameters of [`racy_counter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RacyCounter {
    /// Thread counts: each 1..=64, at most 12 counts.
    pub threads: Vec<usize>,
    /// Increments each thread makes per run: 1_000..=10_000_000.
    pub increments: u64,
    /// Runs per thread count (a race gives a different result every time): 1..=21.
    pub runs: usize,
}

impl Default for RacyCounter {
    fn default() -> Self {
        RacyCounter {
            threads: crate::lab::machine::default_threads_within(crate::lab::cores(), 64, 12),
            increments: 1_000_000,
            runs: 5,
        }
    }
}

/// One thread count over all runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaceRow {
    pub threads: usize,
    /// Increments made per run: threads × increments.
    pub expected: u64,
    /// Share of the increments the racy counter lost, in percent, over the runs.
    pub lost_percent: Stats,
    /// Final values of the racy counter, one per run.
    pub racy_finals: Vec<u64>,
    /// Whether the `AtomicU64`, incremented the same way, was exact in every run.
    pub atomic_exact: bool,
}

/// Result of [`racy_counter`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaceReport {
    pub params: RacyCounter,
    pub rows: Vec<RaceRow>,
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
/// plain load and store (`v = *p; *p = v + 1`, through volatile accesses so the compiler
/// keeps each one), and an `AtomicU64` with `fetch_add` for comparison; reports how many
/// increments the racy counter lost.
///
/// # Safety
/// There is no safe way to call this: it performs a data race on purpose, which is
/// undefined behaviour. On x86-64 and AArch64 the observable effect is lost updates;
/// the function exists to show them. Call it only to observe that.
pub unsafe fn racy_counter(p: &RacyCounter) -> Result<RaceReport, LabError> {
    check_list("threads", &p.threads, 12, 1..=64)?;
    check_range("increments", p.increments, 1_000..=10_000_000)?;
    check_range("runs", p.runs, 1..=21)?;
    let failed = |e| RunError::new("racy_counter", e);
    let mut rows = Vec::new();
    for &t in &p.threads {
        let expected = t as u64 * p.increments;
        let (mut finals, mut lost, mut atomic_exact) = (Vec::new(), Vec::new(), true);
        for _ in 0..p.runs {
            // Threads are created first and released together, so they really overlap.
            let racy = Racy(UnsafeCell::new(0));
            run_together(
                t,
                |_| Ok(()),
                |_| {
                    let ptr = racy.ptr();
                    for _ in 0..p.increments {
                        // SAFETY: not safe — the deliberate data race (see the type's note).
                        unsafe { ptr.write_volatile(ptr.read_volatile() + 1) };
                    }
                },
            )
            .map_err(failed)?;
            let atomic = AtomicU64::new(0);
            run_together(
                t,
                |_| Ok(()),
                |_| {
                    for _ in 0..p.increments {
                        atomic.fetch_add(1, Ordering::Relaxed);
                    }
                },
            )
            .map_err(failed)?;
            let v = racy.0.into_inner();
            finals.push(v);
            lost.push(100.0 * expected.saturating_sub(v) as f64 / expected as f64);
            atomic_exact &= atomic.into_inner() == expected;
        }
        rows.push(RaceRow {
            threads: t,
            expected,
            lost_percent: Stats::from_samples(&lost).expect("runs >= 1"),
            racy_finals: finals,
            atomic_exact,
        });
    }
    Ok(RaceReport { params: p.clone(), rows })
}

impl Report for RaceReport {
    fn figures(&self) -> Vec<Figure> {
        let racy = self
            .rows
            .iter()
            .map(|r| Point::spread(r.threads as f64, r.lost_percent.median, r.lost_percent.min, r.lost_percent.max))
            .collect();
        let atomic = self
            .rows
            .iter()
            .map(|r| Point::new(r.threads as f64, if r.atomic_exact { 0.0 } else { f64::NAN }))
            .collect();
        vec![
            Figure::lines(
                "Does an unsynchronised counter keep every increment?",
                "threads",
                "increments lost (%): median, min–max of the runs",
            )
            .legend(crate::lab::Legend::LowerRight)
            .series(Series::new("unsynchronised load + store (unsafe)", Style::Measured, racy))
            .series(Series::new("AtomicU64::fetch_add", Style::Measured, atomic))
            .note(format!(
                "{} runs per thread count; the band spans the smallest to the largest loss.",
                self.params.runs
            )),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Lost updates",
            &["threads", "expected per run", "lost (median)", "lost (min–max)", "racy finals", "atomic exact"],
        );
        for r in &self.rows {
            let l = &r.lost_percent;
            t.row(vec![
                r.threads.to_string(),
                r.expected.to_string(),
                format!("{}%", fmt_num(l.median)),
                format!("{}–{}%", fmt_num(l.min), fmt_num(l.max)),
                r.racy_finals.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                if r.atomic_exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_loses_nothing_and_atomics_never_lose() {
        // SAFETY: see racy_counter; with one thread there is no race at all.
        let r = unsafe { racy_counter(&RacyCounter { threads: vec![1, 2], increments: 200_000, runs: 2 }) }.unwrap();
        assert_eq!(r.rows[0].racy_finals, vec![200_000, 200_000]);
        assert_eq!(r.rows[0].lost_percent.max, 0.0);
        assert!(r.rows.iter().all(|x| x.atomic_exact));
        assert!(unsafe { racy_counter(&RacyCounter { threads: vec![0], ..Default::default() }) }.is_err());
        assert!(unsafe { racy_counter(&RacyCounter { runs: 0, ..Default::default() }) }.is_err());
    }
}
