//! Cancellation: every way a future or a task ends early in tokio, and the bug it brings.
//!
//! - [`cancellation`]: the same stepwise work (a loop of short sleeps, a `Drop` guard
//!   inside) stopped by `JoinHandle::abort`, by dropping the future, by losing a
//!   `select!`, by a `CancellationToken` the tasks watch, and by `tokio::time::timeout`:
//!   where each stopped, whether its clean-up ran, and how long it took to stop.
//! - [`cancel_safety`]: a consumer `select!`s between receiving framed messages and a
//!   ticker. With a receive that is not cancel safe (`read_exact` of a header, then of a
//!   body), every tick that lands mid-frame drops the bytes already read: counted. Then
//!   the fixes: keep one receive future alive across iterations, read with a cancel-safe
//!   method into a buffer that outlives the future ([`FrameReader`]), or receive in a task
//!   of its own behind a channel.
//! - [`cancel_safe_methods`]: which tokio methods are cancel safe, from their docs.

use crate::lab::budget::check_estimate;
use crate::lab::findings::group;
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Stats, Table, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// Part 1: the ways to cancel.
// ---------------------------------------------------------------------------------------

/// Parameters of [`cancellation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cancellation {
    /// The work each future would do if nobody stopped it: `steps` sleeps of `step_ms`
    /// each, one `.await` per step: 2..=1000 steps.
    pub steps: u64,
    /// Length of one step, ms: 1..=100.
    pub step_ms: u64,
    /// When the cancel is requested, ms after the work starts: 1..=10000, and before the
    /// work would end (`steps × step_ms`).
    pub cancel_at_ms: u64,
    /// Tasks shut down together by one `CancellationToken`: 1..=10000.
    pub tasks: usize,
    /// The async clean-up each of those tasks runs after it sees the token (a flush,
    /// say), ms: 0..=1000.
    pub cleanup_ms: u64,
    /// Runs of every mechanism, for the spread of its stop latency: 1..=50.
    pub repeats: usize,
}

impl Default for Cancellation {
    fn default() -> Self {
        Cancellation { steps: 20, step_ms: 10, cancel_at_ms: 45, tasks: 100, cleanup_ms: 5, repeats: 7 }
    }
}

impl Cancellation {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("steps", self.steps, 2..=1000)?;
        check_range("step_ms", self.step_ms, 1..=100)?;
        check_range("cancel_at_ms", self.cancel_at_ms, 1..=10_000)?;
        let work = self.steps * self.step_ms;
        if self.cancel_at_ms >= work {
            return Err(ParamError::new(
                "cancel_at_ms",
                format!("1..{work} (before the work would end: steps × step_ms = {work} ms)"),
                self.cancel_at_ms,
            ));
        }
        check_range("tasks", self.tasks, 1..=10_000)?;
        check_range("cleanup_ms", self.cleanup_ms, 0..=1000)?;
        check_range("repeats", self.repeats, 1..=50)?;
        check_estimate("cancel_at_ms × repeats", self.estimate())
    }

    /// Per repeat: five mechanisms stopped at `cancel_at_ms`, the dropped future held
    /// unpolled for two steps, the tokens' clean-up, and about 2 ms of overhead each.
    pub fn estimate(&self) -> Duration {
        let per = 5 * (self.cancel_at_ms + 2) + 2 * self.step_ms + self.cleanup_ms + self.tasks as u64 / 100;
        Duration::from_millis(per * self.repeats as u64)
    }
}

/// `JoinHandle::abort` on a spawned task.
pub const ABORT: &str = "JoinHandle::abort";
/// `drop(fut)` of a future that was polled for a while, then left alone.
pub const DROP: &str = "drop(future)";
/// The losing branch of `tokio::select!`.
pub const SELECT: &str = "select! lost";
/// `CancellationToken::cancel`, watched by every task with `select!` on `cancelled()`.
pub const TOKEN: &str = "CancellationToken";
/// `tokio::time::timeout` around the future.
pub const TIMEOUT: &str = "time::timeout";
/// The mechanisms, in the order the figures and tables show them.
pub const MECHANISMS: [&str; 5] = [ABORT, DROP, SELECT, TOKEN, TIMEOUT];

/// One line of a run's event log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelEvent {
    /// One of [`MECHANISMS`].
    pub mechanism: String,
    /// Ms since that mechanism's work started.
    pub t_ms: f64,
    pub what: String,
}

/// One mechanism, one repeat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelRun {
    pub mechanism: String,
    pub repeat: usize,
    /// When the cancel was requested (the `abort()`/`drop()`/`cancel()` call, the winning
    /// branch's completion, the timeout's deadline), ms since the work started.
    pub cancel_ms: f64,
    /// When the work had stopped: its `Drop` guard ran (for the token: the last task
    /// finished its clean-up), ms since the work started.
    pub stopped_ms: f64,
    /// Steps the work had completed when it stopped (for the token: the median task).
    pub steps_done: u64,
    /// Whether the code after the work's last `.await` ran (it never should).
    pub ran_to_end: bool,
    /// Whether clean-up ran: the `Drop` guard (or, for the token, every task's async clean-up).
    pub cleaned_up: bool,
    /// For the token: ms from `cancel()` until the last task had seen it (before its clean-up).
    pub last_saw_ms: Option<f64>,
    /// For the dropped future: when it was last polled, ms since the work started.
    pub paused_ms: Option<f64>,
}

impl CancelRun {
    /// Stop latency, ms: from the cancel request until the work had stopped.
    pub fn stop_latency_ms(&self) -> f64 {
        (self.stopped_ms - self.cancel_ms).max(0.0)
    }
}

/// Result of [`cancellation`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancellationReport {
    pub params: Cancellation,
    pub runs: Vec<CancelRun>,
    /// The first repeat's events, every mechanism.
    pub events: Vec<CancelEvent>,
    pub load: Load,
}

/// What one piece of work reports about itself: its progress, when its `Drop` guard ran,
/// whether it ran to its end, and a log.
struct Probe {
    mechanism: &'static str,
    origin: Instant,
    step: AtomicU64,
    dropped_at: Mutex<Option<Instant>>,
    ran_to_end: AtomicBool,
    events: Mutex<Vec<CancelEvent>>,
}

impl Probe {
    fn new(mechanism: &'static str, origin: Instant) -> Arc<Probe> {
        Arc::new(Probe {
            mechanism,
            origin,
            step: AtomicU64::new(0),
            dropped_at: Mutex::new(None),
            ran_to_end: AtomicBool::new(false),
            events: Mutex::new(Vec::new()),
        })
    }

    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64() * 1e3
    }

    fn log_at(&self, t: Instant, what: impl Into<String>) {
        let e = CancelEvent { mechanism: self.mechanism.into(), t_ms: self.ms(t), what: what.into() };
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }

    fn log(&self, what: impl Into<String>) {
        self.log_at(Instant::now(), what);
    }

    fn dropped_at(&self) -> Option<Instant> {
        *self.dropped_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn events(&self) -> Vec<CancelEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Lives inside the work future; its `Drop` runs when the future is dropped, finished or not.
struct DropGuard {
    probe: Arc<Probe>,
    steps: u64,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let now = Instant::now();
        *self.probe.dropped_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        let k = self.probe.step.load(Ordering::SeqCst);
        self.probe.log_at(
            now,
            format!(
                "dropped while awaiting step {} of {} ({k} done): its Drop guard ran; the rest never will",
                k + 1,
                self.steps
            ),
        );
    }
}

