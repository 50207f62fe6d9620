//! A lock-order deadlock, caught: two threads take two locks in opposite orders; a
//! detector watching the wait-for graph finds the cycle, names it, and makes one thread
//! back off. Every wait is timed, so nothing can hang.

use crate::lab::rng::Rng;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Table, check_range, fmt_num, thread_count,
};
use crate::primitives::{WaitEdge, WaitForGraph};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Parameters of [`deadlock`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Deadlock {
    /// How long each thread works holding its first lock before it reaches for the
    /// second, in ms (long enough that both hold one): 1..=1000.
    pub hold_ms: u64,
    /// Run the detector, which looks for a cycle every `check_ms` and tells one thread of
    /// it to back off. Without it, the threads only have their own `give_up_ms` timeouts.
    pub detector: bool,
    /// Interval between two looks of the detector at the wait-for graph, in ms: 1..=100.
    pub check_ms: u64,
    /// How long a thread waits for a lock before it gives up by itself, in ms: 20..=10_000.
    pub give_up_ms: u64,
}

impl Default for Deadlock {
    fn default() -> Self {
        Deadlock { hold_ms: 25, detector: true, check_ms: 10, give_up_ms: 1000 }
    }
}

impl Deadlock {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("hold_ms", self.hold_ms, 1..=1000)?;
        check_range("check_ms", self.check_ms, 1..=100)?;
        check_range("give_up_ms", self.give_up_ms, 20..=10_000)
    }
}

/// One interval of a timeline: a thread holding or waiting for a lock, or backing off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockSpan {
    pub thread: String,
    pub what: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// Result of [`deadlock`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadlockReport {
    pub params: Deadlock,
    /// The first cycle the detector found.
    pub cycle: Option<Vec<WaitEdge>>,
    /// The cycle in words.
    pub cycle_text: String,
    /// When the cycle closed (the later of the two threads started waiting), ms since start.
    pub cycle_closed_ms: Option<f64>,
    /// When the detector saw it.
    pub detected_ms: Option<f64>,
    /// The thread told to back off.
    pub victim: Option<String>,
    /// Cycles found over the whole run.
    pub detections: usize,
    /// Waits that ended by a thread's own timeout.
    pub timeouts: usize,
    /// What each thread finally did.
    pub outcomes: Vec<(String, String)>,
    /// Both balances at the end; they started at 100 each, and one unit moves each way.
    pub balances: [i64; 2],
    pub spans: Vec<LockSpan>,
    pub total_ms: f64,
    /// Threads in the process after the run minus before (0: nothing left behind).
    pub threads_left_behind: i64,
    pub load: Load,
}

const THREADS: [&str; 2] = ["thread A", "thread B"];
const LOCKS: [&str; 2] = ["L1", "L2"];

enum WaitEnd {
    Aborted,
    TimedOut,
}

struct Shared {
    t0: Instant,
    locks: [parking_lot::Mutex<i64>; 2],
    graph: Mutex<WaitForGraph>,
    abort: [AtomicBool; 2],
    spans: Mutex<Vec<LockSpan>>,
    timeouts: AtomicUsize,
    /// When each thread started its current wait (ms since start).
    waiting_since: Mutex<[f64; 2]>,
}

impl Shared {
    /// Both accounts at 100, nothing held or waited for, the clock started now.
    fn new() -> Shared {
        Shared {
            t0: Instant::now(),
            locks: [parking_lot::Mutex::new(100), parking_lot::Mutex::new(100)],
            graph: Mutex::new(WaitForGraph::default()),
            abort: [AtomicBool::new(false), AtomicBool::new(false)],
            spans: Mutex::new(Vec::new()),
            timeouts: AtomicUsize::new(0),
            waiting_since: Mutex::new([0.0; 2]),
        }
    }

