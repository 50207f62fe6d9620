//! Interior mutability: what each way of mutating through a shared reference costs on
//! one thread, and what `RefCell` does when its rules are broken.

use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, Sampling, Stats, Table, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// Parameters of [`interior_costs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InteriorCosts {
    /// Increments per sample: 1_000..=100_000_000.
    pub ops: u64,
    /// Timed samples per kind (after one warm-up): 1..=51.
    pub samples: usize,
}

impl Default for InteriorCosts {
    fn default() -> Self {
        InteriorCosts { ops: 2_000_000, samples: 5 }
    }
}

/// Cost of one increment through one kind of cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InteriorRow {
    pub kind: &'static str,
    /// Thread-safe (`Sync`), so it can be shared between threads.
    pub thread_safe: bool,
    /// Nanoseconds per increment over the samples.
    pub nanos: Stats,
}

/// Result of [`interior_costs`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InteriorReport {
    pub params: InteriorCosts,
    pub rows: Vec<InteriorRow>,
    /// How busy the machine was while this ran (one thread measures, so a busy machine
    /// mostly widens the spread).
    pub load: Load,
}

impl InteriorCosts {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("ops", self.ops, 1_000..=100_000_000)?;
        check_range("samples", self.samples, 1..=51)?;
        Ok(())
    }
}

/// Increments a counter `ops` times through a shared reference to each kind of
/// interior-mutable cell, on one thread (no contention), and reports nanoseconds per
/// increment: `Cell`, `RefCell`, atomics with `Relaxed` and `SeqCst`, `std::sync::Mutex`,
/// `parking_lot::Mutex` and `RwLock` (write lock). The thread-safe kinds pay for atomic
/// read-modify-write instructions even when no other thread exists.
pub fn interior_costs(p: &InteriorCosts) -> Result<InteriorReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let s = Sampling { warmup: 1, samples: p.samples };
    let n = p.ops;
    let per_op = |st: Stats| st.scaled(1e9 / n as f64);
    let mut rows = Vec::new();
    let mut add = |kind, thread_safe, st| rows.push(InteriorRow { kind, thread_safe, nanos: per_op(st) });

    let cell = Cell::new(0u64);
    // black_box(&cell): the cell's address escapes, so it must live in memory and every
    // increment is a real load and store, as with the other kinds.
    add("Cell", false, s.time(|| bump(n, || black_box(&cell).set(cell.get() + 1))));
    let refcell = RefCell::new(0u64);
    add("RefCell", false, s.time(|| bump(n, || *black_box(&refcell).borrow_mut() += 1)));
    let atomic = AtomicU64::new(0);
    add(
        "atomic Relaxed",
        true,
        s.time(|| {
            bump(n, || {
                atomic.fetch_add(1, Ordering::Relaxed);
            })
        }),
    );
    add(
        "atomic SeqCst",
        true,
        s.time(|| {
            bump(n, || {
                atomic.fetch_add(1, Ordering::SeqCst);
            })
        }),
    );
    let mutex = Mutex::new(0u64);
    add("Mutex", true, s.time(|| bump(n, || *mutex.lock().unwrap_or_else(|e| e.into_inner()) += 1)));
    let pl = parking_lot::Mutex::new(0u64);
    add("parking_lot", true, s.time(|| bump(n, || *pl.lock() += 1)));
    let rw = RwLock::new(0u64);
    add("RwLock write", true, s.time(|| bump(n, || *rw.write().unwrap_or_else(|e| e.into_inner()) += 1)));
    black_box((cell.get(), refcell.borrow().to_owned(), atomic.load(Ordering::Relaxed)));
    Ok(InteriorReport { params: p.clone(), rows, load: probe.finish() })
}

#[inline(always)]
fn bump(n: u64, mut f: impl FnMut()) {
    for _ in 0..n {
        f();
        // Keep the compiler from merging increments into one add.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

/// What `RefCell` says when a second mutable borrow is attempted while one is alive:
/// `borrow_mut` would panic; `try_borrow_mut` returns the same error as a value.
pub fn refcell_conflict() -> String {
    let c = RefCell::new(vec![1, 2, 3]);
    let first = c.borrow_mut();
    let second = c.try_borrow_mut();
    let msg = match &second {
        Ok(_) => "second borrow_mut succeeded (impossible)".to_string(),
        Err(e) => format!("second borrow_mut while the first is alive: Err({e})"),
    };
    drop(second);
    drop(first);
    let third = c.try_borrow_mut().map(|_| "Ok").unwrap_or("Err");
    format!("{msg}; after the first borrow ends: {third}")
}

impl InteriorReport {
    fn nanos(&self, kind: &str) -> Option<&Stats> {
        self.rows.iter().find(|r| r.kind == kind).map(|r| &r.nanos)
    }
}

impl Report for InteriorReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut pair = |a: &str, b: &str| {
            if let (Some(x), Some(y)) = (self.nanos(a), self.nanos(b)) {
                out.push(super::compare_medians(a, x, b, y, " ns"));
            }
        };
        pair("Mutex", "Cell");
        pair("atomic Relaxed", "Cell");
        pair("atomic SeqCst", "atomic Relaxed");
        pair("parking_lot", "Mutex");
        // The cheapest way that may be shared between threads.
        if let Some(r) =
            self.rows.iter().filter(|r| r.thread_safe).min_by(|a, b| a.nanos.median.total_cmp(&b.nanos.median))
        {
            out.push(Finding::note(format!(
                "The cheapest thread-safe kind here was {} ({} ns per increment, one thread, no contention)",
                r.kind,
                fmt_num(r.nanos.median)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::bars(
            "Is thread safety free when only one thread runs?",
            "kind of interior mutability (one thread, no contention)",
            "ns per increment (median, p25–p75)",
        );
        for r in &self.rows {
            let series = if r.thread_safe { "thread-safe (Sync)" } else { "single-thread only" };
            f = f.bar(r.kind, series, r.nanos.median, Some((r.nanos.p25, r.nanos.p75)));
        }
        vec![super::caption_with_load(f.size(860, 440), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Interior mutability, uncontended", &["kind", "Sync?", "ns / increment", "p25–p75"]);
        for r in &self.rows {
            t.row(vec![
                r.kind.into(),
                if r.thread_safe { "yes" } else { "no" }.into(),
                fmt_num(r.nanos.median),
                r.nanos.quartile_range(),
            ]);
        }
        t.note(format!("{} increments per sample, {} samples, one thread.", self.params.ops, self.params.samples));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_measured_and_validated() {
        assert!(interior_costs(&InteriorCosts { ops: 1, samples: 1 }).is_err());
        assert!(interior_costs(&InteriorCosts { ops: 1_000_000_000, samples: 1 }).is_err());
        let r = interior_costs(&InteriorCosts { ops: 10_000, samples: 2 }).unwrap();
        assert_eq!(r.rows.len(), 7);
        assert!(r.rows.iter().all(|x| x.nanos.median > 0.0));
        assert_eq!(r.rows.iter().filter(|x| !x.thread_safe).count(), 2);
        let f = r.findings();
        assert!(f[0].text.starts_with("Mutex"), "{f:?}");
        assert!(f.iter().any(|x| x.text.contains("cheapest thread-safe")), "{f:?}");
    }

    #[test]
    fn refcell_refuses_a_second_mutable_borrow() {
        let s = refcell_conflict();
        assert!(s.contains("Err(") && s.ends_with("Ok"), "{s}");
    }
}
