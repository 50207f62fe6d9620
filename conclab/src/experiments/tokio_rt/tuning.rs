//! Tuning a tokio runtime: sweeps of four `Builder` knobs, each on a workload where it
//! matters.
//!
//! - [`blocking_pool`]: `max_blocking_threads` (jobs that block for a while, run through
//!   `spawn_blocking`: wall time against the pool's cap) and `thread_keep_alive` (bursts
//!   of blocking jobs separated by idle gaps: threads created and how long a job waits to
//!   start, against the keep-alive).
//! - [`scheduler_intervals`]: `event_interval` (how long an I/O event — a byte written
//!   into a socket by another thread — waits to be noticed by a worker that always has
//!   ready tasks) and `global_queue_interval` (how long a task spawned from another thread
//!   waits in the global queue while the local one is never empty).

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::timing::quantile_sorted;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The blocking pool: max_blocking_threads and thread_keep_alive.

/// Parameters of [`blocking_pool`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockingPool {
    /// Caps of the blocking pool (`max_blocking_threads`) to try: 1..=10 distinct values,
    /// each 1..=1024.
    pub pool_sizes: Vec<usize>,
    /// Blocking jobs per run of the size sweep, all spawned at once: 1..=1024.
    pub jobs: usize,
    /// How long each of those jobs blocks its thread (`std::thread::sleep`), ms: 1..=100.
    pub job_ms: u64,
    /// Keep-alive times (`thread_keep_alive`) to try, ms: 1..=10 distinct values, each
    /// 1..=10000.
    pub keep_alive_ms: Vec<u64>,
    /// Bursts per run of the keep-alive sweep: 2..=50.
    pub bursts: usize,
    /// Blocking jobs per burst (each blocks 1 ms): 1..=256.
    pub burst_jobs: usize,
    /// Idle time between two bursts, ms: 1..=1000.
    pub gap_ms: u64,
}

impl Default for BlockingPool {
    fn default() -> Self {
        BlockingPool {
            pool_sizes: vec![1, 2, 4, 8, 16, 32, 64],
            jobs: 64,
            job_ms: 10,
            keep_alive_ms: vec![1, 5, 10, 40, 100, 1_000],
            bursts: 6,
            burst_jobs: 8,
            gap_ms: 20,
        }
    }
}

impl BlockingPool {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("pool_sizes", &self.pool_sizes, 10, 1..=1024)?;
        check_range("jobs", self.jobs, 1..=1024)?;
        check_range("job_ms", self.job_ms, 1..=100)?;
        check_list("keep_alive_ms", &self.keep_alive_ms, 10, 1..=10_000)?;
        check_range("bursts", self.bursts, 2..=50)?;
        check_range("burst_jobs", self.burst_jobs, 1..=256)?;
        check_range("gap_ms", self.gap_ms, 1..=1000)?;
        check_estimate("pool_sizes × jobs × job_ms + keep_alive_ms × bursts × gap_ms", self.estimate())
    }

    /// The size sweep: ⌈jobs / size⌉ rounds of `job_ms` per size; the keep-alive sweep:
    /// `bursts` × (gap + 1 ms job + a little) per keep-alive; 30 ms per runtime.
    pub fn estimate(&self) -> Duration {
        let sizes: u64 = self.pool_sizes.iter().map(|&k| self.jobs.div_ceil(k) as u64 * self.job_ms + 30).sum();
        let alive = self.keep_alive_ms.len() as u64 * (self.bursts as u64 * (self.gap_ms + 3) + 30);
        Duration::from_millis(sizes + alive)
    }
}

/// One pool size of the size sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolSizeRow {
    pub max_blocking_threads: usize,
    /// From the first spawn to the last job's end, ms.
    pub wall_ms: f64,
    /// ⌈jobs / size⌉ × job_ms: the wall time with free threads and no overhead, ms.
    pub ideal_ms: f64,
    /// Most jobs seen blocking at the same time.
    pub peak_running: usize,
}

