//! Everything a notebook cell needs: `use conclab::prelude::*;`.

#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::executors::{Executors, ExecutorsReport, executors};
#[cfg(feature = "features")]
pub use crate::experiments::features::{
    ActorReport, ActorVsMutex, Diagnostic, Histogram, HistogramReport, HistogramWay, InteriorCosts, InteriorReport,
    RacePlacement, RaceReport, RacyCounter, SendSyncTable, actor_vs_mutex, check_counter, check_histogram,
    full_diagnostic, histogram, histogram_with_mutex, interior_costs, racy_counter, refcell_conflict,
};
#[cfg(feature = "index")]
pub use crate::experiments::index::{SpawnCost, SpawnCostReport, spawn_cost};
#[cfg(feature = "intro")]
pub use crate::experiments::intro::{
    Mechanism, Overlap, OverlapReport, PingPong, PingPongReport, Processes, ProcessesReport, Scaling, ScalingReport,
    Stacks, StacksReport, Timeline, TimelineReport, Turn, check_handoff, check_spread, overlap, ping_pong, processes,
    scaling, stacks, timeline,
};
#[cfg(feature = "threads")]
pub use crate::experiments::threads::{
    Account, AccountGuard, CaptureCost, CaptureCostReport, CaptureMode, CounterLayout, Deadlock, DeadlockReport,
    FalseSharing, FalseSharingReport, ForkOrder, Lifecycle, LifecycleReport, Litmus, LitmusOrdering, LitmusReport,
    LockContention, LockContentionReport, LockKind, LockStrategies, LockStrategiesReport, LockStrategy, MemoryOrdering,
    Orderings, OrderingsReport, Oversubscription, OversubscriptionReport, Philosophers, PhilosophersReport, PoolMethod,
    PoolVsSpawn, PoolVsSpawnReport, QueueKind, Queues, QueuesReport, TicketLock, Workload, capture_cost,
    check_lock_order, check_ticket_lock, deadlock, false_sharing, lifecycle, litmus, lock_contention, lock_strategies,
    orderings, oversubscription, philosophers, pool_vs_spawn, queues,
};
/// The async runtime helper: `rt::run(Rt::multi(2), || async { … })`, and tokio itself, so
/// cells can write `tokio::spawn`, `tokio::join!` and `tokio::time::sleep`.
#[cfg(feature = "rt")]
pub use crate::lab::rt::{self, Rt, RtError, SpanRecorder, StartGate, ms};
pub use crate::lab::{
    Figure, LabError, Legend, MachineCard, ParamError, Point, Report, ReportResult, Rich, RunError, Sampling, Scale,
    Series, Stats, Style, Table, Verdict, cores, one_line_panics,
};
#[cfg(feature = "async_basics")]
pub use crate::primitives::executor::{
    ExecError, ExecStats, JoinError, JoinHandle, MiniExecutor, Spawner, TimedOut, block_on, block_on_timeout, yield_now,
};
#[cfg(feature = "features")]
pub use crate::send_sync_table;
/// The `futures` crate, so cells can write `futures::channel::oneshot`, `futures::join!`.
#[cfg(feature = "async_basics")]
pub use futures;
#[cfg(feature = "rt")]
pub use tokio;
