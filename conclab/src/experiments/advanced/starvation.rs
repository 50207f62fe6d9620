//! CPU work inside async code. A heartbeat task wants to run every millisecond; meanwhile
//! `lanes` tasks (one per worker) chew through chunks of CPU work. Where that work runs
//! decides whether the heartbeat keeps its beat: spun inline on the runtime's workers it
//! holds them for whole chunks (executor starvation); spun inline but with `yield_now`
//! every few hundred µs the heartbeat gets a turn at each yield; moved off the workers —
//! `spawn_blocking`, a rayon pool with a oneshot back, `block_in_place` — it leaves them
//! free, and only the OS's sharing of the cores remains.

use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rayon_pool::JoinedPool;
use crate::lab::rt::Rt;
use crate::lab::timing::quantile_sorted;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, check_range,
    fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The heartbeat's period, ms.
pub const BEAT_MS: u64 = 1;

/// Parameters of [`heartbeat`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Heartbeat {
    /// Worker threads of the multi-thread runtime; as many CPU lanes run at once: 1..=64.
    /// 1 (the default) starves the heartbeat inline on any machine; raise it to the core
    /// count to see the OS's sharing of the cores join in.
    pub workers: usize,
    /// Chunks of CPU work in all (split over the lanes): 1..=1000.
    pub chunks: usize,
    /// Spinning per chunk, ms: 1..=100.
    pub chunk_ms: u64,
    /// The `yield_now` strategy yields after this many µs of spinning: 10..=100000.
    pub yield_every_us: u64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { workers: 1, chunks: 60, chunk_ms: 5, yield_every_us: 200 }
    }
}

impl Heartbeat {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("workers", self.workers, 1..=64)?;
        check_range("chunks", self.chunks, 1..=1000)?;
        check_range("chunk_ms", self.chunk_ms, 1..=100)?;
        check_range("yield_every_us", self.yield_every_us, 10..=100_000)?;
        check_estimate("chunks × chunk_ms / workers", self.estimate())
    }

    /// Five strategies, each spinning `chunks × chunk_ms` spread over `workers` lanes (on
    /// at least as many cores as this machine has), plus start-up.
    pub fn estimate(&self) -> Duration {
        let lanes = self.workers.min(crate::lab::machine::usable_cpus().len().max(1)) as u64;
        Duration::from_millis(5 * (self.chunks as u64 * self.chunk_ms).div_ceil(lanes) + 100)
    }
}

/// Where the CPU work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CpuStrategy {
    /// Spun inline in an async task, one `yield_now` between chunks.
    Inline,
    /// Spun inline, with `tokio::task::yield_now().await` every `yield_every_us` µs.
    YieldNow,
    /// `tokio::task::spawn_blocking(..)`, awaited.
    SpawnBlocking,
    /// `pool.spawn(..)` on a rayon pool of `workers` threads, the result back through a oneshot.
    Rayon,
    /// `tokio::task::block_in_place(..)` inside the task: the worker hands its other tasks off.
    BlockInPlace,
}

impl CpuStrategy {
    /// Every strategy, in the order they run.
    pub const ALL: [CpuStrategy; 5] = [
        CpuStrategy::Inline,
        CpuStrategy::YieldNow,
        CpuStrategy::SpawnBlocking,
        CpuStrategy::Rayon,
        CpuStrategy::BlockInPlace,
    ];

    /// A short name for figures and tables.
    pub fn label(self) -> &'static str {
        match self {
            CpuStrategy::Inline => "inline",
            CpuStrategy::YieldNow => "inline + yield_now",
            CpuStrategy::SpawnBlocking => "spawn_blocking",
            CpuStrategy::Rayon => "rayon + oneshot",
            CpuStrategy::BlockInPlace => "block_in_place",
        }
    }

    /// Whether the work leaves the runtime's workers free.
    pub fn off_the_workers(self) -> bool {
        matches!(self, CpuStrategy::SpawnBlocking | CpuStrategy::Rayon | CpuStrategy::BlockInPlace)
    }
}

