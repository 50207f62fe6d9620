//! Production patterns, hand-built ([`crate::primitives::resilience`]) and run against a
//! simulated flaky dependency on tokio's paused clock (a simulated minute takes
//! milliseconds, and the same seed gives the same run):
//!
//! - [`retry_storm`]: clients that all failed at once retry with exponential back-off
//!   without jitter (they come back in synchronized waves that knock the recovering
//!   dependency over again) vs with full jitter (the load spreads out);
//! - [`circuit_breaker`]: a breaker's closed / open / half-open state over time against the
//!   dependency's health, calls rejected fast instead of failing slowly;
//! - [`check_storm_flattened`]: a self-check, the reader's back-off function run through the
//!   storm.

use crate::lab::check::Verdict;
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
pub(crate) use crate::lab::rt::run_paused;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, check_range,
    fmt_num,
};
use crate::primitives::resilience::{
    BreakerConfig, BreakerState, CircuitBreaker, Jitter, JitterRng, RetryPolicy, with_timeout,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The width of one load bucket, in ms.
pub const BUCKET_MS: u64 = 100;

/// A back-off function: the wait after failure number `failed` (1-based), given `u`, a
/// uniform random number in `[0, 1)` drawn for this wait.
pub type BackoffFn = Arc<dyn Fn(u32, f64) -> Duration + Send + Sync>;

/// Parameters of [`retry_storm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryStorm {
    /// Clients whose first call fails at the same moment (the dependency went down): 1..=20000.
    pub clients: usize,
    /// Calls the dependency answers per 100 ms once it is back; more in a bucket fail
    /// (overloaded): 1..=100000.
    pub capacity: u32,
    /// How long the dependency is down, from time 0, in ms: 0..=60000.
    pub outage_ms: u64,
    /// The first back-off wait, in ms: 1..=10000.
    pub base_ms: u64,
    /// The longest back-off wait, in ms: base_ms..=60000.
    pub max_delay_ms: u64,
    /// Attempts per client before it gives up: 1..=100.
    pub max_attempts: u32,
    /// Seed of the jitter: 0..=1000000.
    pub seed: u64,
}

impl Default for RetryStorm {
    fn default() -> Self {
        RetryStorm {
            clients: 1_000,
            capacity: 100,
            outage_ms: 2_000,
            base_ms: 100,
            max_delay_ms: 2_000,
            max_attempts: 30,
            seed: 1,
        }
    }
}

impl RetryStorm {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("clients", self.clients, 1..=20_000)?;
        check_range("capacity", self.capacity, 1..=100_000)?;
        check_range("outage_ms", self.outage_ms, 0..=60_000)?;
        check_range("base_ms", self.base_ms, 1..=10_000)?;
        check_range("max_delay_ms", self.max_delay_ms, self.base_ms..=60_000)?;
        check_range("max_attempts", self.max_attempts, 1..=100)?;
        check_range("seed", self.seed, 0..=1_000_000)
    }

    /// The policy of one run.
    pub fn policy(&self, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.base_ms),
            max_delay: Duration::from_millis(self.max_delay_ms),
            max_attempts: self.max_attempts,
            jitter,
        }
    }
}

/// One run of the storm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormRun {
    /// "no jitter", "full jitter", or the reader's.
    pub label: String,
    /// Calls that reached the dependency per 100 ms bucket, from time 0.
    pub calls: Vec<u32>,
    /// Calls answered successfully per bucket.
    pub ok: Vec<u32>,
    /// The most calls in one bucket once the dependency was back.
    pub peak_after_outage: u32,
    /// When the last client was served, ms after the outage ended (None: some gave up).
    pub recovered_after_ms: Option<f64>,
    /// Clients that gave up after `max_attempts` failures.
    pub gave_up: usize,
    /// Calls in all, and calls that failed.
    pub total_calls: u64,
    pub failed_calls: u64,
    /// Wall time of the simulation, ms.
    pub wall_ms: f64,
}

/// The simulated dependency: down until `outage`, then answering `capacity` calls per
/// bucket; the extra calls of a bucket fail.
struct Dependency {
    start: Instant,
    outage: Duration,
    capacity: u32,
    calls: Vec<u32>,
    ok: Vec<u32>,
}

impl Dependency {
    fn call(&mut self, now: Instant) -> bool {
        let since = now - self.start;
        let b = (since.as_millis() / BUCKET_MS as u128) as usize;
        if self.calls.len() <= b {
            self.calls.resize(b + 1, 0);
            self.ok.resize(b + 1, 0);
        }
        self.calls[b] += 1;
        let up = since >= self.outage && self.calls[b] <= self.capacity;
        if up {
            self.ok[b] += 1;
        }
        up
    }
}

/// Runs one storm on a paused clock: every client calls at time 0, and after each failure
/// waits `backoff(failed, u)`; records the calls per bucket.
pub fn simulate_storm(p: &RetryStorm, label: &str, backoff: BackoffFn) -> Result<StormRun, LabError> {
    let (seed, max_attempts) = (p.seed, p.max_attempts);
    run_storm(p, label, move |i, dep, start| {
        let backoff = backoff.clone();
        let mut rng = JitterRng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        async move {
            for attempt in 1..=max_attempts {
                if dep.call() {
                    return Some(Instant::now() - start);
                }
                if attempt < max_attempts {
                    // Bounded: no single wait beyond an hour of simulated time.
                    let d = backoff(attempt, rng.next_f64()).min(Duration::from_secs(3_600));
                    tokio::time::sleep(d).await;
                }
            }
            None
        }
    })
}

/// The dependency of a storm as its clients see it: [`SharedDependency::call`] is one call.
#[derive(Clone)]
pub(crate) struct SharedDependency(Rc<RefCell<Dependency>>);

impl SharedDependency {
    /// One call, now: whether it succeeded.
    pub(crate) fn call(&self) -> bool {
        self.0.borrow_mut().call(Instant::now())
    }
}

/// Runs a storm on a paused clock with `p.clients` clients, client `i` being
/// `client(i, dependency, start)`: a future that ends with the time it was served (since
/// `start`), or `None` when it gave up.
pub(crate) fn run_storm<F, Fut>(p: &RetryStorm, label: &str, client: F) -> Result<StormRun, LabError>
where
    F: Fn(usize, SharedDependency, Instant) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Duration>> + 'static,
{
    p.validate()?;
    let p2 = p.clone();
    let wall = std::time::Instant::now();
    let (calls, ok, served, gave_up) = run_paused(Rt::current().timeout(Duration::from_secs(60)), move || async move {
        let p = p2;
        let start = Instant::now();
        let dep = Rc::new(RefCell::new(Dependency {
            start,
            outage: Duration::from_millis(p.outage_ms),
            capacity: p.capacity,
            calls: Vec::new(),
            ok: Vec::new(),
        }));
        let clients = (0..p.clients).map(|i| client(i, SharedDependency(dep.clone()), start));
        let done = futures::future::join_all(clients).await;
        let served = done.iter().flatten().max().copied();
        let gave_up = done.iter().filter(|d| d.is_none()).count();
        let d = dep.borrow();
        (d.calls.clone(), d.ok.clone(), served, gave_up)
    })
    .map_err(|e| RunError::new(format!("the retry storm ({label})"), e))?;
    let first_up = (p.outage_ms / BUCKET_MS) as usize;
    let peak_after_outage = calls.iter().skip(first_up).copied().max().unwrap_or(0);
    let total_calls: u64 = calls.iter().map(|&c| c as u64).sum();
    let failed_calls = total_calls - ok.iter().map(|&c| c as u64).sum::<u64>();
    let recovered_after_ms =
        if gave_up == 0 { served.map(|s| (s.as_secs_f64() * 1e3 - p.outage_ms as f64).max(0.0)) } else { None };
    Ok(StormRun {
        label: label.into(),
        calls,
        ok,
        peak_after_outage,
        recovered_after_ms,
        gave_up,
        total_calls,
        failed_calls,
        wall_ms: wall.elapsed().as_secs_f64() * 1e3,
    })
}

