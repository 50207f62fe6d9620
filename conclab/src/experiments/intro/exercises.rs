//! Self-check exercises of notebook 01: the reader writes a function in a cell, a checker
//! here runs it (bounded in time) and answers with a [`Verdict`].
//!
//! - [`check_spread`]: spread a CPU-bound job over threads; checked for every item done
//!   exactly once, the right result, threads that really ran at the same time, and (on
//!   a quiet machine with several CPUs) a speedup near the ideal.
//! - [`check_handoff`]: hand a turn back and forth between two threads, as in the
//!   ping-pong experiment; checked for order (no thread runs before its turn), lost
//!   wake-ups (a stall), and a waiting thread that burns the CPU its partner needs.

use crate::lab::check::Verdict;
use crate::lab::os::Switches;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{LoadProbe, cores, fmt_num, pin_current_thread, usable_cpus};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{Thread, ThreadId};
use std::time::{Duration, Instant};

/// The reader's function for [`check_spread`]: computes `work(i)` for every `i` in
/// `0..items` on `threads` threads and returns the results added with `wrapping_add`.
pub type Spread = fn(items: u64, threads: usize, work: &(dyn Fn(u64) -> u64 + Sync)) -> u64;

const SPREAD: &str = "spread work over threads";
/// Not a multiple of any thread count 2..=4, so a split that drops the remainder shows.
const ITEMS: u64 = 2003;

/// What the checker's `work` saw during one call of the reader's function.
struct Seen {
    calls: Vec<AtomicU32>,
    threads: Mutex<Vec<(ThreadId, Instant, Instant)>>,
}

impl Seen {
    fn new(items: u64) -> Seen {
        Seen { calls: (0..items).map(|_| AtomicU32::new(0)).collect(), threads: Mutex::new(Vec::new()) }
    }

    fn record(&self, i: u64, start: Instant) {
        if let Some(c) = self.calls.get(i as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let me = std::thread::current().id();
        let now = Instant::now();
        let mut t = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        match t.iter_mut().find(|x| x.0 == me) {
            Some(x) => x.2 = now,
            None => t.push((me, start, now)),
        }
    }

    /// Sum of the threads' active spans / the span of all of them: about 1 when they ran
    /// one after another, about the thread count when they ran at the same time.
    fn overlap(&self) -> f64 {
        let t = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(first), Some(last)) = (t.iter().map(|x| x.1).min(), t.iter().map(|x| x.2).max()) else {
            return 0.0;
        };
        let all = (last - first).as_secs_f64();
        if all <= 0.0 { 0.0 } else { t.iter().map(|x| (x.2 - x.1).as_secs_f64()).sum::<f64>() / all }
    }
}

