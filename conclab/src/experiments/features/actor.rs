//! Actors vs shared state: one service — a counter that clients add to and read —
//! served by an actor thread that owns it, or guarded by a `Mutex`.

use crate::lab::budget::{Progress, check_estimate, timed_runs};
use crate::lab::findings::change_words;
use crate::lab::findings::separated;
use crate::lab::together::{Run, batched, run_for, threads_error};
use crate::lab::{
    Figure, Finding, LabError, Load, LoadProbe, ParamError, Point, Report, Series, Stats, Style, Table, check_list,
    check_range, cores, fmt_num,
};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// Parameters of [`actor_vs_mutex`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActorVsMutex {
    /// Client threads: each 1..=64, at most 12 counts.
    pub clients: Vec<usize>,
    /// How long the clients send requests in each sample, in milliseconds: 10..=2000.
    pub duration_ms: u64,
    /// Timed samples per point (after one warm-up): 1..=31.
    pub samples: usize,
}

impl Default for ActorVsMutex {
    fn default() -> Self {
        ActorVsMutex {
            clients: crate::lab::machine::default_threads_within(cores(), 64, 12),
            duration_ms: 100,
            samples: 5,
        }
    }
}

/// One design at one client count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorRow {
    pub design: String,
    pub clients: usize,
    /// Thousand requests answered per second (all clients together), over the samples.
    pub kreq_per_s: Stats,
    /// Whether the final total equalled the requests made, in every sample.
    pub exact: bool,
}

impl ActorRow {
    /// Wall time divided by requests answered, in µs (1 / throughput): not the time one
    /// request takes — with `c` clients each one waits about `c` times this per request.
    pub fn wall_us_per_request(&self) -> f64 {
        1e3 / self.kreq_per_s.median.max(1e-12)
    }
}

/// Result of [`actor_vs_mutex`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorReport {
    pub params: ActorVsMutex,
    pub cores: usize,
    pub rows: Vec<ActorRow>,
    /// How busy the machine was while this ran.
    pub load: Load,
}

pub const DESIGNS: [&str; 2] = ["actor (owner thread + channel)", "Mutex<u64>"];

struct Request {
    add: u64,
    reply: mpsc::SyncSender<u64>,
}

impl ActorVsMutex {
    /// Checks every parameter; nothing has been started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_list("clients", &self.clients, 12, 1..=64)?;
        check_range("duration_ms", self.duration_ms, 10..=2000)?;
        check_range("samples", self.samples, 1..=31)?;
        let runs = DESIGNS.len() * self.clients.len() * (self.samples + 1);
        check_estimate("clients × (samples + 1) × 2 designs × duration_ms", timed_runs(runs, self.duration_ms))?;
        Ok(())
    }
}

/// Serves `clients` threads that each send requests "add 1 and return the new total" for
/// `duration_ms`, two ways: an **actor** — one thread owns the total and answers requests
/// arriving on a channel, replying on each client's own channel — and a shared
/// `Mutex<u64>`. Reports requests per second and checks the final total.
pub fn actor_vs_mutex(p: &ActorVsMutex) -> Result<ActorReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let duration = Duration::from_millis(p.duration_ms);
    let mut progress = Progress::new("actor vs mutex", DESIGNS.len() * p.clients.len());
    let mut rows = Vec::new();
    for design in DESIGNS {
        for &c in &p.clients {
            let mut exact = true;
            let mut rates = Vec::new();
            for i in 0..=p.samples {
                let (total, run) = if design == DESIGNS[0] { actor_run(c, duration) } else { mutex_run(c, duration) }
                    .map_err(threads_error(c))?;
                exact &= total == run.ops.iter().sum::<u64>();
                if i > 0 {
                    rates.push(run.mops() * 1e3);
                }
            }
            rows.push(ActorRow { design: design.into(), clients: c, kreq_per_s: Stats::of(&rates), exact });
            progress.step()?;
        }
    }
    Ok(ActorReport { params: p.clone(), cores: cores(), rows, load: probe.finish() })
}

fn actor_run(clients: usize, duration: Duration) -> Result<(u64, Run), String> {
    let (tx, rx) = mpsc::sync_channel::<Request>(64);
    std::thread::scope(|s| {
        let owner = std::thread::Builder::new()
            .spawn_scoped(s, move || {
                let mut total = 0u64;
                // Runs until every client's sender is gone; the timeout only guards a bug.
                while let Ok(req) = rx.recv_timeout(Duration::from_secs(30)) {
                    total += req.add;
                    let _ = req.reply.send(total);
                }
                total
            })
            .map_err(|e| format!("the OS refused the actor thread ({e})"))?;
        let run = run_for(clients, duration, |_, stop| {
            let tx = tx.clone();
            let (reply, answers) = mpsc::sync_channel::<u64>(1);
            let mut last = 0;
            let n = batched(stop, || {
                // A failed send or a missing answer shows as an inexact total.
                if tx.send(Request { add: 1, reply: reply.clone() }).is_ok()
                    && let Ok(v) = answers.recv_timeout(Duration::from_secs(30))
                {
                    last = v;
                }
            });
            std::hint::black_box(last);
            n
        });
        drop(tx);
        let total = owner.join().map_err(|_| "the actor thread panicked".to_string())?;
        Ok((total, run?))
    })
}

