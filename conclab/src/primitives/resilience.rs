//! Production patterns by hand, before the library versions (tower's `retry`, `timeout`,
//! `concurrency_limit`, `load_shed`): a timeout around any future ([`with_timeout`]),
//! retries with exponential back-off with or without jitter ([`RetryPolicy`], [`retry`]),
//! a circuit breaker with its three states ([`CircuitBreaker`]), and a load shedder that
//! admits at most a fixed number of requests at once and turns the rest away at once
//! ([`LoadShedder`]).
//!
//! Every piece reads time from `tokio::time::Instant`, so on a paused clock
//! (`#[tokio::test(start_paused = true)]`, `run_paused`) a simulated minute takes
//! milliseconds and the results are exact.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The error of [`with_timeout`]: the future did not finish within `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    /// The limit that ran out.
    pub limit: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?}", self.limit)
    }
}

impl std::error::Error for TimedOut {}

/// Runs `fut` for at most `limit`: its output, or [`TimedOut`] (and `fut` is dropped, which
/// cancels it at its current `.await`). The hand-built `tokio::time::timeout`: a race
/// between the future and a sleep.
pub async fn with_timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, TimedOut> {
    tokio::select! {
        biased;
        v = fut => Ok(v),
        _ = tokio::time::sleep(limit) => Err(TimedOut { limit }),
    }
}

/// How a back-off wait is randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Jitter {
    /// Exactly the exponential wait: clients that failed together retry together.
    None,
    /// "Full jitter": a uniform random wait between 0 and the exponential wait.
    Full,
    /// "Equal jitter": half the exponential wait plus a uniform random half.
    Equal,
}

/// Retries with exponential back-off: after failure number `k` (1-based) wait
/// `min(max_delay, base × 2^(k−1))`, randomized by `jitter`; at most `max_attempts`
/// attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// The longest wait (before jitter).
    pub max_delay: Duration,
    /// Attempts in all, the first included; 0 counts as 1.
    pub max_attempts: u32,
    /// How the wait is randomized.
    pub jitter: Jitter,
}

impl RetryPolicy {
    /// The exponential wait after failure `failed` (1-based), before jitter.
    pub fn ceiling(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait after failure `failed` (1-based), given `u`, a uniform random number in
    /// `[0, 1)` (ignored without jitter).
    pub fn delay(&self, failed: u32, u: f64) -> Duration {
        let c = self.ceiling(failed);
        let u = u.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => c,
            Jitter::Full => c.mul_f64(u),
            Jitter::Equal => c / 2 + (c / 2).mul_f64(u),
        }
    }
}

/// A small deterministic random source (SplitMix64) for jitter: the same seed gives the
/// same waits, so a simulation repeats exactly.
#[derive(Debug, Clone)]
pub struct JitterRng(u64);

impl JitterRng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> JitterRng {
        JitterRng(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Calls `op(attempt)` (attempt counts from 1) until it succeeds or `policy.max_attempts`
/// attempts have failed (then the last error), sleeping [`RetryPolicy::delay`] between
/// attempts with jitter drawn from `rng`.
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, rng: &mut JitterRng, mut op: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= policy.max_attempts.max(1) => return Err(e),
            Err(_) => {
                tokio::time::sleep(policy.delay(attempt, rng.next_f64())).await;
                attempt += 1;
            }
        }
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls are rejected at once, without touching the dependency, until the cool-down ends.
    Open,
    /// A few trial calls go through; enough successes close the breaker, one failure opens it.
    HalfOpen,
}

impl BreakerState {
    /// "closed", "open", "half-open".
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Settings of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker rejects calls before it lets trial calls through.
    pub open_for: Duration,
    /// Trial calls allowed at once when half-open, and successes needed to close (at least 1).
    pub half_open_trials: u32,
}

/// Why [`CircuitBreaker::try_acquire`] refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused it (open, or half-open with every trial slot taken).
    pub state: BreakerState,
}

