//! `server-scaling`: the same line-echo protocol served by a thread per connection and by
//! tokio tasks, each holding 10 … thousands of connections at once. For each server and
//! connection count the experiment starts the server, opens all the connections (held
//! together), answers one request on each (so every connection's stack or task and
//! buffers are in use), reads the server's threads and the process's memory, runs a
//! closed loop over all of them, then shuts the server down with the clients still
//! connected (drain, then abort at a deadline) and checks that no thread or descriptor
//! is left behind.
//!
//! Memory per connection is the growth of the process's resident memory (`VmRSS`) from
//! before the connects to when every connection has answered once, divided by the count.
//! Both ends are in this process, so it includes the client's side (a tokio socket and a
//! 256-byte buffer: the same for both servers); the kernel's memory (socket buffers, a
//! thread's kernel stack and task struct) is not in `VmRSS`.
//!
//! The client's runtime runs on a descriptor table of its own ([`Rt::own_fd_table`]), so
//! its ends of the connections do not count against the server's `RLIMIT_NOFILE` room:
//! with a hard limit of 20 000, both servers can hold 10 000 connections in one process.
//! Where the kernel refuses that, both ends share the process's table (2 descriptors per
//! connection). The server is shut down from a thread on the process's table, never from
//! the client's (its descriptor numbers mean other files there).

use crate::experiments::case_study::load::{self, LoadResult, Tally};
use crate::experiments::case_study::server::{ServerHandle, ServerKind, ServerOpts, ShutdownReport, start_server};
use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rt::{self, Rt};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table,
    check_choices, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each connect and each round trip may take this long before it counts as an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests each connection sends at least, after its warm-up request.
pub const MIN_PER_CONN: usize = 20;
/// The shutdown's drain deadline.
const DRAIN: Duration = Duration::from_secs(1);

/// Parameters of [`server_scaling`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerScaling {
    /// Connections held open at once, one point each: up to 8 distinct values in
    /// 1..=10000, and at most what `RLIMIT_NOFILE` allows (see [`max_connections`]).
    pub connections: Vec<usize>,
    /// Requests per point, spread over its connections: 10..=200000. Each connection
    /// sends at least [`MIN_PER_CONN`], so a point with many connections sends more: a
    /// closed loop that is measured, not only its start-up burst.
    pub requests: usize,
    /// The servers to measure: `threads`, `tokio`.
    pub servers: Vec<ServerKind>,
    /// Worker threads of the tokio server: 1..=64.
    pub workers: usize,
    /// Stack of each connection thread of the thread server, KiB: 16..=1024.
    pub stack_kib: usize,
}

impl Default for ServerScaling {
    fn default() -> Self {
        ServerScaling {
            connections: vec![10, 100, 1000, 5000],
            requests: 10_000,
            servers: vec![ServerKind::Threads, ServerKind::Tokio],
            workers: 2,
            stack_kib: 64,
        }
    }
}

/// Room for connections: the server's table alone when the client gets a table of its
/// own, both ends in the process's table otherwise.
fn room() -> (usize, String) {
    load::connection_room_apart().unwrap_or_else(load::connection_room)
}

/// The most connections this process can hold at once here (10 000 at most), and the
/// limit that decides it: `RLIMIT_NOFILE`, counting 1 descriptor per connection in the
/// server's table when the client's runtime gets a table of its own, 2 otherwise.
pub fn max_connections() -> (usize, String) {
    let (room, why) = room();
    if room >= 10_000 {
        (10_000, format!("the experiment's own maximum; the descriptors would allow {room}: {why}"))
    } else {
        (room, why)
    }
}

