//! Why async: many units that *wait* (a sleep, a TCP echo on loopback) done with one OS
//! thread each vs one tokio task each — wall time and the memory each waiting unit costs —
//! and the same comparison for units that *compute*, where a task is no cheaper than a
//! thread's share of a core and async gains nothing.

mod echo;
mod memory;
mod units;

pub use memory::UnitMemory;

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::{compare, group};
use crate::lab::limits::{Limits, check_threads};
use crate::lab::noise::mark_busy;
use crate::lab::rayon_pool::JoinedPool;
use crate::lab::rt::Rt;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style,
    Table, check_list, check_range, cores, fmt_num,
};
use echo::EchoServer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use units::Arrivals;

/// Units that sleep.
pub const SLEEP: &str = "sleep";
/// Units that send a request to a TCP echo server on 127.0.0.1 and wait for the answer.
pub const ECHO: &str = "TCP echo";
/// Units that compute.
pub const COMPUTE: &str = "CPU work";

/// One OS thread per unit (`std::thread`, default stack size).
pub const THREADS: &str = "OS threads";
/// One tokio task per unit on a multi-thread runtime with `cores` workers.
pub const TASKS: &str = "tokio tasks";
/// Computing units as a `par_iter` on a rayon pool of `cores` threads.
pub const RAYON: &str = "rayon";

/// Most OS threads one point may start at once.
pub const THREADS_MAX: usize = 10_000;
/// Most tokio tasks one point may start at once.
pub const TASKS_MAX: usize = 100_000;
/// Most computing units (each an OS thread in the thread way).
pub const COMPUTE_MAX: usize = 1024;
/// Memory is measured from this many units up: below it, page-sized steps and glibc's
/// cache of freed thread stacks hide a unit's cost.
pub const MEMORY_FROM: usize = 100;

/// Estimated costs for the time budget (deliberately high: a busy 2-core VM).
const THREAD_S: f64 = 150e-6;
const TASK_S: f64 = 3e-6;
const CONNECT_S: f64 = 150e-6;

/// Parameters of [`why_async`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhyAsync {
    /// Units for the sleeps on OS threads (one thread each): at most 8 counts, each
    /// 1..=10 000 and within this machine's thread limit.
    pub threads: Vec<usize>,
    /// Units for the sleeps on tokio tasks: at most 8 counts, each 1..=100 000.
    pub tasks: Vec<usize>,
    /// Units for the TCP echo, done both ways: at most 8 counts, each 1..=10 000, within the
    /// thread limit and `RLIMIT_NOFILE` (a connection takes 2 file descriptors).
    pub echo: Vec<usize>,
    /// How long each unit waits, in ms: the sleep, or the echo server's delay before it
    /// answers: 1..=10 000.
    pub wait_ms: u64,
    /// Units for the CPU-bound comparison (threads, tasks, rayon): at most 8 counts, each 1..=1024.
    pub compute: Vec<usize>,
    /// CPU time each computing unit takes, in µs: 10..=100 000.
    pub work_us: u64,
    /// Worker threads of the tokio runtime (every task way) and of the rayon pool: 1..=512.
    pub cores: usize,
    /// Timed samples per point (after one warm-up): 1..=15.
    pub samples: usize,
}

impl Default for WhyAsync {
    fn default() -> Self {
        WhyAsync {
            threads: powers_of_ten(THREADS_MAX.min(thread_room())),
            tasks: powers_of_ten(TASKS_MAX),
            echo: default_echo(),
            wait_ms: 50,
            compute: vec![1, 2, 8, 64],
            work_us: 1_000,
            cores: cores(),
            samples: 3,
        }
    }
}

/// 1, 10, 100, … up to `max`.
fn powers_of_ten(max: usize) -> Vec<usize> {
    std::iter::successors(Some(1usize), |n| n.checked_mul(10)).take_while(|n| *n <= max).collect()
}

/// Threads this process may start at once on this machine.
fn thread_room() -> usize {
    Limits::current().thread_headroom().0
}

/// 1, 10, 100, 1000 and 2 000 connections, as far as this machine's thread and
/// descriptor limits allow.
fn default_echo() -> Vec<usize> {
    let cap = echo_capacity().0.min(thread_room()).min(THREADS_MAX);
    let mut v = powers_of_ten(cap.min(1000));
    if cap >= 2_000 {
        v.push(2_000);
    }
    v
}

/// File descriptors open in this process now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count())
}

