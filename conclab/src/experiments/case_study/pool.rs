//! `connection-pool`: many client tasks, each wanting to make a few requests to the
//! line-echo server (tokio, each request served in `service_ms`), either
//!
//! - with a connection per request (connect, one request, close): no waiting on the
//!   client, but the server accepts a connection per request and holds as many at once
//!   as there are tasks in flight; or
//! - through a pool of `n` persistent connections bounded by a `Semaphore`: a task takes
//!   a permit, then a connection from a `Mutex<Vec<_>>` (or opens one, while fewer than
//!   `n` exist), makes its request, and puts the connection back. The server never holds
//!   more than `n` connections; a task may wait for a permit.
//!
//! Latency counts from when a task wants to make its request (so the wait for a pooled
//! connection, or the connect, is in it) to the answer.

use crate::experiments::case_study::load::{self, Conn, Tally};
use crate::experiments::case_study::server::{ServerOpts, Service, ShutdownReport, start_tokio_service};
use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rt::{self, Rt};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Table, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each connect and each round trip may take this long before it counts as an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The shutdown's drain deadline.
const DRAIN: Duration = Duration::from_secs(1);

/// Parameters of [`connection_pool`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionPool {
    /// Client tasks, all started at once: 1..=5000 (with `per_request`, at most what
    /// `RLIMIT_NOFILE` allows: each may hold a connection).
    pub tasks: usize,
    /// Requests each task makes, one after the other: 1..=100.
    pub requests_per_task: usize,
    /// Pool sizes to compare, one run each: up to 6 distinct values in 1..=1000.
    pub pools: Vec<usize>,
    /// Also run a connection per request.
    pub per_request: bool,
    /// The server's service time per request (a tokio timer: whole ms and a little more): 0..=50 ms.
    pub service_ms: u64,
    /// Worker threads of the server's runtime: 1..=16.
    pub workers: usize,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        ConnectionPool {
            tasks: 500,
            requests_per_task: 2,
            pools: vec![1, 4, 16, 64],
            per_request: true,
            service_ms: 1,
            workers: 2,
        }
    }
}

impl ConnectionPool {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("tasks", self.tasks, 1..=5000)?;
        check_range("requests_per_task", self.requests_per_task, 1..=100)?;
        check_list("pools", &self.pools, 6, 1..=1000)?;
        check_range("service_ms", self.service_ms, 0..=50)?;
        check_range("workers", self.workers, 1..=16)?;
        let most = if self.per_request { self.tasks } else { self.pools.iter().copied().max().unwrap_or(0) };
        let (room, why) = load::connection_room();
        if most > room {
            let param = if self.per_request { "tasks" } else { "pools" };
            return Err(ParamError::new(param, format!("at most {room} connections at once here ({why})"), most));
        }
        check_estimate("tasks × requests_per_task × service_ms / pools", self.estimate())
    }

    /// Per run: the requests, `n` at a time, each the service time (+1 ms of timer
    /// rounding) or, when shorter, ~60 µs of CPU; a connection per request adds a
    /// connect (~100 µs of CPU) to each; plus starting and stopping the server.
    pub fn estimate(&self) -> Duration {
        let reqs = (self.tasks * self.requests_per_task) as u64;
        let svc = if self.service_ms == 0 { 0 } else { self.service_ms * 1000 + 1000 };
        let mut us = 0u64;
        for &n in &self.pools {
            us += 100_000 + (reqs * svc / n as u64).max(reqs * 60);
        }
        if self.per_request {
            us += 100_000 + reqs * 160 + svc;
        }
        Duration::from_micros(us)
    }
}

/// How the client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClientMode {
    /// Connect, one request, close.
    PerRequest,
    /// A pool of at most this many connections, bounded by a `Semaphore`.
    Pool(usize),
}

impl ClientMode {
    /// A short name for figures and tables.
    pub fn label(self) -> String {
        match self {
            ClientMode::PerRequest => "connection per request".into(),
            ClientMode::Pool(n) => format!("pool of {n}"),
        }
    }
}

/// One client mode's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolRow {
    pub mode: ClientMode,
    /// Requests answered, and those that failed (with the first error).
    pub served: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the start of the tasks to the last answer, ms.
    pub elapsed_ms: f64,
    pub throughput_per_s: f64,
    /// From wanting to make a request to its answer, µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// The server's side: connections accepted over the run, and most open at once.
    pub accepted: usize,
    pub peak_open: usize,
    /// The server's shutdown.
    pub shutdown: ShutdownReport,
}

/// Result of [`connection_pool`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionPoolReport {
    pub params: ConnectionPool,
    pub rows: Vec<PoolRow>,
    pub load: Load,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// One task of a connection per request.
