//! [`run_paused`]: an async body on a current-thread runtime whose clock starts paused,
//! bounded by wall-clock time. Used by notebooks 05 and 06 and their simulations.

use super::{Rt, RtError, threads_named};
use crate::lab::panics::panic_message;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `body()` on a fresh current-thread runtime whose clock starts paused
/// (`Builder::start_paused(true)`), on a thread of its own, and returns its output.
///
/// With the clock paused, `tokio::time::sleep` and friends take no wall time: whenever
/// every task is waiting, tokio moves the clock straight to the next timer's deadline
/// (`tokio::time::advance` moves it by hand). `rt.timeout` bounds the run in **wall-clock**
/// time — a `tokio::time::timeout` would measure paused time and fire the moment the body
/// waits past it — and `rt.grace` bounds the shutdown. `rt` must be [`Rt::current`]: tokio
/// can pause only a current-thread runtime's clock. No thread is left behind, or the
/// error says which.
///
/// ```
/// use conclab::lab::rt::{Rt, run_paused};
/// use std::time::{Duration, Instant};
/// let wall = Instant::now();
/// let slept = run_paused(Rt::current(), || async {
///     let t = tokio::time::Instant::now();
///     tokio::time::sleep(Duration::from_secs(24 * 3600)).await; // a day
///     t.elapsed()
/// })
/// .unwrap();
/// assert!(slept >= Duration::from_secs(24 * 3600));
/// assert!(wall.elapsed() < Duration::from_secs(60));
/// ```
pub fn run_paused<F, Fut, T>(rt: Rt, body: F) -> Result<T, RtError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    if rt.flavor != super::Flavor::CurrentThread {
        return Err(RtError::Config(format!(
            "a paused clock needs a current-thread runtime (Rt::current()), got a {rt}"
        )));
    }
    if rt.timeout.is_zero() || rt.timeout > Duration::from_secs(3600) {
        return Err(RtError::Config(format!("timeout must be 1 ns..=1 h, got {:?}", rt.timeout)));
    }
    if rt.grace > Duration::from_secs(60) {
        return Err(RtError::Config(format!("grace must be at most 60 s, got {:?}", rt.grace)));
    }
    let (limit, grace) = (rt.timeout, rt.grace);
    let before = crate::lab::thread_count();
    let prefix = fresh_prefix();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Option<Result<T, String>>, RtError>>(1);
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    let name_prefix = prefix.clone();
    let spawned = std::thread::Builder::new().name(format!("{prefix}-main")).spawn(move || {
        let built = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .thread_name_fn(move || format!("{name_prefix}-b"))
            .build();
        let runtime = match built {
            Ok(r) => r,
            Err(e) => return drop(tx.send(Err(RtError::Start(format!("tokio refused the runtime: {e}"))))),
        };
        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(async move {
                let work = body();
                tokio::select! {
                    v = work => Some(v),
                    _ = cancel_rx => None,
                }
            })
        }));
        runtime.shutdown_timeout(grace);
        let ended = match ended {
            Ok(Some(v)) => Some(Ok(v)),
            Ok(None) => None,
            Err(p) => Some(Err(panic_message(&*p))),
        };
        let _ = tx.send(Ok(ended));
    });
    let handle = spawned.map_err(|e| RtError::Start(format!("the OS refused a thread: {e}")))?;
    let ended = match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            // Wall-clock time is up: cancel the body (it is dropped at its next `.await`).
            let _ = cancel_tx.send(());
            match rx.recv_timeout(grace + Duration::from_millis(500)) {
                Ok(r) => r,
                Err(_) => {
                    drop(handle);
                    return Err(RtError::Blocked { limit, leaked: threads_named(&prefix) });
                }
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let why = handle.join().err().map_or_else(|| "no reason given".into(), |p| panic_message(&*p));
            return Err(RtError::Panicked(format!("the runtime's thread ended without a result: {why}")));
        }
    };
    let _ = handle.join();
    let gone = Instant::now() + Duration::from_millis(300);
    while !threads_named(&prefix).is_empty() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(5));
    }
    let leaked = threads_named(&prefix);
    match ended? {
        None => Err(RtError::TimedOut { limit, leaked }),
        Some(Err(msg)) => Err(RtError::Panicked(msg)),
        Some(Ok(_)) if !leaked.is_empty() => Err(RtError::Leaked { leaked, before, after: crate::lab::thread_count() }),
        Some(Ok(v)) => Ok(v),
    }
}

/// A name prefix for one run's threads: `pt` and six hex digits.
fn fresh_prefix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u32;
    format!("pt{:06x}", (nanos ^ n.wrapping_mul(0x9E37_79B9) ^ std::process::id().rotate_left(12)) & 0xFF_FFFF)
}