/// How many echo connections this process can hold at once (2 descriptors each: the
/// client's socket and the server's), and the limit that decides it.
pub fn echo_capacity() -> (usize, String) {
    let hard = Limits::current().nofile.1;
    let open = open_fds();
    let cap = hard.saturating_sub(open + echo::FD_MARGIN) / 2;
    (cap, format!("RLIMIT_NOFILE hard limit = {hard}, {open} already open, 2 per connection"))
}

impl WhyAsync {
    /// Checks every parameter, and the machine's thread and descriptor limits; nothing
    /// has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("threads", &self.threads, 8, 1..=THREADS_MAX)?;
        check_threads("threads", max(&self.threads))?;
        check_list("tasks", &self.tasks, 8, 1..=TASKS_MAX)?;
        check_list("echo", &self.echo, 8, 1..=THREADS_MAX)?;
        check_threads("echo", max(&self.echo))?;
        let (cap, why) = echo_capacity();
        if max(&self.echo) > cap {
            return Err(ParamError::new(
                "echo",
                format!("a list of counts of at most {cap} connections on this machine ({why})"),
                &self.echo,
            ));
        }
        check_range("wait_ms", self.wait_ms, 1..=10_000)?;
        check_list("compute", &self.compute, 8, 1..=COMPUTE_MAX)?;
        check_threads("compute", max(&self.compute))?;
        check_range("work_us", self.work_us, 10..=100_000)?;
        check_range("cores", self.cores, 1..=512)?;
        check_range("samples", self.samples, 1..=15)?;
        check_estimate("threads, tasks, echo and compute × wait_ms, work_us and samples", self.estimate())
    }

    /// The run time this should take on a slow machine, from the costs of a thread,
    /// a task and a loopback connection.
    pub fn estimate(&self) -> Duration {
        let runs = (self.samples + 1) as f64;
        let wait = self.wait_ms as f64 / 1e3;
        let work = self.work_us as f64 / 1e6;
        let held = |n: usize, per: f64| if n >= MEMORY_FROM { n as f64 * per + 0.05 } else { 0.0 };
        let mut s = 0.0;
        for &n in &self.threads {
            s += runs * (wait + n as f64 * THREAD_S) + held(n, THREAD_S);
        }
        for &n in &self.tasks {
            s += runs * (wait + n as f64 * TASK_S) + held(n, TASK_S);
        }
        for &n in &self.echo {
            let per = THREAD_S + TASK_S + 2.0 * CONNECT_S;
            s += runs * (2.0 * wait + n as f64 * per) + held(n, per);
        }
        let c = self.cores.min(cores()).max(1) as f64;
        for &n in &self.compute {
            s += runs * (3.0 * (n as f64 / c).max(1.0) * work + n as f64 * (THREAD_S + TASK_S));
        }
        Duration::from_secs_f64(s + 0.5)
    }
}

fn max(v: &[usize]) -> usize {
    v.iter().copied().max().unwrap_or(0)
}

/// One way of running N units of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhyAsyncRow {
    /// [`SLEEP`], [`ECHO`] or [`COMPUTE`].
    pub kind: String,
    /// [`THREADS`], [`TASKS`] or [`RAYON`].
    pub way: String,
    /// Units at once.
    pub n: usize,
    /// Wall time from the first unit's start to the last one's end, in ms, over the samples.
    pub millis: Stats,
    /// The least time possible, in ms: the wait itself, or for computing
    /// `max(1, n / cores) × work` on the cores used.
    pub bound_ms: f64,
    /// What the units added to memory while all of them waited (waiting kinds, from
    /// [`MEMORY_FROM`] units up; one run).
    pub memory: Option<UnitMemory>,
}

impl WhyAsyncRow {
    /// Time per unit beyond the bound, in µs: creating, scheduling and ending one unit.
    pub fn overhead_us(&self) -> f64 {
        ((self.millis.median - self.bound_ms) * 1e3 / self.n as f64).max(0.0)
    }
}

/// Result of [`why_async`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhyAsyncReport {
    pub params: WhyAsync,
    pub rows: Vec<WhyAsyncRow>,
    /// Cores the computing units could use: `cores`, at most the machine's.
    pub cores_used: usize,
    /// Threads this process could start at once when the run began, and the limit that decides it.
    pub thread_limit: (usize, String),
    /// The soft `RLIMIT_NOFILE` during the run (raised to the hard limit where allowed).
    pub nofile: usize,
    /// How busy the machine was while this ran.
    pub load: Load,
}

