//! Shared state vs message passing, measured: one workload — counting values into a
//! histogram — done five ways, throughput vs thread count.

use crate::lab::budget::{Progress, check_estimate, timed_runs};
use crate::lab::findings::change_words;
use crate::lab::findings::separated;
use crate::lab::rng::Rng;
use crate::lab::together::{Run, batched, run_for, threads_error};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, Series, Stats, Style, Table, check_choices,
    check_list, check_range, cores, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

crate::choices! {
    /// The five ways [`histogram`] counts, in the order they are drawn.
    pub enum HistogramWay {
        /// One `Mutex<Vec<u64>>`, locked for every value.
        Mutex = "mutex",
        /// One `RwLock<Vec<u64>>`, write-locked for every value.
        RwLock = "rwlock",
        /// A `Vec<AtomicU64>`, one `fetch_add(1, Relaxed)` per value.
        Atomic = "atomic",
        /// A private histogram per thread, merged at the end (the merge is timed too).
        Shards = "shards",
        /// Producers send bucket numbers through a bounded channel to one owner thread that counts.
        Channel = "channel",
    }
}

/// Parameters of [`histogram`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Histogram {
    /// Counting threads: each 1..=256, at most 16 counts.
    pub threads: Vec<usize>,
    /// How long the threads count in each sample, in milliseconds: 10..=2000. Every way
    /// runs for the same time, long enough that the threads' start-up skew (tens of µs
    /// to a few ms on a busy machine) is small next to it.
    pub duration_ms: u64,
    /// Histogram buckets: 1..=4096 (fewer buckets, more collisions on the same counter).
    pub buckets: usize,
    /// Timed samples per point (after one warm-up): 1..=51.
    pub samples: usize,
    /// Which ways to run, any of [`HistogramWay`]: mutex, rwlock, atomic, shards, channel.
    pub ways: Vec<HistogramWay>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            threads: crate::lab::machine::default_threads_within(cores(), 256, 16),
            duration_ms: 100,
            buckets: 16,
            samples: 5,
            ways: HistogramWay::ALL.to_vec(),
        }
    }
}

impl Histogram {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=256)?;
        check_range("duration_ms", self.duration_ms, 10..=2000)?;
        check_range("buckets", self.buckets, 1..=4096)?;
        check_range("samples", self.samples, 1..=51)?;
        check_choices("ways", &self.ways)?;
        let runs = self.threads.len() * (self.samples + 1) * self.ways.len();
        check_estimate("threads × (samples + 1) × ways × duration_ms", timed_runs(runs, self.duration_ms))?;
        Ok(())
    }
}

/// One way at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramRow {
    pub way: HistogramWay,
    pub threads: usize,
    /// Million values counted per second (all threads' values over the window they counted in), over the samples.
    pub mops: Stats,
    /// CPUs' worth of time the counting threads got together (their CPU time over the
    /// window they counted in), over the samples: about `threads` when each had a CPU of
    /// its own, less when they took turns or other processes took part of the CPUs.
    pub cpus: Stats,
    /// Whether every sample's histogram summed to exactly the values the threads counted.
    pub exact: bool,
}

/// Result of [`histogram`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramReport {
    pub params: Histogram,
    pub cores: usize,
    pub rows: Vec<HistogramRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
    /// Whether Linux shares CPU time between sessions first (autogroup); `None` if unknown.
    pub autogroup: Option<bool>,
}

