//! A mini executor: what `tokio::runtime::Runtime::block_on` and a single-thread task
//! queue do, in a few hundred lines. Futures do nothing until something polls them; an
//! executor is that something, and a [`Waker`] is how a future says "poll me again".
//!
//! - [`block_on`] / [`block_on_timeout`]: poll one future on the calling thread, and sleep
//!   (park) between polls until its waker unparks the thread.
//! - [`MiniExecutor`]: many tasks on one thread. Each task is an `Arc` holding its pinned,
//!   boxed future; its waker is that same `Arc`, and waking it puts the task back on the
//!   run queue — once, however many times it is woken before it runs again.
//!
//! Neither knows about timers or sockets: a future that waits for one needs a thread or
//! a reactor that calls its waker (tokio's `sleep` needs tokio's timer; a
//! `futures::channel::oneshot` or a helper thread works anywhere).

use crate::lab::panics::panic_message;
#[cfg(not(conclab_loom))]
use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(conclab_loom))]
use std::thread::{Thread, current as current_thread};

#[cfg(conclab_loom)]
use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(conclab_loom)]
use loom::thread::{Thread, current as current_thread};

use super::sync::{AtomicBool, UnsafeCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

/// How long [`MiniExecutor::run`] waits for its tasks before it gives up with an error.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Wakers: a data pointer and four functions.

/// Something an `Arc` of which can serve as a waker.
trait ArcWake: Send + Sync + 'static {
    fn wake_by_ref(this: &Arc<Self>);

    fn wake(this: Arc<Self>) {
        Self::wake_by_ref(&this)
    }
}

/// A [`Waker`] is a pointer plus a table of four functions (clone, wake, wake by
/// reference, drop). Here the pointer is an `Arc<W>` turned into a raw pointer: cloning
/// the waker adds a reference, dropping it removes one, waking calls [`ArcWake`].
fn vtable<W: ArcWake>() -> &'static RawWakerVTable {
    &RawWakerVTable::new(clone_raw::<W>, wake_raw::<W>, wake_by_ref_raw::<W>, drop_raw::<W>)
}

// SAFETY (all four): `p` always comes from `Arc::as_ptr`/`Arc::into_raw` of an `Arc<W>`
// that is alive: an owned waker holds one reference of its own, and a borrowed one
// (`waker_ref`) lives only while its owner's `Arc` does.
unsafe fn clone_raw<W: ArcWake>(p: *const ()) -> RawWaker {
    unsafe { Arc::increment_strong_count(p as *const W) };
    RawWaker::new(p, vtable::<W>())
}

unsafe fn wake_raw<W: ArcWake>(p: *const ()) {
    W::wake(unsafe { Arc::from_raw(p as *const W) });
}

unsafe fn wake_by_ref_raw<W: ArcWake>(p: *const ()) {
    let this = ManuallyDrop::new(unsafe { Arc::from_raw(p as *const W) });
    W::wake_by_ref(&this);
}

unsafe fn drop_raw<W: ArcWake>(p: *const ()) {
    drop(unsafe { Arc::from_raw(p as *const W) });
}

/// A waker that borrows `this` (no reference count touched): for one poll. A future that
/// keeps the waker clones it, and the clone holds a reference of its own.
fn waker_ref<W: ArcWake>(this: &Arc<W>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(Arc::as_ptr(this) as *const (), vtable::<W>());
    // SAFETY: the vtable's contract holds for pointers from `Arc::as_ptr` while `this`
    // lives; `ManuallyDrop` keeps the borrowed waker from releasing a reference it never took.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps until unparked, or until `deadline`. (loom has no clock: there it sleeps until
/// unparked, and a wake that never comes is reported as a deadlock.)
fn park_until(deadline: Option<Instant>) {
    #[cfg(conclab_loom)]
    {
        let _ = deadline;
        loom::thread::park();
    }
    #[cfg(not(conclab_loom))]
    match deadline {
        None => std::thread::park(),
        Some(d) => std::thread::park_timeout(d.saturating_duration_since(Instant::now())),
    }
}

// ---------------------------------------------------------------------------------------
// block_on

/// The waker of [`block_on`]: a flag that says "poll again", and the thread to unpark.
struct ThreadWaker {
    thread: Thread,
    notified: AtomicBool,
}

impl ArcWake for ThreadWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        // Release: what the waker did before waking (sent a value, say) is visible to the
        // poll that follows the Acquire swap in `poll_until`. A swap rather than a store:
        // a waker that finds the flag set already leaves the unpark to the one that set
        // it. (It also keeps every write to the flag a read-modify-write, which loom
        // orders exactly; a plain store racing the swaps it may misorder.)
        if !this.notified.swap(true, Release) {
            this.thread.unpark();
        }
    }
}

/// [`block_on_timeout`] gave up: the future was not ready in time and has been dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct TimedOut {
    pub limit: Duration,
    /// How often the future was polled before it was dropped.
    pub polls: u64,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the future was not ready within {} s (polled {} time(s)); it was dropped. If it waits for \
             something, check that something calls its waker",
            crate::lab::fmt_num(self.limit.as_secs_f64()),
            self.polls
        )
    }
}

impl fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimedOut: {self}")
    }
}

impl std::error::Error for TimedOut {}

impl TimedOut {
    /// Shows the error as a red box (rich output: it cannot be lost the way stderr can).
    pub fn evcxr_display(&self) {
        crate::lab::report::error_box("TimedOut", &self.to_string())
    }
}

