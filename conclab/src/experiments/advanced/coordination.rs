//! Coordination between tasks with tokio's primitives, each run briefly and observed:
//! `Semaphore` (bounded concurrency), `Notify`, `Barrier`, `watch` (latest value only),
//! `broadcast` (a lagging receiver is told how many it missed), `oneshot`, and an actor
//! owning its state behind a mailbox (mpsc + oneshot replies). Plus [`which_primitive`],
//! a table of which to use when.

use crate::lab::rt::Rt;
use crate::lab::{Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Table, check_range};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Barrier, Notify, Semaphore, broadcast, mpsc, oneshot, watch};

/// Parameters of [`coordination`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Coordination {
    /// Tasks that want the semaphore, and that meet at the barrier: 1..=1000.
    pub tasks: usize,
    /// The semaphore's permits: 1..=100.
    pub permits: usize,
    /// Messages sent on the watch and broadcast channels and to the actor: 1..=100000.
    pub messages: usize,
    /// The broadcast channel's capacity: 1..=10000.
    pub capacity: usize,
}

impl Default for Coordination {
    fn default() -> Self {
        Coordination { tasks: 20, permits: 3, messages: 100, capacity: 16 }
    }
}

impl Coordination {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("tasks", self.tasks, 1..=1000)?;
        check_range("permits", self.permits, 1..=100)?;
        check_range("messages", self.messages, 1..=100_000)?;
        check_range("capacity", self.capacity, 1..=10_000)
    }
}

/// What one primitive did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoordRow {
    /// The primitive, e.g. "Semaphore(3)".
    pub primitive: String,
    /// What ran.
    pub setup: String,
    /// What was observed.
    pub observed: String,
    /// The number behind the observation (max in flight, messages missed, …).
    pub value: f64,
}

/// The measured facts behind the rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoordFacts {
    /// Most tasks holding a semaphore permit at once.
    pub max_in_flight: usize,
    /// Waiters a `notify_waiters` woke, and whether a `notify_one` before any wait was kept.
    pub notified: usize,
    pub permit_kept: bool,
    /// Tasks that passed the barrier, and how many were told they were the leader.
    pub through_barrier: usize,
    pub leaders: usize,
    /// Values a slow watch receiver saw of `messages`, and the last one it saw.
    pub watch_seen: usize,
    pub watch_last: usize,
    /// Messages a lagging broadcast receiver received, and how many `Lagged(n)` said it missed.
    pub broadcast_received: usize,
    pub broadcast_missed: u64,
    /// The oneshot's answer, and whether a dropped sender gave the receiver an error.
    pub oneshot_value: usize,
    pub oneshot_dropped_is_err: bool,
    /// The actor's final count after `messages` increments, from a `Get` reply.
    pub actor_total: usize,
}

/// Result of [`coordination`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoordinationReport {
    pub params: Coordination,
    pub facts: CoordFacts,
    pub rows: Vec<CoordRow>,
    pub load: Load,
}

/// Messages the counter actor of [`coordination`] understands.
#[derive(Debug)]
pub enum CounterMsg {
    /// Add this much.
    Add(usize),
    /// Reply with the count.
    Get(oneshot::Sender<usize>),
}

/// Spawns a counter actor: it owns its count, takes [`CounterMsg`]s from a mailbox of
/// `mailbox` slots, and ends when every sender is dropped. Returns its address.
pub fn spawn_counter(mailbox: usize) -> mpsc::Sender<CounterMsg> {
    let (tx, mut rx) = mpsc::channel(mailbox.max(1));
    tokio::spawn(async move {
        let mut count = 0;
        while let Some(m) = rx.recv().await {
            match m {
                CounterMsg::Add(n) => count += n,
                CounterMsg::Get(reply) => {
                    let _ = reply.send(count);
                }
            }
        }
    });
    tx
}