/// Counts pseudo-random values into `buckets` counters for `duration_ms` on each thread
/// count, five ways: one `Mutex<Vec<u64>>`; one `RwLock<Vec<u64>>` (write-locked for
/// every value); a `Vec<AtomicU64>` (`fetch_add`, `Relaxed`); per-thread shards merged at
/// the end; and a channel to one owning thread that does all the counting. Reports
/// throughput per way and thread count, and checks each result is exact.
pub fn histogram(p: &Histogram) -> Result<HistogramReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("histogram", p.ways.len() * p.threads.len());
    let duration = Duration::from_millis(p.duration_ms);
    let mut rows = Vec::new();
    for way in HistogramWay::ALL.iter().copied().filter(|w| p.ways.contains(w)) {
        for &t in &p.threads {
            let mut exact = true;
            let (mut rates, mut cpus) = (Vec::new(), Vec::new());
            for i in 0..=p.samples {
                let (h, run) = count(way, t, duration, p.buckets).map_err(threads_error(t))?;
                exact &= h.iter().sum::<u64>() == run.ops.iter().sum::<u64>();
                if i > 0 {
                    rates.push(run.mops());
                    cpus.push(run.cpus_used());
                }
            }
            rows.push(HistogramRow { way, threads: t, mops: Stats::of(&rates), cpus: Stats::of(&cpus), exact });
            progress.step()?;
        }
    }
    let autogroup = crate::lab::os::autogroup_enabled();
    Ok(HistogramReport { params: p.clone(), cores: cores(), rows, load: probe.finish(), autogroup })
}

/// One run of one way: the histogram, and what each counting thread did (values counted,
/// its own running time). The threads are created first and released together.
fn count(way: HistogramWay, threads: usize, duration: Duration, buckets: usize) -> Result<(Vec<u64>, Run), String> {
    let b = buckets as u64;
    match way {
        HistogramWay::Mutex => {
            let h = Mutex::new(vec![0u64; buckets]);
            let run = run_for(threads, duration, |i, stop| {
                let mut x = Rng::new(i as u64 + 1);
                batched(stop, || {
                    let k = (x.next_u64() % b) as usize;
                    h.lock().unwrap_or_else(|e| e.into_inner())[k] += 1;
                })
            })?;
            Ok((h.into_inner().unwrap_or_else(|e| e.into_inner()), run))
        }
        HistogramWay::RwLock => {
            let h = RwLock::new(vec![0u64; buckets]);
            let run = run_for(threads, duration, |i, stop| {
                let mut x = Rng::new(i as u64 + 1);
                batched(stop, || {
                    let k = (x.next_u64() % b) as usize;
                    h.write().unwrap_or_else(|e| e.into_inner())[k] += 1;
                })
            })?;
            Ok((h.into_inner().unwrap_or_else(|e| e.into_inner()), run))
        }
        HistogramWay::Atomic => {
            let h: Vec<AtomicU64> = (0..buckets).map(|_| AtomicU64::new(0)).collect();
            let run = run_for(threads, duration, |i, stop| {
                let mut x = Rng::new(i as u64 + 1);
                batched(stop, || {
                    h[(x.next_u64() % b) as usize].fetch_add(1, Ordering::Relaxed);
                })
            })?;
            Ok((h.into_iter().map(AtomicU64::into_inner).collect(), run))
        }
        HistogramWay::Shards => {
            // Each thread counts into its own Vec; it hands the shard over when it stops.
            let shards = Mutex::new(Vec::with_capacity(threads));
            let mut run = run_for(threads, duration, |i, stop| {
                let mut mine = vec![0u64; buckets];
                let mut x = Rng::new(i as u64 + 1);
                let n = batched(stop, || {
                    mine[(x.next_u64() % b) as usize] += 1;
                });
                shards.lock().unwrap_or_else(|e| e.into_inner()).push(mine);
                n
            })?;
            // Merging is part of the way: its time is added to every thread's.
            let t = Instant::now();
            let mut h = vec![0u64; buckets];
            for shard in shards.into_inner().unwrap_or_else(|e| e.into_inner()) {
                for (a, v) in h.iter_mut().zip(shard) {
                    *a += v;
                }
            }
            let merge = t.elapsed().as_secs_f64();
            run.secs.iter_mut().for_each(|s| *s += merge);
            Ok((h, run))
        }
        HistogramWay::Channel => {
            // Producers send bucket numbers through a bounded channel (so a slow owner
            // holds them back instead of letting messages pile up in memory); one owner
            // thread does all the counting.
            let (tx, rx) = mpsc::sync_channel::<u32>(1024);
            std::thread::scope(|s| {
                let owner = std::thread::Builder::new()
                    .spawn_scoped(s, move || {
                        let mut h = vec![0u64; buckets];
                        // Ends when every sender is gone; the timeout only guards a bug.
                        while let Ok(k) = rx.recv_timeout(Duration::from_secs(30)) {
                            h[k as usize] += 1;
                        }
                        h
                    })
                    .map_err(|e| format!("the OS refused the owner thread ({e})"))?;
                let run = run_for(threads, duration, |i, stop| {
                    let tx = tx.clone();
                    let mut x = Rng::new(i as u64 + 1);
                    batched(stop, || {
                        // A failed send (the owner is gone) shows as an inexact total.
                        let _ = tx.send((x.next_u64() % b) as u32);
                    })
                });
                drop(tx);
                let h = owner.join().map_err(|_| "the owner thread panicked".to_string())?;
                Ok((h, run?))
            })
        }
    }
}

