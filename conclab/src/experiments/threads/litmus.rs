//! Litmus tests: tiny two-thread programs run many times, counting which outcomes the
//! hardware and compiler really produce under each memory ordering.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::{change_words, count_in, count_of, group, separated};
use crate::lab::rng::Rng;
use crate::lab::wait::Stalled;
use crate::lab::wait::spin_until;
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Stats, Table, check_choices, check_range,
    fmt_num,
};
use crossbeam::utils::CachePadded;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

/// Parameters of [`litmus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Litmus {
    /// Trials per run of the store-buffering test: 1_000..=2_000_000 (and the run-time
    /// estimate of all parameters together at most two minutes).
    pub trials: usize,
    /// Runs per ordering (the figure shows the median and quartiles over runs): 1..=51.
    pub runs: usize,
    /// Orderings to test, any of [`LitmusOrdering`]: "relaxed", "acq_rel", "seq_cst", "fence".
    pub orderings: Vec<LitmusOrdering>,
    /// Random delay before thread A's two operations, up to this many loop iterations
    /// (a fraction of a nanosecond each; B waits up to an eighth of it): 0..=100_000.
    /// A opens each round and B only sees it a cache-line hand-off later, so without a
    /// delay A nearly always finishes first and the two threads' operations rarely overlap.
    pub jitter: u32,
    /// Also run the message-passing test (data, then a flag) per ordering.
    pub message_passing: bool,
}

impl Default for Litmus {
    fn default() -> Self {
        Litmus {
            trials: 200_000,
            runs: 5,
            orderings: LitmusOrdering::ALL.to_vec(),
            jitter: 2000,
            message_passing: true,
        }
    }
}

crate::choices! {
    /// The orderings [`litmus`] knows.
    pub enum LitmusOrdering {
        /// `Relaxed` stores and loads.
        Relaxed = "relaxed",
        /// `Release` stores, `Acquire` loads.
        AcqRel = "acq_rel",
        /// `SeqCst` stores and loads.
        SeqCst = "seq_cst",
        /// `Relaxed` accesses with a fence between them (`fence(SeqCst)` in store buffering,
        /// `Release`/`Acquire` fences in message passing).
        Fence = "fence",
    }
}

/// Fewer message-passing observations than this (per ordering, all runs) are too few to
/// say anything about stale reads.
pub const MIN_MP_OBSERVATIONS: u64 = 1_000;

/// Outcome names of the store-buffering test: what thread A read of `y`, and B of `x`.
pub const OUTCOMES: [&str; 4] = ["a=0, b=0", "a=0, b=1", "a=1, b=0", "a=1, b=1"];

impl Litmus {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("trials", self.trials, 1_000..=2_000_000)?;
        check_range("runs", self.runs, 1..=51)?;
        check_choices("orderings", &self.orderings)?;
        check_range("jitter", self.jitter, 0..=100_000)?;
        // Measured on a 2-core VM: about 0.5 µs per trial plus 1.5 ns per jitter step
        // (3.5 µs at the default jitter); message passing adds about as much again.
        let per_trial_us = self.per_trial_us();
        let trials = (self.trials * self.runs * self.orderings.len()) as f64;
        let passes = if self.message_passing { 1.5 } else { 1.0 };
        check_estimate(
            "trials × runs × orderings × jitter",
            Duration::from_secs_f64(trials * per_trial_us * passes / 1e6),
        )
    }

    /// Estimated µs per store-buffering trial on a quiet machine.
    fn per_trial_us(&self) -> f64 {
        0.5 + 0.0015 * self.jitter as f64
    }
}

/// How an ordering is named in figures and tables.
pub fn kind_label(kind: LitmusOrdering) -> &'static str {
    match kind {
        LitmusOrdering::Relaxed => "Relaxed",
        LitmusOrdering::AcqRel => "Release / Acquire",
        LitmusOrdering::SeqCst => "SeqCst",
        LitmusOrdering::Fence => "Relaxed + fence(SeqCst)",
    }
}

