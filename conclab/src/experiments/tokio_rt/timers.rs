//! Timers: how late a `tokio::time::sleep` wakes (tokio rounds a deadline up to its next
//! 1 ms tick, then the OS wakes the driver), against `std::thread::sleep` (only the OS
//! timer slack, about 50 µs on Linux); and the hand-built timing wheel
//! ([`crate::primitives::timer_wheel`]) filled with random timers, drawn as a heatmap of
//! its slots, and advanced so its entries cascade down the levels.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::compare;
use crate::lab::noise::mark_busy;
use crate::lab::rng::Rng;
use crate::lab::rt::Rt;
use crate::lab::timing::quantile_sorted;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_list, check_range, fmt_num,
};
use crate::primitives::timer_wheel::{LEVELS, SLOTS, TimerWheel};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Parameters of [`sleep_lateness`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SleepLateness {
    /// Requested sleeps in µs: at most 8 sizes, each 10..=100000.
    pub sizes_us: Vec<u64>,
    /// Sleeps per size and per way (tokio, std): 1..=1000.
    pub samples: usize,
}

impl Default for SleepLateness {
    fn default() -> Self {
        SleepLateness { sizes_us: vec![100, 500, 1_000, 2_000, 5_000, 10_000, 50_000], samples: 30 }
    }
}

impl SleepLateness {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("sizes_us", &self.sizes_us, 8, 10..=100_000)?;
        check_range("samples", self.samples, 1..=1000)?;
        check_estimate("sizes_us × samples", self.estimate())
    }

    /// Per sample: the request, up to 2 ms of tokio's lateness and 0.5 ms of random start
    /// phase; std's sleep about the request.
    pub fn estimate(&self) -> Duration {
        let us: u64 = self.sizes_us.iter().map(|s| 2 * s + 2_600).sum();
        Duration::from_micros(us * self.samples as u64)
    }
}

/// How a sleep was requested.
pub const TOKIO: &str = "tokio::time::sleep";
pub const STD: &str = "std::thread::sleep";

/// One way at one size: every sample's lateness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatenessRow {
    /// [`TOKIO`] or [`STD`].
    pub way: String,
    pub requested_us: u64,
    /// Actual − requested, in ms, one per sample, in the order measured.
    pub late_ms: Vec<f64>,
    pub stats: Stats,
    pub p99: f64,
}

/// Result of [`sleep_lateness`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SleepLatenessReport {
    pub params: SleepLateness,
    pub rows: Vec<LatenessRow>,
    pub load: Load,
}

fn row(way: &str, requested_us: u64, late_ms: Vec<f64>) -> LatenessRow {
    let mut sorted = late_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = if sorted.is_empty() { 0.0 } else { quantile_sorted(&sorted, 0.99) };
    LatenessRow { way: way.into(), requested_us, stats: Stats::of(&late_ms), late_ms, p99 }
}

/// Busy-waits up to 1 ms (a random phase), so sleeps start anywhere within tokio's 1 ms
/// tick rather than always just after the previous wake-up.
fn random_phase(rng: &mut Rng) {
    let until = Instant::now() + Duration::from_micros(rng.below(1_000));
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Sleeps `samples` times for each requested size, on a current-thread tokio runtime
/// (`tokio::time::sleep(d).await`) and on the calling thread (`std::thread::sleep(d)`),
/// and records actual − requested for every sleep. Each sleep starts at a random phase
/// (0–1 ms of busy waiting first).
pub fn sleep_lateness(p: &SleepLateness) -> Result<SleepLatenessReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("sleep-lateness", 2 * p.sizes_us.len());
    let mut rows = Vec::new();
    for &us in &p.sizes_us {
        let d = Duration::from_micros(us);
        let samples = p.samples;
        // Bounded: the request and 20 ms per sample, plus 10 s.
        let limit = (d + Duration::from_millis(20)) * samples as u32 + Duration::from_secs(10);
        let late = crate::lab::rt::run(Rt::current().timeout(limit), move || async move {
            let mut rng = Rng::new(us);
            let mut late = Vec::with_capacity(samples);
            for _ in 0..samples {
                random_phase(&mut rng);
                let t = Instant::now();
                tokio::time::sleep(d).await;
                late.push((t.elapsed().as_secs_f64() - d.as_secs_f64()) * 1e3);
            }
            late
        })
        .map_err(|e| RunError::new(format!("tokio sleeps of {us} µs"), e))?;
        rows.push(row(TOKIO, us, late));
        progress.step()?;
        let mut rng = Rng::new(us);
        let mut late = Vec::with_capacity(samples);
        for _ in 0..samples {
            random_phase(&mut rng);
            let t = Instant::now();
            std::thread::sleep(d);
            late.push((t.elapsed().as_secs_f64() - d.as_secs_f64()) * 1e3);
        }
        rows.push(row(STD, us, late));
        progress.step()?;
    }
    Ok(SleepLatenessReport { params: p.clone(), rows, load: probe.finish() })
}

