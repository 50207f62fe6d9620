//! Avoiding lock-order deadlocks: transfers between accounts, each behind its own lock,
//! with four strategies — none (timeouts catch the deadlocks), a global lock order,
//! `try_lock` with back-off, and one coarse lock for everything.

use crate::lab::budget::{Progress, check_estimate, timed_runs};
use crate::lab::findings::compare;
use crate::lab::rng::Rng;
use crate::lab::together::run_for;
use crate::lab::together::threads_error;
use crate::lab::work::busy;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, Stats, Table, check_choices, check_list,
    check_range, fmt_num,
};
use crossbeam::utils::Backoff;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Parameters of [`lock_strategies`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockStrategies {
    /// Thread counts, each 2..=64, at most 8 of them.
    pub threads: Vec<usize>,
    /// Accounts, each behind its own `parking_lot::Mutex`: 2..=1024.
    pub accounts: usize,
    /// Strategies, any of [`LockStrategy`]: "naive", "ordered", "backoff", "one_lock".
    pub strategies: Vec<LockStrategy>,
    /// Work done holding both locks, in `busy` iterations (~1 ns each): 0..=1_000_000.
    pub work_inside: u64,
    /// How long "naive" waits for its second lock before it gives up, in ms: 1..=1000.
    pub timeout_ms: u64,
    /// How long each sample runs, in milliseconds: 10..=5000.
    pub duration_ms: u64,
    /// Samples per strategy and thread count: 1..=51.
    pub samples: usize,
}

impl Default for LockStrategies {
    fn default() -> Self {
        LockStrategies {
            threads: vec![2, 4],
            accounts: 4,
            strategies: LockStrategy::ALL.to_vec(),
            work_inside: 200,
            timeout_ms: 5,
            duration_ms: 100,
            samples: 3,
        }
    }
}

crate::choices! {
    /// The strategies [`lock_strategies`] knows.
    pub enum LockStrategy {
        /// Lock `from` then `to`; timed waits (`timeout_ms`) break the deadlocks.
        Naive = "naive",
        /// A global lock order: the lower account number first.
        Ordered = "ordered",
        /// Lock `from`, `try_lock` `to`; on failure release both and retry after a back-off.
        Backoff = "backoff",
        /// One mutex around all accounts.
        OneLock = "one_lock",
    }
}

impl LockStrategies {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 8, 2..=64)?;
        check_range("accounts", self.accounts, 2..=1024)?;
        check_choices("strategies", &self.strategies)?;
        check_range("work_inside", self.work_inside, 0..=1_000_000)?;
        check_range("timeout_ms", self.timeout_ms, 1..=1000)?;
        check_range("duration_ms", self.duration_ms, 10..=5000)?;
        check_range("samples", self.samples, 1..=51)?;
        let runs = self.threads.len() * self.strategies.len() * self.samples;
        check_estimate("threads × strategies × samples × duration_ms", timed_runs(runs, self.duration_ms))
    }
}

/// How a strategy is named in figures and tables.
pub fn strategy_label(s: LockStrategy) -> &'static str {
    match s {
        LockStrategy::Naive => "no order (timeouts break deadlocks)",
        LockStrategy::Ordered => "global lock order",
        LockStrategy::Backoff => "try_lock + back-off",
        LockStrategy::OneLock => "one coarse lock",
    }
}

fn short_label(s: LockStrategy) -> &'static str {
    match s {
        LockStrategy::Naive => "no order (timeouts)",
        LockStrategy::Ordered => "global lock order",
        LockStrategy::Backoff => "try_lock + back-off",
        LockStrategy::OneLock => "one coarse lock",
    }
}

/// One strategy at one thread count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyRow {
    pub strategy: LockStrategy,
    pub threads: usize,
    /// Completed transfers per second, thousands, all threads.
    pub ktransfers: Stats,
    /// Second-lock attempts that failed and were retried, per completed transfer.
    pub retries_per_transfer: f64,
    /// Waits that hit `timeout_ms` (each one a deadlock broken, or a long wait), all samples.
    pub timeouts: u64,
    /// Whether the money was conserved (the sum of balances unchanged) in every sample.
    pub conserved: bool,
}