/// The work every mechanism stops: `steps` sleeps of `step` each, a [`DropGuard`] alive
/// throughout, and a last line that only runs if nothing stopped it.
async fn stepwise(probe: Arc<Probe>, steps: u64, step: Duration) {
    let mut guard = DropGuard { probe: probe.clone(), steps, finished: false };
    probe.log(format!("started: {steps} steps of {} ms, one .await each", step.as_millis()));
    for i in 0..steps {
        probe.step.store(i, Ordering::SeqCst);
        tokio::time::sleep(step).await;
    }
    probe.step.store(steps, Ordering::SeqCst);
    guard.finished = true;
    probe.ran_to_end.store(true, Ordering::SeqCst);
    probe.log("ran to its end: the code after the last .await ran");
}

fn run_of(probe: &Probe, repeat: usize, cancel: Instant) -> CancelRun {
    let stopped = probe.dropped_at().unwrap_or_else(Instant::now);
    CancelRun {
        mechanism: probe.mechanism.into(),
        repeat,
        cancel_ms: probe.ms(cancel),
        stopped_ms: probe.ms(stopped),
        steps_done: probe.step.load(Ordering::SeqCst),
        ran_to_end: probe.ran_to_end.load(Ordering::SeqCst),
        cleaned_up: probe.dropped_at().is_some(),
        last_saw_ms: None,
        paused_ms: None,
    }
}

async fn by_abort(p: &Cancellation, repeat: usize) -> (CancelRun, Vec<CancelEvent>) {
    let (steps, step, at) = (p.steps, Duration::from_millis(p.step_ms), Duration::from_millis(p.cancel_at_ms));
    let origin = Instant::now();
    let probe = Probe::new(ABORT, origin);
    let h = tokio::spawn(stepwise(probe.clone(), steps, step));
    tokio::time::sleep_until((origin + at).into()).await;
    let cancel = Instant::now();
    probe.log_at(cancel, "handle.abort() called");
    h.abort();
    let joined = h.await;
    let why = match &joined {
        Err(e) if e.is_cancelled() => "handle.await returned Err(JoinError): is_cancelled() is true".to_string(),
        Err(e) => format!("handle.await returned an error: {e}"),
        Ok(()) => "handle.await returned Ok: the task had finished before the abort".to_string(),
    };
    probe.log(why);
    (run_of(&probe, repeat, cancel), probe.events())
}

async fn by_drop(p: &Cancellation, repeat: usize) -> (CancelRun, Vec<CancelEvent>) {
    let (steps, step, at) = (p.steps, Duration::from_millis(p.step_ms), Duration::from_millis(p.cancel_at_ms));
    let origin = Instant::now();
    let probe = Probe::new(DROP, origin);
    let mut fut = Box::pin(stepwise(probe.clone(), steps, step));
    // Poll it until cancel_at (a select! whose other branch is a plain deadline)…
    tokio::select! {
        biased;
        () = &mut fut => {}
        () = tokio::time::sleep_until((origin + at).into()) => {}
    }
    let held = probe.step.load(Ordering::SeqCst);
    let paused = Instant::now();
    probe.log_at(paused, format!("no longer polled: the future sits in memory, paused at step {}", held + 1));
    // …then keep it, unpolled, for two steps: it makes no progress at all.
    tokio::time::sleep(2 * step).await;
    let still = probe.step.load(Ordering::SeqCst);
    let cancel = Instant::now();
    probe.log_at(
        cancel,
        format!("drop(fut) called; while held unpolled it advanced {} step(s)", still.saturating_sub(held)),
    );
    drop(fut);
    let mut run = run_of(&probe, repeat, cancel);
    run.paused_ms = Some(probe.ms(paused));
    (run, probe.events())
}

async fn by_select(p: &Cancellation, repeat: usize) -> (CancelRun, Vec<CancelEvent>) {
    let (steps, step, at) = (p.steps, Duration::from_millis(p.step_ms), Duration::from_millis(p.cancel_at_ms));
    let origin = Instant::now();
    let probe = Probe::new(SELECT, origin);
    let won = Arc::new(Mutex::new(None));
    let w = won.clone();
    tokio::select! {
        () = stepwise(probe.clone(), steps, step) => {}
        () = async move {
            tokio::time::sleep_until((origin + at).into()).await;
            *w.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        } => {}
    }
    let cancel = won.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(origin + at);
    probe.log_at(cancel, "the other branch (a deadline) completed: select! drops every branch still pending");
    probe.log("select!'s handler runs after the drop");
    (run_of(&probe, repeat, cancel), probe.events())
}

async fn by_timeout(p: &Cancellation, repeat: usize) -> (CancelRun, Vec<CancelEvent>) {
    let (steps, step, at) = (p.steps, Duration::from_millis(p.step_ms), Duration::from_millis(p.cancel_at_ms));
    let origin = Instant::now();
    let probe = Probe::new(TIMEOUT, origin);
    let deadline = origin + at;
    let out = tokio::time::timeout_at(deadline.into(), stepwise(probe.clone(), steps, step)).await;
    probe.log_at(deadline, format!("the timeout's deadline ({} ms)", p.cancel_at_ms));
    probe.log(match out {
        Err(_) => "timeout returned Err(Elapsed); the inner future was dropped",
        Ok(()) => "timeout returned Ok: the work finished first",
    });
    (run_of(&probe, repeat, deadline), probe.events())
}

async fn by_token(p: &Cancellation, repeat: usize) -> (CancelRun, Vec<CancelEvent>) {
    let (steps, step, at) = (p.steps, Duration::from_millis(p.step_ms), Duration::from_millis(p.cancel_at_ms));
    let cleanup = Duration::from_millis(p.cleanup_ms);
    let origin = Instant::now();
    let probe = Probe::new(TOKEN, origin);
    let token = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    // Per task: steps done, when it saw the token, whether its clean-up finished.
    let seen: Arc<Mutex<Vec<(u64, Instant, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    probe.log(format!("{} tasks started: each select!s on token.cancelled() and its next step", p.tasks));
    for _ in 0..p.tasks {
        let (token, seen) = (token.clone(), seen.clone());
        tracker.spawn(async move {
            let mut done = 0;
            while done < steps {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(step) => done += 1,
                }
            }
            let saw = Instant::now();
            // The clean-up is async (a flush, a goodbye message): a Drop guard could not await it.
            tokio::time::sleep(cleanup).await;
            seen.lock().unwrap_or_else(|e| e.into_inner()).push((done, saw, true));
        });
    }
    tracker.close();
    tokio::time::sleep_until((origin + at).into()).await;
    let cancel = Instant::now();
    probe.log_at(cancel, "token.cancel() called");
    token.cancel();
    tracker.wait().await;
    let all_done = Instant::now();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let last_saw = seen.iter().map(|s| s.1).max().unwrap_or(all_done);
    probe.log_at(last_saw, format!("the last of {} tasks saw the token and began its clean-up", seen.len()));
    probe.log_at(
        all_done,
        format!("tracker.wait() returned: {} of {} tasks ran their {} ms clean-up", seen.len(), p.tasks, p.cleanup_ms),
    );
    let mut done: Vec<u64> = seen.iter().map(|s| s.0).collect();
    done.sort_unstable();
    let run = CancelRun {
        mechanism: TOKEN.into(),
        repeat,
        cancel_ms: probe.ms(cancel),
        stopped_ms: probe.ms(all_done),
        steps_done: done.get(done.len() / 2).copied().unwrap_or(0),
        ran_to_end: seen.iter().any(|s| s.0 >= steps),
        cleaned_up: seen.len() == p.tasks && seen.iter().all(|s| s.2),
        last_saw_ms: Some(last_saw.saturating_duration_since(cancel).as_secs_f64() * 1e3),
        paused_ms: None,
    };
    (run, probe.events())
}