/// Result of [`retry_storm`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryStormReport {
    pub params: RetryStorm,
    /// Without jitter, then with full jitter.
    pub runs: Vec<StormRun>,
    pub load: Load,
}

/// Label of the run without jitter.
pub const NO_JITTER: &str = "no jitter";
/// Label of the run with full jitter.
pub const FULL_JITTER: &str = "full jitter";

fn policy_fn(policy: RetryPolicy) -> BackoffFn {
    Arc::new(move |failed, u| policy.delay(failed, u))
}

/// `clients` clients all call a dependency at time 0, just as it goes down for
/// `outage_ms`; each retries with exponential back-off (`base_ms` doubling up to
/// `max_delay_ms`), once without jitter and once with full jitter. Once back, the
/// dependency answers `capacity` calls per 100 ms and fails the rest. Records the calls per
/// 100 ms, the peak after the outage and when the last client was served — on a paused
/// clock, so minutes of simulated time take milliseconds.
pub fn retry_storm(p: &RetryStorm) -> Result<RetryStormReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut runs = Vec::new();
    for (label, jitter) in [(NO_JITTER, Jitter::None), (FULL_JITTER, Jitter::Full)] {
        runs.push(simulate_storm(p, label, policy_fn(p.policy(jitter)))?);
    }
    Ok(RetryStormReport { params: p.clone(), runs, load: probe.finish() })
}

fn recovered_words(r: &StormRun) -> String {
    match r.recovered_after_ms {
        Some(ms) => format!("the last client was served {} s after the dependency came back", fmt_num(ms / 1e3)),
        None => format!("{} clients gave up after their last attempt", r.gave_up),
    }
}

impl RetryStormReport {
    /// The run with this label.
    pub fn run(&self, label: &str) -> Option<&StormRun> {
        self.runs.iter().find(|r| r.label == label)
    }
}

impl Report for RetryStormReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        if let (Some(a), Some(b)) = (self.run(NO_JITTER), self.run(FULL_JITTER)) {
            let cap = p.capacity as f64;
            out.push(Finding::clear(format!(
                "without jitter the {} clients retried in lock-step: a peak of {} calls in 100 ms once the dependency \
                 was up ({}× its capacity of {}); {}",
                p.clients,
                a.peak_after_outage,
                fmt_num(a.peak_after_outage as f64 / cap),
                p.capacity,
                recovered_words(a)
            )));
            out.push(Finding::clear(format!(
                "with full jitter the peak was {} calls in 100 ms ({}× capacity); {}",
                b.peak_after_outage,
                fmt_num(b.peak_after_outage as f64 / cap),
                recovered_words(b)
            )));
            let (pa, pb) = (a.peak_after_outage as f64, b.peak_after_outage as f64);
            out.push(if a.peak_after_outage == 0 && b.peak_after_outage == 0 {
                Finding::clear(format!(
                    "no call reached the dependency after it came back: every client used its {} attempts during the \
                     {} ms outage and gave up, so there was no storm — and nobody was served",
                    p.max_attempts, p.outage_ms
                ))
            } else if pa <= cap {
                Finding::clear(format!(
                    "no storm to flatten: with {} clients against a capacity of {} per 100 ms even a synchronized \
                     wave fits (peak {} without jitter, {} with), so no call failed for overload; jitter only spread \
                     the retries out{}",
                    p.clients,
                    p.capacity,
                    a.peak_after_outage,
                    b.peak_after_outage,
                    match (a.recovered_after_ms, b.recovered_after_ms) {
                        (Some(x), Some(y)) if y > x => format!(
                            ", and served the last client later ({} s vs {} s): a random wait is sometimes longer \
                             than needed",
                            fmt_num(y / 1e3),
                            fmt_num(x / 1e3)
                        ),
                        _ => String::new(),
                    }
                ))
            } else if pa >= 1.5 * pb {
                Finding::clear(format!(
                    "jitter cut the peak {}×: clients that failed together and wait the same 2^k × {} ms retry \
                     together, so every wave hits the recovering dependency at once and all but {} calls fail again; \
                     a random wait spreads each wave over its whole back-off window",
                    fmt_num(pa / pb.max(1.0)),
                    p.base_ms,
                    p.capacity
                ))
            } else {
                Finding::clear(format!(
                    "jitter did not lower the peak here ({} without, {} with): the peak is measured from the moment \
                     the dependency is back{}; jitter spreads the retries, not a burst that is already there",
                    a.peak_after_outage,
                    b.peak_after_outage,
                    if p.outage_ms < p.base_ms {
                        ", which here is the first 100 ms, where every client's first call lands at once"
                    } else {
                        ""
                    }
                ))
            });
            let first_up = (p.outage_ms / BUCKET_MS) as usize;
            let wasted = |r: &StormRun| -> u32 { r.calls.iter().zip(&r.ok).skip(first_up).map(|(c, o)| c - o).sum() };
            out.push(Finding::clear(format!(
                "calls in all: {} without jitter ({} failed, {} of them after the outage), {} with full jitter \
                 ({} failed, {} after the outage){}",
                a.total_calls,
                a.failed_calls,
                wasted(a),
                b.total_calls,
                b.failed_calls,
                wasted(b),
                if wasted(b) < wasted(a) {
                    " — failures after the outage are load the recovering dependency did not need"
                } else {
                    ""
                }
            )));
            out.push(Finding::note(format!(
                "simulated on tokio's paused clock: {} s of simulated time took {} ms of wall time",
                fmt_num(a.calls.len().max(b.calls.len()) as f64 * BUCKET_MS as f64 / 1e3),
                fmt_num(a.wall_ms + b.wall_ms)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        storm_figures(&self.params, &self.runs, &self.load)
    }

    fn table(&self) -> Table {
        storm_table(&self.runs)
    }
}

/// The storm figure: calls per 100 ms over time, one line per run, and the capacity.
pub(crate) fn storm_figures(p: &RetryStorm, runs: &[StormRun], load: &Load) -> Vec<Figure> {
    let mut f = Figure::lines(
        &format!(
            "Retry storm: {} clients against a dependency down for {} s (calls per 100 ms)",
            p.clients,
            fmt_num(p.outage_ms as f64 / 1e3)
        ),
        "simulated time (s)",
        "calls per 100 ms",
    );
    let len = runs.iter().map(|r| r.calls.len()).max().unwrap_or(0);
    for r in runs {
        let pts =
            r.calls.iter().enumerate().map(|(i, &c)| Point::new(i as f64 * BUCKET_MS as f64 / 1e3, c as f64)).collect();
        f = f.series(Series::new(r.label.clone(), Style::Measured, pts));
    }
    let end = len as f64 * BUCKET_MS as f64 / 1e3;
    let cap = p.capacity as f64;
    f = f.series(Series::new(
        "capacity",
        Style::Ideal,
        vec![Point::new(p.outage_ms as f64 / 1e3, cap), Point::new(end.max(0.1), cap)],
    ));
    let f =
        f.note("The dependency is down from 0; afterwards it answers `capacity` calls per 100 ms and fails the rest.");
    vec![mark_busy(f, load)]
}

/// The storm table: one row per run.
pub(crate) fn storm_table(runs: &[StormRun]) -> Table {
    let mut t = Table::new(
        "Retry storm: load on the recovering dependency",
        &["back-off", "peak calls/100 ms after outage", "served all after (s)", "calls", "failed", "gave up"],
    );
    for r in runs {
        t.row(vec![
            r.label.clone(),
            r.peak_after_outage.to_string(),
            r.recovered_after_ms.map_or("—".into(), |ms| fmt_num(ms / 1e3)),
            r.total_calls.to_string(),
            r.failed_calls.to_string(),
            r.gave_up.to_string(),
        ]);
    }
    t.note("Simulated on a paused clock; the same seed gives the same numbers.");
    t
}

const STORM_EXERCISE: &str = "jitter flattens the retry storm";

/// Self-check: runs the default [`RetryStorm`] with the reader's back-off function
/// (`backoff(failed, u)`: the wait after failure number `failed`, 1-based, with `u` uniform
/// in `[0, 1)`) and measures the peak load once the dependency is back. Passes when the
/// peak is at most 1.5× the dependency's capacity and every client was served.
///
/// ```
/// use conclab::experiments::advanced::patterns::check_storm_flattened;
/// use std::time::Duration;
/// // Exponential back-off without jitter: the storm stays.
/// let v = check_storm_flattened(|failed, _u| Duration::from_millis((100u64 << (failed - 1).min(10)).min(2_000)));
/// assert!(!v.passed);
/// ```
pub fn check_storm_flattened(backoff: impl Fn(u32, f64) -> Duration + Send + Sync + 'static) -> Verdict {
    let p = RetryStorm::default();
    let run = match simulate_storm(&p, "yours", Arc::new(backoff)) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::not_yet(STORM_EXERCISE, format!("the simulation failed: {e}"), "return finite waits");
        }
    };
    let limit = p.capacity as f64 * 1.5;
    let detail = format!(
        "peak {} calls per 100 ms after the outage (capacity {}, limit {}); {}",
        run.peak_after_outage,
        p.capacity,
        fmt_num(limit),
        recovered_words(&run)
    );
    if run.gave_up > 0 {
        Verdict::not_yet(STORM_EXERCISE, detail, "keep retrying: the waits must grow, but not beyond a cap")
    } else if run.peak_after_outage as f64 > limit {
        Verdict::not_yet(
            STORM_EXERCISE,
            detail,
            "clients that fail together and wait the same time retry together: multiply the wait by u",
        )
    } else {
        Verdict::pass(STORM_EXERCISE, detail)
    }
}

