//! What a memory ordering costs: a shared counter's `fetch_add` and a thread's own
//! `store`, with each ordering, from one thread to more threads than cores.

use crate::lab::budget::{Progress, check_estimate, timed_runs};
use crate::lab::findings::compare;
use crate::lab::machine::default_threads;
use crate::lab::together::batched;
use crate::lab::together::run_for;
use crate::lab::together::threads_error;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, Series, Stats, Style, Table, check_choices,
    check_list, check_range, cores, fmt_num,
};
use crossbeam::utils::CachePadded;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Parameters of [`orderings`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Orderings {
    /// Thread counts, each 1..=256, at most 16 of them.
    pub threads: Vec<usize>,
    /// Orderings, any of [`MemoryOrdering`]: "relaxed", "release", "seq_cst".
    pub orderings: Vec<MemoryOrdering>,
    /// How long each sample runs, in milliseconds: 5..=2000.
    pub duration_ms: u64,
    /// Samples per point: 1..=51.
    pub samples: usize,
}

impl Default for Orderings {
    fn default() -> Self {
        Orderings {
            threads: default_threads(cores()),
            orderings: MemoryOrdering::ALL.to_vec(),
            duration_ms: 25,
            samples: 5,
        }
    }
}

crate::choices! {
    /// The orderings [`orderings`] knows.
    pub enum MemoryOrdering {
        /// `Relaxed` read-modify-writes and stores.
        Relaxed = "relaxed",
        /// `AcqRel` read-modify-writes, `Release` stores.
        Release = "release",
        /// `SeqCst` read-modify-writes and stores.
        SeqCst = "seq_cst",
    }
}
/// The two operations measured.
pub const OPS: [&str; 2] = ["shared fetch_add", "own store"];

impl Orderings {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=256)?;
        check_choices("orderings", &self.orderings)?;
        check_range("duration_ms", self.duration_ms, 5..=2000)?;
        check_range("samples", self.samples, 1..=51)?;
        let runs = self.threads.len() * self.orderings.len() * 2 * self.samples;
        check_estimate("threads × orderings × samples × duration_ms", timed_runs(runs, self.duration_ms))
    }
}

/// The ordering used for a read-modify-write and for a store.
fn rmw_and_store(o: MemoryOrdering) -> (Ordering, Ordering) {
    match o {
        MemoryOrdering::Relaxed => (Ordering::Relaxed, Ordering::Relaxed),
        MemoryOrdering::Release => (Ordering::AcqRel, Ordering::Release),
        MemoryOrdering::SeqCst => (Ordering::SeqCst, Ordering::SeqCst),
    }
}

const RELAXED: u8 = 0;
const RELEASE: u8 = 1;
const SEQ_CST: u8 = 2;

/// The orderings for a constant `K`: a compile-time choice, so each loop has one
/// instruction sequence (an ordering only known at run time compiles to a `match`).
const fn ordering_pair(k: u8) -> (Ordering, Ordering) {
    match k {
        RELAXED => (Ordering::Relaxed, Ordering::Relaxed),
        RELEASE => (Ordering::AcqRel, Ordering::Release),
        _ => (Ordering::SeqCst, Ordering::SeqCst),
    }
}

fn shared_fetch_add<const K: u8>(t: usize, d: Duration) -> Result<crate::lab::together::Run, String> {
    let c = AtomicU64::new(0);
    run_for(t, d, |_, stop| {
        batched(stop, || {
            c.fetch_add(1, const { ordering_pair(K).0 });
        })
    })
}

fn own_store<const K: u8>(t: usize, d: Duration) -> Result<crate::lab::together::Run, String> {
    let slots: Vec<CachePadded<AtomicU64>> = (0..t).map(|_| CachePadded::new(AtomicU64::new(0))).collect();
    run_for(t, d, |i, stop| {
        let s = &slots[i];
        let mut v = 0u64;
        batched(stop, || {
            v += 1;
            s.store(v, const { ordering_pair(K).1 });
        })
    })
}

/// How an operation with an ordering is named in figures, e.g. `fetch_add(AcqRel)`.
pub fn op_label(op: &str, ordering: MemoryOrdering) -> String {
    let (rmw, store) = rmw_and_store(ordering);
    if op == OPS[0] { format!("fetch_add({rmw:?})") } else { format!("store({store:?})") }
}

/// One operation with one ordering at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderingRow {
    pub op: String,
    pub ordering: MemoryOrdering,
    pub threads: usize,
    /// Operations per second, millions, all threads together.
    pub mops: Stats,
}

/// Result of [`orderings`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderingsReport {
    pub params: Orderings,
    pub cores: usize,
    pub rows: Vec<OrderingRow>,
    pub load: Load,
}

/// Measures two things per ordering: every thread doing `fetch_add(1)` on one shared
/// counter (contended: the cache line moves between CPUs), and every thread storing
/// into its own cache-padded slot (uncontended: only the ordering's own cost remains).
/// On x86 every read-modify-write is a locked instruction whatever the ordering, and
/// only a `SeqCst` store needs more than a plain move (an `xchg`); ARM differs.
pub fn orderings(p: &Orderings) -> Result<OrderingsReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("orderings", OPS.len() * p.orderings.len() * p.threads.len());
    let d = Duration::from_millis(p.duration_ms);
    let mut rows = Vec::new();
    for op in OPS {
        for ordering in MemoryOrdering::ALL.iter().copied().filter(|o| p.orderings.contains(o)) {
            for &t in &p.threads {
                let mut mops = Vec::new();
                for _ in 0..p.samples {
                    let run = match (op == OPS[0], ordering) {
                        (true, MemoryOrdering::Relaxed) => shared_fetch_add::<RELAXED>(t, d),
                        (true, MemoryOrdering::Release) => shared_fetch_add::<RELEASE>(t, d),
                        (true, MemoryOrdering::SeqCst) => shared_fetch_add::<SEQ_CST>(t, d),
                        (false, MemoryOrdering::Relaxed) => own_store::<RELAXED>(t, d),
                        (false, MemoryOrdering::Release) => own_store::<RELEASE>(t, d),
                        (false, MemoryOrdering::SeqCst) => own_store::<SEQ_CST>(t, d),
                    }
                    .map_err(threads_error(t))?;
                    mops.push(run.mops());
                }
                rows.push(OrderingRow { op: op.into(), ordering, threads: t, mops: Stats::of(&mops) });
                progress.step()?;
            }
        }
    }
    Ok(OrderingsReport { params: p.clone(), cores: cores(), rows, load: probe.finish() })
}