/// One strategy's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeartbeatRow {
    pub strategy: CpuStrategy,
    /// Every beat while the work ran: (ms since start, lateness ms behind its due time).
    pub beats: Vec<(f64, f64)>,
    /// Beats due while the work ran that never happened (the heartbeat skips missed ones).
    pub missed: usize,
    /// Median lateness, ms.
    pub p50_ms: f64,
    /// 99th percentile lateness, ms.
    pub p99_ms: f64,
    /// Largest lateness, ms.
    pub max_ms: f64,
    /// From the start of the work to its end, ms.
    pub work_ms: f64,
}

/// Result of [`heartbeat`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeartbeatReport {
    pub params: Heartbeat,
    pub rows: Vec<HeartbeatRow>,
    pub load: Load,
}

fn spin_ms(iters_per_ms: u64, ms: u64, seed: u64) -> u64 {
    crate::lab::work::busy(iters_per_ms * ms, seed)
}

/// The heartbeat: sleeps until each due time (`BEAT_MS` apart) and records how late it
/// woke; a beat already overdue by a whole period is skipped and counted as missed.
/// Each beat: (ms since start, lateness ms, beats skipped before it).
async fn beat(start: tokio::time::Instant, done: Arc<AtomicBool>) -> Vec<(f64, f64, usize)> {
    let period = Duration::from_millis(BEAT_MS);
    let mut beats = Vec::new();
    let mut due = start + period;
    while !done.load(Ordering::Acquire) {
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        let late = now.duration_since(due);
        let skip = (late.as_nanos() / period.as_nanos()) as usize;
        beats.push((now.duration_since(start).as_secs_f64() * 1e3, late.as_secs_f64() * 1e3, skip));
        due += period * (skip as u32 + 1);
    }
    beats
}

/// One lane: its chunks of work, run the way `s` says.
async fn lane(s: CpuStrategy, chunks: usize, chunk_ms: u64, slice_iters: u64, ipm: u64, pool: Option<Arc<JoinedPool>>) {
    for c in 0..chunks as u64 {
        match s {
            CpuStrategy::Inline => {
                std::hint::black_box(spin_ms(ipm, chunk_ms, c));
                tokio::task::yield_now().await;
            }
            CpuStrategy::YieldNow => {
                let mut left = ipm * chunk_ms;
                while left > 0 {
                    let n = left.min(slice_iters.max(1));
                    std::hint::black_box(crate::lab::work::busy(n, c));
                    left -= n;
                    tokio::task::yield_now().await;
                }
            }
            CpuStrategy::SpawnBlocking => {
                let v = tokio::task::spawn_blocking(move || spin_ms(ipm, chunk_ms, c)).await;
                std::hint::black_box(v.expect("the spin does not panic"));
            }
            CpuStrategy::Rayon => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                pool.as_ref().expect("the rayon strategy has a pool").spawn(move || {
                    let _ = tx.send(spin_ms(ipm, chunk_ms, c));
                });
                std::hint::black_box(rx.await.expect("the pool answers"));
            }
            CpuStrategy::BlockInPlace => {
                std::hint::black_box(tokio::task::block_in_place(|| spin_ms(ipm, chunk_ms, c)));
                tokio::task::yield_now().await;
            }
        }
    }
}

fn quantiles(beats: &[(f64, f64)]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = beats.iter().map(|b| b.1).collect();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (quantile_sorted(&v, 0.5), quantile_sorted(&v, 0.99), v[v.len() - 1])
}

