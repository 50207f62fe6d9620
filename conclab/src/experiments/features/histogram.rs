//! Shared state vs message passing, measured: one workload — counting values into a
//! histogram — done five ways, throughput vs thread count.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::rng::Rng;
use crate::lab::together::run_together;
use crate::lab::{
    Figure, LabError, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style, Table, check_choices,
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
    /// Values each thread counts per sample: 1_000..=10_000_000.
    pub ops_per_thread: u64,
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
            ops_per_thread: 1_000_000,
            buckets: 16,
            samples: 3,
            ways: HistogramWay::ALL.to_vec(),
        }
    }
}

impl Histogram {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=256)?;
        check_range("ops_per_thread", self.ops_per_thread, 1_000..=10_000_000)?;
        check_range("buckets", self.buckets, 1..=4096)?;
        check_range("samples", self.samples, 1..=51)?;
        check_choices("ways", &self.ways)?;
        // Values counted over the whole experiment, at about 20 million a second (the
        // channel way, the slowest, on a 2-core VM).
        let total: u64 = self.threads.iter().map(|&t| t as u64).sum::<u64>()
            * self.ops_per_thread
            * (self.samples as u64 + 1)
            * self.ways.len() as u64;
        check_estimate(
            "sum(threads) × ops_per_thread × (samples + 1) × ways",
            Duration::from_secs_f64(total as f64 * 50e-9),
        )?;
        Ok(())
    }
}

/// One way at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramRow {
    pub way: HistogramWay,
    pub threads: usize,
    /// Million values counted per second, over the samples.
    pub mops: Stats,
    /// Whether every sample's histogram summed to exactly threads × ops_per_thread.
    pub exact: bool,
}

/// Result of [`histogram`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramReport {
    pub params: Histogram,
    pub rows: Vec<HistogramRow>,
}

/// Counts `ops_per_thread` pseudo-random values per thread into `buckets` counters, five
/// ways: one `Mutex<Vec<u64>>`; one `RwLock<Vec<u64>>` (write-locked for every value);
/// a `Vec<AtomicU64>` (`fetch_add`, `Relaxed`); per-thread shards merged at the end; and
/// a channel to one owning thread that does all the counting. Reports throughput per
/// way and thread count, and checks each result is exact.
pub fn histogram(p: &Histogram) -> Result<HistogramReport, LabError> {
    p.validate()?;
    let mut progress = Progress::new("histogram", p.ways.len() * p.threads.len());
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut rows = Vec::new();
    for way in HistogramWay::ALL.iter().copied().filter(|w| p.ways.contains(w)) {
        for &t in &p.threads {
            let mut exact = true;
            let secs = sampling
                .try_collect(|| {
                    count(way, t, p.ops_per_thread, p.buckets).map(|(h, wall)| {
                        exact &= h.iter().sum::<u64>() == t as u64 * p.ops_per_thread;
                        wall
                    })
                })
                .map_err(|e| RunError::new("histogram", e))?;
            rows.push(HistogramRow {
                way,
                threads: t,
                mops: Stats::rates(t as f64 * p.ops_per_thread as f64 / 1e6, &secs).expect("finite rates"),
                exact,
            });
            progress.step()?;
        }
    }
    Ok(HistogramReport { params: p.clone(), rows })
}