/// Runs N units at once for each count and each way, and reads the memory they take while
/// all of them wait:
///
/// 1. **sleep**: each unit sleeps `wait_ms` — `std::thread::sleep` on its own OS thread,
///    or `tokio::time::sleep(..).await` in its own task;
/// 2. **TCP echo**: each unit connects to an echo server on 127.0.0.1 that this run
///    starts (and always stops and joins before returning), sends 8 bytes and waits for
///    them to come back; the server answers `wait_ms` after reading them, so the client
///    waits on its socket (a blocking `read` on a thread, an `.await` in a task);
/// 3. **CPU work**: each unit computes `work_us` — on its own thread, in a task on
///    `cores` workers, or as a rayon `par_iter` on `cores` threads.
///
/// Wall time runs from the first unit's start to the last one's end (thread creation
/// included: it is part of what a thread per unit costs). Memory comes from a separate
/// run per point (counts of [`MEMORY_FROM`] and up) in which every unit stays waiting
/// until all have arrived; `VmRSS` is read then and compared with a reading before the
/// units started.
pub fn why_async(p: &WhyAsync) -> Result<WhyAsyncReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let thread_limit = Limits::current().thread_headroom();
    let nofile = Limits::raise_nofile();
    let steps = p.threads.len() + p.tasks.len() + 2 * p.echo.len() + 3 * p.compute.len();
    let mut progress = Progress::new("why-async", steps);
    let wait = Duration::from_millis(p.wait_ms);
    let rt = Rt::multi(p.cores).timeout(Duration::from_secs(240)).grace(Duration::from_secs(2));
    let mut rows = Vec::new();
    let bound = p.wait_ms as f64;

    for &n in &p.threads {
        let sampling = sampled(p.samples, n);
        let what = || format!("sleeping on {n} OS threads");
        let secs = sampling
            .try_collect(|| {
                units::timed_threads(n, |_| {
                    std::thread::sleep(wait);
                    Ok(())
                })
            })
            .map_err(|e| RunError::new(what(), e))?;
        let memory =
            if n >= MEMORY_FROM { Some(held_sleeping_threads(n).map_err(|e| RunError::new(what(), e))?) } else { None };
        rows.push(row(SLEEP, THREADS, n, &secs, bound, memory));
        progress.step()?;
    }

    for &n in &p.tasks {
        let sampling = sampled(p.samples, n);
        let what = || format!("sleeping in {n} tokio tasks");
        let (secs, memory) = rt
            .run(move || async move {
                let mut secs = Vec::new();
                for k in 0..sampling.warmup + sampling.samples {
                    let d = units::timed_tasks(n, |_| async move {
                        tokio::time::sleep(wait).await;
                        Ok(())
                    })
                    .await?;
                    if k >= sampling.warmup {
                        secs.push(d.as_secs_f64());
                    }
                }
                let memory = if n >= MEMORY_FROM { Some(held_sleeping_tasks(n).await?) } else { None };
                Ok::<_, String>((secs, memory))
            })
            .map_err(|e| RunError::new(what(), e))?
            .map_err(|e| RunError::new(what(), e))?;
        rows.push(row(SLEEP, TASKS, n, &secs, bound, memory));
        progress.step()?;
    }

    if !p.echo.is_empty() {
        let most = max(&p.echo);
        let needed = 2 * most + open_fds() + echo::FD_MARGIN;
        if nofile < needed {
            return Err(RunError::new(
                format!("TCP echo with {most} connections"),
                format!("it needs {needed} file descriptors and RLIMIT_NOFILE allows {nofile}"),
            )
            .into());
        }
        let limit = p.estimate() * 4 + Duration::from_secs(120);
        let server = EchoServer::start(echo::listeners_for(most), wait, limit)?;
        echo_rows(p, &server, &rt, &mut rows, &mut progress)?;
        server.stop()?;
    }

    let used = p.cores.min(cores()).max(1);
    if !p.compute.is_empty() {
        let iters = (iters_per_ms() * p.work_us / 1000).max(1);
        let pool = JoinedPool::new(p.cores).map_err(|e| RunError::new("building the rayon pool", e))?;
        let work_ms = p.work_us as f64 / 1e3;
        for &n in &p.compute {
            let sampling = sampled(p.samples, n);
            let bound = (n as f64 / used as f64).max(1.0) * work_ms;
            let secs = sampling
                .try_collect(|| {
                    units::timed_threads(n, |i| {
                        std::hint::black_box(busy(iters, i as u64));
                        Ok(())
                    })
                })
                .map_err(|e| RunError::new(format!("computing on {n} OS threads"), e))?;
            rows.push(row(COMPUTE, THREADS, n, &secs, bound, None));
            progress.step()?;
            let secs = rt
                .run(move || async move {
                    let mut secs = Vec::new();
                    for k in 0..sampling.warmup + sampling.samples {
                        let d = units::timed_tasks(n, |i| async move {
                            std::hint::black_box(busy(iters, i as u64));
                            Ok(())
                        })
                        .await?;
                        if k >= sampling.warmup {
                            secs.push(d.as_secs_f64());
                        }
                    }
                    Ok::<_, String>(secs)
                })
                .map_err(|e| RunError::new(format!("computing in {n} tokio tasks"), e))?
                .map_err(|e| RunError::new(format!("computing in {n} tokio tasks"), e))?;
            rows.push(row(COMPUTE, TASKS, n, &secs, bound, None));
            progress.step()?;
            let secs = sampling.collect(|| {
                let t = std::time::Instant::now();
                let x =
                    pool.install(|| (0..n).into_par_iter().map(|i| busy(iters, i as u64)).reduce(|| 0, |a, b| a ^ b));
                std::hint::black_box(x);
                t.elapsed()
            });
            rows.push(row(COMPUTE, RAYON, n, &secs, bound, None));
            progress.step()?;
        }
        drop(pool);
    }

    Ok(WhyAsyncReport { params: p.clone(), rows, cores_used: used, thread_limit, nofile, load: probe.finish() })
}