/// Result of [`lock_strategies`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockStrategiesReport {
    pub params: LockStrategies,
    pub rows: Vec<StrategyRow>,
    pub load: Load,
}

/// Every thread moves one unit between two random accounts for `duration_ms`, holding
/// both accounts' locks while it does `work_inside` work. "naive" takes `from` then `to`
/// and deadlocks whenever two threads cross; its waits are timed (`timeout_ms`), so it
/// recovers by releasing and retrying. The others cannot deadlock: "ordered" always locks
/// the lower-numbered account first; "backoff" never waits for a second lock while
/// holding the first; "one_lock" has only one lock.
pub fn lock_strategies(p: &LockStrategies) -> Result<LockStrategiesReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("lock-strategies", p.strategies.len() * p.threads.len());
    let mut rows = Vec::new();
    for strategy in LockStrategy::ALL.iter().copied().filter(|s| p.strategies.contains(s)) {
        for &t in &p.threads {
            rows.push(measure(p, strategy, t)?);
            progress.step()?;
        }
    }
    Ok(LockStrategiesReport { params: p.clone(), rows, load: probe.finish() })
}

/// All of `p.samples` samples of `strategy` with `t` threads, summed up in one row.
fn measure(p: &LockStrategies, strategy: LockStrategy, t: usize) -> Result<StrategyRow, LabError> {
    let (mut kt, mut done, mut retries, mut timeouts, mut conserved) = (Vec::new(), 0u64, 0u64, 0u64, true);
    for sample in 0..p.samples {
        let s = run_sample(p, strategy, t, sample)?;
        conserved &= s.conserved;
        kt.push(s.ktransfers);
        done += s.done;
        retries += s.retries;
        timeouts += s.timeouts;
    }
    Ok(StrategyRow {
        strategy,
        threads: t,
        ktransfers: Stats::of(&kt),
        retries_per_transfer: retries as f64 / done.max(1) as f64,
        timeouts,
        conserved,
    })
}

/// What one sample measured.
struct Sample {
    /// Completed transfers per second, thousands, all threads.
    ktransfers: f64,
    /// Completed transfers, all threads.
    done: u64,
    /// Failed second-lock attempts that were retried.
    retries: u64,
    /// Waits that hit the timeout.
    timeouts: u64,
    /// Whether the sum of balances came out unchanged.
    conserved: bool,
}

/// One sample: `t` threads transfer between fresh accounts for `duration_ms`; all of
/// them are joined (by `run_for`) before the balances are summed.
fn run_sample(p: &LockStrategies, strategy: LockStrategy, t: usize, sample: usize) -> Result<Sample, LabError> {
    let bank = Bank::new(p);
    let body = |i: usize, stop: &AtomicBool| -> u64 { bank.worker(strategy, (sample * 1000 + i) as u64 + 1, stop) };
    let run = run_for(t, Duration::from_millis(p.duration_ms), body).map_err(threads_error(t))?;
    Ok(Sample {
        conserved: bank.sum(strategy) == 1000 * p.accounts as i64,
        ktransfers: run.mops() * 1e3,
        done: run.ops.iter().sum::<u64>(),
        retries: bank.retries.load(Ordering::Relaxed),
        timeouts: bank.timeouts.load(Ordering::Relaxed),
    })
}

/// One sample's accounts, each starting at 1000: behind one lock each, and (for
/// "one_lock") all behind a single lock; with the work done holding the locks, the timeout
/// of "naive", and the retries and timeouts all threads counted.
struct Bank {
    accounts: Vec<parking_lot::Mutex<i64>>,
    global: parking_lot::Mutex<Vec<i64>>,
    work_inside: u64,
    timeout: Duration,
    retries: AtomicU64,
    timeouts: AtomicU64,
}