/// One keep-alive of the keep-alive sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeepAliveRow {
    pub keep_alive_ms: u64,
    /// Distinct blocking-pool threads that ran a job over all bursts.
    pub threads_created: usize,
    /// Per burst: the median wait from `spawn_blocking` to the job's start, µs.
    pub burst_start_us: Vec<f64>,
    /// All jobs after the first burst: wait from `spawn_blocking` to start, µs.
    pub later_start: Stats,
}

/// Result of [`blocking_pool`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockingPoolReport {
    pub params: BlockingPool,
    pub sizes: Vec<PoolSizeRow>,
    pub keep_alive: Vec<KeepAliveRow>,
    pub load: Load,
}

/// Runs `jobs` blocking jobs of `job_ms` through `spawn_blocking` on a current-thread
/// runtime per pool cap (`max_blocking_threads`) and times them all; then, per keep-alive
/// (`thread_keep_alive`), runs `bursts` bursts of `burst_jobs` 1 ms jobs `gap_ms` apart
/// and counts the blocking threads that ran them and how long each job waited to start.
pub fn blocking_pool(p: &BlockingPool) -> Result<BlockingPoolReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("blocking-pool", p.pool_sizes.len() + p.keep_alive_ms.len());
    let mut sizes = Vec::new();
    let mut pool_sizes = p.pool_sizes.clone();
    pool_sizes.sort_unstable();
    for &k in &pool_sizes {
        let (jobs, job) = (p.jobs, Duration::from_millis(p.job_ms));
        let limit = job * jobs as u32 * 3 + Duration::from_secs(10);
        let rt = Rt::current().max_blocking_threads(k).timeout(limit);
        let (wall, peak) = crate::lab::rt::run(rt, move || async move {
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let t = Instant::now();
            let handles: Vec<_> = (0..jobs)
                .map(|_| {
                    let (running, peak) = (running.clone(), peak.clone());
                    tokio::task::spawn_blocking(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(job);
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for h in handles {
                let _ = h.await;
            }
            (t.elapsed(), peak.load(Ordering::SeqCst))
        })
        .map_err(|e| RunError::new(format!("{jobs} blocking jobs with max_blocking_threads = {k}"), e))?;
        sizes.push(PoolSizeRow {
            max_blocking_threads: k,
            wall_ms: wall.as_secs_f64() * 1e3,
            ideal_ms: (jobs.div_ceil(k) as u64 * p.job_ms) as f64,
            peak_running: peak,
        });
        progress.step()?;
    }
    let mut keep_alive = Vec::new();
    let mut alives = p.keep_alive_ms.clone();
    alives.sort_unstable();
    for &ka in &alives {
        let (bursts, per, gap) = (p.bursts, p.burst_jobs, Duration::from_millis(p.gap_ms));
        let limit = (gap + Duration::from_millis(50)) * bursts as u32 * 3 + Duration::from_secs(10);
        let rt = Rt::current().thread_keep_alive(Duration::from_millis(ka)).timeout(limit);
        // Per burst, per job: (thread name, µs from spawn_blocking to start).
        let runs = crate::lab::rt::run(rt, move || async move {
            let mut out = Vec::with_capacity(bursts);
            for _ in 0..bursts {
                let handles: Vec<_> = (0..per)
                    .map(|_| {
                        let t = Instant::now();
                        tokio::task::spawn_blocking(move || {
                            let waited = t.elapsed().as_secs_f64() * 1e6;
                            std::thread::sleep(Duration::from_millis(1));
                            (std::thread::current().name().unwrap_or("?").to_string(), waited)
                        })
                    })
                    .collect();
                let mut burst = Vec::with_capacity(per);
                for h in handles {
                    if let Ok(v) = h.await {
                        burst.push(v);
                    }
                }
                out.push(burst);
                tokio::time::sleep(gap).await;
            }
            out
        })
        .map_err(|e| RunError::new(format!("bursts of blocking jobs with thread_keep_alive = {ka} ms"), e))?;
        let mut names: Vec<&str> = runs.iter().flatten().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let burst_start_us =
            runs.iter().map(|b| Stats::of(&b.iter().map(|(_, w)| *w).collect::<Vec<_>>()).median).collect();
        let later: Vec<f64> = runs.iter().skip(1).flatten().map(|(_, w)| *w).collect();
        keep_alive.push(KeepAliveRow {
            keep_alive_ms: ka,
            threads_created: names.len(),
            burst_start_us,
            later_start: Stats::of(&later),
        });
        progress.step()?;
    }
    Ok(BlockingPoolReport { params: p.clone(), sizes, keep_alive, load: probe.finish() })
}

impl Report for BlockingPoolReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        if let (Some(lo), Some(hi)) = (self.sizes.first(), self.sizes.last()) {
            let ratio = lo.wall_ms / hi.wall_ms.max(1e-3);
            let text = format!(
                "{} jobs that each block {} ms took {} ms with max_blocking_threads = {} and {} ms with {}: {}× \
                 faster. A blocking job holds its thread while it sleeps, so the pool's cap is how many wait at once \
                 — ⌈jobs / cap⌉ rounds (ideal {} vs {} ms). Sleeping threads need no core, so this gain does not \
                 stop at the core count",
                p.jobs,
                p.job_ms,
                fmt_num(lo.wall_ms),
                lo.max_blocking_threads,
                fmt_num(hi.wall_ms),
                hi.max_blocking_threads,
                fmt_num(ratio),
                fmt_num(lo.ideal_ms),
                fmt_num(hi.ideal_ms)
            );
            out.push(if ratio > 1.5 { Finding::clear(text) } else { Finding::unclear(text) });
            let worst = self
                .sizes
                .iter()
                .max_by(|a, b| (a.wall_ms / a.ideal_ms).total_cmp(&(b.wall_ms / b.ideal_ms)))
                .expect("sizes");
            out.push(Finding::clear(format!(
                "every cap ran at most that many jobs at once (peak {} at cap {}); the largest overhead over ⌈jobs / cap⌉ \
                 rounds was {} ms at cap {} — starting threads, and the OS waking {} sleepers",
                hi.peak_running,
                hi.max_blocking_threads,
                fmt_num(worst.wall_ms - worst.ideal_ms),
                worst.max_blocking_threads,
                worst.peak_running
            )));
        }
        let below: Vec<&KeepAliveRow> = self.keep_alive.iter().filter(|r| r.keep_alive_ms < p.gap_ms).collect();
        let above: Vec<&KeepAliveRow> = self.keep_alive.iter().filter(|r| r.keep_alive_ms > p.gap_ms).collect();
        if let (Some(b), Some(a)) = (below.first(), above.last()) {
            let text = format!(
                "with thread_keep_alive = {} ms (shorter than the {} ms gap) the pool started {} threads for {} bursts \
                 of {} jobs — idle threads exit in every gap and the next burst starts new ones; with {} ms it started \
                 {}, reused burst after burst. After the first burst a job waited {} µs to start at the median vs {} \
                 µs: a new thread costs a clone() and a stack, a parked one only a wake-up",
                b.keep_alive_ms,
                p.gap_ms,
                b.threads_created,
                p.bursts,
                p.burst_jobs,
                a.keep_alive_ms,
                a.threads_created,
                fmt_num(b.later_start.median),
                fmt_num(a.later_start.median)
            );
            out.push(if b.threads_created > a.threads_created {
                Finding::clear(text)
            } else {
                Finding::unclear(format!("{text} (no difference in threads here: a gap ran longer than planned?)"))
            });
        } else if let Some(r) = self.keep_alive.first() {
            out.push(Finding::unclear(format!(
                "all keep-alive times lie on one side of the {} ms gap, so the pool behaved alike for all ({} threads \
                 at {} ms): try keep-alive times below and above it",
                p.gap_ms, r.threads_created, r.keep_alive_ms
            )));
        }
        out.push(Finding::note(
            "guidance: size max_blocking_threads for the blocking work in flight (blocking file or database calls \
             wait, they do not compute: cores do not limit them, the cap does); keep the 10 s default keep-alive \
             unless bursts come further apart and idle threads matter",
        ));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut s = Figure::lines(
            &format!("{} blocking jobs of {} ms: wall time vs the blocking pool's cap", p.jobs, p.job_ms),
            "max_blocking_threads",
            "wall time (ms)",
        )
        .log_x()
        .log_y();
        let pts = self.sizes.iter().map(|r| Point::new(r.max_blocking_threads as f64, r.wall_ms)).collect();
        s = s.series(Series::new("measured", Style::Measured, pts));
        let pts = self.sizes.iter().map(|r| Point::new(r.max_blocking_threads as f64, r.ideal_ms)).collect();
        s = s.series(Series::new("⌈jobs / cap⌉ × job", Style::Ideal, pts));
        let mut k = Figure::lines(
            &format!(
                "Bursts of {} blocking jobs, {} ms apart: threads started vs thread_keep_alive",
                p.burst_jobs, p.gap_ms
            ),
            "thread_keep_alive (ms)",
            "",
        )
        .log_x()
        .linear_y()
        .panel("blocking threads started");
        let pts =
            self.keep_alive.iter().map(|r| Point::new(r.keep_alive_ms as f64, r.threads_created as f64)).collect();
        k = k.series(Series::new("threads started", Style::Measured, pts));
        k = k.series(Series::new(
            "gap between bursts",
            Style::Ideal,
            vec![Point::new(p.gap_ms as f64, 0.0), Point::new(p.gap_ms as f64, (p.bursts * p.burst_jobs) as f64)],
        ));
        k = k.panel("wait to start after burst 1 (µs)");
        let pts = self.keep_alive.iter().map(|r| Point::quartiles(r.keep_alive_ms as f64, &r.later_start)).collect();
        k = k.series(Series::new("spawn_blocking → job starts", Style::Measured, pts));
        vec![mark_busy(s, &self.load), mark_busy(k, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("The blocking pool: its cap and its keep-alive", &["knob", "value", "result", "detail"]);
        for r in &self.sizes {
            t.row(vec![
                "max_blocking_threads".into(),
                r.max_blocking_threads.to_string(),
                format!("{} ms wall", fmt_num(r.wall_ms)),
                format!("ideal {} ms, peak {} at once", fmt_num(r.ideal_ms), r.peak_running),
            ]);
        }
        for r in &self.keep_alive {
            t.row(vec![
                "thread_keep_alive".into(),
                format!("{} ms", r.keep_alive_ms),
                format!("{} threads started", r.threads_created),
                format!("start wait after burst 1: p50 {} µs", fmt_num(r.later_start.median)),
            ]);
        }
        let p = &self.params;
        t.note(format!(
            "Size sweep: {} jobs × {} ms sleep. Keep-alive sweep: {} bursts × {} jobs of 1 ms, {} ms apart. Current-thread runtimes.",
            p.jobs, p.job_ms, p.bursts, p.burst_jobs, p.gap_ms
        ));
        t
    }
}

// ---------------------------------------------------------------------------------------
// The scheduler's intervals: event_interval and global_queue_interval.

/// Parameters of [`scheduler_intervals`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerIntervals {
    /// Interval values (scheduler ticks) tried for each knob: 1..=10 distinct values,
    /// each 1..=1000. tokio's current-thread defaults are 61 (event) and 31 (global queue).
    pub intervals: Vec<u32>,
    /// Tasks that are always ready (each poll computes, then wakes itself): 1..=64.
    pub busy_tasks: usize,
    /// CPU work per poll of a busy task, µs: 1..=1000.
    pub poll_us: u64,
    /// How long each runtime runs, ms: 20..=2000.
    pub run_ms: u64,
}

impl Default for SchedulerIntervals {
    fn default() -> Self {
        SchedulerIntervals { intervals: vec![4, 16, 31, 61, 127, 255], busy_tasks: 4, poll_us: 20, run_ms: 200 }
    }
}

impl SchedulerIntervals {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("intervals", &self.intervals, 10, 1..=1000)?;
        check_range("busy_tasks", self.busy_tasks, 1..=64)?;
        check_range("poll_us", self.poll_us, 1..=1000)?;
        check_range("run_ms", self.run_ms, 20..=2000)?;
        check_estimate("intervals × run_ms", self.estimate())
    }

    /// Two runtimes per interval, `run_ms` each plus about 40 ms to start, stop and drain.
    pub fn estimate(&self) -> Duration {
        Duration::from_millis(2 * self.intervals.len() as u64 * (self.run_ms + 40) + 50)
    }
}