/// Parameters of [`circuit_breaker`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerRun {
    /// Clients, each calling once per `period_ms` (after its previous call ended): 1..=1000.
    pub clients: usize,
    /// Each client's call period, in ms: 1..=10000.
    pub period_ms: u64,
    /// Simulated run time, in ms: 100..=600000.
    pub run_ms: u64,
    /// The dependency fails from this time, in ms: 0..=600000.
    pub down_at_ms: u64,
    /// … for this long, in ms: 0..=600000.
    pub down_for_ms: u64,
    /// A healthy call's latency, in ms: 0..=10000.
    pub call_ms: u64,
    /// A call to the failing dependency hangs until this timeout, in ms: 1..=60000.
    pub timeout_ms: u64,
    /// Consecutive failures that open the breaker: 1..=1000.
    pub failure_threshold: u32,
    /// How long the breaker stays open before trying again, in ms: 1..=600000.
    pub open_ms: u64,
    /// Trial calls when half-open (and successes needed to close): 1..=100.
    pub half_open_trials: u32,
    /// Seed of the clients' start phases: 0..=1000000.
    pub seed: u64,
}

impl Default for CircuitBreakerRun {
    fn default() -> Self {
        CircuitBreakerRun {
            clients: 20,
            period_ms: 50,
            run_ms: 10_000,
            down_at_ms: 2_000,
            down_for_ms: 3_000,
            call_ms: 5,
            timeout_ms: 500,
            failure_threshold: 5,
            open_ms: 1_000,
            half_open_trials: 3,
            seed: 1,
        }
    }
}

impl CircuitBreakerRun {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("clients", self.clients, 1..=1_000)?;
        check_range("period_ms", self.period_ms, 1..=10_000)?;
        check_range("run_ms", self.run_ms, 100..=600_000)?;
        check_range("down_at_ms", self.down_at_ms, 0..=600_000)?;
        check_range("down_for_ms", self.down_for_ms, 0..=600_000)?;
        check_range("call_ms", self.call_ms, 0..=10_000)?;
        check_range("timeout_ms", self.timeout_ms, 1..=60_000)?;
        check_range("failure_threshold", self.failure_threshold, 1..=1_000)?;
        check_range("open_ms", self.open_ms, 1..=600_000)?;
        check_range("half_open_trials", self.half_open_trials, 1..=100)?;
        check_range("seed", self.seed, 0..=1_000_000)?;
        // Bounded work: calls in all at most 2 million.
        let calls = self.clients as u64 * (self.run_ms / self.period_ms.max(1) + 1);
        check_range("clients × run_ms / period_ms", calls, 1..=2_000_000)
    }

    fn down(&self, at_ms: f64) -> bool {
        at_ms >= self.down_at_ms as f64 && at_ms < (self.down_at_ms + self.down_for_ms) as f64
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CallOutcome {
    /// Answered.
    Ok,
    /// Reached the failing dependency and timed out.
    FailedSlow,
    /// Refused by the open breaker without calling.
    RejectedFast,
}

/// One call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CallRecord {
    /// Start, ms of simulated time.
    pub at_ms: f64,
    pub latency_ms: f64,
    pub outcome: CallOutcome,
}

/// One run: with or without the breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerRun {
    /// "no breaker" or "circuit breaker".
    pub label: String,
    pub calls: Vec<CallRecord>,
    /// The breaker's state changes (ms, state); empty without a breaker.
    pub transitions: Vec<(f64, BreakerState)>,
}

impl BreakerRun {
    /// Calls with this outcome.
    pub fn count(&self, o: CallOutcome) -> usize {
        self.calls.iter().filter(|c| c.outcome == o).count()
    }

    /// Mean latency of the calls with this outcome, ms.
    pub fn mean_latency(&self, o: CallOutcome) -> f64 {
        let v: Vec<f64> = self.calls.iter().filter(|c| c.outcome == o).map(|c| c.latency_ms).collect();
        if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
    }

    /// Calls that reached the dependency while it was down.
    pub fn sent_to_sick(&self) -> usize {
        self.count(CallOutcome::FailedSlow)
    }
}

/// Result of [`circuit_breaker`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreakerReport {
    pub params: CircuitBreakerRun,
    /// Without, then with the breaker.
    pub runs: Vec<BreakerRun>,
    pub load: Load,
}

/// Label of the run without a breaker.
pub const NO_BREAKER: &str = "no breaker";
/// Label of the run with the breaker.
pub const WITH_BREAKER: &str = "circuit breaker";

