//! A load generator for the line-echo servers: tokio clients that hold `connections`
//! connections and send `req <n>\n` lines, recording each round trip's latency (µs) in an
//! HDR histogram (`hdrhistogram`: fixed relative precision, 3 significant digits, from
//! 1 µs to 60 s).
//!
//! - Closed loop ([`closed_loop`]): each connection sends its next request when the
//!   previous answer arrived. The load adapts to the server: latency here is mostly
//!   queueing (every connection has one request waiting), and a stalled server simply
//!   receives fewer requests.
//! - Open loop ([`open_loop`]): requests are due at a fixed rate whatever the server
//!   does, and latency is measured from each request's *intended* send time. A request
//!   that waits for a free connection (the server is slow) counts that wait: no
//!   coordinated omission, which a closed loop, or an open loop timing from the actual
//!   send, would hide.
//!
//! Every step is bounded: connects and round trips have timeouts, the number of requests
//! is fixed, and a run stops issuing requests at its time limit.

use crate::lab::rt::{self, Rt};
use crate::lab::{LabError, ParamError, RunError, check_range};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Concurrent connects per batch: the accept queue never overflows.
const CONNECT_BATCH: usize = 256;
/// Descriptors kept free for everything else the process does.
pub const FD_MARGIN: usize = 64;
/// The most requests one run may send.
pub const MAX_REQUESTS: u64 = 2_000_000;

/// What one load run measured. Latencies are in µs, from the HDR histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadResult {
    /// Connections that were open for the run.
    pub connections: usize,
    /// Round trips answered correctly.
    pub requests: u64,
    /// Connects or round trips that failed or timed out.
    pub errors: u64,
    /// The first error, with its cause.
    pub first_error: Option<String>,
    /// From the first request to the last answer, ms.
    pub elapsed_ms: f64,
    /// Answered requests per second.
    pub throughput_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// One client connection: a buffered reader over the stream (answers are lines).
#[derive(Debug)]
pub(crate) struct Conn {
    io: BufReader<TcpStream>,
    line: Vec<u8>,
    out: Vec<u8>,
}

/// Latencies and errors collected by tasks, merged into one histogram at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub samples: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    pub(crate) fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    pub(crate) fn merge(&mut self, o: Tally) {
        self.samples.extend(o.samples);
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    /// The run's summary over `elapsed`.
    pub(crate) fn result(&self, connections: usize, elapsed: Duration) -> LoadResult {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        for &s in &self.samples {
            h.saturating_record(u64::from(s.max(1)));
        }
        let q = |x: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(x) as f64 };
        let secs = elapsed.as_secs_f64();
        LoadResult {
            connections,
            requests: self.samples.len() as u64,
            errors: self.errors,
            first_error: self.first_error.clone(),
            elapsed_ms: secs * 1e3,
            throughput_per_s: if secs > 0.0 { self.samples.len() as f64 / secs } else { 0.0 },
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0.0 } else { h.max() as f64 },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
        }
    }
}

/// Descriptors open in this process now (`/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count().saturating_sub(1)).unwrap_or(0)
}

/// How many loopback connections this process can hold at once with both ends in it
/// (client and server side: 2 descriptors each), after raising the soft `RLIMIT_NOFILE`
/// to the hard one; and the sentence naming the limit.
pub fn connection_room() -> (usize, String) {
    let soft = crate::lab::limits::Limits::raise_nofile();
    let open = open_fds();
    let room = soft.saturating_sub(open + FD_MARGIN) / 2;
    let why = format!(
        "RLIMIT_NOFILE = {soft} descriptors (soft limit raised to the hard one), {open} already open, \
         {FD_MARGIN} kept free, and each loopback connection costs 2 in this process (client and server side)"
    );
    (room, why)
}