/// How an ordering is named for the message-passing test (its fences differ).
pub fn mp_label(kind: LitmusOrdering) -> &'static str {
    match kind {
        LitmusOrdering::Relaxed => "Relaxed",
        LitmusOrdering::AcqRel => "Release store / Acquire load",
        LitmusOrdering::SeqCst => "SeqCst",
        LitmusOrdering::Fence => "Relaxed + fence(Release) / fence(Acquire)",
    }
}

/// Store-buffering results of one ordering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SbRow {
    pub ordering: LitmusOrdering,
    /// Counts of each outcome (in [`OUTCOMES`] order), one array per run.
    pub counts: Vec<[u64; 4]>,
    /// Each outcome's share of a run's trials (%), summarised over runs. Shares, not
    /// counts: a run stopped early at its time limit did fewer trials than the others.
    pub outcome_stats: Vec<Stats>,
}

impl SbRow {
    /// Reordered outcomes (a=0, b=0) over all runs.
    pub fn reordered(&self) -> u64 {
        self.counts.iter().map(|c| c[0]).sum()
    }
}

/// Message-passing results of one ordering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MpRow {
    pub ordering: LitmusOrdering,
    /// Times the reader saw a new flag value, over all runs (the two threads start
    /// together, so the reader sees the writer at work; fewer than
    /// [`MIN_MP_OBSERVATIONS`] are too few to tell).
    pub observations: u64,
    /// Of those, times the data it read next was older than the flag promised.
    pub stale: u64,
}

/// Result of [`litmus`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LitmusReport {
    pub params: Litmus,
    pub sb: Vec<SbRow>,
    pub mp: Vec<MpRow>,
    /// The CPU architecture these ran on (`x86_64`, `aarch64`, …).
    pub arch: String,
    pub load: Load,
}

/// Runs two litmus tests on two threads for each ordering.
///
/// **Store buffering**: `x = y = 0`; thread A stores `x = 1` then reads `y`, thread B
/// stores `y = 1` then reads `x`. In any interleaving of the four operations at least one
/// thread reads a 1, so `a=0, b=0` is impossible under sequential consistency — yet a CPU
/// with a store buffer (every x86) produces it when each load runs before the other
/// thread's store has left its buffer. Only `SeqCst` (or a `SeqCst` fence between the two)
/// forbids it. The threads stay alive for all trials and meet on a shared round counter,
/// so a trial costs two cache-line hand-offs, not two thread spawns.
///
/// **Message passing**: A writes data then raises a flag; B waits for the flag then reads
/// the data. With Release/Acquire B always sees the data; with Relaxed it may not — on
/// ARM or POWER, never on x86, whose stores leave in program order.
pub fn litmus(p: &Litmus) -> Result<LitmusReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("litmus", p.orderings.len());
    // A run stops early at `soft` (a busy machine can make every trial wait for a time
    // slice: the report then counts the trials done) and fails only past `limit`.
    let soft = Duration::from_secs_f64((3.0 * p.trials as f64 * p.per_trial_us() / 1e6).max(2.0));
    let limit = soft + Duration::from_secs(30) + Duration::from_micros(p.trials as u64 * 50);
    let stalled = |_| {
        RunError::new(
            format!("litmus ({} trials)", p.trials),
            format!("a run did not finish within {} s", limit.as_secs()),
        )
    };
    let mut sb = Vec::new();
    let mut mp = Vec::new();
    for kind in LitmusOrdering::ALL.iter().copied().filter(|k| p.orderings.contains(k)) {
        let mut counts = Vec::new();
        for run in 0..p.runs {
            counts.push(
                store_buffering(kind, p, run as u64, Instant::now() + soft, Instant::now() + limit).map_err(stalled)?,
            );
        }
        let share = |c: &[u64; 4], o: usize| 100.0 * c[o] as f64 / c.iter().sum::<u64>().max(1) as f64;
        let outcome_stats =
            (0..4).map(|o| Stats::of(&counts.iter().map(|c| share(c, o)).collect::<Vec<_>>())).collect();
        sb.push(SbRow { ordering: kind, counts, outcome_stats });
        progress.step()?;
        if p.message_passing {
            let (mut observations, mut stale) = (0, 0);
            for _ in 0..p.runs {
                let (o, s) =
                    message_passing(kind, p.trials, Instant::now() + soft, Instant::now() + limit).map_err(stalled)?;
                observations += o;
                stale += s;
            }
            mp.push(MpRow { ordering: kind, observations, stale });
        }
    }
    Ok(LitmusReport { params: p.clone(), sb, mp, arch: std::env::consts::ARCH.to_string(), load: probe.finish() })
}