/// Runs `tasks` tasks that each hold one of `permits` semaphore permits for a moment;
/// returns the most that held one at once.
pub async fn semaphore_max_in_flight(tasks: usize, permits: usize) -> usize {
    let sem = Arc::new(Semaphore::new(permits));
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (sem, now, max) = (sem.clone(), now.clone(), max.clone());
        set.spawn(async move {
            let _permit = sem.acquire().await.expect("the semaphore is never closed");
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
            now.fetch_sub(1, Ordering::SeqCst);
        });
    }
    while set.join_next().await.is_some() {}
    max.load(Ordering::SeqCst)
}

async fn run_all(p: Coordination) -> CoordFacts {
    let max_in_flight = semaphore_max_in_flight(p.tasks, p.permits).await;

    // Notify: notify_waiters wakes those waiting now; notify_one before a wait stores a permit.
    let notify = Arc::new(Notify::new());
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let n = notify.clone();
        let waiting = n.notified_owned();
        waiters.push(tokio::spawn(waiting));
    }
    tokio::task::yield_now().await;
    notify.notify_waiters();
    let mut notified = 0;
    for w in waiters {
        if tokio::time::timeout(Duration::from_secs(1), w).await.is_ok() {
            notified += 1;
        }
    }
    let n2 = Notify::new();
    n2.notify_one();
    let permit_kept = tokio::time::timeout(Duration::from_millis(100), n2.notified()).await.is_ok();

    // Barrier: every task waits until all have arrived; one is the leader.
    let barrier = Arc::new(Barrier::new(p.tasks));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..p.tasks {
        let b = barrier.clone();
        set.spawn(async move { b.wait().await.is_leader() });
    }
    let (mut through_barrier, mut leaders) = (0, 0);
    while let Some(r) = set.join_next().await {
        through_barrier += 1;
        leaders += usize::from(r.expect("a barrier task does not panic"));
    }

    // watch: a receiver that looks only now and then sees the latest value, not every one.
    let (wtx, mut wrx) = watch::channel(0usize);
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while wrx.changed().await.is_ok() {
            seen.push(*wrx.borrow_and_update());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    });
    for i in 1..=p.messages {
        let _ = wtx.send(i);
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    drop(wtx);
    let seen = watcher.await.unwrap_or_default();
    let (watch_seen, watch_last) = (seen.len(), seen.last().copied().unwrap_or(0));

    // broadcast: the sender never waits; a receiver that falls behind loses the oldest.
    let (btx, mut brx) = broadcast::channel::<usize>(p.capacity);
    for i in 0..p.messages {
        let _ = btx.send(i);
    }
    drop(btx);
    let (mut broadcast_received, mut broadcast_missed) = (0, 0);
    loop {
        match brx.recv().await {
            Ok(_) => broadcast_received += 1,
            Err(broadcast::error::RecvError::Lagged(n)) => broadcast_missed += n,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }

    // oneshot: one value, once; a dropped sender is an error, not a hang.
    let (otx, orx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = otx.send(42usize);
    });
    let oneshot_value = orx.await.unwrap_or(0);
    let (dtx, drx) = oneshot::channel::<usize>();
    drop(dtx);
    let oneshot_dropped_is_err = drx.await.is_err();

    // An actor: the state lives in one task; others send messages and await replies.
    let counter = spawn_counter(8);
    for _ in 0..p.messages {
        let _ = counter.send(CounterMsg::Add(1)).await;
    }
    let (rtx, rrx) = oneshot::channel();
    let _ = counter.send(CounterMsg::Get(rtx)).await;
    let actor_total = rrx.await.unwrap_or(0);

    CoordFacts {
        max_in_flight,
        notified,
        permit_kept,
        through_barrier,
        leaders,
        watch_seen,
        watch_last,
        broadcast_received,
        broadcast_missed,
        oneshot_value,
        oneshot_dropped_is_err,
        actor_total,
    }
}