impl HistogramReport {
    pub fn median(&self, way: HistogramWay, threads: usize) -> Option<f64> {
        self.row(way, threads).map(|r| r.mops.median)
    }

    fn row(&self, way: HistogramWay, threads: usize) -> Option<&HistogramRow> {
        self.rows.iter().find(|r| r.way == way && r.threads == threads)
    }

    fn ways(&self) -> Vec<HistogramWay> {
        HistogramWay::ALL.iter().copied().filter(|w| self.rows.iter().any(|r| r.way == *w)).collect()
    }

    /// The thread count the findings compare with 1: the largest that still has a CPU per
    /// thread, or the largest measured.
    fn parallel_count(&self) -> Option<usize> {
        let counts = &self.params.threads;
        counts
            .iter()
            .copied()
            .filter(|&t| t > 1 && t <= self.cores)
            .max()
            .or_else(|| counts.iter().copied().filter(|&t| t > 1).max())
    }
}

/// "2.1× its rate at 1 thread" with how sure, for one way.
fn ratio_finding(way: &str, a: &HistogramRow, b: &HistogramRow) -> Finding {
    let r = b.mops.median / a.mops.median.max(1e-12);
    let how =
        change_words(r, 0.1, "about the same as", |x| format!("{x}× faster than"), |x| format!("{x}× slower than"));
    let text = format!(
        "{way} at {} threads: {} M values/s, {how} at {} thread{} ({})",
        b.threads,
        fmt_num(b.mops.median),
        a.threads,
        if a.threads == 1 { "" } else { "s" },
        fmt_num(a.mops.median)
    );
    if separated(&a.mops, &b.mops) || (r - 1.0).abs() < 0.1 { Finding::clear(text) } else { Finding::unclear(text) }
}

/// Why shards (which share nothing) did or did not grow from `a` to `b` threads, from the
/// CPU time its threads got: parallel CPUs, turns on fewer CPUs, or CPUs that did not add
/// throughput although each thread had one.
fn shards_cpu_finding(a: &HistogramRow, b: &HistogramRow, cores: usize, autogroup: Option<bool>) -> Finding {
    let (ca, cb) = (a.cpus.median, b.cpus.median);
    let growth = b.mops.median / a.mops.median.max(1e-12);
    let per_cpu = |r: &HistogramRow| r.mops.median / r.cpus.median.max(1e-6);
    let free = b.threads.min(cores) as f64;
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let head = format!(
        "shards, CPU time: its counting threads had {} CPUs' worth at {} threads and {} at {} thread{} \
         (of {cores} CPUs), and counted {} M values per CPU-second at {} and {} M at {}",
        fmt_num(cb),
        b.threads,
        fmt_num(ca),
        a.threads,
        plural(a.threads),
        fmt_num(per_cpu(b)),
        b.threads,
        fmt_num(per_cpu(a)),
        a.threads,
    );
    let why = if cb < 0.75 * free {
        let mut cause = "other processes held the CPUs (see the load finding) or the scheduler kept the threads \
                         on one CPU"
            .to_string();
        if autogroup == Some(true) && cb < 1.25 * ca {
            cause += "; with autogroup on here, Linux shares a busy machine between sessions before threads, \
                      so more threads got this process little or no more CPU time";
        }
        format!(
            "so the {} threads took turns instead of running side by side — {cause} — and the {}× \
             is not what {} free CPUs would give",
            b.threads,
            fmt_num(growth),
            b.threads.min(cores)
        )
    } else if growth < 0.75 * free {
        format!(
            "each thread had a CPU, yet the rate grew only {}×: the CPUs did not add throughput \
             (virtual CPUs that share one physical core, or a slower clock with more cores busy)",
            fmt_num(growth)
        )
    } else if ca < 0.9 * a.threads.min(cores) as f64 {
        format!(
            "part of the {}× is CPU time taken from other processes: at {} thread{} the counting got \
             less than a CPU per thread",
            fmt_num(growth),
            a.threads,
            plural(a.threads)
        )
    } else {
        format!("each thread had a CPU of its own and the rate grew {}× with them", fmt_num(growth))
    };
    Finding::note(format!("{head}: {why}"))
}