/// `samples` timed runs, after one warm-up run below 1 000 units (from there on every run
/// starts its threads or tasks afresh and lasts long enough that a warm-up adds only time).
fn sampled(samples: usize, n: usize) -> Sampling {
    Sampling { warmup: usize::from(n < 1000), samples }
}

fn row(kind: &str, way: &str, n: usize, secs: &[f64], bound_ms: f64, memory: Option<UnitMemory>) -> WhyAsyncRow {
    WhyAsyncRow { kind: kind.into(), way: way.into(), n, millis: Stats::of(secs).scaled(1e3), bound_ms, memory }
}

/// `n` threads each parked in a timed wait until all have arrived; their memory.
fn held_sleeping_threads(n: usize) -> Result<UnitMemory, String> {
    let arrived = Arrivals::default();
    let released = AtomicBool::new(false);
    units::held_threads(
        n,
        || arrived.count(),
        || released.store(true, Ordering::Release),
        |_| {
            arrived.arrive();
            while !released.load(Ordering::Acquire) {
                std::thread::park_timeout(Duration::from_secs(1));
            }
            Ok(())
        },
    )
}

/// `n` tasks each in a long `tokio::time::sleep` until all have arrived (then cancelled); their memory.
async fn held_sleeping_tasks(n: usize) -> Result<UnitMemory, String> {
    let arrived = Arc::new(Arrivals::default());
    let counter = Arc::clone(&arrived);
    units::held_tasks(
        n,
        move || counter.count(),
        || {},
        true,
        move |_| {
            let arrived = Arc::clone(&arrived);
            async move {
                arrived.arrive();
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(())
            }
        },
    )
    .await
}

/// The TCP echo rows: each count on threads, then on tasks, timed and held.
fn echo_rows(
    p: &WhyAsync,
    server: &EchoServer,
    rt: &Rt,
    rows: &mut Vec<WhyAsyncRow>,
    progress: &mut Progress,
) -> Result<(), LabError> {
    let wait = Duration::from_millis(p.wait_ms);
    // Long enough for a held run (at most units::ARRIVE_TIMEOUT) and then some.
    let io_timeout = wait + units::ARRIVE_TIMEOUT + Duration::from_secs(30);
    let ctl = &server.ctl;
    let served = |what: &str| match ctl.errors() {
        0 => Ok(()),
        k => Err(format!("the server failed {k} connection(s) during {what}")),
    };
    for &n in &p.echo {
        let sampling = sampled(p.samples, n);
        let what = || format!("TCP echo with {n} OS threads");
        let secs = sampling
            .try_collect(|| {
                ctl.arm(false);
                let d = units::timed_threads(n, |i| echo::echo_blocking(server.addr(i), i as u64, io_timeout))?;
                served("a timed run").map(|_| d)
            })
            .map_err(|e| RunError::new(what(), e))?;
        let memory = if n >= MEMORY_FROM {
            ctl.arm(true);
            let m = units::held_threads(
                n,
                || ctl.requests(),
                || ctl.release(),
                |i| echo::echo_blocking(server.addr(i), i as u64, io_timeout),
            );
            ctl.arm(false);
            Some(m.map_err(|e| RunError::new(what(), e))?)
        } else {
            None
        };
        rows.push(row(ECHO, THREADS, n, &secs, p.wait_ms as f64, memory));
        progress.step()?;

        let what = || format!("TCP echo with {n} tokio tasks");
        let (addrs, ctl2) = (server.addrs.clone(), Arc::clone(ctl));
        let (secs, memory) = rt
            .run(move || async move {
                let addrs = Arc::new(addrs);
                let unit = |i: usize| {
                    let addr = addrs[i % addrs.len()];
                    echo::echo_async(addr, i as u64, io_timeout)
                };
                let mut secs = Vec::new();
                for k in 0..sampling.warmup + sampling.samples {
                    ctl2.arm(false);
                    let d = units::timed_tasks(n, unit).await?;
                    if ctl2.errors() > 0 {
                        return Err(format!("the server failed {} connection(s)", ctl2.errors()));
                    }
                    if k >= sampling.warmup {
                        secs.push(d.as_secs_f64());
                    }
                }
                let memory = if n >= MEMORY_FROM {
                    ctl2.arm(true);
                    let m = units::held_tasks(n, || ctl2.requests(), || ctl2.release(), false, unit).await;
                    ctl2.arm(false);
                    Some(m?)
                } else {
                    None
                };
                Ok((secs, memory))
            })
            .map_err(|e| RunError::new(what(), e))?
            .map_err(|e| RunError::new(what(), e))?;
        rows.push(row(ECHO, TASKS, n, &secs, p.wait_ms as f64, memory));
        progress.step()?;
    }
    Ok(())
}