/// The two knobs [`scheduler_intervals`] sweeps.
pub const EVENT_INTERVAL: &str = "event_interval";
pub const GLOBAL_QUEUE_INTERVAL: &str = "global_queue_interval";

/// One knob at one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalRow {
    /// [`EVENT_INTERVAL`] or [`GLOBAL_QUEUE_INTERVAL`].
    pub knob: String,
    pub interval: u32,
    /// event_interval: from another thread's write into a socket to the reading task
    /// running, ms; global_queue_interval: from another thread's `Handle::spawn` to the
    /// task's first poll, ms.
    pub delay: Stats,
    pub delay_p99: f64,
    /// Polls of the busy tasks per second: the useful work done meanwhile.
    pub busy_polls_per_s: f64,
}

/// Result of [`scheduler_intervals`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchedulerIntervalsReport {
    pub params: SchedulerIntervals,
    pub rows: Vec<IntervalRow>,
    /// What one poll of a busy task took, µs (measured: the CPU work plus tokio's tick).
    pub poll_us_measured: f64,
    pub load: Load,
}

/// A task that is always ready: each poll computes `iters` rounds, counts itself and
/// wakes itself, so the scheduler's local queue never runs empty.
struct Spin {
    iters: u64,
    polls: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Future for Spin {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        busy(self.iters, 3);
        self.polls.fetch_add(1, Ordering::Relaxed);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Waits up to this long for a poke's answer before the poking thread gives up.
const POKE_PATIENCE: Duration = Duration::from_secs(2);

/// One runtime with `knob` = `interval` and `busy_tasks` spinners; a blocking-pool thread
/// pokes it every 0.2–1.2 ms (random) and waits for the answer before the next poke.
/// Returns each poke's delay (ms) and the spinners' polls per second.
fn interval_run(
    p: &SchedulerIntervals,
    knob: &'static str,
    interval: u32,
    iters: u64,
) -> Result<(Vec<f64>, f64), LabError> {
    use tokio::io::AsyncReadExt;
    let rt = if knob == EVENT_INTERVAL {
        Rt::current().event_interval(interval)
    } else {
        Rt::current().global_queue_interval(interval)
    };
    let (busy_tasks, run, seed) = (p.busy_tasks, Duration::from_millis(p.run_ms), u64::from(interval));
    let rt = rt.timeout(run * 5 + Duration::from_secs(10));
    crate::lab::rt::run(rt, move || async move {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let spinners: Vec<_> =
            (0..busy_tasks).map(|_| tokio::spawn(Spin { iters, polls: polls.clone(), stop: stop.clone() })).collect();
        let deadline = t0 + run;
        let pause =
            move |rng: &mut crate::lab::rng::Rng| std::thread::sleep(Duration::from_micros(200 + rng.below(1_000)));
        let delays = if knob == EVENT_INTERVAL {
            // An I/O event: another thread writes a byte into a socket a task is reading.
            // Only the driver, polled every event_interval ticks, sees the socket ready.
            let (mut tx_sock, rx_sock) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
            rx_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut reader = tokio::net::UnixStream::from_std(rx_sock).map_err(|e| e.to_string())?;
            let sent = Arc::new(std::sync::Mutex::new(Instant::now()));
            let (ack, acks) = std::sync::mpsc::sync_channel::<f64>(1);
            let sent2 = sent.clone();
            let read_task = tokio::spawn(async move {
                let mut buf = [0u8; 1];
                while let Ok(1) = reader.read(&mut buf).await {
                    let waited = sent2.lock().map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
                    let _ = ack.try_send(waited);
                }
            });
            let poker = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut rng = crate::lab::rng::Rng::new(seed);
                let mut out = Vec::new();
                while Instant::now() < deadline {
                    pause(&mut rng);
                    if let Ok(mut t) = sent.lock() {
                        *t = Instant::now();
                    }
                    if tx_sock.write_all(&[1]).is_err() {
                        break;
                    }
                    match acks.recv_timeout(POKE_PATIENCE) {
                        Ok(d) => out.push(d),
                        Err(_) => break,
                    }
                }
                out // dropping the socket ends the reader
            });
            let out = poker.await.unwrap_or_default();
            let _ = read_task.await;
            out
        } else {
            // A task spawned from another thread lands in the global (injection) queue.
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let mut rng = crate::lab::rng::Rng::new(seed);
                let mut out = Vec::new();
                while Instant::now() < deadline {
                    pause(&mut rng);
                    let (ack, answer) = std::sync::mpsc::sync_channel::<f64>(1);
                    let t = Instant::now();
                    handle.spawn(async move {
                        let _ = ack.try_send(t.elapsed().as_secs_f64() * 1e3);
                    });
                    match answer.recv_timeout(POKE_PATIENCE) {
                        Ok(d) => out.push(d),
                        Err(_) => break,
                    }
                }
                out
            })
            .await
            .unwrap_or_default()
        };
        stop.store(true, Ordering::Relaxed);
        let per_s = polls.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
        for s in spinners {
            let _ = s.await;
        }
        Ok::<_, String>((delays, per_s))
    })
    .map_err(|e| RunError::new(format!("busy tasks with {knob} = {interval}"), e))?
    .map_err(|e| RunError::new(format!("a socket pair for the {knob} probe"), e).into())
}

