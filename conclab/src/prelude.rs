//! Everything a notebook cell needs: `use conclab::prelude::*;`.

#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::backpressure::{
    Backpressure, BackpressureReport, BackpressureRow, QueuePolicy, QueueSample, backpressure,
};
#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::coordination::{
    CoordFacts, CoordRow, Coordination, CoordinationReport, CounterMsg, coordination, semaphore_max_in_flight,
    spawn_counter, which_primitive,
};
#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::exercises::{BOUND_JOBS, BOUND_LIMIT, Job, check_bounded_concurrency};
#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::patterns::{
    CircuitBreakerRun, GracefulShutdown, LoadShedding, RetryStorm, check_storm_flattened, circuit_breaker,
    graceful_shutdown, load_shedding, retry_storm, simulate_server, simulate_storm,
};
#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::starvation::{CpuStrategy, Heartbeat, HeartbeatReport, HeartbeatRow, heartbeat};
#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::streams::{
    Buffering, BufferingRow, CountStream, StreamBuffering, StreamBufferingReport, TickStream, combinator_tour,
    stream_buffering,
};
#[cfg(feature = "advanced")]
pub use crate::experiments::advanced::tower_side::{
    Attempts, BackoffPolicy, SeededRng, TowerRetryReport, TowerStack, simulate_tower, tower_retry, tower_vs_hand,
    what_tower_adds,
};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::control_flow::{AwaitFlow, AwaitFlowReport, Flow, await_flow};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::executors::{Executors, ExecutorsReport, executors};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::exercises::{FETCH_MS, Fetcher, check_concurrent_fetches, check_third_poll};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::laziness::{Laziness, LazinessReport, Promise, laziness};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::poll_trace::{
    PollTrace, PollTraceReport, TimerKind, poll_trace, trace_figure, trace_log_table,
};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::sizes::{FutureSizes, FutureSizesReport, future_sizes};
#[cfg(feature = "async_basics")]
pub use crate::experiments::async_basics::waiting::{WhyAsync, WhyAsyncReport, why_async};
#[cfg(feature = "case_study")]
pub use crate::experiments::case_study::{
    exercises::{
        POOL_REQUESTS, POOL_SIZE, PoolClient, SURVIVE_CONNECTIONS, THREAD_BUDGET, check_bounded_pool,
        check_survives_2000,
    },
    overload::{Overload, OverloadReport, OverloadRow, Protection, overload},
    pool::{ClientMode, ConnectionPool, ConnectionPoolReport, PoolRow, connection_pool},
};
#[cfg(feature = "case_study")]
pub use crate::experiments::case_study::{
    load::{ClosedLoop, LoadResult, OpenLoop, closed_loop, connection_room, open_fds, open_loop},
    scaling::{ScalingRow, ServerScaling, ServerScalingReport, max_connections, server_scaling},
    server::{MAX_LINE, ServerHandle, ServerKind, ServerOpts, ShutdownReport, start_server},
};
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
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::cancel::{
    CancelSafety, CancelSafetyReport, Cancellation, CancellationReport, FrameReader, cancel_safe_methods,
    cancel_safety, cancellation, frame, frame_seq, read_frame, read_frame_owned,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::coop::{
    CoopBudget, CoopBudgetReport, CoopRow, CoopVariant, TOKIO_BUDGET, coop_budget,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::exercises::{
    FrameTicker, ShutdownJobs, check_graceful_shutdown, check_no_lost_frames,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::flavors::{FlavorRow, Flavors, FlavorsReport, runtime_flavors};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::lifecycle::{
    TaskEvent, TaskEventKind, TaskLifecycle, TaskLifecycleReport, check_gather_with_deadline, task_lifecycle,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::paused::{
    Backoff, PausedTime, PausedTimeReport, paused_time, retry_with_backoff,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::stealing::{
    Burst, MetricsSnapshot, SpawnFrom, TaskRun, WorkStealing, WorkStealingReport, WorkerShare, current_worker,
    metrics_table, work_stealing,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::timers::{
    LatenessRow, SleepLateness, SleepLatenessReport, TimerWheelReport, TimerWheelRun, WheelStep, sleep_lateness,
    timer_wheel,
};
#[cfg(feature = "tokio_rt")]
pub use crate::experiments::tokio_rt::tuning::{
    BlockingPool, BlockingPoolReport, IntervalRow, KeepAliveRow, PoolSizeRow, SchedulerIntervals,
    SchedulerIntervalsReport, blocking_pool, scheduler_intervals,
};
/// The async runtime helper: `rt::run(Rt::multi(2), || async { … })`, and tokio itself, so
/// cells can write `tokio::spawn`, `tokio::join!` and `tokio::time::sleep`.
#[cfg(feature = "rt")]
pub use crate::lab::rt::{self, Rt, RtError, SpanRecorder, StartGate, ms, run_paused};
pub use crate::lab::{
    Figure, LabError, Legend, MachineCard, ParamError, Point, Report, ReportResult, Rich, RunError, Sampling, Scale,
    Series, Stats, Style, Table, Verdict, WithReference, cores, one_line_panics,
};
#[cfg(feature = "async_basics")]
pub use crate::primitives::executor::{
    ExecError, ExecStats, JoinError, JoinHandle, MiniExecutor, Spawner, TimedOut, block_on, block_on_timeout, yield_now,
};
/// The `Future` trait by hand (notebook 04): hand-written futures, polling by hand, tracing.
#[cfg(feature = "async_basics")]
pub use crate::primitives::future::{
    Countdown, CountingWaker, PollLog, TimerFuture, TraceEvent, TraceKind, TraceLog, Traced, TwoWaits, poll_by_hand,
    poll_by_hand_within, two_waits,
};
#[cfg(feature = "advanced")]
pub use crate::primitives::resilience::{
    BreakerConfig, BreakerState, CircuitBreaker, Jitter, JitterRng, LoadShedder, Overloaded, RetryPolicy, retry,
    with_timeout,
};
#[cfg(feature = "tokio_rt")]
pub use crate::primitives::timer_wheel::{TimerKey, TimerWheel};
#[cfg(feature = "features")]
pub use crate::send_sync_table;
/// The `futures` crate, so cells can write `futures::channel::oneshot`, `futures::join!`.
#[cfg(any(feature = "async_basics", feature = "tokio_rt", feature = "advanced"))]
pub use futures;
#[cfg(feature = "rt")]
pub use tokio;
/// `tokio_stream` and `tower` (notebook 06): streams over tokio types, service middleware.
#[cfg(feature = "advanced")]
pub use tokio_stream;
/// `tokio_util` (notebooks 05, 06): `tokio_util::sync::CancellationToken`, `tokio_util::task::TaskTracker`.
#[cfg(any(feature = "tokio_rt", feature = "advanced"))]
pub use tokio_util;
#[cfg(feature = "advanced")]
pub use tower;