/// A request size in words: "100 µs", "2 ms".
fn size(us: u64) -> String {
    if us >= 1_000 { format!("{} ms", fmt_num(us as f64 / 1e3)) } else { format!("{us} µs") }
}

impl SleepLatenessReport {
    pub fn row(&self, way: &str, us: u64) -> Option<&LatenessRow> {
        self.rows.iter().find(|r| r.way == way && r.requested_us == us)
    }

    /// The requested size closest to 1 ms.
    fn near_1ms(&self) -> Option<u64> {
        self.params.sizes_us.iter().copied().min_by_key(|s| s.abs_diff(1_000))
    }
}

impl Report for SleepLatenessReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(&small) = self.params.sizes_us.iter().min()
            && let Some(r) = self.row(TOKIO, small)
        {
            let took = small as f64 / 1e3 + r.stats.median;
            let why = if small < 1_000 && took >= 0.95 {
                ": tokio rounds a deadline up to its next 1 ms tick, so a sleep shorter than 1 ms lasts at least until that tick"
            } else if r.stats.median >= 0.5 {
                ": about one 1 ms tick late — tokio rounds the deadline up to its next tick"
            } else {
                ""
            };
            out.push(Finding::clear(format!(
                "a {} tokio sleep took {} ms at the median ({} ms late){why}",
                size(small),
                fmt_num(took),
                fmt_num(r.stats.median)
            )));
        }
        let tokio: Vec<&LatenessRow> = self.rows.iter().filter(|r| r.way == TOKIO).collect();
        if !tokio.is_empty() {
            let lo = tokio.iter().map(|r| r.stats.median).fold(f64::INFINITY, f64::min);
            let hi = tokio.iter().map(|r| r.stats.median).fold(0.0, f64::max);
            let worst = tokio.iter().max_by(|a, b| a.p99.total_cmp(&b.p99)).expect("non-empty");
            // Whole-millisecond requests: the deadline is rounded up to the next tick, and the
            // driver parks for a whole number of ticks counted from the start of the current
            // tick (tokio 1.54, `time::Driver::park_internal`), so the two roundings add up to
            // about one tick whatever the phase.
            let whole: Vec<&&LatenessRow> =
                tokio.iter().filter(|r| r.requested_us >= 1_000 && r.requested_us % 1_000 == 0).collect();
            let one_tick = !whole.is_empty() && whole.iter().all(|r| (0.8..=1.6).contains(&r.stats.median));
            let why = if one_tick {
                format!(
                    ". For whole milliseconds ({}) the median sat near one full tick at every phase: the deadline is \
                     rounded up to the next tick, and the driver parks for whole ticks counted from the start of the \
                     current one, so the two roundings add up to about 1 ms plus the wake-up",
                    whole.iter().map(|r| size(r.requested_us)).collect::<Vec<_>>().join(", ")
                )
            } else {
                String::new()
            };
            out.push(Finding::clear(format!(
                "tokio's median lateness stays between {} and {} ms for every size from {} to {}: a fixed cost of the tick, \
                 not a share of the request; its worst p99 is {} ms (at {}){why}",
                fmt_num(lo),
                fmt_num(hi),
                size(*self.params.sizes_us.iter().min().unwrap_or(&0)),
                size(*self.params.sizes_us.iter().max().unwrap_or(&0)),
                fmt_num(worst.p99),
                size(worst.requested_us)
            )));
        }
        if let Some(us) = self.near_1ms()
            && let (Some(t), Some(s)) = (self.row(TOKIO, us), self.row(STD, us))
        {
            let mut f = compare(
                &format!("at {} tokio's median lateness", size(us)),
                &t.stats,
                "std::thread::sleep's",
                &s.stats,
                " ms",
            );
            f.text += &format!(
                " (p99 {} vs {} ms); std's sleep is a single nanosleep call, late only by the OS timer slack \
                 (50 µs by default on Linux) and the wake-up",
                fmt_num(t.p99),
                fmt_num(s.p99)
            );
            out.push(f);
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut h = Figure::histogram(
            "How late does tokio::time::sleep wake? (one panel per requested duration)",
            "lateness: actual − requested (ms)",
            40,
        );
        for r in self.rows.iter().filter(|r| r.way == TOKIO) {
            h = h.samples(&format!("sleep({})", size(r.requested_us)), r.late_ms.clone());
        }
        let h = h.note("Each sleep starts at a random phase within tokio's 1 ms tick (0–1 ms busy wait before it).");
        let mut b = Figure::lines(
            "Median lateness: tokio's 1 ms tick vs std's OS timer slack",
            "requested sleep (ms)",
            "lateness (ms); band: p25–p75",
        )
        .log_x();
        for way in [TOKIO, STD] {
            let pts = self
                .rows
                .iter()
                .filter(|r| r.way == way)
                .map(|r| Point::spread(r.requested_us as f64 / 1e3, r.stats.median, r.stats.p25, r.stats.p75))
                .collect();
            b = b.series(Series::new(way, Style::Measured, pts));
        }
        vec![mark_busy(h, &self.load), mark_busy(b, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Sleep lateness (actual − requested) per requested duration",
            &["sleep", "requested", "p50 ms", "p99 ms", "max ms", "samples"],
        );
        for r in &self.rows {
            t.row(vec![
                r.way.clone(),
                size(r.requested_us),
                fmt_num(r.stats.median),
                fmt_num(r.p99),
                fmt_num(r.stats.max),
                r.late_ms.len().to_string(),
            ]);
        }
        t.note("tokio sleeps on a current-thread runtime; std sleeps on the calling thread; each starts at a random phase.");
        t
    }
}

