//! Experiments of notebook 03, "Threads, atomics and deadlocks".

pub mod capture;
pub mod contention;
pub mod deadlock;
pub mod exercises;
pub mod false_sharing;
pub mod lifecycle;
pub mod litmus;
pub mod orderings;
pub mod oversubscription;
pub mod philosophers;
pub mod pool;
pub mod queues;
pub mod strategies;

pub(crate) use crate::lab::noise::mark_busy;

pub use capture::{CaptureCost, CaptureCostReport, CaptureMode, capture_cost};
pub use contention::{LockContention, LockContentionReport, LockKind, lock_contention};
pub use deadlock::{Deadlock, DeadlockReport, deadlock};
pub use exercises::{Account, AccountGuard, TicketLock, check_lock_order, check_ticket_lock};
pub use false_sharing::{CounterLayout, FalseSharing, FalseSharingReport, false_sharing};
pub use lifecycle::{Lifecycle, LifecycleReport, lifecycle};
pub use litmus::{Litmus, LitmusOrdering, LitmusReport, litmus};
pub use orderings::{MemoryOrdering, Orderings, OrderingsReport, orderings};
pub use oversubscription::{Oversubscription, OversubscriptionReport, Workload, oversubscription};
pub use philosophers::{ForkOrder, Philosophers, PhilosophersReport, philosophers};
pub use pool::{PoolMethod, PoolVsSpawn, PoolVsSpawnReport, pool_vs_spawn};
pub use queues::{QueueKind, Queues, QueuesReport, queues};
pub use strategies::{LockStrategies, LockStrategiesReport, LockStrategy, lock_strategies};

use crate::lab::Experiment;

crate::impl_params!(
    CaptureCost,
    LockContention,
    Deadlock,
    FalseSharing,
    Lifecycle,
    Litmus,
    Orderings,
    Oversubscription,
    Philosophers,
    PoolVsSpawn,
    Queues,
    LockStrategies
);

/// This notebook's experiments, for the CLI's registry.
pub fn experiments() -> Vec<Experiment> {
    vec![
        Experiment::new(
            "lifecycle",
            "03-threads",
            "thread count over time: a detached thread outliving its handle, then scoped threads joined by their scope",
            lifecycle,
        ),
        Experiment::new(
            "capture-cost",
            "03-threads",
            "spawn+join cost when the thread captures a Vec: borrowed (scoped), moved, Arc-cloned, deep-cloned",
            capture_cost,
        ),
        Experiment::new(
            "pool-vs-spawn",
            "03-threads",
            "wall time per work item: a new thread per item vs a rayon pool vs the hand-built pool",
            pool_vs_spawn,
        ),
        Experiment::new(
            "oversubscription",
            "03-threads",
            "a fixed CPU-bound job over 1..64 threads, independent vs lock-step (barriers), with context switches",
            oversubscription,
        ),
        Experiment::new(
            "orderings",
            "03-threads",
            "atomic fetch_add on a shared counter and stores to own slots, per memory ordering, over thread counts",
            orderings,
        ),
        Experiment::new(
            "litmus",
            "03-threads",
            "store-buffering and message-passing litmus tests: outcome counts per memory ordering",
            litmus,
        ),
        Experiment::new(
            "contention",
            "03-threads",
            "lock+increment throughput: hand-built spin lock vs std Mutex vs parking_lot, over thread counts",
            lock_contention,
        ),
        Experiment::new(
            "queues",
            "03-threads",
            "producers and consumers through crossbeam ArrayQueue / SegQueue vs Mutex<VecDeque>",
            queues,
        ),
        Experiment::new(
            "false-sharing",
            "03-threads",
            "per-thread counters adjacent vs CachePadded vs one shared counter, throughput over thread counts",
            false_sharing,
        ),
        Experiment::new(
            "deadlock",
            "03-threads",
            "two threads, two locks, opposite orders: the wait-for cycle detected, named and broken",
            deadlock,
        ),
        Experiment::new(
            "lock-strategies",
            "03-threads",
            "transfers between locked accounts: no order (timeouts) vs lock order vs try_lock back-off vs one lock",
            lock_strategies,
        ),
        Experiment::new(
            "philosophers",
            "03-threads",
            "dining philosophers, left-fork-first (timed waits) vs lower-fork-first: meals per philosopher over time",
            philosophers,
        ),
    ]
}
