//! Who is polled when: two timers combined with `join!` and with `select!`, each wrapped
//! in [`Traced`], so every poll, `Pending`, wake, `Ready` and drop is on the record.

use crate::lab::rt::{self, Rt};
use crate::lab::{Figure, Finding, LabError, ParamError, Report, Table, check_range, fmt_num};
use crate::primitives::future::{TIMER_THREAD, TimerFuture, TraceEvent, TraceKind, TraceLog, Traced};
use serde::{Deserialize, Serialize};
use std::time::Duration;

crate::choices! {
    /// What each of the two futures waits on.
    pub enum TimerKind {
        /// `tokio::time::sleep`: woken by the runtime's timer driver.
        Tokio = "tokio",
        /// [`TimerFuture`]: woken by a helper thread of its own.
        Thread = "thread",
    }
}

/// Parameters of [`poll_trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollTrace {
    /// How long future A waits, in ms: 1..=5000.
    pub a_ms: u64,
    /// How long future B waits, in ms: 1..=5000.
    pub b_ms: u64,
    /// What the futures wait on: `tokio` (`tokio::time::sleep`) or `thread` ([`TimerFuture`]).
    pub timer: TimerKind,
}

impl Default for PollTrace {
    fn default() -> Self {
        PollTrace { a_ms: 10, b_ms: 30, timer: TimerKind::Tokio }
    }
}

impl PollTrace {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("a_ms", self.a_ms, 1..=5000)?;
        check_range("b_ms", self.b_ms, 1..=5000)
    }
}

/// `join!` or `select!`.
pub const JOIN: &str = "join!";
pub const SELECT: &str = "select!";

/// One traced run of a combinator over the two timers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceRun {
    /// [`JOIN`] or [`SELECT`].
    pub combinator: String,
    /// Every event of futures "A" and "B", in ms since the combinator was first polled.
    pub events: Vec<TraceEvent>,
    /// When the combinator returned, in ms.
    pub finished_ms: f64,
    /// For `select!`: the future whose branch ran.
    pub winner: Option<String>,
}

impl TraceRun {
    fn of(&self, label: &str) -> impl Iterator<Item = &TraceEvent> {
        self.events.iter().filter(move |e| e.label == label)
    }

    /// How often `label` was polled.
    pub fn polls(&self, label: &str) -> usize {
        self.of(label).filter(|e| e.kind == TraceKind::Poll).count()
    }

    /// How often `label`'s waker was called.
    pub fn wakes(&self, label: &str) -> usize {
        self.of(label).filter(|e| e.kind == TraceKind::Wake).count()
    }

    /// When `label` returned `Ready`, if it did.
    pub fn ready_at(&self, label: &str) -> Option<f64> {
        self.of(label).find(|e| e.kind == TraceKind::Ready).map(|e| e.at_ms)
    }

    /// When `label` was dropped unfinished, if it was.
    pub fn dropped_at(&self, label: &str) -> Option<f64> {
        self.of(label).find(|e| e.kind == TraceKind::Dropped).map(|e| e.at_ms)
    }

    /// Times of the polls of `label` (after its first) that no wake of its own waker
    /// preceded: polls it got because something else woke the task.
    pub fn polls_without_own_wake(&self, label: &str) -> Vec<f64> {
        let mut out = Vec::new();
        let mut woken = true; // the first poll needs no wake
        for e in self.of(label) {
            match e.kind {
                TraceKind::Wake => woken = true,
                TraceKind::Poll => {
                    if !woken {
                        out.push(e.at_ms);
                    }
                    woken = false;
                }
                _ => {}
            }
        }
        out
    }

    /// The threads that called the wakers, each once.
    pub fn wake_threads(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.events.iter().filter(|e| e.kind == TraceKind::Wake) {
            if !out.contains(&e.thread) {
                out.push(e.thread.clone());
            }
        }
        out
    }
}

/// Result of [`poll_trace`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollTraceReport {
    pub params: PollTrace,
    /// The `join!` run, then the `select!` run.
    pub runs: Vec<TraceRun>,
}

async fn wait(timer: TimerKind, ms: u64) {
    let d = Duration::from_millis(ms);
    match timer {
        TimerKind::Tokio => tokio::time::sleep(d).await,
        TimerKind::Thread => {
            TimerFuture::new(d).await;
        }
    }
}

