//! Concurrency vs parallelism: the same CPU-bound tasks interleaved on one CPU, then
//! spread over all CPUs, traced as a timeline of who ran where and when.

use crate::lab::os::current_cpu;
use crate::lab::together::run_together;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Report, RunError, Stats, Table, check_cpu, check_range,
    fmt_num, pin_current_thread, usable_cpus,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Parameters of [`timeline`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeline {
    /// CPU-bound tasks, one OS thread each: 1..=16.
    pub tasks: usize,
    /// CPU time each task needs, in milliseconds: 1..=500.
    pub work_ms: u64,
    /// The CPU all tasks are pinned to in the one-CPU run.
    pub cpu: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline { tasks: 4, work_ms: 40, cpu: usable_cpus()[0] }
    }
}

impl Timeline {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("tasks", self.tasks, 1..=16)?;
        check_range("work_ms", self.work_ms, 1..=500)?;
        check_cpu("cpu", self.cpu)
    }
}

/// A stretch of time during which one task ran without a break on one CPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    pub task: usize,
    pub cpu: i64,
    /// Milliseconds since the run started.
    pub start_ms: f64,
    pub end_ms: f64,
}

/// One run of all tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// "1 CPU" or "all CPUs".
    pub mode: String,
    /// From the first task starting to the last finishing.
    pub wall_ms: f64,
    pub slices: Vec<Slice>,
}

impl Run {
    /// Distinct CPUs that ran any task.
    pub fn cpus_used(&self) -> usize {
        let mut c: Vec<i64> = self.slices.iter().map(|s| s.cpu).collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    }

    /// Times a task continued on a different CPU than its previous slice.
    pub fn migrations(&self) -> usize {
        let tasks = self.slices.iter().map(|s| s.task).max().map_or(0, |m| m + 1);
        (0..tasks)
            .map(|t| {
                let cpus: Vec<i64> = self.slices.iter().filter(|s| s.task == t).map(|s| s.cpu).collect();
                cpus.windows(2).filter(|w| w[0] != w[1]).count()
            })
            .sum()
    }

    /// Median length of a slice, in ms.
    pub fn median_slice_ms(&self) -> f64 {
        let v: Vec<f64> = self.slices.iter().map(|s| s.end_ms - s.start_ms).collect();
        crate::lab::Stats::from_samples(&v).map_or(0.0, |s| s.median)
    }

    /// How long tasks waited between two of their own slices (in ms): the scheduling
    /// latency a runnable task sees. Empty when no task was ever switched out.
    pub fn waits_ms(&self) -> Vec<f64> {
        let tasks = self.slices.iter().map(|s| s.task).max().map_or(0, |m| m + 1);
        let mut out = Vec::new();
        for t in 0..tasks {
            let mine: Vec<&Slice> = self.slices.iter().filter(|s| s.task == t).collect();
            out.extend(mine.windows(2).map(|w| (w[1].start_ms - w[0].end_ms).max(0.0)));
        }
        out
    }

    /// Median of [`Run::waits_ms`], if any task waited.
    pub fn median_wait_ms(&self) -> Option<f64> {
        Stats::from_samples(&self.waits_ms()).map(|s| s.median)
    }
}

/// The kernel's timer tick in ms (1000 / CONFIG_HZ), read from the kernel's build
/// configuration (`/boot/config-<release>` or `/proc/config.gz`); `None` where neither
/// is readable.
pub fn timer_tick_ms() -> Option<f64> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let text = std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok().or_else(|| {
        let out = std::process::Command::new("gzip")
            .args(["-dc", "/proc/config.gz"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        String::from_utf8(out.stdout).ok()
    })?;
    let hz: f64 = text.lines().find_map(|l| l.strip_prefix("CONFIG_HZ="))?.trim().parse().ok()?;
    (hz > 0.0).then(|| 1000.0 / hz)
}

/// Result of [`timeline`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineReport {
    pub params: Timeline,
    pub one_cpu: Run,
    pub all_cpus: Run,
    /// The kernel's timer tick in ms, where it could be read ([`timer_tick_ms`]).
    pub tick_ms: Option<f64>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

impl TimelineReport {
    /// Wall time on one CPU divided by wall time on all CPUs.
    pub fn speedup(&self) -> f64 {
        self.one_cpu.wall_ms / self.all_cpus.wall_ms
    }
}

/// Runs `tasks` CPU-bound tasks of `work_ms` each twice: all pinned to one CPU (the OS
/// interleaves them: concurrency) and unpinned (the OS spreads them: parallelism).
/// Every task records when it ran and on which CPU, by checking the clock and
/// `sched_getcpu` every ~50 µs of work; a gap between checks means it was switched out.
pub fn timeline(p: &Timeline) -> Result<TimelineReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let per_ms = iters_per_ms();
    let one_cpu = run(p.tasks, p.work_ms * per_ms, per_ms, Some(p.cpu), "1 CPU")?;
    let all_cpus = run(p.tasks, p.work_ms * per_ms, per_ms, None, "all CPUs")?;
    Ok(TimelineReport { params: p.clone(), one_cpu, all_cpus, tick_ms: timer_tick_ms(), load: probe.finish() })
}

