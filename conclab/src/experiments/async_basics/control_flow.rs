//! What `.await` does to control flow: k sleeps awaited one after another take the sum of
//! their durations; joined (or spawned, then awaited) they take the longest; raced with
//! select, the shortest — and the others are dropped unfinished. All on one thread.

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::compare;
use crate::lab::noise::mark_busy;
use crate::lab::rt::{Rt, ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style,
    Table, check_choices, check_list, check_range, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

crate::choices! {
    /// How the k sleeps are awaited.
    pub enum Flow {
        /// `for d in durations { sleep(d).await }`: each starts when the one before ended.
        Sequential = "sequential",
        /// `join_all(durations.map(sleep)).await`: all in one task, polled together.
        Join = "join_all",
        /// `tokio::spawn` each sleep, then await the handles in order: the tasks run meanwhile.
        Spawn = "spawn",
        /// `select_all(..).await`: the first to finish wins; the others are dropped (cancelled).
        Select = "select_all",
    }
}

impl Flow {
    /// What the wall time should be, in words.
    pub fn rule(self) -> &'static str {
        match self {
            Flow::Sequential => "the sum of the sleeps",
            Flow::Join | Flow::Spawn => "the longest sleep",
            Flow::Select => "the shortest sleep",
        }
    }
}

/// Parameters of [`await_flow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwaitFlow {
    /// Numbers of sleeps k: at most 8 counts, each 1..=64.
    pub sleeps: Vec<usize>,
    /// The shortest sleep, in ms: 1..=1000. Sleep i (from 0) lasts `sleep_ms + i × step_ms`.
    pub sleep_ms: u64,
    /// How much longer each next sleep is, in ms: 0..=1000 (0: all equal, so the longest
    /// and the shortest are the same).
    pub step_ms: u64,
    /// Ways to await them, any of "sequential", "join_all", "spawn", "select_all".
    pub ways: Vec<Flow>,
    /// Timed samples per point (after one warm-up): 1..=21.
    pub samples: usize,
}

impl Default for AwaitFlow {
    fn default() -> Self {
        AwaitFlow { sleeps: vec![1, 2, 4, 8, 16], sleep_ms: 5, step_ms: 5, ways: Flow::ALL.to_vec(), samples: 3 }
    }
}

impl AwaitFlow {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("sleeps", &self.sleeps, 8, 1..=64)?;
        check_range("sleep_ms", self.sleep_ms, 1..=1000)?;
        check_range("step_ms", self.step_ms, 0..=1000)?;
        check_choices("ways", &self.ways)?;
        check_range("samples", self.samples, 1..=21)?;
        check_estimate("sleeps × sleep_ms, step_ms × samples", self.estimate())
    }

    /// The sleeps' durations for `k` sleeps, in ms.
    pub fn durations(&self, k: usize) -> Vec<u64> {
        (0..k as u64).map(|i| self.sleep_ms + i * self.step_ms).collect()
    }

    /// The predicted wall time of `k` sleeps awaited `way`, in ms.
    pub fn predicted(&self, way: Flow, k: usize) -> f64 {
        let d = self.durations(k);
        let v = match way {
            Flow::Sequential => d.iter().sum(),
            Flow::Join | Flow::Spawn => d.iter().copied().max().unwrap_or(0),
            Flow::Select => d.iter().copied().min().unwrap_or(0),
        };
        v as f64
    }

    /// The run time: every point's prediction plus about 1 ms per sleep (the timer
    /// rounds up to the next millisecond), over warm-up and samples.
    pub fn estimate(&self) -> Duration {
        let mut ms = 0.0;
        for &k in &self.sleeps {
            for &w in &self.ways {
                ms += self.predicted(w, k) + 1.0 + k as f64;
            }
        }
        Duration::from_secs_f64(ms * (self.samples + 1) as f64 / 1e3)
    }
}

/// One way at one k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwaitFlowRow {
    pub way: Flow,
    /// Sleeps awaited.
    pub k: usize,
    /// Wall time of the whole await, in ms, over the samples.
    pub millis: Stats,
    /// What [`Flow::rule`] predicts, in ms.
    pub predicted_ms: f64,
}

impl AwaitFlowRow {
    /// Median − predicted, in ms: the timer's rounding, waking and polling.
    pub fn overhead_ms(&self) -> f64 {
        self.millis.median - self.predicted_ms
    }
}

/// Result of [`await_flow`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AwaitFlowReport {
    pub params: AwaitFlow,
    pub rows: Vec<AwaitFlowRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