/// Like [`connection_room`] for a load generator whose runtime has a descriptor table
/// of its own ([`Rt::own_fd_table`]): each connection then costs 1 descriptor in this
/// process's table (the server's end) and 1 in the client's, which starts nearly empty.
/// `None` where this kernel gives no thread a table of its own.
pub fn connection_room_apart() -> Option<(usize, String)> {
    if !crate::lab::os::own_fd_tables_work() {
        return None;
    }
    let soft = crate::lab::limits::Limits::raise_nofile();
    let open = open_fds();
    let room = soft.saturating_sub(open + FD_MARGIN);
    let why = format!(
        "RLIMIT_NOFILE = {soft} descriptors (soft limit raised to the hard one), {open} already open, \
         {FD_MARGIN} kept free; the server's end of each connection costs 1 of them, the client's end 1 in the \
         load generator's own descriptor table"
    );
    Some((room, why))
}

/// Opens `n` connections to `addr`, `CONNECT_BATCH` at a time, each connect bounded by
/// `timeout`. Failures are tallied, not fatal.
pub(crate) async fn connect_all(addr: SocketAddr, n: usize, timeout: Duration) -> (Vec<Conn>, Tally) {
    let mut conns = Vec::with_capacity(n);
    let mut tally = Tally::default();
    let mut left = n;
    while left > 0 {
        let batch = left.min(CONNECT_BATCH);
        left -= batch;
        let tries = (0..batch).map(|_| tokio::time::timeout(timeout, TcpStream::connect(addr)));
        for r in futures::future::join_all(tries).await {
            match r {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    conns.push(Conn { io: BufReader::with_capacity(256, s), line: Vec::new(), out: Vec::new() });
                }
                Ok(Err(e)) => tally.error(format!("connecting to {addr}: {e}")),
                Err(_) => tally.error(format!("connecting to {addr}: no answer within {} ms", timeout.as_millis())),
            }
        }
    }
    (conns, tally)
}

/// Opens one connection to `addr` within `timeout`.
pub(crate) async fn connect_one(addr: SocketAddr, timeout: Duration) -> Result<Conn, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(Conn { io: BufReader::with_capacity(256, s), line: Vec::new(), out: Vec::new() })
        }
        Ok(Err(e)) => Err(format!("connecting to {addr}: {e}")),
        Err(_) => Err(format!("connecting to {addr}: no answer within {} ms", timeout.as_millis())),
    }
}

/// One request to a server that may refuse it: `Ok(true)` for the echo, `Ok(false)` for
/// the server's `BUSY` answer (see `server::Service`).
pub(crate) async fn ask(c: &mut Conn, id: u64, timeout: Duration) -> Result<bool, String> {
    match round_trip(c, id, timeout).await {
        Ok(()) => Ok(true),
        Err(_) if c.line == crate::experiments::case_study::server::BUSY => Ok(false),
        Err(e) => Err(e),
    }
}

/// One request: send `req <id>\n`, read the answer line, check it is the echo.
async fn round_trip(c: &mut Conn, id: u64, timeout: Duration) -> Result<(), String> {
    c.line.clear();
    let step = async {
        c.out.clear();
        c.out.extend_from_slice(format!("req {id}\n").as_bytes());
        c.io.get_mut().write_all(&c.out).await.map_err(|e| format!("sending a request: {e}"))?;
        c.line.clear();
        let n = c.io.read_until(b'\n', &mut c.line).await.map_err(|e| format!("reading an answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".to_string());
        }
        if c.line != c.out {
            return Err(format!("the answer was {:?}, not the echo", String::from_utf8_lossy(&c.line)));
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, step).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// Closed loop on connections already open: each sends `per_conn` requests one after the
/// other (none after `until`). Returns the connections that are still good, the tally and
/// the time from the start to the last answer.
pub(crate) async fn closed_loop_on(
    conns: Vec<Conn>,
    per_conn: usize,
    until: Instant,
    timeout: Duration,
) -> (Vec<Conn>, Tally, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, mut c) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut t = Tally { samples: Vec::with_capacity(per_conn), ..Default::default() };
            for k in 0..per_conn {
                if Instant::now() >= until {
                    break;
                }
                let sent = Instant::now();
                match round_trip(&mut c, (i * per_conn + k) as u64, timeout).await {
                    Ok(()) => t.samples.push(micros(sent.elapsed())),
                    Err(e) => {
                        t.error(e);
                        return (None, t);
                    }
                }
            }
            (Some(c), t)
        }));
    }
    let mut kept = Vec::with_capacity(tasks.len());
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok((c, t)) => {
                kept.extend(c);
                tally.merge(t);
            }
            Err(e) => tally.error(format!("a client task failed: {e}")),
        }
    }
    (kept, tally, start.elapsed())
}