async fn breaker_run(p: CircuitBreakerRun, with: bool) -> BreakerRun {
    let start = Instant::now();
    let ms = move |t: Instant| (t - start).as_secs_f64() * 1e3;
    let cfg = BreakerConfig {
        failure_threshold: p.failure_threshold,
        open_for: Duration::from_millis(p.open_ms),
        half_open_trials: p.half_open_trials,
    };
    let breaker = Rc::new(RefCell::new(CircuitBreaker::new(cfg, start)));
    let calls = Rc::new(RefCell::new(Vec::new()));
    let end = start + Duration::from_millis(p.run_ms);
    let mut rng = JitterRng::new(p.seed);
    let clients = (0..p.clients).map(|_| {
        let phase = Duration::from_secs_f64(rng.next_f64() * p.period_ms as f64 / 1e3);
        let (breaker, calls, p) = (breaker.clone(), calls.clone(), p.clone());
        async move {
            let mut next = start + phase;
            tokio::time::sleep_until(next).await;
            while Instant::now() < end {
                let t = Instant::now();
                let outcome = if with && breaker.borrow_mut().try_acquire(t).is_err() {
                    CallOutcome::RejectedFast
                } else {
                    let sick = p.down(ms(t));
                    let call = async {
                        if sick {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_millis(p.call_ms)).await;
                    };
                    let ok = with_timeout(Duration::from_millis(p.timeout_ms), call).await.is_ok();
                    if with {
                        breaker.borrow_mut().record(Instant::now(), ok);
                    }
                    if ok { CallOutcome::Ok } else { CallOutcome::FailedSlow }
                };
                calls.borrow_mut().push(CallRecord { at_ms: ms(t), latency_ms: ms(Instant::now()) - ms(t), outcome });
                next += Duration::from_millis(p.period_ms);
                next = next.max(Instant::now());
                tokio::time::sleep_until(next).await;
            }
        }
    });
    futures::future::join_all(clients).await;
    let mut calls = calls.take();
    calls.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let transitions =
        if with { breaker.borrow().transitions().iter().map(|(t, s)| (ms(*t), *s)).collect() } else { Vec::new() };
    BreakerRun { label: if with { WITH_BREAKER } else { NO_BREAKER }.into(), calls, transitions }
}

/// `clients` clients call a dependency every `period_ms`; it answers in `call_ms`, except
/// from `down_at_ms` for `down_for_ms`, when calls hang until `timeout_ms`. Run without a
/// breaker and with a [`CircuitBreaker`] (opens after `failure_threshold` consecutive
/// failures, stays open `open_ms`, closes after `half_open_trials` successful trials), on a
/// paused clock; records every call and the breaker's state changes.
pub fn circuit_breaker(p: &CircuitBreakerRun) -> Result<CircuitBreakerReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut runs = Vec::new();
    for with in [false, true] {
        let p2 = p.clone();
        let run = run_paused(Rt::current().timeout(Duration::from_secs(60)), move || breaker_run(p2, with))
            .map_err(|e| RunError::new("the circuit-breaker simulation", e))?;
        runs.push(run);
    }
    Ok(CircuitBreakerReport { params: p.clone(), runs, load: probe.finish() })
}

impl CircuitBreakerReport {
    /// The run with this label.
    pub fn run(&self, label: &str) -> Option<&BreakerRun> {
        self.runs.iter().find(|r| r.label == label)
    }

    /// Spans of the breaker's states: (start ms, end ms, state).
    pub fn breaker_spans(&self) -> Vec<(f64, f64, BreakerState)> {
        let Some(r) = self.run(WITH_BREAKER) else { return Vec::new() };
        let end = self.params.run_ms as f64;
        let mut out: Vec<(f64, f64, BreakerState)> = Vec::new();
        for (i, (t, s)) in r.transitions.iter().enumerate() {
            let until = r.transitions.get(i + 1).map_or(end, |n| n.0).min(end);
            if until > *t {
                out.push((*t, until, *s));
            }
        }
        out
    }
}

