//! Lock-free vs locked queues: producers hand items to consumers through
//! `crossbeam::queue::ArrayQueue`, `SegQueue`, and a `Mutex<VecDeque>`.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::compare;
use crate::lab::together::run_together;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Stats, Table, check_choices, check_list,
    check_range, fmt_num,
};
use crossbeam::queue::{ArrayQueue, SegQueue};
use crossbeam::utils::Backoff;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Parameters of [`queues`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Queues {
    /// Producer/consumer pairs to run: each 1..=64, at most 8 values (2 means two
    /// producers and two consumers).
    pub pairs: Vec<usize>,
    /// Items passed through the queue per sample: 1_000..=10_000_000.
    pub items: usize,
    /// Queues, any of [`QueueKind`]: "array", "seg", "mutex".
    pub queues: Vec<QueueKind>,
    /// Capacity of the bounded `ArrayQueue`: 1..=1_000_000.
    pub capacity: usize,
    /// Timed samples per point: 1..=51.
    pub samples: usize,
}

impl Default for Queues {
    fn default() -> Self {
        Queues { pairs: vec![1, 2, 4], items: 500_000, queues: QueueKind::ALL.to_vec(), capacity: 1024, samples: 7 }
    }
}

crate::choices! {
    /// The queues [`queues`] knows.
    pub enum QueueKind {
        /// `crossbeam::queue::ArrayQueue`: bounded, lock-free.
        Array = "array",
        /// `crossbeam::queue::SegQueue`: unbounded, lock-free.
        Seg = "seg",
        /// A `Mutex<VecDeque>`.
        Mutex = "mutex",
    }
}

impl Queues {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("pairs", &self.pairs, 8, 1..=64)?;
        check_range("items", self.items, 1_000..=10_000_000)?;
        check_choices("queues", &self.queues)?;
        check_range("capacity", self.capacity, 1..=1_000_000)?;
        check_range("samples", self.samples, 1..=51)?;
        // About 0.15 µs per item on a 2-core VM (the locked queue with several pairs is
        // the slowest), plus thread start-up per sample.
        let passes = (self.samples * self.pairs.len() * self.queues.len()) as f64;
        check_estimate(
            "items × samples × pairs × queues",
            Duration::from_secs_f64(passes * (self.items as f64 * 0.15e-6 + 0.002)),
        )
    }
}

/// How a queue is named in figures and tables.
pub fn queue_label(q: QueueKind) -> &'static str {
    match q {
        QueueKind::Array => "ArrayQueue (lock-free, bounded)",
        QueueKind::Seg => "SegQueue (lock-free, unbounded)",
        QueueKind::Mutex => "Mutex<VecDeque>",
    }
}

fn short_label(q: QueueKind) -> &'static str {
    match q {
        QueueKind::Array => "ArrayQueue (bounded)",
        QueueKind::Seg => "SegQueue (unbounded)",
        QueueKind::Mutex => "Mutex<VecDeque>",
    }
}

/// One queue with one number of producer/consumer pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRow {
    pub queue: QueueKind,
    pub pairs: usize,
    /// Items through the queue per second, millions (push to pop, all threads).
    pub mops: Stats,
    /// Whether every item pushed was popped exactly once (summed values match).
    pub exact: bool,
}

/// Result of [`queues`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuesReport {
    pub params: Queues,
    pub rows: Vec<QueueRow>,
    pub load: Load,
}

/// The two operations every queue here offers.
trait Queue: Sync {
    fn push(&self, v: u64) -> Result<(), u64>;
    fn pop(&self) -> Option<u64>;
}

impl Queue for ArrayQueue<u64> {
    fn push(&self, v: u64) -> Result<(), u64> {
        ArrayQueue::push(self, v)
    }
    fn pop(&self) -> Option<u64> {
        ArrayQueue::pop(self)
    }
}

impl Queue for SegQueue<u64> {
    fn push(&self, v: u64) -> Result<(), u64> {
        SegQueue::push(self, v);
        Ok(())
    }
    fn pop(&self) -> Option<u64> {
        SegQueue::pop(self)
    }
}