/// A thread's half of the store-buffering test: store 1 to `mine`, then read `other`.
#[inline(always)]
fn store_then_load(kind: LitmusOrdering, mine: &AtomicU32, other: &AtomicU32) -> u32 {
    match kind {
        LitmusOrdering::Relaxed => {
            mine.store(1, Ordering::Relaxed);
            other.load(Ordering::Relaxed)
        }
        LitmusOrdering::AcqRel => {
            mine.store(1, Ordering::Release);
            other.load(Ordering::Acquire)
        }
        LitmusOrdering::SeqCst => {
            mine.store(1, Ordering::SeqCst);
            other.load(Ordering::SeqCst)
        }
        LitmusOrdering::Fence => {
            mine.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            other.load(Ordering::Relaxed)
        }
    }
}

#[inline(always)]
fn delay(rng: &mut Rng, jitter: u32) {
    if jitter > 0 {
        for i in 0..rng.below(jitter as u64 + 1) {
            std::hint::black_box(i);
        }
    }
}

/// Round number that tells thread B the run stopped early.
const STOP: u64 = u64::MAX;

/// Up to `p.trials` store-buffering trials; counts per outcome. Stops early (fewer trials)
/// once `soft` passes; `Err` past `deadline`.
fn store_buffering(
    kind: LitmusOrdering,
    p: &Litmus,
    seed: u64,
    soft: Instant,
    deadline: Instant,
) -> Result<[u64; 4], Stalled> {
    let (trials, jitter) = (p.trials, p.jitter);
    let x = CachePadded::new(AtomicU32::new(0));
    let y = CachePadded::new(AtomicU32::new(0));
    let round = CachePadded::new(AtomicU64::new(0));
    let b_done = CachePadded::new(AtomicU64::new(0));
    let (x, y, round, b_done) = (&*x, &*y, &*round, &*b_done);
    std::thread::scope(|s| {
        let a = s.spawn(move || {
            let mut rng = Rng::new(2 * seed + 1);
            let mut seen = Vec::with_capacity(trials);
            for r in 1..=trials as u64 {
                // B has finished round r-1: reset, then open round r (or stop).
                spin_until(deadline, || b_done.load(Ordering::Acquire) == r - 1)?;
                if r % 256 == 0 && Instant::now() >= soft {
                    round.store(STOP, Ordering::Release);
                    break;
                }
                x.store(0, Ordering::Relaxed);
                y.store(0, Ordering::Relaxed);
                round.store(r, Ordering::Release);
                delay(&mut rng, jitter);
                seen.push(store_then_load(kind, x, y) as u8);
            }
            Ok::<_, Stalled>(seen)
        });
        let b = s.spawn(move || {
            let mut rng = Rng::new(2 * seed + 2);
            let mut seen = Vec::with_capacity(trials);
            for r in 1..=trials as u64 {
                let mut stop = false;
                spin_until(deadline, || {
                    let v = round.load(Ordering::Acquire);
                    stop = v == STOP;
                    v == r || stop
                })?;
                if stop {
                    break;
                }
                delay(&mut rng, jitter / 8);
                seen.push(store_then_load(kind, y, x) as u8);
                b_done.store(r, Ordering::Release);
            }
            Ok::<_, Stalled>(seen)
        });
        // Each side gives up by itself at the deadline, so both joins return.
        let (ra, rb) = (a.join().map_err(|_| Stalled)??, b.join().map_err(|_| Stalled)??);
        let mut counts = [0u64; 4];
        for (a, b) in ra.iter().zip(&rb) {
            counts[(*a as usize) * 2 + *b as usize] += 1;
        }
        Ok(counts)
    })
}