impl OrderingsReport {
    /// Median Mops/s of `op` with `ordering` at `threads`.
    pub fn median(&self, op: &str, ordering: MemoryOrdering, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.op == op && r.ordering == ordering && r.threads == threads).map(|r| r.mops.median)
    }

    fn row(&self, op: &str, ordering: MemoryOrdering, threads: usize) -> Option<&OrderingRow> {
        self.rows.iter().find(|r| r.op == op && r.ordering == ordering && r.threads == threads)
    }

    fn figure_for(&self, op: &str, title: &str) -> Figure {
        let mut f = Figure::lines(title, "threads", &format!("{op}, Mops/s, all threads (median, p25–p75)"));
        for &name in MemoryOrdering::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.op == op && r.ordering == name)
                .map(|r| Point::quartiles(r.threads as f64, &r.mops))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(op_label(op, name), Style::Measured, pts));
            }
        }
        f
    }
}

impl Report for OrderingsReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let lo = self.params.threads.iter().copied().min().unwrap_or(1);
        let (weak, strong) = (MemoryOrdering::Relaxed, MemoryOrdering::SeqCst);
        for op in OPS {
            if let (Some(a), Some(b)) = (self.row(op, strong, lo), self.row(op, weak, lo)) {
                let mut f = compare(
                    &format!("{} on {lo} thread{}", op_label(op, strong), if lo == 1 { "" } else { "s" }),
                    &a.mops,
                    &op_label(op, weak),
                    &b.mops,
                    " Mops/s",
                );
                // On x86-64 every fetch_add is the same `lock xadd` whatever the ordering:
                // a gap between two of them is the measurement, not the ordering.
                if cfg!(target_arch = "x86_64") && op == OPS[0] && !f.text.contains("about equal") {
                    f = Finding::note(format!(
                        "{} — yet on x86-64 both are the same `lock xadd` instruction, so this gap is noise \
                         (a busy machine, a clock change between the two runs), not the ordering",
                        f.text
                    ));
                }
                out.push(f);
            }
        }
        // Sharing: the shared counter's total at the largest count with a CPU per thread.
        let at_cores = self.params.threads.iter().copied().filter(|&t| t > 1 && t <= self.cores).max();
        let o = [weak, MemoryOrdering::Release, strong].into_iter().find(|o| self.params.orderings.contains(o));
        if let (Some(t), Some(o)) = (at_cores, o)
            && let (Some(a), Some(b)) = (self.row(OPS[0], o, t), self.row(OPS[0], o, 1))
        {
            out.push(compare(
                &format!("{} shared by {t} threads (all together)", op_label(OPS[0], o)),
                &a.mops,
                "1 thread alone",
                &b.mops,
                " Mops/s",
            ));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        vec![
            super::mark_busy(
                self.figure_for(OPS[0], "One shared counter: does the ordering matter, or the sharing?")
                    .legend(crate::lab::Legend::UpperRight),
                &self.load,
            ),
            self.figure_for(OPS[1], "Stores to a thread's own slot: what does SeqCst add?")
                .log_y()
                .legend(crate::lab::Legend::LowerRight),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Atomic operations by ordering", &["operation", "threads", "median Mops/s", "p25–p75"]);
        for r in &self.rows {
            t.row(vec![
                op_label(&r.op, r.ordering),
                r.threads.to_string(),
                fmt_num(r.mops.median),
                r.mops.quartile_range(),
            ]);
        }
        t.note(format!(
            "{} ms per sample, {} samples; fetch_add on one counter shared by all threads, stores into one \
             cache-padded slot per thread.",
            self.params.duration_ms, self.params.samples
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        let e = crate::lab::params_from_pairs::<Orderings>("orderings", &[("orderings".into(), "acquire".into())])
            .unwrap_err();
        assert!(e.to_string().contains("relaxed, release, seq_cst"), "{e}");
        assert!(orderings(&Orderings { orderings: vec![], ..Default::default() }).is_err());
        assert!(orderings(&Orderings { threads: vec![], ..Default::default() }).is_err());
        assert!(orderings(&Orderings { duration_ms: 9999, ..Default::default() }).is_err());
    }

    #[test]
    fn labels_name_the_real_orderings() {
        assert_eq!(op_label(OPS[0], MemoryOrdering::Release), "fetch_add(AcqRel)");
        assert_eq!(op_label(OPS[1], MemoryOrdering::Release), "store(Release)");
        assert_eq!(op_label(OPS[1], MemoryOrdering::SeqCst), "store(SeqCst)");
    }

    #[test]
    fn measures_both_operations() {
        let r =
            orderings(&Orderings { threads: vec![1, 2], duration_ms: 5, samples: 1, ..Default::default() }).unwrap();
        assert_eq!(r.rows.len(), 2 * 3 * 2);
        assert!(r.median(OPS[1], MemoryOrdering::SeqCst, 2).unwrap() > 0.0);
        assert_eq!(r.figures().len(), 2);
    }
}
