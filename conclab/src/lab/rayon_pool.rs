//! A rayon pool that is really gone when dropped. `rayon::ThreadPool`'s drop only asks
//! its workers to stop; they exit a little later, so an experiment that returned right
//! after the drop would leave threads behind (and the next one would count them). This
//! wrapper waits, bounded, until every worker has run rayon's exit handler and the
//! process's thread count has come down.

use std::io;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a drop waits for the workers to exit.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// A `rayon::ThreadPool` of `threads` workers whose drop returns only after they exited.
#[derive(Debug)]
pub struct JoinedPool {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    exited: Arc<(Mutex<usize>, Condvar)>,
}

impl JoinedPool {
    /// Builds a pool of `threads` workers named `conclab-rayon-<i>`.
    pub fn new(threads: usize) -> io::Result<JoinedPool> {
        let exited = Arc::new((Mutex::new(0usize), Condvar::new()));
        let on_exit = Arc::clone(&exited);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("conclab-rayon-{i}"))
            .exit_handler(move |_| {
                let (count, cv) = &*on_exit;
                *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                cv.notify_all();
            })
            .build()
            .map_err(io::Error::other)?;
        Ok(JoinedPool { pool: Some(pool), threads, exited })
    }
}

impl Deref for JoinedPool {
    type Target = rayon::ThreadPool;
    fn deref(&self) -> &rayon::ThreadPool {
        self.pool.as_ref().expect("the pool lives until drop")
    }
}

impl Drop for JoinedPool {
    fn drop(&mut self) {
        let before = crate::lab::machine::thread_count();
        drop(self.pool.take());
        let deadline = Instant::now() + EXIT_WAIT;
        let (count, cv) = &*self.exited;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cv.wait_timeout_while(guard, EXIT_WAIT, |n| *n < self.threads);
        // The exit handler runs just before a worker ends: wait until the threads are gone.
        let target = before.saturating_sub(self.threads);
        while crate::lab::machine::thread_count() > target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_pool_waits_for_its_workers() {
        let pool = JoinedPool::new(3).unwrap();
        assert_eq!(pool.install(rayon::current_num_threads), 3);
        let names = pool.install(|| std::thread::current().name().map(String::from));
        assert!(names.unwrap().starts_with("conclab-rayon-"));
        let exited = Arc::clone(&pool.exited);
        drop(pool);
        assert_eq!(*exited.0.lock().unwrap(), 3);
    }
}
