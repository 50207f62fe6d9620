//! Rust futures are lazy, JavaScript promises are eager: the order of effects when a
//! future is created and never awaited, awaited later, `tokio::spawn`ed, wrapped in an
//! eager [`Promise`], or dropped half-way.

use super::poll_trace::fmt_ms;
use crate::lab::rt::{self, Rt};
use crate::lab::{Figure, Finding, LabError, ParamError, Report, Table, check_range, fmt_num};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A future started at creation, the way a JavaScript `Promise` is: [`Promise::new`]
/// polls the future once, right there, so its body runs synchronously up to its first
/// `.await` that has to wait (JavaScript runs an async function's body up to its first
/// `await` the same way); the rest runs as a tokio task, whether or not anyone ever
/// awaits the promise. Awaiting it gives the output.
///
/// Like a JavaScript promise, dropping it does not cancel the work (the task goes on;
/// the runtime's shutdown ends it). Call [`Promise::new`] inside a tokio runtime (in a
/// notebook: inside [`crate::lab::rt::run`]).
///
/// ```
/// use conclab::lab::rt::{self, Rt};
/// use conclab::experiments::async_basics::laziness::Promise;
/// use std::sync::{Arc, Mutex};
/// let order = rt::run(Rt::current(), || async {
///     let log = Arc::new(Mutex::new(Vec::new()));
///     let l = log.clone();
///     let p = Promise::new(async move { l.lock().unwrap().push("body"); 5 });
///     log.lock().unwrap().push("created");
///     let five = p.await;
///     (log.lock().unwrap().clone(), five)
/// })
/// .unwrap();
/// assert_eq!(order, (vec!["body", "created"], 5)); // the body ran before `new` returned
/// ```
pub struct Promise<T> {
    state: PromiseState<T>,
}

enum PromiseState<T> {
    /// Finished during the first poll, in `new`.
    Done(Option<T>),
    /// Running as a tokio task.
    Running(tokio::task::JoinHandle<T>),
}

impl<T: Send + 'static> Promise<T> {
    /// Starts `fut` now (see [`Promise`]). Panics outside a tokio runtime, as `tokio::spawn` does.
    pub fn new<F>(fut: F) -> Promise<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut fut = Box::pin(fut);
        // The first poll, here and now. Its waker wakes nobody: the task spawned below
        // polls the future again at once, and that poll registers the task's own waker.
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Promise { state: PromiseState::Done(Some(v)) },
            Poll::Pending => Promise { state: PromiseState::Running(tokio::spawn(fut)) },
        }
    }
}

// The output is only ever moved out, never pinned, and a `JoinHandle` is `Unpin`: a
// `Promise` may move between polls whatever `T` is.
impl<T> Unpin for Promise<T> {}

impl<T> Future for Promise<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.state {
            PromiseState::Done(v) => Poll::Ready(v.take().expect("a Promise polled after it returned Ready")),
            PromiseState::Running(h) => match Pin::new(h).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(v)) => Poll::Ready(v),
                Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Poll::Ready(Err(_)) => panic!("the Promise's task was cancelled (its runtime shut down)"),
            },
        }
    }
}

impl<T> std::fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            PromiseState::Done(_) => "finished in new",
            PromiseState::Running(_) => "running as a task",
        };
        f.debug_struct("Promise").field("state", &state).finish()
    }
}

/// Parameters of [`laziness`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Laziness {
    /// How long each future's body waits at its `.await` (a tokio sleep), in ms: 2..=1000.
    /// The cancelled future is dropped half-way through it.
    pub work_ms: u64,
    /// How long the caller waits between creating a future and awaiting (or dropping)
    /// it, in ms: 1..=1000.
    pub wait_ms: u64,
}

impl Default for Laziness {
    fn default() -> Self {
        Laziness { work_ms: 10, wait_ms: 20 }
    }
}

impl Laziness {
    /// Checks every parameter; nothing has started when this fails.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_range("work_ms", self.work_ms, 2..=1000)?;
        check_range("wait_ms", self.wait_ms, 1..=1000)
    }
}

/// Who caused an effect.
pub const CALLER: &str = "caller";
pub const BODY: &str = "body";
pub const DROP: &str = "Drop";

/// The scenarios, in order.
pub const NEVER: &str = "created, never awaited";
pub const LATER: &str = "created, awaited later";
pub const SPAWNED: &str = "tokio::spawn";
pub const PROMISE: &str = "eager Promise::new";
pub const CANCELLED: &str = "dropped half-way";

/// What the body logs when it starts, and after its `.await`.
pub const STARTED: &str = "body started";
pub const FINISHED: &str = "after the .await: body finished";
/// What the caller logs when it awaits.
pub const AWAITED: &str = ".await";

