//! Testing async code with a paused clock: a retry loop with exponential back-off (1 s,
//! 2 s, 4 s, … an hour in all) run on tokio's paused clock, which jumps to the next timer
//! whenever the runtime has nothing else to do, against the same loop on the real clock
//! with every delay scaled down. Wall time vs the time the program believes passed.
//!
//! Also here: [`run_paused`], which runs an async body on a current-thread runtime whose
//! clock starts paused, bounded by *wall-clock* time (a `tokio::time::timeout` would be
//! bounded by the paused clock, and fire as soon as the body waits past it); [`Backoff`]
//! and [`retry_with_backoff`], the retry loop itself; and this crate's own
//! `#[tokio::test(start_paused = true)]` tests, which check an hour of back-off in
//! milliseconds.

use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
pub use crate::lab::rt::run_paused;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, fmt_num,
};
use crate::lab::{budget::check_estimate, check_range};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{Duration, Instant};

/// A retry policy: wait `first`, then twice as long after each further failure (never more
/// than `max_delay`), and give up after `attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub first: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
    /// Attempts in all, the first included (at least 1).
    pub attempts: usize,
}

impl Backoff {
    /// Doubling waits from `first`, without a cap, for at most `attempts` attempts.
    pub fn doubling(first: Duration, attempts: usize) -> Backoff {
        Backoff { first, max_delay: Duration::MAX, attempts }
    }

    /// The wait after failed attempt number `failed` (1-based): `first × 2^(failed − 1)`,
    /// capped at `max_delay`.
    pub fn delay(&self, failed: usize) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1).min(31) as u32);
        self.first.saturating_mul(factor).min(self.max_delay)
    }

    /// The sum of the waits when the first `failures` attempts fail.
    pub fn total(&self, failures: usize) -> Duration {
        (1..=failures).map(|f| self.delay(f)).fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// Calls `op(attempt)` (attempt counts from 1) until it returns `Ok`, sleeping
/// [`Backoff::delay`] with `tokio::time::sleep` after each failure; after
/// `policy.attempts` failures returns the last error. On a paused clock the sleeps take no
/// wall time at all: the runtime jumps to each deadline as soon as it is idle.
///
/// ```
/// use conclab::experiments::tokio_rt::paused::{Backoff, retry_with_backoff, run_paused};
/// use conclab::lab::rt::Rt;
/// use std::time::Duration;
/// let (answer, waited) = run_paused(Rt::current(), || async {
///     let t = tokio::time::Instant::now();
///     let policy = Backoff::doubling(Duration::from_secs(1), 20);
///     let r = retry_with_backoff(policy, |n| async move { if n <= 12 { Err("down") } else { Ok(n) } }).await;
///     (r, t.elapsed())
/// })
/// .unwrap();
/// assert_eq!(answer, Ok(13));
/// assert!(waited >= Duration::from_secs(4095)); // 1 + 2 + … + 2048 s, virtual
/// ```
pub async fn retry_with_backoff<T, E, F, Fut>(policy: Backoff, mut op: F) -> Result<T, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= policy.attempts.max(1) => return Err(e),
            Err(_) => {
                tokio::time::sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// Parameters of [`paused_time`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PausedTime {
    /// Attempts that fail before one succeeds; each is followed by a back-off wait: 1..=30.
    pub failures: usize,
    /// The first back-off wait in ms; each next one is twice as long: 1..=600000.
    pub first_delay_ms: u64,
    /// The real-clock run divides every wait by this: 10..=1000000.
    pub real_scale: u64,
}

impl Default for PausedTime {
    fn default() -> Self {
        // 1 + 2 + … + 2048 s = 4095 s, a little over an hour; 2 s on the real clock.
        PausedTime { failures: 12, first_delay_ms: 1_000, real_scale: 2_000 }
    }
}

/// The longest back-off schedule accepted (tokio sleeps up to about 2 years).
const MAX_SCHEDULE: Duration = Duration::from_secs(365 * 24 * 3600);

impl PausedTime {
    /// The back-off policy of the unscaled program.
    pub fn policy(&self) -> Backoff {
        Backoff::doubling(Duration::from_millis(self.first_delay_ms), self.failures + 1)
    }

    /// The sum of the waits, as the program sees it.
    pub fn schedule(&self) -> Duration {
        self.policy().total(self.failures)
    }

    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("failures", self.failures, 1..=30)?;
        check_range("first_delay_ms", self.first_delay_ms, 1..=600_000)?;
        check_range("real_scale", self.real_scale, 10..=1_000_000)?;
        if self.schedule() > MAX_SCHEDULE {
            return Err(ParamError::new(
                "first_delay_ms × 2^failures",
                "a back-off schedule of at most 365 days",
                format!("{} days", fmt_num(self.schedule().as_secs_f64() / 86_400.0)),
            ));
        }
        check_estimate("first_delay_ms × 2^failures / real_scale", self.estimate())
    }

    /// The real-clock run: the scaled schedule plus up to 2 ms of timer lateness per wait.
    pub fn estimate(&self) -> Duration {
        self.schedule() / self.real_scale as u32 + Duration::from_millis(2 * self.failures as u64)
    }
}

