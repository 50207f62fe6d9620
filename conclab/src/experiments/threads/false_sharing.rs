//! False sharing: threads that each increment their *own* counter still slow each other
//! down when the counters share a cache line.

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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Parameters of [`false_sharing`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FalseSharing {
    /// Thread counts, each 1..=256, at most 16 of them.
    pub threads: Vec<usize>,
    /// Memory layouts, any of [`CounterLayout`]: "shared", "adjacent", "padded".
    pub layouts: Vec<CounterLayout>,
    /// How long each sample runs, in milliseconds: 5..=2000.
    pub duration_ms: u64,
    /// Samples per layout and thread count: 1..=51.
    pub samples: usize,
}

impl Default for FalseSharing {
    fn default() -> Self {
        FalseSharing {
            threads: default_threads(cores()),
            layouts: CounterLayout::ALL.to_vec(),
            duration_ms: 40,
            samples: 5,
        }
    }
}

crate::choices! {
    /// The layouts [`false_sharing`] knows.
    pub enum CounterLayout {
        /// One counter for all threads.
        Shared = "shared",
        /// One counter per thread, packed next to each other (eight per cache line).
        Adjacent = "adjacent",
        /// One counter per thread, each in a `crossbeam::utils::CachePadded`.
        Padded = "padded",
    }
}

impl FalseSharing {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=256)?;
        check_choices("layouts", &self.layouts)?;
        check_range("duration_ms", self.duration_ms, 5..=2000)?;
        check_range("samples", self.samples, 1..=51)?;
        let runs = self.threads.len() * self.layouts.len() * self.samples;
        check_estimate("threads × layouts × samples × duration_ms", timed_runs(runs, self.duration_ms))
    }
}

/// One layout at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseSharingRow {
    pub layout: CounterLayout,
    pub threads: usize,
    /// Increments per second, millions, all threads together.
    pub mops: Stats,
    /// Bytes between the counters of neighbouring threads (0 for "shared").
    pub stride_bytes: usize,
}

/// Result of [`false_sharing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseSharingReport {
    pub params: FalseSharing,
    pub cores: usize,
    pub rows: Vec<FalseSharingRow>,
    pub load: Load,
}

/// Each thread increments a counter with `fetch_add(1, Relaxed)` for `duration_ms`: all
/// the same counter ("shared"), or its own — packed next to the others ("adjacent": eight
/// `AtomicU64` per 64-byte cache line) or padded to a line of its own ("padded"). The
/// instructions are the same in all three; only where the counters sit differs.
pub fn false_sharing(p: &FalseSharing) -> Result<FalseSharingReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("false-sharing", p.layouts.len() * p.threads.len());
    let d = Duration::from_millis(p.duration_ms);
    let mut rows = Vec::new();
    for layout in CounterLayout::ALL.iter().copied().filter(|l| p.layouts.contains(l)) {
        for &t in &p.threads {
            let mut mops = Vec::new();
            for _ in 0..p.samples {
                let run = match layout {
                    CounterLayout::Shared => {
                        let c = AtomicU64::new(0);
                        run_for(t, d, |_, stop| {
                            batched(stop, || {
                                c.fetch_add(1, Relaxed);
                            })
                        })
                    }
                    CounterLayout::Adjacent => {
                        let cs: Vec<AtomicU64> = (0..t).map(|_| AtomicU64::new(0)).collect();
                        run_for(t, d, |i, stop| {
                            let c = &cs[i];
                            batched(stop, || {
                                c.fetch_add(1, Relaxed);
                            })
                        })
                    }
                    CounterLayout::Padded => {
                        let cs: Vec<CachePadded<AtomicU64>> =
                            (0..t).map(|_| CachePadded::new(AtomicU64::new(0))).collect();
                        run_for(t, d, |i, stop| {
                            let c = &cs[i];
                            batched(stop, || {
                                c.fetch_add(1, Relaxed);
                            })
                        })
                    }
                }
                .map_err(threads_error(t))?;
                mops.push(run.mops());
            }
            let stride_bytes = match layout {
                CounterLayout::Shared => 0,
                CounterLayout::Adjacent => std::mem::size_of::<AtomicU64>(),
                CounterLayout::Padded => std::mem::size_of::<CachePadded<AtomicU64>>(),
            };
            rows.push(FalseSharingRow { layout, threads: t, mops: Stats::of(&mops), stride_bytes });
            progress.step()?;
        }
    }
    Ok(FalseSharingReport { params: p.clone(), cores: cores(), rows, load: probe.finish() })
}

/// How a layout is named in figures and tables.
pub fn layout_label(layout: CounterLayout) -> &'static str {
    match layout {
        CounterLayout::Shared => "one shared counter",
        CounterLayout::Adjacent => "own counters, adjacent (8 B apart)",
        CounterLayout::Padded => "own counters, CachePadded",
    }
}

