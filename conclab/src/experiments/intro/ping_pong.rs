//! Context-switch cost: two threads hand a token back and forth, so every round trip
//! needs each of them to sleep and be woken once.

use crate::lab::findings::compare;
use crate::lab::os::{Switches, current_cpu};
use crate::lab::timing::quantile_sorted;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_choices, check_cpu, check_range, fmt_num, pin_current_thread, usable_cpus,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Parameters of [`ping_pong`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingPong {
    /// Round trips per sample: 100..=1_000_000.
    pub round_trips: usize,
    /// Timed samples per mechanism and placement (after one short warm-up): 1..=51.
    pub samples: usize,
    /// Hand-off mechanisms to compare, any of [`Mechanism`]: "park" and "channel".
    pub mechanisms: Vec<Mechanism>,
    /// The CPU of the first thread when pinned (and of both on "same CPU").
    pub cpu_a: usize,
    /// The CPU of the second thread on "two CPUs" (that placement is skipped when it equals `cpu_a`).
    pub cpu_b: usize,
}

impl Default for PingPong {
    fn default() -> Self {
        let cpus = usable_cpus();
        PingPong {
            round_trips: 5_000,
            samples: 5,
            mechanisms: Mechanism::ALL.to_vec(),
            cpu_a: cpus[0],
            cpu_b: other_core(cpus[0]),
        }
    }
}

/// A usable CPU other than `cpu`, preferring one that is not its SMT sibling (two
/// hardware threads of one core share caches and behave unlike two cores); `cpu` itself
/// on a one-CPU machine.
pub fn other_core(cpu: usize) -> usize {
    let siblings = crate::lab::machine::smt_siblings(cpu);
    let others: Vec<usize> = usable_cpus().into_iter().filter(|&c| c != cpu).collect();
    others.iter().copied().find(|c| !siblings.contains(c)).or(others.first().copied()).unwrap_or(cpu)
}

crate::choices! {
    /// How the token is handed from one thread to the other in [`ping_pong`].
    pub enum Mechanism {
        /// `thread::park`/`unpark` on a shared turn counter: a futex wait and wake.
        Park = "park",
        /// Two rendezvous `sync_channel(0)`s, one each way.
        Channel = "channel",
    }
}

impl PingPong {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("round_trips", self.round_trips, 100..=1_000_000)?;
        check_range("samples", self.samples, 1..=51)?;
        // Bounds the run time: about 50 µs a round trip across CPUs in a small VM.
        let trips = self.round_trips as u64 * self.samples as u64;
        if trips > 2_000_000 {
            return Err(ParamError::new("round_trips × samples", "at most 2000000", trips));
        }
        check_choices("mechanisms", &self.mechanisms)?;
        check_cpu("cpu_a", self.cpu_a)?;
        check_cpu("cpu_b", self.cpu_b)
    }

    fn placements(&self) -> Vec<(&'static str, Option<(usize, usize)>)> {
        let mut v = vec![("same CPU", Some((self.cpu_a, self.cpu_a)))];
        if self.cpu_b != self.cpu_a {
            v.push(("two CPUs", Some((self.cpu_a, self.cpu_b))));
        }
        v.push(("unpinned", None));
        v
    }
}

/// One mechanism in one placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingPongRow {
    pub mechanism: Mechanism,
    pub placement: String,
    /// Single round trips in µs (every one, or every k-th past 200 000): median and
    /// quartiles of the trips themselves. The bars plot this.
    pub trip_us: Stats,
    /// Percentiles of single round trips in µs: p1, p99 and p99.9 (the tail).
    pub trip_p1_us: f64,
    pub trip_p99_us: f64,
    pub trip_p999_us: f64,
    /// Mean µs per round trip of each sample (its wall time / round trips), summarised
    /// over the samples: rare slow trips pull a mean far above the typical trip.
    pub round_trip_us: Stats,
    /// Per sample: the share of round trips after which both threads were on the same
    /// CPU (read with `sched_getcpu` after every wait). 1 when pinned together, 0 apart.
    pub same_cpu_share: Vec<f64>,
    /// Context switches per round trip, both threads together (all samples).
    pub voluntary_per_round_trip: f64,
    pub involuntary_per_round_trip: f64,
    /// Every single round trip's latency in µs (not serialised: large).
    #[serde(skip)]
    pub latencies_us: Vec<f64>,
}