/// One run of one way: the histogram, and the time from the counting threads' common
/// start (they are created first, then released together) to the last count.
fn count(way: HistogramWay, threads: usize, ops: u64, buckets: usize) -> std::io::Result<(Vec<u64>, Duration)> {
    let b = buckets as u64;
    let ready = |_| Ok(());
    match way {
        HistogramWay::Mutex => {
            let h = Mutex::new(vec![0u64; buckets]);
            let done = run_together(threads, ready, |i| {
                let mut x = Rng::new(i as u64 + 1);
                for _ in 0..ops {
                    let k = (x.next_u64() % b) as usize;
                    h.lock().unwrap_or_else(|e| e.into_inner())[k] += 1;
                }
            })?;
            Ok((h.into_inner().unwrap_or_else(|e| e.into_inner()), done.wall))
        }
        HistogramWay::RwLock => {
            let h = RwLock::new(vec![0u64; buckets]);
            let done = run_together(threads, ready, |i| {
                let mut x = Rng::new(i as u64 + 1);
                for _ in 0..ops {
                    let k = (x.next_u64() % b) as usize;
                    h.write().unwrap_or_else(|e| e.into_inner())[k] += 1;
                }
            })?;
            Ok((h.into_inner().unwrap_or_else(|e| e.into_inner()), done.wall))
        }
        HistogramWay::Atomic => {
            let h: Vec<AtomicU64> = (0..buckets).map(|_| AtomicU64::new(0)).collect();
            let done = run_together(threads, ready, |i| {
                let mut x = Rng::new(i as u64 + 1);
                for _ in 0..ops {
                    h[(x.next_u64() % b) as usize].fetch_add(1, Ordering::Relaxed);
                }
            })?;
            Ok((h.into_iter().map(AtomicU64::into_inner).collect(), done.wall))
        }
        HistogramWay::Shards => {
            let done = run_together(threads, ready, |i| {
                let mut mine = vec![0u64; buckets];
                let mut x = Rng::new(i as u64 + 1);
                for _ in 0..ops {
                    mine[(x.next_u64() % b) as usize] += 1;
                }
                mine
            })?;
            // Merging is part of the way: time it too.
            let t = Instant::now();
            let mut h = vec![0u64; buckets];
            for shard in &done.results {
                for (a, v) in h.iter_mut().zip(shard) {
                    *a += v;
                }
            }
            Ok((h, done.wall + t.elapsed()))
        }
        HistogramWay::Channel => {
            // Producers send bucket numbers through a bounded channel (so a
            // slow owner holds them back instead of letting messages pile up in memory);
            // one owner thread does all the counting. Timed until the owner is done.
            let (tx, rx) = mpsc::sync_channel::<u32>(1024);
            std::thread::scope(|s| {
                let owner = std::thread::Builder::new().spawn_scoped(s, move || {
                    let mut h = vec![0u64; buckets];
                    // Ends when every sender is gone; the timeout only guards a bug.
                    while let Ok(k) = rx.recv_timeout(Duration::from_secs(30)) {
                        h[k as usize] += 1;
                    }
                    (h, Instant::now())
                })?;
                let sent = run_together(threads, ready, |i| {
                    let tx = tx.clone();
                    let mut x = Rng::new(i as u64 + 1);
                    for _ in 0..ops {
                        if tx.send((x.next_u64() % b) as u32).is_err() {
                            break;
                        }
                    }
                });
                drop(tx);
                let (h, end) = owner.join().map_err(|_| std::io::Error::other("the owner thread panicked"))?;
                let sent = sent?;
                Ok((h, end.saturating_duration_since(sent.start)))
            })
        }
    }
}

impl HistogramReport {
    pub fn median(&self, way: HistogramWay, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.way == way && r.threads == threads).map(|r| r.mops.median)
    }
}

impl Report for HistogramReport {
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
                .map(|r| Point::spread(r.threads as f64, r.mops.median, r.mops.p25, r.mops.p75))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(way.name(), Style::Measured, pts));
            }
        }
        vec![f]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Five ways to count into a histogram",
            &["way", "threads", "Mvalues/s", "p25–p75", "exact total"],
        );
        for r in &self.rows {
            t.row(vec![
                r.way.to_string(),
                r.threads.to_string(),
                fmt_num(r.mops.median),
                format!("{}–{}", fmt_num(r.mops.p25), fmt_num(r.mops.p75)),
                if r.exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!(
            "{} values per thread into {} buckets, {} samples; channel adds one owner thread.",
            self.params.ops_per_thread, self.params.buckets, self.params.samples
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
            let (h, wall) = count(way, 3, 5_000, 7).unwrap();
            assert!(wall > Duration::ZERO);
            assert_eq!(h.len(), 7);
            assert_eq!(h.iter().sum::<u64>(), 15_000, "{way}");
            assert!(h.iter().all(|&c| c > 1_000), "{way}: buckets hit evenly {h:?}");
        }
    }

    #[test]
    fn report_has_a_row_per_way_and_count() {
        let p = Histogram { threads: vec![1, 2], ops_per_thread: 2_000, samples: 1, ..Default::default() };
        let r = histogram(&p).unwrap();
        assert_eq!(r.rows.len(), 10);
        assert!(r.rows.iter().all(|x| x.exact && x.mops.median > 0.0));
        let e =
            crate::lab::params_from_pairs::<Histogram>("histogram", &[("ways".into(), "spinlock".into())]).unwrap_err();
        assert!(e.to_string().contains("mutex") && e.to_string().contains("channel"), "{e}");
        assert!(histogram(&Histogram { buckets: 0, ..p }).is_err());
    }
}