    fn ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1e3
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, WaitForGraph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn span(&self, me: usize, what: String, start_ms: f64) {
        let end_ms = self.ms();
        let s = LockSpan { thread: THREADS[me].into(), what, start_ms, end_ms };
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    /// Waits for lock `l` in 1 ms slices, registered in the wait-for graph, until it is
    /// ours, the detector tells us to back off, or `give_up` passes.
    fn acquire(&self, me: usize, l: usize, give_up: Duration) -> Result<parking_lot::MutexGuard<'_, i64>, WaitEnd> {
        let start = Instant::now();
        let start_ms = self.ms();
        self.waiting_since.lock().unwrap_or_else(|e| e.into_inner())[me] = start_ms;
        self.graph().waiting(THREADS[me], LOCKS[l]);
        loop {
            if let Some(g) = self.locks[l].try_lock_for(Duration::from_millis(1)) {
                self.graph().acquired(THREADS[me], LOCKS[l]);
                // Not waiting any more: a back-off request that came too late is void.
                self.abort[me].store(false, Ordering::Release);
                self.span(me, format!("waits for {}", LOCKS[l]), start_ms);
                return Ok(g);
            }
            let end = if self.abort[me].swap(false, Ordering::AcqRel) {
                Some(WaitEnd::Aborted)
            } else if start.elapsed() >= give_up {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Some(WaitEnd::TimedOut)
            } else {
                None
            };
            if let Some(end) = end {
                self.graph().stopped_waiting(THREADS[me]);
                self.span(me, format!("waits for {}", LOCKS[l]), start_ms);
                return Err(end);
            }
        }
    }

    fn release(&self, me: usize, l: usize, g: parking_lot::MutexGuard<'_, i64>, since_ms: f64) {
        self.graph().released(THREADS[me], LOCKS[l]);
        drop(g);
        self.span(me, format!("holds {}", LOCKS[l]), since_ms);
    }

    /// Thread `me` moves one unit from its first lock's account to its second's:
    /// A locks L1 then L2, B locks L2 then L1 — the opposite orders that deadlock.
    fn transfer(&self, me: usize, p: &Deadlock) -> String {
        let (first, second) = (me, 1 - me);
        let give_up = Duration::from_millis(p.give_up_ms);
        let hold = Duration::from_millis(p.hold_ms);
        let mut rng = Rng::new(me as u64 + 7);
        for attempt in 1..=5 {
            let Ok(mut g1) = self.acquire(me, first, give_up) else {
                continue; // told to back off before we held anything: just try again
            };
            let held1 = self.ms();
            std::thread::sleep(hold); // work while holding the first lock
            match self.acquire(me, second, give_up) {
                Ok(mut g2) => {
                    let held2 = self.ms();
                    *g1 -= 1;
                    *g2 += 1;
                    std::thread::sleep(hold / 4); // the rest of the work, holding both
                    self.release(me, second, g2, held2);
                    self.release(me, first, g1, held1);
                    return format!("transferred on attempt {attempt}");
                }
                Err(why) => {
                    self.release(me, first, g1, held1);
                    let back_off = self.ms();
                    // Back off long enough for the other thread to finish, with jitter so
                    // two timed-out threads do not retry in step.
                    let ms = p.hold_ms * 2 + rng.below(p.hold_ms * 2 + 1);
                    std::thread::sleep(Duration::from_millis(ms));
                    let label = match why {
                        WaitEnd::Aborted => "backs off (deadlock victim)",
                        WaitEnd::TimedOut => "backs off (timed out)",
                    };
                    self.span(me, label.into(), back_off);
                }
            }
        }
        "gave up after 5 attempts".into()
    }
}