/// The legend's shorter names (a narrow legend leaves the lines visible).
fn short_label(layout: CounterLayout) -> &'static str {
    match layout {
        CounterLayout::Shared => "one shared",
        CounterLayout::Adjacent => "own, adjacent",
        CounterLayout::Padded => "own, CachePadded",
    }
}

impl FalseSharingReport {
    /// Median Mops/s of `layout` at `threads`.
    pub fn median(&self, layout: CounterLayout, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.layout == layout && r.threads == threads).map(|r| r.mops.median)
    }

    fn row(&self, layout: CounterLayout, threads: usize) -> Option<&FalseSharingRow> {
        self.rows.iter().find(|r| r.layout == layout && r.threads == threads)
    }
}

impl Report for FalseSharingReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (a, p, sh) = (CounterLayout::Adjacent, CounterLayout::Padded, CounterLayout::Shared);
        if let (Some(x), Some(y)) = (self.row(a, 1), self.row(p, 1)) {
            let f = compare("1 thread: adjacent", &x.mops, "padded", &y.mops, " Mops/s");
            // One thread runs the same instructions on a line nobody else wants, whatever the
            // layout: a gap here is the measurement, not the layout.
            out.push(if f.text.contains("about equal") {
                f
            } else {
                Finding::note(format!(
                    "{} — yet one thread runs the same instructions on a line no other core wants in both \
                     layouts, so this gap is noise (a busy machine, a clock change between the runs), not \
                     false sharing",
                    f.text
                ))
            });
        }
        // The largest count with a CPU per thread: where false sharing is plainest.
        let t = self.params.threads.iter().copied().filter(|&t| t > 1 && t <= self.cores).max();
        if let Some(t) = t {
            if let (Some(x), Some(y)) = (self.row(a, t), self.row(p, t)) {
                out.push(compare(&format!("{t} threads: adjacent counters"), &x.mops, "padded", &y.mops, " Mops/s"));
            }
            if let (Some(x), Some(y)) = (self.row(a, t), self.row(sh, t)) {
                out.push(compare(
                    &format!("{t} threads: adjacent counters"),
                    &x.mops,
                    "one shared counter",
                    &y.mops,
                    " Mops/s",
                ));
            }
            if let (Some(x), Some(y)) = (self.row(p, t), self.row(p, 1)) {
                out.push(compare(&format!("Padded, {t} threads together"), &x.mops, "1 thread", &y.mops, " Mops/s"));
            }
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "Threads with counters of their own: does it matter where the counters sit?",
            "threads",
            "counter increments, Mops/s, all threads (median, p25–p75)",
        )
        .size(760, 500);
        for &layout in CounterLayout::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.layout == layout)
                .map(|r| Point::quartiles(r.threads as f64, &r.mops))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(short_label(layout), Style::Measured, pts));
            }
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperLeft), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "False sharing",
            &["layout", "threads", "median Mops/s", "p25–p75", "per thread", "counter stride"],
        );
        for r in &self.rows {
            t.row(vec![
                layout_label(r.layout).into(),
                r.threads.to_string(),
                fmt_num(r.mops.median),
                r.mops.quartile_range(),
                fmt_num(r.mops.median / r.threads as f64),
                if r.stride_bytes == 0 { "–".into() } else { format!("{} B", r.stride_bytes) },
            ]);
        }
        t.note(format!(
            "{} ms per sample, {} samples; {} CPUs.",
            self.params.duration_ms, self.params.samples, self.cores
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
            FalseSharing { threads: vec![0, 2], ..Default::default() },
            FalseSharing { layouts: vec![CounterLayout::Padded, CounterLayout::Padded], ..Default::default() },
            FalseSharing { layouts: vec![], ..Default::default() },
            FalseSharing { duration_ms: 1, ..Default::default() },
            FalseSharing { samples: 100, ..Default::default() },
        ] {
            assert!(false_sharing(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_layout_names_the_choices() {
        let e = crate::lab::params_from_pairs::<FalseSharing>("false-sharing", &[("layouts".into(), "striped".into())])
            .unwrap_err();
        assert!(e.to_string().contains("shared, adjacent, padded"), "{e}");
    }

    #[test]
    fn measures_every_layout() {
        let r = false_sharing(&FalseSharing { threads: vec![1, 2], duration_ms: 5, samples: 2, ..Default::default() })
            .unwrap();
        assert_eq!(r.rows.len(), 6);
        assert!(r.rows.iter().all(|x| x.mops.median > 0.0));
        assert!(r.rows.iter().any(|x| x.stride_bytes >= 64), "CachePadded puts counters a line apart");
        assert!(r.median(CounterLayout::Padded, 2).is_some());
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