/// On a current-thread runtime kept busy by `busy_tasks` always-ready tasks (each poll
/// `poll_us` of CPU work), per interval value: with `event_interval` set, how long a byte
/// written into a socket by another thread waits before the task reading it runs (the
/// I/O driver is polled only every `event_interval` ticks while tasks are ready); with
/// `global_queue_interval` set, how long a task spawned from another thread waits in the
/// global queue (looked at first only every that many ticks). The other thread pokes
/// every 0.2–1.2 ms and waits for each answer, so pokes never pile up.
pub fn scheduler_intervals(p: &SchedulerIntervals) -> Result<SchedulerIntervalsReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let iters = (iters_per_ms() * p.poll_us / 1_000).max(1);
    let mut progress = Progress::new("scheduler-intervals", 2 * p.intervals.len());
    let mut intervals = p.intervals.clone();
    intervals.sort_unstable();
    let mut rows = Vec::new();
    let mut poll_times = Vec::new();
    for knob in [EVENT_INTERVAL, GLOBAL_QUEUE_INTERVAL] {
        for &v in &intervals {
            let (mut delays, per_s) = interval_run(p, knob, v, iters)?;
            if per_s > 0.0 {
                poll_times.push(1e6 / per_s);
            }
            delays.sort_by(f64::total_cmp);
            let p99 = if delays.is_empty() { 0.0 } else { quantile_sorted(&delays, 0.99) };
            rows.push(IntervalRow {
                knob: knob.into(),
                interval: v,
                delay: Stats::of(&delays),
                delay_p99: p99,
                busy_polls_per_s: per_s,
            });
            progress.step()?;
        }
    }
    let poll_us_measured = Stats::of(&poll_times).median;
    Ok(SchedulerIntervalsReport { params: p.clone(), rows, poll_us_measured, load: probe.finish() })
}

