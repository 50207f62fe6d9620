//! Cooperative scheduling: a task that drains an always-ready source never has to wait,
//! so unless something makes it give the thread back, a neighbour task on the same
//! thread waits for the whole loop. tokio's coop budget does that: each task poll may
//! spend 128 units (tokio 1.54, `task/coop/mod.rs`) on tokio resources — one per ready
//! channel receive, semaphore acquire, socket read… — and then those resources return
//! `Pending` (waking the task at once) until the task has yielded. Measured on a
//! current-thread runtime by how long a neighbour that always wants to run waits, with the
//! budget, with it turned off (`tokio::task::unconstrained`), with a hand-written
//! `yield_now` every k items, and with a source that is not tokio's (`futures::channel`).

use crate::lab::budget::check_estimate;
use crate::lab::noise::mark_busy;
use crate::lab::rt::Rt;
use crate::lab::timing::quantile_sorted;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// tokio's coop budget per task poll in tokio 1.54 (`Budget::initial()`); the experiment
/// measures the real value as items per poll.
pub const TOKIO_BUDGET: usize = 128;

/// Parameters of [`coop_budget`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoopBudget {
    /// Items pre-filled into the channel the busy task drains: 1000..=1000000.
    pub items: usize,
    /// CPU work per item in ns (a calibrated busy loop): 0..=10000.
    pub work_ns: u64,
    /// The hand-written variant calls `tokio::task::yield_now()` every this many items: 1..=100000.
    pub yield_every: usize,
}

impl Default for CoopBudget {
    fn default() -> Self {
        CoopBudget { items: 50_000, work_ns: 500, yield_every: 32 }
    }
}

impl CoopBudget {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("items", self.items, 1_000..=1_000_000)?;
        check_range("work_ns", self.work_ns, 0..=10_000)?;
        check_range("yield_every", self.yield_every, 1..=100_000)?;
        check_estimate("items × work_ns", self.estimate())
    }

    /// Four variants, each draining every item: the work plus about 0.1 µs per item for the
    /// channel, plus start-up.
    pub fn estimate(&self) -> Duration {
        Duration::from_nanos(4 * self.items as u64 * (self.work_ns + 100)) + Duration::from_millis(50)
    }
}

/// How the busy task drains its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CoopVariant {
    /// A tokio mpsc receiver under tokio's default coop budget.
    Budget,
    /// The same loop inside `tokio::task::unconstrained(..)`: no budget.
    Unconstrained,
    /// Inside `unconstrained(..)`, with `tokio::task::yield_now().await` every `yield_every` items.
    YieldEvery,
    /// A `futures::channel::mpsc` receiver (not a tokio resource: it spends no budget), budget on.
    FuturesChannel,
}

impl CoopVariant {
    /// Every variant, in the order they run.
    pub const ALL: [CoopVariant; 4] =
        [CoopVariant::Budget, CoopVariant::Unconstrained, CoopVariant::YieldEvery, CoopVariant::FuturesChannel];

    /// A short name for figures and tables.
    pub fn label(self, yield_every: usize) -> String {
        match self {
            CoopVariant::Budget => "tokio mpsc, coop budget on (default)".into(),
            CoopVariant::Unconstrained => "tokio mpsc in unconstrained(..)".into(),
            CoopVariant::YieldEvery => format!("unconstrained + yield_now every {yield_every}"),
            CoopVariant::FuturesChannel => "futures::channel::mpsc (no budget)".into(),
        }
    }
}

/// One variant's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoopRow {
    pub variant: CoopVariant,
    /// Items the busy task handled in each of its polls, in order.
    pub items_per_poll: Vec<usize>,
    /// How long each of those polls held the thread, ms: what the neighbour waits for.
    pub hold_ms: Vec<f64>,
    /// From the busy task's first poll to the end of its last, ms.
    pub loop_ms: f64,
    /// The neighbour's runs: (ms since start, ms it had waited for this run), for every
    /// run it waited for while the busy task still had work.
    pub waits: Vec<(f64, f64)>,
    /// Summary of the waits, ms. Its median can fall on either of two clusters (a turn
    /// right after the busy task's poll, or a second turn straight after the first), so
    /// the findings use [`CoopRow::wait_p90`] and the polls' [`CoopRow::hold_ms`].
    pub wait_stats: Stats,
    /// 90th percentile of the waits, ms.
    pub wait_p90: f64,
}

