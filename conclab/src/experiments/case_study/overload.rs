//! `overload`: offered load past a server's capacity. The tokio line-echo server gets a
//! capacity: each request holds one of `slots` service slots (a FIFO `Semaphore`) for
//! `service_ms` — like a handler waiting on a database with `slots` connections — so it
//! serves at most about `slots / service` requests per second. The experiment first
//! measures that capacity (a short closed loop), then offers an open-loop load at
//! multiples of it for `duration_ms` each, with three kinds of protection:
//!
//! - `none`: every request waits for a slot, however long the queue. Past capacity the
//!   backlog grows for as long as the overload lasts, and so does latency.
//! - `bounded-queue`: a second `Semaphore` admits at most `slots + queue` requests at
//!   once (`try_acquire`); a request past that is answered `BUSY` at once (shed). The
//!   admitted wait at most `queue / slots` service times.
//! - `shed`: admission is just the slots: a request that finds none free is shed.
//!
//! Latency counts from each request's intended send time (open loop: no coordinated
//! omission). Served requests and shed ones (`BUSY` answers) are counted apart.

use crate::experiments::case_study::load::{self, Conn, Tally};
use crate::experiments::case_study::server::{ServerOpts, Service, start_tokio_service};
use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rt::{self, Rt};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table,
    check_choices, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each connect and each round trip may take this long before it counts as an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The shutdown's drain deadline.
const DRAIN: Duration = Duration::from_secs(1);
/// How long the capacity is measured for.
const CALIBRATE: Duration = Duration::from_millis(250);
/// The highest request rate the client is asked to send (a loopback round trip costs
/// tens of µs of CPU between client and server).
const MAX_RATE: f64 = 20_000.0;

crate::choices! {
    /// How the server protects itself from more requests than it can serve.
    pub enum Protection {
        /// Every request waits for a service slot: an unbounded queue.
        None = "none",
        /// At most `slots + queue` requests admitted at once; past that, `BUSY` at once.
        BoundedQueue = "bounded-queue",
        /// At most `slots` admitted: a request that finds no free slot gets `BUSY` at once.
        Shed = "shed",
    }
}

impl Protection {
    /// A short name for figures and tables.
    pub fn label(self) -> &'static str {
        match self {
            Protection::None => "no protection",
            Protection::BoundedQueue => "limit + bounded queue",
            Protection::Shed => "limit, shed at once",
        }
    }
}

/// Parameters of [`overload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overload {
    /// Offered load as multiples of the measured capacity, one point each: up to 8
    /// distinct values in 0.1..=5.
    pub loads: Vec<f64>,
    /// The protections to compare: `none`, `bounded-queue`, `shed`.
    pub modes: Vec<Protection>,
    /// Requests in service at once: 1..=256.
    pub slots: usize,
    /// Service time of one request (a tokio timer, so whole ms and a little more): 1..=100 ms.
    pub service_ms: u64,
    /// `bounded-queue`: requests that may wait for a slot beyond those in service: 1..=4096.
    pub queue: usize,
    /// How long each load is offered: 50..=5000 ms.
    pub duration_ms: u64,
    /// Client connections the requests are spread over: 2..=2000, more than `slots +
    /// queue` (so the server's queue fills before the client runs out of connections),
    /// and what `RLIMIT_NOFILE` allows.
    pub connections: usize,
    /// Worker threads of the server's runtime: 1..=16.
    pub workers: usize,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            loads: vec![0.5, 1.0, 1.5, 2.0, 3.0],
            modes: vec![Protection::None, Protection::BoundedQueue, Protection::Shed],
            slots: 4,
            service_ms: 2,
            queue: 8,
            duration_ms: 300,
            connections: 64,
            workers: 2,
        }
    }
}

