//! Creation vs reuse: a new thread per work item against handing items to threads that
//! already exist (a rayon `ThreadPool` and the hand-built `primitives::ThreadPool`).

use crate::lab::budget::{Progress, check_estimate};
use crate::lab::findings::compare;
use crate::lab::rayon_pool::JoinedPool;
use crate::lab::work::{busy, iters_per_ms};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style,
    Table, check_choices, check_list, check_range, cores, fmt_num,
};
use crate::primitives::ThreadPool;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Parameters of [`pool_vs_spawn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolVsSpawn {
    /// CPU work per item, in nanoseconds: each 10..=10_000_000, at most 8 sizes.
    pub work_ns: Vec<u64>,
    /// Items per sample: 1..=100_000.
    pub items: usize,
    /// Threads of each pool: 1..=256.
    pub pool_threads: usize,
    /// Timed samples per point (after one warm-up): 1..=51.
    pub samples: usize,
    /// Methods, any of [`PoolMethod`]: "spawn", "rayon", "pool".
    pub methods: Vec<PoolMethod>,
}

impl Default for PoolVsSpawn {
    fn default() -> Self {
        PoolVsSpawn {
            work_ns: vec![100, 1_000, 10_000, 100_000],
            items: 500,
            pool_threads: cores(),
            samples: 5,
            methods: PoolMethod::ALL.to_vec(),
        }
    }
}

crate::choices! {
    /// The methods [`pool_vs_spawn`] knows.
    pub enum PoolMethod {
        /// A new thread per item (all spawned, then all joined).
        Spawn = "spawn",
        /// Spawns into a `rayon::ThreadPool`'s scope.
        Rayon = "rayon",
        /// `execute` on the hand-built `conclab::primitives::ThreadPool`.
        Pool = "pool",
    }
}

impl PoolVsSpawn {
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("work_ns", &self.work_ns, 8, 10..=10_000_000)?;
        check_range("items", self.items, 1..=100_000)?;
        check_range("pool_threads", self.pool_threads, 1..=256)?;
        check_range("samples", self.samples, 1..=51)?;
        check_choices("methods", &self.methods)?;
        // Per sample and work size: a spawn costs tens of µs (60 µs assumed) and every
        // method runs the items' work, counted here as if on one CPU.
        let spawns = if self.methods.contains(&PoolMethod::Spawn) { 60e-6 } else { 0.0 };
        let per_item: f64 =
            self.work_ns.iter().map(|&w| spawns + self.methods.len() as f64 * w as f64 * 1e-9).sum::<f64>();
        let seconds = (self.samples + 1) as f64 * self.items as f64 * per_item;
        check_estimate("items × work_ns × samples × methods", Duration::from_secs_f64(seconds))?;
        Ok(())
    }
}

/// How a method is named in figures and tables.
pub fn method_label(method: PoolMethod) -> &'static str {
    match method {
        PoolMethod::Spawn => "thread::spawn per item",
        PoolMethod::Rayon => "rayon ThreadPool (scope spawn)",
        PoolMethod::Pool => "hand-built ThreadPool (execute)",
    }
}

/// One method at one work size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolRow {
    pub method: PoolMethod,
    pub work_ns: u64,
    /// Wall time per item, microseconds.
    pub micros_per_item: Stats,
}

/// Result of [`pool_vs_spawn`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolVsSpawnReport {
    pub params: PoolVsSpawn,
    pub cores: usize,
    pub rows: Vec<PoolRow>,
    /// Microseconds to build and drop (join) each pool once: (method, µs).
    pub build_and_drop_us: Vec<(PoolMethod, f64)>,
    pub load: Load,
}

/// Runs `items` independent CPU-bound items of each size three ways and reports the wall
/// time per item: a new thread per item (all spawned, then all joined), spawns into a
/// rayon pool's scope, and `execute` on the hand-built pool. The pools are built once per
/// call, outside the clock (their build-and-drop cost is reported apart), and dropped —
/// with every worker joined — before the call returns.
pub fn pool_vs_spawn(p: &PoolVsSpawn) -> Result<PoolVsSpawnReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut progress = Progress::new("pool-vs-spawn", p.methods.len() * p.work_ns.len());
    let per_ns = iters_per_ms() as f64 / 1e6;
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let pool_err = |e: std::io::Error| RunError::new(format!("starting a pool of {} threads", p.pool_threads), e);
    let mut build_and_drop_us = Vec::new();
    let mut rows = Vec::new();
    for method in PoolMethod::ALL.iter().copied().filter(|m| p.methods.contains(m)) {
        let rayon_pool;
        let own_pool;
        match method {
            PoolMethod::Rayon => {
                let t = Instant::now();
                // Build and drop, waiting until the workers have exited (as the own pool's
                // drop joins them), so both build-and-drop costs mean the same thing.
                drop(JoinedPool::new(p.pool_threads).map_err(pool_err)?);
                build_and_drop_us.push((method, t.elapsed().as_secs_f64() * 1e6));
                rayon_pool = Some(JoinedPool::new(p.pool_threads).map_err(pool_err)?);
                own_pool = None;
            }
            PoolMethod::Pool => {
                let t = Instant::now();
                drop(ThreadPool::new(p.pool_threads).map_err(pool_err)?);
                build_and_drop_us.push((method, t.elapsed().as_secs_f64() * 1e6));
                own_pool = Some(ThreadPool::new(p.pool_threads).map_err(pool_err)?);
                rayon_pool = None;
            }
            PoolMethod::Spawn => {
                rayon_pool = None;
                own_pool = None;
            }
        }
        for &w in &p.work_ns {
            let iters = ((w as f64 * per_ns) as u64).max(1);
            let stats = sampling
                .try_measure(|| {
                    let t = Instant::now();
                    let r = match (&rayon_pool, &own_pool) {
                        (Some(pool), _) => {
                            pool.scope(|s| {
                                for i in 0..p.items {
                                    s.spawn(move |_| {
                                        busy(iters, i as u64);
                                    });
                                }
                            });
                            Ok(())
                        }
                        (_, Some(pool)) => run_on_pool(pool, p.items, iters),
                        _ => spawn_each(p.items, iters),
                    };
                    r.map(|()| t.elapsed())
                })
                .map_err(|e| RunError::new(format!("spawning a thread per item ({} items)", p.items), e))?;
            rows.push(PoolRow { method, work_ns: w, micros_per_item: stats.scaled(1e6 / p.items as f64) });
            progress.step()?;
        }
        drop(rayon_pool); // joins its workers
        drop(own_pool); // joins its workers
    }
    Ok(PoolVsSpawnReport { params: p.clone(), cores: cores(), rows, build_and_drop_us, load: probe.finish() })
}

/// A new thread per item. At most as many are alive at once as this process can hold
/// (see [`crate::lab::limits`]): past that, the oldest is joined before the next is
/// spawned, so a large `items` never exhausts the memory maps and aborts the process.
fn spawn_each(items: usize, iters: u64) -> Result<(), String> {
    let window = crate::lab::limits::Limits::current().thread_headroom().0.clamp(1, items.max(1));
    let mut alive = std::collections::VecDeque::with_capacity(window);
    let mut error = None;
    for i in 0..items {
        if alive.len() == window
            && let Some(h) = alive.pop_front()
        {
            let _ = std::thread::JoinHandle::join(h);
        }
        match std::thread::Builder::new().spawn(move || busy(iters, i as u64)) {
            Ok(h) => alive.push_back(h),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    for h in alive {
        let _ = h.join();
    }
    error.map_or(Ok(()), Err)
}

fn run_on_pool(pool: &ThreadPool, items: usize, iters: u64) -> Result<(), String> {
    let left = Arc::new(AtomicUsize::new(items));
    let (tx, rx) = mpsc::channel();
    for i in 0..items {
        let (left, tx) = (left.clone(), tx.clone());
        pool.execute(move || {
            busy(iters, i as u64);
            if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                let _ = tx.send(());
            }
        });
    }
    rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "the pool did not finish within 60 s".to_string())
}

impl PoolVsSpawnReport {
    /// Median µs per item for `method` at `work_ns`.
    pub fn median(&self, method: PoolMethod, work_ns: u64) -> Option<f64> {
        self.rows.iter().find(|r| r.method == method && r.work_ns == work_ns).map(|r| r.micros_per_item.median)
    }

    fn row(&self, method: PoolMethod, work_ns: u64) -> Option<&PoolRow> {
        self.rows.iter().find(|r| r.method == method && r.work_ns == work_ns)
    }

    /// The faster pool at `work_ns` (by median).
    fn best_pool(&self, work_ns: u64) -> Option<&PoolRow> {
        [PoolMethod::Rayon, PoolMethod::Pool]
            .iter()
            .filter_map(|m| self.row(*m, work_ns))
            .min_by(|a, b| a.micros_per_item.median.total_cmp(&b.micros_per_item.median))
    }

    /// The ideal wall time per item: the work spread over the pool's cores, no overhead.
    fn ideal_us(&self, work_ns: u64) -> f64 {
        work_ns as f64 / 1e3 / self.params.pool_threads.min(self.cores).max(1) as f64
    }
}

impl Report for PoolVsSpawnReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut sizes = self.params.work_ns.clone();
        sizes.sort_unstable();
        let (Some(&small), Some(&large)) = (sizes.first(), sizes.last()) else { return out };
        let us = |w: u64| format!("{} µs", fmt_num(w as f64 / 1e3));
        if let (Some(spawn), Some(pool)) = (self.row(PoolMethod::Spawn, small), self.best_pool(small)) {
            out.push(compare(
                &format!("At {} of work per item, a thread per item", us(small)),
                &spawn.micros_per_item,
                method_label(pool.method),
                &pool.micros_per_item,
                " µs per item",
            ));
        }
        // The predict question: at about 1 µs of work, how far from the ideal is each method?
        let near_1us = sizes.iter().copied().min_by_key(|w| w.abs_diff(1_000));
        if let Some(w) = near_1us {
            let parts: Vec<String> = PoolMethod::ALL
                .iter()
                .filter_map(|m| self.row(*m, w))
                .map(|r| {
                    format!("{} {}×", method_label(r.method), fmt_num(r.micros_per_item.median / self.ideal_us(w)))
                })
                .collect();
            if let Some(spawn) = self.row(PoolMethod::Spawn, w) {
                let share = 100.0 * self.ideal_us(w) / spawn.micros_per_item.median;
                out.push(Finding::note(format!(
                    "At {} of work per item, time per item ÷ the ideal (the dashed line): {}; with a thread per \
                     item the work was about {} % of the time",
                    us(w),
                    parts.join(", "),
                    fmt_num(share)
                )));
            }
        }
        if large > small
            && let (Some(spawn), Some(pool)) = (self.row(PoolMethod::Spawn, large), self.best_pool(large))
        {
            out.push(compare(
                &format!("At {} of work per item, a thread per item", us(large)),
                &spawn.micros_per_item,
                method_label(pool.method),
                &pool.micros_per_item,
                " µs per item",
            ));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "A new thread per item, or a pool: when does creation cost dominate?",
            "CPU work per item (µs)",
            "wall time per item (µs; median, p25–p75)",
        )
        .log_x()
        .log_y();
        let n = self.params.pool_threads.min(self.cores).max(1) as f64;
        let ideal: Vec<Point> =
            self.params.work_ns.iter().map(|w| Point::new(*w as f64 / 1e3, *w as f64 / 1e3 / n)).collect();
        f = f.series(Series::new(format!("ideal: work ÷ {n} cores, no overhead"), Style::Ideal, ideal));
        for &method in PoolMethod::ALL {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.method == method)
                .map(|r| {
                    let s = &r.micros_per_item;
                    Point::quartiles(r.work_ns as f64 / 1e3, s)
                })
                .collect();
            if !pts.is_empty() {
                f = f.series(Series::new(method_label(method), Style::Measured, pts));
            }
        }
        vec![super::mark_busy(f.legend(crate::lab::Legend::UpperLeft), &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Pool vs spawn", &["method", "work per item", "median µs per item", "p25–p75 µs"]);
        for r in &self.rows {
            t.row(vec![
                method_label(r.method).into(),
                format!("{} µs", fmt_num(r.work_ns as f64 / 1e3)),
                fmt_num(r.micros_per_item.median),
                r.micros_per_item.quartile_range(),
            ]);
        }
        for (m, us) in &self.build_and_drop_us {
            t.note(format!(
                "{}: building the pool and dropping it (its workers joined) once took {} µs.",
                method_label(*m),
                fmt_num(*us)
            ));
        }
        t.note(format!(
            "{} items per sample, {} samples, pools of {} threads on {} CPUs.",
            self.params.items, self.params.samples, self.params.pool_threads, self.cores
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
            PoolVsSpawn { work_ns: vec![1], ..Default::default() },
            PoolVsSpawn { items: 0, ..Default::default() },
            PoolVsSpawn { pool_threads: 0, ..Default::default() },
            PoolVsSpawn { methods: vec![], ..Default::default() },
            PoolVsSpawn { work_ns: vec![10_000_000], items: 100_000, ..Default::default() },
        ] {
            assert!(pool_vs_spawn(&p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn unknown_method_names_the_choices() {
        let e = crate::lab::params_from_pairs::<PoolVsSpawn>("pool-vs-spawn", &[("methods".into(), "fork".into())])
            .unwrap_err();
        assert!(e.to_string().contains("spawn, rayon, pool"), "{e}");
    }

    #[test]
    fn small_items_are_cheaper_on_a_pool() {
        let p =
            PoolVsSpawn { work_ns: vec![100, 10_000], items: 200, pool_threads: 2, samples: 3, ..Default::default() };
        let r = pool_vs_spawn(&p).unwrap();
        assert_eq!(r.rows.len(), 6);
        assert_eq!(r.build_and_drop_us.len(), 2);
        assert!(r.median(PoolMethod::Pool, 100).unwrap() < r.median(PoolMethod::Spawn, 100).unwrap());
        assert!(r.median(PoolMethod::Rayon, 100).unwrap() < r.median(PoolMethod::Spawn, 100).unwrap());
        assert!(r.figure().to_svg().contains("<svg"));
    }
}