impl Report for CircuitBreakerReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        if let (Some(a), Some(b)) = (self.run(NO_BREAKER), self.run(WITH_BREAKER)) {
            let down_end = (p.down_at_ms + p.down_for_ms) as f64;
            let opened = b.transitions.iter().find(|(t, s)| *s == BreakerState::Open && *t >= p.down_at_ms as f64);
            out.push(match opened {
                Some((t, _)) => Finding::clear(format!(
                    "the breaker opened {} ms after the dependency started failing ({} consecutive timeouts of {} ms)",
                    fmt_num(t - p.down_at_ms as f64),
                    p.failure_threshold,
                    p.timeout_ms
                )),
                None => Finding::clear("the breaker never opened: too few consecutive failures in this run"),
            });
            let rej = b.count(CallOutcome::RejectedFast);
            out.push(Finding::clear(format!(
                "with the breaker {} calls were rejected fast (mean {} ms) and {} failed slow (mean {} ms); without \
                 it {} calls failed slow, each waiting its {} ms timeout",
                rej,
                fmt_num(b.mean_latency(CallOutcome::RejectedFast)),
                b.count(CallOutcome::FailedSlow),
                fmt_num(b.mean_latency(CallOutcome::FailedSlow)),
                a.count(CallOutcome::FailedSlow),
                p.timeout_ms
            )));
            let (sa, sb) = (a.sent_to_sick(), b.sent_to_sick());
            out.push(if sb < sa {
                Finding::clear(format!(
                    "the failing dependency received {sb} calls with the breaker vs {sa} without ({}× fewer): an open \
                     breaker gives a sick service room to recover, and only half-open trials probe it",
                    fmt_num(sa as f64 / sb.max(1) as f64)
                ))
            } else {
                Finding::clear(format!(
                    "the failing dependency received {sb} calls with the breaker vs {sa} without: the breaker did \
                     not spare it here"
                ))
            });
            let closed = b.transitions.iter().find(|(t, s)| *s == BreakerState::Closed && *t >= down_end);
            out.push(match closed {
                Some((t, _)) => Finding::clear(format!(
                    "after the dependency recovered the breaker closed {} ms later — the cost of a breaker: calls \
                     are still rejected until its open period ends and {} trial calls succeed; {} rejected while \
                     the dependency was healthy",
                    fmt_num(t - down_end),
                    p.half_open_trials,
                    match b.calls.iter().filter(|c| c.outcome == CallOutcome::RejectedFast && !p.down(c.at_ms)).count()
                    {
                        1 => "1 call was".to_string(),
                        n => format!("{n} calls were"),
                    }
                )),
                None => Finding::clear("the breaker had not closed again by the end of the run"),
            });
            out.push(Finding::clear(format!(
                "answered calls: {} without the breaker, {} with it",
                a.count(CallOutcome::Ok),
                b.count(CallOutcome::Ok)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut t =
            Figure::timeline("Circuit breaker state against the dependency's health", "simulated time (ms)", "");
        let (d0, d1) = (p.down_at_ms as f64, ((p.down_at_ms + p.down_for_ms) as f64).min(p.run_ms as f64));
        if d0 > 0.0 {
            t = t.span("dependency", "healthy", 0.0, d0.min(p.run_ms as f64));
        }
        if d1 > d0 {
            t = t.span("dependency", "failing", d0, d1);
        }
        if (p.run_ms as f64) > d1 {
            t = t.span("dependency", "healthy", d1, p.run_ms as f64);
        }
        // Colours follow the order keys first appear: open takes red, closed green.
        let mut spans = self.breaker_spans();
        spans.sort_by_key(|(_, _, s)| match s {
            BreakerState::Open => 0,
            BreakerState::Closed => 1,
            BreakerState::HalfOpen => 2,
        });
        for (a, b, s) in spans {
            t = t.span("breaker", s.name(), a, b);
        }
        let mut l = Figure::lines(
            "Mean call latency per 100 ms: calls wait out their timeout vs rejected fast",
            "simulated time (ms)",
            "mean latency (ms)",
        );
        let buckets = (p.run_ms / BUCKET_MS + 1) as usize;
        for r in &self.runs {
            let mut sum = vec![0.0; buckets];
            let mut n = vec![0u32; buckets];
            for c in &r.calls {
                let b = ((c.at_ms / BUCKET_MS as f64) as usize).min(buckets - 1);
                sum[b] += c.latency_ms;
                n[b] += 1;
            }
            let pts = (0..buckets)
                .filter(|&b| n[b] > 0)
                .map(|b| Point::new(b as f64 * BUCKET_MS as f64, sum[b] / n[b] as f64))
                .collect();
            l = l.series(Series::new(r.label.clone(), Style::Measured, pts));
        }
        vec![mark_busy(t, &self.load), mark_busy(l, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Calls with and without a circuit breaker",
            &["run", "ok", "failed slow", "rejected fast", "mean ms (failed)", "mean ms (rejected)", "breaker changes"],
        );
        for r in &self.runs {
            t.row(vec![
                r.label.clone(),
                r.count(CallOutcome::Ok).to_string(),
                r.count(CallOutcome::FailedSlow).to_string(),
                r.count(CallOutcome::RejectedFast).to_string(),
                fmt_num(r.mean_latency(CallOutcome::FailedSlow)),
                fmt_num(r.mean_latency(CallOutcome::RejectedFast)),
                r.transitions.len().saturating_sub(1).to_string(),
            ]);
        }
        t.note("Simulated on a paused clock.");
        t
    }
}

/// Parameters of [`load_shedding`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadShedding {
    /// Requests served at once (the service's capacity is workers / service_ms): 1..=1000.
    pub workers: usize,
    /// Mean service time of a request (exponentially distributed), in ms: 1..=10000.
    pub service_ms: u64,
    /// Offered load at the start, as a multiple of capacity: 0.05..=10.
    pub start_load: f64,
    /// Offered load at the end of the ramp: 0.05..=10.
    pub end_load: f64,
    /// Length of the ramp, in ms of simulated time: 100..=600000.
    pub ramp_ms: u64,
    /// The shedder's limit: requests admitted at once (in service + queued): 1..=100000.
    pub limit: usize,
    /// A response slower than this does not count as goodput, in ms: 1..=600000.
    pub slo_ms: u64,
    /// Seed of arrivals and service times: 0..=1000000.
    pub seed: u64,
}

impl Default for LoadShedding {
    fn default() -> Self {
        LoadShedding {
            workers: 4,
            service_ms: 10,
            start_load: 0.5,
            end_load: 2.0,
            ramp_ms: 10_000,
            limit: 16,
            slo_ms: 200,
            seed: 1,
        }
    }
}

impl LoadShedding {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("workers", self.workers, 1..=1_000)?;
        check_range("service_ms", self.service_ms, 1..=10_000)?;
        check_range("start_load", self.start_load, 0.05..=10.0)?;
        check_range("end_load", self.end_load, 0.05..=10.0)?;
        check_range("ramp_ms", self.ramp_ms, 100..=600_000)?;
        check_range("limit", self.limit, 1..=100_000)?;
        check_range("slo_ms", self.slo_ms, 1..=600_000)?;
        check_range("seed", self.seed, 0..=1_000_000)?;
        check_range("requests (offered load × capacity × ramp)", self.expected_requests(), 0..=200_000)
    }

    /// Requests the service completes per second at most.
    pub fn capacity_per_s(&self) -> f64 {
        self.workers as f64 * 1e3 / self.service_ms as f64
    }

    /// About how many requests the ramp offers.
    pub fn expected_requests(&self) -> u64 {
        ((self.start_load + self.end_load) / 2.0 * self.capacity_per_s() * self.ramp_ms as f64 / 1e3) as u64
    }

    /// The offered load (× capacity) at `t_ms` into the ramp.
    pub fn load_at(&self, t_ms: f64) -> f64 {
        self.start_load + (self.end_load - self.start_load) * (t_ms / self.ramp_ms as f64).clamp(0.0, 1.0)
    }

    /// The requests, deterministic for the seed: (arrival, service time), by arrival; a
    /// Poisson stream whose rate follows the ramp.
    pub fn arrivals(&self) -> Vec<(Duration, Duration)> {
        let mut rng = JitterRng::new(self.seed);
        let cap_per_ms = self.capacity_per_s() / 1e3;
        let mut t = 0.0;
        let mut out = Vec::new();
        loop {
            let rate = self.load_at(t) * cap_per_ms;
            t += -(1.0 - rng.next_f64()).ln() / rate;
            if t >= self.ramp_ms as f64 {
                return out;
            }
            let service = -(1.0 - rng.next_f64()).ln() * self.service_ms as f64;
            out.push((Duration::from_secs_f64(t / 1e3), Duration::from_secs_f64(service / 1e3)));
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RequestRecord {
    /// Arrival, ms of simulated time.
    pub at_ms: f64,
    /// Time to the response (or to the rejection), ms.
    pub latency_ms: f64,
    /// Served (false: rejected at once).
    pub served: bool,
}

/// One run of a server under the ramp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerRun {
    /// What protects the server: "no limit", "load shedder (limit n)", a tower stack, ….
    pub label: String,
    /// One per request, by arrival.
    pub requests: Vec<RequestRecord>,
}

/// A window of arrivals in a [`ServerRun`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    /// The window's start, ms.
    pub at_ms: f64,
    /// Offered load, × capacity.
    pub offered: f64,
    /// Served responses within the SLO, per s.
    pub goodput: f64,
    /// Rejected requests, per s.
    pub rejected: f64,
    /// Latency of the served requests, ms (0 when none).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The window width of [`ServerRun::windows`], ms.
pub const WINDOW_MS: f64 = 500.0;

impl ServerRun {
    /// Per [`WINDOW_MS`] of arrivals: goodput, rejections, latency.
    pub fn windows(&self, p: &LoadShedding) -> Vec<Window> {
        let n = (p.ramp_ms as f64 / WINDOW_MS).ceil() as usize;
        (0..n)
            .map(|i| {
                let (a, b) = (i as f64 * WINDOW_MS, (i + 1) as f64 * WINDOW_MS);
                let inside: Vec<&RequestRecord> =
                    self.requests.iter().filter(|r| r.at_ms >= a && r.at_ms < b).collect();
                let mut lat: Vec<f64> = inside.iter().filter(|r| r.served).map(|r| r.latency_ms).collect();
                lat.sort_by(f64::total_cmp);
                let q = |x| if lat.is_empty() { 0.0 } else { crate::lab::timing::quantile_sorted(&lat, x) };
                let per_s = 1e3 / WINDOW_MS;
                Window {
                    at_ms: a,
                    offered: p.load_at(a + WINDOW_MS / 2.0),
                    goodput: lat.iter().filter(|&&l| l <= p.slo_ms as f64).count() as f64 * per_s,
                    rejected: inside.iter().filter(|r| !r.served).count() as f64 * per_s,
                    p50_ms: q(0.5),
                    p99_ms: q(0.99),
                }
            })
            .collect()
    }

    /// (served, rejected, served within the SLO).
    pub fn totals(&self, slo_ms: u64) -> (usize, usize, usize) {
        let served = self.requests.iter().filter(|r| r.served).count();
        let good = self.requests.iter().filter(|r| r.served && r.latency_ms <= slo_ms as f64).count();
        (served, self.requests.len() - served, good)
    }

    /// p99 latency of the served requests, ms.
    pub fn p99_ms(&self) -> f64 {
        let mut lat: Vec<f64> = self.requests.iter().filter(|r| r.served).map(|r| r.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        if lat.is_empty() { 0.0 } else { crate::lab::timing::quantile_sorted(&lat, 0.99) }
    }
}

/// Runs the ramp's requests against `workers` workers (a FIFO `Semaphore`); with
/// `limit`, a [`crate::primitives::resilience::LoadShedder`] in front refuses a request at
/// once when `limit` are already admitted. On a paused clock.
pub fn simulate_server(p: &LoadShedding, limit: Option<usize>) -> Result<ServerRun, LabError> {
    p.validate()?;
    let arrivals = p.arrivals();
    let workers = p.workers;
    let requests = run_paused(Rt::current().timeout(Duration::from_secs(60)), move || async move {
        let start = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(workers));
        let shedder = limit.map(crate::primitives::resilience::LoadShedder::new);
        let mut handles = Vec::with_capacity(arrivals.len());
        for (at, service) in arrivals {
            tokio::time::sleep_until(start + at).await;
            let (sem, shedder) = (sem.clone(), shedder.clone());
            handles.push(tokio::spawn(async move {
                let t = Instant::now();
                let admitted = match &shedder {
                    Some(s) => s.try_acquire().ok().map(Some),
                    None => Some(None),
                };
                let served = match admitted {
                    Some(_place) => {
                        let _worker = sem.acquire().await.expect("never closed");
                        tokio::time::sleep(service).await;
                        true
                    }
                    None => false,
                };
                let ms = |x: Instant| (x - start).as_secs_f64() * 1e3;
                RequestRecord { at_ms: ms(t), latency_ms: ms(Instant::now()) - ms(t), served }
            }));
        }
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("a request task panicked"));
        }
        out
    })
    .map_err(|e| RunError::new("the load-shedding simulation", e))?;
    let label = match limit {
        None => NO_LIMIT.to_string(),
        Some(n) => format!("load shedder (limit {n})"),
    };
    Ok(ServerRun { label, requests })
}

/// Label of the run without a limit.
pub const NO_LIMIT: &str = "no limit";

/// Result of [`load_shedding`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSheddingReport {
    pub params: LoadShedding,
    /// Without a limit, then with the shedder.
    pub runs: Vec<ServerRun>,
    pub load: Load,
}