impl Overload {
    /// Requests per second the slots allow if each took exactly `service_ms`.
    pub fn nominal_capacity(&self) -> f64 {
        self.slots as f64 * 1000.0 / self.service_ms.max(1) as f64
    }

    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("loads", &self.loads, 8, 0.1..=5.0)?;
        check_choices("modes", &self.modes)?;
        check_range("slots", self.slots, 1..=256)?;
        check_range("service_ms", self.service_ms, 1..=100)?;
        check_range("queue", self.queue, 1..=4096)?;
        check_range("duration_ms", self.duration_ms, 50..=5000)?;
        check_range("connections", self.connections, 2..=2000)?;
        check_range("workers", self.workers, 1..=16)?;
        if self.connections <= self.slots + self.queue {
            return Err(ParamError::new(
                "connections",
                format!(
                    "more than slots + queue = {} (otherwise requests queue in the client for a connection before \
                     the server's queue is full)",
                    self.slots + self.queue
                ),
                self.connections,
            ));
        }
        let (room, why) = load::connection_room();
        if self.connections > room {
            return Err(ParamError::new(
                "connections",
                format!("at most {room} on this machine ({why})"),
                self.connections,
            ));
        }
        let top = self.loads.iter().copied().fold(0.0, f64::max) * self.nominal_capacity();
        if top > MAX_RATE {
            return Err(ParamError::new(
                "loads × slots / service_ms",
                format!("a highest offered rate of at most {MAX_RATE} requests/s"),
                top,
            ));
        }
        check_estimate("loads × modes × duration_ms", self.estimate())
    }

    /// The capacity measurement, then per mode a server start and stop, and each load for
    /// `duration_ms`; without protection, a load past capacity also leaves a backlog that
    /// takes `(load − 1) × duration` to serve (×1.5: the timer rounds service times up).
    pub fn estimate(&self) -> Duration {
        let d = self.duration_ms as f64 / 1e3;
        let mut s = CALIBRATE.as_secs_f64() + 0.2;
        for &m in &self.modes {
            s += 0.2;
            for &l in &self.loads {
                s += d + 0.02;
                if m == Protection::None && l > 1.0 {
                    s += d * (l - 1.0) * 1.5;
                }
            }
        }
        Duration::from_secs_f64(s)
    }
}

/// One protection at one offered load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverloadRow {
    pub mode: Protection,
    /// The offered load as a multiple of the measured capacity.
    pub load: f64,
    /// Requests due per second.
    pub offered_per_s: f64,
    /// Requests sent (due over `duration_ms`).
    pub sent: u64,
    /// Requests answered with their echo.
    pub served: u64,
    /// Requests answered `BUSY`.
    pub shed: u64,
    /// Requests that failed (timeouts, closed connections), and the first such error.
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first due time to the last answer, ms.
    pub elapsed_ms: f64,
    /// Served and shed per second over `elapsed_ms`.
    pub served_per_s: f64,
    pub shed_per_s: f64,
    /// Latency of served requests from their intended send time, µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Median time to a `BUSY` answer, µs (0 when none was shed).
    pub shed_p50_us: f64,
}

impl OverloadRow {
    /// The fraction of sent requests that were shed.
    pub fn shed_fraction(&self) -> f64 {
        self.shed as f64 / self.sent.max(1) as f64
    }
}

/// Result of [`overload`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverloadReport {
    pub params: Overload,
    /// Requests per second the server served in a saturating closed loop.
    pub capacity_per_s: f64,
    pub rows: Vec<OverloadRow>,
    pub load: Load,
}

fn service(p: &Overload, mode: Protection) -> Service {
    Service {
        time: Duration::from_millis(p.service_ms),
        slots: Some(p.slots),
        admit: match mode {
            Protection::None => None,
            Protection::BoundedQueue => Some(p.slots + p.queue),
            Protection::Shed => Some(p.slots),
        },
    }
}

