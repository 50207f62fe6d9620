//! A start line for async tasks: the async analogue of [`crate::lab::together::Gate`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// A start line for tasks: each task awaits [`StartGate::wait`]; the gate opens when all
/// `tasks` have arrived (or when [`StartGate::open`] is called), so the work of every task
/// starts at the same moment, after all were spawned. Clone it into each task.
///
/// ```
/// use conclab::lab::rt::{self, Rt, StartGate};
/// let started = rt::run(Rt::multi(2), || async {
///     let gate = StartGate::new(3);
///     let tasks: Vec<_> = (0..3)
///         .map(|i| {
///             let gate = gate.clone();
///             tokio::spawn(async move { gate.wait().await; i })
///         })
///         .collect();
///     let opened_at = gate.opened().await;
///     let mut ids = Vec::new();
///     for t in tasks { ids.push(t.await.unwrap()); }
///     (ids, opened_at.elapsed() < std::time::Duration::from_secs(5))
/// })
/// .unwrap();
/// assert_eq!(started, (vec![0, 1, 2], true));
/// ```
#[derive(Clone, Debug)]
pub struct StartGate {
    inner: Arc<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    expected: usize,
    arrived: AtomicUsize,
    /// `None` while closed, then the instant the gate opened.
    open: tokio::sync::watch::Sender<Option<Instant>>,
}

impl StartGate {
    /// A closed gate that opens by itself when `tasks` waiters have arrived
    /// (`tasks == 0`: only [`StartGate::open`] opens it).
    pub fn new(tasks: usize) -> StartGate {
        let (open, _) = tokio::sync::watch::channel(None);
        StartGate { inner: Arc::new(GateInner { expected: tasks, arrived: AtomicUsize::new(0), open }) }
    }

    /// Arrives at the gate and waits until it opens; returns the instant it opened (the
    /// same for every task: a common origin for timing).
    pub async fn wait(&self) -> Instant {
        let mut rx = self.inner.open.subscribe();
        let arrived = self.inner.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        if arrived == self.inner.expected {
            self.open();
        }
        let opened = rx.wait_for(Option::is_some).await.map(|v| *v);
        // The sender lives in `self`, so the channel cannot close while we wait.
        opened.ok().flatten().unwrap_or_else(Instant::now)
    }

    /// Opens the gate now (if it is not open yet) and returns the instant it opened.
    pub fn open(&self) -> Instant {
        let mut at = Instant::now();
        self.inner.open.send_if_modified(|v| match v {
            Some(t) => {
                at = *t;
                false
            }
            None => {
                *v = Some(at);
                true
            }
        });
        at
    }

    /// Waits until the gate has opened and returns when it did.
    pub async fn opened(&self) -> Instant {
        let mut rx = self.inner.open.subscribe();
        let opened = rx.wait_for(Option::is_some).await.map(|v| *v);
        opened.ok().flatten().unwrap_or_else(Instant::now)
    }

    /// How many tasks have arrived so far.
    pub fn arrived(&self) -> usize {
        self.inner.arrived.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_opened_by_hand_keeps_its_first_instant() {
        let g = StartGate::new(0);
        let a = g.open();
        assert_eq!(g.open(), a, "opening twice keeps the first instant");
    }
}