impl crate::lab::Rich for TimedOut {
    fn evcxr_display(&self) {
        TimedOut::evcxr_display(self)
    }
}

/// Runs `fut` to completion on the calling thread and returns its output.
///
/// It polls the future; on `Pending` it parks the thread until the future's waker
/// unparks it, then polls again. A wake that arrives *before* the thread parks (during
/// the poll, or just after) is not lost: it sets a flag that is checked before every
/// park, and `unpark` before `park` makes that `park` return at once. Polls happen only
/// after a wake (besides the first), never in a busy loop.
///
/// It waits as long as the future takes; in a notebook prefer [`block_on_timeout`], so a
/// future that is never woken cannot hang the kernel.
///
/// ```
/// use conclab::primitives::executor::block_on;
/// async fn add(a: u32, b: u32) -> u32 { a + b }
/// assert_eq!(block_on(async { add(2, 3).await * 2 }), 10);
/// ```
pub fn block_on<F: IntoFuture>(fut: F) -> F::Output {
    match poll_until(fut.into_future(), None) {
        Ok(v) => v,
        Err(_) => unreachable!("without a deadline block_on only returns the output"),
    }
}

/// [`block_on`] with a bound: the output, or [`TimedOut`] (and the future dropped) when it
/// is not ready within `limit`.
///
/// ```
/// use conclab::primitives::executor::block_on_timeout;
/// use std::time::Duration;
/// let never = std::future::pending::<()>();
/// let e = block_on_timeout(never, Duration::from_millis(20)).unwrap_err();
/// assert_eq!(e.polls, 1); // polled once, never woken, never polled again
/// ```
pub fn block_on_timeout<F: IntoFuture>(fut: F, limit: Duration) -> Result<F::Output, TimedOut> {
    poll_until(fut.into_future(), Some(Instant::now() + limit)).map_err(|polls| TimedOut { limit, polls })
}

fn poll_until<F: Future>(fut: F, deadline: Option<Instant>) -> Result<F::Output, u64> {
    let mut fut = std::pin::pin!(fut);
    let me = Arc::new(ThreadWaker { thread: current_thread(), notified: AtomicBool::new(false) });
    let waker = waker_ref(&me);
    let mut cx = Context::from_waker(&waker);
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Ok(v);
        }
        // Sleep until woken. The flag was cleared before the poll above, so a wake that
        // came during the poll is seen here and costs no sleep; `park` can also return
        // without a wake (spuriously, or for an old unpark), hence the loop.
        while !me.notified.swap(false, Acquire) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(polls);
            }
            park_until(deadline);
        }
    }
}

// ---------------------------------------------------------------------------------------
// MiniExecutor

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One spawned future and its place in the run queue. Its `Arc` is also its waker.
struct Task {
    /// `None` once the future has finished (or panicked). Touched only by the one thread
    /// inside `run` of the executor that owns this task (`run` takes `&mut`, and a task is
    /// only ever queued on its own executor), and by `Drop` (which has the last reference).
    future: UnsafeCell<Option<BoxFuture>>,
    /// Whether the task is in the run queue, or will be polled anyway. A wake that flips
    /// it from false to true queues the task; any other wake finds it queued and does
    /// nothing. The runner sets it back to false just *before* polling, so a wake that
    /// comes during the poll queues the task again instead of being lost.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

// SAFETY: the future is `Send` and accessed by one thread at a time (see `future`);
// everything else is atomic or behind the mutex.
unsafe impl Send for Task {}
unsafe impl Sync for Task {}

impl ArcWake for Task {
    fn wake_by_ref(this: &Arc<Self>) {
        this.shared.wakes.fetch_add(1, Relaxed);
        // AcqRel: the runner clears the flag with an Acquire swap before polling. If this
        // swap finds the flag already set, the runner's swap reads what this one wrote,
        // and everything this thread did before waking is visible to that poll.
        if !this.queued.swap(true, AcqRel) {
            this.shared.push(this.clone(), true);
        }
    }

    fn wake(this: Arc<Self>) {
        this.shared.wakes.fetch_add(1, Relaxed);
        if !this.queued.swap(true, AcqRel) {
            let shared = this.shared.clone();
            shared.push(this, true);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the last reference, nobody else can touch the future.
        let unfinished = self.future.with_mut(|f| unsafe { (*f).is_some() });
        if unfinished {
            // Dropped while pending: nothing held its waker, so nothing could ever wake it.
            let mut s = lock(&self.shared.state);
            if !s.closed {
                s.live -= 1;
                s.lost += 1;
                let runner = s.runner.take();
                drop(s);
                if let Some(t) = runner {
                    t.unpark();
                }
            }
        }
    }
}

/// What the executor and its wakers share.
struct Shared {
    state: Mutex<State>,
    wakes: AtomicU64,
}

struct State {
    /// Tasks to poll, oldest first; each at most once (its `queued` flag is set).
    queue: VecDeque<Arc<Task>>,
    /// The thread inside `run`, while it sleeps waiting for a wake; the first push takes
    /// it and unparks it.
    runner: Option<Thread>,
    /// Spawned, and neither finished nor lost.
    live: usize,
    spawned: u64,
    completed: u64,
    requeues: u64,
    lost: u64,
    panicked: u64,
    /// The executor was dropped: nothing is queued any more.
    closed: bool,
}

impl Shared {
    fn push(&self, task: Arc<Task>, by_wake: bool) {
        let mut s = lock(&self.state);
        if s.closed {
            drop(s);
            return; // `task` drops here, outside the lock
        }
        #[cfg(conclab_loom)]
        assert!(!s.queue.iter().any(|t| Arc::ptr_eq(t, &task)), "a task was queued twice");
        if by_wake {
            s.requeues += 1;
        }
        s.queue.push_back(task);
        let runner = s.runner.take();
        drop(s);
        if let Some(t) = runner {
            t.unpark();
        }
    }

