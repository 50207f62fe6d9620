//! What a closure's captures cost when a thread starts: borrowing (scoped), moving,
//! cloning an `Arc`, or cloning the data itself.

use crate::lab::findings::{compare, separated};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Series, Stats, Style, Table,
    check_choices, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parameters of [`capture_cost`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureCost {
    /// Sizes of the `Vec<u8>` the thread reads, in KiB: each 1..=65536, at most 10 sizes.
    pub sizes_kib: Vec<usize>,
    /// Threads spawned and joined per sample: 1..=1000.
    pub spawns: usize,
    /// Timed samples per point (after one warm-up): 1..=51. In each sample every capture
    /// pattern runs its `spawns` in one block, in an order that rotates from sample to
    /// sample, so a slow moment hits all patterns alike and one pattern's big copies do
    /// not slow down the next pattern's spawns.
    pub samples: usize,
    /// Capture patterns, any of [`CaptureMode`]: "borrow", "move", "arc", "clone".
    pub modes: Vec<CaptureMode>,
}

impl Default for CaptureCost {
    fn default() -> Self {
        CaptureCost { sizes_kib: vec![1, 64, 1024, 16384], spawns: 20, samples: 7, modes: CaptureMode::ALL.to_vec() }
    }
}

crate::choices! {
    /// The capture patterns [`capture_cost`] knows.
    pub enum CaptureMode {
        /// A scoped thread borrowing the `Vec` (`&Vec`).
        Borrow = "borrow",
        /// The `Vec` itself moved into the thread.
        Move = "move",
        /// An `Arc<Vec>` clone moved in (a reference-count increment).
        Arc = "arc",
        /// A deep copy of the `Vec` moved in.
        Clone = "clone",
    }
}

impl CaptureCost {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("sizes_kib", &self.sizes_kib, 10, 1..=65536)?;
        check_range("spawns", self.spawns, 1..=1000)?;
        check_range("samples", self.samples, 1..=51)?;
        check_choices("modes", &self.modes)
    }
}

/// How a capture pattern is named in figures and tables.
pub fn mode_label(mode: CaptureMode) -> &'static str {
    match mode {
        CaptureMode::Borrow => "borrow: thread::scope + &v",
        CaptureMode::Move => "move v",
        CaptureMode::Arc => "move Arc::clone(&v)",
        CaptureMode::Clone => "move v.clone()",
    }
}

/// One capture pattern at one size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureRow {
    pub mode: CaptureMode,
    pub size_kib: usize,
    /// Microseconds per spawn + join, including what the capture needs.
    pub micros: Stats,
}

/// Result of [`capture_cost`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureCostReport {
    pub params: CaptureCost,
    pub rows: Vec<CaptureRow>,
    pub load: Load,
}

/// Spawns and joins `spawns` threads per sample, each reading the first and last byte of
/// a `Vec<u8>` of each size, captured four ways. The clock covers the spawn, the join
/// and whatever the capture needs (a deep copy for "clone", a reference-count increment
/// for "arc"); preparing a fresh `Vec` for "move" and freeing every copy happen outside
/// it (the threads hand their `Vec` back through `join`).
pub fn capture_cost(p: &CaptureCost) -> Result<CaptureCostReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let modes: Vec<CaptureMode> = CaptureMode::ALL.iter().copied().filter(|m| p.modes.contains(m)).collect();
    let mut rows = Vec::new();
    for &kib in &p.sizes_kib {
        let n = kib * 1024;
        let shared: Arc<Vec<u8>> = Arc::new(vec![1u8; n]);
        // The Vec that "move" hands to each thread and gets back through `join`: made once,
        // so no big allocation sits between two timed spawns.
        let mut own: Option<Vec<u8>> = Some(vec![1u8; n]);
        let mut micros: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for sample in 0..=p.samples {
            // Each pattern runs its spawns as one block; the order rotates per sample.
            for j in 0..modes.len() {
                let k = (j + sample) % modes.len();
                let mut total = Duration::ZERO;
                for _ in 0..p.spawns {
                    total += spawn_once(modes[k], &shared, &mut own)
                        .map_err(|e| RunError::new(format!("spawning {} threads", p.spawns), e))?;
                }
                if sample > 0 {
                    // sample 0 is the warm-up
                    micros[k].push(total.as_secs_f64() * 1e6 / p.spawns as f64);
                }
            }
        }
        for (k, &mode) in modes.iter().enumerate() {
            rows.push(CaptureRow { mode, size_kib: kib, micros: Stats::of(&micros[k]) });
        }
    }
    Ok(CaptureCostReport { params: p.clone(), rows, load: probe.finish() })
}

/// One spawn + join with the capture `mode`; the time it took (outside: drops of copies).
/// `own` is the Vec "move" gives away; the thread hands it back through `join`.
fn spawn_once(mode: CaptureMode, shared: &Arc<Vec<u8>>, own: &mut Option<Vec<u8>>) -> std::io::Result<Duration> {
    let touch = |v: &[u8]| u32::from(v[0]) + u32::from(v[v.len() - 1]);
    let b = std::thread::Builder::new;
    match mode {
        CaptureMode::Borrow => {
            let v: &Vec<u8> = shared;
            let t = Instant::now();
            std::thread::scope(|s| b().spawn_scoped(s, || touch(v)).map(|h| h.join()))?.ok();
            Ok(t.elapsed())
        }
        CaptureMode::Move => {
            let v = own.take().unwrap_or_else(|| (**shared).clone());
            let t = Instant::now();
            let back = b().spawn(move || {
                std::hint::black_box(touch(&v));
                v
            })?;
            let v = back.join();
            let d = t.elapsed();
            *own = v.ok();
            Ok(d)
        }
        CaptureMode::Arc => {
            let t = Instant::now();
            let a = Arc::clone(shared);
            let h = b().spawn(move || touch(&a))?;
            let _ = h.join();
            Ok(t.elapsed())
        }
        CaptureMode::Clone => {
            let t = Instant::now();
            let c: Vec<u8> = (**shared).clone();
            let h = b().spawn(move || {
                std::hint::black_box(touch(&c));
                c
            })?;
            let c = h.join();
            let d = t.elapsed();
            drop(c);
            Ok(d)
        }
    }
}