/// Two threads transfer between two accounts behind two `parking_lot` mutexes, taking
/// the locks in opposite orders and holding the first for `hold_ms` — a deadlock every
/// time. Each thread registers what it holds and waits for in a [`WaitForGraph`]; all
/// waits are timed (1 ms slices, `give_up_ms` in total). The detector (this thread) looks
/// for a cycle every `check_ms`, reports it ("thread A holds L1 and waits for L2 (held by
/// thread B); …"), and tells the thread that closed it to release its lock and retry.
/// Both threads are joined before the function returns.
pub fn deadlock(p: &Deadlock) -> Result<DeadlockReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let before = thread_count() as i64;
    let sh = Shared::new();
    let mut detector = Detector::default();
    let outcomes =
        run_and_watch(&sh, p, &mut detector).map_err(|e| RunError::new("starting the two locking threads", e))?;
    let total_ms = sh.ms();
    let mut spans = sh.spans.into_inner().unwrap_or_else(|e| e.into_inner());
    spans.sort_by(|a, b| a.thread.cmp(&b.thread).then(a.start_ms.total_cmp(&b.start_ms)));
    let Detector { cycle, detected_ms, victim, detections, .. } = detector;
    let cycle_closed_ms = cycle.as_ref().and_then(|_| cycle_closed_at(&spans));
    let balances = [sh.locks[0].lock().to_owned(), sh.locks[1].lock().to_owned()];
    Ok(DeadlockReport {
        params: p.clone(),
        cycle_text: cycle.as_deref().map_or_else(|| "no cycle found".into(), WaitForGraph::describe),
        cycle,
        cycle_closed_ms,
        detected_ms,
        victim,
        detections,
        timeouts: sh.timeouts.load(Ordering::Relaxed),
        outcomes,
        balances,
        spans,
        total_ms,
        threads_left_behind: thread_count() as i64 - before,
        load: probe.finish(),
    })
}

/// Starts the two locking threads, runs the detector on this thread until both have
/// finished (or a deadline well past their own timeouts), and joins them: what each
/// thread finally did, or why they could not be started (the scope joins any started).
fn run_and_watch(sh: &Shared, p: &Deadlock, detector: &mut Detector) -> Result<Vec<(String, String)>, String> {
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (me, name) in THREADS.iter().enumerate() {
            let h = std::thread::Builder::new().name(name.to_string()).spawn_scoped(s, move || sh.transfer(me, p));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => return Err(format!("the OS refused a thread ({e})")),
            }
        }
        // Detector: a bounded loop; the threads end by themselves (their waits are timed).
        let deadline = Instant::now() + Duration::from_millis(p.give_up_ms * 12 + p.hold_ms * 40 + 2000);
        while !handles.iter().all(|h| h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(p.check_ms));
            if p.detector {
                detector.look(sh);
            }
        }
        let mut outcomes = Vec::new();
        for (me, h) in handles.into_iter().enumerate() {
            let o = h.join().unwrap_or_else(|_| "panicked".into());
            outcomes.push((THREADS[me].to_string(), o));
        }
        Ok(outcomes)
    })
}

/// What the detector has seen so far.
#[derive(Default)]
struct Detector {
    /// The first cycle found.
    cycle: Option<Vec<WaitEdge>>,
    /// When the first cycle was found, ms since start.
    detected_ms: Option<f64>,
    /// The thread told to back off from the first cycle.
    victim: Option<String>,
    /// Cycles found: a cycle counts again only once it differs from the last look's.
    detections: usize,
    /// The cycle seen at the last look.
    last_cycle: Option<Vec<WaitEdge>>,
}

impl Detector {
    /// One look at the wait-for graph: a cycle other than the last look's is counted and
    /// its victim told to back off; the first cycle, its time and victim are kept.
    fn look(&mut self, sh: &Shared) {
        let found = sh.graph().find_cycle();
        if let Some(c) = &found
            && self.last_cycle.as_ref() != Some(c)
        {
            self.detections += 1;
            let v = victim(sh, c);
            if let Some(i) = THREADS.iter().position(|t| *t == v) {
                sh.abort[i].store(true, Ordering::Release);
            }
            if self.cycle.is_none() {
                self.cycle = Some(c.clone());
                self.detected_ms = Some(sh.ms());
                self.victim = Some(v);
            }
        }
        self.last_cycle = found;
    }
}

/// The victim of cycle `c`: the thread whose wait closed it (the last to start waiting).
fn victim(sh: &Shared, c: &[WaitEdge]) -> String {
    let since = *sh.waiting_since.lock().unwrap_or_else(|e| e.into_inner());
    let started = |e: &WaitEdge| THREADS.iter().position(|t| *t == e.thread).map_or(0.0, |i| since[i]);
    c.iter().max_by(|a, b| started(a).total_cmp(&started(b))).map(|e| e.thread.clone()).unwrap_or_default()
}