impl CoopRow {
    /// The busy task's polls.
    pub fn polls(&self) -> usize {
        self.items_per_poll.len()
    }

    /// Median time one poll of the busy task held the thread, ms.
    pub fn median_hold_ms(&self) -> f64 {
        Stats::of(&self.hold_ms).median
    }

    /// The turns the neighbour got: (ms since start, turns so far), for a figure.
    pub fn turns(&self) -> Vec<(f64, usize)> {
        self.waits.iter().enumerate().map(|(i, w)| (w.0, i + 1)).collect()
    }

    /// Median items per poll.
    pub fn median_items_per_poll(&self) -> usize {
        let mut v = self.items_per_poll.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }
}

/// Result of [`coop_budget`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoopBudgetReport {
    pub params: CoopBudget,
    pub rows: Vec<CoopRow>,
    pub load: Load,
}

/// Records, at the end of every poll of the wrapped future, how many items it had handled
/// so far and when the poll began and ended.
struct CountPolls<F> {
    fut: Pin<Box<F>>,
    items: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<(Instant, Instant, usize)>>>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = Instant::now();
        let out = self.fut.as_mut().poll(cx);
        let n = self.items.load(Ordering::Relaxed);
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push((start, Instant::now(), n));
        out
    }
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

fn handle(v: u64, iters: u64, items: &AtomicUsize) {
    if iters > 0 {
        crate::lab::work::busy(iters, v + 1);
    }
    items.fetch_add(1, Ordering::Relaxed);
}

/// The busy task of `variant`, draining `n` pre-filled items.
fn busy_task(variant: CoopVariant, n: usize, iters: u64, every: usize, items: Arc<AtomicUsize>) -> BoxFut {
    match variant {
        CoopVariant::FuturesChannel => {
            let (tx, mut rx) = futures::channel::mpsc::unbounded::<u64>();
            for i in 0..n as u64 {
                tx.unbounded_send(i).expect("the receiver is alive");
            }
            drop(tx);
            Box::pin(async move {
                use futures::StreamExt;
                while let Some(v) = rx.next().await {
                    handle(v, iters, &items);
                }
            })
        }
        _ => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            for i in 0..n as u64 {
                tx.send(i).expect("the receiver is alive");
            }
            drop(tx);
            let yields = variant == CoopVariant::YieldEvery;
            let drain = async move {
                let mut k = 0;
                while let Some(v) = rx.recv().await {
                    handle(v, iters, &items);
                    k += 1;
                    if yields && k % every == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            };
            match variant {
                CoopVariant::Budget => Box::pin(drain),
                _ => Box::pin(tokio::task::unconstrained(drain)),
            }
        }
    }
}

struct Raw {
    polls: Vec<(Instant, Instant, usize)>,
    runs: Vec<Instant>,
    spawned: Instant,
}

async fn one_variant(variant: CoopVariant, n: usize, iters: u64, every: usize) -> Raw {
    let items = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let fut = busy_task(variant, n, iters, every, items.clone());
    let counted = CountPolls { fut: Box::pin(fut), items, log: log.clone() };
    let spawned = Instant::now();
    // Spawned first, so it runs first; the neighbour is next in the run queue.
    let busy = {
        let done = done.clone();
        tokio::spawn(async move {
            counted.await;
            done.store(true, Ordering::Release);
        })
    };
    let neighbour = tokio::spawn(async move {
        let mut runs = Vec::new();
        loop {
            runs.push(Instant::now());
            if done.load(Ordering::Acquire) {
                return runs;
            }
            tokio::task::yield_now().await;
        }
    });
    busy.await.expect("the busy task does not panic");
    let runs = neighbour.await.expect("the neighbour does not panic");
    let polls = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Raw { polls, runs, spawned }
}