/// Result of [`ping_pong`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PingPongReport {
    pub params: PingPong,
    pub rows: Vec<PingPongRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

/// Measures the round-trip time of a token passed between two threads, for each
/// mechanism and for both threads on one CPU, on two CPUs and unpinned, with the
/// threads' context-switch counters (`getrusage(RUSAGE_THREAD)`) read before and after.
/// Every wait is bounded: a run that stalls ends with an error instead of hanging.
pub fn ping_pong(p: &PingPong) -> Result<PingPongReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut rows = Vec::new();
    for mech in Mechanism::ALL.iter().copied().filter(|m| p.mechanisms.contains(m)) {
        for (placement, pins) in p.placements() {
            let limit = Duration::from_secs(10).max(Duration::from_micros(p.round_trips as u64 * 1000));
            let stalled = |_| {
                RunError::new(
                    format!("ping-pong ({mech}, {placement})"),
                    format!(
                        "a thread could not start, or {} round trips did not finish within {} s",
                        p.round_trips,
                        limit.as_secs()
                    ),
                )
            };
            exchange(mech, p.round_trips.min(1000), 1, pins, limit).map_err(stalled)?;
            // Keep at most ~200k single latencies per row for the histogram.
            let keep = (p.round_trips * p.samples).div_ceil(200_000) as u64;
            let mut per_sample = Vec::new();
            let mut latencies = Vec::new();
            let mut switches = Switches::default();
            let mut same_cpu_share = Vec::new();
            for _ in 0..p.samples {
                let s = exchange(mech, p.round_trips, keep, pins, limit).map_err(stalled)?;
                per_sample.push(s.total.as_secs_f64() * 1e6 / p.round_trips as f64);
                latencies.extend(s.latencies_us);
                switches = switches + s.switches;
                same_cpu_share.push(s.same_cpu_share);
            }
            let n = (p.round_trips * p.samples) as f64;
            let mut sorted = latencies.clone();
            sorted.sort_by(f64::total_cmp);
            rows.push(PingPongRow {
                mechanism: mech,
                placement: placement.to_string(),
                trip_us: Stats::from_samples(&sorted).expect("at least one round trip"),
                trip_p1_us: quantile_sorted(&sorted, 0.01),
                trip_p99_us: quantile_sorted(&sorted, 0.99),
                trip_p999_us: quantile_sorted(&sorted, 0.999),
                round_trip_us: Stats::from_samples(&per_sample).expect("at least one sample"),
                same_cpu_share,
                voluntary_per_round_trip: switches.voluntary as f64 / n,
                involuntary_per_round_trip: switches.involuntary as f64 / n,
                latencies_us: latencies,
            });
        }
    }
    Ok(PingPongReport { params: p.clone(), rows, load: probe.finish() })
}

struct Exchange {
    total: Duration,
    latencies_us: Vec<f64>,
    switches: Switches,
    /// Share of round trips after which both threads were on the same CPU.
    same_cpu_share: f64,
}