/// The writer publishes 1, 2, 3, … (data, then flag); the reader checks the data each
/// time it sees a new flag value. Both threads first meet at a start line, and the writer
/// goes on until it has published `trials` values *and* the reader has seen a tenth of
/// that many (or `soft` passes), so a reader that started late still observes the
/// writer at work. Returns (observations, stale reads).
fn message_passing(
    kind: LitmusOrdering,
    trials: usize,
    soft: Instant,
    deadline: Instant,
) -> Result<(u64, u64), Stalled> {
    let data = CachePadded::new(AtomicU64::new(0));
    let flag = CachePadded::new(AtomicU64::new(0));
    let ready = CachePadded::new(AtomicU32::new(0));
    let seen = CachePadded::new(AtomicU64::new(0));
    let end = CachePadded::new(AtomicU64::new(0));
    let (data, flag, ready, seen, end) = (&*data, &*flag, &*ready, &*seen, &*end);
    let (n, want) = (trials as u64, (trials as u64 / 10).max(100));
    // Each side announces itself and waits for the other (bounded).
    let start_line = move || {
        ready.fetch_add(1, Ordering::AcqRel);
        spin_until(deadline, || ready.load(Ordering::Acquire) == 2)
    };
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            start_line()?;
            let mut r = 0u64;
            loop {
                r += 1;
                data.store(r, Ordering::Relaxed);
                match kind {
                    LitmusOrdering::Relaxed => flag.store(r, Ordering::Relaxed),
                    LitmusOrdering::AcqRel => flag.store(r, Ordering::Release),
                    LitmusOrdering::SeqCst => flag.store(r, Ordering::SeqCst),
                    LitmusOrdering::Fence => {
                        fence(Ordering::Release);
                        flag.store(r, Ordering::Relaxed);
                    }
                }
                if r.is_multiple_of(64) && ((r >= n && seen.load(Ordering::Relaxed) >= want) || Instant::now() >= soft)
                {
                    break;
                }
            }
            end.store(r, Ordering::Release);
            Ok::<(), Stalled>(())
        });
        let reader = s.spawn(move || {
            start_line()?;
            let (mut last, mut observations, mut stale) = (0u64, 0u64, 0u64);
            let mut spins = 0u32;
            loop {
                let f = match kind {
                    LitmusOrdering::Relaxed => flag.load(Ordering::Relaxed),
                    LitmusOrdering::AcqRel => flag.load(Ordering::Acquire),
                    LitmusOrdering::SeqCst => flag.load(Ordering::SeqCst),
                    LitmusOrdering::Fence => {
                        let f = flag.load(Ordering::Relaxed);
                        fence(Ordering::Acquire);
                        f
                    }
                };
                let d = data.load(Ordering::Relaxed);
                if f != last {
                    observations += 1;
                    stale += u64::from(d < f);
                    last = f;
                    if observations.is_multiple_of(16) {
                        seen.store(observations, Ordering::Relaxed);
                    }
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) {
                    let e = end.load(Ordering::Acquire);
                    if e != 0 && last == e {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(Stalled);
                    }
                }
            }
            Ok((observations, stale))
        });
        // Both give up by themselves at the deadline, so both joins return.
        writer.join().map_err(|_| Stalled)??;
        reader.join().map_err(|_| Stalled)?
    })
}

impl LitmusReport {
    /// Median share (%) of a run's trials that ended a=0, b=0, for `ordering`.
    pub fn reordered_median(&self, ordering: LitmusOrdering) -> Option<f64> {
        self.sb.iter().find(|r| r.ordering == ordering).map(|r| r.outcome_stats[0].median)
    }

    fn sb_row(&self, ordering: LitmusOrdering) -> Option<&SbRow> {
        self.sb.iter().find(|r| r.ordering == ordering)
    }

