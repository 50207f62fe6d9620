//! Backpressure. A fast producer offers items to a slow consumer through a channel; what
//! the channel does when the consumer falls behind decides where the difference goes.
//! Unbounded, it piles up in the queue — in memory, and as waiting time of every later
//! item. Bounded (`send().await`), it moves upstream: the producer waits. The other
//! policies keep the producer fast and the queue short by losing items: `try_send`
//! refuses the newest (drop-newest), a `broadcast` ring overwrites the oldest (the
//! receiver learns how many through `Lagged`), or the producer sends only one item in N.
//!
//! How the rates are kept honest: tokio's timers tick at 1 ms, so the producer cannot
//! sleep 100 µs between items. It wakes every millisecond and offers as many items as
//! its schedule (one every `produce_us` since the start) says are due by then. The
//! consumer does not sleep either: it runs in `spawn_blocking` (its own thread) and
//! spins `consume_us` of calibrated CPU work per item, so its rate does not depend on
//! the timer. The producer and a sampler (queue depth and the process's resident memory
//! every few milliseconds) share a current-thread runtime.

use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::timing::quantile_sorted;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, check_range,
    fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// The sampler's period: queue depth and resident memory are read this often, ms.
pub const SAMPLE_MS: u64 = 5;
/// The producer's wake-up period, ms (tokio's timer resolution).
pub const TICK_MS: u64 = 1;
/// The most payload one run may queue: `items × item_bytes`, bytes.
pub const MAX_PAYLOAD: usize = 512 << 20;

/// Parameters of [`backpressure`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backpressure {
    /// Items the producer offers: 10..=1000000.
    pub items: usize,
    /// Bytes per item, a `Vec<u8>` filled with non-zero bytes (its pages are really
    /// touched): 1..=4194304, and `items × item_bytes` at most 512 MiB.
    pub item_bytes: usize,
    /// The producer offers one item every `produce_us` µs (100 → 10 000 items/s): 10..=100000.
    pub produce_us: u64,
    /// The consumer spends `consume_us` µs of CPU on each item (500 → 2 000 items/s): 10..=100000.
    pub consume_us: u64,
    /// Capacity of the bounded, drop-newest, drop-oldest and sampled channels: 1..=100000.
    /// (tokio's broadcast rounds it up to a power of two.)
    pub capacity: usize,
    /// The sampling policy sends one item in `sample_every`: 2..=1000.
    pub sample_every: usize,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure { items: 4000, item_bytes: 4096, produce_us: 100, consume_us: 500, capacity: 64, sample_every: 8 }
    }
}

impl Backpressure {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("items", self.items, 10..=1_000_000)?;
        check_range("item_bytes", self.item_bytes, 1..=4 << 20)?;
        check_range("produce_us", self.produce_us, 10..=100_000)?;
        check_range("consume_us", self.consume_us, 10..=100_000)?;
        check_range("capacity", self.capacity, 1..=100_000)?;
        check_range("sample_every", self.sample_every, 2..=1000)?;
        let payload = self.items * self.item_bytes;
        if payload > MAX_PAYLOAD {
            return Err(ParamError::new(
                "items × item_bytes",
                "at most 512 MiB (the unbounded queue may hold all of it)",
                format!("{} MiB", fmt_num(payload as f64 / MIB)),
            ));
        }
        check_estimate("items × (produce_us, consume_us)", self.estimate())
    }

    /// The rows one after another: each lasts about as long as the slower of producer
    /// and consumer needs for the items that reach the consumer, plus filling the items
    /// and start-up.
    pub fn estimate(&self) -> Duration {
        let ms: f64 = QueuePolicy::ALL.iter().map(|&p| self.row_estimate_ms(p)).sum();
        Duration::from_millis(ms as u64 + 50)
    }

    fn row_estimate_ms(&self, policy: QueuePolicy) -> f64 {
        let n = self.items as f64;
        let produce = n * self.produce_us as f64 / 1e3;
        let consume = |k: f64| k * self.consume_us as f64 / 1e3;
        // Allocating and filling the payload, at a conservative 1 GB/s.
        let fill = n * self.item_bytes as f64 / 1e6;
        let body = match policy {
            QueuePolicy::Bounded | QueuePolicy::Unbounded => produce.max(consume(n)),
            QueuePolicy::DropNewest | QueuePolicy::DropOldest => {
                produce + consume((broadcast_capacity(self.capacity) as f64).min(n))
            }
            QueuePolicy::Sample => produce.max(consume((n / self.sample_every as f64).ceil())),
        };
        body + fill + 30.0
    }

    /// A policy's label with its parameters, e.g. `bounded(64)`.
    pub fn label(&self, policy: QueuePolicy) -> String {
        match policy {
            QueuePolicy::Bounded => format!("bounded({})", self.capacity),
            QueuePolicy::DropNewest => format!("drop-newest({})", self.capacity),
            QueuePolicy::DropOldest => format!("drop-oldest({})", broadcast_capacity(self.capacity)),
            QueuePolicy::Sample => format!("sample 1-in-{}", self.sample_every),
            QueuePolicy::Unbounded => "unbounded".into(),
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// What tokio's `broadcast::channel(n)` really holds: `n` rounded up to a power of two.
fn broadcast_capacity(n: usize) -> usize {
    n.next_power_of_two()
}

/// What the channel does when the consumer falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QueuePolicy {
    /// `mpsc::channel(capacity)` with `send().await`: the producer waits for room.
    Bounded,
    /// `mpsc::channel(capacity)` with `try_send`: an item that finds the queue full is dropped.
    DropNewest,
    /// `broadcast::channel(capacity)`: a full ring overwrites its oldest item; the receiver
    /// gets `Err(Lagged(k))` and learns it lost `k`.
    DropOldest,
    /// The producer sends one item in `sample_every` through a bounded channel
    /// (`send().await`) and drops the rest.
    Sample,
    /// `mpsc::unbounded_channel()`: `send` never waits, the queue holds everything.
    Unbounded,
}

impl QueuePolicy {
    /// Every policy, in the order they run: unbounded last, because the memory it takes
    /// can stay with the allocator and make later rows' memory readings misleading.
    pub const ALL: [QueuePolicy; 5] = [
        QueuePolicy::Bounded,
        QueuePolicy::DropNewest,
        QueuePolicy::DropOldest,
        QueuePolicy::Sample,
        QueuePolicy::Unbounded,
    ];

    /// A short name without parameters.
    pub fn name(self) -> &'static str {
        match self {
            QueuePolicy::Bounded => "bounded",
            QueuePolicy::DropNewest => "drop-newest",
            QueuePolicy::DropOldest => "drop-oldest",
            QueuePolicy::Sample => "sample",
            QueuePolicy::Unbounded => "unbounded",
        }
    }

    /// Whether this policy loses items on purpose.
    pub fn loses_items(self) -> bool {
        matches!(self, QueuePolicy::DropNewest | QueuePolicy::DropOldest | QueuePolicy::Sample)
    }
}

