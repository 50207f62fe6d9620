//! A thread's life as the process sees it: a detached thread lives on after its handle is
//! dropped, scoped threads end with their scope. Sampled as the process's thread count.

use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, check_range,
    fmt_num, thread_count,
};
use serde::{Deserialize, Serialize};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Parameters of [`lifecycle`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lifecycle {
    /// How long the detached thread works (sleeps) before it ends by itself, in ms: 10..=5000.
    pub detached_ms: u64,
    /// Scoped threads started afterwards: 1..=64.
    pub scoped: usize,
    /// How long each scoped thread works (sleeps), in ms: 10..=5000.
    pub scoped_ms: u64,
    /// Interval between two looks at the thread count, in ms: 1..=100.
    pub sample_ms: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { detached_ms: 150, scoped: 4, scoped_ms: 100, sample_ms: 5 }
    }
}

impl Lifecycle {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("detached_ms", self.detached_ms, 10..=5000)?;
        check_range("scoped", self.scoped, 1..=64)?;
        check_range("scoped_ms", self.scoped_ms, 10..=5000)?;
        check_range("sample_ms", self.sample_ms, 1..=100)
    }
}

/// Something that happened, at a time since the start (ms).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifeEvent {
    pub at_ms: f64,
    pub what: String,
}

/// Result of [`lifecycle`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleReport {
    pub params: Lifecycle,
    /// (ms since start, threads in the process).
    pub samples: Vec<(f64, usize)>,
    pub events: Vec<LifeEvent>,
    pub threads_before: usize,
    pub threads_after: usize,
    /// The name the detached thread saw for itself (set with `Builder::name`).
    pub detached_name: String,
    /// Most threads seen between dropping the handle and the thread's last message.
    pub detached_peak: usize,
    /// How long the detached thread lived on after its handle was dropped, in ms (to its
    /// last message).
    pub detached_lived_ms: f64,
    /// From its last message until the count was back at `threads_before`, in ms
    /// (`None`: it did not come back within 2 s).
    pub exit_after_message_ms: Option<f64>,
    /// Most threads seen while the scoped threads ran.
    pub scoped_peak: usize,
    /// The count right after `thread::scope` returned.
    pub after_scope: usize,
    pub load: Load,
}

/// Spawns a named thread and drops its `JoinHandle` (detaching it); the thread sleeps
/// `detached_ms` and says goodbye over a channel. Meanwhile the thread count of the
/// process is sampled: it stays one higher although nothing refers to the thread any
/// more. The experiment waits (bounded) for the goodbye and for the count to come back
/// down — an experiment must not return with a thread of its own still running. Then
/// `scoped` threads run inside `std::thread::scope`, which joins them all before it
/// returns.
pub fn lifecycle(p: &Lifecycle) -> Result<LifecycleReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let t0 = Instant::now();
    let every = Duration::from_millis(p.sample_ms);
    let before = thread_count();
    let mut tl = Timeline::start(t0, every, before);
    let detached = detached_part(p, &mut tl, before)?;
    let scoped = scoped_part(p, &mut tl, before);
    for _ in 0..3 {
        tl.sample();
        std::thread::sleep(every);
    }
    let after = thread_count();
    tl.record(after);
    tl.event(format!("end: {after} threads in this process"));
    Ok(LifecycleReport {
        params: p.clone(),
        samples: tl.samples,
        events: tl.events,
        threads_before: before,
        threads_after: after,
        detached_name: detached.name,
        detached_peak: detached.peak,
        detached_lived_ms: detached.lived_ms,
        exit_after_message_ms: detached.exit_after_message_ms,
        scoped_peak: scoped.peak,
        after_scope: scoped.after_scope,
        load: probe.finish(),
    })
}

/// The record of one run: thread-count samples and events, both timed in ms since `t0`,
/// and the interval between two looks at the count.
struct Timeline {
    t0: Instant,
    every: Duration,
    samples: Vec<(f64, usize)>,
    events: Vec<LifeEvent>,
}

impl Timeline {
    /// A record that starts at `t0` with `before` threads in the process.
    fn start(t0: Instant, every: Duration, before: usize) -> Timeline {
        Timeline {
            t0,
            every,
            samples: vec![(0.0, before)],
            events: vec![LifeEvent { at_ms: 0.0, what: format!("start: {before} threads in this process") }],
        }
    }

    /// Milliseconds since the start, now.
    fn now_ms(&self) -> f64 {
        Instant::now().duration_since(self.t0).as_secs_f64() * 1e3
    }

