//! The `Future` trait by hand: futures written with `poll`, `Context` and `Waker` instead
//! of `async`, a way to poll one by hand and watch every step, a wrapper that logs every
//! poll and wake of a future inside a real runtime, and an `async fn` next to the enum
//! state machine the compiler turns it into.
//!
//! - [`Countdown`]: `Pending` on its first `n − 1` polls, `Ready` on poll `n`; wakes itself.
//! - [`TimerFuture`]: ready after a duration; a helper thread wakes it (the async book's
//!   timer), and that thread is joined when the future completes or is dropped.
//! - [`CountingWaker`] and [`poll_by_hand`]: an executor's loop written out, one line per poll.
//! - [`Traced`] and [`TraceLog`]: poll / `Pending` / `Ready` / wake / drop events with times.
//! - [`two_waits`] and [`TwoWaits`]: one small `async fn` and its hand-desugared state machine.
//!
//! Nothing here needs tokio: every future in this module can be polled by
//! [`poll_by_hand`], and [`Traced`] works under any executor.

use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ms_between(origin: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(origin).as_secs_f64() * 1e3
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("unnamed").to_string()
}

// ---------------------------------------------------------------------------------------
// Countdown

/// A future that returns `Pending` on its first `n − 1` polls and `Ready(n)` on poll `n`
/// (the output is how many polls it took). Each time it returns `Pending` it first calls
/// `cx.waker().wake_by_ref()`: the contract of `Future` is that a future returning
/// `Pending` has arranged to be woken, or it may never be polled again.
///
/// ```
/// use conclab::primitives::{Countdown, poll_by_hand};
/// let log = poll_by_hand(Countdown::new(3), 10);
/// assert_eq!(log.results(), ["Pending", "Pending", "Ready(3)"]);
/// assert_eq!(log.output, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Countdown {
    total: u32,
    polls: u32,
}

impl Countdown {
    /// A countdown that is ready on its `n`-th poll (`n = 0` counts as 1: ready at once).
    pub fn new(n: u32) -> Countdown {
        Countdown { total: n.max(1), polls: 0 }
    }

    /// How many times it has been polled so far.
    pub fn polls(&self) -> u32 {
        self.polls
    }
}

impl Future for Countdown {
    type Output = u32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        // `Countdown` is `Unpin` (two integers), so `Pin<&mut Self>` derefs to `&mut Self`.
        self.polls += 1;
        if self.polls >= self.total {
            Poll::Ready(self.polls)
        } else {
            // Ask to be polled again: without this call nothing would ever poll it again.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

// ---------------------------------------------------------------------------------------
// A counting waker and polling by hand

/// A waker that counts its wakes, and lets a thread wait for the next one: the smallest
/// waker an executor can use. Build one with [`CountingWaker::new`], hand
/// [`CountingWaker::waker`] to a [`Context`], read [`CountingWaker::count`].
///
/// ```
/// use conclab::primitives::CountingWaker;
/// let counter = CountingWaker::new();
/// let waker = counter.waker();
/// waker.wake_by_ref();
/// waker.clone().wake();
/// assert_eq!(counter.count(), 2);
/// ```
#[derive(Debug, Default)]
pub struct CountingWaker {
    wakes: Mutex<usize>,
    changed: Condvar,
}

impl CountingWaker {
    /// A fresh counter at 0, in an `Arc` (a [`Waker`] made from it shares it).
    pub fn new() -> Arc<CountingWaker> {
        Arc::new(CountingWaker::default())
    }

    /// A [`Waker`] whose `wake` adds one to this counter.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(self))
    }

    /// Wakes so far.
    pub fn count(&self) -> usize {
        *lock(&self.wakes)
    }

    /// Blocks until the count is above `seen` or `limit` has passed; true if it is above.
    pub fn wait_past(&self, seen: usize, limit: Duration) -> bool {
        let guard = lock(&self.wakes);
        let (guard, _) =
            self.changed.wait_timeout_while(guard, limit, |n| *n <= seen).unwrap_or_else(|e| e.into_inner());
        *guard > seen
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        *lock(&self.wakes) += 1;
        self.changed.notify_all();
    }
}

/// One poll made by [`poll_by_hand`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollStep {
    /// 1 for the first poll.
    pub poll: usize,
    /// When the poll returned, in ms since the first poll began.
    pub at_ms: f64,
    /// `Pending` or `Ready(…)` with the output's `Debug` form.
    pub result: String,
    /// Wakes counted so far, after this poll returned.
    pub wakes: usize,
}