/// Runs the same stepwise work (`steps` sleeps of `step_ms`, a `Drop` guard inside) and
/// stops it at `cancel_at_ms` with each mechanism in turn — `abort`, `drop`, a lost
/// `select!`, a `CancellationToken` watched by `tasks` tasks, `time::timeout` — `repeats`
/// times, on a 2-worker multi-thread runtime. Records where the work stopped, whether its
/// clean-up ran and the time from the cancel request until it had stopped.
pub fn cancellation(p: &Cancellation) -> Result<CancellationReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let params = p.clone();
    let limit = p.estimate() * 4 + Duration::from_secs(10);
    let (runs, events) = crate::lab::rt::run(Rt::multi(2).timeout(limit), move || async move {
        let p = params;
        let mut runs = Vec::new();
        let mut events = Vec::new();
        for repeat in 0..p.repeats {
            for (run, ev) in [
                by_abort(&p, repeat).await,
                by_drop(&p, repeat).await,
                by_select(&p, repeat).await,
                by_token(&p, repeat).await,
                by_timeout(&p, repeat).await,
            ] {
                runs.push(run);
                if repeat == 0 {
                    events.extend(ev);
                }
            }
        }
        (runs, events)
    })
    .map_err(|e| RunError::new("the cancellation runs", e))?;
    Ok(CancellationReport { params: p.clone(), runs, events, load: probe.finish() })
}

/// "0.012 ms" or "1.3 ms".
fn ms_words(v: f64) -> String {
    format!("{} ms", fmt_num(v))
}

impl CancellationReport {
    /// Every repeat of one mechanism.
    pub fn runs_of(&self, mechanism: &str) -> Vec<&CancelRun> {
        self.runs.iter().filter(|r| r.mechanism == mechanism).collect()
    }

    /// The stop latencies of one mechanism, summarised.
    pub fn latency(&self, mechanism: &str) -> Stats {
        Stats::of(&self.runs_of(mechanism).iter().map(|r| r.stop_latency_ms()).collect::<Vec<_>>())
    }

    /// The first repeat's events of one mechanism, in time order.
    pub fn events_of(&self, mechanism: &str) -> Vec<&CancelEvent> {
        let mut v: Vec<&CancelEvent> = self.events.iter().filter(|e| e.mechanism == mechanism).collect();
        v.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        v
    }

    /// The first repeat's event log, all mechanisms.
    pub fn event_log(&self) -> Table {
        let mut t = Table::new("Event log: the first run of each mechanism", &["mechanism", "t (ms)", "event"]);
        for m in MECHANISMS {
            for e in self.events_of(m) {
                t.row(vec![m.to_string(), fmt_num(e.t_ms), e.what.clone()]);
            }
        }
        t.note("Times are ms since that mechanism's work started; the work is a loop of short sleeps with a Drop guard inside.");
        t
    }
}