/// Parameters of [`timer_wheel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerWheelRun {
    /// Timers inserted: 1..=1000000.
    pub timers: usize,
    /// Deadlines are log-uniform from 1 tick to this many ticks (1 ms each): 64..=100000000.
    pub max_ticks: u64,
    /// Points in time at which the wheel is advanced and its levels counted: 2..=200.
    pub steps: usize,
    /// Seed of the random deadlines: 0..=1000000.
    pub seed: u64,
}

impl Default for TimerWheelRun {
    fn default() -> Self {
        TimerWheelRun { timers: 10_000, max_ticks: 1_000_000, steps: 60, seed: 1 }
    }
}

impl TimerWheelRun {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("timers", self.timers, 1..=1_000_000)?;
        check_range("max_ticks", self.max_ticks, 64..=100_000_000)?;
        check_range("steps", self.steps, 2..=200)?;
        check_range("seed", self.seed, 0..=1_000_000)
    }
}

/// The wheel at one point in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WheelStep {
    pub tick: u64,
    pub per_level: [usize; LEVELS],
    /// Timers fired so far.
    pub fired: usize,
    /// Entries moved down a level so far (all levels).
    pub cascaded: u64,
}

/// Result of [`timer_wheel`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimerWheelReport {
    pub params: TimerWheelRun,
    /// Entries per slot right after inserting, `[level][slot]`.
    pub occupancy: Vec<Vec<usize>>,
    pub steps: Vec<WheelStep>,
    /// Entries that left each level for a lower one over the whole run.
    pub cascaded: [u64; LEVELS],
    /// Whether every timer fired in deadline order (ties in insertion order).
    pub in_order: bool,
}