impl ServerScaling {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("connections", &self.connections, 8, 1..=10_000)?;
        check_range("requests", self.requests, 10..=200_000)?;
        check_choices("servers", &self.servers)?;
        check_range("workers", self.workers, 1..=64)?;
        check_range("stack_kib", self.stack_kib, 16..=1024)?;
        let most = self.connections.iter().copied().max().unwrap_or(0);
        let (room, why) = room();
        if most > room {
            return Err(ParamError::new("connections", format!("each at most {room} on this machine ({why})"), most));
        }
        if self.servers.contains(&ServerKind::Threads) {
            // One thread per connection, the accept thread and the client's runtime.
            crate::lab::limits::check_threads("connections", most + 8)?;
        }
        check_estimate("connections × servers, requests", self.estimate())
    }

    /// Per point: starting and stopping the server, the connects and one round trip per
    /// connection, the requests (loopback round trips on a busy 2-core machine take
    /// about 50 µs of CPU between client and server), plus a thread start and join per
    /// connection for the thread server.
    pub fn estimate(&self) -> Duration {
        let mut us = 0u64;
        for &s in &self.servers {
            for &c in &self.connections {
                let c = c as u64;
                let requests = (self.requests as u64).max(c * MIN_PER_CONN as u64);
                us += 30_000 + c * 60 + requests * 50;
                if s == ServerKind::Threads {
                    us += c * 40;
                }
            }
        }
        Duration::from_micros(us)
    }
}

/// One server at one connection count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingRow {
    pub server: ServerKind,
    /// Connections asked for.
    pub connections: usize,
    /// Connections the server had open once every client had sent its first request.
    pub held: usize,
    /// The server's threads at that moment.
    pub server_threads: usize,
    /// Growth of the process's resident memory from before the connects to then, KiB.
    pub rss_growth_kib: f64,
    /// `rss_growth_kib` per connection held, in bytes.
    pub bytes_per_conn: f64,
    /// Connects and first round trips that failed, and the first such error.
    pub setup_errors: u64,
    pub setup_error: Option<String>,
    /// Time to open every connection and answer one request on each, ms.
    pub setup_ms: f64,
    /// The closed loop over the held connections.
    pub load: LoadResult,
    /// The shutdown, done with the clients still connected.
    pub shutdown: ShutdownReport,
    /// Threads and descriptors the process had more after the point than before it.
    pub leftover_threads: usize,
    pub leftover_fds: usize,
}

/// Result of [`server_scaling`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerScalingReport {
    pub params: ServerScaling,
    pub rows: Vec<ScalingRow>,
    /// The connection limit on this machine and why.
    pub max_connections: usize,
    pub limit_reason: String,
    pub load: Load,
}

/// Hands freed heap memory back to the OS (glibc keeps it otherwise), so the next
/// point's growth is not hidden by memory an earlier point freed.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Fewest connections whose memory growth the figure shows: below it a page or an
/// allocator chunk is a large part of the total.
const MEMORY_MIN_CONNS: usize = 100;

/// A latency in µs, as µs or ms.
fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 { format!("{} ms", fmt_num(us / 1e3)) } else { format!("{} µs", fmt_num(us)) }
}

fn rss_kib() -> f64 {
    crate::lab::os::proc_status("VmRSS")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0.0)
}