    fn spawn<F>(this: &Arc<Shared>, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let slot = Arc::new(JoinSlot { state: Mutex::new(JoinState::Running(None)) });
        let mut completer = Completer { slot: slot.clone(), done: false };
        let body = async move {
            let v = fut.await;
            completer.complete(v);
        };
        let task = Arc::new(Task {
            future: UnsafeCell::new(Some(Box::pin(body))),
            queued: AtomicBool::new(true),
            shared: this.clone(),
        });
        {
            let mut s = lock(&this.state);
            if !s.closed {
                s.live += 1;
                s.spawned += 1;
            }
        }
        // Counted first, so a running executor never sees a queued task that is not live.
        this.push(task, false);
        JoinHandle { slot }
    }
}

/// Counters of a [`MiniExecutor`], from its creation on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ExecStats {
    pub spawned: u64,
    /// Tasks whose future returned `Ready`.
    pub completed: u64,
    /// Spawned tasks not finished yet (waiting for a wake, or queued).
    pub pending: u64,
    /// Calls of `poll` on a task's future.
    pub polls: u64,
    /// Calls of `wake`/`wake_by_ref` on a task's waker.
    pub wakes: u64,
    /// Wakes that put their task back on the queue (the others found it queued already).
    pub requeues: u64,
    /// Tasks dropped while pending because nothing held their waker any more.
    pub lost: u64,
    /// Tasks whose poll panicked.
    pub panicked: u64,
}

impl fmt::Display for ExecStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} spawned, {} completed, {} pending; {} polls, {} wakes ({} queued a task)",
            self.spawned, self.completed, self.pending, self.polls, self.wakes, self.requeues
        )?;
        if self.lost > 0 {
            write!(f, ", {} lost", self.lost)?;
        }
        if self.panicked > 0 {
            write!(f, ", {} panicked", self.panicked)?;
        }
        Ok(())
    }
}

impl ExecStats {
    /// Shows the counters as one line of text in a notebook; a cell that ends in
    /// `ex.run()` shows them, or the error box of an [`ExecError`].
    pub fn evcxr_display(&self) {
        crate::lab::display::emit(&[("text/plain", &self.to_string())]);
    }
}

impl crate::lab::Rich for ExecStats {
    fn evcxr_display(&self) {
        ExecStats::evcxr_display(self)
    }
}

/// Why [`MiniExecutor::run`] returned before every task had finished.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecError {
    /// Nothing was queued for the whole limit while tasks still waited for a wake.
    Stalled { pending: u64, limit: Duration, stats: ExecStats },
    /// Tasks were still being polled at the limit: some task keeps waking itself.
    TimedOut { pending: u64, limit: Duration, stats: ExecStats },
    /// Every other task finished, but some were dropped while pending: they returned
    /// `Pending` and nobody kept their waker, so nothing could ever wake them.
    Lost { lost: u64, stats: ExecStats },
    /// A task's poll panicked (message). The executor stopped there; the other tasks
    /// stay queued, and `run` again continues with them.
    Panicked { message: String, stats: ExecStats },
}

impl ExecError {
    /// The executor's counters when it stopped.
    pub fn stats(&self) -> &ExecStats {
        match self {
            ExecError::Stalled { stats, .. }
            | ExecError::TimedOut { stats, .. }
            | ExecError::Lost { stats, .. }
            | ExecError::Panicked { stats, .. } => stats,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| crate::lab::fmt_num(d.as_secs_f64());
        match self {
            ExecError::Stalled { pending, limit, stats } => write!(
                f,
                "{pending} task(s) still waited for a wake after {} s and none came: a future returned Pending \
                 without arranging a wake, or waits for something that never happens ({stats})",
                secs(limit)
            ),
            ExecError::TimedOut { pending, limit, stats } => write!(
                f,
                "{pending} task(s) were still running after {} s: a task keeps waking itself and never finishes \
                 ({stats}); use run_for(..) if it needs longer",
                secs(limit)
            ),
            ExecError::Lost { lost, stats } => write!(
                f,
                "{lost} task(s) returned Pending and nothing kept their waker, so nothing could ever wake them: \
                 they were dropped unfinished ({stats})"
            ),
            ExecError::Panicked { message, stats } => {
                write!(f, "a task panicked: {message}; the other tasks wait for the next run ({stats})")
            }
        }
    }
}

impl fmt::Debug for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecError: {self}")
    }
}

impl std::error::Error for ExecError {}

impl ExecError {
    /// Shows the error as a red box (rich output: it cannot be lost the way stderr can).
    pub fn evcxr_display(&self) {
        crate::lab::report::error_box("ExecError", &self.to_string())
    }
}

impl crate::lab::Rich for ExecError {
    fn evcxr_display(&self) {
        ExecError::evcxr_display(self)
    }
}