impl Report for CancellationReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let total = self.runs.len();
        let ran = self.runs.iter().filter(|r| r.ran_to_end).count();
        out.push(if ran == 0 {
            Finding::clear(format!(
                "in none of the {total} cancelled runs did the code after the interrupted .await run: a cancelled \
                 future stops at the .await where it was waiting and never resumes (each stopped near step {} of {})",
                self.runs_of(ABORT).first().map_or(0, |r| r.steps_done + 1),
                p.steps
            ))
        } else {
            Finding::clear(format!(
                "{ran} of {total} runs finished their work before the cancel took effect (cancel_at_ms = {} is close \
                 to the end of the work, or the machine was slow): a cancel only stops work that is still waiting",
                p.cancel_at_ms
            ))
        });
        let guards: Vec<&str> = [ABORT, DROP, SELECT, TIMEOUT]
            .into_iter()
            .filter(|m| self.runs_of(m).iter().all(|r| r.cleaned_up || r.ran_to_end))
            .collect();
        if guards.len() == 4 {
            out.push(Finding::clear(
                "abort, drop, a lost select! and a timeout all ran the future's Drop guard: cancelling drops the \
                 future, so its locals are dropped — synchronous clean-up in Drop always runs, async clean-up cannot",
            ));
        } else {
            out.push(Finding::clear(format!(
                "only {} ran the Drop guard every time — a run's future was not dropped (see the event log)",
                guards.join(", ")
            )));
        }
        let fast = [ABORT, DROP, SELECT];
        let parts: Vec<String> = fast.iter().map(|m| format!("{m} {}", ms_words(self.latency(m).median))).collect();
        let (abort, sync) = (self.latency(ABORT).median, self.latency(DROP).median.max(self.latency(SELECT).median));
        let why = if abort > 2.0 * sync {
            "a drop and a lost select! drop the future on the spot, in the caller; abort() only marks the task \
             and wakes it, and a worker drops its future when it next picks the task up"
        } else {
            "all three within a factor of 2: the future is dropped about as soon as the request is made"
        };
        out.push(Finding::clear(format!(
            "median time from the cancel request until the Drop guard ran: {}; {why}",
            parts.join(", ")
        )));
        let to = self.latency(TIMEOUT);
        let why = if to.median <= 1.5 {
            "about one tick: the deadline is a tokio timer, rounded up to the timer's 1 ms tick like any sleep"
        } else {
            "more than one tick: the deadline is rounded up to the next tick, and then the runtime's \
             thread had to wake and run (later on a busy machine)"
        };
        out.push(Finding::clear(format!(
            "the timeout dropped its future {} after the deadline at the median (max {}), {why}",
            ms_words(to.median),
            ms_words(to.max)
        )));
        let tok = self.latency(TOKEN);
        let saw: Vec<f64> = self.runs_of(TOKEN).iter().filter_map(|r| r.last_saw_ms).collect();
        let saw = Stats::of(&saw);
        let cleaned = self.runs_of(TOKEN).iter().filter(|r| r.cleaned_up).count();
        out.push(Finding::clear(format!(
            "the CancellationToken stopped {} tasks cooperatively: the last saw cancelled() {} after cancel() and all \
             had finished their {} ms async clean-up {} after it (medians; clean-up complete in {cleaned} of {} runs): \
             each task decides where it stops and what it does before",
            p.tasks,
            ms_words(saw.median),
            p.cleanup_ms,
            ms_words(tok.median),
            self.runs_of(TOKEN).len()
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut tl = Figure::timeline(
            "Five ways to stop the same work: where each stopped (first run)",
            "time since the work started (ms)",
            "mechanism",
        );
        let p = &self.params;
        let end = p.cancel_at_ms as f64 + 3.0 * p.step_ms as f64;
        let mark = (end / 150.0).max(0.05);
        for r in self.runs.iter().filter(|r| r.repeat == 0) {
            let m = r.mechanism.as_str();
            match m {
                DROP => {
                    let paused = r.paused_ms.unwrap_or(p.cancel_at_ms as f64);
                    tl = tl.span(m, "working (polled)", 0.0, paused.min(r.stopped_ms));
                    tl = tl.span(m, "not polled, still in memory", paused, r.cancel_ms);
                }
                TOKEN => {
                    let saw = r.cancel_ms + r.last_saw_ms.unwrap_or(0.0);
                    tl = tl.span(m, "working (polled)", 0.0, r.cancel_ms);
                    tl = tl.span(m, "async clean-up", saw, r.stopped_ms.max(saw));
                }
                _ => tl = tl.span(m, "working (polled)", 0.0, r.stopped_ms),
            }
            tl = tl.span(m, "cancel requested", r.cancel_ms, r.cancel_ms + mark);
            tl = tl.span(m, "stopped (Drop ran / all done)", r.stopped_ms, r.stopped_ms + mark);
        }
        let tl = tl.note(format!(
            "Each lane: {} steps of {} ms; cancel requested at {} ms. The dropped future is held unpolled for two \
             steps before drop(). The token lane shows {} tasks together.",
            p.steps, p.step_ms, p.cancel_at_ms, p.tasks
        ));
        let mut bars = Figure::bars(
            "How long from the cancel request until the work had stopped?",
            "mechanism",
            "stop latency (ms); bar: median, whiskers: p25–p75",
        )
        .log_y();
        for m in MECHANISMS {
            let s = self.latency(m);
            // A group label wraps at spaces only: break the long names where a reader would.
            let label = match m {
                ABORT => "JoinHandle:: abort",
                TOKEN => "Cancellation Token",
                other => other,
            };
            // A log axis cannot show 0: clamp to 0.1 µs.
            bars = bars.bar(label, "stop latency", s.median.max(1e-4), Some((s.p25.max(1e-4), s.p75.max(1e-4))));
        }
        let bars = bars.note(format!(
            "{} runs each. The token's latency includes every task's {} ms clean-up.",
            p.repeats, p.cleanup_ms
        ));
        vec![mark_busy(tl, &self.load), mark_busy(bars, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Each way a future or task ends early",
            &[
                "mechanism",
                "stopped at step",
                "Drop / clean-up ran",
                "code after .await ran",
                "stop latency p50 (ms)",
                "max (ms)",
            ],
        );
        for m in MECHANISMS {
            let runs = self.runs_of(m);
            let s = self.latency(m);
            let mut steps: Vec<u64> = runs.iter().map(|r| r.steps_done + 1).collect();
            steps.sort_unstable();
            let steps = match (steps.first(), steps.last()) {
                (Some(a), Some(b)) if a == b => format!("{a} of {}", self.params.steps),
                (Some(a), Some(b)) => format!("{a}–{b} of {}", self.params.steps),
                _ => "-".into(),
            };
            let cleaned = runs.iter().filter(|r| r.cleaned_up).count();
            let ran = runs.iter().filter(|r| r.ran_to_end).count();
            t.row(vec![
                m.to_string(),
                steps,
                format!("{cleaned} of {}", runs.len()),
                format!("{ran} of {}", runs.len()),
                fmt_num(s.median),
                fmt_num(s.max),
            ]);
        }
        t.note(
            "Stop latency: from abort()/drop()/the winning branch/cancel()/the deadline until the Drop guard ran \
             (token: until every task had finished its clean-up). The event log: CancellationReport::event_log().",
        );
        t
    }
}

// ---------------------------------------------------------------------------------------
// Part 2: cancel safety, shown by lost data.
// ---------------------------------------------------------------------------------------

/// The 2-byte marker at the start of every frame. It never occurs elsewhere in a stream of
/// [`frame`]s, so a reader that lost its place can find the next frame.
pub const MAGIC: [u8; 2] = [0xFA, 0xCE];
/// Header bytes: [`MAGIC`] and a little-endian `u16` body length.
pub const HEADER: usize = 4;

/// Frame number `seq` with a body of `body_len` bytes (at least 3): the body starts with
/// `seq` in three base-250 digits and goes on with a pattern that depends on `seq`, so a
/// body can be checked byte for byte ([`frame_seq`]). No body byte is `0xFA`.
///
/// ```
/// use conclab::experiments::tokio_rt::cancel::{frame, frame_seq, HEADER};
/// let f = frame(7, 12);
/// assert_eq!(f.len(), HEADER + 12);
/// assert_eq!(frame_seq(&f[HEADER..]), Some(7));
/// ```
pub fn frame(seq: u32, body_len: usize) -> Vec<u8> {
    let body_len = body_len.clamp(3, u16::MAX as usize);
    let mut f = Vec::with_capacity(HEADER + body_len);
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&(body_len as u16).to_le_bytes());
    f.extend_from_slice(&body_prefix(seq));
    for i in 3..body_len {
        f.push(pattern(seq, i));
    }
    f
}

fn body_prefix(seq: u32) -> [u8; 3] {
    [(seq % 250) as u8, ((seq / 250) % 250) as u8, ((seq / 62_500) % 250) as u8]
}

fn pattern(seq: u32, i: usize) -> u8 {
    ((seq as u64 * 7 + i as u64 * 13) % 250) as u8
}

/// The frame number of a body made by [`frame`], or `None` when any byte differs from
/// what that frame's body must be (a corrupted frame).
pub fn frame_seq(body: &[u8]) -> Option<u32> {
    if body.len() < 3 || body[..3].iter().any(|b| *b >= 250) {
        return None;
    }
    let seq = body[0] as u32 + 250 * body[1] as u32 + 62_500 * body[2] as u32;
    body[3..].iter().enumerate().all(|(i, b)| *b == pattern(seq, i + 3)).then_some(seq)
}

/// `frames` frames of `frame_bytes` bytes each (header included), back to back.
pub fn frame_stream(frames: usize, frame_bytes: usize) -> Vec<u8> {
    (0..frames as u32).flat_map(|s| frame(s, frame_bytes.saturating_sub(HEADER))).collect()
}

fn eof_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Receives one frame the obvious way — `read_exact` of the marker, of the length, then of
/// the body; after a lost place, a byte at a time up to the next marker — and returns its
/// body, or `None` at the end of the stream.
///
/// **Not cancel safe.** Between its `.await`s the bytes already read live only inside this
/// future: dropped (a `select!` branch that lost, a timeout), they are gone, and the next
/// call starts in the middle of a frame. Use it in a loop with nothing else, in a task of
/// its own, or keep its future alive across `select!` iterations — or use [`FrameReader`].
pub async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut magic = [0u8; 2];
    if eof_is_none(rd.read_exact(&mut magic).await)?.is_none() {
        return Ok(None);
    }
    while magic != MAGIC {
        magic[0] = magic[1];
        match eof_is_none(rd.read_u8().await)? {
            Some(b) => magic[1] = b,
            None => return Ok(None),
        }
    }
    let mut len = [0u8; 2];
    if eof_is_none(rd.read_exact(&mut len).await)?.is_none() {
        return Ok(None);
    }
    let mut body = vec![0u8; u16::from_le_bytes(len) as usize];
    Ok(eof_is_none(rd.read_exact(&mut body).await)?.map(|_| body))
}

/// A cancel-safe frame receiver: bytes are read with `read_buf` (cancel safe: a dropped
/// call has read nothing) into a buffer this struct owns, and frames are cut from that
/// buffer. Dropping a [`FrameReader::next_frame`] future loses nothing; the next call
/// carries on from the buffer.
///
/// ```
/// use conclab::experiments::tokio_rt::cancel::{FrameReader, frame, frame_seq, HEADER};
/// use conclab::lab::rt::{self, Rt};
/// let seqs = rt::run(Rt::current(), || async {
///     let mut bytes: &[u8] = &[frame(0, 8), frame(1, 8)].concat();
///     let mut fr = FrameReader::new();
///     let mut seqs = Vec::new();
///     while let Some(body) = fr.next_frame(&mut bytes).await.unwrap() {
///         seqs.push(frame_seq(&body).unwrap());
///     }
///     seqs
/// })
/// .unwrap();
/// assert_eq!(seqs, [0, 1]);
/// ```
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes thrown away while looking for a marker.
    pub skipped: u64,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Bytes read from the stream but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame's body, or `None` at the end of the stream. Cancel safe.
    pub async fn next_frame<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(body) = self.cut() {
                return Ok(Some(body));
            }
            self.buf.reserve(4096);
            if rd.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Cuts one whole frame off the front of the buffer, if there is one.
    fn cut(&mut self) -> Option<Vec<u8>> {
        match self.buf.windows(2).position(|w| w == MAGIC) {
            Some(0) => {}
            Some(at) => {
                self.skipped += at as u64;
                self.buf.drain(..at);
            }
            None => {
                // Keep a last 0xFA: it may be the first half of a marker.
                let keep = usize::from(self.buf.last() == Some(&MAGIC[0]));
                let gone = self.buf.len() - keep;
                self.skipped += gone as u64;
                self.buf.drain(..gone);
                return None;
            }
        }
        if self.buf.len() < HEADER {
            return None;
        }
        let len = u16::from_le_bytes([self.buf[2], self.buf[3]]) as usize;
        if self.buf.len() < HEADER + len {
            return None;
        }
        let body = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Some(body)
    }
}

