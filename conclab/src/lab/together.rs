//! Starting threads together: spawn all of them first, then release them at once, so a
//! measurement covers the work and not thread creation; and never hang if a thread
//! cannot be created.

use std::io;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a started thread waits to be released before it gives up (a safeguard: the
/// gate is always opened or aborted on every path).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// A one-shot start line: threads [`Gate::wait`] until the gate is opened or aborted.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Releases every waiter; `wait` returns `true`.
    pub fn open(&self) {
        self.set(true)
    }

    /// Releases every waiter; `wait` returns `false` (they should not do their work).
    pub fn abort(&self) {
        self.set(false)
    }

    fn set(&self, go: bool) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(go);
        self.cv.notify_all();
    }

    /// Blocks until the gate opens (`true`) or is aborted or `timeout` passes (`false`).
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self.cv.wait_timeout_while(guard, timeout, |s| s.is_none()).unwrap_or_else(|e| e.into_inner());
        *guard == Some(true)
    }
}

/// What [`run_together`] returns: each thread's result (in thread order) and the wall
/// time from the first thread starting its work to the last one finishing.
#[derive(Debug)]
pub struct Together<T> {
    pub results: Vec<T>,
    pub wall: Duration,
    /// When the first thread started its work.
    pub start: Instant,
}

/// Runs `work(i)` on `n` scoped threads that start together: every thread is created
/// and has run `prepare(i)` (pin itself, say) before any starts `work`. If a thread
/// cannot be created or `prepare` fails, the others are released without working, all
/// are joined, and the error is returned. A panic in `work` is returned as an error too.
pub fn run_together<T, P, W>(n: usize, prepare: P, work: W) -> io::Result<Together<T>>
where
    T: Send,
    P: Fn(usize) -> Result<(), String> + Sync,
    W: Fn(usize) -> T + Sync,
{
    let gate = Gate::new();
    let ready = Mutex::new((0usize, None::<String>));
    let all_ready = Condvar::new();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        let mut spawn_error = None;
        for i in 0..n {
            let (gate, ready, all_ready, prepare, work) = (&gate, &ready, &all_ready, &prepare, &work);
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                let prepared = prepare(i);
                {
                    let mut r = ready.lock().unwrap_or_else(|e| e.into_inner());
                    r.0 += 1;
                    if let Err(e) = prepared {
                        r.1.get_or_insert(e);
                    }
                    all_ready.notify_all();
                }
                if !gate.wait(RELEASE_TIMEOUT) {
                    return None;
                }
                let start = Instant::now();
                let out = work(i);
                Some((out, start, Instant::now()))
            });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        // Wait (bounded) until every started thread has prepared itself.
        let started = handles.len();
        let failure = {
            let r = ready.lock().unwrap_or_else(|e| e.into_inner());
            let (r, _) =
                all_ready.wait_timeout_while(r, RELEASE_TIMEOUT, |r| r.0 < started).unwrap_or_else(|e| e.into_inner());
            match (&spawn_error, &r.1) {
                (Some(e), _) => Some(io::Error::new(e.kind(), format!("could not start thread {started} of {n}: {e}"))),
                (None, Some(msg)) => Some(io::Error::other(msg.clone())),
                (None, None) if r.0 < started => Some(io::Error::other("threads did not get ready within 30 s")),
                _ => None,
            }
        };
        if failure.is_some() {
            gate.abort();
        } else {
            gate.open();
        }
        let mut results = Vec::with_capacity(started);
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        let mut panicked = false;
        for h in handles {
            match h.join() {
                Ok(Some((out, a, b))) => {
                    first = Some(first.map_or(a, |f| f.min(a)));
                    last = Some(last.map_or(b, |l| l.max(b)));
                    results.push(out);
                }
                Ok(None) => {}
                Err(_) => panicked = true,
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if panicked {
            return Err(io::Error::other("a worker thread panicked"));
        }
        let start = first.unwrap_or_else(Instant::now);
        let wall = last.map_or(Duration::ZERO, |b| b.duration_since(start));
        Ok(Together { results, wall, start })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn all_threads_run_and_results_keep_their_order() {
        let t = run_together(4, |_| Ok(()), |i| i * 10).unwrap();
        assert_eq!(t.results, vec![0, 10, 20, 30]);
    }

    #[test]
    fn wall_time_excludes_preparation() {
        let t = run_together(
            2,
            |_| {
                std::thread::sleep(Duration::from_millis(50));
                Ok(())
            },
            |_| std::thread::sleep(Duration::from_millis(5)),
        )
        .unwrap();
        assert!(t.wall < Duration::from_millis(45), "{:?}", t.wall);
        assert!(t.wall >= Duration::from_millis(5));
    }

    #[test]
    fn a_failed_preparation_releases_everyone_without_working() {
        let worked = AtomicUsize::new(0);
        let e = run_together(
            3,
            |i| if i == 1 { Err("cannot pin".into()) } else { Ok(()) },
            |_| {
                worked.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot pin"));
        assert_eq!(worked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn gate_times_out_closed() {
        assert!(!Gate::new().wait(Duration::from_millis(5)));
        let g = Gate::new();
        g.open();
        assert!(g.wait(Duration::from_millis(5)));
    }
}
