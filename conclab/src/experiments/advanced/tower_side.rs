//! The same protected service built with tower's layers, beside the hand-built one of
//! [`super::patterns`], measured on the same load ramp ([`LoadShedding`]):
//!
//! - hand-built: a [`crate::primitives::resilience::LoadShedder`] in front of a semaphore;
//! - tower, shedding: `load_shed` → `buffer(limit − workers)` → `concurrency_limit(workers)`;
//! - tower, deadline: `timeout(slo)` → `buffer` → `concurrency_limit(workers)` (a request
//!   that waits too long fails at the deadline, and the buffer skips it).
//!
//! And [`tower_retry`]: the retry storm of [`super::patterns::retry_storm`] with tower's
//! `retry` layer and its `ExponentialBackoff` — where the jitter's random source is shared
//! by every request (tower's `make_backoff` clones it, so every session draws the same
//! "random" waits) and where each client has its own.
//!
//! Plus [`Attempts`], a `tower::retry::Policy` retrying failed requests a fixed number of
//! times, [`BackoffPolicy`], one that waits a `tower::retry::backoff::Backoff` between
//! attempts, and [`what_tower_adds`], the table of what the library gives that the
//! hand-built version lacks.

use super::patterns::{
    FULL_JITTER, LoadShedding, RequestRecord, RetryStorm, ServerRun, StormRun, run_paused, run_storm, server_figures,
    server_findings, server_table, simulate_storm, storm_figures, storm_table,
};
use crate::lab::rt::Rt;
use crate::lab::{Figure, Finding, LabError, Load, LoadProbe, Report, RunError, Table, fmt_num};
use crate::primitives::resilience::{Jitter, JitterRng};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
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
            out.push(Finding::clear(if rejected == 0 {
                format!(
                    "with a timeout instead of a shedder no request failed: no answer took longer than the {} ms \
                     timeout, so the deadline never fired ({good} answered in time)",
                    p.slo_ms
                )
            } else {
                format!(
                    "with a timeout instead of a shedder, {rejected} requests failed — each only after waiting the \
                     full {} ms — while {good} were answered in time: a deadline bounds latency too, but the caller \
                     learns late, and the buffer drops a timed-out request unserved instead of wasting a worker on it",
                    p.slo_ms
                )
            }));
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

/// A `tower::retry::Policy` that retries a failed request up to `left` more times, waiting
/// `backoff.next_backoff()` before each retry. tower clones the policy for every request,
/// so each request starts from a clone of `backoff` — and of its random source.
#[derive(Debug, Clone)]
pub struct BackoffPolicy<B> {
    /// The back-off session; cloned per request.
    pub backoff: B,
    /// Retries left.
    pub left: u32,
}

impl<B: Backoff + Clone, Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for BackoffPolicy<B> {
    type Future = B::Future;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.left == 0 => None,
            Err(_) => {
                self.left -= 1;
                Some(self.backoff.next_backoff())
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// A seeded random source for tower's back-off (`tower::util::rng::Rng`), so a run repeats
/// exactly; like tower's own `HasherRng`, a clone continues the same sequence.
#[derive(Debug, Clone)]
pub struct SeededRng(JitterRng);

impl SeededRng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(JitterRng::new(seed))
    }
}

impl tower::util::rng::Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        // 53 random bits are plenty for a back-off; tower's next_f64 uses the top 53.
        ((self.0.next_f64() * (1u64 << 53) as f64) as u64) << 11
    }
}

/// Label of the tower run without jitter.
pub const TOWER_NO_JITTER: &str = "tower, jitter 0";
/// Label of the tower run whose clients share one random source (cloned per request).
pub const TOWER_SHARED_RNG: &str = "tower, jitter 1, one shared rng";
/// Label of the tower run whose clients each have their own random source.
pub const TOWER_OWN_RNG: &str = "tower, jitter 1, an rng per client";