/// Open loop over `conns`: `total` requests due every `1 / rate` s; each goes out on the
/// next free connection and its latency counts from its due time. Served and shed are
/// tallied apart; the connections still good come back.
async fn offer(conns: Vec<Conn>, rate: f64, total: u64) -> (Vec<Conn>, Tally, Tally, Duration) {
    let start = tokio::time::Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, tokio::time::Instant)>(total.clamp(1, 65_536) as usize);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::with_capacity(conns.len());
    for mut c in conns {
        let rx = Arc::clone(&rx);
        workers.push(tokio::spawn(async move {
            let (mut served, mut shed) = (Tally::default(), Tally::default());
            loop {
                let next = rx.lock().await.recv().await;
                let Some((id, due)) = next else { return (Some(c), served, shed) };
                match load::ask(&mut c, id, STEP_TIMEOUT).await {
                    Ok(true) => served.samples.push(micros(due.elapsed())),
                    Ok(false) => shed.samples.push(micros(due.elapsed())),
                    Err(e) => {
                        served.error(e);
                        return (None, served, shed);
                    }
                }
            }
        }));
    }
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        if tx.send((i, due)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let (mut kept, mut served, mut shed) = (Vec::new(), Tally::default(), Tally::default());
    for w in workers {
        match w.await {
            Ok((c, a, b)) => {
                kept.extend(c);
                served.merge(a);
                shed.merge(b);
            }
            Err(e) => served.error(format!("a client task failed: {e}")),
        }
    }
    let mut rx = rx.lock().await;
    while rx.try_recv().is_ok() {
        served.error("no connection left to send the request on".into());
    }
    (kept, served, shed, start.elapsed())
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn start(p: &Overload, mode: Protection) -> Result<crate::experiments::case_study::server::ServerHandle, LabError> {
    let opts = ServerOpts { workers: p.workers, ..Default::default() };
    start_tokio_service(&opts, service(p, mode))
        .map_err(|e| RunError::new(format!("starting the server ({})", mode.name()), e).into())
}

/// Measures the capacity: `2 × slots` connections in a closed loop for [`CALIBRATE`]
/// against an unprotected server.
fn capacity(p: &Overload) -> Result<f64, LabError> {
    let server = start(p, Protection::None)?;
    let addr = server.addr();
    let n = 2 * p.slots;
    let out = rt::run(Rt::multi(2).timeout(CALIBRATE + STEP_TIMEOUT * 3), move || async move {
        let (conns, mut tally) = load::connect_all(addr, n, STEP_TIMEOUT).await;
        let (_kept, t, took) = load::closed_loop_on(conns, 1_000_000, Instant::now() + CALIBRATE, STEP_TIMEOUT).await;
        tally.merge(t);
        tally.result(n, took)
    });
    server.shutdown(DRAIN);
    let r = out.map_err(|e| RunError::new("measuring the capacity", e))?;
    if r.errors > 0 || r.requests == 0 {
        return Err(RunError::new(
            "measuring the capacity",
            r.first_error.unwrap_or_else(|| "no request was answered".into()),
        )
        .into());
    }
    Ok(r.throughput_per_s)
}

fn mode_rows(p: &Overload, mode: Protection, cap: f64) -> Result<Vec<OverloadRow>, LabError> {
    let server = start(p, mode)?;
    let addr = server.addr();
    let q = p.clone();
    let limit = q.estimate() * 3 + STEP_TIMEOUT * 3;
    let out = rt::run(Rt::multi(2).timeout(limit), move || async move {
        let (mut conns, setup) = load::connect_all(addr, q.connections, STEP_TIMEOUT).await;
        let mut rows = Vec::new();
        for &l in &q.loads {
            let rate = l * cap;
            let total = (rate * q.duration_ms as f64 / 1e3).round().max(1.0) as u64;
            let (kept, mut served, shed, took) = offer(std::mem::take(&mut conns), rate, total).await;
            conns = kept;
            if rows.is_empty() {
                served.merge(Tally {
                    samples: Vec::new(),
                    errors: setup.errors,
                    first_error: setup.first_error.clone(),
                });
            }
            let r = served.result(conns.len(), took);
            let s = shed.result(conns.len(), took);
            let secs = took.as_secs_f64().max(1e-9);
            rows.push(OverloadRow {
                mode,
                load: l,
                offered_per_s: rate,
                sent: total,
                served: r.requests,
                shed: s.requests,
                errors: r.errors,
                first_error: r.first_error,
                elapsed_ms: secs * 1e3,
                served_per_s: r.requests as f64 / secs,
                shed_per_s: s.requests as f64 / secs,
                p50_us: r.p50_us,
                p99_us: r.p99_us,
                max_us: r.max_us,
                shed_p50_us: s.p50_us,
            });
        }
        rows
    });
    server.shutdown(DRAIN);
    out.map_err(|e| RunError::new(format!("the {} run", mode.name()), e).into())
}

/// Measures the server's capacity, then for each protection in `modes` offers each load
/// of `loads` (multiples of that capacity) for `duration_ms` in an open loop, counting
/// served and shed requests and the served requests' latency from their due times.
pub fn overload(p: &Overload) -> Result<OverloadReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let cap = capacity(p)?;
    let mut loads = p.loads.clone();
    loads.sort_by(f64::total_cmp);
    let sorted = Overload { loads, ..p.clone() };
    let mut rows = Vec::new();
    for &m in &p.modes {
        rows.extend(mode_rows(&sorted, m, cap)?);
    }
    Ok(OverloadReport { params: p.clone(), capacity_per_s: cap, rows, load: probe.finish() })
}

impl OverloadReport {
    /// The rows of one protection, by offered load.
    pub fn rows_of(&self, mode: Protection) -> Vec<&OverloadRow> {
        self.rows.iter().filter(|r| r.mode == mode).collect()
    }