impl WhyAsyncReport {
    pub fn row(&self, kind: &str, way: &str, n: usize) -> Option<&WhyAsyncRow> {
        self.rows.iter().find(|r| r.kind == kind && r.way == way && r.n == n)
    }

    /// The largest count run both ways for `kind` (with memory measured, if `memory`).
    fn largest_common(&self, kind: &str, a: &str, b: &str, memory: bool) -> Option<usize> {
        self.rows
            .iter()
            .filter(|r| r.kind == kind && r.way == a && (!memory || r.memory.is_some()))
            .map(|r| r.n)
            .filter(|&n| self.row(kind, b, n).is_some_and(|r| !memory || r.memory.is_some()))
            .max()
    }

    /// Threads' median time / tasks' median time at the largest count run both ways.
    pub fn speedup(&self, kind: &str) -> Option<(usize, f64)> {
        let n = self.largest_common(kind, THREADS, TASKS, false)?;
        let (t, k) = (self.row(kind, THREADS, n)?, self.row(kind, TASKS, n)?);
        Some((n, t.millis.median / k.millis.median))
    }

    /// RSS per OS thread / RSS per task at the largest count measured both ways.
    pub fn memory_ratio(&self, kind: &str) -> Option<(usize, f64)> {
        let n = self.largest_common(kind, THREADS, TASKS, true)?;
        let t = self.row(kind, THREADS, n)?.memory?;
        let k = self.row(kind, TASKS, n)?.memory?;
        Some((n, t.rss_kib / k.rss_kib.max(0.001)))
    }

    /// The largest count of `way` whose memory was measured, and that memory.
    fn largest_memory(&self, kind: &str, way: &str) -> Option<(usize, UnitMemory)> {
        self.rows
            .iter()
            .filter(|r| r.kind == kind && r.way == way)
            .filter_map(|r| Some((r.n, r.memory?)))
            .max_by_key(|(n, _)| *n)
    }

    fn memory_finding(&self, kind: &str) -> Option<Finding> {
        // The same count both ways where there is one; else each way's largest.
        let ((nt, t), (nk, k)) = match self.memory_ratio(kind) {
            Some((n, _)) => ((n, self.row(kind, THREADS, n)?.memory?), (n, self.row(kind, TASKS, n)?.memory?)),
            None => (self.largest_memory(kind, THREADS)?, self.largest_memory(kind, TASKS)?),
        };
        let ratio = t.rss_kib / k.rss_kib.max(0.001);
        let waiting = if kind == SLEEP {
            "asleep at once".to_string()
        } else {
            "waiting at once for their TCP echo (each with the server's side of its connection)".to_string()
        };
        let what = if nt == nk {
            format!("{} units {waiting}", group(nt as u64))
        } else {
            format!("{} OS threads and {} tokio tasks {waiting}", group(nt as u64), group(nk as u64))
        };
        let cmp = if ratio >= 1.1 {
            format!("{}× less", fmt_num(ratio))
        } else if ratio <= 0.9 {
            format!("{}× more", fmt_num(1.0 / ratio))
        } else {
            "about the same".into()
        };
        let mut text = format!(
            "{what}: {} KiB of RSS per tokio task vs {} KiB per OS thread ({cmp}; {} MiB vs {} MiB in all)",
            fmt_num(k.rss_kib),
            fmt_num(t.rss_kib),
            fmt_num(k.rss_total_mib),
            fmt_num(t.rss_total_mib)
        );
        if t.kernel_kib > 1.0 {
            text += &format!(
                "; each thread also took about {} KiB of kernel memory that RSS does not show (its kernel stack and \
                 page tables)",
                fmt_num(t.kernel_kib)
            );
        }
        Some(if ratio >= 2.0 || ratio <= 0.5 { Finding::clear(text) } else { Finding::note(text) })
    }