/// When the cycle closed: the later of the two threads' first waits for their second lock
/// to start (`None`: a thread never waited for its second lock).
fn cycle_closed_at(spans: &[LockSpan]) -> Option<f64> {
    let second = |t: usize| {
        spans
            .iter()
            .filter(|s| s.thread == THREADS[t] && s.what == format!("waits for {}", LOCKS[1 - t]))
            .map(|s| s.start_ms)
            .fold(f64::INFINITY, f64::min)
    };
    let c = second(0).max(second(1));
    c.is_finite().then_some(c)
}

impl DeadlockReport {
    /// When thread `t` first held its first lock, and when it first let it go (ms).
    fn first_hold(&self, t: usize) -> Option<(f64, f64)> {
        self.spans
            .iter()
            .filter(|s| s.thread == THREADS[t] && s.what == format!("holds {}", LOCKS[t]))
            .map(|s| (s.start_ms, s.end_ms))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }
}

impl Report for DeadlockReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        match (&self.victim, self.cycle_closed_ms, self.detected_ms) {
            (Some(v), Some(c), Some(d)) => out.push(Finding::note(format!(
                "The cycle closed at {} ms; the detector, looking every {} ms, found it {} ms later and told {v} to \
                 back off",
                fmt_num(c),
                self.params.check_ms,
                fmt_num((d - c).max(0.0))
            ))),
            (Some(v), _, Some(d)) => out.push(Finding::note(format!(
                "The detector found a cycle at {} ms and told {v} to back off",
                fmt_num(d)
            ))),
            _ => {
                // Say what happened instead of a deadlock.
                let text = match (self.first_hold(0), self.first_hold(1)) {
                    (Some(a), Some(b)) if a.1 <= b.0 || b.1 <= a.0 => {
                        let (first, second, f, s) = if a.0 <= b.0 { (0, 1, a, b) } else { (1, 0, b, a) };
                        format!(
                            "No deadlock this run: {} held {} from {} to {} ms and {} took its first lock only at {} ms \
                             — their holds never overlapped, so no cycle could form",
                            THREADS[first],
                            LOCKS[first],
                            fmt_num(f.0),
                            fmt_num(f.1),
                            THREADS[second],
                            fmt_num(s.0)
                        )
                    }
                    _ if !self.params.detector => format!(
                        "Detector off: no cycle was looked for; {} wait{} ended by a thread's own {} ms timeout",
                        self.timeouts,
                        if self.timeouts == 1 { "" } else { "s" },
                        self.params.give_up_ms
                    ),
                    _ => format!(
                        "No cycle was seen this run (the detector looked every {} ms); own timeouts: {}",
                        self.params.check_ms, self.timeouts
                    ),
                };
                out.push(Finding::note(text));
            }
        }
        let done = self.outcomes.iter().filter(|(_, o)| o.starts_with("transferred")).count();
        out.push(Finding::note(format!(
            "{done} of {} transfers completed ({}); balances {}, {} (sum {}, started 200); threads left behind: {}",
            self.outcomes.len(),
            self.outcomes.iter().map(|(t, o)| format!("{t} {o}")).collect::<Vec<_>>().join("; "),
            self.balances[0],
            self.balances[1],
            self.balances[0] + self.balances[1],
            self.threads_left_behind.max(0)
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let title = match &self.victim {
            Some(v) => format!(
                "Deadlock: found {} ms after the cycle closed; {v} let go and retried",
                fmt_num(self.wait_before_detection_ms())
            ),
            None => "Two threads, two locks, opposite orders".to_string(),
        };
        let mut f = Figure::timeline(&title, "time since start (ms)", "").size(760, 500);
        // The detector's lane on top: it is empty but for one mark, so the legend fits there.
        if let Some(d) = self.detected_ms {
            let w = (self.total_ms * 0.006).max(0.2);
            f = f.span("detector", "cycle found", d - w, d + w);
        }
        // One lane per thread and lock, in the order each thread takes its locks; a
        // back-off is drawn on the lane of the lock the thread let go of.
        let lanes = [(0, 0), (0, 1), (1, 1), (1, 0)];
        for (t, l) in lanes {
            let lane = format!("{} · {}", THREADS[t], LOCKS[l]);
            for sp in self.spans.iter().filter(|sp| sp.thread == THREADS[t]) {
                let key = if sp.what == format!("holds {}", LOCKS[l]) {
                    "holds the lock"
                } else if sp.what == format!("waits for {}", LOCKS[l]) {
                    "waits for the lock"
                } else if sp.what.starts_with("backs off") && l == t {
                    "released it, backs off"
                } else {
                    continue;
                };
                f = f.span(&lane, key, sp.start_ms, sp.end_ms);
            }
        }
        f = f.note(format!("cycle: {}", self.cycle_text));
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperRight), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Deadlock detection", &["what", "value"]);
        t.row(vec!["wait-for cycle".into(), self.cycle_text.clone()]);
        t.row(vec![
            "cycle closed at".into(),
            self.cycle_closed_ms.map_or("–".into(), |v| format!("{} ms", fmt_num(v))),
        ]);
        t.row(vec!["detected at".into(), self.detected_ms.map_or("–".into(), |v| format!("{} ms", fmt_num(v)))]);
        t.row(vec!["told to back off".into(), self.victim.clone().unwrap_or_else(|| "–".into())]);
        t.row(vec!["cycles found / own timeouts".into(), format!("{} / {}", self.detections, self.timeouts)]);
        for (who, what) in &self.outcomes {
            t.row(vec![who.clone(), what.clone()]);
        }
        t.row(vec!["balances L1, L2 (started 100, 100)".into(), format!("{}, {}", self.balances[0], self.balances[1])]);
        t.row(vec!["total time".into(), format!("{} ms", fmt_num(self.total_ms))]);
        t.row(vec!["threads left behind".into(), self.threads_left_behind.max(0).to_string()]);
        t
    }
}

