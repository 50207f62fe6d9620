//! Streams: the async iterator. A [`Stream`] is polled like a future, but yields many
//! items: `poll_next` answers `Ready(Some(item))`, `Ready(None)` (the end) or `Pending`
//! (after arranging a wake-up). Two hand-written ones ([`CountStream`], [`TickStream`]),
//! a tour of the combinators on a paused clock ([`combinator_tour`]), and the experiment
//! [`stream_buffering`]: `buffered(k)` and `buffer_unordered(k)` over simulated requests
//! with a latency tail, throughput and latency against `k`, with Little's law
//! (throughput = requests in flight ÷ mean latency) as the prediction.

use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rng::Rng;
use crate::lab::rt::{Rt, RtError};
use crate::lab::timing::quantile_sorted;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, check_list,
    check_range, fmt_num,
};
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Hand-written streams
// ---------------------------------------------------------------------------------------

/// A stream that yields `0, 1, …, n-1` and ends: the smallest hand-written [`Stream`].
/// It is always ready (it never returns `Pending`), so it needs no waker; its
/// `size_hint` is exact, which lets `collect` reserve room.
///
/// ```
/// use conclab::experiments::advanced::streams::CountStream;
/// use futures::StreamExt;
/// let v: Vec<u64> = futures::executor::block_on(CountStream::new(4).map(|x| x * 10).collect());
/// assert_eq!(v, [0, 10, 20, 30]);
/// ```
#[derive(Debug, Clone)]
pub struct CountStream {
    next: u64,
    n: u64,
}

impl CountStream {
    /// A stream of `0..n`.
    pub fn new(n: u64) -> CountStream {
        CountStream { next: 0, n }
    }
}

impl Stream for CountStream {
    type Item = u64;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next < self.n {
            let i = self.next;
            self.next += 1;
            Poll::Ready(Some(i))
        } else {
            Poll::Ready(None)
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.n - self.next) as usize;
        (left, Some(left))
    }
}

/// A stream that yields `0, 1, …, count-1`, one every `period`, then ends. It holds a
/// pinned `tokio::time::Sleep`: polling that sleep before its deadline registers the
/// task's waker with tokio's timer and returns `Pending`; when the deadline passes, the
/// timer wakes the task, the next `poll_next` finds the sleep ready, yields the tick and
/// moves the deadline one period on (from the old deadline, so late polls do not drift).
/// Needs a tokio runtime with the timer enabled.
#[derive(Debug)]
pub struct TickStream {
    sleep: Pin<Box<tokio::time::Sleep>>,
    period: Duration,
    next: u64,
    count: u64,
}

impl TickStream {
    /// `count` ticks, the first one `period` from now. Must be called inside a tokio runtime.
    pub fn new(period: Duration, count: u64) -> TickStream {
        TickStream { sleep: Box::pin(tokio::time::sleep(period)), period, next: 0, count }
    }
}

impl Stream for TickStream {
    type Item = u64;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next >= self.count {
            return Poll::Ready(None);
        }
        // Pending here means the sleep has stored cx's waker with the timer.
        match self.sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                let next_deadline = self.sleep.deadline() + self.period;
                self.sleep.as_mut().reset(next_deadline);
                let i = self.next;
                self.next += 1;
                Poll::Ready(Some(i))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.next) as usize;
        (left, Some(left))
    }
}

/// Collects a stream's items with the (tokio) time each arrived, in ms since `t0`.
async fn timed<S: Stream>(s: S, t0: tokio::time::Instant) -> Vec<(S::Item, f64)> {
    let mut s = std::pin::pin!(s);
    let mut out = Vec::new();
    while let Some(x) = s.next().await {
        out.push((x, t0.elapsed().as_secs_f64() * 1e3));
    }
    out
}

fn show<T: std::fmt::Debug>(items: &[(T, f64)]) -> (String, String) {
    let v: Vec<String> = items.iter().map(|(x, _)| format!("{x:?}")).collect();
    let t: Vec<String> = items.iter().map(|(_, ms)| fmt_num(*ms)).collect();
    (v.join(", "), t.join(", "))
}

