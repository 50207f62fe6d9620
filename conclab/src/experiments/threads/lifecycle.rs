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
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    let every = Duration::from_millis(p.sample_ms);
    let before = thread_count();
    let mut samples = vec![(0.0, before)];
    let mut events = vec![LifeEvent { at_ms: 0.0, what: format!("start: {before} threads in this process") }];

    let (tx, rx) = mpsc::channel::<String>();
    let work = Duration::from_millis(p.detached_ms);
    let handle = std::thread::Builder::new()
        .name("detached-worker".into())
        .spawn(move || {
            let me = std::thread::current().name().unwrap_or("?").to_string();
            std::thread::sleep(work);
            let _ = tx.send(me); // the last thing it does
        })
        .map_err(|e| RunError::new("starting the detached thread", e))?;
    drop(handle); // detached: nothing can join it any more
    let dropped_ms = ms(Instant::now());
    events.push(LifeEvent { at_ms: dropped_ms, what: "spawned 'detached-worker' and dropped its JoinHandle".into() });

    // Sample while it lives; a goodbye or the deadline ends the wait.
    let deadline = Instant::now() + work + Duration::from_secs(5);
    let name = loop {
        samples.push((ms(Instant::now()), thread_count()));
        match rx.recv_timeout(every) {
            Ok(name) => break Some(name),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => break None,
        }
    };
    let Some(detached_name) = name else {
        return Err(RunError::new(
            "waiting for the detached thread",
            format!("it sent no last message within {} ms of its planned end", p.detached_ms + 5_000),
        )
        .into());
    };
    let message_ms = ms(Instant::now());
    let detached_peak = samples.iter().map(|s| s.1).max().unwrap_or(before);
    events.push(LifeEvent { at_ms: message_ms, what: "the detached thread sent its last message".into() });
    // After its last message the thread still has to exit: wait until the count is back.
    let settle = Instant::now() + Duration::from_secs(2);
    let mut exit_after_message_ms = None;
    loop {
        let n = thread_count();
        samples.push((ms(Instant::now()), n));
        if n <= before || Instant::now() >= settle {
            let now = ms(Instant::now());
            if n <= before {
                exit_after_message_ms = Some(now - message_ms);
            }
            events.push(LifeEvent { at_ms: now, what: format!("thread count back to {n}") });
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..3 {
        std::thread::sleep(every);
        samples.push((ms(Instant::now()), thread_count()));
    }

    // Scoped threads: the scope cannot end before every one of them has.
    let scoped_work = Duration::from_millis(p.scoped_ms);
    let data: Vec<u64> = (0..p.scoped as u64).collect(); // borrowed by the scoped threads
    events.push(LifeEvent { at_ms: ms(Instant::now()), what: format!("thread::scope starts {} threads", p.scoped) });
    let scope_from = samples.len();
    let spawned = std::thread::scope(|s| {
        let mut n = 0;
        for item in &data {
            if std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    std::thread::sleep(scoped_work);
                    std::hint::black_box(item);
                })
                .is_ok()
            {
                n += 1;
            }
        }
        let until = Instant::now() + scoped_work;
        while Instant::now() < until {
            samples.push((ms(Instant::now()), thread_count()));
            std::thread::sleep(every);
        }
        n
    });
    let scoped_peak = samples[scope_from..].iter().map(|s| s.1).max().unwrap_or(before);
    let after_scope = thread_count();
    samples.push((ms(Instant::now()), after_scope));
    events.push(LifeEvent {
        at_ms: ms(Instant::now()),
        what: format!("thread::scope returned: all {spawned} scoped threads joined"),
    });
    for _ in 0..3 {
        samples.push((ms(Instant::now()), thread_count()));
        std::thread::sleep(every);
    }
    let after = thread_count();
    samples.push((ms(Instant::now()), after));
    events.push(LifeEvent { at_ms: ms(Instant::now()), what: format!("end: {after} threads in this process") });
    Ok(LifecycleReport {
        params: p.clone(),
        samples,
        events,
        threads_before: before,
        threads_after: after,
        detached_name,
        detached_peak,
        detached_lived_ms: message_ms - dropped_ms,
        exit_after_message_ms,
        scoped_peak,
        after_scope,
        load: probe.finish(),
    })
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