/// What [`poll_by_hand`] saw: every poll, the output if the future finished, and why it
/// stopped otherwise. Print it (`println!("{log}")`) or end a cell with it.
#[derive(Debug, Clone, PartialEq)]
pub struct PollLog<T> {
    pub steps: Vec<PollStep>,
    /// The future's output, if it returned `Ready`.
    pub output: Option<T>,
    /// Why polling stopped before `Ready` (the poll limit, or no wake came).
    pub stopped: Option<String>,
}

impl<T> PollLog<T> {
    /// How many times the future was polled.
    pub fn polls(&self) -> usize {
        self.steps.len()
    }

    /// Each poll's result in order: `["Pending", "Pending", "Ready(3)"]`.
    pub fn results(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.result.clone()).collect()
    }

    /// Shows the log as plain text in a notebook cell.
    pub fn evcxr_display(&self) {
        crate::lab::display::emit(&[("text/plain", &self.to_string())]);
    }
}

impl<T> fmt::Display for PollLog<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "poll {} → {:<10} at {} ms, wakes so far: {}",
                s.poll,
                s.result,
                crate::lab::fmt_num(s.at_ms),
                s.wakes
            )?;
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "stopped: {why}")?;
        }
        Ok(())
    }
}

/// How long [`poll_by_hand`] waits for a wake after a `Pending`.
pub const WAKE_WAIT: Duration = Duration::from_secs(2);

/// Polls `fut` by hand, the way an executor does, at most `max_polls` times: poll; on
/// `Pending`, wait until the waker is called (at most [`WAKE_WAIT`]) and poll again; stop
/// at `Ready`. Returns every step with the wake count of a [`CountingWaker`].
///
/// The future is pinned on this function's stack with [`std::pin::pin!`], so any future
/// works, `Unpin` or not. It runs on the calling thread, with no runtime: tokio's own
/// futures (`tokio::time::sleep`) need one and belong inside [`crate::lab::rt`] instead.
///
/// ```
/// use conclab::primitives::{TimerFuture, poll_by_hand};
/// use std::time::Duration;
/// let log = poll_by_hand(TimerFuture::new(Duration::from_millis(20)), 10);
/// assert_eq!(log.results()[0], "Pending"); // the helper thread wakes it once, 20 ms later
/// assert!(log.output.unwrap() >= Duration::from_millis(20));
/// ```
pub fn poll_by_hand<F>(fut: F, max_polls: usize) -> PollLog<F::Output>
where
    F: Future,
    F::Output: fmt::Debug,
{
    poll_by_hand_within(fut, max_polls, WAKE_WAIT)
}

/// [`poll_by_hand`] with another wait for each wake (a future that returns `Pending`
/// without arranging a wake is reported after `wake_wait`, not waited on forever).
pub fn poll_by_hand_within<F>(fut: F, max_polls: usize, wake_wait: Duration) -> PollLog<F::Output>
where
    F: Future,
    F::Output: fmt::Debug,
{
    let counter = CountingWaker::new();
    let waker = counter.waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let mut log = PollLog { steps: Vec::new(), output: None, stopped: None };
    if max_polls == 0 {
        log.stopped = Some("max_polls = 0: never polled, so its body never ran".into());
        return log;
    }
    let start = Instant::now();
    for poll in 1..=max_polls {
        let before = counter.count();
        let result = fut.as_mut().poll(&mut cx);
        let at_ms = ms_between(start, Instant::now());
        match result {
            Poll::Ready(v) => {
                log.steps.push(PollStep { poll, at_ms, result: format!("Ready({v:?})"), wakes: counter.count() });
                log.output = Some(v);
                return log;
            }
            Poll::Pending => {
                log.steps.push(PollStep { poll, at_ms, result: "Pending".into(), wakes: counter.count() });
                if poll == max_polls {
                    log.stopped = Some(format!("still Pending after {max_polls} polls (the limit)"));
                    return log;
                }
                // An executor polls again only once the waker has been called.
                if !counter.wait_past(before, wake_wait) {
                    log.stopped = Some(format!(
                        "Pending, and no wake came within {} ms: an executor would never poll it again",
                        wake_wait.as_millis()
                    ));
                    return log;
                }
            }
        }
    }
    log
}