fn rows(p: &Coordination, f: &CoordFacts) -> Vec<CoordRow> {
    let row =
        |primitive: String, setup: String, observed: String, value: f64| CoordRow { primitive, setup, observed, value };
    vec![
        row(
            format!("Semaphore({})", p.permits),
            format!("{} tasks, each holds a permit 1 ms", p.tasks),
            format!("max {} in flight of {} tasks", f.max_in_flight, p.tasks),
            f.max_in_flight as f64,
        ),
        row(
            "Notify".into(),
            "3 tasks wait, then notify_waiters(); notify_one() before anyone waits".into(),
            format!(
                "notify_waiters woke {} of 3; the early notify_one {}",
                f.notified,
                if f.permit_kept { "was kept for the next wait" } else { "was lost" }
            ),
            f.notified as f64,
        ),
        row(
            format!("Barrier({})", p.tasks),
            format!("{} tasks wait at it", p.tasks),
            format!("{} passed together, {} leader", f.through_barrier, f.leaders),
            f.through_barrier as f64,
        ),
        row(
            "watch".into(),
            format!("{} values sent quickly, receiver sleeps 1 ms per look", p.messages),
            format!("the receiver saw {} of {} values, the last one {}", f.watch_seen, p.messages, f.watch_last),
            f.watch_seen as f64,
        ),
        row(
            format!("broadcast (capacity {})", p.capacity),
            format!("{} messages sent before a slow receiver reads", p.messages),
            format!(
                "slow receiver lagged: missed {} of {}, received {}",
                f.broadcast_missed, p.messages, f.broadcast_received
            ),
            f.broadcast_missed as f64,
        ),
        row(
            "oneshot".into(),
            "one task answers 42; another sender is dropped".into(),
            format!(
                "received {}; the dropped sender {}",
                f.oneshot_value,
                if f.oneshot_dropped_is_err { "gave RecvError" } else { "gave a value?!" }
            ),
            f.oneshot_value as f64,
        ),
        row(
            "actor (mpsc 8 + oneshot)".into(),
            format!("{} Add(1) messages, then Get", p.messages),
            format!("the actor's count: {} of {}", f.actor_total, p.messages),
            f.actor_total as f64,
        ),
    ]
}

/// Runs each primitive briefly on a current-thread runtime and records what it did.
pub fn coordination(p: &Coordination) -> Result<CoordinationReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let params = p.clone();
    let limit = Duration::from_secs(10) + Duration::from_millis(2 * p.messages as u64 + p.tasks as u64);
    let facts = crate::lab::rt::run(Rt::current().timeout(limit), move || run_all(params))
        .map_err(|e| RunError::new("coordination", e))?;
    let rows = rows(p, &facts);
    Ok(CoordinationReport { params: p.clone(), facts, rows, load: probe.finish() })
}