    /// The row of one protection at its highest offered load.
    fn top(&self, mode: Protection) -> Option<&OverloadRow> {
        self.rows_of(mode).into_iter().max_by(|a, b| a.load.total_cmp(&b.load))
    }

    /// The row of one protection at its lowest offered load.
    fn bottom(&self, mode: Protection) -> Option<&OverloadRow> {
        self.rows_of(mode).into_iter().min_by(|a, b| a.load.total_cmp(&b.load))
    }

    /// The service time each request really held its slot, µs: slots ÷ capacity.
    fn real_service_us(&self) -> f64 {
        self.params.slots as f64 / self.capacity_per_s.max(1e-9) * 1e6
    }
}

/// A latency in µs, as µs or ms.
fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 { format!("{} ms", fmt_num(us / 1e3)) } else { format!("{} µs", fmt_num(us)) }
}

fn pct(x: f64) -> String {
    format!("{}%", fmt_num(100.0 * x))
}

impl Report for OverloadReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let svc = self.real_service_us();
        out.push(Finding::note(format!(
            "capacity measured at {} requests/s ({} slots × {} ms would allow {}): each request held its slot about \
             {} — the tokio timer rounds a sleep up to its next ms tick. Offered loads are multiples of the measured \
             capacity",
            fmt_num(self.capacity_per_s),
            p.slots,
            p.service_ms,
            fmt_num(p.nominal_capacity()),
            fmt_us(svc)
        )));
        let d = p.duration_ms as f64 / 1e3;
        // 1. No protection: the backlog grows for as long as the overload lasts.
        if let (Some(lo), Some(hi)) = (self.bottom(Protection::None), self.top(Protection::None)) {
            if hi.load > 1.2 && hi.errors == 0 {
                // Requests due in excess of capacity pile up; the last one waits for all of them.
                let backlog_us = (hi.load - 1.0) * d * 1e6;
                let grew = hi.p99_us > 10.0 * lo.p99_us.max(1.0) && hi.p99_us > 5.0 * svc;
                let near = hi.max_us > 0.5 * backlog_us && hi.max_us < 2.0 * backlog_us;
                let f = if grew { Finding::clear } else { Finding::unclear };
                out.push(f(format!(
                    "without protection the p99 {} from {} at {}× capacity to {} at {}×{}. At {}× for {} ms the \
                     server falls behind by (load − 1) × duration = {} of work, and the last request waits about \
                     that long: its wait was {}{}",
                    if grew { "grew" } else { "went" },
                    fmt_us(lo.p99_us),
                    fmt_num(lo.load),
                    fmt_us(hi.p99_us),
                    fmt_num(hi.load),
                    if grew {
                        ": every request past capacity joins a queue that only grows while the overload lasts"
                    } else {
                        ""
                    },
                    fmt_num(hi.load),
                    p.duration_ms,
                    fmt_us(backlog_us),
                    fmt_us(hi.max_us),
                    if near {
                        " — the wait is the backlog, so it grows with the overload's duration (try doubling \
                         `duration_ms`): without a bound, latency grows without bound"
                    } else {
                        " (not close: look at the load line, or at errors in the table)"
                    }
                )));
            } else if hi.load <= 1.2 {
                out.push(Finding::note(format!(
                    "without protection the highest offered load was {}× capacity: offer more than 1.2× to see the \
                     queue grow",
                    fmt_num(hi.load)
                )));
            }
        }
        // 2. Protected modes: p99 bounded, and the shed fraction.
        for (mode, waits) in
            [(Protection::Shed, 1.0), (Protection::BoundedQueue, 1.0 + p.queue as f64 / p.slots as f64)]
        {
            let (Some(lo), Some(hi)) = (self.bottom(mode), self.top(mode)) else { continue };
            if hi.load <= 1.2 {
                continue;
            }
            // What an admitted request can add to the low-load latency: the queued work
            // ahead of it, per slot.
            let queued_us = (waits - 1.0) * svc;
            let bound_us = lo.p99_us + queued_us;
            let bounded = hi.p99_us <= 3.0 * bound_us;
            let near = hi.p99_us <= 1.5 * bound_us;
            let expect_shed = 1.0 - 1.0 / hi.load;
            let f = if bounded { Finding::clear } else { Finding::unclear };
            out.push(f(format!(
                "{}: p99 {} at {}× capacity against {} at {}×{}. {}: {} — the measured p99 was {}. {} of the requests were shed at {}× (a BUSY answer took a \
                 median {}); 1 − 1/load = {} is what must go when only the capacity can be served",
                mode.label(),
                fmt_us(hi.p99_us),
                fmt_num(hi.load),
                fmt_us(lo.p99_us),
                fmt_num(lo.load),
                if bounded {
                    ": the limit keeps the queue, and so the latency, bounded however long the overload lasts"
                } else {
                    ": it grew more than 3× past the bound here — the client or the machine was a bottleneck too \
                     (see the load line)"
                },
                if mode == Protection::Shed {
                    "An admitted request never waits in a queue (none is kept), so its p99 should stay near the \
                     low-load p99"
                        .to_string()
                } else {
                    format!(
                        "An admitted request waits behind at most {} queued request(s) per slot, {} of service, so \
                         its p99 should stay near the low-load p99 plus that",
                        fmt_num(waits - 1.0),
                        fmt_us(queued_us)
                    )
                },
                fmt_us(bound_us),
                if near { "within 1.5× of it" } else { "above 1.5× of it" },
                pct(hi.shed_fraction()),
                fmt_num(hi.load),
                fmt_us(hi.shed_p50_us),
                pct(expect_shed),
            )));
        }
        if let Some(at1) = self.rows_of(Protection::Shed).into_iter().find(|r| (r.load - 1.0).abs() < 0.05)
            && at1.shed > 0
        {
            out.push(Finding::note(format!(
                "shedding at once refused {} of the requests even at 1× capacity: arrivals are not perfectly even, and \
                 with no queue a request that comes while every slot is busy is lost — a short queue absorbs such \
                 bursts (bounded-queue at 1×: {} shed)",
                pct(at1.shed_fraction()),
                self.rows_of(Protection::BoundedQueue)
                    .into_iter()
                    .find(|r| (r.load - 1.0).abs() < 0.05)
                    .map_or("not run".to_string(), |r| pct(r.shed_fraction()))
            )));
        }
        // 3. Goodput: everyone serves about the capacity past it.
        let tops: Vec<&OverloadRow> = p.modes.iter().filter_map(|&m| self.top(m)).filter(|r| r.load > 1.2).collect();
        if tops.len() >= 2 {
            let lo = tops.iter().map(|r| r.served_per_s).fold(f64::MAX, f64::min);
            let hi = tops.iter().map(|r| r.served_per_s).fold(0.0, f64::max);
            let list =
                tops.iter().map(|r| format!("{} {}/s", r.mode.name(), fmt_num(r.served_per_s))).collect::<Vec<_>>();
            let same = hi <= 1.15 * lo;
            let f = if same { Finding::clear } else { Finding::note };
            out.push(f(format!(
                "served at the highest load: {} (capacity {}/s){}",
                list.join(", "),
                fmt_num(self.capacity_per_s),
                if same {
                    ": protection does not serve more — the slots are the limit — it decides who waits: without it \
                     everyone waits longer, with it the excess gets a fast BUSY and may retry elsewhere"
                } else {
                    ": not the same for every mode here — with a bounded queue or shedding a slot can sit idle \
                     between a request leaving and the next being admitted, and a busy machine adds its own noise"
                }
            )));
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
        let mut rates = Figure::lines(
            "Offered vs served vs shed: past capacity, protection sheds the excess",
            "offered (× capacity)",
            "requests/s",
        )
        .linear_x()
        .linear_y();
        let mut xs: Vec<f64> = p.loads.clone();
        xs.sort_by(f64::total_cmp);
        for &mode in &p.modes {
            let rows = self.rows_of(mode);
            rates = rates.panel(mode.label());
            rates = rates.series(Series::new(
                "offered",
                Style::Ideal,
                xs.iter().map(|&x| Point::new(x, x * self.capacity_per_s)).collect(),
            ));
            rates = rates.series(Series::new(
                "served",
                Style::Measured,
                rows.iter().map(|r| Point::new(r.load, r.served_per_s)).collect(),
            ));
            rates = rates.series(Series::new(
                "shed (BUSY)",
                Style::Measured,
                rows.iter().map(|r| Point::new(r.load, r.shed_per_s)).collect(),
            ));
        }
        let rates = rates.note(format!(
            "{} slots × {} ms service (capacity measured: {}/s); bounded queue: {} waiting at most. Each load \
             offered for {} ms in an open loop over {} connections; rates over the time to the last answer.",
            p.slots,
            p.service_ms,
            fmt_num(self.capacity_per_s),
            p.queue,
            p.duration_ms,
            p.connections
        ));
        let mut lat = Figure::lines(
            "p99 latency of served requests vs offered load",
            "offered load (× measured capacity)",
            "p99 latency from the intended send time (µs, log scale)",
        )
        .linear_x()
        .log_y();
        for &mode in &p.modes {
            let pts = self.rows_of(mode).iter().map(|r| Point::new(r.load, r.p99_us.max(1.0))).collect();
            lat = lat.series(Series::new(mode.label(), Style::Measured, pts));
        }
        let svc = self.real_service_us();
        let xs: Vec<f64> = self.rows_of(p.modes[0]).iter().map(|r| r.load).collect();
        lat =
            lat.series(Series::new("one service time", Style::Ideal, xs.iter().map(|&x| Point::new(x, svc)).collect()));
        let lat = lat.note(format!(
            "Latency counts from each request's due time (open loop), so time spent queued — in the server or for a \
             client connection — is in it, and so is up to 1 ms of the client's timer tick. Without protection the p99 keeps growing with the overload's duration \
             ({} ms here).",
            p.duration_ms
        ));
        vec![mark_busy(rates, &self.load), mark_busy(lat, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Overload: one row per protection and offered load",
            &[
                "protection",
                "load ×",
                "offered /s",
                "sent",
                "served",
                "shed",
                "shed %",
                "errors",
                "served /s",
                "p50 µs",
                "p99 µs",
                "max µs",
                "BUSY p50 µs",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                r.mode.name().to_string(),
                fmt_num(r.load),
                fmt_num(r.offered_per_s),
                r.sent.to_string(),
                r.served.to_string(),
                r.shed.to_string(),
                fmt_num(100.0 * r.shed_fraction()),
                r.errors.to_string(),
                fmt_num(r.served_per_s),
                fmt_num(r.p50_us),
                fmt_num(r.p99_us),
                fmt_num(r.max_us),
                fmt_num(r.shed_p50_us),
            ]);
        }
        t.note(format!(
            "Capacity measured at {}/s ({} slots × {} ms). Latency of served requests from their due time; HDR \
             histogram, 3 significant digits.",
            fmt_num(self.capacity_per_s),
            self.params.slots,
            self.params.service_ms
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "overload",
        super::NOTEBOOK,
        "offered load past a server's capacity: an unbounded queue vs a Semaphore limit with a bounded queue or shedding",
        overload,
    )]
}