fn row(variant: CoopVariant, raw: Raw) -> CoopRow {
    let ms = |t: Instant| t.duration_since(raw.spawned).as_secs_f64() * 1e3;
    let mut items_per_poll = Vec::with_capacity(raw.polls.len());
    let mut hold_ms = Vec::with_capacity(raw.polls.len());
    let mut prev = 0;
    for &(start, end, n) in &raw.polls {
        items_per_poll.push(n - prev);
        hold_ms.push(end.duration_since(start).as_secs_f64() * 1e3);
        prev = n;
    }
    // The last poll hands back `None` (the channel is empty and closed) and often no item.
    if items_per_poll.len() > 1 && items_per_poll.last() == Some(&0) {
        items_per_poll.pop();
        hold_ms.pop();
    }
    let loop_start = raw.polls.first().map_or(raw.spawned, |p| p.0);
    let loop_end = raw.polls.last().map_or(raw.spawned, |p| p.1);
    let mut waits = Vec::new();
    let mut last = raw.spawned;
    for &t in &raw.runs {
        if last < loop_end {
            waits.push((ms(t), t.duration_since(last).as_secs_f64() * 1e3));
        }
        last = t;
    }
    let w: Vec<f64> = waits.iter().map(|w| w.1).collect();
    let mut sorted = w.clone();
    sorted.sort_by(f64::total_cmp);
    let wait_p90 = if sorted.is_empty() { 0.0 } else { quantile_sorted(&sorted, 0.9) };
    CoopRow {
        variant,
        items_per_poll,
        hold_ms,
        loop_ms: loop_end.duration_since(loop_start).as_secs_f64() * 1e3,
        waits,
        wait_stats: Stats::of(&w),
        wait_p90,
    }
}

/// Runs each [`CoopVariant`] on a fresh current-thread runtime: a busy task drains
/// `items` pre-filled items (`work_ns` of CPU work each) while a neighbour task on the
/// same thread wants to run all the time (it `yield_now`s in a loop); records how many
/// items the busy task handled per poll and how long the neighbour waited for each turn.
pub fn coop_budget(p: &CoopBudget) -> Result<CoopBudgetReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let iters = if p.work_ns == 0 { 0 } else { (crate::lab::work::iters_per_ms() * p.work_ns / 1_000_000).max(1) };
    let mut rows = Vec::new();
    for variant in CoopVariant::ALL {
        let (n, every) = (p.items, p.yield_every);
        // Bounded: 20× the expected work plus 10 s.
        let limit = Duration::from_nanos(20 * n as u64 * (p.work_ns + 200)) + Duration::from_secs(10);
        let raw = crate::lab::rt::run(Rt::current().timeout(limit), move || one_variant(variant, n, iters, every))
            .map_err(|e| RunError::new(variant.label(every), e))?;
        rows.push(row(variant, raw));
    }
    Ok(CoopBudgetReport { params: p.clone(), rows, load: probe.finish() })
}

impl CoopBudgetReport {
    /// The row of one variant.
    pub fn row(&self, v: CoopVariant) -> Option<&CoopRow> {
        self.rows.iter().find(|r| r.variant == v)
    }

    fn label(&self, v: CoopVariant) -> String {
        v.label(self.params.yield_every)
    }
}