/// One attempt of the retry loop, in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptPoint {
    /// 1-based.
    pub attempt: usize,
    /// Where the unscaled back-off schedule says this attempt happens, in s.
    pub schedule_s: f64,
    /// What `tokio::time::Instant` says passed since the first attempt, in s.
    pub clock_s: f64,
    /// What `std::time::Instant` (the wall clock) says passed since the first attempt, in ms.
    pub wall_ms: f64,
}

/// One run of the retry loop: on the paused clock or on the real one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryRun {
    /// "paused clock" or "real clock, waits ÷ scale".
    pub clock: String,
    pub attempts: Vec<AttemptPoint>,
    /// Wall time of the whole loop, in ms.
    pub wall_ms: f64,
    /// Tokio-clock time of the whole loop, in s.
    pub clock_s: f64,
}

/// Result of [`paused_time`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PausedTimeReport {
    pub params: PausedTime,
    /// The unscaled schedule's total wait, in s.
    pub schedule_s: f64,
    pub paused: RetryRun,
    pub real: RetryRun,
    pub load: Load,
}

/// Label of the paused run.
pub const PAUSED: &str = "paused clock";

/// Runs the retry loop once: `failures` failed attempts, then a success, with waits from
/// `policy`; records each attempt on both clocks. `schedule` converts this run's waits
/// back to the unscaled program's (× 1 on the paused clock, × scale on the real one).
async fn retry_run(clock: String, policy: Backoff, failures: usize, scale: f64) -> RetryRun {
    let wall0 = Instant::now();
    let clock0 = tokio::time::Instant::now();
    let mut attempts = Vec::with_capacity(failures + 1);
    let mut schedule = 0.0;
    let _ = retry_with_backoff(policy, |n| {
        if n > 1 {
            schedule += policy.delay(n - 1).as_secs_f64() * scale;
        }
        attempts.push(AttemptPoint {
            attempt: n,
            schedule_s: schedule,
            clock_s: clock0.elapsed().as_secs_f64(),
            wall_ms: wall0.elapsed().as_secs_f64() * 1e3,
        });
        std::future::ready(if n <= failures { Err(()) } else { Ok(()) })
    })
    .await;
    RetryRun { clock, attempts, wall_ms: wall0.elapsed().as_secs_f64() * 1e3, clock_s: clock0.elapsed().as_secs_f64() }
}

/// Runs the same retry loop — `failures` failed attempts, doubling waits from
/// `first_delay_ms`, then a success — twice: on a paused clock ([`run_paused`]), where
/// tokio jumps to each deadline when idle, and on the real clock with every wait divided
/// by `real_scale`. Records, per attempt, the schedule position, the tokio clock and the
/// wall clock.
pub fn paused_time(p: &PausedTime) -> Result<PausedTimeReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let (policy, failures) = (p.policy(), p.failures);
    let paused = run_paused(Rt::current().timeout(Duration::from_secs(30)), move || {
        retry_run(PAUSED.into(), policy, failures, 1.0)
    })
    .map_err(|e| RunError::new("the retry loop on a paused clock", e))?;
    let scale = p.real_scale;
    let scaled = Backoff { first: policy.first / scale as u32, ..policy };
    // Whole nanoseconds: the scaled first wait is first / scale, rounded down.
    let factor = policy.first.as_secs_f64() / scaled.first.as_secs_f64().max(1e-9);
    let limit = p.estimate() * 3 + Duration::from_secs(10);
    let real = crate::lab::rt::run(Rt::current().timeout(limit), move || {
        retry_run(format!("real clock, waits ÷ {scale}"), scaled, failures, factor)
    })
    .map_err(|e| RunError::new("the retry loop on the real clock", e))?;
    Ok(PausedTimeReport {
        params: p.clone(),
        schedule_s: p.schedule().as_secs_f64(),
        paused,
        real,
        load: probe.finish(),
    })
}

/// A duration in s in words: "4095 s = 1.14 h".
fn long(s: f64) -> String {
    if s >= 7_200.0 * 24.0 {
        format!("{} s = {} days", fmt_num(s), fmt_num(s / 86_400.0))
    } else if s >= 3_600.0 {
        format!("{} s = {} h", fmt_num(s), fmt_num(s / 3_600.0))
    } else {
        format!("{} s", fmt_num(s))
    }
}