fn run(tasks: usize, iters: u64, per_ms: u64, pin: Option<usize>, mode: &str) -> Result<Run, RunError> {
    let chunk = (per_ms / 20).max(1); // about 50 µs of work between checks
    let nominal = Duration::from_micros(50);
    let prepare = |_| match pin {
        Some(cpu) if !pin_current_thread(cpu) => Err(format!("could not pin a thread to CPU {cpu}")),
        _ => Ok(()),
    };
    let done = run_together(tasks, prepare, |task| trace(task, iters, chunk, nominal))
        .map_err(|e| RunError::new("timeline", e))?;
    let start = done.start;
    let mut slices: Vec<(usize, i64, Instant, Instant)> = done.results.into_iter().flatten().collect();
    slices.sort_by_key(|s| s.2);
    let end = slices.iter().map(|s| s.3).max().unwrap_or(start);
    let ms = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1e3;
    Ok(Run {
        mode: mode.into(),
        wall_ms: ms(end),
        slices: slices
            .into_iter()
            .map(|(task, cpu, a, b)| Slice { task, cpu, start_ms: ms(a), end_ms: ms(b) })
            .collect(),
    })
}

/// Does `iters` of work in chunks and returns the stretches it ran uninterrupted.
fn trace(task: usize, iters: u64, chunk: u64, nominal: Duration) -> Vec<(usize, i64, Instant, Instant)> {
    let mut out = Vec::new();
    let mut cpu = current_cpu();
    let mut slice_start = Instant::now();
    let mut last = slice_start;
    let mut done = 0;
    while done < iters {
        let n = chunk.min(iters - done);
        busy(n, done);
        done += n;
        let now = Instant::now();
        let here = current_cpu();
        let descheduled = now - last > nominal * 4;
        if descheduled || here != cpu {
            // The task stopped running somewhere in (last, now): close the slice at
            // `last` and open a new one for the chunk that just ran.
            out.push((task, cpu, slice_start, last));
            slice_start = if descheduled { now - nominal.min(now - last) } else { last };
            cpu = here;
        }
        last = now;
    }
    out.push((task, cpu, slice_start, last));
    out.retain(|s| s.3 > s.2);
    out
}