    /// Takes the time, then looks at the thread count, and records both.
    fn sample(&mut self) {
        let at = self.now_ms();
        self.samples.push((at, thread_count()));
    }

    /// Records a count `n` already taken, at the time now.
    fn record(&mut self, n: usize) {
        let at = self.now_ms();
        self.samples.push((at, n));
    }

    /// Records an event at the time now, and returns that time.
    fn event(&mut self, what: impl Into<String>) -> f64 {
        let at = self.now_ms();
        self.events.push(LifeEvent { at_ms: at, what: what.into() });
        at
    }
}

/// What the detached thread's part of the run found (see [`LifecycleReport`]'s fields of
/// the same names, `detached_` left off).
struct Detached {
    name: String,
    peak: usize,
    lived_ms: f64,
    exit_after_message_ms: Option<f64>,
}

/// The detached part: spawns the thread, drops its handle, samples while it lives, waits
/// (bounded) for its last message and then for the count to come back to `before`.
fn detached_part(p: &Lifecycle, tl: &mut Timeline, before: usize) -> Result<Detached, LabError> {
    let work = Duration::from_millis(p.detached_ms);
    let rx = spawn_detached(work)?;
    let dropped_ms = tl.event("spawned 'detached-worker' and dropped its JoinHandle");
    let name = await_goodbye(tl, &rx, p.detached_ms, work)?;
    let peak = tl.samples.iter().map(|s| s.1).max().unwrap_or(before);
    let message_ms = tl.event("the detached thread sent its last message");
    let exit_after_message_ms = await_exit(tl, before, message_ms);
    for _ in 0..3 {
        std::thread::sleep(tl.every);
        tl.sample();
    }
    Ok(Detached { name, peak, lived_ms: message_ms - dropped_ms, exit_after_message_ms })
}

/// Spawns the thread named `detached-worker`, which sleeps `work` and then sends its own
/// name as the last thing it does, and drops its `JoinHandle`: nothing can join it any more.
fn spawn_detached(work: Duration) -> Result<mpsc::Receiver<String>, LabError> {
    let (tx, rx) = mpsc::channel::<String>();
    let handle = std::thread::Builder::new()
        .name("detached-worker".into())
        .spawn(move || {
            let me = std::thread::current().name().unwrap_or("?").to_string();
            std::thread::sleep(work);
            let _ = tx.send(me); // the last thing it does
        })
        .map_err(|e| RunError::new("starting the detached thread", e))?;
    drop(handle); // detached: nothing can join it any more
    Ok(rx)
}

/// Samples the count while the detached thread lives; its goodbye (the name it sent) or the
/// deadline, 5 s after its planned end, ends the wait — the latter as an error.
fn await_goodbye(
    tl: &mut Timeline,
    rx: &mpsc::Receiver<String>,
    detached_ms: u64,
    work: Duration,
) -> Result<String, LabError> {
    let deadline = Instant::now() + work + Duration::from_secs(5);
    let name = loop {
        tl.sample();
        match rx.recv_timeout(tl.every) {
            Ok(name) => break Some(name),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => break None,
        }
    };
    let Some(detached_name) = name else {
        return Err(RunError::new(
            "waiting for the detached thread",
            format!("it sent no last message within {} ms of its planned end", detached_ms + 5_000),
        )
        .into());
    };
    Ok(detached_name)
}

