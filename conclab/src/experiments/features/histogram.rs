//! Shared state vs message passing, measured: one workload — counting values into a
//! histogram — done five ways, throughput vs thread count.

use crate::lab::{
    Figure, ParamError, Point, Report, Sampling, Series, Stats, Style, Table, check_list, check_range, cores, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, mpsc};
use std::time::Duration;

/// The five ways, in the order they are drawn.
pub const WAYS: [&str; 5] = ["mutex", "rwlock", "atomic", "shards", "channel"];

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
    /// Which ways to run, any of: mutex, rwlock, atomic, shards, channel.
    pub ways: Vec<String>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            threads: crate::experiments::intro::scaling::default_threads(cores()),
            ops_per_thread: 1_000_000,
            buckets: 16,
            samples: 3,
            ways: WAYS.iter().map(|w| w.to_string()).collect(),
        }
    }
}

impl Histogram {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 16, 1..=256)?;
        check_range("ops_per_thread", self.ops_per_thread, 1_000..=10_000_000)?;
        check_range("buckets", self.buckets, 1..=4096)?;
        check_range("samples", self.samples, 1..=51)?;
        if self.ways.is_empty() || self.ways.iter().any(|w| !WAYS.contains(&w.as_str())) {
            return Err(ParamError::new("ways", format!("a non-empty list of: {}", WAYS.join(", ")), &self.ways));
        }
        Ok(())
    }
}

/// One way at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramRow {
    pub way: String,
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

/// The value stream each thread counts: a xorshift sequence, so buckets are hit evenly
/// and the compiler cannot predict them.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Counts `ops_per_thread` pseudo-random values per thread into `buckets` counters, five
/// ways: one `Mutex<Vec<u64>>`; one `RwLock<Vec<u64>>` (write-locked for every value);
/// a `Vec<AtomicU64>` (`fetch_add`, `Relaxed`); per-thread shards merged at the end; and
/// a channel to one owning thread that does all the counting. Reports throughput per
/// way and thread count, and checks each result is exact.
pub fn histogram(p: &Histogram) -> Result<HistogramReport, ParamError> {
    p.validate()?;
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut rows = Vec::new();
    for way in WAYS.iter().filter(|w| p.ways.iter().any(|x| x == *w)) {
        for &t in &p.threads {
            let mut exact = true;
            let st = sampling.time(|| {
                let h = count(way, t, p.ops_per_thread, p.buckets);
                exact &= h.iter().sum::<u64>() == t as u64 * p.ops_per_thread;
            });
            let total = (t as u64 * p.ops_per_thread) as f64;
            let mops: Vec<f64> = [st.median, st.p25, st.p75].iter().map(|s| total / s / 1e6).collect();
            rows.push(HistogramRow {
                way: way.to_string(),
                threads: t,
                mops: Stats {
                    median: mops[0],
                    p25: mops[2],
                    p75: mops[1],
                    min: total / st.max / 1e6,
                    max: total / st.min / 1e6,
                    mean: total / st.mean / 1e6,
                    ..st
                },
                exact,
            });
        }
    }
    Ok(HistogramReport { params: p.clone(), rows })
}

/// One run of one way; returns the histogram.
fn count(way: &str, threads: usize, ops: u64, buckets: usize) -> Vec<u64> {
    let b = buckets as u64;
    match way {
        "mutex" => {
            let h = Mutex::new(vec![0u64; buckets]);
            std::thread::scope(|s| {
                for i in 0..threads {
                    let h = &h;
                    s.spawn(move || {
                        let mut x = seed(i);
                        for _ in 0..ops {
                            let k = (next(&mut x) % b) as usize;
                            h.lock().unwrap_or_else(|e| e.into_inner())[k] += 1;
                        }
                    });
                }
            });
            h.into_inner().unwrap_or_else(|e| e.into_inner())
        }
        "rwlock" => {
            let h = RwLock::new(vec![0u64; buckets]);
            std::thread::scope(|s| {
                for i in 0..threads {
                    let h = &h;
                    s.spawn(move || {
                        let mut x = seed(i);
                        for _ in 0..ops {
                            let k = (next(&mut x) % b) as usize;
                            h.write().unwrap_or_else(|e| e.into_inner())[k] += 1;
                        }
                    });
                }
            });
            h.into_inner().unwrap_or_else(|e| e.into_inner())
        }
        "atomic" => {
            let h: Vec<AtomicU64> = (0..buckets).map(|_| AtomicU64::new(0)).collect();
            std::thread::scope(|s| {
                for i in 0..threads {
                    let h = &h;
                    s.spawn(move || {
                        let mut x = seed(i);
                        for _ in 0..ops {
                            h[(next(&mut x) % b) as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            h.into_iter().map(AtomicU64::into_inner).collect()
        }
        "shards" => std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|i| {
                    s.spawn(move || {
                        let mut mine = vec![0u64; buckets];
                        let mut x = seed(i);
                        for _ in 0..ops {
                            mine[(next(&mut x) % b) as usize] += 1;
                        }
                        mine
                    })
                })
                .collect();
            let mut h = vec![0u64; buckets];
            for shard in hs.into_iter().filter_map(|j| j.join().ok()) {
                for (a, v) in h.iter_mut().zip(shard) {
                    *a += v;
                }
            }
            h
        }),
        _ => {
            // "channel": producers send bucket numbers; one owner thread counts them.
            let (tx, rx) = mpsc::channel::<u32>();
            std::thread::scope(|s| {
                let owner = s.spawn(move || {
                    let mut h = vec![0u64; buckets];
                    // Ends when every sender is dropped; the timeout only guards a bug.
                    while let Ok(k) = rx.recv_timeout(Duration::from_secs(30)) {
                        h[k as usize] += 1;
                    }
                    h
                });
                for i in 0..threads {
                    let tx = tx.clone();
                    s.spawn(move || {
                        let mut x = seed(i);
                        for _ in 0..ops {
                            let _ = tx.send((next(&mut x) % b) as u32);
                        }
                    });
                }
                drop(tx);
                owner.join().unwrap_or_default()
            })
        }
    }
}

fn seed(i: usize) -> u64 {
    0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1) | 1
}

impl HistogramReport {
    pub fn median(&self, way: &str, threads: usize) -> Option<f64> {
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
        for way in WAYS {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.way == way)
                .map(|r| Point::spread(r.threads as f64, r.mops.median, r.mops.p25, r.mops.p75))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(way, Style::Measured, pts));
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
                r.way.clone(),
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
        for way in WAYS {
            let h = count(way, 3, 5_000, 7);
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
        assert!(histogram(&Histogram { ways: vec!["spinlock".into()], ..p.clone() }).is_err());
        assert!(histogram(&Histogram { buckets: 0, ..p }).is_err());
    }
}