/// A single-thread executor: spawned tasks wait in a FIFO run queue, and [`run`]
/// polls them one after another on the calling thread until all have finished.
///
/// A task's waker is the task itself (an `Arc`): waking it puts it at the back of the
/// queue unless it is queued already. When the queue is empty but tasks are still
/// pending, `run` parks the thread until a waker — from a task, or from another thread
/// (a timer thread, a channel's sender) — queues one. It never waits longer than its
/// limit ([`DEFAULT_LIMIT`] for `run`): a task that is never woken gives
/// [`ExecError::Stalled`], not a hung notebook.
///
/// ```
/// use conclab::primitives::executor::{MiniExecutor, yield_now};
/// let mut ex = MiniExecutor::new();
/// let a = ex.spawn(async { yield_now().await; 20 });
/// let b = ex.spawn(async move { a.await.unwrap() + 1 }); // a task awaiting another
/// let stats = ex.run().unwrap();
/// assert_eq!(b.try_take(), Some(21));
/// assert_eq!((stats.spawned, stats.completed), (2, 2));
/// ```
///
/// Dropping the executor drops every queued task. A pending task held only by its own
/// waker inside its own future (a channel that the task both holds and waits on) is a
/// reference cycle and is not freed — the price of having no list of all tasks.
///
/// [`run`]: MiniExecutor::run
pub struct MiniExecutor {
    shared: Arc<Shared>,
    /// The batch being polled: the queue is swapped out whole, under one lock.
    batch: VecDeque<Arc<Task>>,
    polls: u64,
}

impl Default for MiniExecutor {
    fn default() -> Self {
        MiniExecutor::new()
    }
}

impl fmt::Debug for MiniExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MiniExecutor({})", self.stats())
    }
}

impl MiniExecutor {
    /// An executor with no tasks.
    pub fn new() -> MiniExecutor {
        let state = State {
            queue: VecDeque::new(),
            runner: None,
            live: 0,
            spawned: 0,
            completed: 0,
            requeues: 0,
            lost: 0,
            panicked: 0,
            closed: false,
        };
        MiniExecutor {
            shared: Arc::new(Shared { state: Mutex::new(state), wakes: AtomicU64::new(0) }),
            batch: VecDeque::new(),
            polls: 0,
        }
    }

    /// Queues `fut` as a new task; it first runs at the next [`MiniExecutor::run`]. The
    /// handle gives its output: `.await` it from another task, or [`JoinHandle::try_take`]
    /// after the run.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Shared::spawn(&self.shared, fut)
    }

    /// A handle that spawns onto this executor from anywhere: from inside a task, or
    /// from another thread.
    pub fn spawner(&self) -> Spawner {
        Spawner { shared: self.shared.clone() }
    }

    /// Runs until every task has finished, for at most [`DEFAULT_LIMIT`].
    pub fn run(&mut self) -> Result<ExecStats, ExecError> {
        self.run_for(DEFAULT_LIMIT)
    }

    /// Runs until every task has finished, or `limit` has passed (an error that says
    /// whether the tasks were waiting or still running; unfinished tasks stay).
    pub fn run_for(&mut self, limit: Duration) -> Result<ExecStats, ExecError> {
        self.run_with(limit, true)
    }

    /// Polls queued tasks until none is queued, without sleeping: tasks may still be
    /// pending, waiting for a wake from outside. Also bounded by [`DEFAULT_LIMIT`].
    pub fn run_until_stalled(&mut self) -> Result<ExecStats, ExecError> {
        self.run_with(DEFAULT_LIMIT, false)
    }

    fn run_with(&mut self, limit: Duration, sleep: bool) -> Result<ExecStats, ExecError> {
        let lost_before = lock(&self.shared.state).lost;
        match self.drive(Instant::now() + limit, sleep) {
            Ok(()) => {}
            Err(Stop::Limit { waiting: true }) => {
                let stats = self.stats();
                return Err(ExecError::Stalled { pending: stats.pending, limit, stats });
            }
            Err(Stop::Limit { waiting: false }) => {
                let stats = self.stats();
                return Err(ExecError::TimedOut { pending: stats.pending, limit, stats });
            }
            Err(Stop::Panicked(message)) => return Err(ExecError::Panicked { message, stats: self.stats() }),
        }
        let stats = self.stats();
        if stats.lost > lost_before && stats.pending == 0 {
            return Err(ExecError::Lost { lost: stats.lost - lost_before, stats });
        }
        Ok(stats)
    }

    /// Spawned tasks that have not finished yet.
    pub fn pending(&self) -> u64 {
        lock(&self.shared.state).live as u64
    }

    /// The counters so far.
    pub fn stats(&self) -> ExecStats {
        let s = lock(&self.shared.state);
        ExecStats {
            spawned: s.spawned,
            completed: s.completed,
            pending: s.live as u64,
            polls: self.polls,
            wakes: self.shared.wakes.load(Relaxed),
            requeues: s.requeues,
            lost: s.lost,
            panicked: s.panicked,
        }
    }

    /// The run loop: polls queued tasks until all have finished (or, without `sleep`,
    /// until none is queued), or until `deadline`.
    fn drive(&mut self, deadline: Instant, sleep: bool) -> Result<(), Stop> {
        let mut batch = std::mem::take(&mut self.batch);
        let out = self.drive_with(&mut batch, deadline, sleep);
        if !batch.is_empty() {
            // Stopped early: the rest of the batch goes back to the front, in order.
            let mut s = lock(&self.shared.state);
            while let Some(t) = batch.pop_back() {
                s.queue.push_front(t);
            }
        }
        self.batch = batch;
        out
    }

    fn drive_with(&mut self, batch: &mut VecDeque<Arc<Task>>, deadline: Instant, sleep: bool) -> Result<(), Stop> {
        let mut finished = 0; // counted into `live` at the next lock, not one lock per task
        loop {
            {
                let mut s = lock(&self.shared.state);
                s.live -= finished;
                s.completed += finished as u64;
                finished = 0;
                s.runner = None;
                if s.queue.is_empty() {
                    if s.live == 0 || !sleep {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(Stop::Limit { waiting: true });
                    }
                    s.runner = Some(current_thread());
                    drop(s);
                    // A push between the unlock above and this park finds `runner` set
                    // and unparks us; the unpark token makes this park return at once.
                    park_until(Some(deadline));
                    continue;
                }
                std::mem::swap(&mut s.queue, batch);
            }
            while let Some(task) = batch.pop_front() {
                match self.poll_task(&task) {
                    Ok(true) => finished += 1,
                    Ok(false) => {}
                    Err(message) => {
                        let mut s = lock(&self.shared.state);
                        s.live -= finished + 1;
                        s.completed += finished as u64;
                        s.panicked += 1;
                        return Err(Stop::Panicked(message));
                    }
                }
                // `task` drops here, outside any lock (it may be the last reference).
                if self.polls.is_multiple_of(1024) && Instant::now() >= deadline {
                    let mut s = lock(&self.shared.state);
                    s.live -= finished;
                    s.completed += finished as u64;
                    return Err(Stop::Limit { waiting: false });
                }
            }
        }
    }

    /// Polls one task: `Ok(true)` when it has just finished.
    fn poll_task(&mut self, task: &Arc<Task>) -> Result<bool, String> {
        // Acquire pairs with the AcqRel swap in `wake`: see `Task::queued`.
        let was_queued = task.queued.swap(false, Acquire);
        debug_assert!(was_queued, "a task in the queue must be marked queued");
        // SAFETY: only this thread, inside `run` with `&mut self`, touches the future
        // (see `Task::future`); the closure does not re-enter the executor's state.
        let Some(mut fut) = task.future.with_mut(|f| unsafe { (*f).take() }) else {
            return Ok(false); // finished earlier; a late wake queued it once more
        };
        self.polls += 1;
        let waker = waker_ref(task);
        let mut cx = Context::from_waker(&waker);
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => {
                // SAFETY: as above.
                task.future.with_mut(|f| unsafe { *f = Some(fut) });
                Ok(false)
            }
            Ok(Poll::Ready(())) => {
                // Finished: later wakes find it "queued" and do nothing.
                task.queued.store(true, Release);
                drop(fut);
                Ok(true)
            }
            Err(payload) => {
                task.queued.store(true, Release);
                drop(fut);
                Err(panic_message(&*payload))
            }
        }
    }
}