/// Runs a few stream pipelines on a paused tokio clock (virtual time: nothing really
/// sleeps) and tabulates what each stage yields and when. Each row
/// is its own pipeline, one combinator longer than the row before (the timer rows start
/// afresh). The output is computed, not typed in: change the code, the table follows.
pub fn combinator_tour() -> Result<Table, RtError> {
    let rt = Rt::current().timeout(Duration::from_secs(60));
    let rows = crate::lab::rt::run_paused(rt, || async {
        let t = tokio::time::Instant::now;
        let mut rows: Vec<(&str, (String, String))> = Vec::new();
        let t0 = t();
        rows.push(("CountStream::new(8)", show(&timed(CountStream::new(8), t0).await)));
        let t0 = t();
        rows.push((".map(|x| x * x)", show(&timed(CountStream::new(8).map(|x| x * x), t0).await)));
        let t0 = t();
        let even = CountStream::new(8).map(|x| x * x).filter(|x| futures::future::ready(x % 2 == 0));
        rows.push((".filter(|x| ready(x % 2 == 0))", show(&timed(even, t0).await)));
        let t0 = t();
        let then =
            CountStream::new(8).map(|x| x * x).filter(|x| futures::future::ready(x % 2 == 0)).then(|x| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                x + 1
            });
        rows.push((".then(|x| async { sleep(10 ms); x + 1 })", show(&timed(then, t0).await)));
        let t0 = t();
        let chunks = CountStream::new(8)
            .map(|x| x * x)
            .filter(|x| futures::future::ready(x % 2 == 0))
            .then(|x| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                x + 1
            })
            .chunks(3);
        rows.push((".chunks(3)", show(&timed(chunks, t0).await)));
        let t0 = t();
        rows.push(("TickStream::new(25 ms, 4)", show(&timed(TickStream::new(Duration::from_millis(25), 4), t0).await)));
        let t0 = t();
        let throttled = tokio_stream::StreamExt::throttle(CountStream::new(4), Duration::from_millis(20));
        rows.push(("throttle(CountStream::new(4), 20 ms)", show(&timed(throttled, t0).await)));
        let t0 = t();
        let reqs = CountStream::new(4).map(|i| async move {
            // Request i takes (4 - i) × 10 ms: the first is the slowest.
            tokio::time::sleep(Duration::from_millis((4 - i) * 10)).await;
            i
        });
        rows.push((
            "CountStream(4).map(req i takes (4-i)×10 ms).buffered(4)",
            show(&timed(reqs.buffered(4), t0).await),
        ));
        let t0 = t();
        let reqs = CountStream::new(4).map(|i| async move {
            tokio::time::sleep(Duration::from_millis((4 - i) * 10)).await;
            i
        });
        rows.push((".buffer_unordered(4) instead", show(&timed(reqs.buffer_unordered(4), t0).await)));
        rows
    })?;
    let mut table = Table::new("What each stream stage yields, and when", &["stage", "items", "at (virtual ms)"]);
    for (stage, (items, at)) in rows {
        table.row(vec![stage.to_string(), items, at]);
    }
    table.note(
        "A paused tokio clock: when every task waits, virtual time jumps to the next timer, so nothing really \
         sleeps, and each sleep ends exactly at its deadline (on the real clock a sleep ends on the first 1 ms \
         timer tick after it). `then` runs one future at a time; `buffered` and \
         `buffer_unordered` run up to k at once.",
    );
    Ok(table)
}

// ---------------------------------------------------------------------------------------
// The experiment
// ---------------------------------------------------------------------------------------

/// Parameters of [`stream_buffering`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamBuffering {
    /// How many requests may be in flight at once (`k` of `buffered(k)`): 1..=12 distinct
    /// values, each 1..=256.
    pub ks: Vec<usize>,
    /// Requests per run (the same list, in the same order, for every k and mode): 1..=5000.
    pub requests: usize,
    /// A fast request takes `base_ms` × 0.5..1.5 (uniform), ms: 1..=1000.
    pub base_ms: u64,
    /// A slow request takes `slow_ms` × 0.8..1.2, ms: 1..=5000.
    pub slow_ms: u64,
    /// Percent of requests that are slow: 0..=100.
    pub slow_pct: u32,
    /// Seed of the request list (same seed, same list): 0..=1000000.
    pub seed: u64,
}

impl Default for StreamBuffering {
    fn default() -> Self {
        StreamBuffering {
            ks: vec![1, 2, 4, 8, 16, 32, 64],
            requests: 200,
            base_ms: 5,
            slow_ms: 50,
            slow_pct: 10,
            seed: 1,
        }
    }
}