/// Share of positions where both threads reported the same CPU.
fn share_same(a: &[i32], b: &[i32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
}

/// Runs `n` round trips between two fresh threads; `Err` if `limit` passes first.
/// Keeps every `keep`-th round trip's latency (all of them when `keep` is 1).
fn exchange(
    mech: Mechanism,
    n: usize,
    keep: u64,
    pins: Option<(usize, usize)>,
    limit: Duration,
) -> Result<Exchange, ()> {
    let run = Trips { n, keep, pins, limit, deadline: Instant::now() + limit };
    match mech {
        Mechanism::Park => run.park(),
        Mechanism::Channel => run.channel(),
    }
}

/// One exchange's settings: `n` round trips, every `keep`-th latency kept, optional CPUs
/// for the two threads, and the deadline that ends every wait.
#[derive(Clone, Copy)]
struct Trips {
    n: usize,
    keep: u64,
    pins: Option<(usize, usize)>,
    limit: Duration,
    deadline: Instant,
}

impl Trips {
    fn pin(cpu: Option<usize>) {
        if let Some(c) = cpu {
            pin_current_thread(c);
        }
    }

    /// A shared turn counter; each side parks until its turn comes and unparks the other.
    fn park(self) -> Result<Exchange, ()> {
        let Trips { n, keep, pins, limit, deadline } = self;
        let pin = Trips::pin;
        let (pa, pb) = (pins.map(|p| p.0), pins.map(|p| p.1));
        let turn_cell = AtomicU64::new(0);
        std::thread::scope(|s| {
            let turn = &turn_cell;
            let (tx, rx) = mpsc::channel::<Thread>();
            let b = std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    pin(pb);
                    let a = rx.recv_timeout(limit).map_err(|_| ())?;
                    let mut cpus = Vec::with_capacity(n);
                    let before = Switches::this_thread();
                    for i in 0..n as u64 {
                        wait_for(turn, 2 * i + 1, deadline)?;
                        cpus.push(current_cpu() as i32);
                        turn.store(2 * i + 2, Ordering::Release);
                        a.unpark();
                    }
                    Ok::<_, ()>((Switches::this_thread().since(before), cpus))
                })
                .map_err(|_| ())?;
            let b_thread = b.thread().clone();
            let b_for_a = b_thread.clone();
            let a = std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    pin(pa);
                    tx.send(std::thread::current()).map_err(|_| ())?;
                    let mut lat = Vec::with_capacity(n / keep as usize + 1);
                    let mut cpus = Vec::with_capacity(n);
                    let before = Switches::this_thread();
                    let t0 = Instant::now();
                    for i in 0..n as u64 {
                        let t = Instant::now();
                        turn.store(2 * i + 1, Ordering::Release);
                        b_for_a.unpark();
                        wait_for(turn, 2 * i + 2, deadline)?;
                        if i % keep == 0 {
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        cpus.push(current_cpu() as i32);
                    }
                    Ok::<_, ()>((t0.elapsed(), lat, Switches::this_thread().since(before), cpus))
                })
                .map_err(|_| ())?;
            let ra = a.join().map_err(|_| ())?;
            if ra.is_err() {
                // Let B see a turn it is waiting for never comes: it times out by itself.
                b_thread.unpark();
            }
            let (sb, cb) = b.join().map_err(|_| ())??;
            let (total, latencies_us, sa, ca) = ra?;
            Ok(Exchange { total, latencies_us, switches: sa + sb, same_cpu_share: share_same(&ca, &cb) })
        })
    }

    /// Two rendezvous channels, one each way.
    fn channel(self) -> Result<Exchange, ()> {
        let Trips { n, keep, pins, deadline, .. } = self;
        let pin = Trips::pin;
        let (pa, pb) = (pins.map(|p| p.0), pins.map(|p| p.1));
        std::thread::scope(|s| {
            let (to_b, from_a) = mpsc::sync_channel::<u64>(0);
            let (to_a, from_b) = mpsc::sync_channel::<u64>(0);
            let b = std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    pin(pb);
                    let mut cpus = Vec::with_capacity(n);
                    let before = Switches::this_thread();
                    for _ in 0..n {
                        let v =
                            from_a.recv_timeout(deadline.saturating_duration_since(Instant::now())).map_err(|_| ())?;
                        cpus.push(current_cpu() as i32);
                        to_a.send(v + 1).map_err(|_| ())?;
                    }
                    Ok::<_, ()>((Switches::this_thread().since(before), cpus))
                })
                .map_err(|_| ())?;
            let a = std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    pin(pa);
                    let mut lat = Vec::with_capacity(n / keep as usize + 1);
                    let mut cpus = Vec::with_capacity(n);
                    let before = Switches::this_thread();
                    let t0 = Instant::now();
                    for i in 0..n as u64 {
                        let t = Instant::now();
                        to_b.send(i).map_err(|_| ())?;
                        from_b.recv_timeout(deadline.saturating_duration_since(Instant::now())).map_err(|_| ())?;
                        if i % keep == 0 {
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        cpus.push(current_cpu() as i32);
                    }
                    Ok::<_, ()>((t0.elapsed(), lat, Switches::this_thread().since(before), cpus))
                })
                .map_err(|_| ())?;
            // Dropping A's channel ends (when A returns) unblocks B; B's timeout ends it otherwise.
            let ra = a.join().map_err(|_| ())?;
            let (sb, cb) = b.join().map_err(|_| ())??;
            let (total, latencies_us, sa, ca) = ra?;
            Ok(Exchange { total, latencies_us, switches: sa + sb, same_cpu_share: share_same(&ca, &cb) })
        })
    }
}