impl CaptureCostReport {
    /// Median µs per spawn for `mode` at `size_kib`.
    pub fn median(&self, mode: CaptureMode, size_kib: usize) -> Option<f64> {
        self.rows.iter().find(|r| r.mode == mode && r.size_kib == size_kib).map(|r| r.micros.median)
    }

    fn row(&self, mode: CaptureMode, size_kib: usize) -> Option<&CaptureRow> {
        self.rows.iter().find(|r| r.mode == mode && r.size_kib == size_kib)
    }
}

impl Report for CaptureCostReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (Some(&small), Some(&big)) = (self.params.sizes_kib.iter().min(), self.params.sizes_kib.iter().max())
        else {
            return out;
        };
        // The thread alone: the cheapest of the patterns that copy nothing, at that size.
        let base = [CaptureMode::Borrow, CaptureMode::Move, CaptureMode::Arc]
            .iter()
            .filter_map(|m| self.row(*m, big))
            .min_by(|a, b| a.micros.median.total_cmp(&b.micros.median));
        if let (Some(clone), Some(base)) = (self.row(CaptureMode::Clone, big), base) {
            let mut f = compare(
                &format!("At {big} KiB a deep clone"),
                &clone.micros,
                mode_label(base.mode),
                &base.micros,
                " µs per spawn",
            );
            f.text.push_str(&format!(
                ": the copy costs about {} thread starts",
                fmt_num(((clone.micros.median - base.micros.median) / base.micros.median).max(0.0))
            ));
            out.push(f);
        }
        // Do the cheap patterns grow with the size? Compare each with itself, small vs big.
        if big > small {
            let mut flat = Vec::new();
            for mode in [CaptureMode::Borrow, CaptureMode::Move, CaptureMode::Arc] {
                let (Some(a), Some(b)) = (self.row(mode, small), self.row(mode, big)) else { continue };
                let ratio = b.micros.median / a.micros.median.max(1e-9);
                let text = format!(
                    "{}: {} µs per spawn at {big} KiB vs {} µs at {small} KiB ({}×)",
                    mode_label(mode),
                    fmt_num(b.micros.median),
                    fmt_num(a.micros.median),
                    fmt_num(ratio)
                );
                if ratio > 1.2 && separated(&a.micros, &b.micros) {
                    out.push(Finding::clear(format!(
                        "{text}: something besides the capture slowed these spawns (it copies nothing)"
                    )));
                } else if ratio > 1.2 {
                    out.push(Finding::unclear(format!("{text}: a rise, but its samples scatter")));
                } else {
                    flat.push(format!("{} {}×", mode_label(mode), fmt_num(ratio)));
                }
            }
            if !flat.is_empty() {
                out.push(Finding::note(format!(
                    "From {small} to {big} KiB these stayed flat (median at {big} ÷ at {small}): {}",
                    flat.join(", ")
                )));
            }
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "Handing a Vec to a new thread: which captures cost more than the thread?",
            "size of the Vec (KiB)",
            "µs per spawn + join (median, p25–p75)",
        )
        .log_x()
        .log_y();
        for &mode in CaptureMode::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.mode == mode)
                .map(|r| Point::quartiles(r.size_kib as f64, &r.micros))
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(mode_label(mode), Style::Measured, pts));
            }
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperLeft), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Capture cost", &["capture", "Vec size", "median µs per spawn", "p25–p75 µs"]);
        for r in &self.rows {
            t.row(vec![
                mode_label(r.mode).into(),
                format!("{} KiB", r.size_kib),
                fmt_num(r.micros.median),
                r.micros.quartile_range(),
            ]);
        }
        t.note(format!(
            "{} spawns per sample and pattern, {} samples. The moved Vec is made once and handed back through join; \
             freeing the clones is outside the clock.",
            self.params.spawns, self.params.samples
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
            CaptureCost { sizes_kib: vec![0], ..Default::default() },
            CaptureCost { sizes_kib: vec![1 << 20], ..Default::default() },
            CaptureCost { spawns: 0, ..Default::default() },
            CaptureCost { modes: vec![], ..Default::default() },
        ] {
            assert!(capture_cost(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_mode_names_the_choices() {
        let e = crate::lab::params_from_pairs::<CaptureCost>("capture-cost", &[("modes".into(), "copy".into())])
            .unwrap_err();
        assert!(e.to_string().contains("borrow") && e.to_string().contains("clone"), "{e}");
    }

    #[test]
    fn cloning_a_big_vec_costs_more_than_sharing_it() {
        // 32 MiB: a deep clone copies it (milliseconds), an Arc clone bumps a count (well
        // under the tens of µs a spawn costs): over 100× apart, so a busy machine cannot
        // swap them.
        let p = CaptureCost { sizes_kib: vec![1, 32768], spawns: 5, samples: 3, ..Default::default() };
        let r = capture_cost(&p).unwrap();
        assert_eq!(r.rows.len(), 8);
        assert!(r.median(CaptureMode::Clone, 32768).unwrap() > r.median(CaptureMode::Arc, 32768).unwrap());
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