async fn per_request_task(addr: SocketAddr, task: usize, k: usize) -> Tally {
    let mut t = Tally::default();
    for j in 0..k {
        let want = Instant::now();
        let r = async {
            let mut c = load::connect_one(addr, STEP_TIMEOUT).await?;
            load::ask(&mut c, (task * k + j) as u64, STEP_TIMEOUT).await
        };
        match r.await {
            Ok(true) => t.samples.push(micros(want.elapsed())),
            Ok(false) => t.error("the server answered BUSY".into()),
            Err(e) => t.error(e),
        }
    }
    t
}

/// A pool of at most `n` connections: a permit first, then a connection from the list (or
/// a new one while fewer than `n` exist).
struct Pool {
    permits: tokio::sync::Semaphore,
    idle: Mutex<Vec<Conn>>,
}

async fn pooled_task(pool: Arc<Pool>, addr: SocketAddr, task: usize, k: usize) -> Tally {
    let mut t = Tally::default();
    for j in 0..k {
        let want = Instant::now();
        let Ok(permit) = tokio::time::timeout(STEP_TIMEOUT * 4, pool.permits.acquire()).await else {
            t.error("no pooled connection within the timeout".into());
            continue;
        };
        // The lock is never held across an await.
        let reused = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match reused {
            Some(c) => Ok(c),
            None => load::connect_one(addr, STEP_TIMEOUT).await,
        };
        let r = match conn {
            Ok(mut c) => {
                let r = load::ask(&mut c, (task * k + j) as u64, STEP_TIMEOUT).await;
                if r.is_ok() {
                    pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                }
                r
            }
            Err(e) => Err(e),
        };
        drop(permit);
        match r {
            Ok(true) => t.samples.push(micros(want.elapsed())),
            Ok(false) => t.error("the server answered BUSY".into()),
            Err(e) => t.error(e),
        }
    }
    t
}

fn run_mode(p: &ConnectionPool, mode: ClientMode) -> Result<PoolRow, LabError> {
    let opts = ServerOpts { workers: p.workers, ..Default::default() };
    let service = Service { time: Duration::from_millis(p.service_ms), slots: None, admit: None };
    let server = start_tokio_service(&opts, service)
        .map_err(|e| RunError::new(format!("starting the server for {}", mode.label()), e))?;
    let addr = server.addr();
    let (tasks, k) = (p.tasks, p.requests_per_task);
    let limit = p.estimate() * 5 + STEP_TIMEOUT * 4 + Duration::from_secs(5);
    let out = rt::run(Rt::multi(2).timeout(limit), move || async move {
        let start = Instant::now();
        let pool = match mode {
            ClientMode::Pool(n) => {
                Some(Arc::new(Pool { permits: tokio::sync::Semaphore::new(n), idle: Mutex::new(Vec::new()) }))
            }
            ClientMode::PerRequest => None,
        };
        let mut handles = Vec::with_capacity(tasks);
        for i in 0..tasks {
            handles.push(match &pool {
                Some(pool) => tokio::spawn(pooled_task(Arc::clone(pool), addr, i, k)),
                None => tokio::spawn(per_request_task(addr, i, k)),
            });
        }
        let mut tally = Tally::default();
        for h in handles {
            match h.await {
                Ok(t) => tally.merge(t),
                Err(e) => tally.error(format!("a client task failed: {e}")),
            }
        }
        let took = start.elapsed();
        // Close the pooled connections before the server shuts down.
        drop(pool);
        tally.result(tasks, took)
    });
    let shutdown = server.shutdown(DRAIN);
    let r = out.map_err(|e| RunError::new(mode.label(), e))?;
    Ok(PoolRow {
        mode,
        served: r.requests,
        errors: r.errors,
        first_error: r.first_error,
        elapsed_ms: r.elapsed_ms,
        throughput_per_s: r.throughput_per_s,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
        max_us: r.max_us,
        accepted: shutdown.accepted,
        peak_open: shutdown.peak,
        shutdown,
    })
}

/// Starts `tasks` client tasks at once, each making `requests_per_task` requests, once
/// with a connection per request and once per pool size in `pools`; measures latency
/// (from wanting a request to its answer), throughput, and the server's accepted and
/// peak open connections.
pub fn connection_pool(p: &ConnectionPool) -> Result<ConnectionPoolReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut modes = Vec::new();
    if p.per_request {
        modes.push(ClientMode::PerRequest);
    }
    let mut pools = p.pools.clone();
    pools.sort_unstable();
    modes.extend(pools.into_iter().map(ClientMode::Pool));
    let mut rows = Vec::new();
    for m in modes {
        rows.push(run_mode(p, m)?);
    }
    Ok(ConnectionPoolReport { params: p.clone(), rows, load: probe.finish() })
}