/// One effect: in `scenario`, `who` did `what`, `at_ms` after the scenario began.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    pub scenario: String,
    pub at_ms: f64,
    /// [`CALLER`], [`BODY`] or [`DROP`] (the body's drop guard).
    pub who: String,
    pub what: String,
}

/// Result of [`laziness`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LazinessReport {
    pub params: Laziness,
    /// Every effect, scenario by scenario, in order.
    pub effects: Vec<Effect>,
}

#[derive(Clone)]
struct Fx {
    scenario: &'static str,
    origin: Instant,
    log: Arc<Mutex<Vec<Effect>>>,
}

impl Fx {
    fn log(&self, who: &str, what: impl Into<String>) {
        let at_ms = self.origin.elapsed().as_secs_f64() * 1e3;
        let e = Effect { scenario: self.scenario.into(), at_ms, who: who.into(), what: what.into() };
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }
}

/// Logs when the body's locals are dropped: at the end of the body, or when the future
/// is dropped before it finished.
struct Guard {
    fx: Fx,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished {
            self.fx.log(DROP, "Drop ran: the future was dropped at its .await (cancelled)");
        }
    }
}

/// The future every scenario uses: log, wait `work` at an `.await`, log.
async fn body(fx: Fx, work: Duration) -> u64 {
    let mut guard = Guard { fx: fx.clone(), finished: false };
    fx.log(BODY, STARTED);
    tokio::time::sleep(work).await;
    fx.log(BODY, FINISHED);
    guard.finished = true;
    42
}

/// Runs five scenarios, each with a fresh origin, on a current-thread runtime (through
/// [`crate::lab::rt`]); in each, a body logs when it starts and when its `.await` is over:
/// 1. a future created and dropped `wait_ms` later without being awaited;
/// 2. a future created and awaited `wait_ms` later;
/// 3. a future `tokio::spawn`ed, its `JoinHandle` awaited `wait_ms` later;
/// 4. a future wrapped in [`Promise::new`], awaited `wait_ms` later;
/// 5. a future awaited under a timeout of `work_ms / 2`, which drops it half-way.
pub fn laziness(p: &Laziness) -> Result<LazinessReport, LabError> {
    p.validate()?;
    let (work, wait) = (Duration::from_millis(p.work_ms), Duration::from_millis(p.wait_ms));
    let limit = Duration::from_secs(10) + 5 * (work + wait);
    let effects = rt::run(Rt::current().timeout(limit), move || async move {
        let log = Arc::new(Mutex::new(Vec::new()));
        let fx = |scenario| Fx { scenario, origin: Instant::now(), log: Arc::clone(&log) };

        let f = fx(NEVER);
        let fut = body(f.clone(), work);
        f.log(CALLER, "created the future");
        tokio::time::sleep(wait).await;
        f.log(CALLER, "dropped it, never awaited");
        drop(fut);

        let f = fx(LATER);
        let fut = body(f.clone(), work);
        f.log(CALLER, "created the future");
        tokio::time::sleep(wait).await;
        f.log(CALLER, AWAITED);
        fut.await;
        f.log(CALLER, "got its output");

        let f = fx(SPAWNED);
        let handle = tokio::spawn(body(f.clone(), work));
        f.log(CALLER, "tokio::spawn returned");
        tokio::time::sleep(wait).await;
        f.log(CALLER, AWAITED);
        let _ = handle.await;
        f.log(CALLER, "got its output");

        let f = fx(PROMISE);
        let promise = Promise::new(body(f.clone(), work));
        f.log(CALLER, "Promise::new returned");
        tokio::time::sleep(wait).await;
        f.log(CALLER, AWAITED);
        promise.await;
        f.log(CALLER, "got its output");

        let f = fx(CANCELLED);
        let fut = body(f.clone(), work);
        f.log(CALLER, "created the future");
        f.log(CALLER, AWAITED);
        let out = tokio::time::timeout(work / 2, fut).await;
        f.log(CALLER, if out.is_err() { "the timeout dropped it" } else { "got its output" });

        log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    })?;
    Ok(LazinessReport { params: p.clone(), effects })
}

impl LazinessReport {
    /// The effects of one scenario.
    pub fn of(&self, scenario: &str) -> Vec<&Effect> {
        self.effects.iter().filter(|e| e.scenario == scenario).collect()
    }

    /// When the first effect in `scenario` by `who` whose text starts with `what` happened.
    pub fn at(&self, scenario: &str, who: &str, what: &str) -> Option<f64> {
        self.effects
            .iter()
            .find(|e| e.scenario == scenario && e.who == who && e.what.starts_with(what))
            .map(|e| e.at_ms)
    }