/// Waits (at most 2 s) for the descriptor count to come down to `target`.
fn fds_settled(target: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let n = load::open_fds();
        if n <= target || Instant::now() >= until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Measured {
    held: usize,
    server_threads: usize,
    rss_growth_kib: f64,
    setup: Tally,
    setup_ms: f64,
    load: LoadResult,
    shutdown: ShutdownReport,
}

/// One point. The client's runtime may run on a descriptor table of its own, where the
/// server's descriptors mean nothing: so the server is owned by a "stopper" thread on the
/// process's table, which shuts it down when the client says so — with its connections
/// still open — or, on a timeout or a panic, when the client's body is dropped (or stuck
/// past its limit).
fn point(kind: ServerKind, c: usize, p: &ServerScaling) -> Result<ScalingRow, LabError> {
    let threads_before = crate::lab::machine::thread_count();
    let fds_before = load::open_fds();
    let opts = ServerOpts { workers: p.workers, stack_kib: p.stack_kib, ..Default::default() };
    let server: ServerHandle =
        start_server(kind, &opts).map_err(|e| RunError::new(format!("starting the {kind} server"), e))?;
    let addr = server.addr();
    let server = Arc::new(Mutex::new(Some(server)));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<ShutdownReport>();
    let owned = server.clone();
    let one = ServerScaling { connections: vec![c], servers: vec![kind], ..p.clone() };
    let limit = one.estimate() * 10 + STEP_TIMEOUT * 4 + Duration::from_secs(10);
    let client = if crate::lab::os::own_fd_tables_work() { Rt::multi(2).own_fd_table() } else { Rt::multi(2) };
    // A body that blocks past its limit is detached by `rt::run` still holding `go_tx`: the
    // stopper waits no longer than `rt::run` does, then shuts the server down anyway.
    let stop_anyway = limit + client.grace + Duration::from_secs(1);
    let stopper = std::thread::Builder::new()
        .name("scaling-stopper".into())
        .spawn(move || {
            // Err: the client's body was dropped without asking, or is stuck; stop the server anyway.
            let _ = go_rx.recv_timeout(stop_anyway);
            let taken = owned.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(s) = taken {
                let _ = done_tx.send(s.shutdown(DRAIN));
            }
        })
        .map_err(|e| RunError::new(format!("{kind} server, {c} connections"), format!("no stopper thread: {e}")))?;
    // Counters only (atomics): safe to read from any thread.
    let counts = move || {
        let g = server.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map_or((0, 0), |s| (s.connections(), s.threads()))
    };
    let per_conn = (p.requests / c).max(MIN_PER_CONN);
    let until = Instant::now() + one.estimate() * 5 + Duration::from_secs(5);
    trim_heap();
    let body = move || async move {
        let rss0 = rss_kib();
        let t0 = Instant::now();
        let (conns, mut setup) = load::connect_all(addr, c, STEP_TIMEOUT).await;
        // One request on each: the server has read and answered on every connection.
        let (conns, warm, _) = load::closed_loop_on(conns, 1, until, STEP_TIMEOUT).await;
        setup.merge(Tally { samples: Vec::new(), ..warm });
        let setup_ms = t0.elapsed().as_secs_f64() * 1e3;
        let (held, server_threads) = counts();
        let rss_growth_kib = rss_kib() - rss0;
        let (conns, tally, took) = load::closed_loop_on(conns, per_conn, until, STEP_TIMEOUT).await;
        let load = tally.result(conns.len(), took);
        let _ = go_tx.send(());
        let shutdown = done_rx.await;
        drop(conns);
        let shutdown = shutdown.map_err(|_| "the server's stopper thread ended without a report".to_string())?;
        Ok::<_, String>(Measured { held, server_threads, rss_growth_kib, setup, setup_ms, load, shutdown })
    };
    let what = format!("{kind} server, {c} connections");
    let m = rt::run(client.timeout(limit), body);
    if stopper.join().is_err() {
        return Err(RunError::new(what, "the server's stopper thread panicked").into());
    }
    let m = m.map_err(|e| RunError::new(what.clone(), e))?.map_err(|e| RunError::new(what, e))?;
    let threads_after = crate::lab::machine::thread_count_settled(threads_before, Duration::from_secs(2));
    let fds_after = fds_settled(fds_before);
    Ok(ScalingRow {
        server: kind,
        connections: c,
        held: m.held,
        server_threads: m.server_threads,
        rss_growth_kib: m.rss_growth_kib,
        bytes_per_conn: m.rss_growth_kib.max(0.0) * 1024.0 / m.held.max(1) as f64,
        setup_errors: m.setup.errors,
        setup_error: m.setup.first_error,
        setup_ms: m.setup_ms,
        load: m.load,
        shutdown: m.shutdown,
        leftover_threads: threads_after.saturating_sub(threads_before),
        leftover_fds: fds_after.saturating_sub(fds_before),
    })
}

/// For each server in `servers` and each count in `connections`: holds that many
/// loopback connections at once, measures the server's threads and the memory per
/// connection, runs a closed loop of `requests` requests over them (latency in an HDR
/// histogram), and shuts the server down with its clients connected.
pub fn server_scaling(p: &ServerScaling) -> Result<ServerScalingReport, LabError> {
    p.validate()?;
    let (max_connections, limit_reason) = max_connections();
    let probe = LoadProbe::start();
    let mut counts = p.connections.clone();
    counts.sort_unstable();
    let mut rows = Vec::new();
    for &kind in &p.servers {
        for &c in &counts {
            rows.push(point(kind, c, p)?);
        }
    }
    Ok(ServerScalingReport { params: p.clone(), rows, max_connections, limit_reason, load: probe.finish() })
}

impl ServerScalingReport {
    /// The rows of one server, by connection count.
    pub fn rows_of(&self, kind: ServerKind) -> Vec<&ScalingRow> {
        self.rows.iter().filter(|r| r.server == kind).collect()
    }

    /// The row of one server at one connection count.
    pub fn row(&self, kind: ServerKind, connections: usize) -> Option<&ScalingRow> {
        self.rows.iter().find(|r| r.server == kind && r.connections == connections)
    }

    /// Whether a point held every connection and answered every request.
    pub fn clean(r: &ScalingRow) -> bool {
        r.held == r.connections && r.setup_errors == 0 && r.load.errors == 0
    }

    /// The most connections a server held at once, with every request answered.
    pub fn max_held(&self, kind: ServerKind) -> Option<usize> {
        self.rows_of(kind).into_iter().filter(|r| Self::clean(r)).map(|r| r.connections).max()
    }

    /// The largest connection count both servers ran cleanly.
    fn common_max(&self) -> Option<usize> {
        let t = self.rows_of(ServerKind::Threads);
        self.rows_of(ServerKind::Tokio)
            .into_iter()
            .filter(|r| Self::clean(r))
            .map(|r| r.connections)
            .filter(|c| t.iter().any(|x| x.connections == *c && Self::clean(x)))
            .max()
    }
}

fn kib(bytes: f64) -> String {
    format!("{} KiB", fmt_num(bytes / 1024.0))
}

impl Report for ServerScalingReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        // 1. How many connections each server held.
        for &kind in &p.servers {
            let rows = self.rows_of(kind);
            let failed: Vec<&&ScalingRow> = rows.iter().filter(|r| !Self::clean(r)).collect();
            let threads = rows.iter().map(|r| r.server_threads).max().unwrap_or(0);
            match (self.max_held(kind), failed.first()) {
                (Some(m), None) => out.push(Finding::clear(format!(
                    "the {} server held all {m} connections at once and answered every request, on {} thread(s) \
                     at the most",
                    kind.label(),
                    threads
                ))),
                (m, Some(f)) => {
                    let why = f
                        .shutdown
                        .first_error
                        .clone()
                        .or_else(|| f.setup_error.clone())
                        .or_else(|| f.load.first_error.clone())
                        .unwrap_or_else(|| "no error was reported".into());
                    out.push(Finding::clear(format!(
                        "the {} server held {} of {} connections ({} setup errors, {} failed requests){}: {why}",
                        kind.label(),
                        f.held,
                        f.connections,
                        f.setup_errors,
                        f.load.errors,
                        m.map_or(String::new(), |m| format!("; its largest clean point was {m}"))
                    )));
                }
                (None, None) => {}
            }
        }
        // 2. Memory and threads per connection, at the largest count both ran cleanly.
        if let Some(c) = self.common_max()
            && let (Some(t), Some(k)) = (self.row(ServerKind::Threads, c), self.row(ServerKind::Tokio, c))
        {
            let (bt, bk) = (t.bytes_per_conn, k.bytes_per_conn);
            let text = if c < 100 {
                None
            } else if bt > 1.5 * bk.max(1.0) {
                Some(Finding::clear(format!(
                    "at {c} connections the process grew by {} per connection with a thread each and {} with a task \
                     each ({}×): a thread costs the stack pages it touched (of a {} KiB reservation), glibc's thread \
                     block (its descriptor and TLS), and kernel memory (its kernel stack, not counted here); a task \
                     costs its future and the 1 KiB read buffer, both on the heap",
                    kib(bt),
                    kib(bk),
                    fmt_num(bt / bk.max(1.0)),
                    p.stack_kib
                )))
            } else if bk > 1.5 * bt.max(1.0) {
                Some(Finding::clear(format!(
                    "at {c} connections the process grew by {} per connection with tasks and only {} with threads: \
                     the tokio server's buffers or the allocator's growth outweighed the threads' touched stack \
                     pages here (freed thread stacks from earlier points may have been reused)",
                    kib(bk),
                    kib(bt)
                )))
            } else {
                Some(Finding::unclear(format!(
                    "at {c} connections the process grew by {} per connection with threads and {} with tasks: not \
                     clearly different here — memory measured as VmRSS moves in whole pages and allocator chunks",
                    kib(bt),
                    kib(bk)
                )))
            };
            out.extend(text);
            out.push(Finding::note(format!(
                "server threads at {c} connections: {} for the thread server (one per connection and the accept \
                 thread), {} for tokio ({} workers, the thread whose block_on runs the accept loop, and the idle thread that \
                 started it: workers + 2 by construction, whatever the connections)",
                t.server_threads, k.server_threads, p.workers
            )));
            // 3. Tail latency at that count: one run, so the text names what it saw and offers
            // a likely reason, and calls it clear only when the median agrees with the tail.
            let (pt, pk) = (t.load.p99_us, k.load.p99_us);
            if pt > 0.0 && pk > 0.0 {
                let tokio_lower = pk < pt;
                let (lo_name, lo, lo50, hi_name, hi, hi50) = if tokio_lower {
                    ("tokio tasks", pk, k.load.p50_us, "thread per connection", pt, t.load.p50_us)
                } else {
                    ("thread per connection", pt, t.load.p50_us, "tokio tasks", pk, k.load.p50_us)
                };
                let apart = hi > 1.3 * lo;
                let median_agrees = lo50 <= hi50;
                let clear = apart && median_agrees;
                let why = if !apart {
                    String::new()
                } else if !median_agrees && tokio_lower {
                    format!(
                        " — and the thread server the lower median ({} against {}): neither is simply faster. \
                         One likely reason: the kernel runs a freshly woken thread soon (it has used little CPU \
                         lately), so most requests are answered at once while some threads wait behind thousands \
                         of others — unfair service, a long tail; tokio's {} worker(s) serve ready tasks in turn, \
                         so every request waits about one round: a higher median, a shorter tail",
                        fmt_us(hi50),
                        fmt_us(lo50),
                        p.workers
                    )
                } else if !median_agrees {
                    format!(
                        " — but the medians point the other way ({lo_name} {}, {hi_name} {}): neither is simply \
                         faster; run it again before you read more into it",
                        fmt_us(lo50),
                        fmt_us(hi50)
                    )
                } else if tokio_lower {
                    format!(
                        " (medians: {lo_name} {}, {hi_name} {}). One likely reason: with {c} threads ready at once the kernel \
                         switches between them (a context switch each), while tokio's {} worker(s) poll ready \
                         tasks in a loop, one epoll wake-up for many sockets",
                        fmt_us(lo50),
                        fmt_us(hi50),
                        p.workers
                    )
                } else {
                    format!(
                        " (medians: {lo_name} {}, {hi_name} {}). One likely reason: each ready thread runs its short echo straight \
                         away, while tokio's {} worker(s) pass every request through the reactor (epoll events, \
                         wakers, task queues) — for a tiny echo on few cores that bookkeeping can cost more than \
                         the kernel's thread switches",
                        fmt_us(lo50),
                        fmt_us(hi50),
                        p.workers
                    )
                };
                // Apart but with the medians the other way: the text says why it is not clear.
                let f = if clear {
                    Finding::clear
                } else if apart {
                    Finding::note
                } else {
                    Finding::unclear
                };
                out.push(f(format!(
                    "p99 latency at {c} connections in this run: {lo_name} {}, {hi_name} {} ({}×){}{why}",
                    fmt_us(lo),
                    fmt_us(hi),
                    fmt_num(hi / lo),
                    if apart {
                        String::new()
                    } else {
                        format!(
                            " — not clearly apart (medians: {lo_name} {}, {hi_name} {})",
                            fmt_us(lo50),
                            fmt_us(hi50)
                        )
                    }
                )));
            }
        }
        if self.common_max().is_none() {
            for &kind in &p.servers {
                if let Some(r) = self
                    .rows_of(kind)
                    .into_iter()
                    .filter(|r| Self::clean(r) && r.connections >= MEMORY_MIN_CONNS)
                    .max_by_key(|r| r.connections)
                {
                    out.push(Finding::note(format!(
                        "{}: the process grew by {} per connection at {} connections (client side included)",
                        kind.label(),
                        kib(r.bytes_per_conn),
                        r.connections
                    )));
                }
            }
        }
        // 4. Closed-loop latency is queueing. Little's law: mean in flight = throughput × mean
        // round trip. In a closed loop it is at most the connections (one request out on each),
        // so the check is how near that bound the run stayed, not whether the law holds.
        for &kind in &p.servers {
            let rows: Vec<&ScalingRow> = self.rows_of(kind).into_iter().filter(|r| r.load.requests > 0).collect();
            if let (Some(first), Some(last)) = (rows.first(), rows.last())
                && last.connections >= 10 * first.connections
            {
                let c = last.load.connections.max(1) as f64;
                let in_flight = last.load.throughput_per_s * last.load.mean_us / 1e6;
                let share = in_flight / c;
                let busy = share >= 0.75;
                let more = last.load.throughput_per_s / first.load.throughput_per_s.max(1e-9);
                let gain = if more >= 1.3 {
                    format!(
                        "{}× the connections brought {}× the throughput and longer waits",
                        fmt_num(last.connections as f64 / first.connections.max(1) as f64),
                        fmt_num(more)
                    )
                } else {
                    "more connections brought longer waits, not more throughput".to_string()
                };
                let f = if busy { Finding::clear } else { Finding::note };
                out.push(f(format!(
                    "{}: from {} to {} connections the median round trip went from {} to {} and the throughput from \
                     {}/s to {}/s. Little's law at {}: mean in flight = throughput × mean round trip = {}/s × {} = \
                     {} requests, of {} connections ({}%){}",
                    kind.label(),
                    first.connections,
                    last.connections,
                    fmt_us(first.load.p50_us),
                    fmt_us(last.load.p50_us),
                    fmt_num(first.load.throughput_per_s),
                    fmt_num(last.load.throughput_per_s),
                    last.connections,
                    fmt_num(last.load.throughput_per_s),
                    fmt_us(last.load.mean_us),
                    fmt_num(in_flight),
                    last.load.connections,
                    fmt_num(share * 100.0),
                    if busy {
                        format!(
                            ": most connections had a request out most of the time, so a request's round trip is \
                             mostly its wait behind the other connections' requests (queueing), not slower service \
                             — {gain}"
                        )
                    } else {
                        ": fewer than one per connection — not every connection had a request out the whole time: \
                         connections that got through their share early sat idle while the slowest finished theirs \
                         (a p99 far above the median shows such unfair service), or the client spent time between \
                         requests"
                            .to_string()
                    }
                )));
            }
        }
        // 5. Shutdown and leftovers.
        let points = self.rows.len();
        let open: usize = self.rows.iter().map(|r| r.shutdown.open_at_stop).sum();
        let drained: usize = self.rows.iter().map(|r| r.shutdown.drained).sum();
        let aborted: usize = self.rows.iter().map(|r| r.shutdown.aborted).sum();
        let slowest = self.rows.iter().map(|r| r.shutdown.took.as_secs_f64() * 1e3).fold(0.0, f64::max);
        out.push(Finding::note(format!(
            "shutdown with the clients still connected: {drained} of {open} open connections drained (closed at \
             their next idle point) and {aborted} were aborted at the {} ms deadline; the slowest shutdown took {} ms",
            DRAIN.as_millis(),
            fmt_num(slowest)
        )));
        let left: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.leftover_threads > 0 || r.leftover_fds > 0 || r.shutdown.detached > 0)
            .map(|r| {
                format!(
                    "{} at {}: {} thread(s), {} descriptor(s)",
                    r.server, r.connections, r.leftover_threads, r.leftover_fds
                )
            })
            .collect();
        out.push(if left.is_empty() {
            Finding::note(if points == 1 {
                "no thread was left after the run, and no descriptor in the server's table (the process's; the \
                 client's table ends with its runtime's threads)"
                    .to_string()
            } else {
                format!(
                    "no thread was left after any of the {points} points, and no descriptor in the server's table \
                     (the process's, compared before and after each; the client's table ends with its runtime's \
                     threads)"
                )
            })
        } else {
            Finding::unclear(format!(
                "more threads or descriptors after a point than before ({}): something else in this process may \
                 have started them meanwhile, or a server left them",
                left.join("; ")
            ))
        });
        if self.max_connections < 10_000 {
            out.push(Finding::note(format!(
                "at most {} connections fit in this process here: {}",
                self.max_connections, self.limit_reason
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut lat = Figure::lines(
            "Round-trip latency vs connections held (closed loop)",
            "connections held at once (log scale)",
            "latency (µs, log scale)",
        )
        .log_x()
        .log_y();
        // One panel per percentile, one colour per server: the comparison a reader makes is
        // thread vs task at the same percentile.
        for (q, get) in [
            ("median (p50)", (|r: &ScalingRow| r.load.p50_us) as fn(&ScalingRow) -> f64),
            ("p99", |r: &ScalingRow| r.load.p99_us),
            ("p99.9", |r: &ScalingRow| r.load.p999_us),
        ] {
            lat = lat.panel(q);
            for &kind in &p.servers {
                let pts = self
                    .rows_of(kind)
                    .into_iter()
                    .filter(|r| r.load.requests > 0)
                    .map(|r| Point::new(r.connections as f64, get(r).max(1.0)))
                    .collect();
                lat = lat.series(Series::new(kind.label(), Style::Measured, pts));
            }
        }
        let lat = lat.note(format!(
            "Line echo over 127.0.0.1; {} requests per point, at least {MIN_PER_CONN} per connection after a warm-up \
             one; each connection sends its next request when the answer arrives. Client: a 2-worker tokio runtime \
             in the same process{}.",
            p.requests,
            if crate::lab::os::own_fd_tables_work() { ", on a descriptor table of its own" } else { "" }
        ));
        let mut cost = Figure::lines(
            "What each connection costs: server threads, process memory",
            "connections held at once (log scale)",
            "server threads | process memory growth per connection (KiB)",
        )
        .log_x()
        .log_y()
        .panel("server threads");
        for &kind in &p.servers {
            let pts =
                self.rows_of(kind).iter().map(|r| Point::new(r.connections as f64, r.server_threads as f64)).collect();
            cost = cost.series(Series::new(kind.label(), Style::Measured, pts));
        }
        cost = cost.panel("memory per connection (KiB)");
        let floor = if self.rows.iter().any(|r| r.connections >= MEMORY_MIN_CONNS) { MEMORY_MIN_CONNS } else { 0 };
        for &kind in &p.servers {
            let pts = self
                .rows_of(kind)
                .iter()
                .filter(|r| r.connections >= floor)
                .map(|r| Point::new(r.connections as f64, (r.bytes_per_conn / 1024.0).max(0.01)))
                .collect();
            cost = cost.series(Series::new(kind.label(), Style::Measured, pts));
        }
        let cost = cost.note(format!(
            "Memory: growth of the process's VmRSS from before the connects to when every connection had answered \
             once, ÷ connections; it includes the client side (the same for both). Points under {MEMORY_MIN_CONNS} \
             connections are left out of it (a page is a large part of their total). Thread stacks: {} KiB reserved \
             each; tokio: {} workers, plus the thread running the accept loop and the one that started it.",
            p.stack_kib, p.workers
        ));
        vec![mark_busy(lat, &self.load), mark_busy(cost, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Server scaling: one row per server and connection count",
            &[
                "server",
                "connections",
                "held",
                "server threads",
                "KiB per conn",
                "requests",
                "errors",
                "req/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "max µs",
                "drained / aborted",
                "shutdown ms",
                "left threads / fds",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                r.server.name().to_string(),
                r.connections.to_string(),
                r.held.to_string(),
                r.server_threads.to_string(),
                fmt_num(r.bytes_per_conn / 1024.0),
                r.load.requests.to_string(),
                (r.setup_errors + r.load.errors).to_string(),
                fmt_num(r.load.throughput_per_s),
                fmt_num(r.load.p50_us),
                fmt_num(r.load.p99_us),
                fmt_num(r.load.p999_us),
                fmt_num(r.load.max_us),
                format!("{} / {}", r.shutdown.drained, r.shutdown.aborted),
                fmt_num(r.shutdown.took.as_secs_f64() * 1e3),
                format!("{} / {}", r.leftover_threads, r.leftover_fds),
            ]);
        }
        t.note(format!(
            "Closed loop, {} requests per point and at least {MIN_PER_CONN} per connection; latency from an HDR \
             histogram (3 significant digits). Memory: VmRSS growth ÷ connections, client side included. At most {} \
             connections here ({}).",
            self.params.requests, self.max_connections, self.limit_reason
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "server-scaling",
        super::NOTEBOOK,
        "a line-echo server with a thread per connection vs tokio tasks: latency, threads and memory vs connections",
        server_scaling,
    )]
}

crate::impl_params!(ServerScaling);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_scaling_refuses_bad_parameters() {
        let e = ServerScaling { connections: vec![], ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=10000"), "{e}");
        assert!(ServerScaling { connections: vec![10, 10], ..Default::default() }.validate().is_err());
        assert!(ServerScaling { requests: 5, ..Default::default() }.validate().is_err());
        assert!(ServerScaling { servers: vec![], ..Default::default() }.validate().is_err());
        assert!(ServerScaling { workers: 0, ..Default::default() }.validate().is_err());
        assert!(ServerScaling { stack_kib: 8, ..Default::default() }.validate().is_err());
        // More than could ever fit, even with no descriptor open (other tests open and
        // close sockets meanwhile, so the current room is only a snapshot).
        let soft = crate::lab::limits::Limits::raise_nofile();
        let per_conn = if crate::lab::os::own_fd_tables_work() { 1 } else { 2 };
        let never = soft.saturating_sub(load::FD_MARGIN) / per_conn + 1;
        if never <= 10_000 {
            let e = ServerScaling { connections: vec![never], ..Default::default() }.validate().unwrap_err();
            assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
        }
        assert!(ServerScaling::default().estimate() < Duration::from_secs(30));
    }

    #[test]
    fn both_servers_hold_their_connections_and_shut_down_clean() {
        let r =
            server_scaling(&ServerScaling { connections: vec![4, 200], requests: 400, ..Default::default() }).unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in &r.rows {
            assert_eq!(row.held, row.connections, "{row:?}");
            assert_eq!(
                row.load.requests as usize,
                (400 / row.connections).max(MIN_PER_CONN) * row.connections,
                "{row:?}"
            );
            assert_eq!(row.load.errors + row.setup_errors, 0, "{row:?}");
            assert_eq!(row.shutdown.drained, row.connections, "{row:?}");
            assert_eq!(row.shutdown.aborted, 0, "{row:?}");
        }
        // A thread per connection: the count is exact, not a timing.
        assert_eq!(r.row(ServerKind::Threads, 200).unwrap().server_threads, 201);
        assert_eq!(r.row(ServerKind::Tokio, 200).unwrap().server_threads, 4);
        assert!(r.findings().len() >= 5);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.table().to_string().contains("p99 µs"));
    }
}