impl Report for CoopBudgetReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let budget = self.row(CoopVariant::Budget);
        let free = self.row(CoopVariant::Unconstrained);
        if let Some(b) = budget {
            let m = b.median_items_per_poll();
            let why = if m == TOKIO_BUDGET {
                format!("exactly tokio's budget of {TOKIO_BUDGET} units per task poll, one spent per message received")
            } else {
                format!(
                    "tokio's budget is {TOKIO_BUDGET} units per task poll, one per message received; a different \
                     count means something else spent or refilled it"
                )
            };
            out.push(Finding::clear(format!(
                "with the coop budget on, the busy task handled {m} items per poll (median over {} polls) — {why}. \
                 Then recv() returned Pending by itself, so each poll held the thread only {} ms (median) and the \
                 neighbour got {} turns during the {} ms loop, waiting at most {} ms for one (p90 {} ms)",
                b.polls(),
                fmt_num(b.median_hold_ms()),
                b.waits.len(),
                fmt_num(b.loop_ms),
                fmt_num(b.wait_stats.max),
                fmt_num(b.wait_p90)
            )));
            let hold = b.median_hold_ms();
            let back_to_back = b.waits.iter().filter(|w| w.1 < hold / 4.0).count();
            if b.waits.len() >= 10 && back_to_back * 4 >= b.waits.len() {
                out.push(Finding::note(format!(
                    "{back_to_back} of the neighbour's {} turns came straight after another one: tokio wakes the tasks \
                     that yielded in reverse order (its list of deferred wake-ups is a stack), so the two tasks run in \
                     pairs — busy, neighbour, neighbour, busy, busy, … — and the neighbour's wait is often two polls \
                     (p90 {} ms)",
                    b.waits.len(),
                    fmt_num(b.wait_p90)
                )));
            }
            if b.wait_stats.max > 10.0 * hold.max(1e-3) {
                out.push(Finding::note(format!(
                    "the longest waits with the budget ({} ms) are far above one poll ({} ms): that is the OS taking \
                     the runtime's thread away (other processes), which no budget can prevent",
                    fmt_num(b.wait_stats.max),
                    fmt_num(b.median_hold_ms())
                )));
            }
        }
        if let (Some(b), Some(f)) = (budget, free) {
            let hold = b.median_hold_ms();
            let ratio = if hold > 0.0 { f.wait_stats.max / hold } else { f64::INFINITY };
            let how = if ratio >= 10.0 {
                format!("{}× longer than one poll under the budget", fmt_num(ratio))
            } else {
                format!(
                    "only {}× one poll under the budget: the whole loop is short here (items × work_ns), so \
                     starving the neighbour costs little — raise items to see it",
                    fmt_num(ratio)
                )
            };
            out.push(Finding::clear(format!(
                "inside unconstrained(..) the busy task never gave the thread up: {} poll(s) for all {} items, and the \
                 neighbour's one turn came after {} ms — the whole loop, {how}",
                f.polls(),
                p.items,
                fmt_num(f.wait_stats.max)
            )));
        }
        if let Some(y) = self.row(CoopVariant::YieldEvery) {
            out.push(Finding::clear(format!(
                "calling yield_now() every {} items (budget off) gave {} items per poll, {} ms per poll and {} turns to \
                 the neighbour: a hand-made budget, which also works where tokio's does not apply (CPU loops, other \
                 crates' channels)",
                p.yield_every,
                y.median_items_per_poll(),
                fmt_num(y.median_hold_ms()),
                y.waits.len()
            )));
        }
        if let Some(fc) = self.row(CoopVariant::FuturesChannel) {
            let starved = fc.polls() <= 2;
            out.push(Finding::clear(if starved {
                format!(
                    "a futures::channel::mpsc receiver is not a tokio resource and spends no budget: with the budget \
                     ON the task drained all {} items in {} poll(s) and the neighbour waited {} ms. The budget only \
                     protects loops that go through tokio's own channels, locks, sockets and timers",
                    p.items,
                    fc.polls(),
                    fmt_num(fc.wait_stats.max)
                )
            } else {
                format!(
                    "the futures::channel::mpsc loop gave the thread up {} times (longest wait {} ms): the channel \
                     ran empty now and then, not because of tokio's budget, which it does not use",
                    fc.polls(),
                    fmt_num(fc.wait_stats.max)
                )
            }));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut lines = Figure::lines(
            "Turns a neighbour task got while another task drained a ready channel",
            "time since both tasks were spawned (ms)",
            "neighbour's turns so far",
        )
        .linear_x()
        .linear_y();
        for r in &self.rows {
            let turns = r.turns();
            let mut pts = vec![Point::new(0.0, 0.0)];
            if turns.len() <= 60 {
                // Few turns: draw steps, so a long wait shows as a flat stretch.
                let mut before = 0;
                for (t, n) in turns {
                    pts.push(Point::new(t, before as f64));
                    pts.push(Point::new(t, n as f64));
                    before = n;
                }
            } else {
                let every = turns.len().div_ceil(60);
                let last = turns.len() - 1;
                pts.extend(
                    turns
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % every == 0 || *i == last)
                        .map(|(_, &(t, n))| Point::new(t, n as f64)),
                );
            }
            lines = lines.series(Series::new(self.label(r.variant), Style::Measured, pts));
        }
        let lines = lines.note(format!(
            "Current-thread runtime: one thread runs both tasks. {} items, {} ns of work each. A flat stretch is time \
             the neighbour wanted to run and could not.",
            self.params.items, self.params.work_ns
        ));
        let mut bars = Figure::bars(
            "How long the busy task held the thread per poll, and how long the neighbour waited",
            "how the busy task drains its source",
            "ms (log scale)",
        )
        .log_y();
        for r in &self.rows {
            let label = self.label(r.variant);
            bars = bars.bar(&label, "one poll of the busy task (median)", r.median_hold_ms(), None);
            bars = bars.bar(&label, "neighbour's wait, p90", r.wait_p90, None);
            bars = bars.bar(&label, "neighbour's longest wait", r.wait_stats.max, None);
        }
        vec![mark_busy(lines, &self.load), mark_busy(bars, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "A busy task draining a ready source beside a neighbour (current-thread runtime)",
            &[
                "busy task",
                "its polls",
                "items per poll (median)",
                "ms per poll (median)",
                "loop ms",
                "neighbour turns",
                "wait p90 ms",
                "wait max ms",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                self.label(r.variant),
                r.polls().to_string(),
                r.median_items_per_poll().to_string(),
                fmt_num(r.median_hold_ms()),
                fmt_num(r.loop_ms),
                r.waits.len().to_string(),
                fmt_num(r.wait_p90),
                fmt_num(r.wait_stats.max),
            ]);
        }
        t.note(format!(
            "tokio 1.54's budget: {TOKIO_BUDGET} units per task poll (one per ready tokio channel receive, lock \
             acquire, socket read...). A wait: the time between two turns of the neighbour, which always wants to run."
        ));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "coop-budget",
        super::NOTEBOOK,
        "a task draining a ready channel vs a neighbour: tokio's coop budget, unconstrained, yield_now, a futures channel",
        coop_budget,
    )]
}