enum Stop {
    Limit { waiting: bool },
    Panicked(String),
}

impl Drop for MiniExecutor {
    fn drop(&mut self) {
        let queued = {
            let mut s = lock(&self.shared.state);
            s.closed = true;
            s.runner = None;
            std::mem::take(&mut s.queue)
        };
        // Dropped outside the lock: dropping a future may wake or drop other tasks.
        drop(queued);
        self.batch.clear();
    }
}

/// Spawns onto a [`MiniExecutor`] from a task or another thread; see [`MiniExecutor::spawner`].
#[derive(Clone)]
pub struct Spawner {
    shared: Arc<Shared>,
}

impl Spawner {
    /// Like [`MiniExecutor::spawn`]. After the executor is dropped the future is dropped
    /// unpolled, and its handle reports [`JoinError::Cancelled`].
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Shared::spawn(&self.shared, fut)
    }
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Spawner")
    }
}

// ---------------------------------------------------------------------------------------
// Join handles

enum JoinState<T> {
    /// Not finished; the waker of whoever awaits the handle.
    Running(Option<Waker>),
    Done(T),
    Taken,
    Cancelled,
}

struct JoinSlot<T> {
    state: Mutex<JoinState<T>>,
}

/// Lives inside the task's future: stores the output, or marks the task cancelled when
/// the future is dropped before it finished (a panic, a lost task, the executor dropped).
struct Completer<T> {
    slot: Arc<JoinSlot<T>>,
    done: bool,
}

impl<T> Completer<T> {
    fn complete(&mut self, v: T) {
        self.done = true;
        self.finish(JoinState::Done(v));
    }

    fn finish(&self, end: JoinState<T>) {
        let old = std::mem::replace(&mut *lock(&self.slot.state), end);
        if let JoinState::Running(Some(w)) = old {
            w.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(JoinState::Cancelled);
        }
    }
}

/// The output of a task on a [`MiniExecutor`]: `.await` it (in another task, or with
/// [`block_on`]) for `Result<T, JoinError>`, as with `tokio::spawn`; or, after `run`,
/// take it with [`JoinHandle::try_take`]. Dropping the handle does not stop the task.
pub struct JoinHandle<T> {
    slot: Arc<JoinSlot<T>>,
}

impl<T> JoinHandle<T> {
    /// The output, if the task has finished and the output was not taken yet.
    pub fn try_take(&self) -> Option<T> {
        let mut s = lock(&self.slot.state);
        match std::mem::replace(&mut *s, JoinState::Taken) {
            JoinState::Done(v) => Some(v),
            other => {
                *s = other;
                None
            }
        }
    }