    fn time_finding(&self, kind: &str) -> Option<Finding> {
        let n = self.largest_common(kind, THREADS, TASKS, false)?;
        let (t, k) = (self.row(kind, THREADS, n)?, self.row(kind, TASKS, n)?);
        let what = if kind == SLEEP { "sleeps" } else { "TCP echoes" };
        let mut f = compare(
            &format!("{} {what} of {} ms on tokio tasks", group(n as u64), self.params.wait_ms),
            &k.millis,
            "on OS threads",
            &t.millis,
            " ms",
        );
        let spent = if kind == SLEEP {
            "starting, scheduling and ending it"
        } else {
            "starting it, connecting, and the server's work for its connection, which shares the same cores"
        };
        f.text += &format!(
            " — beyond the wait itself, {} µs per thread vs {} µs per task ({spent})",
            fmt_num(t.overhead_us()),
            fmt_num(k.overhead_us())
        );
        Some(f)
    }

    fn compute_finding(&self) -> Option<Finding> {
        let n = self.rows.iter().filter(|r| r.kind == COMPUTE && r.way == THREADS).map(|r| r.n).max()?;
        let t = self.row(COMPUTE, THREADS, n)?;
        let others: Vec<&WhyAsyncRow> = [TASKS, RAYON].iter().filter_map(|w| self.row(COMPUTE, w, n)).collect();
        let parts: Vec<String> = others
            .iter()
            .map(|r| {
                format!(
                    "{} {} ms ({}× the threads' time)",
                    r.way,
                    fmt_num(r.millis.median),
                    fmt_num(r.millis.median / t.millis.median)
                )
            })
            .collect();
        let close = others.iter().all(|r| (r.millis.median / t.millis.median - 1.0).abs() < 0.15);
        let apart = others.iter().any(|r| crate::lab::findings::separated(&r.millis, &t.millis));
        let threads_fastest = others.iter().all(|r| r.millis.median > 1.15 * t.millis.median);
        let verdict = if close {
            "within 15 % of each other: with nothing to wait for, tasks gain nothing over threads".to_string()
        } else if threads_fastest && self.load.busy() && n > self.params.cores {
            format!(
                "the threads were faster, and not from anything async or not: other processes were busy, and {n} \
                 runnable threads win a larger share of the CPUs from them than {} workers do",
                self.params.cores
            )
        } else {
            "more than 15 % apart".to_string()
        };
        let text = format!(
            "{} computing units of {} ms on {} cores: OS threads {} ms, {} — {verdict}; the least possible is {} ms",
            group(n as u64),
            fmt_num(self.params.work_us as f64 / 1e3),
            self.cores_used,
            fmt_num(t.millis.median),
            parts.join(", "),
            fmt_num(t.bound_ms)
        );
        Some(if close || apart { Finding::clear(text) } else { Finding::unclear(text) })
    }

    fn kinds(&self) -> Vec<&'static str> {
        [SLEEP, ECHO, COMPUTE].into_iter().filter(|k| self.rows.iter().any(|r| r.kind == *k)).collect()
    }

    fn points(&self, kind: &str, way: &str, y: impl Fn(&WhyAsyncRow) -> Option<Point>) -> Vec<Point> {
        self.rows.iter().filter(|r| r.kind == kind && r.way == way).filter_map(y).collect()
    }

    fn panel_title(&self, kind: &str) -> String {
        match kind {
            SLEEP => format!("sleep {} ms", self.params.wait_ms),
            ECHO => format!("TCP echo, {} ms", self.params.wait_ms),
            _ => format!("compute {} ms", fmt_num(self.params.work_us as f64 / 1e3)),
        }
    }
}