crate::impl_params!(Overload);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_refuses_bad_parameters() {
        let e = Overload { loads: vec![], ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("0.1..=5"), "{e}");
        assert!(Overload { loads: vec![1.0, 1.0], ..Default::default() }.validate().is_err());
        assert!(Overload { modes: vec![], ..Default::default() }.validate().is_err());
        assert!(Overload { slots: 0, ..Default::default() }.validate().is_err());
        assert!(Overload { service_ms: 0, ..Default::default() }.validate().is_err());
        let e = Overload { connections: 12, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("slots + queue"), "{e}");
        let e = Overload { slots: 256, service_ms: 1, connections: 300, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("requests/s"), "{e}");
        assert!(Overload::default().validate().is_ok());
        assert!(Overload::default().estimate() < Duration::from_secs(8));
    }

    #[test]
    fn past_capacity_an_unbounded_queue_grows_and_shedding_bounds_it() {
        let p = Overload {
            loads: vec![0.5, 3.0],
            modes: vec![Protection::None, Protection::Shed],
            duration_ms: 200,
            ..Default::default()
        };
        let r = overload(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in &r.rows {
            assert_eq!(row.errors, 0, "{row:?}");
            assert_eq!(row.served + row.shed, row.sent, "{row:?}");
        }
        let none = r.top(Protection::None).unwrap();
        let shed = r.top(Protection::Shed).unwrap();
        // No protection never refuses; at 3× capacity shedding refuses most requests
        // (2/3 must go) — counts, not timings.
        assert_eq!(none.shed, 0, "{none:?}");
        assert!(shed.shed_fraction() > 0.3, "{shed:?}");
        // 200 ms at 3×: the backlog is ~400 ms of work; shedding stays near one service time.
        assert!(none.max_us > 5.0 * shed.p99_us, "{none:?} {shed:?}");
        assert!(r.findings().len() >= 4);
        assert_eq!(r.figures().len(), 2);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("shed %"));
    }
}