/// Parks until `turn` reaches `want`; `Err` past `deadline`.
fn wait_for(turn: &AtomicU64, want: u64, deadline: Instant) -> Result<(), ()> {
    while turn.load(Ordering::Acquire) != want {
        let now = Instant::now();
        if now >= deadline {
            return Err(());
        }
        std::thread::park_timeout(deadline - now);
    }
    Ok(())
}

impl PingPongReport {
    /// Median single round trip in µs for a mechanism and placement.
    pub fn median(&self, mechanism: Mechanism, placement: &str) -> Option<f64> {
        self.row(mechanism, placement).map(|r| r.trip_us.median)
    }

    pub fn row(&self, mechanism: Mechanism, placement: &str) -> Option<&PingPongRow> {
        self.rows.iter().find(|r| r.mechanism == mechanism && r.placement == placement)
    }

    fn mechanisms(&self) -> Vec<Mechanism> {
        let mut v: Vec<Mechanism> = Vec::new();
        for r in &self.rows {
            if !v.contains(&r.mechanism) {
                v.push(r.mechanism);
            }
        }
        v
    }

    /// Where unpinned samples ran: (both on one CPU, on two CPUs, mixed), counted over
    /// samples: "one CPU" when ≥ 90 % of round trips ended with both on the same CPU,
    /// "two CPUs" when ≤ 10 % did.
    pub fn unpinned_landing(&self, mechanism: Mechanism) -> Option<(usize, usize, usize)> {
        let r = self.row(mechanism, "unpinned")?;
        let one = r.same_cpu_share.iter().filter(|&&s| s >= 0.9).count();
        let two = r.same_cpu_share.iter().filter(|&&s| s <= 0.1).count();
        Some((one, two, r.same_cpu_share.len() - one - two))
    }
}

/// Percentile points for the tail figure: x = "nines" (1 = p90, 2 = p99, 3 = p99.9).
fn tail_points(latencies: &[f64]) -> Vec<Point> {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut qs = vec![0.5, 0.9, 0.99, 0.999];
    if sorted.len() >= 20_000 {
        qs.push(0.9999);
    }
    qs.into_iter()
        .filter(|_| !sorted.is_empty())
        .map(|q: f64| Point::new(-(1.0 - q).log10(), quantile_sorted(&sorted, q).max(1e-3)))
        .collect()
}

