//! Time budgets and progress: every experiment estimates its run time before it starts
//! and refuses parameters whose estimate is over [`MAX_ESTIMATE`]; a run that still takes
//! long shows progress (after [`QUIET_FOR`]) and stops with a [`RunError`] saying what it
//! managed if it passes [`HARD_LIMIT`] (a busy or slow machine can be several times
//! slower than the estimate).

use crate::lab::error::{ParamError, RunError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest estimated run time an experiment accepts.
pub const MAX_ESTIMATE: Duration = Duration::from_secs(120);
/// A run that passes this stops at its next step with a [`RunError`].
pub const HARD_LIMIT: Duration = Duration::from_secs(300);
/// Progress lines start after this much time, so short runs stay quiet.
pub const QUIET_FOR: Duration = Duration::from_secs(10);
/// Time between progress lines.
const EVERY: Duration = Duration::from_secs(5);

static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Sends progress lines to stderr instead of stdout (the CLI: its stdout is the table).
/// In a notebook they go to stdout, which evcxr shows while the cell runs.
pub fn progress_to_stderr() {
    TO_STDERR.store(true, Ordering::Relaxed);
}

/// Refuses parameters whose estimated run time is over [`MAX_ESTIMATE`].
/// `params` names the parameters that set it, e.g. `"work_ms × samples × threads"`.
///
/// ```
/// use conclab::lab::budget::check_estimate;
/// use std::time::Duration;
/// assert!(check_estimate("work_ms × samples", Duration::from_secs(30)).is_ok());
/// let e = check_estimate("work_ms × samples", Duration::from_secs(600)).unwrap_err();
/// assert!(e.to_string().contains("estimated at 600 s"));
/// ```
pub fn check_estimate(params: &str, estimate: Duration) -> Result<(), ParamError> {
    if estimate <= MAX_ESTIMATE {
        return Ok(());
    }
    Err(ParamError {
        param: params.to_string(),
        allowed: format!("a combination whose estimated run time is at most {} s", MAX_ESTIMATE.as_secs()),
        got: format!("one estimated at {} s", estimate.as_secs()),
    })
}

/// The estimated time of `runs` timed runs of `duration_ms` each, plus ~20 ms per run
/// for starting, releasing and joining its threads.
pub fn timed_runs(runs: usize, duration_ms: u64) -> Duration {
    Duration::from_millis((runs as u64).saturating_mul(duration_ms + 20))
}

/// Progress of one run through `total` steps (points, samples): quiet for
/// [`QUIET_FOR`], then a line every few seconds; a [`RunError`] past [`HARD_LIMIT`].
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: usize,
    done: usize,
    start: Instant,
    next_line: Instant,
    limit: Duration,
}

impl Progress {
    /// Starts timing a run of `what` with `total` steps.
    pub fn new(what: impl Into<String>, total: usize) -> Progress {
        Progress::with_limit(what, total, HARD_LIMIT)
    }

    /// Like [`Progress::new`] with another hard limit (tests use short ones).
    pub fn with_limit(what: impl Into<String>, total: usize, limit: Duration) -> Progress {
        let start = Instant::now();
        Progress { what: what.into(), total, done: 0, start, next_line: start + QUIET_FOR, limit }
    }

    /// Steps done so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Marks one step done; prints a progress line when the run has been long, and
    /// returns an error (naming what was done) once the run is past its hard limit.
    pub fn step(&mut self) -> Result<(), RunError> {
        self.done += 1;
        let now = Instant::now();
        let elapsed = now - self.start;
        if elapsed > self.limit && self.done < self.total {
            return Err(RunError::new(
                &self.what,
                format!(
                    "stopped after {:.0} s with {} of {} steps done (the limit is {} s; \
                     the machine may be busy: lower the parameters or try again)",
                    elapsed.as_secs_f64(),
                    self.done,
                    self.total,
                    self.limit.as_secs()
                ),
            ));
        }
        if now >= self.next_line && self.done < self.total {
            self.next_line = now + EVERY;
            let left = elapsed.as_secs_f64() / self.done as f64 * (self.total - self.done) as f64;
            let line = format!(
                "{}: {}/{} steps after {:.0} s, about {:.0} s left",
                self.what,
                self.done,
                self.total,
                elapsed.as_secs_f64(),
                left
            );
            if TO_STDERR.load(Ordering::Relaxed) {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_over_the_budget_are_refused_with_the_estimate() {
        assert!(check_estimate("x", MAX_ESTIMATE).is_ok());
        let e = check_estimate("work_ms × samples", MAX_ESTIMATE * 3).unwrap_err();
        assert_eq!(e.param, "work_ms × samples");
        assert!(e.to_string().contains("at most 120 s"), "{e}");
        assert!(e.to_string().contains("estimated at 360 s"), "{e}");
    }

    #[test]
    fn a_run_past_its_limit_stops_with_what_it_managed() {
        let mut p = Progress::with_limit("demo", 5, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        let e = p.step().unwrap_err();
        assert!(e.to_string().contains("1 of 5 steps"), "{e}");
        // The last step never fails: the work is done.
        let mut p = Progress::with_limit("demo", 1, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert!(p.step().is_ok());
    }

    #[test]
    fn a_short_run_is_quiet_and_counts() {
        let mut p = Progress::new("demo", 3);
        for _ in 0..3 {
            p.step().unwrap();
        }
        assert_eq!(p.done(), 3);
    }
}