    /// Whether the task has ended (finished, or cancelled).
    pub fn is_finished(&self) -> bool {
        !matches!(*lock(&self.slot.state), JoinState::Running(_))
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.slot.state);
        match &mut *s {
            JoinState::Running(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            JoinState::Done(_) => match std::mem::replace(&mut *s, JoinState::Taken) {
                JoinState::Done(v) => Poll::Ready(Ok(v)),
                _ => unreachable!(),
            },
            JoinState::Taken => Poll::Ready(Err(JoinError::Taken)),
            JoinState::Cancelled => Poll::Ready(Err(JoinError::Cancelled)),
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match *lock(&self.slot.state) {
            JoinState::Running(_) => "running",
            JoinState::Done(_) => "done",
            JoinState::Taken => "taken",
            JoinState::Cancelled => "cancelled",
        };
        write!(f, "JoinHandle({state})")
    }
}

/// Why a [`JoinHandle`] has no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The task was dropped before it finished: it panicked, its executor was dropped,
    /// or it was pending and nothing held its waker.
    Cancelled,
    /// The output was taken already (by [`JoinHandle::try_take`] or an earlier `.await`).
    Taken,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinError::Cancelled => {
                "the task was dropped before it finished (it panicked, its executor was dropped, or nothing \
                 held its waker)"
            }
            JoinError::Taken => "the task's output was taken already",
        })
    }
}

impl std::error::Error for JoinError {}

// ---------------------------------------------------------------------------------------
// yield_now

/// Returns `Pending` once, after waking its own task, then `Ready`: the task goes to the
/// back of the run queue and the others get a turn. One `yield_now().await` costs one
/// wake and one extra poll, on any executor.
///
/// ```
/// use conclab::primitives::executor::{block_on, yield_now};
/// block_on(async { yield_now().await }); // block_on sees the wake and polls again
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless you .await them"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(all(test, not(conclab_loom)))]
mod tests {
    use super::*;
    use futures::channel::{mpsc, oneshot};
    use futures::{SinkExt, StreamExt};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A timer for the tests: on its first poll it starts a thread that sleeps and then
    /// calls the waker; the thread is joined when the timer finishes or is dropped.
    struct ThreadTimer {
        after: Duration,
        fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    fn timer(ms: u64) -> ThreadTimer {
        ThreadTimer { after: Duration::from_millis(ms), fired: Default::default(), thread: None }
    }

    impl Future for ThreadTimer {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.fired.load(Ordering::Acquire) {
                if let Some(t) = self.thread.take() {
                    t.join().unwrap();
                }
                return Poll::Ready(());
            }
            if self.thread.is_none() {
                let (after, fired, waker) = (self.after, self.fired.clone(), cx.waker().clone());
                self.thread = Some(std::thread::spawn(move || {
                    std::thread::sleep(after);
                    fired.store(true, Ordering::Release);
                    waker.wake();
                }));
            }
            Poll::Pending
        }
    }

    impl Drop for ThreadTimer {
        fn drop(&mut self) {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    async fn double(x: u64) -> u64 {
        yield_now().await;
        x * 2
    }

    #[test]
    fn block_on_runs_async_fns_and_wakes_from_another_thread() {
        assert_eq!(block_on(double(21)), 42);
        let t = Instant::now();
        block_on(timer(20));
        assert!(t.elapsed() >= Duration::from_millis(20));
        // A oneshot whose value is sent by another thread while we are parked.
        let (tx, rx) = oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(7u32).unwrap();
        });
        assert_eq!(block_on(rx), Ok(7));
        sender.join().unwrap();
    }

    #[test]
    fn block_on_polls_only_after_wakes() {
        // A future woken during its own poll (the wake-before-park case) three times.
        struct Counted {
            polls: usize,
        }
        impl Future for Counted {
            type Output = usize;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
                self.polls += 1;
                if self.polls == 4 {
                    return Poll::Ready(self.polls);
                }
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
        assert_eq!(block_on(Counted { polls: 0 }), 4);
        // Never woken: polled once, then nothing until the bound.
        let e = block_on_timeout(std::future::pending::<()>(), Duration::from_millis(30)).unwrap_err();
        assert_eq!(e.polls, 1);
        assert!(e.to_string().contains("not ready within 0.03 s"), "{e}");
        assert_eq!(block_on_timeout(async { 5 }, Duration::from_millis(30)), Ok(5));
    }

    #[test]
    fn tasks_interleave_at_each_yield() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut ex = MiniExecutor::new();
        for name in ["a", "b", "c"] {
            let log = log.clone();
            ex.spawn(async move {
                for i in 0..2 {
                    log.lock().unwrap().push(format!("{name}{i}"));
                    yield_now().await;
                }
            });
        }
        let s = ex.run().unwrap();
        assert_eq!(*log.lock().unwrap(), ["a0", "b0", "c0", "a1", "b1", "c1"]);
        // Each task: 1 first poll + 1 per yield; each yield wakes and queues it once.
        assert_eq!((s.spawned, s.completed, s.pending, s.polls, s.wakes, s.requeues), (3, 3, 0, 9, 6, 6));
        assert!(s.to_string().contains("9 polls"), "{s}");
    }

    #[test]
    fn outputs_come_back_through_handles_and_tasks_spawn_tasks() {
        let mut ex = MiniExecutor::new();
        let sp = ex.spawner();
        let a = ex.spawn(double(5));
        let b = ex.spawn(async move {
            let inner = sp.spawn(double(100));
            a.await.unwrap() + inner.await.unwrap()
        });
        let s = ex.run().unwrap();
        assert_eq!(b.try_take(), Some(210));
        assert_eq!(b.try_take(), None);
        assert!(b.is_finished());
        assert_eq!(s.spawned, 3);
        // A handle awaited after the run, from another thread's block_on.
        let c = ex.spawn(async { "later" });
        ex.run().unwrap();
        assert_eq!(std::thread::spawn(move || block_on(c)).join().unwrap(), Ok("later"));
    }