/// Runs two timers, A (`a_ms`) and B (`b_ms`), first under `tokio::join!` and then
/// under `tokio::select!` (`biased`: A's branch is polled first), each future wrapped in
/// [`Traced`], on a current-thread runtime (one thread polls everything) through
/// [`crate::lab::rt`]. A `select!` drops the future that did not finish.
pub fn poll_trace(p: &PollTrace) -> Result<PollTraceReport, LabError> {
    p.validate()?;
    let mut runs = Vec::new();
    for combinator in [JOIN, SELECT] {
        let (a, b, timer) = (p.a_ms, p.b_ms, p.timer);
        let limit = Duration::from_millis(a.max(b) + 5_000);
        let run = rt::run(Rt::current().timeout(limit), move || async move {
            let log = TraceLog::new();
            let fa: Traced<_> = log.trace("A", wait(timer, a));
            let fb: Traced<_> = log.trace("B", wait(timer, b));
            let winner = if combinator == JOIN {
                tokio::join!(fa, fb);
                None
            } else {
                tokio::select! {
                    biased;
                    _ = fa => Some("A".to_string()),
                    _ = fb => Some("B".to_string()),
                }
            };
            // `select!` has dropped the other future by now.
            let finished_ms = log.now_ms();
            TraceRun { combinator: combinator.into(), events: log.events(), finished_ms, winner }
        })?;
        runs.push(run);
    }
    Ok(PollTraceReport { params: p.clone(), runs })
}

impl PollTraceReport {
    /// The run of `combinator` ([`JOIN`] or [`SELECT`]).
    pub fn run(&self, combinator: &str) -> Option<&TraceRun> {
        self.runs.iter().find(|r| r.combinator == combinator)
    }

    fn deadline(&self, label: &str) -> f64 {
        if label == "A" { self.params.a_ms as f64 } else { self.params.b_ms as f64 }
    }
}

/// Says who a waking thread is: `the runtime's own thread (its timer driver)`.
fn who(thread: &str) -> String {
    if thread == TIMER_THREAD {
        format!("the TimerFutures' helper threads ({thread})")
    } else if thread.ends_with("-main") {
        "the runtime's own thread (its timer driver, between polls)".into()
    } else {
        format!("thread {thread}")
    }
}

/// A time in ms for event logs: 3 decimals below 1 ms (`0.013`), else 3 digits (`21.1`).
pub(crate) fn fmt_ms(t: f64) -> String {
    if t.abs() < 1.0 { format!("{t:.3}") } else { fmt_num(t) }
}

fn times(ms: &[f64]) -> String {
    ms.iter().map(|t| format!("{} ms", fmt_ms(*t))).collect::<Vec<_>>().join(", ")
}

fn polled(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

impl Report for PollTraceReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (a, b) = (self.params.a_ms, self.params.b_ms);
        if let Some(j) = self.run(JOIN) {
            out.push(Finding::note(format!(
                "join!: A was polled {}, B {}; join! returned at {} ms, against max(a, b) = {} ms: it waits for both",
                polled(j.polls("A")),
                polled(j.polls("B")),
                fmt_num(j.finished_ms),
                a.max(b)
            )));
            for label in ["A", "B"] {
                let extra = j.polls_without_own_wake(label);
                if !extra.is_empty() {
                    out.push(Finding::note(format!(
                        "join! polled {label} at {} although {label}'s own waker had not been called: the other \
                         future's wake woke the whole task, and join! polls every future that has not finished",
                        times(&extra)
                    )));
                }
            }
        }
        if let Some(s) = self.run(SELECT) {
            let winner = s.winner.clone().unwrap_or_default();
            let mut text = format!(
                "select!: returned at {} ms, against min(a, b) = {} ms; {winner} finished first",
                fmt_num(s.finished_ms),
                a.min(b)
            );
            for label in ["A", "B"] {
                if let Some(t) = s.dropped_at(label) {
                    text += &format!(
                        "; {label} was polled {} and dropped unfinished at {} ms — its code after the .await never ran",
                        polled(s.polls(label)),
                        fmt_ms(t)
                    );
                }
            }
            out.push(Finding::note(text));
        }
        // How late each timer's Ready came, from the join! run (both finish there).
        if let Some(j) = self.run(JOIN) {
            let late: Vec<String> = ["A", "B"]
                .iter()
                .filter_map(|l| {
                    let d = self.deadline(l);
                    j.ready_at(l)
                        .map(|t| format!("{l} was Ready {} ms after its {} ms deadline", fmt_ms(t - d), fmt_num(d)))
                })
                .collect();
            if !late.is_empty() {
                let why = match self.params.timer {
                    TimerKind::Tokio => "tokio's timers have 1 ms resolution and never fire early",
                    TimerKind::Thread => "the helper thread's sleep ends at the deadline or later, never before",
                };
                out.push(Finding::note(format!("In join!, {} ({why}).", late.join(" and "))));
            }
        }
        let mut wakers: Vec<String> = Vec::new();
        for r in &self.runs {
            for t in r.wake_threads() {
                let w = who(&t);
                if !wakers.contains(&w) {
                    wakers.push(w);
                }
            }
        }
        if !wakers.is_empty() {
            out.push(Finding::note(format!("Every wake came from {}.", wakers.join(" and from "))));
        }
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let lanes: Vec<(String, &[TraceEvent])> = self
            .runs
            .iter()
            .flat_map(|r| {
                [("A", p.a_ms), ("B", p.b_ms)]
                    .map(|(l, ms)| (format!("{}: {l} ({ms} ms)", r.combinator), &r.events[..]))
            })
            .collect();
        let end = self.runs.iter().map(|r| r.finished_ms).fold(0.0, f64::max);
        let mut f = Figure::timeline(
            "join! polls both timers until both are Ready; select! stops at the first and drops the other",
            "time since the combinator was first polled (ms)",
            "future",
        );
        let mut spans = Vec::new();
        for (lane, events) in &lanes {
            let label = lane.split(": ").nth(1).and_then(|s| s.split(' ').next()).unwrap_or("");
            let mine: Vec<TraceEvent> = events.iter().filter(|e| e.label == label).cloned().collect();
            spans.extend(trace_spans(lane, &mine, end));
        }
        f = push_spans(f, spans);
        f = f.note(format!(
            "Marks: a poll starts at its mark's left edge, a wake ends at its mark's right edge. Timers: {}; \
             current-thread runtime (one thread polls everything); select! is biased (A's branch first).",
            match p.timer {
                TimerKind::Tokio => "tokio::time::sleep",
                TimerKind::Thread => "TimerFuture (a helper thread each)",
            }
        ));
        vec![f]
    }

    fn table(&self) -> Table {
        let mut t = trace_table("Every event of futures A and B, in order", &[]);
        for r in &self.runs {
            add_rows(&mut t, &r.combinator, &r.events);
        }
        t.note(format!(
            "A waits {} ms, B {} ms; times in ms since the combinator was first polled. poll #: the poll the event \
             belongs to (for a wake: the latest poll before it).",
            self.params.a_ms, self.params.b_ms
        ));
        t
    }
}