/// Awaits k `tokio::time::sleep`s of `sleep_ms, sleep_ms + step_ms, …` in each of the
/// [`Flow`] ways, on a current-thread runtime (one thread: concurrency without
/// parallelism), and times the whole await.
pub fn await_flow(p: &AwaitFlow) -> Result<AwaitFlowReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut progress = Progress::new("await-flow", p.ways.len() * p.sleeps.len());
    let mut rows = Vec::new();
    for &way in &p.ways {
        for &k in &p.sleeps {
            let durations = p.durations(k);
            // Generous: the series' own time four times over, and 10 s.
            let limit = Duration::from_millis(4 * (p.predicted(way, k) as u64 + k as u64 + 5)) * (p.samples as u32 + 1)
                + Duration::from_secs(10);
            let stats = sampling
                .time_async(&Rt::current().timeout(limit), move || awaited(way, durations.clone()))
                .map_err(|e| RunError::new(format!("{way} with {k} sleeps"), e))?;
            rows.push(AwaitFlowRow { way, k, millis: stats.scaled(1e3), predicted_ms: p.predicted(way, k) });
            progress.step()?;
        }
    }
    Ok(AwaitFlowReport { params: p.clone(), rows, load: probe.finish() })
}

/// The sleeps of `durations` (ms) awaited `way`.
pub async fn awaited(way: Flow, durations: Vec<u64>) {
    match way {
        Flow::Sequential => {
            for d in durations {
                tokio::time::sleep(ms(d)).await;
            }
        }
        Flow::Join => {
            futures::future::join_all(durations.into_iter().map(|d| tokio::time::sleep(ms(d)))).await;
        }
        Flow::Spawn => {
            let handles: Vec<_> = durations.into_iter().map(|d| tokio::spawn(tokio::time::sleep(ms(d)))).collect();
            for h in handles {
                let _ = h.await;
            }
        }
        Flow::Select => {
            let sleeps = durations.into_iter().map(|d| Box::pin(tokio::time::sleep(ms(d))));
            // The losers come back unfinished and are dropped here: that cancels them.
            let (_first, _index, losers) = futures::future::select_all(sleeps).await;
            drop(losers);
        }
    }
}

impl AwaitFlowReport {
    pub fn row(&self, way: Flow, k: usize) -> Option<&AwaitFlowRow> {
        self.rows.iter().find(|r| r.way == way && r.k == k)
    }

    fn max_k(&self) -> usize {
        self.params.sleeps.iter().copied().max().unwrap_or(1)
    }
}

impl Report for AwaitFlowReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let k = self.max_k();
        for &way in &self.params.ways {
            let Some(r) = self.row(way, k) else { continue };
            let over = r.overhead_ms();
            let mut text = format!(
                "{way}, {k} sleeps: {} ms (p25–p75 {}) against {} ms predicted ({}): {}{} ms",
                fmt_num(r.millis.median),
                r.millis.quartile_range(),
                fmt_num(r.predicted_ms),
                way.rule(),
                if over >= 0.0 { "+" } else { "" },
                fmt_num(over)
            );
            if way == Flow::Sequential && k > 1 {
                text += &format!(
                    ", {} ms per .await (each sleep's deadline is rounded up to tokio's next 1 ms tick, then the task wakes)",
                    fmt_num(over / k as f64)
                );
            }
            if way == Flow::Select && k > 1 {
                text += &format!("; the other {} sleeps were dropped unfinished", k - 1);
            }
            let near = over.abs() <= (0.25 * r.predicted_ms).max(3.0);
            out.push(if near { Finding::clear(text) } else { Finding::unclear(text) });
        }
        if let (Some(s), Some(j)) = (self.row(Flow::Sequential, k), self.row(Flow::Join, k))
            && k > 1
        {
            out.push(compare(&format!("{k} sleeps awaited one after another"), &s.millis, "joined", &j.millis, " ms"));
        }
        if self.params.step_ms == 0 {
            out.push(Finding::note(
                "step_ms = 0: every sleep is equally long, so the longest and the shortest coincide (join and select \
                 predict the same time)",
            ));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let p = &self.params;
        let mut f = Figure::lines(
            "k sleeps: awaited one after another they take the sum, joined the longest, raced the shortest",
            &format!("sleeps k (sleep i lasts {} + {} × i ms)", p.sleep_ms, p.step_ms),
            "wall time of the whole await (ms, log scale); band: p25–p75; dashed: predicted",
        )
        .log_y();
        // One legend entry for the three predictions (same name, same dashed grey line).
        let predicted = "predicted: sum, longest, shortest (top to bottom)";
        for way in [Flow::Sequential, Flow::Join, Flow::Select] {
            if p.ways.iter().any(|w| w.rule() == way.rule()) {
                let pts = p.sleeps.iter().map(|&k| Point::new(k as f64, p.predicted(way, k))).collect();
                f = f.series(Series::new(predicted, Style::Ideal, pts));
            }
        }
        for &way in &p.ways {
            let pts =
                self.rows.iter().filter(|r| r.way == way).map(|r| Point::quartiles(r.k as f64, &r.millis)).collect();
            f = f.series(Series::new(way.name(), Style::Measured, pts));
        }
        let coincide = |a: Flow, b: Flow| {
            p.sleeps.iter().all(|&k| match (self.row(a, k), self.row(b, k)) {
                (Some(x), Some(y)) => (x.millis.median / y.millis.median - 1.0).abs() < 0.05,
                _ => false,
            })
        };
        // A line drawn later covers an earlier one that took the same time (with step_ms = 0,
        // select_all covers both join_all and spawn): say which, per covering line.
        let mut hidden: Vec<(Flow, Vec<&str>)> = Vec::new();
        for (i, &a) in p.ways.iter().enumerate() {
            if let Some(&b) = p.ways[i + 1..].iter().rev().find(|&&b| coincide(a, b)) {
                match hidden.iter_mut().find(|h| h.0 == b) {
                    Some(h) => h.1.push(a.name()),
                    None => hidden.push((b, vec![a.name()])),
                }
            }
        }
        for (b, under) in hidden {
            let lines = if under.len() == 1 { "line" } else { "lines" };
            let under = under.join(" and ");
            f = f.note(format!(
                "{under} and {} took the same time here: the {} line hides the {under} {lines} under it.",
                b.name(),
                b.name()
            ));
        }
        let caption = format!("{} · one current-thread runtime (a single thread)", f.caption);
        vec![mark_busy(f.caption(caption), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "k awaited sleeps: measured vs predicted",
            &["way", "k", "median ms", "p25–p75 ms", "predicted ms", "predicted as", "over ms"],
        );
        for r in &self.rows {
            t.row(vec![
                r.way.name().into(),
                r.k.to_string(),
                fmt_num(r.millis.median),
                r.millis.quartile_range(),
                fmt_num(r.predicted_ms),
                r.way.rule().into(),
                fmt_num(r.overhead_ms()),
            ]);
        }
        t.note(format!(
            "Sleep i lasts {} + {} × i ms; {} samples per point after a warm-up; current-thread runtime.",
            self.params.sleep_ms, self.params.step_ms, self.params.samples
        ));
        t
    }
}

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "await-flow",
        "04-async",
        "k awaited sleeps one after another vs join_all / spawn vs select_all: wall time against sum / max / min",
        await_flow,
    )]
}