/// Runs each [`CpuStrategy`] on a fresh multi-thread runtime of `workers` workers: a
/// heartbeat task due every [`BEAT_MS`] ms, and `workers` lanes sharing `chunks` chunks of
/// `chunk_ms` ms of spinning. Records how late each beat woke while the work ran.
pub fn heartbeat(p: &Heartbeat) -> Result<HeartbeatReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let ipm = crate::lab::work::iters_per_ms().max(1);
    let slice_iters = (ipm * p.yield_every_us / 1000).max(1);
    let mut rows = Vec::new();
    for s in CpuStrategy::ALL {
        let pool = if s == CpuStrategy::Rayon {
            Some(Arc::new(JoinedPool::new(p.workers).map_err(|e| RunError::new(s.label(), e.to_string()))?))
        } else {
            None
        };
        let (workers, chunks, chunk_ms) = (p.workers, p.chunks, p.chunk_ms);
        let limit = Duration::from_millis(20 * chunks as u64 * chunk_ms) + Duration::from_secs(10);
        let body_pool = pool.clone();
        let rt = Rt::multi(workers).timeout(limit).max_blocking_threads(workers.max(1));
        let out = crate::lab::rt::run(rt, move || async move {
            let done = Arc::new(AtomicBool::new(false));
            let start = tokio::time::Instant::now();
            let hb = tokio::spawn(beat(start, done.clone()));
            // Let the heartbeat take its first beat before the work starts.
            tokio::time::sleep(Duration::from_millis(2 * BEAT_MS)).await;
            let work_start = Instant::now();
            let mut lanes = Vec::new();
            for l in 0..workers {
                let mine = chunks / workers + usize::from(l < chunks % workers);
                lanes.push(tokio::spawn(lane(s, mine, chunk_ms, slice_iters, ipm, body_pool.clone())));
            }
            for l in lanes {
                l.await.expect("a lane does not panic");
            }
            let work_ms = work_start.elapsed().as_secs_f64() * 1e3;
            let from_ms = work_start.duration_since(start.into_std()).as_secs_f64() * 1e3;
            done.store(true, Ordering::Release);
            let beats = hb.await.expect("the heartbeat does not panic");
            let to_ms = from_ms + work_ms;
            // Only the beats (and the skips before them) that fell while the work ran.
            let beats: Vec<(f64, f64, usize)> =
                beats.into_iter().filter(|b| b.0 >= from_ms && b.0 <= to_ms + 1.0).collect();
            let missed = beats.iter().map(|b| b.2).sum::<usize>();
            let beats = beats.into_iter().map(|(t, l, _)| (t - from_ms, l)).collect::<Vec<_>>();
            (beats, missed, work_ms)
        });
        drop(pool);
        let (beats, missed, work_ms) = out.map_err(|e| RunError::new(s.label(), e))?;
        let (p50_ms, p99_ms, max_ms) = quantiles(&beats);
        rows.push(HeartbeatRow { strategy: s, beats, missed, p50_ms, p99_ms, max_ms, work_ms });
    }
    Ok(HeartbeatReport { params: p.clone(), rows, load: probe.finish() })
}

impl HeartbeatReport {
    /// The row of one strategy.
    pub fn row(&self, s: CpuStrategy) -> Option<&HeartbeatRow> {
        self.rows.iter().find(|r| r.strategy == s)
    }
}