pub const WAITING: &str = "Pending, until woken";
pub const POLL_PENDING: &str = "poll → Pending";
pub const DROPPED: &str = "dropped unfinished";
pub const POLL_READY: &str = "poll → Ready";
pub const WAKE: &str = "wake";

/// The spans that draw one future's events in lane `lane`: a bar from each `Pending` to
/// what ends the wait (a wake, the next poll, a drop), and a mark per poll, wake and drop,
/// `end_ms` wide / 120 so marks stay visible next to long waits.
fn trace_spans(lane: &str, events: &[TraceEvent], end_ms: f64) -> Vec<(String, &'static str, f64, f64)> {
    let w = (end_ms / 120.0).max(1e-3);
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            TraceKind::Pending => {
                let until = events[i + 1..]
                    .iter()
                    .find(|n| matches!(n.kind, TraceKind::Wake | TraceKind::Poll | TraceKind::Dropped))
                    .map_or(end_ms, |n| n.at_ms);
                out.push((lane.to_string(), WAITING, e.at_ms, until.max(e.at_ms)));
            }
            TraceKind::Poll => {
                let ready = events[i + 1..].iter().find(|n| matches!(n.kind, TraceKind::Pending | TraceKind::Ready));
                let key = if ready.is_some_and(|n| n.kind == TraceKind::Ready) { POLL_READY } else { POLL_PENDING };
                let stop = ready.map_or(e.at_ms, |n| n.at_ms);
                out.push((lane.to_string(), key, e.at_ms, stop.max(e.at_ms + w)));
            }
            TraceKind::Wake => out.push((lane.to_string(), WAKE, e.at_ms - w, e.at_ms)),
            TraceKind::Dropped => out.push((lane.to_string(), DROPPED, e.at_ms, e.at_ms + w)),
            TraceKind::Ready => {}
        }
    }
    out
}