/// An `AsyncRead` that counts the bytes taken from the stream it wraps.
struct Counted<R> {
    inner: R,
    taken: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

/// Counts of the receive futures a consumer dropped unfinished.
#[derive(Default)]
struct Drops {
    /// Receives dropped before they completed (the ticker won).
    cancelled: AtomicU64,
    /// Of those, receives that had already taken bytes off the stream.
    holding: AtomicU64,
}

/// Marks a receive future: when dropped before `done`, counts a cancellation, and a
/// cancellation holding bytes when the stream's count moved since it started.
struct ReceiveGuard<'a> {
    drops: &'a Drops,
    taken: &'a AtomicU64,
    start: u64,
    done: bool,
}

impl Drop for ReceiveGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.drops.cancelled.fetch_add(1, Ordering::Relaxed);
            if self.taken.load(Ordering::Relaxed) > self.start {
                self.drops.holding.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn tracked<F: Future>(fut: F, drops: &Drops, taken: &AtomicU64) -> F::Output {
    let mut g = ReceiveGuard { drops, taken, start: taken.load(Ordering::Relaxed), done: false };
    let out = fut.await;
    g.done = true;
    out
}

/// How a consumer receives while it also serves a ticker.
pub const NAIVE: &str = "naive: select! { read_frame(..) , tick }";
/// Fix (a): one receive future, pinned outside the loop, polled by every iteration.
pub const PINNED: &str = "fix a: future kept across iterations";
/// Fix (b): a cancel-safe receive into a buffer the consumer owns.
pub const BUFFERED: &str = "fix b: FrameReader (read_buf)";
/// Fix (c): a task of its own reads frames and sends them over a channel.
pub const READER_TASK: &str = "fix c: reader task + mpsc";
/// The variants, in the order the figures and tables show them.
pub const VARIANTS: [&str; 4] = [NAIVE, PINNED, BUFFERED, READER_TASK];

/// Parameters of [`cancel_safety`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CancelSafety {
    /// Frames the producer sends per variant: 10..=20000.
    pub frames: usize,
    /// Bytes per frame, its 4-byte header included: 8..=4096.
    pub frame_bytes: usize,
    /// The producer writes the stream in pieces of this many bytes: 1..=4096.
    pub chunk_bytes: usize,
    /// Pause after each piece, µs (`std::thread::sleep` on the producer's own thread), so
    /// reads come back with part of a frame: 0..=10000.
    pub gap_us: u64,
    /// Period of the ticker the consumer serves beside the stream, ms: 1..=1000.
    pub tick_ms: u64,
}

impl Default for CancelSafety {
    fn default() -> Self {
        CancelSafety { frames: 400, frame_bytes: 64, chunk_bytes: 16, gap_us: 100, tick_ms: 1 }
    }
}

impl CancelSafety {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("frames", self.frames, 10..=20_000)?;
        check_range("frame_bytes", self.frame_bytes, 8..=4096)?;
        check_range("chunk_bytes", self.chunk_bytes, 1..=4096)?;
        check_range("gap_us", self.gap_us, 0..=10_000)?;
        check_range("tick_ms", self.tick_ms, 1..=1000)?;
        check_estimate("frames × frame_bytes / chunk_bytes × gap_us", self.estimate())
    }

    /// Pieces the producer writes per variant.
    pub fn chunks(&self) -> usize {
        (self.frames * self.frame_bytes).div_ceil(self.chunk_bytes)
    }

    /// Four variants; per piece the gap plus about 80 µs of sleeping and waking.
    pub fn estimate(&self) -> Duration {
        Duration::from_micros(4 * self.chunks() as u64 * (self.gap_us + 80))
    }
}

/// One consumer variant's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SafetyRow {
    /// One of [`VARIANTS`].
    pub variant: String,
    pub frames_sent: usize,
    /// Frames received whole and byte for byte right.
    pub frames_intact: usize,
    /// Frames received whole but wrong (never expected: each frame starts with a marker).
    pub frames_corrupted: usize,
    pub bytes_sent: u64,
    /// Bytes sent that never reached the consumer inside an intact frame.
    pub bytes_lost: u64,
    /// Receive futures dropped unfinished because the ticker won.
    pub receives_cancelled: u64,
    /// Of those, receives that had already taken bytes off the stream.
    pub cancelled_holding_bytes: u64,
    /// Ticks the consumer served.
    pub ticks: u64,
    /// How long the stream took, ms.
    pub elapsed_ms: f64,
}

/// Result of [`cancel_safety`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelSafetyReport {
    pub params: CancelSafety,
    pub rows: Vec<SafetyRow>,
    pub load: Load,
}

/// What a consumer saw: frame bodies, ticks served.
struct Received {
    bodies: Vec<Vec<u8>>,
    ticks: u64,
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

async fn consume_naive(mut rd: Counted<tokio::io::DuplexStream>, period: Duration, drops: &Drops) -> Received {
    let taken = rd.taken.clone();
    let mut tick = ticker(period);
    let (mut bodies, mut ticks) = (Vec::new(), 0);
    loop {
        tokio::select! {
            f = tracked(read_frame(&mut rd), drops, &taken) => match f {
                Ok(Some(body)) => bodies.push(body),
                _ => break,
            },
            _ = tick.tick() => ticks += 1,
        }
    }
    Received { bodies, ticks }
}

/// [`read_frame`] on a reader it owns and hands back with the result. A future that
/// borrows nothing can be made once before a `select!` loop, pinned, polled through
/// `&mut fut` by every iteration (losing a round pauses it; nothing is dropped), and
/// replaced with `fut.set(read_frame_owned(rd))` once it completes — the new one has the
/// same type. Like [`read_frame`], not cancel safe itself: the fix is keeping it alive.
pub async fn read_frame_owned<R: AsyncRead + Unpin>(mut rd: R) -> (R, io::Result<Option<Vec<u8>>>) {
    let r = read_frame(&mut rd).await;
    (rd, r)
}

async fn consume_pinned(rd: Counted<tokio::io::DuplexStream>, period: Duration, drops: &Drops) -> Received {
    let taken = rd.taken.clone();
    let mut tick = ticker(period);
    let (mut bodies, mut ticks) = (Vec::new(), 0);
    // One future, made before the loop: select! polls it through `&mut`, so losing a
    // round to the ticker pauses it instead of dropping it.
    let fut = tracked(read_frame_owned(rd), drops, &taken);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            (rd, f) = &mut fut => match f {
                Ok(Some(body)) => {
                    bodies.push(body);
                    fut.set(tracked(read_frame_owned(rd), drops, &taken));
                }
                _ => break,
            },
            _ = tick.tick() => ticks += 1,
        }
    }
    Received { bodies, ticks }
}

async fn consume_buffered(mut rd: Counted<tokio::io::DuplexStream>, period: Duration, drops: &Drops) -> Received {
    let taken = rd.taken.clone();
    let mut tick = ticker(period);
    let mut fr = FrameReader::new();
    let (mut bodies, mut ticks) = (Vec::new(), 0);
    loop {
        tokio::select! {
            f = tracked(fr.next_frame(&mut rd), drops, &taken) => match f {
                Ok(Some(body)) => bodies.push(body),
                _ => break,
            },
            _ = tick.tick() => ticks += 1,
        }
    }
    Received { bodies, ticks }
}