/// Offered load ramps from `start_load` to `end_load` × capacity over `ramp_ms` (Poisson
/// arrivals, exponential service times, `workers` at once): once without any limit (the
/// queue grows), once with a [`crate::primitives::resilience::LoadShedder`] admitting
/// `limit` requests at once. Records every request's latency or rejection; paused clock.
pub fn load_shedding(p: &LoadShedding) -> Result<LoadSheddingReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let runs = vec![simulate_server(p, None)?, simulate_server(p, Some(p.limit))?];
    Ok(LoadSheddingReport { params: p.clone(), runs, load: probe.finish() })
}

/// Findings shared by [`LoadSheddingReport`] and the tower comparison: per run, totals,
/// p99, and the last window's latency.
pub(crate) fn server_findings(p: &LoadShedding, runs: &[ServerRun]) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in runs {
        let (served, rejected, good) = r.totals(p.slo_ms);
        let w = r.windows(p);
        let last = w.last().copied();
        out.push(Finding::clear(format!(
            "{}: {} served ({} within the {} ms SLO), {} rejected; p99 latency {} ms overall{}",
            r.label,
            served,
            good,
            p.slo_ms,
            rejected,
            fmt_num(r.p99_ms()),
            last.map_or(String::new(), |l| format!(
                ", {} ms in the last window (offered {}× capacity)",
                fmt_num(l.p99_ms),
                fmt_num(l.offered)
            ))
        )));
    }
    out
}

impl Report for LoadSheddingReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = server_findings(p, &self.runs);
        if let [a, b] = &self.runs[..] {
            let wa = a.windows(p);
            let over = wa.iter().position(|w| w.offered > 1.0);
            let (pa, pb) = (a.p99_ms(), b.p99_ms());
            out.push(if pa > 2.0 * pb {
                Finding::clear(format!(
                    "past capacity{} the unlimited queue only grows: every new request waits behind all the earlier \
                     ones, so latency climbs for as long as the overload lasts (p99 {} ms); the shedder keeps at \
                     most {} requests admitted, so a served request waits behind at most that many, about {} × {} ms \
                     / {} = {} ms on average, and its p99 stays at {} ms",
                    over.map_or(String::new(), |i| format!(" (from {} s)", fmt_num(wa[i].at_ms / 1e3))),
                    fmt_num(pa),
                    p.limit,
                    p.limit,
                    p.service_ms,
                    p.workers,
                    fmt_num(p.limit as f64 * p.service_ms as f64 / p.workers as f64),
                    fmt_num(pb)
                ))
            } else if pb > p.slo_ms as f64 {
                Finding::clear(format!(
                    "the p99 latency was {} ms without a limit and {} ms with the shedder: a limit of {} lets a \
                     request wait behind up to {} others, about {} × {} ms / {} = {} ms — past the {} ms SLO, so \
                     this limit bounds the queue but not within the time that matters",
                    fmt_num(pa),
                    fmt_num(pb),
                    p.limit,
                    p.limit,
                    p.limit,
                    p.service_ms,
                    p.workers,
                    fmt_num(p.limit as f64 * p.service_ms as f64 / p.workers as f64),
                    p.slo_ms
                ))
            } else {
                Finding::clear(format!(
                    "the p99 latency was {} ms without a limit and {} ms with the shedder: the overload was too \
                     short or too light for the queue to grow much",
                    fmt_num(pa),
                    fmt_num(pb)
                ))
            });
            let (ga, gb) = (a.totals(p.slo_ms).2, b.totals(p.slo_ms).2);
            out.push(Finding::clear(format!(
                "goodput (responses within {} ms): {} without a limit vs {} with the shedder{}",
                p.slo_ms,
                ga,
                gb,
                if gb > ga {
                    " — without a limit the server stays busy, but on requests whose answer comes too late to matter"
                } else {
                    ""
                }
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        server_figures(&self.params, &self.runs, &self.load)
    }

    fn table(&self) -> Table {
        server_table(&self.params, &self.runs)
    }
}

/// p99 latency and goodput per window, one series per run.
pub(crate) fn server_figures(p: &LoadShedding, runs: &[ServerRun], load: &Load) -> Vec<Figure> {
    let mut lat = Figure::lines(
        &format!("Latency as offered load ramps from {}× to {}× capacity", fmt_num(p.start_load), fmt_num(p.end_load)),
        "offered load (× capacity)",
        "latency of served requests (ms); p99, band p50–p99",
    )
    .log_y();
    let mut good = Figure::lines("Goodput and rejections", "offered load (× capacity)", "requests per s");
    for r in runs {
        let w = r.windows(p);
        let pts = w
            .iter()
            .filter(|w| w.p99_ms > 0.0)
            .map(|w| Point::spread(w.offered, w.p99_ms, w.p50_ms.max(1e-3), w.p99_ms))
            .collect();
        lat = lat.series(Series::new(r.label.clone(), Style::Measured, pts));
        good = good.series(Series::new(
            format!("{}: goodput", r.label),
            Style::Measured,
            w.iter().map(|w| Point::new(w.offered, w.goodput)).collect(),
        ));
        if w.iter().any(|w| w.rejected > 0.0) {
            good = good.series(Series::new(
                format!("{}: rejected", r.label),
                Style::Measured,
                w.iter().map(|w| Point::new(w.offered, w.rejected)).collect(),
            ));
        }
    }
    let cap = p.capacity_per_s();
    let (lo, hi) = (p.start_load.min(p.end_load), p.start_load.max(p.end_load));
    good = good.series(Series::new("capacity", Style::Ideal, vec![Point::new(lo, cap), Point::new(hi, cap)]));
    let good = good.note(format!("Goodput: responses within the {} ms SLO.", p.slo_ms));
    vec![mark_busy(lat, load), mark_busy(good, load)]
}

/// Totals per run.
pub(crate) fn server_table(p: &LoadShedding, runs: &[ServerRun]) -> Table {
    let mut t = Table::new(
        "Under a load ramp: served, rejected, latency",
        &["server", "requests", "served", "within SLO", "rejected", "p50 ms", "p99 ms"],
    );
    for r in runs {
        let (served, rejected, good) = r.totals(p.slo_ms);
        let mut lat: Vec<f64> = r.requests.iter().filter(|r| r.served).map(|r| r.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        let p50 = if lat.is_empty() { 0.0 } else { crate::lab::timing::quantile_sorted(&lat, 0.5) };
        t.row(vec![
            r.label.clone(),
            r.requests.len().to_string(),
            served.to_string(),
            good.to_string(),
            rejected.to_string(),
            fmt_num(p50),
            fmt_num(r.p99_ms()),
        ]);
    }
    t.note(format!(
        "Capacity {} requests/s ({} workers, {} ms mean service); simulated on a paused clock.",
        fmt_num(p.capacity_per_s()),
        p.workers,
        p.service_ms
    ));
    t
}

/// Parameters of [`graceful_shutdown`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GracefulShutdown {
    /// Requests arriving per second (Poisson): 1..=10000.
    pub rate_per_s: u64,
    /// Each request takes a uniform 1..=this many ms: 1..=60000.
    pub max_request_ms: u64,
    /// When the server stops accepting, in ms: 100..=600000.
    pub stop_at_ms: u64,
    /// How long it then waits for requests in flight before aborting them, in ms: 0..=600000.
    pub deadline_ms: u64,
    /// Seed of arrivals and request lengths: 0..=1000000.
    pub seed: u64,
}

impl Default for GracefulShutdown {
    fn default() -> Self {
        GracefulShutdown { rate_per_s: 200, max_request_ms: 2_000, stop_at_ms: 3_000, deadline_ms: 1_000, seed: 1 }
    }
}

impl GracefulShutdown {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("rate_per_s", self.rate_per_s, 1..=10_000)?;
        check_range("max_request_ms", self.max_request_ms, 1..=60_000)?;
        check_range("stop_at_ms", self.stop_at_ms, 100..=600_000)?;
        check_range("deadline_ms", self.deadline_ms, 0..=600_000)?;
        check_range("seed", self.seed, 0..=1_000_000)?;
        let requests = self.rate_per_s * (self.stop_at_ms + self.deadline_ms) / 1_000;
        check_range("rate_per_s × (stop_at_ms + deadline_ms)", requests, 0..=500_000)
    }
}

/// Result of [`graceful_shutdown`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GracefulShutdownReport {
    pub params: GracefulShutdown,
    /// Accepted requests: (start ms, end ms, or None when aborted at the deadline).
    pub accepted: Vec<(f64, Option<f64>)>,
    /// Requests refused after the stop.
    pub refused: usize,
    /// When the drain ended (all done, or the deadline), ms.
    pub drained_at_ms: f64,
    pub load: Load,
}

