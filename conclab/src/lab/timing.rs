//! Timing: warm-up, repeated samples, and robust summaries (median, quartiles, spread).

use serde::Serialize;
use std::time::{Duration, Instant};

/// Summary of repeated measurements of one quantity.
///
/// Medians and quartiles rather than means: on a shared machine a few samples are
/// always disturbed (another process, a migration), and they should not move the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Number of samples.
    pub n: usize,
    pub median: f64,
    /// 25th percentile (linear interpolation between order statistics).
    pub p25: f64,
    /// 75th percentile.
    pub p75: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Coefficient of variation: standard deviation / mean (0 for a single sample).
    pub cv: f64,
}

impl Stats {
    /// Summarises `samples`; `None` when there are none or one is not finite.
    pub fn from_samples(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let cv = if mean != 0.0 { var.sqrt() / mean.abs() } else { 0.0 };
        Some(Stats {
            n,
            median: quantile_sorted(&s, 0.5),
            p25: quantile_sorted(&s, 0.25),
            p75: quantile_sorted(&s, 0.75),
            min: s[0],
            max: s[n - 1],
            mean,
            cv,
        })
    }

    /// Summarises `values`; all zeros (with `n` = 0) when there are none, so a report
    /// can always hold a row.
    pub fn of(values: &[f64]) -> Stats {
        Stats::from_samples(values).unwrap_or(Stats {
            n: 0,
            median: 0.0,
            p25: 0.0,
            p75: 0.0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            cv: 0.0,
        })
    }

    /// `p25–p75` with the figures' number format, for a table cell.
    pub fn quartile_range(&self) -> String {
        format!("{}–{}", crate::lab::fmt_num(self.p25), crate::lab::fmt_num(self.p75))
    }

    /// Rates from durations: `units / seconds` for each sample, summarised (so quartiles
    /// come from the rates themselves and cannot be swapped by mistake).
    pub fn rates(units: f64, seconds: &[f64]) -> Option<Stats> {
        let r: Vec<f64> = seconds.iter().map(|s| units / s.max(1e-12)).collect();
        Stats::from_samples(&r)
    }

    /// The same summary with every value multiplied by `k` (unit changes; `cv` unchanged).
    pub fn scaled(&self, k: f64) -> Stats {
        Stats {
            median: self.median * k,
            p25: self.p25 * k,
            p75: self.p75 * k,
            min: self.min * k,
            max: self.max * k,
            mean: self.mean * k,
            ..self.clone()
        }
    }
}

/// The `q`-quantile (0..=1) of already sorted values, interpolating linearly.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// How many times to run a measurement: discarded warm-up runs, then kept samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sampling {
    pub warmup: usize,
    pub samples: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { warmup: 1, samples: 7 }
    }
}

impl Sampling {
    /// Runs `f` `warmup` times, then `samples` times, and summarises the durations that
    /// `f` reports (in seconds). `f` returns the time it measured itself, so that setup
    /// inside `f` (spawning the threads a run needs, say) can stay outside the clock.
    pub fn measure<F: FnMut() -> Duration>(&self, mut f: F) -> Stats {
        for _ in 0..self.warmup {
            std::hint::black_box(f());
        }
        let samples: Vec<f64> = (0..self.samples.max(1)).map(|_| f().as_secs_f64()).collect();
        Stats::from_samples(&samples).expect("durations are finite")
    }

    /// Like [`Sampling::measure`], but returns the kept samples themselves (seconds), for
    /// callers that convert them (to rates, say) before summarising.
    pub fn collect<F: FnMut() -> Duration>(&self, mut f: F) -> Vec<f64> {
        for _ in 0..self.warmup {
            std::hint::black_box(f());
        }
        (0..self.samples.max(1)).map(|_| f().as_secs_f64()).collect()
    }

    /// Like [`Sampling::collect`] for a run that can fail (a thread the OS refuses): stops
    /// at the first error and returns it.
    pub fn try_collect<E, F: FnMut() -> Result<Duration, E>>(&self, mut f: F) -> Result<Vec<f64>, E> {
        for _ in 0..self.warmup {
            std::hint::black_box(f()?);
        }
        (0..self.samples.max(1)).map(|_| f().map(|d| d.as_secs_f64())).collect()
    }

    /// Like [`Sampling::measure`] for a run that can fail: stops at the first error.
    pub fn try_measure<E, F: FnMut() -> Result<Duration, E>>(&self, f: F) -> Result<Stats, E> {
        self.try_collect(f).map(|s| Stats::from_samples(&s).expect("durations are finite"))
    }

    /// Times the whole of `f` with a monotonic clock, as [`Sampling::measure`] does.
    pub fn time<F: FnMut()>(&self, mut f: F) -> Stats {
        self.measure(|| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_of_known_samples() {
        let s = Stats::from_samples(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.p25, 2.0);
        assert_eq!(s.p75, 4.0);
        assert_eq!((s.min, s.max, s.mean), (1.0, 5.0, 3.0));
        assert!((s.cv - (2.5f64).sqrt() / 3.0).abs() < 1e-12);
    }

    #[test]
    fn even_count_interpolates() {
        let s = Stats::from_samples(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.p25, 1.75);
    }

    #[test]
    fn empty_and_nan_give_none() {
        assert!(Stats::from_samples(&[]).is_none());
        assert!(Stats::from_samples(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn measure_runs_warmup_plus_samples() {
        let mut calls = 0;
        let s = Sampling { warmup: 2, samples: 5 }.measure(|| {
            calls += 1;
            Duration::from_millis(calls)
        });
        assert_eq!(calls, 7);
        assert_eq!(s.n, 5);
        assert_eq!(s.min, 0.003);
        assert_eq!(s.median, 0.005);
    }

    #[test]
    fn fallible_sampling_stops_at_the_first_error_and_rates_invert() {
        let mut n = 0;
        let r: Result<Vec<f64>, &str> = Sampling { warmup: 1, samples: 5 }.try_collect(|| {
            n += 1;
            if n == 3 { Err("refused") } else { Ok(Duration::from_millis(1)) }
        });
        assert_eq!(r, Err("refused"));
        assert_eq!(n, 3);
        let s = Stats::rates(10.0, &[1.0, 2.0, 5.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (2.0, 5.0, 10.0));
    }

    #[test]
    fn scaled_changes_units_only() {
        let s = Stats::from_samples(&[1.0, 2.0, 3.0]).unwrap().scaled(1e6);
        assert_eq!(s.median, 2e6);
        assert_eq!(s.n, 3);
    }
}