/// Adds spans in a fixed order of kinds, so marks are drawn over the waits and a kind's
/// colour (given by first appearance) does not depend on which kinds a trace has: the
/// drop, which only `select!`-like traces have, comes last. Lanes keep the order of `spans`: each lane first gets an empty
/// span of the first kind (a timeline lists lanes and kinds by first appearance).
fn push_spans(mut f: Figure, mut spans: Vec<(String, &'static str, f64, f64)>) -> Figure {
    let order = [WAITING, POLL_PENDING, WAKE, POLL_READY, DROPPED];
    let mut lanes: Vec<(String, f64)> = Vec::new();
    for s in &spans {
        if !lanes.iter().any(|l| l.0 == s.0) {
            lanes.push((s.0.clone(), s.2));
        }
    }
    for (lane, at) in lanes {
        f = f.span(&lane, order[0], at, at);
    }
    spans.sort_by_key(|s| order.iter().position(|k| *k == s.1));
    for (lane, key, a, b) in spans {
        f = f.span(&lane, key, a, b);
    }
    f
}

/// A timeline of the events in `log`: one lane per traced future (by label), bars for
/// the time spent `Pending` until woken, marks for polls, wakes and drops. For a cell:
/// `trace_figure("my join", &log)` after running futures traced with `log`.
pub fn trace_figure(title: &str, log: &TraceLog) -> Figure {
    let events = log.events();
    let end = events.iter().map(|e| e.at_ms).fold(0.0, f64::max);
    let mut labels: Vec<String> = Vec::new();
    for e in &events {
        if !labels.contains(&e.label) {
            labels.push(e.label.clone());
        }
    }
    let mut spans = Vec::new();
    for l in &labels {
        let mine: Vec<TraceEvent> = events.iter().filter(|e| &e.label == l).cloned().collect();
        spans.extend(trace_spans(l, &mine, end));
    }
    push_spans(Figure::timeline(title, "time since the log's origin (ms)", "future"), spans)
}

/// The events of `log` as a table, one row per event.
pub fn trace_log_table(title: &str, log: &TraceLog) -> Table {
    trace_table(title, &log.events())
}

fn trace_table(title: &str, events: &[TraceEvent]) -> Table {
    let mut t = Table::new(title, &["run", "ms", "future", "event", "poll #", "thread"]);
    add_rows(&mut t, "", events);
    t
}

fn add_rows(t: &mut Table, run: &str, events: &[TraceEvent]) {
    for e in events {
        t.row(vec![
            run.to_string(),
            fmt_ms(e.at_ms),
            e.label.clone(),
            e.kind.name().to_string(),
            e.poll.to_string(),
            e.thread.clone(),
        ]);
    }
}

crate::impl_params!(PollTrace);

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "poll-trace",
        "04-async",
        "two timers under join! and select!, every poll / Pending / wake / Ready / drop traced on a timeline",
        poll_trace,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        assert!(poll_trace(&PollTrace { a_ms: 0, ..Default::default() }).is_err());
        assert!(PollTrace { b_ms: 5001, ..Default::default() }.validate().is_err());
        assert!(PollTrace::default().validate().is_ok());
    }

    #[test]
    fn join_finishes_both_and_select_drops_the_slower_one() {
        for timer in [TimerKind::Tokio, TimerKind::Thread] {
            let r = poll_trace(&PollTrace { a_ms: 5, b_ms: 60, timer }).unwrap();
            let (j, s) = (r.run(JOIN).unwrap(), r.run(SELECT).unwrap());
            // join!: both Ready, never before their deadlines; nothing dropped.
            assert!(j.ready_at("A").is_some() && j.ready_at("B").unwrap() >= 60.0, "{:?}", j.events);
            assert!(j.finished_ms >= 60.0 && j.dropped_at("B").is_none());
            assert!(j.polls("A") >= 2 && j.polls("B") >= 2 && j.wakes("B") >= 1);
            // select!: biased, and A's deadline comes first, so A always wins; B is dropped
            // unfinished and never Ready.
            assert_eq!(s.winner.as_deref(), Some("A"));
            assert!(s.ready_at("B").is_none() && s.dropped_at("B").is_some(), "{:?}", s.events);
            assert!(s.dropped_at("B").unwrap() <= s.finished_ms);
            let f = r.findings();
            assert!(f.iter().any(|f| f.text.contains("dropped unfinished")), "{f:?}");
            let svg = r.figure().to_svg();
            assert!(svg.contains("<svg") && svg.contains("select!: B (60 ms)"));
            assert!(r.figure().errors.is_empty());
            assert!(r.table().rows.len() >= 10);
        }
    }

    #[test]
    fn polls_without_a_wake_of_their_own_are_found() {
        let ev = |kind, at_ms| TraceEvent { label: "B".into(), kind, at_ms, poll: 0, thread: "t".into() };
        use TraceKind::*;
        let run = TraceRun {
            combinator: JOIN.into(),
            events: vec![ev(Poll, 0.0), ev(Pending, 0.1), ev(Poll, 10.0), ev(Pending, 10.1), ev(Wake, 30.0)]
                .into_iter()
                .chain([ev(Poll, 30.1), ev(Ready, 30.2)])
                .collect(),
            finished_ms: 30.3,
            winner: None,
        };
        assert_eq!(run.polls_without_own_wake("B"), [10.0]);
        assert_eq!((run.polls("B"), run.wakes("B"), run.ready_at("B")), (3, 1, Some(30.2)));
        let spans = trace_spans("B", &run.events, 30.3);
        assert_eq!(spans.iter().filter(|s| s.1 == WAITING).count(), 2);
        assert_eq!(spans.iter().filter(|s| s.1 == POLL_READY).count(), 1);
    }
}
