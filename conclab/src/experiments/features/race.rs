//! Data races: what safe Rust refuses to compile, run anyway through `unsafe`, to count
//! the updates a racy counter really loses.

use crate::lab::{Figure, ParamError, Point, Report, Series, Style, Table, check_list, check_range, fmt_num};
use serde::{Deserialize, Serialize};
use std::cell::UnsafeCell;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};

/// Parameters of [`racy_counter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RacyCounter {
    /// Thread counts: each 1..=64, at most 12 counts.
    pub threads: Vec<usize>,
    /// Increments each thread makes: 1_000..=10_000_000.
    pub increments: u64,
}

impl Default for RacyCounter {
    fn default() -> Self {
        RacyCounter {
            threads: crate::experiments::intro::scaling::default_threads(crate::lab::cores()),
            increments: 1_000_000,
        }
    }
}

/// One thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaceRow {
    pub threads: usize,
    pub expected: u64,
    /// Final value of the unsynchronised counter.
    pub racy: u64,
    /// Final value of an `AtomicU64` incremented the same way with `fetch_add`.
    pub atomic: u64,
}

impl RaceRow {
    /// Share of increments the racy counter lost, in percent.
    pub fn lost_percent(&self) -> f64 {
        100.0 * (self.expected - self.racy.min(self.expected)) as f64 / self.expected as f64
    }
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
pub unsafe fn racy_counter(p: &RacyCounter) -> Result<RaceReport, ParamError> {
    check_list("threads", &p.threads, 12, 1..=64)?;
    check_range("increments", p.increments, 1_000..=10_000_000)?;
    let mut rows = Vec::new();
    for &t in &p.threads {
        let racy = Racy(UnsafeCell::new(0));
        let atomic = AtomicU64::new(0);
        // Two phases, each started from a barrier so the threads really overlap.
        let start = Barrier::new(t);
        std::thread::scope(|s| {
            for _ in 0..t {
                let (racy, start) = (&racy, &start);
                s.spawn(move || {
                    let ptr = racy.0.get();
                    start.wait();
                    for _ in 0..p.increments {
                        // SAFETY: not safe — the deliberate data race (see the type's note).
                        unsafe { ptr.write_volatile(ptr.read_volatile() + 1) };
                    }
                });
            }
        });
        std::thread::scope(|s| {
            for _ in 0..t {
                let (atomic, start) = (&atomic, &start);
                s.spawn(move || {
                    start.wait();
                    for _ in 0..p.increments {
                        atomic.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        rows.push(RaceRow {
            threads: t,
            expected: t as u64 * p.increments,
            racy: racy.0.into_inner(),
            atomic: atomic.into_inner(),
        });
    }
    Ok(RaceReport { params: p.clone(), rows })
}

impl Report for RaceReport {
    fn figures(&self) -> Vec<Figure> {
        let racy = self.rows.iter().map(|r| Point::new(r.threads as f64, r.lost_percent())).collect();
        let atomic = self
            .rows
            .iter()
            .map(|r| Point::new(r.threads as f64, 100.0 * (r.expected - r.atomic) as f64 / r.expected as f64))
            .collect();
        vec![
            Figure::lines(
                "A racy counter loses updates as soon as two threads share it",
                "threads",
                "increments lost (%)",
            )
            .series(Series::new("unsynchronised load + store (unsafe)", Style::Measured, racy))
            .series(Series::new("AtomicU64::fetch_add", Style::Measured, atomic))
            .note("One run per thread count: a race is not a measurement with a stable median."),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Lost updates", &["threads", "expected", "racy counter", "lost", "atomic counter"]);
        for r in &self.rows {
            t.row(vec![
                r.threads.to_string(),
                r.expected.to_string(),
                r.racy.to_string(),
                format!("{}%", fmt_num(r.lost_percent())),
                r.atomic.to_string(),
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
        let r = unsafe { racy_counter(&RacyCounter { threads: vec![1, 2], increments: 200_000 }) }.unwrap();
        assert_eq!(r.rows[0].racy, r.rows[0].expected);
        assert!(r.rows.iter().all(|x| x.atomic == x.expected));
        assert!(unsafe { racy_counter(&RacyCounter { threads: vec![0], increments: 1000 }) }.is_err());
    }
}