/// After its last message (at `message_ms`) the thread still has to exit: looks at the
/// count every ms until it is back at `before` or 2 s have passed. How long after the
/// message it was back (`None`: not within 2 s).
fn await_exit(tl: &mut Timeline, before: usize, message_ms: f64) -> Option<f64> {
    let settle = Instant::now() + Duration::from_secs(2);
    loop {
        let n = thread_count();
        tl.record(n);
        if n <= before || Instant::now() >= settle {
            let now = tl.now_ms();
            tl.events.push(LifeEvent { at_ms: now, what: format!("thread count back to {n}") });
            return (n <= before).then_some(now - message_ms);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the scoped part of the run found (see [`LifecycleReport`]'s `scoped_peak` and
/// `after_scope`).
struct Scoped {
    peak: usize,
    after_scope: usize,
}

/// The scoped part: `p.scoped` threads inside `thread::scope`, the count sampled while they
/// work. The scope cannot end before every one of them has.
fn scoped_part(p: &Lifecycle, tl: &mut Timeline, before: usize) -> Scoped {
    let scoped_work = Duration::from_millis(p.scoped_ms);
    let data: Vec<u64> = (0..p.scoped as u64).collect(); // borrowed by the scoped threads
    tl.event(format!("thread::scope starts {} threads", p.scoped));
    let scope_from = tl.samples.len();
    let every = tl.every;
    let spawned = std::thread::scope(|s| {
        let n = spawn_sleepers(s, &data, scoped_work);
        let until = Instant::now() + scoped_work;
        while Instant::now() < until {
            tl.sample();
            std::thread::sleep(every);
        }
        n
    });
    let peak = tl.samples[scope_from..].iter().map(|s| s.1).max().unwrap_or(before);
    let after_scope = thread_count();
    tl.record(after_scope);
    tl.event(format!("thread::scope returned: all {spawned} scoped threads joined"));
    Scoped { peak, after_scope }
}

/// Spawns one scoped thread per item of `data`, each sleeping `work` with its item
/// borrowed; how many of them started.
fn spawn_sleepers<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    data: &'env [u64],
    work: Duration,
) -> usize {
    let mut n = 0;
    for item in data {
        if std::thread::Builder::new()
            .spawn_scoped(s, move || {
                std::thread::sleep(work);
                std::hint::black_box(item);
            })
            .is_ok()
        {
            n += 1;
        }
    }
    n
}

impl Report for LifecycleReport {
    fn findings(&self) -> Vec<Finding> {
        let b = self.threads_before;
        let mut out = Vec::new();
        let extra = self.detached_peak.saturating_sub(b);
        out.push(Finding::note(if extra >= 1 {
            format!(
                "After its handle was dropped the detached thread lived on for {} ms: the count stood at {} \
                 (before: {b}) until it sent its last message",
                fmt_num(self.detached_lived_ms),
                self.detached_peak
            )
        } else {
            format!(
                "The count never rose above {b} while the detached thread lived ({} ms): another thread of the \
                 process ended meanwhile",
                fmt_num(self.detached_lived_ms)
            )
        }));
        out.push(Finding::note(match self.exit_after_message_ms {
            Some(t) => format!(
                "The count was back at {b} {} ms after its last message (the thread still had to exit)",
                fmt_num(t)
            ),
            None => format!("The count had not come back to {b} within 2 s of its last message"),
        }));
        out.push(Finding::note(format!(
            "{} scoped threads raised the count to {} (expected {}); right after thread::scope returned it was {}{}",
            self.params.scoped,
            self.scoped_peak,
            b + self.params.scoped,
            self.after_scope,
            if self.after_scope <= b { ": every scoped thread had ended" } else { "" }
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let end = self.samples.last().map_or(1.0, |s| s.0);
        let f = Figure::lines(
            "Threads in this process: the detached thread outlives its handle; scoped ones end with the scope",
            "time since start (ms)",
            "threads in this process (/proc)",
        )
        .series(Series::new(
            format!("before the experiment ({})", self.threads_before),
            Style::Ideal,
            vec![Point::new(0.0, self.threads_before as f64), Point::new(end, self.threads_before as f64)],
        ))
        .series(Series::new(
            "thread count (Threads: in /proc/self/status)",
            Style::Measured,
            self.samples.iter().map(|(t, n)| Point::new(*t, *n as f64)).collect(),
        ))
        .legend(crate::lab::Legend::UpperLeft);
        let f = self.events.iter().fold(f, |f, e| f.note(format!("{} ms: {}", fmt_num(e.at_ms), e.what)));
        vec![super::mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Thread lifecycle", &["ms", "event"]);
        for e in &self.events {
            t.row(vec![fmt_num(e.at_ms), e.what.clone()]);
        }
        t.note(format!(
            "The detached thread called itself {:?}; {} threads before, {} after.",
            self.detached_name, self.threads_before, self.threads_after
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        assert!(lifecycle(&Lifecycle { detached_ms: 0, ..Default::default() }).is_err());
        assert!(lifecycle(&Lifecycle { scoped: 0, ..Default::default() }).is_err());
        assert!(lifecycle(&Lifecycle { sample_ms: 1000, ..Default::default() }).is_err());
    }

    #[test]
    fn the_detached_thread_reports_back_and_the_scope_joins() {
        let r = lifecycle(&Lifecycle { detached_ms: 30, scoped: 3, scoped_ms: 30, sample_ms: 2 }).unwrap();
        assert_eq!(r.detached_name, "detached-worker");
        assert!(r.events.iter().any(|e| e.what.contains("all 3 scoped threads joined")));
        assert!(r.samples.len() > 10);
        assert!(r.samples.windows(2).all(|w| w[0].0 <= w[1].0), "samples in time order");
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