impl Queue for Mutex<VecDeque<u64>> {
    fn push(&self, v: u64) -> Result<(), u64> {
        self.lock().unwrap_or_else(|e| e.into_inner()).push_back(v);
        Ok(())
    }
    fn pop(&self) -> Option<u64> {
        self.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }
}

/// `pairs` producers push the numbers 1..=items between them; `pairs` consumers pop until
/// the producers are done and the queue is empty. Producers facing a full `ArrayQueue`
/// and consumers facing an empty queue back off (spin, then yield). Throughput is items
/// per second of wall time; the popped values are summed and checked.
pub fn queues(p: &Queues) -> Result<QueuesReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("queues", p.queues.len() * p.pairs.len());
    let limit = Duration::from_secs(20);
    let mut rows = Vec::new();
    for q in QueueKind::ALL.iter().copied().filter(|q| p.queues.contains(q)) {
        for &n in &p.pairs {
            let mut mops = Vec::new();
            let mut exact = true;
            for _ in 0..p.samples {
                let r = match q {
                    QueueKind::Array => pass(&ArrayQueue::new(p.capacity), n, p.items, limit),
                    QueueKind::Seg => pass(&SegQueue::new(), n, p.items, limit),
                    QueueKind::Mutex => pass(&Mutex::new(VecDeque::new()), n, p.items, limit),
                };
                let (secs, ok) = r.map_err(|e| RunError::new(format!("passing {} items", p.items), e))?;
                exact &= ok;
                mops.push(p.items as f64 / secs / 1e6);
            }
            rows.push(QueueRow { queue: q, pairs: n, mops: Stats::of(&mops), exact });
            progress.step()?;
        }
    }
    Ok(QueuesReport { params: p.clone(), rows, load: probe.finish() })
}

/// One sample: seconds from start to the last pop, and whether the sum checked out.
/// Threads 0..pairs produce, pairs..2·pairs consume; all start together
/// ([`run_together`]), and every wait gives up at the deadline.
fn pass<Q: Queue>(q: &Q, pairs: usize, items: usize, limit: Duration) -> Result<(f64, bool), String> {
    let producing = AtomicUsize::new(pairs);
    let deadline = Instant::now() + limit;
    let per = items / pairs;
    let produce = |k: usize| -> Result<u64, String> {
        let lo = k * per + 1;
        let hi = if k + 1 == pairs { items } else { (k + 1) * per };
        let mut result = Ok(0);
        'items: for v in lo as u64..=hi as u64 {
            let backoff = Backoff::new();
            let mut v = v;
            while let Err(back) = q.push(v) {
                v = back;
                if backoff.is_completed() && Instant::now() >= deadline {
                    result = Err("producers stalled".to_string());
                    break 'items;
                }
                backoff.snooze();
            }
        }
        producing.fetch_sub(1, Ordering::AcqRel);
        result
    };
    let consume = || -> Result<u64, String> {
        let (mut sum, backoff) = (0u64, Backoff::new());
        loop {
            if let Some(v) = q.pop() {
                sum += v;
                backoff.reset();
            } else if producing.load(Ordering::Acquire) == 0 {
                // Nothing more will be pushed: drain what is left, then stop.
                while let Some(v) = q.pop() {
                    sum += v;
                }
                return Ok(sum);
            } else {
                if backoff.is_completed() && Instant::now() >= deadline {
                    return Err("consumers stalled".to_string());
                }
                backoff.snooze();
            }
        }
    };
    let done = run_together(2 * pairs, |_| Ok(()), |i| if i < pairs { produce(i) } else { consume() })
        .map_err(|e| e.to_string())?;
    let mut sum = 0;
    for (i, r) in done.results.into_iter().enumerate() {
        let v = r?;
        if i >= pairs {
            sum += v;
        }
    }
    let n = items as u64;
    Ok((done.wall.as_secs_f64().max(1e-9), sum == n * (n + 1) / 2))
}

impl QueuesReport {
    /// Median Mops/s of `queue` with `pairs` producer/consumer pairs.
    pub fn median(&self, queue: QueueKind, pairs: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.queue == queue && r.pairs == pairs).map(|r| r.mops.median)
    }

    fn row(&self, queue: QueueKind, pairs: usize) -> Option<&QueueRow> {
        self.rows.iter().find(|r| r.queue == queue && r.pairs == pairs)
    }
}

