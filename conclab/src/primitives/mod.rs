//! Hand-built concurrency primitives that the notebooks take apart, each next to the
//! production library it imitates. Lock-free ones are model-checked with loom:
//! `RUSTFLAGS="--cfg conclab_loom" cargo test -p conclab --release --lib primitives`.
//!
//! - [`MiniExecutor`] and [`block_on`]: a single-thread task queue with `Arc` wakers, and a
//!   thread-parking `block_on` (vs tokio's current-thread runtime);
//! - [`SpinLock`]: a test-and-test-and-set lock (vs `std::sync::Mutex`, `parking_lot::Mutex`);
//! - [`OnceSlot`]: a value published once through a Release/Acquire flag (vs `std::sync::OnceLock`);
//! - [`ThreadPool`]: a fixed set of worker threads fed by a channel (vs `rayon::ThreadPool`);
//! - [`timer_wheel::TimerWheel`]: a hierarchical timing wheel, levels × 64 slots (vs tokio's timer driver);
//! - [`WaitForGraph`]: who holds which lock and who waits for it, and the cycle that is a deadlock;
//! - [`future`]: futures by hand ([`Countdown`], [`TimerFuture`]), polled by hand with a
//!   [`CountingWaker`], traced with [`Traced`], and an `async fn` desugared into [`TwoWaits`].

#[cfg(feature = "async_basics")]
pub mod executor;
pub mod future;
pub mod once_slot;
#[cfg(feature = "advanced")]
pub mod resilience;
pub mod spin_lock;
mod sync;
#[cfg(feature = "threads")]
pub mod thread_pool;
#[cfg(feature = "tokio_rt")]
pub mod timer_wheel;
pub mod wait_for;

#[cfg(feature = "async_basics")]
pub use executor::{
    ExecError, ExecStats, JoinError, JoinHandle, MiniExecutor, Spawner, TimedOut, block_on, block_on_timeout, yield_now,
};
pub use future::{
    Countdown, CountingWaker, PollLog, PollStep, TimerFuture, TraceEvent, TraceKind, TraceLog, Traced, TwoWaits,
    poll_by_hand, poll_by_hand_within, two_waits,
};
pub use once_slot::OnceSlot;
pub use spin_lock::{SpinGuard, SpinLock};
#[cfg(feature = "threads")]
pub use thread_pool::ThreadPool;
pub use wait_for::{WaitEdge, WaitForGraph};