impl Bank {
    /// Fresh accounts as `p` asks for them.
    fn new(p: &LockStrategies) -> Bank {
        Bank {
            accounts: (0..p.accounts).map(|_| parking_lot::Mutex::new(1000)).collect(),
            global: parking_lot::Mutex::new(vec![1000i64; p.accounts]),
            work_inside: p.work_inside,
            timeout: Duration::from_millis(p.timeout_ms),
            retries: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// One thread's loop: transfers between random accounts (seeded with `seed`) until
    /// `stop`; adds its retries and timeouts to the bank's and returns its transfers.
    fn worker(&self, strategy: LockStrategy, seed: u64, stop: &AtomicBool) -> u64 {
        let n = self.accounts.len() as u64;
        let mut rng = Rng::new(seed);
        let (mut ops, mut my_retries, mut my_timeouts) = (0u64, 0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let from = rng.below(n) as usize;
            let to = (from + 1 + rng.below(n - 1) as usize) % self.accounts.len();
            let moved = match strategy {
                LockStrategy::Naive => self.naive(from, to, ops, &mut my_timeouts),
                LockStrategy::Ordered => self.ordered(from, to, ops),
                LockStrategy::Backoff => self.backoff(from, to, ops, stop, &mut my_retries),
                LockStrategy::OneLock => self.one_lock(from, to, ops),
            };
            ops += u64::from(moved);
        }
        self.retries.fetch_add(my_retries, Ordering::Relaxed);
        self.timeouts.fetch_add(my_timeouts, Ordering::Relaxed);
        ops
    }

    /// "naive": `from` then `to`, each wait bounded by the timeout; a wait that hits it
    /// counts in `timeouts` and the transfer is dropped (its locks released).
    fn naive(&self, from: usize, to: usize, ops: u64, timeouts: &mut u64) -> bool {
        let Some(mut a) = self.accounts[from].try_lock_for(self.timeout) else {
            *timeouts += 1;
            return false;
        };
        match self.accounts[to].try_lock_for(self.timeout) {
            Some(mut b) => {
                *a -= 1;
                *b += 1;
                busy(self.work_inside, ops);
                true
            }
            None => {
                *timeouts += 1;
                false
            }
        }
    }

    /// "ordered": the lower-numbered account's lock first.
    fn ordered(&self, from: usize, to: usize, ops: u64) -> bool {
        let (lo, hi) = (from.min(to), from.max(to));
        let mut a = self.accounts[lo].lock();
        let mut b = self.accounts[hi].lock();
        let (src, dst) = if from == lo { (&mut *a, &mut *b) } else { (&mut *b, &mut *a) };
        *src -= 1;
        *dst += 1;
        busy(self.work_inside, ops);
        true
    }

    /// "backoff": lock `from`, `try_lock` `to`; on failure release both, count a retry in
    /// `retries` and snooze — or give up once `stop` is set.
    fn backoff(&self, from: usize, to: usize, ops: u64, stop: &AtomicBool, retries: &mut u64) -> bool {
        let backoff = Backoff::new();
        loop {
            let mut a = self.accounts[from].lock();
            if let Some(mut b) = self.accounts[to].try_lock() {
                *a -= 1;
                *b += 1;
                busy(self.work_inside, ops);
                break true;
            }
            drop(a);
            *retries += 1;
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            backoff.snooze();
        }
    }

    /// "one_lock": the one mutex around all accounts.
    fn one_lock(&self, from: usize, to: usize, ops: u64) -> bool {
        let mut all = self.global.lock();
        all[from] -= 1;
        all[to] += 1;
        busy(self.work_inside, ops);
        true
    }

    /// The sum of the balances `strategy` moved money between.
    fn sum(&self, strategy: LockStrategy) -> i64 {
        match strategy {
            LockStrategy::OneLock => self.global.lock().iter().sum(),
            LockStrategy::Naive | LockStrategy::Ordered | LockStrategy::Backoff => {
                self.accounts.iter().map(|a| *a.lock()).sum()
            }
        }
    }
}

impl LockStrategiesReport {
    /// Median thousands of transfers per second of `strategy` at `threads`.
    pub fn median(&self, strategy: LockStrategy, threads: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.strategy == strategy && r.threads == threads).map(|r| r.ktransfers.median)
    }

    /// The deadlock-free strategies at `threads`, fastest first.
    fn safe_ranked(&self, threads: usize) -> Vec<&StrategyRow> {
        let mut v: Vec<&StrategyRow> =
            self.rows.iter().filter(|r| r.threads == threads && r.strategy != LockStrategy::Naive).collect();
        v.sort_by(|a, b| b.ktransfers.median.total_cmp(&a.ktransfers.median));
        v
    }
}

impl Report for LockStrategiesReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for &t in &self.params.threads {
            let ranked = self.safe_ranked(t);
            let naive = self.rows.iter().find(|r| r.threads == t && r.strategy == LockStrategy::Naive);
            if let (Some(n), Some(best)) = (naive, ranked.first()) {
                let mut f = compare(
                    &format!("{t} threads: no order"),
                    &n.ktransfers,
                    short_label(best.strategy),
                    &best.ktransfers,
                    " k transfers/s",
                );
                f.text.push_str(&format!("; {} timeouts of {} ms", n.timeouts, self.params.timeout_ms));
                out.push(f);
            }
            if let (Some(best), Some(worst)) = (ranked.first(), ranked.last())
                && ranked.len() > 1
            {
                out.push(compare(
                    &format!("{t} threads: fastest safe strategy, {}", short_label(best.strategy)),
                    &best.ktransfers,
                    &format!("slowest, {}", short_label(worst.strategy)),
                    &worst.ktransfers,
                    " k transfers/s",
                ));
            }
        }
        if let Some(r) = self
            .rows
            .iter()
            .filter(|r| r.strategy == LockStrategy::Backoff)
            .max_by(|a, b| a.retries_per_transfer.total_cmp(&b.retries_per_transfer))
        {
            out.push(Finding::note(format!(
                "try_lock + back-off retried {} times per transfer at {} threads (its most)",
                fmt_num(r.retries_per_transfer),
                r.threads
            )));
        }
        if self.rows.iter().any(|r| !r.conserved) {
            out.push(Finding::clear("Money was created or lost in a sample: a strategy is broken"));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::bars(
            "Ways out of lock-order deadlock: what does each cost?",
            "strategy",
            "transfers, thousands/s (median, p25–p75; log scale)",
        )
        .log_y();
        // Strategies on the x axis, thread counts as colours: "no order" comes first and
        // lowest, so the legend above it covers no bar.
        for &s in LockStrategy::ALL {
            for r in self.rows.iter().filter(|r| r.strategy == s) {
                let k = &r.ktransfers;
                f = f.bar(short_label(s), &format!("{} threads", r.threads), k.median, Some((k.p25, k.p75)));
            }
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperLeft), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Deadlock avoidance strategies",
            &[
                "strategy",
                "threads",
                "median k transfers/s",
                "p25–p75",
                "retries per transfer",
                "timeouts",
                "money conserved",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                strategy_label(r.strategy).into(),
                r.threads.to_string(),
                fmt_num(r.ktransfers.median),
                r.ktransfers.quartile_range(),
                fmt_num(r.retries_per_transfer),
                r.timeouts.to_string(),
                if r.conserved { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!(
            "{} accounts; {} busy iterations inside both locks; naive waits {} ms before it gives up; {} ms × {} samples.",
            self.params.accounts, self.params.work_inside, self.params.timeout_ms, self.params.duration_ms, self.params.samples
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
            LockStrategies { threads: vec![1], ..Default::default() },
            LockStrategies { accounts: 1, ..Default::default() },
            LockStrategies { strategies: vec![], ..Default::default() },
            LockStrategies { timeout_ms: 0, ..Default::default() },
            LockStrategies { duration_ms: 1, ..Default::default() },
        ] {
            assert!(lock_strategies(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_strategy_names_the_choices() {
        let e = crate::lab::params_from_pairs::<LockStrategies>(
            "lock-strategies",
            &[("strategies".into(), "naive,pray".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("naive, ordered, backoff, one_lock"), "{e}");
    }

    #[test]
    fn every_strategy_conserves_money() {
        let p = LockStrategies {
            threads: vec![2, 4],
            accounts: 2,
            duration_ms: 40,
            samples: 1,
            timeout_ms: 2,
            ..Default::default()
        };
        let r = lock_strategies(&p).unwrap();
        assert_eq!(r.rows.len(), 8);
        for row in &r.rows {
            assert!(row.conserved, "{row:?}");
            assert!(row.ktransfers.median > 0.0, "{row:?}");
            if row.strategy != LockStrategy::Naive {
                assert_eq!(row.timeouts, 0);
            }
        }
        // Whether the naive order deadlocks within 40 ms depends on the scheduler (beside a
        // CPU hog it may not): that is the notebook's finding to report, not a test's.
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