impl Report for WhyAsyncReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let speedups: Vec<String> = [(SLEEP, "sleeps"), (ECHO, "TCP echoes"), (COMPUTE, "CPU work")]
            .iter()
            .filter_map(|(k, name)| {
                self.speedup(k).map(|(n, s)| format!("{}× for {name} (N = {})", fmt_num(s), group(n as u64)))
            })
            .collect();
        if !speedups.is_empty() {
            out.push(Finding::note(format!(
                "OS threads' time ÷ tokio tasks' time at the largest N: {}",
                speedups.join(", ")
            )));
        }
        out.extend(self.memory_finding(SLEEP));
        out.extend(self.memory_finding(ECHO));
        out.extend(self.time_finding(SLEEP));
        out.extend(self.time_finding(ECHO));
        out.extend(self.compute_finding());
        if !self.rows.iter().any(|r| r.memory.is_some()) {
            out.push(Finding::note(format!(
                "Memory was not measured: it needs counts of at least {MEMORY_FROM} units"
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut f = Figure::lines(
            "N units that wait vs N units that compute: one OS thread each, or one tokio task each",
            "units at once, N (log scale)",
            "wall time from first start to last end (ms, log scale); band: p25–p75",
        )
        .log_x()
        .log_y();
        for kind in self.kinds() {
            f = f.panel(&self.panel_title(kind));
            let ways: &[&str] = if kind == COMPUTE { &[THREADS, TASKS, RAYON] } else { &[THREADS, TASKS] };
            for way in ways {
                let pts = self.points(kind, way, |r| Some(Point::quartiles(r.n as f64, &r.millis)));
                f = f.series(Series::new(*way, Style::Measured, pts));
            }
            let (name, pts) = if kind == COMPUTE {
                (
                    format!("least possible on {} cores", self.cores_used),
                    self.points(kind, THREADS, |r| Some(Point::new(r.n as f64, r.bound_ms))),
                )
            } else {
                let ns: Vec<f64> = self.rows.iter().filter(|r| r.kind == kind).map(|r| r.n as f64).collect();
                let (lo, hi) =
                    (ns.iter().copied().fold(f64::INFINITY, f64::min), ns.iter().copied().fold(0.0, f64::max));
                (
                    format!("the wait itself ({} ms)", p.wait_ms),
                    vec![Point::new(lo, p.wait_ms as f64), Point::new(hi, p.wait_ms as f64)],
                )
            };
            f = f.series(Series::new(name, Style::Ideal, pts));
        }
        let caption = format!("{} · tokio and rayon with {} workers", f.caption, p.cores);
        let main = mark_busy(f.caption(caption), &self.load);

        let mut m = Figure::lines(
            "Memory per waiting unit: an OS thread vs a tokio task",
            "units waiting at once, N (log scale)",
            "memory added per unit (KiB, log scale), one run with all N waiting",
        )
        .log_x()
        .log_y();
        for kind in [SLEEP, ECHO] {
            if !self.rows.iter().any(|r| r.kind == kind && r.memory.is_some()) {
                continue;
            }
            m = m.panel(if kind == SLEEP { "sleep" } else { "TCP echo (client + server side)" });
            for way in [THREADS, TASKS] {
                let pts = self.points(kind, way, |r| r.memory.map(|mem| Point::new(r.n as f64, mem.rss_kib)));
                m = m.series(Series::new(format!("{way}: RSS"), Style::Measured, pts));
            }
            let pts = self.points(kind, THREADS, |r| {
                r.memory.filter(|mem| mem.kernel_kib > 0.0).map(|mem| Point::new(r.n as f64, mem.kernel_kib))
            });
            m = m.series(Series::new("OS threads: kernel stack + page tables", Style::Measured, pts));
        }
        m = m.note(format!(
            "RSS: growth of this process's VmRSS from before the units started to when all N were waiting, ÷ N. \
             Kernel: growth of VmPTE and of the machine-wide KernelStack ÷ N (other processes add noise). \
             Counts under {MEMORY_FROM} are not measured."
        ));
        vec![main, mark_busy(m, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "N units at once: OS threads vs tokio tasks (and rayon for computing)",
            &["units", "way", "N", "median ms", "p25–p75 ms", "least ms", "RSS KiB/unit", "kernel KiB/unit"],
        );
        for r in &self.rows {
            let (rss, kernel) = match r.memory {
                Some(m) => (fmt_num(m.rss_kib), fmt_num(m.kernel_kib)),
                None => ("–".into(), "–".into()),
            };
            t.row(vec![
                r.kind.clone(),
                r.way.clone(),
                group(r.n as u64),
                fmt_num(r.millis.median),
                r.millis.quartile_range(),
                fmt_num(r.bound_ms),
                rss,
                kernel,
            ]);
        }
        let p = &self.params;
        t.note(format!(
            "Each unit waits {} ms (sleep, or the echo server's delay) or computes {} µs; tokio runtime and rayon pool \
             with {} workers; {} samples per point (after a warm-up run below 1 000 units); memory from one run per point with all units \
             waiting (N ≥ {MEMORY_FROM}). Threads this process could start: {} ({}); RLIMIT_NOFILE: {}.",
            p.wait_ms,
            p.work_us,
            p.cores,
            p.samples,
            group(self.thread_limit.0 as u64),
            self.thread_limit.1,
            group(self.nofile as u64)
        ));
        t
    }
}

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "why-async",
        "04-async",
        "N units that wait (sleep, TCP echo) or compute, one OS thread vs one tokio task each: wall time and memory vs N",
        why_async,
    )]
}