/// Open loop on connections already open: `total` requests due every `1 / rate` s from
/// now; each is sent on the next free connection, and its latency counts from its due time.
pub(crate) async fn open_loop_on(conns: Vec<Conn>, rate: f64, total: u64, timeout: Duration) -> (Tally, Duration) {
    let start = tokio::time::Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, tokio::time::Instant)>(total.clamp(1, 65_536) as usize);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::with_capacity(conns.len());
    for mut c in conns {
        let rx = Arc::clone(&rx);
        workers.push(tokio::spawn(async move {
            let mut t = Tally::default();
            loop {
                let next = rx.lock().await.recv().await;
                let Some((id, due)) = next else { break };
                match round_trip(&mut c, id, timeout).await {
                    Ok(()) => t.samples.push(micros(due.elapsed())),
                    Err(e) => {
                        // This connection is done; the others take the rest.
                        t.error(e);
                        break;
                    }
                }
            }
            t
        }));
    }
    let dispatch = async move {
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due).await;
            if tx.send((i, due)).await.is_err() {
                break;
            }
        }
    };
    dispatch.await;
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => tally.merge(t),
            Err(e) => tally.error(format!("a client task failed: {e}")),
        }
    }
    // Requests no connection was left to send.
    let mut rx = rx.lock().await;
    while rx.try_recv().is_ok() {
        tally.error("no connection left to send the request on".into());
    }
    (tally, start.elapsed())
}

fn check_connections(connections: usize) -> Result<(), ParamError> {
    check_range("connections", connections, 1..=100_000)?;
    let (room, why) = connection_room();
    if connections > room {
        return Err(ParamError::new("connections", format!("at most {room} on this machine ({why})"), connections));
    }
    Ok(())
}

/// Parameters of [`closed_loop`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedLoop {
    /// Connections held open at once: 1..=100000, and what `RLIMIT_NOFILE` allows.
    pub connections: usize,
    /// Requests each connection sends, one after the other: 1..=100000.
    pub requests_per_conn: usize,
    /// No request is sent after this long: 1 ms..=120 s.
    pub max_duration: Duration,
    /// Each connect and each round trip: 1 ms..=60 s.
    pub timeout: Duration,
}