/// One reading of the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueueSample {
    /// Since the row started, ms.
    pub t_ms: f64,
    /// Items in the channel: sent − received (− lost, for broadcast).
    pub depth: usize,
    /// The process's resident memory (VmRSS) minus its value when the row started, MiB.
    pub rss_growth_mib: f64,
}

/// One policy's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackpressureRow {
    pub policy: QueuePolicy,
    /// The policy with its parameters, as figures and tables show it.
    pub label: String,
    /// Items the producer made (always `items`).
    pub offered: usize,
    /// Items that went into the channel.
    pub sent: usize,
    /// Items the consumer handled.
    pub delivered: usize,
    /// Items lost: refused by `try_send`, overwritten in the ring, or not sampled.
    pub dropped: usize,
    /// Of those, items the broadcast receiver was told it missed (`Err(Lagged(k))`).
    pub lagged: usize,
    /// Largest queue depth the sampler saw.
    pub peak_depth: usize,
    /// Resident memory when the row started, MiB.
    pub rss_start_mib: f64,
    /// Largest resident memory the sampler saw, minus `rss_start_mib`.
    pub peak_rss_growth_mib: f64,
    /// Time the producer spent waiting in `send().await`, ms.
    pub blocked_ms: f64,
    /// From the start until the producer had offered its last item, ms.
    pub producer_ms: f64,
    /// From the start until the consumer had handled its last item, ms.
    pub total_ms: f64,
    /// The consumer's measured time per item while it had work, µs: its CPU work plus
    /// taking the item from the channel (and waking a waiting producer).
    pub service_us: f64,
    /// Of that, the spinning alone, µs (`consume_us` on a quiet machine).
    pub spin_us: f64,
    /// End-to-end latency of delivered items (made → handled), median, ms.
    pub p50_ms: f64,
    /// The same, 99th percentile, ms.
    pub p99_ms: f64,
    /// The sampler's readings.
    pub samples: Vec<QueueSample>,
    /// Each delivered item: (ms since the start when handled, its latency ms), in order.
    pub latencies: Vec<(f64, f64)>,
}

impl BackpressureRow {
    /// Share of offered items lost, %.
    pub fn dropped_pct(&self) -> f64 {
        100.0 * self.dropped as f64 / self.offered.max(1) as f64
    }

    /// The producer's offer rate while it was not blocked, items/s.
    pub fn offer_rate(&self) -> f64 {
        let free_ms = (self.producer_ms - self.blocked_ms).max(1e-3);
        self.offered as f64 * 1e3 / free_ms
    }

    /// The consumer's measured rate, items/s.
    pub fn consume_rate(&self) -> f64 {
        1e6 / self.service_us.max(1e-3)
    }

    /// Median latency of the first and of the last tenth of the delivered items, ms.
    pub fn latency_first_last(&self) -> (f64, f64) {
        let n = self.latencies.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let k = (n / 10).max(1);
        let med = |s: &[(f64, f64)]| {
            let mut v: Vec<f64> = s.iter().map(|x| x.1).collect();
            v.sort_by(f64::total_cmp);
            quantile_sorted(&v, 0.5)
        };
        (med(&self.latencies[..k]), med(&self.latencies[n - k..]))
    }
}

/// Result of [`backpressure`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackpressureReport {
    pub params: Backpressure,
    /// One row per policy, in the order they ran ([`QueuePolicy::ALL`]).
    pub rows: Vec<BackpressureRow>,
    /// Whether the allocator was asked to return free memory to the OS before each row
    /// (glibc's `malloc_trim`; only on Linux with glibc).
    pub trimmed: bool,
    pub load: Load,
}

/// One item: when it was made, and its payload.
struct Item {
    born: Instant,
    data: Vec<u8>,
}

/// Counters the producer, the consumer and the sampler share.
#[derive(Default)]
struct Counters {
    sent: AtomicUsize,
    taken: AtomicUsize,
    lost: AtomicUsize,
    done: AtomicBool,
    /// Set when the row's body ends or is dropped (a timeout): the consumer stops.
    stop: AtomicBool,
}