impl StreamBuffering {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("ks", &self.ks, 12, 1..=256)?;
        check_range("requests", self.requests, 1..=5000)?;
        check_range("base_ms", self.base_ms, 1..=1000)?;
        check_range("slow_ms", self.slow_ms, 1..=5000)?;
        check_range("slow_pct", self.slow_pct, 0..=100)?;
        check_range("seed", self.seed, 0..=1_000_000)?;
        check_estimate("requests × mean latency ÷ k, summed over ks, × 2 modes", self.estimate())
    }

    /// The mean requested latency, ms.
    pub fn mean_ms(&self) -> f64 {
        let p = self.slow_pct as f64 / 100.0;
        (1.0 - p) * self.base_ms as f64 + p * self.slow_ms as f64
    }

    /// Per k and mode: `requests` × (mean latency + 1 ms of timer rounding) ÷ k, plus the
    /// slowest request once (the drain at the end); × 1.3 for head-of-line blocking.
    pub fn estimate(&self) -> Duration {
        let w = self.mean_ms() + 1.0;
        let slow = 1.2 * self.base_ms.max(self.slow_ms) as f64;
        let per_mode: f64 =
            self.ks.iter().map(|&k| self.requests as f64 * w / k.min(self.requests).max(1) as f64 + slow).sum();
        Duration::from_secs_f64(2.0 * 1.3 * per_mode / 1e3 + 0.05)
    }

    /// The requested latency of each request, in order: seeded, so every k and mode (and
    /// every run with the same parameters) sees the same list.
    pub fn request_latencies(&self) -> Vec<Duration> {
        let mut rng = Rng::new(self.seed);
        (0..self.requests)
            .map(|_| {
                let slow = rng.below(100) < self.slow_pct as u64;
                let us = if slow {
                    self.slow_ms * 1000 * (800 + rng.below(401)) / 1000
                } else {
                    self.base_ms * 1000 * (500 + rng.below(1001)) / 1000
                };
                Duration::from_micros(us.max(1))
            })
            .collect()
    }
}

/// Which buffering combinator runs the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Buffering {
    /// `.buffered(k)`: up to k in flight, results yielded in request order.
    Ordered,
    /// `.buffer_unordered(k)`: up to k in flight, results yielded as they finish.
    Unordered,
}

impl Buffering {
    /// Both, in the order they run.
    pub const ALL: [Buffering; 2] = [Buffering::Unordered, Buffering::Ordered];

    /// A short name for figures and tables.
    pub fn label(self) -> &'static str {
        match self {
            Buffering::Ordered => "buffered(k)",
            Buffering::Unordered => "buffer_unordered(k)",
        }
    }
}

/// One run: `requests` requests through one combinator with one k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BufferingRow {
    pub k: usize,
    pub mode: Buffering,
    /// From the first request's start to the consumer receiving the last result, ms.
    pub total_ms: f64,
    /// Requests per second: `requests` ÷ total.
    pub throughput: f64,
    /// Latency as the consumer sees it: from a request's start (its first poll) to the
    /// stream yielding its result, ms: median and 99th percentile.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Mean time in service (start to the request's own end), ms.
    pub mean_service_ms: f64,
    /// Mean requests in flight over the run: Σ service time ÷ total time (Little's L).
    pub mean_in_flight: f64,
    /// Most requests in flight at one time.
    pub max_in_flight: usize,
    /// The drain: from the last request's start to the consumer receiving the last
    /// result, ms. Fewer than k are in flight then.
    pub drain_ms: f64,
}

/// Result of [`stream_buffering`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamBufferingReport {
    pub params: StreamBuffering,
    pub rows: Vec<BufferingRow>,
    /// Mean in-service latency over every request of every run, ms: Little's W.
    pub mean_service_ms: f64,
    /// Mean requested latency of the request list, ms (the sleeps asked for).
    pub mean_requested_ms: f64,
    /// The slowest request asked for, ms: no run can end sooner.
    pub slowest_ms: f64,
    pub load: Load,
}

struct Done {
    start: Instant,
    end: Instant,
    yielded: Instant,
}