impl SchedulerIntervalsReport {
    /// The rows of one knob, by interval.
    pub fn knob(&self, knob: &str) -> Vec<&IntervalRow> {
        self.rows.iter().filter(|r| r.knob == knob).collect()
    }
}

impl Report for SchedulerIntervalsReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let poll = self.poll_us_measured;
        for (knob, what, mechanism, default) in [
            (
                EVENT_INTERVAL,
                "a byte written into a socket waited",
                "the I/O driver (and with it the timers) is polled only every event_interval ticks while tasks are ready",
                61,
            ),
            (
                GLOBAL_QUEUE_INTERVAL,
                "a task spawned from another thread waited",
                "the global queue is looked at first only every global_queue_interval ticks while the local queue has work",
                31,
            ),
        ] {
            let rows = self.knob(knob);
            let (Some(lo), Some(hi)) = (rows.first(), rows.last()) else { continue };
            let ratio = hi.delay.median / lo.delay.median.max(1e-3);
            let text = format!(
                "{knob} {}: {what} {} ms at the median (p99 {}); {knob} {}: {} ms (p99 {}) — {}× longer, because \
                 {mechanism}, and each tick is one poll of about {} µs: up to about {} × {} µs = {} ms between looks",
                lo.interval,
                fmt_num(lo.delay.median),
                fmt_num(lo.delay_p99),
                hi.interval,
                fmt_num(hi.delay.median),
                fmt_num(hi.delay_p99),
                fmt_num(ratio),
                fmt_num(poll),
                hi.interval,
                fmt_num(poll),
                fmt_num(hi.interval as f64 * poll / 1e3)
            );
            out.push(if ratio > 1.5 { Finding::clear(text) } else { Finding::unclear(text) });
            let at_default = rows.iter().find(|r| r.interval == default);
            let cost = lo.busy_polls_per_s / hi.busy_polls_per_s.max(1e-9);
            out.push(Finding::clear(format!(
                "{knob}'s price: the busy tasks got {} polls/s at {} vs {} at {} ({}){}",
                crate::lab::findings::group(lo.busy_polls_per_s as u64),
                lo.interval,
                crate::lab::findings::group(hi.busy_polls_per_s as u64),
                hi.interval,
                crate::lab::findings::change_words(
                    cost,
                    0.15,
                    "no clear cost: a look at an idle driver or an empty queue is cheap next to a poll of this size",
                    |f| format!(
                        "{f}× more at the small interval, so the difference is noise (the machine, the poking thread), \
                         not the knob"
                    ),
                    |f| format!("{f}× less work done when looking more often"),
                ),
                at_default.map_or(String::new(), |r| format!(
                    "; tokio's default {default} gave {} ms at the median",
                    fmt_num(r.delay.median)
                ))
            )));
        }
        out.push(Finding::note(
            "guidance: these delays only appear while a worker always has ready tasks; leave both intervals at \
             their defaults unless a measurement like this one shows timers or injected tasks waiting too long — \
             then lower the interval (each look costs a little throughput) or, better, give long CPU work its own \
             threads (spawn_blocking, rayon) so the queue empties",
        ));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "A worker that always has ready tasks: what the intervals make others wait",
            "interval (scheduler ticks, one task poll each)",
            "delay (ms); band: p25–p75",
        )
        .log_x();
        for (knob, panel, name) in [
            // Panel titles are drawn on one line: at most ~34 characters fit a half-width panel.
            (EVENT_INTERVAL, "event_interval: socket wait", "socket read wait"),
            (GLOBAL_QUEUE_INTERVAL, "global_queue_interval: spawn wait", "outside spawn → first poll"),
        ] {
            let rows = self.knob(knob);
            f = f.panel(panel);
            let pts = rows.iter().map(|r| Point::quartiles(r.interval as f64, &r.delay)).collect();
            f = f.series(Series::new(format!("{name} p50"), Style::Measured, pts));
            let pts = rows.iter().map(|r| Point::new(r.interval as f64, r.delay_p99)).collect();
            f = f.series(Series::new(format!("{name} p99"), Style::Measured, pts));
            let pts = rows
                .iter()
                .map(|r| Point::new(r.interval as f64, r.interval as f64 * self.poll_us_measured / 1e3))
                .collect();
            f = f.series(Series::new("interval × one poll", Style::Ideal, pts));
        }
        vec![mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Scheduler intervals on a busy current-thread runtime",
            &["knob", "interval", "delay p50 ms", "p25–p75", "p99 ms", "samples", "busy polls/s"],
        );
        for r in &self.rows {
            t.row(vec![
                r.knob.clone(),
                r.interval.to_string(),
                fmt_num(r.delay.median),
                r.delay.quartile_range(),
                fmt_num(r.delay_p99),
                r.delay.n.to_string(),
                crate::lab::findings::group(r.busy_polls_per_s as u64),
            ]);
        }
        let p = &self.params;
        t.note(format!(
            "{} always-ready tasks, {} µs of CPU per poll (measured {} µs per tick); {} ms per runtime. event_interval rows: \
             delay = another thread's write into a socket → the reading task runs; global_queue_interval rows: \
             delay = Handle::spawn from another thread → first poll.",
            p.busy_tasks,
            p.poll_us,
            fmt_num(self.poll_us_measured),
            p.run_ms
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![
        crate::lab::Experiment::new(
            "blocking-pool",
            super::NOTEBOOK,
            "tuning the blocking pool: wall time vs max_blocking_threads, threads started vs thread_keep_alive",
            blocking_pool,
        ),
        crate::lab::Experiment::new(
            "scheduler-intervals",
            super::NOTEBOOK,
            "tuning the scheduler: I/O-event wait vs event_interval, injected-task wait vs global_queue_interval",
            scheduler_intervals,
        ),
    ]
}

crate::impl_params!(BlockingPool, SchedulerIntervals);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_refuses_bad_parameters() {
        let d = BlockingPool::default();
        assert!(d.validate().is_ok());
        assert!(d.estimate() < Duration::from_secs(8), "{:?}", d.estimate());
        assert!(blocking_pool(&BlockingPool { pool_sizes: vec![0], ..d.clone() }).is_err());
        assert!(blocking_pool(&BlockingPool { keep_alive_ms: vec![], ..d.clone() }).is_err());
        assert!(blocking_pool(&BlockingPool { bursts: 1, ..d.clone() }).is_err());
        let e = BlockingPool { bursts: 50, gap_ms: 1000, ..d }.validate().unwrap_err();
        assert!(e.to_string().contains("estimated"), "{e}");
        let s = SchedulerIntervals::default();
        assert!(s.validate().is_ok());
        assert!(s.estimate() < Duration::from_secs(8), "{:?}", s.estimate());
        assert!(scheduler_intervals(&SchedulerIntervals { intervals: vec![0], ..s.clone() }).is_err());
        assert!(scheduler_intervals(&SchedulerIntervals { busy_tasks: 0, ..s }).is_err());
    }

    #[test]
    fn the_pool_cap_bounds_concurrency_and_sets_the_wall_time() {
        let p = BlockingPool {
            pool_sizes: vec![1, 16],
            jobs: 16,
            job_ms: 10,
            keep_alive_ms: vec![2, 500],
            bursts: 3,
            burst_jobs: 4,
            gap_ms: 30,
        };
        let r = blocking_pool(&p).unwrap();
        let (one, many) = (&r.sizes[0], &r.sizes[1]);
        assert_eq!(one.peak_running, 1);
        assert!(many.peak_running <= 16);
        // 16 sleeps of 10 ms one after the other take at least 160 ms: not a timing guess.
        assert!(one.wall_ms >= 160.0, "{one:?}");
        // With a long keep-alive the threads of burst 1 serve every burst.
        let (short, long) = (&r.keep_alive[0], &r.keep_alive[1]);
        assert!(long.threads_created <= 4, "{long:?}");
        assert!(short.threads_created >= long.threads_created, "{short:?}");
        assert!(r.findings().len() >= 4);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.table().to_string().contains("thread_keep_alive"));
    }

    #[test]
    fn intervals_measure_both_knobs_and_draw() {
        let p = SchedulerIntervals { intervals: vec![4, 255], busy_tasks: 2, poll_us: 20, run_ms: 40 };
        let r = scheduler_intervals(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in &r.rows {
            assert!(row.delay.n > 0 && row.busy_polls_per_s > 0.0, "{row:?}");
            assert!(row.delay.min >= 0.0, "{row:?}");
        }
        assert!(r.findings().len() >= 4);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("global_queue_interval"));
    }
}
