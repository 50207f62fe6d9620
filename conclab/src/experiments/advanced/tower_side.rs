//! The same protected service built with tower's layers, beside the hand-built one of
//! [`super::patterns`], measured on the same load ramp ([`LoadShedding`]):
//!
//! - hand-built: a [`crate::primitives::resilience::LoadShedder`] in front of a semaphore;
//! - tower, shedding: `load_shed` → `buffer(limit − workers)` → `concurrency_limit(workers)`;
//! - tower, deadline: `timeout(slo)` → `buffer` → `concurrency_limit(workers)` (a request
//!   that waits too long fails at the deadline, and the buffer skips it).
//!
//! Plus [`Attempts`], a `tower::retry::Policy` retrying failed requests a fixed number of
//! times, and [`what_tower_adds`], the table of what the library gives that the hand-built
//! version lacks.

use super::patterns::{
    LoadShedding, RequestRecord, ServerRun, run_paused, server_figures, server_findings, server_table,
};
use crate::lab::rt::Rt;
use crate::lab::{Figure, Finding, LabError, Load, LoadProbe, Report, RunError, Table};
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// A `tower::retry::Policy`: retry a failed request up to `left` more times, at once (add
/// a back-off by returning a future that sleeps). Requests must be `Clone` to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Retries left.
    pub left: usize,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.left == 0 => None,
            Err(_) => {
                self.left -= 1;
                Some(std::future::ready(()))
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Which tower stack a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TowerStack {
    /// `load_shed` → `buffer(limit − workers)` → `concurrency_limit(workers)`.
    Shedding,
    /// `timeout(slo)` → `buffer` → `concurrency_limit(workers)`.
    Deadline,
}

impl TowerStack {
    /// The run's label.
    pub fn label(self, p: &LoadShedding) -> String {
        match self {
            TowerStack::Shedding => format!(
                "tower: load_shed + buffer({}) + concurrency_limit({})",
                p.limit.saturating_sub(p.workers).max(1),
                p.workers
            ),
            TowerStack::Deadline => {
                format!("tower: timeout({} ms) + buffer + concurrency_limit({})", p.slo_ms, p.workers)
            }
        }
    }
}

/// The backend: a request is its service time; it sleeps that long and answers.
fn backend() -> impl Service<Duration, Response = (), Error = Infallible, Future: Send> + Send + Clone + 'static {
    tower::service_fn(|service: Duration| async move {
        tokio::time::sleep(service).await;
        Ok::<(), Infallible>(())
    })
}

async fn drive<S>(svc: S, arrivals: Vec<(Duration, Duration)>) -> Vec<RequestRecord>
where
    S: Service<Duration, Response = (), Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let start = Instant::now();
    let mut handles = Vec::with_capacity(arrivals.len());
    for (at, service) in arrivals {
        tokio::time::sleep_until(start + at).await;
        let svc = svc.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let served = svc.oneshot(service).await.is_ok();
            let ms = |x: Instant| (x - start).as_secs_f64() * 1e3;
            RequestRecord { at_ms: ms(t), latency_ms: ms(Instant::now()) - ms(t), served }
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a request task panicked"));
    }
    out
}

/// Runs the ramp of `p` against a tower stack, on a paused clock.
pub fn simulate_tower(p: &LoadShedding, stack: TowerStack) -> Result<ServerRun, LabError> {
    p.validate()?;
    let arrivals = p.arrivals();
    let (workers, bound, slo) = (p.workers, p.limit.saturating_sub(p.workers).max(1), Duration::from_millis(p.slo_ms));
    let requests = run_paused(Rt::current().timeout(Duration::from_secs(60)), move || async move {
        match stack {
            TowerStack::Shedding => {
                let svc = ServiceBuilder::new()
                    .load_shed()
                    .buffer(bound)
                    .concurrency_limit(workers)
                    .service(backend())
                    .map_err(BoxError::from);
                drive(svc, arrivals).await
            }
            TowerStack::Deadline => {
                let svc = ServiceBuilder::new()
                    .timeout(slo)
                    .buffer(200_000)
                    .concurrency_limit(workers)
                    .service(backend())
                    .map_err(BoxError::from);
                drive(svc, arrivals).await
            }
        }
    })
    .map_err(|e| RunError::new("the tower simulation", e))?;
    Ok(ServerRun { label: stack.label(p), requests })
}

/// Result of [`tower_vs_hand`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TowerVsHandReport {
    pub params: LoadShedding,
    /// Hand-built (no limit, shedder), then the tower stacks.
    pub runs: Vec<ServerRun>,
    pub load: Load,
}

/// The load ramp of [`LoadShedding`] against the unprotected and the hand-built shedding
/// server, and against the same protection built from tower layers ([`TowerStack`]); the
/// same arrivals and service times for all.
pub fn tower_vs_hand(p: &LoadShedding) -> Result<TowerVsHandReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let mut runs =
        vec![super::patterns::simulate_server(p, None)?, super::patterns::simulate_server(p, Some(p.limit))?];
    for s in [TowerStack::Shedding, TowerStack::Deadline] {
        runs.push(simulate_tower(p, s)?);
    }
    Ok(TowerVsHandReport { params: p.clone(), runs, load: probe.finish() })
}

