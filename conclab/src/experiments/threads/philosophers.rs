//! The dining philosophers: five threads, five forks, each needs both neighbours' forks
//! to eat. Taking the left fork first can deadlock; taking the lower-numbered fork first
//! cannot — and with fair locks every philosopher keeps eating.

use crate::lab::rng::Rng;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Style, Table, check_range,
    fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Parameters of [`philosophers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Philosophers {
    /// Philosophers (and forks) around the table: 2..=16.
    pub philosophers: usize,
    /// How the forks are picked up, one of [`ForkOrder`]: "naive" or "ordered".
    pub strategy: ForkOrder,
    /// Dinner length in milliseconds: 50..=10_000.
    pub duration_ms: u64,
    /// Time to eat a meal, holding both forks, in µs: 0..=100_000.
    pub eat_us: u64,
    /// Time thinking between meals, in µs (varied by ±50%): 0..=100_000.
    pub think_us: u64,
    /// Pause between picking up the first and the second fork, in µs (makes the naive
    /// deadlock likely): 0..=100_000.
    pub reach_us: u64,
    /// How long a philosopher waits for a fork before giving up, in ms: 1..=5000.
    pub timeout_ms: u64,
    /// Interval between two counts of the meals, in ms: 1..=1000.
    pub sample_ms: u64,
}

impl Default for Philosophers {
    fn default() -> Self {
        Philosophers {
            philosophers: 5,
            strategy: ForkOrder::Ordered,
            duration_ms: 500,
            eat_us: 1000,
            think_us: 1000,
            reach_us: 5000,
            timeout_ms: 50,
            sample_ms: 10,
        }
    }
}

crate::choices! {
    /// How a philosopher picks up the forks in [`philosophers`].
    pub enum ForkOrder {
        /// Left, then right; a philosopher that waits `timeout_ms` for the right fork puts
        /// the left one back and tries again later.
        Naive = "naive",
        /// The lower-numbered fork first: no cycle of waits is possible.
        Ordered = "ordered",
    }
}

impl Philosophers {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("philosophers", self.philosophers, 2..=16)?;
        check_range("duration_ms", self.duration_ms, 50..=10_000)?;
        check_range("eat_us", self.eat_us, 0..=100_000)?;
        check_range("think_us", self.think_us, 0..=100_000)?;
        check_range("reach_us", self.reach_us, 0..=100_000)?;
        check_range("timeout_ms", self.timeout_ms, 1..=5000)?;
        check_range("sample_ms", self.sample_ms, 1..=1000)
    }
}

/// One philosopher's dinner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diner {
    pub meals: u64,
    /// Times this philosopher gave up waiting for a fork and put the other back.
    pub gave_up: u64,
    /// Longest time from getting hungry to eating, in ms.
    pub longest_wait_ms: f64,
}

/// Result of [`philosophers`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhilosophersReport {
    pub params: Philosophers,
    /// Sample times, ms since the start.
    pub times_ms: Vec<f64>,
    /// Meals so far per philosopher at each sample time (`meals[i][k]`: philosopher i, sample k).
    pub meals: Vec<Vec<u64>>,
    pub diners: Vec<Diner>,
    /// Deadlocks: spans in which every philosopher held exactly one fork (so none could
    /// get a second one until a timeout), (start, end) in ms. Impossible with "ordered".
    pub deadlocks: Vec<(f64, f64)>,
    /// The longest time without any meal finishing (from the start, between two meals,
    /// and to the end), in ms. Not a deadlock by
    /// itself: with `reach_us` long, a chain of philosophers each holding one fork while
    /// reaching for the next can keep everyone from eating for several reach times.
    pub longest_gap_ms: f64,
    pub load: Load,
}

/// Who holds exactly one fork right now, and when all of them started to.
#[derive(Debug, Default)]
struct OneFork {
    holders: usize,
    since: Option<f64>,
    spans: Vec<(f64, f64)>,
}

impl OneFork {
    fn change(m: &Mutex<OneFork>, n: usize, up: bool, now_ms: f64) {
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        if up {
            s.holders += 1;
            if s.holders == n {
                s.since = Some(now_ms);
            }
        } else {
            if let Some(a) = s.since.take() {
                s.spans.push((a, now_ms));
            }
            s.holders = s.holders.saturating_sub(1);
        }
    }
}

/// Seats the philosophers around the table for `duration_ms` and counts their meals
/// every `sample_ms`. Forks are `parking_lot` mutexes (fair enough that nobody starves:
/// a lock held by one thread is handed to a waiter now and then); every fork wait is timed,
/// and when dinner ends every philosopher finishes the meal or wait in progress and is
/// joined.
pub fn philosophers(p: &Philosophers) -> Result<PhilosophersReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let n = p.philosophers;
    let dinner = Dinner::new(p);
    let result = dinner.run();
    let (times_ms, meals, diners) = result.map_err(|e| RunError::new(format!("seating {n} philosophers"), e))?;
    let deadlocks = dinner.one_fork.into_inner().unwrap_or_else(|e| e.into_inner()).spans;
    let end_us = (p.duration_ms * 1000).saturating_sub(dinner.last_meal_us.load(Ordering::Acquire));
    let longest_gap_ms = dinner.max_gap_us.load(Ordering::Acquire).max(end_us) as f64 / 1e3;
    Ok(PhilosophersReport {
        params: p.clone(),
        times_ms,
        meals,
        diners,
        deadlocks,
        longest_gap_ms,
        load: probe.finish(),
    })
}

/// Sample times (ms since the start), meals so far per philosopher at each, and each
/// philosopher's dinner: what [`Dinner::run`] gives back.
type Served = (Vec<f64>, Vec<Vec<u64>>, Vec<Diner>);

/// The table all philosophers share: the forks, their meal counts, the stop signal, who
/// holds one fork, and when the last meal ended (µs since `t0`) with the longest gap
/// between two.
struct Dinner<'a> {
    p: &'a Philosophers,
    n: usize,
    timeout: Duration,
    forks: Vec<parking_lot::Mutex<()>>,
    meals: Vec<AtomicU64>,
    stop: AtomicBool,
    one_fork: Mutex<OneFork>,
    last_meal_us: AtomicU64,
    max_gap_us: AtomicU64,
    t0: Instant,
}

impl<'a> Dinner<'a> {
    /// The table laid as `p` asks; the clock starts now.
    fn new(p: &'a Philosophers) -> Dinner<'a> {
        let n = p.philosophers;
        Dinner {
            p,
            n,
            timeout: Duration::from_millis(p.timeout_ms),
            forks: (0..n).map(|_| parking_lot::Mutex::new(())).collect(),
            meals: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            one_fork: Mutex::new(OneFork::default()),
            last_meal_us: AtomicU64::new(0),
            max_gap_us: AtomicU64::new(0),
            t0: Instant::now(),
        }
    }

    /// Milliseconds since the start, now.
    fn now_ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1e3
    }

    /// Seats one thread per philosopher, counts the meals on this thread until the end,
    /// then stops and joins every philosopher. If a thread cannot be started, the ones
    /// already seated are stopped (and joined by the scope) and the error returned.
    fn run(&self) -> Result<Served, String> {
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for i in 0..self.n {
                let h =
                    std::thread::Builder::new().name(format!("philosopher-{i}")).spawn_scoped(s, move || self.dine(i));
                match h {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        self.stop.store(true, Ordering::Relaxed);
                        return Err(format!("the OS refused a thread ({e})"));
                    }
                }
            }
            let (times, counts) = self.count_meals();
            self.stop.store(true, Ordering::Relaxed);
            let diners: Vec<Diner> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Diner { meals: 0, gave_up: 0, longest_wait_ms: f64::NAN }))
                .collect();
            Ok((times, counts, diners))
        })
    }

    /// Counts everyone's meals every `sample_ms` until `duration_ms` has passed: the
    /// sample times (ms since the start) and each philosopher's counts.
    fn count_meals(&self) -> (Vec<f64>, Vec<Vec<u64>>) {
        let every = Duration::from_millis(self.p.sample_ms);
        let (mut times, mut counts) = (Vec::new(), vec![Vec::new(); self.n]);
        let end = self.t0 + Duration::from_millis(self.p.duration_ms);
        loop {
            times.push(self.t0.elapsed().as_secs_f64() * 1e3);
            for (i, m) in self.meals.iter().enumerate() {
                counts[i].push(m.load(Ordering::Relaxed));
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep(every.min(end - now));
        }
        (times, counts)
    }

    /// Philosopher `i`'s dinner, until told to stop: think, then try to eat.
    fn dine(&self, i: usize) -> Diner {
        let (left, right) = (i, (i + 1) % self.n);
        let (first, second) = match self.p.strategy {
            ForkOrder::Ordered => (left.min(right), left.max(right)),
            ForkOrder::Naive => (left, right),
        };
        let mut rng = Rng::new(i as u64 + 11);
        let mut d = Diner { meals: 0, gave_up: 0, longest_wait_ms: 0.0 };
        while !self.stop.load(Ordering::Relaxed) {
            pause(self.p.think_us / 2 + rng.below(self.p.think_us + 1)); // think
            self.try_to_eat(i, first, second, &mut d);
        }
        d.meals = self.meals[i].load(Ordering::Relaxed);
        d
    }

    /// One try of philosopher `i`: the `first` fork, a reach, the `second`, each waited
    /// for `timeout_ms` at most; a fork not had counts in `d.gave_up` (and the first fork
    /// goes back). With both, it eats and the meal is counted.
    fn try_to_eat(&self, i: usize, first: usize, second: usize, d: &mut Diner) {
        let hungry = Instant::now();
        let Some(a) = self.forks[first].try_lock_for(self.timeout) else {
            d.gave_up += 1;
            return;
        };
        OneFork::change(&self.one_fork, self.n, true, self.now_ms());
        pause(self.p.reach_us);
        let Some(b) = self.forks[second].try_lock_for(self.timeout) else {
            d.gave_up += 1;
            OneFork::change(&self.one_fork, self.n, false, self.now_ms());
            drop(a); // put the first fork back, think, try again
            return;
        };
        OneFork::change(&self.one_fork, self.n, false, self.now_ms());
        d.longest_wait_ms = d.longest_wait_ms.max(hungry.elapsed().as_secs_f64() * 1e3);
        pause(self.p.eat_us); // eat
        self.meal_eaten(i);
        drop(b);
        drop(a);
    }

    /// Counts philosopher `i`'s meal, and the gap since the last meal anyone finished.
    fn meal_eaten(&self, i: usize) {
        self.meals[i].fetch_add(1, Ordering::Relaxed);
        let now = self.t0.elapsed().as_micros() as u64;
        let before = self.last_meal_us.fetch_max(now, Ordering::AcqRel);
        self.max_gap_us.fetch_max(now.saturating_sub(before), Ordering::AcqRel);
    }
}

/// Sleeps `us` microseconds: thinking, reaching or eating.
fn pause(us: u64) {
    std::thread::sleep(Duration::from_micros(us));
}

impl PhilosophersReport {
    /// Fewest meals of a philosopher divided by most.
    pub fn fairness(&self) -> f64 {
        let max = self.diners.iter().map(|d| d.meals).max().unwrap_or(0);
        let min = self.diners.iter().map(|d| d.meals).min().unwrap_or(0);
        if max == 0 { 0.0 } else { min as f64 / max as f64 }
    }
}

impl Report for PhilosophersReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let n = self.params.philosophers;
        let dur = self.params.duration_ms as f64;
        let locked: f64 = self.deadlocks.iter().map(|(a, b)| b - a).sum();
        if self.deadlocks.is_empty() {
            out.push(Finding::note(format!(
                "Never did all {n} philosophers hold one fork each at once: no deadlock in this {} ms dinner{}",
                fmt_num(dur),
                match self.params.strategy {
                    ForkOrder::Ordered => " (with the lower fork first it cannot happen)",
                    ForkOrder::Naive => " (one run without a deadlock proves nothing: the naive rule still can)",
                }
            )));
        } else {
            out.push(Finding::note(format!(
                "All {n} philosophers held one fork each — a deadlock — {} time{}, {} ms in all ({} % of the dinner); \
                 each ended only when a {} ms timeout made someone put a fork back",
                self.deadlocks.len(),
                if self.deadlocks.len() == 1 { "" } else { "s" },
                fmt_num(locked),
                fmt_num(100.0 * locked / dur),
                self.params.timeout_ms
            )));
        }
        let meals: Vec<u64> = self.diners.iter().map(|d| d.meals).collect();
        let (lo, hi) = (meals.iter().min().copied().unwrap_or(0), meals.iter().max().copied().unwrap_or(0));
        let hungry: Vec<String> =
            self.diners.iter().enumerate().filter(|(_, d)| d.meals == 0).map(|(i, _)| i.to_string()).collect();
        out.push(Finding::note(format!(
            "Meals: {} in all, fewest {lo}, most {hi} (fairness {:.2}){}",
            meals.iter().sum::<u64>(),
            self.fairness(),
            if hungry.is_empty() { String::new() } else { format!("; never ate: philosopher {}", hungry.join(", ")) }
        )));
        let reach = self.params.reach_us as f64 / 1e3;
        let ratio = if reach > 0.0 {
            format!(
                " ({} × the {} ms reach between the two forks)",
                fmt_num(self.longest_gap_ms / reach),
                fmt_num(reach)
            )
        } else {
            String::new()
        };
        let cause = match (self.deadlocks.is_empty() && self.longest_gap_ms > 0.0, self.load.busy()) {
            (true, false) => ": a wait, not a deadlock — philosophers holding one fork while reaching for the next",
            (true, true) => {
                ": a wait, not a deadlock — philosophers reaching for a held fork, or an eater the busy machine \
                 preempted"
            }
            _ => "",
        };
        out.push(Finding::note(format!(
            "The longest time without any meal was {} ms{ratio}{cause}",
            fmt_num(self.longest_gap_ms)
        )));
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let title = match self.params.strategy {
            ForkOrder::Ordered => "Lower-numbered fork first: does every philosopher keep eating?".to_string(),
            ForkOrder::Naive => "Left fork first: do the philosophers get stuck?".to_string(),
        };
        // A linear time axis: a steady eater is a straight line (on a log axis it would
        // look like a meal rate that explodes at the end). Identical curves hide each
        // other, so each name carries its meals.
        let mut f = Figure::lines(&title, "time since dinner started (ms)", "meals eaten so far").linear_x();
        for (i, m) in self.meals.iter().enumerate() {
            let pts = self.times_ms.iter().zip(m).map(|(t, c)| Point::new(*t, *c as f64)).collect();
            let name = match self.diners.get(i) {
                Some(d) => format!("philosopher {i}: {} meal{}", d.meals, if d.meals == 1 { "" } else { "s" }),
                None => format!("philosopher {i}"),
            };
            f = f.series(Series::new(name, Style::Measured, pts));
        }
        let locked: f64 = self.deadlocks.iter().map(|(a, b)| b - a).sum();
        f = f.note(format!(
            "{} deadlocks (every philosopher holding one fork), {} ms in all; fairness (fewest/most meals) {:.2}.",
            self.deadlocks.len(),
            fmt_num(locked),
            self.fairness()
        ));
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperLeft), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            format!("Dining philosophers ({})", self.params.strategy),
            &["philosopher", "meals", "gave up waiting", "longest wait for forks (ms)"],
        );
        for (i, d) in self.diners.iter().enumerate() {
            t.row(vec![i.to_string(), d.meals.to_string(), d.gave_up.to_string(), fmt_num(d.longest_wait_ms)]);
        }
        let locked: f64 = self.deadlocks.iter().map(|(a, b)| b - a).sum();
        t.note(format!(
            "{} ms dinner; eat {} µs, think ~{} µs, reach {} µs; timeout {} ms. Deadlocks (all holding one fork): {} \
             ({} ms); longest time without any meal: {} ms.",
            self.params.duration_ms,
            self.params.eat_us,
            self.params.think_us,
            self.params.reach_us,
            self.params.timeout_ms,
            self.deadlocks.len(),
            fmt_num(locked),
            fmt_num(self.longest_gap_ms)
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
            Philosophers { philosophers: 1, ..Default::default() },
            Philosophers { duration_ms: 1, ..Default::default() },
            Philosophers { timeout_ms: 0, ..Default::default() },
        ] {
            assert!(philosophers(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_strategy_names_the_choices() {
        let e = crate::lab::params_from_pairs::<Philosophers>("philosophers", &[("strategy".into(), "waiter".into())])
            .unwrap_err();
        assert_eq!(e.param, "strategy");
        assert!(e.to_string().contains("naive") && e.to_string().contains("ordered"), "{e}");
    }

    #[test]
    fn ordered_forks_feed_everyone() {
        let p = Philosophers { duration_ms: 150, eat_us: 500, think_us: 500, reach_us: 200, ..Default::default() };
        let r = philosophers(&p).unwrap();
        assert_eq!(r.meals.len(), 5);
        assert!(r.diners.iter().all(|d| d.meals > 0), "{:?}", r.diners);
        assert!(r.deadlocks.is_empty(), "{:?}", r.deadlocks);
        assert!(r.figure().to_svg().contains("<svg"));
    }

    #[test]
    fn naive_forks_stall_and_recover() {
        let p = Philosophers {
            strategy: ForkOrder::Naive,
            duration_ms: 300,
            eat_us: 200,
            think_us: 0,
            reach_us: 2000,
            timeout_ms: 20,
            ..Default::default()
        };
        let r = philosophers(&p).unwrap();
        assert!(r.diners.iter().map(|d| d.gave_up).sum::<u64>() > 0, "{:?}", r.diners);
        assert!(!r.deadlocks.is_empty(), "all five reach 2 ms after their left fork: they deadlock");
    }
}