impl Counters {
    /// Items in the channel. The counters are read without a lock, so an item in flight
    /// can make this one too many; a bounded channel cannot hold more than `cap`.
    fn depth(&self, cap: Option<usize>) -> usize {
        let taken = self.taken.load(Ordering::Acquire) + self.lost.load(Ordering::Acquire);
        let d = self.sent.load(Ordering::Acquire).saturating_sub(taken);
        cap.map_or(d, |c| d.min(c))
    }
}

/// Stops the consumer when the body ends, also when a timeout drops it.
struct StopOnDrop(Arc<Counters>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

enum Tx {
    Unbounded(mpsc::UnboundedSender<Item>),
    Bounded(mpsc::Sender<Item>),
    DropNewest(mpsc::Sender<Item>),
    DropOldest(broadcast::Sender<Arc<Item>>),
    Sample(mpsc::Sender<Item>, usize),
}

enum Rx {
    Unbounded(mpsc::UnboundedReceiver<Item>),
    Mpsc(mpsc::Receiver<Item>),
    Broadcast(broadcast::Receiver<Arc<Item>>),
}

fn channel(policy: QueuePolicy, p: &Backpressure) -> (Tx, Rx) {
    match policy {
        QueuePolicy::Unbounded => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Tx::Unbounded(tx), Rx::Unbounded(rx))
        }
        QueuePolicy::Bounded | QueuePolicy::DropNewest | QueuePolicy::Sample => {
            let (tx, rx) = mpsc::channel(p.capacity);
            let tx = match policy {
                QueuePolicy::Bounded => Tx::Bounded(tx),
                QueuePolicy::DropNewest => Tx::DropNewest(tx),
                _ => Tx::Sample(tx, p.sample_every),
            };
            (tx, Rx::Mpsc(rx))
        }
        QueuePolicy::DropOldest => {
            let (tx, rx) = broadcast::channel(p.capacity);
            (Tx::DropOldest(tx), Rx::Broadcast(rx))
        }
    }
}

/// What the producer saw.
#[derive(Default)]
struct Produced {
    dropped: usize,
    blocked: Duration,
    took: Duration,
}