    /// When the caller's first effect (creating, spawning) happened.
    fn created(&self, scenario: &str) -> Option<f64> {
        self.of(scenario).into_iter().find(|e| e.who == CALLER).map(|e| e.at_ms)
    }
}

fn at(t: Option<f64>) -> String {
    t.map_or_else(|| "never".into(), |t| format!("{} ms", fmt_ms(t)))
}

impl Report for LazinessReport {
    fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let body_effects = self.of(NEVER).iter().filter(|e| e.who == BODY).count();
        out.push(Finding::note(format!(
            "Created, never awaited: {} of its body in {} ms, then dropped at {} — {}",
            match body_effects {
                0 => "no effect".to_string(),
                n => format!("{n} effects"),
            },
            self.params.wait_ms,
            at(self.of(NEVER).last().map(|e| e.at_ms)),
            if body_effects == 0 { "its body never ran" } else { "its body ran" }
        )));
        let (created, awaited, started) =
            (self.created(LATER), self.at(LATER, CALLER, AWAITED), self.at(LATER, BODY, STARTED));
        out.push(Finding::note(format!(
            "Created, awaited later: created at {}, body started at {} — {}",
            at(created),
            at(started),
            match (awaited, started) {
                (Some(a), Some(s)) if s >= a => format!("at the .await ({}), not at creation", at(Some(a))),
                _ => "before the .await".to_string(),
            }
        )));
        let (spawned, awaited, started, finished) = (
            self.created(SPAWNED),
            self.at(SPAWNED, CALLER, AWAITED),
            self.at(SPAWNED, BODY, STARTED),
            self.at(SPAWNED, BODY, FINISHED),
        );
        out.push(Finding::note(format!(
            "tokio::spawn: spawned at {}, body started at {} and finished at {}, {} the JoinHandle was awaited at {}",
            at(spawned),
            at(started),
            at(finished),
            match (finished, awaited) {
                (Some(f), Some(a)) if f < a => "before",
                _ => "and",
            },
            at(awaited)
        )));
        let (returned, started, finished, awaited) = (
            self.at(PROMISE, CALLER, "Promise::new"),
            self.at(PROMISE, BODY, STARTED),
            self.at(PROMISE, BODY, FINISHED),
            self.at(PROMISE, CALLER, AWAITED),
        );
        let body_first = self.of(PROMISE).first().is_some_and(|e| e.who == BODY);
        out.push(Finding::note(format!(
            "Promise::new: body started at {}{}, finished at {}, awaited at {} — eager, like a JavaScript Promise",
            at(started),
            if body_first {
                format!(", before Promise::new returned ({})", at(returned))
            } else {
                format!("; Promise::new returned at {}", at(returned))
            },
            at(finished),
            at(awaited)
        )));
        let (dropped, drop_ran, finished) = (
            self.at(CANCELLED, CALLER, "the timeout dropped"),
            self.at(CANCELLED, DROP, "Drop ran"),
            self.at(CANCELLED, BODY, FINISHED),
        );
        out.push(Finding::note(match finished {
            None => format!(
                "Dropped half-way: body started at {}, the timeout of {} ms dropped it, its Drop ran at {}, and the \
                 code after its .await never ran — dropping a future cancels it (the timeout returned at {})",
                at(self.at(CANCELLED, BODY, STARTED)),
                fmt_num(self.params.work_ms as f64 / 2.0),
                at(drop_ran),
                at(dropped)
            ),
            Some(f) => format!("Dropped half-way: the body finished at {} ms, before the timeout", fmt_ms(f)),
        }));
        out
    }

    fn figures(&self) -> Vec<Figure> {
        let end = self.effects.iter().map(|e| e.at_ms).fold(0.0, f64::max);
        let w = (end / 120.0).max(1e-3);
        let mut spans: Vec<(&str, &str, f64, f64)> = Vec::new();
        for s in [NEVER, LATER, SPAWNED, PROMISE, CANCELLED] {
            let created = self.created(s).unwrap_or(0.0);
            let started = self.at(s, BODY, STARTED);
            let stop = self
                .of(s)
                .iter()
                .find(|e| e.who == DROP || (e.who == BODY && e.what == FINISHED))
                .map(|e| e.at_ms)
                .or_else(|| self.of(s).last().map(|e| e.at_ms))
                .unwrap_or(end);
            match started {
                Some(t) => {
                    if t > created {
                        spans.push((s, NOT_STARTED, created, t));
                    }
                    spans.push((s, RUNNING, t, stop.max(t + w)));
                }
                None => spans.push((s, NOT_STARTED, created, stop)),
            }
            for e in self.of(s) {
                if e.who == CALLER && e.what == AWAITED {
                    spans.push((s, AWAIT_MARK, e.at_ms, e.at_ms + w));
                }
                if e.who == DROP || e.what.starts_with("dropped") || e.what.starts_with("the timeout dropped") {
                    spans.push((s, DROP_MARK, e.at_ms, e.at_ms + w));
                }
            }
        }
        let order = [NOT_STARTED, RUNNING, DROP_MARK, AWAIT_MARK];
        spans.sort_by_key(|s| order.iter().position(|k| *k == s.1));
        let mut f = Figure::timeline(
            "A Rust future runs only when awaited; spawn and an eager Promise start at once",
            "time since the future was created (ms)",
            "scenario",
        );
        // Lanes in scenario order (a timeline lists them by first appearance): an empty
        // span of the first kind opens each.
        for s in [NEVER, LATER, SPAWNED, PROMISE, CANCELLED] {
            f = f.span(s, NOT_STARTED, 0.0, 0.0);
        }
        for (lane, key, a, b) in spans {
            f = f.span(lane, key, a, b);
        }
        vec![f.note(format!(
            "Each body: log, tokio::time::sleep({} ms).await, log. The caller waits {} ms before it awaits (or drops) \
             the future; the last one is awaited under a {} ms timeout. Current-thread runtime.",
            self.params.work_ms,
            self.params.wait_ms,
            fmt_num(self.params.work_ms as f64 / 2.0)
        ))]
    }

    fn table(&self) -> Table {
        let mut t = Table::new("Effects in order", &["scenario", "ms", "who", "effect"]);
        for e in &self.effects {
            t.row(vec![e.scenario.clone(), fmt_ms(e.at_ms), e.who.clone(), e.what.clone()]);
        }
        t.note("ms: since the scenario began (just before the future was created); who: the caller, the future's body, or the body's drop guard.");
        t
    }
}