impl Report for QueuesReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let threads = |n: usize| format!("{n} producer{s} + {n} consumer{s}", s = if n == 1 { "" } else { "s" });
        for &n in &self.params.pairs {
            if let (Some(m), Some(q)) = (self.row(QueueKind::Mutex, n), self.row(QueueKind::Seg, n)) {
                out.push(compare(
                    &format!("{}: Mutex<VecDeque>", threads(n)),
                    &m.mops,
                    "SegQueue",
                    &q.mops,
                    " M items/s",
                ));
            }
        }
        // How moody was the bounded queue? The widest spread of its samples.
        let spread = self
            .rows
            .iter()
            .filter(|r| r.queue == QueueKind::Array && r.mops.min > 0.0)
            .map(|r| (r.pairs, r.mops.max / r.mops.min))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((n, ratio)) = spread {
            out.push(Finding::note(format!(
                "ArrayQueue: its fastest sample was {}× its slowest at {} (capacity {})",
                fmt_num(ratio),
                threads(n),
                self.params.capacity
            )));
        }
        if self.rows.iter().any(|r| !r.exact) {
            out.push(Finding::clear("An item was lost or delivered twice: a queue is broken"));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::bars(
            "Passing items between threads: lock-free queues vs a locked VecDeque",
            "queue",
            "items through the queue, millions/s (median, p25–p75)",
        );
        // Queues on the x axis, thread counts as colours; the legend goes above whichever
        // outer group has the lower bars.
        let top = |q: QueueKind| self.rows.iter().filter(|r| r.queue == q).map(|r| r.mops.p75).fold(0.0, f64::max);
        let shown: Vec<QueueKind> =
            QueueKind::ALL.iter().copied().filter(|q| self.rows.iter().any(|r| r.queue == *q)).collect();
        let legend = match (shown.first(), shown.last()) {
            (Some(&a), Some(&b)) if top(a) < top(b) => crate::lab::Legend::UpperLeft,
            _ => crate::lab::Legend::UpperRight,
        };
        for &q in QueueKind::ALL {
            for r in self.rows.iter().filter(|r| r.queue == q) {
                let series = if r.pairs == 1 {
                    "1 producer + 1 consumer".to_string()
                } else {
                    format!("{} producers + {} consumers", r.pairs, r.pairs)
                };
                f = f.bar(short_label(q), &series, r.mops.median, Some((r.mops.p25, r.mops.p75)));
            }
        }
        vec![super::mark_busy(f.legend(legend), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t =
            Table::new("Queues", &["queue", "producers + consumers", "median M items/s", "p25–p75", "all items once"]);
        for r in &self.rows {
            t.row(vec![
                queue_label(r.queue).into(),
                format!("{} + {}", r.pairs, r.pairs),
                fmt_num(r.mops.median),
                r.mops.quartile_range(),
                if r.exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!(
            "{} items per sample, {} samples; ArrayQueue capacity {}.",
            self.params.items, self.params.samples, self.params.capacity
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        for p in [
            Queues { pairs: vec![0], ..Default::default() },
            Queues { items: 5, ..Default::default() },
            Queues { queues: vec![QueueKind::Seg, QueueKind::Seg], ..Default::default() },
            Queues { capacity: 0, ..Default::default() },
        ] {
            assert!(queues(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_queue_names_the_choices() {
        let e = crate::lab::params_from_pairs::<Queues>("queues", &[("queues".into(), "stack".into())]).unwrap_err();
        assert!(e.to_string().contains("array, seg, mutex"), "{e}");
    }

    #[test]
    fn every_item_arrives_exactly_once() {
        let p = Queues { pairs: vec![1, 3], items: 20_000, capacity: 16, samples: 2, ..Default::default() };
        let r = queues(&p).unwrap();
        assert_eq!(r.rows.len(), 6);
        assert!(r.rows.iter().all(|x| x.exact && x.mops.median > 0.0), "{:?}", r.rows);
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