impl Report for HeartbeatReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let chunk = p.chunk_ms as f64;
        let workers = if p.workers == 1 { "its one worker".to_string() } else { format!("all {} workers", p.workers) };
        if let Some(i) = self.row(CpuStrategy::Inline) {
            out.push(Finding::clear(if i.p99_ms >= 0.5 * chunk {
                format!(
                    "inline, the heartbeat was late by {} ms at p99 (max {} ms, {} beats missed) against a {} ms \
                     chunk: with {workers} spinning, the beat was due but no worker was free to fire its timer or poll the \
                     heartbeat until a chunk ended — executor starvation",
                    fmt_num(i.p99_ms),
                    fmt_num(i.max_ms),
                    i.missed,
                    p.chunk_ms
                )
            } else {
                format!(
                    "inline, the heartbeat was late by only {} ms at p99 against a {} ms chunk: a worker was free \
                     between chunks often enough here; with every worker busy it would wait for whole chunks",
                    fmt_num(i.p99_ms),
                    p.chunk_ms
                )
            }));
            let base = i.p99_ms.max(1e-3);
            if let Some(y) = self.row(CpuStrategy::YieldNow) {
                let slice = p.yield_every_us as f64 / 1000.0;
                out.push(Finding::clear(if y.p99_ms < 0.5 * i.p99_ms {
                    format!(
                        "yield_now every {} µs cut the p99 to {} ms ({}× less than inline): the heartbeat gets a turn \
                         at each yield, so it waits about one slice ({} ms) on top of the timer's 1 ms tick, not one \
                         chunk — but only if every CPU loop remembers to yield",
                        p.yield_every_us,
                        fmt_num(y.p99_ms),
                        fmt_num(base / y.p99_ms.max(1e-3)),
                        fmt_num(slice)
                    )
                } else {
                    format!(
                        "yield_now every {} µs gave a p99 of {} ms, not clearly better than inline ({} ms): \
                         compare the slice with the chunk, or the cores were busy with other work",
                        p.yield_every_us,
                        fmt_num(y.p99_ms),
                        fmt_num(i.p99_ms)
                    )
                }));
            }
            let off: Vec<&HeartbeatRow> = self.rows.iter().filter(|r| r.strategy.off_the_workers()).collect();
            let fmt = |rs: &[&HeartbeatRow]| {
                rs.iter()
                    .map(|r| format!("{} {} ms", r.strategy.label(), fmt_num(r.p99_ms)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (near, far): (Vec<&HeartbeatRow>, Vec<&HeartbeatRow>) =
                off.into_iter().partition(|r| r.p99_ms < 0.5 * i.p99_ms);
            if !near.is_empty() {
                out.push(Finding::clear(format!(
                    "moving the work off the workers kept the heartbeat near its tick (p99: {}): the workers stay \
                     free to poll it, and what is left is the OS sharing {} cores among the spinning threads",
                    fmt(&near),
                    crate::lab::machine::usable_cpus().len()
                )));
            }
            if !far.is_empty() && p.chunk_ms <= 2 * BEAT_MS {
                out.push(Finding::clear(format!(
                    "off the workers, {} was not clearly below inline's {} ms — but inline was late by only {} ms \
                     at p99 with {} ms chunks, a few of the timer's {} ms ticks: there was little starvation to \
                     remove, and a short CPU burst can stay inline",
                    fmt(&far),
                    fmt_num(i.p99_ms),
                    fmt_num(i.p99_ms),
                    p.chunk_ms,
                    BEAT_MS
                )));
            } else if !far.is_empty() {
                let cores = crate::lab::machine::usable_cpus().len().max(1);
                out.push(Finding::unclear(format!(
                    "off the workers, {} was not clearly below inline's {} ms: {}",
                    fmt(&far),
                    fmt_num(i.p99_ms),
                    if p.workers >= cores {
                        format!(
                            "with {} spinning thread(s) on {} core(s) the OS makes the heartbeat's worker wait for a \
                             core too",
                            p.workers, cores
                        )
                    } else {
                        format!(
                            "{} spinning thread(s) leave cores free on this {}-core machine, so look at the load line \
                             (another program may have taken them) — and block_in_place hands its worker to another \
                             thread at every chunk, a thread wake-up the heartbeat may wait for",
                            p.workers, cores
                        )
                    }
                )));
            }
            if i.p50_ms > 1.2 * chunk {
                out.push(Finding::note(format!(
                    "inline, the median beat waited {} ms, more than one {} ms chunk. A likely cause: the lane's yield_now between \
                     chunks puts it back in the run queue before the timer's wake-up of the heartbeat arrives, so \
                     the heartbeat often waits for the next chunk as well",
                    fmt_num(i.p50_ms),
                    p.chunk_ms
                )));
            }
        }
        out.push(Finding::note(format!(
            "block_in_place needs a multi-thread runtime (it panics on a current-thread one) and blocks the task \
             itself: the other tasks move to a new worker. spawn_blocking's pool is capped at {} thread(s) here \
             and rayon's pool has as many — the work never takes more threads than that",
            p.workers
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut bars = Figure::bars(
            "How late a 1 ms heartbeat woke while CPU work ran",
            "where the CPU work ran",
            "lateness (ms, log scale)",
        )
        .log_y();
        for r in &self.rows {
            let label = r.strategy.label();
            bars = bars.bar(label, "p50", r.p50_ms.max(1e-3), None);
            bars = bars.bar(label, "p99", r.p99_ms.max(1e-3), None);
            bars = bars.bar(label, "max", r.max_ms.max(1e-3), None);
        }
        let bars = bars.note(format!(
            "Multi-thread runtime, {} worker(s), {} lanes of CPU work: {} chunks of {} ms in all.",
            p.workers, p.workers, p.chunks, p.chunk_ms
        ));
        let mut lines =
            Figure::lines("The heartbeat's lateness over time", "time since the work started (ms)", "lateness (ms)")
                .linear_x()
                .linear_y();
        for r in &self.rows {
            // At most ~200 points: the worst beat of each bucket, so spikes stay visible.
            let every = r.beats.len().div_ceil(200).max(1);
            let pts = r
                .beats
                .chunks(every)
                .map(|c| {
                    let worst = c.iter().copied().fold((c[0].0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
                    Point::new(worst.0, worst.1)
                })
                .collect();
            lines = lines.series(Series::new(r.strategy.label(), Style::Measured, pts));
        }
        let lines = lines.note(format!("A beat is due every {BEAT_MS} ms; a chunk spins {} ms.", p.chunk_ms));
        vec![mark_busy(bars, &self.load), mark_busy(lines, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Heartbeat lateness per strategy",
            &["CPU work runs", "beats", "missed", "p50 ms", "p99 ms", "max ms", "work took ms"],
        );
        for r in &self.rows {
            t.row(vec![
                r.strategy.label().to_string(),
                r.beats.len().to_string(),
                r.missed.to_string(),
                fmt_num(r.p50_ms),
                fmt_num(r.p99_ms),
                fmt_num(r.max_ms),
                fmt_num(r.work_ms),
            ]);
        }
        t.note(format!(
            "Multi-thread runtime with {} worker(s); {} chunks × {} ms of spinning over {} lanes; yield every {} µs.",
            self.params.workers,
            self.params.chunks,
            self.params.chunk_ms,
            self.params.workers,
            self.params.yield_every_us
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "heartbeat",
        super::NOTEBOOK,
        "a 1 ms heartbeat while CPU work runs inline, with yield_now, spawn_blocking, on rayon, in block_in_place",
        heartbeat,
    )]
}

crate::impl_params!(Heartbeat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_refuses_bad_parameters() {
        assert!(heartbeat(&Heartbeat { workers: 0, ..Default::default() }).is_err());
        let e = Heartbeat { chunk_ms: 500, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=100"), "{e}");
        assert!(Heartbeat { yield_every_us: 1, ..Default::default() }.validate().is_err());
        assert!(Heartbeat::default().validate().is_ok());
        assert!(Heartbeat::default().estimate() < Duration::from_secs(3));
    }

    #[test]
    fn inline_work_starves_a_one_worker_heartbeat() {
        // One worker, 20 ms chunks: inline, every beat in a chunk waits for its end.
        let r = heartbeat(&Heartbeat { workers: 1, chunks: 6, chunk_ms: 20, yield_every_us: 200 }).unwrap();
        assert_eq!(r.rows.len(), 5);
        let inline = r.row(CpuStrategy::Inline).unwrap();
        // The only worker spins for 20 ms at a time: the beats due meanwhile cannot run,
        // however busy the machine is (a count, not a timing).
        // (Half of what a quiet machine gives: the spin is calibrated, and the calibration
        // may have run on a busier machine than the spin.)
        assert!(inline.missed >= 6 * 5, "missed {} beats", inline.missed);
        assert!(inline.max_ms >= 5.0, "{}", inline.max_ms);
        for row in &r.rows {
            assert!(!row.beats.is_empty(), "{:?}", row.strategy);
            assert!(row.work_ms > 0.0, "{:?}", row.strategy);
        }
        assert!(r.findings().len() >= 4);
        assert!(r.findings()[0].text.contains("starvation"), "{:?}", r.findings()[0]);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.table().to_string().contains("p99 ms"));
    }
}