async fn consume_task(mut rd: Counted<tokio::io::DuplexStream>, period: Duration, drops: &Drops) -> Received {
    let mut tick = ticker(period);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    // The reader task never meets a select!, so read_frame is never cancelled mid-frame.
    let reader = tokio::spawn(async move {
        while let Ok(Some(body)) = read_frame(&mut rd).await {
            if tx.send(body).await.is_err() {
                break;
            }
        }
    });
    let none = AtomicU64::new(0);
    let (mut bodies, mut ticks) = (Vec::new(), 0);
    loop {
        tokio::select! {
            // mpsc::Receiver::recv is cancel safe: losing a round takes no message.
            m = tracked(rx.recv(), drops, &none) => match m {
                Some(body) => bodies.push(body),
                None => break,
            },
            _ = tick.tick() => ticks += 1,
        }
    }
    let _ = reader.await;
    Received { bodies, ticks }
}

/// Streams the frames through a `tokio::io::duplex` pipe — written by a blocking-pool
/// thread in `chunk_bytes` pieces with `gap_us` pauses — to the variant's consumer.
async fn one_variant(p: CancelSafety, variant: &'static str) -> io::Result<SafetyRow> {
    let bytes = frame_stream(p.frames, p.frame_bytes);
    let total = bytes.len();
    // Room for the whole stream: the producer never waits for the consumer.
    let (mut w, r) = tokio::io::duplex(total + 1);
    let (chunk, gap) = (p.chunk_bytes, Duration::from_micros(p.gap_us));
    let start = Instant::now();
    let producer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        for piece in bytes.chunks(chunk) {
            futures::executor::block_on(w.write_all(piece))?;
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        // Dropping `w` ends the stream.
        Ok(())
    });
    let rd = Counted { inner: r, taken: Arc::new(AtomicU64::new(0)) };
    let period = Duration::from_millis(p.tick_ms);
    let drops = Drops::default();
    let got = match variant {
        NAIVE => consume_naive(rd, period, &drops).await,
        PINNED => consume_pinned(rd, period, &drops).await,
        BUFFERED => consume_buffered(rd, period, &drops).await,
        _ => consume_task(rd, period, &drops).await,
    };
    let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    producer.await.map_err(io::Error::other)??;
    let mut seen = vec![false; p.frames];
    let (mut intact, mut corrupted) = (0, 0);
    for body in &got.bodies {
        match frame_seq(body) {
            Some(s) if (s as usize) < p.frames && body.len() == p.frame_bytes - HEADER && !seen[s as usize] => {
                seen[s as usize] = true;
                intact += 1;
            }
            _ => corrupted += 1,
        }
    }
    Ok(SafetyRow {
        variant: variant.into(),
        frames_sent: p.frames,
        frames_intact: intact,
        frames_corrupted: corrupted,
        bytes_sent: total as u64,
        bytes_lost: (total - intact * p.frame_bytes) as u64,
        receives_cancelled: drops.cancelled.load(Ordering::Relaxed),
        cancelled_holding_bytes: drops.holding.load(Ordering::Relaxed),
        ticks: got.ticks,
        elapsed_ms,
    })
}

/// For each consumer variant ([`VARIANTS`]): a producer writes `frames` known frames into
/// a `tokio::io::duplex` pipe in small pieces with small pauses; the consumer loops on
/// `select!` between receiving the next frame and a `tick_ms` ticker. Counts the frames
/// that arrived intact, the bytes lost, and the receives the ticker cancelled.
pub fn cancel_safety(p: &CancelSafety) -> Result<CancelSafetyReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut rows = Vec::new();
    for variant in VARIANTS {
        let params = p.clone();
        let limit = p.estimate() + Duration::from_secs(10);
        let row = crate::lab::rt::run(Rt::current().timeout(limit), move || one_variant(params, variant))
            .map_err(|e| RunError::new(format!("the {variant} consumer"), e))?
            .map_err(|e| RunError::new(format!("the stream of the {variant} consumer"), e))?;
        rows.push(row);
    }
    Ok(CancelSafetyReport { params: p.clone(), rows, load: probe.finish() })
}