/// A circuit breaker: closed (calls pass, failures counted) → after `failure_threshold`
/// consecutive failures open (calls rejected fast) → after `open_for` half-open (up to
/// `half_open_trials` trial calls) → closed after that many successes, or open again on a
/// failure. Not thread-safe by itself: share it behind a `Mutex`. Every transition is
/// kept in [`transitions`](CircuitBreaker::transitions).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    failures: u32,
    opened_at: Instant,
    trials_in_flight: u32,
    trial_successes: u32,
    transitions: Vec<(Instant, BreakerState)>,
}

impl CircuitBreaker {
    /// A closed breaker; `now` starts its transition log.
    pub fn new(config: BreakerConfig, now: Instant) -> CircuitBreaker {
        CircuitBreaker {
            config,
            state: BreakerState::Closed,
            failures: 0,
            opened_at: now,
            trials_in_flight: 0,
            trial_successes: 0,
            transitions: vec![(now, BreakerState::Closed)],
        }
    }

    /// The state at `now` (an open breaker whose cool-down has ended is half-open).
    pub fn state(&mut self, now: Instant) -> BreakerState {
        if self.state == BreakerState::Open && now >= self.opened_at + self.config.open_for {
            self.enter(BreakerState::HalfOpen, now);
        }
        self.state
    }

    /// Every state change so far, with its time; the first entry is the start, closed.
    pub fn transitions(&self) -> &[(Instant, BreakerState)] {
        &self.transitions
    }

    fn enter(&mut self, s: BreakerState, now: Instant) {
        if s == BreakerState::Open {
            self.opened_at = now;
        }
        self.failures = 0;
        self.trials_in_flight = 0;
        self.trial_successes = 0;
        self.state = s;
        self.transitions.push((now, s));
    }

    /// Asks to make a call at `now`: `Ok` means go ahead and report the outcome with
    /// [`record`](CircuitBreaker::record); `Err` means rejected without calling.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Rejected> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => Err(Rejected { state: BreakerState::Open }),
            BreakerState::HalfOpen if self.trials_in_flight < self.config.half_open_trials.max(1) => {
                self.trials_in_flight += 1;
                Ok(())
            }
            BreakerState::HalfOpen => Err(Rejected { state: BreakerState::HalfOpen }),
        }
    }

    /// Reports the outcome of a call that [`try_acquire`](CircuitBreaker::try_acquire) let through.
    pub fn record(&mut self, now: Instant, ok: bool) {
        match self.state(now) {
            BreakerState::Closed if ok => self.failures = 0,
            BreakerState::Closed => {
                self.failures += 1;
                if self.failures >= self.config.failure_threshold.max(1) {
                    self.enter(BreakerState::Open, now);
                }
            }
            // A call let through before the breaker opened, finishing late: ignored.
            BreakerState::Open => {}
            BreakerState::HalfOpen if ok => {
                self.trials_in_flight = self.trials_in_flight.saturating_sub(1);
                self.trial_successes += 1;
                if self.trial_successes >= self.config.half_open_trials.max(1) {
                    self.enter(BreakerState::Closed, now);
                }
            }
            BreakerState::HalfOpen => self.enter(BreakerState::Open, now),
        }
    }
}

/// The error of [`LoadShedder::try_acquire`]: the limit is reached, come back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// The limit that was reached.
    pub limit: usize,
}

/// A load shedder: at most `limit` requests admitted at once; one more is refused at once
/// ([`Overloaded`]) instead of waiting in a queue. Cloning shares the count.
#[derive(Debug, Clone)]
pub struct LoadShedder {
    limit: usize,
    in_flight: Arc<AtomicUsize>,
}

/// An admitted request; dropping it frees its place.
#[derive(Debug)]
pub struct ShedPermit {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for ShedPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LoadShedder {
    /// A shedder admitting at most `limit` (at least 1) requests at once.
    pub fn new(limit: usize) -> LoadShedder {
        LoadShedder { limit: limit.max(1), in_flight: Arc::new(AtomicUsize::new(0)) }
    }