// ---------------------------------------------------------------------------------------
// A timer woken by a helper thread

#[derive(Debug, Default)]
struct TimerState {
    fired_at: Option<Instant>,
    cancelled: bool,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct TimerShared {
    state: Mutex<TimerState>,
    changed: Condvar,
}

/// Name of the helper thread of a [`TimerFuture`].
pub const TIMER_THREAD: &str = "conclab-timer";

/// A future that is ready `duration` after its first poll, woken by a helper thread:
/// the async book's `TimerFuture`. Its output is the time from the first poll to the
/// moment the helper thread fired (at least `duration`).
///
/// - The clock and the helper thread start at the first poll, not at creation: a timer
///   that is never polled does nothing at all (futures are lazy).
/// - Every poll stores the current waker (unless the stored one would wake the same
///   task): a future may move between tasks, and only the latest waker counts.
/// - The helper thread never outlives the future: it is joined when the future
///   completes, and a future dropped early cancels its thread and joins it.
///
/// If the OS refuses the helper thread, the timer still works by waking itself on every
/// poll until the deadline (busy, but correct).
#[derive(Debug)]
pub struct TimerFuture {
    duration: Duration,
    started: Option<Instant>,
    shared: Arc<TimerShared>,
    helper: Option<JoinHandle<()>>,
    no_thread: bool,
}

impl TimerFuture {
    /// A timer of `duration`; nothing starts until it is polled.
    pub fn new(duration: Duration) -> TimerFuture {
        TimerFuture { duration, started: None, shared: Arc::default(), helper: None, no_thread: false }
    }

    /// Whether its helper thread is running (started by the first poll, joined at the end).
    pub fn has_helper(&self) -> bool {
        self.helper.is_some()
    }