impl CancelSafetyReport {
    /// One variant's row.
    pub fn row(&self, variant: &str) -> Option<&SafetyRow> {
        self.rows.iter().find(|r| r.variant == variant)
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

impl Report for CancelSafetyReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        if let Some(n) = self.row(NAIVE) {
            let lost_frames = n.frames_sent - n.frames_intact;
            if n.bytes_lost > 0 {
                out.push(Finding::clear(format!(
                    "the naive loop lost {} of {} bytes ({} %): {} of {} frames never arrived. The ticker won {} \
                     rounds; in {} of them the dropped read_frame future had already taken bytes off the stream, \
                     and those bytes went with it — the next call started mid-frame and had to skip to the next marker",
                    group(n.bytes_lost),
                    group(n.bytes_sent),
                    fmt_num(pct(n.bytes_lost, n.bytes_sent)),
                    group(lost_frames as u64),
                    group(n.frames_sent as u64),
                    group(n.receives_cancelled),
                    group(n.cancelled_holding_bytes)
                )));
            } else {
                out.push(Finding::clear(format!(
                    "the naive loop lost nothing this run: the ticker won {} rounds, but never while read_frame was \
                     half-way through a frame ({} with bytes taken). The bug needs a tick to land mid-frame: make \
                     frames arrive in more pieces (smaller chunk_bytes, larger gap_us) or tick more often",
                    group(n.receives_cancelled),
                    n.cancelled_holding_bytes
                )));
            }
            if n.frames_corrupted > 0 {
                out.push(Finding::clear(format!(
                    "{} frames arrived corrupted: without the marker at each frame's start, the reader would have \
                     stayed out of step for the rest of the stream",
                    n.frames_corrupted
                )));
            }
        }
        let fixes: Vec<&SafetyRow> = self.rows.iter().filter(|r| r.variant != NAIVE).collect();
        let clean: Vec<&SafetyRow> = fixes.iter().copied().filter(|r| r.bytes_lost == 0).collect();
        if !fixes.is_empty() && clean.len() == fixes.len() {
            let ticks: Vec<String> =
                fixes.iter().map(|r| format!("{} {}", short(&r.variant), group(r.ticks))).collect();
            out.push(Finding::clear(format!(
                "all {} fixes received every one of the {} frames intact (0 bytes lost) while serving the same \
                 ticker (ticks: {}): a future kept alive across iterations is paused, not dropped, when the ticker \
                 wins; read_buf and mpsc::Receiver::recv take nothing when they are dropped, and the FrameReader \
                 keeps what it read in a buffer that outlives each future",
                fixes.len(),
                group(p.frames as u64),
                ticks.join(", ")
            )));
        } else {
            for r in fixes.iter().filter(|r| r.bytes_lost > 0) {
                out.push(Finding::clear(format!(
                    "{} lost {} bytes ({} frames) — a fix should lose none: the stream or the run failed (see the \
                     table)",
                    r.variant,
                    group(r.bytes_lost),
                    r.frames_sent - r.frames_intact
                )));
            }
        }
        if let Some(b) = self.row(BUFFERED)
            && b.cancelled_holding_bytes > 0
        {
            let naive = self.row(NAIVE).map_or(0, |n| n.cancelled_holding_bytes);
            out.push(Finding::clear(format!(
                "the FrameReader's receive was cancelled {} times after it had read bytes (the naive loop's: {}), and \
                 it lost none of them: what decides is not whether a future is cancelled but where the bytes it \
                 read live — inside the future, or in a buffer you own",
                group(b.cancelled_holding_bytes),
                group(naive)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::bars(
            "select! over a receive that is not cancel safe loses data; the fixes lose none",
            "consumer",
            &format!("count (of {} frames sent)", self.params.frames),
        );
        for r in &self.rows {
            let lost = (r.frames_sent - r.frames_intact) as f64;
            f = f.bar(
                short(&r.variant),
                "receives cancelled after taking bytes",
                r.cancelled_holding_bytes as f64,
                None,
            );
            f = f.bar(short(&r.variant), "frames lost", lost, None);
        }
        let p = &self.params;
        let f = f.note(format!(
            "{} frames of {} bytes, written in {}-byte pieces {} µs apart; the consumer also serves a {} ms ticker. \
             A receive cancelled after taking bytes loses them only if they lived inside the dropped future.",
            p.frames, p.frame_bytes, p.chunk_bytes, p.gap_us, p.tick_ms
        ));
        vec![mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Frames through a select! loop with a ticker: what arrived",
            &[
                "consumer",
                "frames intact",
                "corrupted",
                "bytes lost",
                "receives cancelled",
                "…holding bytes",
                "ticks",
                "ms",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                r.variant.clone(),
                format!("{} of {}", group(r.frames_intact as u64), group(r.frames_sent as u64)),
                r.frames_corrupted.to_string(),
                format!("{} of {}", group(r.bytes_lost), group(r.bytes_sent)),
                group(r.receives_cancelled),
                group(r.cancelled_holding_bytes),
                group(r.ticks),
                fmt_num(r.elapsed_ms),
            ]);
        }
        t.note("Receives cancelled: receive futures dropped unfinished because the ticker's branch won the select!.");
        t
    }
}

/// "naive", "fix a", …: the part of a variant's name before the colon.
fn short(variant: &str) -> &str {
    variant.split(':').next().unwrap_or(variant)
}

// ---------------------------------------------------------------------------------------
// Part 3: which methods are cancel safe.
// ---------------------------------------------------------------------------------------

/// Which common tokio (1.54) and tokio-util (0.7) methods are cancel safe, as their docs
/// say (each method's "Cancel safety" section, the list in `tokio::select!`'s docs, or
/// for `sleep` its "Cancellation" section): is it safe to use as a `select!` branch that
/// may lose, in a loop?
pub fn cancel_safe_methods() -> Table {
    const YES: &str = "yes";
    const NO: &str = "no";
    const QUEUE: &str = "no: loses its place in the queue";
    const KEEP: &str = "yes, if you keep the buffer";
    let rows: [(&str, &str, &str); 31] = [
        ("io::AsyncReadExt::read", YES, "if another branch wins, no data was read"),
        ("io::AsyncReadExt::read_buf", YES, "if another branch wins, no data was read"),
        ("io::AsyncReadExt::read_exact", NO, "bytes already read into the buffer are lost with the future"),
        ("io::AsyncReadExt::read_u8 / read_i8", YES, "one byte: read whole or not at all"),
        ("io::AsyncReadExt::read_u16 … read_f64 (and _le)", NO, "the bytes of a half-read number are lost"),
        ("io::AsyncReadExt::read_to_end / read_to_string", NO, "listed as losing data in select!'s docs"),
        ("io::AsyncBufReadExt::read_until", KEEP, "bytes read so far stay appended to your buffer; call it again"),
        ("io::AsyncBufReadExt::read_line", NO, "a partly read line is lost; no guarantee about the buffer"),
        ("io::AsyncBufReadExt::fill_buf", YES, "if another branch wins, no data was read"),
        ("io::Lines::next_line", YES, "documented as cancel safe"),
        ("io::AsyncWriteExt::write / write_buf", YES, "if another branch wins, nothing was written"),
        ("io::AsyncWriteExt::write_all", NO, "part may be written already; calling it again starts over: duplicates"),
        ("io::AsyncWriteExt::write_all_buf", KEEP, "the buffer is advanced past what was written"),
        ("io::AsyncWriteExt::flush", YES, "may have flushed part; the buffer is advanced by that much"),
        ("sync::mpsc::Receiver::recv / recv_many", YES, "no message was taken (the unbounded receiver too)"),
        ("sync::mpsc::Sender::send", NO, "the message was not sent — and is dropped: use reserve(), then the permit"),
        ("sync::mpsc::Sender::reserve", QUEUE, "senders are served in order"),
        ("sync::broadcast::Receiver::recv", YES, "no message was taken"),
        ("sync::watch::Receiver::changed", YES, "no value was marked seen"),
        ("sync::oneshot::Receiver (awaiting &mut rx)", YES, "no message was taken"),
        ("sync::Mutex::lock (and RwLock::read / write)", QUEUE, "a fair lock: waiters are served in order"),
        ("sync::Semaphore::acquire", QUEUE, "permits go out in the order asked for"),
        ("sync::Notify::notified", QUEUE, "notifications go out in the order asked for"),
        ("sync::Barrier::wait", NO, "documented as not cancel safe"),
        (
            "task::JoinHandle (awaiting &mut handle)",
            YES,
            "the task's output is not lost; dropping the handle detaches the task",
        ),
        ("task::JoinSet::join_next", YES, "no task was removed from the set"),
        ("time::Interval::tick", YES, "no tick was used up"),
        ("time::sleep", YES, "dropping the Sleep is how it is cancelled; nothing to clean up"),
        ("net::TcpListener::accept", YES, "no connection was accepted"),
        ("tokio_util::sync::CancellationToken::cancelled", YES, "documented as cancel safe"),
        ("futures::StreamExt::next", YES, "listed as cancel safe in select!'s docs"),
    ];
    let mut t = Table::new(
        "Which tokio methods are cancel safe (from tokio 1.54 / tokio-util 0.7 docs)",
        &["method", "cancel safe?", "if another select! branch wins"],
    );
    for (m, safe, why) in rows {
        t.row(vec![m.into(), safe.into(), why.into()]);
    }
    t.note(
        "“Loses its place in the queue”: nothing is lost, but a cancelled waiter goes to the back. A future \
         you write yourself is cancel safe only if nothing it has taken lives solely inside it between its \
         .awaits. tokio::time::timeout drops the future it wraps: it is as safe as that future.",
    );
    t
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![
        crate::lab::Experiment::new(
            "cancellation",
            super::NOTEBOOK,
            "abort, drop, select!, CancellationToken and timeout stopping the same work: where, clean-up, latency",
            cancellation,
        ),
        crate::lab::Experiment::new(
            "cancel-safety",
            super::NOTEBOOK,
            "select! over a receive that is not cancel safe loses bytes (counted); three fixes lose none",
            cancel_safety,
        ),
    ]
}

crate::impl_params!(Cancellation, CancelSafety);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_refuses_bad_parameters() {
        assert!(cancellation(&Cancellation { steps: 1, ..Default::default() }).is_err());
        let e = Cancellation { cancel_at_ms: 200, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("before the work would end"), "{e}");
        assert!(Cancellation { tasks: 0, ..Default::default() }.validate().is_err());
        assert!(Cancellation::default().validate().is_ok());
        assert!(Cancellation::default().estimate() < Duration::from_secs(8));
        assert!(cancel_safety(&CancelSafety { frame_bytes: 4, ..Default::default() }).is_err());
        assert!(CancelSafety { tick_ms: 0, ..Default::default() }.validate().is_err());
        assert!(CancelSafety { frames: 20_000, gap_us: 10_000, ..Default::default() }.validate().is_err());
        assert!(CancelSafety::default().validate().is_ok());
        assert!(CancelSafety::default().estimate() < Duration::from_secs(8));
    }

    #[test]
    fn cancel_frames_round_trip_and_corruption_is_seen() {
        let f = frame(123_456, 40);
        assert_eq!(&f[..2], &MAGIC);
        assert_eq!(frame_seq(&f[HEADER..]), Some(123_456));
        let mut bad = f[HEADER..].to_vec();
        bad[10] ^= 1;
        assert_eq!(frame_seq(&bad), None);
        let s = frame_stream(300, 20);
        assert_eq!(s.len(), 6000);
        // The marker occurs only at frame starts.
        let marks: Vec<usize> = s.windows(2).enumerate().filter(|(_, w)| *w == MAGIC).map(|(i, _)| i).collect();
        assert_eq!(marks, (0..300).map(|i| i * 20).collect::<Vec<_>>());
    }

    #[test]
    fn cancel_frame_reader_resyncs_and_keeps_split_frames() {
        let out = crate::lab::rt::run(Rt::current(), || async {
            // Garbage first, then frames split at every possible point by a 3-byte reader.
            let mut bytes = vec![1u8, 2, 0xFA, 9];
            bytes.extend(frame_stream(5, 11));
            let (mut w, mut r) = tokio::io::duplex(3);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                w.write_all(&bytes).await.unwrap();
            });
            let mut fr = FrameReader::new();
            let mut seqs = Vec::new();
            while let Some(b) = fr.next_frame(&mut r).await.unwrap() {
                seqs.push(frame_seq(&b).unwrap());
            }
            writer.await.unwrap();
            let mut naive = &frame_stream(3, 9)[..];
            let mut nseqs = Vec::new();
            while let Some(b) = read_frame(&mut naive).await.unwrap() {
                nseqs.push(frame_seq(&b).unwrap());
            }
            (seqs, fr.skipped, nseqs)
        })
        .unwrap();
        assert_eq!(out.0, [0, 1, 2, 3, 4]);
        assert_eq!(out.1, 4);
        assert_eq!(out.2, [0, 1, 2]);
    }