impl DeadlockReport {
    /// How long the cycle existed before the detector saw it, in ms.
    pub fn wait_before_detection_ms(&self) -> f64 {
        match (self.cycle_closed_ms, self.detected_ms) {
            (Some(c), Some(d)) => (d - c).max(0.0),
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        assert!(deadlock(&Deadlock { hold_ms: 0, ..Default::default() }).is_err());
        assert!(deadlock(&Deadlock { check_ms: 0, ..Default::default() }).is_err());
        assert!(deadlock(&Deadlock { give_up_ms: 5, ..Default::default() }).is_err());
    }

    #[test]
    fn detects_names_and_resolves_the_cycle() {
        let r = deadlock(&Deadlock { hold_ms: 10, check_ms: 2, ..Default::default() }).unwrap();
        assert!(r.cycle.is_some(), "{r:?}");
        assert!(r.cycle_text.contains("thread A holds L1 and waits for L2 (held by thread B)"), "{}", r.cycle_text);
        assert!(r.cycle_text.contains("thread B holds L2 and waits for L1 (held by thread A)"), "{}", r.cycle_text);
        assert!(r.outcomes.iter().all(|(_, o)| o.starts_with("transferred")), "{:?}", r.outcomes);
        assert_eq!(r.balances, [100, 100], "one unit each way");
        assert!(r.detected_ms.unwrap() < 500.0, "found well before the 1 s timeouts");
        assert_eq!(r.timeouts, 0);
        assert!(r.figure().to_svg().contains("<svg"));
    }

    #[test]
    fn without_a_detector_timeouts_end_the_wait() {
        let r = deadlock(&Deadlock { hold_ms: 5, detector: false, give_up_ms: 40, ..Default::default() }).unwrap();
        assert!(r.cycle.is_none());
        // Whether the two threads overlap long enough to deadlock depends on the
        // scheduler (beside a CPU hog one may run only after the other finished): the
        // call returns either way, and no money is lost or made. Two timed-out threads
        // may retry into the same deadlock again (their back-offs overlap), so up to five
        // attempts each can end in a timeout — but never more.
        assert!(r.timeouts <= 10, "{r:?}");
        assert!(r.outcomes.iter().all(|(_, o)| o.starts_with("transferred") || o == "gave up after 5 attempts"));
        assert_eq!(r.balances[0] + r.balances[1], 200);
    }
}