    #[test]
    fn channels_between_tasks_and_timers_on_other_threads() {
        let mut ex = MiniExecutor::new();
        let (mut tx, rx) = mpsc::channel::<u64>(2);
        let (done_tx, done_rx) = oneshot::channel();
        ex.spawn(async move {
            for i in 1..=10 {
                tx.send(i).await.unwrap(); // bounded: waits for the consumer
            }
        });
        let sum = ex.spawn(async move { rx.fold(0, |acc, x| async move { acc + x }).await });
        let slow = ex.spawn(async move {
            timer(15).await;
            done_tx.send("timer fired").unwrap();
        });
        let waiter = ex.spawn(async move { done_rx.await.unwrap() });
        let t = Instant::now();
        let s = ex.run().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(15));
        assert_eq!(sum.try_take(), Some(55));
        assert_eq!(waiter.try_take(), Some("timer fired"));
        assert!(slow.is_finished());
        assert_eq!(s.pending, 0);
        // The timer's wake came from another thread; the run slept meanwhile instead of
        // spinning: far fewer polls than microseconds waited.
        assert!(s.polls < 200, "{s}");
    }

    #[test]
    fn a_task_never_woken_stalls_the_run_with_an_error_not_a_hang() {
        let mut ex = MiniExecutor::new();
        let (_keep_tx, rx) = oneshot::channel::<()>();
        let h = ex.spawn(rx);
        let t = Instant::now();
        let e = ex.run_for(Duration::from_millis(40)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert!(matches!(e, ExecError::Stalled { pending: 1, .. }), "{e}");
        assert!(e.to_string().contains("waited for a wake"), "{e}");
        assert_eq!(ex.pending(), 1);
        drop(ex); // the queued-nowhere task is dropped with the sender's channel later
        drop(_keep_tx);
        assert!(block_on_timeout(h, Duration::from_secs(5)).unwrap().is_err());
    }

    #[test]
    fn a_task_that_drops_its_waker_is_lost_and_reported() {
        struct Forgetful;
        impl Future for Forgetful {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                Poll::Pending // and nobody will ever wake it
            }
        }
        let mut ex = MiniExecutor::new();
        let h = ex.spawn(Forgetful);
        let ok = ex.spawn(async { 1 });
        let e = ex.run().unwrap_err();
        assert!(matches!(e, ExecError::Lost { lost: 1, .. }), "{e}");
        assert_eq!(ok.try_take(), Some(1));
        assert_eq!(block_on(h), Err(JoinError::Cancelled));
        assert_eq!(ex.pending(), 0);
    }

    #[test]
    fn a_task_that_never_stops_yielding_times_out() {
        let mut ex = MiniExecutor::new();
        ex.spawn(async {
            loop {
                yield_now().await
            }
        });
        let e = ex.run_for(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, ExecError::TimedOut { pending: 1, .. }), "{e}");
        assert!(e.stats().polls > 100, "{e}");
    }

    #[test]
    fn a_panicking_task_is_reported_and_the_others_continue() {
        let mut ex = MiniExecutor::new();
        let bad = ex.spawn(async {
            yield_now().await;
            if true {
                panic!("task exploded");
            }
        });
        let good = ex.spawn(async {
            for _ in 0..3 {
                yield_now().await;
            }
            "fine"
        });
        let e = crate::lab::one_line_panics(|| ex.run()).unwrap_err();
        assert!(matches!(&e, ExecError::Panicked { message, .. } if message == "task exploded"), "{e}");
        assert_eq!(block_on(bad), Err(JoinError::Cancelled));
        ex.run().unwrap();
        assert_eq!(good.try_take(), Some("fine"));
    }

    #[test]
    fn wakes_from_many_threads_queue_a_task_once() {
        // One task parks on a counter; 4 threads wake it 1000 times each.
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let waker_slot = std::sync::Arc::new(std::sync::Mutex::new(None::<Waker>));
        let mut ex = MiniExecutor::new();
        let (h2, slot2) = (hits.clone(), waker_slot.clone());
        let h = ex.spawn(std::future::poll_fn(move |cx| {
            *slot2.lock().unwrap() = Some(cx.waker().clone());
            if h2.load(Ordering::Acquire) == 4000 { Poll::Ready(()) } else { Poll::Pending }
        }));
        ex.run_until_stalled().unwrap();
        let w = waker_slot.lock().unwrap().clone().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (w, hits) = (w.clone(), hits.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        hits.fetch_add(1, Ordering::Release);
                        w.wake_by_ref();
                    }
                })
            })
            .collect();
        let s = ex.run().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        assert!(h.is_finished());
        // 4000 wakes, but each poll was preceded by at most one queueing.
        assert_eq!(s.wakes, 4000);
        assert!(s.requeues <= s.polls && s.polls <= 4001, "{s}");
        drop(w);
        drop(waker_slot.lock().unwrap().take());
    }

    #[test]
    fn dropping_the_executor_drops_its_tasks_and_cancels_their_handles() {
        let alive = std::sync::Arc::new(());
        let ex = MiniExecutor::new();
        let sp = ex.spawner();
        let a = alive.clone();
        let h = ex.spawn(async move {
            let _a = a;
            yield_now().await;
        });
        assert_eq!(std::sync::Arc::strong_count(&alive), 2);
        drop(ex);
        assert_eq!(std::sync::Arc::strong_count(&alive), 1, "the queued future was not dropped");
        assert_eq!(block_on(h), Err(JoinError::Cancelled));
        // Spawning through a spawner that outlived its executor cancels at once.
        assert_eq!(block_on(sp.spawn(async { 1 })), Err(JoinError::Cancelled));
    }

    #[test]
    fn errors_show_as_one_line() {
        let e = ExecError::Lost { lost: 2, stats: ExecStats::default() };
        assert!(format!("{e:?}").starts_with("ExecError: 2 task(s)"));
        assert!(JoinError::Cancelled.to_string().contains("dropped before it finished"));
        // A cell that ends in `ex.run()` shows the counters or the red error box.
        fn rich<T: crate::lab::Rich>() {}
        rich::<Result<ExecStats, ExecError>>();
    }
}