impl ConnectionPoolReport {
    /// The row of one client mode.
    pub fn row(&self, mode: ClientMode) -> Option<&PoolRow> {
        self.rows.iter().find(|r| r.mode == mode)
    }

    fn pools(&self) -> Vec<&PoolRow> {
        self.rows.iter().filter(|r| matches!(r.mode, ClientMode::Pool(_))).collect()
    }
}

/// A latency in µs, as µs or ms.
fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 { format!("{} ms", fmt_num(us / 1e3)) } else { format!("{} µs", fmt_num(us)) }
}

impl Report for ConnectionPoolReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let requests = (p.tasks * p.requests_per_task) as u64;
        let mut out = Vec::new();
        // 1. Server load.
        let pooled = self.pools();
        let within = pooled.iter().all(|r| match r.mode {
            ClientMode::Pool(n) => r.peak_open <= n && r.accepted <= n,
            ClientMode::PerRequest => true,
        });
        if let Some(pr) = self.row(ClientMode::PerRequest) {
            out.push(Finding::clear(format!(
                "a connection per request: the server accepted {} connections for {} requests and held up to {} open \
                 at once — with {} tasks started together, nothing bounds how many connect at the same time",
                pr.accepted, requests, pr.peak_open, p.tasks
            )));
        }
        if !pooled.is_empty() {
            let list = pooled
                .iter()
                .map(|r| format!("{}: {} accepted, {} at once", r.mode.label(), r.accepted, r.peak_open))
                .collect::<Vec<_>>()
                .join("; ");
            let f = if within { Finding::clear } else { Finding::unclear };
            out.push(f(format!(
                "{} ({list}){}",
                if within {
                    "with a pool the server never held more connections than the pool's size"
                } else {
                    "a pool held more connections than its size"
                },
                if within {
                    ": the Semaphore's permits bound the connections, and the connections are reused"
                } else {
                    ": a connection that failed was replaced — see the errors in the table"
                }
            )));
        }
        // 2. Small pools: tasks queue for a connection (Little's law).
        if p.service_ms > 0
            && let Some(small) = pooled.first()
            && let ClientMode::Pool(n) = small.mode
        {
            let bound = n as f64 / ((p.service_ms as f64 + 1.0) / 1e3);
            let limited = small.throughput_per_s <= 1.5 * bound;
            let f = if limited { Finding::clear } else { Finding::note };
            out.push(f(format!(
                "a pool of {n} served {}/s: with each request holding its connection for about the service time \
                 ({} ms, about {} ms with the timer's rounding), {} at most about {}/s (Little's \
                 law: in flight = rate × time){}; its p99 of {} is mostly the wait for a free connection",
                fmt_num(small.throughput_per_s),
                p.service_ms,
                p.service_ms + 1,
                if n == 1 { "1 connection allows".to_string() } else { format!("{n} connections allow") },
                fmt_num(bound),
                if limited { "" } else { " — it did better than that bound here, the service time was shorter" },
                fmt_us(small.p99_us)
            )));
        }
        // 3. The best pool vs a connection per request.
        if let (Some(pr), Some(best)) = (
            self.row(ClientMode::PerRequest),
            pooled.iter().filter(|r| r.errors == 0).min_by(|a, b| a.p99_us.total_cmp(&b.p99_us)),
        ) {
            let ratio = pr.p99_us / best.p99_us.max(1.0);
            let text = if ratio > 1.3 {
                format!(
                    "the lowest p99 came from a {} ({}), {}× below a connection per request ({}), with {} server \
                     connections instead of {}: a connect (a handshake, an accept, a task on the server) on every \
                     request costs more than waiting for a warm connection",
                    best.mode.label(),
                    fmt_us(best.p99_us),
                    fmt_num(ratio),
                    fmt_us(pr.p99_us),
                    best.accepted,
                    pr.accepted
                )
            } else if ratio < 1.0 / 1.3 {
                format!(
                    "a connection per request had the lower p99 here ({} vs {} for the best pool, a {}): with no \
                     bound, all {} tasks are served at once, while a pool makes them take turns — at the price of {} \
                     server connections instead of {}",
                    fmt_us(pr.p99_us),
                    fmt_us(best.p99_us),
                    best.mode.label(),
                    p.tasks,
                    pr.accepted,
                    best.accepted
                )
            } else {
                format!(
                    "the best pool ({}, p99 {}) and a connection per request (p99 {}) were not clearly apart in \
                     latency, but the pool needed {} server connections instead of {}",
                    best.mode.label(),
                    fmt_us(best.p99_us),
                    fmt_us(pr.p99_us),
                    best.accepted,
                    pr.accepted
                )
            };
            out.push(if !(1.0 / 1.3..=1.3).contains(&ratio) { Finding::clear(text) } else { Finding::unclear(text) });
        }
        let errors: u64 = self.rows.iter().map(|r| r.errors).sum();
        if errors > 0 {
            let first = self.rows.iter().find_map(|r| r.first_error.clone()).unwrap_or_default();
            out.push(Finding::unclear(format!("{errors} request(s) failed: {first}")));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut lat = Figure::bars(
            "Latency per request: a connection each vs a pool of n",
            "how the client reaches the server",
            "latency from wanting a request to its answer (µs, log scale)",
        )
        .log_y();
        for r in &self.rows {
            let l = r.mode.label();
            lat = lat.bar(&l, "p50", r.p50_us.max(1.0), None);
            lat = lat.bar(&l, "p99", r.p99_us.max(1.0), None);
        }
        let lat = lat.note(format!(
            "{} tasks started at once, {} request(s) each; the server takes {} ms per request. A pooled task's latency \
             includes its wait for a connection.",
            p.tasks, p.requests_per_task, p.service_ms
        ));
        let mut load = Figure::bars(
            "What the server sees: connections accepted and held at once",
            "how the client reaches the server",
            "connections (log scale)",
        )
        .log_y();
        for r in &self.rows {
            let l = r.mode.label();
            load = load.bar(&l, "accepted over the run", r.accepted.max(1) as f64, None);
            load = load.bar(&l, "open at once (peak)", r.peak_open.max(1) as f64, None);
        }
        let load = load.note(format!(
            "{} requests in all. Throughput: {}.",
            p.tasks * p.requests_per_task,
            self.rows
                .iter()
                .map(|r| format!("{} {}/s", r.mode.label(), fmt_num(r.throughput_per_s)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        vec![mark_busy(lat, &self.load), mark_busy(load, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Connection pool: one row per client mode",
            &["client", "served", "errors", "took ms", "req/s", "p50 µs", "p99 µs", "max µs", "accepted", "peak open"],
        );
        for r in &self.rows {
            t.row(vec![
                r.mode.label(),
                r.served.to_string(),
                r.errors.to_string(),
                fmt_num(r.elapsed_ms),
                fmt_num(r.throughput_per_s),
                fmt_num(r.p50_us),
                fmt_num(r.p99_us),
                fmt_num(r.max_us),
                r.accepted.to_string(),
                r.peak_open.to_string(),
            ]);
        }
        t.note(format!(
            "{} tasks × {} request(s), started at once; server service time {} ms (tokio server, {} workers). \
             Accepted and peak open are counted by the server.",
            self.params.tasks, self.params.requests_per_task, self.params.service_ms, self.params.workers
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "connection-pool",
        super::NOTEBOOK,
        "many client tasks: a connection per request vs a Semaphore-bounded pool of n connections",
        connection_pool,
    )]
}

crate::impl_params!(ConnectionPool);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_pool_refuses_bad_parameters() {
        let e = ConnectionPool { pools: vec![], ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=1000"), "{e}");
        assert!(ConnectionPool { pools: vec![4, 4], ..Default::default() }.validate().is_err());
        assert!(ConnectionPool { tasks: 0, ..Default::default() }.validate().is_err());
        assert!(ConnectionPool { service_ms: 51, ..Default::default() }.validate().is_err());
        assert!(ConnectionPool::default().validate().is_ok());
        assert!(ConnectionPool::default().estimate() < Duration::from_secs(6));
    }

    #[test]
    fn a_pool_bounds_the_servers_connections() {
        let p = ConnectionPool { tasks: 60, requests_per_task: 2, pools: vec![1, 8], ..Default::default() };
        let r = connection_pool(&p).unwrap();
        assert_eq!(r.rows.len(), 3);
        for row in &r.rows {
            assert_eq!((row.served, row.errors), (120, 0), "{row:?}");
        }
        // Counts, not timings: a connection per request is a connection per request; a
        // pool never opens more than its size.
        assert_eq!(r.row(ClientMode::PerRequest).unwrap().accepted, 120);
        let one = r.row(ClientMode::Pool(1)).unwrap();
        assert_eq!((one.accepted, one.peak_open), (1, 1), "{one:?}");
        let eight = r.row(ClientMode::Pool(8)).unwrap();
        assert!(eight.accepted <= 8 && eight.peak_open <= 8, "{eight:?}");
        assert!(r.findings().len() >= 4);
        assert_eq!(r.figures().len(), 2);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("peak open"));
    }
}