/// One storm with tower: every client is `ServiceBuilder::new().retry(BackoffPolicy { .. })`
/// around the dependency; `rng(i)` is client `i`'s random source (`None`: jitter 0).
fn tower_storm(
    p: &RetryStorm,
    label: &str,
    rng: impl Fn(usize) -> Option<SeededRng> + Send + 'static,
) -> Result<StormRun, LabError> {
    let (base, max, left) =
        (Duration::from_millis(p.base_ms), Duration::from_millis(p.max_delay_ms), p.max_attempts - 1);
    // Validated here, before any run: tower refuses min > max and max = 0.
    ExponentialBackoffMaker::new(base, max, 1.0, SeededRng::new(0))
        .map_err(|e| RunError::new(label, format!("tower refused the back-off: {e}")))?;
    run_storm(p, label, move |i, dep, start| {
        let jitter = if rng(i).is_some() { 1.0 } else { 0.0 };
        let mut maker = ExponentialBackoffMaker::new(base, max, jitter, rng(i).unwrap_or(SeededRng::new(0)))
            .expect("checked before the run");
        let policy = BackoffPolicy { backoff: maker.make_backoff(), left };
        let service = tower::service_fn(move |()| {
            let ok = dep.call();
            async move { if ok { Ok(()) } else { Err("overloaded") } }
        });
        let svc = tower::ServiceBuilder::new().retry(policy).service(service);
        async move { svc.oneshot(()).await.ok().map(|()| Instant::now() - start) }
    })
}

/// Result of [`tower_retry`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TowerRetryReport {
    pub params: RetryStorm,
    /// The hand-built full jitter, then the three tower runs.
    pub runs: Vec<StormRun>,
    pub load: Load,
}

impl TowerRetryReport {
    /// The run with this label.
    pub fn run(&self, label: &str) -> Option<&StormRun> {
        self.runs.iter().find(|r| r.label == label)
    }
}

/// The retry storm of [`super::patterns::retry_storm`] (same parameters, same simulated
/// dependency) with tower's `retry` layer and `ExponentialBackoffMaker(base, max, jitter)`:
/// jitter 0; jitter 1 with one random source for all clients (tower clones it into every
/// back-off session, as it does with its default `HasherRng`); jitter 1 with a source per
/// client — beside the hand-built full jitter.
pub fn tower_retry(p: &RetryStorm) -> Result<TowerRetryReport, LabError> {
    p.validate()?;
    let probe = LoadProbe::start();
    let hand = simulate_storm(p, &format!("hand-built, {FULL_JITTER}"), {
        let policy = p.policy(Jitter::Full);
        Arc::new(move |failed, u| policy.delay(failed, u))
    })?;
    let seed = p.seed;
    let runs = vec![
        hand,
        tower_storm(p, TOWER_NO_JITTER, |_| None)?,
        tower_storm(p, TOWER_SHARED_RNG, move |_| Some(SeededRng::new(seed)))?,
        tower_storm(p, TOWER_OWN_RNG, move |i| {
            Some(SeededRng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64 + 1)))
        })?,
    ];
    Ok(TowerRetryReport { params: p.clone(), runs, load: probe.finish() })
}