    /// Requests admitted now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Admits a request (a permit that frees its place when dropped) or refuses it at once.
    pub fn try_acquire(&self) -> Result<ShedPermit, Overloaded> {
        let mut n = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= self.limit {
                return Err(Overloaded { limit: self.limit });
            }
            match self.in_flight.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(ShedPermit { in_flight: self.in_flight.clone() }),
                Err(now) => n = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timeout_cuts_a_slow_future_and_passes_a_fast_one() {
        let t = Instant::now();
        let slow = with_timeout(Duration::from_secs(2), tokio::time::sleep(Duration::from_secs(60))).await;
        assert_eq!(slow, Err(TimedOut { limit: Duration::from_secs(2) }));
        assert_eq!(t.elapsed(), Duration::from_secs(2));
        let fast = with_timeout(Duration::from_secs(2), async { 7 }).await;
        assert_eq!(fast, Ok(7));
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_its_ceiling() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
            max_attempts: 10,
            jitter: Jitter::None,
        };
        let d: Vec<u64> = (1..=6).map(|k| p.delay(k, 0.3).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1_000, 1_000]);
        let full = RetryPolicy { jitter: Jitter::Full, ..p };
        let equal = RetryPolicy { jitter: Jitter::Equal, ..p };
        assert_eq!(full.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(equal.delay(3, 0.5), Duration::from_millis(300));
        let mut rng = JitterRng::new(1);
        let us: Vec<f64> = (0..1000).map(|_| rng.next_f64()).collect();
        assert!(us.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = us.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
        assert_eq!(JitterRng::new(5).next_f64(), JitterRng::new(5).next_f64());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_the_schedule_and_gives_up() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 4,
            jitter: Jitter::None,
        };
        let t = Instant::now();
        let r: Result<(), u32> = retry(p, &mut JitterRng::new(0), |n| async move { Err(n) }).await;
        assert_eq!(r, Err(4));
        assert_eq!(t.elapsed(), Duration::from_secs(1 + 2 + 4));
        let r: Result<u32, ()> =
            retry(p, &mut JitterRng::new(0), |n| async move { if n < 3 { Err(()) } else { Ok(n) } }).await;
        assert_eq!(r, Ok(3));
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let t0 = Instant::now();
        let cfg = BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(5), half_open_trials: 2 };
        let mut b = CircuitBreaker::new(cfg, t0);
        for _ in 0..2 {
            assert!(b.try_acquire(t0).is_ok());
            b.record(t0, false);
        }
        b.record(t0, true); // a success resets the count
        for _ in 0..3 {
            assert!(b.try_acquire(t0).is_ok());
            b.record(t0, false);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(b.try_acquire(t1), Err(Rejected { state: BreakerState::Open }));
        let t2 = t0 + Duration::from_secs(5);
        assert_eq!(b.state(t2), BreakerState::HalfOpen);
        assert!(b.try_acquire(t2).is_ok());
        assert!(b.try_acquire(t2).is_ok());
        assert_eq!(b.try_acquire(t2), Err(Rejected { state: BreakerState::HalfOpen }));
        b.record(t2, false); // a failed trial opens it again
        assert_eq!(b.state(t2), BreakerState::Open);
        let t3 = t2 + Duration::from_secs(5);
        for _ in 0..2 {
            assert!(b.try_acquire(t3).is_ok());
            b.record(t3, true);
        }
        assert_eq!(b.state(t3), BreakerState::Closed);
        let states: Vec<BreakerState> = b.transitions().iter().map(|(_, s)| *s).collect();
        use BreakerState::*;
        assert_eq!(states, [Closed, Open, HalfOpen, Open, HalfOpen, Closed]);
    }

    #[test]
    fn shedder_admits_up_to_its_limit_and_frees_on_drop() {
        let s = LoadShedder::new(2);
        let a = s.try_acquire().unwrap();
        let b = s.try_acquire().unwrap();
        assert_eq!(s.try_acquire().unwrap_err(), Overloaded { limit: 2 });
        assert_eq!(s.in_flight(), 2);
        drop(a);
        let c = s.try_acquire().unwrap();
        drop((b, c));
        assert_eq!(s.in_flight(), 0);
        // Many threads at once never exceed the limit.
        let s = LoadShedder::new(3);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..2_000 {
                        if let Ok(p) = s.try_acquire() {
                            peak.fetch_max(s.in_flight(), Ordering::Relaxed);
                            drop(p);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(s.in_flight(), 0);
    }
}