impl GracefulShutdownReport {
    /// Requests in flight at the stop.
    pub fn in_flight_at_stop(&self) -> usize {
        let stop = self.params.stop_at_ms as f64;
        self.accepted.iter().filter(|(_, e)| e.is_none_or(|e| e > stop)).count()
    }

    /// Requests aborted at the deadline.
    pub fn aborted(&self) -> usize {
        self.accepted.iter().filter(|(_, e)| e.is_none()).count()
    }
}

/// A server accepts requests (each a task in a `JoinSet`, lasting 1..=`max_request_ms`)
/// until `stop_at_ms`; then it stops accepting (later arrivals are refused), waits up to
/// `deadline_ms` for the requests in flight to finish (drain), and aborts the rest. On a
/// paused clock.
pub fn graceful_shutdown(p: &GracefulShutdown) -> Result<GracefulShutdownReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let q = p.clone();
    let (accepted, refused, drained_at_ms) =
        run_paused(Rt::current().timeout(Duration::from_secs(60)), move || async move {
            let p = q;
            let start = Instant::now();
            let ms = move |t: Instant| (t - start).as_secs_f64() * 1e3;
            let mut rng = JitterRng::new(p.seed);
            let stop = start + Duration::from_millis(p.stop_at_ms);
            let deadline = stop + Duration::from_millis(p.deadline_ms);
            let ends = Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut set = tokio::task::JoinSet::new();
            let mut t = 0.0;
            let mut refused = 0;
            let mut starts = Vec::new();
            loop {
                t += -(1.0 - rng.next_f64()).ln() * 1e3 / p.rate_per_s as f64;
                let at = start + Duration::from_secs_f64(t / 1e3);
                if at >= deadline {
                    break;
                }
                let len = Duration::from_millis(1 + (rng.next_f64() * p.max_request_ms as f64) as u64);
                if at < stop {
                    tokio::time::sleep_until(at).await;
                    let (i, ends) = (starts.len(), ends.clone());
                    starts.push(ms(at));
                    set.spawn(async move {
                        tokio::time::sleep(len).await;
                        ends.lock().unwrap_or_else(|e| e.into_inner()).push((i, ms(Instant::now())));
                    });
                    // Reap finished tasks as we go, so the set holds only those in flight.
                    while set.try_join_next().is_some() {}
                } else {
                    // Stopped: refuse (the drain below runs meanwhile; here only counted).
                    refused += 1;
                }
            }
            tokio::time::sleep_until(stop).await;
            // Drain: wait for the requests in flight, but not past the deadline.
            let drained = tokio::time::timeout_at(deadline, async { while set.join_next().await.is_some() {} }).await;
            let drained_at = if drained.is_ok() { ms(Instant::now()) } else { ms(deadline) };
            set.shutdown().await; // aborts what is left and waits for it
            let mut accepted: Vec<(f64, Option<f64>)> = starts.into_iter().map(|s| (s, None)).collect();
            for (i, e) in ends.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                accepted[*i].1 = Some(*e);
            }
            (accepted, refused, drained_at)
        })
        .map_err(|e| RunError::new("the graceful-shutdown simulation", e))?;
    Ok(GracefulShutdownReport { params: p.clone(), accepted, refused, drained_at_ms, load: probe.finish() })
}

impl Report for GracefulShutdownReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let (flight, aborted) = (self.in_flight_at_stop(), self.aborted());
        let mut out = vec![Finding::clear(format!(
            "{} requests were accepted before the stop at {} ms; {} were in flight then, and {} arrivals after it \
             were refused (stop accepting first, so the drain has an end)",
            self.accepted.len(),
            p.stop_at_ms,
            flight,
            self.refused
        ))];
        let drain = self.drained_at_ms - p.stop_at_ms as f64;
        out.push(if aborted == 0 {
            Finding::clear(format!(
                "all {flight} finished during the drain, in {} ms — within the {} ms deadline{}",
                fmt_num(drain),
                p.deadline_ms,
                if p.deadline_ms >= p.max_request_ms {
                    format!(", as it must be: no request lasts longer than {} ms", p.max_request_ms)
                } else {
                    format!(
                        "; requests may last up to {} ms, so this was luck: none of the requests in flight had \
                         more than {} ms left, and another seed may abort some",
                        p.max_request_ms, p.deadline_ms
                    )
                }
            ))
        } else {
            Finding::clear(format!(
                "{} of the {flight} finished within the {} ms deadline and {aborted} were aborted at it: requests \
                 last up to {} ms, so a deadline shorter than that cuts the longest ones; the deadline bounds how \
                 long shutdown takes, at the price of those requests",
                flight - aborted,
                p.deadline_ms,
                p.max_request_ms
            ))
        });
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let end = (p.stop_at_ms + p.deadline_ms) as f64;
        let step = (end / 400.0).max(1.0);
        let mut pts = Vec::new();
        let mut x = 0.0;
        while x <= end {
            let n = self.accepted.iter().filter(|(s, e)| *s <= x && e.unwrap_or(f64::INFINITY) > x).count();
            pts.push(Point::new(x, n as f64));
            x += step;
        }
        let top = pts.iter().map(|q| q.y).fold(1.0, f64::max);
        let title = format!(
            "Graceful shutdown: {} in flight at the stop, {} aborted at the deadline",
            self.in_flight_at_stop(),
            self.aborted()
        );
        let f = Figure::lines(&title, "simulated time (ms)", "requests in flight")
            .series(Series::new("in flight", Style::Measured, pts))
            .series(Series::new(
                "stop accepting",
                Style::Ideal,
                vec![Point::new(p.stop_at_ms as f64, 0.0), Point::new(p.stop_at_ms as f64, top)],
            ))
            .series(Series::new("deadline", Style::Ideal, vec![Point::new(end, 0.0), Point::new(end, top)]))
            .note(format!(
                "Dashed lines: stop accepting at {} ms, then the drain deadline at {} ms. After the stop the count \
                 can only fall; at the deadline what is left is aborted.",
                p.stop_at_ms,
                fmt_num(end)
            ));
        vec![mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let p = &self.params;
        let mut t = Table::new(
            "Graceful shutdown",
            &["accepted", "in flight at stop", "drained", "aborted", "refused", "drain ms"],
        );
        t.row(vec![
            self.accepted.len().to_string(),
            self.in_flight_at_stop().to_string(),
            (self.in_flight_at_stop() - self.aborted()).to_string(),
            self.aborted().to_string(),
            self.refused.to_string(),
            fmt_num(self.drained_at_ms - p.stop_at_ms as f64),
        ]);
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![
        crate::lab::Experiment::new(
            "retry-storm",
            super::NOTEBOOK,
            "clients retrying a recovering dependency with exponential back-off, without vs with jitter (paused clock)",
            retry_storm,
        ),
        crate::lab::Experiment::new(
            "circuit-breaker",
            super::NOTEBOOK,
            "a circuit breaker's closed/open/half-open states against a dependency that fails for a while (paused clock)",
            circuit_breaker,
        ),
        crate::lab::Experiment::new(
            "load-shedding",
            super::NOTEBOOK,
            "offered load ramping past capacity: an unbounded queue vs a load shedder (latency, goodput; paused clock)",
            load_shedding,
        ),
        crate::lab::Experiment::new(
            "graceful-shutdown",
            super::NOTEBOOK,
            "stop accepting, drain the requests in flight, abort the rest at a deadline (paused clock)",
            graceful_shutdown,
        ),
    ]
}