    #[test]
    fn cancel_every_mechanism_stops_the_work_and_runs_its_guard() {
        let p = Cancellation { steps: 40, step_ms: 5, cancel_at_ms: 12, tasks: 20, cleanup_ms: 2, repeats: 2 };
        let r = cancellation(&p).unwrap();
        assert_eq!(r.runs.len(), 10);
        for run in &r.runs {
            assert!(!run.ran_to_end, "{run:?}");
            assert!(run.cleaned_up, "{run:?}");
            assert!(run.steps_done < 40, "{run:?}");
            assert!(run.stopped_ms >= run.cancel_ms - 0.01, "{run:?}");
        }
        // The dropped future made no progress while held unpolled.
        assert!(r.events_of(DROP).iter().any(|e| e.what.contains("advanced 0 step")), "{:?}", r.events_of(DROP));
        assert!(r.events_of(ABORT).iter().any(|e| e.what.contains("is_cancelled() is true")));
        assert!(r.findings().len() >= 5);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.figures()[1].errors.is_empty(), "{:?}", r.figures()[1].errors);
        assert!(r.table().to_string().contains(TOKEN));
        assert!(r.event_log().to_string().contains("abort() called"));
    }

    #[test]
    fn cancel_safety_naive_loses_frames_and_fixes_lose_none() {
        let p = CancelSafety { frames: 150, ..Default::default() };
        let r = cancel_safety(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        let naive = r.row(NAIVE).unwrap();
        // ~40 ms of stream against a 1 ms ticker: dozens of ticks land mid-frame.
        assert!(naive.bytes_lost > 0 && naive.frames_intact < 150, "{naive:?}");
        for v in [PINNED, BUFFERED, READER_TASK] {
            let row = r.row(v).unwrap();
            assert_eq!(row.frames_intact, 150, "{row:?}");
            assert_eq!(row.bytes_lost, 0, "{row:?}");
        }
        assert_eq!(r.row(PINNED).unwrap().receives_cancelled, 0);
        assert!(r.findings().iter().any(|f| f.text.contains("naive loop lost")));
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("frames intact"));
    }

    #[test]
    fn cancel_safe_table_lists_the_classic_cases() {
        let t = cancel_safe_methods().to_string();
        for m in ["read_exact", "mpsc::Receiver::recv", "Mutex::lock", "write_all", "Interval::tick"] {
            assert!(t.contains(m), "{m}");
        }
    }

    /// The cells proposed for the notebook, as a learner would write them.
    #[test]
    fn cancel_notebook_cells_run() {
        use crate::prelude::*;
        struct Guard(&'static str);
        impl Drop for Guard {
            fn drop(&mut self) {
                println!("dropped: {}", self.0);
            }
        }
        // Cell: abort, and the Drop guard that still runs.
        let cancelled = rt::run(Rt::multi(2), || async {
            let task = tokio::spawn(async {
                let _g = Guard("the task's locals");
                for i in 0.. {
                    println!("step {i}");
                    tokio::time::sleep(ms(10)).await;
                }
            });
            tokio::time::sleep(ms(35)).await;
            task.abort();
            task.await.unwrap_err().is_cancelled()
        })
        .unwrap();
        assert!(cancelled);
        // Cell: timeout and select! drop the future that did not finish.
        let (timed_out, winner) = rt::run(Rt::current(), || async {
            let slow = async {
                let _g = Guard("the slow future");
                tokio::time::sleep(ms(500)).await;
                "slow"
            };
            let r = tokio::time::timeout(ms(20), slow).await;
            let winner = tokio::select! {
                _ = tokio::time::sleep(ms(10)) => "10 ms",
                _ = tokio::time::sleep(ms(1000)) => "1 s",
            };
            (r.is_err(), winner)
        })
        .unwrap();
        assert!(timed_out);
        assert_eq!(winner, "10 ms");
        // Cell: cooperative shutdown with a CancellationToken.
        let stopped = rt::run(Rt::multi(2), || async {
            let token = tokio_util::sync::CancellationToken::new();
            let tracker = tokio_util::task::TaskTracker::new();
            for id in 0..3 {
                let token = token.clone();
                tracker.spawn(async move {
                    let mut ticks = 0;
                    loop {
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = tokio::time::sleep(ms(10)) => ticks += 1,
                        }
                    }
                    println!("worker {id}: stopping after {ticks} ticks, flushing");
                    tokio::time::sleep(ms(5)).await;
                });
            }
            tracker.close();
            tokio::time::sleep(ms(50)).await;
            let t = std::time::Instant::now();
            token.cancel();
            tracker.wait().await;
            t.elapsed()
        })
        .unwrap();
        assert!(stopped < Duration::from_secs(2));
        // Cell: the cancel-safety bug by hand; the next cell swaps read_frame for a FrameReader.
        fn stream_frames(cancel_safe: bool) -> usize {
            rt::run(Rt::current(), move || async move {
                let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    for seq in 0..100 {
                        let f = frame(seq, 28);
                        tx.write_all(&f[..16]).await.unwrap();
                        if seq % 3 == 0 {
                            tokio::time::sleep(ms(2)).await; // every third frame pauses half-way
                        }
                        tx.write_all(&f[16..]).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                });
                let mut tick = tokio::time::interval(ms(1));
                let mut fr = FrameReader::new();
                let (mut got, mut ticks) = (0, 0);
                loop {
                    tokio::select! {
                        f = async {
                            if cancel_safe { fr.next_frame(&mut rx).await } else { read_frame(&mut rx).await }
                        } => match f {
                            Ok(Some(_)) => got += 1,
                            _ => break,
                        },
                        _ = tick.tick() => ticks += 1,
                    }
                }
                println!("{got} of 100 frames arrived ({ticks} ticks)");
                got
            })
            .unwrap()
        }
        let naive = stream_frames(false);
        assert!(naive < 100, "{naive}");
        assert_eq!(stream_frames(true), 100);
    }
}