    fn start_helper(&mut self, deadline: Instant) {
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new().name(TIMER_THREAD.into()).spawn(move || {
            let mut st = lock(&shared.state);
            loop {
                if st.cancelled {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = shared.changed.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            st.fired_at = Some(Instant::now());
            let waker = st.waker.take();
            drop(st);
            // Wake outside the lock: the waker may poll or lock things of its own.
            if let Some(w) = waker {
                w.wake();
            }
        });
        match spawned {
            Ok(h) => self.helper = Some(h),
            Err(_) => self.no_thread = true,
        }
    }
}

impl Future for TimerFuture {
    type Output = Duration;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Duration> {
        let this = &mut *self; // `TimerFuture` is `Unpin`: no field borrows another
        let started = *this.started.get_or_insert_with(Instant::now);
        let deadline = started + this.duration;
        if this.no_thread {
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(now - started);
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        {
            let mut st = lock(&this.shared.state);
            if let Some(fired) = st.fired_at {
                drop(st);
                // The helper has fired and is ending: join it now, so it never outlives us.
                if let Some(h) = this.helper.take() {
                    let _ = h.join();
                }
                return Poll::Ready(fired - started);
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
        }
        if this.helper.is_none() {
            this.start_helper(deadline);
            if this.no_thread {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }
}

impl Drop for TimerFuture {
    fn drop(&mut self) {
        if let Some(h) = self.helper.take() {
            lock(&self.shared.state).cancelled = true;
            self.shared.changed.notify_all();
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Traced: a log of polls and wakes

/// What happened to a traced future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TraceKind {
    /// A poll began.
    Poll,
    /// The poll returned `Pending`.
    Pending,
    /// The poll returned `Ready`.
    Ready,
    /// The waker this future was given was called (by a timer, another thread, itself).
    Wake,
    /// The future was dropped before it returned `Ready`: cancelled.
    Dropped,
}

impl TraceKind {
    /// `poll`, `Pending`, `Ready`, `wake` or `dropped`.
    pub fn name(self) -> &'static str {
        match self {
            TraceKind::Poll => "poll",
            TraceKind::Pending => "Pending",
            TraceKind::Ready => "Ready",
            TraceKind::Wake => "wake",
            TraceKind::Dropped => "dropped",
        }
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One event of a [`Traced`] future.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceEvent {
    /// The label the future was traced under ("A", "B").
    pub label: String,
    pub kind: TraceKind,
    /// Milliseconds since the log's origin.
    pub at_ms: f64,
    /// The poll this event belongs to (1 = the first); for a wake, the latest poll
    /// before it; 0 for a drop before any poll.
    pub poll: usize,
    /// The thread it happened on: the polling thread, or for a wake, the waking one.
    pub thread: String,
}

/// A shared, time-stamped log of [`Traced`] futures' events. Clone it into tasks (clones
/// share one log); wrap futures with [`TraceLog::trace`].
///
/// ```
/// use conclab::primitives::{Countdown, TraceKind, TraceLog, poll_by_hand};
/// let log = TraceLog::new();
/// poll_by_hand(log.trace("A", Countdown::new(2)), 5);
/// let kinds: Vec<TraceKind> = log.events().iter().map(|e| e.kind).collect();
/// use TraceKind::*;
/// assert_eq!(kinds, [Poll, Wake, Pending, Poll, Ready]);
/// ```
#[derive(Debug, Clone)]
pub struct TraceLog {
    origin: Instant,
    events: Arc<Mutex<Vec<TraceEvent>>>,
}

impl Default for TraceLog {
    fn default() -> Self {
        TraceLog::new()
    }
}

impl TraceLog {
    /// An empty log whose origin is now.
    pub fn new() -> TraceLog {
        TraceLog::with_origin(Instant::now())
    }

    /// An empty log with times measured from `origin`.
    pub fn with_origin(origin: Instant) -> TraceLog {
        TraceLog { origin, events: Arc::default() }
    }

    /// The instant times are measured from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Milliseconds from the origin to now.
    pub fn now_ms(&self) -> f64 {
        ms_between(self.origin, Instant::now())
    }

    /// Wraps `fut` so that its polls, results, wakes and an early drop are logged
    /// under `label`.
    pub fn trace<F: Future>(&self, label: &str, fut: F) -> Traced<F> {
        Traced {
            fut: Box::pin(fut),
            label: label.into(),
            log: self.clone(),
            polls: Arc::new(AtomicUsize::new(0)),
            done: false,
            wakers: None,
        }
    }

    fn push(&self, label: &str, kind: TraceKind, poll: usize) {
        let e = TraceEvent { label: label.into(), kind, at_ms: self.now_ms(), poll, thread: thread_name() };
        lock(&self.events).push(e);
    }

    /// Every event so far, in the order they were logged (which is time order).
    pub fn events(&self) -> Vec<TraceEvent> {
        lock(&self.events).clone()
    }

    /// The events of the future traced as `label`.
    pub fn of(&self, label: &str) -> Vec<TraceEvent> {
        lock(&self.events).iter().filter(|e| e.label == label).cloned().collect()
    }

    /// Forgets every event (the origin stays).
    pub fn clear(&self) {
        lock(&self.events).clear();
    }
}

impl fmt::Display for TraceLog {
    /// One line per event: `  10.21 ms  A  wake (after poll 1) on conclab-timer`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.events() {
            let what = match e.kind {
                TraceKind::Poll => format!("poll {}", e.poll),
                TraceKind::Wake => format!("wake (after poll {})", e.poll),
                TraceKind::Dropped => "dropped unfinished".into(),
                k => format!("→ {k}"),
            };
            writeln!(f, "{:>9} ms  {}  {what} on {}", crate::lab::fmt_num(e.at_ms), e.label, e.thread)?;
        }
        Ok(())
    }
}

/// The waker a [`Traced`] future hands to its inner future: it logs the wake, then
/// passes it on to the waker of whoever polled the traced future.
struct TracingWaker {
    inner: Waker,
    label: Arc<str>,
    log: TraceLog,
    polls: Arc<AtomicUsize>,
}

impl Wake for TracingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.log.push(&self.label, TraceKind::Wake, self.polls.load(Ordering::Relaxed));
        self.inner.wake_by_ref();
    }
}

/// A future that logs into a [`TraceLog`] what happens to the future it wraps: each
/// poll, its result, each call of the waker the inner future was given, and a drop
/// before `Ready` (a cancellation). Make one with [`TraceLog::trace`].
///
/// The inner future is boxed, so `Traced` is `Unpin` whatever it wraps, and `Send` when
/// the inner future is (it can be `tokio::spawn`ed).
pub struct Traced<F> {
    fut: Pin<Box<F>>,
    label: Arc<str>,
    log: TraceLog,
    polls: Arc<AtomicUsize>,
    done: bool,
    /// The caller's waker of the last poll and the tracing waker made around it.
    wakers: Option<(Waker, Waker)>,
}

impl<F> Traced<F> {
    /// The label its events carry.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl<F> fmt::Debug for Traced<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced").field("label", &self.label).field("polls", &self.polls).finish_non_exhaustive()
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let poll = this.polls.fetch_add(1, Ordering::Relaxed) + 1;
        this.log.push(&this.label, TraceKind::Poll, poll);
        // One tracing waker per caller's waker: made again only when the caller changes.
        let reuse = this.wakers.as_ref().is_some_and(|(outer, _)| outer.will_wake(cx.waker()));
        if !reuse {
            let tracing = Arc::new(TracingWaker {
                inner: cx.waker().clone(),
                label: Arc::clone(&this.label),
                log: this.log.clone(),
                polls: Arc::clone(&this.polls),
            });
            this.wakers = Some((cx.waker().clone(), Waker::from(tracing)));
        }
        let waker = &this.wakers.as_ref().expect("set just above").1;
        let out = this.fut.as_mut().poll(&mut Context::from_waker(waker));
        let kind = if out.is_ready() { TraceKind::Ready } else { TraceKind::Pending };
        this.done |= out.is_ready();
        this.log.push(&this.label, kind, poll);
        out
    }
}

impl<F> Drop for Traced<F> {
    fn drop(&mut self) {
        if !self.done {
            self.log.push(&self.label, TraceKind::Dropped, self.polls.load(Ordering::Relaxed));
        }
    }
}

// ---------------------------------------------------------------------------------------
// An async fn and its hand-desugared state machine

/// A small `async fn` with two `.await`s and locals (`name`, `lines`) held across both.
/// [`TwoWaits`] is the same function written out as the state machine the compiler makes.
///
/// ```
/// use conclab::primitives::{TwoWaits, poll_by_hand, two_waits};
/// let a = poll_by_hand(two_waits("x".into(), 2), 10);
/// let b = poll_by_hand(TwoWaits::new("x", 2), 10);
/// assert_eq!(a.polls(), b.polls());
/// assert_eq!(a.output, b.output);
/// ```
pub async fn two_waits(name: String, polls: u32) -> Vec<String> {
    let mut lines = vec![format!("{name}: started")];
    let first = Countdown::new(polls).await;
    lines.push(format!("{name}: first wait ready after {first} polls"));
    let second = Countdown::new(polls + 1).await;
    lines.push(format!("{name}: second wait ready after {second} polls"));
    lines
}

/// [`two_waits`] desugared by hand: one enum variant per place the function can be
/// suspended, each holding exactly what is still needed after that point. `poll` runs
/// the code between two `.await`s and moves to the next state; a `Pending` from the
/// awaited future is passed up, leaving the state as it is.
///
/// The compiler's version is `!Unpin`, because in general a local may borrow another
/// across an `.await` (the future then points into itself and must not move). This enum
/// holds no such borrow, so it is `Unpin`, and `poll` may move its fields freely.
#[derive(Debug)]
pub enum TwoWaits {
    /// Created, never polled: only the arguments. Creating it ran no code.
    Start { name: String, polls: u32 },
    /// Suspended at the first `.await`: arguments, the local `lines`, and the future awaited.
    FirstWait { name: String, polls: u32, lines: Vec<String>, wait: Countdown },
    /// Suspended at the second `.await`: `polls` is no longer needed, so it is not kept.
    SecondWait { name: String, lines: Vec<String>, wait: Countdown },
    /// Returned `Ready`; polling again panics, as a finished `async fn` does.
    Done,
}

impl TwoWaits {
    /// The state machine of `two_waits(name, polls)`, in its start state.
    pub fn new(name: impl Into<String>, polls: u32) -> TwoWaits {
        TwoWaits::Start { name: name.into(), polls }
    }
}

impl Future for TwoWaits {
    type Output = Vec<String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<String>> {
        let this = self.get_mut(); // allowed: `TwoWaits` is `Unpin`
        loop {
            match std::mem::replace(this, TwoWaits::Done) {
                TwoWaits::Start { name, polls } => {
                    // The code before the first `.await`.
                    let lines = vec![format!("{name}: started")];
                    *this = TwoWaits::FirstWait { name, polls, lines, wait: Countdown::new(polls) };
                }
                TwoWaits::FirstWait { name, polls, mut lines, mut wait } => match Pin::new(&mut wait).poll(cx) {
                    Poll::Pending => {
                        *this = TwoWaits::FirstWait { name, polls, lines, wait };
                        return Poll::Pending;
                    }
                    Poll::Ready(first) => {
                        // The code between the two `.await`s.
                        lines.push(format!("{name}: first wait ready after {first} polls"));
                        *this = TwoWaits::SecondWait { name, lines, wait: Countdown::new(polls + 1) };
                    }
                },
                TwoWaits::SecondWait { name, mut lines, mut wait } => match Pin::new(&mut wait).poll(cx) {
                    Poll::Pending => {
                        *this = TwoWaits::SecondWait { name, lines, wait };
                        return Poll::Pending;
                    }
                    Poll::Ready(second) => {
                        // The code after the last `.await`; the state stays `Done`.
                        lines.push(format!("{name}: second wait ready after {second} polls"));
                        return Poll::Ready(lines);
                    }
                },
                TwoWaits::Done => panic!("`TwoWaits` polled after it returned Ready"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_countdown_is_pending_n_minus_one_times_and_wakes_itself_each_time() {
        let log = poll_by_hand(Countdown::new(3), 10);
        assert_eq!(log.results(), ["Pending", "Pending", "Ready(3)"]);
        assert_eq!(log.steps.iter().map(|s| s.wakes).collect::<Vec<_>>(), [1, 2, 2]);
        assert_eq!((log.output, log.stopped), (Some(3), None));
        assert_eq!(poll_by_hand(Countdown::new(0), 1).output, Some(1));
        let text = poll_by_hand(Countdown::new(2), 5).to_string();
        assert!(text.contains("poll 1 → Pending") && text.contains("poll 2 → Ready(2)"), "{text}");
    }

    #[test]
    fn polling_by_hand_stops_at_the_limit_and_when_no_wake_comes() {
        let log = poll_by_hand(Countdown::new(5), 2);
        assert_eq!((log.polls(), log.output), (2, None));
        assert!(log.stopped.unwrap().contains("after 2 polls"));
        let log = poll_by_hand_within(std::future::pending::<()>(), 5, Duration::from_millis(20));
        assert_eq!(log.polls(), 1);
        assert!(log.stopped.as_deref().unwrap().contains("no wake came"), "{log}");
        let log = poll_by_hand(Countdown::new(1), 0);
        assert!(log.steps.is_empty() && log.stopped.unwrap().contains("never polled"));
    }

    #[test]
    fn a_counting_waker_lets_a_thread_wait_for_the_next_wake() {
        let c = CountingWaker::new();
        assert!(!c.wait_past(0, Duration::from_millis(5)));
        let w = c.waker();
        std::thread::scope(|s| {
            s.spawn(move || w.wake());
            assert!(c.wait_past(0, Duration::from_secs(10)));
        });
        assert_eq!(c.count(), 1);
    }

    #[test]
    fn a_timer_is_woken_once_by_its_helper_thread_which_is_then_joined() {
        let counter = CountingWaker::new();
        let waker = counter.waker();
        let mut cx = Context::from_waker(&waker);
        let mut t = TimerFuture::new(Duration::from_millis(20));
        assert!(!t.has_helper(), "nothing starts before the first poll");
        assert!(Pin::new(&mut t).poll(&mut cx).is_pending());
        assert!(t.has_helper());
        assert!(counter.wait_past(0, Duration::from_secs(10)), "the helper thread never woke us");
        match Pin::new(&mut t).poll(&mut cx) {
            Poll::Ready(d) => assert!(d >= Duration::from_millis(20), "{d:?}"),
            Poll::Pending => panic!("woken, but not ready"),
        }
        assert!(!t.has_helper(), "the helper is joined when the timer completes");
        assert_eq!(counter.count(), 1);
    }

    #[test]
    fn a_timer_dropped_early_cancels_and_joins_its_thread_at_once() {
        let counter = CountingWaker::new();
        let waker = counter.waker();
        let mut t = TimerFuture::new(Duration::from_secs(30));
        assert!(Pin::new(&mut t).poll(&mut Context::from_waker(&waker)).is_pending());
        let start = Instant::now();
        drop(t); // joins the helper: it must not wait out its 30 s
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
        assert_eq!(counter.count(), 0, "a cancelled timer never wakes");
    }

    #[test]
    fn traced_logs_polls_results_and_the_wakes_of_its_waker() {
        let log = TraceLog::new();
        let out = poll_by_hand(log.trace("A", TimerFuture::new(Duration::from_millis(100))), 10);
        assert!(out.output.is_some());
        let ev = log.of("A");
        let kinds: Vec<TraceKind> = ev.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [TraceKind::Poll, TraceKind::Pending, TraceKind::Wake, TraceKind::Poll, TraceKind::Ready]);
        assert_eq!(ev[2].thread, TIMER_THREAD, "the helper thread woke it");
        assert_eq!((ev[2].poll, ev[3].poll), (1, 2));
        assert!(ev.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(ev[2].at_ms >= 100.0, "{ev:?}");
        assert!(log.to_string().contains("wake (after poll 1) on conclab-timer"), "{log}");
    }

    #[test]
    fn a_traced_future_dropped_before_ready_logs_its_cancellation() {
        let log = TraceLog::new();
        let out = poll_by_hand(log.trace("B", Countdown::new(10)), 2);
        assert!(out.output.is_none());
        let kinds: Vec<TraceKind> = log.of("B").iter().map(|e| e.kind).collect();
        assert_eq!(kinds.last(), Some(&TraceKind::Dropped));
        assert_eq!(kinds.iter().filter(|k| **k == TraceKind::Poll).count(), 2);
        // never polled, then dropped: a drop at poll 0
        drop(log.trace("C", Countdown::new(1)));
        assert_eq!(log.of("C")[0].poll, 0);
        // A finished future's drop is not a cancellation.
        poll_by_hand(log.trace("D", Countdown::new(1)), 1);
        assert!(log.of("D").iter().all(|e| e.kind != TraceKind::Dropped));
    }

    #[test]
    fn the_hand_desugared_state_machine_agrees_with_the_async_fn() {
        for polls in [1, 2, 3, 5] {
            let a = poll_by_hand(two_waits("f".into(), polls), 100);
            let b = poll_by_hand(TwoWaits::new("f", polls), 100);
            assert_eq!(a.output, b.output, "polls = {polls}");
            assert_eq!(a.results(), b.results(), "polls = {polls}");
            assert_eq!(a.polls(), 2 * polls as usize, "{a}");
        }
        let out = poll_by_hand(TwoWaits::new("f", 2), 10).output.unwrap();
        assert_eq!(out, ["f: started", "f: first wait ready after 2 polls", "f: second wait ready after 3 polls"]);
        fn is_unpin<T: Unpin>(_: &T) {}
        is_unpin(&TwoWaits::new("f", 1));
        // Creating either runs no code: the state machine sits in its start state.
        assert!(matches!(TwoWaits::new("f", 1), TwoWaits::Start { .. }));
    }

    #[cfg(feature = "rt")]
    #[test]
    fn traced_futures_under_tokio_join_show_who_was_polled_when() {
        use crate::lab::rt::{self, Rt, ms};
        let log = TraceLog::new();
        let l = log.clone();
        rt::run(Rt::current(), move || async move {
            tokio::join!(l.trace("A", tokio::time::sleep(ms(5))), l.trace("B", tokio::time::sleep(ms(60))));
        })
        .unwrap();
        for label in ["A", "B"] {
            let ev = log.of(label);
            assert_eq!(ev.iter().filter(|e| e.kind == TraceKind::Ready).count(), 1, "{log}");
            assert!(ev.iter().any(|e| e.kind == TraceKind::Wake), "{log}");
            assert!(ev.iter().all(|e| e.kind != TraceKind::Dropped), "{log}");
        }
        let b_ready = log.of("B").iter().find(|e| e.kind == TraceKind::Ready).unwrap().at_ms;
        assert!(b_ready >= 60.0, "a tokio sleep never ends early: {log}");
    }
}
