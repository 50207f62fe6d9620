//! Context-switch cost: two threads hand a token back and forth, so every round trip
//! needs each of them to sleep and be woken once.

use crate::lab::os::Switches;
use crate::lab::{
    Figure, LabError, ParamError, Report, RunError, Stats, Table, check_choices, check_cpu, check_range, fmt_num,
    pin_current_thread, usable_cpus,
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
    /// Microseconds per round trip, one value per sample.
    pub round_trip_us: Stats,
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
}

/// Measures the round-trip time of a token passed between two threads, for each
/// mechanism and for both threads on one CPU, on two CPUs and unpinned, with the
/// threads' context-switch counters (`getrusage(RUSAGE_THREAD)`) read before and after.
/// Every wait is bounded: a run that stalls ends with an error instead of hanging.
pub fn ping_pong(p: &PingPong) -> Result<PingPongReport, LabError> {
    p.validate()?;
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
            for _ in 0..p.samples {
                let s = exchange(mech, p.round_trips, keep, pins, limit).map_err(stalled)?;
                per_sample.push(s.total.as_secs_f64() * 1e6 / p.round_trips as f64);
                latencies.extend(s.latencies_us);
                switches = switches + s.switches;
            }
            let n = (p.round_trips * p.samples) as f64;
            rows.push(PingPongRow {
                mechanism: mech,
                placement: placement.to_string(),
                round_trip_us: Stats::from_samples(&per_sample).expect("at least one sample"),
                voluntary_per_round_trip: switches.voluntary as f64 / n,
                involuntary_per_round_trip: switches.involuntary as f64 / n,
                latencies_us: latencies,
            });
        }
    }
    Ok(PingPongReport { params: p.clone(), rows })
}

struct Exchange {
    total: Duration,
    latencies_us: Vec<f64>,
    switches: Switches,
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
    let deadline = Instant::now() + limit;
    let pin = |cpu: Option<usize>| {
        if let Some(c) = cpu {
            pin_current_thread(c);
        }
    };
    let (pa, pb) = (pins.map(|p| p.0), pins.map(|p| p.1));
    let turn_cell = AtomicU64::new(0);
    std::thread::scope(|s| {
        match mech {
            Mechanism::Park => {
                let turn = &turn_cell;
                let (tx, rx) = mpsc::channel::<Thread>();
                let b = std::thread::Builder::new()
                    .spawn_scoped(s, move || {
                        pin(pb);
                        let a = rx.recv_timeout(limit).map_err(|_| ())?;
                        let before = Switches::this_thread();
                        for i in 0..n as u64 {
                            wait_for(turn, 2 * i + 1, deadline)?;
                            turn.store(2 * i + 2, Ordering::Release);
                            a.unpark();
                        }
                        Ok::<Switches, ()>(Switches::this_thread().since(before))
                    })
                    .map_err(|_| ())?;
                let b_thread = b.thread().clone();
                let b_for_a = b_thread.clone();
                let a = std::thread::Builder::new()
                    .spawn_scoped(s, move || {
                        pin(pa);
                        tx.send(std::thread::current()).map_err(|_| ())?;
                        let mut lat = Vec::with_capacity(n / keep as usize + 1);
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
                        }
                        Ok::<_, ()>((t0.elapsed(), lat, Switches::this_thread().since(before)))
                    })
                    .map_err(|_| ())?;
                let ra = a.join().map_err(|_| ())?;
                if ra.is_err() {
                    // Let B see a turn it is waiting for never comes: it times out by itself.
                    b_thread.unpark();
                }
                let sb = b.join().map_err(|_| ())??;
                let (total, latencies_us, sa) = ra?;
                Ok(Exchange { total, latencies_us, switches: sa + sb })
            }
            Mechanism::Channel => {
                let (to_b, from_a) = mpsc::sync_channel::<u64>(0);
                let (to_a, from_b) = mpsc::sync_channel::<u64>(0);
                let b = std::thread::Builder::new()
                    .spawn_scoped(s, move || {
                        pin(pb);
                        let before = Switches::this_thread();
                        for _ in 0..n {
                            let v = from_a
                                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                                .map_err(|_| ())?;
                            to_a.send(v + 1).map_err(|_| ())?;
                        }
                        Ok::<Switches, ()>(Switches::this_thread().since(before))
                    })
                    .map_err(|_| ())?;
                let a = std::thread::Builder::new()
                    .spawn_scoped(s, move || {
                        pin(pa);
                        let mut lat = Vec::with_capacity(n / keep as usize + 1);
                        let before = Switches::this_thread();
                        let t0 = Instant::now();
                        for i in 0..n as u64 {
                            let t = Instant::now();
                            to_b.send(i).map_err(|_| ())?;
                            from_b.recv_timeout(deadline.saturating_duration_since(Instant::now())).map_err(|_| ())?;
                            if i % keep == 0 {
                                lat.push(t.elapsed().as_secs_f64() * 1e6);
                            }
                        }
                        Ok::<_, ()>((t0.elapsed(), lat, Switches::this_thread().since(before)))
                    })
                    .map_err(|_| ())?;
                // Dropping A's channel ends (when A returns) unblocks B; B's timeout ends it otherwise.
                let ra = a.join().map_err(|_| ())?;
                let sb = b.join().map_err(|_| ())??;
                let (total, latencies_us, sa) = ra?;
                Ok(Exchange { total, latencies_us, switches: sa + sb })
            }
        }
    })
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
    /// Median round trip in µs for a mechanism and placement.
    pub fn median(&self, mechanism: Mechanism, placement: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.mechanism == mechanism && r.placement == placement).map(|r| r.round_trip_us.median)
    }
}

impl Report for PingPongReport {
    fn figures(&self) -> Vec<Figure> {
        let mut bars = Figure::bars(
            "Is a round trip between two threads cheaper on one CPU or on two?",
            "placement of the two threads",
            "µs per round trip (median, p25–p75)",
        );
        for r in &self.rows {
            let s = &r.round_trip_us;
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
        for r in self.rows.iter().filter(|r| Some(r.mechanism) == mech) {
            hist = hist.samples(&r.placement, r.latencies_us.clone());
        }
        hist = hist.legend(crate::lab::Legend::UpperRight);
        vec![bars.legend(crate::lab::Legend::UpperLeft), hist]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Ping-pong round trips",
            &["mechanism", "placement", "median µs", "p25–p75 µs", "voluntary switches / trip", "involuntary / trip"],
        );
        for r in &self.rows {
            t.row(vec![
                r.mechanism.to_string(),
                r.placement.clone(),
                fmt_num(r.round_trip_us.median),
                format!("{}–{}", fmt_num(r.round_trip_us.p25), fmt_num(r.round_trip_us.p75)),
                fmt_num(r.voluntary_per_round_trip),
                fmt_num(r.involuntary_per_round_trip),
            ]);
        }
        t.note(format!(
            "{} round trips per sample, {} samples; switches counted for both threads over all samples.",
            self.params.round_trips, self.params.samples
        ));
        let (a, b) = (self.params.cpu_a, self.params.cpu_b);
        let siblings = crate::lab::machine::smt_siblings(a).contains(&b);
        t.note(format!(
            "same CPU = CPU {a}; two CPUs = CPU {a} and CPU {b} ({}).",
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
        assert_eq!(r.figures().len(), 2);
    }
}