impl Report for PingPongReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mechs = self.mechanisms();
        for &m in &mechs {
            let (same, two, un) = (self.row(m, "same CPU"), self.row(m, "two CPUs"), self.row(m, "unpinned"));
            if let (Some(a), Some(b)) = (same, two) {
                out.push(compare(
                    &format!("{m}, median single round trip on the same CPU"),
                    &a.trip_us,
                    "on two CPUs",
                    &b.trip_us,
                    " µs",
                ));
            }
            if let (Some(u), Some((one, apart, mixed))) = (un, self.unpinned_landing(m)) {
                let n = u.same_cpu_share.len();
                let mut text = format!(
                    "{m}, unpinned: both threads ran on one CPU in {one} of {n} samples, on two CPUs in {apart}"
                );
                if mixed > 0 {
                    text += &format!(", moving between the two in {mixed}");
                }
                // Which pinned case the unpinned median resembles (ratio on a log scale).
                let near = [same, two]
                    .into_iter()
                    .flatten()
                    .min_by(|x, y| {
                        let d = |r: &PingPongRow| (r.trip_us.median / u.trip_us.median).ln().abs();
                        d(x).total_cmp(&d(y))
                    })
                    .map(|r| r.placement.clone());
                if let Some(near) = near {
                    text += &format!("; its median trip ({} µs) is closest to {near}", fmt_num(u.trip_us.median));
                }
                out.push(Finding::note(text));
            }
            let sw: Vec<String> = self
                .rows
                .iter()
                .filter(|r| r.mechanism == m)
                .map(|r| {
                    format!(
                        "{} {} + {}",
                        r.placement,
                        fmt_num(r.voluntary_per_round_trip),
                        fmt_num(r.involuntary_per_round_trip)
                    )
                })
                .collect();
            out.push(Finding::note(format!(
                "{m}: context switches per round trip, both threads, voluntary + involuntary: {}",
                sw.join("; ")
            )));
        }
        if let Some(&m) = mechs.first() {
            let rows: Vec<&PingPongRow> = self.rows.iter().filter(|r| r.mechanism == m).collect();
            let tail: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} p99 {} µs, p99.9 {} µs ({}× its median)",
                        r.placement,
                        fmt_num(r.trip_p99_us),
                        fmt_num(r.trip_p999_us),
                        fmt_num(r.trip_p999_us / r.trip_us.median.max(1e-9))
                    )
                })
                .collect();
            out.push(Finding::note(format!("The tail of single {m} round trips: {}", tail.join("; "))));
            if let Some(fast) = rows.iter().min_by(|a, b| a.trip_p1_us.total_cmp(&b.trip_p1_us)) {
                out.push(Finding::note(format!(
                    "The fastest 1 % of {m} round trips were {}: p1 {} µs ({})",
                    fast.placement,
                    fmt_num(fast.trip_p1_us),
                    rows.iter()
                        .filter(|r| r.placement != fast.placement)
                        .map(|r| format!("{} {} µs", r.placement, fmt_num(r.trip_p1_us)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut bars = Figure::bars(
            "Is a round trip between two threads cheaper on one CPU or on two?",
            "placement of the two threads",
            "µs per round trip: median of single round trips (whiskers: their p25–p75)",
        );
        for r in &self.rows {
            let s = &r.trip_us;
            bars = bars.bar(&r.placement, r.mechanism.name(), s.median, Some((s.p25, s.p75)));
        }
        let mech = self.rows.first().map(|r| r.mechanism);
        let mech_name = mech.map(Mechanism::name).unwrap_or_default();
        let mut hist = Figure::histogram(
            &format!("How much do single round trips vary? ({mech_name})"),
            "round trip (µs), log scale",
            40,
        )
        .log_x();
        let mut tails = Vec::new();
        for r in self.rows.iter().filter(|r| Some(r.mechanism) == mech) {
            hist = hist.samples(&r.placement, r.latencies_us.clone());
            tails.push(format!(
                "{}: p50 {} µs, p99 {} µs, p99.9 {} µs, slowest {} µs",
                r.placement,
                fmt_num(r.trip_us.median),
                fmt_num(r.trip_p99_us),
                fmt_num(r.trip_p999_us),
                fmt_num(r.trip_us.max)
            ));
        }
        for t in tails {
            hist = hist.note(t);
        }
        hist = hist.note("The slow tail is too rare to show as bars here; the next figure draws it.");
        hist = hist.legend(crate::lab::Legend::UpperRight);
        let mut tail = Figure::lines(
            "The tail: how slow are the slowest round trips?",
            "percentile, counted in nines: 0.3 = p50, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99",
            "µs per round trip (log scale)",
        )
        .linear_x()
        .log_y();
        for r in &self.rows {
            tail = tail.series(Series::new(
                format!("{}, {}", r.mechanism, r.placement),
                Style::Measured,
                tail_points(&r.latencies_us),
            ));
        }
        vec![
            super::mark_busy(bars.legend(crate::lab::Legend::UpperLeft), &self.load),
            super::mark_busy(hist, &self.load),
            super::mark_busy(tail.legend(crate::lab::Legend::UpperLeft), &self.load),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Ping-pong round trips",
            &[
                "mechanism",
                "placement",
                "single trip p50 µs",
                "p25–p75 µs",
                "p99 µs",
                "p99.9 µs",
                "mean µs (median of samples)",
                "samples on one CPU",
                "voluntary switches / trip",
                "involuntary / trip",
            ],
        );
        for r in &self.rows {
            t.row(vec![
                r.mechanism.to_string(),
                r.placement.clone(),
                fmt_num(r.trip_us.median),
                r.trip_us.quartile_range(),
                fmt_num(r.trip_p99_us),
                fmt_num(r.trip_p999_us),
                fmt_num(r.round_trip_us.median),
                format!("{} of {}", r.same_cpu_share.iter().filter(|&&s| s >= 0.9).count(), r.same_cpu_share.len()),
                fmt_num(r.voluntary_per_round_trip),
                fmt_num(r.involuntary_per_round_trip),
            ]);
        }
        t.note(format!(
            "{} round trips per sample, {} samples; switches counted for both threads over all samples. \
             \"mean\" is a sample's wall time / round trips: rare slow trips pull it above the typical (p50) trip.",
            self.params.round_trips, self.params.samples
        ));
        let (a, b) = (self.params.cpu_a, self.params.cpu_b);
        let siblings = crate::lab::machine::smt_siblings(a).contains(&b);
        t.note(format!(
            "same CPU = CPU {a}; two CPUs = CPU {a} and CPU {b} ({}). A sample counts as \"on one CPU\" when both \
             threads were on the same CPU after at least 90 % of its round trips.",
            if siblings { "SMT siblings: two hardware threads of one core" } else { "not SMT siblings" }
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
            PingPong { round_trips: 10, ..Default::default() },
            PingPong { samples: 0, ..Default::default() },
            PingPong { mechanisms: vec![], ..Default::default() },
            PingPong { cpu_a: 9999, ..Default::default() },
        ] {
            assert!(ping_pong(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_mechanism_names_the_choices() {
        let e = crate::lab::params_from_pairs::<PingPong>("ping-pong", &[("mechanisms".into(), "park,smoke".into())])
            .unwrap_err();
        assert_eq!(e.param, "mechanisms");
        assert!(e.to_string().contains("park") && e.to_string().contains("channel"), "{e}");
        let e = PingPong { mechanisms: vec![Mechanism::Park, Mechanism::Park], ..Default::default() }.validate();
        assert!(e.unwrap_err().to_string().contains("park, channel"));
    }

    #[test]
    fn both_mechanisms_switch_contexts_on_one_cpu() {
        let p = PingPong { round_trips: 300, samples: 2, ..Default::default() };
        let r = ping_pong(&p).unwrap();
        assert_eq!(r.rows.len(), 2 * p.placements().len());
        for row in &r.rows {
            assert_eq!(row.latencies_us.len(), 600);
            assert!(row.round_trip_us.median > 0.0);
        }
        // Pinned to one CPU, a thread must block for the other to run: at least one
        // voluntary switch per round trip (really about two: one per thread).
        for &m in Mechanism::ALL {
            let row = r.rows.iter().find(|x| x.mechanism == m && x.placement == "same CPU").unwrap();
            assert!(row.voluntary_per_round_trip >= 1.0, "{m}: {}", row.voluntary_per_round_trip);
        }
        assert_eq!(r.figures().len(), 3);
        for row in r.rows.iter().filter(|x| x.placement == "same CPU") {
            assert!(row.same_cpu_share.iter().all(|&s| s == 1.0), "{:?}", row.same_cpu_share);
        }
        for row in r.rows.iter().filter(|x| x.placement == "two CPUs") {
            assert!(row.same_cpu_share.iter().all(|&s| s == 0.0), "{:?}", row.same_cpu_share);
        }
        let f = r.findings();
        assert!(f.iter().any(|x| x.text.contains("unpinned: both threads ran on one CPU in")), "{f:?}");
        assert!(f.last().unwrap().text.contains("machine") || f.last().unwrap().text.contains("Machine"));
    }
}