impl Report for TowerRetryReport {
    fn findings(&self) -> Vec<Finding> {
        let p = &self.params;
        let cap = p.capacity as f64;
        let mut out = Vec::new();
        let peak = |r: &StormRun| {
            format!(
                "{} calls per 100 ms ({}× capacity)",
                r.peak_after_outage,
                fmt_num(r.peak_after_outage as f64 / cap)
            )
        };
        let storm = |r: &StormRun| r.peak_after_outage as f64 > 1.5 * cap;
        let served = |r: &StormRun| {
            r.recovered_after_ms.map_or(format!("{} clients gave up", r.gave_up), |ms| {
                format!("the last client was served {} s after the outage", fmt_num(ms / 1e3))
            })
        };
        if let (Some(hand), Some(zero), Some(shared), Some(own)) =
            (self.runs.first(), self.run(TOWER_NO_JITTER), self.run(TOWER_SHARED_RNG), self.run(TOWER_OWN_RNG))
        {
            out.push(Finding::clear(format!(
                "peak load once the dependency was back: hand-built full jitter {}; tower with jitter 0 {}; tower \
                 with jitter 1 and one shared random source {}; tower with a source per client {}",
                peak(hand),
                peak(zero),
                peak(shared),
                peak(own)
            )));
            let (ps, po) = (shared.peak_after_outage as f64, own.peak_after_outage as f64);
            if storm(shared) && ps >= 1.5 * po {
                out.push(Finding::clear(format!(
                    "sharing one random source brought the storm back ({} vs {} per 100 ms): tower's make_backoff and \
                     the per-request clone of the policy copy the source with its state, so every client draws the \
                     same \"random\" waits and they stay in lock-step — tower's default HasherRng is copied the same \
                     way. Give each client (or each request) a source of its own{}",
                    shared.peak_after_outage,
                    own.peak_after_outage,
                    if storm(own) {
                        format!(
                            ". Even with its own sources tower peaked at {}× capacity: its jitter adds at most 1× the \
                             wait (none once the wait reaches the max), and {} clients are more than one back-off window can spread below {} per 100 ms",
                            fmt_num(po / cap),
                            p.clients,
                            p.capacity
                        )
                    } else {
                        String::new()
                    }
                )));
            } else if !storm(shared) && !storm(own) {
                out.push(Finding::clear(format!(
                    "no storm with either random source ({} shared, {} per client): with {} clients against a \
                     capacity of {} per 100 ms even clients in lock-step {}",
                    shared.peak_after_outage,
                    own.peak_after_outage,
                    p.clients,
                    p.capacity,
                    if zero.peak_after_outage == 0 {
                        "never reached the dependency after the outage (they gave up during it)"
                    } else {
                        "fit within the capacity — the shared source's lock-step does harm only in a crowd"
                    }
                )));
            } else {
                out.push(Finding::clear(format!(
                    "one shared random source peaked at {} and one per client at {} calls per 100 ms: here the \
                     shared source's lock-step was not what made the difference",
                    shared.peak_after_outage, own.peak_after_outage
                )));
            }
            out.push(Finding::note(format!(
                "tower's ExponentialBackoff waits w = base × 2^k plus a random extra of up to jitter × w, but the \
                 extra is capped at max − w: with jitter 1 a wait falls in [w, min(2w, max)], and once w reaches \
                 the max ({} ms here) there is no jitter at all — every client waits exactly the max. Full jitter \
                 draws from [0, w] at every step. Hand-built: {}; tower with its own sources: {}",
                p.max_delay_ms,
                served(hand),
                served(own)
            )));
        }
        out.push(Finding::note(self.load.sentence()));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        storm_figures(&self.params, &self.runs, &self.load)
    }

    fn table(&self) -> Table {
        storm_table(&self.runs)
    }
}

/// This module's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![
        crate::lab::Experiment::new(
            "tower-vs-hand",
            super::NOTEBOOK,
            "the load-shedding ramp against the hand-built shedder and the same built from tower layers",
            tower_vs_hand,
        ),
        crate::lab::Experiment::new(
            "tower-retry",
            super::NOTEBOOK,
            "the retry storm with tower's retry layer and ExponentialBackoff: jitter 0, one shared random source, one per client",
            tower_retry,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloned_hasher_rng_repeats_its_sequence() {
        // The premise of the shared-rng run, for tower's own default source.
        use tower::util::rng::{HasherRng, Rng};
        let mut a = HasherRng::default();
        let mut b = a.clone();
        assert_eq!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
        let mut c = SeededRng::new(3);
        let mut d = c.clone();
        assert_eq!(c.next_f64(), d.next_f64());
        assert!((0.0..1.0).contains(&c.next_f64()));
    }

    #[test]
    fn a_shared_rng_keeps_tower_clients_in_lock_step() {
        let p = RetryStorm { clients: 500, ..Default::default() };
        let r = tower_retry(&p).unwrap();
        assert_eq!(r.runs.len(), 4);
        let (zero, shared, own) =
            (r.run(TOWER_NO_JITTER).unwrap(), r.run(TOWER_SHARED_RNG).unwrap(), r.run(TOWER_OWN_RNG).unwrap());
        // Lock-step: every client of the shared run calls in the same bucket, as without jitter.
        assert_eq!(shared.peak_after_outage, zero.peak_after_outage);
        assert!(
            shared.peak_after_outage > 3 * own.peak_after_outage,
            "{} vs {}",
            shared.peak_after_outage,
            own.peak_after_outage
        );
        assert!(r.findings()[1].text.contains("lock-step"), "{:?}", r.findings());
        assert!(tower_retry(&RetryStorm { max_delay_ms: 1, ..Default::default() }).is_err());
        assert!(r.table().to_string().contains(TOWER_OWN_RNG));
    }

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
