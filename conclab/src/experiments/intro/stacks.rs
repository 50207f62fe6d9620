//! Separate stacks, one heap: where each thread's locals live, and what `Builder::stack_size` changes.

use crate::lab::{Figure, Finding, LabError, ParamError, Report, RunError, Stats, Table, check_range, fmt_num};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

/// Parameters of [`stacks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stacks {
    /// Threads alive at the same time in each run: 2..=32.
    pub threads: usize,
    /// Stack size for the second run, via `std::thread::Builder::stack_size`, in KiB: 64..=65536.
    pub stack_kib: usize,
}

impl Default for Stacks {
    fn default() -> Self {
        Stacks { threads: 6, stack_kib: 256 }
    }
}

/// What one thread saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackView {
    pub thread: usize,
    /// Address of a local variable (on this thread's stack).
    pub local: usize,
    /// Address of the shared heap allocation (the same for every thread).
    pub heap: usize,
}

/// One run: threads started with the same stack size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackRun {
    pub label: String,
    /// The requested stack size in KiB (`None`: the default, 2 MiB unless `RUST_MIN_STACK` says otherwise).
    pub stack_kib: Option<usize>,
    pub views: Vec<StackView>,
}

impl StackRun {
    /// Distances in KiB between neighbouring stacks (addresses sorted).
    pub fn spacings_kib(&self) -> Vec<f64> {
        let mut a: Vec<usize> = self.views.iter().map(|v| v.local).collect();
        a.sort_unstable();
        a.windows(2).map(|w| (w[1] - w[0]) as f64 / 1024.0).collect()
    }

    pub fn spacing(&self) -> Option<Stats> {
        Stats::from_samples(&self.spacings_kib())
    }
}

/// The stack size `std::thread::spawn` uses: `RUST_MIN_STACK` (bytes) if set, else 2 MiB.
pub fn default_stack_kib() -> usize {
    std::env::var("RUST_MIN_STACK").ok().and_then(|v| v.trim().parse::<usize>().ok()).map_or(2048, |b| b.div_ceil(1024))
}

/// Result of [`stacks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StacksReport {
    pub params: Stacks,
    pub runs: Vec<StackRun>,
}

impl Stacks {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("threads", self.threads, 2..=32)?;
        check_range("stack_kib", self.stack_kib, 64..=65536)?;
        Ok(())
    }
}

/// Starts `threads` threads three times — with the default stack size, with `stack_kib`,
/// and with the default again — keeps each batch alive together, and records where a
/// local of each lives and where the one shared heap allocation is. Neighbouring stacks
/// sit about one stack size (plus a guard page) apart; the heap address is the same for
/// all; the third batch shows whether the first batch's stacks were reused (glibc keeps
/// freed thread stacks in a cache instead of unmapping them).
pub fn stacks(p: &Stacks) -> Result<StacksReport, LabError> {
    p.validate()?;
    let heap = Arc::new(vec![0u8; 4096]);
    let mut runs = Vec::new();
    for (i, size) in [None, Some(p.stack_kib), None].into_iter().enumerate() {
        let views = batch(p.threads, size, &heap)
            .map_err(|e| RunError::new(format!("starting threads with a {} KiB stack", p.stack_kib), e))?;
        let label = match size {
            None if i == 0 => format!("default stack ({} KiB)", default_stack_kib()),
            None => format!("default again ({} KiB)", default_stack_kib()),
            Some(k) => format!("stack_size({k} KiB)"),
        };
        runs.push(StackRun { label, stack_kib: size, views });
    }
    Ok(StacksReport { params: p.clone(), runs })
}