crate::impl_params!(RetryStorm, CircuitBreakerRun, LoadShedding, GracefulShutdown);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_drains_or_aborts_at_the_deadline() {
        assert!(graceful_shutdown(&GracefulShutdown { rate_per_s: 0, ..Default::default() }).is_err());
        let r = graceful_shutdown(&GracefulShutdown::default()).unwrap();
        assert!(r.in_flight_at_stop() > 10);
        assert!(r.aborted() > 0, "requests up to 2 s, deadline 1 s: some are cut");
        assert!(r.refused > 0);
        assert_eq!(r.drained_at_ms, 4_000.0);
        let long = graceful_shutdown(&GracefulShutdown { deadline_ms: 3_000, ..Default::default() }).unwrap();
        assert_eq!(long.aborted(), 0);
        assert!(long.drained_at_ms <= 5_000.0 + 1.0);
        assert!(r.findings().len() >= 2);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("aborted"));
    }

    #[test]
    fn shedding_refuses_bad_parameters() {
        assert!(load_shedding(&LoadShedding { workers: 0, ..Default::default() }).is_err());
        let e = LoadShedding { end_load: 11.0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("end_load"), "{e}");
        assert!(
            LoadShedding { workers: 1000, service_ms: 1, ramp_ms: 600_000, ..Default::default() }.validate().is_err()
        );
    }

    #[test]
    fn the_shedder_bounds_latency_under_overload() {
        let p = LoadShedding { ramp_ms: 4_000, ..Default::default() };
        let r = load_shedding(&p).unwrap();
        let (a, b) = (&r.runs[0], &r.runs[1]);
        assert_eq!(a.requests.len(), b.requests.len());
        assert_eq!(a.totals(p.slo_ms).1, 0, "no limit rejects nothing");
        assert!(b.totals(p.slo_ms).1 > 0, "the shedder rejects some");
        // Overload of 2× for seconds: the queue's p99 is far beyond the bounded one.
        assert!(a.p99_ms() > 10.0 * b.p99_ms(), "{} vs {}", a.p99_ms(), b.p99_ms());
        assert!(r.findings().len() >= 4);
        for f in r.figures() {
            assert!(f.to_svg().contains("<svg"));
        }
        assert!(r.table().to_string().contains("within SLO"));
    }

    #[test]
    fn storm_refuses_bad_parameters() {
        assert!(retry_storm(&RetryStorm { clients: 0, ..Default::default() }).is_err());
        let e = RetryStorm { base_ms: 500, max_delay_ms: 100, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("max_delay_ms"), "{e}");
        assert!(RetryStorm::default().validate().is_ok());
    }

    #[test]
    fn jitter_flattens_the_storm_and_draws() {
        let r = retry_storm(&RetryStorm { clients: 400, capacity: 40, ..Default::default() }).unwrap();
        let (a, b) = (r.run(NO_JITTER).unwrap(), r.run(FULL_JITTER).unwrap());
        // Synchronized waves: the whole crowd in one bucket; jittered: a fraction of it.
        assert_eq!(a.peak_after_outage, 400);
        assert!(b.peak_after_outage * 3 < a.peak_after_outage, "{} vs {}", b.peak_after_outage, a.peak_after_outage);
        assert!(a.recovered_after_ms.unwrap() > 3.0 * b.recovered_after_ms.unwrap());
        // Deterministic: the same seed, the same run.
        let again = retry_storm(&RetryStorm { clients: 400, capacity: 40, ..Default::default() }).unwrap();
        assert_eq!(again.runs[1].calls, b.calls);
        assert!(r.findings().len() >= 4);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("peak"));
    }

    #[test]
    fn the_storm_checker_tells_jitter_from_none() {
        let none = check_storm_flattened(|k, _| Duration::from_millis((100u64 << (k - 1).min(10)).min(2_000)));
        assert!(!none.passed, "{}", none.line());
        let full =
            check_storm_flattened(|k, u| Duration::from_millis((100u64 << (k - 1).min(10)).min(2_000)).mul_f64(u));
        assert!(full.passed, "{}", full.line());
        let never = check_storm_flattened(|_, _| Duration::from_secs(1));
        assert!(!never.passed, "{}", never.line());
    }

    #[test]
    fn breaker_refuses_bad_parameters() {
        assert!(circuit_breaker(&CircuitBreakerRun { clients: 0, ..Default::default() }).is_err());
        assert!(CircuitBreakerRun { timeout_ms: 0, ..Default::default() }.validate().is_err());
        assert!(
            CircuitBreakerRun { clients: 1000, period_ms: 1, run_ms: 600_000, ..Default::default() }
                .validate()
                .is_err()
        );
    }

    #[test]
    fn breaker_rejects_fast_during_the_outage_and_closes_after() {
        let r = circuit_breaker(&CircuitBreakerRun::default()).unwrap();
        let (a, b) = (r.run(NO_BREAKER).unwrap(), r.run(WITH_BREAKER).unwrap());
        assert_eq!(a.count(CallOutcome::RejectedFast), 0);
        assert!(b.count(CallOutcome::RejectedFast) > 100);
        assert!(b.mean_latency(CallOutcome::RejectedFast) < 1.0);
        assert!(b.sent_to_sick() * 3 < a.sent_to_sick(), "{} vs {}", b.sent_to_sick(), a.sent_to_sick());
        let states: Vec<BreakerState> = b.transitions.iter().map(|t| t.1).collect();
        assert_eq!(states.first(), Some(&BreakerState::Closed));
        assert_eq!(states.last(), Some(&BreakerState::Closed));
        assert!(states.contains(&BreakerState::Open) && states.contains(&BreakerState::HalfOpen));
        assert!(!r.breaker_spans().is_empty());
        assert!(r.findings().len() >= 5);
        for f in r.figures() {
            assert!(f.to_svg().contains("<svg"));
        }
        assert!(r.table().to_string().contains("rejected fast"));
    }
}