/// One run of the reader's function on its own thread, bounded by `limit`.
fn run_spread(f: Spread, threads: usize, per_item: u64, limit: Duration) -> Result<(u64, Duration, Arc<Seen>), String> {
    let seen = Arc::new(Seen::new(ITEMS));
    let (tx, rx) = mpsc::channel();
    let s2 = seen.clone();
    // Not scoped: a reader's function that never returns must not hang the checker. Such
    // a thread is left behind (the verdict says so).
    std::thread::Builder::new()
        .name("spread-check".into())
        .spawn(move || {
            let work = move |i: u64| {
                let start = Instant::now();
                let v = busy(per_item, i);
                s2.record(i, start);
                v
            };
            let t = Instant::now();
            let out = f(ITEMS, threads, &work);
            let _ = tx.send((out, t.elapsed()));
        })
        .map_err(|e| format!("could not start the checker's thread: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok((out, took)) => Ok((out, took, seen)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "your function did not return within {} s (its threads are left running until the kernel restarts)",
            limit.as_secs()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("your function panicked (see the message above)".into()),
    }
}

/// Checks the reader's `spread`: 2 003 items of about 50 µs each, on `min(CPUs, 4)`
/// threads (at least 2). Passes when every item was computed exactly once, the sum is
/// right, the threads ran at the same time, and — on a quiet machine with several CPUs —
/// the best of three runs reached 70 % of the ideal speedup.
pub fn check_spread(f: Spread) -> Verdict {
    let threads = cores().clamp(2, 4);
    let per_item = (iters_per_ms() / 20).max(1);
    let probe = LoadProbe::start();
    // The reference: the same work on this thread, one item after another.
    let t = Instant::now();
    let expected = (0..ITEMS).fold(0u64, |a, i| a.wrapping_add(busy(per_item, i)));
    let sequential = t.elapsed();
    let mut best = Duration::MAX;
    let mut overlap = f64::INFINITY;
    for _ in 0..3 {
        let (out, took, seen) = match run_spread(f, threads, per_item, Duration::from_secs(20)) {
            Ok(r) => r,
            Err(e) => return Verdict::not_yet(SPREAD, e, "every thread you start must be joined before returning"),
        };
        let missing = seen.calls.iter().filter(|c| c.load(Ordering::Relaxed) == 0).count();
        let twice = seen.calls.iter().filter(|c| c.load(Ordering::Relaxed) > 1).count();
        if missing > 0 || twice > 0 {
            return Verdict::not_yet(
                SPREAD,
                format!(
                    "with {ITEMS} items on {threads} threads, {missing} item(s) were never computed and {twice} more \
                     than once"
                ),
                format!(
                    "{ITEMS} is not a multiple of {threads}: give thread k the items k*items/threads .. \
                     (k+1)*items/threads, so the ranges meet and the last one ends at items"
                ),
            );
        }
        if out != expected {
            return Verdict::not_yet(
                SPREAD,
                format!("every item was computed once, but the result was {out}, not {expected}"),
                "add the threads' partial results with wrapping_add (the results are large numbers)",
            );
        }
        let used = seen.threads.lock().unwrap_or_else(|e| e.into_inner()).len();
        if used < threads {
            return Verdict::not_yet(
                SPREAD,
                format!("correct result, but the work ran on {used} thread(s); {threads} were asked for"),
                "std::thread::scope(|s| { … }) with one s.spawn(…) per range lets the threads borrow `work`",
            );
        }
        if used > threads {
            return Verdict::not_yet(
                SPREAD,
                format!("correct result, but the work ran on {used} threads; {threads} were asked for"),
                "start one thread per range of items, not one per item",
            );
        }
        best = best.min(took);
        overlap = overlap.min(seen.overlap());
    }
    if overlap < 1.3 {
        return Verdict::not_yet(
            SPREAD,
            format!(
                "correct result on {threads} threads, but they ran one after another (their active times overlap \
                 {}×; {threads}× would be all at once)",
                fmt_num(overlap)
            ),
            "spawn every thread first and join them afterwards: joining right after spawning waits for each in turn",
        );
    }
    let load = probe.finish();
    let speedup = sequential.as_secs_f64() / best.as_secs_f64();
    let ideal = threads.min(cores()) as f64;
    let base = format!(
        "{ITEMS} items on {threads} threads: each computed once, the right sum, threads overlapping {}×; \
         {} ms against {} ms on one thread, a speedup of {}× (ideal {}×)",
        fmt_num(overlap),
        fmt_num(best.as_secs_f64() * 1e3),
        fmt_num(sequential.as_secs_f64() * 1e3),
        fmt_num(speedup),
        fmt_num(ideal)
    );
    if cores() < 2 {
        return Verdict::pass(SPREAD, format!("{base}. Speed not judged: one CPU cannot run two threads at once."));
    }
    if load.busy() {
        return Verdict::pass(SPREAD, format!("{base}. Speed not judged — {}", load.sentence()));
    }
    if speedup < 0.7 * ideal {
        return Verdict::not_yet(
            SPREAD,
            base,
            "the split is uneven, or the threads wait for each other: give each thread an equal range and keep \
             locks out of the loop (re-run once: a busy moment can slow one run)",
        );
    }
    Verdict::pass(SPREAD, base)
}

/// A turn shared by two threads in [`check_handoff`]: a counter, plus a flag the checker
/// raises when it gives up, so that every wait loop written with [`Turn::is`] ends.
#[derive(Debug, Default)]
pub struct Turn {
    value: AtomicU64,
    abort: AtomicBool,
}

impl Turn {
    /// Whether the turn is `want` (an `Acquire` load) — or the checker has given up,
    /// which it tells apart afterwards.
    pub fn is(&self, want: u64) -> bool {
        self.abort.load(Ordering::Relaxed) || self.value.load(Ordering::Acquire) == want
    }

    /// Sets the turn to `next` (a `Release` store).
    pub fn set(&self, next: u64) {
        self.value.store(next, Ordering::Release);
    }
}

/// The reader's two functions for [`check_handoff`]: `give` hands the turn to the
/// partner thread (the turn becomes `next`), `wait` returns once the turn is `want`.
pub type Give = fn(turn: &Turn, next: u64, partner: &Thread);
pub type Wait = fn(turn: &Turn, want: u64);

const HANDOFF: &str = "ping-pong hand-off";

#[derive(Debug)]
struct Phase {
    trips: u64,
    done: u64,
    took: Duration,
    /// Times a thread's `wait` returned before its partner had finished its turn.
    early: u64,
    /// Why the checker gave up: `Some("stall")` (no progress for a second) or
    /// `Some("limit")` (still running at the time limit).
    gave_up: Option<&'static str>,
    /// Both threads' context switches during their loops: a wait that sleeps blocks
    /// (voluntary), a wait that spins is only ever preempted (involuntary).
    switches: Switches,
}

fn phase(give: Give, wait: Wait, trips: u64, pins: (usize, usize), limit: Duration) -> Result<Phase, String> {
    let turn = Turn::default();
    let witness = AtomicU64::new(0);
    let early = AtomicU64::new(0);
    let progress = AtomicU64::new(0);
    let finished = AtomicU64::new(0);
    let switches = Mutex::new(Switches::default());
    let (turn, witness, early, progress, finished, switches) =
        (&turn, &witness, &early, &progress, &finished, &switches);
    let count_switches = move |before: Switches| {
        let d = Switches::this_thread().since(before);
        let mut s = switches.lock().unwrap_or_else(|e| e.into_inner());
        *s = *s + d;
    };
    // The turn holder's check: the witness must be where the partner left it.
    let hold = move |expect: u64| {
        if witness.load(Ordering::Acquire) != expect {
            early.fetch_add(1, Ordering::Relaxed);
        }
        witness.store(expect + 1, Ordering::Release);
    };
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Thread>();
        let b = std::thread::Builder::new()
            .spawn_scoped(s, move || {
                pin_current_thread(pins.1);
                let Ok(a) = rx.recv_timeout(Duration::from_secs(10)) else { return };
                let before = Switches::this_thread();
                for i in 0..trips {
                    wait(turn, 2 * i + 1);
                    if turn.abort.load(Ordering::Relaxed) {
                        break;
                    }
                    hold(2 * i + 1);
                    give(turn, 2 * i + 2, &a);
                }
                count_switches(before);
                finished.fetch_add(1, Ordering::Release);
            })
            .map_err(|e| format!("could not start a thread: {e}"))?;
        let b_thread = b.thread().clone();
        let b_for_a = b_thread.clone();
        let start = Instant::now();
        let a = std::thread::Builder::new()
            .spawn_scoped(s, move || {
                pin_current_thread(pins.0);
                let _ = tx.send(std::thread::current());
                let before = Switches::this_thread();
                for i in 0..trips {
                    hold(2 * i);
                    give(turn, 2 * i + 1, &b_for_a);
                    wait(turn, 2 * i + 2);
                    if turn.abort.load(Ordering::Relaxed) {
                        break;
                    }
                    progress.fetch_add(1, Ordering::Release);
                }
                count_switches(before);
                finished.fetch_add(1, Ordering::Release);
            })
            .map_err(|e| format!("could not start a thread: {e}"))?;
        let a_thread = a.thread().clone();
        // The watchdog: gives up when nothing moved for a second or the limit passed,
        // then wakes both threads until they have left their loops.
        let mut gave_up = None;
        let (mut last, mut moved) = (0, Instant::now());
        while finished.load(Ordering::Acquire) < 2 {
            std::thread::sleep(Duration::from_millis(2));
            let now = progress.load(Ordering::Acquire);
            if now != last {
                (last, moved) = (now, Instant::now());
            }
            if gave_up.is_none() {
                if moved.elapsed() > Duration::from_secs(1) {
                    gave_up = Some("stall");
                } else if start.elapsed() > limit {
                    gave_up = Some("limit");
                }
                if gave_up.is_some() {
                    turn.abort.store(true, Ordering::Relaxed);
                }
            }
            if gave_up.is_some() {
                a_thread.unpark();
                b_thread.unpark();
            }
        }
        let took = start.elapsed();
        let _ = (a.join(), b.join());
        let switches = *switches.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Phase {
            trips,
            done: progress.load(Ordering::Acquire),
            took,
            early: early.load(Ordering::Relaxed),
            gave_up,
            switches,
        })
    })
}