    /// Share (0..=1) of all trials of `ordering` with outcome `o`.
    fn share(&self, ordering: LitmusOrdering, o: usize) -> Option<f64> {
        let r = self.sb_row(ordering)?;
        let total: u64 = r.counts.iter().flat_map(|c| c.iter()).sum();
        Some(r.counts.iter().map(|c| c[o]).sum::<u64>() as f64 / total.max(1) as f64)
    }
}

impl Report for LitmusReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let planned = (self.params.trials * self.params.runs) as u64;
        let mut short = Vec::new();
        for r in &self.sb {
            let trials: u64 = r.counts.iter().flat_map(|c| c.iter()).sum();
            out.push(count_of(&format!("a=0, b=0 with {}", kind_label(r.ordering)), r.reordered(), trials));
            if trials < planned {
                short.push(format!("{} {} of {}", kind_label(r.ordering), group(trials), group(planned)));
            }
        }
        if !short.is_empty() {
            out.push(Finding::note(format!(
                "Runs stopped early at their time limit (each trial waits for both threads to be running: a busy \
                 machine slows that down): trials done {}",
                short.join(", ")
            )));
        }
        // SeqCst does not only forbid a=0, b=0: each store is visible before its thread's
        // load, so the other outcomes shift towards a=1, b=1.
        if let (Some(sc), Some(rx), Some(a), Some(b)) = (
            self.sb_row(LitmusOrdering::SeqCst),
            self.sb_row(LitmusOrdering::Relaxed),
            self.share(LitmusOrdering::SeqCst, 3),
            self.share(LitmusOrdering::Relaxed, 3),
        ) {
            // The shares of all trials (runs differ in length); how sure, from the runs' own shares.
            let how = change_words(
                a / b.max(1e-12),
                0.1,
                "about the same as",
                |x| format!("{x}× as often as"),
                |x| format!("{x}× less often than"),
            );
            let text = format!(
                "a=1, b=1 under SeqCst: {} % of the trials, {how} under Relaxed ({} %)",
                fmt_num(100.0 * a),
                fmt_num(100.0 * b)
            );
            let (sa, sb) = (&sc.outcome_stats[3], &rx.outcome_stats[3]);
            out.push(if separated(sa, sb) || (a / b.max(1e-12) - 1.0).abs() < 0.1 {
                Finding::clear(text)
            } else {
                Finding::unclear(text)
            });
        }
        let enough = |m: &&MpRow| m.observations >= MIN_MP_OBSERVATIONS;
        if !self.mp.is_empty() && self.mp.iter().all(|m| m.stale == 0 && m.observations >= MIN_MP_OBSERVATIONS) {
            // The usual x86 result in one sentence: no stale read with any ordering.
            let least = self.mp.iter().map(|m| m.observations).min().unwrap_or(1);
            out.push(Finding::note(format!(
                "Message passing: no stale read with any ordering (new flag values seen — {}); at 95 % confidence fewer than {} per \
                 million with each",
                self.mp
                    .iter()
                    .map(|m| format!("{}: 0 in {}", mp_label(m.ordering), group(m.observations)))
                    .collect::<Vec<_>>()
                    .join("; "),
                fmt_num(3e6 / least as f64)
            )));
        } else {
            for m in &self.mp {
                if enough(&m) {
                    out.push(count_in(
                        &format!("Message passing with {}: stale data after a new flag", mp_label(m.ordering)),
                        m.stale,
                        m.observations,
                        "new flag values seen",
                    ));
                } else {
                    out.push(Finding::note(format!(
                        "Message passing with {}: only {} new flag values seen (fewer than {}): too few to tell",
                        mp_label(m.ordering),
                        m.observations,
                        MIN_MP_OBSERVATIONS
                    )));
                }
            }
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::bars(
            "Store buffering: does the 'impossible' a=0, b=0 happen?",
            "what the two loads read (a: thread A's read of y, b: thread B's read of x)",
            &format!(
                "share of a run's trials (%; runs of up to {} trials; median, p25–p75)",
                fmt_num(self.params.trials as f64)
            ),
        )
        .log_y();
        // Outcomes on the x axis, orderings as colours: the reordered outcome comes first,
        // and the rare ones sit at both ends, clear of the legend.
        for (o, name) in OUTCOMES.iter().enumerate() {
            let group = if o == 0 { format!("{name} (reordered)") } else { name.to_string() };
            for r in &self.sb {
                let s = &r.outcome_stats[o];
                f = f.bar(&group, kind_label(r.ordering), s.median, Some((s.p25, s.p75)));
            }
        }
        if self.sb.iter().any(|r| r.outcome_stats.iter().any(|s| s.median <= 0.0)) {
            let caption = format!("no dot: the median run saw none (totals in the table) · log scale · {}", f.caption);
            f = f.caption(caption);
        }
        let never: Vec<&str> = self.sb.iter().filter(|r| r.reordered() == 0).map(|r| kind_label(r.ordering)).collect();
        if !never.is_empty() {
            f = f.note(format!("a=0, b=0 never happened with: {}", never.join(", ")));
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperRight), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Litmus tests",
            &[
                "ordering",
                "SB a=0,b=0 (reordered)",
                "a=0,b=1",
                "a=1,b=0",
                "a=1,b=1",
                "reordered per million",
                "message passing: stale / observed",
            ],
        );
        for r in &self.sb {
            let total: u64 = r.counts.iter().flat_map(|c| c.iter()).sum();
            let sum = |o: usize| r.counts.iter().map(|c| c[o]).sum::<u64>().to_string();
            let mp = self
                .mp
                .iter()
                .find(|m| m.ordering == r.ordering)
                .map_or("–".into(), |m| format!("{} / {}", m.stale, m.observations));
            let label = if self.mp.is_empty() {
                kind_label(r.ordering).to_string()
            } else {
                match r.ordering {
                    LitmusOrdering::Fence => "Relaxed + fences (see the note)".into(),
                    LitmusOrdering::AcqRel => "Release / Acquire".into(),
                    o => kind_label(o).into(),
                }
            };
            t.row(vec![
                label,
                sum(0),
                sum(1),
                sum(2),
                sum(3),
                fmt_num(r.reordered() as f64 * 1e6 / total.max(1) as f64),
                mp,
            ]);
        }
        t.note(format!(
            "{} runs × {} trials per ordering on {}; counts summed over runs. Message passing: stale = the reader saw \
             a new flag but read older data; observed = new flag values it saw.",
            self.params.runs, self.params.trials, self.arch
        ));
        if !self.mp.is_empty() {
            t.note(
                "Fences: store buffering puts a fence(SeqCst) between the store and the load in both threads; message \
                 passing puts a fence(Release) before the flag store and a fence(Acquire) after the flag load.",
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        for p in [
            Litmus { trials: 10, ..Default::default() },
            Litmus { runs: 0, ..Default::default() },
            Litmus { orderings: vec![], ..Default::default() },
            Litmus { jitter: 1 << 30, ..Default::default() },
        ] {
            assert!(litmus(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_ordering_names_the_choices() {
        let e =
            crate::lab::params_from_pairs::<Litmus>("litmus", &[("orderings".into(), "consume".into())]).unwrap_err();
        assert!(e.to_string().contains("relaxed, acq_rel, seq_cst, fence"), "{e}");
    }

    #[test]
    fn every_trial_has_one_outcome_and_seq_cst_never_reorders() {
        let p = Litmus { trials: 3_000, runs: 2, ..Default::default() };
        let r = litmus(&p).unwrap();
        assert_eq!(r.sb.len(), 4);
        for row in &r.sb {
            for c in &row.counts {
                // Every trial counted once; a run may stop early on a busy machine.
                let n = c.iter().sum::<u64>();
                assert!(n > 0 && n <= 3_000, "{n}");
            }
        }
        for k in [LitmusOrdering::SeqCst, LitmusOrdering::Fence] {
            assert_eq!(r.sb.iter().find(|x| x.ordering == k).unwrap().reordered(), 0, "{k}");
        }
        for m in &r.mp {
            assert!(m.observations > 0);
            if m.ordering != LitmusOrdering::Relaxed {
                assert_eq!(m.stale, 0, "{m:?}");
            }
        }
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