/// `send().await`, timing the wait only when the queue is full.
async fn send_waiting(tx: &mpsc::Sender<Item>, item: Item, c: &Counters, out: &mut Produced) {
    match tx.try_send(item) {
        Ok(()) => {
            c.sent.fetch_add(1, Ordering::AcqRel);
        }
        Err(mpsc::error::TrySendError::Full(item)) => {
            let t = Instant::now();
            let ok = tx.send(item).await.is_ok();
            out.blocked += t.elapsed();
            if ok {
                c.sent.fetch_add(1, Ordering::AcqRel);
            }
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

impl Tx {
    async fn offer(&self, i: usize, item: Item, c: &Counters, out: &mut Produced) {
        match self {
            Tx::Unbounded(tx) => {
                if tx.send(item).is_ok() {
                    c.sent.fetch_add(1, Ordering::AcqRel);
                }
            }
            Tx::Bounded(tx) => send_waiting(tx, item, c, out).await,
            Tx::DropNewest(tx) => match tx.try_send(item) {
                Ok(()) => {
                    c.sent.fetch_add(1, Ordering::AcqRel);
                }
                Err(_) => out.dropped += 1,
            },
            Tx::DropOldest(tx) => {
                if tx.send(Arc::new(item)).is_ok() {
                    c.sent.fetch_add(1, Ordering::AcqRel);
                }
            }
            Tx::Sample(tx, every) => {
                if i.is_multiple_of(*every) {
                    send_waiting(tx, item, c, out).await;
                } else {
                    out.dropped += 1;
                }
            }
        }
    }
}

/// What the consumer takes from an item before dropping it.
struct Got {
    born: Instant,
    seed: u64,
}

impl Rx {
    /// The next item (blocking the calling thread), counting what broadcast reports lost;
    /// `None` once the channel is closed and empty.
    fn next(&mut self, c: &Counters) -> Option<Got> {
        let got = |i: &Item| Got { born: i.born, seed: u64::from(i.data[0]) };
        match self {
            Rx::Unbounded(rx) => rx.blocking_recv().map(|i| got(&i)),
            Rx::Mpsc(rx) => rx.blocking_recv().map(|i| got(&i)),
            Rx::Broadcast(rx) => loop {
                match rx.blocking_recv() {
                    Ok(i) => return Some(got(&i)),
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        c.lost.fetch_add(k as usize, Ordering::AcqRel);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

/// What the consumer saw.
struct Consumed {
    latencies: Vec<(f64, f64)>,
    spin: Duration,
    active: Duration,
    end: Duration,
}

/// The consumer: takes items until the channel closes, spinning `iters` per item.
fn consume(mut rx: Rx, c: Arc<Counters>, iters: u64, start: Instant) -> Consumed {
    let mut latencies = Vec::new();
    let (mut spin, mut active) = (Duration::ZERO, Duration::ZERO);
    while !c.stop.load(Ordering::Acquire) {
        // An empty queue: the wait in `next` is idle time, not the consumer's cost.
        let idle = c.depth(None) == 0;
        let t0 = Instant::now();
        let Some(got) = rx.next(&c) else { break };
        c.taken.fetch_add(1, Ordering::AcqRel);
        let t = Instant::now();
        std::hint::black_box(crate::lab::work::busy(iters, got.seed));
        let now = Instant::now();
        spin += now - t;
        active += now - if idle { t } else { t0 };
        latencies.push((ms_between(start, now), ms_between(got.born, now)));
    }
    Consumed { latencies, spin, active, end: start.elapsed() }
}

fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1e3
}

/// The producer: wakes every [`TICK_MS`] and offers the items its schedule says are due.
async fn produce(tx: Tx, p: Backpressure, c: Arc<Counters>, start: Instant) -> Produced {
    let mut out = Produced::default();
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    // The schedule, not the ticks, says how many are due: missed ticks need no replay.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut made = 0;
    while made < p.items {
        tick.tick().await;
        let due = (start.elapsed().as_micros() / u128::from(p.produce_us)) as usize + 1;
        while made < due.min(p.items) {
            let item = Item { born: Instant::now(), data: vec![(made % 255) as u8 + 1; p.item_bytes] };
            tx.offer(made, item, &c, &mut out).await;
            made += 1;
        }
    }
    out.took = start.elapsed();
    out
}

/// Resident memory of the process, MiB (0 where `/proc` is missing).
fn rss_mib() -> f64 {
    crate::lab::os::proc_status("VmRSS")
        .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Asks glibc's allocator to give free memory back to the OS, so a row's memory reading
/// starts without what earlier rows freed. Returns whether it could.
fn trim_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; no pointer is passed.
        unsafe { libc::malloc_trim(0) };
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The sampler: depth and memory every [`SAMPLE_MS`] until the consumer is done.
async fn sample(c: Arc<Counters>, cap: Option<usize>, start: Instant, rss0: f64) -> Vec<QueueSample> {
    let mut tick = tokio::time::interval(Duration::from_millis(SAMPLE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut out = Vec::new();
    loop {
        tick.tick().await;
        let done = c.done.load(Ordering::Acquire);
        out.push(QueueSample {
            t_ms: ms_between(start, Instant::now()),
            depth: c.depth(cap),
            rss_growth_mib: rss_mib() - rss0,
        });
        if done {
            return out;
        }
    }
}

fn run_policy(policy: QueuePolicy, p: &Backpressure, iters: u64) -> Result<BackpressureRow, LabError> {
    let label = p.label(policy);
    let cap = match policy {
        QueuePolicy::Unbounded => None,
        QueuePolicy::DropOldest => Some(broadcast_capacity(p.capacity)),
        _ => Some(p.capacity),
    };
    let limit = Duration::from_millis(3 * p.row_estimate_ms(policy) as u64) + Duration::from_secs(5);
    let params = p.clone();
    let rt = Rt::current().timeout(limit).max_blocking_threads(1);
    let out = crate::lab::rt::run(rt, move || async move {
        let (tx, rx) = channel(policy, &params);
        let c = Arc::new(Counters::default());
        let _stop = StopOnDrop(c.clone());
        let rss0 = rss_mib();
        let start = Instant::now();
        let consumer = {
            let c = c.clone();
            tokio::task::spawn_blocking(move || consume(rx, c, iters, start))
        };
        let sampler = tokio::spawn(sample(c.clone(), cap, start, rss0));
        // The producer runs in the body; its sender is dropped when it returns, which
        // closes the channel and lets the consumer finish the queue and stop.
        let produced = produce(tx, params, c.clone(), start).await;
        let consumed = consumer.await.expect("the consumer does not panic");
        c.done.store(true, Ordering::Release);
        let samples = sampler.await.expect("the sampler does not panic");
        let lost = c.lost.load(Ordering::Acquire);
        (produced, consumed, samples, lost, rss0)
    })
    .map_err(|e| RunError::new(label.clone(), e))?;
    let (produced, consumed, samples, lost, rss0) = out;
    let delivered = consumed.latencies.len();
    let mut lat: Vec<f64> = consumed.latencies.iter().map(|l| l.1).collect();
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| if lat.is_empty() { 0.0 } else { quantile_sorted(&lat, f) };
    Ok(BackpressureRow {
        policy,
        label,
        offered: p.items,
        sent: p.items - produced.dropped,
        delivered,
        dropped: p.items - delivered,
        lagged: lost,
        peak_depth: samples.iter().map(|s| s.depth).max().unwrap_or(0),
        rss_start_mib: rss0,
        peak_rss_growth_mib: samples.iter().map(|s| s.rss_growth_mib).fold(0.0, f64::max),
        blocked_ms: produced.blocked.as_secs_f64() * 1e3,
        producer_ms: produced.took.as_secs_f64() * 1e3,
        total_ms: consumed.end.as_secs_f64() * 1e3,
        service_us: consumed.active.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        spin_us: consumed.spin.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        samples,
        latencies: consumed.latencies,
    })
}

/// Runs each [`QueuePolicy`] in turn ([`QueuePolicy::ALL`], unbounded last), on a fresh
/// current-thread runtime: a producer offering `items` items of `item_bytes` bytes, one
/// every `produce_us` µs, to a consumer (on `spawn_blocking`) that spends `consume_us` µs
/// of CPU on each; a sampler records queue depth and resident memory every
/// [`SAMPLE_MS`] ms.
pub fn backpressure(p: &Backpressure) -> Result<BackpressureReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let iters = (crate::lab::work::iters_per_ms() * p.consume_us / 1000).max(1);
    let mut rows = Vec::new();
    let mut trimmed = false;
    for policy in QueuePolicy::ALL {
        trimmed = trim_allocator();
        rows.push(run_policy(policy, p, iters)?);
    }
    Ok(BackpressureReport { params: p.clone(), rows, trimmed, load: probe.finish() })
}

impl BackpressureReport {
    /// The row of one policy.
    pub fn row(&self, policy: QueuePolicy) -> Option<&BackpressureRow> {
        self.rows.iter().find(|r| r.policy == policy)
    }

    /// The unbounded queue's depth over time as the measured rates predict it: it grows
    /// at (offer rate − consume rate) while the producer runs, then drains at the
    /// consume rate. `(time ms, depth)` corners, and the predicted peak.
    pub fn predicted_unbounded(&self) -> Option<(Vec<(f64, f64)>, f64)> {
        let u = self.row(QueuePolicy::Unbounded)?;
        let t_p = u.producer_ms;
        let consumed = (u.consume_rate() * t_p / 1e3).min(u.offered as f64);
        let peak = (u.offered as f64 - consumed).max(0.0);
        let drain_ms = peak / u.consume_rate() * 1e3;
        Some((vec![(0.0, 0.0), (t_p, peak), (t_p + drain_ms, 0.0)], peak))
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

impl Report for BackpressureReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let item_kib = p.item_bytes as f64 / 1024.0;
        let unbounded = self.row(QueuePolicy::Unbounded);
        if let Some(u) = unbounded {
            let (rp, rc) = (u.offer_rate(), u.consume_rate());
            let (_, predicted) = self.predicted_unbounded().unwrap_or_default();
            if rp > 1.1 * rc {
                let agree =
                    close(u.peak_depth as f64, predicted, 0.25) || (u.peak_depth as f64 - predicted).abs() < 5.0;
                out.push(Finding::clear(format!(
                    "unbounded: the producer offered {}/s for {} ms against a consumer handling {}/s, so the queue \
                     grew by the difference and peaked at {} items{}",
                    fmt_num(rp),
                    fmt_num(u.producer_ms),
                    fmt_num(rc),
                    u.peak_depth,
                    if agree {
                        format!(" — as those rates predict ({} items)", fmt_num(predicted))
                    } else {
                        format!(
                            "; those rates predict {} items — the rates changed during the run (a busy machine?)",
                            fmt_num(predicted)
                        )
                    }
                )));
            } else {
                out.push(Finding::clear(format!(
                    "unbounded: the producer ({}/s) was not clearly faster than the consumer ({}/s), so the queue did \
                     not run away (peak {} items of {} offered); lower produce_us or raise consume_us to see it grow",
                    fmt_num(rp),
                    fmt_num(rc),
                    u.peak_depth,
                    u.offered
                )));
            }
            let payload = u.peak_depth as f64 * p.item_bytes as f64 / MIB;
            let m = u.peak_rss_growth_mib;
            out.push(if payload < 2.0 {
                Finding::note(format!(
                    "unbounded: the peak queue held {} MiB of payload ({} × {} KiB), too little to tell apart from \
                     other changes of resident memory (RSS grew {} MiB)",
                    fmt_num(payload),
                    u.peak_depth,
                    fmt_num(item_kib),
                    fmt_num(m)
                ))
            } else if m >= 0.7 * payload && m <= 1.5 * payload {
                Finding::clear(format!(
                    "unbounded: resident memory grew by {} MiB, close to the {} MiB of payload queued at the peak \
                     ({} items × {} KiB): every item the consumer has not reached yet is held in memory",
                    fmt_num(m),
                    fmt_num(payload),
                    u.peak_depth,
                    fmt_num(item_kib)
                ))
            } else if m < 0.7 * payload {
                Finding::unclear(format!(
                    "unbounded: resident memory grew by only {} MiB against {} MiB of payload queued at the peak: \
                     the allocator reused memory the process already held (freed earlier and not returned to the \
                     OS), which RSS does not count again",
                    fmt_num(m),
                    fmt_num(payload)
                ))
            } else {
                Finding::clear(format!(
                    "unbounded: resident memory grew by {} MiB, more than the {} MiB of payload queued at the peak: \
                     the allocator's per-item overhead and the channel's own blocks come on top (they dominate for \
                     small items)",
                    fmt_num(m),
                    fmt_num(payload)
                ))
            });
            let end = u.samples.last().map_or(0.0, |s| s.rss_growth_mib);
            // Memory while the queue drained: the reading just before the last one.
            let draining = u.samples.iter().rev().nth(1).map_or(end, |s| s.rss_growth_mib);
            if payload >= 2.0 && m >= 0.5 * payload {
                out.push(if end >= 0.7 * m {
                    Finding::clear(format!(
                        "unbounded: resident memory stayed up after the queue drained ({} MiB above the start at the \
                         end, {} MiB at the peak): the allocator keeps freed memory for reuse instead of returning \
                         it to the OS, so one burst leaves the process big",
                        fmt_num(end),
                        fmt_num(m)
                    ))
                } else if draining >= 0.7 * m {
                    Finding::clear(format!(
                        "unbounded: resident memory stayed near its peak ({} MiB) while the queue drained and fell to \
                         {} MiB only when it was empty: the items were freed oldest first, and the allocator can \
                         hand pages back only once the newest items, at the top of its heap, are gone too",
                        fmt_num(draining),
                        fmt_num(end)
                    ))
                } else if end >= 0.2 * m {
                    Finding::clear(format!(
                        "unbounded: resident memory fell to {} MiB above the start as the queue drained (peak {} MiB): \
                         the allocator returned part of the freed memory to the OS and kept the rest for reuse",
                        fmt_num(end),
                        fmt_num(m)
                    ))
                } else {
                    Finding::clear(format!(
                        "unbounded: resident memory fell back to {} MiB above the start as the queue drained (peak {} \
                         MiB): the allocator returned the freed memory to the OS (large items get pages of their own)",
                        fmt_num(end),
                        fmt_num(m)
                    ))
                });
            }
            let (first, last) = u.latency_first_last();
            out.push(if last > 3.0 * first && last > 10.0 && rp <= 1.1 * rc {
                Finding::clear(format!(
                    "unbounded: latency rose from a median of {} ms (first tenth delivered) to {} ms (last tenth) as \
                     a backlog of up to {} items formed: with the rates this close ({}/s offered, {}/s handled), a \
                     backlog the consumer falls into is slow to drain",
                    fmt_num(first),
                    fmt_num(last),
                    u.peak_depth,
                    fmt_num(rp),
                    fmt_num(rc)
                ))
            } else if last > 3.0 * first && last > 10.0 {
                Finding::clear(format!(
                    "unbounded: items waited longer and longer — a median of {} ms for the first tenth delivered, \
                     {} ms for the last tenth (p99 {} ms): each new item queues behind everything offered before it",
                    fmt_num(first),
                    fmt_num(last),
                    fmt_num(u.p99_ms)
                ))
            } else {
                Finding::clear(format!(
                    "unbounded: latency did not grow steadily over the run ({} ms median for the first tenth \
                     delivered, {} ms for the last tenth): no backlog built up that later items had to wait behind",
                    fmt_num(first),
                    fmt_num(last)
                ))
            });
        }
        if let Some(b) = self.row(QueuePolicy::Bounded) {
            let service_ms = b.service_us / 1e3;
            let pace_ms = b.offered as f64 / b.consume_rate() * 1e3;
            let mem = match unbounded {
                Some(u)
                    if b.peak_rss_growth_mib < 0.25 * u.peak_rss_growth_mib.max(0.0) || b.peak_rss_growth_mib < 1.0 =>
                {
                    format!("resident memory grew only {} MiB", fmt_num(b.peak_rss_growth_mib))
                }
                _ => format!("resident memory grew {} MiB", fmt_num(b.peak_rss_growth_mib)),
            };
            if b.blocked_ms >= 0.1 * b.producer_ms {
                out.push(Finding::clear(format!(
                    "{}: the queue never held more than {} items and {mem}; the cost moved upstream — the producer \
                     needed {} ms to offer its {} items instead of {} ms on schedule, {} ms of it waiting in \
                     send().await{}",
                    b.label,
                    b.peak_depth,
                    fmt_num(b.producer_ms),
                    b.offered,
                    fmt_num(b.offered as f64 * p.produce_us as f64 / 1e3),
                    fmt_num(b.blocked_ms),
                    if close(b.producer_ms, pace_ms, 0.25) {
                        format!(
                            ": it was held to the consumer's pace ({} items ÷ the consumer's measured {}/s = {} ms)",
                            b.offered,
                            fmt_num(b.consume_rate()),
                            fmt_num(pace_ms)
                        )
                    } else {
                        format!(
                            "; the consumer's measured pace alone ({}/s) would take {} ms",
                            fmt_num(b.consume_rate()),
                            fmt_num(pace_ms)
                        )
                    }
                )));
            } else {
                out.push(Finding::clear(format!(
                    "{}: the producer waited only {} ms in send().await — the consumer kept up, or the capacity \
                     absorbed the difference (peak depth {} items); {mem}",
                    b.label,
                    fmt_num(b.blocked_ms),
                    b.peak_depth
                )));
            }
            let full = p.capacity as f64 * service_ms;
            if let Some(u) = unbounded {
                let grew = u.offer_rate() > 1.1 * u.consume_rate() && u.peak_depth > 2 * p.capacity;
                let waits = if close(b.p50_ms, full, 0.3) {
                    format!(
                        " — about what waiting behind a full queue costs ({} × {} ms = {} ms)",
                        p.capacity,
                        fmt_num(service_ms),
                        fmt_num(full)
                    )
                } else {
                    format!(" (a full queue of {} would cost {} ms)", p.capacity, fmt_num(full))
                };
                out.push(Finding::clear(if grew && u.p99_ms > 3.0 * b.p99_ms {
                    format!(
                        "latency: {} delivered items at a median of {} ms{waits}, p99 {} ms; unbounded at p99 {} ms \
                         ({}× more): bounding the queue bounds the wait inside the pipeline",
                        b.label,
                        fmt_num(b.p50_ms),
                        fmt_num(b.p99_ms),
                        fmt_num(u.p99_ms),
                        fmt_num(u.p99_ms / b.p99_ms.max(1e-3))
                    )
                } else {
                    format!(
                        "latency: {} delivered items at a median of {} ms{waits}, p99 {} ms; unbounded at p99 {} ms — \
                         {}",
                        b.label,
                        fmt_num(b.p50_ms),
                        fmt_num(b.p99_ms),
                        fmt_num(u.p99_ms),
                        if grew {
                            "not clearly more, although its queue grew"
                        } else {
                            "its queue built no steady backlog here, so bounding it changes little"
                        }
                    )
                }));
            }
        }
        for r in self.rows.iter().filter(|r| r.policy.loses_items()) {
            let blocked = if r.blocked_ms >= 0.1 * r.producer_ms {
                format!(
                    " — still faster than the consumer, so the producer also waited {} ms in send().await",
                    fmt_num(r.blocked_ms)
                )
            } else {
                format!(" without waiting (blocked {} ms)", fmt_num(r.blocked_ms))
            };
            let lat = match unbounded {
                Some(u) if u.p99_ms > 3.0 * r.p99_ms => {
                    format!("p99 latency {} ms against unbounded's {} ms", fmt_num(r.p99_ms), fmt_num(u.p99_ms))
                }
                _ => format!("p99 latency {} ms", fmt_num(r.p99_ms)),
            };
            out.push(Finding::clear(if r.dropped == 0 {
                format!(
                    "{}: nothing was lost — the consumer kept up; the producer finished in {} ms{blocked}, {lat}",
                    r.label,
                    fmt_num(r.producer_ms)
                )
            } else {
                let how = match r.policy {
                    QueuePolicy::DropNewest => "refused by try_send",
                    QueuePolicy::DropOldest => "overwritten in the ring (reported to the receiver as Lagged)",
                    _ => "never sent",
                };
                format!(
                    "{}: the producer finished in {} ms{blocked}; {lat}; but {} of {} items ({} %) were lost, {how}",
                    r.label,
                    fmt_num(r.producer_ms),
                    r.dropped,
                    r.offered,
                    fmt_num(r.dropped_pct())
                )
            }));
        }
        if let (Some(n), Some(o)) = (self.row(QueuePolicy::DropNewest), self.row(QueuePolicy::DropOldest))
            && n.dropped > 0
            && o.dropped > 0
        {
            let ring = broadcast_capacity(p.capacity) as f64;
            let fresh_ms = ring / o.offer_rate() * 1e3;
            let stale_ms = p.capacity as f64 * n.service_us / 1e3;
            out.push(if o.p50_ms < 0.5 * n.p50_ms {
                Finding::clear(format!(
                    "drop-oldest delivered fresher items than drop-newest: median age {} ms against {} ms. Its \
                         ring keeps the newest {} items, made in the last {} ms at the producer's pace; drop-newest's \
                         queue keeps the items that got in, and each waits behind {} others, {} ms of work",
                    fmt_num(o.p50_ms),
                    fmt_num(n.p50_ms),
                    ring,
                    fmt_num(fresh_ms),
                    p.capacity,
                    fmt_num(stale_ms)
                ))
            } else {
                Finding::clear(format!(
                    "drop-oldest and drop-newest delivered items of similar age (median {} ms and {} ms): the \
                         producer was not fast enough for drop-oldest's ring of {} to turn over much sooner than \
                         drop-newest's queue drains",
                    fmt_num(o.p50_ms),
                    fmt_num(n.p50_ms),
                    ring
                ))
            });
        }
        out.push(Finding::note(
            "drop-newest keeps what is already queued and refuses what comes (the consumer works on older data); \
             drop-oldest evicts the oldest (the consumer always sees the latest, and learns how many it missed); \
             sampling decides before sending and needs no queue policy at all — all three trade completeness for \
             a producer that never waits and a short queue",
        ));
        out.push(Finding::note(format!(
            "Rates: the producer wakes every {TICK_MS} ms (tokio's timer resolution) and offers the items its \
             schedule (one per {} µs) says are due; the consumer spins {} µs of calibrated CPU work per item on \
             its own thread. Measured time per item while the consumer had work: {}. Rows ran one after \
             another, unbounded last: memory it frees can stay with the allocator and inflate later readings{}",
            p.produce_us,
            p.consume_us,
            self.rows
                .iter()
                .map(|r| format!("{} {} µs", r.label, fmt_num(r.service_us)))
                .collect::<Vec<_>>()
                .join(", "),
            if self.trimmed {
                "; before each row the allocator was asked to give free memory back to the OS (malloc_trim)."
            } else {
                "."
            }
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let caption_rates = format!(
            "{} items of {} KiB; producer one per {} µs, consumer {} µs per item.",
            p.items,
            fmt_num(p.item_bytes as f64 / 1024.0),
            p.produce_us,
            p.consume_us
        );
        let mut depth = Figure::lines(
            "Does the queue grow? Items waiting in the channel",
            "time since the row started (ms)",
            "items in the queue",
        )
        .linear_x()
        .linear_y();
        let mut mem = Figure::lines(
            "Where do the waiting items live? Resident memory",
            "time since the row started (ms)",
            "RSS growth since the row started (MiB)",
        )
        .linear_x()
        .linear_y();
        let mut lat = Figure::lines(
            "How long did delivered items wait? End-to-end latency",
            "time the item was handled (ms since the row started)",
            "latency, made → handled (ms, log scale)",
        )
        .linear_x()
        .log_y();
        for r in &self.rows {
            let every = r.samples.len().div_ceil(200).max(1);
            let d = r
                .samples
                .chunks(every)
                .map(|c| {
                    let worst = c.iter().max_by_key(|s| s.depth).expect("chunks are not empty");
                    Point::new(worst.t_ms, worst.depth as f64)
                })
                .collect();
            depth = depth.series(Series::new(r.label.clone(), Style::Measured, d));
            let mut m: Vec<Point> = r
                .samples
                .chunks(every)
                .map(|c| {
                    let top =
                        c.iter().copied().fold(c[0], |a, b| if b.rss_growth_mib > a.rss_growth_mib { b } else { a });
                    Point::new(top.t_ms, top.rss_growth_mib)
                })
                .collect();
            // The last reading too: memory often drops only when the queue is empty.
            if let Some(last) = r.samples.last() {
                m.push(Point::new(last.t_ms, last.rss_growth_mib));
            }
            mem = mem.series(Series::new(r.label.clone(), Style::Measured, m));
            let every = r.latencies.len().div_ceil(200).max(1);
            let l = r
                .latencies
                .chunks(every)
                .map(|c| {
                    let worst = c.iter().copied().fold(c[0], |a, b| if b.1 > a.1 { b } else { a });
                    Point::new(worst.0, worst.1.max(1e-3))
                })
                .collect();
            lat = lat.series(Series::new(r.label.clone(), Style::Measured, l));
        }
        if let Some((corners, _)) = self.predicted_unbounded() {
            let pts = corners.into_iter().map(|(t, d)| Point::new(t, d)).collect();
            depth = depth.series(Series::new("unbounded, predicted from the rates", Style::Ideal, pts));
        }
        if let Some(u) = self.row(QueuePolicy::Unbounded) {
            let every = u.samples.len().div_ceil(200).max(1);
            let pts = u
                .samples
                .chunks(every)
                .map(|c| {
                    let worst = c.iter().max_by_key(|s| s.depth).expect("chunks are not empty");
                    Point::new(worst.t_ms, worst.depth as f64 * p.item_bytes as f64 / MIB)
                })
                .collect();
            mem = mem.series(Series::new("unbounded: queued payload (depth × item size)", Style::Ideal, pts));
        }
        let depth = depth.note(format!("{caption_rates} Sampled every {SAMPLE_MS} ms."));
        let mem = mem.note(format!(
            "{caption_rates} VmRSS every {SAMPLE_MS} ms, minus its value at the row's start; rows ran in legend order."
        ));
        let lat = lat.note(format!("{caption_rates} The worst item of each stretch of the run."));
        vec![mark_busy(depth, &self.load), mark_busy(mem, &self.load), mark_busy(lat, &self.load)]
    }

    fn table(&self) -> Table {
        let p = &self.params;
        let mut t = Table::new(
            "Backpressure policies: what each one costs",
            &[
                "policy",
                "delivered",
                "lost",
                "lost %",
                "peak depth",
                "peak RSS growth MiB",
                "producer blocked ms",
                "producer took ms",
                "p50 latency ms",
                "p99 latency ms",
                "total ms",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                r.label.clone(),
                r.delivered.to_string(),
                r.dropped.to_string(),
                fmt_num(r.dropped_pct()),
                r.peak_depth.to_string(),
                fmt_num(r.peak_rss_growth_mib),
                fmt_num(r.blocked_ms),
                fmt_num(r.producer_ms),
                fmt_num(r.p50_ms),
                fmt_num(r.p99_ms),
                fmt_num(r.total_ms),
            ]);
        }
        t.note(format!(
            "{} items of {} bytes each; the producer offers one every {} µs ({}/s), the consumer spends {} µs on each \
             ({}/s); capacity {}, sampling 1 in {}. Rows ran top to bottom.",
            p.items,
            p.item_bytes,
            p.produce_us,
            fmt_num(1e6 / p.produce_us as f64),
            p.consume_us,
            fmt_num(1e6 / p.consume_us as f64),
            p.capacity,
            p.sample_every
        ));
        if !p.capacity.is_power_of_two() {
            t.note(format!(
                "tokio's broadcast channel rounds its capacity up to a power of two: drop-oldest holds {}.",
                broadcast_capacity(p.capacity)
            ));
        }
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "backpressure",
        super::NOTEBOOK,
        "a fast producer and a slow consumer: unbounded, bounded, drop-newest, drop-oldest and sampling channels",
        backpressure,
    )]
}

crate::impl_params!(Backpressure);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_refuses_bad_parameters() {
        assert!(backpressure(&Backpressure { capacity: 0, ..Default::default() }).is_err());
        let e = Backpressure { produce_us: 1, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("10..=100000"), "{e}");
        let e = Backpressure { items: 1_000_000, item_bytes: 4096, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("512 MiB"), "{e}");
        assert!(Backpressure { sample_every: 1, ..Default::default() }.validate().is_err());
        assert!(Backpressure::default().validate().is_ok());
        assert!(Backpressure::default().estimate() < Duration::from_secs(8));
    }

    #[test]
    fn only_the_unbounded_queue_grows_past_the_capacity() {
        // 10 items/ms offered, 1 handled per ms: the unbounded queue must grow far past 8.
        let p = Backpressure {
            items: 400,
            item_bytes: 1024,
            produce_us: 100,
            consume_us: 1000,
            capacity: 8,
            sample_every: 4,
        };
        let r = backpressure(&p).unwrap();
        assert_eq!(r.rows.len(), 5);
        for row in &r.rows {
            // Counts, not timings: every item sent is delivered or reported lost, and
            // bounded queues stay bounded.
            assert_eq!(row.delivered + row.lagged, row.sent, "{}", row.label);
            assert!(!row.samples.is_empty(), "{}", row.label);
            if row.policy != QueuePolicy::Unbounded {
                assert!(row.peak_depth <= 8, "{} {}", row.label, row.peak_depth);
            }
        }
        let b = r.row(QueuePolicy::Bounded).unwrap();
        assert_eq!(b.delivered, 400);
        let u = r.row(QueuePolicy::Unbounded).unwrap();
        assert_eq!(u.delivered, 400);
        assert!(u.peak_depth > 50, "{}", u.peak_depth);
        let s = r.row(QueuePolicy::Sample).unwrap();
        assert_eq!(s.delivered, 100);
        // The drop policies lose items: 400 offered in ~40 ms, a consumer at ~1/ms.
        assert!(r.row(QueuePolicy::DropNewest).unwrap().dropped > 100);
        assert!(r.row(QueuePolicy::DropOldest).unwrap().dropped > 100);
        assert!(r.findings().len() >= 8);
        assert!(r.findings()[0].text.contains("unbounded"), "{:?}", r.findings()[0]);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 3);
        assert!(r.table().to_string().contains("producer blocked ms"));
    }
}