/// Inserts `timers` timers with log-uniform random deadlines into a
/// [`TimerWheel`] at tick 0, records its slot occupancy, then advances it in `steps`
/// log-spaced steps to `max_ticks`, counting entries per level, fired and cascaded.
pub fn timer_wheel(p: &TimerWheelRun) -> Result<TimerWheelReport, LabError> {
    p.validate()?;
    let mut rng = Rng::new(p.seed);
    let mut wheel = TimerWheel::new();
    let ln_max = (p.max_ticks as f64).ln();
    let mut deadlines = Vec::with_capacity(p.timers);
    for id in 0..p.timers as u64 {
        let u = rng.below(1 << 40) as f64 / (1u64 << 40) as f64;
        let d = ((u * ln_max).exp().round() as u64).clamp(1, p.max_ticks);
        deadlines.push(d);
        wheel.insert(d, id);
    }
    let occupancy = wheel.occupancy().iter().map(|r| r.to_vec()).collect();
    let mut steps = vec![WheelStep { tick: 0, per_level: wheel.per_level(), fired: 0, cascaded: 0 }];
    let mut fired_ids = Vec::with_capacity(p.timers);
    for i in 1..=p.steps {
        let tick = (p.max_ticks as f64).powf(i as f64 / p.steps as f64).round() as u64;
        fired_ids.extend(wheel.advance(tick));
        steps.push(WheelStep {
            tick,
            per_level: wheel.per_level(),
            fired: fired_ids.len(),
            cascaded: wheel.cascaded().iter().sum(),
        });
    }
    let mut expected: Vec<u64> = (0..p.timers as u64).collect();
    expected.sort_by_key(|&id| (deadlines[id as usize], id));
    // Steps split the firing into batches, each in order; across batches deadlines rise.
    let in_order = fired_ids == expected;
    Ok(TimerWheelReport { params: p.clone(), occupancy, steps, cascaded: wheel.cascaded(), in_order })
}