/// Model checks of the wake-before-poll race: a wake that arrives while the task is
/// being polled, or while the runner is about to sleep, is never lost, and never puts
/// the task on the queue twice (`Shared::push` asserts it under loom).
#[cfg(all(test, conclab_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Pending on its first poll, after handing its waker to another thread; on any later
    /// poll it reads what that thread wrote before waking (a plain, unsynchronised cell:
    /// only the wake → poll ordering of the executor makes that read safe).
    struct Handoff {
        slot: Arc<Mutex<Option<Waker>>>,
        data: Arc<UnsafeCell<u32>>,
        polled: bool,
    }

    impl Future for Handoff {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if !self.polled {
                self.polled = true;
                *lock(&self.slot) = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // SAFETY: the writer finished before its wake, and this poll comes after it.
            Poll::Ready(self.data.with(|p| unsafe { *p }))
        }
    }

    // SAFETY: the cell is written by one thread before it wakes the task and read only
    // in a poll after that wake; loom checks exactly this ordering.
    struct SendCell(Arc<UnsafeCell<u32>>);
    unsafe impl Send for SendCell {}
    unsafe impl Send for Handoff {}

    #[test]
    fn a_wake_from_another_thread_is_never_lost_and_publishes_its_writes() {
        crate::primitives::sync::loom_model().check(|| {
            let mut ex = MiniExecutor::new();
            let slot = Arc::new(Mutex::new(None::<Waker>));
            let data = Arc::new(UnsafeCell::new(0u32));
            let h = ex.spawn(Handoff { slot: slot.clone(), data: data.clone(), polled: false });
            let cell = SendCell(data);
            let waker_thread = loom::thread::spawn(move || {
                let cell = cell;
                let w = loop {
                    if let Some(w) = lock(&slot).take() {
                        break w;
                    }
                    loom::thread::yield_now();
                };
                // SAFETY: nobody reads until the wake below.
                cell.0.with_mut(|p| unsafe { *p = 42 });
                w.wake();
            });
            let stats = ex.run().unwrap();
            waker_thread.join().unwrap();
            assert_eq!(h.try_take(), Some(42));
            assert_eq!((stats.polls, stats.wakes, stats.requeues), (2, 1, 1));
        });
    }

    /// Two threads wake the same pending task, each after counting (Relaxed) what it did.
    /// The task finishes only when its poll sees both counts: a wake lost to the race
    /// with a poll in progress would leave it asleep forever, which loom reports as a
    /// deadlock. `Shared::push` asserts that it is never queued twice.
    #[test]
    fn two_wakes_racing_a_poll_queue_the_task_once_and_none_is_lost() {
        crate::primitives::sync::loom_model().check(|| {
            let mut ex = MiniExecutor::new();
            let slot = Arc::new(Mutex::new(None::<Waker>));
            let count = Arc::new(AtomicUsize::new(0));
            let (s2, c2) = (slot.clone(), count.clone());
            let h = ex.spawn(std::future::poll_fn(move |cx| {
                *lock(&s2) = Some(cx.waker().clone());
                if c2.load(Relaxed) == 2 { Poll::Ready(()) } else { Poll::Pending }
            }));
            ex.run_until_stalled().unwrap();
            let w = lock(&slot).clone().unwrap();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (w, count) = (w.clone(), count.clone());
                    loom::thread::spawn(move || {
                        count.fetch_add(1, Relaxed);
                        w.wake();
                    })
                })
                .collect();
            drop(w);
            let stats = ex.run().unwrap();
            for t in threads {
                t.join().unwrap();
            }
            assert!(h.is_finished());
            assert!(stats.polls <= 3, "{stats}");
            drop(lock(&slot).take());
        });
    }

    #[test]
    fn block_on_sees_a_wake_that_comes_before_it_parks() {
        crate::primitives::sync::loom_model().check(|| {
            let slot = Arc::new(Mutex::new(None::<Waker>));
            let data = Arc::new(UnsafeCell::new(0u32));
            let fut = Handoff { slot: slot.clone(), data: data.clone(), polled: false };
            let cell = SendCell(data);
            let t = loom::thread::spawn(move || {
                let cell = cell;
                let w = loop {
                    if let Some(w) = lock(&slot).take() {
                        break w;
                    }
                    loom::thread::yield_now();
                };
                // SAFETY: nobody reads until the wake below.
                cell.0.with_mut(|p| unsafe { *p = 7 });
                w.wake();
            });
            assert_eq!(block_on(fut), 7);
            t.join().unwrap();
        });
    }
}