/// Checks the reader's hand-off: two threads pass a turn back and forth with `give` and
/// `wait` — first 200 round trips with both pinned to one CPU (at most 2 s), then
/// 5 000 on two CPUs (at most 5 s; skipped on a one-CPU machine). Passes when no thread
/// ever ran before its turn, nothing stalled, and on one CPU the waits slept: the two
/// threads' voluntary context switches (`getrusage`) number at least one per two round
/// trips. A wait that sleeps blocks about twice per round trip; a wait that spins (or
/// loops on `yield_now`) never blocks and is only preempted, so it holds the CPU its
/// partner needs until the scheduler's timer takes it away — milliseconds per hand-off,
/// a number that depends on the kernel's tick, which is why the counters, not the time,
/// decide. Where the counters read zero (no `getrusage`), a round trip over 1 ms does.
pub fn check_handoff(give: Give, wait: Wait) -> Verdict {
    let cpus = usable_cpus();
    let one = cpus[0];
    let other = cpus.iter().copied().find(|&c| c != one);
    let mut phases = vec![("one CPU", 200u64, (one, one), Duration::from_secs(2))];
    if let Some(o) = other {
        phases.push(("two CPUs", 5_000, (one, o), Duration::from_secs(5)));
    }
    let mut report = Vec::new();
    for (name, trips, pins, limit) in phases {
        let p = match phase(give, wait, trips, pins, limit) {
            Ok(p) => p,
            Err(e) => return Verdict::not_yet(HANDOFF, e, "try again"),
        };
        let per_trip_us = p.took.as_secs_f64() * 1e6 / p.done.max(1) as f64;
        if p.early > 0 {
            return Verdict::not_yet(
                HANDOFF,
                format!(
                    "{name}: {} time(s) in {} round trips a thread went on before its partner had handed over the turn",
                    p.early, p.done
                ),
                "`park()` can return early (a wake-up meant for an earlier turn, or none at all): wait in a loop, \
                 `while !turn.is(want) { std::thread::park(); }`, not with a single `if`",
            );
        }
        if p.gave_up == Some("stall") {
            return Verdict::not_yet(
                HANDOFF,
                format!(
                    "{name}: stalled after {} of {} round trips — a thread waited for a turn and was never woken",
                    p.done, p.trips
                ),
                "in `give`, set the turn first and then wake the partner (`turn.set(next); partner.unpark();`): \
                 a wake-up sent before the turn changes can be used up by a partner that then sleeps again",
            );
        }
        let counted = p.switches.voluntary + p.switches.involuntary > 0;
        let never_slept = if counted { p.switches.voluntary * 2 < p.done } else { per_trip_us > 1_000.0 };
        if name == "one CPU" && (p.gave_up.is_some() || never_slept) {
            return Verdict::not_yet(
                HANDOFF,
                format!(
                    "one CPU: {} round trips in {} ms, {} µs each; the threads blocked {} times and were preempted \
                     {} times — correct, but the waits did not sleep (a sleeping wait blocks about twice per round trip)",
                    p.done,
                    fmt_num(p.took.as_secs_f64() * 1e3),
                    fmt_num(per_trip_us),
                    p.switches.voluntary,
                    p.switches.involuntary
                ),
                "a wait that never blocks — a spin, or a loop on `yield_now` — keeps running while its partner \
                 needs the CPU (a spin until the timer tick preempts it) and burns a whole CPU on a bigger machine: \
                 sleep instead (`std::thread::park()` in the loop) and wake the partner in `give` \
                 (`partner.unpark()`)",
            );
        }
        if p.gave_up.is_some() {
            return Verdict::not_yet(
                HANDOFF,
                format!("{name}: only {} of {} round trips within {} s", p.done, p.trips, limit.as_secs()),
                "look for a wait that sleeps without being woken, or a spin that never yields",
            );
        }
        report.push(format!("{name}: {} round trips, {} µs each", p.done, fmt_num(per_trip_us)));
    }
    Verdict::pass(HANDOFF, format!("{}; every turn in order, no stall.", report.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread_threads(items: u64, threads: usize, work: &(dyn Fn(u64) -> u64 + Sync)) -> u64 {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|k| {
                    let (lo, hi) = (k * items / threads as u64, (k + 1) * items / threads as u64);
                    s.spawn(move || (lo..hi).fold(0u64, |a, i| a.wrapping_add(work(i))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).fold(0, u64::wrapping_add)
        })
    }

    fn spread_drops_remainder(items: u64, threads: usize, work: &(dyn Fn(u64) -> u64 + Sync)) -> u64 {
        let per = items / threads as u64;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|k| s.spawn(move || (k * per..(k + 1) * per).fold(0u64, |a, i| a.wrapping_add(work(i)))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).fold(0, u64::wrapping_add)
        })
    }

    fn spread_serial(items: u64, _threads: usize, work: &(dyn Fn(u64) -> u64 + Sync)) -> u64 {
        (0..items).fold(0, |a, i| a.wrapping_add(work(i)))
    }

    #[test]
    fn spread_checker_tells_right_from_wrong() {
        let v = check_spread(spread_threads);
        // A quiet machine judges the speed too; a correct split passes it on any
        // machine this runs on, unless the machine is very busy without being seen so.
        assert!(v.passed || v.detail.contains("speedup"), "{v}");
        let v = check_spread(spread_drops_remainder);
        assert!(!v.passed && v.detail.contains("never computed"), "{v}");
        let v = check_spread(spread_serial);
        assert!(!v.passed && v.detail.contains("1 thread"), "{v}");
    }

    fn give_ok(turn: &Turn, next: u64, partner: &Thread) {
        turn.set(next);
        partner.unpark();
    }
    fn wait_ok(turn: &Turn, want: u64) {
        while !turn.is(want) {
            std::thread::park();
        }
    }
    fn give_no_wake(turn: &Turn, next: u64, _partner: &Thread) {
        turn.set(next);
    }
    fn wait_spin(turn: &Turn, want: u64) {
        while !turn.is(want) {
            std::hint::spin_loop();
        }
    }
    fn wait_once(turn: &Turn, want: u64) {
        if !turn.is(want) {
            std::thread::park();
        }
    }

    #[test]
    fn handoff_checker_passes_park_and_unpark() {
        let v = check_handoff(give_ok, wait_ok);
        assert!(v.passed, "{v}");
    }

    fn wait_yield(turn: &Turn, want: u64) {
        while !turn.is(want) {
            std::thread::yield_now();
        }
    }

    #[test]
    fn handoff_checker_catches_a_spinning_wait() {
        // Caught by the threads' switch counters, whatever the kernel's tick: on one CPU a
        // spinning thread is preempted and never blocks.
        let v = check_handoff(give_no_wake, wait_spin);
        assert!(!v.passed && v.hint.as_deref().unwrap_or("").contains("park"), "{v}");
        let v = check_handoff(give_ok, wait_yield);
        assert!(!v.passed && v.hint.as_deref().unwrap_or("").contains("park"), "{v}");
    }

    #[test]
    fn handoff_checker_catches_a_missing_wake_up() {
        let v = check_handoff(give_no_wake, wait_ok);
        assert!(!v.passed && v.detail.contains("stalled"), "{v}");
    }

    #[test]
    fn handoff_checker_catches_an_if_instead_of_a_loop() {
        if usable_cpus().len() < 2 {
            return;
        }
        let v = check_handoff(give_ok, wait_once);
        // Usually caught as an early return; a run where no early wake-up happened
        // passes, which the hint in the notebook explains.
        assert!(!v.passed || v.detail.contains("no stall"), "{v}");
    }
}
