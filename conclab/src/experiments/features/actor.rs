//! Actors vs shared state: one service — a counter that clients add to and read —
//! served by an actor thread that owns it, or guarded by a `Mutex`.

use crate::lab::together::run_together;
use crate::lab::{
    Figure, LabError, ParamError, Point, Report, RunError, Sampling, Series, Stats, Style, Table, check_list,
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
    /// Requests ("add 1, tell me the total") each client makes per sample: 100..=1_000_000.
    pub requests: u64,
    /// Timed samples per point (after one warm-up): 1..=31.
    pub samples: usize,
}

impl Default for ActorVsMutex {
    fn default() -> Self {
        ActorVsMutex {
            clients: crate::lab::machine::default_threads_within(cores(), 64, 12),
            requests: 5_000,
            samples: 3,
        }
    }
}

/// One design at one client count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorRow {
    pub design: String,
    pub clients: usize,
    /// Thousand requests answered per second, over the samples.
    pub kreq_per_s: Stats,
    /// Whether the final total equalled clients × requests in every sample.
    pub exact: bool,
}

/// Result of [`actor_vs_mutex`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorReport {
    pub params: ActorVsMutex,
    pub rows: Vec<ActorRow>,
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
        check_range("requests", self.requests, 100..=1_000_000)?;
        check_range("samples", self.samples, 1..=31)?;
        let total_requests: u64 =
            self.clients.iter().map(|&c| c as u64).sum::<u64>() * self.requests * (self.samples as u64 + 1);
        if total_requests > 20_000_000 {
            return Err(ParamError::new("sum(clients) × requests × (samples + 1)", "at most 20000000", total_requests));
        }
        Ok(())
    }
}

/// Serves `clients` threads that each send `requests` requests "add 1 and return the
/// new total", two ways: an **actor** — one thread owns the total and answers requests
/// arriving on a channel, replying on each client's own channel — and a shared
/// `Mutex<u64>`. Reports requests per second and checks the final total.
pub fn actor_vs_mutex(p: &ActorVsMutex) -> Result<ActorReport, LabError> {
    p.validate()?;
    let sampling = Sampling { warmup: 1, samples: p.samples };
    let mut rows = Vec::new();
    for design in DESIGNS {
        for &c in &p.clients {
            let mut exact = true;
            let secs = sampling
                .try_collect(|| {
                    let run = if design == DESIGNS[0] { actor_run(c, p.requests) } else { mutex_run(c, p.requests) };
                    run.map(|(total, wall)| {
                        exact &= total == c as u64 * p.requests;
                        wall
                    })
                })
                .map_err(|e| RunError::new("actor_vs_mutex", e))?;
            rows.push(ActorRow {
                design: design.into(),
                clients: c,
                kreq_per_s: Stats::rates(c as f64 * p.requests as f64 / 1e3, &secs).expect("finite"),
                exact,
            });
        }
    }
    Ok(ActorReport { params: p.clone(), rows })
}

fn actor_run(clients: usize, requests: u64) -> std::io::Result<(u64, Duration)> {
    let (tx, rx) = mpsc::sync_channel::<Request>(64);
    std::thread::scope(|s| {
        let owner = std::thread::Builder::new().spawn_scoped(s, move || {
            let mut total = 0u64;
            // Runs until every client's sender is gone; the timeout only guards a bug.
            while let Ok(req) = rx.recv_timeout(Duration::from_secs(30)) {
                total += req.add;
                let _ = req.reply.send(total);
            }
            total
        })?;
        let done = run_together(
            clients,
            |_| Ok(()),
            |_| {
                let tx = tx.clone();
                let (reply, answers) = mpsc::sync_channel::<u64>(1);
                let mut last = 0;
                for _ in 0..requests {
                    if tx.send(Request { add: 1, reply: reply.clone() }).is_err() {
                        break;
                    }
                    match answers.recv_timeout(Duration::from_secs(30)) {
                        Ok(v) => last = v,
                        Err(_) => break,
                    }
                }
                last
            },
        );
        drop(tx);
        let total = owner.join().map_err(|_| std::io::Error::other("the actor thread panicked"))?;
        let done = done?;
        Ok((total, done.wall))
    })
}

fn mutex_run(clients: usize, requests: u64) -> std::io::Result<(u64, Duration)> {
    let total = Mutex::new(0u64);
    let done = run_together(
        clients,
        |_| Ok(()),
        |_| {
            let mut last = 0;
            for _ in 0..requests {
                let mut t = total.lock().unwrap_or_else(|e| e.into_inner());
                *t += 1;
                last = *t;
            }
            last
        },
    )?;
    Ok((total.into_inner().unwrap_or_else(|e| e.into_inner()), done.wall))
}

impl Report for ActorReport {
    fn figures(&self) -> Vec<Figure> {
        let mut f = Figure::lines(
            "What does owning state in an actor cost, next to a Mutex?",
            "client threads",
            "thousand requests / s (median, p25–p75)",
        )
        .log_y()
        .legend(crate::lab::Legend::MiddleRight);
        for d in DESIGNS {
            let pts: Vec<Point> = self
                .rows
                .iter()
                .filter(|r| r.design == d)
                .map(|r| Point::spread(r.clients as f64, r.kreq_per_s.median, r.kreq_per_s.p25, r.kreq_per_s.p75))
                .collect();
            f = f.series(Series::new(d, Style::Measured, pts));
        }
        vec![f]
    }

    fn table(&self) -> Table {
        let mut t = Table::new(
            "Actor vs Mutex",
            &["design", "clients", "k requests/s", "p25–p75", "µs per request", "exact total"],
        );
        for r in &self.rows {
            let k = &r.kreq_per_s;
            t.row(vec![
                r.design.clone(),
                r.clients.to_string(),
                fmt_num(k.median),
                format!("{}–{}", fmt_num(k.p25), fmt_num(k.p75)),
                fmt_num(1e3 / k.median),
                if r.exact { "yes" } else { "NO" }.into(),
            ]);
        }
        t.note(format!("{} requests per client, {} samples.", self.params.requests, self.params.samples));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_designs_are_exact_and_validated() {
        let r = actor_vs_mutex(&ActorVsMutex { clients: vec![1, 3], requests: 500, samples: 1 }).unwrap();
        assert_eq!(r.rows.len(), 4);
        assert!(r.rows.iter().all(|x| x.exact), "{:?}", r.rows);
        assert!(actor_vs_mutex(&ActorVsMutex { clients: vec![0], ..Default::default() }).is_err());
        assert!(actor_vs_mutex(&ActorVsMutex { requests: 1, ..Default::default() }).is_err());
    }
}