impl Report for HistogramReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let ways = self.ways();
        if let Some(k) = self.parallel_count() {
            // Which way was fastest with one thread per CPU, and by how much over the next.
            let mut at_k: Vec<&HistogramRow> = ways.iter().filter_map(|&w| self.row(w, k)).collect();
            at_k.sort_by(|a, b| b.mops.median.total_cmp(&a.mops.median));
            if let [best, next, ..] = at_k.as_slice() {
                out.push(super::compare_medians(
                    &format!("Fastest at {k} threads: {}", best.way),
                    &best.mops,
                    next.way.name(),
                    &next.mops,
                    " M values/s",
                ));
            }
            for &w in &ways {
                if let (Some(a), Some(b)) = (self.row(w, 1), self.row(w, k)) {
                    out.push(ratio_finding(w.name(), a, b));
                }
            }
            if let (Some(a), Some(b)) = (self.row(HistogramWay::Shards, 1), self.row(HistogramWay::Shards, k)) {
                out.push(shards_cpu_finding(a, b, self.cores, self.autogroup));
            }
            // Past one thread per CPU.
            let top = self.params.threads.iter().copied().max().unwrap_or(k);
            if top > k {
                let parts: Vec<String> = ways
                    .iter()
                    .filter_map(|&w| Some((w, self.row(w, k)?, self.row(w, top)?)))
                    .map(|(w, a, b)| format!("{w} {}×", fmt_num(b.mops.median / a.mops.median.max(1e-12))))
                    .collect();
                out.push(Finding::note(format!(
                    "With {top} threads on {} CPUs, each way's rate relative to {k} threads: {}",
                    self.cores,
                    parts.join(", ")
                )));
            }
        }
        let inexact: Vec<String> =
            self.rows.iter().filter(|r| !r.exact).map(|r| format!("{} at {}", r.way, r.threads)).collect();
        out.push(if inexact.is_empty() {
            Finding::note(format!(
                "Every way counted exactly: each histogram's total equalled the values counted, in all {} runs",
                self.rows.len() * (self.params.samples + 1)
            ))
        } else {
            Finding::note(format!("Totals did NOT match for: {}", inexact.join(", ")))
        });
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "Counting into one histogram: which way scales?",
            "threads",
            "million values / s (median, p25–p75)",
        )
        .log_y()
        .legend(crate::lab::Legend::LowerLeft);
        for &way in HistogramWay::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.way == way)
                .map(|r| Point::quartiles(r.threads as f64, &r.mops))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(way.name(), Style::Measured, pts));
            }
        }
        f = f.note(format!(
            "{} ms of counting per sample, {} samples, {} buckets; channel adds one owner thread.",
            self.params.duration_ms, self.params.samples, self.params.buckets
        ));
        vec![super::caption_with_load(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Five ways to count into a histogram",
            &["way", "threads", "Mvalues/s", "p25–p75", "CPUs' worth", "exact total"],
        );
        for r in &self.rows {
            t.row(vec![
                r.way.to_string(),
                r.threads.to_string(),
                fmt_num(r.mops.median),
                r.mops.quartile_range(),
                fmt_num(r.cpus.median),
                if r.exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!(
            "{} ms of counting per sample into {} buckets, {} samples; channel adds one owner thread. \
             CPUs' worth: the counting threads' CPU time over the time they counted (median).",
            self.params.duration_ms, self.params.buckets, self.params.samples
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_counts_exactly() {
        for &way in HistogramWay::ALL {
            let (h, run) = count(way, 3, Duration::from_millis(15), 7).unwrap();
            assert_eq!(h.len(), 7);
            assert_eq!(run.ops.len(), 3);
            let total: u64 = run.ops.iter().sum();
            assert_eq!(h.iter().sum::<u64>(), total, "{way}");
            assert!(h.iter().all(|&c| c * 20 > total / 7), "{way}: buckets hit evenly {h:?}");
        }
    }

    fn row(threads: usize, mops: f64, cpus: f64) -> HistogramRow {
        let st = |m: f64| Stats { n: 5, median: m, p25: m, p75: m, min: m, max: m, mean: m, cv: 0.0 };
        HistogramRow { way: HistogramWay::Shards, threads, mops: st(mops), cpus: st(cpus), exact: true }
    }

    #[test]
    fn shards_finding_tells_turns_from_cpus_that_add_nothing() {
        // Flat, and the two threads had one CPU's worth of time: they took turns.
        let f = shards_cpu_finding(&row(1, 400.0, 0.99), &row(2, 405.0, 1.0), 2, Some(false));
        assert!(f.text.contains("took turns") && f.text.contains("1.01×"), "{}", f.text);
        assert!(!f.text.contains("autogroup"), "{}", f.text);
        let f = shards_cpu_finding(&row(1, 300.0, 0.73), &row(2, 270.0, 0.66), 2, Some(true));
        assert!(f.text.contains("took turns") && f.text.contains("autogroup on"), "{}", f.text);
        // Flat although each thread had a CPU: the CPUs added nothing.
        let f = shards_cpu_finding(&row(1, 400.0, 0.99), &row(2, 410.0, 1.97), 2, None);
        assert!(f.text.contains("each thread had a CPU, yet"), "{}", f.text);
        // Doubled, but one thread had only half a CPU: CPU time taken from others.
        let f = shards_cpu_finding(&row(1, 200.0, 0.5), &row(2, 390.0, 1.9), 2, None);
        assert!(f.text.contains("taken from other processes"), "{}", f.text);
        let f = shards_cpu_finding(&row(1, 400.0, 1.0), &row(2, 790.0, 1.98), 2, None);
        assert!(f.text.contains("a CPU of its own") && f.text.contains("1.98×"), "{}", f.text);
    }

    #[test]
    fn report_has_a_row_per_way_and_count_and_findings() {
        let p = Histogram { threads: vec![1, 2], duration_ms: 10, samples: 1, ..Default::default() };
        let r = histogram(&p).unwrap();
        assert_eq!(r.rows.len(), 10);
        assert!(r.rows.iter().all(|x| x.exact && x.mops.median > 0.0));
        let f = r.findings();
        assert!(f.iter().any(|x| x.text.starts_with("Fastest at 2 threads")), "{f:?}");
        assert!(f.iter().any(|x| x.text.starts_with("shards at 2 threads")), "{f:?}");
        assert!(f.iter().any(|x| x.text.starts_with("shards, CPU time:")), "{f:?}");
        assert!(r.rows.iter().all(|x| x.cpus.median > 0.0 && x.cpus.median <= x.threads as f64 + 1e-9));
        assert!(f.iter().any(|x| x.text.contains("counted exactly")), "{f:?}");
        assert!(f.last().unwrap().text.to_lowercase().contains("machine"), "{f:?}");
        let e =
            crate::lab::params_from_pairs::<Histogram>("histogram", &[("ways".into(), "spinlock".into())]).unwrap_err();
        assert!(e.to_string().contains("mutex") && e.to_string().contains("channel"), "{e}");
        assert!(histogram(&Histogram { buckets: 0, ..p.clone() }).is_err());
        assert!(histogram(&Histogram { duration_ms: 5, ..p }).is_err());
    }
}