/// Runs the request list through `buffered(k)` or `buffer_unordered(k)` and records, per
/// request, when it started, ended, and reached the consumer.
async fn one_run(lat: Arc<Vec<Duration>>, k: usize, mode: Buffering) -> (Instant, Vec<Done>) {
    let t0 = Instant::now();
    let reqs = stream::iter(0..lat.len()).map(move |i| {
        let d = lat[i];
        async move {
            let start = Instant::now();
            tokio::time::sleep(d).await;
            (start, Instant::now())
        }
    });
    let mut out = Vec::new();
    let mut take = |(start, end): (Instant, Instant)| out.push(Done { start, end, yielded: Instant::now() });
    match mode {
        Buffering::Ordered => {
            let mut s = std::pin::pin!(reqs.buffered(k));
            while let Some(x) = s.next().await {
                take(x);
            }
        }
        Buffering::Unordered => {
            let mut s = std::pin::pin!(reqs.buffer_unordered(k));
            while let Some(x) = s.next().await {
                take(x);
            }
        }
    }
    (t0, out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn max_in_flight(done: &[Done]) -> usize {
    let mut ev: Vec<(Instant, i32)> = done.iter().flat_map(|d| [(d.start, 1), (d.end, -1)]).collect();
    // Ends before starts at the same instant.
    ev.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut best) = (0i32, 0i32);
    for (_, e) in ev {
        cur += e;
        best = best.max(cur);
    }
    best.max(0) as usize
}

/// For each k in `ks`, runs the same seeded list of `requests` simulated requests (tokio
/// sleeps: I/O-like waits, on a current-thread runtime) through
/// `stream::iter(..).map(request).buffer_unordered(k)` and `.buffered(k)`. Measures
/// throughput, the consumer's latency per request (p50, p99) and the mean number in
/// flight, against Little's law: throughput = min(k, requests) ÷ mean latency.
pub fn stream_buffering(p: &StreamBuffering) -> Result<StreamBufferingReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let lat = Arc::new(p.request_latencies());
    let mean_requested_ms = lat.iter().map(|d| ms(*d)).sum::<f64>() / lat.len() as f64;
    let slowest_ms = lat.iter().map(|d| ms(*d)).fold(0.0, f64::max);
    let mut rows = Vec::new();
    let (mut service_sum, mut service_n) = (0.0, 0usize);
    for &k in &p.ks {
        for mode in Buffering::ALL {
            let kk = k.min(p.requests);
            let guess = p.requests as f64 * (mean_requested_ms + 1.0) / kk as f64 + slowest_ms;
            let limit = Duration::from_secs_f64(5.0 * guess / 1e3) + Duration::from_secs(10);
            let l = lat.clone();
            let (t0, done) = crate::lab::rt::run(Rt::current().timeout(limit), move || one_run(l, k, mode))
                .map_err(|e| RunError::new(format!("{} with k = {k}", mode.label()), e))?;
            let last = done.iter().map(|d| d.yielded).max().unwrap_or(t0);
            let total_ms = ms(last.duration_since(t0)).max(1e-6);
            let last_start = done.iter().map(|d| d.start).max().unwrap_or(t0);
            let service: Vec<f64> = done.iter().map(|d| ms(d.end.duration_since(d.start))).collect();
            let svc_sum: f64 = service.iter().sum();
            service_sum += svc_sum;
            service_n += service.len();
            let mut seen: Vec<f64> = done.iter().map(|d| ms(d.yielded.duration_since(d.start))).collect();
            seen.sort_by(f64::total_cmp);
            rows.push(BufferingRow {
                k,
                mode,
                total_ms,
                throughput: done.len() as f64 / (total_ms / 1e3),
                p50_ms: quantile_sorted(&seen, 0.5),
                p99_ms: quantile_sorted(&seen, 0.99),
                mean_service_ms: svc_sum / service.len() as f64,
                mean_in_flight: svc_sum / total_ms,
                max_in_flight: max_in_flight(&done),
                drain_ms: ms(last.saturating_duration_since(last_start)),
            });
        }
    }
    Ok(StreamBufferingReport {
        params: p.clone(),
        rows,
        mean_service_ms: service_sum / service_n.max(1) as f64,
        mean_requested_ms,
        slowest_ms,
        load: probe.finish(),
    })
}

impl StreamBufferingReport {
    /// The run of one k and mode.
    pub fn row(&self, k: usize, mode: Buffering) -> Option<&BufferingRow> {
        self.rows.iter().find(|r| r.k == k && r.mode == mode)
    }

    /// Little's law's throughput at `k`, req/s: min(k, requests) ÷ the mean in-service latency.
    pub fn little(&self, k: usize) -> f64 {
        k.min(self.params.requests) as f64 / (self.mean_service_ms.max(1e-6) / 1e3)
    }

    /// No run can beat `requests` ÷ the slowest request, req/s: that request alone takes so long.
    pub fn ceiling(&self) -> f64 {
        self.params.requests as f64 / (self.slowest_ms.max(1e-6) / 1e3)
    }

    fn of(&self, mode: Buffering) -> Vec<&BufferingRow> {
        let mut v: Vec<&BufferingRow> = self.rows.iter().filter(|r| r.mode == mode).collect();
        v.sort_by_key(|r| r.k);
        v
    }
}