crate::impl_params!(CoopBudget);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coop_refuses_bad_parameters() {
        assert!(coop_budget(&CoopBudget { items: 10, ..Default::default() }).is_err());
        assert!(coop_budget(&CoopBudget { yield_every: 0, ..Default::default() }).is_err());
        let e = CoopBudget { work_ns: 20_000, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("0..=10000"), "{e}");
        assert!(CoopBudget::default().validate().is_ok());
        assert!(CoopBudget::default().estimate() < Duration::from_secs(2));
    }

    #[test]
    fn the_budget_lets_the_neighbour_in_and_unconstrained_does_not() {
        let r = coop_budget(&CoopBudget { items: 5_000, work_ns: 0, yield_every: 50 }).unwrap();
        assert_eq!(r.rows.len(), 4);
        let b = r.row(CoopVariant::Budget).unwrap();
        let f = r.row(CoopVariant::Unconstrained).unwrap();
        let y = r.row(CoopVariant::YieldEvery).unwrap();
        let fc = r.row(CoopVariant::FuturesChannel).unwrap();
        // Counts, not times: these do not depend on the machine's speed.
        assert_eq!(b.median_items_per_poll(), TOKIO_BUDGET, "{:?}", b.items_per_poll);
        assert!(b.polls() >= 5_000 / TOKIO_BUDGET, "{}", b.polls());
        assert!(b.waits.len() >= 5_000 / TOKIO_BUDGET - 1, "the neighbour ran between the polls");
        assert_eq!(f.polls(), 1, "{:?}", f.items_per_poll);
        assert_eq!(f.waits.len(), 1);
        assert_eq!(y.median_items_per_poll(), 50, "{:?}", y.items_per_poll);
        assert_eq!(fc.polls(), 1, "{:?}", fc.items_per_poll);
        assert_eq!(b.items_per_poll.iter().sum::<usize>(), 5_000);
        assert!(r.findings().len() >= 5);
        assert!(r.findings()[0].text.contains("exactly tokio's budget"), "{:?}", r.findings()[0]);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.table().to_string().contains("items per poll"));
    }

    /// The notebook cell proposed for the coop budget, as a learner writes it.
    #[test]
    fn notebook_cell_neighbour_turns() -> Result<(), crate::lab::rt::RtError> {
        use crate::prelude::*;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        fn neighbour_turns(budget: bool) -> Result<usize, RtError> {
            rt::run(Rt::current(), move || async move {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                for i in 0..10_000u64 {
                    tx.send(i).unwrap();
                }
                drop(tx);
                let drain = async move {
                    let mut sum = 0;
                    while let Some(v) = rx.recv().await {
                        sum += v;
                    }
                    sum
                };
                let busy = if budget { tokio::spawn(drain) } else { tokio::spawn(tokio::task::unconstrained(drain)) };
                let turns = Arc::new(AtomicUsize::new(0));
                let counter = turns.clone();
                let neighbour = tokio::spawn(async move {
                    loop {
                        counter.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                });
                busy.await.unwrap();
                neighbour.abort();
                turns.load(Ordering::Relaxed)
            })
        }
        let (on, off) = (neighbour_turns(true)?, neighbour_turns(false)?);
        println!("budget on: {on} turns; unconstrained: {off} turns");
        assert!(on >= 10_000 / TOKIO_BUDGET / 2, "{on}");
        assert!(off <= 3, "{off}");
        Ok(())
    }
}