impl Report for TimelineReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (one, all) = (&self.one_cpu, &self.all_cpus);
        let tasks = self.params.tasks;
        let work = tasks as f64 * self.params.work_ms as f64;
        let used = all.cpus_used();
        out.push(Finding::note(format!(
            "On 1 CPU the {tasks} task(s) finished after {} ms ({} ms of work in all); unpinned they ran on \
             {used} CPU(s) and finished after {} ms: {}× {} (one run each)",
            fmt_num(one.wall_ms),
            fmt_num(work),
            fmt_num(all.wall_ms),
            fmt_num(if self.speedup() >= 1.0 { self.speedup() } else { 1.0 / self.speedup() }),
            if self.speedup() >= 1.0 { "faster" } else { "slower" }
        )));
        if tasks > 1 && one.slices.len() > tasks {
            let slice = one.median_slice_ms();
            let tick = match self.tick_ms {
                Some(t) => format!(
                    "; the timer tick here is {} ms (CONFIG_HZ={}), so a median slice is {} ticks",
                    fmt_num(t),
                    fmt_num(1000.0 / t),
                    fmt_num(slice / t)
                ),
                None => String::new(),
            };
            out.push(Finding::note(format!(
                "On 1 CPU the tasks took turns in {} slices of median {} ms{tick}",
                one.slices.len(),
                fmt_num(slice)
            )));
            if let Some(wait) = one.median_wait_ms() {
                let expected = (tasks - 1) as f64 * slice;
                let why = if wait > 1.5 * expected {
                    " — longer: other threads of the machine took turns on that CPU as well"
                } else {
                    ""
                };
                out.push(Finding::note(format!(
                    "Between two of its turns a task waited a median {} ms (the other {} tasks' slices: about {} ms){why}. \
                     That wait is the scheduling latency; it grows with the number of tasks, the slice does not",
                    fmt_num(wait),
                    tasks - 1,
                    fmt_num(expected)
                )));
            }
        }
        if used <= 1 && tasks > 1 && (self.speedup() > 1.2 || self.speedup() < 1.0 / 1.2) {
            out.push(Finding::note(
                "Both runs used one CPU, so the difference in wall time is not parallelism: other programs \
                 took a different share of the CPU in each run",
            ));
        }
        if used > 1 {
            out.push(Finding::note(format!(
                "Unpinned: {} migration(s) — a task continuing on another CPU than before",
                all.migrations()
            )));
        } else if tasks > 1 && usable_cpus().len() > 1 {
            out.push(Finding::note(
                "Unpinned, all tasks still ran on one CPU: the scheduler did not spread them (was another CPU busy?)",
            ));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let used = self.all_cpus.cpus_used();
        let title = if used > 1 && self.params.tasks > 1 {
            format!(
                "{} tasks take turns on 1 CPU; unpinned they ran on {used} CPUs at once ({}× faster)",
                self.params.tasks,
                fmt_num(self.speedup())
            )
        } else {
            format!("{} task(s) on 1 CPU vs unpinned: only {used} CPU was used, so no parallelism", self.params.tasks)
        };
        let mut f = Figure::timeline(&title, "time since the run started (ms)", "");
        for run in [&self.one_cpu, &self.all_cpus] {
            for task in 0..self.params.tasks {
                let lane = format!("{}: task {task}", run.mode);
                for s in run.slices.iter().filter(|s| s.task == task) {
                    f = f.span(&lane, &format!("CPU {}", s.cpu), s.start_ms, s.end_ms);
                }
            }
        }
        f = f.size(760, 160 + 26 * 2 * self.params.tasks as u32);
        vec![super::mark_busy(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Concurrency (1 CPU) vs parallelism (all CPUs)",
            &[
                "run",
                "wall time (ms)",
                "CPUs used",
                "slices",
                "median slice (ms)",
                "median wait between turns (ms)",
                "migrations",
            ],
        );
        for r in [&self.one_cpu, &self.all_cpus] {
            t.row(vec![
                r.mode.clone(),
                fmt_num(r.wall_ms),
                r.cpus_used().to_string(),
                r.slices.len().to_string(),
                fmt_num(r.median_slice_ms()),
                r.median_wait_ms().map_or("–".into(), fmt_num),
                r.migrations().to_string(),
            ]);
        }
        t.note(format!(
            "{} tasks × {} ms of CPU work each; speedup from 1 CPU to all: {}×.",
            self.params.tasks,
            self.params.work_ms,
            fmt_num(self.speedup())
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        assert!(timeline(&Timeline { tasks: 0, ..Default::default() }).is_err());
        assert!(timeline(&Timeline { work_ms: 10_000, ..Default::default() }).is_err());
        assert!(timeline(&Timeline { cpu: 100_000, ..Default::default() }).is_err());
    }

    #[test]
    fn pinned_run_uses_one_cpu_and_slices_do_not_overlap() {
        let r = timeline(&Timeline { tasks: 3, work_ms: 15, ..Default::default() }).unwrap();
        assert_eq!(r.one_cpu.cpus_used(), 1);
        // On one CPU at most one task runs at a time. A slice's ends are clock reads
        // around the work, and a task can be switched out just before its read, so
        // neighbouring slices may overlap a little; on one CPU the overlaps stay a small
        // share of the run (two threads truly running together would overlap all along).
        let s = &r.one_cpu.slices;
        let overlap: f64 =
            s.windows(2).filter(|w| w[0].task != w[1].task).map(|w| (w[0].end_ms - w[1].start_ms).max(0.0)).sum();
        assert!(overlap < 0.25 * r.one_cpu.wall_ms, "{overlap} ms of overlap in {} ms", r.one_cpu.wall_ms);
        // Every task ran, and for about its CPU time in total.
        for task in 0..3 {
            let busy: f64 = s.iter().filter(|x| x.task == task).map(|x| x.end_ms - x.start_ms).sum();
            assert!(busy > 0.0, "task {task} never ran");
        }
        assert!(r.one_cpu.wall_ms >= 3.0 * 15.0 * 0.5, "{}", r.one_cpu.wall_ms);
        assert_eq!(r.figures().len(), 1);
        assert_eq!(r.table().rows.len(), 2);
    }
}