/// "10 % slow (50 ms × 0.8–1.2), the rest 5 ms × 0.5–1.5".
fn request_mix(p: &StreamBuffering) -> String {
    let fast = format!("{} ms × 0.5–1.5", p.base_ms);
    let slow = format!("{} ms × 0.8–1.2", p.slow_ms);
    match p.slow_pct {
        0 => format!("none slow, each {fast}"),
        100 => format!("all slow, each {slow}"),
        s => format!("{s} % slow ({slow}), the rest {fast}"),
    }
}

fn pct(x: f64) -> String {
    format!("{:.0} %", 100.0 * x)
}

impl Report for StreamBufferingReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let un = self.of(Buffering::Unordered);
        let ord = self.of(Buffering::Ordered);
        let Some(best) = un.iter().copied().max_by(|a, b| a.throughput.total_cmp(&b.throughput)) else {
            return out;
        };
        let ratio = |r: &BufferingRow| r.throughput / self.little(r.k);
        let largest = un.last().is_some_and(|l| l.k == best.k) && un.len() > 1;
        out.push(Finding::clear(format!(
            "buffer_unordered reached its best throughput, {} req/s, at k = {}{} — {} of Little's law's {} req/s \
             ({} in flight ÷ {} ms mean latency)",
            fmt_num(best.throughput),
            best.k,
            if largest { " (the largest k tried)" } else { "" },
            pct(ratio(best)),
            fmt_num(self.little(best.k)),
            best.k.min(p.requests),
            fmt_num(self.mean_service_ms)
        )));
        // Little's law within 20 %: the largest k up to which every smaller k holds.
        let held: Vec<&BufferingRow> = un.iter().copied().take_while(|r| ratio(r) >= 0.8).collect();
        let broke = un.iter().copied().find(|r| ratio(r) < 0.8);
        match (held.last(), broke) {
            (Some(h), Some(b)) => {
                let waves = p.requests as f64 / b.k.min(p.requests) as f64;
                let drain = if self.ceiling() < 1.2 * self.little(b.k) {
                    format!(
                        "; and no run can beat {} req/s, {} requests ÷ the slowest one ({} ms)",
                        fmt_num(self.ceiling()),
                        p.requests,
                        fmt_num(self.slowest_ms)
                    )
                } else {
                    String::new()
                };
                out.push(Finding::clear(format!(
                    "Little's law held within 20 % up to k = {} ({} of the prediction there); at k = {} the stream got \
                     {} ({} vs {} req/s). The prediction takes L = k in Little's L = λ·W, k requests in flight all the time; here L was {} \
                     of {} on average. A finite run ends with a drain: from the last request's start to the last result took \
                     {} of the {} ms ({}), with fewer and fewer in flight. {} requests are only {} waves of {}, so \
                     the larger k, the more the drain weighs{drain}",
                    h.k,
                    pct(ratio(h)),
                    b.k,
                    pct(ratio(b)),
                    fmt_num(b.throughput),
                    fmt_num(self.little(b.k)),
                    fmt_num(b.mean_in_flight),
                    b.k.min(p.requests),
                    fmt_num(b.drain_ms),
                    fmt_num(b.total_ms),
                    pct(b.drain_ms / b.total_ms),
                    p.requests,
                    fmt_num(waves),
                    b.k.min(p.requests)
                )));
            }
            (None, Some(b)) => out.push(Finding::unclear(format!(
                "Little's law did not hold within 20 % even at k = {} ({} of the prediction, {} of {} in flight on \
                 average): compare the load line — a busy machine delays the wake-ups, and each sleep ends on tokio's \
                 1 ms timer tick",
                b.k,
                pct(ratio(b)),
                fmt_num(b.mean_in_flight),
                b.k.min(p.requests)
            ))),
            (Some(h), None) => out.push(Finding::clear(format!(
                "Little's law held within 20 % at every k up to {} (worst {}): the buffer stayed nearly full for \
                 the whole run",
                h.k,
                pct(un.iter().map(|r| ratio(r)).fold(f64::MAX, f64::min))
            ))),
            (None, None) => {}
        }
        // Ordered vs unordered: the largest gap.
        let gaps: Vec<(&BufferingRow, &BufferingRow)> = un
            .iter()
            .filter_map(|u| ord.iter().find(|o| o.k == u.k).map(|o| (*u, *o)))
            .filter(|(u, _)| u.k > 1)
            .collect();
        if let Some((u, o)) = gaps
            .iter()
            .copied()
            .max_by(|a, b| (a.0.throughput / a.1.throughput).total_cmp(&(b.0.throughput / b.1.throughput)))
        {
            let x = u.throughput / o.throughput.max(1e-9);
            if x >= 1.1 {
                out.push(Finding::clear(format!(
                    "at k = {}, buffer_unordered did {} req/s and buffered {} ({}× less): buffered yields in request \
                     order, so a slower request holds every finished one behind it, and those still take slots of the k \
                     — on average {} in flight instead of {} (head-of-line blocking)",
                    u.k,
                    fmt_num(u.throughput),
                    fmt_num(o.throughput),
                    fmt_num(x),
                    fmt_num(o.mean_in_flight),
                    fmt_num(u.mean_in_flight)
                )));
            } else if p.slow_pct == 0 || p.slow_pct == 100 {
                out.push(Finding::clear(format!(
                    "buffered and buffer_unordered kept within {} of each other at every k > 1: with {} requests \
                     slow, latencies vary only {}, so a request rarely waits long behind an earlier one",
                    pct(x - 1.0),
                    if p.slow_pct == 0 { "no" } else { "all" },
                    if p.slow_pct == 0 { "0.5–1.5 × base_ms" } else { "0.8–1.2 × slow_ms" }
                )));
            } else {
                out.push(Finding::unclear(format!(
                    "buffered and buffer_unordered kept within {} of each other at every k > 1, though {} % of \
                     requests were slow: compare slow_ms with base_ms — head-of-line blocking costs little when \
                     the slow ones are not much slower",
                    pct(x - 1.0),
                    p.slow_pct
                )));
            }
        }
        // Latency the consumer sees.
        if let (Some(u_last), Some(o_last), Some(o_first)) = (un.last(), ord.last(), ord.first())
            && ord.len() > 1
        {
            let (u_lo, u_hi) = un.iter().fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(r.p50_ms), hi.max(r.p50_ms)));
            if o_last.p50_ms > 1.5 * u_last.p50_ms && o_last.p50_ms > 1.5 * o_first.p50_ms {
                let theirs = if u_hi < 1.3 * u_lo {
                    format!("buffer_unordered's stayed at {}–{} ms", fmt_num(u_lo), fmt_num(u_hi))
                } else {
                    format!("buffer_unordered's was {} ms at k = {}", fmt_num(u_last.p50_ms), u_last.k)
                };
                out.push(Finding::clear(format!(
                    "buffered's median latency grew with k, {} ms at k = {} to {} ms at k = {}, while {theirs}: with \
                     more in flight, a result more often waits for a slower request started before it ({} % are slow \
                     here)",
                    fmt_num(o_first.p50_ms),
                    o_first.k,
                    fmt_num(o_last.p50_ms),
                    o_last.k,
                    p.slow_pct
                )));
            } else {
                out.push(Finding::note(format!(
                    "median latency at k = {}: buffered {} ms, buffer_unordered {} ms (p99 {} vs {} ms); at k = {} \
                     buffered's median was {} ms",
                    o_last.k,
                    fmt_num(o_last.p50_ms),
                    fmt_num(u_last.p50_ms),
                    fmt_num(o_last.p99_ms),
                    fmt_num(u_last.p99_ms),
                    o_first.k,
                    fmt_num(o_first.p50_ms)
                )));
            }
        }
        let extra = self.mean_service_ms - self.mean_requested_ms;
        out.push(Finding::note(format!(
            "each request asked for {} ms on average and was in service {} ms ({}{} ms): a tokio sleep ends on \
             the timer's next 1 ms tick at the earliest, and later when the thread is busy; the prediction line uses \
             the measured {} ms",
            fmt_num(self.mean_requested_ms),
            fmt_num(self.mean_service_ms),
            if extra >= 0.0 { "+" } else { "" },
            fmt_num(extra),
            fmt_num(self.mean_service_ms)
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let un = self.of(Buffering::Unordered);
        let ord = self.of(Buffering::Ordered);
        let ks: Vec<usize> = un.iter().map(|r| r.k).collect();
        let mut f = Figure::lines(
            "Throughput vs requests in flight, against Little's law",
            "k: requests in flight at most (log scale)",
            "throughput (requests/s)",
        )
        .log_x();
        let pts = |rows: &[&BufferingRow]| rows.iter().map(|r| Point::new(r.k as f64, r.throughput)).collect();
        f = f.series(Series::new("buffer_unordered(k)", Style::Measured, pts(&un)));
        f = f.series(Series::new("buffered(k)", Style::Measured, pts(&ord)));
        let little = ks.iter().map(|&k| Point::new(k as f64, self.little(k))).collect();
        f = f.series(Series::new(
            format!("Little's law: min(k, {}) ÷ {} ms", p.requests, fmt_num(self.mean_service_ms)),
            Style::Ideal,
            little,
        ));
        if let (Some(&lo), Some(&hi)) = (ks.first(), ks.last()) {
            let c = self.ceiling();
            f = f.series(Series::new(
                format!("ceiling: {} requests ÷ slowest ({} ms)", p.requests, fmt_num(self.slowest_ms)),
                Style::Fit,
                vec![Point::new(lo as f64, c), Point::new(hi as f64, c)],
            ));
        }
        let f = f.note(format!(
            "{} simulated requests (tokio sleeps): {}; current-thread runtime.",
            p.requests,
            request_mix(p)
        ));
        let mut g = Figure::lines(
            "Latency the consumer sees, vs k",
            "k: requests in flight at most (log scale)",
            "latency from a request's start to its result reaching the consumer (ms)",
        )
        .log_x();
        let mut svc: Vec<f64> = self.rows.iter().map(|r| r.mean_service_ms).collect();
        svc.sort_by(f64::total_cmp);
        for (panel, pick) in [("p50", 0usize), ("p99", 1)] {
            g = g.panel(panel);
            let lat = |r: &BufferingRow| if pick == 0 { r.p50_ms } else { r.p99_ms };
            g = g.series(Series::new(
                "buffer_unordered(k)",
                Style::Measured,
                un.iter().map(|r| Point::new(r.k as f64, lat(r))).collect(),
            ));
            g = g.series(Series::new(
                "buffered(k)",
                Style::Measured,
                ord.iter().map(|r| Point::new(r.k as f64, lat(r))).collect(),
            ));
        }
        let g = g.note(format!(
            "Latency includes waiting to be yielded: buffered(k) hands results over in request order. A request's \
             own service takes {} ms on average.",
            fmt_num(self.mean_service_ms)
        ));
        vec![mark_busy(f, &self.load), mark_busy(g, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Buffered streams per k",
            &[
                "k",
                "combinator",
                "total ms",
                "req/s",
                "Little req/s",
                "measured ÷ Little",
                "mean in flight",
                "max in flight",
                "drain ms",
                "p50 ms",
                "p99 ms",
                "mean service ms",
            ],
        );
        for r in &self.rows {
            let l = self.little(r.k);
            t.row(vec![
                r.k.to_string(),
                r.mode.label().to_string(),
                fmt_num(r.total_ms),
                fmt_num(r.throughput),
                fmt_num(l),
                pct(r.throughput / l),
                fmt_num(r.mean_in_flight),
                r.max_in_flight.to_string(),
                fmt_num(r.drain_ms),
                fmt_num(r.p50_ms),
                fmt_num(r.p99_ms),
                fmt_num(r.mean_service_ms),
            ]);
        }
        t.note(format!(
            "{} requests, {} (seed {}); requested mean {} ms, measured in service {} ms; no run can beat {} req/s \
             (the slowest request, {} ms).",
            self.params.requests,
            request_mix(&self.params),
            self.params.seed,
            fmt_num(self.mean_requested_ms),
            fmt_num(self.mean_service_ms),
            fmt_num(self.ceiling()),
            fmt_num(self.slowest_ms)
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "stream-buffering",
        super::NOTEBOOK,
        "buffered(k) vs buffer_unordered(k) over requests with a latency tail: throughput and p50/p99 vs k, Little's law",
        stream_buffering,
    )]
}

crate::impl_params!(StreamBuffering);

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::ready;

    #[test]
    fn stream_buffering_refuses_bad_parameters() {
        assert!(stream_buffering(&StreamBuffering { ks: vec![], ..Default::default() }).is_err());
        let e = StreamBuffering { ks: vec![1, 300], ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=256"), "{e}");
        assert!(StreamBuffering { ks: vec![0], ..Default::default() }.validate().is_err());
        assert!(StreamBuffering { ks: vec![2, 2], ..Default::default() }.validate().is_err());
        assert!(StreamBuffering { ks: (1..=13).collect(), ..Default::default() }.validate().is_err());
        assert!(StreamBuffering { requests: 0, ..Default::default() }.validate().is_err());
        assert!(StreamBuffering { slow_pct: 101, ..Default::default() }.validate().is_err());
        assert!(StreamBuffering { base_ms: 0, ..Default::default() }.validate().is_err());
        // Too long: k = 1 over 5000 requests of ~1 s.
        assert!(
            StreamBuffering { ks: vec![1], requests: 5000, base_ms: 1000, ..Default::default() }.validate().is_err()
        );
        assert!(StreamBuffering::default().validate().is_ok());
        assert!(StreamBuffering::default().estimate() < Duration::from_secs(15));
    }

    #[test]
    fn the_request_list_is_seeded() {
        let p = StreamBuffering { requests: 1000, ..Default::default() };
        let (a, b) = (p.request_latencies(), p.request_latencies());
        assert_eq!(a, b);
        let slow = a.iter().filter(|d| **d >= Duration::from_millis(40)).count();
        assert!((50..=150).contains(&slow), "{slow} slow of 1000");
        assert_ne!(a, StreamBuffering { seed: 2, ..p }.request_latencies());
    }

    #[test]
    fn count_stream_with_combinators() {
        let s = CountStream::new(5);
        assert_eq!(s.size_hint(), (5, Some(5)));
        let v: Vec<u64> = futures::executor::block_on(CountStream::new(5).collect());
        assert_eq!(v, [0, 1, 2, 3, 4]);
        let v: Vec<Vec<u64>> = futures::executor::block_on(
            CountStream::new(10).map(|x| x * 3).filter(|x| ready(x % 2 == 0)).chunks(2).collect(),
        );
        assert_eq!(v, [vec![0, 6], vec![12, 18], vec![24]]);
        let v: Vec<u64> = futures::executor::block_on(CountStream::new(3).then(|x| async move { x + 100 }).collect());
        assert_eq!(v, [100, 101, 102]);
        assert!(futures::executor::block_on(CountStream::new(0).next()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn tick_stream_ticks_on_the_period() {
        let t0 = tokio::time::Instant::now();
        let s = TickStream::new(Duration::from_millis(10), 3);
        assert_eq!(s.size_hint(), (3, Some(3)));
        let got = timed(s, t0).await;
        assert_eq!(got, [(0, 10.0), (1, 20.0), (2, 30.0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_spaces_items() {
        let t0 = tokio::time::Instant::now();
        let got = timed(tokio_stream::StreamExt::throttle(CountStream::new(3), Duration::from_millis(20)), t0).await;
        let items: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(items, [0, 1, 2]);
        for w in got.windows(2) {
            assert!(w[1].1 - w[0].1 >= 20.0, "{got:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn buffered_keeps_order_and_unordered_does_not() {
        let req = |i: u64| async move {
            tokio::time::sleep(Duration::from_millis((4 - i) * 10)).await;
            i
        };
        let t0 = tokio::time::Instant::now();
        let o = timed(CountStream::new(4).map(req).buffered(4), t0).await;
        assert_eq!(o, [(0, 40.0), (1, 40.0), (2, 40.0), (3, 40.0)]);
        let t0 = tokio::time::Instant::now();
        let u = timed(CountStream::new(4).map(req).buffer_unordered(4), t0).await;
        assert_eq!(u, [(3, 10.0), (2, 20.0), (1, 30.0), (0, 40.0)]);
    }

    #[test]
    fn the_tour_runs_every_stage() {
        let t = combinator_tour().unwrap();
        let text = t.to_string();
        assert!(text.contains("0, 1, 4, 9, 16, 25, 36, 49"), "{text}");
        assert!(text.contains("[1, 5, 17], [37]"), "{text}");
        assert!(text.contains("3, 2, 1, 0"), "{text}");
        // Virtual times, exact on a clock paused from the start.
        assert!(text.contains("25, 50, 75, 100"), "{text}");
        assert!(text.contains("0, 20, 40, 60"), "{text}");
        assert!(text.contains("10, 20, 30, 40"), "{text}");
    }

    #[test]
    fn unordered_buffering_overlaps_requests() {
        let p = StreamBuffering { ks: vec![1, 8], requests: 32, base_ms: 5, slow_ms: 40, slow_pct: 20, seed: 3 };
        let r = stream_buffering(&p).unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in &r.rows {
            assert!(row.max_in_flight <= row.k, "{row:?}");
            assert!(row.throughput > 0.0);
        }
        let one = r.row(1, Buffering::Unordered).unwrap();
        let eight = r.row(8, Buffering::Unordered).unwrap();
        // 8 sleeps at once instead of 1: several times the throughput on any machine.
        assert!(eight.throughput > 2.5 * one.throughput, "{} vs {}", eight.throughput, one.throughput);
        assert!(eight.max_in_flight >= 4, "{eight:?}");
        assert!(r.findings().len() >= 4);
        assert_eq!(r.figures().len(), 2);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("mean in flight"));
    }
}