impl Report for CoordinationReport {
    fn findings(&self) -> Vec<Finding> {
        let (p, f) = (&self.params, &self.facts);
        let mut out = Vec::new();
        let bound = p.permits.min(p.tasks);
        out.push(if p.permits >= p.tasks && f.max_in_flight <= p.permits {
            Finding::clear(format!(
                "the semaphore had {} permits for {} tasks, so no task waited ({} held a permit at once): a \
                 semaphore bounds concurrency only when more tasks want permits than there are",
                p.permits, p.tasks, f.max_in_flight
            ))
        } else if f.max_in_flight <= p.permits {
            Finding::clear(format!(
                "the semaphore held concurrency to {} of {} tasks (limit {}): a task waits in acquire() until a \
                 permit is dropped — bounded concurrency without a pool{}",
                f.max_in_flight,
                p.tasks,
                p.permits,
                if f.max_in_flight < bound { " (fewer ran at once than allowed: they finished quickly)" } else { "" }
            ))
        } else {
            Finding::unclear(format!("{} tasks held permits at once, more than {} permits", f.max_in_flight, p.permits))
        });
        let lost = p.messages.saturating_sub(f.watch_seen);
        out.push(Finding::clear(format!(
            "watch kept only the latest value: the slow receiver saw {} of {} values ({} overwritten before it \
             looked), and its last was {} — right for state (config, progress), wrong for events",
            f.watch_seen, p.messages, lost, f.watch_last
        )));
        out.push(Finding::clear(if f.broadcast_missed > 0 {
            format!(
                "broadcast never made the sender wait: with capacity {} the slow receiver got Lagged({}) — it \
                 missed {} of {} messages and received the last {}. Every receiver sees every message only if it \
                 keeps up; size the capacity for the slowest one, or handle Lagged",
                p.capacity, f.broadcast_missed, f.broadcast_missed, p.messages, f.broadcast_received
            )
        } else {
            format!(
                "broadcast with capacity {} held all {} messages, so the receiver lagged not at all; send more \
                 messages than the capacity to see Lagged(n)",
                p.capacity, p.messages
            )
        }));
        out.push(Finding::clear(format!(
            "the actor counted {} of {} increments without a lock: one task owns the state, the mailbox \
             serialises the messages, and a oneshot carries each reply",
            f.actor_total, p.messages
        )));
        out.push(Finding::note(format!(
            "Notify: notify_waiters woke {} of 3 waiting tasks but stores nothing; notify_one stored a permit for \
             the next wait ({}). Barrier: {} tasks passed together, {} of them told it was the leader",
            f.notified,
            if f.permit_kept { "kept" } else { "lost" },
            f.through_barrier,
            f.leaders
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let (p, f) = (&self.params, &self.facts);
        let fig = Figure::bars("What each primitive let through", "primitive", "count")
            .bar(&format!("Semaphore({})", p.permits), "max in flight", f.max_in_flight as f64, None)
            .bar(&format!("Semaphore({})", p.permits), "tasks", p.tasks as f64, None)
            .bar("watch", "values seen", f.watch_seen as f64, None)
            .bar("watch", "values sent", p.messages as f64, None)
            .bar(&format!("broadcast({})", p.capacity), "received", f.broadcast_received as f64, None)
            .bar(&format!("broadcast({})", p.capacity), "missed (Lagged)", f.broadcast_missed as f64, None)
            .bar("actor", "count", f.actor_total as f64, None)
            .bar("actor", "messages sent", p.messages as f64, None);
        vec![crate::lab::noise::mark_busy(fig, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Coordination primitives, observed", &["primitive", "what ran", "observed"]);
        for r in &self.rows {
            t.row(vec![r.primitive.clone(), r.setup.clone(), r.observed.clone()]);
        }
        t.note("Current-thread runtime; see which_primitive() for which to use when.");
        t
    }
}

/// Which coordination primitive to use when: need → primitive → note.
pub fn which_primitive() -> Table {
    let mut t = Table::new("Which primitive to use when", &["you need", "use", "note"]);
    for (need, prim, note) in [
        (
            "at most N things at once (requests, connections)",
            "tokio::sync::Semaphore",
            "acquire_owned() to move the permit into a task; the permit's drop releases it",
        ),
        (
            "wake a task when something happened, no data",
            "tokio::sync::Notify",
            "notify_one stores one permit; notify_waiters wakes only those already waiting",
        ),
        (
            "N tasks start a phase together",
            "tokio::sync::Barrier",
            "fixed count; one waiter is the leader; rarely needed in async services",
        ),
        (
            "many readers of the latest state (config, shutdown flag, progress)",
            "tokio::sync::watch",
            "readers skip intermediate values; changed() + borrow_and_update()",
        ),
        (
            "every subscriber sees every event",
            "tokio::sync::broadcast",
            "bounded ring: a slow receiver gets Lagged(n) and loses the oldest n",
        ),
        ("one reply to one request", "tokio::sync::oneshot", "dropped sender → RecvError, so a waiter never hangs"),
        (
            "a queue of work with backpressure",
            "tokio::sync::mpsc::channel(n)",
            "send().await waits when full; unbounded_channel never waits (memory grows)",
        ),
        (
            "state owned by one task, used by many",
            "actor: mpsc mailbox + oneshot replies",
            "no lock held across .await; the mailbox orders the requests",
        ),
        (
            "shared data, short critical sections",
            "std::sync::Mutex (or tokio::sync::Mutex across .await)",
            "tokio's Mutex only when the guard must live across an .await",
        ),
        (
            "stop many tasks at once",
            "tokio_util::sync::CancellationToken",
            "child tokens; cancelled().await in select!",
        ),
    ] {
        t.row(vec![need.into(), prim.into(), note.into()]);
    }
    t
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "coordination",
        super::NOTEBOOK,
        "Semaphore, Notify, Barrier, watch, broadcast (lagging), oneshot and an actor, each run and observed",
        coordination,
    )]
}

crate::impl_params!(Coordination);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordination_refuses_bad_parameters() {
        assert!(coordination(&Coordination { permits: 0, ..Default::default() }).is_err());
        let e = Coordination { capacity: 0, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("1..=10000"), "{e}");
        assert!(Coordination::default().validate().is_ok());
    }

    #[test]
    fn each_primitive_does_what_it_says() {
        let r = coordination(&Coordination::default()).unwrap();
        let f = &r.facts;
        assert!(f.max_in_flight <= 3 && f.max_in_flight >= 1, "{}", f.max_in_flight);
        assert_eq!(f.notified, 3);
        assert!(f.permit_kept);
        assert_eq!((f.through_barrier, f.leaders), (20, 1));
        assert!(f.watch_seen < 100, "{}", f.watch_seen);
        assert_eq!(f.watch_last, 100);
        // broadcast: capacity 16 of 100 sent before reading: exactly 84 missed, 16 received.
        assert_eq!((f.broadcast_missed, f.broadcast_received), (84, 16));
        assert_eq!(f.oneshot_value, 42);
        assert!(f.oneshot_dropped_is_err);
        assert_eq!(f.actor_total, 100);
        assert_eq!(r.rows.len(), 7);
        assert!(r.findings().len() >= 5);
        assert!(r.findings()[2].text.contains("Lagged(84)"), "{:?}", r.findings()[2]);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.table().to_string().contains("max 3 in flight") || f.max_in_flight < 3);
        assert!(which_primitive().to_string().contains("Semaphore"));
    }

    /// The notebook cells proposed for coordination, as a learner writes them.
    #[test]
    fn notebook_cells() -> Result<(), crate::lab::rt::RtError> {
        use crate::prelude::*;
        // Bounded concurrency with a Semaphore.
        let max = rt::run(Rt::current(), || async { semaphore_max_in_flight(20, 4).await })?;
        assert!(max <= 4);
        // broadcast: a slow receiver is told how many it missed.
        let missed = rt::run(Rt::current(), || async {
            let (tx, mut rx) = tokio::sync::broadcast::channel::<u32>(16);
            for i in 0..100 {
                tx.send(i).unwrap();
            }
            match rx.recv().await {
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => n,
                other => panic!("expected Lagged, got {other:?}"),
            }
        })?;
        assert_eq!(missed, 84);
        // An actor: spawn it, send, ask.
        let total = rt::run(Rt::current(), || async {
            let counter = spawn_counter(8);
            for _ in 0..10 {
                counter.send(CounterMsg::Add(2)).await.unwrap();
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            counter.send(CounterMsg::Get(reply)).await.unwrap();
            answer.await.unwrap()
        })?;
        assert_eq!(total, 20);
        // watch: the latest value wins.
        let last = rt::run(Rt::current(), || async {
            let (tx, mut rx) = tokio::sync::watch::channel(0);
            for i in 1..=5 {
                tx.send(i).unwrap();
            }
            rx.changed().await.unwrap();
            *rx.borrow_and_update()
        })?;
        assert_eq!(last, 5);
        Ok(())
    }
}