pub const NOT_STARTED: &str = "future exists, body not started";
pub const RUNNING: &str = "body running (started → finished or dropped)";
pub const DROP_MARK: &str = "dropped";
pub const AWAIT_MARK: &str = "caller's .await";

crate::impl_params!(Laziness);

/// This part's experiments, for the CLI's registry.
pub fn experiments() -> Vec<crate::lab::Experiment> {
    vec![crate::lab::Experiment::new(
        "laziness",
        "04-async",
        "effect order: a future never awaited, awaited later, spawned, an eager Promise, dropped half-way",
        laziness,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_parameters() {
        assert!(laziness(&Laziness { work_ms: 1, ..Default::default() }).is_err());
        assert!(Laziness { wait_ms: 1001, ..Default::default() }.validate().is_err());
        assert!(Laziness::default().validate().is_ok());
    }

    #[test]
    fn futures_are_lazy_spawn_and_promise_are_eager_and_dropping_cancels() {
        let r = laziness(&Laziness { work_ms: 20, wait_ms: 5 }).unwrap();
        // Never awaited: the body never ran.
        assert!(r.of(NEVER).iter().all(|e| e.who == CALLER), "{:?}", r.of(NEVER));
        // Awaited later: the body starts after the caller's .await (an order, not a time).
        let later = r.of(LATER);
        let pos = |what: &str| later.iter().position(|e| e.what == what).unwrap();
        assert!(pos(STARTED) > pos(AWAITED));
        // Spawned: the body started before the caller awaited (one thread: at the caller's
        // first .await, its sleep).
        let spawned = r.of(SPAWNED);
        let pos = |what: &str| spawned.iter().position(|e| e.what == what).unwrap();
        assert!(pos(STARTED) < pos(AWAITED), "{spawned:?}");
        // Promise: the body started before Promise::new returned.
        assert_eq!(r.of(PROMISE)[0].what, STARTED);
        // Cancelled: Drop ran, the code after the .await did not.
        assert!(r.at(CANCELLED, DROP, "Drop ran").is_some());
        assert!(r.at(CANCELLED, BODY, FINISHED).is_none());
        let f = r.findings();
        assert_eq!(f.len(), 5);
        assert!(f[0].text.contains("never ran"), "{}", f[0].text);
        assert!(f[1].text.contains("at the .await"), "{}", f[1].text);
        assert!(r.figure().errors.is_empty() && r.figure().to_svg().contains("<svg"));
        assert!(r.table().rows.len() >= 15);
    }

    #[test]
    fn a_promise_that_finishes_at_once_needs_no_task() {
        let v = rt::run(Rt::current(), || async {
            let p = Promise::new(async { 7 });
            let done = matches!(p.state, PromiseState::Done(_));
            (p.await, done)
        })
        .unwrap();
        assert_eq!(v, (7, true));
    }
}