crate::impl_params!(AwaitFlow);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_refused() {
        assert!(await_flow(&AwaitFlow { sleeps: vec![0], ..Default::default() }).is_err());
        assert!(await_flow(&AwaitFlow { sleep_ms: 1_000_000_000, ..Default::default() }).is_err());
        assert!(await_flow(&AwaitFlow { ways: vec![], ..Default::default() }).is_err());
        let e = AwaitFlow { sleeps: vec![64], sleep_ms: 1000, step_ms: 1000, ..Default::default() }.validate();
        assert!(e.unwrap_err().to_string().contains("estimated"));
        assert!(AwaitFlow::default().validate().is_ok());
    }

    #[test]
    fn predictions_are_sum_max_and_min() {
        let p = AwaitFlow { sleep_ms: 5, step_ms: 5, ..Default::default() };
        assert_eq!(p.durations(3), vec![5, 10, 15]);
        assert_eq!(p.predicted(Flow::Sequential, 3), 30.0);
        assert_eq!(p.predicted(Flow::Join, 3), 15.0);
        assert_eq!(p.predicted(Flow::Spawn, 3), 15.0);
        assert_eq!(p.predicted(Flow::Select, 3), 5.0);
    }

    #[test]
    fn sequential_takes_the_sum_and_select_the_shortest() {
        let p = AwaitFlow { sleeps: vec![1, 8], sleep_ms: 10, step_ms: 10, samples: 1, ..Default::default() };
        let r = await_flow(&p).unwrap();
        assert_eq!(r.rows.len(), 8);
        // 8 sleeps of 10..80 ms: 360 ms one after another, 80 ms joined, 10 ms raced.
        // A timer never fires early: these lower bounds hold on any machine, however busy.
        let (s, j, x) =
            (r.row(Flow::Sequential, 8).unwrap(), r.row(Flow::Join, 8).unwrap(), r.row(Flow::Select, 8).unwrap());
        assert!(s.millis.min >= 360.0 && j.millis.min >= 80.0 && x.millis.min >= 10.0, "{:?}", r.rows);
        assert!(r.findings().len() >= 5);
        assert!(r.figure().to_svg().contains("<svg"));
    }

    #[test]
    fn equal_sleeps_say_that_the_select_line_covers_the_others() {
        // step_ms = 0: join_all, spawn and select_all all take one 300 ms sleep, so the
        // select_all line, drawn last, covers both; 5 % is 15 ms of scheduling slack, and
        // medians of 3 ride out a CPU hog's occasional late wake-up.
        let p = AwaitFlow { sleeps: vec![1, 2], sleep_ms: 300, step_ms: 0, samples: 3, ..Default::default() };
        let notes = await_flow(&p).unwrap().figure().notes;
        assert!(
            notes.iter().any(|n| n.contains("the select_all line hides the join_all and spawn lines")),
            "{notes:?}"
        );
    }
}