/// What tower gives that the hand-built pieces lack, one row per point.
pub fn what_tower_adds() -> Table {
    let mut t = Table::new("Hand-built vs tower", &["", "hand-built (primitives::resilience)", "tower"]);
    for (a, b, c) in [
        (
            "composition",
            "each piece is called by hand, in an order the caller hard-codes",
            "layers stack with ServiceBuilder; any Service gets any layer",
        ),
        (
            "backpressure",
            "try_acquire: admitted or refused, nothing in between",
            "poll_ready: a service says 'not now' and the caller waits, sheds (load_shed) or queues (buffer)",
        ),
        (
            "cancellation",
            "a dropped request leaves its queue slot until reached",
            "buffer skips requests whose caller has gone (e.g. timed out)",
        ),
        (
            "sharing",
            "Arc/Mutex around each piece",
            "buffer turns any service into a Clone + Send handle served by one task",
        ),
        (
            "retries",
            "a loop around one call",
            "retry::Policy decides per result, clones the request, may budget retries (retry::budget)",
        ),
        ("rate limits", "not built here", "rate_limit(n, per): n requests per period"),
        ("ecosystem", "only what was written", "the same Service trait as hyper, axum and tonic: middleware is shared"),
        (
            "what it costs",
            "plain code to read and debug",
            "generic types, boxed errors to downcast (Overloaded, Elapsed), a spawned buffer task",
        ),
    ] {
        t.row(vec![a.into(), b.into(), c.into()]);
    }
    t
}

impl Report for TowerVsHandReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let mut out = server_findings(p, &self.runs);
        if let (Some(hand), Some(tower)) = (self.runs.get(1), self.runs.get(2)) {
            let (hg, tg) = (hand.totals(p.slo_ms).2 as f64, tower.totals(p.slo_ms).2 as f64);
            let close = (hg - tg).abs() <= 0.1 * hg.max(tg).max(1.0);
            out.push(Finding::clear(if close {
                format!(
                    "the tower shedding stack and the hand-built shedder gave about the same goodput ({tg} vs {hg}): \
                     both cap the requests admitted at once and refuse the rest at once"
                )
            } else {
                format!(
                    "the tower shedding stack's goodput was {tg} vs the hand-built shedder's {hg}: the admitted \
                     count differs slightly (buffer's bound counts queued requests; the worker holds one more)"
                )
            }));
        }
        if let Some(dl) = self.runs.get(3) {
            let (_, rejected, good) = dl.totals(p.slo_ms);
            out.push(Finding::clear(format!(
                "with a timeout instead of a shedder, {rejected} requests failed — each only after waiting the full \
                 {} ms — while {good} were answered in time: a deadline bounds latency too, but the caller learns \
                 late, and the buffer drops a timed-out request unserved instead of wasting a worker on it",
                p.slo_ms
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        server_figures(&self.params, &self.runs, &self.load)
    }

    fn table(&self) -> Table {
        server_table(&self.params, &self.runs)
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "tower-vs-hand",
        super::NOTEBOOK,
        "the load-shedding ramp against the hand-built shedder and the same built from tower layers",
        tower_vs_hand,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tower_sheds_like_the_hand_built_one() {
        let p = LoadShedding { ramp_ms: 4_000, ..Default::default() };
        let r = tower_vs_hand(&p).unwrap();
        assert_eq!(r.runs.len(), 4);
        let (none, hand, tower, deadline) = (&r.runs[0], &r.runs[1], &r.runs[2], &r.runs[3]);
        assert_eq!(tower.requests.len(), hand.requests.len());
        assert!(tower.totals(p.slo_ms).1 > 0, "tower's load_shed rejected nothing");
        assert!(none.p99_ms() > 10.0 * tower.p99_ms(), "{} vs {}", none.p99_ms(), tower.p99_ms());
        // The deadline stack: nothing served later than the timeout (and its 1 ms tick).
        assert!(deadline.requests.iter().filter(|q| q.served).all(|q| q.latency_ms <= p.slo_ms as f64 + 2.0));
        assert!(deadline.totals(p.slo_ms).1 > 0);
        assert!(r.findings().len() >= 6);
        for f in r.figures() {
            assert!(f.to_svg().contains("<svg"));
        }
        assert!(r.table().to_string().contains("tower: load_shed"));
        assert!(what_tower_adds().to_string().contains("poll_ready"));
        assert!(tower_vs_hand(&LoadShedding { workers: 0, ..Default::default() }).is_err());
    }

    /// `retry` with the [`Attempts`] policy over a service that fails its first two calls;
    /// `rate_limit` spacing calls on a paused clock.
    #[tokio::test(start_paused = true)]
    async fn retry_policy_and_rate_limit() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let flaky = tower::service_fn(move |x: u32| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err("down") } else { Ok(x * 2) } }
        });
        let mut svc = ServiceBuilder::new().retry(Attempts { left: 3 }).service(flaky);
        assert_eq!(svc.ready().await.unwrap().call(21).await, Ok(42));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let mut limited = ServiceBuilder::new()
            .rate_limit(2, Duration::from_secs(1))
            .service(tower::service_fn(|_: ()| async { Ok::<_, Infallible>(()) }));
        let t = Instant::now();
        for _ in 0..6 {
            limited.ready().await.unwrap().call(()).await.unwrap();
        }
        // 2 per second: the 6th call goes in the third second.
        assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