impl Default for ClosedLoop {
    fn default() -> Self {
        ClosedLoop {
            connections: 10,
            requests_per_conn: 100,
            max_duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

fn check_durations(max_duration: Duration, timeout: Duration) -> Result<(), ParamError> {
    check_range("max_duration_ms", max_duration.as_millis() as u64, 1..=120_000)?;
    check_range("timeout_ms", timeout.as_millis() as u64, 1..=60_000)
}

/// Opens `connections` connections to `addr` and runs a closed loop on them (see the
/// module docs) on a fresh 2-worker tokio runtime; the connections are closed before it
/// returns.
///
/// ```no_run
/// use conclab::experiments::case_study::load::{ClosedLoop, closed_loop};
/// use conclab::experiments::case_study::server::{ServerKind, ServerOpts, start_server};
/// let server = start_server(ServerKind::Tokio, &ServerOpts::default()).unwrap();
/// let r = closed_loop(server.addr(), &ClosedLoop { connections: 50, ..Default::default() }).unwrap();
/// println!("{} req/s, p99 {} µs", r.throughput_per_s, r.p99_us);
/// server.shutdown(std::time::Duration::from_secs(1));
/// ```
pub fn closed_loop(addr: SocketAddr, p: &ClosedLoop) -> Result<LoadResult, LabError> {
    check_connections(p.connections)?;
    check_range("requests_per_conn", p.requests_per_conn, 1..=100_000)?;
    check_durations(p.max_duration, p.timeout)?;
    let total = p.connections as u64 * p.requests_per_conn as u64;
    if total > MAX_REQUESTS {
        return Err(ParamError::new(
            "connections × requests_per_conn",
            format!("at most {MAX_REQUESTS} requests in all"),
            total,
        )
        .into());
    }
    let p = p.clone();
    let limit = p.max_duration + p.timeout * 3 + Duration::from_secs(5);
    let out = rt::run(Rt::multi(2).timeout(limit), move || async move {
        let (conns, mut tally) = connect_all(addr, p.connections, p.timeout).await;
        let held = conns.len();
        let (_kept, t, took) =
            closed_loop_on(conns, p.requests_per_conn, Instant::now() + p.max_duration, p.timeout).await;
        tally.merge(t);
        tally.result(held, took)
    });
    out.map_err(|e| RunError::new("the closed-loop client", e).into())
}

/// Parameters of [`open_loop`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenLoop {
    /// Requests due per second: 1..=200000.
    pub rate_per_s: f64,
    /// How long requests keep coming: 1 ms..=120 s (rate × duration at most 2 000 000).
    pub duration: Duration,
    /// Connections the requests are spread over (a request waits for a free one):
    /// 1..=100000, and what `RLIMIT_NOFILE` allows.
    pub connections: usize,
    /// Each connect and each round trip: 1 ms..=60 s.
    pub timeout: Duration,
}

impl Default for OpenLoop {
    fn default() -> Self {
        OpenLoop {
            rate_per_s: 1000.0,
            duration: Duration::from_secs(1),
            connections: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Sends requests to `addr` at a fixed rate over `connections` connections and measures
/// latency from each request's intended send time (see the module docs), on a fresh
/// 2-worker tokio runtime; the connections are closed before it returns.
pub fn open_loop(addr: SocketAddr, p: &OpenLoop) -> Result<LoadResult, LabError> {
    if !(p.rate_per_s.is_finite() && (1.0..=200_000.0).contains(&p.rate_per_s)) {
        return Err(ParamError::new("rate_per_s", "1..=200000 requests per second", p.rate_per_s).into());
    }
    check_connections(p.connections)?;
    check_durations(p.duration, p.timeout)?;
    let total = (p.rate_per_s * p.duration.as_secs_f64()).round().max(1.0) as u64;
    if total > MAX_REQUESTS {
        return Err(
            ParamError::new("rate_per_s × duration", format!("at most {MAX_REQUESTS} requests in all"), total).into()
        );
    }
    let p = p.clone();
    // If the server stalls, queued requests fail one timeout per connection at a time.
    let limit = p.duration + p.timeout * 3 + Duration::from_secs(5);
    let out = rt::run(Rt::multi(2).timeout(limit), move || async move {
        let (conns, mut tally) = connect_all(addr, p.connections, p.timeout).await;
        let held = conns.len();
        let (t, took) = open_loop_on(conns, p.rate_per_s, total, p.timeout).await;
        tally.merge(t);
        tally.result(held, took)
    });
    out.map_err(|e| RunError::new("the open-loop client", e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::case_study::server::{ServerKind, ServerOpts, start_server};

    #[test]
    fn both_loops_measure_every_request_against_a_tokio_server() {
        let server = start_server(ServerKind::Tokio, &ServerOpts::default()).unwrap();
        let r = closed_loop(server.addr(), &ClosedLoop { connections: 8, requests_per_conn: 20, ..Default::default() })
            .unwrap();
        assert_eq!((r.connections, r.requests, r.errors), (8, 160, 0), "{r:?}");
        assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us, "{r:?}");
        let o = open_loop(
            server.addr(),
            &OpenLoop {
                rate_per_s: 2000.0,
                duration: Duration::from_millis(100),
                connections: 4,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((o.requests, o.errors), (200, 0), "{o:?}");
        // At a fixed rate, 200 requests take at least the 100 ms they are spread over.
        assert!(o.elapsed_ms >= 99.0, "{o:?}");
        let report = server.shutdown(Duration::from_secs(1));
        assert_eq!(report.accepted, 12, "{report:?}");
    }

    #[test]
    fn bad_load_parameters_are_refused_and_name_the_limit() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let e = closed_loop(addr, &ClosedLoop { connections: 0, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("1..=100000"), "{e}");
        let e = closed_loop(addr, &ClosedLoop { connections: 100_000, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
        let e = open_loop(addr, &OpenLoop { rate_per_s: f64::NAN, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("rate_per_s"), "{e}");
    }
}