fn batch(n: usize, kib: Option<usize>, heap: &Arc<Vec<u8>>) -> std::io::Result<Vec<StackView>> {
    // Each thread reports, then waits at a gate until every thread has reported, so all
    // stacks exist at once and none is reused. The wait is bounded, and the gate opens
    // on every path, so no thread is left behind even if a spawn fails.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    let mut error = None;
    for i in 0..n {
        let mut b = std::thread::Builder::new().name(format!("stack-{i}"));
        if let Some(k) = kib {
            b = b.stack_size(k * 1024);
        }
        let (gate, heap, tx) = (gate.clone(), heap.clone(), tx.clone());
        let spawned = b.spawn(move || {
            let local = i as u64;
            let at = std::hint::black_box(&local) as *const u64 as usize;
            let _ = tx.send(StackView { thread: i, local: at, heap: heap.as_ptr() as usize });
            let (open, cv) = &*gate;
            let guard = open.lock().unwrap_or_else(|e| e.into_inner());
            let _ = cv.wait_timeout_while(guard, Duration::from_secs(10), |open| !*open);
            std::hint::black_box(&local);
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let views: Vec<StackView> =
        (0..handles.len()).filter_map(|_| rx.recv_timeout(Duration::from_secs(10)).ok()).collect();
    *gate.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
    gate.1.notify_all();
    for h in handles {
        let _ = h.join();
    }
    match error {
        Some(e) => Err(e),
        None => Ok(views),
    }
}

impl StacksReport {
    /// How many stacks of the third batch (default size again) sat exactly where a stack
    /// of the first batch had been: reused, not newly mapped.
    pub fn reused(&self) -> Option<(usize, usize)> {
        let (first, again) = (self.runs.first()?, self.runs.get(2)?);
        // A local's address within a reused stack can differ by a few bytes between
        // runs; compare the 64 KiB-aligned region instead.
        let region = |a: usize| a >> 16;
        let before: Vec<usize> = first.views.iter().map(|v| region(v.local)).collect();
        Some((again.views.iter().filter(|v| before.contains(&region(v.local))).count(), again.views.len()))
    }
}

impl Report for StacksReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in self.runs.iter().take(2) {
            if let Some(s) = r.spacing() {
                let asked = r.stack_kib.unwrap_or_else(default_stack_kib);
                out.push(Finding::note(format!(
                    "{}: neighbouring stacks sat a median {} KiB apart ({} KiB more than the requested {asked} KiB; \
                     spread p25–p75 {}–{} KiB)",
                    r.label,
                    fmt_num(s.median),
                    fmt_num(s.median - asked as f64),
                    fmt_num(s.p25),
                    fmt_num(s.p75)
                )));
            }
        }
        let heaps: Vec<usize> = self.runs.iter().flat_map(|r| r.views.iter().map(|v| v.heap)).collect();
        let one_heap = heaps.windows(2).all(|w| w[0] == w[1]);
        out.push(Finding::note(format!(
            "The shared heap allocation had {} address in all {} threads",
            if one_heap { "one" } else { "more than one" },
            heaps.len()
        )));
        if let Some((k, n)) = self.reused() {
            out.push(Finding::note(if k > 0 {
                format!(
                    "Reuse: {k} of {n} stacks of the third batch (default size again) lay where stacks of the first \
                     batch had been — freed stacks were handed out again instead of newly mapped"
                )
            } else {
                format!(
                    "Reuse: none of the {n} stacks of the third batch lay where a stack of the first batch had been"
                )
            }));
        }
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::bars(
            "Each thread gets its own stack; they sit one stack size apart",
            "threads started with",
            "distance between neighbouring stacks (KiB)",
        );
        for r in &self.runs {
            if let Some(s) = r.spacing() {
                f = f.bar(&r.label, "measured", s.median, Some((s.p25, s.p75)));
            }
            if let Some(k) = r.stack_kib.or(Some(default_stack_kib())) {
                f = f.bar(&r.label, "requested size", k as f64, None);
            }
        }
        vec![
            f.legend(crate::lab::Legend::UpperRight)
                .note("Bars: median distance; error bars: p25–p75 (the kernel may place a stack far from the others)."),
        ]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Stack locals vs the shared heap", &["run", "thread", "stack local", "shared heap"]);
        for r in &self.runs {
            let mut v = r.views.clone();
            v.sort_by_key(|v| std::cmp::Reverse(v.local));
            for x in v {
                t.row(vec![r.label.clone(), x.thread.to_string(), format!("{:#x}", x.local), format!("{:#x}", x.heap)]);
            }
            if let Some(s) = r.spacing() {
                t.note(format!("{}: neighbouring stacks {} KiB apart (median).", r.label, fmt_num(s.median)));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_distinct_and_heap_is_shared() {
        assert!(stacks(&Stacks { threads: 1, ..Default::default() }).is_err());
        assert!(stacks(&Stacks { stack_kib: 1, ..Default::default() }).is_err());
        let r = stacks(&Stacks { threads: 4, stack_kib: 512 }).unwrap();
        assert_eq!(r.runs.len(), 3);
        assert!(r.reused().is_some());
        assert!(r.findings().len() >= 3);
        for run in &r.runs {
            let heaps: Vec<usize> = run.views.iter().map(|v| v.heap).collect();
            assert!(heaps.iter().all(|h| *h == heaps[0]));
            // Distinct stacks at least the requested size apart (glibc may place them
            // further apart, never closer).
            let min = run.spacings_kib().into_iter().fold(f64::INFINITY, f64::min);
            assert!(min >= run.stack_kib.unwrap_or(64) as f64 * 0.99, "{}: {min} KiB", run.label);
        }
    }
}