impl Report for PausedTimeReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (pz, rl) = (&self.paused, &self.real);
        let ratio = pz.clock_s * 1e3 / pz.wall_ms.max(1e-6);
        out.push(Finding::clear(format!(
            "on the paused clock the loop waited {} of tokio time in {} ms of wall time ({}× faster than real time): \
             whenever every task was waiting, tokio moved the clock straight to the next timer instead of sleeping",
            long(pz.clock_s),
            fmt_num(pz.wall_ms),
            fmt_num(ratio)
        )));
        let extra = pz.clock_s - self.schedule_s;
        out.push(if extra.abs() <= 0.001 * (self.params.failures as f64 + 1.0) {
            Finding::clear(format!(
                "the paused clock advanced by exactly the schedule ({}, within a ms per wait): a test sees the \
                 same times as production, to the millisecond, with no wall-clock noise",
                long(self.schedule_s)
            ))
        } else {
            Finding::clear(format!(
                "the paused clock advanced {} s more than the schedule's {}: tokio rounds each deadline up to its \
                 1 ms tick, and anything else the body awaited also took (virtual) time",
                fmt_num(extra),
                long(self.schedule_s)
            ))
        });
        let expected_ms = self.schedule_s * 1e3 / self.params.real_scale as f64;
        let late = rl.wall_ms - expected_ms;
        out.push(Finding::clear(format!(
            "on the real clock with waits ÷ {} the same loop took {} ms for a scaled schedule of {} ms: {} ms more, \
             about {} ms per wait — each real sleep ends at tokio's next 1 ms tick or later, so scaling a real \
             schedule down distorts it, most for the shortest waits; the paused clock has no such error",
            self.params.real_scale,
            fmt_num(rl.wall_ms),
            fmt_num(expected_ms),
            fmt_num(late),
            fmt_num(late / self.params.failures.max(1) as f64)
        )));
        if pz.wall_ms > 0.0 {
            out.push(Finding::clear(format!(
                "the paused run took {}× less wall time than even the scaled-down real run ({} vs {} ms)",
                fmt_num(rl.wall_ms / pz.wall_ms),
                fmt_num(pz.wall_ms),
                fmt_num(rl.wall_ms)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            &format!(
                "A retry loop with {} s of back-off: schedule time reached vs wall time",
                fmt_num(self.schedule_s)
            ),
            "wall time since the first attempt (ms)",
            "back-off schedule reached (s, unscaled)",
        )
        .log_x()
        .log_y();
        for run in [&self.paused, &self.real] {
            // Log axes: the first attempt (at 0) cannot be drawn.
            let pts = run
                .attempts
                .iter()
                .filter(|a| a.schedule_s > 0.0)
                .map(|a| Point::new(a.wall_ms.max(1e-4), a.schedule_s))
                .collect();
            f = f.series(Series::new(run.clock.clone(), Style::Measured, pts));
        }
        let f = f.note("Each point is one attempt; the paused run reaches the end of the schedule far to the left.");
        vec![mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Retry with exponential back-off: each attempt on a paused clock and on a scaled-down real clock",
            &[
                "attempt",
                "schedule s",
                "paused: tokio clock s",
                "paused: wall ms",
                "real: tokio clock s",
                "real: wall ms",
            ],
        );
        for (a, b) in self.paused.attempts.iter().zip(&self.real.attempts) {
            t.row(vec![
                a.attempt.to_string(),
                fmt_num(a.schedule_s),
                fmt_num(a.clock_s),
                fmt_num(a.wall_ms),
                fmt_num(b.clock_s),
                fmt_num(b.wall_ms),
            ]);
        }
        t.note(format!(
            "The real run divides every wait by {}; its tokio clock is the wall clock.",
            self.params.real_scale
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "paused-time",
        super::NOTEBOOK,
        "a retry loop with an hour of exponential back-off on tokio's paused clock vs a scaled-down real clock",
        paused_time,
    )]
}

crate::impl_params!(PausedTime);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::rt::RtError;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn paused_refuses_bad_parameters() {
        assert!(paused_time(&PausedTime { failures: 0, ..Default::default() }).is_err());
        assert!(paused_time(&PausedTime { real_scale: 1, ..Default::default() }).is_err());
        let e = PausedTime { failures: 30, first_delay_ms: 600_000, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("365 days"), "{e}");
        let e = PausedTime { failures: 20, first_delay_ms: 1_000, real_scale: 10 }.validate().unwrap_err();
        assert!(e.to_string().contains("estimated"), "{e}");
        assert!(PausedTime::default().validate().is_ok());
        assert!(PausedTime::default().estimate() < Duration::from_secs(6));
        assert!(PausedTime::default().schedule() >= Duration::from_secs(3600));
        assert!(matches!(run_paused(Rt::multi(2), || async {}), Err(RtError::Config(_))));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff { first: Duration::from_secs(1), max_delay: Duration::from_secs(5), attempts: 9 };
        let d: Vec<u64> = (1..=5).map(|f| b.delay(f).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
        assert_eq!(Backoff::doubling(Duration::from_secs(1), 13).total(12), Duration::from_secs(4095));
    }

    /// The point of a paused clock, as this crate's own test: an hour of back-off runs in
    /// milliseconds, and the loop's timing is still checked exactly.
    #[tokio::test(start_paused = true)]
    async fn an_hour_of_backoff_is_verified_in_milliseconds() {
        let wall = Instant::now();
        let start = tokio::time::Instant::now();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let policy = Backoff::doubling(Duration::from_secs(1), 20);
        let r: Result<&str, &str> = retry_with_backoff(policy, move |n| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { if n <= 12 { Err("service down") } else { Ok("up") } }
        })
        .await;
        assert_eq!(r, Ok("up"));
        assert_eq!(calls.load(Ordering::SeqCst), 13);
        let virtual_elapsed = start.elapsed();
        assert!(virtual_elapsed >= Duration::from_secs(3600), "{virtual_elapsed:?}");
        assert!(virtual_elapsed >= Duration::from_secs(4095), "{virtual_elapsed:?}");
        assert!(virtual_elapsed < Duration::from_secs(4096), "{virtual_elapsed:?}");
        assert!(wall.elapsed() < Duration::from_secs(3), "{:?}", wall.elapsed());
    }

    /// Giving up: after `attempts` failures the last error comes back, after the waits
    /// between them (not after the last one).
    #[tokio::test(start_paused = true)]
    async fn the_loop_gives_up_after_its_attempts() {
        let start = tokio::time::Instant::now();
        let policy = Backoff::doubling(Duration::from_secs(60), 4);
        let r: Result<(), usize> = retry_with_backoff(policy, |n| async move { Err(n) }).await;
        assert_eq!(r, Err(4));
        assert_eq!(start.elapsed().as_secs(), 60 + 120 + 240);
    }

    /// `advance` moves a paused clock by hand: a 30 s timer has not fired after 29 s and
    /// has after 30 s.
    #[tokio::test(start_paused = true)]
    async fn advance_moves_the_paused_clock_by_hand() {
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.store(true, Ordering::SeqCst);
        });
        tokio::task::yield_now().await; // the task registers its timer
        tokio::time::advance(Duration::from_secs(29)).await;
        tokio::task::yield_now().await;
        assert!(!fired.load(Ordering::SeqCst), "fired after 29 s of a 30 s sleep");
        tokio::time::advance(Duration::from_secs(1)).await;
        timer.await.unwrap();
        assert!(fired.load(Ordering::SeqCst));
    }

    #[test]
    fn run_paused_is_bounded_by_wall_time_and_says_so() {
        let t = Instant::now();
        let e = run_paused(Rt::current().timeout(Duration::from_millis(100)), std::future::pending::<()>).unwrap_err();
        assert!(matches!(e, RtError::TimedOut { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // A body that waits a (virtual) year is not cut short by a 10 s wall-clock limit.
        let slept = run_paused(Rt::current().timeout(Duration::from_secs(10)), || async {
            tokio::time::sleep(Duration::from_secs(365 * 86_400)).await;
            7
        });
        assert_eq!(slept, Ok(7));
        let e = crate::lab::one_line_panics(|| run_paused(Rt::current(), || async { panic!("on purpose") }));
        assert_eq!(e, Err(RtError::Panicked("on purpose".into())));
    }

    #[test]
    fn paused_run_is_faster_than_real_and_draws() {
        let r = paused_time(&PausedTime { failures: 6, first_delay_ms: 1_000, real_scale: 1_000 }).unwrap();
        assert_eq!(r.paused.attempts.len(), 7);
        assert_eq!(r.real.attempts.len(), 7);
        assert_eq!(r.schedule_s, 63.0);
        assert!(r.paused.clock_s >= 63.0, "{}", r.paused.clock_s);
        // The real run waits 63 ms of wall time at least.
        assert!(r.real.wall_ms >= 63.0, "{}", r.real.wall_ms);
        assert!(r.real.attempts.last().unwrap().schedule_s > 62.9);
        assert!(r.findings().len() >= 4);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("paused: wall ms"));
    }
}