impl Report for TimerWheelReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = Vec::new();
        let first = &self.steps[0];
        let shares: Vec<String> = first
            .per_level
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(l, n)| format!("level {l} {}%", fmt_num(100.0 * *n as f64 / p.timers as f64)))
            .collect();
        out.push(Finding::clear(format!(
            "{} timers with deadlines from 1 to {} ticks landed in {}: the levels hold ranges that grow 64× per \
             level, so log-spread deadlines fill them",
            p.timers,
            p.max_ticks,
            shares.join(", ")
        )));
        let last = self.steps.last().expect("at least one step");
        let total: u64 = self.cascaded.iter().sum();
        let per = if last.fired > 0 { total as f64 / last.fired as f64 } else { 0.0 };
        out.push(Finding::clear(format!(
            "advancing to tick {} fired {} of {} timers and moved entries down a level {} times ({} per fired timer; \
             at most {} each): insert and fire stay O(1) and the cascades are the price",
            last.tick,
            last.fired,
            p.timers,
            total,
            fmt_num(per),
            LEVELS - 1
        )));
        out.push(if self.in_order {
            Finding::clear(format!("all {} fired timers came out in deadline order", last.fired))
        } else {
            Finding::clear("the wheel fired timers out of deadline order — a bug in the wheel")
        });
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut h = Figure::heatmap(
            &format!("Where {} random timers sit in a {LEVELS}-level × {SLOTS}-slot timing wheel", self.params.timers),
            "slot (level L: each slot spans 64^L ticks)",
            "level",
        );
        for (l, row) in self.occupancy.iter().enumerate() {
            let span = 64u64.pow(l as u32);
            h = h.row(
                &format!("{l} ({} tick{})", span, if span == 1 { "" } else { "s" }),
                row.iter().map(|v| *v as f64).collect(),
            );
        }
        let mut c = Figure::lines(
            "As time advances, entries cascade from higher levels down and fire from level 0",
            "wheel time (ticks)",
            "entries per level",
        )
        .log_x();
        for l in 0..LEVELS {
            if self.steps.iter().all(|s| s.per_level[l] == 0) {
                continue;
            }
            let pts = self
                .steps
                .iter()
                .filter(|s| s.tick > 0)
                .map(|s| Point::new(s.tick as f64, s.per_level[l] as f64))
                .collect();
            c = c.series(Series::new(format!("level {l}"), Style::Measured, pts));
        }
        vec![h, c]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Timing wheel: entries per level as time advances",
            &["tick", "level 0", "level 1", "level 2", "level 3", "level 4", "level 5", "fired", "cascaded"],
        );
        let n = self.steps.len();
        for (i, s) in self.steps.iter().enumerate() {
            if n > 12 && i % (n / 10) != 0 && i + 1 != n {
                continue;
            }
            let mut cells = vec![s.tick.to_string()];
            cells.extend(s.per_level.iter().map(|v| v.to_string()));
            cells.push(s.fired.to_string());
            cells.push(s.cascaded.to_string());
            t.row(cells);
        }
        t.note(format!("Cascaded out of each level over the run: {:?}.", self.cascaded));
        t
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![
        crate::lab::Experiment::new(
            "sleep-lateness",
            super::NOTEBOOK,
            "tokio::time::sleep vs std::thread::sleep: actual − requested for 0.1–50 ms requests",
            sleep_lateness,
        ),
        crate::lab::Experiment::new(
            "timer-wheel",
            super::NOTEBOOK,
            "a hand-built hierarchical timing wheel: slot occupancy heatmap and cascades as time advances",
            timer_wheel,
        ),
    ]
}

crate::impl_params!(SleepLateness, TimerWheelRun);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_refuses_bad_parameters() {
        assert!(sleep_lateness(&SleepLateness { sizes_us: vec![], ..Default::default() }).is_err());
        assert!(sleep_lateness(&SleepLateness { sizes_us: vec![5], ..Default::default() }).is_err());
        assert!(SleepLateness { sizes_us: vec![100_000], samples: 1000 }.validate().is_err(), "over the time budget");
        assert!(SleepLateness::default().validate().is_ok());
        assert!(SleepLateness::default().estimate() < Duration::from_secs(10));
        assert!(timer_wheel(&TimerWheelRun { steps: 1, ..Default::default() }).is_err());
    }

    #[test]
    fn timer_sleeps_are_never_early_and_the_report_draws() {
        let r = sleep_lateness(&SleepLateness { sizes_us: vec![200, 2_000], samples: 3 }).unwrap();
        assert_eq!(r.rows.len(), 4);
        for row in &r.rows {
            assert_eq!(row.late_ms.len(), 3);
            assert!(row.late_ms.iter().all(|l| *l >= 0.0), "{row:?}");
        }
        assert!(r.findings().len() >= 3);
        assert!(r.figure().to_svg().contains("<svg"));
        assert_eq!(r.figures().len(), 2);
        assert!(r.table().to_string().contains("p99"));
    }

    #[test]
    fn timer_wheel_fires_everything_in_order() {
        let r = timer_wheel(&TimerWheelRun { timers: 2_000, max_ticks: 100_000, steps: 20, seed: 3 }).unwrap();
        assert!(r.in_order);
        let last = r.steps.last().unwrap();
        assert_eq!(last.fired, 2_000);
        assert_eq!(last.per_level, [0; LEVELS]);
        assert_eq!(r.occupancy.iter().flatten().sum::<usize>(), 2_000);
        assert!(r.cascaded[1] > 0);
        assert!(r.figure().to_svg().contains("<svg"));
        assert!(r.figures()[0].summary().contains("0 (1 tick)"));
    }
}