fn mutex_run(clients: usize, duration: Duration) -> Result<(u64, Run), String> {
    let total = Mutex::new(0u64);
    let run = run_for(clients, duration, |_, stop| {
        let mut last = 0;
        let n = batched(stop, || {
            let mut t = total.lock().unwrap_or_else(|e| e.into_inner());
            *t += 1;
            last = *t;
        });
        std::hint::black_box(last);
        n
    })?;
    Ok((total.into_inner().unwrap_or_else(|e| e.into_inner()), run))
}

impl ActorReport {
    fn row(&self, design: &str, clients: usize) -> Option<&ActorRow> {
        self.rows.iter().find(|r| r.design == design && r.clients == clients)
    }

    /// How the throughput of `design` changed from the fewest to the most clients.
    fn trend(&self, design: &str, name: &str) -> Option<Finding> {
        let lo = self.params.clients.iter().copied().min()?;
        let hi = self.params.clients.iter().copied().max()?;
        if lo == hi {
            return None;
        }
        let (a, b) = (self.row(design, lo)?, self.row(design, hi)?);
        let r = b.kreq_per_s.median / a.kreq_per_s.median.max(1e-12);
        let how = change_words(r, 0.1, "stayed about the same", |x| format!("rose {x}×"), |x| format!("fell {x}×"));
        let text = format!(
            "{name}: throughput {how} from {lo} to {hi} clients ({} → {} thousand requests/s)",
            fmt_num(a.kreq_per_s.median),
            fmt_num(b.kreq_per_s.median)
        );
        Some(if separated(&a.kreq_per_s, &b.kreq_per_s) || (r - 1.0).abs() < 0.1 {
            Finding::clear(text)
        } else {
            Finding::unclear(text)
        })
    }
}

impl Report for ActorReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Some(&c) = self.params.clients.iter().min()
            && let (Some(a), Some(m)) = (self.row(DESIGNS[0], c), self.row(DESIGNS[1], c))
        {
            let r = m.kreq_per_s.median / a.kreq_per_s.median.max(1e-12);
            let text = format!(
                "With {c} client{}: the actor answered {} thousand requests/s, the Mutex {} — {}× {} \
                 (wall time / requests: {} µs vs {} µs)",
                if c == 1 { "" } else { "s" },
                fmt_num(a.kreq_per_s.median),
                fmt_num(m.kreq_per_s.median),
                fmt_num(if r >= 1.0 { r } else { 1.0 / r }),
                if r >= 1.0 { "more through the Mutex" } else { "more through the actor" },
                fmt_num(a.wall_us_per_request()),
                fmt_num(m.wall_us_per_request())
            );
            out.push(if separated(&a.kreq_per_s, &m.kreq_per_s) {
                Finding::clear(text)
            } else {
                Finding::unclear(text)
            });
        }
        out.extend(self.trend(DESIGNS[0], "Actor"));
        out.extend(self.trend(DESIGNS[1], "Mutex"));
        let inexact: Vec<String> =
            self.rows.iter().filter(|r| !r.exact).map(|r| format!("{} at {}", r.design, r.clients)).collect();
        out.push(if inexact.is_empty() {
            Finding::note("Both designs kept an exact total in every run")
        } else {
            Finding::note(format!("Totals did NOT match for: {}", inexact.join(", ")))
        });
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "What does owning state in an actor cost, next to a Mutex?",
            "client threads",
            "thousand requests / s, all clients (median, p25–p75)",
        )
        .log_y()
        .legend(crate::lab::Legend::MiddleRight);
        for d in DESIGNS {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.design == d)
                .map(|r| Point::quartiles(r.clients as f64, &r.kreq_per_s))
                .collect();
            f = f.series(Series::new(d, Style::Measured, pts));
        }
        f = f.note(format!("{} ms of requests per sample, {} samples.", self.params.duration_ms, self.params.samples));
        vec![super::caption_with_load(f, &self.load)]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Actor vs Mutex",
            &["design", "clients", "k requests/s", "p25–p75", "wall time / requests (µs)", "exact total"],
        );
        for r in &self.rows {
            let k = &r.kreq_per_s;
            t.row(vec![
                r.design.clone(),
                r.clients.to_string(),
                fmt_num(k.median),
                k.quartile_range(),
                fmt_num(r.wall_us_per_request()),
                if r.exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!(
            "{} ms of requests per sample, {} samples. Wall time / requests is 1 / throughput, not the \
             time one request takes: with c clients each waits about c times that for its own answer.",
            self.params.duration_ms, self.params.samples
        ));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_designs_are_exact_and_validated() {
        let r = actor_vs_mutex(&ActorVsMutex { clients: vec![1, 3], duration_ms: 10, samples: 1 }).unwrap();
        assert_eq!(r.rows.len(), 4);
        assert!(r.rows.iter().all(|x| x.exact), "{:?}", r.rows);
        let f = r.findings();
        assert!(f[0].text.starts_with("With 1 client:"), "{f:?}");
        assert!(f.iter().any(|x| x.text.starts_with("Actor: throughput")), "{f:?}");
        assert!(f.last().unwrap().text.to_lowercase().contains("machine"), "{f:?}");
        assert!(actor_vs_mutex(&ActorVsMutex { clients: vec![0], ..Default::default() }).is_err());
        assert!(actor_vs_mutex(&ActorVsMutex { duration_ms: 1, ..Default::default() }).is_err());
    }
}