crate::impl_params!(WhyAsync);

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> WhyAsync {
        WhyAsync {
            threads: vec![1, 200],
            tasks: vec![1, 200],
            echo: vec![2, 100],
            wait_ms: 20,
            compute: vec![1, 4],
            work_us: 500,
            cores: 2,
            samples: 1,
        }
    }

    #[test]
    fn bad_parameters_are_refused_before_anything_runs() {
        let bad = [
            WhyAsync { tasks: vec![0], ..quick() },
            WhyAsync { threads: vec![THREADS_MAX + 1], ..quick() },
            WhyAsync { tasks: vec![TASKS_MAX + 1], ..quick() },
            WhyAsync { wait_ms: 1_000_000_000, ..quick() },
            WhyAsync { echo: vec![], ..quick() },
            WhyAsync { compute: vec![COMPUTE_MAX + 1], ..quick() },
            WhyAsync { cores: 0, ..quick() },
        ];
        for p in bad {
            let t = std::time::Instant::now();
            assert!(matches!(why_async(&p), Err(LabError::Param(_))), "{p:?}");
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let e = WhyAsync { wait_ms: 1_000_000_000, ..quick() }.validate().unwrap_err();
        assert_eq!(e.to_string(), "wait_ms must be 1..=10000, got 1000000000");
        // Too much work in all: refused by the time budget, naming it.
        let e = WhyAsync { wait_ms: 10_000, samples: 15, ..quick() }.validate().unwrap_err();
        assert!(e.to_string().contains("estimated"), "{e}");
        assert!(WhyAsync::default().validate().is_ok(), "{:?}", WhyAsync::default().validate());
    }

    /// Tests of this module that open sockets, or count the open ones, take turns.
    static SOCKETS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_echo_count_is_checked_against_the_descriptor_limit() {
        // The quick run below opens hundreds of sockets; not while the capacity is read twice.
        let _sockets = SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
        let (cap, why) = echo_capacity();
        assert!(why.contains("RLIMIT_NOFILE"), "{why}");
        // The echo server's own tests may close a few sockets meanwhile: ask for 40
        // connections (80 descriptors) past the capacity.
        if cap + 40 <= THREADS_MAX {
            let e = WhyAsync { echo: vec![cap + 40], ..quick() }.validate().unwrap_err();
            assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
        }
        assert_eq!(powers_of_ten(10_000), vec![1, 10, 100, 1000, 10_000]);
    }

    #[test]
    fn a_quick_run_measures_every_way_and_says_what_it_shows() {
        let _sockets = SOCKETS.lock().unwrap_or_else(|e| e.into_inner());
        let r = why_async(&quick()).unwrap();
        // 2 sleep counts × 2 ways, 2 echo counts × 2 ways, 2 compute counts × 3 ways.
        assert_eq!(r.rows.len(), 4 + 4 + 6, "{:?}", r.rows);
        for row in &r.rows {
            assert!(row.millis.median > 0.0, "{row:?}");
            assert_eq!(row.memory.is_some(), row.kind != COMPUTE && row.n >= MEMORY_FROM, "{row:?}");
            if row.kind != COMPUTE {
                // Every wait takes at least the wait itself.
                assert!(row.millis.min >= 20.0, "{row:?}");
            }
        }
        // 200 sleeping threads touch at least a page of stack each: 200 × 4 KiB is
        // 0.8 MiB; half of that leaves room for other tests freeing memory meanwhile.
        let m = r.row(SLEEP, THREADS, 200).unwrap().memory.unwrap();
        assert!(m.rss_total_mib > 0.4, "{m:?}");
        let text: Vec<String> = r.findings().iter().map(|f| f.text.clone()).collect();
        assert!(text.iter().any(|t| t.contains("KiB of RSS per tokio task")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("computing units")), "{text:?}");
        let figs = r.figures();
        assert_eq!(figs.len(), 2);
        assert!(figs[0].to_svg().contains("<svg") && figs[0].errors.is_empty());
        assert!(figs[0].summary().contains("[compute 0.5 ms] rayon"), "{}", figs[0].summary());
        assert!(r.table().to_text().contains("TCP echo"));
    }
}
